"""`depix pixelate` through the CLI on generated clips: geometry, sidecar, audio, bad inputs."""

import json
import os

import cv2
import numpy as np
import pytest
import skimage.data
from click.testing import CliRunner

from depixcli.cli import main
from depixcli.errors import InputError
from depixcli.geometry.mosaic import MosaicGrid, apply_mosaic, clipped_rect
from depixcli.io.sidecar import read_sidecar
from depixcli.io.synthetic import write_test_clip
from depixcli.io.video import probe, read_frames
from tests.io.test_video import assert_timing_and_audio_kept

N_FRAMES = 20
W, H = 320, 240  # px


def _frames(face=True, n=N_FRAMES):
    """A real face photo (scikit-image's astronaut) moving over a photo background."""
    bg = cv2.resize(skimage.data.coffee(), (W, H), interpolation=cv2.INTER_AREA)
    head = cv2.resize(skimage.data.astronaut()[0:300, 100:380], (140, 150), interpolation=cv2.INTER_AREA)
    for i in range(n):
        img = bg.copy()
        if face:
            x, y = 40 + 5 * (i % 20), 40 + 2 * (i % 20)
            img[y:y + 150, x:x + 140] = head
        yield img


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("pix") / "face.mp4"
    write_test_clip(path, _frames(), fps=25, audio=True)
    return path


@pytest.fixture(scope="module")
def pixelated(clip, tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "face_pix.mp4"
    side = out.with_suffix(".json")
    res = CliRunner().invoke(main, ["pixelate", str(clip), "-o", str(out), "--boxes-out", str(side)])
    assert res.exit_code == 0, res.output
    return out, side, res


def test_frames_fps_audio_kept(clip, pixelated):
    out, _, res = pixelated
    a, b = probe(clip), probe(out)
    assert b.frames == a.frames == N_FRAMES and b.fps == a.fps and (b.width, b.height) == (W, H)
    assert b.has_audio
    assert_timing_and_audio_kept(clip, out)
    assert "20 frames, 1 face track in " in res.output


def test_face_mosaicked_background_untouched(clip, pixelated):
    out, side, _ = pixelated
    data = read_sidecar(side)
    assert len(data["frames"]) == N_FRAMES and len(data["tracks"]) == 1
    for src, dst, rec in zip(read_frames(clip), read_frames(out), data["frames"]):
        assert rec["index"] == src.index and len(rec["faces"]) == 1
        grid = rec["faces"][0]["grid"]
        x0, y0, x1, y1 = clipped_rect(grid, (H, W))
        a, b = src.image.astype(int), dst.image.astype(int)
        inside = np.zeros((H, W), bool)
        inside[y0:y1, x0:x1] = True
        # face region changed; mosaic cells constant up to codec noise; it equals the mosaic of the source
        assert np.abs(a - b)[inside].mean() > 8
        ideal = apply_mosaic(src.image, grid).astype(int)
        assert np.abs(ideal - b)[inside].mean() < 5  # 4 px cells: 4:2:0 chroma blurs their edges
        assert np.abs(ideal - a)[inside].mean() > 3 * np.abs(ideal - b)[inside].mean()
        # background untouched up to codec noise (a few pixels of ringing next to the mosaic border)
        ring = np.zeros((H, W), bool)
        ring[max(y0 - 4, 0):y1 + 4, max(x0 - 4, 0):x1 + 4] = True
        assert np.abs(a - b)[~ring].mean() < 2.5
        # the mosaic covers the astronaut's eyes-to-mouth area (the photo moves by 5 px, 2 px per frame)
        fx, fy = 40 + 5 * src.index, 40 + 2 * src.index
        assert x0 <= fx + 45 and x1 >= fx + 80 and y0 <= fy + 40 and y1 >= fy + 80


def test_sidecar_schema(pixelated):
    out, side, _ = pixelated
    raw = json.loads(side.read_text())
    assert raw["version"] == 1 and raw["frame_count"] == N_FRAMES and raw["fps"] == "25"
    assert raw["config"] == {"blocks": 16, "block_size": None, "mode": "mean", "scale": 1.3, "detector": "yunet",
                             "threshold": None}
    face = raw["frames"][3]["faces"][0]
    g = MosaicGrid.from_dict(face["grid"])
    bx0, by0, bx1, by1 = face["box"]
    assert g.x1 - g.x0 == pytest.approx(1.3 * (bx1 - bx0), abs=1.5) and g.cell_w == pytest.approx((g.x1 - g.x0) / 16)
    assert raw["frames"][3]["pts"] is not None and face["filled"] is False


def test_block_size_grid_is_image_anchored(clip, tmp_path):
    out, side = tmp_path / "bs.mp4", tmp_path / "bs.json"
    res = CliRunner().invoke(main, ["pixelate", str(clip), "-o", str(out), "--block-size", "8", "--value", "center",
                                    "--boxes-out", str(side), "-q", "--crf", "10", "--preset", "ultrafast"])
    assert res.exit_code == 0, res.output
    assert res.output == ""  # --quiet
    for rec in read_sidecar(side)["frames"]:
        g = rec["faces"][0]["grid"]
        assert (g.cell_w, g.origin_x, g.mode) == (8.0, 0.0, "center")
        assert g.x0 % 8 == 0 and g.y0 % 8 == 0 and g.x1 % 8 == 0 and g.y1 % 8 == 0


def test_no_faces_writes_video_unchanged(tmp_path):
    src = tmp_path / "empty.mp4"
    write_test_clip(src, _frames(face=False, n=8), fps=30)
    out = tmp_path / "empty_out.mp4"
    res = CliRunner().invoke(main, ["pixelate", str(src), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "no faces found" in res.output
    assert probe(out).frames == 8
    for a, b in zip(read_frames(src), read_frames(out)):
        assert np.abs(a.image.astype(int) - b.image.astype(int)).mean() < 3.0  # codec noise only


def test_many_inputs_to_directory(clip, tmp_path):
    src2 = tmp_path / "other.mp4"
    write_test_clip(src2, _frames(n=6), fps=25)
    outdir, boxdir = tmp_path / "outs", tmp_path / "boxes"
    res = CliRunner().invoke(main, ["pixelate", str(clip), str(src2), "-o", str(outdir), "--boxes-out", str(boxdir),
                                    "--blocks", "8", "--preset", "ultrafast"])
    assert res.exit_code == 0, res.output
    assert sorted(os.listdir(outdir)) == ["depix-batch.jsonl", "face.mp4", "other.mp4"]  # + result manifest
    assert sorted(os.listdir(boxdir)) == ["face.json", "other.json"]
    assert probe(outdir / "other.mp4").frames == 6
    assert read_sidecar(boxdir / "face.json")["frames"][0]["faces"][0]["grid"].cell_w > 0


def test_output_names_in_a_directory(tmp_path):
    from depixcli.pixelate import plan_outputs

    for name in ("a.mp4", "b.mpg", "c.mkv"):
        (tmp_path / name).write_bytes(b"x")  # only listed here, never decoded
    plan = plan_outputs([str(tmp_path / n) for n in ("a.mp4", "b.mpg", "c.mkv")], str(tmp_path / "o"),
                        str(tmp_path / "j"))
    assert [(os.path.basename(o), os.path.basename(j)) for _, o, j in plan] == [
        ("a.mp4", "a.json"), ("b.mp4", "b.json"), ("c.mkv", "c.json")]
    assert (tmp_path / "o").is_dir() and (tmp_path / "j").is_dir()
    (tmp_path / "b.mp4").write_bytes(b"x")
    with pytest.raises(InputError):  # b.mpg and b.mp4 would both write o/b.mp4
        plan_outputs([str(tmp_path / "b.mpg"), str(tmp_path / "b.mp4")], str(tmp_path / "o"))


def _no_leftovers(directory):
    return [p for p in os.listdir(directory) if "depix-tmp" in p]


def test_bad_inputs(clip, tmp_path):
    runner = CliRunner()
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    truncated = tmp_path / "trunc.mp4"
    truncated.write_bytes(clip.read_bytes()[: clip.stat().st_size // 3])
    cases = [
        ([str(tmp_path / "missing.mp4"), "-o", str(tmp_path / "o1.mp4")], tmp_path / "o1.mp4"),
        ([str(text), "-o", str(tmp_path / "o2.mp4")], tmp_path / "o2.mp4"),
        ([str(truncated), "-o", str(tmp_path / "o3.mp4")], tmp_path / "o3.mp4"),
        ([str(clip), "-o", str(tmp_path / "nodir" / "o4.mp4")], tmp_path / "nodir" / "o4.mp4"),
        ([str(clip), "-o", str(clip)], None),
    ]
    before = clip.read_bytes()
    for args, out in cases:
        res = runner.invoke(main, ["pixelate", *args, "-q"])
        assert res.exit_code == 1, (args, res.output)
        lines = res.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), res.output
        assert "Traceback" not in res.output
        if out is not None:
            assert not out.exists()
    assert clip.read_bytes() == before
    assert _no_leftovers(tmp_path) == [] and _no_leftovers(clip.parent) == []
    res = runner.invoke(main, ["pixelate", str(clip), "-o", str(tmp_path / "x.mp4"), "--blocks", "8",
                               "--block-size", "10"])
    assert res.exit_code == 2 and not (tmp_path / "x.mp4").exists()


def test_truncated_sidecar_not_left_on_failure(tmp_path):
    """A run that fails part-way (truncated input) leaves neither video nor sidecar."""
    src = tmp_path / "long.mp4"
    write_test_clip(src, _frames(n=60), fps=25)
    data = src.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.7)])
    res = CliRunner().invoke(main, ["pixelate", str(cut), "-o", str(tmp_path / "o.mp4"), "--boxes-out",
                                    str(tmp_path / "o.json"), "-q"])
    assert res.exit_code == 1 and res.output.startswith("Error: ")
    assert not (tmp_path / "o.mp4").exists() and not (tmp_path / "o.json").exists()
    assert _no_leftovers(tmp_path) == []


def test_detector_choices_match_library():
    from depixcli.commands.pixelate import DETECTOR_NAMES
    from depixcli.faces.detect import DETECTORS

    assert set(DETECTOR_NAMES) == set(DETECTORS)
