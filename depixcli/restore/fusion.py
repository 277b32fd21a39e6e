"""Multi-frame fusion of point samples: a point-sampled mosaic (deface's top-left pixels, centre samples) gives
exact pixel values at known places; where its grid moves against the face from frame to frame (deface's grid
follows a detector box that jitters), the frames around t sample the face at other places. Their samples,
moved into frame t's coordinates with the face's motion, fill in between frame t's own samples.

`frame_samples` reads one frame's samples (positions and values, frame px); `fuse_samples` reconstructs
frame t's mosaic rect from the samples of frames t - FUSION_REACH .. t + FUSION_REACH: interpolation of frame
t's own samples (SAMPLE_INTERPOLATION), plus a normalised convolution of the other frames' residuals against it
(so where the grids coincide, the result is the interpolation of the samples), then frame t's own samples put
back exactly.
No learning, no model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from depixcli.geometry.mosaic import MosaicGrid, cell_values
from depixcli.restore.evidence import frame_grid, grid_origin, project_samples, value_position

if TYPE_CHECKING:
    from depixcli.restore.tracks import FaceTrack  # tracks imports blend, which imports evidence

FUSION_REACH = 6  # frames each side of t whose samples are fused into frame t
TIME_SIGMA = 4.0  # frames: a neighbour's samples weigh exp(-(dt / TIME_SIGMA)^2 / 2)
SPLAT_SIGMA_CELLS = 0.35  # cells: Gaussian kernel of the normalised convolution of the residuals
PRIOR_WEIGHT = 0.1  # residual density (in one sample's peak) below which the result stays near the interpolation
MARGIN_CELLS = 1.0  # cells: samples this far outside the rect still count
# Between samples 20 px apart (deface) on faces of val clips (4 clips, 3 frames each, clean samples), bilinear
# interpolation was 0.35 to 0.7 dB above bicubic (Keys -0.75: cv2's), whose slopes swing with the grid phase
# (leftover-block ratio up to 0.9 against 0.0); a Gaussian blur after it gained nothing.
SAMPLE_INTERPOLATION = cv2.INTER_LINEAR


@dataclass(frozen=True)
class FrameSamples:
    """The point samples of one frame's mosaic, in that frame's px (pixel centres at i + 0.5)."""

    points: np.ndarray  # (n, 2) float64 x, y
    values: np.ndarray  # (n, C) float32 block values
    anchor: np.ndarray  # (3,) float64 cx, cy, size: where the face is (the track's smooth crop box)


def frame_samples(image: np.ndarray, rect, origin, cell, value_pos, anchor) -> FrameSamples:
    """The samples of the mosaic in `image` (`(H, W, C)` uint8): each visible block's value (its mean: one
    colour, less codec noise than one pixel) at the point it was taken (`value_pos` cells into the block, on
    the grid `origin` (x, y) grid line, `cell` (w, h) px, over `rect` xyxy). `anchor`: the face's box."""
    grid = frame_grid(rect, origin, cell, image.shape[:2])
    C = image.shape[2] if image.ndim == 3 else 1
    if grid is None:
        return FrameSamples(np.zeros((0, 2)), np.zeros((0, C), np.float32), np.asarray(anchor, np.float64))
    values, cs, rs = cell_values(image, grid)
    kx, ky = block_indices(grid, cs, rs)
    X, Y = np.meshgrid(*sample_points(grid, kx, ky, value_pos))
    return FrameSamples(np.stack([X.ravel(), Y.ravel()], 1), values.reshape(-1, C).astype(np.float32),
                        np.asarray(anchor, np.float64))


def block_indices(grid: MosaicGrid, cs: np.ndarray, rs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Grid indices (column, row; counted from the grid line at `grid.origin`) of the blocks whose first pixel
    columns `cs` and rows `rs` (px from the rect's corner) `geometry.mosaic.cell_values` returns."""
    x0, y0, _, _ = grid.rect
    return (np.floor((x0 + cs + 0.5 - grid.origin_x) / grid.cell_w),
            np.floor((y0 + rs + 0.5 - grid.origin_y) / grid.cell_h))


def sample_points(grid: MosaicGrid, kx: np.ndarray, ky: np.ndarray, value_pos) -> tuple[np.ndarray, np.ndarray]:
    """Continuous px x of block columns `kx` and y of block rows `ky` where their values were taken
    (`value_pos` cells into each block)."""
    return (grid.origin_x + (kx + value_pos[0]) * grid.cell_w,
            grid.origin_y + (ky + value_pos[1]) * grid.cell_h)


def register(points: np.ndarray, source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """`points` (n, 2) of a frame whose face box is `source` (cx, cy, size) moved into the frame whose face
    box is `target`: the face's motion, a shift and a scale about the box centre."""
    k = target[2] / source[2]
    return (points - source[:2]) * k + target[:2]


def _splat(points: np.ndarray, values: np.ndarray, weights: np.ndarray, shape) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear splat of weighted `values` at `points` (index px) into `(h, w, C)` sums and `(h, w)` weights."""
    h, w = shape
    C = values.shape[1]
    num = np.zeros((h * w, C), np.float64)
    den = np.zeros(h * w, np.float64)
    ix, iy = np.floor(points[:, 0]).astype(int), np.floor(points[:, 1]).astype(int)
    fx, fy = points[:, 0] - ix, points[:, 1] - iy
    for dx, dy, f in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        x, y = ix + dx, iy + dy
        ok = (x >= 0) & (x < w) & (y >= 0) & (y < h)
        idx = y[ok] * w + x[ok]
        wf = (weights * f)[ok]
        np.add.at(den, idx, wf)
        np.add.at(num, idx, values[ok] * wf[:, None])
    return num.reshape(h, w, C), den.reshape(h, w)


def ringed_interpolation(image: np.ndarray, grid: MosaicGrid, value_pos, area) -> np.ndarray:
    """SAMPLE_INTERPOLATION of the block values of `grid`'s mosaic in `image` (`(H, W, C)` uint8), each at its
    sample point (`value_pos` cells into its block), over the frame px `area` (x0, y0, x1, y1; may pass the
    frame): `(h, w, C)` float32. The lattice of samples gets a ring of one more point each side, which takes
    the true pixel there where it lies outside the mosaic (inside the frame), else the nearest sample: past
    the last samples (deface's cut-short blocks at the right and bottom) the values lead to the pixels beside
    the mosaic instead of staying flat."""
    values, cs, rs = cell_values(image, grid)
    H, W = image.shape[:2]
    C = values.shape[2]
    gx0, gy0, gx1, gy1 = grid.rect
    kx, ky = block_indices(grid, cs, rs)
    px, py = sample_points(grid, np.r_[kx[0] - 1, kx, kx[-1] + 1], np.r_[ky[0] - 1, ky, ky[-1] + 1], value_pos)
    ny, nx = len(py), len(px)
    lattice = np.zeros((ny, nx, C), np.float32)
    lattice[1:-1, 1:-1] = values
    img = image.reshape(H, W, -1)
    for i in range(ny):
        for j in range(nx):
            if 0 < i < ny - 1 and 0 < j < nx - 1:
                continue
            X, Y = int(np.floor(px[j])), int(np.floor(py[i]))
            outside = not (gx0 <= X < gx1 and gy0 <= Y < gy1)
            lattice[i, j] = img[Y, X] if outside and 0 <= X < W and 0 <= Y < H else \
                lattice[min(max(i, 1), ny - 2), min(max(j, 1), nx - 2)]
    ax0, ay0, ax1, ay1 = area
    u = (np.arange(ax0, ax1) + 0.5 - px[0]) / grid.cell_w
    v = (np.arange(ay0, ay1) + 0.5 - py[0]) / grid.cell_h
    mu = np.broadcast_to(u[None, :], (ay1 - ay0, ax1 - ax0)).astype(np.float32)
    mv = np.broadcast_to(v[:, None], (ay1 - ay0, ax1 - ax0)).astype(np.float32)
    out = cv2.remap(lattice, mu, mv, SAMPLE_INTERPOLATION, borderMode=cv2.BORDER_REPLICATE)
    return out.reshape(ay1 - ay0, ax1 - ax0, C)


def fuse_samples(image: np.ndarray, rect, origin, cell, value_pos, frames: list[tuple[int, FrameSamples]],
                 anchor) -> tuple[np.ndarray, tuple] | None:
    """Frame t's mosaic rect reconstructed from its own samples and its neighbours'.

    `image` `(H, W, C)` uint8 is frame t with its mosaic (grid `origin`, `cell` (w, h) px over `rect`, values
    taken `value_pos` cells into each block), `anchor` (cx, cy, size) its face box; `frames` are
    `(t' - t, FrameSamples)` of the frames around it (others than t itself; may be empty). Returns
    `(patch (h, w, C) float32, (x0, y0, x1, y1))` over the rect's integer pixels inside the image, as
    `evidence.interpolate_values` does, or None when none are. The patch takes frame t's block values at its
    own sample points (rounded); with no neighbours, or neighbours whose samples fall on frame t's own, it is
    the interpolation of its samples (`ringed_interpolation`)."""
    grid = frame_grid(rect, origin, cell, image.shape[:2])
    if grid is None:
        return None
    x0, y0, x1, y1 = grid.rect
    cw, ch = float(cell[0]), float(cell[1])
    mx, my = int(np.ceil(MARGIN_CELLS * cw)), int(np.ceil(MARGIN_CELLS * ch))
    X0, Y0, X1, Y1 = x0 - mx, y0 - my, x1 + mx, y1 + my  # the area whose samples count (may pass the frame)
    full = ringed_interpolation(image, grid, value_pos, (X0, Y0, X1, Y1))  # frame t's own samples
    patch = full[my:my + y1 - y0, mx:mx + x1 - x0]
    target = np.asarray(anchor, np.float64)
    pts, vals, wts = [], [], []
    for dt, s in frames:
        if dt == 0 or not len(s.points):
            continue
        p = register(s.points, s.anchor, target)
        inside = (p[:, 0] >= X0) & (p[:, 0] < X1) & (p[:, 1] >= Y0) & (p[:, 1] < Y1)
        if not inside.any():
            continue
        pts.append(p[inside])
        vals.append(s.values[inside])
        wts.append(np.full(int(inside.sum()), np.exp(-0.5 * (dt / TIME_SIGMA) ** 2)))
    if not pts:
        return np.clip(patch, 0, 255), (x0, y0, x1, y1)
    p = np.concatenate(pts)
    v = np.concatenate(vals).astype(np.float64)
    w = np.concatenate(wts)
    idx = p - np.array([X0, Y0]) - 0.5  # index px of `full`
    at = cv2.remap(full.astype(np.float32), idx[:, 0:1].astype(np.float32), idx[:, 1:2].astype(np.float32),
                   cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).reshape(len(p), -1)
    num, den = _splat(idx, v - at, w, full.shape[:2])
    sigma = max(SPLAT_SIGMA_CELLS * min(cw, ch), 0.5)
    num = cv2.GaussianBlur(num.astype(np.float32), (0, 0), sigma).reshape(num.shape)
    den = cv2.GaussianBlur(den.astype(np.float32), (0, 0), sigma)
    peak = 1.0 / (2 * np.pi * sigma * sigma)  # one sample of weight 1, at its own place
    fused = full + num / (den + PRIOR_WEIGHT * peak)[..., None]
    # frame t's own samples exactly (the correction interpolated between them)
    mosaic = _padded(image, mx, my)[Y0 + my:Y1 + my, X0 + mx:X1 + mx]
    out = project_samples(np.clip(np.rint(fused), 0, 255).astype(np.uint8), mosaic,
                          (origin[0] - X0, origin[1] - Y0), cell, (mx, my, mx + x1 - x0, my + y1 - y0), value_pos,
                          SAMPLE_INTERPOLATION)
    return out[my:my + y1 - y0, mx:mx + x1 - x0].astype(np.float32), (x0, y0, x1, y1)


def _padded(image: np.ndarray, mx: int, my: int) -> np.ndarray:
    return cv2.copyMakeBorder(image, my, my, mx, mx, cv2.BORDER_REPLICATE).reshape(
        image.shape[0] + 2 * my, image.shape[1] + 2 * mx, -1)


def _track_grid(track: FaceTrack, image: np.ndarray, t: int) -> tuple | None:
    """`track`'s mosaic on frame `t`: (rect, grid origin, cell (w, h), value position, face box), or None where
    its block size is unknown."""
    cell = track.cell_wh(t)
    if cell is None:
        return None
    rect = track.rect(t)
    origin = grid_origin(rect, track.origin(t), image.shape[:2])
    return rect, origin, cell, value_position(track.values, cell), track.boxes[t - track.start]


def track_samples(track: FaceTrack, image: np.ndarray, t: int) -> FrameSamples | None:
    """The samples of `track`'s mosaic on frame `t` (`image` `(H, W, C)` uint8), registered by its smooth crop
    box; None where its block size is unknown."""
    grid = _track_grid(track, image, t)
    return None if grid is None else frame_samples(image, *grid)


def fuse_track_frame(track: FaceTrack, image: np.ndarray, t: int, samples: dict) -> tuple[np.ndarray, tuple] | None:
    """`fuse_samples` of `track` on frame `t` (`image` the mosaiced frame) from `samples` {frame: FrameSamples
    or None} of the frames around it (those within FUSION_REACH count); None where the block size is unknown."""
    grid = _track_grid(track, image, t)
    if grid is None:
        return None
    rect, origin, cell, value_pos, anchor = grid
    near = [(f - t, s) for f, s in samples.items() if s is not None and 0 < abs(f - t) <= FUSION_REACH]
    return fuse_samples(image, rect, origin, cell, value_pos, near, anchor)
