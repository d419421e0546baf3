"""Numba Hamming kernels (st_lsh.kernels) against a brute-force numpy reference, ties included."""

from __future__ import annotations

import doctest
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

KERNELS_PATH = Path(__file__).resolve().parents[1] / "st_lsh" / "kernels.py"
BITS = [64, 128, 192, 256, 512, 1024]


def reference_distances(queries: np.ndarray, corpus: np.ndarray, num_words: int | None = None) -> np.ndarray:
    """``(nq, nc)`` Hamming distances by XOR + popcount over the first ``num_words`` 64-bit words."""
    q, c = queries.view(np.uint64), corpus.view(np.uint64)
    if num_words is not None:
        q, c = q[:, :num_words], c[:, :num_words]
    return np.bitwise_count(q[:, None, :] ^ c[None, :, :]).sum(axis=-1, dtype=np.int64)


def reference_topk(queries, corpus, k, num_words=None):
    dist = reference_distances(queries, corpus, num_words)
    index = np.broadcast_to(np.arange(corpus.shape[0]), dist.shape)
    order = np.lexsort((index, dist), axis=-1)[:, :k]  # by distance, then index
    return np.take_along_axis(dist, order, axis=1).astype(np.int32), order.astype(np.int64)


def reference_rerank(queries, corpus, candidates, k):
    dist = np.take_along_axis(reference_distances(queries, corpus), candidates, axis=1)
    order = np.lexsort((candidates, dist), axis=-1)[:, :k]
    return np.take_along_axis(dist, order, axis=1).astype(np.int32), np.take_along_axis(candidates, order, axis=1)


def random_codes(rng, n, bits):
    return rng.integers(0, 256, size=(n, bits // 8), dtype=np.uint8)


def tied_codes(rng, n, bits, distinct=4):
    """Codes drawn from a handful of distinct values: most distances tie."""
    return random_codes(rng, distinct, bits)[rng.integers(0, distinct, n)]


def assert_topk(queries, corpus, k, num_words=None):
    from st_lsh import kernels

    dist, idx = kernels.hamming_topk(queries, corpus, k, num_words=num_words)
    ref_dist, ref_idx = reference_topk(queries, corpus, k, num_words)
    assert dist.dtype == np.int32 and idx.dtype == np.int64
    assert dist.shape == idx.shape == (queries.shape[0], k)
    np.testing.assert_array_equal(dist, ref_dist)
    np.testing.assert_array_equal(idx, ref_idx)


# ---- module without numba ---------------------------------------------------------------------------------------


def test_module_imports_without_numba_and_reports_unavailable() -> None:
    """Load kernels.py in a fresh interpreter where `import numba` fails: it imports, `available()` is False and the
    kernels raise a RuntimeError that names numba."""
    code = f"""
import importlib.util, sys
sys.modules["numba"] = None  # makes `import numba` raise ImportError
spec = importlib.util.spec_from_file_location("kernels_without_numba", {str(KERNELS_PATH)!r})
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
assert module.available() is False
import numpy as np
try:
    module.hamming_topk(np.zeros((1, 8), np.uint8), np.zeros((2, 8), np.uint8), 1)
except RuntimeError as error:
    assert "numba" in str(error)
else:
    raise AssertionError("expected RuntimeError")
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


# ---- numba kernels ----------------------------------------------------------------------------------------------


@pytest.fixture
def kernels():
    """st_lsh.kernels, skipping the test where numba is missing (or installed but broken)."""
    pytest.importorskip("numba")
    from st_lsh import kernels

    if not kernels.available():
        pytest.skip("numba is installed but does not work")
    return kernels


def test_docstring_example(kernels) -> None:
    results = doctest.testmod(kernels, verbose=False)
    assert results.attempted > 0 and results.failed == 0


@pytest.mark.parametrize("bits", BITS)
def test_topk_matches_brute_force(kernels, bits: int) -> None:
    rng = np.random.default_rng(bits)
    corpus = random_codes(rng, 2500, bits)  # > capacity (k + 1024) for small k: exercises buffer compaction
    queries = np.concatenate([corpus[[3, 1700]], random_codes(rng, 14, bits)])  # exact matches and random
    for k in (1, 7, 100):
        assert_topk(queries, corpus, k)


@pytest.mark.parametrize("bits", BITS)
def test_topk_with_heavy_ties(kernels, bits: int) -> None:
    rng = np.random.default_rng(100 + bits)
    corpus = tied_codes(rng, 1500, bits, distinct=3)
    queries = np.concatenate([tied_codes(rng, 6, bits, distinct=3), random_codes(rng, 6, bits)])
    for k in (1, 5, 600, 1500):
        assert_topk(queries, corpus, k)


@pytest.mark.parametrize("bits", [64, 256, 1024])
def test_topk_all_equal_codes_keeps_lowest_indices(kernels, bits: int) -> None:
    rng = np.random.default_rng(7)
    corpus = np.repeat(random_codes(rng, 1, bits), 1200, axis=0)
    queries = np.concatenate([corpus[:1], random_codes(rng, 9, bits)])
    dist, idx = kernels.hamming_topk(queries, corpus, 50)
    np.testing.assert_array_equal(idx, np.broadcast_to(np.arange(50), (10, 50)))
    assert (dist[0] == 0).all()
    assert_topk(queries, corpus, 1200)


@pytest.mark.parametrize("bits", [64, 512])
def test_topk_k_equals_corpus_size_and_single_query(kernels, bits: int) -> None:
    rng = np.random.default_rng(11)
    corpus = random_codes(rng, 300, bits)
    assert_topk(random_codes(rng, 3, bits), corpus, 300)
    assert_topk(random_codes(rng, 1, bits), corpus, 1)
    assert_topk(random_codes(rng, 1, bits), corpus, 300)
    assert_topk(corpus[:1], corpus[:1], 1)  # one-code corpus


@pytest.mark.parametrize("num_words", [1, 2])
def test_topk_on_a_prefix_of_512_bit_codes(kernels, num_words: int) -> None:
    rng = np.random.default_rng(num_words)
    corpus = random_codes(rng, 3000, 512)
    queries = random_codes(rng, 20, 512)
    for k in (1, 40, 1500):  # a short prefix ties a lot: the tie order matters
        assert_topk(queries, corpus, k, num_words=num_words)


def test_topk_few_queries_split_the_corpus(kernels, monkeypatch) -> None:
    """Fewer queries than 4 per thread: the corpus is split into ranges whose top-k are merged."""
    monkeypatch.setattr(kernels, "MIN_RANGE_CODES", 64)
    rng = np.random.default_rng(3)
    for bits in (64, 256):
        corpus = tied_codes(rng, 1000, bits, distinct=5)
        corpus[::3] = random_codes(rng, len(corpus[::3]), bits)
        for n_queries in (1, 3):
            for k in (1, 20, 999, 1000):
                assert_topk(random_codes(rng, n_queries, bits), corpus, k)


def test_topk_small_query_chunks_and_blocks(kernels, monkeypatch) -> None:
    """Many query chunks, blocks smaller than the corpus and a partial last block."""
    monkeypatch.setattr(kernels, "MAX_QUERY_CHUNK", 3)
    monkeypatch.setattr(kernels, "MAX_BLOCK_CODES", 256)
    rng = np.random.default_rng(5)
    corpus = random_codes(rng, 1111, 128)
    assert_topk(random_codes(rng, 17, 128), corpus, 13)
    assert_topk(random_codes(rng, 17, 128), corpus, 13, num_words=1)


def test_topk_rejects_bad_input(kernels) -> None:
    rng = np.random.default_rng(0)
    corpus = random_codes(rng, 20, 64)
    with pytest.raises(ValueError, match="multiple of 8"):
        kernels.hamming_topk(random_codes(rng, 2, 48), random_codes(rng, 20, 48), 3)  # 6-byte codes
    with pytest.raises(ValueError, match="uint8"):
        kernels.hamming_topk(corpus.astype(np.int16), corpus, 3)
    with pytest.raises(ValueError, match="C-contiguous"):
        kernels.hamming_topk(random_codes(rng, 2, 128)[:, :8], corpus, 3)
    with pytest.raises(ValueError, match="Code lengths differ"):
        kernels.hamming_topk(random_codes(rng, 2, 128), corpus, 3)
    for k in (0, 21):
        with pytest.raises(ValueError, match="k must be"):
            kernels.hamming_topk(corpus[:2], corpus, k)
    for num_words in (0, 2):
        with pytest.raises(ValueError, match="num_words"):
            kernels.hamming_topk(corpus[:2], corpus, 3, num_words=num_words)


def test_topk_empty_query_set(kernels) -> None:
    corpus = np.zeros((5, 8), np.uint8)
    dist, idx = kernels.hamming_topk(np.zeros((0, 8), np.uint8), corpus, 2)
    assert dist.shape == idx.shape == (0, 2)


@pytest.mark.parametrize("bits", BITS)
def test_rerank_matches_brute_force(kernels, bits: int) -> None:
    rng = np.random.default_rng(200 + bits)
    corpus = np.concatenate([tied_codes(rng, 400, bits, distinct=4), random_codes(rng, 400, bits)])
    queries = np.concatenate([corpus[[0, 500]], random_codes(rng, 6, bits)])
    candidates = np.stack([rng.permutation(len(corpus))[:300] for _ in range(len(queries))])
    for k in (1, 25, 300):
        dist, idx = kernels.hamming_rerank(queries, corpus, candidates, k)
        ref_dist, ref_idx = reference_rerank(queries, corpus, candidates, k)
        assert dist.dtype == np.int32 and idx.dtype == np.int64
        np.testing.assert_array_equal(dist, ref_dist)
        np.testing.assert_array_equal(idx, ref_idx)


def test_prefix_scan_then_rerank_equals_exact_search_when_the_pool_is_everything(kernels) -> None:
    rng = np.random.default_rng(9)
    corpus = random_codes(rng, 700, 512)
    queries = random_codes(rng, 5, 512)
    _, pool = kernels.hamming_topk(queries, corpus, 700, num_words=1)
    dist, idx = kernels.hamming_rerank(queries, corpus, pool, 30)
    ref_dist, ref_idx = reference_topk(queries, corpus, 30)
    np.testing.assert_array_equal(dist, ref_dist)
    np.testing.assert_array_equal(idx, ref_idx)


def test_rerank_rejects_bad_input(kernels) -> None:
    rng = np.random.default_rng(0)
    corpus = random_codes(rng, 10, 64)
    with pytest.raises(ValueError, match="k must be"):
        kernels.hamming_rerank(corpus[:2], corpus, np.zeros((2, 3), np.int64), 4)
    with pytest.raises(ValueError, match="candidates must"):
        kernels.hamming_rerank(corpus[:2], corpus, np.full((2, 3), 10), 2)
    with pytest.raises(ValueError, match="shape"):
        kernels.hamming_rerank(corpus[:2], corpus, np.zeros((3, 3), np.int64), 2)


@pytest.mark.parametrize("bits", BITS)
def test_pairwise_matches_brute_force_with_padding(kernels, bits: int) -> None:
    rng = np.random.default_rng(300 + bits)
    corpus = random_codes(rng, 200, bits)
    queries = random_codes(rng, 7, bits)
    indices = rng.integers(0, 200, size=(7, 40))
    indices[rng.random(indices.shape) < 0.25] = -1
    indices[0] = -1
    out = kernels.pairwise_hamming(queries, corpus, indices)
    full = reference_distances(queries, corpus)
    expected = np.where(indices >= 0, np.take_along_axis(full, np.maximum(indices, 0), axis=1), -1)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, expected)
    with pytest.raises(ValueError, match="indices must"):
        kernels.pairwise_hamming(queries, corpus, np.full((7, 2), -2))


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_gather_dot_matches_numpy_and_reads_memory_maps(kernels, dtype, tmp_path) -> None:
    rng = np.random.default_rng(3)
    rows = rng.standard_normal((500, 48)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    rows = rows.astype(dtype)
    queries = rng.standard_normal((7, 48)).astype(np.float32)
    indices = rng.integers(0, 500, (7, 30))
    indices[2, 5] = indices[6, 0] = -1
    expected = np.einsum("qd,qpd->qp", queries, rows[np.maximum(indices, 0)].astype(np.float32))
    expected[indices < 0] = -np.inf
    np.testing.assert_allclose(kernels.gather_dot(queries, rows, indices), expected, rtol=1e-5, atol=1e-6)
    path = tmp_path / "rows.npy"
    np.save(path, rows)
    mapped = np.load(path, mmap_mode="r")
    np.testing.assert_allclose(kernels.gather_dot(queries, mapped, indices), expected, rtol=1e-5, atol=1e-6)


def test_gather_dot_decodes_every_kind_of_float16_exactly(kernels) -> None:
    bits = np.array([0x0001, 0x8001, 0x03FF, 0x0400, 0x3C00, 0x7BFF, 0x7C00, 0xFC00, 0x0000, 0x3555], np.uint16)
    rows = np.zeros((len(bits), 4), np.uint16)
    rows[:, 0] = bits  # subnormals, normals, the largest finite, +-inf, zero
    out = kernels.gather_dot(np.array([[1, 0, 0, 0]], np.float32), rows.view(np.float16),
                             np.arange(len(bits))[None, :])
    np.testing.assert_array_equal(out[0], bits.view(np.float16).astype(np.float32))


def test_gather_dot_rejects_bad_input(kernels) -> None:
    rows = np.zeros((5, 4), np.float32)
    with pytest.raises(ValueError, match="float32 or float16"):
        kernels.gather_dot(np.zeros((1, 4), np.float32), rows.astype(np.float64), np.zeros((1, 2), np.int64))
    with pytest.raises(ValueError, match="row ids"):
        kernels.gather_dot(np.zeros((1, 4), np.float32), rows, np.array([[5]]))
