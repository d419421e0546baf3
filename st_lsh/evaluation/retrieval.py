"""
Retrieve-and-score logic shared by :class:`~st_lsh.evaluation.BEIREvaluator` and
:class:`~st_lsh.evaluation.MSMarcoEvaluator`.

- :func:`evaluate_run` scores a run (``{qid: {docid: score}}`` or a TREC run file) with pytrec_eval, the
  same trec_eval code that BEIR's ``EvaluateRetrieval.evaluate`` and Pyserini use.
- :func:`retrieve` encodes the corpus chunk by chunk and keeps a running top-k (exact search), and/or
  builds an :class:`~st_lsh.index.LSHIndex` and searches it with exact rescoring.
- :class:`RetrievalEvaluator` is the :class:`SentenceEvaluator` both evaluators build on; it also works on
  in-memory ``corpus`` / ``queries`` / ``qrels`` dicts.

Example:
    ::

        from st_lsh.evaluation import evaluate_run

        metrics = evaluate_run(
            "../shared/data/msmarco/qrels.dl19.tsv",
            "../shared/data/msmarco/runs/run.dl19.bm25.top100.trec",
            ndcg_at_k=[10], mrr_at_k=[10], recall_at_k=[100], relevance_level=2,
        )
        # {'ndcg@10': 0.5058, 'recall@100': ..., 'mrr@10': ...}
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pytrec_eval
from sentence_transformers.sentence_transformer.evaluation import SentenceEvaluator

from ..data import Qrels, Run, doc_text, load_qrels, load_trec_run
from ..encode import encode_texts, encode_to_store
from ..index import LSHIndex, Neighbours, exact_topk
from ..pairs import TextTable
from ..rules import LSHSettings
from ..similarity import Similarity
from ..timing import Timings

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

RetrievalMode = Literal["exact", "lsh", "both"]

__all__ = ["RetrievalEvaluator", "evaluate_run", "retrieve", "write_trec_run"]


def _top_k_by_trec_order(docs: Mapping[str, float], k: int) -> dict[str, float]:
    """The first ``k`` documents in trec_eval's ranking order: score descending, then docid descending."""
    return dict(sorted(docs.items(), key=lambda item: (item[1], item[0]), reverse=True)[:k])


def evaluate_run(
    qrels: Qrels | str | os.PathLike,
    run: Run | str | os.PathLike,
    ndcg_at_k: Iterable[int] = (10,),
    map_at_k: Iterable[int] = (),
    recall_at_k: Iterable[int] = (),
    precision_at_k: Iterable[int] = (),
    mrr_at_k: Iterable[int] = (),
    relevance_level: int = 1,
    ignore_identical_ids: bool = False,
) -> dict[str, float]:
    """Score a run against graded qrels with pytrec_eval (trec_eval's measures).

    - ``ndcg@k`` is trec_eval's ``ndcg_cut.k`` with the grades as gains (as BEIR and TREC DL report it).
    - ``map@k``, ``recall@k``, ``precision@k`` are ``map_cut``, ``recall`` and ``P``; ``mrr@k`` is
      ``recip_rank`` on the run cut to its top ``k``. These binary measures count a document as relevant
      when its grade is ``>= relevance_level`` (TREC DL passage: 2; BEIR: 1).
    - Every query in ``qrels`` counts in the average; a judged query absent from the run scores 0
      (trec_eval ``-c``), and is logged.

    Args:
        qrels: ``{qid: {docid: grade}}`` or a qrels file (BEIR or TREC form).
        run: ``{qid: {docid: score}}`` or a TREC run file.
        ignore_identical_ids: drop documents whose id equals the query id (BEIR's default).

    Returns:
        ``{"ndcg@10": ..., "map@100": ..., "recall@100": ..., "precision@10": ..., "mrr@10": ...}``
    """
    if not isinstance(qrels, Mapping):
        qrels = load_qrels(qrels)
    if not isinstance(run, Mapping):
        run = load_trec_run(run)
    if not qrels:
        raise ValueError("qrels are empty: nothing to evaluate against")
    ndcg_at_k, map_at_k, recall_at_k, precision_at_k, mrr_at_k = (
        sorted(set(ks)) for ks in (ndcg_at_k, map_at_k, recall_at_k, precision_at_k, mrr_at_k)
    )
    scored_run: Run = {}
    dropped = 0
    for qid, docs in run.items():
        if qid not in qrels:
            continue
        kept = {str(d): float(s) for d, s in docs.items() if not (ignore_identical_ids and d == qid)}
        dropped += len(docs) - len(kept)
        if kept:
            scored_run[qid] = kept
    if dropped:
        logger.info("Ignored %d retrieved documents whose id equals the query id", dropped)
    unscored = len(qrels) - len(scored_run)
    if unscored:
        logger.warning("%d of %d judged queries have no retrieved documents; they score 0", unscored, len(qrels))

    totals: dict[str, float] = {}

    def accumulate(measures: set[str], run_: Run, level: int, rename: Mapping[str, str]) -> None:
        if not measures:
            return
        per_query = pytrec_eval.RelevanceEvaluator(qrels, measures, relevance_level=level).evaluate(run_)
        for values in per_query.values():
            for measure, name in rename.items():
                totals[name] = totals.get(name, 0.0) + values[measure]

    if ndcg_at_k:
        accumulate(
            {"ndcg_cut." + ",".join(map(str, ndcg_at_k))}, scored_run, 1, {f"ndcg_cut_{k}": f"ndcg@{k}" for k in ndcg_at_k}
        )
    binary: set[str] = set()
    rename: dict[str, str] = {}
    for measure, key, ks in (("map_cut", "map", map_at_k), ("recall", "recall", recall_at_k), ("P", "precision", precision_at_k)):
        if ks:
            binary.add(f"{measure}." + ",".join(map(str, ks)))
            rename.update({f"{measure}_{k}": f"{key}@{k}" for k in ks})
    accumulate(binary, scored_run, relevance_level, rename)
    for k in mrr_at_k:
        cut = {qid: _top_k_by_trec_order(docs, k) for qid, docs in scored_run.items()}
        accumulate({"recip_rank"}, cut, relevance_level, {"recip_rank": f"mrr@{k}"})

    order = [f"{key}@{k}" for key, ks in (("ndcg", ndcg_at_k), ("map", map_at_k), ("recall", recall_at_k),
                                          ("precision", precision_at_k), ("mrr", mrr_at_k)) for k in ks]
    return {name: totals.get(name, 0.0) / len(qrels) for name in order}


def write_trec_run(run: Run, path: str | os.PathLike, tag: str = "st-lsh") -> None:
    """Write ``{qid: {docid: score}}`` as a TREC run file (``qid Q0 docid rank score tag``)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for qid, docs in run.items():
            ranked = sorted(docs.items(), key=lambda item: (-item[1], item[0]))
            for rank, (docid, score) in enumerate(ranked, 1):
                f.write(f"{qid} Q0 {docid} {rank} {score:.8f} {tag}\n")


def retrieve(
    model: SentenceTransformer,
    queries: Sequence[str],
    corpus: Sequence[str],
    k: int,
    modes: Sequence[Literal["exact", "lsh"]] = ("exact",),
    corpus_chunk_size: int = 50_000,
    batch_size: int = 32,
    show_progress_bar: bool = False,
    query_prompt: str | None = None,
    query_prompt_name: str | None = None,
    corpus_prompt: str | None = None,
    corpus_prompt_name: str | None = None,
    lsh_num_bits: int = 512,
    lsh_kwargs: Mapping[str, Any] | None = None,
    cache_folder: str | os.PathLike | None = None,
) -> dict[str, Neighbours]:
    """Encode ``queries`` and ``corpus`` (chunk by chunk, through :func:`~st_lsh.encode.encode_to_store` and its
    weight-aware cache) and return ``{mode: Neighbours}`` of the top ``k`` corpus positions per query.

    Scores use the model's similarity on normalised embeddings. ``"exact"`` is a chunked float search with the
    one running top-k merge; ``"lsh"`` fits an :class:`~st_lsh.index.LSHIndex` on the whole corpus (centred on
    its mean, as the miner does) and searches it with exact rescoring (``lsh_kwargs`` go to
    :class:`~st_lsh.rules.LSHSettings`, e.g. ``store="float16"`` or ``store=None`` for codes only). Identical texts
    are encoded once.
    """
    if not queries:
        raise ValueError("No queries to retrieve for")
    if not corpus:
        raise ValueError("The corpus is empty")
    texts = TextTable("corpus")
    corpus = list(corpus)
    unique_of = np.concatenate([texts.add(corpus[i : i + 65_536]) for i in range(0, len(corpus), 65_536)])
    similarity = Similarity.of(model)
    timings = Timings()
    with timings.stage("encode"):
        query_embeddings = encode_texts(model, list(queries), "query", query_prompt_name, query_prompt, batch_size,
                                        show_progress_bar=show_progress_bar, cache_folder=cache_folder)
        store = encode_to_store(model, texts, "corpus", "float32", corpus_prompt_name, corpus_prompt, batch_size,
                                chunk_size=corpus_chunk_size, cache_folder=cache_folder,
                                show_progress_bar=show_progress_bar)
    results: dict[str, Neighbours] = {}
    # Search the unique texts, then give every duplicate document the score of its text (k plus the duplicates
    # could exceed k unique texts: fetch enough).
    extra = len(corpus) - len(texts)
    k_unique = min(len(texts), k + extra)
    try:
        if "exact" in modes:
            with timings.stage("exact"):
                top = exact_topk(query_embeddings, store.array, k_unique, corpus_chunk_size=corpus_chunk_size,
                                 similarity=similarity)
            results["exact"] = _expand_duplicates(top, unique_of, k)
        if "lsh" in modes:
            with timings.stage("lsh"):
                aliases = {"random_state": "seed", "store_embeddings": "store"}
                settings = LSHSettings(num_bits=lsh_num_bits, **{"store": "float32", **{
                    aliases.get(key, key): value for key, value in (lsh_kwargs or {}).items()}})
                index = LSHIndex(settings=settings, similarity=similarity).fit(store)
                top = index.search(query_embeddings, k=k_unique)
            results["lsh"] = _expand_duplicates(top, unique_of, k)
    finally:
        store.close()
    logger.info("Retrieval timings (s): %s", timings.line())
    return results


def _expand_duplicates(top: Neighbours, unique_of: np.ndarray, k: int) -> Neighbours:
    """Map neighbours among unique texts back to corpus positions (a text shared by several documents ranks
    all of them, lowest position first, with the same score), cut to ``k``."""
    if len(np.unique(unique_of)) == len(unique_of):
        order = np.argsort(unique_of)  # unique text id -> corpus position
        return Neighbours(top.scores[:, :k], order[top.indices[:, :k]])
    members: dict[int, list[int]] = {}
    for position, text_id in enumerate(unique_of.tolist()):
        members.setdefault(text_id, []).append(position)
    scores = np.full((len(top.scores), k), -np.inf, dtype=np.float32)
    indices = np.full((len(top.scores), k), -1, dtype=np.int64)
    for row, (row_scores, row_ids) in enumerate(zip(top.scores.tolist(), top.indices.tolist())):
        column = 0
        for score, text_id in zip(row_scores, row_ids):
            for position in members[text_id]:
                if column == k:
                    break
                scores[row, column], indices[row, column] = score, position
                column += 1
    return Neighbours(scores, indices)


def _to_run(
    query_ids: Sequence[str], corpus_ids: Sequence[str], scores: np.ndarray, indices: np.ndarray, k: int,
    ignore_identical_ids: bool,
) -> Run:
    run: Run = {}
    for qid, row_scores, row_indices in zip(query_ids, scores.tolist(), indices.tolist()):
        docs: dict[str, float] = {}
        for score, idx in zip(row_scores, row_indices):
            if idx < 0:
                break
            docid = corpus_ids[idx]
            if ignore_identical_ids and docid == qid:
                continue
            docs[docid] = score
            if len(docs) == k:
                break
        run[qid] = docs
    return run


class RetrievalEvaluator(SentenceEvaluator):
    """Dense-retrieval evaluator over in-memory ``corpus`` / ``queries`` / ``qrels``, with exact and/or LSH search.

    :class:`~st_lsh.evaluation.BEIREvaluator` and :class:`~st_lsh.evaluation.MSMarcoEvaluator` build it from
    files; use it directly when the data is already in memory.

    Args:
        corpus: ``{doc_id: {"title", "text"}}`` (or ``{doc_id: text}``); encoded as ``title + " " + text``.
        queries: ``{query_id: text}``; only queries with judgments are evaluated.
        qrels: ``{query_id: {doc_id: grade}}``; grade 0 means not relevant.
        ndcg_at_k, map_at_k, recall_at_k, precision_at_k, mrr_at_k: cut-offs of each metric.
        relevance_level: lowest grade counted as relevant by the binary metrics (MAP, Recall, P, MRR).
        ignore_identical_ids: skip retrieved documents whose id equals the query id (BEIR's convention).
        main_metric: metric that becomes :attr:`primary_metric` (of the first mode), e.g. ``"ndcg@10"``.
        retrieval: ``"exact"`` (chunked float search), ``"lsh"`` (LSH index with exact rescoring) or ``"both"``
            (the two side by side; LSH keys are prefixed ``lsh_<bits>_``).
        lsh_num_bits, lsh_kwargs: LSH code length and further :class:`~st_lsh.rules.LSHSettings` fields (``seed``,
            ``store``, ``pool_factor``, ``prefix_bits``, ...).
        corpus_chunk_size: documents encoded at a time; bounds the memory of exact search.
        batch_size, show_progress_bar: passed to ``encode_query`` / ``encode_document``.
        query_prompt, query_prompt_name, corpus_prompt, corpus_prompt_name: prompts, as in
            :class:`~sentence_transformers.sentence_transformer.evaluation.InformationRetrievalEvaluator`.
        name: dataset name, prefixed to every metric key.
        write_csv: append the metrics to ``<csv_file>`` in ``output_path`` (one row per call).
        write_predictions: also write each mode's run as a TREC run file in ``output_path``.
        cache_folder: weight-aware embedding cache (:func:`~st_lsh.encode.encode_to_store`); an evaluation and a
            mining run of the same model and texts then encode the corpus once.
    """

    csv_prefix = "Retrieval_evaluation"

    def __init__(
        self,
        corpus: Mapping[str, Mapping[str, str] | str],
        queries: Mapping[str, str],
        qrels: Qrels,
        ndcg_at_k: Sequence[int] = (10,),
        map_at_k: Sequence[int] = (),
        recall_at_k: Sequence[int] = (100,),
        precision_at_k: Sequence[int] = (),
        mrr_at_k: Sequence[int] = (10,),
        relevance_level: int = 1,
        ignore_identical_ids: bool = False,
        main_metric: str = "ndcg@10",
        retrieval: RetrievalMode = "exact",
        lsh_num_bits: int = 512,
        lsh_kwargs: Mapping[str, Any] | None = None,
        corpus_chunk_size: int = 50_000,
        batch_size: int = 32,
        show_progress_bar: bool = False,
        query_prompt: str | None = None,
        query_prompt_name: str | None = None,
        corpus_prompt: str | None = None,
        corpus_prompt_name: str | None = None,
        name: str = "",
        write_csv: bool = True,
        write_predictions: bool = False,
        cache_folder: str | os.PathLike | None = None,
    ) -> None:
        super().__init__()
        if retrieval not in ("exact", "lsh", "both"):
            raise ValueError(f"retrieval must be 'exact', 'lsh' or 'both', got {retrieval!r}")
        self.query_ids = [qid for qid in queries if qrels.get(qid)]
        if not self.query_ids:
            raise ValueError("No query has judgments in qrels: nothing to evaluate")
        empty = [qid for qid in self.query_ids if not str(queries[qid]).strip()]
        if empty:
            raise ValueError(f"{len(empty)} queries have empty text, e.g. ids {empty[:5]}")
        self.queries = [queries[qid] for qid in self.query_ids]
        self.corpus_ids = list(corpus)
        self.corpus = [doc if isinstance(doc, str) else doc_text(doc) for doc in corpus.values()]
        self.qrels = {qid: dict(qrels[qid]) for qid in self.query_ids}
        self.metric_ks = {
            "ndcg_at_k": list(ndcg_at_k), "map_at_k": list(map_at_k), "recall_at_k": list(recall_at_k),
            "precision_at_k": list(precision_at_k), "mrr_at_k": list(mrr_at_k),
        }
        all_ks = [k for ks in self.metric_ks.values() for k in ks]
        if not all_ks or min(all_ks) < 1:
            raise ValueError(f"Metric cut-offs must be positive and at least one is needed, got {self.metric_ks}")
        self.max_k = max(all_ks)
        metric_names = [f"{key[: -len('_at_k')]}@{k}" for key, ks in self.metric_ks.items() for k in sorted(set(ks))]
        if main_metric not in metric_names:
            raise ValueError(f"main_metric {main_metric!r} is not among the computed metrics {metric_names}")
        self.relevance_level = relevance_level
        self.ignore_identical_ids = ignore_identical_ids
        self.retrieval = retrieval
        self.modes: list[Literal["exact", "lsh"]] = ["exact", "lsh"] if retrieval == "both" else [retrieval]
        self.lsh_num_bits = lsh_num_bits
        self.lsh_kwargs = dict(lsh_kwargs or {})
        self.corpus_chunk_size = corpus_chunk_size
        self.batch_size = batch_size
        self.show_progress_bar = show_progress_bar
        self.query_prompt = query_prompt
        self.query_prompt_name = query_prompt_name
        self.corpus_prompt = corpus_prompt
        self.corpus_prompt_name = corpus_prompt_name
        self.name = name
        self.write_csv = write_csv
        self.write_predictions = write_predictions
        self.cache_folder = cache_folder
        self.main_metric = main_metric
        self.primary_metric = self._mode_prefix(self.modes[0]) + main_metric
        self.csv_file = f"{self.csv_prefix}{'_' + name if name else ''}_results.csv"
        self.csv_headers = ["epoch", "steps"] + [self._mode_prefix(m) + n for m in self.modes for n in metric_names]

    def _mode_prefix(self, mode: str) -> str:
        return "" if mode == "exact" else f"lsh_{self.lsh_num_bits}_"

    def __call__(
        self, model: SentenceTransformer, output_path: str | None = None, epoch: int = -1, steps: int = -1
    ) -> dict[str, float]:
        where = f" after epoch {epoch}" if epoch != -1 else ""
        where += f" after {steps} steps" if steps != -1 else ""
        logger.info("%s of the model on %s%s (%s retrieval):", self.description, self.name or "the data", where,
                    self.retrieval)
        k = self.max_k + (1 if self.ignore_identical_ids else 0)
        found = retrieve(
            model, self.queries, self.corpus, k, modes=self.modes, corpus_chunk_size=self.corpus_chunk_size,
            batch_size=self.batch_size, show_progress_bar=self.show_progress_bar, query_prompt=self.query_prompt,
            query_prompt_name=self.query_prompt_name, corpus_prompt=self.corpus_prompt,
            corpus_prompt_name=self.corpus_prompt_name, lsh_num_bits=self.lsh_num_bits, lsh_kwargs=self.lsh_kwargs,
            cache_folder=self.cache_folder,
        )
        metrics: dict[str, float] = {}
        for mode in self.modes:
            run = _to_run(self.query_ids, self.corpus_ids, *found[mode], self.max_k, self.ignore_identical_ids)
            scores = evaluate_run(self.qrels, run, relevance_level=self.relevance_level,
                                  ignore_identical_ids=self.ignore_identical_ids, **self.metric_ks)
            metrics.update({self._mode_prefix(mode) + key: value for key, value in scores.items()})
            if self.write_predictions and output_path is not None:
                suffix = "" if mode == "exact" else f"_lsh_{self.lsh_num_bits}"
                write_trec_run(run, os.path.join(output_path, self.csv_file.replace("_results.csv", f"{suffix}.trec")))
        for key, value in metrics.items():
            logger.info("%s: %.4f", key, value)

        if output_path is not None and self.write_csv:
            os.makedirs(output_path, exist_ok=True)
            csv_path = os.path.join(output_path, self.csv_file)
            write_header = not os.path.isfile(csv_path)
            with open(csv_path, "a", newline="", encoding="utf-8") as f:
                writer = csv.writer(f)
                if write_header:
                    writer.writerow(self.csv_headers)
                writer.writerow([epoch, steps] + [metrics[h] for h in self.csv_headers[2:]])

        metrics = self.prefix_name_to_metrics(metrics, self.name)
        self.store_metrics_in_model_card_data(model, metrics, epoch, steps)
        return metrics

    def get_config_dict(self) -> dict[str, Any]:
        config: dict[str, Any] = {"retrieval": self.retrieval}
        if self.retrieval != "exact":
            config["lsh_num_bits"] = self.lsh_num_bits
        for key in ("query_prompt", "query_prompt_name", "corpus_prompt", "corpus_prompt_name"):
            if getattr(self, key) is not None:
                config[key] = getattr(self, key)
        return config
