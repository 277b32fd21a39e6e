import json

import numpy as np
import pytest
from click.testing import CliRunner

from depixcli.cli import main
from depixcli.dataset import FORMAT_NAME, PrepareConfig, collect_inputs, load_crops, prepare
from depixcli.errors import ConfigError, InputError
from depixcli.geometry import CropBox, crop

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


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b) ** 2)
    return 10 * np.log10(255**2 / mse)


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
    assert psnr(tr.frames, ref) > 38  # near-lossless storage of the crops
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
    assert r.output.startswith("Skipped: ") and "cut.mp4" in r.output
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
    from depixcli.detect import DETECTORS

    p = {o.name: o.default for o in prepare_command.params}
    d = PrepareConfig()
    assert (p["size"], p["detector"], p["threshold"], p["detect_every"], p["detect_size"], p["min_track"]) == (
        d.size, d.detector, d.threshold, d.detect_every, d.max_side, d.min_track)
    assert (p["crf"], p["pix_fmt"], p["preset"], p["workers"]) == (d.crf, d.pix_fmt, d.preset, d.workers)
    assert set(DETECTOR_NAMES) == set(DETECTORS)
