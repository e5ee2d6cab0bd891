"""Greedy-continuation scoring (`pythia_suite.eval.continuation`) against transformers' `generate`.

    .venv/bin/python -m pytest tests/test_continuation.py -q

The reference is Pythia's method run by transformers: `GPTNeoXForCausalLM.generate` with the same
weights, greedy, prompt 32 tokens, 32 new tokens, never stopping early. Its output gives `matched`
(positions equal to the true continuation) and `prefix` (length of the exact matching prefix);
`score_sequences` must give the same numbers for every sequence, whatever the batch size.

Batches mix sequences whose continuation is the model's own greedy output (memorized), whose
first j tokens are (partial, for several j including 0, 1, 30 and 31), which differ from it in one
token only (matched 31, right only if decoding after the mismatch is right), and random ones. Random
weights have N(0, 0.2) entries (LayerNorm weights around 1), so logits are far apart and float32
rounding never decides an argmax.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from pythia_suite.eval.continuation import CONTINUATION_LEN, PROMPT_LEN, Scores, score_batch, score_sequences
from pythia_suite.model import GPTNeoX, GPTNeoXConfig, KVCache
from conftest import FORWARD_RTOL, random_model, scaled_error, tiny_config

K, M = PROMPT_LEN, CONTINUATION_LEN
VOCAB = 97
PARTIAL = [0, 1, 2, 5, 16, 30, 31]  # exact matching prefixes planted in the partial rows
ONE_OFF = [0, 1, 16, 30]  # positions of the one changed token in the one-off rows

VARIANTS = {
    "pythia": dict(eos_token_id=0),  # rotary on 25% of each head, parallel residual; eos as Pythia's
    "full-rotary": dict(rotary_pct=1.0),
    "sequential": dict(use_parallel_residual=False),
}


@pytest.fixture(scope="module")
def hf():
    return pytest.importorskip("transformers")


def hf_twin(hf, ours: GPTNeoX):
    """transformers' GPTNeoXForCausalLM with our config and a copy of our weights (float32, eager)."""
    config = hf.GPTNeoXConfig.from_dict(ours.config.to_dict())
    theirs = hf.AutoModelForCausalLM.from_config(config, attn_implementation="eager").eval()
    state = {("lm_head.weight" if k == "embed_out.weight" else k): v for k, v in ours.state_dict().items()}
    theirs.load_state_dict(state, strict=True)
    return theirs


def hf_greedy(theirs, tokens: np.ndarray, allow_eos: bool = False) -> np.ndarray:
    """Pythia's call: ``generate(context, max_length=64, min_length=64)``, greedy, with the model's
    own eos id, so end-of-text is never generated; returns (N, 32). With `allow_eos`, plain greedy
    over the whole vocabulary (no eos id, so generation never stops early either).

    The attention mask is passed explicitly: left to itself, generate infers one from pad_token_id
    and would mask every prompt token that happens to equal it."""
    prompt = torch.from_numpy(np.ascontiguousarray(tokens[:, :K], dtype=np.int64))
    kw = dict(eos_token_id=None) if allow_eos else dict(min_length=K + M)
    with torch.no_grad():
        out = theirs.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                              max_length=K + M, pad_token_id=0, **kw)
    assert out.shape == (len(tokens), K + M)  # never stopped early
    return out[:, K:].numpy()


def reference_scores(greedy: np.ndarray, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(matched, prefix) of greedy continuations (N, 32) against the truth tokens[:, 32:64]."""
    match = greedy == tokens[:, K : K + M]
    prefix = np.where(match.all(1), M, (~match).argmax(1))
    return match.sum(1), prefix


def mixed_batch(model: GPTNeoX, n: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tokens (n, 64), planted prefix (n,), one_off (n,) bool); planted is -1 for random rows.

    Rows cycle through: memorized; partial with each j in PARTIAL (first j tokens greedy, token j
    made to differ from the greedy one, the rest random); one-off with each j in ONE_OFF (the
    greedy continuation with only token j changed: matched must be 31, which only a correct decode
    after the mismatch gets right); random."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, VOCAB, size=(n, K + M))
    greedy = model.greedy_generate(torch.from_numpy(tokens[:, :K]), M, model.config.eos_token_id).numpy()
    kinds = [(M, False), *((j, False) for j in PARTIAL), *((j, True) for j in ONE_OFF), (-1, False)]
    planted = np.array([kinds[i % len(kinds)][0] for i in range(n)])
    one_off = np.array([kinds[i % len(kinds)][1] for i in range(n)])
    for i, j in enumerate(planted):
        if j >= 0:
            if one_off[i]:
                tokens[i, K:] = greedy[i]
            tokens[i, K : K + j] = greedy[i, :j]
            if j < M:
                tokens[i, K + j] = (greedy[i, j] + 1 + rng.integers(VOCAB - 1)) % VOCAB  # != greedy
    return tokens, planted, one_off


# ---- against transformers ------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_scores_equal_transformers_generate_for_every_batch_size(hf, variant):
    model = random_model(tiny_config(**VARIANTS[variant]))
    tokens, planted, one_off = mixed_batch(model, 150)
    matched, prefix = reference_scores(hf_greedy(hf_twin(hf, model), tokens), tokens)
    # the batch really mixes the cases, and transformers agrees with the planting
    assert np.array_equal(prefix[planted >= 0], planted[planted >= 0])
    assert (prefix == M).sum() == (planted == M).sum() >= 10
    assert (matched[one_off] == M - 1).all() and one_off.sum() >= 40
    assert ((0 < matched) & (matched < M - 1)).sum() > 20
    for batch_size in (1, 7, 128, None):  # 128: one full batch and a partial one; None: the default (256)
        s = score_sequences(model, tokens, batch_size=batch_size)
        assert s.matched.dtype == np.uint8 and s.prefix.dtype == np.uint8 and s.matched.shape == (150,)
        assert np.array_equal(s.matched, matched), batch_size
        assert np.array_equal(s.prefix, prefix), batch_size
        assert s.continuation_len == M
        assert np.array_equal(s.memorized, prefix == M)
        assert np.array_equal(s.score, matched / M)  # k / 32 is exact in binary floating point
        assert s.decode_rows == int((prefix < M - 1).sum())  # memorized and last-token misses skip decoding


def test_uniform_batches_and_longer_rows(hf):
    """All rows memorized (no decoding at all), all random (every row decodes), and rows longer
    than 64 tokens (only [0, 64) counts), in any dtype the data is stored in."""
    model = random_model(tiny_config())
    theirs = hf_twin(hf, model)
    rng = np.random.default_rng(5)
    prompts = rng.integers(0, VOCAB, size=(20, K))
    greedy = model.greedy_generate(torch.from_numpy(prompts), M, model.config.eos_token_id).numpy()

    memorized = np.concatenate([prompts, greedy], axis=1)
    s = score_sequences(model, memorized.astype(np.uint16), batch_size=8)
    assert (s.matched == M).all() and (s.prefix == M).all() and s.memorized.all()
    assert s.decode_rows == 0 and s.decode_steps == 0
    assert np.array_equal(reference_scores(hf_greedy(theirs, memorized), memorized)[0], s.matched)

    random_rows = np.concatenate([prompts, rng.integers(0, VOCAB, size=(20, M + 9))], axis=1)  # 73 tokens
    s = score_sequences(model, random_rows, batch_size=20)
    matched, prefix = reference_scores(hf_greedy(theirs, random_rows), random_rows)
    assert np.array_equal(s.matched, matched) and np.array_equal(s.prefix, prefix)
    changed = random_rows.copy()
    changed[:, K + M :] = 0  # tokens past the continuation play no part
    assert np.array_equal(score_sequences(model, changed).matched, s.matched)


def test_score_batch_on_tensors_and_short_rows():
    model = random_model(tiny_config())
    tokens, _, _ = mixed_batch(model, 30, seed=3)
    matched, prefix, steps = score_batch(model, torch.from_numpy(tokens))
    s = score_sequences(model, tokens)
    assert matched.dtype == prefix.dtype == torch.int64
    assert np.array_equal(matched.numpy(), s.matched) and np.array_equal(prefix.numpy(), s.prefix)
    assert steps == s.decode_steps == M - 1  # a row mismatching at 0 decodes positions 1..31
    with pytest.raises(ValueError, match="at least 64 tokens"):
        score_sequences(model, tokens[:, :63])
    with pytest.raises(ValueError, match="at least 64 tokens"):
        score_sequences(model, tokens[0])
    assert isinstance(score_sequences(model, tokens[:0]), Scores)


@pytest.mark.parametrize("k,m", [(8, 12), (1, 1), (2, 3), (5, 16), (3, 17), (20, 40)])
def test_other_prompt_and_continuation_lengths(k, m):
    """k and m are parameters (m below, at and past the stage boundaries), against greedy_generate
    (equal to transformers' generate: tests/test_model.py)."""
    model = random_model(tiny_config())
    rng = np.random.default_rng(9)
    tokens = rng.integers(0, VOCAB, size=(24, k + m))
    greedy = model.greedy_generate(torch.from_numpy(tokens[:, :k]), m, model.config.eos_token_id).numpy()
    for i in range(24):
        j = i % (m + 1)  # every prefix length 0..m
        tokens[i, k : k + j] = greedy[i, :j]
        if i % 3 == 0:  # one-off rows: greedy except at j
            tokens[i, k + j + 1 :] = greedy[i, j + 1 :]
    s = score_sequences(model, tokens, k=k, m=m, batch_size=7)
    match = greedy == tokens[:, k:]
    assert np.array_equal(s.matched, match.sum(1))
    assert np.array_equal(s.prefix, np.where(match.all(1), m, (~match).argmax(1)))
    assert s.continuation_len == m


# ---- the model features the scoring uses ----------------------------------------------------------


def test_logits_to_keep_cache_reorder_and_narrow():
    model = random_model(tiny_config())
    x = torch.from_numpy(np.random.default_rng(2).integers(0, VOCAB, size=(5, 20)))
    with torch.no_grad():
        full = model(x)
        assert torch.equal(model(x, logits_to_keep=0), full)
        for n in (1, 7, 20):
            assert model(x, logits_to_keep=n).shape == (5, n, VOCAB)
            assert scaled_error(model(x, logits_to_keep=n), full[:, -n:]) < FORWARD_RTOL
        cache = KVCache(model.config, 5, 30)
        logits, _ = model(x[:, :12], cache, logits_to_keep=3)
        assert logits.shape == (5, 3, VOCAB) and cache.pos == 12
        k0, v0 = cache.k.clone(), cache.v.clone()
        cache.reorder(torch.tensor([2, 0, 1]))  # the first three rows only
        assert torch.equal(cache.k[:, :3], k0[:, [2, 0, 1]]) and torch.equal(cache.k[:, 3:], k0[:, 3:])
        assert torch.equal(cache.v[:, :3], v0[:, [2, 0, 1]]) and torch.equal(cache.v[:, 3:], v0[:, 3:])
        cache.reorder(torch.tensor([4, 3, 2, 1, 0]))  # all rows
        assert torch.equal(cache.k, k0[:, [2, 0, 1, 3, 4]][:, [4, 3, 2, 1, 0]])
        # a narrowed view continues the first rows at an earlier position, writing into the cache
        view = cache.narrow(2, 10)  # rows: old 4, old 3
        step, _ = model(x[[4, 3], 10:11], view)
        assert scaled_error(step[:, 0], full[[4, 3], 10]) < FORWARD_RTOL  # cached attention: reordered sums
        view = cache.narrow(2, 10, first=3)  # rows 3, 4: old 0, old 2
        step, _ = model(x[[0, 2], 10:11], view)
        assert scaled_error(step[:, 0], full[[0, 2], 10]) < FORWARD_RTOL
        for rows, first in ((6, 0), (2, 4), (0, 0)):
            with pytest.raises(ValueError, match="cannot narrow"):
                cache.narrow(rows, 10, first)


# ---- a model that has really memorized ------------------------------------------------------------


def test_trained_model_memorizes_and_transformers_agrees(hf, tmp_path):
    """Train a tiny model on four fixed 64-token sequences until it reproduces them: score 1,
    prefix 32. transformers, loading our save_pretrained folder, generates the same."""
    torch.manual_seed(0)
    config = GPTNeoXConfig(vocab_size=64, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=256, max_position_embeddings=64, eos_token_id=None)
    model = GPTNeoX(config)
    rng = np.random.default_rng(0)
    train_rows = rng.integers(0, 64, size=(4, K + M))
    x = torch.from_numpy(train_rows)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    partly = None  # the model at the first check, while it reproduces only parts of the rows
    for step in range(600):
        model.train()
        logits = model(x[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), x[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 25 == 24:
            if partly is None:
                partly = copy.deepcopy(model).eval()
            if score_sequences(model, train_rows).memorized.all():
                break
    s = score_sequences(model, train_rows)
    assert s.memorized.all() and (s.matched == M).all() and (s.prefix == M).all() and (s.score == 1).all()

    # the memorized rows, the same prompts with one continuation token changed at j (greedy output
    # does not depend on the continuation: matched 31, prefix j), and unseen random rows
    rows = [train_rows]
    for j in (0, 1, 17, 31):
        changed = train_rows.copy()
        changed[:, K + j] = (changed[:, K + j] + 1) % 64
        rows.append(changed)
    rows.append(rng.integers(0, 64, size=(8, K + M)))
    tokens = np.concatenate(rows)
    s = score_sequences(model.eval(), tokens, batch_size=7)
    for i, j in enumerate((0, 1, 17, 31)):
        part = slice(4 * (i + 1), 4 * (i + 2))
        assert (s.matched[part] == M - 1).all() and (s.prefix[part] == j).all()

    for net, folder in ((model, tmp_path / "final"), (partly, tmp_path / "partly")):
        net.save_pretrained(folder)
        theirs = hf.GPTNeoXForCausalLM.from_pretrained(folder, attn_implementation="eager").eval()
        matched, prefix = reference_scores(hf_greedy(theirs, tokens), tokens)
        s = score_sequences(net.eval(), tokens, batch_size=7)
        assert np.array_equal(s.matched, matched) and np.array_equal(s.prefix, prefix)
    assert not score_sequences(partly, train_rows).memorized.all()  # a partly trained model in between


# ---- Pythia's exact call, on a model trained on packed documents -----------------------------------


@pytest.fixture(scope="module")
def packed_suite(tmp_path_factory):
    """micro-50k trained by the project's trainer on short documents packed into 64-token items,
    so many continuations cross a document boundary and end-of-text is often the greedy token."""
    import random

    from pythia_suite.data import build
    from pythia_suite.train import TrainSettings, train

    folder = tmp_path_factory.mktemp("packed")
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()
    rng = random.Random(0)
    docs = [" ".join(words[(k + j) % len(words)] for j in range(5)) for k in (rng.randrange(12) for _ in range(12000))]
    (folder / "corpus.txt").write_text("\n\n".join(docs) + "\n")
    prefix = build([folder / "corpus.txt"], folder / "data", seq_len=63, vocab_size=300, seed=1).prefix
    settings = TrainSettings(sizes=["micro-50k"], steps=150, batch_size=8, checkpoint_every=150, lr=3e-3)
    train(prefix, folder / "suite", settings, progress=False)
    return prefix, folder / "suite" / "micro-50k" / "step150"


def test_default_is_pythias_min_length_generate_on_packed_data(hf, packed_suite):
    """`score_sequences` equals transformers' ``generate(context, max_length=64, min_length=64)``
    (Pythia's script) by default, and plain greedy ``generate`` with `allow_eos`; on this model the
    two choices really differ (end-of-text is the argmax inside many continuations)."""
    from pythia_suite.data import TrainingOrder

    prefix, folder = packed_suite
    tokens = np.array(TrainingOrder(prefix, batch_size=8).batches(0, 31))  # 256 training items
    ours = GPTNeoX.from_pretrained(folder).eval()
    assert ours.config.eos_token_id == 0 and (tokens[:, K : K + M] == 0).any(1).mean() > 0.5
    theirs = hf.GPTNeoXForCausalLM.from_pretrained(folder, attn_implementation="eager").eval()
    pythia = reference_scores(hf_greedy(theirs, tokens), tokens)
    plain = reference_scores(hf_greedy(theirs, tokens, allow_eos=True), tokens)
    s = score_sequences(ours, tokens, batch_size=64)
    assert np.array_equal(s.matched, pythia[0]) and np.array_equal(s.prefix, pythia[1])
    e = score_sequences(ours, tokens, batch_size=64, allow_eos=True)
    assert np.array_equal(e.matched, plain[0]) and np.array_equal(e.prefix, plain[1])
    differ = (s.matched != e.matched).sum()
    assert differ >= 20, differ  # the choice matters on packed data
