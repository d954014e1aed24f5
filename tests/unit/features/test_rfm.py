"""RFM: quantiles within one bin of exact, add/remove exact, segments from scores."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flows.core.errors import ConfigError
from flows.features.declarations import parse_features
from flows.features.rfm import LOW, RATIO, LogHistogram, RfmSketch, SegmentDef, score, segment_of


def exact_quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = max(1, math.ceil(q * len(ordered)))
    return ordered[k - 1]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(LOW, 1e7), min_size=1, max_size=300), st.sampled_from([0.2, 0.4, 0.6, 0.8]))
def test_quantile_is_within_one_bin_of_exact(values, q):
    h = LogHistogram()
    for v in values:
        h.add(v)
    exact = exact_quantile(values, q)
    got = h.quantile(q)
    assert exact <= got * (1 + 1e-9) and got <= exact * RATIO * (1 + 1e-9)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0, 1e6), max_size=100), st.lists(st.floats(0, 1e6), max_size=100))
def test_remove_undoes_add(keep, transient):
    a, b = LogHistogram(), LogHistogram()
    for v in keep:
        a.add(v)
        b.add(v)
    for v in transient:
        b.add(v)
    for v in transient:
        b.remove(v)
    assert a.total == b.total and a.cuts() == b.cuts()


def test_scores_follow_the_population():
    sk = RfmSketch()
    for i in range(1, 101):  # recency 1..100 days, frequency 1..100, spend 10..1000
        sk.move(None, (float(i), float(i), 10.0 * i))
    assert sk.scores((1.0, 100.0, 1000.0)) == {"r": 5, "f": 5, "m": 5}
    assert sk.scores((100.0, 1.0, 10.0)) == {"r": 1, "f": 1, "m": 1}
    assert sk.scores(None) == {"r": 0, "f": 0, "m": 0}
    assert score(3.0, (1, 2, 3, 4)) == 3


def test_segments_first_match_and_fallbacks():
    segs = (SegmentDef("champions", (("r", ">=", 4), ("f", ">=", 4))), SegmentDef("loyal", (("f", ">=", 4),)))
    assert segment_of({"r": 5, "f": 5, "m": 1}, segs) == "champions"
    assert segment_of({"r": 1, "f": 4, "m": 1}, segs) == "loyal"
    assert segment_of({"r": 1, "f": 1, "m": 1}, segs) == "others"
    assert segment_of({"r": 0, "f": 0, "m": 0}, segs) == "prospect"


RFM = {"recency": "a", "frequency": "a", "monetary": "a"}


def seg(*cond: object) -> list[dict[str, object]]:
    return [{"name": "s", "when": [list(cond)]}]


@pytest.mark.parametrize(
    ("doc", "what"),
    [
        ({"rfm": {**RFM, "recency": "nope"}}, "rfm.recency: 'nope' is not a declared feature"),
        ({"rfm": RFM, "segment": seg("x", ">", 1)}, "segment[0] (s).when[0]: 'x' is not one of r, f, m"),
        ({"rfm": RFM, "segment": seg("r", ">", 9)}, "not a score from 1 to 5"),
        ({"segment": [{"name": "s", "when": []}]}, "segments need an [rfm] table"),
    ],
)
def test_bad_rfm_declarations_are_refused(doc, what):
    with pytest.raises(ConfigError) as info:
        parse_features({"feature": [{"name": "a", "agg": "count", "window": "1h"}], **doc}, "f.toml")
    assert what in str(info.value)
