"""The refresh on 2 gloo CPU processes gives every rank the same negatives, and the ones one process mines.

The worker (tests/refresh_dist_worker.py) explains why the comparison can be exact: one thread per process,
encode batch size 1 and dropout off make every embedding independent of the sharding.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

WORKER = Path(__file__).resolve().parent / "refresh_dist_worker.py"


def test_two_gloo_processes_mine_what_one_process_mines(tmp_path: Path, scifact_path: Path) -> None:
    assert scifact_path.is_dir()
    done = subprocess.run([sys.executable, str(WORKER), str(tmp_path), "--world-size", "2"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    ranks = [torch.load(tmp_path / f"negatives_rank{r}.pt", weights_only=True) for r in range(2)]
    single = torch.load(tmp_path / "negatives_single.pt", weights_only=True)
    for key in ("full", "full_codes", "incremental", "incremental_codes"):
        assert torch.equal(ranks[0][key], ranks[1][key]), f"ranks disagree on {key}"
        assert torch.equal(ranks[0][key], single[key]), f"2 processes and 1 process disagree on {key}"
    assert not torch.equal(single["full"], single["incremental"]) or not torch.equal(
        single["full_codes"], single["incremental_codes"]
    )
