"""Flicker and tOF of consecutive reconstructions on val tracks (depixcli.evaluate.temporal), per mosaic protocol.

    python bench/bench_flicker.py CROPS -w weights/depix-default.safetensors \\
        [--protocols face16 face8 image16 image8 paper16] [--frames 8] [--max-tracks 20] [--json out.json]

Per track (the `--max-tracks` evenly spread over the split, in index order) one run of `--frames` consecutive
frames in the middle of its query span (`temporal.run_starts`) is mosaiced as one clip and reconstructed frame by
frame by: nearest (the mosaic), bicubic of the true block values, the Gaussian smoothing, the model fed its
window (row "model") and the model fed the centre frame repeated (row "model-F1"). Columns: flicker
(|Δoutput - Δtruth| in the face box, luma, 8-bit grey levels), tOF (px, difference of Farneback flows in the face
box), both lower = steadier, and the mean PSNR (luma) of the run's frames for context. Means over runs.
"""

import argparse
import json
import time

import numpy as np

from depixcli.dataset.crops import load_crops, read_index
from depixcli.evaluate.config import EvalConfig
from depixcli.evaluate.protocols import track_boxes
from depixcli.faces.identity import spread_frames
from depixcli.evaluate.metrics import psnr
from depixcli.model.reconstructor import load_reconstructor
from depixcli.evaluate.temporal import reconstruct_runs, run_starts, score_runs

ROWS = ("nearest", "bicubic", "gaussian", "model-F1", "model")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("crops", help="crop dataset directory (depix prepare)")
    parser.add_argument("-w", "--weights", required=True, help="model weights (.safetensors)")
    parser.add_argument("--protocols", nargs="+", default=["face16", "face8", "image16", "image8", "paper16"],
                        help="evaluate.PROTOCOLS names")
    parser.add_argument("--frames", type=int, default=8, help="consecutive frames per run")
    parser.add_argument("--max-tracks", type=int, default=0, help="tracks used, evenly spread (0: all)")
    parser.add_argument("--split", default="val")
    parser.add_argument("--json", default=None, help="write the numbers (per run too) here")
    args = parser.parse_args()

    t0 = time.perf_counter()
    index = read_index(args.crops)
    tracks = load_crops(args.crops, split=args.split)
    if args.max_tracks:
        tracks = [tracks[i] for i in spread_frames(range(len(tracks)), args.max_tracks)]
    boxes = track_boxes(index, tracks)
    runs = run_starts([len(t.frames) for t in tracks], args.frames)
    models = {"model": load_reconstructor(args.weights, "cpu")}
    cfg = EvalConfig()
    print(f"{len(runs)} runs of up to {args.frames} frames from {len(tracks)} {args.split} tracks "
          f"({len({t.identity for t in tracks})} people); weights {args.weights}")
    print("| protocol | method | flicker (grey levels) | tOF (px) | PSNR dB (run frames) |")
    print("| --- | --- | --- | --- | --- |")
    report = {"weights": args.weights, "runs": [[tracks[t].track_id, s, k] for t, s, k in runs], "protocols": {}}
    infer_s = 0.0
    for protocol in args.protocols:
        outputs, truths, seconds = reconstruct_runs(protocol, tracks, runs, models, cfg, boxes)
        infer_s += seconds
        scores = score_runs(outputs, truths)
        for name in ROWS:
            p = float(np.mean([np.mean(psnr(g, o[name])) for o, g in zip(outputs, truths)]))
            scores[name]["psnr"] = p
            print(f"| {protocol} | {name} | {scores[name]['flicker']:.3f} | {scores[name]['tof']:.3f} | {p:.2f} |",
                  flush=True)
        report["protocols"][protocol] = scores
    report["seconds"] = {"total": round(time.perf_counter() - t0, 1), "model": round(infer_s, 1)}
    print(f"{report['seconds']['total']:.0f} s in all, {infer_s:.0f} s in the model")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
