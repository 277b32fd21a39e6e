"""The model that ships: loaded with no `-w` and no DEPIX_WEIGHTS, its header matches its model card, and it beats
bicubic interpolation of the true block values on a face it never saw (the astronaut), by a margin that an
untrained network of the same architecture misses."""

import re

import numpy as np
import pytest
import torch
from safetensors import safe_open

from depixcli.evaluate.metrics import psnr
from depixcli.model.nets import Depixelator, count_parameters
from depixcli.model.reconstructor import Reconstructor
from depixcli.model.weights import FORMAT_VERSION, default_weights_path, load_model, read_header, shipped_weights_path
from depixcli.train.degrade import bicubic_baseline, block_means, paper_maps, paper_mosaic
from tests.synthetic import head_crop

PAPER_BLOCKS = 16  # blocks across the crop: the paper's 16 x 16 protocol
MIN_GAIN_DB = 1.0  # dB over bicubic the shipped model must reach (measured: see test below; untrained: < 0)


@pytest.fixture(scope="module")
def default_path(monkeypatch_module):
    monkeypatch_module.delenv("DEPIX_WEIGHTS", raising=False)
    path = default_weights_path()  # what `depix run` loads with no -w
    assert path == shipped_weights_path()
    return path


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def model_card(path) -> str:
    return (path.parent / "README.md").read_text()


def test_default_header_matches_its_model_card(default_path):
    header = read_header(default_path)
    cfg = header["config"]
    assert header["format_version"] == FORMAT_VERSION
    card = model_card(default_path)
    assert f'`arch="{cfg.arch}"`' in card
    for flag in ("grid_input", "align"):
        assert (f"`{flag}=True`" in card) == getattr(cfg, flag)
    model = load_model(default_path)
    stated = re.search(r"([\d,]+) parameters", card)
    assert stated and count_parameters(model) == int(stated.group(1).replace(",", ""))
    with safe_open(str(default_path), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    floats = [v for v in tensors.values() if v.is_floating_point()]
    assert floats and all(v.dtype == torch.float16 for v in floats)  # shipped in half precision
    assert all(bool(torch.isfinite(v).all()) for v in floats)


def gain_over_bicubic(model: Depixelator, astronaut) -> float:
    """PSNR (luma) gain in dB of `model` over bicubic of the true block means, paper 16 x 16 mosaic of a stack of
    the astronaut's head crop moving by half a pixel a frame."""
    cfg = model.config
    S, Fr = cfg.crop_size, cfg.frames
    clean = np.stack([head_crop(astronaut, dx=0.5 * (j - Fr // 2), size=S) for j in range(Fr)])
    x = torch.from_numpy(clean).permute(0, 3, 1, 2).float() / 255.0  # (F, 3, S, S) float [0, 1] RGB
    mosaic = (paper_mosaic(x, PAPER_BLOCKS) * 255.0).round().byte().permute(0, 2, 3, 1).numpy()
    maps = paper_maps((1, Fr), PAPER_BLOCKS, S)
    out = Reconstructor(model, "cpu", flip=True)(mosaic[None], maps)[0]
    centre = x[Fr // 2]
    bicubic = (bicubic_baseline(block_means(centre, PAPER_BLOCKS), S) * 255.0).round().byte().permute(1, 2, 0)
    truth = clean[Fr // 2]
    return psnr(out, truth) - psnr(bicubic.numpy(), truth)


def test_default_model_beats_bicubic_and_an_untrained_one_does_not(default_path, astronaut):
    shipped = load_model(default_path)
    gain = gain_over_bicubic(shipped, astronaut)
    torch.manual_seed(0)
    untrained = gain_over_bicubic(Depixelator(shipped.config).eval(), astronaut)
    print(f"gain over bicubic: shipped {gain:+.2f} dB, untrained {untrained:+.2f} dB")
    assert gain > MIN_GAIN_DB > untrained
