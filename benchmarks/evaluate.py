"""`pythia-suite evaluate` against a shell loop of `lm_eval` commands, one process per checkpoint.

    .venv/bin/python benchmarks/evaluate.py                     # 5 checkpoints x 2 tasks x 200 items
    .venv/bin/python benchmarks/evaluate.py --size micro-200k --checkpoints 6 --limit 100

Both sides run the same task grid on the same checkpoint folders, offline: the micro-Pile tasks
`micropile_pronoun` (multiple choice, log-likelihood) and `micropile_arithmetic_times`
(generate_until, greedy until a newline), the first `--limit` items of each, batch size 16.

- Ours: one `pythia-suite evaluate` process over the whole grid (harness imported, TaskManager
  built and each task's data loaded once; every checkpoint scored by our `GPTNeoX` through
  `SuiteLM`).
- Theirs: what users do today, `for ck in ...; do lm_eval --model hf --model_args
  pretrained=FOLDER --tasks ... --include_path TASKS --log_samples ...; done` in one bash process
  (each `lm_eval` imports the harness, indexes its task registry, loads the data and the model
  through transformers).

Prints the wall time of each, the ratio (target > 2x), and the agreement per item: the largest
difference between the gold choice's log-likelihood in `lm_eval`'s samples files and in our
per-item table (target <= 1e-4), the pronoun accuracy of both per checkpoint, and how many
arithmetic responses differ. A suite is trained first (not timed): `--size` on a 300 kB
micro-Pile, 64-token context, checkpoints every 4 steps.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd

TASKS = ["micropile_pronoun", "micropile_arithmetic_times"]


def make_suite(root: Path, size: str, steps: int) -> Path:
    from pythia_suite.data import build
    from pythia_suite.micropile import MicroPileConfig, generate
    from pythia_suite.train import TrainSettings, train

    generate(root / "mp.jsonl", replace(MicroPileConfig(), target_bytes=300_000, canaries_per_repeat=0,
                                        arithmetic_fraction=0.2, occupation_fraction=0.2))
    build([root / "mp.jsonl"], root / "data" / "mp", seq_len=64, vocab_size=512, seed=1, progress=False)
    train(root / "data" / "mp", root / "suite", TrainSettings(sizes=[size], steps=steps, batch_size=8,
                                                              checkpoint_every=4, suite="bench"), progress=False)
    return root / "suite"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="micro-200k")
    ap.add_argument("--checkpoints", type=int, default=5)
    ap.add_argument("--limit", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1,
                    help="OMP/torch threads of each side's process (default 1: on a shared 2-core machine more "
                         "threads than free cores make every op spin-wait, which hides what is measured)")
    args = ap.parse_args()
    env = dict(os.environ, HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        steps = 4 * (args.checkpoints - 1)
        suite = make_suite(root, args.size, steps)
        ckpt_steps = list(range(0, steps + 1, 4))
        subprocess.run([str(bin_dir / "pythia-suite"), "eval-tasks", "--out", str(root / "tasks")], check=True,
                       capture_output=True, env=env)
        out = root / "ours" / "eval.parquet"
        ours_cmd = [str(bin_dir / "pythia-suite"), "evaluate", "--manifest", str(suite), "--tasks", *TASKS,
                    "--include-path", str(root / "tasks"), "--steps", *map(str, ckpt_steps), "--limit",
                    str(args.limit), "--batch-size", str(args.batch_size), "--out", str(out),
                    "--per-item", str(out.with_name("items.parquet")), "--quiet"]
        t = time.perf_counter()
        subprocess.run(ours_cmd, check=True, env=env, capture_output=True)
        ours_s = time.perf_counter() - t

        loop = "; ".join(
            shlex.join([str(bin_dir / "lm_eval"), "--model", "hf", "--model_args",
                        f"pretrained={suite / args.size / f'step{s}'}", "--tasks", ",".join(TASKS),
                        "--include_path", str(root / "tasks"), "--limit", str(args.limit), "--batch_size",
                        str(args.batch_size), "--log_samples", "--output_path", str(root / "theirs" / f"step{s}")])
            for s in ckpt_steps)
        t = time.perf_counter()
        subprocess.run(["bash", "-c", f"set -e; {loop}"], check=True, env=env, capture_output=True)
        theirs_s = time.perf_counter() - t

        table = pd.read_parquet(out)
        items = pd.read_parquet(out.with_name("items.parquet"))
        worst, acc_rows, differing = 0.0, [], 0
        for s in ckpt_steps:
            folder = root / "theirs" / f"step{s}"
            samples = {task: [json.loads(x) for x in next(folder.rglob(f"samples_{task}_*.jsonl")).read_text().splitlines()]
                       for task in TASKS}
            results = json.loads(next(folder.rglob("results_*.json")).read_text())["results"]
            mine = items[items["step"] == s]
            pron = mine[mine["task"] == TASKS[0]].set_index("doc_id")
            for x in samples[TASKS[0]]:
                worst = max(worst, abs(float(x["filtered_resps"][int(x["target"])][0]) - pron.loc[x["doc_id"], "loglikelihood"]))
            arith = mine[mine["task"] == TASKS[1]].set_index("doc_id")["response"]
            differing += sum(str(x["filtered_resps"][0]) != arith[x["doc_id"]] for x in samples[TASKS[1]])
            value = lambda task, m: table[(table["step"] == s) & (table["task"] == task) & (table["metric"] == m)]["value"].item()  # noqa: E731
            acc_rows.append((s, value(TASKS[0], "acc"), results[TASKS[0]]["acc,none"],
                             value(TASKS[1], "exact_match"), results[TASKS[1]]["exact_match,first_integer"]))

    import lm_eval
    import torch
    import transformers

    cells = len(ckpt_steps) * len(TASKS)
    print(f"evaluate vs a shell loop of lm_eval (lm-eval {lm_eval.__version__}, transformers {transformers.__version__}, "
          f"torch {torch.__version__}); {args.size}, {len(ckpt_steps)} checkpoints x {len(TASKS)} tasks x {args.limit} "
          f"items, batch {args.batch_size}, cpu, {args.threads} thread(s) per process")
    print(f"ours   (pythia-suite evaluate, one process): {ours_s:7.1f} s  ({ours_s / cells:.1f} s/cell)")
    print(f"theirs (lm_eval per checkpoint, bash loop) : {theirs_s:7.1f} s  ({theirs_s / cells:.1f} s/cell)")
    print(f"ratio theirs/ours: {theirs_s / ours_s:.2f}x  (target > 2x)")
    print(f"max |log-likelihood difference| per item ({TASKS[0]}, gold choice): {worst:.2e}  (target <= 1e-4)")
    print(f"arithmetic responses that differ: {differing} of {len(ckpt_steps) * args.limit}")
    print("step  pronoun acc ours / lm_eval   arithmetic exact_match ours / lm_eval")
    for s, a, b, c, d in acc_rows:
        print(f"{s:>4}  {a:.4f} / {b:.4f}                {c:.4f} / {d:.4f}")


if __name__ == "__main__":
    main()
