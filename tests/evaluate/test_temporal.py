"""Flicker and tOF (temporal.py): the measures on synthetic runs, consecutive reconstructions, `depix eval` columns."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from depixcli.cli import main
from depixcli.evaluate.temporal import face_mask, flicker, reconstruct_runs, run_starts, temporal_scores, tof
from tests.synthetic import head_crop

CROP = 128  # px
FRAMES = 24

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def moving(astronaut):
    """(8, S, S, 3) uint8: the face sliding 1 px per frame under a fixed camera (the crop box stays put)."""
    from depixcli.geometry.crop import crop, head_box

    box = head_box((178.0, 62.6, 268.4, 176.4))
    shifted = [np.roll(astronaut, t, axis=1) for t in range(8)]
    return np.stack([crop(img, box, CROP) for img in shifted])


def test_face_mask_is_the_face_box():
    m = face_mask(CROP)
    side = CROP / 1.8
    assert abs(m.sum() - side**2) < 2 * side + 1
    ys, xs = np.nonzero(m)
    assert abs((xs.min() + xs.max() + 1) / 2 - CROP / 2) <= 0.5  # centred across
    assert (ys.min() + ys.max() + 1) / 2 > CROP / 2  # dropped below the centre (chin side)


def test_flicker_and_tof_are_zero_for_the_truth_and_for_a_steady_offset(moving):
    assert flicker(moving, moving) == 0.0 and tof(moving, moving) == 0.0
    brighter = np.clip(moving.astype(int) + 10, 0, 255).astype(np.uint8)  # same changes, other values
    assert flicker(brighter, moving) < 0.5
    assert tof(brighter, moving) < 0.1


def test_a_frozen_output_misses_the_motion_and_a_noisy_one_flickers(moving):
    frozen = np.repeat(moving[:1], len(moving), axis=0)
    s = temporal_scores(frozen, moving)
    # the truth moves 1 px per frame: a frozen output's flow differs from it by about 1 px
    assert 0.6 < s["tof"] < 1.4
    assert s["flicker"] > 1.0
    rng = np.random.default_rng(0)
    noisy = np.clip(moving + rng.normal(0, 8, moving.shape), 0, 255).astype(np.uint8)
    assert flicker(noisy, moving) > 3 * flicker(np.clip(moving.astype(int) + 3, 0, 255).astype(np.uint8), moving)
    # luma noise sigma 8 * |(0.299, 0.587, 0.114)| = 5.35 per frame; of a difference x sqrt(2); mean |.| x sqrt(2 / pi)
    expected = 8 * np.linalg.norm([0.299, 0.587, 0.114]) * np.sqrt(2) * np.sqrt(2 / np.pi)
    assert flicker(noisy, moving) == pytest.approx(expected, abs=0.3)
    with pytest.raises(ValueError):
        flicker(moving[:1], moving[:1])


def test_run_starts():
    assert run_starts([75, 5, 1, 30], 8) == [(0, 24, 8), (1, 0, 5), (3, 7, 8)]
    with pytest.raises(ValueError):
        run_starts([10], 1)


class CentreOnly(torch.nn.Module):
    """Stand-in model of window 1 that returns its centre frame: output frame t = mosaic frame t."""

    def __init__(self, shift_neighbour: bool = False):
        super().__init__()
        from depixcli.model.config import ModelConfig

        self.config = ModelConfig(window=1, stride=2, width=4)
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.shift_neighbour = shift_neighbour

    def forward(self, stack):
        if self.shift_neighbour:  # reads its next neighbour: differs from its own F = 1
            return stack[:, -1] + self.dummy
        return stack[:, stack.shape[1] // 2] + self.dummy


class GridEcho(torch.nn.Module):
    """Stand-in model with grid input: returns the first three grid maps of its next neighbour, clamped."""

    def __init__(self):
        super().__init__()
        from depixcli.model.config import ModelConfig

        self.config = ModelConfig(window=1, stride=2, width=4, arch="compact", use_stn=False, grid_input=True)
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, stack, maps=None):
        return maps[:, -1, :3].clamp(0, 1) + self.dummy


def test_reconstruct_runs_follow_the_window(astronaut):
    from depixcli.evaluate.config import EvalConfig
    from depixcli.evaluate.protocols import mosaic_stack
    from depixcli.model.reconstructor import Reconstructor

    class Track:
        frames = np.stack([head_crop(astronaut, dx=0.5 * t) for t in range(FRAMES)])

    models = {"centre": Reconstructor(CentreOnly(), "cpu", flip=False),
              "next": Reconstructor(CentreOnly(True), "cpu", flip=False),
              "grid": Reconstructor(GridEcho(), "cpu", flip=False)}
    cfg = EvalConfig(batch_size=3)
    runs = [(0, 5, 6)]
    outs, truths, _ = reconstruct_runs("face16", [Track], runs, models, cfg)
    assert len(outs) == 1 and set(outs[0]) == {"nearest", "bicubic", "gaussian", "centre", "centre-F1", "next",
                                               "next-F1", "grid", "grid-F1"}
    np.testing.assert_array_equal(truths[0], Track.frames[5:11])
    # the run's frames are mosaiced as one clip: the centre-only model returns them unchanged
    whole, _, _, _, maps = mosaic_stack("face16", Track.frames[3:13], 0, with_bicubic=True, centre_pos=2)
    echo = (np.clip(maps[:, :3], 0, 1) * 255).round().astype(np.uint8).transpose(0, 2, 3, 1)  # GridEcho's output
    assert echo.std() > 10  # the maps vary across the crop
    np.testing.assert_array_equal(outs[0]["grid"], echo[4:10])  # each frame's stack carries its own frames' maps
    np.testing.assert_array_equal(outs[0]["grid-F1"], echo[2:8])
    np.testing.assert_array_equal(outs[0]["nearest"], whole[2:8])
    np.testing.assert_array_equal(outs[0]["centre"], whole[2:8])
    np.testing.assert_array_equal(outs[0]["centre-F1"], whole[2:8])
    np.testing.assert_array_equal(outs[0]["next"], whole[4:10])  # frame c + stride
    np.testing.assert_array_equal(outs[0]["next-F1"], whole[2:8])


@pytest.fixture(scope="module")
def crop_dir(tmp_path_factory, astronaut):
    """A one-person val dataset of a slowly moving face (dataset.py's format)."""
    import cv2

    from depixcli.dataset.crops import FORMAT_NAME, FORMAT_VERSION

    d = tmp_path_factory.mktemp("crops")
    (d / "tracks").mkdir()
    frames = [head_crop(astronaut, dx=0.5 * t - 6) for t in range(FRAMES)]
    vw = cv2.VideoWriter(str(d / "tracks" / "c_t0.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (CROP, CROP))
    for f in frames:
        vw.write(np.ascontiguousarray(f[..., ::-1]))
    vw.release()
    entry = {"file": "tracks/c_t0.mp4", "track_id": "c_t0", "source": "c.mp4", "identity": "astro", "split": "val",
             "fps": 25.0, "frames": FRAMES, "first_frame": 0, "boxes": []}
    index = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "crop_size": CROP, "tracks": [entry]}
    (d / "index.json").write_text(json.dumps(index))
    return d


def test_eval_reports_flicker_columns(crop_dir):
    from depixcli.evaluate.config import EvalConfig
    from depixcli.evaluate.report import format_table
    from depixcli.evaluate.score import evaluate

    cfg = EvalConfig(protocols=("face8",), frames_per_track=1, device="cpu", use_dlib=False, grid_examples=0,
                     flicker_frames=6)
    report = evaluate(crop_dir, {"model": CentreOnly(True)}, cfg, quiet=True)
    assert report["dataset"]["flicker_runs"] == [["c_t0", 6, 6]]
    rows = report["protocols"]["face8"]["methods"]
    for name in ("nearest", "bicubic", "gaussian", "model", "model-F1"):
        assert rows[name]["flicker"] > 0 and rows[name]["tof"] > 0
    assert "flicker" not in rows["model+proj"]
    assert rows["model-F1"]["flicker"] == pytest.approx(rows["nearest"]["flicker"])  # F = 1 returns the mosaic
    assert rows["model"]["flicker"] != pytest.approx(rows["nearest"]["flicker"])  # the next frame's mosaic
    assert rows["bicubic"]["flicker"] < rows["nearest"]["flicker"]  # smooth interpolation jumps less than blocks
    per_run = report["protocols"]["face8"]["per_run"]
    assert per_run["model"]["flicker"] == [rows["model"]["flicker"]]
    table = format_table(report)
    assert "flicker" in table and "tOF px" in table and "1 runs of up to 6 consecutive frames" in table


def test_cli_flicker_frames_option(crop_dir, tmp_path):
    from depixcli.model.config import ModelConfig
    from depixcli.model.nets import Depixelator
    from depixcli.model.weights import save_model

    torch.manual_seed(0)
    w = tmp_path / "tiny.safetensors"
    save_model(w, Depixelator(ModelConfig(window=1, stride=2, use_stn=False, width=4)), {"test": "tiny"})
    args = ["eval", str(crop_dir), "-w", str(w), "--protocol", "paper16", "-k", "1", "--device", "cpu", "--no-dlib",
            "--no-project", "-q"]
    res = CliRunner().invoke(main, args + ["--flicker-frames", "4"])
    assert res.exit_code == 0, res.output
    assert "tOF px" in res.output and "1 runs of up to 4 consecutive frames" in res.output
    res = CliRunner().invoke(main, args + ["--flicker-frames", "0"])
    assert res.exit_code == 0 and "tOF" not in res.output
    res = CliRunner().invoke(main, args + ["--flicker-frames", "1"])
    assert res.exit_code == 2 and "--flicker-frames" in res.output
