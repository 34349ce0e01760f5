"""Per-mask segmentation losses, as GeoPixel (after LISA) defines them: every mask counts once, whatever its size."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bce_per_mask(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(n, H, W) -> (n,): mean binary cross-entropy over each mask's pixels."""
    return F.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten(1).mean(1)


def dice_per_mask(logits: torch.Tensor, target: torch.Tensor, scale: float = 1000.0, eps: float = 1e-6) -> torch.Tensor:
    """(n, H, W) -> (n,): 1 - soft Dice; `scale` keeps the sums of an 800x800 mask small (as released)."""
    p = logits.sigmoid().flatten(1) / scale
    t = target.flatten(1) / scale
    return 1 - (2 * (p * t * scale).sum(-1) + eps) / (p.sum(-1) + t.sum(-1) + eps)


def mask_losses(preds: list[torch.Tensor], targets: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean BCE and mean Dice over every mask of the batch (zero when there is none)."""
    if not preds:
        return torch.zeros(()), torch.zeros(())
    bce = torch.cat([bce_per_mask(p.float(), t.float()) for p, t in zip(preds, targets)])  # sizes may differ
    dice = torch.cat([dice_per_mask(p.float(), t.float()) for p, t in zip(preds, targets)])
    return bce.mean(), dice.mean()
