"""What every command's parser shares: one-line usage errors, the options of the case studies,
subcommand helpers."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..errors import UserError


class Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one `error:` line (and exit 2) instead of a usage dump."""

    def error(self, message: str):  # type: ignore[override]
        print(f"error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        raise SystemExit(2)


class _VerifyData(argparse.Action):
    """--verify-data: hash the data in full, ignoring the stamps of earlier checks (the same as
    PYTHIA_SUITE_VERIFY_DATA=1, which it sets, so workers started from here do as well)."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=False, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        from ..data.integrity import FORCE_ENV

        os.environ[FORCE_ENV] = "1"
        setattr(namespace, self.dest, True)


def add_verify_data(p: argparse.ArgumentParser) -> None:
    p.add_argument("--verify-data", action=_VerifyData,
                   help="hash the data in full before using it, not trusting the size/mtime stamp of an earlier check")


def add_skip_missing(p: argparse.ArgumentParser) -> None:
    p.add_argument("--skip-missing", action="store_true",
                   help="score the checkpoints that are there and verify, recording the missing or damaged ones "
                        "(default: refuse before scoring anything)")


def analysis_parser(name: str, doc: str, example: str, data: bool = True,
                    models_help: str = "models to evaluate (default: all)") -> Parser:
    """The parser of `pythia-suite <analysis>`, with the options every case study shares: which
    suite, (its data,) which models and steps."""
    p = Parser(prog=f"pythia-suite {name}", description=doc.split("\n\n")[0], epilog=f"example:\n  {example}",
               formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--manifest", required=True, help="checkpoints_manifest.json of the suite (or its folder)")
    if data:
        p.add_argument("--data", required=True, help="the suite's preshuffled dataset prefix")
        add_verify_data(p)
    p.add_argument("--models", nargs="+", help=models_help)
    p.add_argument("--steps", nargs="+", type=int, help="checkpoint steps (default: every checkpoint)")
    add_skip_missing(p)
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


def command(subparsers, name: str, help: str, example: str, func) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        name,
        help=help,
        description=help,
        epilog=f"example:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(func=func)
    return p


def help_of(parser: argparse.ArgumentParser):
    """A command without its subcommand prints its help (and the subcommands) instead of an error."""
    def show(args) -> int:
        parser.print_help()
        return 0

    return show
