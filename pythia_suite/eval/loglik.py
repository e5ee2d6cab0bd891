"""Log-likelihood of (context, continuation) pairs, batched, as lm-evaluation-harness scores them.

    >>> from pythia_suite.eval.loglik import encode_pair, loglikelihood
    >>> reqs = [encode_pair(tok, "The cat sat on the", " mat", eot_id)]
    >>> res = loglikelihood(model, reqs)       # res.logprob[i], res.is_greedy[i], res.n_tokens[i]

Conventions (those of lm-evaluation-harness's ``HFLM``, which its ``lambada_openai`` and
``crows_pairs_english`` tasks use):

- A pair is encoded as the whole string, then split: ``context_enc = enc(context)``,
  ``continuation_enc = enc(context + continuation)[len(context_enc):]``; trailing spaces of the
  context move to the continuation first. An empty context becomes the prefix token (end-of-text
  for GPT-NeoX tokenizers) unless the continuation already starts with it.
- The model reads ``(context + continuation)[-(max_len + 1):][:-1]``; the log-likelihood is the sum
  of the continuation tokens' log-probabilities; ``is_greedy`` says whether the argmax at every
  continuation position is the continuation token.

What makes it fast without changing a number: sequences of a batch are right-padded (a causal
model never looks at the padding after a token), the output head and the softmax run only at
the continuation positions, in tiles of the vocabulary that stay in the CPU cache
(`token_logprobs`: no positions x vocab tensor), and continuations that share a context (the two candidates of a
WinoBias item) run the context once: its keys and values are computed for the group and copied
to each candidate's row of a KV cache, and only the continuations run after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..model import GPTNeoX, KVCache

PAD_ID = 0  # any id: right padding is never read by the positions that are scored


@dataclass
class LoglikResult:
    """Per-request results, numpy arrays of shape (N,)."""

    logprob: np.ndarray  # float64: sum of log p(continuation token) in nats
    is_greedy: np.ndarray  # bool: argmax equals the continuation at every position
    n_tokens: np.ndarray  # int64: continuation tokens scored


def encode(tokenizer, text: str) -> list[int]:
    """Token ids of `text` without special tokens (a `tokenizers.Tokenizer`)."""
    return tokenizer.encode(text, add_special_tokens=False).ids


def encode_pair(tokenizer, context: str, continuation: str, prefix_id: int) -> tuple[list[int], list[int]]:
    """(context ids, continuation ids) exactly as lm-evaluation-harness's HFLM makes them."""
    if context == "":
        cont = encode(tokenizer, continuation)
        return ([prefix_id], cont) if cont[:1] != [prefix_id] else (cont[:1], cont[1:])
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
    whole = encode(tokenizer, context + continuation)
    ctx = encode(tokenizer, context)
    return ctx, whole[len(ctx):]


def sentence_requests(tokenizer, sentences: Sequence[str], prefix_id: int) -> list[tuple[list[int], list[int]]]:
    """Whole-sentence requests: each sentence scored after the prefix (end-of-text) token, as the
    harness's ``crows_pairs_english`` does (empty context, no target delimiter)."""
    return [encode_pair(tokenizer, "", s, prefix_id) for s in sentences]


def lambada_request(tokenizer, text: str, prefix_id: int) -> tuple[list[int], list[int]]:
    """``lambada_openai``'s pair: context = every word but the last, continuation = " " + last word."""
    words = text.split(" ")
    return encode_pair(tokenizer, " ".join(words[:-1]), " " + words[-1], prefix_id)


VOCAB_TILE = 1024  # vocabulary columns per tile of the output head on a CPU
ROW_TILE = 1024  # positions per tile


def token_logprobs(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """log p(target) and whether the target is the argmax, for each row of `hidden` (N, C) under the
    output head `weight` (vocab, C); float32 (N,) and bool (N,).

    log p = logit(target) - logsumexp(logits), with the logsumexp kept running over tiles of the
    vocabulary, so no (N, vocab) logits tensor is ever written: on a CPU each tile stays in the
    cache, which halves the time of the head plus the softmax for whole sentences. The greedy flag
    is torch.argmax's (the target is the first maximum), found from each tile's maximum alone (a
    maximum with its index costs 15x more on a CPU)."""
    vocab = weight.size(0)
    tile = VOCAB_TILE if weight.device.type == "cpu" else vocab
    starts = range(0, vocab, tile)
    logp = torch.empty(len(targets), dtype=torch.float32, device=hidden.device)
    greedy = torch.empty(len(targets), dtype=torch.bool, device=hidden.device)
    for a in range(0, len(targets), ROW_TILE):
        h, t = hidden[a : a + ROW_TILE], targets[a : a + ROW_TILE]
        n = len(t)
        home = t // tile  # the tile that holds each row's target
        tile_max = torch.empty(n, len(starts), device=h.device)
        target_logit = torch.empty(n, device=h.device)
        tie_before = torch.zeros(n, dtype=torch.bool, device=h.device)  # the target's value earlier in its tile
        best = torch.full((n,), -float("inf"), device=h.device)
        total = torch.zeros(n, device=h.device)  # sum of exp(logit - best) so far
        for k, v in enumerate(starts):
            logits = (h @ weight[v : v + tile].T).float()
            here = (home == k).nonzero().squeeze(1)
            if len(here):
                col = t[here] - v
                value = logits[here, col]
                target_logit[here] = value
                left = torch.arange(logits.size(1), device=h.device)[None, :] < col[:, None]
                tie_before[here] = ((logits[here] == value[:, None]) & left).any(1)
            tile_max[:, k] = m = logits.amax(-1)
            new_best = torch.maximum(best, m)
            total = total * torch.exp(best - new_best) + logits.sub_(new_best[:, None]).exp_().sum(-1)
            best = new_best
        logp[a : a + ROW_TILE] = target_logit - (best + total.log())
        earlier = torch.arange(len(starts), device=h.device)[None, :] < home[:, None]
        below_before = (tile_max < target_logit[:, None]) | ~earlier  # every earlier tile's maximum is smaller
        greedy[a : a + ROW_TILE] = (target_logit == best) & ~tie_before & below_before.all(1)
    return logp, greedy


def _score_hidden(model: GPTNeoX, hidden: torch.Tensor, targets: torch.Tensor, lengths: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of log-probs (float64) and greedy flags of (B,) rows: hidden[b, j] predicts targets[b, j],
    for j < lengths[b]. hidden (B, M, C); targets (B, M)."""
    B, M = targets.shape
    valid = torch.arange(M, device=hidden.device)[None, :] < lengths[:, None]
    rows, cols = valid.nonzero(as_tuple=True)
    logp, greedy = token_logprobs(hidden[rows, cols], model.embed_out.weight, targets[rows, cols])
    total = torch.zeros(B, dtype=torch.float64, device=hidden.device).index_add_(0, rows, logp.double())
    misses = torch.zeros(B, dtype=torch.long, device=hidden.device).index_add_(0, rows, (~greedy).long())
    return total, misses == 0


def _pad(rows: list[list[int]], device) -> torch.Tensor:
    width = max(len(r) for r in rows)
    out = torch.full((len(rows), width), PAD_ID, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return out.to(device)


@torch.inference_mode()
def _plain(model: GPTNeoX, reqs: list[tuple[list[int], list[int]]], max_len: int, device
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """One right-padded batch, each request as its own sequence."""
    inputs, firsts, conts = [], [], []
    for ctx, cont in reqs:
        whole = (ctx + cont)[-(max_len + 1):]
        inputs.append(whole[:-1])
        firsts.append(len(whole) - 1 - len(cont))  # input position that predicts cont[0]
        conts.append(cont)
    x = _pad(inputs, device)
    lo = min(firsts)
    hidden = model.hidden(x)[:, lo:]  # (B, T - lo, C): the head runs only where it is read
    conts_t = _pad(conts, device)
    pos = (torch.tensor(firsts, device=device)[:, None] - lo + torch.arange(conts_t.size(1), device=device))
    picked = hidden[torch.arange(len(reqs), device=device)[:, None], pos.clamp(max=hidden.size(1) - 1)]  # (B, M, C)
    lengths = torch.tensor([len(c) for c in conts], device=device)
    return _score_hidden(model, picked, conts_t, lengths)


@torch.inference_mode()
def _shared(model: GPTNeoX, contexts: list[list[int]], groups: list[list[list[int]]], device
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Contexts of one length, each with several continuations: the context runs once.

    Returns flat (sum logprob, greedy) over the continuations, group by group."""
    B, Lc = len(contexts), len(contexts[0])
    conts = [c for g in groups for c in g]
    owner = torch.tensor([i for i, g in enumerate(groups) for _ in g], device=device)
    longest = max(len(c) for c in conts)
    ctx_cache = KVCache(model.config, B, Lc)
    last = model.hidden(torch.tensor(contexts, device=device), ctx_cache)[:, -1:]  # (B, 1, C): predicts cont[0]
    lengths = torch.tensor([len(c) for c in conts], device=device)
    targets = _pad(conts, device)
    if longest == 1:
        return _score_hidden(model, last[owner], targets, lengths)
    cache = KVCache(model.config, len(conts), Lc + longest - 1)
    cache.k = ctx_cache.k.new_zeros(cache.shape)
    cache.v = ctx_cache.v.new_zeros(cache.shape)
    cache.k[:, :, :, :Lc] = ctx_cache.k[:, owner]  # (n_layer, rows, n_head, Lc, head_dim)
    cache.v[:, :, :, :Lc] = ctx_cache.v[:, owner]
    cache.pos = Lc
    rest = model.hidden(targets[:, : longest - 1], cache)  # (rows, longest-1, C): predicts cont[1:]
    return _score_hidden(model, torch.cat([last[owner], rest], dim=1), targets, lengths)


def loglikelihood(model: GPTNeoX, requests: Sequence[tuple[Sequence[int], Sequence[int]]],
                  batch_size: int = 32, share_contexts: bool = True) -> LoglikResult:
    """Score every (context ids, continuation ids) request on the model's device.

    `batch_size` is sequences per forward. With `share_contexts`, continuations of one context
    run it once (exact up to float rounding, ~1e-6)."""
    device = next(model.parameters()).device
    max_len = model.config.max_position_embeddings
    reqs = [(list(c), list(t)) for c, t in requests]
    for i, (c, t) in enumerate(reqs):
        if not c or not t:
            raise ValueError(f"request {i}: context and continuation must both hold tokens")
    logprob = np.zeros(len(reqs))
    greedy = np.zeros(len(reqs), bool)
    model.eval()

    by_context: dict[tuple, list[int]] = {}
    for i, (c, _) in enumerate(reqs):
        by_context.setdefault(tuple(c), []).append(i)
    shared, plain = [], []
    for ctx, idx in by_context.items():
        fits = len(ctx) + max(len(reqs[i][1]) for i in idx) <= max_len + 1
        # a one-token context (end-of-text before whole sentences) saves nothing when shared
        if share_contexts and len(idx) > 1 and len(ctx) > 1 and fits:
            idx = sorted(idx, key=lambda i: -len(reqs[i][1]))
            shared += [idx[a : a + batch_size] for a in range(0, len(idx), batch_size)]
        else:
            plain.append(idx)

    # longest first, so a batch's rows have similar lengths (little padding)
    order = sorted((i for idx in plain for i in idx), key=lambda i: -(len(reqs[i][0]) + len(reqs[i][1])))
    for a in range(0, len(order), batch_size):
        idx = order[a : a + batch_size]
        lp, g = _plain(model, [reqs[i] for i in idx], max_len, device)
        logprob[idx], greedy[idx] = lp.cpu().numpy(), g.cpu().numpy()

    by_len: dict[int, list[list[int]]] = {}
    for idx in shared:
        by_len.setdefault(len(reqs[idx[0]][0]), []).append(idx)
    for groups in by_len.values():
        a = 0
        while a < len(groups):  # about batch_size continuations per forward
            chunk, rows = [], 0
            while a < len(groups) and (not chunk or rows + len(groups[a]) <= batch_size):
                chunk.append(groups[a])
                rows += len(groups[a])
                a += 1
            lp, g = _shared(model, [reqs[idx[0]][0] for idx in chunk], [[reqs[i][1] for i in idx] for idx in chunk],
                            device)
            flat = [i for idx in chunk for i in idx]
            logprob[flat], greedy[flat] = lp.cpu().numpy(), g.cpu().numpy()
    return LoglikResult(logprob, greedy, np.array([len(t) for _, t in reqs], dtype=np.int64))


def perplexity(logprob: np.ndarray) -> float:
    """The harness's ``perplexity`` aggregation: exp(-mean of per-item log-likelihoods)."""
    return float(np.exp(-np.mean(logprob)))
