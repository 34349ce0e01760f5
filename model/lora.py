"""Which parameters train, and the LoRA adapters (peft) on the LM's attention and MLP projections.

The released recipe: LoRA r 8 / alpha 16 / dropout 0.05 on `attention.wqkv`, `attention.wo`, `feed_forward.w1`,
`w2`, `w3`; the token embeddings, LM head, vision projector, [SEG] projector and SAM2 mask decoder train fully;
CLIP, the SAM2 image encoder and prompt encoder, the LM's base weights and its PLoRA branches stay frozen. The two
image-token separators (`plora_*_GN`) also train: the release leaves them trainable (peft only freezes names
without `lora_`, and theirs contain it), so this keeps them trainable too.
"""

from __future__ import annotations

import re

from torch import nn

LORA_TARGETS = ["attention.wqkv", "attention.wo", "feed_forward.w1", "feed_forward.w2", "feed_forward.w3"]
TRAINABLE = [
    r"\.lora_[AB]\.",  # peft adapters (not PLoRA's `Plora_A` nor the `lora_sft_A`-style mode branches)
    r"^model\.tok_embeddings\.",
    r"^output\.",
    r"^vision_proj\.",
    r"^model\.text_hidden_fcs\.",
    r"^model\.visual_model\.sam_mask_decoder\.",
    r"^plora_(glb|sub)_GN$",
]


def add_lora(model: nn.Module, r: int = 8, alpha: float = 16, dropout: float = 0.05,
             targets: list[str] | None = None) -> int:
    """Insert peft LoRA layers (adapter `default`) into every target projection, in place; returns how many."""
    from peft import LoraConfig
    from peft.tuners.lora import LoraLayer, LoraModel

    cfg = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(targets or LORA_TARGETS),
                     bias="none")
    LoraModel(model, cfg, "default")  # injects into `model`; the wrapper itself is not kept
    return sum(isinstance(m, LoraLayer) for m in model.modules())


def merge_lora(model: nn.Module) -> int:
    """Fold every LoRA adapter into its base weight and put the plain layer back (names as released)."""
    from peft.tuners.lora import LoraLayer

    replaced = 0
    for name, module in list(model.named_modules()):
        if isinstance(module, LoraLayer):
            module.merge(safe_merge=True)
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, module.get_base_layer())
            replaced += 1
    return replaced


def set_trainable(model: nn.Module, patterns: list[str] | None = None) -> list[str]:
    """requires_grad = True exactly for parameters matching a pattern; returns their names."""
    regs = [re.compile(p) for p in (patterns if patterns is not None else TRAINABLE)]
    names = []
    for name, p in model.named_parameters():
        on = any(r.search(name) for r in regs)
        p.requires_grad_(on)
        if on:
            names.append(name)
    if not names:
        raise ValueError(f"no parameter matches the trainable patterns {patterns}")
    return names
