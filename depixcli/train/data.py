"""Training data in RAM: crop tracks decoded once (`load_tracks`), random stacks and pairs drawn from them
(`FrameBank`), and uint8 batches gathered ahead in background threads (`prefetch`).

Frames are `(S, S, 3)` uint8 RGB in the bank; batches go to the device as uint8 and become `(B, K, 3, S, S)` float
in [0, 1] there (`to_float`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from depixcli.dataset.crops import load_crops, read_index
from depixcli.errors import InputError
from depixcli.model.config import window_indices


class FrameBank:
    """All frames of some tracks in one uint8 array (N, S, S, 3) RGB; samples index stacks."""

    def __init__(self, tracks: Sequence):
        if not tracks:
            raise InputError("no tracks to train or validate on")
        self.frames = np.ascontiguousarray(np.concatenate([t.frames for t in tracks], axis=0))
        lengths = np.array([len(t.frames) for t in tracks], dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        self.lengths = lengths
        self.identities = sorted({t.identity for t in tracks})

    def __len__(self) -> int:
        return len(self.frames)

    def _centres(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        g = rng.integers(0, len(self.frames), n)  # uniform over frames = tracks weighted by length
        t = np.searchsorted(self.starts, g, side="right") - 1
        return t, g - self.starts[t]

    def stacks(self, rng: np.random.Generator, n: int, window: int, stride: int) -> np.ndarray:
        """(n, 2w+1) global frame indices of random stacks."""
        t, c = self._centres(rng, n)
        return self._windows(t, c, window, stride)

    def next_stacks(self, idx: np.ndarray, window: int, stride: int) -> np.ndarray:
        """(n, 2w+1) global frame indices of the stacks one frame after the stacks `idx` (n, 2w+1) of `stacks`
        (same window and stride), in the same tracks; a stack centred on its track's last frame gets the one
        before it instead (the temporal loss is symmetric)."""
        g = idx[:, window]
        t = np.searchsorted(self.starts, g, side="right") - 1
        c = g - self.starts[t]
        nxt = np.where(c + 1 < self.lengths[t], c + 1, np.maximum(c - 1, 0))
        return self._windows(t, nxt, window, stride)

    def _windows(self, t: np.ndarray, c: np.ndarray, window: int, stride: int) -> np.ndarray:
        return np.array([[self.starts[ti] + i for i in window_indices(ci, self.lengths[ti], window, stride)]
                         for ti, ci in zip(t, c)], dtype=np.int64).reshape(len(t), 2 * window + 1)

    def pairs(self, rng: np.random.Generator, n: int, max_offset: int) -> np.ndarray:
        """(n, 2) global indices (A, B) of frames of one track at most max_offset apart."""
        t, c = self._centres(rng, n)
        off = rng.integers(-max_offset, max_offset + 1, n)
        b = np.clip(c + off, 0, self.lengths[t] - 1)
        return np.stack([self.starts[t] + c, self.starts[t] + b], axis=1)

    def gather(self, idx: np.ndarray) -> torch.Tensor:
        """(B, K) indices -> (B, K, S, S, 3) uint8 tensor (pinned when CUDA is present)."""
        out = torch.from_numpy(self.frames[idx])
        return out.pin_memory() if torch.cuda.is_available() else out


def to_float(batch: torch.Tensor, device: torch.device) -> torch.Tensor:
    """(B, K, S, S, 3) uint8 -> (B, K, 3, S, S) float [0,1] on device."""
    return batch.to(device, non_blocking=True).permute(0, 1, 4, 2, 3).float().div_(255.0)


def load_tracks(crop_dir: str | os.PathLike, split: str, threads: int = 0) -> list:
    """Tracks of one split of a crop dataset (see depixcli.dataset), decoded into RAM by `threads` threads
    (0: one per CPU core), each decoding the tracks of some identities."""
    ids = sorted({e["identity"] for e in read_index(crop_dir)["tracks"] if e["split"] == split})
    threads = max(1, min(threads or (os.cpu_count() or 1), len(ids)))
    groups = [ids[i::threads] for i in range(threads)]
    with ThreadPoolExecutor(threads) as pool:
        parts = list(pool.map(lambda g: load_crops(crop_dir, split=split, identities=g), groups))
    tracks = [t for part in parts for t in part]
    if not tracks:
        raise InputError(f"{crop_dir}: no tracks in the {split!r} split")
    return tracks


def prefetch(pool: ThreadPoolExecutor, sampler: Callable[[], object], gather: Callable[[object], object],
             n_ahead: int) -> Iterator:
    """Yield `gather(sampler())` batches, gathered in `pool`'s threads `n_ahead` batches ahead. `sampler` runs here,
    in the caller's thread and order (it draws the indices from the run's generator, so a resumed run repeats
    them); only the gathering runs in the background."""
    futures = []
    while True:
        while len(futures) < n_ahead:
            futures.append(pool.submit(gather, sampler()))
        yield futures.pop(0).result()
