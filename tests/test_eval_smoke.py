"""Smoke runs of every study in eval/ on tiny slices: the code behind the published tables runs, end to end.

The studies themselves take minutes to hours and are not part of CI; these runs check that their code works and
that what they compute is sane (e.g. LSH agrees with exact mining, two processes give one process's output).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

EVAL = Path(__file__).resolve().parents[1] / "eval"
sys.path.insert(0, str(EVAL))


def run(*args: str, env: dict[str, str] | None = None, timeout: int = 900) -> str:
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, cwd=EVAL.parent)
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stdout


def test_search_cascade_and_neighbour_studies_on_small_inputs() -> None:
    from bench_cascade import run as cascade
    from bench_neighbours import run as neighbours

    from st_lsh.benchmark import random_unit_vectors, run_search_benchmark

    rows = run_search_benchmark(sizes=[5_000], n_queries=100, k=50, bits_list=[64, 256], repeats=1)
    methods = {r["method"].split(" (")[0] for r in rows}
    assert {"float32 matmul + top-k", "st-lsh hamming_topk", "st-lsh defaults"} <= methods
    assert all(r["speedup_vs_float32"] > 0 for r in rows)
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((20, 32)).astype(np.float32)
    corpus = centres[rng.integers(0, 20, 3000)] + 0.5 * rng.standard_normal((3000, 32)).astype(np.float32)
    corpus /= np.linalg.norm(corpus, axis=1, keepdims=True)
    queries = corpus[:50] + 0.05 * random_unit_vectors(50, 32)
    stages = cascade(corpus, queries, k=20, num_bits=256, prefixes=[64], wides=[400], pools=[100], seeds=[0])
    full = next(r for r in stages if r["prefix"] == "full scan")
    assert 0.5 < full["final"] <= 1.0 and all(0 <= r["prefix vs full"] <= 1 for r in stages)
    quality = neighbours(corpus, queries, k=20, bits_list=[256], seeds=[0])
    assert any(r["x8"] >= r["raw"] for r in quality)


@pytest.mark.slow
def test_scale_benchmark_smoke() -> None:
    env = {"ST_LSH_BENCH_SMOKE": "1"}
    out = run("eval/bench_scale.py", "real", "--stores", "disk", env=env)
    parts = json.loads(Path("/tmp/bench_scale.json").read_text())
    lsh = next(r for r in parts["real"]["rows"] if r["method"] == "st-lsh")
    assert lsh["agreement"] > 0.9 and lsh["positives_as_negatives"] == 0, out
    run("eval/bench_scale.py", "synthetic", env=env)
    run("eval/bench_scale.py", "distributed", env=env)
    parts = json.loads(Path("/tmp/bench_scale.json").read_text())
    assert parts["distributed"]["same_output"] is True
    assert {r["store"] for r in parts["synthetic"]["rows"]} == {"none", "disk"}


@pytest.mark.slow
def test_training_study_smoke() -> None:
    out = run("eval/study_training.py", "strong", "--smoke", "--seeds", "12", "--arms", "exact-once",
              "neighbours+lsh")
    summary = json.loads(out[out.index("["):])
    assert [r["arm"] for r in summary] == ["exact-once", "neighbours+lsh"]
    assert all(r["rows"] == 64 and r["steps"] == 2 for r in summary)
    out = run("eval/study_training.py", "static", "--dataset", "medquad", "--smoke", "--epochs", "2", "--seeds",
              "12", "--arms", "exact-epoch", "lsh-full", "neighbours")
    summary = json.loads(out[out.index("["):])
    assert {r["arm"] for r in summary} == {"exact-epoch", "lsh-full", "neighbours"}
    assert all("rel2_ndcg@10" in r for r in summary)
