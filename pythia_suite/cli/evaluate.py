"""`pythia-suite evaluate` and `eval-tasks`: lm-evaluation-harness across the checkpoint index."""

from __future__ import annotations

from .common import add_cluster_options, add_skip_missing, command


def cmd_evaluate(args) -> int:
    from ..eval.evaluate import EvalSettings, evaluate_suite

    settings = EvalSettings(
        tasks=args.tasks, include_path=args.include_path or [], models=args.models, steps=args.steps,
        num_fewshot=args.num_fewshot, limit=args.limit, batch_size=args.batch_size, device=args.device,
        online=args.online, bootstrap_iters=args.bootstrap_iters, skip_missing=args.skip_missing,
    )
    from ..engines import maybe_client

    with maybe_client(args.workers, args.scheduler, args.scheduler_timeout) as client:
        out = evaluate_suite(args.manifest, args.out, settings, per_item=args.per_item, fresh=args.fresh,
                             progress=not args.quiet, client=client)
    from ..notes import print_notes
    from ..selection import skipped_note
    from ..tables import read_table, read_table_meta

    table = read_table(out)
    print(f"wrote {out} ({len(table)} rows: {table['model'].nunique()} model(s) x {table['step'].nunique()} step(s) "
          f"x {table['task'].nunique()} task(s))" + (f" and {args.per_item}" if args.per_item else ""))
    meta = read_table_meta(out)
    if note := skipped_note(meta.get("config", {}).get("skipped_checkpoints") or []):
        print(f"  {note}")
    print_notes(meta.get("notes") or [])
    return 0


def cmd_eval_tasks(args) -> int:
    from ..eval.local_tasks import write_micropile_tasks

    names = write_micropile_tasks(args.out, ground_truth=args.ground_truth)
    print(f"wrote {len(names)} tasks to {args.out}: {', '.join(names)} (use --include-path {args.out})")
    return 0


def add_evaluate(subparsers) -> None:
    p = command(subparsers, "evaluate", "run lm-evaluation-harness tasks on every model x step of a suite, into one table",
             "pythia-suite evaluate --manifest suite --include-path tasks/ --tasks micropile_pronoun "
             "--out eval.parquet --per-item eval_items.parquet", cmd_evaluate)
    p.epilog += ("\n\nNeeds the extra `eval` (pip install 'pythia-suite[eval]'). Offline unless --online: task data "
                 "must be local\n(`pythia-suite eval-tasks` writes the micro-Pile tasks). A rerun skips finished "
                 "(model, step, task) cells,\nkept in OUT.parts/.")
    p.add_argument("--manifest", required=True, help="checkpoints_manifest.json or its folder")
    p.add_argument("--tasks", nargs="+", required=True, help="harness task, group or tag names")
    p.add_argument("--include-path", action="append", help="a folder of extra task YAMLs (repeatable)")
    p.add_argument("--models", nargs="+", help="models to evaluate (default: all of the manifest)")
    p.add_argument("--steps", nargs="+", type=int, help="steps to evaluate (default: every checkpoint)")
    p.add_argument("--num-fewshot", type=int, help="few-shot examples per prompt (default: each task's own)")
    p.add_argument("--limit", type=int, help="score only the first N items of each task")
    p.add_argument("--batch-size", type=int, default=16, help="requests per forward pass (default 16)")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, ...)")
    p.add_argument("--out", required=True, help="output table (.parquet), schema `evaluate`")
    p.add_argument("--per-item", help="per-item table (.parquet), schema `evaluate_items`")
    p.add_argument("--bootstrap-iters", type=int, default=100_000,
                   help="bootstrap resamples for stderrs of non-mean metrics such as perplexity (default 100000, "
                        "the harness'); 0 skips them")
    p.add_argument("--online", action="store_true", help="allow downloading task data and hub checkpoints")
    p.add_argument("--fresh", action="store_true", help="discard finished cells (OUT.parts/) and start over")
    add_skip_missing(p)
    add_cluster_options(p, "evaluate (one checkpoint per task)", "this package, lm-eval and the suite's files")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = command(subparsers, "eval-tasks", "write lm-evaluation-harness task YAMLs and data for the micro-Pile probes",
             "pythia-suite eval-tasks --out tasks/", cmd_eval_tasks)
    p.add_argument("--out", required=True, help="folder for the YAMLs and jsonl files (paths inside are absolute)")
    p.add_argument("--ground-truth", help="a micro-Pile ground truth JSON: use that corpus' sentence templates")
