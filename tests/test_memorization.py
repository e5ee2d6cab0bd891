"""The memorization study (`analyses.memorization`, `pythia-suite memorization`): the resumable zarr
store, seen vs unseen sequences, the Poisson order test, predictability, sequence choice, the CLI.

    .venv/bin/python -m pytest tests/test_memorization.py -q

One tiny suite is trained once per module: the cyclic-word corpus of tests/_train_helpers.py built
into 64-token items (seq_len 63: prompt 32 + continuation 32), micro-50k and micro-200k, 12 steps
of batch 8, checkpoints 0, 1, 2, 4, 8, 12 (so step 4 has seen sequences 0..31 and step 8 0..63).
"""

from __future__ import annotations

import os
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import analyses.memorization as mem
from _train_helpers import build_data, make_corpus, one_error_line, run_cli, run_train
from pythia_suite import fileio
from pythia_suite.checkpoints import Suite
from pythia_suite.eval.continuation import score_sequences
from pythia_suite.data import TrainingOrder, build
from pythia_suite.errors import UserError
from pythia_suite.tables import columns, read_table_meta

BATCH = 8
SIZES = ["micro-50k", "micro-200k"]
STEPS = [4, 8, 12]  # the steps the store tests use
SEQUENCES = np.arange(64)
CHUNK = 16  # 4 chunks of the 64 sequences


@pytest.fixture(scope="module")
def suite_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("mem_suite")
    corpus = make_corpus(folder / "corpus.txt", n_docs=600)
    prefix = build([corpus], folder / "data" / "corpus", seq_len=63, vocab_size=300, seed=1).prefix
    run_train(prefix, folder / "suite", sizes=SIZES, steps=12, batch_size=BATCH, checkpoint_every=4)
    return folder


@pytest.fixture(scope="module")
def manifest(suite_dir) -> Path:
    return suite_dir / "suite" / "checkpoints_manifest.json"


@pytest.fixture(scope="module")
def prefix(suite_dir) -> Path:
    return suite_dir / "data" / "corpus"


@pytest.fixture(scope="module")
def suite(manifest) -> Suite:
    return Suite.load(manifest)


@pytest.fixture(scope="module")
def order(prefix) -> TrainingOrder:
    return TrainingOrder(prefix, batch_size=BATCH)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, suite, order) -> mem.Store:
    """An uninterrupted run over STEPS x SIZES x SEQUENCES in chunks of CHUNK (read-only)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(mem, "CHUNK", CHUNK)
        return mem.run(suite, order, SEQUENCES, tmp_path_factory.mktemp("ref") / "m.zarr", steps=STEPS,
                       progress=False)


def counting_scorer(monkeypatch, fail_after: int | None = None) -> list[int]:
    """Replace the study's score_sequences with one that counts its calls (one per chunk) and,
    with `fail_after`, raises KeyboardInterrupt (a kill) on call number fail_after + 1."""
    calls: list[int] = []

    def scorer(model, tokens, **kw):
        if fail_after is not None and len(calls) == fail_after:
            raise KeyboardInterrupt
        calls.append(len(tokens))
        return score_sequences(model, tokens, **kw)

    monkeypatch.setattr(mem, "score_sequences", scorer)
    return calls


# ---- the store ------------------------------------------------------------------------------------


def test_store_shape_chunks_and_values(reference, suite, order):
    g = reference.group
    for name in ("matched", "prefix"):
        assert g[name].shape == (len(SIZES), len(STEPS), len(SEQUENCES))
        assert g[name].chunks == (1, 1, CHUNK) and g[name].dtype == np.uint8
    assert g["done"].shape == (len(SIZES), len(STEPS), len(SEQUENCES) // CHUNK) and g["done"][:].all()
    assert np.array_equal(g["sequence"][:], SEQUENCES)
    assert g.attrs["models"] == SIZES and g.attrs["steps"] == STEPS
    matched, prefix = g["matched"][:], g["prefix"][:]
    assert matched.max() <= 32 and (prefix <= matched).all()
    # the stored numbers are those of scoring each checkpoint directly
    for mi, model in enumerate(SIZES):
        for si, step in enumerate(STEPS):
            s = score_sequences(suite.load_model(model, step), order.sequences(SEQUENCES))
            assert np.array_equal(matched[mi, si], s.matched) and np.array_equal(prefix[mi, si], s.prefix)


def test_interrupted_run_resumes_only_missing_chunks(reference, suite, order, tmp_path, monkeypatch):
    monkeypatch.setattr(mem, "CHUNK", CHUNK)
    path = tmp_path / "m.zarr"
    n_chunks = len(SIZES) * len(STEPS) * (len(SEQUENCES) // CHUNK)
    calls = counting_scorer(monkeypatch, fail_after=5)
    with pytest.raises(KeyboardInterrupt):
        mem.run(suite, order, SEQUENCES, path, steps=STEPS, progress=False)
    assert len(calls) == 5
    store = mem.Store.open(path, SIZES, STEPS, SEQUENCES, reference.group.attrs["identity"])
    assert store.group["done"][:].sum() == 5
    assert (store.group["matched"][:] == mem.NOT_DONE).sum() == (n_chunks - 5) * CHUNK

    calls = counting_scorer(monkeypatch)
    store = mem.run(suite, order, SEQUENCES, path, steps=STEPS, progress=False)
    assert len(calls) == n_chunks - 5 and all(c == CHUNK for c in calls)
    for name in ("matched", "prefix", "done", "sequence"):
        assert np.array_equal(store.group[name][:], reference.group[name][:]), name

    calls = counting_scorer(monkeypatch)  # a finished store: nothing to do
    mem.run(suite, order, SEQUENCES, path, steps=STEPS, progress=False)
    assert calls == []


def test_interrupted_mid_write_counts_only_finished_chunks(reference, suite, order, tmp_path, monkeypatch):
    """A kill between writing a chunk's data and its done flag: the chunk is redone."""
    monkeypatch.setattr(mem, "CHUNK", CHUNK)
    path = tmp_path / "m.zarr"
    write = mem.Store.write
    writes = []

    def dying_write(self, mi, si, ci, matched, prefix):
        if len(writes) == 3:
            self.group["matched"][mi, si, self.chunk_slices()[ci]] = matched  # data, but no done flag
            raise KeyboardInterrupt
        writes.append(ci)
        write(self, mi, si, ci, matched, prefix)

    monkeypatch.setattr(mem.Store, "write", dying_write)
    with pytest.raises(KeyboardInterrupt):
        mem.run(suite, order, SEQUENCES, path, steps=STEPS, progress=False)
    monkeypatch.setattr(mem.Store, "write", write)
    calls = counting_scorer(monkeypatch)
    store = mem.run(suite, order, SEQUENCES, path, steps=STEPS, progress=False)
    assert len(calls) == len(SIZES) * len(STEPS) * 4 - 3
    assert np.array_equal(store.group["matched"][:], reference.group["matched"][:])


def test_store_of_another_run_is_refused(reference, suite, order, tmp_path, monkeypatch):
    monkeypatch.setattr(mem, "CHUNK", CHUNK)
    path = tmp_path / "m.zarr"
    mem.run(suite, order, SEQUENCES[:16], path, models=["micro-50k"], steps=[4, 8], progress=False)
    for kw in (dict(sequences=SEQUENCES[:32], models=["micro-50k"], steps=[4, 8]),  # other sequences
               dict(sequences=SEQUENCES[:16], models=SIZES, steps=[4, 8]),  # other models
               dict(sequences=SEQUENCES[:16], models=["micro-50k"], steps=[4])):  # other steps
        calls = counting_scorer(monkeypatch)
        with pytest.raises(UserError, match="another run"):
            mem.run(suite, order, kw["sequences"], path, models=kw["models"], steps=kw["steps"], progress=False)
        assert calls == []
    other_order = TrainingOrder(order.dataset, batch_size=4)  # other data identity
    with pytest.raises(UserError, match="another run"):
        mem.run(suite, other_order, SEQUENCES[:16], path, models=["micro-50k"], steps=[4, 8], progress=False)
    (tmp_path / "not_zarr").mkdir()
    (tmp_path / "not_zarr" / "x.txt").write_text("hello")
    with pytest.raises(UserError, match="another run"):
        mem.run(suite, order, SEQUENCES[:16], tmp_path / "not_zarr", steps=[4], progress=False)


def test_run_rejects_unknown_models_and_steps(suite, order, tmp_path):
    with pytest.raises(UserError, match="unknown model 'micro-9m'.*micro-50k"):
        mem.run(suite, order, SEQUENCES, tmp_path / "m.zarr", models=["micro-9m"], progress=False)
    with pytest.raises(UserError, match="unknown step 5 .*nearest: 4, 8"):
        mem.run(suite, order, SEQUENCES, tmp_path / "m.zarr", steps=[4, 5], progress=False)
    assert not (tmp_path / "m.zarr").exists()


# ---- seen and unseen ---------------------------------------------------------------------------------


def test_unseen_sequences_are_reported_apart(reference, suite, order):
    per_seq = mem.per_sequence(reference, suite, order)
    assert len(per_seq) == len(SIZES) * len(STEPS) * len(SEQUENCES)
    assert list(per_seq.columns) == list(columns("memorization_sequences"))
    assert (per_seq["seen"] == (per_seq["sequence"] < per_seq["step"] * BATCH)).all()
    assert not per_seq.loc[per_seq["step"] == 4, "seen"].iloc[32:64].any()
    assert (per_seq["score"] == per_seq["matched"] / 32).all()
    assert (per_seq["tokens_seen"] == per_seq["step"] * BATCH * 63).all()

    summary, hist = mem.summarize(per_seq)
    counts = summary.set_index(["model", "step", "seen"])["n_sequences"]
    for model in SIZES:
        assert counts[(model, 4, True)] == 32 and counts[(model, 4, False)] == 32
        assert counts[(model, 8, True)] == 64 and (model, 8, False) not in counts.index
        assert counts[(model, 12, True)] == 64 and (model, 12, False) not in counts.index
    row = summary[(summary["model"] == "micro-50k") & (summary["step"] == 4) & ~summary["seen"]].iloc[0]
    part = per_seq[(per_seq["model"] == "micro-50k") & (per_seq["step"] == 4) & (per_seq["sequence"] >= 32)]
    assert row["n_memorized"] == (part["matched"] == 32).sum()
    assert row["mean_score"] == pytest.approx(part["score"].mean())
    assert row["memorized_frac"] == pytest.approx(row["n_memorized"] / 32)
    assert hist.groupby(["model", "step", "seen"])["n_sequences"].sum().equals(
        summary.set_index(["model", "step", "seen"])["n_sequences"])


def test_per_sequence_skips_unfinished_chunks(suite, order, tmp_path, monkeypatch):
    monkeypatch.setattr(mem, "CHUNK", CHUNK)
    counting_scorer(monkeypatch, fail_after=2)
    path = tmp_path / "m.zarr"
    with pytest.raises(KeyboardInterrupt):
        mem.run(suite, order, SEQUENCES, path, models=["micro-50k"], steps=[8], progress=False)
    identity = {"suite": suite.name, "data": order.dataset.prefix.name, "batch_size": BATCH, "data_seed": None}
    store = mem.Store.open(path, ["micro-50k"], [8], SEQUENCES, identity)
    per_seq = mem.per_sequence(store, suite, order)
    assert list(per_seq["sequence"]) == list(range(2 * CHUNK))


# ---- the Poisson test of training order ----------------------------------------------------------------


def test_poisson_test_accepts_poisson_counts():
    for seed in range(5):
        counts = np.random.default_rng(seed).poisson(3, 400)
        res = mem.poisson_test(counts)
        assert res["ks_pvalue"] > 0.05, seed
        assert res["n_bins"] == 400 and res["mean"] == pytest.approx(counts.mean())
        qq = res["qq"]
        assert qq.shape == (400, 3) and list(qq.columns) == ["quantile", "observed", "poisson"]
        assert np.array_equal(qq["observed"], np.sort(counts)) and qq["quantile"].is_monotonic_increasing
        assert (np.abs(qq["observed"] - qq["poisson"]) <= 2).mean() > 0.95  # the Q-Q points lie on the line


def test_poisson_test_rejects_clustered_counts():
    counts = np.zeros(400, dtype=np.int64)
    counts[::10] = 30  # the same mean (3), all of it in bursts
    res = mem.poisson_test(counts)
    assert res["mean"] == 3 and res["ks_pvalue"] < 1e-3 and res["ks_statistic"] > 0.5
    overdispersed = np.random.default_rng(0).negative_binomial(1, 0.25, 400)  # mean 3, variance 12
    assert mem.poisson_test(overdispersed)["ks_pvalue"] < 1e-3


def test_poisson_test_degenerate_inputs():
    for counts in ([], [4], [0, 0, 0]):
        res = mem.poisson_test(np.array(counts))
        assert np.isnan(res["ks_pvalue"]) and res["qq"].empty


def test_training_order_test_bins_seen_sequences():
    rows = []
    for seq in range(40):
        rows.append({"suite": "s", "model": "m", "params": 1, "step": 5, "tokens_seen": 10, "sequence": seq,
                     "seen": seq < 32, "matched": 32 if seq % 4 == 0 or seq >= 32 else 3})
        rows.append({"suite": "s", "model": "m", "params": 1, "step": 1, "tokens_seen": 2, "sequence": seq,
                     "seen": True, "matched": 0})
    tests, qq = mem.training_order_test(pd.DataFrame(rows), bin_size=8)
    assert len(tests) == 1
    t = tests.iloc[0]
    assert t["step"] == 5 and t["n_bins"] == 4 and t["mean_per_bin"] == 2  # unseen 32..39 left out
    assert t["ks_statistic"] > 0 and 0 < t["ks_pvalue"] <= 1
    assert len(qq) == 4 and (qq["observed"] == 2).all() and (qq["model"] == "m").all()


# ---- predictability --------------------------------------------------------------------------------


def test_predictability_confusion_over_the_sequences_both_checkpoints_saw():
    # target: big@10 (saw 0..9); predictors: big@5 (saw only 0..5), small@10 (saw 0..9).
    # memorized flags per sequence 0..9 (big@5 is compared on 0..5 only: it has not seen 6..9)
    target = [1, 1, 0, 0, 1, 0, 1, 1, 1, 1]
    early = [1, 0, 1, 0, 0, 0, 1, 1, 1, 1]
    small = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    rows = []
    for model, step, flags, seen_upto, params in (("big", 10, target, 10, 100), ("big", 5, early, 6, 100),
                                                  ("small", 10, small, 10, 10)):
        for seq, f in enumerate(flags):
            rows.append({"suite": "s", "model": model, "params": params, "step": step, "tokens_seen": step * 7,
                         "sequence": seq, "seen": seq < seen_upto, "matched": 32 if f else 31})
    per_seq = pd.DataFrame(rows).sample(frac=1, random_state=0)  # order must not matter
    res = mem.predictability(per_seq, ("big", 10), [("big", 5), ("small", 10)])
    assert list(res.columns) == list(columns("memorization_predictability"))
    early_row, small_row = res.iloc[0], res.iloc[1]
    assert (early_row["predictor_model"], early_row["predictor_step"]) == ("big", 5)
    assert res["n_sequences"].tolist() == [6, 10]
    assert res[["suite", "model", "params", "step", "tokens_seen"]].iloc[0].tolist() == ["s", "big", 100, 10, 70]
    # sequences 0..5: target 1 1 0 0 1 0; early 1 0 1 0 0 0
    assert early_row[["tp", "fp", "fn", "tn"]].tolist() == [1, 1, 2, 2]
    assert early_row["precision"] == pytest.approx(1 / 2) and early_row["recall"] == pytest.approx(1 / 3)
    # sequences 0..9: target 1 1 0 0 1 0 1 1 1 1; small 1 1 1 1 0 0 0 0 0 0
    assert small_row[["tp", "fp", "fn", "tn"]].tolist() == [2, 2, 5, 1]
    assert small_row["precision"] == pytest.approx(2 / 4) and small_row["recall"] == pytest.approx(2 / 7)
    # a predictor that saw nothing (step 0) compares no sequence and leaves the others intact
    step0 = per_seq[(per_seq["model"] == "big") & (per_seq["step"] == 5)].assign(step=0, seen=False)
    res = mem.predictability(pd.concat([per_seq, step0]), ("big", 10), [("big", 0), ("small", 10)])
    assert res["n_sequences"].tolist() == [0, 10] and res.iloc[1][["tp", "fp", "fn", "tn"]].tolist() == [2, 2, 5, 1]
    # no memorized prediction: precision undefined
    res = mem.predictability(per_seq.assign(matched=0), ("big", 10), [("small", 10)])
    assert np.isnan(res.iloc[0]["precision"]) and np.isnan(res.iloc[0]["recall"])


# ---- which sequences -------------------------------------------------------------------------------


def test_choose_sequences():
    assert mem.choose_sequences(100).tolist() == list(range(100))
    assert mem.choose_sequences(100, "10:20").tolist() == list(range(10, 20))
    assert mem.choose_sequences(100, ":5").tolist() == list(range(5))
    assert mem.choose_sequences(100, "95:").tolist() == list(range(95, 100))
    a = mem.choose_sequences(1000, sample=50, seed=3)
    assert len(a) == 50 and np.array_equal(a, np.unique(a)) and a.min() >= 0 and a.max() < 1000
    assert np.array_equal(a, mem.choose_sequences(1000, sample=50, seed=3))
    assert not np.array_equal(a, mem.choose_sequences(1000, sample=50, seed=4))
    assert mem.choose_sequences(10, sample=10).tolist() == list(range(10))
    for bad in ("x", "1:2:3", "20:10", "5:5", "-1:10", "0:101", "a:b"):
        with pytest.raises(UserError, match="--sequences"):
            mem.choose_sequences(100, bad)
    with pytest.raises(UserError, match="not both"):
        mem.choose_sequences(100, "0:10", sample=5)
    for n in (0, 101, -1):
        with pytest.raises(UserError, match="--sample"):
            mem.choose_sequences(100, sample=n)


# ---- the command line ------------------------------------------------------------------------------


def test_cli_writes_summary_store_and_per_sequence(manifest, prefix, suite, tmp_path, capsys):
    rc, out, err = run_cli(capsys, "memorization", "--manifest", manifest, "--data", prefix, "--sequences", "0:64",
                           "--out", tmp_path / "m.parquet", "--per-sequence", tmp_path / "ps.parquet", "--quiet")
    assert rc == 0, err
    assert "m.parquet" in out and "memorized" in out
    summary = pd.read_parquet(tmp_path / "m.parquet")
    assert list(summary.columns) == list(columns("memorization"))
    assert list(summary.columns[:5]) == ["suite", "model", "params", "step", "tokens_seen"]
    assert set(summary["model"]) == set(SIZES) and set(summary["step"]) == {0, 1, 2, 4, 8, 12}
    assert (summary.groupby(["model", "step"])["n_sequences"].sum() == 64).all()
    meta = read_table_meta(tmp_path / "m.parquet")
    assert meta["schema"] == "memorization" and meta["version"] and meta["config"]["sequences"] == "0:64"

    import zarr

    group = zarr.open_group(tmp_path / "m.zarr", mode="r")
    assert group["matched"].shape == (2, 6, 64) and group["done"][:].all()
    per_seq = pd.read_parquet(tmp_path / "ps.parquet")
    assert {"model", "step", "sequence", "matched", "score", "prefix_match"} <= set(per_seq.columns)
    assert len(per_seq) == 2 * 6 * 64
    assert read_table_meta(tmp_path / "ps.parquet")["schema"] == "memorization_sequences"
    hist = pd.read_parquet(tmp_path / "m_histogram.parquet")
    assert list(hist.columns) == list(columns("memorization_histogram"))

    # the per-sequence table is the store, read back
    mi, si = SIZES.index("micro-200k"), 4  # step 8
    rows = per_seq[(per_seq["model"] == "micro-200k") & (per_seq["step"] == 8)].sort_values("sequence")
    assert np.array_equal(rows["matched"], group["matched"][mi, si])
    assert np.array_equal(rows["prefix_match"], group["prefix"][mi, si])

    # a rerun finds everything done and rewrites the same tables
    rc, _, err = run_cli(capsys, "memorization", "--manifest", manifest, "--data", prefix, "--sequences", "0:64",
                         "--out", tmp_path / "m.parquet", "--quiet")
    assert rc == 0, err
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "m.parquet"), summary)


def test_cli_sample_models_steps(manifest, prefix, order, tmp_path, capsys):
    rc, _, err = run_cli(capsys, "memorization", "--manifest", manifest, "--data", prefix, "--sample", "20",
                         "--seed", "1", "--models", "micro-50k", "--steps", "4", "12", "--out", tmp_path / "m.parquet",
                         "--quiet")
    assert rc == 0, err
    summary = pd.read_parquet(tmp_path / "m.parquet")
    assert set(summary["model"]) == {"micro-50k"} and set(summary["step"]) == {4, 12}
    assert (summary.groupby("step")["n_sequences"].sum() == 20).all()
    import zarr

    seqs = zarr.open_group(tmp_path / "m.zarr", mode="r")["sequence"][:]
    trained = order.sequences_seen(Suite.load(manifest).steps("micro-50k")[-1])
    assert trained < order.num_steps * BATCH and seqs.max() < trained  # drawn from trained sequences only
    assert np.array_equal(seqs, mem.choose_sequences(order.num_steps * BATCH, sample=20, seed=1, n_trained=trained))


@pytest.fixture(scope="module")
def short_data(tmp_path_factory) -> Path:
    """A dataset of 17-token items: too short for prompt 32 + continuation 32."""
    return build_data(tmp_path_factory.mktemp("short"))


@pytest.fixture(scope="module")
def other_data(tmp_path_factory) -> Path:
    """Items of the suite's length, but another shuffle: not the data the suite was trained on."""
    folder = tmp_path_factory.mktemp("other")
    corpus = make_corpus(folder / "corpus.txt", n_docs=600)
    return build([corpus], folder / "data" / "corpus", seq_len=63, vocab_size=300, seed=2).prefix


@pytest.mark.parametrize("case", ["unknown-model", "unknown-step", "bad-sequences", "sequences-range", "both",
                                  "not-parquet", "per-sequence-not-parquet", "missing-manifest", "missing-data",
                                  "short-data", "sample-too-large", "other-data", "seed-without-sample",
                                  "batch-size-disagrees", "per-sequence-is-out", "per-sequence-is-histogram",
                                  "device-unavailable", "device-unknown"])
def test_cli_errors(case, manifest, prefix, short_data, other_data, tmp_path, capsys):
    out = tmp_path / "m.parquet"
    args = {"--manifest": manifest, "--data": prefix, "--sequences": "0:64", "--out": out}
    extra: list = []
    expect = {
        "unknown-model": "unknown model 'micro-9m'.*micro-50k, micro-200k",
        "unknown-step": "unknown step 5 .*nearest: 4, 8",
        "bad-sequences": "--sequences must be START:END",
        "sequences-range": "out of range",
        "both": "not allowed with argument",
        "not-parquet": r"m\.csv: tables are written as \.parquet",
        "per-sequence-not-parquet": r"ps\.csv: tables are written as \.parquet",
        "missing-manifest": "manifest not found",
        "missing-data": "nope",
        "short-data": "is not the data of suite 'suite': its items hold 16\\+1 tokens, the suite's seq_len is 63",
        "sample-too-large": "--sample 100000 out of range",
        "other-data": r"is not the data of suite 'suite': corpus\.bin sha256 .* differs from the .* it was trained on",
        "seed-without-sample": "--seed only seeds --sample",
        "batch-size-disagrees": "--batch-size 4 disagrees with the batch size 8",
        "per-sequence-is-out": "--per-sequence .*m.parquet would overwrite one of the summary tables",
        "per-sequence-is-histogram": "--per-sequence .*m_histogram.parquet would overwrite",
        "device-unavailable": "--device cuda: .*(CPU-only build|finds no GPU)",
        "device-unknown": "--device 'gpu0' is not a torch device",
    }[case]
    if case == "unknown-model":
        extra = ["--models", "micro-9m"]
    elif case == "unknown-step":
        extra = ["--steps", "4", "5"]
    elif case == "bad-sequences":
        args["--sequences"] = "first:last"
    elif case == "sequences-range":
        args["--sequences"] = "0:100000"
    elif case == "both":
        extra = ["--sample", "4"]
    elif case == "not-parquet":
        args["--out"] = tmp_path / "m.csv"
    elif case == "per-sequence-not-parquet":
        extra = ["--per-sequence", tmp_path / "ps.csv"]
    elif case == "missing-manifest":
        args["--manifest"] = tmp_path / "nope" / "checkpoints_manifest.json"
    elif case == "missing-data":
        args["--data"] = tmp_path / "nope"
    elif case == "short-data":
        args["--data"] = short_data
    elif case == "sample-too-large":
        del args["--sequences"]
        extra = ["--sample", "100000"]
    elif case == "other-data":
        args["--data"] = other_data
    elif case == "seed-without-sample":
        extra = ["--seed", "3"]
    elif case == "batch-size-disagrees":
        extra = ["--batch-size", "4"]
    elif case == "per-sequence-is-out":
        extra = ["--per-sequence", out]
    elif case == "per-sequence-is-histogram":
        extra = ["--per-sequence", tmp_path / "m_histogram.parquet"]
    elif case == "device-unavailable":
        import torch

        if torch.cuda.is_available():
            pytest.skip("a GPU is available here")
        extra = ["--device", "cuda"]
    elif case == "device-unknown":
        extra = ["--device", "gpu0"]
    argv = ["memorization", *(x for kv in args.items() for x in kv), *extra, "--quiet"]
    rc, _, err = run_cli(capsys, *argv)
    assert rc == 2
    line = one_error_line(err)
    assert re.search(expect, line), line
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing half-written


def test_cli_metadata_records_what_decided_the_numbers(manifest, prefix, tmp_path, capsys):
    rc, out, err = run_cli(capsys, "memorization", "--manifest", manifest, "--data", prefix, "--sample", "16",
                           "--seed", "5", "--models", "micro-50k", "--steps", "12", "--out", tmp_path / "m.parquet",
                           "--quiet")
    assert rc == 0, err
    meta = read_table_meta(tmp_path / "m.parquet")
    # one checkpoint: nothing can predict it (and a tiny model memorizes nothing), and the summary
    # line and the metadata both say so
    summary = pd.read_parquet(tmp_path / "m.parquet")
    order_test = pd.read_parquet(tmp_path / "m_order_test.parquet")
    predict = pd.read_parquet(tmp_path / "m_predictability.parquet")
    assert len(predict) == 0 and list(predict.columns) == list(columns("memorization_predictability"))
    assert meta["notes"] == mem.degenerate_notes(summary, order_test, predict)
    assert any(n.startswith(("nothing memorized", "predictability is empty")) for n in meta["notes"])
    assert all(f"note: {n}" in out for n in meta["notes"])
    assert meta["notes"] == read_table_meta(tmp_path / "m_histogram.parquet")["notes"]
    assert meta["config"]["batch_size"] == BATCH  # the manifest's, not a default
    assert meta["config"]["allow_eos"] is False and meta["config"]["data_seed"] is None
    assert meta["seeds"] == {"data": None, "sample": 5}
    import zarr

    assert zarr.open_group(tmp_path / "m.zarr", mode="r").attrs["allow_eos"] is False


def test_store_refuses_the_other_end_of_text_choice(suite, order, tmp_path, monkeypatch):
    monkeypatch.setattr(mem, "CHUNK", CHUNK)
    path = tmp_path / "m.zarr"
    mem.run(suite, order, SEQUENCES[:16], path, models=["micro-50k"], steps=[4], progress=False)
    calls = counting_scorer(monkeypatch)
    with pytest.raises(UserError, match="scored without --allow-eos .*same choice"):
        mem.run(suite, order, SEQUENCES[:16], path, models=["micro-50k"], steps=[4], progress=False, allow_eos=True)
    other = tmp_path / "eos.zarr"
    mem.run(suite, order, SEQUENCES[:16], other, models=["micro-50k"], steps=[4], progress=False, allow_eos=True)
    with pytest.raises(UserError, match="scored with --allow-eos"):
        mem.run(suite, order, SEQUENCES[:16], other, models=["micro-50k"], steps=[4], progress=False)
    assert calls == [16]


def _write_flags(path: str, step_index: int, n_chunks: int) -> None:
    store = mem.Store.open(path, ["m"], list(range(8)), np.arange(n_chunks * 2), {"test": 1})
    for ci in range(n_chunks):
        store.write(0, step_index, ci, np.zeros(2, np.uint8), np.zeros(2, np.uint8))


def test_concurrent_writers_lose_no_done_flags(tmp_path, monkeypatch):
    """Eight processes finish the chunks of one model's eight steps at once: every flag survives
    (with flags sharing a zarr chunk, each write replaced the others' flags)."""
    import multiprocessing

    monkeypatch.setattr(mem, "CHUNK", 2)
    n_chunks = 24
    path = str(tmp_path / "m.zarr")
    mem.Store.open(path, ["m"], list(range(8)), np.arange(n_chunks * 2), {"test": 1})
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_write_flags, args=(path, i, n_chunks)) for i in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert all(p.exitcode == 0 for p in procs)
    import zarr

    group = zarr.open_group(path, mode="r")
    assert int(group["done"][:].sum()) == 8 * n_chunks
    assert (group["matched"][:] == 0).all()


def test_ctrl_c_is_one_line_exit_130_and_leaves_nothing(manifest, prefix, tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(mem, "score_sequences", interrupted)  # pressed during the first chunk
    out = tmp_path / "results"
    rc, _, err = run_cli(capsys, "memorization", "--manifest", manifest, "--data", prefix, "--sequences", "0:8",
                         "--out", out / "m.parquet", "--quiet")
    assert rc == 130 and one_error_line(err) == "error: interrupted"
    assert not out.exists() or list(out.iterdir()) == []  # no empty store, no partial table



def test_sigterm_is_one_line_exit_143_releases_the_lock_and_leaves_nothing(manifest, prefix, tmp_path, capsys,
                                                                            monkeypatch):
    """A scheduler's kill (SIGTERM) runs every `finally` like Ctrl-C: no lock, no empty store."""
    import signal

    before = signal.getsignal(signal.SIGTERM)

    def killed(*args, **kw):
        os.kill(os.getpid(), signal.SIGTERM)  # delivered to the CLI's handler before this returns
        raise AssertionError("SIGTERM did not stop the run")

    monkeypatch.setattr(mem, "score_sequences", killed)
    out = tmp_path / "results"
    rc, _, err = run_cli(capsys, "memorization", "--manifest", manifest, "--data", prefix, "--sequences", "0:8",
                         "--out", out / "m.parquet", "--quiet")
    assert rc == 143 and one_error_line(err) == "error: terminated (SIGTERM)"
    assert not out.exists() or list(out.iterdir()) == []  # no store, no table, no STORE.lock
    assert signal.getsignal(signal.SIGTERM) is before  # the CLI's handler is gone again

# ---- on a Dask cluster (127.0.0.1 only) ------------------------------------------------------------


@pytest.fixture(scope="module")
def client():
    pytest.importorskip("distributed")
    from pythia_suite.engines import dask_client

    with dask_client(workers=2) as c:
        yield c


def test_dask_workers_fill_the_same_store_as_serial(reference, suite, order, tmp_path, monkeypatch, client):
    """Two worker processes writing disjoint chunks of the same (model, step) rows: the store is
    the serial one, every done flag set; a second run finds nothing to do."""
    monkeypatch.setattr(mem, "CHUNK", CHUNK)
    path = tmp_path / "m.zarr"
    store = mem.run(suite, order, SEQUENCES, path, steps=STEPS, progress=False, client=client)
    for name in ("matched", "prefix", "done"):
        assert np.array_equal(store.group[name][:], reference.group[name][:]), name
    assert store.group["done"][:].all()
    calls = counting_scorer(monkeypatch)
    mem.run(suite, order, SEQUENCES, path, steps=STEPS, progress=False)
    assert calls == []


def test_a_killed_driver_resumes_and_a_killed_worker_is_retried(reference, suite, order, tmp_path, monkeypatch,
                                                                client):
    """Half the store done (a driver killed midway), then the rest as Dask tasks of which the first
    SIGKILLs its worker: Dask reruns it elsewhere and the store is identical to the serial one."""
    from _dask_helpers import killed_once

    from pythia_suite.engines import run_tasks

    monkeypatch.setattr(mem, "CHUNK", CHUNK)
    path = tmp_path / "m.zarr"
    mem.run(suite, order, SEQUENCES, path, steps=STEPS[:1], progress=False)  # another store: other steps
    path = tmp_path / "k.zarr"
    identity = {"suite": suite.name, "data": order.dataset.prefix.name, "batch_size": order.batch_size,
                "data_seed": order.seed}
    store = mem.Store.open(path, SIZES, STEPS, SEQUENCES, identity)
    net = suite.load_model(SIZES[0], STEPS[0])
    for ci in range(2):  # what the killed driver had finished
        mem._score_chunk(store, net, order, 0, 0, ci, None, False)
    tasks = [mem.Group(suite.manifest, str(suite.root), suite.source, str(order.dataset.prefix), order.batch_size,
                       order.seed, str(path), m, s, mi, si, tuple(range(4)), "cpu", None, False)
             for mi, m in enumerate(SIZES) for si, s in enumerate(STEPS)]
    marker = tmp_path / "killed"
    assert run_tasks(client, killed_once(str(marker), mem.score_group), tasks) == [4] * len(tasks)
    assert marker.exists()  # one worker really died
    for name in ("matched", "prefix", "done"):
        assert np.array_equal(store.group[name][:], reference.group[name][:]), name
    assert list(mem.run(suite, order, SEQUENCES, path, steps=STEPS, progress=False).group["done"][:].ravel()) \
        == [True] * (len(SIZES) * len(STEPS) * 4)


def test_a_task_whose_driver_lost_the_lock_stops_before_scoring(suite, order, tmp_path, monkeypatch):
    """A task left on a shared cluster by a killed driver: the rerun holds the store's lock now,
    so the task writes nothing more (it would only compete with the rerun)."""
    monkeypatch.setattr(mem, "CHUNK", CHUNK)
    path = tmp_path / "k.zarr"
    identity = {"suite": suite.name, "data": order.dataset.prefix.name, "batch_size": order.batch_size,
                "data_seed": order.seed}
    store = mem.Store.open(path, SIZES, STEPS, SEQUENCES, identity)
    group = mem.Group(suite.manifest, str(suite.root), suite.source, str(order.dataset.prefix), order.batch_size,
                      order.seed, str(path), SIZES[0], STEPS[0], 0, 0, (0, 1), "cpu", None, False)
    with fileio.store_lock(path) as lock:  # the rerun's lock; the task was scheduled under the killed run's
        stale = replace(group, lock=str(lock), holder='{"pid": 1, "host": "gone"}\n')
        assert mem.score_group(stale) == 0 and not store.group["done"][:].any()
        assert mem.score_group(replace(group, lock=str(lock), holder=fileio.lock_holder(lock))) == 2
    assert store.group["done"][0, 0, :2].all()

def test_cli_workers_match_serial(manifest, prefix, tmp_path, capsys):
    pytest.importorskip("distributed")
    args = ["memorization", "--manifest", manifest, "--data", prefix, "--sequences", "0:64", "--steps", "4", "12",
            "--quiet"]
    assert run_cli(capsys, *args, "--out", tmp_path / "serial.parquet")[0] == 0
    rc, _, err = run_cli(capsys, *args, "--out", tmp_path / "dask.parquet", "--workers", "2")
    assert rc == 0, err
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "dask.parquet"), pd.read_parquet(tmp_path / "serial.parquet"))
    import zarr

    a, b = (zarr.open_group(tmp_path / f"{n}.zarr", mode="r") for n in ("serial", "dask"))
    assert np.array_equal(a["matched"][:], b["matched"][:]) and np.array_equal(a["prefix"][:], b["prefix"][:])


@pytest.mark.parametrize("extra, message", [(["--workers", "0"], "--workers 0: give at least 1 worker"),
                                            (["--scheduler", "tcp://127.0.0.1:9", "--scheduler-timeout", "2"],
                                             r"--scheduler tcp://127.0.0.1:9: no Dask scheduler answered within 2 s")])
def test_cli_bad_cluster_options(manifest, prefix, tmp_path, capsys, extra, message):
    pytest.importorskip("distributed")
    rc, _, err = run_cli(capsys, "memorization", "--manifest", manifest, "--data", prefix, "--sequences", "0:8",
                         "--out", tmp_path / "m.parquet", "--quiet", *extra)
    assert rc == 2 and re.search(message, one_error_line(err)), err
    assert list(tmp_path.iterdir()) == []
