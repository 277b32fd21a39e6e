"""Self-describing model weights: one safetensors file = format version + ModelConfig + metadata + tensors.

The network is rebuilt from the file alone. Files are never unpickled. Wrapper prefixes (`module.` from DDP,
`_orig_mod.` from torch.compile) are stripped here and nowhere else (`clean_state_dict`).

The default model (`default_weights_path`) ships inside the package: pyproject.toml maps the repository's
`weights/` folder (the file and its model card) to the package `depixcli.model.shipped`, read here with
importlib.resources, so a wheel or `pip install .` runs offline with no flags.
"""

from __future__ import annotations

import importlib.resources
import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from depixcli.errors import ConfigError, WeightsError
from depixcli.io.files import atomic_path
from depixcli.model.config import ModelConfig
from depixcli.model.nets import Depixelator

FORMAT = "depix-depixelator"
FORMAT_VERSION = 1
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
DEFAULT_WEIGHTS_NAME = "depix-default.safetensors"
SHIPPED_PACKAGE = "depixcli.model.shipped"  # package data: the repository's weights/ folder (pyproject package-dir)
CHECKOUT_WEIGHTS = Path(__file__).resolve().parents[2] / "weights"  # the same folder in a source checkout
WEIGHTS_ENV = "DEPIX_WEIGHTS"  # environment variable naming a weights file; overrides the shipped one


def shipped_weights_path() -> Path:
    """The default model that ships with depix: the `weights/` folder of a source checkout (where the package-dir
    mapping does not apply: run from the tree, or an editable install of it), else the installed package data."""
    checkout = CHECKOUT_WEIGHTS / DEFAULT_WEIGHTS_NAME
    if checkout.is_file():
        return checkout
    try:
        resource = importlib.resources.files(SHIPPED_PACKAGE) / DEFAULT_WEIGHTS_NAME
    except ModuleNotFoundError:
        return checkout
    return Path(str(resource))  # installed as plain files (a wheel is unpacked), never from inside a zip


def default_weights_path() -> Path:
    """The weights `depix run` uses without `--weights`: `$DEPIX_WEIGHTS`, else the shipped file.

    Raises WeightsError naming the path looked at when the file does not exist.
    """
    env = os.environ.get(WEIGHTS_ENV)
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise WeightsError(f"{WEIGHTS_ENV}={env} does not name a weights file")
        return path
    path = shipped_weights_path()
    if not path.is_file():
        raise WeightsError(f"no default weights at {path}", advice="weights")
    return path


def clean_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip DDP / torch.compile wrapper prefixes from every key (repeatedly, in any order)."""
    out = {}
    for k, v in sd.items():
        changed = True
        while changed:
            changed = False
            for p in WRAPPER_PREFIXES:
                if k.startswith(p):
                    k = k[len(p) :]
                    changed = True
            k = k.replace("._orig_mod.", ".").replace(".module.", ".")
        out[k] = v
    return out


def save_model(path: str | os.PathLike, model: Depixelator, meta: dict, half: bool = False) -> None:
    """Write `model` (its config, `meta` as JSON, tensors; float16 if `half`) atomically to `path`."""
    sd = clean_state_dict(model.state_dict())
    tensors = {}
    for k, v in sd.items():
        v = v.detach().cpu()
        if half and v.is_floating_point():
            v = v.half()
        tensors[k] = v.contiguous()
    header = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "config": model.config.to_json(),
        "meta": json.dumps(meta, sort_keys=True, default=str),
    }
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata=header)


def read_header(path: str | os.PathLike) -> dict:
    """Return {"format_version", "config": ModelConfig, "meta": dict} of a weights file (tensors not loaded)."""
    header, _ = _read(path, tensors=False)
    return header


def _read(path, tensors: bool):
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            raw = f.metadata() or {}
            sd = {k: f.get_tensor(k) for k in f.keys()} if tensors else {}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise WeightsError(f"{path} is not a valid safetensors weights file: {exc}") from None
    if raw.get("format") != FORMAT:
        raise WeightsError(f"{path} is not a depix model file (format {raw.get('format')!r})")
    try:
        version = int(raw["format_version"])
        if version > FORMAT_VERSION:
            raise WeightsError(f"{path} has format version {version}; this depix reads <= {FORMAT_VERSION}: upgrade")
        config = ModelConfig.from_dict(json.loads(raw["config"]))
        meta = json.loads(raw.get("meta", "{}"))
    except (KeyError, ValueError, TypeError, ConfigError) as exc:
        raise WeightsError(f"{path} has a corrupt header: {exc}") from None
    return {"format_version": version, "config": config, "meta": meta}, sd


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> Depixelator:
    """Rebuild the Depixelator described by `path` (float32, eval mode) on `device`; raises WeightsError."""
    header, sd = _read(path, tensors=True)
    model = Depixelator(header["config"])
    sd = clean_state_dict(sd)
    own = model.state_dict()
    if set(sd) != set(own):
        missing, extra = sorted(set(own) - set(sd)), sorted(set(sd) - set(own))
        raise WeightsError(f"{path}: tensors do not match its config (missing {missing[:3]}, unexpected {extra[:3]})")
    for k, v in sd.items():
        if v.shape != own[k].shape:
            raise WeightsError(f"{path}: tensor {k} has shape {tuple(v.shape)}, expected {tuple(own[k].shape)}")
    bad = [k for k, v in sd.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise WeightsError(f"{path}: {len(bad)} tensor(s) hold NaN or Inf values (e.g. {bad[0]}); "
                           "the model is unusable (training diverged?)")
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in sd.items()}, strict=True)
    model.meta = header["meta"]  # type: ignore[attr-defined]
    return model.to(device).eval()
