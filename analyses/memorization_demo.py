"""The memorization case study's demo step on the micro-Pile: a sample of training sequences at
every checkpoint (`analyses.memorization`) and the planted canaries by copies and size."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from analyses.memorization import analyse, choose_sequences
from pythia_suite.checkpoints import Suite
from pythia_suite.continuation import CONTINUATION_LEN, PROMPT_LEN
from pythia_suite.data import TrainingOrder


def canary_scores(suite: Suite, truth: dict, tokenizer_path: str | os.PathLike) -> pd.DataFrame:
    """Score every planted canary (prompt = its first 32 tokens) at every checkpoint of every model."""
    from pythia_suite.continuation import score_sequences
    from pythia_suite.data.build import load_tokenizer

    tok = load_tokenizer(tokenizer_path)
    ids = [tok.encode(c["text"], add_special_tokens=False).ids[: PROMPT_LEN + CONTINUATION_LEN]
           for c in truth["canaries"]]
    tokens = np.array(ids, dtype=np.int64)
    frames = []
    for model in suite.models():
        for step in suite.steps(model):
            s = score_sequences(suite.load_model(model, step), tokens)
            frames.append(pd.DataFrame({
                "suite": suite.name, "model": model, "params": suite.params(model), "step": step,
                "tokens_seen": suite.tokens_seen(model, step), "canary": [c["id"] for c in truth["canaries"]],
                "repeats": [c["repeats"] for c in truth["canaries"]], "matched": s.matched.astype(np.int64),
                "score": s.score, "prefix_match": s.prefix.astype(np.int64)}))
    return pd.concat(frames, ignore_index=True)


def _shape(pivot: pd.DataFrame) -> str:
    """An honest one-line reading of the canary table (rows: copies, columns: models by size)."""
    from scipy import stats

    if not (pivot.to_numpy() > 0).any():
        return "no canary continuation token was reproduced by any model (too little training to memorize)."
    copies = stats.spearmanr(np.repeat(pivot.index, pivot.shape[1]), pivot.to_numpy().ravel()).statistic
    top = pivot.iloc[-1]
    return (f"Spearman correlation of score with copies {copies:+.2f} (all sizes pooled); at {pivot.index[-1]} "
            f"copies the score {'rises' if top.iloc[-1] > top.iloc[0] else 'does not rise'} from the smallest "
            f"({top.iloc[0]:.2f}) to the largest model ({top.iloc[-1]:.2f}).")


def demo_step(ctx):
    """Memorization on the demo suite: a sample of training sequences at every checkpoint, and the
    planted canaries by repeat count and size."""
    from pythia_suite.demo import Section
    from pythia_suite.plots import plot_canaries, plot_memorized_over_training
    from pythia_suite.tables import write_table

    suite = Suite.load(ctx.manifest).without_interventions()  # the bias step adds interventions to the manifest
    order = TrainingOrder(ctx.data, batch_size=ctx.preset.batch_size)
    n = order.num_steps * order.batch_size
    # the first sequences of the order, so bins of 512 are full for the order test
    sequences = choose_sequences(n, sequences=f"0:{min(n, ctx.preset.memorization_sample)}")
    tables = analyse(suite, order, sequences, ctx.table("memorization"), ctx.table("memorization_sequences"),
                     device=ctx.preset.device, progress=ctx.progress, config={"sequences": f"0:{len(sequences)}"})
    canaries = canary_scores(suite, ctx.ground_truth(), ctx.data.with_name(ctx.data.name + ".tokenizer.json"))
    write_table(canaries, ctx.table("canary_memorization"), "canary_memorization")
    summary = tables["memorization"]
    figs = [plot_memorized_over_training(summary, ctx.figure("memorized_over_training")),
            plot_canaries(canaries, ctx.figure("canary_memorization"))]
    final = canaries[canaries["step"] == canaries.groupby("model")["step"].transform("max")]
    pivot = final.pivot_table(index="repeats", columns="model", values="score", aggfunc="mean")
    pivot = pivot[sorted(pivot.columns, key=suite.params)]
    last = summary[summary["seen"]].sort_values("step").groupby("model").tail(1).sort_values("params")
    lines = [f"{len(sequences):,} training sequences (the first of the order) scored at every checkpoint: prompt "
             f"{PROMPT_LEN} tokens, greedy continuation of {CONTINUATION_LEN}; memorized = all {CONTINUATION_LEN} match.",
             "", "| model | final step | memorized | mean score |", "|---|---:|---:|---:|"]
    lines += [f"| {r.model} | {r.step} | {r.n_memorized} / {r.n_sequences} ({r.memorized_frac:.2%}) | {r.mean_score:.3f} |"
              for r in last.itertuples()]
    lines += ["", "Planted canaries at the final checkpoint: mean score (fraction of the 32 continuation tokens "
              "reproduced) by number of copies in the corpus:", "",
              "| copies | " + " | ".join(pivot.columns) + " |", "|---:|" + "---:|" * len(pivot.columns)]
    lines += [f"| {rep} | " + " | ".join(f"{v:.2f}" for v in row) + " |" for rep, row in pivot.iterrows()]
    lines += ["", "Expected shape: more copies and larger models memorize more. Found: " + _shape(pivot)]
    order_test = tables["memorization_order_test"]
    lines.append("")
    for r in order_test.sort_values("params").itertuples():
        verdict = (f"only {r.n_bins} bin: too few sequences to test" if r.n_bins < 2 else
                   "no memorized sequences to test" if r.mean_per_bin == 0 else
                   f"KS {r.ks_statistic:.3f}, p = {r.ks_pvalue:.3f}")
        lines.append(f"- training order vs Poisson ({r.model}, bins of {r.bin_size}): {verdict}")
    predict = tables["memorization_predictability"]
    informative = predict[predict["tp"] + predict["fn"] > 0] if len(predict) else predict
    for r in informative.itertuples():
        lines.append(f"- memorized at {r.predictor_model} step {r.predictor_step} as a predictor of {r.model} step "
                     f"{r.step}: precision {r.precision:.2f}, recall {r.recall:.2f} ({r.n_sequences} sequences)")
    if not len(informative):
        lines.append("- predictability: no sequence memorized at a final checkpoint, nothing to predict")
    names = ["memorization", "memorization_sequences", "memorization_predictability", "canary_memorization"]
    return Section("Memorization", lines, figs, [t for t in map(ctx.table, names) if t.exists()])
