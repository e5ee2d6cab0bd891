"""The README's "Your own corpus, end to end" block runs as written: every command of it, in
order, in a folder holding only the inputs the README names (a corpus of documents and made-up
lookalikes of WinoBias, CrowS-Pairs and LAMBADA under the README's file names)."""

from __future__ import annotations

import re
import shlex
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import run_cli

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "## Your own corpus, end to end"


def walkthrough() -> list[list[str]]:
    """The commands of the section's bash block, continuation lines joined, each as argv."""
    text = README.read_text()
    assert SECTION in text, f"README has no section {SECTION!r}"
    body = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", body, re.S).group(1)
    lines = block.replace("\\\n", " ").splitlines()
    return [shlex.split(line) for line in lines if line.strip() and not line.lstrip().startswith("#")]


def write_inputs(folder: Path) -> None:
    from pythia_suite.eval.bias_data import write_crows_lookalike, write_lambada_lookalike, write_winobias_lookalike
    from pythia_suite.micropile import MicroPileConfig, generate

    generate(folder / "corpus.jsonl", replace(MicroPileConfig(), target_bytes=120_000, canaries_per_repeat=0))
    (folder / "corpus.ground_truth.json").unlink()  # a user's corpus has no planted truth
    write_winobias_lookalike(folder / "wino")
    write_crows_lookalike(folder / "crows_pairs_anonymized.csv")
    write_lambada_lookalike(folder / "lambada_test.jsonl")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_readme_walkthrough_runs_as_written(tmp_path, monkeypatch, capsys):
    pytest.importorskip("lm_eval")
    pytest.importorskip("nbclient")
    commands = walkthrough()
    assert [c[0] for c in commands] == ["pythia-suite"] * len(commands)
    write_inputs(tmp_path)
    monkeypatch.chdir(tmp_path)
    for argv in commands:
        rc, out, err = run_cli(capsys, *argv[1:])
        assert rc == 0, f"{shlex.join(argv)} exited {rc}:\n{err}"
        assert out.strip(), f"{shlex.join(argv)} printed no summary line"

    from pythia_suite.checkpoints import Suite
    from pythia_suite.tables import read_table

    suite = Suite.load("suite")
    assert set(suite.models()) == {"micro-50k", "micro-200k", "micro-200k-swap"}
    counts = read_table("tables/bias_transform_counts.parquet")
    assert counts.loc[counts["role"] == "source", "whole_word_before"].sum() > 0  # the swap replaced something
    for table in ("memorization", "term_frequency", "term_frequency_answers", "bias", "evaluate"):
        df = read_table(f"tables/{table}.parquet")
        assert len(df) and isinstance(df.attrs["notes"], list), table
    executed = sorted(p.name for p in Path("notebooks_run").glob("*.ipynb"))
    assert executed == sorted(p.name for p in (README.parent / "notebooks").glob("*.ipynb"))
    # the case-study notebooks print each table's notes before its numbers (here: nothing memorized)
    for book in ("02", "03", "04"):
        text = next(Path("notebooks_run").glob(f"{book}_*.ipynb")).read_text()
        assert "Not findings (degenerate results" in text or "notes: none" in text, book
    assert "nothing memorized: 0 of 128 trained sequences" in next(Path("notebooks_run").glob("02_*.ipynb")).read_text()
