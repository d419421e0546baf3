"""mine_hard_negatives inside a process group (2 gloo CPU processes) gives the output of one process, for every
store mode; the worker (tests/mining_dist_worker.py) explains why the comparison can be exact."""

from __future__ import annotations

import json
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
