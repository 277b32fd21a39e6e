"""Loading a crop dataset: `read_index` (index.json, checked) and `load_crops` (tracks decoded into memory with
cv2.VideoCapture, `(T, S, S, 3)` uint8 RGB head crops)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from depixcli.errors import ConfigError, InputError

FORMAT_NAME = "depix-crops"
FORMAT_VERSION = 1
TRACK_FIELDS = {"file": str, "track_id": str, "identity": str, "split": str, "source": str, "fps": (int, float),
                "boxes": list}  # what the loaders read from each index.json track entry


@dataclass(frozen=True, eq=False)
class CropTrack:
    frames: np.ndarray  # (T, S, S, 3) uint8 RGB head crops
    identity: str
    split: str
    source: str  # source clip path as given to `depix prepare`
    fps: float
    track_id: str  # "<clipstem>_t<k>", also the file name stem


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
    check_index_shape(index, path)
    if not unfinished_ok and not index.get("complete", True):
        raise InputError(f"{directory}: unfinished dataset ({len(index.get('clips', []))} clips done; "
                         "`depix prepare` stopped early)", advice="unfinished")
    return index


def check_index_shape(index: dict, path: Path) -> None:
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


def decode_track(path: Path, size: int) -> np.ndarray:
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
        frames = decode_track(d / e["file"], index["crop_size"])
        out.append(CropTrack(frames, e["identity"], e["split"], e["source"], float(e["fps"]), e["track_id"]))
    return out
