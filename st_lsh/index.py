"""Candidate retrieval: an LSH index with exact rescoring, and the exact float baseline.

:class:`LSHIndex` hashes corpus embeddings to packed codes, finds a Hamming candidate pool several times larger
than the ``k`` asked for, and rescores that pool exactly from stored embeddings (float32 or float16). Without
stored embeddings (``store_embeddings=None``) it keeps ``num_bits // 8`` bytes per text and nothing else, and
estimates cosine similarity from the Hamming distance: ``cos(pi * h / num_bits)``.

:func:`exact_topk` is the exact float32 search (chunked matrix product plus top-k), used as the reference.

Example::

    >>> import numpy as np
    >>> from st_lsh import LSHIndex, exact_topk
    >>> rng = np.random.default_rng(0)
    >>> corpus = rng.standard_normal((5000, 384)).astype(np.float32)
    >>> corpus /= np.linalg.norm(corpus, axis=1, keepdims=True)
    >>> queries = corpus[:10] + 0.1 * rng.standard_normal((10, 384)).astype(np.float32)
    >>> index = LSHIndex(num_bits=512, pool_factor=4).add(corpus)
    >>> scores, indices = index.search(queries, k=100)
    >>> exact_scores, exact_indices = exact_topk(queries, corpus, k=100)
    >>> bool((indices[:, 0] == exact_indices[:, 0]).all())
    True
"""

from __future__ import annotations

import logging
import math
from typing import Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from .hashing import ArrayLike, Centering, LSHHasher, check_embeddings
from .search import Backend, hamming_topk

logger = logging.getLogger(__name__)

StoreDtype = Literal["float32", "float16"] | None
_DTYPES = {"float32": np.float32, "float16": np.float16}


def hamming_to_cosine(distances: np.ndarray | torch.Tensor, num_bits: int) -> torch.Tensor:
    """Estimate cosine similarity from Hamming distance: ``cos(pi * h / num_bits)``."""
    return torch.cos(torch.as_tensor(distances, dtype=torch.float32) * (math.pi / num_bits))


def sort_candidates(scores: torch.Tensor, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sort each row by descending score, ties by ascending corpus index (a deterministic order)."""
    by_index = torch.argsort(indices, dim=1, stable=True)
    scores, indices = scores.gather(1, by_index), indices.gather(1, by_index)
    by_score = torch.argsort(scores, dim=1, descending=True, stable=True)
    return scores.gather(1, by_score), indices.gather(1, by_score)


def exact_topk(
    query_embeddings: ArrayLike,
    corpus_embeddings: ArrayLike,
    k: int,
    query_chunk_size: int = 1024,
    corpus_chunk_size: int = 65536,
    show_progress_bar: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k by dot product (cosine for normalised embeddings), chunked over queries and corpus.

    Returns ``(scores, indices)`` as float32 and int64 arrays of shape ``(n_queries, k)``, best first.
    """
    queries = torch.as_tensor(query_embeddings).float()
    corpus = torch.as_tensor(corpus_embeddings)
    if not 1 <= k <= corpus.shape[0]:
        raise ValueError(f"k must be between 1 and the corpus size ({corpus.shape[0]}), got k={k}.")
    all_scores, all_indices = [], []
    for q_start in tqdm(range(0, len(queries), query_chunk_size), desc="Exact search", disable=not show_progress_bar):
        q = queries[q_start : q_start + query_chunk_size]
        best_s = best_i = None
        for c_start in range(0, len(corpus), corpus_chunk_size):
            c = corpus[c_start : c_start + corpus_chunk_size].float()
            s, i = torch.topk(q @ c.T, k=min(k, len(c)), dim=1)
            i = i + c_start
            if best_s is not None:
                s, i = torch.cat([best_s, s], dim=1), torch.cat([best_i, i], dim=1)
                s, order = torch.topk(s, k=min(k, s.shape[1]), dim=1)
                i = i.gather(1, order)
            best_s, best_i = s, i
        all_scores.append(best_s)
        all_indices.append(best_i)
    return torch.cat(all_scores).numpy(), torch.cat(all_indices).numpy()


class LSHIndex:
    """Packed LSH codes of a corpus, searched by Hamming distance and rescored exactly.

    Args:
        num_bits: Code length; a positive multiple of 8.
        center: Centring of the codes by the mean of the first added batch (see :class:`LSHHasher`).
        random_state: Seed of the projection.
        store_embeddings: ``"float32"`` (exact rescoring, identical to a float search), ``"float16"`` (half the
            memory, scores rounded to about 1e-3), or None (codes only; scores estimated from Hamming distance,
            an unbiased angle estimate with ``center=False`` or ``"both"``; with the default corpus-only
            centring the estimate is shifted by the centring, identically for positives and negatives).
        pool_factor: Hamming candidates per query as a multiple of ``k``; only used with stored embeddings.
        device: Device for hashing and the torch search backend; None picks CUDA when available.
        backend: Hamming search backend, see :func:`hamming_topk`.
        hasher: An already fitted :class:`LSHHasher` to reuse (its settings win over the ones above).
    """

    def __init__(
        self,
        num_bits: int = 512,
        center: bool | Centering = "corpus",
        random_state: int | None = 42,
        store_embeddings: StoreDtype = "float32",
        pool_factor: float = 4.0,
        device: str | torch.device | None = None,
        backend: Backend = "auto",
        hasher: LSHHasher | None = None,
    ) -> None:
        if store_embeddings not in (None, "float32", "float16"):
            raise ValueError(f"store_embeddings must be 'float32', 'float16' or None, got {store_embeddings!r}.")
        if not pool_factor >= 1:
            raise ValueError(f"pool_factor must be at least 1, got {pool_factor}.")
        self.hasher = hasher if hasher is not None else LSHHasher(num_bits, center, random_state, device=device)
        self.store_embeddings = store_embeddings
        self.pool_factor = float(pool_factor)
        self.backend = backend
        self.device = self.hasher.device
        self._codes: list[np.ndarray] = []
        self._embeddings: list[np.ndarray] = []

    @property
    def num_bits(self) -> int:
        return self.hasher.num_bits

    def __len__(self) -> int:
        return sum(len(c) for c in self._codes)

    @property
    def codes(self) -> np.ndarray:
        if len(self._codes) > 1:
            self._codes = [np.concatenate(self._codes)]
        return self._codes[0] if self._codes else np.empty((0, self.hasher.num_bytes), np.uint8)

    @property
    def embeddings(self) -> np.ndarray | None:
        if self.store_embeddings is None or not self._embeddings:
            return None
        if len(self._embeddings) > 1:
            self._embeddings = [np.concatenate(self._embeddings)]
        return self._embeddings[0]

    @property
    def nbytes(self) -> int:
        """Bytes held per the whole index: codes plus stored embeddings."""
        stored = sum(e.nbytes for e in self._embeddings) if self.store_embeddings else 0
        return sum(c.nbytes for c in self._codes) + stored

    def add(self, corpus_embeddings: ArrayLike) -> LSHIndex:
        """Hash and append corpus embeddings; the first call fits the hasher if it is not fitted yet."""
        embeddings = check_embeddings(corpus_embeddings, "corpus embeddings")
        if not self.hasher.is_fitted:
            self.hasher.fit(embeddings)
        self._codes.append(self.hasher.transform(embeddings))
        if self.store_embeddings is not None:
            self._embeddings.append(embeddings.numpy().astype(_DTYPES[self.store_embeddings], copy=False))
        return self

    def add_codes(self, codes: np.ndarray, embeddings: ArrayLike | None = None) -> LSHIndex:
        """Append precomputed codes (and their embeddings when the index stores them)."""
        if codes.dtype != np.uint8 or codes.ndim != 2 or codes.shape[1] != self.hasher.num_bytes:
            raise ValueError(f"codes must be a uint8 array of shape (n, {self.hasher.num_bytes}).")
        if self.store_embeddings is not None:
            if embeddings is None or len(embeddings) != len(codes):
                raise ValueError("This index stores embeddings: pass one embedding per code.")
            self._embeddings.append(np.asarray(embeddings).astype(_DTYPES[self.store_embeddings], copy=False))
        self._codes.append(codes)
        return self

    def hash_queries(self, query_embeddings: ArrayLike) -> np.ndarray:
        return self.hasher.transform(check_embeddings(query_embeddings, "query embeddings"), role="query")

    def pool_size(self, k: int) -> int:
        """Hamming candidates fetched for a top-k request: ``pool_factor * k``, capped by the corpus size."""
        if self.store_embeddings is None:
            return min(k, len(self))
        return min(max(k, math.ceil(self.pool_factor * k)), len(self))

    def rescore(
        self,
        query_embeddings: ArrayLike,
        indices: np.ndarray,
        query_codes: np.ndarray | None = None,
        distances: np.ndarray | None = None,
    ) -> torch.Tensor:
        """Scores of ``indices`` (one row of corpus ids per query): exact cosine from stored embeddings, or
        ``cos(pi * h / num_bits)`` from the Hamming ``distances`` (computed from the codes if not given)."""
        indices_t = torch.as_tensor(indices, dtype=torch.long)
        if self.store_embeddings is None:
            if distances is None:
                codes = query_codes if query_codes is not None else self.hash_queries(query_embeddings)
                distances = _pairwise_hamming(codes, self.codes, indices)
            return hamming_to_cosine(distances, self.num_bits)
        queries = torch.as_tensor(np.asarray(query_embeddings), dtype=torch.float32)
        corpus = torch.from_numpy(self.embeddings)
        out = torch.empty(indices_t.shape, dtype=torch.float32)
        width = max(1, indices_t.shape[1])
        step = max(1, 2**24 // (width * corpus.shape[1]))
        for start in range(0, len(queries), step):
            rows = indices_t[start : start + step]
            gathered = corpus[rows.flatten()].float().view(*rows.shape, -1)
            out[start : start + step] = torch.einsum("qd,qpd->qp", queries[start : start + step], gathered)
        return out

    def search(
        self,
        query_embeddings: ArrayLike,
        k: int,
        pool_size: int | None = None,
        query_chunk_size: int = 4096,
        show_progress_bar: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` corpus ids per query: Hamming pool, then exact rescoring when embeddings are stored.

        Returns ``(scores, indices)``, float32 and int64 of shape ``(n_queries, k)``, best first, ties by
        ascending corpus index.
        """
        if len(self) == 0:
            raise ValueError("The index is empty: add() corpus embeddings before searching.")
        if not 1 <= k <= len(self):
            raise ValueError(f"k must be between 1 and the corpus size ({len(self)}), got k={k}.")
        pool = self.pool_size(k) if pool_size is None else min(max(k, int(pool_size)), len(self))
        query_codes = self.hash_queries(query_embeddings)
        distances, indices = hamming_topk(
            query_codes, self.codes, pool, backend=self.backend, device=self.device,
            query_chunk_size=query_chunk_size, show_progress_bar=show_progress_bar,
        )
        scores = self.rescore(query_embeddings, indices, distances=distances)
        scores, idx = sort_candidates(scores, torch.from_numpy(indices))
        return scores[:, :k].numpy(), idx[:, :k].numpy()


def _pairwise_hamming(query_codes: np.ndarray, corpus_codes: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Hamming distance between query ``i`` and each corpus id in ``indices[i]``, in bounded chunks."""
    out = np.empty(indices.shape, dtype=np.int32)
    step = max(1, 2**24 // max(1, indices.shape[1] * query_codes.shape[1]))
    for start in range(0, len(indices), step):
        rows = indices[start : start + step]
        xor = query_codes[start : start + step, None, :] ^ corpus_codes[rows]
        out[start : start + step] = np.bitwise_count(xor).sum(axis=-1, dtype=np.int32)
    return out
