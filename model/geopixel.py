"""GeoPixel: InternLM-XComposer-2.5 (CLIP tiles -> projector -> InternLM2 with PLoRA) grounded by SAM2.

The last hidden state at every `[SEG]` token goes through a 2-layer projector into SAM2's mask decoder as a
sparse prompt, giving one mask per `[SEG]`. Loss: 1.0 x text cross-entropy (answer tokens only) + 2.0 x per-mask
BCE + 0.5 x per-mask Dice, masks compared at the patch's own resolution.

The module tree reproduces the released checkpoints' names (`model.layers.N...`, `model.visual_model...`,
`model.text_hidden_fcs.0.N`, `output`, `vit.vision_tower.vision_model...`, `vision_proj.N`, `plora_*_GN`), so
weights load by name; `tests/model/test_manifest.py` checks this against the released code's declarations.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from model.config import GeoPixelConfig
from model.internlm2 import DecoderLayer, KVCache, RMSNorm, init_lm_weights, run_decoder
from model.losses import mask_losses
from model.sam2 import SAM2
from model.vision import VisionTower, normalise


@dataclass(frozen=True)
class SpecialIds:
    """Token ids the model needs; taken from the tokenizer (see model.tokenizer.special_ids)."""

    bos: int
    eos: int
    pad: int
    seg: int
    phrase_open: int
    phrase_close: int
    turn_start: int
    turn_end: int


class GeoPixelLM(nn.Module):
    """The `model.` subtree: InternLM2 decoder, SAM2 (`visual_model`) and the [SEG] projector."""

    def __init__(self, cfg: GeoPixelConfig):
        super().__init__()
        lm = cfg.lm
        self.tok_embeddings = nn.Embedding(lm.vocab_size, lm.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(lm) for _ in range(lm.num_layers))
        self.norm = RMSNorm(lm.hidden_size, lm.rms_norm_eps)
        self.visual_model = SAM2(cfg.sam)
        self.text_hidden_fcs = nn.ModuleList([nn.Sequential(
            nn.Linear(lm.hidden_size, lm.hidden_size), nn.ReLU(), nn.Linear(lm.hidden_size, cfg.out_dim), nn.Dropout(0.0),
        )])


class GeoPixel(nn.Module):
    def __init__(self, cfg: GeoPixelConfig, ids: SpecialIds):
        super().__init__()
        self.cfg, self.ids = cfg, ids
        merged = 4 * cfg.vision.hidden_size
        self.model = GeoPixelLM(cfg)
        self.output = nn.Linear(cfg.lm.hidden_size, cfg.lm.vocab_size, bias=False)
        self.plora_glb_GN = nn.Parameter(torch.zeros(1, 1, merged))
        self.plora_sub_GN = nn.Parameter(torch.zeros(1, 1, 1, merged))
        self.vit = VisionTower(cfg.vision)
        self.vision_proj = nn.Sequential(nn.Linear(merged, cfg.lm.hidden_size), nn.GELU(),
                                         nn.Linear(cfg.lm.hidden_size, cfg.lm.hidden_size))
        self.gradient_checkpointing = False

    # -- construction ------------------------------------------------------------------------------------------
    def init_weights(self) -> None:
        """Random initialisation of the LM, head and projectors (CLIP and SAM2 keep their module defaults).

        The [SEG] projector's output is SAM2's sparse prompt, which SAM2's decoder sees next to its own unit-scale
        tokens, so its linears start at std 1/sqrt(fan_in) (unit scale at any width). At the released width this
        is InternLM2's 0.02 (1/sqrt(4096) = 0.016); at the tiny model's 64 a fixed 0.02 would shrink the prompt
        ~60x and the decoder would learn one mask for every [SEG]."""
        init_lm_weights(self.model.layers)
        for m in (self.model.tok_embeddings, self.output, self.vision_proj):
            init_lm_weights(m)
        for m in self.model.text_hidden_fcs.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=m.in_features ** -0.5)
                nn.init.zeros_(m.bias)

    # -- pieces ------------------------------------------------------------------------------------------------
    def image_tokens(self, hd_images: list[torch.Tensor]) -> torch.Tensor:
        """All images' tokens, concatenated in batch order, projected to the LM width."""
        vc, dev = self.cfg.vision, self.plora_glb_GN.device
        images = [normalise(img.to(dev, non_blocking=True), vc.mean, vc.std, torch.float32) for img in hd_images]
        feats = self.vit(images, self.plora_glb_GN, self.plora_sub_GN)
        return self.vision_proj(torch.cat(feats, dim=0))

    def embed(self, input_ids: torch.Tensor, image_mask: torch.Tensor, hd_images: list[torch.Tensor]) -> torch.Tensor:
        emb = self.model.tok_embeddings(input_ids)
        if hd_images:
            img = self.image_tokens(hd_images).to(emb.dtype)
            n = int(image_mask.sum())
            if img.shape[0] != n:
                raise ValueError(f"the batch reserves {n} image positions but the images give {img.shape[0]} tokens")
            emb = emb.masked_scatter(image_mask.unsqueeze(-1), img)
        return emb

    def hidden(self, emb, image_mask, attention_mask=None, cache=None) -> torch.Tensor:
        return run_decoder(self.model.layers, self.model.norm, self.cfg.lm, emb, image_mask, attention_mask, cache,
                           self.gradient_checkpointing and self.training)

    def seg_prompts(self, hidden_at_seg: torch.Tensor) -> torch.Tensor:
        return self.model.text_hidden_fcs[0](hidden_at_seg)

    def sam_features(self, sam_images: torch.Tensor) -> dict:
        """SAM2 image features. Computed without gradient, as in the release (the image encoder is frozen), unless
        training with a trainable image encoder (`train.trainable` naming `model.visual_model.image_encoder.`,
        e.g. from random weights, where there is no pretrained encoder to keep): then the features, and the
        decoder's `conv_s0`/`conv_s1` applied to them, get gradients too."""
        sam = self.model.visual_model
        p = next(sam.image_encoder.parameters())
        trains = (self.training and torch.is_grad_enabled()
                  and any(q.requires_grad for q in sam.image_encoder.parameters()))
        with contextlib.nullcontext() if trains else torch.no_grad():
            return sam.encode(normalise(sam_images.to(p.device, non_blocking=True), sam.cfg.mean, sam.cfg.std, p.dtype))

    # -- training ----------------------------------------------------------------------------------------------
    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        """Loss and its parts for a collated batch (see model.samples.collate)."""
        ids, labels, image_mask = batch["input_ids"], batch["labels"], batch["image_mask"]
        emb = self.embed(ids, image_mask, batch["hd_images"])
        h = self.hidden(emb, image_mask, batch.get("attention_mask"))
        target = labels[:, 1:]
        valid = target != -100
        logits = self.output(h[:, :-1][valid]).float()
        ce = F.cross_entropy(logits, target[valid]) if valid.any() else logits.sum() * 0.0
        seg_pos = (ids == self.ids.seg) & (labels != -100)
        prompts = self.seg_prompts(h[seg_pos])
        counts = seg_pos.sum(1).tolist()
        features = self.sam_features(batch["sam_images"])
        preds, targets, start = [], [], 0
        for i, n in enumerate(counts):
            gt = batch["masks"][i]
            if n != gt.shape[0]:
                raise ValueError(f"{batch['ids'][i]}: {n} [SEG] tokens reach the model but {gt.shape[0]} masks")
            if n:
                preds.append(self.model.visual_model.decode(features, i, prompts[start:start + n], tuple(gt.shape[1:])))
                targets.append(gt.to(preds[-1].device))
            start += n
        bce, dice = mask_losses(preds, targets)
        if not preds:  # keep the projector in the graph (distributed backends expect every trainable grad)
            bce = dice = prompts.sum() * 0.0
        c = self.cfg
        loss = c.ce_weight * ce + c.bce_weight * bce + c.dice_weight * dice
        return {"loss": loss, "ce": ce.detach(), "bce": bce.detach(), "dice": dice.detach(),
                "masks": torch.tensor(sum(counts)), "tokens": valid.sum()}

    # -- inference ---------------------------------------------------------------------------------------------
    @torch.no_grad()
    def ground(self, batch: dict) -> list[torch.Tensor]:
        """Teacher-forced: mask logits (n_i, H, W) for every [SEG] of each sample's given answer."""
        ids, image_mask = batch["input_ids"], batch["image_mask"]
        h = self.hidden(self.embed(ids, image_mask, batch["hd_images"]), image_mask, batch.get("attention_mask"))
        seg_pos = ids == self.ids.seg
        prompts = self.seg_prompts(h[seg_pos])
        features = self.sam_features(batch["sam_images"])
        out, start = [], 0
        for i, n in enumerate(seg_pos.sum(1).tolist()):
            hw = tuple(batch["sizes"][i])
            out.append(self.model.visual_model.decode(features, i, prompts[start:start + n], hw) if n
                       else torch.zeros((0, *hw)))
            start += n
        return out

    @torch.no_grad()
    def generate(self, prompt: dict, hd_image: torch.Tensor, sam_image: torch.Tensor,
                 size: tuple[int, int], max_new_tokens: int = 512, markup=None) -> tuple[list[int], torch.Tensor]:
        """Greedy decoding of one image's answer, then one mask per generated [SEG].

        `prompt` holds `input_ids` and `image_mask` (1, L) of the question with the image positions reserved
        (model.samples.prompt_batch). `markup` (a `model.markup.MarkupRules`, or None for plain greedy decoding)
        keeps the `<p> ... </p> [SEG]` markup well formed: each step takes the best token the markup allows.
        Returns the generated ids (without the stop token) and mask logits (n_seg, H, W), the n-th mask for the
        n-th [SEG].
        """
        ids, image_mask = prompt["input_ids"], prompt["image_mask"]
        cache = KVCache(self.cfg.lm.num_layers)
        h = self.hidden(self.embed(ids, image_mask, [hd_image]), image_mask, cache=cache)
        stop = {self.ids.eos, self.ids.turn_end}
        state = markup.start() if markup is not None else None
        out: list[int] = []
        seg_hidden = []

        def pick(h: torch.Tensor) -> int:
            logits = self.output(h[:, -1])
            if state is not None:
                logits = state.mask(logits, max_new_tokens - len(out))
            return int(logits.argmax(-1))

        nxt = pick(h)
        for _ in range(max_new_tokens):
            if nxt in stop:
                break
            out.append(nxt)
            if state is not None:
                state.advance(nxt)
            step = torch.tensor([[nxt]], device=ids.device)
            h = self.hidden(self.model.tok_embeddings(step), None, cache=cache)
            if nxt == self.ids.seg:
                seg_hidden.append(h[:, -1])
            nxt = pick(h)
        if not seg_hidden:
            return out, torch.zeros((0, *size))
        prompts = self.seg_prompts(torch.cat(seg_hidden, dim=0))
        features = self.sam_features(sam_image.unsqueeze(0))
        return out, self.model.visual_model.decode(features, 0, prompts, tuple(size))


def build_model(cfg: GeoPixelConfig, ids: SpecialIds, device: str | torch.device = "cpu",
                dtype: torch.dtype = torch.float32, init: bool = True) -> GeoPixel:
    """A GeoPixel with random weights (`init`) or module-default weights for a checkpoint to overwrite.

    Parameters are created directly on `device` in `dtype` (no float32 copy of a 7B model on the way)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = GeoPixel(cfg, ids)
            if init and torch.device(device).type != "meta":
                model.init_weights()
    finally:
        torch.set_default_dtype(previous)
    return model.to(dtype)
