"""The memorization section of the demo on the micro-Pile: a seeded sample of training sequences from
across the whole order and the held-out items at every checkpoint (`analyses.memorization`), and
the planted canaries by copies and size, with 0-copy controls. Every sentence of the section is
built from the measured numbers."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analyses.canaries import canary_scores, canary_tokens, in_canary
from analyses.memorization import analyse, choose_sequences, write_figures
from pythia_suite.checkpoints import Suite
from pythia_suite.demo import Section
from pythia_suite.eval.continuation import CONTINUATION_LEN, PROMPT_LEN


def _shape(pivot: pd.DataFrame) -> list[str]:
    """Sentences that read the canary table (rows: copies, columns: models by size; values: share
    memorized exactly) as measured: rank correlation with copies per model, and the trend with
    size at the most copies."""
    from scipy import stats

    lines = []
    trained = pivot[pivot.index > 0]
    for model in pivot.columns:
        col = trained[model]
        rho = stats.spearmanr(trained.index, col).statistic if col.nunique() > 1 else float("nan")
        lines.append(f"- {model}: memorized share {' / '.join(f'{v:.2f}' for v in col)} at "
                     f"{' / '.join(map(str, trained.index))} copies; Spearman correlation with copies "
                     + (f"{rho:+.2f}" if rho == rho else "undefined (the same share everywhere)"))
    top = trained.iloc[-1]
    rises = bool((top.diff().dropna() >= 0).all()) and top.iloc[-1] > top.iloc[0]
    lines.append(f"- at {trained.index[-1]} copies, from the smallest to the largest model: "
                 f"{' -> '.join(f'{v:.2f}' for v in top)} ({'rises with size' if rises else 'does not rise steadily with size'})")
    if 0 in pivot.index:
        lines.append(f"- control canaries (0 copies, never trained): memorized share {' / '.join(f'{v:.2f}' for v in pivot.loc[0])}")
    return lines


def _pct(k: int, n: int) -> str:
    return f"{k} / {n} ({k / n:.1%})" if n else "0 / 0"


def section(ctx):
    """Memorization on the demo suite: a seeded sample of training sequences from across the whole
    order and the held-out items at every checkpoint, and the planted canaries by copies and size."""
    from pythia_suite.plots import plot_canaries, plot_canaries_over_training
    from pythia_suite.tables import write_table

    suite = Suite.load(ctx.manifest).without_interventions()  # the bias step adds interventions to the manifest
    order = suite.order(ctx.data)
    final = max(suite.steps(m)[-1] for m in suite.models())
    n_trained = order.sequences_seen(final)
    val = suite.data_info.get("validation") or {"first": n_trained, "n_items": 0}
    held_out = np.arange(val["first"], val["first"] + val["n_items"], dtype=np.int64)
    sample = min(n_trained, ctx.preset.memorization_sample)
    trained = choose_sequences(n_trained, sample=sample, seed=ctx.preset.seed)
    sequences = np.concatenate([trained, held_out])
    config = {"sample": sample, "seed": ctx.preset.seed, "held_out": [int(val["first"]), int(val["n_items"])]}
    tables = analyse(suite, order, sequences, ctx.table("memorization"), ctx.table("memorization_sequences"),
                     device=ctx.preset.device, progress=ctx.progress, config=config)
    truth = ctx.ground_truth()
    ids = canary_tokens(truth, order.tokenizer)
    canaries = canary_scores(suite, truth, order.tokenizer, ctx.preset.device)
    write_table(canaries, ctx.table("canary_memorization"), "canary_memorization", config={"source": "micro-Pile ground truth"})
    per_seq = tables["memorization_sequences"]
    models = sorted(suite.models(), key=suite.params)
    largest = models[-1]
    figs = write_figures(tables, ctx.out / "figures")
    figs += [plot_canaries(canaries, ctx.figure("canary_memorization")),
             plot_canaries_over_training(canaries, largest, ctx.figure("canaries_over_training"))]

    # --- sampled sequences and the held-out control, at each model's final checkpoint
    last = per_seq[per_seq["step"] == per_seq.groupby("model")["step"].transform("max")]
    planted = [i for i, c in zip(ids, truth["canaries"]) if c["repeats"] > 0]
    inside = dict(zip(sequences.tolist(), in_canary(order, sequences, planted).tolist()))
    lines = [f"Sequences: a seeded sample (seed {ctx.preset.seed}) of {len(trained):,} of the {n_trained:,} trained "
             f"sequences, from across the whole order (positions {trained.min():,}..{trained.max():,}), and the "
             f"{len(held_out):,} held-out items after the last trained step (never trained on), scored at every "
             f"checkpoint: prompt {PROMPT_LEN} tokens, greedy continuation of {CONTINUATION_LEN}; memorized = all "
             f"{CONTINUATION_LEN} match. `params` is the total parameter count.", "",
             "| model | params | final step | memorized (trained sample) | mean score | memorized (held-out) | "
             "memorized (held-out, outside canaries: the control) | mean score (held-out) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    fracs = []
    n_memorized = lambda g: int((g["matched"] == CONTINUATION_LEN).sum())  # noqa: E731
    for model in models:
        g = last[last["model"] == model]
        seen, unseen = g[g["seen"]], g[~g["seen"]]
        outside = unseen[~unseen["sequence"].map(inside).astype(bool)]
        k = n_memorized(seen)
        fracs.append(k / max(1, len(seen)))
        lines.append(f"| {model} | {suite.params(model):,} | {int(g['step'].iloc[0])} | {_pct(k, len(seen))} | "
                     f"{seen['score'].mean():.3f} | {_pct(n_memorized(unseen), len(unseen))} | "
                     f"{_pct(n_memorized(outside), len(outside))} | "
                     f"{unseen['score'].mean() if len(unseen) else float('nan'):.3f} |")
    ordered = all(b >= a for a, b in zip(fracs, fracs[1:]))
    lines += ["", f"Memorized share of the trained sample at the final checkpoint, smallest to largest model: "
              f"{' -> '.join(f'{f:.2%}' for f in fracs)} ({'never falls with size' if ordered else 'not monotonic in size'})."]
    for seen, what in ((True, "sampled trained"), (False, "held-out")):
        g = last[(last["model"] == largest) & (last["seen"] == seen)]
        mem = g[g["matched"] == CONTINUATION_LEN]
        k_in = int(mem["sequence"].map(inside).sum())
        n_in = int(g["sequence"].map(inside).sum())
        lines.append(f"Where {largest}'s memorized {what} sequences come from: of the {n_in} whose continuation "
                     f"lies inside a canary, {k_in} are memorized; of the other {len(g) - n_in}, {len(mem) - k_in}."
                     + (" A held-out item is never trained on, but a canary's copies land in held-out items too: "
                        "memorizing one there is recalling text trained on elsewhere, so the control is the "
                        "held-out items outside canaries." if not seen and n_in else ""))

    # --- planted canaries
    fin = canaries[canaries["step"] == canaries.groupby("model")["step"].transform("max")]
    fin = fin.assign(memorized=fin["matched"] == CONTINUATION_LEN)
    share = fin.pivot_table(index="repeats", columns="model", values="memorized", aggfunc="mean")[models]
    mean = fin.pivot_table(index="repeats", columns="model", values="score", aggfunc="mean")[models]
    count = fin.groupby(["repeats", "model"])["memorized"].agg(["sum", "size"])
    p = ctx.preset
    words = (f"a chain of {p.canary_words} pseudo-words of its own, each once, so every word names the next"
             if p.canary_private_words >= p.canary_words else
             f"{p.canary_words} words drawn from {p.canary_private_words} words of its own")
    lines += ["", f"Planted canaries ({len(truth['canaries'])}: {p.canaries_per_repeat} per copy count, each "
              f"{min(map(len, ids))}+ tokens, {words}, used nowhere else; the tokenizer was trained without them, so "
              "every canary is cut into pieces alike) at the final checkpoint: memorized exactly (k / n) and mean "
              "score, by copies in the corpus:", "",
              "| copies | " + " | ".join(models) + " |", "|---:|" + "---:|" * len(models)]
    for rep in share.index:
        cells = [f"{int(count.loc[(rep, m), 'sum'])} / {int(count.loc[(rep, m), 'size'])} ({mean.loc[rep, m]:.2f})"
                 for m in models]
        lines.append(f"| {rep if rep else '0 (control)'} | " + " | ".join(cells) + " |")
    lines += ["", "Read from the table:", *_shape(share)]
    spread = []
    for rep in sorted({c["repeats"] for c in truth["canaries"] if c["repeats"] > 0})[-1:]:
        found = [f[f["step"] < final] for f in (order.find(i[:16]) for i, c in zip(ids, truth["canaries"])
                                                    if c["repeats"] == rep)]  # trained steps only
        steps = np.concatenate([f["step"].to_numpy() for f in found])
        spread.append(f"The {len(found)} canaries with {rep} copies start whole inside an item "
                      f"{sum(map(len, found))} times in the order (`TrainingOrder.find`), at steps "
                      f"{steps.min() if len(steps) else '-'}..{steps.max() if len(steps) else '-'} of {final}.")
    lines += ["", *spread]

    # --- the two findings of the paper
    order_test = tables["memorization_order_test"]
    lines.append("")
    for r in order_test.sort_values("params").itertuples():
        verdict = (f"only {r.n_bins} bin: too few sequences to test" if r.n_bins < 2 else
                   "no memorized sequences to test" if r.mean_per_bin == 0 else
                   f"mean {r.mean_per_bin:.2f} memorized per bin, KS {r.ks_statistic:.3f}, p = {r.ks_pvalue:.3f}")
        lines.append(f"- training order vs Poisson ({r.model}, sampled sequences binned by {r.bin_size} positions "
                     f"of the order): {verdict}")
    predict = tables["memorization_predictability"]
    informative = predict[predict["tp"] + predict["fn"] > 0] if len(predict) else predict
    if len(informative):
        best = informative.sort_values(["model", "predictor_step", "predictor_model"]).groupby(
            ["model", "predictor_model"]).tail(1)
        for r in best.itertuples():
            lines.append(f"- memorized at {r.predictor_model} step {r.predictor_step} as a predictor of {r.model} "
                         f"step {r.step}: " + (f"precision {r.precision:.2f}" if r.tp + r.fp else
                                               "no sequence memorized by the predictor (precision undefined)")
                         + f", recall {r.recall:.2f} ({r.n_sequences} sequences)")
    else:
        lines.append("- predictability: no sequence memorized at a final checkpoint, nothing to predict")
    names = ["memorization", "memorization_histogram", "memorization_order_test", "memorization_predictability",
             "memorization_sequences", "canary_memorization"]
    return Section("Memorization", lines, figs, [t for t in map(ctx.table, names) if t.exists()],
                   notes=tables["memorization"].attrs["notes"])
