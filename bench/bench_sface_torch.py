"""CPU cost of the SFace identity loss (depixcli.faces.sface_torch): forward + backward per sample.

    python bench/bench_sface_torch.py                      # batches 1 and 16, 1 and 2 threads, fp32 and bf16
    python bench/bench_sface_torch.py --batches 8 --threads 2 --repeats 10

Per setting: identity_embedding of a (B, 3, 128, 128) batch that requires grad (canonical head-crop
alignment), identity_loss against fixed target embeddings, backward to the pixels. Reports the median
over `--repeats` timed steps (after one warm-up) of wall ms and process CPU ms, each divided by B.
"""

import argparse
import statistics
import time

import torch

from depixcli.faces.sface_torch import build_sface_net, identity_embedding, identity_loss

CROP = 128  # px, depix head crops


def step_ms(net, batch: int, bf16: bool, repeats: int) -> tuple[float, float]:
    """Median (wall ms, CPU ms) per sample of one forward + backward."""
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(batch, 3, CROP, CROP, generator=gen)
    with torch.no_grad():
        target = identity_embedding(torch.rand(batch, 3, CROP, CROP, generator=gen), None, net)
    walls, cpus = [], []
    for k in range(repeats + 1):
        x = images.clone().requires_grad_(True)
        wall, cpu = time.perf_counter(), time.process_time()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = identity_loss(identity_embedding(x, None, net), target)
        loss.backward()
        if not torch.isfinite(x.grad).all():
            raise SystemExit("non-finite gradient")
        if k:  # the first step warms up
            walls.append(1000 * (time.perf_counter() - wall) / batch)
            cpus.append(1000 * (time.process_time() - cpu) / batch)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16], help="batch sizes")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch intra-op thread counts")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per setting")
    args = parser.parse_args()
    net = build_sface_net()
    print("| threads | batch | dtype | wall ms / sample | CPU ms / sample |")
    print("| --- | --- | --- | --- | --- |")
    for threads in args.threads:
        torch.set_num_threads(threads)
        for batch in args.batches:
            for bf16 in (False, True):
                wall, cpu = step_ms(net, batch, bf16, args.repeats)
                print(f"| {threads} | {batch} | {'bf16' if bf16 else 'fp32'} | {wall:.1f} | {cpu:.1f} |", flush=True)


if __name__ == "__main__":
    main()
