"""Networks, degradations and weight files (CPU, tiny widths)."""

import pickle

import numpy as np
import pytest
import torch

from depixcli.errors import WeightsError
from depixcli.model.config import ModelConfig, window_indices
from depixcli.model.grid import to_lr, warp
from depixcli.model.nets import AlignNet, Depixelator, PatchDiscriminator, count_parameters
from depixcli.model.weights import clean_state_dict, load_model, read_header, save_model
from depixcli.train.augment import AugmentConfig, augment
from depixcli.train.degrade import MosaicConfig, bicubic_baseline, block_means, paper_mosaic, random_mosaic
from depixcli.train.jpeg import jpeg_like

torch.set_num_threads(1)
S = 32  # px, crop side in these tests
TINY = ModelConfig(crop_size=S, width=4, stn_widths=(4, 4, 8, 8, 8), stn_size=16, stn_grid=4)


def smooth_image(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """(n, 3, size, size) smooth random colour fields in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 4, 4, generator=g)
    return torch.nn.functional.interpolate(low, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)


def test_window_indices_clamp_at_track_ends():
    assert window_indices(10, 100, 2, 5) == [0, 5, 10, 15, 20]
    assert window_indices(2, 100, 2, 5) == [0, 0, 2, 7, 12]
    assert window_indices(98, 100, 2, 5) == [88, 93, 98, 99, 99]
    assert window_indices(0, 1, 1, 3) == [0, 0, 0]


def test_shapes_and_range():
    torch.manual_seed(0)
    m = Depixelator(TINY)
    with torch.no_grad():
        y = m(torch.rand(2, 5, 3, S, S))
    assert y.shape == (2, 3, S, S)
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    single = Depixelator(ModelConfig(crop_size=S, width=4, window=0, use_stn=False))
    assert single(torch.rand(3, 1, 3, S, S)).shape == (3, 3, S, S)
    with pytest.raises(ValueError):
        m(torch.rand(2, 3, 3, S, S))
    d = PatchDiscriminator(width=4)
    assert d(torch.rand(2, 3, S, S), torch.rand(2, 3, S, S)).shape == (2, 1, S // 8 - 2, S // 8 - 2)


def test_paper_width_parameter_count():
    full = Depixelator(ModelConfig())
    assert count_parameters(full.recon) == 13_398_403  # the paper's 13.4 M
    assert count_parameters(Depixelator(ModelConfig(width=32)).recon) < count_parameters(full.recon) / 3


def test_stn_at_init_is_identity():
    m = Depixelator(TINY).eval()
    stack = torch.rand(2, 5, 3, S, S)
    assert torch.allclose(m.align(stack), stack, atol=1e-6)


def test_warp_shifts_by_known_offset():
    img = torch.rand(1, 3, S, S)
    k = 3  # px
    off = torch.zeros(1, 2, 4, 4)
    off[:, 0] = 2.0 * k / S  # sample k px to the right
    out = warp(img, off)
    assert torch.allclose(out[..., : S - k], img[..., k:], atol=1e-5)


def test_stn_learns_a_known_shift():
    torch.manual_seed(0)
    shift = 2  # px: B is A moved right by 2 px, so B must be sampled 2 px to the right
    base = smooth_image(8, S + 8, seed=1)
    a = base[..., 4 : 4 + S, 4 : 4 + S]
    b = base[..., 4 : 4 + S, 4 - shift : 4 - shift + S]
    net = AlignNet(TINY.stn_widths, TINY.stn_grid, TINY.stn_max_offset)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    true = 2.0 * shift / S
    centre = (slice(None), 0, slice(1, 3), slice(1, 3))  # offsets away from the border

    def run():
        off = net(to_lr(a, TINY.stn_size), to_lr(b, TINY.stn_size))
        inner = (slice(None), slice(None), slice(4, S - 4), slice(4, S - 4))
        return torch.nn.functional.l1_loss(warp(b, off)[inner], a[inner]), off

    loss0, off0 = run()
    err0 = float((off0.detach()[centre] - true).abs().mean())
    for _ in range(40):
        loss, _ = run()
        opt.zero_grad()
        loss.backward()
        opt.step()
    loss1, off1 = run()
    err1 = float((off1.detach()[centre] - true).abs().mean())
    assert float(loss1.detach()) < 0.6 * float(loss0.detach())
    assert err1 < 0.5 * err0


def test_paper_mosaic_is_exact_block_means():
    x = torch.rand(2, 3, S, S)
    for n in (16, 8):
        k = S // n
        ref = x.numpy().reshape(2, 3, n, k, n, k).mean(axis=(3, 5))
        assert np.allclose(block_means(x, n).numpy(), ref, atol=1e-6)
        mos = paper_mosaic(x, n).numpy()
        assert np.allclose(mos, np.repeat(np.repeat(ref, k, axis=2), k, axis=3), atol=1e-6)
    const = torch.full((1, 3, 8, 8), 0.25)
    assert torch.allclose(bicubic_baseline(const, S), torch.full((1, 3, S, S), 0.25), atol=1e-6)
    assert bicubic_baseline(block_means(x, 8), S).shape == (2, 3, S, S)


def test_random_mosaic_whole_crop_is_piecewise_constant():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 2, 3, S, S)
    cfg = MosaicConfig(blocks_min=4, blocks_max=4, p_face_box=0.0, p_compress=0.0, noise_max=0.0,
                       p_center_sample=0.0, p_corner_sample=0.0, p_image_anchored=0.0, p_box_anchored=0.0)
    y = random_mosaic(x, g, cfg)
    assert y.shape == x.shape
    for frame in y.reshape(-1, 3, S, S):
        distinct = torch.unique(frame[0].flatten()).numel()
        assert distinct <= 25  # 4 x 4 cells plus at most one partial row and column
    # block means keep the frame mean (every pixel belongs to exactly one cell)
    assert torch.allclose(y.mean(dim=(-1, -2)), x.mean(dim=(-1, -2)), atol=1e-5)


def test_random_mosaic_face_box_keeps_the_border_sharp():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(4, 3, 3, S, S)
    cfg = MosaicConfig(p_face_box=1.0, face_box_min=0.4, face_box_max=0.4, face_box_jitter=0.0, p_compress=0.0,
                       noise_max=0.0, blocks_min=6, blocks_max=6)
    y = random_mosaic(x, g, cfg)
    # box side 12.8 px centred: whole cells of 2.13 px reach at most 2 cells further out
    border = 6  # px from the edge
    assert torch.equal(y[..., :border, :], x[..., :border, :])
    assert torch.equal(y[..., :, -border:], x[..., :, -border:])
    assert not torch.allclose(y[..., 12:20, 12:20], x[..., 12:20, 12:20])


def test_random_mosaic_bicubic_keeps_the_mosaic_and_knows_the_grid():
    x = smooth_image(6, S, seed=2).reshape(2, 3, 3, S, S)
    # default protocol: asking for the baseline changes neither the mosaic nor the generator's stream
    g0, g1 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    plain = random_mosaic(x, g0)
    mos, bic = random_mosaic(x, g1, return_bicubic=True)
    assert torch.equal(mos, plain)
    assert torch.equal(torch.rand(4, generator=g0), torch.rand(4, generator=g1))
    assert bic.shape == x.shape and float(bic.min()) >= 0.0 and float(bic.max()) <= 1.0
    # whole crop, grid on the crop's corner, block means, 4 px cells: the paper's bicubic baseline
    n = 8  # blocks across the crop
    cfg = MosaicConfig(blocks_min=n, blocks_max=n, p_face_box=0.0, p_image_anchored=0.0, phase_max=0.0,
                       p_center_sample=0.0, p_compress=0.0, noise_max=0.0)
    mos, bic = random_mosaic(x, torch.Generator().manual_seed(0), cfg, return_bicubic=True)
    assert torch.allclose(mos, paper_mosaic(x, n), atol=1e-6)
    assert torch.allclose(bic, bicubic_baseline(block_means(x, n), S), atol=1e-6)
    # face box: the baseline keeps the sharp input outside the mosaiced cells and is closer to the truth
    cfg = MosaicConfig(p_face_box=1.0, face_box_min=0.4, face_box_max=0.4, face_box_jitter=0.0, p_compress=0.0,
                       noise_max=0.0, blocks_min=6, blocks_max=6)
    mos, bic = random_mosaic(x, torch.Generator().manual_seed(1), cfg, return_bicubic=True)
    border = 6  # px from the edge, as in the face-box test above
    assert torch.equal(bic[..., :border, :], x[..., :border, :])
    assert float((bic - x).abs().mean()) < 0.7 * float((mos - x).abs().mean())


def test_jpeg_like_high_quality_is_near_identity_and_low_quality_is_not():
    x = smooth_image(2, S)
    hi = jpeg_like(x, torch.tensor([100, 100]))
    lo = jpeg_like(x + 0.1 * torch.rand_like(x), torch.tensor([5, 5]))
    assert float((hi - x).abs().max()) < 3 / 255
    assert float((lo - x).abs().mean()) > 0.02


def test_augment_is_shared_by_all_frames_of_a_stack():
    g = torch.Generator().manual_seed(0)
    frame = smooth_image(1, S)
    stack = frame[:, None].repeat(2, 4, 1, 1, 1)
    y = augment(stack, g, AugmentConfig(p_flip=0.5))
    assert torch.allclose(y[:, 0:1].expand_as(y), y, atol=1e-6)


def test_save_load_gives_identical_outputs(tmp_path):
    torch.manual_seed(0)
    m = Depixelator(TINY)
    m.train()
    m(torch.rand(4, 5, 3, S, S))  # move the BN statistics away from their init
    m.eval()
    x = torch.rand(2, 5, 3, S, S)
    path = tmp_path / "m.safetensors"
    save_model(path, m, {"note": "test"})
    loaded = load_model(path)
    assert loaded.config == TINY
    save_model(tmp_path / "h.safetensors", m, {}, half=True)
    half = load_model(tmp_path / "h.safetensors")
    with torch.no_grad():
        assert torch.equal(loaded(x), m(x))
        assert float((half(x) - m(x)).abs().max()) < 2e-2
    assert read_header(path)["meta"] == {"note": "test"}
    assert (tmp_path / "h.safetensors").stat().st_size < 0.6 * path.stat().st_size


def test_clean_state_dict_strips_wrapper_prefixes():
    sd = {"module._orig_mod.recon.head.weight": 1, "_orig_mod.module.stn.x": 2, "recon.y": 3}
    assert clean_state_dict(sd) == {"recon.head.weight": 1, "stn.x": 2, "recon.y": 3}


def test_loader_rejects_bad_files_without_unpickling(tmp_path, monkeypatch):
    def no_unpickle(*a, **k):
        raise AssertionError("the weights loader must never unpickle")

    monkeypatch.setattr(pickle, "load", no_unpickle)
    monkeypatch.setattr(pickle, "loads", no_unpickle)
    monkeypatch.setattr(torch, "load", no_unpickle)
    good = tmp_path / "good.safetensors"
    save_model(good, Depixelator(TINY), {})
    data = good.read_bytes()
    cases = {
        "truncated.safetensors": data[: len(data) // 2],
        "garbage.safetensors": b"\x00\x01not a model" * 10,
        "pickle.safetensors": pickle.dumps({"recon.head.weight": [1.0]}),
        "empty.safetensors": b"",
    }
    for name, blob in cases.items():
        p = tmp_path / name
        p.write_bytes(blob)
        with pytest.raises(WeightsError):
            load_model(p)
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(WeightsError, match="not a depix model"):
        load_model(tmp_path / "foreign.safetensors")
    with pytest.raises(WeightsError, match="not found"):
        load_model(tmp_path / "missing.safetensors")
