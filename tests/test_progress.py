"""Progress that survives logs (issue 9.5): short lines at a steady interval when stderr is not a terminal."""

from __future__ import annotations

import io

from pythia_suite.progress import LogProgress, progress_bar


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_a_line_every_tenth_of_the_total():
    out = io.StringIO()
    bar = LogProgress(range(100), desc="micro-1m", unit="step", file=out, clock=Clock(), after=0)
    assert list(bar) == list(range(100))
    lines = out.getvalue().splitlines()
    assert len(lines) == 10
    assert lines[0].startswith("micro-1m: 10/100 step (10%)") and lines[-1].startswith("micro-1m: 100/100 step (100%)")


def test_a_line_every_interval_when_the_total_is_large():
    out, clock = io.StringIO(), Clock()
    bar = LogProgress(total=10_000, desc="memorization", unit="chunk", file=out, clock=clock, interval=30)
    for _ in range(5):
        clock.t += 31
        bar.update(1)
    bar.set_postfix(loss="3.210")
    clock.t += 31
    bar.update(1)
    bar.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 6
    assert lines[0] == "memorization: 1/10000 chunk (0%), 31 s, 0.0323 chunk/s"
    assert lines[-1].endswith("loss=3.210")


def test_resumed_progress_counts_from_where_it_starts():
    out, clock = io.StringIO(), Clock()
    bar = LogProgress(total=10, initial=5, desc="x", file=out, clock=clock, after=0)
    clock.t = 10.0
    bar.update(5)
    bar.close()
    assert out.getvalue().splitlines() == ["x: 10/10 it (100%), 10 s, 0.5 it/s"]


def test_short_work_prints_nothing():
    out, clock = io.StringIO(), Clock()
    bar = LogProgress(total=10, desc="x", file=out, clock=clock)  # default: quiet for the first 5 s
    clock.t = 4.0
    bar.update(10)
    bar.close()
    assert out.getvalue() == ""


def test_no_terminal_gives_log_lines_and_disabled_gives_nothing(capsys):
    bar = progress_bar(range(3), desc="d", unit="u")  # pytest's stderr is not a terminal
    assert isinstance(bar, LogProgress)
    bar.after = 0
    assert list(bar) == [0, 1, 2]
    assert "d: 3/3 u (100%)" in capsys.readouterr().err
    quiet = progress_bar(range(3), desc="d", enabled=False)
    assert list(quiet) == [0, 1, 2]
    assert capsys.readouterr().err == ""


def test_jupyter_gets_a_tqdm_bar_even_though_stderr_is_no_terminal(monkeypatch, capsys):
    import pythia_suite.progress as progress

    monkeypatch.setattr(progress, "in_notebook", lambda: True)
    bar = progress.progress_bar(range(2), desc="nb")
    assert not isinstance(bar, LogProgress) and not bar.disable  # tqdm.auto: the widget where ipywidgets exists
    assert list(bar) == [0, 1]
    assert progress.in_notebook.__module__  # and outside a kernel the real check says no
    monkeypatch.undo()
    assert progress.in_notebook() is False
