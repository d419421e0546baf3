"""Numba kernels for exact Hamming top-k search over packed binary codes.

Codes are packed bits as produced by ``np.packbits`` (uint8 arrays of shape ``(n, num_bits // 8)``); the kernels
view them as 64-bit words, so ``num_bits`` must be a multiple of 64. Every function returns exact results sorted
by ``(distance, corpus index)``, identical to a brute-force XOR + popcount + lexsort, ties included.

- :func:`hamming_topk`: the ``k`` nearest corpus codes of every query, optionally over a prefix of the code
  (``num_words`` 64-bit words): a 64- or 128-bit prefix makes a cheap first stage that selects a wide pool;
- :func:`hamming_rerank`: full-length distances to given candidates, top-``k`` of each row (the second stage);
- :func:`pairwise_hamming`: distances from each query to given corpus rows.

Design of :func:`hamming_topk` (numbers measured on a 2-core AMD EPYC Zen 4 with AVX-512 VPOPCNTDQ):

- Blocking: the corpus is walked in blocks of about 16 KiB (2048 codes of 64 bits, 256 codes of 512 bits), each
  transposed to word-major order once per chunk of up to 256 queries; query chunks run in parallel (``prange``).
  The chunk reads each block from memory once, and the transposition costs 1/256 of the distance work.
- Vectorized popcount: ``popcount`` is ``llvm.ctpop.i64``; on a word-major block the distance loop of one query is
  ``acc[j] += popcount(q[w] ^ block[w, j])`` over contiguous memory, which LLVM turns into ``vpxorq`` +
  ``vpopcntq`` + ``vpaddq`` on eight codes at a time (words taken four per pass to cut ``acc`` traffic): about
  0.09 ns of CPU per 64-bit word and code, 3-4x less than the row-major loop (a horizontal sum per code) and
  2.2x (512 bits) to 8x (64 bits) less CPU than faiss' generic ``IndexBinaryFlat``.
- Selection: distances are small integers, so each query keeps the exact ``k``-th smallest distance ``t`` seen so
  far in a histogram, updated on every accepted code. A block costs one vectorized ``min(acc) < t`` test and is
  skipped in the common case; otherwise a vectorized pass sets byte flags ``acc < t`` and the set bits of the
  flag words (``tzcnt``) give the few candidates, appended in index order to a buffer of ``max(2k, k + 1024)``
  entries that is compacted (branch-free) to the ``k`` best when full. Index order makes ties free: an equal
  distance at a higher index never enters, and the final sort is a stable counting sort by distance. About
  ``k * (1 + ln(n / k))`` codes are accepted per query, which dominates for pools of thousands on a 64-bit prefix.
- Few queries (fewer than 4 per thread): the corpus is split between threads and their top-``k`` merged.

Numba is optional: without it the module still imports, :func:`available` returns False and callers fall back to
the numpy/faiss backends of :mod:`st_lsh.search`.

Example (a 64-bit prefix selects a pool of 50, the full 256 bits re-rank it)::

    >>> import numpy as np
    >>> from st_lsh import kernels
    >>> rng = np.random.default_rng(0)
    >>> corpus = rng.integers(0, 256, size=(1000, 32), dtype=np.uint8)   # 256-bit codes
    >>> queries = corpus[:3]
    >>> dist, idx = kernels.hamming_topk(queries, corpus, k=5)
    >>> idx[:, 0], dist[:, 0], dist.dtype, idx.dtype
    (array([0, 1, 2]), array([0, 0, 0], dtype=int32), dtype('int32'), dtype('int64'))
    >>> _, pool = kernels.hamming_topk(queries, corpus, k=50, num_words=1)
    >>> redist, reidx = kernels.hamming_rerank(queries, corpus, pool, k=5)
    >>> bool((reidx[:, 0] == idx[:, 0]).all())
    True
    >>> bool((kernels.pairwise_hamming(queries, corpus, idx) == dist).all())
    True
"""

from __future__ import annotations

import functools

import numpy as np

try:  # numba is optional: anything that goes wrong here (missing, broken install) makes `available()` False.
    import numba
    from llvmlite import ir as _ir
    from numba import njit, prange, types
    from numba.core import cgutils
    from numba.extending import intrinsic

    _IMPORT_ERROR: Exception | None = None
except Exception as error:  # noqa: BLE001
    numba = None
    _IMPORT_ERROR = error

__all__ = ["available", "gather_dot", "hamming_rerank", "hamming_topk", "pairwise_hamming"]

# Tunables, read at call time (measured on AMD EPYC Zen 4, 2 threads; see the module docstring).
BLOCK_BYTES = 16 * 1024  # one transposed corpus block (num_words * 8 * codes), kept in L1; 8-64 KiB within 15%
MIN_BLOCK_CODES = 256
MAX_BLOCK_CODES = 4096
MAX_QUERY_CHUNK = 256  # queries per pass over the corpus; amortizes the block transposition
BUFFER_BUDGET_BYTES = 32 << 20  # candidate buffers of one query chunk (each query holds max(2k, k + 1024) entries)
MIN_RANGE_CODES = 16384  # smallest corpus share per thread when few queries split the corpus instead
# Compile-time constant (numba freezes globals): prefetch the corpus row this many candidates ahead in the rerank and
# pairwise kernels, whose row reads are random.
PREFETCH_AHEAD = 8


def available() -> bool:
    """True when numba is importable and a small kernel compiles and runs (the result is cached)."""
    return _self_test()


@functools.lru_cache(maxsize=1)
def _self_test() -> bool:
    global _IMPORT_ERROR
    if numba is None:
        return False
    try:
        words = np.array([0, 1, 3, 2**64 - 1], dtype=np.uint64)
        return _popcount_sum(words) == 0 + 1 + 2 + 64
    except Exception as error:  # noqa: BLE001
        _IMPORT_ERROR = error
        return False


def _require_numba() -> None:
    if not available():
        raise RuntimeError(
            "st_lsh.kernels needs a working numba (`pip install numba`); "
            f"error: {_IMPORT_ERROR!r}. Use st_lsh.search.hamming_topk(backend='numpy' or 'faiss') instead."
        )


def _dynamic_schedule(chunksize: int):
    """``numba.parallel_chunksize``: ``prange`` iterations handed out dynamically in chunks of this size."""
    return numba.parallel_chunksize(chunksize)


def _as_words(name: str, codes: np.ndarray) -> np.ndarray:
    """``(n, B)`` uint8 C-contiguous packed codes -> ``(n, B // 8)`` uint64 view (an aligned copy if needed)."""
    if not isinstance(codes, np.ndarray):
        raise ValueError(f"{name} must be a numpy array, got {type(codes).__name__}.")
    if codes.dtype != np.uint8:
        raise ValueError(f"{name} must have dtype uint8 (packed bits), got {codes.dtype}.")
    if codes.ndim != 2:
        raise ValueError(f"{name} must be 2-d (n, num_bytes), got shape {codes.shape}.")
    if codes.shape[1] == 0 or codes.shape[1] % 8 != 0:
        raise ValueError(
            f"{name} has {codes.shape[1]} bytes per code; the numba kernels need a positive multiple of 8 bytes "
            "(64-bit words). Use st_lsh.search.hamming_topk for other code lengths."
        )
    if not codes.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous; pass np.ascontiguousarray({name}).")
    words = codes.view(np.uint64)
    if not words.flags.aligned:
        words = codes.copy().view(np.uint64)
    return _read_only(words)


def _read_only(array: np.ndarray) -> np.ndarray:
    """A read-only view: writable and read-only (e.g. memory-mapped) inputs then share one compiled specialisation."""
    view = array.view()
    view.flags.writeable = False
    return view


def _check_pair(query_codes: np.ndarray, corpus_codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    queries = _as_words("query_codes", query_codes)
    corpus = _as_words("corpus_codes", corpus_codes)
    if queries.shape[1] != corpus.shape[1]:
        raise ValueError(
            f"Code lengths differ: queries have {queries.shape[1] * 64} bits, the corpus {corpus.shape[1] * 64}."
        )
    return queries, corpus


def _check_indices(name: str, indices: np.ndarray, n_queries: int) -> np.ndarray:
    indices = np.asarray(indices)
    if indices.ndim != 2 or indices.shape[0] != n_queries:
        raise ValueError(f"{name} must have shape (n_queries={n_queries}, m), got {indices.shape}.")
    if not np.issubdtype(indices.dtype, np.integer):
        raise ValueError(f"{name} must hold integer corpus ids, got dtype {indices.dtype}.")
    return _read_only(np.ascontiguousarray(indices, dtype=np.int64))


def hamming_topk(
    query_codes: np.ndarray,
    corpus_codes: np.ndarray,
    k: int,
    num_words: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` corpus codes of every query by (Hamming distance, corpus index).

    Args:
        query_codes: ``(n_queries, num_bytes)`` uint8 C-contiguous packed codes, ``num_bytes % 8 == 0``.
        corpus_codes: ``(n_corpus, num_bytes)`` uint8 C-contiguous packed codes of the same length.
        k: Neighbours per query, ``1 <= k <= n_corpus``.
        num_words: Compare only the first ``num_words`` 64-bit words (the first ``64 * num_words`` bits) of each
            code; None compares whole codes. A 1- or 2-word prefix makes a fast first stage for
            :func:`hamming_rerank`.

    Returns:
        ``(distances, indices)``: int32 and int64 arrays of shape ``(n_queries, k)``, sorted by ascending distance,
        ties broken by ascending corpus index.
    """
    _require_numba()
    queries, corpus = _check_pair(query_codes, corpus_codes)
    n_queries, n_corpus = queries.shape[0], corpus.shape[0]
    total_words = corpus.shape[1]
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or not 1 <= k <= n_corpus:
        raise ValueError(f"k must be an integer between 1 and the corpus size ({n_corpus}), got k={k!r}.")
    if num_words is None:
        num_words = total_words
    if isinstance(num_words, (bool, np.bool_)) or not isinstance(num_words, (int, np.integer)):
        raise ValueError(f"num_words must be an integer or None, got {num_words!r}.")
    if not 1 <= num_words <= total_words:
        raise ValueError(f"num_words must be between 1 and the code length in words ({total_words}), got {num_words}.")
    k, num_words = int(k), int(num_words)
    out_dist = np.empty((n_queries, k), dtype=np.int32)
    out_idx = np.empty((n_queries, k), dtype=np.int64)
    if n_queries == 0:
        return out_dist, out_idx

    threads = numba.get_num_threads()
    block = int(min(MAX_BLOCK_CODES, max(MIN_BLOCK_CODES, BLOCK_BYTES // (8 * num_words)))) // 64 * 64
    # Few queries: split the corpus into ranges so every thread works, then merge the per-range top-k.
    n_ranges = 1
    if n_queries < 4 * threads:
        n_ranges = int(max(1, min(threads, n_corpus // MIN_RANGE_CODES)))
    range_size = -(-n_corpus // n_ranges)
    capacity = int(min(max(2 * k, k + 1024), range_size))
    per_query = 12 * capacity
    query_chunk = int(max(1, min(MAX_QUERY_CHUNK, BUFFER_BUDGET_BYTES // per_query)))
    n_chunks = -(-n_queries // query_chunk)
    if n_ranges == 1:  # at least 4 chunks per thread when chunks keep >= 64 queries, for balance
        n_chunks = max(n_chunks, min(4 * threads, -(-n_queries // 64)))
        n_chunks = min(n_queries, -(-n_chunks // threads) * threads)
    query_chunk = -(-n_queries // n_chunks)
    if n_ranges > 1:
        stage_dist = np.empty((n_ranges, n_queries, k), dtype=np.int32)
        stage_idx = np.empty((n_ranges, n_queries, k), dtype=np.int64)
        stage_count = np.empty((n_ranges, n_queries), dtype=np.int64)
    else:  # unused placeholders of the same types (one compiled specialisation)
        stage_dist = np.empty((1, 1, 1), dtype=np.int32)
        stage_idx = np.empty((1, 1, 1), dtype=np.int64)
        stage_count = np.empty((1, 1), dtype=np.int64)
    with _dynamic_schedule(1):  # chunks are long: hand them out one at a time, for balance on a busy machine
        _topk_kernel(
            queries,
            corpus,
            np.int64(k),
            np.int64(num_words),
            np.int64(query_chunk),
            np.int64(block),
            np.int64(n_ranges),
            np.int64(capacity),
            out_dist,
            out_idx,
            stage_dist,
            stage_idx,
            stage_count,
        )
    return out_dist, out_idx


def hamming_rerank(
    query_codes: np.ndarray,
    corpus_codes: np.ndarray,
    candidates: np.ndarray,
    k: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` of each query's candidate corpus rows by full-length (Hamming distance, corpus index).

    Args:
        query_codes: ``(n_queries, num_bytes)`` uint8 C-contiguous packed codes, ``num_bytes % 8 == 0``.
        corpus_codes: ``(n_corpus, num_bytes)`` uint8 C-contiguous packed codes.
        candidates: ``(n_queries, m)`` integer corpus ids (all valid, no duplicates within a row), e.g. the
            indices returned by a prefix :func:`hamming_topk`.
        k: Results per query, ``1 <= k <= m``.

    Returns:
        ``(distances, indices)``: int32 and int64 arrays of shape ``(n_queries, k)``, sorted by ascending distance,
        ties broken by ascending corpus index.
    """
    _require_numba()
    queries, corpus = _check_pair(query_codes, corpus_codes)
    candidates = _check_indices("candidates", candidates, queries.shape[0])
    m = candidates.shape[1]
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or not 1 <= k <= m:
        raise ValueError(f"k must be an integer between 1 and the number of candidates per row ({m}), got k={k!r}.")
    if candidates.size and (candidates.min() < 0 or candidates.max() >= corpus.shape[0]):
        raise ValueError(f"candidates must be corpus ids in [0, {corpus.shape[0]}).")
    out_dist = np.empty((queries.shape[0], int(k)), dtype=np.int32)
    out_idx = np.empty((queries.shape[0], int(k)), dtype=np.int64)
    if queries.shape[0]:
        with _dynamic_schedule(16):
            _rerank_kernel(queries, corpus, candidates, np.int64(k), out_dist, out_idx)
    return out_dist, out_idx


def pairwise_hamming(query_codes: np.ndarray, corpus_codes: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Hamming distance from query ``i`` to each corpus row ``indices[i, j]``; entries of -1 give -1.

    Args:
        query_codes: ``(n_queries, num_bytes)`` uint8 C-contiguous packed codes, ``num_bytes % 8 == 0``.
        corpus_codes: ``(n_corpus, num_bytes)`` uint8 C-contiguous packed codes.
        indices: ``(n_queries, m)`` integer corpus ids, or -1 for padding.

    Returns:
        ``(n_queries, m)`` int32 distances (-1 where ``indices`` is -1).
    """
    _require_numba()
    queries, corpus = _check_pair(query_codes, corpus_codes)
    indices = _check_indices("indices", indices, queries.shape[0])
    if indices.size and (indices.min() < -1 or indices.max() >= corpus.shape[0]):
        raise ValueError(f"indices must be corpus ids in [0, {corpus.shape[0]}) or -1.")
    out = np.empty(indices.shape, dtype=np.int32)
    if indices.size:
        with _dynamic_schedule(16):
            _pairwise_kernel(queries, corpus, indices, out)
    return out


def gather_dot(queries: np.ndarray, rows: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Dot product of query ``i`` with each stored row ``indices[i, j]`` (``-inf`` where the index is -1): the
    exact rescoring of candidate pools, read straight from the store (a float32 array or memory map) without
    copying the gathered rows, with the next rows prefetched.

    Args:
        queries: ``(n_queries, dim)`` float32.
        rows: ``(n_rows, dim)`` float32 or float16, C-contiguous (an embedding store, memory-mapped or not);
            float16 rows are widened to float32 in registers (numba has no float16 type: the bits are decoded).
        indices: ``(n_queries, m)`` int64 row ids, or -1 for padding.
    """
    _require_numba()
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if rows.dtype not in (np.float32, np.float16) or rows.ndim != 2 or not rows.flags.c_contiguous:
        raise ValueError("rows must be a C-contiguous 2-d float32 or float16 array.")
    if queries.ndim != 2 or queries.shape[1] != rows.shape[1]:
        raise ValueError(f"queries must have shape (n, {rows.shape[1]}).")
    indices = _check_indices("indices", indices, queries.shape[0])
    if indices.size and (indices.min() < -1 or indices.max() >= rows.shape[0]):
        raise ValueError(f"indices must be row ids in [0, {rows.shape[0]}) or -1.")
    out = np.empty(indices.shape, dtype=np.float32)
    if indices.size:
        with _dynamic_schedule(16):
            if rows.dtype == np.float16:
                _gather_dot_half_kernel(queries, rows.view(np.uint16), indices, out)
            else:
                _gather_dot_kernel(queries, rows, indices, out)
    return out


if numba is not None:

    @intrinsic
    def _popcount(typingctx, x):
        """``llvm.ctpop.i64``: one ``popcnt`` scalar, ``vpopcntq`` once LLVM vectorizes the loop around it."""
        if not isinstance(x, types.Integer) or x.bitwidth != 64:
            return None
        sig = types.uint64(x)

        def codegen(context, builder, signature, args):
            return builder.ctpop(args[0])

        return sig, codegen

    @intrinsic
    def _trailing_zeros(typingctx, x):
        """``llvm.cttz.i64`` (``tzcnt``) of a non-zero word."""
        if not isinstance(x, types.Integer) or x.bitwidth != 64:
            return None
        sig = types.uint64(x)

        def codegen(context, builder, signature, args):
            return builder.cttz(args[0], _ir.Constant(_ir.IntType(1), 1))  # poison on 0: callers never pass 0

        return sig, codegen

    @intrinsic
    def _prefetch_row(typingctx, array, row):
        """``llvm.prefetch`` of ``array[row, 0]`` (read, keep in all cache levels): hides the latency of the random
        row reads of the rerank and pairwise kernels (measured 1.6-2x faster with rows 4-8 candidates ahead)."""
        if not isinstance(array, types.Array) or array.ndim != 2 or not isinstance(row, types.Integer):
            return None
        sig = types.void(array, row)

        def codegen(context, builder, signature, args):
            array_type = signature.args[0]
            array_value = context.make_array(array_type)(context, builder, args[0])
            zero = context.get_constant(types.intp, 0)
            row_value = context.cast(builder, args[1], signature.args[1], types.intp)
            pointer = cgutils.get_item_pointer(
                context, builder, array_type, array_value, [row_value, zero], wraparound=False
            )
            byte_pointer = builder.bitcast(pointer, _ir.IntType(8).as_pointer())
            i32 = _ir.IntType(32)
            fnty = _ir.FunctionType(_ir.VoidType(), [byte_pointer.type, i32, i32, i32])
            fn = builder.module.declare_intrinsic("llvm.prefetch", [byte_pointer.type], fnty)
            builder.call(fn, [byte_pointer, _ir.Constant(i32, 0), _ir.Constant(i32, 3), _ir.Constant(i32, 1)])
            return context.get_dummy_value()

        return sig, codegen

    @njit(cache=True, nogil=True)
    def _popcount_sum(words: np.ndarray) -> int:
        total = 0
        for word in words:
            total += _popcount(word)
        return total

    @njit(cache=True, nogil=True, inline="always")
    def _row_distance(queries, qi, corpus, ci, num_words):
        total = np.int64(0)
        for w in range(num_words):
            total += np.int64(_popcount(queries[qi, w] ^ corpus[ci, w]))
        return total

    @njit(cache=True, nogil=True)
    def _block_distances(queries, qi, block_t, num_words, count, acc):
        """``acc[j] = popcount(queries[qi, :num_words] ^ block_t[:, j])`` for ``j < count``.

        ``block_t`` is word-major, so every loop runs over contiguous words and vectorizes (vpopcntq); words are
        taken four at a time to cut the loads and stores of ``acc``.
        """
        w = 0
        first = True
        while w + 4 <= num_words:
            q0, q1, q2, q3 = queries[qi, w], queries[qi, w + 1], queries[qi, w + 2], queries[qi, w + 3]
            c0, c1, c2, c3 = block_t[w], block_t[w + 1], block_t[w + 2], block_t[w + 3]
            if first:
                for j in range(count):
                    acc[j] = np.int32(
                        _popcount(q0 ^ c0[j]) + _popcount(q1 ^ c1[j]) + _popcount(q2 ^ c2[j]) + _popcount(q3 ^ c3[j])
                    )
                first = False
            else:
                for j in range(count):
                    acc[j] += np.int32(
                        _popcount(q0 ^ c0[j]) + _popcount(q1 ^ c1[j]) + _popcount(q2 ^ c2[j]) + _popcount(q3 ^ c3[j])
                    )
            w += 4
        if w + 2 <= num_words:
            q0, q1 = queries[qi, w], queries[qi, w + 1]
            c0, c1 = block_t[w], block_t[w + 1]
            if first:
                for j in range(count):
                    acc[j] = np.int32(_popcount(q0 ^ c0[j]) + _popcount(q1 ^ c1[j]))
                first = False
            else:
                for j in range(count):
                    acc[j] += np.int32(_popcount(q0 ^ c0[j]) + _popcount(q1 ^ c1[j]))
            w += 2
        if w < num_words:
            q0 = queries[qi, w]
            c0 = block_t[w]
            if first:
                for j in range(count):
                    acc[j] = np.int32(_popcount(q0 ^ c0[j]))
            else:
                for j in range(count):
                    acc[j] += np.int32(_popcount(q0 ^ c0[j]))

    @njit(cache=True, nogil=True, inline="always")
    def _min_below(acc, count, t):
        """``min(acc[:count]) < t`` as one vectorized min-reduction (cheaper than counting, no early exit)."""
        m = acc[0]
        for j in range(count):
            v = acc[j]
            m = v if v < m else m
        return m < t

    @njit(cache=True, nogil=True)
    def _compact(buf_dist, buf_idx, count, k, hist):
        """Keep the ``k`` best of an index-ordered buffer of ``count > k`` entries, in index order (the merge of
        per-range results); the threshold comes from a histogram of the buffer's distances."""
        hist[:] = 0
        for i in range(count):
            hist[buf_dist[i]] += 1
        below = 0
        t = 0
        while below + hist[t] < k:
            below += hist[t]
            t += 1
        _compact_at(buf_dist, buf_idx, count, t, k - below)
        return t

    @njit(cache=True, nogil=True)
    def _emit_sorted(buf_dist, buf_idx, count, hist, out_dist, out_idx):
        """Stable counting sort by distance of an index-ordered buffer: the (distance, index) order."""
        hist[:] = 0
        for i in range(count):
            hist[buf_dist[i]] += 1
        start = 0
        for d in range(hist.shape[0]):
            c = hist[d]
            hist[d] = start
            start += c
        for i in range(count):
            d = buf_dist[i]
            p = hist[d]
            out_dist[p] = d
            out_idx[p] = buf_idx[i]
            hist[d] = p + 1

    @njit(cache=True, nogil=True)
    def _scan(queries, corpus, q_lo, q_hi, c_lo, c_hi, k, num_words, block, capacity, buf_dist, buf_idx, counts):
        """Top-``k`` candidates of queries ``q_lo:q_hi`` over corpus rows ``c_lo:c_hi``, in ascending corpus index.

        Per query, ``t`` is the exact ``k``-th smallest distance seen so far (``max_dist + 1`` until ``k`` codes were
        seen), kept up to date with a histogram of the accepted distances; a code enters the buffer only when its
        distance is ``< t`` (an equal distance at a higher index cannot beat the ``k`` already held). The buffer is
        compacted to ``k`` entries when full and at the end, so on return ``counts[i] == min(k, c_hi - c_lo)``.
        """
        n_q = q_hi - q_lo
        max_dist = 64 * num_words
        thresholds = np.full(n_q, max_dist + 1, dtype=np.int64)
        below = np.zeros(n_q, dtype=np.int64)  # accepted distances < threshold
        hists = np.zeros((n_q, max_dist + 2), dtype=np.int64)
        counts[:n_q] = 0
        block_t = np.empty((num_words, block), dtype=np.uint64)
        acc = np.empty(block, dtype=np.int32)
        flags = np.zeros(block, dtype=np.uint8)
        flag_words = flags.view(np.uint64)
        for b in range(c_lo, c_hi, block):
            count = min(block, c_hi - b)
            _load_block(corpus, b, count, num_words, block_t)
            flags[count:] = 0
            for i in range(n_q):
                _block_distances(queries, q_lo + i, block_t, num_words, count, acc)
                t = thresholds[i]
                if not _min_below(acc, count, t):
                    continue
                t32 = np.int32(t)
                for j in range(count):
                    flags[j] = acc[j] < t32
                hist = hists[i]
                row_dist = buf_dist[i]
                row_idx = buf_idx[i]
                c = counts[i]
                n_below = below[i]
                for fw in range((count + 7) >> 3):
                    bits = flag_words[fw]
                    while bits:
                        j = (fw << 3) + (_trailing_zeros(bits) >> 3)
                        bits &= bits - np.uint64(1)
                        d = acc[j]
                        if d >= t:  # the threshold dropped since the flags were set
                            continue
                        if c == capacity:
                            c = _compact_at(row_dist, row_idx, c, t, k - n_below)
                        row_dist[c] = d
                        row_idx[c] = b + j
                        c += 1
                        hist[d] += 1
                        n_below += 1
                        while n_below >= k:
                            t -= 1
                            n_below -= hist[t]
                counts[i] = c
                below[i] = n_below
                thresholds[i] = t
        for i in range(n_q):
            if counts[i] > k:
                counts[i] = _compact_at(buf_dist[i], buf_idx[i], counts[i], thresholds[i], k - below[i])

    @njit(cache=True, nogil=True, inline="always")
    def _load_block(corpus, start, count, num_words, block_t):
        """Transpose corpus rows ``start:start + count`` (first ``num_words`` words) into word-major ``block_t``."""
        for j in range(count):
            for w in range(num_words):
                block_t[w, j] = corpus[start + j, w]

    @njit(cache=True, nogil=True)
    def _compact_at(buf_dist, buf_idx, count, t, need_at_t):
        """Keep, in order, the entries with distance ``< t`` and the first ``need_at_t`` with distance ``t``.

        Branch-free (kept and dropped entries interleave unpredictably): 1.2-1.5x faster than the branchy loop.
        """
        out = 0
        for i in range(count):
            d = buf_dist[i]
            at_t = np.int64(d == t)
            keep = np.int64(d < t) | (at_t & np.int64(need_at_t > 0))
            buf_dist[out] = d
            buf_idx[out] = buf_idx[i]
            out += keep
            need_at_t -= at_t & keep
        return out

    @njit(cache=True, nogil=True, parallel=True)
    def _topk_kernel(
        queries,
        corpus,
        k,
        num_words,
        query_chunk,
        block,
        n_ranges,
        capacity,
        out_dist,
        out_idx,
        stage_dist,
        stage_idx,
        stage_count,
    ):
        n_queries = queries.shape[0]
        n_corpus = corpus.shape[0]
        n_chunks = (n_queries + query_chunk - 1) // query_chunk
        range_size = (n_corpus + n_ranges - 1) // n_ranges
        max_dist = 64 * num_words
        for item in prange(n_chunks * n_ranges):
            chunk_id = item // n_ranges
            r = item - chunk_id * n_ranges
            q_lo = chunk_id * query_chunk
            q_hi = min(n_queries, q_lo + query_chunk)
            c_lo = r * range_size
            c_hi = min(n_corpus, c_lo + range_size)
            if q_lo >= q_hi:
                continue
            n_q = q_hi - q_lo
            buf_dist = np.empty((n_q, capacity), dtype=np.int32)
            buf_idx = np.empty((n_q, capacity), dtype=np.int64)
            counts = np.zeros(n_q, dtype=np.int64)
            hist = np.zeros(max_dist + 2, dtype=np.int64)
            if c_lo < c_hi:
                _scan(queries, corpus, q_lo, q_hi, c_lo, c_hi, k, num_words, block, capacity, buf_dist, buf_idx, counts)
            for i in range(n_q):
                c = counts[i]
                if n_ranges == 1:
                    _emit_sorted(buf_dist[i], buf_idx[i], c, hist, out_dist[q_lo + i], out_idx[q_lo + i])
                else:
                    stage_count[r, q_lo + i] = c
                    stage_dist[r, q_lo + i, :c] = buf_dist[i, :c]
                    stage_idx[r, q_lo + i, :c] = buf_idx[i, :c]
        if n_ranges > 1:
            for q in prange(n_queries):
                total = 0
                for r in range(n_ranges):
                    total += stage_count[r, q]
                merged_dist = np.empty(total, dtype=np.int32)
                merged_idx = np.empty(total, dtype=np.int64)
                hist = np.zeros(max_dist + 2, dtype=np.int64)
                pos = 0
                for r in range(n_ranges):  # ranges in corpus order: the concatenation stays index-ordered
                    c = stage_count[r, q]
                    merged_dist[pos : pos + c] = stage_dist[r, q, :c]
                    merged_idx[pos : pos + c] = stage_idx[r, q, :c]
                    pos += c
                if total > k:
                    _compact(merged_dist, merged_idx, total, k, hist)
                _emit_sorted(merged_dist, merged_idx, k, hist, out_dist[q], out_idx[q])

    @njit(cache=True, nogil=True)
    def _radix_sort_by_index(sel_dist, sel_idx, tmp_dist, tmp_idx, n, index_bits, digit_counts):
        """Stable LSD radix sort (8-bit digits) of the first ``n`` entries by index; returns the arrays now holding
        the sorted entries (the inputs or the scratch arrays). Faster than a comparison sort for ~1000 keys."""
        src_d, src_i, dst_d, dst_i = sel_dist, sel_idx, tmp_dist, tmp_idx
        shift = 0
        while shift < index_bits:
            digit_counts[:] = 0
            for e in range(n):
                digit_counts[(src_i[e] >> shift) & 255] += 1
            start = 0
            for b in range(256):
                c = digit_counts[b]
                digit_counts[b] = start
                start += c
            for e in range(n):
                b = (src_i[e] >> shift) & 255
                p = digit_counts[b]
                dst_d[p] = src_d[e]
                dst_i[p] = src_i[e]
                digit_counts[b] = p + 1
            src_d, src_i, dst_d, dst_i = dst_d, dst_i, src_d, src_i
            shift += 8
        return src_d, src_i

    @njit(cache=True, nogil=True, parallel=True)
    def _rerank_kernel(queries, corpus, candidates, k, out_dist, out_idx):
        n_queries, m = candidates.shape
        num_words = corpus.shape[1]
        max_dist = 64 * num_words
        index_bits = 1
        while (np.int64(1) << index_bits) < corpus.shape[0]:
            index_bits += 1
        for q in prange(n_queries):
            dist = np.empty(m, dtype=np.int32)
            hist = np.zeros(max_dist + 1, dtype=np.int64)
            for j in range(m):
                if j + PREFETCH_AHEAD < m:
                    _prefetch_row(corpus, candidates[q, j + PREFETCH_AHEAD])
                d = _row_distance(queries, q, corpus, candidates[q, j], num_words)
                dist[j] = d
                hist[d] += 1
            below = 0  # t: the k-th smallest distance, from the histogram
            t = 0
            while below + hist[t] < k:
                below += hist[t]
                t += 1
            n_sel = below + hist[t]
            sel_dist = np.empty(n_sel, dtype=np.int32)
            sel_idx = np.empty(n_sel, dtype=np.int64)
            n = 0
            for j in range(m):
                if dist[j] <= t:
                    sel_dist[n] = dist[j]
                    sel_idx[n] = candidates[q, j]
                    n += 1
            digit_counts = np.empty(256, dtype=np.int64)
            sorted_dist, sorted_idx = _radix_sort_by_index(
                sel_dist,
                sel_idx,
                np.empty(n_sel, dtype=np.int32),
                np.empty(n_sel, dtype=np.int64),
                n_sel,
                index_bits,
                digit_counts,
            )
            # Stable counting sort by distance of the index-ordered selection; entries past k are dropped.
            start = 0
            for d in range(t + 1):
                c = hist[d]
                hist[d] = start
                start += c
            for e in range(n_sel):
                d = sorted_dist[e]
                p = hist[d]
                if p < k:
                    out_dist[q, p] = d
                    out_idx[q, p] = sorted_idx[e]
                hist[d] = p + 1

    @njit(cache=True, nogil=True, parallel=True)
    def _pairwise_kernel(queries, corpus, indices, out):
        n_queries, m = indices.shape
        num_words = corpus.shape[1]
        for q in prange(n_queries):
            for j in range(m):
                if j + PREFETCH_AHEAD < m and indices[q, j + PREFETCH_AHEAD] >= 0:
                    _prefetch_row(corpus, indices[q, j + PREFETCH_AHEAD])
                c = indices[q, j]
                out[q, j] = -1 if c < 0 else _row_distance(queries, q, corpus, c, num_words)

    @njit(cache=True, nogil=True, parallel=True, fastmath={"reassoc", "contract"})
    def _gather_dot_kernel(queries, rows, indices, out):
        n_queries, m = indices.shape
        dim = rows.shape[1]
        for q in prange(n_queries):
            for j in range(m):
                if j + PREFETCH_AHEAD < m and indices[q, j + PREFETCH_AHEAD] >= 0:
                    _prefetch_row(rows, indices[q, j + PREFETCH_AHEAD])
                r = indices[q, j]
                if r < 0:
                    out[q, j] = -np.inf
                    continue
                total = np.float32(0.0)
                for d in range(dim):
                    total += queries[q, d] * rows[r, d]
                out[q, j] = total

    @intrinsic
    def _half_to_float(typingctx, bits):
        """IEEE 754 binary16 bits (uint16) to float32, as LLVM's ``fpext half``: F16C / AVX-512 conversions where
        the CPU has them (vectorized), a software conversion elsewhere."""
        if not isinstance(bits, types.Integer) or bits.bitwidth != 16:
            return None
        sig = types.float32(bits)

        def codegen(context, builder, signature, args):
            return builder.fpext(builder.bitcast(args[0], _ir.HalfType()), _ir.FloatType())

        return sig, codegen

    @njit(cache=True, nogil=True, parallel=True, fastmath={"reassoc", "contract"})
    def _gather_dot_half_kernel(queries, rows, indices, out):
        n_queries, m = indices.shape
        dim = rows.shape[1]
        for q in prange(n_queries):
            for j in range(m):
                if j + PREFETCH_AHEAD < m and indices[q, j + PREFETCH_AHEAD] >= 0:
                    _prefetch_row(rows, indices[q, j + PREFETCH_AHEAD])
                r = indices[q, j]
                if r < 0:
                    out[q, j] = -np.inf
                    continue
                total = np.float32(0.0)
                for d in range(dim):
                    total += queries[q, d] * _half_to_float(rows[r, d])
                out[q, j] = total
