"""Exact geometry of the two mosaic conventions (face-anchored n x n blocks, image-anchored block size)."""

import cv2
import numpy as np
import pytest

from depixcli.errors import ConfigError
from depixcli.geometry.boxes import scale_box
from depixcli.geometry.mosaic import (
    MosaicGrid,
    apply_mosaic,
    apply_mosaics,
    cell_index,
    grid_from_block_size,
    grid_from_blocks,
)


def _frame(h=120, w=160, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def _cells(grid, shape):
    """(rows, cols) cell index arrays of the clipped rect, and the clipped rect."""
    H, W = shape[:2]
    x0, y0, x1, y1 = max(grid.x0, 0), max(grid.y0, 0), min(grid.x1, W), min(grid.y1, H)
    rows = cell_index(y0, y1, grid.origin_y, grid.cell_h)
    cols = cell_index(x0, x1, grid.origin_x, grid.cell_w)
    return rows, cols, (x0, y0, x1, y1)


def _check_cells(src, out, grid):
    """Every cell constant; mean mode: equal to the rounded source mean of the cell's pixels."""
    ry, rx, (x0, y0, x1, y1) = _cells(grid, src.shape)
    n = 0
    for cy in np.unique(ry):
        for cx in np.unique(rx):
            ys, xs = y0 + np.flatnonzero(ry == cy), x0 + np.flatnonzero(rx == cx)
            block = out[np.ix_(ys, xs)].reshape(-1, 3)
            assert (block == block[0]).all(), f"cell {cy},{cx} not constant"
            ref = src[np.ix_(ys, xs)].reshape(-1, 3)
            if grid.mode == "mean":
                np.testing.assert_array_equal(block[0], np.floor(ref.astype(np.float64).mean(0) + 0.5))
            else:
                assert any((block[0] == r).all() for r in ref)
            n += 1
    return n


def _outside_untouched(src, out, grid):
    _, _, (x0, y0, x1, y1) = _cells(grid, src.shape)
    mask = np.ones(src.shape[:2], bool)
    mask[y0:y1, x0:x1] = False
    np.testing.assert_array_equal(out[mask], src[mask])


@pytest.mark.parametrize("n", [8, 16])
@pytest.mark.parametrize("box", [(20, 10, 84, 74), (13.4, 7.6, 101.2, 95.9), (-20.0, 30.0, 60.0, 150.0)])
def test_blocks_grid_exact(n, box):
    src = _frame()
    grid = grid_from_blocks(box, n)
    out = apply_mosaic(src, grid)
    ncells = _check_cells(src, out, grid)
    _outside_untouched(src, out, grid)
    assert grid.x0 == round(box[0]) and grid.x1 == round(box[2])
    assert grid.cell_w == pytest.approx((grid.x1 - grid.x0) / n)
    inside = box[0] >= 0 and box[3] <= src.shape[0]
    if inside:
        assert ncells == n * n
    assert not np.array_equal(out, src)


def test_blocks_match_opencv_area_nearest():
    src = _frame(200, 240, seed=1)
    for n, x0, y0, size in [(16, 30, 20, 128), (8, 50, 40, 96), (16, 0, 0, 192)]:
        grid = grid_from_blocks((x0, y0, x0 + size, y0 + size), n)
        roi = src[y0:y0 + size, x0:x0 + size]
        small = cv2.resize(roi, (n, n), interpolation=cv2.INTER_AREA)
        ref = cv2.resize(small, (size, size), interpolation=cv2.INTER_NEAREST)
        out = apply_mosaic(src, grid)[y0:y0 + size, x0:x0 + size]
        diff = np.abs(out.astype(int) - ref.astype(int))
        # OpenCV's rounding of exact .5 means is not consistent across scale factors: allow 1 there only
        means = roi.reshape(n, size // n, n, size // n, 3).astype(np.float64).mean((1, 3))
        tie = np.repeat(np.repeat((means % 1) == 0.5, size // n, 0), size // n, 1)
        assert diff[~tie].max() == 0
        assert diff.max() <= 1


def test_block_size_grid_image_anchored():
    src = _frame(121, 163, seed=2)
    px = 10
    grid = grid_from_block_size((33.2, 47.9, 91.0, 100.5), px)
    assert (grid.x0, grid.y0, grid.x1, grid.y1) == (30, 40, 100, 110)
    assert grid.origin_x == 0 and grid.origin_y == 0
    out = apply_mosaic(src, grid)
    assert _check_cells(src, out, grid) == 7 * 7
    _outside_untouched(src, out, grid)
    # cell boundaries at multiples of px: each px x px aligned block constant, neighbours differ
    roi = out[40:110, 30:100].astype(int)
    for k in range(7):
        blk = roi[:, k * px:(k + 1) * px]
        assert (blk == blk[:, :1]).all()
    assert (np.abs(np.diff(roi, axis=1))[:, [px * k - 1 for k in range(1, 7)]].sum(2) > 0).mean() > 0.9
    inner = [c for c in range(69) if (c + 1) % px != 0]
    assert np.abs(np.diff(roi, axis=1))[:, inner].max() == 0


def test_block_size_same_lines_for_any_box():
    """Two boxes mosaicked with the same block size share the grid lines (image-anchored, like ffmpeg)."""
    a = grid_from_block_size((5, 5, 40, 40), 8)
    b = grid_from_block_size((17, 29, 70, 77), 8)
    for g in (a, b):
        assert g.x0 % 8 == 0 and g.y0 % 8 == 0 and g.x1 % 8 == 0 and g.y1 % 8 == 0


def test_frame_border_partial_cells():
    src = _frame(100, 100, seed=3)
    grid = grid_from_block_size((85, -7, 140, 30), 12)  # runs past right and top border
    out = apply_mosaic(src, grid)
    _check_cells(src, out, grid)
    _outside_untouched(src, out, grid)
    # the last visible column range [96, 100) is a partial cell: constant, mean of visible pixels only
    part = src[0:12, 96:100].astype(np.float64).mean((0, 1))
    np.testing.assert_array_equal(out[5, 98], np.floor(part + 0.5))
    # grid entirely outside: frame unchanged (a copy)
    off = apply_mosaic(src, grid_from_blocks((200, 200, 260, 260), 8))
    assert off is not src and np.array_equal(off, src)


def test_center_mode_samples_cell_centre():
    src = _frame(64, 64, seed=4)
    grid = grid_from_blocks((0, 0, 64, 64), 8, mode="center")
    out = apply_mosaic(src, grid)
    _check_cells(src, out, grid)
    for cy in range(8):
        for cx in range(8):
            np.testing.assert_array_equal(out[cy * 8, cx * 8], src[cy * 8 + 4, cx * 8 + 4])


def test_fractional_cells_and_gray():
    src = _frame(90, 90, seed=5)[:, :, 0]
    grid = grid_from_blocks((3, 4, 76, 81), 16)  # 73 / 16 and 77 / 16 px cells
    out = apply_mosaic(src, grid)
    assert out.shape == src.shape and out.dtype == np.uint8
    widths = np.bincount(cell_index(3, 76, grid.origin_x, grid.cell_w))
    assert set(widths) == {4, 5} and widths.sum() == 73
    _check_cells(np.repeat(src[:, :, None], 3, 2), np.repeat(out[:, :, None], 3, 2), grid)


def test_apply_mosaics_and_input_not_modified():
    src = _frame()
    keep = src.copy()
    out = apply_mosaics(src, [grid_from_blocks((0, 0, 40, 40), 4), grid_from_block_size((100, 60, 150, 110), 7)])
    np.testing.assert_array_equal(src, keep)
    assert not np.array_equal(out[:40, :40], src[:40, :40])
    assert not np.array_equal(out[60:110, 100:150], src[60:110, 100:150])
    np.testing.assert_array_equal(out[50:60, 50:90], src[50:60, 50:90])


def test_dict_round_trip_and_errors():
    g = grid_from_blocks((10.2, 20.7, 90.1, 99.9), 16, mode="center")
    d = g.to_dict()
    assert d["rect"] == [10, 21, 90, 100] and d["mode"] == "center"
    assert MosaicGrid.from_dict(d) == g
    with pytest.raises(ConfigError):
        MosaicGrid.from_dict({**d, "colour": 1})
    with pytest.raises(ConfigError):
        MosaicGrid.from_dict({k: v for k, v in d.items() if k != "cell_w"})
    with pytest.raises(ConfigError):
        grid_from_blocks((0, 0, 10, 10), 4, mode="median")
    with pytest.raises(ConfigError):
        grid_from_blocks((0, 0, 10, 10), 0)


def test_scale_box():
    assert scale_box((10, 20, 30, 60), 1.5) == (5.0, 10.0, 35.0, 70.0)
