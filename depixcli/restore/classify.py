"""What kind of mosaic a FaceTrack is: block values (means, centre or top-left samples), grid anchor (image,
face, box, static), and how it is restored: the model, fused samples, interpolated or smoothed block values
(`classified`, `restore_method`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import dataclasses

import numpy as np

from depixcli.faces.track import smooth_boxes
from depixcli.geometry.mosaic import circular_spread
from depixcli.locate.values import classify_values
from depixcli.restore.blend import MOSAIC_SCALE
from depixcli.restore.config import METHODS, MODEL
from depixcli.train.degrade import MosaicConfig

if TYPE_CHECKING:
    from depixcli.restore.tracks import FaceTrack  # tracks imports classify


RANGE_SLACK = 1.1  # blocks across the face within this factor of the model's training range still use the model
BOX_JITTER = 1.0  # px rms: a mosaic rect that moves this far off its smoothed path each frame follows a jittery box
ANCHOR_SPREAD = 0.12  # cells: circular spread of the grid phase in the frame below which the grid is fixed there
MIN_MOTION_CELLS = 1.0  # cells: a mosaic moving less than this cannot tell image from box anchoring


def mosaic_anchor(rects: np.ndarray, origins: np.ndarray, cells: np.ndarray) -> str:
    """What a track's grid is fixed to, from its per-frame rects `(N, 4)`, grid lines `(N, 2)` and cells
    `(N, 2)` px (rows with nan left out): "image" (the grid's phase in the frame stays while the mosaic moves),
    "box" (the grid moves with a rect that jitters off its smoothed path by BOX_JITTER, as a per-frame
    detector box does), "face" (it moves smoothly with the mosaic), "static" (the mosaic moves less than
    MIN_MOTION_CELLS) or "unknown"."""
    ok = ~(np.isnan(origins).any(1) | np.isnan(cells).any(1) | np.isnan(rects).any(1))
    if ok.sum() < 2:
        return "unknown"
    r, o, c = rects[ok], origins[ok], cells[ok]
    centre = (r[:, :2] + r[:, 2:]) / 2 / c
    if np.ptp(centre, axis=0).max() < MIN_MOTION_CELLS:
        return "static"
    phase = (o / c) % 1.0
    if max(circular_spread(phase[:, 0]), circular_spread(phase[:, 1])) < ANCHOR_SPREAD:
        return "image"
    if len(r) >= 5 and float(np.sqrt(np.mean((r - smooth_boxes(r, 2.0)) ** 2))) > BOX_JITTER:
        return "box"
    return "face"


def face_blocks(track: FaceTrack) -> float | None:
    """Median blocks across the face of a track: rect width / MOSAIC_SCALE / cell width (None: cell unknown)."""
    ok = ~np.isnan(track.cells[:, 0])
    if not ok.any():
        return None
    w = track.rects[ok, 2] - track.rects[ok, 0]
    return float(np.median(w / MOSAIC_SCALE / track.cells[ok, 0]))


def restore_method(track: FaceTrack) -> tuple[str, str | None]:
    """How this track is restored and why not by the model: `(method, reason)`, reason None for the model.
    By `config.METHODS` of its value kind, inside or outside
    the range of blocks across the face the model was trained on (`degrade.MosaicConfig`, RANGE_SLACK): point
    samples are fused over frames (`restore.fusion`), block means out of range interpolated
    (`evidence.interpolate_values`), values of unclear kind out of range smoothed (`blend.smooth_values`)."""
    n = face_blocks(track)
    inside, outside = METHODS.get(track.values, METHODS["unclear"])
    if n is None:
        return MODEL, None  # block size unknown: nothing but the model can restore it
    mc = MosaicConfig()
    if n > mc.blocks_max * RANGE_SLACK:
        return outside, f"{n:.0f} blocks across the face, finer than the model's {mc.blocks_min}-{mc.blocks_max}"
    if n < mc.blocks_min / RANGE_SLACK:
        return outside, f"{n:.1f} blocks across the face, coarser than the model's {mc.blocks_min}-{mc.blocks_max}"
    if inside != MODEL:
        return inside, SAMPLE_REASONS.get(track.values, "point samples")
    return MODEL, None


SAMPLE_REASONS = {  # why point samples in the model's range are not restored by it
    "corner": "top-left samples: the model stays under their interpolation",
    "samples": "point samples, too few blocks to tell where (taken as top-left samples)",
    "centre": "centre samples",
}


def mosaic_summary(track: FaceTrack) -> dict:
    """What `depix run` found out about a track's mosaic and how it restores it (summary and --json)."""
    known = track.cells[~np.isnan(track.cells[:, 0])]
    blocks = face_blocks(track)
    return {
        "track": track.id,
        "frames": track.count,
        "values": track.values,
        "anchor": track.anchor,
        "block_px": [round(float(v), 2) for v in np.median(known, axis=0)] if len(known) else None,
        "face_blocks": None if blocks is None else round(blocks, 1),
        "restored_with": track.method,
        "fallback_reason": track.fallback,
    }


def classified(track: FaceTrack, values: str | None = None, errors: np.ndarray | None = None) -> FaceTrack:
    """`track` with its value kind (`values`, else `locate.classify_values(errors)` when given), anchor and
    restore method (`restore_method`) filled in."""
    if values is None:
        values = classify_values(errors) if errors is not None and len(errors) else "unclear"
    origins = track.origins if track.origins is not None else np.full((track.count, 2), np.nan)
    track = dataclasses.replace(track, values=values, anchor=mosaic_anchor(track.rects, origins, track.cells))
    return with_method(track)


def with_method(track: FaceTrack) -> FaceTrack:
    """`track` with `method` and `fallback` (the reason) from `restore_method`."""
    method, reason = restore_method(track)
    return dataclasses.replace(track, method=method, fallback=reason)
