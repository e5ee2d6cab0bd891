"""How `pythia-suite` ends when its reader goes away (Ctrl-C and SIGTERM: tests/test_memorization.py).

    .venv/bin/python -m pytest tests/test_cli_signals.py -q
"""

from __future__ import annotations

import subprocess
import sys


def test_a_closed_pipe_ends_quietly():
    """`pythia-suite checkpoints list | head -1`: no 'Broken pipe' error, no traceback, SIGPIPE's status."""
    proc = subprocess.Popen([sys.executable, "-m", "pythia_suite", "checkpoints", "list"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stdout.readline()
    proc.stdout.close()  # the reader is gone; ~3000 more rows still to print
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141
    assert first.startswith(b"model") and err == ""
