"""Helpers shared by the test modules (plain functions and classes, no fixtures that tests could modify)."""

from __future__ import annotations

import re

import numpy as np
from datasets import Dataset

_NUMBER = re.compile(r"-?\d[\d,]*\.\d+|-?\d[\d,]*|nan|-?inf")


def assert_same_printout(actual: str, expected: str) -> None:
    """The same lines, words and counts; scores printed with 4 decimals may differ by one in the last digit
    (sentence-transformers' matrix product and ours round differently at 1e-7)."""
    assert len(actual.splitlines()) == len(expected.splitlines()), f"{actual!r} != {expected!r}"
    for got, want in zip(actual.splitlines(), expected.splitlines()):
        assert _NUMBER.sub("#", got) == _NUMBER.sub("#", want), f"{got!r} != {want!r}"
        for a, b in zip(_NUMBER.findall(got), _NUMBER.findall(want)):
            if "." in b and "%" not in want[want.find(b):want.find(b) + len(b) + 1]:
                assert abs(float(a.replace(",", "")) - float(b.replace(",", ""))) <= 1.5e-4, f"{got!r} != {want!r}"
            else:
                assert a == b, f"{got!r} != {want!r}"


class MemoModel:
    """Delegates to a SentenceTransformer but encodes each (texts, prompt) once, so that sentence-transformers'
    miner and ours, run on the same inputs, share one encoding (embeddings are returned as copies)."""

    def __init__(self, model) -> None:
        self._model, self._memo = model, {}

    def __getattr__(self, name):
        return getattr(self._model, name)

    def _encode(self, kind: str, texts, **kwargs):
        key = (kind, tuple(texts), kwargs.get("prompt"), kwargs.get("prompt_name"))
        if key not in self._memo:
            kwargs.update(normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False, pool=None)
            self._memo[key] = getattr(self._model, kind)(list(texts), **kwargs)
        return self._memo[key].copy()

    def encode_query(self, texts, **kwargs):
        return self._encode("encode_query", texts, **kwargs)

    def encode_document(self, texts, **kwargs):
        return self._encode("encode_document", texts, **kwargs)


def assert_same_dataset(expected: Dataset, actual: Dataset) -> None:
    assert actual.column_names == expected.column_names
    assert len(actual) == len(expected)
    for column in expected.column_names:
        want, got = expected[column], actual[column]
        if column in ("scores", "score"):
            np.testing.assert_allclose(np.asarray(got, dtype=float), np.asarray(want, dtype=float), atol=1e-5)
        else:
            assert got == want, f"column {column!r} differs"


# A toy set: small enough to check by hand, rich enough for duplicates and multiple positives.
TOY_PAIRS = [
    ("What is the capital of France?", "Paris is the capital of France."),
    ("What is the capital of France?", "The French capital is Paris, on the Seine."),
    ("How do plants make food?", "Plants make food by photosynthesis, using sunlight."),
    ("Who wrote Hamlet?", "Hamlet is a tragedy written by William Shakespeare."),
    ("What is the boiling point of water?", "Water boils at 100 degrees Celsius at sea level."),
    ("How far is the Moon?", "The Moon is about 384,400 km from Earth."),
    ("What do bees produce?", "Bees produce honey and beeswax."),
]
TOY_CORPUS = [
    "Lyon is a large city in France.",
    "Berlin is the capital of Germany.",
    "Photosynthesis happens in chloroplasts.",
    "Macbeth is another play by Shakespeare.",
    "Salt water boils at a slightly higher temperature.",
    "Mars is about 225 million km from Earth on average.",
    "Wasps do not make honey.",
    "The Eiffel Tower is in Paris.",
    "Fungi do not photosynthesize.",
    "Ice melts at 0 degrees Celsius.",
    "The Sun is a star.",
    "Marlowe was a contemporary of Shakespeare.",
    "Honey never spoils if stored well.",
    "Madrid is the capital of Spain.",
]
