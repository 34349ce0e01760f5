"""The adaptive image divider and the image-token layout of InternLM-XComposer-2.5."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.config import VisionConfig, build_config
from model.samples import prepare_images
from model.vision import VisionTower, hd_grid, image_token_count

pytestmark = pytest.mark.usefixtures("gp_one_thread")

FULL = VisionConfig()


@pytest.mark.parametrize("w,h,expected", [
    (800, 800, (1680, 1680, 3, 3)),  # a GeoPixelD patch: 3x3 tiles of 560 px
    (800, 400, (1680, 840, 3, 2)),  # 2:1 -> 3 columns, 840 px of content padded to 2 rows
    (400, 800, (840, 1680, 2, 3)),  # portrait: the same, transposed
    (347, 800, (728, 1680, 2, 3)),  # narrow strip: 3 tiles along the long side, 728 px padded to 2 tiles
    (200, 200, (560, 560, 1, 1)),  # small images still get one whole tile
    (1600, 1600, (1680, 1680, 3, 3)),  # never more than hd_num = 9 tiles
])
def test_divider_grid(w, h, expected):
    new_w, new_h, cols, rows = hd_grid(w, h, FULL)
    assert (new_w, new_h, cols, rows) == expected
    assert cols * rows <= FULL.hd_num


def test_token_count_of_an_800px_patch():
    # (9 tiles + global view) x 20x20 merged tokens, one view separator, a row separator per token row
    assert image_token_count(3, 3, FULL) == 10 * 400 + 1 + 4 * 20 == 4081


def test_prepared_images_padded_white_and_centred():
    cfg = build_config("tiny")
    rgb = np.zeros((400, 800, 3), np.uint8)  # black, 2:1
    hd, sam, n = prepare_images(rgb, cfg)
    t = cfg.vision.tile_size
    new_w, content, cols, rows = hd_grid(800, 400, cfg.vision)
    assert (cols, rows) == (4, 2) and new_w == 4 * t and content == 2 * t  # 56 px tiles: 4 across at 2:1
    assert hd.shape == (3, rows * t, cols * t) and hd.dtype == torch.uint8
    assert sam.shape == (3, cfg.sam.image_size, cfg.sam.image_size)
    assert n == image_token_count(rows, cols, cfg.vision)
    rgb = np.zeros((300, 800, 3), np.uint8)  # 8:3 -> content shorter than the padded rows
    hd, _, _ = prepare_images(rgb, cfg)
    _, content, cols, rows = hd_grid(800, 300, cfg.vision)
    column = hd[0, :, t].tolist()
    top = (rows * t - content) // 2
    assert 0 < top and set(column[:top]) == {255} and set(column[top:top + content]) == {0}
    assert set(column[top + content:]) == {255}


def test_tower_layout_and_separators():
    cfg = build_config("tiny").vision
    torch.manual_seed(0)
    tower = VisionTower(cfg).eval()
    c4 = 4 * cfg.hidden_size
    glb = torch.full((1, 1, c4), 7.0)
    sub = torch.full((1, 1, 1, c4), -3.0)
    imgs = [torch.randn(3, 2 * cfg.tile_size, 3 * cfg.tile_size), torch.randn(3, cfg.tile_size, cfg.tile_size)]
    with torch.no_grad():
        out = tower(imgs, glb, sub)
    g = cfg.merged_grid
    assert [o.shape for o in out] == [(image_token_count(2, 3, cfg), c4), (image_token_count(1, 1, cfg), c4)]
    first = out[0]
    # global view: g rows of (g tokens + a row separator), then the view separator, then the tile rows
    glb_rows = first[: g * (g + 1)].reshape(g, g + 1, c4)
    assert torch.all(glb_rows[:, -1] == -3.0) and not torch.any(glb_rows[:, :-1] == -3.0)
    assert torch.all(first[g * (g + 1)] == 7.0)
    tiles = first[g * (g + 1) + 1:].reshape(2 * g, 3 * g + 1, c4)
    assert torch.all(tiles[:, -1] == -3.0)
    # a tile's merged token is the 2x2 block of its patch features (first tile, top-left token)
    with torch.no_grad():
        feats = tower.clip(pixel_values=imgs[0][:, : cfg.tile_size, : cfg.tile_size][None]).last_hidden_state[0, 1:]
    p = cfg.tile_size // cfg.patch_size
    block = feats.reshape(p, p, -1)[:2, :2].reshape(-1)
    torch.testing.assert_close(tiles[0, 0], block, atol=1e-5, rtol=1e-5)
