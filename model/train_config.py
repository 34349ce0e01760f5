"""The training configuration (configs/train/*.yaml): one pydantic model per section, unknown keys refused.

`TrainConfig.identity` hashes what changes a run's trajectory, so a checkpoint is resumed only by the same
configuration (apart from `max_steps`, checkpoint and logging cadence, and loader workers).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from pipeline.contracts.geopixeld_format import GCG_QUESTION

from model.lora import LORA_TARGETS, TRAINABLE


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WeightsSettings(_Strict):
    geopixel: Path | None = None  # a released GeoPixel-7B folder: fine-tune from it
    ixc: Path | None = None  # an InternLM-XComposer-2.5-7B folder: train GeoPixel from the base model
    sam2: Path | None = None  # SAM2 hiera-large (sam2_hiera_large.pt or its folder), with `ixc`
    random: bool = False  # no weights: random initialisation (tests, the CPU demo, the GPU benchmark)


class DataSettings(_Strict):
    path: str | None = None  # build root / records folder / dataset folder / GeoPixelD JSON (--data overrides it)
    split: str = "train"
    question: str = GCG_QUESTION  # the human turn for Parquet records (GeoPixelD JSON carries its own)
    max_length: int = 16384
    window_shards: int = 8
    cache_shards: int = 8
    num_workers: int = 4
    prefetch_factor: int = 2


class LoraSettings(_Strict):
    r: int = 8
    alpha: float = 16
    dropout: float = 0.05
    targets: list[str] = Field(default_factory=lambda: list(LORA_TARGETS))


class OptimSettings(_Strict):
    epochs: int = 10
    effective_batch: int = 20  # samples per optimizer step over all processes
    per_device_batch: int = 1
    lr: float = 3e-4
    warmup_steps: int = 100
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    max_grad_norm: float = 1.0
    max_steps: int | None = None  # stop after this many optimizer steps (the schedule still spans every epoch)
    seed: int = 0
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # auto: bf16 on a GPU, fp32 on the CPU
    gradient_checkpointing: bool = True
    cpu_threads: int | None = None  # torch threads when training on the CPU (None: torch's default)
    lora: LoraSettings = Field(default_factory=LoraSettings)
    trainable: list[str] = Field(default_factory=lambda: list(TRAINABLE))


class CheckpointSettings(_Strict):
    every_steps: int = 100
    keep: int = 2


class TrainConfig(_Strict):
    model: str | dict = "geopixel-7b"  # a preset name, or {preset: ..., overrides} (model/config.py)
    weights: WeightsSettings = Field(default_factory=WeightsSettings)
    tokenizer: str | None = None  # "tiny" (built offline from the training texts) or a folder; default: weights
    data: DataSettings = Field(default_factory=DataSettings)
    train: OptimSettings = Field(default_factory=OptimSettings)
    checkpoint: CheckpointSettings = Field(default_factory=CheckpointSettings)
    log_every: int = 1

    def identity(self) -> str:
        """Hash of everything that changes the trajectory (not max_steps, checkpoint or logging cadence)."""
        d = self.model_dump(mode="json", exclude={"checkpoint": True, "log_every": True})
        d["train"].pop("max_steps")
        d["data"].pop("num_workers")
        d["data"].pop("prefetch_factor")
        d["train"].pop("cpu_threads")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def load_train_config(path: Path | None, overrides: dict | None = None) -> TrainConfig:
    """A YAML file (or the defaults) with `--set` overrides applied (pipeline.contracts.overrides)."""
    from pipeline.contracts.config import load_config_file
    from pipeline.contracts.overrides import apply_overrides

    data = load_config_file(Path(path)) if path else {}
    return TrainConfig.model_validate(apply_overrides(data, overrides or {}))
