"""Builds the per-event path with mypyc: its typed modules compiled to C extensions.

The modules are listed in `flows/core/compiled.py`. `pip install` (and so `make`) builds
them in place beside their sources; ``SCRM_PURE=1`` installs without compiling (the same
code runs interpreted, slower per event). Everything else is in pyproject.toml.
"""

import os
import runpy
from pathlib import Path

from setuptools import setup


def ext_modules() -> list:
    if os.environ.get("SCRM_PURE"):
        return []
    from mypyc.build import mypycify

    here = Path(__file__).resolve().parent
    sources = runpy.run_path(str(here / "flows" / "core" / "compiled.py"))["sources"]()
    # Third-party packages are not analysed (their types are Any to the compiler), so the
    # build needs none of them installed; the project's own mypy run checks them.
    flags = ["--config-file=", "--no-site-packages", "--ignore-missing-imports", "--python-version=3.11"]
    return mypycify([*flags, *sources], opt_level="3", group_name="flows.native")  # compiled.GROUP


setup(ext_modules=ext_modules())
