"""The ``st-lsh`` command: ``mine``, ``train``, ``evaluate`` and ``bench``, one module each.

- :mod:`st_lsh.cli.app`: the parser, :func:`main` and the error contract (one line on stderr, exit status 2);
- :mod:`st_lsh.cli.options`: shared flags and argument types;
- :mod:`st_lsh.cli.mine`, :mod:`~st_lsh.cli.train`, :mod:`~st_lsh.cli.evaluate`, :mod:`~st_lsh.cli.bench`: one
  subcommand each (its flags and what it runs);
- :mod:`st_lsh.cli.report`: the printed tables.

The work itself is library code: :mod:`st_lsh.models` (model loading), :mod:`st_lsh.tasks` (task folders, pairs,
the evaluator factory), :mod:`st_lsh.pairfiles` (pair files), :mod:`st_lsh.outputs` (checked, atomic outputs)
and :mod:`st_lsh.recipes` (training).

Example::

    >>> from st_lsh.cli import main
    >>> main(["evaluate", "--retrieval", "fuzzy"])   # stderr: st-lsh evaluate: error: argument --retrieval: ...
    2
"""

from __future__ import annotations

from .app import build_parser, main

__all__ = ["build_parser", "main"]
