"""The SAM2 model as GeoPixel uses it: a frozen image encoder and a mask decoder prompted by [SEG] embeddings."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model.config import SamConfig
from model.sam2.common import MLP
from model.sam2.heads import MaskDecoder, PromptEncoder
from model.sam2.hiera import ImageEncoder
from model.sam2.memory import MemoryAttention, MemoryEncoder


class SAM2(nn.Module):
    def __init__(self, cfg: SamConfig):
        super().__init__()
        d = cfg.d_model
        self.cfg = cfg
        self.image_encoder = ImageEncoder(cfg)
        if cfg.memory:
            self.memory_attention = MemoryAttention(cfg)
            self.memory_encoder = MemoryEncoder(cfg)
            self.maskmem_tpos_enc = nn.Parameter(torch.zeros(cfg.num_maskmem, 1, 1, cfg.mem_dim))
            self.no_mem_pos_enc = nn.Parameter(torch.zeros(1, 1, d))
            self.mask_downsample = nn.Conv2d(1, 1, kernel_size=4, stride=4)
            self.no_obj_ptr = nn.Parameter(torch.zeros(1, d))
            self.obj_ptr_proj = MLP(d, d, d, 3)
        self.no_mem_embed = nn.Parameter(torch.zeros(1, 1, d))  # added to single-image embeddings
        self.sam_prompt_encoder = PromptEncoder(cfg)
        self.sam_mask_decoder = MaskDecoder(cfg)
        for p in (self.no_mem_embed, getattr(self, "maskmem_tpos_enc", None), getattr(self, "no_mem_pos_enc", None),
                  getattr(self, "no_obj_ptr", None)):
            if p is not None and p.device.type != "meta":
                nn.init.trunc_normal_(p, std=0.02)

    def encode(self, images: torch.Tensor) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        """(B, 3, S, S) normalised images -> image embeddings (B, d, S/16, S/16) and the two high-resolution
        feature maps the decoder adds while upscaling (already through the decoder's conv_s0 / conv_s1)."""
        s4, s8, s16 = self.image_encoder(images)
        dec = self.sam_mask_decoder
        return {"image_embed": s16 + self.no_mem_embed.reshape(1, -1, 1, 1).to(s16.dtype),
                "high_res": [dec.conv_s0(s4), dec.conv_s1(s8)]}

    def decode(self, features: dict, index: int, prompts: torch.Tensor, out_hw: tuple[int, int]) -> torch.Tensor:
        """Mask logits (n, H, W) for image `index` of `features` from n prompt embeddings (n, d)."""
        sparse, dense = self.sam_prompt_encoder(prompts.unsqueeze(1))
        embed = features["image_embed"][index: index + 1]
        high_res = [f[index: index + 1] for f in features["high_res"]]
        low_res, _ = self.sam_mask_decoder(embed, self.sam_prompt_encoder.dense_pe(), sparse, dense.to(embed.dtype),
                                           high_res)
        return F.interpolate(low_res.float(), size=out_hw, mode="bilinear", align_corners=False)[:, 0]
