"""Training-time hard-negative refresh for ``SentenceTransformerTrainer``.

- :class:`HardNegativeRefresher`: a ``TrainerCallback`` that re-mines the negative columns of the training set;
- :class:`~st_lsh.training.table.NegativesTable`: the codes, stored rows and negatives it keeps;
- :class:`EmbeddingCapture`: the forward hook that collects training-time embeddings for incremental refreshes;
- :class:`HardnessSchedule`: an optional curriculum over the rules;
- :class:`HardNeighbourBatchSampler`: hard-neighbour batches from the refresher's codes
  (``refresher.batch_sampler(...)``).

See :mod:`st_lsh.training.refresher` for a runnable example.
"""

from __future__ import annotations

from .capture import EmbeddingCapture
from .refresher import HardNegativeRefresher, RefreshStats
from .sampler import HardNeighbourBatchSampler
from .schedule import HardnessSchedule
from .table import NegativesTable, ShardUpdate

__all__ = ["EmbeddingCapture", "HardNegativeRefresher", "HardNeighbourBatchSampler", "HardnessSchedule",
           "NegativesTable", "RefreshStats", "ShardUpdate"]
