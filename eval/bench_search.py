"""Search-stage benchmark: LSH Hamming top-k against the float32 search that sentence-transformers runs, faiss'
IndexFlatIP and faiss' IndexBinaryFlat, on synthetic normalised vectors.

Every method answers the same queries against the same corpus in one run; the table gives the median wall time
of ``--repeats`` runs, the peak extra memory during the search (RSS sampled every 5 ms), the bytes the index
holds per document, and each method's speed-up over the float32 path *within this run*.

    python eval/bench_search.py                                   # 10k, 100k, 1M vectors; 10M codes; 10k queries
    python eval/bench_search.py --sizes 100000 --codes-only-sizes  # a quick run
"""

from __future__ import annotations

import argparse
import gc
import logging
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import psutil
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, markdown_table, median, write_report  # noqa: E402

from st_lsh import LSHHasher, LSHIndex, exact_topk, hamming_topk  # noqa: E402
from st_lsh.search import faiss_available  # noqa: E402

DIM = 384


class PeakMemory:
    """Peak RSS above the starting RSS while the block runs (sampled in a thread)."""

    def __enter__(self) -> "PeakMemory":
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

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)

    @property
    def extra_mb(self) -> float:
        return (self.peak - self.start) / 2**20


def normalized(n: int, seed: int, chunk: int = 262144) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty((n, DIM), dtype=np.float32)
    for start in range(0, n, chunk):
        block = rng.standard_normal((min(chunk, n - start), DIM), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start : start + len(block)] = block
    return out


def measure(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    times, peaks = [], []
    for _ in range(repeats):
        gc.collect()
        with PeakMemory() as memory:
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        peaks.append(memory.extra_mb)
    return median(times), max(peaks)


def bench_size(n: int, queries: np.ndarray, k: int, bits_list: list[int], repeats: int, device: str) -> list[dict]:
    rows: list[dict] = []
    corpus = normalized(n, seed=1)
    cuda = device.startswith("cuda")

    def add(method: str, fn: Callable[[], object], bytes_per_doc: float, bits: int | str = "") -> None:
        seconds, extra = measure(fn, repeats)
        rows.append({"n": n, "method": method, "bits": bits, "seconds": seconds, "peak_extra_mb": extra,
                     "bytes_per_doc": bytes_per_doc})
        logging.info("n=%s %s %s: %.2fs, +%.0f MB", f"{n:,}", method, bits, seconds, extra)

    if cuda:
        q, c = torch.from_numpy(queries).to(device), torch.from_numpy(corpus).to(device)

        def float_search():
            for s in range(0, len(q), 1024):
                torch.topk(q[s : s + 1024] @ c.T, k, dim=1)
            torch.cuda.synchronize()
    else:
        def float_search():
            exact_topk(queries, corpus, k, query_chunk_size=1024, corpus_chunk_size=len(corpus))
    add("float32 matmul + top-k (sentence-transformers)", float_search, DIM * 4)

    if faiss_available() and not cuda:
        import faiss

        flat = faiss.IndexFlatIP(DIM)
        flat.add(corpus)
        add("faiss IndexFlatIP", lambda: flat.search(queries, k), DIM * 4)
        del flat

    for bits in bits_list:
        hasher = LSHHasher(bits, random_state=0, device=device).fit(corpus[:100_000])
        codes, query_codes = hasher.transform(corpus), hasher.transform(queries)
        if faiss_available() and not cuda:
            import faiss

            binary = faiss.IndexBinaryFlat(bits)
            binary.add(codes)
            add("faiss IndexBinaryFlat (default settings)", lambda: binary.search(query_codes, k), bits / 8, bits)
            del binary
        add("st-lsh hamming_topk", lambda: hamming_topk(query_codes, codes, k, device=device), bits / 8, bits)
        if bits == 256:
            index = LSHIndex(hasher=hasher, store_embeddings="float16").add_codes(codes, corpus)
            add("st-lsh LSHIndex.search, pool 4k rescored (fp16 stored)",
                lambda: index.search(queries, k, pool_size=4 * k), bits / 8 + DIM * 2, bits)
            del index
    del corpus
    return rows


def bench_codes_only(n: int, n_queries: int, k: int, bits: int, repeats: int, device: str) -> list[dict]:
    """10M-scale: random codes (the distribution of hashed random vectors) for the binary methods alone."""
    rng = np.random.default_rng(2)
    codes = rng.integers(0, 256, size=(n, bits // 8), dtype=np.uint8)
    query_codes = rng.integers(0, 256, size=(n_queries, bits // 8), dtype=np.uint8)
    rows = []
    methods: list[tuple[str, Callable[[], object]]] = [
        ("st-lsh hamming_topk", lambda: hamming_topk(query_codes, codes, k, device=device))
    ]
    if faiss_available() and not device.startswith("cuda"):
        import faiss

        binary = faiss.IndexBinaryFlat(bits)
        binary.add(codes)
        methods.insert(0, ("faiss IndexBinaryFlat (default settings)", lambda: binary.search(query_codes, k)))
    for method, fn in methods:
        seconds, extra = measure(fn, repeats)
        rows.append({"n": n, "method": method, "bits": bits, "seconds": seconds, "peak_extra_mb": extra,
                     "bytes_per_doc": bits / 8})
        logging.info("n=%s %s: %.2fs", f"{n:,}", method, seconds)
    return rows


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for method in dict.fromkeys(r["method"] for r in rows):
        for bits in dict.fromkeys(r["bits"] for r in rows if r["method"] == method):
            points = sorted((r["n"], r["seconds"]) for r in rows if r["method"] == method and r["bits"] == bits)
            label = f"{method} {bits}b" if bits != "" else method
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("corpus size")
    ax.set_ylabel("search time (s), median")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--codes-only-sizes", type=int, nargs="*", default=[10_000_000])
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--bits", type=int, nargs="+", default=[128, 256, 512, 1024])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--name", default=None, help="result file stem (default bench_search_<device>)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    queries = normalized(args.queries, seed=0)
    rows: list[dict] = []
    for n in args.sizes:
        rows += bench_size(n, queries, args.k, args.bits, args.repeats, args.device)
    for n in args.codes_only_sizes:
        rows += bench_codes_only(n, args.queries, args.k, 256, args.repeats, args.device)
    for row in rows:
        base = [r for r in rows if r["n"] == row["n"] and r["method"].startswith("float32")]
        row["speedup_vs_float32"] = base[0]["seconds"] / row["seconds"] if base else float("nan")
        binary = [r for r in rows if r["n"] == row["n"] and r["bits"] == row["bits"] and "IndexBinaryFlat" in r["method"]]
        row["speedup_vs_faiss_binary"] = binary[0]["seconds"] / row["seconds"] if binary else float("nan")
    name = args.name or f"bench_search_{args.device.split(':')[0]}"
    headers = ["corpus", "method", "bits", "median s", "peak extra MB", "bytes/doc", "× vs float32", "× vs faiss binary"]
    table = markdown_table(headers, [
        [f"{r['n']:,}", r["method"], r["bits"], r["seconds"], r["peak_extra_mb"], r["bytes_per_doc"],
         r["speedup_vs_float32"], r["speedup_vs_faiss_binary"]] for r in rows
    ])
    body = (f"{args.queries:,} queries, k={args.k}, {DIM}-d normalised Gaussian vectors, device {args.device}, "
            f"median of {args.repeats} runs. The {', '.join(f'{n:,}' for n in args.codes_only_sizes) or 'no'} "
            "codes-only rows use random codes for the binary methods alone (no float matrix fits). 'peak extra MB' "
            "is the RSS high-water mark above the RSS before the search. Ratios are within this run.\n\n"
            + table + f"\n\n![search time]({name}.png)")
    plot(rows, RESULTS / f"{name}.png")
    print(write_report(name, "Search stage: LSH vs float32 vs faiss", body, rows))


if __name__ == "__main__":
    main()
