"""``st-lsh mine``: :func:`st_lsh.mine_hard_negatives` on a task folder, a pair file or a ``save_to_disk`` folder.

Every input is read and checked before the model loads: the output path, the pairs (columns, texts), the extra
corpus, and the rules (:func:`~st_lsh.cli.options.rules_from_args`, :func:`~st_lsh.cli.options.lsh_from_args`).

Example::

    >>> from st_lsh.cli import main
    >>> main(["mine", "--range-min", "10", "--range-max", "5"])   # stderr: st-lsh mine: error: range_min must ...
    2
"""

from __future__ import annotations

import argparse
import time
from itertools import chain

from ..outputs import DATASET_MARKERS, DATASET_SUFFIXES, check_output, save_dataset
from .options import (
    add_common,
    add_lsh,
    add_negative_rules,
    add_sampling,
    existing_path,
    finite_float,
    lsh_from_args,
    positive_float,
    positive_int,
    rules_from_args,
)
from .report import format_table

DESCRIPTION = (
    "Mine LSH hard negatives for (anchor, positive) pairs, as sentence-transformers' mine_hard_negatives. --data "
    "is a BEIR / MS MARCO folder (pairs from the --split qrels, mined from its whole corpus), a .jsonl/.json/.csv/"
    ".tsv/.parquet file, or a save_to_disk folder. --output ends in .jsonl, .json, .csv or .parquet, or has no "
    "extension (a save_to_disk folder). An existing --output is kept unless --overwrite is given; the output is "
    "written to a temporary name beside it and renamed when complete."
)


def add(subparsers) -> None:
    parser = subparsers.add_parser("mine", help="mine hard negatives for (anchor, positive) pairs",
                                   description=DESCRIPTION)
    add_common(parser, split="train", output="output/hard_negatives.jsonl",
               data_help="pairs to mine for (default: the bundled BEIR SciFact)",
               output_help="mined dataset: .jsonl, .json, .csv, .parquet, or a folder (save_to_disk)")
    add_negative_rules(parser, num_negatives=3, range_min=0, relative_margin=None, sampling_strategy="top")
    add_sampling(parser, "mine for")
    group = parser.add_argument_group("mining")
    group.add_argument("--corpus", type=existing_path, default=None,
                       help="extra documents to mine from: a task folder, a .txt file (one per line) or a table "
                            "file with a --corpus-column (default: the positives, or the task's corpus)")
    group.add_argument("--corpus-column", default="text", help="text column of --corpus (default: %(default)s)")
    group.add_argument("--max-score", type=finite_float, default=None, help="drop candidates above this score")
    group.add_argument("--min-score", type=finite_float, default=None, help="drop candidates below this score")
    group.add_argument("--output-format", choices=("triplet", "n-tuple", "labeled-pair", "labeled-list"),
                       default="triplet", help="output layout (default: %(default)s)")
    group.add_argument("--output-scores", action="store_true", help="add the similarity scores")
    group.add_argument("--include-positives", action="store_true", help="keep the positives among the candidates")
    group.add_argument("--query-prompt", default=None, help="prompt prepended to the anchors")
    group.add_argument("--corpus-prompt", default=None, help="prompt prepended to the documents")
    group.add_argument("--min-relevance", type=positive_int, default=1,
                       help="lowest qrels grade that makes a positive, for task folders (default: %(default)s)")
    group.add_argument("--pool-factor", type=positive_float, default=8.0,
                       help="Hamming candidates per query as a multiple of the rank window, at least 1 "
                            "(default: %(default)s)")
    group.add_argument("--candidate-pool", type=positive_int, default=None,
                       help="absolute Hamming candidates per query; overrides --pool-factor")
    group.add_argument("--store-embeddings", choices=("float32", "float16", "disk", "none"), default="float32",
                       help="embeddings kept for exact rescoring: float32 (exact), float16 (half the RAM), disk "
                            "(a memory-mapped file), none (codes only, scores estimated) (default: %(default)s)")
    group.add_argument("--prefix-bits", type=positive_int, default=None,
                       help="first stage of the search cascade: scan the first N bits (a multiple of 64) of each "
                            "code, then rank that wider pool at full length (default: off)")
    group.add_argument("--no-center", action="store_true", help="do not centre the projections on the corpus mean")
    group.add_argument("--search-backend", choices=("auto", "numba", "faiss", "torch", "numpy"), default="auto",
                       help="Hamming search backend (default: %(default)s)")
    group.add_argument("--cache-folder", default=None, help="cache embeddings here (keyed on weights and texts)")
    add_lsh(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Under ``torchrun --nproc_per_node N -m st_lsh.cli mine ...`` every rank encodes, hashes and searches its
    shard (:class:`st_lsh.candidates.ShardedSearch`); rank 0 alone writes the output and prints."""
    from ..distributed import init_from_environment, world
    from ..mining import mine_hard_negatives
    from ..tasks import limit_pairs, load_pairs, read_corpus
    from .app import data_path, load_model_for

    # Everything that needs no model, first.
    output = check_output(args.output, suffixes=DATASET_SUFFIXES, folder=True, overwrite=args.overwrite,
                          markers=DATASET_MARKERS)
    rules, lsh = rules_from_args(args), lsh_from_args(args)
    data = load_pairs(data_path(args), args.split, args.anchor_column, args.positive_column, args.min_relevance)
    data = limit_pairs(data, args.max_pairs, args.seed, args.max_positives_per_query)
    corpus = data.corpus_texts
    if args.corpus is not None:
        corpus = read_corpus(args.corpus, args.corpus_column) + (corpus or [])
    if rules.range_max is not None:
        positives = data.pairs[data.pairs.column_names[1]]
        n_corpus = len(dict.fromkeys(chain(corpus or [], positives)))
        if rules.range_max > n_corpus:
            raise ValueError(f"--range-max {rules.range_max} is larger than the corpus ({n_corpus} unique texts)")

    init_from_environment()
    model = load_model_for(args)
    t = time.perf_counter()
    mined = mine_hard_negatives(
        data.pairs, model, corpus=corpus, range_min=rules.range_min, range_max=rules.range_max,
        max_score=rules.max_score, min_score=rules.min_score, absolute_margin=rules.absolute_margin,
        relative_margin=rules.relative_margin, num_negatives=rules.num_negatives,
        sampling_strategy=rules.sampling_strategy, query_prompt=args.query_prompt, corpus_prompt=args.corpus_prompt,
        include_positives=rules.include_positives, output_format=args.output_format,
        output_scores=args.output_scores, batch_size=args.batch_size, verbose=not args.quiet,
        cache_folder=args.cache_folder, num_bits=lsh.num_bits, seed=lsh.seed, center=lsh.center,
        pool_factor=lsh.pool_factor, candidate_pool=lsh.candidate_pool, store_embeddings=lsh.store,
        device=args.device, search_backend=lsh.backend, prefix_bits=lsh.prefix_bits,
    )
    seconds = time.perf_counter() - t
    if world()[0] != 0:
        return 0
    path = save_dataset(mined, output)
    counts = data.counts
    print(format_table(["pairs", "queries", "corpus", "rows out", "columns", "mining s", "output"],
                       [[counts.pairs, counts.queries, len(corpus) if corpus else "positives", len(mined),
                         ", ".join(mined.column_names), seconds, str(path)]]))
    return 0
