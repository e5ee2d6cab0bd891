"""Data checked where it is read: every command that reads a dataset checks it against what
recorded it (its sidecar, and a suite's manifest) before using it.

Hashing hundreds of GB on every run would make that unaffordable, so a file's sha256 is measured
once and kept in a stamp with the file's size, mtime and inode (`pythia_suite.fileio.stamped_sha256`);
a later check trusts the stamp while all three are unchanged and hashes again when any differs (an
edit in place changes the mtime). `pythia-suite data verify`, `--verify-data` on the commands that
read data, or ``PYTHIA_SUITE_VERIFY_DATA=1`` hash everything again regardless of stamps.
"""

from __future__ import annotations

import os

from ..errors import UserError
from ..fileio import stamped_sha256
from .indexed import IndexedDataset
from .sidecar import read_sidecar, sidecar_path

FORCE_ENV = "PYTHIA_SUITE_VERIFY_DATA"


def force_requested(force: bool = False) -> bool:
    return force or os.environ.get(FORCE_ENV, "") not in ("", "0")


def measured_hashes(prefix: str | os.PathLike, force: bool = False) -> dict[str, str]:
    """sha256 of PREFIX.bin and PREFIX.idx as the files are now (stamped: see the module docstring)."""
    ds = IndexedDataset(prefix)
    force = force_requested(force)
    return {"bin_sha256": stamped_sha256(ds.bin_path, force), "idx_sha256": stamped_sha256(ds.idx_path, force)}


def check_dataset(prefix: str | os.PathLike, expect: dict | None = None, owner: str = "",
                  force: bool = False) -> dict[str, str]:
    """Check a dataset before it is used and return its measured hashes.

    The structure must read (header, sizes); the files' sha256 must equal the sidecar's record
    (``PREFIX.json``, when there is one) and `expect`'s (e.g. a manifest's ``data`` block: its
    ``bin_sha256``, ``idx_sha256`` and ``seq_len``; fields it leaves null are not checked). Without
    a sidecar and without `expect`, nothing was recorded to compare with and nothing is hashed.
    `owner` names who recorded `expect` in the message ("suite 'micro-pile'").
    """
    ds = IndexedDataset(prefix)
    meta = read_sidecar(prefix) or {}
    expect = {k: v for k, v in (expect or {}).items() if v is not None}
    if "seq_len" in expect and len(ds) and int(ds.sizes[0]) - 1 != expect["seq_len"]:
        raise UserError(f"{ds.prefix} is not the data of {owner}: its items hold {int(ds.sizes[0]) - 1}+1 tokens, "
                        f"the suite's seq_len is {expect['seq_len']}")
    for key, actual in (("n_sequences", len(ds)), ("dtype", ds.dtype.name)):
        if key in meta and meta[key] != actual:
            raise UserError(f"{ds.prefix}: its sidecar says {key}={meta[key]!r}, the files have {actual!r}; the data "
                            f"may be damaged (`pythia-suite data verify {ds.prefix}` checks it)")
    wanted = [k for k in ("bin_sha256", "idx_sha256") if k in meta or k in expect]
    if not wanted:
        return {}
    measured = measured_hashes(prefix, force)
    for key in wanted:
        name = (ds.bin_path if key == "bin_sha256" else ds.idx_path).name
        if key in meta and measured[key] != meta[key]:
            raise UserError(f"{name}: sha256 {measured[key][:12]}... differs from {sidecar_path(prefix).name}'s "
                            f"{str(meta[key])[:12]}...: the file changed after it was built, and may be damaged "
                            f"(`pythia-suite data verify {ds.prefix}`); rebuild it or restore the original")
        if key in expect and measured[key] != expect[key]:
            raise UserError(f"{ds.prefix} is not the data of {owner}: {name} sha256 {measured[key][:12]}... differs "
                            f"from the {expect[key][:12]}... it was trained on")
    return measured


__all__ = ["FORCE_ENV", "check_dataset", "force_requested", "measured_hashes"]
