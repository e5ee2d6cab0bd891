"""Progress that works in a terminal, in Jupyter and in a log file.

    for step in progress_bar(range(n), desc="micro-1m", unit="step"):
        ...

- stderr is a terminal: a tqdm bar.
- Jupyter (an IPython kernel): tqdm's notebook widget (needs ipywidgets, extra ``notebook``;
  without it tqdm falls back to text).
- anything else (a log file, a pipe, CI): one short line on stderr every `interval` seconds or
  every 10% of the total, whichever comes first, and a last line at the end, so a long command
  is never silent and the log stays readable. Work done within 5 s prints nothing.
"""

from __future__ import annotations

import sys
import time
from typing import Iterable, TextIO

LOG_INTERVAL_S = 30.0
LOG_FRACTION = 0.1
LOG_AFTER_S = 5.0  # work shorter than this prints nothing (an error then stays one line)


def in_notebook() -> bool:
    """True inside a Jupyter/IPython kernel (not a plain IPython terminal)."""
    shell = sys.modules.get("IPython")
    try:
        ip = shell.get_ipython() if shell is not None else None
    except Exception:  # IPython half-imported or shut down
        return False
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class LogProgress:
    """tqdm's small interface (iterate, update, set_postfix, close) as occasional log lines."""

    def __init__(self, iterable: Iterable | None = None, total: int | None = None, desc: str = "",
                 unit: str = "it", initial: int = 0, interval: float = LOG_INTERVAL_S,
                 fraction: float = LOG_FRACTION, file: TextIO | None = None, clock=time.monotonic,
                 after: float = LOG_AFTER_S):
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.total, self.desc, self.unit = total, desc, unit
        self.n = self._last_n = self._initial = initial
        self.interval, self.fraction = interval, fraction
        self.file = file
        self.clock = clock
        self._start = self._last_t = clock()
        self._postfix = ""
        self._closed = False
        self.after = after
        self._printed = False

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def __len__(self) -> int:
        return self.total or 0

    def set_postfix(self, **kwargs) -> None:
        self._postfix = ", ".join(f"{k}={v}" for k, v in kwargs.items())

    def set_description(self, desc: str) -> None:
        self.desc = desc

    def update(self, n: int = 1) -> None:
        self.n += n
        now = self.clock()
        step = max(1, round(self.fraction * self.total)) if self.total else None
        if now - self._start < self.after:
            return
        if now - self._last_t >= self.interval or (step is not None and self.n - self._last_n >= step):
            self._emit(now)

    def _emit(self, now: float) -> None:
        elapsed = now - self._start
        of = f"/{self.total}" if self.total else ""
        pct = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        rate = (self.n - self._initial) / elapsed if elapsed > 0 else 0.0
        extra = f", {self._postfix}" if self._postfix else ""
        print(f"{self.desc}: {self.n}{of} {self.unit}{pct}, {elapsed:.0f} s, {rate:.3g} {self.unit}/s{extra}",
              file=self.file or sys.stderr, flush=True)
        self._last_t, self._last_n = now, self.n
        self._printed = True

    def close(self) -> None:
        now = self.clock()
        if not self._closed and self.n != self._last_n and (self._printed or now - self._start >= self.after):
            self._emit(now)
        self._closed = True


def progress_bar(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "",
                 unit: str = "it", enabled: bool = True, initial: int = 0, **tqdm_kwargs):
    """A progress reporter for the current output: tqdm, a notebook widget, log lines, or nothing
    (`enabled` False)."""
    from tqdm.auto import tqdm

    if not enabled:
        return tqdm(iterable, total=total, disable=True, initial=initial)
    if in_notebook():
        return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, disable=False, **tqdm_kwargs)
    if _isatty(sys.stderr):
        return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, leave=False, **tqdm_kwargs)
    return LogProgress(iterable, total=total, desc=desc, unit=unit, initial=initial)
