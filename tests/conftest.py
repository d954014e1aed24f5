"""Shared test helpers: settings built the way the engine builds them, never from os.environ."""

from __future__ import annotations

from typing import Any

import pytest

from flows.core.settings import Settings, load_settings


@pytest.fixture
def make_settings():
    """Settings from config/default.toml plus nested overrides; the process env is ignored."""

    def _make(overrides: dict[str, Any] | None = None) -> Settings:
        base = {"metrics": {"port": 0}, "engine": {"progress_interval_s": 0.5}}
        from flows.core.settings import deep_merge

        return load_settings(env={}, overrides=deep_merge(base, overrides or {}))

    return _make
