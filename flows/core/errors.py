"""The engine's own exceptions: one base class, so callers can catch ours and only ours."""

from __future__ import annotations


class ScrmError(Exception):
    """Base of every error the engine raises on purpose."""


class ConfigError(ScrmError):
    """A settings file, environment variable or declaration is wrong; the message says where."""

    @classmethod
    def at(cls, source: str, where: str, what: str) -> ConfigError:
        """``<file>: <path inside it>: <what is wrong>``."""
        return cls(f"{source}: {where}: {what}")


class SinkError(ScrmError):
    """A sink gave up after its retries; the message says which sink and why."""


class SourceError(ScrmError):
    """A source cannot read its input (missing file, unknown topic, ...)."""
