"""Face detector recall and speed on face clips.

Most clips of /work/shared/data are single-person face clips, so recall is estimated as the fraction
of sampled frames with at least one detection (every N-th frame of every clip). Speed is the mean
wall time of `detect()` per frame (single thread), including the downscale and colour conversion.
Also reported: mean number of detections per frame (> 1 hints at false positives on one-face clips)
and, for each detector/size after the first, the mean IoU of its best box against the first one's.

    python bench/bench_detect.py /work/shared/data/clips.csv --every 10 \
        --runs yunet:640,yunet:320,centerface:640
"""

import argparse
import time

import numpy as np

from depixcli.dataset.inputs import clip_frames, collect_inputs, readable_inputs
from depixcli.faces.detect import load_detector
from depixcli.geometry.boxes import iou


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inputs", nargs="+", help="videos, directories or a clips CSV")
    ap.add_argument("--every", type=int, default=10, help="sample every N-th frame")
    ap.add_argument("--clip-every", type=int, default=1, help="use every N-th clip")
    ap.add_argument("--runs", default="yunet:640,centerface:640", help="detector:max_side,...")
    args = ap.parse_args()
    import cv2

    cv2.setNumThreads(1)
    runs = [(r.split(":")[0], int(r.split(":")[1])) for r in args.runs.split(",")]
    dets = [load_detector(name, max_side=ms) for name, ms in runs]
    clips = readable_inputs(collect_inputs(args.inputs))[:: args.clip_every]
    n = 0
    hit = np.zeros(len(runs))
    count = np.zeros(len(runs))
    secs = np.zeros(len(runs))
    ious = [[] for _ in runs]
    missed_clips = [dict() for _ in runs]
    for c in clips:
        for i, img in enumerate(clip_frames(c.path)):
            if i % args.every:
                continue
            n += 1
            first = None
            for k, d in enumerate(dets):
                t0 = time.perf_counter()
                r = d.detect(img)
                secs[k] += time.perf_counter() - t0
                count[k] += len(r)
                if r:
                    hit[k] += 1
                    best = max(r, key=lambda x: x.score).box
                    if k == 0:
                        first = best
                    elif first is not None:
                        ious[k].append(iou(first, best))
                else:
                    missed_clips[k][c.path.name] = missed_clips[k].get(c.path.name, 0) + 1
    print(f"{len(clips)} clips, {n} frames sampled (every {args.every}th)")
    print(f"{'detector':>12} {'max_side':>8} {'recall':>7} {'det/frame':>9} {'ms/frame':>8} {'IoU vs 1st':>10}")
    for k, (name, ms) in enumerate(runs):
        mean_iou = f"{np.mean(ious[k]):10.3f}" if ious[k] else f"{'-':>10}"
        print(f"{name:>12} {ms:8d} {hit[k] / n:7.3f} {count[k] / n:9.2f} {secs[k] / n * 1000:8.1f} {mean_iou}")
    for k, (name, ms) in enumerate(runs):
        worst = sorted(missed_clips[k].items(), key=lambda kv: -kv[1])[:8]
        print(f"{name}:{ms} most missed: {worst}")


if __name__ == "__main__":
    main()
