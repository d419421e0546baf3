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
import logging
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, markdown_table, write_report  # noqa: E402

from st_lsh.benchmark import run_search_benchmark  # noqa: E402

DIM = 384


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

    # The measurements are st_lsh.benchmark's (the code behind `st-lsh bench`); this script adds the report.
    rows = run_search_benchmark(
        sizes=args.sizes, codes_only_sizes=args.codes_only_sizes, n_queries=args.queries, k=args.k,
        bits_list=args.bits, repeats=args.repeats, device=args.device,
    )
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
