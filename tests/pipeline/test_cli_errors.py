"""Errors, not tracebacks (issue 12): bad input through the real `geopixeld` CLI ends as one `error:` line on
stderr naming the file, exit code 2, nothing written lost; the traceback only with --debug; a bug keeps its
traceback (exit 1)."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli import app

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]


def refused(res, *names: str) -> str:
    """Exit 2, stderr one `error:` line naming every `names`, no traceback; returns that line."""
    assert res.exit_code == 2, (res.exit_code, res.output, res.exception)
    err = res.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    assert "Traceback" not in res.output
    for n in names:
        assert str(n) in err, (n, err)
    return err


@pytest.fixture
def no_prefect(monkeypatch):
    """The build must be refused before Prefect starts: starting the flow fails the test."""
    import flows.in_process

    def started(params):
        raise AssertionError("the flow was started")

    monkeypatch.setattr(flows.in_process, "run_build", started)


@pytest.fixture(scope="module")
def planned(tiny_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("planned")
    res = runner.invoke(app, ["plan", str(tiny_root), str(out), "--split", "val", "-q", "--workers", "1",
                              "--no-patches", "--no-som"])
    assert res.exit_code == 0, res.output
    return out


def copy_plans(planned: Path, dest: Path) -> Path:
    import shutil

    shutil.copytree(planned, dest)
    return dest


# --- parameter and config files ---------------------------------------------------------------------------------

@pytest.mark.parametrize("content, says", [(None, "No such file"), ("a: [1,\n", "not valid YAML at line 2"),
                                           ("- 1\n- 2\n", "must hold a mapping, not list")])
def test_a_bad_params_file_is_named(tmp_path, no_prefect, content, says):
    params = tmp_path / "build.yaml"
    if content is not None:
        params.write_text(content)
    err = refused(runner.invoke(app, ["build", "--params", str(params)]), params)
    assert says in err


@pytest.mark.parametrize("content, says", [(None, "No such file"), ("tiers: {max_marks: 3\n", "not valid YAML")])
def test_a_bad_plan_config_is_named_before_any_work(tiny_root, tmp_path, content, says):
    cfg = tmp_path / "run.yaml"
    if content is not None:
        cfg.write_text(content)
    err = refused(runner.invoke(app, ["plan", str(tiny_root), str(tmp_path / "out"), "--config", str(cfg)]), cfg)
    assert says in err and not (tmp_path / "out").exists()


def test_a_missing_source_root_is_refused_before_prefect_starts(tmp_path):
    """Through `main()` in a fresh process: refused in about the time of an import, Prefect never imported."""
    params = tmp_path / "build.yaml"
    missing = tmp_path / "no-such-data"
    params.write_text(f"source: {{root: {missing}, synthetic: null}}\noutput: {{out: {tmp_path / 'out'}}}\n")
    code = ("import sys\nfrom pipeline.cli import main\nsys.argv = ['geopixeld', 'build', '--params', sys.argv[1]]\n"
            "try:\n    main()\nfinally:\n    print('prefect imported:', 'prefect' in sys.modules, file=sys.stderr)")
    t0 = time.monotonic()
    res = subprocess.run([sys.executable, "-c", code, str(params)], cwd=REPO, capture_output=True, text=True,
                         timeout=60)
    took = time.monotonic() - t0
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert lines[-1] == "prefect imported: False" and len(lines) == 2 and "Traceback" not in res.stderr
    assert lines[0].startswith("error: ") and str(missing) in lines[0] and "source.synthetic" in lines[0]
    assert took < 15  # was 19 s and two tracebacks; an import of the CLI is ~0.5 s
    assert not (tmp_path / "out").exists()


# --- output folders ---------------------------------------------------------------------------------------------

def test_an_output_path_that_is_a_file_is_named(tiny_root, tmp_path, no_prefect):
    out = tmp_path / "out"
    out.write_text("not a folder")
    err = refused(runner.invoke(app, ["plan", str(tiny_root), str(out), "-q", "--workers", "1"]), out)
    assert "file, not a folder" in err and out.read_text() == "not a folder"
    params = tmp_path / "build.yaml"
    params.write_text(json.dumps({"source": {"root": str(tiny_root), "synthetic": None}, "output": {"out": str(out)}}))
    refused(runner.invoke(app, ["build", "--params", str(params)]), out)


def test_a_read_only_output_folder_is_refused_by_the_write_probe(tiny_root, tmp_path, monkeypatch, no_prefect):
    """EROFS as a read-only mount gives it (chmod does not stop root, who runs CI here)."""
    import pipeline.driver as driver

    def read_only(path, *a, **k):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    monkeypatch.setattr(driver, "open", read_only, raising=False)  # the probe's open(); the module global wins
    out = tmp_path / "ro"
    params = tmp_path / "build.yaml"
    params.write_text(json.dumps({"source": {"root": str(tiny_root), "synthetic": None}, "output": {"out": str(out)}}))
    err = refused(runner.invoke(app, ["build", "--params", str(params)]), out)
    assert "read-only file system" in err
    err = refused(runner.invoke(app, ["plan", str(tiny_root), str(out), "-q", "--workers", "1"]), out)
    assert "read-only file system" in err


# --- damaged shards and manifests -------------------------------------------------------------------------------

def test_a_truncated_plans_manifest_is_named_and_kept(planned, tiny_root, tmp_path):
    out = copy_plans(planned, tmp_path / "out")
    manifest = out / "val/plans/_manifest.json"
    half = manifest.read_text()[:200]
    manifest.write_text(half)
    shards = sorted(p.name for p in (out / "val/plans").glob("plans-*.parquet"))
    err = refused(runner.invoke(app, ["plan", str(tiny_root), str(out), "--split", "val", "-q", "--workers", "1",
                                      "--no-patches", "--no-som"]), manifest)
    assert "remove it" in err
    refused(runner.invoke(app, ["draft", str(out), "--split", "val", "-q"]), manifest)
    assert manifest.read_text() == half  # nothing already written is lost
    assert sorted(p.name for p in (out / "val/plans").glob("plans-*.parquet")) == shards


@pytest.mark.slow
def test_a_build_that_fails_inside_the_flow_ends_in_one_line_without_prefects_traceback(planned, tiny_root, tmp_path):
    """The error surfaces from a Prefect task (ingest reads the truncated manifest): Prefect logs the failure, but
    its traceback only with --debug; the last line names the file; exit 2."""
    out = copy_plans(planned, tmp_path / "out")
    manifest = out / "val/plans/_manifest.json"
    manifest.write_text(manifest.read_text()[:200])
    params = tmp_path / "build.yaml"
    params.write_text(json.dumps({"source": {"root": str(tiny_root), "synthetic": None}, "splits": ["val"],
                                  "output": {"out": str(out)}, "workers": 1, "progress": False}))
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect")}
    env.pop("GEOPIXELD_DEBUG", None)
    res = subprocess.run([sys.executable, "-m", "pipeline.cli", "build", "--params", str(params)], cwd=REPO,
                         capture_output=True, text=True, env=env, timeout=600)
    err = res.stderr.strip().splitlines()
    assert res.returncode == 2, res.stderr[-2000:]
    assert err[-1].startswith("error: ") and str(manifest) in err[-1]
    assert "Traceback" not in res.stderr


def test_drafting_a_truncated_plan_shard_names_it(planned, tmp_path):
    out = copy_plans(planned, tmp_path / "out")
    shard = sorted((out / "val/plans").glob("plans-*.parquet"))[0]
    shard.write_bytes(shard.read_bytes()[:100])
    err = refused(runner.invoke(app, ["draft", str(out), "--split", "val", "-q"]), shard)
    assert "damaged" in err and "geopixeld plan" in err  # what happened and what to run


def test_releasing_a_changed_record_shard_names_it_and_what_to_run(planned, tmp_path):
    from pipeline.drafting.stage import run_draft
    from pipeline.release.dataset import DatasetSettings, write_dataset

    out = copy_plans(planned, tmp_path / "out")
    run_draft(out, "val", progress=False)
    shard = sorted((out / "val/records").glob("records-*.parquet"))[0]
    shard.write_bytes(shard.read_bytes()[:-10])
    with pytest.raises(Exception, match="damaged.*geopixeld draft") as err:
        write_dataset(out, ["val"], DatasetSettings(require_curation=[]))
    assert str(shard) in str(err.value)
    run_draft(out, "val", progress=False)  # what the message says to run mends it
    assert write_dataset(out, ["val"], DatasetSettings(require_curation=[])).splits["val"].rows > 0


# --- eval inputs ------------------------------------------------------------------------------------------------

def test_eval_of_an_empty_folder_or_a_wrong_file_names_it(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    wrong = tmp_path / "preds.txt"
    wrong.write_text("hello")
    for pred, gt in ((empty, empty), (wrong, wrong)):
        res = runner.invoke(app, ["eval", str(pred), str(gt)])
        assert res.exit_code == 2 and "Traceback" not in res.output
        assert res.stderr.startswith("error: ") and str(gt) in res.stderr  # one line per problem found


# --- --debug and bugs -------------------------------------------------------------------------------------------

def test_debug_adds_the_traceback(tiny_root, tmp_path, monkeypatch):
    cfg = tmp_path / "missing.yaml"
    args = ["plan", str(tiny_root), str(tmp_path / "out"), "--config", str(cfg)]
    refused(runner.invoke(app, args), cfg)
    for res in (runner.invoke(app, ["--debug", *args]), runner.invoke(app, args, env={"GEOPIXELD_DEBUG": "1"})):
        assert res.exit_code == 2 and "Traceback" in res.stderr
        assert res.stderr.strip().splitlines()[-1].startswith("error: ") and str(cfg) in res.stderr


def test_an_error_caught_only_by_the_guard_is_one_line_and_debug_shows_it(planned, tmp_path, monkeypatch):
    """`export` does not catch OSError itself: the app's guard turns it into one line."""
    import pipeline.release.geopixeld as release

    def denied(*a, **k):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "dest"))

    monkeypatch.setattr(release, "export_split", denied)
    args = ["export", str(planned), str(tmp_path / "dest")]
    assert refused(runner.invoke(app, args), tmp_path / "dest").endswith("Permission denied")
    res = runner.invoke(app, ["--debug", *args])
    assert res.exit_code == 2 and "Traceback" in res.stderr and "PermissionError" in res.stderr


@pytest.mark.parametrize("bug", [lambda *a, **k: 1 / 0, lambda *a, **k: json.loads("{")])
def test_a_bug_keeps_its_traceback(tiny_root, tmp_path, monkeypatch, bug):
    """A ValueError raised inside a library (json here) is a bug, not bad input: exit 1 with the traceback."""
    import pipeline.planning.stage as stage

    monkeypatch.setattr(stage, "run_plan", bug)
    res = runner.invoke(app, ["plan", str(tiny_root), str(tmp_path / "out"), "-q", "--workers", "1"])
    assert res.exit_code == 1 and isinstance(res.exception, (ZeroDivisionError, json.JSONDecodeError))
    assert "error: " not in res.stderr


@pytest.mark.slow
def test_plan_waits_for_the_output_lock(tiny_root, tmp_path):
    """`geopixeld plan` holds OUT's build lock, so a rerun never races a run (or its workers) still writing."""
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pipeline.driver import output_lock\n"
        f"with output_lock({str(out)!r}):\n    print('held', flush=True); time.sleep(2.5)")],
        cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        t0 = time.monotonic()
        res = runner.invoke(app, ["plan", str(tiny_root), str(out), "-q", "--workers", "1", "--no-patches",
                                  "--no-som"])
        assert res.exit_code == 0, res.output
        assert "waiting" in res.stderr and time.monotonic() - t0 > 1.0
    finally:
        holder.kill()
        holder.wait()
