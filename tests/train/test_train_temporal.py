"""The temporal-consistency loss of training (`--w-temporal`): stacks one frame later with the same mosaic draw,
the loss term, the validation flicker figure, and resuming an older run with the new flag."""

import dataclasses
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import depixcli.train.degrade as degrade
from depixcli.cli import main
from depixcli.evaluate.temporal import flicker
from depixcli.train.augment import augment
from depixcli.train.checkpoint import load_checkpoint
from depixcli.train.config import CHECKPOINT, CONFIG_FILE
from depixcli.train.data import FrameBank
from depixcli.train.degrade import MosaicConfig, bicubic_baseline, block_means, random_mosaic
from depixcli.train.loop import train
from depixcli.train.losses import temporal_term
from depixcli.train.stills import StillBank
from depixcli.train.validate import FLICKER_CASES, validate_recon
from tests.synthetic import write_crop_dir
from tests.train.test_compact import COMPACT, FAST, TRAIN, VAL, smooth_images

torch.set_num_threads(1)
STILL = MosaicConfig(blocks_min=4, blocks_max=8, drift_step=0.0, p_box_anchored=0.0, noise_max=0.0)


def log_of(run) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def test_next_stacks_are_one_frame_later_in_the_same_track():
    tracks = [SimpleNamespace(frames=np.zeros((n, 4, 4, 3), np.uint8), identity=str(n)) for n in (10, 6)]
    bank = FrameBank(tracks)
    idx = np.array([[0, 2, 4], [5, 7, 9], [8, 9, 9], [10, 11, 13], [13, 15, 15]])  # window 1, stride 2
    nxt = bank.next_stacks(idx, 1, 2)
    assert nxt.tolist() == [[1, 3, 5], [6, 8, 9], [6, 8, 9], [10, 12, 14], [12, 14, 15]]
    # the last frame of a track has no next one: the frame before it stands in


def test_next_mosaic_of_a_static_clip_with_a_still_grid_is_the_same_mosaic():
    x = torch.rand(1, 1, 3, 32, 32).expand(6, 3, -1, -1, -1).contiguous()  # every frame the same
    for cfg in (STILL, dataclasses.replace(STILL, p_compress=1.0), dataclasses.replace(STILL, p_image_anchored=0.0)):
        gen = torch.Generator().manual_seed(1)
        mos, maps, draw = random_mosaic(x, gen, cfg, return_maps=True, return_draw=True)
        mos_n, maps_n = draw.following(x[:4], gen, with_maps=True)
        assert torch.equal(mos_n, mos[:4]) and torch.equal(maps_n, maps[:4])
        assert not torch.equal(mos, x)
    # with drift the next frame's grid differs
    gen = torch.Generator().manual_seed(1)
    mos, draw = random_mosaic(x, gen, dataclasses.replace(STILL, p_image_anchored=1.0, drift_step=0.3),
                              return_draw=True)
    mos_n, maps_n = draw.following(x, gen)
    assert not torch.equal(mos_n, mos) and maps_n is None


def test_the_batch_mosaic_and_augmentation_do_not_depend_on_the_next_stacks():
    x = torch.rand(4, 3, 3, 32, 32)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    plain = random_mosaic(x, g1, return_maps=True)
    with_draw = random_mosaic(x, g2, return_maps=True, return_draw=True)
    assert all(torch.equal(a, b) for a, b in zip(plain, with_draw[:2]))
    assert torch.equal(g1.get_state(), g2.get_state())
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a = augment(x, g1)
    b, extra = augment(x, g2, extra=x[:2])
    assert torch.equal(a, b) and torch.equal(extra, a[:2])  # same frames, same draw: the same result
    assert torch.equal(g1.get_state(), g2.get_state())


def test_the_next_grid_moves_by_one_step_of_the_drift_walk(monkeypatch):
    origins = []
    real = degrade.grid_mosaic
    monkeypatch.setattr(degrade, "grid_mosaic", lambda x, origin, cell, *a, **k: (
        origins.append((origin.clone(), cell.clone())), real(x, origin, cell, *a, **k))[1])
    B, Fr, step = 600, 3, 0.3
    x = torch.rand(B, Fr, 3, 16, 16)
    cfg = dataclasses.replace(STILL, p_image_anchored=1.0, drift_step=step, p_compress=0.0)
    gen = torch.Generator().manual_seed(0)
    random_mosaic(x, gen, cfg, return_draw=True)[1].following(x, gen)
    (o, cell), (o_n, _) = origins
    o, o_n, cell = o.reshape(B, Fr, 2), o_n.reshape(B, Fr, 2), cell.reshape(B, Fr)[:, 0]
    shift = (o_n - o) / cell[:, None, None]  # cells
    assert torch.allclose(shift, shift[:, :1].expand_as(shift), atol=1e-4)  # one shift for the whole stack
    within = (o[:, 1:] - o[:, :-1]) / cell[:, None, None]  # the walk's own steps between frames
    assert shift[:, 0].std().item() == pytest.approx(step, rel=0.1)
    assert within.std().item() == pytest.approx(step, rel=0.1)
    origins.clear()  # a face-anchored grid does not move
    random_mosaic(x, gen, dataclasses.replace(cfg, p_image_anchored=0.0), return_draw=True)[1].following(x, gen)
    assert torch.equal(origins[0][0], origins[1][0])


def test_temporal_term_is_zero_when_the_output_changes_as_the_truth():
    g0, g1 = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    assert temporal_term(g1, g0, g1, g0).item() == 0.0
    assert temporal_term(g1 + 0.2, g0 + 0.2, g1, g0).item() == pytest.approx(0.0, abs=1e-7)  # a constant bias
    assert temporal_term(g0, g0, g1, g0).item() == pytest.approx((g1 - g0).abs().mean().item())  # frozen output


def test_validation_flicker_keeps_the_psnr_figures_and_is_zero_on_a_static_clip():
    from depixcli.model.nets import Depixelator

    static = [SimpleNamespace(frames=np.repeat(smooth_images(1, 32, 4), 8, 0), identity="st")]
    bank = FrameBank(static)
    idx = bank.stacks(np.random.default_rng(0), 3, 1, 2)
    nxt = bank.next_stacks(idx[:2], 1, 2)
    torch.manual_seed(0)
    model = Depixelator(dataclasses.replace(COMPACT, grid_input=True))
    off = lambda: torch.autocast("cpu", enabled=False)  # noqa: E731
    plain = validate_recon(model, bank, idx, torch.device("cpu"), 2, off)
    res = validate_recon(model, bank, idx, torch.device("cpu"), 2, off, nxt)
    assert {k: v for k, v in res.items() if not k.startswith("val_flicker_")} == plain
    assert sorted(k for k in res if k.startswith("val_flicker_")) == sorted(
        [f"val_flicker_{p}_{m}" for p in FLICKER_CASES for m in ("model", "bicubic")] + ["val_flicker_image8_single"])
    assert res["val_flicker_paper16_bicubic"] == 0.0 and res["val_flicker_paper16_model"] == 0.0  # same frames
    assert res["val_flicker_image8_bicubic"] > 0.0  # the grid moved one step against the still face
    # on a moving clip the figure is evaluate.temporal.flicker of the consecutive bicubic outputs
    bank = FrameBank(VAL)
    idx = bank.stacks(np.random.default_rng(0), 3, 1, 2)
    nxt = bank.next_stacks(idx, 1, 2)
    res = validate_recon(model, bank, idx, torch.device("cpu"), 2, off, nxt)

    def bicubic_u8(i):
        g = torch.from_numpy(bank.frames[i]).permute(0, 3, 1, 2).float() / 255
        return (bicubic_baseline(block_means(g, 16), 32) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()

    a, b = bicubic_u8(idx[:, 1]), bicubic_u8(nxt[:, 1])
    want = np.mean([flicker(np.stack([a[k], b[k]]), bank.frames[[idx[k, 1], nxt[k, 1]]]) for k in range(3)])
    assert res["val_flicker_paper16_bicubic"] == pytest.approx(want, abs=1e-3) and want > 0


def test_training_with_the_temporal_loss_on_the_shipped_recipe(tmp_path):
    stills = StillBank(smooth_images(5, 40, 9), tuple(f"s{i}" for i in range(5)))
    model = dataclasses.replace(COMPACT, grid_input=True, align=True, align_size=16)
    cfg = dataclasses.replace(FAST, model=model, cpu_bf16=True, w_temporal=1.0, temporal_samples=1,
                              stills_fraction=0.5)
    r = train(cfg, tmp_path / "t", TRAIN, VAL, quiet=True, stills=stills)
    log = log_of(tmp_path / "t")
    assert r.finished and all(rec["temporal"] > 0 and np.isfinite(rec["loss_g"]) for rec in log)
    assert "val_flicker_image8_model" in log[-1] and "val_flicker_paper16_bicubic" in log[-1]
    # w_temporal 0 (the default): no term, and the same batches drawn as with it
    r0 = train(dataclasses.replace(cfg, w_temporal=0.0), tmp_path / "p", TRAIN, VAL, quiet=True, stills=stills)
    assert r0.finished and all("temporal" not in rec for rec in log_of(tmp_path / "p"))
    rng_t, rng_p = (load_checkpoint(tmp_path / d / CHECKPOINT)["rng"] for d in ("t", "p"))
    assert rng_t["numpy"] == rng_p["numpy"]  # batch sampling
    assert log_of(tmp_path / "p")[0]["l1"] == pytest.approx(log[0]["l1"], rel=1e-3)  # the same first batch


def test_an_older_run_resumes_with_the_temporal_flag(tmp_path):
    crops, run = tmp_path / "crops", tmp_path / "run"
    write_crop_dir(crops, {"train": TRAIN, "val": VAL})
    (tmp_path / "cfg.json").write_text(json.dumps(dataclasses.replace(FAST, steps=2, val_every=100).to_dict()))
    res = CliRunner().invoke(main, ["train", str(crops), "-o", str(run), "--config", str(tmp_path / "cfg.json"),
                                    "-q"])
    assert res.exit_code == 0, res.output
    old = json.loads((run / CONFIG_FILE).read_text())  # a run from before the flag: its config lacks the fields
    del old["w_temporal"], old["temporal_samples"]
    (run / CONFIG_FILE).write_text(json.dumps(old))
    res = CliRunner().invoke(main, ["train", str(crops), "-o", str(run), "--steps", "4", "--w-temporal", "0.5",
                                    "--temporal-samples", "2", "-q"])
    assert res.exit_code == 0, res.output
    log = log_of(run)
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    assert ["temporal" in r for r in log] == [False, False, True, True]
    saved = json.loads((run / CONFIG_FILE).read_text())
    assert saved["w_temporal"] == 0.5 and saved["temporal_samples"] == 2 and saved["steps"] == 4
