"""Retrieval evaluators for sentence-transformers: BEIR and MS MARCO, with exact or LSH search."""

from __future__ import annotations

from .beir_evaluator import BEIREvaluator
from .msmarco_evaluator import MSMarcoEvaluator
from .retrieval import RetrievalEvaluator, evaluate_run, retrieve, write_trec_run

__all__ = ["BEIREvaluator", "MSMarcoEvaluator", "RetrievalEvaluator", "evaluate_run", "retrieve", "write_trec_run"]
