"""Token-level data transforms applied to training batches, such as the pronoun swap of Pythia's
gender-bias intervention (Biderman et al. 2023, section 5).

    >>> swap = TokenMap.pronoun_swap(tokenizer)          # or TokenMap.from_words(tokenizer, {"he": "she"})
    >>> new_batch = swap.apply(batch)                    # same shape and dtype
    >>> new_batch, stats = swap.apply_counted(batch)     # stats: replaced, dropped, padded
    >>> swap.count(new_batch)                            # occurrences of every form of the map
    >>> swap.warning()                                   # one line when forms are several tokens or unwritable

The default map is masculine -> feminine: he -> she, him -> her, his -> her, himself -> herself,
each as written, capitalized, with a leading space, and both (``he``, ``He``, `` he``, `` He``):
16 forms. The direction is chosen because it is a function: ``her`` is both the object (him) and
the possessive (his), so the reverse map would have to guess; here ``him`` and ``his`` both become
``her``. ``his`` used as a possessive pronoun on its own ("the book is his") also becomes ``her``
rather than ``hers``: a token map cannot tell the two uses apart.

**Forms as token sequences.** Each form is encoded on its own by the data's tokenizer, source and
target, into a sequence of one or more token ids (a small BPE may write `` himself`` as
`` him`` + ``self``). An occurrence of the source sequence is replaced by the target sequence only
where it stands as a whole word: the token after its last token must not continue a word (must not
start with a letter or digit), and, unless the form starts with a space, the token before its first
token must end a word (not end with a letter or digit). The first and last tokens of an item count
as word edges, and so do special tokens. Elsewhere (`` he`` + ``ap`` in "heap") the occurrence is
left alone and counted as ``inside_word``. Occurrences are taken left to right in each item, on the
item as it was, and never overlap: where several start at one token the longest source wins, and an
occurrence that begins inside one already taken is left alone.

**Length changes.** Every item keeps its length, so the training order and the batch shapes stay
the parent's. Where a target sequence is longer than its source the rest of the item shifts right
and the tokens pushed past the item's end are dropped; where it is shorter the rest shifts left and
the item is padded at its end with the end-of-text id. `apply_counted` reports both numbers
(``dropped``, ``padded``) and `count`-based tables record them per step. A map whose forms all keep
their length never shifts anything.

**Forms that cannot be written.** A form whose source or target encodes to no token, to the
tokenizer's unknown token, or to ids that decode back to different text cannot be expressed in the
tokenizer: it is skipped and listed in `TokenMap.skipped` with the reason (a shorter target with no
end-of-text id to pad with is skipped too). A written source whose target cannot be written stays as
it is; `count` reports its occurrences with the role ``unmapped``. A map with no form left is an
error. `TokenMap.describe()` records every form's token ids (source sequence -> target sequence) and
the skipped forms with their reasons.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UserError

PRONOUN_SWAP = {"he": "she", "him": "her", "his": "her", "himself": "herself"}
EOD_TOKEN = "<|endoftext|>"


def _variants(word: str) -> list[str]:
    forms = [word, word.capitalize()]
    return list(dict.fromkeys(forms + [" " + f for f in forms]))


@dataclass(frozen=True)
class Rule:
    """One form of the map: its source and target text and their token sequences."""

    source: str
    target: str
    src: tuple[int, ...]
    dst: tuple[int, ...]

    @property
    def spaced(self) -> bool:
        return self.source.startswith(" ")


@dataclass
class TokenMap:
    """Source token sequences -> target token sequences, with the whole-word and length rules above."""

    rules: list[Rule]
    vocab_size: int
    word_start: np.ndarray = field(repr=False)  # (vocab,) bool: token begins with a non-word character
    word_end: np.ndarray = field(repr=False)  # (vocab,) bool: token ends with a non-word character
    eod_id: int | None = None  # pads an item that a shorter target left short
    skipped: list[dict] = field(default_factory=list)  # {"form", "reason"}: forms that cannot be written
    unmapped: dict[str, tuple[int, ...]] = field(default_factory=dict)  # written sources whose target is not
    n_forms: int = 0  # forms considered, written or not
    name: str = "custom"
    words: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_words(cls, tokenizer, words: dict[str, str], name: str = "custom",
                   eod_id: int | None = None) -> "TokenMap":
        """Build from a word map, each word in its four forms (module doc). `eod_id` pads items a
        shorter target leaves short (default: the tokenizer's end-of-text token)."""
        vocab = tokenizer.get_vocab_size(with_added_tokens=True)
        if eod_id is None:
            eod_id = tokenizer.token_to_id(EOD_TOKEN)
        unk = getattr(tokenizer.model, "unk_token", None)
        unk_id = tokenizer.token_to_id(unk) if unk else None
        rules: dict[tuple[int, ...], Rule] = {}
        skipped, unmapped, n_forms = [], {}, 0
        for src, dst in words.items():
            if not isinstance(src, str) or not isinstance(dst, str) or not src.strip() or not dst.strip():
                raise UserError(f"word map entries must be non-empty words, got {src!r}: {dst!r}")
            for s, d in zip(_variants(src.strip()), _variants(dst.strip())):
                n_forms += 1
                si, why_s = _encode(tokenizer, s, unk_id)
                di, why_d = _encode(tokenizer, d, unk_id)
                if si is None or di is None:
                    skipped.append({"form": f"{s!r}->{d!r}", "text": s if si is None else d,
                                    "reason": why_s if si is None else why_d})
                    if si is not None:
                        unmapped[s] = si
                    continue
                if len(di) < len(si) and eod_id is None:
                    skipped.append({"form": f"{s!r}->{d!r}", "text": d, "reason": "shorter than its source and the "
                                    "tokenizer has no end-of-text id to pad the item with"})
                    unmapped[s] = si
                    continue
                if si in rules and rules[si].dst != di:
                    raise UserError(f"word map sends {s!r} to two different targets "
                                    f"({rules[si].target!r} and {d!r})")
                rules[si] = Rule(s, d, si, di)
        if not rules:
            why = "; ".join(f"{x['text']!r}: {x['reason']}" for x in skipped[:4])
            raise UserError(f"no form of the {name} map can be written in the data's tokenizer ({why}): nothing to map")
        cyc = sorted({r.source for r in rules.values()} & {r.target for r in rules.values()})
        if cyc:
            raise UserError(f"word map is not one-directional: {', '.join(map(repr, cyc))} "
                            f"{'is' if len(cyc) == 1 else 'are'} both a source and a target; map each word one way only")
        for s in [s for s in unmapped if s in {r.source for r in rules.values()}]:
            del unmapped[s]
        start, end = _boundaries(tokenizer, vocab)
        return cls(list(rules.values()), vocab, start, end, eod_id, skipped, unmapped, n_forms, name, dict(words))

    @classmethod
    def pronoun_swap(cls, tokenizer, eod_id: int | None = None) -> "TokenMap":
        """The default masculine -> feminine map; forms that cannot be written are skipped."""
        return cls.from_words(tokenizer, PRONOUN_SWAP, name="pronoun-swap", eod_id=eod_id)

    @property
    def multi_token(self) -> list[Rule]:
        """Forms whose source or target is several tokens."""
        return [r for r in self.rules if len(r.src) > 1 or len(r.dst) > 1]

    @property
    def changes_length(self) -> bool:
        return any(len(r.src) != len(r.dst) for r in self.rules)

    def describe(self) -> dict:
        """JSON-able record of the map (for the manifest and table metadata)."""
        return {"name": self.name, "words": self.words,
                "tokens": {r.source: {"target": r.target, "source_ids": list(r.src), "target_ids": list(r.dst)}
                           for r in self.rules},
                "skipped": [{"form": x["form"], "reason": f"{x['text']!r} {x['reason']}"} for x in self.skipped],
                "eod_id": self.eod_id}

    def warning(self) -> str | None:
        """One line when part of the map is several tokens or cannot be written; None otherwise."""
        multi, bad = self.multi_token, self.skipped
        if not multi and not bad:
            return None
        parts = []
        if multi:
            shift = sum(len(r.src) != len(r.dst) for r in self.rules)
            parts.append(f"{len(multi)} of {self.n_forms} forms are several tokens of this tokenizer (replaced as "
                         "token sequences" + (f"; {shift} change an item's length: the rest of the item shifts, "
                                              "end-of-text pads it or its last tokens drop)" if shift else ")"))
        if bad:
            names = list(dict.fromkeys(repr(x["text"]) for x in bad))
            texts = ", ".join(names[:16]) + (f" and {len(names) - 16} more" if len(names) > 16 else "")
            parts.append(f"{len(bad)} of {self.n_forms} cannot be written in it and are skipped: {texts}")
        return f"warning: {self.name}: " + ", ".join(parts)

    # ---- finding and replacing -------------------------------------------------------------------

    def _ids(self, batch: np.ndarray) -> np.ndarray:
        if batch.ndim != 2:
            raise ValueError(f"a batch is (items, tokens), got shape {batch.shape}")
        if int(batch.max(initial=0)) >= self.vocab_size:
            raise UserError(f"token id {int(batch.max())} is outside the tokenizer's {self.vocab_size} ids: "
                            "the data was made with another tokenizer")
        return batch.astype(np.int64, copy=False)

    def _find(self, b: np.ndarray, seqs: list[tuple[tuple[int, ...], bool]]):
        """Every occurrence of each sequence in `b` that fits in its item: per sequence (rows, cols of
        its first token, whole: bool per occurrence, by the whole-word rule; `spaced` exempts the
        token before)."""
        T = b.shape[1]
        firsts = np.zeros(self.vocab_size, bool)
        firsts[[s[0] for s, _ in seqs]] = True
        r, c = np.nonzero(firsts[b])
        t = b[r, c]
        out = []
        for ids, spaced in seqs:
            L = len(ids)
            sel = (t == ids[0]) & (c + L <= T)
            rr, cc = r[sel], c[sel]
            ok = np.ones(len(rr), bool)
            for k in range(1, L):
                ok &= b[rr, cc + k] == ids[k]
            rr, cc = rr[ok], cc[ok]
            end = cc + L
            after = np.ones(len(rr), bool)
            inside = end < T
            after[inside] = self.word_start[b[rr[inside], end[inside]]]
            before = np.ones(len(rr), bool)
            has = cc > 0
            before[has] = self.word_end[b[rr[has], cc[has] - 1]]
            out.append((rr, cc, after & (spaced | before)))
        return out

    def _taken(self, b: np.ndarray, seqs: list[tuple[tuple[int, ...], bool]]):
        """Whole-word occurrences of `seqs` taken left to right without overlap, the longest first
        where several start at one token: (rows, cols, sequence index) sorted, and every
        occurrence's sequence index (whole-word or not) for counting."""
        found = self._find(b, seqs)
        every = np.concatenate([np.full(len(rr), i, np.int64) for i, (rr, _, _) in enumerate(found)])
        rows = np.concatenate([rr[w] for rr, _, w in found])
        cols = np.concatenate([cc[w] for _, cc, w in found])
        idx = np.concatenate([np.full(int(w.sum()), i, np.int64) for i, (_, _, w) in enumerate(found)])
        if not len(rows):
            return rows, cols, idx, every
        lens = np.array([len(s) for s, _ in seqs], np.int64)[idx]
        order = np.lexsort((-lens, cols, rows))  # by item, position, longest first
        rows, cols, idx, lens = rows[order], cols[order], idx[order], lens[order]
        clash = (rows[1:] == rows[:-1]) & (cols[1:] < cols[:-1] + lens[:-1])
        if clash.any():  # some overlap: greedy, left to right, in the items concerned
            keep = np.ones(len(rows), bool)
            todo = np.isin(rows, rows[1:][clash])
            row, reach = -1, 0
            for i in np.flatnonzero(todo).tolist():
                ro, co = int(rows[i]), int(cols[i])
                if ro != row:
                    row, reach = ro, 0
                keep[i] = co >= reach
                if keep[i]:
                    reach = co + int(lens[i])
            rows, cols, idx = rows[keep], cols[keep], idx[keep]
        return rows, cols, idx, every

    def replacements(self, batch: np.ndarray) -> int:
        """How many occurrences `apply` replaces in `batch`."""
        return len(self._taken(self._ids(batch), self._sources)[0])

    def apply(self, batch: np.ndarray) -> np.ndarray:
        """The transformed batch (items, tokens): same shape and dtype."""
        return self.apply_counted(batch)[0]

    def apply_counted(self, batch: np.ndarray) -> tuple[np.ndarray, dict]:
        """(transformed batch, {"replaced", "dropped", "padded"}): occurrences replaced, tokens pushed
        past their item's end, end-of-text ids appended to items left short (module doc)."""
        b = self._ids(batch)
        stats = {"replaced": 0, "dropped": 0, "padded": 0}
        if not self._first_mask[b].any():
            return batch.copy(), stats
        rows, cols, idx, _ = self._taken(b, self._sources)
        stats["replaced"] = len(rows)
        src_len, dst_len = self._src_len[idx], self._dst_len[idx]
        if (src_len == dst_len).all():  # nothing shifts: in place
            out = b.copy()
            for k in range(self._dst.shape[1]):
                sel = k < dst_len
                out[rows[sel], cols[sel] + k] = self._dst[idx[sel], k]
            return out.astype(batch.dtype), stats
        # tokens each position of the original writes: 1, a target's length at an occurrence's first
        # token, 0 for its other tokens; their running sum places everything in the shifted item
        T = b.shape[1]
        emit = np.ones(b.shape, np.int64)
        emit[rows, cols] = dst_len
        for k in range(1, int(src_len.max())):
            sel = k < src_len
            emit[rows[sel], cols[sel] + k] = 0
        at = np.cumsum(emit, axis=1) - emit  # where each original position's tokens start
        length = at[:, -1] + emit[:, -1]
        stats["dropped"] = int(np.maximum(length - T, 0).sum())
        stats["padded"] = int(np.maximum(T - length, 0).sum())
        out = np.full(b.shape, self.eod_id if self.eod_id is not None else 0, np.int64)  # the padding
        keep = (emit == 1) & (at < T)
        keep[rows, cols] = False  # an occurrence's first token writes its target, below
        r, c = np.nonzero(keep)
        out[r, at[r, c]] = b[r, c]
        start = at[rows, cols]
        for k in range(self._dst.shape[1]):
            sel = (k < dst_len) & (start + k < T)
            out[rows[sel], start[sel] + k] = self._dst[idx[sel], k]
        return out.astype(batch.dtype), stats

    def count(self, batch: np.ndarray) -> list[dict]:
        """Occurrences of every form of the map in `batch`: one dict per form with ``token`` (its
        text), ``role`` (source | target | unmapped: a written source whose target cannot be
        written), ``whole_word`` (occurrences standing as whole words, taken left to right without
        overlap as `apply` takes sources: for sources exactly the ones `apply` replaces) and
        ``inside_word`` (the other occurrences: inside a longer word or inside another form's)."""
        b = self._ids(batch)
        groups = [("source", [(r.source, r.src) for r in self.rules]),
                  ("target", list({r.target: r.dst for r in self.rules}.items())),
                  ("unmapped", list(self.unmapped.items()))]
        rows = []
        for role, forms in groups:
            if not forms:
                continue
            _, _, idx, every = self._taken(b, [(ids, text.startswith(" ")) for text, ids in forms])
            whole, total = np.bincount(idx, minlength=len(forms)), np.bincount(every, minlength=len(forms))
            rows += [{"token": text, "role": role, "whole_word": int(w), "inside_word": int(n - w)}
                     for (text, _), w, n in zip(forms, whole, total)]
        return rows

    def __post_init__(self) -> None:
        self._first_mask = np.zeros(self.vocab_size, bool)
        self._first_mask[[r.src[0] for r in self.rules]] = True
        self._sources = [(r.src, r.spaced) for r in self.rules]
        self._src_len = np.array([len(r.src) for r in self.rules], np.int64)
        self._dst_len = np.array([len(r.dst) for r in self.rules], np.int64)
        self._dst = np.zeros((len(self.rules), max(self._dst_len, default=1)), np.int64)
        for i, r in enumerate(self.rules):
            self._dst[i, : len(r.dst)] = r.dst


def _encode(tokenizer, text: str, unk_id: int | None) -> tuple[tuple[int, ...] | None, str]:
    """(token ids of `text` on its own, "") or (None, why it cannot be written)."""
    ids = tokenizer.encode(text, add_special_tokens=False).ids
    if not ids:
        return None, "encodes to no token"
    if unk_id is not None and unk_id in ids:
        return None, "encodes to the unknown token"
    back = tokenizer.decode(ids, skip_special_tokens=False)
    if back != text:
        return None, f"decodes back as {back!r}"
    return tuple(ids), ""


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
