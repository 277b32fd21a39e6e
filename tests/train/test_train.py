"""Training loop, configs, checkpoints/resume, perceptual networks and `depix train` (CPU, tiny widths)."""

import dataclasses
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from depixcli.errors import ConfigError, WeightsError
from depixcli.model.config import ModelConfig
from depixcli.model.nets import Depixelator, PatchDiscriminator
from depixcli.model.weights import load_model, read_header
from depixcli.train.checkpoint import load_checkpoint
from depixcli.train.config import CHECKPOINT, TrainConfig, load_config
from depixcli.train.data import FrameBank
from depixcli.train.loop import train
from depixcli.train.losses import gan_step
from tests.synthetic import synthetic_tracks, write_crop_dir

torch.set_num_threads(1)
S = 32  # px
TINY = ModelConfig(crop_size=S, width=4, stn_widths=(4, 4, 8, 8, 8), stn_size=16, stn_grid=4)
FAST = TrainConfig(model=TINY, steps=2, stn_steps=2, batch_size=2, perceptual="none", disc_width=4, log_every=1,
                   val_every=2, ckpt_every=100, val_samples=2, workers=1, device="cpu")


TRAIN = synthetic_tracks(2, 24, 0, "tr")
VAL = synthetic_tracks(1, 16, 1, "va")


def test_config_json_roundtrip_and_unknown_keys(tmp_path):
    d = FAST.to_dict()
    assert TrainConfig.from_dict(json.loads(json.dumps(d))) == FAST
    with pytest.raises(ConfigError, match="unknown train config keys"):
        TrainConfig.from_dict({**d, "stepz": 3})
    with pytest.raises(ConfigError, match="unknown model config keys"):
        TrainConfig.from_dict({**d, "model": {**d["model"], "depth": 3}})
    with pytest.raises(ConfigError, match="unknown mosaic config keys"):
        TrainConfig.from_dict({**d, "mosaic": {"blockz": 3}})
    with pytest.raises(ConfigError):
        TrainConfig.from_dict({**d, "stage": "warp"})
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ConfigError):
        load_config(tmp_path / "bad.json")


def test_frame_bank_stacks_stay_inside_one_track():
    bank = FrameBank(TRAIN)
    rng = np.random.default_rng(0)
    idx = bank.stacks(rng, 64, 2, 5)
    assert idx.shape == (64, 5)
    track = np.searchsorted(bank.starts, idx, side="right") - 1
    assert (track == track[:, :1]).all()
    assert (np.diff(idx, axis=1) >= 0).all() and (np.diff(idx, axis=1) <= 5).all()
    pairs = bank.pairs(rng, 64, 10)
    pt = np.searchsorted(bank.starts, pairs, side="right") - 1
    assert (pt[:, 0] == pt[:, 1]).all() and (np.abs(pairs[:, 0] - pairs[:, 1]) <= 10).all()
    assert bank.gather(idx[:3]).shape == (3, 5, S, S, 3)


def test_one_gan_step_changes_generator_and_discriminator():
    torch.manual_seed(0)
    g, d = Depixelator(TINY), PatchDiscriminator(width=4)
    opt_g = torch.optim.Adam(g.recon.parameters(), lr=1e-3)
    opt_d = torch.optim.Adam(d.parameters(), lr=1e-3)
    g0 = [p.detach().clone() for p in g.recon.parameters()]
    d0 = [p.detach().clone() for p in d.parameters()]
    stn0 = [p.detach().clone() for p in g.stn.parameters()]
    g.stn.requires_grad_(False)
    out = gan_step(g, d, d, None, opt_g, opt_d, torch.rand(2, 5, 3, S, S), torch.rand(2, 3, S, S), FAST,
                   lambda: torch.autocast("cpu", enabled=False))
    assert set(out) == {"loss_g", "l1", "perceptual", "adv", "align", "identity", "loss_d"}
    assert all(torch.isfinite(v) for v in out.values())
    assert any(not torch.equal(a, b) for a, b in zip(g0, g.recon.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(d0, d.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(stn0, g.stn.parameters()))  # the aligner stays frozen
    assert all(p.requires_grad for p in d.parameters())


def test_validation_keeps_the_frozen_stn_in_eval_mode():
    from depixcli.train.validate import validate_recon

    m = Depixelator(TINY)
    m.stn.eval()
    bank = FrameBank(VAL)
    idx = bank.stacks(np.random.default_rng(0), 2, 2, 5)
    res = validate_recon(m, bank, idx, torch.device("cpu"), 2, lambda: torch.autocast("cpu", enabled=False))
    protocols = ("paper16", "paper8", "face16", "face8", "image16", "image8")
    assert set(res) == ({f"val_psnr_{p}_{m}" for p in protocols for m in ("model", "bicubic")}
                        | {"val_psnr_image16_single", "val_psnr_image8_single", "val_gain_mean", "val_change"})
    assert m.recon.training and not m.stn.training


def test_train_all_stages_then_resume(tmp_path):
    run = tmp_path / "run"
    r1 = train(FAST, run, TRAIN, VAL, quiet=True)
    assert (r1.stn_step, r1.step, r1.finished) == (2, 2, True)
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [(r["stage"], r["step"]) for r in log if "loss_g" in r or "photo" in r] == [
        ("stn", 1), ("stn", 2), ("recon", 1), ("recon", 2)]
    assert "val_stn_l1_aligned" in log[1] and "val_psnr_paper16_bicubic" in log[3]
    assert all(r["samples_per_s"] > 0 and r["s_per_step"] > 0 for r in log if "s_per_step" in r)
    model = load_model(run / "model.safetensors")
    assert model.config == TINY
    meta = read_header(run / "model.safetensors")["meta"]
    assert meta["train"]["steps"] == 2 and meta["train"]["complete"] is True and meta["perceptual"] == "none"
    ck1 = load_checkpoint(run / CHECKPOINT)
    assert int(ck1["opt_g"]["state"][0]["step"]) == 2

    more = dataclasses.replace(FAST, steps=4, stn_steps=2)
    r2 = train(more, run, TRAIN, VAL, quiet=True)
    assert (r2.stn_step, r2.step) == (2, 4)
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if r["stage"] == "recon" and "loss_g" in r] == [1, 2, 3, 4]
    ck2 = load_checkpoint(run / CHECKPOINT)
    assert int(ck2["opt_g"]["state"][0]["step"]) == 4  # optimiser state continued, not restarted
    assert int(ck2["opt_stn"]["state"][0]["step"]) == 2  # aligner not retrained
    with pytest.raises(ConfigError, match="another model"):
        train(dataclasses.replace(more, model=dataclasses.replace(TINY, width=8)), run, TRAIN, VAL, quiet=True)


def test_init_stn_reuses_another_runs_aligner(tmp_path):
    a = train(dataclasses.replace(FAST, stage="stn"), tmp_path / "a", TRAIN, VAL, quiet=True)
    assert (a.stn_step, a.step, a.model_path) == (2, 0, None)
    wide = dataclasses.replace(TINY, width=8)
    b = train(dataclasses.replace(FAST, stage="recon", model=wide, init_stn=str(tmp_path / "a")), tmp_path / "b",
              TRAIN, VAL, quiet=True)
    assert b.step == 2
    stn_a = load_checkpoint(tmp_path / "a" / CHECKPOINT)["model"]
    stn_b = load_model(tmp_path / "b" / "model.safetensors").stn.state_dict()
    assert all(torch.allclose(stn_a["stn." + k].double(), v.double(), rtol=1e-3, atol=1e-3) for k, v in stn_b.items())
    other = dataclasses.replace(TINY, stn_grid=8)
    with pytest.raises(ConfigError, match="does not match"):
        train(dataclasses.replace(FAST, model=other, init_stn=str(tmp_path / "a")), tmp_path / "c", TRAIN, VAL,
              quiet=True)


def test_time_limit_stops_cleanly_with_a_checkpoint(tmp_path):
    cfg = dataclasses.replace(FAST, steps=1000, stn_steps=0, model=dataclasses.replace(TINY, use_stn=False),
                              time_limit_min=0.01)
    r = train(cfg, tmp_path / "run", TRAIN, VAL, quiet=True)
    assert not r.finished and r.step < 1000
    assert int(load_checkpoint(tmp_path / "run" / CHECKPOINT)["step"]) == r.step


def test_recon_stage_needs_a_trained_stn(tmp_path):
    with pytest.raises(ConfigError, match="STN is untrained"):
        train(dataclasses.replace(FAST, stage="recon"), tmp_path / "run", TRAIN, VAL, quiet=True)


def test_perceptual_networks_load_into_project_modules(tmp_path):
    from depixcli.train.perceptual import FeatureNet, PerceptualLoss, export_features, load_feature_net

    x = torch.rand(1, 3, S, S)
    st = load_feature_net("vgg16-stlpips")
    feats = st(x)
    assert [f.shape[1] for f in feats] == [64, 128, 256, 512]
    dst = tmp_path / "vgg.safetensors"
    size = export_features("vgg16-stlpips", dst)
    assert size < 8 * 2**20  # compact: layers up to relu4_1 in fp16
    again = load_feature_net(str(dst))
    for a, b in zip(feats, again(x)):
        assert float((a - b).abs().max()) <= 2e-3 * float(a.abs().max()) + 1e-4
    loss = PerceptualLoss(st)
    assert float(loss(x, x)) == 0.0 and float(loss(x, torch.rand_like(x))) > 0
    # torchvision VGG-19 key layout (features.N.weight) is recognised from a .pth file
    vgg19 = FeatureNet("vgg19", taps=(1, 6, 11, 20, 29, 35))
    torch.save({f"{k}": torch.randn_like(v) for k, v in vgg19.state_dict().items()} | {"classifier.0.weight":
               torch.zeros(1)}, tmp_path / "vgg19.pth")
    net = load_feature_net(str(tmp_path / "vgg19.pth"))
    assert net.kind == "vgg19" and net.taps == (1, 6, 11, 20, 29)
    mb = load_feature_net("mobilenetv2")
    assert [f.shape[1] for f in mb(x)] == [16, 24, 32, 96]
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(WeightsError):
        load_feature_net(str(tmp_path / "junk.pth"))


def test_cli_trains_from_a_crop_dir_with_config_file(tmp_path):
    from depixcli.cli import main

    crops = tmp_path / "crops"
    write_crop_dir(crops, {"train": TRAIN, "val": VAL})
    cfg_file = tmp_path / "tiny.json"
    cfg_file.write_text(json.dumps(dataclasses.replace(FAST, steps=50).to_dict()))
    run = tmp_path / "run"
    args = ["train", str(crops), "-o", str(run), "--config", str(cfg_file), "--steps", "1", "--stn-steps", "1", "-q"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    saved = json.loads((run / "config.json").read_text())
    assert saved["steps"] == 1 and saved["stn_steps"] == 1 and saved["model"]["width"] == 4
    assert load_model(run / "model.safetensors").config == TINY
    # rerun with more steps resumes from the run's own config
    res = CliRunner().invoke(main, ["train", str(crops), "-o", str(run), "--steps", "2", "-q"])
    assert res.exit_code == 0, res.output
    assert int(load_checkpoint(run / CHECKPOINT)["step"]) == 2
    # a conflicting architecture flag on resume is a one-line error, exit 1
    res = CliRunner().invoke(main, ["train", str(crops), "-o", str(run), "--width", "8", "-q"])
    assert res.exit_code == 1 and "another model" in res.output
    cfg_file.write_text(json.dumps({"stepz": 1}))
    res = CliRunner().invoke(main, ["train", str(crops), "-o", str(tmp_path / "r2"), "--config", str(cfg_file)])
    assert res.exit_code == 1 and "unknown train config keys" in res.output
    res = CliRunner().invoke(main, ["train", "-h"])
    assert res.exit_code == 0 and "--time-limit" in res.output and "--no-stn" in res.output


def test_option_errors_name_the_option_and_the_cli_words_the_flag(tmp_path):
    """The library says what is wrong with a value (no flag names); `depix train` prefixes the flag."""
    from depixcli.cli import main
    from depixcli.errors import OptionError

    no_stn = dataclasses.replace(FAST, stage="stn", model=dataclasses.replace(TINY, use_stn=False))
    with pytest.raises(OptionError) as err:
        no_stn.validate()
    assert err.value.option == "stage" and "--" not in str(err.value)
    write_crop_dir(tmp_path / "crops", {"train": TRAIN, "val": VAL})
    (tmp_path / "cfg.json").write_text(json.dumps(dataclasses.replace(FAST, stn_steps=0).to_dict()))
    res = CliRunner().invoke(main, ["train", str(tmp_path / "crops"), "-o", str(tmp_path / "run"), "--config",
                                    str(tmp_path / "cfg.json"), "--stage", "recon", "-q"])
    assert res.exit_code == 1 and res.output.startswith("Error: --stage recon: the STN is untrained"), res.output
