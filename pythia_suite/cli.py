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

    if args.nproc_per_node is not None and "WORLD_SIZE" not in os.environ:
        from .distributed import Ranks, launch

        Ranks(world=max(1, args.nproc_per_node)).check_batch(args.batch_size, args.micro_batch)  # before launching
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
        vocab_size=args.vocab_size, device=args.device, suite=args.suite, val_items=args.val_items,
    )
    rank0 = os.environ.get("RANK", "0") == "0"
    manifest = train(args.data, args.out, settings, progress=not args.quiet,
                     on_model_done=lambda summary: print(summary.line(), flush=True) if rank0 else None)
    if rank0:
        print(f"wrote {manifest}")
    return 0


def add_train(subparsers) -> None:
    from .sizes import MICRO_SIZES, PYTHIA_SIZES

    p = _sub(subparsers, "train", "train several model sizes on one training order, with checkpoints",
             "pythia-suite train --data data/corpus --out suite --sizes micro-50k micro-1m --steps 256 --batch-size 32",
             cmd_train)
    p.epilog += (f"\n\nsizes:\n  micro (CPU): {', '.join(MICRO_SIZES)}\n"
                 f"  pythia:      {', '.join(PYTHIA_SIZES)} (also as pythia-70m, ...)")
    p.add_argument("--data", required=True, help="preshuffled dataset prefix (from `data build`)")
    p.add_argument("--out", required=True, help="suite folder: SUITE/<model>/step<N>/ and the manifest")
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
    p.add_argument("--val-items", type=int,
                   help="held-out items right after the last trained step, never trained on; their loss at every "
                        "checkpoint goes to SUITE/<model>/val_log.parquet (default: one batch; 0: none)")
    p.add_argument("--quiet", action="store_true", help="no progress output (the final line per model stays)")


# ---- checkpoints ------------------------------------------------------------------------------


def cmd_checkpoints_list(args) -> int:
    import json

    from .checkpoints import Suite

    suite = Suite.load(args.manifest)
    rows = [
        {"model": c.model, "step": c.step, "tokens_seen": c.tokens_seen, "location": c.location, "sha256": c.sha256}
        for c in suite.checkpoints(args.model)
    ]
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
                   help="size of the run: tiny (seconds), default (minutes on a laptop), gpu")
    p.add_argument("--fresh", action="store_true", help="start over instead of reusing finished work")
    p.add_argument("--quiet", action="store_true", help="no progress output")


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
