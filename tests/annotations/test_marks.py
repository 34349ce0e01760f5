"""Set-of-marks placement and drawing: marks sit on their objects, never overlap, and render as specified."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from annotations.marks import mark_box, place_marks, render_som
from pipeline.contracts.config import MarkConfig
from pipeline.contracts.records import Mark

CFG = MarkConfig()
HW = (800, 800)


def crop(mask: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """A patch-sized mask -> (tight crop, (x0, y0)), as the planner hands objects over."""
    ys, xs = np.nonzero(mask)
    y0, x0 = ys.min(), xs.min()
    return mask[y0 : ys.max() + 1, x0 : xs.max() + 1], (int(x0), int(y0))


def obj(number: int, object_id: int, mask: np.ndarray):
    c, xy = crop(mask)
    return number, object_id, c, xy


def rect(x0: int, y0: int, x1: int, y1: int, hw=HW) -> np.ndarray:
    m = np.zeros(hw, dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def square_of(m: Mark, cfg: MarkConfig = CFG) -> tuple[int, int, int, int]:
    w, h = mark_box(m.number, cfg)
    left, top = m.x - w // 2, m.y - h // 2
    return left, top, left + w, top + h


def gap_ok(a, b) -> bool:
    """At least one free pixel between two squares (right/bottom exclusive)."""
    return a[2] < b[0] or b[2] < a[0] or a[3] < b[1] or b[3] < a[1]


def square_inside(mask: np.ndarray, m: Mark) -> bool:
    left, top, right, bottom = square_of(m)
    return left >= 0 and top >= 0 and bool(mask[top:bottom, left:right].all())


def test_convex_rectangle_mark_near_centre():
    mask = rect(200, 300, 300, 360)
    marks, unplaced = place_marks([obj(1, 11, mask)], HW, CFG)
    assert unplaced == []
    (m,) = marks
    assert (m.number, m.object_id, m.size) == (1, 11, mark_box(1, CFG)[0])
    assert abs(m.x - 249.5) <= 1 and abs(m.y - 329.5) <= 1
    assert square_inside(mask, m)


def test_u_shape_mark_on_arm_not_centroid():
    mask = rect(100, 100, 300, 300)
    mask[100:240, 160:240] = False  # opening at the top; arms and base 60 px thick
    ys, xs = np.nonzero(mask)
    assert not mask[round(ys.mean()), round(xs.mean())]  # the naive centroid misses the object
    (m,), unplaced = place_marks([obj(3, 5, mask)], HW, CFG)
    assert unplaced == []
    assert mask[m.y, m.x]
    assert square_inside(mask, m)


def test_ring_mark_on_band_not_in_hole():
    mask = np.zeros(HW, dtype=np.uint8)
    cv2.circle(mask, (400, 400), 80, 1, -1)
    cv2.circle(mask, (400, 400), 40, 0, -1)
    mask = mask.astype(bool)
    assert not mask[400, 400]
    (m,), _ = place_marks([obj(1, 1, mask)], HW, CFG)
    assert mask[m.y, m.x]
    assert 50 <= np.hypot(m.x - 400, m.y - 400) <= 70  # mid-band, the farthest from both edges
    assert square_inside(mask, m)


def test_adjacent_small_objects_do_not_collide():
    a, b = rect(100, 100, 120, 120), rect(120, 100, 140, 120)  # naive centres 20 px apart, squares 24 px
    marks, unplaced = place_marks([obj(1, 1, a), obj(2, 2, b)], HW, CFG)
    assert unplaced == []
    assert [m.object_id for m in marks] == [1, 2]
    assert a[marks[0].y, marks[0].x] and b[marks[1].y, marks[1].x]
    assert gap_ok(square_of(marks[0]), square_of(marks[1]))


def test_crowded_patch_no_overlap_and_centres_on_masks():
    rng = np.random.default_rng(0)
    masks = []
    for _ in range(20):
        m = np.zeros(HW, dtype=np.uint8)
        centre = (int(rng.integers(250, 450)), int(rng.integers(250, 450)))
        axes = (int(rng.integers(8, 40)), int(rng.integers(8, 40)))
        cv2.ellipse(m, centre, axes, float(rng.integers(0, 180)), 0, 360, 1, -1)
        masks.append(m.astype(bool))
    masks.sort(key=lambda m: -int(m.sum()))  # largest first, as the caller does
    objects = [obj(k + 1, 100 + k, m) for k, m in enumerate(masks)]

    marks, unplaced = place_marks(objects, HW, CFG)

    assert sorted([m.object_id for m in marks] + unplaced) == [100 + k for k in range(20)]
    assert len(marks) >= 15  # crowded, but there is room for most
    for m in marks:
        assert masks[m.object_id - 100][m.y, m.x]
    squares = [square_of(m) for m in marks]
    for i in range(len(squares)):
        for j in range(i + 1, len(squares)):
            assert gap_ok(squares[i], squares[j]), (marks[i], marks[j])
    # The scene does force detours: marking each ellipse at its own pole would have collided.
    poles = [place_marks([o], HW, CFG)[0][0] for o in objects]
    assert any(not gap_ok(square_of(p), square_of(q)) for i, p in enumerate(poles) for q in poles[i + 1 :])


def test_object_covered_by_earlier_mark_is_unplaced():
    big, covered, free = rect(0, 0, 100, 100), rect(47, 47, 53, 53), rect(300, 300, 330, 330)
    marks, unplaced = place_marks([obj(1, 1, big), obj(2, 2, covered), obj(3, 3, free)], HW, CFG)
    assert unplaced == [2]
    assert [m.object_id for m in marks] == [1, 3]


def test_tiny_object_gets_its_centre_pixel():
    (m,), unplaced = place_marks([obj(4, 9, rect(500, 600, 503, 603))], HW, CFG)
    assert unplaced == [] and (m.x, m.y) == (501, 601)


def test_prefers_a_spot_whose_square_fits_in_the_patch():
    band = rect(0, 0, 60, 20)  # thickest part hugs the top border: a square there would stick out
    stem = rect(20, 20, 34, 80)
    mask = band | stem
    (m,), _ = place_marks([obj(1, 1, mask)], HW, CFG)
    assert mask[m.y, m.x]
    left, top, right, bottom = square_of(m)
    assert left >= 0 and top >= 0 and right <= HW[1] and bottom <= HW[0]


def test_falls_back_to_a_square_crossing_the_border():
    strip = rect(0, 100, 4, 200)  # too thin for any square inside the patch
    (m,), unplaced = place_marks([obj(1, 1, strip)], HW, CFG)
    assert unplaced == [] and strip[m.y, m.x]


def test_uint8_masks_and_offsets_are_honoured():
    mask = rect(300, 200, 340, 260)
    c, (x0, y0) = crop(mask)
    as_bool = place_marks([(1, 1, c, (x0, y0))], HW, CFG)
    as_u8 = place_marks([(1, 1, c.astype(np.uint8) * 255, (x0, y0))], HW, CFG)
    assert as_bool == as_u8
    shifted = place_marks([(1, 1, c, (x0 + 10, y0 - 5))], HW, CFG)[0][0]
    assert (shifted.x, shifted.y) == (as_bool[0][0].x + 10, as_bool[0][0].y - 5)


def test_mark_box_widens_for_more_digits():
    one, two, three = mark_box(7, CFG), mark_box(42, CFG), mark_box(123, CFG)
    assert one == (CFG.box, CFG.box)
    assert CFG.box < two[0] < three[0]
    assert two[1] == three[1] == CFG.box
    for n, (w, _) in ((7, one), (42, two), (123, three)):
        (tw, _), _ = cv2.getTextSize(str(n), cv2.FONT_HERSHEY_SIMPLEX, CFG.font_scale, 1)
        assert tw < w
    assert mark_box(42, MarkConfig(box=40)) == (40, 40)  # widened only when needed


def test_render_som_draws_grid_squares_and_digits():
    cfg = MarkConfig(grid_color=(255, 0, 0))  # red, to catch an RGB/BGR swap
    image = np.full((300, 300, 3), 100, dtype=np.uint8)
    before = image.copy()
    marks = [Mark(7, 1, 50, 50, 24), Mark(12, 2, 250, 150, mark_box(12, cfg)[0])]

    out = render_som(image, marks, cfg)

    assert np.array_equal(image, before)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert (out[10, 100] == (255, 0, 0)).all() and (out[100, 10] == (255, 0, 0)).all()
    assert (out[290, 200] == (255, 0, 0)).all() and (out[200, 290] == (255, 0, 0)).all()
    assert (out[150, 150] == 100).all()  # off the lines, off the marks
    for m in marks:
        left, top, right, bottom = square_of(m, cfg)
        box = out[top:bottom, left:right].astype(int)
        assert (box[0, 0] == 0).all() and (box[-1, -1] == 0).all()  # black corners
        assert (box[..., 2] == 0).all() and (box[..., 0] == box[..., 1]).all()  # only black..yellow inside
        assert ((box[..., 0] > 200) & (box[..., 1] > 200)).sum() >= 5  # the digits
        assert (out[top - 1, m.x] == 100).all() and (out[m.y, right] == 100).all()  # exactly the box size


def test_render_som_without_grid_and_bad_input():
    image = np.full((90, 90, 3), 100, dtype=np.uint8)
    out = render_som(image, [], MarkConfig(draw_grid=False))
    assert np.array_equal(out, image) and out is not image
    with pytest.raises(ValueError):
        render_som(np.zeros((90, 90), dtype=np.uint8), [], CFG)
