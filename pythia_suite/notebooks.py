"""Execute the notebooks of `notebooks/` against a demo output folder, or a suite and its tables
(`pythia-suite notebooks`).

Each notebook starts with a code cell tagged ``parameters`` (papermill's convention, so
``papermill NB.ipynb OUT.ipynb -p out DIR`` works as well); the values given here go into a cell
inserted right after it, tagged ``injected-parameters``. Executed copies are written to
``OUT/notebooks/NAME.ipynb`` only once the whole notebook ran; a failing cell writes nothing and
names the notebook, the cell and the error.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

from .errors import UserError

SOURCE = Path(__file__).resolve().parents[1] / "notebooks"  # a clone's notebooks/
KERNEL = "pythia-suite-python"  # a kernelspec of this interpreter, so no other environment's "python3" runs them


def notebooks(folder: Path = SOURCE) -> list[Path]:
    if not folder.is_dir():
        raise UserError(f"{folder} not found: the notebooks ship with a clone of the repository, not the package")
    return sorted(folder.glob("[0-9][0-9]_*.ipynb"))


def inject(book, parameters: dict) -> None:
    """Insert `parameters` as assignments after the cell tagged ``parameters`` (papermill's way)."""
    from nbformat.v4 import new_code_cell

    tagged = [i for i, c in enumerate(book.cells) if "parameters" in c.metadata.get("tags", [])]
    if not tagged:
        raise UserError("the notebook has no cell tagged 'parameters'")
    cell = new_code_cell("\n".join(f"{k} = {v!r}" for k, v in parameters.items()))
    cell.metadata["tags"] = ["injected-parameters"]
    book.cells.insert(tagged[0] + 1, cell)


def _kernel_dir() -> Path:
    """A kernelspec folder naming this interpreter, put first on JUPYTER_PATH."""
    root = Path(tempfile.mkdtemp(prefix="pythia-suite-kernel-"))
    spec = root / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}", "--IPKernelApp.log_level=ERROR"],
        "display_name": "pythia-suite", "language": "python"}))
    return root


def execute(source: Path, dest: Path, parameters: dict, timeout: int = 600) -> Path:
    """Run one notebook top to bottom in a fresh kernel (cwd: its own folder) and write the
    executed copy to `dest`."""
    try:
        import ipykernel  # noqa: F401  (the kernel the notebooks run in)
        import nbformat
        from nbclient import NotebookClient
        from nbclient.exceptions import CellExecutionError
    except ImportError as e:
        raise UserError(f"executing notebooks needs {e.name}, a dependency of the package: pip install -e .") from None

    book = nbformat.read(source, as_version=4)
    inject(book, parameters)
    kernels = _kernel_dir()
    old_path = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = os.pathsep.join(filter(None, [str(kernels), old_path]))
    client = NotebookClient(book, timeout=timeout, kernel_name=KERNEL,
                            resources={"metadata": {"path": str(source.parent)}})
    try:
        client.execute()
    except CellExecutionError as e:
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))  # the traceback's colours
        last = [line for line in text.strip().splitlines() if line.strip()][-1]
        raise UserError(f"notebook {source.name} failed: {last}") from None
    finally:
        shutil.rmtree(kernels, ignore_errors=True)
        if old_path is None:
            os.environ.pop("JUPYTER_PATH", None)
        else:
            os.environ["JUPYTER_PATH"] = old_path
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    nbformat.write(book, tmp)
    tmp.replace(dest)
    return dest


# What each notebook reads from a tables folder, and the command that writes it (TABLES stands for
# the folder given). Notebooks not listed need only the suite.
NEEDS = {
    "02": [("memorization.parquet", "memorization"), ("memorization_histogram.parquet", "memorization"),
           ("memorization_order_test.parquet", "memorization"),
           ("memorization_predictability.parquet", "memorization"), ("memorization.zarr", "memorization")],
    "03": [("term_frequency.parquet", "term-frequency"), ("term_frequency_gap.parquet", "term-frequency"),
           ("term_frequency_counts.parquet", "term-frequency")],
    "04": [("bias.parquet", "bias")],
}
WRITES = {  # the command that writes each group of tables into TABLES
    "memorization": "pythia-suite memorization --manifest SUITE --data DATA --sample N --out {tables}/memorization.parquet",
    "term-frequency": "pythia-suite term-frequency --manifest SUITE --data DATA --tasks times plus "
                      "--out {tables}/term_frequency.parquet",
    "bias": "pythia-suite bias --manifest SUITE --probes micropile --ground-truth GROUND_TRUTH "
            "--out {tables}/bias.parquet",
}


def check_tables(books: list[Path], tables: Path) -> None:
    """Every table the selected notebooks read is in `tables`, or one error naming the first missing
    one and the command that writes it."""
    for book in books:
        for name, command in NEEDS.get(book.name[:2], []):
            if not (tables / name).exists():
                raise UserError(f"{tables / name} is missing ({book.stem} reads it): run "
                                f"`{WRITES[command].format(tables=tables)}`, or leave {book.name[:2]} out with --only")


def run_all(out: str | os.PathLike | None = None, dest: str | os.PathLike | None = None,
            only: list[str] | None = None, progress: bool = True, *, suite: str | os.PathLike | None = None,
            tables: str | os.PathLike | None = None, data: str | os.PathLike | None = None) -> list[Path]:
    """Execute every notebook (or those whose names start with one of `only`) against a demo output
    folder `out`, or against a suite folder (`suite`) and the folder of its tables (`tables`, as
    written by each analysis' `--out TABLES/NAME.parquet`); `suite` and `tables` override OUT/suite
    and OUT/tables, `data` the suite's data prefix. Every input is checked before any notebook runs.
    Executed copies go to `dest` (default OUT/notebooks, or TABLES/notebooks without `out`)."""
    if out is None and suite is None:
        raise UserError("give a demo output folder (--out DIR) or a suite (--suite DIR, with --tables DIR for "
                        "the analyses' notebooks)")
    out = Path(out).resolve() if out is not None else None
    suite = Path(suite).resolve() if suite is not None else out / "suite"
    manifest = suite if suite.is_file() else suite / "checkpoints_manifest.json"
    if not manifest.is_file():
        if out is not None and suite == out / "suite":
            raise UserError(f"{out} is not a demo output folder (no suite/checkpoints_manifest.json); "
                            "run `pythia-suite demo --out DIR` first, or give --suite and --tables")
        raise UserError(f"{suite} is not a suite (no checkpoints_manifest.json); `pythia-suite train --out DIR` "
                        "writes one")
    tables = Path(tables).resolve() if tables is not None else (out / "tables" if out is not None else None)
    if tables is not None and not tables.is_dir():
        raise UserError(f"tables folder {tables} not found: give the folder the analyses wrote their --out tables to")
    if data is not None:
        from .data.indexed import IndexedDataset

        IndexedDataset(data)  # one error line for a prefix that is not a dataset
    books = [b for b in notebooks() if not only or any(b.name.startswith(o) for o in only)]
    if not books:
        raise UserError(f"no notebook matches {', '.join(only or [])}; have: {', '.join(b.name for b in notebooks())}")
    needing = [b for b in books if b.name[:2] in NEEDS]
    if needing and tables is None:
        raise UserError(f"{', '.join(b.stem for b in needing)} read an analysis' tables: give --tables DIR "
                        "(or --only 00 01 for the suite alone)")
    if tables is not None:
        check_tables(books, tables)
    if dest is None:
        dest = out / "notebooks" if out is not None else (tables or suite.parent) / "notebooks"
    dest = Path(dest).resolve()
    if dest == SOURCE.resolve():
        raise UserError(f"{dest} holds the notebooks themselves: give another --dest")
    parameters = {"out": str(out) if out is not None else None, "suite_path": str(suite),
                  "tables": str(tables) if tables is not None else None}
    if data is not None:
        parameters["data"] = str(Path(data).resolve())
    written = []
    for book in books:
        if progress:
            print(f"executing {book.name}", file=sys.stderr, flush=True)
        written.append(execute(book, dest / book.name, parameters))
    if out is not None and dest == out / "notebooks" and (out / "report.md").is_file():
        _link_in_report(out)
    return written


def report_lines(out: Path) -> list[str]:
    """The report's Notebooks section: links to the executed copies under OUT/notebooks/ (written
    by `pythia-suite notebooks`, which rewrites this section when it is done)."""
    books = notebooks() if SOURCE.is_dir() else []
    if not books:
        return []
    done = [b for b in books if (out / "notebooks" / b.name).is_file()]
    lines = ["## Notebooks", "",
             f"Executed against this folder: {len(done)} of {len(books)}" +
             ("" if len(done) == len(books) else f"; `pythia-suite notebooks --out {out}` (or `make notebooks`) "
                                                  "executes them into `notebooks/`") + ".", ""]
    lines += [f"- [{b.stem}](notebooks/{b.name})" + ("" if b in done else " (not executed yet)") for b in books]
    return lines + [""]


def _link_in_report(out: Path) -> None:
    """Rewrite the report's Notebooks section to say which executed copies now exist."""
    from .fileio import atomic_outputs

    report = out / "report.md"
    text = report.read_text()
    start = text.find("## Notebooks\n")
    if start < 0:
        return
    end = text.find("\n## ", start + 1)
    new = text[:start] + "\n".join(report_lines(out)) + ("\n" + text[end + 1 :] if end >= 0 else "")
    with atomic_outputs(report) as (tmp,):
        tmp.write_text(new)
