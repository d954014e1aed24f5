"""The event contract: raw bytes in, an accepted `Event` or a `DeadLetter` with a reason out.

Pure functions, no I/O, the clock passed in. Nothing in here raises on bad input: any
bytes are either accepted or rejected with a machine-readable reason
(``invalid_json``, ``not_object``, ``missing_field:ts``, ``bad_type:props``,
``bad_value:type``, ``ts_out_of_range``, ``too_large``, ``invalid_identifiers``: no
profileId and no identifier with a canonical form, see `flows.core.identifiers`), which is the property the
Hypothesis tests check.

>>> from flows.core.pii import PiiProtector
>>> v = Validator(Limits(), PiiProtector(b"k", ()))
>>> rec = RawRecord(b'{"eventId":"e1","profileId":"p1","type":"page_view","ts":1700000000}', "test")
>>> ev = v.parse(rec, now_ms=1700000001000)
>>> ev.event_id, ev.type, ev.ts_ms
('e1', 'page_view', 1700000000000)
>>> v.parse(RawRecord(b'{"eventId":"e1"', "test"), now_ms=0).reason
'invalid_json'
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson

from flows.core.identifiers import kind_of
from flows.core.pii import PiiProtector, profile_from_hashes

TYPE_RE = re.compile(r"[a-z0-9_.:-]{1,64}")
ID_MAX = 128
SOURCE_MAX = 64
# Numbers at or above this are epoch milliseconds, below it epoch seconds
# (1e11 s is the year 5138; 1e11 ms is 1973).
_MS_THRESHOLD = 100_000_000_000


class RawRecord(NamedTuple):
    """One input record as it arrived, with where it came from (for the dead letters)."""

    value: bytes | None
    origin: str  # "kafka:scrm.events", "file:/path/events.jsonl", "synthetic:42"
    partition: int = 0
    offset: int = -1
    key: bytes | None = None
    received_ms: int = 0


class Event(NamedTuple):
    """An accepted event; identifiers and PII props are already hashed and masked.

    Messages on the hot path are NamedTuples: immutable like frozen dataclasses, and
    several times cheaper to create.
    """

    event_id: str
    profile_id: str
    type: str
    ts_ms: int
    source: str
    props: dict[str, Any]
    identifiers: dict[str, str]  # name -> masked display form
    pii_hashes: dict[str, str]  # name (or "props.<field>") -> keyed hash
    received_ms: int
    origin: str
    partition: int
    offset: int
    late: bool = False  # set by the profile stage: too late to change features
    person_id: str = ""  # the person its identifiers belong to, when routing by person


ENGINE = "engine"  # source and origin of the events the engine emits itself


def engine_event(event_id: str, profile_id: str, type_: str, ts_ms: int, props: dict[str, Any],
                 received_ms: int) -> Event:  # fmt: skip
    """An event the engine emits about a profile (a tag, a segment, a score crossing).

    Its id is deterministic, so a replay emits the same event again; it arrived when the
    newest event behind it did (`received_ms`, or its own time for a timer).

    >>> engine_event("tag_added:vip:p1:5", "p1", "tag_added", 5, {"tag": "vip"}, 0).received_ms
    5
    """
    received = received_ms or ts_ms
    return Event(event_id, profile_id, type_, ts_ms, ENGINE, props, {}, {}, received, ENGINE, 0, -1)


class DeadLetter(NamedTuple):
    """A rejected record: the reason, a human detail, and the raw bytes (cut to a bound)."""

    reason: str
    detail: str
    raw: bytes
    raw_size: int
    origin: str
    partition: int
    offset: int
    received_ms: int
    key: bytes | None = None


@dataclass(frozen=True, slots=True)
class Limits:
    max_event_bytes: int = 65536
    min_ts_ms: int = 946684800000
    max_future_ms: int = 86_400_000
    dead_letter_raw_bytes: int = 16384


class _Reject(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


class Validator:
    """Parses and validates raw records against the contract; see the module docstring."""

    def __init__(self, limits: Limits, pii: PiiProtector) -> None:
        self.limits = limits
        self.pii = pii
        self._min_ts = limits.min_ts_ms
        self._max_future = limits.max_future_ms
        self._pii_props = frozenset(pii.props_fields)
        # Identifiers refused since the caller last drained this, by (kind, reason).
        self.invalid_identifiers: dict[tuple[str, str], int] = {}

    def _count_invalid(self, invalid: list[tuple[str, str]]) -> None:
        counts = self.invalid_identifiers
        for name, why in invalid:
            key = (kind_of(name), why)
            counts[key] = counts.get(key, 0) + 1

    def parse(self, rec: RawRecord, now_ms: int) -> Event | DeadLetter:
        try:
            return self._parse(rec, now_ms)
        except _Reject as rej:
            return self.dead_letter(rec, rej.reason, rej.detail)

    def dead_letter(self, rec: RawRecord, reason: str, detail: str) -> DeadLetter:
        raw = rec.value or b""
        return DeadLetter(
            reason=reason,
            detail=detail,
            raw=raw[: self.limits.dead_letter_raw_bytes],
            raw_size=len(raw),
            origin=rec.origin,
            partition=rec.partition,
            offset=rec.offset,
            received_ms=rec.received_ms,
            key=rec.key,
        )

    def _parse(self, rec: RawRecord, now_ms: int) -> Event:
        raw = rec.value
        if raw is None:
            raise _Reject("invalid_json", "empty record (no value)")
        if len(raw) > self.limits.max_event_bytes:
            raise _Reject("too_large", f"{len(raw)} bytes > max_event_bytes {self.limits.max_event_bytes}")
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise _Reject("invalid_json", str(exc)[:200]) from None
        return self.from_object(obj, rec, now_ms)

    def from_object(self, obj: Any, rec: RawRecord, now_ms: int) -> Event:
        """Validate an already decoded object (the CSV source builds objects, not JSON)."""
        if type(obj) is not dict:
            raise _Reject("not_object", f"top level is {type(obj).__name__}, not an object")
        if "type" not in obj and "eventId" not in obj and ("identifiers" in obj or "profileId" in obj):
            obj = profile_document(obj, rec.received_ms or now_ms)
        get: Callable[[str], Any] = obj.get  # JSON values: checked below, field by field
        event_id = get("eventId")
        if type(event_id) is not str or not event_id or len(event_id) > ID_MAX:
            _bad_str(event_id, "eventId", ID_MAX)
        etype = get("type")
        if type(etype) is not str or TYPE_RE.fullmatch(etype) is None:
            _bad_str(etype, "type", 64)
            raise _Reject("bad_value:type", f"type {str(etype)[:80]!r} must match [a-z0-9_.:-]{{1,64}}")
        ts = get("ts")
        ts_ms = ts if type(ts) is int and ts >= _MS_THRESHOLD else parse_ts(ts, "ts")
        if ts_ms < self._min_ts or ts_ms > now_ms + self._max_future:
            raise _Reject(
                "ts_out_of_range",
                f"ts {ts!r} is outside [{self._min_ts}, now + {self._max_future} ms]",
            )
        source = get("source")
        if type(source) is not str:
            if source is not None:
                raise _Reject("bad_type:source", f"source is {type(source).__name__}, not a string")
            source = ""
        elif len(source) > SOURCE_MAX:
            raise _Reject("bad_value:source", f"source longer than {SOURCE_MAX} characters")
        props = get("props")
        if type(props) is not dict:
            if props is not None:
                raise _Reject("bad_type:props", f"props is {type(props).__name__}, not an object")
            props = {}
        idents = get("identifiers")
        if idents is not None:
            if type(idents) is not dict:
                raise _Reject(
                    "bad_type:identifiers", f"identifiers is {type(idents).__name__}, not an object"
                )
            for name, value in idents.items():
                if type(value) not in (str, int):
                    raise _Reject("bad_type:identifiers", f"identifiers.{name} is {type(value).__name__}")
        profile_id = get("profileId")
        if type(profile_id) is not str or not profile_id or len(profile_id) > ID_MAX:
            if profile_id is not None and profile_id != "":
                _bad_str(profile_id, "profileId", ID_MAX)
            if not idents:
                raise _Reject("missing_field:profileId", "no profileId and no identifiers")
            profile_id = ""
        masked: dict[str, str]
        hashes: dict[str, str]
        if idents or (props and not self._pii_props.isdisjoint(props)):
            masked, hashes, props, invalid = self.pii.protect(idents or {}, props)
            if invalid:
                self._count_invalid(invalid)
            if not profile_id:
                profile_id = profile_from_hashes(idents or {}, hashes)
                if not profile_id:
                    raise _Reject(
                        "invalid_identifiers",
                        "no profileId and no valid identifier: "
                        + "; ".join(f"identifiers.{n}: {why}" for n, why in invalid),
                    )
        else:
            masked = hashes = _EMPTY
        return Event(
            event_id,
            profile_id,
            etype,
            ts_ms,
            source,
            props,
            masked,
            hashes,
            rec.received_ms,
            rec.origin,
            rec.partition,
            rec.offset,
        )


_EMPTY: dict[str, str] = {}  # shared, never mutated: events without identifiers
_ENVELOPE = frozenset({"profileId", "identifiers", "source", "props"})


def profile_document(doc: dict[str, Any], received_ms: int) -> dict[str, Any]:
    """A profile document (no ``type``, no ``eventId``: ``{profileId | identifiers, name,
    tags, segments, consent: {time, ver}, ...}``) as the ``profile_updated`` event it
    stands for: its fields become the props, its id a digest of its content (so the same
    document sent twice is one event), its time ``updatedAt``, ``createdAt``,
    ``consent.time`` or, without any, when it was received.

    >>> ev = profile_document({"name": "张三", "identifiers": {"phone": "1"}, "consent": {"time": 1}}, 5)
    >>> ev["type"], ev["ts"], sorted(ev["props"]), ev["eventId"].startswith("profile:")
    ('profile_updated', 1, ['consent', 'name'], True)
    """
    props: dict[str, Any] = {k: v for k, v in doc.items() if k not in _ENVELOPE}
    if type(doc.get("props")) is dict:
        props.update(doc["props"])
    consent = props.get("consent")
    when = props.get("updatedAt", props.get("createdAt"))
    if when is None and type(consent) is dict:
        when = consent.get("time")
    digest = hashlib.blake2b(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS), digest_size=12).hexdigest()
    out = {k: doc[k] for k in ("profileId", "identifiers", "source") if k in doc}
    out.update(eventId=f"profile:{digest}", type="profile_updated", ts=received_ms if when is None else when)
    out["props"] = props
    return out


def _bad_str(value: Any, name: str, max_len: int) -> None:
    """Raise the reason for a required string field that is not a valid string."""
    if value is None or value == "":
        raise _Reject(f"missing_field:{name}", f"{name} is required")
    if not isinstance(value, str):
        raise _Reject(f"bad_type:{name}", f"{name} is {type(value).__name__}, not a string")
    if len(value) > max_len:
        raise _Reject(f"bad_value:{name}", f"{name} longer than {max_len} characters")


def ts_or_none(value: Any) -> int | None:
    """`parse_ts`, or None when `value` is not a readable time."""
    try:
        return parse_ts(value)
    except _Reject:
        return None


def parse_ts(value: Any, name: str = "ts") -> int:
    """Event time in epoch milliseconds from epoch s, epoch ms or ISO-8601 (naive = UTC).

    >>> parse_ts(1700000000), parse_ts(1700000000123), parse_ts("2023-11-14T22:13:20Z")
    (1700000000000, 1700000000123, 1700000000000)
    """
    if value is None:
        raise _Reject(f"missing_field:{name}", f"{name} is required")
    if isinstance(value, bool):
        raise _Reject("bad_type:ts", "ts is a boolean")
    if isinstance(value, int | float):
        return _number_ts(float(value), value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return _number_ts(float(text), value)
        except ValueError:
            pass
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            raise _Reject("bad_value:ts", f"ts {value[:60]!r} is not epoch s, epoch ms or ISO-8601") from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        return round(dt.timestamp() * 1000)
    raise _Reject("bad_type:ts", f"ts is {type(value).__name__}")


def _number_ts(number: float, original: Any) -> int:
    if not math.isfinite(number):
        raise _Reject("bad_value:ts", f"ts {original!r} is not finite")
    if abs(number) >= 1e16:
        raise _Reject("ts_out_of_range", f"ts {original!r} is out of range")
    if abs(number) >= _MS_THRESHOLD:
        return int(number)
    return round(number * 1000)
