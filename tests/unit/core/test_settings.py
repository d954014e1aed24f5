"""Settings: layers in order, clear errors with the path, secrets masked."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.core.errors import ConfigError
from flows.core.settings import env_layer, load_settings


def test_defaults_are_the_zero_set_up_embedded_backends():
    s = load_settings(env={})
    assert s.redis.url == "embedded"
    assert s.clickhouse.url == "chdb://.scrm/clickhouse"
    assert s.source.kind == "synthetic"
    assert s.kafka.events_topic == "scrm.events" and s.kafka.dlq_topic == "scrm.events.dlq"


def test_layers_file_then_env_then_flags(tmp_path: Path):
    cfg = tmp_path / "prod.toml"
    cfg.write_text(
        '[kafka]\nbootstrap = "file:9092"\nevents_topic = "from_file"\n[clickhouse]\nflush_rows = 7\n'
    )
    env = {
        "SCRM_KAFKA__BOOTSTRAP": "env:9092",
        "SCRM_KAFKA__EXTRA": '{"security.protocol" = "SSL"}',
    }
    s = load_settings(cfg, env=env, overrides={"clickhouse": {"flush_rows": 9}})
    assert s.kafka.bootstrap == "env:9092"  # env beats file
    assert s.kafka.events_topic == "from_file"  # file beats default
    assert s.kafka.extra == {"security.protocol": "SSL"}  # tables parse as TOML
    assert s.clickhouse.flush_rows == 9  # flags beat everything


def test_settings_are_frozen():
    s = load_settings(env={})
    with pytest.raises(Exception, match="frozen"):
        s.kafka.bootstrap = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("env", "where"),
    [
        ({"SCRM_CLICKHOUSE__FLUSH_ROWS": "lots"}, "clickhouse.flush_rows"),
        ({"SCRM_REDIS__URL": "mysql://x"}, "redis.url"),
        ({"SCRM_REDIS__URL": "redis+cluster://node:7000/3"}, "redis.url"),  # a Cluster has db 0 only
        ({"SCRM_CLICKHOUSE__URL": "ftp://x"}, "clickhouse.url"),
        ({"SCRM_KAFKA__NO_SUCH_KEY": "1"}, "kafka.no_such_key"),
        ({"SCRM_SOURCE__KIND": "carrier-pigeon"}, "source.kind"),
        ({"SCRM_IDENTITY__DEFAULT_REGION": "Mars"}, "identity.default_region"),
        ({"SCRM_JOURNEYS__DEFAULT_TIMEZONE": "Asia/Atlantis"}, "journeys.default_timezone"),
    ],
)
def test_bad_values_name_the_setting_and_origin(env, where):
    with pytest.raises(ConfigError) as info:
        load_settings(env=env)
    assert where in str(info.value)
    assert "SCRM_* environment" in str(info.value)


def test_a_redis_cluster_is_named_by_its_scheme():
    for url in ("redis+cluster://node:7000", "rediss+cluster://node:7000/0", "redis://node:6379/3"):
        assert load_settings(env={"SCRM_REDIS__URL": url}).redis.url == url


def test_bad_toml_file_names_the_file(tmp_path: Path):
    cfg = tmp_path / "broken.toml"
    cfg.write_text("[kafka\nbootstrap = 1")
    with pytest.raises(ConfigError, match=r"broken\.toml: not valid TOML"):
        load_settings(cfg, env={})


def test_missing_file_is_a_clear_error(tmp_path: Path):
    with pytest.raises(ConfigError, match="settings file not found"):
        load_settings(tmp_path / "nope.toml", env={})


def test_secrets_are_masked_when_printed():
    s = load_settings(env={"SCRM_PII__SECRET": "s3cr3t", "SCRM_CLICKHOUSE__PASSWORD": "pw123"})
    assert s.pii.secret.get_secret_value() == "s3cr3t"
    for text in (repr(s), str(s), str(s.masked())):
        assert "s3cr3t" not in text and "pw123" not in text


def test_env_layer_ignores_other_variables():
    assert env_layer({"PATH": "/bin", "SCRM_": "x", "SCRM_A__B__C": "1"}) == {"a": {"b": {"c": "1"}}}
