"""Read pair files and corpus files, and check them before any model is loaded.

A pair file is a ``.jsonl`` / ``.json`` / ``.csv`` / ``.tsv`` / ``.parquet`` table or a ``save_to_disk`` folder
(a ``DatasetDict`` is indexed by split). Everything that can go wrong in one (unreadable, malformed or empty,
an unknown column, a column that is not text, a missing text) is a ``ValueError`` with a one-line message that
names the file, so the command line can report it before the model loads. The checks read Arrow metadata
(column types and null counts), not the texts themselves.

Example::

    >>> import tempfile
    >>> from pathlib import Path
    >>> from st_lsh.pairfiles import read_pairs
    >>> path = Path(tempfile.mkdtemp()) / "pairs.jsonl"
    >>> _ = path.write_text('{"q": "What do bees make?", "a": "Honey."}\\n{"q": "Who wrote Hamlet?", "a": null}\\n')
    >>> read_pairs(path)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: Column 'a' of '...pairs.jsonl' has a missing value (null) in row 1; every anchor and ...
    >>> _ = path.write_text('{"q": "What do bees make?", "a": "Honey."}\\n')
    >>> read_pairs(path).column_names
    ['q', 'a']
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset, DatasetDict

from .pairs import resolve_columns

__all__ = ["PAIR_FILE_SUFFIXES", "check_text_column", "quiet_datasets", "read_corpus_file", "read_pairs",
           "read_table"]

PAIR_FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".parquet")
_FORMATS = {".jsonl": "JSON lines", ".json": "JSON lines", ".csv": "CSV", ".tsv": "TSV", ".parquet": "Parquet"}


@contextmanager
def quiet_datasets() -> Iterator[None]:
    """Hide ``datasets``' progress bars and its own error log lines while a small file is read or written (a
    bad file is reported once, by the caller)."""
    from datasets import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars
    from datasets.utils import logging as datasets_logging

    bars_off, verbosity = are_progress_bars_disabled(), datasets_logging.get_verbosity()
    disable_progress_bars()
    datasets_logging.set_verbosity(logging.CRITICAL + 1)
    try:
        yield
    finally:
        datasets_logging.set_verbosity(verbosity)
        if not bars_off:
            enable_progress_bars()


def read_table(path: str | os.PathLike) -> Dataset:
    """A table file as a ``Dataset``; an unreadable, malformed or empty file is a one-line ValueError."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _FORMATS:
        raise ValueError(f"Unsupported file type {suffix or '(none)'!r} for {str(path)!r}; use one of "
                         f"{', '.join(PAIR_FILE_SUFFIXES)}, a BEIR / MS MARCO folder or a save_to_disk folder")
    if not os.access(path, os.R_OK):
        raise PermissionError(f"Cannot read {str(path)!r}: permission denied")
    if path.stat().st_size == 0:
        raise ValueError(f"{str(path)!r} is empty")
    if suffix in (".csv", ".tsv") and _data_lines(path) < 2:
        raise ValueError(f"{str(path)!r} holds no rows (a header at most)")
    try:
        with quiet_datasets():
            if suffix in (".jsonl", ".json"):
                table = Dataset.from_json(str(path))
            elif suffix == ".parquet":
                table = Dataset.from_parquet(str(path))
            else:
                table = Dataset.from_csv(str(path), sep="\t" if suffix == ".tsv" else ",")
    except Exception as exc:  # noqa: BLE001 - datasets / pyarrow / pandas raise many types for a bad file
        cause = exc.__cause__ or exc.__context__ or exc
        detail = " ".join(str(cause).split())[:200] or type(cause).__name__
        raise ValueError(f"Cannot read {str(path)!r} as {_FORMATS[suffix]}: {detail}") from exc
    if len(table) == 0 or not table.column_names:
        raise ValueError(f"{str(path)!r} holds no rows")
    return table


def _data_lines(path: Path, enough: int = 2) -> int:
    """Non-blank lines of a text file, counted up to ``enough``."""
    count = 0
    with path.open("rb") as f:
        for line in f:
            count += bool(line.strip())
            if count >= enough:
                break
    return count


def read_pairs(
    path: str | os.PathLike,
    split: str = "train",
    anchor_column: str | None = None,
    positive_column: str | None = None,
) -> Dataset:
    """The (anchor, positive) columns of a pair file or ``save_to_disk`` folder, checked to hold only texts.

    Columns default to the first two; an unknown column name is an error (not sentence-transformers' silent
    fallback). The result keeps the file's column names.
    """
    path = Path(path)
    source = repr(str(path))
    if path.is_dir():
        from datasets import load_from_disk

        try:
            with quiet_datasets():
                loaded = load_from_disk(str(path))
        except FileNotFoundError:
            raise ValueError(f"{source} is neither a BEIR / MS MARCO folder nor a save_to_disk folder") from None
        except Exception as exc:  # noqa: BLE001 - a damaged save_to_disk folder
            raise ValueError(f"Cannot read the save_to_disk folder {source}: {' '.join(str(exc).split())[:200]}") \
                from exc
        if isinstance(loaded, DatasetDict):
            if split not in loaded:
                raise ValueError(f"Unknown split {split!r} in {source}; available splits: {list(loaded)}")
            loaded = loaded[split]
        dataset = loaded
        if len(dataset) == 0:
            raise ValueError(f"{source} holds no rows")
    else:
        dataset = read_table(path)
    if len(dataset.column_names) < 2:
        raise ValueError(f"{source} has {len(dataset.column_names)} column ({dataset.column_names}); pairs need an "
                         "anchor and a positive column")
    anchor, positive = resolve_columns(dataset.column_names, anchor_column, positive_column, strict=True,
                                       source=source, arg_names=("--anchor-column", "--positive-column"))
    dataset = dataset.select_columns([anchor, positive])
    for column in (anchor, positive):
        check_text_column(dataset, column, source)
    return dataset


def check_text_column(dataset: Dataset, column: str, source: str) -> None:
    """Raise a ValueError unless ``column`` is a string column without missing values (Arrow metadata only)."""
    data: pa.ChunkedArray = dataset.data.column(column)
    if not (pa.types.is_string(data.type) or pa.types.is_large_string(data.type)
            or pa.types.is_string_view(data.type)):
        raise ValueError(f"Column {column!r} of {source} holds {data.type} values, not texts; every anchor and "
                         "positive must be a text")
    if data.null_count:
        row = int(pc.index(pc.is_null(data), True).as_py())
        raise ValueError(f"Column {column!r} of {source} has a missing value (null) in row {row}; every anchor "
                         "and positive must be a text")


def read_corpus_file(path: str | os.PathLike, column: str = "text") -> list[str]:
    """Documents to mine from: a ``.txt`` file (one per non-blank line), or a table file whose ``column`` holds
    the text (with a ``title`` column too: ``title + " " + text``, as BEIR documents are encoded)."""
    from .data import doc_text

    path = Path(path)
    if path.suffix.lower() == ".txt":
        try:
            texts = [line.rstrip("\r\n") for line in path.read_text(encoding="utf-8").splitlines()]
        except UnicodeDecodeError as exc:
            raise ValueError(f"Cannot read {str(path)!r} as UTF-8 text: {exc.reason} at byte {exc.start}") from None
        texts = [t for t in texts if t.strip()]
        if not texts:
            raise ValueError(f"{str(path)!r} holds no documents")
        return texts
    table = read_table(path)
    if column not in table.column_names:
        raise ValueError(f"Unknown corpus column {column!r} (--corpus-column); the columns of {str(path)!r} are "
                         f"{table.column_names}")
    check_text_column(table, column, repr(str(path)))
    if "title" in table.column_names and column != "title":
        return [doc_text({"title": t or "", "text": x}) for t, x in zip(table["title"], table[column])]
    return list(table[column])
