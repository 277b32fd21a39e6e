"""Validation during training, on fixed stacks of people never trained on: PSNR of the model against bicubic per
mosaic protocol (`validate_recon`), and the aligner's photometric error (`validate_stn`).

Stacks come from a `FrameBank` as uint8 and are `(B, F, 3, S, S)` float in [0, 1], RGB, on the device here.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from depixcli.evaluate.metrics import psnr
from depixcli.model.nets import Depixelator
from depixcli.train.data import FrameBank, to_float
from depixcli.train.degrade import PAPER_BLOCKS, bicubic_baseline, block_means, face_mosaic, paper_maps, paper_mosaic
from depixcli.train.losses import stn_loss

VAL_SEED = 1234  # fixed choice of validation stacks (and of the image-anchored grids' drift)
VAL_BLOCKS = (16, 8)  # blocks across the face box in the face- and image-anchored validation protocols
VAL_DRIFT_PX = 1.5  # px, std of the per-frame random walk of an image-anchored grid in validation
PSNR_CAP = 100.0  # dB, per-image PSNR ceiling (identical images would give infinity)


def image_psnr(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """Per-image RGB PSNR (dB, `metrics.psnr`, at most PSNR_CAP) of `(N, 3, H, W)` float [0, 1] batches."""
    x, y = (v.float().permute(0, 2, 3, 1).cpu().numpy() for v in (a, b))
    return np.minimum(np.atleast_1d(psnr(x, y, channel="rgb")), PSNR_CAP)


def protocol_cases(stack: torch.Tensor, gen: torch.Generator) -> dict:
    """name -> (mosaic stack, bicubic of the centre's true block values, grid maps) of every validation protocol:
    paper 16x16 and 8x8 (block means over the whole crop), face-anchored (`face16`, `face8`) and image-anchored
    (`image16`, `image8`, the grid drifting against the face) mosaics over the face box."""
    S, Fr = stack.shape[-1], stack.shape[1]
    c = Fr // 2
    hr = stack[:, c]
    drift = (torch.randn(len(stack), Fr, 2, generator=gen) * VAL_DRIFT_PX).cumsum(1)
    cases = {f"paper{n}": (paper_mosaic(stack, n), bicubic_baseline(block_means(hr, n), S),
                           paper_maps(stack.shape[:2], n, S, stack.device)) for n in PAPER_BLOCKS}
    for n in VAL_BLOCKS:
        for name, off in ((f"face{n}", None), (f"image{n}", drift - drift[:, c : c + 1])):
            mos, bic, _, maps = face_mosaic(stack, n, off, with_maps=True)
            cases[name] = ((mos * 255).round() / 255, bic[:, c], maps)
    return cases


@torch.no_grad()
def validate_recon(model: Depixelator, bank: FrameBank, idx: np.ndarray, dev, batch: int, autocast) -> dict:
    """Mean PSNR of model and bicubic (of the true block values) on fixed validation stacks, per protocol
    (`protocol_cases`); `single_<p>` for the image-anchored ones: the model fed the centre frame only (repeated),
    which shows what the other frames bring. `val_change`: mean |output - centre input| (~0: a dead network)."""
    modes = [(m, m.training) for m in model.modules()]  # restored exactly: the frozen STN stays in eval mode
    model.eval()
    res: dict[str, list] = {}
    gen = torch.Generator().manual_seed(VAL_SEED)
    for i in range(0, len(idx), batch):
        stack = to_float(bank.gather(idx[i : i + batch]), dev)
        hr = stack[:, stack.shape[1] // 2]
        c = stack.shape[1] // 2
        for name, (mos, bic, maps) in protocol_cases(stack, gen).items():
            with autocast():
                pred = model(mos, maps).float()
                single = (model(mos[:, c : c + 1].expand_as(mos), maps[:, c : c + 1].expand_as(maps)).float()
                          if name.startswith("image") else None)
            res.setdefault(f"val_psnr_{name}_model", []).append(image_psnr(pred, hr))
            res.setdefault("val_change", []).append((pred - mos[:, c]).abs().flatten(1).mean(1).cpu().numpy())
            res.setdefault(f"val_psnr_{name}_bicubic", []).append(image_psnr(bic, hr))
            if single is not None:
                res.setdefault(f"val_psnr_{name}_single", []).append(image_psnr(single, hr))
    for m, training in modes:
        m.training = training
    out = {k: round(float(np.concatenate(v).mean()), 3) for k, v in res.items()}
    gains = [out[k] - out[k.replace("_model", "_bicubic")] for k in out if k.endswith("_model")]
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
