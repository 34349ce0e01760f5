"""SAM2's image encoder: the Hiera trunk (windowed multi-scale attention, query pooling between stages) and the
FPN neck. Names follow SAM2's checkpoints (`trunk.blocks.N.attn.qkv`, `neck.convs.N.conv`, ...)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model.config import SamConfig
from model.sam2.common import MLP


def _windows(x: torch.Tensor, size: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """(B, H, W, C) -> (B * windows, size, size, C), zero-padding H and W up to multiples of `size`."""
    b, h, w, c = x.shape
    ph, pw = (-h) % size, (-w) % size
    if ph or pw:
        x = F.pad(x, (0, 0, 0, pw, 0, ph))
    hp, wp = h + ph, w + pw
    x = x.view(b, hp // size, size, wp // size, size, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, size, size, c), (hp, wp)


def _unwindow(x: torch.Tensor, size: int, padded: tuple[int, int], hw: tuple[int, int]) -> torch.Tensor:
    hp, wp = padded
    b = x.shape[0] // (hp * wp // size // size)
    x = x.view(b, hp // size, wp // size, size, size, -1).permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, -1)
    return x[:, : hw[0], : hw[1]].contiguous()


def _pool(x: torch.Tensor, stride: int) -> torch.Tensor:
    """2D max-pool of a (B, H, W, C) map."""
    return F.max_pool2d(x.permute(0, 3, 1, 2), stride, stride).permute(0, 2, 3, 1)


class MultiScaleAttention(nn.Module):
    def __init__(self, dim: int, dim_out: int, heads: int, q_stride: int | None):
        super().__init__()
        self.heads, self.q_stride = heads, q_stride
        self.qkv = nn.Linear(dim, dim_out * 3)
        self.proj = nn.Linear(dim_out, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        q, k, v = self.qkv(x).reshape(b, h * w, 3, self.heads, -1).unbind(2)
        if self.q_stride:
            q = _pool(q.reshape(b, h, w, -1), self.q_stride)
            h, w = q.shape[1:3]
            q = q.reshape(b, h * w, self.heads, -1)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return self.proj(out.transpose(1, 2).reshape(b, h, w, -1))


class MultiScaleBlock(nn.Module):
    def __init__(self, dim: int, dim_out: int, heads: int, window: int, q_stride: int | None):
        super().__init__()
        self.dim, self.dim_out, self.window, self.q_stride = dim, dim_out, window, q_stride
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = MultiScaleAttention(dim, dim_out, heads, q_stride)
        self.norm2 = nn.LayerNorm(dim_out, eps=1e-6)
        self.mlp = MLP(dim_out, dim_out * 4, dim_out, 2, nn.GELU)
        if dim != dim_out:
            self.proj = nn.Linear(dim, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.norm1(x)
        if self.dim != self.dim_out:
            shortcut = self.proj(x)
            if self.q_stride:
                shortcut = _pool(shortcut, self.q_stride)
        window = self.window
        if window > 0:
            hw = x.shape[1:3]
            x, padded = _windows(x, window)
        x = self.attn(x)
        if self.q_stride:  # the query grid shrank: so did the windows
            window //= self.q_stride
            hw = shortcut.shape[1:3]
            padded = (hw[0] + (-hw[0]) % window, hw[1] + (-hw[1]) % window) if window > 0 else hw
        if self.window > 0:
            x = _unwindow(x, window, padded, hw)
        x = shortcut + x
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=7, stride=4, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)


class Hiera(nn.Module):
    """Four stages; the first block of each later stage pools queries 2x and doubles width and heads."""

    def __init__(self, cfg: SamConfig):
        super().__init__()
        stages = list(cfg.stages)
        self.stage_ends = [sum(stages[: i + 1]) - 1 for i in range(len(stages))]
        q_pool_blocks = [e + 1 for e in self.stage_ends[:-1]]
        self.patch_embed = PatchEmbed(cfg.embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.embed_dim, *cfg.window_pos_embed_bkg_spatial_size))
        self.pos_embed_window = nn.Parameter(torch.zeros(1, cfg.embed_dim, cfg.window_spec[0], cfg.window_spec[0]))
        dim, heads, stage = cfg.embed_dim, cfg.num_heads, 0
        self.blocks = nn.ModuleList()
        for i in range(sum(stages)):
            window = 0 if i in cfg.global_att_blocks else cfg.window_spec[stage]  # lags one block behind a stage
            dim_out = dim
            if i - 1 in self.stage_ends:
                dim_out, heads, stage = dim * 2, heads * 2, stage + 1
            self.blocks.append(MultiScaleBlock(dim, dim_out, heads, window, 2 if i in q_pool_blocks else None))
            dim = dim_out

    def _pos_embed(self, h: int, w: int) -> torch.Tensor:
        pos = F.interpolate(self.pos_embed, size=(h, w), mode="bicubic")
        win = self.pos_embed_window
        pos = pos + win.tile([1, 1, h // win.shape[2], w // win.shape[3]])
        return pos.permute(0, 2, 3, 1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.patch_embed(x)
        x = x + self._pos_embed(*x.shape[1:3])
        outs = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.stage_ends:
                outs.append(x.permute(0, 3, 1, 2))
        return outs  # highest resolution first


class _Conv(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size=1)

    def forward(self, x):
        return self.conv(x)


class FpnNeck(nn.Module):
    """Lateral 1x1 convs; top-down (nearest 2x) only into `fpn_top_down_levels`. No output convs."""

    def __init__(self, cfg: SamConfig):
        super().__init__()
        self.convs = nn.ModuleList(_Conv(c, cfg.d_model) for c in cfg.channel_list)
        self.top_down = set(cfg.fpn_top_down_levels)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        n = len(self.convs) - 1
        out: list[torch.Tensor | None] = [None] * len(xs)
        prev = None
        for i in range(n, -1, -1):
            lateral = self.convs[n - i](xs[i])
            if i in self.top_down and prev is not None:
                prev = lateral + F.interpolate(prev.float(), scale_factor=2.0, mode="nearest").to(lateral.dtype)
            else:
                prev = lateral
            out[i] = prev
        return out


class ImageEncoder(nn.Module):
    def __init__(self, cfg: SamConfig):
        super().__init__()
        self.trunk = Hiera(cfg)
        self.neck = FpnNeck(cfg)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """FPN features at strides 4, 8, 16 (the stride-32 level is dropped: SAM2's `scalp=1`)."""
        return self.neck(self.trunk(x))[:-1]
