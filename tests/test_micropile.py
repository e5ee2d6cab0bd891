"""The micro-Pile generator: determinism, size, and ground truth that agrees with the file.

Every planted count is recounted from the .jsonl text alone (regexes, exact string counts), so the
ground truth is checked independently of the code that wrote it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from pathlib import Path

import pytest

from pythia_suite.errors import UserError
from pythia_suite.micropile import (
    FEMALE_OCCUPATIONS,
    MALE_OCCUPATIONS,
    MicroPileConfig,
    generate,
    load_ground_truth,
)

MB = 1_000_000
CONFIG = MicroPileConfig(seed=3, target_bytes=MB)
ARITH = re.compile(r"Q:What is (\d+) (times|plus) (\d+)\? A:(\d+)")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict, list[str]]:
    """A 1 MB micro-Pile (read-only): its path, the returned ground truth, the document texts."""
    path = tmp_path_factory.mktemp("micropile") / "micro.jsonl"
    truth = generate(path, CONFIG)
    texts = [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines()]
    return path, truth, texts


def test_same_seed_same_bytes_other_seed_differs(tmp_path, corpus):
    path, truth, _ = corpus
    again = tmp_path / "micro.jsonl"  # same file name: the ground truth records it
    generate(again, CONFIG)
    assert again.read_bytes() == path.read_bytes()
    gt = path.with_name("micro.ground_truth.json")
    assert (tmp_path / "micro.ground_truth.json").read_bytes() == gt.read_bytes()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == truth["corpus"]["sha256"]
    other = tmp_path / "other.jsonl"
    t2 = generate(other, MicroPileConfig(seed=4, target_bytes=MB))
    assert t2["corpus"]["sha256"] != truth["corpus"]["sha256"]
    assert other.read_bytes() != path.read_bytes()


def test_size_documents_and_loaded_truth(corpus):
    path, truth, texts = corpus
    size = path.stat().st_size
    assert abs(size - MB) <= 0.1 * MB
    assert truth["corpus"]["n_bytes"] == size
    assert truth["corpus"]["n_documents"] == len(texts) == sum(truth["corpus"]["documents_by_kind"].values())
    assert all(texts)  # no empty document, which a reader would skip and shift indices
    assert load_ground_truth(path.with_name("micro.ground_truth.json")) == json.loads(json.dumps(truth))


def test_canaries_occur_exactly_as_recorded(corpus):
    _, truth, texts = corpus
    canaries = truth["canaries"]
    cfg = truth["config"]
    assert len(canaries) == len(cfg["canary_repeats"]) * cfg["canaries_per_repeat"]
    assert Counter(c["repeats"] for c in canaries) == {d: cfg["canaries_per_repeat"] for d in cfg["canary_repeats"]}
    canary_docs = set()
    for c in canaries:
        assert len(c["text"].split()) == cfg["canary_words"]
        assert sum(t.count(c["text"]) for t in texts) == c["repeats"]
        assert len(c["documents"]) == c["repeats"] and c["documents"] == sorted(c["documents"])
        assert all(texts[i] == c["text"] for i in c["documents"])
        assert all(b - a > 1 for a, b in zip(c["documents"], c["documents"][1:]))  # never back to back
        canary_docs.update(c["documents"])
    # the pool is private: no canary word appears in any other document
    pool = {w for c in canaries for w in c["text"].split()}
    assert not any(pool & set(re.findall(r"[a-z]+", texts[i])) for i in range(len(texts)) if i not in canary_docs)
    # repetitions are spread over the whole corpus, not bunched at one end
    most = max(canaries, key=lambda c: c["repeats"])["documents"]
    assert most[0] < 0.1 * len(texts) and most[-1] > 0.9 * len(texts)


def test_arithmetic_counts_recounted(corpus):
    _, truth, texts = corpus
    ar = truth["arithmetic"]
    counts = {op: [0] * 100 for op in ("times", "plus")}
    numbers = [0] * 100
    lines = 0
    for t in texts:
        for x1, op, x2, ans in ARITH.findall(t):
            x1, x2, ans = int(x1), int(x2), int(ans)
            assert ans == (x1 * x2 if op == "times" else x1 + x2)
            assert 0 <= x1 <= 99 and ar["x2_range"][0] <= x2 <= ar["x2_range"][1]
            counts[op][x1] += 1
            lines += 1
        for n in map(int, re.findall(r"\d+", t)):
            if n < 100:
                numbers[n] += 1
    assert lines == sum(t.count("Q:What is") for t in texts) > 0
    assert counts == ar["x1_counts"]
    assert numbers == ar["number_counts"]
    assert sorted(ar["x1_by_frequency_rank"]) == list(range(100))
    for op in counts:  # Zipf over a permutation: a wide spread, and not monotone in the value
        c = counts[op]
        assert max(c) / max(min(c), 1) > 20
        assert c.index(max(c)) == ar["x1_by_frequency_rank"][0]


def test_occupation_pronouns_recounted(corpus):
    _, truth, texts = corpus
    oc = truth["occupations"]
    names = "|".join(re.escape(o["occupation"]) for o in oc["items"])
    patterns = [re.compile(re.escape(t).replace(r"\{occupation\}", f"({names})").replace(r"\{pronoun\}", "(he|she)"))
                for t in oc["templates"]]
    found = Counter()
    for t in texts:
        for p in patterns:
            found.update(p.findall(t))
    for item in oc["items"]:
        assert (found[(item["occupation"], "he")], found[(item["occupation"], "she")]) == (item["he"], item["she"])
        assert item["stereotype"] == ("male" if item["occupation"] in MALE_OCCUPATIONS else "female")
    assert {o["occupation"] for o in oc["items"]} == set(MALE_OCCUPATIONS + FEMALE_OCCUPATIONS)
    # pronouns are planted nowhere else, so a he->she intervention touches only these sentences
    words = Counter(w for t in texts for w in re.findall(r"[A-Za-z]+", t))
    assert words["he"] == sum(o["he"] for o in oc["items"]) and words["she"] == sum(o["she"] for o in oc["items"])
    assert words["He"] == words["She"] == words["his"] == words["her"] == words["him"] == 0
    pro = sum(o["he"] if o["stereotype"] == "male" else o["she"] for o in oc["items"])
    total = sum(o["he"] + o["she"] for o in oc["items"])
    assert total > 200 and abs(pro / total - CONFIG.pronoun_skew) < 0.06


def test_canaries_are_at_least_64_tokens(corpus):
    from pythia_suite.data.build import train_tokenizer
    from pythia_suite.data.corpus import iter_documents

    path, truth, _ = corpus
    tok = train_tokenizer(iter_documents([path]), 1024)
    lengths = [len(tok.encode(c["text"]).ids) for c in truth["canaries"]]
    assert min(lengths) >= 64


def test_bad_configs_and_paths(tmp_path):
    with pytest.raises(UserError, match="canaries alone"):
        generate(tmp_path / "small.jsonl", MicroPileConfig(target_bytes=50_000))
    with pytest.raises(UserError, match="arithmetic_fraction"):
        generate(tmp_path / "bad.jsonl", MicroPileConfig(arithmetic_fraction=0.6, occupation_fraction=0.5))
    with pytest.raises(UserError, match=".jsonl"):
        generate(tmp_path / "corpus.txt", CONFIG)
    assert list(tmp_path.iterdir()) == []  # nothing half-written
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(UserError, match="not a micro-Pile ground truth"):
        load_ground_truth(tmp_path / "x.json")
    with pytest.raises(UserError, match="not found"):
        load_ground_truth(tmp_path / "missing.json")
