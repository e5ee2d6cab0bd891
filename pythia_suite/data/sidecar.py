"""The JSON sidecar beside a dataset (``PREFIX.json``) and `pythia-suite data verify`."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError
from ..fileio import sha256_file, stamped_sha256
from .indexed import IndexedDataset, split_prefix

SIDECAR_FORMAT = "pythia-suite/data/v1"


def sidecar_path(prefix: str | os.PathLike) -> Path:
    p = split_prefix(prefix)
    return p.with_name(p.name + ".json")


def write_sidecar(path: str | os.PathLike, meta: dict) -> None:
    Path(path).write_text(json.dumps(meta, indent=2, sort_keys=False) + "\n")


def read_sidecar(prefix: str | os.PathLike) -> dict | None:
    """The sidecar of `prefix`, or None if there is none (the real Pythia files ship without one)."""
    path = sidecar_path(prefix)
    if not path.exists():
        return None
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(meta, dict):
        raise UserError(f"{path} is not a dataset sidecar (expected a JSON object)")
    return meta


@dataclass
class VerifyReport:
    prefix: Path
    n_items: int
    checked: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(prefix: str | os.PathLike) -> VerifyReport:
    """Check structure (header, sizes, pointers) and, if a sidecar exists, recompute sha256 of
    .bin and .idx and compare every count it records."""
    ds = IndexedDataset(prefix)  # header, truncation and .bin length: raises on failure
    report = VerifyReport(ds.prefix, len(ds))
    ds.check_pointers()
    conv = (f" (float code read with the {ds.float_convention} convention, from the .bin length)"
            if ds.float_convention else "")
    report.checked.append(f"structure: {len(ds)} items, dtype {ds.dtype}{conv}, {ds.num_tokens} tokens")
    meta = read_sidecar(prefix)
    if meta is None:
        report.checked.append(f"no sidecar {sidecar_path(prefix).name}: checksums not recorded, not checked")
        return report
    for key, actual in (("n_sequences", len(ds)), ("dtype", ds.dtype.name)):
        if key in meta and meta[key] != actual:
            report.problems.append(f"sidecar says {key}={meta[key]!r}, the files have {actual!r}")
    if "item_len" in meta and len(ds) and (ds.sizes[0] != meta["item_len"] or ds.sizes[-1] != meta["item_len"]):
        report.problems.append(f"sidecar says items of {meta['item_len']} tokens, the index disagrees")
    for ext, path in ((".bin", ds.bin_path), (".idx", ds.idx_path)):
        key = f"{ext[1:]}_sha256"
        if key not in meta:
            report.problems.append(f"sidecar has no {key}")
            continue
        actual = stamped_sha256(path, force=True)  # hashed in full; later reads trust the stamp
        if actual != meta[key]:
            report.problems.append(f"{path.name}: sha256 {actual[:16]}... does not match the sidecar's {meta[key][:16]}...")
        else:
            report.checked.append(f"{path.name}: sha256 matches")
    if meta.get("tokenizer"):
        tok = ds.prefix.parent / meta["tokenizer"]
        if not tok.is_file():
            report.problems.append(f"the sidecar names the tokenizer {meta['tokenizer']}, which is not at {tok}")
        elif "tokenizer_sha256" in meta and (actual := sha256_file(tok)) != meta["tokenizer_sha256"]:
            report.problems.append(f"{tok.name}: sha256 {actual[:16]}... does not match the sidecar's "
                                   f"{str(meta['tokenizer_sha256'])[:16]}...")
        else:
            report.checked.append(f"{tok.name}: sha256 matches")
    return report
