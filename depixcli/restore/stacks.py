"""Pass 2 of `depix run`: decode -> crop each tracked face -> window stacks (+ grid maps) -> model in batches ->
paste -> write, in order, holding a bounded window of frames (`reconstruct_pass`).
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from depixcli.geometry.crop import crop
from depixcli.geometry.mosaic import apply_mosaic
from depixcli.io.video import probe, read_frames
from depixcli.model.config import window_indices
from depixcli.model.grid import grid_maps
from depixcli.model.reconstructor import Reconstructor, gather_stack
from depixcli.restore.blend import paste
from depixcli.restore.config import FUSION, MODEL, RunConfig, RunStats
from depixcli.restore.evidence import crop_grid, grid_origin, value_position
from depixcli.restore.fusion import FUSION_REACH, fuse_track_frame, track_samples
from depixcli.restore.pipeline import END, Aborted, get, join_workers, put, timed_iter, worker
from depixcli.restore.tracks import FaceTrack

QUEUE_FRAMES = 8  # frames in flight between two pipeline threads (decode, model, paste, write)


@dataclass
class PendingFrame:
    """A decoded frame waiting for its reconstructions."""

    frame: object  # video.Frame (index, image, pts, time)
    image: np.ndarray  # (H, W, 3) uint8: the frame to reconstruct (mosaiced; pasted over in place
    # unless --pixelate, which keeps it for the side-by-side view and the scores)
    original: np.ndarray | None  # --pixelate: the clean frame
    waiting: set  # ids of tracks whose reconstruction of this frame is still to come
    recons: dict  # track id -> (S, S, 3) uint8 reconstruction (fused samples: (patch, region) frame px)
    crops: dict  # track id -> (S, S, 3) uint8 crop of `image` (the model's centre input; fused samples:
    # the frame's restore.fusion.FrameSamples)


def stack_maps(model: Reconstructor, tracks: list[FaceTrack], centres: list[int], frame_hw) -> np.ndarray | None:
    """Per-frame grid maps `(B, F, GRID_CHANNELS, S, S)` float32 of the window stacks of `tracks` centred on
    frames `centres`: `models.grid_maps` of each frame's located grid (its rect, a grid line, its cell and
    where its block values come from, by the track's value kind) in the coordinates of that frame's crop.
    None for a model without grid input (`Reconstructor.uses_grid`); all zeros on frames whose grid is unknown."""
    if not model.uses_grid:
        return None
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
    write: Callable[[PendingFrame, np.ndarray], None],
    cfg: RunConfig,
    stats: RunStats,
) -> None:
    """Pass 2: decode -> crop -> window stacks -> model -> paste -> `write(pending, result image)`, in order.

    Four threads joined by bounded queues: decode+crop -> model (this thread, `StackScheduler`) -> paste ->
    write, so the model never waits for I/O while the queues have room.
    """
    info = probe(path)
    by_id = {tr.id: tr for tr in tracks}
    stop = threading.Event()
    errors: list = []
    q_in, q_out, q_write = (queue.Queue(QUEUE_FRAMES) for _ in range(3))
    threads = [worker(fn, errors, stop) for fn in (
        lambda: decode_crops(path, tracks, model.geometry.crop_size, cfg, stats, lambda x: put(q_in, x, stop)),
        lambda: paste_frames(by_id, cfg, stats, lambda: get(q_out, stop), lambda x: put(q_write, x, stop)),
        lambda: write_frames(write, lambda: get(q_write, stop)))]
    scheduler = StackScheduler(tracks, model, cfg.batch_size, stats, (info.height, info.width),
                               emit=lambda p: put(q_out, p, stop))
    try:
        scheduler.run(lambda: get(q_in, stop))
        put(q_out, END, stop)
    except Aborted:
        pass
    except BaseException:
        stop.set()
        raise
    finally:
        join_workers(threads, errors, stop)
    if errors:
        raise errors[0]


def decode_crops(path, tracks: list[FaceTrack], size: int, cfg: RunConfig, stats: RunStats, put_item) -> None:
    """Decode thread: each frame (--pixelate: mosaicked with its tracks' grids, the clean frame kept) and the
    `size` px crop of every track on it (tracks restored by fused samples: the frame's samples instead) ->
    `put_item((frame, image, original, {track id: crop}))`; END last."""
    for frame in timed_iter(read_frames(path, cfg.window), stats, "decode"):
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
        crops = {tr.id: track_samples(tr, image, t) if tr.method == FUSION else crop(image, tr.crop_box(t), size)
                 for tr in active}
        stats.add("crop", time.perf_counter() - t0)
        put_item((frame, image, original, crops))
    put_item(END)


def paste_frames(by_id: dict, cfg: RunConfig, stats: RunStats, get_item, put_item) -> None:
    """Paste thread: every reconstruction of a finished frame pasted over it (`blend.paste`) ->
    `put_item((pending, image))`; END passed on."""
    while True:
        item = get_item()
        if item is END:
            put_item(END)
            return
        t = item.frame.index
        image = item.image
        t0 = time.perf_counter()
        if item.recons and cfg.pixelate is not None:
            image = image.copy()  # the pixelated input is shown / scored next to the result
        for tid, recon in item.recons.items():
            tr = by_id[tid]
            if tr.method == FUSION:
                paste(image, None, tr.crop_box(t), tr.rect(t), tr.cell_wh(t), inplace=True, origin=tr.origin(t),
                      values=tr.values, fill=recon)
                continue
            paste(image, recon, tr.crop_box(t), tr.rect(t), tr.cell_wh(t), item.crops[tid], inplace=True,
                  origin=tr.origin(t), values=tr.values)
        stats.add("paste", time.perf_counter() - t0)
        put_item((item, image))


def write_frames(write, get_item) -> None:
    """Write thread: `write(pending, image)` for every pasted frame, in order, until END."""
    while True:
        item = get_item()
        if item is END:
            return
        write(*item)


class StackScheduler:
    """The model side of pass 2 (main thread): frames wait in order until every track on them has its
    reconstruction; a track's frame is reconstructed (in batches of `batch_size` stacks) as soon as all frames
    of its window stack are decoded (fused samples: the FUSION_REACH frames each side); crops are dropped once
    no pending stack needs them. Finished frames leave in order through `emit`. Holds about max(w*d,
    FUSION_REACH) + batch frames and as many crops per running track."""

    def __init__(self, tracks: list[FaceTrack], model: Reconstructor, batch_size: int, stats: RunStats,
                 frame_hw: tuple[int, int], emit) -> None:
        self.by_id = {tr.id: tr for tr in tracks}
        self.model, self.batch_size, self.stats, self.frame_hw, self.emit = model, batch_size, stats, frame_hw, emit
        self.pending: deque[PendingFrame] = deque()
        self.by_frame: dict[int, PendingFrame] = {}
        self.crops: dict[int, dict[int, np.ndarray]] = {}  # track id -> frame -> crop, for tracks still running
        self.next_job: dict[int, int] = {}  # track id -> next frame of that track to schedule
        self.jobs: deque[tuple[int, int]] = deque()  # (track id, frame) whose stack frames are all decoded
        self.waiting_tracks = deque(sorted(tracks, key=lambda tr: tr.start))  # not started yet

    def run(self, get_item) -> None:
        """Take `(frame, image, original, crops)` items until END, then finish the tracks still running."""
        last = -1
        while True:
            item = get_item()
            if item is END:
                break
            last = self.add_frame(*item)
            while len(self.jobs) >= self.batch_size:
                self.run_batch(self.batch_size)
            self.emit_ready()
        # end of video: tracks reaching past the last decoded frame (pass 1 and 2 disagree) end there
        for tid in self.next_job:
            while self.next_job[tid] <= min(self.by_id[tid].end, last):
                self.jobs.append((tid, self.next_job[tid]))
                self.next_job[tid] += 1
        while self.jobs:
            self.run_batch(self.batch_size)
        for p in self.pending:  # frames whose tracks were cut short by the video's end
            p.waiting.clear()
        self.emit_ready()

    def add_frame(self, frame, image, original, new_crops: dict) -> int:
        """Queue a decoded frame, keep its crops, schedule the stacks it completes; returns its index."""
        t = frame.index
        p = PendingFrame(frame, image, original, set(new_crops), {}, new_crops)
        self.pending.append(p)
        self.by_frame[t] = p
        while self.waiting_tracks and self.waiting_tracks[0].start <= t:
            tr = self.waiting_tracks.popleft()
            self.crops[tr.id], self.next_job[tr.id] = {}, tr.start
        for tid, c in new_crops.items():
            self.crops[tid][t] = c
        for tid in self.next_job:
            end, reach = self.by_id[tid].end, self.reach(tid)
            while self.next_job[tid] <= end and min(self.next_job[tid] + reach, end) <= t:
                self.jobs.append((tid, self.next_job[tid]))
                self.next_job[tid] += 1
        self.stats.max_buffered_frames = max(self.stats.max_buffered_frames, len(self.pending))
        self.stats.max_buffered_crops = max(self.stats.max_buffered_crops, sum(len(s) for s in self.crops.values()))
        return t

    def reach(self, tid: int) -> int:
        """Frames each side of a frame that its reconstruction reads: the model's stack, the fused samples'
        FUSION_REACH, none for interpolated or smoothed block values."""
        method = self.by_id[tid].method
        return self.model.geometry.reach if method == MODEL else FUSION_REACH if method == FUSION else 0

    def crop_at(self, tid: int, f: int) -> np.ndarray:
        store = self.crops[tid]
        if f in store:
            return store[f]
        return store[max(k for k in store if k <= f)]  # the video ended before the track did

    def run_batch(self, n: int) -> None:
        """Reconstruct the next `n` scheduled stacks (by the model, or fused samples; interpolated or smoothed
        block values get none: they are made at paste time) and drop the crops no pending stack needs any more."""
        batch = [self.jobs.popleft() for _ in range(min(n, len(self.jobs)))]
        if not batch:
            return
        todo = [(tid, t) for tid, t in batch if self.by_id[tid].method == MODEL]
        out = dict(zip(todo, self.reconstruct(todo))) if todo else {}
        for tid, t in batch:
            if self.by_id[tid].method == FUSION:
                t0 = time.perf_counter()
                out[tid, t] = fuse_track_frame(self.by_id[tid], self.by_frame[t].image, t, self.crops[tid])
                self.stats.add("fusion", time.perf_counter() - t0)
        for tid, t in batch:
            p = self.by_frame[t]
            p.recons[tid] = out.get((tid, t))
            p.waiting.discard(tid)
        self.drop_crops()

    def reconstruct(self, todo: list[tuple[int, int]]) -> np.ndarray:
        """`(B, S, S, 3)` uint8 reconstructions of the window stacks of `todo` (track id, frame)."""
        geo = self.model.geometry
        stacks = np.stack([
            gather_stack(lambda p, tid=tid: self.crop_at(tid, self.by_id[tid].start + p), t - self.by_id[tid].start,
                         self.by_id[tid].count, geo.window, geo.stride)
            for tid, t in todo])
        t0 = time.perf_counter()
        maps = stack_maps(self.model, [self.by_id[tid] for tid, _ in todo], [t for _, t in todo], self.frame_hw)
        recons = self.model(stacks) if maps is None else self.model(stacks, maps)
        self.stats.add("model", time.perf_counter() - t0)
        self.stats.stacks += len(todo)
        return recons

    def drop_crops(self) -> None:
        """Forget finished tracks and the crops older than the oldest stack still to run needs."""
        oldest = {}
        for tid, t in self.jobs:
            oldest.setdefault(tid, t)
        for tid in list(self.crops):
            if tid not in oldest and self.next_job[tid] > self.by_id[tid].end:  # track finished: drop its crops
                del self.crops[tid], self.next_job[tid]
                continue
            keep_from = oldest.get(tid, self.next_job[tid]) - self.reach(tid)
            store = self.crops[tid]
            for f in [f for f in store if f < keep_from]:
                del store[f]

    def emit_ready(self) -> None:
        """Frames at the head of the queue with all their reconstructions -> `emit`, in order."""
        while self.pending and not self.pending[0].waiting:
            p = self.pending.popleft()
            del self.by_frame[p.frame.index]
            self.emit(p)
