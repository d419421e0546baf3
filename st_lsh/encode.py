"""Encode texts with a SentenceTransformer, with input checks and a weight-aware embedding cache.

sentence-transformers' cache key covers the model *name*, the prompts and the texts, but not the weights, so a
fine-tuned checkpoint silently reuses the base model's embeddings. :func:`model_fingerprint` hashes the weights
themselves, and :func:`cache_key` includes it.

Example::

    >>> from sentence_transformers import SentenceTransformer
    >>> from st_lsh.encode import encode_texts
    >>> model = SentenceTransformer("sentence-transformers/all-MiniLM-L6-v2")
    >>> embeddings = encode_texts(model, ["a query", "another query"], kind="query", cache_folder="cache/")
    >>> embeddings.shape
    (2, 384)
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch

logger = logging.getLogger(__name__)

TextKind = Literal["query", "document"]


def check_texts(texts: Sequence[Any], name: str) -> list[str]:
    """Return ``texts`` as a list of strings, or raise a ValueError naming the first bad entry."""
    texts = list(texts)
    for position, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(
                f"{name} must contain only strings, but entry {position} is {type(text).__name__}: {text!r:.80}."
            )
    return texts


def model_fingerprint(model: torch.nn.Module) -> str:
    """A digest of every parameter and buffer: it changes whenever the weights change."""
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in model.state_dict().items():
        data = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(data.shape)}:{data.dtype}".encode())
        digest.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest.hexdigest()


def cache_key(
    model: torch.nn.Module,
    texts: Sequence[str],
    prompt: str | None,
    prompt_name: str | None,
    fingerprint: str | None = None,
) -> str:
    """Cache key of an embedding matrix: weights (``fingerprint``, computed if not given), prompts, sequence
    length and texts."""
    digest = hashlib.sha256(usedforsecurity=False)
    fingerprint = fingerprint or model_fingerprint(model)
    settings = (fingerprint, prompt, prompt_name, getattr(model, "max_seq_length", None))
    digest.update(repr(settings).encode())
    for text in texts:
        digest.update(text.encode("utf-8", "surrogatepass"))
        digest.update(b"\0")
    return digest.hexdigest()


def encode_texts(
    model,
    texts: Sequence[str],
    kind: TextKind = "document",
    prompt_name: str | None = None,
    prompt: str | None = None,
    batch_size: int = 32,
    pool: dict | None = None,
    show_progress_bar: bool = True,
    cache_folder: str | None = None,
    fingerprint: str | None = None,
) -> np.ndarray:
    """Normalised float32 embeddings of ``texts`` with ``encode_query`` or ``encode_document``.

    With ``cache_folder``, embeddings are loaded from / saved to ``{kind}_embeddings_{key}.npy``, where the key
    covers the weights, the prompts and the texts (see :func:`cache_key`); pass a precomputed
    :func:`model_fingerprint` to avoid hashing the weights again.
    """
    if not texts:
        raise ValueError(f"Nothing to encode: the {kind} texts are empty.")
    path = None
    if cache_folder:
        os.makedirs(cache_folder, exist_ok=True)
        path = os.path.join(cache_folder, f"{kind}_embeddings_{cache_key(model, texts, prompt, prompt_name, fingerprint)}.npy")
        if os.path.exists(path):
            embeddings = np.load(path)
            logger.info("[Cache] Loaded %s embeddings from %s (shape=%s)", kind, path, embeddings.shape)
            return embeddings
    encode = model.encode_query if kind == "query" else model.encode_document
    embeddings = encode(
        list(texts),
        prompt_name=prompt_name,
        prompt=prompt,
        batch_size=batch_size,
        pool=pool,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=show_progress_bar,
    ).astype(np.float32, copy=False)
    if path is not None:
        np.save(path, embeddings)
        logger.info("[Cache] Saved %s embeddings to %s", kind, path)
    return embeddings
