"""Mosaic regions of one frame: mosaic-like tiles, candidate areas, their fit, split and merge (`locate_mosaics`), and
the search near known mosaics (`locate_near`).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from depixcli.geometry.boxes import overlap_smaller
from depixcli.locate.cells import cells_fit, refine_period
from depixcli.locate.config import LINE_X, LINE_Y, PERIOD_TOLERANCE, REFIT_ROUNDS, LocateConfig, MosaicRegion
from depixcli.locate.periods import axis_periods, diffs, gray, masked_axis, on_grid_share, robust, window_periods

TILE_VOTES = 0.7  # share of the windows containing a tile that must pass for the tile to count
SPLIT_FLATTER = 0.15  # share of empty-difference pixels above a failed area's median that marks its flat part
SPLIT_MIN_TILES = 8  # tiles: smaller failed areas are not split
MERGE_PERIOD = 0.03  # relative: regions with cell sizes this close (and lines in phase) are merged
MERGE_PHASE = 0.2  # cells: most offset between two regions' grid lines for them to be merged
REESTIMATE = 2  # periods per axis re-estimated on a fitted rect
REESTIMATE_BELOW = 0.75  # the periods are re-estimated on a fitted rect when its quality is lower
REESTIMATE_GAIN = 0.05  # a re-estimated grid replaces the first fit when its quality is this much higher
WINDOW_SIZES = (1, 2, 4)  # tiles per window side; >= 3 teeth: 32 px windows see periods <= 10 px, 128 px <= 42


def _windows_per_tile(n: int, k: int) -> np.ndarray:
    """Number of windows of k tiles (stride 1) containing each of n tiles along one axis."""
    t = np.arange(n)
    return (np.minimum(t, n - k) - np.maximum(0, t - k + 1) + 1).astype(np.float64)


def _compatible(a: float, b: float) -> bool:
    """Two window periods of one mosaic: equal, or one twice the other (a window may lock on a harmonic)."""
    r = abs(math.log(a / b))
    return r < PERIOD_TOLERANCE or abs(r - math.log(2)) < PERIOD_TOLERANCE


def _tile_regions(score: np.ndarray, px: np.ndarray, py: np.ndarray) -> list[np.ndarray]:
    """Group tiles whose best windows have compatible periods; list of boolean tile masks, largest first."""
    Hb, Wb = score.shape
    seen = np.zeros((Hb, Wb), bool)
    groups = []
    for start in zip(*np.nonzero(score > 0)):
        if seen[start]:
            continue
        seen[start] = True
        stack, members = [start], [start]
        while stack:
            y, x = stack.pop()
            for yy, xx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                if 0 <= yy < Hb and 0 <= xx < Wb and not seen[yy, xx] and score[yy, xx] > 0:
                    if _compatible(px[yy, xx], px[y, x]) and _compatible(py[yy, xx], py[y, x]):
                        seen[yy, xx] = True
                        stack.append((yy, xx))
                        members.append((yy, xx))
        m = np.zeros((Hb, Wb), bool)
        m[tuple(np.array(members).T)] = True
        groups.append(m)
    return sorted(groups, key=lambda m: -int(m.sum()))


def _tile_map(colband: np.ndarray, rowband: np.ndarray, cfg: LocateConfig):
    """Per tile: best passing window score (0 if none) and its x / y periods, each `(Hb, Wb)`."""
    Hb, Wb = colband.shape[0], rowband.shape[1]
    t_score = np.zeros((Hb, Wb))
    t_px = np.ones((Hb, Wb))
    t_py = np.ones((Hb, Wb))
    for k in WINDOW_SIZES:
        if k > min(Hb, Wb):
            continue
        s, wx, wy = window_periods(colband, rowband, k, cfg)
        ok = s >= cfg.window_score
        # a tile belongs to the mosaic when most windows of this size that contain it pass
        votes = np.zeros((Hb, Wb))
        best = np.zeros((Hb, Wb))
        bpx = np.ones((Hb, Wb))
        bpy = np.ones((Hb, Wb))
        for i in range(k):
            for j in range(k):
                view = (slice(i, i + s.shape[0]), slice(j, j + s.shape[1]))
                votes[view] += ok
                better = ok & (s > best[view])
                best[view] = np.where(better, s, best[view])
                bpx[view] = np.where(better, wx, bpx[view])
                bpy[view] = np.where(better, wy, bpy[view])
        covering = _windows_per_tile(Hb, k)[:, None] * _windows_per_tile(Wb, k)[None, :]
        take = (votes >= TILE_VOTES * covering) & (best > t_score)
        t_score = np.where(take, best, t_score)
        t_px = np.where(take, bpx, t_px)
        t_py = np.where(take, bpy, t_py)
    return t_score, t_px, t_py


def _fit_area(g, dx, dy, mask, t_px, t_py, cfg: LocateConfig, whole: bool = True,
              masked: bool = False) -> MosaicRegion | None:
    """Fit one candidate area (boolean tile mask) to a mosaic region, or None (steps 4 to 6). `masked`: an
    axis without periods takes them from the other axis at a lower bar (`masked_axis`; a last resort)."""
    H, W = g.shape
    b = cfg.band
    grown = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    ys, xs = np.nonzero(grown)
    ty, tx, th, tw = ys.min(), xs.min(), ys.max() + 1 - ys.min(), xs.max() + 1 - xs.min()
    x0, y0, x1, y1 = int(tx * b), int(ty * b), int(min((tx + tw) * b, W)), int(min((ty + th) * b, H))
    sub = mask[ty:ty + th, tx:tx + tw]
    mpx = np.repeat(np.repeat(sub, b, 0), b, 1)[: y1 - y0, : x1 - x0]
    pmx = (dx[y0:y1, x0:x1] * mpx).sum(0, dtype=np.float64)
    pmy = (dy[y0:y1, x0:x1] * mpx).sum(1, dtype=np.float64)
    hint = (float(np.median(t_px[mask])), float(np.median(t_py[mask])))
    # no period on an axis: maybe one strong edge off the grid outweighs the grid lines; clip and retry
    xs_ = axis_periods(pmx, x0, hint[0], cfg) or axis_periods(robust(pmx), x0, hint[0], cfg)
    ys_ = axis_periods(pmy, y0, hint[1], cfg) or axis_periods(robust(pmy), y0, hint[1], cfg)
    # `masked`: an axis whose comb a texture next to the mosaic masks (a woven hat of about the block size
    # behind a face) gets its periods close to the other axis's, at a lower on-grid bar; the cell fit decides
    if masked:
        if xs_ and ys_:
            return None  # nothing masked: the plain fit already failed
        xs_ = xs_ or masked_axis(pmx, x0, hint[0], ys_, cfg)
        ys_ = ys_ or masked_axis(pmy, y0, hint[1], xs_, cfg)
    if not xs_ or not ys_:
        return None
    fit = None
    for ax, ay in sorted(((ax, ay) for ax in xs_ for ay in ys_), key=lambda a: -a[0][0] * a[1][0]):
        px, py = ax[:2], ay[:2]
        fit = cells_fit(g, (x0, y0, x1, y1), px, py, cfg, whole)
        if fit is not None:
            break
    if fit is None:
        return None
    # the area's profiles may mix in a regular texture next to the mosaic: estimate the periods again on the
    # fitted rect alone and keep the grid whose cells are flattest with most edges on its lines
    rx0, ry0, rx1, ry1 = fit[0]
    qx, qy = dx[ry0:ry1, rx0:rx1].sum(0, dtype=np.float64), dy[ry0:ry1, rx0:rx1].sum(1, dtype=np.float64)

    def quality(f, cx, cy):
        return f[3] * min(on_grid_share(qx, *cx, rx0), on_grid_share(qy, *cy, ry0))

    best = quality(fit, px, py)
    xs_, ys_ = ([], []) if best >= REESTIMATE_BELOW else (axis_periods(qx, rx0, 0.5 * px[0], cfg)[:REESTIMATE],
                                                          axis_periods(qy, ry0, 0.5 * py[0], cfg)[:REESTIMATE])
    for bx in xs_:
        for by in ys_:
            cx, cy = bx[:2], by[:2]
            if all(abs(c[0] / p[0] - 1) < MERGE_PERIOD for c, p in ((cx, px), (cy, py))):
                continue
            f = cells_fit(g, fit[0], cx, cy, cfg, whole)
            if f is not None and quality(f, cx, cy) > best + REESTIMATE_GAIN:
                fit, px, py, ax, ay, best = f, cx, cy, bx, by, quality(f, cx, cy)
    for _ in range(REFIT_ROUNDS):  # the region may run past the analysed area: look further
        # a sub-harmonic lock (p / 2, p / 3 per axis) shows as grid lines without steps: try the true period
        cx, cy = refine_period(g, fit[0], px, py, cfg)
        if (cx, cy) != (px, py):
            better = cells_fit(g, fit[0], cx, cy, cfg, whole)
            if better is not None:
                fit, px, py = better, cx, cy
                continue
        if not fit[4]:
            break
        again = cells_fit(g, fit[0], px, py, cfg, whole)
        if again is None or again[0] == fit[0]:
            break
        fit = again
    rect, ox, oy, flat, _ = fit
    return MosaicRegion(rect, float(px[0]), float(py[0]), float(ox), float(oy),
                        float(flat * min(ax[2], ay[2], 1.0)))


def _tile_flatness(dx: np.ndarray, dy: np.ndarray, b: int) -> np.ndarray:
    """Per tile, share of pixels with no x or y difference left (after noise floor and line support)."""
    Hp, Wp = dx.shape
    z = cv2.compare(cv2.bitwise_or(dx, dy), 0, cv2.CMP_EQ)  # 255 where both are 0
    return z.reshape(Hp // b, b, Wp // b, b).mean((1, 3), dtype=np.float32) / 255.0


def _split_by_flatness(mask: np.ndarray, flatness: np.ndarray) -> list[np.ndarray]:
    """The flatter parts of a failed candidate area (e.g. a mosaic whose period is close to that of a
    regular texture around it, so that their tiles were grouped): tiles clearly flatter than the area's
    median, as 4-connected groups of >= 2 tiles, largest first."""
    level = float(np.median(flatness[mask])) + SPLIT_FLATTER
    part = (mask & (flatness >= level)).astype(np.uint8)
    n, lab = cv2.connectedComponents(part, connectivity=4)
    groups = [lab == i for i in range(1, n)]
    return sorted((m for m in groups if m.sum() >= 2), key=lambda m: -int(m.sum()))


def merge_regions(found: list[MosaicRegion]) -> list[MosaicRegion]:
    """Merge regions that touch or overlap and share one grid (same period, lines in phase): pieces of one
    mosaic (a large mosaic can be found in parts)."""
    out = list(found)
    merged = True
    while merged:
        merged = False
        for i in range(len(out)):
            for j in range(i + 1, len(out)):
                a, c = out[i], out[j]
                if _same_grid(a, c) and _touch(a, c):
                    rect = (min(a.rect[0], c.rect[0]), min(a.rect[1], c.rect[1]),
                            max(a.rect[2], c.rect[2]), max(a.rect[3], c.rect[3]))
                    best = a if a.score >= c.score else c
                    out[i] = MosaicRegion(rect, best.cell_w, best.cell_h, best.origin_x, best.origin_y, best.score)
                    del out[j]
                    merged = True
                    break
            if merged:
                break
    return out


def _same_grid(a: MosaicRegion, c: MosaicRegion) -> bool:
    """Same cell size (within MERGE_PERIOD) and grid lines in phase (within MERGE_PHASE of a cell)."""
    for pa, pc, oa, oc in ((a.cell_w, c.cell_w, a.origin_x, c.origin_x), (a.cell_h, c.cell_h, a.origin_y, c.origin_y)):
        if abs(pa / pc - 1) > MERGE_PERIOD:
            return False
        t = (oc - oa) / pa
        if abs(t - round(t)) > MERGE_PHASE:
            return False
    return True


def _touch(a: MosaicRegion, c: MosaicRegion) -> bool:
    """The rects overlap or are at most one cell apart, and overlap along the other axis."""
    gx = max(a.rect[0], c.rect[0]) - min(a.rect[2], c.rect[2])  # > 0: gap
    gy = max(a.rect[1], c.rect[1]) - min(a.rect[3], c.rect[3])
    return gx <= a.cell_w + 1 and gy <= a.cell_h + 1 and (gx < 0 or gy < 0)


def locate_mosaics(frame: np.ndarray, config: LocateConfig = LocateConfig()) -> list[MosaicRegion]:
    """Mosaic regions of one frame, best first. frame: `(H, W, 3)` uint8 RGB or `(H, W)` grey."""
    return search(frame, config)


def search(frame: np.ndarray, cfg: LocateConfig, focus=None, whole: bool = True) -> list[MosaicRegion]:
    """`locate_mosaics`; with `focus` (xyxy px) only candidate areas overlapping it are fitted. `whole`:
    `frame` is a whole video frame, not a search area cut out of one (see `cells_fit`)."""
    b = cfg.band
    g = gray(np.ascontiguousarray(frame))
    H, W = g.shape
    Hp, Wp = max(-(-H // b), 2) * b, max(-(-W // b), 2) * b
    gp = cv2.copyMakeBorder(g, 0, Hp - H, 0, Wp - W, cv2.BORDER_REPLICATE) if (Hp, Wp) != (H, W) else g
    dx, dy = diffs(gp)
    # keep differences that persist along the grid-line direction (mosaic edges are straight segments)
    dx = cv2.erode(cv2.subtract(dx, cfg.noise), LINE_X)
    dy = cv2.erode(cv2.subtract(dy, cfg.noise), LINE_Y)
    Hb, Wb = Hp // b, Wp // b
    colband = dx.reshape(Hb, b, Wp).sum(1, dtype=np.int32)
    rowband = cv2.reduce(dy.reshape(Hp * Wb, b), 1, cv2.REDUCE_SUM, dtype=cv2.CV_32S).reshape(Hp, Wb)
    t_score, t_px, t_py = _tile_map(colband, rowband, cfg)
    flatness = None
    found: list[MosaicRegion] = []
    # (tile mask, may be split, masked axis allowed); a failed area is tried again with a masked axis after
    # its flatter parts (a masked-axis fit of the whole may lock on the texture)
    todo = [(m, True, False) for m in _tile_regions(t_score, t_px, t_py) if m.sum() >= 2]
    while todo:
        mask, may_split, masked = todo.pop(0)
        ys, xs = np.nonzero(mask)
        box = (int(xs.min()) * b, int(ys.min()) * b, (int(xs.max()) + 1) * b, (int(ys.max()) + 1) * b)
        if any(overlap_smaller(r.rect, box) > 0.5 for r in found) or (
                focus is not None and overlap_smaller(focus, box) <= 0):
            continue
        region = _fit_area(g, dx, dy, mask, t_px, t_py, cfg, whole, masked)
        if region is None:
            if masked:
                continue
            parts = []
            if may_split and mask.sum() >= SPLIT_MIN_TILES:
                if flatness is None:
                    flatness = _tile_flatness(dx, dy, b)
                parts = [(m, False, False) for m in _split_by_flatness(mask, flatness)]
            todo[:0] = parts + [(mask, False, True)]
            continue
        if any(overlap_smaller(r.rect, region.rect) > 0.5 for r in found):
            continue
        found.append(region)
    return sorted(merge_regions(found), key=lambda r: -r.score)
