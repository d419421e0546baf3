"""Data shipped inside the package.

- ``scifact/``: BEIR SciFact (5,183 abstracts, 809 train / 300 test claims) in BEIR layout, the default task of
  ``st-lsh train`` and ``st-lsh evaluate``. Licence CC BY-NC 2.0, non-commercial research use only; see
  ``scifact/LICENSE.md`` for provenance and citations.

Example::

    >>> from st_lsh.resources import scifact_path
    >>> from st_lsh.data import load_beir
    >>> corpus, queries, qrels = load_beir(scifact_path(), split="test")
    >>> len(corpus), len(queries)
    (5183, 300)
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["SCIFACT_LICENSE", "scifact_path"]

SCIFACT_LICENSE = (
    "BEIR SciFact, CC BY-NC 2.0 (non-commercial research use only): Wadden et al. 2020, 'Fact or Fiction: "
    "Verifying Scientific Claims' (EMNLP); Thakur et al. 2021, 'BEIR' (NeurIPS Datasets and Benchmarks)."
)


def scifact_path() -> Path:
    """Folder of the bundled BEIR SciFact copy (``corpus.jsonl``, ``queries.jsonl``, ``qrels/{train,test}.tsv``).

    The package is installed as plain files (a wheel or an editable install), so the folder is a real path that
    :func:`st_lsh.data.load_beir` and :class:`st_lsh.evaluation.BEIREvaluator` read directly.
    """
    path = Path(str(resources.files(__name__) / "scifact"))
    if not (path / "corpus.jsonl").is_file():
        raise FileNotFoundError(
            f"The bundled SciFact data is missing from {path}; reinstall st-lsh (pip install st-lsh) or pass --data."
        )
    return path
