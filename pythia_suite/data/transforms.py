"""Token-level data transforms applied to training batches, such as the pronoun swap of Pythia's
gender-bias intervention (Biderman et al. 2023, section 5).

    >>> swap = TokenMap.pronoun_swap(tokenizer)          # or TokenMap.from_words(tokenizer, {"he": "she"})
    >>> new_batch = swap.apply(batch)                    # same shape and dtype
    >>> swap.count(new_batch)                            # occurrences of every mapped token

The default map is masculine -> feminine: he -> she, him -> her, his -> her, himself -> herself,
each as written, capitalized, with a leading space, and both (``he``, ``He``, `` he``, `` He``).
The direction is chosen because it is a function: ``her`` is both the object (him) and the
possessive (his), so the reverse map would have to guess; here ``him`` and ``his`` both become
``her``. ``his`` used as a possessive pronoun on its own ("the book is his") also becomes ``her``
rather than ``hers``: a token map cannot tell the two uses apart.

Only single-token -> single-token replacements are made, so every item keeps its length and the
training order is unchanged. A form whose source or target is not one token of the data's
tokenizer cannot be mapped: `TokenMap.skipped` lists it, and `count` reports the occurrences of
a one-token source left unmapped that way (a user word map with such a word is refused). A source token is replaced only where it is a whole word: the next token must not
continue the word (start with a letter or digit), and a form without a leading space must follow
a token that ends a word. Elsewhere (" he" + "ap" in "heap") it is left alone and counted as
``inside_word``. The first and last tokens of an item count as word edges.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UserError

PRONOUN_SWAP = {"he": "she", "him": "her", "his": "her", "himself": "herself"}


def _variants(word: str) -> list[str]:
    forms = [word, word.capitalize()]
    return list(dict.fromkeys(forms + [" " + f for f in forms]))


@dataclass
class TokenMap:
    """A map from source token ids to target token ids, with the word-boundary rule above."""

    pairs: dict[int, int]  # source id -> target id
    names: dict[int, str]  # token id -> its text, for reports
    vocab_size: int
    word_start: np.ndarray = field(repr=False)  # (vocab,) bool: token begins with a non-word character
    word_end: np.ndarray = field(repr=False)  # (vocab,) bool: token ends with a non-word character
    spaced: np.ndarray = field(repr=False)  # (vocab,) bool: source token starts with a space
    skipped: list[str] = field(default_factory=list)  # forms that are not single tokens
    unmapped: dict[int, str] = field(default_factory=dict)  # single-token sources whose target is not
    name: str = "custom"
    words: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_words(cls, tokenizer, words: dict[str, str], strict: bool = True, name: str = "custom") -> "TokenMap":
        """Build from a word map, each word in its four forms. With `strict`, a word whose
        leading-space form (the way words occur in running text) is not one token on both
        sides is an error; other forms that are not single tokens are skipped and listed."""
        vocab = tokenizer.get_vocab_size(with_added_tokens=True)
        pairs, names, skipped, bad, unmapped = {}, {}, [], [], {}
        for src, dst in words.items():
            if not isinstance(src, str) or not isinstance(dst, str) or not src.strip() or not dst.strip():
                raise UserError(f"word map entries must be non-empty words, got {src!r}: {dst!r}")
            for s, d in zip(_variants(src.strip()), _variants(dst.strip())):
                si, di = _single(tokenizer, s), _single(tokenizer, d)
                if si is None or di is None:
                    skipped.append(f"{s!r}->{d!r}")
                    if si is not None:
                        unmapped[si] = s
                    if strict and s == " " + src.strip():
                        bad.append(f"{s!r}" if si is None else f"{d!r}")
                    continue
                if si in pairs and pairs[si] != di:
                    raise UserError(f"word map sends {s!r} to two different tokens")
                pairs[si], names[si], names[di] = di, s, d
        if bad:
            raise UserError(f"word map: {', '.join(bad)} not a single token of the data's tokenizer; only "
                            f"single-token to single-token replacements keep item lengths")
        if not pairs:
            raise UserError("no word of the map is a single token of the data's tokenizer: nothing to map")
        cyc = set(pairs) & set(pairs.values())
        if cyc:
            raise UserError(f"word map is not one-directional: {', '.join(names[i] for i in sorted(cyc))!r} "
                            "is both a source and a target")
        start, end = _boundaries(tokenizer, vocab)
        spaced = np.zeros(vocab, bool)
        for si in pairs:
            spaced[si] = names[si].startswith(" ")
        for si in set(unmapped) & set(pairs):
            del unmapped[si]
        return cls(pairs, names, vocab, start, end, spaced, skipped, unmapped, name, dict(words))

    @classmethod
    def pronoun_swap(cls, tokenizer) -> "TokenMap":
        """The default masculine -> feminine map; forms that are not single tokens are skipped."""
        return cls.from_words(tokenizer, PRONOUN_SWAP, strict=False, name="pronoun-swap")

    @property
    def lut(self) -> np.ndarray:
        lut = np.arange(self.vocab_size, dtype=np.int64)
        for s, d in self.pairs.items():
            lut[s] = d
        return lut

    def describe(self) -> dict:
        """JSON-able record of the map (for the manifest and table metadata)."""
        return {"name": self.name, "words": self.words,
                "tokens": {self.names[s]: [s, d] for s, d in sorted(self.pairs.items())}, "skipped": self.skipped}

    def _whole(self, b: np.ndarray) -> np.ndarray:
        """(N, T) bool: a source token standing as a whole word (the rule in the module doc)."""
        is_src = self._src_mask[b]
        after_ok = np.ones_like(is_src)
        after_ok[:, :-1] = self.word_start[b[:, 1:]]
        before_ok = np.ones_like(is_src)
        before_ok[:, 1:] = self.word_end[b[:, :-1]]
        return is_src & after_ok & (self.spaced[b] | before_ok)

    def _ids(self, batch: np.ndarray) -> np.ndarray:
        if batch.ndim != 2:
            raise ValueError(f"a batch is (items, tokens), got shape {batch.shape}")
        if int(batch.max(initial=0)) >= self.vocab_size:
            raise UserError(f"token id {int(batch.max())} is outside the tokenizer's {self.vocab_size} ids: "
                            "the data was made with another tokenizer")
        return batch.astype(np.int64, copy=False)

    def apply(self, batch: np.ndarray) -> np.ndarray:
        """The transformed batch (items, tokens): same shape and dtype."""
        b = self._ids(batch)
        if not self._src_mask[b].any():
            return batch.copy()
        return np.where(self._whole(b), self._lut[b], b).astype(batch.dtype)

    def count(self, batch: np.ndarray) -> list[dict]:
        """Occurrences of every token of the map in `batch`: one dict per token with ``token`` (its
        text), ``role`` (source | target | unmapped: a one-token source whose target is not one
        token), ``whole_word`` and ``inside_word`` (for targets every occurrence is whole_word)."""
        b = self._ids(batch)
        whole = self._whole(b)
        rows = []
        for s in sorted(self.pairs):
            src = b == s
            n, w = int(src.sum()), int((src & whole).sum())
            rows.append({"token": self.names[s], "role": "source", "whole_word": w, "inside_word": n - w})
        for d in sorted(set(self.pairs.values())):
            rows.append({"token": self.names[d], "role": "target", "whole_word": int((b == d).sum()), "inside_word": 0})
        for u, text in sorted(self.unmapped.items()):
            rows.append({"token": text, "role": "unmapped", "whole_word": int((b == u).sum()), "inside_word": 0})
        return rows

    def __post_init__(self) -> None:
        self._lut = self.lut
        self._src_mask = np.zeros(self.vocab_size, bool)
        self._src_mask[list(self.pairs)] = True


def _single(tokenizer, text: str) -> int | None:
    ids = tokenizer.encode(text, add_special_tokens=False).ids
    return ids[0] if len(ids) == 1 else None


def _boundaries(tokenizer, vocab: int) -> tuple[np.ndarray, np.ndarray]:
    """Per token id: does its text start / end with something other than a letter or digit?
    Special tokens (end-of-text) are word edges."""
    start = np.ones(vocab, bool)
    end = np.ones(vocab, bool)
    special = set()
    for tok, i in tokenizer.get_vocab(with_added_tokens=True).items():
        if tok.startswith("<|") and tok.endswith("|>"):
            special.add(i)
    texts = tokenizer.decode_batch([[i] for i in range(vocab)], skip_special_tokens=False)
    for i, text in enumerate(texts):
        if text and i not in special:
            start[i] = not text[0].isalnum()
            end[i] = not text[-1].isalnum()
    return start, end


def load_word_map(path: str | os.PathLike) -> dict[str, str]:
    """A user word map: a JSON object {"source": "target", ...}."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"word map not found: {p}")
    try:
        words = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{p} is not a JSON word map ({e})") from None
    if not isinstance(words, dict) or not words or not all(isinstance(v, str) for v in words.values()):
        raise UserError(f"{p} must be a JSON object of words to words, e.g. {{\"he\": \"she\"}}")
    return words
