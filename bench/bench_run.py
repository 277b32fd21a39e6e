"""Benchmark `depix run`: fps end to end, time per stage, peak memory, at 720p and 1080p, two lengths.

    python bench/bench_run.py --sizes 1280x720     # CPU, random full-size model, 40 and 120 frames
    python bench/bench_run.py --device cuda --frames 150 600 --batch-size 64
    python bench/bench_run.py --mode boxes ...     # faces given by a sidecar: no locating
    python bench/bench_run.py --weights weights/depix-default.safetensors
    python bench/bench_run.py --sizes 1280x720 --arch compact   # random compact model (no STN)

Run from the repository root with depix importable (`pip install -e . --no-deps`, or `PYTHONPATH=.`).
Clips are generated (a synthetic moving face, pixelated 16 x 16 over the face box as `depix pixelate`
does) into a temporary directory. Each run is a fresh child process, so its peak RSS (and CUDA peak
memory) belongs to that run alone: comparing the two lengths shows whether memory grows with the video.
Pass 2 stages overlap in threads (decode+crop | model | paste | encode), so their sum exceeds the wall
time; decode counts both passes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BLOCKS = 16  # mosaic cells across the face (the paper's 16 x 16)
STAGES = ("decode", "locate", "crop", "model", "paste", "encode")
FPS = 25.0  # frames/s of the generated clips


def face_box(i: int, size: tuple[int, int], fps: float = FPS) -> tuple[float, float, float, float]:
    """Tight face box of frame i of `video.synthetic_face_frames` (same motion formula)."""
    from depixcli.io.synthetic import FACE_PERIOD_S

    w, h = size
    t = i / fps
    cx = w * (0.5 + 0.2 * math.sin(2 * math.pi * t / FACE_PERIOD_S))
    cy = h * (0.5 + 0.05 * math.cos(2 * math.pi * t / FACE_PERIOD_S))
    ay = 0.22 * h
    ax = 0.75 * ay
    return (cx - ax, cy - ay, cx + ax, cy + ay)


def make_clip(path: Path, frames: int, size: tuple[int, int]) -> None:
    """Synthetic face clip, pixelated BLOCKS x BLOCKS over the face, with audio."""
    from depixcli.geometry.mosaic import apply_mosaic
    from depixcli.io.codec import EncodeOptions
    from depixcli.io.synthetic import synthetic_face_frames, write_test_clip
    from depixcli.pixelate import PixelateConfig

    pix = PixelateConfig(blocks=BLOCKS)
    clean = synthetic_face_frames(frames, size, FPS)
    images = (apply_mosaic(img, pix.grid(face_box(i, size))) for i, img in enumerate(clean))
    write_test_clip(path, images, FPS, audio=True, options=EncodeOptions(crf=18, preset="veryfast"))


def write_clip_sidecar(path: str, frames: int, size: tuple[int, int]) -> None:
    """The face boxes and mosaic grids of a `make_clip` clip, as a --boxes sidecar (`io.sidecar.write_sidecar`)."""
    from depixcli.io.sidecar import write_sidecar
    from depixcli.pixelate import PixelateConfig

    pix = PixelateConfig(blocks=BLOCKS)
    entries = []
    for i in range(frames):
        face = face_box(i, size)
        entries.append({"index": i, "pts": None, "faces": [
            {"track": 0, "box": list(face), "filled": False, "grid": pix.grid(face).to_dict()}]})
    write_sidecar(path, {"frames": entries})


def child(spec: dict) -> dict:
    """One run in this (fresh) process; returns its figures."""
    import torch

    from depixcli.restore.config import RunConfig
    from depixcli.restore.run import run_video

    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    cfg = RunConfig(weights=spec["weights"], device=spec["device"], batch_size=spec["batch_size"],
                    quiet=True, preset=spec["preset"], boxes=spec["boxes"])
    if spec["device"] == "cuda":
        torch.cuda.reset_peak_memory_stats()
    spec["cpu0"] = _cpu_s()
    t0 = time.perf_counter()
    stats = run_video(spec["clip"], spec["out"], cfg)
    wall = time.perf_counter() - t0
    cuda_mb = torch.cuda.max_memory_allocated() / 2**20 if spec["device"] == "cuda" else 0.0
    return {
        "frames": stats.frames, "tracks": stats.tracks, "stacks": stats.stacks, "copied": stats.copied,
        "wall_s": wall, "fps": stats.frames / wall, "stages": stats.stage_s,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "cuda_mb": cuda_mb,
        "cpu_s": _cpu_s() - spec["cpu0"],
        "buffered_frames": stats.max_buffered_frames, "buffered_crops": stats.max_buffered_crops,
        "blocks": stats.block_sizes,
    }


def _cpu_s() -> float:
    """CPU seconds used by this process so far, all threads (user + system): unlike the wall time, about
    the same on a machine busy with other jobs."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def random_weights(path: Path, arch: str = "unet") -> Path:
    """A randomly initialised model, full-size U-Net + STN or compact without STN (speed does not depend on
    the weights' values)."""
    import torch

    from depixcli.model.config import ModelConfig
    from depixcli.model.nets import Depixelator
    from depixcli.model.weights import save_model

    torch.manual_seed(0)
    config = ModelConfig() if arch == "unet" else ModelConfig(arch=arch, use_stn=False)
    save_model(path, Depixelator(config), {"note": "random init, benchmark only"})
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--sizes", nargs="+", default=["1280x720", "1920x1080"], help="WxH of the clips")
    ap.add_argument("--frames", nargs=2, type=int, default=[40, 120],
                    help="short and long clip length; both above 2*w*d + batch frames, so the window is full")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--weights", default=None, help="weights file (default: random model of --arch)")
    ap.add_argument("--arch", choices=["unet", "compact"], default="unet",
                    help="architecture of the random model when no --weights (compact: no STN)")
    ap.add_argument("--mode", choices=["locate", "boxes"], default="locate",
                    help="locate: find the mosaics (full pipeline); boxes: give the faces (--boxes sidecar)")
    ap.add_argument("--preset", default="veryfast", help="x264 preset of the output")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    ap.add_argument("--workdir", default=None, help="where clips are written (default: a temp dir)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return

    work = Path(args.workdir or tempfile.mkdtemp(prefix="depix-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    weights = args.weights or str(random_weights(work / f"random_{args.arch}.safetensors", args.arch))
    rows = []
    for size_s in args.sizes:
        size = tuple(int(v) for v in size_s.lower().split("x"))
        for n in args.frames:
            clip = work / f"clip_{size_s}_{n}.mp4"
            if not clip.exists():
                t0 = time.perf_counter()
                make_clip(clip, n, size)
                print(f"generated {clip.name} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
            boxes = None
            if args.mode == "boxes":
                boxes = str(work / f"clip_{size_s}_{n}.json")
                write_clip_sidecar(boxes, n, size)
            spec = {"clip": str(clip), "out": str(work / f"out_{size_s}_{n}.mp4"), "weights": weights,
                    "device": args.device, "batch_size": args.batch_size, "preset": args.preset,
                    "threads": args.threads, "boxes": boxes}
            res = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True,
                                 text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
            if res.returncode != 0:
                sys.exit(f"run failed for {clip.name}:\n{res.stderr[-3000:]}")
            r = json.loads(res.stdout.strip().splitlines()[-1])
            r["size"], r["n"] = size_s, n
            rows.append(r)
            print(f"{size_s} x {n}: {r['fps']:.2f} fps", file=sys.stderr)
    print_table(rows, args)


def print_table(rows: list[dict], args) -> None:
    print(f"\ndepix run benchmark: device={args.device} batch={args.batch_size} mode={args.mode} "
          f"preset={args.preset} (stage times in ms/frame; stages overlap across threads; CPU ms: CPU time "
          f"of the run per frame, all threads)")
    head = f"{'clip':>16} {'fps':>7} {'wall s':>7} " + " ".join(f"{s:>7}" for s in STAGES)
    head += f" {'CPU ms':>7} {'RSS MB':>7} {'CUDA MB':>8} {'buf fr':>6} {'buf cr':>6} {'tracks':>6}"
    print(head)
    for r in rows:
        per = {s: 1000 * r["stages"].get(s, 0.0) / max(r["frames"], 1) for s in STAGES}
        print(f"{r['size'] + ' x' + str(r['n']):>16} {r['fps']:7.2f} {r['wall_s']:7.1f} "
              + " ".join(f"{per[s]:7.1f}" for s in STAGES)
              + f" {1000 * r['cpu_s'] / max(r['frames'], 1):7.1f}"
              + f" {r['rss_mb']:7.0f} {r['cuda_mb']:8.0f} {r['buffered_frames']:6d} {r['buffered_crops']:6d}"
              + f" {r['tracks']:6d}" + ("  (no mosaic found: copied)" if r["copied"] else ""))
    print("\nratios")
    by = {(r["size"], r["n"]): r for r in rows}
    sizes = list(dict.fromkeys(r["size"] for r in rows))
    short, long_ = args.frames
    for s in sizes:
        a, b = by.get((s, short)), by.get((s, long_))
        if a and b:
            print(f"  {s}: {long_}/{short} frames -> peak RSS x{b['rss_mb'] / a['rss_mb']:.2f}"
                  + (f", CUDA peak x{b['cuda_mb'] / a['cuda_mb']:.2f}" if a["cuda_mb"] else "")
                  + f", buffered frames {a['buffered_frames']} -> {b['buffered_frames']}"
                  + f", fps x{b['fps'] / a['fps']:.2f}")
        if b:
            tot = sum(b["stages"].get(k, 0.0) for k in STAGES) or 1.0
            print(f"  {s} x{long_}: share of stage time "
                  + ", ".join(f"{k} {100 * b['stages'].get(k, 0.0) / tot:.0f}%" for k in STAGES))
    if len(sizes) >= 2:
        a, b = by.get((sizes[0], long_)), by.get((sizes[1], long_))
        if a and b:
            print(f"  fps {sizes[1]} / {sizes[0]}: x{b['fps'] / a['fps']:.2f}")


if __name__ == "__main__":
    main()
