"""What every `geopixeld` command group shares: how an app is made and how a command fails."""

import typer


def new_app(help: str) -> typer.Typer:
    """A typer app that prints plain help and plain errors (no rich tracebacks of user mistakes)."""
    return typer.Typer(help=help, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                       rich_markup_mode=None)


def fail(message: str, code: int = 2) -> None:
    """Print `error: message` in red on stderr and exit with `code` (2: bad input or settings)."""
    typer.secho(f"error: {message}", err=True, fg="red")
    raise typer.Exit(code)
