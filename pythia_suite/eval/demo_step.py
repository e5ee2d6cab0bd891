"""The demo's harness step: one lm-evaluation-harness task across the micro suite's checkpoints.

Called from `pythia_suite.demo` after the analyses; contributes nothing when lm-eval is not
installed (extra `eval`). The task is ``micropile_pronoun`` (written by `write_micropile_tasks`
into OUT/tasks/): the share of occupation sentences where a model prefers the stereotypical
pronoun, which the micro-Pile planted at probability `pronoun_skew`.
"""

from __future__ import annotations

import importlib.util

TASK, METRIC = "micropile_pronoun", "acc"


def harness_sections(ctx) -> list:
    """[Section] with the table, the figure and sentences made from the numbers; [] without lm-eval."""
    if importlib.util.find_spec("lm_eval") is None:
        ctx.log("[5/5] harness: skipped (lm-eval not installed; pip install 'pythia-suite[eval]')")
        return []
    from ..demo import Section
    from ..plots import plot_eval_over_training
    from .evaluate import EvalSettings, evaluate_suite
    from .local_tasks import write_micropile_tasks

    ctx.log(f"[5/5] harness: {TASK} at every other checkpoint")
    tasks = ctx.out / "tasks"
    if not (tasks / f"{TASK}.yaml").is_file():
        write_micropile_tasks(tasks, ground_truth=ctx.ground_truth_path)
    import time

    import pandas as pd

    from ..checkpoints import Suite

    t = time.perf_counter()
    out = ctx.table("evaluate")
    # every other checkpoint of the schedule and the last: the curve's shape at half the cost
    steps = Suite.load(ctx.manifest).steps(ctx.preset.sizes[0])
    steps = sorted(set(steps[::2]) | {steps[-1]})
    settings = EvalSettings(tasks=[TASK], include_path=[str(tasks)], steps=steps, batch_size=64,
                            device=ctx.preset.device)
    evaluate_suite(ctx.manifest, out, settings, progress=ctx.progress)
    table = pd.read_parquet(out)
    rows = table[(table["task"] == TASK) & (table["metric"] == METRIC)].sort_values(["params", "step"])
    fig = plot_eval_over_training(table, ctx.figure("evaluate_pronoun"), TASK, METRIC)
    truth = ctx.ground_truth()["occupations"]
    first, last = rows.groupby("model", sort=False).head(1), rows.groupby("model", sort=False).tail(1)
    n = int(rows["n"].iloc[0])
    lines = [f"lm-evaluation-harness task `{TASK}` ({n} occupation sentences cut before the pronoun, choices "
             f"he/she; `{METRIC}` = share where the model gives the stereotypical pronoun the higher "
             f"log-likelihood), run by `pythia-suite evaluate` on {len(rows)} checkpoints. The corpus planted the "
             f"stereotypical pronoun with probability {truth['pronoun_skew']}.", "",
             "| model | params | acc at step 0 | final step | acc at final step | ± stderr |", "|---|---:|---:|---:|---:|---:|"]
    for f, l in zip(first.itertuples(), last.itertuples()):
        lines.append(f"| {l.model} | {l.params:,} | {f.value:.3f} | {l.step} | {l.value:.3f} | {l.stderr:.3f} |")
    best = last.loc[last["value"].idxmax()]
    lines += ["", f"Highest final {METRIC}: {best['model']} ({best['value']:.3f}); final {METRIC} above 0.5 for "
              f"{int((last['value'] > 0.5).sum())} of {len(last)} models.",
              f"\n_harness evaluation: {time.perf_counter() - t:.0f} s._"]
    return [Section("Harness evaluation", lines, [fig], [out])]
