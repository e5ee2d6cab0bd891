"""The token map with forms of several tokens: sequence replacement, the length rule (shift, drop,
pad), the whole-word rule at a sequence's edges, forms that cannot be written, the warning line,
and the intervention refusing a transform that would change nothing."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from conftest import assert_one_error_line, listing, run_cli
from pythia_suite.errors import UserError

SENTENCES = ["he said that he would go and she said that she would stay.", "his dog saw him, and her cat saw her."]
EOD = 0  # "<|endoftext|>" is the first special token of pythia_suite's tokenizers


@pytest.fixture(scope="module")
def bpe():
    """A byte-level BPE of 300 ids trained on two sentences: " himself", " his", " He" are several tokens."""
    from pythia_suite.data.build import train_tokenizer

    return train_tokenizer(iter(SENTENCES * 20), 300)


def encoder(tok):
    return lambda s: tok.encode(s, add_special_tokens=False).ids


def by_form(rows):
    return {(r["token"], r["role"]): (r["whole_word"], r["inside_word"]) for r in rows}


def test_pronoun_swap_replaces_token_sequences_and_pads_a_shortened_item(bpe):
    from pythia_suite.data.transforms import TokenMap

    ids = encoder(bpe)
    assert ids(" himself") == ids(" him") + ids("self") and len(ids(" himself")) == len(ids(" herself")) == 5
    assert len(ids(" his")) == 2 and len(ids(" her")) == 1 and len(ids(" He")) == len(ids(" She")) == 3
    swap = TokenMap.pronoun_swap(bpe)
    assert bpe.token_to_id("<|endoftext|>") == swap.eod_id == EOD
    row = ids(" He said his dog saw himself. the heap")
    plain = ids(" the dog and the cat would go and stay, and the cat would go.")[: len(row)]
    assert len(plain) == len(row)
    batch = np.array([row, plain], dtype=np.uint16)
    out, stats = swap.apply_counted(batch)
    want = ids(" She said her dog saw herself. the heap")
    assert len(row) - len(want) == 1  # " his" (2 tokens) -> " her" (1): the rest shifts left, one end-of-text pads
    assert out.dtype == batch.dtype and out.shape == batch.shape
    assert out[0].tolist() == want + [EOD] and out[1].tolist() == plain
    assert stats == {"replaced": 3, "dropped": 0, "padded": 1}  # " He", " his", " himself"
    assert swap.replacements(batch) == 3 and swap.replacements(out) == 0
    before, after = by_form(swap.count(batch)), by_form(swap.count(out))
    assert before[(" his", "source")] == (1, 0) and before[(" himself", "source")] == (1, 0)
    assert before[(" He", "source")] == (1, 0)
    assert before[("He", "source")] == (0, 1)  # "He" inside " He": taken by the longer form, not twice
    assert sum(w for (t, role), (w, _) in before.items() if role == "source") == 3
    assert all(w == 0 for (t, role), (w, _) in after.items() if role == "source")
    assert after[(" herself", "target")] == (1, 0)
    assert after[(" her", "target")] == (1, 1)  # the other " her" is the first token of " herself"
    desc = swap.describe()
    assert desc["tokens"][" his"] == {"target": " her", "source_ids": ids(" his"), "target_ids": ids(" her")}
    assert len(desc["tokens"]) == 16 and desc["skipped"] == [] and desc["eod_id"] == EOD
    multi = sum(len(ids(r.source)) > 1 or len(ids(r.target)) > 1 for r in swap.rules)
    shift = sum(len(ids(r.source)) != len(ids(r.target)) for r in swap.rules)
    assert swap.warning() == (f"warning: pronoun-swap: {multi} of 16 forms are several tokens of this tokenizer "
                              f"(replaced as token sequences; {shift} change an item's length: the rest of the item "
                              "shifts, end-of-text pads it or its last tokens drop)")


def test_longer_target_shifts_right_and_drops_the_items_last_tokens(bpe):
    from pythia_suite.data.transforms import TokenMap

    ids = encoder(bpe)
    m = TokenMap.from_words(bpe, {"he said": "she told", "said": "told"})
    assert len(ids(" he said")) == 2 and len(ids(" she told")) == 5 and len(ids(" said")) == 1 and len(ids(" told")) == 4
    row = ids(" he said that he would go and she said it.")
    T = len(row)
    out, stats = m.apply_counted(np.array([row]))
    # " he said" is taken first; the " said" inside it is not replaced again; the later " said" is
    want = ids(" she told that he would go and she told it.")
    assert out[0].tolist() == want[:T] and stats == {"replaced": 2, "dropped": len(want) - T, "padded": 0}
    assert len(want) - T == 3 + 3
    assert by_form(m.count(np.array([row])))[(" said", "source")] == (1, 1)  # one inside " he said"
    # a replacement at the item's end is itself cut
    row = ids(" the cat said")
    out, stats = m.apply_counted(np.array([row]))
    assert out[0].tolist() == (ids(" the cat") + ids(" told"))[: len(row)] and stats["dropped"] == 3


def test_whole_word_rule_at_the_edges_of_a_sequence(bpe):
    from pythia_suite.data.transforms import TokenMap

    ids = encoder(bpe)
    swap = TokenMap.pronoun_swap(bpe)
    assert ids(" history") == ids(" his") + ids("tory") and len(ids("himself")) == 6
    cases = [
        (ids(" history"), ids(" history")),  # the token after " his" continues the word
        (ids("(") + ids("himself") + ids(")"), ids("(") + ids("herself") + ids(")")),  # after a word's end
        (ids("x") + ids("himself") + ids("."), ids("x") + ids("himself") + ids(".")),  # "xhimself": no word start
        (ids("himself") + ids("."), ids("herself") + ids(".")),  # the item's first token is a word edge
        (ids(" saw") + ids(" him"), ids(" saw") + ids(" her")),  # the item's last token is a word edge
        (ids(" saw") + ids(" him") + ids("s"), ids(" saw") + ids(" him") + ids("s")),  # " him"+"s": a longer word
    ]
    for row, want in cases:
        assert swap.apply(np.array([row])).tolist() == [want], bpe.decode(row)
    assert by_form(swap.count(np.array([ids(" history")])))[(" his", "source")] == (0, 1)


def test_forms_that_cannot_be_written_are_skipped_and_listed():
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    from pythia_suite.data.transforms import TokenMap

    # a BPE with an unknown token that drops spaces: " he" decodes as "he", "H" and "f" are unknown
    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(SENTENCES * 5, trainers.BpeTrainer(vocab_size=80, special_tokens=["[UNK]", "<|endoftext|>"],
                                                               show_progress=False))
    swap = TokenMap.pronoun_swap(tok)
    assert [r.source for r in swap.rules] == ["he", "him", "his"]
    skipped = {x["form"]: x["reason"] for x in swap.describe()["skipped"]}
    assert len(skipped) == 13
    assert skipped["' he'->' she'"] == "' he' decodes back as 'he'"
    assert skipped["'He'->'She'"] == "'He' encodes to the unknown token"
    assert skipped["'himself'->'herself'"] == "'himself' encodes to the unknown token"
    assert swap.warning() == ("warning: pronoun-swap: 13 of 16 cannot be written in it and are skipped: 'He', ' he', "
                              "' He', 'Him', ' him', ' Him', 'His', ' his', ' His', 'himself', 'Himself', ' himself', "
                              "' Himself'")
    with pytest.raises(UserError, match=r"no form of the custom map can be written .*'zzz': encodes to the unknown"):
        TokenMap.from_words(tok, {"zzz": "she"})


def test_word_map_validation_with_sequences(bpe):
    from pythia_suite.data.transforms import TokenMap

    both = "' He', ' She', ' he', ' she', 'He', 'She', 'he', 'she' are both a source and a target"
    with pytest.raises(UserError, match=f"not one-directional: {both}"):
        TokenMap.from_words(bpe, {"he": "she", "she": "he"})
    with pytest.raises(UserError, match=r"sends 'He' to two different targets \('She' and 'Her'\)"):
        TokenMap.from_words(bpe, {"he": "she", "He": "Her"})
    with pytest.raises(UserError, match="non-empty words"):
        TokenMap.from_words(bpe, {"he": " "})


# ---- the intervention: refused when it would change nothing; the warning line ---------------------


@pytest.fixture(scope="module")
def plain_suite(tmp_path_factory):
    """A suite (micro-50k, 6 steps, checkpoints 0 1 2 4 6) on a corpus without a single pronoun."""
    from pythia_suite.data import build
    from pythia_suite.train import TrainSettings, train

    root = tmp_path_factory.mktemp("plain")
    rng = random.Random(0)
    docs = [" ".join(f"The {rng.choice(['nurse', 'cook', 'clerk'])} saw the heap of hearts near the shore."
                     for _ in range(rng.randint(2, 4))) for _ in range(120)]
    (root / "c.txt").write_text("\n\n".join(docs) + "\n")
    prefix = build([root / "c.txt"], root / "data" / "c", seq_len=16, vocab_size=300, seed=1).prefix
    train(prefix, root / "suite", TrainSettings(sizes=["micro-50k"], steps=6, batch_size=4, checkpoint_every=2),
          progress=False)
    return root / "suite"


def test_intervention_refuses_a_transform_that_changes_nothing(plain_suite, tmp_path, capsys):
    from pythia_suite.checkpoints import Suite
    from pythia_suite.data.build import load_tokenizer
    from pythia_suite.data.order import TrainingOrder
    from pythia_suite.data.transforms import TokenMap

    suite = Suite.load(plain_suite)
    tok = load_tokenizer(plain_suite / suite.manifest["tokenizer"])
    order = TrainingOrder(plain_suite / suite.manifest["data"]["prefix"], batch_size=4)
    swap = TokenMap.pronoun_swap(tok)
    inside = sum(r["inside_word"] for st in (4, 5) for r in swap.count(order.batch(st)) if r["role"] == "source")
    reason = (f"its forms occur only inside longer words ({inside} times), which are never replaced" if inside
              else "none of its 16 forms that this tokenizer can write occurs in them")
    (tmp_path / "map.json").write_text(json.dumps({"zebra": "horse"}))
    before = listing(plain_suite)
    for extra, name, why in [([], "pronoun-swap", reason),
                             (["--transform", "word-map", "--word-map", tmp_path / "map.json"], "word-map:map.json",
                              "none of its 4 forms that this tokenizer can write occurs in them")]:
        rc, out, err = run_cli(capsys, "train", "--resume-from", f"{plain_suite}/micro-50k@4", "--name", "x",
                               "--quiet", *extra)
        assert rc == 2 and out == ""
        assert assert_one_error_line(err) == (
            f"error: --transform {name} would change nothing: no batch of steps 4..5 (the ones the child trains "
            f"on) holds a mapped form as a whole word; {why}; the child would equal its parent, so nothing was "
            "trained (choose a map whose words occur in the data)")
        assert not (plain_suite / "x").exists()
    assert listing(plain_suite) == before  # the manifest byte-identical, nothing else written


def test_word_map_intervention_warns_once_and_trains(plain_suite, tmp_path, capsys):
    import shutil

    from pythia_suite.checkpoints import Suite
    from pythia_suite.data.build import load_tokenizer
    from pythia_suite.intervention import transform_counts

    shutil.copytree(plain_suite.parent, tmp_path / "root")  # the data too: the manifest's paths are relative
    s = tmp_path / "root" / "suite"
    ids = encoder(load_tokenizer(s / json.loads((s / "checkpoints_manifest.json").read_text())["tokenizer"]))
    forms = [("nurse", "doctor"), ("Nurse", "Doctor"), (" nurse", " doctor"), (" Nurse", " Doctor")]
    multi = sum(len(ids(a)) > 1 or len(ids(b)) > 1 for a, b in forms)
    shift = sum(len(ids(a)) != len(ids(b)) for a, b in forms)
    assert len(ids(" nurse")) == 1 and len(ids(" doctor")) > 1 and shift > 0
    (tmp_path / "map.json").write_text(json.dumps({"nurse": "doctor"}))
    rc, _, err = run_cli(capsys, "train", "--resume-from", f"{s}/micro-50k@4", "--name", "doc", "--quiet",
                         "--transform", "word-map", "--word-map", tmp_path / "map.json")
    assert rc == 0
    assert err.splitlines() == [f"warning: word-map:map.json: {multi} of 4 forms are several tokens of this tokenizer "
                                f"(replaced as token sequences; {shift} change an item's length: the rest of the item "
                                "shifts, end-of-text pads it or its last tokens drop)",
                                "starting doc from micro-50k's step 4 (of 6)"]
    child, parent = (s / m / "step6" / "model.safetensors" for m in ("doc", "micro-50k"))
    assert child.read_bytes() != parent.read_bytes()
    counts = transform_counts(Suite.load(s), "doc")
    assert set(counts["step"]) == {4, 5} and set(counts["role"]) == {"source", "target", "dropped", "padded"}
    grow = {a: len(ids(b)) - len(ids(a)) for a, b in forms}  # every form grows or keeps its length: only drops
    for st, c in counts.groupby("step"):
        src = c[c["role"] == "source"].set_index("token")
        by_role = c.set_index("role")
        grown = sum(src.loc[a, "whole_word_before"] * g for a, g in grow.items())
        assert by_role.loc["dropped", "whole_word_before"] == grown
        assert by_role.loc["padded", "whole_word_after"] == 0
        assert (src["whole_word_after"] == 0).all() and src["whole_word_before"].sum() > 0
