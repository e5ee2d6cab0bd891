"""Greedy continuation of training sequences, scored against the true continuation, fast and exact.

The score is Pythia's (Biderman et al. 2023): prompt = the first k tokens of a sequence, greedy
decoding of m tokens, ``matched`` = positions where the greedy token equals the true one,
``score = matched / m``; memorized means score 1. Also reported: ``prefix``, the length of the
exact matching prefix of the greedy continuation.

End-of-text. Pythia's script decodes with transformers' ``generate(context, max_length=64,
min_length=64)``: ``min_length`` makes the generator mask the end-of-text token (the model's
``eos_token_id``, 0 for Pythia) at every one of the 32 positions, so the greedy token is the argmax
over the other tokens, and a continuation that crosses a document boundary can never be matched
in full. That is the default here (``suppress`` = the end-of-text id), so scores match Pythia's
published numbers; ``suppress=None`` is plain argmax over the whole vocabulary (what ``generate``
without ``min_length`` picks, except that it would then stop at the end-of-text token).

Why it is fast without changing the answer: while the greedy tokens equal the true ones, the
greedy context *is* the true sequence, so a teacher-forced pass over ``tokens[:k+m-1]`` gives
every greedy token up to and including the first mismatch, for every sequence at once. That pass
alone settles ``prefix`` and the memorized flag. It runs in stages (ending at continuation
positions `STAGES`, then m), and rows that have mismatched leave after each stage: their
positions after the mismatch are decoded anyway, so computing them with the true context would
be wasted work (most sequences of a trained model mismatch early). Only sequences that mismatch
before the last position need decoding, and only after their first mismatch: sorted by first
mismatch, the rows still decoding at step t are a prefix of the batch, so each step is one
batched forward of one token over a slice of the teacher-forced KV cache (which stays valid up to
each row's mismatch).

So the model computes every position of every sequence once, as plain greedy decoding does, plus,
for a row that mismatches, the positions from its mismatch to the end of that stage; the gain is
running most positions as a few large batched passes instead of one-token steps (on a CPU, where
both are bound by the same matrix products, that is worth about 1.1-1.6x: benchmarks/memorization.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..model import GPTNeoX, KVCache

PROMPT_LEN = 32
CONTINUATION_LEN = 32
STAGES = (1, 4, 16)  # continuation positions where the teacher-forced pass drops rows that mismatched


@dataclass
class Scores:
    """Per-sequence results, numpy arrays of shape (N,)."""

    matched: np.ndarray  # uint8: positions where greedy == truth, 0..m
    prefix: np.ndarray  # uint8: length of the exact matching prefix, 0..m
    continuation_len: int
    decode_rows: int = 0  # rows that needed decoding after the teacher-forced pass
    decode_steps: int = 0  # batched one-token forwards run

    @property
    def score(self) -> np.ndarray:
        return self.matched / self.continuation_len

    @property
    def memorized(self) -> np.ndarray:
        return self.prefix == self.continuation_len


def end_of_text_id(model: GPTNeoX, allow_eos: bool = False) -> int | None:
    """The token Pythia's ``min_length`` decoding never generates (the model's eos id), or None."""
    return None if allow_eos else model.config.eos_token_id


def _greedy(logits: torch.Tensor, suppress: int | None) -> torch.Tensor:
    """argmax over the vocabulary, with token `suppress` masked as transformers' min_length does."""
    if suppress is not None:
        logits[..., suppress] = -float("inf")
    return logits.argmax(-1)


@torch.inference_mode()
def teacher_forced(model: GPTNeoX, tokens: torch.Tensor, k: int = PROMPT_LEN, m: int = CONTINUATION_LEN,
                   suppress: int | None = None) -> tuple[torch.Tensor, torch.Tensor, KVCache, torch.Tensor]:
    """The first phase of `score_batch`: the staged pass over the true tokens[:, :k+m-1].

    Returns greedy (N, m), right up to and including each row's first mismatch; prefix (N,), that
    first mismatch or m; the KV cache, valid up to each row's first mismatch, whose row i holds
    sequence rows[i]; and rows (N,). Rows that left at an earlier stage sit nearer the front.
    """
    N = tokens.size(0)
    truth = tokens[:, k : k + m]
    cache = KVCache(model.config, N, k + m - 1)
    greedy = torch.empty_like(truth)
    prefix = torch.full((N,), m, dtype=torch.long, device=tokens.device)
    rows = torch.arange(N, device=tokens.device)
    first, lo = 0, 0  # cache rows [first, N) still match at every position < lo
    for hi in (*(s for s in STAGES if s < m), m):
        seq, active = rows[first:], N - first
        start = k + lo - 1 if lo else 0  # the first position of this stage: greedy lo is read there
        view = cache.narrow(active, start, first) if lo else cache
        logits, _ = model(tokens[seq, start : k + hi - 1], view, logits_to_keep=hi - lo)  # (active, hi-lo, vocab)
        g = _greedy(logits, suppress)  # greedy tokens lo..hi-1, the context being true so far
        greedy[seq, lo:hi] = g
        miss = g != truth[seq, lo:hi]
        left = miss.any(1)
        prefix[seq[left]] = lo + miss[left].int().argmax(1)
        n_left = int(left.sum())
        if 0 < n_left < active and hi < m:
            # the rows that left go to the front of the block: swap those behind with the staying ones before
            stay_in_front = first + torch.nonzero(~left[:n_left]).squeeze(1)
            left_behind = first + n_left + torch.nonzero(left[n_left:]).squeeze(1)
            index = torch.arange(N, device=tokens.device)
            index[stay_in_front], index[left_behind] = left_behind, stay_in_front
            cache.reorder(index)
            rows = rows[index]
        first, lo = first + n_left, hi
        if first == N:
            break
    return greedy, prefix, cache, rows


@torch.inference_mode()
def score_batch(model: GPTNeoX, tokens: torch.Tensor, k: int = PROMPT_LEN, m: int = CONTINUATION_LEN,
                suppress: int | None = None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Greedy-continuation scores of one batch: tokens (N, >= k+m) on the model's device; token
    `suppress` (if any) is never generated.

    Returns matched (N,), prefix (N,) as int64 tensors, and the number of decode steps run.
    """
    greedy, prefix, cache, rows = teacher_forced(model, tokens, k, m, suppress)
    # Rows mismatching before the last position need decoding from their first mismatch on.
    order = torch.argsort(prefix[rows], stable=True)  # cache rows by first mismatch (few move: see above)
    seq = rows[order]
    p_sorted = prefix[seq]
    need = int((p_sorted < m - 1).sum())
    steps = 0
    if need:
        g = greedy[seq]  # (N, m), sorted by first mismatch
        cache.reorder(order)
        p_first = int(p_sorted[0])
        counts = torch.searchsorted(p_sorted[:need].contiguous(), torch.arange(m, device=tokens.device), right=False)
        for t in range(p_first + 1, m):
            n_rows = int(counts[t])  # rows with prefix < t: their context diverged before position k+t
            view = cache.narrow(n_rows, k + t - 1)
            # position k+t-1 of an active row holds its greedy token t-1 (its own mismatch, or decoded)
            step_logits, _ = model(g[:n_rows, t - 1 : t], view)  # (n_rows, 1, vocab)
            g[:n_rows, t] = _greedy(step_logits[:, -1], suppress)
            steps += 1
        greedy[seq] = g
    matched = (greedy == tokens[:, k : k + m]).sum(1)
    return matched, prefix, steps


def auto_batch_size(model: GPTNeoX, device: torch.device, k: int = PROMPT_LEN, m: int = CONTINUATION_LEN) -> int:
    """Rows per batch: 256 on a CPU; on a GPU, as many as fit in half the free memory."""
    if device.type != "cuda":
        return 256
    c = model.config
    item = next(model.parameters()).element_size()
    per_row = (k + m) * (c.vocab_size * 4 + 2 * c.num_hidden_layers * c.hidden_size * item
                         + 8 * c.hidden_size * item + 2 * c.intermediate_size * item)
    free, _ = torch.cuda.mem_get_info(device)
    return int(max(1, min(4096, free // 2 // per_row)))


def score_sequences(model: GPTNeoX, tokens: np.ndarray, k: int = PROMPT_LEN, m: int = CONTINUATION_LEN,
                    batch_size: int | None = None, allow_eos: bool = False) -> Scores:
    """Scores of every row of `tokens` (N, >= k+m), in batches, on the model's device.

    By default the end-of-text token is never generated, as in Pythia's ``min_length`` decoding;
    `allow_eos` takes the plain argmax instead.
    """
    if tokens.ndim != 2 or tokens.shape[1] < k + m:
        raise ValueError(f"need sequences of at least {k + m} tokens (prompt {k} + continuation {m}); got {tokens.shape}")
    device = next(model.parameters()).device
    batch_size = batch_size or auto_batch_size(model, device, k, m)
    model.eval()
    matched, prefix = np.empty(len(tokens), np.uint8), np.empty(len(tokens), np.uint8)
    decode_rows = decode_steps = 0
    for a in range(0, len(tokens), batch_size):
        batch = torch.from_numpy(np.ascontiguousarray(tokens[a : a + batch_size, : k + m], dtype=np.int64)).to(device)
        mt, pf, steps = score_batch(model, batch, k, m, end_of_text_id(model, allow_eos))
        matched[a : a + len(batch)] = mt.cpu().numpy()
        prefix[a : a + len(batch)] = pf.cpu().numpy()
        decode_rows += int((pf < m - 1).sum())
        decode_steps += steps
    return Scores(matched, prefix, m, decode_rows, decode_steps)
