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
