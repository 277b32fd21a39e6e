"""The two stages of training, as `Stage`s for the stage loop (`loop.Trainer.run_stage`): what one step of each
does. "stn": the aligner on frame pairs of one clip; "recon": the reconstruction network (+ compact aligner) with
L1 + perceptual + adversarial (+ align, identity) losses, the STN frozen.

Stacks are `(B, F, 3, S, S)` float in [0, 1], RGB, on the device, centre frame at F // 2.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from depixcli.faces.sface_torch import load_sface_net
from depixcli.train.augment import augment
from depixcli.train.data import prefetch, to_float
from depixcli.train.degrade import random_mosaic
from depixcli.train.dist import wrap
from depixcli.train.losses import gan_step, stn_loss
from depixcli.train.perceptual import PerceptualLoss, load_feature_net
from depixcli.train.stills import still_stacks
from depixcli.train.validate import validate_recon, validate_stn

if TYPE_CHECKING:
    from depixcli.train.loop import Trainer


@dataclass(frozen=True)
class Stage:
    """What the stage loop needs to know of one stage."""

    name: str  # "stn" or "recon": the step counter it advances, the log's "stage"
    total: int  # steps to reach
    step: Callable[[], dict]  # one optimisation step -> its losses (detached tensors)
    optimizer: torch.optim.Optimizer  # whose learning rate is logged
    validate: Callable[[], dict]  # validation values to log
    export: bool  # periodic checkpoints also export model.safetensors
    shown: str  # the loss shown on the progress bar
    val_minutes: float = 0.0  # also validate every this many minutes; 0 = by steps only


def stn_stage(tr: Trainer) -> Stage:
    """The aligner on frame pairs of one clip: L1(I_A, warp(I_B)) + stn_lambda * mean |grid - id|."""
    cfg, mc = tr.cfg, tr.cfg.model
    stn = wrap(tr.model.stn, tr.d, tr.dev)
    stn = torch.compile(stn) if cfg.compile else stn
    tr.model.stn.train()
    max_off = max(mc.window * mc.stride, 1)
    pairs = prefetch(tr.pool, lambda: tr.bank.pairs(tr.np_rng, cfg.batch_size, max_off), tr.bank.gather,
                     cfg.workers + 1)
    validate = functools.partial(validate_stn, tr.model, tr.val_bank, tr.val_pairs, tr.dev,
                                 cfg.batch_size)
    return Stage("stn", cfg.stn_steps, functools.partial(stn_step, tr, pairs, stn), tr.opt_stn, validate,
                 export=False, shown="loss")


def stn_step(tr: Trainer, pairs, stn) -> dict:
    """One aligner update on the next batch of `pairs` (uint8 (B, 2, S, S, 3)); `stn`: the wrapped aligner."""
    cfg = tr.cfg
    pair = augment(to_float(next(pairs), tr.dev), tr.gen, cfg.augment)
    mos = random_mosaic(pair, tr.gen, cfg.mosaic)
    tr.set_lr(tr.opt_stn, cfg.stn_lr, tr.done["stn"], cfg.stn_steps)
    with tr.autocast():
        losses = stn_loss(tr.model, mos[:, 0], mos[:, 1], pair[:, 0], pair[:, 1], cfg.stn_lambda, stn)
    tr.opt_stn.zero_grad(set_to_none=True)
    losses["loss"].backward()
    tr.opt_stn.step()
    return {k: v.detach() for k, v in losses.items()}


def recon_stage(tr: Trainer) -> Stage:
    """The reconstruction network (and compact aligner) with L1 + perceptual + adversarial (+ align, identity)
    losses; the STN frozen."""
    cfg, model = tr.cfg, tr.model
    if model.stn is not None:
        model.stn.requires_grad_(False)
        model.stn.eval()
    model.recon.train()
    g = wrap(model, tr.d, tr.dev)
    d_train = wrap(tr.disc, tr.d, tr.dev) if tr.disc is not None else None
    if cfg.compile:
        g = torch.compile(g)
        d_train = torch.compile(d_train) if d_train is not None else None
    perc = None
    if cfg.perceptual != "none" and cfg.w_perceptual > 0:
        perc = PerceptualLoss(load_feature_net(cfg.perceptual)).to(tr.dev)
        if tr.is_cuda:
            perc = perc.to(memory_format=torch.channels_last)
    sface = load_sface_net(str(tr.dev)) if cfg.w_identity > 0 else None
    stacks = prefetch(tr.pool, functools.partial(sample_recon, tr), functools.partial(gather_recon, tr),
                      cfg.workers + 1)
    validate = functools.partial(validate_recon, model, tr.val_bank, tr.val_stacks, tr.dev,
                                 cfg.batch_size, tr.autocast, tr.val_next)
    step = functools.partial(recon_step, tr, stacks, g, d_train, perc, sface)
    return Stage("recon", cfg.steps, step, tr.opt_g, validate, export=True, shown="l1",
                 val_minutes=cfg.val_minutes)


def sample_recon(tr: Trainer) -> tuple[np.ndarray, np.ndarray | None]:
    """Indices of one batch: clip stacks, and still photos for `n_still` of its stacks."""
    cfg, mc = tr.cfg, tr.cfg.model
    return (tr.bank.stacks(tr.np_rng, cfg.batch_size - tr.n_still, mc.window, mc.stride),
            tr.stills.sample(tr.np_rng, tr.n_still) if tr.n_still else None)


def temporal_count(tr: Trainer) -> int:
    """Clip stacks of each batch the temporal loss sees (0: off). Stills get none: their motion is drawn on the
    device (`still_stacks`), so a still has no next frame to gather."""
    return min(tr.cfg.temporal_samples, tr.cfg.batch_size - tr.n_still) if tr.cfg.w_temporal > 0 else 0


def gather_recon(tr: Trainer, idx: tuple[np.ndarray, np.ndarray | None]) -> tuple:
    """uint8 clip stacks (B, F, S, S, 3), still crops, and the stacks one frame later of the first
    `temporal_count` clip stacks (or None) of one batch's indices (`sample_recon`). No random draw: a run with
    and without the temporal loss samples the same batches."""
    n, mc = temporal_count(tr), tr.cfg.model
    nxt = tr.bank.gather(tr.bank.next_stacks(idx[0][:n], mc.window, mc.stride)) if n else None
    return tr.bank.gather(idx[0]), tr.stills.gather(idx[1]) if tr.n_still else None, nxt


def recon_step(tr: Trainer, stacks, g, d_train, perc, sface) -> dict:
    """One generator + discriminator update (`losses.gan_step`) on the next batch of `stacks`: still photos become
    moving stacks, then augmentation and a randomised mosaic (with grid maps, some zeroed: grid not located); with
    the temporal loss, the stacks one frame later of the first clip stacks, with the same draws."""
    cfg, mc = tr.cfg, tr.cfg.model
    clips, still, nxt = next(stacks)
    stack = to_float(clips, tr.dev)  # (B, F, 3, S, S) float [0, 1]
    if still is not None:
        stack = torch.cat([stack, still_stacks(still.to(tr.dev), mc.frames, tr.S, tr.gen, cfg.motion)], 0)
    if nxt is None:
        stack = augment(stack, tr.gen, cfg.augment)
    else:  # the next stacks get their stacks' draws: augmentation, mosaic, grid known or not
        stack, nxt = augment(stack, tr.gen, cfg.augment, extra=to_float(nxt, tr.dev))
    hr = stack[:, mc.window]
    maps = known = None
    if mc.grid_input:
        mosaic, maps, draw = random_mosaic(stack, tr.gen, cfg.mosaic, return_maps=True, return_draw=True)
        known = torch.rand(len(maps), generator=tr.gen, device=tr.dev) >= cfg.p_unknown_grid
        maps = maps * known[:, None, None, None, None]
    else:
        mosaic, draw = random_mosaic(stack, tr.gen, cfg.mosaic, return_draw=True)
    following = None
    if nxt is not None:  # after all of the batch's draws: the batch is the same as without the temporal loss
        mosaic_next, maps_next = draw.following(nxt, tr.gen, with_maps=mc.grid_input)
        if known is not None:
            maps_next = maps_next * known[: len(maps_next), None, None, None, None]
        following = (mosaic_next, maps_next, nxt[:, mc.window])
    k = tr.done["recon"]
    tr.set_lr(tr.opt_g, cfg.lr, k, cfg.steps)
    if tr.opt_d is not None:
        tr.set_lr(tr.opt_d, cfg.lr_d, k, cfg.steps)
    return gan_step(g, d_train, tr.disc, perc, tr.opt_g, tr.opt_d, mosaic, hr, cfg, tr.autocast, maps,
                    stack, sface, following)
