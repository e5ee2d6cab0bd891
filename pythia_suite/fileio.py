"""Small file helpers: checksums and all-or-nothing writes."""

from __future__ import annotations

import hashlib
import os
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import UserError

CHUNK = 8 << 20  # 8 MiB reads keep hashing I/O-bound without holding the file in memory


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def require_file(path: str | os.PathLike, what: str = "file") -> Path:
    """Return `path` as a Path, or raise UserError if it is not an existing file."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{what} not found: {p}")
    return p


def honour_umask(path: str | os.PathLike) -> None:
    """Give a file the mode a plain open() would (0666 less the umask): some writers, safetensors'
    among them, create files 0600, unreadable to colleagues sharing a cluster folder."""
    mask = os.umask(0)
    os.umask(mask)
    if os.path.isfile(path):
        os.chmod(path, 0o666 & ~mask)


def temp_name(path: Path) -> Path:
    """A sibling name for writing `path` before it is complete (same filesystem, so rename is atomic)."""
    return path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")


@contextmanager
def atomic_outputs(*paths: str | os.PathLike) -> Iterator[list[Path]]:
    """Yield temporary paths for `paths`; rename them all into place only if the block succeeds.

    On any exception the temporaries are removed, so a failed command leaves no half-written
    output behind (and an existing output of the same name is untouched).
    """
    finals = [Path(p) for p in paths]
    for p in finals:
        p.parent.mkdir(parents=True, exist_ok=True)
    temps = [temp_name(p) for p in finals]
    try:
        yield temps
        for t, p in zip(temps, finals):
            honour_umask(t)
            os.replace(t, p)
    finally:
        for t in temps:
            if t.exists():
                t.unlink()


def refuse_existing(paths: list[Path], force: bool) -> None:
    """Outputs that exist are only replaced with --force."""
    existing = [p for p in paths if p.exists()]
    if existing and not force:
        raise UserError(f"{existing[0]} already exists ({len(existing)} of the outputs do); "
                        "pass --force to replace them, or choose another --out")
