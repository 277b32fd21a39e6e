"""Block periods from difference profiles: line maps of a frame, the comb spectrum of a profile, candidate periods per
axis and their refinement by least squares on the grid-line positions (steps 1, 2 and 4 of `depixcli.locate`).
"""

from __future__ import annotations

import math
from dataclasses import replace

import cv2
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from depixcli.locate.config import PERIOD_TOLERANCE, LocateConfig

WINDOW_FUNDAMENTAL = 0.8  # a window's period is the lowest frequency scoring >= this share of its best
AXIS_CANDIDATES = 3  # periods tried per axis (largest first) in the cell fit
PROFILE_NFFT = 2048  # FFT length (at least) for an area's profile; peaks are interpolated, then refined on the lines
SPECTRUM_FLOOR = 0.15  # an area whose best normalised comb peak is lower has no period
PRECHECK_MARGIN = 0.15  # a candidate period whose unrefined on-grid share is this far below `on_grid` is dropped
REFIT_PERIOD = 0.002  # relative: a line fit that moved the period less than this is not repeated
REFIT_ORIGIN = 0.1  # px: ... and the origin less than this
PROFILE_QUANTILE = 0.95  # difference profiles are clipped to PROFILE_CAP x this quantile of themselves
PROFILE_CAP = 2.0
MASKED_ON_GRID = 0.3  # least on-grid share for an axis masked by texture, periods close to the other axis's


def gray(frame: np.ndarray) -> np.ndarray:
    if frame.ndim == 2:
        return frame
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


def diffs(g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """|g[y, x+1] - g[y, x]| and |g[y+1, x] - g[y, x]| as `(H, W)` uint8 (last column / row 0)."""
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


def window_periods(colband: np.ndarray, rowband: np.ndarray, k: int, cfg: LocateConfig):
    """Comb score and fundamental period (x and y) of every window of k x k tiles, stride one tile.

    colband `(Hb, Wp)`: per tile row, column sums of x differences; rowband `(Hp, Wb)`: per tile column,
    row sums of y differences. Returns score, period_x, period_y, each `(Hb - k + 1, Wb - k + 1)`.
    """
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


def fit_lines(pm: np.ndarray, period: float, origin: float, start: int) -> tuple[float, float, float]:
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


def on_grid_share(pc: np.ndarray, period: float, origin: float, start: int) -> float:
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


def robust(pm: np.ndarray) -> np.ndarray:
    """A difference profile with outliers clipped to PROFILE_CAP x its PROFILE_QUANTILE: one strong edge
    off the grid (a letterbox line, the frame's first row) must not outweigh all the grid lines."""
    if pm.size == 0:
        return pm
    return np.minimum(pm, PROFILE_CAP * np.quantile(pm, PROFILE_QUANTILE))


def axis_periods(pm: np.ndarray, start: int, hint: float, cfg: LocateConfig) -> list[tuple[float, float, float]]:
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
        if on_grid_share(pm, cand, origin, start) < cfg.on_grid - PRECHECK_MARGIN:
            continue  # refining moves the share little: far below the bar, skip the fit
        p, o, wsum = fit_lines(pm, cand, origin, start)
        if wsum > 0 and (abs(p / cand - 1) > REFIT_PERIOD or abs(o - origin) > REFIT_ORIGIN):
            p, o, _ = fit_lines(pm, p, o, start)
        share = on_grid_share(pm, p, o, start)
        if share >= cfg.on_grid:
            out.append((p, o, share))
            if len(out) == AXIS_CANDIDATES:
                break
    return out


def masked_axis(pm: np.ndarray, start: int, hint: float, other: list, cfg: LocateConfig) -> list:
    """`axis_periods` of an axis that found none, with the on-grid bar lowered to MASKED_ON_GRID, keeping
    only periods within PERIOD_TOLERANCE of the windows' `hint` for this axis or of one of the `other`
    axis's periods (cells about as wide as tall); [] when the other axis has none either."""
    if not other:
        return []
    low = replace(cfg, on_grid=MASKED_ON_GRID)
    out = []
    for cand in axis_periods(pm, start, hint, low) + axis_periods(robust(pm), start, hint, low):
        near = any(abs(math.log(cand[0] / q)) < PERIOD_TOLERANCE for q in (hint, *(o[0] for o in other)))
        if near and not any(abs(cand[0] / q[0] - 1) < 0.05 for q in out):
            out.append(cand)
    return out[:AXIS_CANDIDATES]
