"""``mine_hard_negatives``: a drop-in replacement for ``sentence_transformers.util.mine_hard_negatives``.

The pipeline is encode -> hash -> search -> select -> format. Instead of an exact float32 search over the whole
corpus, the corpus is hashed to ``num_bits``-bit codes, a Hamming candidate pool ``pool_factor`` times the rank
window is found per query, and only that pool is rescored exactly. When the pool holds the exact window, the
output is identical to sentence-transformers'.

Example::

    >>> from datasets import load_dataset
    >>> from sentence_transformers import SentenceTransformer
    >>> from st_lsh import mine_hard_negatives          # was: from sentence_transformers.util import ...
    >>> model = SentenceTransformer("sentence-transformers/all-MiniLM-L6-v2")
    >>> dataset = load_dataset("sentence-transformers/natural-questions", split="train")
    >>> dataset = mine_hard_negatives(dataset, model, range_min=10, range_max=50, relative_margin=0.05,
    ...                               num_negatives=5, sampling_strategy="random", num_bits=512, seed=12)
"""

from __future__ import annotations

import logging
import math
import random
import time
from typing import Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from .encode import check_texts, encode_texts, model_fingerprint
from .format import OUTPUT_FORMATS, MinedNegatives, format_negatives, mining_statistics
from .hashing import Centering, check_num_bits
from .index import LSHIndex, StoreDtype
from .search import Backend
from .select import select_negatives

logger = logging.getLogger(__name__)

DEFAULT_NUM_BITS = 512
DEFAULT_POOL_FACTOR = 8.0
MIN_POOL = 256  # small windows need a larger relative pool: rescoring 256 candidates per query is cheap


def mine_hard_negatives(
    dataset,
    model,
    anchor_column_name: str | None = None,
    positive_column_name: str | None = None,
    corpus: list[str] | None = None,
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
    center: bool | Centering = "corpus",
    pool_factor: float = DEFAULT_POOL_FACTOR,
    candidate_pool: int | None = None,
    store_embeddings: StoreDtype = "float32",
    device: str | torch.device | None = None,
    search_backend: Backend = "auto",
):
    """Add LSH-mined hard negatives to a dataset of (anchor, positive) pairs.

    Every argument of ``sentence_transformers.util.mine_hard_negatives`` (6.2) is accepted with the same default
    and meaning; see its documentation. In brief: candidates are ranked by similarity to the anchor, positives
    are excluded, ``absolute_margin`` / ``relative_margin`` / ``max_score`` / ``min_score`` filter them,
    ``range_min`` / ``range_max`` bound the rank window, and ``num_negatives`` are taken by ``sampling_strategy``
    ("top" or "random"). ``output_format`` is "triplet", "n-tuple", "labeled-pair" or "labeled-list";
    ``output_scores`` adds the scores. ``faiss_batch_size`` is the number of queries searched at a time;
    ``use_faiss=True`` asks for faiss' binary index as the Hamming search backend (it is also the CPU default
    when faiss is installed). ``as_triplets`` and ``margin`` are the deprecated aliases of ``output_format`` and
    ``absolute_margin``.

    LSH arguments (keyword-only):
        num_bits: Bits per code (a positive multiple of 8). More bits rank closer to exact search; 512 by default.
        seed: Seed of the LSH projection and of ``sampling_strategy="random"``: the same seed gives the same
            output. None draws a fresh seed.
        center: ``"corpus"`` (default, same as True) centres the corpus codes on the corpus mean so every bit splits
            the corpus evenly, and hashes queries against the plain hyperplanes; ``"both"`` centres queries too;
            False centres nothing (see :class:`st_lsh.LSHHasher`).
        pool_factor: Hamming candidates per query, as a multiple of the rank window ``range_max + max_positives``.
            They are rescored exactly, so a larger pool only costs a little rescoring. 8 by default, and at least
            256 candidates.
        candidate_pool: Absolute pool size per query; overrides ``pool_factor``.
        store_embeddings: "float32" (default; exact scores, the same output as sentence-transformers), "float16"
            (half the memory, scores rounded to ~1e-3), or None (codes only: ``num_bits / 8`` bytes per text,
            scores estimated as ``cos(pi * hamming / num_bits)``).
        device: Device for hashing and GPU search; None uses the model's device.
        search_backend: "auto", "faiss", "torch" or "numpy" (see :func:`st_lsh.hamming_topk`).

    Returns:
        A ``datasets.Dataset`` in ``output_format``, as sentence-transformers returns it.

    Raises:
        ValueError: on an empty dataset or corpus, a missing column, non-string texts, ``num_negatives`` < 1 or
            larger than the rank window, ``range_min`` >= ``range_max``, ``num_bits`` that is not a positive
            multiple of 8, an explicit ``range_max`` larger than the corpus, or NaN / zero embeddings.
    """
    timings: dict[str, float] = {}
    start = time.perf_counter()
    if dataset is None or len(dataset) == 0:
        raise ValueError("The dataset is empty. Please provide a non-empty dataset.")
    num_bits = check_num_bits(num_bits)
    if faiss_batch_size <= 0:
        raise ValueError(f"faiss_batch_size must be a positive integer, got {faiss_batch_size}.")
    if not pool_factor >= 1:
        raise ValueError(f"pool_factor must be at least 1, got {pool_factor}.")
    if candidate_pool is not None and candidate_pool < 1:
        raise ValueError(f"candidate_pool must be a positive integer, got {candidate_pool}.")
    if num_negatives < 1:
        raise ValueError(f"num_negatives must be at least 1, got num_negatives={num_negatives}.")
    if sampling_strategy not in ("top", "random"):
        raise ValueError(f"sampling_strategy must be 'top' or 'random', got {sampling_strategy!r}.")
    if range_min < 0:
        raise ValueError(f"range_min must be non-negative, got range_min={range_min}.")
    if use_faiss:
        search_backend = "faiss"

    anchor_column_name, positive_column_name = resolve_columns(dataset.column_names, anchor_column_name, positive_column_name)
    output_format, output_scores, absolute_margin = _resolve_deprecated(
        output_format, output_scores, as_triplets, margin, absolute_margin, include_positives,
        range_min, range_max, max_score, min_score, relative_margin, sampling_strategy,
    )

    anchors = check_texts(dataset[anchor_column_name], f"Column {anchor_column_name!r}")
    positives = check_texts(dataset[positive_column_name], f"Column {positive_column_name!r}")
    if corpus is not None:
        corpus = check_texts(corpus, "corpus")
        if not corpus:
            raise ValueError("The corpus is empty. Pass None to use the positives as the corpus.")
    # Corpus = extra documents plus every positive, de-duplicated in order; queries de-duplicated too.
    corpus = list(dict.fromkeys((corpus or []) + positives))
    corpus_ids = {text: i for i, text in enumerate(corpus)}
    queries = list(dict.fromkeys(anchors))
    query_ids = {text: i for i, text in enumerate(queries)}
    positive_indices: list[list[int]] = [[] for _ in queries]
    for anchor, positive in zip(anchors, positives):
        row = positive_indices[query_ids[anchor]]
        if corpus_ids[positive] not in row:
            row.append(corpus_ids[positive])
    max_positives = max(len(p) for p in positive_indices)
    if len(queries) != len(anchors):
        logger.info("Found %d unique queries out of %d total queries.", len(queries), len(anchors))
    if max_positives > 1:
        logger.info("Found an average of %.3f positives per query.", np.mean([len(p) for p in positive_indices]))

    range_max = resolve_range_max(
        range_max, range_min, num_negatives, max_positives, len(corpus), cross_encoder,
        absolute_margin, relative_margin, max_score, min_score,
    )
    window = min(range_max + max_positives, len(corpus))
    pool = candidate_pool if candidate_pool is not None else max(math.ceil(pool_factor * window), MIN_POOL)
    pool = min(max(pool, window), len(corpus))
    device = device if device is not None else getattr(model, "device", None)

    # encode
    multi_pool = None
    if use_multi_process:
        multi_pool = model.start_multi_process_pool(
            target_devices=None if isinstance(use_multi_process, bool) else use_multi_process
        )
    try:
        t = time.perf_counter()
        fingerprint = model_fingerprint(model) if cache_folder else None
        corpus_embeddings = encode_texts(
            model, corpus, "document", corpus_prompt_name, corpus_prompt, batch_size, multi_pool, verbose,
            cache_folder, fingerprint,
        )
        query_embeddings = encode_texts(
            model, queries, "query", query_prompt_name, query_prompt, batch_size, multi_pool, verbose,
            cache_folder, fingerprint,
        )
        timings["encode"] = time.perf_counter() - t
    finally:
        if multi_pool is not None:
            model.stop_multi_process_pool(multi_pool)

    # hash
    t = time.perf_counter()
    index = LSHIndex(
        num_bits=num_bits, center=center, random_state=seed, store_embeddings=store_embeddings,
        device=device, backend=search_backend,
    )
    for chunk_start in tqdm(range(0, len(corpus), 65536), desc="Hashing corpus", disable=not verbose):
        index.add(corpus_embeddings[chunk_start : chunk_start + 65536])
    if store_embeddings is None:
        corpus_embeddings = None  # only the codes are kept from here on
    timings["hash"] = time.perf_counter() - t

    # search + rescore: a Hamming pool per query, rescored exactly and cut to the rank window
    t = time.perf_counter()
    scores, indices, positive_scores = search_candidates(
        index, query_embeddings, positive_indices, window, pool, faiss_batch_size, verbose
    )
    pair_query = _pair_queries(positive_indices)
    pair_positive = np.array([[i] for p in positive_indices for i in p])
    if cross_encoder is not None and any(v is not None for v in (absolute_margin, relative_margin, max_score, min_score)):
        scores, positive_scores = _cross_encoder_scores(
            cross_encoder, queries, corpus, indices, pair_query.tolist(), pair_positive.flatten().tolist(),
            batch_size, use_multi_process, verbose,
        )
    timings["search"] = time.perf_counter() - t

    # select
    t = time.perf_counter()
    selection = select_with_positive_scores(
        scores, indices, positive_indices, positive_scores, num_negatives, range_max, range_min,
        absolute_margin, relative_margin, max_score, min_score, sampling_strategy, include_positives,
        rng=random.Random(seed),
    )
    timings["select"] = time.perf_counter() - t

    # format
    logger.info("Negative candidates mined, preparing dataset...")
    mined = MinedNegatives(queries, corpus, positive_indices, positive_scores, selection.indices, selection.scores)
    result = format_negatives(mined, output_format, anchor_column_name, positive_column_name, output_scores, len(dataset))
    timings["total"] = time.perf_counter() - start
    if verbose:
        params = {"range_min": range_min, "absolute_margin": absolute_margin, "relative_margin": relative_margin,
                  "max_score": max_score, "min_score": min_score}
        _log_summary(result, positive_scores, selection.skipped, params, timings, index, pool)
    return result.dataset


def _pair_queries(positive_indices: list[list[int]]) -> torch.Tensor:
    """Query id of each (query, positive) pair, in the flat pair order."""
    return torch.tensor([q for q, p in enumerate(positive_indices) for _ in p], dtype=torch.long)


def search_candidates(
    index: LSHIndex,
    query_embeddings: np.ndarray,
    positive_indices: list[list[int]],
    window: int,
    pool: int,
    query_chunk_size: int = 16384,
    verbose: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Search stage of the miner, reusable on any filled :class:`LSHIndex` (e.g. the training-time refresh).

    Returns ``(scores, indices)`` of the ``window`` best candidates per query (Hamming pool of ``pool``, rescored)
    and the flat scores of every (query, positive) pair, query 0's positives first.
    """
    scores, indices = index.search(
        query_embeddings, k=window, pool_size=pool, query_chunk_size=query_chunk_size, show_progress_bar=verbose
    )
    pair_query = _pair_queries(positive_indices)
    pair_positive = np.array([[i] for p in positive_indices for i in p])
    positive_scores = index.rescore(query_embeddings[pair_query.numpy()], pair_positive).flatten()
    return torch.from_numpy(scores), torch.from_numpy(indices), positive_scores


def select_with_positive_scores(
    scores: torch.Tensor,
    indices: torch.Tensor,
    positive_indices: list[list[int]],
    positive_scores: torch.Tensor,
    num_negatives: int,
    range_max: int,
    range_min: int = 0,
    absolute_margin: float | None = None,
    relative_margin: float | None = None,
    max_score: float | None = None,
    min_score: float | None = None,
    sampling_strategy: Literal["random", "top"] = "top",
    include_positives: bool = False,
    rng: random.Random | None = None,
):
    """Select stage of the miner: :func:`~st_lsh.select.select_negatives`, with the margins taken against the
    lowest (hardest) positive of each query, from the flat pair scores that :func:`search_candidates` returns."""
    pair_query = _pair_queries(positive_indices)
    min_positive = torch.full((len(positive_indices),), float("inf")).scatter_reduce(
        0, pair_query, positive_scores.float(), "amin"
    )
    return select_negatives(
        scores, indices, positive_indices, min_positive, num_negatives, range_max, range_min,
        absolute_margin, relative_margin, max_score, min_score, sampling_strategy, include_positives, rng=rng,
    )


def resolve_columns(
    columns: list[str],
    anchor: str | None,
    positive: str | None,
    source: str = "the dataset",
    arg_names: tuple[str, str] = ("anchor_column_name", "positive_column_name"),
) -> tuple[str, str]:
    """The (anchor, positive) column names: the given ones, checked, or the first two columns."""
    columns = list(columns)
    for role, arg, value in zip(("anchor", "positive"), arg_names, (anchor, positive)):
        if value is not None and value not in columns:
            raise ValueError(f"Unknown {role} column {value!r} ({arg}={value!r} is not a column of {source}); "
                             f"its columns are {columns}.")
    if len(columns) < 2 and (anchor is None or positive is None):
        raise ValueError(f"{source} needs an anchor and a positive column, but it only has {columns}.")
    anchor = anchor or columns[0]
    positive = positive or next(c for c in columns if c != anchor)
    if anchor == positive:
        raise ValueError(f"The anchor and positive columns must differ, both are {anchor!r}.")
    return anchor, positive


def _resolve_deprecated(output_format, output_scores, as_triplets, margin, absolute_margin, include_positives,
                        range_min, range_max, max_score, min_score, relative_margin, sampling_strategy):
    if as_triplets is not None:
        output_format = "triplet" if as_triplets else "n-tuple"
        logger.warning("The `as_triplets` parameter is deprecated. Use `output_format` instead. "
                       "Setting `output_format` to `%s`.", output_format)
    if include_positives:
        if (range_min != 0 or range_max is not None or max_score is not None or min_score is not None
                or absolute_margin is not None or relative_margin is not None or margin is not None
                or sampling_strategy != "top"):
            logger.warning("When using `include_positives=True`, changing `range_min`, `range_max`, `max_score`, "
                           "`min_score`, `absolute_margin`, `relative_margin` or `sampling_strategy` from their "
                           "defaults may still discard the positives.")
        if output_format != "n-tuple":
            logger.warning('When using `include_positives=True`, `output_format` is set to "n-tuple" to keep the ranking order.')
            output_format = "n-tuple"
    if output_format == "n-tuple-scores":
        logger.warning('`output_format="n-tuple-scores"` is deprecated; use "n-tuple" with output_scores=True.')
        output_format, output_scores = "n-tuple", True
    if output_format not in OUTPUT_FORMATS:
        raise ValueError(f"Invalid output_format: {output_format!r}. Must be one of {', '.join(OUTPUT_FORMATS)}.")
    if margin is not None:
        absolute_margin = margin
        logger.warning("The `margin` parameter is deprecated. Use `absolute_margin` and/or `relative_margin`. "
                       "Setting `absolute_margin` to `%s`.", absolute_margin)
    return output_format, output_scores, absolute_margin


def resolve_range_max(range_max, range_min, num_negatives, max_positives, n_corpus, cross_encoder,
                       absolute_margin, relative_margin, max_score, min_score) -> int:
    if range_max is None:
        filtering = (absolute_margin is not None or relative_margin is not None or max_score is not None
                     or (cross_encoder is not None and min_score is not None))
        # Room for candidates that the filters skip (10x), for the positives, and for range_min.
        range_max = range_min + num_negatives * (10 if filtering else 1) + max_positives
        logger.info("Setting range_max to %d based on the provided parameters.", range_max)
        if range_max > n_corpus:
            logger.info("The corpus has only %d texts: range_max is capped to it.", n_corpus)
            range_max = n_corpus
    elif range_max > n_corpus:
        raise ValueError(
            f"range_max={range_max} is larger than the corpus, which has {n_corpus} unique texts (the positives "
            "included). Lower range_max or pass a larger corpus."
        )
    if range_min >= range_max:
        raise ValueError(f"range_min must be smaller than range_max, got range_min={range_min} and range_max={range_max}.")
    if num_negatives > range_max - range_min:
        raise ValueError(
            f"Cannot mine {num_negatives} negatives per query: only {range_max - range_min} candidates remain after "
            f"skipping the first range_min={range_min} of range_max={range_max}"
            + (f" (the corpus has {n_corpus} unique texts)" if range_max == n_corpus else "")
            + ". Decrease num_negatives or range_min, or increase range_max."
        )
    return range_max


def _cross_encoder_scores(cross_encoder, queries, corpus, indices, pair_query, pair_positive, batch_size,
                          use_multi_process, verbose):
    pool = None
    if use_multi_process:
        pool = cross_encoder.start_multi_process_pool(
            target_devices=None if isinstance(use_multi_process, bool) else use_multi_process
        )
    try:
        pairs = [(queries[q], corpus[i]) for q, row in enumerate(indices.tolist()) for i in row if i >= 0]
        flat = torch.as_tensor(
            cross_encoder.predict(pairs, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=verbose,
                                  pool=pool), dtype=torch.float32,
        )
        scores = torch.full(indices.shape, float("-inf"))
        scores[indices >= 0] = flat
        positive_scores = torch.as_tensor(
            cross_encoder.predict([(queries[q], corpus[p]) for q, p in zip(pair_query, pair_positive)],
                                  batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False, pool=pool),
            dtype=torch.float32,
        )
    finally:
        if pool is not None:
            cross_encoder.stop_multi_process_pool(pool)
    return scores, positive_scores


def _log_summary(result, positive_scores, skipped, params, timings, index: LSHIndex, pool: int) -> None:
    for line in mining_statistics(positive_scores, result):
        logger.info(line)
    for name in ("absolute_margin", "relative_margin", "max_score", "min_score"):
        if name in skipped:
            logger.info("Skipped %s potential negatives (%.2f%%) due to the %s of %s.",
                        f"{skipped[name]['skipped']:,}", 100 * skipped[name]["ratio"], name, params[name])
    missing = result.max_rows - len(result.dataset)
    if missing > 0:
        knobs = ["range_max"] + (["range_min"] if params["range_min"] > 0 else [])
        knobs += [n for n in ("absolute_margin", "relative_margin", "max_score") if params[n] is not None]
        logger.info("Could not find enough negatives for %d samples (%.2f%%). Consider adjusting the %s parameter%s "
                    "if you'd like to find more valid negatives.", missing, 100 * missing / result.max_rows,
                    " and ".join([", ".join(knobs[:-1]), knobs[-1]]) if len(knobs) > 1 else knobs[0],
                    "s" if len(knobs) > 1 else "")
    logger.info("LSH: %d bits, %d candidates per query, index %.1f MB; time (s): %s", index.num_bits, pool,
                index.nbytes / 2**20, ", ".join(f"{k} {v:.2f}" for k, v in timings.items()))
