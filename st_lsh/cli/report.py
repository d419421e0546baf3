"""The tables the command prints: a Markdown table helper and the summary of ``st-lsh train``.

The training summary reports the pairs trained on (and how many queries they cover), the metrics before and
after, the cost of each stage, and how many negative slots held a mined negative versus a random text, with a
warning naming the knobs to change when more than :data:`FILLED_WARNING_SHARE` were random.

Example::

    >>> from st_lsh.cli.report import format_table
    >>> print(format_table(["stage", "seconds"], [["mining", 4.21], ["total", float("nan")]]))
    | stage | seconds |
    |---|---|
    | mining | 4.2100 |
    | total | - |
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ..recipes import TrainResult

FILLED_WARNING_SHARE = 0.2
METRICS = ("ndcg@10", "mrr@10", "map@100", "recall@100")

__all__ = ["FILLED_WARNING_SHARE", "format_table", "train_summary"]


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table; floats get 4 decimals (NaN prints as ``-``)."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            if math.isnan(value):
                return "-"
            return f"{value:.4f}" if abs(value) < 100 else f"{value:,.0f}"
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _fill(entries: list[dict[str, Any]]) -> tuple[float, float]:
    """(mined share, random-filled share) of the negative slots over refresher history entries (every entry has
    the same slots: one row of ``num_negatives`` per query)."""
    filled = sum(e["filled_share"] for e in entries) / len(entries)
    return 1 - filled, filled


def _flags(knobs: list[str]) -> str:
    return ", ".join("--" + k.replace("_", "-") for k in knobs)


def _initial_detail(result: TrainResult, initial: dict[str, Any] | None) -> str:
    if initial is None:
        return ""
    if result.corpus_reused:
        return (f"{result.queries_mined:,} queries encoded; the corpus embeddings ({result.corpus_size:,} texts) "
                "came from the evaluation before")
    return f"{initial['texts_encoded']:,} texts encoded"


def train_summary(result: TrainResult) -> str:
    """The before/after table, the data and negatives table, and the costs table of a training run."""
    lines: list[str] = []
    metrics = [m for m in METRICS if m in result.before or m in result.after]
    if metrics:
        nan = float("nan")
        rows = [["before", *(result.before.get(m, nan) for m in metrics)],
                ["after", *(result.after.get(m, nan) for m in metrics)],
                ["change", *(result.after.get(m, nan) - result.before.get(m, nan) for m in metrics)]]
        lines += [f"Evaluation on {result.eval_name}:", "", format_table(["", *metrics], rows), ""]

    done = [h for h in result.refreshes if "total_s" in h]
    initial = next((h for h in done if h["refresh"] == 0), None)
    later = [h for h in done if h["refresh"] > 0]
    failed = [h for h in result.refreshes if "failed" in h]
    rules = result.rules
    sampled = (f", sampled from {result.sampled_from.pairs:,} / {result.sampled_from.queries:,}"
               if result.sampled_from else "")
    window = f"{rules.range_min}..{rules.range_max}"
    data_rows = [["pairs / queries", f"{result.counts.pairs:,} / {result.counts.queries:,}{sampled}"],
                 ["negatives per pair, rank window", f"{rules.num_negatives}, ranks {window}"],
                 ["batches", "LSH neighbours" if result.batches == "neighbours" else "random (NO_DUPLICATES)"]]
    warnings: list[str] = []
    for label, entries in (("initial mining", [initial] if initial else []), ("refreshes", later)):
        if not entries:
            continue
        mined, filled = _fill(entries)
        data_rows.append([f"negatives of the {label}", f"{100 * mined:.1f}% mined, {100 * filled:.1f}% random-filled"])
        if filled > FILLED_WARNING_SHARE:
            warnings.append(f"Warning: {100 * filled:.0f}% of the negative slots of the {label} hold random texts, "
                            f"not mined negatives: the rules leave too few candidates. Change {_flags(result.knobs)}.")
    lines += ["Training data and negatives:", "", format_table(["", "value"], data_rows), ""]
    lines += [*warnings, *([""] if warnings else [])]

    t = result.timings
    nan = float("nan")
    refresh_detail = ""
    if later:
        refresh_detail = (f"{sum(h['texts_encoded'] for h in later):,} encoded, "
                          f"{sum(h['texts_captured'] for h in later):,} captured, "
                          f"{100 * sum(h['changed_share'] for h in later) / len(later):.0f}% of negatives changed on "
                          "average")
    cost_rows = [["evaluation before", t.get("eval_before", nan), ""],
                 ["initial mining (encode + LSH)", t.get("mining", nan), _initial_detail(result, initial)],
                 [f"refreshes ({len(later)}, {later[0]['mode'] if later else '-'})", t.get("refresh", 0.0),
                  refresh_detail],
                 ["training (refreshes included)", t.get("train", nan), f"{result.counts.pairs:,} rows"],
                 ["evaluation after", t.get("eval_after", nan), ""],
                 ["total", t.get("total", nan), f"model saved to {result.output}"]]
    if failed:
        cost_rows.append(["failed refreshes", float(len(failed)), failed[0]["failed"][:80]])
    lines += ["Costs:", "", format_table(["stage", "seconds", "detail"], cost_rows)]
    return "\n".join(lines)
