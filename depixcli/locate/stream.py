"""Mosaics over a video stream: whole-frame searches on key frames and worker threads, near searches around the mosaics
known from the frames before (`locate_stream`).
"""

from __future__ import annotations

import functools
import itertools
import math
import time
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np

from depixcli.geometry.boxes import iou, overlap_smaller
from depixcli.locate.cells import cells_fit
from depixcli.locate.config import LINE_X, LINE_Y, REFIT_ROUNDS, LocateConfig, MosaicRegion
from depixcli.locate.periods import diffs, fit_lines, gray, on_grid_share
from depixcli.locate.regions import locate_mosaics, search

KEY_EVERY = 8  # frames: locate_stream searches the whole frame at least this often
NEAR_MARGIN = 0.15  # rect sizes of search area around a known mosaic (motion beyond the predicted one)
NEAR_MARGIN_CELLS = 2  # cells of search area around a known mosaic, besides NEAR_MARGIN
NEAR_IOU = 0.3  # IoU: a region found near a known mosaic's predicted rect is that mosaic again
NEAR_CELL = 0.1  # relative: ... and keeps its block size this closely
NEAR_PARTIAL_IOU = 0.6  # IoU: a known-size fit overlapping the predicted rect less may be a part of the mosaic
NEAR_ON_GRID = 0.25  # least on-grid share of the edges (cf. LocateConfig.on_grid) for a known block size


def locate_near(frame: np.ndarray, known: list[MosaicRegion], config: LocateConfig = LocateConfig(),
                shifts=None) -> list[MosaicRegion | None]:
    """Each of the `known` regions (mosaics of a neighbouring frame; each moved by its `shifts` entry, px
    (dx, dy)) found again on `frame`, or None where it is not there: no region of about the same block
    size (NEAR_CELL) overlapping the predicted rect (NEAR_IOU) inside the search area, or one cut by the
    area's border (it moved more than predicted).

    The search area is the predicted rect grown by NEAR_MARGIN of its size plus NEAR_MARGIN_CELLS cells.
    There the known block size is fitted first (`_fit_known`: phase and rect found again); when that fails
    or its rect overlaps the predicted one little (NEAR_PARTIAL_IOU: a part of the mosaic), the area is
    also searched as a frame, fitting only candidates that overlap the predicted rect; the region
    overlapping the predicted rect most is kept.
    """
    H, W = frame.shape[:2]
    out: list[MosaicRegion | None] = []
    for k, region in enumerate(known):
        dx, dy = shifts[k] if shifts is not None else (0.0, 0.0)
        x0, y0, x1, y1 = region.rect
        pred = (x0 + dx, y0 + dy, x1 + dx, y1 + dy)
        m = NEAR_MARGIN * max(x1 - x0, y1 - y0) + NEAR_MARGIN_CELLS * max(region.cell_w, region.cell_h)
        ax0, ay0 = max(int(pred[0] - m), 0), max(int(pred[1] - m), 0)
        ax1, ay1 = min(int(math.ceil(pred[2] + m)), W), min(int(math.ceil(pred[3] + m)), H)
        if ax1 - ax0 < 2 * config.band or ay1 - ay0 < 2 * config.band:
            out.append(None)
            continue
        crop = frame[ay0:ay1, ax0:ax1]
        focus = (pred[0] - ax0, pred[1] - ay0, pred[2] - ax0, pred[3] - ay0)
        whole = (ax0, ay0, ax1, ay1) == (0, 0, W, H)
        fit = _fit_known(gray(np.ascontiguousarray(crop)), focus, region.cell_w, region.cell_h, config, whole)
        best = None
        cands = [fit] if fit is not None else []
        if fit is None or iou((fit.rect[0] + ax0, fit.rect[1] + ay0, fit.rect[2] + ax0, fit.rect[3] + ay0),
                              pred) < NEAR_PARTIAL_IOU:  # none, or maybe a part: search the area too
            cands += search(crop, config, focus, whole)
        for r in cands:
            r = MosaicRegion((r.rect[0] + ax0, r.rect[1] + ay0, r.rect[2] + ax0, r.rect[3] + ay0), r.cell_w,
                             r.cell_h, r.origin_x + ax0, r.origin_y + ay0, r.score)
            if (iou(r.rect, pred) >= NEAR_IOU and abs(r.cell_w / region.cell_w - 1) <= NEAR_CELL
                    and abs(r.cell_h / region.cell_h - 1) <= NEAR_CELL
                    and (best is None or iou(r.rect, pred) > iou(best.rect, pred))):
                best = r
        cut = best is not None and ((best.rect[0] <= ax0 and ax0 > 0) or (best.rect[1] <= ay0 and ay0 > 0)
                                    or (best.rect[2] >= ax1 and ax1 < W) or (best.rect[3] >= ay1 and ay1 < H))
        out.append(None if cut else best)
    return out


def _with(regions: list[MosaicRegion], new: MosaicRegion) -> list[MosaicRegion]:
    """`regions` and `new`, which replaces the smaller regions it mostly covers (parts of one mosaic); as
    they are when a region at least as large mostly covers it."""
    def area(r):
        return (r.rect[2] - r.rect[0]) * (r.rect[3] - r.rect[1])

    keep = []
    for q in regions:
        if overlap_smaller(q.rect, new.rect) > 0.5:
            if area(q) >= area(new):
                return regions
            continue
        keep.append(q)
    return keep + [new]


def _fit_known(g: np.ndarray, rect, cell_w: float, cell_h: float, cfg: LocateConfig, whole: bool):
    """Fit a mosaic of known block size near `rect` (xyxy px in `g`): phase from the difference profiles of
    the rect grown by one cell, refined on the grid lines, then the cell fit (`cells_fit`). None when the
    lines do not fit that block size (NEAR_CELL) or collect too little of the edges (NEAR_ON_GRID: lower than
    `on_grid`, as the block size is known; the cell fit still has to pass)."""
    H, W = g.shape
    dx, dy = diffs(g)
    dx = cv2.erode(cv2.subtract(dx, cfg.noise), LINE_X)
    dy = cv2.erode(cv2.subtract(dy, cfg.noise), LINE_Y)
    m = max(cell_w, cell_h)
    x0, y0 = max(int(rect[0] - m), 0), max(int(rect[1] - m), 0)
    x1, y1 = min(int(math.ceil(rect[2] + m)), W), min(int(math.ceil(rect[3] + m)), H)
    if x1 - x0 < cfg.min_cells * cell_w or y1 - y0 < cfg.min_cells * cell_h:
        return None
    axes, shares = [], []
    for pm, start, known in ((dx[y0:y1, x0:x1].sum(0, dtype=np.float64), x0, cell_w),
                             (dy[y0:y1, x0:x1].sum(1, dtype=np.float64), y0, cell_h)):
        pos = np.arange(pm.size) + start + 1.0
        c = pos.mean()
        z = np.sum(pm * np.exp(-2j * np.pi * (pos - c) / known))
        p, o = known, c + (-np.angle(z) / (2 * np.pi)) * known
        for _ in range(2):
            p2, o2, w = fit_lines(pm, p, o, start)
            if w <= 0:
                break
            p, o = p2, o2
        share = on_grid_share(pm, p, o, start)
        if abs(p / known - 1) > NEAR_CELL or share < NEAR_ON_GRID:
            return None
        axes.append((p, o))
        shares.append(share)
    fit = cells_fit(g, (x0, y0, x1, y1), axes[0], axes[1], cfg, whole)
    for _ in range(REFIT_ROUNDS):  # the region may run past the analysed area
        if fit is None or not fit[4]:
            break
        again = cells_fit(g, fit[0], axes[0], axes[1], cfg, whole)
        if again is None or again[0] == fit[0]:
            break
        fit = again
    if fit is None:
        return None
    rect, ox, oy, flat, _ = fit
    return MosaicRegion(rect, float(axes[0][0]), float(axes[1][0]), float(ox), float(oy), float(flat * min(shares)))


def locate_stream(items, image_of=lambda x: x, config: LocateConfig = LocateConfig(), key_every: int = KEY_EVERY,
                  workers: int = 1, on_time=None):
    """Yield `(item, regions)` for every item of a stream of frames, in order (`image_of(item)` is its frame).

    The whole frame is searched on every `key_every`-th frame (a key frame), on any frame where a known
    mosaic is not found again, and while no mosaic is known. On the frames in between only the mosaics
    known from the last key frame (and from the frame before it, so that a key frame missing a mosaic loses
    nothing) are fitted again (`locate_near`), moved along at the speed they had between the last two key
    frames. Before a segment of frames is yielded, a mosaic missed (or found only in part) on some of its
    frames is followed from the frames where it was found, at the block size it had there (a zooming
    face's blocks grow), forward and then backward from the next key frame: a face that appears between
    key frames is found from its first frame, and a frame the whole-frame search missed gets the mosaic
    its neighbours have. Holds at most 2 x `key_every` frames; `workers` threads search.
    `on_time(seconds)` is called with the time of every search.
    """
    def timed(fn, *args):
        t0 = time.perf_counter()
        try:
            return fn(*args)
        finally:
            if on_time is not None:
                on_time(time.perf_counter() - t0)

    def near_or_full(image, known, shifts):
        if not known:  # nothing to follow (the key frame may have missed a mosaic): search the whole frame
            return timed(locate_mosaics, image, config)
        near = timed(locate_near, image, known, config, shifts)
        regions = [r for r in near if r is not None]
        if len(regions) < len(known):  # one was lost: search the whole frame, keep what was followed
            regions = functools.reduce(_with, regions, timed(locate_mosaics, image, config))
        return sorted(regions, key=lambda r: -r.score)

    def fill(images, regions, source, j, skip=()):
        """Look on frame j for the mosaics of `source` (a neighbour's regions) that it lacks or has only a
        part of (IoU < NEAR_PARTIAL_IOU), unless one of `skip` (mosaics that frame was already searched
        for) is that mosaic at its block size (a zooming face's blocks grow: searched for at another size)."""
        for r in source:
            if any(iou(r.rect, q.rect) >= NEAR_PARTIAL_IOU for q in regions[j]) or any(
                    iou(r.rect, q.rect) >= NEAR_IOU and _same_cell(r, q) for q in skip):
                continue
            hit = timed(locate_near, images[j], [r], config)[0]
            if hit is not None:
                regions[j] = _with(regions[j], hit)

    it = iter(items)
    with ThreadPoolExecutor(max(workers, 1)) as pool:
        prev = None  # [items, images, futures of regions, known] of the segment before, not yielded yet
        prev_key: list[MosaicRegion] = []
        before: list[MosaicRegion] = []  # regions of the last frame yielded
        while True:
            seg = list(itertools.islice(it, max(key_every, 1)))
            images = [image_of(x) for x in seg]
            key = pool.submit(timed, locate_mosaics, images[0], config) if seg else None
            last: list[MosaicRegion] = []
            if prev is not None:
                regions = [f.result() if hasattr(f, "result") else f for f in prev[2]]
                # a mosaic missed on some frames: follow it from the frames where it was found, forward
                # (mosaics the near search did not already look for), then backward from the next key frame
                for j in range(len(regions)):
                    fill(prev[1], regions, regions[j - 1] if j else before, j, prev[3] if j else ())
                for j in range(len(regions) - 1, -1, -1):
                    fill(prev[1], regions, regions[j + 1] if j + 1 < len(regions) else
                         (key.result() if key is not None else []), j)
                last = before = regions[-1]
                yield from zip(prev[0], regions)
            if not seg:
                return
            key_regions = key.result()
            # known on this segment: the key frame's mosaics, and those of the frame before that it missed
            # (seen one frame earlier); each moves on at its speed since the key frame before
            carried = [q for q in last if not any(iou(q.rect, r.rect) >= NEAR_IOU for r in key_regions)]
            known = key_regions + carried
            lag = [0] * len(key_regions) + [1] * len(carried)  # frames from each one's frame to the key frame
            span = len(prev[0]) if prev is not None else 0  # frames between the two key frames
            velocity = [_velocity(r, prev_key, span - d) for r, d in zip(known, lag)]
            futures = [key_regions] + [
                pool.submit(near_or_full, images[j], known, [(vx * (j + d), vy * (j + d))
                                                             for (vx, vy), d in zip(velocity, lag)])
                for j in range(1, len(seg))]
            prev, prev_key = [seg, images, futures, known], key_regions


def _same_cell(a: MosaicRegion, b: MosaicRegion) -> bool:
    """Block sizes within NEAR_CELL of each other, both axes."""
    return abs(a.cell_w / b.cell_w - 1) <= NEAR_CELL and abs(a.cell_h / b.cell_h - 1) <= NEAR_CELL


def _velocity(region: MosaicRegion, before: list[MosaicRegion], frames: int) -> tuple[float, float]:
    """px/frame (dx, dy) of `region` since the same mosaic in `before` (`frames` earlier); 0 when not there."""
    x0, y0, x1, y1 = region.rect
    best = None
    for q in before:
        if abs(q.cell_w / region.cell_w - 1) > NEAR_CELL or abs(q.cell_h / region.cell_h - 1) > NEAR_CELL:
            continue
        d = math.hypot((q.rect[0] + q.rect[2] - x0 - x1) / 2, (q.rect[1] + q.rect[3] - y0 - y1) / 2)
        if d <= max(x1 - x0, y1 - y0) and (best is None or d < best[0]):
            best = (d, q)
    if best is None or frames <= 0:
        return 0.0, 0.0
    q = best[1]
    return ((x0 + x1 - q.rect[0] - q.rect[2]) / 2 / frames, (y0 + y1 - q.rect[1] - q.rect[3]) / 2 / frames)
