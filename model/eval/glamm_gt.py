"""GLaMM's own GCG ground truth: `<split>_gcg_coco_mask_gt.json` read together with `<split>_gcg_coco_caption_gt.json`.

GLaMM's evaluator (`eval/gcg/evaluate.py`, mbzuai-oryx/groundingLMM) lists its images from the caption file's
`images[].id`, reads the prediction `<id>.json` for each, takes an image's masks as the mask file's annotations
with that `image_id` in file order (`coco_gt.anns.values()` filtered by image) and its phrases as the `labels`
of the image's caption annotation, `labels[i]` standing for mask i (`find_best_matches` indexes the IoU and the
text matrices with the same row). This module reads the pair the same way into `EvalImage`s and refuses, naming
the file and the image, whatever GLaMM would crash on or score in a way our metrics cannot (its mask file holds
no object count per phrase, so every phrase's `objects` is None: docs/eval.md, decision 8).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from model.eval.types import EvalImage, EvalInputError, EvalPhrase, caption_text, image_key, phrase_text
from model.records import DataError, normalise_rle
from model.sources import read_json

MASK, CAPTION = "_gcg_coco_mask_gt.json", "_gcg_coco_caption_gt.json"
FORMAT = "glamm-coco"


@dataclass(frozen=True)
class GlammPair:
    mask: Path
    caption: Path
    split: str  # the prefix of both file names (`val`, `test`)


# ---------------------------------------------------------------- finding the pair


def glamm_name(path: Path) -> tuple[str, str] | None:
    """(split prefix, "mask" | "caption") when the file carries one of GLaMM's ground-truth names."""
    for suffix, kind in ((MASK, "mask"), (CAPTION, "caption")):
        if path.name.endswith(suffix) and len(path.name) > len(suffix):
            return path.name[: -len(suffix)], kind
    return None


def pair_at(path: Path, split: str | None) -> GlammPair | None:
    """The pair a GT path names, or None when it is not GLaMM's ground truth.

    A folder holding `<split>_gcg_coco_*_gt.json` (`split` chooses when it holds several, as GLaMM's `--split`
    does) or either file of a pair, whose partner must lie beside it under GLaMM's name: the two files are only
    meaningful together, so a missing partner is an error, never a partial ground truth.
    """
    path = Path(path)
    if path.is_dir():
        splits = sorted({n[0] for p in path.glob("*_gcg_coco_*_gt.json") if (n := glamm_name(p))})
        if not splits:
            return None
        if split is None and len(splits) > 1:
            raise EvalInputError([f"{path}: GLaMM ground truth of splits {', '.join(splits)}; choose one with --split"])
        chosen = split or splits[0]
        if chosen not in splits:
            raise EvalInputError([f"{path}: GLaMM ground truth of split(s) {', '.join(splits)} but none of --split "
                                  f"{chosen} (no {chosen}{MASK} or {chosen}{CAPTION})"])
        return _pair(path / f"{chosen}{MASK}", path / f"{chosen}{CAPTION}", chosen, path)
    named = glamm_name(path) if path.is_file() else None
    if named is None:
        return None
    prefix, _ = named
    if split is not None and split != prefix:
        raise EvalInputError([f"{path}: GLaMM ground truth of split {prefix}, but --split is {split}"])
    return _pair(path.parent / f"{prefix}{MASK}", path.parent / f"{prefix}{CAPTION}", prefix, path)


def _pair(mask: Path, caption: Path, split: str, given: Path) -> GlammPair:
    missing = [p for p in (mask, caption) if not p.is_file()]
    if missing:
        raise EvalInputError([f"{given}: GLaMM's ground truth is a pair of files, and {m} is missing "
                              f"(the {'mask' if m == mask else 'caption'} file)" for m in missing])
    return GlammPair(mask, caption, split)


# ---------------------------------------------------------------- reading it


def read_pair(pair: GlammPair, problems: list[str]) -> list[EvalImage]:
    """Every image of the caption file with its masks; problems are collected, never scored in part."""
    cap, msk = _coco(pair.caption, problems), _coco(pair.mask, problems)
    if cap is None or msk is None:
        return []
    cap_images = _images(cap["images"], pair.caption, problems)
    mask_images = _images(msk["images"], pair.mask, problems)
    cap_anns = _by_image(cap["annotations"], cap_images, pair.caption, problems)
    mask_anns = _by_image(msk["annotations"], mask_images, pair.mask, problems)
    for key in sorted(set(mask_images) - set(cap_images)):
        problems.append(f"{pair.mask}: image {key}: not in the caption file {pair.caption} (GLaMM's AP50 would "
                        f"count its masks, its other metrics would not)")
    out = []
    for key, img in cap_images.items():
        if key not in mask_images:
            problems.append(f"{pair.caption}: image {key}: not in the mask file {pair.mask}")
            continue
        found = _image(key, img, mask_images[key], cap_anns.get(key, []), mask_anns.get(key, []), pair, problems)
        if found is not None:
            out.append(found)
    return out


def _coco(path: Path, problems: list[str]) -> dict | None:
    try:
        data = read_json(path)
    except DataError as exc:
        problems.append(str(exc))
        return None
    if not (isinstance(data, dict) and isinstance(data.get("images"), list)
            and isinstance(data.get("annotations"), list)):
        problems.append(f"{path}: not a COCO JSON (expected the lists `images` and `annotations`)")
        return None
    return data


def _key(raw, where: str, problems: list[str]) -> str | None:
    """GLaMM's image key: the id as the prediction file is named (`<id>.json`); an image extension is dropped
    as it is from predictions (`model.eval.types.image_key`)."""
    if isinstance(raw, bool) or not isinstance(raw, (str, int)) or raw == "":
        problems.append(f"{where}: image id {raw!r} is not a string or an integer")
        return None
    return image_key(str(raw))


def _images(entries: list, path: Path, problems: list[str]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for k, img in enumerate(entries):
        if not isinstance(img, dict) or "id" not in img:
            problems.append(f"{path}: images[{k}] has no id")
            continue
        key = _key(img["id"], f"{path}: images[{k}]", problems)
        if key is None:
            continue
        if key in out:
            problems.append(f"{path}: image {key} is listed twice in `images`")
            continue
        out[key] = img
    return out


def _by_image(anns: list, images: dict[str, dict], path: Path, problems: list[str]) -> dict[str, list[dict]]:
    """Annotations per image in file order: the order GLaMM's `anns.values()` filter yields (annotation ids
    must be unique for that to hold: pycocotools keeps one annotation per id)."""
    out: dict[str, list[dict]] = {}
    ids: set = set()
    for k, ann in enumerate(anns):
        if not isinstance(ann, dict) or "image_id" not in ann:
            problems.append(f"{path}: annotations[{k}] has no image_id")
            continue
        key = _key(ann["image_id"], f"{path}: annotations[{k}]", problems)
        if key is None:
            continue
        if key not in images:
            problems.append(f"{path}: image {key}: annotations[{k}] is for an image missing from `images`")
            continue
        if "id" in ann:
            if ann["id"] in ids:
                problems.append(f"{path}: image {key}: annotation id {ann['id']} is used twice (pycocotools would "
                                f"keep only one of them)")
            ids.add(ann["id"])
        out.setdefault(key, []).append(ann)
    return out


def _size(img: dict) -> tuple[int, int] | None:
    h, w = img.get("height"), img.get("width")
    if isinstance(h, int) and isinstance(w, int) and not isinstance(h, bool) and h > 0 and w > 0:
        return h, w
    return None


def _caption(anns: list[dict], where: str, problems: list[str]) -> tuple[str, list[str]] | None:
    """The image's one caption annotation: its caption and its labels (the phrases, in mask order)."""
    if len(anns) != 1:
        problems.append(f"{where}: {len(anns)} caption annotations, expected one (GLaMM matches the labels of the "
                        f"first but scores the caption against all)")
        return None
    ann = anns[0]
    caption, labels = ann.get("caption"), ann.get("labels")
    if not isinstance(caption, str):
        problems.append(f"{where}: the caption annotation has no `caption` text")
        return None
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        problems.append(f"{where}: the caption annotation has no `labels` list of phrases")
        return None
    return caption, labels


def _mask(ann: dict, k: int, size: tuple[int, int], where: str, problems: list[str]) -> dict | None:
    """One mask annotation as our RLE; what GLaMM's AP50 and its mIoU/Recall would read differently is refused:
    a crowd region or another category (COCOeval leaves them out of AP50, the other metrics count them)."""
    here = f"{where}: mask {k}"
    if ann.get("iscrowd", 0) != 0:
        problems.append(f"{here}: iscrowd {ann['iscrowd']} (COCOeval would ignore it in AP50, GLaMM's mIoU and "
                        f"Recall would count it)")
        return None
    if ann.get("category_id", 1) != 1:
        problems.append(f"{here}: category_id {ann['category_id']} (GLaMM's AP50 scores category 1 only)")
        return None
    seg = ann.get("segmentation")
    if not isinstance(seg, dict):
        problems.append(f"{here}: the segmentation is not an RLE (GLaMM decodes RLE masks only)")
        return None
    try:
        rle = normalise_rle(seg)
    except ValueError as exc:
        problems.append(f"{here}: {exc}")
        return None
    if tuple(rle["size"]) != size:
        problems.append(f"{here}: is {rle['size'][0]}x{rle['size'][1]} (h x w) but the image is {size[0]}x{size[1]}")
        return None
    return rle


def _image(key: str, cap_img: dict, mask_img: dict, cap_anns: list[dict], mask_anns: list[dict], pair: GlammPair,
           problems: list[str]) -> EvalImage | None:
    before = len(problems)
    size = _size(mask_img)
    if size is None:
        problems.append(f"{pair.mask}: image {key}: no positive integer height and width")
    elif _size(cap_img) not in (None, size):
        problems.append(f"{pair.caption}: image {key}: {cap_img['height']}x{cap_img['width']} (h x w) but "
                        f"{size[0]}x{size[1]} in the mask file {pair.mask}")
    names = (cap_img.get("file_name"), mask_img.get("file_name"))
    if None not in names and names[0] != names[1]:
        problems.append(f"{pair.caption}: image {key}: file_name {names[0]} but {names[1]} in the mask file "
                        f"{pair.mask}")
    text = _caption(cap_anns, f"{pair.caption}: image {key}", problems)
    if text is not None and len(text[1]) != len(mask_anns):
        problems.append(f"{pair.caption}: image {key}: {len(text[1])} labels but {len(mask_anns)} masks in the mask "
                        f"file {pair.mask}")
    rles = [_mask(a, k, size, f"{pair.mask}: image {key}", problems) for k, a in enumerate(mask_anns)] if size else []
    if len(problems) > before or text is None:
        return None
    caption, labels = text
    phrases = [EvalPhrase(phrase_text(label), rle, None) for label, rle in zip(labels, rles)]
    return EvalImage(key, size[0], size[1], caption_text(caption), phrases, str(pair.caption))
