"""`pythia-suite data ...`: build, read, verify and shard indexed datasets."""

from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from .common import Parser, add_verify_data, command, help_of


def cmd_data_build(args) -> int:
    from ..data.build import build

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
        batch_size=args.batch_size,
    )
    meta = r.sidecar
    print(
        f"wrote {r.prefix}.bin/.idx/.json: {r.n_sequences} sequences of {meta['item_len']} tokens "
        f"({meta['dtype']}, vocab {meta['vocab_size']}) from {r.n_documents} documents; "
        f"{r.dropped_tokens} trailing tokens dropped; seed {meta['seed']}"
        + (f"; batch size {meta['batch_size']} ({r.n_sequences // meta['batch_size']} steps)" if "batch_size" in meta else "")
    )
    return 0


def cmd_data_batch(args) -> int:
    import numpy as np

    from ..data.integrity import check_dataset
    from ..data.order import TrainingOrder, batch_fingerprint
    from ..fileio import atomic_outputs

    if args.out is None and not args.text:
        raise UserError("give --out FILE.npy (the tokens) or --text (print them as text), or both")
    if args.out is not None and Path(args.out).suffix != ".npy":
        raise UserError(f"--out must name a .npy file, got {args.out}")
    check_dataset(args.prefix)  # against its sidecar's checksums (stamped: hashed once per version of the file)
    order = TrainingOrder(args.prefix, batch_size=args.batch_size)
    end = args.step if args.end_step is None else args.end_step
    tokens = order.batches(args.step, end)
    vocab = (order.sidecar or {}).get("vocab_size")
    if vocab is not None and len(tokens) and (top := int(tokens.max())) >= vocab:
        row, col = (int(i) for i in np.argwhere(tokens == top)[0])
        seq = args.step * order.batch_size + row
        raise UserError(f"sequence {seq} (step {order.step_of(seq)}, position {col}) holds token id {top}, outside "
                        f"the vocabulary of {vocab} its sidecar records: the data may be damaged "
                        f"(`pythia-suite data verify {args.prefix}`)")
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
    from ..data.sidecar import verify

    report = verify(args.prefix)
    for line in report.checked:
        print(f"ok: {line}")
    if not report.ok:
        raise UserError(f"{report.prefix}: " + "; ".join(report.problems))
    return 0


def cmd_data_shard(args) -> int:
    from ..data.shards import shard

    pieces = shard(args.prefix, args.out_dir, shard_bytes=args.shard_bytes)
    print(f"wrote {len(pieces)} shards to {args.out_dir} ({pieces[0].name} ... {pieces[-1].name}) with sha256 per shard")
    return 0


def cmd_data_unshard(args) -> int:
    from ..data.shards import unshard

    prefix = unshard(args.source, args.out, force=args.force)
    print(f"wrote {prefix}.bin/.idx/.json")
    return 0


def add_data(subparsers) -> None:
    data = subparsers.add_parser("data", help="build, read, verify and shard indexed datasets",
                                 description="Build, read, verify and shard indexed datasets.")
    data.set_defaults(func=help_of(data))
    sub = data.add_subparsers(title="commands", metavar="COMMAND", parser_class=Parser)

    p = command(sub, "build", "tokenize, pack and shuffle a corpus into PREFIX.bin/.idx/.json",
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
    p.add_argument("--batch-size", type=int, help="sequences per step the data will be trained with: recorded in the "
                   "sidecar, so `data batch` and TrainingOrder(PREFIX) use it without --batch-size")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--force", action="store_true", help="replace an existing dataset of the same prefix")

    p = command(sub, "batch", "write the tokens of step N (through M, inclusive) to a .npy file",
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
    add_verify_data(p)

    p = command(sub, "verify", "check structure and recompute checksums against the sidecar",
             "pythia-suite data verify data/corpus", cmd_data_verify)
    p.add_argument("prefix", help="dataset prefix (PREFIX.bin + PREFIX.idx, and PREFIX.json if any)")

    p = command(sub, "shard", "split PREFIX.bin into NAME-NNNNN-of-NNNNN.bin pieces with sha256 each",
             "pythia-suite data shard data/corpus --out-dir shards/ --shard-bytes 5000000000", cmd_data_shard)
    p.add_argument("prefix", help="dataset prefix (PREFIX.bin + PREFIX.idx)")
    p.add_argument("--out-dir", required=True,
                   help="folder for NAME-NNNNN-of-NNNNN.bin, NAME.idx and NAME.shards.json (sha256 per piece)")
    p.add_argument("--shard-bytes", type=int, default=5_000_000_000,
                   help="bytes per piece (default 5e9, the default of Pythia's shard_memmap.py; "
                        "its preshuffled document.bin ships in 21 pieces of about 28.6 GB)")

    p = command(sub, "unshard", "join shards back into PREFIX.bin/.idx, checking each shard's sha256",
             "pythia-suite data unshard shards/document-00000-of-00020.bin --out pile/document", cmd_data_unshard)
    p.add_argument("source", help="the first shard, or DIR/NAME")
    p.add_argument("--out", required=True, help="output prefix")
    p.add_argument("--force", action="store_true", help="replace an existing dataset of the same prefix")
