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
    p = command(subparsers, "notebooks", "execute notebooks/ against a demo output folder, or a suite and its tables",
             "pythia-suite notebooks --suite suite --tables results --dest results/notebooks", cmd_notebooks)
    p.add_argument("--out", help="a demo output folder (`make notebooks`: demo_output): its suite/ and tables/; "
                                 "executed copies go to OUT/notebooks/")
    p.add_argument("--suite", help="a suite folder (or its checkpoints_manifest.json) written by `pythia-suite train`")
    p.add_argument("--tables", help="the folder the analyses wrote their tables to (`memorization --out "
                                    "TABLES/memorization.parquet`, `term-frequency`, `bias` likewise)")
    p.add_argument("--data", help="the suite's data prefix, where it moved (default: the one the manifest names)")
    p.add_argument("--dest", help="where executed copies go (default OUT/notebooks, else TABLES/notebooks)")
    p.add_argument("--only", nargs="+", metavar="NAME", help="only the notebooks whose names start so, e.g. 02 03")
    p.add_argument("--quiet", action="store_true", help="no progress output")


def cmd_notebooks(args) -> int:
    from ..notebooks import run_all

    out = args.out if args.out or args.suite else "demo_output"
    written = run_all(out, dest=args.dest, only=args.only, progress=not args.quiet, suite=args.suite,
                      tables=args.tables, data=args.data)
    for path in written:
        print(f"wrote {path}")
    print(f"executed {len(written)} notebook(s) into {written[0].parent}")
    return 0
