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
    import numpy as np

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
