"""Random-hyperplane LSH: embeddings to packed binary codes.

Each embedding is projected onto ``num_bits`` random directions, optionally centred by the mean projection
of the whole corpus (so every bit splits the corpus roughly in half), binarised by sign and packed to
``num_bits // 8`` bytes. With orthonormal directions (QR of a Gaussian matrix, blocks stacked when
``num_bits`` exceeds the embedding dimension) the Hamming distance of two codes estimates the angle between
the embeddings: ``cos(pi * hamming / num_bits) ~ cos_sim``.

Reference: Deuser et al. 2025, "Locality-Sensitive Hashing for Efficient Hard Negative Sampling in
Contrastive Learning", https://arxiv.org/abs/2505.17844 (Charikar 2002 for the random-hyperplane scheme).

Example::

    >>> import numpy as np
    >>> from st_lsh import LSHHasher
    >>> embeddings = np.random.default_rng(0).standard_normal((1000, 384)).astype(np.float32)
    >>> hasher = LSHHasher(num_bits=256, random_state=42)
    >>> codes = hasher.fit_transform(embeddings)
    >>> codes.shape, codes.dtype
    ((1000, 32), dtype('uint8'))
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "hasher.pt")
    >>> hasher.save(path); LSHHasher.load(path).transform(embeddings[:2]).shape
    (2, 32)
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

from .rules import Centering, check_num_bits

if TYPE_CHECKING:
    from .store import EmbeddingStore

logger = logging.getLogger(__name__)

ArrayLike = np.ndarray | torch.Tensor
Projection = Literal["orthonormal", "gaussian"]
Role = Literal["corpus", "query"]

# Bit weights used to pack 8 sign bits into one byte, most significant bit first (numpy.packbits order).
_BIT_WEIGHTS = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8)


def check_embeddings(embeddings: ArrayLike, name: str = "embeddings", offset: int = 0) -> torch.Tensor:
    """Turn ``embeddings`` (one chunk) into a 2-d float tensor, rejecting NaN/inf values and all-zero rows.

    A zero or non-finite embedding has no direction, so its code (and every similarity derived from it)
    would be meaningless; we refuse it instead of returning a silently wrong result. ``offset`` is the chunk's
    first row, so that errors name global rows. Large inputs are checked chunk by chunk by the callers.
    """
    tensor = torch.as_tensor(np.asarray(embeddings) if isinstance(embeddings, np.memmap) else embeddings)
    if tensor.ndim != 2:
        raise ValueError(f"{name} must be a 2-d array of shape (n, dim), got shape {tuple(tensor.shape)}.")
    if not torch.is_floating_point(tensor):
        tensor = tensor.float()
    if tensor.shape[0] == 0:
        raise ValueError(f"{name} is empty: nothing to hash.")
    finite = torch.isfinite(tensor).all(dim=1)
    if not bool(finite.all()):
        bad = (torch.nonzero(~finite).flatten()[:5] + offset).tolist()
        raise ValueError(
            f"{name} contain NaN or infinite values in {int((~finite).sum())} rows (first rows: {bad}). "
            "Check the model and the input texts."
        )
    zero = tensor.abs().amax(dim=1) == 0
    if bool(zero.any()):
        bad = (torch.nonzero(zero).flatten()[:5] + offset).tolist()
        raise ValueError(
            f"{name} contain {int(zero.sum())} all-zero rows (first rows: {bad}); a zero vector has no direction "
            "to hash or rank. Check the model and the input texts."
        )
    return tensor


def pack_bits(bits: torch.Tensor) -> torch.Tensor:
    """Pack a boolean tensor ``(n, num_bits)`` into ``(n, num_bits // 8)`` uint8, MSB first like ``np.packbits``."""
    n, num_bits = bits.shape
    weights = _BIT_WEIGHTS.to(bits.device)
    return (bits.view(n, num_bits // 8, 8).to(torch.uint8) * weights).sum(dim=2, dtype=torch.uint8)


def unpack_bits(codes: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`pack_bits`: ``(n, num_bytes)`` uint8 to a boolean ``(n, num_bytes * 8)`` tensor."""
    weights = _BIT_WEIGHTS.to(codes.device)
    return (codes.unsqueeze(-1) & weights).ne(0).flatten(1)


class LSHHasher:
    """Seeded random-hyperplane hasher with scikit-learn style ``fit`` / ``transform``.

    Args:
        num_bits: Code length in bits; a positive multiple of 8. Each text costs ``num_bits // 8`` bytes.
        center: Where to subtract the mean projection of the fitted (corpus) set before taking signs, which
            balances the bits (the paper's centring). ``"corpus"`` (the default, same as ``True``) centres the
            corpus codes and hashes queries against the plain hyperplanes; ``"both"`` centres queries too;
            ``False`` / ``"none"`` centres nothing. On SciFact with all-MiniLM-L6-v2, ``"corpus"`` ranks
            closest to exact search at 256-1024 bits (``eval/results/bench_neighbours_scifact.md``): balanced
            corpus bits carry more information, while centring the query by the *corpus* mean measures the
            angle between shifted vectors, which no longer orders documents by cosine.
        random_state: Seed of the projection. The same seed and dimension give the same projection on every
            device, because the matrix is drawn on the CPU.
        projection: ``"orthonormal"`` (QR of Gaussian blocks, the default) or ``"gaussian"`` (plain i.i.d.
            directions, kept for the ablation of the paper's Fig. 6).
        device: Where projections run: ``"cuda"``, ``"cpu"`` or None for CUDA when available.
        chunk_size: Rows projected at a time, which bounds the memory of :meth:`transform`.

    Attributes (after :meth:`fit`):
        projection_: ``(num_bits, dim)`` float32 tensor of directions.
        center_: ``(num_bits,)`` float32 mean projection of the fitted set (zeros when ``center=False``).
    """

    def __init__(
        self,
        num_bits: int = 512,
        center: bool | Centering = "corpus",
        random_state: int | None = 42,
        projection: Projection = "orthonormal",
        device: str | torch.device | None = None,
        chunk_size: int = 65536,
    ) -> None:
        self.num_bits = check_num_bits(num_bits)
        center = {True: "corpus", False: "none"}.get(center, center) if isinstance(center, bool) else center
        if center not in ("corpus", "both", "none"):
            raise ValueError(f"center must be True, False, 'corpus', 'both' or 'none', got {center!r}.")
        if projection not in ("orthonormal", "gaussian"):
            raise ValueError(f"projection must be 'orthonormal' or 'gaussian', got {projection!r}.")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive integer, got {chunk_size}.")
        self.center: Centering = center
        self.random_state = random_state
        self.projection = projection
        self.device = torch.device(device) if device is not None else _default_device()
        self.chunk_size = int(chunk_size)
        self.projection_: torch.Tensor | None = None
        self.center_: torch.Tensor | None = None

    @property
    def num_bytes(self) -> int:
        return self.num_bits // 8

    @property
    def is_fitted(self) -> bool:
        return self.projection_ is not None

    @property
    def dim(self) -> int | None:
        return None if self.projection_ is None else int(self.projection_.shape[1])

    def _draw_projection(self, dim: int) -> torch.Tensor:
        generator = torch.Generator(device="cpu")
        generator.manual_seed(int(self.random_state) if self.random_state is not None else torch.seed())
        if self.projection == "gaussian":
            matrix = torch.randn(self.num_bits, dim, generator=generator, dtype=torch.float64)
            matrix /= matrix.norm(dim=1, keepdim=True)
        else:
            blocks = []
            threads = torch.get_num_threads()
            torch.set_num_threads(1)  # a small QR: threads only add spin-wait when the cores are busy
            try:
                factors = [
                    torch.linalg.qr(torch.randn(dim, dim, generator=generator, dtype=torch.float64))
                    for _ in range(math.ceil(self.num_bits / dim))
                ]
            finally:
                torch.set_num_threads(threads)
            for q, r in factors:
                # Fix the signs so that Q is Haar-distributed (and deterministic across LAPACK builds).
                q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)
                blocks.append(q.T)  # rows are orthonormal
            matrix = torch.cat(blocks)[: self.num_bits]
        return matrix.float()

    def fit(self, embeddings: ArrayLike | EmbeddingStore) -> LSHHasher:
        """Draw the projection and, when centring, centre it on the mean of the *whole* corpus.

        ``embeddings`` is an array (a memory map too) or an :class:`~st_lsh.store.EmbeddingStore`; it is read
        chunk by chunk (rows checked per chunk), so it never needs to fit in memory twice.
        """
        total, count = column_sum(embeddings, self.chunk_size)
        return self.fit_from_sum(total, count)

    def fit_from_sum(self, total: torch.Tensor, count: int) -> LSHHasher:
        """Fit from the float64 column sums of the corpus and its row count (e.g. summed over ranks).

        This is the one centring rule: centre = projection @ float32(sum / count), the mean projection of the
        whole corpus. Chunked, streamed and distributed sums round to the same float32 mean (float64 sums that
        differ by ~1e-16 relative almost never straddle a float32 rounding boundary).
        """
        if count < 1:
            raise ValueError("Cannot fit an LSHHasher on an empty corpus.")
        dim = int(total.shape[0])
        self.projection_ = self._draw_projection(dim).to(self.device)
        if self.center != "none":
            mean = (total.double() / count).float().to(self.device)
            self.center_ = self.projection_ @ mean  # projection is linear: the mean projection
        else:
            self.center_ = torch.zeros(self.num_bits, device=self.device)
        logger.debug("Fitted LSHHasher(num_bits=%d, dim=%d, center=%s)", self.num_bits, dim, self.center)
        return self

    def project(self, embeddings: ArrayLike, role: Role = "corpus") -> torch.Tensor:
        """Projections ``(n, num_bits)`` as float32 on ``self.device``, centred as ``center`` says for ``role``
        (``"corpus"`` or ``"query"``); their signs give the code."""
        self._check_fitted(embeddings)
        if role not in ("corpus", "query"):
            raise ValueError(f"role must be 'corpus' or 'query', got {role!r}.")
        tensor = torch.as_tensor(embeddings).to(self.device, torch.float32)
        projected = tensor @ self.projection_.T
        if self.center == "both" or (self.center == "corpus" and role == "corpus"):
            projected -= self.center_
        return projected

    def transform(self, embeddings: ArrayLike | EmbeddingStore, role: Role = "corpus") -> np.ndarray:
        """Hash embeddings to packed codes: a ``(n, num_bits // 8)`` uint8 array, in chunks of ``chunk_size``.

        ``role="query"`` hashes search queries (uncentred unless ``center="both"``)."""
        if self.projection_ is None:
            raise ValueError("This LSHHasher is not fitted yet: call fit() on corpus embeddings first.")
        n = len(embeddings)
        if n == 0:
            raise ValueError("embeddings is empty: nothing to hash.")
        out = np.empty((n, self.num_bytes), dtype=np.uint8)
        for start, chunk in _chunks(embeddings, self.chunk_size):
            tensor = check_embeddings(chunk, offset=start)
            out[start : start + tensor.shape[0]] = pack_bits(self.project(tensor, role) > 0).cpu().numpy()
        return out

    def fit_transform(self, embeddings: ArrayLike | EmbeddingStore) -> np.ndarray:
        return self.fit(embeddings).transform(embeddings)

    def _check_fitted(self, embeddings: ArrayLike) -> None:
        if self.projection_ is None:
            raise ValueError("This LSHHasher is not fitted yet: call fit() on corpus embeddings first.")
        dim = embeddings.shape[1]
        if dim != self.projection_.shape[1]:
            raise ValueError(
                f"Embedding dimension {dim} does not match the hasher's dimension {self.projection_.shape[1]}."
            )

    def state_dict(self) -> dict:
        """Everything needed to rebuild the hasher: settings, projection and centre."""
        return {
            "num_bits": self.num_bits,
            "center": self.center,
            "random_state": self.random_state,
            "projection": self.projection,
            "chunk_size": self.chunk_size,
            "projection_": None if self.projection_ is None else self.projection_.cpu(),
            "center_": None if self.center_ is None else self.center_.cpu(),
        }

    @classmethod
    def from_state_dict(cls, state: dict, device: str | torch.device | None = None) -> LSHHasher:
        hasher = cls(
            num_bits=state["num_bits"],
            center={True: "corpus", False: "none"}.get(state["center"], state["center"]),
            random_state=state["random_state"],
            projection=state["projection"],
            device=device,
            chunk_size=state.get("chunk_size", 65536),
        )
        if state.get("projection_") is not None:
            hasher.projection_ = state["projection_"].to(hasher.device)
            hasher.center_ = state["center_"].to(hasher.device)
        return hasher

    def save(self, path: str | Path) -> None:
        """Save settings, projection and centre with ``torch.save``."""
        torch.save(self.state_dict(), path)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device | None = None) -> LSHHasher:
        return cls.from_state_dict(torch.load(path, map_location="cpu", weights_only=True), device=device)

    def __repr__(self) -> str:
        return (
            f"LSHHasher(num_bits={self.num_bits}, center={self.center}, random_state={self.random_state}, "
            f"projection={self.projection!r}, device={str(self.device)!r}, fitted={self.is_fitted})"
        )


def _chunks(embeddings: ArrayLike | EmbeddingStore, chunk_size: int):
    if hasattr(embeddings, "chunks"):
        yield from embeddings.chunks(chunk_size)
        return
    for start in range(0, len(embeddings), chunk_size):
        yield start, embeddings[start : start + chunk_size]


def column_sum(embeddings: ArrayLike | EmbeddingStore, chunk_size: int = 65536) -> tuple[torch.Tensor, int]:
    """float64 column sums and row count of ``embeddings``, read chunk by chunk (each chunk checked)."""
    total: torch.Tensor | None = None
    count = 0
    for start, chunk in _chunks(embeddings, chunk_size):
        tensor = check_embeddings(chunk, offset=start)
        part = tensor.double().sum(dim=0).cpu()
        total = part if total is None else total + part
        count += tensor.shape[0]
    if total is None:
        raise ValueError("embeddings is empty: nothing to hash.")
    return total, count


def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
