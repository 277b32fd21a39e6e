"""Shared pytest setup: CPU-only by default, GPU tests behind the `gpu` marker (skipped without CUDA), `slow` for
tests longer than a few seconds (run by default and in CI; `-m "not slow"` leaves them out); shared fixtures (the
astronaut image, the tiny random model and its weights file, a pixelated synthetic face clip). Helpers that make
test media live in tests/synthetic.py."""

import os

import pytest

from tests.synthetic import TINY, mosaic_clip

os.environ.setdefault("OMP_NUM_THREADS", "2")


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
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


@pytest.fixture(scope="session")
def tiny_config():
    """The tiny paper-architecture config (32 px crops, window 1, stride 2) of `tiny_weights`."""
    return TINY


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory, tiny_config):
    """A random model of `tiny_config`, saved as weights (for CLI tests where the output's values do not matter)."""
    import torch

    from depixcli.model.nets import Depixelator
    from depixcli.model.weights import save_model

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "tiny.safetensors"
    save_model(path, Depixelator(tiny_config), {"note": "random, for tests"})
    return path


@pytest.fixture(scope="module")
def pixelated_clip(tmp_path_factory):
    """(path, grid): a 16-frame synthetic face clip with audio, an 8 x 8 mosaic over the face on every frame."""
    path = tmp_path_factory.mktemp("c") / "pix.mp4"
    return path, mosaic_clip(path, 16, audio=True)
