"""Source helpers: pacing, run bounds, CSV mapping."""

from __future__ import annotations

import time

import orjson
import pytest

from flows.core.errors import SourceError
from flows.core.settings import CsvSettings
from flows.sources.control import Pacer, RunControl
from flows.sources.files import FileSource, csv_row_to_object
from flows.sources.synthetic import SyntheticSource


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_pacer_holds_the_rate():
    clock = FakeClock()
    p = Pacer(1000, clock)
    total = 0
    for _ in range(100):
        clock.t += 0.01
        total += p.allowance(10_000)
    assert 990 <= total <= 1000  # one second of simulated time
    assert Pacer(0, clock).allowance(123) == 123


def test_run_control_bounds():
    c = RunControl(max_records=10)
    assert c.take(4) == 4 and c.take(100) == 6 and c.take(1) == 0
    assert c.stopping()
    clock = FakeClock()
    d = RunControl(duration_s=5, clock=clock)
    d.start()
    assert d.take(3) == 3
    clock.t = 5.0
    assert d.take(3) == 0 and d.stopping()
    s = RunControl()
    s.stop()
    assert s.take(1) == 0


def test_run_control_remembers_when_records_were_first_read():
    """The run summary's rate counts from then: not the dataflow's start (a cluster's
    processes connecting) nor the wait for a first record."""
    clock = FakeClock()
    c = RunControl(clock=clock)
    c.start()
    clock.t = 1.0
    c.note(0)  # an empty Kafka batch reads nothing
    assert c.first_read is None
    clock.t = 2.0
    c.note(5)
    clock.t = 3.0
    c.take(7)
    assert c.first_read == 2.0 and c.taken == 12
    d = RunControl(clock=clock)
    d.take(1)  # a file or the synthetic source asks first
    assert d.first_read == 3.0


def test_csv_mapping_custom_columns():
    m = CsvSettings(
        columns={"eventId": "id", "profileId": "customer", "type": "what", "ts": "when"},
        props_prefix="p_",
    )
    row = {
        "id": "1",
        "customer": "c9",
        "what": "signup",
        "when": "1700000000",
        "p_plan": "gold",
        "other": "x",
    }
    assert csv_row_to_object(row, m) == {
        "eventId": "1",
        "profileId": "c9",
        "type": "signup",
        "ts": "1700000000",
        "props": {"plan": "gold"},
    }


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(SourceError, match="no such file"):
        FileSource(tmp_path / "nope.jsonl", CsvSettings(), 0, RunControl())


def test_synthetic_history_runs_simulated_days_then_goes_live():
    from flows.core.settings import SyntheticSettings

    settings = SyntheticSettings(
        profiles=50, history_days=2, events_per_day=1000, late_share=0, malformed_share=0, duplicate_share=0
    )
    control = RunControl(0, 0.0)
    part = SyntheticSource(settings, 0.0, control).build_part("s", "synthetic-0", None)
    times: list[int] = []
    while len(times) < 2100:
        times += [orjson.loads(r.value)["ts"] for r in part.next_batch()]
    now = time.time() * 1000
    first, last = times[0], times[-1]
    assert now - 2 * 86_400_000 - 60_000 < first < now - 2 * 86_400_000 + 60_000  # two days back
    # history advances ~86.4 s of event time per event; then event time is the wall clock
    assert times[100] - times[99] in (86_399, 86_400, 86_401)
    assert abs(last - now) < 60_000
    snap = part.snapshot()
    again = SyntheticSource(settings, 0.0, control).build_part("s", "synthetic-0", snap)
    assert abs(orjson.loads(again.next_batch()[0].value)["ts"] - now) < 120_000  # resumes live


def test_a_file_replays_at_full_speed_unless_a_rate_is_given(make_settings, tmp_path):
    from flows.app.engine import make_source

    path = tmp_path / "events.jsonl"
    path.write_text("")
    control = RunControl()
    rates = []
    for source in ({"kind": "file", "file": str(path)}, {"kind": "file", "file": str(path), "rate": 50}):
        built = make_source(make_settings({"source": source}), control)
        rates.append(built.build_part("s", str(path), None)._pacer.rate)
    synthetic = make_source(make_settings({"source": {"kind": "synthetic"}}), control)
    assert rates == [0.0, 50.0]
    assert synthetic._rate == 2000.0


def test_the_kafka_consumer_holds_a_fetch_no_longer_than_configured():
    from flows.core.settings import load_settings
    from flows.sources.kafka import KafkaEventsSource

    def fetch_wait(env: dict[str, str]) -> object:
        kafka = load_settings(env=env).kafka
        return KafkaEventsSource(kafka, RunControl())._config()["fetch.wait.max.ms"]

    assert fetch_wait({}) == 25  # not librdkafka's 500 ms
    assert fetch_wait({"SCRM_KAFKA__FETCH_WAIT_MS": "50"}) == 50
    # librdkafka's own key in kafka.extra wins, like every other extra
    assert fetch_wait({"SCRM_KAFKA__EXTRA": '{ "fetch.wait.max.ms" = "100" }'}) == "100"


@pytest.mark.parametrize(
    ("source", "overrides", "max_records", "only_when_stopped"),
    [
        ("kafka", {}, 0, True),  # live: it ends when stopped (or at a duration)
        ("kafka", {"kafka": {"stop_at_end": True}}, 0, False),  # at the topic's end
        ("kafka", {}, 200, False),  # counted per process: a process reading nothing never gets there
        ("synthetic", {}, 0, True),
        ("synthetic", {}, 200, False),
        ("file", {"source": {"file": "events.jsonl"}}, 0, False),
    ],
)
def test_which_inputs_end_only_when_the_run_stops(source, overrides, max_records, only_when_stopped):
    from flows.app.engine import ends_only_when_stopped
    from flows.core.settings import load_settings

    settings = load_settings(
        env={}, overrides={**overrides, "source": {"kind": source, **overrides.get("source", {})}}
    )
    assert ends_only_when_stopped(settings, RunControl(max_records=max_records)) is only_when_stopped
