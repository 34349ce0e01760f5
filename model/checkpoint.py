"""Checkpoints that resume exactly: trainable weights, optimizer, scheduler, every RNG state and the step.

A checkpoint is written into `step-NNNNNNN.tmp/` and renamed when every process has written its part, so a
killed run never leaves a half checkpoint that looks whole; the oldest are pruned to `keep`. Under DeepSpeed
the optimizer and weights go through `accelerator.save_state` (frozen weights excluded).
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import torch


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def latest_checkpoint(out: Path) -> Path | None:
    ckpts = sorted((Path(out) / "checkpoints").glob("step-[0-9]*[0-9]"))
    return ckpts[-1] if ckpts else None


def trainable_state(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def _inner(opt):
    return opt.optimizer if hasattr(opt, "optimizer") else opt


def save_checkpoint(acc, out: Path, model, opt, scheduler, step: int, identity: str, keep: int) -> Path:
    """Write OUT/checkpoints/step-NNNNNNN (every process takes part); returns its path."""
    from safetensors.torch import save_file

    final = Path(out) / "checkpoints" / f"step-{step:07d}"
    tmp = final.with_name(final.name + ".tmp")
    if acc.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    acc.wait_for_everyone()
    if acc.distributed_type.name == "DEEPSPEED":
        acc.save_state(str(tmp / "accelerate"), exclude_frozen_parameters=True)
    elif acc.is_main_process:
        save_file(trainable_state(model), str(tmp / "trainable.safetensors"))
        torch.save(_inner(opt).state_dict(), tmp / "optimizer.pt")
    torch.save(rng_state(), tmp / f"rng-{acc.process_index}.pt")
    if acc.is_main_process:
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        (tmp / "state.json").write_text(json.dumps({"step": step, "config": identity, "world": acc.num_processes}))
    acc.wait_for_everyone()
    if acc.is_main_process:
        tmp.rename(final)
        for old in sorted((Path(out) / "checkpoints").glob("step-[0-9]*[0-9]"))[:-max(1, keep)]:
            shutil.rmtree(old, ignore_errors=True)
    acc.wait_for_everyone()
    return final


def load_checkpoint(acc, path: Path, model, opt, scheduler, identity: str) -> int:
    """Restore a checkpoint written by the same configuration and world size; returns its step."""
    from safetensors.torch import load_file

    path = Path(path)
    state = json.loads((path / "state.json").read_text())
    if state["config"] != identity:
        raise ValueError(f"{path} was written by a run with a different configuration; resume it with the same "
                         "config (only max_steps, checkpoint and logging settings may change), or start over in "
                         f"another --out (or remove {path.parent.parent})")
    if state["world"] != acc.num_processes:
        raise ValueError(f"{path} was written by {state['world']} processes, this run has {acc.num_processes}: the "
                         "sample split would differ")
    if acc.distributed_type.name == "DEEPSPEED":
        acc.load_state(str(path / "accelerate"), load_module_strict=False)
    else:
        saved = load_file(str(path / "trainable.safetensors"))
        named = dict(model.named_parameters())
        if set(saved) != {n for n, p in named.items() if p.requires_grad}:
            raise ValueError(f"{path}: its trainable tensors do not match this model's")
        with torch.no_grad():
            for n, t in saved.items():
                named[n].copy_(t)
        _inner(opt).load_state_dict(torch.load(path / "optimizer.pt", map_location=acc.device, weights_only=False))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=False))
    set_rng_state(torch.load(path / f"rng-{acc.process_index}.pt", weights_only=False))
    return state["step"]
