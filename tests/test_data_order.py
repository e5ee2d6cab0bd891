"""The training order of a preshuffled dataset: batch(step) is a slice, and its fingerprint."""

from __future__ import annotations

import hashlib
import struct

import numpy as np
import pytest

from conftest import PYTHIA_EXTRA, PYTHIA_ITEMS, PYTHIA_STEPS
from pythia_suite.data import PYTHIA_BATCH_SIZE, IndexedDataset, TrainingOrder, batch_fingerprint
from pythia_suite.data.indexed import write_dataset, write_fixed_index
from pythia_suite.errors import UserError

TAG = b"pythia-suite/batch-fingerprint/v1\x00"


def reference_fingerprint(tokens: np.ndarray) -> str:
    """The documented v1 algorithm, from hashlib and struct alone."""
    rows, cols = tokens.shape
    h = hashlib.sha256()
    h.update(TAG)
    h.update(struct.pack("<QQ", rows, cols))
    for row in tokens.tolist():
        h.update(struct.pack(f"<{cols}q", *row))
    return h.hexdigest()


@pytest.fixture(scope="module")
def order(pythia_prefix):
    return TrainingOrder(pythia_prefix)


# ---- the Pythia-shaped file --------------------------------------------------------------------


def test_pythia_constants(order):
    assert PYTHIA_BATCH_SIZE == 1024
    assert order.batch_size == 1024
    assert order.item_len == 2049
    assert order.seq_len == 2048
    assert order.num_steps == len(order) == PYTHIA_STEPS == 3
    assert order.last_step == 2
    assert order.dropped_items == PYTHIA_EXTRA == 5
    assert len(order.dataset) == PYTHIA_ITEMS
    assert order.dataset.dtype == np.uint16
    assert "steps=3" in repr(order) and "batch_size=1024" in repr(order)


@pytest.mark.parametrize("step", range(PYTHIA_STEPS))
def test_batch_is_the_step_slice(order, pythia_tokens_array, step):
    b = order.batch(step)
    assert b.shape == (1024, 2049)
    assert b.dtype == np.uint16
    assert not b.flags.writeable
    np.testing.assert_array_equal(b, pythia_tokens_array[step * 1024 : (step + 1) * 1024])
    # item i's first token is i
    assert b[:, 0].tolist() == list(range(step * 1024, (step + 1) * 1024))
    assert b[5, 1] == (step * 1024 + 5) * 7 + 1


def test_batch_accepts_numpy_integers(order, pythia_tokens_array):
    np.testing.assert_array_equal(order.batch(np.int64(1)), pythia_tokens_array[1024:2048])


def test_batches_end_step_is_inclusive(order, pythia_tokens_array):
    b = order.batches(1, 2)
    assert b.shape == (2048, 2049)
    assert b.dtype == np.uint16
    np.testing.assert_array_equal(b, pythia_tokens_array[1024:3072])
    np.testing.assert_array_equal(order.batches(0, 0), order.batch(0))
    assert order.batches(0, 2).shape == (3072, 2049)


def test_tokens_and_sequences_seen(order):
    for n in range(PYTHIA_STEPS + 1):  # checkpoint step3 has seen all three steps
        assert order.tokens_seen(n) == n * 2_097_152
        assert order.sequences_seen(n) == n * 1024
    for bad in (-1, PYTHIA_STEPS + 1):
        with pytest.raises(UserError, match=r"checkpoint step .* out of range 0\.\.3"):
            order.tokens_seen(bad)


def test_step_of_and_sequence(order, pythia_tokens_array):
    for i, step in [(0, 0), (1023, 0), (1024, 1), (2047, 1), (2048, 2), (3071, 2)]:
        assert order.step_of(i) == step
        np.testing.assert_array_equal(order.sequence(i), pythia_tokens_array[i])
        assert order.sequence(i).shape == (2049,)
        assert order.sequence(i)[0] == i
    for bad in (3072, 3076, PYTHIA_ITEMS, -1):  # the dropped partial batch is never trained on
        with pytest.raises(UserError, match=r"out of range: trained sequences are 0\.\.3071"):
            order.sequence(bad)
        with pytest.raises(UserError, match=r"out of range"):
            order.step_of(bad)


def test_final_partial_batch_is_not_a_step(order):
    with pytest.raises(UserError) as e:
        order.batch(3)
    msg = str(e.value)
    assert "step 3 is past the end: the last step is 2" in msg
    assert "final partial batch of 5 items is not a step" in msg
    with pytest.raises(UserError, match="end step 3 is past the end: the last step is 2"):
        order.batches(0, 3)
    with pytest.raises(UserError, match="last step is 2"):
        order.batch(10**12)


def test_negative_and_non_integer_steps(order):
    with pytest.raises(UserError, match="step -1 is negative; steps run from 0 to 2"):
        order.batch(-1)
    with pytest.raises(UserError, match="start step -2 is negative"):
        order.batches(-2, 1)
    with pytest.raises(UserError, match="end step 0 is before start step 2"):
        order.batches(2, 0)
    for bad in (1.0, "1", True, None):
        with pytest.raises(UserError, match="must be an integer"):
            order.batch(bad)


def test_fingerprint_of_a_step(order, pythia_tokens_array):
    want = reference_fingerprint(pythia_tokens_array[2048:3072])
    assert order.fingerprint(2) == want
    assert batch_fingerprint(order.batch(2)) == want
    assert order.fingerprint(1) != want


def test_order_from_dataset_object_and_other_names(pythia_prefix, pythia_tokens_array):
    ds = IndexedDataset(f"{pythia_prefix}.bin")
    o = TrainingOrder(ds, batch_size=1000)
    assert o.dataset is ds
    assert (o.num_steps, o.dropped_items) == (3, 77)
    np.testing.assert_array_equal(o.batch(2), pythia_tokens_array[2000:3000])
    assert o.tokens_seen(2) == 2 * 1000 * 2048
    o = TrainingOrder(f"{pythia_prefix}.idx", batch_size=PYTHIA_ITEMS)
    assert (o.num_steps, o.last_step, o.dropped_items) == (1, 0, 0)
    np.testing.assert_array_equal(o.batch(0), pythia_tokens_array)


# ---- small orders and bad datasets --------------------------------------------------------------


def test_small_order_exact_values(tmp_path):
    items = [np.arange(5) + 10 * i for i in range(10)]  # item i = 10i .. 10i+4
    write_dataset(tmp_path / "s", items, np.int32)
    o = TrainingOrder(tmp_path / "s", batch_size=4)
    assert (o.num_steps, o.dropped_items, o.seq_len) == (2, 2, 4)
    assert o.batch(1).tolist() == [list(range(10 * i, 10 * i + 5)) for i in range(4, 8)]
    assert o.batch(1).dtype == np.int32
    assert o.tokens_seen(2) == 2 * 4 * 4
    assert o.batches(0, 1).shape == (8, 5)


@pytest.mark.parametrize("bad", [0, -1, 2.5, "4"])  # None: the sidecar's or Pythia's (test_api.py)
def test_bad_batch_size(pythia_prefix, bad):
    with pytest.raises(UserError, match="batch size must be a positive integer"):
        TrainingOrder(pythia_prefix, batch_size=bad)


def test_fewer_items_than_one_batch(tmp_path):
    write_dataset(tmp_path / "s", [np.arange(5)] * 3, np.uint16)
    with pytest.raises(UserError, match="has 3 items, fewer than one batch of 4"):
        TrainingOrder(tmp_path / "s", batch_size=4)


def test_empty_dataset(tmp_path):
    write_dataset(tmp_path / "e", [], np.uint16)
    with pytest.raises(UserError, match="has no items"):
        TrainingOrder(tmp_path / "e", batch_size=1)


def test_variable_length_items_are_refused(tmp_path):
    write_dataset(tmp_path / "v", [np.arange(5), np.arange(5), np.arange(4)], np.uint16)
    with pytest.raises(UserError, match="items of different lengths"):
        TrainingOrder(tmp_path / "v", batch_size=1)
    # first and last agree, a middle one does not: caught when its batch is read
    write_dataset(tmp_path / "w", [np.arange(5), np.arange(4), np.arange(6), np.arange(5)], np.uint16)
    o = TrainingOrder(tmp_path / "w", batch_size=2)
    with pytest.raises(UserError, match="not 5-token items stored back to back"):
        o.batch(0)
    with pytest.raises(UserError, match="not 5-token items stored back to back"):
        o.batch(1)


def test_items_out_of_order_are_refused(tmp_path):
    # 4 items of 3 uint16 tokens, right sizes and .bin length, but items 1 and 2 swapped in the index
    write_fixed_index(tmp_path / "o.idx", np.uint16, 4, 3)
    raw = bytearray((tmp_path / "o.idx").read_bytes())
    ptr = 34 + 4 * 4
    raw[ptr + 8 : ptr + 24] = struct.pack("<qq", 12, 6)
    (tmp_path / "o.idx").write_bytes(bytes(raw))
    (tmp_path / "o.bin").write_bytes(np.arange(12, dtype=np.uint16).tobytes())
    o = TrainingOrder(tmp_path / "o", batch_size=2)
    with pytest.raises(UserError, match="items 0..1 are not 3-token items stored back to back"):
        o.batch(0)
    assert IndexedDataset(tmp_path / "o")[1].tolist() == [6, 7, 8]  # the raw dataset follows pointers


# ---- batch_fingerprint --------------------------------------------------------------------------


def test_fingerprint_matches_reference_algorithm():
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 50277, (7, 13), dtype=np.int64)
    assert batch_fingerprint(tokens) == reference_fingerprint(tokens)
    negative = np.array([[-1, 2**40], [0, -(2**63)]], np.int64)
    assert batch_fingerprint(negative) == reference_fingerprint(negative)


def test_fingerprint_pinned_value():
    # v1 must never change: this digest is the documented algorithm on arange(6) as (2, 3)
    tokens = np.arange(6).reshape(2, 3)
    assert batch_fingerprint(tokens) == reference_fingerprint(tokens)
    want = hashlib.sha256(TAG + struct.pack("<QQ", 2, 3) + struct.pack("<6q", 0, 1, 2, 3, 4, 5)).hexdigest()
    assert batch_fingerprint(tokens) == want


def test_fingerprint_is_independent_of_dtype_and_layout():
    base = np.arange(40, dtype=np.int64).reshape(4, 10) * 1000
    want = reference_fingerprint(base)
    for dt in (np.uint16, np.int32, np.uint32, np.int64, ">u2", ">i8"):
        assert batch_fingerprint(base.astype(dt)) == want
    assert batch_fingerprint(np.asfortranarray(base)) == want
    wide = np.zeros((4, 20), np.uint16)
    wide[:, ::2] = base
    assert batch_fingerprint(wide[:, ::2]) == want  # a strided view
    assert batch_fingerprint(base.tolist()) == want


def test_fingerprint_depends_on_shape_and_values():
    base = np.arange(12).reshape(3, 4)
    prints = {batch_fingerprint(base), batch_fingerprint(base.reshape(4, 3)), batch_fingerprint(base.reshape(2, 6))}
    changed = base.copy()
    changed[2, 3] += 1
    prints.add(batch_fingerprint(changed))
    assert len(prints) == 4


@pytest.mark.parametrize("shape", [(6,), (1, 2, 3), ()])
def test_fingerprint_needs_2d(shape):
    with pytest.raises(ValueError, match="a batch is 2-D"):
        batch_fingerprint(np.zeros(shape, np.int64))
