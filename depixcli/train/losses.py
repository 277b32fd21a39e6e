"""Losses and the optimisation steps: the aligner's photometric loss (`stn_loss`), the compact aligner's loss
(`align_loss`), the SFace identity term (`identity_term`), the temporal term (`temporal_term`) and one
generator + discriminator update (`gan_step`).

Images are `(N, 3, S, S)` float in [0, 1], RGB; stacks `(B, F, 3, S, S)` with the centre frame at F // 2.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from depixcli.faces.sface_torch import identity_embedding, identity_loss
from depixcli.model.grid import to_lr, warp, warp_dense
from depixcli.model.nets import Depixelator
from depixcli.train.config import TrainConfig


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
    sel = torch.linspace(0, len(fake) - 1, min(samples, len(fake))).round().long().unique()
    with torch.no_grad():
        want = identity_embedding(hr[sel].float(), net=sface)
    return identity_loss(identity_embedding(fake[sel].float().clamp(0.0, 1.0), net=sface), want)


def temporal_term(fake_next: torch.Tensor, fake: torch.Tensor, hr_next: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    """Mean |(y[t+1] - y[t]) - (g[t+1] - g[t])| (0 when the output changes as the truth does): outputs and truths
    at t and t+1, (n, 3, S, S) float [0, 1] each."""
    return F.l1_loss(fake_next.float() - fake.float(), hr_next.float() - hr.float())


def gan_step(g, d_train, d_frozen, perc, opt_g, opt_d, mosaic, hr, cfg: TrainConfig, autocast, maps=None,
             clean=None, sface=None, nxt=None) -> dict:
    """One generator + discriminator update.

    mosaic: (B, F, 3, S, S), hr: (B, 3, S, S) float [0,1]; maps: the mosaic's grid maps (B, F, 4, S, S) or None;
    clean: the clean stack (B, F, 3, S, S) for the compact aligner's loss (`align_loss`, weight cfg.w_align);
    sface: the frozen `sface_torch.SFaceNet` of the identity loss (`identity_term`, weight cfg.w_identity) or None.
    nxt: (mosaic, maps or None, hr) of the stacks one frame later of the batch's first n stacks, pixelated with
    the same draws (`degrade.random_mosaic`'s next_stack), for the temporal loss (`temporal_term`, weight
    cfg.w_temporal), or None. They go through the generator in the same forward as the batch (one DDP forward,
    one backward).
    `g`, `d_train` may be DDP-wrapped; `d_frozen` is the bare discriminator used for the generator's
    adversarial term (no gradient sync for D there).
    """
    centre = mosaic[:, mosaic.shape[1] // 2]
    zero = torch.zeros((), device=hr.device)
    # generator: D frozen
    if d_frozen is not None:
        d_frozen.requires_grad_(False)
    B = len(mosaic)
    if nxt is not None:  # one forward over the batch and the next stacks
        mosaic_in = torch.cat([mosaic, nxt[0]])
        maps_in = torch.cat([maps, nxt[1]]) if maps is not None and nxt[1] is not None else None
    else:
        mosaic_in, maps_in = mosaic, maps
    with autocast():
        fake, flow = g(mosaic_in, maps_in, with_flow=True)
        fake, fake_next = fake[:B], fake[B:]
        flow = flow[:B] if flow is not None else None
        l1 = F.l1_loss(fake.float(), hr)
        lp = perc(fake, hr).float() if perc is not None else zero
        if d_frozen is not None:
            logits = d_frozen(centre, fake).float()
            adv = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
        else:
            adv = zero
        la = align_loss(flow, clean) if flow is not None and clean is not None and cfg.w_align > 0 else zero
    lid = identity_term(sface, fake, hr, cfg.identity_samples) if sface is not None else zero  # fp32
    lt = temporal_term(fake_next, fake[:len(fake_next)], nxt[2], hr[:len(fake_next)]) if nxt is not None else zero
    loss_g = cfg.w_l1 * l1 + cfg.w_perceptual * lp + cfg.w_adv * adv + cfg.w_align * la + cfg.w_identity * lid
    if nxt is not None:
        loss_g = loss_g + cfg.w_temporal * lt
    opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    opt_g.step()
    out = {"loss_g": loss_g.detach(), "l1": l1.detach(), "perceptual": lp.detach(), "adv": adv.detach(),
           "align": la.detach(), "identity": lid.detach()}
    if nxt is not None:
        out["temporal"] = lt.detach()
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
