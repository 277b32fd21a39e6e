"""Shared pytest setup: CPU-only by default, GPU tests behind the `gpu` marker; shared fixtures (the astronaut
image, a tiny random model's weights file)."""

import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:  # pragma: no cover - torch is a hard dependency
        has_cuda = False
    if has_cuda:
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="module")
def astronaut():
    """skimage's astronaut photo, (512, 512, 3) uint8 RGB: a real face for tests."""
    from skimage import data as skimage_data

    return skimage_data.astronaut()


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    """A random paper-architecture model at 32 px, saved as weights (for CLI tests where the output's values do not
    matter)."""
    import torch

    from depixcli.model.config import ModelConfig
    from depixcli.model.nets import Depixelator
    from depixcli.model.weights import save_model

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "tiny.safetensors"
    cfg = ModelConfig(crop_size=32, window=1, stride=2, stn_size=16, stn_widths=(4, 4, 4, 4, 4), width=4)
    save_model(path, Depixelator(cfg), {"note": "random, for tests"})
    return path
