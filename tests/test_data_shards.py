"""`data shard` / `data unshard`: Pythia's -NNNNN-of-NNNNN.bin pieces, with sha256 per piece."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import assert_one_error_line, copy_prefix, flip_byte, listing, run_cli
from pythia_suite.data import shard, unshard, verify
from pythia_suite.data.indexed import write_fixed_index
from pythia_suite.data.shards import find_shards, shard_name
from pythia_suite.errors import UserError


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def plain(tmp_path) -> Path:
    """50 items of 33 uint16 tokens (3300 bytes), no sidecar: like Pythia's own files."""
    prefix = tmp_path / "src" / "document"
    prefix.parent.mkdir()
    np.arange(50 * 33, dtype=np.uint16).tofile(f"{prefix}.bin")
    write_fixed_index(f"{prefix}.idx", np.uint16, 50, 33)
    return prefix


def test_shard_name():
    assert shard_name("document", 0, 20) == "document-00000-of-00020.bin"
    assert shard_name("x", 123, 99999) == "x-00123-of-99999.bin"


def test_shard_unshard_round_trip(tmp_path, plain, capsys):
    out = tmp_path / "shards"
    rc, stdout, err = run_cli(capsys, "data", "shard", plain, "--out-dir", out, "--shard-bytes", 1000)
    assert (rc, err) == (0, "")
    assert "wrote 4 shards" in stdout
    names = [f"document-0000{i}-of-00003.bin" for i in range(4)]
    assert sorted(p.name for p in out.iterdir()) == sorted(names + ["document.idx", "document.shards.json"])
    whole = Path(f"{plain}.bin").read_bytes()
    pieces = [(out / n).read_bytes() for n in names]
    assert [len(p) for p in pieces] == [1000, 1000, 1000, 300]
    assert b"".join(pieces) == whole
    assert (out / "document.idx").read_bytes() == Path(f"{plain}.idx").read_bytes()
    manifest = json.loads((out / "document.shards.json").read_text())
    assert manifest["name"] == "document"
    assert manifest["shard_bytes"] == 1000 and manifest["total_bytes"] == 3300
    assert manifest["shards"] == [{"file": n, "bytes": len(p), "sha256": sha(p)} for n, p in zip(names, pieces)]
    assert manifest["idx_sha256"] == sha(Path(f"{plain}.idx").read_bytes())

    for i, source in enumerate([out / names[0], out / "document", out / names[2]]):
        dest = tmp_path / f"joined{i}" / "document"
        rc, stdout, err = run_cli(capsys, "data", "unshard", source, "--out", dest)
        assert (rc, err) == (0, "")
        assert Path(f"{dest}.bin").read_bytes() == whole
        assert Path(f"{dest}.idx").read_bytes() == Path(f"{plain}.idx").read_bytes()
        meta = json.loads(Path(f"{dest}.json").read_text())
        assert meta == {"bin_sha256": sha(whole), "idx_sha256": manifest["idx_sha256"]}
        assert verify(dest).ok
        assert sorted(p.name for p in dest.parent.iterdir()) == ["document.bin", "document.idx", "document.json"]


def test_round_trip_keeps_the_sidecar(tmp_path, base_build):
    src = copy_prefix(base_build.prefix, tmp_path)
    total = Path(f"{src}.bin").stat().st_size
    pieces = shard(src, tmp_path / "sh", shard_bytes=1000)
    assert len(pieces) == total // 1000 + 1
    last = len(pieces) - 1
    assert [p.name for p in pieces] == [f"corpus-{i:05d}-of-{last:05d}.bin" for i in range(last + 1)]
    assert (tmp_path / "sh" / "corpus.json").read_bytes() == Path(f"{src}.json").read_bytes()
    dest = unshard(pieces[0], tmp_path / "out" / "corpus")
    assert dest == tmp_path / "out" / "corpus"
    for ext in (".bin", ".idx"):
        assert Path(f"{dest}{ext}").read_bytes() == Path(f"{src}{ext}").read_bytes()
    assert json.loads(Path(f"{dest}.json").read_text()) == json.loads(Path(f"{src}.json").read_text())
    assert verify(dest).ok


@pytest.mark.parametrize("shard_bytes, sizes", [(1100, [1100, 1100, 1100, 0]), (3300, [3300, 0]), (10**9, [3300]),
                                                (3299, [3299, 1]), (1000, [1000, 1000, 1000, 300])])
def test_piece_count_and_sizes(tmp_path, plain, shard_bytes, sizes):
    """Pythia's shard_memmap.py count, size // shard_bytes + 1: an exact multiple ends in an empty
    piece, and such a set joins back exactly."""
    pieces = shard(plain, tmp_path / "sh", shard_bytes=shard_bytes)
    last = len(sizes) - 1
    assert [p.name for p in pieces] == [shard_name("document", i, last) for i in range(len(sizes))]
    assert [p.stat().st_size for p in pieces] == sizes
    joined = unshard(pieces[0], tmp_path / "joined" / "document")
    assert Path(f"{joined}.bin").read_bytes() == Path(f"{plain}.bin").read_bytes()
    (tmp_path / "sh" / "document.shards.json").unlink()  # as Pythia ships them: no checksums
    again = unshard(pieces[0], tmp_path / "again" / "document")
    assert Path(f"{again}.bin").read_bytes() == Path(f"{plain}.bin").read_bytes()


def test_corrupted_shard_is_detected(tmp_path, plain, capsys):
    pieces = shard(plain, tmp_path / "sh", shard_bytes=1000)
    flip_byte(pieces[2], 17)
    before = listing(tmp_path)
    rc, out, err = run_cli(capsys, "data", "unshard", pieces[0], "--out", tmp_path / "sh" / "joined")
    assert rc == 2
    line = assert_one_error_line(err)
    assert "document-00002-of-00003.bin is corrupted: sha256" in line
    assert listing(tmp_path) == before  # no joined.bin/.idx/.json, no temporaries


def test_truncated_shard_is_detected(tmp_path, plain, capsys):
    pieces = shard(plain, tmp_path / "sh", shard_bytes=1000)
    pieces[3].write_bytes(pieces[3].read_bytes()[:-2])
    before = listing(tmp_path)
    rc, _, err = run_cli(capsys, "data", "unshard", tmp_path / "sh" / "document", "--out", tmp_path / "j")
    assert rc == 2
    assert "document-00003-of-00003.bin is corrupted" in assert_one_error_line(err)
    assert listing(tmp_path) == before


def test_missing_shard_is_detected(tmp_path, plain, capsys):
    pieces = shard(plain, tmp_path / "sh", shard_bytes=1000)
    pieces[1].unlink()
    before = listing(tmp_path)
    rc, _, err = run_cli(capsys, "data", "unshard", pieces[0], "--out", tmp_path / "j")
    assert rc == 2
    assert "missing 1 of 4 shards: document-00001-of-00003.bin" in assert_one_error_line(err)
    assert listing(tmp_path) == before


def test_missing_index_beside_shards(tmp_path, plain, capsys):
    pieces = shard(plain, tmp_path / "sh", shard_bytes=1000)
    (tmp_path / "sh" / "document.idx").unlink()
    rc, _, err = run_cli(capsys, "data", "unshard", pieces[0], "--out", tmp_path / "j")
    assert rc == 2
    assert "document.idx not found" in assert_one_error_line(err)
    assert not (tmp_path / "j.bin").exists()


def test_corrupted_index_beside_shards(tmp_path, plain, capsys):
    pieces = shard(plain, tmp_path / "sh", shard_bytes=1000)
    flip_byte(tmp_path / "sh" / "document.idx", 40)  # a size entry: same length, wrong content
    before = listing(tmp_path)
    rc, _, err = run_cli(capsys, "data", "unshard", pieces[0], "--out", tmp_path / "j")
    assert rc == 2
    assert "document.idx" in assert_one_error_line(err)
    assert listing(tmp_path) == before


def test_damaged_manifest(tmp_path, plain, capsys):
    pieces = shard(plain, tmp_path / "sh", shard_bytes=1000)
    (tmp_path / "sh" / "document.shards.json").write_text("{broken")
    rc, _, err = run_cli(capsys, "data", "unshard", pieces[0], "--out", tmp_path / "j")
    assert rc == 2
    assert "document.shards.json" in assert_one_error_line(err)
    assert not (tmp_path / "j.bin").exists()


def test_manifest_listing_other_pieces(tmp_path, plain, capsys):
    pieces = shard(plain, tmp_path / "sh", shard_bytes=1000)
    manifest = json.loads((tmp_path / "sh" / "document.shards.json").read_text())
    manifest["shards"] = manifest["shards"][:3]
    (tmp_path / "sh" / "document.shards.json").write_text(json.dumps(manifest))
    rc, _, err = run_cli(capsys, "data", "unshard", pieces[0], "--out", tmp_path / "j")
    assert rc == 2
    assert "lists 3 shards, the folder has 4" in assert_one_error_line(err)


def test_shards_disagreeing_on_count(tmp_path, plain, capsys):
    shard(plain, tmp_path / "sh", shard_bytes=1000)
    (tmp_path / "sh" / "document-00000-of-00001.bin").write_bytes(b"x")
    with pytest.raises(UserError, match="disagree on the piece count"):
        find_shards(tmp_path / "sh" / "document")


def test_no_shards(tmp_path, capsys):
    (tmp_path / "sh").mkdir()
    rc, _, err = run_cli(capsys, "data", "unshard", tmp_path / "sh" / "document", "--out", tmp_path / "j")
    assert rc == 2
    assert "no shards named document-NNNNN-of-NNNNN.bin" in assert_one_error_line(err)


def test_unshard_without_manifest_warns_and_records_checksums(tmp_path, plain, capsys):
    """Pythia's published shards have no checksum file: joining still works, with a warning."""
    pieces = shard(plain, tmp_path / "sh", shard_bytes=1000)
    (tmp_path / "sh" / "document.shards.json").unlink()
    rc, out, err = run_cli(capsys, "data", "unshard", pieces[0], "--out", tmp_path / "j" / "document")
    assert rc == 0
    assert err.startswith("warning: no document.shards.json") and err.count("\n") == 1
    whole = Path(f"{plain}.bin").read_bytes()
    assert (tmp_path / "j" / "document.bin").read_bytes() == whole
    meta = json.loads((tmp_path / "j" / "document.json").read_text())
    assert meta["bin_sha256"] == sha(whole)


def test_unshard_without_manifest_checks_length_against_index(tmp_path, plain, capsys):
    pieces = shard(plain, tmp_path / "sh", shard_bytes=1000)
    (tmp_path / "sh" / "document.shards.json").unlink()
    pieces[3].write_bytes(pieces[3].read_bytes()[:-2])
    before = listing(tmp_path)
    rc, _, err = run_cli(capsys, "data", "unshard", pieces[0], "--out", tmp_path / "j")
    assert rc == 2
    lines = err.splitlines()
    assert lines[0].startswith("warning: ") and "Traceback" not in err
    assert len(lines) == 2 and lines[1].startswith("error: ") and "is truncated" in lines[1]
    assert listing(tmp_path) == before


def test_shard_errors(tmp_path, plain, capsys):
    rc, _, err = run_cli(capsys, "data", "shard", plain, "--out-dir", tmp_path / "sh", "--shard-bytes", 0)
    assert rc == 2 and "--shard-bytes must be positive" in assert_one_error_line(err)
    rc, _, err = run_cli(capsys, "data", "shard", tmp_path / "nothing", "--out-dir", tmp_path / "sh")
    assert rc == 2 and "not found" in assert_one_error_line(err)
    assert not (tmp_path / "sh").exists() or not any((tmp_path / "sh").iterdir())


def test_unshard_without_manifest_checks_the_sidecar(tmp_path, base_build, capsys):
    """Manifest lost, sidecar kept: the sidecar's bin_sha256 still catches a corrupted shard."""
    src = copy_prefix(base_build.prefix, tmp_path)
    pieces = shard(src, tmp_path / "sh", shard_bytes=1000)
    (tmp_path / "sh" / "corpus.shards.json").unlink()
    flip_byte(pieces[1], 5)
    before = listing(tmp_path)
    rc, _, err = run_cli(capsys, "data", "unshard", pieces[0], "--out", tmp_path / "j" / "corpus")
    assert rc == 2
    lines = err.splitlines()
    assert len(lines) == 2 and lines[0].startswith("warning: ") and "Traceback" not in err
    assert lines[1].startswith("error: the joined bin has sha256") and "corpus.json records" in lines[1]
    assert listing(tmp_path) == before


def test_tokenizer_travels_with_the_shards(tmp_path, base_build, corpus_txt, tokenizer_path):
    """A sidecar naming a tokenizer elsewhere (../tok/): the shard folder and the joined dataset
    each get a copy, the sidecars name it where it is, and `data verify` checks its sha256."""
    from pythia_suite.data import build

    (tmp_path / "tok").mkdir()
    tok = tmp_path / "tok" / "bpe.json"
    tok.write_bytes(tokenizer_path.read_bytes())
    src = build([corpus_txt], tmp_path / "src" / "corpus", seq_len=15, tokenizer=tok, seed=1).prefix
    assert json.loads(Path(f"{src}.json").read_text())["tokenizer"] == "../tok/bpe.json"
    pieces = shard(src, tmp_path / "sh", shard_bytes=1000)
    assert json.loads((tmp_path / "sh" / "corpus.json").read_text())["tokenizer"] == "bpe.json"
    assert (tmp_path / "sh" / "bpe.json").read_bytes() == tok.read_bytes()
    dest = unshard(pieces[0], tmp_path / "out" / "corpus")
    meta = json.loads(Path(f"{dest}.json").read_text())
    assert meta["tokenizer"] == "corpus.tokenizer.json"
    assert Path(f"{dest}.tokenizer.json").read_bytes() == tok.read_bytes()
    report = verify(dest)
    assert report.ok and any("corpus.tokenizer.json: sha256 matches" in c for c in report.checked)

    Path(f"{dest}.tokenizer.json").write_text("{}")  # a damaged tokenizer
    assert any("corpus.tokenizer.json: sha256" in p for p in verify(dest).problems)
    Path(f"{dest}.tokenizer.json").unlink()
    assert any("names the tokenizer corpus.tokenizer.json, which is not at" in p for p in verify(dest).problems)
    (tmp_path / "sh" / "bpe.json").unlink()
    with pytest.raises(UserError, match="names the tokenizer bpe.json"):
        unshard(pieces[0], tmp_path / "out2" / "corpus")


def test_unshard_refuses_to_overwrite_without_force(tmp_path, plain, capsys):
    pieces = shard(plain, tmp_path / "sh", shard_bytes=1000)
    dest = tmp_path / "out" / "document"
    assert run_cli(capsys, "data", "unshard", pieces[0], "--out", dest)[0] == 0
    Path(f"{dest}.bin").write_bytes(b"other")
    before = listing(tmp_path)
    rc, _, err = run_cli(capsys, "data", "unshard", pieces[0], "--out", dest)
    assert rc == 2 and "document.bin already exists" in assert_one_error_line(err) and "--force" in err
    assert listing(tmp_path) == before
    assert run_cli(capsys, "data", "unshard", pieces[0], "--out", dest, "--force")[0] == 0
    assert Path(f"{dest}.bin").read_bytes() == Path(f"{plain}.bin").read_bytes()
    rc, _, err = run_cli(capsys, "data", "unshard", pieces[0], "--out", f"{tmp_path / 'folder'}/")
    assert rc == 2 and "is a folder; give a dataset prefix inside it" in assert_one_error_line(err)
    assert not (tmp_path / "folder.bin").exists()


def test_verify_shards_hashes_every_piece_and_the_index(tmp_path, plain):
    from pythia_suite.data import verify_shards

    pieces = shard(plain, tmp_path / "sh", shard_bytes=1000)
    report = verify_shards(pieces[0])
    assert report["file"].tolist() == [p.name for p in pieces] + ["document.idx"]
    assert report["ok"].all() and report["bytes"].tolist()[:4] == [1000, 1000, 1000, 300]
    flip_byte(pieces[1], 3)
    report = verify_shards(tmp_path / "sh" / "document")
    assert report["ok"].tolist() == [True, False, True, True, True]
    (tmp_path / "sh" / "document.shards.json").unlink()
    with pytest.raises(UserError, match="no document.shards.json beside the shards"):
        verify_shards(pieces[0])
