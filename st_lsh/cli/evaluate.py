"""``st-lsh evaluate``: the evaluator of a task folder's split (:meth:`st_lsh.tasks.Task.evaluator`), exact, LSH
or both, with the metrics printed and optionally written as JSON or as the evaluator's CSV and TREC runs.

Example::

    >>> from st_lsh.cli import main
    >>> main(["evaluate", "--output", "metrics.txt"])   # stderr: st-lsh evaluate: error: --output ...
    2
"""

from __future__ import annotations

import argparse
import time

from ..outputs import atomic_output, check_output, write_json
from .options import add_common, add_lsh, positive_int
from .report import format_table

DESCRIPTION = (
    "Evaluate a model on a BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv) or an MS MARCO folder "
    "(collection.tsv, queries.<split>.tsv, qrels.<split>.tsv), by exact search, LSH search, or both. Prints the "
    "metrics; --output also writes them as JSON (a .json path) or as the evaluator's CSV and TREC run files (a "
    "folder; other files in it are left alone). Existing output files are kept unless --overwrite is given; each "
    "is written under a temporary name and renamed when complete."
)


def add(subparsers) -> None:
    parser = subparsers.add_parser("evaluate", help="BEIR or MS MARCO retrieval evaluation", description=DESCRIPTION)
    add_common(parser, split="test", output=None,
               data_help="BEIR or MS MARCO folder (default: the bundled BEIR SciFact)",
               output_help="metrics as a .json file, or a folder for the CSV and TREC run files")
    group = parser.add_argument_group("evaluation")
    group.add_argument("--retrieval", choices=("exact", "lsh", "both"), default="exact",
                       help="search used to retrieve (default: %(default)s)")
    group.add_argument("--corpus-chunk-size", type=positive_int, default=50_000,
                       help="documents encoded at a time (default: %(default)s)")
    group.add_argument("--max-seq-length", type=positive_int, default=None,
                       help="token limit (default: the model's own)")
    add_lsh(parser)
    parser.set_defaults(run=run)


def _written_files(evaluator) -> list[str]:
    """The files the evaluator writes into an output folder: its CSV and one TREC run per retrieval mode."""
    runs = [evaluator.csv_file.replace("_results.csv", "" if mode == "exact" else f"_lsh_{evaluator.lsh_num_bits}")
            + ".trec" for mode in evaluator.modes]
    return [evaluator.csv_file, *runs]


def run(args: argparse.Namespace) -> int:
    from ..tasks import Task, unprefixed
    from .app import data_path, load_model_for

    data = data_path(args)
    task = Task.open(data, args.split)
    evaluator = task.evaluator(
        args.split, retrieval=args.retrieval, lsh_num_bits=args.num_bits, lsh_kwargs={"seed": args.seed},
        corpus_chunk_size=args.corpus_chunk_size, batch_size=args.batch_size, show_progress_bar=not args.quiet,
        write_predictions=True,
    )
    output = None
    if args.output is not None:
        output = check_output(args.output, suffixes=(".json",), folder=True, overwrite=args.overwrite,
                              members=_written_files(evaluator))
    model = load_model_for(args)
    if args.max_seq_length is not None:
        model.max_seq_length = args.max_seq_length
    t = time.perf_counter()
    if output is not None and output.kind == "files":
        with atomic_output(output) as folder:
            metrics = unprefixed(evaluator(model, output_path=str(folder)), evaluator.name)
    else:
        metrics = unprefixed(evaluator(model), evaluator.name)
    seconds = time.perf_counter() - t
    if output is not None and output.kind == "file":
        write_json(output, {"model": args.model, "data": data, "split": args.split, "metrics": metrics,
                            "seconds": seconds})
    print(f"{evaluator.name} ({len(evaluator.queries):,} queries, {len(evaluator.corpus):,} documents, "
          f"{args.retrieval} retrieval, {seconds:.1f}s):\n")
    print(format_table(["metric", "value"], [[k, v] for k, v in metrics.items()]))
    return 0
