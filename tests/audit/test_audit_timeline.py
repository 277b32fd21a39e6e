"""`depix audit`'s leak timeline, --repair, --csv / JSON and plain report, on generated clips whose masks were
dropped at known frames (CPU, offline, tiny model). Anonymisers: depix pixelate, and deface's blur, mosaic and
solid fill (`exposure.other_tool`)."""

import csv
import hashlib
import json
import os

import numpy as np
import pytest
from click.testing import CliRunner
from tests.audit.test_audit import _frames

from depixcli.cli import main
from depixcli.io.synthetic import write_test_clip
from depixcli.io.video import probe, read_frames

N = 24  # frames
ONE, FIVE = [6], list(range(14, 19))  # frames left unmasked: one, and five in a row
DROPS = set(ONE + FIVE)
KINDS = ("pixelate", "blur", "mosaic", "fill")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """The clip, a tiny model, depix's pixelation of the clip with its boxes, and loaded models."""
    from depixcli.audit.verdict import AuditConfig
    from depixcli.faces.detect import load_detector
    from depixcli.faces.identity import SFaceIdentity
    from depixcli.io.sidecar import read_sidecar
    from depixcli.model.config import ModelConfig
    from depixcli.model.nets import Depixelator
    from depixcli.pixelate import pixelate_video
    from depixcli.model.reconstructor import load_reconstructor
    from depixcli.model.weights import save_model

    d = tmp_path_factory.mktemp("timeline")
    write_test_clip(d / "clip.mp4", _frames(N), fps=25, audio=True)
    tiny = ModelConfig(arch="compact", use_stn=False, compact_width=8, compact_blocks=1, window=1, stride=2)
    save_model(d / "tiny.safetensors", Depixelator(tiny), {"test": "audit"})
    pixelate_video(d / "clip.mp4", d / "pixelate.mp4", boxes_out=d / "boxes.json")
    side = read_sidecar(d / "boxes.json")
    boxes = [[f["box"] for f in fr["faces"]] for fr in side["frames"]]
    assert all(boxes), "the detector must find the face on every frame of the test clip"
    cfg = AuditConfig(weights=str(d / "tiny.safetensors"), frames=4, recommend=False, dlib=False)  # CLI: with dlib
    loaded = {"model": load_reconstructor(cfg.weights, "cpu"), "identity": SFaceIdentity(),
              "detector": load_detector("yunet")}
    return {"dir": d, "boxes": boxes, "cfg": cfg, "loaded": loaded}


def _anonymised(env, kind: str, drops=DROPS, name=None):
    """The clip anonymised by `kind`, with the original frames left in at `drops`."""
    from depixcli.exposure import other_tool

    d = env["dir"]
    out = d / (name or f"{kind}_{len(drops)}.mp4")
    if kind == "pixelate":
        anon = [f.image for f in read_frames(d / "pixelate.mp4")]
    else:
        anon = [other_tool(f.image, env["boxes"][f.index], kind) for f in read_frames(d / "clip.mp4")]
    orig = [f.image for f in read_frames(d / "clip.mp4")]
    write_test_clip(out, (orig[i] if i in drops else a for i, a in enumerate(anon)), fps=25, audio=True)
    return out


def _exposed(report) -> set[int]:
    return {f for t in report.tracks for r in t.exposed for f in range(r.start_frame, r.end_frame + 1)}


@pytest.mark.parametrize("kind", KINDS)
def test_dropped_masks_are_exactly_the_exposed_frames(env, kind):
    """Masks dropped for 1 frame and for 5 frames: exactly those frames are reported, in two ranges with the
    right times; the same anonymisation without drops reports none."""
    from depixcli.audit.video import audit_video

    report = audit_video(_anonymised(env, kind), env["dir"] / "clip.mp4", env["cfg"], **env["loaded"])
    assert _exposed(report) == DROPS, [r for t in report.tracks for r in t.exposed]
    ranges = [r for t in report.tracks for r in t.exposed]
    assert [(r.start_frame, r.end_frame) for r in ranges] == [(6, 6), (14, 18)]
    assert ranges[0].start == pytest.approx(0.24) and ranges[1].end == pytest.approx(0.72)
    assert ranges[1].seconds == pytest.approx(0.2) and ranges[0].seconds == pytest.approx(0.04)
    assert all(r.kinds[0] == "uncovered" for r in ranges)
    assert report.verdict == "leaks"
    clean = audit_video(_anonymised(env, kind, drops=set()), env["dir"] / "clip.mp4", env["cfg"], **env["loaded"])
    assert _exposed(clean) == set(), [r for t in clean.tracks for r in t.exposed]


def test_partly_covered_mask(env):
    """A mask that covers only the lower half of the face on frames 10-11 is reported as partly covered."""
    from depixcli.audit.video import audit_video
    from depixcli.exposure import other_tool

    d = env["dir"]
    frames = []
    for f in read_frames(d / "clip.mp4"):
        box = env["boxes"][f.index][0]
        if f.index in (10, 11):
            cy = (box[1] + box[3]) / 2
            box = np.array([box[0], cy + 0.25 * (box[3] - box[1]), box[2], box[3] + 0.2 * (box[3] - box[1])])
        frames.append(other_tool(f.image, [box], "fill"))
    write_test_clip(d / "half.mp4", frames, fps=25)
    report = audit_video(d / "half.mp4", d / "clip.mp4", env["cfg"], **env["loaded"])
    ranges = [r for t in report.tracks for r in t.exposed]
    assert [(r.start_frame, r.end_frame) for r in ranges] == [(10, 11)]
    assert ranges[0].kinds[0] == "partly covered" and 0.1 < ranges[0].min_cover < 0.9


def _cli(env, *args, exit_code=0):
    res = CliRunner().invoke(main, ["audit", *map(str, args), "--original", str(env["dir"] / "clip.mp4"), "-q",
                                    "-w", str(env["dir"] / "tiny.safetensors"), "--frames", "4", "--no-recommend"])
    assert res.exit_code == exit_code, res.output
    return res.output


def test_cli_timeline_csv_json_fail_on_leak(env):
    """The plain report leads with one sentence per track, lists the exposed ranges (mm:ss.fff, frames,
    seconds), ends with what to do; --csv has one line per range; the JSON carries both SHA-256, the
    parameters and the attacker model; --fail-on-leak exits 3."""
    d = env["dir"]
    anon = _anonymised(env, "blur", name="cli.mp4")
    text = _cli(env, anon, "--csv", d / "log.csv", "--json", d / "r.json", "--fail-on-leak", exit_code=3)
    lines = text.splitlines()
    assert lines[2].startswith("Track 0 (") and "LEAKS" in lines[2] and "exposed on 6 frame(s), 0.24 s" in lines[2]
    assert any("00:00.240 - 00:00.240" in ln and "6-6" in ln and "0.04" in ln for ln in lines)
    assert any("00:00.560 - 00:00.720" in ln and "14-18" in ln and "0.20" in ln for ln in lines)
    assert text.index("Leak timeline") < text.index("Measurements:") < text.index("What to do:")
    assert "--repair" in text and "cannot judge" in text and "rank 1 of 1" not in text
    rows = list(csv.DictReader((d / "log.csv").open()))
    assert [(r["start"], r["end"], r["start_frame"], r["end_frame"], r["verdict"]) for r in rows] == [
        ("00:00.240", "00:00.240", "6", "6", "exposed"), ("00:00.560", "00:00.720", "14", "18", "exposed")]
    assert rows[0]["found"].startswith("uncovered") and rows[0]["reason"]
    rep = json.loads((d / "r.json").read_text())
    assert rep["sha256"] == {"anonymised": hashlib.sha256(anon.read_bytes()).hexdigest(),
                             "original": hashlib.sha256((d / "clip.mp4").read_bytes()).hexdigest()}
    assert rep["parameters"]["frames"] == 4 and set(rep["attacker_model"]) >= {"anonymised", "reconstructed"}
    assert [r["start_frame"] for r in rep["tracks"][0]["exposed"]] == [6, 14]


def test_repair_masks_exposed_ranges_and_holds(env):
    """--repair: the copy audits as holding with no exposed frame; audio, frame count and timestamps kept;
    frames outside the masked ranges decode bit-exactly as before."""
    from depixcli.audit.video import audit_video

    d = env["dir"]
    anon = _anonymised(env, "mosaic", name="torepair.mp4")
    text = _cli(env, anon, "--repair", d / "fixed.mp4", "--json", d / "rep.json")
    assert "audited again: HOLDS" in text and "0 exposed frame(s)" in text
    rep = json.loads((d / "rep.json").read_text())
    assert rep["repair"]["verdict"] == "holds" and rep["repair"]["exposed_frames"] == 0
    again = audit_video(d / "fixed.mp4", d / "clip.mp4", env["cfg"], **env["loaded"])
    assert _exposed(again) == set() and again.verdict == "holds"
    a, f = probe(anon), probe(d / "fixed.mp4")
    assert f.has_audio and a.has_audio and f.frames == a.frames == N and f.fps == a.fps
    a_frames, f_frames = list(read_frames(anon)), list(read_frames(d / "fixed.mp4"))
    assert [x.pts for x in a_frames] == [x.pts for x in f_frames]
    masked = set(range(6 - 2, 6 + 3)) | set(range(14 - 2, 18 + 3))  # REPAIR_PAD frames around each range
    assert rep["repair"]["frames_masked"] == len(masked)
    for x, y in zip(a_frames, f_frames):
        diff = np.abs(x.image.astype(int) - y.image.astype(int))
        if x.index in masked:
            assert diff.max() > 20  # the face was masked
        else:
            assert diff.max() == 0, x.index  # nothing else changed: bit-exact


def test_window_start_duration(env):
    """--start / --duration audit only that part; frame numbers and times stay those of the whole video."""
    d = env["dir"]
    anon = _anonymised(env, "fill", name="window.mp4")
    text = _cli(env, anon, "--start", "0.4", "--duration", "0.4", "--json", d / "w.json")
    rep = json.loads((d / "w.json").read_text())
    assert rep["frames"] == 10 and rep["first_frame"] == 10
    assert [(r["start_frame"], r["end_frame"]) for r in rep["tracks"][0]["exposed"]] == [(14, 18)]
    assert "00:00.400-00:00.760" in text


def test_outputs_checked_before_the_analysis(env, tmp_path):
    """Every output path is checked up front, naming the real cause; nothing is written."""
    d = env["dir"]
    (tmp_path / "file.txt").write_text("x")
    cases = [("--json", tmp_path / "file.txt" / "r.json", "file.txt is a file, not a directory"),
             ("--csv", tmp_path / "no" / "r.csv", "does not exist"),
             ("--repair", d / "clip.mp4", "would overwrite the input"),
             ("--csv", tmp_path / "s.png", "given for two outputs")]
    for opt, path, cause in cases:
        res = CliRunner().invoke(main, ["audit", str(d / "pixelate.mp4"), "--original", str(d / "clip.mp4"),
                                        "--sheet", str(tmp_path / "s.png"), opt, str(path), "-w", "nope.safetensors"])
        assert res.exit_code == 1 and cause in res.output, res.output
        assert len(res.output.strip().splitlines()) == 1 and not (tmp_path / "s.png").exists()
    unwritable = "/sys" if os.geteuid() == 0 else tmp_path / "ro"  # root may write anywhere but in sysfs
    if os.geteuid() != 0:
        unwritable.mkdir()
        unwritable.chmod(0o555)
    res = CliRunner().invoke(main, ["audit", str(d / "pixelate.mp4"), "--original", str(d / "clip.mp4"),
                                    "--json", os.path.join(unwritable, "r.json"), "-w", "nope.safetensors"])
    assert res.exit_code == 1 and "cannot write in" in res.output, res.output
