"""`pythia-suite data ...` in-process: the batch viewer, and every mistake a user can make ending
in one `error: ...` line, exit status 2, no traceback, and no half-written output."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from conftest import (
    CORPUS_SEQ_LEN,
    assert_one_error_line,
    listing,
    run_cli,
    write_jsonl,
    write_txt,
)
from pythia_suite.data import batch_fingerprint
from pythia_suite.data.indexed import write_dataset

# ---- the batch viewer on Pythia-shaped data ----------------------------------------------------


def test_batch_steps_inclusive(tmp_path, pythia_prefix, pythia_tokens_array, capsys):
    out = tmp_path / "x.npy"
    rc, stdout, err = run_cli(capsys, "data", "batch", pythia_prefix, "--step", 1, "--end-step", 2, "--out", out)
    assert (rc, err) == (0, "")
    got = np.load(out)
    assert got.shape == (2048, 2049) and got.dtype == np.uint16
    np.testing.assert_array_equal(got, pythia_tokens_array[1024:3072])
    assert "steps 1..2 (inclusive), shape (2048, 2049), dtype uint16" in stdout
    assert f"step 1 fingerprint {batch_fingerprint(pythia_tokens_array[1024:2048])}" in stdout
    assert f"step 2 fingerprint {batch_fingerprint(pythia_tokens_array[2048:3072])}" in stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy"]  # no temporaries left


def test_batch_single_step_default(tmp_path, pythia_prefix, pythia_tokens_array, capsys):
    for name in (pythia_prefix, f"{pythia_prefix}.bin", f"{pythia_prefix}.idx"):
        rc, stdout, _ = run_cli(capsys, "data", "batch", name, "--step", 0, "--out", tmp_path / "b.npy")
        assert rc == 0
        np.testing.assert_array_equal(np.load(tmp_path / "b.npy"), pythia_tokens_array[:1024])
        assert stdout.count("fingerprint") == 1


def test_batch_custom_batch_size(tmp_path, capsys):
    write_dataset(tmp_path / "s", [np.arange(4) + 4 * i for i in range(7)], np.int32)
    rc, _, _ = run_cli(capsys, "data", "batch", tmp_path / "s", "--step", 1, "--end-step", 2, "--batch-size", 2,
                       "--out", tmp_path / "o.npy")
    assert rc == 0
    got = np.load(tmp_path / "o.npy")
    assert got.dtype == np.int32
    assert got.tolist() == [list(range(4 * i, 4 * i + 4)) for i in range(2, 6)]


def test_batch_overwrites_existing_output_only_on_success(tmp_path, pythia_prefix, capsys):
    out = tmp_path / "keep.npy"
    np.save(out, np.arange(3))
    rc, _, err = run_cli(capsys, "data", "batch", pythia_prefix, "--step", 7, "--out", out)
    assert rc == 2
    assert_one_error_line(err)
    assert np.load(out).tolist() == [0, 1, 2]


@pytest.mark.parametrize("cmd", [[], ["data"], ["data", "build"], ["data", "batch"], ["data", "verify"],
                                 ["data", "shard"], ["data", "unshard"]])
def test_help_everywhere(cmd, capsys):
    from pythia_suite.cli import main

    with pytest.raises(SystemExit) as e:
        main([*cmd, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "usage:" in out
    if len(cmd) == 2:
        assert "example:\n  pythia-suite data " + cmd[1] in out


def test_usage_error_is_one_line(capsys, tmp_path):
    rc, _, err = run_cli(capsys, "data", "batch", tmp_path / "x", "--step", "one", "--out", tmp_path / "o.npy")
    assert rc == 2
    assert "invalid int value" in assert_one_error_line(err)
    rc, _, err = run_cli(capsys, "data", "build", tmp_path / "x.txt", "--out", tmp_path / "o", "--seq-len", 4,
                         "--vocab-size", 300, "--tokenizer", tmp_path / "t.json")
    assert rc == 2
    assert "not allowed with argument" in assert_one_error_line(err)
    assert list(tmp_path.iterdir()) == []


# ---- every bad input ---------------------------------------------------------------------------
#
# Each case prepares files in `d` and returns (argv, substring expected in the error line).


def _dataset(d: Path, name: str = "ds") -> Path:
    write_dataset(d / name, [np.arange(5) + i for i in range(6)], np.uint16)
    return d / name


def _patch_idx(d: Path, offset: int, data: bytes) -> Path:
    prefix = _dataset(d)
    idx = Path(f"{prefix}.idx")
    raw = bytearray(idx.read_bytes())
    raw[offset : offset + len(data)] = data
    idx.write_bytes(bytes(raw))
    return prefix


def _batch(prefix, *more, out="out.npy"):
    return ["data", "batch", prefix, "--step", 0, "--batch-size", 2, "--out", out, *more]


def case_missing_path(d):
    return _batch(d / "nothere"), "nothere.idx not found"


def case_missing_bin(d):
    p = _dataset(d)
    Path(f"{p}.bin").unlink()
    return _batch(p), "ds.bin not found"


def case_wrong_magic(d):
    return _batch(_patch_idx(d, 0, b"NOTANIDX\x00")), "is not a Megatron index: magic"


def case_wrong_version(d):
    return _batch(_patch_idx(d, 9, struct.pack("<Q", 3))), "index version 3 is not supported (only version 1)"


def case_bad_dtype_code(d):
    return _batch(_patch_idx(d, 17, b"\x09")), "unknown dtype code 9; valid codes are 1-8 (1=uint8"


def case_truncated_idx_header(d):
    p = _dataset(d)
    Path(f"{p}.idx").write_bytes(Path(f"{p}.idx").read_bytes()[:20])
    return _batch(p), "shorter than the 34-byte header"


def case_truncated_idx_arrays(d):
    p = _dataset(d)
    Path(f"{p}.idx").write_bytes(Path(f"{p}.idx").read_bytes()[:-9])
    return _batch(p), "is truncated: header announces 6 items and 7 doc_idx entries"


def case_idx_trailing_bytes(d):
    p = _dataset(d)
    with open(f"{p}.idx", "ab") as f:
        f.write(b"\x00")
    return _batch(p), "1 unexpected trailing bytes"


def case_truncated_bin(d):
    p = _dataset(d)
    Path(f"{p}.bin").write_bytes(Path(f"{p}.bin").read_bytes()[:-4])
    return _batch(p), "ds.bin is truncated: the index needs 60 bytes, the file has 56"


def case_bin_too_long(d):
    p = _dataset(d)
    with open(f"{p}.bin", "ab") as f:
        f.write(b"\x00\x00")
    return _batch(p), "ds.bin has 62 bytes but its index points to 60"


def case_step_past_end(d):
    p = _dataset(d)  # 6 items, batch 2: steps 0..2
    return ["data", "batch", p, "--step", 3, "--batch-size", 2, "--out", "o.npy"], \
        "step 3 is past the end: the last step is 2"


def case_end_step_past_end(d):
    p = _dataset(d)
    return ["data", "batch", p, "--step", 1, "--end-step", 9, "--batch-size", 2, "--out", "o.npy"], \
        "end step 9 is past the end: the last step is 2"


def case_negative_step(d):
    return ["data", "batch", _dataset(d), "--step", -1, "--batch-size", 2, "--out", "o.npy"], \
        "step -1 is negative; steps run from 0 to 2"


def case_end_before_start(d):
    return ["data", "batch", _dataset(d), "--step", 2, "--end-step", 1, "--batch-size", 2, "--out", "o.npy"], \
        "end step 1 is before start step 2"


def case_final_partial_batch(d):
    p = _dataset(d)  # 6 items, batch 4: one step and a partial batch of 2
    return ["data", "batch", p, "--step", 1, "--batch-size", 4, "--out", "o.npy"], \
        "the last step is 0 (6 items, batch size 4; the final partial batch of 2 items is not a step)"


def case_batch_size_zero(d):
    return ["data", "batch", _dataset(d), "--step", 0, "--batch-size", 0, "--out", "o.npy"], \
        "batch size must be a positive integer"


def case_variable_length_items(d):
    write_dataset(d / "v", [np.arange(5), np.arange(4)], np.uint16)
    return _batch(d / "v"), "items of different lengths"


def case_out_not_npy(d):
    return _batch(_dataset(d), out="out.txt"), "--out must name a .npy file, got out.txt"


def case_out_dir_is_a_file(d):
    (d / "afile").write_text("x")
    return _batch(_dataset(d), out="afile/out.npy"), "afile"


def case_verify_missing(d):
    return ["data", "verify", d / "nothere"], "not found"


def case_pythia_step_3(d, pythia_prefix):
    return ["data", "batch", pythia_prefix, "--step", 3, "--out", "o.npy"], \
        "step 3 is past the end: the last step is 2 (3077 items, batch size 1024; " \
        "the final partial batch of 5 items is not a step)"


def case_pythia_negative(d, pythia_prefix):
    return ["data", "batch", pythia_prefix, "--step", -1, "--end-step", 1, "--out", "o.npy"], \
        "start step -1 is negative; steps run from 0 to 2"


# build errors


def _build(inp, *more):
    return ["data", "build", inp, "--out", "built", "--seq-len", 8, *more]


def case_build_missing_input(d, tok):
    return _build(d / "nothere.txt", "--tokenizer", tok), "input not found"


def case_build_unsupported_suffix(d, tok):
    (d / "corpus.csv").write_text("text\nhello\n")
    return _build(d / "corpus.csv", "--tokenizer", tok), "unsupported input"


def case_build_folder_not_a_dataset(d, tok):
    (d / "folder").mkdir()
    return _build(d / "folder", "--tokenizer", tok), "not a dataset saved with `datasets` save_to_disk"


def case_build_empty_txt_vocab(d, tok):
    (d / "empty.txt").write_text("\n\n   \n\t\n\n")
    return _build(d / "empty.txt", "--vocab-size", 300), "the corpus is empty"


def case_build_empty_txt_tokenizer(d, tok):
    (d / "empty.txt").write_text("\n\n   \n\n")
    return _build(d / "empty.txt", "--tokenizer", tok), "the corpus is empty"


def case_build_empty_jsonl_vocab(d, tok):
    (d / "empty.jsonl").write_text("")
    return _build(d / "empty.jsonl", "--vocab-size", 300), "the corpus is empty"


def case_build_empty_jsonl_tokenizer(d, tok):
    (d / "empty.jsonl").write_text("\n\n")
    return _build(d / "empty.jsonl", "--tokenizer", tok), "the corpus is empty"


def case_build_jsonl_only_empty_texts(d, tok):
    write_jsonl(d / "e.jsonl", ["", ""])
    return _build(d / "e.jsonl", "--tokenizer", tok), "the corpus is empty"


def case_build_malformed_jsonl(d, tok):
    (d / "bad.jsonl").write_text('{"text": "fine"}\n{"text": "broken\n')
    return _build(d / "bad.jsonl", "--tokenizer", tok), "bad.jsonl:2: not valid JSON"


def case_build_jsonl_missing_field(d, tok):
    (d / "bad.jsonl").write_text('{"text": "fine"}\n{"body": "x"}\n')
    return _build(d / "bad.jsonl", "--tokenizer", tok), "bad.jsonl:2: no 'text' field"


def case_build_jsonl_not_a_string(d, tok):
    (d / "bad.jsonl").write_text('{"text": 5}\n')
    return _build(d / "bad.jsonl", "--tokenizer", tok), "bad.jsonl:1: field 'text' is int, not a string"


def case_build_jsonl_not_an_object(d, tok):
    (d / "bad.jsonl").write_text('["text"]\n')
    return _build(d / "bad.jsonl", "--tokenizer", tok), "bad.jsonl:1: no 'text' field"


def case_build_bad_parquet(d, tok):
    (d / "bad.parquet").write_bytes(b"not parquet at all")
    return _build(d / "bad.parquet", "--tokenizer", tok), "is not a readable Parquet file"


def case_build_parquet_no_column(d, tok):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"body": ["a b c"]}), d / "c.parquet")
    return _build(d / "c.parquet", "--tokenizer", tok), "has no column 'text'; columns: body"


def case_build_vocab_too_big_for_dtype(d, tok):
    write_txt(d / "c.txt", ["hello world", "another one"])
    return _build(d / "c.txt", "--tokenizer", tok, "--dtype", "uint8"), "but uint8 holds ids up to 255"


def case_build_vocab_too_big_for_dtype_trained(d, tok):
    write_txt(d / "c.txt", ["hello world " * 20, "another one " * 20])
    return _build(d / "c.txt", "--vocab-size", 300, "--dtype", "uint8"), "but uint8 holds ids up to 255"


def case_build_float_dtype(d, tok):
    write_txt(d / "c.txt", ["hello world"])
    return _build(d / "c.txt", "--tokenizer", tok, "--dtype", "float32"), "token dtype must be an integer type"


def case_build_unknown_dtype(d, tok):
    write_txt(d / "c.txt", ["hello world"])
    return _build(d / "c.txt", "--tokenizer", tok, "--dtype", "bogus"), "unknown dtype 'bogus'"


def case_build_missing_tokenizer(d, tok):
    write_txt(d / "c.txt", ["hello world"])
    return _build(d / "c.txt", "--tokenizer", d / "nope.json"), "tokenizer not found"


def case_build_malformed_tokenizer(d, tok):
    write_txt(d / "c.txt", ["hello world"])
    (d / "tok.json").write_text('{"not": "a tokenizer"}')
    return _build(d / "c.txt", "--tokenizer", d / "tok.json"), "is not a tokenizers tokenizer.json"


def case_build_no_eod_token(d, tok):
    write_txt(d / "c.txt", ["hello world"])
    return _build(d / "c.txt", "--tokenizer", tok, "--eod-token", "<|nope|>"), "no end-of-document token '<|nope|>'"


def case_build_too_few_tokens(d, tok):
    write_txt(d / "c.txt", ["hi"])
    return ["data", "build", d / "c.txt", "--out", "built", "--seq-len", 1000, "--tokenizer", tok], \
        "fewer than one item of --seq-len 1000 + 1"


def case_build_seq_len_zero(d, tok):
    write_txt(d / "c.txt", ["hello world"])
    return ["data", "build", d / "c.txt", "--out", "built", "--seq-len", 0, "--tokenizer", tok], \
        "--seq-len must be a positive integer"


def case_build_negative_seed(d, tok):
    write_txt(d / "c.txt", ["hello world"])
    return _build(d / "c.txt", "--tokenizer", tok, "--seed", -1), "--seed must be non-negative"


def case_build_vocab_too_small(d, tok):
    write_txt(d / "c.txt", ["hello world"])
    return _build(d / "c.txt", "--vocab-size", 100), "--vocab-size 100 is too small"


def case_build_second_input_bad(d, tok):
    write_txt(d / "c.txt", ["hello world " * 10])
    (d / "bad.jsonl").write_text('{"text": "ok"}\nnot json\n')
    return ["data", "build", d / "c.txt", d / "bad.jsonl", "--out", "built", "--seq-len", 8, "--tokenizer", tok], \
        "bad.jsonl:2: not valid JSON"


PLAIN_CASES = [v for k, v in sorted(globals().items()) if k.startswith("case_") and not k.startswith(("case_build", "case_pythia"))]
PYTHIA_CASES = [v for k, v in sorted(globals().items()) if k.startswith("case_pythia")]
BUILD_CASES = [v for k, v in sorted(globals().items()) if k.startswith("case_build")]


def _check_error(capsys, d: Path, argv, expected: str, monkeypatch):
    monkeypatch.chdir(d)  # relative outputs ("out.npy", "built") land in d
    before = listing(d), _folders(d)
    rc, out, err = run_cli(capsys, *argv)
    assert rc == 2
    line = assert_one_error_line(err)
    assert expected in line
    assert (listing(d), _folders(d)) == before  # nothing written, nothing half-written, no temporaries


def _folders(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_dir())


@pytest.mark.parametrize("case", PLAIN_CASES, ids=lambda f: f.__name__[5:])
def test_bad_input(tmp_path, capsys, monkeypatch, case):
    d = tmp_path / "work"
    d.mkdir()
    argv, expected = case(d)
    _check_error(capsys, d, argv, expected, monkeypatch)


@pytest.mark.parametrize("case", PYTHIA_CASES, ids=lambda f: f.__name__[5:])
def test_bad_step_on_pythia_data(tmp_path, capsys, monkeypatch, pythia_prefix, case):
    argv, expected = case(tmp_path, pythia_prefix)
    _check_error(capsys, tmp_path, argv, expected, monkeypatch)


@pytest.mark.parametrize("case", BUILD_CASES, ids=lambda f: f.__name__[5:])
def test_bad_build_input(tmp_path, capsys, monkeypatch, tokenizer_path, case):
    d = tmp_path / "work"
    d.mkdir()
    tok = shutil.copy(tokenizer_path, tmp_path / "tokenizer.json")  # outside d: not part of the listing
    argv, expected = case(d, tok)
    _check_error(capsys, d, argv, expected, monkeypatch)


def test_build_error_into_missing_folder_leaves_no_files(tmp_path, capsys, tokenizer_path):
    (tmp_path / "empty.txt").write_text("\n\n")
    rc, _, err = run_cli(capsys, "data", "build", tmp_path / "empty.txt", "--out", tmp_path / "new" / "x",
                         "--seq-len", 8, "--tokenizer", tokenizer_path)
    assert rc == 2
    assert "the corpus is empty" in assert_one_error_line(err)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == [tmp_path / "empty.txt"]


def test_build_error_keeps_previous_outputs(tmp_path, capsys, tokenizer_path, corpus_txt):
    """A failed rebuild leaves an earlier good build of the same prefix untouched."""
    rc, _, _ = run_cli(capsys, "data", "build", corpus_txt, "--out", tmp_path / "p", "--seq-len", CORPUS_SEQ_LEN,
                       "--tokenizer", tokenizer_path, "--quiet")
    assert rc == 0
    before = listing(tmp_path)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "bad.jsonl").write_text("{}\n")
    rc, _, err = run_cli(capsys, "data", "build", tmp_path / "sub" / "bad.jsonl", "--out", tmp_path / "p",
                         "--seq-len", CORPUS_SEQ_LEN, "--tokenizer", tokenizer_path, "--force")
    assert rc == 2
    assert "no 'text' field" in assert_one_error_line(err)
    after = listing(tmp_path)
    after.pop("sub/bad.jsonl")
    assert after == before
