"""The methods `depix eval` compares: the baselines and every model, run on each protocol's mosaics
(`reconstruct_protocol`), with the rows fed one frame (-F1) and pulled back to the evidence (+proj).

Models run through `model.reconstructor.Reconstructor`, as in `depix run`: uint8 stacks in, uint8 crops out,
inference mode, bf16 autocast on CUDA. The mosaiced frames are rounded to uint8 as a video would hold them.
Crops are `(N, S, S, 3)` uint8 RGB.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from depixcli.errors import ConfigError
from depixcli.evaluate.config import PROJECT_SUFFIX, SINGLE_SUFFIX, EvalConfig
from depixcli.evaluate.protocols import (
    BASELINES,
    SEED_STRIDE,
    Sample,
    mosaic_frame_indices,
    mosaic_stack,
    to_float,
    to_u8,
)
from depixcli.io.files import sha256_file
from depixcli.io.progress import progress_bar
from depixcli.model.config import window_indices
from depixcli.model.evidence import project_to_mosaic
from depixcli.model.nets import count_parameters
from depixcli.model.reconstructor import Reconstructor, resolve_device
from depixcli.model.weights import load_model


@dataclass
class LoadedModel:
    """A compared model: its row name, the network at inference, and what the report says of its file."""

    name: str
    reconstructor: object  # model.reconstructor.Reconstructor
    info: dict = field(default_factory=dict)


def load_models(models: Mapping[str, object], device: str) -> list[LoadedModel]:
    """name -> weights path or nn.Module (with `.config`) -> reconstructors; WeightsError for a bad file."""
    dev = resolve_device(device)
    out = []
    for name, spec in models.items():
        if name in BASELINES:
            raise ConfigError(f"model name {name!r} is taken by a baseline; choose another")
        if isinstance(spec, (str, os.PathLike)):
            path = Path(spec)
            model = load_model(path, device=dev)
            info = {"path": str(path), "sha256": sha256_file(path), "meta": getattr(model, "meta", {})}
        else:
            model, info = spec, {"path": None, "sha256": None}
        cfg = model.config
        info["config"] = asdict(cfg) if hasattr(cfg, "__dataclass_fields__") else dict(vars(cfg))
        info["parameters"] = count_parameters(model)
        out.append(LoadedModel(name, Reconstructor(model, dev), info))
    return out


def reconstruct_protocol(protocol: str, tracks, samples: Sequence[Sample], gts: np.ndarray,
                         loaded: Sequence[LoadedModel], cfg: EvalConfig, quiet: bool = True,
                         boxes: Sequence[np.ndarray] | None = None) -> tuple[dict[str, np.ndarray], float]:
    """Outputs `(N, S, S, 3)` uint8 of every method under `protocol`, and the seconds spent in the models.
    boxes: per track, its crop boxes `(T, 3)` in the source (image-anchored protocols follow them)."""
    windows = [(m.reconstructor.geometry.window, m.reconstructor.geometry.stride) for m in loaded]
    names = [*BASELINES, *(m.name for m in loaded)]
    names += extra_rows(loaded, cfg)
    outputs = {name: np.zeros_like(gts) for name in names}
    infer_s = 0.0
    with progress_bar(len(samples), protocol, unit="sample", quiet=quiet) as bar:
        for b0 in range(0, len(samples), cfg.batch_size):
            batch = range(b0, min(b0 + cfg.batch_size, len(samples)))
            stacks: dict[str, list[np.ndarray]] = {m.name: [] for m in loaded}
            stack_maps: dict[str, list[np.ndarray]] = {m.name: [] for m in loaded}
            grids: list = []
            for i in batch:
                c, clip = samples[i].centre, tracks[samples[i].track].frames
                idx = mosaic_frame_indices(c, len(clip), windows)
                pos = {f: k for k, f in enumerate(idx)}
                tb = boxes[samples[i].track] if boxes is not None else None
                mos, bic, gauss, grid, maps = mosaic_stack(
                    protocol, clip[idx], cfg.seed * SEED_STRIDE + i, with_bicubic=True,
                    boxes=tb[idx] if tb is not None else None, centre_pos=pos[c])
                grids.append(grid)
                outputs["nearest"][i] = mos[pos[c]]
                outputs["bicubic"][i] = bic[pos[c]]
                outputs["gaussian"][i] = gauss[pos[c]]
                for m, (w, d) in zip(loaded, windows):
                    members = [pos[f] for f in window_indices(c, len(clip), w, d)]
                    stacks[m.name].append(mos[members])
                    stack_maps[m.name].append(maps[members])
            t0 = time.perf_counter()
            for m in loaded:
                st = np.stack(stacks[m.name])  # (B, F, S, S, 3) uint8
                sm = np.stack(stack_maps[m.name])  # (B, F, GRID_CHANNELS, S, S) float
                outputs[m.name][b0 : batch.stop] = m.reconstructor(st, sm)
                if m.name + SINGLE_SUFFIX in outputs:  # the centre frame repeated: what one frame alone gives
                    c = st.shape[1] // 2
                    single = np.repeat(st[:, c : c + 1], st.shape[1], axis=1)
                    outputs[m.name + SINGLE_SUFFIX][b0 : batch.stop] = m.reconstructor(
                        single, np.repeat(sm[:, c : c + 1], st.shape[1], axis=1))
                if m.name + PROJECT_SUFFIX in outputs:
                    outputs[m.name + PROJECT_SUFFIX][b0 : batch.stop] = project(
                        outputs[m.name][b0 : batch.stop], st[:, st.shape[1] // 2], grids)
            infer_s += time.perf_counter() - t0
            bar.update(len(batch))
    return outputs, infer_s


def extra_rows(loaded: Sequence[LoadedModel], cfg: EvalConfig) -> list[str]:
    """Rows besides each model's own: fed one frame (-F1), pulled back to the evidence (+proj)."""
    rows = []
    if cfg.single_frame:
        rows += [m.name + SINGLE_SUFFIX for m in loaded if m.reconstructor.geometry.window > 0]
    if cfg.project:
        rows += [m.name + PROJECT_SUFFIX for m in loaded]
    return rows


def project(recon_u8: np.ndarray, observed_u8: np.ndarray, grids: Sequence) -> np.ndarray:
    """`project_to_mosaic` of (B, S, S, 3) uint8 reconstructions onto their observed mosaics; frames whose
    grid is unknown (None) are returned unchanged."""
    out = recon_u8.copy()
    known = [i for i, g in enumerate(grids) if g is not None]
    if not known:
        return out
    origin, cell, rect = (torch.tensor(np.stack([grids[i][k] for i in known]), dtype=torch.float32) for k in range(3))
    proj = project_to_mosaic(to_float(recon_u8[known]), to_float(observed_u8[known]), origin, cell, rect)
    out[known] = to_u8(proj)
    return out
