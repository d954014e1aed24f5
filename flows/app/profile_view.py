"""One customer as the engine holds them, by profile id or by an identifier: what
`scrm profile show` prints.

An identifier is looked up by its keyed hash (`flows.core.pii`, the engine's secret and
default region), never in clear: the profiles whose events carried it (ClickHouse
``events.pii_hashes``, newest first) and its person in the identity graph, if the graph
holds it. With routing by person (``identity.resolve``) the view is of the person: the
engine keeps its state under the person's id, and its events are those routed to it or
to a person merged into it. The parts come from where the engine keeps them: identifiers
(masked), activity and the profile record (replayed from its ``identify`` and
``profile_updated`` events) from ``events``, consent and suppressions, features, tags,
segment, scores and the running journey instances (as the engine last wrote them) from
Redis, journey decisions from ``actions``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from clickhouse_connect.driver.client import Client

from flows.core.contract import ENGINE, Event
from flows.core.errors import ConfigError
from flows.core.identifiers import IdentifierRules, graph_name
from flows.core.pii import mask_value
from flows.core.settings import Settings
from flows.dataflow.build import make_pii
from rules.attributes import PII, PROFILE_TYPES, Attributes, learn
from rules.policy import consent_key, suppress_at_key, suppress_key
from rules.program import program
from rules.store import read as read_journey
from sinks.feature_store import PROFILE_FIELDS, feature_key
from sinks.identity_graph import PERSON, Identifier, IdentityGraph
from sinks.redis_store import text
from sinks.retry import RetryPolicy
from sinks.score_store import score_key


@dataclass
class ProfileView:
    profile_id: str
    found_by: str  # "profile id", or the identifier looked up ("phone +8613800000001")
    also: list[str] = field(default_factory=list)  # other profiles that carried the identifier
    person: str | None = None  # the identity graph's person of the profile id
    # the state keys read: the profile, or the person and the persons merged into it
    ids: list[str] = field(default_factory=list)
    linked: list[str] = field(default_factory=list)  # the identifiers the graph links to it
    identifiers: dict[str, str] = field(default_factory=dict)  # name -> masked, newest
    events: int = 0  # the customer's own events
    engine_events: int = 0  # the engine's about the profile (tag_added, segment_changed, ...)
    first_seen: str = ""
    last_seen: str = ""
    # the profile record: the attributes its identify / profile_updated events set, by the
    # engine's rule (`rules.attributes`); a PII attribute as "(masked)"
    attributes: dict[str, Any] = field(default_factory=dict)
    consent: dict[str, dict[str, Any]] = field(default_factory=dict)
    suppressed: dict[str, dict[str, Any]] = field(default_factory=dict)
    features: dict[str, str] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    segment: str = ""
    rfm: str = ""
    features_as_of: str = ""
    scores: dict[str, dict[str, Any]] = field(default_factory=dict)
    # running journey instances (as the engine last wrote them): journey, version, next node,
    # waiting until, entered
    running: list[dict[str, Any]] = field(default_factory=list)
    journeys: list[dict[str, Any]] = field(default_factory=list)  # latest decision per journey
    decisions: list[dict[str, Any]] = field(default_factory=list)  # the last ones, newest first


class NotFound(LookupError):
    """No profile carries the identifier, or the profile id is unknown."""


def identifier_hash(settings: Settings, name: str, value: str) -> tuple[str, str]:
    """(the hash the engine stores for identifier `name` = `value`, its canonical form);
    raises ValueError when the value has no canonical form (the engine would refuse it)."""
    canonical, why = IdentifierRules(settings.identity.default_region).canonical(name, value)
    if why:
        raise ValueError(f"{name} {value!r} is not a valid identifier ({why})")
    return make_pii(settings).digest(name, canonical), canonical


def profiles_with(ch: Client, db: str, key: str) -> list[str]:
    """The profiles whose events carried the identifier hash `key`, the latest first (a
    scan of ``events``: for a lookup, not a hot path)."""
    rows = ch.query(
        f"SELECT profile_id FROM {db}.events WHERE has(mapValues(pii_hashes), {{h:String}}) "
        f"GROUP BY profile_id ORDER BY max(ts) DESC, profile_id LIMIT 20",
        parameters={"h": key},
    ).result_rows
    return [r[0] for r in rows]


def show(
    settings: Settings,
    ch: Client,
    client: Any,
    profile_id: str | None = None,
    identifier: tuple[str, str] | None = None,
    decisions: int = 10,
) -> ProfileView:
    """The view of one profile, named by id or by (identifier name, value)."""
    db = settings.clickhouse.database
    graph = IdentityGraph(client, RetryPolicy.from_settings(settings.retry))
    also: list[str] = []
    person: str | None = None
    if identifier is not None:
        name, value = identifier
        key, canonical = identifier_hash(settings, name, value)
        found = profiles_with(ch, db, key)
        person = graph.person_of(Identifier(graph_name(name), key))
        if not found and person is None:
            raise NotFound(f"no profile carried {name} {mask_value(name, canonical)}")
        profile_id, also = (found[0], found[1:]) if found else (str(person), [])
        found_by = f"{name} {mask_value(name, canonical)}"
    elif profile_id:
        found_by = "profile id"
    else:
        raise ValueError("name a profile id or an identifier")
    person = person or graph.person_now(profile_id)
    routed = settings.identity.resolve and person is not None
    if routed:  # the engine keeps the state under the person's id
        profile_id = str(person)
    view = ProfileView(profile_id, found_by, also, ids=[profile_id])
    if person is not None:
        view.person = person
        linked = graph.identifiers_of(person)
        view.linked = [f"{i.name}:{i.key[:12]}" for i in linked]
        if routed:
            view.ids += [m.key for m in graph.members_of(person) if m.name == PERSON]
    col = "person_id" if routed else "profile_id"  # what the events are found by
    _activity(view, ch, db, col)
    _attributes(view, ch, db, col)
    _redis(view, client)
    _decisions(view, ch, db, decisions)
    if not view.events and not view.features and not view.decisions and view.person is None:
        raise NotFound(f"no profile {profile_id!r} in events, Redis or actions")
    return view


def _num(v: str) -> str:
    try:
        return f"{float(v):.6g}"
    except ValueError:
        return v


def _when(t: datetime) -> str:
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).isoformat(timespec="seconds").replace("+00:00", "Z")


def _ms(ms: str | None) -> str:
    if not ms:
        return ""
    return datetime.fromtimestamp(int(ms) / 1000, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _activity(view: ProfileView, ch: Client, db: str, col: str) -> None:
    p = {"p": view.ids}
    row = ch.query(
        f"SELECT countIf(source != {{e:String}}), count(), min(ts), max(ts) FROM {db}.events "
        f"WHERE {col} IN {{p:Array(String)}}",
        parameters={**p, "e": ENGINE},
    ).result_rows[0]
    view.events, view.engine_events = int(row[0]), int(row[1]) - int(row[0])
    if row[1]:
        view.first_seen, view.last_seen = _when(row[2]), _when(row[3])
    rows = ch.query(
        f"SELECT k, argMax(v, ts) FROM {db}.events ARRAY JOIN mapKeys(identifiers) AS k, "
        f"mapValues(identifiers) AS v WHERE {col} IN {{p:Array(String)}} GROUP BY k ORDER BY k",
        parameters=p,
    ).result_rows
    view.identifiers = {k: v for k, v in rows}
    if col == "person_id":  # the ids its events arrived with
        rows = ch.query(
            f"SELECT profile_id FROM {db}.events WHERE person_id IN {{p:Array(String)}} "
            f"AND source != {{e:String}} GROUP BY profile_id ORDER BY max(ts) DESC, profile_id LIMIT 20",
            parameters={**p, "e": ENGINE},
        ).result_rows
        view.also = [r[0] for r in rows if r[0] != view.profile_id]


def _attributes(view: ProfileView, ch: Client, db: str, col: str) -> None:
    """The attributes as the engine learns them, replayed from the stored profile events
    in stream order (the newest event time wins per attribute, `null` clears it)."""
    rows = ch.query(
        f"SELECT props, pii_hashes, toUnixTimestamp64Milli(ts) FROM {db}.events FINAL "
        f"WHERE {col} IN {{p:Array(String)}} AND type IN {{t:Array(String)}} "
        f"ORDER BY ingested_at, src_partition, src_offset LIMIT 10000",
        parameters={"p": view.ids, "t": sorted(PROFILE_TYPES)},
    ).result_rows
    attrs: Attributes | None = None
    for props, hashes, ts in rows:
        e = Event("", "", "profile_updated", int(ts), "", orjson.loads(props), {}, dict(hashes), 0, "", 0, 0)
        attrs = learn(attrs, e)
    view.attributes = {
        k: "(masked)" if v == PII else v for k, (v, _) in sorted((attrs or {}).items()) if v is not None
    }


def _redis(view: ProfileView, client: Any) -> None:
    pid = view.profile_id
    consent = {text(k): text(v) for k, v in client.hgetall(consent_key(pid)).items()}
    for ch, v in sorted(consent.items()):
        if ch.endswith(":at"):
            continue
        at, _, rest = consent.get(f"{ch}:at", "").partition("|")
        version, _, event = rest.partition("|")
        view.consent[ch] = {"granted": v == "1", "at": _ms(at), "version": version, "event": event}
    when = {text(k): text(v) for k, v in client.hgetall(suppress_at_key(pid)).items()}
    for ch in sorted(text(c) for c in client.smembers(suppress_key(pid))):
        at, _, kind = when.get(ch, "").partition("|")
        view.suppressed[ch] = {"at": _ms(at), "kind": kind or "unknown"}
    feats = {text(k): text(v) for k, v in client.hgetall(feature_key(pid)).items()}
    view.features = {k: _num(v) for k, v in sorted(feats.items()) if k not in PROFILE_FIELDS}
    view.tags = [t for t in feats.get("tags", "").split(",") if t]
    view.segment = feats.get("segment", "")
    if "rfm_r" in feats:
        view.rfm = " ".join(
            f"{f[-1].upper()}{int(float(feats.get(f, '0')))}" for f in ("rfm_r", "rfm_f", "rfm_m")
        )
    view.features_as_of = _ms(feats.get("as_of"))
    nodes: dict[tuple[str, int], Any] = {}  # each journey version's program, read once
    view.running = _running(client, feats.get("journeys", ""), nodes)
    for merged in view.ids[1:]:  # a merged alias's instances run out under its own id
        written = text(client.hget(feature_key(merged), "journeys") or b"")
        view.running += _running(client, written, nodes, merged)
    scores = {text(k): text(v) for k, v in client.hgetall(score_key(pid)).items()}
    for k, v in sorted(scores.items()):
        if k.endswith((":version", ":as_of")):
            continue
        view.scores[k] = {
            "score": float(v),
            "version": scores.get(f"{k}:version", ""),
            "as_of": _ms(scores.get(f"{k}:as_of")),
        }


def _running(
    client: Any, written: str, programs: dict[tuple[str, int], Any], under: str = ""
) -> list[dict[str, Any]]:
    """The running instances the engine wrote (`ProfileJourneys.running`), each with the
    node it goes to next, read from the journey's version in the catalog (`programs`
    caches them); `under` names the merged alias they run under ("" the profile itself)."""
    out = []
    for item in filter(None, written.split(",")):
        jid, version, pc, resume, entered = item.split("|")
        node = ""
        if int(pc) >= 0:
            key = (jid, int(version))
            try:
                if key not in programs:
                    programs[key] = program(read_journey(client, jid, int(version)))
                node = programs[key][int(pc)].node.id
            except (ConfigError, IndexError):
                node = f"#{pc}"  # that version is gone from the catalog
        out.append(
            {
                "journey_id": jid, "journey_version": int(version), "next": node,
                "waiting_until": _ms(resume) if int(resume) >= 0 else "", "entered": _ms(entered),
                "under": under,
            }
        )  # fmt: skip
    return out


def _decisions(view: ProfileView, ch: Client, db: str, n: int) -> None:
    cols = "journey_id, journey_version, node_id, channel, template, status, reason, ts"
    rows = ch.query(
        f"SELECT {cols} FROM {db}.actions FINAL WHERE profile_id IN {{p:Array(String)}} "
        f"ORDER BY ts DESC, action_id LIMIT {{n:UInt32}}",
        parameters={"p": view.ids, "n": n},
    ).result_rows
    names = [c.strip() for c in cols.split(",")]
    view.decisions = [_row(names, r) for r in rows]
    rows = ch.query(
        f"SELECT journey_id, argMax(journey_version, ts), argMax(node_id, ts), argMax(status, ts), "
        f"max(ts), count() FROM {db}.actions FINAL WHERE profile_id IN {{p:Array(String)}} "
        f"GROUP BY journey_id ORDER BY journey_id",
        parameters={"p": view.ids},
    ).result_rows
    names = ["journey_id", "journey_version", "node_id", "status", "ts", "decisions"]
    view.journeys = [_row(names, r) for r in rows]


def _row(names: list[str], r: Any) -> dict[str, Any]:
    out = dict(zip(names, r, strict=True))
    if isinstance(out.get("ts"), datetime):
        out["ts"] = _when(out["ts"])
    return out
