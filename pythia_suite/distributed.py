"""Data-parallel training on torch.distributed: which rank trains which rows of each batch.

    torchrun --nproc-per-node 2 -m pythia_suite train --data data/corpus --out suite ...
    pythia-suite train --nproc-per-node 2 --data data/corpus --out suite ...   # launches the same

Each rank takes a contiguous slice of ``order.batch(step)`` (GPT-NeoX's rule: rank r gets rows
``[r*B/W, (r+1)*B/W)``), DDP averages the gradients (or FSDP2, ``--parallel fsdp``, shards every
block's parameters, gradients and optimizer state and gathers them whole for each checkpoint,
matching DDP within float rounding; or DeepSpeed's ZeRO stage 1/2, ``--parallel deepspeed``, the
engine GPT-NeoX trained Pythia with: optimizer state, and at stage 2 gradients, partitioned over
ranks, gathered for each checkpoint), and rank 0 logs the *global* batch's
fingerprint and writes every checkpoint, log and manifest, in the same format as a
single-process run. With one micro-batch per rank, W-rank DDP computes exactly what one process
computes with ``--micro-batch B/W``: each rank's gradient is that micro-batch's, and the
all-reduce adds them pre-divided by W, as accumulation adds them scaled by 1/W (a power of two
for W = 2, 4, ...: bit-identical). gloo on a CPU, nccl on CUDA; the rendezvous comes from
torchrun's environment (MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE, LOCAL_RANK).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import socket
import subprocess
import sys
import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable

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


PARALLEL = ("ddp", "fsdp", "deepspeed")
ZERO_STAGES = (1, 2)
ZERO_BUCKET = 500_000_000  # elements per reduce / all-gather bucket: Pythia's GPT-NeoX configs


@dataclass(frozen=True)
class Engine:
    """How the ranks share the work (TrainSettings' parallel, zero_stage, zero_bucket; micro-batches per rank)."""

    parallel: str = "ddp"
    micro_batch: int = 1
    accumulation: int = 1  # micro-batches per rank and step
    grad_clip: float = 1.0
    zero_stage: int = 1
    zero_bucket: int = ZERO_BUCKET


def check_engine(parallel: str, zero_stage: int, zero_bucket: int, installed: bool = True) -> None:
    """Refuse settings no engine can run; with `installed`, also a DeepSpeed that is not there."""
    if parallel not in PARALLEL:
        raise UserError(f"--parallel {parallel!r}: choose one of {', '.join(PARALLEL)}")
    if parallel == "deepspeed" and zero_stage not in ZERO_STAGES:
        raise UserError(f"--zero-stage {zero_stage}: choose 1 or 2 (stage 3 shards parameters: use --parallel fsdp)")
    if parallel == "deepspeed" and zero_bucket < 1:
        raise UserError(f"--zero-bucket {zero_bucket}: give a positive number of elements")
    if installed and parallel == "deepspeed" and importlib.util.find_spec("deepspeed") is None:
        raise UserError("--parallel deepspeed needs DeepSpeed: pip install --no-build-isolation "
                        "'pythia-suite[deepspeed]' (after torch, which it must not replace)")


def wrap(model: torch.nn.Module, ranks: Ranks, engine: Engine,
         make_optimizer: Callable[[torch.nn.Module], torch.optim.Optimizer]) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """(net, optimizer): the module to run forward/backward through, and the optimizer whose
    param groups take the lr. Alone: `model` itself. DDP: a DDP over `model` (same parameters).
    FSDP2: `model` with every block and the root sharded in place (`fully_shard`: parameters
    become DTensors; the optimizer is built afterwards). DeepSpeed: its engine over `model` and
    the optimizer (ZeRO partitions the optimizer's state; `model` keeps whole parameters)."""
    # alone, the engine is not used (e.g. an intervention continuing a ZeRO-trained parent in one process)
    check_engine(engine.parallel, engine.zero_stage, engine.zero_bucket, installed=ranks.distributed)
    if not ranks.distributed:
        return model, make_optimizer(model)
    if engine.parallel == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for layer in model.gpt_neox.layers:
            fully_shard(layer)
        return fully_shard(model), make_optimizer(model)
    if engine.parallel == "deepspeed":
        opt = make_optimizer(model)
        return deepspeed_engine(model, opt, engine), opt
    from torch.nn.parallel import DistributedDataParallel

    ids = [model.embed_out.weight.device] if model.embed_out.weight.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids), make_optimizer(model)  # the model has no buffers to sync


def deepspeed_engine(model: torch.nn.Module, opt: torch.optim.Optimizer, engine: Engine):
    """DeepSpeed's engine running ZeRO stage 1 or 2 over the process group torchrun started, with
    our AdamW (on the flat partitions: the same elementwise update), fp32, clipping inside its step."""
    on_cpu = model.embed_out.weight.device.type == "cpu"
    os.environ.setdefault("DS_ACCELERATOR", "cpu" if on_cpu else "cuda")  # else it guesses from what is installed
    import deepspeed  # check_engine has found it

    deepspeed.utils.logger.setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*all_gather_into_tensor.* is deprecated", category=FutureWarning)
    # A bucket holds gradients: one larger than the model only costs memory, and DeepSpeed allocates
    # it anew at every micro-batch (filled with NaN under torch's deterministic mode: Pythia's
    # 5e8 elements made a micro model's step 30x slower). It must be even (its 4-byte alignment).
    bucket = min(engine.zero_bucket, sum(p.numel() for p in model.parameters()))
    bucket += bucket % 2
    config = {
        "train_micro_batch_size_per_gpu": engine.micro_batch,
        "gradient_accumulation_steps": engine.accumulation,
        "gradient_clipping": engine.grad_clip,
        "steps_per_print": 2**62,
        "zero_optimization": {"stage": engine.zero_stage, "reduce_bucket_size": bucket,
                              "allgather_bucket_size": bucket, "overlap_comm": not on_cpu,
                              "reduce_scatter": True, "contiguous_gradients": True},
    }
    net, *_ = deepspeed.initialize(model=model, optimizer=opt, config=config, dist_init_required=False)
    return net


def is_engine(net: torch.nn.Module) -> bool:
    deepspeed = sys.modules.get("deepspeed")
    return deepspeed is not None and isinstance(net, deepspeed.DeepSpeedEngine)


def backward(net: torch.nn.Module, loss: torch.Tensor, last: bool) -> None:
    """Backward of one micro-batch's (already scaled) loss; the gradients add up over a step's micro-batches."""
    if not is_engine(net):
        loss.backward()
        return
    net.backward(loss, scale_wrt_gas=False)
    if not last:
        net.step()  # DeepSpeed counts micro-batches in step(); it updates on a step's last one only


def update(net: torch.nn.Module, model: torch.nn.Module, opt: torch.optim.Optimizer, max_norm: float,
           check: Callable[[float], None]) -> float:
    """Clip the gradients to `max_norm`, take the optimizer step, return the gradient norm before
    clipping. `check(norm)` raises to stop a diverged run: before the update, or, where the engine
    clips inside its step (DeepSpeed), right after it, before anything is saved from it."""
    if is_engine(net):
        net.step()
        norm = float(net.get_global_grad_norm())
        check(norm)
        return norm
    norm = full_tensor(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)).item()
    check(norm)
    opt.step()
    return norm


def is_sharded(model: torch.nn.Module) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(model.embed_out.weight, DTensor)


def full_tensor(x: torch.Tensor) -> torch.Tensor:
    """A DTensor gathered (e.g. FSDP2's gradient norm); any other tensor as it is."""
    return x.full_tensor() if hasattr(x, "full_tensor") else x


def param_names(model: torch.nn.Module) -> list[str]:
    """Parameter names in the optimizer's index order (matrices first, then the rest: `train.optimizer_for`)."""
    named = list(model.named_parameters())
    return [n for n, p in named if p.ndim >= 2] + [n for n, p in named if p.ndim < 2]


def full_state(net: torch.nn.Module, model: torch.nn.Module, opt: torch.optim.Optimizer) -> tuple[dict | None, dict[int, dict]]:
    """(weights, optimizer state) whole, as a single process stores them: state keyed by the
    optimizer's parameter index; weights only where `model` does not hold them whole (FSDP2),
    else None. A collective where the state is partitioned (every rank calls it)."""
    if is_sharded(model):
        return _gather_fsdp(model, opt)
    if is_engine(net):
        return None, _gather_zero(net.optimizer, model)
    return None, opt.state_dict()["state"]


def load_state(net: torch.nn.Module, model: torch.nn.Module, opt: torch.optim.Optimizer, state: dict[int, dict]) -> None:
    """Load index-keyed whole optimizer state (as a single process saves it) into `opt`, or into
    this rank's part of it."""
    if is_sharded(model):
        _scatter_fsdp(model, opt, state)
    elif is_engine(net):
        _scatter_zero(net.optimizer, model, state)
    else:
        sd = opt.state_dict()
        sd["state"] = state
        opt.load_state_dict(sd)


def _gather_fsdp(model: torch.nn.Module, opt: torch.optim.Optimizer) -> tuple[dict, dict[int, dict]]:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_optimizer_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    weights = get_model_state_dict(model, options=options)
    if not opt.state:  # before the first step; asking would initialise the state with a zero-gradient step
        return weights, {}
    state = get_optimizer_state_dict(model, opt, options=options).get("state", {})
    return weights, {i: state[n] for i, n in enumerate(param_names(model)) if n in state}


def _scatter_fsdp(model: torch.nn.Module, opt: torch.optim.Optimizer, state: dict[int, dict]) -> None:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict, set_optimizer_state_dict

    if not state:  # saved before the first step: nothing to load
        return
    options = StateDictOptions(full_state_dict=True)
    template = get_optimizer_state_dict(model, opt, options=options)
    names = param_names(model)
    template["state"] = {names[i]: v for i, v in state.items()}
    set_optimizer_state_dict(model, opt, template, options=options)


# ZeRO stage 1/2 keeps, per param group, one flat buffer that every parameter of the group is a
# view into, split into equal contiguous partitions, one per rank; each rank's optimizer holds
# the state of its partition only. Positions come from the parameters' own storage offsets, and
# the gathered fp32 master weights are checked against the parameters, so a layout other than
# this one fails loudly rather than saving misplaced state.

def _zero_groups(zopt, model: torch.nn.Module):
    """Per group: (the flat buffer, this rank's partition of it (fp32 master), [(optimizer index,
    offset in the flat buffer, parameter)])."""
    index = {id(p): i for i, p in enumerate(_params_in_optimizer_order(model))}
    for g, flat in enumerate(zopt.bit16_groups_flat):
        members = [(index[id(p)], (p.data_ptr() - flat.data_ptr()) // flat.element_size(), p) for p in zopt.bit16_groups[g]]
        yield flat, zopt.single_partition_of_fp32_groups[g], members


def _layout_error() -> RuntimeError:
    return RuntimeError("DeepSpeed's ZeRO partitions are not laid out as pythia_suite reads them; refusing to "
                        "move optimizer state to the wrong parameters")


def _gather_zero(zopt, model: torch.nn.Module) -> dict[int, dict]:
    dist = torch.distributed
    out: dict[int, dict] = {}
    for _, part, members in _zero_groups(zopt, model):
        st = zopt.optimizer.state.get(part)
        if not st:  # before the first step (the same on every rank)
            continue
        whole = {}
        for key in ("master", "exp_avg", "exp_avg_sq"):
            pieces = [torch.empty_like(part) for _ in range(dist.get_world_size())]
            dist.all_gather(pieces, (part.detach() if key == "master" else st[key]).contiguous())
            whole[key] = torch.cat(pieces)
        for i, off, p in members:
            if not torch.equal(whole["master"][off : off + p.numel()].view_as(p), p.detach()):
                raise _layout_error()
            out[i] = {"step": st["step"].detach().clone()} | {
                k: whole[k][off : off + p.numel()].view_as(p).clone() for k in ("exp_avg", "exp_avg_sq")}
    return out


def _scatter_zero(zopt, model: torch.nn.Module, state: dict[int, dict]) -> None:
    if not state:
        return
    rank = torch.distributed.get_rank()
    for flat, part, members in _zero_groups(zopt, model):
        n = part.numel()
        if n * torch.distributed.get_world_size() != flat.numel() or not torch.equal(part, flat[rank * n : (rank + 1) * n]):
            raise _layout_error()
        whole = {k: torch.zeros(flat.numel(), dtype=part.dtype, device=part.device) for k in ("exp_avg", "exp_avg_sq")}
        for i, off, p in members:
            for k in whole:
                whole[k][off : off + p.numel()] = state[i][k].reshape(-1).to(part.device, part.dtype)
        zopt.optimizer.state[part] = {"step": state[members[0][0]]["step"].clone()} | {
            k: v[rank * n : (rank + 1) * n].clone() for k, v in whole.items()}


def _params_in_optimizer_order(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    named = dict(model.named_parameters())
    return [named[n] for n in param_names(model)]


def no_sync(net: torch.nn.Module, last: bool):
    """Skip the all-reduce on every micro-batch but a rank's last (gradients accumulate locally first)."""
    if last or not hasattr(net, "no_sync") or is_engine(net):  # DeepSpeed accumulates in its own step
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
