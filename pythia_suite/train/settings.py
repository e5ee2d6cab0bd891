"""What a training run is: its settings, the learning-rate schedule and the optimizer (Pythia's recipe)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..distributed import ZERO_BUCKET
from ..errors import UserError


class TrainingDiverged(UserError):
    """The loss became NaN or infinite."""


@dataclass
class TrainSettings:
    sizes: list[str]
    steps: int | None = None  # optimizer steps; default: every full batch of the data
    batch_size: int = 1024
    micro_batch: int | None = None  # sequences per forward pass (gradient accumulation); default: all
    seed: int = 1234  # initialization
    data_seed: int | None = None  # reorders the data (TrainingOrder seed); None: the file's order
    checkpoint_every: int = 1000
    lr: float | None = None  # overrides the size table's peak lr
    warmup_frac: float = 0.01
    min_lr_frac: float = 0.1
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    vocab_size: int | None = None  # default: the data sidecar's vocabulary
    device: str = "cpu"
    suite: str | None = None  # suite name; default: the output folder's name
    parallel: str = "ddp"  # with several ranks: "ddp", "fsdp" (FSDP2) or "deepspeed" (ZeRO)
    zero_stage: int = 1  # --parallel deepspeed: ZeRO stage 1 (optimizer state partitioned; Pythia's) or 2 (+ gradients)
    zero_bucket: int = ZERO_BUCKET  # --parallel deepspeed: elements per reduce / all-gather bucket
    val_items: int | None = None  # held-out items after the last step; None: one batch (if the data has them)


def lr_at(step: int, total: int, peak: float, warmup_frac: float, min_frac: float) -> float:
    """Linear warmup over ceil(warmup_frac*total) steps, then cosine from peak to min_frac*peak,
    reached exactly at the last step (total - 1)."""
    warmup = max(1, math.ceil(warmup_frac * total))
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - 1 - warmup)
    return peak * (min_frac + (1 - min_frac) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def optimizer_for(model: torch.nn.Module, s: TrainSettings, peak: float) -> torch.optim.AdamW:
    # GPT-NeoX decays weight matrices only: no decay on biases or LayerNorm parameters.
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": s.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=peak, betas=s.betas, eps=1e-8, foreach=False,
    )


def pad_vocab(vocab: int, multiple: int = 128) -> int:
    """Embedding rows padded to a multiple of 128, as GPT-NeoX pads 50277 to 50304."""
    return -(-vocab // multiple) * multiple


@dataclass(frozen=True)
class Validation:
    """Held-out items [first, first + n_items) of the order, never trained on."""

    first: int
    n_items: int


@dataclass
class Run:
    """What one size's run needs to know, shared by `train_model` and the manifest."""

    name: str
    config: object
    peak_lr: float
    checkpoints: list[dict] = field(default_factory=list)
    tokenizer: Path | None = None  # the data's tokenizer.json, copied into every checkpoint folder
