"""`audit_video`: the two passes of `depix audit` over both videos in lockstep, wired together (see
`depixcli.audit`); `repair`: --repair's masked copy, audited again.
"""

from __future__ import annotations

import os
from dataclasses import asdict, replace

from depixcli.audit.attacks import score_track
from depixcli.audit.plan import (
    GalleryPhotos,
    TrackPlan,
    collect_frame,
    find_faces,
    gallery_photos,
    plan_tracks,
    window_frames,
)
from depixcli.audit.verdict import AuditConfig, AuditReport, track_audits
from depixcli.errors import InputError
from depixcli.exposure import repair_masks, repair_video
from depixcli.faces.detect import load_detector
from depixcli.faces.identity import SFaceIdentity, load_dlib
from depixcli.io.files import sha256_file
from depixcli.io.progress import bar_factory
from depixcli.io.video import probe
from depixcli.model.reconstructor import load_reconstructor
from depixcli.model.weights import default_weights_path, read_header

DLIB_OFF = "dlib not used (turned off)"  # the report's dlib line when AuditConfig.dlib is False


def score_pass(pairs, plans: list[TrackPlan], model, identity, batch_size: int = 8, progress=None,
               clock: list | None = None, dlib=None) -> list[dict]:
    """Pass 2 over `(original, anonymised)` frame pairs (an iterable, streamed): each track's attacks are
    scored as soon as its last needed frame has passed, and its crops dropped. `clock[t]`: `(frame number,
    timestamp s)` of the t-th pair (default: t, t); `dlib`: the second judge (`identity.DlibIdentity`) or None.
    Returns `score_track` results."""
    done = []
    pending = sorted(plans, key=lambda p: p.last)
    live = list(pending)  # tracks whose frames may still come (the timeline needs every frame)
    for t, (orig, anon) in enumerate(pairs):
        at = clock[t] if clock is not None else (t, float(t))
        for plan in live:
            k = t - int(plan.track.frames[0])
            if 0 <= k < len(plan.track.frames):
                collect_frame(plan, k, orig, anon, identity, model.geometry.crop_size, *at, dlib=dlib)
        live = [p for p in live if int(p.track.frames[-1]) > t]
        while pending and pending[0].last <= t and int(pending[0].track.frames[-1]) <= t:
            done.append(score_track(pending.pop(0), model, identity, batch_size, dlib))
        if progress is not None:
            progress.update(1)
    for plan in pending:  # the second decode ended early
        done.append(score_track(plan, model, identity, batch_size, dlib))
    return sorted(done, key=lambda d: d["plan"].track.id)


def sface_trained(weights) -> bool | None:
    """Whether SFace was a training loss of the model in `weights` (its header's train config has `w_identity` > 0);
    None when that cannot be told (a model passed in, or weights that do not record it)."""
    if weights is None:
        return None
    w = read_header(weights)["meta"].get("train", {}).get("config", {}).get("w_identity")
    return None if w is None else float(w) > 0


def second_judge(config: AuditConfig, dlib: tuple | None = None) -> tuple:
    """`(identity.DlibIdentity | None, one line)`: dlib as the audit uses it (`dlib`: a `load_dlib()` result to
    reuse); None when turned off or absent, the line then says why."""
    if not config.dlib:
        return None, DLIB_OFF
    return dlib if dlib is not None else load_dlib()


def audit_video(anonymised, original, config: AuditConfig = AuditConfig(), model=None, identity=None,
                detector=None, gallery: GalleryPhotos | None = None, progress_factory=None,
                dlib: tuple | None = None) -> AuditReport:
    """Audit `anonymised` against `original` (see the module docstring).

    `model` (a `model.reconstructor.Reconstructor`), `identity` (`identity.SFaceIdentity`), `detector`,
    `gallery` (`gallery_photos(...)`'s result) and `dlib` (`load_dlib()`'s result) may be passed in to reuse them
    over many videos. Raises InputError (videos differ, no face in the original), WeightsError, BackendError.
    """
    anonymised, original = os.fspath(anonymised), os.fspath(original)
    if config.weights is None and model is None:
        weights = str(default_weights_path())
    else:
        weights = config.weights or "(given)"
    model = model or load_reconstructor(config.weights, config.device)  # fail on bad weights before long work
    trained = sface_trained(None if weights == "(given)" else weights)
    identity = identity or SFaceIdentity()
    judge2, dlib_note = second_judge(config, dlib)
    if detector is None:

        detector = load_detector(config.detector, threshold=config.threshold, max_side=config.max_side)
    notes = []
    if gallery is None and config.gallery is not None:
        gallery = gallery_photos(config.gallery, identity, detector, judge2)
    if gallery is not None:
        notes += gallery.notes
        if judge2 is not None and gallery.dlib is None and gallery.names:
            notes.append("dlib's re-identification gallery holds the video's face tracks only: the gallery photos "
                         "were not described by dlib")
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
        done = score_pass(pairs, plans, model, identity, config.batch_size, bar, clock, judge2)
    finally:
        bar.close()
    out = track_audits(done, gallery.sface if gallery is not None else None, float(1 / info.fps),
                       gallery.dlib if gallery is not None else None)
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
                       0 if gallery is None else len(gallery.names), out, verdict, reasons, notes,
                       fps=float(info.fps), first_frame=clock[0][0], first_time=clock[0][1],
                       last_time=clock[-1][1],
                       sha256={"anonymised": sha256_file(anonymised), "original": sha256_file(original)},
                       parameters=asdict(config), masks=masks, confirmed=config.confirmed, dlib=dlib_note,
                       sface_trained=trained)


def repair(report: AuditReport, out_path, config: AuditConfig = AuditConfig(), quiet: bool = True, **reuse) -> None:
    """--repair: write `report`'s anonymised video to `out_path` with every exposed range masked
    (`exposure.repair_video`), audit that copy again against the same original and record the outcome in
    `report.repair`. `reuse`: `audit_video`'s model, identity, detector, gallery, dlib."""
    masked = repair_video(report.anonymised, out_path, report.masks, quiet=quiet)
    again = audit_video(out_path, report.original, replace(config, recommend=False), **reuse)
    report.repair = {"output": os.fspath(out_path), "frames_masked": masked, "verdict": again.verdict,
                     "exposed_frames": sum(t.exposed_frames for t in again.tracks), "reasons": again.reasons}
