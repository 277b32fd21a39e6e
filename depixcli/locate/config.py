"""What the mosaic locator is tuned by (`LocateConfig`) and what it finds (`MosaicRegion`: rect, block size,
grid phase), with the thresholds shared by its stages.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from depixcli.geometry.mosaic import MosaicGrid

PERIOD_TOLERANCE = 0.2  # relative: neighbouring windows with periods this close belong to one region
LINE_X = np.ones((3, 1), np.uint8)  # vertical 3-px support for x differences
LINE_Y = np.ones((1, 3), np.uint8)  # horizontal 3-px support for y differences
REFIT_ROUNDS = 3  # times a fitted region is refitted on a larger area when it grew


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
