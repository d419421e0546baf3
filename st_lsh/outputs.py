"""Where results go: check an output path before any work, and write it atomically.

- :func:`check_output` validates a target up front (its extension, file or folder, an existing target that
  ``overwrite`` does not allow to replace, a folder that cannot be written), so that a bad ``--output`` fails
  before a model is loaded.
- :func:`atomic_output` is the one way results are written: the writer fills a temporary file (or folder) beside
  the target, which is renamed onto the target only when the writer finished. An interrupted or failed write
  leaves the old target (or none) and removes the temporary.
- :func:`save_dataset` and :func:`write_json` write through it.

Example::

    >>> import json, tempfile
    >>> from pathlib import Path
    >>> from st_lsh.outputs import atomic_output, check_output, write_json
    >>> folder = Path(tempfile.mkdtemp())
    >>> target = check_output(folder / "metrics.json", suffixes=(".json",))
    >>> _ = write_json(target, {"ndcg@10": 0.5})
    >>> json.loads((folder / "metrics.json").read_text())
    {'ndcg@10': 0.5}
    >>> check_output(folder / "metrics.json", suffixes=(".json",))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    FileExistsError: --output ... already exists; pass --overwrite to replace it
    >>> try:
    ...     with atomic_output(check_output(folder / "metrics.json", suffixes=(".json",), overwrite=True)) as tmp:
    ...         _ = tmp.write_text("{half")
    ...         raise KeyboardInterrupt
    ... except KeyboardInterrupt:
    ...     pass
    >>> json.loads((folder / "metrics.json").read_text()), sorted(p.name for p in folder.iterdir())
    ({'ndcg@10': 0.5}, ['metrics.json'])
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

__all__ = ["DATASET_MARKERS", "DATASET_SUFFIXES", "MODEL_MARKERS", "OutputTarget", "atomic_output", "check_output",
           "check_writable", "publish", "save_dataset", "write_json"]

DATASET_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
TEMP_MARK = ".st-lsh-tmp"  # part of every temporary name, so that leftovers are recognisable

OutputKind = Literal["file", "folder", "files"]
MODEL_MARKERS = ("modules.json", "config.json")
DATASET_MARKERS = ("dataset_info.json", "dataset_dict.json", "state.json")


@dataclass(frozen=True)
class OutputTarget:
    """A checked output: a ``file``; a ``folder`` written as a whole (a ``save_to_disk`` dataset, a model); or
    ``files``: the named ``members`` inside a folder that may hold other files (an evaluation's CSV and runs)."""

    path: Path
    kind: OutputKind
    overwrite: bool = False
    members: tuple[str, ...] = ()

    @property
    def suffix(self) -> str:
        return self.path.suffix.lower()


def check_output(
    path: str | os.PathLike,
    suffixes: Sequence[str] = (),
    folder: bool = False,
    overwrite: bool = False,
    members: Sequence[str] = (),
    markers: Sequence[str] = (),
    flag: str = "--output",
) -> OutputTarget:
    """Validate an output path before any expensive work.

    A path whose extension is in ``suffixes`` is a file; a path without extension is a folder when ``folder``
    allows one (any path is, when ``suffixes`` is empty): written as a whole, or, with ``members``, only those
    files in it. An existing target needs ``overwrite``; an existing whole folder is replaced only if it holds
    one of ``markers`` (so ``--overwrite`` never deletes a folder that is not an earlier output).

    Raises a ValueError for a wrong extension, a file / folder mismatch or a folder that is not an earlier output,
    FileExistsError for an existing target without ``overwrite``, and PermissionError / NotADirectoryError when
    the folder it goes into cannot be written.
    """
    path = Path(path).expanduser()
    suffix = path.suffix.lower()
    if suffixes and suffix in suffixes:
        kind: OutputKind = "file"
    elif folder and (not suffixes or not suffix):
        kind = "files" if members else "folder"
    else:
        allowed = list(suffixes) + (["a folder name without extension"] if folder else [])
        choices = allowed[0] if len(allowed) == 1 else f"{', '.join(allowed[:-1])} or {allowed[-1]}"
        raise ValueError(f"{flag} {str(path)!r}: unsupported output type {suffix or '(none)'!r}; use {choices}")
    if path.is_dir() and kind == "file":
        raise ValueError(f"{flag} {str(path)!r} is a folder, but its name asks for a {suffix} file")
    if path.exists() and not path.is_dir() and kind != "file":
        raise ValueError(f"{flag} {str(path)!r} is an existing file; this output is a folder")
    existing = [path / m for m in members if (path / m).exists()] if kind == "files" else \
        ([path] if path.exists() else [])
    if existing and not overwrite:
        raise FileExistsError(f"{flag} {str(existing[0])!r} already exists; pass --overwrite to replace it")
    if existing and kind == "folder" and markers and any(path.iterdir()) \
            and not any((path / m).exists() for m in markers):
        raise ValueError(f"{flag} {str(path)!r} is a folder that holds no {' or '.join(markers)}: not an earlier "
                         "output, so it is not replaced even with --overwrite")
    check_writable(path if kind == "files" else path.parent, flag)
    return OutputTarget(path, kind, overwrite, tuple(members))


def check_writable(folder: Path, flag: str = "--output") -> None:
    """Raise unless files can be created in ``folder`` (or, if it does not exist yet, in its nearest existing
    ancestor, where it will be created). Probes with a real temporary file: permissions, read-only mounts."""
    existing = folder if str(folder) else Path(".")
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise NotADirectoryError(f"{flag}: cannot write in {str(folder)!r}: {str(existing)!r} is a file")
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=f".{TEMP_MARK}-probe-")
    except OSError as exc:
        raise PermissionError(f"{flag}: cannot write in {str(existing)!r} ({exc.strerror or exc})") from None
    os.close(fd)
    os.unlink(probe)


@contextmanager
def atomic_output(target: OutputTarget) -> Iterator[Path]:
    """Yield a temporary path for the writer to fill, beside ``target.path``: a file path (``file``), an empty
    folder (``folder``), or an empty folder inside the target folder whose ``members`` it writes (``files``).
    On success :func:`publish` it onto the target; on any exception (KeyboardInterrupt included) delete it."""
    final = target.path
    if target.kind == "file":
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=final.parent, prefix=f".{final.stem}{TEMP_MARK}-", suffix=final.suffix)
        os.close(fd)
        temporary = Path(name)
    else:
        home = final if target.kind == "files" else final.parent
        home.mkdir(parents=True, exist_ok=True)
        temporary = Path(tempfile.mkdtemp(dir=home, prefix=f".{final.name}{TEMP_MARK}-"))
    try:
        yield temporary
        if target.kind == "files":
            for member in sorted(p.name for p in temporary.iterdir()):
                publish(temporary / member, final / member, target.overwrite)
            temporary.rmdir()
        else:
            publish(temporary, final, target.overwrite)
    except BaseException:
        _remove(temporary)
        raise


def publish(temporary: Path, final: Path, overwrite: bool = True) -> None:
    """Rename a finished ``temporary`` file or folder onto ``final``. A file replaces the old one in one atomic
    rename; a folder moves the old one aside first (so an interruption leaves the old folder or none)."""
    if final.exists() and not overwrite:
        raise FileExistsError(f"{str(final)!r} appeared while writing; pass --overwrite to replace it")
    if temporary.is_dir():
        aside = None
        if final.exists():
            aside = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}{TEMP_MARK}-old-"))
            os.replace(final, aside / final.name)
        os.replace(temporary, final)
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)
    else:
        os.replace(temporary, final)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def write_json(target: OutputTarget, payload: Any) -> Path:
    """Write ``payload`` as indented JSON, atomically."""
    with atomic_output(target) as temporary:
        temporary.write_text(json.dumps(payload, indent=1, default=float), encoding="utf-8")
    return target.path


def save_dataset(dataset, target: OutputTarget) -> Path:
    """Write a ``datasets.Dataset`` by the target's extension, atomically: ``.jsonl`` / ``.json`` (JSON lines),
    ``.csv``, ``.parquet``, or a ``save_to_disk`` folder."""
    from .pairfiles import quiet_datasets

    with atomic_output(target) as temporary, quiet_datasets():
        if target.kind == "folder":
            dataset.save_to_disk(str(temporary))
        elif target.suffix in (".jsonl", ".json"):
            dataset.to_json(str(temporary), lines=True, force_ascii=False)
        elif target.suffix == ".csv":
            dataset.to_csv(str(temporary), index=False)
        elif target.suffix == ".parquet":
            dataset.to_parquet(str(temporary))
        else:
            raise ValueError(f"Cannot write a dataset as {target.suffix!r}; use {', '.join(DATASET_SUFFIXES)}")
    return target.path
