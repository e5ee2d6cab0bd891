"""`pythia-suite checkpoints list|verify`."""

from __future__ import annotations

import sys

from ..errors import UserError
from .common import Parser, command, help_of


def cmd_checkpoints_list(args) -> int:
    import json

    from ..checkpoints import Suite

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
    from ..checkpoints import Suite, verify_suite

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
    ck.set_defaults(func=help_of(ck))
    sub = ck.add_subparsers(title="commands", metavar="COMMAND", parser_class=Parser)
    p = command(sub, "list", "list models x steps of a manifest (default: the real Pythia suite)",
             "pythia-suite checkpoints list suite/checkpoints_manifest.json --model micro-1m --format json",
             cmd_checkpoints_list)
    p.add_argument("manifest", nargs="?", help="checkpoints_manifest.json or its folder (default: the real Pythia suite)")
    p.add_argument("--model", help="only this model (70m, pythia-70m and EleutherAI/pythia-70m are one name)")
    p.add_argument("--format", choices=("table", "json"), default="table",
                   help="a text table (default) or a JSON list of checkpoints on stdout")
    p = command(sub, "verify", "recompute checksums and flag steps with identical weights",
             "pythia-suite checkpoints verify suite/checkpoints_manifest.json", cmd_checkpoints_verify)
    p.add_argument("manifest", nargs="?", help="checkpoints_manifest.json or its folder (default: the real Pythia suite)")
