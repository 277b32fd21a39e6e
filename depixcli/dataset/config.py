"""What `depix prepare` makes: crop size, detector and encoder settings (`PrepareConfig`), and its summary."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from depixcli.dataset.inputs import VAL_FRACTION

CROP_SIZE = 128  # px, side of the square head crops
MIN_TRACK = 8  # frames, shorter tracks are not exported
CRF = 12  # x264 constant rate factor: 42 MiB, 43.1 dB for all of ../shared/data (bench/bench_export.py)
PIX_FMT = "yuv444p"  # chroma at full resolution (crops are small: 4:2:0 would halve colour detail)
PRESET = "slow"  # x264 preset: smaller files at the same quality; 128 px crops encode fast anyway
CODEC = "libx264"
DETECT_EVERY = 2  # frames: crop boxes within 0.03 % of every-frame ones, half the time (bench_track_settings.py)
DETECT_MAX_SIDE = 320  # px: recall on ../shared/data equal to 640 (bench/bench_detect.py), 1.7x faster
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
class PrepareSummary:
    clips: int
    tracks: int
    frames: int  # crop frames written
    bytes: int  # size of the track videos
    index: Path
    skipped: tuple[str, ...] = ()  # "path: reason" of unreadable inputs left out (skip_unreadable=True)
    kept: int = 0  # clips already in the dataset (add=True), not exported again
    splits: tuple[tuple[str, int, int], ...] = ()  # (split, identities, tracks) of the whole dataset
