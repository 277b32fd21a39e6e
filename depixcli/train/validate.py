"""Validation during training, on fixed stacks of people never trained on: PSNR of the model against bicubic per
mosaic protocol and the flicker from a stack to the next frame's (`validate_recon`), and the aligner's
photometric error (`validate_stn`).

Stacks come from a `FrameBank` as uint8 and are `(B, F, 3, S, S)` float in [0, 1], RGB, on the device here.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from depixcli.evaluate.metrics import psnr
from depixcli.evaluate.temporal import flicker
from depixcli.model.nets import Depixelator
from depixcli.train.data import FrameBank, to_float
from depixcli.train.degrade import PAPER_BLOCKS, bicubic_baseline, block_means, face_mosaic, paper_maps, paper_mosaic
from depixcli.train.losses import stn_loss

VAL_SEED = 1234  # fixed choice of validation stacks (and of the image-anchored grids' drift)
VAL_BLOCKS = (16, 8)  # blocks across the face box in the face- and image-anchored validation protocols
VAL_DRIFT_PX = 1.5  # px, std of the per-frame random walk of an image-anchored grid in validation
FLICKER_CASES = ("paper16", "image8")  # protocols of the validation flicker figure (val_flicker_*)
FLICKER_STACKS = 128  # validation stacks (the first) also reconstructed one frame later for it
FLICKER_SEED = VAL_SEED + 1  # the next stacks' one more drift step: a generator of their own
PSNR_CAP = 100.0  # dB, per-image PSNR ceiling (identical images would give infinity)


def image_psnr(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """Per-image RGB PSNR (dB, `metrics.psnr`, at most PSNR_CAP) of `(N, 3, H, W)` float [0, 1] batches."""
    x, y = (v.float().permute(0, 2, 3, 1).cpu().numpy() for v in (a, b))
    return np.minimum(np.atleast_1d(psnr(x, y, channel="rgb")), PSNR_CAP)


def image_offsets(n: int, frames: int, gen: torch.Generator) -> torch.Tensor:
    """(n, frames, 2) px: per-frame shift of the image-anchored validation grids against the crop, a random walk
    (VAL_DRIFT_PX per frame) drawn from `gen`, zero at the centre frame."""
    drift = (torch.randn(n, frames, 2, generator=gen) * VAL_DRIFT_PX).cumsum(1)
    return drift - drift[:, frames // 2 : frames // 2 + 1]


def protocol_cases(stack: torch.Tensor, gen: torch.Generator | None = None, offsets: torch.Tensor | None = None,
                   names: tuple[str, ...] | None = None) -> dict:
    """name -> (mosaic stack, bicubic of the centre's true block values, grid maps) of every validation protocol:
    paper 16x16 and 8x8 (block means over the whole crop), face-anchored (`face16`, `face8`) and image-anchored
    (`image16`, `image8`, the grid drifting against the face by `offsets`, else by `image_offsets` drawn from
    `gen`) mosaics over the face box; only those in `names` when given."""
    S, Fr = stack.shape[-1], stack.shape[1]
    c = Fr // 2
    hr = stack[:, c]
    off = image_offsets(len(stack), Fr, gen) if offsets is None else offsets
    cases = {f"paper{n}": (paper_mosaic(stack, n), bicubic_baseline(block_means(hr, n), S),
                           paper_maps(stack.shape[:2], n, S, stack.device)) for n in PAPER_BLOCKS
             if names is None or f"paper{n}" in names}
    for n in VAL_BLOCKS:
        for name, o in ((f"face{n}", None), (f"image{n}", off)):
            if names is None or name in names:
                mos, bic, _, maps = face_mosaic(stack, n, o, with_maps=True)
                cases[name] = ((mos * 255).round() / 255, bic[:, c], maps)
    return cases


def pair_flicker(a: torch.Tensor, b: torch.Tensor, ga: torch.Tensor, gb: torch.Tensor) -> list[float]:
    """`evaluate.temporal.flicker` (grey levels, face box) of each pair of consecutive outputs a -> b against their
    truths ga -> gb, all (N, 3, S, S) float [0, 1], outputs rounded to uint8 as `depix eval` scores them."""
    def u8(x: torch.Tensor) -> np.ndarray:
        return (x.float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()

    pa, pb, qa, qb = (u8(x) for x in (a, b, ga, gb))
    return [flicker(np.stack([pa[k], pb[k]]), np.stack([qa[k], qb[k]])) for k in range(len(pa))]


@torch.no_grad()
def validate_recon(model: Depixelator, bank: FrameBank, idx: np.ndarray, dev, batch: int, autocast,
                   next_idx: np.ndarray | None = None) -> dict:
    """Mean PSNR of model and bicubic (of the true block values) on fixed validation stacks, per protocol
    (`protocol_cases`); `single_<p>` for the image-anchored ones: the model fed the centre frame only (repeated),
    which shows what the other frames bring. `val_change`: mean |output - centre input| (~0: a dead network).
    `val_gain_mean`: the model's mean PSNR gain over bicubic over the protocols.

    next_idx: the stacks one frame later (`FrameBank.next_stacks`) of the first len(next_idx) stacks of idx:
    `val_flicker_<p>_{model,bicubic,single}` for the protocols of FLICKER_CASES, the flicker of `depix eval`
    (`pair_flicker`) from each stack to its next one, mosaiced with the same grid (one more step of its drift,
    drawn from its own generator so the PSNR figures do not change)."""
    modes = [(m, m.training) for m in model.modules()]  # restored exactly: the frozen STN stays in eval mode
    model.eval()
    res: dict[str, list] = {}
    gen = torch.Generator().manual_seed(VAL_SEED)
    step_gen = torch.Generator().manual_seed(FLICKER_SEED)
    n_next = len(next_idx) if next_idx is not None else 0
    for i in range(0, len(idx), batch):
        stack = to_float(bank.gather(idx[i : i + batch]), dev)
        hr = stack[:, stack.shape[1] // 2]
        c = stack.shape[1] // 2
        offsets = image_offsets(len(stack), stack.shape[1], gen)
        m = max(0, min(n_next - i, len(stack)))  # stacks of this batch with a next stack
        following, hr_next = {}, None
        if m:
            nstack = to_float(bank.gather(next_idx[i : i + m]), dev)
            hr_next = nstack[:, c]
            step = torch.randn(m, 1, 2, generator=step_gen) * VAL_DRIFT_PX
            following = protocol_cases(nstack, offsets=offsets[:m] + step, names=FLICKER_CASES)
        for name, (mos, bic, maps) in protocol_cases(stack, offsets=offsets).items():
            with autocast():
                pred = model(mos, maps).float()
                single = (model(mos[:, c : c + 1].expand_as(mos), maps[:, c : c + 1].expand_as(maps)).float()
                          if name.startswith("image") else None)
            res.setdefault(f"val_psnr_{name}_model", []).append(image_psnr(pred, hr))
            res.setdefault("val_change", []).append((pred - mos[:, c]).abs().flatten(1).mean(1).cpu().numpy())
            res.setdefault(f"val_psnr_{name}_bicubic", []).append(image_psnr(bic, hr))
            if single is not None:
                res.setdefault(f"val_psnr_{name}_single", []).append(image_psnr(single, hr))
            if name in following:
                nmos, nbic, nmaps = following[name]
                with autocast():
                    npred = model(nmos, nmaps).float()
                    nsingle = (model(nmos[:, c : c + 1].expand_as(nmos), nmaps[:, c : c + 1].expand_as(nmaps))
                               .float() if single is not None else None)
                res.setdefault(f"val_flicker_{name}_model", []).append(pair_flicker(pred[:m], npred, hr[:m], hr_next))
                res.setdefault(f"val_flicker_{name}_bicubic", []).append(pair_flicker(bic[:m], nbic, hr[:m], hr_next))
                if nsingle is not None:
                    res.setdefault(f"val_flicker_{name}_single", []).append(
                        pair_flicker(single[:m], nsingle, hr[:m], hr_next))
    for m, training in modes:
        m.training = training
    out = {k: round(float(np.concatenate(v).mean()), 3) for k, v in res.items()}
    gains = [out[k] - out[k.replace("_model", "_bicubic")] for k in out
             if k.startswith("val_psnr_") and k.endswith("_model")]
    out["val_gain_mean"] = round(float(np.mean(gains)), 3)  # dB over bicubic, mean over the protocols
    out["val_change"] = round(out["val_change"], 5)
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
