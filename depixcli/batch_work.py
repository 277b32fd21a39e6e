"""Per-video work of a batch (`depixcli.batch`), and where it runs: here, local processes or Dask.

`process_job` calls the library entry point of the task (`restore.run.run_video`, `pixelate.pixelate_video`,
`audit.video.audit_video` + `audit.report.write_json`) on one `batch.Job` and returns its record (a dict, one JSON line
of the result manifest): input, output, original, task, status (done | failed), frames, tracks, fps,
seconds, error (one line) and error_kind (input | output | depix | bug | worker), config (`config_key`),
inputs ({path: [size, mtime_ns]}), files ({output path: [size, SHA-256]}), worker (host:pid) and, for
audit, verdict. It catches every error of its video, so a worker only fails a job by dying.

Engines, all calling `on_record(record)` in this process as videos finish:
  `run_here`     one after another in this process;
  `run_local`    N spawned worker processes, each with len(CPU affinity) // N torch / OpenCV threads; when
                 a worker dies the pool is rebuilt and the videos it held are redone (MAX_ATTEMPTS tries);
                 workers ignore SIGINT (a terminal's Ctrl-C reaches the whole process group): when this
                 process is stopped (Ctrl-C, SIGTERM) it terminates them at once, mid-video;
  `run_cluster`  Dask distributed: the same function submitted per video; Dask reschedules a video whose
                 worker died (its `distributed.scheduler.allowed-failures`) and then raises KilledWorker.
Detectors and models stay loaded in a worker between videos of the same settings.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import socket
import time
from collections import Counter

from depixcli.errors import BackendError, DepixError, InputError, OutputError
from depixcli.io.files import sha256_file

CONNECT_TIMEOUT_S = 10.0  # s to reach the Dask scheduler (Dask's own default is 30)
MAX_ATTEMPTS = 3  # tries per video when local worker processes die under it
STOP_WAIT_S = 2.0  # s a terminated worker gets before it is killed


# ------------------------------------------------------------------------------------------ records
def config_key(task: str, config) -> str:
    """Short hash of the task and its settings (progress settings left out): a change redoes the outputs."""
    d = {k: v for k, v in dataclasses.asdict(config).items() if k != "quiet"}
    text = json.dumps({"task": task, "config": d}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def fingerprint(path) -> list[int] | None:
    """[size, mtime_ns] of an input, or None when it is missing."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def file_digest(path) -> list:
    """[size, SHA-256 hex] of a file (the manifest's record of an output)."""
    return [os.path.getsize(path), sha256_file(path)]


def input_fingerprints(job) -> dict[str, list[int] | None]:
    """{path: fingerprint} of the files a job reads (`batch.Job.sources`)."""
    return {p: fingerprint(p) for p in job.sources}


# ------------------------------------------------------------------------------------------ work
_RESOURCES: dict[tuple, object] = {}  # per worker process: detectors and models kept between videos


def _resource(name: str, key: str, make):
    import threading

    k = (name, key, threading.get_ident())  # SFace and the detectors are not thread-safe
    if k not in _RESOURCES:
        _RESOURCES[k] = make()
    return _RESOURCES[k]


def set_threads(n: int) -> None:
    """Threads of torch and OpenCV in this process (a worker's share of the CPU)."""
    os.environ["OMP_NUM_THREADS"] = str(n)  # for libraries not loaded yet
    import cv2
    import torch

    torch.set_num_threads(n)
    cv2.setNumThreads(n)


def _work(task: str, config, job, key: str) -> dict:
    """Call the library entry point of `task` on one video; the numbers of its result."""
    from depixcli.faces.detect import load_detector

    if task == "run":
        from depixcli.io.sidecar import SidecarError
        from depixcli.restore.run import run_video

        if job.boxes is not None:
            config = dataclasses.replace(config, boxes=job.boxes)
        try:
            stats = run_video(job.input, job.output, config)
        except SidecarError as exc:  # the library names the file; say which option gave it, as the CLI does
            raise InputError(f"--boxes {exc}") from None
        return {"frames": stats.frames, "tracks": stats.tracks}
    if task == "pixelate":
        from depixcli.pixelate import pixelate_video

        det = _resource("detector", key, lambda: load_detector(config.detector, threshold=config.threshold,
                                                               max_side=config.max_side))
        s = pixelate_video(job.input, job.output, config, job.extra("boxes"), quiet=True, detector=det)
        return {"frames": s.frames, "tracks": s.tracks, "notes": s.notes}
    from depixcli.audit.plan import gallery_photos
    from depixcli.audit.report import write_csv, write_json, write_sheet
    from depixcli.audit.video import audit_video, repair
    from depixcli.faces.identity import SFaceIdentity
    from depixcli.model.reconstructor import load_reconstructor

    if job.original is None:
        raise InputError(f"{job.input}: no original to audit against")
    model = _resource("model", key, lambda: load_reconstructor(config.weights, config.device))
    identity = _resource("identity", key, SFaceIdentity)
    det = _resource("detector", key, lambda: load_detector(config.detector, threshold=config.threshold,
                                                           max_side=config.max_side))
    gallery = None
    if config.gallery is not None:
        gallery = _resource("gallery", key, lambda: gallery_photos(config.gallery, identity, det))
    reuse = {"model": model, "identity": identity, "detector": det, "gallery": gallery}
    report = audit_video(job.input, job.original, config, **reuse)
    if job.extra("repair") is not None:
        repair(report, job.extra("repair"), config, **reuse)
    write_json(report, job.output)
    for kind, write in (("sheet", write_sheet), ("csv", write_csv)):
        if job.extra(kind) is not None:
            write(report, job.extra(kind))
    out = {"frames": report.frames, "tracks": len(report.tracks), "verdict": report.verdict}
    if report.repair is not None:
        out["repaired_verdict"] = report.repair["verdict"]
    return out


def process_job(task: str, config, job, threads=None) -> dict:
    """One video, in whichever process runs it: the task's library entry point, then its record.

    `threads`: torch / OpenCV threads for this video (an int, or {Dask worker address: int}); None leaves
    them. Every error is caught and recorded (`status` failed, `error` its line, `error_kind` input,
    output, depix or bug): the batch goes on."""
    if isinstance(threads, dict):
        from distributed import get_worker

        threads = threads.get(get_worker().address, 1)
    if threads is not None:
        set_threads(threads)
    key = config_key(task, config)
    rec = {"input": job.input, "output": job.output, "original": job.original, "task": task, "status": "done",
           "frames": None, "tracks": None, "fps": None, "error": None, "config": key,
           "inputs": input_fingerprints(job), "worker": f"{socket.gethostname()}:{os.getpid()}"}
    t0 = time.perf_counter()
    try:
        for d in job.outputs:
            os.makedirs(os.path.dirname(os.path.abspath(d)), exist_ok=True)
        rec.update(_work(task, config, job, key))
        rec["files"] = {p: file_digest(p) for p in job.outputs}
    except Exception as exc:  # noqa: BLE001 - any error of one video is recorded; the batch goes on
        kind = ("input" if isinstance(exc, InputError) else "output" if isinstance(exc, (OutputError, OSError))
                else "depix" if isinstance(exc, DepixError) else "bug")
        text = str(exc) if isinstance(exc, DepixError) else f"{type(exc).__name__}: {exc}"
        rec.update(status="failed", error=" ".join(text.split()) or type(exc).__name__, error_kind=kind)
    rec["seconds"] = round(time.perf_counter() - t0, 3)
    if rec["frames"]:
        rec["fps"] = round(rec["frames"] / rec["seconds"], 3) if rec["seconds"] > 0 else None
    return rec


def lost_record(task: str, config, job, why: str) -> dict:
    """The record of a video whose worker died `MAX_ATTEMPTS` times under it."""
    return {"input": job.input, "output": job.output, "original": job.original, "task": task,
            "status": "failed", "frames": None, "tracks": None, "fps": None, "error": why, "error_kind": "worker",
            "config": config_key(task, config), "inputs": input_fingerprints(job), "seconds": None}


def run_here(task, config, jobs, on_record) -> None:
    for job in jobs:
        on_record(process_job(task, config, job))


def _worker_init() -> None:
    """In each local worker process: Ctrl-C is for the batch process, which then stops the workers; tqdm
    gets a thread lock instead of its default multiprocessing one, a semaphore that a terminated worker
    would leave for the resource tracker to report at exit (the bars are off in workers anyway)."""
    import signal
    import threading

    from tqdm import tqdm

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    tqdm.set_lock(threading.RLock())


def _stop_workers(pool) -> None:
    """Terminate the worker processes of a ProcessPoolExecutor now, mid-video (their outputs are only
    temporary files until renamed); `shutdown` alone would wait for every video in progress."""
    stop = getattr(pool, "terminate_workers", None)  # Python >= 3.14
    if stop is not None:
        stop()
        return
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        proc.terminate()
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        proc.join(STOP_WAIT_S)
        if proc.is_alive():
            proc.kill()


def run_local(task, config, jobs, n: int, on_record) -> None:
    """`n` worker processes (spawned), the CPU threads shared out; a pool whose worker dies is rebuilt and
    the videos it held are redone. Stopped (KeyboardInterrupt, `Stopped`), it terminates its workers."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    threads = max(1, len(os.sched_getaffinity(0)) // n)
    tries: Counter = Counter()
    pending = list(jobs)
    while pending:
        pool = ProcessPoolExecutor(min(n, len(pending)), mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_worker_init)
        try:
            futures = {pool.submit(process_job, task, config, job, threads): job for job in pending}
            pending = []
            for fut in as_completed(futures):
                job = futures[fut]
                try:
                    rec = fut.result()
                except BrokenProcessPool:
                    tries[job] += 1
                    if tries[job] < MAX_ATTEMPTS:
                        pending.append(job)
                        continue
                    rec = lost_record(task, config, job, f"worker process died {tries[job]} times")
                on_record(rec)
        except BaseException:
            _stop_workers(pool)
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def connect_cluster(address: str, timeout: float = CONNECT_TIMEOUT_S):
    """A Dask `Client` of the scheduler at `address`. Raises BackendError when Dask is not installed, the
    address is malformed, or the scheduler does not answer within `timeout` s."""
    try:
        from distributed import Client
        from distributed.comm import parse_address
        from distributed.comm.registry import get_backend
    except ImportError:
        raise BackendError("a cluster needs Dask distributed: pip install 'depix[cluster]'") from None
    try:
        get_backend(parse_address(address)[0])  # before Client: a half-built one hangs at exit
    except ValueError as exc:
        raise BackendError(f"{address}: not a Dask scheduler address such as tcp://10.0.0.5:8786 "
                           f"({_first_line(exc)})") from None
    try:
        return Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        why = "" if "timed out" in str(exc).lower() else f" ({_first_line(exc)})"
        raise BackendError(f"cannot reach the Dask scheduler at {address} within {timeout:g} s{why}; is it running "
                           f"and reachable from here? (--cluster-timeout sets the wait)") from None


def run_cluster(task, config, jobs, client, on_record) -> None:
    """The same `process_job` on the Dask cluster of `client` (`connect_cluster`), which it closes.
    Stopped, it drops the videos not started; those in progress on the workers run to their end (Dask
    cannot stop a running task) and are not recorded, so a rerun redoes them."""
    from distributed import as_completed
    from distributed.scheduler import KilledWorker

    try:
        threads = _worker_threads(client)
        token = hashlib.sha256(f"{time.time_ns()}-{os.getpid()}".encode()).hexdigest()[:8]
        futures = {client.submit(process_job, task, config, job, threads, key=f"depix-{task}-{token}-{i}",
                                 pure=False): job for i, job in enumerate(jobs)}
        for fut in as_completed(futures, loop=client.loop):
            job = futures[fut]
            try:
                rec = fut.result()
            except KilledWorker as exc:
                rec = lost_record(task, config, job, f"Dask workers died under it ({exc})")
            except Exception as exc:  # noqa: BLE001 - e.g. a worker without depix: recorded, the batch goes on
                rec = lost_record(task, config, job, f"on the cluster: {type(exc).__name__}: {exc}")
            on_record(rec)
    finally:
        client.close()


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _worker_threads(client) -> dict[str, int]:
    """{worker address: torch threads}: each host's cores shared out among the worker threads on it."""
    workers = client.scheduler_info(n_workers=-1)["workers"]
    cores = client.run(lambda: len(os.sched_getaffinity(0)))
    per_host = Counter()
    for info in workers.values():
        per_host[info["host"]] += info["nthreads"]
    return {addr: max(1, cores.get(addr, 1) // per_host[info["host"]]) for addr, info in workers.items()}
