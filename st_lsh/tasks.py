"""Task folders and training data: each corpus read once per command, and the one evaluator factory.

- :class:`Task` opens a BEIR folder (``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``) or an MS MARCO
  folder (``collection.tsv``, ``queries.<split>.tsv``, ``qrels.<split>.tsv``). Its corpus is read once; each
  split's queries and qrels are read on demand and checked against it; :meth:`Task.corpus_texts` are the texts a
  model encodes (``title + " " + text``, in corpus order), shared by the evaluator and the miner.
- :meth:`Task.evaluator` builds the :class:`~st_lsh.evaluation.BEIREvaluator` /
  :class:`~st_lsh.evaluation.MSMarcoEvaluator` of a split from the loaded corpus (no second read).
- :func:`load_pairs` reads (anchor, positive) pairs from a task folder, a pair file or a ``save_to_disk`` folder;
  :func:`limit_pairs` samples ``max_pairs`` of them across queries (never the file's head).

Example::

    >>> from st_lsh.resources import scifact_path
    >>> from st_lsh.tasks import Task, limit_pairs, load_pairs
    >>> task = Task.open(scifact_path())
    >>> task.kind, len(task.corpus), task.splits()
    ('beir', 5183, ['test', 'train'])
    >>> data = load_pairs(task, "train")
    >>> data.counts
    PairCounts(pairs=919, queries=807)
    >>> limit_pairs(data, 100, seed=12).counts
    PairCounts(pairs=100, queries=100)
    >>> task.evaluator("test").name
    'scifact_test'
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from datasets import Dataset

from .data import Corpus, Qrels, Queries, doc_text, load_corpus_jsonl, load_qrels, load_queries_jsonl, load_tsv
from .data import _check as check_judgments  # noqa: PLC2701 - the loaders' own consistency check
from .data import pairs_from_qrels, sample_pairs
from .pairfiles import read_corpus_file, read_pairs

logger = logging.getLogger(__name__)

TaskKind = Literal["beir", "msmarco"]
BEIR_K_VALUES = (1, 3, 5, 10, 100)

__all__ = ["PairCounts", "Split", "Task", "TrainingPairs", "is_task_folder", "limit_pairs", "load_pairs",
           "read_corpus", "unprefixed"]


def is_task_folder(path: str | os.PathLike) -> bool:
    """True for a BEIR folder (``corpus.jsonl``) or an MS MARCO folder (``collection.tsv``)."""
    path = Path(path)
    return path.is_dir() and ((path / "corpus.jsonl").is_file() or (path / "collection.tsv").is_file())


@dataclass
class Split:
    """One split of a task: the judged queries and their graded qrels."""

    name: str
    queries: Queries
    qrels: Qrels


@dataclass
class Task:
    """A task folder with its corpus loaded once; splits are read on demand (see the module docstring)."""

    kind: TaskKind
    path: Path
    corpus: Corpus
    _splits: dict[str, Split] = field(default_factory=dict, repr=False)
    _texts: list[str] | None = field(default=None, repr=False)
    _beir_queries: Queries | None = field(default=None, repr=False)

    @classmethod
    def open(cls, path: str | os.PathLike, split: str | None = None) -> Task:
        """Read the corpus of a task folder; with ``split``, check that the split exists first (a cheap check
        that fails before the corpus is read)."""
        folder = Path(path)
        if not folder.exists():
            raise FileNotFoundError(f"No such task folder: {str(folder)!r}")
        if not is_task_folder(folder):
            raise ValueError(f"{str(folder)!r} is not a BEIR folder (corpus.jsonl) nor an MS MARCO folder "
                             "(collection.tsv)")
        kind: TaskKind = "beir" if (folder / "corpus.jsonl").is_file() else "msmarco"
        if split is not None:
            _check_split(folder, kind, split)
        if kind == "beir":
            corpus = _records(load_corpus_jsonl, folder / "corpus.jsonl")
        else:
            corpus = {pid: {"title": "", "text": text} for pid, text in
                      load_tsv(folder / "collection.tsv", "Collection").items()}
        logger.info("Loaded the corpus of %s: %d documents", folder, len(corpus))
        return cls(kind, folder, corpus)

    @property
    def name(self) -> str:
        return self.path.name

    def splits(self) -> list[str]:
        """The splits with qrels (and, for MS MARCO, a queries file)."""
        return _available_splits(self.path, self.kind)

    def split(self, name: str, skip_unanswerable: bool = False) -> Split:
        """The queries and qrels of split ``name``, read once and checked against the corpus."""
        if name not in self._splits:
            _check_split(self.path, self.kind, name)
            if self.kind == "beir":
                if self._beir_queries is None:
                    self._beir_queries = _records(load_queries_jsonl, self.path / "queries.jsonl")
                queries, qrels = self._beir_queries, load_qrels(self.path / "qrels" / f"{name}.tsv")
            else:
                queries = load_tsv(self.path / f"queries.{name}.tsv", "Queries")
                qrels = load_qrels(self.path / f"qrels.{name}.tsv")
            judged = check_judgments(self.corpus, queries, qrels, f"{self.path} [{name}]", skip_unanswerable)
            logger.info("Loaded %s [%s]: %d queries, %d judgments", self.path, name, len(judged),
                        sum(map(len, qrels.values())))
            self._splits[name] = Split(name, judged, qrels)
        return self._splits[name]

    def corpus_texts(self) -> list[str]:
        """The texts a model encodes for the corpus (``title + " " + text``), in corpus order; computed once."""
        if self._texts is None:
            self._texts = [doc_text(doc) for doc in self.corpus.values()]
        return self._texts

    def pairs(self, split: str, min_relevance: int = 1) -> Dataset:
        """(anchor, positive) pairs of a split, graded ``>= min_relevance``."""
        judgments = self.split(split)
        return pairs_from_qrels(self.corpus, judgments.queries, judgments.qrels, min_score=min_relevance)

    def evaluator(self, split: str, **kwargs: Any):
        """The evaluator of ``split`` (the one factory of the command line and the recipes): a
        :class:`~st_lsh.evaluation.BEIREvaluator` (nDCG, MAP, Recall, P at 1, 3, 5, 10, 100) or a
        :class:`~st_lsh.evaluation.MSMarcoEvaluator` (nDCG@10, MRR@10, Recall@100/1000; relevance from grade 2
        on graded qrels), built on the loaded corpus; ``kwargs`` go to the evaluator (``retrieval``,
        ``batch_size``, ``cache_folder``, ...).

        The corpus is passed as ``{doc_id: text}`` with the strings of :meth:`corpus_texts`, so the evaluator
        encodes exactly the texts that a miner given :meth:`corpus_texts` encodes (one embedding cache key).
        """
        from .evaluation import BEIREvaluator, MSMarcoEvaluator, RetrievalEvaluator

        judgments = self.split(split)
        corpus = dict(zip(self.corpus, self.corpus_texts()))
        # Built on the loaded data (their own constructors read the files again), with their settings.
        if self.kind == "beir":
            evaluator = BEIREvaluator.__new__(BEIREvaluator)
            evaluator.path_or_name, evaluator.split = str(self.path), split
            RetrievalEvaluator.__init__(
                evaluator, corpus, judgments.queries, judgments.qrels, ndcg_at_k=BEIR_K_VALUES,
                map_at_k=BEIR_K_VALUES, recall_at_k=BEIR_K_VALUES, precision_at_k=BEIR_K_VALUES, mrr_at_k=(),
                relevance_level=1, ignore_identical_ids=True, main_metric="ndcg@10", name=f"{self.name}_{split}",
                **kwargs,
            )
            return evaluator
        graded = max(grade for rels in judgments.qrels.values() for grade in rels.values()) > 1
        evaluator = MSMarcoEvaluator.__new__(MSMarcoEvaluator)
        evaluator.files = {"collection": str(self.path / "collection.tsv"),
                           "queries": str(self.path / f"queries.{split}.tsv"),
                           "qrels": str(self.path / f"qrels.{split}.tsv")}
        RetrievalEvaluator.__init__(
            evaluator, corpus, judgments.queries, judgments.qrels, ndcg_at_k=(10,), mrr_at_k=(10,),
            recall_at_k=(100, 1000), map_at_k=(), precision_at_k=(), relevance_level=2 if graded else 1,
            ignore_identical_ids=False, main_metric="ndcg@10" if graded else "mrr@10", name=split, **kwargs,
        )
        return evaluator


def _records(load, path: Path):
    """Run a BEIR JSON-lines loader; a record without ``_id`` is a one-line ValueError, not a KeyError."""
    try:
        return load(path)
    except KeyError as exc:
        raise ValueError(f"{str(path)!r}: a record has no {exc.args[0]!r} field") from None


def _available_splits(folder: Path, kind: TaskKind) -> list[str]:
    if kind == "beir":
        return sorted(p.stem for p in (folder / "qrels").glob("*.tsv"))
    return sorted(p.name.removeprefix("qrels.").removesuffix(".tsv") for p in folder.glob("qrels.*.tsv")
                  if (folder / p.name.replace("qrels.", "queries.", 1)).is_file())


def _check_split(folder: Path, kind: TaskKind, split: str) -> None:
    available = _available_splits(folder, kind)
    if split not in available:
        if not available:
            raise ValueError(f"{str(folder)!r} has no qrels files (qrels/<split>.tsv or qrels.<split>.tsv)")
        raise ValueError(f"Unknown split {split!r} for {str(folder)!r}; available splits: {available}")


def read_corpus(path: str | os.PathLike, column: str = "text") -> list[str]:
    """Extra documents to mine from: a task folder's corpus texts, a ``.txt`` file (one per line), or a table
    file's ``column`` (see :func:`st_lsh.pairfiles.read_corpus_file`)."""
    path = Path(path)
    if is_task_folder(path):
        return Task.open(path).corpus_texts()
    return read_corpus_file(path, column)


@dataclass(frozen=True)
class PairCounts:
    """How many pairs, and over how many unique anchors (queries)."""

    pairs: int
    queries: int


@dataclass
class TrainingPairs:
    """(anchor, positive) pairs, where they came from, and the task they belong to (None for a pair file)."""

    pairs: Dataset
    source: str
    task: Task | None = None
    sampled_from: PairCounts | None = None  # the counts before :func:`limit_pairs`, when it sampled

    @property
    def anchor_column(self) -> str:
        return self.pairs.column_names[0]

    @property
    def counts(self) -> PairCounts:
        return PairCounts(len(self.pairs), len(set(self.pairs[self.anchor_column])))

    @property
    def corpus_texts(self) -> list[str] | None:
        """The task's corpus texts to mine from (None for a pair file: the positives are the corpus)."""
        return self.task.corpus_texts() if self.task is not None else None


def load_pairs(
    data: str | os.PathLike | Task,
    split: str = "train",
    anchor_column: str | None = None,
    positive_column: str | None = None,
    min_relevance: int = 1,
) -> TrainingPairs:
    """Pairs from a task folder (or an open :class:`Task`; the ``split`` qrels graded ``>= min_relevance``), a
    pair file or a ``save_to_disk`` folder (:func:`st_lsh.pairfiles.read_pairs`: columns default to the first
    two, and must hold only texts). Every problem is a one-line FileNotFoundError / ValueError."""
    if isinstance(data, Task) or is_task_folder(data):
        task = data if isinstance(data, Task) else Task.open(data, split)
        if anchor_column or positive_column:
            logger.warning("--anchor-column / --positive-column are ignored for a task folder")
        return TrainingPairs(task.pairs(split, min_relevance), str(task.path), task)
    path = Path(data)
    if not path.exists():
        raise FileNotFoundError(f"No such file or folder: {str(path)!r}")
    return TrainingPairs(read_pairs(path, split, anchor_column, positive_column), str(path))


def limit_pairs(data: TrainingPairs, max_pairs: int | None, seed: int = 42,
                max_positives_per_query: int | None = None) -> TrainingPairs:
    """At most ``max_pairs`` pairs, sampled round-robin across the queries under ``seed``
    (:func:`st_lsh.data.sample_pairs`), so N pairs cover min(N, number of queries) queries; at most
    ``max_positives_per_query`` per query when given. None keeps every pair."""
    if max_pairs is None and max_positives_per_query is None:
        return data
    before = data.counts
    limit = max_pairs if max_pairs is not None else len(data.pairs)
    sample = sample_pairs(data.pairs, limit, seed=seed, max_positives_per_query=max_positives_per_query,
                          anchor_column=data.anchor_column)
    return replace(data, pairs=sample, sampled_from=before)


def unprefixed(metrics: dict[str, float], name: str) -> dict[str, float]:
    """``{"scifact_test_ndcg@10": x}`` -> ``{"ndcg@10": x}``: an evaluator's metrics without its name."""
    prefix = f"{name}_" if name else ""
    return {k.removeprefix(prefix): v for k, v in metrics.items()}
