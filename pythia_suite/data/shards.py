"""Split a .bin into fixed-size byte pieces and join them back, with a checksum per piece.

Naming follows Pythia's: ``NAME-00000-of-00020.bin`` where the second number is the index of the
last piece (21 pieces), cut at byte boundaries (an item may span two pieces). The piece count is
Pythia's `shard_memmap.py` rule, ``size // shard_bytes + 1``: when the file is an exact multiple
of the piece size the last piece is empty (Pythia's own unshard then fails; `unshard` here joins
such sets). The default piece size is that script's 5e9 bytes, which its raw Pile idxmaps use
(``...-00000-of-00082.bin``); the preshuffled ``document.bin`` (600,078,336,000 bytes) ships as 21
pieces of about 28.6 GB. The .idx is copied whole, and so is the tokenizer the sidecar names.
``NAME.shards.json`` records each piece's size and sha256 so `unshard` can detect a corrupted or
missing piece; Pythia's own shards have no such file, and unsharding them proceeds with a warning
and records checksums of the result.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
from pathlib import Path

from ..errors import UserError
from ..fileio import CHUNK, atomic_outputs, refuse_existing, sha256_file
from .indexed import IndexedDataset, check_out_prefix
from .sidecar import read_sidecar, sidecar_path, write_sidecar

PYTHIA_SHARD_BYTES = 5_000_000_000
SHARD_RE = re.compile(r"^(?P<name>.+)-(?P<i>\d{5})-of-(?P<last>\d{5})\.bin$")


def shard_name(name: str, i: int, last: int) -> str:
    return f"{name}-{i:05d}-of-{last:05d}.bin"


def _copy_range(src, dst, nbytes: int, h) -> None:
    while nbytes:
        block = src.read(min(CHUNK, nbytes))
        if not block:
            raise UserError(f"{src.name} ended early")
        h.update(block)
        dst.write(block)
        nbytes -= len(block)


def shard(prefix: str | os.PathLike, out_dir: str | os.PathLike, shard_bytes: int = PYTHIA_SHARD_BYTES) -> list[Path]:
    """Write ``out_dir/NAME-iiiii-of-LLLLL.bin`` pieces, ``NAME.idx``, ``NAME.shards.json`` (and the
    sidecar, if any). Returns the piece paths."""
    if shard_bytes < 1:
        raise UserError(f"--shard-bytes must be positive, got {shard_bytes}")
    ds = IndexedDataset(prefix)
    name = ds.prefix.name
    out = Path(out_dir)
    total = ds.bin_path.stat().st_size
    last = total // shard_bytes  # Pythia's count: an exact multiple gets an empty last piece
    pieces = [out / shard_name(name, i, last) for i in range(last + 1)]
    extra = [out / f"{name}.idx", out / f"{name}.shards.json"]
    meta = read_sidecar(ds.prefix)
    tokenizer = _tokenizer_of(ds.prefix, meta)
    if meta is not None:
        extra.append(out / f"{name}.json")
    if tokenizer is not None:
        extra.append(out / tokenizer.name)
    records = []
    with atomic_outputs(*pieces, *extra) as tmp:
        with open(ds.bin_path, "rb") as src:
            for i, t in enumerate(tmp[: len(pieces)]):
                h = hashlib.sha256()
                size = min(shard_bytes, total - i * shard_bytes)
                with open(t, "wb") as dst:
                    _copy_range(src, dst, size, h)
                records.append({"file": pieces[i].name, "bytes": size, "sha256": h.hexdigest()})
        shutil.copyfile(ds.idx_path, tmp[len(pieces)])
        manifest = {"name": name, "shard_bytes": shard_bytes, "total_bytes": total, "shards": records,
                    "idx_sha256": sha256_file(ds.idx_path)}
        tmp[len(pieces) + 1].write_text(json.dumps(manifest, indent=2) + "\n")
        if meta is not None:
            write_sidecar(tmp[len(pieces) + 2], meta | ({"tokenizer": tokenizer.name} if tokenizer else {}))
        if tokenizer is not None:
            shutil.copyfile(tokenizer, tmp[-1])
    return pieces


def _tokenizer_of(prefix: Path, meta: dict | None) -> Path | None:
    """The tokenizer file a sidecar names (relative to the sidecar's folder), checked to exist."""
    if not meta or not meta.get("tokenizer"):
        return None
    path = prefix.parent / meta["tokenizer"]
    if not path.is_file():
        raise UserError(f"{sidecar_path(prefix).name} names the tokenizer {meta['tokenizer']}, which is not at {path}")
    return path



def find_shards(source: str | os.PathLike) -> tuple[str, list[Path]]:
    """Pieces named by `source`: the first piece, or ``DIR/NAME`` of a sharded dataset."""
    src = Path(source)
    m = SHARD_RE.match(src.name)
    name, folder = (m["name"], src.parent) if m else (src.name, src.parent)
    found = {}
    last_seen = set()
    for p in folder.glob(f"{glob_escape(name)}-?????-of-?????.bin"):
        pm = SHARD_RE.match(p.name)
        if pm and pm["name"] == name:
            found[int(pm["i"])] = p
            last_seen.add(int(pm["last"]))
    if not found:
        raise UserError(f"no shards named {name}-NNNNN-of-NNNNN.bin in {folder}")
    if len(last_seen) != 1:
        raise UserError(f"shards of {name} in {folder} disagree on the piece count (-of-{sorted(last_seen)})")
    last = last_seen.pop()
    missing = [shard_name(name, i, last) for i in range(last + 1) if i not in found]
    if missing:
        raise UserError(f"missing {len(missing)} of {last + 1} shards: {', '.join(missing[:5])}")
    return name, [found[i] for i in range(last + 1)]


def glob_escape(s: str) -> str:
    return re.sub(r"([\[\]*?])", r"[\1]", s)


def _shard_manifest(path: Path, pieces: list[Path]) -> tuple[dict[str, str] | None, str | None]:
    """The sha256 per piece and of the index recorded in NAME.shards.json; (None, None) without one."""
    if not path.exists():
        return None, None
    try:
        manifest = json.loads(path.read_text())
        expected = {r["file"]: r["sha256"] for r in manifest["shards"]}
        idx_expected = manifest.get("idx_sha256")
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise UserError(f"{path} is not a shard manifest ({type(e).__name__}: {e})") from None
    if set(expected) != {p.name for p in pieces}:
        raise UserError(f"{path.name} lists {len(expected)} shards, the folder has {len(pieces)}")
    return expected, idx_expected


def verify_shards(source: str | os.PathLike):
    """Every piece of a shard set (and its index) hashed against NAME.shards.json, one row each:
    file, bytes, sha256, recorded, ok. Raises if the set is incomplete or has no manifest."""
    import pandas as pd

    name, pieces = find_shards(source)
    folder = pieces[0].parent
    manifest_path = folder / f"{name}.shards.json"
    expected, idx_expected = _shard_manifest(manifest_path, pieces)
    if expected is None:
        raise UserError(f"no {manifest_path.name} beside the shards: nothing to check them against")
    files = pieces + ([folder / f"{name}.idx"] if idx_expected is not None else [])
    recorded = [expected.get(p.name, idx_expected) for p in files]
    rows = [(p.name, p.stat().st_size, sha256_file(p), r) for p, r in zip(files, recorded)]
    df = pd.DataFrame(rows, columns=["file", "bytes", "sha256", "recorded"])
    return df.assign(ok=df["sha256"] == df["recorded"])


def unshard(source: str | os.PathLike, out: str | os.PathLike, force: bool = False) -> Path:
    """Join the pieces into ``out.bin`` (+ ``out.idx``, sidecar and the tokenizer it names), checking
    each piece's sha256 against ``NAME.shards.json`` when it exists. Nothing is written if any check
    fails; existing outputs are replaced only with `force`."""
    prefix = check_out_prefix(out)
    name, pieces = find_shards(source)
    folder = pieces[0].parent
    idx = folder / f"{name}.idx"
    if not idx.is_file():
        raise UserError(f"{idx} not found: the index is needed beside the shards")
    manifest_path = folder / f"{name}.shards.json"
    expected, idx_expected = _shard_manifest(manifest_path, pieces)
    if expected is not None:
        if idx_expected is not None and (idx_actual := sha256_file(idx)) != idx_expected:
            raise UserError(f"{idx.name} is corrupted: sha256 {idx_actual[:16]}... != recorded {idx_expected[:16]}...")
    else:
        print(f"warning: no {manifest_path.name}: shard checksums cannot be checked; "
              "checksums of the joined files go into the sidecar", file=sys.stderr)
    meta = read_sidecar(folder / name) or {}
    tokenizer = _tokenizer_of(folder / name, meta)
    outputs = [prefix.with_name(prefix.name + ext) for ext in (".bin", ".idx", ".json")]
    if tokenizer is not None:
        outputs.append(prefix.with_name(prefix.name + ".tokenizer.json"))
    refuse_existing(outputs, force)
    with atomic_outputs(*outputs) as tmp:
        whole = hashlib.sha256()
        with open(tmp[0], "wb") as dst:
            for p in pieces:
                h = hashlib.sha256()
                with open(p, "rb") as src:
                    while block := src.read(CHUNK):
                        h.update(block)
                        whole.update(block)
                        dst.write(block)
                if expected is not None and h.hexdigest() != expected[p.name]:
                    raise UserError(f"{p.name} is corrupted: sha256 {h.hexdigest()[:16]}... != recorded {expected[p.name][:16]}...")
        shutil.copyfile(idx, tmp[1])
        IndexedDataset(prefix, bin_path=tmp[0], idx_path=tmp[1])  # the joined .bin must fit its index
        joined = {"bin_sha256": whole.hexdigest(), "idx_sha256": sha256_file(tmp[1])}
        for key, actual in joined.items():  # a sidecar made with the data must agree with the joined files
            if key in meta and meta[key] != actual:
                raise UserError(f"the joined {key[:3]} has sha256 {actual[:16]}... but {name}.json records "
                                f"{str(meta[key])[:16]}...: a shard or the index is corrupted")
        meta.update(joined)
        if tokenizer is not None:
            shutil.copyfile(tokenizer, tmp[3])
            meta["tokenizer"] = outputs[3].name
        write_sidecar(tmp[2], meta)
    return prefix

