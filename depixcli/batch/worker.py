"""What a local worker process of a batch does before its first video (`engines.run_local` starts it).

This module imports no torch, OpenCV or NumPy: a spawned worker runs `init_worker` before it unpickles its first
job (which loads them through `work`), so the thread limit reaches the libraries as they load.
"""

from __future__ import annotations

import os
import signal
import threading

from tqdm import tqdm


def limit_threads(n: int) -> None:
    """OpenMP / BLAS threads of the libraries this process loads from now on."""
    os.environ["OMP_NUM_THREADS"] = str(n)


def init_worker(threads: int) -> None:
    """In each local worker process: `threads` CPU threads (`limit_threads`); Ctrl-C is for the batch process,
    which then stops the workers; tqdm gets a thread lock instead of its default multiprocessing one, a
    semaphore that a terminated worker would leave for the resource tracker to report at exit (the bars are
    off in workers anyway)."""
    limit_threads(threads)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    tqdm.set_lock(threading.RLock())
