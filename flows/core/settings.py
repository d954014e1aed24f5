"""One frozen settings object for the whole engine, built once from file and environment.

Layers, later wins: ``config/default.toml`` < ``--config FILE`` < ``SCRM_*`` environment
variables (``SCRM_KAFKA__BOOTSTRAP=host:9092``, nested with ``__``) < command-line flags.
No component reads ``os.environ`` itself: everything it needs is passed in from here.
Secrets are ``SecretStr`` and print masked.

>>> s = load_settings(env={"SCRM_CLICKHOUSE__FLUSH_ROWS": "5000"})
>>> s.clickhouse.flush_rows, s.redis.url
(5000, 'embedded')
>>> "change-me" in repr(s.pii)
False
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from flows.core.errors import ConfigError
from flows.core.identifiers import LIMITS, default_region_error
from flows.core.resources import config_dir

ENV_PREFIX = "SCRM_"
NOT_SETTINGS = frozenset({"SCRM_PURE"})  # read by `flows.core.compiled`, not a setting
ENV_NESTED = "__"


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class EngineSettings(_Section):
    data_dir: Path = Path(".scrm")
    workers: int = Field(1, ge=1, le=64)
    log_level: str = "INFO"
    progress_interval_s: float = Field(2.0, gt=0)
    # Collect the young GC generation every N net container allocations while the flow
    # runs (Python's default 700 cost ~20 % of the feature path); 0 = Python's policy.
    gc_young_threshold: int = Field(50_000, ge=0)


class SyntheticSettings(_Section):
    profiles: int = Field(5000, ge=1)
    seed: int = 42
    late_share: float = Field(0.01, ge=0, le=1)
    max_lateness_s: float = Field(3600.0, ge=0)
    malformed_share: float = Field(0.005, ge=0, le=1)
    duplicate_share: float = Field(0.005, ge=0, le=1)
    # Start this many days in the past and run simulated history (event time advancing
    # 1/events_per_day of a day per event) until it reaches the wall clock; then live.
    history_days: float = Field(0.0, ge=0, le=365)
    events_per_day: float = Field(50000.0, gt=0)


class CsvSettings(_Section):
    """How a CSV file maps onto the event contract: contract field -> CSV column."""

    columns: dict[str, str] = Field(
        default_factory=lambda: {
            "eventId": "event_id",
            "profileId": "profile_id",
            "type": "type",
            "ts": "ts",
            "source": "source",
        }
    )
    # Columns starting with this prefix become props (prefix stripped); "" disables.
    props_prefix: str = "props."
    delimiter: str = ","


SYNTHETIC_RATE = 2000.0  # events/s of the synthetic source when `source.rate` is unset


class SourceSettings(_Section):
    kind: Literal["synthetic", "kafka", "file"] = "synthetic"
    file: Path | None = None
    # events/s the source is held to; 0 = as fast as possible; unset: the synthetic source
    # SYNTHETIC_RATE, a file replay at full speed (history should not crawl)
    rate: float | None = Field(None, ge=0)
    max_events: int = Field(0, ge=0)
    duration_s: float = Field(0.0, ge=0)
    synthetic: SyntheticSettings = SyntheticSettings()
    csv: CsvSettings = CsvSettings()


class KafkaSettings(_Section):
    bootstrap: str = "127.0.0.1:9092"
    events_topic: str = "scrm.events"
    dlq_topic: str = "scrm.events.dlq"
    actions_topic: str = "scrm.actions"
    # partitions given to topics the engine creates (events are keyed by profileId)
    partitions: int = Field(4, ge=1)
    # Stop at the end of the topic instead of waiting for more (bounded replays, tests).
    stop_at_end: bool = False
    consume_batch: int = Field(1000, ge=1)
    # librdkafka's fetch.wait.max.ms: how long the broker may hold a fetch before answering.
    # Brokers that hold it to that bound (tansu does) add about this much to every event
    # (librdkafka's 500 ms default: ~130 ms, p99 ~260, per hop here); shorter costs the
    # broker more empty fetches while idle (docs/design.md).
    fetch_wait_ms: int = Field(25, ge=0)
    delivery_timeout_s: float = Field(30.0, gt=0)
    # Passed to librdkafka as is (security.protocol, sasl.*, ...).
    extra: dict[str, str] = Field(default_factory=dict)


class RedisSettings(_Section):
    # "embedded" starts a Valkey server inside the engine; otherwise redis:// or rediss://,
    # or redis+cluster:// / rediss+cluster:// (any node of a Redis Cluster)
    url: str = "embedded"
    timeout_s: float = Field(2.0, gt=0)
    # Who writes the feature and score stores: a child process per store ("process", off the
    # worker's GIL: the worker only pickles each flush) or the sink's flush thread ("thread").
    writer: Literal["process", "thread"] = "process"

    @field_validator("url")
    @classmethod
    def _scheme(cls, v: str) -> str:
        schemes = ("redis://", "rediss://", "unix://", "redis+cluster://", "rediss+cluster://")
        if v != "embedded" and not v.startswith(schemes):
            raise ValueError(
                "must be 'embedded' or a redis://, rediss://, unix://, "
                "redis+cluster:// or rediss+cluster:// URL"
            )
        if v.startswith(schemes[3:]) and urlparse(v).path.strip("/") not in ("", "0"):
            raise ValueError("a Redis Cluster has database 0 only: drop the /N from the URL")
        return v


class ClickHouseSettings(_Section):
    # chdb://PATH runs ClickHouse in-process; http(s)://host:port talks to a server
    url: str = "chdb://.scrm/clickhouse"
    database: str = "scrm"
    username: str = "default"
    password: SecretStr = SecretStr("")
    flush_rows: int = Field(20000, ge=1)
    flush_interval_s: float = Field(0.25, gt=0)
    # Writers block (backpressure) once this many rows wait; memory stays bounded.
    max_buffer_rows: int = Field(200000, ge=1)
    timeout_s: float = Field(30.0, gt=0)

    @field_validator("url")
    @classmethod
    def _scheme(cls, v: str) -> str:
        if not v.startswith(("chdb://", "http://", "https://")):
            raise ValueError("must be a chdb://PATH, http:// or https:// URL")
        return v


class ValidationSettings(_Section):
    max_event_bytes: int = Field(65536, ge=64)
    # Earliest accepted event time and how far into the future (against the wall clock).
    min_ts_ms: int = 946684800000  # 2000-01-01T00:00:00Z
    max_future_s: float = Field(86400.0, ge=0)
    # Raw bytes kept for a dead letter (the rest is cut, and the cut is recorded).
    dead_letter_raw_bytes: int = Field(16384, ge=64)


class DedupeSettings(_Section):
    # An eventId is remembered this long in event time (behind the profile's newest event).
    ttl_s: float = Field(86400.0, gt=0)
    max_ids_per_profile: int = Field(10000, ge=1)
    # A profile silent this long (wall clock) has its dedupe state dropped.
    idle_evict_s: float = Field(3600.0, gt=0)


class FeatureSettings(_Section):
    enabled: bool = True
    # Feature declarations; empty = config/features.toml shipped with the engine.
    file: Path | None = None
    # Events more than this far behind their profile's newest event change no feature.
    allowed_lateness_s: float = Field(3600.0, ge=0)
    # A silent profile's windows are recomputed (as of stream time) this often, wall clock.
    idle_refresh_s: float = Field(300.0, gt=0)
    # At most one ClickHouse `features` row per profile per this much event time.
    snapshot_interval_s: float = Field(300.0, ge=0)
    # Online store hashes expire after this long without an update (profiles gone quiet).
    redis_ttl_s: int = Field(30 * 86400, ge=1)
    # Stream time never runs ahead of the wall clock by more than this.
    max_clock_skew_s: float = Field(60.0, ge=0)
    # A caught-up partition with nothing new for this long (wall clock) follows the newest
    # partition's time (flows/streamtime.py): longer than producers' writes take to land.
    partition_idle_s: float = Field(2.0, ge=0)


class ModelsSettings(_Section):
    enabled: bool = True
    # Model declarations; empty = config/models.toml shipped with the engine.
    file: Path | None = None
    # How often each process looks in Redis for versions published by other processes.
    sync_interval_s: float = Field(1.0, gt=0)
    # scrm:score:{profileId} expires this long after its last write.
    redis_ttl_s: int = Field(30 * 86400, ge=1)
    # Where each model learns: "process" (a child process of its own, off the worker's
    # core and GIL) or "worker" (in the worker's thread).
    learner: Literal["process", "worker"] = "process"


class JourneySettings(_Section):
    enabled: bool = True
    # Journey files (YAML/JSON) `scrm journeys load` reads; empty = config/journeys shipped.
    dir: Path | None = None
    # `scrm run` loads that folder into Redis at start (unchanged journeys keep their version).
    load_at_start: bool = True
    # How often running engines look for changed definitions in Redis.
    reload_interval_s: float = Field(1.0, gt=0)
    # Caps on every profile across all journeys: {channel (absent = all), count, per,
    # reserve (last slots kept for journeys with priority >= reserve_priority)}.
    caps: tuple[dict[str, Any], ...] = (
        {"count": 3, "per": "1d", "reserve": 1, "reserve_priority": 50},
        {"count": 10, "per": "7d"},
        {"channel": "sms", "count": 1, "per": "1d"},
    )
    dedupe_window_s: float = Field(86400.0, ge=0)  # same template to the same profile: once per window
    # The complaint breaker: pause a journey whose complaints / sends over `window` exceed
    # `max_complaint_rate` once it has at least `min_sends` sends in that window.
    breaker: dict[str, Any] = Field(
        default_factory=lambda: {"max_complaint_rate": 0.05, "window": "1d", "min_sends": 50}
    )
    decision_ttl_s: float = Field(30 * 86400.0, gt=0)  # decisions kept for replays this long
    # Quiet hours, waits and date triggers of a profile whose events never said its
    # timezone (props.timezone) are in this one (an IANA name).
    default_timezone: str = "Asia/Shanghai"

    @field_validator("default_timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"{v!r} is not an IANA timezone this machine knows (for example Asia/Shanghai)"
            ) from None
        return v


class PiiSettings(_Section):
    secret: SecretStr = SecretStr("change-me")
    # props fields treated as PII, like identifiers: hashed + masked before storage
    props_fields: tuple[str, ...] = ("phone", "email", "mobile", "name", "address", "idCard")


class IdentitySettings(_Section):
    # Phones without a country code are read as numbers of this region (ISO 3166 code).
    default_region: str = "CN"
    # Route each event to the person its identifiers belong to (the identity graph in Redis)
    # rather than to the profile id it arrived with.
    resolve: bool = False
    # The most identifiers of each name one person may hold; a link that would break a limit
    # leaves out the least trusted identifier instead of merging.
    limits: dict[str, int] = Field(default_factory=lambda: dict(LIMITS))
    # How far back a restart may resume and still route each replayed record as the first
    # time: answers are remembered over the last N offsets of each partition (records of a
    # topic, bytes of a file), each for memo_ttl_s (Redis holds ~70 B per record meanwhile).
    memo_records: int = Field(1 << 26, ge=1)
    memo_ttl_s: int = Field(600, ge=60)
    # At a merge the loser's profile state is handed to the winner through Redis: kept this
    # long (a restart's replay reads it again), waited for at most handoff_wait_s (then the
    # winner goes on without it and says so loudly).
    handoff_ttl_s: int = Field(86_400, ge=60)
    handoff_wait_s: float = Field(30.0, gt=0)

    @field_validator("default_region")
    @classmethod
    def _region(cls, v: str) -> str:
        why = default_region_error(v)
        if why:
            raise ValueError(why)
        return v

    @field_validator("limits")
    @classmethod
    def _limits(cls, v: dict[str, int]) -> dict[str, int]:
        bad = [n for n, most in v.items() if most < 1]
        if bad:
            raise ValueError(f"a limit must be at least 1 ({', '.join(bad)})")
        return v


class MetricsSettings(_Section):
    # Prometheus exposition port on 127.0.0.1 / bind; 0 turns the HTTP endpoint off.
    port: int = Field(9464, ge=0, le=65535)
    bind: str = "127.0.0.1"


class RetrySettings(_Section):
    attempts: int = Field(8, ge=1)
    base_delay_s: float = Field(0.2, gt=0)
    max_delay_s: float = Field(10.0, gt=0)
    # keep retrying at least this long after the first failure: outages are ridden out
    give_up_after_s: float = Field(120.0, ge=0)


class RecoverySettings(_Section):
    # Bytewax recovery directory; empty = recovery off (state starts fresh each run).
    dir: Path | None = None
    snapshot_interval_s: float = Field(10.0, gt=0)
    backup_interval_s: float = Field(0.0, ge=0)


class Settings(_Section):
    engine: EngineSettings = EngineSettings()
    source: SourceSettings = SourceSettings()
    kafka: KafkaSettings = KafkaSettings()
    redis: RedisSettings = RedisSettings()
    clickhouse: ClickHouseSettings = ClickHouseSettings()
    validation: ValidationSettings = ValidationSettings()
    dedupe: DedupeSettings = DedupeSettings()
    features: FeatureSettings = FeatureSettings()
    models: ModelsSettings = ModelsSettings()
    journeys: JourneySettings = JourneySettings()
    pii: PiiSettings = PiiSettings()
    identity: IdentitySettings = IdentitySettings()
    metrics: MetricsSettings = MetricsSettings()
    retry: RetrySettings = RetrySettings()
    recovery: RecoverySettings = RecoverySettings()

    def with_overrides(self, overrides: Mapping[str, Any]) -> Settings:
        """A new Settings with nested `overrides` applied (CLI flags); validated again."""
        return _validate(deep_merge(self.model_dump(), overrides), "command-line flags")

    def masked(self) -> dict[str, Any]:
        """The settings as plain data, secrets masked: for printing and logs."""
        return self.model_dump(mode="json")


def redact_url(url: str) -> str:
    """A URL with any password replaced, for logs and summaries.

    >>> redact_url("https://user:secret@ch.example:8443"), redact_url("chdb:///data")
    ('https://user:****@ch.example:8443', 'chdb:///data')
    """
    return re.sub(r"(//[^:/@]+:)[^@]+@", r"\1****@", url)


def deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """Merge nested mappings; values in `top` win, `None` in `top` means "not given".

    >>> deep_merge({"a": {"b": 1, "c": 2}}, {"a": {"c": 3}, "d": None})
    {'a': {'b': 1, 'c': 3}}
    """
    out = dict(base)
    for key, value in top.items():
        if value is None:
            continue
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def env_layer(env: Mapping[str, str]) -> dict[str, Any]:
    """Turn ``SCRM_A__B=v`` variables into ``{"a": {"b": "v"}}`` (values parsed later).

    Values that look like TOML/JSON lists or tables (``[..]``, ``{..}``) are parsed as TOML.

    >>> env_layer({"SCRM_KAFKA__BOOTSTRAP": "h:9092", "HOME": "/root", "SCRM_PURE": "1"})
    {'kafka': {'bootstrap': 'h:9092'}}
    """
    out: dict[str, Any] = {}
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX) or name in NOT_SETTINGS:
            continue
        path = name[len(ENV_PREFIX) :].lower().split(ENV_NESTED)
        if not all(path):
            continue
        value: Any = raw
        if raw[:1] in "[{":
            try:
                value = tomllib.loads(f"v = {raw}")["v"]
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"environment variable {name}: not a TOML value: {exc}") from exc
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"environment variable {name} conflicts with another SCRM_ variable")
        node[path[-1]] = value
    return out


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: settings file not found") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc


def _validate(data: Mapping[str, Any], origin: str) -> Settings:
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        lines = [f"  {'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()]
        raise ConfigError(f"invalid settings (from {origin}):\n" + "\n".join(lines)) from exc


def load_settings(
    config_file: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build the settings: defaults file, then `config_file`, then `env`, then `overrides`."""
    env = os.environ if env is None else env
    default_file = config_dir() / "default.toml"
    data: dict[str, Any] = _read_toml(default_file)
    origins = [str(default_file)]
    if config_file:
        data = deep_merge(data, _read_toml(Path(config_file)))
        origins.append(str(config_file))
    env_data = env_layer(env)
    if env_data:
        data = deep_merge(data, env_data)
        origins.append("SCRM_* environment")
    if overrides:
        data = deep_merge(data, overrides)
        origins.append("command-line flags")
    return _validate(data, " < ".join(origins))
