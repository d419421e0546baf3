"""Loaders on the real SciFact and MS MARCO files in ../shared/data, and their errors on bad input."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from st_lsh import data
from st_lsh.data import (
    doc_text,
    load_beir,
    load_msmarco,
    load_msmarco_triples,
    load_qrels,
    load_trec_run,
    load_tsv,
    pairs_from_qrels,
)


def _write_beir(folder: Path, corpus: dict, queries: dict, qrels: dict[str, list[tuple[str, str, int]]]) -> Path:
    (folder / "qrels").mkdir(parents=True)
    with open(folder / "corpus.jsonl", "w") as f:
        for docid, (title, text) in corpus.items():
            f.write(json.dumps({"_id": docid, "title": title, "text": text}) + "\n")
    with open(folder / "queries.jsonl", "w") as f:
        for qid, text in queries.items():
            f.write(json.dumps({"_id": qid, "text": text}) + "\n")
    for split, rows in qrels.items():
        with open(folder / "qrels" / f"{split}.tsv", "w", newline="") as f:
            f.write("query-id\tcorpus-id\tscore\r\n")
            f.writelines(f"{q}\t{d}\t{s}\r\n" for q, d, s in rows)
    return folder


@pytest.fixture
def tiny_beir(tmp_path: Path) -> Path:
    corpus = {"d1": ("Title one", "Text one."), "d2": ("", "Text two."), "d3": ("T3", "Text three.")}
    queries = {"q1": "first query", "q2": "second query", "q3": "unjudged query"}
    qrels = {"test": [("q1", "d1", 2), ("q1", "d2", 0), ("q2", "d3", 1)], "train": [("q2", "d2", 1)]}
    return _write_beir(tmp_path / "tiny", corpus, queries, qrels)


# ---------------------------------------------------------------- real data


def test_scifact_test_split(scifact_path: Path) -> None:
    corpus, queries, qrels = load_beir(scifact_path, split="test")
    assert (len(corpus), len(queries), len(qrels)) == (5183, 300, 300)
    assert sum(len(rels) for rels in qrels.values()) == 339
    # The qrels file has CRLF line endings: no id or grade may keep a stray '\r'.
    assert all("\r" not in qid and all("\r" not in d for d in rels) for qid, rels in qrels.items())
    assert qrels["1"] == {"31715818": 1}
    assert set(queries) == set(qrels)
    assert queries["1"] == "0-dimensional biomaterials show inductive properties."
    assert set(corpus["31715818"]) == {"title", "text"}


def test_scifact_train_pairs(scifact_path: Path) -> None:
    corpus, queries, qrels = load_beir(scifact_path, split="train")
    assert (len(queries), sum(len(rels) for rels in qrels.values())) == (809, 919)
    pairs = pairs_from_qrels(corpus, queries, qrels)
    assert pairs.column_names == ["anchor", "positive"]
    assert len(pairs) == 919
    qid, docid = "0", next(iter(qrels["0"]))
    row = pairs[0]
    assert row["anchor"] == queries[qid] == "0-dimensional biomaterials lack inductive properties."
    assert row["positive"] == (corpus[docid]["title"] + " " + corpus[docid]["text"]).strip()
    assert row["positive"].startswith("New opportunities: the use of nanotechnologies")


def test_msmarco_dl19(msmarco_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="st_lsh.data"):
        corpus, queries, qrels = load_msmarco(
            msmarco_path / "collection.tsv", msmarco_path / "queries.dl19.tsv", msmarco_path / "qrels.dl19.tsv"
        )
    assert (len(corpus), len(queries), sum(map(len, qrels.values()))) == (31450, 43, 9260)
    assert {g for rels in qrels.values() for g in rels.values()} == {0, 1, 2, 3}
    assert queries["183378"] == "exons definition biology"
    assert qrels["183378"]["1289497"] == 3
    assert corpus["1289497"]["title"] == ""
    assert corpus["1289497"]["text"].startswith("For other uses, see Exon (disambiguation) . An exon is any part")
    # Judged passages without text are counted and reported, and stay in the qrels.
    assert "3441 of 9139 judged document ids are not in the corpus (0 of them judged relevant)" in caplog.text
    assert sum(d not in corpus for rels in qrels.values() for d in rels) == 3562


def test_msmarco_dl20_reports_missing_relevant(msmarco_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="st_lsh.data"):
        corpus, queries, qrels = load_msmarco(
            msmarco_path / "collection.tsv", msmarco_path / "queries.dl20.tsv", msmarco_path / "qrels.dl20.tsv"
        )
    assert (len(queries), sum(map(len, qrels.values()))) == (54, 11386)
    assert "6078 of 11224 judged document ids are not in the corpus (1244 of them judged relevant)" in caplog.text


def test_msmarco_triples(msmarco_path: Path) -> None:
    path = msmarco_path / "train" / "triples.train.small.head100.tsv"
    triples = load_msmarco_triples(path)
    assert triples.column_names == ["anchor", "positive", "negative"]
    assert len(triples) == 100
    first = path.read_text(encoding="utf-8").split("\n")[0].split("\t")
    assert list(triples[0].values()) == first


def test_msmarco_dev_small_ids_only(msmarco_path: Path) -> None:
    ids_only = msmarco_path / "ids_only"
    qrels = load_qrels(ids_only / "qrels.dev.small.tsv")
    assert (len(qrels), sum(map(len, qrels.values()))) == (6980, 7437)
    assert len(load_tsv(ids_only / "queries.dev.small.tsv")) == 6980
    # The shipped collection lacks the dev-small passages: the loader must say so, not score zeros.
    with pytest.raises(ValueError, match=r"6938 of 6980 queries have no relevant document with text"):
        load_msmarco(msmarco_path / "collection.tsv", ids_only / "queries.dev.small.tsv", ids_only / "qrels.dev.small.tsv")
    corpus, queries, qrels = load_msmarco(
        msmarco_path / "collection.tsv",
        ids_only / "queries.dev.small.tsv",
        ids_only / "qrels.dev.small.tsv",
        skip_unanswerable=True,
    )
    assert len(queries) == len(qrels) == 42


def test_trec_run(msmarco_path: Path) -> None:
    run = load_trec_run(msmarco_path / "runs" / "run.dl19.bm25.top100.trec")
    assert len(run) == 43 and all(len(docs) == 100 for docs in run.values())
    assert run["264014"]["5611210"] == pytest.approx(15.780599594116211)


# ---------------------------------------------------------------- formats


def test_qrels_formats(tmp_path: Path) -> None:
    trec_space = tmp_path / "space.txt"
    trec_space.write_text("q1 0 d1 2\nq1 0 d2 0\nq2 Q0 d3 1\n")
    trec_tab = tmp_path / "tab.tsv"
    trec_tab.write_text("q1\t0\td1\t2\r\nq1\t0\td2\t0\r\nq2\t0\td3\t1\r\n")
    beir_no_header = tmp_path / "beir.tsv"
    beir_no_header.write_text("q1\td1\t2\nq1\td2\t0\nq2\td3\t1\n")
    expected = {"q1": {"d1": 2, "d2": 0}, "q2": {"d3": 1}}
    for path in (trec_space, trec_tab, beir_no_header):
        assert load_qrels(path) == expected


def test_graded_pairs(tiny_beir: Path) -> None:
    corpus, queries, qrels = load_beir(tiny_beir, split="test")
    assert set(queries) == {"q1", "q2"}  # the unjudged query is left out
    assert qrels == {"q1": {"d1": 2, "d2": 0}, "q2": {"d3": 1}}
    assert doc_text(corpus["d2"]) == "Text two."  # empty title: no leading space
    assert pairs_from_qrels(corpus, queries, qrels).to_dict() == {
        "anchor": ["first query", "second query"],
        "positive": ["Title one Text one.", "T3 Text three."],
    }
    assert pairs_from_qrels(corpus, queries, qrels, min_score=2)["positive"] == ["Title one Text one."]
    with pytest.raises(ValueError, match="min_score must be >= 1"):
        pairs_from_qrels(corpus, queries, qrels, min_score=0)


# ---------------------------------------------------------------- bad input


def test_missing_files(tiny_beir: Path, tmp_path: Path) -> None:
    (tiny_beir / "corpus.jsonl").unlink()
    with pytest.raises(FileNotFoundError, match=r"Corpus file not found: .*corpus\.jsonl"):
        load_beir(tiny_beir)
    with pytest.raises(FileNotFoundError, match=r"Collection file not found: .*nope\.tsv"):
        load_msmarco(tmp_path / "nope.tsv", tmp_path / "q.tsv", tmp_path / "qrels.tsv")
    with pytest.raises(FileNotFoundError, match="BEIR folder not found: './no/such/folder'"):
        load_beir("./no/such/folder")
    with pytest.raises(FileNotFoundError, match="BEIR folder not found: 'scifact'"):
        load_beir(Path("scifact"))  # a Path is never looked up on the network


def test_unknown_split(tiny_beir: Path) -> None:
    with pytest.raises(ValueError, match=r"Unknown split 'dev'.*available splits: \['test', 'train'\]"):
        load_beir(tiny_beir, split="dev")


def test_qrels_with_unknown_ids(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    corpus = {"d1": ("", "one"), "d2": ("", "two")}
    unknown_query = _write_beir(tmp_path / "a", corpus, {"q1": "x"}, {"test": [("q1", "d1", 1), ("q9", "d2", 1)]})
    with pytest.raises(ValueError, match=r"qrels point at 1 query ids that the queries file does not hold, e.g. \['q9'\]"):
        load_beir(unknown_query)
    no_known_doc = _write_beir(tmp_path / "b", corpus, {"q1": "x"}, {"test": [("q1", "d7", 1), ("q1", "d8", 0)]})
    with pytest.raises(ValueError, match="point at 2 document ids, none of which is in the corpus"):
        load_beir(no_known_doc)
    some_missing = _write_beir(tmp_path / "c", corpus, {"q1": "x"}, {"test": [("q1", "d1", 1), ("q1", "d7", 1)]})
    with caplog.at_level(logging.WARNING, logger="st_lsh.data"):
        _, _, qrels = load_beir(some_missing)
    assert "1 of 2 judged document ids are not in the corpus (1 of them judged relevant)" in caplog.text
    assert qrels == {"q1": {"d1": 1, "d7": 1}}  # kept: it counts against recall


def test_empty_queries(tmp_path: Path) -> None:
    corpus = {"d1": ("", "one")}
    blank = _write_beir(tmp_path / "a", corpus, {"q1": "  ", "q2": "ok"}, {"test": [("q1", "d1", 1), ("q2", "d1", 1)]})
    with pytest.raises(ValueError, match=r"1 queries have empty text, e.g. ids \['q1'\]"):
        load_beir(blank)
    empty_file = tmp_path / "queries.tsv"
    empty_file.write_text("")
    with pytest.raises(ValueError, match="Queries file .* is empty"):
        load_tsv(empty_file, "Queries")


def test_malformed_qrels(tmp_path: Path) -> None:
    path = tmp_path / "qrels.tsv"
    path.write_text("q1\t0\td1\thigh\n")
    with pytest.raises(ValueError, match=r"qrels.tsv:1: relevance grade 'high' is not an integer"):
        load_qrels(path)
    path.write_text("q1 d1\n")
    with pytest.raises(ValueError, match=r"qrels.tsv:1: expected .* got 2 fields"):
        load_qrels(path)


def test_names_without_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args, **kwargs):
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr(data, "_beir_from_network", offline)
    monkeypatch.setattr(data, "_beir_from_hub", offline)
    with pytest.raises(FileNotFoundError, match=r"'scifact' is not a local folder, and loading it as a BEIR dataset "
                                                r"name failed .*pass the path of a local BEIR folder"):
        load_beir("scifact")
    with pytest.raises(FileNotFoundError, match=r"'BeIR/scifact' .* as a Hugging Face Hub dataset failed .*local BEIR"):
        load_beir("BeIR/scifact")
