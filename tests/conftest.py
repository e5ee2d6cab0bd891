"""Shared fixtures and helpers for the data-layer tests.

Everything is tiny and deterministic; session-scoped fixtures are built once and must never be
modified by a test (tests that corrupt files work on their own copies under `tmp_path`).
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest

from pythia_suite.data.indexed import write_fixed_index

# ---- Pythia-shaped data ------------------------------------------------------------------------

PYTHIA_ITEM = 2049
PYTHIA_BATCH = 1024
PYTHIA_STEPS = 3
PYTHIA_EXTRA = 5  # a final partial batch, never a step
PYTHIA_ITEMS = PYTHIA_STEPS * PYTHIA_BATCH + PYTHIA_EXTRA


def pythia_tokens() -> np.ndarray:
    """(PYTHIA_ITEMS, 2049) uint16; item i starts with i and then counts up from i*7 (mod 2**16),
    so every row is distinct and a row's first token names it."""
    i = np.arange(PYTHIA_ITEMS, dtype=np.int64)[:, None]
    toks = (i * 7 + np.arange(PYTHIA_ITEM, dtype=np.int64)[None, :]) % 65536
    toks[:, 0] = i[:, 0]
    return toks.astype(np.uint16)


@pytest.fixture(scope="session")
def pythia_tokens_array() -> np.ndarray:
    return pythia_tokens()


@pytest.fixture(scope="session")
def pythia_prefix(tmp_path_factory, pythia_tokens_array) -> Path:
    """`document.bin/.idx` shaped like Pythia's preshuffled data (read-only for tests)."""
    prefix = tmp_path_factory.mktemp("pythia") / "document"
    pythia_tokens_array.tofile(f"{prefix}.bin")
    write_fixed_index(f"{prefix}.idx", np.uint16, PYTHIA_ITEMS, PYTHIA_ITEM)
    return prefix


# ---- a small text corpus -------------------------------------------------------------------------

_WORDS = (
    "the a of model data step token batch order loss layer head train learn see know change scale "
    "memory sequence checkpoint suite corpus text word number seed shuffle index read write café "
    "naïve über 東京 Ωmega 42 1999 3.14 don't x-ray e-mail (paren) [bracket] {brace} \"quote\""
).split()


def make_docs(n: int = 300, seed: int = 0) -> list[str]:
    """Deterministic documents: 1-3 lines of words each, no blank or whitespace-only lines and no
    leading/trailing whitespace, so a blank-line separated .txt round-trips them exactly."""
    rng = random.Random(seed)
    docs = []
    for _ in range(n):
        lines = [" ".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 14))) for _ in range(rng.randint(1, 3))]
        docs.append("\n".join(lines))
    return docs


def write_txt(path: Path, docs: list[str]) -> Path:
    # blank-line separated, with a doubled blank line and trailing blank lines for good measure
    path.write_text("\n\n".join(docs[: len(docs) // 2]) + "\n\n\n" + "\n\n".join(docs[len(docs) // 2 :]) + "\n\n",
                    encoding="utf-8")
    return path


def write_jsonl(path: Path, docs: list[str], field: str = "text") -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for i, d in enumerate(docs):
            f.write(json.dumps({"id": i, field: d}) + "\n")
    return path


def write_parquet(path: Path, docs: list[str]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"id": list(range(len(docs))), "text": docs}), path, row_group_size=64)
    return path


def write_hf_dataset(path: Path, docs: list[str]) -> Path:
    import datasets

    datasets.Dataset.from_dict({"text": docs}).save_to_disk(str(path))
    return path


CORPUS_SEQ_LEN = 31
CORPUS_VOCAB = 400
CORPUS_SEED = 7


@pytest.fixture(scope="session")
def corpus_docs() -> list[str]:
    return make_docs()


@pytest.fixture(scope="session")
def corpus_txt(tmp_path_factory, corpus_docs) -> Path:
    return write_txt(tmp_path_factory.mktemp("corpus") / "corpus.txt", corpus_docs)


@pytest.fixture(scope="session")
def base_build(tmp_path_factory, corpus_txt):
    """The reference build: corpus.txt, a trained BPE of CORPUS_VOCAB, seed CORPUS_SEED (read-only)."""
    from pythia_suite.data.build import build

    prefix = tmp_path_factory.mktemp("base") / "corpus"
    result = build([corpus_txt], prefix, seq_len=CORPUS_SEQ_LEN, vocab_size=CORPUS_VOCAB, seed=CORPUS_SEED)
    return result


@pytest.fixture(scope="session")
def tokenizer_path(base_build) -> Path:
    return Path(f"{base_build.prefix}.tokenizer.json")


# ---- helpers -----------------------------------------------------------------------------------


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    """Run `pythia-suite argv...` in-process: (exit status, stdout, stderr)."""
    from pythia_suite.cli import main

    capsys.readouterr()  # drop anything printed earlier in the test
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as e:  # argparse usage errors
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_error_line(err: str) -> str:
    """stderr is exactly one line `error: ...` and no traceback; returns the message."""
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one error line, got {err!r}"
    assert lines[0].startswith("error: "), lines[0]
    assert err.endswith("\n")
    return lines[0]


def listing(root: Path) -> dict[str, bytes]:
    """Every file under `root` (relative path -> contents): to check nothing was half-written."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def copy_prefix(src: Path, dst_dir: Path, name: str | None = None) -> Path:
    """Copy PREFIX.* (bin, idx, json, tokenizer.json if present) into dst_dir; returns the new prefix."""
    dst_dir.mkdir(parents=True, exist_ok=True)
    dst = dst_dir / (name or src.name)
    for ext in (".bin", ".idx", ".json", ".tokenizer.json"):
        p = Path(f"{src}{ext}")
        if p.exists():
            shutil.copyfile(p, f"{dst}{ext}")
    return dst


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def pytest_configure(config):
    """PYTHIA_SUITE_TEST_THREADS=N runs the suite with torch.set_num_threads(N) (besides
    OMP_NUM_THREADS, which the subprocesses inherit): every bound must hold on any thread count.
    File-hash stamps go to a fresh folder of this run."""
    import os
    import tempfile

    # file-hash stamps (pythia_suite.fileio.stamped_sha256) of this run, not of the user's cache
    os.environ["PYTHIA_SUITE_CACHE"] = tempfile.mkdtemp(prefix="pythia-suite-test-cache-")
    if threads := os.environ.get("PYTHIA_SUITE_TEST_THREADS"):
        import torch

        torch.set_num_threads(int(threads))


# ---- float comparisons --------------------------------------------------------------------------
# float32 keeps 24 bits (eps = 2**-23, about 1.2e-7). The same float32 values computed another way
# (another kernel, batch layout, KV cache, thread count) add their terms in another order and differ
# by a few eps of the size of what they add up. So every bound is relative to the scale of the
# values compared, never absolute: an absolute bound that holds on one CPU fails on another.
FLOAT32_EPS = 2.0 ** -23
# A float32 forward pass computed another way: each output is a sum of a few hundred products per
# layer, reordered; 1e-5 of the logits' scale is ~84 eps (measured: under 3 eps with 1, 2 or 3 threads).
FORWARD_RTOL = 1e-5


def scaled_error(got, want) -> float:
    """max |got - want| / max |want|, in float64: the error relative to the values' scale (0 if both are 0)."""
    got, want = (np.asarray(x.detach().cpu().double() if hasattr(x, "detach") else x, dtype=np.float64)
                 for x in (got, want))
    scale = np.abs(want).max(initial=0.0)
    err = np.abs(got - want).max(initial=0.0)
    return float(err / scale) if scale else float(err)


def tiny_config(vocab_size: int = 97, **overrides):
    """A two-layer GPTNeoXConfig for tests of the model's numerics (no end-of-text id unless given)."""
    from pythia_suite.model import GPTNeoXConfig

    fields = dict(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=128, max_position_embeddings=64, eos_token_id=None)
    return GPTNeoXConfig(**(fields | overrides))


def random_model(config, seed: int = 0):
    """A GPTNeoX whose every parameter is random (biases and LayerNorms included, unlike at init)."""
    import torch

    from pythia_suite.model import GPTNeoX

    torch.manual_seed(seed)
    model = GPTNeoX(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.normal_(1.0 if "norm" in name and name.endswith("weight") else 0.0, 0.2)
    return model


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory) -> Path:
    """`pythia-suite demo --preset tiny` run once (read-only for tests): its output folder."""
    from pythia_suite.demo import run_demo

    out = tmp_path_factory.mktemp("demo")
    run_demo(out, preset="tiny", progress=False)
    return out
