"""Grid analysis of an anonymised face: the mosaic grid located over it, what its block values are (means,
samples or neither), its anchor and how many grid phases the face shows (`analyse_mosaic`).
"""

from __future__ import annotations

import math
from dataclasses import replace

import cv2
import numpy as np

from depixcli.audit.verdict import MosaicAnalysis
from depixcli.faces.identity import Alignment
from depixcli.geometry.mosaic import MosaicGrid, cell_values, circular_spread, clipped_rect
from depixcli.locate.regions import locate_mosaics

LOCATE_MARGIN = 0.6  # the locator looks at the face box grown by this many face sizes on each side
LOCATE_FACE_PX = 160  # px: around larger faces the locator also tries a half-size copy (big blocks)
PHASE_BINS = 4  # bins per axis of the face centre's position within a block (16 phases at most)
PHASE_MIN_SHARE = 0.05  # share of the located frames a phase bin needs to count
ANCHOR_SPREAD = 0.12  # blocks: circular spread of a phase below which it counts as constant
MIN_MOTION_CELLS = 1.0  # blocks: a face moving less than this cannot tell image from face anchoring
VALUE_RATIO = 0.7  # block values are means (samples) when their error is below this share of the other's
VALUE_MAX_ERR = 6.0  # grey levels: block values further than this from both are neither means nor samples


def to_crop(points: np.ndarray, box, size: int) -> np.ndarray:
    """Frame pixel-index coordinates `(..., 2)` -> pixel-index coordinates of an `size` crop of `box`."""
    x0, y0, _, _ = box.xyxy
    s = size / box.size
    return (np.asarray(points, np.float64) + 0.5 - (x0, y0)) * s - 0.5


def crop_alignment(det: np.ndarray, box, size: int):
    """`identity.Alignment` in crop coordinates from a detection row `(15,)`: box xyxy, score, 5 landmarks."""
    lm = to_crop(det[5:15].reshape(5, 2), box, size)
    b = to_crop(det[:4].reshape(2, 2) - 0.5, box, size) + 0.5  # continuous corners
    face = np.concatenate([[b[0, 0], b[0, 1], b[1, 0] - b[0, 0], b[1, 1] - b[0, 1]], lm.ravel(), [det[4]]])
    return Alignment(face.astype(np.float32), detected=True)


def locate_face_grid(image: np.ndarray, face_box) -> tuple | None:
    """The mosaic grid over a face: `(MosaicGrid, rect)` in frame coordinates, or None when none is found.

    The locator sees the face box grown by LOCATE_MARGIN face sizes each side; around large faces it
    also tries a half-size copy (blocks too large for it at full size). The region kept is the largest
    one containing the face box centre.
    """
    H, W = image.shape[:2]
    x0, y0, x1, y1 = (float(v) for v in face_box)
    side = max(x1 - x0, y1 - y0)
    m = LOCATE_MARGIN * side
    rx0, ry0 = max(int(x0 - m), 0), max(int(y0 - m), 0)
    rx1, ry1 = min(int(math.ceil(x1 + m)), W), min(int(math.ceil(y1 + m)), H)
    if rx1 - rx0 < 16 or ry1 - ry0 < 16:
        return None
    roi = image[ry0:ry1, rx0:rx1]
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    scales = [1.0] + ([0.5] if side > LOCATE_FACE_PX else [])
    for f in scales:
        img = roi if f == 1.0 else cv2.resize(roi, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
        fx, fy = roi.shape[1] / img.shape[1], roi.shape[0] / img.shape[0]
        best = None
        for r in locate_mosaics(img):
            gx0, gy0, gx1, gy1 = r.rect[0] * fx + rx0, r.rect[1] * fy + ry0, r.rect[2] * fx + rx0, r.rect[3] * fy + ry0
            if gx0 <= cx <= gx1 and gy0 <= cy <= gy1:
                area = (gx1 - gx0) * (gy1 - gy0)
                if best is None or area > best[0]:
                    grid = MosaicGrid(int(round(gx0)), int(round(gy0)), int(round(gx1)), int(round(gy1)),
                                      r.cell_w * fx, r.cell_h * fy, r.origin_x * fx + rx0, r.origin_y * fy + ry0)
                    best = (area, grid)
        if best is not None:
            return best[1]
    return None


def value_errors(original: np.ndarray, anonymised: np.ndarray, grid) -> tuple[float, float] | None:
    """Mean |anonymised block value - original block mean| and |... - original centre sample|, grey levels.

    Only blocks wholly inside the grid rect and the frame count; the anonymised value is the median of the
    block's interior (codec ringing at block edges left out). None when no whole block is visible.
    """
    H, W = original.shape[:2]
    x0, y0, x1, y1 = clipped_rect(grid, (H, W))
    if x1 - x0 < 2 * grid.cell_w or y1 - y0 < 2 * grid.cell_h:
        return None
    means, cs, rs = cell_values(original, replace(grid, mode="mean"))
    samples, _, _ = cell_values(original, replace(grid, mode="center"))
    cw = np.diff(np.r_[cs, x1 - x0])
    ch = np.diff(np.r_[rs, y1 - y0])
    full_c = np.abs(cw - grid.cell_w) <= 1.0
    full_r = np.abs(ch - grid.cell_h) <= 1.0
    full_c[[0, -1]] = False  # border blocks may be cut by the rect
    full_r[[0, -1]] = False
    if not full_c.any() or not full_r.any():
        return None
    e_mean, e_sample = [], []
    roi = anonymised[y0:y1, x0:x1].astype(np.float64)
    inset_x, inset_y = int(grid.cell_w >= 5), int(grid.cell_h >= 5)
    for i in np.flatnonzero(full_r):
        for j in np.flatnonzero(full_c):
            block = roi[rs[i] + inset_y:rs[i] + ch[i] - inset_y, cs[j] + inset_x:cs[j] + cw[j] - inset_x]
            v = np.median(block.reshape(-1, block.shape[-1]), axis=0)
            e_mean.append(np.abs(v - means[i, j]).mean())
            e_sample.append(np.abs(v - samples[i, j]).mean())
    return float(np.mean(e_mean)), float(np.mean(e_sample))


def count_phases(rho_x: np.ndarray, rho_y: np.ndarray) -> int:
    """Distinct grid phases of the face: `PHASE_BINS` x `PHASE_BINS` bins of its position within a block
    (per axis, in blocks, [0, 1)), the bins centred on the mean phase so that a constant phase with
    measurement noise stays in one bin; a bin counts when it holds `PHASE_MIN_SHARE` of the frames."""
    keys = []
    for rho in (rho_x, rho_y):
        mean = np.angle(np.mean(np.exp(2j * np.pi * rho))) / (2 * np.pi)
        keys.append(np.floor(((rho - mean + 0.5 / PHASE_BINS) % 1.0) * PHASE_BINS).astype(int) % PHASE_BINS)
    _, counts = np.unique(np.stack(keys, 1), axis=0, return_counts=True)
    return int(np.sum(counts >= max(1, PHASE_MIN_SHARE * len(rho_x))))


def analyse_mosaic(obs: list[dict], n_scored: int) -> MosaicAnalysis:
    """Summarise per-frame grid observations `{"grid", "face": box, "errors"}` of one track."""
    if not obs:
        return MosaicAnalysis(0.0, None, None, None, "none", 0, "none", None)
    cw = np.array([o["grid"].cell_w for o in obs])
    ch = np.array([o["grid"].cell_h for o in obs])
    ox = np.array([o["grid"].origin_x for o in obs])
    oy = np.array([o["grid"].origin_y for o in obs])
    widths = np.array([o["grid"].x1 - o["grid"].x0 for o in obs], np.float64)
    faces = np.array([o["face"] for o in obs], np.float64)
    fcx, fcy = (faces[:, 0] + faces[:, 2]) / 2, (faces[:, 1] + faces[:, 3]) / 2
    # the face's phase within the grid, and the grid's phase in frame coordinates
    rho_x, rho_y = ((fcx - ox) / cw) % 1.0, ((fcy - oy) / ch) % 1.0
    phi_x, phi_y = (ox / cw) % 1.0, (oy / ch) % 1.0
    motion = max(np.ptp(fcx / cw), np.ptp(fcy / ch))
    face_still = max(circular_spread(rho_x), circular_spread(rho_y)) < ANCHOR_SPREAD
    # a phase constant within ANCHOR_SPREAD is one phase: with small blocks the detector's jitter of the
    # face centre (~0.5 px) alone can put a single frame across a bin edge
    phases = 1 if face_still else count_phases(rho_x, rho_y)
    image_still = (max(circular_spread(phi_x), circular_spread(phi_y)) < ANCHOR_SPREAD
                   and np.ptp(cw) <= 0.05 * np.median(cw))
    if motion < MIN_MOTION_CELLS:
        anchor = "static"
    elif image_still and not face_still:
        anchor = "image"
    elif face_still:
        anchor = "face"
    else:
        anchor = "neither"
    errs = np.array([o["errors"] for o in obs if o["errors"] is not None])
    if len(errs) == 0:
        values, value_err = "unclear", None
    else:
        em, es = (float(v) for v in np.median(errs, axis=0))
        value_err = [round(em, 2), round(es, 2)]
        if min(em, es) > VALUE_MAX_ERR:
            values = "neither"
        elif em < VALUE_RATIO * es:
            values = "means"
        elif es < VALUE_RATIO * em:
            values = "samples"
        else:
            values = "unclear"
    bw, bh = float(np.median(cw)), float(np.median(ch))
    return MosaicAnalysis(
        located=len(obs) / max(n_scored, 1), block_px=[round(bw, 2), round(bh, 2)],
        blocks=round(float(np.median(widths / cw)), 1),
        face_blocks=round(float(np.median((faces[:, 2] - faces[:, 0]) / cw)), 1),
        anchor=anchor, phases=phases, values=values, value_err=value_err,
    )


def grid_in_crop(grid, box, size: int):
    """A frame-coordinate MosaicGrid -> the same grid over an `size` px crop of `box`."""
    k = size / box.size
    x0, y0, _, _ = box.xyxy
    r = grid.rect
    return MosaicGrid(int(round((r[0] - x0) * k)), int(round((r[1] - y0) * k)), int(round((r[2] - x0) * k)),
                      int(round((r[3] - y0) * k)), grid.cell_w * k, grid.cell_h * k,
                      (grid.origin_x - x0) * k, (grid.origin_y - y0) * k)
