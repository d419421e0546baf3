"""The training recipe behind ``st-lsh train``: fine-tune with LSH-mined, refreshed hard negatives, evaluating
before and after.

Two steps, so that every input is checked before a model is loaded:

1. :func:`prepare_training` (no model): check the output folder, read the task once (its corpus serves the
   pairs, the evaluator and the miner), sample ``max_pairs`` across queries, check the rules, build the evaluator.
2. :func:`train` (the model): evaluate, mine the initial negatives from the task's corpus texts reading the
   evaluation's corpus embeddings from a shared cache (same model, texts and length: no second encode; a
   mismatch is logged), train with :class:`~st_lsh.training.HardNegativeRefresher` as a callback, save the model
   atomically, evaluate again.

:func:`train_with_refreshed_negatives` runs both.

Example::

    >>> import tempfile
    >>> from st_lsh.recipes import TrainConfig, prepare_training
    >>> config = TrainConfig(max_pairs=50, seed=12, output=tempfile.mkdtemp() + "/model")   # bundled SciFact
    >>> inputs = prepare_training(config)                      # reads and checks everything, loads no model
    >>> inputs.data.counts, inputs.evaluator.name
    (PairCounts(pairs=50, queries=50), 'scifact_test')
    >>> # result = train(load_model("sentence-transformers/all-MiniLM-L6-v2"), config, inputs)
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .encode import cache_key, cache_path
from .outputs import MODEL_MARKERS, OutputTarget, atomic_output, check_output
from .rules import LSHSettings, NegativeRules
from .tasks import PairCounts, Task, TrainingPairs, is_task_folder, limit_pairs, load_pairs, unprefixed

logger = logging.getLogger(__name__)

__all__ = ["TrainConfig", "TrainInputs", "TrainResult", "gradient_checkpointing", "prepare_training", "train",
           "train_with_refreshed_negatives", "unprefixed"]


@dataclass
class TrainConfig:
    """Settings of the recipe; the defaults are those of ``st-lsh train``.

    ``range_max=None`` derives the rank window from the data as sentence-transformers does
    (:meth:`st_lsh.rules.NegativeRules.resolve`: ``range_min + num_negatives * (10 with a margin, else 1) + the
    most positives of a query``), so it grows with the positives. No margin by default: a margin is taken against
    a query's *lowest* positive score, and on graded tasks with dozens of positives per query (TREC DL) nearly
    every candidate in any window scores above it, so the slots would be filled at random (72% of them on DL20
    with ``relative_margin=0.05``); ``range_min=10`` is what guards against unlabelled positives.
    """

    data: str | None = None  # task folder or pair file; None = the bundled SciFact
    split: str = "train"
    eval_data: str | None = None  # task folder to evaluate on; None = ``data`` when it is a task folder
    eval_split: str = "test"
    output: str = "output/st-lsh-model"
    overwrite: bool = False
    anchor_column: str | None = None
    positive_column: str | None = None
    min_relevance: int = 1
    max_pairs: int | None = None  # a seeded sample across queries, not the file's head
    max_positives_per_query: int | None = None
    epochs: float = 1.0
    batch_size: int = 32
    learning_rate: float = 2e-5
    warmup_ratio: float = 0.1
    max_seq_length: int | None = 128  # training only; evaluation and the initial mining use the model's own
    num_negatives: int = 1
    range_min: int = 10
    range_max: int | None = None
    relative_margin: float | None = None  # see the class docstring
    absolute_margin: float | None = None
    sampling_strategy: Literal["random", "top"] = "random"
    num_bits: int = 512
    refresh_mode: Literal["full", "incremental"] = "incremental"
    refresh_every_n_steps: int | None = 10
    eval_batch_size: int = 32
    seed: int = 42
    skip_eval: bool = False
    show_progress_bar: bool = True
    gradient_checkpointing: bool = True  # see :func:`gradient_checkpointing`
    batches: Literal["random", "neighbours"] = "random"  # NO_DUPLICATES, or hard-neighbour batches

    def rules(self) -> NegativeRules:
        return NegativeRules(num_negatives=self.num_negatives, range_min=self.range_min, range_max=self.range_max,
                             absolute_margin=self.absolute_margin, relative_margin=self.relative_margin,
                             sampling_strategy=self.sampling_strategy)

    def lsh(self) -> LSHSettings:
        return LSHSettings(num_bits=self.num_bits, seed=self.seed)


@dataclass
class TrainInputs:
    """Everything :func:`train` needs besides the model, read and checked by :func:`prepare_training`."""

    data: TrainingPairs
    evaluator: Any | None  # a RetrievalEvaluator
    output: OutputTarget
    rules: NegativeRules
    lsh: LSHSettings


@dataclass
class TrainResult:
    """Metrics before and after, stage timings (seconds), the refresher's history (refresh 0 is the initial
    mining), the pairs trained on, the resolved rules and the knobs that find more negatives."""

    before: dict[str, float]
    after: dict[str, float]
    timings: dict[str, float]
    refreshes: list[dict[str, Any]]
    counts: PairCounts
    output: Path
    eval_name: str
    rules: NegativeRules
    knobs: list[str] = field(default_factory=list)
    sampled_from: PairCounts | None = None
    batches: str = "random"
    corpus_reused: bool = False  # the initial mining read the evaluation's corpus embeddings
    queries_mined: int = 0  # unique queries of the pairs (the initial mining encodes these)
    corpus_size: int = 0  # unique texts mined from


def prepare_training(config: TrainConfig) -> TrainInputs:
    """Read and check every input of :func:`train` without a model (see the module docstring)."""
    from .resources import scifact_path

    output = check_output(config.output, folder=True, overwrite=config.overwrite, markers=MODEL_MARKERS)
    rules, lsh = config.rules(), config.lsh()
    data_path = config.data if config.data is not None else str(scifact_path())
    task = Task.open(data_path, config.split) if is_task_folder(data_path) else None
    data = load_pairs(task or data_path, config.split, config.anchor_column, config.positive_column,
                      config.min_relevance)
    data = limit_pairs(data, config.max_pairs, config.seed, config.max_positives_per_query)
    counts = data.counts
    logger.info("Training on %d pairs over %d queries%s", counts.pairs, counts.queries,
                f" (sampled from {data.sampled_from.pairs} pairs over {data.sampled_from.queries} queries, seed "
                f"{config.seed})" if data.sampled_from else "")
    evaluator = None
    if not config.skip_eval:
        eval_task = task
        if config.eval_data is not None and (task is None or Path(config.eval_data).resolve() != task.path.resolve()):
            eval_task = Task.open(config.eval_data, config.eval_split)
        if eval_task is None:
            logger.warning("No task folder to evaluate on (pass eval_data): training without before/after "
                           "evaluation")
        else:
            evaluator = eval_task.evaluator(config.eval_split, batch_size=config.eval_batch_size,
                                            show_progress_bar=config.show_progress_bar)
    return TrainInputs(data, evaluator, output, rules, lsh)


def _warmup(ratio: float) -> dict[str, float]:
    """The warmup ratio as the installed transformers wants it: ``warmup_steps`` as a float from v5 on
    (``warmup_ratio`` is deprecated there), ``warmup_ratio`` before."""
    import transformers

    major = int(transformers.__version__.split(".")[0])
    return {"warmup_steps": float(ratio)} if major >= 5 else {"warmup_ratio": float(ratio)}


@contextmanager
def gradient_checkpointing(model, enabled: bool = True) -> Iterator[int]:
    """While the block runs, recompute each transformer layer's activations in the backward pass instead of
    keeping them (``torch.utils.checkpoint``, non-reentrant, RNG state preserved: the same gradients).

    This is what keeps ``st-lsh train`` within memory: a MultipleNegativesRankingLoss step on 32 (anchor,
    positive, negative) rows at 128 tokens keeps about 2 GB of activations for the backward pass; checkpointed,
    one layer's worth. It costs one more forward pass per step (about a third more training compute). Yields the
    number of backbones it applies to (0 for models that do not support it).
    """
    from transformers import PreTrainedModel

    backbones: list[PreTrainedModel] = []
    if enabled:
        for module in model.modules():
            if isinstance(module, PreTrainedModel) and module.supports_gradient_checkpointing and not any(
                    module in outer.modules() for outer in backbones):
                backbones.append(module)
    for backbone in backbones:
        enable = getattr(backbone, "activation_checkpointing_enable", None)
        if enable is not None:
            enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:  # transformers < 5
            backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    try:
        yield len(backbones)
    finally:
        for backbone in backbones:
            disable = getattr(backbone, "activation_checkpointing_disable", None) or \
                backbone.gradient_checkpointing_disable
            disable()
            if hasattr(backbone, "disable_input_require_grads"):
                backbone.disable_input_require_grads()


def _evaluate(evaluator, model, label: str) -> tuple[dict[str, float], float]:
    t = time.perf_counter()
    logger.info("Evaluating %s training on %s", label, evaluator.name)
    return unprefixed(evaluator(model), evaluator.name), time.perf_counter() - t


def _corpus_reused(model, refresher, evaluator, cache_folder: str, eval_length: int) -> bool:
    """Whether the initial mining will read the evaluation's corpus embeddings from the cache; logs why not."""
    corpus = refresher.pairs.corpus
    if cache_path(cache_folder, "corpus", cache_key(model, corpus, refresher.prompts["corpus"], None)).is_file():
        logger.info("The initial mining reuses the corpus embeddings of the evaluation before training (%d texts)",
                    len(corpus))
        return True
    reasons = []
    if model.max_seq_length != eval_length:
        reasons.append(f"max_seq_length {model.max_seq_length} instead of the evaluation's {eval_length}")
    n_eval = len(dict.fromkeys(evaluator.corpus))
    if len(corpus) != n_eval:
        reasons.append(f"its corpus has {len(corpus)} unique texts, the evaluation's {n_eval} (positives outside "
                       "the evaluation corpus, or another corpus)")
    logger.info("The initial mining encodes the corpus again (%d texts): %s", len(corpus),
                "; ".join(reasons) or "the texts or prompts differ from the evaluation's")
    return False


def _fit(model, config: TrainConfig, train_dataset, refresher, output_dir: str) -> float:
    """Train at ``config.max_seq_length`` (the model's own length is restored after) with the refresher as a
    callback; returns the trainer's runtime in seconds."""
    from sentence_transformers import SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.training_args import (
        BatchSamplers,
        SentenceTransformerTrainingArguments,
    )

    own_length = model.max_seq_length
    # "neighbours": each batch gathers rows whose anchors and positives are LSH neighbours (harder in-batch
    # negatives, the same NO_DUPLICATES guarantees), planned every epoch from the refresher's codes
    sampler = refresher.batch_sampler() if config.batches == "neighbours" else BatchSamplers.NO_DUPLICATES
    if config.max_seq_length is not None:
        model.max_seq_length = config.max_seq_length
    try:
        args = SentenceTransformerTrainingArguments(
            output_dir=output_dir, num_train_epochs=config.epochs, per_device_train_batch_size=config.batch_size,
            learning_rate=config.learning_rate, **_warmup(config.warmup_ratio),
            batch_sampler=sampler, save_strategy="no", logging_steps=10, report_to="none",
            seed=config.seed, dataloader_num_workers=0, dataloader_pin_memory=False,
            disable_tqdm=not config.show_progress_bar,
        )
        trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=train_dataset,
                                             loss=MultipleNegativesRankingLoss(model), callbacks=[refresher])
        with gradient_checkpointing(model, config.gradient_checkpointing):
            output = trainer.train()
        return float(output.metrics.get("train_runtime", 0.0))
    finally:
        model.max_seq_length = own_length


def train(model, config: TrainConfig, inputs: TrainInputs) -> TrainResult:
    """Fine-tune ``model`` with MultipleNegativesRankingLoss on (anchor, positive, LSH-mined negatives) rows whose
    negatives a :class:`~st_lsh.training.HardNegativeRefresher` keeps fresh, evaluating before and after, and
    save it to ``inputs.output`` (atomically: a temporary folder beside it, then a rename).

    Timings: ``eval_before``, ``mining`` (the initial mining), ``train`` (the trainer's runtime, refreshes
    included), ``refresh`` (the refreshes alone), ``eval_after`` and ``total``.
    """
    from .training import HardNegativeRefresher

    start = time.perf_counter()
    timings: dict[str, float] = {}
    evaluator = inputs.evaluator
    eval_length = model.max_seq_length
    with tempfile.TemporaryDirectory(prefix="st-lsh-train-") as scratch:
        cache_folder = str(Path(scratch) / "embeddings")
        before: dict[str, float] = {}
        if evaluator is not None:
            evaluator.cache_folder = cache_folder  # the initial mining reads the corpus embeddings from here
            try:
                before, timings["eval_before"] = _evaluate(evaluator, model, "before")
            finally:
                evaluator.cache_folder = None

        # The initial mining runs at the model's own length, as the evaluation did, on the task's corpus texts.
        refresher = HardNegativeRefresher(
            model, inputs.data.pairs, corpus=inputs.data.corpus_texts, rules=inputs.rules, lsh=inputs.lsh,
            mode=config.refresh_mode, refresh_every_n_steps=config.refresh_every_n_steps, seed=config.seed,
            batch_size=config.eval_batch_size, show_progress_bar=config.show_progress_bar, cache_folder=cache_folder,
        )
        corpus_reused = evaluator is not None and _corpus_reused(model, refresher, evaluator, cache_folder,
                                                                 eval_length)
        t = time.perf_counter()
        train_dataset = refresher.dataset
        timings["mining"] = time.perf_counter() - t
        timings["train"] = _fit(model, config, train_dataset, refresher, str(Path(scratch) / "trainer"))
    with atomic_output(inputs.output) as folder:
        model.save(str(folder))
    refreshes = [h for h in refresher.history if h.get("refresh", 0) > 0 and "failed" not in h]
    timings["refresh"] = sum(h["total_s"] for h in refreshes)

    after: dict[str, float] = {}
    if evaluator is not None:
        after, timings["eval_after"] = _evaluate(evaluator, model, "after")
    timings["total"] = time.perf_counter() - start
    return TrainResult(
        before, after, timings, refresher.history, inputs.data.counts, inputs.output.path,
        evaluator.name if evaluator is not None else "", refresher.rules_at(0.0), refresher.rules.knobs(),
        inputs.data.sampled_from, config.batches, corpus_reused, len(refresher.pairs.queries), len(refresher.pairs.corpus),
    )


def train_with_refreshed_negatives(model, config: TrainConfig) -> TrainResult:
    """:func:`prepare_training` then :func:`train`."""
    return train(model, config, prepare_training(config))
