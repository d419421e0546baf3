"""Search-stage benchmark behind ``st-lsh bench``: LSH Hamming top-k against the float32 matmul + top-k that
sentence-transformers' ``mine_hard_negatives`` runs, and (when faiss is installed) faiss' ``IndexFlatIP`` and
``IndexBinaryFlat``.

Every method answers the same queries against the same corpus; each row is the median wall time of ``repeats``
runs, the peak extra memory during the search (RSS sampled every 5 ms; needs ``psutil``), the bytes the index
holds per document, and the speed-up over the float32 path measured in the same run.

Example::

    >>> from st_lsh.benchmark import random_unit_vectors, run_search_benchmark
    >>> rows = run_search_benchmark(sizes=[10_000], n_queries=1_000, k=100, bits_list=[256], repeats=1)
    >>> rows[0]["method"], rows[0]["speedup_vs_float32"]
    ('float32 matmul + top-k (sentence-transformers)', 1.0)
"""

from __future__ import annotations

import gc
from dataclasses import replace
import logging
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .hashing import LSHHasher
from .index import LSHIndex, exact_topk
from .rules import LSHSettings, check_num_bits
from .search import faiss_available, hamming_topk

logger = logging.getLogger(__name__)

__all__ = ["PeakMemory", "bench_codes_only", "bench_corpus", "overlap", "random_unit_vectors", "run_search_benchmark"]

Row = dict[str, Any]


class PeakMemory:
    """Peak RSS above the starting RSS while the block runs (sampled in a thread; NaN without psutil)."""

    def __enter__(self) -> PeakMemory:
        try:
            import psutil
        except ImportError:
            self.process = None
            return self
        self.process = psutil.Process()
        self.start = self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.005)

    def __exit__(self, *exc: object) -> None:
        if self.process is None:
            return
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)

    @property
    def extra_mb(self) -> float:
        return float("nan") if self.process is None else (self.peak - self.start) / 2**20


def random_unit_vectors(n: int, dim: int = 384, seed: int = 0, chunk: int = 262_144) -> np.ndarray:
    """``n`` L2-normalised Gaussian vectors (float32), generated in chunks."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, chunk):
        block = rng.standard_normal((min(chunk, n - start), dim), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start : start + len(block)] = block
    return out


def measure(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median seconds and maximum peak extra MB of ``repeats`` calls of ``fn``."""
    times, peaks = [], []
    for _ in range(repeats):
        gc.collect()
        with PeakMemory() as memory:
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        peaks.append(memory.extra_mb)
    return float(statistics.median(times)), max(peaks)


def overlap(found: np.ndarray, exact: np.ndarray) -> float:
    """Mean share of each exact top-k row that ``found`` also returns."""
    return float(np.mean([len(set(a.tolist()) & set(b.tolist())) / len(b) for a, b in zip(found, exact)]))


def bench_corpus(
    corpus: np.ndarray, queries: np.ndarray, k: int, bits_list: Sequence[int], repeats: int, device: str = "cpu",
    settings: LSHSettings | None = None,
) -> list[Row]:
    """Time every method on one corpus of float embeddings; the shipped defaults (``settings``) also report their
    overlap with the exact top-k."""
    n, dim = corpus.shape
    k = min(k, n)
    rows: list[Row] = []
    cuda = device.startswith("cuda")
    exact: dict[str, np.ndarray] = {}

    def add(method: str, fn: Callable[[], object], bytes_per_doc: float, bits: int | str = "",
            build_s: float = float("nan"), found: Callable[[], np.ndarray] | None = None) -> None:
        seconds, extra = measure(fn, repeats)
        row = {"n": n, "method": method, "bits": bits, "seconds": seconds, "peak_extra_mb": extra,
               "bytes_per_doc": bytes_per_doc, "build_s": build_s, "overlap": float("nan")}
        if found is not None and "indices" in exact:
            row["overlap"] = overlap(found(), exact["indices"])
        rows.append(row)
        logger.info("n=%s %s %s: %.3fs, +%.0f MB, overlap %.3f", f"{n:,}", method, bits, seconds, extra,
                    row["overlap"])

    if cuda:
        q, c = torch.from_numpy(queries).to(device), torch.from_numpy(corpus).to(device)

        def float_search() -> None:
            for s in range(0, len(q), 1024):
                torch.topk(q[s : s + 1024] @ c.T, k, dim=1)
            torch.cuda.synchronize()
    else:
        def float_search() -> None:
            exact["indices"] = exact_topk(queries, corpus, k, query_chunk_size=1024,
                                          corpus_chunk_size=len(corpus)).indices
    add("float32 matmul + top-k (sentence-transformers)", float_search, dim * 4)
    if "indices" not in exact:
        exact["indices"] = exact_topk(queries, corpus, k).indices

    if faiss_available() and not cuda:
        import faiss

        flat = faiss.IndexFlatIP(dim)
        flat.add(corpus)
        add("faiss IndexFlatIP", lambda: flat.search(queries, k), dim * 4)
        del flat

    for bits in bits_list:
        hasher = LSHHasher(bits, random_state=0, device=device).fit(corpus)
        codes, query_codes = hasher.transform(corpus), hasher.transform(queries, role="query")
        if faiss_available() and not cuda:
            import faiss

            binary = faiss.IndexBinaryFlat(bits)
            binary.add(codes)
            add("faiss IndexBinaryFlat (default settings)", lambda: binary.search(query_codes, k), bits / 8, bits)
            del binary
        add("st-lsh hamming_topk", lambda: hamming_topk(query_codes, codes, k, device=device), bits / 8, bits)

    settings = settings or LSHSettings()
    variants = [("st-lsh defaults", settings)]
    if settings.prefix_bits is not None:
        variants.append(("st-lsh defaults without the prefix stage", replace(settings, prefix_bits=None)))
    for label, variant in variants:
        start = time.perf_counter()
        index = LSHIndex(settings=variant, device=device).fit(corpus)
        build = time.perf_counter() - start
        pool = variant.pool_size(k, n)
        prefix = f"{variant.prefix_bits}-bit prefix x{variant.prefix_factor:g}, " if variant.prefix_bits else ""
        add(f"{label} ({prefix}pool {pool}, {variant.store} rescoring)", lambda index=index: index.search(queries, k),
            variant.num_bits / 8 + (dim * 4 if variant.store == "float32" else dim * 2 if variant.store == "float16"
                                    else 0), variant.num_bits, build, found=lambda index=index: index.search(
                                        queries, k).indices)
        index.close()
    return rows


def bench_codes_only(n: int, n_queries: int, k: int, bits: int, repeats: int, device: str = "cpu") -> list[Row]:
    """Corpus sizes where no float matrix fits: random codes, for the binary methods alone."""
    rng = np.random.default_rng(2)
    codes = rng.integers(0, 256, size=(n, bits // 8), dtype=np.uint8)
    query_codes = rng.integers(0, 256, size=(n_queries, bits // 8), dtype=np.uint8)
    methods: list[tuple[str, Callable[[], object]]] = [
        ("st-lsh hamming_topk", lambda: hamming_topk(query_codes, codes, k, device=device))
    ]
    if faiss_available() and not device.startswith("cuda"):
        import faiss

        binary = faiss.IndexBinaryFlat(bits)
        binary.add(codes)
        methods.insert(0, ("faiss IndexBinaryFlat (default settings)", lambda: binary.search(query_codes, k)))
    rows = []
    for method, fn in methods:
        seconds, extra = measure(fn, repeats)
        rows.append({"n": n, "method": method, "bits": bits, "seconds": seconds, "peak_extra_mb": extra,
                     "bytes_per_doc": bits / 8})
        logger.info("n=%s %s: %.3fs", f"{n:,}", method, seconds)
    return rows


def add_speedups(rows: list[Row]) -> list[Row]:
    """Add ``speedup_vs_float32`` and ``speedup_vs_faiss_binary`` (same corpus size, same run) to every row."""
    for row in rows:
        base = [r for r in rows if r["n"] == row["n"] and r["method"].startswith("float32")]
        row["speedup_vs_float32"] = base[0]["seconds"] / row["seconds"] if base else float("nan")
        binary = [r for r in rows
                  if r["n"] == row["n"] and r["bits"] == row["bits"] and "IndexBinaryFlat" in r["method"]]
        row["speedup_vs_faiss_binary"] = binary[0]["seconds"] / row["seconds"] if binary else float("nan")
    return rows


def run_search_benchmark(
    sizes: Sequence[int] = (10_000, 100_000),
    codes_only_sizes: Sequence[int] = (),
    n_queries: int = 1_000,
    k: int = 100,
    bits_list: Sequence[int] = (256, 512),
    repeats: int = 3,
    device: str = "cpu",
    corpus: np.ndarray | None = None,
    queries: np.ndarray | None = None,
    codes_only_bits: int = 256,
) -> list[Row]:
    """Run the search benchmark and return one row per (corpus size, method, bits).

    With ``corpus`` / ``queries`` (e.g. real embeddings), ``sizes`` are ignored and that corpus is benchmarked;
    otherwise each size gets random unit vectors. ``codes_only_sizes`` add random-code rows for the binary methods.
    """
    bits_list = [check_num_bits(b) for b in bits_list]
    for name, value in (("n_queries", n_queries), ("k", k), ("repeats", repeats)):
        if value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value}")
    if any(n < 1 for n in [*sizes, *codes_only_sizes]):
        raise ValueError(f"corpus sizes must be positive, got {list(sizes) + list(codes_only_sizes)}")
    rows: list[Row] = []
    if corpus is not None:
        if queries is None:
            raise ValueError("queries are required with a corpus")
        jobs: list[tuple[str, Any]] = [("corpus", None)]
    else:
        queries = random_unit_vectors(n_queries, seed=0)
        jobs = [("size", n) for n in sizes]
    jobs += [("codes", n) for n in codes_only_sizes]
    for kind, n in tqdm(jobs, desc="Benchmark", unit="corpus"):
        if kind == "corpus":
            rows += bench_corpus(corpus, queries, k, bits_list, repeats, device)
        elif kind == "size":
            rows += bench_corpus(random_unit_vectors(n, dim=queries.shape[1], seed=1), queries, k, bits_list,
                                 repeats, device)
        else:
            rows += bench_codes_only(n, len(queries), k, check_num_bits(codes_only_bits), repeats, device)
    return add_speedups(rows)
