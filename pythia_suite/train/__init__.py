"""Train a family of model sizes on one training order, with checkpoints on Pythia's schedule.

`loop` is the training loop; `settings` the recipe (settings, lr schedule, optimizer); `state` the
checkpoint folders and resuming; `logs` the tidy per-step and per-checkpoint logs.
"""

from .logs import ModelSummary, read_train_log, read_val_log
from .loop import MANIFEST, Run, train, train_model
from .settings import TrainingDiverged, TrainSettings, lr_at, optimizer_for
from .state import STATE_JSON, STATE_WEIGHTS, save_checkpoint

__all__ = ["MANIFEST", "STATE_JSON", "STATE_WEIGHTS", "ModelSummary", "Run", "TrainSettings", "TrainingDiverged",
           "lr_at", "optimizer_for", "read_train_log", "read_val_log", "save_checkpoint", "train", "train_model"]
