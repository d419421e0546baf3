"""Exact Hamming top-k search over packed binary codes, and the one running top-k merge.

Every backend returns the same distances and the same tie order (ascending distance, then ascending corpus
index), so the backend changes speed only, never results:

- ``"numba"``: :mod:`st_lsh.kernels`, a blocked, multi-threaded popcount scan compiled for the host CPU (AVX2 /
  AVX-512 / NEON where the CPU has them); the CPU default when numba is installed.
- ``"faiss"``: faiss' ``IndexBinaryFlat``.
- ``"torch"``: codes unpacked to +-1 and compared by matrix product (``dot = bits - 2 * hamming``), in half
  precision on CUDA where tensor cores make it the fastest path; the default on GPU.
- ``"numpy"``: XOR plus ``np.bitwise_count``; the dependency-free fallback.

One backend is approximate, and only used when asked for: ``"faiss-ivf"``, faiss' ``IndexBinaryIVF`` (the codes
clustered into ``sqrt(n)``-ish lists, ``nprobe`` of them scanned per query). It is sub-linear in the corpus, for
query sets so large that even the fastest exact scan dominates (e.g. refreshing 500k training queries against
tens of millions of texts at every epoch); its recall against the exact scan on the same codes is measured in
``eval/results/bench_search_cpu.md``.

``num_words`` restricts a scan to the first ``64 * num_words`` bits of each code (the prefix stage of the
search cascade: the first bits of an orthonormal LSH code are themselves an LSH code); :func:`hamming_rerank`
then orders a candidate list by the full-length distance.

:class:`RunningTopK` is the single running top-k merge that every chunked search uses (Hamming, exact float,
the evaluators), so that all of them break ties the same way.

Example::

    >>> import numpy as np
    >>> from st_lsh import hamming_topk
    >>> rng = np.random.default_rng(0)
    >>> corpus_codes = rng.integers(0, 256, size=(10_000, 32), dtype=np.uint8)   # 256-bit codes
    >>> query_codes = corpus_codes[:5]
    >>> distances, indices = hamming_topk(query_codes, corpus_codes, k=10)
    >>> indices[:, 0], distances[:, 0]
    (array([0, 1, 2, 3, 4]), array([0, 0, 0, 0, 0], dtype=int32))
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from tqdm.auto import tqdm

from .hashing import unpack_bits
from .rules import Backend


FAISS_QUERY_BATCH = 1024


class HammingNeighbours(NamedTuple):
    """Hamming top-k per query: int32 ``distances`` and int64 ``indices``, shape ``(n_queries, k)``, sorted by
    (distance, index)."""

    distances: np.ndarray
    indices: np.ndarray


class RunningTopK:
    """The k best (value, index) pairs per row over chunks of candidates; ties go to the lower index.

    Args:
        k: How many to keep per row.
        largest: True keeps the largest values (similarities), False the smallest (distances).

    Example::

        >>> import torch
        >>> top = RunningTopK(k=2, largest=True)
        >>> top.add(torch.tensor([[0.5, 0.75]]), torch.tensor([[0, 1]]))
        >>> top.add(torch.tensor([[0.75, 0.25]]), torch.tensor([[7, 8]]))
        >>> top.values.tolist(), top.indices.tolist()
        ([[0.75, 0.75]], [[1, 7]])
    """

    def __init__(self, k: int, largest: bool) -> None:
        self.k, self.largest = k, largest
        self.values: torch.Tensor | None = None
        self.indices: torch.Tensor | None = None

    def add(self, values: torch.Tensor, indices: torch.Tensor) -> None:
        indices = indices.to(torch.long).expand_as(values)
        if self.values is not None:
            values = torch.cat([self.values, values], dim=1)
            indices = torch.cat([self.indices, indices], dim=1)
        self.values, self.indices = sort_by_value_then_index(values, indices, self.largest)
        self.values, self.indices = self.values[:, : self.k], self.indices[:, : self.k]


def sort_by_value_then_index(
    values: torch.Tensor, indices: torch.Tensor, largest: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sort each row by value (descending if ``largest``), ties by ascending index: the one candidate order."""
    by_index = torch.argsort(indices, dim=1, stable=True)
    values, indices = values.gather(1, by_index), indices.gather(1, by_index)
    by_value = torch.argsort(values, dim=1, descending=largest, stable=True)
    return values.gather(1, by_value), indices.gather(1, by_value)


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def numba_available() -> bool:
    try:
        from . import kernels
    except ImportError:
        return False
    return kernels.available()


def resolve_backend(backend: Backend = "auto", device: str | torch.device | None = None, num_bytes: int = 8) -> str:
    """Pick the search backend: torch on CUDA, else numba, else faiss when installed, else numpy."""
    if backend not in ("auto", "numba", "faiss", "torch", "numpy", "faiss-ivf"):
        raise ValueError("backend must be one of 'auto', 'numba', 'faiss', 'torch', 'numpy', 'faiss-ivf', "
                         f"got {backend!r}.")
    if backend in ("faiss", "faiss-ivf") and not faiss_available():
        raise ValueError("backend='faiss' needs faiss: `pip install faiss-cpu` (or `pip install st-lsh[faiss]`).")
    if backend == "numba" and not numba_available():
        raise ValueError("backend='numba' needs numba: `pip install numba`.")
    if backend != "auto":
        return backend
    device = torch.device(device) if device is not None else None
    if (device is None and torch.cuda.is_available()) or (device is not None and device.type == "cuda"):
        return "torch"
    if num_bytes % 8 == 0 and numba_available():
        return "numba"
    return "faiss" if faiss_available() else "numpy"


def _check_codes(query_codes: np.ndarray, corpus_codes: np.ndarray, k: int) -> None:
    for name, codes in (("query_codes", query_codes), ("corpus_codes", corpus_codes)):
        if not isinstance(codes, np.ndarray) or codes.dtype != np.uint8 or codes.ndim != 2:
            raise ValueError(f"{name} must be a 2-d uint8 numpy array of packed codes.")
        if codes.shape[0] == 0:
            raise ValueError(f"{name} is empty: nothing to search.")
    if query_codes.shape[1] != corpus_codes.shape[1]:
        raise ValueError(
            f"Code lengths differ: queries have {query_codes.shape[1] * 8} bits, the corpus {corpus_codes.shape[1] * 8}."
        )
    if not 1 <= k <= corpus_codes.shape[0]:
        raise ValueError(f"k must be between 1 and the corpus size ({corpus_codes.shape[0]}), got k={k}.")


def _search_faiss(query_codes: np.ndarray, corpus_codes: np.ndarray, k: int, query_chunk_size: int, progress: tqdm):
    import faiss

    index = faiss.IndexBinaryFlat(corpus_codes.shape[1] * 8)
    # faiss scans the whole corpus once per batch of `query_batch_size` queries (32 by default); 1024 queries per
    # scan measured 1.6x faster on 1M 256-bit codes with 2 threads (results are identical).
    index.query_batch_size = FAISS_QUERY_BATCH
    index.add(corpus_codes)
    dists, idxs = [], []
    for start in range(0, len(query_codes), query_chunk_size):
        dist, idx = index.search(query_codes[start : start + query_chunk_size], k)
        # faiss keeps the lowest indices among ties at the boundary; sorting by (distance, index) makes the order
        # within ties match the other backends.
        key = dist.astype(np.int64) * len(corpus_codes) + idx
        order = np.argsort(key, axis=1, kind="stable")
        dists.append(np.take_along_axis(dist, order, axis=1).astype(np.int32))
        idxs.append(np.take_along_axis(idx, order, axis=1).astype(np.int64))
        progress.update(1)
    return np.concatenate(dists), np.concatenate(idxs)


def _search_faiss_ivf(query_codes: np.ndarray, corpus_codes: np.ndarray, k: int, nlist: int | None = None,
                      nprobe: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Approximate top-k with faiss' ``IndexBinaryIVF``: ``nlist`` (default ``sqrt(n)``) lists trained on a seeded
    sample of ``40 * nlist`` codes, ``nprobe`` (default a tenth of the lists) scanned per query. Slots it cannot
    fill get index -1 and distance ``num_bits + 1``. Rows are sorted by (distance, index)."""
    import faiss

    n, num_bits = len(corpus_codes), corpus_codes.shape[1] * 8
    nlist = nlist or max(1, int(round(np.sqrt(n))))
    nprobe = nprobe or max(1, -(-nlist // 10))
    quantizer = faiss.IndexBinaryFlat(num_bits)
    index = faiss.IndexBinaryIVF(quantizer, num_bits, nlist)
    sample = np.random.default_rng(0).choice(n, size=min(n, 40 * nlist), replace=False)
    index.train(corpus_codes[np.sort(sample)])
    index.add(corpus_codes)
    index.nprobe = min(nprobe, nlist)
    dist, idx = index.search(query_codes, k)
    dist = np.where(idx < 0, num_bits + 1, dist).astype(np.int64)
    key = dist * (n + 1) + np.where(idx < 0, n, idx)
    order = np.argsort(key, axis=1, kind="stable")
    return np.take_along_axis(dist, order, 1).astype(np.int32), np.take_along_axis(idx, order, 1).astype(np.int64)


def _numpy_distances(queries: np.ndarray, corpus: np.ndarray) -> np.ndarray:
    """Hamming distances ``(nq, nc)`` as uint16: XOR and popcount word by word to keep memory flat."""
    if queries.shape[1] % 8 == 0:
        queries, corpus = queries.view(np.uint64), corpus.view(np.uint64)
    out = np.zeros((queries.shape[0], corpus.shape[0]), dtype=np.uint16)
    for word in range(queries.shape[1]):
        out += np.bitwise_count(queries[:, word, None] ^ corpus[None, :, word])
    return out


def _signs(codes: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return unpack_bits(codes).to(dtype) * 2 - 1


def _search_chunked(
    query_codes: np.ndarray,
    corpus_codes: np.ndarray,
    k: int,
    backend: str,
    device: torch.device,
    query_chunk_size: int,
    corpus_chunk_size: int,
    progress: tqdm,
):
    n_corpus, num_bits = corpus_codes.shape[0], corpus_codes.shape[1] * 8
    # fp16 holds every integer up to 2048 exactly and tensor cores accumulate in fp32, so +-1 dot products are exact.
    dtype = torch.float16 if device.type == "cuda" and num_bits <= 2048 else torch.float32
    dists, idxs = [], []
    corpus_signs = None
    if backend == "torch" and n_corpus <= corpus_chunk_size:
        corpus_signs = _signs(torch.from_numpy(corpus_codes).to(device), dtype)
    for q_start in range(0, len(query_codes), query_chunk_size):
        q_codes = query_codes[q_start : q_start + query_chunk_size]
        if backend == "torch":
            q_signs = _signs(torch.from_numpy(q_codes).to(device), dtype)
        top = RunningTopK(k, largest=False)
        for c_start in range(0, n_corpus, corpus_chunk_size):
            c_codes = corpus_codes[c_start : c_start + corpus_chunk_size]
            if backend == "torch":
                c_signs = corpus_signs if corpus_signs is not None else _signs(torch.from_numpy(c_codes).to(device), dtype)
                dist = ((num_bits - q_signs @ c_signs.T) / 2).round_().int()
            else:
                dist = torch.from_numpy(_numpy_distances(q_codes, c_codes).astype(np.int32))
            top.add(dist, torch.arange(c_start, c_start + len(c_codes), device=dist.device).unsqueeze(0))
        dists.append(top.values.cpu().numpy())
        idxs.append(top.indices.cpu().numpy())
        progress.update(1)
    return np.concatenate(dists).astype(np.int32), np.concatenate(idxs).astype(np.int64)


def prefix_codes(codes: np.ndarray, num_words: int | None) -> np.ndarray:
    """The first ``64 * num_words`` bits of each code (all of them for None)."""
    if num_words is None or num_words * 8 >= codes.shape[1]:
        return codes
    return np.ascontiguousarray(codes[:, : num_words * 8])


def hamming_topk(
    query_codes: np.ndarray,
    corpus_codes: np.ndarray,
    k: int,
    backend: Backend = "auto",
    device: str | torch.device | None = None,
    query_chunk_size: int = 4096,
    corpus_chunk_size: int | None = None,
    show_progress_bar: bool = False,
    num_words: int | None = None,
) -> HammingNeighbours:
    """Find, for every query code, the ``k`` corpus codes with the smallest Hamming distance.

    Args:
        query_codes: ``(n_queries, num_bytes)`` uint8 packed codes.
        corpus_codes: ``(n_corpus, num_bytes)`` uint8 packed codes of the same length.
        k: Neighbours per query, at most ``n_corpus``.
        backend: ``"auto"``, ``"numba"``, ``"faiss"``, ``"torch"``, ``"numpy"`` (exact), or ``"faiss-ivf"``
            (approximate, sub-linear; see the module docstring).
        device: Device of the torch backend; None picks CUDA when available.
        query_chunk_size: Queries per chunk.
        corpus_chunk_size: Corpus codes per chunk (torch and numpy backends). None keeps the
            ``(query_chunk, corpus_chunk)`` distance block near 2**26 entries on CPU, 2**30 on CUDA.
        show_progress_bar: Show a tqdm bar over query chunks.
        num_words: Compare only the first ``64 * num_words`` bits (the cascade's prefix stage); None: all bits.

    Returns:
        :class:`HammingNeighbours` ``(distances, indices)``: int32 and int64 arrays of shape ``(n_queries, k)``,
        sorted by ascending distance, ties broken by ascending corpus index.
    """
    _check_codes(query_codes, corpus_codes, k)
    if query_chunk_size < 1 or (corpus_chunk_size is not None and corpus_chunk_size < 1):
        raise ValueError("query_chunk_size and corpus_chunk_size must be positive integers.")
    if num_words is not None and (num_words < 1 or query_codes.shape[1] % 8):
        raise ValueError("num_words needs codes whose length is a multiple of 64 bits and num_words >= 1.")
    backend = resolve_backend(backend, device, query_codes.shape[1])
    query_codes = np.ascontiguousarray(query_codes)
    corpus_codes = np.ascontiguousarray(corpus_codes)
    if backend == "numba":
        from . import kernels

        words = None if num_words is None or num_words * 8 >= query_codes.shape[1] else num_words
        return HammingNeighbours(*kernels.hamming_topk(query_codes, corpus_codes, k, num_words=words))
    query_codes, corpus_codes = prefix_codes(query_codes, num_words), prefix_codes(corpus_codes, num_words)
    torch_device = torch.device(device) if device is not None else torch.device(
        "cuda" if torch.cuda.is_available() else "cpu")
    if backend != "torch":
        torch_device = torch.device("cpu")
    if corpus_chunk_size is None:
        budget = 2**30 if torch_device.type == "cuda" else 2**26
        corpus_chunk_size = max(1024, budget // min(query_chunk_size, len(query_codes)))
    n_chunks = -(-len(query_codes) // query_chunk_size)
    if backend == "faiss-ivf":
        return HammingNeighbours(*_search_faiss_ivf(query_codes, corpus_codes, k))
    with tqdm(total=n_chunks, desc=f"Hamming search ({backend})", disable=not show_progress_bar) as progress:
        if backend == "faiss":
            return HammingNeighbours(*_search_faiss(query_codes, corpus_codes, k, query_chunk_size, progress))
        return HammingNeighbours(*_search_chunked(
            query_codes, corpus_codes, k, backend, torch_device, query_chunk_size, corpus_chunk_size, progress
        ))


def pairwise_hamming(query_codes: np.ndarray, corpus_codes: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Hamming distance between query ``i`` and each corpus row in ``indices[i]`` (int32; ``-1`` entries give -1)."""
    indices = np.asarray(indices, dtype=np.int64)
    if query_codes.shape[1] % 8 == 0 and numba_available():
        from . import kernels

        return kernels.pairwise_hamming(np.ascontiguousarray(query_codes), np.ascontiguousarray(corpus_codes),
                                        np.ascontiguousarray(indices))
    out = np.empty(indices.shape, dtype=np.int32)
    step = max(1, 2**24 // max(1, indices.shape[1] * query_codes.shape[1]))
    for start in range(0, len(indices), step):
        rows = indices[start : start + step]
        xor = query_codes[start : start + step, None, :] ^ corpus_codes[np.maximum(rows, 0)]
        out[start : start + step] = np.where(rows < 0, -1, np.bitwise_count(xor).sum(axis=-1, dtype=np.int32))
    return out


def hamming_rerank(
    query_codes: np.ndarray, corpus_codes: np.ndarray, candidates: np.ndarray, k: int
) -> HammingNeighbours:
    """The ``k`` rows of each query's ``candidates`` (valid, distinct corpus ids) nearest by full-length Hamming
    distance, sorted by (distance, index): the second stage of the search cascade."""
    candidates = np.ascontiguousarray(candidates, dtype=np.int64)
    k = min(k, candidates.shape[1])
    if query_codes.shape[1] % 8 == 0 and numba_available():
        from . import kernels

        return HammingNeighbours(*kernels.hamming_rerank(
            np.ascontiguousarray(query_codes), np.ascontiguousarray(corpus_codes), candidates, k))
    distances = torch.from_numpy(pairwise_hamming(query_codes, corpus_codes, candidates))
    values, indices = sort_by_value_then_index(distances, torch.from_numpy(candidates), largest=False)
    return HammingNeighbours(values[:, :k].numpy().astype(np.int32), indices[:, :k].numpy())
