"""Every script in examples/ runs as it stands, on a tiny slice of the real data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from datasets import Dataset

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name: str, *args: str, cwd: Path) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run([sys.executable, str(EXAMPLES / name), *args], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, f"{name} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return result.stdout


def test_every_example_is_tested() -> None:
    tested = {"mine_hard_negatives.py", "train_msmarco.py", "train_scifact.py"}
    assert {p.name for p in EXAMPLES.glob("*.py")} <= tested


@pytest.mark.slow
def test_mine_hard_negatives_example(tmp_path: Path) -> None:
    output = tmp_path / "negatives.jsonl"
    stdout = run_example("mine_hard_negatives.py", "--max-pairs", "20", "--max-docs", "60", "--output", str(output),
                         cwd=tmp_path)
    mined = Dataset.from_json(str(output))
    assert mined.column_names == ["anchor", "positive", "negative"]
    assert 0 < len(mined) <= 20
    assert "Saved to" in stdout


@pytest.mark.slow
def test_train_msmarco_example(msmarco_path: Path, tmp_path: Path) -> None:
    stdout = run_example(
        "train_msmarco.py", "--collection", str(msmarco_path / "collection.tsv"),
        "--train-queries", str(msmarco_path / "queries.dl20.tsv"),
        "--train-qrels", str(msmarco_path / "qrels.dl20.tsv"),
        "--eval-queries", str(msmarco_path / "queries.dl19.tsv"), "--eval-qrels", str(msmarco_path / "qrels.dl19.tsv"),
        "--max-pairs", "24", "--max-queries", "3", "--max-relevant", "8", "--max-docs", "40",
        "--max-seq-length", "32", "--batch-size", "8", "--output", str(tmp_path / "model"), cwd=tmp_path,
    )
    assert "24 training pairs over 24 queries" in stdout  # sampled round-robin: every query before a second pair
    assert "dl19_ndcg@10:" in stdout and "->" in stdout
    assert (tmp_path / "model" / "modules.json").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("batches", ["random", "neighbours"])
def test_train_scifact_example(batches: str, scifact_path: Path, tmp_path: Path) -> None:
    run_example("train_scifact.py", "--data", str(scifact_path), "--max-pairs", "32", "--max-corpus", "100",
                "--max-test-queries", "10", "--max-seq-length", "32", "--epochs", "1", "--batches", batches,
                "--json", str(tmp_path / "result.json"), "--output-dir", str(tmp_path / "model"), cwd=tmp_path)
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["batches"] == batches and result["rows"] == 32 and result["steps"] == 1
    assert 0 <= result["ndcg@10"] <= 1
