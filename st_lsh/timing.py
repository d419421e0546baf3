"""Stage timings: one way to time the pipeline's stages (encode, hash, search, select, format) everywhere.

Example::

    >>> from st_lsh.timing import Timings
    >>> timings = Timings()
    >>> with timings.stage("hash"):
    ...     pass
    >>> with timings.stage("hash"):      # a stage entered twice adds up
    ...     pass
    >>> list(timings)
    ['hash']
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


class Timings(dict[str, float]):
    """Seconds per stage name, in first-entered order; re-entering a stage adds to it."""

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self[name] = self.get(name, 0.0) + time.perf_counter() - start

    def line(self) -> str:
        return ", ".join(f"{name} {seconds:.2f}" for name, seconds in self.items())
