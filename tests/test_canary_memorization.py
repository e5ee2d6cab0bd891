"""A small planted config: canary memorization rises with copies and with model size (issue 9.1).

A micro-Pile of 120 kB in which each canary draws 72 words from 12 words of its own, with 0 / 2 /
24 copies, and two sizes trained for one pass with batches of 2 items at a raised lr: a copy is
then a large share of its batch, so memorization shows in ~250 steps. Scores are deterministic
(seeded data, init and order, float32 on the CPU), so the assertions are orderings of measured
numbers with a margin."""

from __future__ import annotations

from dataclasses import replace

import pytest

from analyses.memorization import canary_scores
from pythia_suite.checkpoints import Suite
from pythia_suite.data import build
from pythia_suite.micropile import MicroPileConfig, generate
from pythia_suite.train import TrainSettings, train

SIZES = ["micro-50k", "micro-500k"]


@pytest.fixture(scope="module")
def final_scores(tmp_path_factory):
    d = tmp_path_factory.mktemp("canaries")
    cfg = replace(MicroPileConfig(), seed=3, target_bytes=120_000, canary_pool=72, canary_private_words=12,
                  canary_words=72, canary_repeats=(0, 2, 24), canaries_per_repeat=2)
    truth = generate(d / "c.jsonl", cfg)
    data = build([d / "c.jsonl"], d / "data", seq_len=64, vocab_size=512, seed=1).prefix
    train(data, d / "suite", TrainSettings(sizes=SIZES, batch_size=2, checkpoint_every=10**6, lr=3e-3,
                                           val_items=2, suite="planted"), progress=False)
    suite = Suite.load(d / "suite")
    scores = canary_scores(suite, truth, f"{data}.tokenizer.json")
    last = scores[scores["step"] == scores.groupby("model")["step"].transform("max")]
    return last.groupby(["model", "repeats"])["score"].mean().unstack("repeats")


def test_memorization_rises_with_copies(final_scores):
    big = final_scores.loc[SIZES[-1]]
    assert big[24] > big[2] + 0.1 and big[24] > big[0] + 0.1
    assert big[0] < 0.3  # never-trained controls stay near chance (1/8)


def test_memorization_rises_with_size(final_scores):
    assert final_scores.loc[SIZES[-1], 24] > final_scores.loc[SIZES[0], 24] + 0.1
