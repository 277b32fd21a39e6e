"""What a mosaic's block values are (cell means, centre samples or top-left samples), judged on the border blocks
against the frame outside (`border_value_errors`, `classify_values`).
"""

from __future__ import annotations

import math

import numpy as np

from depixcli.locate.config import MosaicRegion
from depixcli.locate.periods import gray

VALUE_KINDS = ("mean", "centre", "corner")  # block value: cell mean | centre sample | top-left pixel (deface)
VALUE_TEXTURE = 6.0  # grey levels: outside border segments flatter than this (std) say nothing about the values
VALUE_CORNER_RATIO = 0.6  # corner samples when their error is below this share of the best other hypothesis's
# ... and point samples (by their roughness) are corner samples below this share: deface's 20 px mosaic of a soft
# 80 px face gave 0.63 (2.5 against 4.0 grey levels), depix's 16 centre samples of a 512 px close-up 0.78
VALUE_SAMPLE_CORNER_RATIO = 0.7


# (0.4 read deface on a slightly blurred face, 0.43, as centre samples; block means and centre samples give 0.9-1.5)
VALUE_RATIO = 0.85  # means (centre samples) when their error is below this share of the other's


VALUE_MIN_BLOCKS = 8  # border blocks with texture outside needed for a decision (VALUE_CORNER_BLOCKS for corners)
VALUE_CORNER_BLOCKS = 16
# grey levels: the top-left and centre hypotheses' errors on a block this close say nothing about where the samples
# lie (the outside line is flat between the two points); where their medians are this close, the blocks that tell
# them apart decide (deface's mosaic at the top of a val clip: 8 blocks fit both, 2 only top-left samples)
VALUE_TIE = 3.0


def border_value_errors(frame: np.ndarray, region: MosaicRegion) -> np.ndarray:
    """How well each border block's value matches the true pixels just outside the mosaic, per hypothesis.

    A block's value (median of its interior) is compared with the row (column) of pixels just outside
    the mosaic along that block: with their mean (block means), with the pixel across from the block's
    centre (centre samples) and with the pixel next to its first row / column (top-left samples, as
    deface takes them: on the top and left sides that pixel touches the border). Besides, the roughness
    of the values along the border (|second difference| over three neighbouring blocks) is set beside that
    of the outside line sampled at the block centres and averaged over the blocks: point samples are as
    rough as the former, block means as smooth as the latter (or smoother). Only border segments with
    texture (std > VALUE_TEXTURE) count; flat ones fit every hypothesis.
    Returns `(n, 7)` float64 rows `(near, e_mean, e_centre, e_corner, rough_values, rough_samples,
    rough_means)` in grey levels (roughness nan where a block has no textured neighbours on both sides),
    near = 1 on the top and left sides (where a top-left sample lies next to the border), 0 on the others.
    """
    g = gray(np.ascontiguousarray(frame)).astype(np.float64)
    H, W = g.shape
    x0, y0, x1, y1 = region.rect
    rows = []
    for axis, (lo, hi, cell, origin) in enumerate(((x0, x1, region.cell_w, region.origin_x),
                                                   (y0, y1, region.cell_h, region.origin_y))):
        # blocks along this axis: whole cells inside [lo, hi)
        k0 = int(math.ceil((lo - origin) / cell - 1e-6))
        k1 = int(math.floor((hi - origin) / cell + 1e-6))
        across = (y0, y1, region.cell_h) if axis == 0 else (x0, x1, region.cell_w)
        for near, pos, first in ((1, across[0] - 1, across[0]), (0, across[1], across[1] - across[2])):
            if not (0 <= pos < (H if axis == 0 else W)):
                continue
            line = g[pos] if axis == 0 else g[:, pos]
            fa, fb = int(round(first)), int(round(first + across[2]))
            side = []  # per block along this side: (k, v, mean, centre, corner, textured)
            for k in range(k0, k1):
                a = int(math.ceil(origin + k * cell - 0.5))
                b = int(math.ceil(origin + (k + 1) * cell - 0.5))
                if a < lo or b > hi or b - a < 3 or fb - fa < 3:
                    continue
                seg = line[a:b]
                block = g[fa + 1:fb - 1, a + 1:b - 1] if axis == 0 else g[a + 1:b - 1, fa + 1:fb - 1]
                side.append((k, float(np.median(block)), seg.mean(), line[(a + b) // 2], line[a],
                             seg.std() > VALUE_TEXTURE))
            for j, (k, v, m, c, corner, textured) in enumerate(side):
                if not textured:
                    continue
                rough = (np.nan, np.nan, np.nan)
                if 0 < j < len(side) - 1 and side[j - 1][0] == k - 1 and side[j + 1][0] == k + 1:
                    rough = tuple(abs(side[j][i] - (side[j - 1][i] + side[j + 1][i]) / 2) for i in (1, 3, 2))
                rows.append((near, abs(v - m), abs(v - c), abs(v - corner), *rough))
    return np.array(rows, np.float64).reshape(-1, 7)


def residuals(rows: np.ndarray) -> np.ndarray:
    """`(3,)` errors of the mean, centre and top-left hypotheses over `border_value_errors` rows: their medians,
    or where the centre and top-left ones are within VALUE_TIE, their medians over the rows where those two
    are not (the blocks that tell the sample points apart), when there are any."""
    med = np.median(rows[:, 1:4], axis=0)
    told = np.abs(rows[:, 2] - rows[:, 3]) > VALUE_TIE
    if abs(med[1] - med[2]) <= VALUE_TIE and told.any():
        return np.median(rows[told, 1:4], axis=0)
    return med


def classify_values(errors: np.ndarray) -> str:
    """Value kind of a mosaic from `border_value_errors` rows (pooled over its frames): one of VALUE_KINDS,
    "samples" (top-left samples favoured, on fewer than VALUE_CORNER_BLOCKS blocks: point samples, never read
    as means) or "unclear" (too few textured border blocks, or no hypothesis clearly better). Top-left samples match
    the pixel next to them across the top and left sides far better than anything else; block means and
    point samples are told apart by how rough the values are along the border, and point samples are top-left
    ones where the top and left sides match them clearly best as such (VALUE_SAMPLE_CORNER_RATIO). The
    hypotheses' errors on the top and left sides are `residuals`."""
    errors = np.asarray(errors, np.float64).reshape(-1, 7)
    near = errors[errors[:, 0] > 0]
    if len(errors) < VALUE_MIN_BLOCKS:
        return "unclear"
    if len(near):
        e_mean, e_centre, e_corner = residuals(near)
        if e_corner < VALUE_CORNER_RATIO * min(e_mean, e_centre):
            return "corner" if len(near) >= VALUE_CORNER_BLOCKS else "samples"  # too few to place: not means
    rough = errors[~np.isnan(errors[:, 4])]
    if len(rough) < VALUE_MIN_BLOCKS:
        return "unclear"
    r_v, r_p, r_m = (max(float(v), 1e-3) for v in np.median(rough[:, 4:7], axis=0))
    d_sample, d_mean = abs(math.log(r_v / r_p)), abs(math.log(r_v / r_m)) if r_v > r_m else 0.0
    if d_mean < VALUE_RATIO * d_sample:
        return "mean"
    if d_sample < VALUE_RATIO * d_mean:  # point samples: taken where the top and left sides agree best
        if len(near) and e_corner < VALUE_SAMPLE_CORNER_RATIO * min(e_centre, e_mean):
            return "corner" if len(near) >= VALUE_CORNER_BLOCKS else "samples"
        return "centre"
    return "unclear"
