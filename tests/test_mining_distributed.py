"""mine_hard_negatives inside a process group (2 gloo CPU processes) gives the output of one process, for every
store mode; the worker (tests/mining_dist_worker.py) explains why the comparison can be exact."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).resolve().parent / "mining_dist_worker.py"


@pytest.mark.slow
@pytest.mark.distributed
def test_two_gloo_processes_mine_what_one_process_mines(tmp_path: Path, scifact_path: Path) -> None:
    assert scifact_path.is_dir()
    done = subprocess.run([sys.executable, str(WORKER), str(tmp_path), "--world-size", "2"],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    single = json.loads((tmp_path / "single.json").read_text())
    assert set(single) == {"stub_float32", "stub_float16", "stub_disk", "stub_None", "minilm"}
    for key, rows in single.items():
        assert rows, f"{key}: nothing mined"
        assert ranks[0][key] == ranks[1][key] == rows, f"{key}: 2 processes and 1 process disagree"


@pytest.mark.slow
@pytest.mark.distributed
def test_torchrun_mine_command_writes_what_one_process_writes(pair_file: Path, model_path: str,
                                                               tmp_path: Path) -> None:
    """``torchrun --nproc_per_node 2 -m st_lsh.cli mine``: each rank mines its shard, rank 0 alone writes; the
    file equals the one-process run's (encode batch size 1: no padding, so embeddings do not depend on shards)."""
    common = ["mine", "--data", str(pair_file), "--model", model_path, "--num-negatives", "2", "--num-bits", "128",
              "--batch-size", "1", "--output-scores", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # what torchrun sets
    single = subprocess.run([sys.executable, "-m", "st_lsh.cli", *common, "--output", str(tmp_path / "one.jsonl")],
                            capture_output=True, text=True, timeout=600, env=env)
    assert single.returncode == 0, single.stderr[-3000:]
    launched = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                               "-m", "st_lsh.cli", *common, "--output", str(tmp_path / "two.jsonl")],
                              capture_output=True, text=True, timeout=600, env=env)
    assert launched.returncode == 0, launched.stderr[-3000:]
    assert launched.stdout.count("| pairs | queries |") == 1  # rank 0 alone prints the summary
    one = (tmp_path / "one.jsonl").read_text().splitlines()
    two = (tmp_path / "two.jsonl").read_text().splitlines()
    assert len(one) == 40 and [json.loads(x) for x in one] == [json.loads(x) for x in two]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.jsonl", "two.jsonl"]
