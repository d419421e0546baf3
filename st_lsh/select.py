"""Candidate selection: from scored candidates to hard negatives.

This is the one implementation of the negative-selection rules, shared by :func:`st_lsh.mine_hard_negatives`,
the training-time :class:`st_lsh.HardNegativeRefresher` and the evaluators. It applies, in this order and with
the meaning they have in ``sentence_transformers.util.mine_hard_negatives``:

1. positives (and padding) are never candidates, unless ``include_positives=True``;
2. ``absolute_margin`` and ``relative_margin``, against the *lowest* positive score of the query;
3. ``max_score`` and ``min_score``;
4. the rank window ``[range_min, range_max)`` of the surviving candidates, best first;
5. ``sampling_strategy="top"`` (the first ``num_negatives``) or ``"random"`` (a seeded sample, re-sorted by score).

Example::

    >>> import torch
    >>> from st_lsh.select import select_negatives
    >>> scores = torch.tensor([[0.9, 0.8, 0.7, 0.6, 0.5]])
    >>> indices = torch.tensor([[4, 0, 3, 2, 1]])
    >>> selection = select_negatives(scores, indices, positive_indices=[[0]], min_positive_scores=torch.tensor([0.8]),
    ...                              num_negatives=2, range_max=4, relative_margin=0.05)
    >>> selection.indices.tolist()   # doc 4 (too close to the positive) and doc 0 (the positive) are skipped
    [[3, 2]]
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Literal

import torch

SamplingStrategy = Literal["top", "random"]
NEG_INF = float("-inf")


@dataclass
class Selection:
    """Selected negatives per query: corpus ids (``-1``) and scores (``-inf``) mark slots left empty."""

    indices: torch.Tensor
    scores: torch.Tensor
    skipped: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def found(self) -> torch.Tensor:
        """Boolean mask of filled slots."""
        return self.scores != NEG_INF


def select_negatives(
    scores: torch.Tensor,
    indices: torch.Tensor,
    positive_indices: list[list[int]],
    min_positive_scores: torch.Tensor | None,
    num_negatives: int,
    range_max: int,
    range_min: int = 0,
    absolute_margin: float | None = None,
    relative_margin: float | None = None,
    max_score: float | None = None,
    min_score: float | None = None,
    sampling_strategy: SamplingStrategy = "top",
    include_positives: bool = False,
    rng: random.Random | None = None,
) -> Selection:
    """Pick ``num_negatives`` negatives per query from candidates sorted best first.

    Args:
        scores: ``(n_queries, n_candidates)`` similarity of each candidate; ``-inf`` marks padding.
        indices: ``(n_queries, n_candidates)`` corpus ids of the candidates; ``-1`` marks padding.
        positive_indices: Corpus ids of each query's positives, excluded from the candidates.
        min_positive_scores: ``(n_queries,)`` lowest positive score per query; needed for the margins.
        rng: Random generator of the ``"random"`` strategy; pass a seeded one for reproducible output.

    Returns:
        A :class:`Selection` of shape ``(n_queries, num_negatives)`` sorted by descending score, and the number
        and ratio of candidates each filter skipped.
    """
    if scores.shape != indices.shape or scores.ndim != 2:
        raise ValueError("scores and indices must be 2-d tensors of the same shape.")
    if len(positive_indices) != scores.shape[0]:
        raise ValueError("positive_indices must hold one list per query.")
    if sampling_strategy not in ("top", "random"):
        raise ValueError(f"sampling_strategy must be 'top' or 'random', got {sampling_strategy!r}.")
    scores = scores.clone().float()
    indices = indices.clone().long()
    if scores.shape[1] < range_max:  # a corpus smaller than the window: pad so the rank window stays valid
        pad = range_max - scores.shape[1]
        scores = torch.cat([scores, scores.new_full((scores.shape[0], pad), NEG_INF)], dim=1)
        indices = torch.cat([indices, indices.new_full((indices.shape[0], pad), -1)], dim=1)
    scores[indices < 0] = NEG_INF

    if not include_positives:
        width = max((len(p) for p in positive_indices), default=0)
        padded = torch.full((len(positive_indices), max(width, 1)), -2, dtype=torch.long)
        for row, positives in enumerate(positive_indices):
            padded[row, : len(positives)] = torch.as_tensor(positives, dtype=torch.long)
        is_positive = (indices.unsqueeze(-1) == padded.unsqueeze(1)).any(dim=-1)
        scores[is_positive] = NEG_INF

    skipped: dict[str, dict[str, float]] = {}
    remaining = scores.numel()

    def drop(name: str, mask: torch.Tensor, shrink: bool) -> None:
        nonlocal remaining
        mask &= scores != NEG_INF
        count = int(mask.sum())
        if count:
            skipped[name] = {"skipped": count, "ratio": count / max(remaining, 1)}
            scores[mask] = NEG_INF
            if shrink:
                remaining -= count

    if absolute_margin is not None or relative_margin is not None:
        if min_positive_scores is None:
            raise ValueError("Margins need the positive scores of each query.")
        positive = min_positive_scores.float().unsqueeze(1)
        if absolute_margin is not None:
            drop("absolute_margin", scores + absolute_margin > positive, shrink=True)
        if relative_margin is not None:
            # |positive| * margin, so the threshold moves the right way for negative positive scores too.
            drop("relative_margin", scores > positive - positive.abs() * relative_margin, shrink=True)
    if max_score is not None:
        drop("max_score", scores > max_score, shrink=False)
    if min_score is not None:
        drop("min_score", scores < min_score, shrink=False)

    # Candidates arrive best first with a deterministic tie order; a stable sort keeps it.
    order = torch.argsort(scores, dim=1, descending=True, stable=True)[:, :range_max]
    scores, indices = scores.gather(1, order), indices.gather(1, order)
    scores, indices = scores[:, range_min:], indices[:, range_min:]

    if sampling_strategy == "top":
        scores, indices = scores[:, :num_negatives], indices[:, :num_negatives]
    else:
        rng = rng if rng is not None else random.Random()
        options = (scores.shape[1] - torch.isinf(scores).sum(dim=1)).clamp(min=num_negatives).tolist()
        picks = torch.tensor([sorted(rng.sample(range(n), k=num_negatives)) for n in options], dtype=torch.long)
        scores, indices = scores.gather(1, picks), indices.gather(1, picks)
        order = torch.argsort(scores, dim=1, descending=True, stable=True)
        scores, indices = scores.gather(1, order), indices.gather(1, order)
    indices = indices.masked_fill(scores == NEG_INF, -1)
    return Selection(indices=indices, scores=scores, skipped=skipped)


def fill_missing(
    selection: Selection,
    n_corpus: int,
    positive_indices: list[list[int]],
    rng: random.Random,
) -> int:
    """Fill empty slots in place with random corpus ids that are neither a positive nor already in the row.

    Used where the number of negative columns must stay fixed (training-time refresh). Filled slots get a
    score of NaN, since they were not ranked. Returns the number of filled slots.
    """
    filled = 0
    for row in range(selection.indices.shape[0]):
        empty = (selection.indices[row] < 0).nonzero().flatten().tolist()
        if not empty:
            continue
        taken = set(positive_indices[row]) | set(selection.indices[row].tolist())
        if n_corpus - len(taken - {-1}) < len(empty):
            raise ValueError(
                f"The corpus ({n_corpus} texts) is too small to fill {len(empty)} negatives for query {row}."
            )
        for slot in empty:
            candidate = rng.randrange(n_corpus)
            while candidate in taken:
                candidate = rng.randrange(n_corpus)
            taken.add(candidate)
            selection.indices[row, slot] = candidate
            selection.scores[row, slot] = float("nan")
            filled += 1
    return filled
