"""Mosaic (pixelation) geometry: grids of constant-colour cells over a rectangle of a frame, and the circular spread
of grid phases (`circular_spread`).

A `MosaicGrid` is a rectangle `rect = (x0, y0, x1, y1)` (int px, half-open, continuous coordinates as in
`depixcli.geometry.crop`: pixel column i covers [i, i + 1)) cut by vertical grid lines at `origin_x + k * cell_w`
and horizontal lines at `origin_y + k * cell_h` (k any integer; cell sizes may be fractional). A pixel belongs
to the cell that contains its centre: column i is in cell `floor((i + 0.5 - origin_x) / cell_w)`. Inside the
rectangle every cell is replaced by one colour: the mean of its pixels (`mode="mean"`) or the pixel at its
centre (`mode="center"`). Cells cut by the rectangle or the frame border use only their visible pixels.

Two conventions make grids from a box (float xyxy, e.g. a detector face box scaled by `geometry.boxes.scale_box`):
- `grid_from_blocks(box, n)`: n x n cells spanning the (rounded) box, anchored to the face. With a box
  whose sides are multiples of n this equals the common OpenCV recipe
  `cv2.resize(roi, (n, n), INTER_AREA)` then `cv2.resize(.., (w, h), INTER_NEAREST)`, and the paper's
  16 x 16 / 8 x 8 crops.
- `grid_from_block_size(box, px)`: cells of px x px anchored to the image origin (0, 0), covering the box
  rounded out to whole cells, as ffmpeg's `pixelize` filter and OBS's pixelate filter do.

Frames are `(H, W, 3)` (or `(H, W)`) uint8; nothing here keeps state between frames.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from depixcli.errors import ConfigError

MODES = ("mean", "center")
GRID_KEYS = ("rect", "cell_w", "cell_h", "origin_x", "origin_y", "mode")


@dataclass(frozen=True)
class MosaicGrid:
    x0: int  # px, rectangle changed by the mosaic (half-open; may extend past the frame, clipped on apply)
    y0: int  # px
    x1: int  # px
    y1: int  # px
    cell_w: float  # px, may be fractional
    cell_h: float  # px
    origin_x: float  # px, position of one vertical grid line
    origin_y: float  # px, position of one horizontal grid line
    mode: str = "mean"  # "mean" | "center": value given to each cell

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"mosaic mode must be one of {MODES}, got {self.mode!r}")
        if not (self.cell_w > 0 and self.cell_h > 0):
            raise ConfigError(f"mosaic cell size must be > 0, got {self.cell_w} x {self.cell_h}")

    @property
    def rect(self) -> tuple[int, int, int, int]:
        return (self.x0, self.y0, self.x1, self.y1)

    def to_dict(self) -> dict:
        """JSON-ready dict (the sidecar format): rect [x0, y0, x1, y1], cell_w, cell_h, origin_x, origin_y, mode."""
        d = asdict(self)
        return {"rect": [d.pop("x0"), d.pop("y0"), d.pop("x1"), d.pop("y1")], **d}

    @classmethod
    def from_dict(cls, d: dict) -> MosaicGrid:
        """Inverse of `to_dict`; unknown or missing keys raise ConfigError."""
        if not isinstance(d, dict):
            raise ConfigError(f"a mosaic grid must be an object, got {type(d).__name__}")
        unknown = set(d) - set(GRID_KEYS)
        missing = set(GRID_KEYS) - set(d) - {"mode"}
        if unknown or missing:
            raise ConfigError(f"bad mosaic grid keys: unknown {sorted(unknown)}, missing {sorted(missing)}")
        try:
            x0, y0, x1, y1 = (int(v) for v in d["rect"])
            return cls(
                x0, y0, x1, y1, float(d["cell_w"]), float(d["cell_h"]),
                float(d["origin_x"]), float(d["origin_y"]), str(d.get("mode", "mean")),
            )
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"bad mosaic grid {d!r}: {exc}") from None


def grid_from_blocks(box, n: int, mode: str = "mean") -> MosaicGrid:
    """n x n cells over `box` (float xyxy) rounded to whole pixels; the grid starts at the box corner."""
    if int(n) < 1:
        raise ConfigError(f"number of blocks must be >= 1, got {n}")
    x0, y0, x1, y1 = (int(math.floor(float(v) + 0.5)) for v in box)
    x1, y1 = max(x1, x0 + 1), max(y1, y0 + 1)
    return MosaicGrid(x0, y0, x1, y1, (x1 - x0) / n, (y1 - y0) / n, float(x0), float(y0), mode)


def grid_from_block_size(box, px, mode: str = "mean") -> MosaicGrid:
    """Cells of `px` (or `(px_w, px_h)`) pixels anchored at the image origin, covering `box` in whole cells."""
    pw, ph = (float(px), float(px)) if np.isscalar(px) else (float(px[0]), float(px[1]))
    if pw <= 0 or ph <= 0:
        raise ConfigError(f"block size must be > 0, got {px}")
    bx0, by0, bx1, by1 = (float(v) for v in box)
    kx0, ky0 = math.floor(bx0 / pw), math.floor(by0 / ph)
    kx1, ky1 = max(math.ceil(bx1 / pw), kx0 + 1), max(math.ceil(by1 / ph), ky0 + 1)
    # with fractional cells a line at t sits between pixels round(t) - 1 and round(t) (centre rule)
    x0, x1 = (int(math.floor(k * pw + 0.5)) for k in (kx0, kx1))
    y0, y1 = (int(math.floor(k * ph + 0.5)) for k in (ky0, ky1))
    return MosaicGrid(x0, y0, x1, y1, pw, ph, 0.0, 0.0, mode)


def cell_index(start: int, stop: int, origin: float, cell: float) -> np.ndarray:
    """Cell number of every pixel in [start, stop) along one axis (centre rule), `(stop - start,)` int."""
    centres = np.arange(start, stop, dtype=np.float64) + 0.5
    return np.floor((centres - origin) / cell + 1e-9).astype(np.int64)


def _runs(idx: np.ndarray) -> np.ndarray:
    """Start offsets of the runs of equal values in a non-decreasing index array."""
    if idx.size == 0:
        return np.zeros(0, np.int64)
    return np.flatnonzero(np.r_[True, idx[1:] != idx[:-1]])


def clipped_rect(grid: MosaicGrid, frame_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """The grid rectangle intersected with a frame of `(H, W)`; may be empty (x1 <= x0 or y1 <= y0)."""
    H, W = frame_hw
    return max(grid.x0, 0), max(grid.y0, 0), min(grid.x1, W), min(grid.y1, H)


def cell_values(frame: np.ndarray, grid: MosaicGrid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-cell values of the visible part of the grid.

    Returns `(values, col_starts, row_starts)`: values `(Ny, Nx, C)` float64 (mean or centre sample),
    and the pixel offsets (relative to the clipped rect) where each cell column / row begins.
    """
    x0, y0, x1, y1 = clipped_rect(grid, frame.shape[:2])
    img = frame if frame.ndim == 3 else frame[:, :, None]
    if x1 <= x0 or y1 <= y0:
        return np.zeros((0, 0, img.shape[2])), np.zeros(0, np.int64), np.zeros(0, np.int64)
    cs = _runs(cell_index(x0, x1, grid.origin_x, grid.cell_w))
    rs = _runs(cell_index(y0, y1, grid.origin_y, grid.cell_h))
    roi = img[y0:y1, x0:x1]
    if grid.mode == "mean":
        sums = np.add.reduceat(np.add.reduceat(roi.astype(np.float64), rs, axis=0), cs, axis=1)
        cw = np.diff(np.r_[cs, x1 - x0])
        ch = np.diff(np.r_[rs, y1 - y0])
        return sums / (ch[:, None, None] * cw[None, :, None]), cs, rs
    cw = np.diff(np.r_[cs, x1 - x0])
    ch = np.diff(np.r_[rs, y1 - y0])
    return roi[np.ix_(rs + ch // 2, cs + cw // 2)].astype(np.float64), cs, rs


def apply_mosaic(frame: np.ndarray, grid: MosaicGrid) -> np.ndarray:
    """A new frame with the cells of `grid` set to one value each; pixels outside the grid rect are unchanged.

    frame `(H, W, C)` or `(H, W)` uint8 -> same shape and dtype. Mean values are rounded half up.
    """
    out = frame.copy()
    x0, y0, x1, y1 = clipped_rect(grid, frame.shape[:2])
    if x1 <= x0 or y1 <= y0:
        return out
    values, cs, rs = cell_values(frame, grid)
    cells = np.floor(values + 0.5).clip(0, 255).astype(frame.dtype)
    cw = np.diff(np.r_[cs, x1 - x0])
    ch = np.diff(np.r_[rs, y1 - y0])
    block = np.repeat(np.repeat(cells, ch, axis=0), cw, axis=1)
    out[y0:y1, x0:x1] = block if frame.ndim == 3 else block[:, :, 0]
    return out


def apply_mosaics(frame: np.ndarray, grids) -> np.ndarray:
    """Apply several grids in order (each on the result of the previous); returns a new frame."""
    out = frame
    for g in grids:
        out = apply_mosaic(out, g)
    return out if out is not frame else frame.copy()


def circular_spread(phase: np.ndarray) -> float:
    """Circular standard deviation of phases in [0, 1) (cycles); 0 for a constant phase."""
    if len(phase) == 0:
        return 0.0
    r = abs(np.mean(np.exp(2j * np.pi * np.asarray(phase))))
    return float(math.sqrt(-2.0 * math.log(max(r, 1e-12))) / (2 * math.pi))
