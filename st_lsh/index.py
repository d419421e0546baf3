"""Candidate retrieval: an LSH index with exact rescoring, and the exact float baseline.

:class:`LSHIndex` hashes a corpus to packed codes (centred on the mean of the whole corpus, see
:meth:`st_lsh.LSHHasher.fit`), finds a Hamming candidate pool per query (:meth:`LSHSettings.pool_size`), and
rescores that pool exactly with the model's similarity from an embedding store (float32 / float16 in RAM, or a
memory-mapped file). Without stored embeddings it keeps ``num_bits // 8`` bytes per text and nothing else, and
estimates scores from the Hamming distance (``cos(pi * h / num_bits)``).

With ``LSHSettings(prefix_bits=...)`` the search is a cascade: the first ``prefix_bits`` of each code select a
wide pool, the full-length Hamming distance cuts it to the pool, and exact rescoring cuts that to ``k``.

:func:`exact_topk` is the exact float search (chunked matrix product plus top-k), the reference.

Example::

    >>> import numpy as np
    >>> from st_lsh import LSHIndex, exact_topk
    >>> rng = np.random.default_rng(0)
    >>> corpus = rng.standard_normal((5000, 384)).astype(np.float32)
    >>> corpus /= np.linalg.norm(corpus, axis=1, keepdims=True)
    >>> queries = corpus[:10] + 0.1 * rng.standard_normal((10, 384)).astype(np.float32)
    >>> index = LSHIndex(num_bits=512).fit(corpus)
    >>> scores, indices = index.search(queries, k=100)
    >>> exact_scores, exact_indices = exact_topk(queries, corpus, k=100)
    >>> bool((indices[:, 0] == exact_indices[:, 0]).all())
    True
"""

from __future__ import annotations

from dataclasses import replace
from typing import NamedTuple

import numpy as np
import torch
from tqdm.auto import tqdm

from .hashing import ArrayLike, LSHHasher, check_embeddings
from .rules import Backend, Centering, LSHSettings, StoreKind
from .search import RunningTopK, hamming_rerank, hamming_topk, pairwise_hamming, sort_by_value_then_index
from .similarity import Similarity, hamming_to_cosine
from .store import EmbeddingStore, open_store


__all__ = ["Candidates", "LSHIndex", "Neighbours", "exact_topk", "hamming_to_cosine", "search_candidates"]

RESCORE_BLOCK = 2**24  # floats gathered at a time while rescoring


class Neighbours(NamedTuple):
    """Top-k per query: float32 ``scores`` and int64 ``indices`` of shape ``(n_queries, k)``, best first, ties by
    ascending corpus index."""

    scores: np.ndarray
    indices: np.ndarray


def exact_topk(
    query_embeddings: ArrayLike,
    corpus_embeddings: ArrayLike,
    k: int,
    query_chunk_size: int = 1024,
    corpus_chunk_size: int = 65536,
    show_progress_bar: bool = False,
    similarity: Similarity | str = "cosine",
) -> Neighbours:
    """Exact top-k by the model's similarity (cosine of normalised embeddings by default), chunked over queries
    and corpus, through the one running top-k merge."""
    similarity = Similarity(similarity) if isinstance(similarity, str) else similarity
    queries = torch.as_tensor(np.asarray(query_embeddings)).float()
    corpus = corpus_embeddings
    if not 1 <= k <= len(corpus):
        raise ValueError(f"k must be between 1 and the corpus size ({len(corpus)}), got k={k}.")
    all_scores, all_indices = [], []
    for q_start in tqdm(range(0, len(queries), query_chunk_size), desc="Exact search", disable=not show_progress_bar):
        q = queries[q_start : q_start + query_chunk_size]
        top = RunningTopK(k, largest=True)
        for c_start in range(0, len(corpus), corpus_chunk_size):
            c = torch.as_tensor(np.asarray(corpus[c_start : c_start + corpus_chunk_size])).float()
            s, i = torch.topk(similarity.matrix(q, c), k=min(k, len(c)), dim=1)
            top.add(s, i + c_start)
        all_scores.append(top.values)
        all_indices.append(top.indices)
    return Neighbours(torch.cat(all_scores).numpy(), torch.cat(all_indices).numpy())


class LSHIndex:
    """Packed LSH codes of a corpus, searched by Hamming distance and rescored exactly.

    Args:
        num_bits, center, random_state, store_embeddings, pool_factor, backend: shortcuts for the fields of
            :class:`~st_lsh.rules.LSHSettings` (``seed`` is ``random_state``, ``store`` is ``store_embeddings``);
            ignored when ``settings`` is given.
        device: Device for hashing and the torch search backend; None picks CUDA when available.
        hasher: An already fitted :class:`LSHHasher` to reuse (its code length and centring win).
        settings: The LSH policy; see :class:`~st_lsh.rules.LSHSettings` (pool rule, cascade, store).
        similarity: How candidates are rescored: a :class:`~st_lsh.similarity.Similarity` or its name.
    """

    def __init__(
        self,
        num_bits: int = 512,
        center: bool | Centering = "corpus",
        random_state: int | None = 42,
        store_embeddings: StoreKind | None = "float32",
        pool_factor: float | None = None,
        device: str | torch.device | None = None,
        backend: Backend = "auto",
        hasher: LSHHasher | None = None,
        *,
        settings: LSHSettings | None = None,
        similarity: Similarity | str = "cosine",
    ) -> None:
        if settings is None:
            extra = {} if pool_factor is None else {"pool_factor": pool_factor}
            settings = LSHSettings.from_center(center, num_bits=num_bits, seed=random_state, store=store_embeddings,
                                               backend=backend, **extra)
        if hasher is not None:
            settings = replace(settings, num_bits=hasher.num_bits, center=hasher.center)
        self.settings = settings
        self.similarity = Similarity(similarity) if isinstance(similarity, str) else similarity
        self.hasher = hasher if hasher is not None else LSHHasher(
            settings.num_bits, settings.center, settings.seed, device=device)
        self.device = self.hasher.device
        self.codes = np.empty((0, self.hasher.num_bytes), np.uint8)
        self.store: EmbeddingStore | None = None

    @property
    def num_bits(self) -> int:
        return self.hasher.num_bits

    @property
    def store_embeddings(self) -> StoreKind | None:
        return self.settings.store

    def __len__(self) -> int:
        return len(self.codes)

    @property
    def embeddings(self) -> np.ndarray | None:
        """The stored rows (an array or a memory map), or None for a codes-only index."""
        return None if self.store is None else self.store.array

    @property
    def nbytes(self) -> int:
        """Bytes held in RAM by the index: codes plus stored embeddings (a memory-mapped store counts 0)."""
        return self.codes.nbytes + (self.store.ram_bytes if self.store is not None else 0)

    # ---- building --------------------------------------------------------------------------------------------

    def fit(self, corpus: ArrayLike | EmbeddingStore) -> LSHIndex:
        """Centre on the whole corpus, hash it, and keep its rows for rescoring (as ``settings.store`` says).

        ``corpus`` is an array (memory maps included) or an :class:`~st_lsh.store.EmbeddingStore`, read in chunks.
        A store is kept as it is; an array is copied into a store of ``settings.store`` kind.
        """
        if isinstance(corpus, EmbeddingStore):
            store = corpus
        else:
            store = self._store_from_array(corpus)
        self.hasher.fit(store if store is not None else corpus)
        self.codes = self.hasher.transform(store if store is not None else corpus)
        self.store = store if self.settings.store is not None else None
        return self

    def _store_from_array(self, corpus: ArrayLike) -> EmbeddingStore | None:
        if self.settings.store is None:
            return None
        array = corpus.numpy() if isinstance(corpus, torch.Tensor) else corpus
        if self.settings.store == "disk":
            store = open_store("disk", len(array), array.shape[1])
        else:
            store = open_store(self.settings.store, len(array), array.shape[1])
        for start in range(0, len(array), 65536):
            store.write(start, np.asarray(array[start : start + 65536], dtype=np.float32))
        return store

    def add(self, corpus_embeddings: ArrayLike) -> LSHIndex:
        """Hash and append more corpus rows with the fitted centre; on an empty, unfitted index this is
        :meth:`fit` (call :meth:`fit` with the whole corpus to centre on all of it)."""
        if not self.hasher.is_fitted:
            return self.fit(corpus_embeddings)
        embeddings = check_embeddings(corpus_embeddings, "corpus embeddings")
        codes = self.hasher.transform(embeddings)
        self.add_codes(codes, embeddings.numpy() if self.settings.store is not None else None)
        return self

    def add_codes(self, codes: np.ndarray, embeddings: ArrayLike | None = None) -> LSHIndex:
        """Append precomputed codes (and their embeddings when the index stores them)."""
        if codes.dtype != np.uint8 or codes.ndim != 2 or codes.shape[1] != self.hasher.num_bytes:
            raise ValueError(f"codes must be a uint8 array of shape (n, {self.hasher.num_bytes}).")
        if self.settings.store is not None:
            if embeddings is None or len(embeddings) != len(codes):
                raise ValueError("This index stores embeddings: pass one embedding per code.")
            old = self.store
            dim = np.asarray(embeddings).shape[1]
            kind = self.settings.store
            store = open_store(kind if kind != "disk" else "float32", len(self.codes) + len(codes), dim)
            if old is not None and len(old):
                for start, chunk in old.chunks():
                    store.write(start, chunk)
                old.close()
            store.write(len(self.codes), np.asarray(embeddings, dtype=np.float32))
            self.store = store
        self.codes = np.concatenate([self.codes, codes]) if len(self.codes) else codes
        return self

    @classmethod
    def from_codes(
        cls,
        hasher: LSHHasher,
        codes: np.ndarray,
        store: EmbeddingStore | None,
        settings: LSHSettings,
        similarity: Similarity | str = "cosine",
    ) -> LSHIndex:
        """An index over codes (and a store) computed elsewhere, e.g. by the training-time table or by other
        ranks; the store is used as it is."""
        index = cls(hasher=hasher, settings=replace(settings, store=None if store is None else settings.store or
                                                    "float32"), similarity=similarity)
        index.codes, index.store = codes, store
        return index

    # ---- searching -------------------------------------------------------------------------------------------

    def hash_queries(self, query_embeddings: ArrayLike) -> np.ndarray:
        return self.hasher.transform(query_embeddings, role="query")

    def pool_size(self, k: int) -> int:
        """Hamming candidates fetched for a top-k request (:meth:`LSHSettings.pool_size`)."""
        return self.settings.pool_size(k, len(self))

    def candidates(self, query_codes: np.ndarray, pool: int) -> tuple[np.ndarray, np.ndarray]:
        """The Hamming pool ``(distances, indices)`` of each query code: one full-length scan, or the cascade
        (prefix scan of a wide pool, then full-length re-ranking) when the settings ask for it."""
        wide = self.settings.prefix_pool_size(pool, len(self))
        if wide is None:
            found = hamming_topk(query_codes, self.codes, pool, backend=self.settings.backend, device=self.device,
                                 query_chunk_size=max(1, len(query_codes)))
        else:
            words = self.settings.prefix_bits // 64
            first = hamming_topk(query_codes, self.codes, wide, backend=self.settings.backend, device=self.device,
                                 query_chunk_size=max(1, len(query_codes)), num_words=words)
            found = hamming_rerank(query_codes, self.codes, first.indices, pool)
        return found.distances, found.indices

    def rescore(
        self,
        query_embeddings: ArrayLike,
        indices: np.ndarray,
        query_codes: np.ndarray | None = None,
        distances: np.ndarray | None = None,
    ) -> torch.Tensor:
        """Scores of ``indices`` (one row of corpus ids per query; ``-1`` gives ``-inf``): the model's similarity
        on stored rows, or an estimate from the Hamming ``distances`` (computed from the codes if not given)."""
        indices_t = torch.as_tensor(np.asarray(indices), dtype=torch.long)
        valid = indices_t >= 0
        if self.store is None:
            if distances is None:
                codes = query_codes if query_codes is not None else self.hash_queries(query_embeddings)
                distances = pairwise_hamming(codes, self.codes, np.asarray(indices))
            scores = self.similarity.from_hamming(torch.as_tensor(distances), self.num_bits)
            return scores.masked_fill(~valid, float("-inf"))
        return score_rows(self.similarity, self.store, query_embeddings, indices)

    def search(
        self,
        query_embeddings: ArrayLike,
        k: int,
        pool_size: int | None = None,
        query_chunk_size: int = 4096,
        show_progress_bar: bool = False,
    ) -> Neighbours:
        """Top-``k`` corpus ids per query: Hamming pool (:meth:`candidates`), then exact rescoring when embeddings
        are stored. Returns :class:`Neighbours` sorted best first, ties by ascending corpus index."""
        if len(self) == 0:
            raise ValueError("The index is empty: fit() it on corpus embeddings before searching.")
        if not 1 <= k <= len(self):
            raise ValueError(f"k must be between 1 and the corpus size ({len(self)}), got k={k}.")
        pool = self.pool_size(k) if pool_size is None else min(max(k, int(pool_size)), len(self))
        scores_out, indices_out = [], []
        n = len(query_embeddings)
        for start in tqdm(range(0, n, query_chunk_size), desc="LSH search", disable=not show_progress_bar):
            queries = query_embeddings[start : start + query_chunk_size]
            codes = self.hash_queries(queries)
            distances, indices = self.candidates(codes, pool)
            scores = self.rescore(queries, indices, distances=distances)
            scores, idx = sort_by_value_then_index(scores, torch.from_numpy(indices), largest=True)
            scores_out.append(scores[:, :k].numpy())
            indices_out.append(idx[:, :k].numpy())
        return Neighbours(np.concatenate(scores_out), np.concatenate(indices_out))

    def close(self) -> None:
        """Release the embedding store (a temporary disk store is deleted)."""
        if self.store is not None:
            self.store.close()
            self.store = None


def score_rows(similarity: Similarity, store: EmbeddingStore, query_embeddings: ArrayLike,
               indices: np.ndarray) -> torch.Tensor:
    """``similarity`` of each query with the stored rows ``indices`` (one row of store ids per query; ``-1`` gives
    ``-inf``): the one rescoring rule, so that one process and the owners of a sharded store score alike. A plain
    dot product (dot, or cosine on normalised rows) is read straight from a float32 / float16 store by the numba
    kernel; other similarities gather blocks of rows."""
    from .search import numba_available

    array = store.array
    if (array is not None and array.dtype in (np.float32, np.float16) and array.flags.c_contiguous
            and (similarity.name == "dot" or (similarity.name == "cosine" and similarity.normalized))
            and numba_available()):
        from . import kernels

        return torch.from_numpy(kernels.gather_dot(np.asarray(query_embeddings, dtype=np.float32), array,
                                                   np.asarray(indices, dtype=np.int64)))
    indices_t = torch.as_tensor(np.asarray(indices), dtype=torch.long)
    queries = torch.as_tensor(np.asarray(query_embeddings, dtype=np.float32))
    out = torch.full(indices_t.shape, float("-inf"))
    width = max(1, indices_t.shape[1])
    step = max(1, RESCORE_BLOCK // (width * store.dim))
    for start in range(0, len(queries), step):
        rows = indices_t[start : start + step]
        gathered = torch.from_numpy(store.take(rows.clamp(min=0).flatten().numpy()))
        scores = similarity.pairs(queries[start : start + step], gathered.view(*rows.shape, -1))
        out[start : start + step] = scores.masked_fill(rows < 0, float("-inf"))
    return out


class Candidates(NamedTuple):
    """Ranked candidates of a chunk of queries, as the selection stage takes them.

    ``scores`` / ``indices``: ``(n_queries, width)``, best first, padded with ``-inf`` / ``-1`` when the corpus is
    smaller than the window; ``positive_scores``: the score of every (query, positive) pair, flat, query 0's
    positives first.
    """

    scores: torch.Tensor
    indices: torch.Tensor
    positive_scores: torch.Tensor


def search_candidates(
    index: LSHIndex,
    query_embeddings: ArrayLike,
    positive_indices: list[list[int]],
    width: int,
    pool: int | None = None,
) -> Candidates:
    """The search stage of the miner, the refresher and the sampler: the ``width`` best candidates of each query
    (a Hamming pool of ``pool``, rescored), padded to ``width``, and the scores of each query's positives."""
    k = min(width, len(index))
    found = index.search(query_embeddings, k=k, pool_size=pool, query_chunk_size=max(1, len(query_embeddings)))
    scores, indices = torch.from_numpy(found.scores), torch.from_numpy(found.indices)
    if k < width:
        pad = width - k
        scores = torch.cat([scores, scores.new_full((len(scores), pad), float("-inf"))], dim=1)
        indices = torch.cat([indices, indices.new_full((len(indices), pad), -1)], dim=1)
    pair_query = np.repeat(np.arange(len(positive_indices)), [len(p) for p in positive_indices])
    pair_positive = np.fromiter((p for ps in positive_indices for p in ps), dtype=np.int64, count=len(pair_query))
    queries = np.asarray(query_embeddings)
    positive_scores = index.rescore(queries[pair_query], pair_positive[:, None]).flatten()
    return Candidates(scores, indices, positive_scores)
