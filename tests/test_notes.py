"""Notes on degenerate results (`pythia_suite.notes` and each case study's `degenerate_notes`):
hand-built tables whose answer is known, so each note is asserted exactly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pythia_suite.notes import accuracy_note, accuracy_notes, collapse, interval_note

KEY = {"suite": "s", "params": 10, "tokens_seen": 0}


def test_accuracy_note_floor_chance_and_finding():
    assert "at floor" in accuracy_note("m step 1", 0, 40)
    assert "no items" in accuracy_note("m", 0, 0)
    # 23 of 40 against 1/2: scipy's exact two-sided p = 0.43 -> at chance
    note = accuracy_note("m", 23, 40, chance=0.5)
    assert "not distinguishable from chance 0.5" in note and "p = 0.43" in note
    assert accuracy_note("m", 35, 40, chance=0.5) is None  # p = 1.1e-6: a finding, no note
    assert accuracy_note("m", 3, 40) is None  # no chance level given: only the floor is noted


def test_accuracy_notes_group_cells_by_kind():
    cells = [(f"c{i}", 0, 10, None) for i in range(6)] + [("h", 5, 10, 0.5), ("ok", 10, 10, 0.5), ("e", 0, 0, None)]
    assert accuracy_notes(cells, shown=2) == [
        "accuracy at floor (nothing correct) in 6 of 9 cells: c0, c1 and 4 more",
        "accuracy not distinguishable from chance (binomial test p >= 0.05) in 1 of 9 cells: h",
        "no items scored in 1 of 9 cells: e"]


def test_interval_note_and_collapse():
    assert "single point" in interval_note("d", 0.2, 0.2, 5)
    assert "1 item(s)" in interval_note("d", -0.1, 0.3, 1)
    assert interval_note("d", -0.1, 0.3, 5) is None
    notes = collapse([f"n{i}" for i in range(9)] + ["n0"], limit=3)
    assert notes == ["n0", "n1", "n2", "and 6 more notes of this kind (the table's metadata holds all)"]


def test_memorization_notes():
    from analyses.memorization import degenerate_notes

    summary = pd.DataFrame([{**KEY, "model": "a", "step": s, "seen": seen, "n_sequences": 8, "n_memorized": 0}
                            for s in (4, 8) for seen in (True, False)])
    empty = pd.DataFrame(columns=["model", "step", "ks_pvalue"])
    assert degenerate_notes(summary, empty, pd.DataFrame()) == [
        "nothing memorized: 0 of 8 trained sequences at every one of 2 checkpoint(s); the order test and "
        "predictability are undefined"]
    summary.loc[(summary["step"] == 8) & summary["seen"], "n_memorized"] = 2
    order_test = pd.DataFrame([{"model": "a", "step": 8, "ks_pvalue": np.nan}])
    predict = pd.DataFrame([{"model": "a", "step": 8, "predictor_model": "a", "predictor_step": 4, "tp": 0, "fp": 0}])
    assert degenerate_notes(summary, order_test, predict) == [
        "a step 4: 0 of 8 trained sequences memorized",
        "a: training-order test undefined at step 8 (no memorized sequence in its bins)",
        "a step 8 from a step 4: precision undefined (the predictor memorized none of the shared sequences)"]
    assert degenerate_notes(summary, order_test.assign(ks_pvalue=0.3), predict.assign(tp=1)) == [
        "a step 4: 0 of 8 trained sequences memorized"]


def _acc(correct: dict[int, int], n: int = 4) -> pd.DataFrame:
    return pd.DataFrame([{**KEY, "model": "a", "step": 8, "task": "plus", "shots": 0, "x1": x1, "n": n,
                          "n_correct": k, "accuracy": k / n, "frequency": x1} for x1, k in correct.items()])


def test_term_frequency_notes():
    from analyses.term_frequency import degenerate_notes, gap_table

    acc = _acc({x: 0 for x in range(20)})
    notes = degenerate_notes(acc, gap_table(acc))
    assert notes == ["nothing correct: accuracy 0 in every one of the 1 model x step x task x k cells (80 "
                     "questions); the gap and correlation are not findings"]
    acc = _acc({x: 4 * (x >= 10) for x in range(20)})  # every question right for the top ten, wrong below
    notes = degenerate_notes(acc, gap_table(acc))
    assert notes == ["a step 8 plus 0-shot delta: the interval is a single point (+1.000): every resample gave "
                     "the same value"]
    acc = _acc({x: x % 3 for x in range(20)})
    assert degenerate_notes(acc, gap_table(acc)) == []


class _Models:
    """The one part of a Suite that bias notes read: each model's manifest record."""

    def __init__(self, models: list[dict]):
        self.records = {m["name"]: m for m in models}

    def model_info(self, name: str) -> dict:
        return self.records[name]


def test_bias_notes_child_identical_to_parent_and_chance():
    from analyses.bias import degenerate_notes

    sha = {"a": "1" * 64, "b": "2" * 64}
    ck = lambda m, s, h: {"step": s, "path": f"{m}/step{s}", "sha256": h}  # noqa: E731
    models = [{"name": "p", "params": 10, "checkpoints": [ck("p", 4, sha["a"]), ck("p", 8, sha["b"])]},
              {"name": "c", "params": 10, "checkpoints": [ck("p", 4, sha["a"]), ck("c", 8, sha["b"])],
               "intervention": {"parent": "p", "resume_step": 4, "start_step": 4, "transform": {"name": "x"}}}]
    suite = _Models(models)
    table = pd.DataFrame([
        {**KEY, "model": "c", "step": 8, "benchmark": "micropile_winobias", "subset": "type1_pro",
         "metric": "acc_loglik", "value": 0.5, "n_items": 20},  # 10 of 20: chance
        {**KEY, "model": "c", "step": 8, "benchmark": "micropile_winobias", "subset": "type1_anti",
         "metric": "acc_loglik", "value": 0.95, "n_items": 20},  # 19 of 20: p = 4e-5
        {**KEY, "model": "c", "step": 8, "benchmark": "lambada", "subset": "all", "metric": "acc", "value": 0.0,
         "n_items": 32}])
    comparison = table.assign(parent_value=table["value"])
    assert degenerate_notes(suite, table, comparison) == [
        "c is identical to its parent p at step(s) 8 (same weights sha256): the transform changed nothing it "
        "trained on",
        "accuracy not distinguishable from chance (binomial test p >= 0.05) in 1 of 3 cells: c step 8 "
        "micropile_winobias type1_pro acc_loglik",
        "accuracy at floor (nothing correct) in 1 of 3 cells: c step 8 lambada all acc"]
    models[1]["checkpoints"][1]["sha256"] = "3" * 64  # its own weights, but every metric the parent's
    notes = degenerate_notes(_Models(models), table, comparison)
    assert notes[0] == "c: every metric equals its parent's at the same steps; the intervention shows no effect"
    notes = degenerate_notes(_Models(models), table,
                             comparison.assign(parent_value=comparison["value"] + 0.1))
    assert not any(n.startswith("c:") or "identical" in n for n in notes)


@pytest.mark.parametrize("k,n", [(0, 5), (5, 5)])
def test_write_table_keeps_notes(tmp_path, k, n):
    from pythia_suite.tables import read_table, write_table

    df = pd.DataFrame([{**KEY, "model": "a", "step": 1, "train_log": 0}]).drop(columns="train_log")
    df = df.assign(loss=1.0, lr=0.1, grad_norm=1.0, fingerprint="x")
    notes = [accuracy_note("a", k, n)] if k == 0 else []
    write_table(df, tmp_path / "t.parquet", "train_log", notes=notes)
    assert read_table(tmp_path / "t.parquet").attrs["notes"] == notes


def test_table_metadata_keeps_absolute_paths_and_the_data_hash(tmp_path, monkeypatch):
    """Relative paths in a command's config are resolved where the command ran; a data prefix
    also gets the sha256 of its .bin, so a table read elsewhere still names what made it."""
    import hashlib

    from pythia_suite.tables import read_table_meta, write_table

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "c.bin").write_bytes(b"\x01\x02")
    monkeypatch.chdir(tmp_path)
    df = pd.DataFrame([{**KEY, "model": "a", "step": 1, "loss": 1.0, "lr": 0.1, "grad_norm": 1.0, "fingerprint": "x"}])
    write_table(df, "t.parquet", "train_log", config={"data": "data/c", "manifest": "missing/m.json",
                                                       "models": ["data"], "include_path": ["data"]})
    config = read_table_meta(tmp_path / "t.parquet")["config"]
    assert config == {"data": str(tmp_path / "data" / "c"), "manifest": "missing/m.json", "models": ["data"],
                      "include_path": [str(tmp_path / "data")],
                      "data_sha256": hashlib.sha256(b"\x01\x02").hexdigest()}
