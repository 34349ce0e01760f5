"""SAM2's video memory (memory attention, memory encoder, object pointers): declared, never run.

GeoPixel segments single images, so none of these modules is called; they exist so that SAM2 and GeoPixel
checkpoints load 1:1 (every tensor has a home) and are saved back unchanged. Calling one raises.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from model.config import SamConfig
from model.sam2.common import LayerNorm2d
from model.sam2.heads import Attention


class _Declared(nn.Module):
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} is SAM2's video memory; GeoPixel segments single images")


class MemoryAttentionLayer(_Declared):
    def __init__(self, d: int, mem_dim: int, ffn: int):
        super().__init__()
        self.self_attn = Attention(d, 1)
        self.cross_attn_image = Attention(d, 1, kv_dim=mem_dim)
        self.linear1 = nn.Linear(d, ffn)
        self.linear2 = nn.Linear(ffn, d)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)


class MemoryAttention(_Declared):
    def __init__(self, cfg: SamConfig):
        super().__init__()
        self.layers = nn.ModuleList(MemoryAttentionLayer(cfg.d_model, cfg.mem_dim, cfg.memory_ffn_dim)
                                    for _ in range(cfg.memory_layers))
        self.norm = nn.LayerNorm(cfg.d_model)


class MaskDownSampler(_Declared):
    """Conv (3x3, stride 2) + LayerNorm2d + GELU, four times (1 -> 4 -> 16 -> 64 -> 256 channels), then 1x1."""

    def __init__(self, d: int, total_stride: int = 16, stride: int = 2):
        super().__init__()
        layers: list[nn.Module] = []
        cin = 1
        for _ in range(int(round(math.log(total_stride, stride)))):
            cout = cin * stride * stride
            layers += [nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1), LayerNorm2d(cout), nn.GELU()]
            cin = cout
        layers.append(nn.Conv2d(cin, d, kernel_size=1))
        self.encoder = nn.Sequential(*layers)


class CXBlock(_Declared):
    """ConvNeXt block; `weight` is the layer scale (`gamma` in SAM2's own checkpoint files)."""

    def __init__(self, d: int):
        super().__init__()
        self.dwconv = nn.Conv2d(d, d, kernel_size=7, padding=3, groups=d)
        self.norm = LayerNorm2d(d)
        self.pwconv1 = nn.Linear(d, 4 * d)
        self.pwconv2 = nn.Linear(4 * d, d)
        self.weight = nn.Parameter(torch.full((d,), 1e-6))


class Fuser(_Declared):
    def __init__(self, d: int, n: int):
        super().__init__()
        self.layers = nn.ModuleList(CXBlock(d) for _ in range(n))


class MemoryEncoder(_Declared):
    def __init__(self, cfg: SamConfig):
        super().__init__()
        d = cfg.d_model
        self.mask_downsampler = MaskDownSampler(d)
        self.pix_feat_proj = nn.Conv2d(d, d, kernel_size=1)
        self.fuser = Fuser(d, cfg.fuser_layers)
        self.out_proj = nn.Conv2d(d, cfg.mem_dim, kernel_size=1)
