"""Still photos as training "videos": one head crop becomes an F-frame stack by small random motion.

A face seen in one photo only widens the pool of identities (thousands of people, against the ~200 of the
video clips); moving it slightly from frame to frame under a grid that stays where it is reproduces what
an image-anchored mosaic shows of a moving face: every frame samples the face at another grid phase.

Data flow: faces.csv (file, identity, black_border_frac) -> `load_stills` -> StillBank (uint8 (N, P, P, 3)
RGB in RAM) -> `StillBank.gather` (uint8 torch) -> `still_stacks` on the device: per frame an affine warp
(random-walk translation, scale and rotation) resampled to S x S -> (B, F, 3, S, S) float [0, 1] RGB, the
same layout as clip stacks, ready for `augment.augment` and `degrade.random_mosaic`.

The stills' crop convention (square of 2.0 x the face box, centred 0.1 box heights above the face centre,
see FACES.md) is wider than the clips' (geometry.HEAD_SCALE = 1.8), so the central HEAD_SCALE / STILL_SCALE
of a still maps onto the S x S output: faces have the same size in both.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from depixcli.errors import InputError
from depixcli.geometry.crop import HEAD_SCALE

STILL_SCALE = 2.0  # still crop side / face box side (FACES.md)
MAX_BLACK_BORDER = 0.1  # share of near-black pixels (LFW alignment wedges) above which a still is dropped


@dataclass(frozen=True)
class MotionConfig:
    step_px: float = 1.5  # std of the per-frame random-walk translation step, output px (S = 128)
    start_px: float = 3.0  # std of the first frame's translation, output px
    scale: float = 0.03  # largest relative zoom away from the face size of the clips (+-)
    scale_step: float = 0.01  # std of the per-frame zoom step (relative)
    rotate_deg: float = 3.0  # largest rotation (+-), degrees
    rotate_step_deg: float = 1.0  # std of the per-frame rotation step, degrees
    p_static: float = 0.2  # stacks with no motion at all (a face-anchored grid sees the same frame F times)


@dataclass(frozen=True, eq=False)
class StillBank:
    images: np.ndarray  # (N, P, P, 3) uint8 RGB
    identities: tuple[str, ...]  # per image

    def __len__(self) -> int:
        return len(self.images)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """(n,) indices, uniform over images."""
        return rng.integers(0, len(self.images), n)

    def gather(self, idx: np.ndarray) -> torch.Tensor:
        """(n,) indices -> (n, P, P, 3) uint8 tensor."""
        return torch.from_numpy(self.images[idx])


def load_stills(csv_path: str | os.PathLike, exclude: Sequence[str] = (), max_black: float = MAX_BLACK_BORDER,
                threads: int = 0) -> StillBank:
    """Read the stills listed in a faces.csv (`file`, `identity`, optional `black_border_frac`).

    Stills of people in `exclude` (e.g. the val split's identities) and stills with more near-black border than
    `max_black` are left out. Raises InputError for an unreadable CSV or image, or when nothing is left.
    """
    path = Path(csv_path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path}: cannot read stills CSV ({exc})") from None
    if not rows or "file" not in rows[0] or "identity" not in rows[0]:
        raise InputError(f"{path}: stills CSV needs a header with 'file' and 'identity' columns")
    banned = set(exclude)
    rows = [r for r in rows if r["identity"] not in banned and float(r.get("black_border_frac") or 0.0) <= max_black]
    if not rows:
        raise InputError(f"{path}: no stills left after the filters")

    def read(row: dict) -> np.ndarray:
        file = path.parent / row["file"]
        bgr = cv2.imread(str(file), cv2.IMREAD_COLOR)
        if bgr is None:
            raise InputError(f"{file}: cannot read image")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    with ThreadPoolExecutor(max(1, threads or (os.cpu_count() or 1))) as pool:
        images = list(pool.map(read, rows))
    side = images[0].shape[0]
    if any(im.shape != (side, side, 3) for im in images):
        raise InputError(f"{path}: stills must all be square and of one size")
    return StillBank(np.stack(images), tuple(r["identity"] for r in rows))


def still_stacks(stills: torch.Tensor, frames: int, size: int, gen: torch.Generator,
                 cfg: MotionConfig = MotionConfig(), cover: float = 0.0) -> torch.Tensor:
    """(B, P, P, 3) uint8 stills -> (B, frames, 3, size, size) float [0, 1] RGB stacks of a slightly moving face.

    cover: share of the still's side that one output frame shows (default HEAD_SCALE / STILL_SCALE). Motion
    is a random walk of translation, zoom and rotation, drawn from `gen` (on the stills' device).
    """
    B, P = stills.shape[0], stills.shape[1]
    dev = stills.device
    cover = cover or HEAD_SCALE / STILL_SCALE
    x = stills.permute(0, 3, 1, 2).float().div_(255.0)  # (B, 3, P, P)
    moving = (torch.rand(B, generator=gen, device=dev) >= cfg.p_static).float()[:, None]
    px = 2.0 / size * cover  # one output px in the still's normalised coordinates

    def walk(start: float, step: float, limit: float) -> torch.Tensor:
        steps = torch.randn(B, frames, generator=gen, device=dev) * step
        steps[:, 0] = torch.randn(B, generator=gen, device=dev) * start
        return torch.cumsum(steps * moving, dim=1).clamp(-limit, limit)  # (B, frames)

    tx = walk(cfg.start_px, cfg.step_px, 4 * cfg.start_px) * px
    ty = walk(cfg.start_px, cfg.step_px, 4 * cfg.start_px) * px
    zoom = 1.0 + walk(cfg.scale / 2, cfg.scale_step, cfg.scale)
    angle = walk(cfg.rotate_deg / 2, cfg.rotate_step_deg, cfg.rotate_deg) * (np.pi / 180.0)
    a = cover / zoom
    cos, sin = torch.cos(angle) * a, torch.sin(angle) * a
    theta = torch.stack([torch.stack([cos, -sin, tx], -1), torch.stack([sin, cos, ty], -1)], -2)  # (B, F, 2, 3)
    grid = F.affine_grid(theta.reshape(B * frames, 2, 3), [B * frames, 3, size, size], align_corners=False)
    src = x.repeat_interleave(frames, 0)
    if P > 1.5 * size / cover:  # much larger stills: pre-shrink so bilinear sampling does not alias
        src = F.interpolate(src, size=int(round(size / cover)), mode="area")
    out = F.grid_sample(src, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    return out.clamp(0.0, 1.0).reshape(B, frames, 3, size, size)
