"""Weights holding NaN/Inf are refused at load, and a model that outputs NaN/Inf is refused at run time."""

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from depixcli.cli import main
from depixcli.errors import WeightsError
from depixcli.io.synthetic import synthetic_face_frames, write_test_clip
from depixcli.model.nets import Depixelator
from depixcli.model.reconstructor import Reconstructor
from depixcli.model.weights import load_model, save_model
from tests.synthetic import TINY

torch.set_num_threads(1)

REGION = "40,20,80,80"  # px, x,y,w,h of the face region given to `depix run`


def tiny(seed=0) -> Depixelator:
    torch.manual_seed(seed)
    return Depixelator(TINY)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("c") / "face.mp4"
    write_test_clip(path, synthetic_face_frames(6, (160, 120)))
    return path


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_at_load(tmp_path, clip, value):
    model = tiny()
    with torch.no_grad():
        model.state_dict()["recon.head.weight"][0, 0] = value
    path = tmp_path / "bad.safetensors"
    save_model(path, model, {})
    with pytest.raises(WeightsError, match="NaN or Inf.*recon.head.weight"):
        load_model(path)
    out = tmp_path / "out.mp4"
    r = CliRunner().invoke(main, ["run", str(clip), "-o", str(out), "-w", str(path), "--region", REGION, "-q"])
    assert r.exit_code == 1 and r.output.startswith("Error: ") and len(r.output.strip().splitlines()) == 1
    assert "NaN or Inf" in r.output and not out.exists()
    r = CliRunner().invoke(main, ["eval", str(tmp_path), "-w", str(path), "-q"])
    assert r.exit_code == 1 and "NaN or Inf" in r.output  # eval used to score such a model (10.45 dB)


def overflowing_model() -> Depixelator:
    """Finite weights whose output overflows: +-3e38 x activations >= 100 sum to inf - inf = NaN."""
    model = tiny()
    sd = model.state_dict()
    with torch.no_grad():
        sd["recon.head.weight"][:, 0::2] = 3e38
        sd["recon.head.weight"][:, 1::2] = -3e38
        sd["recon.up4.conv.4.bias"].fill_(100.0)
    return model


def test_non_finite_model_output_is_refused_at_run_time(tmp_path, clip):
    model = overflowing_model()
    assert all(torch.isfinite(v).all() for v in model.state_dict().values())
    stacks = np.full((1, TINY.frames, 32, 32, 3), 128, np.uint8)
    with pytest.raises(WeightsError, match="NaN or Inf"):
        Reconstructor(model.eval(), "cpu")(stacks)
    assert Reconstructor(tiny().eval(), "cpu")(stacks).shape == (1, 32, 32, 3)  # a sane model still works
    path = tmp_path / "overflow.safetensors"
    save_model(path, model, {})
    out = tmp_path / "out.mp4"
    r = CliRunner().invoke(main, ["run", str(clip), "-o", str(out), "-w", str(path), "--region", REGION, "-q"])
    assert r.exit_code == 1 and r.output.startswith("Error: ") and len(r.output.strip().splitlines()) == 1, r.output
    assert "NaN or Inf" in r.output and not out.exists()
    assert not list(tmp_path.glob(".*"))  # no temp output left
