"""Offline face tracking: per-frame detections -> smoothed tracks (pure numpy).

Pass 1 of every depix command detects over the whole video and keeps only boxes; `build_tracks` then
sees all of them at once:
1. Association, frame by frame: every live track predicts its box (constant velocity from its last
   observations); detection/track pairs are scored by IoU and by centre distance relative to the box
   size, and matched greedily, best pair first. Unmatched detections start tracks; a track not seen
   for more than `max_gap` frames ends.
2. Gap filling: frames a track missed (at most `max_gap` in a row) get linearly interpolated boxes,
   marked `filled`.
3. Smoothing: a Gaussian over time (sigma `sigma` frames, renormalised at the track ends) on the box
   centre and size, so that crops do not jitter.
4. Filtering: tracks shorter than `min_length` frames, and one-frame tracks scoring below `blip_score`,
   are dropped.

Boxes are `(x0, y0, x1, y1)` float px (geometry.py conventions).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from depixcli.geometry.boxes import iou

MAX_GAP = 12  # frames, longest run of missed detections bridged by interpolation (~0.5 s at 25 fps)
SIGMA = 1.5  # frames, Gaussian smoothing of box centre and size (~5 frames of support)
MIN_IOU = 0.2  # IoU, a pair with at least this overlap may match
MAX_CENTRE_DIST = 0.6  # box sizes, or a pair whose centres are closer than this (relative to track size)
MAX_SIZE_RATIO = 2.0  # sizes of a matched pair differ by at most this factor
BLIP_SCORE = 0.8  # one-frame tracks with a lower score are taken as false positives
VELOCITY_FRAMES = 3  # observations used to estimate a track's velocity


@dataclass(frozen=True)
class TrackConfig:
    max_gap: int = MAX_GAP  # frames
    sigma: float = SIGMA  # frames; 0 disables smoothing
    min_length: int = 1  # frames (gap-filled frames count)
    blip_score: float = BLIP_SCORE  # score
    min_iou: float = MIN_IOU
    max_centre_dist: float = MAX_CENTRE_DIST  # box sizes
    max_size_ratio: float = MAX_SIZE_RATIO


@dataclass(frozen=True, eq=False)
class Track:
    id: int
    frames: np.ndarray  # (N,) int, consecutive frame indices
    boxes: np.ndarray  # (N, 4) float px xyxy, smoothed
    scores: np.ndarray  # (N,) float, detector score (interpolated on filled frames)
    filled: np.ndarray  # (N,) bool, True where the box was interpolated over a missed detection

    def box_at(self, i: int) -> np.ndarray | None:
        """The track's box at frame `i`, or None if the track does not cover that frame."""
        k = int(i) - int(self.frames[0])
        if 0 <= k < len(self.frames):
            return self.boxes[k]
        return None

    def __len__(self) -> int:
        return len(self.frames)


@dataclass
class _Open:
    frames: list[int] = field(default_factory=list)
    boxes: list[np.ndarray] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)

    def predict(self, t: int) -> np.ndarray:
        last = self.boxes[-1]
        if len(self.frames) < 2:
            return last
        k = min(VELOCITY_FRAMES, len(self.frames) - 1)
        v = (self.boxes[-1] - self.boxes[-1 - k]) / (self.frames[-1] - self.frames[-1 - k])
        return last + v * (t - self.frames[-1])


def _as_box_score(d) -> tuple[np.ndarray, float]:
    """Detection, (4,) box, or (5,) box+score -> (box float64 (4,), score)."""
    if hasattr(d, "box"):
        return np.asarray(d.box, np.float64)[:4], float(d.score)
    a = np.asarray(d, np.float64).ravel()
    return a[:4], float(a[4]) if a.size > 4 else 1.0


def _pair_cost(pred: np.ndarray, box: np.ndarray, cfg: TrackConfig) -> float | None:
    """Matching cost in [0, 2) (lower is better), or None if the pair may not match."""
    sp = max(pred[2] - pred[0], pred[3] - pred[1], 1e-6)
    sb = max(box[2] - box[0], box[3] - box[1], 1e-6)
    if max(sp, sb) / min(sp, sb) > cfg.max_size_ratio:
        return None
    overlap = iou(pred, box)
    d = np.hypot((pred[0] + pred[2] - box[0] - box[2]) / 2, (pred[1] + pred[3] - box[1] - box[3]) / 2) / sp
    if overlap < cfg.min_iou and d > cfg.max_centre_dist:
        return None
    return (1.0 - overlap) + min(d, 1.0)


def _associate(per_frame: Sequence[Sequence], cfg: TrackConfig) -> list[_Open]:
    live: list[_Open] = []
    done: list[_Open] = []
    for t, dets in enumerate(per_frame):
        still = []
        for tr in live:
            (still if t - tr.frames[-1] <= cfg.max_gap + 1 else done).append(tr)
        live = still
        items = [_as_box_score(d) for d in dets]
        pairs = []
        for i, tr in enumerate(live):
            pred = tr.predict(t)
            for j, (box, _) in enumerate(items):
                c = _pair_cost(pred, box, cfg)
                if c is not None:
                    pairs.append((c, i, j))
        pairs.sort()
        used_t, used_d = set(), set()
        for _, i, j in pairs:
            if i in used_t or j in used_d:
                continue
            used_t.add(i)
            used_d.add(j)
            live[i].frames.append(t)
            live[i].boxes.append(items[j][0])
            live[i].scores.append(items[j][1])
        for j, (box, score) in enumerate(items):
            if j not in used_d:
                live.append(_Open([t], [box], [score]))
    return done + live


def _fill(tr: _Open) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Observations -> consecutive frames with linearly interpolated boxes and scores."""
    obs_f = np.asarray(tr.frames)
    frames = np.arange(obs_f[0], obs_f[-1] + 1)
    obs_b = np.stack(tr.boxes)
    boxes = np.stack([np.interp(frames, obs_f, obs_b[:, c]) for c in range(4)], 1)
    scores = np.interp(frames, obs_f, np.asarray(tr.scores))
    filled = ~np.isin(frames, obs_f)
    return frames, boxes, scores, filled


def smooth_boxes(boxes: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian temporal smoothing of `(N, 4)` xyxy boxes on centre and size.

    A Gaussian-weighted local *linear* fit at every frame: inside the track this equals a plain Gaussian
    blur; at the ends, where half the window is missing, it does not drag a moving face's box back
    towards the interior (a renormalised plain blur lags by up to ~sigma frames of motion there).
    """
    n = len(boxes)
    if sigma <= 0 or n < 2:
        return boxes.copy()
    c = (boxes[:, :2] + boxes[:, 2:]) / 2
    v = np.concatenate([c, boxes[:, 2:] - boxes[:, :2]], 1)  # (N, 4): cx, cy, w, h
    r = int(np.ceil(3 * sigma))
    s0, s1, s2 = np.zeros(n), np.zeros(n), np.zeros(n)
    t0, t1 = np.zeros((n, 4)), np.zeros((n, 4))
    for d in range(-r, r + 1):  # neighbour j = i + d
        lo, hi = max(0, -d), min(n, n - d)  # i range with j inside the track
        if lo >= hi:
            continue
        w = np.exp(-0.5 * (d / sigma) ** 2)
        y = v[lo + d:hi + d]
        s0[lo:hi] += w
        s1[lo:hi] += w * d
        s2[lo:hi] += w * d * d
        t0[lo:hi] += w * y
        t1[lo:hi] += w * d * y
    det = s0 * s2 - s1 * s1
    ok = det > 1e-9 * s0 * s0
    out = t0 / s0[:, None]  # weighted mean where a line cannot be fitted
    out[ok] = (s2[ok, None] * t0[ok] - s1[ok, None] * t1[ok]) / det[ok, None]
    return np.concatenate([out[:, :2] - out[:, 2:] / 2, out[:, :2] + out[:, 2:] / 2], 1)


def build_tracks(per_frame: Sequence[Sequence], config: TrackConfig = TrackConfig()) -> list[Track]:
    """Offline tracking over a whole video.

    per_frame: one list per frame of `Detection`s, `(4,)` boxes or `(5,)` box+score rows (frame px).
    Returns tracks ordered by first frame, ids 0, 1, ...; each covers consecutive frames.
    """
    out = []
    for tr in sorted(_associate(per_frame, config), key=lambda o: (o.frames[0], o.boxes[0][0])):
        if len(tr.frames) == 1 and tr.scores[0] < config.blip_score:
            continue
        frames, boxes, scores, filled = _fill(tr)
        if len(frames) < config.min_length:
            continue
        out.append(Track(len(out), frames, smooth_boxes(boxes, config.sigma), scores, filled))
    return out
