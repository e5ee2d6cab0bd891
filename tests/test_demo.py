"""The demo end to end on the tiny preset, and the micro-Pile's ground truth against the built data."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pythia_suite.cli import main
from pythia_suite.data import IndexedDataset, read_sidecar
from pythia_suite.data.build import load_tokenizer
from pythia_suite.demo import run_demo
from pythia_suite.tables import read_table_meta


@pytest.fixture(scope="module")
def demo(tiny_demo):
    return tiny_demo, tiny_demo / "report.md"


def test_demo_writes_report_tables_figures(demo):
    out, report = demo
    text = report.read_text()
    assert "## What was run" in text and "## Training" in text
    assert "Every loss curve falls: yes" in text
    for fig in ("loss_curves", "final_loss"):
        png = out / "figures" / f"{fig}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"(figures/{fig}.png)" in text
    log = pd.read_parquet(out / "tables" / "train_log.parquet")
    assert list(log.columns[:5]) == ["suite", "model", "params", "step", "tokens_seen"]
    assert sorted(log["model"].unique()) == sorted(["micro-50k", "micro-200k", "micro-500k", "micro-1m"])
    assert (log.groupby("model")["step"].max() == 47).all()
    # one training order for every size
    fp = log.pivot(index="step", columns="model", values="fingerprint")
    assert (fp.nunique(axis=1) == 1).all()
    assert read_table_meta(out / "tables" / "train_log.parquet")["schema"] == "train_log"


def test_demo_includes_memorization(demo):
    out, report = demo
    text = report.read_text()
    assert "## Memorization" in text
    tables = out / "tables"
    summary = pd.read_parquet(tables / "memorization.parquet")
    assert list(summary.columns[:5]) == ["suite", "model", "params", "step", "tokens_seen"]
    assert read_table_meta(tables / "memorization.parquet")["schema"] == "memorization"
    assert sorted(summary["model"].unique()) == sorted(["micro-50k", "micro-200k", "micro-500k", "micro-1m"])
    assert (summary.groupby(["model", "step"])["n_sequences"].sum() == 256 + 64).all()  # sample + held-out items
    assert (tables / "memorization.zarr").is_dir()
    canaries = pd.read_parquet(tables / "canary_memorization.parquet")
    assert {"canary", "repeats", "matched", "score", "prefix_match"} <= set(canaries.columns)


def test_demo_includes_bias(demo):
    out, report = demo
    text = report.read_text()
    assert "## Gender bias and the pronoun-swap intervention" in text and "(figures/bias_intervention.png)" in text
    manifest = json.loads((out / "suite" / "checkpoints_manifest.json").read_text())
    rec = {m["name"]: m.get("intervention") for m in manifest["models"]}
    # the tiny corpus has no pronoun in the 3 batches of the last 7%: refused and said, not a copy of the parent
    assert "micro-1m-swap7" not in rec
    assert "The 7% intervention was not trained: --transform pronoun-swap would change nothing" in text
    assert rec["micro-1m-swap21"]["parent"] == "micro-1m" and rec["micro-1m-swap21"]["start_step"] == 48 - 10
    table = pd.read_parquet(out / "tables" / "bias.parquet")
    assert {"micro-1m", "micro-1m-swap21"} <= set(table["model"])
    assert {"micropile_winobias", "micropile_crows", "lambada"} == set(table["benchmark"])
    counts = pd.read_parquet(out / "tables" / "bias_transform_counts.parquet")
    assert (counts.loc[counts["role"] == "source", "whole_word_after"] == 0).all()
    assert set(counts.loc[counts["model"] == "micro-1m-swap21", "step"]) == set(range(38, 48))
    assert counts.loc[counts["role"] == "source", "whole_word_before"].sum() > 0  # it replaced something


def test_demo_report_lists_every_table_and_the_held_out_control(demo):
    out, report = demo
    text = report.read_text()
    for table in sorted((out / "tables").glob("*.parquet")):
        assert f"`tables/{table.name}`" in text, table.name
    assert "`tables/memorization.zarr`" in text
    assert "memorized (held-out)" in text and "never trained on" in text
    assert "0 (control)" in text  # canaries that were never written
    assert "non-embedding" in text and "every `params` below is the total" in text
    assert "Expected shape" not in text  # no fixed sentence claiming a finding
    for fig in ("memorized_over_training", "canary_memorization", "canaries_over_training", "validation_loss"):
        assert f"(figures/{fig}.png)" in text
    val = pd.read_parquet(out / "tables" / "validation_log.parquet")
    assert (val["val_items"] == 64).all() and set(val["model"]) == set(pd.read_parquet(out / "tables" / "train_log.parquet")["model"])
    summary = pd.read_parquet(out / "tables" / "memorization.parquet")
    final = summary[summary["step"] == 48]
    assert (final.loc[~final["seen"], "n_sequences"] == 64).all()  # the held-out items, unseen at the end
    seqs = pd.read_parquet(out / "tables" / "memorization_sequences.parquet")
    trained = seqs.loc[seqs["seen"] & (seqs["step"] == 48), "sequence"]
    assert trained.max() > 0.7 * 48 * 8  # sampled across the whole order, not its first sequences


def test_demo_rerun_skips_finished_work(demo, capsys):
    out, report = demo
    weights = out / "suite" / "micro-50k" / "step48" / "model.safetensors"
    before = {p: p.stat().st_mtime_ns for p in (weights, out / "data" / "micropile.bin", out / "corpus" / "micropile.jsonl")}
    run_demo(out, preset="tiny", progress=False)
    assert {p: p.stat().st_mtime_ns for p in before} == before


def test_demo_other_settings_refused(demo, capsys):
    out, _ = demo
    assert main(["demo", "--out", str(out), "--preset", "default", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "--fresh" in err[0]


def _stream(prefix) -> np.ndarray:
    """The packed token stream before the shuffle (the dropped tail excluded)."""
    ds = IndexedDataset(prefix)
    meta = read_sidecar(prefix)
    perm = np.random.Generator(np.random.PCG64(meta["seed"])).permutation(len(ds))
    rows = np.asarray(ds.tokens).reshape(len(ds), meta["item_len"])
    return rows[np.argsort(perm)].ravel()


def _count(stream: np.ndarray, pattern: np.ndarray) -> int:
    starts = np.flatnonzero(stream[: len(stream) - len(pattern) + 1] == pattern[0])
    return sum(np.array_equal(stream[s : s + len(pattern)], pattern) for s in starts)


def test_ground_truth_canaries_recounted_from_tokens(demo):
    out, _ = demo
    truth = json.loads((out / "corpus" / "micropile.ground_truth.json").read_text())
    meta = read_sidecar(out / "data" / "micropile")
    tok = load_tokenizer(out / "data" / "micropile.tokenizer.json")
    stream = _stream(out / "data" / "micropile")
    eod = meta["eod_id"]
    n_docs = truth["corpus"]["n_documents"]
    assert meta["n_documents"] == n_docs
    checked = 0
    for canary in truth["canaries"]:
        ids = tok.encode(canary["text"], add_special_tokens=False).ids
        assert len(ids) >= 64
        # a canary is a whole document: end-of-document on both sides
        pattern = np.array([eod, *ids, eod], dtype=stream.dtype)
        expected = canary["repeats"]
        if canary["documents"] and max(canary["documents"]) >= n_docs - 2:
            continue  # may sit in the tail that packing drops
        assert _count(stream, pattern) == expected, canary["id"]
        checked += 1
    assert checked >= len(truth["canaries"]) - 1


def test_demo_includes_term_frequency(demo):
    out, report = demo
    text = report.read_text()
    assert "## Term frequency" in text
    # the counts equal the planted ground truth (the step raises otherwise)
    assert "counts of 0..99 over the" in text and "equal the ground truth's" in text
    assert "DIFFER" not in text
    tables = out / "tables"
    acc = pd.read_parquet(tables / "term_frequency.parquet")
    assert list(acc.columns[:5]) == ["suite", "model", "params", "step", "tokens_seen"]
    assert sorted(acc["model"].unique()) == sorted(["micro-50k", "micro-200k", "micro-500k", "micro-1m"])
    assert set(acc["x1"]) == set(range(100)) and set(acc["task"]) == {"times", "plus"}
    gap = pd.read_parquet(tables / "term_frequency_gap.parquet")
    assert (gap["delta_low"] <= gap["delta"] + 1e-12).all() and (gap["delta"] <= gap["delta_high"] + 1e-12).all()
    assert read_table_meta(tables / "term_frequency_counts.parquet")["schema"] == "term_counts"
    for fig in ("term_frequency_times", "term_frequency_plus", "term_frequency_gap"):
        assert f"(figures/{fig}.png)" in text
