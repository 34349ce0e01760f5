"""GeoPixel architecture settings: one pydantic model per component, and the named presets.

`geopixel-7b` is the released model's shape (InternLM-XComposer-2.5-7B + SAM2 hiera-large); `tiny` keeps every
component real but small enough for CPU tests. A preset name or a full mapping can be given in a training YAML.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LMConfig(_Strict):
    """InternLM2 decoder with partial LoRA (PLoRA) on image tokens, as in InternLM-XComposer-2.5."""

    vocab_size: int = 92547  # InternLM2's 92544 + [SEG], <p>, </p>
    hidden_size: int = 4096
    intermediate_size: int = 14336
    num_layers: int = 32
    num_heads: int = 32
    num_kv_heads: int = 8
    bias: bool = False
    rms_norm_eps: float = 1e-5
    rope_theta: float = 1_000_000.0
    max_position_embeddings: int = 24576
    rope_dynamic_factor: float | None = 2.0  # dynamic NTK scaling beyond max_position_embeddings; None: plain RoPE
    plora_rank: int = 256
    plora_alpha: float = 256.0
    plora_dropout: float = 0.05
    # InternLM-XComposer-2.5 also ships low-rank weights for its 'write' and 'web' modes (ranks 256/256/512 on
    # every projection, 2.42B values). GeoPixel never uses them; `True` declares them so the released checkpoints
    # load 1:1, `False` leaves them out (the loader then skips those keys by name) and saves ~4.8 GB in bf16.
    mode_loras: bool = True

    @model_validator(mode="after")
    def _heads(self):
        if self.hidden_size % self.num_heads or self.num_heads % self.num_kv_heads:
            raise ValueError("hidden_size must divide by num_heads and num_heads by num_kv_heads")
        return self

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads


class VisionConfig(_Strict):
    """CLIP ViT tower over the adaptive image divider's tiles, 2x2 token merge, 2-layer MLP projector."""

    hidden_size: int = 1024
    intermediate_size: int = 4096
    num_layers: int = 24
    num_heads: int = 16
    tile_size: int = 560  # each tile (and the global view) is tile_size x tile_size
    patch_size: int = 14
    hidden_act: str = "quick_gelu"
    layer_norm_eps: float = 1e-5
    hd_num: int = 9  # at most this many tiles (an 800 px patch becomes 3x3)
    upscale: float = 1.5  # the divider scales the long side by this before tiling (released training transform)
    mean: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
    std: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)

    @model_validator(mode="after")
    def _grid(self):
        g = self.tile_size // self.patch_size
        if self.tile_size % self.patch_size or g % 2:
            raise ValueError("tile_size / patch_size must be an even integer (tokens are merged 2x2)")
        return self

    @property
    def merged_grid(self) -> int:
        """Tokens per tile side after the 2x2 merge (20 for 560 px tiles of 14 px patches)."""
        return self.tile_size // self.patch_size // 2


class SamConfig(_Strict):
    """SAM2 (image encoder Hiera + FPN neck, prompt encoder, mask decoder; video memory declared only)."""

    image_size: int = 1024
    embed_dim: int = 144
    num_heads: int = 2
    stages: tuple[int, ...] = (2, 6, 36, 4)
    global_att_blocks: tuple[int, ...] = (23, 33, 43)
    window_pos_embed_bkg_spatial_size: tuple[int, int] = (7, 7)
    window_spec: tuple[int, ...] = (8, 4, 16, 8)
    d_model: int = 256  # neck / prompt / decoder width
    fpn_top_down_levels: tuple[int, ...] = (2, 3)
    decoder_heads: int = 8
    decoder_mlp_dim: int = 2048
    decoder_depth: int = 2
    iou_head_hidden_dim: int = 256
    mask_in_chans: int = 16
    # video memory (declared so SAM2 checkpoints load 1:1; a single image never runs it)
    memory: bool = True
    mem_dim: int = 64
    num_maskmem: int = 7
    memory_layers: int = 4
    memory_ffn_dim: int = 2048
    fuser_layers: int = 2
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    # At inference an unstable single mask falls back to the best of the three multimask outputs (SAM2's image
    # predictor, as GeoPixel infers). Training only ever fits the single-mask output, so from random weights the
    # multimask tokens stay untrained and `false` keeps the single mask (the tiny demo's setting).
    dynamic_multimask_via_stability: bool = True
    dynamic_multimask_stability_delta: float = 0.05
    dynamic_multimask_stability_thresh: float = 0.98

    @model_validator(mode="after")
    def _sizes(self):
        if self.image_size % 32:
            raise ValueError("sam.image_size must be a multiple of 32 (four stride-2 stages after a stride-4 stem)")
        if len(self.stages) != 4 or len(self.window_spec) != 4:
            raise ValueError("sam.stages and sam.window_spec need four entries (the FPN neck has four levels)")
        return self

    @property
    def channel_list(self) -> list[int]:
        """Trunk output widths, deepest first (the neck's order)."""
        return [self.embed_dim * 2**i for i in range(len(self.stages))][::-1]

    @property
    def embedding_size(self) -> int:
        return self.image_size // 16


class TokensConfig(_Strict):
    seg: str = "[SEG]"
    phrase_open: str = "<p>"
    phrase_close: str = "</p>"
    bos: str = "<s>"
    eos: str = "</s>"
    turn_start: str = "[UNUSED_TOKEN_146]"
    turn_end: str = "[UNUSED_TOKEN_145]"


class GeoPixelConfig(_Strict):
    lm: LMConfig = Field(default_factory=LMConfig)
    vision: VisionConfig = Field(default_factory=VisionConfig)
    sam: SamConfig = Field(default_factory=SamConfig)
    out_dim: int = 256  # [SEG] projector output = SAM2 prompt width
    tokens: TokensConfig = Field(default_factory=TokensConfig)
    ce_weight: float = 1.0
    bce_weight: float = 2.0
    dice_weight: float = 0.5
    mask_threshold: float = 0.0
    # Masks are compared at the patch's own resolution (as released); a number caps the long side of the loss
    # grid instead (nearest-neighbour targets), a CPU-speed setting for the tiny configuration.
    loss_mask_size: int | None = None

    @model_validator(mode="after")
    def _widths(self):
        if self.out_dim != self.sam.d_model:
            raise ValueError(f"out_dim ({self.out_dim}) must equal sam.d_model ({self.sam.d_model}): "
                             "the [SEG] projection is fed to SAM2 as a sparse prompt")
        return self


def _tiny() -> GeoPixelConfig:
    return GeoPixelConfig(
        lm=LMConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_layers=2, num_heads=4, num_kv_heads=2,
                    max_position_embeddings=4096, rope_theta=10000.0, plora_rank=8, plora_alpha=8.0, mode_loras=False),
        vision=VisionConfig(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2, tile_size=56,
                            patch_size=14),
        sam=SamConfig(image_size=128, embed_dim=8, num_heads=1, stages=(1, 1, 2, 1), global_att_blocks=(3,),
                      window_pos_embed_bkg_spatial_size=(4, 4), window_spec=(4, 4, 2, 2), d_model=32,
                      decoder_heads=2, decoder_mlp_dim=64, iou_head_hidden_dim=32, mask_in_chans=8, memory=True,
                      mem_dim=8, memory_layers=1, memory_ffn_dim=32, fuser_layers=1),
        out_dim=32,
        loss_mask_size=200,
    )


PRESETS = {
    "geopixel-7b": GeoPixelConfig,  # the released GeoPixel-7B, every checkpoint tensor declared
    "tiny": _tiny,
}
PresetName = Literal["geopixel-7b", "tiny"]


def build_config(spec: str | dict | GeoPixelConfig | None) -> GeoPixelConfig:
    """A preset name, `{preset: name, ...overrides}` (nested overrides merged), a full mapping, or a config."""
    if isinstance(spec, GeoPixelConfig):
        return spec
    if spec is None:
        return GeoPixelConfig()
    if isinstance(spec, str):
        if spec not in PRESETS:
            raise ValueError(f"unknown model preset {spec!r}; one of {sorted(PRESETS)}")
        return PRESETS[spec]()
    data = dict(spec)
    preset = data.pop("preset", None)
    base = build_config(preset).model_dump() if preset else {}
    return GeoPixelConfig.model_validate(_merge(base, data))


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out
