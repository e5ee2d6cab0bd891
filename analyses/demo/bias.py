"""The bias section of the demo: bias across training on the micro-Pile probes, and the pronoun-swap
intervention on the largest size, each child set against its parent."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analyses.bias import (
    analyse,
    evaluate,
    load_suite_tokenizer,
    micropile_probes,
    write_figures,
    write_micropile_lambada,
)
from pythia_suite.checkpoints import Suite
from pythia_suite.demo import Section
from pythia_suite.eval.bias_data import read_lambada

DEMO_PANELS = [("micropile_winobias", "average", "bias_loglik"), ("micropile_winobias", "average", "bias_generate"),
               ("micropile_crows", "gender", "pct_stereotype"), ("lambada", "all", "loss_per_token")]


DEMO_BUDGET_S = 45  # training seconds the demo may spend on the 21% run


def _value(table: pd.DataFrame, model: str, step: int, bench: str, subset: str, metric: str) -> float:
    sel = table[(table["model"] == model) & (table["step"] == step) & (table["benchmark"] == bench)
                & (table["subset"] == subset) & (table["metric"] == metric)]
    return float(sel["value"].iloc[0]) if len(sel) else float("nan")


def section(ctx):
    """Bias across training on the micro-Pile probes, and the pronoun-swap intervention on the
    largest size from the last 7% (and 21% when the 7% run says it fits the budget)."""
    import time

    from pythia_suite.intervention import NoOpTransform, run_intervention

    suite = Suite.load(ctx.manifest)
    base = [m for m in suite.models() if not suite.model_info(m).get("intervention")]
    largest = max(base, key=suite.params)
    notes, children = [], []
    for frac, budget in ((0.07, None), (0.21, DEMO_BUDGET_S)):
        name = f"{largest}-swap{round(frac * 100)}"
        if budget is not None and children and name not in suite.models():
            est = children[0][2] * 3  # 21% is three times the steps of 7%
            if est > budget:
                notes.append(f"- The 21% intervention was skipped: estimated {est:.0f} s of training "
                             f"(three times the 7% run) is over the demo's {budget} s budget.")
                continue
        t = time.perf_counter()
        ctx.log(f"      intervention {name}: pronoun swap on the last {frac:.0%} of the steps")
        try:
            run_intervention(str(ctx.suite_dir / largest), name, from_fraction=frac, device=ctx.preset.device,
                             progress=ctx.progress)
        except NoOpTransform as e:  # too few pronouns in so few steps: say so instead of a child = parent
            notes.append(f"- The {frac:.0%} intervention was not trained: {e}.")
            continue
        children.append((name, frac, time.perf_counter() - t))
        suite = Suite.load(ctx.manifest)
    tok = load_suite_tokenizer(suite, None)
    truth = ctx.ground_truth()
    items, pairs = micropile_probes(truth)
    probes = {"items": items, "pairs": pairs}
    lambada = read_lambada(write_micropile_lambada(ctx.corpus, truth, ctx.out / "bias" / "micropile_lambada.jsonl",
                                                   n=32 if ctx.preset_name == "tiny" else 128))
    final = max(suite.steps(largest))
    every = ctx.preset.checkpoint_every
    kw = dict(probes=probes, lambada=lambada, device=ctx.preset.device, progress=ctx.progress)
    # the parent at its multiples of checkpoint_every, the interventions at all their own steps
    # (their earlier steps are the parent's), the other sizes at the end
    parent_steps = [s for s in suite.steps(largest) if s % every == 0 and s > 0 or s == final]
    starts = [suite.model_info(c[0])["intervention"]["resume_step"] for c in children]
    table = pd.concat([evaluate(suite, tok, models=[largest], steps=sorted(set(parent_steps + starts)), **kw)]
                      + [evaluate(suite, tok, models=[c[0]], **kw) for c in children]
                      + [evaluate(suite, tok, models=[m for m in base if m != largest], steps=[final], **kw)],
                      ignore_index=True)
    tables = analyse(suite, tok, ctx.table("bias"), table=table, config={"preset": ctx.preset_name})
    figs = write_figures(tables, ctx.out / "figures")
    lines = [f"Probes from the micro-Pile ground truth (planted pronoun skew {truth['occupations']['pronoun_skew']}): "
             f"{len(items)} WinoBias-style items (pro/anti by the planted stereotype), {len(pairs)} CrowS-style he/she "
             f"pairs; LAMBADA-style: {len(lambada)} background documents of the corpus (seen once in training), last "
             "word greedy and its loss. A model that learnt the stereotype has bias > 0 and pct_stereotype > 0.5.", "",
             "| model | step | WinoBias-style bias (loglik) | bias (generate) | CrowS-style pct_stereotype | "
             "LAMBADA-style acc | loss/token |", "|---|---:|---:|---:|---:|---:|---:|"]
    rows = [(m, final) for m in sorted(base, key=suite.params)]
    for name, _, _ in children:
        rec = suite.model_info(name)["intervention"]
        rows += [(largest, rec["start_step"]) if rec["start_step"] in suite.steps(largest) else (name, rec["start_step"]),
                 (name, final)]
    for m, st in dict.fromkeys(rows):
        v = [_value(table, m, st, *p) for p in DEMO_PANELS[:3]] + [_value(table, m, st, "lambada", "all", "acc"),
                                                                    _value(table, m, st, "lambada", "all", "loss_per_token")]
        lines.append(f"| {m} | {st} | " + " | ".join(f"{x:+.3f}" if i < 2 else f"{x:.3f}" for i, x in enumerate(v)) + " |")
    lines += [""] + notes
    for name, frac, secs in children:
        rec = suite.model_info(name)["intervention"]
        lines += _intervention_lines(table, tables.get("bias_transform_counts"), largest, name, frac, rec, final, secs)
    names = ["bias", "bias_comparison", "bias_transform_counts"]
    return Section("Gender bias and the pronoun-swap intervention", lines, figs,
                   [t for t in map(ctx.table, names) if t.exists()], notes=tables["bias"].attrs["notes"])


def _intervention_lines(table, counts, parent, name, frac, rec, final, secs) -> list[str]:
    """Sentences from the numbers: what changed between parent and intervention at the final step."""
    out = [f"- {name}: pronoun swap from step {rec['start_step']} to {final} (the last {frac:.0%}; resumed from "
           f"{parent} step {rec['resume_step']}); {secs:.1f} s of training in this invocation."]
    if counts is not None:
        c = counts[counts["model"] == name]
        src = c[c["role"] == "source"]
        out.append(f"  Transformed batches: {int(src['whole_word_before'].sum())} whole-word masculine forms "
                   f"replaced, {int(src['whole_word_after'].sum())} left after the transform, "
                   f"{int(src['inside_word_before'].sum())} inside longer words left alone; "
                   f"{int(c.loc[c['role'] == 'unmapped', 'whole_word_before'].sum())} occurrences of forms whose "
                   "replacement cannot be written in the tokenizer were left as they are.")
    for bench, subset, metric in DEMO_PANELS + [("lambada", "all", "acc")]:
        a, b = _value(table, parent, final, bench, subset, metric), _value(table, name, final, bench, subset, metric)
        if np.isnan(a) or np.isnan(b):
            continue
        word = "higher" if b > a else "lower" if b < a else "equal"
        out.append(f"  {bench} {subset} {metric}: {b:.4f} against the parent's {a:.4f} at step {final} ({word}, "
                   f"{b - a:+.4f}).")
    return out
