"""Format mined negatives as a ``datasets.Dataset``, in sentence-transformers' four output formats.

- ``"triplet"``: (anchor, positive, negative) rows, one per found negative and positive;
- ``"n-tuple"``: (anchor, positive, negative_1, ..., negative_n) rows, only where all n negatives were found;
- ``"labeled-pair"``: (anchor, document, label) rows, label 1 for positives and 0 for negatives;
- ``"labeled-list"``: (anchor, [documents], [labels]) rows.

With ``output_scores=True`` the labels become scores (and triplets / n-tuples get a ``scores`` column), exactly
as in ``sentence_transformers.util.mine_hard_negatives``.

:class:`NegativesWriter` takes the mined negatives one chunk of queries at a time and writes Arrow batches, into
memory or, for large outputs, into an Arrow file that the returned ``Dataset`` memory-maps; it never builds one
Python list of all rows. :func:`summary_lines` gives the statistics table and the messages sentence-transformers
prints after mining.

Example::

    >>> import torch
    >>> from st_lsh.format import MinedChunk, NegativesWriter
    >>> writer = NegativesWriter("n-tuple", anchor_column="query", positive_column="answer")
    >>> writer.add(MinedChunk(queries=["q"], positive_indices=[[0]], positive_scores=torch.tensor([0.9]),
    ...                       negative_indices=torch.tensor([[1, 2]]), negative_scores=torch.tensor([[0.5, 0.4]])),
    ...            corpus_texts={0: "pos", 1: "neg a", 2: "neg b"})
    >>> writer.finish(n_input_rows=1).dataset[0]
    {'query': 'q', 'answer': 'pos', 'negative_1': 'neg a', 'negative_2': 'neg b'}
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pyarrow as pa
import torch
from datasets import Dataset
from datasets.table import InMemoryTable

from .rules import NegativeRules
from .select import FILTERS

OutputFormat = Literal["triplet", "n-tuple", "labeled-pair", "labeled-list"]
OUTPUT_FORMATS = ("triplet", "n-tuple", "labeled-pair", "labeled-list")


@dataclass
class MinedChunk:
    """The negatives of a chunk of unique queries.

    ``positive_scores`` is flat, in the order of the (query, positive) pairs: the chunk's first query's
    positives, then the next query's, and so on. ``negative_scores`` is ``-inf`` (and ``negative_indices``
    ``-1``) where no negative was found.
    """

    queries: list[str]
    positive_indices: list[list[int]]
    positive_scores: torch.Tensor
    negative_indices: torch.Tensor
    negative_scores: torch.Tensor

    @property
    def n_positives(self) -> list[int]:
        return [len(p) for p in self.positive_indices]

    def per_pair(self, tensor: torch.Tensor) -> torch.Tensor:
        """Repeat each query's row once per positive, giving one row per (query, positive) pair."""
        return torch.repeat_interleave(tensor, torch.tensor(self.n_positives, dtype=torch.long), dim=0)

    def corpus_ids(self) -> list[int]:
        """Every corpus id the formatted rows need (positives and found negatives)."""
        ids = {p for ps in self.positive_indices for p in ps}
        ids.update(i for i in self.negative_indices.flatten().tolist() if i >= 0)
        return sorted(ids)


@dataclass
class FormatResult:
    dataset: Dataset
    positive_scores: torch.Tensor
    negative_scores: torch.Tensor  # the negatives the statistics count
    difference_scores: torch.Tensor
    max_rows: int  # rows the format would have if every negative were found


class DatasetSink:
    """Collects Arrow batches into a ``Dataset``: in memory, or in an Arrow file under ``folder`` (memory-mapped by
    the returned ``Dataset``) when a folder is given."""

    def __init__(self, folder: str | os.PathLike | None = None) -> None:
        self.folder = Path(folder) if folder is not None else None
        self._batches: list[pa.RecordBatch] = []
        self._writer = None
        self._columns: list[str] | None = None
        self.path: Path | None = None

    def write(self, columns: Mapping[str, list]) -> None:
        self._columns = list(columns)
        if not next(iter(columns.values()), []):
            return
        if self.folder is None:
            batch = pa.RecordBatch.from_pydict(dict(columns))
            if self._batches:
                batch = batch.cast(self._batches[0].schema)
            self._batches.append(batch)
            return
        if self._writer is None:
            from datasets.arrow_writer import ArrowWriter

            self.folder.mkdir(parents=True, exist_ok=True)
            self.path = self.folder / f"st_lsh_negatives_{uuid.uuid4().hex}.arrow"
            self._writer = ArrowWriter(path=str(self.path))
        self._writer.write_batch(dict(columns))

    def finish(self) -> Dataset:
        if self._writer is not None:
            self._writer.finalize()
            self._writer.close()
            return Dataset.from_file(str(self.path))
        if not self._batches:
            return Dataset.from_dict({c: [] for c in self._columns or []})
        return Dataset(InMemoryTable(pa.Table.from_batches(self._batches)))


@dataclass
class NegativesWriter:
    """Formats chunks of mined negatives into ``output_format`` rows (sentence-transformers' layouts and row
    order) and keeps the scores its statistics table counts."""

    output_format: OutputFormat
    anchor_column: str = "anchor"
    positive_column: str = "positive"
    output_scores: bool = False
    sink: DatasetSink = field(default_factory=DatasetSink)
    _positive: list[torch.Tensor] = field(default_factory=list)
    _negative: list[torch.Tensor] = field(default_factory=list)
    _difference: list[torch.Tensor] = field(default_factory=list)
    _max_rows: int = 0
    _queries: int = 0
    _num_negatives: int = 0

    def __post_init__(self) -> None:
        if self.output_format not in OUTPUT_FORMATS:
            raise ValueError(f"Invalid output_format: {self.output_format}. Must be one of 'triplet', 'n-tuple', "
                             "'labeled-pair', or 'labeled-list'.")

    def add(self, mined: MinedChunk, corpus_texts: Mapping[int, str] | Callable[[list[int]], Mapping[int, str]]) -> None:
        """Format one chunk; ``corpus_texts`` maps corpus ids to texts (or fetches them for a list of ids)."""
        if callable(corpus_texts):
            corpus_texts = corpus_texts(mined.corpus_ids())
        text = corpus_texts.__getitem__
        queries = mined.queries
        pair_query = [q for q, n in enumerate(mined.n_positives) for _ in range(n)]
        pair_positive = [p for positives in mined.positive_indices for p in positives]
        pos_scores = mined.positive_scores.float()
        neg_idx = mined.per_pair(mined.negative_indices)
        neg_scores = mined.per_pair(mined.negative_scores).float()
        found = neg_scores != float("-inf")
        num_negatives = neg_idx.shape[1]
        self._num_negatives = num_negatives
        self._queries += len(queries)
        pos_per_slot = pos_scores.unsqueeze(1).expand(-1, num_negatives)
        a, p = self.anchor_column, self.positive_column
        data: dict[str, list] = {a: [], p: []}

        if self.output_format == "triplet":
            data["negative"] = []
            if self.output_scores:
                data["scores"] = []
            for pair, slot in found.nonzero().tolist():
                data[a].append(queries[pair_query[pair]])
                data[p].append(text(pair_positive[pair]))
                data["negative"].append(text(int(neg_idx[pair, slot])))
                if self.output_scores:
                    data["scores"].append([pos_scores[pair].item(), neg_scores[pair, slot].item()])
            counted = neg_scores[found]
            difference = pos_per_slot[found] - counted
            self._max_rows += found.numel()

        elif self.output_format == "n-tuple":
            keep = found.all(dim=1)
            rows = keep.nonzero().flatten().tolist()
            data[a] = [queries[pair_query[r]] for r in rows]
            data[p] = [text(pair_positive[r]) for r in rows]
            for slot in range(num_negatives):
                data[f"negative_{slot + 1}"] = [text(int(neg_idx[r, slot])) for r in rows]
            if self.output_scores:
                data["scores"] = torch.cat([pos_scores[keep].unsqueeze(1), neg_scores[keep]], dim=1).tolist()
            counted = neg_scores[keep].flatten()
            difference = pos_per_slot[keep].flatten() - counted
            self._max_rows += len(keep)

        elif self.output_format == "labeled-pair":
            label = "score" if self.output_scores else "label"
            data[label] = []
            pair = 0
            for q, positives in enumerate(mined.positive_indices):
                for positive in positives:
                    data[a].append(queries[q])
                    data[p].append(text(positive))
                    data[label].append(pos_scores[pair].item() if self.output_scores else 1)
                    pair += 1
                for idx, score in zip(mined.negative_indices[q].tolist(), mined.negative_scores[q].tolist()):
                    if score == float("-inf"):
                        continue
                    data[a].append(queries[q])
                    data[p].append(text(idx))
                    data[label].append(score if self.output_scores else 0)
            counted = neg_scores[found]
            difference = pos_per_slot[found] - counted

        else:  # labeled-list
            keep = found.any(dim=1)
            rows = keep.nonzero().flatten().tolist()
            data[a] = [queries[pair_query[r]] for r in rows]
            data[p] = [[text(pair_positive[r])] + [text(i) for i in neg_idx[r][found[r]].tolist()] for r in rows]
            if self.output_scores:
                data["scores"] = [[pos_scores[r].item()] + neg_scores[r][found[r]].tolist() for r in rows]
            else:
                data["labels"] = [[1] + [0] * int(found[r].sum()) for r in rows]
            counted = neg_scores[found]
            difference = pos_per_slot[found] - counted
            self._max_rows += len(keep)

        self.sink.write(data)
        self._positive.append(pos_scores)
        self._negative.append(counted)
        self._difference.append(difference)

    def finish(self, n_input_rows: int) -> FormatResult:
        """The dataset, and the scores of its statistics. ``n_input_rows`` (the input dataset's length) sizes the
        labeled-pair format's possible rows, as in sentence-transformers."""
        if self.output_format == "labeled-pair":
            self._max_rows = self._queries * self._num_negatives + n_input_rows

        def cat(parts: list[torch.Tensor]) -> torch.Tensor:
            return torch.cat(parts) if parts else torch.empty(0)

        return FormatResult(self.sink.finish(), cat(self._positive), cat(self._negative), cat(self._difference),
                            self._max_rows)


def statistics_lines(positive: torch.Tensor, negative: torch.Tensor, difference: torch.Tensor) -> list[str]:
    """The statistics table sentence-transformers prints, line by line, with its formatting."""
    row = "{:<6} {:>14} {:>14} {:>14}"

    def formatter(value) -> str:
        return f"{value.item():.4f}" if isinstance(value, torch.Tensor) else f"{value:,}"

    lines = [row.format("Metric", "Positive", "Negative", "Difference"),
             row.format("Count", formatter(len(positive)), formatter(len(negative)), "")]
    import warnings

    with warnings.catch_warnings():  # std of fewer than two scores is NaN, as in sentence-transformers
        warnings.simplefilter("ignore", UserWarning)
        for metric, function in [
            ("mean", torch.mean),
            ("median", torch.median),
            ("std", torch.std),
            ("min", lambda s: torch.min(s) if s.numel() > 0 else float("inf")),
            ("25%", lambda s: torch.quantile(s.float(), q=0.25) if s.numel() > 0 else float("inf")),
            ("50%", lambda s: torch.quantile(s.float(), q=0.5) if s.numel() > 0 else float("inf")),
            ("75%", lambda s: torch.quantile(s.float(), q=0.75) if s.numel() > 0 else float("inf")),
            ("max", lambda s: torch.max(s) if s.numel() > 0 else float("-inf")),
        ]:
            lines.append(row.format(metric.capitalize(), formatter(function(positive)), formatter(function(negative)),
                                    formatter(function(difference))))
    return lines


def summary_lines(result: FormatResult, ratios: Mapping[str, float], skipped: Mapping[str, int],
                  rules: NegativeRules) -> list[str]:
    """Everything sentence-transformers prints after mining: the statistics table, one line per filter that
    skipped candidates, and the "Could not find enough negatives" advice."""
    lines = statistics_lines(result.positive_scores, result.negative_scores, result.difference_scores)
    for name in FILTERS:
        if skipped.get(name) and getattr(rules, name) is not None:
            lines.append(f"Skipped {skipped[name]:,} potential negatives ({ratios[name]:.2%}) due to the {name} of "
                         f"{getattr(rules, name)}.")
    missing = result.max_rows - len(result.dataset)
    if missing > 0:
        knobs = rules.knobs()
        considerations = ", ".join(knobs[:-1]) + " and " + knobs[-1] if len(knobs) > 1 else knobs[0]
        lines.append(f"Could not find enough negatives for {missing} samples ({missing / result.max_rows:.2%})."
                     f" Consider adjusting the {considerations} parameter{'s' if len(knobs) > 1 else ''} if you'd like "
                     "to find more valid negatives.")
    return lines


def default_output_folder(cache_folder: str | os.PathLike | None) -> Path:
    """Where large outputs are written: ``cache_folder``, else the ``datasets`` cache (as ``from_generator``)."""
    if cache_folder is not None:
        return Path(cache_folder)
    try:
        from datasets import config

        return Path(config.HF_DATASETS_CACHE) / "st_lsh"
    except Exception:  # noqa: BLE001 - any unusual datasets configuration
        return Path(tempfile.gettempdir()) / "st_lsh"
