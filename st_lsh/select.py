"""Candidate selection: from scored candidates to hard negatives, under one :class:`~st_lsh.rules.NegativeRules`.

This is the one implementation of the negative-selection rules, shared by :func:`st_lsh.mine_hard_negatives`,
the training-time :class:`st_lsh.HardNegativeRefresher` and the batch sampler. It applies, in this order and with
the meaning (and the skip counts) they have in ``sentence_transformers.util.mine_hard_negatives``:

1. padding and positives are never candidates, unless ``include_positives=True``;
2. ``absolute_margin`` and ``relative_margin``, against the *lowest* positive score of the query;
3. ``max_score`` and ``min_score``;
4. the rank window ``[range_min, range_max)`` of the surviving candidates, best first;
5. ``sampling_strategy="top"`` (the first ``num_negatives``) or ``"random"`` (a seeded sample, re-sorted by score).

Candidates may arrive in chunks of queries: :class:`SkipCounts` adds up what each filter skipped so that the
ratios printed at the end are sentence-transformers' ratios over the whole candidate matrix.

Example::

    >>> import torch
    >>> from st_lsh.rules import NegativeRules
    >>> from st_lsh.select import select_negatives
    >>> scores = torch.tensor([[0.9, 0.8, 0.7, 0.6, 0.5]])
    >>> indices = torch.tensor([[4, 0, 3, 2, 1]])
    >>> rules = NegativeRules(num_negatives=2, range_max=4, relative_margin=0.05)
    >>> selection = select_negatives(scores, indices, [[0]], torch.tensor([0.8]), rules)
    >>> selection.indices.tolist()   # doc 4 (too close to the positive) and doc 0 (the positive) are skipped
    [[3, 2]]
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np
import torch

from .rules import NegativeRules

NEG_INF = float("-inf")
FILTERS = ("absolute_margin", "relative_margin", "max_score", "min_score")


@dataclass
class SkipCounts:
    """Candidates each filter skipped, summed over chunks of queries, with sentence-transformers' ratios."""

    candidates: int = 0
    skipped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FILTERS, 0))

    def add(self, other: SkipCounts) -> None:
        self.candidates += other.candidates
        for name in FILTERS:
            self.skipped[name] += other.skipped[name]

    def ratios(self) -> dict[str, float]:
        """``skipped / candidates still in play``: the margins shrink the pool, the score bounds do not."""
        remaining = self.candidates
        out: dict[str, float] = {}
        for name in FILTERS:
            out[name] = self.skipped[name] / max(remaining, 1)
            if name in ("absolute_margin", "relative_margin"):
                remaining -= self.skipped[name]
        return out


@dataclass
class Selection:
    """Selected negatives per query: corpus ids (``-1``) and scores (``-inf``) mark slots left empty."""

    indices: torch.Tensor
    scores: torch.Tensor
    counts: SkipCounts = field(default_factory=SkipCounts)

    @property
    def found(self) -> torch.Tensor:
        """Boolean mask of filled slots."""
        return self.scores != NEG_INF


def lowest_positive_scores(pair_query: np.ndarray, positive_scores: torch.Tensor, n_queries: int) -> torch.Tensor:
    """The lowest (hardest) positive score of each query, from the flat per-pair scores: the margins' reference."""
    return torch.full((n_queries,), float("inf")).scatter_reduce(
        0, torch.as_tensor(pair_query, dtype=torch.long), positive_scores.float(), "amin"
    )


def select_negatives(
    scores: torch.Tensor,
    indices: torch.Tensor,
    positive_indices: list[list[int]],
    min_positive_scores: torch.Tensor | None,
    rules: NegativeRules,
    rng: random.Random | None = None,
) -> Selection:
    """Pick ``rules.num_negatives`` negatives per query from candidates sorted best first.

    Args:
        scores: ``(n_queries, n_candidates)`` similarity of each candidate; ``-inf`` marks padding.
        indices: ``(n_queries, n_candidates)`` corpus ids of the candidates; ``-1`` marks padding.
        positive_indices: Corpus ids of each query's positives, excluded from the candidates.
        min_positive_scores: ``(n_queries,)`` lowest positive score per query; needed for the margins.
        rules: The rules, with ``range_max`` resolved (:meth:`NegativeRules.resolve`).
        rng: Random generator of the ``"random"`` strategy; pass a seeded one for reproducible output.

    Returns:
        A :class:`Selection` of shape ``(n_queries, num_negatives)`` sorted by descending score, with the
        candidates each filter skipped.
    """
    if rules.range_max is None:
        raise ValueError("resolve() the rules first: range_max is not set.")
    if scores.shape != indices.shape or scores.ndim != 2:
        raise ValueError("scores and indices must be 2-d tensors of the same shape.")
    if len(positive_indices) != scores.shape[0]:
        raise ValueError("positive_indices must hold one list per query.")
    range_min, range_max, num_negatives = rules.range_min, rules.range_max, rules.num_negatives
    scores = scores.clone().float()
    indices = indices.clone().long()
    if scores.shape[1] < range_max:  # keep the rank window valid whatever the candidate count
        pad = range_max - scores.shape[1]
        scores = torch.cat([scores, scores.new_full((scores.shape[0], pad), NEG_INF)], dim=1)
        indices = torch.cat([indices, indices.new_full((indices.shape[0], pad), -1)], dim=1)
    scores[indices < 0] = NEG_INF

    if not rules.include_positives:
        width = max((len(p) for p in positive_indices), default=0)
        padded = torch.full((len(positive_indices), max(width, 1)), -2, dtype=torch.long)
        for row, positives in enumerate(positive_indices):
            padded[row, : len(positives)] = torch.as_tensor(positives, dtype=torch.long)
        is_positive = (indices.unsqueeze(-1) == padded.unsqueeze(1)).any(dim=-1)
        scores[is_positive] = NEG_INF

    counts = SkipCounts(candidates=scores.numel())

    def drop(name: str, mask: torch.Tensor) -> None:
        # As in sentence-transformers: comparisons with -inf are False except for min_score, whose count
        # therefore includes candidates that were already out of play.
        counts.skipped[name] = int(mask.sum())
        scores[mask] = NEG_INF

    if rules.absolute_margin is not None or rules.relative_margin is not None:
        if min_positive_scores is None:
            raise ValueError("Margins need the positive scores of each query.")
        positive = min_positive_scores.float().unsqueeze(1)
        if rules.absolute_margin is not None:
            drop("absolute_margin", scores + rules.absolute_margin > positive)
        if rules.relative_margin is not None:
            # |positive| * margin, so the threshold moves the right way for negative positive scores too.
            drop("relative_margin", scores > positive - positive.abs() * rules.relative_margin)
    if rules.max_score is not None:
        drop("max_score", scores > rules.max_score)
    if rules.min_score is not None:
        drop("min_score", scores < rules.min_score)

    # Candidates arrive best first with a deterministic tie order; a stable sort keeps it.
    order = torch.argsort(scores, dim=1, descending=True, stable=True)[:, :range_max]
    scores, indices = scores.gather(1, order), indices.gather(1, order)
    scores, indices = scores[:, range_min:], indices[:, range_min:]

    if rules.sampling_strategy == "top":
        scores, indices = scores[:, :num_negatives], indices[:, :num_negatives]
    else:
        rng = rng if rng is not None else random.Random()
        options = (scores.shape[1] - torch.isinf(scores).sum(dim=1)).clamp(min=num_negatives).tolist()
        picks = torch.tensor([sorted(rng.sample(range(n), k=num_negatives)) for n in options], dtype=torch.long)
        picks = picks.reshape(len(options), num_negatives)
        scores, indices = scores.gather(1, picks), indices.gather(1, picks)
        order = torch.argsort(scores, dim=1, descending=True, stable=True)
        scores, indices = scores.gather(1, order), indices.gather(1, order)
    indices = indices.masked_fill(scores == NEG_INF, -1)
    return Selection(indices=indices, scores=scores, counts=counts)


def select_for_queries(
    scores: torch.Tensor,
    indices: torch.Tensor,
    positive_indices: list[list[int]],
    positive_scores: torch.Tensor,
    rules: NegativeRules,
    rng: random.Random | None = None,
) -> Selection:
    """:func:`select_negatives` with the margins taken against each query's lowest positive, from the flat
    per-pair ``positive_scores`` of :func:`st_lsh.index.search_candidates`."""
    pair_query = np.repeat(np.arange(len(positive_indices)), [len(p) for p in positive_indices])
    lowest = lowest_positive_scores(pair_query, positive_scores, len(positive_indices))
    return select_negatives(scores, indices, positive_indices, lowest, rules, rng)


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
    for row in (selection.indices < 0).any(dim=1).nonzero().flatten().tolist():
        empty = (selection.indices[row] < 0).nonzero().flatten().tolist()
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
