"""The clips `depix prepare` (and `depix pixelate`) take: video files, folders and CSV lists (`collect_inputs`),
their identities and the train / val split that holds out whole identities (`assign_splits`), and decoding them
(`clip_frames`: `(H, W, 3)` uint8 RGB, rotation applied)."""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from depixcli.errors import InputError
from depixcli.io import video

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg")
DEFAULT_SPLIT = "train"
VAL_SPLIT = "val"
SPLITS = (DEFAULT_SPLIT, VAL_SPLIT)  # `depix train` trains on the first and validates on the second
VAL_FRACTION = 0.1  # share of identities (without a split column) held out for validation
# PrepareConfig fields that change the crops or their encoding: `--add` needs them equal to the dataset's


@dataclass(frozen=True)
class ClipInput:
    path: Path
    identity: str
    split: str | None  # None: not given; `assign_splits` holds out whole identities


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
            clips += read_csv(p)
        else:
            clips.append(ClipInput(p, p.stem, None))
    seen: dict[str, Path] = {}
    for c in clips:
        if c.path.stem in seen:
            raise InputError(f"two inputs share the name {c.path.stem!r}: {seen[c.path.stem]} and {c.path}")
        seen[c.path.stem] = c.path
    return clips


def read_csv(path: Path) -> list[ClipInput]:
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


def readable_inputs(clips: Sequence[ClipInput], on_skip=print) -> list[ClipInput]:
    """The clips whose video can be probed; `on_skip(message)` is called for each one left out."""
    out = []
    for c in clips:
        try:
            clip_fps_frames(c.path)
            out.append(c)
        except InputError as exc:
            on_skip(f"skipped: {exc}")
    return out


def clip_fps_frames(path: Path) -> tuple[Fraction, int]:
    """Frame rate and frame count (estimate if the container does not say) of a clip."""
    info = video.probe(path)
    return Fraction(info.fps), int(info.frames)


def clip_frames(path: Path) -> Iterator[np.ndarray]:
    """Stream the clip's frames as `(H, W, 3)` uint8 RGB (rotation applied)."""
    for fr in video.read_frames(path):
        yield fr.image
