"""Format mined negatives as a ``datasets.Dataset``, in sentence-transformers' four output formats.

- ``"triplet"``: (anchor, positive, negative) rows, one per found negative and positive;
- ``"n-tuple"``: (anchor, positive, negative_1, ..., negative_n) rows, only where all n negatives were found;
- ``"labeled-pair"``: (anchor, document, label) rows, label 1 for positives and 0 for negatives;
- ``"labeled-list"``: (anchor, [documents], [labels]) rows.

With ``output_scores=True`` the labels become scores (and triplets / n-tuples get a ``scores`` column), exactly
as in ``sentence_transformers.util.mine_hard_negatives``. :func:`mining_statistics` gives the summary table
that sentence-transformers prints.

Example::

    >>> import torch
    >>> from st_lsh.format import MinedNegatives, to_dataset
    >>> mined = MinedNegatives(
    ...     queries=["q"], corpus=["pos", "neg a", "neg b"], positive_indices=[[0]],
    ...     positive_scores=torch.tensor([0.9]), negative_indices=torch.tensor([[1, 2]]),
    ...     negative_scores=torch.tensor([[0.5, 0.4]]))
    >>> to_dataset(mined, "n-tuple", anchor_column_name="query", positive_column_name="answer")[0]
    {'query': 'q', 'answer': 'pos', 'negative_1': 'neg a', 'negative_2': 'neg b'}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from datasets import Dataset

OutputFormat = Literal["triplet", "n-tuple", "labeled-pair", "labeled-list"]
OUTPUT_FORMATS = ("triplet", "n-tuple", "labeled-pair", "labeled-list")


@dataclass
class MinedNegatives:
    """Everything the formats need, indexed by unique query.

    ``positive_scores`` is flat, in the order of the (query, positive) pairs: query 0's positives, then
    query 1's, and so on. ``negative_scores`` is ``-inf`` (and ``negative_indices`` ``-1``) where no negative
    was found.
    """

    queries: list[str]
    corpus: list[str]
    positive_indices: list[list[int]]
    positive_scores: torch.Tensor
    negative_indices: torch.Tensor
    negative_scores: torch.Tensor

    @property
    def n_positives(self) -> list[int]:
        return [len(p) for p in self.positive_indices]

    def per_pair(self, tensor: torch.Tensor) -> torch.Tensor:
        """Repeat each query's row once per positive, giving one row per (query, positive) pair."""
        return torch.repeat_interleave(tensor, torch.tensor(self.n_positives), dim=0)


@dataclass
class FormatResult:
    dataset: Dataset
    negative_scores: torch.Tensor  # the negatives the statistics count
    difference_scores: torch.Tensor
    max_rows: int  # rows the format would have if every negative were found


def to_dataset(
    mined: MinedNegatives,
    output_format: OutputFormat,
    anchor_column_name: str,
    positive_column_name: str,
    output_scores: bool = False,
    n_input_rows: int | None = None,
) -> Dataset:
    """Build the output dataset; see :func:`format_negatives` for the statistics as well."""
    return format_negatives(mined, output_format, anchor_column_name, positive_column_name, output_scores, n_input_rows).dataset


def format_negatives(
    mined: MinedNegatives,
    output_format: OutputFormat,
    anchor_column_name: str,
    positive_column_name: str,
    output_scores: bool = False,
    n_input_rows: int | None = None,
) -> FormatResult:
    if output_format not in OUTPUT_FORMATS:
        raise ValueError(f"Invalid output_format: {output_format!r}. Must be one of {', '.join(OUTPUT_FORMATS)}.")
    corpus, queries = mined.corpus, mined.queries
    pair_query = [q for q, n in enumerate(mined.n_positives) for _ in range(n)]
    pair_positive = [p for positives in mined.positive_indices for p in positives]
    pos_scores = mined.positive_scores.float()
    neg_idx = mined.per_pair(mined.negative_indices)
    neg_scores = mined.per_pair(mined.negative_scores).float()
    found = neg_scores != float("-inf")
    num_negatives = neg_idx.shape[1]
    pos_per_slot = pos_scores.unsqueeze(1).expand(-1, num_negatives)
    data: dict[str, list] = {anchor_column_name: [], positive_column_name: []}

    if output_format == "triplet":
        data["negative"] = []
        if output_scores:
            data["scores"] = []
        for pair, slot in found.nonzero().tolist():
            data[anchor_column_name].append(queries[pair_query[pair]])
            data[positive_column_name].append(corpus[pair_positive[pair]])
            data["negative"].append(corpus[neg_idx[pair, slot]])
            if output_scores:
                data["scores"].append([pos_scores[pair].item(), neg_scores[pair, slot].item()])
        counted, max_rows = neg_scores[found], found.numel()
        difference = pos_per_slot[found] - counted

    elif output_format == "n-tuple":
        keep = found.all(dim=1)
        rows = keep.nonzero().flatten().tolist()
        data[anchor_column_name] = [queries[pair_query[r]] for r in rows]
        data[positive_column_name] = [corpus[pair_positive[r]] for r in rows]
        for slot in range(num_negatives):
            data[f"negative_{slot + 1}"] = [corpus[neg_idx[r, slot]] for r in rows]
        if output_scores:
            data["scores"] = torch.cat([pos_scores[keep].unsqueeze(1), neg_scores[keep]], dim=1).tolist()
        counted, max_rows = neg_scores[keep].flatten(), len(keep)
        difference = pos_per_slot[keep].flatten() - counted

    elif output_format == "labeled-pair":
        label = "score" if output_scores else "label"
        data[label] = []
        pair = 0
        for q, positives in enumerate(mined.positive_indices):
            for p in positives:
                data[anchor_column_name].append(queries[q])
                data[positive_column_name].append(corpus[p])
                data[label].append(pos_scores[pair].item() if output_scores else 1)
                pair += 1
            for idx, score in zip(mined.negative_indices[q].tolist(), mined.negative_scores[q].tolist()):
                if score == float("-inf"):
                    continue
                data[anchor_column_name].append(queries[q])
                data[positive_column_name].append(corpus[idx])
                data[label].append(score if output_scores else 0)
        counted = neg_scores[found]
        difference = pos_per_slot[found] - counted
        max_rows = len(queries) * num_negatives + (n_input_rows if n_input_rows is not None else len(pair_query))

    else:  # labeled-list
        keep = found.any(dim=1)
        rows = keep.nonzero().flatten().tolist()
        data[anchor_column_name] = [queries[pair_query[r]] for r in rows]
        data[positive_column_name] = [
            [corpus[pair_positive[r]]] + [corpus[i] for i in neg_idx[r][found[r]].tolist()] for r in rows
        ]
        if output_scores:
            data["scores"] = [[pos_scores[r].item()] + neg_scores[r][found[r]].tolist() for r in rows]
        else:
            data["labels"] = [[1] + [0] * int(found[r].sum()) for r in rows]
        counted, max_rows = neg_scores[found], len(keep)
        difference = pos_per_slot[found] - counted

    return FormatResult(Dataset.from_dict(data), counted, difference, max_rows)


def mining_statistics(positive_scores: torch.Tensor, result: FormatResult) -> list[str]:
    """The summary table of positive, negative and difference scores, as lines of text."""
    row = "{:<6} {:>14} {:>14} {:>14}"
    columns = [positive_scores.float(), result.negative_scores.float(), result.difference_scores.float()]

    def stat(values: torch.Tensor, fn) -> str:
        return f"{fn(values).item():.4f}" if values.numel() else "nan"

    lines = [row.format("Metric", "Positive", "Negative", "Difference")]
    lines.append(row.format("Count", f"{len(columns[0]):,}", f"{len(columns[1]):,}", ""))
    for name, fn in [
        ("Mean", torch.mean),
        ("Median", torch.median),
        ("Std", torch.std),
        ("Min", torch.min),
        ("25%", lambda v: torch.quantile(v, 0.25)),
        ("50%", lambda v: torch.quantile(v, 0.5)),
        ("75%", lambda v: torch.quantile(v, 0.75)),
        ("Max", torch.max),
    ]:
        lines.append(row.format(name, *(stat(values, fn) for values in columns)))
    return lines
