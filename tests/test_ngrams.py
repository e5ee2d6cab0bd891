"""N-gram queries through tokengrams' suffix array (optional extra): the same rows as TrainingOrder.find."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

pytest.importorskip("tokengrams")

from _train_helpers import BATCH, build_data  # noqa: E402
from pythia_suite.data import TrainingOrder  # noqa: E402
from pythia_suite.data.ngrams import NgramIndex  # noqa: E402
from pythia_suite.errors import UserError  # noqa: E402


@pytest.fixture(scope="module")
def prefix(tmp_path_factory):
    return build_data(tmp_path_factory.mktemp("ngrams"))


@pytest.mark.parametrize("seed", [None, 7])
def test_find_equals_the_scan_of_the_order(prefix, tmp_path, seed):
    order = TrainingOrder(prefix, batch_size=BATCH, seed=seed)
    index = NgramIndex(order, tmp_path / "i.idx")
    item = order.sequence(5)
    queries = [item[3:5], item[10:14], order.sequence(0)[-2:], [int(item[7])], order.encode(" the")]
    # an n-gram across the boundary of items 0 and 1 of the file: in the .bin, never inside an item
    raw = np.fromfile(f"{prefix}.bin", dtype=np.uint16)
    queries.append(raw[order.item_len - 2 : order.item_len + 2])
    for q in queries:
        mine, scan = index.find(q), order.find(q)
        assert mine.equals(scan), q
    steps = index.counts_by_step(item[3:5])
    assert len(steps) == order.num_steps and steps.sum() == len(order.find(item[3:5])) >= 1


def test_index_of_another_bin_is_refused(prefix, tmp_path):
    order = TrainingOrder(prefix, batch_size=BATCH)
    NgramIndex(order, tmp_path / "i.idx")
    other = tmp_path / "other"
    for ext in (".bin", ".idx"):
        shutil.copy(f"{prefix}{ext}", f"{other}{ext}")
    data = np.fromfile(f"{other}.bin", dtype=np.uint16)
    data[0] ^= 1
    data.tofile(f"{other}.bin")
    with pytest.raises(UserError, match="was built on another .bin"):
        NgramIndex(TrainingOrder(other, batch_size=BATCH), tmp_path / "i.idx")
    with pytest.raises(UserError, match="at least one token"):
        NgramIndex(order, tmp_path / "i.idx").find([])
