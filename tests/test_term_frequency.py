"""The term-frequency case study (`analyses/term_frequency.py`, `pythia-suite term-frequency`).

    .venv/bin/python -m pytest tests/test_term_frequency.py -q

Prompts in Pythia's format, the answer rule, Δ / bootstrap / Spearman on planted toy tables with
hand-computed values, and the command end to end on a small micro-Pile suite, bad input included.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analyses.term_frequency import (
    KEYS, accuracy_table, build_prompts, check_context, gap_table, is_correct, question, solved,
)
from pythia_suite.errors import UserError
from pythia_suite.notes import collapse
from pythia_suite.tables import columns, read_table_meta
from conftest import assert_one_error_line, listing, run_cli


def test_prompts_in_pythias_format():
    assert question("times", 24, 7) == "Q:What is 24 times 7? A:"
    assert solved("plus", 24, 7) == "Q:What is 24 plus 7? A:31"
    p = build_prompts(["times"], [0, 2], x2_values=[1, 2, 3], seed=5)
    assert len(p) == 2 * 100 * 3 and set(p["shots"]) == {0, 2}
    zero = p[(p["shots"] == 0) & (p["x1"] == 24) & (p["x2"] == 3)].iloc[0]
    assert zero["prompt"] == "Q:What is 24 times 3? A:" and zero["answer"] == 72
    two = p[(p["shots"] == 2) & (p["x1"] == 24) & (p["x2"] == 3)].iloc[0]["prompt"]
    parts = two.split("\n\n")
    assert len(parts) == 3 and parts[2] == "Q:What is 24 times 3? A:"
    for shot in parts[:2]:
        a, b, ans = (int(x) for x in shot.replace("Q:What is ", "").replace(" times ", " ").replace("? A:", " ").split())
        assert a != 24 and b in (1, 2, 3) and ans == a * b
    # seeded per question: the same examples whatever else is built
    assert build_prompts(["times"], [2], [1, 2, 3], seed=5)["prompt"].tolist() == p[p["shots"] == 2]["prompt"].tolist()
    assert build_prompts(["times"], [2], [1, 2, 3], seed=6)["prompt"].tolist() != p[p["shots"] == 2]["prompt"].tolist()
    # every example is drawn from another x1, over many draws
    many = build_prompts(["plus"], [16], [1, 2], seed=0)
    for prompt, x1 in zip(many["prompt"], many["x1"]):
        assert all(not s.startswith(f"Q:What is {x1} plus") for s in prompt.split("\n\n")[:-1])


def test_shots_larger_than_the_pool():
    with pytest.raises(UserError, match="--shots 100 is larger than the pool of 99 examples"):
        build_prompts(["times"], [100], x2_values=[1])
    with pytest.raises(UserError, match="unknown task 'minus'"):
        build_prompts(["minus"], [0])


@pytest.mark.parametrize("output, answer, ok", [
    ("168", 168, True), (" 168\n", 168, True), ("168 and more", 168, True), ("1680", 168, False),
    ("07", 7, False), ("abc", 7, False), ("16 8", 168, False), ("x 7 8", 7, True), ("", 0, False),
])
def test_first_integer_rule(output, answer, ok):
    assert is_correct(output, answer) is ok


def test_context_check_names_k_and_tokens():
    check_context([[1] * 10, [1] * 30], [0, 4], "m", 37, max_new_tokens=8)
    with pytest.raises(UserError, match="m has a context of 36 tokens, but the 4-shot prompts need 37"):
        check_context([[1] * 10, [1] * 30], [0, 4], "m", 36, max_new_tokens=8)


# ---- Δ and the tables on a planted toy case --------------------------------------------------------


def toy_results(accuracy_by_x1: dict[int, list[bool]]) -> pd.DataFrame:
    rows = []
    for x1, outcomes in accuracy_by_x1.items():
        for x2, c in enumerate(outcomes, start=1):
            rows.append({"suite": "s", "model": "m", "params": 10, "step": 4, "tokens_seen": 40, "task": "times",
                         "shots": 0, "x1": x1, "x2": x2, "correct": c})
    return pd.DataFrame(rows)


def test_tables_and_delta_on_a_planted_toy_case():
    # 30 x1 values; frequency = 100 - x1 for x1 < 30, so the 10 most frequent are x1 0..9, the least 20..29
    outcomes = {x1: [x1 < 10] * 4 for x1 in range(30)}  # the frequent ones always right, the rest never
    outcomes[25] = [True, False, False, False]  # one rare x1 right once
    freq = pd.DataFrame({"step": 4, "x1": range(30), "frequency": [100 - x for x in range(30)]})
    acc = accuracy_table(toy_results(outcomes), freq, "token")
    assert list(acc.columns[:5]) == KEYS
    row25 = acc[acc["x1"] == 25].iloc[0]
    assert (row25["n"], row25["n_correct"], row25["accuracy"], row25["frequency"]) == (4, 1, 0.25, 75)
    gap = gap_table(acc, n_boot=2000, seed=1)
    assert len(gap) == 1
    g = gap.iloc[0]
    assert g["n_x1"] == 10
    assert g["top_accuracy"] == 1.0 and g["bottom_accuracy"] == pytest.approx(0.025)
    assert g["delta"] == pytest.approx(0.975)
    # only x1 = 25 varies under resampling: K ~ Binomial(4, 1/4) right, delta* = 1 - K/40. P(K >= 4) = 0.004 and
    # P(K >= 3) = 0.051, so the 2.5% quantile is 1 - 3/40; P(K = 0) = 0.32 > 2.5%, so the 97.5% one is 1
    assert g["delta_low"] == pytest.approx(1 - 3 / 40) and g["delta_high"] == pytest.approx(1.0)
    # accuracy falls with x1 and frequency rises: rho is the correlation of the ranks, by hand
    from scipy import stats

    want = stats.pearsonr(stats.rankdata(acc.sort_values("x1")["accuracy"]), stats.rankdata(-np.arange(30)))[0]
    assert g["spearman"] == pytest.approx(want) and g["spearman"] > 0.7


def test_exact_interval_when_nothing_can_vary_and_ties_by_x1():
    outcomes = {x1: [x1 % 2 == 0] * 2 for x1 in range(24)}
    freq = pd.DataFrame({"step": 4, "x1": range(24), "frequency": 7})  # all tied: ranked by x1
    gap = gap_table(accuracy_table(toy_results(outcomes), freq, "token"), seed=0).iloc[0]
    # bottom = x1 0..9 (5 even), top = x1 14..23 (5 even): delta 0, and the interval is that point
    assert (gap["top_accuracy"], gap["bottom_accuracy"], gap["delta"]) == (0.5, 0.5, 0.0)
    assert gap["delta_low"] == gap["delta_high"] == 0.0
    assert np.isnan(gap["spearman"])  # frequency constant: no correlation defined


# ---- the command on a small suite --------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_suite(tmp_path_factory):
    """A micro-Pile of 80 kB, built into 64-token items, and micro-50k trained 8 steps."""
    from dataclasses import replace

    from pythia_suite.data import build
    from pythia_suite.micropile import MicroPileConfig, generate
    from pythia_suite.train import TrainSettings, train

    root = tmp_path_factory.mktemp("tf")
    generate(root / "mp.jsonl", replace(MicroPileConfig(), target_bytes=80_000, canaries_per_repeat=0,
                                        arithmetic_fraction=0.3))
    prefix = build([root / "mp.jsonl"], root / "data" / "mp", seq_len=64, vocab_size=400, seed=1).prefix
    manifest = train(prefix, root / "suite", TrainSettings(sizes=["micro-50k"], steps=8, batch_size=8,
                                                           checkpoint_every=4), progress=False)
    return root, prefix, manifest


def test_cli_end_to_end(small_suite, capsys):
    root, prefix, manifest = small_suite
    out = root / "res" / "tf.parquet"
    rc, stdout, err = run_cli(capsys, "term-frequency", "--manifest", manifest, "--data", prefix, "--steps", 4, 8,
                              "--tasks", "times", "--shots", 0, "--x2-max", 2, "--workers", 1, "--quiet", "--out", out,
                              "--figures", root / "figs")
    assert rc == 0, err
    figs = sorted(p.name for p in (root / "figs").glob("*.png"))
    assert figs == ["term_frequency_gap.png", "term_frequency_times.png"] and str(root / "figs") in stdout
    assert all((root / "figs" / f).read_bytes()[:4] == b"\x89PNG" for f in figs)
    acc = pd.read_parquet(out)
    assert list(acc.columns[:5]) == KEYS
    assert len(acc) == 2 * 100 and (acc["n"] == 2).all()  # steps x x1, two x2 each
    gap = pd.read_parquet(root / "res" / "tf_gap.parquet")
    assert len(gap) == 2
    counts = pd.read_parquet(root / "res" / "tf_counts.parquet")
    # the frequency joined in is the count as of each step, and it grows over training
    c8 = counts[counts["step"] == 8].set_index("term")["count_seen"]
    a8 = acc[(acc["step"] == 8) & (acc["task"] == "times") & (acc["shots"] == 0)].set_index("x1")["frequency"]
    assert all(a8[x] == c8[str(x)] for x in range(100))
    c4 = counts[counts["step"] == 4].set_index("term")["count_seen"]
    assert (c8 >= c4).all() and c8.sum() > c4.sum() > 0
    assert "delta" in stdout
    # every question's answer is kept, and the accuracies are those answers counted
    answers = pd.read_parquet(root / "res" / "tf_answers.parquet")
    assert len(answers) == 2 * 100 * 2 and list(answers.columns) == list(columns("term_frequency_answers"))
    assert (answers["answer"] == answers["x1"] * answers["x2"]).all()
    assert answers["correct"].tolist() == [is_correct(o, a) for o, a in zip(answers["output"], answers["answer"])]
    counted = answers.groupby(["step", "x1"])["correct"].sum()
    assert (acc.set_index(["step", "x1"])["n_correct"].sort_index() == counted.sort_index()).all()
    # degenerate cells are named in the metadata of every table and in the summary line
    from analyses.term_frequency import degenerate_notes

    notes = read_table_meta(out)["notes"]
    assert notes == degenerate_notes(acc, gap) == read_table_meta(root / "res" / "tf_answers.parquet")["notes"]
    assert all(f"note: {n}" in stdout for n in collapse(notes))


@pytest.mark.parametrize("args, message", [
    (["--shots", "100", "--x2-max", "1"], "larger than the pool of 99"),
    (["--shots", "16", "--x2-max", "1"], "micro-50k has a context of 64 tokens, but the 16-shot prompts need"),
    (["--steps", "5"], "unknown step 5"),
    (["--models", "micro-9m"], "unknown model 'micro-9m'"),
    (["--tasks", "minus"], "invalid choice"),
])
def test_cli_bad_input(small_suite, capsys, tmp_path, args, message):
    root, prefix, manifest = small_suite
    before = listing(tmp_path)
    rc, _, err = run_cli(capsys, "term-frequency", "--manifest", manifest, "--data", prefix, "--quiet",
                         "--out", tmp_path / "tf.parquet", *args)
    assert rc == 2
    assert message in assert_one_error_line(err)
    assert listing(tmp_path) == before
