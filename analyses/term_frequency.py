"""Term-frequency effects on few-shot arithmetic (Biderman et al. 2023, section 5; Razeghi et al. 2022).

    pythia-suite term-frequency --manifest suite/checkpoints_manifest.json --data data/corpus \\
        --tasks times plus --shots 0 2 4 8 16 --out results/term_frequency.parquet

Does a model answer ``Q:What is 24 times 7? A:`` better when the operand 24 was frequent in the
data it had seen *up to that checkpoint*? For every model x checkpoint x task x k: the questions
x1 in 0..99 times (or plus) x2 in 1..50, each after k solved examples drawn (seeded) from pairs
with another x1, in Pythia's format (``Q:What is {x1} times {x2}? A:{answer}``, examples joined by
a blank line, as the lm-evaluation-harness task Pythia used); greedy decoding until a newline
(`pythia_suite.eval.generate`, at most `MAX_NEW_TOKENS`); correct when the first ``\\d{1,5}`` of
the output equals the answer (Pythia's `process_results`).

The frequency of x1 as of checkpoint ``stepN`` is its count in steps 0..N-1 of the training order
(`pythia_suite.data.counts`, one pass for every checkpoint). Outputs, beside ``OUT.parquet``:
``OUT_gap.parquet`` (Δ = mean accuracy of the 10 most frequent x1 minus the 10 least frequent,
with a bootstrap interval, and the Spearman correlation of accuracy with log frequency),
``OUT_answers.parquet`` (every question's greedy output and whether it was right),
``OUT_counts.parquet`` and the resumable counts store ``OUT_counts.zarr``. Cells at floor (nothing
correct) and intervals that resampling cannot move are named in the summary line and the tables'
metadata (``notes``).
"""

from __future__ import annotations

import argparse
import os
import re
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from pythia_suite.errors import UserError

TASKS = {"times": lambda a, b: a * b, "plus": lambda a, b: a + b}
SHOTS = (0, 2, 4, 8, 16)
X1_VALUES = tuple(range(100))
X2_RANGE = (1, 50)
SHOT_SEPARATOR = "\n\n"  # the old harness' fewshot_context: examples joined by, and followed by, a blank line
MAX_NEW_TOKENS = 8  # answers have at most 4 digits; only the first integer of the output is read
GROUP = 10  # Δ compares the 10 most and the 10 least frequent x1
N_BOOT = 1000
KEYS = ["suite", "model", "params", "step", "tokens_seen"]
_FIRST_INTEGER = re.compile(r"\d{1,5}")


# ---- prompts -------------------------------------------------------------------------------------


def question(task: str, x1: int, x2: int) -> str:
    return f"Q:What is {x1} {task} {x2}? A:"


def solved(task: str, x1: int, x2: int) -> str:
    return question(task, x1, x2) + str(TASKS[task](x1, x2))


def build_prompts(tasks: Sequence[str], shots: Sequence[int], x2_values: Sequence[int] | None = None,
                  x1_values: Sequence[int] = X1_VALUES, seed: int = 0) -> pd.DataFrame:
    """One row per task x k x x1 x x2: columns task, shots, x1, x2, answer, prompt.

    The k examples of a question are drawn without replacement from every pair (a, b), a in 0..99
    other than x1 and b among `x2_values`, by a Generator seeded with (seed, task, k, x1, x2): the
    same question always gets the same examples, whatever else is evaluated.
    """
    x2_values = list(range(X2_RANGE[0], X2_RANGE[1] + 1)) if x2_values is None else list(x2_values)
    for t in tasks:
        if t not in TASKS:
            raise UserError(f"unknown task {t!r}; tasks: {', '.join(TASKS)}")
    pool = (len(X1_VALUES) - 1) * len(x2_values)
    for k in shots:
        if k < 0 or k > pool:
            raise UserError(f"--shots {k} is larger than the pool of {pool} examples (99 other x1 x "
                            f"{len(x2_values)} x2); use k <= {pool}")
    rows = []
    for ti, task in enumerate(tasks):
        for k in shots:
            for x1 in x1_values:
                for x2 in x2_values:
                    text = question(task, x1, x2)
                    if k:
                        rng = np.random.default_rng([seed, ti, k, x1, x2])
                        picks = rng.choice(pool, size=k, replace=False)
                        a = picks // len(x2_values)
                        a = np.where(a >= x1, a + 1, a)  # skip x1 itself
                        b = np.array(x2_values)[picks % len(x2_values)]
                        text = SHOT_SEPARATOR.join(solved(task, int(p), int(q)) for p, q in zip(a, b)) + SHOT_SEPARATOR + text
                    rows.append((task, k, x1, x2, TASKS[task](x1, x2), text))
    return pd.DataFrame(rows, columns=["task", "shots", "x1", "x2", "answer", "prompt"])


def is_correct(output: str, answer: int) -> bool:
    """Pythia's rule: the first run of at most 5 digits in the output, as a string, equals the answer."""
    m = _FIRST_INTEGER.search(output)
    return m is not None and m.group(0) == str(answer)


def check_context(prompt_ids: list[list[int]], shots: Sequence[int], model: str, context: int,
                  max_new_tokens: int = MAX_NEW_TOKENS) -> None:
    """Raise UserError naming the first k whose longest prompt does not fit `context` positions."""
    for k in sorted(set(shots)):
        need = max(len(p) for p, s in zip(prompt_ids, shots) if s == k) + max_new_tokens - 1
        if need > context:
            raise UserError(f"{model} has a context of {context} tokens, but the {k}-shot prompts need {need} "
                            f"(longest prompt + {max_new_tokens} new tokens - 1); use smaller --shots")


# ---- evaluation ----------------------------------------------------------------------------------


def evaluate(model, tokenizer, prompts: pd.DataFrame, prompt_ids: list[list[int]] | None = None,
             max_new_tokens: int = MAX_NEW_TOKENS, batch_size: int | None = None, device: str = "cpu") -> pd.DataFrame:
    """`prompts` with columns output (greedy text up to the first newline) and correct."""
    from pythia_suite.eval.generate import DEFAULT_BATCH, greedy_until

    ids = prompt_ids or [e.ids for e in tokenizer.encode_batch(prompts["prompt"].tolist(), add_special_tokens=False)]
    gen = greedy_until(model, ids, max_new_tokens, decode=tokenizer.decode, stop=("\n",),
                       batch_size=batch_size or DEFAULT_BATCH, device=device)
    out = prompts.drop(columns=["prompt"]).assign(output=gen.texts)
    out["correct"] = [is_correct(o, a) for o, a in zip(gen.texts, prompts["answer"])]
    return out


def accuracy_table(results: pd.DataFrame, frequency: pd.DataFrame, definition: str) -> pd.DataFrame:
    """Per model x step x task x shots x x1: n, n_correct, accuracy, and the frequency of x1 as of
    that step. `frequency` has columns step, x1, frequency."""
    group = KEYS + ["task", "shots", "x1"]
    acc = results.groupby(group, as_index=False).agg(n=("correct", "size"), n_correct=("correct", "sum"))
    acc["accuracy"] = acc["n_correct"] / acc["n"]
    acc = acc.merge(frequency, on=["step", "x1"], how="left", validate="many_to_one")
    if acc["frequency"].isna().any():
        raise ValueError("a step or x1 has no count")
    return acc.assign(definition=definition)


def gap_table(acc: pd.DataFrame, group: int = GROUP, n_boot: int = N_BOOT, seed: int = 0) -> pd.DataFrame:
    """Per model x step x task x shots: Δ = mean accuracy of the `group` most frequent x1 minus the
    `group` least frequent (ranked by frequency, ties by x1), a 95% bootstrap interval (questions
    resampled within each x1, i.e. accuracy ~ Binomial(n, p)/n), and Spearman's rho of accuracy
    with log frequency (rank-based, so the same as with frequency)."""
    from scipy import stats

    rng = np.random.default_rng(seed)
    rows = []
    for key, g in acc.groupby(KEYS + ["task", "shots"], sort=True):
        g = g.sort_values(["frequency", "x1"])
        m = min(group, len(g) // 2)
        bottom, top = g.iloc[:m], g.iloc[len(g) - m :]
        delta = top["accuracy"].mean() - bottom["accuracy"].mean()
        draw = lambda part: rng.binomial(part["n"].to_numpy(), part["accuracy"].to_numpy(),  # noqa: E731
                                         size=(n_boot, len(part))) / part["n"].to_numpy()
        boot = draw(top).mean(1) - draw(bottom).mean(1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # constant accuracy: rho is undefined (NaN), not an error
            rho = stats.spearmanr(g["accuracy"], np.log1p(g["frequency"]))
        rows.append({**dict(zip(KEYS + ["task", "shots"], key)), "n_x1": m, "top_accuracy": top["accuracy"].mean(),
                     "bottom_accuracy": bottom["accuracy"].mean(), "delta": delta,
                     "delta_low": float(np.quantile(boot, 0.025)), "delta_high": float(np.quantile(boot, 0.975)),
                     "spearman": float(rho.statistic), "spearman_pvalue": float(rho.pvalue)})
    return pd.DataFrame(rows)


def degenerate_notes(acc: pd.DataFrame, gap: pd.DataFrame) -> list[str]:
    """Notes (`pythia_suite.notes`): model x step x task x k cells with nothing correct, and gap
    intervals that rest on one question per x1 or on answers that are all alike."""
    from pythia_suite.notes import accuracy_notes, interval_note

    cells = acc.groupby(["model", "step", "task", "shots"], sort=True)[["n_correct", "n"]].sum()
    if len(cells) and not cells["n_correct"].any():
        return [f"nothing correct: accuracy 0 in every one of the {len(cells)} model x step x task x k cells "
                f"({cells['n'].sum()} questions); the gap and correlation are not findings"]
    notes = accuracy_notes([(f"{m} step {s} {t} {k}-shot", r.n_correct, r.n, None) for (m, s, t, k), r in cells.iterrows()])
    per_x1 = acc.groupby(["model", "step", "task", "shots"])["n"].min()
    notes += [interval_note(f"{r.model} step {r.step} {r.task} {r.shots}-shot delta", r.delta_low, r.delta_high,
                            int(per_x1[(r.model, r.step, r.task, r.shots)])) for r in gap.itertuples()]
    return [n for n in notes if n]


# ---- over a suite --------------------------------------------------------------------------------


def x1_frequency(counts, steps: Sequence[int]) -> pd.DataFrame:
    """Columns step, x1, frequency: the count of each x1 as of each checkpoint step."""
    table = counts.table(steps)
    table = table[table["term"].isin([str(x) for x in X1_VALUES])]
    return pd.DataFrame({"step": table["step"].to_numpy(), "x1": table["term"].astype(int).to_numpy(),
                         "frequency": table["count_seen"].to_numpy()})


def run(suite, data: str | os.PathLike, out: str | os.PathLike, models: Sequence[str] | None = None,
        steps: Sequence[int] | None = None, tasks: Sequence[str] = tuple(TASKS), shots: Sequence[int] = SHOTS,
        definition: str = "token", x2_values: Sequence[int] | None = None, tokenizer: str | os.PathLike | None = None,
        seed: int = 0, max_new_tokens: int = MAX_NEW_TOKENS, batch_size: int | None = None, device: str = "cpu",
        workers: int | None = None, progress: bool = True, config: dict | None = None) -> dict[str, pd.DataFrame]:
    """Count, evaluate and write the three tables; returns them by schema name.

    Every check a user can fail (models, steps, tokenizer, shots, context length) runs before any
    work, and the tables are written only at the end.
    """
    from tqdm.auto import tqdm

    from pythia_suite.data.build import load_tokenizer
    from pythia_suite.data.counts import count_terms, data_tokenizer, parse_terms
    from pythia_suite.tables import write_table

    out = Path(out)
    models = list(models or suite.models())
    for m in models:
        suite.model_info(m)
    pairs = [(m, s) for m in models for s in (sorted(set(steps)) if steps else suite.steps(m))]
    for m, s in pairs:
        suite.resolve(m, s)  # unknown step: error naming the nearest
    tok_path = data_tokenizer(data, tokenizer)
    if tok_path is None:
        raise UserError(f"{data} has no tokenizer in its sidecar; give --tokenizer tokenizer.json")
    tok = load_tokenizer(tok_path)
    order = suite.order(data)  # checked against the sidecar and the manifest first
    if (late := max(s for _, s in pairs)) > order.num_steps:
        raise UserError(f"checkpoint step {late} is past the data: {data} has {order.num_steps} steps of batch "
                        f"{order.batch_size}")
    prompts = build_prompts(tasks, shots, x2_values, seed=seed)
    prompt_ids = [e.ids for e in tok.encode_batch(prompts["prompt"].tolist(), add_special_tokens=False)]
    for m in models:
        context = suite.model_info(m)["config"].get("max_position_embeddings", 2048)
        check_context(prompt_ids, prompts["shots"].tolist(), m, context, max_new_tokens)

    counts = count_terms(data, parse_terms(["0..99"], tok), order.batch_size, definition=definition,
                         tokenizer=tok_path, seed=order.seed, store=out.with_name(out.stem + "_counts.zarr"),
                         workers=workers, progress=progress)
    all_steps = sorted({s for _, s in pairs})
    frequency = x1_frequency(counts, all_steps)
    frames = []
    bar = tqdm(total=len(pairs), desc="term-frequency", unit="checkpoint", disable=None if progress else True,
               leave=False)
    for m, s in pairs:
        net = suite.load_model(m, s).to(device)
        res = evaluate(net, tok, prompts, prompt_ids, max_new_tokens, batch_size, device)
        frames.append(res.assign(suite=suite.name, model=m, params=suite.params(m), step=s,
                                 tokens_seen=suite.tokens_seen(m, s)))
        bar.update(1)
    bar.close()
    results = pd.concat(frames, ignore_index=True)
    acc = accuracy_table(results, frequency, definition)
    gap = gap_table(acc, seed=seed)
    count_table = counts.table(all_steps, suite.name)
    notes = degenerate_notes(acc, gap)
    acc.attrs["notes"] = notes
    meta = {"config": config, "seeds": {"shots": seed}, "notes": notes}
    write_table(acc, out, "term_frequency", **meta)
    write_table(results, out.with_name(out.stem + "_answers.parquet"), "term_frequency_answers", **meta)
    write_table(gap, out.with_name(out.stem + "_gap.parquet"), "term_frequency_gap",
                **(meta | {"seeds": {"shots": seed, "bootstrap": seed}}))
    write_table(count_table, out.with_name(out.stem + "_counts.parquet"), "term_counts", config=config)
    return {"term_frequency": acc, "term_frequency_gap": gap, "term_counts": count_table,
            "term_frequency_answers": results}


# ---- command line --------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from pythia_suite.cli.common import analysis_parser
    from pythia_suite.data.counts import DEFINITIONS

    p = analysis_parser("term-frequency", __doc__, "pythia-suite term-frequency --manifest suite --data data/corpus "
                        "--shots 0 4 --out results/term_frequency.parquet")
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS), help="arithmetic tasks (default: both)")
    p.add_argument("--shots", nargs="+", type=int, default=list(SHOTS), help="k values (default 0 2 4 8 16)")
    p.add_argument("--definition", choices=DEFINITIONS, default="token", help="how x1 is counted (default token)")
    p.add_argument("--x2-max", type=int, default=X2_RANGE[1], help="x2 runs 1..X2_MAX (default 50, Pythia's)")
    p.add_argument("--seed", type=int, default=0, help="seed of the examples and the bootstrap (default 0)")
    p.add_argument("--tokenizer", help="tokenizer.json (default: the one the data's sidecar names)")
    p.add_argument("--max-new-tokens", type=int, default=MAX_NEW_TOKENS,
                   help=f"greedy answer length in tokens (default {MAX_NEW_TOKENS})")
    p.add_argument("--eval-batch", type=int, help="prompts per forward pass (default 256)")
    p.add_argument("--workers", type=int, help="processes for counting (default: every core)")
    p.add_argument("--out", required=True, help="table (.parquet); _answers, _gap, _counts tables and the counts "
                   "store beside it")
    return p


def main(argv: list[str] | None = None) -> int:
    from pythia_suite.checkpoints import Suite
    from pythia_suite.cli.common import require_parquet
    from pythia_suite.notes import print_notes
    from pythia_suite.selection import select

    args = build_parser().parse_args(argv)
    require_parquet(args.out)
    if args.x2_max < 1:
        raise UserError(f"--x2-max must be at least 1, got {args.x2_max}")
    if args.max_new_tokens < 1:
        raise UserError(f"--max-new-tokens must be at least 1, got {args.max_new_tokens}")
    from pythia_suite.devices import resolve_device

    resolve_device(args.device)  # before anything is written
    suite = Suite.load(args.manifest)
    suite.check_data(args.data)
    chosen = select(suite, args.models, args.steps, args.skip_missing)  # every checkpoint there, before scoring
    config = dict(vars(args)) | {"skipped_checkpoints": chosen.skipped}
    tables = run(chosen.suite, args.data, args.out, chosen.models, chosen.steps, args.tasks, sorted(set(args.shots)),
                 args.definition, range(1, args.x2_max + 1), args.tokenizer, args.seed, args.max_new_tokens,
                 args.eval_batch, args.device, args.workers, not args.quiet, config)
    gap = tables["term_frequency_gap"]
    print(f"wrote {args.out} ({len(tables['term_frequency'])} rows), its _answers, _gap and _counts tables")
    if chosen.note():
        print(f"  {chosen.note()}")
    if args.figures:
        print("wrote " + ", ".join(map(str, write_figures(tables, args.figures))))
    for r in gap.sort_values(["params", "task", "shots", "step"]).groupby(["model", "task", "shots"]).tail(1).itertuples():
        print(f"  {r.model} step {r.step} {r.task} {r.shots}-shot: top-10 {r.top_accuracy:.3f}, bottom-10 "
              f"{r.bottom_accuracy:.3f}, delta {r.delta:+.3f} [{r.delta_low:+.3f}, {r.delta_high:+.3f}]")
    print_notes(tables["term_frequency"].attrs["notes"])
    return 0


def write_figures(tables: dict[str, pd.DataFrame], folder: str | os.PathLike) -> list[Path]:
    """The figures of `run`'s tables, as PNGs in `folder`, at the largest k asked: accuracy per x1
    against its frequency (``term_frequency_<task>.png``) and the top-10 minus bottom-10 gap over
    training (``term_frequency_gap.png``)."""
    from pythia_suite.plots import plot_accuracy_vs_frequency, plot_gap_over_training

    acc, folder = tables["term_frequency"], Path(folder)
    k = int(acc["shots"].max())
    figs = [plot_accuracy_vs_frequency(acc, folder / f"term_frequency_{t}.png", t, k) for t in sorted(acc["task"].unique())]
    return figs + [plot_gap_over_training(tables["term_frequency_gap"], folder / "term_frequency_gap.png", k)]
