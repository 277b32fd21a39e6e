"""Training configuration: `TrainConfig` (frozen; JSON is its serialisation, unknown keys are an error), the run
directory's file names, and `override` for command-line flags."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from depixcli.errors import ConfigError, OptionError, check_keys
from depixcli.model.config import ModelConfig
from depixcli.train.augment import AugmentConfig
from depixcli.train.degrade import MosaicConfig
from depixcli.train.stills import MotionConfig

STAGES = ("stn", "recon", "all")
CHECKPOINT = "checkpoint.pt"
CONFIG_FILE = "config.json"
LOG_FILE = "log.jsonl"
MODEL_FILE = "model.safetensors"


@dataclass(frozen=True)
class TrainConfig:
    stage: str = "all"  # "stn", "recon" or "all"
    model: ModelConfig = field(default_factory=ModelConfig)
    mosaic: MosaicConfig = field(default_factory=MosaicConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    steps: int = 20000  # reconstruction steps (total, over all resumed runs)
    stn_steps: int = 3000  # aligner steps
    batch_size: int = 16  # stacks per step and per GPU
    lr: float = 2e-4  # generator (U-Net) Adam learning rate, cosine-decayed to lr_floor * lr
    lr_d: float = 2e-4  # discriminator learning rate
    stn_lr: float = 1e-3  # aligner learning rate
    lr_floor: float = 0.1  # final / initial learning rate
    stn_lambda: float = 0.1  # weight of the grid-regularisation term L1(grid, identity)
    w_l1: float = 1.0  # pixel L1 weight
    w_perceptual: float = 0.2  # feature L1 weight
    w_adv: float = 0.005  # adversarial weight
    gan: bool = True  # train with the PatchGAN discriminator
    disc_width: int = 64  # PatchGAN first-layer channels
    perceptual: str = "vgg16-stlpips"  # vgg16-stlpips | mobilenetv2 | none | path (.pth / exported .safetensors)
    init_stn: str = ""  # run dir, checkpoint.pt or model.safetensors whose trained STN is reused (STN stage skipped)
    time_limit_min: float = 0.0  # stop cleanly (checkpoint + export) before this many minutes; 0 = none
    schedule_minutes: float = 0.0  # spread the cosine LR decay over this many minutes of run time (resumed chunks
    #                                included) instead of over `steps`, for time-boxed runs; 0 = by steps
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    workers: int = 2  # background threads gathering uint8 batches
    seed: int = 0
    compile: bool = False  # torch.compile the networks
    amp: bool = True  # bf16 autocast on CUDA (always fp32 on CPU)
    log_every: int = 50  # steps
    val_every: int = 1000  # steps
    ckpt_every: int = 1000  # steps
    val_samples: int = 256  # validation stacks (fixed)
    half_weights: bool = True  # export model.safetensors in float16
    stills: str = ""  # faces.csv of still head crops mixed into every batch (stills.py); "" = clips only
    stills_fraction: float = 0.5  # share of each batch made from stills
    motion: MotionConfig = field(default_factory=MotionConfig)  # how a still becomes a moving stack
    ckpt_minutes: float = 5.0  # also checkpoint (and export) every this many minutes of wall time; 0 = by steps only
    val_minutes: float = 0.0  # also validate every this many minutes (a learning curve over hours); 0 = by steps
    init: str = ""  # weights (.safetensors) to start from when the run directory holds no checkpoint
    w_align: float = 0.1  # compact aligner: weight of L1(warped clean neighbour, clean centre) at align_size
    p_unknown_grid: float = 0.1  # grid_input: share of stacks whose grid maps are zeroed (grid not located)
    cpu_bf16: bool = False  # bf16 autocast on CPU too (AVX-512 BF16)
    w_identity: float = 0.0  # weight of the SFace identity loss (1 - cosine to the ground truth's embedding)
    identity_samples: int = 4  # stacks of each batch the identity loss sees (SFace costs ~90 ms each on a core)
    w_temporal: float = 0.0  # weight of the temporal loss mean |(y[t+1] - y[t]) - (g[t+1] - g[t])|; 0 = none
    temporal_samples: int = 4  # clip stacks of each batch also reconstructed one frame later for it

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        check_keys(cls, d, "train config")
        d = dict(d)
        if "model" in d:
            d["model"] = ModelConfig.from_dict(d["model"])
        for name, sub in (("mosaic", MosaicConfig), ("augment", AugmentConfig), ("motion", MotionConfig)):
            if name in d:
                check_keys(sub, d[name], f"{name} config")
                d[name] = sub(**d[name])
        cfg = cls(**d)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        if self.stage not in STAGES:
            raise ConfigError(f"stage must be one of {STAGES}, got {self.stage!r}")
        if self.batch_size < 1 or self.steps < 0 or self.stn_steps < 0:
            raise ConfigError("batch_size must be >= 1 and steps, stn_steps >= 0")
        if self.stage == "stn" and not self.model.use_stn:
            raise OptionError("stage", "stn: this model has no STN to train (use_stn is off)")
        if self.w_temporal < 0 or self.temporal_samples < 1:
            raise ConfigError(f"w_temporal must be >= 0 and temporal_samples >= 1, got {self.w_temporal}, "
                              f"{self.temporal_samples}")
        if not 0.0 <= self.stills_fraction < 1.0:
            raise ConfigError(f"stills_fraction must be in [0, 1), got {self.stills_fraction}")
        self.model.validate()


def load_config(path: str | os.PathLike) -> TrainConfig:
    try:
        d = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from None
    if not isinstance(d, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    return TrainConfig.from_dict(d)


def override(cfg: TrainConfig, **changes) -> TrainConfig:
    """Replace top-level fields, or model fields given as `model_<name>`; None values are ignored."""
    top, model = {}, {}
    for k, v in changes.items():
        if v is None:
            continue
        if k.startswith("model_"):
            model[k[len("model_"):]] = v
        else:
            top[k] = v
    if model:
        top["model"] = dataclasses.replace(cfg.model, **model)
    new = dataclasses.replace(cfg, **top)
    new.validate()
    return new
