"""Many videos (`depixcli.batch`): plan, resume, --jobs, a Dask cluster, workers killed mid-video."""

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from depixcli.batch.engines import ClusterUnreachable, connect_cluster
from depixcli.batch.plan import plan_jobs
from depixcli.batch.records import config_key, is_finished, read_manifest
from depixcli.batch.run import BatchConfig, run_batch
from depixcli.cli import main
from depixcli.errors import InputError, OutputError
from depixcli.io.synthetic import make_synthetic_clip
from depixcli.io.video import probe, read_frames
from depixcli.restore.config import RunConfig

REGION = "60,30,40,50"  # px x,y,w,h: the mosaic rect given to `depix run` (skips the locator: fast)
LONG_FRAMES = 600  # frames of the clip a worker is killed on (seconds of work, so the kill lands mid-video)
BOUND_S = 240  # s: a batch that takes longer than this has hung
STOP_FRAMES = 1800  # frames of the clip a batch is stopped on (its video alone takes far longer than STOP_BOUND_S)
STOP_BOUND_S = 10  # s from SIGTERM / Ctrl-C to a --jobs 2 batch's exit (1 s quiet, 6-7 s at load 9; 44 s unfixed)
UNREACHABLE_BOUND_S = 8  # s to give up on a closed scheduler port with --cluster-timeout 1


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """in/a.mp4 (12 frames), in/sub/b.mov (8, audio), in/sub/deep/c.mp4 (10), in/sub/cut.mp4 (truncated),
    plus files that are no input: in/notes.txt, in/.hidden.mp4."""
    root = tmp_path_factory.mktemp("tree") / "in"
    (root / "sub" / "deep").mkdir(parents=True)
    make_synthetic_clip(root / "a.mp4", 12)
    make_synthetic_clip(root / "sub" / "b.mov", 8, audio=True)
    make_synthetic_clip(root / "sub" / "deep" / "c.mp4", 10)
    data = (root / "a.mp4").read_bytes()
    (root / "sub" / "cut.mp4").write_bytes(data[: len(data) // 2])
    (root / "notes.txt").write_text("not a video")
    (root / ".hidden.mp4").write_bytes(data)
    return root


GOOD = {"a.mp4": 12, "sub/b.mov": 8, "sub/deep/c.mp4": 10}


def run_args(src, out, weights, *more):
    return ["run", str(src), "-o", str(out), "-w", str(weights), "--region", REGION, "--preset", "ultrafast", "-q",
            *more]


def outputs(out: Path) -> dict[str, list]:
    """{relative output path: [size, sha256]} of the done records of a manifest."""
    recs = read_manifest(out / "depix-batch.jsonl")
    return {os.path.relpath(r["output"], out): r["files"][r["output"]] for r in recs.values() if r["status"] == "done"}


def leftovers(directory: Path) -> list[str]:
    return [str(p) for p in directory.rglob(".*") if "depix-tmp" in p.name or p.name.endswith(".tmp")]


# ------------------------------------------------------------------------------------------ plan
def test_plan_mirrors_a_folder_a_glob_and_a_csv(tree, tmp_path):
    out = tmp_path / "out"
    jobs = plan_jobs("run", [str(tree)], out)
    assert [os.path.relpath(j.output, out) for j in jobs] == ["a.mp4", "sub/b.mov", "sub/cut.mp4", "sub/deep/c.mp4"]
    assert all(os.path.isabs(j.input) and os.path.isabs(j.output) for j in jobs)  # workers may run elsewhere
    jobs = plan_jobs("pixelate", [str(tree / "sub" / "**" / "*.mp4")], out, extras={"boxes": tmp_path / "boxes"})
    assert [os.path.relpath(j.output, out) for j in jobs] == ["cut.mp4", "deep/c.mp4"]  # below the glob's root
    assert jobs[1].extra("boxes") == str(tmp_path / "boxes" / "deep" / "c.json")
    originals = tmp_path / "orig"
    (originals / "sub").mkdir(parents=True)
    (originals / "sub" / "b.mp4").write_bytes(b"x")  # an .mp4 original of the anonymised .mov
    jobs = plan_jobs("audit", [str(tree)], out, originals=originals)
    assert os.path.relpath(jobs[1].output, out) == "sub/b.json"
    assert jobs[1].original == str(originals / "sub" / "b.mp4")
    csv = tmp_path / "list.csv"
    csv.write_text("input,original,output\nin/a.mp4,in/sub/b.mov,x/first.json\nin/sub/deep/c.mp4,in/a.mp4,\n")
    (tmp_path / "in").symlink_to(tree)
    jobs = plan_jobs("audit", [str(csv)], out)
    assert [(os.path.relpath(j.output, out), os.path.basename(j.original)) for j in jobs] == [
        ("x/first.json", "b.mov"), ("c.json", "a.mp4")]
    with pytest.raises(InputError, match="would both write"):  # a.mp4 twice
        plan_jobs("run", [str(tree / "a.mp4"), str(tree)], out)
    with pytest.raises(OutputError, match="inside the input folder"):
        plan_jobs("run", [str(tree)], tree / "restored")
    (tmp_path / "mpeg").mkdir()
    (tmp_path / "mpeg" / "x.mpg").write_bytes(b"x")  # MPEG-PS (as in GRID / LipNet): a video, written as .mp4
    assert [os.path.basename(j.output) for j in plan_jobs("run", [str(tmp_path / "mpeg")], out)] == ["x.mp4"]
    with pytest.raises(InputError, match="no video file matches"):
        plan_jobs("run", [str(tree / "*.mkv")], out)


def test_plan_names_further_outputs_and_sidecars_at_the_same_relative_path(tree, tmp_path):
    out, more = tmp_path / "reports", {k: tmp_path / k for k in ("sheet", "csv", "repair")}
    jobs = plan_jobs("audit", [str(tree)], out, originals=tmp_path / "orig", extras=more)
    b = jobs[1]
    assert os.path.relpath(b.output, out) == "sub/b.json"
    assert {k: os.path.relpath(b.extra(k), tmp_path) for k in more} == {
        "sheet": "sheet/sub/b.png", "csv": "csv/sub/b.csv", "repair": "repair/sub/b.mov"}  # .mov takes H.264
    assert b.outputs == (b.output, b.extra("sheet"), b.extra("csv"), b.extra("repair"))
    with pytest.raises(OutputError, match="inside the input folder"):  # repaired videos would become inputs
        plan_jobs("audit", [str(tree)], out, originals=tmp_path / "orig", extras={"repair": tree / "fixed"})
    (tmp_path / "l.csv").write_text(f"input,original\n{tree / 'sub' / 'b.mov'},{tree / 'a.mp4'}\n")
    with pytest.raises(OutputError, match="would overwrite an input"):  # repair/b.mov = the input
        plan_jobs("audit", [str(tmp_path / "l.csv")], out, extras={"repair": tree / "sub"})
    jobs = plan_jobs("run", [str(tree)], tmp_path / "out", boxes=tmp_path / "boxes")
    assert [os.path.relpath(j.boxes, tmp_path) for j in jobs] == [
        "boxes/a.json", "boxes/sub/b.json", "boxes/sub/cut.json", "boxes/sub/deep/c.json"]
    (tmp_path / "l.csv").write_text(f"input,boxes\n{tree / 'a.mp4'},a.sidecar.json\n{tree / 'sub' / 'b.mov'},\n")
    jobs = plan_jobs("run", [str(tmp_path / "l.csv")], tmp_path / "out", boxes=tmp_path / "boxes")
    assert [j.boxes for j in jobs] == [str(tmp_path / "a.sidecar.json"), str(tmp_path / "boxes" / "b.json")]
    assert [j.boxes for j in plan_jobs("pixelate", [str(tmp_path / "l.csv")], tmp_path / "out")] == [None, None]


def test_batch_options_need_many_inputs(tree, tmp_path, tiny_weights):
    r = CliRunner().invoke(main, run_args(tree / "a.mp4", tmp_path / "o.mp4", tiny_weights, "--jobs", "2"))
    assert r.exit_code == 2 and "many inputs" in r.output
    r = CliRunner().invoke(main, ["audit", str(tree), "--original", str(tree)])
    assert r.exit_code == 2 and "--json" in r.output


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_failed_video_is_worded_with_the_flag_of_its_option(tree, tmp_path, tiny_weights):
    """The library records the value (`option` names its config field); the CLI words it with the flag."""
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.mp4").write_bytes((tree / "a.mp4").read_bytes())
    out = tmp_path / "out"
    r = CliRunner().invoke(main, run_args(src, out, tiny_weights, "--device", "cuda"))
    assert r.exit_code == 1 and r.output.splitlines()[0] == (
        f"Failed: {src / 'a.mp4'}: --device cuda: no CUDA device is available (use cpu or auto)")
    rec = read_manifest(out / "depix-batch.jsonl")[str(out / "a.mp4")]
    assert rec["option"] == "device" and rec["error"] == "cuda: no CUDA device is available (use cpu or auto)"


# ------------------------------------------------------------------------------------------ resume
def test_bad_video_recorded_good_ones_done_and_a_rerun_does_nothing(tree, tmp_path, tiny_weights):
    out = tmp_path / "out"
    r = CliRunner().invoke(main, run_args(tree, out, tiny_weights))
    assert r.exit_code == 1, r.output
    lines = r.output.strip().splitlines()
    assert lines[0].startswith("Failed: ") and "cut.mp4" in lines[0]
    assert lines[-1].startswith("Error: 1 of 4 videos failed")
    for rel, frames in GOOD.items():
        assert probe(out / rel).frames == frames
    assert not (out / "sub" / "cut.mp4").exists() and leftovers(out) == []
    recs = {os.path.relpath(k, out): v for k, v in read_manifest(out / "depix-batch.jsonl").items()}
    assert recs["sub/cut.mp4"]["status"] == "failed" and recs["sub/cut.mp4"]["error_kind"] == "input"
    assert all(recs[rel]["status"] == "done" and recs[rel]["frames"] == n and recs[rel]["tracks"] == 1
               for rel, n in GOOD.items())
    manifest = (out / "depix-batch.jsonl").read_bytes()
    stamps = {rel: (out / rel).stat().st_mtime_ns for rel in GOOD}
    r = CliRunner().invoke(main, run_args(tree, out, tiny_weights))
    assert r.exit_code == 1 and "1 of 4 videos failed" in r.output  # still failed, not tried again
    assert (out / "depix-batch.jsonl").read_bytes() == manifest  # nothing run, nothing recorded
    assert {rel: (out / rel).stat().st_mtime_ns for rel in GOOD} == stamps


def test_rerun_redoes_what_is_unfinished_or_changed(tree, tmp_path, tiny_weights):
    src = tmp_path / "in"
    src.mkdir()
    for rel in ("a.mp4", "sub/deep/c.mp4"):
        (src / Path(rel).name).write_bytes((tree / rel).read_bytes())
    out = tmp_path / "out"
    cfg = RunConfig(weights=str(tiny_weights), region=(60, 30, 40, 50), preset="ultrafast")
    jobs = plan_jobs("run", [str(src)], out)
    first = run_batch("run", cfg, jobs, output_dir=out)
    assert [r["status"] for r in first.records] == ["done", "done"]
    good = (out / "a.mp4").read_bytes()
    (out / "a.mp4").write_bytes(good[:-100])  # damaged after the run: same name, other bytes
    with open(out / "depix-batch.jsonl", "a") as f:
        f.write('{"input": "cut off by a kil')  # the end of a batch killed while writing a line
    again = run_batch("run", cfg, jobs, output_dir=out)
    assert [os.path.basename(r["output"]) for r in again.records] == ["a.mp4"] and again.skipped == 1
    assert (out / "a.mp4").read_bytes() == good
    other = dataclasses.replace(cfg, crf=30)  # other settings: everything redone
    assert [os.path.basename(r["output"]) for r in run_batch("run", other, jobs, output_dir=out).records] == [
        "a.mp4", "c.mp4"]


# ------------------------------------------------------------------------------------------ engines
def descendants(root: int | None = None) -> list[int]:
    """PIDs of the processes `root` (default: this test process) started (children, grandchildren, ...)."""
    parent: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                parent[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    out, todo = [], [root or os.getpid()]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        out += kids
        todo += kids
    return out


def writer_of(directory: Path) -> tuple[int, str] | None:
    """(pid, temporary file) of a process started by this test that has a depix temp file in
    `directory` open: a worker in the middle of encoding a video."""
    for pid in descendants():
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd)
                if target.startswith(str(directory)) and ".depix-tmp-" in target:
                    return pid, target
        except OSError:
            continue
    return None


def writing_long(out: Path, alive) -> tuple[int, str]:
    """Wait until a worker writes the long clip's output; (pid, temp file)."""
    deadline = time.monotonic() + BOUND_S
    while time.monotonic() < deadline and alive():
        found = writer_of(out)
        if found is not None and "long.mp4" in found[1]:
            return found
        time.sleep(0.005)
    pytest.fail("no worker was seen writing long.mp4")


def kill_mid_video(out: Path, batch: threading.Thread) -> tuple[int, str]:
    """Wait until a worker writes the long clip's output, SIGKILL it; returns (pid, temp file)."""
    found = writing_long(out, batch.is_alive)
    os.kill(found[0], signal.SIGKILL)
    return found


@pytest.fixture(scope="module")
def batch_in(tmp_path_factory, tree):
    """Three short clips and one long one (a worker gets killed on it), flat."""
    d = tmp_path_factory.mktemp("batch") / "in"
    d.mkdir()
    for rel in GOOD:
        (d / Path(rel).name).write_bytes((tree / rel).read_bytes())
    make_synthetic_clip(d / "long.mp4", LONG_FRAMES)
    return d


@pytest.fixture(scope="module")
def reference(batch_in, tiny_weights, tmp_path_factory):
    """Outputs of the batch in this process (--jobs 1): [size, sha256] per output."""
    out = tmp_path_factory.mktemp("ref") / "out"
    r = CliRunner().invoke(main, run_args(batch_in, out, tiny_weights))
    assert r.exit_code == 0, r.output
    return outputs(out)


@pytest.fixture(scope="module")
def stop_in(tmp_path_factory, batch_in):
    """The short clips of `batch_in` and a longer long.mp4 (a batch gets stopped on it)."""
    d = tmp_path_factory.mktemp("stop") / "in"
    d.mkdir()
    for f in batch_in.iterdir():
        if f.name != "long.mp4":
            (d / f.name).write_bytes(f.read_bytes())
    make_synthetic_clip(d / "long.mp4", STOP_FRAMES)
    return d


def run_in_thread(fn) -> tuple[threading.Thread, list]:
    box: list = []
    t = threading.Thread(target=lambda: box.append(fn()), daemon=True)
    t.start()
    return t, box


def check_complete(out: Path, reference: dict, killed_pid: int) -> None:
    lines = [json.loads(x) for x in (out / "depix-batch.jsonl").read_text().splitlines()]
    assert sorted(os.path.basename(r["output"]) for r in lines) == ["a.mp4", "b.mov", "c.mp4", "long.mp4"]
    assert all(r["status"] == "done" for r in lines)  # one record each, all done: nothing lost
    long = next(r for r in lines if r["output"].endswith("long.mp4"))
    assert long["frames"] == LONG_FRAMES and not long["worker"].endswith(f":{killed_pid}")
    assert outputs(out) == reference  # byte-identical to the in-process run
    assert probe(out / "long.mp4").frames == LONG_FRAMES
    assert leftovers(out) == []  # the killed worker's temp file was swept


def test_local_jobs_survive_a_killed_worker_with_identical_outputs(batch_in, reference, tiny_weights, tmp_path):
    out = tmp_path / "out"
    cfg = RunConfig(weights=str(tiny_weights), region=(60, 30, 40, 50), preset="ultrafast")
    jobs = plan_jobs("run", [str(batch_in)], out)
    batch, box = run_in_thread(lambda: run_batch("run", cfg, jobs, BatchConfig(jobs=2), output_dir=out))
    pid, _ = kill_mid_video(out, batch)
    batch.join(BOUND_S)
    assert not batch.is_alive() and box and box[0].engine == "2 local processes"
    check_complete(out, reference, pid)


def test_cluster_gives_identical_outputs_and_survives_a_killed_worker(batch_in, reference, tiny_weights, tmp_path):
    distributed = pytest.importorskip("distributed", reason="the cluster extra is not installed: "
                                                            "pip install 'depix[cluster]' (scripts/install.sh does)")
    out = tmp_path / "out"
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None, worker_dashboard_address=None) as cluster:
        address = cluster.scheduler_address
        assert address.startswith("tcp://127.0.0.1:")  # loopback only
        args = run_args(batch_in, out, tiny_weights, "--cluster", address)
        batch, box = run_in_thread(lambda: CliRunner().invoke(main, args))
        pid, _ = kill_mid_video(out, batch)
        batch.join(BOUND_S)
        assert not batch.is_alive()
    assert box[0].exit_code == 0, box[0].output
    check_complete(out, reference, pid)
    r = CliRunner().invoke(main, run_args(batch_in, out, tiny_weights, "--cluster", address))
    assert r.exit_code == 0 and r.output == ""  # finished: nothing to do, the (closed) cluster is not contacted


def test_cli_constants_match_library():
    from depixcli.batch.engines import CONNECT_TIMEOUT_S
    from depixcli.batch.run import CLUSTER_ENV
    from depixcli.commands import batch as cli

    assert cli.CLUSTER_ENV == CLUSTER_ENV == "DASK_SCHEDULER_ADDRESS"
    assert cli.CONNECT_TIMEOUT_S == CONNECT_TIMEOUT_S


def test_unreachable_cluster_fails_fast_with_one_line(tree, tmp_path, tiny_weights):
    pytest.importorskip("distributed", reason="the cluster extra is not installed")
    with socket.socket() as s:  # a loopback port nobody listens on: connections are refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "out"
    t0 = time.monotonic()
    r = CliRunner().invoke(main, run_args(tree, out, tiny_weights, "--cluster", f"tcp://127.0.0.1:{port}",
                                          "--cluster-timeout", "1"))
    took = time.monotonic() - t0
    assert r.exit_code == 1 and took < UNREACHABLE_BOUND_S, (took, r.output)
    assert r.output.splitlines() == [f"Error: cannot reach the Dask scheduler at tcp://127.0.0.1:{port} within 1 s; "
                                     "is it running and reachable from here? (--cluster-timeout sets the wait)"]
    assert not out.exists()  # nothing started, nothing written
    with pytest.raises(ClusterUnreachable) as caught:  # the library says what happened; the flag is the CLI's
        connect_cluster(f"tcp://127.0.0.1:{port}", 1)
    assert "--" not in str(caught.value) and str(caught.value).endswith("reachable from here?")
    r = CliRunner().invoke(main, run_args(tree, out, tiny_weights, "--cluster", "udp://127.0.0.1:8786"))
    assert r.exit_code == 1 and len(r.output.splitlines()) == 1
    assert r.output.startswith("Error: udp://127.0.0.1:8786: not a Dask scheduler address")


@pytest.mark.parametrize("how", ["SIGTERM", "Ctrl-C"])
def test_stopping_jobs_2_ends_workers_promptly_and_leaves_a_consistent_manifest(stop_in, tiny_weights, tmp_path,
                                                                                how):
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "depixcli", *run_args(stop_in, out, tiny_weights, "-j", "2")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        writer, tmp = writing_long(out, lambda: proc.poll() is None)
        workers = [p for p in descendants(proc.pid) if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()]
        t0 = time.monotonic()
        if how == "SIGTERM":  # kill, docker stop, systemd: the batch process alone
            proc.send_signal(signal.SIGTERM)
        else:  # a terminal's Ctrl-C: SIGINT to the whole foreground process group, workers included
            os.killpg(proc.pid, signal.SIGINT)
        text, _ = proc.communicate(timeout=BOUND_S)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert took < STOP_BOUND_S, f"took {took:.1f} s to stop"
    assert proc.returncode == (143 if how == "SIGTERM" else 130), text
    assert text.strip().splitlines() == ["Interrupted (SIGTERM)." if how == "SIGTERM" else "Interrupted."]
    assert writer in workers and len(workers) == 2
    assert not [p for p in workers if Path(f"/proc/{p}").exists()]  # every worker ended
    assert not Path(tmp).exists() and leftovers(out) == [] and not (out / "long.mp4").exists()
    lines = (out / "depix-batch.jsonl").read_text().splitlines() if (out / "depix-batch.jsonl").exists() else []
    recs = [json.loads(line) for line in lines]  # whole lines only
    assert all(r["status"] == "done" and not r["output"].endswith("long.mp4") for r in recs)
    cfg = RunConfig(weights=str(tiny_weights), region=(60, 30, 40, 50), preset="ultrafast")
    key = config_key("run", cfg)
    for job in plan_jobs("run", [str(stop_in)], out):
        rec = next((r for r in recs if r["output"] == job.output), None)
        assert is_finished(job, rec, key) == (rec is not None)  # each recorded output verifies


# ------------------------------------------------------------------------------------------ audit
def frames_of(path) -> list:
    return [f.image for f in read_frames(path)]


def test_audit_batch_from_a_csv_writes_what_one_audit_writes_and_fails_on_a_leak(tmp_path, tiny_weights):
    make_synthetic_clip(tmp_path / "orig.mp4", 12, (320, 240))
    (tmp_path / "copy.mp4").write_bytes((tmp_path / "orig.mp4").read_bytes())  # "anonymised": unchanged
    (tmp_path / "list.csv").write_text("input,original\ncopy.mp4,orig.mp4\nmissing.mp4,orig.mp4\n")
    same = ["-w", str(tiny_weights), "--frames", "4", "-q", "--nothing-else-identifies"]
    args = ["audit", str(tmp_path / "list.csv"), "--json", str(tmp_path / "reports"), "--sheet",
            str(tmp_path / "sheets"), "--csv", str(tmp_path / "logs"), "--repair", str(tmp_path / "fixed"), *same,
            "--fail-on-leak"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 1 and "Failed: " in r.output and "missing.mp4" in r.output  # a failure beats a leak
    report = json.loads((tmp_path / "reports" / "copy.json").read_text())
    assert report["verdict"] == "leaks" and report["confirmed"]
    assert (tmp_path / "sheets" / "copy.png").stat().st_size > 0
    recs = read_manifest(tmp_path / "reports" / "depix-batch.jsonl")
    rec = recs[str(tmp_path / "reports" / "copy.json")]
    assert rec["verdict"] == "leaks" and rec["tracks"] == len(report["tracks"]) >= 1 and rec["frames"] == 12
    assert rec["repaired_verdict"] == report["repair"]["verdict"] and report["repair"]["frames_masked"] > 0
    assert set(rec["files"]) == {str(tmp_path / d / f"copy.{ext}") for d, ext in (
        ("reports", "json"), ("sheets", "png"), ("logs", "csv"), ("fixed", "mp4"))}
    one = CliRunner().invoke(main, ["audit", str(tmp_path / "copy.mp4"), "--original", str(tmp_path / "orig.mp4"),
                                    "--json", str(tmp_path / "one.json"), "--csv", str(tmp_path / "one.csv"),
                                    "--repair", str(tmp_path / "one.mp4"), *same])
    assert one.exit_code == 0, one.output
    alone = json.loads((tmp_path / "one.json").read_text())
    assert (tmp_path / "logs" / "copy.csv").read_text() == (tmp_path / "one.csv").read_text()
    assert {**report["repair"], "output": None} == {**alone["repair"], "output": None}
    assert report["confirmed"] == alone["confirmed"] and report["verdict"] == alone["verdict"]
    repaired, repaired_alone = frames_of(tmp_path / "fixed" / "copy.mp4"), frames_of(tmp_path / "one.mp4")
    assert len(repaired) == 12 and all((a == b).all() for a, b in zip(repaired, repaired_alone))
    (tmp_path / "list.csv").write_text("input,original\ncopy.mp4,orig.mp4\n")
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 3 and r.output == ""  # finished earlier, nothing run: the recorded leak still counts


# ------------------------------------------------------------------------------------------ run --boxes
def test_run_many_inputs_with_a_folder_of_sidecars(tmp_path, tiny_weights):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    make_synthetic_clip(src / "a.mp4", 10, (320, 240))
    make_synthetic_clip(src / "sub" / "b.mp4", 8, (320, 240))
    boxes, pix = tmp_path / "boxes", tmp_path / "pix"
    r = CliRunner().invoke(main, ["pixelate", str(src), "-o", str(pix), "--boxes-out", str(boxes), "--blocks", "8",
                                  "--preset", "ultrafast", "-q"])
    assert r.exit_code == 0, r.output
    w = ["-w", str(tiny_weights), "--preset", "ultrafast", "-q"]
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["run", str(pix), "-o", str(out), "--boxes", str(boxes), *w])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["run", str(pix / "sub" / "b.mp4"), "-o", str(tmp_path / "b.mp4"), "--boxes",
                                  str(boxes / "sub" / "b.json"), *w])
    assert r.exit_code == 0, r.output
    assert (out / "sub" / "b.mp4").read_bytes() == (tmp_path / "b.mp4").read_bytes()  # as one video with its sidecar
    recs = {os.path.relpath(k, out): v for k, v in read_manifest(out / "depix-batch.jsonl").items()}
    assert recs["sub/b.mp4"]["tracks"] >= 1 and str(boxes / "sub" / "b.json") in recs["sub/b.mp4"]["inputs"]
    st = (boxes / "sub" / "b.json").stat()
    os.utime(boxes / "sub" / "b.json", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a changed sidecar
    lines = len((out / "depix-batch.jsonl").read_text().splitlines())
    r = CliRunner().invoke(main, ["run", str(pix), "-o", str(out), "--boxes", str(boxes), *w])
    assert r.exit_code == 0 and [json.loads(x)["output"] for x in (out / "depix-batch.jsonl").read_text().splitlines()][
        lines:] == [str(out / "sub" / "b.mp4")]  # redoes its video alone
    (boxes / "a.json").unlink()
    r = CliRunner().invoke(main, ["run", str(pix), "-o", str(tmp_path / "out2"), "--boxes", str(boxes), *w])
    assert r.exit_code == 1 and r.output.splitlines()[0] == f"Failed: {pix / 'a.mp4'}: --boxes {boxes / 'a.json'}: " \
                                                            "file not found"
    rec = read_manifest(tmp_path / "out2" / "depix-batch.jsonl")[str(tmp_path / "out2" / "a.mp4")]
    assert rec["option"] == "boxes" and rec["error"] == f"{boxes / 'a.json'}: file not found"  # the flag is the CLI's
    assert (tmp_path / "out2" / "sub" / "b.mp4").is_file()  # the others are done
    r = CliRunner().invoke(main, ["run", str(pix), "-o", str(tmp_path / "out3"), "--boxes",
                                  str(boxes / "sub" / "b.json"), *w])
    assert r.exit_code == 2 and "with many inputs, a folder of `depix pixelate` sidecars" in r.output
    r = CliRunner().invoke(main, ["run", str(pix / "sub" / "b.mp4"), "-o", str(tmp_path / "x.mp4"), "--boxes",
                                  str(boxes), *w])
    assert r.exit_code == 2 and "is a folder (for many inputs)" in r.output and not (tmp_path / "out3").exists()
