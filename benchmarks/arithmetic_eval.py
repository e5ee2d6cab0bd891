"""Few-shot arithmetic evaluation speed: `pythia_suite.eval.generate.greedy_until` against transformers.

    .venv/bin/python benchmarks/arithmetic_eval.py                    # 4-shot, x2 1..10: 2,000 prompts
    .venv/bin/python benchmarks/arithmetic_eval.py --shots 16 --x2-max 50 --batch 64

One process, the same weights (ours saved with `save_pretrained`, loaded by transformers'
`GPTNeoXForCausalLM`, sdpa attention) and the same prompts: the term-frequency study's questions
(`analyses.term_frequency.build_prompts`, tasks times and plus, x1 0..99) in Pythia's k-shot
format, encoded by a byte-level BPE trained here on a small micro-Pile. Greedy until a newline,
at most 8 new tokens. The model has the pythia-14m shape (6 layers, d 128, 4 heads) with that
tokenizer's 2048-token vocabulary and random N(0, 0.2) weights (so that logits are far apart and
padding's rounding cannot flip an argmax).

- ours: `greedy_until`, prompts bucketed by token length (no padding), batches of --batch, one
  forward per decode step over the KV cache, finished rows leaving the batch.
- peer, batched as lm-evaluation-harness' HFLM forms batches: requests sorted by length, longest
  first, --batch per call, left padding with an attention mask, `generate(do_sample=False,
  max_new_tokens=8, use_cache=True)` with a stopping criterion that marks a row done once its
  decoded continuation holds the stop string (the harness' `MultiTokenEOSCriteria`).
- peer, one prompt at a time (the harness' default batch size 1), on the first --single prompts.

Prints prompts/s of each, the ratios (target: >= 5x the batched peer) and whether the answers
(texts up to the newline) are identical for every prompt.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from analyses.term_frequency import build_prompts, is_correct
from pythia_suite.data.build import build, load_tokenizer
from pythia_suite.eval.generate import greedy_until
from pythia_suite.micropile import MicroPileConfig, generate
from pythia_suite.model import GPTNeoX
from pythia_suite.sizes import config_for

MAX_NEW = 8


def hf_batched(theirs, tok, ids: list[list[int]], batch: int, pad: int) -> list[str]:
    """lm-evaluation-harness style: longest first, left-padded batches, stop once every row has "\\n"."""
    import transformers

    class StopAtNewline(transformers.StoppingCriteria):
        def __init__(self, start: int):
            self.start = start

        def __call__(self, input_ids, scores, **kwargs):  # per-row done flags
            return torch.tensor(["\n" in tok.decode(row[self.start:].tolist()) for row in input_ids])

    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
    texts = [""] * len(ids)
    for a in range(0, len(order), batch):
        idx = order[a : a + batch]
        width = max(len(ids[i]) for i in idx)
        x = torch.full((len(idx), width), pad, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for r, i in enumerate(idx):
            x[r, width - len(ids[i]):] = torch.tensor(ids[i])
            mask[r, width - len(ids[i]):] = 1
        with torch.no_grad():
            y = theirs.generate(x, attention_mask=mask, do_sample=False, max_new_tokens=MAX_NEW, use_cache=True,
                                pad_token_id=pad, eos_token_id=None,
                                stopping_criteria=transformers.StoppingCriteriaList([StopAtNewline(width)]))
        for r, i in enumerate(idx):
            text = tok.decode(y[r, width:].tolist())
            texts[i] = text.split("\n")[0]
    return texts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shots", type=int, default=4)
    ap.add_argument("--x2-max", type=int, default=10)
    ap.add_argument("--batch", type=int, default=64, help="prompts per forward, both sides (default 64)")
    ap.add_argument("--single", type=int, default=100, help="prompts run one at a time by the peer")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import transformers

    tmp = Path(tempfile.mkdtemp(prefix="arith_"))
    try:
        generate(tmp / "mp.jsonl", replace(MicroPileConfig(), seed=5, target_bytes=1_000_000, canaries_per_repeat=0))
        prefix = build([tmp / "mp.jsonl"], tmp / "d", seq_len=128, vocab_size=2048, seed=1, progress=False).prefix
        tok = load_tokenizer(f"{prefix}.tokenizer.json")
        config = replace(config_for("14m"), vocab_size=tok.get_vocab_size())
        torch.manual_seed(0)
        ours = GPTNeoX(config).eval()
        with torch.no_grad():
            for name, p in ours.named_parameters():
                p.normal_(1.0 if "norm" in name and name.endswith("weight") else 0.0, 0.2)
        ours.save_pretrained(tmp / "hf")
        theirs = transformers.GPTNeoXForCausalLM.from_pretrained(tmp / "hf", attn_implementation="sdpa").eval()
        prompts = build_prompts(["times", "plus"], [args.shots], range(1, args.x2_max + 1), seed=0)
        ids = [e.ids for e in tok.encode_batch(prompts["prompt"].tolist(), add_special_tokens=False)]
        n = len(ids)
        print(f"{n} prompts ({args.shots}-shot, {min(map(len, ids))}..{max(map(len, ids))} tokens), pythia-14m shape, "
              f"vocab {config.vocab_size}, batch {args.batch}, {args.threads} torch threads")

        greedy_until(ours, ids[:64], MAX_NEW, decode=tok.decode, batch_size=args.batch)  # warm-up
        t = time.perf_counter()
        mine = greedy_until(ours, ids, MAX_NEW, decode=tok.decode, batch_size=args.batch).texts
        ours_s = time.perf_counter() - t
        t = time.perf_counter()
        peer = hf_batched(theirs, tok, ids, args.batch, pad=1)
        peer_s = time.perf_counter() - t
        k = min(args.single, n)
        t = time.perf_counter()
        single = hf_batched(theirs, tok, ids[:k], 1, pad=1)
        single_s = (time.perf_counter() - t) / k * n
        same = mine == peer and mine[:k] == single
        right = sum(is_correct(o, a) for o, a in zip(mine, prompts["answer"]))
        stopped = sum("\n" in tok.decode(x) for x in greedy_until(ours, ids[:200], MAX_NEW).tokens)
        print(f"ours:                       {ours_s:7.2f} s  {n / ours_s:8.1f} prompts/s")
        print(f"transformers, harness batch: {peer_s:7.2f} s  {n / peer_s:8.1f} prompts/s  -> ours {peer_s / ours_s:.1f}x "
              "(target >= 5x)")
        print(f"transformers, one at a time: {single_s:7.2f} s  {n / single_s:8.1f} prompts/s (from {k} prompts) -> "
              f"ours {single_s / ours_s:.1f}x")
        print(f"identical answers: {same} ({sum(a != b for a, b in zip(mine, peer))} differ from the batched peer); "
              f"{right} correct (random weights); {stopped} of 200 stop at a newline before {MAX_NEW} tokens")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
