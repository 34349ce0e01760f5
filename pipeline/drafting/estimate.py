"""What LMM drafting of a split will cost, before a request is sent (`geopixeld draft --estimate`).

The requests are the drafter's own (`annotations`' ask builders over the split's plans, in the chosen instance
mode), so their number and prompts are exact. Image tokens come from the annotator family's own formula at each
image's size (`FAMILIES`); prompt text is counted with a local tokenizer when one is given, else at
`CHARS_PER_TOKEN`. Completion tokens are bounded by each request's `max_tokens` and expected at the lengths
below (or the means of records already drafted). The merge's prompt holds the tier texts, which do not exist
yet: it is estimated at the same expected lengths.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import prompts
from annotations.ask import Ask
from annotations.judge import crop_box, crop_image, judge_group_ask, judge_instance_ask
from annotations.merge import merge_ask
from pipeline.contracts.records import PatchPlan
from pipeline.drafting.lmm_drafter import tier_asks

TIERS = ("holistic", "instance", "group", "merge")
CHARS_PER_TOKEN = 4.0  # English prose with a BPE tokenizer: about 4 characters a token
REPLY_OVERHEAD = 8  # the JSON around a reply's text: {"sentence": "..."}
EXPECTED_CHARS = {"holistic": 360, "instance": 110, "group": 110,  # a reply's text, when nothing was drafted yet
                  "judge": 60}  # the judge's reason (its verdict is in REPLY_OVERHEAD)


def qwen_vl_tokens(width: int, height: int, min_pixels: int = 56 * 56, max_pixels: int = 28 * 28 * 1280) -> int:
    """Qwen2-VL / Qwen2.5-VL: the image resized to multiples of 28 px (patch 14, merged 2x2) within the pixel
    bounds of its processor, one token per 28x28 cell, plus the vision start and end tokens."""
    factor = 28
    h, w = round(height / factor) * factor, round(width / factor) * factor
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h, w = max(factor, math.floor(height / beta / factor) * factor), max(factor, math.floor(width / beta / factor) * factor)
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h, w = math.ceil(height * beta / factor) * factor, math.ceil(width * beta / factor) * factor
    return (h // factor) * (w // factor) + 2


def internvl_tokens(width: int, height: int, image_size: int = 448, max_tiles: int = 12, per_tile: int = 256) -> int:
    """InternVL 2.5 / 3: dynamic tiling into 448 px tiles at the closest aspect ratio (ties to more tiles while
    the image covers half of them), a thumbnail when there is more than one tile, 256 tokens a tile, plus
    `<img>` and `</img>`."""
    top = max_tiles + 1  # the thumbnail's place counts in the grid search
    ratios = sorted({(i, j) for n in range(1, top + 1) for i in range(1, n + 1) for j in range(1, n + 1) if i * j <= top},
                    key=lambda r: r[0] * r[1])
    aspect, best, diff = width / height, (1, 1), float("inf")
    for r in ratios:
        d = abs(aspect - r[0] / r[1])
        if d < diff:
            best, diff = r, d
        elif d == diff and width * height > 0.5 * image_size * image_size * r[0] * r[1]:
            best = r
    tiles = best[0] * best[1]
    return (tiles + (tiles != 1)) * per_tile + 2


def gemma3_tokens(width: int, height: int) -> int:
    """Gemma 3: every image is 896 px pooled to 256 tokens (pan and scan off, vLLM's default), plus its
    begin and end markers."""
    return 256 + 2


@dataclass(frozen=True)
class Family:
    name: str
    image_tokens: Callable[[int, int], int]
    note: str


FAMILIES: dict[str, Family] = {
    "qwen2.5-vl": Family("qwen2.5-vl", qwen_vl_tokens, "Qwen2-VL / Qwen2.5-VL / Qwen3-VL-style processor, default pixel bounds"),
    "internvl3": Family("internvl3", internvl_tokens, "InternVL 2.5 / 3 / 3.5, max_dynamic_patch 12 with thumbnail"),
    "gemma3": Family("gemma3", gemma3_tokens, "Gemma 3, 256 tokens an image"),
}


@dataclass
class TierCost:
    requests: int = 0
    text_tokens: float = 0.0  # prompt text
    image_tokens: int = 0
    completion_expected: float = 0.0
    completion_max: int = 0

    @property
    def prompt_tokens(self) -> float:
        return self.text_tokens + self.image_tokens


@dataclass
class Estimate:
    family: str
    instance_mode: str
    patches: int
    tiers: dict[str, TierCost] = field(default_factory=lambda: {t: TierCost() for t in TIERS})

    def total(self) -> TierCost:
        t = TierCost()
        for c in self.tiers.values():
            t.requests += c.requests
            t.text_tokens += c.text_tokens
            t.image_tokens += c.image_tokens
            t.completion_expected += c.completion_expected
            t.completion_max += c.completion_max
        return t


def patch_asks(plan: PatchPlan, templates: dict, instance_mode: str, expected: dict[str, float],
               judge: bool = False) -> list[Ask]:
    """The requests the LMM drafter makes for one plan (the merge's and the judge's with tier texts of the
    expected lengths)."""
    hol, inst, grp = tier_asks(plan, templates, instance_mode)
    instances = sorted(plan.instances, key=lambda o: o.mark)
    tagged = [(o.tag, "x" * round(expected["instance"])) for o in instances]
    tagged += [(g.tag, "x" * round(expected["group"])) for g in plan.groups]
    merge = [merge_ask("x" * round(expected["holistic"]), tagged, templates["merge"])] if tagged else []
    judged = []
    if judge:
        judged = [judge_instance_ask(o, "x" * round(expected["instance"]), templates["judge_instance"]) for o in instances]
        judged += [judge_group_ask(g, "x" * round(expected["group"]), templates["judge_group"]) for g in plan.groups]
    return [hol, *inst, *grp, *merge, *judged]


def _image_tokens(ask: Ask, plan: PatchPlan, family: Family, full: int) -> int:
    """Image tokens of a request: the patch's (the patch and its set-of-marks image are one size), a group crop's."""
    if not ask.image:
        return 0
    if ask.image.startswith("crop:"):
        g = next(g for g in plan.groups if crop_image(g.tag) == ask.image)
        x0, y0, x1, y1 = crop_box(g.bbox, plan.width, plan.height)
        return family.image_tokens(x1 - x0, y1 - y0)
    return full


def estimate(plans: Iterable[PatchPlan], family: Family, instance_mode: str = "per-object",
             count_tokens: Callable[[str], int] | None = None, expected: dict[str, float] | None = None,
             prompts_dir=None, judge: bool = False) -> Estimate:
    """Requests and tokens per tier of drafting `plans` with an annotator of `family` (pure apart from reading the
    prompt templates). `expected`: mean characters of a holistic, instance and group text (EXPECTED_CHARS)."""
    templates = {n: prompts.load(n, prompts_dir) for n in prompts.NAMES}
    chars = {**EXPECTED_CHARS, **(expected or {})}
    tokens = count_tokens or (lambda s: len(s) / CHARS_PER_TOKEN)
    est = Estimate(family.name, instance_mode, 0)
    for plan in plans:
        est.patches += 1
        image = family.image_tokens(plan.width, plan.height)
        n_tagged = len(plan.instances) + len(plan.groups)
        for ask in patch_asks(plan, templates, instance_mode, chars, judge):
            c = est.tiers.setdefault(ask.tier, TierCost())  # judge: only when asked for
            c.requests += 1
            c.text_tokens += tokens(ask.prompt)
            c.image_tokens += _image_tokens(ask, plan, family, image)
            c.completion_max += ask.max_tokens
            if ask.tier == "merge":  # every tier text again, with its tag markup
                body = chars["holistic"] + n_tagged * (chars["instance"] + 30)
            elif ask.tier == "instance" and not ask.key:  # the per-patch request: one sentence per mark
                body = len(plan.instances) * (chars["instance"] + 12)
            else:
                body = chars[ask.tier]
            c.completion_expected += body / CHARS_PER_TOKEN + REPLY_OVERHEAD
    return est


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:,.1f} hours" if seconds >= 3600 else f"{seconds / 60:,.1f} minutes"


def _n(v: float) -> str:
    return f"{v:,.0f}"


def estimate_table(est: Estimate, requests_per_s: float | None = None, tokens_per_s: float | None = None,
                   other: Estimate | None = None) -> str:
    """The printed estimate: requests and tokens per tier, image tokens a patch, hours at the given throughput."""
    fam = FAMILIES.get(est.family)
    lines = [f"Drafting estimate: {est.patches:,} patches, annotator family {est.family} ({fam.note if fam else ''}), "
             f"instance mode {est.instance_mode}",
             f"  {'tier':<9}{'requests':>10}{'prompt text':>13}{'image':>13}{'prompt total':>14}{'completion':>12}"
             f"{'(at most)':>12}"]
    for name, c in [*est.tiers.items(), ("total", est.total())]:
        lines.append(f"  {name:<9}{_n(c.requests):>10}{_n(c.text_tokens):>13}{_n(c.image_tokens):>13}"
                     f"{_n(c.prompt_tokens):>14}{_n(c.completion_expected):>12}{_n(c.completion_max):>12}")
    t = est.total()
    if est.patches:
        lines.append(f"  per patch: {t.requests / est.patches:.1f} requests, {t.prompt_tokens / est.patches:,.0f} prompt "
                     f"tokens ({t.image_tokens / est.patches:,.0f} of them image tokens), "
                     f"{t.completion_expected / est.patches:,.0f} completion tokens expected")
    if other is not None and other.patches:
        o = other.total()
        change = t.prompt_tokens / o.prompt_tokens - 1 if o.prompt_tokens else 0.0
        lines.append(f"  {other.instance_mode} instead: {o.requests:,} requests, {_n(o.prompt_tokens)} prompt tokens "
                     f"({est.instance_mode} sends {abs(change):.0%} {'fewer' if change < 0 else 'more'} prompt tokens)")
    if requests_per_s:
        lines.append(f"  at {requests_per_s:g} requests/s: {_duration(t.requests / requests_per_s)}")
    if tokens_per_s:
        lines.append(f"  at {tokens_per_s:g} generated tokens/s: {_duration(t.completion_expected / tokens_per_s)}")
    if not (requests_per_s or tokens_per_s):
        lines.append("  hours: give --requests-per-second or --tokens-per-second (measured with `vllm bench serve` or "
                     "bench/lmm_throughput.py on your server)")
    lines.append(f"  prompt text at {CHARS_PER_TOKEN:g} characters a token unless a local tokenizer counts it; "
                 "chat-template tokens not counted; tokens sent, before the server's prefix cache")
    return "\n".join(lines)


def estimate_report(plans: list[PatchPlan], family: str, instance_mode: str, count_tokens=None, prompts_dir=None,
                    requests_per_s: float | None = None, tokens_per_s: float | None = None, judge: bool = False) -> str:
    """The chosen instance mode's cost beside the other mode's: what `geopixeld draft --estimate` and the flow print
    (`judge`: with the LMM judge's requests, a tier of their own)."""
    if family not in FAMILIES:
        raise ValueError(f"--family must be one of {', '.join(FAMILIES)}, not {family!r}")
    other = "per-patch" if instance_mode == "per-object" else "per-object"
    est = [estimate(plans, FAMILIES[family], m, count_tokens, prompts_dir=prompts_dir, judge=judge)
           for m in (instance_mode, other)]
    return estimate_table(est[0], requests_per_s, tokens_per_s, est[1])
