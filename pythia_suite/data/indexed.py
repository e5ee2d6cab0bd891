"""The Megatron / GPT-NeoX "MMapIndexedDataset" format that Pythia's data ships in.

A dataset is two files with a common prefix:

``PREFIX.bin``  the tokens of every item, back to back, no header.
``PREFIX.idx``  a 34-byte header, then three little-endian arrays::

    magic      9 bytes   b"MMIDIDX\\x00\\x00"
    version    <Q        1
    dtype      <B        code of the token dtype (DTYPES below)
    n          <Q        number of items (sequences)
    m          <Q        number of doc_idx entries
    sizes      int32[n]  tokens per item
    pointers   int64[n]  byte offset of each item in .bin
    doc_idx    int64[m]  item index where each document starts, then n

Offsets are int64: the cumulative byte count of the Pile overflows int32. Reading is zero-copy:
both files are memory-mapped and items come back as read-only views.

Float codes differ between Megatron variants: GPT-NeoX and Pythia (and this package, when writing)
use 6 = float32, 7 = float64; megatron-core (`megatron.core.datasets.indexed_dataset`) writes
6 = float64, 7 = float32. Pointers are byte offsets, so the item size is in the index itself: a
float file is read with the width its pointers and the .bin length agree on, and the convention
found is reported (`IndexedDataset.float_convention`); when nothing can tell them apart (an empty
file, zero-length items), it is refused rather than guessed.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Iterable

import numpy as np

from ..errors import UserError
from ..fileio import atomic_outputs

MAGIC = b"MMIDIDX\x00\x00"
VERSION = 1
HEADER = struct.Struct("<9sQBQQ")  # magic, version, dtype code, n, m: 34 bytes
assert HEADER.size == 34

DTYPES: dict[int, np.dtype] = {
    1: np.dtype(np.uint8),
    2: np.dtype(np.int8),
    3: np.dtype(np.int16),
    4: np.dtype(np.int32),
    5: np.dtype(np.int64),
    6: np.dtype(np.float32),
    7: np.dtype(np.float64),
    8: np.dtype(np.uint16),
}
CODES = {dt: code for code, dt in DTYPES.items()}
FLOAT_CODES = {6: ("float32", "float64"), 7: ("float64", "float32")}  # code: (GPT-NeoX/Pythia, megatron-core)

_CHUNK_ITEMS = 1 << 20  # index entries written per chunk: bounded memory for any n


def split_prefix(path: str | os.PathLike) -> Path:
    """`data/x`, `data/x.bin` and `data/x.idx` all name the dataset `data/x`."""
    p = Path(path)
    return p.with_suffix("") if p.suffix in (".bin", ".idx") else p


def check_out_prefix(out: str | os.PathLike) -> Path:
    """An output prefix, refusing a folder (``--out data/`` would otherwise write ``./data.bin``)."""
    text = os.fspath(out)
    if text.endswith(("/", os.sep)) or Path(text).is_dir():
        raise UserError(f"--out {text} is a folder; give a dataset prefix inside it, e.g. {Path(text) / 'corpus'}")
    return split_prefix(text)


def dtype_code(dtype: np.dtype | type | str) -> int:
    dt = np.dtype(dtype)
    if dt not in CODES:
        names = ", ".join(str(d) for d in DTYPES.values())
        raise UserError(f"dtype {dt} cannot be stored in an indexed dataset; use one of: {names}")
    return CODES[dt]


class IndexedDataset:
    """Read-only, memory-mapped view of ``PREFIX.bin`` / ``PREFIX.idx``.

    Opening checks everything that can be checked in O(1): magic, version, dtype code, that the
    .idx has exactly the bytes its header announces, and that the .bin is exactly as long as the
    last pointer says. `check_pointers()` does the O(n) check that items are laid out in order.
    """

    def __init__(self, prefix: str | os.PathLike, *, bin_path: Path | None = None, idx_path: Path | None = None):
        self.prefix = split_prefix(prefix)
        self.idx_path = Path(idx_path or self.prefix.with_name(self.prefix.name + ".idx"))
        self.bin_path = Path(bin_path or self.prefix.with_name(self.prefix.name + ".bin"))
        for p in (self.idx_path, self.bin_path):
            if not p.is_file():
                raise UserError(f"{p} not found (a dataset is PREFIX.bin + PREFIX.idx; got prefix {self.prefix})")

        self.dtype, n, m = read_header(self.idx_path)
        self.float_convention: str | None = None  # "gpt-neox" or "megatron-core" for float codes 6 and 7
        idx_bytes = HEADER.size + n * 4 + n * 8 + m * 8
        actual = self.idx_path.stat().st_size
        if actual < idx_bytes:
            raise UserError(
                f"{self.idx_path} is truncated: header announces {n} items and {m} doc_idx entries "
                f"({idx_bytes} bytes) but the file has {actual} bytes"
            )
        if actual > idx_bytes:
            raise UserError(f"{self.idx_path} has {actual - idx_bytes} unexpected trailing bytes after the index")

        self.sizes = np.memmap(self.idx_path, np.int32, "r", HEADER.size, (n,)) if n else np.zeros(0, np.int32)
        self.pointers = (
            np.memmap(self.idx_path, np.int64, "r", HEADER.size + 4 * n, (n,)) if n else np.zeros(0, np.int64)
        )
        self.doc_idx = (
            np.memmap(self.idx_path, np.int64, "r", HEADER.size + 12 * n, (m,)) if m else np.zeros(0, np.int64)
        )

        bin_bytes = self.bin_path.stat().st_size
        if self.dtype.kind == "f":
            self.dtype, self.float_convention = self._float_width(bin_bytes)
        expected = int(self.pointers[-1]) + int(self.sizes[-1]) * self.dtype.itemsize if n else 0
        if bin_bytes < expected:
            raise UserError(
                f"{self.bin_path} is truncated: the index needs {expected} bytes, the file has {bin_bytes}"
            )
        if bin_bytes != expected:
            raise UserError(
                f"{self.bin_path} has {bin_bytes} bytes but its index points to {expected}: "
                "the .bin and .idx do not belong together"
            )
        # np.memmap cannot map an empty file; an empty dataset has no tokens to view.
        self.tokens = np.memmap(self.bin_path, self.dtype, "r") if expected else np.zeros(0, self.dtype)

    def _float_width(self, bin_bytes: int) -> tuple[np.dtype, str | None]:
        """Which of the two Megatron conventions a float code 6/7 was written under: the width
        for which the last pointer and the .bin length both equal the token count times the width."""
        with open(self.idx_path, "rb") as f:
            code = HEADER.unpack(f.read(HEADER.size))[2]
        names = FLOAT_CODES[code]
        total = int(self.sizes.sum(dtype=np.int64))
        if total == 0 and bin_bytes == 0:
            return np.dtype(names[0]), None  # no tokens: nothing can be misread
        before_last = total - int(self.sizes[-1]) if len(self.sizes) else 0
        found = [name for name in names if total * np.dtype(name).itemsize == bin_bytes
                 and int(self.pointers[-1]) == before_last * np.dtype(name).itemsize]
        if len(found) != 1:
            raise UserError(
                f"{self.idx_path}: float dtype code {code} means {names[0]} in GPT-NeoX/Pythia files and "
                f"{names[1]} in megatron-core files, and {'both widths fit' if found else 'neither width fits'} "
                f"its {total} tokens, pointers and {bin_bytes}-byte .bin; cannot tell which this file is"
            )
        return np.dtype(found[0]), "gpt-neox" if found[0] == names[0] else "megatron-core"

    def __len__(self) -> int:
        return len(self.sizes)

    def __getitem__(self, i: int) -> np.ndarray:
        """Tokens of item `i` (a read-only view)."""
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"item {i} out of range for a dataset of {n} items")
        start = int(self.pointers[i]) // self.dtype.itemsize
        return self.tokens[start : start + int(self.sizes[i])]

    @property
    def num_tokens(self) -> int:
        return len(self.tokens)

    def check_pointers(self) -> None:
        """O(n) check that item i+1 starts where item i ends (raises UserError otherwise)."""
        item = self.dtype.itemsize
        if len(self) and self.pointers[0] != 0:
            raise UserError(f"{self.idx_path}: first pointer is {int(self.pointers[0])}, expected 0")
        if (self.sizes < 0).any():
            raise UserError(f"{self.idx_path}: negative item sizes")
        for a in range(0, max(len(self) - 1, 0), _CHUNK_ITEMS):
            b = min(a + _CHUNK_ITEMS, len(self) - 1)
            ends = self.pointers[a:b] + self.sizes[a:b].astype(np.int64) * item
            bad = np.flatnonzero(ends != self.pointers[a + 1 : b + 1])
            if len(bad):
                i = a + int(bad[0]) + 1
                raise UserError(f"{self.idx_path}: item {i} does not start where item {i - 1} ends")
        if len(self.doc_idx) and (self.doc_idx[0] != 0 or self.doc_idx[-1] != len(self)):
            raise UserError(f"{self.idx_path}: doc_idx must run from 0 to {len(self)}")

    def __repr__(self) -> str:
        conv = f", float codes: {self.float_convention}" if self.float_convention else ""
        return f"IndexedDataset({str(self.prefix)!r}, items={len(self)}, dtype={self.dtype}{conv})"


def read_header(idx_path: Path) -> tuple[np.dtype, int, int]:
    """Parse and validate the 34-byte header: (dtype, n items, m doc_idx entries)."""
    with open(idx_path, "rb") as f:
        raw = f.read(HEADER.size)
    if len(raw) < HEADER.size:
        raise UserError(f"{idx_path} is truncated: {len(raw)} bytes, shorter than the {HEADER.size}-byte header")
    magic, version, code, n, m = HEADER.unpack(raw)
    if magic != MAGIC:
        raise UserError(f"{idx_path} is not a Megatron index: magic {magic!r}, expected {MAGIC!r}")
    if version != VERSION:
        raise UserError(f"{idx_path}: index version {version} is not supported (only version {VERSION})")
    if code not in DTYPES:
        raise UserError(f"{idx_path}: unknown dtype code {code}; valid codes are 1-8 ({_code_list()})")
    return DTYPES[code], n, m


def _code_list() -> str:
    return ", ".join(f"{c}={d}" for c, d in DTYPES.items())


def write_header(f, dtype: np.dtype, n: int, m: int) -> None:
    f.write(HEADER.pack(MAGIC, VERSION, dtype_code(dtype), n, m))


def write_index(path: str | os.PathLike, dtype, sizes: np.ndarray, doc_idx: np.ndarray | None = None) -> None:
    """Write an .idx for items of the given sizes stored back to back (pointers are derived).

    `doc_idx` defaults to one document per item: ``[0, 1, ..., n]``.
    """
    dtype = np.dtype(dtype)
    sizes = np.asarray(sizes, dtype=np.int32)
    n = len(sizes)
    doc_idx = np.arange(n + 1, dtype=np.int64) if doc_idx is None else np.asarray(doc_idx, np.int64)
    pointers = np.zeros(n, np.int64)
    # cumulative offsets in int64: an int32 sum overflows past 2 GiB of tokens
    np.cumsum(sizes[:-1].astype(np.int64) * dtype.itemsize, out=pointers[1:])
    with open(path, "wb") as f:
        write_header(f, dtype, n, len(doc_idx))
        f.write(sizes.tobytes())
        f.write(pointers.tobytes())
        f.write(doc_idx.tobytes())


def write_fixed_index(path: str | os.PathLike, dtype, n: int, item_len: int) -> None:
    """Write the .idx of `n` items of `item_len` tokens each, one document per item, in chunks
    (memory stays bounded for the 146M items of the Pile)."""
    dtype = np.dtype(dtype)
    stride = item_len * dtype.itemsize
    with open(path, "wb") as f:
        write_header(f, dtype, n, n + 1)
        for a in range(0, n, _CHUNK_ITEMS):
            f.write(np.full(min(_CHUNK_ITEMS, n - a), item_len, np.int32).tobytes())
        for a in range(0, n, _CHUNK_ITEMS):
            f.write((np.arange(a, min(a + _CHUNK_ITEMS, n), dtype=np.int64) * stride).tobytes())
        for a in range(0, n + 1, _CHUNK_ITEMS):
            f.write(np.arange(a, min(a + _CHUNK_ITEMS, n + 1), dtype=np.int64).tobytes())


def write_dataset(prefix: str | os.PathLike, items: Iterable[np.ndarray], dtype) -> Path:
    """Write items (1-D token arrays) as ``PREFIX.bin`` / ``PREFIX.idx``; one document per item.

    Values must fit `dtype` exactly; they are not silently wrapped.
    """
    dtype = np.dtype(dtype)
    dtype_code(dtype)
    prefix = split_prefix(prefix)
    sizes: list[int] = []
    with atomic_outputs(prefix.with_name(prefix.name + ".bin"), prefix.with_name(prefix.name + ".idx")) as (b, i):
        with open(b, "wb") as f:
            for item in items:
                arr = np.asarray(item)
                cast = arr.astype(dtype)
                if not np.array_equal(cast, arr, equal_nan=arr.dtype.kind == "f" and dtype.kind == "f"):
                    raise UserError(f"token values do not fit dtype {dtype} (range {arr.min()}..{arr.max()})")
                f.write(cast.tobytes())
                sizes.append(len(cast))
        write_index(i, dtype, np.asarray(sizes, np.int32))
    return prefix
