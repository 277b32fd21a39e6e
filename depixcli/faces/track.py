"""The one tracker: per-frame boxes (faces from a detector, mosaic rects from the locator) -> tracks.

`build_tracks` associates boxes frame to frame (IoU or centre distance with motion prediction, Hungarian
assignment), bridges short gaps by interpolation and smooths each track's boxes over time; `depix pixelate`,
`depix prepare` and `depix audit` use it as it is. Mosaic tracks, which the locator can miss for longer or
see in pieces, are then joined where one mosaic was split: `merge_concurrent` (two tracks on the same
frames) and `link_tracks` (a gap longer than the tracker bridges); `depix run` (`restore.tracks`) does.
Boxes are `(x0, y0, x1, y1)` float px.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from depixcli.geometry.boxes import iou, overlap_smaller

MAX_GAP = 12  # frames, longest run of missed detections bridged by interpolation (~0.5 s at 25 fps)
SIGMA = 1.5  # frames, Gaussian smoothing of box centre and size (~5 frames of support)
MIN_IOU = 0.2  # IoU, a pair with at least this overlap may match
MAX_CENTRE_DIST = 0.6  # box sizes, or a pair whose centres are closer than this (relative to track size)
MAX_SIZE_RATIO = 2.0  # sizes of a matched pair differ by at most this factor
BLIP_SCORE = 0.8  # one-frame tracks with a lower score are taken as false positives
VELOCITY_FRAMES = 3  # observations used to estimate a track's velocity
LINK_GAP_S = 2.0  # s, longest run of frames between two tracks of one mosaic that is bridged (missed frames)
LINK_CELL = 0.05  # relative: the two tracks' median block sizes (each axis) differ at most this much
LINK_IOU = 0.3  # IoU of the end rect of one track and the start rect of the next (also after linear motion)
LINK_CENTRE = 0.5  # rect sizes: ... or their centres lie closer than this
LINK_EDGE_FRAMES = 5  # observations whose median rect stands for a track's end / start (robust to partial rects)
MERGE_OVERLAP = 0.5  # intersection / smaller rect: two tracks' rects on one frame that belong to one mosaic
MERGE_SHARE = 0.5  # ... on at least this share of the frames both tracks observe: the tracks are merged


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


def edge_cell(cells: np.ndarray, last: bool) -> np.ndarray:
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
        ca, cb = a[3][k], b[3][m]
        cells_ok = np.isnan(ca).any() or np.isnan(cb).any() or np.all(np.abs(ca / cb - 1) <= 2 * LINK_CELL)
        same += overlap_smaller(a[1][k], b[1][m]) >= MERGE_OVERLAP and cells_ok
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
    pairs = []
    for i, a in enumerate(tracks):
        for j, b in enumerate(tracks):
            gap = int(b.frames[0]) - int(a.frames[-1]) - 1
            if 0 <= gap <= max_gap:
                d = link_distance(a, b, edge_cell(cells[i], last=True), edge_cell(cells[j], last=False), gap)
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


def link_distance(a, b, cell_a: np.ndarray, cell_b: np.ndarray, gap: int) -> float | None:
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
        if iou(p, q) >= LINK_IOU or d < LINK_CENTRE:
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
