"""Pass 1 and the plan of `depix audit`: faces tracked on the original (`find_faces`), the frames each track is
scored, embedded and stacked on (`plan_tracks`), what pass 2 keeps of each frame (`collect_frame`) and the
`--gallery` photos (`GalleryPhotos`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from depixcli.audit.attacks import flat_face, frame_region, identity_cosines
from depixcli.audit.grid import crop_alignment, locate_face_grid, value_errors
from depixcli.audit.verdict import METRIC_CROP, NULL_MARGIN, SFACE_THRESHOLD, AuditConfig
from depixcli.errors import InputError, OptionError
from depixcli.exposure import FrameExposure, Timeline, coverage, face_patch
from depixcli.faces.detect import load_detector
from depixcli.faces.identity import gallery_frames, query_span, spread_frames
from depixcli.faces.track import build_tracks
from depixcli.geometry.boxes import iou
from depixcli.geometry.crop import crop, head_box
from depixcli.io.video import probe, read_frames
from depixcli.model.config import window_indices

DETECT_MATCH_IOU = 0.3  # IoU: a frame's detection belongs to the track box it overlaps this much
LADDER_FRAMES = 12  # scored frames per track the trials are attacked on
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


@dataclass(frozen=True, eq=False)
class GalleryPhotos:
    """The --gallery photos: the largest face of each image, embedded by SFace (and dlib when it is used)."""
    names: list[str]  # file names of the photos kept
    sface: np.ndarray  # (G, 128) unit SFace embeddings
    notes: list[str]  # the files left out (no readable face)
    dlib: np.ndarray | None = None  # (G, 128) dlib descriptors of the same faces (None: dlib not used)


def gallery_photos(directory: str, identity, detector, dlib=None) -> GalleryPhotos:
    """The largest face in each image of `directory`, embedded by SFace (`identity`) and `dlib` (or None)."""
    d = Path(directory)
    if not d.is_dir():
        raise OptionError("gallery", f"{directory}: not a directory")
    files = sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise OptionError("gallery", f"{directory}: no images ({', '.join(IMAGE_EXTENSIONS)})")
    return photo_embeddings(files, identity, detector, dlib)


def photo_embeddings(files, identity, detector, dlib=None) -> GalleryPhotos:
    """The largest face in each image file, embedded by SFace (`identity`) and `dlib` (or None); files that
    cannot be read or show no face with landmarks are left out (and named in the notes)."""
    names, feats, descs, skipped = [], [], [], []
    for p in map(Path, files):
        bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if bgr is None:
            skipped.append(p.name)
            continue
        rgb = np.ascontiguousarray(bgr[..., ::-1])
        dets = detector.detect(rgb)
        if not dets or dets[0].landmarks is None:
            skipped.append(p.name)
            continue
        det = max(dets, key=lambda d_: (d_.box[2] - d_.box[0]) * (d_.box[3] - d_.box[1]))
        row = np.r_[det.box, det.score, np.asarray(det.landmarks).ravel()]
        box = head_box(det.box)
        face, a = crop(rgb, box, METRIC_CROP), crop_alignment(row, box, METRIC_CROP)
        feats.append(identity.embed([face], [a])[0])
        if dlib is not None:
            descs.append(dlib.describe(face, a, [])[0])
        names.append(p.name)
    notes = [f"gallery: {len(skipped)} image(s) without a readable face skipped: {', '.join(skipped[:5])}"
             + (" ..." if len(skipped) > 5 else "")] if skipped else []
    return GalleryPhotos(names, np.array(feats, np.float32).reshape(-1, 128), notes,
                         np.array(descs, np.float32).reshape(-1, 128) if dlib is not None else None)


def find_faces(anonymised, original, config: AuditConfig = AuditConfig(), detector=None, progress=None):
    """Pass 1: check the two videos match; detect and track faces on the original.

    Returns `(VideoInfo of the original, frame count, per-frame detections [(k, 15) arrays: box xyxy,
    score, 5 landmarks x, y], tracks, clock [(frame number, timestamp s)])`, over the frames of the window
    `config.start`, `config.duration`. Raises InputError when sizes or frame counts differ.
    """
    a_info, o_info = probe(anonymised), probe(original)
    if (a_info.width, a_info.height) != (o_info.width, o_info.height):
        raise InputError(f"{anonymised} is {a_info.width}x{a_info.height} but {original} is "
                         f"{o_info.width}x{o_info.height}: not an anonymised copy of it")
    det = detector or load_detector(config.detector, threshold=config.threshold, max_side=config.max_side)
    per_frame, clock = [], []
    o_iter = window_frames(original, config.start, config.duration)
    a_iter = window_frames(anonymised, config.start, config.duration)
    while True:
        o, a = next(o_iter, None), next(a_iter, None)
        if o is None or a is None:
            if o is not None or a is not None:
                n = len(per_frame)
                n_o = n + (o is not None) + sum(1 for _ in o_iter)
                n_a = n + (a is not None) + sum(1 for _ in a_iter)
                raise InputError(f"{anonymised} has {n_a} frames but {original} has {n_o}: "
                                 "not an anonymised copy of it")
            break
        rows = [np.r_[d.box, d.score, np.asarray(d.landmarks, np.float64).ravel()]
                for d in det.detect(o.image) if d.landmarks is not None]
        per_frame.append(np.array(rows, np.float64).reshape(-1, 15))
        clock.append((o.index, round(o.time, 4)))
        if progress is not None:
            progress.update(1)
    return o_info, len(per_frame), per_frame, build_tracks([r[:, :5] for r in per_frame]), clock


@dataclass
class TrackPlan:
    """What pass 2 collects for one track (positions are offsets into the track's frames)."""
    track: object  # track.Track
    dets: dict[int, np.ndarray]  # position -> (15,) detection row on the original
    score: list[int]  # positions scored
    query: list[int]  # scored positions probing re-identification
    gallery: list[int]  # positions whose original embeddings make the track's gallery entry
    stacks: dict[int, list[int]]  # scored position -> positions of its model window stack
    last: int  # last frame index pass 2 needs for this track
    orig: dict = field(default_factory=dict)  # position -> METRIC_CROP crop of the original
    anon: dict = field(default_factory=dict)  # position -> METRIC_CROP crop of the anonymised frame
    model_in: dict = field(default_factory=dict)  # position -> model-size crop of the anonymised frame
    grids: dict = field(default_factory=dict)  # position -> located MosaicGrid (or None)
    errors: dict = field(default_factory=dict)  # position -> value_errors(...)
    entry: list = field(default_factory=list)  # original embeddings of the gallery positions
    dlib_entry: list = field(default_factory=list)  # their dlib descriptors (when dlib is used)
    timeline: Timeline = field(default_factory=Timeline)  # every frame's exposure
    ladder: list = field(default_factory=list)  # scored positions the strength ladder is tested on
    orig_model: dict = field(default_factory=dict)  # position -> model-size crop of the original (ladder stacks)
    anon_regions: dict = field(default_factory=dict)  # scored position -> `attacks.frame_region` of the anonymised
    orig_regions: dict = field(default_factory=dict)  # ladder position -> `attacks.frame_region` of the original


def plan_tracks(tracks, per_frame, frames: int, geometry, ladder: bool = False) -> tuple[list[TrackPlan], list[str]]:
    """Pick, per track, the frames to score, its gallery frames and the model's stack frames."""
    plans, notes = [], []
    for tr in tracks:
        dets = {}
        for k, (t, box, filled) in enumerate(zip(tr.frames, tr.boxes, tr.filled)):
            if filled:
                continue
            rows = per_frame[int(t)]
            ious = [iou(r[:4], box) for r in rows]
            if ious and max(ious) >= DETECT_MATCH_IOU:
                dets[k] = rows[int(np.argmax(ious))]
        if not dets:
            notes.append(f"track {tr.id}: no frame with landmarks; not scored")
            continue
        n = len(tr.frames)
        score = spread_frames(sorted(dets), frames) if frames else sorted(dets)
        query = [p for p in score if p < query_span(n)] or score
        wanted, _ = gallery_frames(n, query)
        have = np.array(sorted(dets))
        gallery = sorted({int(have[np.argmin(np.abs(have - p))]) for p in wanted})
        stacks = {p: window_indices(p, n, geometry.window, geometry.stride) for p in score}
        needed = set(score) | set(gallery) | {q for s in stacks.values() for q in s}
        plans.append(TrackPlan(tr, dets, score, query, gallery, stacks, int(tr.frames[0]) + max(needed),
                               ladder=spread_frames(score, LADDER_FRAMES) if ladder else []))
    return plans, notes


def collect_frame(plan: TrackPlan, k: int, orig: np.ndarray, anon: np.ndarray, identity, model_size: int,
                  frame: int | None = None, time: float | None = None, dlib=None) -> None:
    """Pass 2, one frame of one track: its exposure (timeline), crops, mosaic grid, gallery embedding (and dlib
    descriptor, when `dlib` is given)."""
    face = plan.track.boxes[k]
    box = head_box(face)
    cos, matched = None, False
    if k in plan.dets:  # the anonymised face as it is, on every frame with a detection
        o, a = crop(orig, box, METRIC_CROP), crop(anon, box, METRIC_CROP)
        c, _ = identity_cosines(identity, o, [flat_face(o), a], crop_alignment(plan.dets[k], box, METRIC_CROP))
        cos = round(float(c[1]), 4)
        matched = bool(c[1] >= SFACE_THRESHOLD and c[1] >= c[0] + NULL_MARGIN)
    frame = int(plan.track.frames[k]) if frame is None else frame
    fe = FrameExposure(frame, round(float(frame if time is None else time), 4),
                       coverage(face_patch(orig, face), face_patch(anon, face)), cos, matched)
    plan.timeline.frames.append(fe)
    plan.timeline.offer(fe, lambda: {"original": crop(orig, box, METRIC_CROP),
                                     "anonymised": crop(anon, box, METRIC_CROP)})
    if k in plan.gallery:
        a = crop_alignment(plan.dets[k], box, METRIC_CROP)
        head = crop(orig, box, METRIC_CROP)
        plan.entry.append(identity.embed([head], [a])[0])
        if dlib is not None:
            plan.dlib_entry.append(dlib.describe(head, a, [])[0])
    if k in plan.stacks:
        plan.orig[k] = crop(orig, box, METRIC_CROP)
        plan.anon[k] = crop(anon, box, METRIC_CROP)
        grid = locate_face_grid(anon, face)
        plan.grids[k] = grid
        plan.errors[k] = value_errors(orig, anon, grid) if grid is not None else None
        plan.anon_regions[k] = frame_region(anon, face)
    if k in plan.ladder:
        plan.orig_regions[k] = frame_region(orig, face)
    if any(k in s for s in plan.stacks.values()):
        plan.model_in[k] = crop(anon, box, model_size)
    if any(k in plan.stacks[p] for p in plan.ladder):
        plan.orig_model[k] = crop(orig, box, model_size)


def window_frames(path, start: float = 0.0, duration: float | None = None):
    """Decoded frames of `path` whose timestamp lies in [start, start + duration) s (all from `start` when
    duration is None); frame numbers and timestamps stay those of the whole video."""
    end = None if duration is None else start + duration
    for f in read_frames(path):
        if f.time < start - 1e-6:
            continue
        if end is not None and f.time >= end - 1e-6:
            break
        yield f
