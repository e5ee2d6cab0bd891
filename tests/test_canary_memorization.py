"""Canaries for the memorization demo (issue 9.1): canaries with words of their own, and 0-copy
controls that are recorded but never written, scored the same way as the planted ones."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from pythia_suite.errors import UserError
from pythia_suite.micropile import MicroPileConfig, generate


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    d = tmp_path_factory.mktemp("canaries")
    cfg = replace(MicroPileConfig(), seed=3, target_bytes=60_000, canary_pool=60, canary_private_words=10,
                  canary_words=40, canary_repeats=(0, 2, 8), canaries_per_repeat=2)
    truth = generate(d / "c.jsonl", cfg)
    docs = [json.loads(line)["text"] for line in (d / "c.jsonl").read_text().splitlines()]
    return truth, docs


def test_each_canary_draws_from_words_of_its_own(planted):
    truth, _ = planted
    vocab = [set(c["text"].split()) for c in truth["canaries"]]
    assert all(1 < len(v) <= 10 for v in vocab)
    for i in range(len(vocab)):
        for j in range(i + 1, len(vocab)):
            assert not vocab[i] & vocab[j]  # any one word names its canary


def test_control_canaries_are_recorded_but_never_written(planted):
    truth, docs = planted
    by_repeats = {}
    for c in truth["canaries"]:
        by_repeats.setdefault(c["repeats"], []).append(c)
        assert sum(doc == c["text"] for doc in docs) == c["repeats"] == len(c["documents"])
    assert [len(by_repeats[r]) for r in (0, 2, 8)] == [2, 2, 2]
    assert truth["corpus"]["documents_by_kind"]["canary"] == 2 * (2 + 8)
    words = {w for c in by_repeats[0] for w in c["text"].split()}
    assert not any(w in doc.split() for doc in docs for w in words)  # control words appear nowhere


def test_private_words_must_fit_the_pool():
    with pytest.raises(UserError, match=r"canary_private_words x canaries \(10 x 6\) must fit in canary_pool 50"):
        generate("/nonexistent/x.jsonl", replace(MicroPileConfig(), canary_pool=50, canary_private_words=10,
                                                   canary_repeats=(0, 2, 8), canaries_per_repeat=2))


def test_controls_score_like_planted_canaries(planted, tmp_path):
    """canary_scores keeps the 0-copy rows, so the report can set planted against never-trained."""
    import torch

    from analyses.canaries import canary_scores
    from pythia_suite.checkpoints import Suite
    from pythia_suite.data import build
    from pythia_suite.train import TrainSettings, train

    truth, docs = planted
    (tmp_path / "c.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in docs))
    data = build([tmp_path / "c.jsonl"], tmp_path / "d", seq_len=64, vocab_size=400, seed=1).prefix
    torch.manual_seed(0)
    train(data, tmp_path / "s", TrainSettings(sizes=["micro-50k"], steps=2, batch_size=4, checkpoint_every=2,
                                              val_items=4), progress=False)
    scores = canary_scores(Suite.load(tmp_path / "s"), truth, f"{data}.tokenizer.json")
    assert sorted(scores["repeats"].unique()) == [0, 2, 8]
    assert len(scores) == len(truth["canaries"]) * len(Suite.load(tmp_path / "s").steps("micro-50k"))
    assert np.array_equal(scores["score"], scores["matched"] / 32)  # k / 32: exact in binary


def test_canary_memorization_rises_with_copies_and_size(tmp_path):
    """The demo's planted effect in small: chain canaries (each word once), a tokenizer trained
    without them, one pass; the larger model reproduces more of the most-copied canaries, and
    more copies mean more reproduced, while never-written controls stay near nothing."""
    import torch

    from analyses.canaries import canary_scores
    from pythia_suite.checkpoints import Suite
    from pythia_suite.data import build
    from pythia_suite.data.build import train_tokenizer
    from pythia_suite.micropile import documents_without_canaries
    from pythia_suite.train import TrainSettings, train

    cfg = replace(MicroPileConfig(), seed=5, target_bytes=150_000, canary_words=24, canary_private_words=24,
                  canary_pool=24 * 3 * 2, canary_repeats=(0, 4, 128), canaries_per_repeat=2)
    truth = generate(tmp_path / "c.jsonl", cfg)
    tok = train_tokenizer(documents_without_canaries(tmp_path / "c.jsonl", truth), 512)
    tok.save(str(tmp_path / "tok.json"))
    data = build([tmp_path / "c.jsonl"], tmp_path / "d", seq_len=64, tokenizer=tmp_path / "tok.json", seed=1).prefix
    torch.manual_seed(0)
    train(data, tmp_path / "s", TrainSettings(sizes=["micro-50k", "micro-1m"], batch_size=8, checkpoint_every=1000,
                                              val_items=0), progress=False)
    scores = canary_scores(Suite.load(tmp_path / "s"), truth, tmp_path / "tok.json")
    final = scores[scores["step"] == scores["step"].max()]
    score = final.pivot_table(index="repeats", columns="model", values="score", aggfunc="mean")
    big, small = score["micro-1m"], score["micro-50k"]  # measured: 0.62 and 0.02 at 128 copies, 0.02 and 0 at 4
    assert big[128] > big[4] + 0.3 and big[128] > small[128] + 0.3  # rises with copies and with size
    assert big[0] < 0.1 and small[0] < 0.1  # the controls: nothing to recall
