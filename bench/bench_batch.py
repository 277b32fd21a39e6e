"""Benchmark many videos: a 20-clip `depix run` batch at --jobs 1, --jobs 2 and on a local Dask cluster.

    python bench/bench_batch.py ../shared/data/clips.csv -o scratch/bench_batch
    python bench/bench_batch.py CLIPS.csv -o DIR --generated 15 --real 4 --frames 40 --size 320x240

Run from the repository root with depix importable (`pip install -e ".[cluster]"`, or `PYTHONPATH=.`).
The batch (in DIR/pixelated, outside git): `--generated` synthetic face clips and `--real` short clips from
the CSV (copied, at most `--max-side` px and `--max-frames` frames, one per source repository), all
pixelated by `depix pixelate` (a batch itself), plus one truncated copy: the corrupt input. Then, each a
fresh `python -m depixcli run` process timed from start to exit:
  direct     one process calling `run.run_video` on each clip in turn (no batch): the work itself;
  jobs 1     `depix run DIR -o OUT` (in the CLI process);
  rerun      the same command again: only the resume check (every output hashed), nothing run;
  jobs 2     `--jobs 2`: two worker processes, one torch thread each;
  cluster    `--cluster ADDRESS`: a Dask LocalCluster started here (2 workers x 1 thread, loopback).
Overhead per video = (wall - direct wall / workers) / videos. All runs must produce the same outputs (their
result manifests' SHA-256 are compared) and record the corrupt clip as failed.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

CORRUPT_SHARE = 0.5  # the corrupt input: the first half of a generated clip's bytes


def pick_real(csv_path: Path, n: int, max_side: int, max_frames: int) -> list[Path]:
    """`n` short, small clips of the CSV, from different source repositories."""
    with open(csv_path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    out, repos = [], set()
    for r in rows:
        if len(out) == n:
            break
        try:
            small = max(int(r["width"]), int(r["height"])) <= max_side and int(r["frames"]) <= max_frames
        except (KeyError, ValueError):
            continue
        path = csv_path.parent / r["file"]
        if small and r.get("repository") not in repos and path.is_file():
            repos.add(r.get("repository"))
            out.append(path)
    return out


def depix(*args: str, env=None) -> tuple[float, int, str]:
    """Run `python -m depixcli ARGS`; (wall s, exit status, stderr)."""
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "depixcli", *args], capture_output=True, text=True, env=env)
    return time.perf_counter() - t0, r.returncode, r.stderr


DIRECT = """
import sys, time
from pathlib import Path
from depixcli.errors import DepixError
from depixcli.restore.config import RunConfig
from depixcli.restore.run import run_video
src, out, preset = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
out.mkdir(parents=True, exist_ok=True)
for clip in sorted(src.iterdir()):
    if clip.suffix == ".mp4":
        try:
            run_video(clip, out / clip.name, RunConfig(preset=preset, quiet=True))
        except DepixError:
            pass
"""


def digests(out: Path) -> dict[str, list]:
    """{output name: [size, sha256]} of a batch's result manifest (None for a failed video)."""
    from depixcli.batch import read_manifest

    recs = read_manifest(out / "depix-batch.jsonl")
    return {os.path.basename(k): r.get("files", {}).get(k) for k, r in recs.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("clips_csv", type=Path, help="clip list with file,width,height,frames,repository columns")
    ap.add_argument("-o", "--workdir", type=Path, required=True, help="scratch folder (outside git)")
    ap.add_argument("--generated", type=int, default=15, help="synthetic face clips")
    ap.add_argument("--real", type=int, default=4, help="real clips copied from the CSV")
    ap.add_argument("--frames", type=int, default=40, help="frames of each synthetic clip")
    ap.add_argument("--size", default="320x240", help="WxH of the synthetic clips")
    ap.add_argument("--max-side", type=int, default=512, help="px: largest real clip taken")
    ap.add_argument("--max-frames", type=int, default=80, help="longest real clip taken")
    ap.add_argument("--preset", default="veryfast", help="x264 preset of the outputs")
    args = ap.parse_args()

    from depixcli.io.synthetic import make_synthetic_clip

    work = args.workdir.resolve()
    raw, pix = work / "raw", work / "pixelated"
    shutil.rmtree(work, ignore_errors=True)
    raw.mkdir(parents=True)
    w, h = (int(v) for v in args.size.split("x"))
    for i in range(args.generated):
        make_synthetic_clip(raw / f"gen{i:02d}.mp4", args.frames + 2 * i, (w, h), audio=i % 2 == 0)
    real = pick_real(args.clips_csv, args.real, args.max_side, args.max_frames)
    for p in real:
        shutil.copyfile(p, raw / p.name)
    s, rc, err = depix("pixelate", str(raw), "-o", str(pix), "--preset", args.preset, "-q", "--results",
                       str(work / "pixelate.jsonl"))
    assert rc == 0, err
    data = (pix / "gen00.mp4").read_bytes()
    (pix / "zz_corrupt.mp4").write_bytes(data[: int(len(data) * CORRUPT_SHARE)])
    n = len(list(pix.iterdir()))
    print(f"batch: {args.generated} generated ({args.size}, {args.frames}+ frames), {len(real)} real "
          f"({', '.join(p.name for p in real)}), 1 corrupt = {n} clips; pixelated in {s:.1f} s", file=sys.stderr)

    print(f"{n} clips ({n - 1} good + 1 corrupt), CPU cores: {len(os.sched_getaffinity(0))}, "
          f"load average at the start: {os.getloadavg()[0]:.1f}", flush=True)
    print(f"{'mode':<48} {'wall s':>7} {'x jobs 1':>8} {'overhead s/video':>16} {'outputs':>9}", flush=True)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", DIRECT, str(pix), str(work / "direct"), args.preset], check=True)
    direct = time.perf_counter() - t0
    print(f"{'direct (run_video loop)':<48} {direct:7.1f} {'':>8} {'':>16} {'-':>9}", flush=True)
    base = None

    def row(label: str, s: float, workers: int, out: Path) -> None:
        """One line, printed as soon as the mode is done (a long bench still leaves its first figures)."""
        over = float("nan") if "rerun" in label else (s - direct / workers) / n
        same = "identical" if digests(out) == digests(work / "jobs1") else "DIFFER"
        print(f"{label:<48} {s:7.1f} {base / s:8.2f} {over:16.2f} {same:>9}", flush=True)

    common = ["--preset", args.preset, "-q"]
    for label, extra, workers in (("--jobs 1", [], 1), ("rerun (nothing to do)", [], 1), ("--jobs 2", ["-j", "2"], 2)):
        out = work / ("jobs2" if workers == 2 else "jobs1")
        s, rc, err = depix("run", str(pix), "-o", str(out), *common, *extra)
        assert rc == 1 and "1 of" in err, err  # the corrupt clip
        base = base or s
        row(label, s, workers, out)
    from distributed import LocalCluster

    t0 = time.perf_counter()
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        started = time.perf_counter() - t0
        s, rc, err = depix("run", str(pix), "-o", str(work / "cluster"), *common, "--cluster",
                           cluster.scheduler_address)
        assert rc == 1 and "1 of" in err, err
    row(f"Dask LocalCluster 2 x 1 (+{started:.1f} s to start it)", s, 2, work / "cluster")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    from depixcli.batch import read_manifest

    for r in read_manifest(work / "jobs1" / "depix-batch.jsonl").values():
        if r["status"] == "failed":
            print(f"recorded as failed: {os.path.basename(r['input'])}: {r['error']}")


if __name__ == "__main__":
    main()
