"""PSNR / SSIM against hand-computed values and a direct (loop) implementation of Wang et al. 2004."""

import math

import numpy as np
import pytest

from depixcli.evaluate.metrics import gaussian_window, luma, psnr, ssim


def test_psnr_constant_offset_luma_and_rgb():
    a = np.full((8, 8, 3), 100, np.uint8)
    b = a + 10  # every channel +10 -> Y' also +10 (weights sum to 1)
    expected = 20 * math.log10(255 / 10)  # 28.1308 dB
    assert psnr(a, b) == pytest.approx(expected, abs=1e-9)
    assert psnr(a, b, channel="rgb") == pytest.approx(expected, abs=1e-9)


def test_psnr_red_only_offset_differs_between_channels():
    a = np.zeros((4, 4, 3), np.uint8)
    b = a.copy()
    b[..., 0] = 51  # 0.2 in unit range, red only
    # Y' differs by 0.299 * 0.2 everywhere; RGB MSE is 0.2^2 / 3
    assert psnr(a, b, "y") == pytest.approx(-20 * math.log10(0.299 * 0.2), abs=1e-9)
    assert psnr(a, b, "rgb") == pytest.approx(-10 * math.log10(0.04 / 3), abs=1e-9)


def test_psnr_identical_is_inf_and_batches_give_one_value_each():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (3, 12, 12, 3), dtype=np.uint8)
    b = a.copy()
    b[1] = np.clip(b[1].astype(int) + 5, 0, 255)
    values = psnr(a, b)
    assert values.shape == (3,)
    assert math.isinf(values[0]) and math.isinf(values[2])
    assert values[1] == pytest.approx(psnr(a[1], b[1]))
    assert 30 < values[1] < 50


def test_uint8_and_float_inputs_agree():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    assert psnr(a, b) == pytest.approx(psnr(a / 255.0, b / 255.0))
    assert ssim(a, b, "rgb") == pytest.approx(ssim(a / 255.0, b / 255.0, "rgb"))


def test_luma_weights_bt601():
    px = np.array([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 1.0]]])
    np.testing.assert_allclose(luma(px)[0], [0.299, 0.587, 0.114, 1.0])


def test_gaussian_window_is_normalised_and_symmetric():
    g = gaussian_window()
    assert g.shape == (11,)
    assert g.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(g, g[::-1])
    assert g[5] / g[4] == pytest.approx(math.exp(1 / (2 * 1.5**2)))


def test_ssim_identical_is_one():
    rng = np.random.default_rng(2)
    a = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    assert ssim(a, a, "rgb") == pytest.approx(1.0, abs=1e-12)


def test_ssim_of_two_flat_images_is_the_luminance_term():
    a = np.full((11, 11, 3), 0.2)
    b = np.full((11, 11, 3), 0.6)
    c1 = 0.01**2
    # zero variances: the contrast-structure term is C2 / C2 = 1
    expected = (2 * 0.2 * 0.6 + c1) / (0.2**2 + 0.6**2 + c1)
    assert ssim(a, b) == pytest.approx(expected, abs=1e-12)


def _ssim_direct(x: np.ndarray, y: np.ndarray) -> float:
    """Wang et al. eq. 13 with Gaussian-weighted statistics, one window at a time (2-D grey images)."""
    g = gaussian_window()
    w = np.outer(g, g)
    k = w.shape[0]
    c1, c2 = 0.01**2, 0.03**2
    values = []
    for i in range(x.shape[0] - k + 1):
        for j in range(x.shape[1] - k + 1):
            px, py = x[i : i + k, j : j + k], y[i : i + k, j : j + k]
            mx, my = (w * px).sum(), (w * py).sum()
            vx = (w * (px - mx) ** 2).sum()
            vy = (w * (py - my) ** 2).sum()
            cxy = (w * (px - mx) * (py - my)).sum()
            values.append(((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    return float(np.mean(values))


def test_ssim_matches_direct_formula_on_luma_and_rgb():
    rng = np.random.default_rng(3)
    a = rng.random((15, 14, 3))
    b = np.clip(a + 0.15 * rng.standard_normal(a.shape), 0, 1)
    assert ssim(a, b, "y") == pytest.approx(_ssim_direct(luma(a), luma(b)), abs=1e-10)
    per_channel = [_ssim_direct(a[..., c], b[..., c]) for c in range(3)]
    assert ssim(a, b, "rgb") == pytest.approx(np.mean(per_channel), abs=1e-10)
    assert 0.0 < ssim(a, b) < 0.99


def test_ssim_falls_with_noise_and_batches():
    rng = np.random.default_rng(4)
    a = rng.random((1, 16, 16, 3)).repeat(3, axis=0)
    noise = rng.standard_normal(a.shape)
    b = np.clip(a + np.array([0.0, 0.05, 0.3])[:, None, None, None] * noise, 0, 1)
    values = ssim(a, b)
    assert values.shape == (3,)
    assert values[0] == pytest.approx(1.0) and values[0] > values[1] > values[2]


def test_bad_inputs_raise():
    a = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(ValueError, match="shape"):
        psnr(a, np.zeros((16, 15, 3), np.uint8))
    with pytest.raises(ValueError, match="channel"):
        ssim(a, a, channel="lab")
    with pytest.raises(ValueError, match="at least"):
        ssim(a[:8, :8], a[:8, :8])
    with pytest.raises(TypeError):
        psnr(a.astype(np.int32), a.astype(np.int32))
