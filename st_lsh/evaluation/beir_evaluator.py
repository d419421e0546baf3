"""BEIR evaluation as a sentence-transformers evaluator."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..data import load_beir
from .retrieval import RetrievalEvaluator, RetrievalMode


class BEIREvaluator(RetrievalEvaluator):
    """Evaluate a model on a BEIR dataset the way BEIR does: nDCG, MAP, Recall and P at 1, 3, 5, 10, 100 and
    1000, scored by pytrec_eval (trec_eval), documents encoded as ``title + " " + text``, and retrieved
    documents whose id equals the query id ignored.

    Pass it as ``evaluator=`` to :class:`~sentence_transformers.SentenceTransformerTrainer`, or call it on a model.
    With ``retrieval="lsh"`` it searches an LSH index with exact rescoring instead of a float matrix, and with
    ``retrieval="both"`` it reports both (LSH keys are prefixed ``lsh_<bits>_``).

    Args:
        path_or_name: local BEIR folder (``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``), or a BEIR
            name / Hub id when the network is reachable (see :func:`st_lsh.data.load_beir`).
        split: qrels split to evaluate on.
        k_values: cut-offs of nDCG, MAP, Recall and P.
        mrr_at_k: cut-offs of MRR (none by default, as in BEIR).
        name: prefix of the metric keys; defaults to ``"<folder name>_<split>"``.
        **kwargs: further :class:`~st_lsh.evaluation.retrieval.RetrievalEvaluator` arguments (``retrieval``,
            ``lsh_num_bits``, ``corpus_chunk_size``, ``batch_size``, prompts, ``write_csv``, ...).

    Example:
        ::

            from sentence_transformers import SentenceTransformer
            from st_lsh.evaluation import BEIREvaluator

            model = SentenceTransformer("sentence-transformers/all-MiniLM-L6-v2")
            evaluator = BEIREvaluator("../shared/data/scifact", split="test", retrieval="both")
            results = evaluator(model)
            print(evaluator.primary_metric, results[evaluator.primary_metric])
            # => scifact_test_ndcg@10 0.6451
            print(results["scifact_test_lsh_512_ndcg@10"])
    """

    csv_prefix = "BEIR_evaluation"

    def __init__(
        self,
        path_or_name: str | os.PathLike,
        split: str = "test",
        k_values: Sequence[int] = (1, 3, 5, 10, 100, 1000),
        mrr_at_k: Sequence[int] = (),
        main_metric: str = "ndcg@10",
        retrieval: RetrievalMode = "exact",
        ignore_identical_ids: bool = True,
        name: str | None = None,
        skip_unanswerable: bool = False,
        **kwargs: Any,
    ) -> None:
        corpus, queries, qrels = load_beir(path_or_name, split=split, skip_unanswerable=skip_unanswerable)
        self.path_or_name = str(path_or_name)
        self.split = split
        super().__init__(
            corpus, queries, qrels, ndcg_at_k=k_values, map_at_k=k_values, recall_at_k=k_values,
            precision_at_k=k_values, mrr_at_k=mrr_at_k, relevance_level=1, ignore_identical_ids=ignore_identical_ids,
            main_metric=main_metric, retrieval=retrieval,
            name=name if name is not None else f"{Path(self.path_or_name).name}_{split}", **kwargs,
        )

    def get_config_dict(self) -> Mapping[str, Any]:
        return {"dataset": self.path_or_name, "split": self.split, **super().get_config_dict()}
