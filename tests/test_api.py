"""Objects that connect (issue 9.3): Suite exposes its data, `suite.order()`, the tokenizer one call
away, `model.loss(batch)` on what the data gives, tables read back with their metadata, reprs."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from _train_helpers import BATCH, SEQ_LEN, build_data, run_train
from pythia_suite.checkpoints import Suite
from pythia_suite.data import TrainingOrder
from pythia_suite.errors import UserError
from pythia_suite.model import as_tokens, causal_lm_loss


@pytest.fixture(scope="module")
def prefix(tmp_path_factory):
    return build_data(tmp_path_factory.mktemp("api"))


@pytest.fixture(scope="module")
def suite_dir(prefix, tmp_path_factory):
    out = tmp_path_factory.mktemp("api_suite") / "suite"
    run_train(prefix, out, steps=6, checkpoint_every=4)
    return out


def test_suite_exposes_data_batch_size_seq_len_tokenizer(suite_dir, prefix):
    suite = Suite.load(suite_dir)
    assert suite.data_prefix.resolve() == prefix.resolve()
    assert (suite.batch_size, suite.seq_len) == (BATCH, SEQ_LEN)
    assert suite.tokenizer_path.resolve() == prefix.with_name("corpus.tokenizer.json").resolve()
    assert suite.tokenizer.decode(suite.tokenizer.encode("alpha beta").ids) == "alpha beta"
    order = suite.order()
    assert isinstance(order, TrainingOrder) and order.batch_size == BATCH  # not Pythia's 1024
    assert np.array_equal(order.batch(3), TrainingOrder(prefix, batch_size=BATCH).batch(3))


def test_suite_and_order_reprs_are_readable(suite_dir):
    suite = Suite.load(suite_dir)
    assert repr(suite) == (f"Suite('suite', 1 models [micro-50k], steps 0..6, batch_size={BATCH}, seq_len={SEQ_LEN}, "
                           f"data={str(suite.data_prefix)!r})")
    r = repr(suite.order())
    assert r.startswith("TrainingOrder(") and f"batch_size={BATCH}" in r and f"item_len={SEQ_LEN + 1}" in r


def test_pythia_index_has_no_local_data():
    suite = Suite.load()
    assert suite.data_prefix is None and suite.batch_size == 1024 and suite.seq_len == 2048
    with pytest.raises(UserError, match="names no local training data; pass its prefix"):
        suite.order()
    assert "Suite('pythia', 20 models [pythia-14m, pythia-14m-deduped, pythia-31m, ..., pythia-12b-deduped]" in repr(suite)


def test_order_without_batch_size_warns_on_unknown_data(prefix):
    # the data has fewer items than 1024: the warning comes before the error it leads to
    with pytest.warns(UserWarning, match="no batch size given and none recorded; assuming Pythia's 1024"):
        with pytest.raises(UserError, match="fewer than one batch of 1024"):
            TrainingOrder(prefix)


def test_order_without_batch_size_on_pythia_files_is_silent(pythia_prefix):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert TrainingOrder(pythia_prefix).batch_size == 1024


def test_order_reads_batch_size_from_the_sidecar(prefix, tmp_path):
    import json
    import shutil

    for ext in (".bin", ".idx", ".json", ".tokenizer.json"):
        shutil.copyfile(f"{prefix}{ext}", tmp_path / f"corpus{ext}")
    meta = json.loads((tmp_path / "corpus.json").read_text())
    (tmp_path / "corpus.json").write_text(json.dumps({**meta, "batch_size": 4}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert TrainingOrder(tmp_path / "corpus").batch_size == 4


def test_text_decode_and_find(prefix):
    order = TrainingOrder(prefix, batch_size=BATCH)
    tok = order.tokenizer
    assert order.decode(5) == tok.decode(order.sequence(5).tolist(), skip_special_tokens=False)
    texts = order.text(2)
    assert len(texts) == BATCH and texts[1] == order.decode(2 * BATCH + 1)
    # a token run taken from the order is found where it was taken, with its step
    i, at = 2 * BATCH + 3, 5
    query = order.sequence(i)[at : at + 6]
    found = order.find(query)
    assert list(found.columns) == ["sequence", "offset", "step"]
    assert ((found["sequence"] == i) & (found["offset"] == at) & (found["step"] == 2)).any()
    for r in found.itertuples():  # and every hit is a real occurrence
        assert np.array_equal(order.sequence(r.sequence)[r.offset : r.offset + 6], query)
    assert (found["step"] == found["sequence"] // BATCH).all()
    assert len(order.find(query, limit=1)) == 1
    # a string goes through the data's tokenizer
    word = order.find(" gamma delta")
    assert len(word) > 0 and all(" gamma delta" in order.decode(s) for s in word["sequence"][:5])
    assert len(order.find([299, 299, 299, 299])) == 0
    with pytest.raises(UserError, match="non-empty"):
        order.find([])


def test_find_on_a_reordered_order(prefix):
    order = TrainingOrder(prefix, batch_size=BATCH, seed=3)
    query = order.sequence(17)[2:9]
    found = order.find(query)
    assert ((found["sequence"] == 17) & (found["offset"] == 2)).any()
    # items past the last whole batch are never trained on: never found, reordered or not
    raw = np.fromfile(f"{prefix}.bin", dtype=np.uint16).reshape(-1, order.item_len)
    for o in (order, TrainingOrder(prefix, batch_size=BATCH)):
        n = o.num_steps * BATCH
        assert len(raw) > n  # the data has a partial last batch
        dropped = raw[o.permutation[n] if o.permutation is not None else n]
        hits = o.find(dropped[:3])
        assert (hits["sequence"] < n).all() and (hits["step"] < o.num_steps).all()


def test_model_loss_takes_the_batch_as_the_data_gives_it(suite_dir):
    suite = Suite.load(suite_dir)
    order = suite.order()
    batch = order.batch(1)  # uint16 numpy, (B, seq_len + 1)
    assert batch.dtype == np.uint16
    model = suite.load_model("micro-50k", 4)  # from_pretrained: eval mode
    loss = model.loss(batch)
    assert loss.dtype == torch.float32 and loss.ndim == 0 and not loss.requires_grad
    tokens = torch.from_numpy(batch.astype(np.int64))
    with torch.no_grad():
        expected = causal_lm_loss(model(tokens[:, :-1]), tokens[:, 1:])
    # the same float32 operations on the same shapes in one process: exactly equal
    assert loss.item() == expected.item()
    assert model.loss(batch.astype(np.int32)).item() == expected.item()
    # micro-batches of 3 rows: the same per-token losses, averaged in float64 in another grouping;
    # a float32 mean of B*T terms moves by a few eps relative, 1e-5 is ~84 eps
    assert model.loss(batch, micro_batch=3).item() == pytest.approx(expected.item(), rel=1e-5)
    model.train()
    assert model.loss(batch).requires_grad  # training mode: a graph, for backward()
    assert not model.loss(batch, grad=False).requires_grad
    with pytest.raises(UserError, match="integers"):
        as_tokens(np.zeros((2, 3), dtype=np.float32))
    assert as_tokens(np.arange(4, dtype=np.uint16)).shape == (1, 4)


def test_read_table_returns_its_metadata(tmp_path):
    from pythia_suite.tables import read_table, write_table

    df = pd.DataFrame({"suite": ["s"], "model": ["m"], "params": [1], "step": [2], "tokens_seen": [3],
                       "val_loss": [1.5], "val_items": [4]})
    write_table(df, tmp_path / "t.parquet", "validation_log", config={"x": 1}, seeds={"init": 7})
    back = read_table(tmp_path / "t.parquet")
    assert back.attrs["schema"] == "validation_log"
    assert back.attrs["config"] == {"x": 1} and back.attrs["seeds"] == {"init": 7}
    assert back["val_loss"].tolist() == [1.5]
    with pytest.raises(UserError, match="table not found"):
        read_table(tmp_path / "missing.parquet")


def test_model_names_in_every_form():
    suite = Suite.load()
    assert suite.model_name("70m") == suite.model_name("EleutherAI/pythia-70m") == "pythia-70m"
    assert suite.model_name("70m-deduped") == "pythia-70m-deduped"
    assert suite.steps("70m") == suite.steps("pythia-70m")
    assert suite.resolve("70m", 1000).model == "pythia-70m"
    with pytest.raises(UserError, match=r"unknown model '70M' \(did you mean pythia-70m\?\)"):
        suite.model_name("70M")


def test_suite_checkpoints_as_a_frame(suite_dir):
    suite = Suite.load(suite_dir)
    frame = suite.frame()
    assert list(frame.columns) == ["model", "params", "step", "tokens_seen", "location", "sha256", "parent"]
    assert frame["step"].tolist() == suite.steps("micro-50k") and (frame["parent"] == "").all()
    assert (frame["tokens_seen"] == frame["step"] * BATCH * SEQ_LEN).all()
    assert frame["sha256"].str.fullmatch("[0-9a-f]{64}").all() and (frame["params"] == suite.params("micro-50k")).all()
    assert len(suite.frame("micro-50k")) == len(frame)
