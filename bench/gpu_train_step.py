#!/usr/bin/env python3
"""GPU benchmark: one GeoPixel training step at full size, random weights, memory capped at an A6000's 48 GB.

Builds the full-size model of the training config (InternLM-XComposer-2.5-7B LM with PLoRA, CLIP ViT-L/14 at
560 px, SAM2 hiera-large, [SEG] projector; `lm.mode_loras: false` as in configs/train/paper.yaml unless
--mode-loras) directly on the GPU in bf16, adds LoRA r 8 / alpha 16 and marks the trainable parts exactly as
the trainer does, turns on gradient checkpointing, and runs optimizer steps at batch 1 on an 800 px patch: 3x3
tiles + the global view (4,081 image tokens), 320 text tokens with 8 [SEG] (as the proxy's 320 text tokens), 8
masks at 800x800, SAM2 at 1024 px. Measurement conventions follow ../shared/tools/gpu_proxy_step.py: 7 steps,
peak memory reset after the second, median of steps 3-7, tokens/s = sequence tokens / median step time, torch
AdamW over bf16 parameters.

    python ../shared/tools/gpu_proxy_step.py 48 | tee /tmp/proxy.txt
    python bench/gpu_train_step.py --cap-gb 48 --proxy-log /tmp/proxy.txt

`--proxy-log` reads the proxy's RESULT line and prints both numbers and their ratios (goal: at most 1.25x the
proxy's step time and peak memory, inside 48 GB). `--loader-demo` also times the data loader alone on a
generated demo build with the full-size image preparation, against the measured step rate.
`--device cpu --preset tiny` runs the same code path on the CPU (what the test suite does).
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.config import build_config  # noqa: E402
from model.geopixel import SpecialIds, build_model  # noqa: E402
from model.lora import add_lora, set_trainable  # noqa: E402
from model.vision import image_token_count, hd_grid  # noqa: E402


def synthetic_batch(cfg, ids: SpecialIds, text_tokens: int, n_seg: int, size: int, device) -> dict:
    """One sample shaped like a GeoPixelD patch: [BOS] + image tokens + text, labels on the text, 8 masks."""
    g = torch.Generator().manual_seed(0)
    w, h, cols, rows = hd_grid(size, size, cfg.vision)
    n_img = image_token_count(rows, cols, cfg.vision)
    text = torch.randint(3, cfg.lm.vocab_size - 5, (text_tokens,), generator=g)  # never a special id
    text[torch.linspace(10, text_tokens - 10, n_seg).long()] = ids.seg
    input_ids = torch.cat([torch.tensor([ids.bos]), torch.full((n_img,), ids.pad), text])
    labels = torch.cat([torch.full((1 + n_img,), -100), text])
    image_mask = torch.cat([torch.tensor([False]), torch.ones(n_img, dtype=torch.bool), torch.zeros(text_tokens,
                                                                                                      dtype=torch.bool)])
    t = cfg.vision.tile_size
    masks = torch.zeros(n_seg, size, size, dtype=torch.uint8)
    for k in range(n_seg):
        masks[k, 50 * k: 50 * k + 120, 60 * k: 60 * k + 200] = 1
    return {"input_ids": input_ids[None].to(device), "labels": labels[None].to(device),
            "image_mask": image_mask[None].to(device),
            "attention_mask": torch.ones(1, len(input_ids), dtype=torch.bool, device=device),
            "hd_images": [torch.randint(0, 256, (3, rows * t, cols * t), dtype=torch.uint8, generator=g)],
            "sam_images": torch.randint(0, 256, (1, 3, cfg.sam.image_size, cfg.sam.image_size), dtype=torch.uint8,
                                        generator=g),
            "masks": [masks], "sizes": [(size, size)], "ids": ["synthetic"], "n_img": n_img}


def proxy_numbers(path: str | None) -> tuple[float, float] | None:
    if not path:
        return None
    m = re.search(r"RESULT peak_alloc_gb=([\d.]+) step_s_median=([\d.]+)", Path(path).read_text())
    return (float(m[1]), float(m[2])) if m else None


def loader_rate(cfg_name: str, workers: int, batches: int) -> float:
    """Samples/s of the real loader on a generated tiny demo build, with this config's image preparation."""
    import tempfile

    from model.train import measure_loader
    from model.train_config import load_train_config
    from pipeline.synthetic.tiny_build import tiny_build

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        tiny_build(out, splits=("train",))
        tc = load_train_config(None, {"model": cfg_name, "tokenizer": "tiny", "data.num_workers": workers,
                                      "train.per_device_batch": 1})
        return measure_loader(tc, str(out), batches)["samples_per_s"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cap-gb", type=float, default=48.0, help="usable GPU memory (0: no cap)")
    ap.add_argument("--preset", default="geopixel-7b")
    ap.add_argument("--mode-loras", action="store_true", help="also hold IXC-2.5's unused write/web LoRA weights")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--steps", type=int, default=7)
    ap.add_argument("--text-tokens", type=int, default=320)
    ap.add_argument("--segs", type=int, default=8)
    ap.add_argument("--patch", type=int, default=800)
    ap.add_argument("--no-checkpointing", action="store_true")
    ap.add_argument("--proxy-log", help="output of ../shared/tools/gpu_proxy_step.py to compare against")
    ap.add_argument("--loader-demo", type=int, default=0, metavar="WORKERS",
                    help="also time the data loader alone with this many workers (0: skip)")
    args = ap.parse_args()

    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    if cuda:
        total = torch.cuda.get_device_properties(0).total_memory
        if args.cap_gb:
            torch.cuda.set_per_process_memory_fraction(min(1.0, args.cap_gb * 2**30 / total))
    torch.manual_seed(0)
    cfg = build_config({"preset": args.preset, "lm": {"mode_loras": args.mode_loras}})
    if cfg.loss_mask_size is not None:
        cfg = cfg.model_copy(update={"loss_mask_size": None})
    v = cfg.lm.vocab_size
    ids = SpecialIds(bos=1, eos=2, pad=0, seg=v - 3, phrase_open=v - 2, phrase_close=v - 1, turn_start=v - 4,
                     turn_end=v - 5)
    dtype = torch.bfloat16 if cuda else torch.float32
    t0 = time.perf_counter()
    model = build_model(cfg, ids, device=dev, dtype=dtype)
    add_lora(model)
    model.to(dtype)
    set_trainable(model)
    model.gradient_checkpointing = not args.no_checkpointing
    model.train()
    build_s = time.perf_counter() - t0
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=3e-4, betas=(0.9, 0.95), weight_decay=0.0)
    n_train = sum(p.numel() for p in params)
    n_all = sum(p.numel() for p in model.parameters())
    batch = synthetic_batch(cfg, ids, args.text_tokens, args.segs, args.patch, dev)
    tokens = batch["input_ids"].shape[1]

    def step() -> float:
        out = model(batch)
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(out["loss"])

    times, losses = [], []
    for i in range(args.steps):
        if cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        losses.append(step())
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
        if i == 1 and cuda:
            torch.cuda.reset_peak_memory_stats()
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
    st = statistics.median(times[2:] if len(times) > 2 else times)
    name = torch.cuda.get_device_name(0) if cuda else "cpu"
    print(f"device={name} torch={torch.__version__} cap_gb={args.cap_gb if cuda and args.cap_gb else 'none'}")
    print(f"model={args.preset} mode_loras={args.mode_loras} params={n_all / 1e9:.2f}B trainable={n_train / 1e6:.0f}M "
          f"built_in={build_s:.1f}s image_tokens={batch['n_img']} sequence={tokens} segs={args.segs} "
          f"checkpointing={not args.no_checkpointing} losses={' '.join(f'{x:.3f}' for x in losses)}")
    print(f"RESULT peak_alloc_gb={peak:.1f} step_s_median={st:.2f} tokens_per_s={tokens / st:.0f} steps={len(times)}")
    proxy = proxy_numbers(args.proxy_log)
    if proxy:
        pk, ps = proxy
        print("| | peak GB | step s | tokens/s |\n|---|---|---|---|")
        print(f"| proxy (gpu_proxy_step.py) | {pk:.1f} | {ps:.2f} | {4320 / ps:.0f} |")
        print(f"| GeoPixel (this script) | {peak:.1f} | {st:.2f} | {tokens / st:.0f} |")
        print(f"RATIO memory={peak / pk:.2f} time={st / ps:.2f} (goal: both <= 1.25, peak <= {args.cap_gb:.0f} GB)")
    if args.loader_demo:
        rate = loader_rate(args.preset, args.loader_demo, 20)
        print(f"LOADER samples_per_s={rate:.2f} workers={args.loader_demo} vs trainer samples_per_s={1 / st:.2f} "
              f"(batch 1 a step)")


if __name__ == "__main__":
    main()
