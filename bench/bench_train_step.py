"""Time one CPU training step of the compact net per setting: precision, memory format, threads, model inputs.

    python bench/bench_train_step.py [--steps 12] [--batch 16] [--threads 1 2]

Random clean stacks (no data needed) go through the training step exactly as `depix train` runs it
(random_mosaic with grid maps, gan_step with L1 + aligner loss, Adam). Prints s/step and samples/s per setting;
the first two steps of each setting are warm-up and not timed.
"""

from __future__ import annotations

import argparse
import time

import torch

from depixcli.train.degrade import random_mosaic
from depixcli.model.config import ModelConfig
from depixcli.model.nets import Depixelator
from depixcli.train.config import TrainConfig
from depixcli.train.losses import gan_step

SETTINGS = {  # name -> (grid_input, align, bf16, channels_last)
    "compact fp32": (False, False, False, False),
    "grid fp32": (True, False, False, False),
    "grid bf16": (True, False, True, False),
    "grid bf16 channels_last": (True, False, True, True),
    "grid+align fp32": (True, True, False, False),
    "grid+align bf16": (True, True, True, False),
}


def time_setting(grid: bool, align: bool, bf16: bool, channels_last: bool, steps: int, batch: int) -> float:
    mc = ModelConfig(arch="compact", use_stn=False, window=2, stride=3, grid_input=grid, align=align)
    cfg = TrainConfig(model=mc, gan=False, perceptual="none", w_perceptual=0.0)
    model = Depixelator(mc)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    gen = torch.Generator().manual_seed(0)
    clean = torch.rand(batch, 5, 3, 128, 128, generator=gen)

    def autocast():
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)

    times = []
    for k in range(steps + 2):
        t0 = time.perf_counter()
        mosaic, maps = random_mosaic(clean, gen, cfg.mosaic, return_maps=True)
        gan_step(model, None, None, None, opt, None, mosaic, clean[:, 2], cfg, autocast, maps if grid else None, clean)
        if k >= 2:
            times.append(time.perf_counter() - t0)
    return sum(times) / len(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, nargs="+", default=[1])
    ap.add_argument("--only", nargs="*", default=None, help="setting names to run (default: all)")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, batch {args.batch}, {args.steps} timed steps")
    print("| setting | threads | s/step | samples/s |\n|---|---:|---:|---:|")
    for threads in args.threads:
        torch.set_num_threads(threads)
        for name, flags in SETTINGS.items():
            if args.only and name not in args.only:
                continue
            s = time_setting(*flags, args.steps, args.batch)
            print(f"| {name} | {threads} | {s:.3f} | {args.batch / s:.1f} |", flush=True)


if __name__ == "__main__":
    main()
