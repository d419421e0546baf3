"""Outputs: an existing --output survives without --overwrite, and a write that dies midway leaves the old file
(or none), never a partial one, and no temporary file when it could clean up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from datasets import Dataset, load_from_disk

from st_lsh.cli import main
from st_lsh.outputs import TEMP_MARK, atomic_output, check_output, save_dataset


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if TEMP_MARK in p.name)


def test_existing_output_survives_without_overwrite(pair_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("st_lsh.models.load_model", lambda *a, **k: pytest.fail("model loaded"))
    for name in ("negatives.jsonl", "negatives_disk"):
        target = tmp_path / name
        if name.endswith(".jsonl"):
            target.write_text("precious\n")
        else:
            Dataset.from_dict({"a": ["precious"]}).save_to_disk(str(target))
        before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
        assert main(["mine", "--data", str(pair_file), "--output", str(target)]) == 2
        assert "already exists; pass --overwrite to replace it" in capsys.readouterr().err
        assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("name", ["out.jsonl", "out.parquet", "out_disk"])
def test_a_writer_that_dies_midway_leaves_the_old_output(name: str, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The dataset writer writes part of its output, then the run is interrupted: the old output is intact and
    the temporary is gone; without an old output, there is no output at all."""
    dataset = Dataset.from_dict({"anchor": [f"q{i}" for i in range(100)], "positive": [f"d{i}" for i in range(100)]})
    old = Dataset.from_dict({"anchor": ["old"], "positive": ["old"]})

    def half_then_interrupt(self, path, *args, **kwargs):
        target = Path(path)
        if target.is_dir() or not target.suffix:
            target.mkdir(exist_ok=True)
            (target / "data-00000-of-00001.arrow").write_bytes(b"half")
        else:
            target.write_bytes(b'{"anchor": "q0", "posi')
        raise KeyboardInterrupt

    target = tmp_path / name
    kinds = dict(suffixes=(".jsonl", ".parquet"), folder=True)
    for exists in (False, True):
        if exists:
            save_dataset(old, check_output(target, **kinds))
        with monkeypatch.context() as patch:
            for method in ("to_json", "to_parquet", "save_to_disk"):
                patch.setattr(Dataset, method, half_then_interrupt)
            with pytest.raises(KeyboardInterrupt):
                save_dataset(dataset, check_output(target, overwrite=True, **kinds))
        assert leftovers(tmp_path) == []
        if not exists:
            assert not target.exists()
        elif name.endswith(".jsonl"):
            assert Dataset.from_json(str(target)).to_dict() == old.to_dict()
        elif name.endswith(".parquet"):
            assert Dataset.from_parquet(str(target)).to_dict() == old.to_dict()
        else:
            assert load_from_disk(str(target)).to_dict() == old.to_dict()


def test_a_model_save_that_fails_keeps_the_old_model_folder(tmp_path: Path) -> None:
    target = tmp_path / "model"
    with atomic_output(check_output(target, folder=True)) as folder:
        (folder / "modules.json").write_text("old")
    with pytest.raises(OSError, match="disk full"), atomic_output(
            check_output(target, folder=True, overwrite=True, markers=("modules.json",))) as folder:
        (folder / "modules.json").write_text("new, half")
        raise OSError("disk full")
    assert (target / "modules.json").read_text() == "old" and leftovers(tmp_path) == []
    with atomic_output(check_output(target, folder=True, overwrite=True, markers=("modules.json",))) as folder:
        (folder / "modules.json").write_text("new")
    assert (target / "modules.json").read_text() == "new" and leftovers(tmp_path) == []


WRITER = textwrap.dedent("""
    import signal, sys
    from datasets import Dataset
    from st_lsh.cli.app import _interrupt
    from st_lsh.outputs import check_output, save_dataset

    signal.signal(signal.SIGTERM, _interrupt)  # what st-lsh's main() installs
    rows = 400_000
    big = Dataset.from_dict({"anchor": [f"query {i} " * 8 for i in range(rows)],
                             "positive": [f"document {i} " * 24 for i in range(rows)]})
    print("writing", flush=True)
    save_dataset(big, check_output(sys.argv[1], suffixes=(".jsonl",), overwrite=True))
    print("done", flush=True)
""")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_write_killed_midway_leaves_the_old_file(sig: signal.Signals, tmp_path: Path) -> None:
    """A real process killed while it writes a large output: the target is still the old file, complete. After
    SIGTERM the temporary file is removed too; SIGKILL leaves no chance to clean up, but only the temporary (a
    hidden name with the st-lsh temporary mark) is partial."""
    target = tmp_path / "negatives.jsonl"
    target.write_text('{"anchor": "old", "positive": "old"}\n')
    process = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        assert process.stdout.readline().strip() == "writing"
        deadline = time.monotonic() + 120
        while not any(p.stat().st_size > 0 for p in tmp_path.iterdir() if TEMP_MARK in p.name):
            assert process.poll() is None, "the writer finished before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.005)
        process.send_signal(sig)
        process.wait(timeout=60)
    finally:
        process.kill()
    assert process.returncode != 0
    assert target.read_text() == '{"anchor": "old", "positive": "old"}\n'
    if sig == signal.SIGTERM:
        assert leftovers(tmp_path) == []
    else:
        assert all(name.startswith(".negatives" + TEMP_MARK) for name in leftovers(tmp_path))
