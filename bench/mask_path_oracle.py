"""How many steps the tiny SAM2 needs to learn masks from scratch, with the LM taken out of the question.

The demo's SAM2 is random. Here it is prompted by one learnt embedding per category (an oracle prompt: the best a
`[SEG]` could carry before it names a position), trained with the demo config's loss weights and SAM2 learning
rate, and scored on both demo splits at several step counts. docs/model.md ("The CPU demo") quotes the table.

    python bench/mask_path_oracle.py --data demo/out --steps 540,1000,1500     # ~6 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.config import build_config  # noqa: E402
from model.losses import mask_losses  # noqa: E402
from model.records import patch_masks  # noqa: E402
from model.sam2 import SAM2  # noqa: E402
from model.samples import loss_grid, prepare_images  # noqa: E402
from model.sources import open_source  # noqa: E402
from model.train_config import load_train_config  # noqa: E402
from model.vision import normalise  # noqa: E402
from pipeline.contracts.imageio import read_image  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def load_split(root: Path, split: str, cfg, grid: int) -> list[tuple[torch.Tensor, torch.Tensor, list[str]]]:
    """(SAM2 image, masks on the loss grid, each mask's category) for every kept record of a split."""
    src = open_source(root, split)
    out = []
    for e in src.scan():
        if not e.kept:
            continue
        p = src.patch(e.shard, e.row)
        rgb, _ = read_image(p.image)
        _, sam_image, _ = prepare_images(rgb, cfg)
        masks = loss_grid(patch_masks(p, rgb.shape[0], rgb.shape[1]), grid)
        cats = [ph.tag.rsplit("-", 1)[0] for ph in p.phrases]  # "plane-3" -> "plane"; groups are plural
        if cats:
            out.append((sam_image, torch.from_numpy(masks).float(), cats))
    return out


def score(sam, emb, index, data, cfg) -> dict:
    """Mean IoU, the share at IoU >= 0.5, and the IoU between masks of different categories in one image."""
    ious, cross = [], []
    with torch.no_grad():
        for image, masks, cats in data:
            f = sam.encode(normalise(image[None], cfg.sam.mean, cfg.sam.std, torch.float32))
            pred = (sam.decode(f, 0, emb(torch.tensor([index[c] for c in cats])), tuple(masks.shape[1:])) > 0).numpy()
            true = masks.numpy().astype(bool)
            for k in range(len(cats)):
                union = (pred[k] | true[k]).sum()
                ious.append((pred[k] & true[k]).sum() / union if union else 1.0)
                for j in range(k + 1, len(cats)):
                    if cats[j] != cats[k]:
                        u = (pred[k] | pred[j]).sum()
                        cross.append((pred[k] & pred[j]).sum() / u if u else 1.0)
    ious = np.asarray(ious)
    return {"miou": ious.mean(), "hit": (ious >= 0.5).mean(), "cross": np.mean(cross) if cross else float("nan")}


def run(steps: int, train, test, cfg, lr: float, bce_w: float, dice_w: float, seed: int) -> dict:
    from transformers import get_cosine_schedule_with_warmup

    torch.manual_seed(seed)
    sam = SAM2(cfg.sam)
    cats = sorted({c for _, _, cs in train + test for c in cs})
    index = {c: i for i, c in enumerate(cats)}
    emb = torch.nn.Embedding(len(cats), cfg.out_dim)
    torch.nn.init.normal_(emb.weight)  # unit scale, as the [SEG] projector starts
    opt = torch.optim.AdamW([{"params": sam.parameters(), "lr": lr}, {"params": emb.parameters(), "lr": 5 * lr}],
                            betas=(0.9, 0.95), weight_decay=0.0)
    sched = get_cosine_schedule_with_warmup(opt, 20, steps)
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    sam.train()
    for _ in range(steps):
        batch = [train[i] for i in rng.choice(len(train), 4, replace=False)]
        f = sam.encode(normalise(torch.stack([b[0] for b in batch]), cfg.sam.mean, cfg.sam.std, torch.float32))
        preds = [sam.decode(f, i, emb(torch.tensor([index[c] for c in b[2]])), tuple(b[1].shape[1:]))
                 for i, b in enumerate(batch)]
        bce, dice = mask_losses(preds, [b[1] for b in batch])
        (bce_w * bce + dice_w * dice).backward()
        torch.nn.utils.clip_grad_norm_(list(sam.parameters()) + list(emb.parameters()), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step()
    seconds = time.perf_counter() - t0
    sam.eval()
    return {"steps": steps, "s": seconds, "train": score(sam, emb, index, train, cfg),
            "test": score(sam, emb, index, test, cfg)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT / "demo" / "out", help="a demo's out/ folder (make demo)")
    ap.add_argument("--config", type=Path, default=ROOT / "configs" / "train" / "tiny.yaml")
    ap.add_argument("--steps", default="540,1000,1500", help="step counts, each a run from scratch")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    tc = load_train_config(a.config)
    cfg = build_config(tc.model)
    scale = next((f for pat, f in tc.train.lr_scale.items() if "visual_model" in pat), 1.0)
    lr = tc.train.lr * scale
    grid = cfg.loss_mask_size or 800
    torch.set_num_threads(tc.train.cpu_threads or torch.get_num_threads())
    train, test = load_split(a.data, "train", cfg, grid), load_split(a.data, "test", cfg, grid)
    print(f"{len(train)} training and {len(test)} test patches; SAM2 at {cfg.sam.image_size} px, lr {lr:.1e}, "
          f"BCE x{cfg.bce_weight}, Dice x{cfg.dice_weight}, loss grid {grid}")
    print("| steps | train mIoU | test mIoU | test masks at IoU >= 0.5 | IoU across categories (test) | seconds |")
    print("|---:|---:|---:|---:|---:|---:|")
    for steps in (int(s) for s in a.steps.split(",")):
        r = run(steps, train, test, cfg, lr, cfg.bce_weight, cfg.dice_weight, a.seed)
        print(f"| {steps} | {r['train']['miou']:.3f} | {r['test']['miou']:.3f} | {100 * r['test']['hit']:.1f}% | "
              f"{r['test']['cross']:.2f} | {r['s']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
