"""Log-likelihood scoring (`pythia_suite.eval.loglik`) against transformers and hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import FORWARD_RTOL, random_model, scaled_error
from pythia_suite.eval.loglik import (
    encode_pair,
    lambada_request,
    loglikelihood,
    perplexity,
    sentence_requests,
)
from pythia_suite.model import GPTNeoXConfig

VOCAB = 400  # the conftest corpus tokenizer's size


def small_config(**kw) -> GPTNeoXConfig:
    fields = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=64, max_position_embeddings=48)
    return GPTNeoXConfig(**(fields | kw))


@pytest.fixture(scope="module")
def model():
    return random_model(small_config(), seed=3)


@pytest.fixture(scope="module")
def tok(tokenizer_path):
    from pythia_suite.data.build import load_tokenizer

    return load_tokenizer(tokenizer_path)


def reference(model, requests) -> tuple[list[float], list[bool]]:
    """One unpadded sequence per forward, log-softmax everywhere: the plain definition."""
    out, greedy = [], []
    L = model.config.max_position_embeddings
    with torch.no_grad():
        for ctx, cont in requests:
            whole = (list(ctx) + list(cont))[-(L + 1):]
            logits = model(torch.tensor([whole[:-1]]))[0].double()
            logp = torch.log_softmax(logits, -1)[-len(cont):]
            t = torch.tensor(cont)
            out.append(float(logp.gather(1, t[:, None]).sum()))
            greedy.append(bool((logp.argmax(-1) == t).all()))
    return out, greedy


def random_requests(n: int, seed: int = 0, shared: int = 0):
    rng = np.random.default_rng(seed)
    reqs = []
    for i in range(n):
        ctx = rng.integers(2, VOCAB, rng.integers(1, 30)).tolist()
        for _ in range(1 + shared):
            reqs.append((ctx, rng.integers(2, VOCAB, rng.integers(1, 8)).tolist()))
    return reqs


def test_batched_equals_one_by_one(model):
    reqs = random_requests(20) + random_requests(6, seed=1, shared=2)  # some contexts with 3 candidates
    reqs.append((list(range(2, 50)), [7, 8, 9]))  # longer than the model: truncated from the left
    ref, greedy = reference(model, reqs)
    for bs in (1, 4, 32):
        for share in (True, False):
            res = loglikelihood(model, reqs, batch_size=bs, share_contexts=share)
            # batched, padded and tiled: reordered float32 sums, relative to the log-likelihoods' scale
            assert scaled_error(res.logprob, ref) < FORWARD_RTOL
            assert res.is_greedy.tolist() == greedy
    assert res.n_tokens.tolist() == [len(c) for _, c in reqs]


def test_is_greedy_for_the_argmax_continuation(model):
    ctx = [5, 6, 7, 8]
    cont = model.greedy_generate(torch.tensor([ctx]), 3)[0].tolist()
    res = loglikelihood(model, [(ctx, cont), (ctx, cont[:2] + [(cont[2] + 1) % VOCAB])])
    assert res.is_greedy.tolist() == [True, False]


def test_equals_transformers(model, tok):
    hf = pytest.importorskip("transformers")
    hf_config = hf.GPTNeoXConfig.from_dict(model.config.to_dict())
    theirs = hf.AutoModelForCausalLM.from_config(hf_config, attn_implementation="eager").eval()
    theirs.load_state_dict({("lm_head.weight" if k == "embed_out.weight" else k): v
                            for k, v in model.state_dict().items()})
    sentences = ["the model sees data", "a token of the batch", "the seed shuffle index"]
    reqs = sentence_requests(tok, sentences, 0) + [lambada_request(tok, "the loss of the layer head", 0)]
    res = loglikelihood(model, reqs, batch_size=32)
    theirs_ll = []
    with torch.no_grad():
        for ctx, cont in reqs:
            x = torch.tensor([ctx + cont])
            logp = torch.log_softmax(theirs(x).logits[0, :-1].double(), -1)[-len(cont):]
            theirs_ll.append(float(logp.gather(1, torch.tensor(cont)[:, None]).sum()))
    assert scaled_error(res.logprob, theirs_ll) < FORWARD_RTOL  # another kernel: reordered float32 sums


def test_encode_pair_follows_the_harness(tok):
    # an empty context becomes end-of-text; trailing spaces of the context move to the continuation
    ctx, cont = encode_pair(tok, "", "the model", 0)
    assert ctx == [0] and cont == tok.encode("the model").ids
    ctx, cont = encode_pair(tok, "the model ", "data", 0)
    assert ctx == tok.encode("the model").ids and ctx + cont == tok.encode("the model data").ids
    # lambada_openai: context = all words but the last, continuation = " " + last word
    ctx, cont = lambada_request(tok, "a token of the batch", 0)
    assert tok.decode(ctx) == "a token of the" and tok.decode(cont) == " batch"
    # a sentence that starts with the prefix token keeps it as the context
    assert encode_pair(tok, "", "<|endoftext|>the", 0)[0] == [0]


def test_perplexity_is_exp_of_mean_negative_loglik():
    assert perplexity(np.array([-1.0, -3.0])) == pytest.approx(math.exp(2.0))


@pytest.mark.parametrize("tile", [7, 64, 10_000])
def test_token_logprobs_equal_the_full_softmax_and_argmax(monkeypatch, tile):
    """The tiled head (running logsumexp, argmax from tile maxima) against log_softmax and argmax
    over whole logits: targets that are the argmax, that are not, and exact ties (two equal rows
    of the head: torch.argmax takes the first), with the vocabulary split into tiles of `tile`."""
    import torch

    from pythia_suite.eval import loglik

    monkeypatch.setattr(loglik, "VOCAB_TILE", tile)
    monkeypatch.setattr(loglik, "ROW_TILE", 5)
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(100, 16, generator=g)
    weight[70] = weight[3]  # rows 3 and 70 always tie
    hidden = torch.randn(40, 16, generator=g)
    hidden[:10] = weight[3] * 4  # rows 0..9: the tied pair wins by far
    logits = hidden @ weight.T
    argmax = logits.argmax(-1)
    targets = torch.randint(0, 100, (40,), generator=g)
    targets[10:25] = argmax[10:25]  # greedy
    targets[:5], targets[5:10] = 3, 70  # the first of a tie (greedy), the second (not greedy)
    logp, greedy = loglik.token_logprobs(hidden, weight, targets)
    expected = torch.log_softmax(logits, -1).gather(1, targets[:, None]).squeeze(1)
    # a running logsumexp over tiles: float32 sums of exponentials in another order, each off by a few
    # eps of the logits' scale (not of the log-probability's, which may be near 0)
    assert (logp - expected).abs().max() <= FORWARD_RTOL * logits.abs().max()
    assert greedy.tolist() == (argmax == targets).tolist()
    assert greedy[:5].all() and not greedy[5:10].any() and greedy[10:25].all()
