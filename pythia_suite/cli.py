"""The `pythia-suite` command: a thin layer over the library.

Every mistake a user can make ends in one line ``error: ...`` on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .errors import UserError


class Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one `error:` line (and exit 2) instead of a usage dump."""

    def error(self, message: str):  # type: ignore[override]
        print(f"error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        raise SystemExit(2)


def analysis_parser(name: str, doc: str, example: str, data: bool = True,
                    models_help: str = "models to evaluate (default: all)") -> Parser:
    """The parser of `pythia-suite <analysis>`, with the options every case study shares: which
    suite, (its data,) which models and steps."""
    p = Parser(prog=f"pythia-suite {name}", description=doc.split("\n\n")[0], epilog=f"example:\n  {example}",
               formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--manifest", required=True, help="checkpoints_manifest.json of the suite (or its folder)")
    if data:
        p.add_argument("--data", required=True, help="the suite's preshuffled dataset prefix")
    p.add_argument("--models", nargs="+", help=models_help)
    p.add_argument("--steps", nargs="+", type=int, help="checkpoint steps (default: every checkpoint)")
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:N (default cpu)")
    p.add_argument("--figures", metavar="DIR", help="also write the figures (PNG) into DIR, the same the demo shows")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    return p


def add_cluster_options(p: argparse.ArgumentParser, verb: str, needs: str, local: bool = True):
    """--workers N (a LocalCluster on 127.0.0.1; with `local` False the caller adds its own) and
    --scheduler ADDRESS (an existing Dask cluster), mutually exclusive, and --scheduler-timeout."""
    g = p.add_mutually_exclusive_group()
    if local:
        g.add_argument("--workers", type=int, help=f"{verb} on a local Dask cluster of N worker processes "
                       "(127.0.0.1); default: serially in this process")
    g.add_argument("--scheduler", help=f"{verb} on an existing Dask cluster, e.g. tcp://head:8786 (every worker "
                   f"needs {needs} at the same paths)")
    p.add_argument("--scheduler-timeout", type=float, default=30.0, help="seconds to wait for --scheduler (default 30)")
    return g


def require_parquet(*paths) -> None:
    """Tables are Parquet files: refuse any other output name up front."""
    for path in paths:
        if path is not None and Path(path).suffix != ".parquet":
            raise UserError(f"{path}: tables are written as .parquet files")


def _sub(subparsers, name: str, help: str, example: str, func) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        name,
        help=help,
        description=help,
        epilog=f"example:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(func=func)
    return p


# ---- data -------------------------------------------------------------------------------------


def cmd_data_build(args) -> int:
    from .data.build import build

    r = build(
        args.inputs,
        args.out,
        seq_len=args.seq_len,
        tokenizer=args.tokenizer,
        vocab_size=args.vocab_size,
        seed=args.seed,
        dtype=args.dtype,
        text_field=args.text_field,
        eod_token=args.eod_token,
        progress=not args.quiet,
        force=args.force,
    )
    meta = r.sidecar
    print(
        f"wrote {r.prefix}.bin/.idx/.json: {r.n_sequences} sequences of {meta['item_len']} tokens "
        f"({meta['dtype']}, vocab {meta['vocab_size']}) from {r.n_documents} documents; "
        f"{r.dropped_tokens} trailing tokens dropped; seed {meta['seed']}"
    )
    return 0


def cmd_data_batch(args) -> int:
    import numpy as np

    from .data.order import TrainingOrder, batch_fingerprint
    from .fileio import atomic_outputs

    if args.out is None and not args.text:
        raise UserError("give --out FILE.npy (the tokens) or --text (print them as text), or both")
    if args.out is not None and Path(args.out).suffix != ".npy":
        raise UserError(f"--out must name a .npy file, got {args.out}")
    order = TrainingOrder(args.prefix, batch_size=args.batch_size)
    end = args.step if args.end_step is None else args.end_step
    tokens = order.batches(args.step, end)
    steps = f"step {args.step}" if end == args.step else f"steps {args.step}..{end} (inclusive)"
    if args.out is not None:
        out = Path(args.out)
        with atomic_outputs(out) as (tmp,):
            with open(tmp, "wb") as f:
                np.save(f, np.ascontiguousarray(tokens))
        print(f"wrote {out}: {steps}, shape {tokens.shape}, dtype {tokens.dtype}")
    if args.text:
        first = args.step * order.batch_size
        texts = order.tokenizer.decode_batch(tokens.tolist(), skip_special_tokens=False)
        for i, text in enumerate(texts):
            print(f"--- sequence {first + i} (step {order.step_of(first + i)}) ---\n{text}")
    for s in range(args.step, end + 1):
        rows = tokens[(s - args.step) * order.batch_size : (s - args.step + 1) * order.batch_size]
        print(f"step {s} fingerprint {batch_fingerprint(rows)}")
    return 0


def cmd_data_verify(args) -> int:
    from .data.sidecar import verify

    report = verify(args.prefix)
    for line in report.checked:
        print(f"ok: {line}")
    if not report.ok:
        raise UserError(f"{report.prefix}: " + "; ".join(report.problems))
    return 0


def cmd_data_shard(args) -> int:
    from .data.shards import shard

    pieces = shard(args.prefix, args.out_dir, shard_bytes=args.shard_bytes)
    print(f"wrote {len(pieces)} shards to {args.out_dir} ({pieces[0].name} ... {pieces[-1].name}) with sha256 per shard")
    return 0


def cmd_data_unshard(args) -> int:
    from .data.shards import unshard

    prefix = unshard(args.source, args.out, force=args.force)
    print(f"wrote {prefix}.bin/.idx/.json")
    return 0


def add_data(subparsers) -> None:
    data = subparsers.add_parser("data", help="build, read, verify and shard indexed datasets",
                                 description="Build, read, verify and shard indexed datasets.")
    data.set_defaults(func=_help_of(data))
    sub = data.add_subparsers(title="commands", metavar="COMMAND", parser_class=Parser)

    p = _sub(sub, "build", "tokenize, pack and shuffle a corpus into PREFIX.bin/.idx/.json",
             "pythia-suite data build corpus.jsonl --out data/corpus --seq-len 128 --vocab-size 4096 --seed 1", cmd_data_build)
    p.add_argument("inputs", nargs="+", help=".txt (blank-line separated documents), .jsonl, .parquet, or a save_to_disk folder")
    p.add_argument("--out", required=True, help="output prefix")
    p.add_argument("--seq-len", type=int, required=True, help="context length; items hold seq-len + 1 tokens")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--tokenizer", help="a tokenizers tokenizer.json (e.g. Pythia's 20B tokenizer)")
    g.add_argument("--vocab-size", type=int, help="train a byte-level BPE of this size, saved as PREFIX.tokenizer.json")
    p.add_argument("--seed", type=int, default=1234, help="seed of the PCG64 shuffle (default 1234)")
    p.add_argument("--dtype", help="token dtype (default: uint16 if the vocabulary fits, else int32)")
    p.add_argument("--text-field", default="text", help="text field of .jsonl/.parquet/datasets inputs")
    p.add_argument("--eod-token", default="<|endoftext|>", help="end-of-document token")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--force", action="store_true", help="replace an existing dataset of the same prefix")

    p = _sub(sub, "batch", "write the tokens of step N (through M, inclusive) to a .npy file",
             "pythia-suite data batch pile/document --step 1000 --end-step 1001 --out batch.npy", cmd_data_batch)
    p.add_argument("prefix", help="dataset prefix (PREFIX.bin + PREFIX.idx)")
    p.add_argument("--step", type=int, required=True, help="first step (0-based optimizer step)")
    p.add_argument("--end-step", type=int, help="last step, inclusive (default: --step)")
    p.add_argument("--batch-size", type=int, help="sequences per step (default: the sidecar's if recorded; "
                   "1024, Pythia's, for Pythia files; otherwise 1024 with a warning)")
    p.add_argument("--out", help="write the tokens to this .npy, shape ((end-start+1)*batch, seq_len+1), "
                   "dtype as stored")
    p.add_argument("--text", action="store_true",
                   help="print every sequence as text (the data's tokenizer, from its sidecar) to stdout")

    p = _sub(sub, "verify", "check structure and recompute checksums against the sidecar",
             "pythia-suite data verify data/corpus", cmd_data_verify)
    p.add_argument("prefix", help="dataset prefix (PREFIX.bin + PREFIX.idx, and PREFIX.json if any)")

    p = _sub(sub, "shard", "split PREFIX.bin into NAME-NNNNN-of-NNNNN.bin pieces with sha256 each",
             "pythia-suite data shard data/corpus --out-dir shards/ --shard-bytes 5000000000", cmd_data_shard)
    p.add_argument("prefix", help="dataset prefix (PREFIX.bin + PREFIX.idx)")
    p.add_argument("--out-dir", required=True,
                   help="folder for NAME-NNNNN-of-NNNNN.bin, NAME.idx and NAME.shards.json (sha256 per piece)")
    p.add_argument("--shard-bytes", type=int, default=5_000_000_000,
                   help="bytes per piece (default 5e9, the default of Pythia's shard_memmap.py; "
                        "its preshuffled document.bin ships in 21 pieces of about 28.6 GB)")

    p = _sub(sub, "unshard", "join shards back into PREFIX.bin/.idx, checking each shard's sha256",
             "pythia-suite data unshard shards/document-00000-of-00020.bin --out pile/document", cmd_data_unshard)
    p.add_argument("source", help="the first shard, or DIR/NAME")
    p.add_argument("--out", required=True, help="output prefix")
    p.add_argument("--force", action="store_true", help="replace an existing dataset of the same prefix")


# ---- train -----------------------------------------------------------------------------------


def cmd_train(args) -> int:
    from .train import TrainSettings, train

    if args.resume_from is not None:
        if args.nproc_per_node is not None:
            raise UserError("an intervention (--resume-from) runs in one process; drop --nproc-per-node")
        return cmd_train_intervention(args)
    if args.data is None or args.out is None:
        raise UserError("train needs --data and --out (or --resume-from SUITE/MODEL@STEP for an intervention)")
    if args.name or args.transform or args.word_map or args.from_fraction is not None:
        raise UserError("--name, --transform, --word-map and --from-fraction go with --resume-from")

    if args.nproc_per_node is not None and "WORLD_SIZE" not in os.environ:
        from .distributed import Ranks, check_engine, launch

        # before launching: a rank's error would reach the user inside torchrun's report
        Ranks(world=max(1, args.nproc_per_node)).check_batch(args.batch_size, args.micro_batch)
        check_engine(args.parallel, args.zero_stage, args.zero_bucket)
        argv = list(args.argv)
        i = argv.index("--nproc-per-node") if "--nproc-per-node" in argv else None
        if i is not None:
            del argv[i : i + 2]
        else:
            argv = [a for a in argv if not a.startswith("--nproc-per-node=")]
        return launch(args.nproc_per_node, argv[1:])

    settings = TrainSettings(
        sizes=args.sizes, steps=args.steps, batch_size=args.batch_size, micro_batch=args.micro_batch,
        seed=args.seed, data_seed=args.data_seed, checkpoint_every=args.checkpoint_every, lr=args.lr,
        vocab_size=args.vocab_size, device=args.device, suite=args.suite, parallel=args.parallel,
        zero_stage=args.zero_stage, zero_bucket=args.zero_bucket, val_items=args.val_items,
    )
    rank0 = os.environ.get("RANK", "0") == "0"
    manifest = train(args.data, args.out, settings, progress=not args.quiet,
                     on_model_done=lambda summary: print(summary.line(), flush=True) if rank0 else None)
    if rank0:
        print(f"wrote {manifest}")
    return 0


def add_train(subparsers) -> None:
    from .distributed import ZERO_BUCKET
    from .sizes import MICRO_SIZES, PYTHIA_SIZES

    p = _sub(subparsers, "train", "train several model sizes on one training order, with checkpoints",
             "pythia-suite train --data data/corpus --out suite --sizes micro-50k micro-1m --steps 256 --batch-size 32",
             cmd_train)
    p.epilog += (f"\n\nsizes:\n  micro (CPU): {', '.join(MICRO_SIZES)}\n"
                 f"  pythia:      {', '.join(PYTHIA_SIZES)} (also as pythia-70m, ...)")
    p.add_argument("--data", help="preshuffled dataset prefix (from `data build`)")
    p.add_argument("--out", help="suite folder: SUITE/<model>/step<N>/ and the manifest")
    p.add_argument("--sizes", nargs="+", default=list(MICRO_SIZES), help="sizes to train (default: the micro family)")
    p.add_argument("--steps", type=int, help="optimizer steps (default: every full batch of the data)")
    p.add_argument("--batch-size", type=int, default=1024, help="sequences per step (default 1024, Pythia's)")
    p.add_argument("--micro-batch", type=int, help="sequences per forward pass (gradient accumulation)")
    p.add_argument("--seed", type=int, default=1234, help="initialization seed")
    p.add_argument("--data-seed", type=int, help="reorder the data with this seed (default: the file's order)")
    p.add_argument("--checkpoint-every", type=int, default=1000,
                   help="checkpoint every K steps, after 0 and powers of two below K, and at the end (default 1000)")
    p.add_argument("--lr", type=float, help="peak learning rate for every size (default: the size table's)")
    p.add_argument("--vocab-size", type=int, help="model vocabulary (default: the data sidecar's)")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, ...)")
    p.add_argument("--suite", help="suite name (default: the --out folder's name)")
    p.add_argument("--nproc-per-node", type=int, help="data-parallel over N processes of this machine (launches "
                   "torchrun; each rank trains a contiguous slice of every batch; gloo on CPU, nccl on CUDA)")
    p.add_argument("--parallel", choices=("ddp", "fsdp", "deepspeed"), default="ddp",
                   help="with several ranks: DDP (default), FSDP2 (parameters sharded, gathered for checkpoints) or "
                        "DeepSpeed ZeRO (optimizer state partitioned; the extra pythia-suite[deepspeed])")
    p.add_argument("--zero-stage", type=int, default=1,
                   help="--parallel deepspeed: ZeRO stage 1 (optimizer state partitioned, as Pythia trained) or 2 "
                        "(gradients too); default 1")
    p.add_argument("--zero-bucket", type=int, default=ZERO_BUCKET, metavar="ELEMENTS",
                   help="--parallel deepspeed: elements per gradient-reduce and all-gather bucket (default 5e8, Pythia's)")
    p.add_argument("--val-items", type=int,
                   help="held-out items right after the last trained step, never trained on; their loss at every "
                        "checkpoint goes to SUITE/<model>/val_log.parquet (default: one batch; 0: none)")
    p.add_argument("--quiet", action="store_true", help="no progress output (the final line per model stays)")
    g = p.add_argument_group("intervention: continue a trained model with transformed data (pythia_suite.intervention)")
    g.add_argument("--resume-from", metavar="SUITE/MODEL[@STEP]",
                   help="the parent model and the checkpoint to start from (or give --from-fraction)")
    g.add_argument("--from-fraction", type=float, help="transform the last FRACTION of the steps (0.07, 0.21 as Pythia)")
    g.add_argument("--transform", choices=("pronoun-swap", "word-map"), help="default pronoun-swap")
    g.add_argument("--word-map", help="JSON {\"word\": \"replacement\"} for --transform word-map (single tokens only)")
    g.add_argument("--name", help="name of the new model in the parent's manifest")
    g.add_argument("--tokenizer", help="the data's tokenizer.json (default: the manifest's)")
    p.epilog += ("\n\nintervention:\n  pythia-suite train --resume-from suite/micro-1m --from-fraction 0.07 "
                 "--transform pronoun-swap --name micro-1m-swap")


def cmd_train_intervention(args) -> int:
    from .intervention import run_intervention

    if not args.name:
        raise UserError("--resume-from needs --name for the new model")
    manifest = run_intervention(args.resume_from, args.name, args.transform or "pronoun-swap", args.word_map,
                                args.from_fraction, args.tokenizer,
                                args.device if args.device != "cpu" else None, progress=not args.quiet)
    print(f"wrote {args.name} into {manifest}")
    return 0


# ---- checkpoints ------------------------------------------------------------------------------


def cmd_checkpoints_list(args) -> int:
    import json

    from .checkpoints import Suite

    suite = Suite.load(args.manifest)
    frame = suite.frame(args.model)[["model", "step", "tokens_seen", "location", "sha256"]]
    rows = json.loads(frame.to_json(orient="records"))
    if args.format == "json":
        print(json.dumps(rows, indent=1))
        return 0
    width = max([len(r["model"]) for r in rows] + [5])
    print(f"{'model':<{width}}  {'step':>7}  {'tokens_seen':>15}  location")
    for r in rows:
        print(f"{r['model']:<{width}}  {r['step']:>7}  {r['tokens_seen']:>15}  {r['location']}")
    return 0


def cmd_checkpoints_verify(args) -> int:
    from .checkpoints import Suite, verify_suite

    suite = Suite.load(args.manifest)
    result = verify_suite(suite)
    print(f"checked {result.checked} local checkpoints; {result.remote} on the hub not checked (offline)")
    if result.problems:
        for line in result.problems[:-1]:
            print(f"problem: {line}", file=sys.stderr)
        raise UserError(f"{len(result.problems)} problem(s); last: {result.problems[-1]}")
    print("ok")
    return 0


def add_checkpoints(subparsers) -> None:
    ck = subparsers.add_parser("checkpoints", help="list and verify a suite's checkpoints",
                               description="List and verify a suite's checkpoints.")
    ck.set_defaults(func=_help_of(ck))
    sub = ck.add_subparsers(title="commands", metavar="COMMAND", parser_class=Parser)
    p = _sub(sub, "list", "list models x steps of a manifest (default: the real Pythia suite)",
             "pythia-suite checkpoints list suite/checkpoints_manifest.json --model micro-1m --format json",
             cmd_checkpoints_list)
    p.add_argument("manifest", nargs="?", help="checkpoints_manifest.json or its folder (default: the real Pythia suite)")
    p.add_argument("--model", help="only this model (70m, pythia-70m and EleutherAI/pythia-70m are one name)")
    p.add_argument("--format", choices=("table", "json"), default="table",
                   help="a text table (default) or a JSON list of checkpoints on stdout")
    p = _sub(sub, "verify", "recompute checksums and flag steps with identical weights",
             "pythia-suite checkpoints verify suite/checkpoints_manifest.json", cmd_checkpoints_verify)
    p.add_argument("manifest", nargs="?", help="checkpoints_manifest.json or its folder (default: the real Pythia suite)")


# ---- demo -------------------------------------------------------------------------------------


def cmd_demo(args) -> int:
    from .demo import run_demo

    run_demo(args.out, preset=args.preset, fresh=args.fresh, progress=not args.quiet)
    return 0


def add_demo(subparsers) -> None:
    from .demo import PRESETS

    p = _sub(subparsers, "demo", "the whole suite end to end on the built-in micro-Pile (offline)",
             "pythia-suite demo --out demo_output", cmd_demo)
    p.add_argument("--out", default="demo_output",
                   help="output folder (default demo_output): report.md, tables/*.parquet, figures/*.png, and the "
                        "corpus/, data/ and suite/ it built")
    p.add_argument("--preset", default="default", choices=list(PRESETS),
                   help="size of the run: tiny (a minute or two), default (about 8 minutes on 2 cores), gpu")
    p.add_argument("--fresh", action="store_true", help="start over instead of reusing finished work")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p = _sub(subparsers, "notebooks", "execute notebooks/ against a demo output folder (needs ipykernel, nbclient)",
             "pythia-suite notebooks --out demo_output", cmd_notebooks)
    p.add_argument("--out", default="demo_output",
                   help="the demo output folder (default demo_output); executed copies go to OUT/notebooks/")
    p.add_argument("--only", nargs="+", metavar="NAME", help="only the notebooks whose names start so, e.g. 02 03")
    p.add_argument("--quiet", action="store_true", help="no progress output")


def cmd_notebooks(args) -> int:
    from .notebooks import run_all

    for path in run_all(args.out, only=args.only, progress=not args.quiet):
        print(f"wrote {path}")
    return 0


# ---- counts ------------------------------------------------------------------------------------


def read_terms_file(path: str) -> list[str]:
    """One term per line (blank lines skipped; a line keeps its inner spaces)."""
    from .fileio import require_file

    lines = require_file(path, "terms file").read_text(encoding="utf-8").splitlines()
    terms = [line for line in lines if line.strip()]
    if not terms:
        raise UserError(f"terms file {path} has no terms (one per line)")
    return terms


def cmd_counts(args) -> int:
    from .checkpoints import Suite
    from .data.build import load_tokenizer
    from .data.counts import count_terms, data_tokenizer, data_vocab_size, parse_terms, write_counts_table
    from .data.order import TrainingOrder

    out = Path(args.out)
    if out.suffix != ".parquet":
        raise UserError(f"--out must name a .parquet file, got {out}")
    batch, seed, steps, suite_name = args.batch_size, None, None, ""
    if args.manifest:
        suite = Suite.load(args.manifest)
        suite.check_data(args.data)  # counts as of a suite's checkpoints need the data it was trained on
        data = suite.manifest.get("data") or {}
        batch, seed, suite_name = data.get("batch_size") or batch, data.get("data_seed"), suite.name
        steps = sorted({s for m in suite.models() for s in suite.steps(m)})
    tok_path = data_tokenizer(args.data, args.tokenizer)
    tok = load_tokenizer(tok_path) if tok_path else None
    order = TrainingOrder(args.data, batch_size=batch, seed=seed)
    specs = args.terms if args.terms else read_terms_file(args.terms_file)
    terms = parse_terms(specs, tok, vocab_size=data_vocab_size(args.data, tok))
    if steps is not None and steps[-1] > order.num_steps:
        raise UserError(f"the manifest has checkpoint step {steps[-1]} but {args.data} has only "
                        f"{order.num_steps} steps of batch {batch}")
    store = Path(args.store) if args.store else out.with_suffix(".zarr")
    from .engines import maybe_client

    with maybe_client(None, args.scheduler, args.scheduler_timeout) as client:
        counts = count_terms(args.data, terms, batch, definition=args.definition, tokenizer=tok_path, seed=seed,
                             store=store, workers=args.workers, progress=not args.quiet, client=client)
    write_counts_table(counts, out, steps, suite_name, config={k: v for k, v in vars(args).items() if k != "func"})
    final = counts.count_seen(counts.num_steps)
    top = sorted(zip(final.tolist(), counts.terms), reverse=True)[:5]
    print(f"wrote {out} ({len(terms)} terms x {len(steps) if steps else counts.num_steps + 1} steps) and {store}; "
          f"{counts.num_steps} steps of batch {batch}, definition {args.definition}")
    print("  most frequent over all steps: " + ", ".join(f"{t!r} {n}" for n, t in top))
    return 0


def add_counts(subparsers) -> None:
    from .data.counts import DEFINITIONS

    p = _sub(subparsers, "counts", "exact counts of terms at every step and as of every checkpoint of a training order",
             "pythia-suite counts --data data/corpus --terms 0..99 --manifest suite --out counts.parquet", cmd_counts)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--terms", nargs="+", help="terms: numbers, a range LOW..HIGH, text, or ids:ID,ID,...")
    g.add_argument("--terms-file", help="a file with one term per line")
    p.add_argument("--data", required=True, help="preshuffled dataset prefix")
    p.add_argument("--manifest", help="a suite's manifest: its batch size, data seed and checkpoint steps")
    p.add_argument("--batch-size", type=int, default=1024, help="sequences per step without a manifest (default 1024)")
    p.add_argument("--definition", choices=DEFINITIONS, default="token",
                   help="token: digit runs of the token stream (default); pythia: Pythia's decode-and-regex rule")
    p.add_argument("--tokenizer", help="tokenizer.json (default: the one the data's sidecar names)")
    p.add_argument("--store", help="resumable zarr store of per-step counts (default: OUT with .zarr)")
    g = add_cluster_options(p, "count", "this package and the data", local=False)
    g.add_argument("--workers", type=int, help="processes of this machine (default: every core)")
    p.add_argument("--out", required=True, help="tidy table (.parquet): term, step, count, count_seen")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

# ---- evaluate (lm-evaluation-harness across the checkpoint index) -----------------------------


def cmd_evaluate(args) -> int:
    from .eval.evaluate import EvalSettings, evaluate_suite

    settings = EvalSettings(
        tasks=args.tasks, include_path=args.include_path or [], models=args.models, steps=args.steps,
        num_fewshot=args.num_fewshot, limit=args.limit, batch_size=args.batch_size, device=args.device,
        online=args.online, bootstrap_iters=args.bootstrap_iters,
    )
    from .engines import maybe_client

    with maybe_client(args.workers, args.scheduler, args.scheduler_timeout) as client:
        out = evaluate_suite(args.manifest, args.out, settings, per_item=args.per_item, fresh=args.fresh,
                             progress=not args.quiet, client=client)
    print(f"wrote {out}" + (f" and {args.per_item}" if args.per_item else ""))
    return 0


def cmd_eval_tasks(args) -> int:
    from .eval.local_tasks import write_micropile_tasks

    names = write_micropile_tasks(args.out, ground_truth=args.ground_truth)
    print(f"wrote {len(names)} tasks to {args.out}: {', '.join(names)} (use --include-path {args.out})")
    return 0


def add_evaluate(subparsers) -> None:
    p = _sub(subparsers, "evaluate", "run lm-evaluation-harness tasks on every model x step of a suite, into one table",
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
    add_cluster_options(p, "evaluate (one checkpoint per task)", "this package, lm-eval and the suite's files")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = _sub(subparsers, "eval-tasks", "write lm-evaluation-harness task YAMLs and data for the micro-Pile probes",
             "pythia-suite eval-tasks --out tasks/", cmd_eval_tasks)
    p.add_argument("--out", required=True, help="folder for the YAMLs and jsonl files (paths inside are absolute)")
    p.add_argument("--ground-truth", help="a micro-Pile ground truth JSON: use that corpus' sentence templates")


# ---- analyses (registered in pythia_suite.registry, imported only when run) -------------------


def add_analyses(subparsers) -> None:
    """Listed in `--help`; `main` hands their arguments to the analysis' own parser."""
    from .registry import available

    for a in available():
        subparsers.add_parser(a.name, help=a.help, add_help=False)


# ---- entry point ------------------------------------------------------------------------------


def _help_of(parser: argparse.ArgumentParser):
    """A command without its subcommand prints its help (and the subcommands) instead of an error."""
    def show(args) -> int:
        parser.print_help()
        return 0

    return show


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = Parser(prog="pythia-suite", description="Pythia-style training-dynamics research suite.",
                    epilog="`pythia-suite COMMAND --help` describes each command, with an example.")
    parser.add_argument("--version", action="version", version=f"pythia-suite {__version__}")
    parser.set_defaults(func=_help_of(parser))
    sub = parser.add_subparsers(title="commands", metavar="COMMAND", parser_class=Parser)
    add_data(sub)
    add_train(sub)
    add_checkpoints(sub)
    add_counts(sub)
    add_evaluate(sub)
    add_analyses(sub)
    add_demo(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .registry import ANALYSES, available, resolve

    import warnings

    argv = sys.argv[1:] if argv is None else list(argv)
    # a library warning is one readable line here, not a source location
    show = warnings.showwarning
    warnings.showwarning = lambda message, *rest, **kw: print(f"warning: {message}", file=sys.stderr)
    try:
        if argv and argv[0] in ANALYSES and ANALYSES[argv[0]] in available():
            rc = resolve(ANALYSES[argv[0]].main)(argv[1:]) or 0
        else:
            args = build_parser().parse_args(argv)
            args.argv = argv
            rc = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
        return rc
    except BrokenPipeError:
        # the reader went away (`| head`): stop quietly, as standard tools do (killed by SIGPIPE: 128 + 13)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except UserError as e:
        if os.environ.get("RANK", "0") == "0":  # one line per job, not one per rank
            print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # unwritable output folder, disk full, ...
        print(f"error: {e.strerror or e}: {e.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = show


if __name__ == "__main__":
    sys.exit(main())
