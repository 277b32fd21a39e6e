"""The training loop of `depix train`: one `Trainer` holds a run's state, and one stage loop (`run_stage`) runs both
stages: "stn" trains the aligner on frame pairs, "recon" the reconstruction network (+ PatchGAN) with the STN frozen.

Data flow of a step: crop tracks (uint8, in RAM) -> random (track, centre) -> stacks of F frames by
`window_indices` (uint8 to the device) -> augment + randomised mosaic on the device -> losses -> optimiser step.

Checkpoints (`checkpoint.pt`, checkpoint.py) are written atomically and resumed automatically when the output
directory holds one. Under `torchrun` (LOCAL_RANK set) each rank samples with its own seed, gradients are averaged
by DDP, rank 0 logs and saves. SIGINT / SIGTERM / SIGHUP stop a run cleanly at the end of the current step.
"""

from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from depixcli.errors import ConfigError, DepixWarning, OptionError, OutputError
from depixcli.io.files import write_atomic
from depixcli.io.progress import progress_bar
from depixcli.model.nets import Depixelator, PatchDiscriminator, count_parameters
from depixcli.model.weights import save_model
from depixcli.train.checkpoint import (
    init_state,
    load_checkpoint,
    load_stn_state,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from depixcli.train.config import CHECKPOINT, CONFIG_FILE, LOG_FILE, MODEL_FILE, TrainConfig
from depixcli.train.data import FrameBank
from depixcli.train.dist import any_rank, barrier, init_distributed
from depixcli.train.perceptual import describe
from depixcli.train.stages import Stage, recon_stage, stn_stage
from depixcli.train.stills import StillBank
from depixcli.train.validate import FLICKER_STACKS, VAL_SEED

SAVE_MARGIN_S = 20.0  # s kept free before --time-limit for the final checkpoint + export
FIRST_SAVE_S = 5.0  # s, assumed length of a checkpoint + export until the first one is timed
STOP_CHECK = 10  # steps between the ranks' agreement on stopping at the time limit (torchrun)
DEAD_CHANGE = 1e-3  # mean |output - input| below which a validated network is reported dead ...
DEAD_AFTER = 500  # ... once it has trained this many steps
LR_RESOLUTION = 1_000_000  # steps of the fraction passed to cosine_lr by time-based schedules


def cosine_lr(base: float, step: int, total: int, floor: float) -> float:
    t = min(step / max(total, 1), 1.0)
    return base * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t)))


class StopSignal:
    """SIGINT / SIGTERM / SIGHUP set `requested` and `signum` (the loop then checkpoints and returns) instead of
    killing the run; a second signal interrupts at once. `restore()` puts the previous handlers back."""

    def __init__(self):
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
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        self._old = {}


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


class Trainer:
    """One training run into `out_dir` (see `train`)."""

    def __init__(self, cfg: TrainConfig, out_dir: str | os.PathLike, train_tracks: Sequence, val_tracks: Sequence,
                 quiet: bool = False, started: float | None = None, stills: StillBank | None = None):
        self.started = time.monotonic() if started is None else started
        cfg.validate()
        self.cfg, self.quiet, self.stills = cfg, quiet, stills
        self.d, self.dev = init_distributed(cfg.device)
        self.out = Path(out_dir)
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create {self.out}: {exc.strerror}") from None
        self.ckpt_path, self.log_path = self.out / CHECKPOINT, self.out / LOG_FILE
        self.bank, self.val_bank = FrameBank(train_tracks), FrameBank(val_tracks)
        self.S = self.bank.frames.shape[1]
        if self.S != cfg.model.crop_size or self.val_bank.frames.shape[1] != self.S:
            raise ConfigError(f"crops are {self.S} px but the model expects {cfg.model.crop_size} px")
        torch.manual_seed(cfg.seed + self.d.rank)
        self.np_rng = np.random.default_rng([cfg.seed, self.d.rank])
        self.gen = torch.Generator(device=self.dev)
        self.gen.manual_seed(cfg.seed * 1000 + self.d.rank)
        self.is_cuda = self.dev.type == "cuda"
        self.build_networks()
        self.n_still = int(round(cfg.batch_size * cfg.stills_fraction)) if stills is not None else 0
        self.done = {"stn": 0, "recon": 0}  # steps done per stage
        self.elapsed_before = 0.0  # s of run time before this process (resumed runs)
        self.load_start_state()
        if self.d.main:
            write_atomic(self.out / CONFIG_FILE, json.dumps(cfg.to_dict(), indent=1).encode())
        mc = cfg.model
        self.run_stn = cfg.stage in ("stn", "all") and mc.use_stn and mc.window > 0
        self.run_recon = cfg.stage in ("recon", "all")
        if self.run_recon and mc.use_stn and mc.window > 0 and self.done["stn"] == 0 and not self.run_stn:
            raise OptionError("stage", "recon: the STN is untrained: run the stn stage (or all) first into this "
                                       "directory, or train a model without an STN")
        vrng = np.random.default_rng(VAL_SEED)
        n_val = min(cfg.val_samples, len(self.val_bank))
        self.val_stacks = self.val_bank.stacks(vrng, n_val, mc.window, mc.stride)
        self.val_pairs = self.val_bank.pairs(vrng, n_val, max(mc.window * mc.stride, 1))
        self.val_next = self.val_bank.next_stacks(self.val_stacks[:FLICKER_STACKS], mc.window, mc.stride)
        self.last: dict = {}  # the last log record
        self.last_val: dict = {}  # the last value of every validation key
        self.perceptual_name = describe(cfg.perceptual) if self.run_recon and cfg.w_perceptual > 0 else "none"
        self.save_s = FIRST_SAVE_S  # s, longest checkpoint + export so far

    # ------------------------------------------------------------ setup

    def build_networks(self) -> None:
        """The model, the discriminator (with cfg.gan) and their optimisers, on the device."""
        cfg, dev = self.cfg, self.dev
        self.model = Depixelator(cfg.model).to(dev)
        self.disc = PatchDiscriminator(cfg.disc_width).to(dev) if cfg.gan else None
        if self.is_cuda or cfg.cpu_bf16:  # channels_last: faster convolutions on CUDA and for CPU bf16
            self.model = self.model.to(memory_format=torch.channels_last)
            self.disc = self.disc.to(memory_format=torch.channels_last) if self.disc is not None else None
        stn = self.model.stn
        self.opt_stn = torch.optim.Adam(stn.parameters(), lr=cfg.stn_lr) if stn is not None else None
        aligner = self.model.aligner
        g_params = list(self.model.recon.parameters()) + (list(aligner.parameters()) if aligner is not None else [])
        self.opt_g = torch.optim.Adam(g_params, lr=cfg.lr, betas=(0.5, 0.999))  # reconstruction (+ compact aligner)
        self.opt_d = (torch.optim.Adam(self.disc.parameters(), lr=cfg.lr_d, betas=(0.5, 0.999))
                      if self.disc is not None else None)

    def load_start_state(self) -> None:
        """Resume the run directory's checkpoint; without one, start from --init-stn and --init weights."""
        cfg, mc = self.cfg, self.cfg.model
        if self.ckpt_path.exists():
            self.resume(load_checkpoint(self.ckpt_path))
            return
        if cfg.init_stn and self.model.stn is not None:
            self.model.stn.load_state_dict(load_stn_state(cfg.init_stn, mc))
            self.done["stn"] = cfg.stn_steps
        if cfg.init:
            self.model.load_state_dict(init_state(cfg.init, mc))

    def resume(self, st: dict) -> None:
        """Networks, optimisers, step counts, run time and random generators from a checkpoint."""
        cfg = self.cfg
        saved = TrainConfig.from_dict(json.loads(st["config"]))
        if saved.model != cfg.model or saved.gan != cfg.gan or saved.disc_width != cfg.disc_width:
            raise ConfigError(f"{self.out} holds a run with another model ({saved.model}); use a new output "
                              "directory")
        self.model.load_state_dict(st["model"])
        if self.disc is not None:
            self.disc.load_state_dict(st["disc"])
        for opt, key in ((self.opt_stn, "opt_stn"), (self.opt_g, "opt_g"), (self.opt_d, "opt_d")):
            if opt is not None and key in st:
                opt.load_state_dict(st[key])
        self.done = {"stn": int(st["stn_step"]), "recon": int(st["step"])}
        self.elapsed_before = float(st["elapsed_s"])
        if self.d.main:
            set_rng_state(st["rng"], self.np_rng, self.gen)
        else:  # the other ranks' generators were not saved: new seeds, different from every earlier chunk's
            steps = self.done["stn"] + self.done["recon"]
            self.np_rng = np.random.default_rng([cfg.seed, self.d.rank, self.done["recon"], self.done["stn"]])
            self.gen.manual_seed(cfg.seed * 1000 + self.d.rank + 7919 * steps)

    # ------------------------------------------------------------ the run

    def run(self) -> TrainResult:
        cfg = self.cfg
        self.log_f = open(self.log_path, "a") if self.d.main else None
        self.pool = ThreadPoolExecutor(max(cfg.workers, 1))
        self.last_save = self.last_val_t = time.monotonic()
        self.stop = StopSignal()
        finished = True
        try:
            if self.run_stn and self.done["stn"] < cfg.stn_steps:
                finished = self.run_stage(stn_stage(self))
            if self.run_recon and finished and self.done["recon"] < cfg.steps:
                finished = self.run_stage(recon_stage(self))
            step = self.done["recon"]
            self.checkpoint(export=self.run_recon and step > 0,
                            complete=finished and (not self.run_recon or step >= cfg.steps))
            barrier(self.d)  # the other ranks wait for rank 0's files
        finally:
            self.stop.restore()
            self.pool.shutdown(wait=False, cancel_futures=True)
            if self.log_f is not None:
                self.log_f.close()
        model_path = self.out / MODEL_FILE if (self.out / MODEL_FILE).exists() else None
        return TrainResult(self.done["stn"], self.done["recon"], finished, model_path, self.log_path, self.last,
                           self.d.rank, self.stop.requested, self.stop.signum)

    def run_stage(self, stage: Stage) -> bool:
        """Step `stage` up to its total, logging, validating and checkpointing on the way; False when stopped
        early (time limit or signal)."""
        cfg = self.cfg
        bar = progress_bar(stage.total, stage.name, unit="step", quiet=self.quiet or not self.d.main,
                           initial=self.done[stage.name])
        t_log, n_log, step_s = time.monotonic(), 0, 0.0
        finished = True
        while self.done[stage.name] < stage.total:
            if self.time_up(step_s, self.done[stage.name]) or self.stop.requested:
                finished = False
                break
            t0 = time.monotonic()
            losses = stage.step()
            self.done[stage.name] += 1
            k = self.done[stage.name]
            n_log += 1
            bar.update(1)
            step_s = 0.9 * step_s + 0.1 * (time.monotonic() - t0) if step_s else time.monotonic() - t0
            val_now = k % cfg.val_every == 0 or k == stage.total or due(stage.val_minutes, self.last_val_t)
            if k % cfg.log_every == 0 or k == stage.total or val_now:
                rec = self.step_record(stage.name, k, losses, stage.optimizer.param_groups[0]["lr"], t_log, n_log)
                if val_now:
                    bar.set_postfix(validating=f"{len(self.val_stacks)} stacks")  # a long wait on CPU
                    rec.update(stage.validate())
                    self.last_val_t = time.monotonic()
                    warn_if_dead(rec, k)
                self.log(rec)
                bar.set_postfix({stage.shown: f"{rec[stage.shown]:.4f}"})
                t_log, n_log = time.monotonic(), 0
            if k % cfg.ckpt_every == 0 or due(cfg.ckpt_minutes, self.last_save):
                self.checkpoint(export=stage.export, complete=False)
        bar.close()
        return finished

    # ------------------------------------------------------------ helpers of the loop

    def autocast(self):
        if not self.is_cuda:
            return torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.cfg.cpu_bf16)
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.cfg.amp)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def set_lr(self, opt: torch.optim.Optimizer, base: float, k: int, total: int) -> None:
        """Cosine LR at step k of total, or at the elapsed fraction of `schedule_minutes` if that is further on."""
        frac = k / max(total, 1)
        if self.cfg.schedule_minutes > 0:
            frac = max(frac, (self.elapsed_before + self.elapsed()) / (self.cfg.schedule_minutes * 60))
        lr = cosine_lr(base, int(min(frac, 1.0) * LR_RESOLUTION), LR_RESOLUTION, self.cfg.lr_floor)
        for grp in opt.param_groups:
            grp["lr"] = lr

    def time_up(self, step_s: float, k: int) -> bool:
        """Stop before the time limit? Under torchrun the ranks agree (all-reduce every STOP_CHECK steps)."""
        limit = self.cfg.time_limit_min * 60
        if limit <= 0:
            return False
        if self.d.world == 1:
            return self.elapsed() + 2 * step_s + self.save_s + SAVE_MARGIN_S > limit
        if k % STOP_CHECK:
            return False
        return any_rank(self.elapsed() + (STOP_CHECK + 2) * step_s + self.save_s + SAVE_MARGIN_S > limit, self.dev)

    def step_record(self, stage: str, k: int, losses: dict, lr: float, since: float, n: int) -> dict:
        """One JSONL log line: losses, learning rate and speed over the `n` steps since `since`."""
        dt = time.monotonic() - since
        return {"stage": stage, "step": k, **{name: round(float(v), 5) for name, v in losses.items()},
                "lr": lr, "s_per_step": round(dt / n, 4),
                "samples_per_s": round(n * self.cfg.batch_size * self.d.world / dt, 1),
                "time_s": round(self.elapsed_before + self.elapsed(), 1)}

    def log(self, rec: dict) -> None:
        self.last = rec
        self.last_val.update({k: v for k, v in rec.items() if k.startswith("val_")})
        if self.log_f is not None:
            self.log_f.write(json.dumps(rec) + "\n")
            self.log_f.flush()

    def checkpoint(self, export: bool, complete: bool) -> None:
        """Write checkpoint.pt (rank 0), and with `export` the model file; `complete`: every step done."""
        self.last_save = time.monotonic()
        if not self.d.main:
            return
        t0 = time.monotonic()
        state = {"config": json.dumps(self.cfg.to_dict()), "stn_step": self.done["stn"], "step": self.done["recon"],
                 "elapsed_s": self.elapsed_before + self.elapsed(), "model": self.model.state_dict(),
                 "opt_g": self.opt_g.state_dict(), "rng": rng_state(self.np_rng, self.gen)}
        if self.disc is not None:
            state["disc"], state["opt_d"] = self.disc.state_dict(), self.opt_d.state_dict()
        if self.opt_stn is not None:
            state["opt_stn"] = self.opt_stn.state_dict()
        save_checkpoint(self.ckpt_path, state)
        if export:
            save_model(self.out / MODEL_FILE, self.model, self.export_meta(complete), half=self.cfg.half_weights)
        self.save_s = max(self.save_s, time.monotonic() - t0)

    def export_meta(self, complete: bool) -> dict:
        """The model file's metadata: how it was trained and its last validation."""
        cfg, stills = self.cfg, self.stills
        return {
            "perceptual": self.perceptual_name,
            "train": {
                "stn_steps": self.done["stn"], "steps": self.done["recon"], "complete": complete,
                "batch_size": cfg.batch_size, "world_size": self.d.world,
                "device": torch.cuda.get_device_name(self.dev) if self.is_cuda else "cpu",
                "minutes": round((self.elapsed_before + self.elapsed()) / 60, 2), "train_frames": len(self.bank),
                "train_identities": len(self.bank.identities), "val_identities": len(self.val_bank.identities),
                "stills": len(stills) if stills is not None else 0,
                "still_identities": len(set(stills.identities)) if stills is not None else 0,
                "threads": torch.get_num_threads(), "parameters": count_parameters(self.model),
                "config": cfg.to_dict(),
            },
            "last_validation": dict(self.last_val),
        }


def due(minutes: float, since: float) -> bool:
    """`minutes` (> 0) of wall time have passed since the monotonic time `since`."""
    return minutes > 0 and time.monotonic() - since >= minutes * 60


def warn_if_dead(rec: dict, step: int) -> None:
    """Warn when a validated network returns its input unchanged after DEAD_AFTER steps (dead ReLUs)."""
    if step >= DEAD_AFTER and rec.get("val_change", 1.0) < DEAD_CHANGE:
        warnings.warn(DepixWarning(f"step {step}: the network returns its input unchanged (mean change "
                                   f"{rec['val_change']}); its ReLUs may have died early", advice="seed"), stacklevel=1)


def train(cfg: TrainConfig, out_dir: str | os.PathLike, train_tracks: Sequence, val_tracks: Sequence,
          quiet: bool = False, started: float | None = None, stills: StillBank | None = None) -> TrainResult:
    """Train (or resume) into `out_dir`. Tracks: objects with `.frames` (T, S, S, 3) uint8 RGB and `.identity`;
    `stills` (stills.load_stills of cfg.stills) makes `cfg.stills_fraction` of every batch.

    SIGINT / SIGTERM stop the run cleanly: checkpoint (+ model export) at the end of the current step; rerunning
    continues from there (optimizer, schedule, RNG and step count restored)."""
    return Trainer(cfg, out_dir, train_tracks, val_tracks, quiet, started, stills).run()
