"""`pythia-suite demo` and `pythia-suite notebooks`."""

from __future__ import annotations

from .common import command


def cmd_demo(args) -> int:
    from ..demo import run_demo

    run_demo(args.out, preset=args.preset, fresh=args.fresh, progress=not args.quiet)
    return 0


def add_demo(subparsers) -> None:
    from ..demo import PRESETS

    p = command(subparsers, "demo", "the whole suite end to end on the built-in micro-Pile (offline)",
             "pythia-suite demo --out demo_output", cmd_demo)
    p.add_argument("--out", default="demo_output",
                   help="output folder (default demo_output): report.md, tables/*.parquet, figures/*.png, and the "
                        "corpus/, data/ and suite/ it built")
    p.add_argument("--preset", default="default", choices=list(PRESETS),
                   help="size of the run: tiny (a minute or two), default (about 8 minutes on 2 cores), gpu")
    p.add_argument("--fresh", action="store_true", help="start over instead of reusing finished work")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p = command(subparsers, "notebooks", "execute notebooks/ against a demo output folder (needs ipykernel, nbclient)",
             "pythia-suite notebooks --out demo_output", cmd_notebooks)
    p.add_argument("--out", default="demo_output",
                   help="the demo output folder (default demo_output); executed copies go to OUT/notebooks/")
    p.add_argument("--only", nargs="+", metavar="NAME", help="only the notebooks whose names start so, e.g. 02 03")
    p.add_argument("--quiet", action="store_true", help="no progress output")


def cmd_notebooks(args) -> int:
    from ..notebooks import run_all

    for path in run_all(args.out, only=args.only, progress=not args.quiet):
        print(f"wrote {path}")
    return 0
