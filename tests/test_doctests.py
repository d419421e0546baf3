"""Every docstring example in the st_lsh package runs (small inputs, no network), so none can rot."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import st_lsh

MODULES = sorted(
    info.name for info in pkgutil.walk_packages(st_lsh.__path__, prefix="st_lsh.")
    if not info.name.endswith("__main__")
)


def _examples(name: str) -> list[doctest.DocTest]:
    module = importlib.import_module(name)
    return [t for t in doctest.DocTestFinder().find(module, name) if t.examples]


def test_every_module_has_a_docstring() -> None:
    missing = [name for name in MODULES if not (importlib.import_module(name).__doc__ or "").strip()]
    assert not missing, f"modules without a docstring: {missing}"


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in _examples(name):
        result = runner.run(test, out=lambda text: None)
        if result.failed:
            report = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
            lines: list[str] = []
            report.run(test, out=lines.append)
            pytest.fail("".join(lines)[-3000:])
