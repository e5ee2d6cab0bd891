"""The `pythia-suite` command: a thin layer over the library.

Every mistake a user can make ends in one line ``error: ...`` on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
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

    order = TrainingOrder(args.prefix, batch_size=args.batch_size)
    end = args.step if args.end_step is None else args.end_step
    tokens = order.batches(args.step, end)
    out = Path(args.out)
    if out.suffix != ".npy":
        raise UserError(f"--out must name a .npy file, got {out}")
    with atomic_outputs(out) as (tmp,):
        with open(tmp, "wb") as f:
            np.save(f, np.ascontiguousarray(tokens))
    steps = f"step {args.step}" if end == args.step else f"steps {args.step}..{end} (inclusive)"
    print(f"wrote {out}: {steps}, shape {tokens.shape}, dtype {tokens.dtype}")
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

    prefix = unshard(args.source, args.out)
    print(f"wrote {prefix}.bin/.idx/.json")
    return 0


def add_data(subparsers) -> None:
    data = subparsers.add_parser("data", help="build, read, verify and shard indexed datasets")
    sub = data.add_subparsers(dest="data_cmd", required=True, parser_class=Parser)

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

    p = _sub(sub, "batch", "write the tokens of step N (through M, inclusive) to a .npy file",
             "pythia-suite data batch pile/document --step 1000 --end-step 1001 --out batch.npy", cmd_data_batch)
    p.add_argument("prefix", help="dataset prefix (PREFIX.bin + PREFIX.idx)")
    p.add_argument("--step", type=int, required=True)
    p.add_argument("--end-step", type=int, help="last step, inclusive (default: --step)")
    p.add_argument("--batch-size", type=int, default=1024, help="sequences per step (default 1024, Pythia's)")
    p.add_argument("--out", required=True, help="output .npy, shape ((end-start+1)*batch, seq_len+1)")

    p = _sub(sub, "verify", "check structure and recompute checksums against the sidecar",
             "pythia-suite data verify data/corpus", cmd_data_verify)
    p.add_argument("prefix")

    p = _sub(sub, "shard", "split PREFIX.bin into NAME-NNNNN-of-NNNNN.bin pieces with sha256 each",
             "pythia-suite data shard data/corpus --out-dir shards/ --shard-bytes 5000000000", cmd_data_shard)
    p.add_argument("prefix")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--shard-bytes", type=int, default=5_000_000_000, help="bytes per piece (default 5e9, Pythia's)")

    p = _sub(sub, "unshard", "join shards back into PREFIX.bin/.idx, checking each shard's sha256",
             "pythia-suite data unshard shards/document-00000-of-00020.bin --out pile/document", cmd_data_unshard)
    p.add_argument("source", help="the first shard, or DIR/NAME")
    p.add_argument("--out", required=True, help="output prefix")


# ---- demo -------------------------------------------------------------------------------------


def cmd_demo(args) -> int:
    from .demo import run_demo

    run_demo(args.out, fresh=args.fresh)
    return 0


def add_demo(subparsers) -> None:
    p = _sub(subparsers, "demo", "the end-to-end run on the built-in corpus",
             "pythia-suite demo --out demo_output", cmd_demo)
    p.add_argument("--out", default="demo_output", help="output folder (default demo_output)")
    p.add_argument("--fresh", action="store_true", help="start over instead of reusing finished work")


# ---- entry point ------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = Parser(prog="pythia-suite", description="Pythia-style training-dynamics research suite.")
    parser.add_argument("--version", action="version", version=f"pythia-suite {__version__}")
    sub = parser.add_subparsers(dest="cmd", required=True, parser_class=Parser)
    add_data(sub)
    add_demo(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # unwritable output folder, disk full, ...
        print(f"error: {e.strerror or e}: {e.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
