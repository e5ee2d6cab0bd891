"""Memorization across checkpoints and scale (Biderman et al. 2023, section 4).

    pythia-suite memorization --manifest suite/checkpoints_manifest.json --data data/corpus \\
        --sample 4096 --seed 0 --out results/memorization.parquet --per-sequence results/per_sequence.parquet

For training sequences (a range, a seeded sample, or all) and every model x checkpoint of a suite:
prompt = the first 32 tokens, greedy continuation of 32, `matched` = positions equal to the truth
(`pythia_suite.eval.continuation`). As in Pythia's script (``generate(..., min_length=64)``), the
end-of-text token is never generated; ``--allow-eos`` scores plain argmax instead. The choice is
recorded in the tables' metadata and the zarr attributes, and a store refuses the other one. Per-sequence results go to a zarr group beside the summary
(``SUMMARY.zarr``: arrays ``matched`` and ``prefix``, uint8, shape (model, step, sequence),
chunked along sequences; ``done`` flags per chunk). A rerun computes only the chunks not done, so
a killed run loses only the chunks in flight, and disjoint chunks can be filled by several workers.

A sequence counts as training data for checkpoint ``stepN`` only if ``stepN`` has seen it
(sequence < N * batch_size); the others are reported apart (``seen = False``) as a control.

The two findings: `poisson_test` (is the count of memorized sequences per bin of 512 in training
order Poisson, i.e. does position in the order not matter?) and `predictability` (does an earlier
checkpoint or a smaller model predict memorization at the final checkpoint?).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pythia_suite.checkpoints import Suite
from pythia_suite.eval.continuation import CONTINUATION_LEN, PROMPT_LEN, score_sequences
from pythia_suite.data import TrainingOrder
from pythia_suite.errors import UserError
from pythia_suite.fileio import lock_holder, store_lock
from pythia_suite.selection import select

CHUNK = 1024  # sequences per zarr chunk (and per unit of resumable work)
BIN_SIZE = 512  # Pythia's bins of training order
NOT_DONE = 255  # fill value of `matched`: a uint8 no score can take


# ---- which sequences ---------------------------------------------------------------------------


def choose_sequences(n_items: int, sequences: str | None = None, sample: int | None = None,
                     seed: int = 0, n_trained: int | None = None) -> np.ndarray:
    """Global training-order indices among the order's `n_items`: a "START:END" range, or all; or a
    seeded sample (sorted) of the `n_trained` sequences the checkpoints saw (default: all items)."""
    if sequences is not None and sample is not None:
        raise UserError("give --sequences START:END or --sample N, not both")
    if sample is not None:
        pool = n_items if n_trained is None else n_trained
        if not 0 < sample <= pool:
            raise UserError(f"--sample {sample} out of range: the checkpoints trained on {pool} sequences")
        return np.sort(np.random.Generator(np.random.PCG64(seed)).choice(pool, sample, replace=False))
    if sequences is not None:
        try:
            start, end = (int(x) if x else None for x in sequences.split(":"))
        except ValueError:
            raise UserError(f"--sequences must be START:END (e.g. 0:4096), got {sequences!r}") from None
        start, end = start or 0, n_items if end is None else end
        if not 0 <= start < end <= n_items:
            raise UserError(f"--sequences {sequences} out of range: the order's sequences are 0..{n_items - 1}")
        return np.arange(start, end, dtype=np.int64)
    return np.arange(n_items, dtype=np.int64)


# ---- the per-sequence store --------------------------------------------------------------------


@dataclass
class Store:
    """The zarr group of per-sequence results: (model, step, sequence) arrays plus done flags."""

    group: object
    models: list[str]
    steps: list[int]
    sequences: np.ndarray
    path: Path | None = None

    @classmethod
    def attach(cls, path: str | os.PathLike) -> "Store":
        """An existing store, as `open` made it (for worker processes)."""
        import zarr

        group = zarr.open_group(path, mode="r+")
        return cls(group, group.attrs["models"], group.attrs["steps"], group["sequence"][:], Path(path))

    @classmethod
    def open(cls, path: str | os.PathLike, models: list[str], steps: list[int], sequences: np.ndarray,
             identity: dict, allow_eos: bool = False) -> "Store":
        import zarr

        path = Path(path)
        shape = (len(models), len(steps), len(sequences))
        attrs = {"models": models, "steps": steps, "identity": identity, "allow_eos": allow_eos,
                 "prompt_len": PROMPT_LEN, "continuation_len": CONTINUATION_LEN}
        if path.exists():
            try:
                group = zarr.open_group(path, mode="r+")
                same = (group.attrs.get("models") == models and group.attrs.get("steps") == steps
                        and group.attrs.get("identity") == identity
                        and np.array_equal(group["sequence"][:], sequences))
                stored_eos = group.attrs.get("allow_eos", False)  # stores written before the option: suppressed
            except Exception:  # not a zarr group, or a damaged one
                same, stored_eos = False, allow_eos
            if same and stored_eos != allow_eos:
                made = "with --allow-eos (plain argmax)" if stored_eos else "without --allow-eos (end-of-text suppressed)"
                raise UserError(f"{path} was scored {made}; rerun with the same choice, or use another --out")
            if not same:
                raise UserError(f"{path} holds results of another run (other models, steps, sequences or data); "
                                "use another --out or delete it")
            return cls(group, models, steps, sequences, path)
        group = zarr.open_group(path, mode="w")
        group.attrs.update(attrs)
        chunk = min(CHUNK, max(1, len(sequences)))
        for name in ("matched", "prefix"):
            group.create_array(name, shape=shape, chunks=(1, 1, chunk), dtype="uint8", fill_value=NOT_DONE,
                               dimension_names=["model", "step", "sequence"])
        n_chunks = -(-len(sequences) // chunk)
        # One zarr chunk per flag: workers finishing different chunks never rewrite each other's flags.
        group.create_array("done", shape=(len(models), len(steps), n_chunks), chunks=(1, 1, 1),
                           dtype="bool", fill_value=False)
        group.create_array("sequence", shape=(len(sequences),), chunks=(max(1, len(sequences)),), dtype="int64")
        group["sequence"][:] = sequences
        return cls(group, models, steps, sequences, path)

    @property
    def chunk(self) -> int:
        return self.group["matched"].chunks[2]

    def chunk_slices(self) -> list[slice]:
        c = self.chunk
        return [slice(a, min(a + c, len(self.sequences))) for a in range(0, len(self.sequences), c)]

    def write(self, mi: int, si: int, ci: int, matched: np.ndarray, prefix: np.ndarray) -> None:
        sl = self.chunk_slices()[ci]
        self.group["matched"][mi, si, sl] = matched
        self.group["prefix"][mi, si, sl] = prefix
        self.group["done"][mi, si, ci] = True  # last: a chunk counts only once its data is written


# ---- running over a suite ----------------------------------------------------------------------


def run(suite: Suite, order: TrainingOrder, sequences: np.ndarray, store_path: str | os.PathLike,
        models: list[str] | None = None, steps: list[int] | None = None, device: str = "cpu",
        batch_size: int | None = None, progress: bool = True, allow_eos: bool = False, client=None) -> Store:
    """Fill the store for models x steps x sequences, computing only chunks not yet done; with a
    Dask `client` (`pythia_suite.engines.dask_client`), on its workers."""
    from pythia_suite.devices import resolve_device

    device = str(resolve_device(device))
    models = models or suite.models()
    for m in models:
        suite.model_info(m)
    all_steps = sorted({s for m in models for s in suite.steps(m)})
    steps = sorted(set(steps)) if steps else all_steps
    for s in steps:
        if not any(s in suite.steps(m) for m in models):
            suite.resolve(models[0], s)  # raises with the nearest steps
    if order.seq_len + 1 < PROMPT_LEN + CONTINUATION_LEN:
        raise UserError(f"sequences of {order.seq_len + 1} tokens are shorter than prompt {PROMPT_LEN} + "
                        f"continuation {CONTINUATION_LEN}")
    identity = {"suite": suite.name, "data": str(order.dataset.prefix.name), "batch_size": order.batch_size,
                "data_seed": order.seed}
    with store_lock(store_path) as lock:  # a second run on the same store is refused, not mixed in
        created = not Path(store_path).exists()
        store = Store.open(store_path, models, steps, sequences, identity, allow_eos)
        try:
            _fill(store, suite, order, models, steps, device, batch_size, progress, allow_eos, client, lock)
        except BaseException:
            if created and not store.group["done"][:].any():
                import shutil

                shutil.rmtree(store_path, ignore_errors=True)  # interrupted before any result: leave nothing behind
            raise
    return store


def _fill(store: Store, suite: Suite, order: TrainingOrder, models: list[str], steps: list[int], device: str,
          batch_size: int | None, progress: bool, allow_eos: bool, client=None, lock: Path | None = None) -> None:
    """Compute every (model, step, chunk) not yet done: serially, one model load per (model, step),
    or as Dask tasks of (model, step, chunks) groups, each loading its model once."""
    from pythia_suite.progress import progress_bar

    done = store.group["done"][:]
    todo = {(mi, si): [ci for ci in range(done.shape[2]) if not done[mi, si, ci]]
            for mi, m in enumerate(models) for si, s in enumerate(steps) if s in suite.steps(m)}
    todo = {key: chunks for key, chunks in todo.items() if chunks}
    bar = progress_bar(total=sum(map(len, todo.values())), desc="memorization", unit="chunk", enabled=progress)
    if client is None:
        for (mi, si), chunks in todo.items():
            net = _load(suite, models[mi], steps[si], device)
            for ci in chunks:
                _score_chunk(store, net, order, mi, si, ci, batch_size, allow_eos)
                bar.update(1)
    else:
        from pythia_suite.engines import run_tasks

        n_workers = max(1, len(client.scheduler_info().get("workers", {})))
        tasks = [Group(suite.manifest, str(suite.root), suite.source, str(order.dataset.prefix), order.batch_size,
                       order.seed, str(store.path), models[mi], steps[si], mi, si, tuple(part), device, batch_size,
                       allow_eos, str(lock) if lock else None, lock_holder(lock) if lock else None)
                 for (mi, si), chunks in todo.items() for part in _split(chunks, len(todo), n_workers)]
        run_tasks(client, score_group, tasks, progress=bar.update)
    bar.close()


def _load(suite: Suite, model: str, step: int, device: str):
    import torch

    dtype = torch.bfloat16 if device.startswith("cuda") else None
    return suite.load_model(model, step, dtype=dtype).to(device)


def _score_chunk(store: Store, net, order: TrainingOrder, mi: int, si: int, ci: int, batch_size: int | None,
                 allow_eos: bool) -> None:
    sl = store.chunk_slices()[ci]
    scores = score_sequences(net, order.sequences(store.sequences[sl]), batch_size=batch_size, allow_eos=allow_eos)
    store.write(mi, si, ci, scores.matched, scores.prefix)


def _split(chunks: list[int], n_groups_total: int, n_workers: int) -> list[list[int]]:
    """A (model, step)'s chunks as one task, or as several when there are too few (model, step)
    pairs to keep every worker busy (each task loads its model once)."""
    parts = min(len(chunks), max(1, -(-2 * n_workers // n_groups_total)))
    size = -(-len(chunks) // parts)
    return [chunks[a : a + size] for a in range(0, len(chunks), size)]


@dataclass(frozen=True)
class Group:
    """One Dask task: chunks of one (model, step), with everything a worker process needs to open
    the suite, the training order and the store itself."""

    manifest: dict
    root: str
    source: str
    data: str
    batch_size: int
    data_seed: int | None
    store: str
    model: str
    step: int
    mi: int
    si: int
    chunks: tuple[int, ...]
    device: str
    eval_batch: int | None
    allow_eos: bool
    lock: str | None = None  # the driver's STORE.lock and its text: the task stops once another run holds it
    holder: str | None = None


def score_group(g: Group) -> int:
    """Run on a worker: score the group's chunks not yet done and write them (idempotent: a retry
    after a killed worker recomputes the same values). Before each chunk it checks that its driver
    still holds the store's lock: a task a killed driver left on a shared cluster stops there,
    leaving the chunk to the run that holds the lock now. Returns the chunks written."""
    suite = Suite(g.manifest, Path(g.root), g.source)
    order = TrainingOrder(g.data, batch_size=g.batch_size, seed=g.data_seed)
    store = Store.attach(g.store)
    done = store.group["done"][g.mi, g.si]
    chunks = [ci for ci in g.chunks if not done[ci]]
    if chunks:
        net = _load(suite, g.model, g.step, g.device)
        for n, ci in enumerate(chunks):
            if g.lock is not None and lock_holder(g.lock) != g.holder:
                return len(g.chunks) - len(chunks) + n  # its driver is gone: the chunks left are another run's
            _score_chunk(store, net, order, g.mi, g.si, ci, g.eval_batch, g.allow_eos)
    return len(g.chunks)


def per_sequence(store: Store, suite: Suite, order: TrainingOrder) -> pd.DataFrame:
    """Tidy per-sequence table of every finished chunk: keys, sequence, seen, matched, score, prefix_match."""
    matched = store.group["matched"][:]
    prefix = store.group["prefix"][:]
    frames = []
    for mi, model in enumerate(store.models):
        for si, step in enumerate(store.steps):
            ok = matched[mi, si] != NOT_DONE
            if not ok.any():
                continue
            seq = store.sequences[ok]
            frames.append(pd.DataFrame({
                "suite": suite.name, "model": model, "params": suite.params(model), "step": step,
                "tokens_seen": suite.tokens_seen(model, step), "sequence": seq,
                "seen": seq < order.sequences_seen(step) if step <= order.num_steps else True,
                "matched": matched[mi, si, ok].astype(np.int64),
                "score": matched[mi, si, ok] / CONTINUATION_LEN,
                "prefix_match": prefix[mi, si, ok].astype(np.int64),
            }))
    if not frames:
        raise UserError("no finished results to summarise")
    return pd.concat(frames, ignore_index=True)


def summarize(per_seq: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summary per model x step x seen, score histogram per model x step x seen)."""
    keys = ["suite", "model", "params", "step", "tokens_seen", "seen"]
    summary = per_seq.groupby(keys, as_index=False).agg(
        n_sequences=("matched", "size"), n_memorized=("matched", lambda x: int((x == CONTINUATION_LEN).sum())),
        mean_score=("score", "mean"))
    summary["memorized_frac"] = summary["n_memorized"] / summary["n_sequences"]
    hist = per_seq.groupby(keys + ["matched"], as_index=False).size().rename(columns={"size": "n_sequences"})
    return summary, hist


# ---- the two findings --------------------------------------------------------------------------


def poisson_test(counts: np.ndarray) -> dict:
    """KS test of per-bin counts against a Poisson of the same mean, with Q-Q data.

    The statistic is sup_x |ECDF(x) - F(x)| over the integers, where both step functions jump
    (`scipy.stats.kstest` assumes a continuous F and, with tied counts, compares F(x) with the
    ECDF just below x: it rejects Poisson data outright). Its p-value from the continuous
    Kolmogorov distribution is conservative for a step-function F (it rejects less often than
    its level) — a rejection is strong evidence that position in the order matters.
    """
    from scipy import stats

    counts = np.asarray(counts)
    mean = float(counts.mean()) if len(counts) else 0.0
    if len(counts) < 2 or mean == 0:
        return {"n_bins": len(counts), "mean": mean, "ks_statistic": np.nan, "ks_pvalue": np.nan, "qq": pd.DataFrame(
            {"quantile": [], "observed": [], "poisson": []})}
    x = np.arange(int(counts.max()) + 1)
    ecdf = np.searchsorted(np.sort(counts), x, side="right") / len(counts)
    statistic = float(np.abs(ecdf - stats.poisson(mean).cdf(x)).max())
    pvalue = float(stats.kstwo.sf(statistic, len(counts)))
    q = (np.arange(1, len(counts) + 1) - 0.5) / len(counts)
    qq = pd.DataFrame({"quantile": q, "observed": np.sort(counts), "poisson": stats.poisson(mean).ppf(q)})
    return {"n_bins": len(counts), "mean": mean, "ks_statistic": statistic, "ks_pvalue": pvalue, "qq": qq}


def training_order_test(per_seq: pd.DataFrame, bin_size: int = BIN_SIZE) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per model, at its last evaluated step: memorized counts per bin of `bin_size` sequences in
    training order (seen sequences only) against a Poisson. Returns (tests, Q-Q points)."""
    rows, qqs = [], []
    for model, g in per_seq[per_seq["seen"]].groupby("model"):
        last = g[g["step"] == g["step"].max()]
        bins = (last["sequence"] // bin_size).to_numpy()
        counts = np.bincount(bins, weights=(last["matched"] == CONTINUATION_LEN).to_numpy(),
                             minlength=bins.max() + 1)[np.unique(bins)]
        res = poisson_test(counts)
        key = {c: last[c].iloc[0] for c in ("suite", "model", "params", "step", "tokens_seen")}
        rows.append({**key, "bin_size": bin_size, "n_bins": res["n_bins"], "mean_per_bin": res["mean"],
                     "ks_statistic": res["ks_statistic"], "ks_pvalue": res["ks_pvalue"]})
        qqs.append(res["qq"].assign(**key))
    return pd.DataFrame(rows), pd.concat(qqs, ignore_index=True) if qqs else pd.DataFrame()


def predictability(per_seq: pd.DataFrame, target: tuple[str, int], predictors: list[tuple[str, int]]) -> pd.DataFrame:
    """Memorized at each predictor checkpoint as a prediction of memorized at `target`, over the
    sequences both checkpoints have seen (an early checkpoint: the early part of the order):
    precision, recall and the confusion counts."""
    mem = per_seq.assign(memorized=per_seq["matched"] == CONTINUATION_LEN)

    def seen(model, step) -> pd.Series:  # memorized flag by sequence, over the sequences seen
        g = mem[(mem["model"] == model) & (mem["step"] == step) & mem["seen"]]
        return g.set_index("sequence")["memorized"]

    actual_all = seen(*target)
    t_row = mem[(mem["model"] == target[0]) & (mem["step"] == target[1])].iloc[0]
    rows = []
    for model, step in predictors:
        pred = seen(model, step)
        common = actual_all.index.intersection(pred.index)
        actual, pred = actual_all.loc[common].to_numpy(), pred.loc[common].to_numpy()
        tp, fp = int((pred & actual).sum()), int((pred & ~actual).sum())
        fn, tn = int((~pred & actual).sum()), int((~pred & ~actual).sum())
        rows.append({"suite": t_row["suite"], "model": target[0], "params": t_row["params"], "step": target[1],
                     "tokens_seen": t_row["tokens_seen"], "predictor_model": model, "predictor_step": step,
                     "n_sequences": len(common), "tp": tp, "fp": fp, "fn": fn, "tn": tn,
                     "precision": tp / (tp + fp) if tp + fp else np.nan,
                     "recall": tp / (tp + fn) if tp + fn else np.nan})
    return pd.DataFrame(rows)


def predictability_table(per_seq: pd.DataFrame) -> pd.DataFrame:
    """Pythia's two predictors for each model's last evaluated step: every earlier checkpoint of
    the same model, and the same step of every smaller model."""
    frames = []
    params = per_seq.drop_duplicates("model").set_index("model")["params"]
    steps = per_seq.groupby("model")["step"].unique()
    for model in params.sort_values().index:
        final = int(max(steps[model]))
        predictors = [(model, int(s)) for s in sorted(steps[model]) if s < final]
        predictors += [(m, final) for m in params.index if params[m] < params[model] and final in steps[m]]
        if predictors:
            frames.append(predictability(per_seq, (model, final), predictors))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def degenerate_notes(summary: pd.DataFrame, order_test: pd.DataFrame, predict: pd.DataFrame) -> list[str]:
    """Notes (`pythia_suite.notes`) where the tables hold no finding: no trained sequence
    memorized at a checkpoint, an order test without memorized sequences, no predictability."""
    seen = summary[summary["seen"]]
    if len(seen) and not seen["n_memorized"].any():
        return [f"nothing memorized: 0 of {seen['n_sequences'].max()} trained sequences at every one of "
                f"{len(seen)} checkpoint(s); the order test and predictability are undefined"]
    notes = [f"{r.model} step {r.step}: 0 of {r.n_sequences} trained sequences memorized"
             for r in seen[seen["n_memorized"] == 0].itertuples()]
    notes += [f"{r.model}: training-order test undefined at step {r.step} (no memorized sequence in its bins)"
              for r in order_test.itertuples() if r.ks_pvalue != r.ks_pvalue]
    if not len(predict):
        notes.append("predictability is empty: it needs an earlier checkpoint or a smaller model at the same step")
    else:
        notes += [f"{r.model} step {r.step} from {r.predictor_model} step {r.predictor_step}: precision undefined "
                  "(the predictor memorized none of the shared sequences)" for r in predict.itertuples()
                  if r.tp + r.fp == 0]
    return notes


# ---- command line ------------------------------------------------------------------------------


def store_path_for(out: str | os.PathLike) -> Path:
    """The zarr group beside the summary: results/memorization.parquet -> results/memorization.zarr."""
    return Path(out).with_suffix(".zarr")


def table_paths(out: str | os.PathLike) -> dict[str, Path]:
    """The summary tables written beside OUT.parquet, by schema name."""
    out = Path(out)
    return {"memorization": out, **{f"memorization_{t}": out.with_name(f"{out.stem}_{t}.parquet")
                                    for t in ("histogram", "order_test", "predictability")}}


def analyse(suite: Suite, order: TrainingOrder, sequences: np.ndarray, out: str | os.PathLike,
            per_sequence_out: str | os.PathLike | None = None, models: list[str] | None = None,
            steps: list[int] | None = None, device: str = "cpu", batch_size: int | None = None,
            progress: bool = True, config: dict | None = None, seeds: dict | None = None,
            allow_eos: bool = False, client=None) -> dict[str, pd.DataFrame]:
    """Run (or resume) the study and write its tables; returns them by schema name.

    The tables' metadata records `config` with the settings that decided the numbers (batch size
    and data seed of the order, end-of-text handling) and `seeds`."""
    from pythia_suite.tables import columns, write_table

    out = Path(out)
    outputs = {p.resolve() for p in table_paths(out).values()}
    if per_sequence_out is not None and Path(per_sequence_out).resolve() in outputs:
        raise UserError(f"--per-sequence {per_sequence_out} would overwrite one of the summary tables "
                        f"({', '.join(p.name for p in table_paths(out).values())}); choose another file")
    config = {**(config or {}), "batch_size": order.batch_size, "data_seed": order.seed, "allow_eos": allow_eos,
              "prompt_len": PROMPT_LEN, "continuation_len": CONTINUATION_LEN}
    seeds = {"data": order.seed, **(seeds or {})}
    store = run(suite, order, sequences, store_path_for(out), models, steps, device, batch_size, progress, allow_eos,
                client)
    per_seq = per_sequence(store, suite, order)
    summary, hist = summarize(per_seq)
    order_test, qq = training_order_test(per_seq)
    predict = predictability_table(per_seq)
    tables = {"memorization": summary, "memorization_histogram": hist, "memorization_order_test": order_test,
              "memorization_qq": qq, "memorization_predictability": predict}
    paths = table_paths(out)
    meta = {"config": config, "seeds": seeds, "notes": degenerate_notes(summary, order_test, predict)}
    summary.attrs["notes"] = meta["notes"]
    write_table(summary, paths["memorization"], "memorization", **meta)
    write_table(hist, paths["memorization_histogram"], "memorization_histogram", **meta)
    for name, df in (("memorization_order_test", order_test), ("memorization_predictability", predict)):
        # written when empty too (no memorized sequence, one checkpoint): the notes say why
        write_table(df if len(df) else pd.DataFrame(columns=list(columns(name))), paths[name], name, **meta)
    if per_sequence_out is not None:
        write_table(per_seq, per_sequence_out, "memorization_sequences", **meta)
    tables["memorization_sequences"] = per_seq
    return tables


def build_parser() -> argparse.ArgumentParser:
    from pythia_suite.cli.common import add_cluster_options, analysis_parser

    p = analysis_parser("memorization", __doc__, "pythia-suite memorization --manifest suite/checkpoints_manifest.json "
                        "--data data/corpus --sample 4096 --out results/memorization.parquet")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--sequences", help="START:END range of training-order sequence indices")
    g.add_argument("--sample", type=int, help="a seeded random sample of N trained sequences (those the latest "
                   "selected checkpoint has seen)")
    p.add_argument("--seed", type=int, help="seed of --sample (default 0); only with --sample")
    p.add_argument("--batch-size", type=int, help="the suite's training batch size, to map steps to sequences "
                   "seen; only for a manifest that does not record it (it must agree if both do)")
    p.add_argument("--allow-eos", action="store_true",
                   help="greedy argmax over the whole vocabulary; by default the end-of-text token is never "
                        "generated, as in Pythia's generate(..., min_length=64)")
    p.add_argument("--eval-batch", type=int, help="sequences per forward pass (default: 256 on CPU, fill memory on GPU)")
    p.add_argument("--out", required=True, help="summary table OUT.parquet; beside it OUT_histogram.parquet, "
                   "OUT_order_test.parquet, OUT_predictability.parquet and the per-sequence zarr OUT.zarr")
    p.add_argument("--per-sequence", help="also write the tidy per-sequence table here (.parquet)")
    add_cluster_options(p, "score", "this package and the suite's files")
    return p


def main(argv: list[str] | None = None) -> int:
    from pythia_suite.cli.common import require_parquet
    from pythia_suite.notes import print_notes

    args = build_parser().parse_args(argv)
    require_parquet(args.out, args.per_sequence)
    if args.seed is not None and args.sample is None:
        raise UserError("--seed only seeds --sample N; without --sample it would be ignored")
    from pythia_suite.devices import resolve_device

    resolve_device(args.device)  # before anything is written
    suite = Suite.load(args.manifest)
    data = suite.manifest.get("data") or {}
    batch = data.get("batch_size")
    if batch is None:
        if args.batch_size is None:
            raise UserError(f"{suite.source} does not record the training batch size; pass --batch-size")
        batch = args.batch_size
    elif args.batch_size is not None and args.batch_size != batch:
        raise UserError(f"--batch-size {args.batch_size} disagrees with the batch size {batch} the suite was "
                        "trained with (its manifest); leave --batch-size out")
    suite.check_data(args.data)
    chosen = select(suite, args.models, args.steps, args.skip_missing)  # every checkpoint there, before scoring
    suite, models, steps = chosen.suite, chosen.models, chosen.steps
    order = TrainingOrder(args.data, batch_size=batch, seed=data.get("data_seed"))
    seed = 0 if args.seed is None else args.seed
    trained = order.sequences_seen(max(suite.steps(m)[-1] for m in models))  # what the latest checkpoint saw
    sequences = choose_sequences(order.num_steps * order.batch_size, args.sequences, args.sample, seed, trained)
    config = {"manifest": args.manifest, "data": args.data, "models": args.models, "steps": args.steps,
              "sequences": args.sequences, "sample": args.sample, "device": args.device,
              "skipped_checkpoints": chosen.skipped}
    run_args = (suite, order, sequences, args.out, args.per_sequence, models, steps, args.device,
                args.eval_batch, not args.quiet, config, {"sample": seed} if args.sample else {}, args.allow_eos)
    from pythia_suite.engines import maybe_client

    with maybe_client(args.workers, args.scheduler, args.scheduler_timeout) as client:
        tables = analyse(*run_args, client=client)
    summary = tables["memorization"]
    seen = summary[summary["seen"]]
    print(f"wrote {args.out} ({len(summary)} rows) and {store_path_for(args.out)}")
    if chosen.note():
        print(f"  {chosen.note()}")
    if args.figures:
        print("wrote " + ", ".join(map(str, write_figures(tables, args.figures))))
    for r in seen.sort_values(["params", "step"]).groupby("model").tail(1).itertuples():
        print(f"  {r.model} step {r.step}: {r.n_memorized}/{r.n_sequences} memorized ({r.memorized_frac:.2%}), "
              f"mean score {r.mean_score:.3f}")
    print_notes(summary.attrs["notes"])
    return 0


# ---- figures (the demo's, for any run) ----------------------------------------------------------


def write_figures(tables: dict[str, pd.DataFrame], folder: str | os.PathLike) -> list[Path]:
    """The memorization figures of `analyse`'s tables, as PNGs in `folder`:
    ``memorized_over_training.png`` (memorized share of the sample per checkpoint, held-out at the
    last one). The demo adds its canary figures beside them."""
    from pythia_suite.plots import plot_memorized_over_training

    folder = Path(folder)
    return [plot_memorized_over_training(tables["memorization"], folder / "memorized_over_training.png")]
