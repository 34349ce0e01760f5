"""`geopixeld train` and `geopixeld predict` from the command line (in process), and the GPU benchmark script's
CPU path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from pipeline.cli import app

pytestmark = pytest.mark.usefixtures("gp_one_thread")
ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "configs" / "train" / "tiny.yaml"


def test_train_then_predict_then_resume(gp_demo, tmp_path):
    runner = CliRunner()
    out = tmp_path / "run"
    r = runner.invoke(app, ["train", "--config", str(TINY), "--data", str(gp_demo), "--out", str(out),
                            "--set", "train.max_steps=2"])
    assert r.exit_code == 0, r.output
    assert "step      2" in r.output and "merged model in" in r.output
    assert (out / "final" / "model.safetensors.index.json").exists()
    assert (out / "checkpoints" / "step-0000002" / "trainable.safetensors").exists()
    r = runner.invoke(app, ["train", "--config", str(TINY), "--data", str(gp_demo), "--out", str(out),
                            "--set", "train.max_steps=3"])
    assert r.exit_code == 0, r.output
    assert "resumed from" in r.output and "step      3" in r.output and "step      1 " not in r.output
    pred = tmp_path / "pred"
    r = runner.invoke(app, ["predict", "--model", str(out / "final"), "--images", str(gp_demo / "out" / "val"),
                            "--out", str(pred), "--limit", "2", "--max-new-tokens", "8"])
    assert r.exit_code == 0, r.output
    assert "predicted 2 patches in" in r.output and "s a patch" in r.output  # the time per patch, at the end
    t = pq.read_table(pred)
    assert t.num_rows == 2 and set(t["split"].to_pylist()) == {"val"}
    assert json.loads(t["provenance"][0].as_py()["sampling"])["markup_constraint"] is True
    r = runner.invoke(app, ["predict", "--model", str(out / "final"), "--images", str(gp_demo / "out" / "val"),
                            "--out", str(tmp_path / "plain"), "--limit", "1", "--max-new-tokens", "8",
                            "--no-markup-constraint", "--quiet"])
    assert r.exit_code == 0, r.output
    sampling = pq.read_table(tmp_path / "plain")["provenance"][0].as_py()["sampling"]
    assert json.loads(sampling) == {"decoding": "greedy", "max_new_tokens": 8, "markup_constraint": False}


def test_bad_config_and_missing_data_fail_cleanly(gp_demo, tmp_path):
    runner = CliRunner()
    r = runner.invoke(app, ["train", "--config", str(TINY), "--data", str(gp_demo), "--out", str(tmp_path),
                            "--set", "train.lr_typo=1"])
    assert r.exit_code == 2 and "lr_typo" in r.output
    r = runner.invoke(app, ["train", "--config", str(TINY), "--data", str(tmp_path / "none"), "--out", str(tmp_path)])
    assert r.exit_code == 2 and "no 'train' records" in r.output
    r = runner.invoke(app, ["train", "--data", str(gp_demo), "--out", str(tmp_path)])  # paper defaults, no weights
    assert r.exit_code == 2 and "tokenizer" in r.output


def test_loader_only(gp_demo):
    r = CliRunner().invoke(app, ["train", "--config", str(TINY), "--data", str(gp_demo), "--loader-only", "4"])
    assert r.exit_code == 0, r.output
    assert "samples/s" in r.output


@pytest.mark.slow
def test_gpu_benchmark_script_runs_on_the_cpu():
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_train_step.py"), "--device", "cpu", "--preset",
                        "tiny", "--steps", "3"], capture_output=True, text=True, timeout=600,
                       env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr[-2000:]
    assert "RESULT peak_alloc_gb=nan step_s_median=" in r.stdout and "image_tokens=49" in r.stdout
