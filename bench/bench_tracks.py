"""Measure issue 11: does `depix run` keep one steady face in one track, with one crop per frame?

    python bench/bench_tracks.py ../shared/data/clips.csv -o scratch/tracks_bench [--split val]
        [--kinds blocks16 blocks8 size10 opencv12 deface20] [--sizes native small] [--max-frames N]

Run from the repository root with depix importable (`pip install -e . --no-deps`, or `PYTHONPATH=.`).
Per clip of the split (clean face videos):

1. True faces: YuNet on every frame, `track.build_tracks` (what `depix pixelate` does). Each track is
   one true face; its per-frame boxes say where the mosaic was put.
2. Sizes: `native` (the clip as it is) and `small` (downscaled so that the median face is SMALL_FACE px
   wide; left out when the clip's faces are already at most SMALL_MAX px).
3. Mosaic kinds, each written as H.264 (crf ENCODE_CRF) into OUTDIR/videos/:
   `blocks16` / `blocks8` = `depix pixelate --blocks N` (face-anchored N x N grid over the face box
   scaled 1.3); `size10` = `--block-size 10` (image-anchored 10 px grid); `opencv12` = a block-mean
   mosaic made without depix's code: cv2.resize INTER_AREA down to 12 x 12 and INTER_NEAREST back up over
   the face box scaled 1.3; `deface20` = a corner-sampled mosaic as ORB-HD/deface makes it: per frame,
   from that frame's raw detections (no tracking, no smoothing), the box grown by 0.3 of its size on
   every side (deface's `scale_bb` with mask_scale 1.3), cells of 20 px from the box's top-left corner,
   each filled with the colour of its top-left pixel, the last cell running to the box edge.
4. `run.locate_observations` + `run.tracks_from_rects` (pass 1 of `depix run`, nothing given).

Reported per clip, kind and size (and summed): `located %` = share of frames with a true mosaic on which a
FaceTrack's paste rect overlaps it with IoU >= LOCATED_IOU; `tracks/face` = distinct FaceTracks matched
(IoU >= MATCH_IOU on some frame) to each true face, averaged over faces; `extra` = FaceTracks matching no
true face; `crops/frame` = FaceTrack frames / frames with a true mosaic; `2-crop` = frames where two
FaceTracks match one true face. Every break between two consecutive tracks of one face is listed with its
frame and reason: `gap` (more frames between them than link_tracks bridges), `block` (block sizes differ
more than LINK_CELL, or one is unknown), `rect` (end / start rects too far apart), `overlap` (the
tracks run at the same time: two crops), `link` (every criterion passes yet they were not linked), and
the frames on which the locator missed the mosaic inside the gap.

Writes OUTDIR/tracks.json (all figures and breaks). Videos are kept for viewing (`--keep-videos`) or
deleted after each measurement.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from depixcli.geometry.boxes import iou

KINDS = ("blocks16", "blocks8", "size10", "opencv12", "deface20")
SIZES = ("native", "small")
SMALL_FACE = 80.0  # px, median face width of the `small` size (issue 11: faces 60-120 px)
SMALL_MAX = 120.0  # px: clips whose median face is at most this wide have no `small` size
OPENCV_CELLS = 12  # cells across the face box of `opencv12`
MOSAIC_SCALE = 1.3  # mosaic box / face box (depix pixelate's default) for blocks*, size10, opencv12
DEFACE_GROW = 0.3  # deface's scale_bb(mask_scale=1.3): each side moves out by 0.3 x the box size
DEFACE_CELL = 20  # px, deface's default --mosaicsize
ENCODE_CRF = 18
LOCATED_IOU = 0.5  # IoU of a track's paste rect with the true mosaic rect for a located frame
MATCH_IOU = 0.3  # IoU of a track's rect with a true mosaic rect for the track to belong to that face
MIN_MOSAIC = 16  # px: true mosaics narrower (clipped by the frame) are not scored


# ------------------------------------------------------------------------------------------ inputs
def true_faces(path: Path, max_frames: int | None):
    """YuNet on every frame -> (VideoInfo, smoothed face tracks, raw per-frame boxes)."""
    from depixcli.faces.detect import load_detector
    from depixcli.faces.track import build_tracks
    from depixcli.io.video import probe, read_frames
    from depixcli.pixelate import PixelateConfig

    pix = PixelateConfig()
    det = load_detector(pix.detector, threshold=pix.threshold, max_side=pix.max_side)
    raw = []
    for frame in read_frames(path):
        if max_frames is not None and frame.index >= max_frames:
            break
        raw.append([np.r_[d.box, d.score] for d in det.detect(frame.image)])
    return probe(path), build_tracks(raw), raw


def small_scale(tracks) -> float | None:
    """Downscale factor that makes the median face SMALL_FACE px wide, or None (already small / no face)."""
    widths = [b[2] - b[0] for tr in tracks for b in tr.boxes]
    if not widths or float(np.median(widths)) <= SMALL_MAX:
        return None
    return SMALL_FACE / float(np.median(widths))


def deface_mosaic(image: np.ndarray, box) -> tuple[int, int, int, int] | None:
    """deface's corner-sampled mosaic over one raw detection box, in place; returns the rect (xyxy, half-open)."""
    H, W = image.shape[:2]
    x0, y0, x1, y1 = (float(v) for v in box)
    w, h = x1 - x0, y1 - y0
    x0, x1 = x0 - w * DEFACE_GROW, x1 + w * DEFACE_GROW
    y0, y1 = y0 - h * DEFACE_GROW, y1 + h * DEFACE_GROW
    x0, y0, x1, y1 = (int(v) for v in np.round([x0, y0, x1, y1]))
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(W - 1, x1), min(H - 1, y1)
    if x1 - x0 < DEFACE_CELL or y1 - y0 < DEFACE_CELL:
        return None
    for y in range(y0, y1, DEFACE_CELL):  # cv2.rectangle(frame, (x, y), (x + s - 1, y + s - 1), frame[y, x], -1)
        for x in range(x0, x1, DEFACE_CELL):
            image[y:min(y1, y + DEFACE_CELL - 1) + 1, x:min(x1, x + DEFACE_CELL - 1) + 1] = image[y, x]
    return x0, y0, x1 + 1, y1 + 1


def opencv_mosaic(image: np.ndarray, box) -> tuple[int, int, int, int] | None:
    """Block-mean mosaic (INTER_AREA down, INTER_NEAREST up) over the face box scaled 1.3, in place."""
    import cv2

    from depixcli.geometry.boxes import scale_box

    H, W = image.shape[:2]
    x0, y0, x1, y1 = (int(round(v)) for v in scale_box(box, MOSAIC_SCALE))
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, W), min(y1, H)
    if x1 - x0 < OPENCV_CELLS or y1 - y0 < OPENCV_CELLS:
        return None
    small = cv2.resize(image[y0:y1, x0:x1], (OPENCV_CELLS, OPENCV_CELLS), interpolation=cv2.INTER_AREA)
    image[y0:y1, x0:x1] = cv2.resize(small, (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST)
    return x0, y0, x1, y1


def make_video(src: Path, dst: Path, info, kind: str, scale: float | None, tracks, raw, max_frames):
    """Pixelate `src` (resized by `scale`) with `kind` into `dst`. Returns per frame {true face id: rect}."""
    import cv2

    from depixcli.geometry.mosaic import apply_mosaic, clipped_rect
    from depixcli.io.codec import EncodeOptions
    from depixcli.io.encode import VideoWriter
    from depixcli.io.video import read_frames
    from depixcli.pixelate import PixelateConfig

    f = scale or 1.0
    W, H = info.width, info.height
    if scale is not None:
        W, H = 2 * max(round(info.width * f / 2), 1), 2 * max(round(info.height * f / 2), 1)
    fx, fy = W / info.width, H / info.height
    pix = {"blocks16": PixelateConfig(blocks=16), "blocks8": PixelateConfig(blocks=8),
           "size10": PixelateConfig(blocks=None, block_size=10)}.get(kind)
    like = dataclasses.replace(info, width=W, height=H, rotation=0)
    truth = []
    with VideoWriter(dst, like, EncodeOptions(crf=ENCODE_CRF, preset="veryfast")) as writer:
        for frame in read_frames(src):
            t = frame.index
            if max_frames is not None and t >= max_frames:
                break
            image = frame.image if scale is None else cv2.resize(frame.image, (W, H), interpolation=cv2.INTER_AREA)
            image = image.copy()
            rects = {}
            if kind == "deface20":  # raw detections of this frame; matched to a true face afterwards
                for row in raw[t] if t < len(raw) else ():
                    b = np.asarray(row[:4]) * [fx, fy, fx, fy]
                    rect = deface_mosaic(image, b)
                    face = _nearest_face(tracks, t, row[:4])
                    if rect is not None and face >= 0:  # a blip the face tracker dropped is not scored
                        rects[face] = rect
            else:
                for tr in tracks:
                    box = tr.box_at(t)
                    if box is None:
                        continue
                    b = np.asarray(box) * [fx, fy, fx, fy]
                    if kind == "opencv12":
                        rect = opencv_mosaic(image, b)
                    else:
                        grid = pix.grid(b)
                        image = apply_mosaic(image, grid)
                        rect = clipped_rect(grid, (H, W))
                    if rect is not None:
                        rects[tr.id] = rect
            writer.write(image, frame.pts)
            truth.append({k: r for k, r in rects.items() if r[2] - r[0] >= MIN_MOSAIC and r[3] - r[1] >= MIN_MOSAIC})
    return truth


def _nearest_face(tracks, t: int, box) -> int:
    """Id of the true face track whose box at frame t overlaps `box` most (-1: none)."""
    best, best_iou = -1, 0.0
    for tr in tracks:
        b = tr.box_at(t)
        if b is not None and iou(b, box) > best_iou:
            best, best_iou = tr.id, iou(b, box)
    return best


# ------------------------------------------------------------------------------------------ scoring
def measure(path: Path, info, truth: list[dict]) -> dict:
    """Pass 1 of `depix run` on `path`, scored against the true mosaic rects."""
    from depixcli.faces.track import LINK_GAP_S
    from depixcli.restore.config import RunStats
    from depixcli.restore.find import locate_observations
    from depixcli.restore.tracks import tracks_from_rects

    stats = RunStats()
    t0 = time.perf_counter()
    per_frame, _, _ = locate_observations(path, stats, _NoBar())
    seconds = time.perf_counter() - t0
    from depixcli.io.video import probe

    vinfo = probe(path)
    tracks = tracks_from_rects(per_frame, (vinfo.height, vinfo.width), float(vinfo.fps))
    n = min(len(truth), len(per_frame))
    faces = sorted({k for fr in truth[:n] for k in fr})
    face_frames, located, crops, two = 0, 0, 0, 0
    matched: dict[int, set] = {k: set() for k in faces}
    spans: dict[int, dict[int, list]] = {k: {} for k in faces}  # face -> track id -> frames matched
    used_tracks = set()
    for t in range(n):
        active = [tr for tr in tracks if tr.covers(t)]
        crops += len(active)
        for k, rect in truth[t].items():
            face_frames += 1
            ious = [(iou(tr.rect(t), rect), tr.id) for tr in active]
            if any(v >= LOCATED_IOU for v, _ in ious):
                located += 1
            hits = [tid for v, tid in ious if v >= MATCH_IOU]
            two += len(hits) > 1
            for tid in hits:
                matched[k].add(tid)
                used_tracks.add(tid)
                spans[k].setdefault(tid, []).append(t)
    missed = [t for t in range(n) if truth[t] and not per_frame[t]]
    max_gap = round(LINK_GAP_S * float(vinfo.fps))
    breaks = []
    by_id = {tr.id: tr for tr in tracks}
    for k in faces:
        order = sorted(spans[k], key=lambda tid: by_id[tid].start)
        for a, b in zip(order, order[1:]):
            breaks.append(_break_reason(by_id[a], by_id[b], per_frame, max_gap, k))
    return {
        "frames": n, "face_frames": face_frames, "located": located, "faces": len(faces),
        "tracks_per_face": float(np.mean([len(v) for v in matched.values()])) if faces else 0.0,
        "track_count": sum(len(v) for v in matched.values()),
        "extra_tracks": len([tr for tr in tracks if tr.id not in used_tracks]),
        "crops": crops, "two_crop_frames": two, "missed_frames": len(missed), "breaks": breaks,
        "locate_s": stats.stage_s.get("locate", 0.0), "seconds": seconds,
    }


def _break_reason(a, b, per_frame, max_gap: int, face: int) -> dict:
    """Why FaceTracks a and b (consecutive on one face) were not linked (run.link_tracks' criteria)."""
    from depixcli.faces.track import Track
    from depixcli.faces.track import LINK_CELL, edge_cell, link_distance

    gap = b.start - a.end - 1
    missed = [t for t in range(a.end + 1, b.start) if not per_frame[t]]
    ca, cb = edge_cell(a.cells, last=True), edge_cell(b.cells, last=False)
    if gap < 0:
        reason = "overlap"
    elif gap > max_gap:
        reason = "gap"
    elif np.isnan(ca).any() or np.isnan(cb).any() or np.any(np.abs(ca / cb - 1) > LINK_CELL):
        reason = "block"
    else:
        def as_track(tr):
            return Track(tr.id, np.arange(tr.start, tr.end + 1), tr.rects, np.ones(tr.count), tr.filled)

        reason = "rect" if link_distance(as_track(a), as_track(b), ca, cb, gap) is None else "link"
    return {"face": face, "frame": int(b.start), "gap": int(gap), "reason": reason, "missed": missed,
            "cells": [[round(float(v), 2) for v in ca], [round(float(v), 2) for v in cb]],
            "end_rect": [round(float(v)) for v in a.rects[-1]], "start_rect": [round(float(v)) for v in b.rects[0]]}


class _NoBar:
    def update(self, n: int) -> None:
        pass


# ------------------------------------------------------------------------------------------ main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("csv", help="clips CSV (file, identity, split columns)")
    ap.add_argument("-o", "--out", required=True, help="output folder (videos, tracks.json)")
    ap.add_argument("--split", default="val", help="clips of this split")
    ap.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    ap.add_argument("--sizes", nargs="+", default=list(SIZES), choices=SIZES)
    ap.add_argument("--max-frames", type=int, default=None, help="frames kept of each clip (default: all)")
    ap.add_argument("--clip-every", type=int, default=1, help="every n-th clip of the split")
    ap.add_argument("--clips", nargs="*", default=None, help="only clips whose name contains one of these")
    ap.add_argument("--keep-videos", action="store_true")
    ap.add_argument("--json", default="tracks.json", help="file name of the results in OUTDIR")
    args = ap.parse_args(argv)

    from depixcli.dataset.inputs import collect_inputs, readable_inputs

    clips = [c for c in readable_inputs(collect_inputs([args.csv])) if c.split == args.split]
    if args.clips:
        clips = [c for c in clips if any(s in c.path.stem for s in args.clips)]
    clips = clips[:: args.clip_every]
    out = Path(args.out)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    rows = []
    t_start = time.perf_counter()
    for clip in clips:
        info, tracks, raw = true_faces(clip.path, args.max_frames)
        scale = small_scale(tracks)
        for size in args.sizes:
            if size == "small" and scale is None:
                continue
            for kind in args.kinds:
                dst = out / "videos" / f"{clip.path.stem}__{kind}__{size}.mp4"
                truth = make_video(clip.path, dst, info, kind, scale if size == "small" else None, tracks, raw,
                                   args.max_frames)
                r = measure(dst, info, truth)
                r.update(clip=clip.path.stem, kind=kind, size=size)
                rows.append(r)
                if not args.keep_videos:
                    os.unlink(dst)
                bad = [f"{b['frame']}:{b['reason']}" for b in r["breaks"]]
                print(f"{clip.path.stem:44s} {kind:9s} {size:6s} located {_pct(r['located'], r['face_frames'])} "
                      f"tracks/face {r['tracks_per_face']:.2f} extra {r['extra_tracks']} 2-crop "
                      f"{r['two_crop_frames']} missed {r['missed_frames']} {' '.join(bad[:6])}", flush=True)
        (out / args.json).write_text(json.dumps(rows, indent=1))
    print(f"\n{len(rows)} runs in {time.perf_counter() - t_start:.0f} s\n")
    print(summary_table(rows))
    return 0


def _pct(a: int, b: int) -> str:
    return f"{100.0 * a / b:6.2f} %" if b else "   n/a  "


def summary_table(rows: list[dict]) -> str:
    """Per kind and size, and over all: located %, tracks per true face, extra tracks, 2-crop frames, breaks."""
    lines = ["| kind | size | clips | face frames | located % | tracks/face | extra tracks | crops/frame "
             "| 2-crop frames | breaks (reason: n) |", "|---|---|---|---|---|---|---|---|---|---|"]
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["kind"], r["size"]), []).append(r)
    groups[("all", "all")] = rows
    for (kind, size), rs in groups.items():
        ff = sum(r["face_frames"] for r in rs)
        faces = sum(r["faces"] for r in rs)
        reasons: dict = {}
        for r in rs:
            for b in r["breaks"]:
                reasons[b["reason"]] = reasons.get(b["reason"], 0) + 1
        lines.append(
            f"| {kind} | {size} | {len(rs)} | {ff} | {_pct(sum(r['located'] for r in rs), ff).strip()} "
            f"| {sum(r['track_count'] for r in rs) / max(faces, 1):.3f} | {sum(r['extra_tracks'] for r in rs)} "
            f"| {sum(r['crops'] for r in rs) / max(ff, 1):.3f} | {sum(r['two_crop_frames'] for r in rs)} "
            f"| {', '.join(f'{k}: {v}' for k, v in sorted(reasons.items())) or '-'} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
