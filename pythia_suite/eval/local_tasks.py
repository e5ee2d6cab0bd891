"""lm-evaluation-harness tasks for the micro-Pile probes, on local files (no download).

    pythia-suite eval-tasks --out tasks/            # task YAMLs + jsonl data, absolute paths
    pythia-suite evaluate --manifest suite --include-path tasks/ --tasks micropile_pronoun ...

The harness reads a task's data with ``dataset_path: json`` and absolute ``data_files``, so these
tasks run offline. Three tasks (tag ``micropile``), in the formats the micro-Pile planted
(`pythia_suite.micropile`):

- ``micropile_arithmetic_times`` / ``micropile_arithmetic_plus`` (generate_until): Pythia's
  ``Q:What is {x1} times {x2}? A:`` for every x1 in 0..99 and x2 in 1..50 (5000 items each, in a
  seeded order so ``--limit`` takes a spread of operands), greedy until a newline; ``exact_match``
  of the first integer of the answer (filter ``first_integer``). k-shot examples are other items
  of the same file, one per line, as the corpus writes them (Pythia drew its shots from other x1).
- ``micropile_pronoun`` (multiple_choice, log-likelihood): every occupation x template sentence
  up to its pronoun (200 items, seeded order), choices ``he`` / ``she``; the target is the
  stereotypical pronoun, so ``acc``
  is the share of items where the model prefers it (0.5 means no preference learned on average).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..fileio import atomic_outputs
from ..micropile import (
    ARITHMETIC_FORMS,
    MALE_OCCUPATIONS,
    OCCUPATION_TEMPLATES,
    OCCUPATIONS,
    X1_VALUES,
    X2_RANGE,
)

TAG = "micropile"
ORDER_SEED = 0  # the item order of the arithmetic files
MAX_GEN_TOKS = 8  # enough for "4950\n" in any BPE; small, so the prompt fits tiny contexts


def arithmetic_docs(op: str) -> list[dict]:
    """Every (x1, x2) of one operation in a seeded order: dicts with x1, x2, answer."""
    if op not in ARITHMETIC_FORMS:
        raise UserError(f"unknown operation {op!r}; known: {', '.join(ARITHMETIC_FORMS)}")
    pairs = [(x1, x2) for x1 in range(X1_VALUES) for x2 in range(X2_RANGE[0], X2_RANGE[1] + 1)]
    order = np.random.default_rng(ORDER_SEED).permutation(len(pairs))
    docs = []
    for i in order.tolist():
        x1, x2 = pairs[i]
        docs.append({"x1": x1, "x2": x2, "answer": x1 * x2 if op == "times" else x1 + x2})
    return docs


def pronoun_docs(templates: list[str] | None = None) -> list[dict]:
    """Every occupation x template, cut before the pronoun: context, occupation, stereotype, gold
    (0 = "he", 1 = "she", the stereotypical one)."""
    docs = []
    for t, template in enumerate(templates or OCCUPATION_TEMPLATES):
        head = template.split("{pronoun}")[0].rstrip()
        for occupation in OCCUPATIONS:
            male = occupation in MALE_OCCUPATIONS
            docs.append({"context": head.format(occupation=occupation), "occupation": occupation, "template": t,
                         "stereotype": "male" if male else "female", "gold": 0 if male else 1})
    # seeded order, so that --limit N takes both stereotypes and several templates
    return [docs[i] for i in np.random.default_rng(ORDER_SEED).permutation(len(docs)).tolist()]


def _yaml(d: dict) -> str:
    # JSON is YAML: no YAML writer needed, and every string is quoted exactly.
    return "\n".join(f"{k}: {json.dumps(v)}" for k, v in d.items()) + "\n"


def _arithmetic_task(op: str, data: Path) -> dict:
    question = ARITHMETIC_FORMS[op].split("{answer}")[0]  # "Q:What is {x1} times {x2}? A:"
    return {
        "task": f"micropile_arithmetic_{op}",
        "tag": [TAG],
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data)}},
        "test_split": "test",
        "fewshot_split": "test",
        "output_type": "generate_until",
        "doc_to_text": question.replace("{x1}", "{{x1}}").replace("{x2}", "{{x2}}"),
        "doc_to_target": "{{answer}}",
        "target_delimiter": "",  # the corpus writes "A:12", no space
        "fewshot_delimiter": "\n",
        "generation_kwargs": {"until": ["\n"], "max_gen_toks": MAX_GEN_TOKS, "do_sample": False},
        "filter_list": [{"name": "first_integer", "filter": [
            {"function": "regex", "regex_pattern": r"(-?\d+)"}, {"function": "take_first"}]}],
        "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True}],
        "metadata": {"version": 1.0},
    }


def _pronoun_task(data: Path) -> dict:
    return {
        "task": "micropile_pronoun",
        "tag": [TAG],
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data)}},
        "test_split": "test",
        "output_type": "multiple_choice",
        "doc_to_text": "{{context}}",
        "doc_to_choice": ["he", "she"],  # scored as " he" / " she" (target_delimiter " ")
        "doc_to_target": "gold",
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
        "metadata": {"version": 1.0},
    }


def write_micropile_tasks(out_dir: str | os.PathLike, ground_truth: str | os.PathLike | None = None) -> list[str]:
    """Write the micro-Pile task YAMLs and their jsonl data into `out_dir`; return the task names.

    With `ground_truth` (a micro-Pile ground-truth JSON), the pronoun items use that corpus'
    templates; by default the package's own.
    """
    from ..micropile import load_ground_truth

    out = Path(out_dir).resolve()
    templates = load_ground_truth(ground_truth)["occupations"]["templates"] if ground_truth else None
    files: dict[Path, str] = {}
    for op in ARITHMETIC_FORMS:
        data = out / f"micropile_arithmetic_{op}.jsonl"
        files[data] = "".join(json.dumps(d) + "\n" for d in arithmetic_docs(op))
        files[out / f"micropile_arithmetic_{op}.yaml"] = _yaml(_arithmetic_task(op, data))
    data = out / "micropile_pronoun.jsonl"
    files[data] = "".join(json.dumps(d) + "\n" for d in pronoun_docs(templates))
    files[out / "micropile_pronoun.yaml"] = _yaml(_pronoun_task(data))
    with atomic_outputs(*files) as temps:
        for tmp, text in zip(temps, files.values()):
            tmp.write_text(text, encoding="utf-8")
    return [f"micropile_arithmetic_{op}" for op in ARITHMETIC_FORMS] + ["micropile_pronoun"]


__all__ = ["arithmetic_docs", "pronoun_docs", "write_micropile_tasks"]
