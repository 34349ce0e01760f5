"""The `geopixeld` command line. Expected errors (bad input, settings, files) end as one `error:` line and exit
code 2 (`contracts.cli_errors.GuardedGroup`); `--debug` or GEOPIXELD_DEBUG=1 adds their traceback."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer
from pipeline.contracts.cli_errors import DEBUG_ENV, fail as _fail, new_app, validation_line
from pydantic import ValidationError

from pipeline.contracts.config import load_config_file, load_plan_config
from pipeline.contracts.overrides import apply_overrides, parse_assignments

app = new_app("geopixeld: build GeoPixelD-style grounded-conversation datasets from iSAID or any COCO-style aerial dataset.")


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", envvar=DEBUG_ENV, help="Print the traceback of an error too "
                                        f"(also {DEBUG_ENV}=1).")] = False,
) -> None:
    # read from the root context by contracts.cli_errors.GuardedGroup; no docstring: the app's help stays
    pass


@contextmanager
def _output_held(out: Path, create: bool):
    """Hold OUT's build lock (driver.output_lock) for a CLI stage, so that a rerun never races a leftover or
    concurrent run in the same folder; `create` makes OUT after proving it writable (plan), else a missing OUT is
    left to the stage to report (draft: its plans are not ready)."""
    from pipeline.driver import check_writable, output_lock

    if create:
        check_writable(out)
    if not Path(out).is_dir():
        yield
        return
    with output_lock(out, log=lambda m: typer.echo(m, err=True)):
        yield


@app.command()
def plan(
    root: Annotated[Path, typer.Argument(help="Dataset root, e.g. an iSAID folder holding <split>/images and <split>/Annotations.")],
    out: Annotated[Path, typer.Argument(help="Output root; plans are written to OUT/<split>/plans/*.parquet.")],
    split: Annotated[Optional[str], typer.Option(help="Split to plan, by its released name (train or test); test reads ROOT/val "
                                                      "(source.split_folders in --config). [default: test]")] = None,
    fmt: Annotated[
        Optional[str],
        typer.Option("--format", help="Input layout: isaid (COCO JSON + images), isaid-masks (the two mask PNGs beside each "
                     "image), isaid-patches (devkit patches, names carry their window), coco (any COCO dataset; "
                     "needs --annotations and a category map in --config). [default: isaid]"),
    ] = None,
    annotations: Annotated[Optional[str], typer.Option(help="Annotation JSON relative to ROOT (default: <split>/Annotations/iSAID_<split>.json).")] = None,
    images: Annotated[Optional[str], typer.Option(help="Image folder relative to ROOT (default: <split>/images).")] = None,
    config: Annotated[Optional[Path], typer.Option(help="YAML or JSON run config (see docs/config.md); options given here override it.")] = None,
    patch_size: Annotated[Optional[int], typer.Option(help="Patch side in px. [default: 800]")] = None,
    overlap: Annotated[Optional[int], typer.Option(help="Overlap of neighbouring patches in px. [default: 200]")] = None,
    shard_images: Annotated[Optional[int], typer.Option(help="Source images per Parquet shard, the unit of resume. [default: 8]")] = None,
    workers: Annotated[Optional[int], typer.Option(help="Worker processes; 0 uses every core. [default: 0]")] = None,
    write_patches: Annotated[Optional[bool], typer.Option("--patches/--no-patches", help="Write patch PNGs. [default: on]")] = None,
    write_som: Annotated[Optional[bool], typer.Option("--som/--no-som", help="Write set-of-marks PNGs. [default: on]")] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Stop at the first bad record instead of skipping it into the quarantine report.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace plans of a different config or input already in OUT.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Tile a dataset split into patches and write one annotation plan per kept patch as Parquet."""
    from pipeline.contracts.geometry import GeometryError
    from pipeline.contracts.fileio import UnsafePath
    from pipeline.contracts.quarantine import BadRecord
    from pipeline.ingest import SourceError
    from pipeline.contracts.shards import ManifestMismatch
    from pipeline.planning.stage import report, run_plan

    try:
        cfg = load_plan_config(
            config,
            {
                "source.root": str(root), "source.split": split, "source.format": fmt,
                "source.annotations": annotations, "source.images": images,
                "output.out": str(out), "output.shard_images": shard_images,
                "output.write_patches": write_patches, "output.write_som": write_som,
                "tiling.patch_size": patch_size, "tiling.overlap": overlap,
                "workers": workers, "strict": strict or None,
            },
        )
    except ValidationError as exc:
        _fail(validation_line(exc, str(config or "plan options"), "configuration"))
    except ValueError as exc:  # the --config file missing, not YAML, not a mapping: its path is named
        _fail(str(exc))
    try:
        with _output_held(cfg.output.out, create=True):
            summary = run_plan(cfg, progress=not quiet, overwrite=overwrite)
    except BadRecord as exc:
        _fail(f"{exc}\n(--strict stops at the first bad record; finished shards are kept)")
    except (SourceError, ManifestMismatch, UnsafePath, GeometryError) as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"{exc.filename or ''} {exc.strerror or exc}".strip())
    typer.echo(report(summary))


@app.command()
def draft(
    out: Annotated[Path, typer.Argument(help="Output root of `geopixeld plan` (holds <split>/plans).")],
    split: Annotated[str, typer.Option(help="Split to draft.")] = "test",
    vllm_url: Annotated[Optional[str], typer.Option(envvar="GEOPIXELD_VLLM_URL", help="vLLM server URL(s), comma-separated, "
                        "for the holistic, instance and group tiers; without one the offline template drafter runs.")] = None,
    model: Annotated[Optional[str], typer.Option(envvar="GEOPIXELD_VLLM_MODEL", help="Served model name (--served-model-name).")] = None,
    merge_url: Annotated[Optional[str], typer.Option(envvar="GEOPIXELD_MERGE_URL", help="Server(s) for the merge (a text LLM); default: --vllm-url.")] = None,
    merge_model: Annotated[Optional[str], typer.Option(envvar="GEOPIXELD_MERGE_MODEL", help="Model of the merge server; default: --model.")] = None,
    tier_url: Annotated[Optional[list[str]], typer.Option(help="TIER=URL[,URL]: send one tier (holistic, instance, group, merge, or judge: the LMM judge's) to its own server(s); repeatable.")] = None,
    tier_model: Annotated[Optional[list[str]], typer.Option(help="TIER=MODEL: the served model of a --tier-url tier (default: --model); repeatable.")] = None,
    api_key_env: Annotated[str, typer.Option(help="Name of the environment variable holding the servers' API key (never logged).")] = "GEOPIXELD_VLLM_API_KEY",
    instance_mode: Annotated[str, typer.Option(help="per-object (one request per marked object, as in the paper) or per-patch (one request for all).")] = "per-object",
    max_in_flight: Annotated[Optional[int], typer.Option(help="A cap on the requests in flight at once to each pool "
                             "of servers. [default: --in-flight-per-endpoint for each server]")] = None,
    in_flight_per_endpoint: Annotated[int, typer.Option(help="Requests in flight a server: twice its vllm serve "
                                      "--max-num-seqs, so its batch stays full (docs/lmm.md).")] = 512,
    temperature: Annotated[float, typer.Option(help="Sampling temperature.")] = 0.2,
    prompts_dir: Annotated[Optional[Path], typer.Option("--prompts", help="Folder of prompt templates that override the bundled ones (holistic.txt, instance.txt, ...).")] = None,
    drafter: Annotated[Optional[str], typer.Option(help="template (offline, no model), lmm (vLLM at --vllm-url) or replay "
                       "(drafts made elsewhere, from --replies). [default: lmm with --vllm-url, else template]")] = None,
    replies: Annotated[Optional[Path], typer.Option(help="--drafter replay: a JSONL file, one {patch_id, tier, tag, text} "
                       "object per line (docs/lmm.md); validated, grounded and merged like LMM replies.")] = None,
    schema_probe: Annotated[bool, typer.Option("--schema-probe/--no-schema-probe", help="First prove each server "
                            "enforces response_format (one request each); a server that ignores it stops the run, named.")] = True,
    verification: Annotated[Optional[Path], typer.Option(help="YAML or JSON of the verification settings (as for "
                            "`geopixeld verify --config`): each shard is verified as it is drafted; with policy drop, an "
                            "LMM instance or group text that fails a check is asked once more with new seeds before it "
                            "is dropped.")] = None,
    judge: Annotated[bool, typer.Option("--judge", help="The LMM judge: one more yes/no request per kept instance and "
                     "group sentence (docs/verification.md); a no is the check `judge` in the records.")] = False,
    estimate: Annotated[bool, typer.Option("--estimate", help="Print what LMM drafting of the split will cost "
                        "(requests, prompt, image and completion tokens per tier, hours) and send nothing.")] = False,
    family: Annotated[str, typer.Option(help="--estimate: the annotator family whose image-token formula applies: "
                      "qwen2.5-vl, internvl3 or gemma3.")] = "qwen2.5-vl",
    requests_per_second: Annotated[Optional[float], typer.Option(help="--estimate: measured server throughput, "
                                   "requests a second.")] = None,
    tokens_per_second: Annotated[Optional[float], typer.Option(help="--estimate: measured generation throughput, "
                                 "tokens a second.")] = None,
    tokenizer: Annotated[Optional[Path], typer.Option(help="--estimate: a local Hugging Face tokenizer folder to count "
                         "prompt text with (default: 4 characters a token).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Draft grounded descriptions for every plan into OUT/<split>/records (vLLM, replayed drafts, or the offline
    template drafter)."""
    from pipeline.contracts.shards import NotReady
    from pipeline.drafting.stage import run_draft
    from pipeline.drafting.lmm_client import LMMUnavailable
    from pipeline.drafting.schema_probe import StructuredOutputIgnored
    from pipeline.verification.stage import draft_verifier, drafting_screen

    if estimate:
        if instance_mode not in ("per-object", "per-patch"):
            _fail("--instance-mode must be per-object or per-patch")
        try:
            typer.echo(_estimate(out, split, family, instance_mode, requests_per_second, tokens_per_second, tokenizer,
                                 prompts_dir, judge))
        except (NotReady, ValueError) as exc:
            _fail(str(exc))
        return

    drafter = drafter or ("lmm" if vllm_url else "template")
    if drafter not in ("template", "lmm", "replay"):
        _fail(f"--drafter must be template, lmm or replay, not {drafter!r}")
    if (drafter == "replay") != (replies is not None):
        _fail("--drafter replay needs --replies FILE.jsonl" if replies is None else "--replies needs --drafter replay")
    if drafter == "lmm" and not vllm_url:
        _fail("--drafter lmm needs --vllm-url (or GEOPIXELD_VLLM_URL)")
    vconfig = _verification_config(verification) if verification is not None else None
    judge = judge or bool(vconfig and vconfig.enabled and vconfig.judge)
    if judge and drafter != "lmm":
        _fail(f"--judge asks an LMM about every sentence: it needs --drafter lmm (--vllm-url), not {drafter}")
    lmm = None
    if drafter == "lmm":
        if not model:
            _fail("--model (or GEOPIXELD_VLLM_MODEL) is needed with --vllm-url")
        if instance_mode not in ("per-object", "per-patch"):
            _fail("--instance-mode must be per-object or per-patch")
        from pipeline.drafting.lmm_drafter import LMMSettings

        eps = _endpoints(vllm_url, model, api_key_env)
        merge = _endpoints(merge_url, merge_model or model, api_key_env) if merge_url else None
        models = dict(_pair(v, "--tier-model") for v in tier_model or [])
        tiers = {}
        for v in tier_url or []:
            tier, urls = _pair(v, "--tier-url")
            tiers[tier] = _endpoints(urls, models.get(tier, model), api_key_env)
        screen, screen_id = drafting_screen(vconfig) if vconfig is not None else (None, None)
        lmm = LMMSettings(eps, merge_endpoints=merge, tier_endpoints=tiers, instance_mode=instance_mode,
                          temperature=temperature, max_in_flight=max_in_flight,
                          in_flight_per_endpoint=in_flight_per_endpoint, prompts_dir=prompts_dir,
                          screen=screen, screen_id=screen_id, probe_schema=schema_probe, judge=judge)
    try:
        with _output_held(out, create=False):
            summary = run_draft(out, split, progress=not quiet, lmm=lmm, replies=replies, verify=draft_verifier(vconfig))
    except (NotReady, LMMUnavailable, StructuredOutputIgnored, ValueError) as exc:
        _fail(str(exc))
    typer.echo(summary.table())


@app.command()
def verify(
    out: Annotated[Path, typer.Argument(help="Output root holding <split>/records (drafted) and <split>/plans.")],
    split: Annotated[str, typer.Option(help="Split to verify.")] = "test",
    policy: Annotated[Optional[str], typer.Option(help="keep (record the failed checks), flag (also send flagged "
                      "patches to curators) or drop (drop failed sentences, assemble the rest). [default: flag]")] = None,
    config: Annotated[Optional[Path], typer.Option(help="YAML or JSON of the verification settings (docs/verification.md: "
                      "policy, and the checks' synonyms, tolerances and bounds under `settings`).")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="KEY=VALUE over the file, KEY dotted "
                    "(settings.position_tolerance=0).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Check every drafted text against its plan (category, position, count, leakage, absent objects, form, merge
    fidelity) and write the failed checks into the records (a build does this after drafting)."""
    from pipeline.contracts.shards import NotReady
    from pipeline.verification.stage import run_verify

    cfg = _verification_config(config, set_, policy)
    try:
        with _output_held(out, create=False):
            summary = run_verify(out, split, cfg, progress=not quiet)
    except (NotReady, ValueError) as exc:
        _fail(str(exc))
    typer.echo(summary.table())


def _verification_config(path: Path | None, assignments: list[str] | None = None, policy: str | None = None):
    """The verification settings of `verify --config --set --policy` and `draft --verification`, validated, or
    one error line naming where they came from."""
    from pipeline.verification.stage import VerificationConfig

    try:
        data = load_config_file(path) if path else {}
        apply_overrides(data, {**parse_assignments(assignments), **({"policy": policy} if policy else {})})
        return VerificationConfig.model_validate(data)
    except ValidationError as exc:
        _fail(validation_line(exc, str(path or "--set"), "verification settings"))
    except ValueError as exc:
        _fail(str(exc))


@app.command("export")
def export(
    out: Annotated[Path, typer.Argument(help="Output root holding <split>/records (or <split>/curated, which wins once curation finished it).")],
    dest: Annotated[Path, typer.Argument(help="Folder for the GeoPixelD-layout files.")],
    split: Annotated[str, typer.Option(help="Split to export.")] = "test",
    prefix: Annotated[str, typer.Option(help="Path prefix written into the JSON, as in the release.")] = "data/GeoPixelD",
) -> None:
    """Export grounded records in the released GeoPixelD layout (index JSON + per-patch JSON with polygons)."""
    from pipeline.contracts.shards import NotReady
    from pipeline.release.geopixeld import export_split

    try:
        path = export_split(out, split, dest, prefix)
    except (NotReady, ValueError) as exc:
        _fail(str(exc))
    typer.echo(f"GeoPixelD layout: {path} and {dest / split}/")


@app.command("demo-data")
def demo_data(
    out: Annotated[Path, typer.Argument(help="Folder to write the synthetic iSAID-format dataset into.")],
    scale: Annotated[str, typer.Option(help="tiny (tests), small (make demo) or isaid (benchmark: ~1,400 images, ~470k instances).")] = "small",
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same dataset.")] = 0,
    geotiff: Annotated[bool, typer.Option("--geotiff", help="Write images as georeferenced GeoTIFFs.")] = False,
    patches: Annotated[bool, typer.Option("--devkit-patches", help="Also write the iSAID devkit's patch layout under OUT/patches.")] = False,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Write a seeded synthetic dataset laid out like the iSAID release (images, COCO JSON, mask PNGs)."""
    from pipeline.synthetic.isaid import SCALES, generate

    if scale not in SCALES:
        _fail(f"--scale must be one of {', '.join(SCALES)}, not {scale!r}")
    counts = generate(out, scale=scale, seed=seed, geotiff=geotiff, patches=patches, workers=workers, progress=not quiet)
    for split, c in counts.items():
        typer.echo(f"{split}: {c['images']} images, {c['instances']} instances -> {out / split}")


@app.command()
def build(
    params_file: Annotated[Optional[Path], typer.Option("--params", help="YAML or JSON file of build parameters "
                           "(docs/flows.md); without one, the defaults (source.root demo/data, read as real data: `geopixeld demo` "
                           "builds the synthetic demo).")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="KEY=VALUE over the file, KEY dotted "
                    "(output.out=builds/x, splits='[val]'); VALUE is read as YAML (or JSON) when it parses, else as text.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Run the whole build-geopixeld flow in this process (Prefect starts a temporary server; none is needed)."""
    try:
        data = load_config_file(params_file) if params_file else {}
        apply_overrides(data, parse_assignments(set_))
    except ValueError as exc:  # the file missing, not YAML, not a mapping; a bad --set (OverrideError)
        _fail(str(exc))
    if quiet:
        data["progress"] = False
    result = _run_build(data, str(params_file or "--set"))
    from flows.in_process import summary_table

    typer.echo(summary_table(result))


def _run_build(data: dict, where: str) -> dict:
    from flows.params import BuildParams
    from flows.in_process import run_build
    from pipeline.contracts.shards import ManifestMismatch, NotReady

    try:
        params = BuildParams.model_validate(data)
    except ValidationError as exc:
        _fail(validation_line(exc, where, "parameters"))
    try:
        _check_before_work(params, where)
        return run_build(params)
    except (OSError, ManifestMismatch, NotReady) as exc:  # OutputNotWritable, a full disk: the path is named
        _fail(str(exc))


def _check_before_work(params, where: str) -> None:
    """What can be known before Prefect starts (seconds): the source root is there (or will be generated), the
    output folder is writable. Else the build fails after start-up, with the flow's traceback besides."""
    from pipeline.driver import check_writable

    root = Path(params.source.root)
    if params.source.synthetic is None and not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist"
        _fail(f"{where}: source.root {root} {what}; point it at the dataset, or set source.synthetic (tiny or "
              "small) to generate the demo set there. Nothing was started.")
    check_writable(params.output.out)


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Folder for the demo data (OUT/data) and the build (OUT/out).")] = Path("demo"),
    scale: Annotated[str, typer.Option(help="Demo data scale: tiny or small.")] = "small",
    workers: Annotated[int, typer.Option(help="Worker processes; 0 uses every core.")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """The first thing to run: the build-geopixeld flow, in this process, on a synthetic demo dataset.

    Drafting uses vLLM when GEOPIXELD_VLLM_URL and GEOPIXELD_VLLM_MODEL are set, else the offline template drafter.
    """
    import os

    if scale not in ("tiny", "small"):
        _fail(f"--scale must be tiny or small, not {scale!r}")
    data = {"source": {"root": str(out / "data"), "synthetic": scale}, "output": {"out": str(out / "out")},
            "workers": workers, "progress": not quiet}
    url = os.environ.get("GEOPIXELD_VLLM_URL")
    if url:
        model = os.environ.get("GEOPIXELD_VLLM_MODEL")
        if not model:
            _fail("GEOPIXELD_VLLM_URL is set but GEOPIXELD_VLLM_MODEL (the served model name) is not")
        data["lmm"] = {"endpoints": {"urls": [u.strip() for u in url.split(",") if u.strip()], "model": model}}
    typer.echo(f"Building the {scale} synthetic demo with the build-geopixeld flow (in this process) ...")
    result = _run_build(data, "demo")
    from flows.in_process import summary_table

    b, ds = out / "out", Path(result["dataset"])
    typer.echo(summary_table(result))
    typer.echo(
        "\nDone. Open next:\n"
        f"  {ds}/README.md       the dataset card: statistics beside the paper's\n"
        f"  {ds}/data/           Parquet shards per split: python -c \"import pandas as pd; "
        f"print(pd.read_parquet('{ds}/data/train').head())\"\n"
        f"  {ds}/geopixeld/      the same records in the released GeoPixelD layout\n"
        f"  {b}/test/som/        set-of-marks images (numbered key instances, 3x3 grid)\n"
        f"  {b}/test/records/    grounded descriptions ("
        + ("drafted with vLLM" if url else "offline template drafter; set GEOPIXELD_VLLM_URL and "
           "GEOPIXELD_VLLM_MODEL to draft with vLLM") + ")\n"
        f"  geopixeld curate export {b} --split test    the test split is held back until curated: "
        "sheets to decide on (docs/curation.md)\n"
        "  docs/dataset-schema.md what every column means; docs/flows.md to run it as a Prefect deployment"
    )


def _estimate(out: Path, split: str, family: str, mode: str, rps: float | None, tps: float | None,
              tokenizer: Path | None, prompts_dir: Path | None, judge: bool = False) -> str:
    """`geopixeld draft --estimate`: the chosen mode's cost beside the other mode's."""
    from pipeline.drafting.estimate import estimate_report
    from pipeline.drafting.stage import iter_plans

    for name, v in (("--requests-per-second", rps), ("--tokens-per-second", tps)):
        if v is not None and not (v > 0 and v < float("inf")):
            raise ValueError(f"{name} must be a positive number, not {v}")
    count = None
    if tokenizer is not None:
        try:
            from transformers import AutoTokenizer
        except ImportError as exc:
            raise ValueError("--tokenizer needs transformers (pip install -e '.[train]')") from exc
        try:
            tok = AutoTokenizer.from_pretrained(str(tokenizer), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise ValueError(f"{tokenizer}: not a tokenizer folder ({exc})") from exc
        count = lambda text: len(tok(text, add_special_tokens=False)["input_ids"])  # noqa: E731
    return estimate_report(list(iter_plans(out, split)), family, mode, count, prompts_dir, rps, tps, judge)


def _endpoints(urls: str, model: str, api_key_env: str):
    """Comma-separated server URLs -> one Endpoint each, all serving `model`."""
    from pipeline.drafting.lmm_client import Endpoint

    return [Endpoint(u.strip(), model, api_key_env) for u in urls.split(",") if u.strip()]


def _pair(value: str, option: str) -> tuple[str, str]:
    tier, sep, rest = value.partition("=")
    if not sep or tier not in ("holistic", "instance", "group", "merge") or not rest:
        _fail(f"{option} takes TIER=VALUE with TIER one of holistic, instance, group, merge; got {value!r}")
    return tier, rest


from model.eval.cli import eval_command  # noqa: E402  (geopixeld eval; imports its metrics only when run)

app.command("eval")(eval_command)

from pipeline.curation.cli import curate_app  # noqa: E402  (geopixeld curate export|import|status)

app.add_typer(curate_app, name="curate")

from model.cli import predict as predict_command, train as train_command  # noqa: E402  (geopixeld train|predict)

app.command("train")(train_command)
app.command("predict")(predict_command)


def main() -> None:
    app(prog_name="geopixeld")


if __name__ == "__main__":
    sys.exit(main())
