"""Build a preshuffled training dataset from a text corpus (`pythia-suite data build`).

The recipe, in the order the bytes flow:

1. Documents are streamed from the inputs (`corpus.iter_documents`) and tokenized in batches by
   the Rust tokenizer on all cores (`encode_batch_fast`, in a background thread so reading and
   converting overlap with tokenizing). An end-of-document token follows every document.
2. The token stream is appended to a temporary file beside the output: memory stays bounded
   whatever the corpus size.
3. The stream is cut into ``n = tokens // (seq_len + 1)`` items of ``seq_len + 1`` tokens (the
   trailing remainder is dropped and counted in the sidecar), exactly as Pythia packs the Pile.
4. Item indices are permuted once by ``numpy.random.Generator(PCG64(seed)).permutation(n)`` and
   the items are written in that order: ``PREFIX.bin`` is in training order ("preshuffled").
5. ``PREFIX.idx`` and the sidecar ``PREFIX.json`` (sizes, dtype, tokenizer and file checksums)
   are written; all outputs appear together by rename, or not at all.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from .. import __version__
from ..errors import UserError
from ..fileio import atomic_outputs, refuse_existing, sha256_file, temp_name
from .corpus import check_inputs, iter_documents
from .indexed import check_out_prefix, write_fixed_index
from .sidecar import SIDECAR_FORMAT, write_sidecar

EOD_TOKEN = "<|endoftext|>"
SPECIAL_TOKENS = [EOD_TOKEN, "<|padding|>"]  # ids 0 and 1, as in Pythia's 20B tokenizer
BATCH_CHARS = 1 << 20  # characters handed to the tokenizer per call
WRITE_BYTES = 64 << 20  # bytes of items gathered per write when shuffling


@dataclass
class BuildResult:
    prefix: Path
    n_sequences: int
    n_documents: int
    n_tokens: int
    dropped_tokens: int
    sidecar: dict = field(repr=False)


def load_tokenizer(path: str | os.PathLike):
    from tokenizers import Tokenizer

    p = Path(path)
    if not p.is_file():
        raise UserError(f"tokenizer not found: {p} (expected a tokenizers `tokenizer.json`)")
    try:
        return Tokenizer.from_file(str(p))
    except Exception as e:  # tokenizers raises a bare Exception on malformed files
        raise UserError(f"{p} is not a tokenizers tokenizer.json ({e})") from None


def train_tokenizer(docs: Iterator[str], vocab_size: int):
    """A byte-level BPE tokenizer (GPT-2 / Pythia style) trained on the corpus."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if vocab_size < 257 + len(SPECIAL_TOKENS):
        raise UserError(f"--vocab-size {vocab_size} is too small: byte-level BPE needs at least {257 + len(SPECIAL_TOKENS)}")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(docs, trainer)
    return tok


def token_dtype(vocab_size: int, requested: str | None) -> np.dtype:
    """uint16 when the vocabulary fits (Pythia's choice), else int32; a requested dtype is checked."""
    if requested is None:
        return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.int32)
    try:
        dt = np.dtype(requested)
    except TypeError:
        raise UserError(f"unknown dtype {requested!r}; use uint8, uint16, int32 or int64") from None
    if dt.kind not in "iu":
        raise UserError(f"token dtype must be an integer type, got {dt}")
    if vocab_size - 1 > np.iinfo(dt).max:
        raise UserError(
            f"the tokenizer has {vocab_size} tokens but {dt} holds ids up to {np.iinfo(dt).max}; "
            f"use {'uint16' if vocab_size <= 1 << 16 else 'int32'} or a larger type"
        )
    return dt


class _Counted:
    """An iterator that counts what passes through it (documents, before tokenization)."""

    def __init__(self, it: Iterator[str]):
        self.it, self.n = it, 0

    def __iter__(self):
        for x in self.it:
            self.n += 1
            yield x


def _batches(docs: Iterator[str]) -> Iterator[list[str]]:
    batch: list[str] = []
    chars = 0
    for doc in docs:
        batch.append(doc)
        chars += len(doc)
        if chars >= BATCH_CHARS:
            yield batch
            batch, chars = [], 0
    if batch:
        yield batch


def tokenize_documents(tokenizer, docs: Iterator[str], eod_id: int, dtype: np.dtype) -> Iterator[np.ndarray]:
    """Flat token chunks, each document followed by `eod_id`, in document order.

    A background thread feeds `encode_batch_fast` (which releases the GIL and uses every core)
    one batch ahead, while this thread turns the previous batch into an array.
    """
    encoded: queue.Queue = queue.Queue(maxsize=2)
    stop = threading.Event()

    def producer() -> None:
        try:
            for batch in _batches(docs):
                if stop.is_set():
                    return
                encoded.put(tokenizer.encode_batch_fast(batch, add_special_tokens=False))
            encoded.put(None)
        except BaseException as e:  # re-raised in the consumer
            encoded.put(e)

    thread = threading.Thread(target=producer, daemon=True)
    thread.start()
    try:
        while (item := encoded.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            total = sum(len(e.ids) for e in item) + len(item)
            flat = np.empty(total, dtype)
            pos = 0
            for e in item:
                ids = e.ids
                flat[pos : pos + len(ids)] = ids
                pos += len(ids)
                flat[pos] = eod_id
                pos += 1
            yield flat
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                encoded.get(timeout=0.1)
            except queue.Empty:
                pass


def build(
    inputs: list[str | os.PathLike],
    out: str | os.PathLike,
    seq_len: int,
    tokenizer: str | os.PathLike | None = None,
    vocab_size: int | None = None,
    seed: int = 1234,
    dtype: str | None = None,
    text_field: str = "text",
    eod_token: str = EOD_TOKEN,
    progress: bool = False,
    force: bool = False,
    batch_size: int | None = None,
) -> BuildResult:
    """Tokenize, pack and shuffle `inputs` into ``out.bin``, ``out.idx`` and ``out.json``.

    Exactly one of `tokenizer` (a tokenizer.json) and `vocab_size` (train a byte-level BPE,
    saved as ``out.tokenizer.json``) is given. `batch_size`, the sequences per step the data will
    be trained with, is recorded in the sidecar, so `TrainingOrder(prefix)` and `data batch` use it.
    """
    if (tokenizer is None) == (vocab_size is None):
        raise UserError("give exactly one of --tokenizer tokenizer.json or --vocab-size V")
    if not isinstance(seq_len, int) or seq_len < 1:
        raise UserError(f"--seq-len must be a positive integer, got {seq_len!r}")
    if seed < 0:
        raise UserError(f"--seed must be non-negative, got {seed}")
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise UserError(f"--batch-size must be a positive integer, got {batch_size!r}")
    paths = check_inputs(inputs)
    prefix = check_out_prefix(out)
    made_folder = not prefix.parent.exists()
    prefix.parent.mkdir(parents=True, exist_ok=True)  # the token stream is written beside the output

    if tokenizer is not None:
        tok = load_tokenizer(tokenizer)
    else:
        if not any(True for _ in iter_documents(paths, text_field)):
            raise UserError(f"the corpus is empty: no text in {', '.join(map(str, paths))}")
        tok = train_tokenizer(iter_documents(paths, text_field), vocab_size)
    vocab = tok.get_vocab_size(with_added_tokens=True)
    eod_id = tok.token_to_id(eod_token)
    if eod_id is None:
        raise UserError(f"the tokenizer has no end-of-document token {eod_token!r}; name one with --eod-token")
    dt = token_dtype(vocab, dtype)
    item_len = seq_len + 1

    suffix = lambda ext: prefix.with_name(prefix.name + ext)  # noqa: E731
    outputs = [suffix(".bin"), suffix(".idx"), suffix(".json")]
    if tokenizer is None:
        outputs.append(suffix(".tokenizer.json"))
    refuse_existing(outputs, force)
    stream_path = temp_name(suffix(".stream"))
    try:
        # 1-2. tokenize into a flat stream on disk
        n_tokens = 0
        counted = _Counted(iter_documents(paths, text_field))
        bar = _progress(progress, "tokenize", "tok")
        with open(stream_path, "wb") as f:
            for chunk in tokenize_documents(tok, counted, eod_id, dt):
                f.write(chunk.tobytes())
                n_tokens += len(chunk)
                bar.update(len(chunk))
        bar.close()
        n_docs = counted.n
        if n_docs == 0:
            raise UserError(f"the corpus is empty: no text in {', '.join(map(str, paths))}")
        n = n_tokens // item_len
        if n == 0:
            raise UserError(
                f"the corpus has {n_tokens} tokens, fewer than one item of --seq-len {seq_len} + 1; "
                "use a smaller --seq-len or more text"
            )
        if batch_size is not None and n < batch_size:
            raise UserError(f"the corpus makes {n} items of --seq-len {seq_len} + 1, fewer than one batch of "
                            f"--batch-size {batch_size}; use a smaller --batch-size or --seq-len, or more text")

        with atomic_outputs(*outputs) as tmp:
            # 3-4. gather items in permuted order
            stream = np.memmap(stream_path, dt, "r", shape=(n, item_len))
            perm = np.random.Generator(np.random.PCG64(seed)).permutation(n)
            per_write = max(1, WRITE_BYTES // (item_len * dt.itemsize))
            bin_hash = hashlib.sha256()
            bar = _progress(progress, "shuffle", "seq", total=n)
            with open(tmp[0], "wb") as f:
                for a in range(0, n, per_write):
                    block = stream[perm[a : a + per_write]].tobytes()
                    bin_hash.update(block)
                    f.write(block)
                    bar.update(min(per_write, n - a))
            bar.close()
            del stream
            # 5. index, tokenizer, sidecar
            write_fixed_index(tmp[1], dt, n, item_len)
            if tokenizer is None:
                tok.save(str(tmp[3]))
                tok_file, tok_sha = outputs[3].name, sha256_file(tmp[3])
            else:
                # relative to the sidecar's folder, so a dataset and its tokenizer can move together
                tok_file, tok_sha = os.path.relpath(Path(tokenizer).resolve(), prefix.parent.resolve()), sha256_file(tokenizer)
            sidecar = {
                "format": SIDECAR_FORMAT,
                "seq_len": seq_len,
                "item_len": item_len,
                "n_sequences": n,
                "dtype": dt.name,
                "vocab_size": vocab,
                "eod_id": eod_id,
                "tokenizer": tok_file,
                "tokenizer_sha256": tok_sha,
                "seed": seed,
                **({"batch_size": batch_size} if batch_size is not None else {}),
                "shuffle": "numpy.random.Generator(PCG64(seed)).permutation(n_sequences)",
                "n_documents": n_docs,
                "n_tokens": n_tokens,
                "dropped_tokens": n_tokens - n * item_len,
                "inputs": [str(p) for p in paths],
                "bin_sha256": bin_hash.hexdigest(),
                "idx_sha256": sha256_file(tmp[1]),
                "pythia_suite_version": __version__,
            }
            write_sidecar(tmp[2], sidecar)
    finally:
        if stream_path.exists():
            stream_path.unlink()
        if made_folder and prefix.parent.exists() and not any(prefix.parent.iterdir()):
            prefix.parent.rmdir()  # a failed build leaves nothing behind
    return BuildResult(prefix, n, n_docs, n_tokens, n_tokens - n * item_len, sidecar)


def _progress(enabled: bool, desc: str, unit: str, total: int | None = None):
    from ..progress import progress_bar

    # a bar on a terminal, occasional lines in a log (pythia_suite.progress)
    return progress_bar(total=total, desc=desc, unit=unit, enabled=enabled, unit_scale=True)

