"""The training order: "the batch at step N" as one slice of a preshuffled dataset.

A preshuffled dataset stores its items in the order they are trained on, each item
``seq_len + 1`` tokens (the +1 is the target of the last position: Pythia's 2049 = 2048 + 1).
With batch size B, step N trains on items ``[N*B, (N+1)*B)``, and the checkpoint saved after
step N-1, called ``stepN``, has seen items ``[0, N*B)``: ``N * B * seq_len`` tokens.

If the number of items is not a multiple of B, the final partial batch is dropped: it is never a
step (Pythia's trainer does the same), and asking for it is an error that names the last step.

An optional `seed` reorders the items once more, by ``Generator(PCG64(seed)).permutation(n)``
over all n items (then cut to whole batches): another data order over the same file, as for extra
seeds in PolyPythias. Without it, the file's own order is the training order.
"""

from __future__ import annotations

import hashlib
import os
import struct
import warnings
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..errors import UserError
from .indexed import IndexedDataset
from .sidecar import read_sidecar

if TYPE_CHECKING:
    import pandas as pd

PYTHIA_BATCH_SIZE = 1024
FINGERPRINT_TAG = b"pythia-suite/batch-fingerprint/v1\x00"


def batch_fingerprint(tokens: np.ndarray) -> str:
    """A stable hex sha256 of a batch of tokens, independent of the dtype they are stored in.

    Algorithm (v1): sha256 over ``FINGERPRINT_TAG``, then the shape as two little-endian uint64
    (rows, columns), then every token as a little-endian int64, row-major. Anyone can recompute it
    from a replayed batch with numpy and hashlib alone.
    """
    tokens = np.asarray(tokens)
    if tokens.ndim != 2:
        raise ValueError(f"a batch is 2-D (rows, tokens); got shape {tokens.shape}")
    h = hashlib.sha256(FINGERPRINT_TAG)
    h.update(struct.pack("<QQ", *tokens.shape))
    h.update(np.ascontiguousarray(tokens, dtype="<i8").tobytes())
    return h.hexdigest()


class TrainingOrder:
    """Fixed-size items of a preshuffled dataset grouped into steps of `batch_size` items.

    Every method is O(batch size) whatever the step: a batch is a view of the memory-mapped
    .bin, checked against its index entries before it is returned.

    Without `batch_size`, the sidecar's ``batch_size`` is used if it records one; Pythia-shaped
    data without a sidecar (items of 2049 tokens) gets Pythia's 1024; anything else gets 1024 with
    a warning, since a wrong batch size silently shifts every step. `Suite.order()` passes the
    batch size a suite was trained with. `tokenizer` (a tokenizer.json; default: the sidecar's)
    is used by `text`, `decode` and `find`.
    """

    def __init__(self, dataset: IndexedDataset | str | os.PathLike, batch_size: int | None = None,
                 seed: int | None = None, tokenizer: str | os.PathLike | None = None):
        self.dataset = dataset if isinstance(dataset, IndexedDataset) else IndexedDataset(dataset)
        self._tokenizer_path = Path(tokenizer) if tokenizer is not None else None
        if batch_size is None:
            batch_size = self._default_batch_size()
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise UserError(f"batch size must be a positive integer, got {batch_size!r}")
        self.batch_size = int(batch_size)
        ds = self.dataset
        if len(ds) == 0:
            raise UserError(f"{ds.prefix} has no items; a training order needs at least one batch")
        self.item_len = int(ds.sizes[0])
        if int(ds.sizes[-1]) != self.item_len:
            raise UserError(
                f"{ds.prefix} has items of different lengths ({self.item_len} and {int(ds.sizes[-1])}); "
                "a training order needs fixed-length items (build it with `pythia-suite data build`)"
            )
        self.num_steps = len(ds) // self.batch_size
        if self.num_steps == 0:
            raise UserError(
                f"{ds.prefix} has {len(ds)} items, fewer than one batch of {self.batch_size}; "
                "use a smaller --batch-size"
            )
        self.seed = seed
        self.permutation: np.ndarray | None = None
        if seed is not None:
            self._grid  # a permuted gather needs every item in place, not just one batch's
            self.permutation = np.random.Generator(np.random.PCG64(seed)).permutation(len(ds))

    @cached_property
    def sidecar(self) -> dict | None:
        """The dataset's ``PREFIX.json`` (None for files without one, such as Pythia's)."""
        return read_sidecar(self.dataset.prefix)

    def _default_batch_size(self) -> int:
        meta = self.sidecar or {}
        if meta.get("batch_size"):
            return int(meta["batch_size"])
        item_len = int(self.dataset.sizes[0]) if len(self.dataset) else 0
        if self.sidecar is None and item_len == 2049:
            return PYTHIA_BATCH_SIZE  # the real preshuffled Pythia files
        warnings.warn(f"{self.dataset.prefix}: no batch size given and none recorded; assuming Pythia's "
                      f"{PYTHIA_BATCH_SIZE}. Pass the batch size the data was trained with, or open the order "
                      "as Suite.load(SUITE).order()", UserWarning, stacklevel=3)
        return PYTHIA_BATCH_SIZE

    @property
    def seq_len(self) -> int:
        """Context length: tokens per item minus the one extra target token."""
        return self.item_len - 1

    @property
    def last_step(self) -> int:
        return self.num_steps - 1

    @property
    def dropped_items(self) -> int:
        """Items after the last full batch, never part of any step."""
        return len(self.dataset) - self.num_steps * self.batch_size

    def _check_step(self, step: int, what: str = "step") -> int:
        if not isinstance(step, (int, np.integer)) or isinstance(step, bool):
            raise UserError(f"{what} must be an integer, got {step!r}")
        if step < 0:
            raise UserError(f"{what} {step} is negative; steps run from 0 to {self.last_step}")
        if step > self.last_step:
            tail = f"; the final partial batch of {self.dropped_items} items is not a step" if self.dropped_items else ""
            raise UserError(
                f"{what} {step} is past the end: the last step is {self.last_step} "
                f"({len(self.dataset)} items, batch size {self.batch_size}{tail})"
            )
        return int(step)

    def _rows(self, first: int, count: int) -> np.ndarray:
        """Positions [first, first+count) of the order as (count, item_len) tokens: a read-only view
        of the .bin, or a gathered copy when a `seed` reorders the items."""
        ds = self.dataset
        if self.permutation is not None:
            return self._grid[self.permutation[first : first + count]]
        sizes = ds.sizes[first : first + count]
        pointers = ds.pointers[first : first + count]
        stride = self.item_len * ds.dtype.itemsize
        start = int(pointers[0])
        if (sizes != self.item_len).any() or (pointers != start + stride * np.arange(count, dtype=np.int64)).any():
            raise UserError(
                f"{ds.prefix}: items {first}..{first + count - 1} are not {self.item_len}-token items stored "
                "back to back; this is not a preshuffled dataset"
            )
        offset = start // ds.dtype.itemsize
        return ds.tokens[offset : offset + count * self.item_len].reshape(count, self.item_len)

    def batch(self, step: int) -> np.ndarray:
        """Tokens trained on at `step`: shape (batch_size, seq_len + 1), a read-only view."""
        step = self._check_step(step)
        return self._rows(step * self.batch_size, self.batch_size)

    def batches(self, start: int, end: int) -> np.ndarray:
        """Steps `start` through `end` inclusive: shape ((end-start+1)*batch_size, seq_len + 1)."""
        start = self._check_step(start, "start step")
        end = self._check_step(end, "end step")
        if end < start:
            raise UserError(f"end step {end} is before start step {start} (the end step is inclusive)")
        return self._rows(start * self.batch_size, (end - start + 1) * self.batch_size)

    def sequence(self, i: int) -> np.ndarray:
        """Item `i` in training order (a read-only view of seq_len + 1 tokens)."""
        n = self.num_steps * self.batch_size
        if not isinstance(i, (int, np.integer)) or not 0 <= i < n:
            raise UserError(f"sequence {i!r} out of range: trained sequences are 0..{n - 1}")
        return self._rows(int(i), 1)[0]

    def sequences(self, indices) -> np.ndarray:
        """Sequences at positions `indices` of the order, gathered: (len(indices), seq_len + 1)."""
        idx = np.asarray(indices, dtype=np.int64)
        n = self.num_steps * self.batch_size
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise UserError(f"sequence indices must lie in 0..{n - 1}; got {idx.min()}..{idx.max()}")
        if idx.size and self.permutation is None and np.array_equal(idx, np.arange(idx[0], idx[0] + len(idx))):
            return np.array(self._rows(int(idx[0]), len(idx)))  # one contiguous slice
        return self._grid[idx if self.permutation is None else self.permutation[idx]]

    @cached_property
    def _grid(self) -> np.ndarray:
        """The whole file as (items, item_len), after checking that every item is in place."""
        ds = self.dataset
        ds.check_pointers()
        if (ds.sizes != self.item_len).any():
            raise UserError(f"{ds.prefix} has items of different lengths; this is not a preshuffled dataset")
        return ds.tokens.reshape(len(ds), self.item_len)

    def item_index(self, i: int) -> int:
        """Index in the file of the i-th sequence of the order."""
        self.sequence(i)  # range check
        return int(i) if self.permutation is None else int(self.permutation[i])

    def step_of(self, i: int) -> int:
        """The step at which sequence `i` is trained on."""
        self.sequence(i)  # range check
        return int(i) // self.batch_size

    def sequences_seen(self, step: int) -> int:
        """Items seen by checkpoint `stepN` (trained on steps 0..N-1)."""
        if step < 0 or step > self.num_steps:
            raise UserError(f"checkpoint step {step} out of range 0..{self.num_steps}")
        return int(step) * self.batch_size

    def tokens_seen(self, step: int) -> int:
        """Context tokens seen by checkpoint `stepN`: N * batch_size * seq_len (Pythia: N * 2,097,152)."""
        return self.sequences_seen(step) * self.seq_len

    def fingerprint(self, step: int) -> str:
        """`batch_fingerprint` of the batch at `step`."""
        return batch_fingerprint(self.batch(step))

    def __len__(self) -> int:
        return self.num_steps

    # ---- text: the tokenizer one call away -------------------------------------------------------

    @property
    def tokenizer_path(self) -> Path | None:
        """The tokenizer.json given, else the one the sidecar names (relative to the data's folder)."""
        if self._tokenizer_path is not None:
            return self._tokenizer_path
        name = (self.sidecar or {}).get("tokenizer")
        if not name:
            return None
        path = Path(name)
        return path if path.is_absolute() else self.dataset.prefix.parent / path

    @cached_property
    def tokenizer(self):
        """The `tokenizers.Tokenizer` of the data."""
        from .build import load_tokenizer

        if self.tokenizer_path is None:
            raise UserError(f"{self.dataset.prefix} names no tokenizer (no sidecar with one); pass "
                            "tokenizer=path/to/tokenizer.json")
        return load_tokenizer(self.tokenizer_path)

    def decode(self, i: int) -> str:
        """Text of sequence `i` of the order (all seq_len + 1 tokens; special tokens kept)."""
        return self.tokenizer.decode(self.sequence(i).tolist(), skip_special_tokens=False)

    def text(self, step: int) -> list[str]:
        """Texts of the batch trained on at `step`, one string per sequence."""
        return self.tokenizer.decode_batch(self.batch(step).tolist(), skip_special_tokens=False)

    def encode(self, text: str) -> np.ndarray:
        """Token ids of `text` as the data's tokenizer cuts it (no special tokens added)."""
        return np.array(self.tokenizer.encode(text, add_special_tokens=False).ids, dtype=np.int64)

    def find(self, query: str | Sequence[int] | np.ndarray, limit: int | None = None,
             block: int = 4096) -> "pd.DataFrame":
        """Where a string (tokenized with the data's tokenizer) or a token sequence occurs in the
        trained sequences: one row per occurrence, columns ``sequence`` (position in the order),
        ``offset`` (first token within the item) and ``step``, in training order.

        Only whole occurrences inside one item are found (items are shuffled, so text that spans
        two items was never contiguous in training). BPE tokens depend on context: " word" and
        "word" differ. Reads every token once (O(tokens) time, `block` items in memory): fine for
        small to medium data, slow on the 300B-token Pile.
        """
        import pandas as pd

        q = self.encode(query) if isinstance(query, str) else np.asarray(query, dtype=np.int64).ravel()
        if q.size == 0:
            raise UserError("find needs a non-empty string or token sequence")
        k, L = len(q), self.item_len
        rows: list[tuple[int, int]] = []
        n = self.num_steps * self.batch_size
        if k <= L:
            for first in range(0, n, block):
                size = min(block, n - first)  # trained items only: the last partial batch is no step
                items = self._rows(first, size) if self.permutation is None else \
                    self._grid[self.permutation[first : first + size]]
                r, c = np.nonzero(items[:, : L - k + 1] == q[0])  # candidates by first token
                for j in range(1, k):
                    keep = items[r, c + j] == q[j]
                    r, c = r[keep], c[keep]
                rows += zip((r + first).tolist(), c.tolist())
                if limit is not None and len(rows) >= limit:
                    break
        rows = rows[:limit] if limit is not None else rows
        seq = np.array([r for r, _ in rows], dtype=np.int64)
        return pd.DataFrame({"sequence": seq, "offset": np.array([c for _, c in rows], dtype=np.int64),
                             "step": seq // self.batch_size})

    def __repr__(self) -> str:
        return (
            f"TrainingOrder({str(self.dataset.prefix)!r}, steps={self.num_steps}, "
            f"batch_size={self.batch_size}, item_len={self.item_len}, seed={self.seed})"
        )
