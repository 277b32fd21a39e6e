"""How `depix pixelate --secure` was chosen: candidate mosaics scored by `depix audit`'s attacks.

    python bench/bench_secure.py ../shared/data/clips.csv [--split val] [--weights W] [--every 8] \\
        [--max-frames 50] [--frames 12] [--json out.json]

Run from the repository root with depix importable. Per clip (the first `--max-frames` frames, in memory,
faces detected and tracked once as `depix pixelate` does) and per candidate: the frames are mosaicked in
memory (no H.264 round trip, unlike `bench_audit.py`) and scored by `audit.score_pass`: median SFace cosine
of (a) the mosaic, (b) its smoothing, (c) depix's reconstruction, and the share of frames above 0.363.
Candidates change one thing at a time from the `blocks8` baseline (8 x 8 means over 1.3 x the face box)
towards `secure` (`depixcli.secure.SecureMosaic()` defaults). The first design (noise +-12, steps of 24)
was re-identified at rank 1 on one of 13 val clips by `bench_audit.py`; doubling the noise and the step
(the default) removed that (README "Is my mosaic safe?").
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np


def candidates(fps: float) -> dict:
    from depixcli.secure import SecureMosaic

    plain = dict(step=1, noise=0.0, hold_s=0.0)
    q24 = dict(step=24, noise=1.0)  # the first design's values: noise +-12, steps of 24
    return {
        "blocks16": ("blocks", 16),
        "blocks8": ("blocks", 8),
        "6 blocks, 1.6 box": SecureMosaic(blocks=6, scale=1.6, **plain),
        "8 blocks, 1.6 box, noise+quantise": SecureMosaic(blocks=8, scale=1.6, hold_s=0.0, **q24),
        "6 blocks, 1.6 box, noise+quantise": SecureMosaic(blocks=6, scale=1.6, hold_s=0.0, **q24),
        "6 blocks, 1.6 box, held 0.5 s": SecureMosaic(blocks=6, scale=1.6, step=1, noise=0.0),
        "6 blocks, 1.6 box, noise+quantise, held 0.5 s": SecureMosaic(**q24),
        "4 blocks, 1.6 box, noise+quantise, held 0.5 s": SecureMosaic(blocks=4, **q24),
        "secure: 6 blocks, 1.6 box, noise +-32 + steps of 32, held 0.5 s": SecureMosaic(),
    }


def mosaic_frames(frames, tracks, way, fps: float) -> list[np.ndarray]:
    from depixcli.geometry.boxes import scale_box
    from depixcli.geometry.mosaic import apply_mosaics, grid_from_blocks
    from depixcli.secure import apply_secure

    held: dict = {}
    out = []
    for t, img in enumerate(frames):
        here = [(tr, t - int(tr.frames[0])) for tr in tracks if tr.box_at(t) is not None]
        if isinstance(way, tuple):
            out.append(apply_mosaics(img, [grid_from_blocks(scale_box(tr.boxes[k], 1.3), way[1]) for tr, k in here]))
        else:
            out.append(apply_secure(img, [(tr.id, k, way.grid(tr.boxes[k])) for tr, k in here], way,
                                    way.hold_frames(fps), held))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("inputs", nargs="+")
    ap.add_argument("--split", default="val")
    ap.add_argument("-w", "--weights", default=None)
    ap.add_argument("--every", type=int, default=8, help="every k-th clip")
    ap.add_argument("--max-frames", type=int, default=50)
    ap.add_argument("--frames", type=int, default=12, help="frames scored per track")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    from depixcli.dataset.inputs import collect_inputs, readable_inputs
    from depixcli.audit.plan import plan_tracks
    from depixcli.audit.video import score_pass
    from depixcli.faces.detect import load_detector
    from depixcli.faces.identity import SFaceIdentity
    from depixcli.faces.track import build_tracks
    from depixcli.io.video import probe, read_frames
    from depixcli.model.reconstructor import load_reconstructor
    from depixcli.model.weights import default_weights_path

    clips = collect_inputs(args.inputs)
    if any(c.split is not None for c in clips):
        clips = [c for c in clips if c.split == args.split]
    clips = readable_inputs(clips)[:: args.every]
    weights = args.weights or str(default_weights_path())
    model = load_reconstructor(weights, "auto")
    identity = SFaceIdentity()
    detector = load_detector("yunet")
    results: dict[str, list] = {}
    for c in clips:
        fps = float(probe(c.path).fps)
        frames, per_frame = [], []
        for f in read_frames(c.path):
            if f.index >= args.max_frames:
                break
            frames.append(f.image)
            rows = [np.r_[d.box, d.score, np.asarray(d.landmarks).ravel()] for d in detector.detect(f.image)]
            per_frame.append(np.array(rows, np.float64).reshape(-1, 15))
        tracks = build_tracks([r[:, :5] for r in per_frame])
        for name, way in candidates(fps).items():
            plans, _ = plan_tracks(tracks, per_frame, args.frames, model.geometry)
            anon = mosaic_frames(frames, tracks, way, fps)
            for d in score_pass(zip(frames, anon), plans, model, identity):
                row = {k: (float(np.median(v)), float(np.mean(np.array(v) >= 0.363))) for k, v in d["cos"].items()}
                results.setdefault(name, []).append({"clip": c.path.name, **row})
                print(f"{c.path.name:50s} {name:55s} " + " ".join(f"{k[0]}={m:.2f}" for k, (m, _) in row.items()),
                      file=sys.stderr, flush=True)
    print(f"model: {weights}; {len(clips)} clips, first {args.max_frames} frames, {args.frames} frames per track\n")
    print("| candidate | tracks | median cosine (a) / (b) / (c) | max over tracks of median (c) "
          "| > 0.363 (a) / (b) / (c) |")
    print("| --- | --- | --- | --- | --- |")
    for name, rows in results.items():
        med = [np.median([r[k][0] for r in rows]) for k in ("anonymised", "smoothed", "reconstructed")]
        share = [np.mean([r[k][1] for r in rows]) for k in ("anonymised", "smoothed", "reconstructed")]
        worst = max(r["reconstructed"][0] for r in rows)
        print(f"| {name} | {len(rows)} | {' / '.join(f'{v:.2f}' for v in med)} | {worst:.2f} "
              f"| {' / '.join(f'{v:.0%}' for v in share)} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"weights": weights, "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
