"""Fail-secure masks of `depix pixelate`: detection gaps and the frames just before / after a track are masked."""

import json

import numpy as np
from click.testing import CliRunner
from tests.audit.test_audit import HEAD, _frames, _head_xy

from depixcli.cli import main
from depixcli.faces.track import build_tracks
from depixcli.io.synthetic import write_test_clip
from depixcli.io.video import read_frames
from depixcli.secure import fail_secure

N = 24  # frames (the face leaves the frame after that)
HIDDEN = set(range(0, 3)) | set(range(8, 22))  # frames where the face is upside down: YuNet misses it


def _clip(path):
    frames = []
    for i, img in enumerate(_frames(N)):
        if i in HIDDEN:
            x, y = _head_xy(i)
            img[y:y + HEAD[1], x:x + HEAD[0]] = img[y:y + HEAD[1], x:x + HEAD[0]][::-1].copy()
        frames.append(img)
    write_test_clip(path, frames, fps=25)


def test_fail_secure_tracks_pad_and_bridge():
    box = np.array([10.0, 10.0, 50.0, 50.0, 0.9])
    per_frame = [[box + [i, 0, i, 0, 0]] if 5 <= i < 20 or 40 <= i < 60 else [] for i in range(80)]
    tracks = build_tracks(per_frame)
    assert [(int(t.frames[0]), int(t.frames[-1])) for t in tracks] == [(5, 19), (40, 59)]  # a 20-frame gap
    out = fail_secure(tracks, 80, 25.0, pad_s=0.2, bridge_s=1.0)
    assert [(int(t.frames[0]), int(t.frames[-1])) for t in out] == [(0, 44), (35, 64)]
    assert all(np.all(np.diff(t.frames) == 1) for t in out) and out[0].filled[-25:].all()
    a, b = tracks[0].boxes[-1], tracks[1].boxes[0]  # frame 30 of the gap: interpolated between them
    assert np.allclose(out[0].boxes[int(np.flatnonzero(out[0].frames == 30)[0])], a + (30 - 19) / (40 - 19) * (b - a))
    far = build_tracks([[box + [300 * (i >= 40), 0, 300 * (i >= 40), 0, 0]] if 5 <= i < 20 or 40 <= i < 60 else []
                        for i in range(80)])
    assert [(int(t.frames[0]), int(t.frames[-1])) for t in fail_secure(far, 80, 25.0, 0.0, 1.0)] == [(5, 19), (40, 59)]


def test_pixelate_masks_missed_faces(tmp_path):
    """Faces the detector misses (upside down) for 3 frames at the start and 14 in the middle are masked by
    default, and left uncovered with --pad 0 --bridge 0."""
    _clip(tmp_path / "clip.mp4")
    orig = [f.image.astype(int) for f in read_frames(tmp_path / "clip.mp4")]
    changed = {}
    for name, extra in (("secure", []), ("plain", ["--pad", "0", "--bridge", "0"])):
        res = CliRunner().invoke(main, ["pixelate", str(tmp_path / "clip.mp4"), "-o", str(tmp_path / f"{name}.mp4"),
                                        "-q", "--boxes-out", str(tmp_path / f"{name}.json"), *extra])
        assert res.exit_code == 0, res.output
        out = [f.image.astype(int) for f in read_frames(tmp_path / f"{name}.mp4")]
        face = []
        for i, (a, b) in enumerate(zip(orig, out)):
            x, y = _head_xy(i)
            face.append(np.abs(a - b)[y + 40:y + 110, x + 40:x + 100].mean())
        changed[name] = {i for i, v in enumerate(face) if v > 8}
        side = json.loads((tmp_path / f"{name}.json").read_text())
        assert len(side["frames"]) == N
    assert changed["secure"] == set(range(N)), sorted(set(range(N)) - changed["secure"])
    assert HIDDEN - changed["plain"] == HIDDEN  # without it, every missed frame shows the face
