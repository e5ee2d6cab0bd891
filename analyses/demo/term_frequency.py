"""The term-frequency section of the demo: term counts checked against the micro-Pile's planted truth,
then few-shot arithmetic against the first operand's frequency in the data seen."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analyses.term_frequency import (
    MAX_NEW_TOKENS,
    SHOTS,
    TASKS,
    X1_VALUES,
    build_prompts,
    run,
    write_figures,
)
from pythia_suite.demo import Section

# Per preset: x2 values, k values (those that fit the context are run) and checkpoints per model.
# Pythia asked every x2 in 1..50 at 6 checkpoints; the CPU presets ask fewer, to stay within budget.
DEMO = {"tiny": (range(1, 2), (0, 2), 3), "default": (range(1, 4), (0, 2, 4), 4), "gpu": (range(1, 51), SHOTS, 6)}


def planted_check(ctx, tok) -> tuple[list[str], bool]:
    """Count the micro-Pile's documents (each one item) and compare with the planted ground truth:
    every number 0..99 (as x1, x2 or answer) and x1 per form ("What is {x1} times")."""
    import json

    from pythia_suite.data.counts import (
        count_numbers,
        count_sequences,
        digit_tables,
        parse_terms,
    )

    truth = ctx.ground_truth()["arithmetic"]
    eod = tok.token_to_id("<|endoftext|>")
    docs = [json.loads(line)["text"] for line in ctx.corpus.read_text(encoding="ascii").splitlines()]
    stream = [eod]
    for e in tok.encode_batch(docs, add_special_tokens=False):
        stream += e.ids + [eod]  # the end-of-text token is no digit and in no term: documents stay apart
    row = np.array([stream], dtype=np.int64)
    numbers = [str(x) for x in X1_VALUES]
    got = count_numbers(row, digit_tables(tok), numbers)[0]
    ok_numbers = got.tolist() == truth["number_counts"]
    lines = [f"Planted numbers: token-level counts of 0..99 over the {len(docs):,} corpus documents "
             f"{'equal' if ok_numbers else 'DIFFER FROM'} the ground truth's "
             f"({int(got.sum()):,} occurrences as x1, x2 or answer; "
             f"{int((got != np.array(truth['number_counts'])).sum())} of 100 numbers differ)."]
    ok = ok_numbers
    for task in TASKS:
        terms = parse_terms([f"What is {x} {task}" for x in X1_VALUES], tok)
        got = count_sequences(row, [t.ids for t in terms])[0]
        same = got.tolist() == truth["x1_counts"][task]
        ok &= same
        lines.append(f"Planted x1 of `{task}`: counts of the token sequence \"What is {{x1}} {task}\" "
                     f"{'equal' if same else 'DIFFER FROM'} the ground truth's for every x1 "
                     f"({int(got.sum()):,} questions).")
    return lines, ok


def _demo_steps(suite, model: str, n: int) -> list[int]:
    """n checkpoints spread over the schedule (the nearest saved to 1/n, 2/n, ... of the last step)."""
    steps = suite.steps(model)
    picks = {suite.resolve(model, round(steps[-1] * (i + 1) / n), nearest=True).step for i in range(n)}
    return sorted(picks)


def section(ctx):
    """Counts checked against the planted truth, then few-shot arithmetic against x1's frequency."""
    from pythia_suite.checkpoints import Suite
    from pythia_suite.data.build import load_tokenizer

    suite = Suite.load(ctx.manifest).without_interventions()  # the bias step adds interventions
    tok_path = ctx.data.with_name(ctx.data.name + ".tokenizer.json")
    tok = load_tokenizer(tok_path)
    lines, ok = planted_check(ctx, tok)
    if not ok:
        raise RuntimeError("term counts disagree with the micro-Pile's planted ground truth: " + " ".join(lines))
    x2, wanted, n_checkpoints = DEMO.get(ctx.preset_name, DEMO["default"])
    context = min(suite.model_info(m)["config"]["max_position_embeddings"] for m in suite.models())
    probe = build_prompts(list(TASKS), wanted, x2)
    longest = probe.assign(n=[len(e.ids) for e in tok.encode_batch(probe["prompt"].tolist(), add_special_tokens=False)]).groupby("shots")["n"].max()
    shots = [k for k in wanted if longest[k] + MAX_NEW_TOKENS - 1 <= context]
    skipped = [k for k in wanted if k not in shots]
    steps = sorted({s for m in suite.models() for s in _demo_steps(suite, m, n_checkpoints)})
    steps = [s for s in steps if all(s in suite.steps(m) for m in suite.models())]
    tables = run(suite, ctx.data, ctx.table("term_frequency"), steps=steps, shots=shots, x2_values=x2,
                 tokenizer=tok_path, device=ctx.preset.device, progress=ctx.progress,
                 config={"x2": [x2.start, x2.stop - 1], "shots": shots, "steps": steps})
    acc, gap = tables["term_frequency"], tables["term_frequency_gap"]
    k = max(shots)
    figs = write_figures(tables, ctx.out / "figures")
    seen = tables["term_counts"]
    last = seen[seen["step"] == seen["step"].max()]
    truth_total = sum(ctx.ground_truth()["arithmetic"]["number_counts"])
    lines += [f"Over the training order, checkpoint step {int(last['step'].iloc[0])} has seen "
              f"{int(last['count_seen'].sum()):,} occurrences of 0..99 of the corpus' {truth_total:,} (the rest lie "
              "in items no step trains on, in the tokens dropped at packing, or are cut by item boundaries).", "",
              f"Questions: x1 in 0..99, x2 in {x2.start}..{x2.stop - 1}, tasks {', '.join(TASKS)}, k in "
              f"{', '.join(map(str, shots))}" + (f" (k = {', '.join(map(str, skipped))} do not fit the models' context "
                                                 f"of {context} tokens)" if skipped else "") +
              f"; checkpoints {', '.join(map(str, steps))}. Greedy until a newline, at most {MAX_NEW_TOKENS} tokens.", "",
              f"Δ = accuracy of the 10 most frequent x1 minus the 10 least frequent (as of each checkpoint), {k}-shot, "
              "with a 95% bootstrap interval:", "",
              "| model | task | " + " | ".join(f"step {s}" for s in steps) + " |",
              "|---|---|" + "---:|" * len(steps)]
    sub = gap[gap["shots"] == k]
    for (model, task), g in sub.sort_values(["params", "task"]).groupby(["model", "task"], sort=False):
        cells = {r.step: f"{r.delta:+.2f} [{r.delta_low:+.2f}, {r.delta_high:+.2f}]" for r in g.itertuples()}
        lines.append(f"| {model} | {task} | " + " | ".join(cells.get(s, "") for s in steps) + " |")
    lines += ["", _reading(sub, acc[acc["shots"] == k])]
    names = ["term_frequency", "term_frequency_answers", "term_frequency_gap", "term_frequency_counts"]
    return Section("Term frequency", lines, figs, [t for t in map(ctx.table, names) if t.exists()],
                   notes=acc.attrs["notes"])


def _reading(gap: pd.DataFrame, acc: pd.DataFrame) -> str:
    """One sentence from the numbers: overall accuracy, and where the interval of Δ excludes 0."""
    final = gap[gap["step"] == gap["step"].max()]
    above = final[final["delta_low"] > 0]
    below = final[final["delta_high"] < 0]
    return (f"Mean accuracy over every question and checkpoint: {acc['accuracy'].mean():.3f}. At the last checkpoint, "
            f"Δ's interval lies above 0 for {len(above)} and below 0 for {len(below)} of {len(final)} model x task "
            f"pairs" + (f" ({', '.join(f'{r.model} {r.task}' for r in above.itertuples())} above)" if len(above) else "")
            + ".")
