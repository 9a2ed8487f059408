"""Metric points and their InfluxDB line-protocol text (pure: no I/O).

A :class:`Point` is one row of a measurement: a name, sorted tags, typed
fields and a timestamp in epoch nanoseconds.  The constructors
(:func:`feature_drift`, :func:`model_performance`, …) build the points of the
DESIGN.md layout and check them against
:data:`schemas.vocabulary.MEASUREMENTS`; :meth:`Point.to_line_protocol` writes
one line, :func:`parse_line_protocol` reads lines back.

Line protocol, as written here
------------------------------
``measurement,tag=value,… field=value,… timestamp_ns``

* Measurement: ``,`` and space are escaped with a backslash.
* Tag keys, tag values, field keys: ``,``, ``=`` and space are escaped.
* String field values are double-quoted; ``"`` and ``\\`` inside are escaped.
* Integers carry an ``i`` suffix (``12i``), booleans are ``true``/``false``,
  floats are Python's shortest round-trip ``repr`` (``0.1``, ``1e-05``).

Decisions
---------
Non-finite floats
    NaN and ±inf have no line-protocol form.  A :class:`Point` may hold them
    (a detector may have no answer for a window, e.g. ROC AUC with one class),
    :meth:`Point.to_line_protocol` leaves such fields out, and
    :attr:`Point.non_finite_fields` names them so a sink can count them.  A
    point whose every field is non-finite has no line at all
    (:class:`EmptyPointError`); sinks drop it and count it.
Backslashes and control characters in names and tags
    InfluxDB 1.x keeps ``a\\\\b`` in a tag as two backslashes, VictoriaMetrics
    reads it as one, and a trailing backslash makes InfluxDB refuse the line
    and VictoriaMetrics skip it silently; a line break cannot be carried at
    all.  :class:`Point` therefore refuses backslashes and control characters
    in measurement names, tag keys, tag values and field keys.  The
    measurement constructors, whose tag values come from data (segments,
    feature names), replace a backslash with ``/`` and a control character
    with a space first, so every tag reads back the same from both servers.
Line breaks in string fields
    VictoriaMetrics silently skips a line whose string field holds a line
    break (numeric fields included), so :class:`Point` refuses them;
    :func:`alerts` turns line breaks in the summary into spaces.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, SupportsIndex

import numpy as np

from schemas.vocabulary import MEASUREMENTS

FieldValue = float | int | bool | str
"""Types a field can hold (bool before int: bool is a subclass of int)."""

Number = float | int | np.floating[Any] | np.integer[Any]
"""A float field's argument: Python or numpy numbers (not bools)."""
Count = int | np.integer[Any]
"""An integer field's argument: a count >= 0."""
Flag = bool | np.bool_
"""A boolean field's argument."""

TAGS: Final[Mapping[str, tuple[str, ...]]] = {
    "feature_drift": ("model_id", "model_version", "segment", "feature", "method"),
    "prediction_drift": ("model_id", "model_version", "segment", "method"),
    "model_performance": ("model_id", "model_version", "segment", "metric"),
    "label_lag": ("model_id", "model_version"),
    "change_points": ("model_id", "model_version", "segment", "detector"),
    "data_quality": ("model_id", "model_version", "feature"),
    "volume": ("model_id", "model_version", "segment"),
    "alerts": ("model_id", "model_version", "segment", "feature", "rule", "severity", "state"),
}
"""Tag keys of every measurement (DESIGN.md, "InfluxDB layout")."""

INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
MAX_STRING_BYTES: Final = 65_535
"""Longest string field value InfluxDB accepts, in UTF-8 bytes."""

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_NS_PER_S: Final = 1_000_000_000
_NAME_FORBIDDEN = re.compile(r"[\\\x00-\x1f\x7f]")
_TAG_REPLACE = re.compile(r"[\x00-\x1f\x7f]")
_MEASUREMENT_ESCAPES: Final = str.maketrans({",": "\\,", " ": "\\ "})
_KEY_ESCAPES: Final = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ "})
_STRING_ESCAPES: Final = str.maketrans({"\\": "\\\\", '"': '\\"'})


class EmptyPointError(ValueError):
    """A point has no field that line protocol can carry (all are NaN or ±inf)."""


class LineProtocolError(ValueError):
    """Line protocol that cannot be parsed.

    Parameters
    ----------
    reason
        What is wrong.
    line_number
        1-based number of the line in its text, when known.
    source
        The file it came from, when known.
    """

    def __init__(
        self, reason: str, line_number: int | None = None, source: str | None = None
    ) -> None:
        self.reason = reason
        self.line_number = line_number
        self.source = source
        where = [source] if source else []
        if line_number is not None:
            where.append(f"line {line_number}")
        super().__init__(f"{', '.join(where)}: {reason}" if where else reason)


def carries_time_us(epoch_us: int) -> bool:
    """Whether a time in epoch microseconds is one line protocol can carry.

    Line protocol times are int64 nanoseconds: from 1677-09-21T00:12:43.145224193Z
    to 2262-04-11T23:47:16.854775806Z (the bounds :func:`to_epoch_ns` accepts).

    Examples
    --------
    >>> carries_time_us(0)
    True
    >>> carries_time_us(-9_223_372_036_854_776)  # 1677-09-21T00:12:43.145224Z
    False
    >>> carries_time_us(-9_223_372_036_854_775)
    True
    """
    return INT64_MIN < epoch_us * 1_000 < INT64_MAX


def to_epoch_ns(when: datetime | int) -> int:
    """Return a time as integer nanoseconds since the Unix epoch.

    Parameters
    ----------
    when
        A timezone-aware :class:`~datetime.datetime`, or epoch nanoseconds.

    Returns
    -------
    int
        Nanoseconds since 1970-01-01T00:00:00Z (exact: no float rounding).

    Raises
    ------
    ValueError
        For a naive datetime or a time outside InfluxDB's int64 range.

    Examples
    --------
    >>> to_epoch_ns(datetime(2024, 1, 1, 1, tzinfo=UTC))
    1704070800000000000
    >>> to_epoch_ns(1_700_000_000_123_456_789)
    1700000000123456789
    """
    if isinstance(when, datetime):
        if when.tzinfo is None or when.utcoffset() is None:
            raise ValueError(
                f"time {when.isoformat()} has no timezone; pass an aware datetime (UTC) "
                "or epoch nanoseconds"
            )
        delta = when - _EPOCH
        ns = (delta.days * 86_400 + delta.seconds) * _NS_PER_S + delta.microseconds * 1_000
    elif isinstance(when, int | np.integer) and not isinstance(when, bool):
        ns = int(when)
    else:
        raise ValueError(
            f"time must be an aware datetime or epoch nanoseconds (int), got {type(when).__name__}"
        )
    if not INT64_MIN < ns < INT64_MAX:
        raise ValueError(f"time {ns} ns is outside the int64 range line protocol can carry")
    return ns


def from_epoch_ns(ns: int) -> datetime:
    """Return epoch nanoseconds as a UTC datetime (truncated to microseconds).

    Examples
    --------
    >>> from_epoch_ns(1704070800000000000).isoformat()
    '2024-01-01T01:00:00+00:00'
    """
    return _EPOCH + timedelta(microseconds=ns // 1_000)


def _check_name(kind: str, name: object) -> str:
    if not isinstance(name, str) or not name:
        raise ValueError(f"{kind} must be a non-empty string, got {name!r}")
    if _NAME_FORBIDDEN.search(name):
        raise ValueError(
            f"{kind} {name!r} contains a backslash or a control character, which line "
            "protocol cannot carry the same way to InfluxDB and VictoriaMetrics"
        )
    return name


def _check_field_value(key: str, value: object) -> FieldValue:
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        number = int(value)
        if not INT64_MIN <= number <= INT64_MAX:
            raise ValueError(f"integer field {key!r}={number} is outside the int64 range")
        return number
    if isinstance(value, float | np.floating):
        return float(value)
    if isinstance(value, str):
        if "\n" in value or "\r" in value:
            raise ValueError(
                f"string field {key!r} contains a line break, which VictoriaMetrics "
                "would skip silently; replace it before building the point"
            )
        if len(value.encode("utf-8")) > MAX_STRING_BYTES:
            raise ValueError(f"string field {key!r} is longer than {MAX_STRING_BYTES} bytes")
        return value
    raise ValueError(f"field {key!r} must be a float, int, bool or str, got {type(value).__name__}")


def _format_field(value: FieldValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        return repr(value)
    return '"' + value.translate(_STRING_ESCAPES) + '"'


def _is_finite(value: FieldValue) -> bool:
    return not isinstance(value, float) or math.isfinite(value)


@dataclass(frozen=True)
class Point:
    """One row of a measurement, ready for line protocol.

    Parameters
    ----------
    measurement
        Measurement name.
    tags
        ``(key, value)`` pairs; stored sorted by key, keys unique, values
        non-empty.
    fields
        Field name to value (float, int, bool or str), at least one; numpy
        scalars become plain Python values.  NaN and ±inf are kept but not
        written (see :attr:`non_finite_fields`).
    time
        Aware datetime or epoch nanoseconds; stored as epoch nanoseconds.

    Raises
    ------
    ValueError
        Naming the offending part, for anything line protocol cannot carry.

    Examples
    --------
    >>> point = Point(
    ...     "volume", (("segment", "region=eu"), ("model_id", "churn")),
    ...     {"predictions": 120, "rate": 0.5, "final": True, "note": 'say "hi"'},
    ...     datetime(2024, 1, 1, tzinfo=UTC),
    ... )
    >>> point.tags
    (('model_id', 'churn'), ('segment', 'region=eu'))
    >>> print(point.to_line_protocol())
    volume,model_id=churn,segment=region\\=eu predictions=120i,rate=0.5,final=true,note="say \\"hi\\"" 1704067200000000000
    """  # noqa: E501

    measurement: str
    tags: tuple[tuple[str, str], ...]
    fields: dict[str, FieldValue] = field(hash=False)
    time: datetime | int

    def __post_init__(self) -> None:
        measurement = _check_name("measurement", self.measurement)
        if measurement.startswith("#"):
            raise ValueError(f"measurement {measurement!r} starts with '#' (a comment line)")
        for key, value in self.tags:
            _check_name("tag key", key)
            _check_name(f"value of tag {key!r}", value)
        tags = tuple(sorted(self.tags))
        keys = [key for key, _ in tags]
        if len(set(keys)) != len(keys):
            raise ValueError(f"tag keys of {measurement!r} repeat: {keys}")
        if not self.fields:
            raise ValueError(f"point of {measurement!r} has no fields")
        fields = {
            _check_name("field key", key): _check_field_value(key, value)
            for key, value in self.fields.items()
        }
        object.__setattr__(self, "tags", tags)
        object.__setattr__(self, "fields", fields)
        object.__setattr__(self, "time", to_epoch_ns(self.time))

    @property
    def time_ns(self) -> int:
        """Timestamp in epoch nanoseconds."""
        return to_epoch_ns(self.time)

    @property
    def non_finite_fields(self) -> tuple[str, ...]:
        """Names of the fields holding NaN or ±inf, which are not written.

        Examples
        --------
        >>> Point("m", (), {"a": 1.0, "b": float("nan")}, 0).non_finite_fields
        ('b',)
        """
        return tuple(key for key, value in self.fields.items() if not _is_finite(value))

    @property
    def series_key(self) -> tuple[str, tuple[tuple[str, str], ...]]:
        """``(measurement, tags)``: what identifies the series in InfluxDB."""
        return self.measurement, self.tags

    def to_line_protocol(self) -> str:
        """Return the point as one line of line protocol (no trailing newline).

        Non-finite float fields are left out.

        Raises
        ------
        EmptyPointError
            When every field is NaN or ±inf.

        Examples
        --------
        >>> Point("m", (("k", "a b"),), {"x": 2, "y": float("inf")}, 5).to_line_protocol()
        'm,k=a\\\\ b x=2i 5'
        """
        parts = [self.measurement.translate(_MEASUREMENT_ESCAPES)]
        parts.extend(
            f"{key.translate(_KEY_ESCAPES)}={value.translate(_KEY_ESCAPES)}"
            for key, value in self.tags
        )
        fields = ",".join(
            f"{key.translate(_KEY_ESCAPES)}={_format_field(value)}"
            for key, value in self.fields.items()
            if _is_finite(value)
        )
        if not fields:
            raise EmptyPointError(
                f"every field of this {self.measurement!r} point is NaN or infinite: "
                f"{sorted(self.fields)}"
            )
        return f"{','.join(parts)} {fields} {self.time_ns}"


# ---------------------------------------------------------------------------
# parsing
# ---------------------------------------------------------------------------

_TRUE: Final = frozenset({"t", "T", "true", "True", "TRUE"})
_FALSE: Final = frozenset({"f", "F", "false", "False", "FALSE"})


def _scan(line: str, start: int, stops: str, escapable: str) -> tuple[str, int]:
    """Read an escaped token from ``start`` up to an unescaped char of ``stops``."""
    out: list[str] = []
    i, end = start, len(line)
    while i < end:
        char = line[i]
        if char == "\\" and i + 1 < end and line[i + 1] in escapable:
            out.append(line[i + 1])
            i += 2
            continue
        if char in stops:
            break
        out.append(char)
        i += 1
    return "".join(out), i


def _parse_value(line: str, start: int) -> tuple[FieldValue, int]:
    if start < len(line) and line[start] == '"':
        out: list[str] = []
        i = start + 1
        while i < len(line):
            char = line[i]
            if char == "\\" and i + 1 < len(line) and line[i + 1] in '"\\':
                out.append(line[i + 1])
                i += 2
            elif char == '"':
                return "".join(out), i + 1
            else:
                out.append(char)
                i += 1
        raise ValueError("string field value has no closing quote")
    raw, i = _scan(line, start, ", ", "")
    if raw in _TRUE:
        return True, i
    if raw in _FALSE:
        return False, i
    if "_" in raw:
        raise ValueError(f"field value {raw!r} is not a number, boolean or string")
    if raw.endswith(("i", "u")) and raw[:-1].lstrip("-").isdigit():
        return int(raw[:-1]), i
    try:
        return float(raw), i
    except ValueError:
        raise ValueError(f"field value {raw!r} is not a number, boolean or string") from None


def parse_line(line: str) -> Point:
    """Parse one line of line protocol (with a timestamp in nanoseconds).

    Parameters
    ----------
    line
        The line, without its newline.

    Returns
    -------
    Point
        The point.

    Raises
    ------
    LineProtocolError
        Saying what is wrong.

    Examples
    --------
    >>> point = parse_line('alerts,rule=a\\\\ b s="x \\\\"y\\\\"",v=1.5 7')
    >>> point.tags, point.fields, point.time
    ((('rule', 'a b'),), {'s': 'x "y"', 'v': 1.5}, 7)
    """
    try:
        measurement, i = _scan(line, 0, ", ", ", ")
        tags: list[tuple[str, str]] = []
        while i < len(line) and line[i] == ",":
            key, i = _scan(line, i + 1, ",= ", ",= ")
            if i >= len(line) or line[i] != "=":
                raise ValueError(f"tag {key!r} has no '='")
            value, i = _scan(line, i + 1, ", ", ",= ")
            tags.append((key, value))
        if i >= len(line) or line[i] != " ":
            raise ValueError("no field set")
        fields: dict[str, FieldValue] = {}
        i += 1
        while True:
            key, i = _scan(line, i, ",= ", ",= ")
            if i >= len(line) or line[i] != "=":
                raise ValueError(f"field {key!r} has no '='")
            fields[key], i = _parse_value(line, i + 1)
            if i < len(line) and line[i] == ",":
                i += 1
                continue
            break
        rest = line[i:]
        if not rest.startswith(" ") or not rest[1:].lstrip("-").isdigit():
            raise ValueError(f"expected ' <timestamp ns>' after the fields, got {rest!r}")
        return Point(measurement, tuple(tags), fields, int(rest[1:]))
    except ValueError as exc:
        raise LineProtocolError(f"{exc} in {line[:200]!r}") from None


def parse_line_protocol(text: str) -> list[Point]:
    """Parse line protocol text; blank lines and ``#`` comments are skipped.

    Parameters
    ----------
    text
        Lines separated by ``\\n``.

    Returns
    -------
    list of Point
        In text order.

    Raises
    ------
    LineProtocolError
        With the 1-based line number of the first bad line.

    Examples
    --------
    >>> [p.fields for p in parse_line_protocol("m a=1i 1\\n\\n# note\\nm a=2i 2\\n")]
    [{'a': 1}, {'a': 2}]
    """
    points: list[Point] = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            points.append(parse_line(line.rstrip("\r")))
        except LineProtocolError as exc:
            raise LineProtocolError(exc.reason, number) from None
    return points


def latest_points(points: Iterable[Point]) -> list[Point]:
    """Merge points the way InfluxDB stores them: same series and time overwrite.

    Two points with the same measurement, tags and timestamp are one row;
    fields of the later one replace those of the earlier one, other fields
    stay.  Use this on what :func:`parse_line_protocol` returns to see what a
    database would hold (performance windows are re-emitted with corrections).

    Parameters
    ----------
    points
        Points in write order.

    Returns
    -------
    list of Point
        One point per (series, time), in order of first appearance.

    Examples
    --------
    >>> rows = latest_points([
    ...     Point("m", (), {"value": 0.5, "n": 10}, 0),
    ...     Point("m", (), {"value": 0.75}, 0),
    ... ])
    >>> [row.fields for row in rows]
    [{'value': 0.75, 'n': 10}]
    """
    merged: dict[tuple[str, tuple[tuple[str, str], ...], int], Point] = {}
    for point in points:
        key = (point.measurement, point.tags, point.time_ns)
        earlier = merged.get(key)
        if earlier is None:
            merged[key] = point
        else:
            merged[key] = Point(
                point.measurement, point.tags, {**earlier.fields, **point.fields}, point.time_ns
            )
    return list(merged.values())


# ---------------------------------------------------------------------------
# the measurements of the DESIGN layout
# ---------------------------------------------------------------------------


def clean_tag_value(value: str) -> str:
    """Make text from data safe as a tag value (see the module notes).

    A backslash becomes ``/`` and a control character a space.

    Examples
    --------
    >>> clean_tag_value("C:\\\\tmp\\nx")
    'C:/tmp x'
    """
    return _TAG_REPLACE.sub(" ", value.replace("\\", "/"))


def _tag(name: str, value: object) -> tuple[str, str]:
    if not isinstance(value, str):
        raise ValueError(f"tag {name} must be a string, got {type(value).__name__}")
    if not value:
        raise ValueError(f"tag {name} must be a non-empty string")
    return name, clean_tag_value(value)


def _float(name: str, value: object) -> float:
    if isinstance(value, bool | np.bool_) or not isinstance(
        value, float | int | np.floating | np.integer
    ):
        raise ValueError(f"field {name} must be a number, got {type(value).__name__}")
    return float(value)


def _optional_float(name: str, value: object) -> float | None:
    return None if value is None else _float(name, value)


def _count(name: str, value: object) -> int:
    if isinstance(value, bool | np.bool_) or not isinstance(value, SupportsIndex):
        raise ValueError(f"field {name} must be an integer count, got {type(value).__name__}")
    count = operator.index(value)
    if count < 0:
        raise ValueError(f"field {name} must be >= 0, got {count}")
    return count


def _flag(name: str, value: object) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise ValueError(f"field {name} must be a bool, got {type(value).__name__}")
    return bool(value)


def _measurement_point(
    measurement: str,
    tags: list[tuple[str, str]],
    fields: dict[str, FieldValue | None],
    time: datetime | int,
) -> Point:
    """Build a point and check it against the layout (tags) and vocabulary (fields)."""
    if tuple(name for name, _ in tags) != TAGS[measurement]:
        raise ValueError(f"{measurement} tags must be {TAGS[measurement]}")
    if tuple(fields) != MEASUREMENTS[measurement]:
        raise ValueError(
            f"{measurement} fields must be {MEASUREMENTS[measurement]}, got {tuple(fields)}"
        )
    present = {key: value for key, value in fields.items() if value is not None}
    return Point(measurement, tuple(tags), present, time)


def _drift_fields(
    statistic: Number,
    p_value: Number | None,
    threshold: Number,
    drifted: Flag,
    n_current: Count,
    n_reference: Count,
) -> dict[str, FieldValue | None]:
    return {
        "statistic": _float("statistic", statistic),
        "p_value": _optional_float("p_value", p_value),
        "threshold": _float("threshold", threshold),
        "drifted": _flag("drifted", drifted),
        "n_current": _count("n_current", n_current),
        "n_reference": _count("n_reference", n_reference),
    }


def feature_drift(
    *,
    model_id: str,
    model_version: str,
    segment: str,
    feature: str,
    method: str,
    statistic: Number,
    p_value: Number | None,
    threshold: Number,
    drifted: Flag,
    n_current: Count,
    n_reference: Count,
    window_start: datetime | int,
) -> Point:
    """A ``feature_drift`` point: one drift test of one feature in one window.

    ``p_value`` is None for tests without one (PSI, Wasserstein, …) and is
    then not written.

    Examples
    --------
    >>> print(feature_drift(
    ...     model_id="churn", model_version="3", segment="all", feature="age", method="psi",
    ...     statistic=0.25, p_value=None, threshold=0.2, drifted=True, n_current=500,
    ...     n_reference=10000, window_start=datetime(2024, 1, 1, tzinfo=UTC),
    ... ).to_line_protocol())
    feature_drift,feature=age,method=psi,model_id=churn,model_version=3,segment=all statistic=0.25,threshold=0.2,drifted=true,n_current=500i,n_reference=10000i 1704067200000000000
    """  # noqa: E501
    tags = [
        _tag("model_id", model_id),
        _tag("model_version", model_version),
        _tag("segment", segment),
        _tag("feature", feature),
        _tag("method", method),
    ]
    fields = _drift_fields(statistic, p_value, threshold, drifted, n_current, n_reference)
    return _measurement_point("feature_drift", tags, fields, window_start)


def prediction_drift(
    *,
    model_id: str,
    model_version: str,
    segment: str,
    method: str,
    statistic: Number,
    p_value: Number | None,
    threshold: Number,
    drifted: Flag,
    n_current: Count,
    n_reference: Count,
    window_start: datetime | int,
) -> Point:
    """A ``prediction_drift`` point: one drift test of the predictions or scores.

    Examples
    --------
    >>> prediction_drift(
    ...     model_id="churn", model_version="3", segment="all", method="ks", statistic=0.1,
    ...     p_value=0.02, threshold=0.05, drifted=True, n_current=10, n_reference=20,
    ...     window_start=0,
    ... ).fields["p_value"]
    0.02
    """
    tags = [
        _tag("model_id", model_id),
        _tag("model_version", model_version),
        _tag("segment", segment),
        _tag("method", method),
    ]
    fields = _drift_fields(statistic, p_value, threshold, drifted, n_current, n_reference)
    return _measurement_point("prediction_drift", tags, fields, window_start)


def model_performance(
    *,
    model_id: str,
    model_version: str,
    segment: str,
    metric: str,
    value: Number,
    n_labelled: Count,
    coverage: Number,
    is_final: Flag,
    window_start: datetime | int,
) -> Point:
    """A ``model_performance`` point: one metric of one window, as labelled so far.

    Re-emitted with the same tags and ``window_start`` as labels arrive, so
    the stored row is updated in place.  A NaN ``value`` (metric undefined,
    e.g. ROC AUC with one class) is not written; the other fields are.

    Examples
    --------
    >>> print(model_performance(
    ...     model_id="churn", model_version="3", segment="all", metric="f1", value=0.8125,
    ...     n_labelled=96, coverage=0.75, is_final=False, window_start=3_600_000_000_000,
    ... ).to_line_protocol())
    model_performance,metric=f1,model_id=churn,model_version=3,segment=all value=0.8125,n_labelled=96i,coverage=0.75,is_final=false 3600000000000
    """  # noqa: E501
    tags = [
        _tag("model_id", model_id),
        _tag("model_version", model_version),
        _tag("segment", segment),
        _tag("metric", metric),
    ]
    fields: dict[str, FieldValue | None] = {
        "value": _float("value", value),
        "n_labelled": _count("n_labelled", n_labelled),
        "coverage": _float("coverage", coverage),
        "is_final": _flag("is_final", is_final),
    }
    return _measurement_point("model_performance", tags, fields, window_start)


def change_points(
    *,
    model_id: str,
    model_version: str,
    segment: str,
    detector: str,
    detections: Count,
    first_at_s: Number,
    n_labelled: Count,
    is_final: Flag,
    window_start: datetime | int,
) -> Point:
    """A ``change_points`` point: what a change detector found inside one window.

    ``first_at_s`` is where in the window (seconds after its start, the end
    of the slice) the detector first signalled, and −1 when it did not: the
    point is re-written in place as labels join, like ``model_performance``,
    and a field left out would keep an earlier signal's value.

    Examples
    --------
    >>> print(change_points(
    ...     model_id="churn", model_version="3", segment="all", detector="adwin", detections=2,
    ...     first_at_s=1860.0, n_labelled=960, is_final=False, window_start=0,
    ... ).to_line_protocol())
    change_points,detector=adwin,model_id=churn,model_version=3,segment=all detections=2i,first_at_s=1860.0,n_labelled=960i,is_final=false 0
    """  # noqa: E501
    tags = [
        _tag("model_id", model_id),
        _tag("model_version", model_version),
        _tag("segment", segment),
        _tag("detector", detector),
    ]
    fields: dict[str, FieldValue | None] = {
        "detections": _count("detections", detections),
        "first_at_s": _float("first_at_s", first_at_s),
        "n_labelled": _count("n_labelled", n_labelled),
        "is_final": _flag("is_final", is_final),
    }
    return _measurement_point("change_points", tags, fields, window_start)


def label_lag(
    *,
    model_id: str,
    model_version: str,
    p50_s: Number | None,
    p95_s: Number | None,
    coverage: Number,
    window_start: datetime | int,
) -> Point:
    """A ``label_lag`` point: label delay percentiles (seconds) and label coverage.

    The percentiles are None (not written) while no label has arrived.

    Examples
    --------
    >>> label_lag(
    ...     model_id="churn", model_version="3", p50_s=None, p95_s=None, coverage=0.0,
    ...     window_start=0,
    ... ).to_line_protocol()
    'label_lag,model_id=churn,model_version=3 coverage=0.0 0'
    """
    tags = [_tag("model_id", model_id), _tag("model_version", model_version)]
    fields: dict[str, FieldValue | None] = {
        "p50_s": _optional_float("p50_s", p50_s),
        "p95_s": _optional_float("p95_s", p95_s),
        "coverage": _float("coverage", coverage),
    }
    return _measurement_point("label_lag", tags, fields, window_start)


def data_quality(
    *,
    model_id: str,
    model_version: str,
    feature: str,
    missing_rate: Number,
    out_of_range_rate: Number | None,
    unseen_category_rate: Number | None,
    window_start: datetime | int,
) -> Point:
    """A ``data_quality`` point for one feature in one window.

    ``out_of_range_rate`` applies to numeric features and
    ``unseen_category_rate`` to categorical ones; the other is None and not
    written.

    Examples
    --------
    >>> data_quality(
    ...     model_id="churn", model_version="3", feature="plan", missing_rate=0.5,
    ...     out_of_range_rate=None, unseen_category_rate=0.125, window_start=0,
    ... ).to_line_protocol()
    'data_quality,feature=plan,model_id=churn,model_version=3 missing_rate=0.5,unseen_category_rate=0.125 0'
    """  # noqa: E501
    tags = [
        _tag("model_id", model_id),
        _tag("model_version", model_version),
        _tag("feature", feature),
    ]
    fields: dict[str, FieldValue | None] = {
        "missing_rate": _float("missing_rate", missing_rate),
        "out_of_range_rate": _optional_float("out_of_range_rate", out_of_range_rate),
        "unseen_category_rate": _optional_float("unseen_category_rate", unseen_category_rate),
    }
    return _measurement_point("data_quality", tags, fields, window_start)


def volume(
    *,
    model_id: str,
    model_version: str,
    segment: str,
    predictions: Count,
    labels: Count,
    late_predictions: Count,
    dead_letters: Count,
    window_start: datetime | int,
) -> Point:
    """A ``volume`` point: event counts of one window.

    Examples
    --------
    >>> volume(
    ...     model_id="churn", model_version="3", segment="all", predictions=1000,
    ...     labels=640, late_predictions=3, dead_letters=0, window_start=0,
    ... ).to_line_protocol()
    'volume,model_id=churn,model_version=3,segment=all predictions=1000i,labels=640i,late_predictions=3i,dead_letters=0i 0'
    """  # noqa: E501
    tags = [
        _tag("model_id", model_id),
        _tag("model_version", model_version),
        _tag("segment", segment),
    ]
    fields: dict[str, FieldValue | None] = {
        "predictions": _count("predictions", predictions),
        "labels": _count("labels", labels),
        "late_predictions": _count("late_predictions", late_predictions),
        "dead_letters": _count("dead_letters", dead_letters),
    }
    return _measurement_point("volume", tags, fields, window_start)


def alerts(
    *,
    model_id: str,
    model_version: str,
    segment: str,
    feature: str | None,
    rule: str,
    severity: str,
    state: str,
    value: Number | None,
    summary: str,
    time: datetime | int,
) -> Point:
    """An ``alerts`` point: an alert firing or resolving.

    Line breaks in ``summary`` become spaces (see the module notes);
    ``value`` is None (not written) when the alert carries no number. The
    version, segment and feature are tags (``feature=-`` when the alert is not
    about one feature) so alerts of one rule on several features or segments in
    the same window stay separate series instead of overwriting each other.

    Examples
    --------
    >>> alerts(
    ...     model_id="churn", model_version="3", segment="all", feature=None,
    ...     rule="f1 drop", severity="critical", state="firing",
    ...     value=0.61, summary='f1 0.61 < 0.7\\nsee "runbook"', time=0,
    ... ).to_line_protocol()
    'alerts,feature=-,model_id=churn,model_version=3,rule=f1\\\\ drop,segment=all,severity=critical,state=firing value=0.61,summary="f1 0.61 < 0.7 see \\\\"runbook\\\\"" 0'
    """  # noqa: E501
    if not isinstance(summary, str):
        raise ValueError(f"field summary must be a string, got {type(summary).__name__}")
    tags = [
        _tag("model_id", model_id),
        _tag("model_version", model_version),
        _tag("segment", segment),
        _tag("feature", "-" if feature is None else feature),
        _tag("rule", rule),
        _tag("severity", severity),
        _tag("state", state),
    ]
    fields: dict[str, FieldValue | None] = {
        "value": _optional_float("value", value),
        "summary": re.sub(r"\r\n|\r|\n", " ", summary),
    }
    return _measurement_point("alerts", tags, fields, time)
