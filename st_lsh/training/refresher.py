"""Re-mine hard negatives during training: a ``TrainerCallback`` for ``SentenceTransformerTrainer``.

:class:`HardNegativeRefresher` owns a table of negatives (corpus ids per training query) and a training dataset
whose rows read that table lazily (a ``datasets`` transform keyed by a row id that never reaches the collator).
Length and columns stay fixed, ``(anchor, positive, negative_1, ..., negative_n)``, so the trainer's step count
and the NO_DUPLICATES batch sampler work unchanged, while every refresh swaps the negatives in place.

Each refresh uses the miner's own stages: :class:`~st_lsh.LSHIndex` codes and Hamming search,
:func:`~st_lsh.mining.search_candidates` and :func:`~st_lsh.mining.select_with_positive_scores` (the rank
window, margins, score bounds and sampling of :func:`~st_lsh.select.select_negatives`, positives excluded),
then :func:`~st_lsh.select.fill_missing` so that every row keeps ``num_negatives`` negatives.

Two sources of fresh embeddings:

- ``mode="full"``: re-encode the whole corpus and all queries with the current model;
- ``mode="incremental"`` (default): reuse the embeddings that the training forward passes computed for the texts
  seen since the last refresh (anchors, positives, negatives), re-hash only those, and keep the codes of the
  other texts; ``reencode_unseen_every=k`` also re-encodes the unseen texts every k-th refresh.

Under ``torchrun`` / ``accelerate launch`` each rank encodes and hashes its shard and the packed codes (plus the
embeddings used for exact rescoring) are all-gathered through ``torch.distributed``; every rank then holds the
same negatives, the ones a single process would mine. The state (hasher, codes, embeddings, negatives) is saved
in each checkpoint and restored on resume. A failed refresh keeps the previous negatives and logs a warning.

Example::

    >>> from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
    >>> from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    >>> from sentence_transformers.sentence_transformer.training_args import (
    ...     BatchSamplers, SentenceTransformerTrainingArguments)
    >>> from st_lsh.training import HardNegativeRefresher
    >>> model = SentenceTransformer("sentence-transformers/all-MiniLM-L6-v2")
    >>> refresher = HardNegativeRefresher(model, pairs, corpus=corpus, num_negatives=1, range_max=20,
    ...                                   relative_margin=0.05, mode="incremental")
    >>> args = SentenceTransformerTrainingArguments("out", num_train_epochs=2,
    ...                                             batch_sampler=BatchSamplers.NO_DUPLICATES)
    >>> trainer = SentenceTransformerTrainer(model, args, train_dataset=refresher.dataset,
    ...                                      loss=MultipleNegativesRankingLoss(model), callbacks=[refresher])
    >>> trainer.train()
"""

from __future__ import annotations

import logging
import math
import os
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from datasets import Dataset
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from ..encode import check_texts, encode_texts
from ..hashing import LSHHasher, check_num_bits
from ..index import LSHIndex
from ..mining import DEFAULT_NUM_BITS, resolve_columns, resolve_range_max, search_candidates
from ..mining import select_with_positive_scores
from ..select import fill_missing
from .capture import EmbeddingCapture
from .distributed import all_gather_objects, all_reduce_sum, broadcast_object, shard, world
from .schedule import HardnessSchedule

logger = logging.getLogger(__name__)

RefreshMode = Literal["full", "incremental"]
STATE_FILE = "st_lsh_refresher.pt"
ROW_ID = "__st_lsh_row"


@dataclass
class RefreshStats:
    """What one refresh cost and changed; logged to the trainer's ``log_history`` with a ``refresh/`` prefix."""

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
    anchor_negative_sim: float
    anchor_positive_sim: float


class HardNegativeRefresher(TrainerCallback):
    """Keeps the hard negatives of a training set fresh while ``SentenceTransformerTrainer`` trains.

    Args:
        model: The SentenceTransformer being trained (the same object passed to the trainer).
        dataset: ``(anchor, positive)`` pairs; other columns are ignored.
        corpus: Extra documents to mine from; the positives are always part of the corpus.
        anchor_column_name / positive_column_name: Default to the first two columns.
        num_negatives: Negative columns per row (``negative_1`` ... ``negative_n``).
        range_min, range_max, absolute_margin, relative_margin, max_score, min_score, sampling_strategy:
            the candidate rules of :func:`st_lsh.mine_hard_negatives`, with the same meaning.
        mode: ``"incremental"`` (default) or ``"full"``; see the module docstring.
        refresh_every_n_steps: Refresh every N optimizer steps; None refreshes at the end of every epoch. No
            refresh runs after the last step.
        reencode_unseen_every: Incremental mode: every k-th refresh also re-encodes the texts not seen in
            training since the last refresh; None (default) never does (their codes age until seen).
        hardness_schedule: Optional :class:`HardnessSchedule` curriculum (off by default).
        num_bits, pool_factor, seed: LSH code length, Hamming pool as a multiple of the window, and the seed of
            the projection and of random sampling / filling.
        batch_size: Encode batch size.
        query_prompt / corpus_prompt: Prompts used to encode (and to recognise captured texts); they must match
            the trainer's ``prompts`` for the anchor and document columns.
        store_embeddings: "float32" (exact rescoring) or "float16" (half the memory and all-gather volume).
        show_progress_bar: Progress bars while encoding and searching.
        cache_folder: Embedding cache of :func:`~st_lsh.encode.encode_texts` for the initial mining (keyed by
            the weights); shares that encode with :func:`st_lsh.mine_hard_negatives` runs and evaluations on the
            same texts. Refreshes encode fine-tuned weights and never use the cache.
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
        pool_factor: float = 8.0,
        seed: int = 42,
        batch_size: int = 32,
        query_prompt: str | None = None,
        corpus_prompt: str | None = None,
        store_embeddings: Literal["float32", "float16"] = "float32",
        show_progress_bar: bool = False,
        cache_folder: str | None = None,
    ) -> None:
        if mode not in ("full", "incremental"):
            raise ValueError(f"mode must be 'full' or 'incremental', got {mode!r}.")
        if num_negatives < 1:
            raise ValueError(f"num_negatives must be at least 1, got {num_negatives}.")
        if refresh_every_n_steps is not None and refresh_every_n_steps < 1:
            raise ValueError(f"refresh_every_n_steps must be a positive integer, got {refresh_every_n_steps}.")
        if reencode_unseen_every is not None and reencode_unseen_every < 1:
            raise ValueError(f"reencode_unseen_every must be a positive integer, got {reencode_unseen_every}.")
        if store_embeddings not in ("float32", "float16"):
            raise ValueError(f"store_embeddings must be 'float32' or 'float16', got {store_embeddings!r}.")
        if sampling_strategy not in ("top", "random"):
            raise ValueError(f"sampling_strategy must be 'top' or 'random', got {sampling_strategy!r}.")
        if len(dataset) == 0:
            raise ValueError("The dataset is empty.")
        self.model = model
        self.num_bits = check_num_bits(num_bits)
        self.num_negatives = num_negatives
        self.rules: dict[str, Any] = {
            "range_min": range_min, "absolute_margin": absolute_margin, "relative_margin": relative_margin,
            "max_score": max_score, "min_score": min_score,
        }
        self.range_max = range_max
        self.sampling_strategy = sampling_strategy
        self.mode: RefreshMode = mode
        self.refresh_every_n_steps = refresh_every_n_steps
        self.reencode_unseen_every = reencode_unseen_every
        self.hardness_schedule = hardness_schedule
        self.pool_factor = float(pool_factor)
        self.seed = int(seed)
        self.batch_size = batch_size
        self.prompts = {"query": query_prompt, "corpus": corpus_prompt}
        self.store_dtype = np.float16 if store_embeddings == "float16" else np.float32
        self.show_progress_bar = show_progress_bar
        self.cache_folder = cache_folder

        self.anchor_column, self.positive_column = resolve_columns(dataset.column_names, anchor_column_name, positive_column_name)
        anchors = check_texts(dataset[self.anchor_column], f"Column {self.anchor_column!r}")
        positives = check_texts(dataset[self.positive_column], f"Column {self.positive_column!r}")
        extra = check_texts(corpus, "corpus") if corpus is not None else []
        self.corpus: list[str] = list(dict.fromkeys(extra + positives))
        corpus_ids = {text: i for i, text in enumerate(self.corpus)}
        self.queries: list[str] = list(dict.fromkeys(anchors))
        query_ids = {text: i for i, text in enumerate(self.queries)}
        self.positive_indices: list[list[int]] = [[] for _ in self.queries]
        for anchor, positive in zip(anchors, positives):
            row = self.positive_indices[query_ids[anchor]]
            if corpus_ids[positive] not in row:
                row.append(corpus_ids[positive])
        self.row_query = np.array([query_ids[a] for a in anchors], dtype=np.int64)
        self.max_positives = max(len(p) for p in self.positive_indices)
        if len(self.corpus) - self.max_positives < num_negatives:
            raise ValueError(f"The corpus ({len(self.corpus)} texts) is too small for {num_negatives} negatives.")
        self._base_range_max = resolve_range_max(
            range_max, range_min, num_negatives, self.max_positives, len(self.corpus), None,
            absolute_margin, relative_margin, max_score, min_score,
        )

        self._dataset = Dataset.from_dict(
            {self.anchor_column: anchors, self.positive_column: positives, ROW_ID: list(range(len(anchors)))}
        )
        self._dataset.set_transform(self._transform)

        self.hasher: LSHHasher | None = None
        self.corpus_codes: np.ndarray | None = None
        self.corpus_embeddings: np.ndarray | None = None
        self.query_embeddings: np.ndarray | None = None
        self.negatives: torch.Tensor | None = None  # (n_queries, num_negatives) corpus ids
        self.negative_scores: torch.Tensor | None = None
        self.refresh_count = 0
        self.history: list[dict[str, Any]] = []
        self.capture: EmbeddingCapture | None = None
        self._loaded_step: int | None = None

    # ---- the dataset the trainer iterates --------------------------------------------------------------------

    @property
    def negative_columns(self) -> list[str]:
        return [f"negative_{j + 1}" for j in range(self.num_negatives)]

    @property
    def dataset(self) -> Dataset:
        """The training dataset: ``(anchor, positive, negative_1..n)`` rows reading the current negatives.

        The first access mines the initial negatives with the current model (a full encode), unless a state was
        loaded with :meth:`load` first.
        """
        if self.negatives is None:
            self.prepare()
        return self._dataset

    def _transform(self, batch: dict[str, list]) -> dict[str, list]:
        if self.negatives is None:
            raise RuntimeError("No negatives yet: access HardNegativeRefresher.dataset (or call prepare()) first.")
        rows = np.asarray(batch[ROW_ID], dtype=np.int64)
        table = self.negatives[torch.from_numpy(self.row_query[rows])].tolist()
        out = {self.anchor_column: batch[self.anchor_column], self.positive_column: batch[self.positive_column]}
        for j, column in enumerate(self.negative_columns):
            out[column] = [self.corpus[row[j]] for row in table]
        return out

    def negatives_as_texts(self) -> list[list[str]]:
        """The current negatives of each dataset row, as texts."""
        assert self.negatives is not None
        return [[self.corpus[i] for i in self.negatives[q].tolist()] for q in self.row_query.tolist()]

    # ---- mining ----------------------------------------------------------------------------------------------

    def prepare(self) -> HardNegativeRefresher:
        """Mine the initial negatives with a full encode (collective under torch.distributed)."""
        stats = self._refresh(full=True, progress=0.0)
        if stats is None:
            raise RuntimeError("The initial mining failed; see the warning above.")
        return self

    def refresh(self, progress: float = 0.0) -> RefreshStats | None:
        """Re-mine now. Returns the statistics, or None (and a warning) if the refresh failed; the previous
        negatives are kept then. Every rank must call it under torch.distributed."""
        if self.negatives is None:
            raise RuntimeError("Nothing to refresh: prepare() has not run.")
        due = self.reencode_unseen_every is not None and (self.refresh_count + 1) % self.reencode_unseen_every == 0
        return self._refresh(full=self.mode == "full", progress=progress, reencode_unseen=due)

    def _settings(self, progress: float) -> tuple[dict[str, Any], int]:
        rules = dict(self.rules)
        range_max = self._base_range_max
        if self.hardness_schedule is not None:
            rules.update(self.hardness_schedule.at(progress))
            range_max = min(range_max + rules["range_min"] - self.rules["range_min"], len(self.corpus))
            rules["range_min"] = min(rules["range_min"], max(0, range_max - self.num_negatives))
        return rules, range_max

    def _refresh(self, full: bool, progress: float, reencode_unseen: bool = False) -> RefreshStats | None:
        start = time.perf_counter()
        rank, world_size = world()
        # Local stage: this rank's share of encoding and hashing. Errors are gathered, not raised, so that no
        # rank is left waiting in a collective when another one fails.
        try:
            local, centre_sum, timings, counts = self._local_stage(full, reencode_unseen, rank, world_size)
            error = None
        except Exception as exc:  # noqa: BLE001 - any failure keeps the previous negatives
            local, centre_sum, timings, counts, error = None, None, {}, {}, f"{type(exc).__name__}: {exc}"
        errors = [e for e in all_gather_objects(error) if e is not None]
        if errors:
            return self._failed(errors[0])
        try:
            t = time.perf_counter()
            if full:  # the centre is the mean of the whole corpus, summed in float64 over every rank
                centre_sum = all_reduce_sum(centre_sum)
                mean = (centre_sum[:-1] / centre_sum[-1]).float()
                self.hasher = LSHHasher(self.num_bits, center=True, random_state=self.seed, device="cpu").fit(mean[None])
            hashed = self._hash_local(local)
            timings["hash"] = timings.get("hash", 0.0) + time.perf_counter() - t
            t = time.perf_counter()
            gathered = all_gather_objects(hashed)
            timings["encode"] += time.perf_counter() - t  # the gather moves what was encoded
            self._apply(gathered)
            t = time.perf_counter()
            selection, positive_scores, filled = self._search_select(progress)
            timings["search"] = time.perf_counter() - t
            error = None
        except Exception as exc:  # noqa: BLE001
            error = f"{type(exc).__name__}: {exc}"
        errors = [e for e in all_gather_objects(error) if e is not None]
        if errors:
            return self._failed(errors[0])

        # Every rank computed the same table; rank 0's is broadcast so that they agree even bit for bit.
        new_indices, new_scores = broadcast_object((selection.indices, selection.scores))
        changed = _changed_share(self.negatives, new_indices)
        self.negatives, self.negative_scores = new_indices, new_scores
        finite = new_scores[torch.isfinite(new_scores)]
        rank_counts = all_gather_objects(counts)
        stats = RefreshStats(
            refresh=self.refresh_count, mode="full" if full else "incremental",
            encode_s=timings["encode"], hash_s=timings["hash"], search_s=timings["search"],
            total_s=time.perf_counter() - start, texts_encoded=sum(c["encoded"] for c in rank_counts),
            texts_captured=sum(c["captured"] for c in rank_counts), changed_share=changed, filled=filled,
            anchor_negative_sim=float(finite.mean()) if finite.numel() else float("nan"),
            anchor_positive_sim=float(positive_scores.float().mean()),
        )
        self.refresh_count += 1
        self.history.append(asdict(stats))
        logger.info(
            "Refresh %d (%s): %.1fs (encode %.1fs, hash %.2fs, search %.2fs), %d texts encoded, %d captured, "
            "%.1f%% of negatives changed, %d slots filled at random, sim anchor-negative %.3f / anchor-positive %.3f",
            stats.refresh, stats.mode, stats.total_s, stats.encode_s, stats.hash_s, stats.search_s,
            stats.texts_encoded, stats.texts_captured, 100 * changed, filled, stats.anchor_negative_sim,
            stats.anchor_positive_sim,
        )
        return stats

    def _failed(self, reason: str) -> None:
        logger.warning("Hard-negative refresh failed (%s); training goes on with the previous negatives.", reason)
        self.history.append({"refresh": self.refresh_count, "failed": reason})
        return None

    def _local_stage(self, full: bool, reencode_unseen: bool, rank: int, world_size: int):
        """Encode this rank's shard of the texts to (re-)encode, and collect this rank's captured embeddings."""
        timings = {"encode": 0.0, "hash": 0.0}
        captured = self.capture.pop() if self.capture is not None and not full else {"query": {}, "corpus": {}}
        if full or self.corpus_embeddings is None:
            todo = {"query": np.arange(len(self.queries)), "corpus": np.arange(len(self.corpus))}
        elif reencode_unseen:
            # Texts no rank saw since the last refresh (the captured ids are gathered to decide).
            seen = all_gather_objects({k: np.fromiter(v, np.int64, len(v)) for k, v in captured.items()})
            todo = {}
            for name, n in (("query", len(self.queries)), ("corpus", len(self.corpus))):
                mask = np.ones(n, dtype=bool)
                for part in seen:
                    mask[part[name]] = False
                todo[name] = np.flatnonzero(mask)
        else:
            todo = {"query": np.empty(0, np.int64), "corpus": np.empty(0, np.int64)}
        local: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        t = time.perf_counter()
        was_training = self.model.training
        try:
            for name, texts in (("query", self.queries), ("corpus", self.corpus)):
                ids = todo[name][list(shard(len(todo[name]), rank, world_size))]
                embeddings = np.empty((0, 0), np.float32)
                if len(ids):
                    embeddings = encode_texts(
                        self.model, [texts[i] for i in ids], "query" if name == "query" else "document",
                        prompt=self.prompts[name], batch_size=self.batch_size,
                        show_progress_bar=self.show_progress_bar,
                        # Only the initial mining encodes weights that anything else (an evaluation, a miner
                        # run, a rerun) can share; caching a refresh would hash and write for nothing.
                        cache_folder=self.cache_folder if self.refresh_count == 0 else None,
                    )
                if captured[name]:
                    cap_ids = np.fromiter(captured[name], np.int64, len(captured[name]))
                    cap_emb = np.stack([captured[name][i] for i in cap_ids.tolist()])
                    # A text both captured and re-encoded keeps the encoded (eval-mode) embedding.
                    keep = ~np.isin(cap_ids, ids)
                    parts = [cap_emb[keep]] + ([embeddings] if len(ids) else [])
                    ids = np.concatenate([cap_ids[keep], ids])
                    embeddings = np.concatenate(parts).astype(np.float32, copy=False)
                local[name] = (ids, embeddings)
        finally:
            self.model.train(was_training)
        timings["encode"] = time.perf_counter() - t
        centre_sum = None
        if full:
            ids, embeddings = local["corpus"]
            dim = embeddings.shape[1] if len(ids) else self.model.get_sentence_embedding_dimension()
            centre_sum = torch.zeros(dim + 1, dtype=torch.float64)
            if len(ids):
                centre_sum[:-1] = torch.from_numpy(embeddings).double().sum(dim=0)
                centre_sum[-1] = len(ids)
        counts = {
            "encoded": sum(len(todo[k][list(shard(len(todo[k]), rank, world_size))]) for k in todo),
            "captured": sum(len(v) for v in captured.values()),
        }
        return local, centre_sum, timings, counts

    def _hash_local(self, local: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
        assert self.hasher is not None
        ids, embeddings = local["corpus"]
        codes = self.hasher.transform(embeddings) if len(ids) else np.empty((0, self.hasher.num_bytes), np.uint8)
        qids, qemb = local["query"]
        return {
            "corpus": (ids, codes, embeddings.astype(self.store_dtype, copy=False)),
            "query": (qids, qemb.astype(np.float32, copy=False)),
        }

    def _apply(self, gathered: list[dict[str, Any]]) -> None:
        """Write every rank's fresh codes and embeddings into the tables, in rank order."""
        assert self.hasher is not None
        dim = next((g["corpus"][2].shape[1] for g in gathered if len(g["corpus"][0])), None)
        if self.corpus_embeddings is None:
            if dim is None:
                raise RuntimeError("No corpus embeddings were computed.")
            self.corpus_embeddings = np.zeros((len(self.corpus), dim), self.store_dtype)
            self.corpus_codes = np.zeros((len(self.corpus), self.hasher.num_bytes), np.uint8)
            self.query_embeddings = np.zeros((len(self.queries), dim), np.float32)
        for part in gathered:
            ids, codes, embeddings = part["corpus"]
            if len(ids):
                self.corpus_codes[ids] = codes
                self.corpus_embeddings[ids] = embeddings
            qids, qemb = part["query"]
            if len(qids):
                self.query_embeddings[qids] = qemb

    def _search_select(self, progress: float):
        rules, range_max = self._settings(progress)
        window = min(range_max + self.max_positives, len(self.corpus))
        pool = min(max(window, math.ceil(self.pool_factor * window)), len(self.corpus))
        index = LSHIndex(hasher=self.hasher, store_embeddings="float32", backend="auto")
        index.add_codes(self.corpus_codes, self.corpus_embeddings.astype(np.float32, copy=False))
        scores, indices, positive_scores = search_candidates(
            index, self.query_embeddings, self.positive_indices, window, pool, verbose=self.show_progress_bar
        )
        rng = random.Random(self.seed + self.refresh_count)
        selection = select_with_positive_scores(
            scores, indices, self.positive_indices, positive_scores, self.num_negatives, range_max,
            rules["range_min"], rules["absolute_margin"], rules["relative_margin"], rules["max_score"],
            rules["min_score"], self.sampling_strategy, False, rng=rng,
        )
        filled = fill_missing(selection, len(self.corpus), self.positive_indices, rng)
        if filled:
            logger.info("Filled %d negative slots of %d with random corpus texts (too few mined candidates).",
                        filled, selection.indices.numel())
        return selection, positive_scores, filled

    # ---- checkpoints -----------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Hasher, codes, embeddings, negatives and the refresh counter."""
        if self.negatives is None or self.hasher is None:
            raise RuntimeError("Nothing to save: prepare() has not run.")
        return {
            "hasher": self.hasher.state_dict(),
            "corpus_codes": torch.from_numpy(self.corpus_codes),
            "corpus_embeddings": torch.from_numpy(np.ascontiguousarray(self.corpus_embeddings)),
            "query_embeddings": torch.from_numpy(self.query_embeddings),
            "negatives": self.negatives,
            "negative_scores": self.negative_scores,
            "refresh_count": self.refresh_count,
            "shape": (len(self.queries), len(self.corpus), self.num_negatives),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        expected = (len(self.queries), len(self.corpus), self.num_negatives)
        if tuple(state["shape"]) != expected:
            raise ValueError(f"Saved refresher state has (queries, corpus, negatives) = {tuple(state['shape'])}, "
                             f"but this refresher has {expected}.")
        self.hasher = LSHHasher.from_state_dict(state["hasher"], device="cpu")
        self.corpus_codes = state["corpus_codes"].numpy().copy()
        self.corpus_embeddings = state["corpus_embeddings"].numpy().copy()
        self.query_embeddings = state["query_embeddings"].numpy().copy()
        self.negatives = state["negatives"].clone()
        self.negative_scores = state["negative_scores"].clone()
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
        if self.negatives is None:
            self.prepare()
        if args.dataloader_num_workers > 0 and args.dataloader_persistent_workers:
            logger.warning("Persistent dataloader workers keep a copy of the negatives: refreshed negatives will "
                           "not reach them. Use dataloader_persistent_workers=False.")
        if self.mode == "incremental" and self.capture is None:
            self.capture = EmbeddingCapture(self.model, {"query": self.queries, "corpus": self.corpus}, self.prompts)
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
        if state.is_world_process_zero and self.negatives is not None:
            self.save(Path(args.output_dir) / f"checkpoint-{state.global_step}")

    def _refresh_and_log(self, state: TrainerState) -> None:
        progress = state.global_step / max(state.max_steps, 1)
        stats = self.refresh(progress=progress)
        entry: dict[str, Any] = {"epoch": state.epoch, "step": state.global_step}
        if stats is None:
            entry["refresh/failed"] = 1
        else:
            entry.update({f"refresh/{k}": v for k, v in asdict(stats).items()})
        state.log_history.append(entry)


def _changed_share(old: torch.Tensor | None, new: torch.Tensor) -> float:
    """Share of (query, negative) slots whose negative is not among the query's previous negatives."""
    if old is None:
        return 1.0
    same = (new.unsqueeze(-1) == old.unsqueeze(1)).any(dim=-1)
    return float(1.0 - same.float().mean())
