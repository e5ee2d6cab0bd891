"""The case studies the suite knows, and the demo's report sections, as lazy ``"module:function"``
strings.

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

    @property
    def module(self) -> str:
        return self.main.split(":")[0]


@dataclass(frozen=True)
class DemoSection:
    name: str
    section: str  # "module:function" taking a DemoContext, returning a Section (or None: nothing to add)

    @property
    def module(self) -> str:
        return self.section.split(":")[0]


ANALYSES: dict[str, Analysis] = {
    a.name: a
    for a in [
        Analysis("memorization", "verbatim memorization of training sequences across checkpoints and sizes",
                 "analyses.memorization:main"),
        Analysis("term-frequency", "arithmetic accuracy against operand frequency in the data seen",
                 "analyses.term_frequency:main"),
        Analysis("bias", "gender bias before and after a pronoun-swap intervention",
                 "analyses.bias:main"),
    ]
}

# The report's sections in order: training, each case study, then the harness bridge.
DEMO_SECTIONS: list[DemoSection] = [
    DemoSection("training", "analyses.demo.training:section"),
    DemoSection("memorization", "analyses.demo.memorization:section"),
    DemoSection("term-frequency", "analyses.demo.term_frequency:section"),
    DemoSection("bias", "analyses.demo.bias:section"),
    DemoSection("harness", "analyses.demo.harness:section"),
]


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def available() -> list[Analysis]:
    """Analyses whose module can be imported, in registry order."""
    return [a for a in ANALYSES.values() if _importable(a.module)]


def demo_sections() -> list[DemoSection]:
    """Demo sections whose module can be imported, in report order."""
    return [d for d in DEMO_SECTIONS if _importable(d.module)]


def resolve(target: str) -> Callable:
    """The function named by ``"package.module:function"``."""
    module, _, func = target.partition(":")
    return getattr(importlib.import_module(module), func)
