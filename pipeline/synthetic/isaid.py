"""Seeded synthetic aerial scenes, written exactly as the iSAID release is laid out.

Used by `geopixeld demo` (scale `small`), the tests (`tiny`) and the benchmark (`isaid`: ~1,400 images,
~470,000 instances). Nothing here is learned or downloaded: every scene is drawn with OpenCV from a random
generator seeded by (seed, image number), so images can be rendered in any order, by any number of worker
processes (`workers` > 1: a spawn-started multiprocessing Pool; fork can deadlock inside OpenCV), and the
same seed always gives the same pixels and byte-identical JSON.

Layout (as released by iSAID)::

    <root>/<split>/images/P0000.png                      RGB image (P0000.tif with geotiff=True)
    <root>/<split>/images/P0000_instance_id_RGB.png      instance id = R + 256 G + 65536 B, 0 = background
    <root>/<split>/images/P0000_instance_color_RGB.png   each instance painted in its class colour
    <root>/<split>/Annotations/iSAID_<split>.json        COCO: images, annotations (polygons), categories

Images are numbered across splits without collision: train first, then val (tiny: train P0000-P0002,
val P0003-P0005; P0003 is 1147 x 1023 so the tests can check the devkit's patch names). An image's id is
its P number. An annotation's id is `(P number + 1) * 5000 + object number` (P0003: 20001, 20002, ...):
unique over the whole file, equal to the object's value in the instance-id PNG, and >= 1000 (the devkit
ignores smaller instance ids). `area` is the number of painted pixels; `bbox` is the polygon's extent.

Every object is painted with `cv2.fillPoly` of exactly its integer polygon (in the RGB image, the id PNG
and the colour PNG alike) and objects never overlap (a 1-pixel gap is kept), so a rasterised polygon
equals its id-PNG pixels. COCO polygons have no holes: a roundabout is a thick C-shaped annulus sector,
which is concave; planes and helicopters are concave crosses.

`patches=True` also writes the iSAID devkit's patch layout, in its own dataset root `<root>/patches`
(so it reads like a devkit output folder with the `isaid-patches` format)::

    <root>/patches/<split>/images/P0003_0_800_0_800.png   (+ _instance_id_RGB.png, _instance_color_RGB.png)
    <root>/patches/<split>/Annotations/iSAID_<split>.json

Windows come from `tiling.tile_windows` (800 px, 200 overlap; an image with a side <= 800 is kept whole
under its own name) and are named by `tiling.patch_name`. As in the devkit's `preprocess.py`, a patch's
polygons are the external contours of each instance's cropped mask (`cv2.findContours`, RETR_EXTERNAL,
CHAIN_APPROX_NONE: every boundary pixel), and an instance is left out when any of its contours is a flat
list of 4 numbers or fewer (a sliver of 1-2 boundary points). Patch images are always PNG; patch image ids
and annotation ids are sequential from 1 in the split's order; category ids stay iSAID's.

Scenes: a smooth low-frequency terrain, a grid of roads, and 2-4 scene kinds per image (parking lots,
courts, sports fields, tank farms, a harbour, an airport apron, roundabouts, a river with bridges, a
residential block). Two kinds per image are dealt from a seeded shuffle of the nine, so any five
consecutive images cover them all; the rest are drawn at random. Vehicles then fill the image up to
`objects_per_mpx` (small vehicles dominate, as in iSAID). Flat colours and smooth gradients keep the PNGs
small (no per-pixel noise).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from tqdm import tqdm

from pipeline.contracts.categories import ISAID_CATEGORIES
from pipeline.contracts.tiling import patch_name, tile_windows

ID_STRIDE = 5000  # annotation id = (image number + 1) * ID_STRIDE + object number (1..4999): >= 1000 as
# the devkit wants (it skips smaller instance ids) and within the id PNG's 24 bits up to P3353
MAX_OBJECTS = ID_STRIDE - 1
PNG_LEVEL = 3  # zlib level for every PNG: small files, still fast on flat-coloured scenes

SHIP, TANK, BASEBALL, TENNIS, BASKETBALL, TRACK, BRIDGE, LARGE_VEHICLE, SMALL_VEHICLE = range(1, 10)
HELICOPTER, POOL, ROUNDABOUT, SOCCER, PLANE, HARBOR = range(10, 16)
CLASS_COLOR = {c.id: c.color for c in ISAID_CATEGORIES}

# What lies under each pixel, so objects land where they belong (ships on water, cars on roads).
LAND, ROAD, WATER, RESERVED = 0, 1, 2, 3


def _ground_lut(*codes: int) -> np.ndarray:
    lut = np.zeros(4, dtype=bool)
    lut[list(codes)] = True
    return lut


ON_LAND, ON_ROAD, ON_WATER = _ground_lut(LAND), _ground_lut(ROAD), _ground_lut(WATER)
ON_ANY = _ground_lut(LAND, ROAD, WATER, RESERVED)
NOT_WATER = _ground_lut(LAND, ROAD, RESERVED)
CLEARANCE = 80  # px of dry land wanted around a road crossing that should get a roundabout
DRY_WEIGHT = {"fields": 6, "airport": 3, "tanks": 2, "courts": 2, "parking": 1, "residential": 1}

KINDS = ("parking", "courts", "fields", "tanks", "harbour", "airport", "roundabout", "river", "residential")
BLOCK_KINDS = ("fields", "airport", "tanks", "parking", "courts", "residential")  # biggest blocks first


@dataclass(frozen=True)
class DemoScale:
    n_images: int  # train + val
    val_fraction: float
    min_side: int
    max_side: int
    objects_per_mpx: float  # mean instances per million pixels
    fixed_sizes: tuple[tuple[int, int], ...] = ()  # (width, height) of the k-th image of each split, if set

    def split_counts(self) -> dict[str, int]:
        n_val = round(self.n_images * self.val_fraction)
        return {"train": self.n_images - n_val, "val": n_val}


SCALES: dict[str, DemoScale] = {
    "tiny": DemoScale(6, 0.5, 700, 1700, 24.0, fixed_sizes=((1147, 1023), (700, 900), (1700, 1500))),
    "small": DemoScale(24, 0.5, 1000, 2500, 30.0),
    "isaid": DemoScale(1400, 1 / 3, 1500, 5000, 40.0),
}


# ---------------------------------------------------------------------------------------------- geometry


def _place_local(pts: np.ndarray, cx: float, cy: float, angle: float) -> np.ndarray:
    """Local shape coordinates (x along the long axis) -> image coordinates."""
    c, s = math.cos(angle), math.sin(angle)
    out = np.empty_like(pts, dtype=np.float64)
    out[:, 0] = cx + pts[:, 0] * c - pts[:, 1] * s
    out[:, 1] = cy + pts[:, 0] * s + pts[:, 1] * c
    return out


def _rect(length: float, width: float) -> np.ndarray:
    a, b = length / 2, width / 2
    return np.array([[-a, -b], [a, -b], [a, b], [-a, b]], dtype=np.float64)


def _ngon(radius: float, n: int = 16, phase: float = 0.0) -> np.ndarray:
    t = phase + np.arange(n) * 2 * math.pi / n
    return np.stack([radius * np.cos(t), radius * np.sin(t)], axis=1)


def _stadium(length: float, width: float, n_arc: int = 14) -> np.ndarray:
    """Rounded rectangle with semicircular ends: a running track."""
    r, a = width / 2, length / 2 - width / 2
    right = [(a + r * math.cos(t), r * math.sin(t)) for t in np.linspace(-math.pi / 2, math.pi / 2, n_arc)]
    left = [(-a + r * math.cos(t), r * math.sin(t)) for t in np.linspace(math.pi / 2, 3 * math.pi / 2, n_arc)]
    return np.array(right + left, dtype=np.float64)


def _fan(radius: float, n_arc: int = 12) -> np.ndarray:
    """A quarter disc, apex at the home plate, opening along +x; centred on its bounding box."""
    arc = [(radius * math.cos(t), radius * math.sin(t)) for t in np.linspace(-math.pi / 4, math.pi / 4, n_arc)]
    pts = np.array([(0.0, 0.0)] + arc, dtype=np.float64)
    pts[:, 0] -= radius / 2
    return pts


def _c_ring(outer: float, inner: float, gap: float, n_arc: int = 24) -> np.ndarray:
    """An annulus sector leaving out `gap` radians: a concave C (COCO polygons have no holes)."""
    t = np.linspace(gap / 2, 2 * math.pi - gap / 2, n_arc)
    out = np.stack([outer * np.cos(t), outer * np.sin(t)], axis=1)
    inn = np.stack([inner * np.cos(t[::-1]), inner * np.sin(t[::-1])], axis=1)
    return np.concatenate([out, inn])


def _ship(length: float, width: float) -> np.ndarray:
    a, b = length / 2, width / 2
    return np.array([[a, 0], [0.5 * a, -b], [-0.9 * a, -b], [-a, 0], [-0.9 * a, b], [0.5 * a, b]], dtype=np.float64)


def _plane(length: float, span: float) -> np.ndarray:
    """Fuselage, swept wings and tailplane: a concave cross with 15 corners, nose along +x."""
    a, fw, s, t = length / 2, length * 0.06, span / 2, span * 0.18
    half = [(a, 0), (0.15 * length, fw), (-0.12 * length, s), (-0.22 * length, s), (-0.08 * length, fw),
            (-0.35 * length, fw), (-0.44 * length, t), (-a, t)]
    lower = [(x, -y) for x, y in reversed(half[1:])]
    return np.array(half + lower, dtype=np.float64)


def _helicopter(size: float) -> np.ndarray:
    """Rotor cross with a long tail boom: a concave 12-corner plus."""
    r, b, tail = size * 0.45, size * 0.07, size * 0.75
    return np.array([[r, -b], [r, b], [b, b], [b, r], [-b, r], [-b, b], [-tail, b], [-tail, -b], [-b, -b], [-b, -r],
                     [b, -r], [b, -b]], dtype=np.float64)


def _pier(length: float, width: float, head: float) -> np.ndarray:
    """A jetty along +x from x=0, with a T head of `head` px at its far end when head > 0."""
    b = width / 2
    if head <= 0:
        return np.array([[0, -b], [length, -b], [length, b], [0, b]], dtype=np.float64)
    h = head / 2
    return np.array([[0, -b], [length - width, -b], [length - width, -h], [length, -h], [length, h],
                     [length - width, h], [length - width, b], [0, b]], dtype=np.float64)


def _jitter(colour: Sequence[int], rng: np.random.Generator, amount: int = 10) -> tuple[int, int, int]:
    return tuple(int(v) for v in np.clip(np.asarray(colour) + rng.integers(-amount, amount + 1, 3), 0, 255))


# ---------------------------------------------------------------------------------------------- canvas


@dataclass
class Block:
    """A city block between roads (end exclusive), and what it was given to."""

    x0: int
    y0: int
    x1: int
    y1: int
    kind: str = ""
    stalls: list = field(default_factory=list)  # parking: (x, y, angle, vehicle category)

    @property
    def w(self) -> int:
        return self.x1 - self.x0

    @property
    def h(self) -> int:
        return self.y1 - self.y0

    @property
    def centre(self) -> tuple[float, float]:
        return (self.x0 + self.x1) / 2, (self.y0 + self.y1) / 2

    def spot(self, rng: np.random.Generator, local: np.ndarray, angle: float) -> tuple[float, float] | None:
        """A random centre at which the local shape, turned by `angle`, lies inside the block (None: too big)."""
        pts = _place_local(local, 0.0, 0.0, angle)
        (lx, ly), (hx, hy) = pts.min(axis=0), pts.max(axis=0)
        xa, xb, ya, yb = self.x0 - lx + 1, self.x1 - hx - 2, self.y0 - ly + 1, self.y1 - hy - 2
        if xa > xb or ya > yb:
            return None
        return rng.uniform(xa, xb), rng.uniform(ya, yb)


@dataclass
class Road:
    vertical: bool
    pos: int  # centre line x (vertical) or y
    width: int


class Scene:
    """One image being drawn: RGB pixels, the ground under them and which object owns each pixel."""

    def __init__(self, width: int, height: int, rng: np.random.Generator, gsd: float):
        self.w, self.h, self.rng, self.gsd = width, height, rng, gsd
        self.rgb = np.zeros((height, width, 3), dtype=np.uint8)
        self.ground = np.zeros((height, width), dtype=np.uint8)
        self.owner = np.zeros((height, width), dtype=np.uint16)  # object number, 0 = background
        self.objects: list[tuple[int, np.ndarray]] = []  # (category id, (N, 2) int32 polygon)
        self.categories: set[int] = set()

    def place(self, cat: int, outline: np.ndarray, colour, details: Sequence[tuple] = (), allowed=ON_LAND,
              within: Block | None = None) -> bool:
        """Paint an object if it fits: inside the image (and `within`), on allowed ground, 1 px from others."""
        if len(self.objects) >= MAX_OBJECTS:
            return False
        pts = np.rint(outline).astype(np.int32)
        keep = np.ones(len(pts), dtype=bool)
        keep[1:] = (pts[1:] != pts[:-1]).any(axis=1)
        pts = pts[keep]
        if len(pts) >= 2 and (pts[0] == pts[-1]).all():
            pts = pts[:-1]
        if len(pts) < 3:
            return False
        x0, y0 = pts.min(axis=0)
        x1, y1 = pts.max(axis=0)
        if x0 < 0 or y0 < 0 or x1 > self.w - 1 or y1 > self.h - 1:
            return False
        if within is not None and (x0 < within.x0 or y0 < within.y0 or x1 >= within.x1 or y1 >= within.y1):
            return False
        bx0, by0, bx1, by1 = max(x0 - 1, 0), max(y0 - 1, 0), min(x1 + 2, self.w), min(y1 + 2, self.h)
        mask = np.zeros((by1 - by0, bx1 - bx0), dtype=np.uint8)
        cv2.fillPoly(mask, [pts - (bx0, by0)], 1)
        inside = mask.astype(bool)
        if inside.sum() < 12:
            return False
        owner = self.owner[by0:by1, bx0:bx1]
        if owner[cv2.dilate(mask, np.ones((3, 3), np.uint8)).astype(bool)].any():
            return False
        if not allowed[self.ground[by0:by1, bx0:bx1][inside]].all():
            return False
        self.objects.append((cat, pts))
        self.categories.add(cat)
        owner[inside] = len(self.objects)
        region = self.rgb[by0:by1, bx0:bx1]
        if details:
            canvas = region.copy()
            canvas[inside] = colour
            _draw(canvas, details, (bx0, by0))
            region[inside] = canvas[inside]
        else:
            region[inside] = colour
        return True

    def paint_block(self, block: Block, canvas: np.ndarray, reserved: np.ndarray | None = None) -> None:
        """Copy a block's ground picture in where the ground is free land; `reserved` marks buildings."""
        sl = np.s_[block.y0 : block.y1, block.x0 : block.x1]
        free = (self.ground[sl] == LAND) & (self.owner[sl] == 0)
        self.rgb[sl][free] = canvas[free]
        if reserved is not None:
            self.ground[sl][free & reserved] = RESERVED

    def block_canvas(self, block: Block, colour) -> np.ndarray:
        canvas = np.empty((block.h, block.w, 3), dtype=np.uint8)
        canvas[:] = colour
        return canvas


def _draw(img: np.ndarray, ops: Sequence[tuple], offset: tuple[int, int]) -> None:
    """Drawing ops in image coordinates onto `img`, whose top-left pixel is `offset`."""
    off = np.asarray(offset, dtype=np.float64)
    for op in ops:
        kind = op[0]
        if kind == "fill":
            cv2.fillPoly(img, [np.rint(op[1] - off).astype(np.int32)], op[2])
        elif kind == "lines":
            cv2.polylines(img, [np.rint(op[1] - off).astype(np.int32)], op[4], op[2], op[3])
        elif kind == "circle":
            c = np.rint(np.asarray(op[1]) - off).astype(int)
            cv2.circle(img, (int(c[0]), int(c[1])), max(1, int(round(op[2]))), op[3], op[4])


# ---------------------------------------------------------------------------------------------- backdrop

TERRAIN = [(96, 118, 72), (110, 128, 80), (132, 128, 98), (150, 140, 110), (120, 112, 86), (84, 104, 66),
           (160, 152, 124), (104, 116, 92)]
FARM = [(122, 140, 78), (150, 146, 96), (176, 160, 112), (96, 124, 70), (138, 120, 88), (168, 170, 120)]
ROOFS = [(150, 80, 64), (170, 96, 72), (120, 120, 124), (90, 92, 100), (190, 184, 170), (140, 104, 80)]
CAR_COLOURS = [(230, 230, 228), (30, 30, 34), (128, 128, 132), (180, 182, 186), (150, 30, 28), (32, 60, 120),
               (210, 210, 200), (70, 76, 80)]


def _smooth_field(w: int, h: int, rng: np.random.Generator, palette: Sequence, cell: int) -> np.ndarray:
    """Low-frequency colour field: a coarse random grid of palette colours, upsampled bicubically."""
    gw, gh = w // cell + 3, h // cell + 3
    idx = rng.integers(0, len(palette), size=(gh, gw))
    grid = np.asarray(palette, dtype=np.float32)[idx] + rng.normal(0, 6, size=(gh, gw, 3)).astype(np.float32)
    grid = np.clip(cv2.GaussianBlur(grid, (3, 3), 0), 0, 255).astype(np.uint8)
    big = cv2.resize(grid, (gw * cell, gh * cell), interpolation=cv2.INTER_CUBIC)  # uint8: saturates, no clip
    return big[cell : cell + h, cell : cell + w]


def _layout_roads(scene: Scene) -> list[Road]:
    rng, roads = scene.rng, []
    for vertical, side in ((True, scene.w), (False, scene.h)):
        n = max(1, round(side / rng.uniform(450, 800)))
        step = side / (n + 1)
        for i in range(n):
            pos = int(step * (i + 1) + rng.uniform(-0.2, 0.2) * step)
            roads.append(Road(vertical, pos, int(rng.uniform(24, 34))))
    for r in roads:
        half = r.width // 2
        if r.vertical:
            scene.ground[:, r.pos - half : r.pos - half + r.width] = ROAD
        else:
            scene.ground[r.pos - half : r.pos - half + r.width, :] = ROAD
    return roads


def _blocks(scene: Scene, roads: list[Road], margin: int = 5) -> list[Block]:
    def cuts(vertical: bool, side: int) -> list[tuple[int, int]]:
        edges = [0]
        for r in sorted((r for r in roads if r.vertical == vertical), key=lambda r: r.pos):
            edges += [r.pos - r.width // 2 - margin, r.pos - r.width // 2 + r.width + margin]
        edges.append(side)
        return [(edges[i], edges[i + 1]) for i in range(0, len(edges), 2)]

    return [Block(x0, y0, x1, y1) for y0, y1 in cuts(False, scene.h) for x0, x1 in cuts(True, scene.w)
            if x1 - x0 >= 80 and y1 - y0 >= 80]


def _assign_blocks(scene: Scene, blocks: list[Block], kinds: Sequence[str]) -> list[Block]:
    """Chosen block kinds take the largest blocks (water is laid out later, around them); a share of the
    rest goes to them too, the others stay spare."""
    rng = scene.rng
    usable = [b for b in blocks if min(b.w, b.h) >= 150]
    usable.sort(key=lambda b: -b.w * b.h)
    wanted = [k for k in BLOCK_KINDS if k in kinds]
    if "fields" in wanted and len(usable) > len(wanted) + 2:
        wanted.insert(1, "fields")  # big objects: a second block
    for kind, block in zip(wanted, usable):
        block.kind = kind
    taken = {k: wanted.count(k) for k in wanted}
    for block in usable[len(wanted) :]:
        open_kinds = [k for k in taken if taken[k] < 3]
        if open_kinds and rng.random() < 0.4:
            block.kind = open_kinds[int(rng.integers(len(open_kinds)))]
            taken[block.kind] += 1
    return [b for b in blocks if b.kind]


def _paint_roads(scene: Scene, roads: list[Road]) -> None:
    rng = scene.rng
    road = scene.ground == ROAD
    scene.rgb[road] = _jitter((118, 118, 116), rng, 8)
    dash, gap = 14, 16
    for r in roads:
        colour = (205, 205, 200)
        side = scene.h if r.vertical else scene.w
        for t in range(int(rng.integers(0, dash + gap)), side, dash + gap):
            p0, p1 = (r.pos, t), (r.pos, min(t + dash, side - 1))
            if not r.vertical:
                p0, p1 = p0[::-1], p1[::-1]
            cv2.line(scene.rgb, p0, p1, colour, 1)


def _paint_water(scene: Scene) -> None:
    water = scene.ground == WATER
    if water.any():
        field_ = _smooth_field(scene.w, scene.h, scene.rng, [(38, 66, 88), (44, 74, 96), (52, 84, 104)], 400)
        scene.rgb[water] = field_[water]


# ---------------------------------------------------------------------------------------------- scene kinds


def _tennis_courts(scene: Scene, block: Block) -> None:
    """Groups of 2-5 courts side by side, with their lines and nets."""
    rng, s = scene.rng, scene.gsd
    surface = [(70, 120, 80), (60, 100, 140), (170, 90, 70)][int(rng.integers(3))]
    for _ in range(int(rng.integers(1, 4))):
        n, length, width = int(rng.integers(2, 6)), rng.uniform(64, 76) * s, rng.uniform(32, 38) * s
        gap = rng.uniform(2, 5)
        for _try in range(15):
            angle = rng.choice([0, math.pi / 2]) + rng.uniform(-0.3, 0.3)
            centre = block.spot(rng, _rect(length, n * (width + gap)), angle)
            if centre is None:
                n = max(1, n - 1)
                continue
            placed = 0
            for i in range(n):
                x, y = _place_local(np.array([[0.0, (i - (n - 1) / 2) * (width + gap)]]), *centre, angle)[0]
                inner = _place_local(_rect(length * 0.72, width * 0.62), x, y, angle)
                net = _place_local(np.array([[0, -width * 0.36], [0, width * 0.36]]), x, y, angle)
                ops = [("fill", inner, _jitter(surface, rng, 6)), ("lines", inner, (235, 235, 235), 1, True),
                       ("lines", net, (235, 235, 235), 1, False)]
                placed += scene.place(TENNIS, _place_local(_rect(length, width), x, y, angle),
                                      _jitter(surface, rng, 4), ops, within=block)
            if placed:
                break


def _basketball_court(scene: Scene, block: Block) -> bool:
    rng, s = scene.rng, scene.gsd
    length, width, angle = rng.uniform(52, 60) * s, rng.uniform(28, 32) * s, rng.uniform(0, math.pi)
    centre = block.spot(rng, _rect(length, width), angle)
    if centre is None:
        return False
    x, y = centre
    inner = _place_local(_rect(length * 0.85, width * 0.8), x, y, angle)
    half = _place_local(np.array([[0, -width * 0.4], [0, width * 0.4]]), x, y, angle)
    ops = [("lines", inner, (240, 240, 240), 1, True), ("lines", half, (240, 240, 240), 1, False),
           ("circle", (x, y), width * 0.15, (240, 240, 240), 1)]
    colour = [(190, 110, 60), (60, 110, 160), (150, 70, 60)][int(rng.integers(3))]
    return scene.place(BASKETBALL, _place_local(_rect(length, width), x, y, angle), colour, ops, within=block)


def _pool(scene: Scene, block: Block, size: float, near: tuple[float, float] | None = None) -> bool:
    """A pool (`size`: its length at GSD 1), anywhere in the block or within ~40 px of `near`."""
    rng, s = scene.rng, scene.gsd
    length = size * rng.uniform(0.6, 1.0) * s
    width, angle = length * rng.uniform(0.4, 0.7), rng.uniform(0, math.pi)
    if near is not None:
        x, y = near[0] + rng.uniform(-40, 40) * s, near[1] + rng.uniform(-40, 40) * s
    else:
        centre = block.spot(rng, _rect(length, width), angle)
        if centre is None:
            return False
        x, y = centre
    outline = _place_local(_rect(length, width), x, y, angle)
    ops = [("lines", outline, (200, 230, 240), 2, True)]
    return scene.place(POOL, outline, _jitter((60, 170, 205), rng, 12), ops, within=block)


def _retry(tries: int, attempt, *args) -> bool:
    return any(attempt(*args) for _ in range(tries))


def _kind_courts(scene: Scene, block: Block) -> None:
    rng = scene.rng
    scene.paint_block(block, scene.block_canvas(block, _jitter((150, 152, 140), rng, 8)))
    _tennis_courts(scene, block)
    for _ in range(int(rng.integers(1, 4))):
        _retry(20, _basketball_court, scene, block)
    for _ in range(int(rng.integers(0, 3))):
        _retry(10, _pool, scene, block, 50.0)


def _fit(block: Block) -> float:
    """Sports fields shrink in small blocks so that a track, a pitch and a diamond can share one."""
    return min(1.0, math.sqrt(block.w * block.h / 300_000))


def _track_field(scene: Scene, block: Block) -> bool:
    """A running track (rounded rectangle) with a pitch drawn inside."""
    rng, s = scene.rng, scene.gsd * _fit(block)
    length = min(rng.uniform(300, 360) * s, max(block.w, block.h) * 0.92)
    width = length * rng.uniform(0.47, 0.52)
    angle = (0.0 if block.w >= block.h else math.pi / 2) + rng.uniform(-0.25, 0.25)
    centre = block.spot(rng, _stadium(length, width), angle)
    if centre is None:
        return False
    inner = _place_local(_stadium(length - 0.16 * width, 0.84 * width), *centre, angle)
    pitch = _place_local(_rect(length * 0.5, width * 0.6), *centre, angle)
    ops = [("fill", inner, (84, 140, 70)), ("lines", inner, (235, 235, 230), 1, True),
           ("lines", pitch, (235, 235, 230), 1, True)]
    return scene.place(TRACK, _place_local(_stadium(length, width), *centre, angle), _jitter((176, 86, 64), rng, 10),
                       ops, within=block)


def _soccer_field(scene: Scene, block: Block) -> bool:
    rng, s = scene.rng, scene.gsd * _fit(block)
    length = min(rng.uniform(190, 220) * s, max(block.w, block.h) * 0.92)
    width = length * rng.uniform(0.62, 0.68)
    angle = rng.uniform(0, math.pi)
    centre = block.spot(rng, _rect(length, width), angle)
    if centre is None:
        return False
    x, y = centre
    white = (235, 235, 235)
    touchline = _rect(length * 0.92, width * 0.9)
    boxes = [_rect(length * 0.16, width * 0.45) + (side * length * 0.38, 0) for side in (-1, 1)]
    halfway = np.array([[0, -width * 0.45], [0, width * 0.45]])
    ops = [("lines", _place_local(p, x, y, angle), white, 1, True) for p in (touchline, *boxes)]
    ops += [("lines", _place_local(halfway, x, y, angle), white, 1, False), ("circle", (x, y), width * 0.14, white, 1)]
    return scene.place(SOCCER, _place_local(_rect(length, width), x, y, angle), _jitter((70, 135, 64), rng, 8), ops,
                       within=block)


def _baseball_diamond(scene: Scene, block: Block) -> bool:
    """A grass quarter-disc with a dirt infield and a grass diamond near home plate."""
    rng, s = scene.rng, scene.gsd * _fit(block)
    radius = min(rng.uniform(110, 160) * s, max(block.w, block.h) * 0.8)
    angle = rng.uniform(0, 2 * math.pi)
    centre = block.spot(rng, _fan(radius), angle)
    if centre is None:
        return False
    infield = _place_local(_fan(radius * 0.48) - (radius * 0.26, 0), *centre, angle)
    diamond = _place_local(_ngon(radius * 0.12, 4) - (radius * 0.3, 0), *centre, angle)
    ops = [("fill", infield, (170, 130, 90)), ("fill", diamond, (96, 140, 74))]
    return scene.place(BASEBALL, _place_local(_fan(radius), *centre, angle), _jitter((90, 140, 70), rng, 8), ops,
                       within=block)


def _kind_fields(scene: Scene, block: Block) -> None:
    """A track, a soccer pitch and a baseball diamond; those the scene still lacks are tried first."""
    scene.paint_block(block, scene.block_canvas(block, _jitter((100, 130, 76), scene.rng, 8)))
    makers = [(TRACK, _track_field), (SOCCER, _soccer_field), (BASEBALL, _baseball_diamond)]
    for _, attempt in sorted(makers, key=lambda m: m[0] in scene.categories):
        _retry(30, attempt, scene, block)
    for _ in range(int(block.w * block.h / 250_000)):  # big blocks get a few more
        _retry(5, [_soccer_field, _baseball_diamond][int(scene.rng.integers(2))], scene, block)


def _kind_tanks(scene: Scene, block: Block) -> None:
    rng, s = scene.rng, scene.gsd
    canvas = scene.block_canvas(block, _jitter((176, 168, 146), rng, 8))
    scene.paint_block(block, canvas)
    radius = rng.uniform(10, 32) * s
    pitch = 2 * radius + rng.uniform(6, 20) * s
    top = _jitter((214, 214, 208), rng, 14)
    cols = min(int(rng.integers(2, 9)), int(block.w // pitch))
    rows = min(int(rng.integers(2, 7)), int(block.h // pitch))
    ox = block.x0 + pitch / 2 + rng.uniform(0, block.w - cols * pitch)
    oy = block.y0 + pitch / 2 + rng.uniform(0, block.h - rows * pitch)
    for gy in oy + pitch * np.arange(rows):
        for gx in ox + pitch * np.arange(cols):
            if rng.random() < 0.15:
                continue
            r = radius * rng.uniform(0.85, 1.0)
            x, y = gx + rng.uniform(-2, 2), gy + rng.uniform(-2, 2)
            shade = _place_local(_ngon(r * 0.9, 16), x + r * 0.25, y + r * 0.25, 0)
            ops = [("fill", shade, (150, 150, 146)), ("circle", (x, y), r * 0.8, (188, 188, 182), 1),
                   ("circle", (x, y), max(1.0, r * 0.12), (120, 120, 118), -1)]
            scene.place(TANK, _place_local(_ngon(r, 16), x, y, 0), top, ops, within=block)


def _kind_airport(scene: Scene, block: Block) -> None:
    rng, s = scene.rng, scene.gsd
    canvas = scene.block_canvas(block, _jitter((178, 178, 172), rng, 6))
    for k in range(1, 4):  # taxi lines
        y = int(block.h * k / 4)
        cv2.line(canvas, (0, y), (block.w - 1, y), (200, 180, 60), 2)
    scene.paint_block(block, canvas)
    length = min(rng.uniform(60, 110) * s, 0.42 * min(block.w, block.h))
    span = length * rng.uniform(0.9, 1.1)
    pitch = span + rng.uniform(10, 30) * s
    horizontal = block.w >= block.h
    nose = math.pi / 2 if horizontal else 0.0  # noses point across the row
    rows = 2 if min(block.w, block.h) > 3 * length else 1
    for row in range(rows):
        start = (block.x0 if horizontal else block.y0) + pitch / 2
        end = block.x1 if horizontal else block.y1
        for t in np.arange(start, end - pitch / 2, pitch):
            if rng.random() < 0.25:
                continue
            across = (block.y0 if horizontal else block.x0) + length * (0.6 + 1.4 * row)
            x, y = (t, across) if horizontal else (across, t)
            angle = nose + (math.pi if row else 0) + rng.uniform(-0.15, 0.15)
            L = length * rng.uniform(0.85, 1.0)
            body = _place_local(np.array([[L * 0.45, 0], [-L * 0.45, 0]]), x, y, angle)
            ops = [("lines", body, (200, 200, 205), max(1, int(L * 0.05)), False)]
            scene.place(PLANE, _place_local(_plane(L, L * span / length), x, y, angle), (236, 236, 238), ops,
                        within=block)
    for _ in range(int(rng.integers(1, 4))):
        for _try in range(20):
            size, angle = rng.uniform(30, 42) * s, rng.uniform(0, 2 * math.pi)
            centre = block.spot(rng, _helicopter(size), angle)
            if centre is None:
                break
            x, y = centre
            ops = [("circle", (x, y), size * 0.12, (40, 40, 40), -1)]
            if scene.place(HELICOPTER, _place_local(_helicopter(size), x, y, angle),
                           _jitter((80, 96, 70), rng, 12), ops, within=block):
                break


def _kind_residential(scene: Scene, block: Block, objects: bool = True) -> None:
    rng, s = scene.rng, scene.gsd
    canvas = scene.block_canvas(block, _jitter((108, 130, 82), rng, 8))
    reserved = np.zeros((block.h, block.w), dtype=np.uint8)
    pitch_x, pitch_y = rng.uniform(50, 70) * s, rng.uniform(50, 70) * s
    houses = []
    for y in np.arange(pitch_y / 2, block.h - pitch_y / 3, pitch_y):
        for x in np.arange(pitch_x / 2, block.w - pitch_x / 3, pitch_x):
            if rng.random() < 0.15:
                continue
            hw, hh = rng.uniform(18, 30) * s, rng.uniform(14, 24) * s
            cx, cy = x + rng.uniform(-6, 6), y - pitch_y * 0.15
            house = np.rint(_place_local(_rect(hw, hh), cx, cy, rng.uniform(-0.08, 0.08))).astype(np.int32)
            roof = ROOFS[int(rng.integers(len(ROOFS)))]
            cv2.fillPoly(canvas, [house], roof)
            cv2.line(canvas, tuple(house[[0, 3]].mean(0).astype(int)), tuple(house[[1, 2]].mean(0).astype(int)),
                     tuple(int(v * 0.8) for v in roof), 1)
            cv2.fillPoly(reserved, [house], 1)
            houses.append((block.x0 + cx, block.y0 + cy + pitch_y * 0.4))
    scene.paint_block(block, canvas, reserved.astype(bool))
    if not (objects and houses):  # spare blocks drawn last: houses only
        return
    for _ in range(max(1, len(houses) // 6)):
        _retry(10, lambda: _pool(scene, block, 30.0, houses[int(rng.integers(len(houses)))]))
    for hx, hy in houses:  # a car in some driveways
        if rng.random() < 0.25:
            _vehicle(scene, SMALL_VEHICLE, hx + rng.uniform(-10, 10), hy, rng.uniform(0, math.pi), ON_LAND, block)


def _kind_parking(scene: Scene, block: Block) -> None:
    """Asphalt with painted stalls; the stalls are filled later, once the vehicle budget is known."""
    rng, s = scene.rng, scene.gsd
    canvas = scene.block_canvas(block, _jitter((88, 88, 92), rng, 6))
    angle = rng.choice([0.0, math.pi / 2]) + (rng.uniform(-0.4, 0.4) if rng.random() < 0.35 else rng.uniform(-0.03, 0.03))
    c, sn = math.cos(angle), math.sin(angle)
    cx, cy = block.w / 2, block.h / 2
    reach = math.hypot(block.w, block.h) / 2
    car_len, car_w = 21 * s, 10 * s
    stall_w = car_w + rng.uniform(3, 6) * s
    stall_len = car_len + 4 * s
    aisle = rng.uniform(18, 26) * s
    lv_len, lv_w = 52 * s, 16 * s
    truck_v = rng.uniform(-0.3, 0.3) * min(block.w, block.h)  # the double row nearest to it holds trucks
    v = -reach
    while v < reach:
        trucks = abs(v + stall_len - truck_v) < stall_len + aisle / 2 or rng.random() < 0.06
        rows = [(v + lv_len / 2 + 2, LARGE_VEHICLE, lv_len + 4, lv_w + 6)] if trucks else [
            (v + stall_len / 2, SMALL_VEHICLE, stall_len, stall_w), (v + 1.5 * stall_len, SMALL_VEHICLE, stall_len, stall_w)]
        for rv, cat, slen, swid in rows:
            for u in np.arange(-reach, reach, swid):
                x, y = cx + u * c - rv * sn, cy + u * sn + rv * c
                if not (slen / 2 < x < block.w - slen / 2 and slen / 2 < y < block.h - slen / 2):
                    continue
                ends = [(u - swid / 2, rv - slen / 2), (u - swid / 2, rv + slen / 2)]
                p0, p1 = [(int(cx + a * c - b * sn), int(cy + a * sn + b * c)) for a, b in ends]
                cv2.line(canvas, p0, p1, (196, 196, 190), 1)
                jitter = rng.uniform(-0.06, 0.06)
                block.stalls.append((block.x0 + x, block.y0 + y, angle + math.pi / 2 + jitter, cat))
        v += (lv_len + 4 + aisle) if trucks else (2 * stall_len + aisle)
    scene.paint_block(block, canvas)


def _vehicle(scene: Scene, cat: int, x: float, y: float, angle: float, allowed, within: Block | None = None) -> bool:
    rng, s = scene.rng, scene.gsd
    if cat == SMALL_VEHICLE:
        length, width = rng.uniform(17, 21) * s, rng.uniform(8.5, 10) * s
        colour = CAR_COLOURS[int(rng.integers(len(CAR_COLOURS)))]
        glass = _place_local(_rect(length * 0.2, width * 0.8) + (length * 0.18, 0), x, y, angle)
        ops = [("fill", glass, (40, 44, 52))]
    else:
        length, width = rng.uniform(38, 52) * s, rng.uniform(13, 15.5) * s
        colour = [(220, 220, 215), (180, 60, 40), (70, 100, 150), (200, 190, 150)][int(rng.integers(4))]
        cab = _place_local(_rect(length * 0.18, width) + (length * 0.41, 0), x, y, angle)
        ops = [("fill", cab, (150, 150, 160)), ("lines", cab, (60, 60, 60), 1, True)]
    return scene.place(cat, _place_local(_rect(length, width), x, y, angle), _jitter(colour, rng, 8), ops,
                       allowed, within)


def _road_vehicles(scene: Scene, roads: list[Road], budget: int) -> None:
    """Cars and trucks in both lanes of every grid road, spaced so that about `budget` of them fit."""
    rng = scene.rng
    lane_length = sum(2 * (scene.h if r.vertical else scene.w) for r in roads)
    if budget <= 0 or not lane_length:
        return
    mean_gap = max(26.0 * scene.gsd, lane_length / budget)
    placed = 0
    for r in roads:
        side = scene.h if r.vertical else scene.w
        for direction in (1, -1):
            offset = direction * r.width / 4
            t = rng.exponential(mean_gap)
            while t < side and placed < budget:
                cat = LARGE_VEHICLE if rng.random() < 0.08 else SMALL_VEHICLE
                angle = (math.pi / 2 if r.vertical else 0.0) + (math.pi if direction < 0 else 0.0) + rng.uniform(-0.04, 0.04)
                x, y = (r.pos + offset, t) if r.vertical else (t, r.pos + offset)
                placed += _vehicle(scene, cat, x, y, angle, ON_ROAD)
                t += 24 * scene.gsd + rng.exponential(mean_gap)


def _fill_lots(scene: Scene, lots: list[Block], budget: int) -> None:
    stalls = [st for b in lots for st in b.stalls]
    if budget <= 0 or not stalls:
        return
    p = min(0.97, budget / len(stalls))
    rng = scene.rng
    for lot in lots:
        for x, y, angle, cat in lot.stalls:
            if rng.random() < (p if cat == SMALL_VEHICLE else max(p, 0.3)):
                _vehicle(scene, cat, x + rng.uniform(-1, 1), y + rng.uniform(-1, 1),
                         angle + (math.pi if rng.random() < 0.5 else 0), ON_LAND, lot)


def _layout_river(scene: Scene, score) -> dict:
    """A straight river across the image: the best of 20 tries by `score` (what it leaves dry)."""
    rng, s = scene.rng, scene.gsd
    best = None
    for _try in range(20):
        cx, cy = rng.uniform(0.3, 0.7) * scene.w, rng.uniform(0.3, 0.7) * scene.h
        angle, width = rng.uniform(0, math.pi), rng.uniform(70, 150) * s
        nx, ny = -math.sin(angle), math.cos(angle)

        def dry(rect, cx=cx, cy=cy, nx=nx, ny=ny, width=width) -> bool:
            d = [(x - cx) * nx + (y - cy) * ny for x in (rect[0], rect[2]) for y in (rect[1], rect[3])]
            return min(d) > width / 2 or max(d) < -width / 2

        value = score(dry)
        if best is None or value > best[0]:
            best = (value, {"centre": (cx, cy), "angle": angle, "width": width})
    river = best[1]
    band = _place_local(_rect(4 * (scene.w + scene.h), river["width"]), *river["centre"], river["angle"])
    cv2.fillPoly(scene.ground, [np.rint(band).astype(np.int32)], WATER)
    return river


def _bridges(scene: Scene, river: dict) -> None:
    """Bridges across the river with short approach roads; a bridge is a long thin rotated rectangle."""
    rng, s = scene.rng, scene.gsd
    (cx, cy), along, width = river["centre"], river["angle"], river["width"]
    spots = rng.uniform(-0.4, 0.4, size=int(rng.integers(1, 4))) * min(scene.w, scene.h)
    for t in sorted(spots):
        x, y = cx + t * math.cos(along), cy + t * math.sin(along)
        skew = rng.uniform(-0.25, 0.25)
        angle = along + math.pi / 2 + skew
        length = width / math.cos(skew) + 2 * rng.uniform(20, 40) * s
        deck = rng.uniform(20, 32) * s
        approach = np.rint(_place_local(_rect(length + 2 * rng.uniform(80, 250), deck * 0.9), x, y, angle)).astype(np.int32)
        outline = _place_local(_rect(length, deck), x, y, angle)
        if not (outline.min() >= 0 and outline[:, 0].max() < scene.w and outline[:, 1].max() < scene.h):
            continue
        mask = np.zeros_like(scene.ground)
        cv2.fillPoly(mask, [approach], 1)
        land = (mask == 1) & (scene.ground == LAND) & (scene.owner == 0)
        scene.ground[land] = ROAD
        scene.rgb[land] = (124, 122, 118)
        rails = [_place_local(np.array([[-length / 2 + 3, side * deck * 0.4], [length / 2 - 3, side * deck * 0.4]]),
                              x, y, angle) for side in (-1, 1)]
        ops = [("lines", r, (120, 120, 118), 1, False) for r in rails]
        scene.place(BRIDGE, outline, _jitter((168, 166, 160), rng, 6), ops, ON_ANY)


def _layout_coast(scene: Scene, score) -> dict:
    """Water along one image edge behind a wavy shoreline: the best of 20 tries by `score`."""
    rng = scene.rng
    best = None
    for _try in range(20):
        edge = int(rng.integers(4))  # 0 left, 1 right, 2 top, 3 bottom
        across_len = scene.w if edge < 2 else scene.h
        depth = rng.uniform(0.22, 0.35) * across_len
        amp, period, phase = rng.uniform(10, 40), rng.uniform(400, 1200), rng.uniform(0, 2 * math.pi)

        def dry(rect, edge=edge, reach=depth + amp) -> bool:
            x0, y0, x1, y1 = rect
            return min(_edge_distance(scene, edge, x, y) for x in (x0, x1) for y in (y0, y1)) > reach

        value = score(dry)
        if best is None or value > best[0]:
            best = (value, (edge, depth, amp, period, phase))
    edge, depth, amp, period, phase = best[1]

    def shore(t: np.ndarray) -> np.ndarray:
        return depth + amp * np.sin(2 * math.pi * t / period + phase)

    along_len = scene.h if edge < 2 else scene.w
    t = np.arange(-10, along_len + 40, 30, dtype=np.float64)
    poly = np.concatenate([[(t[0], -10)], np.stack([t, shore(t)], axis=1), [(t[-1], -10)]])
    cv2.fillPoly(scene.ground, [np.rint(_coast_to_image(scene, edge, poly)).astype(np.int32)], WATER)
    return {"edge": edge, "shore": shore, "along": along_len}


def _water_score(blocks: list[Block], crossings: list[tuple[int, int]]):
    """How good a water layout is: the blocks it leaves dry (big objects count most) and a dry road
    crossing for a roundabout when one is wanted."""

    def score(dry) -> float:
        value = sum(DRY_WEIGHT.get(b.kind, 0) for b in blocks if dry((b.x0, b.y0, b.x1, b.y1)))
        if crossings and any(dry((x - CLEARANCE, y - CLEARANCE, x + CLEARANCE, y + CLEARANCE)) for x, y in crossings):
            value += 3
        return value

    return score


def _edge_distance(scene: Scene, edge: int, x: float, y: float) -> float:
    return (x, scene.w - 1 - x, y, scene.h - 1 - y)[edge]


def _coast_to_image(scene: Scene, edge: int, pts: np.ndarray) -> np.ndarray:
    """(t along the edge, d away from it) -> image x, y."""
    t, d = pts[:, 0], pts[:, 1]
    if edge == 0:
        return np.stack([d, t], axis=1)
    if edge == 1:
        return np.stack([scene.w - 1 - d, t], axis=1)
    if edge == 2:
        return np.stack([t, d], axis=1)
    return np.stack([t, scene.h - 1 - d], axis=1)


def _harbour(scene: Scene, coast: dict) -> None:
    """Piers (Harbor) reaching into the water, ships moored along them, a few more at anchor."""
    rng, s, edge = scene.rng, scene.gsd, coast["edge"]
    seaward = {0: math.pi, 1: 0.0, 2: -math.pi / 2, 3: math.pi / 2}[edge]  # image direction towards the edge
    for t in np.arange(rng.uniform(60, 200), coast["along"] - 60, rng.uniform(180, 320)):
        d_shore = float(coast["shore"](np.array([t]))[0])
        length = min(rng.uniform(110, 260) * s, d_shore - 40)
        width = rng.uniform(18, 32) * s
        if length < 60:
            continue
        base = _coast_to_image(scene, edge, np.array([[t, d_shore + 14]]))[0]
        head = width * rng.uniform(2.5, 4) if rng.random() < 0.4 else 0
        pier = _place_local(_pier(length + 14, width, head), base[0], base[1], seaward)
        if not scene.place(HARBOR, pier, _jitter((150, 146, 136), rng, 8), [("lines", pier, (110, 108, 102), 1, True)],
                           ON_ANY):
            continue
        quay = length + 14 - (width if head else 0)  # ships stay clear of a T head
        for side in (-1, 1):  # ships moored along both sides of the pier
            u = 14 + rng.uniform(10, 30)
            while True:
                ship_len = rng.uniform(30, 100) * s
                ship_w = ship_len * rng.uniform(0.16, 0.22)
                if u + ship_len > quay:
                    break
                off = side * (width / 2 + ship_w / 2 + 3)
                cx, cy = _place_local(np.array([[u + ship_len / 2, off]]), base[0], base[1], seaward)[0]
                _ship_at(scene, cx, cy, seaward + (math.pi if rng.random() < 0.5 else 0), ship_len, ship_w)
                u += ship_len + rng.uniform(6, 30)
    water = np.argwhere(scene.ground[::8, ::8] == WATER) * 8
    for _ in range(int(rng.integers(2, 8)) if len(water) else 0):
        y, x = water[int(rng.integers(len(water)))]
        ship_len = rng.uniform(30, 140) * s
        _ship_at(scene, x, y, rng.uniform(0, 2 * math.pi), ship_len, ship_len * rng.uniform(0.15, 0.2))


def _ship_at(scene: Scene, x: float, y: float, angle: float, length: float, width: float) -> bool:
    rng = scene.rng
    cabin = _place_local(_rect(length * 0.2, width * 0.6) - (length * 0.22, 0), x, y, angle)
    hull = [(230, 230, 226), (170, 60, 50), (60, 70, 90), (200, 200, 190)][int(rng.integers(4))]
    return scene.place(SHIP, _place_local(_ship(length, width), x, y, angle), hull,
                       [("fill", cabin, (245, 245, 245))], ON_WATER)


def _roundabouts(scene: Scene, roads: list[Road]) -> None:
    """One or two C-shaped rings on road crossings (tried in random order until placed), island inside."""
    rng = scene.rng
    crossings = [(v, h) for v in roads if v.vertical for h in roads if not h.vertical]
    wanted, placed = int(rng.integers(1, 3)), 0
    for k in rng.permutation(len(crossings)):
        v, h = crossings[int(k)]
        outer = max(v.width, h.width) * rng.uniform(1.4, 1.9)
        inner = outer * rng.uniform(0.5, 0.62)
        gap, turn = rng.uniform(0.7, 1.2), rng.uniform(0, 2 * math.pi)
        ring = _place_local(_c_ring(outer, inner, gap), v.pos, h.pos, turn)
        t = np.linspace(gap / 2 + 0.1, 2 * math.pi - gap / 2 - 0.1, 24)
        mid = _place_local(np.stack([np.cos(t), np.sin(t)], axis=1) * (outer + inner) / 2, v.pos, h.pos, turn)
        if scene.place(ROUNDABOUT, ring, (128, 128, 126), [("lines", mid, (200, 200, 196), 1, False)], NOT_WATER):
            island = np.rint(_ngon(inner - 1, 24) + (v.pos, h.pos)).astype(np.int32)
            cv2.fillPoly(scene.rgb, [island], (92, 130, 70))
            cv2.fillPoly(scene.ground, [island], RESERVED)
            placed += 1
            if placed == wanted:
                return


def _farmland(scene: Scene, block: Block) -> None:
    """Spare blocks: strips of fields, or houses."""
    rng = scene.rng
    if rng.random() < 0.35:
        _kind_residential(scene, block, objects=False)
        return
    canvas = scene.block_canvas(block, FARM[0])
    horizontal = rng.random() < 0.5
    side = block.h if horizontal else block.w
    t = 0
    while t < side:
        width = int(rng.uniform(40, 160))
        colour = _jitter(FARM[int(rng.integers(len(FARM)))], rng, 6)
        if horizontal:
            canvas[t : t + width] = colour
        else:
            canvas[:, t : t + width] = colour
        t += width
    scene.paint_block(block, canvas)


# ---------------------------------------------------------------------------------------------- one image


@dataclass(frozen=True)
class _Job:
    root: str
    split: str
    number: int  # the P number
    position: int  # index within the split
    scale: str
    seed: int
    geotiff: bool
    patches: bool


def _image_size(scale: DemoScale, position: int, rng: np.random.Generator) -> tuple[int, int]:
    if scale.fixed_sizes:
        return scale.fixed_sizes[position % len(scale.fixed_sizes)]
    lo, hi = math.log(scale.min_side), math.log(scale.max_side)
    return int(math.exp(rng.uniform(lo, hi))), int(math.exp(rng.uniform(lo, hi)))


def _kinds_for(seed: int, number: int, rng: np.random.Generator) -> list[str]:
    """Two kinds dealt from a seeded shuffle (every 9 kinds across consecutive images) plus 0-2 at random."""
    order = np.random.default_rng([seed, 0x5CE7E]).permutation(len(KINDS))
    dealt = [KINDS[order[(2 * number + i) % len(KINDS)]] for i in range(2)]
    rest = [k for k in KINDS if k not in dealt]
    extra = rng.choice(len(rest), size=int(rng.integers(0, 3)), replace=False)
    return dealt + [rest[i] for i in sorted(extra)]


def render_scene(width: int, height: int, kinds: Sequence[str], target: int, rng: np.random.Generator) -> Scene:
    """Draw one scene with roughly `target` objects of the given kinds (vehicles make up the count)."""
    scene = Scene(width, height, rng, gsd=rng.uniform(0.85, 1.2))
    scene.rgb[:] = _smooth_field(width, height, rng, TERRAIN, int(rng.uniform(250, 450)))
    roads = _layout_roads(scene)
    blocks = _blocks(scene, roads)
    assigned = _assign_blocks(scene, blocks, kinds)
    crossings = [(v.pos, h.pos) for v in roads if v.vertical for h in roads if not h.vertical]
    score = _water_score(assigned, crossings if "roundabout" in kinds else [])
    river = _layout_river(scene, score) if "river" in kinds else None
    coast = _layout_coast(scene, score) if "harbour" in kinds else None
    _paint_roads(scene, roads)
    _paint_water(scene)
    if "roundabout" in kinds:
        _roundabouts(scene, roads)
    if river:
        _bridges(scene, river)
    if coast:
        _harbour(scene, coast)
    painters = {"fields": _kind_fields, "airport": _kind_airport, "tanks": _kind_tanks, "courts": _kind_courts,
                "residential": _kind_residential, "parking": _kind_parking}
    for block in assigned:
        painters[block.kind](scene, block)
    lots = [b for b in assigned if b.kind == "parking"]
    spare = sorted((b for b in blocks if not b.kind), key=lambda b: -b.w * b.h)
    budget = max(target - len(scene.objects), 4)
    road_share = int(budget * rng.uniform(0.15, 0.35)) if lots or spare else budget
    while spare and sum(len(b.stalls) for b in lots) < (budget - road_share) * 1.1:
        lot = spare.pop(0)
        lot.kind = "parking"
        _kind_parking(scene, lot)
        lots.append(lot)
    _fill_lots(scene, lots, budget - road_share)
    _road_vehicles(scene, roads, max(target - len(scene.objects), 0))
    for block in spare:
        _farmland(scene, block)
    return scene


def _render_job(job: _Job) -> dict:
    scale = SCALES[job.scale]
    rng = np.random.default_rng([job.seed, job.number])
    width, height = _image_size(scale, job.position, rng)
    kinds = _kinds_for(job.seed, job.number, rng)
    target = scale.objects_per_mpx * width * height / 1e6 * rng.lognormal(-0.08, 0.4)
    scene = render_scene(width, height, kinds, int(min(target, MAX_OBJECTS)), rng)

    stem = f"P{job.number:04d}"
    folder = Path(job.root) / job.split / "images"
    folder.mkdir(parents=True, exist_ok=True)
    base = (job.number + 1) * ID_STRIDE
    ids = base + np.arange(len(scene.objects) + 1)
    ids[0] = 0
    id_lut = np.stack([ids >> 16, (ids >> 8) & 255, ids & 255], axis=1).astype(np.uint8)  # B, G, R
    colour_lut = np.array([(0, 0, 0)] + [CLASS_COLOR[cat][::-1] for cat, _ in scene.objects], dtype=np.uint8)
    painted = np.flatnonzero(scene.owner)  # objects cover a small share of the pixels
    owners = scene.owner.ravel()[painted]
    id_bgr, colour_bgr = np.zeros_like(scene.rgb), np.zeros_like(scene.rgb)
    id_bgr.reshape(-1, 3)[painted] = id_lut[owners]
    colour_bgr.reshape(-1, 3)[painted] = colour_lut[owners]
    image_bgr = cv2.cvtColor(scene.rgb, cv2.COLOR_RGB2BGR)
    png = [cv2.IMWRITE_PNG_COMPRESSION, PNG_LEVEL]
    if job.geotiff:
        file_name = f"{stem}.tif"
        _write_geotiff(folder / file_name, scene.rgb, np.random.default_rng([job.seed, job.number, 1]), scene.gsd)
    else:
        file_name = f"{stem}.png"
        cv2.imwrite(str(folder / file_name), image_bgr, png)
    cv2.imwrite(str(folder / f"{stem}_instance_id_RGB.png"), id_bgr, png)
    cv2.imwrite(str(folder / f"{stem}_instance_color_RGB.png"), colour_bgr, png)

    areas = np.bincount(owners, minlength=len(scene.objects) + 1)
    anns = []
    for k, (cat, pts) in enumerate(scene.objects, 1):
        (x0, y0), (x1, y1) = pts.min(axis=0), pts.max(axis=0)
        anns.append({"id": base + k, "image_id": job.number, "category_id": cat,
                     "segmentation": [pts.reshape(-1).tolist()], "area": int(areas[k]),
                     "bbox": [int(x0), int(y0), int(x1 - x0), int(y1 - y0)], "iscrowd": 0})
    result = {"split": job.split, "image": {"id": job.number, "file_name": file_name, "width": width, "height": height},
              "annotations": anns}
    if job.patches:
        result["patches"] = _write_patches(Path(job.root) / "patches" / job.split / "images", stem, scene,
                                           image_bgr, id_bgr, colour_bgr)
    return result


def _write_geotiff(path: Path, rgb: np.ndarray, rng: np.random.Generator, gsd: float) -> None:
    import rasterio
    from rasterio.transform import Affine

    pixel = round(0.5 / gsd, 3)
    x0, y0 = float(rng.integers(300_000, 700_000)), float(rng.integers(4_500_000, 5_500_000))
    profile = {"driver": "GTiff", "width": rgb.shape[1], "height": rgb.shape[0], "count": 3, "dtype": "uint8",
               "crs": "EPSG:32633", "transform": Affine(pixel, 0, x0, 0, -pixel, y0), "compress": "deflate",
               "predictor": 2, "tiled": True, "blockxsize": 512, "blockysize": 512, "photometric": "RGB"}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.moveaxis(rgb, -1, 0))


def _write_patches(folder: Path, stem: str, scene: Scene, image_bgr, id_bgr, colour_bgr) -> list[dict]:
    """The devkit's 800/200 patches of one image and their contour polygons."""
    folder.mkdir(parents=True, exist_ok=True)
    h, w = scene.owner.shape
    windows = tile_windows(w, h)
    whole = len(windows) == 1 and (windows[0].width, windows[0].height) == (w, h)
    boxes = np.array([np.concatenate([p.min(axis=0), p.max(axis=0)]) for _, p in scene.objects]).reshape(-1, 4)
    png = [cv2.IMWRITE_PNG_COMPRESSION, PNG_LEVEL]
    out = []
    for win in windows:
        name = patch_name(stem, win, whole)
        sl = np.s_[win.y0 : win.y1, win.x0 : win.x1]
        cv2.imwrite(str(folder / f"{name}.png"), image_bgr[sl], png)
        cv2.imwrite(str(folder / f"{name}_instance_id_RGB.png"), id_bgr[sl], png)
        cv2.imwrite(str(folder / f"{name}_instance_color_RGB.png"), colour_bgr[sl], png)
        hits = np.flatnonzero((boxes[:, 0] < win.x1) & (boxes[:, 2] >= win.x0) & (boxes[:, 1] < win.y1)
                              & (boxes[:, 3] >= win.y0))
        anns = []
        for i in hits:
            k = int(i) + 1
            ix0, iy0 = max(int(boxes[i, 0]), win.x0), max(int(boxes[i, 1]), win.y0)
            ix1, iy1 = min(int(boxes[i, 2]) + 1, win.x1), min(int(boxes[i, 3]) + 1, win.y1)
            mask = (scene.owner[iy0:iy1, ix0:ix1] == k).astype(np.uint8)
            if not mask.any():
                continue
            contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE,
                                           offset=(ix0 - win.x0, iy0 - win.y0))
            if not contours or min(len(c) for c in contours) <= 2:  # the devkit: a flat list of <= 4 numbers
                continue
            polys = [c.reshape(-1, 2) for c in contours]
            allpts = np.concatenate(polys)
            (x0, y0), (x1, y1) = allpts.min(axis=0), allpts.max(axis=0)
            anns.append({"category_id": scene.objects[i][0], "segmentation": [p.reshape(-1).tolist() for p in polys],
                         "area": int(mask.sum()), "bbox": [int(x0), int(y0), int(x1 - x0), int(y1 - y0)], "iscrowd": 0})
        out.append({"file_name": f"{name}.png", "width": win.width, "height": win.height, "annotations": anns})
    return out


# ---------------------------------------------------------------------------------------------- datasets


def _numbering(scale: DemoScale) -> dict[str, range]:
    """P numbers of each split: train first, then val, so names never collide across splits."""
    out, start = {}, 0
    for split, n in scale.split_counts().items():
        out[split] = range(start, start + n)
        start += n
    return out


def _coco(images: list[dict], annotations: list[dict]) -> bytes:
    categories = [{"id": c.id, "name": c.name} for c in ISAID_CATEGORIES]
    doc = {"images": images, "annotations": annotations, "categories": categories}
    return json.dumps(doc, separators=(",", ":")).encode()


def _check(images: list[dict], annotations: list[dict]) -> None:
    """Refuse to write a file the readers would quarantine: short polygons, points outside, duplicate ids."""
    size = {im["id"]: (im["width"], im["height"]) for im in images}
    seen: set[int] = set()
    for ann in annotations:
        if ann["id"] in seen:
            raise AssertionError(f"duplicate annotation id {ann['id']}")
        seen.add(ann["id"])
        w, h = size[ann["image_id"]]
        for poly in ann["segmentation"]:
            pts = np.asarray(poly).reshape(-1, 2)
            if len(pts) < 3 or pts.min() < 0 or pts[:, 0].max() > w - 1 or pts[:, 1].max() > h - 1:
                raise AssertionError(f"annotation {ann['id']}: polygon with < 3 points or outside its image")


def _write_json(path: Path, images: list[dict], annotations: list[dict]) -> None:
    _check(images, annotations)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_coco(images, annotations))


def _init_worker() -> None:
    cv2.setNumThreads(1)


def generate(root: Path, scale: str = "tiny", seed: int = 0, splits: Sequence[str] = ("train", "val"),
             geotiff: bool = False, patches: bool = False, workers: int = 1, progress: bool = True) -> dict:
    """Write a synthetic iSAID-format dataset under `root`; returns {split: {"images": n, "instances": m}}
    (plus "patches" and "patch_instances" with `patches=True`)."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {', '.join(SCALES)}, not {scale!r}")
    numbering = _numbering(SCALES[scale])
    unknown = [s for s in splits if s not in numbering]
    if unknown:
        raise ValueError(f"unknown split(s) {unknown}; the demo data has {', '.join(numbering)}")
    root = Path(root)
    _mark_synthetic(root, scale, seed)
    jobs = [_Job(str(root), split, number, position, scale, seed, geotiff, patches)
            for split in splits for position, number in enumerate(numbering[split])]
    results: dict[str, list[dict]] = {split: [] for split in splits}
    bar = tqdm(total=len(jobs), desc=f"demo data ({scale})", unit="img", disable=not progress)
    if workers > 1:
        # spawn, not fork: a forked child inherits OpenCV's thread pool half-locked and can hang
        with get_context("spawn").Pool(workers, initializer=_init_worker) as pool:
            for res in pool.imap(_render_job, jobs):
                results[res["split"]].append(res)
                bar.update()
    else:
        for job in jobs:
            res = _render_job(job)
            results[res["split"]].append(res)
            bar.update()
    bar.close()

    counts = {}
    for split, items in results.items():
        images = [r["image"] for r in items]
        annotations = [a for r in items for a in r["annotations"]]
        _write_json(root / split / "Annotations" / f"iSAID_{split}.json", images, annotations)
        counts[split] = {"images": len(images), "instances": len(annotations)}
        if patches:
            p_images, p_anns = [], []
            for r in items:
                for patch in r["patches"]:
                    pid = len(p_images) + 1
                    p_images.append({"id": pid, "file_name": patch["file_name"], "width": patch["width"],
                                     "height": patch["height"]})
                    for ann in patch["annotations"]:
                        p_anns.append({"id": len(p_anns) + 1, "image_id": pid, **ann})
            _write_json(root / "patches" / split / "Annotations" / f"iSAID_{split}.json", p_images, p_anns)
            counts[split].update(patches=len(p_images), patch_instances=len(p_anns))
    return counts


MARKER = "SYNTHETIC.json"  # written first into every root `generate` fills: data from it is synthetic


def _mark_synthetic(root: Path, scale: str, seed: int) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / MARKER).write_text(json.dumps({"generator": "geopixeld pipeline.synthetic.isaid", "scale": scale,
                                           "seed": seed}) + "\n")


def is_synthetic_root(root: Path) -> bool:
    """Whether `root` was written by `generate` (it carries the marker), so builds from it say they are synthetic."""
    return (Path(root) / MARKER).is_file()


def ensure_source(root: Path, splits: list[str], synthetic: str | None, log=print) -> bool:
    """Make sure the source exists; returns whether it is synthetic.

    `synthetic` (a scale) generates the demo set, but only into a root that does not exist yet or that
    `generate` made (it lacks a split): never into a folder of other data, so a misspelt root is never silently
    filled with demo data. Without `synthetic` a missing root is an error naming it."""
    root = Path(root)
    marked = is_synthetic_root(root)
    if synthetic is None:
        if not root.is_dir():
            raise FileNotFoundError(f"source.root {root}: no such folder (source.synthetic: tiny|small generates "
                                    "the demo set into a new folder)")
        return marked  # the reader names what is missing
    missing = [s for s in splits if not ((root / s / "Annotations").is_dir() or (root / s / "images").is_dir())]
    if missing and root.exists() and not marked:
        raise FileExistsError(f"source.root {root}: exists and holds no split {', '.join(missing)}, and is not a "
                              "synthetic set geopixeld made; source.synthetic generates only into a new folder "
                              "(set it to null to read real data)")
    if missing:
        log(f"generating the {synthetic} synthetic iSAID-format dataset in {root}")
        generate(root, scale=synthetic, splits=tuple(missing), progress=False)
    return True  # asked for the demo set: the build is synthetic
