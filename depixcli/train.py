"""Training of the STN aligner and the reconstruction U-Net + PatchGAN (`depix train`).

Data flow: crop tracks (uint8, in RAM) -> random (track, centre) -> stacks of F frames by `window_indices`
(uint8 to the device) -> augment + randomised mosaic on the device -> losses.

Stages: "stn" trains the aligner on frame pairs of one clip: L1(I_A, warp(I_B)) + lambda * mean |grid - id|
(photometric term on the clean frames, grid predicted from the mosaiced LR copies); "recon" trains the
U-Net (STN frozen) with L1 + perceptual + adversarial (PatchGAN on (pixelated centre, HR)); "all" runs both.

Checkpoints (`checkpoint.pt`: tensors and plain Python values only, read with weights_only=True) are written
atomically and resumed automatically when the output directory holds one. Under `torchrun` (LOCAL_RANK set)
each rank samples with its own seed, gradients are averaged by DDP, rank 0 logs and saves.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from depixcli.degrade import (
    PAPER_BLOCKS,
    paper_maps,
    AugmentConfig,
    MosaicConfig,
    augment,
    bicubic_baseline,
    block_means,
    paper_mosaic,
    random_mosaic,
)
from depixcli.errors import ConfigError, InputError, OutputError, check_keys
from depixcli.io.files import write_atomic
from depixcli.model.config import ModelConfig, window_indices
from depixcli.model.grid import to_lr, warp, warp_dense
from depixcli.model.nets import Depixelator, PatchDiscriminator
from depixcli.stills import MotionConfig, StillBank, still_stacks

STAGES = ("stn", "recon", "all")
CHECKPOINT = "checkpoint.pt"
CONFIG_FILE = "config.json"
LOG_FILE = "log.jsonl"
MODEL_FILE = "model.safetensors"
VAL_SEED = 1234  # fixed choice of validation stacks
SAVE_MARGIN_S = 20.0  # s kept free before --time-limit for the final checkpoint + export
STOP_CHECK = 10  # steps between the ranks' agreement on stopping at the time limit (torchrun)
VAL_BLOCKS = (16, 8)  # blocks across the face box in the face- and image-anchored validation protocols
VAL_DRIFT_PX = 1.5  # px, std of the per-frame random walk of an image-anchored grid in validation
DEAD_CHANGE = 1e-3  # mean |output - input| below which a validated network is reported dead ...
DEAD_AFTER = 500  # ... once it has trained this many steps


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
            raise ConfigError("--stage stn with --no-stn: nothing to train")
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


# ---------------------------------------------------------------- data


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
        return np.array([[self.starts[ti] + i for i in window_indices(ci, self.lengths[ti], window, stride)]
                         for ti, ci in zip(t, c)], dtype=np.int64)

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
    """Tracks of one split of a crop dataset (see dataset.py), decoded into RAM by `threads` threads
    (0: one per CPU core), each decoding the tracks of some identities."""
    from depixcli.dataset import load_crops, read_index

    ids = sorted({e["identity"] for e in read_index(crop_dir)["tracks"] if e["split"] == split})
    threads = max(1, min(threads or (os.cpu_count() or 1), len(ids)))
    groups = [ids[i::threads] for i in range(threads)]
    with ThreadPoolExecutor(threads) as pool:
        parts = list(pool.map(lambda g: load_crops(crop_dir, split=split, identities=g), groups))
    tracks = [t for part in parts for t in part]
    if not tracks:
        raise InputError(f"{crop_dir}: no tracks in the {split!r} split")
    return tracks


# ---------------------------------------------------------------- distributed


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str) -> tuple[Dist, torch.device]:
    """Join the torchrun process group when LOCAL_RANK is set; pick the device."""
    if "LOCAL_RANK" in os.environ:
        import torch.distributed as dist

        local = int(os.environ["LOCAL_RANK"])
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if not dist.is_initialized():
            dist.init_process_group(backend)
        if torch.cuda.is_available():
            torch.cuda.set_device(local)
            dev = torch.device("cuda", local)
        else:
            dev = torch.device("cpu")
        return Dist(dist.get_rank(), dist.get_world_size(), local), dev
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ConfigError(f"bad device {device!r}: {exc}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda but CUDA is not available")
    return Dist(), dev


def _wrap(module: torch.nn.Module, d: Dist, dev: torch.device):
    if d.world == 1:
        return module
    from torch.nn.parallel import DistributedDataParallel as DDP

    return DDP(module, device_ids=[dev.index] if dev.type == "cuda" else None)


# ---------------------------------------------------------------- losses and steps


def stn_loss(model: Depixelator, a_mosaic, b_mosaic, a_clean, b_clean, lam: float, stn=None) -> dict:
    """Aligner loss on pairs: all (N, 3, S, S) float [0,1]. `stn`: the (possibly DDP-wrapped) model.stn."""
    stn = stn if stn is not None else model.stn
    L = model.config.stn_size
    offsets = stn(to_lr(a_mosaic, L), to_lr(b_mosaic, L))
    photo = F.l1_loss(warp(b_clean, offsets), a_clean)
    reg = offsets.abs().mean()
    return {"loss": photo + lam * reg, "photo": photo, "grid": reg}


def align_loss(flow: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """L1 between the clean neighbours warped by the compact aligner's offsets and the clean centre, at the
    offsets' resolution: flow (B, F - 1, 2, L, L) normalised, clean (B, F, 3, S, S) float [0, 1]."""
    B, Fr, C, S, _ = clean.shape
    L = flow.shape[-1]
    c = Fr // 2
    lr = to_lr(clean.reshape(B * Fr, C, S, S).float(), L).reshape(B, Fr, C, L, L)
    others = lr[:, [i for i in range(Fr) if i != c]].reshape(-1, C, L, L)
    warped = warp_dense(others, flow.reshape(-1, 2, L, L)).reshape(B, Fr - 1, C, L, L)
    return F.l1_loss(warped, lr[:, c : c + 1].expand_as(warped))


def identity_term(sface, fake: torch.Tensor, hr: torch.Tensor, samples: int) -> torch.Tensor:
    """Mean SFace identity loss (`sface_torch.identity_loss`, canonical head-crop landmarks) of `samples` outputs
    spread over the batch against their ground truth: fake, hr (B, 3, S, S) float [0, 1]."""
    from depixcli.faces.sface_torch import identity_embedding, identity_loss

    sel = torch.linspace(0, len(fake) - 1, min(samples, len(fake))).round().long().unique()
    with torch.no_grad():
        want = identity_embedding(hr[sel].float(), net=sface)
    return identity_loss(identity_embedding(fake[sel].float().clamp(0.0, 1.0), net=sface), want)


def gan_step(g, d_train, d_frozen, perc, opt_g, opt_d, mosaic, hr, cfg: TrainConfig, autocast, maps=None,
             clean=None, sface=None) -> dict:
    """One generator + discriminator update.

    mosaic: (B, F, 3, S, S), hr: (B, 3, S, S) float [0,1]; maps: the mosaic's grid maps (B, F, 4, S, S) or None;
    clean: the clean stack (B, F, 3, S, S) for the compact aligner's loss (`align_loss`, weight cfg.w_align);
    sface: the frozen `sface_torch.SFaceNet` of the identity loss (`identity_term`, weight cfg.w_identity) or None.
    `g`, `d_train` may be DDP-wrapped; `d_frozen` is the bare discriminator used for the generator's
    adversarial term (no gradient sync for D there).
    """
    centre = mosaic[:, mosaic.shape[1] // 2]
    zero = torch.zeros((), device=hr.device)
    # generator: D frozen
    if d_frozen is not None:
        d_frozen.requires_grad_(False)
    with autocast():
        fake, flow = g(mosaic, maps, with_flow=True)
        l1 = F.l1_loss(fake.float(), hr)
        lp = perc(fake, hr).float() if perc is not None else zero
        if d_frozen is not None:
            logits = d_frozen(centre, fake).float()
            adv = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
        else:
            adv = zero
        la = align_loss(flow, clean) if flow is not None and clean is not None and cfg.w_align > 0 else zero
    lid = identity_term(sface, fake, hr, cfg.identity_samples) if sface is not None else zero  # fp32
    loss_g = cfg.w_l1 * l1 + cfg.w_perceptual * lp + cfg.w_adv * adv + cfg.w_align * la + cfg.w_identity * lid
    opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    opt_g.step()
    out = {"loss_g": loss_g.detach(), "l1": l1.detach(), "perceptual": lp.detach(), "adv": adv.detach(),
           "align": la.detach(), "identity": lid.detach()}
    if d_frozen is None:
        return out
    # discriminator: fake detached
    d_frozen.requires_grad_(True)
    with autocast():
        real_logits = d_train(centre, hr).float()
        fake_logits = d_train(centre, fake.detach()).float()
        loss_d = 0.5 * (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
                        + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))
    opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    opt_d.step()
    out["loss_d"] = loss_d.detach()
    return out


LR_RESOLUTION = 1_000_000  # steps of the fraction passed to cosine_lr by time-based schedules


def cosine_lr(base: float, step: int, total: int, floor: float) -> float:
    t = min(step / max(total, 1), 1.0)
    return base * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t)))


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (dB) of (N, 3, H, W) float [0,1]."""
    mse = ((a.float() - b.float()) ** 2).flatten(1).mean(1).clamp_min(1e-10)
    return 10 * torch.log10(1.0 / mse)


@torch.no_grad()
def validate_recon(model: Depixelator, bank: FrameBank, idx: np.ndarray, dev, batch: int, autocast) -> dict:
    """Mean PSNR of model and bicubic (of the true block values) on fixed validation stacks, per protocol:
    paper 16x16 and 8x8 (block means over the whole crop), and face-anchored (`face16`, `face8`) and
    image-anchored (`image16`, `image8`, the grid drifting against the face) mosaics over the face box;
    `single_<p>`: the model fed the centre frame only (repeated), which shows what the other frames bring."""
    from depixcli.degrade import face_mosaic

    modes = [(m, m.training) for m in model.modules()]  # restored exactly: the frozen STN stays in eval mode
    model.eval()
    res: dict[str, list] = {}
    S = model.config.crop_size
    gen = torch.Generator().manual_seed(VAL_SEED)
    for i in range(0, len(idx), batch):
        stack = to_float(bank.gather(idx[i : i + batch]), dev)
        hr = stack[:, stack.shape[1] // 2]
        c = stack.shape[1] // 2
        drift = (torch.randn(len(stack), stack.shape[1], 2, generator=gen) * VAL_DRIFT_PX).cumsum(1)
        cases = {f"paper{n}": (paper_mosaic(stack, n), bicubic_baseline(block_means(hr, n), S),
                               paper_maps(stack.shape[:2], n, S, dev)) for n in PAPER_BLOCKS}
        for n in VAL_BLOCKS:
            for name, off in ((f"face{n}", None), (f"image{n}", drift - drift[:, c : c + 1])):
                mos, bic, _, maps = face_mosaic(stack, n, off, with_maps=True)
                cases[name] = ((mos * 255).round() / 255, bic[:, c], maps)
        for name, (mos, bic, maps) in cases.items():
            with autocast():
                pred = model(mos, maps).float()
                single = (model(mos[:, c : c + 1].expand_as(mos), maps[:, c : c + 1].expand_as(maps)).float()
                          if name.startswith("image") else None)
            res.setdefault(f"val_psnr_{name}_model", []).append(psnr(pred, hr))
            res.setdefault("val_change", []).append((pred - mos[:, c]).abs().flatten(1).mean(1))
            res.setdefault(f"val_psnr_{name}_bicubic", []).append(psnr(bic, hr))
            if single is not None:
                res.setdefault(f"val_psnr_{name}_single", []).append(psnr(single, hr))
    for m, training in modes:
        m.training = training
    out = {k: round(float(torch.cat(v).mean()), 3) for k, v in res.items()}
    gains = [out[k] - out[k.replace("_model", "_bicubic")] for k in out if k.endswith("_model")]
    out["val_gain_mean"] = round(float(np.mean(gains)), 3)  # dB over bicubic, mean over the protocols
    out["val_change"] = round(out["val_change"], 5)  # mean |output - centre input|: ~0 = a dead network
    return out


@torch.no_grad()
def validate_stn(model: Depixelator, bank: FrameBank, idx: np.ndarray, dev, batch: int) -> dict:
    """Mean photometric L1 of the aligned vs the unaligned pair (16x16 paper mosaics as STN input)."""
    was = model.stn.training
    model.stn.eval()
    aligned, raw = [], []
    for i in range(0, len(idx), batch):
        pair = to_float(bank.gather(idx[i : i + batch]), dev)
        mos = paper_mosaic(pair, PAPER_BLOCKS[0])
        out = stn_loss(model, mos[:, 0], mos[:, 1], pair[:, 0], pair[:, 1], 0.0)
        aligned.append(float(out["photo"]) * len(pair))
        raw.append(float(F.l1_loss(pair[:, 1], pair[:, 0])) * len(pair))
    model.stn.train(was)
    n = len(idx)
    return {"val_stn_l1_aligned": round(sum(aligned) / n, 5), "val_stn_l1_unaligned": round(sum(raw) / n, 5)}


# ---------------------------------------------------------------- checkpoints


def save_checkpoint(path: Path, state: dict) -> None:
    import io

    buf = io.BytesIO()
    torch.save(state, buf)
    write_atomic(path, buf.getvalue())


class _StopSignal:
    """SIGINT / SIGTERM / SIGHUP set `requested` and `signum` (the loop then checkpoints and returns) instead of
    killing the run; a second signal interrupts at once. `restore()` puts the previous handlers back."""

    def __init__(self):
        import signal
        import threading

        self.requested = False
        self.signum = 0  # the signal that stopped the run
        self._old = {}
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            self._old[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested, self.signum = True, signum

    def restore(self) -> None:
        import signal

        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        self._old = {}


def _init_state(path: str | os.PathLike, mc: ModelConfig) -> dict:
    """Tensors of a weights file for a model of config `mc` (a run restarted from shipped weights)."""
    from depixcli.model import weights as weights_mod

    other = weights_mod.load_model(path)
    if other.config == mc:
        return {k: v.float() for k, v in other.state_dict().items()}
    grown = dataclasses.replace(other.config, grid_input=mc.grid_input, align=mc.align, align_size=mc.align_size,
                                align_width=mc.align_width, max_flow=mc.max_flow)
    if grown != mc:
        raise ConfigError(f"{path}: its model config differs from this run's ({other.config} vs {mc})")
    return grow_state(other.state_dict(), Depixelator(mc).state_dict())


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


def load_checkpoint(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many error types for a damaged file
        raise InputError(f"cannot resume from {path}: {exc}") from None


def load_stn_state(src: str | os.PathLike, mc: ModelConfig) -> dict:
    """STN tensors of another run (its directory, checkpoint.pt or model.safetensors) for the model config `mc`."""
    from depixcli.model import weights as weights_mod

    p = Path(src)
    if p.is_dir():
        p = p / CHECKPOINT if (p / CHECKPOINT).exists() else p / MODEL_FILE
    if p.suffix == ".safetensors":
        other = weights_mod.load_model(p)
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
    return {k[len("stn."):]: v for k, v in weights_mod.clean_state_dict(sd).items() if k.startswith("stn.")}


def _rng_state(np_rng: np.random.Generator, gen: torch.Generator) -> dict:
    return {"numpy": json.dumps(np_rng.bit_generator.state), "torch": torch.get_rng_state(), "device": gen.get_state()}


def _set_rng_state(state: dict, np_rng: np.random.Generator, gen: torch.Generator) -> None:
    np_rng.bit_generator.state = json.loads(state["numpy"])
    torch.set_rng_state(state["torch"])
    gen.set_state(state["device"])


# ---------------------------------------------------------------- the loop


class _LineProgress:
    """Progress on stderr without tqdm (the GPU machine may lack it): one line per `set_postfix`."""

    def __init__(self, total: int, initial: int, desc: str, disable: bool):
        self.n, self.total, self.desc, self.disable = initial, total, desc, disable
        self.t0, self.n0 = time.monotonic(), initial

    def update(self, k: int) -> None:
        self.n += k

    def set_postfix(self, **kw) -> None:
        if self.disable:
            return
        import sys

        rate = (self.n - self.n0) / max(time.monotonic() - self.t0, 1e-9)
        eta = (self.total - self.n) / rate if rate > 0 else float("nan")
        extra = " ".join(f"{k}={v}" for k, v in kw.items())
        print(f"{self.desc}: {self.n}/{self.total} step, {rate:.2f} step/s, ETA {eta / 60:.1f} min, {extra}",
              file=sys.stderr, flush=True)

    def close(self) -> None:
        pass


def progress(total: int, initial: int, desc: str, disable: bool):
    """tqdm bar in steps on stderr, or line progress when tqdm is not installed."""
    try:
        from tqdm import tqdm
    except ImportError:
        return _LineProgress(total, initial, desc, disable)
    return tqdm(total=total, initial=initial, unit="step", desc=desc, disable=disable, dynamic_ncols=True)


@dataclass
class TrainResult:
    stn_step: int
    step: int
    finished: bool  # every requested step done (False: stopped by the time limit)
    model_path: Path | None
    log_path: Path
    last: dict  # last logged values
    rank: int = 0  # torchrun rank of this process (only rank 0 writes files)
    interrupted: bool = False  # stopped by SIGINT / SIGTERM / SIGHUP (checkpointed: rerun to continue)
    signal: int = 0  # the signal that stopped it (interrupted)


def train(cfg: TrainConfig, out_dir: str | os.PathLike, train_tracks: Sequence, val_tracks: Sequence,
          quiet: bool = False, started: float | None = None, stills: StillBank | None = None) -> TrainResult:
    """Train (or resume) into `out_dir`. Tracks: objects with `.frames` (T, S, S, 3) uint8 RGB and `.identity`;
    `stills` (stills.load_stills of cfg.stills) makes `cfg.stills_fraction` of every batch.

    SIGINT / SIGTERM stop the run cleanly: checkpoint (+ model export) at the end of the current step; rerunning
    continues from there (optimizer, schedule, RNG and step count restored)."""
    from depixcli.model import weights as weights_mod
    from depixcli.perceptual import PerceptualLoss, describe, load_feature_net

    started = time.monotonic() if started is None else started
    cfg.validate()
    d, dev = init_distributed(cfg.device)
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {out}: {exc.strerror}") from None
    ckpt_path, log_path = out / CHECKPOINT, out / LOG_FILE
    mc = cfg.model
    bank = FrameBank(train_tracks)
    val_bank = FrameBank(val_tracks)
    S = bank.frames.shape[1]
    if S != mc.crop_size or val_bank.frames.shape[1] != S:
        raise ConfigError(f"crops are {S} px but the model expects {mc.crop_size} px")

    torch.manual_seed(cfg.seed + d.rank)
    np_rng = np.random.default_rng([cfg.seed, d.rank])
    gen = torch.Generator(device=dev)
    gen.manual_seed(cfg.seed * 1000 + d.rank)
    is_cuda = dev.type == "cuda"

    def autocast():
        if not is_cuda:
            return torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.cpu_bf16)
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=cfg.amp)

    model = Depixelator(mc).to(dev)
    disc = PatchDiscriminator(cfg.disc_width).to(dev) if cfg.gan else None
    if is_cuda or cfg.cpu_bf16:  # channels_last: faster convolutions on CUDA and for CPU bf16 (bench_train_step.py)
        model = model.to(memory_format=torch.channels_last)
        disc = disc.to(memory_format=torch.channels_last) if disc is not None else None
    opt_stn = torch.optim.Adam(model.stn.parameters(), lr=cfg.stn_lr) if model.stn is not None else None
    g_params = list(model.recon.parameters()) + (list(model.aligner.parameters()) if model.aligner is not None else [])
    opt_g = torch.optim.Adam(g_params, lr=cfg.lr, betas=(0.5, 0.999))  # generator: reconstruction (+ compact aligner)
    opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.lr_d, betas=(0.5, 0.999)) if disc is not None else None
    n_still = int(round(cfg.batch_size * cfg.stills_fraction)) if stills is not None else 0

    stn_step = step = 0
    elapsed_before = 0.0
    if cfg.init_stn and model.stn is not None and not ckpt_path.exists():
        model.stn.load_state_dict(load_stn_state(cfg.init_stn, mc))
        stn_step = cfg.stn_steps
    if cfg.init and not ckpt_path.exists():
        model.load_state_dict(_init_state(cfg.init, mc))
    if ckpt_path.exists():
        st = load_checkpoint(ckpt_path)
        saved = TrainConfig.from_dict(json.loads(st["config"]))
        if saved.model != mc or saved.gan != cfg.gan or saved.disc_width != cfg.disc_width:
            raise ConfigError(f"{out} holds a run with another model ({saved.model}); use a new output directory")
        model.load_state_dict(st["model"])
        if disc is not None:
            disc.load_state_dict(st["disc"])
        for opt, key in ((opt_stn, "opt_stn"), (opt_g, "opt_g"), (opt_d, "opt_d")):
            if opt is not None and key in st:
                opt.load_state_dict(st[key])
        stn_step, step, elapsed_before = int(st["stn_step"]), int(st["step"]), float(st["elapsed_s"])
        if d.main:
            _set_rng_state(st["rng"], np_rng, gen)
        else:
            np_rng = np.random.default_rng([cfg.seed, d.rank, step, stn_step])
            gen.manual_seed(cfg.seed * 1000 + d.rank + 7919 * (step + stn_step))
    if d.main:
        write_atomic(out / CONFIG_FILE, json.dumps(cfg.to_dict(), indent=1).encode())

    run_stn = cfg.stage in ("stn", "all") and mc.use_stn and mc.window > 0
    run_recon = cfg.stage in ("recon", "all")
    if run_recon and mc.use_stn and mc.window > 0 and stn_step == 0 and not run_stn:
        raise ConfigError("the STN is untrained: run --stage stn (or all) first into this directory, or use --no-stn")

    vrng = np.random.default_rng(VAL_SEED)
    n_val = min(cfg.val_samples, len(val_bank))
    val_stacks = val_bank.stacks(vrng, n_val, mc.window, mc.stride)
    val_pairs = val_bank.pairs(vrng, n_val, max(mc.window * mc.stride, 1))
    log_f = open(log_path, "a") if d.main else None
    pool = ThreadPoolExecutor(max(cfg.workers, 1))
    last: dict = {}
    last_val: dict = {}
    perceptual_name = describe(cfg.perceptual) if run_recon and cfg.w_perceptual > 0 else "none"
    save_s = 5.0  # s, measured after the first save

    def log(rec: dict) -> None:
        nonlocal last
        last = rec
        last_val.update({k: v for k, v in rec.items() if k.startswith("val_")})
        if log_f is not None:
            log_f.write(json.dumps(rec) + "\n")
            log_f.flush()

    def elapsed() -> float:
        return time.monotonic() - started

    def lr_at(base: float, k: int, total: int) -> float:
        """Cosine LR at step k of total, or at the elapsed fraction of `schedule_minutes` if that is further on."""
        frac = k / max(total, 1)
        if cfg.schedule_minutes > 0:
            frac = max(frac, (elapsed_before + elapsed()) / (cfg.schedule_minutes * 60))
        return cosine_lr(base, int(min(frac, 1.0) * LR_RESOLUTION), LR_RESOLUTION, cfg.lr_floor)

    def set_lr(opt, base: float, k: int, total: int) -> None:
        for grp in opt.param_groups:
            grp["lr"] = lr_at(base, k, total)

    def step_record(stage: str, k: int, losses: dict, lr: float, since: float, n: int) -> dict:
        """One JSONL log line: losses, learning rate and speed over the `n` steps since `since`."""
        dt = time.monotonic() - since
        return {"stage": stage, "step": k, **{name: round(float(v), 5) for name, v in losses.items()},
                "lr": lr, "s_per_step": round(dt / n, 4),
                "samples_per_s": round(n * cfg.batch_size * d.world / dt, 1),
                "time_s": round(elapsed_before + elapsed(), 1)}

    def time_up(step_s: float, k: int) -> bool:
        """Stop before the time limit? Under torchrun the ranks agree (all-reduce every STOP_CHECK steps)."""
        if cfg.time_limit_min <= 0:
            return False
        if d.world == 1:
            return elapsed() + 2 * step_s + save_s + SAVE_MARGIN_S > cfg.time_limit_min * 60
        if k % STOP_CHECK:
            return False
        import torch.distributed as dist

        late = elapsed() + (STOP_CHECK + 2) * step_s + save_s + SAVE_MARGIN_S > cfg.time_limit_min * 60
        flag = torch.tensor([float(late)], device=dev)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def checkpoint(export: bool, complete: bool) -> None:
        nonlocal save_s, last_save
        last_save = time.monotonic()
        if not d.main:
            return
        t0 = time.monotonic()
        state = {
            "config": json.dumps(cfg.to_dict()),
            "stn_step": stn_step,
            "step": step,
            "elapsed_s": elapsed_before + elapsed(),
            "model": model.state_dict(),
            "opt_g": opt_g.state_dict(),
            "rng": _rng_state(np_rng, gen),
        }
        if disc is not None:
            state["disc"], state["opt_d"] = disc.state_dict(), opt_d.state_dict()
        if opt_stn is not None:
            state["opt_stn"] = opt_stn.state_dict()
        save_checkpoint(ckpt_path, state)
        if export:
            meta = {
                "perceptual": perceptual_name,
                "train": {
                    "stn_steps": stn_step, "steps": step, "complete": complete, "batch_size": cfg.batch_size,
                    "world_size": d.world, "device": torch.cuda.get_device_name(dev) if is_cuda else "cpu",
                    "minutes": round((elapsed_before + elapsed()) / 60, 2), "train_frames": len(bank),
                    "train_identities": len(bank.identities), "val_identities": len(val_bank.identities),
                    "stills": len(stills) if stills is not None else 0,
                    "still_identities": len(set(stills.identities)) if stills is not None else 0,
                    "threads": torch.get_num_threads(),
                    "config": cfg.to_dict(),
                },
                "last_validation": dict(last_val),
            }
            weights_mod.save_model(out / MODEL_FILE, model, meta, half=cfg.half_weights)
        save_s = max(save_s, time.monotonic() - t0)

    def batches(sampler, n_ahead: int, gather=bank.gather):
        """Yield uint8 batches gathered in background threads, indices drawn in order from np_rng."""
        futures = []
        while True:
            while len(futures) < n_ahead:
                futures.append(pool.submit(gather, sampler()))
            yield futures.pop(0).result()

    def gather_mixed(idx: tuple[np.ndarray, np.ndarray]) -> tuple[torch.Tensor, torch.Tensor | None]:
        return bank.gather(idx[0]), stills.gather(idx[1]) if n_still else None

    def recon_batch(uint8: tuple[torch.Tensor, torch.Tensor | None]) -> torch.Tensor:
        """Clip stacks (+ still stacks) -> (B, F, 3, S, S) float [0, 1], augmented."""
        stack = to_float(uint8[0], dev)
        if uint8[1] is not None:
            moving = still_stacks(uint8[1].to(dev), mc.frames, S, gen, cfg.motion)
            stack = torch.cat([stack, moving], 0)
        return augment(stack, gen, cfg.augment)

    def due(minutes: float, since: float) -> bool:
        return minutes > 0 and time.monotonic() - since >= minutes * 60

    last_save = last_val_t = time.monotonic()
    stop = _StopSignal()
    finished = True
    try:
        # ---------------- stage 1: aligner
        if run_stn and stn_step < cfg.stn_steps:
            stn = _wrap(model.stn, d, dev)
            stn_run = torch.compile(stn) if cfg.compile else stn
            model.stn.train()
            max_off = max(mc.window * mc.stride, 1)
            it = batches(lambda: bank.pairs(np_rng, cfg.batch_size, max_off), cfg.workers + 1)
            bar = progress(cfg.stn_steps, stn_step, "stn", quiet or not d.main)
            t_log, n_log, step_s = time.monotonic(), 0, 0.0
            while stn_step < cfg.stn_steps:
                if time_up(step_s, stn_step) or stop.requested:
                    finished = False
                    break
                t0 = time.monotonic()
                pair = augment(to_float(next(it), dev), gen, cfg.augment)
                mos = random_mosaic(pair, gen, cfg.mosaic)
                set_lr(opt_stn, cfg.stn_lr, stn_step, cfg.stn_steps)
                with autocast():
                    losses = stn_loss(model, mos[:, 0], mos[:, 1], pair[:, 0], pair[:, 1], cfg.stn_lambda, stn_run)
                opt_stn.zero_grad(set_to_none=True)
                losses["loss"].backward()
                opt_stn.step()
                stn_step += 1
                n_log += 1
                bar.update(1)
                step_s = 0.9 * step_s + 0.1 * (time.monotonic() - t0) if step_s else time.monotonic() - t0
                if stn_step % cfg.log_every == 0 or stn_step == cfg.stn_steps:
                    rec = step_record("stn", stn_step, {k: v.detach() for k, v in losses.items()},
                                      opt_stn.param_groups[0]["lr"], t_log, n_log)
                    if stn_step % cfg.val_every == 0 or stn_step == cfg.stn_steps:
                        rec.update(validate_stn(model, val_bank, val_pairs, dev, cfg.batch_size))
                    log(rec)
                    bar.set_postfix(loss=f"{rec['loss']:.4f}")
                    t_log, n_log = time.monotonic(), 0
                if stn_step % cfg.ckpt_every == 0 or due(cfg.ckpt_minutes, last_save):
                    checkpoint(export=False, complete=False)
            bar.close()

        # ---------------- stage 2: reconstruction (+ GAN), STN frozen
        if run_recon and finished and step < cfg.steps:
            if model.stn is not None:
                model.stn.requires_grad_(False)
                model.stn.eval()
            model.recon.train()
            g = _wrap(model, d, dev)
            dtrain = _wrap(disc, d, dev) if disc is not None else None
            if cfg.compile:
                g = torch.compile(g)
                dtrain = torch.compile(dtrain) if dtrain is not None else None
            perc = None
            if cfg.perceptual != "none" and cfg.w_perceptual > 0:
                perc = PerceptualLoss(load_feature_net(cfg.perceptual)).to(dev)
                if is_cuda:
                    perc = perc.to(memory_format=torch.channels_last)
            sface = None
            if cfg.w_identity > 0:
                from depixcli.faces.sface_torch import load_sface_net

                sface = load_sface_net(str(dev))
            it = batches(lambda: (bank.stacks(np_rng, cfg.batch_size - n_still, mc.window, mc.stride),
                                  stills.sample(np_rng, n_still) if n_still else None), cfg.workers + 1, gather_mixed)
            bar = progress(cfg.steps, step, "recon", quiet or not d.main)
            t_log, n_log, step_s = time.monotonic(), 0, 0.0
            while step < cfg.steps:
                if time_up(step_s, step) or stop.requested:
                    finished = False
                    break
                t0 = time.monotonic()
                stack = recon_batch(next(it))
                hr = stack[:, mc.window]
                maps = None
                if mc.grid_input:
                    mosaic, maps = random_mosaic(stack, gen, cfg.mosaic, return_maps=True)
                    known = torch.rand(len(maps), generator=gen, device=dev) >= cfg.p_unknown_grid
                    maps = maps * known[:, None, None, None, None]
                else:
                    mosaic = random_mosaic(stack, gen, cfg.mosaic)
                set_lr(opt_g, cfg.lr, step, cfg.steps)
                if opt_d is not None:
                    set_lr(opt_d, cfg.lr_d, step, cfg.steps)
                losses = gan_step(g, dtrain, disc, perc, opt_g, opt_d, mosaic, hr, cfg, autocast, maps, stack, sface)
                step += 1
                n_log += 1
                bar.update(1)
                step_s = 0.9 * step_s + 0.1 * (time.monotonic() - t0) if step_s else time.monotonic() - t0
                val_now = step % cfg.val_every == 0 or step == cfg.steps or due(cfg.val_minutes, last_val_t)
                if step % cfg.log_every == 0 or step == cfg.steps or val_now:
                    rec = step_record("recon", step, losses, opt_g.param_groups[0]["lr"], t_log, n_log)
                    if val_now:
                        bar.set_postfix(validating=f"{len(val_stacks)} stacks")  # a long wait on CPU: say why
                        rec.update(validate_recon(model, val_bank, val_stacks, dev, cfg.batch_size, autocast))
                        last_val_t = time.monotonic()
                        if step >= DEAD_AFTER and rec["val_change"] < DEAD_CHANGE:
                            import warnings

                            warnings.warn(f"step {step}: the network returns its input unchanged (mean change "
                                          f"{rec['val_change']}); its ReLUs may have died early: restart in a new "
                                          "directory with another --seed", stacklevel=1)
                    log(rec)
                    bar.set_postfix(l1=f"{rec['l1']:.4f}")
                    t_log, n_log = time.monotonic(), 0
                if step % cfg.ckpt_every == 0 or due(cfg.ckpt_minutes, last_save):
                    checkpoint(export=True, complete=False)
            bar.close()
        checkpoint(export=run_recon and step > 0, complete=finished and (not run_recon or step >= cfg.steps))
        if d.world > 1:
            import torch.distributed as dist

            dist.barrier()  # the other ranks wait for rank 0's files
    finally:
        stop.restore()
        pool.shutdown(wait=False, cancel_futures=True)
        if log_f is not None:
            log_f.close()
    model_path = out / MODEL_FILE if (out / MODEL_FILE).exists() else None
    return TrainResult(stn_step, step, finished, model_path, log_path, last, d.rank, stop.requested, stop.signum)
