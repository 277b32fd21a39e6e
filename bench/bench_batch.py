"""Benchmark many videos: a 20-clip `depix run` batch at --jobs 1, --jobs 2 and on a local Dask cluster.

    python bench/bench_batch.py prepare ../shared/data/clips.csv -o ../scratch/bench_batch
    python bench/bench_batch.py time direct -o ../scratch/bench_batch    # then jobs1, rerun, jobs2, cluster
    python bench/bench_batch.py table -o ../scratch/bench_batch

Run from the repository root with depix importable (`pip install -e ".[cluster]"`, or `PYTHONPATH=.`).
`prepare` builds the batch in DIR/pixelated (outside git): `--real` clips of the CSV's `val` split (at most
`--max-side` px, one per identity, taken in turn from each source repository), cut to their first
`--frames` frames and pixelated by `depix pixelate --max-frames` (a batch itself), plus one generated
corrupt file (the first half of a synthetic clip's bytes). `time MODE` times one configuration, a fresh
`python -m depixcli run` process from start to exit, and appends its row to DIR/timings.jsonl (one call per
mode, so that each fits a quiet window of the machine):
  direct     one process calling `restore.run.run_video` on each clip in turn (no batch): the work itself;
  jobs1      `depix run DIR -o OUT` (in the CLI process);
  rerun      the jobs1 command again: only the resume check (every output hashed), nothing run;
  jobs2      `--jobs 2`: two worker processes, one torch thread each;
  cluster    `--cluster ADDRESS`: a Dask LocalCluster started here (2 workers x 1 thread, loopback); its
             start-up is timed apart.
`table` prints the rows as a Markdown table. Overhead per video = (wall - direct wall / workers) / videos;
CPU s = user + system seconds of every process the mode started (the cluster's start-up included); the load
average is the machine's at the start and end of the mode.
Every batch must exit 1 with the corrupt clip recorded as failed and the 19 others done, and the rerun
must run nothing; `table` counts the outputs of each mode that are byte-identical to jobs1's.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from itertools import zip_longest
from pathlib import Path

from depixcli.batch.records import file_digest, read_manifest
from depixcli.io.synthetic import make_synthetic_clip

CORRUPT_SHARE = 0.5  # the corrupt input: the first half of a generated clip's bytes
CORRUPT_FRAMES = 24  # frames of the generated clip it is cut from
MODES = ("direct", "jobs1", "rerun", "jobs2", "cluster")
WORKERS = {"direct": 1, "jobs1": 1, "rerun": 1, "jobs2": 2, "cluster": 2}


def pick_val(csv_path: Path, n: int, max_side: int) -> list[dict]:
    """`n` rows of the CSV's val split, one per identity, at most `max_side` px, taken in turn from each
    source repository (CSV order within one)."""
    with open(csv_path, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r.get("split") == "val"]
    by_repo: dict[str, list[dict]] = {}
    seen = set()
    for r in rows:
        if max(int(r["width"]), int(r["height"])) > max_side or r["identity"] in seen:
            continue
        if not (csv_path.parent / r["file"]).is_file():
            continue
        seen.add(r["identity"])
        by_repo.setdefault(r["repository"], []).append(r)
    turns = [r for group in zip_longest(*by_repo.values()) for r in group if r is not None]
    return turns[:n]


def depix(*args: str) -> tuple[float, int, str]:
    """Run `python -m depixcli ARGS`; (wall s, exit status, stderr)."""
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "depixcli", *args], capture_output=True, text=True)
    return time.perf_counter() - t0, r.returncode, r.stderr


DIRECT = """
import sys
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


def same_outputs(out: Path, ref: Path) -> tuple[int, int]:
    """(videos of `ref` that `out` holds byte for byte, videos of `ref`)."""
    videos = sorted(p.name for p in ref.glob("*.mp4"))
    same = sum((out / v).is_file() and file_digest(out / v) == file_digest(ref / v) for v in videos)
    return same, len(videos)


def prepare(args) -> None:
    work = args.workdir.resolve()
    pix = work / "pixelated"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    rows = pick_val(args.clips_csv, args.real, args.max_side)
    listing = work / "val.csv"
    with open(listing, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["input", "output"])
        for i, r in enumerate(rows):
            w.writerow([str((args.clips_csv.parent / r["file"]).resolve()), f"{i:02d}_{Path(r['file']).stem}.mp4"])
    s, rc, err = depix("pixelate", str(listing), "-o", str(pix), "--max-frames", str(args.frames), "--preset",
                       args.preset, "-q", "--results", str(work / "pixelate.jsonl"))
    if rc != 0:
        sys.exit(f"pixelate failed: {err.strip()}")
    gen = work / "generated.mp4"
    make_synthetic_clip(gen, CORRUPT_FRAMES, (320, 240))
    data = gen.read_bytes()
    (pix / "zz_corrupt.mp4").write_bytes(data[: int(len(data) * CORRUPT_SHARE)])
    gen.unlink()
    n = len(list(pix.iterdir()))
    sizes = sorted({f"{r['width']}x{r['height']}" for r in rows})
    print(f"batch: {len(rows)} real val clips ({', '.join(sizes)}; first {args.frames} frames, pixelated) + 1 corrupt "
          f"= {n} files in {pix}; pixelated in {s:.1f} s", flush=True)


def _children_cpu() -> float:
    """User + system CPU seconds of the finished child processes (and theirs, once waited for)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def time_mode(args) -> None:
    work = args.workdir.resolve()
    pix = work / "pixelated"
    n = len(list(pix.iterdir()))
    common = ["--preset", args.preset, "-q"]
    load0 = os.getloadavg()[0]
    cpu0 = _children_cpu()
    started = None
    mode = args.mode
    out = work / ("jobs1" if mode == "rerun" else mode)
    if mode == "direct":
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", DIRECT, str(pix), str(out), args.preset], check=True)
        s, rc, err = time.perf_counter() - t0, 0, ""
    elif mode == "cluster":
        from distributed import LocalCluster  # the optional `cluster` extra: only this mode needs it

        shutil.rmtree(out, ignore_errors=True)
        t0 = time.perf_counter()
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address=None) as cluster:
            started = time.perf_counter() - t0
            s, rc, err = depix("run", str(pix), "-o", str(out), *common, "--cluster", cluster.scheduler_address)
    else:
        if mode == "rerun":
            before = (out / "depix-batch.jsonl").read_bytes()
        else:
            shutil.rmtree(out, ignore_errors=True)
        extra = ["-j", "2"] if mode == "jobs2" else []
        s, rc, err = depix("run", str(pix), "-o", str(out), *common, *extra)
    row = {"mode": mode, "wall_s": round(s, 2), "cpu_s": round(_children_cpu() - cpu0, 2), "videos": n,
           "workers": WORKERS[mode], "exit": rc,
           "load_start": round(load0, 2), "load_end": round(os.getloadavg()[0], 2),
           "cluster_start_s": round(started, 2) if started is not None else None}
    if mode != "direct":
        recs = read_manifest(out / "depix-batch.jsonl")
        failed = [os.path.basename(r["input"]) for r in recs.values() if r["status"] == "failed"]
        row.update(done=sum(r["status"] == "done" for r in recs.values()), failed=failed,
                   error=next((r["error"] for r in recs.values() if r["status"] == "failed"), None))
        if rc != 1 or failed != ["zz_corrupt.mp4"] or row["done"] != n - 1:
            sys.exit(f"{mode}: exit {rc}, failed {failed}, done {row['done']} of {n}: {err.strip()[-2000:]}")
        if mode == "rerun":
            row["nothing_run"] = (out / "depix-batch.jsonl").read_bytes() == before
    with open(work / "timings.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row), flush=True)


def table(args) -> None:
    work = args.workdir.resolve()
    rows: dict[str, dict] = {}
    with open(work / "timings.jsonl", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            rows[r["mode"]] = r  # the last timing of each mode
    direct = rows.get("direct", {}).get("wall_s")
    base = rows.get("jobs1", {}).get("wall_s")
    print("| mode | wall s | x jobs 1 | overhead s/video | CPU s | outputs vs `--jobs 1` | load avg start/end |")
    print("|---|---:|---:|---:|---:|---|---|")
    for mode in MODES:
        r = rows.get(mode)
        if r is None:
            continue
        label = {"direct": "direct (`run_video` loop, no batch)", "jobs1": "`--jobs 1`",
                 "rerun": "rerun of `--jobs 1` (nothing to do)", "jobs2": "`--jobs 2`",
                 "cluster": f"`--cluster` LocalCluster 2 x 1 (+{r['cluster_start_s']} s to start it)"}[mode]
        speed = f"{base / r['wall_s']:.2f}" if base and mode not in ("direct", "rerun") else ""
        if direct and mode not in ("direct", "rerun"):
            over = f"{(r['wall_s'] - direct / r['workers']) / r['videos']:.2f}"
        elif mode == "rerun":
            over = f"{r['wall_s'] / r['videos']:.2f}"
        else:
            over = ""
        if mode == "jobs1":
            same = "-"
        elif mode == "rerun":
            same = "nothing run" if r.get("nothing_run") else "RAN AGAIN"
        else:
            same = "{} of {} byte-identical".format(*same_outputs(work / mode, work / "jobs1"))
        cpu = f"{r['cpu_s']:.1f}" if r.get("cpu_s") is not None else ""
        print(f"| {label} | {r['wall_s']:.1f} | {speed} | {over} | {cpu} | {same} | {r['load_start']} / "
              f"{r['load_end']} |")
    if "jobs1" in rows:
        r = rows["jobs1"]
        print(f"\n{r['videos']} files: {r['done']} done, failed: {', '.join(r['failed'])} ({r['error']})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sub = ap.add_subparsers(dest="step", required=True)
    p = sub.add_parser("prepare", help="build the batch")
    p.add_argument("clips_csv", type=Path, help="clip list with file,identity,split,width,height,repository columns")
    p.add_argument("--real", type=int, default=19, help="real val clips")
    p.add_argument("--frames", type=int, default=24, help="frames kept of each real clip")
    p.add_argument("--max-side", type=int, default=512, help="px: largest real clip taken")
    t = sub.add_parser("time", help="time one configuration")
    t.add_argument("mode", choices=MODES)
    sub.add_parser("table", help="print the timings as a Markdown table")
    for q in (p, t, sub.choices["table"]):
        q.add_argument("-o", "--workdir", type=Path, required=True, help="scratch folder (outside git)")
        q.add_argument("--preset", default="veryfast", help="x264 preset of the outputs")
    args = ap.parse_args()
    {"prepare": prepare, "time": time_mode, "table": table}[args.step](args)


if __name__ == "__main__":
    main()
