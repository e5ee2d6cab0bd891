"""`pythia-suite counts`: exact term counts over a training order."""

from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from .common import add_cluster_options, add_verify_data, command


def read_terms_file(path: str) -> list[str]:
    """One term per line (blank lines skipped; a line keeps its inner spaces)."""
    from ..fileio import require_file

    lines = require_file(path, "terms file").read_text(encoding="utf-8").splitlines()
    terms = [line for line in lines if line.strip()]
    if not terms:
        raise UserError(f"terms file {path} has no terms (one per line)")
    return terms


def cmd_counts(args) -> int:
    from ..checkpoints import Suite
    from ..data.build import load_tokenizer
    from ..data.counts import (
        count_terms,
        data_tokenizer,
        data_vocab_size,
        parse_terms,
        write_counts_table,
    )
    from ..data.order import TrainingOrder

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
    from ..engines import maybe_client

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
    from ..data.counts import DEFINITIONS

    p = command(subparsers, "counts", "exact counts of terms at every step and as of every checkpoint of a training order",
             "pythia-suite counts --data data/corpus --terms 0..99 --manifest suite --out counts.parquet", cmd_counts)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--terms", nargs="+", help="terms: numbers, a range LOW..HIGH, text, or ids:ID,ID,...")
    g.add_argument("--terms-file", help="a file with one term per line")
    p.add_argument("--data", required=True, help="preshuffled dataset prefix")
    add_verify_data(p)
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
