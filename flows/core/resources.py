"""Where the data folders `sql/` and `config/` are, in a checkout and in an installed wheel.

In a checkout (or an editable install) they sit beside the packages; a wheel installs
them under ``<prefix>/share/scrm-stream/`` (see ``[tool.setuptools.data-files]``).
"""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parents[2]


def data_dir(name: str) -> Path:
    """Return the folder `name` (``"sql"`` or ``"config"``), or raise FileNotFoundError."""
    candidates = [
        _CHECKOUT / name,
        Path(sys.prefix) / "share" / "scrm-stream" / name,
        Path(sysconfig.get_path("data")) / "share" / "scrm-stream" / name,
    ]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    tried = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(f"scrm-stream data folder {name!r} not found (tried {tried})")


def sql_dir() -> Path:
    return data_dir("sql")


def config_dir() -> Path:
    return data_dir("config")
