"""Weights on local disk: the released GeoPixel-7B or InternLM-XComposer-2.5-7B folders, SAM2's checkpoint file,
and this project's own merged models. Nothing is ever downloaded.

Checkpoint names are the module names of `model.geopixel.GeoPixel`, so loading is by name; every tensor is checked
for shape, and anything left over or missing is an error unless it is expected (listed in the report):
- from InternLM-XComposer-2.5 the SAM2 and [SEG]-projector weights are absent (SAM2 comes from its own file; the
  projector starts random) and the vocabulary grows by the three grounding tokens (new rows start at the mean
  embedding);
- with `lm.mode_loras: false` the 'write'/'web' low-rank branches of InternLM-XComposer-2.5 are skipped by name.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import torch
from torch import nn

MODE_LORA_KEY = re.compile(r"\.lora_(sft|dpo|web)_[AB]\.weight$")
SAM_PREFIX = "model.visual_model."
NEW_FROM_IXC = (SAM_PREFIX, "model.text_hidden_fcs.")
VOCAB_KEYS = ("model.tok_embeddings.weight", "output.weight")
CONFIG_FILE = "geopixel_config.json"


class WeightsError(ValueError):
    pass


@dataclass
class LoadReport:
    loaded: int = 0
    skipped: list[str] = field(default_factory=list)  # checkpoint tensors deliberately not loaded
    resized: list[str] = field(default_factory=list)  # vocabulary rows added
    kept: list[str] = field(default_factory=list)  # model tensors the checkpoint does not hold (initialised here)

    def summary(self) -> str:
        return (f"loaded {self.loaded} tensors; skipped {len(self.skipped)}; grew the vocabulary of "
                f"{len(self.resized)}; {len(self.kept)} tensors not in the checkpoint")


def checkpoint_files(folder: Path) -> list[Path]:
    """The weight files of a Hugging Face-style folder (sharded or not), or a single checkpoint file."""
    folder = Path(folder)
    if folder.is_file():
        return [folder]
    for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if (folder / index).exists():
            mapping = json.loads((folder / index).read_text())["weight_map"]
            return [folder / f for f in sorted(set(mapping.values()))]
    for single in ("model.safetensors", "pytorch_model.bin"):
        if (folder / single).exists():
            return [folder / single]
    found = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.pt"))
    if found:
        return found
    raise WeightsError(f"{folder}: no model.safetensors, pytorch_model.bin, shard index or *.pt checkpoint")


def iter_tensors(path: Path) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) of one file, one tensor at a time for safetensors; `{"model": ...}` files are unwrapped."""
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            for k in f.keys():
                yield k, f.get_tensor(k)
        return
    sd = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    if isinstance(sd, dict) and "model" in sd and isinstance(sd["model"], dict):
        sd = sd["model"]
    yield from sd.items()


def _targets(model: nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and persistent buffers (what a checkpoint holds), by name."""
    return dict(model.state_dict(keep_vars=True))


def load_weights(model: nn.Module, source: Path, prefix: str = "", rename=None,
                 allow_missing: tuple[str, ...] = (), report: LoadReport | None = None) -> LoadReport:
    """Copy every tensor of `source` into `model` by name (`prefix` + name, after `rename`)."""
    report = report or LoadReport()
    targets = _targets(model)
    seen: set[str] = set()
    unexpected = []
    for path in checkpoint_files(source):
        for name, tensor in iter_tensors(path):
            key = prefix + (rename(name) if rename else name)
            if key not in targets:
                if MODE_LORA_KEY.search(key):
                    report.skipped.append(key)
                else:
                    unexpected.append(key)
                continue
            dest = targets[key]
            if tuple(tensor.shape) != tuple(dest.shape):
                if key in VOCAB_KEYS and tensor.shape[1:] == dest.shape[1:] and tensor.shape[0] < dest.shape[0]:
                    with torch.no_grad():
                        dest[: tensor.shape[0]].copy_(tensor)
                        dest[tensor.shape[0]:].copy_(tensor.float().mean(0, keepdim=True).to(dest.dtype))
                    report.resized.append(key)
                else:
                    raise WeightsError(f"{path}: {name} has shape {tuple(tensor.shape)}, the model expects "
                                       f"{tuple(dest.shape)} for {key}")
            else:
                with torch.no_grad():
                    dest.copy_(tensor)
            seen.add(key)
            report.loaded += 1
    if unexpected:
        raise WeightsError(f"{source}: {len(unexpected)} tensors have no place in this model, e.g. "
                           + ", ".join(unexpected[:5]))
    missing = [k for k in targets if k.startswith(prefix) and k not in seen]
    bad = [k for k in missing if not (allow_missing and k.startswith(allow_missing))]
    if bad:
        raise WeightsError(f"{source}: {len(bad)} model tensors are not in the checkpoint, e.g. " + ", ".join(bad[:5]))
    report.kept += missing
    return report


def sam2_rename(name: str) -> str:
    """SAM2's own checkpoint calls the ConvNeXt layer scale `gamma`; the module (and GeoPixel) call it `weight`."""
    return re.sub(r"\.gamma$", ".weight", name)


def load_pretrained(model: nn.Module, geopixel: Path | None = None, ixc: Path | None = None,
                    sam2: Path | None = None) -> LoadReport:
    """Fill a freshly built model from the released folders: GeoPixel-7B alone, or InternLM-XComposer-2.5-7B
    plus SAM2 hiera-large (the [SEG] projector then starts random)."""
    if geopixel:
        return load_weights(model, Path(geopixel))
    if not ixc:
        raise WeightsError("give weights.geopixel (a GeoPixel-7B folder) or weights.ixc (InternLM-XComposer-2.5-7B)")
    report = load_weights(model, Path(ixc), allow_missing=NEW_FROM_IXC)
    if sam2:
        report.kept = [k for k in report.kept if not k.startswith(SAM_PREFIX)]
        sam_report = load_weights(model.model.visual_model, Path(sam2), rename=sam2_rename)
        report.loaded += sam_report.loaded
    return report


# -- saving ----------------------------------------------------------------------------------------------------
def save_model(model: nn.Module, folder: Path, config: dict, tokenizer=None, shard_bytes: int = 4 << 30) -> None:
    """Safetensors shards + index in the released naming, this project's config, and the tokenizer.

    Every file is written under a temporary name and renamed, so a killed save leaves no half-written file.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for k, v in state.items():
        n = v.numel() * v.element_size()
        if shards[-1] and size + n > shard_bytes:
            shards.append({})
            size = 0
        shards[-1][k] = v
        size += n
    names = [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    weight_map = {}
    for name, shard in zip(names, shards):
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
        os.close(fd)
        save_file(shard, tmp, metadata={"format": "pt"})
        os.replace(tmp, folder / name)
        weight_map.update({k: name for k in shard})
    total = sum(v.numel() * v.element_size() for v in state.values())
    _write_json(folder / "model.safetensors.index.json", {"metadata": {"total_size": total}, "weight_map": weight_map})
    _write_json(folder / CONFIG_FILE, config)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)


def _write_json(path: Path, data) -> None:
    from pipeline.contracts.fileio import atomic_write_bytes

    atomic_write_bytes(path, (json.dumps(data, indent=1) + "\n").encode())


def read_config(folder: Path) -> dict:
    path = Path(folder) / CONFIG_FILE
    if not path.exists():
        raise WeightsError(f"{folder}: no {CONFIG_FILE} (not a model saved by `geopixeld train`)")
    return json.loads(path.read_text())
