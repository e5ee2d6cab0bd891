"""Batched greedy generation until a stop string (lm-evaluation-harness' ``greedy_until``).

    from pythia_suite.eval.generate import greedy_until
    out = greedy_until(model, prompts, max_new_tokens=8, decode=tok.decode, stop=("\\n",))
    out.texts[i]    # continuation of prompts[i], cut before the first stop string
    out.tokens[i]   # its token ids, up to and including the token that completed the stop string

Prompts of different lengths are bucketed by exact token length, so a batch needs no padding, no
attention mask and no position offsets: every row is computed exactly as it would be alone, and
the tokens equal transformers' ``generate`` (greedy) on the same weights. Each decode step is one
forward of the whole batch over the KV cache of `pythia_suite.model`; a row stops at its stop
string or after `max_new_tokens`, and finished rows leave the batch (the cache is compacted) once
a quarter of it is done.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from ..errors import UserError
from ..model import GPTNeoX, KVCache

DEFAULT_BATCH = 256  # rows per forward on a CPU; larger batches gain little for small models


@dataclass
class Generation:
    """Greedy continuations, in the order of the prompts."""

    tokens: list[list[int]]  # generated ids, up to and including the one that completed a stop string
    texts: list[str]  # decoded continuation cut before the first stop string ("" without `decode`)
    stopped: list[bool]  # True when a stop string ended the row, False when max_new_tokens did


def _first_stop(text: str, stop: Sequence[str]) -> int:
    """Index of the earliest stop string in `text`, or -1."""
    hits = [i for i in (text.find(s) for s in stop) if i >= 0]
    return min(hits) if hits else -1


def _compact(cache: KVCache, keep: torch.Tensor) -> KVCache:
    """A cache holding only rows `keep` (a copy: its memory shrinks with the batch)."""
    small = KVCache.__new__(KVCache)
    small.shape = (cache.shape[0], len(keep), *cache.shape[2:])
    small.k, small.v = cache.k[:, keep].contiguous(), cache.v[:, keep].contiguous()  # (n_layer, rows, ...)
    small.pos = cache.pos
    return small


@torch.inference_mode()
def greedy_until(model: GPTNeoX, prompts: Sequence[Sequence[int]], max_new_tokens: int, *,
                 decode: Callable[[list[int]], str] | None = None, stop: Sequence[str] = ("\n",),
                 batch_size: int = DEFAULT_BATCH, device: str | torch.device | None = None) -> Generation:
    """Greedy continuations of `prompts` (lists of token ids, any lengths >= 1).

    A row stops once `decode` of its generated tokens contains a stop string, or after
    `max_new_tokens` tokens. Without `decode` no stop string is checked.
    """
    if max_new_tokens < 1:
        raise UserError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    limit = model.config.max_position_embeddings
    by_len: dict[int, list[int]] = defaultdict(list)
    for i, p in enumerate(prompts):
        if len(p) == 0:
            raise UserError(f"prompt {i} is empty; greedy generation needs at least one token")
        by_len[len(p)].append(i)
    if by_len and (longest := max(by_len)) + max_new_tokens - 1 > limit:
        raise UserError(f"a prompt of {longest} tokens plus {max_new_tokens} new tokens needs "
                        f"{longest + max_new_tokens - 1} positions; the model has {limit}")
    tokens: list[list[int]] = [[] for _ in prompts]
    texts = ["" for _ in prompts]
    stopped = [False for _ in prompts]
    for length in sorted(by_len):
        rows = by_len[length]
        for a in range(0, len(rows), batch_size):
            index = rows[a : a + batch_size]
            x = torch.tensor([list(prompts[i]) for i in index], dtype=torch.long, device=device)  # (B, P)
            cache = KVCache(model.config, len(index), length + max_new_tokens - 1)
            logits, _ = model(x, cache, logits_to_keep=1)  # (B, 1, vocab)
            active = list(index)  # prompt index of each batch row
            alive = [True] * len(active)  # rows still generating (finished ones may wait for compaction)
            for step in range(max_new_tokens):
                nxt = logits[:, -1].argmax(dim=-1)  # (B,)
                keep = []
                for r, (i, t) in enumerate(zip(active, nxt.tolist())):
                    if not alive[r]:
                        continue
                    tokens[i].append(t)
                    if decode is not None and stop:
                        text = decode(tokens[i])
                        cut = _first_stop(text, stop)
                        if cut >= 0:
                            texts[i], stopped[i], alive[r] = text[:cut], True, False
                            continue
                    keep.append(r)
                if not keep or step == max_new_tokens - 1:
                    break
                if len(keep) <= 3 * len(active) // 4:  # a quarter done: shrink the batch
                    sel = torch.tensor(keep, device=device)
                    cache, nxt = _compact(cache, sel), nxt[sel]
                    active, alive = [active[r] for r in keep], [True] * len(keep)
                logits, _ = model(nxt[:, None], cache)  # (B, 1, vocab)
    if decode is not None:
        for i, done in enumerate(stopped):
            if not done:
                texts[i] = decode(tokens[i])
    return Generation(tokens, texts, stopped)
