"""The work of one video of a batch, in whichever process runs it: the task's library entry point, then its record.

`process_job` calls `restore.run.run_video`, `pixelate.pixelate_video` or `audit.video.audit_video` (+ the audit's
report files) on one `plan.Job` and returns its record (`records`). It catches every error of its video, so a
worker only fails a job by dying. Detectors and models stay loaded in a worker between videos of the same settings.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import threading
import time

import cv2
import torch

from depixcli.audit.plan import gallery_photos
from depixcli.audit.report import write_csv, write_json, write_sheet
from depixcli.audit.video import audit_video, repair, second_judge
from depixcli.batch.records import config_key, file_digest, input_fingerprints
from depixcli.batch.worker import limit_threads
from depixcli.errors import DepixError, InputError, OptionError, OutputError
from depixcli.faces.detect import load_detector
from depixcli.faces.identity import SFaceIdentity
from depixcli.io.sidecar import SidecarError
from depixcli.model.reconstructor import load_reconstructor
from depixcli.pixelate import pixelate_video
from depixcli.restore.run import run_video

_RESOURCES: dict[tuple, object] = {}  # per worker process: detectors and models kept between videos


def _resource(name: str, key: str, make):
    k = (name, key, threading.get_ident())  # SFace and the detectors are not thread-safe
    if k not in _RESOURCES:
        _RESOURCES[k] = make()
    return _RESOURCES[k]


def _detector(config, key: str):
    return _resource("detector", key, lambda: load_detector(config.detector, threshold=config.threshold,
                                                            max_side=config.max_side))


def set_threads(n: int) -> None:
    """Threads of torch and OpenCV in this process (a worker's share of the CPU)."""
    limit_threads(n)  # for libraries not loaded yet
    torch.set_num_threads(n)
    cv2.setNumThreads(n)


def _run_one(config, job, key: str) -> dict:
    if job.boxes is not None:
        config = dataclasses.replace(config, boxes=job.boxes)
    stats = run_video(job.input, job.output, config)
    return {"frames": stats.frames, "tracks": stats.tracks}


def _pixelate_one(config, job, key: str) -> dict:
    s = pixelate_video(job.input, job.output, config, job.extra("boxes"), quiet=True, detector=_detector(config, key))
    return {"frames": s.frames, "tracks": s.tracks, "notes": s.notes}


def _audit_one(config, job, key: str) -> dict:
    if job.original is None:
        raise InputError(f"{job.input}: no original to audit against")
    model = _resource("model", key, lambda: load_reconstructor(config.weights, config.device))
    identity = _resource("identity", key, SFaceIdentity)
    det = _detector(config, key)
    dlib = _resource("dlib", key, lambda: second_judge(config))
    gallery = None
    if config.gallery is not None:
        gallery = _resource("gallery", key, lambda: gallery_photos(config.gallery, identity, det, dlib[0]))
    reuse = {"model": model, "identity": identity, "detector": det, "gallery": gallery, "dlib": dlib}
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


WORK = {"run": _run_one, "pixelate": _pixelate_one, "audit": _audit_one}  # task -> its call on one video


def error_option(exc: Exception) -> str | None:
    """The config field whose value `exc` is about (the CLI words it with its flag), or None."""
    if isinstance(exc, OptionError):
        return exc.option
    if isinstance(exc, SidecarError):
        return "boxes"  # the one sidecar a task reads: run's
    return None


def process_job(task: str, config, job, threads=None) -> dict:
    """One video, in whichever process runs it: the task's library entry point, then its record.

    `threads`: torch / OpenCV threads for this video (an int, or {Dask worker address: int}); None leaves
    them. Every error is caught and recorded (`status` failed, `error` its line, `error_kind` input,
    output, depix or bug, `option` the config field it is about): the batch goes on."""
    if isinstance(threads, dict):
        from distributed import get_worker  # the optional `cluster` extra: only on a Dask worker

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
        rec.update(WORK[task](config, job, key))
        rec["files"] = {p: file_digest(p) for p in job.outputs}
    except Exception as exc:  # noqa: BLE001 - any error of one video is recorded; the batch goes on
        kind = ("input" if isinstance(exc, InputError) else "output" if isinstance(exc, (OutputError, OSError))
                else "depix" if isinstance(exc, DepixError) else "bug")
        text = str(exc) if isinstance(exc, DepixError) else f"{type(exc).__name__}: {exc}"
        rec.update(status="failed", error=" ".join(text.split()) or type(exc).__name__, error_kind=kind)
        if error_option(exc) is not None:
            rec["option"] = error_option(exc)
    rec["seconds"] = round(time.perf_counter() - t0, 3)
    if rec["frames"]:
        rec["fps"] = round(rec["frames"] / rec["seconds"], 3) if rec["seconds"] > 0 else None
    return rec
