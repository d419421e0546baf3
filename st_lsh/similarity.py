"""Score candidates with the model's own similarity function, as sentence-transformers' miner does.

LSH codes are angular: they are computed from L2-normalised embeddings and their Hamming distance estimates the
cosine. The exact rescoring of a candidate pool, though, uses the model's ``similarity_fn_name`` (cosine, dot,
euclidean or manhattan) on the embeddings as ``mine_hard_negatives`` encodes them (normalised), so that scores,
margins and ranks are the ones sentence-transformers computes.

Example::

    >>> import torch
    >>> from st_lsh.similarity import Similarity
    >>> queries = torch.nn.functional.normalize(torch.randn(2, 8), dim=-1)
    >>> candidates = torch.nn.functional.normalize(torch.randn(2, 3, 8), dim=-1)
    >>> Similarity("euclidean").pairs(queries, candidates).shape
    torch.Size([2, 3])
    >>> bool((Similarity("euclidean").pairs(queries, candidates) <= 0).all())
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

SUPPORTED = ("cosine", "dot", "euclidean", "manhattan")


@dataclass(frozen=True)
class Similarity:
    """A similarity function by name.

    Args:
        name: ``"cosine"``, ``"dot"``, ``"euclidean"`` or ``"manhattan"`` (sentence-transformers' names).
        normalized: The embeddings are L2-normalised, so cosine is a plain dot product.
    """

    name: str = "cosine"
    normalized: bool = True

    def __post_init__(self) -> None:
        if self.name not in SUPPORTED:
            raise ValueError(f"Unsupported similarity function {self.name!r}; st-lsh ranks with one of {SUPPORTED}.")

    @classmethod
    def of(cls, model, normalized: bool = True) -> Similarity:
        """The similarity of a SentenceTransformer (its ``similarity_fn_name``, cosine when unset)."""
        name = getattr(model, "similarity_fn_name", None) or "cosine"
        name = getattr(name, "value", name)  # a SimilarityFunction enum
        return cls("dot" if name == "dot_product" else str(name), normalized)

    def pairs(self, queries: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """Scores ``(n, p)`` of query ``i`` against each of its candidates ``candidates[i]`` (``(n, p, d)``)."""
        queries, candidates = queries.float(), candidates.float()
        if self.name == "dot" or (self.name == "cosine" and self.normalized):
            return torch.bmm(candidates, queries.unsqueeze(-1)).squeeze(-1)
        if self.name == "cosine":
            q = torch.nn.functional.normalize(queries, dim=-1)
            c = torch.nn.functional.normalize(candidates, dim=-1)
            return torch.bmm(c, q.unsqueeze(-1)).squeeze(-1)
        diff = candidates - queries.unsqueeze(1)
        if self.name == "euclidean":
            return -torch.linalg.vector_norm(diff, dim=-1)
        return -diff.abs().sum(dim=-1)

    def aligned(self, queries: torch.Tensor, documents: torch.Tensor) -> torch.Tensor:
        """Scores of row ``i`` of ``queries`` against row ``i`` of ``documents``."""
        return self.pairs(queries, documents.unsqueeze(1)).squeeze(1)

    def matrix(self, queries: torch.Tensor, corpus: torch.Tensor) -> torch.Tensor:
        """Scores ``(n, m)`` of every query against every corpus row."""
        queries, corpus = queries.float(), corpus.float()
        if self.name == "dot" or (self.name == "cosine" and self.normalized):
            return queries @ corpus.T
        if self.name == "cosine":
            return torch.nn.functional.normalize(queries, dim=-1) @ torch.nn.functional.normalize(corpus, dim=-1).T
        return -torch.cdist(queries, corpus, p=2.0 if self.name == "euclidean" else 1.0)

    def from_hamming(self, distances: torch.Tensor, num_bits: int) -> torch.Tensor:
        """Scores estimated from Hamming distances (no stored embeddings): ``cos(pi * h / num_bits)`` estimates the
        cosine, turned into this similarity for unit vectors (euclidean: ``-sqrt(2 - 2 cos)``)."""
        cosine = torch.cos(torch.as_tensor(distances, dtype=torch.float32) * (math.pi / num_bits))
        if self.name in ("cosine", "dot"):
            return cosine
        if self.name == "euclidean":
            return -torch.sqrt((2 - 2 * cosine).clamp(min=0))
        raise ValueError("Scores estimated from codes (store_embeddings=None) are cosines; a manhattan model needs "
                         "stored embeddings (store_embeddings='float32', 'float16' or 'disk').")


def hamming_to_cosine(distances, num_bits: int) -> torch.Tensor:
    """Estimate cosine similarity from Hamming distance: ``cos(pi * h / num_bits)``."""
    return Similarity("cosine").from_hamming(torch.as_tensor(distances), num_bits)
