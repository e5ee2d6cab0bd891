"""`pythia-suite evaluate`: lm-evaluation-harness tasks across a suite's models x steps, one tidy table.

    pythia-suite evaluate --manifest suite --include-path tasks/ --tasks micropile_pronoun \\
        --out results/eval.parquet --per-item results/eval_items.parquet

The harness is imported once, its `TaskManager` built once and every task (with its data) loaded
once; each checkpoint is then loaded as a `GPTNeoX` and scored through `SuiteLM` without writing
model folders. Results come back in long format: the keys, then ``task, metric, filter, n_shot,
value, stderr, n`` (the harness' ``"acc,none"`` split into metric and filter).

Resumable per (model, step, task): each finished cell is written to ``OUT.parts/`` at once (with
its per-item rows), a rerun skips the cells found there, and a killed run loses only the cell in
flight. The parts folder remembers the settings (shots, limit, task data) and refuses to mix.

Offline by default: ``HF_DATASETS_OFFLINE`` and ``HF_HUB_OFFLINE`` are set before the harness is
imported, so task data must be local (or already cached) and hub checkpoints already downloaded;
``--online`` allows downloads.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import io
import json
import logging
import math
import os
import random
import re
import shutil
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import pandas as pd

from ..errors import UserError
from ..fileio import atomic_outputs, store_lock

FEWSHOT_SEED = 1234  # the harness' default seeds, set again before every cell so order cannot matter
NUMPY_SEED = 1234
TORCH_SEED = 1234
RANDOM_SEED = 0


@dataclass
class EvalSettings:
    tasks: list[str]
    include_path: list[str] = field(default_factory=list)
    models: list[str] | None = None  # default: every model of the manifest
    steps: list[int] | None = None  # default: every step of each model
    num_fewshot: int | None = None  # default: each task's own
    limit: int | None = None  # items per task (the first N)
    batch_size: int = 16
    device: str = "cpu"
    online: bool = False
    bootstrap_iters: int = 100_000  # the harness' default (used only by non-mean metrics)
    skip_missing: bool = False  # score the checkpoints that are there, recording the others (default: refuse)

    def fingerprint(self, task_configs: dict[str, dict]) -> dict:
        """What a finished cell's numbers depend on, to refuse resuming with other settings."""
        return {"num_fewshot": self.num_fewshot, "limit": self.limit, "bootstrap_iters": self.bootstrap_iters,
                "task_configs": {t: hashlib.sha256(json.dumps(c, sort_keys=True, default=_stable).encode()).hexdigest()
                                 for t, c in sorted(task_configs.items())}}


def _stable(obj) -> str:
    """A task config's Python helpers by name: their repr holds a memory address that differs per run."""
    if callable(obj):
        return f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', type(obj).__name__)}"
    return re.sub(r" at 0x[0-9a-fA-F]+", "", str(obj))


# ---- the harness, lazily ----------------------------------------------------------------------


def require_lm_eval():
    """The lm_eval module, or a UserError that names the extra to install."""
    try:
        import lm_eval
        import lm_eval.evaluator  # noqa: F401
    except ImportError as e:
        raise UserError(f"evaluate needs lm-evaluation-harness ({e.name or 'lm_eval'} is not installed): "
                        "pip install 'pythia-suite[eval]'") from None
    return lm_eval


def set_offline(offline: bool = True) -> None:
    """No downloads of task data or models: the environment switches of datasets and huggingface_hub,
    also patched into the modules if they were imported before."""
    if not offline:
        return
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    os.environ["HF_HUB_OFFLINE"] = "1"
    import sys

    if "datasets" in sys.modules:  # datasets 2.19+ reads HF_HUB_OFFLINE, older ones HF_DATASETS_OFFLINE
        sys.modules["datasets"].config.HF_HUB_OFFLINE = True
        sys.modules["datasets"].config.HF_DATASETS_OFFLINE = True
    if "huggingface_hub" in sys.modules:
        sys.modules["huggingface_hub"].constants.HF_HUB_OFFLINE = True


def load_tasks(names: list[str], include_path: list[str], num_fewshot: int | None, online: bool) -> dict:
    """task name -> harness Task (groups and tags expand to their tasks), each loaded once."""
    require_lm_eval()
    from lm_eval.tasks import TaskManager

    for p in include_path:
        if not Path(p).is_dir():
            raise UserError(f"--include-path {p} is not a folder of task YAMLs")
    paths = [str(Path(p).resolve()) for p in include_path] or None
    # Indexing the harness' own thousands of task YAMLs takes tens of seconds: skip it when the
    # local folders hold every task asked for (or a near match for a misspelt one).
    manager = TaskManager(include_path=paths, include_defaults=False) if paths else None
    if manager is None or any(n not in manager.all_tasks and not _near(n, manager) for n in names):
        manager = TaskManager(include_path=paths)
    for name in names:
        if name not in manager.all_tasks:
            near = _near(name, manager)
            hint = f"; near matches: {', '.join(near)}" if near else "; none is near (see `lm_eval ls tasks`)"
            raise UserError(f"unknown task {name!r}{hint}")
    tasks = {}
    for name in names:
        try:
            loaded = manager.load([name])["tasks"]
        except Exception as e:  # datasets raises many types; all mean this task cannot be built
            raise UserError(_task_load_error(name, e, online)) from None
        tasks.update(loaded)
    for task in tasks.values():
        # as simple_evaluate does: a task that pins 0 shots keeps them
        if num_fewshot is not None and task.get_config("num_fewshot") != 0:
            task.set_config(key="num_fewshot", value=num_fewshot)
        elif task.get_config("num_fewshot") is None:
            task.set_config(key="num_fewshot", value=0)
    return tasks


def _near(name: str, manager) -> list[str]:
    return difflib.get_close_matches(name, manager.all_tasks, n=5, cutoff=0.6)


def _task_load_error(name: str, e: Exception, online: bool) -> str:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    data_error = isinstance(e, (OSError, ConnectionError)) or "offline" in msg.lower() or "not found" in msg.lower()
    if data_error:
        where = "" if online else " offline"
        return (f"task {name!r}: its data is not reachable{where} ({type(e).__name__}: {msg}); point the task's "
                "dataset_path/data_files at local copies (see the README)" + ("" if online else " or pass --online"))
    return f"cannot load task {name!r}: {type(e).__name__}: {msg}"


# ---- the grid ---------------------------------------------------------------------------------


def select_checkpoints(suite, models: list[str] | None, steps: list[int] | None,
                       skip_missing: bool = False) -> tuple[list, list[dict]]:
    """The checkpoints of `models` (default all) at `steps` (default all of each model's; every
    model must have each step), each checked present and intact before anything is scored
    (`pythia_suite.selection`); the skipped ones as {"model", "step", "problem"}."""
    from ..selection import select

    for model in models or suite.models():
        for s in sorted(set(steps or [])):
            suite.resolve(model, s)  # unknown step: error with nearest
    chosen = select(suite, models, steps, skip_missing)
    cells = [ck for m in chosen.models for ck in chosen.suite.checkpoints(m) if steps is None or ck.step in steps]
    return cells, chosen.skipped


def checkpoint_folder(ck) -> Path:
    from ..checkpoints import download_checkpoint

    if ck.is_remote:
        return download_checkpoint(ck)
    if not ck.path.is_dir():
        raise UserError(f"checkpoint folder missing: {ck.path} ({ck.model} step {ck.step})")
    return ck.path


def checkpoint_tokenizer(suite, folder: Path):
    """The folder's tokenizer.json, else the manifest's tokenizer (a path relative to the suite)."""
    from ..data.build import load_tokenizer

    if (folder / "tokenizer.json").is_file():
        return load_tokenizer(folder / "tokenizer.json")
    named = suite.manifest.get("tokenizer")
    if named and (suite.root / named).is_file():
        return load_tokenizer(suite.root / named)
    raise UserError(f"{folder} has no tokenizer.json and the manifest names no tokenizer file "
                    f"(its 'tokenizer' is {named!r}); copy the tokenizer.json into the checkpoint folders")


def _parts_dir(out: Path) -> Path:
    return out.with_name(out.name + ".parts")


def _cell_paths(parts: Path, ck, task: str) -> tuple[Path, Path]:
    folder = parts / ck.model / f"step{ck.step}"
    return folder / f"{task}.parquet", folder / f"{task}.items.parquet"


def _check_parts(parts: Path, fingerprint: dict, fresh: bool) -> None:
    """Refuse finished cells made with other settings (`--fresh` discards them)."""
    record = parts / "settings.json"
    if fresh and parts.exists():
        shutil.rmtree(parts)
    if record.is_file() and json.loads(record.read_text()) != json.loads(json.dumps(fingerprint)):
        raise UserError(f"{parts} holds results made with other settings (shots, limit or task data); "
                        "use another --out, or pass --fresh to start over")


def _record_settings(parts: Path, fingerprint: dict) -> None:
    """Written with the first finished cell, so a run that fails before leaves nothing behind."""
    record = parts / "settings.json"
    if not record.is_file():
        with atomic_outputs(record) as (tmp,):
            tmp.write_text(json.dumps(fingerprint, indent=1, sort_keys=True) + "\n")


# ---- harness results -> tidy rows -----------------------------------------------------------


def _number(x) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan  # the harness writes "N/A" for a stderr it did not compute


def result_rows(results: dict, task: str) -> list[dict]:
    """One row per (metric, filter) of `task` in an lm-eval results dict."""
    scores = results["results"][task]
    n = int(results["n-samples"][task]["effective"])
    n_shot = int(results["n-shot"].get(task, 0))
    rows = []
    for key, value in scores.items():
        metric, sep, filt = key.partition(",")
        if not sep or metric.endswith("_stderr") or isinstance(value, (str, dict, list)):
            continue
        rows.append({"task": task, "metric": metric, "filter": filt, "n_shot": n_shot, "value": float(value),
                     "stderr": _number(scores.get(f"{metric}_stderr,{filt}")), "n": n})
    return rows


def item_rows(results: dict, task: str) -> list[dict]:
    """One row per (item, filter, metric) of `task` from the harness' logged samples."""
    n_shot = int(results["n-shot"].get(task, 0))
    rows = []
    for ex in results.get("samples", {}).get(task, []):
        response, answer, ll = _response(ex)
        for metric in ex["metrics"]:
            value = ex.get(metric)
            if isinstance(value, bool) or isinstance(value, (int, float)):
                rows.append({"task": task, "n_shot": n_shot, "filter": ex["filter"], "doc_id": int(ex["doc_id"]),
                             "target": _text(ex["target"]), "response": response, "answer": answer,
                             "loglikelihood": ll, "metric": metric, "value": float(value)})
    return rows


def _text(value) -> str:
    """A target or answer as text: strings as they are, lists (several acceptable answers) as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str) if isinstance(value, (list, tuple, dict)) else str(value)


def _response(ex: dict) -> tuple[str, str, float]:
    """(response, answer, log-likelihood of the target or NaN) of one logged item.

    Generation: the response is the raw generated text (``resps``), the answer what the task's
    filters made of it and the metric compared with the target (e.g. the first integer, or the
    harness' ``[invalid]`` when there is none). Multiple choice: the chosen index and the chosen
    choice's text. Loglikelihood: whether the target is the greedy continuation, and the target."""
    filtered, target = ex["filtered_resps"], ex["target"]
    raw = ex.get("resps") or []
    args = ex.get("arguments") or []
    if filtered and all(isinstance(r, (tuple, list)) and len(r) == 2 for r in filtered):  # (ll, is_greedy) each
        lls = [float(r[0]) for r in filtered]
        conts = [str(a[1]) if isinstance(a, (tuple, list)) and len(a) == 2 else "" for a in args]
        if len(lls) == 1:  # loglikelihood task: response = greedy match
            return str(bool(filtered[0][1])), conts[0] if conts else "", lls[0]
        best = max(range(len(lls)), key=lls.__getitem__)  # multiple choice: the chosen index
        gold = target if isinstance(target, int) and 0 <= target < len(lls) else None
        return str(best), conts[best] if len(conts) == len(lls) else "", lls[gold] if gold is not None else math.nan
    if len(filtered) == 1 and isinstance(filtered[0], (int, float)) and not isinstance(filtered[0], bool):
        return "", "", float(filtered[0])  # loglikelihood_rolling
    answer = _text(filtered[0]) if len(filtered) == 1 else _text(list(filtered))
    generated = [r[0] if isinstance(r, (list, tuple)) and len(r) == 1 else r for r in raw]  # one text per request
    response = _text(generated[0]) if len(generated) == 1 else _text(generated) if generated else answer
    return response, answer, math.nan


def _with_keys(rows: list[dict], suite, ck, schema: str) -> pd.DataFrame:
    from ..tables import columns

    keys = {"suite": suite.name, "model": ck.model, "params": suite.params(ck.model), "step": ck.step,
            "tokens_seen": ck.tokens_seen}
    return pd.DataFrame([{**keys, **r} for r in rows], columns=list(columns(schema)))


# ---- the run ----------------------------------------------------------------------------------


def run_cell(lm, task_name: str, task, limit: int | None, bootstrap_iters: int, log_samples: bool) -> dict:
    """The harness' results dict for one task on the LM's current checkpoint, seeded as simple_evaluate."""
    import numpy as np
    import torch
    from lm_eval.evaluator import evaluate

    random.seed(RANDOM_SEED)
    np.random.seed(NUMPY_SEED)
    torch.manual_seed(TORCH_SEED)
    task.set_fewshot_seed(seed=FEWSHOT_SEED)
    # The harness draws a progress bar per task and prints notes; the grid has its own bar (made
    # before, so it keeps stderr), and stdout is the command's.
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        return evaluate(lm=lm, task_dict={"tasks": {task_name: task}, "groups": {}, "group_map": {}}, limit=limit,
                        bootstrap_iters=bootstrap_iters, log_samples=log_samples)


@dataclass(frozen=True)
class CheckpointCells:
    """The unfinished tasks of one checkpoint: one unit of work (the model is loaded once), for
    this process or a Dask worker, which writes its own cell files."""

    manifest: str
    out: str
    settings: EvalSettings
    model: str
    step: int
    task_names: tuple[str, ...]
    per_item: bool
    fingerprint: dict  # the settings record a resumed run is checked against (written with the first cell)


@lru_cache(maxsize=4)
def _worker_tasks(settings_json: str) -> dict:
    """The harness tasks, loaded once per process (a Dask worker runs many groups)."""
    s = EvalSettings(**json.loads(settings_json))
    set_offline(not s.online)
    require_lm_eval()
    _quiet_harness()
    return load_tasks(s.tasks, s.include_path, s.num_fewshot, s.online)


def run_cells(group: CheckpointCells, tasks: dict | None = None, lm=None, on_cell=None) -> int:
    """Run `group`'s tasks on its checkpoint and write each cell's table (items first), so a
    killed run loses only the cell in flight; returns the cells written."""
    from ..checkpoints import Suite
    from ..tables import write_table
    from .harness import SuiteLM

    s = group.settings
    tasks = tasks if tasks is not None else _worker_tasks(json.dumps(asdict(s)))
    suite = Suite.load(group.manifest)
    ck = suite.resolve(group.model, group.step)
    lm = lm or SuiteLM(batch_size=s.batch_size, device=s.device)
    lm.use(suite.load_model(ck.model, ck.step), checkpoint_tokenizer(suite, checkpoint_folder(ck)),
           label=f"{ck.model} step {ck.step}")
    parts = _parts_dir(Path(group.out))
    meta = dict(config=asdict(s) | {"manifest": group.manifest}, seeds=_seeds())
    for name in group.task_names:
        results = run_cell(lm, name, tasks[name], s.limit, s.bootstrap_iters, group.per_item)
        table, items = _cell_paths(parts, ck, name)
        _record_settings(parts, group.fingerprint)
        if group.per_item:  # items first: a cell counts as done only once its table is there
            write_table(_with_keys(item_rows(results, name), suite, ck, "evaluate_items"), items, "evaluate_items", **meta)
        write_table(_with_keys(result_rows(results, name), suite, ck, "evaluate"), table, "evaluate", **meta)
        if on_cell is not None:
            on_cell(f"{ck.model} step {ck.step} {name}")
    return len(group.task_names)


def evaluate_suite(manifest: str | os.PathLike, out: str | os.PathLike, settings: EvalSettings,
                   per_item: str | os.PathLike | None = None, fresh: bool = False, progress: bool = True,
                   client=None) -> Path:
    """Run every task on every selected checkpoint; write the `evaluate` table (and `evaluate_items`).

    With a Dask `client` (`pythia_suite.engines.dask_client`), each checkpoint's unfinished tasks
    are one task of the cluster, which writes its own cell files; the tables are the serial ones."""
    from tqdm.auto import tqdm

    from ..checkpoints import Suite
    from ..tables import write_table

    out = Path(out)
    if out.suffix != ".parquet" or (per_item is not None and Path(per_item).suffix != ".parquet"):
        raise UserError(f"--out and --per-item must name .parquet files, got {out}" + (f", {per_item}" if per_item else ""))
    if settings.limit is not None and settings.limit < 1:
        raise UserError(f"--limit must be a positive number of items, got {settings.limit}")
    if settings.num_fewshot is not None and settings.num_fewshot < 0:
        raise UserError(f"--num-fewshot must be >= 0, got {settings.num_fewshot}")
    suite = Suite.load(manifest)
    cells, skipped = select_checkpoints(suite, settings.models, settings.steps, settings.skip_missing)
    set_offline(not settings.online)
    require_lm_eval()
    _quiet_harness()
    tasks = load_tasks(settings.tasks, settings.include_path, settings.num_fewshot, settings.online)
    fingerprint = settings.fingerprint({name: t.dump_config() for name, t in tasks.items()})
    parts = _parts_dir(out)
    with store_lock(parts):  # a second run into the same OUT.parts/ is refused while this one writes
        _check_parts(parts, fingerprint, fresh)
        grid = [(ck, name) for ck in cells for name in tasks]

        def done(ck, name) -> bool:
            table, items = _cell_paths(parts, ck, name)
            return table.is_file() and (per_item is None or items.is_file())

        groups = [CheckpointCells(str(Path(manifest).resolve()), str(out.resolve()), settings, ck.model, ck.step,
                                  tuple(n for n in tasks if not done(ck, n)), per_item is not None, fingerprint)
                  for ck in cells]
        groups = [g for g in groups if g.task_names]
        todo = sum(len(g.task_names) for g in groups)
        bar = tqdm(total=len(grid), initial=len(grid) - todo, desc="evaluate", unit="cell",
                   disable=None if progress else True)
        if client is None:
            from .harness import SuiteLM

            lm = SuiteLM(batch_size=settings.batch_size, device=settings.device)
            for g in groups:
                run_cells(g, tasks, lm, on_cell=lambda label: (bar.set_postfix_str(label), bar.update(1)))
        else:
            from ..engines import run_tasks

            run_tasks(client, run_cells, groups, progress=bar.update)
        bar.close()
        table = pd.concat([pd.read_parquet(_cell_paths(parts, ck, n)[0]) for ck, n in grid], ignore_index=True)
        chances = {name: chance_level(task, settings.limit) for name, task in tasks.items()}
        meta = dict(config=asdict(settings) | {"manifest": str(manifest), "skipped_checkpoints": skipped}, seeds=_seeds(),
                    notes=degenerate_notes(table, chances))
        write_table(table, out, "evaluate", **meta)
        if per_item is not None:
            write_table(pd.concat([pd.read_parquet(_cell_paths(parts, ck, n)[1]) for ck, n in grid], ignore_index=True),
                        per_item, "evaluate_items", **meta)
    return out


ACCURACY_METRICS = ("acc", "acc_norm", "exact_match")  # means of 0/1 item scores: k = value * n correct


def chance_level(task, limit: int | None) -> float | None:
    """Chance accuracy of a multiple-choice task: the mean over its scored items of 1 / number of
    choices (the first `limit` items, as the harness takes them); None for other tasks or when the
    choices cannot be listed."""
    if getattr(task, "OUTPUT_TYPE", None) != "multiple_choice":
        return None
    try:
        docs = list(task.eval_docs)
        sizes = [len(task.doc_to_choice(doc)) for doc in (docs[:limit] if limit else docs)]
    except Exception:  # a task whose choices come from somewhere we cannot read: floor notes only
        return None
    return sum(1 / k for k in sizes) / len(sizes) if sizes and min(sizes) > 0 else None


def degenerate_notes(table: pd.DataFrame, chances: dict[str, float | None]) -> list[str]:
    """`pythia_suite.notes.accuracy_note` for every accuracy-like cell of an `evaluate` table: at
    floor (nothing correct), or, for multiple choice, not distinguishable from chance."""
    from ..notes import accuracy_note

    notes = []
    for r in table[table["metric"].isin(ACCURACY_METRICS)].itertuples():
        filt = "" if r.filter in ("none", "") else f" ({r.filter})"
        label = f"{r.model} step {r.step} {r.task} {r.n_shot}-shot {r.metric}{filt}"
        chance = chances.get(r.task) if r.metric != "exact_match" else None
        if note := accuracy_note(label, round(r.value * r.n), r.n, chance):
            notes.append(note)
    return notes


def _seeds() -> dict:
    return {"random": RANDOM_SEED, "numpy": NUMPY_SEED, "torch": TORCH_SEED, "fewshot": FEWSHOT_SEED}


def _quiet_harness() -> None:
    """The harness logs every task and request batch at INFO/WARNING; keep stderr for the grid's bar."""
    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    try:
        import datasets

        datasets.disable_progress_bars()
        datasets.logging.set_verbosity_error()
    except ImportError:
        pass


__all__ = ["EvalSettings", "evaluate_suite", "item_rows", "load_tasks", "require_lm_eval", "result_rows",
           "run_cell", "select_checkpoints"]
