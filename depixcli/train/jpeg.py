"""JPEG-like compression on torch batches (`jpeg_like`): the 8x8 DCT quantisation a mosaic passes through on its way
to a video file, applied by `degrade.random_mosaic` to part of the training mosaics.

Images are float in [0, 1], RGB, channels first: `(N, 3, S, S)`, S a multiple of `JPEG_BLOCK`.
"""

from __future__ import annotations

import math

import torch

_JPEG_LUMA = [
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
]  # ITU-T T.81 Annex K luminance quantisation table
_JPEG_CHROMA = [
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
    47, 66, 99, 99, 99, 99, 99, 99] + [99] * 32  # Annex K chrominance table
JPEG_BLOCK = 8  # px, DCT block side


def _dct_matrix(n: int, device) -> torch.Tensor:
    k = torch.arange(n, device=device, dtype=torch.float32)
    m = torch.cos(math.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * n)) * math.sqrt(2.0 / n)
    m[0] /= math.sqrt(2.0)
    return m


def jpeg_like(x: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """JPEG-like degradation: YCbCr, 8x8 DCT, quantisation by the Annex K tables at `quality` (N,) in 1..100.

    x: (N, 3, S, S) float [0, 1], S a multiple of 8 -> same shape (no chroma subsampling, no entropy coding).
    """
    N, C, S, _ = x.shape
    dev = x.device
    r, g, b = x[:, 0] * 255, x[:, 1] * 255, x[:, 2] * 255
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = -0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 0.5 * r - 0.418688 * g - 0.081312 * b
    ycc = torch.stack([y - 128, cb, cr], 1)
    q = quality.float().clamp(1, 100)
    scale = torch.where(q < 50, 5000 / q, 200 - 2 * q) / 100  # libjpeg quality scaling
    tables = torch.stack([torch.tensor(_JPEG_LUMA, device=dev), torch.tensor(_JPEG_CHROMA, device=dev)]).float()
    tables = tables[[0, 1, 1]].reshape(1, 3, 1, 1, JPEG_BLOCK, JPEG_BLOCK)
    qt = (tables * scale.reshape(N, 1, 1, 1, 1, 1)).clamp_min(1.0)
    nb = S // JPEG_BLOCK
    blk = ycc.reshape(N, 3, nb, JPEG_BLOCK, nb, JPEG_BLOCK).permute(0, 1, 2, 4, 3, 5)  # (N,3,nb,nb,8,8)
    D = _dct_matrix(JPEG_BLOCK, dev)
    coef = D @ blk @ D.T
    coef = torch.round(coef / qt) * qt
    blk = D.T @ coef @ D
    y, cb, cr = blk.permute(0, 1, 2, 4, 3, 5).reshape(N, 3, S, S).unbind(1)
    y = y + 128
    r = y + 1.402 * cr
    g = y - 0.344136 * cb - 0.714136 * cr
    b = y + 1.772 * cb
    return (torch.stack([r, g, b], 1) / 255).clamp(0.0, 1.0)
