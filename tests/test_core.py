"""One core: the miner, the refresher and LSHIndex share one centring rule, one pool rule and one store, whatever
the input shape (lists, generators, IterableDataset), the store mode and the device.

A stand-in model maps the text ``"t<i>"`` to row ``i`` of a fixed random matrix, so the tests control every
embedding and can use 100k of them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset, IterableDataset

import st_lsh.kernels as kernels
import st_lsh.candidates as candidates_module
import st_lsh.training.table as table_module
from st_lsh import LSHIndex, LSHSettings, NegativeRules, mine_hard_negatives
from st_lsh.hashing import LSHHasher
from st_lsh.training import HardNegativeRefresher

DIM = 48


class VectorModel:
    """Stand-in SentenceTransformer: ``"t<i>"`` is corpus row ``i`` and ``"q<i>"`` query row ``i`` of fixed
    random matrices (normalised as sentence-transformers' miner asks)."""

    def __init__(self, n_corpus: int, n_queries: int = 64, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.corpus = rng.standard_normal((n_corpus, DIM)).astype(np.float32) + 0.3  # off-centre, like real ones
        self.query_source = rng.integers(0, n_corpus, n_queries)  # each query's positive
        self.queries = self.corpus[self.query_source] + 0.3 * rng.standard_normal((n_queries, DIM)).astype(np.float32)
        self.device = torch.device("cpu")
        self.similarity_fn_name = "cosine"
        self.max_seq_length = 64
        self.training = False
        self.encoded = 0

    def _encode(self, texts, normalize_embeddings=False, **kwargs) -> np.ndarray:
        self.encoded += len(texts)
        rows = np.stack([(self.queries if t[0] == "q" else self.corpus)[int(t[1:])] for t in texts])
        if normalize_embeddings:
            rows = rows / np.linalg.norm(rows, axis=1, keepdims=True)
        return rows.astype(np.float32)

    encode_query = encode_document = _encode

    def train(self, mode: bool = True):
        self.training = mode
        return self

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"corpus": torch.from_numpy(self.corpus[:8])}

    def get_embedding_dimension(self) -> int:
        return DIM

    def normalised(self) -> np.ndarray:
        return self.corpus / np.linalg.norm(self.corpus, axis=1, keepdims=True)


def pairs_for(model: VectorModel, n: int = 64) -> Dataset:
    return Dataset.from_dict({"anchor": [f"q{i}" for i in range(n)],
                              "positive": [f"t{model.query_source[i]}" for i in range(n)]})


class _RecordingIndex(LSHIndex):
    fitted: list[np.ndarray] = []

    def fit(self, corpus):
        super().fit(corpus)
        _RecordingIndex.fitted.append(self.codes.copy())
        return self


def test_same_codes_through_the_miner_the_refresher_and_lshindex_at_100k(monkeypatch) -> None:
    """100k random vectors (more than one 65,536-row chunk): one centring rule, the mean of the whole corpus."""
    model = VectorModel(100_000)
    texts = [f"t{i}" for i in range(100_000)]
    reference = LSHIndex(settings=LSHSettings(num_bits=256, seed=3)).fit(model.normalised()).codes

    _RecordingIndex.fitted = []
    monkeypatch.setattr(candidates_module, "LSHIndex", _RecordingIndex)
    mine_hard_negatives(pairs_for(model, 16), model, corpus=texts, num_bits=256, seed=3, num_negatives=1,
                        candidate_pool=64, verbose=False)
    assert np.array_equal(_RecordingIndex.fitted[0], reference)

    refresher = HardNegativeRefresher(model, pairs_for(model, 16), corpus=texts, num_bits=256, seed=3, mode="full",
                                      lsh=LSHSettings(num_bits=256, seed=3, candidate_pool=64))
    refresher.prepare()
    assert np.array_equal(refresher.table.codes, reference)

    # The centre really is the whole corpus' mean: centring on the first chunk alone gives other codes.
    first_chunk = LSHHasher(256, random_state=3).fit(model.normalised()[:65_536]).transform(model.normalised())
    assert not np.array_equal(first_chunk, reference)


STORES = ["float32", "float16", "disk", None]


@pytest.mark.parametrize("store", STORES, ids=str)
def test_streamed_inputs_give_the_in_memory_negatives(store) -> None:
    model = VectorModel(3000)
    pairs = pairs_for(model, 64)
    corpus = [f"t{i}" for i in range(3000)]
    kwargs = dict(num_negatives=3, range_min=2, range_max=20, relative_margin=0.02, num_bits=128, seed=5,
                  candidate_pool=3000, store_embeddings=store, output_format="n-tuple", output_scores=True,
                  verbose=False)
    in_memory = mine_hard_negatives(pairs, model, corpus=corpus, **kwargs)
    streamed = mine_hard_negatives(pairs.to_iterable_dataset(), model, corpus=(t for t in corpus),
                                   chunk_size=700, faiss_batch_size=10, **kwargs)
    assert len(in_memory) > 0
    assert streamed.to_list() == in_memory.to_list()
    if store in ("disk", "float16"):  # exact stores: the float32 negatives
        exact = mine_hard_negatives(pairs, model, corpus=corpus, **{**kwargs, "store_embeddings": "float32"})
        same = np.mean([a[f"negative_{j}"] == b[f"negative_{j}"] for a, b in zip(exact, in_memory) for j in (1, 2, 3)])
        assert same == 1.0 if store == "disk" else same > 0.97


def test_iterable_dataset_from_a_generator() -> None:
    model = VectorModel(500)

    def rows():
        for i in range(40):
            yield {"anchor": f"q{i}", "positive": f"t{model.query_source[i]}"}

    streamed = mine_hard_negatives(IterableDataset.from_generator(rows), model, corpus=(f"t{i}" for i in range(500)),
                                   num_negatives=2, output_format="n-tuple", verbose=False)
    listed = mine_hard_negatives(Dataset.from_generator(rows), model, corpus=[f"t{i}" for i in range(500)],
                                 num_negatives=2, output_format="n-tuple", verbose=False)
    assert len(listed) == 40 and streamed.to_list() == listed.to_list()


def test_disk_store_is_removed_unless_it_is_the_cache(tmp_path: Path, monkeypatch) -> None:
    import tempfile

    model = VectorModel(2000)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    for store in ("disk", None):
        mine_hard_negatives(pairs_for(model), model, corpus=[f"t{i}" for i in range(2000)], store_embeddings=store,
                            verbose=False)
        assert list(scratch.iterdir()) == [], f"store={store!r} left {list(scratch.iterdir())}"
    cache = tmp_path / "cache"
    mine_hard_negatives(pairs_for(model), model, corpus=[f"t{i}" for i in range(2000)], store_embeddings="disk",
                        cache_folder=str(cache), verbose=False)
    names = sorted(p.name.split("_embeddings_")[0] for p in cache.iterdir())
    assert names == ["corpus", "query"] and not list(cache.glob("*.partial")) and list(scratch.iterdir()) == []
    corpus_file = next(cache.glob("corpus_embeddings_*.npy"))
    np.testing.assert_allclose(np.load(corpus_file)[:5], model.normalised()[:5], rtol=1e-6)


def test_the_refresher_hashes_and_searches_on_the_models_device(monkeypatch) -> None:
    """A model on CUDA: the table's hasher is created on that device (a CPU stand-in records the request)."""
    requested: list[torch.device] = []

    class RecordingHasher(LSHHasher):
        def __init__(self, *args, device=None, **kwargs):
            requested.append(torch.device(device))
            super().__init__(*args, device="cpu", **kwargs)

    monkeypatch.setattr(table_module, "LSHHasher", RecordingHasher)
    model = VectorModel(400)
    model.device = torch.device("cuda", 0)
    refresher = HardNegativeRefresher(model, pairs_for(model, 8), corpus=[f"t{i}" for i in range(400)], num_bits=64)
    assert refresher.table.device == torch.device("cuda", 0)
    refresher.prepare()
    assert requested == [torch.device("cuda", 0)]


def test_float16_store_stays_float16_and_rescoring_reads_only_pools(monkeypatch) -> None:
    model = VectorModel(4000)
    refresher = HardNegativeRefresher(model, pairs_for(model, 32), corpus=[f"t{i}" for i in range(4000)],
                                      lsh=LSHSettings(num_bits=128, store="float16", candidate_pool=40), mode="full")
    refresher.prepare()
    store = refresher.table.store
    assert store.array.dtype == np.float16
    taken: list[int] = []
    original_take, original_dot = type(store).take, kernels.gather_dot

    def take(self, ids):
        taken.append(len(ids))
        return original_take(self, ids)

    def gather_dot(queries, rows, indices):
        assert rows.dtype == np.float16  # read as stored, widened in registers
        taken.append(int((indices >= 0).sum()))
        return original_dot(queries, rows, indices)

    monkeypatch.setattr(type(store), "take", take)
    monkeypatch.setattr(kernels, "gather_dot", gather_dot)
    refresher.refresh()
    assert refresher.table.store.array.dtype == np.float16
    assert taken and max(taken) <= 32 * 40  # pools and positives, never the whole table


def test_pool_rule_is_shared() -> None:
    settings = LSHSettings()
    assert settings.pool_size(24, 100_000) == 256 and settings.pool_size(100, 100_000) == 800
    assert settings.pool_size(100, 500) == 500 and LSHSettings(store=None).pool_size(100, 10_000) == 100
    index = LSHIndex(settings=settings).fit(np.random.default_rng(0).standard_normal((1000, 16)).astype(np.float32))
    assert index.pool_size(24) == settings.pool_size(24, 1000)
    rules = NegativeRules(num_negatives=2, range_min=3, relative_margin=0.1).resolve(max_positives=4)
    assert rules.range_max == 3 + 20 + 4 and rules.window(4) == 31


def _resident_file_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssFile:"):
            return int(line.split()[1])
    pytest.skip("no RssFile in /proc/self/status")


def test_disk_store_pages_leave_the_rss_after_a_pass_and_the_rows_stay(tmp_path: Path) -> None:
    """A pass over a memory-mapped store releases its pages (MADV_DONTNEED): the process does not keep the whole
    file resident, and every row reads back as written (dirty pages are written back, not lost)."""
    from st_lsh.store import open_store

    rows = np.random.default_rng(0).standard_normal((200_000, 128)).astype(np.float32)  # 100 MB
    store = open_store("disk", len(rows), 128, folder=tmp_path, name="emb")
    try:
        before = _resident_file_kb()
        for start in range(0, len(rows), 50_000):
            store.write(start, rows[start : start + 50_000])
        total = sum(float(chunk.sum(dtype=np.float64)) for _, chunk in store.chunks(50_000))
        assert _resident_file_kb() - before < 60_000  # at most about one chunk (25 MB) stays mapped, not 100 MB
        assert total == pytest.approx(float(rows.sum(dtype=np.float64)), rel=1e-9)
        ids = np.random.default_rng(1).integers(0, len(rows), 1000)
        assert np.array_equal(store.take(ids), rows[ids])
    finally:
        store.close()
