"""st-lsh: Locality-Sensitive Hashing hard-negative mining for sentence-transformers.

Pipeline, one module per stage: read pairs (:mod:`st_lsh.pairs`) -> encode (:mod:`st_lsh.encode`, into an
:mod:`st_lsh.store`) -> hash (:class:`LSHHasher`) -> search (:func:`hamming_topk`, :class:`LSHIndex`) -> select
(:func:`select_negatives`) -> format (a ``datasets.Dataset``). The policy that all of them share lives in
:mod:`st_lsh.rules`: :class:`NegativeRules` and :class:`LSHSettings`.

Reference: Deuser et al. 2025, "Locality-Sensitive Hashing for Efficient Hard Negative Sampling in
Contrastive Learning", https://arxiv.org/abs/2505.17844
"""

from __future__ import annotations

__version__ = "0.2.0"

from .data import load_beir, load_msmarco, load_msmarco_triples, pairs_from_qrels, sample_pairs
from .evaluation import BEIREvaluator, MSMarcoEvaluator, RetrievalEvaluator
from .hashing import LSHHasher
from .index import LSHIndex, Neighbours, exact_topk
from .mining import mine_hard_negatives
from .pairs import PairTable, TextTable
from .rules import LSHSettings, NegativeRules
from .search import HammingNeighbours, hamming_topk
from .select import Selection, select_negatives
from .similarity import Similarity, hamming_to_cosine
from .training import HardNegativeRefresher, HardNeighbourBatchSampler, HardnessSchedule

__all__ = [
    "BEIREvaluator",
    "HammingNeighbours",
    "HardNegativeRefresher",
    "HardNeighbourBatchSampler",
    "HardnessSchedule",
    "LSHHasher",
    "LSHIndex",
    "LSHSettings",
    "MSMarcoEvaluator",
    "NegativeRules",
    "Neighbours",
    "PairTable",
    "RetrievalEvaluator",
    "Selection",
    "Similarity",
    "TextTable",
    "exact_topk",
    "hamming_to_cosine",
    "hamming_topk",
    "load_beir",
    "load_msmarco",
    "load_msmarco_triples",
    "mine_hard_negatives",
    "pairs_from_qrels",
    "sample_pairs",
    "select_negatives",
]
