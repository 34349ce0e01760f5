"""What every `geopixeld` command group shares: how an app is made, how a command fails, and the one place that
turns the project's expected errors into one line and exit code 2 (the traceback only with `--debug`)."""

import os
import sys
import traceback

import typer
import typer.core

DEBUG_ENV = "GEOPIXELD_DEBUG"
PROJECT_PACKAGES = ("pipeline", "model", "flows", "annotations", "prompts")
_debug = False  # the root command's --debug, set as each invocation starts (GuardedGroup.invoke)


def debug_enabled() -> bool:
    """`geopixeld --debug ...` or GEOPIXELD_DEBUG=1: show tracebacks of expected errors too."""
    return _debug or os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def _ours(module: str | None) -> bool:
    return (module or "").split(".")[0] in PROJECT_PACKAGES


def _raised_by_project(exc: BaseException) -> bool:
    """The innermost frame of `exc` is the project's own code: it raised it on purpose, with a message for the user."""
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return _ours(tb.tb_frame.f_globals.get("__name__"))


def is_expected(exc: BaseException) -> bool:
    """Bad input, not a bug: an error class of the project (NotReady, SourceError, DataError, EvalInputError, ...),
    pydantic's ValidationError or a YAML error, an OSError naming its file, or a ValueError/OSError the project's
    own code raised. The same built-in types raised inside a library are bugs until proven otherwise."""
    import yaml
    from pydantic import ValidationError

    if _ours(type(exc).__module__) or isinstance(exc, (ValidationError, yaml.YAMLError)):
        return True
    if isinstance(exc, OSError) and exc.filename is not None:
        return True
    return isinstance(exc, (ValueError, OSError)) and _raised_by_project(exc)


def message(exc: BaseException) -> str:
    """What `error:` says for an expected error: its text, an OSError as `path: reason`."""
    if isinstance(exc, OSError) and exc.strerror:
        names = [str(n) for n in (exc.filename, exc.filename2) if n is not None]
        return ": ".join([" -> ".join(names), exc.strerror] if names else [exc.strerror])
    return str(exc) or type(exc).__name__


class GuardedGroup(typer.core.TyperGroup):
    """A command group whose commands' expected errors end as `error: ...` and exit 2; anything else keeps its
    traceback (exit 1), so bugs are never dressed up as bad input."""

    def invoke(self, ctx):
        global _debug
        if ctx.parent is None:  # the root group: its options are parsed, its callback and command not yet run
            _debug = bool(ctx.params.get("debug"))
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):  # typer's own: exits, usage errors
            raise
        except Exception as exc:
            if not is_expected(exc):
                raise
            fail(message(exc))


def new_app(help: str) -> typer.Typer:
    """A typer app that prints plain help and plain errors (no rich tracebacks of user mistakes)."""
    return typer.Typer(help=help, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                       rich_markup_mode=None, cls=GuardedGroup)


def fail(message: str, code: int = 2) -> None:
    """Print `error: message` in red on stderr and exit with `code` (2: bad input or settings). Called while an
    exception is handled, `--debug` prints its traceback first."""
    if debug_enabled() and sys.exc_info()[1] is not None:
        traceback.print_exc(file=sys.stderr)
    typer.secho(f"error: {message}", err=True, fg="red")
    raise typer.Exit(code)


def validation_line(exc, where: str, what: str = "settings") -> str:
    """A pydantic ValidationError as one line: where, then each field and why (`a.b: reason; c: reason`)."""
    problems = [f"{'.'.join(str(x) for x in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors()]
    return f"{where}: invalid {what}, nothing was started: " + "; ".join(problems)
