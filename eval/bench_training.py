"""Do (refreshed) hard negatives pay off? Fine-tune all-MiniLM-L6-v2 on BEIR SciFact train with seven kinds of
negatives, and compare SciFact test nDCG@10 / MRR@10 and what the negatives cost.

Arms (same model, pairs, loss, schedule and seeds; only the negatives differ):

- ``none``: the base model, not fine-tuned (evaluated once: it is deterministic);
- ``in-batch``: (anchor, positive) pairs, in-batch negatives only;
- ``random``: plus one random corpus text per pair (seeded; never a positive of its anchor);
- ``st-exact``: plus one negative from ``sentence_transformers.util.mine_hard_negatives`` (exact float search);
- ``lsh-once``: plus one negative from ``st_lsh.mine_hard_negatives``, mined once before training;
- ``lsh-full`` / ``lsh-incremental``: plus one negative kept fresh by ``st_lsh.training.HardNegativeRefresher``
  (``mode="full"`` / ``"incremental"``), re-mined every ``--refresh-every`` steps.

Hard negatives: 1 per pair from ranks 10-50, relative_margin 0.05, sampling_strategy "random", rows
(anchor, positive, negative). Training: MultipleNegativesRankingLoss, batch 32, lr 2e-5, NO_DUPLICATES batch
sampler, sentence-transformers' default warmup and schedule, ``--epochs`` passes over the pairs as the same number
of steps for every arm (arms whose miner dropped pairs without candidates run into a second pass). One ``--max-seq-length`` for
mining, training and evaluation. The corpus to mine from is the SciFact corpus plus every positive.

Per arm and seed: test nDCG@10 and MRR@10; wall time of the negatives (initial mining + the refreshes' total_s);
training wall time (refreshes excluded); evaluation wall time. The base model's encode for the initial mining is
cached per arm under eval/cache/bench_training/ (it is the same for every seed), so the first seed of an arm pays
a cold mining and the others a cached one; both are reported. Mean ± std (ddof=1) over ``--seeds`` go to
eval/results/<output-name>.md / .json with a bar chart <output-name>.png. The report is rewritten after every run,
so a cut-off run keeps what finished, and a rerun resumes from <output-name>.partial.json, skipping the finished
(arm, seed) runs.

Usage::

    python eval/bench_training.py                                   # all arms, seeds 12 13 14
    python eval/bench_training.py --arms none lsh-once lsh-incremental --seeds 12
    # a tiny smoke run that leaves the real results alone:
    python eval/bench_training.py --seeds 1 --max-pairs 32 --max-corpus 200 --max-test-queries 20 \\
        --max-seq-length 32 --refresh-every 1 --output-name bench_training_smoke
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import CACHE, RESULTS, ROOT, SHARED_DATA, markdown_table, write_report  # noqa: E402
from datasets import Dataset  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss  # noqa: E402
from sentence_transformers.sentence_transformer.trainer import SentenceTransformerTrainer  # noqa: E402
from sentence_transformers.sentence_transformer.training_args import (  # noqa: E402
    BatchSamplers,
    SentenceTransformerTrainingArguments,
)
from sentence_transformers.util import mine_hard_negatives as st_mine_hard_negatives  # noqa: E402
from train_scifact import load_model  # noqa: E402
from transformers import PrinterCallback, TrainerCallback, set_seed  # noqa: E402

from st_lsh import mine_hard_negatives as lsh_mine_hard_negatives  # noqa: E402
from st_lsh.data import doc_text, load_beir, pairs_from_qrels  # noqa: E402
from st_lsh.evaluation import BEIREvaluator  # noqa: E402
from st_lsh.evaluation.retrieval import RetrievalEvaluator  # noqa: E402
from st_lsh.recipes import unprefixed  # noqa: E402
from st_lsh.training import HardNegativeRefresher  # noqa: E402

logger = logging.getLogger(__name__)

ARMS = ("none", "in-batch", "random", "st-exact", "lsh-once", "lsh-full", "lsh-incremental")
MINED_ARMS = ("st-exact", "lsh-once", "lsh-full", "lsh-incremental")
REFRESH_ARMS = {"lsh-full": "full", "lsh-incremental": "incremental"}
BATCH_SIZE = 32
LEARNING_RATE = 2e-5
NUM_NEGATIVES = 1
RULES: dict[str, Any] = {"range_min": 10, "range_max": 50, "relative_margin": 0.05, "sampling_strategy": "random"}
BASE_KEY = "base"  # the "none" arm's single run (no seed: nothing is random)


@dataclass
class Setup:
    """What every run shares: the training pairs, the corpus to mine from, the evaluator and the settings."""

    pairs: Dataset
    documents: list[str]
    evaluator: RetrievalEvaluator
    max_seq_length: int
    epochs: float
    refresh_every: int
    cache_root: Path


# ---- data and evaluation ---------------------------------------------------------------------------------------


def load_setup(args: argparse.Namespace) -> Setup:
    corpus, queries, qrels = load_beir(args.data, split="train")
    pairs = pairs_from_qrels(corpus, queries, qrels)
    if args.max_pairs is not None:
        pairs = pairs.select(range(min(args.max_pairs, len(pairs))))
    documents = [doc_text(doc) for doc in corpus.values()]
    if args.max_corpus is not None:
        documents = documents[: args.max_corpus]
    return Setup(
        pairs=pairs, documents=documents, evaluator=make_evaluator(args.data, args.max_test_queries, args.max_corpus),
        max_seq_length=args.max_seq_length, epochs=args.epochs, refresh_every=args.refresh_every,
        cache_root=CACHE / "bench_training",
    )


def make_evaluator(data: str | Path, max_test_queries: int | None, max_corpus: int | None) -> RetrievalEvaluator:
    """SciFact test with nDCG@10 and MRR@10; with ``max_test_queries`` / ``max_corpus``, a tiny slice for smoke
    runs (those queries against their relevant documents plus the first ``max_corpus`` others), as in
    examples/train_scifact.py."""
    if max_test_queries is None and max_corpus is None:
        return BEIREvaluator(data, split="test", mrr_at_k=(10,), batch_size=64, write_csv=False)
    corpus, queries, qrels = load_beir(data, split="test")
    query_ids = [q for q in queries if q in qrels][: max_test_queries or len(queries)]
    keep = {d for q in query_ids for d in qrels[q]} | set(list(corpus)[: max_corpus or len(corpus)])
    return RetrievalEvaluator(
        {d: corpus[d] for d in corpus if d in keep}, {q: queries[q] for q in query_ids},
        {q: qrels[q] for q in query_ids}, ndcg_at_k=(10,), mrr_at_k=(10,), recall_at_k=(10,), batch_size=64,
        write_csv=False, ignore_identical_ids=True, name="scifact_test_slice",
    )


def evaluate(model: SentenceTransformer, evaluator: RetrievalEvaluator) -> dict[str, float]:
    start = time.perf_counter()
    metrics = unprefixed(evaluator(model), evaluator.name)
    return {"ndcg@10": metrics["ndcg@10"], "mrr@10": metrics["mrr@10"], "eval_s": time.perf_counter() - start}


# ---- negatives -------------------------------------------------------------------------------------------------


def random_negatives(pairs: Dataset, documents: list[str], seed: int) -> Dataset:
    """(anchor, positive, negative) rows with one random text of the mining corpus (documents + positives) per
    pair, never one of the anchor's positives."""
    corpus = list(dict.fromkeys(documents + list(pairs["positive"])))
    positives: dict[str, set[str]] = {}
    for anchor, positive in zip(pairs["anchor"], pairs["positive"]):
        positives.setdefault(anchor, set()).add(positive)
    rng = random.Random(seed)
    negatives = []
    for anchor in pairs["anchor"]:
        if len(positives[anchor]) >= len(corpus):
            raise ValueError(f"Every corpus text is a positive of {anchor!r:.60}: no random negative to draw.")
        while (text := corpus[rng.randrange(len(corpus))]) in positives[anchor]:
            pass
        negatives.append(text)
    return Dataset.from_dict({"anchor": pairs["anchor"], "positive": pairs["positive"], "negative": negatives})


def _cache_files(folder: Path) -> set[str]:
    return set(os.listdir(folder)) if folder.is_dir() else set()


def build_negatives(
    arm: str, model: SentenceTransformer, setup: Setup, seed: int
) -> tuple[Dataset, HardNegativeRefresher | None, dict[str, Any]]:
    """The training dataset of ``arm`` (and its refresher, if any), with the initial mining's wall time and
    whether it encoded (cold) or read the base-model embeddings from the cache."""
    if arm == "in-batch":
        return setup.pairs, None, {}
    if arm == "random":
        return random_negatives(setup.pairs, setup.documents, seed), None, {}
    cache = setup.cache_root / f"{arm}_len{setup.max_seq_length}"
    before = _cache_files(cache)
    refresher = None
    start = time.perf_counter()
    if arm == "st-exact":  # its "random" sampling draws from Python's global random, seeded by set_seed(seed)
        dataset = st_mine_hard_negatives(
            setup.pairs, model, corpus=setup.documents, num_negatives=NUM_NEGATIVES, output_format="triplet",
            cache_folder=str(cache), verbose=False, **RULES,
        )
    elif arm == "lsh-once":
        dataset = lsh_mine_hard_negatives(
            setup.pairs, model, corpus=setup.documents, num_negatives=NUM_NEGATIVES, output_format="triplet",
            seed=seed, cache_folder=str(cache), verbose=False, **RULES,
        )
    elif arm in REFRESH_ARMS:
        refresher = HardNegativeRefresher(
            model, setup.pairs, corpus=setup.documents, num_negatives=NUM_NEGATIVES, mode=REFRESH_ARMS[arm],
            refresh_every_n_steps=setup.refresh_every, seed=seed, cache_folder=str(cache), **RULES,
        )
        dataset = refresher.dataset  # the initial mining (the only encode the refresher caches)
    else:
        raise ValueError(f"Unknown arm {arm!r}")
    mining_s = time.perf_counter() - start
    written = len(_cache_files(cache) - before)
    return dataset, refresher, {"mining_s": mining_s, "mining_cold": written > 0, "cache_files_written": written}


# ---- one run ---------------------------------------------------------------------------------------------------


def train(
    model: SentenceTransformer, dataset: Dataset, setup: Setup, seed: int, output_dir: str,
    callbacks: list[TrainerCallback],
) -> tuple[SentenceTransformerTrainer, float, float]:
    """Train; return the trainer, the wall time of ``trainer.train()`` (refreshes included) and the mean loss."""
    # The same number of steps for every arm: ``epochs`` passes over the pairs. Miners that drop pairs without a
    # candidate (sentence-transformers' and st_lsh.mine_hard_negatives) give fewer rows; those arms then start a
    # second pass instead of training fewer steps.
    max_steps = math.ceil(setup.epochs * len(setup.pairs) / BATCH_SIZE)
    args = SentenceTransformerTrainingArguments(
        output_dir=output_dir, max_steps=max_steps, per_device_train_batch_size=BATCH_SIZE,
        learning_rate=LEARNING_RATE, seed=seed, batch_sampler=BatchSamplers.NO_DUPLICATES, save_strategy="no",
        report_to=[], logging_steps=10, disable_tqdm=True,
    )
    trainer = SentenceTransformerTrainer(
        model=model, args=args, train_dataset=dataset, loss=MultipleNegativesRankingLoss(model), callbacks=callbacks,
    )
    trainer.remove_callback(PrinterCallback)  # it prints the loss logs (disable_tqdm=True); they stay in log_history
    start = time.perf_counter()
    output = trainer.train()
    return trainer, time.perf_counter() - start, float(output.training_loss)


def run(arm: str, seed: int | None, setup: Setup) -> dict[str, Any]:
    """Build the model (after ``set_seed``), its negatives, train, evaluate; timings and metrics."""
    set_seed(seed if seed is not None else 0)
    model = load_model(setup.max_seq_length)
    if arm == "none":
        return {"arm": arm, "seed": seed, **evaluate(model, setup.evaluator)}
    assert seed is not None
    dataset, refresher, mining = build_negatives(arm, model, setup, seed)
    trainer, train_total_s, train_loss = train(
        model, dataset, setup, seed, f"/tmp/bench_training_{arm}_{seed}", [refresher] if refresher else []
    )
    history = refresher.history[1:] if refresher is not None else []
    refresh_s = sum(h["total_s"] for h in history if "failed" not in h)
    failed = sum(1 for h in history if "failed" in h)
    if failed:
        logger.warning("%s seed %d: %d refreshes failed (see the warnings above)", arm, seed, failed)
    return {
        "arm": arm, "seed": seed, "rows": len(dataset), "columns": list(dataset[:1]),
        "steps": trainer.state.global_step,
        "warmup_steps": trainer.args.get_warmup_steps(trainer.state.max_steps),
        "lr_scheduler": str(trainer.args.lr_scheduler_type.value),
        **mining,
        "refresh_s": refresh_s, "refreshes": len(history) - failed, "refreshes_failed": failed,
        "negatives_s": mining.get("mining_s", 0.0) + refresh_s,
        "train_total_s": train_total_s, "train_s": train_total_s - refresh_s, "train_loss": train_loss,
        "refresh_history": history,
        **evaluate(model, setup.evaluator),
    }


# ---- report ----------------------------------------------------------------------------------------------------


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample std (ddof=1); std is None for a single value."""
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else None


def fmt(values: list[float], digits: int) -> str:
    if not values:
        return "-"
    mean, std = mean_std(values)
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None else "")


def arm_summary(arm: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    def values(key: str, keep: Callable[[dict[str, Any]], bool] = lambda r: True) -> list[float]:
        return [float(r[key]) for r in runs if key in r and keep(r)]

    cold = values("mining_s", lambda r: r.get("mining_cold", False))
    cached = values("mining_s", lambda r: not r.get("mining_cold", True))
    refresh = values("refresh_s") if arm in REFRESH_ARMS else []
    # What the negatives cost a user who has no cache: a cold initial mining plus the refreshes.
    cost = None
    if arm in MINED_ARMS and (cold or cached):
        cost = float(np.mean(cold or cached)) + (float(np.mean(refresh)) if refresh else 0.0)
    return {
        "n": len(runs), "ndcg": values("ndcg@10"), "mrr": values("mrr@10"), "cold": cold, "cached": cached,
        "refresh": refresh, "refreshes": values("refreshes"), "cost": cost, "cost_is_cold": bool(cold),
        "train": values("train_s"), "eval": values("eval_s"),
        "rows": sorted({int(r["rows"]) for r in runs if "rows" in r}),
        "steps": sorted({int(r["steps"]) for r in runs if "steps" in r}),
    }


def plot(summaries: dict[str, dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = list(summaries)
    means = [mean_std(summaries[a]["ndcg"])[0] for a in arms]
    stds = [mean_std(summaries[a]["ndcg"])[1] or 0.0 for a in arms]
    labels = []
    for arm in arms:
        cost = summaries[arm]["cost"]
        labels.append(arm + (f"\nnegatives {cost:.0f} s" if cost is not None else ""))
    fig, ax = plt.subplots(figsize=(1.3 * len(arms) + 2, 4.5))
    colours = ["#999999" if a in ("none", "in-batch", "random") else "#4c72b0" if a == "st-exact" else "#dd8452"
               for a in arms]
    ax.bar(range(len(arms)), means, yerr=stds, capsize=4, color=colours)
    for i, (m, s) in enumerate(zip(means, stds)):
        ax.text(i, m + s + 0.002, f"{m:.4f}", ha="center", va="bottom", fontsize=8)
    if "none" in summaries:
        ax.axhline(means[arms.index("none")], color="black", linestyle="--", linewidth=0.8, label="base model")
        ax.legend(loc="best", fontsize=8)
    low = min(m - s for m, s in zip(means, stds))
    high = max(m + s for m, s in zip(means, stds))
    ax.set_ylim(max(0.0, low - 0.05), high + 0.02)
    ax.set_xticks(range(len(arms)), labels, fontsize=8)
    ax.set_ylabel("test nDCG@10, mean ± std (y axis cut)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report(results: dict[str, Any], name: str) -> str:
    """Rewrite eval/results/{name}.md / .json / .png from the finished runs; return the table."""
    config = results["config"]
    summaries = {arm: arm_summary(arm, list(results["runs"][arm].values()))
                 for arm in ARMS if results["runs"].get(arm)}
    base = mean_std(summaries["none"]["ndcg"])[0] if "none" in summaries else None
    rows = []
    for arm, s in summaries.items():
        ndcg_mean = mean_std(s["ndcg"])[0]
        cost = "-"
        if s["cost"] is not None:
            cost = f"{s['cost']:.1f}" + ("" if s["cost_is_cold"] else " (cached only)")
        rows.append([
            arm, s["n"], fmt(s["ndcg"], 4), fmt(s["mrr"], 4),
            f"{ndcg_mean - base:+.4f}" if base is not None and arm != "none" else "-",
            cost, fmt(s["cold"], 1), fmt(s["cached"], 1), fmt(s["refresh"], 1),
            "/".join(str(int(n)) for n in sorted(set(s["refreshes"]))) if arm in REFRESH_ARMS else "-",
            fmt(s["train"], 0), fmt(s["eval"], 0),
            "/".join(map(str, s["rows"])) or "-", "/".join(map(str, s["steps"])) or "-",
        ])
    table = markdown_table(
        ["arm", "runs", "test nDCG@10", "test MRR@10", "Δ nDCG@10 vs none", "negatives s (cold mining + refreshes)",
         "initial mining s, cold", "initial mining s, cached", "refresh s (sum)", "refreshes", "train s",
         "eval s", "train rows", "steps"],
        rows,
    )
    trained = [r for runs in results["runs"].values() for r in runs.values() if "warmup_steps" in r]
    warmup = (f"{trained[0]['warmup_steps']} warmup steps, {trained[0]['lr_scheduler']} schedule"
              if trained else "the trainer's defaults")
    slice_note = ""
    if config["max_pairs"] or config["max_corpus"] or config["max_test_queries"]:
        slice_note = (f" **Smoke slice**: max_pairs={config['max_pairs']}, max_corpus={config['max_corpus']}, "
                      f"max_test_queries={config['max_test_queries']}; the figures say nothing about quality.")
    body = [
        f"all-MiniLM-L6-v2 fine-tuned on BEIR SciFact train ({config['pairs']} (query, document) pairs, "
        f"{config['corpus']} texts to mine from: corpus + positives), evaluated on SciFact test "
        f"({config['test_queries']} queries, {config['test_corpus']} documents) with nDCG@10 and MRR@10."
        + slice_note,
        "",
        f"Every arm: MultipleNegativesRankingLoss, batch {BATCH_SIZE}, lr {LEARNING_RATE:g}, NO_DUPLICATES batch "
        f"sampler, {config['epochs']:g} epoch(s), sentence-transformers' default warmup ({warmup}), "
        f"`transformers.set_seed(seed)` before building each model. max_seq_length={config['max_seq_length']} for "
        "mining, training and evaluation alike (the model's own is 256; 128 by default to fit the CPU budget). "
        f"Hard-negative arms: {NUM_NEGATIVES} negative per pair from ranks {RULES['range_min']}-{RULES['range_max']}, "
        f"relative_margin {RULES['relative_margin']}, sampling_strategy \"{RULES['sampling_strategy']}\"; the "
        f"refresher arms re-mine every {config['refresh_every']} steps (none after the last step). `none` is the "
        "base model, evaluated once (deterministic); `random` draws one corpus text per pair, never a positive.",
        "",
        "Mean ± sample std (ddof=1) over the seeds " + ", ".join(str(s) for s in config["seeds_run"])
        + " (no ± with one run). Wall times in seconds. *Initial mining* = building the first negatives with the "
        "base model (encode + search + select); the base model's encode is cached per arm, so the first seed of "
        "an arm runs *cold* and the others *cached*. *Refresh s* = sum of the refreshes' `total_s` from "
        "`refresher.history`. *Negatives s* = mean cold initial mining + mean refresh s, i.e. what the negatives "
        "cost without a cache. *Train s* = `trainer.train()` wall time minus the refreshes. *Eval s* = one "
        "evaluation of the test split. *Train rows*: sentence-transformers and `st_lsh.mine_hard_negatives` drop "
        "pairs with no candidate left after the margin; the refresher fills such slots at random.",
        "",
        table,
        "",
        f"![test nDCG@10 per arm]({name}.png)",
    ]
    commands = results.get("commands", [])
    if len(commands) > 1:  # resumed: the runs above come from several invocations
        body += ["", "The runs were gathered by these invocations (a rerun skips the finished runs):", ""]
        body += [f"- `{c}`" for c in commands]
    write_report(name, "Fine-tuning on SciFact: in-batch, random, exact and LSH-mined (refreshed) hard negatives",
                 "\n".join(body), results)
    if summaries:
        plot(summaries, RESULTS / f"{name}.png",
             f"SciFact test nDCG@10 after {config['epochs']:g} epoch(s), max_seq_length {config['max_seq_length']}"
             f" (mean ± std over {len(config['seeds_run'])} seed(s))")
    return table


# ---- main ------------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[12, 13, 14])
    parser.add_argument("--epochs", type=float, default=1)
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--refresh-every", type=int, default=10, help="refresher arms: re-mine every N steps")
    parser.add_argument("--data", default=str(SHARED_DATA / "scifact"))
    parser.add_argument("--max-pairs", type=int, default=None)
    parser.add_argument("--max-corpus", type=int, default=None)
    parser.add_argument("--max-test-queries", type=int, default=None)
    parser.add_argument("--output-name", default="bench_training", help="eval/results/<name>.md / .json / .png")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    setup = load_setup(args)
    config: dict[str, Any] = {
        "data": str(args.data), "epochs": args.epochs, "max_seq_length": args.max_seq_length,
        "refresh_every": args.refresh_every, "max_pairs": args.max_pairs, "max_corpus": args.max_corpus,
        "max_test_queries": args.max_test_queries, "batch_size": BATCH_SIZE, "learning_rate": LEARNING_RATE,
        "num_negatives": NUM_NEGATIVES, "rules": RULES,
    }
    partial = RESULTS / f"{args.output_name}.partial.json"
    results: dict[str, Any] = {"config": config, "runs": {}}
    if partial.exists():
        saved = json.loads(partial.read_text())
        differs = {k: (saved["config"].get(k), v) for k, v in config.items() if saved["config"].get(k) != v}
        if differs:
            raise SystemExit(f"{partial} was written with other settings {differs} (saved, now): pass another "
                             "--output-name or delete it.")
        results = saved
        logger.info("Resuming from %s: %s", partial, {a: list(r) for a, r in results["runs"].items()})
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]])
    results.setdefault("commands", []).append(command)
    results["config"].update({
        "pairs": len(setup.pairs), "corpus": len(dict.fromkeys(setup.documents + list(setup.pairs["positive"]))),
        "test_queries": len(setup.evaluator.queries), "test_corpus": len(setup.evaluator.corpus),
    })

    table = ""
    for arm in args.arms:
        for seed in [None] if arm == "none" else args.seeds:
            key = BASE_KEY if seed is None else str(seed)
            if key in results["runs"].get(arm, {}):
                logger.info("=== %s seed %s: already done, skipped ===", arm, key)
                continue
            logger.info("=== %s seed %s ===", arm, key)
            result = run(arm, seed, setup)
            logger.info("%s seed %s: %s", arm, key,
                        json.dumps({k: v for k, v in result.items() if k != "refresh_history"}, default=float))
            results["runs"].setdefault(arm, {})[key] = result
            seeds_run = {int(s) for runs in results["runs"].values() for s in runs if s != BASE_KEY}
            results["config"]["seeds_run"] = sorted(seeds_run)
            RESULTS.mkdir(parents=True, exist_ok=True)
            partial.write_text(json.dumps(results, indent=1, default=float))
            table = report(results, args.output_name)
    results["config"].setdefault("seeds_run", sorted(
        {int(s) for runs in results["runs"].values() for s in runs if s != BASE_KEY}))
    table = report(results, args.output_name) if results["runs"] else table
    print(table)
    logger.info("Report: %s", RESULTS / f"{args.output_name}.md")


if __name__ == "__main__":
    main()
