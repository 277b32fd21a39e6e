"""What kind of mosaic a FaceTrack is: block values (means, centre or top-left samples), grid anchor (image,
face, box, static), and whether the model restores it or interpolated block values do (`classified`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import dataclasses

import numpy as np

from depixcli.faces.track import smooth_boxes
from depixcli.geometry.mosaic import circular_spread
from depixcli.locate.values import SMOOTHED_KINDS, classify_values
from depixcli.restore.blend import MOSAIC_SCALE
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


def model_fallback(track: FaceTrack, grid_model: bool = False) -> str | None:
    """Why the model should not restore this track, or None: blocks across the face outside the range it
    was trained on (`degrade.MosaicConfig`), point samples it cannot place in their blocks ("samples": smoothed
    instead, never worse than smoothing), or top-left samples for a model without grid input (it cannot
    tell where in a block the sample was taken: on deface mosaics of 4 val clips, bicubic interpolation of
    the samples beat the shipped model by 1.9 to 3.8 dB, bench/bench_mosaics.py). Such mosaics get
    interpolated block values (`restore.evidence.interpolate_values`) or, for SMOOTHED_KINDS, a
    smoothed mosaic (`restore.blend.smooth_values`) instead."""
    n = face_blocks(track)
    if n is None:
        return None
    mc = MosaicConfig()
    if n > mc.blocks_max * RANGE_SLACK:
        return f"{n:.0f} blocks across the face, finer than the model's {mc.blocks_min}-{mc.blocks_max}"
    if n < mc.blocks_min / RANGE_SLACK:
        return f"{n:.1f} blocks across the face, coarser than the model's {mc.blocks_min}-{mc.blocks_max}"
    if track.values == "samples":  # deface's samples on 3 frames of a val clip, restored by the model as block
        return "point samples, too few blocks to place them"  # means: 1.4 dB under smoothing (bench_mosaics.py)
    if track.values == "corner" and not grid_model:
        return "top-left samples, and this model has no grid input"
    return None


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
        "restored_with": "model" if track.fallback is None else (
            "smoothed mosaic" if track.values in SMOOTHED_KINDS else "interpolated block values"),
        "fallback_reason": track.fallback,
    }


def classified(track: FaceTrack, values: str | None = None, errors: np.ndarray | None = None) -> FaceTrack:
    """`track` with its value kind (`values`, else `locate.classify_values(errors)` when given), anchor and
    fallback filled in."""
    if values is None:
        values = classify_values(errors) if errors is not None and len(errors) else "unclear"
    origins = track.origins if track.origins is not None else np.full((track.count, 2), np.nan)
    track = dataclasses.replace(track, values=values, anchor=mosaic_anchor(track.rects, origins, track.cells))
    return dataclasses.replace(track, fallback=model_fallback(track))
