"""`depix audit`'s second identity judge, dlib's ResNet descriptor (which no depix model trains on): its fields
in the JSON and the printed report, `--no-dlib`, a clean run without dlib, and the report of the two judges'
disagreement (generated clips, tiny model, CPU, offline)."""

import json
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from tests.audit.test_audit import _frames
from tests.audit.test_audit_report import _done, _report

from depixcli.audit.verdict import ATTACKS, REID_MIN_GALLERY, track_audits
from depixcli.cli import main
from depixcli.commands.audit_text import format_report
from depixcli.faces.identity import DLIB_THRESHOLD, load_dlib
from depixcli.io.synthetic import write_test_clip

N = 12  # frames of the clip
ABSENT = "dlib not used: package dlib-bin is not installed"


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """The moving astronaut clip (the anonymised "copy" is the clip itself: every attack matches) and a tiny
    model whose weights record an SFace identity loss."""
    from depixcli.model.config import ModelConfig
    from depixcli.model.nets import Depixelator
    from depixcli.model.weights import save_model

    d = tmp_path_factory.mktemp("dlib")
    write_test_clip(d / "clip.mp4", _frames(N), fps=25)
    tiny = ModelConfig(arch="compact", use_stn=False, compact_width=8, compact_blocks=1, window=1, stride=2)
    save_model(d / "tiny.safetensors", Depixelator(tiny), {"train": {"config": {"w_identity": 0.005}}})
    return d


def _audit(d, name, *extra):
    out = d / f"{name}.json"
    res = CliRunner().invoke(main, ["audit", str(d / "clip.mp4"), "--original", str(d / "clip.mp4"), "-q",
                                    "-w", str(d / "tiny.safetensors"), "--frames", "4", "--no-recommend",
                                    "--json", str(out), *extra])
    assert res.exit_code == 0, res.output
    assert "Traceback" not in res.output
    return json.loads(out.read_text()), res.output


def test_dlib_fields_in_json_and_text(clip):
    """With dlib installed the JSON carries, per track and attack, dlib's median distance, share of frames
    matched under 0.6 and re-id rank beside SFace's; the printed report shows the same numbers and says which
    judge is independent of the model's training."""
    pytest.importorskip("dlib", reason="dlib extra not installed")  # scripts/install.sh (and CI) install it
    pytest.importorskip("face_recognition_models", reason="dlib extra not installed")
    assert load_dlib()[0] is not None, load_dlib()[1]  # installed but unusable (weights missing): a failure
    rep, text = _audit(clip, "with")
    assert rep["dlib"].startswith("dlib ") and rep["dlib_threshold"] == DLIB_THRESHOLD
    assert rep["sface_trained"] is True and rep["parameters"]["dlib"] is True
    t = rep["tracks"][0]
    d = t["dlib"]
    assert set(d) == set(ATTACKS) and set(d["anonymised"]) == {"median", "under", "matched", "min", "rank", "gallery"}
    assert d["anonymised"]["median"] < 0.05 and d["anonymised"]["matched"] == 1.0  # the face itself
    assert d["anonymised"]["rank"] == 1 and d["anonymised"]["gallery"] == len(rep["tracks"])
    assert t["dlib_featureless"] > DLIB_THRESHOLD  # a flat patch of the face's colour is nobody
    assert t["dlib_verdict"] == "leaks" and t["identity_verdict"] == "leaks" and t["judges_agree"] is True
    assert "Second identity judge: dlib " in text and "which no depix model trains on" in text
    assert "SFace was a training loss of the reconstruction model" in text
    row = next(line for line in text.splitlines() if line.lstrip().startswith(f"{t['id']} |"))
    assert "/".join(f"{d[a]['median']:.2f}" for a in ATTACKS) in row
    assert "/".join(f"{d[a]['matched']:.0%}" for a in ATTACKS) in row.replace(" ", "")
    assert "SFace and dlib disagree" not in text


def test_no_dlib_removes_the_dlib_fields(clip):
    rep, text = _audit(clip, "without", "--no-dlib")
    assert rep["dlib"] == "dlib not used (--no-dlib)" and rep["parameters"]["dlib"] is False
    assert "dlib_threshold" not in rep
    assert not [k for k in rep["tracks"][0] if "dlib" in k or k == "judges_agree"]
    assert text.count("dlib not used (--no-dlib)") == 1 and "median distance" not in text
    assert rep["tracks"][0]["identity_verdict"] == "leaks"  # SFace still judges


def test_absent_dlib_runs_as_before_and_says_so_once(clip, monkeypatch):
    """Without dlib (its import fails) the audit runs as with --no-dlib and says once why dlib was not used."""
    monkeypatch.setitem(sys.modules, "dlib", None)  # import dlib -> ImportError
    rep, text = _audit(clip, "absent")
    assert rep["dlib"].startswith(ABSENT) and "\n" not in rep["dlib"]
    assert text.count(ABSENT) == 1
    assert "dlib_threshold" not in rep and "dlib" not in rep["tracks"][0]
    t = rep["tracks"][0]
    assert t["verdict"] == "leaks" and t["scores"]["anonymised"]["matched"] == 1.0


def _with_dlib(done: dict, dist: float, null: float, frames: int = 10) -> dict:
    """`done` with dlib measurements: every attack at distance `dist` on every frame, the featureless face at
    `null`; the probes equal the track's own entry."""
    emb = np.random.default_rng(7).normal(size=128).astype(np.float32)
    emb /= np.linalg.norm(emb)
    done["dlib"] = {"dist": {a: [dist] * frames for a in ATTACKS}, "null": [null] * frames,
                    "probe": {a: emb for a in ATTACKS}, "probe_blank": -emb, "entry": emb}
    return done


def test_judges_disagreement_is_reported_and_the_verdict_stays_sface():
    others = np.random.default_rng(1).normal(size=(REID_MIN_GALLERY, 128)).astype(np.float32)
    # SFace holds (cosine 0.05), dlib matches every frame and re-identifies the person among 11
    t = track_audits([_with_dlib(_done(0.05), 0.3, 0.9)], None, dlib_photos=others)[0]
    assert t.verdict == "holds" and t.identity_verdict == "holds"
    assert t.dlib_verdict == "leaks" and t.judges_agree is False
    assert t.dlib["reconstructed"].rank == 1 and t.dlib["reconstructed"].gallery == REID_MIN_GALLERY + 1
    assert t.dlib["reconstructed"].matched == 1.0 and t.dlib["reconstructed"].median == pytest.approx(0.3)
    assert any("re-identified by dlib, rank 1 of 11" in r for r in t.dlib_reasons)
    rep = _report([t])
    text = format_report(rep)
    assert "SFace and dlib disagree: dlib, which the model never trained on, matches the person" in text
    assert "(disagree)" in text and "0.30/0.30/0.30" in text and "Track 0: dlib still matches the person" in text
    assert rep.to_dict()["tracks"][0]["judges_agree"] is False
    # SFace leaks (cosine 0.8), dlib far from the person on every frame
    t = track_audits([_with_dlib(_done(0.8), 0.9, 0.9)])[0]
    assert t.identity_verdict == "leaks" and t.dlib_verdict == "holds" and t.judges_agree is False
    assert "dlib, which the model never trained on, does not match the person" in format_report(_report([t]))
    # frames under 0.6 where the featureless face is under 0.6 too are no match
    t = track_audits([_with_dlib(_done(0.05), 0.3, 0.4)])[0]
    assert t.dlib["anonymised"].under == 1.0 and t.dlib["anonymised"].matched == 0.0
    assert t.dlib_verdict == "holds" and t.judges_agree is True
    text = format_report(_report([t]))
    assert "SFace and dlib disagree" not in text and "(disagree)" not in text
