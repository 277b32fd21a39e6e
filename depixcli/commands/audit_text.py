"""The plain-language report `depix audit` prints, from one `audit.verdict.AuditReport` (its numbers as
`audit.report.shown` formats them for every output, so the sentences, the table and the sheet cannot disagree).

It reads top to bottom: one sentence per track (leaks / holds / not judged, how strongly, why), the leak
timeline (exposed frame ranges), the table of measurements with a legend, the second identity judge (dlib's
descriptor, which no depix model trains on, or one line saying why it was not used), what to do (the commands and
flags to use), what the audit cannot judge, and the result ("pseudonymised, not anonymised" unless the user confirmed
that nothing but the faces identifies the people).
"""

from __future__ import annotations

from depixcli.audit.report import disagreement, shown, shown_dlib, track_sentence
from depixcli.audit.verdict import ATTACKS, LEAK_SHARE, LIMITS, REID_MIN_GALLERY, SFACE_THRESHOLD, AuditReport
from depixcli.exposure import clock
from depixcli.faces.identity import DLIB_THRESHOLD


def format_timeline(report: AuditReport) -> list[str]:
    ranges = [r for t in report.tracks for r in t.exposed]
    if not ranges:
        judged = [t.judged_frames for t in report.tracks]
        return [f"Leak timeline: no exposed frame (the faces' coverage could be judged on "
                f"{min(judged):.0%} to {max(judged):.0%} of each track's frames)."]
    out = [f"Leak timeline: {len(ranges)} exposed stretch(es), {sum(r.frames for r in ranges)} frame(s):",
           f"  {'track':>5}  {'from':>9} - {'to':<9}  {'frames':>13}  {'seconds':>7}  found"]
    for r in ranges:
        out.append(f"  {r.track:>5}  {clock(r.start)} - {clock(r.end)}  {f'{r.start_frame}-{r.end_frame}':>13}  "
                   f"{r.seconds:>7.2f}  {r.describe()}")
    return out


def format_table(report: AuditReport) -> str:
    """The table of measurements, with a legend for every column."""
    head = (f"{'track':>5} {'frames':>11} {'face px':>7} {'blocks/face':>11} {'block px':>8} {'grid fixed to':>13} "
            f"{'views':>5} {'block colour':>12} | {'median cosine as-is/smooth/depix':>32} {'featureless':>11} | "
            f"{'frames matched':>14} | {'re-id rank':>10} | verdict")
    lines = [head, "-" * len(head)]
    for t in report.tracks:
        v, m = shown(t), t.mosaic
        rank = "/".join(v["rank"][a] for a in ATTACKS) if v["rank"] is not None else "not tested"
        lines.append(f"{t.id:>5} {t.scored:>4} of {t.last_frame - t.first_frame + 1:<4} {v['face_px']:>7} "
                     f"{v['face_blocks']:>11} {v['block_px']:>8} {m.anchor:>13} {m.phases:>5} {m.values:>12} | "
                     f"{'/'.join(v['median'][a] for a in ATTACKS):>32} {v['featureless']:>11} | "
                     f"{'/'.join(v['matched'][a] for a in ATTACKS):>14} | {rank:>10} | {t.verdict}")
    g = report.tracks[0].scores[ATTACKS[0]].gallery if report.tracks else 0
    lines += [
        "  frames: scored of the track's frames; blocks/face: mosaic blocks across the original's face box; grid "
        "fixed to: image, face, static (the face hardly moves) or none (no mosaic found: a blur, a fill, or nothing);",
        "  views: how many different positions of the face under the grid the video shows (each one is new "
        "evidence for a multi-frame model); block colour: means / samples of the face's pixels, or neither;",
        f"  median cosine: SFace identity similarity to the original (same person from {SFACE_THRESHOLD}); "
        "featureless: what a flat patch of the face's colour scores (the no-information level);",
        f"  frames matched: share of scored frames at or above {SFACE_THRESHOLD} and clearly above featureless;",
        (f"  re-id rank: the person's place among {g} faces (1 = picked out)." if g >= REID_MIN_GALLERY else
         f"  re-id rank: not tested, the gallery has only {g} face(s) (chance {1 / max(g, 1):.0%}); add --gallery "
         f"DIR with photos of at least {REID_MIN_GALLERY - g} other people."),
    ]
    return "\n".join(lines)


def sface_provenance(report: AuditReport) -> str:
    """Whether SFace, the judge of the table above, is independent of the reconstruction model."""
    if report.sface_trained:
        return ("SFace was a training loss of the reconstruction model, so its scores of depix's reconstruction "
                "are not independent")
    if report.sface_trained is None:
        return "the weights do not say whether SFace was a training loss of the reconstruction model"
    return "SFace was not a training loss of the reconstruction model"


def format_second_judge(report: AuditReport) -> list[str]:
    """dlib's table (the identity judge no depix model trains on), or one line saying it was not used."""
    tracks = [t for t in report.tracks if t.dlib is not None]
    if not tracks:
        return [f"Second identity judge: {report.dlib}; {sface_provenance(report)}."]
    head = (f"{'track':>5} | {'median distance as-is/smooth/depix':>34} {'featureless':>11} | {'frames matched':>14} | "
            f"{'re-id rank':>10} | {'dlib says':>9} | SFace says")
    lines = [f"Second identity judge: {report.dlib}, which no depix model trains on; {sface_provenance(report)}.",
             head, "-" * len(head)]
    for t in tracks:
        d = shown_dlib(t)
        rank = "/".join(d["rank"][a] for a in ATTACKS) if d["rank"] is not None else "not tested"
        lines.append(f"{t.id:>5} | {'/'.join(d['median'][a] for a in ATTACKS):>34} {d['featureless']:>11} | "
                     f"{'/'.join(d['matched'][a] for a in ATTACKS):>14} | {rank:>10} | {t.dlib_verdict:>9} | "
                     f"{t.identity_verdict}" + (" (disagree)" if disagreement(t) else ""))
    lines += [
        f"  median distance: Euclidean distance of dlib descriptors to the original's (lower is closer; same person "
        f"under {DLIB_THRESHOLD}); frames matched: share of scored frames under {DLIB_THRESHOLD} where a featureless "
        "face is not;",
        f"  the verdict follows SFace's rules; dlib says leaks when an attack matches at least {LEAK_SHARE:.0%} of "
        "the frames or re-identifies the person, and each track says where the two disagree.",
    ]
    return lines


def what_to_do(report: AuditReport, anonymised: str = "ANON", original: str = "ORIG") -> list[str]:
    out = []
    exposed = [t for t in report.tracks if t.exposed]
    if exposed:
        out.append(f"- Mask the exposed frames: depix audit {anonymised} --original {original} --repair FIXED.mp4 "
                   "(masks them over the original's face tracks and audits the copy again), or anonymise again "
                   "with depix pixelate (its masks bridge detection gaps and start before / end after each track).")
    for t in report.tracks:
        rec = t.recommendation
        if rec is None:
            if t.identity_verdict == "leaks":
                out.append(f"- Track {t.id}: use a coarser mosaic, or depix pixelate --secure.")
            continue
        if rec["blocks"] is None:
            out.append(f"- Track {t.id}: even {rec['ladder'][-1]['blocks']} blocks was recognised on this face "
                       f"({rec['ladder'][-1]['why']}); use depix pixelate --secure and audit again.")
            continue
        finer = [r for r in rec["ladder"] if r["blocks"] > rec["blocks"]]
        tail = f"; {finer[-1]['blocks']} blocks leaked ({finer[-1]['why']})" if finer else ""
        now = "" if t.identity_verdict == "leaks" else " if you anonymise it again"
        out.append(f"- Track {t.id}{now}: at most {rec['blocks']} blocks across the mosaic ({rec['command']}), the "
                   f"finest that held in the audit's own test of this face{tail}. Safest: depix pixelate --secure.")
    for t in report.tracks:
        if t.judges_agree is False and t.dlib_verdict == "leaks":
            out.append(f"- Track {t.id}: dlib still matches the person where SFace does not; look at the sheet, and "
                       "prefer a coarser mosaic or depix pixelate --secure.")
    unjudged = [t for t in report.tracks if t.verdict == "not judged"]
    if unjudged:
        out.append(f"- Look at track(s) {', '.join(str(t.id) for t in unjudged)} by eye (see the sheet): the audit "
                   "could not judge them.")
    if not out:
        out.append("- Nothing to fix in the faces.")
    return out


def format_report(report: AuditReport) -> str:
    """The plain-language report printed on stdout."""
    lines = [f"depix audit: {report.anonymised} against {report.original} ({clock(report.first_time)}-"
             f"{clock(report.last_time)}, {report.frames} frames, {len(report.tracks)} face track(s))", ""]
    lines += [track_sentence(t) for t in report.tracks] + [""]
    lines += format_timeline(report) + [""]
    lines += ["Measurements:", format_table(report), ""]
    lines += format_second_judge(report) + [""]
    lines += ["What to do:"] + what_to_do(report, report.anonymised, report.original) + [""]
    lines += [f"What this audit cannot judge: {LIMITS}"]
    lines += [f"note: {n}" for n in report.notes]
    lines.append(result_line(report))
    if report.repair is not None:
        r = report.repair
        lines.append(f"repair: wrote {r['output']} with {r['frames_masked']} frame(s) masked; audited again: "
                     f"{r['verdict'].upper()} ({'; '.join(r['reasons'])}), {r['exposed_frames']} exposed frame(s).")
    return "\n".join(lines)


def result_line(report: AuditReport) -> str:
    v = report.verdict
    if v == "leaks":
        return f"video: LEAKS ({'; '.join(report.reasons)}): not anonymised."
    if v == "not judged":
        return f"video: NOT JUDGED ({'; '.join(report.reasons)}): check the faces by eye."
    if report.confirmed:
        return (f"video: HOLDS ({'; '.join(report.reasons)}): anonymised as far as the audit can tell; you "
                "confirmed that nothing else in the video identifies the people.")
    return (f"video: HOLDS ({'; '.join(report.reasons)}): the faces hold, so the video is pseudonymised, not "
            "anonymised, unless nothing else identifies the people (say so with --nothing-else-identifies).")
