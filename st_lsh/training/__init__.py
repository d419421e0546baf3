"""Training-time hard-negative refresh for ``SentenceTransformerTrainer``.

Example::

    >>> from st_lsh.training import HardNegativeRefresher, HardnessSchedule
    >>> refresher = HardNegativeRefresher(model, pairs, corpus=corpus, num_negatives=1, mode="incremental")
    >>> trainer = SentenceTransformerTrainer(model, args, train_dataset=refresher.dataset, loss=loss,
    ...                                      callbacks=[refresher])
"""

from __future__ import annotations

from .capture import EmbeddingCapture
from .refresher import HardNegativeRefresher, RefreshStats
from .schedule import HardnessSchedule

__all__ = ["EmbeddingCapture", "HardNegativeRefresher", "HardnessSchedule", "RefreshStats"]
