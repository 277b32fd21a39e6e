"""The result manifest of a batch: one JSON record per video, and whether an earlier record finished a job.

A record (written by `work.process_job`, appended by `run.run_batch`): input, output, original, task, status
(done | failed), frames, tracks, fps, seconds, error (one line, about the value) and error_kind (input | output |
depix | bug | worker), option (the config field the error is about, which the CLI words as its flag), config
(`config_key`), inputs ({path: [size, mtime_ns]}), files ({output path: [size, SHA-256]}), worker (host:pid)
and, for audit, verdict.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os

from depixcli.errors import InputError
from depixcli.io.files import sha256_file

MANIFEST_NAME = "depix-batch.jsonl"  # result manifest, in the output folder unless given


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
    """{path: fingerprint} of the files a job reads (`plan.Job.sources`)."""
    return {p: fingerprint(p) for p in job.sources}


def read_manifest(path) -> dict[str, dict]:
    """The last record per output of a result manifest ({} when there is none). A line that does not
    parse (the end of a batch killed while writing it) is ignored."""
    records: dict[str, dict] = {}
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if isinstance(rec, dict) and "output" in rec:
                    records[os.path.abspath(rec["output"])] = rec
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise InputError(f"{path}: cannot read the result manifest ({exc.strerror or exc})") from None
    return records


def is_finished(job, record: dict | None, key: str, retry_failed: bool = False) -> bool:
    """Whether an earlier run's `record` finished `job` (a `plan.Job`; outputs checked by size and SHA-256), or found
    its input unreadable and nothing changed since."""
    if record is None or record.get("config") != key or record.get("inputs") != input_fingerprints(job):
        return False
    if record["status"] == "failed":
        return record.get("error_kind") == "input" and not retry_failed
    if record["status"] != "done":
        return False
    for path, (size, digest) in record.get("files", {}).items():
        try:
            if file_digest(path) != [size, digest]:
                return False
        except OSError:
            return False
    return bool(record.get("files"))


def lost_record(task: str, config, job, why: str) -> dict:
    """The record of a video whose worker died `MAX_ATTEMPTS` times under it."""
    return {"input": job.input, "output": job.output, "original": job.original, "task": task,
            "status": "failed", "frames": None, "tracks": None, "fps": None, "error": why, "error_kind": "worker",
            "config": config_key(task, config), "inputs": input_fingerprints(job), "seconds": None}
