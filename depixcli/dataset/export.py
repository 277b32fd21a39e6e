"""`depix prepare`: export head-crop tracks of face videos as a crop dataset (loaded by crops.py).

A crop dataset directory holds
- `tracks/<clipstem>_t<k>.mp4`: one near-lossless H.264 video per face track, square `S x S` head crops
  (S = 128 px by default) at the source frame rate;
- `index.json`: format name and version, crop size, head-crop geometry, encoder settings, whether the
  export finished (`complete`), the clips done, and per track: file, source clip, identity, split, fps,
  frame count, first source frame index and the per-frame crop boxes `[cx, cy, size]` in source pixels
  (geometry.CropBox).

Splits: a clip's split comes from the CSV's `split` column; clips without one are split by identity, so
that every person is wholly in train or wholly in val: an identity goes to val when a hash of its name
falls below `val_fraction` (deterministic, independent of the other inputs), and at least one identity is
held out whenever there are two or more.

Export is resumable and never half-built: a clip's tracks are written under temporary names and renamed
only when the whole clip is done; `index.json` is rewritten (atomically) after every finished clip, with
`complete: false` until the last one. An interrupted or failed export leaves the finished clips listed
and no partial track or temporary file; `prepare(..., add=True)` (`depix prepare --add`) continues it, or
adds clips to a finished dataset. Without `add`, an existing dataset is never touched.

Export is two-pass per clip (stream, never hoard): pass 1 detects faces in every frame and keeps only
boxes; tracks are built offline (track.py); pass 2 decodes again, crops every tracked face
(geometry.head_box + geometry.crop) and streams it into that track's encoder. Clips are processed in
parallel worker processes. Loading decodes with cv2.VideoCapture (no PyAV needed).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import warnings
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from depixcli.dataset.config import CODEC, PrepareConfig, PrepareSummary
from depixcli.dataset.inputs import ClipInput, assign_splits, clip_fps_frames, clip_frames
from depixcli.dataset.state import (
    existing_dataset,
    new_index,
    not_done,
    remove_empty_dataset,
    remove_unfinished,
    split_counts,
    split_problems,
    write_index,
)
from depixcli.errors import DepixError, DepixWarning, InputError, OutputError
from depixcli.faces.detect import load_detector
from depixcli.faces.track import TrackConfig, build_tracks
from depixcli.geometry.crop import HEAD_SCALE, crop, head_box
from depixcli.io.files import commit, discard, temp_beside
from depixcli.io.progress import progress_bar


def detect_clip(path: Path, detector, every: int) -> list[list]:
    """Detections of every `every`-th frame and of the last one (others: empty, bridged by the tracker)."""
    per_frame: list[list] = []
    img = None
    for i, img in enumerate(clip_frames(path)):
        per_frame.append(detector.detect(img) if i % every == 0 else [])
    if img is not None and (len(per_frame) - 1) % every:
        per_frame[-1] = detector.detect(img)
    return per_frame


class TrackWriter:
    """Stream `(S, S, 3)` uint8 RGB crops into one H.264 file under a temp name (`commit` renames it).

    Not video.VideoWriter: track files carry no audio or source timestamps, and their RGB -> YUV
    conversion is left untagged BT.601, which is what cv2.VideoCapture (load_crops) assumes when
    converting back, so the round trip has no colour-matrix error.
    """

    def __init__(self, path: Path, size: int, fps: Fraction, cfg: PrepareConfig):
        self.path = path
        self.tmp = temp_beside(path)
        self._c = av.open(str(self.tmp), "w", format="mp4")
        self._s = self._c.add_stream(CODEC, rate=fps)
        self._s.width = self._s.height = size
        self._s.pix_fmt = cfg.pix_fmt
        self._s.options = {"crf": str(cfg.crf), "preset": cfg.preset}

    def write(self, img: np.ndarray) -> None:
        for pkt in self._s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")):
            self._c.mux(pkt)

    def close(self) -> None:
        """Flush the encoder and close the temp file (still under its temp name)."""
        for pkt in self._s.encode():
            self._c.mux(pkt)
        self._c.close()

    def commit(self) -> None:
        commit(self.tmp, self.path)

    def abort(self) -> None:
        """Remove the temp file, whatever state the encoder is in (full disk, interrupt)."""
        try:
            self._c.close()
        except Exception:  # noqa: BLE001 - the file is deleted next; its close error is moot
            pass
        discard(self.tmp)


def export_clip(clip: ClipInput, out_dir: Path, cfg: PrepareConfig, detector=None) -> list[dict]:
    """Detect, track and write this clip's head-crop tracks to `out_dir/tracks/`; index entries back.

    The tracks appear under their final names only once all of them are written; on any error or
    interrupt no file of this clip is left in `out_dir/tracks/`.
    """
    det = detector if detector is not None else load_prepare_detector(cfg)
    fps, _ = clip_fps_frames(clip.path)
    per_frame = detect_clip(clip.path, det, cfg.detect_every)
    # gaps are counted in frames: undetected in-between frames must not use up the tracker's patience
    tcfg = TrackConfig(min_length=cfg.min_track, max_gap=TrackConfig().max_gap * cfg.detect_every)
    tracks = build_tracks(per_frame, tcfg)
    if not tracks:
        return []
    boxes = {t.id: [head_box(b, HEAD_SCALE) for b in t.boxes] for t in tracks}
    ends = {t.id: int(t.frames[-1]) for t in tracks}
    writers: dict[int, TrackWriter] = {}
    names = {t.id: f"{clip.path.stem}_t{k}" for k, t in enumerate(tracks)}
    last = max(ends.values())
    everything: list[TrackWriter] = []
    try:
        for i, img in enumerate(clip_frames(clip.path)):
            for t in tracks:
                if not (t.frames[0] <= i <= ends[t.id]):
                    continue
                if t.id not in writers:
                    w = TrackWriter(out_dir / "tracks" / f"{names[t.id]}.mp4", cfg.size, fps, cfg)
                    writers[t.id] = w
                    everything.append(w)
                writers[t.id].write(crop(img, boxes[t.id][i - int(t.frames[0])], cfg.size))
                if i == ends[t.id]:
                    writers[t.id].close()
                    del writers[t.id]
            if i >= last:
                break
        if writers:  # the second decode ended early: the clip changed or is truncated
            raise InputError(f"{clip.path}: fewer frames on the second read than on the first")
        for w in everything:
            w.commit()
    except BaseException:
        for w in everything:
            w.abort()
            w.path.unlink(missing_ok=True)
        raise
    return [
        {
            "file": f"tracks/{names[t.id]}.mp4",
            "track_id": names[t.id],
            "source": str(clip.path),
            "identity": clip.identity,
            "split": clip.split,
            "fps": float(fps),
            "frames": len(t),
            "first_frame": int(t.frames[0]),
            "boxes": [[round(b.cx, 2), round(b.cy, 2), round(b.size, 2)] for b in boxes[t.id]],
        }
        for t in tracks
    ]


def load_prepare_detector(cfg: PrepareConfig):
    return load_detector(cfg.detector, threshold=cfg.threshold, max_side=cfg.max_side)


def worker_init(pool_worker: bool = False) -> None:
    if pool_worker:
        # Ctrl-C (and a closed terminal's SIGHUP) reaches the whole process group: the parent stops the pool
        # and removes what the workers left behind; a worker that handled it too would print a traceback.
        # SIGTERM keeps its default: it is how the pool stops its workers.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    cv2.setNumThreads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")


_WORKER_DETECTOR = None  # in each worker process: its face detector, loaded on the first clip


def worker_job(args: tuple[ClipInput, Path, PrepareConfig]) -> list[dict]:
    global _WORKER_DETECTOR
    clip, out_dir, cfg = args
    if _WORKER_DETECTOR is None:
        _WORKER_DETECTOR = load_prepare_detector(cfg)
    try:
        entries = export_clip(clip, out_dir, cfg, _WORKER_DETECTOR)
    except DepixError:
        raise
    except (OSError, av.error.FFmpegError) as exc:  # encoder / disk: name the clip, one picklable line
        raise OutputError(f"{out_dir}: writing tracks of {clip.path.name} failed ({exc})") from None
    return entries


def prepare(clips: Sequence[ClipInput], out_dir: str | os.PathLike, cfg: PrepareConfig = PrepareConfig(),
            quiet: bool = False, skip_unreadable: bool = False, add: bool = False) -> PrepareSummary:
    """Export head-crop tracks of every clip into `out_dir` and write `out_dir/index.json`.

    `out_dir` must be new or empty, unless `add`: then its dataset (finished, or interrupted) is kept,
    clips already in it are not exported again, and the rest are added (same crop and encoder settings
    required). Clips without a split get one from `assign_splits`. An input that fails its probe
    (missing, not a video, truncated) raises InputError before anything is written, unless
    `skip_unreadable`: then it is left out and listed in the summary and in the index. On any error or
    interrupt the index lists exactly the clips finished, and no partial track or temp file is left.
    """
    out = Path(out_dir)
    old = existing_dataset(out, cfg, add)
    load_prepare_detector(cfg)  # fail early on a missing backend
    todo, kept = not_done(clips, old)
    known = {c["identity"]: c["split"] for c in old["clips"]} if old else {}
    todo = assign_splits(todo, cfg.val_fraction, known)
    totals: dict[Path, int] = {}
    skipped: list[str] = []
    for c in todo:
        try:
            totals[c.path] = clip_fps_frames(c.path)[1]
        except InputError as exc:
            if not skip_unreadable:
                raise
            skipped.append(str(exc))
    todo = [c for c in todo if c.path in totals]
    created = not out.exists()
    try:
        (out / "tracks").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{out}: cannot create output directory ({exc.strerror})") from None
    if not os.access(out / "tracks", os.W_OK):
        raise OutputError(f"{out}: directory is not writable")
    index = new_index(cfg, old, skipped, {str(c.path) for c in todo})
    bar = progress_bar(sum(totals.values()), "prepare", unit="frame", quiet=quiet)
    new_entries: list[dict] = []
    faceless: list[str] = []
    try:
        write_index(out, index)
        with bar, contextlib.closing(export_all(todo, out, cfg)) as finished:  # closing: workers stopped first
            for clip, entries in finished:
                if not entries:
                    faceless.append(f"{clip.path}: no face track (no face found on {cfg.min_track} or more "
                                    f"frames); identity {clip.identity!r} gets no crops")
                index["tracks"] += entries
                index["clips"].append({"source": str(clip.path), "identity": clip.identity, "split": clip.split,
                                       "tracks": len(entries)})
                write_index(out, index)
                new_entries += entries
                bar.update(totals[clip.path])
        index["complete"] = True
        write_index(out, index)
        for problem in [DepixWarning(f) for f in faceless] + split_problems(index):  # after the bar, one line each
            warnings.warn(problem, stacklevel=2)
    except BaseException:
        done = {Path(c["source"]).stem for c in index["clips"]}
        remove_unfinished(out, [c for c in todo if c.path.stem not in done])
        if old is None and not index["clips"]:
            remove_empty_dataset(out, created)
        raise
    size = sum((out / e["file"]).stat().st_size for e in new_entries)
    return PrepareSummary(len(todo), len(new_entries), sum(e["frames"] for e in new_entries), size,
                          out / "index.json", tuple(skipped), kept, split_counts(index["tracks"]))


def export_all(clips: Sequence[ClipInput], out: Path, cfg: PrepareConfig) -> Iterator[tuple[ClipInput, list]]:
    """(clip, index entries) as each clip finishes, in input order; in parallel processes when asked."""
    workers = max(1, min(cfg.workers or (os.cpu_count() or 1), len(clips)))
    jobs = [(c, out, cfg) for c in clips]
    if workers == 1:
        worker_init()
        for c, j in zip(clips, jobs):
            yield c, worker_job(j)
        return
    ctx = multiprocessing.get_context("spawn")  # no fork: cv2/onnx thread pools do not survive it
    pool = ctx.Pool(workers, initializer=worker_init, initargs=(True,))
    try:
        for e, c in zip(pool.imap(worker_job, jobs), clips):
            yield c, e
        pool.close()
    finally:
        pool.terminate()  # on error or interrupt: stop the workers before their files are removed
        pool.join()
