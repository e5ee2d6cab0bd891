"""Exact term counts over the training order: per step, and as of every checkpoint.

    from pythia_suite.data.counts import count_terms, parse_terms
    terms = parse_terms(["0..99"], tokenizer)
    result = count_terms("data/corpus", terms, batch_size=32, store="counts.zarr", tokenizer=tok)
    result.count          # (term, step) int64: occurrences in the batch trained on at each step
    result.count_seen(N)  # (term,): occurrences in steps 0..N-1, what checkpoint stepN has seen

Because the data is stored in training order, "count as of checkpoint stepN" is a prefix sum over
steps: one pass over the tokens gives it for every checkpoint at once. The pass runs over chunks
of steps (the zarr chunks of ``store``), on a process pool, and a chunk's counts are written with
a done flag, so an interrupted run resumes where it stopped. Memory per worker is bounded by
`BLOCK_TOKENS`, whatever the corpus size. Occurrences never span two items.

Two definitions of "an occurrence":

``token`` (default): whole numbers read off the token stream. A *digit token* spells only ASCII
digits, with or without one leading space (a token mixing letters and digits is not one). A digit
run starts at a digit token with a leading space, or at one that does not follow a digit token,
and goes on through the digit tokens without a leading space that follow it. The run counts for
the number term ``x`` when its digits spell exactly ``x``::

    "12" "34"   -> 1234        " 12" " 34" -> 12, 34        "07" -> 07 (not 7)
    "3" "." "5" -> 3, 5        "x" "24"    -> 24            "x24" (one token) -> nothing

A term that is not all digits (``"is 24 times"``), or one given as token ids (``ids:2,3``, even
if they spell a number), counts exact occurrences of its token-id sequence inside an item.

``pythia``: the text rule of Pythia's term-frequency script (EleutherAI/pythia,
``case-studies/term_frequency/scripts/run_freq_count.py``), quirks included. Each item is decoded
(special tokens kept, transformers' ``clean_up_tokenization_spaces`` applied, as its
``batch_decode`` did), a space is put in front, and at every position the lookahead regex
`PYTHIA_WINDOW` looks for a window " N <1-3 words> M". Every ``\\d{1,5}`` piece of a window counts
once for ``str(int(piece))``, so overlapping windows count a number again, a number with no
other number within three words counts 0, and ``07`` counts as 7::

    "3 times 4"        -> 3: 1, 4: 1          "5 and 6 and 7"  -> 5: 1, 6: 2, 7: 2
    "42 is the answer" -> nothing             "1 2 3 4"        -> 1: 1, 2: 2, 3: 2, 4: 2
    "07 plus 8"        -> 7: 1, 8: 1          "1 and 123456"   -> 1: 1, 12345: 1
    "is 24 times 7? A:168" -> 24: 1, 7: 1 (168 follows ":", so it is never in a window)

It is slow by nature (decode, then a regex at every character); it reproduces the paper's counts.
"""

from __future__ import annotations

import os
import re
import string
from collections import Counter
from contextlib import nullcontext
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..errors import UserError
from ..fileio import store_lock

DEFINITIONS = ("token", "pythia")
BLOCK_TOKENS = 1 << 22  # tokens a worker reads at once (at least one step); temporaries are ~20 bytes each
MAX_CHUNK_STEPS = 1024  # steps per zarr chunk (unit of resumable work)
DENSE_KEYS = 1 << 20  # number terms with keys below this are looked up in a table, not searched
MAX_DIGITS = 17  # longest number term: keys of value * 32 + length must fit in int64
STORE_FORMAT = "pythia-suite/counts/v1"

_PUNCT = re.escape(string.punctuation)
# Pythia's `search_string_lazy`, character for character.
PYTHIA_WINDOW = re.compile(f"(?=( (\\d){{1,5}} ((\\w|[{_PUNCT}])+\\s+){{1,3}}(\\d){{1,5}}))")
PYTHIA_NUMBER = re.compile(r"\d{1,5}")
# transformers' `clean_up_tokenization` (the default of `decode`/`batch_decode` when Pythia counted).
_CLEANUP = ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
            (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"))


# ---- terms ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Term:
    """One term: `text` (None when given as ids) and its token ids. `is_number`: counted by the
    digit-run rule (the text is all ASCII digits); otherwise by exact token-sequence match."""

    text: str | None
    ids: tuple[int, ...]

    @property
    def is_number(self) -> bool:
        return self.text is not None and self.text.isascii() and self.text.isdigit()

    @property
    def label(self) -> str:
        return self.text if self.text is not None else "ids:" + ",".join(map(str, self.ids))


def _expand(spec: str) -> list[str]:
    """'0..99' -> '0', ..., '99' (inclusive); anything else is one term."""
    m = re.fullmatch(r"(\d+)\.\.(\d+)", spec)
    if not m:
        return [spec]
    a, b = int(m.group(1)), int(m.group(2))
    if b < a:
        raise UserError(f"term range {spec!r} is empty; write LOW..HIGH with LOW <= HIGH (inclusive)")
    return [str(x) for x in range(a, b + 1)]


def parse_terms(specs: Iterable[str | Sequence[int]], tokenizer=None, vocab_size: int | None = None) -> list[Term]:
    """Terms from strings ("24", "0..99" for a range, "is 24 times", "ids:31,2045") or id sequences.

    Strings are encoded with `tokenizer` (required for them), which must give them back exactly;
    ids must lie below `vocab_size` (the tokenizer's when not given).
    """
    if tokenizer is not None and vocab_size is None:
        vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
    terms: list[Term] = []
    for spec in specs:
        if isinstance(spec, str) and spec.startswith("ids:"):
            try:
                spec = [int(x) for x in spec[4:].split(",")]
            except ValueError:
                raise UserError(f"term {spec!r}: write token ids as ids:ID,ID,... (integers)") from None
        if not isinstance(spec, str):
            ids = tuple(int(i) for i in spec)
            if not ids:
                raise UserError("a term given as token ids is empty; give at least one id")
            if vocab_size is not None and (max(ids) >= vocab_size or min(ids) < 0):
                raise UserError(f"term ids {list(ids)} lie outside the vocabulary: ids run 0..{vocab_size - 1}")
            terms.append(Term(None, ids))  # ids are matched as they are, whatever they spell
            continue
        for text in _expand(spec):
            if text == "" or text.isspace():
                raise UserError(f"term {text!r} is empty; a term needs at least one visible character")
            if tokenizer is None:
                raise UserError(f"term {text!r} is a string but the data has no tokenizer; give --tokenizer "
                                "tokenizer.json or the term as ids:ID,ID,...")
            try:
                ids = tuple(tokenizer.encode(text, add_special_tokens=False).ids)
            except Exception:  # tokenizers raises TypeError/Exception on text it cannot take (lone surrogates)
                ids = ()
            if not ids or tokenizer.decode(list(ids), skip_special_tokens=False) != text:
                raise UserError(f"term {text!r} cannot be encoded by the data's tokenizer (it does not decode "
                                "back to the same text); use characters the tokenizer knows, or give ids")
            if text.isascii() and text.isdigit() and len(text) > MAX_DIGITS:
                raise UserError(f"number term {text!r} has {len(text)} digits; at most {MAX_DIGITS} are supported")
            terms.append(Term(text, ids))
    if not terms:
        raise UserError("no terms given; e.g. --terms 0..99")
    labels = [t.label for t in terms]
    if len(set(labels)) != len(labels):
        dup = next(x for x in labels if labels.count(x) > 1)
        raise UserError(f"term {dup!r} is given twice; give each term once")
    return terms


# ---- the token-level counter ---------------------------------------------------------------------


@dataclass(frozen=True)
class DigitTables:
    """Per token id: is it a digit token, has it a leading space, its digit count and value."""

    digit: np.ndarray  # bool (vocab,)
    space: np.ndarray  # bool (vocab,)
    length: np.ndarray  # int64 (vocab,), 0 for other tokens
    value: np.ndarray  # int64 (vocab,)


def digit_tables(tokenizer, vocab_size: int | None = None) -> DigitTables:
    """Read the vocabulary once: which ids spell ``[ ]?[0-9]+`` (as their decoded text)."""
    n = max(tokenizer.get_vocab_size(with_added_tokens=True), vocab_size or 0)
    digit, space = np.zeros(n, bool), np.zeros(n, bool)
    length, value = np.zeros(n, np.int64), np.zeros(n, np.int64)
    pattern = re.compile(r"( ?)([0-9]+)")
    for i in range(tokenizer.get_vocab_size(with_added_tokens=True)):
        m = pattern.fullmatch(tokenizer.decode([i], skip_special_tokens=False))
        if m and len(m.group(2)) <= MAX_DIGITS:  # longer digit tokens cannot equal a term: not needed
            digit[i], space[i] = True, bool(m.group(1))
            length[i], value[i] = len(m.group(2)), int(m.group(2))
    return DigitTables(digit, space, length, value)


LOOKUP_CHUNK = 1 << 16  # tokens per table lookup: numpy widens the ids to 64-bit indices first, kept in cache


def _lookup(table: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """`table[ids]`, in chunks whose 64-bit index temporaries stay in the CPU cache (half the time
    of one lookup over millions of tokens)."""
    out = np.empty(ids.shape, table.dtype)
    for a in range(0, len(ids), LOOKUP_CHUNK):
        np.take(table, ids[a : a + LOOKUP_CHUNK], out=out[a : a + LOOKUP_CHUNK])
    return out


def count_numbers(rows: np.ndarray, tables: DigitTables, terms: Sequence[str]) -> np.ndarray:
    """Counts (R, len(terms)) of the digit runs of each row of `rows` (R, L) that spell each number term.

    Only the digit tokens (a small share of text) are touched after one table lookup.
    """
    R, L = rows.shape
    if not len(terms):
        return np.zeros((R, 0), np.int64)
    flat = rows.reshape(-1)
    pos = np.flatnonzero(_lookup(tables.digit, flat))
    if not len(pos):
        return np.zeros((R, len(terms)), np.int64)
    tok = flat[pos]
    follows = np.zeros(len(pos), bool)
    follows[1:] = (pos[1:] == pos[:-1] + 1) & (pos[1:] % L != 0)  # same item, previous token a digit token
    start = np.take(tables.space, tok) | ~follows
    first = np.flatnonzero(start)  # first digit token of each run
    dlen = np.take(tables.length, tok)
    run_len = np.add.reduceat(dlen, first)
    keys = np.array([int(t) * 32 + len(t) for t in terms], np.int64)
    order = np.argsort(keys)
    longest = max(len(t) for t in terms)
    if len(first) == len(pos):  # every run is one token: its value is the token's
        value = np.take(tables.value, tok)
    else:
        run = np.cumsum(start) - 1  # run id of each digit token
        cum = np.cumsum(dlen)
        after = run_len[run] - (cum - (cum[first] - dlen[first])[run])  # digits after this token in its run
        pow10 = 10 ** np.minimum(after, MAX_DIGITS)
        value = np.add.reduceat(np.take(tables.value, tok) * pow10, first)  # wraps for long runs: never a key
    run_key = np.where(run_len <= longest, value * 32 + run_len, -1)
    if keys.max() < DENSE_KEYS:  # small numbers (0..99: keys below 3200): one table lookup per run
        lookup = np.full(int(keys.max()) + 2, -1, np.int64)  # the last slot (-1) takes every non-key
        lookup[keys] = np.arange(len(keys))
        term_idx = np.take(lookup, np.where((run_key >= 0) & (run_key <= keys.max()), run_key, -1))
        hit = term_idx >= 0
        term_idx = term_idx[hit]
    else:
        sorted_keys = keys[order]
        at = np.minimum(np.searchsorted(sorted_keys, run_key), len(keys) - 1)
        hit = sorted_keys[at] == run_key
        term_idx = order[at[hit]]
    row = pos[first[hit]] // L
    return np.bincount(row * len(terms) + term_idx, minlength=R * len(terms)).reshape(R, len(terms))


def count_sequences(rows: np.ndarray, terms: Sequence[tuple[int, ...]]) -> np.ndarray:
    """Exact occurrences of each token-id sequence inside each row (R, L): counts (R, len(terms))."""
    R, L = rows.shape
    out = np.zeros((R, len(terms)), np.int64)
    for j, ids in enumerate(terms):
        m = len(ids)
        if m > L:
            continue
        r, c = np.nonzero(rows[:, : L - m + 1] == ids[0])
        for k in range(1, m):
            keep = rows[r, c + k] == ids[k]
            r, c = r[keep], c[keep]
        out[:, j] = np.bincount(r, minlength=R)
    return out


# ---- Pythia's text rule --------------------------------------------------------------------------


def pythia_clean_up(text: str) -> str:
    """transformers' `clean_up_tokenization`, which `batch_decode` applied in Pythia's script."""
    for a, b in _CLEANUP:
        text = text.replace(a, b)
    return text


def pythia_window_numbers(text: str) -> Counter:
    """Pythia's count of one decoded item: every number of every window (" " is put in front)."""
    counts: Counter = Counter()
    for m in PYTHIA_WINDOW.finditer(" " + text):
        for piece in PYTHIA_NUMBER.findall(m.group(1)):
            counts[str(int(piece))] += 1
    return counts


def count_pythia(rows: np.ndarray, tokenizer, terms: Sequence[str], clean_up: bool = True) -> np.ndarray:
    """Pythia's text-rule counts of each number term in each row (R, L): (R, len(terms))."""
    out = np.zeros((len(rows), len(terms)), np.int64)
    index = {t: j for j, t in enumerate(terms)}
    texts = tokenizer.decode_batch(rows.astype(np.int64).tolist(), skip_special_tokens=False)
    for i, text in enumerate(texts):
        for key, n in pythia_window_numbers(pythia_clean_up(text) if clean_up else text).items():
            if key in index:
                out[i, index[key]] += n
    return out


# ---- one pass over the training order ------------------------------------------------------------


@dataclass(frozen=True)
class _Job:
    """Everything a worker needs to count one chunk of steps (picklable, no open files)."""

    prefix: str
    batch_size: int
    seed: int | None
    tokenizer: str | None
    definition: str
    numbers: tuple[str, ...]  # number terms (token rule) or every term (pythia rule)
    sequences: tuple[tuple[int, ...], ...]  # token-sequence terms (token rule)
    number_cols: tuple[int, ...]
    sequence_cols: tuple[int, ...]
    n_terms: int


@lru_cache(maxsize=4)
def _order(prefix: str, batch_size: int, seed: int | None):
    from .order import TrainingOrder

    return TrainingOrder(prefix, batch_size=batch_size, seed=seed)


@lru_cache(maxsize=2)
def _tokenizer_and_tables(path: str):
    from .build import load_tokenizer

    tok = load_tokenizer(path)
    return tok, digit_tables(tok)


def _read_rows(order, first: int, last: int) -> np.ndarray:
    """Tokens of steps first..last: read into memory rather than through the memory map, so that the
    pages of a pass over the whole file never pile up in the worker's resident memory."""
    view = order.batches(first, last)  # checks the steps and that the items lie back to back
    if order.permutation is not None:
        return view  # a gathered copy already
    ds = order.dataset
    start = int(ds.pointers[first * order.batch_size])
    return np.fromfile(ds.bin_path, dtype=ds.dtype, count=view.size, offset=start).reshape(view.shape)


def count_steps(job: _Job, first: int, last: int) -> np.ndarray:
    """Counts (n_terms, last - first + 1) of steps first..last inclusive, in blocks of BLOCK_TOKENS."""
    order = _order(job.prefix, job.batch_size, job.seed)
    tok, tables = _tokenizer_and_tables(job.tokenizer) if job.tokenizer else (None, None)
    out = np.zeros((job.n_terms, last - first + 1), np.int64)
    per_block = max(1, BLOCK_TOKENS // (order.batch_size * order.item_len))
    for a in range(first, last + 1, per_block):
        b = min(a + per_block, last + 1) - 1
        rows = _read_rows(order, a, b)
        per_row = np.zeros((len(rows), job.n_terms), np.int64)
        if job.definition == "pythia":
            per_row[:, list(job.number_cols)] = count_pythia(rows, tok, job.numbers)
        else:
            if job.numbers:
                per_row[:, list(job.number_cols)] = count_numbers(rows, tables, job.numbers)
            if job.sequences:
                per_row[:, list(job.sequence_cols)] = count_sequences(rows, job.sequences)
        # a block holds whole steps: (steps x batch) rows summed per step
        out[:, a - first : b - first + 1] = per_row.reshape(b - a + 1, order.batch_size, job.n_terms).sum(1).T
    return out


def _count_chunk(args: tuple[_Job, int, int, int]) -> tuple[int, np.ndarray]:
    job, ci, first, last = args
    return ci, count_steps(job, first, last)


@dataclass
class Counts:
    """Counts of `terms` at every step of a training order (`count`: (term, step) int64)."""

    terms: list[str]
    count: np.ndarray
    definition: str
    batch_size: int
    seq_len: int

    @property
    def num_steps(self) -> int:
        return self.count.shape[1]

    def count_seen(self, step: int) -> np.ndarray:
        """(term,) occurrences in steps 0..step-1: what checkpoint `step{step}` has seen."""
        if not 0 <= step <= self.num_steps:
            raise UserError(f"checkpoint step {step} out of range 0..{self.num_steps}")
        return self.count[:, :step].sum(axis=1)

    def table(self, steps: Sequence[int] | None = None, suite: str = "") -> "pd.DataFrame":  # noqa: F821
        """Tidy rows (term, step, count, count_seen) at `steps` (default: every step and the end).

        Counts belong to the training order, which every model of a suite shares: `model` is ""
        and `params` 0. `count` is 0 at a step past the data's last (a checkpoint after training).
        """
        import pandas as pd

        steps = list(range(self.num_steps + 1)) if steps is None else sorted(set(int(s) for s in steps))
        for s in steps:
            if not 0 <= s <= self.num_steps:
                raise UserError(f"checkpoint step {s} is past the data: it has {self.num_steps} steps "
                                f"of batch {self.batch_size}")
        cum = np.concatenate([np.zeros((len(self.terms), 1), np.int64), np.cumsum(self.count, axis=1)], axis=1)
        padded = np.concatenate([self.count, np.zeros((len(self.terms), 1), np.int64)], axis=1)
        s = np.array(steps, np.int64)
        n_t, n_s = len(self.terms), len(s)
        return pd.DataFrame({
            "suite": suite, "model": "", "params": 0,
            "step": np.tile(s, n_t), "tokens_seen": np.tile(s * self.batch_size * self.seq_len, n_t),
            "term": np.repeat(np.array(self.terms, dtype=object), n_s),
            "count": padded[:, s].reshape(-1), "count_seen": cum[:, s].reshape(-1),
            "definition": self.definition,
        })


def _open_store(path: Path, terms: list[str], identity: dict, n_steps: int, chunk: int):
    import zarr

    attrs = {"format": STORE_FORMAT, "terms": terms, "identity": identity, "chunk_steps": chunk}
    if path.exists():
        try:
            group = zarr.open_group(path, mode="r+")
            same = all(group.attrs.get(k) == v for k, v in attrs.items())
        except Exception:  # not a zarr group, or a damaged one
            same = False
        if not same:
            raise UserError(f"{path} holds counts of another run (other data, terms, definition or batch size); "
                            "use another store path or delete it")
        return group
    group = zarr.open_group(path, mode="w")
    group.attrs.update(attrs)
    group.create_array("count", shape=(len(terms), n_steps), chunks=(len(terms), chunk), dtype="int64",
                       fill_value=0, dimension_names=["term", "step"])
    n_chunks = -(-n_steps // chunk)
    group.create_array("done", shape=(n_chunks,), chunks=(n_chunks,), dtype="bool", fill_value=False)
    return group


def count_terms(prefix: str | os.PathLike, terms: Sequence[Term], batch_size: int, *,
                definition: str = "token", tokenizer: str | os.PathLike | None = None, seed: int | None = None,
                store: str | os.PathLike | None = None, workers: int | None = None,
                chunk_steps: int | None = None, max_chunks: int | None = None, progress: bool = False,
                client=None) -> Counts:
    """Count `terms` at every step of the training order of `prefix` (batch `batch_size`).

    With `store` (a zarr folder), chunks already done there are reused and each finished chunk is
    written at once (resumable); `max_chunks` stops after that many new chunks (a time-boxed run:
    the result then holds only what is done, unfinished steps read 0). `workers` processes share
    the chunks (default: every core); with a Dask `client` (`pythia_suite.engines.dask_client`) the
    chunks run on its cluster instead, each written to the store as it arrives. `tokenizer` is
    needed for number terms and the pythia rule.
    """
    from tqdm.auto import tqdm

    if definition not in DEFINITIONS:
        raise UserError(f"unknown counting definition {definition!r}; choose from {', '.join(DEFINITIONS)}")
    order = _order(str(prefix), int(batch_size), seed)
    terms = list(terms)
    numbers = [j for j, t in enumerate(terms) if t.is_number]
    others = [j for j, t in enumerate(terms) if not t.is_number]
    if definition == "pythia" and others:
        raise UserError(f"the pythia rule counts numbers only; term {terms[others[0]].label!r} is not a number")
    if numbers and tokenizer is None:
        raise UserError("number terms need the data's tokenizer to read digit tokens; give --tokenizer tokenizer.json")
    # absolute paths: a worker of a cluster may run in another folder
    job = _Job(os.path.abspath(prefix), order.batch_size, seed, os.path.abspath(tokenizer) if tokenizer else None, definition,
               tuple(terms[j].text for j in numbers), tuple(terms[j].ids for j in others),
               tuple(numbers), tuple(others), len(terms))
    n_steps = order.num_steps
    workers = max(1, workers or os.cpu_count() or 1)
    chunk = chunk_steps or max(1, min(MAX_CHUNK_STEPS, -(-n_steps // (4 * workers))))
    spans = [(a, min(a + chunk, n_steps) - 1) for a in range(0, n_steps, chunk)]
    labels = [t.label for t in terms]
    identity = {"data": order.dataset.prefix.name, "n_items": len(order.dataset), "item_len": order.item_len,
                "batch_size": order.batch_size, "data_seed": seed, "definition": definition,
                "ids": [list(t.ids) for t in terms]}
    # a second run on the same store is refused while this one writes it
    with store_lock(store) if store is not None else nullcontext():
        group = _open_store(Path(store), labels, identity, n_steps, chunk) if store is not None else None
        count = group["count"][:] if group is not None else np.zeros((len(terms), n_steps), np.int64)
        done = group["done"][:] if group is not None else np.zeros(len(spans), bool)
        todo = [ci for ci in range(len(spans)) if not done[ci]][: max_chunks]
        tasks = [(job, ci, *spans[ci]) for ci in todo]
        bar = tqdm(total=len(tasks), desc=f"counts ({definition})", unit="chunk", disable=None if progress else True,
                   leave=False)

        def store_chunk(ci: int, block: np.ndarray) -> None:
            a, b = spans[ci]
            count[:, a : b + 1] = block
            if group is not None:
                group["count"][:, a : b + 1] = block
                group["done"][ci] = True  # last: a chunk counts only once its data is written
            bar.update(1)

        if client is not None:
            from ..engines import run_tasks

            run_tasks(client, _count_chunk, tasks, progress=lambda result: store_chunk(*result))
        elif workers == 1 or len(tasks) <= 1:
            for t in tasks:
                store_chunk(*_count_chunk(t))
        else:
            import multiprocessing as mp

            # fork where there is one: no re-import of the caller's script; workers use numpy and tokenizers
            # only, never torch, so torch thread pools in the parent do not matter
            ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
            with ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=ctx) as pool:
                for ci, block in pool.map(_count_chunk, tasks):
                    store_chunk(ci, block)
        bar.close()
    return Counts(labels, count, definition, order.batch_size, order.seq_len)


def write_counts_table(counts: Counts, path: str | os.PathLike, steps: Sequence[int] | None = None,
                       suite: str = "", config: dict | None = None) -> Path:
    """The tidy table (schema ``term_counts``) at `steps` as Parquet."""
    from ..tables import write_table

    return write_table(counts.table(steps, suite), path, "term_counts", config=config)


def data_tokenizer(prefix: str | os.PathLike, given: str | os.PathLike | None = None) -> Path | None:
    """The tokenizer of a dataset: `given`, else the one its sidecar names, else None."""
    from .indexed import split_prefix
    from .sidecar import read_sidecar

    if given is not None:
        p = Path(given)
        if not p.is_file():
            raise UserError(f"tokenizer not found: {p} (expected a tokenizers `tokenizer.json`)")
        return p
    meta = read_sidecar(prefix) or {}
    if not meta.get("tokenizer"):
        return None
    p = split_prefix(prefix).parent / meta["tokenizer"]
    if not p.is_file():
        raise UserError(f"the sidecar of {prefix} names tokenizer {meta['tokenizer']!r}, but {p} is missing")
    return p


def data_vocab_size(prefix: str | os.PathLike, tokenizer=None) -> int:
    """Ids a term may use: the tokenizer's vocabulary, else the sidecar's, else what the dtype holds."""
    from .indexed import IndexedDataset
    from .sidecar import read_sidecar

    if tokenizer is not None:
        return tokenizer.get_vocab_size(with_added_tokens=True)
    meta = read_sidecar(prefix) or {}
    if isinstance(meta.get("vocab_size"), int):
        return meta["vocab_size"]
    return int(np.iinfo(IndexedDataset(prefix).dtype).max) + 1


__all__ = ["Counts", "DEFINITIONS", "DigitTables", "PYTHIA_WINDOW", "Term", "count_numbers",
           "count_pythia", "count_sequences", "count_terms", "data_tokenizer", "data_vocab_size", "digit_tables", "parse_terms",
           "pythia_clean_up", "pythia_window_numbers", "write_counts_table"]
