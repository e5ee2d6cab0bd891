"""The harness section of the demo: one lm-evaluation-harness task across the micro suite's
checkpoints, through `pythia-suite evaluate`'s library function.

Contributes nothing (None) when lm-eval is not installed (extra `eval`). The task is
``micropile_pronoun`` (written by `write_micropile_tasks` into OUT/tasks/): the share of
occupation sentences where a model prefers the stereotypical pronoun, which the micro-Pile
planted at probability `pronoun_skew`.
"""

from __future__ import annotations

import importlib.util


from pythia_suite.checkpoints import Suite
from pythia_suite.demo import Section

TASK, METRIC = "micropile_pronoun", "acc"


def section(ctx) -> Section | None:
    """The table, the figure and sentences made from the numbers; None without lm-eval."""
    if importlib.util.find_spec("lm_eval") is None:
        ctx.log("      skipped: lm-eval is not installed (pip install 'pythia-suite[eval]')")
        return None
    from pythia_suite.eval.evaluate import EvalSettings, evaluate_suite
    from pythia_suite.eval.local_tasks import write_micropile_tasks
    from pythia_suite.plots import plot_eval_over_training
    from pythia_suite.tables import read_table

    ctx.log(f"      {TASK} at every other checkpoint")
    tasks = ctx.out / "tasks"
    if not (tasks / f"{TASK}.yaml").is_file():
        write_micropile_tasks(tasks, ground_truth=ctx.ground_truth_path)
    out = ctx.table("evaluate")
    # every other checkpoint of the schedule and the last: the curve's shape at half the cost
    steps = Suite.load(ctx.manifest).steps(ctx.preset.sizes[0])
    steps = sorted(set(steps[::2]) | {steps[-1]})
    settings = EvalSettings(tasks=[TASK], include_path=[str(tasks)], steps=steps, batch_size=64,
                            device=ctx.preset.device)
    evaluate_suite(ctx.manifest, out, settings, progress=ctx.progress)
    table = read_table(out)
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
              f"{int((last['value'] > 0.5).sum())} of {len(last)} models."]
    return Section("Harness evaluation", lines, [fig], [out], notes=table.attrs.get("notes", []))
