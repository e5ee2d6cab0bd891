"""The `pythia-suite` command: a thin layer over the library, one module per command group.

Every mistake a user can make ends in one line ``error: ...`` on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

from ..errors import UserError
from .checkpoints import add_checkpoints
from .common import Parser, help_of
from .counts import add_counts
from .data import add_data
from .demo import add_demo
from .evaluate import add_evaluate
from .train import add_train


def add_analyses(subparsers) -> None:
    """Listed in `--help`; `main` hands their arguments to the analysis' own parser."""
    from ..registry import available

    for a in available():
        subparsers.add_parser(a.name, help=a.help, add_help=False)


# ---- entry point ------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = Parser(prog="pythia-suite", description="Pythia-style training-dynamics research suite.",
                    epilog="`pythia-suite COMMAND --help` describes each command, with an example.")
    parser.add_argument("--version", action="version", version=f"pythia-suite {__version__}")
    parser.set_defaults(func=help_of(parser))
    sub = parser.add_subparsers(title="commands", metavar="COMMAND", parser_class=Parser)
    add_data(sub)
    add_train(sub)
    add_checkpoints(sub)
    add_counts(sub)
    add_evaluate(sub)
    add_analyses(sub)
    add_demo(sub)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's kill, `kill PID`) raised where the program is, like Ctrl-C, so that
    every `finally` runs: a Dask cluster's workers are stopped, store locks and temp files removed."""


def _raise_terminated(signum, frame):
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    import warnings

    from ..data.integrity import FORCE_ENV
    from ..registry import ANALYSES, available, resolve

    argv = sys.argv[1:] if argv is None else list(argv)
    forced = os.environ.get(FORCE_ENV)  # --verify-data sets it for this command (and its workers) only
    on_term = None
    if threading.current_thread() is threading.main_thread():
        on_term = signal.signal(signal.SIGTERM, _raise_terminated)
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
    except KeyboardInterrupt as e:
        if isinstance(e, Terminated):
            print("error: terminated (SIGTERM)", file=sys.stderr)
            return 143  # 128 + SIGTERM, what the shell reports for a process the signal killed
        print("error: interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = show
        if on_term is not None:
            signal.signal(signal.SIGTERM, on_term)
        if forced is None:
            os.environ.pop(FORCE_ENV, None)
        else:
            os.environ[FORCE_ENV] = forced
