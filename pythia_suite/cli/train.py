"""`pythia-suite train`: a family of sizes on one order, data-parallel runs, interventions."""

from __future__ import annotations

import os

from ..errors import UserError
from .common import add_verify_data, command


def cmd_train(args) -> int:
    from ..train import TrainSettings, train

    if args.resume_from is not None:
        if args.nproc_per_node is not None:
            raise UserError("an intervention (--resume-from) runs in one process; drop --nproc-per-node")
        return cmd_train_intervention(args)
    if args.data is None or args.out is None:
        raise UserError("train needs --data and --out (or --resume-from SUITE/MODEL@STEP for an intervention)")
    if args.name or args.transform or args.word_map or args.from_fraction is not None:
        raise UserError("--name, --transform, --word-map and --from-fraction go with --resume-from")

    if args.nproc_per_node is not None and "WORLD_SIZE" not in os.environ:
        from ..distributed import Ranks, check_engine, launch

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
    from ..distributed import ZERO_BUCKET
    from ..sizes import MICRO_SIZES, PYTHIA_SIZES

    p = command(subparsers, "train", "train several model sizes on one training order, with checkpoints",
             "pythia-suite train --data data/corpus --out suite --sizes micro-50k micro-1m --steps 256 --batch-size 32",
             cmd_train)
    p.epilog += (f"\n\nsizes:\n  micro (CPU): {', '.join(MICRO_SIZES)}\n"
                 f"  pythia:      {', '.join(PYTHIA_SIZES)} (also as pythia-70m, ...)")
    p.add_argument("--data", help="preshuffled dataset prefix (from `data build`)")
    add_verify_data(p)
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
    g.add_argument("--word-map", help="JSON {\"word\": \"replacement\"} for --transform word-map (forms of several tokens are replaced as token sequences)")
    g.add_argument("--name", help="name of the new model in the parent's manifest")
    g.add_argument("--tokenizer", help="the data's tokenizer.json (default: the manifest's)")
    p.epilog += ("\n\nintervention:\n  pythia-suite train --resume-from suite/micro-1m --from-fraction 0.07 "
                 "--transform pronoun-swap --name micro-1m-swap")


def cmd_train_intervention(args) -> int:
    from ..intervention import run_intervention

    if not args.name:
        raise UserError("--resume-from needs --name for the new model")
    manifest = run_intervention(args.resume_from, args.name, args.transform or "pronoun-swap", args.word_map,
                                args.from_fraction, args.tokenizer,
                                args.device if args.device != "cpu" else None, progress=not args.quiet)
    print(f"wrote {args.name} into {manifest}")
    return 0
