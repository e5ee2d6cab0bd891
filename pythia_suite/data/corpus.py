"""Reading documents from a corpus on disk, streamed one document at a time.

Inputs (by suffix):
- ``.txt``: documents separated by one or more blank lines.
- ``.jsonl``: one JSON object per line; the document is its text field (default ``text``).
- ``.parquet``: the text column (default ``text``), read in record batches.
- a directory written by ``datasets.Dataset.save_to_disk`` (a DatasetDict uses its ``train`` split).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator

from ..errors import UserError

SUFFIXES = (".txt", ".jsonl", ".parquet")


def check_inputs(paths: list[str | os.PathLike]) -> list[Path]:
    """Validate input paths up front so a build fails before it writes anything."""
    if not paths:
        raise UserError("no input files given; pass one or more .txt, .jsonl, .parquet files or dataset folders")
    out = []
    for p in map(Path, paths):
        if not p.exists():
            raise UserError(f"input not found: {p}")
        if p.is_dir():
            if not any((p / name).exists() for name in ("dataset_info.json", "state.json", "dataset_dict.json")):
                raise UserError(f"{p} is a folder but not a dataset saved with `datasets` save_to_disk")
        elif p.suffix not in SUFFIXES:
            raise UserError(f"unsupported input {p}: expected {', '.join(SUFFIXES)} or a save_to_disk folder")
        out.append(p)
    return out


def iter_documents(paths: list[Path], text_field: str = "text") -> Iterator[str]:
    """Every non-empty document of every input, in input order."""
    for p in paths:
        if p.is_dir():
            docs = _datasets_docs(p, text_field)
        elif p.suffix == ".txt":
            docs = _txt_docs(p)
        elif p.suffix == ".jsonl":
            docs = _jsonl_docs(p, text_field)
        else:
            docs = _parquet_docs(p, text_field)
        for doc in docs:
            if doc:
                yield doc


def _txt_docs(path: Path) -> Iterator[str]:
    lines: list[str] = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.strip():
                lines.append(line)
            elif lines:
                yield "".join(lines).rstrip("\n")
                lines = []
    if lines:
        yield "".join(lines).rstrip("\n")


def _jsonl_docs(path: Path, field: str) -> Iterator[str]:
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"{path}:{n}: not valid JSON ({e.msg})") from None
            if not isinstance(record, dict) or field not in record:
                raise UserError(f"{path}:{n}: no {field!r} field (use --text-field to name the text field)")
            if not isinstance(record[field], str):
                raise UserError(f"{path}:{n}: field {field!r} is {type(record[field]).__name__}, not a string")
            yield record[field]


def _parquet_docs(path: Path, field: str) -> Iterator[str]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises several types for a damaged file
        raise UserError(f"{path} is not a readable Parquet file ({e})") from None
    if field not in pf.schema_arrow.names:
        raise UserError(f"{path} has no column {field!r}; columns: {', '.join(pf.schema_arrow.names)}")
    for batch in pf.iter_batches(columns=[field], batch_size=4096):
        yield from (t for t in batch.column(0).to_pylist() if t)


def _datasets_docs(path: Path, field: str) -> Iterator[str]:
    try:
        import datasets
    except ImportError:
        raise UserError("reading a save_to_disk folder needs the `datasets` package: pip install datasets") from None
    ds = datasets.load_from_disk(str(path))
    if isinstance(ds, datasets.DatasetDict):
        if "train" not in ds:
            raise UserError(f"{path} is a DatasetDict without a 'train' split; splits: {', '.join(ds)}")
        ds = ds["train"]
    if field not in ds.column_names:
        raise UserError(f"{path} has no column {field!r}; columns: {', '.join(ds.column_names)}")
    for batch in ds.select_columns([field]).iter(batch_size=4096):
        yield from (t for t in batch[field] if t)
