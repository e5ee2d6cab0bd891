"""`pythia-suite evaluate` (pythia_suite/eval/): lm-evaluation-harness tasks across a suite's
checkpoints, against scoring the same items directly with our model; resume; the harness'
one-token-cache case; the local micro-Pile tasks; bad input.

    .venv/bin/python -m pytest tests/test_evaluate.py -q

One tiny suite (micro-50k on a 150 kB micro-Pile, 8 steps of batch 8, 64-token context) is trained
once per module. Nothing here downloads: the harness runs with HF_DATASETS_OFFLINE/HF_HUB_OFFLINE.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("lm_eval", reason="lm-eval is not installed (extra `eval`: pip install 'pythia-suite[eval]')")

from _train_helpers import files_under, one_error_line, run_cli  # noqa: E402
from pythia_suite.data.build import load_tokenizer  # noqa: E402
from pythia_suite.errors import UserError  # noqa: E402
from pythia_suite.eval import evaluate as ev  # noqa: E402
from pythia_suite.eval.local_tasks import arithmetic_docs, pronoun_docs, write_micropile_tasks  # noqa: E402
from pythia_suite.model import GPTNeoX  # noqa: E402
from conftest import FORWARD_RTOL, scaled_error  # noqa: E402

STEPS = [0, 8]
LIMIT = 16
TASKS = ("micropile_pronoun", "micropile_arithmetic_times")


@pytest.fixture(scope="module", autouse=True)
def offline():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_DATASETS_OFFLINE", "1")
        mp.setenv("HF_HUB_OFFLINE", "1")
        ev.set_offline(True)
        yield


@pytest.fixture(scope="module")
def suite_dir(tmp_path_factory) -> Path:
    from pythia_suite.data import build
    from pythia_suite.micropile import MicroPileConfig, generate
    from pythia_suite.train import TrainSettings, train

    root = tmp_path_factory.mktemp("eval")
    generate(root / "mp.jsonl", replace(MicroPileConfig(), target_bytes=150_000, canaries_per_repeat=0,
                                        arithmetic_fraction=0.2, occupation_fraction=0.2))
    build([root / "mp.jsonl"], root / "data" / "mp", seq_len=64, vocab_size=400, seed=1, progress=False)
    train(root / "data" / "mp", root / "suite", TrainSettings(sizes=["micro-50k"], steps=8, batch_size=8,
                                                              checkpoint_every=4, suite="tiny"), progress=False)
    return root / "suite"


@pytest.fixture(scope="module")
def tasks_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tasks")
    write_micropile_tasks(out)
    return out


def settings(tasks_dir, tasks=("micropile_pronoun",), **kw) -> ev.EvalSettings:
    return ev.EvalSettings(tasks=list(tasks), include_path=[str(tasks_dir)], steps=STEPS, **kw)


@pytest.fixture(scope="module")
def evaluated(suite_dir, tasks_dir, tmp_path_factory):
    """(table, items, out path): a loglikelihood and a generate_until task at steps 0 and 8."""
    out = tmp_path_factory.mktemp("run") / "eval.parquet"
    items = out.with_name("items.parquet")
    ev.evaluate_suite(suite_dir, out, settings(tasks_dir, TASKS, limit=LIMIT), per_item=items, progress=False)
    return pd.read_parquet(out), pd.read_parquet(items), out


# ---- direct scoring with our model (the reference) ------------------------------------------


def direct_pronoun(model, tok, doc) -> tuple[int, float]:
    """(chosen index, log-likelihood of the gold choice) of one pronoun item."""
    ctx = tok.encode(doc["context"]).ids
    lls = []
    for choice in (" he", " she"):
        whole = tok.encode(doc["context"] + choice).ids
        logprobs = F.log_softmax(model(torch.tensor([whole[:-1]])).float(), dim=-1)[0]
        lls.append(sum(logprobs[i - 1, whole[i]].item() for i in range(len(ctx), len(whole))))
    return max(range(2), key=lls.__getitem__), lls[doc["gold"]]


def direct_arithmetic(model, tok, doc) -> tuple[str, str]:
    """(generated text up to the newline, greedy answer: its first integer, or the harness'
    "[invalid]") of one times item, 0-shot."""
    prompt = torch.tensor([tok.encode(f"Q:What is {doc['x1']} times {doc['x2']}? A:").ids])
    ids = model.greedy_generate(prompt, 8)[0].tolist()
    ids = ids[: ids.index(0)] if 0 in ids else ids  # <|endoftext|> ends the generation
    text = tok.decode(ids).split("\n")[0]
    m = re.search(r"(-?\d+)", text)
    return text, m.group(1) if m else "[invalid]"


def test_table_equals_scoring_the_items_directly(suite_dir, evaluated):
    table, per_item, _ = evaluated
    assert list(table.columns[:5]) == ["suite", "model", "params", "step", "tokens_seen"]
    assert list(table.columns[5:]) == ["task", "metric", "filter", "n_shot", "value", "stderr", "n"]
    assert sorted(table["step"].unique()) == STEPS and set(table["suite"]) == {"tiny"}
    tok = load_tokenizer(suite_dir / "micro-50k" / "step8" / "tokenizer.json")
    pronouns, sums = pronoun_docs()[:LIMIT], arithmetic_docs("times")[:LIMIT]
    for step in STEPS:
        model = GPTNeoX.from_pretrained(suite_dir / "micro-50k" / f"step{step}")
        at = table[table["step"] == step].set_index("task")
        with torch.no_grad():
            chosen, gold_ll = zip(*(direct_pronoun(model, tok, d) for d in pronouns))
            texts, answers = zip(*(direct_arithmetic(model, tok, d) for d in sums))
        row = at.loc["micropile_pronoun"]
        assert (row["metric"], row["filter"], row["n_shot"], row["n"]) == ("acc", "none", 0, LIMIT)
        assert row["value"] == sum(c == d["gold"] for c, d in zip(chosen, pronouns)) / LIMIT
        row = at.loc["micropile_arithmetic_times"]
        assert (row["metric"], row["filter"], row["n"]) == ("exact_match", "first_integer", LIMIT)
        assert row["value"] == sum(a == str(d["answer"]) for a, d in zip(answers, sums)) / LIMIT

        items = per_item[(per_item["step"] == step)].sort_values("doc_id")
        p = items[items["task"] == "micropile_pronoun"]
        assert p["doc_id"].tolist() == list(range(LIMIT))
        assert p["response"].tolist() == [str(c) for c in chosen]
        assert p["answer"].tolist() == [[" he", " she"][c] for c in chosen]  # the chosen choice's text
        assert p["target"].tolist() == [str(d["gold"]) for d in pronouns]
        assert scaled_error(p["loglikelihood"].to_numpy(), gold_ll) < FORWARD_RTOL  # reordered float32 sums
        a = items[items["task"] == "micropile_arithmetic_times"]
        # the raw generation (not the filter's "[invalid]"), what the metric scored, and the target as text
        assert a["response"].tolist() == list(texts) and a["answer"].tolist() == list(answers)
        assert a["target"].tolist() == [str(d["answer"]) for d in sums]
        assert a["loglikelihood"].isna().all()


def test_notes_on_floor_and_chance_accuracy(evaluated):
    from pythia_suite.notes import accuracy_note
    from pythia_suite.tables import read_table_meta

    table, per_item, out = evaluated
    want = []
    for r in table.sort_index().itertuples():
        if r.metric == "acc":  # two choices per pronoun item: chance 1/2
            want.append(accuracy_note(f"micro-50k step {r.step} micropile_pronoun 0-shot acc", round(r.value * LIMIT),
                                      LIMIT, 0.5))
        elif r.metric == "exact_match":  # generation: floor only
            want.append(accuracy_note(f"micro-50k step {r.step} micropile_arithmetic_times 0-shot exact_match "
                                      "(first_integer)", round(r.value * LIMIT), LIMIT))
    want = [n for n in want if n]
    # the untrained step 0 answers no product right: at floor
    assert f"micro-50k step 0 micropile_arithmetic_times 0-shot exact_match (first_integer): accuracy 0 / {LIMIT}, at floor" \
        in "\n".join(want)
    assert read_table_meta(out)["notes"] == want
    assert read_table_meta(out.with_name("items.parquet"))["notes"] == want


def test_chance_of_a_multiple_choice_task_is_the_mean_of_one_over_its_choices(tasks_dir):
    tasks = ev.load_tasks(["micropile_pronoun", "micropile_arithmetic_times"], [str(tasks_dir)], None, False)
    assert ev.chance_level(tasks["micropile_pronoun"], 4) == 0.5  # he / she
    assert ev.chance_level(tasks["micropile_arithmetic_times"], 4) is None  # generation


def test_rerun_skips_finished_cells_and_redoes_only_a_missing_one(suite_dir, tasks_dir, evaluated, monkeypatch):
    _, _, out = evaluated
    before = pd.read_parquet(out)
    calls = []
    real = ev.run_cell
    monkeypatch.setattr(ev, "run_cell", lambda *a, **k: calls.append(a[1]) or real(*a, **k))
    ev.evaluate_suite(suite_dir, out, settings(tasks_dir, TASKS, limit=LIMIT), per_item=out.with_name("items.parquet"),
                      progress=False)
    assert calls == []
    pd.testing.assert_frame_equal(pd.read_parquet(out), before)
    # a run killed during (step 8, pronoun) left no part for that cell: only it is redone
    (out.with_name("eval.parquet.parts") / "micro-50k" / "step8" / "micropile_pronoun.parquet").unlink()
    ev.evaluate_suite(suite_dir, out, settings(tasks_dir, TASKS, limit=LIMIT), per_item=out.with_name("items.parquet"),
                      progress=False)
    assert calls == ["micropile_pronoun"]
    pd.testing.assert_frame_equal(pd.read_parquet(out), before)
    with pytest.raises(UserError, match="other settings"):
        ev.evaluate_suite(suite_dir, out, settings(tasks_dir, TASKS, limit=LIMIT - 1), progress=False)


def test_dask_workers_write_the_serial_tables(suite_dir, tasks_dir, evaluated, tmp_path, capsys):
    """One checkpoint per Dask task (2 worker processes on 127.0.0.1): the same tables as the serial run."""
    pytest.importorskip("distributed")
    table, per_item, _ = evaluated
    out, items = tmp_path / "eval.parquet", tmp_path / "items.parquet"
    rc, _, err = run_cli(capsys, "evaluate", "--manifest", suite_dir, "--tasks", *TASKS, "--include-path", tasks_dir,
                         "--steps", *STEPS, "--limit", LIMIT, "--out", out, "--per-item", items, "--workers", 2, "--quiet")
    assert rc == 0, err
    keys = ["model", "step", "task", "metric", "filter"]
    pd.testing.assert_frame_equal(pd.read_parquet(out).sort_values(keys, ignore_index=True),
                                  table.sort_values(keys, ignore_index=True))
    keys = ["model", "step", "task", "doc_id", "filter", "metric"]
    pd.testing.assert_frame_equal(pd.read_parquet(items).sort_values(keys, ignore_index=True),
                                  per_item.sort_values(keys, ignore_index=True))


def test_one_token_cache_case_cannot_reach_our_results(suite_dir):
    """Two requests with one token sequence split differently into context/continuation. The
    harness' HFLM with its logits cache gathers the wrong positions for the shorter continuation;
    SuiteLM scores each on its own and equals the direct sum of log-probs."""
    transformers = pytest.importorskip("transformers")
    from lm_eval.models.huggingface import HFLM

    from pythia_suite.eval.harness import SuiteLM

    folder = suite_dir / "micro-50k" / "step8"
    tok = load_tokenizer(folder / "tokenizer.json")
    model = GPTNeoX.from_pretrained(folder)
    ids = tok.encode("The nurse said that she").ids
    short, long = (("", ""), ids[:-1], ids[-1:]), (("", ""), ids[:-2], ids[-2:])
    with torch.no_grad():
        logprobs = F.log_softmax(model(torch.tensor([ids[:-1]])), dim=-1)[0]
    want = [logprobs[-1, ids[-1]].item(), logprobs[-2, ids[-2]].item() + logprobs[-1, ids[-1]].item()]

    ours = SuiteLM(batch_size=4).use(model, tok)
    for batch in ([short, long], [long, short], [short, short, long]):
        got = [ll for ll, _ in ours._loglikelihood_tokens(batch)]
        # batched and padded: reordered float32 sums, relative to the log-likelihoods' scale
        assert scaled_error(got, [want[0] if r is short else want[1] for r in batch]) < FORWARD_RTOL

    hf = transformers.AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager").eval()
    hf_tok = transformers.AutoTokenizer.from_pretrained(folder)
    cached = HFLM(pretrained=hf, tokenizer=hf_tok, logits_cache=True, batch_size=4)._loglikelihood_tokens([short, long])
    plain = HFLM(pretrained=hf, tokenizer=hf_tok, logits_cache=False, batch_size=4)._loglikelihood_tokens([short, long])
    assert scaled_error([ll for ll, _ in plain], want) < FORWARD_RTOL  # transformers' kernels: reordered sums
    assert abs(cached[0][0] - want[0]) > 1e-2, "the installed harness no longer shows the one-token-cache bug"


def test_continuation_spanning_the_join_is_scored_not_dropped(suite_dir):
    """Where a token spans context and continuation the harness' split leaves no continuation
    tokens (and HFLM dies on an assertion); SuiteLM scores the continuation's own tokens."""
    from pythia_suite.eval.harness import SuiteLM

    folder = suite_dir / "micro-50k" / "step8"
    tok = load_tokenizer(folder / "tokenizer.json")
    from lm_eval.api.model import TemplateLM

    lm = SuiteLM().use(GPTNeoX.from_pretrained(folder), tok)
    # a word that is one token with its leading space, cut before its last letter
    word = next(w for w in (" nurse", " teacher", " said", " that", " the") if len(tok.encode(w).ids) == 1)
    context, continuation = "The" + word[:-1], word[-1]
    assert TemplateLM._encode_pair(lm, context, continuation)[1] == []  # what the harness would score
    ctx, cont = lm._encode_pair(context, continuation)
    assert ctx == tok.encode(context).ids and cont == tok.encode(continuation).ids
    (ll, _), = lm._loglikelihood_tokens([((context, continuation), ctx, cont)])
    assert ll < 0


# ---- the local tasks --------------------------------------------------------------------------


def test_micropile_task_files(tasks_dir):
    import yaml

    times = [json.loads(x) for x in (tasks_dir / "micropile_arithmetic_times.jsonl").read_text().splitlines()]
    assert len(times) == 100 * 50 and {(d["x1"], d["x2"]) for d in times} == {(a, b) for a in range(100) for b in range(1, 51)}
    assert all(d["answer"] == d["x1"] * d["x2"] for d in times)
    plus = [json.loads(x) for x in (tasks_dir / "micropile_arithmetic_plus.jsonl").read_text().splitlines()]
    assert all(d["answer"] == d["x1"] + d["x2"] for d in plus)
    pronoun = [json.loads(x) for x in (tasks_dir / "micropile_pronoun.jsonl").read_text().splitlines()]
    assert len(pronoun) == 40 * 5 and sum(d["gold"] for d in pronoun) == 100
    assert {"context": "The nurse said that", "occupation": "nurse", "template": 0, "stereotype": "female",
            "gold": 1} in pronoun
    config = yaml.safe_load((tasks_dir / "micropile_arithmetic_times.yaml").read_text())
    assert config["doc_to_text"] == "Q:What is {{x1}} times {{x2}}? A:" and config["target_delimiter"] == ""
    assert config["generation_kwargs"]["until"] == ["\n"]
    assert config["dataset_kwargs"]["data_files"]["test"] == str((tasks_dir / "micropile_arithmetic_times.jsonl").resolve())


def test_eval_tasks_command(tmp_path, capsys):
    rc, out, err = run_cli(capsys, "eval-tasks", "--out", tmp_path / "t")
    assert rc == 0 and "micropile_pronoun" in out
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == sorted(
        f"micropile_{n}.{ext}" for n in ("arithmetic_times", "arithmetic_plus", "pronoun") for ext in ("yaml", "jsonl"))


def test_builtin_tasks_on_local_copies_of_their_data(suite_dir, tmp_path):
    """The README's recipe: a YAML named like the built-in task, `include:` of the harness' file,
    local data files. Made-up lookalikes of LAMBADA (jsonl) and CrowS-Pairs (csv)."""
    import lm_eval

    harness_tasks = Path(lm_eval.__file__).parent / "tasks"
    texts = ["The nurse said that she would finish the report", "The cook smiled when he heard the news"]
    (tmp_path / "lambada.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    pd.DataFrame({"sent_more": ["The nurse said that she was tired.", "The driver said that he was late."],
                  "sent_less": ["The nurse said that he was tired.", "The driver said that she was late."],
                  "stereo_antistereo": ["stereo", "stereo"], "bias_type": ["gender", "gender"]}).to_csv(
        tmp_path / "crows.csv")
    local = tmp_path / "tasks"
    local.mkdir()
    for task, sub, kind, data in (("lambada_openai", "lambada", "json", "lambada.jsonl"),
                                  ("crows_pairs_english", "crows_pairs", "csv", "crows.csv")):
        (local / f"{task}.yaml").write_text(
            f"include: {harness_tasks / sub / (task + '.yaml')}\ntask: {task}\ndataset_path: {kind}\n"
            f"dataset_name: null\ndataset_kwargs: {{data_files: {{test: {tmp_path / data}}}}}\n")
    out = tmp_path / "eval.parquet"
    ev.evaluate_suite(suite_dir, out, ev.EvalSettings(tasks=["lambada_openai", "crows_pairs_english"],
                                                      include_path=[str(local)], steps=[8], bootstrap_iters=0),
                      per_item=tmp_path / "items.parquet", progress=False)
    table = pd.read_parquet(out).set_index(["task", "metric"])
    assert sorted(table.index) == [("crows_pairs_english", "likelihood_diff"), ("crows_pairs_english", "pct_stereotype"),
                                   ("lambada_openai", "acc"), ("lambada_openai", "perplexity")]
    assert (table["n"] == 2).all()
    # pct_stereotype = share of pairs whose sent_more has the higher whole-sentence log-likelihood
    model = GPTNeoX.from_pretrained(suite_dir / "micro-50k" / "step8")
    tok = load_tokenizer(suite_dir / "micro-50k" / "step8" / "tokenizer.json")

    def sentence_ll(text: str) -> float:
        ids = [0] + tok.encode(text).ids  # after <|endoftext|>, as the harness scores an empty context
        with torch.no_grad():
            lp = F.log_softmax(model(torch.tensor([ids[:-1]])), dim=-1)[0]
        return sum(lp[i - 1, ids[i]].item() for i in range(1, len(ids)))

    pairs = pd.read_csv(tmp_path / "crows.csv")
    want = sum(sentence_ll(a) > sentence_ll(b) for a, b in zip(pairs["sent_more"], pairs["sent_less"])) / 2
    assert table.loc[("crows_pairs_english", "pct_stereotype"), "value"] == want


def test_settings_record_ignores_where_task_helpers_sit_in_memory():
    """Task configs hold Python helpers (CrowS-Pairs' process_results); their repr carries a memory
    address that differs in every process, and must not make a rerun refuse its finished cells."""
    import types

    def helper(doc):
        return doc

    twin = types.FunctionType(helper.__code__, helper.__globals__, "helper")  # same name, another object
    twin.__qualname__ = helper.__qualname__
    assert id(twin) != id(helper) and str(twin) != str(helper)
    s = ev.EvalSettings(tasks=["t"])
    assert s.fingerprint({"t": {"process_results": helper}}) == s.fingerprint({"t": {"process_results": twin}})
    assert s.fingerprint({"t": {"num_fewshot": 0}}) != s.fingerprint({"t": {"num_fewshot": 1}})


def test_demo_section_plots_the_task_against_step(suite_dir, tmp_path):
    from analyses.demo.harness import section as harness_section
    from pythia_suite.demo import PRESETS, DemoContext

    ctx = DemoContext(tmp_path, "tiny", replace(PRESETS["tiny"], sizes=("micro-50k",)), progress=False)
    shutil.copytree(suite_dir, ctx.suite_dir)
    ctx.ground_truth_path.parent.mkdir(parents=True)
    shutil.copyfile(suite_dir.parent / "mp.ground_truth.json", ctx.ground_truth_path)
    section = harness_section(ctx)
    table = pd.read_parquet(ctx.table("evaluate"))
    assert sorted(table["step"]) == [0, 2, 8] and set(table["task"]) == {"micropile_pronoun"}
    assert section.figures[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    final = table[table["step"] == 8]["value"].item()
    assert f"| micro-50k | {table['params'].iloc[0]:,} | {table[table['step'] == 0]['value'].item():.3f} | 8 | {final:.3f} |" \
        in "\n".join(section.lines)


# ---- bad input ----------------------------------------------------------------------------------


def _bad(capsys, tmp_path, *argv) -> str:
    rc, _, err = run_cli(capsys, "evaluate", *argv, "--out", tmp_path / "o" / "eval.parquet", "--quiet")
    assert rc == 2
    assert not (tmp_path / "o").exists() or files_under(tmp_path / "o") == {}
    return one_error_line(err)


def test_bad_input(suite_dir, tasks_dir, tmp_path, capsys):
    base = ["--manifest", suite_dir, "--include-path", tasks_dir]
    assert "unknown task 'micropile_pronon'; near matches: micropile_pronoun" in _bad(
        capsys, tmp_path, *base, "--tasks", "micropile_pronon")
    assert "unknown step 5 for micro-50k; nearest: 4, 8" in _bad(
        capsys, tmp_path, *base, "--tasks", "micropile_pronoun", "--steps", "5")
    assert "unknown model 'micro-9m'" in _bad(capsys, tmp_path, *base, "--tasks", "micropile_pronoun", "--models", "micro-9m")
    msg = _bad(capsys, tmp_path, *base, "--tasks", "micropile_arithmetic_times", "--num-fewshot", "8", "--steps", "0",
               "--limit", "2")
    assert "does not fit the model's context of 64" in msg and "--num-fewshot" in msg


def test_task_data_not_reachable_names_the_file(suite_dir, tasks_dir, tmp_path, capsys):
    local = tmp_path / "tasks"
    shutil.copytree(tasks_dir, local)
    (local / "micropile_pronoun.yaml").write_text(
        (local / "micropile_pronoun.yaml").read_text().replace(str(tasks_dir), str(tmp_path / "gone")))
    msg = _bad(capsys, tmp_path, "--manifest", suite_dir, "--include-path", local, "--tasks", "micropile_pronoun")
    assert "task 'micropile_pronoun': its data is not reachable offline" in msg
    assert str(tmp_path / "gone" / "micropile_pronoun.jsonl") in msg


def test_lm_eval_missing_names_the_extra(suite_dir, tasks_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "lm_eval", None)  # import lm_eval now raises ImportError
    msg = _bad(capsys, tmp_path, "--manifest", suite_dir, "--include-path", tasks_dir, "--tasks", "micropile_pronoun")
    assert "pip install 'pythia-suite[eval]'" in msg


# ---- the harness' own command line on a trained folder ----------------------------------------


@pytest.mark.slow
def test_lm_eval_command_line_on_a_checkpoint_folder(suite_dir, tasks_dir, evaluated, tmp_path):
    """`lm_eval --model hf --model_args pretrained=FOLDER` (nothing else about the model) runs on a
    trained folder and its per-item log-likelihoods equal ours."""
    folder = suite_dir / "micro-50k" / "step8"
    env = {"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "PATH": str(Path(sys.executable).parent),
           "HOME": str(tmp_path)}
    cmd = [str(Path(sys.executable).parent / "lm_eval"), "--model", "hf", "--model_args", f"pretrained={folder}",
           "--tasks", "micropile_pronoun", "--include_path", str(tasks_dir), "--limit", str(LIMIT),
           "--batch_size", "8", "--log_samples", "--output_path", str(tmp_path / "out")]
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    results = json.loads(next((tmp_path / "out").rglob("results_*.json")).read_text())
    samples = [json.loads(x) for x in next((tmp_path / "out").rglob("samples_micropile_pronoun_*.jsonl")).read_text().splitlines()]
    _, per_item, _ = evaluated
    ours = per_item[(per_item["step"] == 8) & (per_item["task"] == "micropile_pronoun")].set_index("doc_id")
    theirs = {s["doc_id"]: float(s["filtered_resps"][int(s["target"])][0]) for s in samples}
    assert len(theirs) == LIMIT
    assert scaled_error([ours.loc[i, "loglikelihood"] for i in theirs], list(theirs.values())) < FORWARD_RTOL
    table, _, _ = evaluated
    value = table[(table["step"] == 8) & (table["task"] == "micropile_pronoun")]["value"].item()
    assert results["results"]["micropile_pronoun"]["acc,none"] == pytest.approx(value, rel=1e-12)  # k / n, both in float64
