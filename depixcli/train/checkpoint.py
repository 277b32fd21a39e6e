"""Run state on disk: `checkpoint.pt` (tensors and plain Python values only, read with weights_only=True, written
atomically), warm starts from weights files (`init_state`, `grow_state`), another run's aligner (`load_stn_state`),
and the random generators' state (`rng_state`)."""

from __future__ import annotations

import dataclasses
import io
import json
import os
from pathlib import Path

import numpy as np
import torch

from depixcli.errors import ConfigError, InputError
from depixcli.io.files import write_atomic
from depixcli.model.config import ModelConfig
from depixcli.model.nets import Depixelator
from depixcli.model.weights import clean_state_dict, load_model, read_header
from depixcli.train.config import CHECKPOINT, MODEL_FILE, TrainConfig


def save_checkpoint(path: Path, state: dict) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    write_atomic(path, buf.getvalue())


def load_checkpoint(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many error types for a damaged file
        raise InputError(f"cannot resume from {path}: {exc}") from None


def init_state(path: str | os.PathLike, mc: ModelConfig) -> dict:
    """Tensors of a weights file for a model of config `mc` (a run restarted from shipped weights); a file of a
    compact net without this run's grid maps or aligner is grown to it (`grow_state`)."""
    other = read_header(path)["config"]  # the config is checked before the tensors are read
    if other == mc:
        return {k: v.float() for k, v in load_model(path).state_dict().items()}
    grown = dataclasses.replace(other, grid_input=mc.grid_input, align=mc.align, align_size=mc.align_size,
                                align_width=mc.align_width, max_flow=mc.max_flow)
    if grown != mc:
        raise ConfigError(f"{path}: its model config differs from this run's ({other} vs {mc})")
    return grow_state(load_model(path).state_dict(), Depixelator(mc).state_dict())


def grow_state(old: dict, new: dict) -> dict:
    """Warm start of a compact net that gained grid maps and/or an aligner: every tensor of `old` is kept;
    the head conv keeps its frame channels (the first ones) and starts at zero on the new map channels;
    the aligner's tensors keep their fresh initialisation (zero output: the identity warp)."""
    out = {}
    for k, v in new.items():
        if k not in old:
            out[k] = v
            continue
        o = old[k].float()
        if o.shape == v.shape:
            out[k] = o
        elif k == "recon.head.weight" and o.shape[1] < v.shape[1] and o.shape[0] == v.shape[0]:
            w = torch.zeros_like(v)
            w[:, : o.shape[1]] = o
            out[k] = w
        else:
            raise ConfigError(f"cannot grow tensor {k} from {tuple(o.shape)} to {tuple(v.shape)}")
    return out


def load_stn_state(src: str | os.PathLike, mc: ModelConfig) -> dict:
    """STN tensors of another run (its directory, checkpoint.pt or model.safetensors) for the model config `mc`."""
    p = Path(src)
    if p.is_dir():
        p = p / CHECKPOINT if (p / CHECKPOINT).exists() else p / MODEL_FILE
    if p.suffix == ".safetensors":
        other = load_model(p)
        cfg_other, sd = other.config, {"stn." + k: v for k, v in other.stn.state_dict().items()} if other.stn else {}
    else:
        st = load_checkpoint(p)
        cfg_other = TrainConfig.from_dict(json.loads(st["config"])).model
        if int(st["stn_step"]) == 0:
            raise ConfigError(f"{p}: its STN is untrained")
        sd = st["model"]
    keys = ("use_stn", "stn_size", "stn_grid", "stn_max_offset", "stn_widths")
    if not cfg_other.use_stn or any(getattr(cfg_other, k) != getattr(mc, k) for k in keys):
        raise ConfigError(f"{p}: its STN does not match this model's STN settings")
    return {k[len("stn."):]: v for k, v in clean_state_dict(sd).items() if k.startswith("stn.")}


def rng_state(np_rng: np.random.Generator, gen: torch.Generator) -> dict:
    return {"numpy": json.dumps(np_rng.bit_generator.state), "torch": torch.get_rng_state(), "device": gen.get_state()}


def set_rng_state(state: dict, np_rng: np.random.Generator, gen: torch.Generator) -> None:
    np_rng.bit_generator.state = json.loads(state["numpy"])
    torch.set_rng_state(state["torch"])
    gen.set_state(state["device"])
