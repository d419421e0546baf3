"""
Loaders for BEIR and MS MARCO passage data, in the shapes sentence-transformers expects.

Every loader returns the same three dictionaries:

- ``corpus``: ``{doc_id: {"title": str, "text": str}}``
- ``queries``: ``{query_id: str}``, restricted to the queries that have judgments
- ``qrels``: ``{query_id: {doc_id: int}}``, graded; ``0`` means "judged, not relevant"

:func:`pairs_from_qrels` turns them into the ``("anchor", "positive")`` :class:`datasets.Dataset`
that :class:`~sentence_transformers.SentenceTransformerTrainer` and the hard-negative miner take.

Judged documents that are absent from the corpus are kept in ``qrels`` (they still count in
recall denominators) and are counted and logged. A query none of whose relevant documents has
text is an error, because no model can score on it.

Example:
    ::

        from st_lsh.data import load_beir, load_msmarco, pairs_from_qrels

        corpus, queries, qrels = load_beir("../shared/data/scifact", split="train")
        train_dataset = pairs_from_qrels(corpus, queries, qrels)
        # Dataset({features: ['anchor', 'positive'], num_rows: 919})

        corpus, queries, qrels = load_msmarco(
            collection="../shared/data/msmarco/collection.tsv",
            queries="../shared/data/msmarco/queries.dl19.tsv",
            qrels="../shared/data/msmarco/qrels.dl19.tsv",
        )
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import urllib.request
import zipfile
from collections.abc import Mapping
from pathlib import Path

from datasets import Dataset

logger = logging.getLogger(__name__)

Corpus = dict[str, dict[str, str]]
Queries = dict[str, str]
Qrels = dict[str, dict[str, int]]
Run = dict[str, dict[str, float]]

BEIR_URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/{name}.zip"
_QRELS_HEADER = ("query-id", "corpus-id", "score")

__all__ = [
    "doc_text",
    "load_beir",
    "load_corpus_jsonl",
    "load_msmarco",
    "load_msmarco_triples",
    "load_qrels",
    "load_queries_jsonl",
    "load_tsv",
    "load_trec_run",
    "pairs_from_qrels",
    "sample_pairs",
]


def doc_text(doc: Mapping[str, str]) -> str:
    """The text a model encodes for a document: ``title + " " + text``, stripped (as BEIR and MTEB do)."""
    return (doc.get("title", "") + " " + doc.get("text", "")).strip()


def _existing_file(path: str | os.PathLike, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file not found: {str(path)!r}")
    return path


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    with path.open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{line_no}: not valid JSON ({exc.msg})") from exc
    return rows


def load_corpus_jsonl(path: str | os.PathLike) -> Corpus:
    """Read a BEIR ``corpus.jsonl`` (``{"_id", "title", "text"}`` per line)."""
    path = _existing_file(path, "Corpus")
    corpus: Corpus = {}
    for row in _read_jsonl(path):
        corpus[str(row["_id"])] = {"title": row.get("title") or "", "text": row.get("text") or ""}
    if not corpus:
        raise ValueError(f"Corpus file {str(path)!r} holds no documents")
    return corpus


def load_queries_jsonl(path: str | os.PathLike) -> Queries:
    """Read a BEIR ``queries.jsonl`` (``{"_id", "text"}`` per line)."""
    path = _existing_file(path, "Queries")
    queries = {str(row["_id"]): row.get("text") or "" for row in _read_jsonl(path)}
    if not queries:
        raise ValueError(f"Queries file {str(path)!r} holds no queries")
    return queries


def load_tsv(path: str | os.PathLike, what: str = "TSV") -> dict[str, str]:
    """Read an ``id<TAB>text`` file such as MS MARCO's ``collection.tsv`` or ``queries.*.tsv``.

    Texts are kept byte for byte (MS MARCO's mojibake included); only the line ending is removed.
    """
    path = _existing_file(path, what)
    rows: dict[str, str] = {}
    with path.open(encoding="utf-8", newline="") as f:
        for line_no, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line:
                continue
            id_, sep, text = line.partition("\t")
            if not sep:
                raise ValueError(f"{path}:{line_no}: expected 'id<TAB>text', got {line[:80]!r}")
            rows[id_] = text
    if not rows:
        raise ValueError(f"{what} file {str(path)!r} is empty")
    return rows


def load_qrels(path: str | os.PathLike) -> Qrels:
    """Read relevance judgments in BEIR or TREC form; the format is detected per file.

    - BEIR: ``query-id<TAB>corpus-id<TAB>score`` with a header line (CRLF or LF line endings).
    - TREC: ``qid 0 docid grade``, tab- or space-separated.

    Grades are kept as ints; ``0`` means judged and not relevant.
    """
    path = _existing_file(path, "Qrels")
    qrels: Qrels = {}
    with path.open(encoding="utf-8", newline="") as f:
        for line_no, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            if line_no == 1 and tuple(fields) == _QRELS_HEADER:
                continue
            if len(fields) == 3:
                qid, docid, grade = fields
            elif len(fields) == 4:
                qid, _, docid, grade = fields
            else:
                raise ValueError(
                    f"{path}:{line_no}: expected 'query-id corpus-id score' (BEIR) or 'qid 0 docid grade' (TREC), "
                    f"got {len(fields)} fields"
                )
            try:
                qrels.setdefault(qid, {})[docid] = int(grade)
            except ValueError:
                raise ValueError(f"{path}:{line_no}: relevance grade {grade!r} is not an integer") from None
    if not qrels:
        raise ValueError(f"Qrels file {str(path)!r} holds no judgments")
    return qrels


def load_trec_run(path: str | os.PathLike) -> Run:
    """Read a TREC run file (``qid Q0 docid rank score tag``) into ``{qid: {docid: score}}``."""
    path = _existing_file(path, "Run")
    run: Run = {}
    with path.open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 6:
                raise ValueError(f"{path}:{line_no}: expected 'qid Q0 docid rank score tag', got {len(fields)} fields")
            run.setdefault(fields[0], {})[fields[2]] = float(fields[4])
    return run


def _check(corpus: Corpus, queries: Queries, qrels: Qrels, source: str, skip_unanswerable: bool) -> Queries:
    """Validate the three dicts against each other; return the judged queries. ``qrels`` is edited in place."""
    empty = [qid for qid, text in queries.items() if qid in qrels and not text.strip()]
    if empty:
        raise ValueError(f"{source}: {len(empty)} queries have empty text, e.g. ids {empty[:5]}")
    unknown_queries = [qid for qid in qrels if qid not in queries]
    if unknown_queries:
        raise ValueError(
            f"{source}: the qrels point at {len(unknown_queries)} query ids that the queries file does not hold, "
            f"e.g. {unknown_queries[:5]}"
        )
    judged = {qid: queries[qid] for qid in queries if qid in qrels}
    if len(judged) < len(queries):
        logger.info("%s: %d of %d queries have no judgments and are left out", source, len(queries) - len(judged), len(queries))

    judged_docs = {docid for rels in qrels.values() for docid in rels}
    missing_docs = judged_docs - corpus.keys()
    if missing_docs == judged_docs:
        raise ValueError(
            f"{source}: the qrels point at {len(judged_docs)} document ids, none of which is in the corpus "
            f"(e.g. {sorted(missing_docs)[:5]}); is it the right corpus?"
        )
    if missing_docs:
        missing_rel = {d for rels in qrels.values() for d, g in rels.items() if g > 0 and d in missing_docs}
        logger.warning(
            "%s: %d of %d judged document ids are not in the corpus (%d of them judged relevant); "
            "they stay in the qrels and count as not retrieved",
            source, len(missing_docs), len(judged_docs), len(missing_rel),
        )
    unanswerable = [
        qid for qid, rels in qrels.items() if not any(g > 0 and d in corpus for d, g in rels.items())
    ]
    if unanswerable:
        message = (
            f"{source}: {len(unanswerable)} of {len(qrels)} queries have no relevant document with text in the "
            f"corpus (e.g. {unanswerable[:5]}), so no model can score on them"
        )
        if not skip_unanswerable:
            raise ValueError(
                message + ". The corpus lacks the text of the judged documents: load the full collection, "
                "or pass skip_unanswerable=True to leave these queries out."
            )
        logger.warning("%s; they are left out (skip_unanswerable=True)", message)
        for qid in unanswerable:
            del qrels[qid]
            judged.pop(qid, None)
    return judged


def _beir_from_network(name: str) -> Path:
    """Download a BEIR dataset by name into the st-lsh cache (``$ST_LSH_CACHE``) and return its folder."""
    cache = Path(os.environ.get("ST_LSH_CACHE", Path.home() / ".cache" / "st_lsh")) / "beir"
    if (cache / name / "corpus.jsonl").is_file():
        return cache / name
    cache.mkdir(parents=True, exist_ok=True)
    archive = cache / f"{name}.zip"
    logger.info("Downloading BEIR %s to %s", name, cache)
    with urllib.request.urlopen(BEIR_URL.format(name=name), timeout=30) as response, archive.open("wb") as f:
        shutil.copyfileobj(response, f)
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(cache)
    archive.unlink()
    return cache / name


def _beir_from_hub(repo_id: str, split: str) -> tuple[Corpus, Queries, Qrels]:
    """Load a BEIR-layout dataset from the Hugging Face Hub (``BeIR/<name>`` + ``BeIR/<name>-qrels``)."""
    from datasets import load_dataset

    corpus_ds = load_dataset(repo_id, "corpus", split="corpus")
    queries_ds = load_dataset(repo_id, "queries", split="queries")
    qrels_ds = load_dataset(f"{repo_id}-qrels", split=split)
    corpus = {str(r["_id"]): {"title": r.get("title") or "", "text": r.get("text") or ""} for r in corpus_ds}
    queries = {str(r["_id"]): r["text"] or "" for r in queries_ds}
    qrels: Qrels = {}
    for r in qrels_ds:
        qrels.setdefault(str(r["query-id"]), {})[str(r["corpus-id"])] = int(r["score"])
    return corpus, queries, qrels


def load_beir(
    path_or_name: str | os.PathLike, split: str = "test", skip_unanswerable: bool = False
) -> tuple[Corpus, Queries, Qrels]:
    """Load a BEIR dataset: ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv``.

    Args:
        path_or_name: a local BEIR folder (preferred; works offline), a BEIR name such as ``"scifact"``
            (downloaded from the BEIR server into ``$ST_LSH_CACHE``), or a Hub id such as ``"BeIR/scifact"``.
        split: the qrels split, e.g. ``"test"``, ``"dev"`` or ``"train"``.
        skip_unanswerable: leave out (with a warning) queries whose relevant documents are all missing from
            the corpus, instead of raising.

    Returns:
        ``(corpus, queries, qrels)``, with ``queries`` restricted to the queries judged in ``split``.
    """
    source = str(path_or_name)
    folder = Path(path_or_name)
    if folder.is_dir():
        qrels_path = folder / "qrels" / f"{split}.tsv"
        if not qrels_path.is_file():
            available = sorted(p.stem for p in (folder / "qrels").glob("*.tsv"))
            if not available:
                raise FileNotFoundError(f"No qrels folder with <split>.tsv files in {source!r}")
            raise ValueError(f"Unknown split {split!r} for {source!r}; available splits: {available}")
        corpus = load_corpus_jsonl(folder / "corpus.jsonl")
        queries = load_queries_jsonl(folder / "queries.jsonl")
        qrels = load_qrels(qrels_path)
    else:
        is_hub_id = source.count("/") == 1 and not source.startswith((".", "/", "~"))
        if isinstance(path_or_name, os.PathLike) or (not is_hub_id and ("/" in source or os.sep in source)):
            raise FileNotFoundError(f"BEIR folder not found: {source!r}")
        try:
            if is_hub_id:
                corpus, queries, qrels = _beir_from_hub(source, split)
            else:
                folder = _beir_from_network(source)
        except Exception as exc:
            kind = "a Hugging Face Hub dataset" if is_hub_id else "a BEIR dataset name"
            raise FileNotFoundError(
                f"{source!r} is not a local folder, and loading it as {kind} failed ({type(exc).__name__}: {exc}). "
                "Without network access, pass the path of a local BEIR folder that holds corpus.jsonl, "
                "queries.jsonl and qrels/<split>.tsv, e.g. load_beir('../shared/data/scifact', split='test')."
            ) from exc
        if not is_hub_id:
            return load_beir(folder, split, skip_unanswerable)
    judged = _check(corpus, queries, qrels, f"{source} [{split}]", skip_unanswerable)
    logger.info("Loaded %s [%s]: %d docs, %d queries, %d judgments", source, split, len(corpus), len(judged),
                sum(map(len, qrels.values())))
    return corpus, judged, qrels


def load_msmarco(
    collection: str | os.PathLike,
    queries: str | os.PathLike,
    qrels: str | os.PathLike,
    skip_unanswerable: bool = False,
) -> tuple[Corpus, Queries, Qrels]:
    """Load MS MARCO passage files: ``collection.tsv`` (pid, passage), ``queries.*.tsv`` (qid, text) and qrels
    (TREC ``qid 0 pid grade`` or BEIR 3-column form).

    MS MARCO passages have no title, so ``corpus[pid] == {"title": "", "text": passage}``. Judged passages
    missing from ``collection`` (normal for pooled subsets such as TREC DL) are counted and logged. If some query
    has no relevant passage with text (e.g. dev-small with a subset collection), a ValueError says so.
    """
    corpus = {pid: {"title": "", "text": text} for pid, text in load_tsv(collection, "Collection").items()}
    query_texts = load_tsv(queries, "Queries")
    judgments = load_qrels(qrels)
    judged = _check(corpus, query_texts, judgments, f"MS MARCO {Path(qrels).name}", skip_unanswerable)
    logger.info("Loaded MS MARCO %s: %d passages, %d queries, %d judgments", Path(qrels).name, len(corpus),
                len(judged), sum(map(len, judgments.values())))
    return corpus, judged, judgments


def load_msmarco_triples(path: str | os.PathLike) -> Dataset:
    """Read MS MARCO training triples (``query<TAB>positive<TAB>negative``) into an
    ``("anchor", "positive", "negative")`` :class:`datasets.Dataset`. Texts are kept byte for byte."""
    path = _existing_file(path, "Triples")
    columns: dict[str, list[str]] = {"anchor": [], "positive": [], "negative": []}
    with path.open(encoding="utf-8", newline="") as f:
        for line_no, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line:
                continue
            fields = line.split("\t")
            if len(fields) != 3:
                raise ValueError(f"{path}:{line_no}: expected 'query<TAB>positive<TAB>negative', got {len(fields)} fields")
            for column, value in zip(columns, fields):
                columns[column].append(value)
    if not columns["anchor"]:
        raise ValueError(f"Triples file {str(path)!r} is empty")
    return Dataset.from_dict(columns)


def pairs_from_qrels(corpus: Corpus, queries: Queries, qrels: Qrels, min_score: int = 1) -> Dataset:
    """Turn judgments into an ``("anchor", "positive")`` :class:`datasets.Dataset`: one row per
    (query, document) pair graded ``>= min_score`` whose document is in the corpus.

    The positive text is ``title + " " + text``, stripped (see :func:`doc_text`). Relevant pairs whose
    document or query is missing are counted and logged.
    """
    if min_score < 1:
        raise ValueError(f"min_score must be >= 1 (grade 0 means not relevant), got {min_score}")
    anchors: list[str] = []
    positives: list[str] = []
    missing = 0
    for qid, rels in qrels.items():
        for docid, grade in rels.items():
            if grade < min_score:
                continue
            if qid not in queries or docid not in corpus:
                missing += 1
                continue
            anchors.append(queries[qid])
            positives.append(doc_text(corpus[docid]))
    if missing:
        logger.warning("%d relevant (query, document) pairs left out: query or document text is missing", missing)
    if not anchors:
        raise ValueError(f"No (query, document) pair with score >= {min_score} has both texts")
    return Dataset.from_dict({"anchor": anchors, "positive": positives})


def sample_pairs(
    pairs: Dataset,
    max_pairs: int,
    seed: int = 42,
    max_positives_per_query: int | None = None,
    anchor_column: str | None = None,
) -> Dataset:
    """A seeded sample of at most ``max_pairs`` rows that spreads over the queries, instead of the file's head.

    The unique anchors are shuffled under ``seed``; rows are then taken round-robin across them (each query's
    rows in file order), at most ``max_positives_per_query`` per query. So a sample of N pairs covers
    min(N, number of queries) queries, and the same seed gives the same sample. Rows keep their file order.

    Example::

        >>> from datasets import Dataset
        >>> pairs = Dataset.from_dict({"anchor": ["a", "a", "a", "b", "c"], "positive": ["1", "2", "3", "4", "5"]})
        >>> sorted(sample_pairs(pairs, 3, seed=0)["anchor"])
        ['a', 'b', 'c']
    """
    import random

    if max_pairs < 1:
        raise ValueError(f"max_pairs must be a positive integer, got {max_pairs}")
    if max_positives_per_query is not None and max_positives_per_query < 1:
        raise ValueError(f"max_positives_per_query must be a positive integer, got {max_positives_per_query}")
    column = anchor_column or pairs.column_names[0]
    rows_of: dict[str, list[int]] = {}
    for row, anchor in enumerate(pairs[column]):
        rows_of.setdefault(anchor, []).append(row)
    anchors = list(rows_of)
    random.Random(seed).shuffle(anchors)
    cap = max_positives_per_query or max(len(r) for r in rows_of.values())
    chosen: list[int] = []
    for round_ in range(cap):
        for anchor in anchors:
            if round_ < len(rows_of[anchor]):
                chosen.append(rows_of[anchor][round_])
                if len(chosen) == max_pairs:
                    break
        if len(chosen) == max_pairs:
            break
    sample = pairs.select(sorted(chosen))
    logger.info("Sampled %d pairs over %d queries (of %d pairs, %d queries; seed %d)", len(sample),
                len(set(sample[column])), len(pairs), len(anchors), seed)
    return sample
