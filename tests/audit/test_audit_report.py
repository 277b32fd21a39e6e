"""`depix audit`'s verdicts and report from given measurements (no video): unreliable original faces are not
judged, the sentences and the table show the same numbers, a tiny gallery is not called a re-identification,
the sheet is a grid with a legend, and the coverage measure tells a re-encoded face from hidden ones."""

from types import SimpleNamespace

import numpy as np
import pytest

from depixcli.audit.report import contact_sheet, csv_rows
from depixcli.audit.verdict import (
    ATTACKS,
    REID_MIN_GALLERY,
    AuditReport,
    MosaicAnalysis,
    track_audits,
    unreliable_reasons,
)
from depixcli.commands.audit_text import format_report
from depixcli.exposure import FrameExposure, coverage, exposed_ranges, face_patch, frame_kind

GOOD = {"score": 0.95, "self_cosine": 0.9, "contrast": 40.0, "detail": 1.0}


def _done(cos: float, quality=GOOD, face_px=120.0, covers=(1.0,) * 10, track_id=0):
    """A `_finish` result: every attack scores `cos` on 10 frames; `covers`: coverage per frame."""
    rng = np.random.default_rng(track_id)
    frames = [FrameExposure(i, i * 0.04, c, cos, cos > 0.5) for i, c in enumerate(covers)]
    plan = SimpleNamespace(track=SimpleNamespace(id=track_id, frames=np.arange(len(covers))), score=list(range(10)),
                           timeline=SimpleNamespace(frames=frames, worst=None))
    emb = rng.normal(size=128).astype(np.float32)
    return {"plan": plan, "cos": {a: [cos] * 10 for a in ATTACKS}, "excess": {a: [cos - 0.1] * 10 for a in ATTACKS},
            "null": 0.1, "mosaic": MosaicAnalysis(1.0, [5.0, 5.0], 16.0, 12.3, "face", 1, "means", [1.0, 5.0]),
            "face_px": face_px, "probe": {a: emb for a in ATTACKS}, "probe_blank": -emb, "entry": emb,
            "worst": (cos, 0, None), "quality": dict(quality), "ladder": []}


@pytest.mark.parametrize("change,cause", [
    ({"score": 0.6}, "detector is unsure"), ({"contrast": 4.0}, "too dark or flat"),
    ({"detail": 0.2}, "too blurred"), ({"self_cosine": 0.3}, "does not recognise the original face"),
    ({}, "only 30 px wide")])
def test_unreliable_original_is_not_judged(change, cause):
    """Crowd faces (small, dark, blurred, unsure, or not even matching themselves) are not judged, not leaks,
    even when every attack scores high; an uncovered frame still leaks."""
    done = _done(0.8, {**GOOD, **change}, face_px=30.0 if not change else 120.0)
    t = track_audits([done])[0]
    assert t.verdict == "not judged" and t.identity_verdict == "not judged" and cause in " ".join(t.unreliable)
    assert any(cause in r for r in t.reasons) and not t.exposed
    t = track_audits([_done(0.8, {**GOOD, **change}, face_px=30.0 if not change else 120.0,
                            covers=(1.0,) * 4 + (0.0,) + (1.0,) * 5)])[0]
    assert t.verdict == "leaks"
    assert [(r.start_frame, r.end_frame, r.kinds) for r in t.exposed] == [(4, 4, ["uncovered"])]
    assert unreliable_reasons(GOOD, 120.0) == []
    assert track_audits([_done(0.8)])[0].verdict == "leaks"  # a reliable face that matches leaks


def _report(tracks, **kw):
    return AuditReport("anon.mp4", "orig.mp4", 320, 240, 10, "w", 0, tracks, "leaks", ["r"], fps=25.0, **kw)


def test_table_and_sentences_agree_and_rank_caveat():
    done = _done(0.8)
    for a in ("smoothed", "reconstructed"):
        done["cos"][a] = [0.8] * 6 + [0.1] * 4  # 60 % matched, 60 % above
        done["excess"][a] = [0.7] * 6 + [0.0] * 4
    done["cos"]["anonymised"] = [0.4] * 7 + [0.1] * 3  # 70 % above 0.363 but only ...
    done["excess"]["anonymised"] = [0.05] * 7 + [0.0] * 3  # ... 0 % clearly above featureless
    t = track_audits([done])[0]
    text = format_report(_report([t]))
    assert "12.3 blocks across the face" in text and "16.0" not in text  # one measure of blocks
    table = text[text.index("Measurements:"):text.index("What to do:")]
    assert "12.3" in table and "0%/60%/60%" in table.replace(" ", "") and "70%" not in text
    assert "60% of the scored frames match" in text
    assert "not tested" in table and "rank 1 of 1" not in text and f"at least {REID_MIN_GALLERY - 1} other" in text
    lines = text.splitlines()
    assert lines[2].startswith("Track 0 (") and "LEAKS" in lines[2] and "What to do:" in text
    assert "pseudonymised" not in text and "cannot judge" in text


def test_holds_is_pseudonymised_unless_confirmed():
    t = track_audits([_done(0.05)])[0]
    assert t.verdict == "holds"
    rep = _report([t])
    rep.verdict, rep.reasons = "holds", ["1 of 1 face track(s) hold"]
    assert "pseudonymised, not anonymised" in format_report(rep)
    rep.confirmed = True
    assert "pseudonymised" not in format_report(rep) and "confirmed" in format_report(rep)
    rows = csv_rows(rep)
    assert len(rows) == 1 and rows[0]["found"] == "no exposed frame" and rows[0]["verdict"] == "holds"


def test_contact_sheet_grid_with_legend():
    """Eleven tracks: a grid of three columns of cards (not one tall column), larger faces, legend on top."""
    tracks = []
    for i in range(11):
        t = track_audits([_done(0.8 if i % 2 else 0.05, track_id=i)])[0]
        t.sheet = {k: np.full((128, 128, 3), 60 * j, np.uint8) for j, k in
                   enumerate(("original", "anonymised", "reconstructed"))} | {"cosines": [0.1, 0.2, 0.3]}
        tracks.append(t)
    sheet = contact_sheet(_report(tracks))
    assert sheet.shape[1] > 2000 and sheet.shape[0] < 1600, sheet.shape  # was 576 x 2,750 for 11 tracks
    assert (sheet[:60] < 128).any()  # legend text


def test_recommendation_is_the_finest_ladder_step_that_holds():
    from depixcli.audit.verdict import recommend

    ladder = [{"blocks": n, "verdict": v, "median": {a: 0.1 for a in ATTACKS}, "matched": {}, "why": w}
              for n, v, w in ((16, "leaks", "reconstructed: median cosine 0.50"), (12, "leaks", "x"),
                              (8, "holds", ""), (6, "holds", ""), (4, "holds", ""))]
    rec = recommend(ladder)
    assert rec["blocks"] == 8 and rec["command"] == "depix pixelate --blocks 8"
    assert recommend([{**r, "verdict": "leaks"} for r in ladder])["command"] == "depix pixelate --secure"
    t = track_audits([_done(0.8)])[0]
    t.recommendation = rec
    assert "at most 8 blocks" in format_report(_report([t]))


def test_coverage_of_hidden_and_shown_faces():
    """A face re-encoded as is shows (coverage ~0); mosaic, blur and fill hide it (~1); half a fill ~half."""
    import cv2
    import skimage.data

    from depixcli.geometry.mosaic import apply_mosaic, grid_from_blocks
    from depixcli.io.encode import h264_roundtrip

    face = cv2.resize(skimage.data.astronaut()[20:220, 150:330], (120, 130))
    frame = np.full((200, 200, 3), 90, np.uint8)
    frame[30:160, 40:160] = face
    box = (60.0, 50.0, 140.0, 150.0)
    orig = face_patch(h264_roundtrip(frame, 18), box)
    mosaic = apply_mosaic(frame, grid_from_blocks(box, 12))
    blur = frame.copy()
    blur[50:150, 60:140] = cv2.blur(frame[50:150, 60:140], (26, 26))
    half = frame.copy()
    half[50:100, 60:140] = 0
    got = {k: coverage(orig, face_patch(h264_roundtrip(v, 28), box)) for k, v in
           {"same": frame, "mosaic": mosaic, "blur": blur, "half": half}.items()}
    assert got["same"] <= 0.1 and got["mosaic"] >= 0.9 and got["blur"] >= 0.9 and 0.3 < got["half"] < 0.7, got
    assert coverage(np.full((64, 64), 20, np.float32), orig) is None  # a flat (dark) face is not judged
    assert [frame_kind(c, False) for c in (0.05, 0.5, 0.95, None)] == ["uncovered", "partly covered", None, None]
    fe = [FrameExposure(i, i / 25, c, None, False) for i, c in enumerate([1, 0, 0, 1, 0.5, 1])]
    ranges = exposed_ranges(0, fe, 0.04)
    assert [(r.start_frame, r.end_frame, r.seconds) for r in ranges] == [(1, 2, 0.08), (4, 4, 0.04)]
