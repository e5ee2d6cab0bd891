"""Data-parallel training on torch.distributed: which rank trains which rows of each batch.

    torchrun --nproc-per-node 2 -m pythia_suite train --data data/corpus --out suite ...
    pythia-suite train --nproc-per-node 2 --data data/corpus --out suite ...   # launches the same

Each rank takes a contiguous slice of ``order.batch(step)`` (GPT-NeoX's rule: rank r gets rows
``[r*B/W, (r+1)*B/W)``), DDP averages the gradients, and rank 0 logs the *global* batch's
fingerprint and writes every checkpoint, log and manifest, in the same format as a
single-process run. With one micro-batch per rank, W-rank DDP computes exactly what one process
computes with ``--micro-batch B/W``: each rank's gradient is that micro-batch's, and the
all-reduce adds them pre-divided by W, as accumulation adds them scaled by 1/W (a power of two
for W = 2, 4, ...: bit-identical). gloo on a CPU, nccl on CUDA; the rendezvous comes from
torchrun's environment (MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE, LOCAL_RANK).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from contextlib import nullcontext
from dataclasses import dataclass

import torch

from .errors import UserError


@dataclass(frozen=True)
class Ranks:
    """This process's place in the job (rank 0 of 1 without torch.distributed)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def rows(self, batch_size: int) -> slice:
        """This rank's contiguous rows of a global batch."""
        per = batch_size // self.world
        return slice(self.rank * per, (self.rank + 1) * per)

    def check_batch(self, batch_size: int, micro_batch: int | None) -> int:
        """Rows per forward pass on this rank; the batch must split evenly over ranks and micro-batches."""
        if batch_size % self.world:
            raise UserError(f"--batch-size {batch_size} does not split evenly over {self.world} ranks; "
                            f"use a multiple of {self.world}")
        local = batch_size // self.world
        micro = micro_batch or local
        if micro < 1 or local % micro:
            raise UserError(f"--batch-size {batch_size} is not divisible by {self.world} ranks x --micro-batch {micro}")
        return micro

    def sum(self, value: float, device) -> float:
        """`value` summed over ranks (float64)."""
        if not self.distributed:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=device)
        torch.distributed.all_reduce(t)
        return float(t.item())

    def barrier(self) -> None:
        if self.distributed:
            torch.distributed.barrier()


def ranks_from_env(device: str) -> Ranks:
    """Join the torchrun job described by the environment (once), or run alone."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Ranks()
    dist = torch.distributed
    if not dist.is_initialized():
        backend = "nccl" if torch.device(device).type == "cuda" else "gloo"
        dist.init_process_group(backend)
    ranks = Ranks(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    return ranks


def local_device(device: str, ranks: Ranks) -> str:
    """One GPU per local rank for `--device cuda`; any other device as given."""
    if ranks.distributed and device == "cuda":
        return f"cuda:{ranks.local_rank}"
    return device


def wrap(model: torch.nn.Module, ranks: Ranks) -> torch.nn.Module:
    """The module to run forward/backward through: DDP over `model` (same parameters) when distributed."""
    if not ranks.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [model.embed_out.weight.device] if model.embed_out.weight.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)  # the model has no buffers to sync


def no_sync(net: torch.nn.Module, last: bool):
    """Skip the all-reduce on every micro-batch but a rank's last (gradients accumulate locally first)."""
    if last or not hasattr(net, "no_sync"):
        return nullcontext()
    return net.no_sync()


def launch(nproc: int, argv: list[str]) -> int:
    """Run `pythia-suite train argv` as a torchrun job of `nproc` processes on this machine
    (rendezvous on 127.0.0.1); returns the job's exit status."""
    if nproc < 1:
        raise UserError(f"--nproc-per-node {nproc}: give at least 1 process")
    with socket.socket() as s:  # a free port for the rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}", "--nnodes=1",
           "--master-addr=127.0.0.1", f"--master-port={port}", "-m", "pythia_suite", "train", *argv]
    return subprocess.run(cmd, env=os.environ | {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}).returncode
