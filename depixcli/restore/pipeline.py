"""Thread plumbing of pass 2: bounded queues that stop when another thread failed, worker threads that hand
their exception to the main thread, and stage timing of an iterator.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator

from depixcli.restore.config import POLL_S, RunStats


def timed_iter(it: Iterator, stats: RunStats, stage: str) -> Iterator:
    while True:
        t0 = time.perf_counter()
        try:
            item = next(it)
        except StopIteration:
            stats.add(stage, time.perf_counter() - t0)
            return
        stats.add(stage, time.perf_counter() - t0)
        yield item


class Aborted(Exception):
    """Another pipeline thread failed; this one stops quietly."""


def put(q: queue.Queue, item, stop: threading.Event) -> None:
    while True:
        if stop.is_set():
            raise Aborted
        try:
            q.put(item, timeout=POLL_S)
            return
        except queue.Full:
            continue


def get(q: queue.Queue, stop: threading.Event):
    while True:
        if stop.is_set():
            raise Aborted
        try:
            return q.get(timeout=POLL_S)
        except queue.Empty:
            continue


END = object()


def worker(fn: Callable[[], None], errors: list, stop: threading.Event) -> threading.Thread:
    def body():
        try:
            fn()
        except Aborted:
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread, re-raised there
            errors.append(exc)
            stop.set()

    th = threading.Thread(target=body, daemon=True)
    th.start()
    return th


def join_workers(threads: list[threading.Thread], errors: list, stop: threading.Event) -> None:
    """Wait for the worker threads; once one has failed (`errors`), tell all to stop (`stop`)."""
    if errors:
        stop.set()
    for th in threads:
        while th.is_alive():
            th.join(POLL_S)
            if errors:
                stop.set()
