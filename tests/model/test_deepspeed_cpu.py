"""The trainer's DeepSpeed ZeRO-2 path, run where it can run here: `accelerate launch` with a ZeRO-2 config on the
CPU (configs/train/accelerate_zero2_cpu.yaml, DeepSpeed's CPU accelerator, one process). The same branches as on
the paper's 2 GPUs: the DeepSpeed engine and its ZeRO-2 optimizer, the micro-batch and accumulation settings the
trainer gives DeepSpeed, DeepSpeed's checkpoint layout, and a resumed run that continues where it stopped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "train" / "accelerate_zero2_cpu.yaml"


def _launch(data: Path, out: Path, steps: int) -> subprocess.CompletedProcess:
    accelerate = Path(sys.executable).parent / "accelerate"
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"}
    cmd = [str(accelerate), "launch", "--config_file", str(CONFIG), "-m", "pipeline.cli", "train",
           "--config", str(ROOT / "configs/train/tiny.yaml"), "--data", str(data), "--out", str(out),
           "--set", f"train.max_steps={steps}", "--set", "checkpoint.every_steps=2", "--set", "train.epochs=2"]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def _losses(out: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in map(json.loads, (out / "log.jsonl").read_text().splitlines())}


def test_zero2_trains_checkpoints_in_deepspeeds_layout_and_resumes(gp_demo, tmp_path):
    pytest.importorskip("deepspeed", reason="deepspeed is not installed (pip install -e '.[train,gpu]')")
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    _launch(gp_demo, straight, 6)
    losses = _losses(straight)
    assert sorted(losses) == list(range(1, 7)) and losses[6] < losses[1]
    ckpt = straight / "checkpoints" / "step-0000006" / "accelerate"
    assert (ckpt / "pytorch_model" / "zero_pp_rank_0_mp_rank_00_optim_states.pt").is_file()  # ZeRO's, not torch's
    assert (straight / "final" / "model.safetensors.index.json").is_file()

    _launch(gp_demo, resumed, 4)
    again = _launch(gp_demo, resumed, 6)
    assert "resumed from" in again.stdout + again.stderr and "at step 4" in again.stdout + again.stderr
    after = _losses(resumed)
    for step in (5, 6):  # the steps after the resume, as the run that never stopped took them
        assert after[step] == pytest.approx(losses[step], rel=1e-4)
