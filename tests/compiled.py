"""A pytest plugin (``-p tests.compiled`` in pyproject.toml) for the compiled modules.

- A run refuses to start when a compiled module is older than its source: the tests would
  exercise the old code. ``make test`` rebuilds first.
- pytest cannot collect doctests from an extension module, so the compiled modules' files
  are left out of doctest collection; `tests/unit/core/test_compiled.py` runs their
  doctests from the source instead, compiled or not.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.core.compiled import sources, stale

ROOT = Path(__file__).resolve().parent.parent
_SOURCES = {ROOT / s for s in sources()}


def pytest_sessionstart(session: pytest.Session) -> None:
    old = stale()
    if old:
        pytest.exit(
            f"compiled modules older than their source: {', '.join(old)}; "
            "rebuild them (`make test` does, or `python setup.py build_ext --inplace`)",
            returncode=4,
        )


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    return True if collection_path in _SOURCES else None
