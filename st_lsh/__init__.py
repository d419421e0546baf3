"""st-lsh: Locality-Sensitive Hashing hard-negative mining for sentence-transformers.

Pipeline: encode -> hash (:class:`LSHHasher`) -> search (:func:`hamming_topk`, :class:`LSHIndex`)
-> select (:func:`select_negatives`) -> format (a ``datasets.Dataset``).

Reference: Deuser et al. 2025, "Locality-Sensitive Hashing for Efficient Hard Negative Sampling in
Contrastive Learning", https://arxiv.org/abs/2505.17844
"""

from __future__ import annotations

__version__ = "0.1.0"

from .hashing import LSHHasher
from .index import LSHIndex, exact_topk, hamming_to_cosine
from .mining import mine_hard_negatives
from .search import hamming_topk
from .select import Selection, select_negatives

__all__ = [
    "LSHHasher",
    "LSHIndex",
    "Selection",
    "exact_topk",
    "hamming_to_cosine",
    "hamming_topk",
    "mine_hard_negatives",
    "select_negatives",
]
