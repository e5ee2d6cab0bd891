"""The case studies the suite knows, by name, as lazy ``"module:function"`` strings.

The library never imports `analyses` directly: the CLI and the demo look entries up here and
import them only when used, and an entry whose module is not installed is simply not offered.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Analysis:
    name: str
    help: str
    main: str  # "module:function" taking argv, for `pythia-suite <name> ...`
    demo_step: str  # "module:function" taking a DemoContext, returning a report section

    @property
    def module(self) -> str:
        return self.main.split(":")[0]


ANALYSES: dict[str, Analysis] = {
    a.name: a
    for a in [
        Analysis("memorization", "verbatim memorization of training sequences across checkpoints and sizes",
                 "analyses.memorization:main", "analyses.memorization_demo:demo_step"),
        Analysis("term-frequency", "arithmetic accuracy against operand frequency in the data seen",
                 "analyses.term_frequency:main", "analyses.term_frequency:demo_step"),
        Analysis("bias", "gender bias before and after a pronoun-swap intervention",
                 "analyses.bias:main", "analyses.bias:demo_step"),
    ]
}


def available() -> list[Analysis]:
    """Entries whose module can be imported, in registry order."""
    out = []
    for a in ANALYSES.values():
        try:
            found = importlib.util.find_spec(a.module) is not None
        except ModuleNotFoundError:
            found = False
        if found:
            out.append(a)
    return out


def resolve(target: str) -> Callable:
    """The function named by ``"package.module:function"``."""
    module, _, func = target.partition(":")
    return getattr(importlib.import_module(module), func)
