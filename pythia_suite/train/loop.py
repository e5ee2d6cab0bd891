"""Train a family of model sizes on one training order, with checkpoints on Pythia's schedule.

    pythia-suite train --data data/corpus --out suite/ --sizes micro-50k micro-1m --steps 512 --batch-size 32

Every size reads the same batches in the same order (`TrainingOrder`), one size after another, and
logs each batch's fingerprint so the equality can be checked afterwards. The recipe is Pythia's:
AdamW (betas 0.9/0.95, eps 1e-8, weight decay 0.01 on matrices only, as GPT-NeoX), linear warmup
over 1% of the steps, cosine decay to 0.1x the peak lr, gradient clipping at 1.0. The peak lr of
a size is its table value (`pythia_suite.sizes`; `--lr` overrides it for all sizes).

Layout of the suite folder::

    SUITE/checkpoints_manifest.json
    SUITE/<model>/step<N>/config.json, model.safetensors         (Hugging Face format)
    SUITE/<model>/step<N>/tokenizer.json, tokenizer_config.json, special_tokens_map.json
                                                                  (the data's tokenizer, if its sidecar names one)
    SUITE/<model>/step<N>/trainer_state.safetensors, trainer_state.json   (optimizer, RNG)
    SUITE/<model>/train_log.parquet                               (one row per step)

Checkpoint ``stepN`` is the model after N optimizer steps. The log row of step s holds the loss of
the model *before* step s on batch s, the lr and the gradient norm of that update. Resuming starts
from the newest checkpoint that has trainer state, and gives bit-identical later checkpoints.

Held-out items: the `val_items` items right after the last trained step are never trained on
(by default one batch; without ``--steps`` the run stops early enough to leave them). Every
checkpoint's loss on them goes to ``SUITE/<model>/val_log.parquet`` (schema ``validation_log``),
and the manifest records them as ``data.validation`` = {"first": item, "n_items": n}.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .. import __version__
from ..checkpoints import SCHEMA, WEIGHTS, checkpoint_steps, write_manifest
from ..data.order import TrainingOrder, batch_fingerprint
from ..data.integrity import check_dataset, measured_hashes
from ..data.sidecar import read_sidecar
from ..devices import resolve_device
from ..distributed import Engine, Ranks, backward, local_device, no_sync, ranks_from_env, update, wrap
from ..errors import UserError
from ..model import GPTNeoX
from ..sizes import config_for, get_size, non_embedding_params, total_params
from .logs import ModelSummary, write_log, write_val_log
from .settings import Run, TrainingDiverged, TrainSettings, Validation, lr_at, optimizer_for, pad_vocab
from .state import check_settings, load_trainer_state, recorded_sha, resume_point, save_gathered, verify_resume_point

MANIFEST = "checkpoints_manifest.json"


def out_of_vocabulary(token: int, vocab: int, recorded: int | None, data, where: str) -> str:
    """The message for a token id the model cannot embed; when the data's own sidecar records a
    vocabulary that the id is also outside, the data itself is suspect."""
    if recorded is not None and token >= recorded:
        return (f"token id {token} {where} of {data} is outside its sidecar's vocabulary of {recorded}: the data may "
                f"be damaged (`pythia-suite data verify {data}` checks it against its checksums)")
    return (f"vocabulary of {vocab} is smaller than the data's token id {token} {where}; pass a larger "
            "--vocab-size (the data sidecar's vocab_size)")


def _validation(order: TrainingOrder, total: int, requested: int | None) -> Validation:
    first = total * order.batch_size
    room = order.num_steps * order.batch_size - first
    if requested is None:
        return Validation(first, min(order.batch_size, room))
    if requested < 0 or requested > room:
        raise UserError(f"--val-items {requested} out of range: {room} items follow the last trained step "
                        f"{total - 1} (use fewer --steps, or --val-items 0..{room})")
    return Validation(first, requested)


def train(data: str | os.PathLike, out: str | os.PathLike, settings: TrainSettings, progress: bool = True,
          on_model_done=None) -> Path:
    """Train every size in `settings.sizes` on `data`; return the path of the suite's manifest.

    When a size finishes, its `ModelSummary` goes to `on_model_done` (default: its line on
    stderr, if `progress`)."""
    s = settings
    if not s.sizes:
        raise UserError("no sizes to train; pass --sizes (see `pythia-suite train --help`)")
    ranks = ranks_from_env(s.device)
    device = local_device(s.device, ranks)
    resolve_device(device)  # before anything is written
    # one name per size, whichever form was given (70m, pythia-70m, EleutherAI/pythia-70m)
    s = replace(s, sizes=[get_size(name).name for name in s.sizes])
    if len(set(s.sizes)) != len(s.sizes):
        raise UserError(f"--sizes names a size twice: {' '.join(s.sizes)}")
    order = TrainingOrder(data, batch_size=s.batch_size, seed=s.data_seed)
    if s.steps is None:  # every full batch, less those the held-out items need
        reserve = -(-(order.batch_size if s.val_items is None else s.val_items) // order.batch_size)
        total = order.num_steps - reserve if order.num_steps > reserve else order.num_steps
    else:
        total = s.steps
    if total < 1 or total > order.num_steps:
        raise UserError(f"--steps {s.steps} out of range: the data has {order.num_steps} steps of batch {s.batch_size}")
    validation = _validation(order, total, s.val_items)
    if s.micro_batch is not None and (s.micro_batch < 1 or s.batch_size % s.micro_batch):
        raise UserError(f"--micro-batch {s.micro_batch} must divide --batch-size {s.batch_size}")
    ranks.check_batch(s.batch_size, s.micro_batch)
    meta = read_sidecar(data) or {}
    check_dataset(data)  # against its sidecar, before anything is trained or recorded
    measured = measured_hashes(data)  # what the manifest records: the files as they are (stamped)
    vocab = s.vocab_size or meta.get("vocab_size")
    if vocab is None:
        raise UserError(f"{data} has no sidecar with a vocabulary size; pass --vocab-size")
    max_id = int(order.batch(0).max())
    if max_id >= vocab:
        raise UserError(out_of_vocabulary(max_id, vocab, meta.get("vocab_size"), data, "at step 0"))
    schedule = checkpoint_steps(total, s.checkpoint_every)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs = []
    tokenizer_file = _data_tokenizer(data, meta)
    for name in s.sizes:
        config = config_for(name, vocab_size=pad_vocab(vocab), max_position_embeddings=order.seq_len)
        runs.append(Run(name, config, s.lr if s.lr is not None else get_size(name).learning_rate,
                         tokenizer=tokenizer_file))
    data_info = {
        "prefix": os.path.relpath(Path(data).resolve(), out.resolve()),
        "bin_sha256": measured["bin_sha256"],
        "idx_sha256": measured["idx_sha256"],
        "seq_len": order.seq_len,
        "batch_size": s.batch_size,
        "data_seed": s.data_seed,
        "validation": asdict(validation),
    }
    tokenizer = meta.get("tokenizer")
    if tokenizer and not Path(tokenizer).is_absolute():
        tokenizer = os.path.relpath(Path(data).parent.resolve() / tokenizer, out.resolve())
    earlier, recorded = _earlier_models(out / MANIFEST, data_info, s.sizes)
    def write() -> Path:  # rank 0 writes; every rank learns where
        if ranks.is_main:
            write_manifest(_manifest(s, out, runs, data_info, tokenizer, earlier), out / MANIFEST)
        return out / MANIFEST

    for run in runs:
        summary = train_model(order, out, run, total, schedule, s, progress, on_checkpoint=write,
                              data_sha=measured["bin_sha256"], recorded=recorded.get(run.name, {}), ranks=ranks,
                              device=device, validation=validation)
        if not ranks.is_main:
            continue
        if on_model_done is not None:
            on_model_done(summary)
        elif progress:
            print(summary.line(), file=sys.stderr, flush=True)
    return write()


def _data_tokenizer(data: str | os.PathLike, meta: dict) -> Path | None:
    """The tokenizer.json named by the data sidecar (relative to the sidecar's folder), if it exists."""
    name = meta.get("tokenizer")
    path = Path(data).parent / name if name else None
    return path if path is not None and path.is_file() else None


def _earlier_models(manifest: Path, data_info: dict, sizes: list[str]) -> tuple[list[dict], dict[str, dict[int, str]]]:
    """What an earlier `train` into the same folder left in its manifest: the models not being
    trained now (they stay in it), and the recorded sha256 of every checkpoint by model and step.
    The suite must share one data order: same data, seq_len, batch size and data seed."""
    if not manifest.is_file():
        return [], {}
    try:
        old = json.loads(manifest.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{manifest} is not valid JSON ({e.msg} at line {e.lineno}); use another --out") from None
    old_data = old.get("data") or {}
    names = {"bin_sha256": "data (sha256 of .bin)", "seq_len": "seq_len", "batch_size": "batch size",
             "data_seed": "data seed"}
    for key, what in names.items():
        if old_data.get(key) != data_info[key]:
            raise UserError(f"{manifest.parent} holds a suite trained with {what} {old_data.get(key)!r}, not "
                            f"{data_info[key]!r}: every model of a suite shares one training order; use another --out")
    recorded = {m["name"]: {c["step"]: c.get("sha256") for c in m.get("checkpoints", [])} for m in old.get("models", [])}
    return [m for m in old.get("models", []) if m["name"] not in sizes], recorded


def _val_loss(model: GPTNeoX, order: TrainingOrder, validation: Validation, micro: int) -> float | None:
    """Mean next-token loss of the held-out items (nats/token); the model is left in training mode."""
    if not validation.n_items:
        return None
    items = order.sequences(np.arange(validation.first, validation.first + validation.n_items))
    model.eval()
    try:
        return float(model.loss(items, grad=False, micro_batch=micro))
    finally:
        model.train()


def resume_line(name: str, start: int, total: int, other: Path | None = None) -> str:
    """What a run that does not start at step 0 says: resuming its own checkpoint, continuing
    another model's (`other`, an intervention's parent), or nothing left to train."""
    if other is not None:
        return f"starting {name} from {other.parent.name}'s step {start} (of {total})"
    if start >= total:
        return f"{name} is trained to its last step {total}: nothing to resume"
    return f"resuming {name} from step {start} (of {total})"


def train_model(order: TrainingOrder, out: Path, run: Run, total: int, schedule: list[int],
                s: TrainSettings, progress: bool, on_checkpoint, data_sha: str | None = None,
                recorded: dict[int, str] | None = None, ranks: Ranks = Ranks(), device: str | None = None,
                transform=None, start_from: tuple[int, Path, str | None] | None = None,
                extra_meta: dict | None = None, validation: Validation | None = None) -> ModelSummary:
    """Train one model to `total` steps, resuming from its newest checkpoint.

    `transform(step, batch) -> batch` (optional) changes each batch before it is trained on (and
    fingerprinted); it must keep the shape. `start_from` = (step, checkpoint folder of another
    model, its recorded sha256): where a model with no checkpoint of its own starts, weights,
    optimizer and RNG state included (an intervention continuing its parent). `extra_meta` goes into the trainer state,
    and a resume refuses a folder whose trainer state records another one. `validation`: the
    held-out items whose loss is logged at every checkpoint (none by default).
    """
    from ..progress import progress_bar

    validation = validation or Validation(total * order.batch_size, 0)

    # cuBLAS refuses deterministic mode without a fixed workspace; harmless on other devices.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    model_dir = out / run.name
    model_dir.mkdir(parents=True, exist_ok=True)
    device = device or s.device
    torch.manual_seed(s.seed)
    model = GPTNeoX(run.config).to(device)
    log_path = model_dir / "train_log.parquet"
    val_path = model_dir / "val_log.parquet"
    state_meta = {"model": run.name, "settings": asdict(s) | {"sizes": [run.name]}, "total_steps": total,
                  "data_sha256": data_sha, "pythia_suite_version": __version__} | (extra_meta or {})
    check_settings(model_dir, schedule, state_meta)

    val_micro = s.micro_batch or s.batch_size  # rows per forward pass of the held-out loss
    val_row = lambda step: {"step": step, "tokens_seen": order.tokens_seen(step),  # noqa: E731
                            "val_loss": _val_loss(model, order, validation, val_micro), "val_items": validation.n_items}
    start = resume_point(model_dir, schedule)
    ranks.barrier()  # every rank has chosen where to start before rank 0 writes step0
    own = start is not None  # False: starting from another model's checkpoint (an intervention)
    if start is None and start_from is not None:
        start, folder, sha = start_from
        verify_resume_point(folder, sha)
    elif start is not None:
        folder = model_dir / f"step{start}"
        verify_resume_point(folder, (recorded or {}).get(start))
    if start is not None:
        model.load_state_dict(GPTNeoX.from_pretrained(folder).state_dict())  # whole, before any sharding
        if ranks.is_main:  # one line, whatever --quiet says: where this run picks up
            print(resume_line(run.name, start, total, None if own else folder), file=sys.stderr, flush=True)
    micro = ranks.check_batch(s.batch_size, s.micro_batch)
    rows_of_rank = ranks.rows(s.batch_size)
    local = rows_of_rank.stop - rows_of_rank.start
    engine = Engine(s.parallel, micro, local // micro, s.grad_clip, s.zero_stage, s.zero_bucket)
    # what forward/backward run through (`model` holds the same parameters), and the optimizer,
    # built after sharding (FSDP2 parameters are DTensors)
    net, opt = wrap(model, ranks, engine, lambda m: optimizer_for(m, s, run.peak_lr))
    if start is not None and not own:
        load_trainer_state(folder, net, model, opt)
        rows, val_rows, run.checkpoints = [], [], []  # the steps before `start` and their checkpoints are the other model's
    elif start is None:
        start = 0
        rows: list[dict] = []
        run.checkpoints = [_record(order, run, model_dir, 0, save_gathered(model_dir / "step0", net, model, opt, 0, state_meta, ranks,
                                                                   run.tokenizer))]
        # held-out loss after the save (an FSDP2 forward leaves parameters the gather cannot read),
        # on every rank (that forward needs them all), written by rank 0
        val_rows = [val_row(0)] if validation.n_items else []
        if val_rows and ranks.is_main:
            write_val_log(val_rows, val_path, run, s)
        on_checkpoint()
        ranks.barrier()
    else:
        load_trainer_state(folder, net, model, opt)
        per_step = ["step", "tokens_seen", "loss", "lr", "grad_norm", "fingerprint"]  # write_log adds the keys
        rows = pd.read_parquet(log_path).query("step < @start")[per_step].to_dict("records") if log_path.exists() else []
        val_cols = ["step", "tokens_seen", "val_loss", "val_items"]
        val_rows = (pd.read_parquet(val_path).query("step <= @start")[val_cols].to_dict("records")
                    if val_path.exists() else [])
        if validation.n_items and not any(r["step"] == start for r in val_rows):  # killed before its val row
            val_rows.append(val_row(start))
        run.checkpoints = [
            _record(order, run, model_dir, st, recorded_sha(model_dir / f"step{st}", (recorded or {}).get(st)))
            for st in schedule if st <= start and (model_dir / f"step{st}" / WEIGHTS).is_file()
        ]
    params = total_params(run.config)
    last_good = max((c["step"] for c in run.checkpoints), default=start)
    model.train()
    bar = progress_bar(range(start, total), desc=run.name, unit="step", enabled=progress and ranks.is_main,
                       initial=start, total=total)
    t0 = time.perf_counter()
    for step in bar:
        batch = order.batch(step) if transform is None else transform(step, order.batch(step))
        if (max_id := int(batch.max())) >= run.config.vocab_size:
            recorded = (read_sidecar(order.dataset.prefix) or {}).get("vocab_size")
            raise UserError(out_of_vocabulary(max_id, run.config.vocab_size, recorded, order.dataset.prefix,
                                              f"at step {step}"))
        tokens = torch.from_numpy(batch[rows_of_rank].astype(np.int64)).to(device)
        lr = lr_at(step, total, run.peak_lr, s.warmup_frac, s.min_lr_frac)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss_sum = 0.0
        for a in range(0, local, micro):
            x, y = tokens[a : a + micro, :-1], tokens[a : a + micro, 1:]
            last = a + micro >= local
            with no_sync(net, last):
                logits = net(x)  # (b, T, vocab)
                loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), y.reshape(-1))
                # scaled to this rank's share; the all-reduce then averages the W shares
                backward(net, loss * (x.size(0) / local), last)
            loss_sum += loss.item() * x.size(0)
        loss_value = ranks.sum(loss_sum, device) / s.batch_size

        def check(grad_norm: float) -> None:
            # A non-finite gradient would poison the weights: stop before anything is saved from
            # them, so every saved checkpoint stays finite.
            if not (math.isfinite(loss_value) and math.isfinite(grad_norm)):
                raise TrainingDiverged(
                    f"{run.name}: loss {loss_value}, gradient norm {grad_norm} at step {step}; the last good "
                    f"checkpoint is {model_dir / f'step{last_good}'} (try a lower --lr)")

        grad_norm = update(net, model, opt, s.grad_clip, check)
        rows.append({"step": step, "tokens_seen": order.tokens_seen(step), "loss": loss_value, "lr": lr,
                     "grad_norm": grad_norm, "fingerprint": batch_fingerprint(batch)})
        bar.set_postfix(loss=f"{loss_value:.3f}")
        done = step + 1
        if done in schedule:
            # The log first: a kill between the two then loses no rows (resume drops rows >= its start).
            if ranks.is_main:
                write_log(rows, log_path, run, params, s, order)
            sha = save_gathered(model_dir / f"step{done}", net, model, opt, done, state_meta, ranks, run.tokenizer)
            if validation.n_items:
                val_rows.append(val_row(done))
                if ranks.is_main:
                    write_val_log(val_rows, val_path, run, s)
            run.checkpoints.append(_record(order, run, model_dir, done, sha))
            last_good = done
            on_checkpoint()
            ranks.barrier()  # no rank runs ahead of a checkpoint that is not yet on disk
    bar.close()
    seconds = time.perf_counter() - t0
    window = min(20, len(rows)) or 1
    steps_run = total - start
    return ModelSummary(
        run.name, total, float(np.mean([r["loss"] for r in rows[-window:]])) if rows else float("nan"), window,
        val_rows[-1]["val_loss"] if val_rows else None, validation.n_items, seconds if steps_run else 0.0,
        steps_run, steps_run * s.batch_size * order.seq_len / seconds if steps_run and seconds > 0 else 0.0)


def _record(order: TrainingOrder, run: Run, model_dir: Path, step: int, sha: str) -> dict:
    return {"step": step, "tokens_seen": order.tokens_seen(step),
            "location": f"{model_dir.name}/step{step}", "sha256": sha}


def _manifest(s: TrainSettings, out: Path, runs: list[Run], data_info: dict, tokenizer, earlier: list[dict]) -> dict:
    return {
        "schema": SCHEMA,
        "suite": s.suite or out.resolve().name,
        "tokenizer": tokenizer,
        "data": data_info,
        "models": [
            {
                "name": r.name,
                "params": total_params(r.config),
                "non_embedding_params": non_embedding_params(r.config),
                "config": r.config.to_dict(),
                "seeds": {"init": s.seed, "data": s.data_seed},
                "peak_lr": r.peak_lr,
                "checkpoints": sorted(r.checkpoints, key=lambda c: c["step"]),
            }
            for r in runs
        ] + earlier,
    }
