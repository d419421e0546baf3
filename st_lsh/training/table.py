"""The state of training-time mining: codes, stored embeddings and the current negatives of every query.

:class:`NegativesTable` is what the refresher and the batch sampler share. It holds, for the pairs of a
:class:`~st_lsh.pairs.PairTable`:

- the fitted :class:`~st_lsh.LSHHasher` and the packed codes of every corpus text;
- an :class:`~st_lsh.store.EmbeddingStore` of corpus rows for exact rescoring (float16 stays float16: rows are
  converted block by block while rescoring, never as a whole table);
- the latest query embeddings;
- the negatives (corpus ids) and their scores per query, in a tensor in shared memory, so that dataloader
  workers (persistent or not) read the refreshed values.

A refresh is a list of :class:`ShardUpdate` (one per rank: fresh codes and rows for some texts), applied in rank
order, followed by :meth:`NegativesTable.mine`, the miner's own search and selection stages.

Example::

    >>> import numpy as np
    >>> from datasets import Dataset
    >>> from st_lsh.pairs import PairTable
    >>> from st_lsh.rules import LSHSettings, NegativeRules
    >>> from st_lsh.training.table import NegativesTable
    >>> pairs = PairTable.from_dataset(Dataset.from_dict({"a": ["q1", "q2"], "p": ["d1", "d2"]}),
    ...                                corpus=["d3", "d4", "d5"])
    >>> table = NegativesTable(pairs, num_negatives=1, lsh=LSHSettings(num_bits=64), device="cpu")
    >>> rng = np.random.default_rng(0)
    >>> corpus, queries = rng.standard_normal((5, 16)).astype(np.float32), rng.standard_normal((2, 16)).astype(np.float32)
    >>> table.fit_hasher(*table.column_sum(corpus))
    >>> table.apply([table.update(np.arange(5), corpus, np.arange(2), queries)])
    >>> outcome = table.mine(NegativeRules(num_negatives=1).resolve(pairs.max_positives), seed=0)
    >>> table.set_negatives(outcome.selection.indices, outcome.selection.scores)   # share of changed negatives
    1.0
    >>> table.negatives.shape, int((table.negatives >= 0).sum())
    (torch.Size([2, 1]), 2)
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch

from ..hashing import LSHHasher, column_sum
from ..index import LSHIndex, search_candidates
from ..pairs import PairTable
from ..rules import LSHSettings, NegativeRules
from ..select import Selection, fill_missing, select_for_queries
from ..similarity import Similarity
from ..store import EmbeddingStore, open_store

QUERY_CHUNK = 16_384


@dataclass
class ShardUpdate:
    """One rank's contribution to a refresh: fresh codes and stored rows of some corpus texts, fresh embeddings
    of some queries, and how many texts it encoded or took from the training forward passes."""

    corpus_ids: np.ndarray
    corpus_codes: np.ndarray
    corpus_rows: np.ndarray
    query_ids: np.ndarray
    query_rows: np.ndarray
    encoded: int = 0
    captured: int = 0


@dataclass
class MiningOutcome:
    """What :meth:`NegativesTable.mine` found: the selection, the positive scores (flat, per pair), how many
    slots were filled with random texts, and how many queries got no mined negative at all."""

    selection: Selection
    positive_scores: torch.Tensor
    filled: int
    queries_without_mined: int

    @property
    def mined_scores(self) -> torch.Tensor:
        """Scores of the slots that hold a mined (ranked) negative; randomly filled slots are NaN."""
        scores = self.selection.scores
        return scores[torch.isfinite(scores)]


class NegativesTable:
    """Codes, stored rows and negatives of a :class:`PairTable`'s queries (see the module docstring).

    Args:
        pairs: The de-duplicated pairs.
        num_negatives: Negatives kept per query.
        lsh: Code length, centring, store, pool rule and backend.
        similarity: How candidates are rescored (the model's similarity).
        device: Where hashing and the Hamming search run (the model's device: CUDA when the model is there).
    """

    def __init__(self, pairs: PairTable, num_negatives: int, lsh: LSHSettings,
                 similarity: Similarity | None = None, device: str | torch.device | None = None) -> None:
        self.pairs = pairs
        self.lsh = lsh
        self.similarity = similarity or Similarity()
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.hasher: LSHHasher | None = None
        self.codes: np.ndarray | None = None
        self.store: EmbeddingStore | None = None
        self.query_rows: np.ndarray | None = None
        n_queries = len(pairs.queries)
        # Shared memory: dataloader workers read refreshed negatives through the dataset transform.
        self.negatives = torch.full((n_queries, num_negatives), -1, dtype=torch.long).share_memory_()
        self.scores = torch.full((n_queries, num_negatives), float("nan")).share_memory_()
        self.mined = False
        self.version = 0  # bumped whenever codes or negatives change (the batch sampler re-plans on it)

    @property
    def num_negatives(self) -> int:
        return self.negatives.shape[1]

    @property
    def store_dtype(self) -> np.dtype:
        return np.dtype(np.float16 if self.lsh.store == "float16" else np.float32)

    # ---- building ---------------------------------------------------------------------------------------------

    def column_sum(self, corpus_rows: np.ndarray) -> tuple[torch.Tensor, int]:
        """Column sums of corpus rows as the table will store them (the centre is the mean of stored rows)."""
        if len(corpus_rows) == 0:
            return torch.zeros(0, dtype=torch.float64), 0
        return column_sum(np.asarray(corpus_rows).astype(self.store_dtype, copy=False))

    def fit_hasher(self, total: torch.Tensor, count: int) -> None:
        """(Re)fit the hasher on the whole corpus' column sums (summed over ranks by the caller)."""
        self.hasher = LSHHasher(self.lsh.num_bits, self.lsh.center, self.lsh.seed, device=self.device)
        self.hasher.fit_from_sum(total, count)

    def update(self, corpus_ids: np.ndarray, corpus_rows: np.ndarray, query_ids: np.ndarray,
               query_rows: np.ndarray, encoded: int = 0, captured: int = 0) -> ShardUpdate:
        """Hash fresh corpus rows (as stored) into a :class:`ShardUpdate`."""
        if self.hasher is None:
            raise RuntimeError("fit_hasher() first.")
        rows = np.asarray(corpus_rows).astype(self.store_dtype, copy=False)
        codes = self.hasher.transform(rows) if len(rows) else np.empty((0, self.hasher.num_bytes), np.uint8)
        return ShardUpdate(np.asarray(corpus_ids, np.int64), codes, rows, np.asarray(query_ids, np.int64),
                           np.asarray(query_rows, np.float32), encoded, captured)

    def apply(self, updates: list[ShardUpdate]) -> None:
        """Write every rank's update into the table, in rank order."""
        assert self.hasher is not None
        dim = next((u.corpus_rows.shape[1] for u in updates if len(u.corpus_ids)), None)
        if self.codes is None:
            if dim is None:
                raise RuntimeError("The first refresh must encode the corpus.")
            n_corpus, n_queries = len(self.pairs.corpus), len(self.pairs.queries)
            self.codes = np.zeros((n_corpus, self.hasher.num_bytes), np.uint8)
            if self.lsh.store is not None:
                self.store = open_store(self.lsh.store, n_corpus, dim)
            self.query_rows = np.zeros((n_queries, dim), np.float32)
        self.version += 1
        for update in updates:
            if len(update.corpus_ids):
                self.codes[update.corpus_ids] = update.corpus_codes
                if self.store is not None:
                    self.store.array[update.corpus_ids] = update.corpus_rows
            if len(update.query_ids):
                self.query_rows[update.query_ids] = update.query_rows

    def index(self) -> LSHIndex:
        """An :class:`~st_lsh.LSHIndex` over the current codes and store (nothing is copied)."""
        assert self.hasher is not None and self.codes is not None
        return LSHIndex.from_codes(self.hasher, self.codes, self.store, self.lsh, self.similarity)

    # ---- mining -----------------------------------------------------------------------------------------------

    def mine(self, rules: NegativeRules, seed: int, fill: bool = True) -> MiningOutcome:
        """Search and select negatives for every query with the miner's stages; with ``fill``, slots the rules
        leave empty get random corpus texts (never a positive), so every row keeps ``num_negatives`` columns.
        The result is returned, not applied: see :meth:`set_negatives`."""
        pairs, index = self.pairs, self.index()
        width = rules.window(pairs.max_positives)
        pool = self.lsh.pool_size(min(width, len(pairs.corpus)), len(pairs.corpus))
        rng = random.Random(seed)
        parts: list[Selection] = []
        positive_scores: list[torch.Tensor] = []
        for start in range(0, len(pairs.queries), QUERY_CHUNK):
            positives = pairs.positive_indices[start : start + QUERY_CHUNK]
            found = search_candidates(index, self.query_rows[start : start + QUERY_CHUNK], positives, width, pool)
            parts.append(select_for_queries(found.scores, found.indices, positives, found.positive_scores, rules,
                                            rng))
            positive_scores.append(found.positive_scores)
        selection = Selection(torch.cat([p.indices for p in parts]), torch.cat([p.scores for p in parts]))
        without = int((~selection.found).all(dim=1).sum())
        filled = fill_missing(selection, len(pairs.corpus), pairs.positive_indices, rng) if fill else 0
        return MiningOutcome(selection, torch.cat(positive_scores), filled, without)

    def empty_outcome(self) -> MiningOutcome:
        """The outcome of a refresh that mines no negatives (codes only)."""
        n = len(self.pairs.queries)
        empty = Selection(torch.empty((n, 0), dtype=torch.long), torch.empty((n, 0)))
        return MiningOutcome(empty, torch.empty(0), 0, 0)

    def set_negatives(self, indices: torch.Tensor, scores: torch.Tensor) -> float:
        """Replace the negatives in place (workers see it); returns the share of (query, slot) negatives that
        are not among the query's previous negatives."""
        changed = 1.0 if indices.numel() else 0.0
        if self.mined and indices.numel():
            same = (indices.unsqueeze(-1) == self.negatives.unsqueeze(1)).any(dim=-1)
            changed = float(1.0 - same.float().mean())
        self.negatives.copy_(indices)
        self.scores.copy_(scores)
        self.mined = True
        self.version += 1
        return changed

    # ---- checkpoints ------------------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        if not self.mined or self.hasher is None or self.codes is None:
            raise RuntimeError("Nothing to save: no negatives have been mined yet.")
        return {
            "hasher": self.hasher.state_dict(),
            "codes": torch.from_numpy(self.codes),
            "store": None if self.store is None else torch.from_numpy(np.ascontiguousarray(self.store.array)),
            "query_rows": torch.from_numpy(self.query_rows),
            "negatives": self.negatives.clone(),
            "scores": self.scores.clone(),
            "shape": (len(self.pairs.queries), len(self.pairs.corpus), self.num_negatives),
        }

    def load_state_dict(self, state: dict) -> None:
        expected = (len(self.pairs.queries), len(self.pairs.corpus), self.num_negatives)
        if tuple(state["shape"]) != expected:
            raise ValueError(f"Saved refresher state has (queries, corpus, negatives) = {tuple(state['shape'])}, "
                             f"but this refresher has {expected}.")
        self.hasher = LSHHasher.from_state_dict(state["hasher"], device=self.device)
        self.codes = state["codes"].numpy().copy()
        if state["store"] is not None:
            rows = state["store"].numpy()
            self.store = open_store(self.lsh.store or "float32", rows.shape[0], rows.shape[1])
            self.store.write(0, rows)
        self.query_rows = state["query_rows"].numpy().copy()
        self.negatives.copy_(state["negatives"])
        self.scores.copy_(state["scores"])
        self.mined = True
        self.version += 1
