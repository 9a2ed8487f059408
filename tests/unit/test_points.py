"""Points and line protocol: exact lines written by hand, escaping, parse-back.

Expected lines are typed out here from the line-protocol rules, not produced
by the code under test; the parse-back check uses :func:`reference_parse`, a
plain parser written for this test alone.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import MonitorConfig
from schemas.vocabulary import MEASUREMENTS
from streams import points as pts
from streams.merger import WindowMerger
from streams.points import (
    EmptyPointError,
    LineProtocolError,
    Point,
    latest_points,
    parse_line,
    parse_line_protocol,
)
from streams.windows import DriftPartial, PerformancePartial, WindowKey

W0 = datetime(2024, 3, 1, 12, tzinfo=UTC)
W0_NS = 1_709_294_400 * 10**9  # 2024-03-01T12:00:00Z, by hand: 19783 days * 86400 + 12 h


# ---------------------------------------------------------------------------
# a reference parser, written plainly for the test
# ---------------------------------------------------------------------------


def _find_unescaped(text: str, char: str, start: int = 0) -> int:
    """Index of the first ``char`` at or after ``start`` not escaped by a backslash, or -1."""
    i = start
    while i < len(text):
        if text[i] == "\\":
            i += 2
        elif text[i] == char:
            return i
        else:
            i += 1
    return -1


def _split_unescaped(text: str, char: str) -> list[str]:
    parts = []
    while (cut := _find_unescaped(text, char)) >= 0:
        parts.append(text[:cut])
        text = text[cut + 1 :]
    return [*parts, text]


def _unescape(text: str, chars: str) -> str:
    for char in chars:
        text = text.replace("\\" + char, char)
    return text


def _unescape_string(text: str) -> str:
    out, i = "", 0
    while i < len(text):
        if text[i] == "\\":
            i += 1
        out += text[i]
        i += 1
    return out


def reference_parse(line: str) -> tuple[str, dict[str, str], dict[str, Any], int]:
    """Measurement, tags, fields and time of one line (string fields unescaped).

    The series part ends at the first unescaped space and the timestamp
    follows the last space (it has none); the fields are in between.
    """
    head_end = _find_unescaped(line, " ")
    stamp_start = line.rindex(" ")
    head, field_text, stamp = line[:head_end], line[head_end + 1 : stamp_start], line[stamp_start:]
    series = _split_unescaped(head, ",")
    measurement = _unescape(series[0], ", ")
    tags = {}
    for item in series[1:]:
        key, value = _split_unescaped(item, "=")
        tags[_unescape(key, ",= ")] = _unescape(value, ",= ")
    fields: dict[str, Any] = {}
    rest = field_text
    while rest:
        equals = _find_unescaped(rest, "=")
        name, rest = _unescape(rest[:equals], ",= "), rest[equals + 1 :]
        if rest.startswith('"'):
            close = _find_unescaped(rest, '"', 1)
            fields[name] = _unescape_string(rest[1:close])
            rest = rest[close + 1 :].removeprefix(",")
        else:
            raw, _, after = rest.partition(",")
            fields[name] = (
                raw == "true"
                if raw in ("true", "false")
                else int(raw[:-1])
                if raw.endswith("i")
                else float(raw)
            )
            rest = after
    return measurement, tags, fields, int(stamp)


def _same_values(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Equal dicts where types match too (True is not 1, 1 is not 1.0)."""
    return a.keys() == b.keys() and all(
        type(a[k]) is type(b[k]) and (a[k] == b[k] or (a[k] != a[k] and b[k] != b[k])) for k in a
    )


# ---------------------------------------------------------------------------
# exact lines, by hand
# ---------------------------------------------------------------------------


def test_feature_drift_line() -> None:
    point = pts.feature_drift(
        model_id="churn",
        model_version="v3",
        segment="region=eu,tier=gold",
        feature="monthly charges",
        method="ks",
        statistic=0.3125,
        p_value=0.0001,
        threshold=0.05,
        drifted=True,
        n_current=512,
        n_reference=20000,
        window_start=W0,
    )
    assert point.to_line_protocol() == (
        r"feature_drift,feature=monthly\ charges,method=ks,model_id=churn,model_version=v3,"
        r"segment=region\=eu\,tier\=gold "
        "statistic=0.3125,p_value=0.0001,threshold=0.05,drifted=true,n_current=512i,"
        "n_reference=20000i 1709294400000000000"
    )


def test_prediction_drift_line_without_p_value() -> None:
    point = pts.prediction_drift(
        model_id="churn",
        model_version="v3",
        segment="all",
        method="psi",
        statistic=0.18,
        p_value=None,
        threshold=0.2,
        drifted=False,
        n_current=100,
        n_reference=5000,
        window_start=W0,
    )
    assert point.to_line_protocol() == (
        "prediction_drift,method=psi,model_id=churn,model_version=v3,segment=all "
        "statistic=0.18,threshold=0.2,drifted=false,n_current=100i,n_reference=5000i "
        "1709294400000000000"
    )


def test_model_performance_line() -> None:
    point = pts.model_performance(
        model_id="churn",
        model_version="v3",
        segment="all",
        metric="roc_auc",
        value=1 / 3,
        n_labelled=3,
        coverage=0.03,
        is_final=True,
        window_start=W0 + timedelta(microseconds=250),
    )
    assert point.to_line_protocol() == (
        "model_performance,metric=roc_auc,model_id=churn,model_version=v3,segment=all "
        "value=0.3333333333333333,n_labelled=3i,coverage=0.03,is_final=true "
        "1709294400000250000"
    )


def test_label_lag_line() -> None:
    point = pts.label_lag(
        model_id="churn",
        model_version="v3",
        p50_s=3600,
        p95_s=86400.5,
        coverage=1,
        window_start=W0_NS,
    )
    # Integers given for float fields are written as floats: a field's type never changes.
    assert point.to_line_protocol() == (
        "label_lag,model_id=churn,model_version=v3 p50_s=3600.0,p95_s=86400.5,coverage=1.0 "
        "1709294400000000000"
    )


def test_data_quality_line() -> None:
    point = pts.data_quality(
        model_id="churn",
        model_version="v3",
        feature="age",
        missing_rate=0.0,
        out_of_range_rate=0.015625,
        unseen_category_rate=None,
        window_start=W0,
    )
    assert point.to_line_protocol() == (
        "data_quality,feature=age,model_id=churn,model_version=v3 "
        "missing_rate=0.0,out_of_range_rate=0.015625 1709294400000000000"
    )


def test_volume_line() -> None:
    point = pts.volume(
        model_id="churn",
        model_version="v3",
        segment="all",
        predictions=np.int64(1200),
        labels=0,
        late_predictions=7,
        dead_letters=2,
        window_start=W0,
    )
    assert point.to_line_protocol() == (
        "volume,model_id=churn,model_version=v3,segment=all "
        "predictions=1200i,labels=0i,late_predictions=7i,dead_letters=2i 1709294400000000000"
    )


def test_alerts_line_with_string_escapes() -> None:
    point = pts.alerts(
        model_id="churn",
        model_version="v3",
        segment="region=eu",
        feature="tenure",
        rule="f1, below baseline",
        severity="critical",
        state="firing",
        value=0.61,
        summary='f1 "0.61" < 0.70 on C:\\data\r\nsee runbook',
        time=datetime(2024, 3, 1, 13, 0, 5, 123456, tzinfo=UTC),
    )
    assert point.to_line_protocol() == (
        r"alerts,feature=tenure,model_id=churn,model_version=v3,rule=f1\,\ below\ baseline,"
        r"segment=region\=eu,severity=critical,state=firing "
        r'value=0.61,summary="f1 \"0.61\" < 0.70 on C:\\data see runbook" '
        "1709298005123456000"
    )


def test_point_escaping_of_every_part() -> None:
    point = Point(
        "my measurement,v2",
        (("zone", "eu west"), ("a=b", "c,d")),
        {
            "field key": 1.5,
            "k,=": -7,
            "s": 'back\\slash "quoted" = , space',
            "flag": False,
            "big": 2**63 - 1,
            "small": -(2**63),
            "tiny": 1e-05,
            "huge": 1e20,
            "negzero": -0.0,
            "utf8": "été ✓",
        },
        123,
    )
    assert point.to_line_protocol() == (
        r"my\ measurement\,v2,a\=b=c\,d,zone=eu\ west "
        r"field\ key=1.5,k\,\==-7i,"
        r's="back\\slash \"quoted\" = , space",flag=false,'
        "big=9223372036854775807i,small=-9223372036854775808i,"
        "tiny=1e-05,huge=1e+20,negzero=-0.0,"
        'utf8="été ✓" 123'
    )


def test_float_repr_keeps_full_precision() -> None:
    for value in (0.1, 1 / 3, 2 / 3, math.pi, 1e-300, 123456789.12345679, 5e-324):
        line = Point("m", (), {"x": value}, 0).to_line_protocol()
        written = line.split(" ")[1].removeprefix("x=")
        assert float(written) == value  # bit-for-bit round trip
        assert "e" in written or len(written) >= len(str(value))


def test_time_conversion_is_exact() -> None:
    plus_two = timezone(timedelta(hours=2))
    at = datetime(2024, 3, 1, 14, 0, 0, 999_999, tzinfo=plus_two)  # 12:00:00.999999Z
    assert Point("m", (), {"x": 1}, at).time == W0_NS + 999_999_000
    assert pts.to_epoch_ns(datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC)) == -(10**9)
    assert pts.from_epoch_ns(W0_NS + 1_500) == W0 + timedelta(microseconds=1)


# ---------------------------------------------------------------------------
# non-finite values
# ---------------------------------------------------------------------------


def test_non_finite_fields_are_left_out_and_named() -> None:
    point = pts.model_performance(
        model_id="m",
        model_version="1",
        segment="all",
        metric="roc_auc",
        value=float("nan"),
        n_labelled=4,
        coverage=0.5,
        is_final=False,
        window_start=0,
    )
    assert point.non_finite_fields == ("value",)
    assert point.to_line_protocol() == (
        "model_performance,metric=roc_auc,model_id=m,model_version=1,segment=all "
        "n_labelled=4i,coverage=0.5,is_final=false 0"
    )


def test_point_with_only_non_finite_fields_has_no_line() -> None:
    point = Point("m", (), {"a": float("inf"), "b": -math.inf, "c": np.float64("nan")}, 0)
    assert point.non_finite_fields == ("a", "b", "c")
    with pytest.raises(EmptyPointError, match="NaN or infinite"):
        point.to_line_protocol()


# ---------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"time": datetime(2024, 1, 1)}, "no timezone"),
        ({"tags": (("k", ""),)}, "value of tag 'k' must be a non-empty string"),
        ({"tags": (("k", "a\\b"),)}, "backslash or a control character"),
        ({"tags": (("k", "a\nb"),)}, "backslash or a control character"),
        ({"tags": (("k", "1"), ("k", "2"))}, "tag keys of 'm' repeat"),
        ({"measurement": "#m"}, "comment line"),
        ({"measurement": ""}, "measurement must be a non-empty string"),
        ({"fields": {}}, "has no fields"),
        ({"fields": {"x": None}}, "field 'x' must be a float, int, bool or str, got NoneType"),
        ({"fields": {"x": [1]}}, "got list"),
        ({"fields": {"x": 2**63}}, "outside the int64 range"),
        ({"fields": {"x": "a\nb"}}, "line break"),
        ({"fields": {"x": "é" * 40_000}}, "longer than 65535 bytes"),
        ({"time": 2**63}, "outside the int64 range"),
        ({"time": 1.5}, "got float"),
    ],
)
def test_point_refuses_what_line_protocol_cannot_carry(
    kwargs: dict[str, Any], message: str
) -> None:
    base: dict[str, Any] = {"measurement": "m", "tags": (), "fields": {"x": 1.0}, "time": 0}
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Point(**{**base, **kwargs})


def test_point_normalises_tags_values_and_time() -> None:
    numpy_fields: dict[str, Any] = {"f": np.float32(0.5), "i": np.int16(3), "t": np.bool_(True)}
    point = Point("m", (("b", "2"), ("a", "1")), numpy_fields, W0)
    assert point.tags == (("a", "1"), ("b", "2"))
    assert _same_values(point.fields, {"f": 0.5, "i": 3, "t": True})
    assert point.time == W0_NS
    assert point == Point("m", (("a", "1"), ("b", "2")), {"f": 0.5, "i": 3, "t": True}, W0_NS)
    assert hash(point) == hash(Point("m", (("a", "1"), ("b", "2")), {"f": 1.0}, W0_NS))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("n_current", 2.0, "must be an integer count, got float"),
        ("n_current", True, "must be an integer count, got bool"),
        ("n_current", -1, "must be >= 0"),
        ("statistic", "0.3", "must be a number, got str"),
        ("statistic", False, "must be a number, got bool"),
        ("drifted", 1, "must be a bool, got int"),
        ("model_id", "", "tag model_id must be a non-empty string"),
        ("feature", 7, "tag feature must be a string, got int"),
    ],
)
def test_constructors_check_types(field: str, value: object, message: str) -> None:
    arguments: dict[str, Any] = {
        "model_id": "m",
        "model_version": "1",
        "segment": "all",
        "feature": "age",
        "method": "ks",
        "statistic": 0.1,
        "p_value": 0.5,
        "threshold": 0.05,
        "drifted": False,
        "n_current": 10,
        "n_reference": 10,
        "window_start": 0,
    }
    arguments[field] = value
    with pytest.raises(ValueError, match=message):
        pts.feature_drift(**arguments)


def test_tag_values_from_data_are_made_safe() -> None:
    point = pts.volume(
        model_id="m",
        model_version="1",
        segment="path=C:\\x\\\nnext",
        predictions=1,
        labels=0,
        late_predictions=0,
        dead_letters=0,
        window_start=0,
    )
    assert dict(point.tags)["segment"] == "path=C:/x/ next"
    assert point.to_line_protocol().startswith(
        r"volume,model_id=m,model_version=1,segment=path\=C:/x/\ next "
    )


def _every_measurement() -> dict[str, Point]:
    common = {"model_id": "m", "model_version": "1"}
    return {
        "feature_drift": pts.feature_drift(
            **common,
            segment="all",
            feature="f",
            method="ks",
            statistic=0.1,
            p_value=0.2,
            threshold=0.05,
            drifted=False,
            n_current=1,
            n_reference=2,
            window_start=0,
        ),
        "prediction_drift": pts.prediction_drift(
            **common,
            segment="all",
            method="ks",
            statistic=0.1,
            p_value=0.2,
            threshold=0.05,
            drifted=False,
            n_current=1,
            n_reference=2,
            window_start=0,
        ),
        "model_performance": pts.model_performance(
            **common,
            segment="all",
            metric="f1",
            value=0.5,
            n_labelled=1,
            coverage=0.1,
            is_final=False,
            window_start=0,
        ),
        "label_lag": pts.label_lag(**common, p50_s=1.0, p95_s=2.0, coverage=0.1, window_start=0),
        "change_points": pts.change_points(
            **common,
            segment="all",
            detector="adwin",
            detections=1,
            first_at_s=60.0,
            n_labelled=10,
            is_final=False,
            window_start=0,
        ),
        "data_quality": pts.data_quality(
            **common,
            feature="f",
            missing_rate=0.0,
            out_of_range_rate=0.0,
            unseen_category_rate=0.0,
            window_start=0,
        ),
        "volume": pts.volume(
            **common,
            segment="all",
            predictions=1,
            labels=1,
            late_predictions=0,
            dead_letters=0,
            window_start=0,
        ),
        "alerts": pts.alerts(
            model_id="m",
            model_version="1",
            segment="all",
            feature=None,
            rule="r",
            severity="warning",
            state="resolved",
            value=1.0,
            summary="ok",
            time=0,
        ),
    }


def test_constructors_follow_the_design_layout() -> None:
    # Tag keys as DESIGN.md lists them ("InfluxDB layout"), typed out here.
    design_tags = {
        "feature_drift": {"model_id", "model_version", "segment", "feature", "method"},
        "prediction_drift": {"model_id", "model_version", "segment", "method"},
        "model_performance": {"model_id", "model_version", "segment", "metric"},
        "label_lag": {"model_id", "model_version"},
        # change_points is not in DESIGN's layout: its tags follow model_performance's.
        "change_points": {"model_id", "model_version", "segment", "detector"},
        "data_quality": {"model_id", "model_version", "feature"},
        "volume": {"model_id", "model_version", "segment"},
        # alerts extends DESIGN's tags with version, segment and feature: with only
        # rule/severity/state, alerts of one rule on several features in the same
        # window were one series and overwrote each other.
        "alerts": {"model_id", "model_version", "segment", "feature", "rule", "severity", "state"},
    }
    built = _every_measurement()
    assert built.keys() == MEASUREMENTS.keys() == design_tags.keys()
    for name, point in built.items():
        assert point.measurement == name
        assert {key for key, _ in point.tags} == design_tags[name]
        assert tuple(point.fields) == MEASUREMENTS[name]


def test_field_types_are_fixed_per_field() -> None:
    built = _every_measurement()
    types = {
        (name, key): type(value) for name, p in built.items() for key, value in p.fields.items()
    }
    ints = {"n_current", "n_reference", "n_labelled", "predictions", "labels"}
    ints |= {"late_predictions", "dead_letters", "detections"}
    for (_, key), kind in types.items():
        expected = (
            int
            if key in ints
            else bool
            if key in {"drifted", "is_final"}
            else str
            if key == "summary"
            else float
        )
        assert kind is expected, key


# ---------------------------------------------------------------------------
# parse-back
# ---------------------------------------------------------------------------


def test_reference_parser_reads_every_measurement_back() -> None:
    for point in _every_measurement().values():
        measurement, tags, fields, stamp = reference_parse(point.to_line_protocol())
        assert measurement == point.measurement
        assert tags == dict(point.tags)
        assert _same_values(fields, point.fields)
        assert stamp == point.time


def test_reference_parser_reads_escapes_back() -> None:
    line = (
        r"my\ measurement\,v2,a\=b=c\,d,zone=eu\ west "
        r'field\ key=1.5,s="back\\slash \"quoted\" = , space",n=-7i,ok=true 123'
    )
    assert reference_parse(line) == (
        "my measurement,v2",
        {"a=b": "c,d", "zone": "eu west"},
        {"field key": 1.5, "s": 'back\\slash "quoted" = , space', "n": -7, "ok": True},
        123,
    )
    assert parse_line(line) == Point(
        "my measurement,v2",
        (("a=b", "c,d"), ("zone", "eu west")),
        {"field key": 1.5, "s": 'back\\slash "quoted" = , space', "n": -7, "ok": True},
        123,
    )


names = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cc", "Cs"), exclude_characters="\\"),
    min_size=1,
    max_size=12,
)
field_values = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.booleans(),
    st.text(
        st.characters(codec="utf-8", exclude_characters="\r\n"),
        max_size=20,
    ),
)


@settings(max_examples=300)
@given(
    measurement=names.filter(lambda n: not n.startswith("#")),
    tags=st.dictionaries(names, names, max_size=4),
    fields=st.dictionaries(names, field_values, min_size=1, max_size=5),
    stamp=st.integers(min_value=-(2**62), max_value=2**62),
)
def test_any_point_reads_back(
    measurement: str, tags: dict[str, str], fields: dict[str, Any], stamp: int
) -> None:
    point = Point(measurement, tuple(tags.items()), fields, stamp)
    line = point.to_line_protocol()
    assert "\n" not in line
    got_measurement, got_tags, got_fields, got_stamp = reference_parse(line)
    assert (got_measurement, got_tags, got_stamp) == (measurement, tags, stamp)
    assert _same_values(got_fields, point.fields)
    assert parse_line(line) == point


def test_parse_line_protocol_skips_blanks_and_comments_and_names_bad_lines() -> None:
    text = "# written by driftline\n\nm a=1i 1\nm,t=x b=2.5 2\n"
    assert parse_line_protocol(text) == [
        Point("m", (), {"a": 1}, 1),
        Point("m", (("t", "x"),), {"b": 2.5}, 2),
    ]
    for bad, number in [
        ("m a=1i 1\nm a= 2\n", 2),
        ("m a=1i 1\nm\n", 2),
        ("m a=1i\n", 1),
        ('m s="open 3\n', 1),
        ("m,t a=1 3\n", 1),
        ("m a=yes 3\n", 1),
    ]:
        with pytest.raises(LineProtocolError) as caught:
            parse_line_protocol(bad)
        assert caught.value.line_number == number, bad
        assert str(caught.value).startswith(f"line {number}: ")


def test_latest_points_overwrites_like_influxdb() -> None:
    first = Point("m", (("k", "a"),), {"value": 0.5, "n": 10}, 5)
    other_series = Point("m", (("k", "b"),), {"value": 0.1}, 5)
    other_time = Point("m", (("k", "a"),), {"value": 0.2}, 6)
    correction = Point("m", (("k", "a"),), {"value": 0.75, "final": True}, 5)
    assert latest_points([first, other_series, other_time, correction]) == [
        Point("m", (("k", "a"),), {"value": 0.75, "n": 10, "final": True}, 5),
        other_series,
        other_time,
    ]


# ---------------------------------------------------------------------------
# times line protocol can carry, and the merger's windows outside them
# ---------------------------------------------------------------------------

# int64 nanoseconds: -9_223_372_036_854_775_808 .. 9_223_372_036_854_775_807, so in whole
# microseconds -9_223_372_036_854_775 .. 9_223_372_036_854_775 (to_epoch_ns excludes the ends)
_FIRST_US = -9_223_372_036_854_775
_LAST_US = 9_223_372_036_854_775


@pytest.mark.parametrize(
    ("epoch_us", "carried"),
    [
        (0, True),
        (_FIRST_US, True),
        (_FIRST_US - 1, False),
        (_LAST_US, True),
        (_LAST_US + 1, False),
        (-62_135_596_800_000_000, False),  # 0001-01-01T00:00:00Z
    ],
)
def test_carries_time_us_matches_what_to_epoch_ns_accepts(epoch_us: int, carried: bool) -> None:
    assert pts.carries_time_us(epoch_us) is carried
    if carried:
        assert pts.to_epoch_ns(epoch_us * 1_000) == epoch_us * 1_000
    else:
        with pytest.raises(ValueError, match="int64"):
            pts.to_epoch_ns(epoch_us * 1_000)


def _merger(clock: list[float]) -> WindowMerger:
    config = MonitorConfig.model_validate(
        {
            "models": [
                {
                    "id": "churn",
                    "task": "binary",
                    "reference": "ref.json",
                    "window": {"size": 60, "allowed_lateness": 10, "label_horizon": 600},
                    "features": [{"name": "x", "kind": "numeric"}],
                }
            ]
        }
    )
    return WindowMerger(config, lambda model, version: None, 1, clock=lambda: clock[0])


# 1500-01-01T00:00:00Z, by hand: 470 years of 365 days and 114 leap days before 1970
# (the 118 years 1500..1968 divisible by 4, less 1500, 1700, 1800 and 1900)
_ANCIENT_US = -(470 * 365 + 114) * 86_400 * 1_000_000


def test_the_merger_drops_windows_line_protocol_cannot_carry(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert datetime.fromtimestamp(_ANCIENT_US / 1e6, tz=UTC) == datetime(1500, 1, 1, tzinfo=UTC)
    clock = [0.0]
    merger = _merger(clock)
    ancient = WindowKey("churn", "1", "all", _ANCIENT_US)
    year_zero = WindowKey("churn", "1", "all", -62_135_596_800_000_000 - 3_600_000_000)
    caplog.set_level("WARNING", logger="streams.merger")
    merger.add_drift(0, DriftPartial(ancient, None, 5))
    merger.add_performance(0, PerformancePartial(ancient, b"not decoded", True))
    merger.add_late(0, {ancient: 2})
    merger.add_dead_letters(0, {year_zero: 1})
    merger.add_watermark(0, "churn", 10**12)
    assert merger.evaluate() == []  # and does not raise
    assert merger.dropped_windows == 4
    warnings = [r for r in caplog.records if "line protocol cannot carry" in r.getMessage()]
    assert len(warnings) == 1  # rate-limited: one per interval
    clock[0] = 61.0
    merger.add_late(0, {ancient: 3})
    assert merger.dropped_windows == 5
    warnings = [r for r in caplog.records if "line protocol cannot carry" in r.getMessage()]
    assert len(warnings) == 2
    # the three dropped after the first warning, and this one
    assert "dropped 4 partial(s)" in warnings[1].getMessage()
    assert "(5 in all)" in warnings[1].getMessage()


def test_the_merger_drops_restored_windows_line_protocol_cannot_carry() -> None:
    merger = _merger([0.0])
    ancient = WindowKey("churn", "1", "all", _ANCIENT_US).encode()
    future = WindowKey("churn", "1", "all", _LAST_US + 1).encode()
    merger.restore(
        {
            "drift": [[ancient, [[0, [None, 4]]]]],
            "performance": [[future, [[0, "not decoded", True]], True]],
            "late": [[ancient, [[0, 1]]]],
            "dead": [[future, [[0, 1]]]],
            "closed": [[ancient, 4, [0]]],
            "watermarks": {"churn": [[0, 10**12]]},
        }
    )
    assert merger.evaluate() == []
    assert merger.dropped_windows == 5
    assert merger.snapshot()["drift"] == []


def _volumes(out: list[Point]) -> list[tuple[int, dict[str, Any]]]:
    return [(p.time_ns, dict(p.fields)) for p in out if p.measurement == "volume"]


def test_a_window_with_only_refused_or_late_messages_gets_a_volume_point() -> None:
    merger = _merger([0.0])
    start_us = W0_NS // 1_000
    refused = WindowKey("churn", "1", "all", start_us)
    late = WindowKey("churn", "1", "all", start_us + 60_000_000)
    merger.add_dead_letters(0, {refused: 7})
    merger.add_late(0, {late: 3})
    # 60 s window + 10 s lateness: the late-only window closes at +130 s
    merger.add_watermark(0, "churn", start_us + 129_000_000)
    assert _volumes(merger.evaluate()) == [
        (
            W0_NS,
            {"predictions": 0, "labels": 0, "late_predictions": 0, "dead_letters": 7},
        )
    ]
    merger.add_watermark(0, "churn", start_us + 130_000_000)
    late_point = (
        W0_NS + 60 * 10**9,
        {"predictions": 0, "labels": 0, "late_predictions": 3, "dead_letters": 0},
    )
    assert _volumes(merger.evaluate()) == [late_point]
    assert merger.evaluate() == []  # written once ...
    merger.add_late(0, {late: 4})  # ... and again when a count changes
    assert _volumes(merger.evaluate()) == [
        (late_point[0], {**late_point[1], "late_predictions": 4})
    ]
    assert merger.evaluate() == []
