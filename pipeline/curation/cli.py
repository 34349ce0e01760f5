"""`geopixeld curate export | import | status | repair`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from pipeline.contracts.cli_errors import fail as _fail, new_app
from pydantic import ValidationError

curate_app = new_app("Curation: HTML sheets a curator opens in any browser (no server), and their decisions brought back.")


def _policy(value: Optional[str]) -> Optional[str]:
    from pipeline.curation.policies import POLICIES

    if value is not None and value not in POLICIES:
        _fail(f"--policy must be one of {', '.join(POLICIES)}, not {value!r}")
    return value


@curate_app.command("export")
def export_cmd(
    out: Annotated[Path, typer.Argument(help="Output root holding <split>/records (drafted records).")],
    split: Annotated[str, typer.Option(help="Split to curate.")] = "test",
    per_sheet: Annotated[int, typer.Option(help="Patches per sheet (one HTML file each).")] = 50,
    status: Annotated[str, typer.Option(help="ok (grounded records), failed (those that failed validation) or any.")] = "ok",
    drafter: Annotated[str, typer.Option(help="any, template, lmm or replay: only records drafted by this drafter.")] = "any",
    undecided: Annotated[bool, typer.Option("--undecided/--all", help="Leave out patches already decided (default), or "
                                            "export them too.")] = True,
    patch: Annotated[Optional[list[str]], typer.Option(help="Only this patch id; repeatable.")] = None,
    limit: Annotated[Optional[int], typer.Option(help="At most this many patches.")] = None,
    flagged: Annotated[bool, typer.Option("--flagged", help="Only patches with a failed verification check.")] = False,
    order: Annotated[str, typer.Option(help="records (the records' order) or risk (the most failed verification "
                                       "checks first).")] = "records",
    image_format: Annotated[str, typer.Option(help="Embed patch images as jpeg (smaller sheets) or png (as drafted).")] = "jpeg",
    policy: Annotated[Optional[str], typer.Option(help="Policy deciding what counts as decided (latest or third-look); "
                                                  "default: the one of the last import.")] = None,
) -> None:
    """Write self-contained HTML sheets (images, masks, phrases; no network) under OUT/<split>/curation/exports/."""
    from pipeline.curation.export import ExportFilter, RecordsNotReady, SheetSettings, export_sheets

    try:
        flt = ExportFilter(status=status, drafter=drafter, undecided=undecided, patch_ids=patch or [], limit=limit,
                           flagged=flagged, order=order)
        settings = SheetSettings(per_sheet=per_sheet, image_format=image_format)
    except ValidationError as exc:
        _fail("invalid options: " + "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))
    try:
        result = export_sheets(out, split, flt, settings, _policy(policy))
    except (RecordsNotReady, ValueError) as exc:
        _fail(str(exc))
    typer.echo(result.table())


@curate_app.command("import")
def import_cmd(
    out: Annotated[Path, typer.Argument(help="Output root the sheets were exported from.")],
    files: Annotated[list[Path], typer.Argument(help="Decision files downloaded from the sheets (one per sheet).")],
    policy: Annotated[Optional[str], typer.Option(help="When curators disagree: latest (the latest decision wins) or "
                                                  "third-look (the patch waits for another curator). Default: the "
                                                  "policy of the last import, else latest.")] = None,
    max_bytes: Annotated[int, typer.Option(help="Refuse decision files larger than this.")] = 16 * 1024 * 1024,
) -> None:
    """Check decision files against their export, record them in the ledger and write OUT/<split>/curated."""
    from pipeline.curation.importer import CuratedNotWritten, import_decisions

    try:
        result = import_decisions(out, files, _policy(policy), max_bytes)
    except CuratedNotWritten as exc:
        _fail(str(exc))
    except ValueError as exc:  # a bad decision file, a damaged ledger or curated manifest, records not ready
        _fail(f"{exc} (nothing was imported)")
    typer.echo(result.table())


@curate_app.command("status")
def status_cmd(
    out: Annotated[Path, typer.Argument(help="Output root.")],
    split: Annotated[str, typer.Option(help="Split.")] = "test",
    policy: Annotated[Optional[str], typer.Option(help="latest or third-look (default: the policy of the last import).")] = None,
) -> None:
    """Where curation of a split stands: patches decided, phrases accepted/edited/rejected, disagreements."""
    from pipeline.curation.curated import compute
    from pipeline.curation.export import RecordsNotReady

    try:
        c = compute(out, split, _policy(policy))
    except (RecordsNotReady, ValueError) as exc:
        _fail(str(exc))
    typer.echo(c.summary.table())
    for conflict in c.conflicts:
        typer.echo(f"  disagreement: {conflict.line()}")


@curate_app.command("repair")
def repair_cmd(
    out: Annotated[Path, typer.Argument(help="Output root.")],
    split: Annotated[str, typer.Option(help="Split whose ledger to repair.")] = "test",
) -> None:
    """Make a damaged ledger usable: keep intact shards, move damaged ones into ledger/damaged/, rebuild the
    manifest, and name the decision files to import again."""
    from pipeline.curation.ledger import repair

    try:
        r = repair(out, split)
    except OSError as exc:
        _fail(f"cannot repair the ledger of split {split!r}: {exc}")
    typer.echo(r.table())
