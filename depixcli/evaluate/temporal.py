"""Temporal consistency (flicker) of reconstructions: consecutive frames of a track against the ground truth.

A face reconstructed frame by frame can be right on average and still shimmer. Two measures, both over the
face box of the head crop (`identity.CANONICAL_FACE_BOX`, where the protocols put the mosaic) and both 0 when
the output changes from frame to frame exactly as the truth does:
- flicker: mean over consecutive pairs and face-box pixels of |(o[t+1] - o[t]) - (g[t+1] - g[t])|, on luma Y'
  (BT.601), in 8-bit grey levels;
- tOF (TecoGAN's temporal optical-flow distance): mean over the same pixels of the length, in px, of the
  difference between the dense optical flows o[t] -> o[t+1] and g[t] -> g[t+1] (OpenCV Farneback on the whole
  luma crop, `FLOW_PARAMS`).

`reconstruct_runs` produces the consecutive outputs `depix eval` and bench/bench_flicker.py score: per track one
run of `FLICKER_FRAMES` consecutive frames; per protocol the frames the run and every model's windows reach are
mosaiced together as one clip (one grid, one H.264 encode, as in a video), then every method reconstructs every
frame of the run: the baselines frame by frame, each model from its own window and from its centre frame
repeated (row NAME-F1, as in methods.py).

Images at this module's boundary are `(T, S, S, 3)` uint8 RGB runs.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import cv2
import numpy as np

from depixcli.evaluate.config import FLICKER_FRAMES, SINGLE_SUFFIX, EvalConfig
from depixcli.evaluate.metrics import luma, to_unit_float
from depixcli.evaluate.protocols import BASELINES, SEED_STRIDE, mosaic_stack
from depixcli.faces.identity import CANONICAL_FACE_BOX, query_span
from depixcli.model.config import window_indices

FLOW_PARAMS = {"pyr_scale": 0.5, "levels": 3, "winsize": 15, "iterations": 3, "poly_n": 5, "poly_sigma": 1.2,
               "flags": 0}  # cv2.calcOpticalFlowFarneback: OpenCV's documented example values
GREY_LEVELS = 255.0  # flicker is reported in 8-bit grey levels
FLICKER_METRICS = ("flicker", "tof")


def face_mask(size: int) -> np.ndarray:
    """`(S, S)` bool: the pixels whose centres fall in the face box of an S px head crop."""
    x, y, w, h = (v * size for v in CANONICAL_FACE_BOX)
    centres = np.arange(size) + 0.5
    cols = (centres >= x) & (centres < x + w)
    rows = (centres >= y) & (centres < y + h)
    return rows[:, None] & cols[None, :]


def _check_runs(outputs: np.ndarray, truths: np.ndarray) -> None:
    if outputs.shape != truths.shape or outputs.ndim != 4 or outputs.shape[-1] != 3 or len(outputs) < 2:
        raise ValueError(f"expected two (T >= 2, S, S, 3) runs of one shape, got {outputs.shape} and {truths.shape}")


def flicker(outputs: np.ndarray, truths: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean |Δoutput - Δtruth| between consecutive frames over `mask` (default `face_mask`), luma, grey levels."""
    _check_runs(outputs, truths)
    mask = face_mask(outputs.shape[1]) if mask is None else mask
    d = np.diff(luma(to_unit_float(outputs)), axis=0) - np.diff(luma(to_unit_float(truths)), axis=0)  # (T-1, S, S)
    return float(np.abs(d[:, mask]).mean() * GREY_LEVELS)


def _flows(run_u8: np.ndarray) -> np.ndarray:
    """`(T - 1, S, S, 2)` Farneback flows between consecutive frames of a uint8 RGB run (luma)."""
    grey = [cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in run_u8]
    return np.stack([cv2.calcOpticalFlowFarneback(a, b, None, **FLOW_PARAMS) for a, b in zip(grey, grey[1:])])


def tof(outputs: np.ndarray, truths: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean length (px) of OF(output pair) - OF(truth pair) over `mask` (default `face_mask`), all pairs."""
    _check_runs(outputs, truths)
    mask = face_mask(outputs.shape[1]) if mask is None else mask
    diff = _flows(outputs) - _flows(truths)  # (T-1, S, S, 2)
    return float(np.linalg.norm(diff[:, mask], axis=-1).mean())


def temporal_scores(outputs: np.ndarray, truths: np.ndarray) -> dict[str, float]:
    """{"flicker": grey levels, "tof": px} of one run."""
    return {"flicker": flicker(outputs, truths), "tof": tof(outputs, truths)}


def run_starts(track_lengths: Sequence[int], length: int = FLICKER_FRAMES) -> list[tuple[int, int, int]]:
    """One run per track with at least 2 frames: (track, first frame, frames), `length` frames (fewer in short
    tracks) centred on the middle of the track's query span (`identity.query_span`), inside the track."""
    if length < 2:
        raise ValueError("a flicker run needs at least 2 frames")
    runs = []
    for t, n in enumerate(track_lengths):
        if n < 2:
            continue
        k = min(length, n)
        start = min(max(query_span(n) // 2 - k // 2, 0), n - k)
        runs.append((t, start, k))
    return runs


def reconstruct_runs(protocol: str, tracks, runs: Sequence[tuple[int, int, int]], models: Mapping[str, object],
                     cfg: EvalConfig = EvalConfig(), boxes: Sequence[np.ndarray | None] | None = None,
                     single_frame: bool = True) -> tuple[list[dict[str, np.ndarray]], list[np.ndarray], float]:
    """Outputs of every method on every run under `protocol`: per run {method: (T, S, S, 3) uint8}, the ground
    truth runs, and the seconds spent in the models.

    tracks: objects with `.frames` `(T, S, S, 3)` uint8 (dataset.CropTrack); runs: from `run_starts`;
    models: name -> `model.reconstructor.Reconstructor`; cfg: its `seed` (mosaics of the random protocol) and
    `batch_size` are used; boxes: per track its crop boxes `(T, 3)` in the source (`evaluate.track_boxes`;
    image-anchored grids follow them; None: no motion); single_frame: also rows NAME-F1.
    """
    outs, truths, infer_s = [], [], 0.0
    reach = max([rec.geometry.reach for rec in models.values()], default=0)
    for r, (t, start, k) in enumerate(runs):
        clip = tracks[t].frames
        n = len(clip)
        span = list(range(max(start - reach, 0), min(start + k + reach, n)))
        pos = {f: i for i, f in enumerate(span)}
        tb = boxes[t] if boxes is not None and boxes[t] is not None else None
        mos, bic, gauss, _, maps = mosaic_stack(protocol, clip[span], cfg.seed * SEED_STRIDE + r, with_bicubic=True,
                                                boxes=tb[span] if tb is not None else None, centre_pos=pos[start])
        run = [pos[f] for f in range(start, start + k)]
        result = dict(zip(BASELINES, (mos[run], bic[run], gauss[run])))
        t0 = time.perf_counter()
        for name, rec in models.items():
            g = rec.geometry
            members = [[pos[f] for f in window_indices(c, n, g.window, g.stride)] for c in range(start, start + k)]
            stacks, stack_maps = mos[members], maps[members]  # (k, F, S, S, 3) uint8, (k, F, GRID_CHANNELS, S, S)
            result[name] = _batched(rec, stacks, stack_maps, cfg.batch_size)
            if single_frame and g.window > 0:  # the centre frame (and its grid) repeated
                c = slice(g.window, g.window + 1)
                result[name + SINGLE_SUFFIX] = _batched(rec, np.repeat(stacks[:, c], g.frames, axis=1),
                                                        np.repeat(stack_maps[:, c], g.frames, axis=1), cfg.batch_size)
        infer_s += time.perf_counter() - t0
        outs.append(result)
        truths.append(clip[start:start + k])
    return outs, truths, infer_s


def _batched(rec, stacks: np.ndarray, maps: np.ndarray, batch: int) -> np.ndarray:
    """`rec(stacks, maps)` in batches of `batch` stacks -> `(K, S, S, 3)` uint8."""
    return np.concatenate([rec(stacks[i:i + batch], maps[i:i + batch]) for i in range(0, len(stacks), batch)])


def score_runs(outputs: Sequence[dict[str, np.ndarray]], truths: Sequence[np.ndarray]) -> dict[str, dict]:
    """{method: {"flicker": mean over runs, "tof": mean, "per_run": {metric: [values]}}}."""
    names = list(outputs[0]) if outputs else []
    out = {}
    for name in names:
        per = [temporal_scores(o[name], g) for o, g in zip(outputs, truths)]
        out[name] = {m: float(np.mean([p[m] for p in per])) for m in FLICKER_METRICS}
        out[name]["per_run"] = {m: [p[m] for p in per] for m in FLICKER_METRICS}
    return out
