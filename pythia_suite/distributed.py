"""Data-parallel training on torch.distributed: which rank trains which rows of each batch.

    torchrun --nproc-per-node 2 -m pythia_suite train --data data/corpus --out suite ...
    pythia-suite train --nproc-per-node 2 --data data/corpus --out suite ...   # launches the same

Each rank takes a contiguous slice of ``order.batch(step)`` (GPT-NeoX's rule: rank r gets rows
``[r*B/W, (r+1)*B/W)``), DDP averages the gradients (or FSDP2, ``--parallel fsdp``, shards every
block's parameters, gradients and optimizer state and gathers them whole for each checkpoint,
matching DDP within float rounding), and rank 0 logs the *global* batch's
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


PARALLEL = ("ddp", "fsdp")


def wrap(model: torch.nn.Module, ranks: Ranks, parallel: str = "ddp") -> torch.nn.Module:
    """The module to run forward/backward through when distributed: DDP over `model` (same
    parameters), or `model` itself with every block and the root sharded in place by FSDP2
    (`fully_shard`: parameters become DTensors; build the optimizer afterwards)."""
    if parallel not in PARALLEL:
        raise UserError(f"--parallel {parallel!r}: choose one of {', '.join(PARALLEL)}")
    if not ranks.distributed:
        return model
    if parallel == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for layer in model.gpt_neox.layers:
            fully_shard(layer)
        return fully_shard(model)
    from torch.nn.parallel import DistributedDataParallel

    ids = [model.embed_out.weight.device] if model.embed_out.weight.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)  # the model has no buffers to sync


def is_sharded(model: torch.nn.Module) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(model.embed_out.weight, DTensor)


def full_tensor(x: torch.Tensor) -> torch.Tensor:
    """A DTensor gathered (e.g. FSDP2's gradient norm); any other tensor as it is."""
    return x.full_tensor() if hasattr(x, "full_tensor") else x


def param_names(model: torch.nn.Module) -> list[str]:
    """Parameter names in the optimizer's index order (matrices first, then the rest: `train._optimizer`)."""
    named = list(model.named_parameters())
    return [n for n, p in named if p.ndim >= 2] + [n for n, p in named if p.ndim < 2]


def gather(model: torch.nn.Module, opt: torch.optim.Optimizer) -> tuple[dict, dict[int, dict]]:
    """The full (unsharded) weights and optimizer state of an FSDP2 model, on the CPU; a collective
    (every rank calls it). Optimizer state is keyed by index, as a single process stores it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_optimizer_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    weights = get_model_state_dict(model, options=options)
    if not opt.state:  # before the first step; asking would initialise the state with a zero-gradient step
        return weights, {}
    state = get_optimizer_state_dict(model, opt, options=options).get("state", {})
    return weights, {i: state[n] for i, n in enumerate(param_names(model)) if n in state}


def scatter_optimizer_state(model: torch.nn.Module, opt: torch.optim.Optimizer, state: dict[int, dict]) -> None:
    """Load index-keyed full optimizer state (as saved by a single process) into FSDP2's shards."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict, set_optimizer_state_dict

    if not state:  # saved before the first step: nothing to load
        return
    options = StateDictOptions(full_state_dict=True)
    template = get_optimizer_state_dict(model, opt, options=options)
    names = param_names(model)
    template["state"] = {names[i]: v for i, v in state.items()}
    set_optimizer_state_dict(model, opt, template, options=options)


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
