"""Figures from tidy tables (matplotlib, no display needed). Each function takes a DataFrame in the
documented schema and writes one PNG; models are coloured by size, smallest lightest."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: works on servers and in tests
    import matplotlib.pyplot as plt

    return plt


def size_colors(df: pd.DataFrame) -> dict[str, tuple]:
    """One colour per model, ordered by parameter count."""
    plt = _pyplot()
    models = df.drop_duplicates("model").sort_values("params")["model"].tolist()
    cmap = plt.get_cmap("viridis")
    return {m: cmap(0.15 + 0.7 * i / max(1, len(models) - 1)) for i, m in enumerate(models)}


def _finish(ax, xlabel: str, ylabel: str, title: str, legend: bool = True) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if legend:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)


def _save(fig, path: str | os.PathLike) -> Path:
    from .fileio import atomic_outputs

    path = Path(path)
    fig.tight_layout()
    with atomic_outputs(path) as (tmp,):
        fig.savefig(tmp, dpi=120, format=path.suffix.lstrip(".") or "png")
    _pyplot().close(fig)
    return path


def plot_loss_curves(log: pd.DataFrame, path: str | os.PathLike, smooth: int = 20) -> Path:
    """Training loss (rolling mean over `smooth` steps) against tokens seen, one line per model.
    `log` has the train_log schema."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4))
    colors = size_colors(log)
    for model in colors:  # legend in size order
        g = log[log["model"] == model].sort_values("step")
        loss = g["loss"].rolling(smooth, min_periods=1).mean()
        ax.plot(g["tokens_seen"], loss, color=colors[model], label=f"{model} ({g['params'].iloc[0]:,})")
    _finish(ax, "tokens seen", f"training loss (nats/token, mean of {smooth} steps)", "Loss over training")
    return _save(fig, path)


def plot_final_loss(final: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Final loss against parameter count (log x). `final` has columns model, params, loss."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.6))
    ax.plot(final["params"], final["loss"], "o-", color="0.3")
    for _, r in final.iterrows():
        ax.annotate(r["model"], (r["params"], r["loss"]), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xscale("log")
    _finish(ax, "parameters", "final training loss", "Loss against scale", legend=False)
    return _save(fig, path)


def _binomial_se(k, n):
    """Standard error of a proportion k/n (0 where n is 0), for error bars."""
    import numpy as np

    k, n = np.asarray(k, float), np.asarray(n, float)
    p = np.divide(k, n, out=np.zeros_like(k), where=n > 0)
    return np.sqrt(np.divide(p * (1 - p), n, out=np.zeros_like(k), where=n > 0))


def plot_memorized_over_training(summary: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Memorized share of the sampled sequences each checkpoint had seen, against step, one line
    per model, with binomial standard errors; held-out (never trained) sequences at each model's
    last checkpoint as open markers (`memorization` schema)."""

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4))
    colors = size_colors(summary)
    seen = summary[summary["seen"]]
    top = 0.0
    for model in colors:
        g = seen[seen["model"] == model].sort_values("step")
        frac, se = 100 * g["memorized_frac"], 100 * _binomial_se(g["n_memorized"], g["n_sequences"])
        ax.errorbar(g["step"], frac, yerr=se, fmt="o-", ms=3, capsize=2, color=colors[model],
                    label=f"{model} (seen)")
        top = max(top, float((frac + se).max()) if len(g) else 0.0)
        last = summary[(summary["model"] == model) & ~summary["seen"]]
        last = last[last["step"] == last["step"].max()] if len(last) else last
        if len(last) and int(last["step"].iloc[0]) == int(g["step"].max() if len(g) else -1):
            r = last.iloc[0]
            ax.errorbar([r["step"]], [100 * r["memorized_frac"]], yerr=[100 * _binomial_se(r["n_memorized"], r["n_sequences"])],
                        fmt="s", mfc="none", ms=6, capsize=2, color=colors[model])
            top = max(top, 100 * float(r["memorized_frac"]))
    ax.plot([], [], "s", mfc="none", color="0.3", label="held-out, last checkpoint")
    ax.set_ylim(0, max(1.0, 1.15 * top))
    ax.set_xscale("symlog", linthresh=max(1, int(seen["step"][seen["step"] > 0].min()) if (seen["step"] > 0).any() else 1))
    ax.set_xlim(left=0)  # steps are never negative: no empty half-axis left of 0
    _finish(ax, "checkpoint step (symlog)", "memorized (% of sampled sequences)", "Memorization over training")
    return _save(fig, path)


def _copies_axis(ax, copies: list[int]) -> None:
    """Copies as evenly spaced categories: 0 (never trained) fits beside 1, 2, 4, ..."""
    ax.set_xticks(range(len(copies)), [f"{c}" if c else "0\n(control)" for c in copies])


def plot_canaries(canaries: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Planted canaries at each model's final checkpoint against copies in the corpus: left the
    mean score (fraction of the 32 tokens reproduced) with standard errors over the canaries of a
    point, right the share memorized exactly (score 1) (`canary_memorization` schema)."""
    import numpy as np

    plt = _pyplot()
    final = canaries[canaries["step"] == canaries.groupby("model")["step"].transform("max")]
    copies = sorted(final["repeats"].unique().tolist())
    x = {c: i for i, c in enumerate(copies)}
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    colors = size_colors(final)
    for j, model in enumerate(colors):
        g = final[final["model"] == model].groupby("repeats")
        mean, n = g["score"].mean(), g["score"].size()
        se = g["score"].std(ddof=1).fillna(0) / np.sqrt(n)
        mem = g["score"].apply(lambda v: int((v >= 1).sum()))  # memorized exactly
        xs = np.array([x[c] for c in mean.index]) + 0.06 * (j - (len(colors) - 1) / 2)
        ax1.errorbar(xs, mean.values, yerr=se.values, fmt="o-", ms=4, capsize=2, color=colors[model], label=model)
        ax2.errorbar(xs, (mem / n).values, yerr=_binomial_se(mem.values, n.values), fmt="o-", ms=4, capsize=2,
                     color=colors[model], label=model)
    n_per = int(final.groupby(["model", "repeats"]).size().max())
    for ax, ylabel in ((ax1, "mean score (fraction of 32 tokens)"), (ax2, f"memorized exactly (share of {n_per})")):
        _copies_axis(ax, copies)
        ax.set_ylim(-0.03, 1.03)
        _finish(ax, "copies of the canary in the corpus", ylabel, "")
    fig.suptitle("Planted canaries at the final checkpoint")
    return _save(fig, path)


def plot_canaries_over_training(canaries: pd.DataFrame, model: str, path: str | os.PathLike) -> Path:
    """Canaries memorized exactly by one model at every checkpoint, one line per copy count
    (`canary_memorization` schema); the y axis counts canaries."""
    plt = _pyplot()
    g = canaries[canaries["model"] == model]
    fig, ax = plt.subplots(figsize=(6.4, 4))
    copies = sorted(g["repeats"].unique())
    cmap = plt.get_cmap("plasma")
    n_max = 1
    for i, c in enumerate(copies):
        h = g[g["repeats"] == c].groupby("step")["score"].agg(lambda v: int((v >= 1).sum())).sort_index()
        n_max = max(n_max, int((g["repeats"] == c).sum() / g["step"].nunique()))
        ax.plot(h.index, h.values, "o-", ms=3, color=cmap(0.1 + 0.8 * i / max(1, len(copies) - 1)),
                label=f"{c} copies" if c else "0 copies (control)")
    ax.set_ylim(-0.2, n_max + 0.2)
    ax.set_xscale("symlog", linthresh=max(1, int(g["step"][g["step"] > 0].min()) if (g["step"] > 0).any() else 1))
    ax.set_xlim(left=0)
    _finish(ax, "checkpoint step (symlog)", f"canaries memorized exactly (of {n_max})",
            f"Canaries memorized by {model} over training")
    return _save(fig, path)


def plot_loss_with_validation(log: pd.DataFrame, val: pd.DataFrame, path: str | os.PathLike, smooth: int = 20) -> Path:
    """Training loss (rolling mean, lines) and held-out loss at every checkpoint (markers) against
    tokens seen, one colour per model (`train_log` and `validation_log` schemas)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4))
    colors = size_colors(log)
    for model in colors:
        g = log[log["model"] == model].sort_values("step")
        ax.plot(g["tokens_seen"], g["loss"].rolling(smooth, min_periods=1).mean(), color=colors[model],
                label=f"{model} train")
        v = val[val["model"] == model].sort_values("step")
        if len(v):
            ax.plot(v["tokens_seen"], v["val_loss"], "o", ms=4, mfc="none", color=colors[model], label=f"{model} held-out")
    _finish(ax, "tokens seen", "loss (nats/token)", "Training loss (lines) and held-out loss (circles)")
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, path)


def plot_bias_over_training(table: pd.DataFrame, path: str | os.PathLike,
                            panels: list[tuple[str, str, str]], dashed: frozenset[str] = frozenset()) -> Path:
    """One panel per (benchmark, subset, metric) of a `bias` table: value against step, one line per
    model (the models in `dashed`, e.g. interventions, dashed)."""
    plt = _pyplot()
    panels = [p for p in panels if ((table["benchmark"] == p[0]) & (table["subset"] == p[1]) & (table["metric"] == p[2])).any()]
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(4.2 * max(1, len(panels)), 3.6), squeeze=False)
    colors = size_colors(table)
    for ax, (bench, subset, metric) in zip(axes[0], panels):
        sel = table[(table["benchmark"] == bench) & (table["subset"] == subset) & (table["metric"] == metric)]
        for model in sorted(sel["model"].unique(), key=lambda m: (sel.loc[sel["model"] == m, "params"].iloc[0], m)):
            g = sel[sel["model"] == model].sort_values("step")
            ax.plot(g["step"], g["value"], marker="o", ms=3, color=colors[model], label=model,
                    linestyle="--" if model in dashed else "-")
        _finish(ax, "checkpoint step", metric, f"{bench} {subset}")
    return _save(fig, path)


def plot_intervention(comparison: pd.DataFrame, path: str | os.PathLike,
                      panels: list[tuple[str, str, str]]) -> Path:
    """Intervention against parent over the steps after the start, one panel per (benchmark,
    subset, metric) of a `bias_comparison` table, as the paper's figures show."""
    plt = _pyplot()
    panels = [p for p in panels if ((comparison["benchmark"] == p[0]) & (comparison["subset"] == p[1])
                                    & (comparison["metric"] == p[2])).any()]
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(4.2 * max(1, len(panels)), 3.6), squeeze=False)
    cmap = plt.get_cmap("tab10")
    for ax, (bench, subset, metric) in zip(axes[0], panels):
        sel = comparison[(comparison["benchmark"] == bench) & (comparison["subset"] == subset)
                         & (comparison["metric"] == metric)]
        for i, model in enumerate(sorted(sel["model"].unique())):
            g = sel[sel["model"] == model].sort_values("step")
            ax.plot(g["step"], g["value"], "o-", ms=3, color=cmap(i), label=f"{model} (from {g['start_step'].iloc[0]})")
            p = g.dropna(subset=["parent_value"])
            ax.plot(p["step"], p["parent_value"], "s:", ms=4, color="0.4", label=f"{g['parent'].iloc[0]} (parent)" if i == 0 else None)
        _finish(ax, "checkpoint step", metric, f"{bench} {subset}")
    return _save(fig, path)


# ---- term frequency (analyses/term_frequency.py) -----------------------------------------------


def plot_accuracy_vs_frequency(acc: pd.DataFrame, path: str | os.PathLike, task: str, shots: int) -> Path:
    """Accuracy per x1 against its frequency in the data seen (log x), one panel per model in size
    order, coloured by checkpoint (later darker). `acc` has the term_frequency schema."""
    plt = _pyplot()
    acc = acc[(acc["task"] == task) & (acc["shots"] == shots)]
    models = acc.drop_duplicates("model").sort_values("params")["model"].tolist()
    fig, axes = plt.subplots(1, max(1, len(models)), figsize=(3.2 * max(1, len(models)), 3.4), sharey=True,
                             squeeze=False)
    steps = sorted(acc["step"].unique())
    cmap = plt.get_cmap("plasma_r")
    for ax, model in zip(axes[0], models):
        for i, step in enumerate(steps):
            g = acc[(acc["model"] == model) & (acc["step"] == step)].sort_values("frequency")
            if len(g):
                ax.scatter(g["frequency"] + 1, g["accuracy"], s=10, color=cmap(0.15 + 0.75 * i / max(1, len(steps) - 1)),
                           label=f"step {step}")
        ax.set_xscale("log")
        _finish(ax, "frequency of x1 in the data seen + 1", "accuracy" if ax is axes[0][0] else "", model,
                legend=ax is axes[0][-1])
    fig.suptitle(f"{task}, {shots}-shot: accuracy against operand frequency")
    return _save(fig, path)


def plot_gap_over_training(gap: pd.DataFrame, path: str | os.PathLike, shots: int) -> Path:
    """Delta (accuracy of the 10 most frequent x1 minus the 10 least) against step, one line per
    model, one panel per task, with the bootstrap interval. `gap` has the term_frequency_gap schema."""
    plt = _pyplot()
    gap = gap[gap["shots"] == shots]
    tasks = sorted(gap["task"].unique())
    fig, axes = plt.subplots(1, max(1, len(tasks)), figsize=(4.4 * max(1, len(tasks)), 3.6), squeeze=False)
    colors = size_colors(gap) if len(gap) else {}
    for ax, task in zip(axes[0], tasks):
        for model in colors:
            g = gap[(gap["model"] == model) & (gap["task"] == task)].sort_values("step")
            ax.plot(g["step"], g["delta"], marker="o", color=colors[model], label=model)
            ax.fill_between(g["step"], g["delta_low"], g["delta_high"], color=colors[model], alpha=0.15)
        ax.axhline(0, color="grey", lw=0.8)
        _finish(ax, "checkpoint step", "Δ accuracy (top 10 − bottom 10 x1)", f"{task}, {shots}-shot")
    return _save(fig, path)


def plot_eval_over_training(table: pd.DataFrame, path: str | os.PathLike, task: str, metric: str) -> Path:
    """One harness metric (the `evaluate` schema) against step, one line per model, with its stderr
    as a band. Step 0 sits at the left edge of a symlog axis, as Pythia's early steps are dense."""
    plt = _pyplot()
    rows = table[(table["task"] == task) & (table["metric"] == metric)]
    fig, ax = plt.subplots(figsize=(6.4, 4))
    colors = size_colors(rows)
    for model in colors:
        g = rows[rows["model"] == model].sort_values("step")
        ax.plot(g["step"], g["value"], marker="o", ms=3, color=colors[model], label=f"{model} ({g['params'].iloc[0]:,})")
        ax.fill_between(g["step"], g["value"] - g["stderr"].fillna(0), g["value"] + g["stderr"].fillna(0),
                        color=colors[model], alpha=0.15, lw=0)
    ax.set_xscale("symlog", linthresh=1)
    _finish(ax, "step", f"{metric} ({rows['filter'].iloc[0] if len(rows) else ''})", f"{task} over training")
    return _save(fig, path)
