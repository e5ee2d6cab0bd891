"""Batched greedy generation until a stop string (`pythia_suite.eval.generate`) against transformers.

    .venv/bin/python -m pytest tests/test_generate.py -q

The reference is transformers' `GPTNeoXForCausalLM.generate` (greedy) on the same weights, loaded
from our `save_pretrained` folder, one prompt at a time (no padding), its output cut after the
first token whose text completes the stop string. Ours runs all prompts together, of many lengths,
and must give the same tokens for every prompt and every batch size.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pythia_suite.errors import UserError
from pythia_suite.eval.generate import greedy_until
from conftest import random_model, tiny_config

VOCAB = 97
NEWLINE = set(range(3, VOCAB, 8))  # token ids whose text holds the stop string in the toy decoder


def toy_decode(ids: list[int]) -> str:
    """A decoder for random vocabularies: a few ids spell text with a newline in it."""
    return "".join(f"x{i}\ny" if i in NEWLINE else f"<{i}>" for i in ids)


@pytest.fixture(scope="module")
def hf():
    return pytest.importorskip("transformers")


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread (and a shared CPU makes more threads much slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def hf_reference(hf, model, tmp_path, prompts, max_new, decode, stop=("\n",)) -> list[list[int]]:
    """transformers' generate, one prompt at a time, cut after the token that completes a stop string."""
    model.save_pretrained(tmp_path / "hf")
    theirs = hf.GPTNeoXForCausalLM.from_pretrained(tmp_path / "hf", attn_implementation="eager").eval()
    out = []
    for p in prompts:
        x = torch.tensor([p])
        with torch.no_grad():
            y = theirs.generate(x, attention_mask=torch.ones_like(x), do_sample=False, max_new_tokens=max_new,
                                eos_token_id=None, pad_token_id=0)[0, len(p):].tolist()
        for n in range(1, len(y) + 1):
            if any(s in decode(y[:n]) for s in stop):
                y = y[:n]
                break
        out.append(y)
    return out


def random_prompts(n: int, seed: int = 0, lengths=(1, 2, 3, 5, 8, 13, 21)) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [rng.integers(VOCAB, size=int(rng.choice(lengths))).tolist() for _ in range(n)]


@pytest.mark.parametrize("variant", [dict(), pytest.param(dict(rotary_pct=1.0), marks=pytest.mark.slow),
                                     pytest.param(dict(use_parallel_residual=False), marks=pytest.mark.slow)])
def test_random_weights_equal_transformers_generate(hf, tmp_path, variant):
    model = random_model(tiny_config(**variant), seed=3)
    prompts = random_prompts(40, seed=1)
    ref = hf_reference(hf, model, tmp_path, prompts, 12, toy_decode)
    assert any(len(r) < 12 for r in ref) and any(len(r) == 12 for r in ref)  # both ways of ending occur
    for batch in (1, 7, 256):
        out = greedy_until(model, prompts, 12, decode=toy_decode, batch_size=batch)
        assert out.tokens == ref
        for toks, text, stopped in zip(out.tokens, out.texts, out.stopped):
            full = toy_decode(toks)
            assert stopped == ("\n" in full)
            assert text == (full[: full.index("\n")] if stopped else full)


def test_trained_micro_model_equals_transformers_generate(hf, tmp_path):
    from _train_helpers import build_data, run_train

    from pythia_suite.checkpoints import Suite
    from pythia_suite.data.build import load_tokenizer

    prefix = build_data(tmp_path / "d")
    suite = Suite.load(run_train(prefix, tmp_path / "suite", steps=12))
    model = suite.load_model("micro-50k", 12)
    tok = load_tokenizer(f"{prefix}.tokenizer.json")
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa".split()
    prompts = [tok.encode(" ".join(words[i % 10 : i % 10 + 1 + i % 5])).ids for i in range(30)]
    decode = lambda ids: tok.decode(ids)  # noqa: E731
    full = hf_reference(hf, model, tmp_path, prompts, 6, decode, stop=())
    # stop at the text of the token the model most often produces second, so rows end at different lengths
    second = np.bincount([y[1] for y in full]).argmax()
    stop = (tok.decode([int(second)]),)
    ref = [next((y[:n] for n in range(1, 7) if stop[0] in decode(y[:n])), y) for y in full]
    assert len({len(r) for r in ref}) > 1
    assert greedy_until(model, prompts, 6, decode=decode, stop=stop, batch_size=8).tokens == ref


def test_without_decode_runs_to_max_tokens_and_matches_greedy_generate():
    model = random_model(tiny_config(), seed=5)
    prompts = [[1, 2, 3, 4]] * 3 + [[5, 6, 7, 8]]
    out = greedy_until(model, prompts, 5)
    ref = model.greedy_generate(torch.tensor(prompts), 5).tolist()
    assert out.tokens == ref and out.stopped == [False] * 4


def test_bad_inputs():
    model = random_model(tiny_config(), seed=5)
    with pytest.raises(UserError, match="needs 70 positions; the model has 64"):
        greedy_until(model, [[1] * 60], 11)
    with pytest.raises(UserError, match="empty"):
        greedy_until(model, [[]], 3)
    with pytest.raises(UserError, match="at least 1"):
        greedy_until(model, [[1]], 0)
