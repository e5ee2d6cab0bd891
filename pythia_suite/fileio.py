"""Small file helpers: checksums and all-or-nothing writes."""

from __future__ import annotations

import hashlib
import json
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


def stamp_dir() -> Path:
    """Where file hashes are remembered: $PYTHIA_SUITE_CACHE, else ~/.cache/pythia-suite."""
    root = os.environ.get("PYTHIA_SUITE_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pythia-suite"
    return Path(root) / "sha256"


def stamped_sha256(path: str | os.PathLike, force: bool = False) -> str:
    """sha256 of a file, measured once per version of it: the hash is kept with the file's size,
    mtime and inode (in `stamp_dir()`, keyed by the absolute path) and trusted while all three are
    unchanged; `force` hashes again. A stamp that cannot be written only costs the next rehash."""
    path = Path(path).resolve()
    st = path.stat()
    key = {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino}
    stamp = stamp_dir() / (hashlib.sha256(str(path).encode()).hexdigest()[:32] + ".json")
    if not force:
        try:
            old = json.loads(stamp.read_text())
            if {k: old.get(k) for k in key} == key and isinstance(old.get("sha256"), str):
                return old["sha256"]
        except (OSError, ValueError):
            pass
    sha = sha256_file(path)
    try:
        stamp.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_name(stamp)
        tmp.write_text(json.dumps({**key, "sha256": sha}) + "\n")
        os.replace(tmp, stamp)
    except OSError:
        pass
    return sha


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


@contextmanager
def store_lock(store: str | os.PathLike, what: str = "results store") -> Iterator[Path]:
    """Hold `STORE.lock` while this process writes `store`, so a second run writing the same store
    is refused with who holds it instead of mixing its results in. The lock file records pid, host
    and start time; one left by a process of this host that is gone (killed) is taken over. It is
    removed on exit, Ctrl-C included. Workers of a cluster write chunks under their driver's lock,
    and stop when it is no longer their driver's (`lock_holder`): tasks a killed driver left running
    on a long-lived cluster then do not compete with the rerun."""
    import socket
    import time

    lock = Path(store).with_name(Path(store).name + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            try:
                holder = json.loads(lock.read_text())
            except (OSError, ValueError):
                holder = {}
            if holder.get("host") == me["host"] and not _alive(holder.get("pid")):
                lock.unlink(missing_ok=True)  # its writer was killed: take over
                continue
            raise UserError(f"{store} is being written by another process (pid {holder.get('pid', '?')} on "
                            f"{holder.get('host', '?')} since {holder.get('started', '?')}); wait for it to finish, "
                            f"or delete {lock} if that process is gone") from None
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(me) + "\n")
        break
    else:
        raise UserError(f"could not take {lock}: another process keeps replacing it")
    try:
        yield lock
    finally:
        lock.unlink(missing_ok=True)


def lock_holder(lock: str | os.PathLike) -> str | None:
    """Who holds `lock` (the text `store_lock` wrote: pid, host, start), or None when no one does.
    A worker compares it with its driver's at the start of each unit of work."""
    try:
        return Path(lock).read_text()
    except FileNotFoundError:
        return None


def _alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True

