"""Issue 16's small CLI fixes: prepare names why a dataset cannot train, eval refuses a malformed index in one
line, train picks a recipe that fits the machine and never claims "done" without a model, run's choices."""

import json
import re
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from depixcli.cli import main
from depixcli.commands.train import PRESETS, format_validation
from depixcli.io.synthetic import write_test_clip
from tests.dataset.test_dataset import write_face_clip


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    write_face_clip(d / "a.mp4", n=12)
    write_test_clip(d / "b.mp4", [np.full((120, 160, 3), 90, np.uint8)] * 12, fps=25)  # no face
    return d


def prepare(*args):
    return CliRunner().invoke(main, ["prepare", *map(str, args), "-j", "1", "--size", "32", "-q"])


def test_prepare_header_only_csv_says_there_are_no_rows(clips, tmp_path):
    (clips / "h.csv").write_text("file,identity,split\n")
    res = prepare(clips / "h.csv", "-o", tmp_path / "o")
    assert res.exit_code == 1 and "lists no clips" in res.output and "'file' column" not in res.output
    (clips / "n.csv").write_text("path,identity\na.mp4,x\n")
    res = prepare(clips / "n.csv", "-o", tmp_path / "o")
    assert res.exit_code == 1 and "'file' column" in res.output


def test_prepare_refuses_an_unknown_split(clips, tmp_path):
    (clips / "t.csv").write_text("file,identity,split\na.mp4,alice,tset\n")
    res = prepare(clips / "t.csv", "-o", tmp_path / "o")
    assert res.exit_code == 1 and "t.csv:2: unknown split 'tset'" in res.output and len(res.output.splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_prepare_names_faceless_clips_and_the_split_they_empty(clips, tmp_path):
    (clips / "f.csv").write_text("file,identity,split\na.mp4,alice,val\nb.mp4,bob,train\n")
    res = CliRunner().invoke(main, ["prepare", str(clips / "f.csv"), "-o", str(tmp_path / "o"), "-j", "1",
                                    "--size", "32"])
    assert res.exit_code == 0, res.output
    warnings = [line for line in res.output.splitlines() if line.startswith("Warning:")]
    assert any("b.mp4: no face track" in w and "'bob'" in w for w in warnings), res.output
    assert any("no 'train' tracks: its 1 identity (bob) gave no face track" in w for w in warnings), res.output
    assert not any("no 'val'" in w for w in warnings)


def test_eval_malformed_index_is_one_line(tmp_path):
    from depixcli.model.weights import default_weights_path

    weights = default_weights_path()  # the shipped model: 128 px crops
    for index, what in [({"format": "depix-crops", "version": 1, "tracks": []}, "'crop_size'"),
                        ({"format": "depix-crops", "version": 1, "crop_size": 128, "tracks": ["x"]}, "track 0"),
                        ({"format": "depix-crops", "version": 1, "crop_size": 128, "tracks": [{"file": "a"}]},
                         "track 0 has no valid 'track_id'"),
                        ([1, 2], "not a depix crop index")]:
        (tmp_path / "index.json").write_text(json.dumps(index))
        res = CliRunner().invoke(main, ["eval", str(tmp_path), "-w", str(weights), "-q"])
        assert res.exit_code == 1 and what in res.output and len(res.output.splitlines()) == 1, res.output
        assert res.exception is None or isinstance(res.exception, SystemExit)


@pytest.fixture()
def crop_dir(tmp_path):
    from tests.synthetic import write_crop_dir
    from tests.train.test_train import TRAIN, VAL

    write_crop_dir(tmp_path / "crops", {"train": TRAIN, "val": VAL})
    return tmp_path / "crops"


def test_train_on_cpu_defaults_to_the_cpu_recipe_and_says_so(crop_dir, tmp_path, monkeypatch):
    import torch

    from depixcli.train.config import load_config

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    from depixcli.train.config import TrainConfig

    run = tmp_path / "run"
    cfg_file = tmp_path / "c.json"  # TrainConfig's defaults (the paper's) with 32 px crops: the tiny test data
    base = TrainConfig().to_dict()
    base["model"]["crop_size"] = 32
    base["val_samples"] = 2
    cfg_file.write_text(json.dumps(base))
    res = CliRunner().invoke(main, ["train", str(crop_dir), "-o", str(run), "--config", str(cfg_file),
                                    "--preset", "auto", "--steps", "1", "--batch-size", "2", "--compact-width", "4",
                                    "--compact-blocks", "1", "--workers", "1", "--val-every", "1"])
    assert res.exit_code == 0, res.output
    assert "preset cpu (auto: no CUDA GPU): compact net" in res.output
    cfg = load_config(run / "config.json")
    assert (cfg.model.arch, cfg.model.use_stn, cfg.gan, cfg.perceptual, cfg.stage) == \
        ("compact", False, False, "none", "recon")
    assert (run / "model.safetensors").exists() and re.search(r"^done: ", res.output, re.M)
    line = next(x for x in res.output.splitlines() if x.startswith("validation"))
    assert "PSNR dB model/bicubic: paper16 " in line and "{" not in line
    assert "validating=2 stacks" in res.output  # the bar says why it stands still during validation
    # the paper's recipe stays one flag away, and --help's first example no longer trains it on a CPU
    assert PRESETS["gpu"] == {}
    help_text = CliRunner().invoke(main, ["train", "-h"]).output
    assert "--preset [auto|cpu|gpu]" in help_text and "[default: unet]" not in help_text


def test_train_steps_0_is_refused_not_done(crop_dir, tmp_path):
    res = CliRunner().invoke(main, ["train", str(crop_dir), "-o", str(tmp_path / "r"), "--steps", "0"])
    assert res.exit_code == 2 and "export no model" in res.output and "done" not in res.output
    assert not (tmp_path / "r").exists()


def test_format_validation_is_one_readable_line():
    line = format_validation({"step": 7, "val_psnr_paper16_model": 25.5, "val_psnr_paper16_bicubic": 24.25,
                              "val_gain_mean": 1.25, "l1": 0.1})
    assert line == "validation at step 7, PSNR dB model/bicubic: paper16 25.50/24.25, mean gain +1.25 dB"
    assert format_validation({"l1": 0.1}) == ""


@pytest.mark.parametrize("flag", ["--detector", "--preset"])
def test_run_choices_are_usage_errors(clips, tmp_path, flag):
    res = CliRunner().invoke(main, ["run", str(clips / "a.mp4"), "-o", str(tmp_path / "o.mp4"), flag, "foo"])
    assert res.exit_code == 2 and "Invalid value for" in res.output and "'foo' is not one of" in res.output


def test_run_side_by_side_without_faces_says_it_was_dropped(clips, tmp_path):
    res = CliRunner().invoke(main, ["run", str(clips / "b.mp4"), "-o", str(tmp_path / "o.mp4"), "--pixelate", "16",
                                    "--side-by-side", "-q"])
    assert res.exit_code == 0, res.output
    assert "Warning: --side-by-side dropped: no face to compare" in res.output


def test_pixelate_summary_counts_tracks_in_english(clips, tmp_path):
    shutil.copy(clips / "a.mp4", tmp_path / "a.mp4")
    res = CliRunner().invoke(main, ["pixelate", str(tmp_path / "a.mp4"), "-o", str(tmp_path / "o.mp4")])
    assert res.exit_code == 0, res.output
    assert "1 face track in " in res.output and "faces (tracks)" not in res.output


def test_run_pass_two_eta_is_timed_from_the_first_frame_out(tmp_path, tiny_weights):
    """The pass-2 bar restarts its clock when the first frame leaves the (filled) pipeline."""
    from depixcli.restore.config import RunConfig
    from depixcli.restore.run import run_video
    from tests.synthetic import mosaic_clip

    w = tiny_weights
    clip = tmp_path / "m.mp4"
    mosaic_clip(clip, 12)
    events = []

    class Bar:
        def __init__(self, desc, total):
            self.desc = desc

        def update(self, n):
            events.append((self.desc, "update"))

        def reset(self):
            events.append((self.desc, "reset"))

        def close(self):
            pass

    run_video(clip, tmp_path / "o.mp4", RunConfig(weights=str(w), region=(50, 20, 60, 70), quiet=True),
              progress_factory=Bar)
    second = [e for d, e in events if d.startswith("pass 2")]
    assert second[0] == "reset" and second[1:] == ["update"] * 12
