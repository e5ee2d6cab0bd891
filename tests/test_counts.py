"""Term counts over the training order (`pythia_suite.data.counts`, `pythia-suite counts`).

    .venv/bin/python -m pytest tests/test_counts.py -q

A hand-built vocabulary (a byte-level word-level tokenizer, so every id decodes to a known piece)
and token files written directly: the digit-run rule is checked against a brute-force count in
plain Python for every step, item boundaries against hand-made items, the Pythia rule against its
quirks worked by hand, and resuming against a fresh run.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pythia_suite.data.counts import (
    Term, count_numbers, count_pythia, count_terms, digit_tables, parse_terms, pythia_clean_up,
    pythia_window_numbers,
)
from pythia_suite.data.indexed import write_fixed_index
from pythia_suite.errors import UserError
from conftest import assert_one_error_line, listing, run_cli

PIECES = ["<|endoftext|>", "<|padding|>", "12", "34", " 12", " 34", "07", "7", " 7", "3", ".", "5", " 5", "x",
          "x24", "24", " 24", " times", " plus", " is", "\n", "Q", ":", " and", " A", "?", "0", " 0", "99", " 99",
          "1", " 1", " ,", "4", "2", " 2"]
ID = {p: i for i, p in enumerate(PIECES)}
ITEM = 12
BATCH = 3


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table (what byte-level tokenizers store)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


_BYTES = _bytes_to_unicode()


@pytest.fixture(scope="module")
def tokenizer_file(tmp_path_factory) -> Path:
    """A byte-level BPE whose first ids are PIECES (merged left to right), then every byte: it encodes
    any text, and each of PIECES decodes to exactly itself."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab, merges = {"<|endoftext|>": 0, "<|padding|>": 1}, []
    for p in PIECES[2:]:
        vocab["".join(_BYTES[b] for b in p.encode())] = len(vocab)
    for p in PIECES[2:]:
        chars = "".join(_BYTES[b] for b in p.encode())
        for k in range(1, len(chars)):
            vocab.setdefault(chars[:k], len(vocab))
            vocab.setdefault(chars[k], len(vocab))
            merges.append((chars[:k], chars[k]))
    for c in _BYTES.values():
        vocab.setdefault(c, len(vocab))
    tok = Tokenizer(models.BPE(vocab, merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(["<|endoftext|>", "<|padding|>"])
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    tok.save(str(path))
    return path


@pytest.fixture(scope="module")
def tok(tokenizer_file):
    from pythia_suite.data.build import load_tokenizer

    return load_tokenizer(tokenizer_file)


def write_data(folder: Path, rows: np.ndarray, tokenizer_file: Path | None) -> Path:
    """PREFIX.bin/.idx of fixed items, with a sidecar naming the tokenizer."""
    folder.mkdir(parents=True, exist_ok=True)
    prefix = folder / "data"
    rows.astype(np.uint16).tofile(f"{prefix}.bin")
    write_fixed_index(f"{prefix}.idx", np.uint16, len(rows), rows.shape[1])
    meta = {}
    if tokenizer_file is not None:
        meta["tokenizer"] = str(tokenizer_file)
    Path(f"{prefix}.json").write_text(json.dumps(meta))
    return prefix


def ids(*pieces: str) -> list[int]:
    return [ID[p] for p in pieces]


# ---- brute force, token by token -----------------------------------------------------------------


def brute_numbers(row: list[int], terms: list[str]) -> list[int]:
    """The digit-run rule read literally, on strings."""
    runs, current = [], None
    for t in row:
        piece = PIECES[t]
        body = piece[1:] if piece.startswith(" ") else piece
        if body.isdigit() and body.isascii():
            if current is not None and not piece.startswith(" "):
                current += body
            else:
                if current is not None:
                    runs.append(current)
                current = body
        else:
            if current is not None:
                runs.append(current)
            current = None
    if current is not None:
        runs.append(current)
    return [runs.count(t) for t in terms]


def brute_sequence(row: list[int], seq: tuple[int, ...]) -> int:
    return sum(tuple(row[i : i + len(seq)]) == seq for i in range(len(row) - len(seq) + 1))


def test_digit_tables_read_the_vocabulary(tok):
    t = digit_tables(tok)
    digits = {PIECES[i] for i in np.flatnonzero(t.digit[: len(PIECES)])}
    assert [tok.decode([i], skip_special_tokens=False) for i in range(len(PIECES))] == PIECES
    assert digits == {"12", "34", " 12", " 34", "07", "7", " 7", "3", "5", " 5", "24", " 24", "0", " 0", "99", " 99",
                      "1", " 1", "4", "2", " 2"}
    assert t.space[ID[" 12"]] and not t.space[ID["12"]]
    assert t.length[ID["07"]] == 2 and t.value[ID["07"]] == 7


def test_hand_made_runs(tok):
    t = digit_tables(tok)
    terms = ["12", "34", "1234", "7", "07", "3", "5", "24", "12341234"]
    cases = {
        ("12", "34"): {"1234": 1},
        (" 12", " 34"): {"12": 1, "34": 1},
        ("07",): {"07": 1},
        (" 7",): {"7": 1},
        ("3", ".", "5"): {"3": 1, "5": 1},
        ("x24",): {},
        ("x", "24"): {"24": 1},
        (" 12", "34", "12", "34"): {"12341234": 1},
        (":", "12", " 34", "7"): {"12": 1, "347": 0},
    }
    for pieces, want in cases.items():
        row = np.array([ids(*pieces) + [ID["Q"]] * (ITEM - len(pieces))])
        got = dict(zip(terms, count_numbers(row, t, terms)[0].tolist()))
        assert got == {k: want.get(k, 0) for k in terms}, pieces


def test_counts_equal_brute_force_at_every_step(tmp_path, tokenizer_file, tok):
    rng = np.random.default_rng(0)
    # mostly digit pieces, so runs of every shape (and at both ends of items) are common
    weights = np.array([0.2 if PIECES[i].strip().isdigit() else 0.05 for i in range(len(PIECES))])
    rows = rng.choice(len(PIECES), size=(BATCH * 7 + 2, ITEM), p=weights / weights.sum())
    prefix = write_data(tmp_path, rows, tokenizer_file)
    specs = ["0..99", "1234", "07", "3412", " is 24 times", "ids:2,3", "ids:3,2", "ids:10"]
    terms = parse_terms(specs, tok)
    counts = count_terms(prefix, terms, BATCH, tokenizer=tokenizer_file, workers=1, chunk_steps=2)
    assert counts.count.shape == (len(terms), 7)
    numbers = [t.text for t in terms if t.is_number]
    for step in range(7):
        want = np.zeros(len(terms), np.int64)
        for row in rows[step * BATCH : (step + 1) * BATCH].tolist():
            n = dict(zip(numbers, brute_numbers(row, numbers)))
            want += [n[t.text] if t.is_number else brute_sequence(row, t.ids) for t in terms]
        assert counts.count[:, step].tolist() == want.tolist(), step
    assert counts.count.sum() > 50  # many hits: the comparison means something
    assert counts.count_seen(0).sum() == 0
    assert counts.count_seen(7).tolist() == counts.count.sum(1).tolist()


def test_item_boundaries_are_never_crossed(tmp_path, tokenizer_file, tok):
    pad = [ID["Q"]] * (ITEM - 2)
    rows = np.array([pad + ids("x", "12"), ids("34", " times") + pad,  # 12 | 34: two numbers, not 1234
                     pad + ids(" is", " 24"), ids(" times", "Q") + pad,  # the 3-token sequence is cut
                     pad + ids("Q", "Q"), pad + ids("Q", "Q")])
    prefix = write_data(tmp_path, rows, tokenizer_file)
    terms = parse_terms(["12", "34", "1234", " is 24 times", "24"], tok)
    c = count_terms(prefix, terms, 2, tokenizer=tokenizer_file, workers=1)
    assert c.count.tolist() == [[1, 0, 0], [1, 0, 0], [0, 0, 0], [0, 0, 0], [0, 1, 0]]


def test_table_and_count_seen_as_of_checkpoints(tmp_path, tokenizer_file, tok):
    pad = [ID["Q"]] * (ITEM - 1)
    seven = pad + ids(" 7")
    rows = np.array([seven, seven, pad + ids("Q"), seven, seven, seven])  # batch 2: step counts 2, 1, 2
    prefix = write_data(tmp_path, rows, tokenizer_file)
    c = count_terms(prefix, parse_terms(["7"], tok), 2, tokenizer=tokenizer_file, workers=1)
    assert c.count.tolist() == [[2, 1, 2]]
    table = c.table([0, 1, 2, 3], suite="toy")
    assert table["count"].tolist() == [2, 1, 2, 0]
    assert table["count_seen"].tolist() == [0, 2, 3, 5]  # checkpoint stepN has seen steps 0..N-1
    assert table["tokens_seen"].tolist() == [0, 2 * (ITEM - 1), 4 * (ITEM - 1), 6 * (ITEM - 1)]
    assert set(table["model"]) == {""} and set(table["suite"]) == {"toy"}
    with pytest.raises(UserError, match="past the data: it has 3 steps"):
        c.table([4])


def test_resume_after_interruption_is_identical(tmp_path, tokenizer_file, tok):
    rng = np.random.default_rng(1)
    rows = rng.integers(2, len(PIECES), size=(BATCH * 9, ITEM))
    prefix = write_data(tmp_path, rows, tokenizer_file)
    terms = parse_terms(["0..99", " is 24 times"], tok)
    kw = dict(tokenizer=tokenizer_file, workers=1, chunk_steps=2)
    fresh = count_terms(prefix, terms, BATCH, **kw)
    store = tmp_path / "counts.zarr"
    partial = count_terms(prefix, terms, BATCH, store=store, max_chunks=2, **kw)  # "killed" after 2 of 5 chunks
    assert partial.count[:, :4].tolist() == fresh.count[:, :4].tolist() and not partial.count[:, 4:].any()
    import zarr

    assert zarr.open_group(store, mode="r")["done"][:].tolist() == [True, True, False, False, False]
    resumed = count_terms(prefix, terms, BATCH, store=store, **kw)
    assert np.array_equal(resumed.count, fresh.count)
    # another definition or batch size on the same store is refused, not mixed in
    with pytest.raises(UserError, match="counts of another run"):
        count_terms(prefix, terms, BATCH + 1, store=store, **kw)


def test_two_workers_equal_one(tmp_path, tokenizer_file, tok):
    rows = np.random.default_rng(2).integers(2, len(PIECES), size=(BATCH * 8, ITEM))
    prefix = write_data(tmp_path, rows, tokenizer_file)
    terms = parse_terms(["0..99"], tok)
    one = count_terms(prefix, terms, BATCH, tokenizer=tokenizer_file, workers=1)
    two = count_terms(prefix, terms, BATCH, tokenizer=tokenizer_file, workers=2)
    assert np.array_equal(one.count, two.count) and one.count.sum() > 0


# ---- Pythia's text rule ---------------------------------------------------------------------------


@pytest.mark.parametrize("text, want", [
    ("3 times 4", {"3": 1, "4": 1}),
    ("5 and 6 and 7", {"5": 1, "6": 2, "7": 2}),  # overlapping windows count again
    ("1 2 3 4", {"1": 1, "2": 2, "3": 2, "4": 2}),
    ("42 is the answer", {}),  # a number alone counts 0
    ("42 is not the answer 7", {}),  # four words apart: out of the window
    ("07 plus 8", {"7": 1, "8": 1}),  # str(int(...)): 07 is 7
    ("1 and 123456", {"1": 1, "12345": 1}),  # \d{1,5} pieces
    ("Q:What is 24 times 7? A:168", {"24": 1, "7": 1}),  # 168 follows ':' and starts no window
    ("x 5 x 5", {"5": 2}),  # every number of a window, repeats included
])
def test_pythia_rule_quirks(text, want):
    assert dict(pythia_window_numbers(text)) == want


def test_pythia_decode_clean_up_and_leading_space(tok):
    assert pythia_clean_up(" 5 , 6 .") == " 5, 6."
    terms = ["5", "7", "12", "34"]
    row = np.array([ids(" 5", " ,", " 7", "Q") + ids("12", " and", " 34") + [ID["Q"]] * 5])
    # decoded " 5 , 7Q12 and 34QQQQQ": one window " 5 , 7Q12 and 34" (three words after 5) holds all four;
    # cleaned, " 5, 7Q12 ..." has no "5 " and no other number after a space starts a window
    assert count_pythia(row, tok, terms, clean_up=False).tolist() == [[1, 1, 1, 1]]
    assert count_pythia(row, tok, terms).tolist() == [[0, 0, 0, 0]]
    # an item that starts with a number: the space put in front lets a window start there
    row2 = np.array([ids("12", " and", " 34") + [ID["Q"]] * 9])
    assert count_pythia(row2, tok, terms).tolist() == [[0, 0, 1, 1]]


def test_pythia_definition_through_the_pass(tmp_path, tokenizer_file, tok):
    pad = [ID["Q"]] * 6
    # " 5 and 7 and 12": windows at 5 (5, 7, 12) and at 7 (7, 12); " 7 times 7": one window, 7 twice
    rows = np.array([ids(" 5", " and", " 7", " and", " 12", "Q") + pad, ids(" 7", " times", " 7") + pad + ids("Q", "Q", "Q")])
    prefix = write_data(tmp_path, rows, tokenizer_file)
    c = count_terms(prefix, parse_terms(["5", "7", "12"], tok), 1, definition="pythia", tokenizer=tokenizer_file,
                    workers=1)
    assert c.count.tolist() == [[1, 0], [2, 2], [2, 0]]
    with pytest.raises(UserError, match="counts numbers only"):
        count_terms(prefix, parse_terms([" is 24 times"], tok), 1, definition="pythia", tokenizer=tokenizer_file)


# ---- bad input ------------------------------------------------------------------------------------


def test_bad_terms(tok):
    with pytest.raises(UserError, match="empty"):
        parse_terms([""], tok)
    with pytest.raises(UserError, match="cannot be encoded"):
        parse_terms(["\ud800"], tok)  # a lone surrogate: no bytes to encode
    n = tok.get_vocab_size(with_added_tokens=True)
    with pytest.raises(UserError, match=f"outside the vocabulary: ids run 0\\.\\.{n - 1}"):
        parse_terms([f"ids:3,{n}"], tok)
    with pytest.raises(UserError, match="no tokenizer"):
        parse_terms(["24"], None, vocab_size=40)
    with pytest.raises(UserError, match="given twice"):
        parse_terms(["24", "20..30"], tok)
    assert parse_terms(["ids:2,3"], None, vocab_size=40) == [Term(None, (2, 3))]


def test_cli_counts(tmp_path, capsys, tokenizer_file):
    rows = np.array([[ID["Q"]] * (ITEM - 1) + [ID[" 7"]]] * 6)
    prefix = write_data(tmp_path / "d", rows, tokenizer_file)
    out = tmp_path / "out" / "counts.parquet"
    rc, stdout, err = run_cli(capsys, "counts", "--data", prefix, "--terms", "0..99", "--batch-size", 2,
                              "--workers", 1, "--out", out)
    assert rc == 0, err
    table = pd.read_parquet(out)
    seven = table[table["term"] == "7"]
    assert seven["count_seen"].tolist() == [0, 2, 4, 6]
    assert list(table.columns[:5]) == ["suite", "model", "params", "step", "tokens_seen"]
    assert (tmp_path / "out" / "counts.zarr").is_dir()
    terms_file = tmp_path / "terms.txt"
    terms_file.write_text("7\n\n ,\n")
    rc, _, err = run_cli(capsys, "counts", "--data", prefix, "--terms-file", terms_file, "--batch-size", 3,
                         "--workers", 1, "--out", tmp_path / "t.parquet")
    assert rc == 0, err


@pytest.mark.parametrize("args, message", [
    (["--terms", ""], "is empty"),
    (["--terms", "ids:1,4000"], "outside the vocabulary"),
    (["--terms", "is 24", "--definition", "pythia"], "counts numbers only"),
    (["--terms-file", "missing.txt"], "terms file not found"),
])
def test_cli_counts_bad_input(tmp_path, capsys, tokenizer_file, args, message):
    rows = np.array([[ID["Q"]] * ITEM] * 4)
    prefix = write_data(tmp_path / "d", rows, tokenizer_file)
    before = listing(tmp_path)
    rc, _, err = run_cli(capsys, "counts", "--data", prefix, *args, "--batch-size", 2, "--workers", 1,
                         "--out", tmp_path / "c.parquet")
    assert rc == 2
    assert message in assert_one_error_line(err)
    assert listing(tmp_path) == before  # nothing half-written


def test_cli_counts_without_tokenizer(tmp_path, capsys):
    prefix = write_data(tmp_path / "d", np.array([[ID["Q"]] * ITEM] * 4), None)
    rc, _, err = run_cli(capsys, "counts", "--data", prefix, "--terms", "24", "--batch-size", 2,
                         "--out", tmp_path / "c.parquet")
    assert rc == 2 and "no tokenizer" in assert_one_error_line(err)


def test_counts_on_a_dask_cluster_equal_the_local_pass(tmp_path, tokenizer_file, tok, capsys):
    """The chunks as tasks of a Dask cluster (127.0.0.1): the same counts and store as one process,
    and the CLI's --scheduler reaches an existing cluster."""
    pytest.importorskip("distributed")
    import zarr

    from pythia_suite.engines import dask_client

    rows = np.random.default_rng(4).integers(2, len(PIECES), size=(BATCH * 9, ITEM))
    prefix = write_data(tmp_path, rows, tokenizer_file)
    terms = parse_terms(["0..99", " is 24 times"], tok)
    local = count_terms(prefix, terms, BATCH, tokenizer=tokenizer_file, workers=1, chunk_steps=2)
    with dask_client(workers=2) as client:
        spread = count_terms(prefix, terms, BATCH, tokenizer=tokenizer_file, chunk_steps=2, client=client,
                             store=tmp_path / "c.zarr")
        assert np.array_equal(spread.count, local.count) and local.count.sum() > 0
        assert zarr.open_group(tmp_path / "c.zarr", mode="r")["done"][:].all()
        address = client.scheduler.address
        rc, out, err = run_cli(capsys, "counts", "--data", prefix, "--terms", "0..99", "--batch-size", BATCH,
                               "--scheduler", address, "--quiet", "--out", tmp_path / "cli.parquet")
    assert rc == 0, err
    table = pd.read_parquet(tmp_path / "cli.parquet")
    assert table.groupby("term")["count"].sum().sum() == local.count[:100].sum()
