"""The miner's encode, hash and search stages, on one process or sharded over ``torch.distributed`` ranks.

Both searches turn a :class:`~st_lsh.pairs.PairTable` into ranked candidates for any range of its queries
(:meth:`candidates`), which the miner then selects and formats chunk by chunk:

- :class:`LocalSearch` encodes queries and corpus chunk by chunk into their stores, fits and fills one
  :class:`~st_lsh.index.LSHIndex`, and searches a range of queries when asked.
- :class:`ShardedSearch` runs inside an initialised process group (``torchrun``, ``accelerate launch``): each rank
  encodes and hashes its contiguous shard of the corpus and of the queries; the column sums for the centre are
  all-reduced, the packed codes (``num_bits / 8`` bytes per text) all-gathered; each rank finds the Hamming pools
  of its own queries; the pools and query embeddings are all-gathered and every rank rescores the candidates
  that live in its own shard of the store, the owners' scores being combined by an all-reduce (max). Every rank
  ends with the candidates one process would find, so selection and formatting give one process's dataset.

Example::

    >>> import numpy as np
    >>> from datasets import Dataset
    >>> from st_lsh.candidates import LocalSearch
    >>> from st_lsh.pairs import PairTable
    >>> from st_lsh.rules import LSHSettings
    >>> class Model:   # a stand-in encoder: one fixed random vector per text
    ...     device = "cpu"
    ...     def encode_query(self, texts, **kwargs):
    ...         return np.stack([np.random.default_rng(len(t)).standard_normal(8) for t in texts]).astype("float32")
    ...     encode_document = encode_query
    >>> pairs = PairTable.from_dataset(Dataset.from_dict({"q": ["a", "bb"], "d": ["ccc", "dddd"]}),
    ...                                corpus=["eeeee", "ffffff"])
    >>> search = LocalSearch(Model(), pairs, LSHSettings(num_bits=64), width=3, pool=4)
    >>> found = search.candidates(0, 2)
    >>> found.indices.shape, found.positive_scores.shape
    (torch.Size([2, 3]), torch.Size([2]))
    >>> search.close()
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .distributed import all_gather_objects, all_reduce, shard, world
from .encode import encode_to_store
from .hashing import LSHHasher, column_sum
from .index import Candidates, LSHIndex, score_rows, search_candidates
from .pairs import PairTable, TextTable
from .rules import LSHSettings
from .search import sort_by_value_then_index
from .similarity import Similarity
from .store import EmbeddingStore
from .timing import Timings



@dataclass
class EncodeSettings:
    """How texts are encoded: prompts, batch size, multi-process pool, chunk size and cache."""

    query_prompt_name: str | None = None
    query_prompt: str | None = None
    corpus_prompt_name: str | None = None
    corpus_prompt: str | None = None
    batch_size: int = 32
    pool: Any = None
    chunk_size: int = 65_536
    cache_folder: str | None = None
    show_progress_bar: bool = False
    messages: list[str] = field(default_factory=list)

    def encode(self, model, texts: TextTable, kind: str, store: str | None) -> EmbeddingStore:
        prompt_name = self.query_prompt_name if kind == "query" else self.corpus_prompt_name
        prompt = self.query_prompt if kind == "query" else self.corpus_prompt
        return encode_to_store(model, texts, kind, store, prompt_name, prompt, self.batch_size, self.pool,
                               self.chunk_size, self.cache_folder, show_progress_bar=self.show_progress_bar,
                               messages=self.messages)


def _query_store_kind(lsh: LSHSettings) -> str:
    return "disk" if lsh.store == "disk" else "float32"


class LocalSearch:
    """Encode, hash and search on this process (see the module docstring)."""

    def __init__(self, model, pairs: PairTable, lsh: LSHSettings, width: int, pool: int,
                 encoding: EncodeSettings | None = None, timings: Timings | None = None, device=None) -> None:
        self.pairs, self.width, self.pool = pairs, width, pool
        self.timings = timings if timings is not None else Timings()
        encoding = encoding or EncodeSettings()
        self.query_store = self.corpus_store = None
        self.index: LSHIndex | None = None
        try:
            with self.timings.stage("encode"):
                self.query_store = encoding.encode(model, pairs.queries, "query", _query_store_kind(lsh))
                self.corpus_store = encoding.encode(model, pairs.corpus, "corpus", lsh.store)
            with self.timings.stage("hash"):
                self.index = LSHIndex(settings=lsh, similarity=Similarity.of(model),
                                      device=device if device is not None else getattr(model, "device", None))
                self.index.fit(self.corpus_store)
                if lsh.store is None:
                    self.corpus_store.close()  # the spilled floats; only the codes are kept from here on
        except BaseException:
            self.close()
            raise

    @property
    def nbytes(self) -> int:
        return self.index.nbytes if self.index is not None else 0

    def candidates(self, start: int, stop: int) -> Candidates:
        with self.timings.stage("search"):
            queries = self.query_store.take(np.arange(start, stop))
            found = search_candidates(self.index, queries, self.pairs.positive_indices[start:stop], self.width,
                                      self.pool)
            if self.index.store is not None:
                self.index.store.release()  # the rows this chunk rescored leave the RSS (a disk store)
            return found

    def close(self) -> None:
        if self.index is not None:
            self.index.close()
        for store in (self.query_store, self.corpus_store):
            if store is not None:
                store.close()


class ShardedSearch:
    """Encode, hash and search with the corpus and the queries sharded over the ranks of the default process
    group (see the module docstring). Every rank must construct it."""

    def __init__(self, model, pairs: PairTable, lsh: LSHSettings, width: int, pool: int,
                 encoding: EncodeSettings | None = None, timings: Timings | None = None, device=None) -> None:
        self.pairs, self.width, self.pool, self.lsh = pairs, width, pool, lsh
        self.timings = timings if timings is not None else Timings()
        encoding = encoding or EncodeSettings()
        self.rank, self.world_size = world()
        n_corpus, n_queries = len(pairs.corpus), len(pairs.queries)
        self.corpus_range = shard(n_corpus, self.rank, self.world_size)
        self.query_range = shard(n_queries, self.rank, self.world_size)
        self.similarity = Similarity.of(model)
        device = device if device is not None else getattr(model, "device", None)
        self.corpus_store = self.query_store = None
        try:
            with self.timings.stage("encode"):
                self.query_store = encoding.encode(model, _subset(pairs.queries, self.query_range), "query",
                                                   _query_store_kind(lsh))
                self.corpus_store = encoding.encode(model, _subset(pairs.corpus, self.corpus_range), "corpus",
                                                    lsh.store if lsh.store is not None else None)
            with self.timings.stage("hash"):
                total, count = column_sum(self.corpus_store)
                summed = all_reduce(torch.cat([total.double(), torch.tensor([float(count)], dtype=torch.float64)]))
                self.hasher = LSHHasher(lsh.num_bits, lsh.center, lsh.seed, device=device)
                self.hasher.fit_from_sum(summed[:-1], int(summed[-1]))
                local_codes = self.hasher.transform(self.corpus_store)
                codes = np.concatenate(all_gather_objects(local_codes))
                if lsh.store is None:
                    self.corpus_store.close()
                    self.corpus_store = None
            with self.timings.stage("search"):
                self._search_all(codes)
        except BaseException:
            self.close()
            raise

    @property
    def nbytes(self) -> int:
        store = self.corpus_store.ram_bytes if self.corpus_store is not None else 0
        return self.codes_nbytes + store

    def _search_all(self, codes: np.ndarray) -> None:
        """Pools of this rank's queries, gathered; owners rescore; the result is every query's candidates."""
        self.codes_nbytes = codes.nbytes
        index = LSHIndex.from_codes(self.hasher, codes, None, self.lsh, self.similarity)
        queries = self.query_store.take(np.arange(len(self.query_range)))
        query_codes = self.hasher.transform(queries, role="query") if len(queries) else np.empty(
            (0, self.hasher.num_bytes), np.uint8)
        k = min(self.pool, len(codes))
        if len(queries):
            distances, indices = index.candidates(query_codes, k)
        else:
            distances, indices = np.empty((0, k), np.int32), np.empty((0, k), np.int64)
        gathered = all_gather_objects((indices, distances, queries))
        indices = np.concatenate([g[0] for g in gathered])
        distances = np.concatenate([g[1] for g in gathered])
        all_queries = np.concatenate([g[2] for g in gathered])
        pair_query = self.pairs.pair_query
        pair_positive = self.pairs.pair_positive
        if self.lsh.store is None:  # codes only: every rank estimates every score from the gathered distances
            scores = self.similarity.from_hamming(torch.from_numpy(distances), self.lsh.num_bits)
            all_codes = self.hasher.transform(all_queries, role="query")
            from .search import pairwise_hamming

            positive = self.similarity.from_hamming(torch.from_numpy(pairwise_hamming(
                all_codes[pair_query], codes, pair_positive[:, None])).flatten(), self.lsh.num_bits)
        else:
            scores = self._owned_scores(all_queries, indices)
            positive = self._owned_scores(all_queries[pair_query], pair_positive[:, None]).flatten()
            scores, positive = all_reduce(scores, op="max"), all_reduce(positive, op="max")
        self.scores, self.indices = sort_by_value_then_index(scores, torch.from_numpy(indices), largest=True)
        self.positive_scores = positive

    def _owned_scores(self, queries: np.ndarray, indices: np.ndarray) -> torch.Tensor:
        """Scores of the (query, candidate) entries whose candidate lives in this rank's store; ``-inf`` elsewhere.
        The one rescoring rule (:func:`~st_lsh.index.score_rows`), so the scores equal one process's bit for bit."""
        start, stop = self.corpus_range.start, self.corpus_range.stop
        out = torch.full(indices.shape, float("-inf"))
        owned = (indices >= start) & (indices < stop)
        rows = np.flatnonzero(owned.any(axis=1))
        step = max(1, 2**22 // max(1, indices.shape[1]))
        for first in range(0, len(rows), step):
            block = rows[first : first + step]
            local = np.where(owned[block], indices[block] - start, -1)
            out[torch.from_numpy(block)] = score_rows(self.similarity, self.corpus_store, queries[block], local)
        return out

    def candidates(self, start: int, stop: int) -> Candidates:
        scores, indices = self.scores[start:stop, : self.width], self.indices[start:stop, : self.width]
        if indices.shape[1] < self.width:
            pad = self.width - indices.shape[1]
            scores = torch.cat([scores, scores.new_full((len(scores), pad), float("-inf"))], dim=1)
            indices = torch.cat([indices, indices.new_full((len(indices), pad), -1)], dim=1)
        pair_query = self.pairs.pair_query
        first, last = np.searchsorted(pair_query, start), np.searchsorted(pair_query, stop)
        return Candidates(scores, indices, self.positive_scores[first:last])

    def close(self) -> None:
        for store in (self.query_store, self.corpus_store):
            if store is not None:
                store.close()


def _subset(texts: TextTable, ids: range) -> TextTable:
    """A table of the texts ``ids`` (a contiguous shard), for encoding."""
    table = TextTable(texts.name)
    for start in range(ids.start, ids.stop, 65_536):
        table.add(texts.texts(start, min(start + 65_536, ids.stop)))
    return table
