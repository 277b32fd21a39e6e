"""Head-crop training data: export from face videos (`depix prepare`) and loading (`load_crops`).

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
import csv
import json
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from depixcli.errors import ConfigError, DepixWarning, InputError, OutputError
from depixcli.io.files import TMP_TAG, commit, discard, temp_beside, write_atomic

FORMAT_NAME = "depix-crops"
FORMAT_VERSION = 1
CROP_SIZE = 128  # px, side of the square head crops
MIN_TRACK = 8  # frames, shorter tracks are not exported
CRF = 12  # x264 constant rate factor: 42 MiB, 43.1 dB for all of ../shared/data (bench/bench_export.py)
PIX_FMT = "yuv444p"  # chroma at full resolution (crops are small: 4:2:0 would halve colour detail)
PRESET = "slow"  # x264 preset: smaller files at the same quality; 128 px crops encode fast anyway
CODEC = "libx264"
DETECT_EVERY = 2  # frames: crop boxes within 0.03 % of every-frame ones, half the time (bench_track_settings.py)
DETECT_MAX_SIDE = 320  # px: recall on ../shared/data equal to 640 (bench/bench_detect.py), 1.7x faster
VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg")
DEFAULT_SPLIT = "train"
VAL_SPLIT = "val"
SPLITS = (DEFAULT_SPLIT, VAL_SPLIT)  # `depix train` trains on the first and validates on the second
VAL_FRACTION = 0.1  # share of identities (without a split column) held out for validation
# PrepareConfig fields that change the crops or their encoding: `--add` needs them equal to the dataset's
SAME_FOR_ADD = ("size", "detector", "threshold", "min_track", "detect_every", "max_side", "crf", "pix_fmt", "preset")


@dataclass(frozen=True)
class PrepareConfig:
    size: int = CROP_SIZE  # px
    detector: str = "yunet"  # a key of detect.DETECTORS
    threshold: float | None = None  # detector score threshold (None: the detector's default)
    min_track: int = MIN_TRACK  # frames
    detect_every: int = DETECT_EVERY  # frames; boxes of the frames between come from the tracker
    max_side: int = DETECT_MAX_SIDE  # px, long side of the copy the detector sees
    crf: int = CRF
    pix_fmt: str = PIX_FMT
    preset: str = PRESET
    workers: int = 0  # processes; 0: one per CPU core (at most one per clip)
    val_fraction: float = VAL_FRACTION  # identities held out as "val" when the input gives no split


@dataclass(frozen=True)
class ClipInput:
    path: Path
    identity: str
    split: str | None  # None: not given; `assign_splits` holds out whole identities


@dataclass(frozen=True, eq=False)
class CropTrack:
    frames: np.ndarray  # (T, S, S, 3) uint8 RGB head crops
    identity: str
    split: str
    source: str  # source clip path as given to `depix prepare`
    fps: float
    track_id: str  # "<clipstem>_t<k>", also the file name stem


@dataclass(frozen=True)
class PrepareSummary:
    clips: int
    tracks: int
    frames: int  # crop frames written
    bytes: int  # size of the track videos
    index: Path
    skipped: tuple[str, ...] = ()  # "path: reason" of unreadable inputs left out (skip_unreadable=True)
    kept: int = 0  # clips already in the dataset (add=True), not exported again
    splits: tuple[tuple[str, int, int], ...] = ()  # (split, identities, tracks) of the whole dataset


# ---------------------------------------------------------------- inputs


def collect_inputs(inputs: Sequence[str | os.PathLike]) -> list[ClipInput]:
    """Video files, directories (their videos, sorted) and CSV lists -> clips to export.

    A CSV has a header with at least `file`; `identity` and `split` are optional columns; relative paths
    are resolved against the CSV's directory. Without an identity the clip's file stem is used; without a
    split it is None (see `assign_splits`). Raises InputError for a missing path, a bad CSV or duplicate
    clip stems.
    """
    clips: list[ClipInput] = []
    for raw in inputs:
        p = Path(raw)
        if not p.exists():
            raise InputError(f"{p}: no such file or directory")
        if p.is_dir():
            vids = sorted(q for q in p.iterdir() if q.suffix.lower() in VIDEO_EXTENSIONS and q.is_file())
            if not vids:
                raise InputError(f"{p}: directory holds no video files ({', '.join(VIDEO_EXTENSIONS)})")
            clips += [ClipInput(q, q.stem, None) for q in vids]
        elif p.suffix.lower() == ".csv":
            clips += _read_csv(p)
        else:
            clips.append(ClipInput(p, p.stem, None))
    seen: dict[str, Path] = {}
    for c in clips:
        if c.path.stem in seen:
            raise InputError(f"two inputs share the name {c.path.stem!r}: {seen[c.path.stem]} and {c.path}")
        seen[c.path.stem] = c.path
    return clips


def _read_csv(path: Path) -> list[ClipInput]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            header = reader.fieldnames
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path}: cannot read CSV ({exc})") from None
    if not header or "file" not in header:
        raise InputError(f"{path}: CSV needs a header with a 'file' column")
    if not rows:
        raise InputError(f"{path}: the CSV lists no clips (a header and no rows)")
    out = []
    for n, row in enumerate(rows, start=2):
        if not row.get("file"):
            raise InputError(f"{path}:{n}: empty 'file'")
        if row.get("split") and row["split"] not in SPLITS:
            raise InputError(f"{path}:{n}: unknown split {row['split']!r}: use {' or '.join(SPLITS)} (or leave it "
                             "empty to split by identity)")
        clip = (path.parent / row["file"]) if not os.path.isabs(row["file"]) else Path(row["file"])
        if not clip.is_file():
            raise InputError(f"{path}:{n}: {clip}: no such file")
        out.append(ClipInput(clip, row.get("identity") or clip.stem, row.get("split") or None))
    return out


def identity_hash(identity: str) -> float:
    """A fixed pseudo-random number in [0, 1) for an identity name (same on every machine and run)."""
    import hashlib

    return int.from_bytes(hashlib.sha256(identity.encode("utf-8")).digest()[:8], "big") / 2**64


def assign_splits(clips: Sequence[ClipInput], val_fraction: float = VAL_FRACTION,
                  known: dict[str, str] | None = None) -> list[ClipInput]:
    """Give every clip without a split one, holding out whole identities.

    An identity keeps the split it already has: in `known` (the dataset being added to) or on another of
    its clips. Otherwise it goes to "val" when `identity_hash` < `val_fraction`, else "train". When that
    leaves no identity in val (and `val_fraction` > 0), the new identity with the smallest hash is held
    out, as long as one stays in train.
    """
    given = dict(known or {})
    for c in clips:
        if c.split is not None:
            given.setdefault(c.identity, c.split)
    free = sorted({c.identity for c in clips if c.split is None} - set(given), key=identity_hash)
    chosen = {i: VAL_SPLIT if identity_hash(i) < val_fraction else DEFAULT_SPLIT for i in free}
    splits = set(given.values()) | set(chosen.values())
    if val_fraction > 0 and VAL_SPLIT not in splits and len(given) + len(free) >= 2 and free:
        if len(free) >= 2 or DEFAULT_SPLIT in given.values():
            chosen[free[0]] = VAL_SPLIT
    chosen.update(given)
    return [c if c.split is not None else ClipInput(c.path, c.identity, chosen[c.identity]) for c in clips]


# ---------------------------------------------------------------- decoding (video.py, export side only)


def readable_inputs(clips: Sequence[ClipInput], on_skip=print) -> list[ClipInput]:
    """The clips whose video can be probed; `on_skip(message)` is called for each one left out."""
    out = []
    for c in clips:
        try:
            _video_fps_frames(c.path)
            out.append(c)
        except InputError as exc:
            on_skip(f"skipped: {exc}")
    return out


def _video_fps_frames(path: Path) -> tuple[Fraction, int]:
    """Frame rate and frame count (estimate if the container does not say) of a clip."""
    from depixcli.io import video

    info = video.probe(path)
    return Fraction(info.fps), int(info.frames)


def _frames(path: Path) -> Iterator[np.ndarray]:
    """Stream the clip's frames as `(H, W, 3)` uint8 RGB (rotation applied)."""
    from depixcli.io import video

    for fr in video.read_frames(path):
        yield fr.image


# ---------------------------------------------------------------- export


def _detect_clip(path: Path, detector, every: int) -> list[list]:
    """Detections of every `every`-th frame and of the last one (others: empty, bridged by the tracker)."""
    per_frame: list[list] = []
    img = None
    for i, img in enumerate(_frames(path)):
        per_frame.append(detector.detect(img) if i % every == 0 else [])
    if img is not None and (len(per_frame) - 1) % every:
        per_frame[-1] = detector.detect(img)
    return per_frame


class _TrackWriter:
    """Stream `(S, S, 3)` uint8 RGB crops into one H.264 file under a temp name (`commit` renames it).

    Not video.VideoWriter: track files carry no audio or source timestamps, and their RGB -> YUV
    conversion is left untagged BT.601, which is what cv2.VideoCapture (load_crops) assumes when
    converting back, so the round trip has no colour-matrix error.
    """

    def __init__(self, path: Path, size: int, fps: Fraction, cfg: PrepareConfig):
        import av

        self.path = path
        self.tmp = temp_beside(path)
        self._c = av.open(str(self.tmp), "w", format="mp4")
        self._s = self._c.add_stream(CODEC, rate=fps)
        self._s.width = self._s.height = size
        self._s.pix_fmt = cfg.pix_fmt
        self._s.options = {"crf": str(cfg.crf), "preset": cfg.preset}

    def write(self, img: np.ndarray) -> None:
        import av

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
    from depixcli.faces.track import TrackConfig, build_tracks
    from depixcli.geometry.crop import HEAD_SCALE, crop, head_box

    det = detector if detector is not None else _load(cfg)
    fps, _ = _video_fps_frames(clip.path)
    per_frame = _detect_clip(clip.path, det, cfg.detect_every)
    # gaps are counted in frames: undetected in-between frames must not use up the tracker's patience
    tcfg = TrackConfig(min_length=cfg.min_track, max_gap=TrackConfig().max_gap * cfg.detect_every)
    tracks = build_tracks(per_frame, tcfg)
    if not tracks:
        return []
    boxes = {t.id: [head_box(b, HEAD_SCALE) for b in t.boxes] for t in tracks}
    ends = {t.id: int(t.frames[-1]) for t in tracks}
    writers: dict[int, _TrackWriter] = {}
    names = {t.id: f"{clip.path.stem}_t{k}" for k, t in enumerate(tracks)}
    last = max(ends.values())
    everything: list[_TrackWriter] = []
    try:
        for i, img in enumerate(_frames(clip.path)):
            for t in tracks:
                if not (t.frames[0] <= i <= ends[t.id]):
                    continue
                if t.id not in writers:
                    w = _TrackWriter(out_dir / "tracks" / f"{names[t.id]}.mp4", cfg.size, fps, cfg)
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


def _load(cfg: PrepareConfig):
    from depixcli.faces.detect import load_detector

    return load_detector(cfg.detector, threshold=cfg.threshold, max_side=cfg.max_side)


def _worker_init(pool_worker: bool = False) -> None:
    import signal

    import cv2

    if pool_worker:
        # Ctrl-C (and a closed terminal's SIGHUP) reaches the whole process group: the parent stops the pool
        # and removes what the workers left behind; a worker that handled it too would print a traceback.
        # SIGTERM keeps its default: it is how the pool stops its workers.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    cv2.setNumThreads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")


_WORKER_DETECTOR = None


def _worker_job(args: tuple[ClipInput, Path, PrepareConfig]) -> list[dict]:
    import av

    from depixcli.errors import DepixError

    global _WORKER_DETECTOR
    clip, out_dir, cfg = args
    if _WORKER_DETECTOR is None:
        _WORKER_DETECTOR = _load(cfg)
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
    from tqdm import tqdm

    out = Path(out_dir)
    old = _existing_dataset(out, cfg, add)
    _load(cfg)  # fail early on a missing backend
    todo, kept = _not_done(clips, old)
    known = {c["identity"]: c["split"] for c in old["clips"]} if old else {}
    todo = assign_splits(todo, cfg.val_fraction, known)
    totals: dict[Path, int] = {}
    skipped: list[str] = []
    for c in todo:
        try:
            totals[c.path] = _video_fps_frames(c.path)[1]
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
    index = _new_index(cfg, old, skipped, {str(c.path) for c in todo})
    bar = tqdm(total=sum(totals.values()), unit="frame", desc="prepare", disable=quiet, dynamic_ncols=True)
    new_entries: list[dict] = []
    faceless: list[str] = []
    try:
        _write_index(out, index)
        with bar, contextlib.closing(_export_all(todo, out, cfg)) as finished:  # closing: workers stopped first
            for clip, entries in finished:
                if not entries:
                    faceless.append(f"{clip.path}: no face track (no face found on {cfg.min_track} or more "
                                    f"frames); identity {clip.identity!r} gets no crops")
                index["tracks"] += entries
                index["clips"].append({"source": str(clip.path), "identity": clip.identity, "split": clip.split,
                                       "tracks": len(entries)})
                _write_index(out, index)
                new_entries += entries
                bar.update(totals[clip.path])
        index["complete"] = True
        _write_index(out, index)
        for problem in faceless + split_problems(index):  # after the progress bar, one line each
            warnings.warn(problem, DepixWarning, stacklevel=2)
    except BaseException:
        done = {Path(c["source"]).stem for c in index["clips"]}
        _remove_unfinished(out, [c for c in todo if c.path.stem not in done])
        if old is None and not index["clips"]:
            _remove_empty_dataset(out, created)
        raise
    size = sum((out / e["file"]).stat().st_size for e in new_entries)
    return PrepareSummary(len(todo), len(new_entries), sum(e["frames"] for e in new_entries), size,
                          out / "index.json", tuple(skipped), kept, _split_counts(index["tracks"]))


def split_problems(index: dict) -> list[str]:
    """Why `depix train` could not use a finished dataset: a split without tracks, and the cause."""
    with_tracks = {e["split"] for e in index["tracks"]}
    problems = []
    for split in SPLITS:
        if split in with_tracks:
            continue
        faceless = sorted({c["identity"] for c in index.get("clips", []) if c["split"] == split and not c["tracks"]})
        if faceless:
            cause = f"its {len(faceless)} identit{'y' if len(faceless) == 1 else 'ies'} ({', '.join(faceless)}) " \
                    "gave no face track"
        elif split == VAL_SPLIT:
            cause = "no identity was held out (one identity, or --val-fraction 0: give a CSV with a split column)"
        else:
            cause = "every identity is in val"
        problems.append(f"no {split!r} tracks: {cause}; `depix train` needs tracks in both train and val")
    return problems


def _split_counts(tracks: Sequence[dict]) -> tuple[tuple[str, int, int], ...]:
    """(split, identities, tracks) per split of index entries, by split name."""
    return tuple((sp, len({e["identity"] for e in tracks if e["split"] == sp}), sum(e["split"] == sp for e in tracks))
                 for sp in sorted({e["split"] for e in tracks}))


def _existing_dataset(out: Path, cfg: PrepareConfig, add: bool) -> dict | None:
    """The dataset already in `out` (None: there is none); refuse to touch one without `add`."""
    if not out.exists():
        return None
    if not out.is_dir():
        raise OutputError(f"{out}: exists and is not a directory")
    if not (out / "index.json").is_file():
        if any(out.iterdir()) and not add:
            raise OutputError(f"{out}: directory is not empty; choose a new one, or add --add to write into it")
        return None
    index = read_index(out, unfinished_ok=True)
    state = "finished" if index.get("complete", True) else "unfinished"
    if not add:
        raise OutputError(f"{out}: already holds a crop dataset ({state}, {len(index['tracks'])} tracks); "
                          "add --add to add these clips to it (clips already in it are kept), "
                          "or choose another directory")
    old_cfg = index.get("config", {})
    new_cfg = asdict(cfg)
    for key in SAME_FOR_ADD:
        if key in old_cfg and old_cfg[key] != new_cfg[key]:
            raise ConfigError(f"{out}: the dataset was made with {key}={old_cfg[key]!r}, this run has "
                              f"{key}={new_cfg[key]!r}; --add needs the same settings")
    if "clips" not in index:  # made before clips were listed: one record per source with tracks
        by_source: dict[str, dict] = {}
        for e in index["tracks"]:
            rec = by_source.setdefault(e["source"], {"source": e["source"], "identity": e["identity"],
                                                     "split": e["split"], "tracks": 0})
            rec["tracks"] += 1
        index["clips"] = list(by_source.values())
    return index


def _not_done(clips: Sequence[ClipInput], old: dict | None) -> tuple[list[ClipInput], int]:
    """Clips not yet in the dataset `old`, and how many are; InputError if a new clip's tracks would take
    the file names of another clip's."""
    if not old:
        return list(clips), 0
    done = {Path(c["source"]).stem: c["source"] for c in old["clips"]}
    todo, kept = [], 0
    for c in clips:
        source = done.get(c.path.stem)
        if source is None:
            todo.append(c)
        elif source == str(c.path) or (Path(source).exists() and os.path.samefile(source, c.path)):
            kept += 1
        else:
            raise InputError(f"{c.path}: the dataset already has tracks named {c.path.stem}_t* from {source}")
    return todo, kept


def _new_index(cfg: PrepareConfig, old: dict | None, skipped: list[str], sources: set[str]) -> dict:
    earlier_skips = [s for s in (old or {}).get("skipped", []) if s.split(": ", 1)[0] not in sources]
    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "complete": False,
        "crop_size": cfg.size,
        "head_scale": _geometry_constants()[0],
        "head_shift": _geometry_constants()[1],
        "detector": cfg.detector,
        "encoder": {"codec": CODEC, "crf": cfg.crf, "pix_fmt": cfg.pix_fmt, "preset": cfg.preset},
        "config": old["config"] if old and "config" in old else asdict(cfg),
        "skipped": earlier_skips + skipped,
        "clips": list(old["clips"]) if old else [],
        "tracks": list(old["tracks"]) if old else [],
    }


def _export_all(clips: Sequence[ClipInput], out: Path, cfg: PrepareConfig) -> Iterator[tuple[ClipInput, list]]:
    """(clip, index entries) as each clip finishes, in input order; in parallel processes when asked."""
    import multiprocessing

    workers = max(1, min(cfg.workers or (os.cpu_count() or 1), len(clips)))
    jobs = [(c, out, cfg) for c in clips]
    if workers == 1:
        _worker_init()
        for c, j in zip(clips, jobs):
            yield c, _worker_job(j)
        return
    ctx = multiprocessing.get_context("spawn")  # no fork: cv2/onnx thread pools do not survive it
    pool = ctx.Pool(workers, initializer=_worker_init, initargs=(True,))
    try:
        for e, c in zip(pool.imap(_worker_job, jobs), clips):
            yield c, e
        pool.close()
    finally:
        pool.terminate()  # on error or interrupt: stop the workers before their files are removed
        pool.join()


def _write_index(out: Path, index: dict) -> None:
    """Replace `out/index.json` atomically; OutputError (and no temp file) if it cannot be written."""
    write_atomic(out / "index.json", json.dumps(index, indent=1))


def _remove_unfinished(out: Path, clips: Sequence[ClipInput]) -> None:
    """Delete the temp files, and the tracks of `clips` (not in the index), that an interrupted export left."""
    tracks = out / "tracks"
    if not tracks.is_dir():
        return
    stems = {c.path.stem for c in clips}
    for f in tracks.iterdir():
        if TMP_TAG in f.name:
            f.unlink(missing_ok=True)
        elif f.suffix == ".mp4" and f.stem.rpartition("_t")[0] in stems:
            f.unlink(missing_ok=True)


def _remove_empty_dataset(out: Path, created: bool) -> None:
    """Undo a new dataset in which nothing was finished: `out` as it was (removed if this run created it)."""
    (out / "index.json").unlink(missing_ok=True)
    for d in (out / "tracks", out) if created else (out / "tracks",):
        try:
            d.rmdir()
        except OSError:
            return


def _geometry_constants() -> tuple[float, float]:
    from depixcli.geometry.crop import HEAD_SCALE, HEAD_SHIFT

    return HEAD_SCALE, HEAD_SHIFT


# ---------------------------------------------------------------- loading (cv2 only)


def read_index(directory: str | os.PathLike, unfinished_ok: bool = False) -> dict:
    """Parse and check `directory/index.json`; InputError if missing or (unless `unfinished_ok`) left by an
    interrupted `depix prepare`, ConfigError if of another format."""
    path = Path(directory) / "index.json"
    if not path.is_file():
        raise InputError(f"{directory}: not a crop dataset (no index.json)")
    try:
        index = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: unreadable ({exc})") from None
    if not isinstance(index, dict):
        raise ConfigError(f"{path}: not a depix crop index (a JSON {type(index).__name__}, expected an object)")
    if index.get("format") != FORMAT_NAME or index.get("version") != FORMAT_VERSION:
        raise ConfigError(
            f"{path}: format {index.get('format')!r} v{index.get('version')}, "
            f"expected {FORMAT_NAME!r} v{FORMAT_VERSION}"
        )
    _check_index_shape(index, path)
    if not unfinished_ok and not index.get("complete", True):
        raise InputError(f"{directory}: unfinished dataset ({len(index.get('clips', []))} clips done; "
                         "`depix prepare` stopped early): rerun it with --add to finish it")
    return index


TRACK_FIELDS = {"file": str, "track_id": str, "identity": str, "split": str, "source": str, "fps": (int, float),
                "boxes": list}  # what the loaders read from each index.json track entry


def _check_index_shape(index: dict, path: Path) -> None:
    """ConfigError naming the first field of `index` that the loaders could not use (a hand-edited or foreign
    index.json that is valid JSON of the wrong shape)."""
    size = index.get("crop_size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ConfigError(f"{path}: malformed index: 'crop_size' must be a positive integer, got {size!r}")
    for key in ("tracks", "clips"):
        if key in index and not isinstance(index[key], list):
            raise ConfigError(f"{path}: malformed index: {key!r} must be a list")
    if "tracks" not in index:
        raise ConfigError(f"{path}: malformed index: no 'tracks' list")
    for n, entry in enumerate(index["tracks"]):
        if not isinstance(entry, dict):
            raise ConfigError(f"{path}: malformed index: track {n} is a {type(entry).__name__}, not an object")
        for key, kind in TRACK_FIELDS.items():
            if not isinstance(entry.get(key), kind):
                raise ConfigError(f"{path}: malformed index: track {n} has no valid {key!r}")


def _decode_track(path: Path, size: int) -> np.ndarray:
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise InputError(f"{path}: cannot open track video")
    frames = []
    try:
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    finally:
        cap.release()
    if not frames or frames[0].shape != (size, size, 3):
        raise InputError(f"{path}: expected {size}x{size} frames")
    return np.stack(frames)


def load_crops(directory: str | os.PathLike, split: str | None = None,
               identities: Sequence[str] | None = None, min_source_size: float = 0.0) -> list[CropTrack]:
    """All tracks of a crop dataset (optionally one split / some identities), decoded into memory.

    min_source_size: px; drop tracks whose median crop box side in the source is smaller (such crops
    were upscaled to S and are blurry: e.g. 128 keeps only crops at native or higher resolution).
    Returns CropTrack with frames `(T, S, S, 3)` uint8 RGB, in index order.
    """
    d = Path(directory)
    index = read_index(d)
    wanted = set(identities) if identities is not None else None
    out = []
    for e in index["tracks"]:
        if split is not None and e["split"] != split:
            continue
        if wanted is not None and e["identity"] not in wanted:
            continue
        if min_source_size and np.median([box[2] for box in e["boxes"]]) < min_source_size:
            continue
        frames = _decode_track(d / e["file"], index["crop_size"])
        out.append(CropTrack(frames, e["identity"], e["split"], e["source"], float(e["fps"]), e["track_id"]))
    return out
