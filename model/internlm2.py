"""InternLM2 decoder with partial LoRA (PLoRA): the language model of InternLM-XComposer-2.5 and GeoPixel.

Module and parameter names follow the released checkpoints (`layers.N.attention.wqkv`, `feed_forward.w1`, ...)
so that weights load by name. PLoRA adds a low-rank update to every projection that is applied to image tokens
only (`im_mask`), which is how InternLM-XComposer-2.5 specialises the LM for visual tokens.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from model.config import LMConfig

# InternLM-XComposer-2.5's extra low-rank branches for its 'write' and 'web' modes: name -> rank.
MODE_LORAS = {"lora_sft": 256, "lora_dpo": 256, "lora_web": 512}


class PLoRALinear(nn.Linear):
    """A linear layer plus a low-rank branch that only image tokens pass through.

    `forward(x, im_mask)`: `im_mask` (batch, seq) is True at image tokens; None means no image token (text-only
    decoding steps), which skips the branch. Dropout applies to the branch input, as in the release.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool, rank: int, alpha: float, dropout: float,
                 mode_loras: bool = False):
        super().__init__(in_features, out_features, bias=bias)
        self.Plora_A = nn.Linear(in_features, rank, bias=False)
        self.Plora_B = nn.Linear(rank, out_features, bias=False)
        self.plora_scaling = alpha / rank
        self.plora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        if mode_loras:  # declared for checkpoint compatibility; GeoPixel only runs the base mode
            for name, r in MODE_LORAS.items():
                setattr(self, f"{name}_A", nn.Linear(in_features, r, bias=False))
                setattr(self, f"{name}_B", nn.Linear(r, out_features, bias=False))

    def forward(self, x: torch.Tensor, im_mask: torch.Tensor | None = None) -> torch.Tensor:
        out = F.linear(x, self.weight, self.bias)
        if im_mask is not None:
            branch = self.Plora_B(self.Plora_A(self.plora_dropout(x))) * self.plora_scaling
            out = out + branch * im_mask.unsqueeze(-1).to(branch.dtype)
        return out


class RMSNorm(nn.Module):
    def __init__(self, size: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


def rope_cos_sin(positions: torch.Tensor, dim: int, cfg: LMConfig, dtype: torch.dtype):
    """cos/sin tables (seq, dim) for the given absolute positions (dynamic NTK beyond the trained length)."""
    base = cfg.rope_theta
    seq = int(positions.max().item()) + 1 if positions.numel() else 1
    if cfg.rope_dynamic_factor and seq > cfg.max_position_embeddings:
        f = cfg.rope_dynamic_factor
        base = base * ((f * seq / cfg.max_position_embeddings) - (f - 1)) ** (dim / (dim - 2))
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, device=positions.device, dtype=torch.float32) / dim))
    freqs = positions.float()[:, None] * inv_freq[None, :]
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, dim=-1)
    return torch.cat([-b, a], dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    return x * cos + _rotate_half(x) * sin


class Attention(nn.Module):
    """Grouped-query attention with InternLM2's packed `wqkv`: per KV head, its query heads, then K, then V."""

    def __init__(self, cfg: LMConfig):
        super().__init__()
        self.cfg = cfg
        self.n_heads, self.n_kv, self.head_dim = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
        self.groups = self.n_heads // self.n_kv
        kw = dict(rank=cfg.plora_rank, alpha=cfg.plora_alpha, dropout=cfg.plora_dropout, mode_loras=cfg.mode_loras)
        self.wqkv = PLoRALinear(cfg.hidden_size, (self.n_heads + 2 * self.n_kv) * self.head_dim, cfg.bias, **kw)
        self.wo = PLoRALinear(self.n_heads * self.head_dim, cfg.hidden_size, cfg.bias, **kw)

    def forward(self, x, im_mask, cos, sin, attn_mask, cache: "KVCache | None", layer: int):
        b, q_len, _ = x.shape
        qkv = self.wqkv(x, im_mask).view(b, q_len, self.n_kv, self.groups + 2, self.head_dim)
        q = qkv[..., : self.groups, :].reshape(b, q_len, self.n_heads, self.head_dim).transpose(1, 2)
        k = qkv[..., -2, :].transpose(1, 2)
        v = qkv[..., -1, :].transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:
            k, v = cache.update(layer, k, v)
        if self.groups > 1:
            k = k.repeat_interleave(self.groups, dim=1)
            v = v.repeat_interleave(self.groups, dim=1)
        if attn_mask is None:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=q_len > 1 and k.shape[2] == q_len)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        out = out.transpose(1, 2).reshape(b, q_len, self.n_heads * self.head_dim)
        return self.wo(out, im_mask)


class FeedForward(nn.Module):
    def __init__(self, cfg: LMConfig):
        super().__init__()
        kw = dict(rank=cfg.plora_rank, alpha=cfg.plora_alpha, dropout=cfg.plora_dropout, mode_loras=cfg.mode_loras)
        self.w1 = PLoRALinear(cfg.hidden_size, cfg.intermediate_size, False, **kw)
        self.w3 = PLoRALinear(cfg.hidden_size, cfg.intermediate_size, False, **kw)
        self.w2 = PLoRALinear(cfg.intermediate_size, cfg.hidden_size, False, **kw)

    def forward(self, x, im_mask):
        return self.w2(F.silu(self.w1(x, im_mask)) * self.w3(x, im_mask), im_mask)


class DecoderLayer(nn.Module):
    def __init__(self, cfg: LMConfig):
        super().__init__()
        self.attention = Attention(cfg)
        self.feed_forward = FeedForward(cfg)
        self.attention_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.ffn_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, x, im_mask, cos, sin, attn_mask, cache=None, layer=0):
        x = x + self.attention(self.attention_norm(x), im_mask, cos, sin, attn_mask, cache, layer)
        return x + self.feed_forward(self.ffn_norm(x), im_mask)


class KVCache:
    """Keys and values of every layer for incremental greedy decoding."""

    def __init__(self, n_layers: int):
        self.k: list[torch.Tensor | None] = [None] * n_layers
        self.v: list[torch.Tensor | None] = [None] * n_layers

    @property
    def length(self) -> int:
        return 0 if self.k[0] is None else self.k[0].shape[2]

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        if self.k[layer] is not None:
            k = torch.cat([self.k[layer], k], dim=2)
            v = torch.cat([self.v[layer], v], dim=2)
        self.k[layer], self.v[layer] = k, v
        return k, v


def padding_mask(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Additive (batch, 1, q, k) mask: causal, and no attention to right padding."""
    b, n = attention_mask.shape
    causal = torch.ones(n, n, dtype=torch.bool, device=attention_mask.device).tril()
    allowed = causal[None, None] & attention_mask[:, None, None, :].bool()
    allowed = allowed | torch.eye(n, dtype=torch.bool, device=attention_mask.device)[None, None]  # no empty rows
    return torch.zeros(allowed.shape, dtype=dtype, device=attention_mask.device).masked_fill(~allowed,
                                                                                              torch.finfo(dtype).min)


def run_decoder(layers: nn.ModuleList, norm: RMSNorm, cfg: LMConfig, x: torch.Tensor, im_mask: torch.Tensor | None,
                attention_mask: torch.Tensor | None = None, cache: KVCache | None = None,
                gradient_checkpointing: bool = False) -> torch.Tensor:
    """The decoder stack on embeddings `x` (batch, seq, hidden); returns the final-norm hidden states."""
    start = cache.length if cache is not None else 0
    positions = torch.arange(start, start + x.shape[1], device=x.device)
    cos, sin = rope_cos_sin(positions, cfg.head_dim, cfg, x.dtype)
    attn_mask = None
    if attention_mask is not None and not bool(attention_mask.all()):
        if cache is not None:
            raise ValueError("padded batches are not supported with a KV cache (decode one sequence at a time)")
        attn_mask = padding_mask(attention_mask, x.dtype)
    for i, layer in enumerate(layers):
        if gradient_checkpointing and torch.is_grad_enabled():
            x = checkpoint(layer, x, im_mask, cos, sin, attn_mask, None, i, use_reentrant=False)
        else:
            x = layer(x, im_mask, cos, sin, attn_mask, cache, i)
    return norm(x)


def init_lm_weights(module: nn.Module, std: float = 0.02) -> None:
    """InternLM2's initialisation for Linear and Embedding; PLoRA branches start as a no-op (B = 0)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=std)
    for m in module.modules():
        if isinstance(m, PLoRALinear):
            nn.init.kaiming_uniform_(m.Plora_A.weight, a=math.sqrt(5))
            nn.init.zeros_(m.Plora_B.weight)
