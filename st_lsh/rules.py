"""The mining policy: which candidates may become negatives, and how the LSH stage finds them.

Two frozen objects hold every decision that the miner, the training-time refresher, the batch sampler and the
evaluators share, so that each decision has exactly one home:

- :class:`NegativeRules`: the rank window, margins, score bounds, sampling and the number of negatives, with the
  meaning they have in ``sentence_transformers.util.mine_hard_negatives`` (including how ``range_max`` is derived
  when it is not given, and the same error messages);
- :class:`LSHSettings`: code length, centring, seed, the embedding store, the search backend and the candidate
  pool rule (:meth:`LSHSettings.pool_size`, the one place that decides how many Hamming candidates are rescored).

``mine_hard_negatives`` keeps sentence-transformers' flat signature and builds these objects first; everything
downstream passes them around, and a curriculum changes them with :func:`dataclasses.replace`.

Example::

    >>> from dataclasses import replace
    >>> from st_lsh.rules import LSHSettings, NegativeRules
    >>> rules = NegativeRules(num_negatives=1, range_min=10, relative_margin=0.05)
    >>> rules.resolve(max_positives=2).range_max        # derived as sentence-transformers does: 10 + 1 * 10 + 2
    22
    >>> replace(rules, range_min=0).range_min
    0
    >>> LSHSettings().pool_size(window=24, n_corpus=100_000)   # max(8 x window, 256)
    256
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, replace
from typing import Literal

SamplingStrategy = Literal["top", "random"]
Centering = Literal["corpus", "both", "none"]
StoreKind = Literal["float32", "float16", "disk"]
Backend = Literal["auto", "numba", "faiss", "torch", "numpy", "faiss-ivf"]

DEFAULT_NUM_BITS = 512
DEFAULT_POOL_FACTOR = 8.0
MIN_POOL = 256  # small windows need a larger relative pool: rescoring 256 candidates per query is cheap


@dataclass(frozen=True)
class NegativeRules:
    """Which ranked candidates become negatives (sentence-transformers' ``mine_hard_negatives`` semantics).

    Candidates are ranked by similarity to the anchor; positives are excluded (unless ``include_positives``);
    ``absolute_margin`` / ``relative_margin`` drop candidates too close to the query's *lowest* positive score;
    ``max_score`` / ``min_score`` bound the score; the surviving candidates ranked ``[range_min, range_max)`` form
    the window, from which ``num_negatives`` are taken by ``sampling_strategy`` ("top" or "random").

    ``range_max=None`` is derived from the data by :meth:`resolve`, exactly as sentence-transformers derives it.
    Invalid values raise the ``ValueError`` that sentence-transformers raises, with its message.
    """

    num_negatives: int = 3
    range_min: int = 0
    range_max: int | None = None
    absolute_margin: float | None = None
    relative_margin: float | None = None
    max_score: float | None = None
    min_score: float | None = None
    sampling_strategy: SamplingStrategy = "top"
    include_positives: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.num_negatives, bool) or not isinstance(self.num_negatives, numbers.Integral) \
                or self.num_negatives < 1:
            raise ValueError(f"num_negatives must be at least 1, got num_negatives={self.num_negatives}.")
        if self.range_min < 0:
            raise ValueError(f"range_min must be non-negative, got range_min={self.range_min}.")
        if self.sampling_strategy not in ("top", "random"):
            raise ValueError(f"sampling_strategy must be 'top' or 'random', got {self.sampling_strategy!r}.")
        if self.range_max is not None:
            if self.range_min >= self.range_max:
                raise ValueError(
                    f"range_min must be smaller than range_max, "
                    f"got range_min={self.range_min} and range_max={self.range_max}."
                )
            if self.num_negatives > self.range_max - self.range_min:
                raise ValueError(
                    f"Cannot mine {self.num_negatives} negatives per query: only {self.range_max - self.range_min} "
                    f"candidates remain after skipping the first range_min={self.range_min} of "
                    f"range_max={self.range_max}. Consider decreasing num_negatives or range_min, or increasing "
                    "range_max."
                )

    def filtering(self, cross_encoder: bool = False) -> bool:
        """True when a filter may drop candidates, so the derived window leaves room for ten times more."""
        return (
            self.absolute_margin is not None
            or self.relative_margin is not None
            or self.max_score is not None
            or (cross_encoder and self.min_score is not None)
        )

    def resolve(self, max_positives: int, cross_encoder: bool = False) -> NegativeRules:
        """These rules with ``range_max`` set: the given one, or sentence-transformers' derivation
        ``range_min + num_negatives * (10 if filtering else 1) + max_positives``."""
        if self.range_max is not None:
            return self
        factor = 10 if self.filtering(cross_encoder) else 1
        return replace(self, range_max=self.range_min + self.num_negatives * factor + max_positives)

    def window(self, max_positives: int) -> int:
        """Candidates ranked per query: ``range_max + max_positives`` (room for the positives, masked later)."""
        if self.range_max is None:
            raise ValueError("resolve() the rules first: range_max is not set.")
        return self.range_max + max_positives

    def knobs(self) -> list[str]:
        """The parameters a user can change to find more negatives, in sentence-transformers' order."""
        knobs = ["range_max"] + (["range_min"] if self.range_min > 0 else [])
        return knobs + [n for n in ("absolute_margin", "relative_margin", "max_score") if getattr(self, n) is not None]


@dataclass(frozen=True)
class LSHSettings:
    """How the LSH stage hashes, stores and searches.

    Args:
        num_bits: Bits per code, a positive multiple of 8 (``num_bits / 8`` bytes per text).
        center: ``"corpus"`` centres corpus projections on the corpus mean, so every bit splits the corpus evenly
            (the paper's centring); ``"both"`` centres queries too; ``"none"`` centres nothing. The centre is the
            mean of the *whole* corpus (:meth:`st_lsh.LSHHasher.fit`), wherever the codes are computed.
        seed: Seed of the projection (and of random sampling in the miner).
        pool_factor: Hamming candidates per query, as a multiple of the rank window, rescored exactly.
        min_pool: Lower bound of the pool (small windows need a larger relative pool).
        candidate_pool: An absolute pool size that overrides ``pool_factor`` and ``min_pool``.
        store: Embeddings kept for exact rescoring: ``"float32"`` (RAM), ``"float16"`` (RAM, half the size),
            ``"disk"`` (a float32 memory-mapped file), or None (codes only; scores estimated from Hamming distance).
        backend: Hamming search backend, see :func:`st_lsh.hamming_topk`.
        prefix_bits: First stage of the search cascade: the first ``prefix_bits`` of each code (themselves a valid
            shorter LSH code) select ``prefix_factor`` times the pool, which the full-length distance then cuts to
            the pool. None (or ``prefix_bits >= num_bits``) scans the full-length codes directly.
        prefix_factor: Size of the prefix stage's wide pool, as a multiple of the pool.
    """

    num_bits: int = DEFAULT_NUM_BITS
    center: Centering = "corpus"
    seed: int | None = 42
    pool_factor: float = DEFAULT_POOL_FACTOR
    min_pool: int = MIN_POOL
    candidate_pool: int | None = None
    store: StoreKind | None = "float32"
    backend: Backend = "auto"
    prefix_bits: int | None = None
    prefix_factor: float = 4.0

    def __post_init__(self) -> None:
        check_num_bits(self.num_bits)
        if self.center not in ("corpus", "both", "none"):
            raise ValueError(f"center must be 'corpus', 'both' or 'none', got {self.center!r}.")
        if not self.pool_factor >= 1:
            raise ValueError(f"pool_factor must be at least 1, got {self.pool_factor}.")
        if self.candidate_pool is not None and self.candidate_pool < 1:
            raise ValueError(f"candidate_pool must be a positive integer, got {self.candidate_pool}.")
        if self.store not in (None, "float32", "float16", "disk"):
            raise ValueError(f"store_embeddings must be 'float32', 'float16', 'disk' or None, got {self.store!r}.")
        if self.backend not in ("auto", "numba", "faiss", "torch", "numpy", "faiss-ivf"):
            raise ValueError("search_backend must be 'auto', 'numba', 'faiss', 'torch', 'numpy' or 'faiss-ivf', "
                             f"got {self.backend!r}.")
        if self.prefix_bits is not None and (self.prefix_bits < 64 or self.prefix_bits % 64):
            raise ValueError(f"prefix_bits must be a positive multiple of 64, got {self.prefix_bits}.")
        if not self.prefix_factor >= 1:
            raise ValueError(f"prefix_factor must be at least 1, got {self.prefix_factor}.")

    @classmethod
    def from_center(cls, center: bool | str, **kwargs) -> LSHSettings:
        """Accept ``center=True`` / ``False`` as the flat APIs do (``"corpus"`` / ``"none"``)."""
        if isinstance(center, bool):
            center = "corpus" if center else "none"
        return cls(center=center, **kwargs)

    @property
    def rescores(self) -> bool:
        """True when candidates are rescored exactly (embeddings are stored)."""
        return self.store is not None

    def pool_size(self, window: int, n_corpus: int) -> int:
        """Hamming candidates per query for a rank window of ``window``: the one pool rule.

        ``candidate_pool`` if given, else ``max(ceil(pool_factor * window), min_pool)``; never below the window
        and never above the corpus. Without stored embeddings there is nothing to rescore: the pool is the window.
        """
        if n_corpus < 1:
            raise ValueError("The corpus is empty.")
        window = min(max(1, window), n_corpus)
        if not self.rescores:
            return window
        pool = self.candidate_pool if self.candidate_pool is not None else max(
            math.ceil(self.pool_factor * window), self.min_pool
        )
        return min(max(pool, window), n_corpus)

    def prefix_pool_size(self, pool: int, n_corpus: int) -> int | None:
        """Size of the prefix stage's wide pool for a pool of ``pool``, or None when no prefix stage runs."""
        if self.prefix_bits is None or self.prefix_bits >= self.num_bits:
            return None
        wide = math.ceil(self.prefix_factor * pool)
        return wide if wide < n_corpus else None


def check_num_bits(num_bits: int) -> int:
    """Return ``num_bits`` if it is a positive multiple of 8, else raise a ValueError naming the problem."""
    if isinstance(num_bits, bool) or not isinstance(num_bits, numbers.Integral) or num_bits <= 0 or num_bits % 8:
        raise ValueError(f"num_bits must be a positive multiple of 8, got num_bits={num_bits!r}.")
    return int(num_bits)
