"""Augmentation of clean training stacks on torch batches: flip, colour jitter and small zoom/shift, one draw per
stack and the same for all its frames. Stacks are `(B, F, 3, S, S)` float in [0, 1], RGB."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from depixcli.train.degrade import draw_bernoulli, draw_uniform


@dataclass(frozen=True)
class AugmentConfig:
    p_flip: float = 0.5  # horizontal flip
    brightness: float = 0.1  # +- additive
    contrast: float = 0.15  # +- relative
    saturation: float = 0.15  # +- relative
    scale: float = 0.06  # +- relative zoom
    shift: float = 0.04  # +- translation / crop side


def augment(stack: torch.Tensor, gen: torch.Generator, cfg: AugmentConfig = AugmentConfig(),
            extra: torch.Tensor | None = None):
    """Flip, colour jitter and small zoom/shift of clean stacks (B, F, 3, S, S) float [0,1]; one draw per stack,
    the same for all its frames (and for any extra frames concatenated along F).

    extra (n <= B, F', 3, S, S): more frames of the first n stacks (e.g. the stacks one frame later), given the
    same draw as their stack (the contrast pivots on the stack's mean); returns (stack, extra) then. The draws
    from `gen` do not depend on `extra`."""
    B, Fr, C, S, _ = stack.shape
    dev = stack.device
    flip = draw_bernoulli(gen, B, cfg.p_flip, dev)[:, None, None, None, None]
    bright = draw_uniform(gen, B, -cfg.brightness, cfg.brightness, dev)[:, None, None, None, None]
    contrast = draw_uniform(gen, B, 1 - cfg.contrast, 1 + cfg.contrast, dev)[:, None, None, None, None]
    sat = draw_uniform(gen, B, 1 - cfg.saturation, 1 + cfg.saturation, dev)[:, None, None, None, None]
    zoom = draw_uniform(gen, B, 1 - cfg.scale, 1 + cfg.scale, dev)
    shift = (torch.rand(B, 2, generator=gen, device=dev) * 2 - 1) * cfg.shift * 2  # normalised coords
    theta = torch.zeros(B, 2, 3, device=dev)
    theta[:, 0, 0] = 1 / zoom
    theta[:, 1, 1] = 1 / zoom
    theta[:, :, 2] = shift

    def apply(x: torch.Tensor, n: int, mean: torch.Tensor | None = None):
        Bx, Fx = x.shape[:2]
        x = x.float()
        x = torch.where(flip[:n], x.flip(-1), x)
        grey = (0.299 * x[:, :, 0:1] + 0.587 * x[:, :, 1:2] + 0.114 * x[:, :, 2:3])
        x = grey + (x - grey) * sat[:n]
        mean = grey.mean(dim=(1, 2, 3, 4), keepdim=True) if mean is None else mean[:n]
        x = (x - mean) * contrast[:n] + mean + bright[:n]
        grid = F.affine_grid(theta[:n], (Bx, C, S, S), align_corners=False).repeat_interleave(Fx, 0)
        x = F.grid_sample(x.reshape(Bx * Fx, C, S, S), grid, mode="bilinear", padding_mode="reflection",
                          align_corners=False)
        return x.clamp(0.0, 1.0).reshape(Bx, Fx, C, S, S), mean

    out, mean = apply(stack, B)
    return out if extra is None else (out, apply(extra, len(extra), mean)[0])
