"""The per-event path runs compiled (mypyc) unless SCRM_PURE asks otherwise, and the
compiled modules' doctests pass from their source."""

from __future__ import annotations

import doctest
import importlib.util
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flows.core.compiled import MODULES, compiled, describe, sources, stale

ROOT = Path(__file__).resolve().parents[3]
WITH_DOCTESTS = [m for m, s in zip(MODULES, sources(), strict=True) if ">>>" in (ROOT / s).read_text()]


def test_every_module_is_compiled_unless_the_install_was_asked_not_to():
    if os.environ.get("SCRM_PURE"):
        assert compiled() == []
        assert "interpreted" in describe()
    else:
        assert compiled() == list(MODULES), describe()
        assert describe() == f"per-event path compiled (mypyc, {len(MODULES)} modules)"
    assert stale() == []


def test_scrm_pure_at_run_time_loads_every_listed_module_from_its_source():
    code = (
        "import flows.features.windows, scoring.observe, rules.runtime\n"
        "from flows.core import compiled\n"
        "print(compiled.compiled(), flows.features.windows.__file__.endswith('.py'),"
        " scoring.observe.__file__.endswith('.py'), rules.runtime.__file__.endswith('.py'))"
    )
    env = {**os.environ, "SCRM_PURE": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["[]", "True", "True", "True"]


def test_the_listed_sources_exist_and_are_what_setup_compiles():
    assert all((ROOT / s).is_file() for s in sources())
    assert "compiled.py" in (ROOT / "setup.py").read_text()


@pytest.mark.parametrize("name", WITH_DOCTESTS)
def test_doctests_of_a_compiled_module_pass_from_its_source(name: str):
    """The module's source is loaded interpreted under its own name for the run (so its
    doctests see themselves as that module), then the compiled one is put back."""
    spec = importlib.util.spec_from_file_location(name, ROOT / (name.replace(".", "/") + ".py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    before = sys.modules.get(name)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        out = io.StringIO()
        runner = doctest.DocTestRunner(verbose=False)
        for test in doctest.DocTestFinder().find(module, name):
            runner.run(test, out=out.write)
        result = runner.summarize(verbose=False)
    finally:
        if before is not None:
            sys.modules[name] = before
    assert result.attempted > 0
    assert result.failed == 0, out.getvalue()
