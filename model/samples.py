"""Sample building: a grounded patch -> the model's inputs (HD divider image, SAM2 image, tokens, masks).

`GeoPixelDataset` indexes its sources' cheap columns first, which checks that every kept record has as many
masks as `[SEG]` tokens before a single step runs, and reads a record (and decodes its masks) only when its
sample is asked for. Images travel as uint8 and are normalised on the device. The order samples are drawn in
is `model.sampler`'s business, not this module's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from pipeline.contracts.geopixeld_format import GCG_QUESTION
from pipeline.contracts.imageio import read_image

from model.config import GeoPixelConfig
from model.records import DataError, GroundedPatch, patch_masks
from model.sources import Entry
from model.tokenizer import ChatEncoder
from model.vision import hd_grid, image_token_count


@dataclass
class Item:
    """One training record, read: what `make_sample` turns into tensors."""

    uid: str  # "<file> row N (patch P)": what an error message names
    patch_id: str
    image: Path
    turns: list[tuple[str, str]]
    masks: np.ndarray  # (n, H, W) uint8, caption order


class GeoPixelDataset(Dataset):
    """Index -> one tokenised, image-prepared sample. Only records the release keeps are used (status ok, not
    rejected by curation)."""

    def __init__(self, sources: list, encoder: ChatEncoder, cfg: GeoPixelConfig, max_length: int = 16384,
                 question: str = GCG_QUESTION):
        self.sources, self.encoder, self.cfg = sources, encoder, cfg
        self.max_length, self.question = max_length, question
        self.refs: list[tuple[int, Entry]] = []
        for si, src in enumerate(sources):
            for e in src.scan():
                if not e.kept:
                    continue
                if e.n_masks is not None and e.n_seg != e.n_masks:
                    raise DataError(f"{e.uid}: the description has {e.n_seg} [SEG] tokens but {e.n_masks} "
                                    f"{getattr(src, 'MASKS_NAME', 'masks')}")
                self.refs.append((si, e))
        if not self.refs:
            raise DataError("no usable records in " + ", ".join(map(repr, sources)))

    def __len__(self) -> int:
        return len(self.refs)

    def shard_key(self, i: int) -> tuple[int, int]:
        si, e = self.refs[i]
        return si, e.shard

    def patch(self, i: int) -> GroundedPatch:
        si, e = self.refs[i]
        return self.sources[si].patch(e.shard, e.row)

    def _load(self, i: int) -> tuple[Item, np.ndarray]:
        patch = self.patch(i)
        image = patch.image
        if not image.is_file():
            raise DataError(f"{patch.uid}: {patch.image_path} not found under {patch.root}")
        try:
            rgb, _ = read_image(image)
        except OSError as exc:
            raise DataError(f"{patch.uid}: {exc}") from exc
        h, w = (patch.height, patch.width) if patch.height and patch.width else rgb.shape[:2]
        masks = patch_masks(patch, h, w)
        turns = patch.conversation(self.question)
        n_seg = sum(a.count("[SEG]") for _, a in turns)
        if masks.shape[0] != n_seg:
            raise DataError(f"{patch.uid}: {n_seg} [SEG] tokens but {masks.shape[0]} masks")
        if masks.shape[1:] != rgb.shape[:2]:
            raise DataError(f"{patch.uid}: masks are {w}x{h} but the image {image} is {rgb.shape[1]}x{rgb.shape[0]}")
        return Item(patch.uid, patch.patch_id, image, turns, masks), rgb

    def item(self, i: int) -> Item:
        return self._load(i)[0]

    def __getitem__(self, i: int) -> dict:
        item, rgb = self._load(i)
        return make_sample(rgb, item.turns, item.masks, self.encoder, self.cfg, item.uid, item.patch_id,
                           self.max_length)


def prepare_images(rgb: np.ndarray, cfg: GeoPixelConfig) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(HD divider image uint8 (3, H', W'), SAM2 image uint8 (3, S, S), image-token count)."""
    vc = cfg.vision
    h, w = rgb.shape[:2]
    new_w, new_h, cols, rows = hd_grid(w, h, vc)
    img = cv2.resize(rgb, (new_w, new_h), interpolation=cv2.INTER_AREA if new_w < w else cv2.INTER_LINEAR)
    pad_h, pad_w = rows * vc.tile_size - new_h, cols * vc.tile_size - new_w
    if pad_h or pad_w:  # white, centred (the released training transform)
        img = cv2.copyMakeBorder(img, pad_h // 2, pad_h - pad_h // 2, pad_w // 2, pad_w - pad_w // 2,
                                 cv2.BORDER_CONSTANT, value=(255, 255, 255))
    s = cfg.sam.image_size
    sam = cv2.resize(rgb, (s, s), interpolation=cv2.INTER_AREA if s < max(h, w) else cv2.INTER_LINEAR)
    to_t = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))  # noqa: E731
    return to_t(img), to_t(sam), image_token_count(rows, cols, vc)


def make_sample(rgb, turns, masks, encoder: ChatEncoder, cfg: GeoPixelConfig, uid: str, patch_id: str,
                max_length: int) -> dict:
    hd, sam, n_img = prepare_images(rgb, cfg)
    enc = encoder.encode(turns, n_img)
    if len(enc.input_ids) > max_length:
        raise DataError(f"{uid}: {len(enc.input_ids)} tokens exceed max_length {max_length}")
    n_seg = sum(1 for t, lab in zip(enc.input_ids, enc.labels) if t == encoder.ids.seg and lab != -100)
    if n_seg != masks.shape[0]:
        raise DataError(f"{uid}: {n_seg} [SEG] tokens after tokenisation but {masks.shape[0]} masks")
    masks = loss_grid(masks, cfg.loss_mask_size)
    return {"uid": uid, "patch_id": patch_id, "input_ids": torch.tensor(enc.input_ids),
            "labels": torch.tensor(enc.labels), "image_mask": torch.tensor(enc.image_mask),
            "hd_image": hd, "sam_image": sam, "masks": torch.from_numpy(masks), "size": rgb.shape[:2]}


def loss_grid(masks: np.ndarray, size: int | None) -> np.ndarray:
    """Masks at the loss resolution: unchanged, or nearest-resized so the long side is `size`."""
    n, h, w = masks.shape
    if not size or max(h, w) <= size:
        return masks
    s = size / max(h, w)
    hw = (max(1, round(w * s)), max(1, round(h * s)))
    return np.stack([cv2.resize(m, hw, interpolation=cv2.INTER_NEAREST) for m in masks]) if n \
        else np.zeros((0, hw[1], hw[0]), np.uint8)


def collate(samples: list[dict], pad_id: int) -> dict:
    """Right-pad the sequences; images and masks stay per sample."""
    n = max(len(s["input_ids"]) for s in samples)

    def pad(key, value):
        return torch.stack([torch.cat([s[key], torch.full((n - len(s[key]),), value, dtype=s[key].dtype)])
                            for s in samples])

    return {"input_ids": pad("input_ids", pad_id), "labels": pad("labels", -100),
            "image_mask": pad("image_mask", False),
            "attention_mask": torch.stack([torch.arange(n) < len(s["input_ids"]) for s in samples]),
            "hd_images": [s["hd_image"] for s in samples], "sam_images": torch.stack([s["sam_image"] for s in samples]),
            "masks": [s["masks"] for s in samples], "sizes": [tuple(s["size"]) for s in samples],
            "ids": [s["uid"] for s in samples], "patch_ids": [s["patch_id"] for s in samples]}


def prompt_batch(encoder: ChatEncoder, rgb: np.ndarray, cfg: GeoPixelConfig, question: str = GCG_QUESTION) -> dict:
    """Inference inputs for one image: the prompt ids with image positions, and both image tensors."""
    hd, sam, n_img = prepare_images(rgb, cfg)
    enc = encoder.prompt(question, n_img)
    return {"input_ids": torch.tensor([enc.input_ids]), "image_mask": torch.tensor([enc.image_mask]),
            "hd_image": hd, "sam_image": sam, "size": rgb.shape[:2]}
