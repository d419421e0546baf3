"""Capture the sentence embeddings that training forward passes compute, keyed by the text they came from.

The incremental refresh reuses them instead of re-encoding: a forward hook on the SentenceTransformer reads the
``sentence_embedding`` of every row together with its ``input_ids``, and a table built once by tokenising the
known texts (queries and corpus) maps the token ids back to text ids. Texts whose tokenisation matches no known
text (other prompts, augmented inputs) are ignored. Only forward passes in training mode are captured, so the
refresher's own encodes and the evaluators do not count as "seen in training".

Example::

    >>> capture = EmbeddingCapture(model, {"query": queries, "corpus": corpus})
    >>> capture.attach()                 # training forward passes now fill capture.pending
    >>> pending = capture.pop()          # {"query": {id: embedding}, "corpus": {id: embedding}}
    >>> capture.detach()
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)


def _token_keys(input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> list[bytes]:
    ids = input_ids.detach().cpu().to(torch.int64)
    lengths = (
        attention_mask.detach().cpu().sum(dim=1).tolist() if attention_mask is not None else [ids.shape[1]] * len(ids)
    )
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
        tables: Mapping[str, Sequence[str]],
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
                chunk = list(texts[start : start + batch_size])
                features = model.preprocess(chunk, prompt=prompt) if prompt else model.preprocess(chunk)
                keys = _token_keys(features["input_ids"], features.get("attention_mask"))
                for offset, key in enumerate(keys):
                    self._lookup.setdefault(key, []).append((name, start + offset))
        self.pending: dict[str, dict[int, np.ndarray]] = {name: {} for name in self.tables}
        self.forward_rows = 0
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
        embeddings, input_ids = output.get("sentence_embedding"), output.get("input_ids")
        if embeddings is None or input_ids is None:
            return
        vectors = torch.nn.functional.normalize(embeddings.detach().float(), dim=-1).cpu().numpy()
        self.forward_rows += len(vectors)
        for row, key in enumerate(_token_keys(input_ids, output.get("attention_mask"))):
            for name, position in self._lookup.get(key, ()):
                self.pending[name][position] = vectors[row]

    def pop(self) -> dict[str, dict[int, np.ndarray]]:
        """The embeddings captured since the last ``pop``, per table and text position; clears them."""
        pending, self.pending = self.pending, {name: {} for name in self.tables}
        self.forward_rows = 0
        return pending
