"""FaceTracks: what `depix run` restores of one face on consecutive frames (mosaic rect, head-crop box, block
size, grid line per frame), made from located mosaic rects (`tracks_from_rects`), face spans of a sidecar or
--pixelate (`tracks_from_faces`) or a fixed --region (`region_track`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from depixcli.errors import OptionError
from depixcli.faces.track import (
    LINK_EDGE_FRAMES,
    LINK_GAP_S,
    TrackConfig,
    build_tracks,
    link_tracks,
    merge_concurrent,
    smooth_boxes,
)
from depixcli.geometry.boxes import iou
from depixcli.geometry.crop import CropBox
from depixcli.geometry.mosaic import grid_from_blocks
from depixcli.restore.blend import cover_box, crop_box_for_face, crop_box_for_rect, feather_width, rect_for_face
from depixcli.restore.classify import classified
from depixcli.restore.config import MATCH_IOU

PARTIAL_AREA = 0.6  # an observed rect this much smaller than its neighbours' (both sides) is a part of the mosaic
# ... or this much smaller than the nearest (and the neighbours'): the last frame of a val clip's 16 centre samples
# lost 2 rows of blocks above and 4 below, 0.62 of the area; a zoom of 8 % a frame stays above it
PARTIAL_AREA_NEAR = 0.7
COVER_MARGIN = 0.02  # crop sides: a crop reaches this far past the mosaic's feather (crop-edge pixels)
# cells: an observed rect side this far off its neighbours' on both sides is a misfit (a row or column of cells
# taken in or missed); 0.3 also moved the sides of deface's jittering box on a val close-up (outside change 0.013)
SIDE_OUTLIER_CELLS = 0.75
SIDE_OUTLIER_PX = 3.0  # px: ... and at least this far
# cells: an observed rect this many cells wider (taller) than the median of the track's observations within
# COUNT_WINDOW frames has taken in a row or column of what lies beside the mosaic: depix's, OpenCV's and deface's
# mosaics keep their count of cells across, or change it slowly with the face (a val clip's 16 centre samples of
# an 80 px face: the first 3 of 8 frames took in a column of background, one cell wider)
COUNT_OUTLIER_CELLS = 0.75
COUNT_WINDOW = 2 * LINK_EDGE_FRAMES  # frames either side


@dataclass(frozen=True)
class FaceTrack:
    """One face to reconstruct on the consecutive frames `start .. start + N - 1`."""

    id: int
    start: int  # first frame index
    rects: np.ndarray  # (N, 4) float px xyxy: the mosaic area replaced on each frame
    boxes: np.ndarray  # (N, 3) float px (cx, cy, size): head crop fed to the model, temporally smooth
    cells: np.ndarray  # (N, 2) float px (cell_w, cell_h) of the mosaic grid; nan when unknown
    grids: tuple | None = None  # the mosaic.MosaicGrid of each frame, when known (--pixelate applies them)
    filled: np.ndarray | None = None  # (N,) bool: no mosaic observed on the frame, rect interpolated
    origins: np.ndarray | None = None  # (N, 2) float px: a grid line (x, y) per frame; nan / None when unknown
    values: str = "unclear"  # block value kind: mean | centre | corner | samples | unclear (restored as means)
    anchor: str = "unknown"  # what the grid is fixed to: image | face | box | static | unknown
    method: str = "model"  # how it is restored: config.MODEL | FUSION | INTERPOLATION | SMOOTHING
    fallback: str | None = None  # why the model is not used (`classify.restore_method`), else None

    @property
    def count(self) -> int:
        return len(self.rects)

    @property
    def end(self) -> int:
        """Last frame index (inclusive)."""
        return self.start + self.count - 1

    def covers(self, t: int) -> bool:
        return self.start <= t <= self.end

    def crop_box(self, t: int) -> CropBox:
        """The head crop of frame t, grown where needed to cover the whole mosaic rect and its feather."""
        cx, cy, s = self.boxes[t - self.start]
        rect = self.rect(t)
        return cover_box(CropBox(float(cx), float(cy), float(s)), rect, feather_width(rect) + COVER_MARGIN * s)

    def origin(self, t: int) -> tuple[float, float] | None:
        """A grid line (x, y) px on frame t, or None when unknown."""
        if self.origins is None or np.isnan(self.origins[t - self.start]).any():
            return None
        return tuple(float(v) for v in self.origins[t - self.start])

    def cell_wh(self, t: int) -> tuple[float, float] | None:
        """Cell (w, h) px on frame t, or None when unknown."""
        c = self.cells[t - self.start]
        return None if np.isnan(c).any() else (float(c[0]), float(c[1]))

    def rect(self, t: int) -> tuple[float, float, float, float]:
        return tuple(float(v) for v in self.rects[t - self.start])

    def cell(self, t: int) -> float | None:
        c = self.cells[t - self.start]
        return None if np.isnan(c).any() else float(max(c))


def _boxes_array(boxes: list[CropBox]) -> np.ndarray:
    return np.array([[b.cx, b.cy, b.size] for b in boxes], dtype=np.float64).reshape(-1, 3)


def region_track(region: tuple[int, int, int, int], frames: int, frame_hw: tuple[int, int]) -> FaceTrack:
    """`--region x,y,w,h`: the same mosaic rect on every frame."""
    x, y, w, h = region
    H, W = frame_hw
    if x >= W or y >= H:
        raise OptionError("region", f"{x},{y},{w},{h} lies outside the {W}x{H} frame")
    rect = (float(x), float(y), float(min(x + w, W)), float(min(y + h, H)))
    box = crop_box_for_rect(rect, frame_hw)
    n = max(frames, 1)
    return FaceTrack(0, 0, np.tile(rect, (n, 1)), np.tile(_boxes_array([box]), (n, 1)), np.full((n, 2), np.nan))


def tracks_from_rects(
    per_frame: list[list[tuple[tuple, tuple | None]]], frame_hw: tuple[int, int], fps: float
) -> list[FaceTrack]:
    """Link per-frame mosaic observations `(rect xyxy, (cell_w, cell_h) | None)` into FaceTracks.

    Association and short gap filling are track.build_tracks'; tracks of one mosaic that it split (the
    locator missed more frames in a row than its gap limit, or a partial rect threw off its motion
    prediction) are joined again: `merge_concurrent` where they run at the same time (else each would be
    a crop of that face on the same frames), `link_tracks` over gaps up to LINK_GAP_S. Then the rects are smoothed
    over time. The paste rect of a frame is the observation itself where there is one (the mosaic is
    exactly there), the smoothed rect otherwise (`filled`), also where the observation is only a part of
    the mosaic (`_partial`: its neighbours on both sides are much larger); the crop box always comes from
    the smoothed rect, so the model sees a steady crop.
    """
    rect_lists = [[np.asarray(r, np.float64) for r, _ in obs] for obs in per_frame]
    raw = build_tracks(rect_lists, TrackConfig(sigma=0.0))  # consecutive frames, short gaps interpolated
    max_gap = max(round(LINK_GAP_S * float(fps)), 0)
    raw = merge_concurrent(raw, [_track_cells(tr, per_frame) for tr in raw])
    out = []
    for tr in link_tracks(raw, [_track_cells(tr, per_frame) for tr in raw], max_gap):
        start = int(tr.frames[0])
        part = _partial(np.asarray(tr.boxes, np.float64), tr.filled, frame_hw)
        boxes = np.asarray(tr.boxes, np.float64).copy()
        good = ~part & ~tr.filled
        if part.any() and good.any():  # a part of the mosaic: the rect from its neighbours instead
            idx = np.arange(len(boxes))
            boxes[part] = np.stack([np.interp(idx[part], idx[good], boxes[good, c]) for c in range(4)], 1)
        smooth = smooth_boxes(boxes, TrackConfig().sigma)
        rects = smooth.copy()
        cells = np.full((len(smooth), 2), np.nan)
        filled = np.ones(len(smooth), bool)
        for i, t in enumerate(range(start, start + len(smooth))):
            best = None if part[i] else _observation(per_frame[t], smooth[i])
            if best is not None:
                rects[i] = best[0]
                filled[i] = False
                if best[1] is not None:
                    cells[i] = best[1]
        known = ~np.isnan(cells[:, 0])
        if known.any():
            cells[~known] = np.median(cells[known], axis=0)
        rects = _steady_sides(_steady_counts(rects, filled, cells), filled, cells)
        boxes = _boxes_array([crop_box_for_rect(r, frame_hw) for r in smooth])
        out.append(FaceTrack(len(out), start, rects, boxes, cells, filled=filled))
    return out


def _partial(boxes: np.ndarray, filled: np.ndarray, frame_hw: tuple[int, int]) -> np.ndarray:
    """`(N,)` bool: observed rects (`boxes` `(N, 4)` xyxy px, `filled` where none) that are only a part of
    the mosaic: smaller than PARTIAL_AREA x the median area of the LINK_EDGE_FRAMES observations before
    them and of those after them, or than PARTIAL_AREA_NEAR x that and the nearest observation's on each side
    (a dip, not a face leaving the frame or shrinking). At a track's first or last observation, those on its
    one side decide where the rect keeps off the frame border (`frame_hw`): a face leaving the frame is cut
    there (a val clip's 16 blocks: the last of 8 frames found the middle third)."""
    obs = np.flatnonzero(~filled)
    area = (boxes[obs, 2] - boxes[obs, 0]) * (boxes[obs, 3] - boxes[obs, 1])
    out = np.zeros(len(boxes), bool)
    k = LINK_EDGE_FRAMES
    H, W = frame_hw
    for n, i in enumerate(obs):
        before, after = area[max(n - k, 0):n], area[n + 1:n + 1 + k]
        x0, y0, x1, y1 = boxes[i]
        inside = x0 >= 1 and y0 >= 1 and x1 <= W - 1 and y1 <= H - 1
        sides = [float(np.median(a)) for a in (before, after) if len(a)]
        nearest = [float(a[j]) for a, j in ((before, -1), (after, 0)) if len(a)]
        if (len(before) and len(after)) or (sides and inside):
            out[i] = area[n] < max(PARTIAL_AREA * min(sides), PARTIAL_AREA_NEAR * min(sides + nearest))
    return out


def _steady_sides(rects: np.ndarray, filled: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """`rects` `(N, 4)` xyxy px with each observed side that lies more than SIDE_OUTLIER_CELLS (of `cells`
    `(N, 2)` px, nan unknown) and SIDE_OUTLIER_PX off the median of the LINK_EDGE_FRAMES observations before it
    and of those after it, on the same side of both, set to the mean of those medians: the locator's fit of
    one frame that took in a row of the plain background or missed a column of blocks (a deface mosaic of a
    val clip: its top one cell too high on one frame of eight). Without this the paste changes pixels beside the
    mosaic there, or leaves blocks."""
    obs = np.flatnonzero(~filled)
    out = rects.copy()
    k = LINK_EDGE_FRAMES
    for n, i in enumerate(obs):
        before, after = obs[max(n - k, 0):n], obs[n + 1:n + 1 + k]
        if not len(before) or not len(after):
            continue
        for side in range(4):
            cell = cells[i, side % 2]
            limit = max(SIDE_OUTLIER_CELLS * (cell if np.isfinite(cell) else 0.0), SIDE_OUTLIER_PX)
            b, a = float(np.median(rects[before, side])), float(np.median(rects[after, side]))
            d_b, d_a = rects[i, side] - b, rects[i, side] - a
            if min(abs(d_b), abs(d_a)) > limit and d_b * d_a > 0:
                out[i, side] = (a + b) / 2
    return out


def _steady_counts(rects: np.ndarray, filled: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """`rects` `(N, 4)` xyxy px with each observed rect that is COUNT_OUTLIER_CELLS or more cells (of `cells`
    `(N, 2)` px, nan unknown) wider (taller) than the median of the observations within COUNT_WINDOW frames cut
    back to that median on the side that strays more from its own median there: a row or column of the plain
    background or of hair taken in, on a run of frames too long for `_steady_sides`, or at a track's end."""
    obs = np.flatnonzero(~filled)
    out = rects.copy()
    for axis in range(2):
        lo, hi = axis, axis + 2
        for i in obs:
            cell = cells[i, axis]
            win = obs[np.searchsorted(obs, i - COUNT_WINDOW):np.searchsorted(obs, i + COUNT_WINDOW, "right")]
            near = win[np.isfinite(cells[win, axis])]  # the sorted observations within COUNT_WINDOW frames
            if not np.isfinite(cell) or len(near) < 3:
                continue
            count = float(np.median((rects[near, hi] - rects[near, lo]) / cells[near, axis]))
            if (rects[i, hi] - rects[i, lo]) / cell - count < COUNT_OUTLIER_CELLS:
                continue
            d_lo = abs(rects[i, lo] - float(np.median(rects[near, lo])))
            d_hi = abs(rects[i, hi] - float(np.median(rects[near, hi])))
            if d_lo > d_hi:
                out[i, lo] = rects[i, hi] - count * cell
            else:
                out[i, hi] = rects[i, lo] + count * cell
    return out


def _observation(obs: list[tuple[tuple, tuple | None]], box: np.ndarray) -> tuple | None:
    """The observation `(rect, cell | None)` of one frame overlapping `box` most (IoU > MATCH_IOU), or None."""
    best, best_iou = None, MATCH_IOU
    for r, c in obs:
        overlap = iou(r, box)
        if overlap > best_iou:
            best, best_iou = (r, c), overlap
    return best


def _track_cells(tr, per_frame) -> np.ndarray:
    """`(N, 2)` px (cell_w, cell_h) of a track.Track's frames where it was observed; nan elsewhere."""
    out = np.full((len(tr.frames), 2), np.nan)
    for i, (t, box, filled) in enumerate(zip(tr.frames, tr.boxes, tr.filled)):
        best = None if filled else _observation(per_frame[int(t)], box)
        if best is not None and best[1] is not None:
            out[i] = best[1]
    return out


def tracks_from_faces(spans, blocks: int | None = None) -> list[FaceTrack]:
    """FaceTracks from face spans `(start, (N, 4) tight face boxes xyxy[, N MosaicGrids])` on consecutive frames.

    The crop is the head box of the face. The mosaic is the span's grids when given (a sidecar that
    records them: exact), else `blocks` x `blocks` cells over the face (--pixelate: the grid is applied
    in pass 2, so it is exact too), else the rect `depix pixelate` puts over a face, block size unknown.
    """
    out = []
    for span in spans:
        start, faces = span[0], np.asarray(span[1], np.float64).reshape(-1, 4)
        grids = tuple(span[2]) if len(span) > 2 and span[2] is not None else None
        if len(faces) == 0:
            continue
        boxes = _boxes_array([crop_box_for_face(f) for f in faces])
        if grids is None and blocks is not None:
            grids = tuple(grid_from_blocks(rect_for_face(f), blocks) for f in faces)
        if grids is None:
            rects = np.array([rect_for_face(f) for f in faces])
            cells = np.full((len(faces), 2), np.nan)
            out.append(classified(FaceTrack(len(out), int(start), rects, boxes, cells)))
            continue
        rects = np.array([g.rect for g in grids], np.float64)
        cells = np.array([(g.cell_w, g.cell_h) for g in grids], np.float64)
        origins = np.array([(g.origin_x, g.origin_y) for g in grids], np.float64)
        values = "centre" if all(g.mode == "center" for g in grids) else "mean"
        out.append(classified(FaceTrack(len(out), int(start), rects, boxes, cells, grids, origins=origins), values))
    return out
