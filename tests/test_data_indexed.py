"""The Megatron / GPT-NeoX MMapIndexedDataset format: writing, reading, validating."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest

from pythia_suite.data.indexed import (
    DTYPES,
    IndexedDataset,
    dtype_code,
    read_header,
    split_prefix,
    write_dataset,
    write_fixed_index,
    write_index,
)
from pythia_suite.errors import UserError

MAGIC = b"MMIDIDX\x00\x00"

# The Megatron codes, spelled out independently of the library's table.
EXPECTED_CODES = {
    1: np.uint8,
    2: np.int8,
    3: np.int16,
    4: np.int32,
    5: np.int64,
    6: np.float32,
    7: np.float64,
    8: np.uint16,
}


def hand_idx(code: int, sizes, pointers, doc_idx, *, magic=MAGIC, version=1) -> bytes:
    """An .idx assembled field by field with struct, following the published layout."""
    out = magic + struct.pack("<Q", version) + struct.pack("<B", code)
    out += struct.pack("<Q", len(sizes)) + struct.pack("<Q", len(doc_idx))
    out += b"".join(struct.pack("<i", s) for s in sizes)
    out += b"".join(struct.pack("<q", p) for p in pointers)
    out += b"".join(struct.pack("<q", d) for d in doc_idx)
    return out


def parse_idx(raw: bytes):
    """Parse an .idx with struct alone: (magic, version, code, sizes, pointers, doc_idx)."""
    magic = raw[:9]
    (version,) = struct.unpack_from("<Q", raw, 9)
    (code,) = struct.unpack_from("<B", raw, 17)
    n, m = struct.unpack_from("<QQ", raw, 18)
    off = 34
    sizes = list(struct.unpack_from(f"<{n}i", raw, off))
    off += 4 * n
    pointers = list(struct.unpack_from(f"<{n}q", raw, off))
    off += 8 * n
    doc_idx = list(struct.unpack_from(f"<{m}q", raw, off))
    off += 8 * m
    assert off == len(raw), "no trailing bytes"
    return magic, version, code, sizes, pointers, doc_idx


def items_for(dtype: np.dtype) -> list[np.ndarray]:
    """Variable-length items (including an empty one) that use the dtype's extremes."""
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        lo, hi = int(info.min), int(info.max)
        raw = [[lo, hi, 0, 1], [7], [], [hi, hi - 1, lo + 1, 3, 2, 1, 0], list(range(lo, lo + 11))]
    else:
        raw = [[0.5, -1.25, 1e30 if dtype.itemsize == 4 else 1e300], [np.inf], [], [-np.inf, -0.0, 3.0, 2.5e-8, 7.0],
               [float(i) / 3 for i in range(11)]]
    return [np.array(r, dtype=dtype) for r in raw]


# ---- dtype codes and round trips ---------------------------------------------------------------


def test_dtype_table_is_megatrons():
    assert {c: np.dtype(t) for c, t in EXPECTED_CODES.items()} == DTYPES
    for code, t in EXPECTED_CODES.items():
        assert dtype_code(t) == code
        assert dtype_code(np.dtype(t).name) == code


@pytest.mark.parametrize("bad", [np.uint32, np.uint64, np.float16, np.bool_, "U3"])
def test_dtype_code_rejects_unstorable(bad):
    with pytest.raises(UserError, match="cannot be stored"):
        dtype_code(bad)


@pytest.mark.parametrize("code", sorted(EXPECTED_CODES))
def test_round_trip_every_dtype(tmp_path, code):
    dtype = np.dtype(EXPECTED_CODES[code])
    items = items_for(dtype)
    prefix = write_dataset(tmp_path / "ds", items, dtype)
    assert prefix == tmp_path / "ds"

    raw = (tmp_path / "ds.idx").read_bytes()
    magic, version, got_code, sizes, pointers, doc_idx = parse_idx(raw)
    assert (magic, version, got_code) == (MAGIC, 1, code)
    assert sizes == [len(x) for x in items]
    assert pointers == list(np.cumsum([0] + [len(x) * dtype.itemsize for x in items[:-1]]))
    assert doc_idx == list(range(len(items) + 1))
    assert (tmp_path / "ds.bin").read_bytes() == b"".join(x.tobytes() for x in items)

    ds = IndexedDataset(tmp_path / "ds")
    assert len(ds) == len(items)
    assert ds.dtype == dtype
    assert ds.num_tokens == sum(len(x) for x in items)
    ds.check_pointers()
    for i, want in enumerate(items):
        got = ds[i]
        assert got.dtype == dtype
        assert len(got) == len(want)
        assert got.tobytes() == want.tobytes()  # bit-exact, so -0.0 and inf count too
        assert not got.flags.writeable
    assert ds[-1].tobytes() == items[-1].tobytes()
    assert list(ds.sizes) == sizes and list(ds.pointers) == pointers and list(ds.doc_idx) == doc_idx
    assert ds.sizes.dtype == np.int32 and ds.pointers.dtype == np.int64 and ds.doc_idx.dtype == np.int64


@pytest.mark.parametrize("code", sorted(EXPECTED_CODES))
def test_single_item_and_empty_dataset(tmp_path, code):
    dtype = np.dtype(EXPECTED_CODES[code])
    write_dataset(tmp_path / "one", [np.array([1, 2, 3], dtype)], dtype)
    ds = IndexedDataset(tmp_path / "one")
    assert len(ds) == 1 and ds[0].tolist() == [1, 2, 3]

    write_dataset(tmp_path / "empty", [], dtype)
    assert (tmp_path / "empty.bin").stat().st_size == 0
    assert (tmp_path / "empty.idx").read_bytes() == hand_idx(code, [], [], [0])
    ds = IndexedDataset(tmp_path / "empty")
    assert len(ds) == 0 and ds.num_tokens == 0 and ds.dtype == dtype
    ds.check_pointers()
    with pytest.raises(IndexError):
        ds[0]


def test_float_nan_round_trips(tmp_path):
    items = [np.array([np.nan, 1.0], np.float32), np.array([2.0, np.nan, np.nan], np.float32)]
    write_dataset(tmp_path / "nan", items, np.float32)
    ds = IndexedDataset(tmp_path / "nan")
    assert [ds[i].tobytes() for i in range(2)] == [x.tobytes() for x in items]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # NaN or overflow in the cast
@pytest.mark.parametrize(
    "dtype, values",
    [(np.uint8, [0, 256]), (np.uint8, [-1]), (np.int8, [128]), (np.uint16, [65536]), (np.uint16, [-1]),
     (np.int16, [-32769]), (np.int32, [2**31]), (np.int64, [1.5]), (np.uint16, [np.nan]),
     (np.float32, [1e300]), (np.float32, [0.1])],
)
def test_write_dataset_refuses_values_that_do_not_fit(tmp_path, dtype, values):
    with pytest.raises(UserError, match="do not fit dtype"):
        write_dataset(tmp_path / "x", [np.array([1, 2]), np.array(values)], dtype)
    assert not (tmp_path / "x.idx").exists()


def test_write_dataset_accepts_lists_and_wider_types_that_fit(tmp_path):
    write_dataset(tmp_path / "x", [[1, 2, 3], np.array([65535], np.int64), (0,)], np.uint16)
    ds = IndexedDataset(tmp_path / "x")
    assert [ds[i].tolist() for i in range(3)] == [[1, 2, 3], [65535], [0]]
    assert ds.dtype == np.uint16


def test_item_index_out_of_range(tmp_path):
    write_dataset(tmp_path / "x", [[1], [2, 3]], np.int32)
    ds = IndexedDataset(tmp_path / "x")
    assert ds[-2].tolist() == [1]
    for bad in (2, -3, 100):
        with pytest.raises(IndexError, match="out of range for a dataset of 2 items"):
            ds[bad]


# ---- byte-for-byte agreement with a hand-built index -------------------------------------------


def test_write_index_matches_hand_built_bytes(tmp_path):
    sizes = [3, 0, 5, 1]
    pointers = [0, 6, 6, 16]  # uint16: 2 bytes per token
    write_index(tmp_path / "a.idx", np.uint16, np.array(sizes))
    assert (tmp_path / "a.idx").read_bytes() == hand_idx(8, sizes, pointers, [0, 1, 2, 3, 4])

    # an explicit doc_idx (several items per document) is written as given
    write_index(tmp_path / "b.idx", np.int64, np.array(sizes), doc_idx=np.array([0, 2, 4]))
    assert (tmp_path / "b.idx").read_bytes() == hand_idx(5, sizes, [0, 24, 24, 64], [0, 2, 4])


def test_write_dataset_matches_hand_built_bytes(tmp_path):
    items = [np.array([5, 6, 7], np.int16), np.array([-1], np.int16), np.array([9, 9], np.int16)]
    write_dataset(tmp_path / "d", items, np.int16)
    assert (tmp_path / "d.idx").read_bytes() == hand_idx(3, [3, 1, 2], [0, 6, 8], [0, 1, 2, 3])
    assert (tmp_path / "d.bin").read_bytes() == struct.pack("<6h", 5, 6, 7, -1, 9, 9)


@pytest.mark.parametrize("n, item_len, code, dtype", [(4, 2049, 8, np.uint16), (3, 5, 4, np.int32), (0, 7, 1, np.uint8)])
def test_write_fixed_index_matches_hand_built_bytes(tmp_path, n, item_len, code, dtype):
    write_fixed_index(tmp_path / "f.idx", dtype, n, item_len)
    stride = item_len * np.dtype(dtype).itemsize
    want = hand_idx(code, [item_len] * n, [i * stride for i in range(n)], list(range(n + 1)))
    assert (tmp_path / "f.idx").read_bytes() == want
    # and it is the same file write_index produces for equal sizes
    write_index(tmp_path / "g.idx", dtype, np.full(n, item_len))
    assert (tmp_path / "g.idx").read_bytes() == want


def test_write_fixed_index_in_several_chunks(tmp_path, monkeypatch):
    import pythia_suite.data.indexed as indexed

    monkeypatch.setattr(indexed, "_CHUNK_ITEMS", 3)  # force partial chunks in all three arrays
    write_fixed_index(tmp_path / "f.idx", np.uint16, 8, 11)
    want = hand_idx(8, [11] * 8, [i * 22 for i in range(8)], list(range(9)))
    assert (tmp_path / "f.idx").read_bytes() == want


def test_hand_built_files_are_read(tmp_path):
    # three documents over four items; items in int32
    items = [[10, 11, 12], [-5], [2**31 - 1, -(2**31)], [0, 0, 0, 7]]
    sizes = [len(x) for x in items]
    pointers = [0, 12, 16, 24]
    (tmp_path / "h.idx").write_bytes(hand_idx(4, sizes, pointers, [0, 1, 3, 4]))
    (tmp_path / "h.bin").write_bytes(b"".join(struct.pack(f"<{len(x)}i", *x) for x in items))

    for name in ("h", "h.bin", "h.idx"):  # any of the three names the dataset
        ds = IndexedDataset(tmp_path / name)
        assert ds.prefix == tmp_path / "h"
        assert len(ds) == 4 and ds.dtype == np.int32
        assert [ds[i].tolist() for i in range(4)] == items
        assert ds.doc_idx.tolist() == [0, 1, 3, 4]
        ds.check_pointers()
    assert "items=4" in repr(ds) and "int32" in repr(ds)


def test_read_header_of_hand_built_index(tmp_path):
    (tmp_path / "x.idx").write_bytes(hand_idx(7, [1, 2], [0, 8], [0, 2]))
    dtype, n, m = read_header(tmp_path / "x.idx")
    assert (dtype, n, m) == (np.dtype(np.float64), 2, 2)


def test_pointers_are_int64_past_2_gib(tmp_path):
    # 2**30 uint16 tokens per item: the cumulative byte offsets pass 2**31 and 2**32
    sizes = np.array([2**30, 2**30, 2**30, 5], np.int32)
    write_index(tmp_path / "big.idx", np.uint16, sizes)
    raw = (tmp_path / "big.idx").read_bytes()
    assert len(raw) == 34 + 4 * 4 + 8 * 4 + 8 * 5
    _, _, code, got_sizes, pointers, doc_idx = parse_idx(raw)
    assert code == 8
    assert got_sizes == [2**30] * 3 + [5]
    assert pointers == [0, 2**31, 2**32, 3 * 2**31]
    assert doc_idx == [0, 1, 2, 3, 4]
    assert raw == hand_idx(8, got_sizes, [0, 2**31, 2**32, 3 * 2**31], [0, 1, 2, 3, 4])


def test_fixed_index_pointers_are_int64_past_2_gib(tmp_path):
    # 300k items of 4096 uint16 tokens: the last pointer is about 2.46e9 bytes
    n, item_len = 300_000, 4096
    write_fixed_index(tmp_path / "big.idx", np.uint16, n, item_len)
    pointers = np.fromfile(tmp_path / "big.idx", dtype="<i8", count=n, offset=34 + 4 * n)
    assert pointers[-1] == (n - 1) * item_len * 2 > 2**31
    assert (np.diff(pointers) == item_len * 2).all()


def test_reading_items_past_2_gib(tmp_path):
    """A sparse 6 GiB .bin: items whose byte offsets do not fit int32 are found and read."""
    sizes = [2**30, 2**30, 2**30, 5]
    pointers = [0, 2**31, 2**32, 3 * 2**31]
    (tmp_path / "s.idx").write_bytes(hand_idx(8, sizes, pointers, [0, 4]))
    last = np.array([1, 2, 3, 65535, 9], np.uint16)
    with open(tmp_path / "s.bin", "wb") as f:
        f.truncate(3 * 2**31 + 10)
        if os.stat(f.fileno()).st_blocks * 512 > 1 << 24:  # pragma: no cover - filesystem without holes
            pytest.skip("this filesystem does not support sparse files")
        f.seek(2**32)
        f.write(np.array([41, 42], np.uint16).tobytes())
        f.seek(3 * 2**31)
        f.write(last.tobytes())
    ds = IndexedDataset(tmp_path / "s")
    ds.check_pointers()
    assert ds.num_tokens == 3 * 2**30 + 5
    assert ds[3].tolist() == last.tolist()
    assert ds[2][:3].tolist() == [41, 42, 0]
    assert len(ds[1]) == 2**30


# ---- damaged files -----------------------------------------------------------------------------


def _good(tmp_path) -> Path:
    write_dataset(tmp_path / "d", [np.arange(3), np.arange(4)], np.uint16)
    return tmp_path / "d"


def _patch(path: Path, offset: int, data: bytes) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset : offset + len(data)] = data
    path.write_bytes(bytes(raw))


def test_missing_files(tmp_path):
    with pytest.raises(UserError, match="nope.idx not found"):
        IndexedDataset(tmp_path / "nope")
    prefix = _good(tmp_path)
    os.remove(f"{prefix}.bin")
    with pytest.raises(UserError, match=r"d\.bin not found"):
        IndexedDataset(prefix)


def test_wrong_magic(tmp_path):
    prefix = _good(tmp_path)
    _patch(Path(f"{prefix}.idx"), 0, b"XXIDIDX\x00\x00")
    with pytest.raises(UserError, match="not a Megatron index: magic"):
        IndexedDataset(prefix)


def test_wrong_version(tmp_path):
    prefix = _good(tmp_path)
    _patch(Path(f"{prefix}.idx"), 9, struct.pack("<Q", 2))
    with pytest.raises(UserError, match="index version 2 is not supported"):
        IndexedDataset(prefix)


@pytest.mark.parametrize("code", [0, 9, 255])
def test_bad_dtype_code(tmp_path, code):
    prefix = _good(tmp_path)
    _patch(Path(f"{prefix}.idx"), 17, struct.pack("<B", code))
    with pytest.raises(UserError, match=f"unknown dtype code {code}; valid codes are 1-8"):
        IndexedDataset(prefix)


@pytest.mark.parametrize("keep", [0, 10, 33, 34, 40, 34 + 8 + 16 + 24 - 1])
def test_truncated_idx(tmp_path, keep):
    prefix = _good(tmp_path)
    idx = Path(f"{prefix}.idx")
    idx.write_bytes(idx.read_bytes()[:keep])
    with pytest.raises(UserError, match="is truncated"):
        IndexedDataset(prefix)


def test_idx_with_trailing_bytes(tmp_path):
    prefix = _good(tmp_path)
    with open(f"{prefix}.idx", "ab") as f:
        f.write(b"\x00" * 3)
    with pytest.raises(UserError, match="3 unexpected trailing bytes"):
        IndexedDataset(prefix)


def test_truncated_bin(tmp_path):
    prefix = _good(tmp_path)
    b = Path(f"{prefix}.bin")
    b.write_bytes(b.read_bytes()[:-1])
    with pytest.raises(UserError, match="is truncated: the index needs 14 bytes, the file has 13"):
        IndexedDataset(prefix)


def test_bin_longer_than_pointers_say(tmp_path):
    prefix = _good(tmp_path)
    with open(f"{prefix}.bin", "ab") as f:
        f.write(b"\x01\x00")
    with pytest.raises(UserError, match="has 16 bytes but its index points to 14"):
        IndexedDataset(prefix)


def test_check_pointers_finds_items_out_of_place(tmp_path):
    # sizes 2,2,2 (int32) but item 2 starts at 4 instead of 16 ... the .bin length still matches
    (tmp_path / "p.idx").write_bytes(hand_idx(4, [2, 2, 2], [0, 8, 16], [0, 3]))
    (tmp_path / "p.bin").write_bytes(bytes(24))
    IndexedDataset(tmp_path / "p").check_pointers()  # consistent
    (tmp_path / "p.idx").write_bytes(hand_idx(4, [2, 2, 2], [0, 12, 16], [0, 3]))
    with pytest.raises(UserError, match="item 1 does not start where item 0 ends"):
        IndexedDataset(tmp_path / "p").check_pointers()
    (tmp_path / "p.idx").write_bytes(hand_idx(4, [2, 2, 2], [4, 12, 16], [0, 3]))
    with pytest.raises(UserError, match="first pointer is 4, expected 0"):
        IndexedDataset(tmp_path / "p").check_pointers()
    (tmp_path / "p.idx").write_bytes(hand_idx(4, [2, 2, 2], [0, 8, 16], [0, 2]))
    with pytest.raises(UserError, match="doc_idx must run from 0 to 3"):
        IndexedDataset(tmp_path / "p").check_pointers()
    (tmp_path / "p.idx").write_bytes(hand_idx(4, [2, -2, 2], [0, 8, 16], [0, 3]))
    with pytest.raises(UserError, match="negative item sizes"):
        IndexedDataset(tmp_path / "p").check_pointers()


def test_split_prefix():
    assert split_prefix("a/b") == Path("a/b")
    assert split_prefix("a/b.bin") == Path("a/b")
    assert split_prefix("a/b.idx") == Path("a/b")
    assert split_prefix("a/b.v1") == Path("a/b.v1")  # only .bin/.idx are stripped


# ---- float codes: GPT-NeoX/Pythia (6 = float32, 7 = float64) vs megatron-core (6 = float64, 7 = float32)


def _float_file(tmp_path, name: str, code: int, dtype, items: list[list[float]]):
    """An index with `code` over items stored as `dtype`, pointers in bytes of that width (as any writer does)."""
    width = np.dtype(dtype).itemsize
    sizes = [len(x) for x in items]
    pointers = [0, *np.cumsum([s * width for s in sizes[:-1]]).tolist()]
    (tmp_path / f"{name}.idx").write_bytes(hand_idx(code, sizes, pointers, list(range(len(items) + 1))))
    (tmp_path / f"{name}.bin").write_bytes(b"".join(np.asarray(x, dtype).tobytes() for x in items))
    return tmp_path / name


@pytest.mark.parametrize("code,dtype,convention", [(6, np.float32, "gpt-neox"), (7, np.float64, "gpt-neox"),
                                                   (7, np.float32, "megatron-core"), (6, np.float64, "megatron-core")])
def test_float_codes_of_both_conventions_are_read_by_width(tmp_path, code, dtype, convention):
    items = [[0.5, 1.25, -3.0], [7.0], [2.5, 1e-3]]
    prefix = _float_file(tmp_path, "f", code, dtype, items)
    ds = IndexedDataset(prefix)
    assert ds.dtype == np.dtype(dtype) and ds.float_convention == convention
    assert [ds[i].tolist() for i in range(3)] == [np.asarray(x, dtype).tolist() for x in items]
    assert convention in repr(ds)
    from pythia_suite.data import verify

    assert any(convention in line for line in verify(prefix).checked)


def test_float_codes_that_cannot_be_told_apart_are_refused(tmp_path):
    prefix = _float_file(tmp_path, "w", 6, np.float32, [[1.0, 2.0], [3.0]])
    (tmp_path / "w.bin").write_bytes(b"\0" * 20)  # 5 floats' worth: neither 12 nor 24 bytes
    with pytest.raises(UserError, match="float dtype code 6 means float32 in GPT-NeoX/Pythia files and float64 "
                                        "in megatron-core files, and neither width fits"):
        IndexedDataset(prefix)
    prefix = _float_file(tmp_path, "p", 7, np.float32, [[1.0, 2.0], [3.0]])
    (tmp_path / "p.idx").write_bytes(hand_idx(7, [2, 1], [0, 12], [0, 1, 2]))  # a pointer of neither width
    with pytest.raises(UserError, match="neither width fits"):
        IndexedDataset(prefix)
    empty = _float_file(tmp_path, "e", 7, np.float32, [[]])  # no tokens: nothing to misread
    assert len(IndexedDataset(empty)) == 1 and IndexedDataset(empty).float_convention is None


def test_integer_files_have_no_float_convention(tmp_path):
    write_dataset(tmp_path / "i", [np.arange(4)], np.uint16)
    assert IndexedDataset(tmp_path / "i").float_convention is None
