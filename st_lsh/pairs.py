"""Read (anchor, positive) pairs: columns, text checks, and de-duplication into queries, corpus and positives.

This is the data layer of the pipeline, shared by the miner, the refresher, the sampler and the command line:

- :func:`resolve_columns` picks the anchor and positive columns (sentence-transformers' fallback to the first two
  columns, or a strict check for the command line);
- :class:`TextTable` holds unique texts in first-seen order, in Arrow buffers rather than Python strings, so that
  a corpus streamed from a generator or read from a disk-backed ``Dataset`` never becomes one giant Python list;
- :class:`PairTable` de-duplicates the pairs exactly as ``sentence_transformers.util.mine_hard_negatives`` does:
  the corpus is the extra documents followed by the positives, de-duplicated in order; the queries are the unique
  anchors; each query has the list of its distinct positives.

Inputs may be a ``datasets.Dataset`` (read in Arrow batches), a ``datasets.IterableDataset`` (streamed once),
and the corpus any iterable of strings, a generator included.

Example::

    >>> from datasets import Dataset
    >>> from st_lsh.pairs import PairTable
    >>> pairs = Dataset.from_dict({"q": ["a", "a", "b"], "d": ["x", "y", "x"]})
    >>> table = PairTable.from_dataset(pairs, corpus=["z", "x"])
    >>> table.corpus.texts(), table.queries.texts(), table.positive_indices
    (['z', 'x', 'y'], ['a', 'b'], [[1, 2], [1]])
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

logger = logging.getLogger(__name__)

READ_BATCH = 10_000


def check_texts(texts: Sequence[Any], name: str, offset: int = 0) -> list[str]:
    """Return ``texts`` as a list of strings, or raise a ValueError naming the first bad entry."""
    texts = list(texts)
    for position, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(
                f"{name} must contain only strings, but entry {offset + position} is {type(text).__name__}: "
                f"{text!r:.80}."
            )
    return texts


def resolve_columns(
    columns: Sequence[str],
    anchor: str | None,
    positive: str | None,
    strict: bool = False,
    source: str = "the dataset",
    arg_names: tuple[str, str] = ("anchor_column_name", "positive_column_name"),
) -> tuple[str, str]:
    """The (anchor, positive) column names.

    Without ``strict`` this is sentence-transformers' rule: a missing or unknown anchor column falls back to the
    first column, a missing or unknown positive column to the second (a warning names an unknown one). With
    ``strict`` (the command line), an unknown name is a ValueError naming it and the columns there are.
    """
    columns = list(columns)
    for role, arg, value in zip(("anchor", "positive"), arg_names, (anchor, positive)):
        if value and value not in columns:
            if strict:
                raise ValueError(f"Unknown {role} column {value!r} ({arg}={value!r} is not a column of {source}); "
                                 f"its columns are {columns}.")
            logger.warning("%s=%r is not a column of %s (columns: %s); using the %s column, as "
                           "sentence-transformers does.", arg, value, source, columns,
                           "first" if role == "anchor" else "second")
    if not columns:
        raise ValueError(f"{source} has no columns.")
    anchor = anchor if anchor and anchor in columns else columns[0]
    if positive and positive in columns:
        return anchor, positive
    if len(columns) < 2:
        raise ValueError("Dataset must contain at least two columns to select the positive column automatically.")
    if strict:
        positive = next(c for c in columns if c != anchor)
    else:
        positive = columns[1]
    return anchor, positive


class TextTable:
    """Unique texts with consecutive ids in first-seen order, stored in Arrow buffers.

    :meth:`add` returns the id of every text it is given (an existing id for a text seen before). Texts are found
    again by a 64-bit hash, with the text itself compared on a hash match, so the table costs the Arrow bytes of
    each unique text plus about 100 bytes of index.
    """

    def __init__(self, name: str = "texts") -> None:
        self.name = name
        self._chunks: list[pa.Array] = []
        self._starts: list[int] = []  # global row of each chunk's first element
        self._rows: list[int] = []  # global row of each unique text, by id
        self._ids: dict[int, int | list[int]] = {}
        self._seen = 0  # texts given to add(), duplicates included
        self._combined: pa.ChunkedArray | None = None
        self._unique_rows: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, texts: Sequence[Any] | pa.Array) -> np.ndarray:
        """Add a batch of texts; returns their ids (int64). Non-strings raise a ValueError naming the entry."""
        if isinstance(texts, (pa.Array, pa.ChunkedArray)):
            values = texts.to_pylist()
            array = texts.combine_chunks() if isinstance(texts, pa.ChunkedArray) else texts
        else:
            values = list(texts)
            array = None
        check_texts(values, self.name, offset=self._seen)
        if array is None or not pa.types.is_string(array.type) and not pa.types.is_large_string(array.type):
            array = pa.array(values, type=pa.string())
        start = sum(len(c) for c in self._chunks)
        chunk_id = len(self._chunks)
        self._chunks.append(array)
        self._starts.append(start)
        self._combined = self._unique_rows = None
        ids = np.empty(len(values), dtype=np.int64)
        for position, text in enumerate(values):
            key = hash(text)
            found = self._ids.get(key)
            if found is None:
                ids[position] = self._ids[key] = len(self._rows)
                self._rows.append(start + position)
                continue
            candidates = found if isinstance(found, list) else [found]
            for candidate in candidates:
                if self._text(candidate, chunk_id, start, values) == text:
                    ids[position] = candidate
                    break
            else:  # a 64-bit hash collision between different texts
                new_id = len(self._rows)
                self._rows.append(start + position)
                self._ids[key] = candidates + [new_id]
                ids[position] = new_id
        self._seen += len(values)
        return ids

    def find(self, texts: Sequence[str]) -> np.ndarray:
        """Ids of ``texts`` in this table (``-1`` for a text it does not hold); adds nothing."""
        out = np.full(len(texts), -1, dtype=np.int64)
        for position, text in enumerate(texts):
            found = self._ids.get(hash(text))
            for candidate in ([] if found is None else found if isinstance(found, list) else [found]):
                if self[candidate] == text:
                    out[position] = candidate
                    break
        return out

    def _text(self, text_id: int, current_chunk: int, current_start: int, current_values: list[str]) -> str:
        row = self._rows[text_id]
        if row >= current_start:
            return current_values[row - current_start]
        chunk = int(np.searchsorted(self._starts, row, side="right") - 1)
        return self._chunks[chunk][row - self._starts[chunk]].as_py()

    def _arrays(self) -> tuple[pa.ChunkedArray, np.ndarray]:
        if self._combined is None:
            self._combined = pa.chunked_array(self._chunks, type=pa.string()) if self._chunks else pa.chunked_array(
                [], type=pa.string())
            self._unique_rows = np.asarray(self._rows, dtype=np.int64)
        return self._combined, self._unique_rows

    def take(self, ids: Sequence[int] | np.ndarray) -> list[str]:
        """The texts of ``ids``, as Python strings."""
        combined, rows = self._arrays()
        ids = np.asarray(ids, dtype=np.int64)
        if ids.size == 0:
            return []
        return combined.take(pa.array(rows[ids])).to_pylist()

    def __getitem__(self, text_id: int) -> str:
        return self.take([text_id])[0]

    def texts(self, start: int = 0, stop: int | None = None) -> list[str]:
        """The texts of ids ``start`` to ``stop`` (all by default)."""
        stop = len(self) if stop is None else min(stop, len(self))
        return self.take(np.arange(start, stop))

    def batches(self, batch_size: int) -> Iterator[tuple[int, list[str]]]:
        """``(first id, texts)`` of consecutive batches of ``batch_size`` texts."""
        for start in range(0, len(self), batch_size):
            yield start, self.texts(start, start + batch_size)

    @classmethod
    def from_texts(cls, texts: Iterable[Any], name: str = "texts", batch_size: int = READ_BATCH) -> TextTable:
        table = cls(name)
        for batch in _batched(texts, batch_size):
            table.add(batch)
        return table


def _batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def iter_columns(dataset, columns: Sequence[str], batch_size: int = READ_BATCH) -> Iterator[dict[str, Any]]:
    """Batches ``{column: values}`` of a ``Dataset`` (Arrow arrays, no Python copy of the whole column) or of an
    ``IterableDataset`` / any object with ``iter(batch_size=...)`` (lists)."""
    from datasets import Dataset

    if isinstance(dataset, Dataset):
        view = dataset.select_columns(list(columns)).with_format("arrow")
        for batch in view.iter(batch_size=batch_size):
            yield {c: batch.column(c) for c in columns}
        return
    for batch in dataset.iter(batch_size=batch_size):
        yield {c: batch[c] for c in columns}


def column_names(dataset) -> list[str]:
    names = getattr(dataset, "column_names", None)
    if names is None:  # an IterableDataset whose features are unknown until it is read
        first = next(iter(dataset), None)
        if first is None:
            raise ValueError("The dataset is empty. Please provide a non-empty dataset.")
        names = list(first)
    return list(names)


@dataclass
class PairTable:
    """(anchor, positive) pairs de-duplicated as sentence-transformers does.

    Attributes:
        queries: The unique anchors, in first-seen order.
        corpus: The extra documents followed by every positive, de-duplicated in order.
        positive_indices: Corpus ids of each query's distinct positives, in first-seen order.
        rows_per_query: Dataset rows per unique anchor, duplicates included (sentence-transformers'
            ``positives_per_query``, which sizes the rank window).
        row_query / row_positive: Query id and corpus id of every dataset row.
        anchor_column / positive_column: The columns the pairs came from.
    """

    queries: TextTable
    corpus: TextTable
    positive_indices: list[list[int]]
    rows_per_query: np.ndarray
    row_query: np.ndarray
    row_positive: np.ndarray
    anchor_column: str = "anchor"
    positive_column: str = "positive"
    n_extra_corpus: int = 0
    _pair_query: np.ndarray | None = field(default=None, repr=False)

    @property
    def n_rows(self) -> int:
        return len(self.row_query)

    @property
    def max_positives(self) -> int:
        return int(self.rows_per_query.max())

    @property
    def n_positives(self) -> list[int]:
        return [len(p) for p in self.positive_indices]

    @property
    def pair_query(self) -> np.ndarray:
        """Query id of each (query, positive) pair, in the flat order: query 0's positives, then query 1's..."""
        if self._pair_query is None:
            self._pair_query = np.repeat(np.arange(len(self.positive_indices)), self.n_positives)
        return self._pair_query

    @property
    def pair_positive(self) -> np.ndarray:
        """Corpus id of each (query, positive) pair, in the same flat order."""
        return np.fromiter((p for ps in self.positive_indices for p in ps), dtype=np.int64,
                           count=int(sum(self.n_positives)))

    @classmethod
    def from_dataset(
        cls,
        dataset,
        anchor_column_name: str | None = None,
        positive_column_name: str | None = None,
        corpus: Iterable[Any] | None = None,
        strict_columns: bool = False,
        batch_size: int = READ_BATCH,
    ) -> PairTable:
        """Read ``dataset`` (a ``Dataset`` or ``IterableDataset``) and an optional extra ``corpus`` (any iterable of
        strings) in batches."""
        columns = column_names(dataset)
        anchor, positive = resolve_columns(columns, anchor_column_name, positive_column_name, strict=strict_columns)
        corpus_table = TextTable("corpus")
        if corpus is not None:
            if isinstance(corpus, (str, bytes)):
                raise ValueError("corpus must be a list (or any iterable) of strings, not a single string.")
            for batch in _batched(corpus, batch_size):
                corpus_table.add(batch)
        n_extra = len(corpus_table)
        queries = TextTable(f"Column {anchor!r}")
        corpus_table.name = f"Column {positive!r}"
        row_query: list[np.ndarray] = []
        row_positive: list[np.ndarray] = []
        for batch in iter_columns(dataset, [anchor, positive], batch_size):
            row_query.append(queries.add(batch[anchor]))
            row_positive.append(corpus_table.add(batch[positive]))
        corpus_table.name = "corpus"
        if not row_query or sum(len(r) for r in row_query) == 0:
            raise ValueError("The dataset is empty. Please provide a non-empty dataset.")
        rq, rp = np.concatenate(row_query), np.concatenate(row_positive)
        positive_indices: list[list[int]] = [[] for _ in range(len(queries))]
        for q, p in zip(rq.tolist(), rp.tolist()):
            if p not in positive_indices[q]:
                positive_indices[q].append(p)
        rows_per_query = np.bincount(rq, minlength=len(queries))
        return cls(queries, corpus_table, positive_indices, rows_per_query, rq, rp, anchor, positive, n_extra)
