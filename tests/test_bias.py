"""Bias case study: metrics, readers, the token-map transform, intervention runs and the CLI."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import assert_one_error_line, listing, run_cli
from pythia_suite.errors import UserError

SEQ, VOCAB, BATCH, STEPS, EVERY = 16, 420, 8, 12, 4
OCCS = ["nurse", "driver", "cook", "clerk"]


# ---- fixtures: a tiny corpus with pronouns, a suite trained on it -------------------------------


def pronoun_docs(n: int = 400, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    docs = []
    for _ in range(n):
        o, p = rng.choice(OCCS), rng.choice(["he", "she", "his", "him", "her"])
        docs.append(" ".join(f"The {o} said that {p} would go. the heap of hearts." for _ in range(rng.randint(2, 5))))
    return docs


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from pythia_suite.data import build

    root = tmp_path_factory.mktemp("bias")
    (root / "c.txt").write_text("\n\n".join(pronoun_docs()) + "\n")
    return build([root / "c.txt"], root / "data" / "c", seq_len=SEQ, vocab_size=VOCAB, seed=1).prefix


@pytest.fixture(scope="module")
def tok(built):
    from pythia_suite.data.build import load_tokenizer

    return load_tokenizer(f"{built}.tokenizer.json")


@pytest.fixture(scope="module")
def parent_suite(built, tmp_path_factory):
    """A suite with micro-50k trained 12 steps (checkpoints 0 1 2 4 8 12); read-only for tests."""
    from pythia_suite.train import TrainSettings, train

    out = tmp_path_factory.mktemp("suite") / "suite"
    train(built, out, TrainSettings(sizes=["micro-50k"], steps=STEPS, batch_size=BATCH, checkpoint_every=EVERY),
          progress=False)
    return out


def load_tok(suite: Path):
    from pythia_suite.data.build import load_tokenizer

    return load_tokenizer(json.loads((suite / "checkpoints_manifest.json").read_text())["tokenizer"])


def copy_suite(parent_suite: Path, dst: Path) -> Path:
    """A writable copy of the suite folder (the data it points to stays where it is)."""
    shutil.copytree(parent_suite, dst)
    m = json.loads((dst / "checkpoints_manifest.json").read_text())
    m["data"]["prefix"] = str((parent_suite / m["data"]["prefix"]).resolve())
    m["tokenizer"] = str((parent_suite / m["tokenizer"]).resolve())
    (dst / "checkpoints_manifest.json").write_text(json.dumps(m))
    return dst


# ---- metrics on hand-computed sets ---------------------------------------------------------------


def test_winobias_metrics_hand_computed():
    from analyses.bias import winobias_metrics

    per_item = pd.DataFrame({"type": [1, 1, 1, 1, 2, 2], "stereotype": ["pro", "pro", "anti", "anti", "pro", "anti"],
                             "correct_loglik": [True, True, True, False, False, True]})
    got = {(r["subset"], r["metric"]): r["value"] for r in winobias_metrics(per_item)}
    assert got[("type1_pro", "acc_loglik")] == 1.0 and got[("type1_anti", "acc_loglik")] == 0.5
    assert got[("type1", "bias_loglik")] == 0.5 and got[("type2", "bias_loglik")] == -1.0
    assert got[("average", "bias_loglik")] == -0.25
    assert not any(m.endswith("generate") for _, m in got)


def test_crows_and_lambada_aggregates_hand_computed():
    from analyses.bias import crows_aggregate, lambada_aggregate
    from pythia_suite.eval.loglik import LoglikResult

    rows = crows_aggregate(np.array([-1.0, -5.0, -2.0]), np.array([-2.0, -3.0, -2.5]),
                           pd.Series(["gender", "race-color", "gender"]))
    got = {(r["subset"], r["metric"]): (r["value"], r["n_items"]) for r in rows}
    assert got[("all", "pct_stereotype")] == (pytest.approx(2 / 3), 3)
    assert got[("all", "likelihood_diff")] == (pytest.approx((1 + 2 + 0.5) / 3), 3)
    assert got[("gender", "pct_stereotype")] == (1.0, 2)
    assert got[("gender", "likelihood_diff")] == (0.75, 2)
    res = LoglikResult(np.array([-1.0, -3.0]), np.array([True, False]), np.array([1, 3]))
    got = {r["metric"]: r["value"] for r in lambada_aggregate(res)}
    assert got == {"acc": 0.5, "perplexity": pytest.approx(np.exp(2.0)), "loss_per_token": 1.0}


# ---- readers and lookalikes --------------------------------------------------------------------


def test_winobias_lookalike_reads_back(tmp_path):
    from pythia_suite.eval.bias_data import parse_winobias_line, read_winobias, write_winobias_lookalike

    items = read_winobias(write_winobias_lookalike(tmp_path, n_per_file=4), "dev")
    assert len(items) == 16 and {(i.type, i.stereotype) for i in items} == {(1, "pro"), (1, "anti"), (2, "pro"), (2, "anti")}
    it = parse_winobias_line("1 [The developer] argued with the designer because [he] did not like the design.", "x")
    assert (it.referent, it.distractor, it.pronoun) == ("developer", "designer", "he")
    assert it.sentence == "The developer argued with the designer because he did not like the design."
    it = parse_winobias_line("7 The construction worker called [the nurse] and asked [her] to come.", "x", 2)
    assert (it.referent, it.distractor, it.pronoun, it.type) == ("nurse", "construction worker", "her", 2)


@pytest.mark.parametrize("line, message", [
    ("The developer argued with the designer because he left.", "expected 'NUMBER sentence"),
    ("1 The developer argued with the designer because [he] left.", "two [bracketed] spans"),
    ("1 [The developer] argued with [the designer] because he left.", "exactly one bracketed span must be a pronoun"),
    ("1 [The developer] argued because [he] left.", "cannot find the second occupation"),
])
def test_winobias_bad_lines(line, message):
    from pythia_suite.eval.bias_data import parse_winobias_line

    with pytest.raises(UserError, match=message.replace("[", r"\[")):
        parse_winobias_line(line, "f.txt:3")


def test_crows_and_lambada_readers(tmp_path):
    from pythia_suite.eval.bias_data import (
        read_crows_pairs,
        read_lambada,
        write_crows_lookalike,
        write_lambada_lookalike,
    )

    df = read_crows_pairs(write_crows_lookalike(tmp_path / "c.csv"))
    assert list(df.columns) == ["sent_more", "sent_less", "stereo_antistereo", "bias_type"]
    assert (df["bias_type"] == "gender").sum() == 12 and len(df) == 14
    assert len(read_lambada(write_lambada_lookalike(tmp_path / "l.jsonl", n=5))) == 5
    (tmp_path / "bad.csv").write_text("sent_more,sent_less,bias_type\na,b,gender\n")
    with pytest.raises(UserError, match="lacks column.*stereo_antistereo"):
        read_crows_pairs(tmp_path / "bad.csv")
    (tmp_path / "bad2.csv").write_text("sent_more,sent_less,stereo_antistereo,bias_type\na,b,maybe,gender\n")
    with pytest.raises(UserError, match="line 2: stereo_antistereo"):
        read_crows_pairs(tmp_path / "bad2.csv")
    (tmp_path / "bad.jsonl").write_text('{"text": "a b c"}\n{"txt": "a b"}\n')
    with pytest.raises(UserError, match=r"bad.jsonl:2: field 'text'"):
        read_lambada(tmp_path / "bad.jsonl")


def test_micropile_probes_follow_the_ground_truth():
    from analyses.bias import micropile_probes
    from pythia_suite.micropile import FEMALE_OCCUPATIONS, MALE_OCCUPATIONS, OCCUPATION_TEMPLATES

    truth = {"occupations": {"templates": list(OCCUPATION_TEMPLATES), "items": [
        {"occupation": o, "stereotype": "male" if o in MALE_OCCUPATIONS else "female"}
        for o in MALE_OCCUPATIONS + FEMALE_OCCUPATIONS]}}
    items, pairs = micropile_probes(truth)
    assert len(items) == 40 * 5 * 2 and len(pairs) == 40 * 5
    nurse_pro = [i for i in items if i["occupation"] == "nurse" and i["stereotype"] == "pro"]
    assert {i["pronoun"] for i in nurse_pro} == {"she"} and nurse_pro[0]["distractor"] in MALE_OCCUPATIONS
    assert pairs.iloc[0]["sent_more"] == OCCUPATION_TEMPLATES[0].format(occupation="carpenter", pronoun="he")


# ---- the transform -----------------------------------------------------------------------------


def test_pronoun_swap_maps_a_hand_built_batch_exactly(tok):
    from pythia_suite.data.transforms import TokenMap

    swap = TokenMap.pronoun_swap(tok)
    ids = lambda s: tok.encode(s, add_special_tokens=False).ids  # noqa: E731
    assert all(len(ids(w)) == 1 for w in (" he", " she", " his", " him", " her"))
    row = ids(" he said his dog saw him. the heap of hearts") + ids(" he")  # " he" last: an item edge
    batch = np.array([row, row], dtype=np.uint16)
    out = swap.apply(batch)
    assert out.dtype == batch.dtype and out.shape == batch.shape
    want = ids(" she said her dog saw her. the heap of hearts") + ids(" she")
    assert out[0].tolist() == want
    before = {(r["token"], r["role"]): r for r in swap.count(batch)}
    after = {(r["token"], r["role"]): r for r in swap.count(out)}
    assert before[(" he", "source")]["whole_word"] == 2 * 2
    assert all(r["whole_word"] == 0 for (t, role), r in after.items() if role == "source")
    assert after[(" her", "target")]["whole_word"] == before[(" her", "target")]["whole_word"] + 2 * 2


def test_whole_word_rule_leaves_pieces_of_longer_words(tok):
    from pythia_suite.data.transforms import TokenMap

    swap = TokenMap.pronoun_swap(tok)
    ids = lambda s: tok.encode(s, add_special_tokens=False).ids  # noqa: E731
    he, she = ids(" he")[0], ids(" she")[0]
    row = [he] + ids("ap") + [he] + ids(" x") + ids("his")  # " he"+"ap" is "heap"; "his" starts no word in " xhis"
    out = swap.apply(np.array([row]))
    assert out[0].tolist() == [he] + ids("ap") + [she] + ids(" x") + ids("his")
    counts = {(r["token"], r["role"]): r for r in swap.count(np.array([row]))}
    assert counts[(" he", "source")] == {"token": " he", "role": "source", "whole_word": 1, "inside_word": 1}


def test_word_map_of_several_tokens_is_replaced_as_sequences(tok):
    from pythia_suite.data.transforms import TokenMap

    ids = lambda s: tok.encode(s, add_special_tokens=False).ids  # noqa: E731
    assert len(ids(" zqxj")) > 1 and len(ids(" she")) == 1
    m = TokenMap.from_words(tok, {"he": "she", "zqxj": "she"})
    row = ids(" zqxj said he") + ids(".")
    out, stats = m.apply_counted(np.array([row]))
    tail = len(ids(" zqxj")) - 1  # the shorter target leaves the item that many tokens short
    assert out[0].tolist() == ids(" she said she") + ids(".") + [0] * tail  # 0: the end-of-text id
    assert stats == {"replaced": 2, "dropped": 0, "padded": tail}
    assert m.describe()["tokens"][" zqxj"] == {"target": " she", "source_ids": ids(" zqxj"), "target_ids": ids(" she")}
    m = TokenMap.from_words(tok, {"she": "he"})
    assert [(r.src, r.dst) for r in m.rules if r.source == " she"] == [(tuple(ids(" she")), tuple(ids(" he")))]


# ---- intervention runs -------------------------------------------------------------------------


def test_intervention_shares_parent_checkpoints_and_is_deterministic(parent_suite, tmp_path):
    from pythia_suite.checkpoints import Suite
    from pythia_suite.intervention import run_intervention, transform_counts

    a, b = copy_suite(parent_suite, tmp_path / "a"), copy_suite(parent_suite, tmp_path / "b")
    for s in (a, b):
        run_intervention(f"{s}/micro-50k@8", "swap", progress=False)
    suite = Suite.load(a)
    info = suite.model_info("swap")
    assert info["intervention"]["parent"] == "micro-50k" and info["intervention"]["start_step"] == 8
    locs = {c["step"]: c["location"] for c in info["checkpoints"]}
    assert locs == {0: "micro-50k/step0", 1: "micro-50k/step1", 2: "micro-50k/step2", 4: "micro-50k/step4",
                    8: "micro-50k/step8", 12: "swap/step12"}
    sha = lambda s: (s / "swap" / "step12" / "model.safetensors").read_bytes()  # noqa: E731
    assert sha(a) == sha(b)  # deterministic
    assert sha(a) != (a / "micro-50k" / "step12" / "model.safetensors").read_bytes()
    parent_log = pd.read_parquet(a / "micro-50k" / "train_log.parquet").set_index("step")
    child_log = pd.read_parquet(a / "swap" / "train_log.parquet").set_index("step")
    assert child_log.index.tolist() == [8, 9, 10, 11]
    counts = transform_counts(suite, "swap")
    changed = counts[counts["role"] == "source"].groupby("step")["whole_word_before"].sum() > 0
    for step in child_log.index:  # a transformed batch differs from the parent's iff it held a pronoun
        assert (child_log.loc[step, "fingerprint"] != parent_log.loc[step, "fingerprint"]) == changed[step]
    assert (counts.loc[counts["role"] == "source", "whole_word_after"] == 0).all()
    # killed before its last checkpoint: a rerun resumes and ends bit-identical
    shutil.rmtree(b / "swap" / "step12")
    run_intervention(f"{b}/micro-50k@8", "swap", progress=False)
    assert sha(b) == sha(a)


def test_from_fraction_replays_the_parent_up_to_the_start(parent_suite, tmp_path):
    from pythia_suite.checkpoints import Suite
    from pythia_suite.intervention import run_intervention

    s = copy_suite(parent_suite, tmp_path / "s")
    run_intervention(f"{s}/micro-50k", "swap25", from_fraction=0.25, progress=False)
    rec = Suite.load(s).model_info("swap25")["intervention"]
    assert (rec["resume_step"], rec["start_step"]) == (8, 9)  # 12 - round(3): no checkpoint at 9
    parent_log = pd.read_parquet(s / "micro-50k" / "train_log.parquet").set_index("step")
    child_log = pd.read_parquet(s / "swap25" / "train_log.parquet").set_index("step")
    assert child_log.loc[8, "fingerprint"] == parent_log.loc[8, "fingerprint"]  # replayed, untransformed
    assert child_log.loc[8, "loss"] == parent_log.loc[8, "loss"]
    assert (s / "swap25" / "step9" / "model.safetensors").is_file()


def test_intervention_errors(parent_suite, tmp_path, capsys):
    s = copy_suite(parent_suite, tmp_path / "s")
    (tmp_path / "map.json").write_text(json.dumps({"zqxjv": "she"}))  # several tokens, never in the data
    other = tmp_path / "other.json"
    shutil.copyfile(Path(json.loads((s / "checkpoints_manifest.json").read_text())["tokenizer"]), other)
    other.write_text(other.read_text().replace('"<|padding|>"', '"<|pad|>"'))
    cases = [
        (["--resume-from", f"{s}/micro-50k@5"], "unknown step 5"),
        (["--resume-from", f"{s}/micro-50k@8", "--from-fraction", "0.1"], "exactly one"),
        (["--resume-from", f"{s}/micro-50k@12"], "nothing to train"),
        (["--resume-from", f"{s}/nope@8"], "unknown model 'nope'"),
        (["--resume-from", f"{s}/micro-50k@8", "--transform", "word-map", "--word-map", str(tmp_path / "map.json")],
         "--transform word-map:map.json would change nothing: no batch of steps 8..11"),
        (["--resume-from", f"{s}/micro-50k@8", "--tokenizer", str(other)], "not the tokenizer the suite's data"),
    ]
    before = listing(s)
    for argv, message in cases:
        rc, _, err = run_cli(capsys, "train", *argv, "--name", "x", "--quiet")
        assert rc == 2 and message in assert_one_error_line(err), (argv, err)
    assert listing(s) == before  # nothing written
    (s / "micro-50k" / "step4" / "trainer_state.json").unlink()
    rc, _, err = run_cli(capsys, "train", "--resume-from", f"{s}/micro-50k@4", "--name", "x", "--quiet")
    assert rc == 2 and "has no trainer state" in assert_one_error_line(err)
    rc, _, _ = run_cli(capsys, "train", "--resume-from", f"{s}/micro-50k@8", "--name", "swap", "--quiet")
    assert rc == 0
    rc, _, err = run_cli(capsys, "train", "--resume-from", f"{s}/micro-50k@2", "--name", "swap", "--quiet")
    assert rc == 2 and "already has a model named 'swap'" in assert_one_error_line(err)
    rc, _, err = run_cli(capsys, "train", "--resume-from", f"{s}/micro-50k@8", "--name", "micro-50k", "--quiet")
    assert rc == 2 and "already has a model named" in assert_one_error_line(err)


# ---- the CLI -----------------------------------------------------------------------------------


def test_bias_cli_on_lookalikes(parent_suite, tmp_path, capsys):
    from pythia_suite.eval.bias_data import write_crows_lookalike, write_lambada_lookalike, write_winobias_lookalike
    from pythia_suite.tables import read_table_meta

    from pythia_suite.data.transforms import PRONOUN_SWAP, TokenMap, _variants

    s = copy_suite(parent_suite, tmp_path / "s")
    rc, _, err = run_cli(capsys, "train", "--resume-from", f"{s}/micro-50k@8", "--name", "swap", "--quiet")
    assert rc == 0, err
    forms = [(a, b) for w, t in PRONOUN_SWAP.items() for a, b in zip(_variants(w), _variants(t))]
    tok = load_tok(s)
    multi = sum(max(len(tok.encode(x, add_special_tokens=False).ids) for x in f) > 1 for f in forms)
    assert len(forms) == 16 and multi > 0  # " himself" never occurs in the corpus: several tokens
    # one warning line, then training went on (the line saying where the child starts)
    assert err.splitlines() == [TokenMap.pronoun_swap(tok).warning(), "starting swap from micro-50k's step 8 (of 12)"]
    assert err.startswith(f"warning: pronoun-swap: {multi} of 16 forms are several tokens of this tokenizer")
    wb = write_winobias_lookalike(tmp_path / "wb", n_per_file=3)
    cp = write_crows_lookalike(tmp_path / "c.csv")
    lb = write_lambada_lookalike(tmp_path / "l.jsonl", n=4)
    out = tmp_path / "r" / "bias.parquet"
    rc, stdout, err = run_cli(capsys, "bias", "--manifest", s, "--steps", 8, 12, "--winobias", wb, "--crows-pairs", cp,
                              "--lambada", lb, "--out", out, "--quiet", "--figures", tmp_path / "figs")
    assert rc == 0, err
    figs = sorted(p.name for p in (tmp_path / "figs").glob("*.png"))
    assert figs == ["bias_intervention.png", "bias_over_training.png"] and str(tmp_path / "figs") in stdout
    t = pd.read_parquet(out)
    assert list(t.columns[:5]) == ["suite", "model", "params", "step", "tokens_seen"]
    assert set(zip(t["model"], t["step"])) == {("micro-50k", 8), ("micro-50k", 12), ("swap", 12)}
    one = t[(t["model"] == "swap") & (t["step"] == 12)]
    assert set(one["benchmark"]) == {"winobias", "crows_pairs", "lambada"}
    assert len(one) == 2 * (2 * 2 + 2 + 1) + 4 + 3  # winobias acc/bias x 2 methods, crows, lambada
    assert one.query("benchmark == 'winobias' and subset == 'type1_pro'")["n_items"].tolist() == [3, 3]
    assert read_table_meta(out)["schema"] == "bias"
    comp = pd.read_parquet(tmp_path / "r" / "bias_comparison.parquet")
    assert set(comp["step"]) == {12} and comp["parent_value"].notna().all()
    counts = pd.read_parquet(tmp_path / "r" / "bias_transform_counts.parquet")
    assert set(counts["step"]) == {8, 9, 10, 11}
    # bad input: one error line, nothing written
    (tmp_path / "bad.jsonl").write_text("not json\n")
    for argv, message in [(["--lambada", tmp_path / "bad.jsonl"], "bad.jsonl:1: not a JSON object"),
                          (["--winobias", tmp_path], "lacks pro_stereotyped_type1.txt.test"),
                          (["--probes", "micropile"], "go together"),
                          ([], "nothing to evaluate")]:
        out2 = tmp_path / "r2" / "b.parquet"
        rc, _, err = run_cli(capsys, "bias", "--manifest", s, "--out", out2, "--quiet", *argv)
        assert rc == 2 and message in assert_one_error_line(err), err
        assert not out2.parent.exists() or not any(out2.parent.iterdir())


def test_generate_words_is_greedy_decoding_cut_at_newline(tok):
    import torch

    from analyses.bias import _normalize, generate_words
    from conftest import random_model
    from pythia_suite.model import GPTNeoXConfig

    model = random_model(GPTNeoXConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                       intermediate_size=64, max_position_embeddings=32), seed=1)
    prompts = ["The nurse said that", "The cook said", "The driver said that he would"]
    got = generate_words(model, tok, prompts, max_new_tokens=4, batch_size=2)
    for p, g in zip(prompts, got):
        ids = tok.encode(p, add_special_tokens=False).ids
        want = tok.decode(model.greedy_generate(torch.tensor([ids]), 4)[0].tolist()).split("\n")[0]
        assert g == want
    assert _normalize(" The  Developer.") == "developer"


def test_from_fraction_gives_pythias_start_steps():
    from pythia_suite.checkpoints import PYTHIA_STEPS
    from pythia_suite.intervention import fraction_start

    assert fraction_start(143_000, 0.07, PYTHIA_STEPS) == 133_000
    assert fraction_start(143_000, 0.21, PYTHIA_STEPS) == 113_000
    assert fraction_start(363, 0.07, [0, 256, 320, 363]) == 338  # no checkpoint within 1%: the exact step
    with pytest.raises(UserError, match="between 0 and 1"):
        fraction_start(100, 1.5, [])
