"""`depix pixelate --secure`: a mosaic designed so that depix's own audit cannot recover the face.

An ordinary mosaic leaks through three channels that a multi-frame reconstruction combines (see
`depixcli.audit`): many blocks across the face, exact block means (a linear, invertible measurement), and
new evidence on every frame (the face moves against the grid, or the face box jitters over it). The secure
mosaic closes each one; every choice was measured with `depix audit` (bench/bench_audit.py, README
"Is my mosaic safe?"):

- few blocks over a large box: `blocks` x `blocks` cells over the face box scaled by `scale` (face and
  hair), anchored to the face box, so the face shows one grid phase;
- block values are not means: each is the block mean plus uniform noise of `noise` quantisation steps,
  quantised to multiples of `step` grey levels (dithered quantisation: the mean colour survives, the
  fine differences between blocks that identify a face do not);
- values refreshed rarely: held for `hold_s` seconds, the grid still following the face box on every
  frame, so the video adds no new measurements between refreshes.

Measured (README "Is my mosaic safe?", all 39 val clips, gallery of 1,034): with the issue-day model it held on all
39 (median reconstruction cosine 0.09 against 0.17 for a featureless patch of the face's colour, median
re-identification rank 492, best rank of any attack 18). With the session-5 model, a stronger attack, it holds on 38
of 39 by SFace and by dlib, one different clip each: median cosine 0.07, no frame above SFace's same-person
threshold, median rank 397, no attack ranks anyone first, the reconstruction's best rank 10. With an early
checkpoint and a gallery of the 34 val people alone, the median rank was 18 of 34.
Fewer blocks (4) only moved the cosines towards the featureless level; the first values (noise +-12, steps
of 24) were re-identified at rank 1 on one of 13 clips, which doubling both removed there (bench/bench_secure.py).

Fail-secure masks (`fail_secure`, every `depix pixelate`): a detector misses faces for a few frames
(motion blur, profile, occlusion) and finds them a few frames late as they enter; each miss shows the face.
`build_tracks` already bridges gaps of up to `track.MAX_GAP` frames inside a track; beyond that a track ends
and a new one starts. So every track's mask also covers `FAILSAFE_PAD_S` before its first and after its last
frame (holding the end box), and a track that ends near where another starts within `FAILSAFE_BRIDGE_S`
is joined to it by interpolated boxes.

It still looks like an ordinary pixelation: a coarse mosaic that follows the face and whose colours
change a few times a second. The noise is seeded by the track and refresh number: the output is
reproducible. Frames are `(H, W, 3)` uint8 RGB; nothing here keeps state between frames (the held
values are passed in and returned).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from depixcli.errors import ConfigError
from depixcli.geometry.boxes import scale_box
from depixcli.geometry.mosaic import MosaicGrid, cell_index, cell_values, clipped_rect, grid_from_blocks

SECURE_BLOCKS = 6  # blocks across the mosaic box
SECURE_SCALE = 1.6  # mosaic box side / detector face box side (face, hair and ears)
SECURE_STEP = 32  # grey levels, quantisation step of the block values
SECURE_NOISE = 2.0  # quantisation steps, width of the uniform noise added before quantising
SECURE_HOLD_S = 0.5  # s, how long block values are held before they are refreshed
SECURE_SEED = 20260  # noise seed (combined with track id and refresh number)
FAILSAFE_PAD_S = 0.2  # s, masks start this long before a track's first frame and end this long after its last
FAILSAFE_BRIDGE_S = 1.0  # s, gaps up to this long between a track's end and a nearby track's start are masked
BRIDGE_DIST = 1.0  # face sizes: the end and start boxes of a bridged gap are at most this far apart ...
BRIDGE_SPEED = 2.0  # face sizes per second: ... plus this much per second of gap (a walking person)


@dataclass(frozen=True)
class SecureMosaic:
    blocks: int = SECURE_BLOCKS
    scale: float = SECURE_SCALE
    step: int = SECURE_STEP  # grey levels; 1 = no quantisation
    noise: float = SECURE_NOISE  # steps
    hold_s: float = SECURE_HOLD_S  # s; 0 = refresh on every frame
    seed: int = SECURE_SEED

    def __post_init__(self) -> None:
        if self.blocks < 1 or self.scale <= 0 or not 1 <= self.step <= 255 or self.noise < 0 or self.hold_s < 0:
            raise ConfigError(f"bad secure mosaic settings: {self}")

    def grid(self, face_box) -> MosaicGrid:
        """The (face-anchored) grid over one detector face box."""
        return grid_from_blocks(scale_box(face_box, self.scale), self.blocks, "mean")

    def hold_frames(self, fps: float) -> int:
        """Frames a set of block values is shown for (at least 1)."""
        return max(1, round(self.hold_s * float(fps)))


def cell_means(frame: np.ndarray, grid: MosaicGrid, n: int) -> np.ndarray:
    """`(n, n, 3)` float64 means of the cells of an n x n face-anchored grid (cells outside the frame: 0)."""
    out = np.zeros((n, n, frame.shape[2]), np.float64)
    x0, y0, x1, y1 = clipped_rect(grid, frame.shape[:2])
    if x1 <= x0 or y1 <= y0:
        return out
    values, cs, rs = cell_values(frame, grid)
    cols = cell_index(x0, x1, grid.origin_x, grid.cell_w)[cs].clip(0, n - 1)
    rows = cell_index(y0, y1, grid.origin_y, grid.cell_h)[rs].clip(0, n - 1)
    out[np.ix_(rows, cols)] = values
    return out


def secure_values(means: np.ndarray, cfg: SecureMosaic, track: int, refresh: int) -> np.ndarray:
    """Dithered quantisation of block means: `(n, n, 3)` float -> uint8, noise seeded by track and refresh."""
    rng = np.random.default_rng([cfg.seed, int(track), int(refresh)])
    noisy = means + rng.uniform(-0.5, 0.5, means.shape) * cfg.noise * cfg.step
    q = np.floor(noisy / cfg.step) * cfg.step + (cfg.step - 1) / 2 if cfg.step > 1 else noisy
    return np.clip(np.rint(q), 0, 255).astype(np.uint8)


def paint(frame: np.ndarray, grid: MosaicGrid, values: np.ndarray) -> np.ndarray:
    """A new frame with the cells of an n x n face-anchored `grid` set to `values` `(n, n, 3)` uint8."""
    out = frame.copy()
    x0, y0, x1, y1 = clipped_rect(grid, frame.shape[:2])
    if x1 <= x0 or y1 <= y0:
        return out
    n = values.shape[0]
    cols = cell_index(x0, x1, grid.origin_x, grid.cell_w).clip(0, n - 1)
    rows = cell_index(y0, y1, grid.origin_y, grid.cell_h).clip(0, n - 1)
    out[y0:y1, x0:x1] = values[np.ix_(rows, cols)]
    return out


def apply_secure(frame: np.ndarray, faces, cfg: SecureMosaic, hold: int, held: dict) -> np.ndarray:
    """Secure mosaics over one frame. `faces`: `(track id, position in the track, MosaicGrid)`;
    `held`: track id -> `(refresh number, (n, n, 3) uint8 values)`, updated in place at refreshes."""
    out = frame
    for track, k, grid in faces:
        refresh = k // hold
        cur = held.get(track)
        if cur is None or cur[0] != refresh:
            cur = (refresh, secure_values(cell_means(frame, grid, cfg.blocks), cfg, track, refresh))
            held[track] = cur
        out = paint(out, grid, cur[1])
    return out if out is not frame else frame.copy()


def _extend(tr, frames: np.ndarray, boxes: np.ndarray):
    """`tr` with `frames` `(k,)` and their `boxes` `(k, 4)` added (marked filled), in frame order."""
    f = np.concatenate([tr.frames, frames])
    order = np.argsort(f, kind="stable")
    return replace(tr, frames=f[order], boxes=np.concatenate([tr.boxes, boxes])[order],
                   scores=np.concatenate([tr.scores, np.zeros(len(frames))])[order],
                   filled=np.concatenate([tr.filled, np.ones(len(frames), bool)])[order])


def fail_secure(tracks: list, n_frames: int, fps: float, pad_s: float = FAILSAFE_PAD_S,
                bridge_s: float = FAILSAFE_BRIDGE_S) -> list:
    """Tracks whose masks also cover the frames a detector missed near them (see the module docstring):
    gaps of up to `bridge_s` between a track's end and the start of a track near it are filled with
    interpolated boxes (on the earlier track), then every track is padded `pad_s` each side (holding its
    end box) within `[0, n_frames)`. Track ids stay; added frames are marked filled."""
    pad, bridge = int(round(pad_s * fps)), int(round(bridge_s * fps))
    out = list(tracks)
    if bridge > 0:
        for i, a in enumerate(out):
            end, last = int(a.frames[-1]), a.boxes[-1]
            size = max(last[2] - last[0], last[3] - last[1])
            near = []
            for b in tracks:
                gap = int(b.frames[0]) - end - 1
                dist = np.hypot(*((b.boxes[0][:2] + b.boxes[0][2:]) / 2 - (last[:2] + last[2:]) / 2))
                if b is not a and 0 < gap <= bridge and dist <= size * (BRIDGE_DIST + BRIDGE_SPEED * gap / fps):
                    near.append(b)
            if not near:
                continue
            b = min(near, key=lambda t: int(t.frames[0]))
            gap = np.arange(end + 1, int(b.frames[0]))
            w = ((gap - end) / (int(b.frames[0]) - end))[:, None]
            out[i] = _extend(a, gap, last * (1 - w) + b.boxes[0] * w)
    if pad > 0:
        for i, a in enumerate(out):
            before = np.arange(max(int(a.frames[0]) - pad, 0), int(a.frames[0]))
            after = np.arange(int(a.frames[-1]) + 1, min(int(a.frames[-1]) + 1 + pad, n_frames))
            out[i] = _extend(a, np.concatenate([before, after]),
                             np.concatenate([np.repeat(a.boxes[:1], len(before), 0),
                                             np.repeat(a.boxes[-1:], len(after), 0)]))
    return out
