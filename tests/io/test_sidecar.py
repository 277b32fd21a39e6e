"""The one `--boxes` sidecar format (`depixcli.io.sidecar`): what `depix pixelate` writes, `depix run --boxes`
reads, with the same versions accepted on both sides."""

import json

import numpy as np
import pytest

from depixcli.geometry.mosaic import MosaicGrid, grid_from_blocks
from depixcli.io.sidecar import SIDECAR_VERSION, SidecarError, face_spans, read_sidecar, write_sidecar

BOX = (10.0, 20.0, 50.0, 70.0)


def doc(frames=4, **extra):
    grid = grid_from_blocks(BOX, 8).to_dict()
    face = {"track": 0, "box": list(BOX), "filled": False, "grid": grid}
    return {"width": 160, "height": 120, "frame_count": frames, "tracks": [],
            "frames": [{"index": t, "pts": t, "faces": [face]} for t in range(frames)]} | extra


def test_written_sidecar_reads_back(tmp_path):
    path = tmp_path / "s.json"
    write_sidecar(path, doc())
    back = read_sidecar(path, (160, 120), 4)
    assert back["version"] == SIDECAR_VERSION == 1
    face = back["frames"][2]["faces"][0]
    assert isinstance(face["grid"], MosaicGrid) and face["grid"] == grid_from_blocks(BOX, 8)
    assert face["box"].dtype == np.float64 and tuple(face["box"]) == BOX
    spans = face_spans(back)
    assert [(s[0], len(s[1]), len(s[2])) for s in spans] == [(0, 4, 4)]


@pytest.mark.parametrize("version", [0, -1, 2, "1", 1.0, True, None])
def test_other_versions_are_refused(tmp_path, version):
    path = tmp_path / "s.json"
    path.write_text(json.dumps(doc() | {"version": version}))
    with pytest.raises(SidecarError, match=r"sidecar version .*; this depix reads 1 to 1"):
        read_sidecar(path)


@pytest.mark.parametrize("size, frames, says", [((320, 240), None, "made for a 160x120 video, this one is 320x240"),
                                                (None, 5, "made for a video of 4 frames, this one has 5")])
def test_sidecar_of_another_video_is_refused(tmp_path, size, frames, says):
    path = tmp_path / "s.json"
    write_sidecar(path, doc())
    with pytest.raises(SidecarError, match=says):
        read_sidecar(path, size, frames)


def test_missing_and_malformed_sidecars(tmp_path):
    with pytest.raises(SidecarError, match="file not found"):
        read_sidecar(tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    write_sidecar(bad, doc() | {"frames": [{"index": 0, "faces": [{"track": 0, "box": [1, 2]}]}]})
    with pytest.raises(SidecarError, match="bad frame entry"):
        read_sidecar(bad)
