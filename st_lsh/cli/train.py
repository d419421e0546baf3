"""``st-lsh train``: the recipe of :mod:`st_lsh.recipes` with its flags, and the summary table.

:func:`st_lsh.recipes.prepare_training` reads and checks every input (output folder, task or pair file, split,
columns, texts, rules, evaluation task) before the model loads.

Example::

    >>> from st_lsh.cli import main
    >>> main(["train", "--max-pairs", "0"])   # stderr: st-lsh train: error: argument --max-pairs: expected ...
    2
"""

from __future__ import annotations

import argparse
import ctypes
import os
import platform

from ..recipes import TrainConfig
from .options import (
    add_common,
    add_lsh,
    add_negative_rules,
    add_sampling,
    existing_path,
    positive_float,
    positive_int,
    unit_float,
)

DESCRIPTION = (
    "Fine-tune a SentenceTransformer with MultipleNegativesRankingLoss on (anchor, positive, hard negatives) rows; "
    "the negatives are mined with LSH and refreshed during training (st_lsh.training.HardNegativeRefresher). The "
    "model is evaluated on --eval-split before and after, saved to --output (a folder, written under a temporary "
    "name and renamed when complete; an existing one is kept unless --overwrite), and a summary prints the metrics, "
    "the pairs and queries trained on, the share of mined versus random-filled negatives and the cost of each "
    "stage. The initial mining reuses the corpus embeddings of the evaluation before training. With no arguments: "
    "all-MiniLM-L6-v2 on the bundled BEIR SciFact (CC BY-NC 2.0; Wadden et al. 2020, Thakur et al. 2021), about "
    "15 minutes on 2 CPU cores."
)


def add(subparsers) -> None:
    d = TrainConfig()
    parser = subparsers.add_parser("train", help="fine-tune with LSH-mined, refreshed hard negatives",
                                   description=DESCRIPTION)
    add_common(parser, split=d.split, output=d.output,
               data_help="training task: a BEIR / MS MARCO folder, or a pair file / save_to_disk folder "
                         "(default: the bundled BEIR SciFact)",
               output_help="folder of the fine-tuned model")
    add_negative_rules(parser, num_negatives=d.num_negatives, range_min=d.range_min,
                       relative_margin=d.relative_margin, sampling_strategy=d.sampling_strategy)
    add_sampling(parser, "train on")
    group = parser.add_argument_group("training")
    group.add_argument("--eval-data", type=existing_path, default=None,
                       help="task folder to evaluate on (default: --data when it is a task folder)")
    group.add_argument("--eval-split", default=d.eval_split, help="evaluation split (default: %(default)s)")
    group.add_argument("--no-eval", action="store_true", help="skip the before/after evaluation")
    group.add_argument("--epochs", type=positive_float, default=d.epochs, help="epochs (default: %(default)s)")
    group.add_argument("--train-batch-size", type=positive_int, default=d.batch_size,
                       help="training batch size (default: %(default)s)")
    group.add_argument("--learning-rate", type=positive_float, default=d.learning_rate,
                       help="peak learning rate (default: %(default)s)")
    group.add_argument("--warmup-ratio", type=unit_float, default=d.warmup_ratio,
                       help="share of steps warming up the learning rate, in [0, 1) (default: %(default)s)")
    group.add_argument("--max-seq-length", type=positive_int, default=d.max_seq_length,
                       help="token limit while training; the evaluations and the initial mining keep the model's "
                            "own (default: %(default)s)")
    group.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction,
                       default=d.gradient_checkpointing,
                       help="recompute activations in the backward pass instead of keeping them: the same "
                            "gradients, about 2 GB less peak memory on the defaults, a third more training time "
                            "(default: on)")
    group.add_argument("--min-relevance", type=positive_int, default=d.min_relevance,
                       help="lowest qrels grade that makes a positive (default: %(default)s)")
    group.add_argument("--refresh-mode", choices=("incremental", "full"), default=d.refresh_mode,
                       help="incremental reuses the training forward passes' embeddings; full re-encodes the "
                            "corpus (default: %(default)s)")
    group.add_argument("--refresh-every", type=positive_int, default=d.refresh_every_n_steps,
                       help="refresh the negatives every N steps (default: %(default)s)")
    group.add_argument("--batches", choices=("random", "neighbours"), default=d.batches,
                       help="random: sentence-transformers' NO_DUPLICATES batches; neighbours: batches of LSH "
                            "neighbours (harder in-batch negatives, same no-duplicate guarantee), re-planned every "
                            "epoch from the refreshed codes (default: %(default)s)")
    group.add_argument("--refresh-per-epoch", action="store_true",
                       help="refresh at the end of every epoch instead of every --refresh-every steps")
    add_lsh(parser)
    parser.set_defaults(run=run)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    from .app import data_path

    return TrainConfig(
        data=data_path(args), split=args.split, eval_data=args.eval_data, eval_split=args.eval_split,
        output=args.output, overwrite=args.overwrite, anchor_column=args.anchor_column,
        positive_column=args.positive_column, min_relevance=args.min_relevance, max_pairs=args.max_pairs,
        max_positives_per_query=args.max_positives_per_query, epochs=args.epochs, batch_size=args.train_batch_size,
        learning_rate=args.learning_rate, warmup_ratio=args.warmup_ratio, max_seq_length=args.max_seq_length,
        num_negatives=args.num_negatives, range_min=args.range_min, range_max=args.range_max,
        relative_margin=args.relative_margin, absolute_margin=args.absolute_margin,
        sampling_strategy=args.sampling_strategy, num_bits=args.num_bits, refresh_mode=args.refresh_mode,
        refresh_every_n_steps=None if args.refresh_per_epoch else args.refresh_every,
        eval_batch_size=args.batch_size, seed=args.seed, skip_eval=args.no_eval, show_progress_bar=not args.quiet,
        gradient_checkpointing=args.gradient_checkpointing, batches=args.batches,
    )


MMAP_THRESHOLD = 4 * 2**20  # bytes
M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


def return_freed_blocks_to_the_os() -> bool:
    """Have glibc's malloc serve every block of 4 MiB or more with its own mmap, so that it goes back to the OS
    when torch frees it. By default the threshold rises to 32 MiB after the first large block is freed, and from
    then on a training step's activations (blocks of 4-75 MB) are carved from the heap, which keeps them after
    the step, fragmented: about 1.2 GB of the peak RSS of ``st-lsh train`` on SciFact. Costs the kernel a few
    page faults per step. Does nothing outside glibc or when ``MALLOC_MMAP_THRESHOLD_`` is set by the user."""
    if platform.libc_ver()[0] != "glibc" or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    try:
        return bool(ctypes.CDLL(None).mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    except (OSError, AttributeError):
        return False


def run(args: argparse.Namespace) -> int:
    from ..recipes import prepare_training, train
    from .app import load_model_for
    from .report import train_summary

    return_freed_blocks_to_the_os()
    config = config_from_args(args)
    inputs = prepare_training(config)  # every input check, no model
    result = train(load_model_for(args), config, inputs)
    print(train_summary(result))
    return 0
