"""Miss rate of `depix pixelate` on real face clips, and its speed.

For every sampled clip: run `pixelate_video` (writing OUTDIR/<name>.mp4 and <name>.json), check that the
decoded frames carry the same timestamps (count, time base, pts: the frame rate exactly kept; the
container's average-rate metadata may differ for variable-rate sources) and audio as the input, then
count misses two ways, each with one or more referee detectors (the pixelating detector itself and an
independent one):

- input coverage: a face the referee detects on an input frame is *covered* when at least
  `--cover` of its box area lies inside the mosaic rects applied to that frame (from the sidecar);
  miss rate = uncovered / detected.
- output leaks: a face the referee detects on an input frame that it still detects on the output
  frame (a box with IoU >= `--match` to the input one) with less than `--cover` of that box covered by
  the mosaic rects is a *leak* (a face left visible); leak rate = leaks / input faces. Output
  detections that match no input face (the detector firing on a mosaic or next to it) are counted
  apart as "mosaic false positives".

    python bench/bench_pixelate.py /work/shared/data/clips.csv --clip-every 15 --every 3 \
        --max-frames 80 -o /work/main/scratch/pix --referees yunet,centerface
"""

import argparse
import os

import numpy as np

from depixcli.dataset.inputs import collect_inputs
from depixcli.errors import DepixError
from depixcli.faces.detect import load_detector
from depixcli.geometry.boxes import iou
from depixcli.io.sidecar import read_sidecar
from depixcli.io.video import probe, read_frames
from depixcli.pixelate import PixelateConfig, PixelateSummary, pixelate_video


def covered(box, rects) -> float:
    """Share of `box` (xyxy) area inside the union of integer `rects` (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    w, h = max(x1 - x0, 1e-6), max(y1 - y0, 1e-6)
    if not rects:
        return 0.0
    gx0, gy0 = int(np.floor(x0)), int(np.floor(y0))
    gx1, gy1 = int(np.ceil(x1)), int(np.ceil(y1))
    mask = np.zeros((gy1 - gy0, gx1 - gx0), bool)
    for rx0, ry0, rx1, ry1 in rects:
        mask[max(ry0 - gy0, 0):max(ry1 - gy0, 0), max(rx0 - gx0, 0):max(rx1 - gx0, 0)] = True
    return float(mask.sum()) / max((gx1 - gx0) * (gy1 - gy0), 1) if w * h > 0 else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inputs", nargs="+", help="videos, directories or a clips CSV")
    ap.add_argument("-o", "--outdir", required=True, help="where the pixelated clips and sidecars go")
    ap.add_argument("--clip-every", type=int, default=15, help="use every N-th clip")
    ap.add_argument("--clip-offset", type=int, default=0, help="starting with this one")
    ap.add_argument("--referees", default="yunet,centerface", help="detectors that judge coverage")
    ap.add_argument("--cover", type=float, default=0.8, help="least covered share of a face box")
    ap.add_argument("--match", type=float, default=0.3, help="IoU of an output box with an input face box")
    ap.add_argument("--reuse", action="store_true", help="keep existing outputs + sidecars (no speed figure)")
    ap.add_argument("--blocks", type=int, default=16)
    ap.add_argument("--preset", default="veryfast")
    ap.add_argument("--every", type=int, default=1, help="referee checks on every N-th frame (all are pixelated)")
    ap.add_argument("--max-frames", type=int, default=0, help="referee checks on at most this many frames per clip")
    args = ap.parse_args()
    import cv2

    cv2.setNumThreads(1)
    os.makedirs(args.outdir, exist_ok=True)
    clips = collect_inputs(args.inputs)[args.clip_offset:: args.clip_every]
    cfg = PixelateConfig(blocks=args.blocks, preset=args.preset)
    referees = {name: load_detector(name) for name in args.referees.split(",")}
    tot = {n: np.zeros(4, int) for n in referees}  # input faces, uncovered, leaks, mosaic false positives
    frames = secs = 0
    bad_io = []
    for clip in clips:
        name = clip.path.stem
        out = os.path.join(args.outdir, name + ".mp4")
        side = os.path.join(args.outdir, name + ".json")
        if args.reuse and os.path.exists(out) and os.path.exists(side):
            s = PixelateSummary(str(clip.path), out, frames=probe(out).frames)
        else:
            try:
                s = pixelate_video(clip.path, out, cfg, side)
            except DepixError as exc:
                print(f"{name}: skipped ({exc})")
                continue
            frames += s.frames
            secs += s.seconds
        a, b = probe(clip.path), probe(out)
        pts_in, pts_out = ([f.pts for f in read_frames(p)] for p in (clip.path, out))  # decoded, not metadata
        if pts_in != pts_out or a.time_base != b.time_base or a.has_audio != b.has_audio:
            bad_io.append(f"{name} (frames {len(pts_in)}/{len(pts_out)}, same pts {pts_in == pts_out}, "
                          f"audio {a.has_audio}/{b.has_audio})")
        rects = [[tuple(f["grid"].rect) for f in fr["faces"]] for fr in read_sidecar(side)["frames"]]
        per = {n: np.zeros(4, int) for n in referees}
        for fin, fout in zip(read_frames(clip.path), read_frames(out)):
            if fin.index % args.every or (args.max_frames and fin.index >= args.max_frames * args.every):
                continue
            r = rects[fin.index]
            for n, det in referees.items():
                faces = det.detect(fin.image)
                per[n][0] += len(faces)
                per[n][1] += sum(covered(d.box, r) < args.cover for d in faces)
                for o in det.detect(fout.image):
                    if not any(iou(o.box, d.box) >= args.match for d in faces):
                        per[n][3] += 1
                    elif covered(o.box, r) < args.cover:
                        per[n][2] += 1
        line = ", ".join(f"{n}: {p[0]} faces, {p[1]} uncovered, {p[2]} leaks, {p[3]} mosaic FP"
                         for n, p in per.items())
        print(f"{name}: {s.frames} frames, {s.tracks} tracks, {s.fps:.1f} fps; {line}", flush=True)
        for n in referees:
            tot[n] += per[n]
    print(f"\n{len(clips)} clips, {frames} frames, pixelate {frames / max(secs, 1e-9):.1f} fps "
          f"(both passes, preset {args.preset}); frames/pts/audio differ in: {bad_io or 'none'}")
    for n, (faces, miss, leak, fp) in tot.items():
        print(f"referee {n}: {faces} input faces; uncovered {miss} ({100 * miss / max(faces, 1):.2f} %), "
              f"still detected outside the mosaic {leak} ({100 * leak / max(faces, 1):.2f} %); "
              f"detections on/next to mosaics matching no input face: {fp}")


if __name__ == "__main__":
    main()
