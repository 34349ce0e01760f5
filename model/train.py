"""The GeoPixel trainer: LoRA fine-tuning through accelerate (single process, DDP or DeepSpeed ZeRO-2), bf16 on
GPUs, gradient checkpointing, the paper's schedule, checkpoints that resume exactly, and a merged model at the end.

Exact resume: a checkpoint is taken at an optimizer-step boundary and holds the trainable weights, the optimizer
and scheduler states, every RNG state and the step; the sample order is a function of (seed, epoch) only
(model.data.epoch_order) and the loader never draws from the global RNG, so a resumed run replays the same
batches with the same dropout masks and reaches bit-identical weights on the same hardware.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import shutil
import time
from functools import partial
from pathlib import Path
from typing import Literal

import numpy as np
import torch
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
    path: str | None = None  # records folder / build folder / GeoPixelD JSON (the CLI's --data overrides it)
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
    from pipeline.contracts.config import load_config_file
    from pipeline.contracts.overrides import apply_overrides

    data = load_config_file(Path(path)) if path else {}
    return TrainConfig.model_validate(apply_overrides(data, overrides or {}))


# -- helpers ---------------------------------------------------------------------------------------------------
def _tokenizer(cfg: TrainConfig, out: Path, model_cfg, texts_from):
    from model.tokenizer import build_tiny_tokenizer, load_tokenizer

    if cfg.tokenizer == "tiny":
        saved = out / "tokenizer"
        if (saved / "tokenizer.json").exists():
            return load_tokenizer(saved, model_cfg.tokens)
        build_tiny_tokenizer(texts_from(), saved, model_cfg.tokens, vocab_size=model_cfg.lm.vocab_size)
        return load_tokenizer(saved, model_cfg.tokens)
    folder = cfg.tokenizer or cfg.weights.geopixel or cfg.weights.ixc
    if not folder:
        raise ValueError("no tokenizer: set `tokenizer` (a folder, or 'tiny') or a weights folder")
    return load_tokenizer(Path(folder), model_cfg.tokens)


def _training_texts(sources: list) -> list[str]:
    """Every answer text of the sources (what the tiny tokenizer is trained on)."""
    texts = []
    for src in sources:
        if hasattr(src, "shards"):
            import pyarrow.parquet as pq

            for shard in src.shards:
                texts += [t for t in pq.read_table(shard, columns=["description"])["description"].to_pylist() if t]
        else:
            texts += [c.get("value", "") for e in src.entries for c in e.get("conversations", [])]
    return texts


def _rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def latest_checkpoint(out: Path) -> Path | None:
    ckpts = sorted((out / "checkpoints").glob("step-[0-9]*[0-9]"))
    return ckpts[-1] if ckpts else None


def _to_device(batch: dict, device) -> dict:
    keys = ("input_ids", "labels", "image_mask", "attention_mask")
    return {k: (v.to(device, non_blocking=True) if k in keys else v) for k, v in batch.items()}


class Run:
    """Everything a training run holds; `geopixeld train` builds one and calls `fit`."""

    def __init__(self, cfg: TrainConfig, out: Path, data: str | None = None):
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs, set_seed

        from model.config import build_config
        from model.data import GeoPixelDataset, resolve_sources
        from model.geopixel import build_model
        from model.lora import add_lora, set_trainable
        from model.tokenizer import ChatEncoder
        from model.weights import load_pretrained

        self.cfg, self.out = cfg, Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.acc = Accelerator(cpu=not torch.cuda.is_available(),
                               gradient_accumulation_steps=1,  # set below, once the world size is known
                               kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
        acc = self.acc
        o = cfg.train
        if acc.device.type == "cpu" and o.cpu_threads:
            torch.set_num_threads(o.cpu_threads)
        set_seed(o.seed)
        self.model_cfg = build_config(cfg.model)
        data_path = data or cfg.data.path
        if not data_path:
            raise ValueError("no training data: pass --data or set data.path")
        sources = resolve_sources(data_path, cfg.data.split, cfg.data.question, cfg.data.cache_shards)
        texts = lambda: _training_texts(sources)  # noqa: E731  (only read for a tiny tokenizer not yet built)
        if acc.is_main_process:  # the main process builds a tiny tokenizer once; the others then read it
            self.tok = _tokenizer(cfg, self.out, self.model_cfg, texts)
        acc.wait_for_everyone()
        if not acc.is_main_process:
            self.tok = _tokenizer(cfg, self.out, self.model_cfg, texts)
        if len(self.tok) > self.model_cfg.lm.vocab_size:
            raise ValueError(f"the tokenizer has {len(self.tok)} tokens but model.lm.vocab_size is "
                             f"{self.model_cfg.lm.vocab_size}")
        self.encoder = ChatEncoder(self.tok, self.model_cfg.tokens)
        precision = o.precision if o.precision != "auto" else ("bf16" if acc.device.type == "cuda" else "fp32")
        self.dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        self.dataset = GeoPixelDataset(sources, self.encoder, self.model_cfg, cfg.data.max_length)

        model = build_model(self.model_cfg, self.encoder.ids, device=acc.device, dtype=self.dtype)
        w = cfg.weights
        if w.geopixel or w.ixc:
            self.load_report = load_pretrained(model, w.geopixel, w.ixc, w.sam2)
        elif not w.random:
            raise ValueError("no weights: set weights.geopixel, or weights.ixc with weights.sam2, "
                             "or weights.random: true")
        else:
            self.load_report = None
        add_lora(model, o.lora.r, o.lora.alpha, o.lora.dropout, o.lora.targets)
        model.to(self.dtype)
        self.trainable_names = set_trainable(model, o.trainable)
        model.gradient_checkpointing = o.gradient_checkpointing

        self.world, self.rank = acc.num_processes, acc.process_index
        per_step = self.world * o.per_device_batch
        if o.effective_batch % per_step:
            raise ValueError(f"effective_batch {o.effective_batch} is not a multiple of processes x per_device_batch "
                             f"= {per_step}")
        self.accum = o.effective_batch // per_step
        acc.gradient_accumulation_steps = self.accum
        ds = acc.state.deepspeed_plugin
        if ds is not None:  # DeepSpeed takes its micro-batch and accumulation from its own config
            if ds.gradient_accumulation_steps not in (self.accum, "auto"):
                raise ValueError(f"the accelerate DeepSpeed config accumulates {ds.gradient_accumulation_steps} steps, "
                                 f"but effective_batch {o.effective_batch} over {self.world} process(es) x "
                                 f"{o.per_device_batch} needs {self.accum}")
            ds.deepspeed_config["train_micro_batch_size_per_gpu"] = o.per_device_batch
            ds.deepspeed_config["gradient_accumulation_steps"] = self.accum
        batches = len(self.dataset) // self.world // o.per_device_batch
        self.steps_per_epoch = batches // self.accum
        if self.steps_per_epoch == 0:
            raise ValueError(f"{len(self.dataset)} samples cannot fill one optimizer step of {o.effective_batch}")
        self.total_steps = o.epochs * self.steps_per_epoch
        self.stop_step = min(self.total_steps, o.max_steps) if o.max_steps else self.total_steps

        from transformers import get_cosine_schedule_with_warmup

        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay)
        self.scheduler = get_cosine_schedule_with_warmup(opt, o.warmup_steps, self.total_steps)
        self.model, self.opt = acc.prepare(model, opt)
        self.params = params
        self.step = 0

    # -- checkpoints -------------------------------------------------------------------------------------------
    @property
    def raw(self):
        return self.acc.unwrap_model(self.model)

    def _trainable_state(self) -> dict[str, torch.Tensor]:
        return {n: p.detach().cpu().contiguous() for n, p in self.raw.named_parameters() if p.requires_grad}

    def save_checkpoint(self) -> Path:
        from safetensors.torch import save_file

        acc = self.acc
        final = self.out / "checkpoints" / f"step-{self.step:07d}"
        tmp = final.with_name(final.name + ".tmp")
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        acc.wait_for_everyone()
        if acc.distributed_type.name == "DEEPSPEED":
            acc.save_state(str(tmp / "accelerate"), exclude_frozen_parameters=True)
        elif acc.is_main_process:
            save_file(self._trainable_state(), str(tmp / "trainable.safetensors"))
            torch.save(self.opt.optimizer.state_dict() if hasattr(self.opt, "optimizer") else self.opt.state_dict(),
                       tmp / "optimizer.pt")
        torch.save(_rng_state(), tmp / f"rng-{self.rank}.pt")
        if acc.is_main_process:
            torch.save(self.scheduler.state_dict(), tmp / "scheduler.pt")
            (tmp / "state.json").write_text(json.dumps({"step": self.step, "config": self.cfg.identity(),
                                                        "world": self.world}))
        acc.wait_for_everyone()
        if acc.is_main_process:
            tmp.rename(final)
            for old in sorted((self.out / "checkpoints").glob("step-[0-9]*[0-9]"))[:-max(1, self.cfg.checkpoint.keep)]:
                shutil.rmtree(old, ignore_errors=True)
        acc.wait_for_everyone()
        return final

    def load_checkpoint(self, path: Path) -> None:
        from safetensors.torch import load_file

        state = json.loads((path / "state.json").read_text())
        if state["config"] != self.cfg.identity():
            raise ValueError(f"{path} was written by a run with a different configuration; resume it with the same "
                             "config (only max_steps, checkpoint and logging settings may change)")
        if state["world"] != self.world:
            raise ValueError(f"{path} was written by {state['world']} processes, this run has {self.world}: the "
                             "sample split would differ")
        if self.acc.distributed_type.name == "DEEPSPEED":
            self.acc.load_state(str(path / "accelerate"), load_module_strict=False)
        else:
            saved = load_file(str(path / "trainable.safetensors"))
            named = dict(self.raw.named_parameters())
            if set(saved) != {n for n, p in named.items() if p.requires_grad}:
                raise ValueError(f"{path}: its trainable tensors do not match this model's")
            with torch.no_grad():
                for n, t in saved.items():
                    named[n].copy_(t)
            opt = self.opt.optimizer if hasattr(self.opt, "optimizer") else self.opt
            opt.load_state_dict(torch.load(path / "optimizer.pt", map_location=self.acc.device, weights_only=False))
        self.scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=False))
        _set_rng_state(torch.load(path / f"rng-{self.rank}.pt", weights_only=False))
        self.step = state["step"]

    # -- data --------------------------------------------------------------------------------------------------
    def epoch_loader(self, epoch: int, first_batch: int):
        from torch.utils.data import DataLoader

        from model.data import BatchList, collate, epoch_order, rank_batches

        d, o = self.cfg.data, self.cfg.train
        order = epoch_order(self.dataset, o.seed, epoch, d.window_shards)
        batches = rank_batches(order, self.rank, self.world, o.per_device_batch)[: self.steps_per_epoch * self.accum]
        kw = dict(num_workers=d.num_workers, pin_memory=self.acc.device.type == "cuda",
                  collate_fn=partial(collate, pad_id=self.encoder.ids.pad),
                  generator=torch.Generator().manual_seed(0))  # never draw from the global RNG (exact resume)
        if d.num_workers:
            kw["prefetch_factor"] = d.prefetch_factor
        return DataLoader(self.dataset, batch_sampler=BatchList(batches[first_batch:]), **kw)

    # -- the loop ----------------------------------------------------------------------------------------------
    def fit(self, log=print) -> dict:
        acc = self.acc
        log_path = self.out / "log.jsonl"
        self.model.train()
        history = []
        while self.step < self.stop_step:
            epoch = self.step // self.steps_per_epoch
            first = (self.step % self.steps_per_epoch) * self.accum
            it = iter(self.epoch_loader(epoch, first))
            while self.step < self.stop_step and self.step // self.steps_per_epoch == epoch:
                rec = self._optimizer_step(it, epoch)
                history.append(rec)
                if acc.is_main_process:
                    with open(log_path, "a") as fh:
                        fh.write(json.dumps(rec) + "\n")
                    if self.step % self.cfg.log_every == 0 or self.step == self.stop_step:
                        log(_fmt(rec))
                if self.cfg.checkpoint.every_steps and self.step % self.cfg.checkpoint.every_steps == 0:
                    self.save_checkpoint()
            del it
        if history and latest_checkpoint(self.out) != self.out / "checkpoints" / f"step-{self.step:07d}":
            self.save_checkpoint()  # the last step too, so a longer max_steps can continue from here
        return {"steps": self.step, "history": history}

    def _optimizer_step(self, it, epoch: int) -> dict:
        acc, o = self.acc, self.cfg.train
        t0 = time.perf_counter()
        data_s = 0.0
        sums = {"loss": 0.0, "ce": 0.0, "bce": 0.0, "dice": 0.0}
        tokens = masks = 0
        grad_norm = None
        for _ in range(self.accum):
            td = time.perf_counter()
            batch = next(it)
            data_s += time.perf_counter() - td
            batch = _to_device(batch, acc.device)
            with acc.accumulate(self.model):
                out = self.model(batch)
                acc.backward(out["loss"])
                if acc.sync_gradients:
                    gn = acc.clip_grad_norm_(self.params, o.max_grad_norm) if o.max_grad_norm else None
                    grad_norm = float(gn) if gn is not None else None
                self.opt.step()
                self.opt.zero_grad(set_to_none=True)
            for k in sums:
                sums[k] += float(out[k].detach()) / self.accum
            tokens += int(batch["attention_mask"].sum())
            masks += int(out["masks"])
        lr = self.scheduler.get_last_lr()[0]  # the rate this step used
        self.scheduler.step()
        self.step += 1
        if acc.device.type == "cuda":
            torch.cuda.synchronize()
        step_s = time.perf_counter() - t0
        parts = torch.tensor([sums["loss"], sums["ce"], sums["bce"], sums["dice"]], device=acc.device)
        parts = acc.reduce(parts, reduction="mean") if self.world > 1 else parts
        samples = self.accum * o.per_device_batch * self.world
        return {"step": self.step, "epoch": epoch, "lr": lr,
                "loss": float(parts[0]), "ce": float(parts[1]), "bce": float(parts[2]), "dice": float(parts[3]),
                "grad_norm": grad_norm, "masks": masks, "step_s": step_s, "data_s": data_s,
                "samples_per_s": samples / step_s, "tokens_per_s": tokens * self.world / step_s}

    def finish(self) -> Path | None:
        """Merge the LoRA into the base weights and save the model for inference (OUT/final)."""
        from model.lora import merge_lora
        from model.weights import save_model

        self.acc.wait_for_everyone()
        final = self.out / "final"
        if self.acc.is_main_process:
            model = self.raw
            merge_lora(model)
            save_model(model, final, {"model": self.model_cfg.model_dump(mode="json"),
                                      "trained": {"steps": self.step, "config": self.cfg.identity()}},
                       tokenizer=self.tok)
        self.acc.wait_for_everyone()
        return final


def _fmt(r: dict) -> str:
    return (f"step {r['step']:>6} ep {r['epoch']} lr {r['lr']:.2e} loss {r['loss']:.4f} (ce {r['ce']:.4f} "
            f"bce {r['bce']:.4f} dice {r['dice']:.4f}) {r['step_s']:.2f}s/step (data {r['data_s']:.2f}s) "
            f"{r['samples_per_s']:.2f} samples/s {r['tokens_per_s']:.0f} tok/s")


def train(cfg: TrainConfig, out: Path, data: str | None = None, resume: str | None = None, log=print) -> dict:
    """Build, optionally resume ('auto' = the latest checkpoint in OUT), fit, merge and save."""
    run = Run(cfg, out, data)
    if run.load_report:
        log("weights: " + run.load_report.summary())
    if resume:
        path = latest_checkpoint(run.out) if resume == "auto" else Path(resume)
        if path is not None:
            run.load_checkpoint(path)
            log(f"resumed from {path} at step {run.step}")
    log(f"{len(run.dataset)} samples, {run.world} process(es), {run.accum} accumulation step(s), "
        f"{run.steps_per_epoch} steps/epoch, {run.total_steps} steps in the schedule, stopping at {run.stop_step}")
    result = run.fit(log)
    result["final"] = run.finish()
    return result


def measure_loader(cfg: TrainConfig, data: str | None, batches: int = 50) -> dict:
    """Samples/s of the data loader alone (same workers and batch size as training, no model)."""
    from torch.utils.data import DataLoader

    from model.config import build_config
    from model.data import BatchList, GeoPixelDataset, collate, epoch_order, rank_batches, resolve_sources
    from model.tokenizer import ChatEncoder

    model_cfg = build_config(cfg.model)
    if not (data or cfg.data.path):
        raise ValueError("no training data: pass --data or set data.path")
    sources = resolve_sources(data or cfg.data.path, cfg.data.split, cfg.data.question, cfg.data.cache_shards)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        tok = _tokenizer(cfg, Path(tmp), model_cfg, lambda: _training_texts(sources))
        enc = ChatEncoder(tok, model_cfg.tokens)
        ds = GeoPixelDataset(sources, enc, model_cfg, cfg.data.max_length)
        order = []
        epoch = 0
        while len(order) < batches * cfg.train.per_device_batch:
            order += epoch_order(ds, cfg.train.seed, epoch, cfg.data.window_shards)
            epoch += 1
        bl = rank_batches(order, 0, 1, cfg.train.per_device_batch)[:batches]
        kw = dict(num_workers=cfg.data.num_workers, collate_fn=partial(collate, pad_id=enc.ids.pad))
        if cfg.data.num_workers:
            kw["prefetch_factor"] = cfg.data.prefetch_factor
        loader = DataLoader(ds, batch_sampler=BatchList(bl), **kw)
        it = iter(loader)
        next(it)  # worker start-up is not throughput
        t = time.perf_counter()
        n = 0
        for b in it:
            n += len(b["ids"])
        dt = time.perf_counter() - t
    return {"samples": n, "seconds": dt, "samples_per_s": n / dt if dt else math.inf,
            "workers": cfg.data.num_workers}
