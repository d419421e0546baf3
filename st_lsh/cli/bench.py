"""``st-lsh bench``: the search-stage benchmark (:func:`st_lsh.benchmark.run_search_benchmark`) on random vectors
or on a model's embeddings of a task, printed as a table and optionally written as JSON.

Example::

    >>> from st_lsh.cli import main
    >>> main(["bench", "--output", "bench.csv"])   # stderr: st-lsh bench: error: --output 'bench.csv': ...
    2
"""

from __future__ import annotations

import argparse

from ..outputs import check_output, write_json
from .options import add_common, num_bits, positive_int
from .report import format_table

DESCRIPTION = (
    "Time LSH Hamming top-k search against the float32 matmul + top-k of sentence-transformers' miner (and faiss "
    "when installed). On random unit vectors of --sizes, or, with --data, on the --model's embeddings of that "
    "task's corpus and --split queries. --output writes the rows as JSON (kept unless --overwrite; written under a "
    "temporary name and renamed when complete)."
)


def add(subparsers) -> None:
    parser = subparsers.add_parser("bench", help="benchmark the miner's search stage", description=DESCRIPTION)
    add_common(parser, split="train", output=None,
               data_help="benchmark on the embeddings of this BEIR / MS MARCO task (default: random vectors)",
               output_help="rows as a .json file")
    group = parser.add_argument_group("benchmark")
    group.add_argument("--sizes", type=positive_int, nargs="+", default=[10_000, 100_000],
                       help="corpus sizes of random vectors (default: %(default)s)")
    group.add_argument("--codes-only-sizes", type=positive_int, nargs="*", default=[],
                       help="corpus sizes of random codes, binary methods only (default: none)")
    group.add_argument("--queries", type=positive_int, default=1_000, help="queries (default: %(default)s)")
    group.add_argument("--k", type=positive_int, default=100, help="neighbours per query (default: %(default)s)")
    group.add_argument("--bits", type=num_bits, nargs="+", default=[256, 512],
                       help="LSH code lengths (default: %(default)s)")
    group.add_argument("--repeats", type=positive_int, default=3, help="runs per method (default: %(default)s)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..benchmark import run_search_benchmark
    from .app import load_model_for

    output = check_output(args.output, suffixes=(".json",), overwrite=args.overwrite) if args.output else None
    corpus = queries = None
    device = args.device or "cpu"
    if args.data is not None:
        from ..encode import encode_texts
        from ..tasks import Task

        task = Task.open(args.data, args.split)
        query_texts = list(task.split(args.split).queries.values())
        model = load_model_for(args)
        corpus = encode_texts(model, task.corpus_texts(), "corpus", batch_size=args.batch_size)
        queries = encode_texts(model, query_texts, "query", batch_size=args.batch_size)
    rows = run_search_benchmark(args.sizes, args.codes_only_sizes, args.queries, args.k, args.bits, args.repeats,
                                device, corpus=corpus, queries=queries)
    if output is not None:
        write_json(output, {"args": {k: v for k, v in vars(args).items() if k != "run"}, "rows": rows})
    print(format_table(
        ["corpus", "method", "bits", "median s", "peak extra MB", "bytes/doc", "x vs float32", "x vs faiss binary"],
        [[f"{r['n']:,}", r["method"], r["bits"], r["seconds"], r["peak_extra_mb"], r["bytes_per_doc"],
          r["speedup_vs_float32"], r["speedup_vs_faiss_binary"]] for r in rows],
    ))
    return 0
