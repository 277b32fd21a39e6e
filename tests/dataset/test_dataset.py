import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from depixcli.cli import main
from depixcli.dataset.config import PrepareConfig
from depixcli.dataset.crops import FORMAT_NAME, load_crops
from depixcli.dataset.export import prepare
from depixcli.dataset.inputs import ClipInput, assign_splits, collect_inputs
from depixcli.errors import ConfigError, InputError
from depixcli.evaluate.metrics import psnr
from depixcli.geometry.crop import CropBox, crop

av = pytest.importorskip("av")
skimage_data = pytest.importorskip("skimage.data")

N_FRAMES = 20
FPS = 25


def write_face_clip(path, n=N_FRAMES, size=(320, 240), dx=4):
    """A 1-face clip: skimage's astronaut head moving right on a grey background, near-lossless H.264."""
    import cv2

    head = cv2.resize(skimage_data.astronaut()[10:270, 110:340], (115, 130), interpolation=cv2.INTER_AREA)
    w, h = size
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=FPS)
        s.width, s.height, s.pix_fmt = w, h, "yuv444p"
        s.options = {"crf": "0"}
        for t in range(n):
            frame = np.full((h, w, 3), 100, np.uint8)
            x = 40 + dx * t
            frame[60:190, x:x + 115] = head
            for p in s.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def read_rgb(path):
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_face_clip(tmp_path_factory.mktemp("clips") / "walker.mp4")


@pytest.fixture(scope="module")
def exported(clip, tmp_path_factory):
    out = tmp_path_factory.mktemp("crops")
    summary = prepare(collect_inputs([clip]), out, PrepareConfig(size=64, workers=1), quiet=True)
    return out, summary


def test_export_round_trip(clip, exported):
    out, summary = exported
    assert summary.tracks == 1 and summary.frames == N_FRAMES and summary.clips == 1
    index = json.loads((out / "index.json").read_text())
    assert index["format"] == FORMAT_NAME and index["crop_size"] == 64 and index["head_scale"] == pytest.approx(1.8)
    (e,) = index["tracks"]
    assert e["file"] == "tracks/walker_t0.mp4" and (out / e["file"]).is_file()
    assert e["identity"] == "walker" and e["split"] == "train" and e["fps"] == FPS
    assert e["frames"] == N_FRAMES and e["first_frame"] == 0 and len(e["boxes"]) == N_FRAMES
    cx = np.array([b[0] for b in e["boxes"]])
    assert np.all(np.diff(cx) > 2) and np.all(np.diff(cx) < 6)  # follows the 4 px/frame motion
    (tr,) = load_crops(out)
    assert tr.frames.shape == (N_FRAMES, 64, 64, 3) and tr.frames.dtype == np.uint8
    assert tr.track_id == "walker_t0" and tr.fps == FPS and tr.source == str(clip)
    src = read_rgb(clip)
    ref = np.stack([crop(src[i], CropBox(*e["boxes"][i]), 64) for i in range(N_FRAMES)])
    assert psnr(tr.frames, ref, "rgb").min() > 38  # near-lossless storage of every crop
    assert not list((out / "tracks").glob(".*"))  # no temp files left


def test_csv_identity_split_and_filters(clip, tmp_path):
    write_face_clip(tmp_path / "other.mp4", n=12, dx=-3)
    csv_path = tmp_path / "list.csv"
    csv_path.write_text(f"file,identity,split\n{clip},alice,train\nother.mp4,bob,val\n")
    clips = collect_inputs([csv_path])
    assert [(c.identity, c.split) for c in clips] == [("alice", "train"), ("bob", "val")]
    assert clips[1].path == tmp_path / "other.mp4"
    out = tmp_path / "crops"
    prepare(clips, out, PrepareConfig(size=48, workers=2), quiet=True)
    assert [t.identity for t in load_crops(out)] == ["alice", "bob"]
    (val,) = load_crops(out, split="val")
    assert val.identity == "bob" and val.frames.shape == (12, 48, 48, 3)
    assert [t.identity for t in load_crops(out, identities=["alice"])] == ["alice"]
    assert load_crops(out, split="test") == []
    size = np.median([b[2] for b in json.loads((out / "index.json").read_text())["tracks"][0]["boxes"]])
    assert len(load_crops(out, min_source_size=0.8 * size)) == 2 and load_crops(out, min_source_size=1.5 * size) == []


def test_short_tracks_and_faceless_clips_export_nothing(tmp_path):
    short = write_face_clip(tmp_path / "short.mp4", n=5)
    s = prepare(collect_inputs([short]), tmp_path / "out", PrepareConfig(size=32, workers=1), quiet=True)
    assert s.tracks == 0
    assert load_crops(tmp_path / "out") == []


def test_bad_inputs(tmp_path, clip):
    with pytest.raises(InputError, match="no such file"):
        collect_inputs([tmp_path / "missing.mp4"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no video files"):
        collect_inputs([tmp_path / "empty"])
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("path\nx.mp4\n")
    with pytest.raises(InputError, match="'file' column"):
        collect_inputs([bad_csv])
    with pytest.raises(InputError, match="share the name"):
        collect_inputs([clip, clip])
    with pytest.raises(InputError, match="no index.json"):
        load_crops(tmp_path)
    (tmp_path / "index.json").write_text(json.dumps({"format": "other", "version": 1}))
    with pytest.raises(ConfigError):
        load_crops(tmp_path)


def test_unreadable_input_stops_or_is_skipped_when_asked(clip, tmp_path):
    cut = tmp_path / "cut.mp4"
    data = clip.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    runner = CliRunner()
    r = runner.invoke(main, ["prepare", str(clip), str(cut), "-o", str(tmp_path / "a"), "-j", "1", "-q"])
    assert r.exit_code == 1 and "cut.mp4" in r.output and len(r.output.strip().splitlines()) == 1
    assert not (tmp_path / "a").exists()
    r = runner.invoke(main, ["prepare", str(clip), str(cut), "-o", str(tmp_path / "b"), "-j", "1", "-q",
                             "--skip-unreadable"])
    assert r.exit_code == 0, r.output
    assert any(line.startswith("Skipped: ") and "cut.mp4" in line for line in r.output.splitlines()), r.output
    index = json.loads((tmp_path / "b" / "index.json").read_text())
    assert [t["identity"] for t in index["tracks"]] == ["walker"] and "cut.mp4" in index["skipped"][0]


def test_cli_prepare(clip, tmp_path):
    runner = CliRunner()
    out = tmp_path / "cli_crops"
    r = runner.invoke(main, ["prepare", str(clip), "-o", str(out), "--size", "32", "-j", "1", "-q"])
    assert r.exit_code == 0, r.output
    assert [t.frames.shape for t in load_crops(out)] == [(N_FRAMES, 32, 32, 3)]
    r = runner.invoke(main, ["prepare", str(tmp_path / "nope.mp4"), "-o", str(tmp_path / "x")])
    assert r.exit_code == 1
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:") and "nope.mp4" in lines[0]
    assert not (tmp_path / "x").exists()
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("not a video")
    r = runner.invoke(main, ["prepare", str(not_video), "-o", str(tmp_path / "y"), "-q"])
    assert r.exit_code == 1 and len(r.output.strip().splitlines()) == 1 and "notes.mp4" in r.output
    r = runner.invoke(main, ["prepare", str(clip), "-o", str(out), "--detector", "haar"])
    assert r.exit_code == 2
    r = runner.invoke(main, ["prepare", "-h"])
    assert r.exit_code == 0 and "--crf" in r.output and "default" in r.output


def test_cli_defaults_match_the_library():
    """commands/prepare.py repeats the defaults so that `depix -h` imports nothing heavy."""
    from depixcli.commands.prepare import DETECTOR_NAMES, prepare_command
    from depixcli.faces.detect import DETECTORS

    p = {o.name: o.default for o in prepare_command.params}
    d = PrepareConfig()
    assert (p["size"], p["detector"], p["threshold"], p["detect_every"], p["detect_size"], p["min_track"]) == (
        d.size, d.detector, d.threshold, d.detect_every, d.max_side, d.min_track)
    assert (p["crf"], p["pix_fmt"], p["preset"], p["workers"]) == (d.crf, d.pix_fmt, d.preset, d.workers)
    assert p["val_fraction"] == d.val_fraction
    assert set(DETECTOR_NAMES) == set(DETECTORS)


# ---------------------------------------------------------------- existing datasets, interrupts, full disk


def depix(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "depixcli", *map(str, args)], capture_output=True, text=True,
                          **kwargs)


def leftovers(directory):
    """Hidden (temp) files anywhere under `directory`."""
    return sorted(str(p) for p in Path(directory).rglob(".*"))


def test_prepare_never_replaces_a_dataset_and_adds_with_flag(clip, tmp_path):
    other = write_face_clip(tmp_path / "other.mp4", n=12, dx=-3)
    out = tmp_path / "crops"
    runner = CliRunner()
    base = ["-o", str(out), "-j", "1", "--size", "32", "-q"]
    assert runner.invoke(main, ["prepare", str(clip), *base]).exit_code == 0
    before = (out / "index.json").read_text()
    track = out / "tracks" / "walker_t0.mp4"
    stamp = track.stat().st_mtime_ns
    r = runner.invoke(main, ["prepare", str(other), *base])
    assert r.exit_code == 1 and len(r.output.strip().splitlines()) == 1
    assert "already holds a crop dataset" in r.output and "--add" in r.output
    assert (out / "index.json").read_text() == before and sorted(p.name for p in (out / "tracks").iterdir()) == [
        "walker_t0.mp4"]
    r = runner.invoke(main, ["prepare", str(other), "-o", str(out), "-j", "1", "--size", "48", "-q", "--add"])
    assert r.exit_code == 1 and "size=32" in r.output and (out / "index.json").read_text() == before
    r = runner.invoke(main, ["prepare", str(clip), str(other), *base, "--add"])
    assert r.exit_code == 0, r.output
    index = json.loads((out / "index.json").read_text())
    assert index["complete"] and [c["source"] for c in index["clips"]] == [str(clip), str(other)]
    assert [t["track_id"] for t in index["tracks"]] == ["walker_t0", "other_t0"]
    assert track.stat().st_mtime_ns == stamp  # the clip already there was kept, not exported again
    assert [t.frames.shape[0] for t in load_crops(out)] == [N_FRAMES, 12]
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("mine")
    r = runner.invoke(main, ["prepare", str(clip), "-o", str(tmp_path / "junk"), "-j", "1", "-q"])
    assert r.exit_code == 1 and "not empty" in r.output and (tmp_path / "junk" / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("workers", [1, 2])
def test_prepare_ctrl_c_keeps_finished_clips_and_add_finishes(tmp_path, workers):
    clips = [write_face_clip(tmp_path / f"c{i}.mp4", n=24) for i in range(8)]
    out = tmp_path / "crops"
    for attempt in range(3):  # a loaded machine may see the run end before the signal lands: then more clips
        cmd = [sys.executable, "-m", "depixcli", "prepare", *map(str, clips), "-o", str(out), "-j", str(workers),
               "--size", "32", "-q"]
        # SIG_DFL in the child, as from a terminal: an ignored SIGINT (a native library in this test process can
        # leave one) would be inherited through exec and the run would never see the Ctrl-C
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.monotonic() + 120
        while p.poll() is None and time.monotonic() < deadline:
            try:
                if json.loads((out / "index.json").read_text())["clips"]:
                    break
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.02)
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole foreground group
        _, err = p.communicate(timeout=120)
        if p.returncode != 0:
            break
        shutil.rmtree(out)
        clips = clips + [write_face_clip(tmp_path / f"c{attempt}_{i}.mp4", n=24) for i in range(len(clips))]
    assert p.returncode == 130 and err.strip() == "Interrupted.", err
    assert leftovers(out) == []
    index = json.loads((out / "index.json").read_text())
    assert index["complete"] is False and 1 <= len(index["clips"]) < len(clips)
    on_disk = sorted(p.name for p in (out / "tracks").iterdir())
    assert on_disk == sorted(Path(e["file"]).name for e in index["tracks"])  # only whole, listed clips
    with pytest.raises(InputError, match="unfinished"):
        load_crops(out)
    again = depix(*cmd[3:])
    assert again.returncode == 1 and "--add" in again.stderr and len(again.stderr.strip().splitlines()) == 1
    done = depix(*cmd[3:], "--add")
    assert done.returncode == 0, done.stderr
    final = json.loads((out / "index.json").read_text())
    assert final["complete"] and [c["source"] for c in final["clips"]] == sorted(map(str, clips))
    assert final["tracks"][: len(index["tracks"])] == index["tracks"] and len(load_crops(out)) == len(clips)
    assert leftovers(out) == []


def _small_files():
    resource.setrlimit(resource.RLIMIT_FSIZE, (FULL_DISK_BYTES, FULL_DISK_BYTES))


FULL_DISK_BYTES = 30_000  # a 128 px lossless track is larger; index.json fits


@pytest.mark.parametrize("workers", [1, 2])
def test_prepare_full_disk_one_line_and_no_litter(clip, tmp_path, workers):
    out = tmp_path / "crops"
    r = depix("prepare", clip, "-o", out, "-j", workers, "--size", 128, "--crf", 0, "-q", preexec_fn=_small_files)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr.startswith("Error: ") and "File too large" in r.stderr and "Traceback" not in r.stderr
    assert not out.exists() or leftovers(out) == []
    assert not out.exists() or json.loads((out / "index.json").read_text())["clips"] == []


# ---------------------------------------------------------------- splits


def test_default_split_holds_out_whole_identities(clip, tmp_path):
    """`depix prepare a.mp4 b.mp4 -o crops` used to put everything in train; `depix train` needs val."""
    other = write_face_clip(tmp_path / "other.mp4", n=12, dx=-3)
    out = tmp_path / "crops"
    r = CliRunner().invoke(main, ["prepare", str(clip), str(other), "-o", str(out), "-j", "1", "--size", "32"])
    assert r.exit_code == 0, r.output
    assert "val 1 identity, 1 tracks" in r.output and "train 1 identity, 1 tracks" in r.output
    index = json.loads((out / "index.json").read_text())
    assert sorted(t["split"] for t in index["tracks"]) == ["train", "val"]
    assert len(load_crops(out, split="train")) == 1 and len(load_crops(out, split="val")) == 1
    help_text = CliRunner().invoke(main, ["prepare", "-h"]).output
    assert "split" in help_text and "--val-fraction" in help_text and "--add" in help_text


def test_assign_splits_by_identity_hash(tmp_path):
    people = [f"person{i:03d}" for i in range(300)]
    clips = [ClipInput(tmp_path / f"{p}_{k}.mp4", p, None) for p in people for k in range(2)]
    split = {c.identity: c.split for c in assign_splits(clips, 0.1)}
    by_clip = assign_splits(clips, 0.1)
    assert all(split[c.identity] == c.split for c in by_clip)  # an identity is never in both splits
    assert 0.05 < sum(s == "val" for s in split.values()) / len(people) < 0.15
    assert {c.identity: c.split for c in assign_splits(clips[::-1], 0.1)} == split  # order does not matter
    two = assign_splits([ClipInput(tmp_path / "a.mp4", "a", None), ClipInput(tmp_path / "b.mp4", "b", None)])
    assert sorted(c.split for c in two) == ["train", "val"]
    assert [c.split for c in assign_splits([ClipInput(tmp_path / "a.mp4", "a", None)])] == ["train"]
    assert [c.split for c in assign_splits(clips[:2], 0.0)] == ["train", "train"]
    mixed = [ClipInput(tmp_path / "x1.mp4", "x", "val"), ClipInput(tmp_path / "x2.mp4", "x", None),
             ClipInput(tmp_path / "y.mp4", "y", None)]
    assert [c.split for c in assign_splits(mixed)] == ["val", "val", "train"]  # given splits win, per identity
    known = assign_splits([ClipInput(tmp_path / "z.mp4", "z", None)], known={"z": "val"})
    assert known[0].split == "val"
