"""Full-reference image quality: PSNR and SSIM (Wang, Bovik, Sheikh, Simoncelli 2004).

Inputs are images `(H, W, 3)` or batches `(N, H, W, 3)`, RGB, either uint8 in [0, 255] or float in
[0, 1] (both arguments are brought to float64 in [0, 1] first, so the data range is always 1).
Both metrics are computed on one channel by default:

- `channel="y"`: luma Y' = 0.299 R + 0.587 G + 0.114 B (ITU-R BT.601 weights, full range [0, 1], no
  16-235 studio offset), the usual choice in super-resolution papers;
- `channel="rgb"`: PSNR over all three channels' pixels; SSIM as the mean of the three per-channel maps.

SSIM uses the paper's settings: an 11x11 Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03, population
(not sample) statistics, and the mean of the SSIM map over the "valid" region only (windows that lie
wholly inside the image, as in the authors' MATLAB `filter2(..., 'valid')`). This equals
`skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
data_range=1)`, which crops the same border after filtering.

Batched inputs return one value per image, shape `(N,)`; a single image returns a float.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601 R, G, B weights of Y'
SSIM_WINDOW = 11  # px, side of the Gaussian window
SSIM_SIGMA = 1.5  # px, standard deviation of the Gaussian window
SSIM_K1 = 0.01  # stabiliser of the luminance term, C1 = (K1 * L)^2 with data range L = 1
SSIM_K2 = 0.03  # stabiliser of the contrast/structure term, C2 = (K2 * L)^2
CHANNELS = ("y", "rgb")

CHANNEL_NAMES = {"y": "luma Y' (BT.601, full range)", "rgb": "RGB (mean over channels)"}


def to_unit_float(img) -> np.ndarray:
    """uint8 [0, 255] or float [0, 1] array -> float64 in [0, 1] (floats are not clipped or rescaled)."""
    a = np.asarray(img)
    if a.dtype == np.uint8:
        return a.astype(np.float64) / 255.0
    if np.issubdtype(a.dtype, np.floating):
        return a.astype(np.float64, copy=False)
    raise TypeError(f"expected a uint8 or float image, got dtype {a.dtype}")


def luma(rgb: np.ndarray) -> np.ndarray:
    """`(..., H, W, 3)` float RGB in [0, 1] -> `(..., H, W)` BT.601 luma Y' in [0, 1]."""
    return rgb @ np.asarray(LUMA_WEIGHTS, dtype=np.float64)


def _prepare(a, b, channel: str) -> tuple[np.ndarray, np.ndarray, bool]:
    """-> (a, b) as float64 `(N, C, H, W)` and whether the inputs were a single image."""
    if channel not in CHANNELS:
        raise ValueError(f"channel must be one of {CHANNELS}, got {channel!r}")
    a, b = to_unit_float(a), to_unit_float(b)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    if a.ndim not in (3, 4) or a.shape[-1] != 3:
        raise ValueError(f"expected (H, W, 3) or (N, H, W, 3) RGB images, got shape {a.shape}")
    single = a.ndim == 3
    if single:
        a, b = a[None], b[None]
    if channel == "y":
        return luma(a)[:, None], luma(b)[:, None], single
    return a.transpose(0, 3, 1, 2), b.transpose(0, 3, 1, 2), single


def _result(values: np.ndarray, single: bool):
    return float(values[0]) if single else values


def psnr(a, b, channel: str = "y"):
    """Peak signal-to-noise ratio in dB, data range 1: `10 log10(1 / MSE)`; `inf` for identical images."""
    x, y, single = _prepare(a, b, channel)
    mse = ((x - y) ** 2).mean(axis=(1, 2, 3))
    with np.errstate(divide="ignore"):
        values = 10.0 * np.log10(1.0 / mse)
    return _result(values, single)


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """Normalised 1-D Gaussian `(size,)`; the 2-D window is its outer product with itself."""
    r = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(r**2) / (2 * sigma**2))
    return g / g.sum()


def _filter_valid(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation of `(..., H, W)` with the window `g` -> `(..., H-k+1, W-k+1)`."""
    x = sliding_window_view(x, g.size, axis=-1) @ g
    x = np.swapaxes(x, -1, -2)
    x = sliding_window_view(x, g.size, axis=-1) @ g
    return np.swapaxes(x, -1, -2)


def ssim_map(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """SSIM map of float arrays `(..., H, W)` in [0, 1] over the valid region `(..., H-10, W-10)`."""
    g = gaussian_window()
    if min(x.shape[-2:]) < g.size:
        raise ValueError(f"images must be at least {g.size}x{g.size} px for SSIM, got {x.shape[-2:]}")
    c1, c2 = SSIM_K1**2, SSIM_K2**2
    mx, my = _filter_valid(x, g), _filter_valid(y, g)
    vx = _filter_valid(x * x, g) - mx * mx
    vy = _filter_valid(y * y, g) - my * my
    cxy = _filter_valid(x * y, g) - mx * my
    return ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))


def ssim(a, b, channel: str = "y"):
    """Mean structural similarity (Wang et al. 2004), in [-1, 1]; 1 for identical images."""
    x, y, single = _prepare(a, b, channel)
    values = ssim_map(x, y).mean(axis=(1, 2, 3))
    return _result(values, single)
