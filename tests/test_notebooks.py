"""The notebooks of notebooks/: clean in git, and run top to bottom on the tiny demo's output."""

from __future__ import annotations

import re

import nbformat
import pytest

from conftest import assert_one_error_line, run_cli
from pythia_suite.notebooks import inject, notebooks, run_all

BOOKS = notebooks()
NAMES = ["00_dataloader_reconstruction", "01_checkpoints", "02_memorization", "03_term_frequency", "04_bias"]


def test_every_notebook_is_there():
    assert [b.stem for b in BOOKS] == NAMES


@pytest.mark.parametrize("path", BOOKS, ids=[b.stem for b in BOOKS])
def test_notebook_is_stripped_and_starts_with_what_it_needs(path):
    book = nbformat.read(path, as_version=4)
    nbformat.validate(book)
    code = [c for c in book.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code), "outputs must be stripped in git"
    assert book.cells[0].cell_type == "markdown" and "**Needs:**" in book.cells[0].source
    assert book.cells[1].cell_type == "code" and book.cells[1].metadata.get("tags") == ["parameters"]
    assert 'out = "../demo_output"' in book.cells[1].source
    literals = re.findall(r"[\"']([^\"']*)[\"']", "\n".join(c.source for c in code))
    assert not [s for s in literals if s.startswith(("/", "~")) or re.match(r"[A-Za-z]:\\", s)], "no absolute paths"


def test_parameters_go_right_after_the_parameters_cell():
    book = nbformat.read(BOOKS[0], as_version=4)
    inject(book, {"out": "/somewhere", "step": 3})
    assert book.cells[2].metadata["tags"] == ["injected-parameters"]
    assert book.cells[2].source == "out = '/somewhere'\nstep = 3"


def test_notebooks_run_on_the_demo_output(tiny_demo, tmp_path):
    written = run_all(tiny_demo, dest=tmp_path, progress=False)
    assert [p.stem for p in written] == NAMES
    for path in written:
        book = nbformat.read(path, as_version=4)
        code = [c for c in book.cells if c.cell_type == "code"]
        assert all(c.execution_count is not None for c in code)
        errors = [o for c in code for o in c.outputs if o.output_type == "error"]
        assert errors == []
        images = [o for c in code for o in c.outputs if "image/png" in o.get("data", {})]
        assert len(images) >= {"00": 0, "01": 1, "02": 2, "03": 3, "04": 2}[path.name[:2]], path.name
    text = "".join(o.get("text", "") for c in nbformat.read(written[2], as_version=4).cells
                   if c.cell_type == "code" for o in c.outputs)
    assert "again" in text  # the recomputed memorization scores were printed (and asserted equal)


def test_notebooks_command_refuses_a_folder_that_is_no_demo_output(tmp_path, capsys):
    rc, out, err = run_cli(capsys, "notebooks", "--out", tmp_path)
    assert rc == 2
    assert "is not a demo output folder" in assert_one_error_line(err)
    assert not (tmp_path / "notebooks").exists()


def test_notebooks_command_refuses_an_unknown_name(tiny_demo, capsys):
    rc, out, err = run_cli(capsys, "notebooks", "--out", tiny_demo, "--only", "99")
    assert rc == 2
    assert "no notebook matches 99" in assert_one_error_line(err)


def test_report_links_the_notebooks_and_says_which_ran(tiny_demo, tmp_path):
    from pythia_suite.notebooks import report_lines
    from pythia_suite.notebooks import _link_in_report

    text = (tiny_demo / "report.md").read_text()
    assert "## Notebooks" in text and f"(notebooks/{BOOKS[0].name}) (not executed yet)" in text
    out = tmp_path / "out"
    (out / "notebooks").mkdir(parents=True)
    (out / "report.md").write_text("# r\n\n" + "\n".join(report_lines(out)) + "\n## Every table this demo wrote\n\n- x\n")
    (out / "notebooks" / BOOKS[0].name).write_text("{}")
    _link_in_report(out)
    text = (out / "report.md").read_text()
    assert f"Executed against this folder: 1 of {len(BOOKS)}" in text
    assert f"- [{BOOKS[0].stem}](notebooks/{BOOKS[0].name})\n" in text and text.count("(not executed yet)") == len(BOOKS) - 1
    assert text.endswith("\n\n## Every table this demo wrote\n\n- x\n")


def test_a_failing_cell_is_one_error_line_and_writes_nothing(tiny_demo, tmp_path):
    from pythia_suite.errors import UserError
    from pythia_suite.notebooks import execute

    book = nbformat.read(BOOKS[1], as_version=4)
    book.cells.append(nbformat.v4.new_code_cell("raise ValueError('planted failure')"))
    src = tmp_path / "broken.ipynb"
    nbformat.write(book, src)
    with pytest.raises(UserError, match=r"notebook broken.ipynb failed: ValueError: planted failure"):
        execute(src, tmp_path / "out" / "broken.ipynb", {"out": str(tiny_demo)})
    assert not (tmp_path / "out").exists()


# ---- a user's own suite and tables folder (not the demo's layout) -------------------------------


@pytest.fixture(scope="module")
def own_suite(tmp_path_factory):
    """A suite built by hand with the CLI: tiny data (64-token items, for 32+32-token memorization),
    one micro model of 12 steps, and the memorization tables in a folder of their own."""
    from _train_helpers import make_corpus
    from pythia_suite.cli import main

    root = tmp_path_factory.mktemp("own")
    corpus = make_corpus(root / "corpus.txt", n_docs=600)
    for argv in (["data", "build", corpus, "--out", root / "data" / "corpus", "--seq-len", 64, "--vocab-size", 300,
                  "--seed", 1, "--quiet"],
                 ["train", "--data", root / "data" / "corpus", "--out", root / "mine", "--sizes", "micro-50k",
                  "--batch-size", 8, "--steps", 12, "--checkpoint-every", 4, "--quiet"],
                 ["memorization", "--manifest", root / "mine", "--data", root / "data" / "corpus", "--sample", 16,
                  "--out", root / "results" / "memorization.parquet", "--quiet"]):
        assert main([str(a) for a in argv]) == 0, argv
    return root


def test_notebooks_run_on_a_suite_and_tables_of_ones_own(own_suite, tmp_path, capsys):
    rc, out, err = run_cli(capsys, "notebooks", "--suite", own_suite / "mine", "--tables", own_suite / "results",
                           "--only", "00", "01", "02", "--dest", tmp_path / "done", "--quiet")
    assert rc == 0, err
    names = ["00_dataloader_reconstruction", "01_checkpoints", "02_memorization"]
    assert sorted(p.stem for p in (tmp_path / "done").iterdir()) == names
    assert out.splitlines()[-1] == f"executed 3 notebook(s) into {tmp_path / 'done'}"
    for name in names:
        book = nbformat.read(tmp_path / "done" / f"{name}.ipynb", as_version=4)
        injected = book.cells[2]
        assert injected.metadata["tags"] == ["injected-parameters"]
        assert f"suite_path = {str(own_suite / 'mine')!r}" in injected.source and "out = None" in injected.source
        code = [c for c in book.cells if c.cell_type == "code"]
        assert all(c.execution_count is not None for c in code)
        assert [o for c in code for o in c.outputs if o.output_type == "error"] == []
    text = "".join(o.get("text", "") for c in nbformat.read(tmp_path / "done" / "02_memorization.ipynb",
                                                            as_version=4).cells
                   if c.cell_type == "code" for o in c.outputs)
    assert "again" in text and "no canary table" in text  # its own scores recomputed; no demo canaries


def test_notebooks_on_the_demo_suite_given_as_suite_and_tables(tiny_demo, tmp_path, capsys):
    """03 and 04 read their inputs from --suite/--tables, not from a demo folder (no `out`)."""
    rc, out, err = run_cli(capsys, "notebooks", "--suite", tiny_demo / "suite", "--tables", tiny_demo / "tables",
                           "--only", "03", "04", "--dest", tmp_path, "--quiet")
    assert rc == 0, err
    for name in ("03_term_frequency", "04_bias"):
        book = nbformat.read(tmp_path / f"{name}.ipynb", as_version=4)
        assert "out = None" in book.cells[2].source
        assert [o for c in book.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"] == []


def test_a_missing_table_names_the_command_that_writes_it(own_suite, tmp_path, capsys):
    rc, out, err = run_cli(capsys, "notebooks", "--suite", own_suite / "mine", "--tables", own_suite / "results",
                           "--dest", tmp_path / "done")
    assert rc == 2
    line = assert_one_error_line(err)
    missing = own_suite / "results" / "term_frequency.parquet"
    assert line == (f"error: {missing} is missing (03_term_frequency reads it): run `pythia-suite term-frequency "
                    f"--manifest SUITE --data DATA --tasks times plus --out {own_suite / 'results'}/term_frequency.parquet`"
                    ", or leave 03 out with --only")
    assert not (tmp_path / "done").exists()  # checked before the first notebook ran


def test_notebooks_need_tables_for_the_analyses_and_a_real_suite(own_suite, tmp_path, capsys):
    rc, out, err = run_cli(capsys, "notebooks", "--suite", own_suite / "mine", "--only", "02", "--dest", tmp_path / "d")
    assert rc == 2 and "02_memorization read an analysis' tables: give --tables DIR" in assert_one_error_line(err)
    rc, out, err = run_cli(capsys, "notebooks", "--suite", own_suite / "results", "--tables", own_suite / "results")
    assert rc == 2 and "is not a suite (no checkpoints_manifest.json)" in assert_one_error_line(err)
    assert not (tmp_path / "d").exists() and not (own_suite / "results" / "notebooks").exists()


def test_the_notebook_runner_installs_with_the_package():
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    names = {re.match(r"[A-Za-z0-9_.-]+", d).group(0) for d in project["dependencies"]}
    assert {"nbformat", "nbclient", "ipykernel"} <= names
