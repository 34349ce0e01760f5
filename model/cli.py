"""`geopixeld train` and `geopixeld predict` (registered in pipeline/cli.py). Heavy imports wait for the command."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer


from pipeline.contracts.cli_errors import fail as _fail
from pipeline.contracts.overrides import OverrideError, parse_assignments


def _overrides(items: list[str] | None) -> dict:
    try:
        return parse_assignments(items)
    except OverrideError as exc:
        _fail(str(exc))


def train(
    config: Annotated[Optional[Path], typer.Option(help="Training YAML (configs/train/*.yaml, docs/model.md); "
                                                  "default: the paper's settings for the released weights.")] = None,
    data: Annotated[Optional[str], typer.Option(help="Training records: a build root (its curated records once "
                                                "curation finished, else OUT/<split>/records), a records or dataset "
                                                "folder, or a GeoPixelD JSON.")] = None,
    out: Annotated[Path, typer.Option(help="Run folder: log.jsonl, checkpoints/, final/ (the merged model).")] = Path("runs/geopixel"),
    resume: Annotated[bool, typer.Option("--resume/--no-resume", help="Continue from the latest checkpoint in OUT "
                                         "(exactly: same batches, same RNG).")] = True,
    overrides: Annotated[Optional[list[str]], typer.Option("--set", help="Override a config value, e.g. "
                                                           "--set train.max_steps=20 (repeatable).")] = None,
    loader_only: Annotated[int, typer.Option("--loader-only", help="Only time the data loader over N batches "
                                             "(samples/s) and exit.")] = 0,
) -> None:
    """Fine-tune GeoPixel (LoRA) on grounded-conversation records; merge the LoRA and save OUT/final."""
    from pydantic import ValidationError

    from model.records import DataError
    from model.train import measure_loader
    from model.train import train as run_train
    from model.train_config import load_train_config
    from model.weights import WeightsError

    try:
        cfg = load_train_config(config, _overrides(overrides))
        if loader_only:
            r = measure_loader(cfg, data, loader_only)
            typer.echo(f"loader: {r['samples']} samples in {r['seconds']:.2f}s = {r['samples_per_s']:.2f} samples/s "
                       f"({r['workers']} workers)")
            return
        result = run_train(cfg, out, data, "auto" if resume else None, log=typer.echo)
    except (ValidationError, ValueError, DataError, WeightsError, FileNotFoundError) as exc:
        _fail(str(exc))
    last = result["history"][-1] if result["history"] else None
    if last:
        typer.echo(f"done: {result['steps']} steps, last loss {last['loss']:.4f}; merged model in {result['final']}")
    else:
        typer.echo(f"nothing to do: already at step {result['steps']}; merged model in {result['final']}")


def predict(
    model: Annotated[Path, typer.Option(help="A model folder written by `geopixeld train` (OUT/final).")],
    images: Annotated[Path, typer.Option(help="An image, a folder of images, a split folder (OUT/<split>) or a "
                                         "build root with --split (its records or plans list the patches), a "
                                         "dataset folder or a GeoPixelD layout.")],
    out: Annotated[Path, typer.Option(help="Folder for predictions-NNNNN.parquet (GCG record columns).")],
    split: Annotated[Optional[str], typer.Option(help="Split name for the rows (default: from the records).")] = None,
    question: Annotated[Optional[str], typer.Option(help="The user turn (default: GeoPixelD's GCG question).")] = None,
    max_new_tokens: Annotated[int, typer.Option(help="Longest answer in tokens.")] = 1024,
    device: Annotated[Optional[str], typer.Option(help="cuda or cpu (default: cuda when available).")] = None,
    limit: Annotated[Optional[int], typer.Option(help="Only the first N patches.")] = None,
    markup_constraint: Annotated[bool, typer.Option("--markup-constraint/--no-markup-constraint",
                                                    help="Keep the <p> ... </p> [SEG] markup well formed while "
                                                    "decoding: [SEG] only right after </p> and always after it, "
                                                    "</p> only inside an open <p>, no end inside a phrase "
                                                    "(docs/model.md).")] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Describe images with grounded phrases and one mask per [SEG]; rerunnable (finished shards are kept)."""
    from pipeline.contracts.geopixeld_format import GCG_QUESTION

    from model.predict import run_predict
    from model.weights import WeightsError

    try:
        counts = run_predict(model, images, out, split, question or GCG_QUESTION, max_new_tokens, device, limit=limit,
                             log=typer.echo, markup=markup_constraint, progress=not quiet)
    except (ValueError, WeightsError, FileNotFoundError, OSError) as exc:
        _fail(str(exc))
    typer.echo(json.dumps(counts))
