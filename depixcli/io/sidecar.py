"""The one `--boxes` sidecar format: what `depix pixelate` writes and `depix run --boxes` reads.

A JSON file, version 1:

    {
      "version": 1,
      "input": "in.mp4", "output": "out.mp4",
      "width": 1280, "height": 720,            # px, frames as displayed
      "fps": "30000/1001",                     # exact frame rate, as a fraction string
      "frame_count": 250,                      # frames written
      "config": {"blocks": 16, "block_size": null, "mode": "mean", "scale": 1.3,
                 "detector": "yunet", "threshold": null},  # + "secure": {...} (SecureMosaic) with --secure,
                 # + "window": {"start_s", "duration_s", "max_frames"} with --start / --duration / --max-frames
                 # (frames are then numbered from the part's first frame; pts stay the source's)
      "tracks": [{"id": 0, "first_frame": 0, "last_frame": 249}],
      "frames": [                              # one entry per frame written, in order
        {"index": 0, "pts": 0,                 # pts in the input stream's time base (null if unknown)
         "faces": [{"track": 0,
                    "box": [x0, y0, x1, y1],    # float px, smoothed detector face box (before scale)
                    "filled": false,            # true: box interpolated over a missed detection
                    "grid": {"rect": [x0, y0, x1, y1], "cell_w": 12.5, "cell_h": 12.5,
                             "origin_x": 100.0, "origin_y": 40.0, "mode": "mean"}}]}
      ]
    }

`grid` is exactly the `MosaicGrid` applied (`MosaicGrid.from_dict` reads it back); its rect may extend
past the frame, only the part inside was changed.

Versions: readers accept 1 to `SIDECAR_VERSION` (an int); anything else is an `InputError` (a newer depix
wrote it, or it is not a sidecar).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from depixcli.errors import ConfigError, InputError
from depixcli.geometry.mosaic import MosaicGrid

SIDECAR_VERSION = 1
FIRST_VERSION = 1  # the oldest sidecar version this depix reads


class SidecarError(InputError):
    """A `--boxes` sidecar is missing, unreadable, of another version or made for another video."""


def write_sidecar(path: str | os.PathLike, doc: dict) -> None:
    """Write `doc` (the format above, its "version" set here) as compact JSON to `path` (a temporary the caller
    renames; see `io.files.atomic_path`)."""
    Path(path).write_text(json.dumps({"version": SIDECAR_VERSION} | doc, separators=(",", ":")), encoding="utf-8")


def _check_version(doc, path) -> None:
    if not isinstance(doc, dict) or not isinstance(doc.get("frames"), list):
        raise SidecarError(f"{path}: not a `depix pixelate` sidecar (no 'frames' list)")
    version = doc.get("version")
    if type(version) is not int or not FIRST_VERSION <= version <= SIDECAR_VERSION:
        raise SidecarError(f"{path}: sidecar version {version!r}; this depix reads "
                           f"{FIRST_VERSION} to {SIDECAR_VERSION}")


def _check_video(doc: dict, path, size, frames) -> None:
    made_for = (doc.get("width"), doc.get("height"))
    if size is not None and None not in made_for and made_for != tuple(size):
        raise SidecarError(f"{path}: made for a {made_for[0]}x{made_for[1]} video, "
                           f"this one is {size[0]}x{size[1]}")
    if frames is not None and doc.get("frame_count") not in (None, frames):
        raise SidecarError(f"{path}: made for a video of {doc['frame_count']} frames, this one has {frames}")


def read_sidecar(path: str | os.PathLike, size: tuple[int, int] | None = None, frames: int | None = None) -> dict:
    """Load a sidecar; each face's "box" comes back as a (4,) float array and its "grid" as a `MosaicGrid`
    (None when the sidecar has none). `size` (w, h) px and `frames`: the video's, when known; a sidecar made
    for another video is a SidecarError, as is one of another version or a malformed one."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SidecarError(f"{path}: file not found") from None
    except (OSError, ValueError) as exc:
        raise SidecarError(f"{path}: not a readable JSON file ({exc})") from None
    _check_version(doc, path)
    _check_video(doc, path, size, frames)
    try:
        for entry in doc["frames"]:
            entry["index"] = int(entry["index"])
            for face in entry["faces"]:
                face["box"] = np.asarray(face["box"], np.float64).reshape(4)
                face["grid"] = MosaicGrid.from_dict(face["grid"]) if face.get("grid") is not None else None
    except (KeyError, TypeError, ValueError, AttributeError, ConfigError) as exc:
        raise SidecarError(f"{path}: bad frame entry ({exc})") from None
    last = max((e["index"] for e in doc["frames"] if e["faces"]), default=-1)
    if frames is not None and last >= frames:
        raise SidecarError(f"{path}: lists frame {last}, this video has {frames} frames")
    return doc


def face_spans(doc: dict) -> list[tuple]:
    """The faces of a read sidecar as spans `(start frame, (N, 4) face boxes, N grids or None)`, sorted by start.

    A track whose frames have gaps becomes one span per run of consecutive frames: frames not listed were
    not pixelated, so nothing is pasted there. Grids are None for a span where any frame lacks one."""
    per_track: dict = {}  # track id -> [(frame, box, grid)]
    for entry in doc["frames"]:
        for face in entry["faces"]:
            per_track.setdefault(face["track"], []).append((entry["index"], face["box"], face["grid"]))
    spans = []
    for items in per_track.values():
        items.sort(key=lambda x: x[0])
        index = np.array([x[0] for x in items])
        for run in np.split(np.arange(len(items)), np.flatnonzero(np.diff(index) != 1) + 1):
            grids = [items[k][2] for k in run]
            spans.append((int(index[run[0]]), np.stack([items[k][1] for k in run]),
                          grids if all(g is not None for g in grids) else None))
    return sorted(spans, key=lambda s: s[0])
