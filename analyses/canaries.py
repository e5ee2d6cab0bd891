"""Memorization of the micro-Pile's planted canaries: texts with known copy counts in the corpus
(0 copies: controls never trained on), scored like any training sequence (prompt 32 tokens,
greedy continuation of 32; `pythia_suite.eval.continuation`) at every checkpoint of a suite."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from pythia_suite.checkpoints import Suite
from pythia_suite.data import TrainingOrder
from pythia_suite.errors import UserError
from pythia_suite.eval.continuation import CONTINUATION_LEN, PROMPT_LEN, score_sequences


def canary_tokens(truth: dict, tokenizer) -> list[np.ndarray]:
    """Every planted canary (and 0-copy control) as token ids, as the data's tokenizer cut it."""
    return [np.array(tokenizer.encode(c["text"], add_special_tokens=False).ids, dtype=np.int64)
            for c in truth["canaries"]]


def canary_scores(suite: Suite, truth: dict, tokenizer, device: str = "cpu") -> pd.DataFrame:
    """Score every planted canary (prompt = its first 32 tokens, continuation the next 32) at every
    checkpoint of every model; canaries with 0 copies were never trained on (the control)."""
    from pythia_suite.data.build import load_tokenizer

    if isinstance(tokenizer, (str, os.PathLike)):
        tokenizer = load_tokenizer(tokenizer)
    ids = canary_tokens(truth, tokenizer)
    if min(map(len, ids)) < PROMPT_LEN + CONTINUATION_LEN:
        raise UserError(f"a canary has {min(map(len, ids))} tokens, fewer than prompt {PROMPT_LEN} + "
                        f"continuation {CONTINUATION_LEN}; plant longer canaries")
    tokens = np.stack([i[: PROMPT_LEN + CONTINUATION_LEN] for i in ids])
    frames = []
    for model in suite.models():
        for step in suite.steps(model):
            s = score_sequences(suite.load_model(model, step).to(device), tokens)
            frames.append(pd.DataFrame({
                "suite": suite.name, "model": model, "params": suite.params(model), "step": step,
                "tokens_seen": suite.tokens_seen(model, step), "canary": [c["id"] for c in truth["canaries"]],
                "repeats": [c["repeats"] for c in truth["canaries"]], "matched": s.matched.astype(np.int64),
                "score": s.score, "prefix_match": s.prefix.astype(np.int64)}))
    return pd.concat(frames, ignore_index=True)


def in_canary(order: TrainingOrder, sequences: np.ndarray, canaries: list[np.ndarray]) -> np.ndarray:
    """Whether each sequence's 32 continuation tokens occur, in order, inside one of `canaries`
    (token arrays): text that was trained on wherever a copy of that canary was."""
    windows = {tuple(c[a : a + CONTINUATION_LEN].tolist()) for c in canaries
               for a in range(len(c) - CONTINUATION_LEN + 1)}
    cont = order.sequences(sequences)[:, PROMPT_LEN : PROMPT_LEN + CONTINUATION_LEN]
    return np.array([tuple(row) in windows for row in cont.tolist()], dtype=bool)
