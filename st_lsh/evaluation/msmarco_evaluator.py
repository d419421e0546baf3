"""MS MARCO passage / TREC DL evaluation as a sentence-transformers evaluator."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..data import load_msmarco
from .retrieval import RetrievalEvaluator, RetrievalMode

logger = logging.getLogger(__name__)


class MSMarcoEvaluator(RetrievalEvaluator):
    """Evaluate a model on MS MARCO passage ranking: MRR@10, nDCG@10 and Recall@100/1000 on a judged query set
    (dev-small, or TREC DL 2019/2020 with graded qrels), retrieving from ``collection`` encoded in chunks of
    ``corpus_chunk_size`` passages so that memory stays bounded.

    The binary metrics (MRR, Recall) count a passage as relevant from grade ``relevance_level`` on. By default
    that is 2 when the qrels are graded (TREC DL's convention for passages) and 1 otherwise (dev-small).
    nDCG uses the grades as gains. The primary metric defaults to nDCG@10 on graded qrels, MRR@10 otherwise.

    Judged passages missing from ``collection`` stay in the qrels (counted as not retrieved) and are logged; a
    ``collection`` that lacks the text of a query's every relevant passage (dev-small with a subset) is an error.

    Args:
        collection: ``collection.tsv`` (``pid<TAB>passage``).
        queries: ``queries.*.tsv`` (``qid<TAB>text``).
        qrels: qrels in TREC (``qid 0 pid grade``) or BEIR form.
        relevance_level: lowest grade counted as relevant by MRR and Recall; None picks it from the qrels.
        main_metric: primary metric; None picks it from the qrels.
        name: prefix of the metric keys; defaults to the qrels file name without extension (e.g. ``qrels.dl19``
            gives ``dl19``).
        **kwargs: further :class:`~st_lsh.evaluation.retrieval.RetrievalEvaluator` arguments (``retrieval``,
            ``lsh_num_bits``, ``corpus_chunk_size``, ``batch_size``, prompts, ``write_csv``, ...).

    Example:
        ::

            from sentence_transformers import SentenceTransformer
            from st_lsh.evaluation import MSMarcoEvaluator

            model = SentenceTransformer("sentence-transformers/all-MiniLM-L6-v2")
            evaluator = MSMarcoEvaluator(
                collection="../shared/data/msmarco/collection.tsv",
                queries="../shared/data/msmarco/queries.dl19.tsv",
                qrels="../shared/data/msmarco/qrels.dl19.tsv",
            )
            results = evaluator(model)
            # {'dl19_ndcg@10': ..., 'dl19_recall@100': ..., 'dl19_recall@1000': ..., 'dl19_mrr@10': ...}
    """

    csv_prefix = "MSMarco_evaluation"

    def __init__(
        self,
        collection: str | os.PathLike,
        queries: str | os.PathLike,
        qrels: str | os.PathLike,
        ndcg_at_k: Sequence[int] = (10,),
        mrr_at_k: Sequence[int] = (10,),
        recall_at_k: Sequence[int] = (100, 1000),
        relevance_level: int | None = None,
        main_metric: str | None = None,
        retrieval: RetrievalMode = "exact",
        name: str | None = None,
        skip_unanswerable: bool = False,
        **kwargs: Any,
    ) -> None:
        corpus, query_texts, judgments = load_msmarco(collection, queries, qrels, skip_unanswerable=skip_unanswerable)
        graded = max(grade for rels in judgments.values() for grade in rels.values()) > 1
        if relevance_level is None:
            relevance_level = 2 if graded else 1
            logger.info("MS MARCO qrels are %s: MRR and Recall count grades >= %d as relevant",
                        "graded" if graded else "binary", relevance_level)
        if main_metric is None:
            main_metric = f"ndcg@{max(ndcg_at_k)}" if graded and ndcg_at_k else f"mrr@{max(mrr_at_k)}"
        self.files = {"collection": str(collection), "queries": str(queries), "qrels": str(qrels)}
        if name is None:
            name = Path(qrels).stem.removeprefix("qrels.").replace(".", "_")
        super().__init__(
            corpus, query_texts, judgments, ndcg_at_k=ndcg_at_k, mrr_at_k=mrr_at_k, recall_at_k=recall_at_k,
            map_at_k=(), precision_at_k=(), relevance_level=relevance_level, ignore_identical_ids=False,
            main_metric=main_metric, retrieval=retrieval, name=name, **kwargs,
        )

    def get_config_dict(self) -> Mapping[str, Any]:
        return {**self.files, "relevance_level": self.relevance_level, **super().get_config_dict()}
