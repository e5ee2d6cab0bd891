"""The tidy logs of a run (`train_log.parquet`: one row per step; `val_log.parquet`: one row per
checkpoint) and the one-line summary `train` prints per model."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from ..data.order import TrainingOrder
from ..errors import UserError
from ..sizes import total_params
from ..tables import write_table
from .settings import Run, TrainSettings


@dataclass
class ModelSummary:
    """How one size's run ended (the line `train` prints per model)."""

    model: str
    steps: int
    final_loss: float  # mean training loss of the last `window` steps
    window: int
    val_loss: float | None  # at the last checkpoint, on the held-out items
    val_items: int
    seconds: float  # wall time of this invocation (0 when everything was already trained)
    steps_run: int  # steps this invocation trained
    tokens_per_s: float

    def line(self) -> str:
        val = (f"validation loss {self.val_loss:.3f} ({self.val_items} held-out items)"
               if self.val_loss is not None else "no validation items")
        speed = (f"{self.seconds:.0f} s for {self.steps_run} steps, {self.tokens_per_s:,.0f} tokens/s"
                 if self.steps_run else "already trained (nothing to do)")
        return (f"{self.model}: {self.steps} steps, final loss {self.final_loss:.3f} (mean of the last "
                f"{self.window} steps), {val}; {speed}")


def write_log(rows: list[dict], path: Path, run: Run, params: int, s: TrainSettings, order: TrainingOrder) -> None:
    df = pd.DataFrame(rows)
    df.insert(0, "suite", s.suite or path.parent.parent.name)
    df.insert(1, "model", run.name)
    df.insert(2, "params", params)
    write_table(df, path, "train_log", config=asdict(s), seeds={"init": s.seed, "data": s.data_seed})


def write_val_log(rows: list[dict], path: Path, run: Run, s: TrainSettings) -> None:
    df = pd.DataFrame(rows, columns=["step", "tokens_seen", "val_loss", "val_items"])
    df.insert(0, "suite", s.suite or path.parent.parent.name)
    df.insert(1, "model", run.name)
    df.insert(2, "params", total_params(run.config))
    write_table(df, path, "validation_log", config=asdict(s), seeds={"init": s.seed, "data": s.data_seed})


def read_train_log(suite_dir: str | os.PathLike) -> pd.DataFrame:
    """All models' training logs of a suite folder, concatenated."""
    logs = sorted(Path(suite_dir).glob("*/train_log.parquet"))
    if not logs:
        raise UserError(f"no training logs (*/train_log.parquet) in {suite_dir}")
    return pd.concat([pd.read_parquet(p) for p in logs], ignore_index=True)


def read_val_log(suite_dir: str | os.PathLike) -> pd.DataFrame:
    """All models' validation logs (loss on the held-out items at every checkpoint), concatenated;
    empty (with the schema's columns) when the suite was trained without held-out items."""
    from ..tables import columns

    logs = sorted(Path(suite_dir).glob("*/val_log.parquet"))
    frames = [pd.read_parquet(p) for p in logs]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(columns("validation_log")))
