"""Run a planned batch: resume from the result manifest, work through an engine, record every video.

Data flow (the package's modules):
  plan     inputs -> `plan.Job`s, every output named (`plan.plan_jobs`)
  resume   the result manifest (JSONL, `records.MANIFEST_NAME` in the output folder) -> the jobs still to do: a
           job is finished when its last record is `done` with the same config and input (size, mtime) and
           every output file it lists still has the recorded size and SHA-256; an input that failed with an
           InputError (corrupt, not a video) stays failed until it changes (or `retry_failed`)
  work     `work.process_job` per video, calling the library entry point (`restore.run.run_video`,
           `pixelate.pixelate_video`, `audit.video.audit_video`): in this process (jobs = 1), in `jobs` local
           worker processes (the CPU threads shared out among them), or on a Dask cluster (`cluster`
           address, or $DASK_SCHEDULER_ADDRESS) (`engines`). Errors become `failed` records: one bad video
           never stops the batch. A worker that dies is replaced and its video redone (Dask reschedules it;
           locally the pool is rebuilt), a few times.
  record   one JSON line per video as it finishes, appended and fsynced by this process alone; outputs
           are written atomically by the entry points, and temporary files a killed worker left beside
           an output are removed at the end, also when the batch is stopped (Ctrl-C, SIGTERM: local
           workers are terminated at once, see `engines.run_local`).

On a cluster every worker needs depix installed and the same paths (a shared file system).
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from depixcli.batch.engines import CONNECT_TIMEOUT_S, connect_cluster, run_cluster, run_here, run_local
from depixcli.batch.plan import Job
from depixcli.batch.records import MANIFEST_NAME, config_key, is_finished, read_manifest
from depixcli.errors import DepixError, OutputError
from depixcli.io.files import TMP_TAG
from depixcli.io.progress import progress_bar

CLUSTER_ENV = "DASK_SCHEDULER_ADDRESS"  # Dask's own variable for the scheduler address
TEMP_TAGS = (TMP_TAG,)  # temporary names of every depix writer (io.files: the one atomic-write policy)


@dataclass(frozen=True)
class BatchConfig:
    jobs: int = 1  # local worker processes (1: in this process)
    cluster: str | None = None  # Dask scheduler address; None: $DASK_SCHEDULER_ADDRESS, else local
    connect_timeout: float = CONNECT_TIMEOUT_S  # s to reach the Dask scheduler before giving up
    manifest: str | None = None  # result manifest; None: <output>/MANIFEST_NAME
    retry_failed: bool = False  # redo inputs that failed as unreadable although unchanged
    quiet: bool = True  # no progress bar

    def __post_init__(self) -> None:
        if self.jobs < 1:
            raise DepixError(f"jobs must be >= 1, got {self.jobs}")
        if not self.connect_timeout > 0:
            raise DepixError(f"the cluster connect timeout must be > 0 s, got {self.connect_timeout}")


@dataclass
class BatchResult:
    planned: int  # videos in the batch
    records: list[dict] = field(default_factory=list)  # this run's, in the order they finished
    previous: list[dict] = field(default_factory=list)  # earlier runs' records of the videos skipped now
    wall_s: float = 0.0
    manifest: str = ""
    engine: str = ""

    @property
    def skipped(self) -> int:
        """Videos finished by an earlier run (verified), or unreadable there and unchanged since."""
        return len(self.previous)

    @property
    def done(self) -> list[dict]:
        return [r for r in self.records if r["status"] == "done"]

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.records if r["status"] == "failed"]


def cluster_address(cfg: BatchConfig) -> str | None:
    return cfg.cluster or os.environ.get(CLUSTER_ENV) or None


def _sweep_temps(job: Job) -> None:
    """Remove temporary files a killed worker left beside the outputs of `job`."""
    for out in job.outputs:
        p = Path(out)
        if not p.parent.is_dir():
            continue
        for tmp in p.parent.glob(f".{glob.escape(p.name)}*"):
            if any(tag in tmp.name for tag in TEMP_TAGS):
                tmp.unlink(missing_ok=True)


def run_batch(task: str, config, jobs: list[Job], cfg: BatchConfig = BatchConfig(), output_dir=None,
              on_record=None) -> BatchResult:
    """Run `jobs` (from `plan_jobs`) not finished by an earlier run; append a record per video to the
    manifest and call `on_record(record)` as each finishes. `config` is the task's RunConfig,
    PixelateConfig or AuditConfig (progress bars are turned off in it)."""
    t0 = time.perf_counter()
    if hasattr(config, "quiet"):
        config = dataclasses.replace(config, quiet=True)
    manifest = cfg.manifest or os.path.join(os.fspath(output_dir), MANIFEST_NAME)
    key = config_key(task, config)
    earlier = read_manifest(manifest)
    todo, previous = [], []
    for job in jobs:
        rec = earlier.get(os.path.abspath(job.output))
        if is_finished(job, rec, key, cfg.retry_failed):
            previous.append(rec)
        else:
            todo.append(job)
    address = cluster_address(cfg)
    engine = (f"Dask cluster {address}" if address else f"{cfg.jobs} local processes" if cfg.jobs > 1
              else "this process")
    client = connect_cluster(address, cfg.connect_timeout) if todo and address else None
    result = BatchResult(len(jobs), previous=previous, manifest=manifest, engine=engine)
    bar = progress_bar(len(todo), f"{task} batch", unit="video", quiet=cfg.quiet or not todo, file=sys.stderr)
    log = None  # opened at the first record: a batch that cannot start leaves no file behind

    def record(rec: dict) -> None:
        nonlocal log
        try:
            if log is None:
                os.makedirs(os.path.dirname(os.path.abspath(manifest)), exist_ok=True)
                log = open(manifest, "a", encoding="utf-8")
            log.write(json.dumps(rec) + "\n")
            log.flush()
            os.fsync(log.fileno())
        except OSError as exc:
            raise OutputError(f"{manifest}: cannot write the result manifest ({exc.strerror or exc})") from None
        result.records.append(rec)
        if on_record is not None:
            with bar.external_write_mode(file=sys.stderr):
                on_record(rec)
        bar.update(1)

    finished = False
    try:
        if client is not None:
            run_cluster(task, config, todo, client, record)
        elif cfg.jobs > 1 and len(todo) > 1:
            run_local(task, config, todo, cfg.jobs, record)
        else:
            run_here(task, config, todo, record)
        finished = True
    finally:  # also when stopped (Ctrl-C, SIGTERM): each manifest line is a whole record
        bar.close()
        if log is not None:
            log.close()
        if finished or not address:  # local workers are gone; cluster workers may still be writing theirs
            for job in todo:
                _sweep_temps(job)
    result.wall_s = time.perf_counter() - t0
    return result
