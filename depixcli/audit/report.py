"""What `depix audit` writes for its reader, from one `audit.AuditReport`: the sentence per track, the CSV
redaction log, the JSON and the contact sheet (numbers are formatted once, by `shown`, so the sentences, the
printed report (`commands.audit_text`) and the sheet cannot disagree); and the check of the output paths.
"""
from __future__ import annotations

import csv
import io
import json
import os
import tempfile

import numpy as np
import cv2

from depixcli.audit.attacks import resize_square
from depixcli.audit.verdict import ATTACKS, REID_MIN_GALLERY, SFACE_THRESHOLD, AuditReport, TrackAudit, explain
from depixcli.faces.identity import DLIB_THRESHOLD
from depixcli.errors import OutputError
from depixcli.exposure import COVERED, clock
from depixcli.io.files import write_atomic

ATTACK_WORDS = {"anonymised": "the anonymised face as it is", "smoothed": "a smoothed copy of it",
                "reconstructed": "depix's reconstruction of it"}
SHORT_WORDS = {"anonymised": "as is", "smoothed": "smoothed", "reconstructed": "depix"}
KIND_WHY = {"uncovered": "nothing hides the face on these frames",
            "partly covered": f"less than {COVERED:.0%} of the face is hidden on these frames",
            "matching": "SFace matches the anonymised face as it is to the original on these frames"}
CSV_COLUMNS = ("track", "start", "end", "start_frame", "end_frame", "seconds", "found", "verdict", "reason")
SHEET_TILE = 224  # px, side of each face on the contact sheet
SHEET_PAD = 8  # px between tiles and cards
SHEET_HEAD = 44  # px, a card's title band
SHEET_LABEL = 36  # px, two label lines under the tiles
SHEET_BAR = 14  # px, the timeline bar at the bottom of a card
SHEET_COLUMNS = ((1, 1), (4, 2), (None, 3))  # (up to this many tracks, cards per row)
STATE_COLOURS = {  # RGB, the timeline bar
    "covered": (60, 170, 60), "uncovered": (220, 0, 0), "partly covered": (255, 140, 0),
    "matching": (170, 60, 200), "not judged": (170, 170, 170)}
VERDICT_COLOURS = {"leaks": (200, 0, 0), "holds": (0, 130, 0), "not judged": (110, 110, 110)}


def shown(t: TrackAudit) -> dict:
    """The numbers of a track exactly as every output shows them (one source for table, sentences, sheet)."""
    m, s = t.mosaic, t.scores
    g = s[ATTACKS[0]].gallery
    return {
        "span": f"{clock(t.first_time)}-{clock(t.last_time)}, frames {t.first_frame}-{t.last_frame}",
        "face_px": f"{t.face_px:.0f}",
        "face_blocks": f"{m.face_blocks:.1f}" if m.face_blocks is not None else "-",
        "block_px": f"{max(m.block_px):.1f}" if m.block_px else "-",
        "median": {a: f"{s[a].median:.2f}" for a in ATTACKS},
        "matched": {a: f"{s[a].matched:.0%}" for a in ATTACKS},
        "featureless": f"{t.featureless:.2f}",
        "rank": ({a: str(s[a].rank) for a in ATTACKS} if g >= REID_MIN_GALLERY else None),
        "gallery": g,
        "dlib": None if t.dlib is None else shown_dlib(t),
    }


def shown_dlib(t: TrackAudit) -> dict:
    """The second judge's numbers of a track (dlib used), formatted once as `shown` does SFace's."""
    d = t.dlib
    g = d[ATTACKS[0]].gallery
    return {
        "median": {a: f"{d[a].median:.2f}" for a in ATTACKS},
        "matched": {a: f"{d[a].matched:.0%}" for a in ATTACKS},
        "featureless": f"{t.dlib_featureless:.2f}",
        "rank": ({a: str(d[a].rank) for a in ATTACKS} if g >= REID_MIN_GALLERY else None),
        "gallery": g,
    }


def disagreement(t: TrackAudit) -> str:
    """One clause when SFace's identity verdict and dlib's call differ on a track (empty when they agree, or
    when either did not judge)."""
    if t.judges_agree is not False:
        return ""
    d = shown_dlib(t)
    if t.dlib_verdict == "leaks":
        a = max(ATTACKS, key=lambda k: (t.dlib[k].matched, -t.dlib[k].median))
        why = (f"{ATTACK_WORDS[a]}: median distance {d['median'][a]}, {d['matched'][a]} of the frames under "
               f"{DLIB_THRESHOLD}" + (f", rank {d['rank'][a]} of {d['gallery']}" if d["rank"] is not None else ""))
        return f"SFace and dlib disagree: dlib, which the model never trained on, matches the person ({why})"
    a = min(ATTACKS, key=lambda k: t.dlib[k].median)
    return (f"SFace and dlib disagree: dlib, which the model never trained on, does not match the person (lowest "
            f"median distance {d['median'][a]}, {SHORT_WORDS[a]}; same person under {DLIB_THRESHOLD})")


def _strongest(t: TrackAudit) -> str:
    return max(ATTACKS, key=lambda a: (t.scores[a].matched, t.scores[a].median))


def track_sentence(t: TrackAudit) -> str:
    """One plain sentence (or two) per track: who leaks, how strongly, why."""
    v = shown(t)
    head = f"Track {t.id} ({v['span']}, face {v['face_px']} px): {t.verdict.upper()}."
    parts = []
    if t.exposed:
        kinds = sorted({k for r in t.exposed for k in r.kinds}, key=["uncovered", "partly covered", "matching"].index)
        parts.append(f"the face is exposed on {t.exposed_frames} frame(s), {t.exposed_seconds:.2f} s in "
                     f"{len(t.exposed)} stretch(es) ({', '.join(kinds)})")
    if t.identity_verdict == "leaks":
        a = _strongest(t)
        sc = t.scores[a]
        text = (f"{ATTACK_WORDS[a]} still matches the person (median SFace cosine {v['median'][a]}, "
                f"{v['matched'][a]} of the scored frames match)")
        if v["rank"] is not None and sc.rank == 1 and t.featureless_rank != 1:
            text += f" and picks them out of {v['gallery']} faces"
        why = [r for r in explain(t.mosaic)]
        parts.append(text + (f", because: {'; '.join(why)}" if why else ""))
    if t.identity_verdict == "not judged":
        parts.append("the original face is not reliable enough to judge identity: " + "; ".join(t.unreliable))
    if t.verdict == "holds":
        a = max(ATTACKS, key=lambda k: t.scores[k].median)
        parts.append(f"no frame is exposed and no attack recognises the person (highest median cosine "
                     f"{v['median'][a]}, {SHORT_WORDS[a]}; a featureless face scores {v['featureless']})")
    if disagreement(t):
        parts.append(disagreement(t))
    text = "; ".join(parts)
    return f"{head} {text[:1].upper()}{text[1:]}." if text else head


# ------------------------------------------------------------------------------------------ files
def write_json(report: AuditReport, path) -> None:
    write_atomic(path, (json.dumps(report.to_dict(), indent=1) + "\n").encode())


def csv_rows(report: AuditReport) -> list[dict]:
    """The redaction log: one row per exposed range, and one per track without any."""
    rows = []
    for t in report.tracks:
        reason = track_sentence(t).split(": ", 1)[1]
        for r in t.exposed:
            rows.append({"track": t.id, "start": clock(r.start), "end": clock(r.end), "start_frame": r.start_frame,
                         "end_frame": r.end_frame, "seconds": f"{r.seconds:.3f}", "found": r.describe(),
                         "verdict": "exposed", "reason": "; ".join(KIND_WHY[k] for k in r.kinds)})
        if not t.exposed:
            rows.append({"track": t.id, "start": clock(t.first_time), "end": clock(t.last_time),
                         "start_frame": t.first_frame, "end_frame": t.last_frame, "seconds": "0.000",
                         "found": "no exposed frame", "verdict": t.verdict, "reason": reason})
    return rows


def write_csv(report: AuditReport, path) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(csv_rows(report))
    write_atomic(path, buf.getvalue().encode())


def _text(img, s, xy, scale=0.5, colour=(0, 0, 0), thick=1):
    cv2.putText(img, s, xy, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, thick, cv2.LINE_AA)


def _tile(crop) -> np.ndarray:
    if crop is None:
        t = np.full((SHEET_TILE, SHEET_TILE, 3), 235, np.uint8)
        return t
    return resize_square(crop, SHEET_TILE)


def _card(t: TrackAudit) -> np.ndarray:
    """One track: title, original | anonymised | depix reconstruction (frame that leaks most) | worst exposed
    frame, their labels, and the timeline bar."""
    T, P = SHEET_TILE, SHEET_PAD
    w = 4 * T + 5 * P
    h = SHEET_HEAD + T + SHEET_LABEL + SHEET_BAR + 2 * P
    card = np.full((h, w, 3), 255, np.uint8)
    _text(card, f"Track {t.id}: {t.verdict.upper()}", (P, 20), 0.65, VERDICT_COLOURS[t.verdict], 2)
    _text(card, f"{clock(t.first_time)}-{clock(t.last_time)}  frames {t.first_frame}-{t.last_frame}  "
                f"face {t.face_px:.0f} px", (P, 38), 0.42, (60, 60, 60))
    sh, ex = t.sheet or {}, t.sheet_exposed
    c = sh.get("cosines", [float("nan")] * 3)
    dl = sh.get("dlib")
    tiles = [sh.get("original"), sh.get("anonymised"), sh.get("reconstructed"), ex["anonymised"] if ex else None]
    labels = [("original", f"frame {t.worst_frame}"), ("anonymised", f"as is {c[0]:.2f}, smoothed {c[1]:.2f}"),
              ("depix reconstruction", f"cosine {c[2]:.2f}" + (f", dlib {dl[2]:.2f}" if dl else "")),
              (f"worst exposed: frame {ex['frame']}", next((r.describe().split(" (")[0] for r in t.exposed
                                                           if r.start_frame <= ex["frame"] <= r.end_frame), ""))
              if ex else ("no exposed frame", "")]
    y = SHEET_HEAD
    for j, (tile, (l1, l2)) in enumerate(zip(tiles, labels)):
        x = P + j * (T + P)
        card[y:y + T, x:x + T] = _tile(tile)
        if j == 3 and ex:
            card[y:y + 3, x:x + T] = card[y + T - 3:y + T, x:x + T] = STATE_COLOURS["uncovered"]
        _text(card, l1, (x, y + T + 15), 0.42)
        _text(card, l2, (x, y + T + 31), 0.42, (60, 60, 60))
    # timeline bar: one colour per frame of the track
    by = y + T + SHEET_LABEL + P
    n = max(len(t.states), 1)
    for i, s in enumerate(t.states):
        x0, x1 = P + int(i * (w - 2 * P) / n), P + int((i + 1) * (w - 2 * P) / n)
        card[by:by + SHEET_BAR, x0:max(x1, x0 + 1)] = STATE_COLOURS[s]
    return card


LEGEND = ("Per track: the original, the anonymised face and depix's reconstruction at the frame",
          "the reconstruction matches best, then the worst exposed frame (red edge).",
          f"Numbers: SFace cosine to the original (same person from {SFACE_THRESHOLD}).",
          f"dlib: its descriptor distance to the original (same person under {DLIB_THRESHOLD}), when used.",
          "Bar: each frame of the track, left to right:")


def _legend(width: int) -> np.ndarray:
    P = SHEET_PAD
    leg = np.full((22 * len(LEGEND) + 30, width, 3), 255, np.uint8)
    for i, line in enumerate(LEGEND):
        _text(leg, line, (P, 18 + 20 * i), 0.5)
    x, y = P, 20 * len(LEGEND) + 8
    for name, colour in STATE_COLOURS.items():
        leg[y:y + 14, x:x + 24] = colour
        _text(leg, name, (x + 30, y + 12), 0.45)
        x += 30 + 9 * len(name) + 16
    return leg


def contact_sheet(report: AuditReport) -> np.ndarray:
    """`(H, W, 3)` uint8 RGB: a legend, then one card per track in a grid (`SHEET_COLUMNS`)."""
    cards = [_card(t) for t in report.tracks]
    cols = next(c for n, c in SHEET_COLUMNS if n is None or len(cards) <= n)
    ch, cw = cards[0].shape[:2]
    rows = -(-len(cards) // cols)
    grid = np.full((rows * (ch + SHEET_PAD), cols * (cw + SHEET_PAD), 3), 225, np.uint8)
    for i, c in enumerate(cards):
        r, k = divmod(i, cols)
        grid[r * (ch + SHEET_PAD):r * (ch + SHEET_PAD) + ch, k * (cw + SHEET_PAD):k * (cw + SHEET_PAD) + cw] = c
    return np.concatenate([_legend(grid.shape[1]), grid], axis=0)


def write_sheet(report: AuditReport, path) -> None:
    ok, buf = cv2.imencode(".png", contact_sheet(report)[..., ::-1])
    if not ok:
        raise OutputError(f"{path}: cannot encode the contact sheet")
    write_atomic(path, buf.tobytes())


def check_outputs(outputs, inputs) -> None:
    """Before any long work: every output can be written (its directory exists, is a directory and is
    writable), no two outputs are the same file, and none is one of the inputs. Raises OutputError."""
    seen = {}
    for out in outputs:
        out = os.fspath(out)
        key = os.path.abspath(out)
        if key in seen:
            raise OutputError(f"{out}: given for two outputs")
        seen[key] = out
        for src in inputs:
            same = os.path.exists(out) and os.path.exists(src) and os.path.samefile(out, src)
            if os.path.abspath(src) == key or same:
                raise OutputError(f"{out}: would overwrite the input {src}")
        if os.path.isdir(out):
            raise OutputError(f"{out}: is a directory; give a file name")
        directory = os.path.dirname(key)
        parent = directory
        while not os.path.exists(parent):
            parent = os.path.dirname(parent)
        if not os.path.isdir(parent):
            raise OutputError(f"{out}: {parent} is a file, not a directory")
        if parent != directory:
            raise OutputError(f"{out}: directory {directory} does not exist")
        try:  # the only sure test (permissions, read-only or special file systems, root): create a file
            fd, tmp = tempfile.mkstemp(prefix=".depix-check-", dir=directory)
            os.close(fd)
            os.unlink(tmp)
        except OSError as exc:
            raise OutputError(f"{out}: cannot write in {directory} ({exc.strerror or exc})") from None
