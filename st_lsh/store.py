"""Embedding stores: where the float rows live between encoding, hashing and exact rescoring.

The encoder writes each chunk of embeddings into a store as soon as it is computed; hashing reads the store
chunk by chunk (first the column sums for the centre, then the codes), and exact rescoring reads only the rows of
each query's candidate pool. Peak memory is the codes, one chunk, and what the store itself keeps in RAM:

- ``"float32"`` / ``"float16"``: a preallocated array in RAM (``4 * d`` or ``2 * d`` bytes per text);
- ``"disk"``: a float32 ``.npy`` file, memory-mapped (under ``cache_folder``, where it doubles as the embedding
  cache, or in a temporary folder removed when the store is closed);
- None (codes only): the floats must still be read twice (mean, then hashing), so they go to a temporary disk
  file that is removed as soon as the codes exist.

Example::

    >>> import numpy as np
    >>> from st_lsh.store import open_store
    >>> store = open_store("float16", n_rows=3, dim=4)
    >>> store.write(0, np.eye(3, 4, dtype=np.float32))
    >>> store.take(np.array([2, 0])).dtype, store.take(np.array([2, 0]))[0, 2]
    (dtype('float32'), np.float32(1.0))
    >>> store.close()
"""

from __future__ import annotations

import mmap
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .rules import StoreKind

READ_CHUNK = 65_536


class EmbeddingStore:
    """A fixed number of float rows, written in order and read by row ids or in chunks.

    Attributes:
        kind: ``"float32"``, ``"float16"``, ``"disk"`` or ``"spill"`` (the temporary file of codes-only mining).
        array: The rows: an ``np.ndarray`` in RAM, or an ``np.memmap``.
        path: The file behind a disk store, else None.
    """

    def __init__(self, kind: str, array: np.ndarray, path: Path | None = None, temporary: Path | None = None) -> None:
        self.kind = kind
        self.array = array
        self.path = path
        self._temporary = temporary  # a folder (or file) to delete on close
        self.written = 0

    def __len__(self) -> int:
        return self.array.shape[0]

    @property
    def dim(self) -> int:
        return self.array.shape[1]

    @property
    def ram_bytes(self) -> int:
        """Bytes this store keeps in process memory (a memory-mapped file counts 0: the OS pages it)."""
        return 0 if isinstance(self.array, np.memmap) else self.array.nbytes

    def write(self, start: int, rows: np.ndarray) -> None:
        """Write ``rows`` at row ``start`` (converted to the store's dtype)."""
        self.array[start : start + len(rows)] = rows
        self.written = max(self.written, start + len(rows))
        self.release()

    def release(self) -> None:
        """Unmap the pages of a memory-mapped store from this process (``MADV_DONTNEED``): they stay in the OS
        page cache, written back if dirty, and are read again on the next access. Without it, every page a pass
        touches counts in the process's RSS until the end, and a disk store looks as large as a RAM one. A no-op
        for RAM stores and where ``madvise`` is missing."""
        mm = getattr(self.array, "_mmap", None) if isinstance(self.array, np.memmap) else None
        if mm is None or not hasattr(mm, "madvise") or not hasattr(mmap, "MADV_DONTNEED"):
            return
        try:
            mm.madvise(mmap.MADV_DONTNEED)
        except (OSError, ValueError):
            pass

    def take(self, ids: np.ndarray) -> np.ndarray:
        """float32 rows of ``ids`` (any order; a memory-mapped file is read in ascending row order)."""
        ids = np.asarray(ids, dtype=np.int64)
        if isinstance(self.array, np.memmap) and ids.size > 1:
            order = np.argsort(ids, kind="stable")
            out = np.empty((ids.size, self.dim), dtype=np.float32)
            out[order] = self.array[ids[order]]
            return out
        return self.array[ids].astype(np.float32, copy=False)

    def chunks(self, chunk_size: int = READ_CHUNK) -> Iterator[tuple[int, np.ndarray]]:
        """``(first row, float32 rows)`` in consecutive chunks."""
        for start in range(0, len(self), chunk_size):
            yield start, np.asarray(self.array[start : start + chunk_size], dtype=np.float32)
            self.release()

    def commit(self) -> None:
        """Make a ``.partial`` disk store permanent under its final name (the embedding cache file)."""
        if self.path is None or self.path.suffix != ".partial":
            return
        self.flush()
        final = self.path.with_suffix("")
        os.replace(self.path, final)
        self.path, self._temporary = final, None

    def flush(self) -> None:
        if isinstance(self.array, np.memmap):
            self.array.flush()

    def close(self) -> None:
        """Release the rows; a temporary file is deleted."""
        if isinstance(self.array, np.memmap):
            self.array.flush()
            mm = getattr(self.array, "_mmap", None)
            self.array = np.empty((0, self.dim), np.float32)
            if mm is not None:
                mm.close()
        if self._temporary is not None:
            shutil.rmtree(self._temporary, ignore_errors=True) if self._temporary.is_dir() else \
                self._temporary.unlink(missing_ok=True)
            self._temporary = None

    def __repr__(self) -> str:
        where = f", path={str(self.path)!r}" if self.path else ""
        return f"EmbeddingStore(kind={self.kind!r}, rows={len(self)}, dim={self.dim}{where})"


def open_store(
    kind: StoreKind | None,
    n_rows: int,
    dim: int,
    folder: str | os.PathLike | None = None,
    name: str | None = None,
) -> EmbeddingStore:
    """A new store of ``n_rows`` x ``dim``.

    ``"float32"`` / ``"float16"`` allocate RAM. ``"disk"`` with a ``folder`` and a ``name`` writes
    ``<folder>/<name>.npy.partial`` and :meth:`EmbeddingStore.commit` renames it to ``<name>.npy`` once every row
    is written (an interrupted run never leaves a truncated cache file); without them, and for ``kind=None``
    (codes only), the float32 file goes to a temporary folder that :meth:`EmbeddingStore.close` removes.
    """
    if kind in ("float32", "float16"):
        return EmbeddingStore(kind, np.empty((n_rows, dim), dtype=np.dtype(kind)))
    if kind not in ("disk", None):
        raise ValueError(f"store_embeddings must be 'float32', 'float16', 'disk' or None, got {kind!r}.")
    if kind == "disk" and folder is not None and name is not None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        path = Path(folder) / f"{name}.npy.partial"
        array = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n_rows, dim))
        return EmbeddingStore("disk", array, path=path, temporary=path)
    base = None
    if folder is not None:
        base = Path(folder)
        base.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix="st-lsh-store-", dir=base))
    path = temporary / "embeddings.npy"
    array = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n_rows, dim))
    return EmbeddingStore("disk" if kind == "disk" else "spill", array, path=path, temporary=temporary)


def store_from_file(kind: StoreKind | None, path: str | os.PathLike) -> EmbeddingStore:
    """A store over an existing ``.npy`` file of embeddings (the embedding cache): memory-mapped for ``"disk"``
    and codes-only mining (never deleted), read into RAM for ``"float32"`` / ``"float16"``."""
    array = np.load(path, mmap_mode="r")
    if kind in ("float32", "float16"):
        store = EmbeddingStore(kind, np.empty(array.shape, dtype=np.dtype(kind)))
        source = EmbeddingStore("disk", array, path=Path(path))
        for start, rows in source.chunks(READ_CHUNK):  # each chunk's pages released after the copy
            store.write(start, rows)
        del source, array
        return store
    store = EmbeddingStore("disk" if kind == "disk" else "spill", array, path=Path(path))
    store.written = array.shape[0]
    return store
