"""Feature declarations: what `config/features.toml` may say, checked before the engine starts.

A feature is one table in the ``[[feature]]`` array::

    [[feature]]
    name = "revenue_30d"          # [a-z][a-z0-9_]*, unique
    agg = "sum"                   # see AGGREGATIONS
    types = ["order_paid"]        # event types it reads ([] or absent = every type)
    where = [["props.channel", "==", "app"]]   # optional property filters, all must hold
    value = "props.amount"        # the field it aggregates (numeric unless agg = distinct)
    window = "30d"                # sliding window in event time (windowed aggregations);
                                  # "lifetime" (count, sum, avg): every event ever, no window
    buckets = 30                  # ring size: the window moves in steps of window / buckets

Semantics (``flows.features.windows`` implements them; the property tests recompute them from
raw events):

* Time is event time in milliseconds. The bucket width is ``w = window / buckets`` and an
  event at ``ts`` is in bucket ``ts // w``. The window *as of* ``T`` is the ``buckets``
  most recent buckets, ``(T // w - buckets, T // w]``: edges move in steps of one bucket,
  so a window is exact to within one bucket width.
* An event is *late* for its profile when its ``ts`` is more than the allowed lateness
  behind the newest ``ts`` that profile already had accepted; a late event changes no
  feature (it is still stored, marked late).
* ``count`` — matching events in the window; ``sum`` / ``avg`` / ``min`` / ``max`` — of the
  numeric ``value`` over matching events in the window that have one (events without a
  numeric value are skipped); ``distinct`` — distinct values of ``value`` in the window
  (exact while each bucket holds at most ``max_distinct`` values, a lower bound beyond;
  values compare as in a Python set: numbers by value, so ``1``, ``1.0`` and ``true`` are
  one value, strings apart from numbers; lists and objects are not counted);
  ``last`` — the numeric ``value`` of the matching event with the greatest ``ts`` (ties:
  the later arrival), over all time; ``recency`` — ``(T - ts of the newest matching
  event) / unit``; ``first_seen`` — epoch seconds of the oldest matching event; ``age``
  — ``(T - ts of the oldest matching event) / unit``;
  ``decayed_sum`` — sum over all matching events of ``value`` (1 without a value field)
  times ``2 ** (-(T - ts) / half_life)``; ``trend`` — ``of`` (count or sum) over the
  current window minus the same over the window before it; ``expr`` — arithmetic
  (``+ - * /``, numbers, parentheses) over other features' names.
* ``count``, ``sum`` and ``avg`` with ``window = "lifetime"`` read every matching event the
  profile ever had (that was not late): the buy-till-you-die inputs (purchases over a
  customer's life, average order value) that a window would forget.
* A feature with nothing to say (``avg``/``min``/``max``/``last``/``recency``/``age``/
  ``first_seen`` with no matching event, an ``expr`` with such an operand, division by
  zero) has no value: it is absent from the feature map.
"""

from __future__ import annotations

import ast
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flows.core.conditions import COMPARE, OPS, TOP_FIELDS, Condition, field_ok
from flows.core.durations import UNIT_MS, parse_duration
from flows.core.errors import ConfigError
from flows.features.rfm import RfmConfig, SegmentDef

AGGREGATIONS = (
    "count", "sum", "avg", "min", "max", "distinct", "last", "recency", "first_seen",
    "decayed_sum", "trend", "expr", "age",
)  # fmt: skip
LIFETIME_OK = frozenset({"count", "sum", "avg"})  # may take window = "lifetime"
WINDOWED = frozenset({"count", "sum", "avg", "min", "max", "distinct", "trend"})
NEEDS_VALUE = frozenset({"sum", "avg", "min", "max", "distinct", "last"})
NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")
MAX_WINDOW_MS = 400 * 86_400_000
RESERVED = frozenset({"as_of", "segment", "tags", "rfm_r", "rfm_f", "rfm_m"})


@dataclass(frozen=True, slots=True)
class FeatureDef:
    name: str
    agg: str
    types: frozenset[str]  # empty = every type
    where: tuple[Condition, ...] = ()
    value: str | None = None
    window_ms: int = 0
    buckets: int = 0
    half_life_ms: int = 0
    unit_ms: int = 1000
    of: str = "count"
    expr: str | None = None
    max_distinct: int = 1000
    bucket_ms: int = 0  # window_ms // buckets, precomputed (read on every event)

    def __post_init__(self) -> None:
        if self.buckets and not self.bucket_ms:
            object.__setattr__(self, "bucket_ms", self.window_ms // self.buckets)


@dataclass(frozen=True, slots=True)
class TagDef:
    """An auto-tag: on while every condition over feature values holds (an absent feature
    fails its condition). Entering and leaving are recorded as events on the stream."""

    name: str
    when: tuple[tuple[str, str, float], ...]

    def holds(self, values: Mapping[str, float]) -> bool:
        for feature, op, limit in self.when:
            v = values.get(feature)
            if v is None or not COMPARE[op](v, limit):
                return False
        return True


@dataclass(frozen=True)
class FeatureSet:
    """Validated features in dependency order (an ``expr`` after what it reads), and tags."""

    features: tuple[FeatureDef, ...]
    source: str = "<memory>"
    tags: tuple[TagDef, ...] = ()
    rfm: RfmConfig | None = None
    segments: tuple[SegmentDef, ...] = ()

    def names(self) -> list[str]:
        return [f.name for f in self.features]


def _expr_names(expr: str, where: str, source: str) -> set[str]:
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError as exc:
        raise ConfigError.at(
            source, where, f"expr {expr!r} is not an arithmetic expression: {exc.msg}"
        ) from None
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif not isinstance(
            node,
            ast.Expression
            | ast.BinOp
            | ast.UnaryOp
            | ast.Constant
            | ast.Load
            | ast.Add
            | ast.Sub
            | ast.Mult
            | ast.Div
            | ast.USub
            | ast.UAdd,
        ) or (isinstance(node, ast.Constant) and not isinstance(node.value, int | float)):
            raise ConfigError.at(
                source, where, f"expr {expr!r} may only use + - * /, numbers and feature names"
            )
    return names


def parse_features(data: Mapping[str, Any], source: str = "<memory>") -> FeatureSet:
    """Validate ``{"feature": [...]}``; errors name the file, the entry and what is wrong."""
    unknown_top = set(data) - {"feature", "defaults", "tag", "rfm", "segment"}
    if unknown_top:
        raise ConfigError.at(
            source, "top level", f"unknown keys {sorted(unknown_top)} (expected [[feature]])"
        )
    defaults = data.get("defaults", {})
    entries = data.get("feature", [])
    if not isinstance(entries, list) or not entries:
        raise ConfigError.at(source, "feature", "no [[feature]] entries")
    default_buckets = int(defaults.get("buckets", 24))
    parsed: dict[str, FeatureDef] = {}
    order: list[str] = []
    allowed = {"name", "agg", "types", "where", "value", "window", "buckets", "half_life", "unit", "of",
               "expr", "max_distinct"}  # fmt: skip
    for i, raw in enumerate(entries):
        label = f"feature[{i}]"
        if not isinstance(raw, dict):
            raise ConfigError.at(source, label, "must be a table")
        name = raw.get("name")
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            raise ConfigError.at(source, f"{label}.name", f"{name!r} must match [a-z][a-z0-9_]* (at most 64)")
        if name in RESERVED:
            raise ConfigError.at(source, f"{label}.name", f"{name!r} is reserved in the feature store hash")
        label = f"feature[{i}] ({name})"
        extra = set(raw) - allowed
        if extra:
            raise ConfigError.at(source, label, f"unknown keys {sorted(extra)}")
        if name in parsed:
            raise ConfigError.at(source, f"{label}.name", "duplicate feature name")
        agg = raw.get("agg")
        if agg not in AGGREGATIONS:
            raise ConfigError.at(
                source, f"{label}.agg", f"unknown aggregation {agg!r} (one of {', '.join(AGGREGATIONS)})"
            )
        types = raw.get("types", [])
        if isinstance(types, str):
            types = [types]
        if not isinstance(types, list) or not all(isinstance(t, str) and t for t in types):
            raise ConfigError.at(source, f"{label}.types", "must be a list of event types")
        where = _conditions(raw.get("where", []), f"{label}.where", source)
        value = raw.get("value")
        if value is not None and (not isinstance(value, str) or not field_ok(value)):
            raise ConfigError.at(
                source, f"{label}.value",
                f"field {value!r} cannot exist in an event (use props.<name> or one of {sorted(TOP_FIELDS)})",
            )  # fmt: skip
        if agg in NEEDS_VALUE and value is None:
            raise ConfigError.at(
                source, f"{label}.value", f"agg {agg!r} needs a value field (e.g. props.amount)"
            )
        window_ms = buckets = half_life_ms = 0
        if agg in LIFETIME_OK and raw.get("window") == "lifetime":
            if "buckets" in raw:
                raise ConfigError.at(source, f"{label}.buckets", "a lifetime aggregate has no buckets")
        elif agg in WINDOWED:
            if "window" not in raw:
                raise ConfigError.at(source, f"{label}.window", f"agg {agg!r} needs a window (e.g. '24h')")
            try:
                window_ms = parse_duration(raw["window"])
            except ValueError as exc:
                raise ConfigError.at(source, f"{label}.window", str(exc)) from None
            if window_ms > MAX_WINDOW_MS:
                raise ConfigError.at(source, f"{label}.window", "longer than 400 days")
            buckets = raw.get("buckets", default_buckets)
            if not isinstance(buckets, int) or not 1 <= buckets <= 1000:
                raise ConfigError.at(source, f"{label}.buckets", "must be an integer from 1 to 1000")
            if window_ms % buckets:
                raise ConfigError.at(
                    source,
                    f"{label}.buckets",
                    f"window {raw['window']} is not divisible into {buckets} buckets",
                )
        elif "window" in raw:
            raise ConfigError.at(source, f"{label}.window", f"agg {agg!r} is not windowed")
        if agg == "decayed_sum":
            try:
                half_life_ms = parse_duration(raw.get("half_life", ""))
            except ValueError as exc:
                raise ConfigError.at(source, f"{label}.half_life", str(exc)) from None
        unit_ms = 1000
        if "unit" in raw:
            if agg not in ("recency", "age"):
                raise ConfigError.at(source, f"{label}.unit", "only recency and age take a unit")
            try:
                unit_ms = (
                    parse_duration("1" + raw["unit"])
                    if raw["unit"] in UNIT_MS
                    else parse_duration(raw["unit"])
                )
            except (ValueError, TypeError) as exc:
                raise ConfigError.at(source, f"{label}.unit", str(exc)) from None
        of = raw.get("of", "count")
        if agg == "trend":
            if of not in ("count", "sum"):
                raise ConfigError.at(source, f"{label}.of", "trend is of 'count' or 'sum'")
            if of == "sum" and value is None:
                raise ConfigError.at(source, f"{label}.value", "a trend of sum needs a value field")
        expr = raw.get("expr")
        if agg == "expr":
            if not isinstance(expr, str):
                raise ConfigError.at(source, f"{label}.expr", "agg 'expr' needs expr = \"a - b\"")
            for ref in _expr_names(expr, f"{label}.expr", source):
                if ref not in parsed:
                    raise ConfigError.at(
                        source, f"{label}.expr", f"{ref!r} is not a feature declared before this one"
                    )
            if types or where or value:
                raise ConfigError.at(source, label, "an expr feature reads other features, not events")
        max_distinct = raw.get("max_distinct", 1000)
        if not isinstance(max_distinct, int) or max_distinct < 1:
            raise ConfigError.at(source, f"{label}.max_distinct", "must be a positive integer")
        parsed[name] = FeatureDef(
            name=name, agg=agg, types=frozenset(types), where=where, value=value, window_ms=window_ms,
            buckets=buckets, half_life_ms=half_life_ms, unit_ms=unit_ms, of=of, expr=expr,
            max_distinct=max_distinct,
        )  # fmt: skip
        order.append(name)
    tags = _tags(data.get("tag", []), parsed, source)
    rfm, segments = _rfm(data.get("rfm"), data.get("segment", []), parsed, source)
    return FeatureSet(tuple(parsed[n] for n in order), source, tags, rfm, segments)


def _rfm(
    raw: Any, segs: Any, features: Mapping[str, FeatureDef], source: str
) -> tuple[RfmConfig | None, tuple[SegmentDef, ...]]:
    if raw is None:
        if segs:
            raise ConfigError.at(source, "segment", "segments need an [rfm] table")
        return None, ()
    if not isinstance(raw, dict) or set(raw) - {"recency", "frequency", "monetary"}:
        raise ConfigError.at(
            source, "rfm", "must be a table with recency, frequency, monetary (feature names)"
        )
    cfg = RfmConfig(**raw)
    for dim in ("recency", "frequency", "monetary"):
        name = getattr(cfg, dim)
        if name not in features:
            raise ConfigError.at(source, f"rfm.{dim}", f"{name!r} is not a declared feature")

    def score_ok(dim: Any, limit: Any) -> str | None:
        if dim not in ("r", "f", "m"):
            return f"{dim!r} is not one of r, f, m"
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 5:
            return f"{limit!r} is not a score from 1 to 5"
        return None

    rules = _named_rules(segs, "segment", "[r|f|m, op, score]", score_ok, source, allow_empty=True)
    out = [SegmentDef(name, conds) for name, conds in rules]
    return cfg, tuple(out)


def _tags(raw: Any, features: Mapping[str, FeatureDef], source: str) -> tuple[TagDef, ...]:
    def feature_ok(feature: Any, limit: Any) -> str | None:
        if feature not in features:
            return f"{feature!r} is not a declared feature"
        if isinstance(limit, bool) or not isinstance(limit, int | float):
            return f"{limit!r} is not a number"
        return None

    rules = _named_rules(raw, "tag", "[feature, op, number]", feature_ok, source)
    return tuple(TagDef(name, tuple((f, op, float(v)) for f, op, v in conds)) for name, conds in rules)


def _named_rules(
    raw: Any,
    kind: str,
    form: str,
    check: Any,
    source: str,
    allow_empty: bool = False,
) -> list[tuple[str, tuple[tuple[Any, str, Any], ...]]]:
    """``[[kind]]`` tables of ``{name, when = [form, ...]}`` (tags, segments), validated;
    `check(subject, limit)` returns what is wrong with one condition, or None."""
    if not isinstance(raw, list):
        raise ConfigError.at(source, kind, f"must be an array of tables ([[{kind}]])")
    out: list[tuple[str, tuple[tuple[Any, str, Any], ...]]] = []
    seen: set[str] = set()
    for i, entry in enumerate(raw):
        label = f"{kind}[{i}]"
        if not isinstance(entry, dict) or set(entry) - {"name", "when"}:
            raise ConfigError.at(source, label, "must be a table with name and when")
        name = entry.get("name")
        if not isinstance(name, str) or not NAME_RE.fullmatch(name) or name in seen:
            raise ConfigError.at(
                source, f"{label}.name", f"{name!r} must be a unique name matching [a-z][a-z0-9_]*"
            )
        seen.add(name)
        when = entry.get("when")
        if not isinstance(when, list) or (not when and not allow_empty):
            raise ConfigError.at(source, f"{label} ({name}).when", f"needs [{form}, ...]")
        conds = []
        for j, cond in enumerate(when):
            where = f"{label} ({name}).when[{j}]"
            if not isinstance(cond, list) or len(cond) != 3:
                raise ConfigError.at(source, where, f"must be {form}")
            subject, op, limit = cond
            if op not in COMPARE:
                raise ConfigError.at(source, where, f"unknown operator {op!r} (one of {' '.join(COMPARE)})")
            problem = check(subject, limit)
            if problem:
                raise ConfigError.at(source, where, problem)
            conds.append((subject, op, limit))
        out.append((name, tuple(conds)))
    return out


def _conditions(raw: Any, where: str, source: str) -> tuple[Condition, ...]:
    if not isinstance(raw, list):
        raise ConfigError.at(
            source, where, 'must be a list of [field, op, value], e.g. [["props.amount", ">=", 500]]'
        )
    out = []
    for j, cond in enumerate(raw):
        if not isinstance(cond, list | tuple) or len(cond) != 3:
            raise ConfigError.at(source, f"{where}[{j}]", "must be [field, op, value]")
        fld, op, val = cond
        if not isinstance(fld, str) or not field_ok(fld):
            raise ConfigError.at(source, f"{where}[{j}]", f"field {fld!r} cannot exist in an event")
        if op not in OPS:
            raise ConfigError.at(source, f"{where}[{j}]", f"unknown operator {op!r} (one of {' '.join(OPS)})")
        if op == "in" and not isinstance(val, list):
            raise ConfigError.at(source, f"{where}[{j}]", "'in' needs a list")
        if op in (">", ">=", "<", "<=") and (isinstance(val, bool) or not isinstance(val, int | float)):
            raise ConfigError.at(source, f"{where}[{j}]", f"{op} needs a number")
        out.append(Condition(fld, op, frozenset(val) if op == "in" else val))
    return tuple(out)


def read_toml(path: Path, what: str) -> dict[str, Any]:
    """A declarations file as data; missing or malformed is a ConfigError naming the file."""
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def load_features(path: Path | str) -> FeatureSet:
    """Read and validate a features file; a bad one raises ConfigError naming file and entry."""
    path = Path(path)
    return parse_features(read_toml(path, "features"), str(path))
