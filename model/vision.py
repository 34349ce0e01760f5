"""The visual path of InternLM-XComposer-2.5: the adaptive image divider, the CLIP tower and token assembly.

The divider scales an image so its long side spans a whole number of 560 px tiles (at most `hd_num` tiles in
all; an 800 px patch becomes 3x3), pads the short side to a tile multiple, and the tower encodes the tiles plus
a 560 px global view. Each tile's 40x40 patch features are merged 2x2 into 20x20 tokens of 4x the width; a
learned separator (`plora_sub_GN`) ends every token row and another (`plora_glb_GN`) separates the global view
from the tiles, giving (tiles + 1) * 400 + 1 + (rows + 1) * 20 image tokens.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from model.config import VisionConfig


def hd_grid(width: int, height: int, cfg: VisionConfig) -> tuple[int, int, int, int]:
    """(new_width, new_height, cols, rows) of the divider for an image of the given size.

    The long side gets `scale` tiles: as many as fit `hd_num` at the image's aspect ratio, but no more than
    ceil(long * upscale / tile) (the released training transform, which never picks a random scale for the
    GeoPixelD patch sizes); the short side keeps the aspect ratio and is padded up to whole tiles.
    """
    transposed = width < height
    long, short = (height, width) if transposed else (width, height)
    ratio = long / short
    scale = 1
    while scale * math.ceil(scale / ratio) <= cfg.hd_num:
        scale += 1
    scale = max(1, min(scale - 1, math.ceil(long * cfg.upscale / cfg.tile_size)))
    new_long = scale * cfg.tile_size
    new_short = max(1, int(new_long / ratio))
    padded_short = math.ceil(new_short / cfg.tile_size) * cfg.tile_size
    if transposed:
        return new_short, new_long, padded_short // cfg.tile_size, scale
    return new_long, new_short, scale, padded_short // cfg.tile_size


def normalise(images: torch.Tensor, mean, std, dtype: torch.dtype) -> torch.Tensor:
    """uint8 (..., 3, H, W) -> float (mean/std per channel), computed in float32 then cast."""
    m = torch.tensor(mean, device=images.device).view(3, 1, 1)
    s = torch.tensor(std, device=images.device).view(3, 1, 1)
    return ((images.float() / 255.0 - m) / s).to(dtype)


def image_token_count(rows: int, cols: int, cfg: VisionConfig) -> int:
    g = cfg.merged_grid
    return (rows * cols + 1) * g * g + 1 + (rows + 1) * g


class _Holder(nn.Module):
    """Keeps the CLIP model under `vision_tower.vision_model.*`, the names the released checkpoints use
    (transformers 4 nested CLIPVisionModel's modules under `vision_model`; transformers 5 no longer does)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.vision_model = model


class VisionTower(nn.Module):
    """CLIP ViT over tiles + global view; returns merged 2x2 tokens with row and view separators."""

    def __init__(self, cfg: VisionConfig):
        super().__init__()
        from transformers import CLIPVisionConfig, CLIPVisionModel

        self.cfg = cfg
        clip_cfg = CLIPVisionConfig(hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
                                    num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
                                    image_size=cfg.tile_size, patch_size=cfg.patch_size, hidden_act=cfg.hidden_act,
                                    layer_norm_eps=cfg.layer_norm_eps, attn_implementation="sdpa")
        self.vision_tower = _Holder(CLIPVisionModel(clip_cfg))

    @property
    def clip(self) -> nn.Module:
        return self.vision_tower.vision_model

    def forward(self, images: list[torch.Tensor], glb_gn: torch.Tensor, sub_gn: torch.Tensor) -> list[torch.Tensor]:
        """`images`: (3, rows*tile, cols*tile) each. Returns one (tokens, 4*hidden) tensor per image."""
        t = self.cfg.tile_size
        batch, grids = [], []
        for img in images:
            _, h, w = img.shape
            rows, cols = h // t, w // t
            grids.append((rows, cols))
            batch.append(F.interpolate(img[None].float(), size=(t, t), mode="bicubic", align_corners=False))
            batch.append(img.reshape(3, rows, t, cols, t).permute(1, 3, 0, 2, 4).reshape(rows * cols, 3, t, t))
        pixels = torch.cat(batch).to(device=glb_gn.device, dtype=next(self.clip.parameters()).dtype)
        trainable = any(p.requires_grad for p in self.clip.parameters())
        with torch.set_grad_enabled(torch.is_grad_enabled() and trainable):  # GeoPixel keeps CLIP frozen
            feats = self.clip(pixel_values=pixels).last_hidden_state[:, 1:].to(glb_gn.dtype)  # before post-LN
        n, p, c = feats.shape
        g0 = int(round(math.sqrt(p)))
        g = g0 // 2
        merged = feats.reshape(n, g, 2, g, 2, c).permute(0, 1, 3, 2, 4, 5).reshape(n, g, g, 4 * c)
        out, i = [], 0
        for rows, cols in grids:
            glb = torch.cat([merged[i], sub_gn[0].expand(g, 1, 4 * c)], dim=1).reshape(-1, 4 * c)
            sub = merged[i + 1: i + 1 + rows * cols].reshape(rows, cols, g, g, 4 * c).permute(0, 2, 1, 3, 4)
            sub = sub.reshape(rows * g, cols * g, 4 * c)
            sub = torch.cat([sub, sub_gn[0].expand(rows * g, 1, 4 * c)], dim=1).reshape(-1, 4 * c)
            out.append(torch.cat([glb, glb_gn.reshape(1, 4 * c), sub], dim=0))
            i += 1 + rows * cols
        return out
