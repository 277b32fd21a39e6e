"""The evidence step: pull a reconstruction back to the block values observed in the mosaic (block means,
centre or top-left samples), smooth the steps it kept on the grid lines, or interpolate the block values where
no model is used.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from depixcli.evaluate.metrics import LUMA_WEIGHTS
from depixcli.geometry.crop import CropBox
from depixcli.geometry.mosaic import MosaicGrid, cell_index, cell_values
from depixcli.model.evidence import project_to_mosaic

MIN_BLOCK_PX = 2.0  # crop px: smaller cells are left alone by smooth_grid_steps (too small to tell)
STEP_WIDTHS = (0.6, 1.0, 1.5, 2.0)  # crop px: Gaussian sigmas of the steps smooth_grid_steps fits
STEP_GAINS = (0.5, 0.75, 1.0, 1.25)  # shares of a fitted step it may replace by a ramp
# of the fits within this share of the way from the unchanged image's grid energy down to the least, the smallest
# change is taken: the least energy alone changed more from frame to frame (more flicker on 8 blocks) for a few
# hundredths of leftover
STEP_TOLERANCE = 0.1
STEP_SIGMA = 0.5  # cells: smoothing of a step along its grid line
STEP_PASSES = 2
SAMPLE_EVIDENCE = True  # point-sampled blocks: fix each sample point's neighbourhood (project_samples), else skip


def value_position(values: str, cell) -> tuple[float, float]:
    """Where in its cell a block's value comes from, in cells (x, y): the centre for block means and centre
    samples, the top-left pixel's centre for corner samples (`values` "corner", and "samples": top-left samples
    favoured on too few blocks; `cell` (w, h) px)."""
    if values in ("corner", "samples"):
        cw, ch = (float(cell), float(cell)) if np.isscalar(cell) else (float(cell[0]), float(cell[1]))
        return (0.5 / cw, 0.5 / ch)
    return (0.5, 0.5)


def grid_origin(rect, origin, frame_hw: tuple[int, int]) -> tuple[float, float]:
    """A grid line (x, y) px of a mosaic: `origin` when known (not None / nan), else a side of its `rect`
    that is not the frame border (the locator's rects lie on grid lines except at the frame border)."""
    if origin is not None and not np.isnan(np.asarray(origin, np.float64)).any():
        return float(origin[0]), float(origin[1])
    H, W = frame_hw
    x0, y0, x1, y1 = (float(v) for v in rect)
    return (x1 if x0 <= 0 and x1 < W else x0), (y1 if y0 <= 0 and y1 < H else y0)


def crop_grid(box: CropBox, S: int, rect, origin, cell) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A frame-space mosaic grid (`rect` xyxy, `origin` (x, y) grid line, `cell` (w, h), px) in the
    coordinates of the `S`-px crop of `box`: `(origin (2,), cell (2,), rect (4,))` float64 crop px."""
    k = S / box.size
    bx0, by0, _, _ = box.xyxy
    o = np.array([(origin[0] - bx0) * k, (origin[1] - by0) * k])
    c = np.asarray(cell, np.float64).reshape(-1)
    c = (np.repeat(c, 2) if c.size == 1 else c[:2]) * k
    r = np.array([(rect[0] - bx0) * k, (rect[1] - by0) * k, (rect[2] - bx0) * k, (rect[3] - by0) * k])
    return o, c, r


def frame_grid(rect, origin, cell, frame_hw) -> MosaicGrid | None:
    """MosaicGrid over the (rounded, frame-clipped) `rect` with a float grid; None when nothing is visible."""
    H, W = frame_hw
    x0, y0 = max(int(np.floor(rect[0] + 0.5)), 0), max(int(np.floor(rect[1] + 0.5)), 0)
    x1, y1 = min(int(np.floor(rect[2] + 0.5)), W), min(int(np.floor(rect[3] + 0.5)), H)
    if x1 <= x0 or y1 <= y0:
        return None
    return MosaicGrid(x0, y0, x1, y1, float(cell[0]), float(cell[1]), float(origin[0]), float(origin[1]))


def interpolate_values(image: np.ndarray, rect, origin, cell, value_pos=(0.5, 0.5),
                       interpolation: int = cv2.INTER_CUBIC) -> tuple[np.ndarray, tuple] | None:
    """Bicubic (`interpolation`: a cv2 flag) interpolation of the block values of the mosaic in `image`
    (`(H, W, C)` uint8, frame or crop): each block's value (its mean, which for a mosaic is its one colour)
    placed where it was taken (`value_pos`, cells) on the grid (`origin`, `cell` (w, h) px) of `rect`. Returns
    `(patch (h, w, C) float32, (x0, y0, x1, y1))` over the rect's integer pixels inside the image, or None when
    none are."""
    grid = frame_grid(rect, origin, cell, image.shape[:2])
    if grid is None:
        return None
    values, _, _ = cell_values(image, grid)
    x0, y0, x1, y1 = grid.rect
    kx0 = cell_index(x0, x0 + 1, grid.origin_x, grid.cell_w)[0]
    ky0 = cell_index(y0, y0 + 1, grid.origin_y, grid.cell_h)[0]
    u = (np.arange(x0, x1) + 0.5 - grid.origin_x) / grid.cell_w - value_pos[0] - kx0
    v = (np.arange(y0, y1) + 0.5 - grid.origin_y) / grid.cell_h - value_pos[1] - ky0
    mx = np.broadcast_to(u[None, :], (y1 - y0, x1 - x0)).astype(np.float32)
    my = np.broadcast_to(v[:, None], (y1 - y0, x1 - x0)).astype(np.float32)
    src = np.ascontiguousarray(values.astype(np.float32))
    out = cv2.remap(src, mx, my, interpolation, borderMode=cv2.BORDER_REPLICATE)
    return out.reshape(y1 - y0, x1 - x0, -1), grid.rect


def project_samples(recon: np.ndarray, source_crop: np.ndarray, origin, cell, rect, value_pos,
                    interpolation: int = cv2.INTER_CUBIC) -> np.ndarray:
    """The evidence step for point-sampled blocks: `(S, S, 3)` uint8 reconstruction -> `(S, S, 3)` uint8 that
    takes, at each block's sample point (`value_pos` in cells on the grid `origin`, `cell` (w, h) crop px),
    the block value observed in `source_crop`; the correction is interpolated bicubically (`interpolation`)
    between the sample points (smooth, no block edges) and applied inside `rect` (crop px) only."""
    grid = frame_grid(rect, origin, cell, recon.shape[:2])
    if grid is None:
        return recon

    values, cs, rs = cell_values(source_crop, grid)
    x0, y0, x1, y1 = grid.rect
    # sample points of the visible cells, index coordinates of the crop
    px = grid.origin_x + (np.floor((x0 + cs + 0.5 - grid.origin_x) / grid.cell_w) + value_pos[0]) * grid.cell_w - 0.5
    py = grid.origin_y + (np.floor((y0 + rs + 0.5 - grid.origin_y) / grid.cell_h) + value_pos[1]) * grid.cell_h - 0.5
    mx = np.broadcast_to(px[None, :], values.shape[:2]).astype(np.float32)
    my = np.broadcast_to(py[:, None], values.shape[:2]).astype(np.float32)
    at = cv2.remap(recon.astype(np.float32), mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    delta = np.ascontiguousarray((values - at.reshape(values.shape)).astype(np.float32))
    kx0 = np.floor((x0 + 0.5 - grid.origin_x) / grid.cell_w)
    ky0 = np.floor((y0 + 0.5 - grid.origin_y) / grid.cell_h)
    u = (np.arange(x0, x1) + 0.5 - grid.origin_x) / grid.cell_w - value_pos[0] - kx0
    v = (np.arange(y0, y1) + 0.5 - grid.origin_y) / grid.cell_h - value_pos[1] - ky0
    mu = np.broadcast_to(u[None, :], (y1 - y0, x1 - x0)).astype(np.float32)
    mv = np.broadcast_to(v[:, None], (y1 - y0, x1 - x0)).astype(np.float32)
    corr = cv2.remap(delta, mu, mv, interpolation, borderMode=cv2.BORDER_REPLICATE).reshape(y1 - y0, x1 - x0, -1)
    out = recon.astype(np.float32)
    out[y0:y1, x0:x1] += corr
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def project_crop(recon: np.ndarray, source_crop: np.ndarray, origin, cell, rect) -> np.ndarray:
    """`degrade.project_to_mosaic` in crop space: `(S, S, 3)` uint8 reconstruction and mosaiced source crop,
    the mosaic grid in crop px (`origin` (x, y) grid line, `cell` (w, h), `rect` xyxy) -> `(S, S, 3)` uint8
    whose block means over the grid are the observed ones (smoothly). For block means only."""
    S = recon.shape[0]
    crect = np.clip(np.asarray(rect, np.float64), 0, S)
    if crect[2] - crect[0] < 2 * cell[0] or crect[3] - crect[1] < 2 * cell[1]:
        return recon

    def t(x):
        return torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)[None].float() / 255.0

    f32 = torch.float32
    out = project_to_mosaic(t(recon), t(source_crop), torch.tensor([list(origin)], dtype=f32),
                            torch.tensor([list(cell)], dtype=f32), torch.tensor(crect[None], dtype=f32))
    return (out[0].permute(1, 2, 0).numpy() * 255.0).round().clip(0, 255).astype(np.uint8)


def _grid_lines(lo: float, hi: float, origin: float, cell: float) -> np.ndarray:
    """Grid lines (px) with a whole cell of the mosaic on both sides inside [lo, hi]."""
    k0 = np.ceil((lo + cell - origin) / cell - 1e-6)
    k1 = np.floor((hi - cell - origin) / cell + 1e-6)
    return origin + cell * np.arange(k0, k1 + 1) if k1 >= k0 else np.zeros(0)


def _sample_cols(image: np.ndarray, x: np.ndarray) -> np.ndarray:
    """`image` (h, w, C) at continuous column positions `x` (n,) (pixel centres at i + 0.5), linearly:
    (n, h, C)."""
    w = image.shape[1]
    u = np.clip(x - 0.5, 0, w - 1)
    i = np.minimum(np.floor(u).astype(int), w - 1)
    f = (u - i)[:, None, None].astype(np.float32)
    j = np.minimum(i + 1, w - 1)
    return image[:, i].transpose(1, 0, 2) * (1 - f) + image[:, j].transpose(1, 0, 2) * f


def _gauss_step(u: np.ndarray, width: float) -> np.ndarray:
    """A unit step blurred by a Gaussian of sigma `width`, at offsets `u` from it, centred: -0.5 .. 0.5."""
    return 0.5 * torch.special.erf(torch.from_numpy(np.asarray(u, np.float64) / (width * np.sqrt(2.0)))).numpy()


def _step_filter(cell: float, width: float) -> tuple[np.ndarray, np.ndarray]:
    """Offsets `u` (px from a grid line) and weights `w`: `w @ image(line + u)` is the least-squares amplitude of
    the step in a fit of `a + b u + step * _gauss_step(u, width)` over the pixels beside the line, up to the
    neighbouring lines' own steps (1.5 `width` short of them), two each side at least."""
    half = max(cell - 1.5 * width, 2.0)
    side = np.arange(0.0, half) + 0.5
    u = np.concatenate([-side[::-1], side])
    design = np.stack([np.ones_like(u), u, _gauss_step(u, width)], 1)
    return u, np.linalg.pinv(design)[2]


def _along(x: np.ndarray, rows, sigma: float) -> np.ndarray:
    """`(n, h, C)` values along `n` grid lines, zero outside `rows` (start, stop), smoothed along the lines
    (Gaussian `sigma` px)."""
    n, h, C = x.shape
    inside = np.zeros((1, h, 1), np.float32)
    inside[:, rows[0]:rows[1]] = 1.0
    flat = np.ascontiguousarray((x * inside).transpose(1, 0, 2).reshape(h, n * C))
    blur = cv2.GaussianBlur(flat, (1, 0), sigmaX=0.1, sigmaY=sigma, borderType=cv2.BORDER_REPLICATE)
    return blur.reshape(h, n, C).transpose(1, 0, 2) * inside


def _step_deltas(image: np.ndarray, blocks: np.ndarray, lines: np.ndarray, cell: float, sigma: float, rows,
                 width: float) -> np.ndarray:
    """The change that replaces, across the vertical grid `lines` of `image` (h, w, C) float32 and on `rows`
    (start, stop) only, the step fitted with `width` (`_step_filter`), smoothed along the line (`sigma` px) and
    kept within the mosaic's own step there (`blocks` (n, h, C)), by a ramp over the cell: (h, w, C) float32."""
    h, C = image.shape[0], image.shape[2]
    u, w = _step_filter(cell, width)
    near = _sample_cols(image, (lines[None] + u[:, None]).ravel()).reshape(len(u), len(lines), h, C)
    step = _along(np.tensordot(w.astype(np.float32), near, 1), rows, sigma)
    step = np.clip(step, np.minimum(blocks, 0), np.maximum(blocks, 0))  # a leftover of the mosaic's step
    xs = np.arange(image.shape[1], dtype=np.float64) + 0.5
    spread = np.clip((xs[None] - (lines[:, None] - cell / 2)) / cell, 0, 1)  # over the cell width
    fitted = _gauss_step(xs[None] - lines[:, None], width) + 0.5  # over the step's own width
    ramp = (spread - fitted).astype(np.float32)  # (n, w)
    return (ramp.T @ step.reshape(len(lines), h * C)).reshape(-1, h, C).transpose(1, 0, 2)


def _resized(lum: np.ndarray, scale: float) -> np.ndarray:
    """`(h, w)` float32 resized across (bilinear, as the paste) by `scale`, at least 2 px wide: the profile of
    |d/dx| averaged down the rows hardly depends on their number, so they are left as they are."""
    h, w = lum.shape
    return cv2.resize(lum, (max(int(round(w * scale)), 2), h), interpolation=cv2.INTER_LINEAR)


def grid_coefficient(big: np.ndarray, w: int, lo: int, origin: float, cell: float) -> np.ndarray:
    """The block structure of images across vertical grid lines: `(K, H, W)` luma stack, resized from `w` px
    wide columns that start at `lo` px of a grid with a line at `origin` and `cell` px apart -> `(K,)` complex:
    the mean over rows of |d/dx| at the grid's period and phase (bench_mosaics' leftover measure along x)."""
    W = big.shape[2]
    d = np.abs(np.diff(big, axis=2)).mean(1)
    pos = lo + np.arange(1, W) * (w / W) - origin  # each difference's place, px before the resize
    return (d * np.exp(-2j * np.pi * pos / cell)[None]).sum(1) / d.shape[1]


def _least_steps_x(image: np.ndarray, mosaic: np.ndarray, lines: np.ndarray, cell: float, cell_along: float, rows,
                   cols, origin: float, scale: float) -> np.ndarray:
    """One pass of `smooth_grid_steps` across the vertical grid `lines` of `image` (h, w, C) float32 on `rows`
    (start, stop): of the step fits of every STEP_WIDTHS replaced by every share of STEP_GAINS, and of no
    change, the one whose luma over the rect (`cols`), resized by `scale`, has the least `grid_coefficient`."""
    if lines.size == 0 or cols[1] - cols[0] < 3 or rows[1] <= rows[0]:
        return image
    sigma = STEP_SIGMA * cell_along
    a = 0.25 * cell
    blocks = _along(_sample_cols(mosaic, lines + a) - _sample_cols(mosaic, lines - a), rows, sigma)  # mosaic's step
    deltas = [_step_deltas(image, blocks, lines, cell, sigma, rows, wd) for wd in STEP_WIDTHS]
    weights = np.asarray(LUMA_WEIGHTS, np.float32)
    region = (slice(rows[0], rows[1]), slice(cols[0], cols[1]))
    base = _resized(image[region] @ weights, scale)
    moved = np.stack([_resized(d[region] @ weights, scale) for d in deltas])  # the paste's resize is linear
    gains = np.asarray(STEP_GAINS, np.float32)
    big = np.concatenate([base[None], (base + gains[:, None, None, None] * moved).reshape(-1, *base.shape)])
    energy = np.abs(grid_coefficient(big, cols[1] - cols[0], cols[0], origin, cell))
    change = np.concatenate([[0.0], np.outer(gains, [np.abs(d[region]).mean() for d in deltas]).ravel()])
    near = np.flatnonzero(energy <= energy.min() + STEP_TOLERANCE * (energy[0] - energy.min()))
    k = int(near[np.argmin(change[near])])  # the least change among the nearly least energy (steadier in time)
    return image if k == 0 else image + gains[(k - 1) // len(deltas)] * deltas[(k - 1) % len(deltas)]


def smooth_grid_steps(recon: np.ndarray, source_crop: np.ndarray, origin, cell, rect, scale: float = 1.0) -> np.ndarray:
    """Spread the steps a reconstruction keeps on the mosaic's grid lines over the cells beside them.

    A model output can keep a soft step (2-4 px wide in a 128 px crop, whatever the cell) on every grid line
    and be flat inside the blocks: its gradient is concentrated on the grid, the leftover-block structure
    `bench/bench_mosaics.py` measures (several times the truth's on val without this step). Per grid line with
    a whole cell inside `rect` on both sides, and per row, the step is fitted (least squares, `_step_deltas`)
    as a line plus a Gaussian-blurred step of width `w` over the two cells beside the line, smoothed along
    the line (STEP_SIGMA cells), kept within the mosaic's own step there (`source_crop`, the mosaic in the same
    geometry: what is left of it, not an edge of the face), and replaced by a ramp over the cell width: the
    image keeps its values at the cell centres and every block side its total change, without the step.
    The width (STEP_WIDTHS px) and the share of the fitted step replaced (STEP_GAINS, or none) are chosen per
    axis as those that leave the least gradient energy at the grid's period and phase (`grid_coefficient`),
    measured at the paste's resolution (`scale` frame px per crop px), or nearly the least with a smaller
    change (STEP_TOLERANCE): any structure locked to the mosaic's grid is what is left of it, since a face has
    no reason to follow the grid. STEP_PASSES passes, x then y.
    `(S, S, 3)` uint8 in and out; grid in its px (`origin` (x, y) grid line, `cell` (w, h), `rect` xyxy)."""
    S = recon.shape[0]
    x0, y0, x1, y1 = np.clip(np.asarray(rect, np.float64), 0, S)
    cw, ch = float(cell[0]), float(cell[1])
    if min(cw, ch) < MIN_BLOCK_PX:
        return recon
    lx, ly = _grid_lines(x0, x1, float(origin[0]), cw), _grid_lines(y0, y1, float(origin[1]), ch)
    rows = (int(np.ceil(y0 - 0.5)), int(np.ceil(y1 - 0.5)))  # pixels whose centres lie inside the rect
    cols = (int(np.ceil(x0 - 0.5)), int(np.ceil(x1 - 0.5)))
    out = recon.astype(np.float32)
    mosaic = source_crop.astype(np.float32)
    mosaic_t = np.ascontiguousarray(mosaic.transpose(1, 0, 2))
    for _ in range(STEP_PASSES):
        out = _least_steps_x(out, mosaic, lx, cw, ch, rows, cols, float(origin[0]), scale)
        out = _least_steps_x(out.transpose(1, 0, 2), mosaic_t, ly, ch, cw, cols, rows, float(origin[1]),
                             scale).transpose(1, 0, 2)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def evidence_step(recon: np.ndarray, source_crop: np.ndarray, origin, cell, rect, values: str) -> np.ndarray:
    """Pull a `(S, S, 3)` uint8 reconstruction back to what the mosaic observed, by its value kind (grid in crop
    px): block means (and "unclear") -> `project_crop`; point samples ("centre", "corner") ->
    `project_samples` when SAMPLE_EVIDENCE, else unchanged; point samples of unknown position ("samples")
    unchanged. Samples are never pulled to block means."""
    if values == "samples":
        return recon
    if values in ("centre", "corner"):
        if not SAMPLE_EVIDENCE:
            return recon
        return project_samples(recon, source_crop, origin, cell, rect, value_position(values, cell))
    return project_crop(recon, source_crop, origin, cell, rect)
