"""Hashing and Hamming search: correctness, determinism, backend agreement, save/load and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from st_lsh import LSHHasher, LSHIndex, exact_topk, hamming_to_cosine, hamming_topk
from st_lsh.hashing import pack_bits, unpack_bits
from st_lsh.search import faiss_available


def normalized(n: int, dim: int = 64, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute_force_hamming(queries: np.ndarray, corpus: np.ndarray) -> np.ndarray:
    return np.unpackbits(queries[:, None, :] ^ corpus[None, :, :], axis=-1).sum(-1)


@pytest.mark.parametrize("num_bits, dim", [(32, 64), (64, 64), (200, 64)])
def test_projection_rows_are_orthonormal_within_blocks(num_bits: int, dim: int) -> None:
    hasher = LSHHasher(num_bits=num_bits, random_state=3, device="cpu").fit(normalized(100, dim))
    projection = hasher.projection_.double()
    assert projection.shape == (num_bits, dim)
    for start in range(0, num_bits, dim):
        block = projection[start : start + dim]
        gram = block @ block.T
        assert torch.allclose(gram, torch.eye(len(block), dtype=torch.float64), atol=1e-5)
    if num_bits > dim:  # stacked blocks are independent draws, not copies
        assert not torch.allclose(projection[:dim], projection[dim : 2 * dim])


def test_centering_balances_bits_on_anisotropic_data() -> None:
    # Real sentence embeddings share a common direction; simulate it with an offset.
    x = normalized(4000, 64) + 0.8 * normalized(1, 64, seed=9)
    balance = {}
    for center in (False, True):
        codes = LSHHasher(num_bits=128, center=center, random_state=0, device="cpu").fit_transform(x)
        ones = np.unpackbits(codes, axis=1).mean(axis=0)
        balance[center] = np.abs(ones - 0.5).mean()
    assert balance[True] < 0.02 < balance[False]


def test_query_centring_follows_the_center_mode() -> None:
    x = normalized(500, 64) + 0.5 * normalized(1, 64, seed=9)
    queries = normalized(20, 64, seed=4)
    plain = LSHHasher(128, center=False, random_state=1, device="cpu").fit(x)
    corpus_only = LSHHasher(128, center="corpus", random_state=1, device="cpu").fit(x)
    both = LSHHasher(128, center="both", random_state=1, device="cpu").fit(x)
    # "corpus": corpus codes centred, query codes not; "both": both centred.
    assert np.array_equal(corpus_only.transform(queries, role="query"), plain.transform(queries))
    assert np.array_equal(corpus_only.transform(x), both.transform(x))
    assert np.array_equal(both.transform(queries, role="query"), both.transform(queries))
    assert not np.array_equal(corpus_only.transform(x), plain.transform(x))
    assert LSHHasher(64, center=True).center == "corpus" and LSHHasher(64, center=False).center == "none"
    with pytest.raises(ValueError, match="center must be"):
        LSHHasher(64, center="queries")


def test_codes_are_packed_signs_and_deterministic() -> None:
    x = normalized(300)
    a = LSHHasher(num_bits=256, random_state=7, device="cpu")
    codes = a.fit_transform(x)
    assert codes.shape == (300, 32) and codes.dtype == np.uint8
    projected = a.project(x)
    assert np.array_equal(np.unpackbits(codes, axis=1).astype(bool), (projected > 0).numpy())
    assert np.array_equal(codes, LSHHasher(num_bits=256, random_state=7, device="cpu").fit_transform(x))
    assert not np.array_equal(codes, LSHHasher(num_bits=256, random_state=8, device="cpu").fit_transform(x))
    # Chunking does not change the codes.
    small_chunks = LSHHasher(num_bits=256, random_state=7, device="cpu", chunk_size=7).fit_transform(x)
    assert np.array_equal(codes, small_chunks)


def test_pack_unpack_roundtrip_matches_numpy() -> None:
    bits = torch.rand(10, 48) > 0.5
    packed = pack_bits(bits)
    assert np.array_equal(packed.numpy(), np.packbits(bits.numpy(), axis=1))
    assert torch.equal(unpack_bits(packed), bits)


def test_hamming_estimates_angle() -> None:
    x = normalized(400, 64, seed=1)
    hasher = LSHHasher(num_bits=1024, center=False, random_state=0, device="cpu")
    codes = hasher.fit_transform(x)
    distances = brute_force_hamming(codes[:50], codes)
    estimate = hamming_to_cosine(distances, 1024).numpy()
    exact = x[:50] @ x.T
    assert np.abs(estimate - exact).mean() < 0.05


def test_save_and_load_roundtrip(tmp_path) -> None:
    x = normalized(200)
    hasher = LSHHasher(num_bits=128, random_state=5, device="cpu").fit(x)
    hasher.save(tmp_path / "hasher.pt")
    loaded = LSHHasher.load(tmp_path / "hasher.pt")
    assert loaded.num_bits == 128 and loaded.random_state == 5 and loaded.center == "corpus"
    assert torch.equal(loaded.center_, hasher.center_)
    assert np.array_equal(loaded.transform(x), hasher.transform(x))


BACKENDS = ["numpy", "torch"] + (["faiss"] if faiss_available() else [])


@pytest.mark.parametrize("num_bytes", [3, 8, 32])
def test_all_backends_agree_with_brute_force_including_ties(num_bytes: int) -> None:
    rng = np.random.default_rng(num_bytes)
    # Few bits and duplicated codes force many ties, the hard case for a deterministic order.
    corpus = rng.integers(0, 256, size=(3000, num_bytes), dtype=np.uint8)
    corpus[1500:] = corpus[:1500]
    queries = rng.integers(0, 256, size=(70, num_bytes), dtype=np.uint8)
    k = 40
    dist = brute_force_hamming(queries, corpus)
    expected = np.lexsort((np.broadcast_to(np.arange(3000), dist.shape), dist), axis=1)[:, :k]
    for backend in BACKENDS:
        d, i = hamming_topk(queries, corpus, k, backend=backend, query_chunk_size=16, corpus_chunk_size=1024)
        assert d.dtype == np.int32 and i.dtype == np.int64
        assert np.array_equal(i, expected), backend
        assert np.array_equal(d, np.take_along_axis(dist, expected, axis=1)), backend


def test_search_rejects_bad_input() -> None:
    corpus = np.zeros((10, 4), dtype=np.uint8)
    with pytest.raises(ValueError, match="k must be between 1 and the corpus size"):
        hamming_topk(corpus[:2], corpus, k=11)
    with pytest.raises(ValueError, match="Code lengths differ"):
        hamming_topk(np.zeros((2, 8), np.uint8), corpus, k=1)
    with pytest.raises(ValueError, match="uint8"):
        hamming_topk(corpus[:2].astype(np.int64), corpus, k=1)
    with pytest.raises(ValueError, match="backend must be one of"):
        hamming_topk(corpus[:2], corpus, k=1, backend="annoy")


@pytest.mark.parametrize("num_bits", [0, -8, 12, 7.5, "64"])
def test_num_bits_must_be_positive_multiple_of_8(num_bits) -> None:
    with pytest.raises(ValueError, match="num_bits must be a positive multiple of 8"):
        LSHHasher(num_bits=num_bits)


def test_nan_zero_and_mismatched_embeddings_are_rejected() -> None:
    x = normalized(20)
    with pytest.raises(ValueError, match="NaN or infinite values in 1 rows"):
        LSHHasher(64, device="cpu").fit(np.vstack([x, np.full((1, 64), np.nan, np.float32)]))
    with pytest.raises(ValueError, match="all-zero rows"):
        LSHIndex(64, device="cpu").add(np.vstack([x, np.zeros((1, 64), np.float32)]))
    hasher = LSHHasher(64, device="cpu").fit(x)
    with pytest.raises(ValueError, match="does not match the hasher's dimension"):
        hasher.transform(normalized(3, 32))
    with pytest.raises(ValueError, match="not fitted"):
        LSHHasher(64).transform(x)


def test_index_with_full_pool_equals_exact_search() -> None:
    corpus, queries = normalized(2000, 64, seed=2), normalized(30, 64, seed=3)
    index = LSHIndex(num_bits=64, random_state=0, device="cpu").add(corpus)
    scores, indices = index.search(queries, k=50, pool_size=len(corpus))
    exact_scores, exact_indices = exact_topk(queries, corpus, k=50, corpus_chunk_size=333)
    assert np.array_equal(indices, exact_indices)
    assert np.allclose(scores, exact_scores, atol=1e-6)


def test_index_without_embeddings_holds_only_codes_and_estimates_scores() -> None:
    corpus = normalized(1000, 64, seed=4)
    # Symmetric hashing (no centring): identical vectors get identical codes, so the estimate is exact for them.
    index = LSHIndex(num_bits=256, center=False, store_embeddings=None, device="cpu").add(corpus)
    assert index.nbytes == 1000 * 256 // 8
    assert index.embeddings is None
    scores, indices = index.search(corpus[:5], k=10)
    assert np.array_equal(indices[:, 0], np.arange(5))
    assert np.allclose(scores[:, 0], 1.0)
    codes = index.codes
    d = brute_force_hamming(index.hash_queries(corpus[:5]), codes)
    assert np.allclose(scores, np.cos(np.pi * np.take_along_axis(d, indices, 1) / 256), atol=1e-6)
    assert math.isclose(float(scores[0, 1]), float(np.sort(np.cos(np.pi * d[0] / 256))[::-1][1]), abs_tol=1e-6)
