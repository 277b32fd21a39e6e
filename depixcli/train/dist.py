"""Several processes under `torchrun`: the process group, the device of each rank, DDP wrapping and the few
collective calls the loop needs. Without LOCAL_RANK in the environment everything is one process (`Dist()`)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from depixcli.errors import OptionError


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
        raise OptionError("device", f"{device!r} is not a device: {exc}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise OptionError("device", f"{device}: CUDA is not available")
    return Dist(), dev


def wrap(module: torch.nn.Module, d: Dist, dev: torch.device):
    """`module` in DistributedDataParallel when there are several ranks (gradients averaged), else as it is."""
    if d.world == 1:
        return module
    return DistributedDataParallel(module, device_ids=[dev.index] if dev.type == "cuda" else None)


def any_rank(flag: bool, dev: torch.device) -> bool:
    """True on every rank when `flag` is True on any (all-reduce MAX); a collective: every rank must call it."""
    t = torch.tensor([float(flag)], device=dev)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def barrier(d: Dist) -> None:
    """Wait for every rank (no-op for one process)."""
    if d.world > 1:
        dist.barrier()
