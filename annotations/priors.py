"""Spatial priors: the words a prompt uses to point at an object. Pure functions of a mask crop.

Also the template drafter's English (number agreement, lists, word choice): template captions should not all
read alike, yet the same plan must always give the same caption, so every choice of words is picked by a hash
of the patch id and a salt (`pick`; never `random` or Python's salted `hash`).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import cv2
import numpy as np

POSITION_WORDS = (
    ("top left", "top", "top right"),
    ("left", "center", "right"),
    ("bottom left", "bottom", "bottom right"),
)


def grid_cell(x: float, y: float, width: int, height: int, cols: int, rows: int) -> tuple[int, int]:
    """(row, col) of a point in a rows x cols grid over the patch."""
    col = min(max(int(x * cols / width), 0), cols - 1)
    row = min(max(int(y * rows / height), 0), rows - 1)
    return row, col


def position_word(x: float, y: float, width: int, height: int) -> str:
    """The paper's 3x3 position word for a point."""
    row, col = grid_cell(x, y, width, height, 3, 3)
    return POSITION_WORDS[row][col]


def word_for(value: float, bounds: list[tuple[float, str]]) -> str:
    """The word of the first (upper bound, word) pair whose bound is >= value; the last word otherwise."""
    for bound, word in bounds:
        if value <= bound:
            return word
    return bounds[-1][1]


def centroid(crop: np.ndarray, x0: int, y0: int) -> tuple[float, float]:
    m = cv2.moments(crop.astype(np.uint8), binaryImage=True)
    if m["m00"] == 0:
        return x0 + crop.shape[1] / 2, y0 + crop.shape[0] / 2
    return x0 + m["m10"] / m["m00"], y0 + m["m01"] / m["m00"]


def orientation(crop: np.ndarray, elongation_threshold: float) -> tuple[float | None, float, str | None]:
    """(long-axis angle in degrees [0, 180), elongation, word or None) from the minimum-area rectangle."""
    contours, _ = cv2.findContours(crop.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return None, 1.0, None
    (_, _), (w, h), angle = cv2.minAreaRect(np.concatenate(contours))
    w, h = w + 1.0, h + 1.0  # pixel centres -> pixel extents
    long_side, short_side = max(w, h), min(w, h)
    elongation = long_side / short_side
    axis = angle if w >= h else angle + 90.0  # angle of the long side, degrees, y pointing down
    axis = axis % 180.0
    if elongation < elongation_threshold:
        return axis, elongation, None
    return axis, elongation, orientation_word(axis)


def orientation_word(axis_deg: float) -> str:
    """Long-axis direction in image coordinates (y down) as a word."""
    a = axis_deg % 180.0
    if a < 22.5 or a >= 157.5:
        return "horizontal"
    if 67.5 <= a < 112.5:
        return "vertical"
    # y grows downwards: 0 < a < 90 runs from top left to bottom right
    return "diagonal from top left to bottom right" if a < 90 else "diagonal from bottom left to top right"


def quantity_word(count: int, words: list[tuple[int, str]]) -> str:
    return word_for(count, [(float(b), w) for b, w in words])


def describe(crop: np.ndarray, x0: int, y0: int, width: int, height: int, size_words, elongation_threshold) -> dict:
    """All priors of one clipped object (dict of PlannedObject fields)."""
    area = int(crop.sum())
    cx, cy = centroid(crop, x0, y0)
    frac = area / float(width * height)
    angle, elong, orient = orientation(crop, elongation_threshold)
    return {
        "area": area,
        "centroid": (round(cx, 2), round(cy, 2)),
        "position": position_word(cx, cy, width, height),
        "area_fraction": round(frac, 6),
        "size": word_for(frac, size_words),
        "angle": None if angle is None or math.isnan(angle) else round(angle, 1),
        "elongation": round(elong, 3),
        "orientation": orient,
    }


# ------------------------------------------------------------------ the template drafter's English

SIZE_NAMED = ("tiny", "small", "medium", "large", "big", "huge")  # first words of categories that name a size
_SMALL = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve")


def pick(options: Sequence[str], key: str, salt: str = "") -> str:
    """One of `options`, the same for the same (key, salt) on every run and machine."""
    digest = hashlib.sha256(f"{key}\x00{salt}".encode()).digest()
    return options[int.from_bytes(digest[:8], "big") % len(options)]


def number(n: int) -> str:
    """A count as a word up to twelve, in digits above."""
    return _SMALL[n] if 0 <= n < len(_SMALL) else str(n)


def counted(n: int, singular: str, plural: str) -> str:
    """`one plane`, `14 small vehicles`: the noun agrees with the count."""
    return f"{number(n)} {singular if n == 1 else plural}"


def verb(n: int, singular: str, plural: str) -> str:
    """The verb form that agrees with a count (`is`/`are`)."""
    return singular if n == 1 else plural


def listing(items: Sequence[str], sep: str = ", ", last: str = " and ") -> str:
    """`a`, `a and b`, `a, b and c`."""
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return sep.join(items[:-1]) + last + items[-1]


def a(noun: str) -> str:
    """`a plane`, `an airport`: the indefinite article by the first letter (good enough for category words)."""
    return ("an " if noun[:1].lower() in "aeiou" else "a ") + noun


def capital(text: str) -> str:
    """The text with its first letter upper-case (the rest untouched: tags keep their case)."""
    return text[:1].upper() + text[1:]


def percent(fraction: float) -> str:
    """A share of the patch as a rounded percentage: `about 12%`, `under 1%`."""
    return "under 1%" if fraction < 0.01 else f"about {round(fraction * 100)}%"


def sized(size: str, noun: str) -> str:
    """`medium plane`, but `large vehicle` alone: a category that names a size takes no second size word."""
    return noun if not size or noun.split(" ", 1)[0] in SIZE_NAMED else f"{size} {noun}"


_ORIENTED = {"horizontal": "oriented horizontally", "vertical": "oriented vertically"}


def oriented(orientation: str) -> str:
    """An orientation prior as words: `oriented vertically`, `running diagonally from top left to bottom right`."""
    return _ORIENTED.get(orientation) or "running " + orientation.replace("diagonal", "diagonally", 1)


def phrase(tag: str) -> str:
    """A grounded phrase as GeoPixelD writes it: `<p> tag </p> [SEG]`."""
    return f"<p> {tag} </p> [SEG]"


def phrase_list(tags: list[str]) -> str:
    """GeoPixelD's list of grounded phrases: `<p> a </p> [SEG] , <p> b </p> [SEG] , and <p> c </p> [SEG]`."""
    items = [phrase(t) for t in tags]
    if len(items) <= 2:
        return " and ".join(items)
    return " , ".join(items[:-1]) + " , and " + items[-1]
