"""`depix run --boxes`: a sidecar made for another video (size or frame count) is refused with one line; this
video's sidecar is used as it records the faces."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from depixcli.cli import main
from depixcli.io.synthetic import write_test_clip
from depixcli.io.video import probe
from depixcli.model.nets import Depixelator
from depixcli.model.weights import save_model
from tests.synthetic import TINY

skimage_data = pytest.importorskip("skimage.data")


def face_clip(path, n, size):
    """skimage's astronaut head on grey, `size` = (w, h) px, n frames."""
    import cv2

    w, h = size
    head = cv2.resize(skimage_data.astronaut()[10:270, 110:340], (92, 104), interpolation=cv2.INTER_AREA)
    frames = []
    for t in range(n):
        f = np.full((h, w, 3), 100, np.uint8)
        f[(h - 104) // 2:(h - 104) // 2 + 104, 20 + 2 * t:112 + 2 * t] = head
        frames.append(f)
    write_test_clip(path, frames)
    return path


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A pixelated 224x160, 10-frame clip, its sidecar, and tiny weights."""
    d = tmp_path_factory.mktemp("boxes")
    runner = CliRunner()
    r = runner.invoke(main, ["pixelate", str(face_clip(d / "a.mp4", 10, (224, 160))), "-o", str(d / "pix.mp4"),
                             "--boxes-out", str(d / "a.json"), "--blocks", "8", "-q"])
    assert r.exit_code == 0, r.output
    torch.manual_seed(0)
    save_model(d / "tiny.safetensors", Depixelator(TINY), {})
    return d


def run(made, video, out, *extra):
    return CliRunner().invoke(main, ["run", str(video), "-o", str(out), "--boxes", str(made / "a.json"),
                                     "-w", str(made / "tiny.safetensors"), "--device", "cpu", "-q",
                                     *(str(x) for x in extra)])


@pytest.mark.parametrize("n, size, says", [(10, (320, 240), "made for a 224x160 video, this one is 320x240"),
                                           (14, (224, 160), "made for a video of 10 frames, this one has 14"),
                                           (6, (224, 160), "made for a video of 10 frames, this one has 6")])
def test_sidecar_of_another_video_is_refused(made, tmp_path, n, size, says):
    other = face_clip(tmp_path / "other.mp4", n, size)
    r = run(made, other, tmp_path / "out.mp4")
    assert r.exit_code == 1, r.output
    assert r.output.startswith("Error: --boxes") and len(r.output.strip().splitlines()) == 1
    assert says in r.output and not (tmp_path / "out.mp4").exists()


def test_sidecar_of_this_video_is_used(made, tmp_path):
    """The sidecar's one face track is restored on its 10 frames, with the grid it records (8 x 8 blocks)."""
    r = run(made, made / "pix.mp4", tmp_path / "out.mp4", "--json", tmp_path / "run.json")
    assert r.exit_code == 0, r.output
    stats = json.loads((tmp_path / "run.json").read_text())
    assert stats["source"] == "boxes" and not stats["copied"] and stats["tracks"] == 1
    assert stats["frames"] == stats["frames_with_faces"] == stats["stacks"] == 10
    assert stats["mosaics"][0]["face_blocks"] == pytest.approx(8 / 1.3, abs=0.2)  # 8 blocks over 1.3 x the face
    assert probe(tmp_path / "out.mp4").frames == 10


@pytest.mark.parametrize("version", [0, 2])
def test_run_reads_the_sidecar_versions_pixelate_writes(made, tmp_path, version):
    """`depix run --boxes` and `depix pixelate` share one reader (`io.sidecar`): a version other than 1 is refused
    (run used to take any version up to 1, 0 included), with the flag named by the CLI."""
    doc = json.loads((made / "a.json").read_text()) | {"version": version}
    (tmp_path / "v.json").write_text(json.dumps(doc))
    r = CliRunner().invoke(main, ["run", str(made / "pix.mp4"), "-o", str(tmp_path / "out.mp4"), "--boxes",
                                  str(tmp_path / "v.json"), "-w", str(made / "tiny.safetensors"), "-q"])
    assert r.exit_code == 1 and r.output.strip().splitlines() == [
        f"Error: --boxes {tmp_path / 'v.json'}: sidecar version {version}; this depix reads 1 to 1"]
    assert not (tmp_path / "out.mp4").exists()
