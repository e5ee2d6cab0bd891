"""The training section of the demo: loss curves, final and held-out loss against size, read from
the suite's tidy logs; every sentence from the numbers."""

from __future__ import annotations

from dataclasses import asdict

import pandas as pd

from pythia_suite.checkpoints import Suite
from pythia_suite.demo import Section
from pythia_suite.plots import plot_final_loss, plot_loss_curves, plot_loss_with_validation
from pythia_suite.tables import write_table
from pythia_suite.train import read_train_log, read_val_log


def section(ctx, window: int = 20) -> Section:
    """Loss curves, final and held-out loss by size (training logs of the base models)."""
    log = read_train_log(ctx.suite_dir)
    log = log[log["model"].isin(Suite.load(ctx.manifest).without_interventions().models())]  # no bias interventions
    val = read_val_log(ctx.suite_dir)
    val = val[val["model"].isin(log["model"].unique())]
    write_table(log, ctx.table("train_log"), "train_log", config=asdict(ctx.preset), seeds={"init": ctx.preset.seed})
    write_table(val, ctx.table("validation_log"), "validation_log", config=asdict(ctx.preset),
                seeds={"init": ctx.preset.seed})
    final = (log.sort_values("step").groupby(["suite", "model", "params"], as_index=False)
             .apply(lambda g: pd.Series({"step": g["step"].max() + 1, "loss": g["loss"].tail(window).mean()}),
                    include_groups=False)
             .sort_values("params"))
    figs = [plot_loss_curves(log, ctx.figure("loss_curves")), plot_final_loss(final, ctx.figure("final_loss")),
            plot_loss_with_validation(log, val, ctx.figure("validation_loss"))]
    final["first_loss"] = final["model"].map(log.sort_values("step").groupby("model")["loss"].first())
    last_val = val.sort_values("step").groupby("model").tail(1).set_index("model")
    final["val_loss"] = final["model"].map(last_val["val_loss"]) if len(val) else float("nan")
    n_val = int(last_val["val_items"].iloc[0]) if len(val) else 0
    lines = [f"Final loss is the mean training loss of the last {window} steps; held-out loss is the loss at the "
             f"last checkpoint on the {n_val} items after the last trained step (never trained on).", "",
             "| model | params | first loss | final loss | held-out loss |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {r.model} | {r.params:,} | {r.first_loss:.3f} | {r.loss:.3f} | {r.val_loss:.3f} |"
              for r in final.itertuples()]
    ordered = final["loss"].is_monotonic_decreasing
    falls = (final["loss"] < final["first_loss"]).all()
    lines += ["", f"Every loss curve falls: {'yes' if falls else 'NO'}. "
              f"Larger models reach lower loss: {'yes' if ordered else 'NO'} "
              f"(order by final loss: {', '.join(final.sort_values('loss')['model'])})."]
    if len(val):
        gap = final["val_loss"] - final["loss"]
        lines.append(f"Held-out minus final training loss: {', '.join(f'{m} {g:+.3f}' for m, g in zip(final['model'], gap))}.")
    return Section("Training", lines, figs, [ctx.table("train_log"), ctx.table("validation_log")])
