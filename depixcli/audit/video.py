"""`audit_video`: the two passes of `depix audit` over both videos in lockstep, wired together (see
`depixcli.audit`); `repair`: --repair's masked copy, audited again.
"""

from __future__ import annotations

import os
from dataclasses import asdict, replace

from depixcli.audit.attacks import score_track
from depixcli.audit.plan import TrackPlan, collect_frame, find_faces, gallery_photos, plan_tracks, window_frames
from depixcli.audit.verdict import AuditConfig, AuditReport, track_audits
from depixcli.errors import InputError
from depixcli.exposure import repair_masks, repair_video
from depixcli.faces.detect import load_detector
from depixcli.faces.identity import SFaceIdentity
from depixcli.io.files import sha256_file
from depixcli.io.progress import bar_factory
from depixcli.io.video import probe
from depixcli.model.reconstructor import load_reconstructor
from depixcli.model.weights import default_weights_path


def score_pass(pairs, plans: list[TrackPlan], model, identity, batch_size: int = 8, progress=None,
               clock: list | None = None) -> list[dict]:
    """Pass 2 over `(original, anonymised)` frame pairs (an iterable, streamed): each track's attacks are
    scored as soon as its last needed frame has passed, and its crops dropped. `clock[t]`: `(frame number,
    timestamp s)` of the t-th pair (default: t, t). Returns `score_track` results."""
    done = []
    pending = sorted(plans, key=lambda p: p.last)
    live = list(pending)  # tracks whose frames may still come (the timeline needs every frame)
    for t, (orig, anon) in enumerate(pairs):
        at = clock[t] if clock is not None else (t, float(t))
        for plan in live:
            k = t - int(plan.track.frames[0])
            if 0 <= k < len(plan.track.frames):
                collect_frame(plan, k, orig, anon, identity, model.geometry.crop_size, *at)
        live = [p for p in live if int(p.track.frames[-1]) > t]
        while pending and pending[0].last <= t and int(pending[0].track.frames[-1]) <= t:
            done.append(score_track(pending.pop(0), model, identity, batch_size))
        if progress is not None:
            progress.update(1)
    for plan in pending:  # the second decode ended early
        done.append(score_track(plan, model, identity, batch_size))
    return sorted(done, key=lambda d: d["plan"].track.id)


def audit_video(anonymised, original, config: AuditConfig = AuditConfig(), model=None, identity=None,
                detector=None, gallery: tuple | None = None, progress_factory=None) -> AuditReport:
    """Audit `anonymised` against `original` (see the module docstring).

    `model` (a `model.reconstructor.Reconstructor`), `identity` (`identity.SFaceIdentity`), `detector` and
    `gallery` (`gallery_photos(...)`'s result) may be passed in to reuse them over many videos.
    Raises InputError (videos differ, no face in the original), WeightsError, BackendError.
    """
    anonymised, original = os.fspath(anonymised), os.fspath(original)
    if config.weights is None and model is None:
        weights = str(default_weights_path())
    else:
        weights = config.weights or "(given)"
    model = model or load_reconstructor(config.weights, config.device)  # fail on bad weights before long work
    identity = identity or SFaceIdentity()
    if detector is None:

        detector = load_detector(config.detector, threshold=config.threshold, max_side=config.max_side)
    notes = []
    if gallery is None and config.gallery is not None:
        gallery = gallery_photos(config.gallery, identity, detector)
    if gallery is not None:
        notes += gallery[2]
    make = progress_factory or bar_factory(config.quiet)
    bar = make("audit 1/2 detect", probe(original).frames)
    try:
        info, n, per_frame, tracks, clock = find_faces(anonymised, original, config, detector, bar)
    finally:
        bar.close()
    if n == 0:
        raise InputError(f"{original}: no frame between {config.start:g} s and the end of the window")
    if not tracks:
        raise InputError(f"{original}: no face found in the original; nothing to audit")
    plans, more = plan_tracks(tracks, per_frame, config.frames, model.geometry, ladder=config.recommend)
    notes += more
    if not plans:
        raise InputError(f"{original}: no face with landmarks found in the original; nothing to audit")
    bar = make("audit 2/2 score", n)
    try:
        pairs = ((o.image, a.image) for o, a in zip(window_frames(original, config.start, config.duration),
                                                    window_frames(anonymised, config.start, config.duration)))
        done = score_pass(pairs, plans, model, identity, config.batch_size, bar, clock)
    finally:
        bar.close()
    out = track_audits(done, gallery[1] if gallery is not None else None, float(1 / info.fps))
    leaking = [t for t in out if t.verdict == "leaks"]
    if leaking:
        verdict = "leaks"
        reasons = [f"{len(leaking)} of {len(out)} face track(s) leak: " + ", ".join(str(t.id) for t in leaking)]
    elif any(t.verdict == "holds" for t in out):
        verdict, reasons = "holds", [f"{sum(t.verdict == 'holds' for t in out)} of {len(out)} face track(s) hold"]
        skipped = [t for t in out if t.verdict == "not judged"]
        if skipped:
            reasons.append(f"{len(skipped)} not judged (unreliable original face): "
                           + ", ".join(str(t.id) for t in skipped))
    else:
        verdict, reasons = "not judged", [f"none of the {len(out)} original face track(s) is reliable enough to judge"]
    by_id = {tr.id: tr for tr in tracks}
    offset = clock[0][0]  # frame number of pass index 0

    def track_box(tid: int, frame: int):
        tr = by_id[tid]
        k = frame - offset - int(tr.frames[0])
        return (k, tr.boxes[k]) if 0 <= k < len(tr.frames) else None

    masks = repair_masks([r for t in out for r in t.exposed], track_box)
    return AuditReport(anonymised, original, info.width, info.height, n, weights,
                       0 if gallery is None else len(gallery[0]), out, verdict, reasons, notes,
                       fps=float(info.fps), first_frame=clock[0][0], first_time=clock[0][1],
                       last_time=clock[-1][1],
                       sha256={"anonymised": sha256_file(anonymised), "original": sha256_file(original)},
                       parameters=asdict(config), masks=masks, confirmed=config.confirmed)


def repair(report: AuditReport, out_path, config: AuditConfig = AuditConfig(), quiet: bool = True, **reuse) -> None:
    """--repair: write `report`'s anonymised video to `out_path` with every exposed range masked
    (`exposure.repair_video`), audit that copy again against the same original and record the outcome in
    `report.repair`. `reuse`: `audit_video`'s model, identity, detector, gallery."""
    masked = repair_video(report.anonymised, out_path, report.masks, quiet=quiet)
    again = audit_video(out_path, report.original, replace(config, recommend=False), **reuse)
    report.repair = {"output": os.fspath(out_path), "frames_masked": masked, "verdict": again.verdict,
                     "exposed_frames": sum(t.exposed_frames for t in again.tracks), "reasons": again.reasons}
