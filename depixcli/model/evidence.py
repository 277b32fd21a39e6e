"""The evidence step: pull a reconstruction back to the block values that were observed (`project_to_mosaic`),
and the Gaussian blur it smooths its correction with. Images `(N, 3, S, S)` float in [0, 1], RGB."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


PROJECT_ITERATIONS = 3  # passes of `project_to_mosaic` (each removes most of what is left of the block error)
PROJECT_SIGMA = 0.5  # cells: Gaussian smoothing of the per-block correction (no block edges come back)


def project_to_mosaic(recon: torch.Tensor, observed: torch.Tensor, origin: torch.Tensor, cell: torch.Tensor,
                      rect: torch.Tensor, iterations: int = PROJECT_ITERATIONS,
                      sigma_cells: float = PROJECT_SIGMA) -> torch.Tensor:
    """Pull a reconstruction back to the evidence: pixelated again on the mosaic's grid, it should give the
    block values that were observed.

    recon, observed: (N, 3, S, S) float [0, 1] (observed: the mosaiced input); origin (N, 2) px: a grid line
    (x, y); cell (N, 2) px: cell width and height; rect (N, 4) px (x0, y0, x1, y1): the mosaic area (whole cells).
    Each pass measures, per cell inside rect, observed mean - reconstruction mean, spreads that correction
    over the cell, smooths it with a Gaussian of `sigma_cells` cells (so no block edges return) and adds it.
    Pixels outside rect are not changed. Returns (N, 3, S, S) float [0, 1].
    """
    N, C, S, _ = recon.shape
    dev = recon.device
    coords = torch.arange(S, device=dev, dtype=torch.float32) + 0.5
    ix = torch.floor((coords[None, :] - origin[:, 0:1]) / cell[:, 0:1])  # (N, S)
    iy = torch.floor((coords[None, :] - origin[:, 1:2]) / cell[:, 1:2])
    inside = (((coords[None, :] >= rect[:, 0:1]) & (coords[None, :] < rect[:, 2:3]))[:, None, :]
              & ((coords[None, :] >= rect[:, 1:2]) & (coords[None, :] < rect[:, 3:4]))[:, :, None])[:, None]
    ncols = int((ix.max(1).values - ix.min(1).values).max().item()) + 1
    nrows = int((iy.max(1).values - iy.min(1).values).max().item()) + 1
    idx = ((iy - iy.min(1, keepdim=True).values)[:, :, None] * ncols
           + (ix - ix.min(1, keepdim=True).values)[:, None, :]).long().reshape(N, 1, S * S)
    w = inside.reshape(N, 1, S * S).float()
    counts = torch.zeros(N, 1, nrows * ncols, device=dev).scatter_add_(2, idx, w).clamp_min(1.0)

    def means(x: torch.Tensor) -> torch.Tensor:  # per-pixel mean of its cell (inside rect)
        flat = x.reshape(N, C, S * S) * w
        sums = torch.zeros(N, C, nrows * ncols, device=dev).scatter_add_(2, idx.expand(N, C, -1), flat)
        return (sums / counts).gather(2, idx.expand(N, C, -1)).reshape(N, C, S, S)

    target = means(observed.float())
    out = recon.float()
    for _ in range(iterations):
        delta = torch.where(inside, target - means(out), torch.zeros_like(out))
        smooth = torch.stack([gaussian_blur(delta[n : n + 1], float(sigma_cells * cell[n].mean()))[0]
                              for n in range(N)])
        out = torch.where(inside, out + smooth, out).clamp(0.0, 1.0)
    return out


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (1, C, H, W) with replicated borders."""
    if sigma <= 0:
        return x
    r = max(1, int(math.ceil(3 * sigma)))
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=torch.float32, device=x.device) / sigma) ** 2)
    k = k / k.sum()
    C = x.shape[1]
    y = F.pad(x, (r, r, r, r), mode="replicate")
    y = F.conv2d(y, k.view(1, 1, 1, -1).expand(C, 1, 1, -1), groups=C)
    return F.conv2d(y, k.view(1, 1, -1, 1).expand(C, 1, -1, 1), groups=C)
