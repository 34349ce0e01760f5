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
from model.train import param_groups  # noqa: E402
from model.train_config import load_train_config  # noqa: E402
from model.vision import normalise  # noqa: E402
from pipeline.contracts.imageio import read_image  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def load_split(root: Path, split: str, cfg) -> list[tuple[torch.Tensor, torch.Tensor, list[str]]]:
    """(SAM2 image, masks on the loss grid, each mask's category) for every kept record of a split."""
    src = open_source(root, split)
    out = []
    for e in src.scan():
        if not e.kept:
            continue
        p = src.patch(e.shard, e.row)
        rgb, _ = read_image(p.image)
        _, sam_image, _ = prepare_images(rgb, cfg)
        masks = loss_grid(patch_masks(p, rgb.shape[0], rgb.shape[1]), cfg.loss_mask_size)
        cats = [ph.tag.rsplit("-", 1)[0] for ph in p.phrases]  # "plane-3" -> "plane"; groups are plural
        if cats:
            out.append((sam_image, torch.from_numpy(masks).float(), cats))
    return out


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = (a | b).sum()
    return (a & b).sum() / union if union else 1.0


def score(sam, emb, index, data, cfg) -> dict:
    """Mean IoU, the share at IoU >= 0.5, and the IoU between masks of different categories in one image."""
    ious, cross = [], []
    with torch.no_grad():
        for image, masks, cats in data:
            f = sam.encode(normalise(image[None], cfg.sam.mean, cfg.sam.std, torch.float32))
            pred = (sam.decode(f, 0, emb(torch.tensor([index[c] for c in cats])), tuple(masks.shape[1:])) > 0).numpy()
            true = masks.numpy().astype(bool)
            for k in range(len(cats)):
                ious.append(_iou(pred[k], true[k]))
                cross += [_iou(pred[k], pred[j]) for j in range(k + 1, len(cats)) if cats[j] != cats[k]]
    ious = np.asarray(ious)
    return {"miou": ious.mean(), "hit": (ious >= 0.5).mean(), "cross": np.mean(cross) if cross else float("nan")}


def sam_and_groups(cfg, tc) -> tuple[SAM2, list[dict]]:
    """A random SAM2 and its optimizer groups at the rates training gives it (`train.lr_scale` matched against
    its names inside GeoPixel, `model.visual_model.*`)."""
    sam = SAM2(cfg.sam)
    holder = torch.nn.Module()
    holder.model = torch.nn.Module()
    holder.model.visual_model = sam
    return sam, param_groups(holder, tc.train.lr, tc.train.lr_scale)


def run(steps: int, train, test, cfg, tc, seed: int) -> dict:
    from transformers import get_cosine_schedule_with_warmup

    torch.manual_seed(seed)
    sam, groups = sam_and_groups(cfg, tc)
    cats = sorted({c for _, _, cs in train + test for c in cs})
    index = {c: i for i, c in enumerate(cats)}
    emb = torch.nn.Embedding(len(cats), cfg.out_dim)
    torch.nn.init.normal_(emb.weight)  # unit scale, as the [SEG] projector starts
    sam_lr = max(g["lr"] for g in groups)
    # the prompt table, with no LM behind it, learns at 5x SAM2's rate
    opt = torch.optim.AdamW(groups + [{"params": emb.parameters(), "lr": 5 * sam_lr}],
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
        (cfg.bce_weight * bce + cfg.dice_weight * dice).backward()
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
    torch.set_num_threads(tc.train.cpu_threads or torch.get_num_threads())
    train, test = load_split(a.data, "train", cfg), load_split(a.data, "test", cfg)
    rates = sorted({g["lr"] for g in sam_and_groups(cfg, tc)[1]})
    print(f"{len(train)} training and {len(test)} test patches; SAM2 at {cfg.sam.image_size} px, lr "
          f"{', '.join(f'{r:.1e}' for r in rates)}, BCE x{cfg.bce_weight}, Dice x{cfg.dice_weight}, loss grid "
          f"{cfg.loss_mask_size or 'the patch size'}")
    print("| steps | train mIoU | test mIoU | test masks at IoU >= 0.5 | IoU across categories (test) | seconds |")
    print("|---:|---:|---:|---:|---:|---:|")
    for steps in (int(s) for s in a.steps.split(",")):
        r = run(steps, train, test, cfg, tc, a.seed)
        print(f"| {steps} | {r['train']['miou']:.3f} | {r['test']['miou']:.3f} | {100 * r['test']['hit']:.1f}% | "
              f"{r['test']['cross']:.2f} | {r['s']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
