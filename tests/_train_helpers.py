"""Shared helpers of tests/test_train.py and tests/test_checkpoints.py (not a test module).

A tiny learnable corpus (runs of a cyclic word list, so the next word is predictable), built with
`pythia_suite.data.build` into 16-token items, and a `train` wrapper with small defaults.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

SEQ_LEN = 16
VOCAB = 300
BATCH = 8
EVERY = 4
SIZES = ["micro-50k", "micro-200k"]

_WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()


def make_corpus(path: Path, n_docs: int = 400, seed: int = 0) -> Path:
    """Deterministic documents: each is a run of the cyclic word list from a random start."""
    rng = random.Random(seed)
    docs = []
    for _ in range(n_docs):
        k = rng.randrange(len(_WORDS))
        docs.append(" ".join(_WORDS[(k + j) % len(_WORDS)] for j in range(rng.randint(8, 30))))
    path.write_text("\n\n".join(docs) + "\n", encoding="utf-8")
    return path


def build_data(folder: Path) -> Path:
    """Build the corpus into folder/data/corpus.{bin,idx,json}; returns the prefix."""
    from pythia_suite.data import build

    folder.mkdir(parents=True, exist_ok=True)
    corpus = make_corpus(folder / "corpus.txt")
    return build([corpus], folder / "data" / "corpus", seq_len=SEQ_LEN, vocab_size=VOCAB, seed=1).prefix


def settings(**overrides):
    from pythia_suite.train import TrainSettings

    kw = dict(sizes=["micro-50k"], steps=12, batch_size=BATCH, checkpoint_every=EVERY)
    return TrainSettings(**(kw | overrides))


def run_train(prefix: Path, out: Path, **overrides) -> Path:
    from pythia_suite.train import train

    return train(prefix, out, settings(**overrides), progress=False)


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def weight_hashes(suite_dir: Path, model: str) -> dict[int, str]:
    """step -> sha256 of <model>/step<N>/model.safetensors, for every checkpoint folder present."""
    return {
        int(p.parent.name[len("step"):]): sha256(p)
        for p in (Path(suite_dir) / model).glob("step*/model.safetensors")
        if p.parent.name[len("step"):].isdigit()
    }


# The CLI helpers are shared with the data tests (conftest.py).
from conftest import assert_one_error_line as one_error_line  # noqa: E402,F401
from conftest import listing as files_under  # noqa: E402,F401
from conftest import run_cli  # noqa: E402,F401
