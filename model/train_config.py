"""The training configuration (configs/train/*.yaml): one pydantic model per section, unknown keys refused.

`TrainConfig.identity` hashes what changes a run's trajectory, so a checkpoint is resumed only by the same
configuration (apart from `max_steps`, checkpoint and logging cadence, and loader workers).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from pipeline.contracts.geopixeld_format import GCG_QUESTION

from model.lora import LORA_TARGETS, TRAINABLE


class _Strict(BaseModel):
    """Unknown keys, NaN and infinities refused; every number below has a range (a typo fails at once, not as a
    run that diverges or a loader that never starts)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class WeightsSettings(_Strict):
    geopixel: Path | None = None  # a released GeoPixel-7B folder: fine-tune from it
    ixc: Path | None = None  # an InternLM-XComposer-2.5-7B folder: train GeoPixel from the base model
    sam2: Path | None = None  # SAM2 hiera-large (sam2_hiera_large.pt or its folder), with `ixc`
    random: bool = False  # no weights: random initialisation (tests, the CPU demo, the GPU benchmark)


class DataSettings(_Strict):
    path: str | None = None  # build root / records folder / dataset folder / GeoPixelD JSON (--data overrides it)
    split: str = "train"
    question: str = GCG_QUESTION  # the human turn for Parquet records (GeoPixelD JSON carries its own)
    max_length: int = Field(16384, ge=64, le=1 << 20)
    window_shards: int = Field(8, ge=1, le=10000)
    cache_shards: int = Field(8, ge=1, le=10000)
    num_workers: int = Field(4, ge=0, le=256)
    prefetch_factor: int = Field(2, ge=1, le=64)


class LoraSettings(_Strict):
    r: int = Field(8, ge=1, le=1024)
    alpha: float = Field(16, gt=0, le=4096)
    dropout: float = Field(0.05, ge=0, lt=1)
    targets: list[str] = Field(default_factory=lambda: list(LORA_TARGETS))


class OptimSettings(_Strict):
    epochs: int = Field(10, ge=1, le=10000)
    effective_batch: int = Field(20, ge=1, le=1 << 16)  # samples per optimizer step over all processes
    per_device_batch: int = Field(1, ge=1, le=4096)
    lr: float = Field(3e-4, gt=0, le=1)
    warmup_steps: int = Field(100, ge=0, le=1 << 24)
    weight_decay: float = Field(0.0, ge=0, le=1)
    betas: tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]] = (0.9, 0.95)
    eps: float = Field(1e-8, gt=0, le=1e-2)
    max_grad_norm: float = Field(1.0, gt=0, le=1e4)
    max_steps: int | None = Field(None, ge=1)  # stop after this many optimizer steps (the schedule spans every epoch)
    seed: int = Field(0, ge=0, le=2**32 - 1)
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # auto: bf16 on a GPU, fp32 on the CPU
    gradient_checkpointing: bool = True
    cpu_threads: int | None = Field(None, ge=1, le=1024)  # torch threads on the CPU (None: torch's default)
    lora: LoraSettings = Field(default_factory=LoraSettings)
    trainable: list[str] = Field(default_factory=lambda: list(TRAINABLE))
    # {pattern: factor}: trainable parameters whose name matches a pattern (re.search, the first that matches)
    # train at lr x factor, in their own optimizer group under the same schedule; the rest at `lr`
    lr_scale: dict[str, Annotated[float, Field(gt=0, le=1e3)]] = Field(default_factory=dict)


class CheckpointSettings(_Strict):
    every_steps: int = Field(100, ge=1)
    keep: int = Field(2, ge=1, le=1000)


class TrainConfig(_Strict):
    model: str | dict = "geopixel-7b"  # a preset name, or {preset: ..., overrides} (model/config.py)
    weights: WeightsSettings = Field(default_factory=WeightsSettings)
    tokenizer: str | None = None  # "tiny" (built offline from the training texts) or a folder; default: weights
    data: DataSettings = Field(default_factory=DataSettings)
    train: OptimSettings = Field(default_factory=OptimSettings)
    checkpoint: CheckpointSettings = Field(default_factory=CheckpointSettings)
    log_every: int = Field(1, ge=1)

    def identity(self) -> str:
        """Hash of everything that changes the trajectory (not max_steps, checkpoint or logging cadence)."""
        d = self.model_dump(mode="json", exclude={"checkpoint": True, "log_every": True})
        d["train"].pop("max_steps")
        d["data"].pop("num_workers")
        d["data"].pop("prefetch_factor")
        d["train"].pop("cpu_threads")
        if not d["train"]["lr_scale"]:  # the default: runs from before the setting existed keep their identity
            d["train"].pop("lr_scale")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def load_train_config(path: Path | None, overrides: dict | None = None) -> TrainConfig:
    """A YAML file (or the defaults) with `--set` overrides applied (pipeline.contracts.overrides)."""
    from pipeline.contracts.config import load_config_file
    from pipeline.contracts.overrides import apply_overrides

    data = load_config_file(Path(path)) if path else {}
    return TrainConfig.model_validate(apply_overrides(data, overrides or {}))
