"""Where the videos of a batch run, each engine calling `on_record(record)` in this process as videos finish.

  `run_here`     one after another in this process;
  `run_local`    N spawned worker processes, each with len(CPU affinity) // N torch / OpenCV threads; when
                 a worker dies the pool is rebuilt and the videos it held are redone (MAX_ATTEMPTS tries);
                 workers ignore SIGINT (a terminal's Ctrl-C reaches the whole process group): when this
                 process is stopped (Ctrl-C, SIGTERM) it terminates them at once, mid-video;
  `run_cluster`  Dask distributed: the same function submitted per video; Dask reschedules a video whose
                 worker died (its `distributed.scheduler.allowed-failures`) and then raises KilledWorker.
Dask comes with the optional `cluster` extra, so it is imported where a cluster is used.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool

from depixcli.batch.records import lost_record
from depixcli.batch.work import process_job
from depixcli.batch.worker import init_worker
from depixcli.errors import BackendError

CONNECT_TIMEOUT_S = 10.0  # s to reach the Dask scheduler (Dask's own default is 30)
MAX_ATTEMPTS = 3  # tries per video when local worker processes die under it
STOP_WAIT_S = 2.0  # s a terminated worker gets before it is killed


def run_here(task, config, jobs, on_record) -> None:
    for job in jobs:
        on_record(process_job(task, config, job))


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
    threads = max(1, len(os.sched_getaffinity(0)) // n)
    tries: Counter = Counter()
    pending = list(jobs)
    while pending:
        pool = ProcessPoolExecutor(min(n, len(pending)), mp_context=multiprocessing.get_context("spawn"),
                                   initializer=init_worker, initargs=(threads,))
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


class ClusterUnreachable(BackendError):
    """No Dask scheduler answered at the address within the timeout."""


def connect_cluster(address: str, timeout: float = CONNECT_TIMEOUT_S):
    """A Dask `Client` of the scheduler at `address`. Raises BackendError when Dask is not installed or the
    address is malformed, ClusterUnreachable when the scheduler does not answer within `timeout` s."""
    try:  # the optional `cluster` extra
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
        raise ClusterUnreachable(f"cannot reach the Dask scheduler at {address} within {timeout:g} s{why}; is it "
                                 "running and reachable from here?") from None


def run_cluster(task, config, jobs, client, on_record) -> None:
    """The same `process_job` on the Dask cluster of `client` (`connect_cluster`), which it closes.
    Stopped, it drops the videos not started; those in progress on the workers run to their end (Dask
    cannot stop a running task) and are not recorded, so a rerun redoes them."""
    from distributed import as_completed as dask_completed  # the optional `cluster` extra (connect_cluster checked it)
    from distributed.scheduler import KilledWorker

    try:
        threads = _worker_threads(client)
        token = hashlib.sha256(f"{time.time_ns()}-{os.getpid()}".encode()).hexdigest()[:8]
        futures = {client.submit(process_job, task, config, job, threads, key=f"depix-{task}-{token}-{i}",
                                 pure=False): job for i, job in enumerate(jobs)}
        for fut in dask_completed(futures, loop=client.loop):
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
