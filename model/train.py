"""The GeoPixel trainer: LoRA fine-tuning through accelerate (single process, DDP or DeepSpeed ZeRO-2), bf16 on
GPUs, gradient checkpointing, the paper's schedule, and a merged model at the end.

The parts live apart: the configuration in model/train_config.py, checkpoints in model/checkpoint.py, the data
in model/sources.py (readers), model/samples.py (sample building) and model/sampler.py (order); this module
builds a run from them and holds the loop. Exact resume: a checkpoint is taken at an optimizer-step boundary,
the sample order is a function of (seed, epoch) only and the loader never draws from the global RNG, so a
resumed run replays the same batches with the same dropout masks and reaches bit-identical weights on the same
hardware.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from functools import partial
from pathlib import Path

import torch

from model.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint, trainable_state
from model.train_config import TrainConfig

__all__ = ["Run", "train", "measure_loader", "data_sources", "choose_tokenizer", "batch_loader", "param_groups"]


def data_sources(cfg: TrainConfig, data: str | None) -> list:
    """The training split's reader (model.sources.open_source: curated records win once finished)."""
    from model.sources import open_source

    path = data or cfg.data.path
    if not path:
        raise ValueError("no training data: pass --data or set data.path")
    return [open_source(Path(path), cfg.data.split, cfg.data.cache_shards)]


def choose_tokenizer(cfg: TrainConfig, out: Path, model_cfg, sources: list):
    """The tokenizer of a run: "tiny" (trained once on the sources' texts, kept in OUT/tokenizer), a folder, or
    the weights' own."""
    from model.tokenizer import build_tiny_tokenizer, load_tokenizer

    if cfg.tokenizer == "tiny":
        saved = out / "tokenizer"
        if not (saved / "tokenizer.json").exists():
            texts = [t for src in sources for t in src.texts()]
            build_tiny_tokenizer(texts, saved, model_cfg.tokens, vocab_size=model_cfg.lm.vocab_size)
        return load_tokenizer(saved, model_cfg.tokens)
    folder = cfg.tokenizer or cfg.weights.geopixel or cfg.weights.ixc
    if not folder:
        raise ValueError("no tokenizer: set `tokenizer` (a folder, or 'tiny') or a weights folder")
    return load_tokenizer(Path(folder), model_cfg.tokens)


def batch_loader(dataset, batches: list[list[int]], d, pad_id: int, pin_memory: bool = False):
    """A DataLoader over fixed batches (model.sampler); its generator is seeded so it never draws from the
    global RNG (exact resume). `d` is the config's DataSettings."""
    from torch.utils.data import DataLoader

    from model.sampler import BatchList
    from model.samples import collate

    kw = dict(num_workers=d.num_workers, pin_memory=pin_memory, collate_fn=partial(collate, pad_id=pad_id),
              generator=torch.Generator().manual_seed(0))
    if d.num_workers:
        kw["prefetch_factor"] = d.prefetch_factor
    return DataLoader(dataset, batch_sampler=BatchList(batches), **kw)


def param_groups(model, lr: float, lr_scale: dict[str, float]) -> list[dict]:
    """The trainable parameters as optimizer groups: first those at `lr`, then one group per `lr_scale` pattern
    (lr x factor; a parameter joins the first pattern its name matches). Empty groups are left out."""
    import re

    pats = [(re.compile(p), f) for p, f in lr_scale.items()]
    groups = [{"params": [], "lr": lr}] + [{"params": [], "lr": lr * f} for _, f in pats]
    for name, p in model.named_parameters():
        if p.requires_grad:
            k = next((i + 1 for i, (r, _) in enumerate(pats) if r.search(name)), 0)
            groups[k]["params"].append(p)
    return [g for g in groups if g["params"]]


def _to_device(batch: dict, device) -> dict:
    keys = ("input_ids", "labels", "image_mask", "attention_mask")
    return {k: (v.to(device, non_blocking=True) if k in keys else v) for k, v in batch.items()}


class Run:
    """Everything a training run holds; `geopixeld train` builds one and calls `fit`."""

    def __init__(self, cfg: TrainConfig, out: Path, data: str | None = None):
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs, set_seed

        from model.config import build_config
        from model.geopixel import build_model
        from model.lora import add_lora, set_trainable
        from model.samples import GeoPixelDataset
        from model.tokenizer import ChatEncoder
        from model.weights import load_pretrained

        self.cfg, self.out = cfg, Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        # on a machine without CUDA accelerate runs on the CPU, and drops a DeepSpeed plugin when told `cpu=True`:
        # under `accelerate launch` with a DeepSpeed config (DS_ACCELERATOR=cpu) it is not told, so ZeRO runs there too
        deepspeed = os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"
        self.acc = Accelerator(cpu=not torch.cuda.is_available() and not deepspeed,
                               gradient_accumulation_steps=1,  # set below, once the world size is known
                               kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
        acc = self.acc
        o = cfg.train
        if acc.device.type == "cpu" and o.cpu_threads:
            torch.set_num_threads(o.cpu_threads)
        set_seed(o.seed)
        self.model_cfg = build_config(cfg.model)
        sources = data_sources(cfg, data)
        if acc.is_main_process:  # the main process builds a tiny tokenizer once; the others then read it
            self.tok = choose_tokenizer(cfg, self.out, self.model_cfg, sources)
        acc.wait_for_everyone()
        if not acc.is_main_process:
            self.tok = choose_tokenizer(cfg, self.out, self.model_cfg, sources)
        if len(self.tok) > self.model_cfg.lm.vocab_size:
            raise ValueError(f"the tokenizer has {len(self.tok)} tokens but model.lm.vocab_size is "
                             f"{self.model_cfg.lm.vocab_size}")
        self.encoder = ChatEncoder(self.tok, self.model_cfg.tokens)
        precision = o.precision if o.precision != "auto" else ("bf16" if acc.device.type == "cuda" else "fp32")
        self.dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        self.dataset = GeoPixelDataset(sources, self.encoder, self.model_cfg, cfg.data.max_length, cfg.data.question)

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

        groups = param_groups(model, o.lr, o.lr_scale)
        params = [p for g in groups for p in g["params"]]
        opt = torch.optim.AdamW(groups, lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay)
        self.scheduler = get_cosine_schedule_with_warmup(opt, o.warmup_steps, self.total_steps)
        self.model, self.opt = acc.prepare(model, opt)
        self.params = params
        self.step = 0

    # -- checkpoints -------------------------------------------------------------------------------------------
    @property
    def raw(self):
        return self.acc.unwrap_model(self.model)

    def trainable_state(self) -> dict[str, torch.Tensor]:
        return trainable_state(self.raw)

    def save_checkpoint(self) -> Path:
        return save_checkpoint(self.acc, self.out, self.raw, self.opt, self.scheduler, self.step, self.cfg.identity(),
                               self.cfg.checkpoint.keep)

    def load_checkpoint(self, path: Path) -> None:
        self.step = load_checkpoint(self.acc, path, self.raw, self.opt, self.scheduler, self.cfg.identity())

    # -- data --------------------------------------------------------------------------------------------------
    def epoch_loader(self, epoch: int, first_batch: int):
        from model.sampler import epoch_order, rank_batches

        d, o = self.cfg.data, self.cfg.train
        order = epoch_order(self.dataset, o.seed, epoch, d.window_shards)
        batches = rank_batches(order, self.rank, self.world, o.per_device_batch)[: self.steps_per_epoch * self.accum]
        return batch_loader(self.dataset, batches[first_batch:], d, self.encoder.ids.pad,
                            pin_memory=self.acc.device.type == "cuda")

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
    from model.config import build_config
    from model.sampler import epoch_order, rank_batches
    from model.samples import GeoPixelDataset
    from model.tokenizer import ChatEncoder

    model_cfg = build_config(cfg.model)
    sources = data_sources(cfg, data)
    with tempfile.TemporaryDirectory() as tmp:
        enc = ChatEncoder(choose_tokenizer(cfg, Path(tmp), model_cfg, sources), model_cfg.tokens)
        ds = GeoPixelDataset(sources, enc, model_cfg, cfg.data.max_length, cfg.data.question)
        order = []
        epoch = 0
        while len(order) < batches * cfg.train.per_device_batch:
            order += epoch_order(ds, cfg.train.seed, epoch, cfg.data.window_shards)
            epoch += 1
        bl = rank_batches(order, 0, 1, cfg.train.per_device_batch)[:batches]
        it = iter(batch_loader(ds, bl, cfg.data, enc.ids.pad))
        next(it)  # worker start-up is not throughput
        t = time.perf_counter()
        n = 0
        for b in it:
            n += len(b["ids"])
        dt = time.perf_counter() - t
    return {"samples": n, "seconds": dt, "samples_per_s": n / dt if dt else math.inf,
            "workers": cfg.data.num_workers}
