"""The network at inference: `Reconstructor` (device policy, flip ensemble, uint8 stacks in and out), its loader.

Stacks at this module's boundary are `(B, F, S, S, 3)` uint8 RGB mosaiced head crops, F = 2*window + 1 with the
frame to reconstruct at F // 2; `(B, F, 3, S, S)` float in [0, 1] inside the model; outputs `(B, S, S, 3)` uint8.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from depixcli.errors import OptionError, WeightsError
from depixcli.model.config import window_indices
from depixcli.model.grid import flip_maps
from depixcli.model.weights import default_weights_path, load_model

FLIP_ENSEMBLE = True  # average each reconstruction with that of the mirrored stack (Reconstructor)


def resolve_device(name: str) -> str:
    """`auto` -> `cuda` when available, else `cpu`; asking for `cuda` without a GPU raises OptionError."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise OptionError("device", "cuda: no CUDA device is available (use cpu or auto)")
    return name


@dataclass(frozen=True)
class ModelGeometry:
    crop_size: int  # px, S
    window: int  # w: frames on each side of the centre
    stride: int  # d: frames between neighbours in the stack

    @property
    def frames(self) -> int:
        return 2 * self.window + 1

    @property
    def reach(self) -> int:
        """Frames a stack reaches before and after its centre (w * d)."""
        return self.window * self.stride


class Reconstructor:
    """The network plus its device policy: bf16 autocast + channels_last on CUDA, fp32 on CPU.

    With `flip` (default `FLIP_ENSEMBLE`) every stack is also reconstructed mirrored and the two results are
    averaged (a face is nearly symmetric, the model's errors are not): +0.1 to +0.17 dB on val for twice
    the model time, which is small next to locating and encoding on CPU.
    """

    def __init__(self, model, device: str = "cpu", flip: bool | None = None):
        self.flip = FLIP_ENSEMBLE if flip is None else flip
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        if self.device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
            torch.backends.cudnn.benchmark = True  # fixed crop size: pick the fastest kernels once
        cfg = model.config
        self.geometry = ModelGeometry(int(cfg.crop_size), int(cfg.window), int(cfg.stride))

    @property
    def uses_grid(self) -> bool:
        """True when the network takes grid maps (`model.grid.grid_maps`) beside the frames."""
        return bool(getattr(self.model.config, "grid_input", False))

    def __call__(self, stacks: np.ndarray, maps=None) -> np.ndarray:
        """`(B, F, S, S, 3)` uint8 mosaiced crop stacks -> `(B, S, S, 3)` uint8 reconstructed centres.

        maps: the stacks' grid maps `(B, F, GRID_CHANNELS, S, S)` float (numpy or torch; `model.grid.grid_maps`),
        or None where the grid is unknown; ignored by a network without grid input.
        """
        cuda = self.device.type == "cuda"
        x = torch.from_numpy(np.ascontiguousarray(stacks)).to(self.device)  # uint8 over the bus: 4x less
        x = x.permute(0, 1, 4, 2, 3).float().div_(255.0)  # (B, F, 3, S, S) float [0, 1]
        m = None
        if maps is not None and self.uses_grid:
            m = torch.as_tensor(maps, dtype=torch.float32).to(self.device)
        with torch.inference_mode():
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
                if self.flip:
                    B = x.shape[0]
                    both = (torch.cat([x, x.flip(-1)]),) + ((torch.cat([m, flip_maps(m)]),) if m is not None else ())
                    y = self.model(*both).float()
                    y = (y[:B] + y[B:].flip(-1)) * 0.5
                else:
                    y = self.model(*((x,) if m is None else (x, m)))
            if not bool(torch.isfinite(y).all()):  # clamp would turn NaN into a flat patch, silently
                raise WeightsError("the model produced NaN or Inf values on this input; its weights are unusable")
            y = (y.float().clamp_(0.0, 1.0) * 255.0).round_().to(torch.uint8)
            return y.permute(0, 2, 3, 1).contiguous().cpu().numpy()


def load_reconstructor(weights: str | Path | None = None, device: str = "auto") -> Reconstructor:
    """Load a weights file (default: `default_weights_path()`) onto `device` ('auto', 'cpu', 'cuda')."""
    path = Path(weights) if weights is not None else default_weights_path()
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    dev = resolve_device(device)
    return Reconstructor(load_model(path, device=dev), dev)


def gather_stack(crops_by_pos, centre: int, count: int, window: int, stride: int) -> np.ndarray:
    """`(F, S, S, 3)` stack for track position `centre` of a `count`-long track; clamped at the ends.

    `crops_by_pos(pos)` returns the crop at a track position.
    """
    return np.stack([crops_by_pos(p) for p in window_indices(centre, count, window, stride)])
