"""SAM2's prompt encoder and mask decoder (two-way transformer, hypernetwork mask heads, IoU and object heads).

GeoPixel feeds the projected `[SEG]` hidden state as the only sparse prompt; no points, boxes or mask inputs.
Point/box/mask embeddings are declared (they are in the checkpoints) and the dense prompt is `no_mask_embed`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from model.config import SamConfig
from model.sam2.common import MLP, LayerNorm2d


class RandomPositionalEncoding(nn.Module):
    """Fourier features of normalised (x, y) with a fixed Gaussian matrix (a checkpoint buffer)."""

    def __init__(self, num_feats: int):
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn(2, num_feats))

    def forward(self, h: int, w: int) -> torch.Tensor:
        m = self.positional_encoding_gaussian_matrix
        ys = (torch.arange(h, device=m.device, dtype=torch.float32) + 0.5) / h
        xs = (torch.arange(w, device=m.device, dtype=torch.float32) + 0.5) / w
        grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)  # (h, w, 2) as (x, y)
        coords = 2 * math.pi * ((2 * grid - 1) @ m.float())
        return torch.cat([coords.sin(), coords.cos()], dim=-1).permute(2, 0, 1)  # (C, h, w)


class PromptEncoder(nn.Module):
    def __init__(self, cfg: SamConfig):
        super().__init__()
        d, c = cfg.d_model, cfg.mask_in_chans
        self.embedding_size = cfg.embedding_size
        self.pe_layer = RandomPositionalEncoding(d // 2)
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, d) for _ in range(4))
        self.not_a_point_embed = nn.Embedding(1, d)
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, c // 4, kernel_size=2, stride=2), LayerNorm2d(c // 4), nn.GELU(),
            nn.Conv2d(c // 4, c, kernel_size=2, stride=2), LayerNorm2d(c), nn.GELU(),
            nn.Conv2d(c, d, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, d)

    def dense_pe(self) -> torch.Tensor:
        return self.pe_layer(self.embedding_size, self.embedding_size).unsqueeze(0)

    def forward(self, text_embeds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(n, k, d) sparse prompts -> (sparse, dense): dense is `no_mask_embed` over the embedding grid."""
        n, s = text_embeds.shape[0], self.embedding_size
        dense = self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(n, -1, s, s)
        return text_embeds, dense


class Attention(nn.Module):
    """Multi-head attention whose internal width may be downsampled; keys/values may come from another width."""

    def __init__(self, dim: int, heads: int, downsample: int = 1, kv_dim: int | None = None):
        super().__init__()
        inner = dim // downsample
        self.heads = heads
        self.q_proj = nn.Linear(dim, inner)
        self.k_proj = nn.Linear(kv_dim or dim, inner)
        self.v_proj = nn.Linear(kv_dim or dim, inner)
        self.out_proj = nn.Linear(inner, dim)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.heads, c // self.heads).transpose(1, 2)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        out = F.scaled_dot_product_attention(self._split(self.q_proj(q)), self._split(self.k_proj(k)),
                                             self._split(self.v_proj(v)))
        b, h, n, c = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, h * c))


class TwoWayBlock(nn.Module):
    """Token self-attention, token->image cross-attention, MLP, image->token cross-attention."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, skip_first_pe: bool):
        super().__init__()
        self.self_attn = Attention(dim, heads)
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn_token_to_image = Attention(dim, heads, downsample=2)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, mlp_dim, dim, 2, nn.ReLU)
        self.norm3 = nn.LayerNorm(dim)
        self.norm4 = nn.LayerNorm(dim)
        self.cross_attn_image_to_token = Attention(dim, heads, downsample=2)
        self.skip_first_pe = skip_first_pe

    def forward(self, queries, keys, query_pe, key_pe):
        if self.skip_first_pe:
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)
        k = keys + key_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image(queries + query_pe, k, keys))
        queries = self.norm3(queries + self.mlp(queries))
        keys = self.norm4(keys + self.cross_attn_image_to_token(k, queries + query_pe, queries))
        return queries, keys


class TwoWayTransformer(nn.Module):
    def __init__(self, cfg: SamConfig):
        super().__init__()
        d = cfg.d_model
        self.layers = nn.ModuleList(TwoWayBlock(d, cfg.decoder_heads, cfg.decoder_mlp_dim, i == 0)
                                    for i in range(cfg.decoder_depth))
        self.final_attn_token_to_image = Attention(d, cfg.decoder_heads, downsample=2)
        self.norm_final_attn = nn.LayerNorm(d)

    def forward(self, image: torch.Tensor, image_pe: torch.Tensor, tokens: torch.Tensor):
        keys = image.flatten(2).permute(0, 2, 1)
        key_pe = image_pe.flatten(2).permute(0, 2, 1)
        queries = tokens
        for layer in self.layers:
            queries, keys = layer(queries, keys, tokens, key_pe)
        queries = queries + self.final_attn_token_to_image(queries + tokens, keys + key_pe, keys)
        return self.norm_final_attn(queries), keys


class MaskDecoder(nn.Module):
    """SAM2's decoder with high-resolution skip features, object-score token and stability fallback."""

    NUM_MASK_TOKENS = 4  # one single-mask token + three multimask tokens

    def __init__(self, cfg: SamConfig):
        super().__init__()
        d = cfg.d_model
        self.cfg = cfg
        self.transformer = TwoWayTransformer(cfg)
        self.iou_token = nn.Embedding(1, d)
        self.mask_tokens = nn.Embedding(self.NUM_MASK_TOKENS, d)
        self.obj_score_token = nn.Embedding(1, d)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(d, d // 4, kernel_size=2, stride=2), LayerNorm2d(d // 4), nn.GELU(),
            nn.ConvTranspose2d(d // 4, d // 8, kernel_size=2, stride=2), nn.GELU(),
        )
        self.conv_s0 = nn.Conv2d(d, d // 8, kernel_size=1)
        self.conv_s1 = nn.Conv2d(d, d // 4, kernel_size=1)
        self.output_hypernetworks_mlps = nn.ModuleList(MLP(d, d, d // 8, 3) for _ in range(self.NUM_MASK_TOKENS))
        self.iou_prediction_head = MLP(d, cfg.iou_head_hidden_dim, self.NUM_MASK_TOKENS, 3, sigmoid=True)
        self.pred_obj_score_head = MLP(d, d, 1, 3)

    def forward(self, image_embed: torch.Tensor, image_pe: torch.Tensor, sparse: torch.Tensor, dense: torch.Tensor,
                high_res: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """One image's features (1, d, s, s) against n prompts (n, k, d) -> single-mask logits (n, 1, 4s, 4s)
        and IoU predictions (n, 1). In eval mode an unstable single mask falls back to the best multimask
        output, as SAM2's image predictor (and GeoPixel's inference) does, unless
        `sam.dynamic_multimask_via_stability` is off."""
        n = sparse.shape[0]
        out_tokens = torch.cat([self.obj_score_token.weight, self.iou_token.weight, self.mask_tokens.weight], dim=0)
        tokens = torch.cat([out_tokens.unsqueeze(0).expand(n, -1, -1).to(sparse.dtype), sparse], dim=1)
        src = image_embed.expand(n, -1, -1, -1) + dense.to(image_embed.dtype)
        pos = image_pe.expand(n, -1, -1, -1).to(src.dtype)
        b, c, h, w = src.shape
        hs, src = self.transformer(src, pos, tokens)
        iou_out = hs[:, 1]
        mask_out = hs[:, 2: 2 + self.NUM_MASK_TOKENS]
        src = src.transpose(1, 2).reshape(b, c, h, w)
        dc1, ln1, act1, dc2, act2 = self.output_upscaling
        feat_s0, feat_s1 = high_res
        up = act1(ln1(dc1(src) + feat_s1))
        up = act2(dc2(up) + feat_s0)
        hyper = torch.stack([mlp(mask_out[:, i]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1)
        b, c, h, w = up.shape
        masks = (hyper @ up.view(b, c, h * w)).view(b, -1, h, w)
        iou = self.iou_prediction_head(iou_out)
        if self.training or not self.cfg.dynamic_multimask_via_stability:
            return masks[:, :1], iou[:, :1]
        return self._stable_single(masks, iou)

    def _stable_single(self, masks: torch.Tensor, iou: torch.Tensor):
        delta, thresh = self.cfg.dynamic_multimask_stability_delta, self.cfg.dynamic_multimask_stability_thresh
        single, single_iou = masks[:, :1], iou[:, :1]
        flat = single.flatten(-2)
        inter = (flat > delta).sum(-1).float()
        union = (flat > -delta).sum(-1).float()
        stable = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union)) >= thresh  # (n, 1)
        best = iou[:, 1:].argmax(-1)
        idx = torch.arange(masks.shape[0], device=masks.device)
        best_masks = masks[:, 1:][idx, best].unsqueeze(1)
        best_iou = iou[:, 1:][idx, best].unsqueeze(1)
        return (torch.where(stable[..., None, None], single, best_masks),
                torch.where(stable, single_iou, best_iou))
