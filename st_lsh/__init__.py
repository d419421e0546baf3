"""st-lsh: Locality-Sensitive Hashing hard-negative mining for sentence-transformers.

Pipeline: encode -> hash (:class:`LSHHasher`) -> search (:func:`hamming_topk`, :class:`LSHIndex`)
-> select (:func:`select_negatives`) -> format (a ``datasets.Dataset``).

Reference: Deuser et al. 2025, "Locality-Sensitive Hashing for Efficient Hard Negative Sampling in
Contrastive Learning", https://arxiv.org/abs/2505.17844
"""

from __future__ import annotations

__version__ = "0.1.0"

from .data import load_beir, load_msmarco, load_msmarco_triples, pairs_from_qrels
from .evaluation import BEIREvaluator, MSMarcoEvaluator, RetrievalEvaluator
from .hashing import LSHHasher
from .index import LSHIndex, exact_topk, hamming_to_cosine
from .mining import mine_hard_negatives
from .search import hamming_topk
from .select import Selection, select_negatives
from .training import HardNegativeRefresher, HardnessSchedule

__all__ = [
    "BEIREvaluator",
    "HardNegativeRefresher",
    "HardnessSchedule",
    "LSHHasher",
    "LSHIndex",
    "MSMarcoEvaluator",
    "RetrievalEvaluator",
    "Selection",
    "exact_topk",
    "hamming_to_cosine",
    "hamming_topk",
    "load_beir",
    "load_msmarco",
    "load_msmarco_triples",
    "mine_hard_negatives",
    "pairs_from_qrels",
    "select_negatives",
]
