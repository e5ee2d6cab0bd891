"""`pythia-suite demo`: the end-to-end run on a small built-in corpus.

For now: generate a small synthetic corpus, build the preshuffled dataset, and show the batch at
a step with its fingerprint.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

WORDS = (
    "the a model data step token batch order loss layer head size train learn see know change scale "
    "memory sequence checkpoint suite corpus text word number seed shuffle index read write"
).split()


def write_corpus(path: Path, n_docs: int = 2000, seed: int = 0) -> None:
    """Deterministic toy documents: a few sentences of random words each."""
    rng = np.random.default_rng(seed)
    with open(path, "w") as f:
        for _ in range(n_docs):
            sentences = []
            for _ in range(rng.integers(2, 6)):
                words = rng.choice(WORDS, size=rng.integers(4, 12))
                sentences.append(" ".join(words).capitalize() + ".")
            f.write(" ".join(sentences) + "\n\n")


def run_demo(out: str | Path, fresh: bool = False) -> None:
    from .data import TrainingOrder, build

    out = Path(out)
    if fresh and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    corpus = out / "corpus.txt"
    if not corpus.exists():
        write_corpus(corpus)
    prefix = out / "data" / "corpus"
    if not prefix.with_name("corpus.json").exists():
        build([corpus], prefix, seq_len=64, vocab_size=512, seed=1234)
    order = TrainingOrder(prefix, batch_size=8)
    step = order.last_step // 2
    print(f"{order}")
    print(f"step {step}: items {step * order.batch_size}..{(step + 1) * order.batch_size - 1}, "
          f"tokens_seen by checkpoint step{step} = {order.tokens_seen(step)}")
    print(f"fingerprint {order.fingerprint(step)}")
    print(order.batch(step)[:2, :16])
