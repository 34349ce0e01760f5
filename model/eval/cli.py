"""`geopixeld eval PRED GT...`: the command; heavy imports wait until it runs so `geopixeld --help` stays quick."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from pipeline.contracts.cli_errors import fail as _fail


def eval_command(
    pred: Annotated[Path, typer.Argument(help="Predictions: our Parquet (file or folder), a GeoPixelD JSON layout "
                                         "(index file or folder), or a folder of GLaMM per-image prediction JSONs.")],
    gt: Annotated[list[Path], typer.Argument(help="Ground truth: record Parquet (folder, files, a build root with "
                                             "--split), a release dataset folder, a GeoPixelD JSON layout, or "
                                             "GLaMM's <split>_gcg_coco_mask_gt.json + _caption_gt.json (their "
                                             "folder with --split, or either file).")],
    out: Annotated[Optional[Path], typer.Option(help="Write eval.md, eval.json, per_image.csv/.parquet and "
                                                "per_phrase.csv here.")] = None,
    split: Annotated[Optional[str], typer.Option(help="Split to read from a build root, a dataset folder or a folder "
                                                 "of GLaMM's ground truth (val, test).")] = None,
    name: Annotated[Optional[str], typer.Option(help="Row label of this run in the table. [default: PRED's name]")] = None,
    embedder: Annotated[Optional[str], typer.Option(envvar="GEOPIXELD_EVAL_EMBEDDER", help="Local sentence-transformers "
                                                    "or BERT folder for phrase similarity. [default: the packaged "
                                                    "all-MiniLM-L6-v2]")] = None,
    device: Annotated[str, typer.Option(help="Torch device of the phrase embedder.")] = "cpu",
    iou_threshold: Annotated[float, typer.Option(help="Mask IoU a recalled phrase needs.")] = 0.5,
    similarity_threshold: Annotated[float, typer.Option(help="Phrase similarity a recalled phrase needs.")] = 0.5,
    recall_matching: Annotated[str, typer.Option(help="glamm (GLaMM's loop, stops at the first best-IoU pair that "
                                                 "fails a threshold) or admissible.")] = "glamm",
    missing_as_empty: Annotated[bool, typer.Option("--missing-as-empty", help="Score ground-truth images without a "
                                                   "prediction as empty predictions instead of refusing.")] = False,
    unmatched_masks: Annotated[bool, typer.Option("--unmatched-masks", help="Accept GLaMM predictions whose phrases "
                                                  "and pred_masks differ in number, paired by position as GLaMM "
                                                  "does (see docs/eval.md).")] = False,
) -> None:
    """Score grounded-conversation predictions with GLaMM's metrics (METEOR, CIDEr, AP50, mIoU, Recall).

    Prints the table beside the GeoPixel paper's rows; see docs/eval.md for every definition.
    """
    from pydantic import ValidationError

    from model.eval.caption_metrics import JavaMissing
    from model.eval.embedder import EmbedderError
    from model.eval.report import markdown, write_report
    from model.eval.run import EvalSettings, evaluate
    from model.eval.types import EvalInputError

    try:
        settings = EvalSettings(embedder=embedder, device=device, iou_threshold=iou_threshold,
                                similarity_threshold=similarity_threshold, recall_matching=recall_matching,
                                missing="empty" if missing_as_empty else "error", split=split,
                                unmatched_masks=unmatched_masks)
    except ValidationError as exc:
        _fail(f"invalid settings:\n{exc}")
    label = name or pred.name
    try:
        result = evaluate([pred], list(gt), settings)
    except EvalInputError as exc:
        _fail(str(exc))
    except (EmbedderError, JavaMissing) as exc:
        _fail(str(exc))
    typer.echo(markdown(result, label))
    if out is not None:
        typer.echo("Written: " + ", ".join(str(p) for p in write_report(result, out, label)))
