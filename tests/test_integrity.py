"""Inputs checked where they are read (`pythia_suite.data.integrity`, `pythia_suite.selection`,
`fileio.store_lock`): damaged data refused by every reader, hashes measured once per version of a
file, checkpoints checked before any scoring, one writer per results store.

    .venv/bin/python -m pytest tests/test_integrity.py -q
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from _train_helpers import make_corpus, one_error_line, run_cli, run_train
from conftest import copy_prefix, listing
from pythia_suite import fileio
from pythia_suite.checkpoints import Suite
from pythia_suite.data import build
from pythia_suite.data.integrity import check_dataset
from pythia_suite.errors import UserError
from pythia_suite.fileio import sha256_file, store_lock
from pythia_suite.selection import select

STEPS = 8


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """(data prefix, suite folder): 64-token items (memorization's prompt 32 + continuation 32),
    micro-50k, 8 steps, checkpoints 0, 1, 2, 4, 8."""
    folder = tmp_path_factory.mktemp("integrity")
    prefix = build([make_corpus(folder / "corpus.txt")], folder / "data" / "corpus", seq_len=63, vocab_size=300,
                   seed=1).prefix
    run_train(prefix, folder / "suite", steps=STEPS)
    return prefix, folder / "suite"


def damaged_copy(prefix: Path, folder: Path) -> Path:
    """A copy of the data whose .bin has 4 tokens changed to other in-vocabulary ids (sidecar untouched)."""
    copy = copy_prefix(prefix, folder)
    tokens = np.fromfile(f"{copy}.bin", dtype=np.uint16)
    tokens[[3, 50, 51, 400]] = (tokens[[3, 50, 51, 400]] + 1) % 200
    tokens.tofile(f"{copy}.bin")
    return copy


def test_the_manifest_records_the_hash_of_the_files_as_trained(trained):
    prefix, suite = trained
    data = json.loads((suite / "checkpoints_manifest.json").read_text())["data"]
    assert data["bin_sha256"] == sha256_file(f"{prefix}.bin") and data["idx_sha256"] == sha256_file(f"{prefix}.idx")


def test_train_refuses_damaged_data(trained, tmp_path, capsys):
    bad = damaged_copy(trained[0], tmp_path / "bad")
    out = tmp_path / "out"
    rc, _, err = run_cli(capsys, "train", "--data", bad, "--out", out, "--sizes", "micro-50k", "--steps", 2,
                         "--batch-size", 8, "--quiet")
    line = one_error_line(err)
    assert rc == 2 and "corpus.bin: sha256" in line and "may be damaged" in line
    assert not out.exists()


def test_an_analysis_refuses_damaged_data_before_scoring(trained, tmp_path, capsys):
    prefix, suite = trained
    bad = damaged_copy(prefix, tmp_path / "bad")
    rc, _, err = run_cli(capsys, "memorization", "--manifest", suite, "--data", bad, "--sequences", "0:16",
                         "--out", tmp_path / "m.parquet", "--quiet")
    assert rc == 2 and "may be damaged" in one_error_line(err)
    assert list(tmp_path.glob("m*")) == []  # no store, no table
    # intact data, but not the suite's (another shuffle seed): refused by the manifest's record
    reshuffled = build([make_corpus(tmp_path / "c.txt")], tmp_path / "re" / "corpus", seq_len=63, vocab_size=300,
                       seed=2).prefix
    rc, _, err = run_cli(capsys, "memorization", "--manifest", suite, "--data", reshuffled, "--sequences", "0:16",
                         "--out", tmp_path / "m.parquet", "--quiet")
    assert rc == 2 and "is not the data of suite" in one_error_line(err)


def test_a_hash_is_measured_once_per_version_of_a_file(trained, tmp_path, monkeypatch):
    copy = copy_prefix(trained[0], tmp_path / "c")
    calls = []
    real = fileio.sha256_file
    monkeypatch.setattr(fileio, "sha256_file", lambda p: calls.append(Path(p).name) or real(p))
    check_dataset(copy)
    assert sorted(calls) == ["corpus.bin", "corpus.idx"]
    check_dataset(copy)
    assert len(calls) == 2  # the stamps hold: nothing hashed again
    check_dataset(copy, force=True)
    assert len(calls) == 4  # --verify-data: hashed in full
    tokens = np.fromfile(f"{copy}.bin", dtype=np.uint16)
    tokens[0] = (tokens[0] + 1) % 200
    tokens.tofile(f"{copy}.bin")  # an edit in place: a new mtime
    with pytest.raises(UserError, match="may be damaged"):
        check_dataset(copy)
    assert calls[-1] == "corpus.bin"


def test_data_batch_refuses_ids_outside_the_vocabulary(trained, tmp_path, capsys):
    copy = copy_prefix(trained[0], tmp_path / "c")
    sidecar = Path(f"{copy}.json")
    meta = json.loads(sidecar.read_text())
    top = int(np.fromfile(f"{copy}.bin", dtype=np.uint16)[: 8 * 17].max())
    sidecar.write_text(json.dumps(meta | {"vocab_size": top}))  # the ids of step 0 now reach past it
    rc, _, err = run_cli(capsys, "data", "batch", copy, "--step", 0, "--batch-size", 8, "--out", tmp_path / "b.npy")
    line = one_error_line(err)
    assert rc == 2 and f"holds token id {top}, outside the vocabulary of {top}" in line and "step 0" in line
    assert not (tmp_path / "b.npy").exists()


def broken_suite(suite: Path, folder: Path) -> Path:
    """A copy of the suite with step 2 missing and step 4's weights damaged."""
    copy = folder / "suite"
    shutil.copytree(suite, copy)
    shutil.rmtree(copy / "micro-50k" / "step2")
    weights = copy / "micro-50k" / "step4" / "model.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-5] ^= 0xFF
    weights.write_bytes(bytes(raw))
    return copy


def test_missing_and_damaged_checkpoints_are_found_before_any_scoring(trained, tmp_path, capsys):
    prefix, suite = trained
    copy = broken_suite(suite, tmp_path)
    out = tmp_path / "res"
    out.mkdir()
    for argv in (["memorization", "--data", prefix, "--sequences", "0:16"],
                 ["term-frequency", "--data", prefix, "--shots", "0", "--x2-max", "1"],
                 ["bias", "--probes", "micropile", "--ground-truth", tmp_path / "missing.json"]):
        rc, _, err = run_cli(capsys, argv[0], "--manifest", copy, *argv[1:], "--out", out / "t.parquet", "--quiet")
        line = one_error_line(err)
        assert rc == 2 and "2 of the 5 selected checkpoints are missing or damaged" in line, argv[0]
        assert "micro-50k step 2: folder" in line and "micro-50k step 4:" in line and "--skip-missing" in line
        assert listing(out) == {}, argv[0]  # nothing scored, nothing written


def test_skip_missing_scores_the_rest_and_records_what_it_skipped(trained, tmp_path, capsys):
    from pythia_suite.tables import read_table_meta

    prefix, suite = trained
    copy = broken_suite(suite, tmp_path)
    rc, out, err = run_cli(capsys, "memorization", "--manifest", copy, "--data", prefix, "--sequences", "0:16",
                           "--skip-missing", "--out", tmp_path / "m.parquet", "--quiet")
    assert rc == 0, err
    assert "skipped 2 missing or damaged checkpoint(s) (--skip-missing): micro-50k step 2, micro-50k step 4" in out
    skipped = read_table_meta(tmp_path / "m.parquet")["config"]["skipped_checkpoints"]
    assert [(s["model"], s["step"]) for s in skipped] == [("micro-50k", 2), ("micro-50k", 4)]
    import pandas as pd

    assert sorted(pd.read_parquet(tmp_path / "m.parquet")["step"].unique()) == [0, 1, 8]
    with pytest.raises(UserError, match="none of the 2 selected checkpoints can be scored"):
        select(Suite.load(copy), steps=[2, 4], skip_missing=True)


def test_one_writer_per_store_and_a_dead_writers_lock_is_taken_over(tmp_path):
    store = tmp_path / "m.zarr"
    with store_lock(store):
        with pytest.raises(UserError, match=rf"{store} is being written by another process \(pid {os.getpid()} "):
            with store_lock(store):
                pass
    assert not (tmp_path / "m.zarr.lock").exists()  # released
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / "m.zarr.lock").write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname()}))
    with store_lock(store) as lock:  # its writer is gone (killed): taken over
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    with pytest.raises(KeyboardInterrupt):
        with store_lock(store):
            raise KeyboardInterrupt
    assert not (tmp_path / "m.zarr.lock").exists()
