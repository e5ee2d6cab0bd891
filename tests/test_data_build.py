"""`data build`: tokenize, pack, shuffle once; determinism, inputs, sidecar, verify."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import (
    CORPUS_SEED,
    CORPUS_SEQ_LEN,
    CORPUS_VOCAB,
    assert_one_error_line,
    copy_prefix,
    flip_byte,
    listing,
    run_cli,
    write_hf_dataset,
    write_jsonl,
    write_parquet,
    write_txt,
)
from pythia_suite.data import IndexedDataset, TrainingOrder, build, read_sidecar, verify
from pythia_suite.data.build import EOD_TOKEN, load_tokenizer, token_dtype
from pythia_suite.errors import UserError

ITEM = CORPUS_SEQ_LEN + 1


def sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def rows(prefix) -> np.ndarray:
    ds = IndexedDataset(prefix)
    return np.asarray(ds.tokens).reshape(len(ds), -1)


def sorted_rows(a: np.ndarray) -> np.ndarray:
    return a[np.lexsort(a.T[::-1])]


def expected_stream(tokenizer_file, docs) -> np.ndarray:
    """The unshuffled token stream: each document's ids, then the end-of-document id."""
    tok = load_tokenizer(tokenizer_file)
    eod = tok.token_to_id(EOD_TOKEN)
    out: list[int] = []
    for d in docs:
        out += tok.encode(d, add_special_tokens=False).ids + [eod]
    return np.array(out, np.int64)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, corpus_docs):
    d = tmp_path_factory.mktemp("inputs")
    return {
        "txt": write_txt(d / "corpus.txt", corpus_docs),
        "jsonl": write_jsonl(d / "corpus.jsonl", corpus_docs),
        "parquet": write_parquet(d / "corpus.parquet", corpus_docs),
        "datasets": write_hf_dataset(d / "corpus_ds", corpus_docs),
    }


# ---- the reference build -----------------------------------------------------------------------


def test_outputs_and_sidecar(base_build, tokenizer_path, corpus_docs, corpus_txt):
    prefix = base_build.prefix
    assert sorted(p.name for p in prefix.parent.iterdir()) == [
        "corpus.bin", "corpus.idx", "corpus.json", "corpus.tokenizer.json"]  # no temporaries left
    meta = read_sidecar(prefix)
    assert meta == base_build.sidecar
    tok = load_tokenizer(tokenizer_path)
    stream = expected_stream(tokenizer_path, corpus_docs)
    n = len(stream) // ITEM
    assert n > 100  # a few hundred documents give a few hundred items
    assert meta["format"] == "pythia-suite/data/v1"
    assert meta["seq_len"] == CORPUS_SEQ_LEN
    assert meta["item_len"] == ITEM
    assert meta["n_sequences"] == n == base_build.n_sequences
    assert meta["dtype"] == "uint16"
    assert meta["vocab_size"] == tok.get_vocab_size(with_added_tokens=True)
    assert 256 < meta["vocab_size"] <= CORPUS_VOCAB
    assert meta["eod_id"] == tok.token_to_id(EOD_TOKEN) == 0
    assert meta["seed"] == CORPUS_SEED
    assert meta["tokenizer"] == "corpus.tokenizer.json"
    assert meta["tokenizer_sha256"] == sha(tokenizer_path)
    assert meta["bin_sha256"] == sha(f"{prefix}.bin")
    assert meta["idx_sha256"] == sha(f"{prefix}.idx")
    assert meta["n_documents"] == len(corpus_docs) == base_build.n_documents
    assert meta["n_tokens"] == len(stream) == base_build.n_tokens
    assert meta["dropped_tokens"] == len(stream) - n * ITEM == base_build.dropped_tokens
    assert 0 <= meta["dropped_tokens"] < ITEM
    assert meta["inputs"] == [str(corpus_txt)]
    assert isinstance(meta["pythia_suite_version"], str)


def test_packing_and_shuffle(base_build, tokenizer_path, corpus_docs):
    """bin row j is stream item perm[j], perm = Generator(PCG64(seed)).permutation(n)."""
    prefix = base_build.prefix
    stream = expected_stream(tokenizer_path, corpus_docs)
    n = len(stream) // ITEM
    items = stream[: n * ITEM].reshape(n, ITEM)
    perm = np.random.Generator(np.random.PCG64(CORPUS_SEED)).permutation(n)
    got = rows(prefix)
    assert got.dtype == np.uint16
    np.testing.assert_array_equal(got, items[perm])
    # inverting the permutation gives back the unshuffled stream
    unshuffled = np.empty_like(got)
    unshuffled[perm] = got
    np.testing.assert_array_equal(unshuffled.reshape(-1), stream[: n * ITEM])
    # and the index is the fixed-length one: every item ITEM tokens, back to back
    ds = IndexedDataset(prefix)
    assert ds.sizes.tolist() == [ITEM] * n
    assert ds.pointers.tolist() == [i * ITEM * 2 for i in range(n)]
    assert ds.doc_idx.tolist() == list(range(n + 1))


def test_build_works_with_training_order(base_build):
    o = TrainingOrder(base_build.prefix, batch_size=8)
    assert o.seq_len == CORPUS_SEQ_LEN
    np.testing.assert_array_equal(o.batch(1), rows(base_build.prefix)[8:16])


def test_verify_passes_on_a_fresh_build(base_build, capsys):
    report = verify(base_build.prefix)
    assert report.ok and report.problems == []
    assert report.n_items == base_build.n_sequences
    assert any("corpus.bin: sha256 matches" in c for c in report.checked)
    assert any("corpus.idx: sha256 matches" in c for c in report.checked)
    rc, out, err = run_cli(capsys, "data", "verify", base_build.prefix)
    assert (rc, err) == (0, "")
    assert "ok: corpus.bin: sha256 matches" in out


# ---- determinism -------------------------------------------------------------------------------


def test_same_seed_same_bytes(tmp_path, base_build, corpus_txt):
    """A second build from scratch (tokenizer retrained too) is identical, byte for byte."""
    r = build([corpus_txt], tmp_path / "again", seq_len=CORPUS_SEQ_LEN, vocab_size=CORPUS_VOCAB, seed=CORPUS_SEED)
    base = base_build.prefix
    for ext in (".bin", ".idx", ".tokenizer.json"):
        assert sha(f"{tmp_path / 'again'}{ext}") == sha(f"{base}{ext}"), ext
    assert r.sidecar["bin_sha256"] == base_build.sidecar["bin_sha256"]
    assert r.sidecar["idx_sha256"] == base_build.sidecar["idx_sha256"]
    assert r.sidecar["tokenizer_sha256"] == base_build.sidecar["tokenizer_sha256"]


def test_other_seed_other_order_same_items(tmp_path, base_build, tokenizer_path, corpus_txt):
    r = build([corpus_txt], tmp_path / "s2", seq_len=CORPUS_SEQ_LEN, tokenizer=tokenizer_path, seed=CORPUS_SEED + 1)
    a, b = rows(base_build.prefix), rows(tmp_path / "s2")
    assert a.shape == b.shape
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(sorted_rows(a), sorted_rows(b))
    assert r.sidecar["bin_sha256"] != base_build.sidecar["bin_sha256"]
    assert r.sidecar["idx_sha256"] == base_build.sidecar["idx_sha256"]  # the index only depends on n
    assert r.sidecar["seed"] == CORPUS_SEED + 1
    # the tokenizer given is recorded relative to the sidecar's folder, with its checksum
    assert (tmp_path / r.sidecar["tokenizer"]).resolve() == tokenizer_path.resolve()
    assert r.sidecar["tokenizer_sha256"] == sha(tokenizer_path)
    assert not Path(f"{tmp_path / 's2'}.tokenizer.json").exists()


@pytest.mark.parametrize("kind", ["txt", "jsonl", "parquet", "datasets"])
def test_every_input_type_gives_the_same_bin(tmp_path, base_build, tokenizer_path, inputs, kind):
    r = build([inputs[kind]], tmp_path / "x", seq_len=CORPUS_SEQ_LEN, tokenizer=tokenizer_path, seed=CORPUS_SEED)
    assert sha(tmp_path / "x.bin") == sha(f"{base_build.prefix}.bin")
    assert sha(tmp_path / "x.idx") == sha(f"{base_build.prefix}.idx")
    assert r.n_documents == base_build.n_documents
    assert r.sidecar["inputs"] == [str(inputs[kind])]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.bin", "x.idx", "x.json"]


def test_several_inputs_are_read_in_order(tmp_path, base_build, tokenizer_path, corpus_docs):
    half = len(corpus_docs) // 2
    a = write_jsonl(tmp_path / "a.jsonl", corpus_docs[:half])
    b = write_parquet(tmp_path / "b.parquet", corpus_docs[half:])
    build([a, b], tmp_path / "x", seq_len=CORPUS_SEQ_LEN, tokenizer=tokenizer_path, seed=CORPUS_SEED)
    assert sha(tmp_path / "x.bin") == sha(f"{base_build.prefix}.bin")
    build([b, a], tmp_path / "y", seq_len=CORPUS_SEQ_LEN, tokenizer=tokenizer_path, seed=CORPUS_SEED)
    assert sha(tmp_path / "y.bin") != sha(f"{base_build.prefix}.bin")


def test_cli_build_matches_library_build(tmp_path, base_build, corpus_txt, capsys):
    rc, out, err = run_cli(capsys, "data", "build", corpus_txt, "--out", tmp_path / "c", "--seq-len", CORPUS_SEQ_LEN,
                           "--vocab-size", CORPUS_VOCAB, "--seed", CORPUS_SEED, "--quiet")
    assert (rc, err) == (0, "")
    assert f"{base_build.n_sequences} sequences of {ITEM} tokens" in out
    for ext in (".bin", ".idx", ".tokenizer.json"):
        assert sha(f"{tmp_path / 'c'}{ext}") == sha(f"{base_build.prefix}{ext}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.bin", "c.idx", "c.json", "c.tokenizer.json"]


def test_default_seed_is_1234(tmp_path, tokenizer_path, corpus_txt):
    r = build([corpus_txt], tmp_path / "d", seq_len=CORPUS_SEQ_LEN, tokenizer=tokenizer_path)
    assert r.sidecar["seed"] == 1234


# ---- dtype, jsonl field, item packing details --------------------------------------------------


def test_requested_dtype(tmp_path, base_build, tokenizer_path, corpus_txt):
    r = build([corpus_txt], tmp_path / "w", seq_len=CORPUS_SEQ_LEN, tokenizer=tokenizer_path, seed=CORPUS_SEED,
              dtype="int32")
    assert r.sidecar["dtype"] == "int32"
    assert IndexedDataset(tmp_path / "w").dtype == np.int32
    np.testing.assert_array_equal(rows(tmp_path / "w"), rows(base_build.prefix))
    assert verify(tmp_path / "w").ok


def test_token_dtype_choice():
    assert token_dtype(50277, None) == np.uint16
    assert token_dtype(65536, None) == np.uint16
    assert token_dtype(65537, None) == np.int32
    assert token_dtype(256, "uint8") == np.uint8
    with pytest.raises(UserError, match="holds ids up to 255"):
        token_dtype(257, "uint8")
    with pytest.raises(UserError, match="must be an integer type"):
        token_dtype(100, "float32")
    with pytest.raises(UserError, match="unknown dtype"):
        token_dtype(100, "nonsense")


def test_text_field_and_short_corpus(tmp_path, tokenizer_path):
    docs = ["one two three", "four five", "", "six"]  # the empty record is skipped
    write_jsonl(tmp_path / "c.jsonl", docs, field="body")
    r = build([tmp_path / "c.jsonl"], tmp_path / "o", seq_len=3, tokenizer=tokenizer_path, seed=0,
              text_field="body")
    stream = expected_stream(tokenizer_path, [d for d in docs if d])
    n = len(stream) // 4
    assert r.n_documents == 3 and r.n_tokens == len(stream) and r.n_sequences == n
    perm = np.random.Generator(np.random.PCG64(0)).permutation(n)
    np.testing.assert_array_equal(rows(tmp_path / "o"), stream[: 4 * n].reshape(n, 4)[perm])


def test_txt_documents_are_blank_line_separated(tmp_path, tokenizer_path):
    (tmp_path / "c.txt").write_text("\n\nfirst line\nsecond line\n \n\t\nnext doc\n\n\n\nlast", encoding="utf-8")
    r = build([tmp_path / "c.txt"], tmp_path / "o", seq_len=1, tokenizer=tokenizer_path, seed=0)
    stream = expected_stream(tokenizer_path, ["first line\nsecond line", "next doc", "last"])
    assert r.n_documents == 3 and r.n_tokens == len(stream)
    assert r.dropped_tokens == len(stream) % 2
    unshuffled = np.empty((r.n_sequences, 2), np.int64)
    unshuffled[np.random.Generator(np.random.PCG64(0)).permutation(r.n_sequences)] = rows(tmp_path / "o")
    np.testing.assert_array_equal(unshuffled.reshape(-1), stream[: 2 * r.n_sequences])


# ---- verify ------------------------------------------------------------------------------------


def test_verify_detects_a_flipped_bin_byte(tmp_path, base_build, capsys):
    prefix = copy_prefix(base_build.prefix, tmp_path)
    flip_byte(Path(f"{prefix}.bin"), 1000)
    report = verify(prefix)
    assert not report.ok
    assert len(report.problems) == 1 and "corpus.bin: sha256" in report.problems[0]
    before = listing(tmp_path)
    rc, out, err = run_cli(capsys, "data", "verify", prefix)
    assert rc == 2
    line = assert_one_error_line(err)
    assert "corpus.bin: sha256" in line and "does not match the sidecar" in line
    assert listing(tmp_path) == before


def test_verify_detects_a_flipped_idx_byte(tmp_path, base_build, capsys):
    prefix = copy_prefix(base_build.prefix, tmp_path)
    # the last doc_idx entry: structure check fails before checksums are computed
    idx = Path(f"{prefix}.idx")
    flip_byte(idx, idx.stat().st_size - 8)
    rc, _, err = run_cli(capsys, "data", "verify", prefix)
    assert rc == 2
    assert "doc_idx must run from 0 to" in assert_one_error_line(err)


def test_verify_detects_sidecar_disagreement(tmp_path, base_build, capsys):
    prefix = copy_prefix(base_build.prefix, tmp_path)
    meta = json.loads(Path(f"{prefix}.json").read_text())
    meta["n_sequences"] += 1
    meta["dtype"] = "int32"
    Path(f"{prefix}.json").write_text(json.dumps(meta))
    report = verify(prefix)
    assert report.problems == [
        f"sidecar says n_sequences={meta['n_sequences']}, the files have {meta['n_sequences'] - 1}",
        "sidecar says dtype='int32', the files have 'uint16'",
    ]
    rc, _, err = run_cli(capsys, "data", "verify", prefix)
    assert rc == 2 and "sidecar says n_sequences" in assert_one_error_line(err)


def test_verify_without_sidecar(tmp_path, base_build, capsys):
    prefix = copy_prefix(base_build.prefix, tmp_path)
    Path(f"{prefix}.json").unlink()
    report = verify(prefix)
    assert report.ok
    assert "checksums not recorded" in report.checked[-1]
    Path(f"{prefix}.json").write_text("{not json")
    rc, _, err = run_cli(capsys, "data", "verify", prefix)
    assert rc == 2 and "is not valid JSON" in assert_one_error_line(err)


def test_build_refuses_to_overwrite_without_force(tmp_path, corpus_txt, tokenizer_path, capsys):
    from conftest import assert_one_error_line, listing

    out = tmp_path / "d" / "x"
    args = ["data", "build", corpus_txt, "--out", out, "--seq-len", "15", "--tokenizer", tokenizer_path, "--quiet"]
    assert run_cli(capsys, *args)[0] == 0
    before = listing(tmp_path)
    rc, _, err = run_cli(capsys, *args[:-1], "--seed", "9", "--quiet")
    assert rc == 2 and "x.bin already exists" in assert_one_error_line(err) and "--force" in err
    assert listing(tmp_path) == before
    assert run_cli(capsys, *args, "--seed", "9", "--force")[0] == 0
    assert json.loads(Path(f"{out}.json").read_text())["seed"] == 9
    # a trained tokenizer is an output too: PREFIX.tokenizer.json alone is enough to refuse
    bpe = tmp_path / "b" / "y"
    bpe.parent.mkdir()
    Path(f"{bpe}.tokenizer.json").write_text("{}")
    rc, _, err = run_cli(capsys, "data", "build", corpus_txt, "--out", bpe, "--seq-len", "15", "--vocab-size", "300")
    assert rc == 2 and "y.tokenizer.json already exists" in assert_one_error_line(err)


@pytest.mark.parametrize("form", ["slash", "existing-dir"])
def test_build_refuses_a_folder_as_out(tmp_path, corpus_txt, tokenizer_path, capsys, form):
    from conftest import assert_one_error_line

    monkey = tmp_path / "data"
    if form == "existing-dir":
        monkey.mkdir()
    out = f"{monkey}/" if form == "slash" else str(monkey)
    rc, _, err = run_cli(capsys, "data", "build", corpus_txt, "--out", out, "--seq-len", "15",
                         "--tokenizer", tokenizer_path)
    assert rc == 2 and "is a folder; give a dataset prefix inside it, e.g." in assert_one_error_line(err)
    assert not (tmp_path / "data.bin").exists() and not (tmp_path / "data.json").exists()


def test_batch_size_is_recorded_and_data_batch_uses_it_without_warning(tmp_path, base_build, corpus_txt, capsys):
    prefix = tmp_path / "b"
    rc, out, err = run_cli(capsys, "data", "build", corpus_txt, "--out", prefix, "--seq-len", CORPUS_SEQ_LEN,
                           "--vocab-size", CORPUS_VOCAB, "--seed", CORPUS_SEED, "--batch-size", 4, "--quiet")
    assert (rc, err) == (0, "")
    n = base_build.n_sequences
    assert out.rstrip().endswith(f"; batch size 4 ({n // 4} steps)")
    assert json.loads(Path(f"{prefix}.json").read_text())["batch_size"] == 4
    assert sha(f"{prefix}.bin") == sha(f"{base_build.prefix}.bin")  # the tokens do not depend on it
    rc, out, err = run_cli(capsys, "data", "batch", prefix, "--step", 1, "--out", tmp_path / "s1.npy")
    assert (rc, err) == (0, "")  # no "no batch size given" warning
    assert np.array_equal(np.load(tmp_path / "s1.npy"), TrainingOrder(base_build.prefix, batch_size=4).batch(1))
    # the reference build records none: opening it without a batch size warns
    assert "batch_size" not in base_build.sidecar
    with pytest.warns(UserWarning, match="no batch size given and none recorded"):
        with pytest.raises(UserError, match="fewer than one batch of 1024"):
            TrainingOrder(base_build.prefix)


@pytest.mark.parametrize("size, message", [(0, "--batch-size must be a positive integer, got 0"),
                                           (10**6, "fewer than one batch of --batch-size 1000000")])
def test_bad_batch_size_is_refused_and_writes_nothing(tmp_path, corpus_txt, tokenizer_path, capsys, size, message):
    rc, out, err = run_cli(capsys, "data", "build", corpus_txt, "--out", tmp_path / "d" / "c", "--seq-len",
                           CORPUS_SEQ_LEN, "--tokenizer", tokenizer_path, "--batch-size", size, "--quiet")
    assert rc == 2 and message in assert_one_error_line(err)
    assert not (tmp_path / "d").exists()
