"""Checkpoint folders: weights in Hugging Face format plus optimizer and RNG state, written
atomically, each file's sha256 recorded when it is written and checked before a resume."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..checkpoints import WEIGHTS
from ..distributed import Ranks, full_state, load_state
from ..errors import UserError, settings_mismatch
from ..fileio import honour_umask, sha256_file
from ..hf_files import write_tokenizer_files
from ..model import GPTNeoX

STATE_WEIGHTS = "trainer_state.safetensors"


STATE_JSON = "trainer_state.json"


def save_checkpoint(folder: Path, model: GPTNeoX, opt_state: dict[int, dict], step: int, meta: dict,
                    tokenizer: Path | None = None) -> str:
    """Write weights (HF format), the tokenizer files (if `tokenizer`, a tokenizer.json, is given)
    and trainer state to `folder` atomically; return the weights' sha256.

    trainer_state.json records the sha256 of both tensor files, hashed before the folder is in
    place, so a later resume can tell a damaged file from the one that was written."""
    tmp = folder.with_name(folder.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(tmp)
    if tokenizer is not None:  # so the folder loads in transformers and lm-eval by its path alone
        write_tokenizer_files(tmp, tokenizer, model.config.max_position_embeddings)
    tensors = {"rng_cpu": torch.get_rng_state()}
    for i, state in opt_state.items():
        for k, v in state.items():
            tensors[f"opt.{i}.{k}"] = v.detach().cpu().contiguous() if torch.is_tensor(v) else torch.tensor(v)
    save_file(tensors, tmp / STATE_WEIGHTS, metadata={"format": "pt"})
    honour_umask(tmp / STATE_WEIGHTS)
    sha = sha256_file(tmp / WEIGHTS)
    record = {**meta, "step": step, "weights_sha256": sha, "state_sha256": sha256_file(tmp / STATE_WEIGHTS)}
    (tmp / STATE_JSON).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return sha


def load_trainer_state(folder: Path, net: torch.nn.Module, model: GPTNeoX, opt: torch.optim.Optimizer) -> None:
    tensors = load_file(folder / STATE_WEIGHTS)
    torch.set_rng_state(tensors.pop("rng_cpu"))
    state: dict[int, dict] = {}
    for key, v in tensors.items():
        _, i, k = key.split(".", 2)
        state.setdefault(int(i), {})[k] = v
    load_state(net, model, opt, state)


def save_gathered(folder: Path, net: torch.nn.Module, model: GPTNeoX, opt: torch.optim.Optimizer, step: int, meta: dict,
          ranks: Ranks, tokenizer: Path | None = None) -> str | None:
    """Rank 0 writes the checkpoint; sharded weights or optimizer state are gathered whole first (all ranks)."""
    weights, state = full_state(net, model, opt)
    if not ranks.is_main:
        return None
    if weights is not None:
        model = GPTNeoX(model.config)
        model.load_state_dict(weights)
    return save_checkpoint(folder, model, state, step, meta, tokenizer)


def resume_point(model_dir: Path, schedule: list[int]) -> int | None:
    """Newest scheduled step whose folder has complete trainer state."""
    for step in reversed(schedule):
        folder = model_dir / f"step{step}"
        if (folder / STATE_JSON).is_file() and (folder / WEIGHTS).is_file() and (folder / STATE_WEIGHTS).is_file():
            return step
    return None


def recorded_sha(folder: Path, in_manifest: str | None) -> str:
    """A checkpoint's recorded weights sha256: the manifest's, else its own trainer_state.json's.
    Only a folder from before such records is hashed again."""
    if in_manifest:
        return in_manifest
    state = folder / STATE_JSON
    own = json.loads(state.read_text()).get("weights_sha256") if state.is_file() else None
    return own or sha256_file(folder / WEIGHTS)


def verify_resume_point(folder: Path, in_manifest: str | None) -> None:
    """Refuse to resume from weights or trainer state that differ from what was recorded when
    they were written (a damaged file would otherwise be re-recorded as if it were good)."""
    own = json.loads((folder / STATE_JSON).read_text())
    hashes: dict[str, str] = {}
    for name, want in ((WEIGHTS, in_manifest), (WEIGHTS, own.get("weights_sha256")),
                       (STATE_WEIGHTS, own.get("state_sha256"))):
        if want is None:
            continue
        actual = hashes.setdefault(name, sha256_file(folder / name))
        if actual != want:
            raise UserError(f"cannot resume from {folder}: {name} has sha256 {actual[:12]}..., recorded "
                            f"{want[:12]}... when it was written; the file is damaged. Delete {folder} to resume "
                            "from the checkpoint before it")


def check_settings(model_dir: Path, schedule: list[int], meta: dict) -> None:
    """Refuse to resume a run that was started with other settings."""
    step = resume_point(model_dir, schedule)
    if step is None:
        return
    old = json.loads((model_dir / f"step{step}" / STATE_JSON).read_text())
    keys = ("settings", "total_steps", "data_sha256") + (("intervention",) if "intervention" in meta else ())
    old_view = {k: _what(old.get(k)) for k in keys}
    new_view = {k: _what(json.loads(json.dumps(meta[k]))) for k in keys}
    if old_view != new_view:
        raise UserError(settings_mismatch(str(model_dir), old_view, new_view)
                        + "; use another --out, or delete the folder to start over")


def _what(value):
    """Settings that decide what is computed: not how (device, micro-batch, DDP, FSDP or ZeRO; ranks are not recorded),
    so a run may resume on another device or world size."""
    if isinstance(value, dict):
        return {k: v for k, v in value.items() if k not in ("device", "micro_batch", "parallel", "zero_stage", "zero_bucket")}
    return value
