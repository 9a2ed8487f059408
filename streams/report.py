"""``driftline report``: plots of drift, performance and alerts from the time-series store.

The report reads the points a worker wrote — the file sink's line protocol
(``DRIFTLINE_DATA_DIR/metrics.lp``) or InfluxDB through its InfluxQL
``/query`` endpoint (InfluxDB 1.x, and InfluxDB 2 with a DBRP mapping) — and
writes, per model, version and segment, up to three PNG images and one
self-contained HTML page that embeds them:

* ``…-overview.png``: the alerts, the drift test that shows the drift best,
  performance and label coverage, in one image;
* ``…-drift.png``: one panel per drift test, the quantity the test decides on
  (the statistic, or the p-value for KS and χ²) per feature and window, the
  threshold as a dashed line and the drift side of it shaded;
* ``…-performance.png``: each metric per window as labels arrived — the
  value first emitted (hollow) and the final, corrected one (filled), joined
  by a line — and the label coverage of each window;
* both with the alerts on top: one row per rule and feature, coloured by
  severity while firing, and a dotted line through the panels where one
  fired.

Late-label corrections
    The file sink keeps every write, so a performance point re-emitted as
    labels arrived appears once per write at the same series and timestamp;
    :func:`performance_windows` keeps the first written value and the final
    one.  InfluxDB keeps only the final row, so a report made from it shows
    the final values and no corrections.

Reading (:func:`read_file_store`, :func:`read_influx_store`), aggregation
(:func:`build_report`, pure) and drawing (:func:`write_report`) are separate.
The drawing uses matplotlib's figures on the Agg canvas directly: no pyplot
state, no display.
"""

from __future__ import annotations

import base64
import hashlib
import html
import itertools
import json
import math
import re
import urllib.error
import urllib.parse
import urllib.request
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import astuple, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import matplotlib
import matplotlib.dates as mdates
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from detectors.registry import METHODS
from schemas.config import parse_duration
from streams.points import (
    FieldValue,
    LineProtocolError,
    Point,
    from_epoch_ns,
    latest_points,
    to_epoch_ns,
)
from streams.sink import METRICS_FILE_NAME, read_line_protocol, redact_url

PREDICTION: Final = "(prediction)"
"""Name under which ``prediction_drift`` series appear next to the features."""

REPORT_MEASUREMENTS: Final = (
    "feature_drift",
    "prediction_drift",
    "model_performance",
    "volume",
    "alerts",
)
"""Measurements the report reads."""

P_VALUE_FLOOR: Final = 1e-12
"""p-values below this are drawn at it (a triangle marks them)."""

FIGURE_WIDTH_IN: Final = 12.0
DPI: Final = 100
"""Images are ``FIGURE_WIDTH_IN * DPI`` = 1200 pixels wide."""


class ReportError(RuntimeError):
    """The report cannot be made: no data, an unreachable store, an unreadable file."""


def parse_report_time(text: str, now: datetime | None = None) -> datetime:
    """Read ``--since``/``--until``: a time (RFC 3339, UTC when no offset) or a duration ago.

    Parameters
    ----------
    text
        ``2024-05-01T12:00:00Z``, ``2024-05-01``, or ``90m``, ``6h``, ``7d``
        (that long before ``now``).
    now
        The present, for durations (default: the clock).

    Raises
    ------
    ValueError
        Saying what is accepted.

    Examples
    --------
    >>> parse_report_time("2024-05-01T12:00:00+02:00").isoformat()
    '2024-05-01T10:00:00+00:00'
    >>> parse_report_time("2024-05-01").isoformat()
    '2024-05-01T00:00:00+00:00'
    >>> parse_report_time("6h", now=datetime(2024, 5, 1, 12, tzinfo=UTC)).isoformat()
    '2024-05-01T06:00:00+00:00'
    """
    try:
        ago = parse_duration(text.strip())
    except ValueError:
        ago = None
    if isinstance(ago, timedelta):
        return (now or datetime.now(UTC)) - ago
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a time (e.g. 2024-05-01T12:00:00Z) nor a duration "
            "before now (e.g. 90m, 6h, 7d)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


# ---------------------------------------------------------------------------
# reading the store
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Selection:
    """Which points a report covers.

    Parameters
    ----------
    model_id
        Only this model (None: every model).
    since, until
        Only points with ``since <= time <= until`` (None: unbounded).
    """

    model_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def keeps(self, point: Point) -> bool:
        """Whether ``point`` is a report measurement within the selection."""
        if point.measurement not in REPORT_MEASUREMENTS:
            return False
        if self.model_id is not None and dict(point.tags).get("model_id") != self.model_id:
            return False
        if self.since is not None and point.time_ns < to_epoch_ns(self.since):
            return False
        return self.until is None or point.time_ns <= to_epoch_ns(self.until)

    def describe(self) -> str:
        """The selection in words, for messages."""
        parts = [f"model {self.model_id!r}" if self.model_id else "any model"]
        if self.since is not None:
            parts.append(f"since {self.since:%Y-%m-%d %H:%M:%S} UTC")
        if self.until is not None:
            parts.append(f"until {self.until:%Y-%m-%d %H:%M:%S} UTC")
        return ", ".join(parts)


@dataclass(frozen=True)
class StoreData:
    """Points read from a store.

    Attributes
    ----------
    points
        In write order for the file sink (every rewrite kept); one row per
        series and time for InfluxDB.
    source
        Where they came from, for the page (no credentials).
    keeps_rewrites
        Whether successive writes of a point are visible (file sink).
    selection
        The selection the points were read with.
    """

    points: tuple[Point, ...]
    source: str
    keeps_rewrites: bool
    selection: Selection = field(default_factory=Selection)


def read_file_store(path: Path, selection: Selection = Selection()) -> StoreData:
    """Read the file sink's line protocol.

    Parameters
    ----------
    path
        ``metrics.lp``, or the data directory holding it.
    selection
        Which points to keep.

    Raises
    ------
    ReportError
        When the file is missing or does not parse.
    """
    if path.is_dir() or (not path.exists() and path.suffix != ".lp"):
        path = path / METRICS_FILE_NAME
    if not path.exists():
        hint = ""
        demo = path.parent / "demo" / "data" / METRICS_FILE_NAME
        if demo.exists():
            hint = f"; `driftline demo` wrote its series to {demo}: use --data-dir {demo.parent}"
        raise ReportError(
            f"no time series at {path}: a worker writes it there when DRIFTLINE_INFLUX_URL is "
            f"unset; pass the worker's DRIFTLINE_DATA_DIR with --data-dir{hint}"
        )
    try:
        points = read_line_protocol(path)
    except LineProtocolError as exc:
        raise ReportError(f"cannot read the time series: {exc}") from None
    except OSError as exc:
        raise ReportError(f"cannot read {path}: {exc.strerror or exc}") from None
    kept = tuple(point for point in points if selection.keeps(point))
    return StoreData(kept, str(path), keeps_rewrites=True, selection=selection)


def _influxql_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def influxql_queries(selection: Selection) -> list[str]:
    """The InfluxQL statements reading the report measurements, one per measurement.

    Examples
    --------
    >>> print(influxql_queries(Selection(model_id="churn"))[0])
    SELECT * FROM "feature_drift" WHERE "model_id" = 'churn' GROUP BY *
    """
    conditions = []
    if selection.model_id is not None:
        conditions.append(f'"model_id" = {_influxql_string(selection.model_id)}')
    if selection.since is not None:
        conditions.append(f"time >= {to_epoch_ns(selection.since)}")
    if selection.until is not None:
        conditions.append(f"time <= {to_epoch_ns(selection.until)}")
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    return [
        f'SELECT * FROM "{measurement}"{where} GROUP BY *' for measurement in REPORT_MEASUREMENTS
    ]


def _influx_error(body: bytes) -> str:
    try:
        answer = json.loads(body)
    except ValueError:
        return body[:300].decode("utf-8", "replace").strip()
    if isinstance(answer, dict):
        for key in ("error", "message"):
            if isinstance(answer.get(key), str):
                return str(answer[key])
    return body[:300].decode("utf-8", "replace").strip()


def points_from_influxql(results: Sequence[Mapping[str, Any]]) -> list[Point]:
    """Points from the ``results`` of ``SELECT * … GROUP BY *`` queries (times in ns).

    Tags come from each series' ``tags`` (empty values dropped), fields from
    the non-null columns of each row.

    Examples
    --------
    >>> results = [{"statement_id": 0, "series": [{
    ...     "name": "volume", "tags": {"model_id": "churn", "segment": "all"},
    ...     "columns": ["time", "labels", "predictions"], "values": [[5, None, 12]]}]}]
    >>> [p.to_line_protocol() for p in points_from_influxql(results)]
    ['volume,model_id=churn,segment=all predictions=12i 5']
    """
    points: list[Point] = []
    for result in results:
        for series in result.get("series", []):
            if series.get("partial"):
                raise ReportError(
                    f"InfluxDB returned only part of {series.get('name')!r} (its row limit); "
                    "narrow the report with --since/--until or --model"
                )
            tags = tuple((k, v) for k, v in (series.get("tags") or {}).items() if v)
            columns = series["columns"]
            for row in series["values"]:
                values = dict(zip(columns, row, strict=True))
                time_ns = values.pop("time")
                fields: dict[str, FieldValue] = {
                    key: value for key, value in values.items() if value is not None
                }
                if fields:
                    points.append(Point(series["name"], tags, fields, int(time_ns)))
    return points


@dataclass(frozen=True)
class _InfluxQL:
    """``GET /query`` of one InfluxDB, answering the ``results`` of a statement."""

    url: str
    database: str
    token: str
    timeout_s: float

    @property
    def shown(self) -> str:
        return redact_url(self.url)

    def _request(self, statement: str) -> urllib.request.Request:
        parts = urllib.parse.urlsplit(self.url)
        host = parts.hostname or ""
        netloc = f"[{host}]" if ":" in host else host
        netloc += f":{parts.port}" if parts.port is not None else ""
        base = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
        query = urllib.parse.urlencode({"db": self.database, "q": statement, "epoch": "ns"})
        request = urllib.request.Request(
            f"{base}/query?{query}", headers={"Accept": "application/json"}
        )
        if self.token:
            request.add_header("Authorization", f"Token {self.token}")
        elif parts.username is not None:
            user = urllib.parse.unquote(parts.username)
            password = urllib.parse.unquote(parts.password or "")
            basic = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
            request.add_header("Authorization", f"Basic {basic}")
        return request

    def results(self, statement: str) -> list[dict[str, Any]]:
        try:
            with urllib.request.urlopen(
                self._request(statement), timeout=self.timeout_s
            ) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:
            message = _influx_error(exc.read())
            raise ReportError(
                f"InfluxDB at {self.shown} refused the report's query ({exc.code}): {message}"
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ReportError(f"cannot reach InfluxDB at {self.shown}: {reason}") from None
        try:
            answer = json.loads(body)
        except ValueError:
            raise ReportError(
                f"InfluxDB at {self.shown} answered something other than JSON"
            ) from None
        results: list[dict[str, Any]] = (
            answer.get("results", []) if isinstance(answer, dict) else []
        )
        for result in results:
            if "error" in result:
                error = str(result["error"])
                if "database not found" in error:
                    error += (
                        " (set DRIFTLINE_INFLUX_BUCKET to the database; on InfluxDB 2 the "
                        "bucket needs a DBRP mapping for InfluxQL)"
                    )
                raise ReportError(f"InfluxDB at {self.shown}: {error}")
        return results


def read_influx_store(
    url: str,
    database: str,
    token: str = "",
    selection: Selection = Selection(),
    *,
    timeout_s: float = 30.0,
) -> StoreData:
    """Read the report measurements from InfluxDB with InfluxQL (``GET /query``).

    One query per measurement: InfluxDB 1.x answers a missing database with
    "not executed" when several statements share a request.

    Parameters
    ----------
    url
        Base URL of InfluxDB (``http://host:8086``); ``user:password@`` in it
        is sent as HTTP basic authentication (InfluxDB 1.x), never shown.
    database
        Database (InfluxDB 1.x) or the bucket's DBRP database (InfluxDB 2).
    token
        Sent as ``Authorization: Token …`` when not empty (InfluxDB 2).
    selection
        Which points to read.
    timeout_s
        Seconds per request.

    Raises
    ------
    ReportError
        When the server cannot be reached or refuses a query.
    """
    influx = _InfluxQL(url, database, token, timeout_s)
    points: list[Point] = []
    for statement in influxql_queries(selection):
        points.extend(points_from_influxql(influx.results(statement)))
    kept = tuple(point for point in points if selection.keeps(point))
    return StoreData(kept, f"InfluxDB {influx.shown}, database {database}", False, selection)


# ---------------------------------------------------------------------------
# aggregation (pure)
# ---------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class GroupKey:
    """One model version and segment: one section of the report."""

    model_id: str
    model_version: str
    segment: str

    @property
    def title(self) -> str:
        """``churn v3, segment all``."""
        return f"{self.model_id} v{self.model_version}, segment {self.segment}"

    @property
    def slug(self) -> str:
        """A file-name-safe, unique name: ``churn-v3-all``.

        When characters had to be replaced, a short hash of the key keeps
        names that differ only in them apart.

        Examples
        --------
        >>> GroupKey("churn", "3", "all").slug, GroupKey("churn", "3", "eu west").slug
        ('churn-v3-all', 'churn-v3-eu_west-0ac654')
        """
        text = f"{self.model_id}-v{self.model_version}-{self.segment}"
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", text)
        if safe == text:
            return safe
        digest = hashlib.sha256("\x00".join(astuple(self)).encode()).hexdigest()
        return f"{safe}-{digest[:6]}"


@dataclass(frozen=True)
class DriftSample:
    """One drift test result of one window."""

    time_ns: int
    statistic: float
    p_value: float | None
    threshold: float | None
    drifted: bool


@dataclass(frozen=True)
class DriftSeries:
    """One feature (or the prediction) under one drift test, window by window."""

    feature: str
    method: str
    samples: tuple[DriftSample, ...]

    @property
    def uses_p_value(self) -> bool:
        """Whether the test decides on the p-value (KS, χ²) rather than the statistic."""
        method = METHODS.get(self.method)
        return method is not None and method.decision == "p_value_at_most"

    @property
    def ever_drifted(self) -> bool:
        """Whether any window drifted."""
        return any(sample.drifted for sample in self.samples)


@dataclass(frozen=True)
class PerformanceWindow:
    """One metric of one window: as first emitted and as finally corrected.

    Attributes
    ----------
    time_ns
        Window start.
    first_value, first_coverage
        The first written value and its label coverage (None when no write
        carried a value).
    final_value, final_coverage, n_labelled, is_final
        What the series holds after the last write.
    writes
        How many times the point was written (1 when the store keeps only the
        last write).
    """

    time_ns: int
    first_value: float | None
    first_coverage: float | None
    final_value: float | None
    final_coverage: float | None
    n_labelled: int | None
    is_final: bool
    writes: int

    @property
    def corrected(self) -> bool:
        """Whether later labels changed the value first emitted."""
        return (
            self.first_value is not None
            and self.final_value is not None
            and self.first_value != self.final_value
        )


@dataclass(frozen=True)
class PerformanceSeries:
    """One metric, window by window."""

    metric: str
    windows: tuple[PerformanceWindow, ...]


@dataclass(frozen=True)
class AlertMark:
    """An alert firing or resolving."""

    time_ns: int
    state: str
    rule: str
    severity: str
    feature: str
    value: float | None
    summary: str

    @property
    def subject(self) -> str:
        """``rule`` or ``rule: feature`` — one row of the alert timeline."""
        return self.rule if self.feature in ("", "-") else f"{self.rule}: {self.feature}"


@dataclass(frozen=True)
class VolumeSample:
    """Traffic of one window."""

    time_ns: int
    predictions: int
    late_predictions: int


@dataclass(frozen=True)
class GroupReport:
    """Everything the report shows for one model version and segment."""

    key: GroupKey
    drift: tuple[DriftSeries, ...] = ()
    performance: tuple[PerformanceSeries, ...] = ()
    alerts: tuple[AlertMark, ...] = ()
    volume: tuple[VolumeSample, ...] = ()

    def time_range_ns(self) -> tuple[int, int]:
        """First and last time of anything in the group."""
        times = [s.time_ns for series in self.drift for s in series.samples]
        times += [w.time_ns for series in self.performance for w in series.windows]
        times += [a.time_ns for a in self.alerts] + [v.time_ns for v in self.volume]
        return min(times), max(times)


@dataclass(frozen=True)
class ReportData:
    """The aggregated report: one :class:`GroupReport` per model, version and segment."""

    groups: tuple[GroupReport, ...]
    source: str
    keeps_rewrites: bool
    selection: Selection = field(default_factory=Selection)


def _number(value: FieldValue | None) -> float | None:
    if value is None or isinstance(value, bool | str):
        return None
    return float(value)


def _group_key(tags: Mapping[str, str]) -> GroupKey:
    return GroupKey(
        tags.get("model_id", "?"), tags.get("model_version", "?"), tags.get("segment", "all")
    )


SeriesKey = tuple[str, tuple[tuple[str, str], ...]]


def performance_windows(points: Iterable[Point]) -> dict[SeriesKey, list[PerformanceWindow]]:
    """First and final value of every ``model_performance`` point, per series.

    Writes of one series at one timestamp are successive versions of the same
    window (labels keep arriving); the first one that carries a ``value``
    gives ``first_value``, the fields merged over every write (the way
    InfluxDB stores them) give the final figures.

    Parameters
    ----------
    points
        Points in write order; other measurements are ignored.

    Returns
    -------
    dict
        ``(measurement, tags)`` to the windows of that series, by time.

    Examples
    --------
    >>> writes = [
    ...     Point("model_performance", (("metric", "f1"),), {"value": 0.5, "coverage": 0.1}, 0),
    ...     Point("model_performance", (("metric", "f1"),), {"value": 0.8, "coverage": 0.9}, 0),
    ... ]
    >>> [(w.first_value, w.final_value, w.writes) for w in performance_windows(writes)[
    ...     ("model_performance", (("metric", "f1"),))]]
    [(0.5, 0.8, 2)]
    """
    first: dict[tuple[SeriesKey, int], Point] = {}
    writes: dict[tuple[SeriesKey, int], int] = defaultdict(int)
    performance = [p for p in points if p.measurement == "model_performance"]
    for point in performance:
        key = (point.series_key, point.time_ns)
        writes[key] += 1
        if key not in first and "value" in point.fields:
            first[key] = point
    by_series: dict[SeriesKey, list[PerformanceWindow]] = defaultdict(list)
    for final in latest_points(performance):
        key = (final.series_key, final.time_ns)
        earliest = first.get(key)
        n_labelled = final.fields.get("n_labelled")
        by_series[final.series_key].append(
            PerformanceWindow(
                time_ns=final.time_ns,
                first_value=_number(earliest.fields.get("value")) if earliest else None,
                first_coverage=_number(earliest.fields.get("coverage")) if earliest else None,
                final_value=_number(final.fields.get("value")),
                final_coverage=_number(final.fields.get("coverage")),
                n_labelled=int(n_labelled) if isinstance(n_labelled, int | float) else None,
                is_final=final.fields.get("is_final") is True,
                writes=writes[key],
            )
        )
    for windows in by_series.values():
        windows.sort(key=lambda window: window.time_ns)
    return dict(by_series)


def build_report(
    store: StoreData, *, thresholds: Mapping[str, Mapping[str, float]] | None = None
) -> ReportData:
    """Aggregate the points of a store into the report's series.

    Parameters
    ----------
    store
        Points read by :func:`read_file_store` or :func:`read_influx_store`.
    thresholds
        Model id to method name to threshold (the configuration's
        ``drift.thresholds``), for drift points that carry none; otherwise the
        test's default.

    Raises
    ------
    ReportError
        When there is nothing to report.
    """
    thresholds = thresholds or {}
    rows = latest_points(store.points)
    drift: dict[GroupKey, dict[tuple[str, str], list[DriftSample]]] = defaultdict(
        lambda: defaultdict(list)
    )
    alerts: dict[GroupKey, list[AlertMark]] = defaultdict(list)
    volume: dict[GroupKey, list[VolumeSample]] = defaultdict(list)
    for point in rows:
        tags = dict(point.tags)
        group = _group_key(tags)
        fields = point.fields
        if point.measurement in ("feature_drift", "prediction_drift"):
            statistic = _number(fields.get("statistic"))
            if statistic is None:
                continue
            method = tags.get("method", "?")
            threshold = _number(fields.get("threshold"))
            if threshold is None:
                known = METHODS.get(method)
                configured = thresholds.get(group.model_id, {})
                threshold = configured.get(method, known.default_threshold if known else None)
            feature = (
                tags.get("feature", PREDICTION)
                if point.measurement == "feature_drift"
                else PREDICTION
            )
            drift[group][(feature, method)].append(
                DriftSample(
                    point.time_ns,
                    statistic,
                    _number(fields.get("p_value")),
                    threshold,
                    fields.get("drifted") is True,
                )
            )
        elif point.measurement == "alerts":
            alerts[group].append(
                AlertMark(
                    point.time_ns,
                    tags.get("state", "?"),
                    tags.get("rule", "?"),
                    tags.get("severity", "?"),
                    tags.get("feature", "-"),
                    _number(fields.get("value")),
                    str(fields.get("summary", "")),
                )
            )
        elif point.measurement == "volume":
            volume[group].append(
                VolumeSample(
                    point.time_ns,
                    int(_number(fields.get("predictions")) or 0),
                    int(_number(fields.get("late_predictions")) or 0),
                )
            )
    performance: dict[GroupKey, list[PerformanceSeries]] = defaultdict(list)
    for (_, tag_tuple), windows in performance_windows(store.points).items():
        tags = dict(tag_tuple)
        performance[_group_key(tags)].append(
            PerformanceSeries(tags.get("metric", "?"), tuple(windows))
        )
    keys = sorted(
        set(drift) | set(performance) | set(alerts),
        key=lambda k: (k.model_id, k.model_version, k.segment != "all", k.segment),
    )
    if not keys:
        raise ReportError(
            f"nothing to report: {store.source} holds no drift, performance or alert points "
            f"for {store.selection.describe()}"
        )
    groups = tuple(
        GroupReport(
            key,
            drift=tuple(
                DriftSeries(feature, method, tuple(sorted(samples, key=lambda s: s.time_ns)))
                for (feature, method), samples in sorted(drift[key].items())
            ),
            performance=tuple(sorted(performance[key], key=lambda s: s.metric)),
            alerts=tuple(
                sorted(alerts[key], key=lambda a: (a.time_ns, a.state != "firing", a.subject))
            ),
            volume=tuple(sorted(volume[key], key=lambda v: v.time_ns)),
        )
        for key in keys
    )
    return ReportData(groups, store.source, store.keeps_rewrites, store.selection)


# ---------------------------------------------------------------------------
# drawing
# ---------------------------------------------------------------------------

_PALETTE: Final = (
    "#1f77b4",
    "#ff7f0e",
    "#9467bd",
    "#17becf",
    "#8c564b",
    "#e377c2",
    "#bcbd22",
    "#2f4b7c",
)
"""Feature and metric colours (red and green are kept for alerts)."""
_QUIET: Final = "#b8b8b8"
_SEVERITY_COLOURS: Final = {"critical": "#c0152f", "warning": "#f08c00", "info": "#4f7cac"}
_RESOLVED: Final = "#2b9348"
_DRIFT_SHADE: Final = "#d62728"
_METHOD_NAMES: Final = {
    "ks": "KS test",
    "psi": "PSI",
    "wasserstein": "Wasserstein distance",
    "jensenshannon": "Jensen–Shannon distance",
    "chi2": "χ² test",
}


@dataclass(frozen=True)
class ReportFiles:
    """What :func:`write_report` wrote."""

    html: Path
    images: tuple[Path, ...]


def _when(time_ns: int) -> datetime:
    return from_epoch_ns(time_ns)


_NS_PER_DAY: Final = 86_400 * 10**9
_DATE_EPOCH_NS: Final = to_epoch_ns(
    datetime.fromisoformat(str(matplotlib.rcParams["date.epoch"])).replace(tzinfo=UTC)
)


def _x(time_ns: int) -> float:
    """Position on a time axis: matplotlib's date number (days since its epoch)."""
    return (time_ns - _DATE_EPOCH_NS) / _NS_PER_DAY


def _days(seconds: float) -> float:
    return seconds / 86_400


def _window_s(group: GroupReport) -> float:
    times = sorted(
        {s.time_ns for series in group.drift for s in series.samples}
        | {w.time_ns for series in group.performance for w in series.windows}
        | {v.time_ns for v in group.volume}
    )
    gaps = [b - a for a, b in itertools.pairwise(times) if b > a]
    return min(gaps) / 1e9 if gaps else 60.0


def _style_axis(axis: Axes, title: str) -> None:
    axis.set_title(title, loc="left", fontsize=10.5, fontweight="bold", color="#222222")
    axis.grid(True, color="#e6e6e6", linewidth=0.8)
    axis.set_axisbelow(True)
    for side in ("top", "right"):
        axis.spines[side].set_visible(False)
    for side in ("left", "bottom"):
        axis.spines[side].set_color("#999999")
    axis.tick_params(labelsize=9, colors="#333333")


_LEGEND_TAIL: Final = (
    "other features",
    "prediction",
    "first emitted value",
    "at first emission",
    "p <",
    "threshold",
)
"""Legend entries that come after the named series, in this order (by prefix)."""


def _legend_rank(label: str) -> int:
    for rank, prefix in enumerate(_LEGEND_TAIL, start=1):
        if label.startswith(prefix):
            return rank
    return 0


def _legend(axis: Axes) -> None:
    handles, labels = axis.get_legend_handles_labels()
    if handles:
        pairs = sorted(zip(handles, labels, strict=True), key=lambda pair: _legend_rank(pair[1]))
        axis.legend(
            [handle for handle, _ in pairs],
            [label for _, label in pairs],
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            fontsize=8.5,
            frameon=False,
            borderaxespad=0.0,
        )


AlertInterval = tuple[float, float, str, bool]
"""``(start, end, severity, resolved)`` on the time axis."""


def _alert_rows(group: GroupReport, end: float) -> list[tuple[str, list[AlertInterval]]]:
    """Per alert subject, its firing intervals; one still firing runs to ``end``."""
    rows: dict[str, list[AlertInterval]] = {}
    open_since: dict[str, tuple[float, str]] = {}
    for alert in group.alerts:
        subject = alert.subject
        rows.setdefault(subject, [])
        moment = _x(alert.time_ns)
        if alert.state == "firing":
            open_since.setdefault(subject, (moment, alert.severity))
        elif subject in open_since:
            start, severity = open_since.pop(subject)
            rows[subject].append((start, moment, severity, True))
        else:
            rows[subject].append((moment, moment, alert.severity, True))
    for subject, (start, severity) in open_since.items():
        rows[subject].append((start, end, severity, False))
    return sorted(rows.items())


def _draw_alerts(axis: Axes, group: GroupReport, x_end: float) -> None:
    rows = _alert_rows(group, x_end)
    seen: set[str] = set()
    for index, (_, intervals) in enumerate(rows):
        for start, end, severity, resolved in intervals:
            colour = _SEVERITY_COLOURS.get(severity, _SEVERITY_COLOURS["warning"])
            axis.barh(index, end - start, left=start, height=0.55, color=colour, alpha=0.9)
            axis.plot([start], [index], marker="v", color=colour, markersize=7)
            seen.add(severity)
            if resolved and end > start:
                axis.plot([end], [index], marker="o", color=_RESOLVED, markersize=6)
    axis.set_yticks(range(len(rows)), [subject for subject, _ in rows])
    axis.set_ylim(len(rows) - 0.5, -0.5)
    axis.tick_params(axis="y", length=0)
    handles: list[Artist] = [
        Patch(color=_SEVERITY_COLOURS[severity], label=f"firing ({severity})")
        for severity in _SEVERITY_COLOURS
        if severity in seen
    ]
    handles.append(Line2D([], [], marker="o", color=_RESOLVED, linestyle="none", label="resolved"))
    axis.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize=8.5,
        frameon=False,
        borderaxespad=0.0,
    )
    axis.grid(True, axis="x", color="#e6e6e6", linewidth=0.8)


def _mark_firing(axes: Sequence[Axes], group: GroupReport) -> None:
    for alert in group.alerts:
        if alert.state != "firing":
            continue
        colour = _SEVERITY_COLOURS.get(alert.severity, _SEVERITY_COLOURS["warning"])
        for axis in axes:
            axis.axvline(_x(alert.time_ns), color=colour, linestyle=":", linewidth=1.0, alpha=0.6)


def _new_figure(panel_heights: Sequence[float]) -> tuple[Figure, list[Axes]]:
    figure = Figure(
        figsize=(FIGURE_WIDTH_IN, sum(panel_heights) + 0.6), dpi=DPI, layout="constrained"
    )
    figure.set_facecolor("white")
    axes = figure.subplots(
        len(panel_heights), 1, sharex=True, height_ratios=list(panel_heights), squeeze=False
    )
    return figure, [axis for (axis,) in axes]


def _finish_time_axis(figure: Figure, axes: Sequence[Axes], group: GroupReport, title: str) -> None:
    first, last = group.time_range_ns()
    pad = _days(_window_s(group) * 0.6)
    bottom = axes[-1]
    bottom.set_xlim(_x(first) - pad, _x(last) + pad)
    span_s = (last - first) / 1e9
    locator = mdates.AutoDateLocator(tz=UTC, minticks=5, maxticks=12)  # type: ignore[no-untyped-call]
    bottom.xaxis.set_major_locator(locator)
    if _when(first).date() == _when(last).date():
        pattern = "%H:%M:%S" if span_s < 3 * 3600 else "%H:%M"
        label = f"window start, UTC, {_when(first):%Y-%m-%d}"
    else:
        pattern = "%m-%d %H:%M" if span_s < 10 * 86400 else "%Y-%m-%d"
        label = "window start, UTC"
    formatter = mdates.DateFormatter(pattern, tz=UTC)  # type: ignore[no-untyped-call]
    bottom.xaxis.set_major_formatter(formatter)
    bottom.set_xlabel(label, fontsize=9, color="#333333")
    figure.suptitle(title, x=0.01, ha="left", fontsize=13, fontweight="bold", color="#111111")


def highlighted_features(group: GroupReport, most: int = len(_PALETTE)) -> list[str]:
    """The features drawn in colour: those that drifted in the most windows.

    A feature is highlighted when the windows in which any test flagged it
    number at least a quarter of the most-drifted feature's, up to ``most``
    features; the others (sporadic false alarms included) are drawn in grey.
    """
    windows: dict[str, set[int]] = defaultdict(set)
    for series in group.drift:
        if series.feature != PREDICTION:
            windows[series.feature].update(s.time_ns for s in series.samples if s.drifted)
    counts = {feature: len(times) for feature, times in windows.items() if times}
    if not counts:
        return []
    cut = max(counts.values()) / 4
    ranked = sorted(counts, key=lambda feature: (-counts[feature], feature))
    return sorted(feature for feature in ranked[:most] if counts[feature] >= cut)


def _feature_colours(group: GroupReport) -> dict[str, str]:
    return {
        feature: _PALETTE[index % len(_PALETTE)]
        for index, feature in enumerate(highlighted_features(group))
    }


def _decade(value: float) -> float:
    return 10.0 ** math.floor(math.log10(value))


def p_value_floor(p_values: Iterable[float], thresholds: Iterable[float]) -> float:
    """Lowest p-value a panel shows: the decade of the smallest one, in [1e-12, α/100].

    Smaller p-values (and zeros) are drawn at the floor, marked as off the scale.

    Examples
    --------
    >>> p_value_floor([0.3, 0.2], [0.05])
    0.0001
    >>> p_value_floor([0.3, 2.5e-7], [0.05])
    1e-07
    >>> p_value_floor([0.3, 0.0, 1e-300], [0.05])
    1e-12
    """
    values = list(p_values)
    smallest = min(values, default=1.0)
    lowest = _decade(smallest) if smallest > 0 else 0.0
    ceiling = _decade(min(thresholds, default=0.05) / 100)
    return max(P_VALUE_FLOOR, min(lowest, ceiling))


def _series_style(
    series: DriftSeries, colours: Mapping[str, str], quiet_labelled: bool
) -> tuple[str, float, str, str, int]:
    """Colour, line width, legend label, line style and z-order of one series."""
    if series.feature == PREDICTION:
        return "#111111", 1.6, "prediction", "--", 4
    if series.feature in colours:
        return colours[series.feature], 2.0, series.feature, "-", 3
    return _QUIET, 1.1, "" if quiet_labelled else "other features", "-", 2


def _draw_drift_panel(
    axis: Axes, method: str, series: Sequence[DriftSeries], colours: Mapping[str, str]
) -> None:
    uses_p = series[0].uses_p_value
    thresholds = sorted(
        {s.threshold for one in series for s in one.samples if s.threshold is not None}
    )
    floor = p_value_floor(
        [s.p_value for one in series for s in one.samples if s.p_value is not None], thresholds
    )
    quiet_labelled = off_scale = False
    for one in sorted(series, key=lambda s: (s.feature in colours, s.feature)):
        samples = [s for s in one.samples if not uses_p or s.p_value is not None]
        if not samples:
            continue
        colour, width, label, style, order = _series_style(one, colours, quiet_labelled)
        quiet_labelled = quiet_labelled or label == "other features"
        times = [_x(s.time_ns) for s in samples]
        raw = [float(s.p_value or 0.0) if uses_p else s.statistic for s in samples]
        values = [max(value, floor) for value in raw] if uses_p else raw
        axis.plot(
            times, values, color=colour, linewidth=width, linestyle=style, label=label or None,
            zorder=order,
        )  # fmt: skip
        for drifted, clipped, marker, size in ((True, False, "o", 26), (True, True, "^", 46)):
            chosen = [
                (t, v)
                for t, v, r, s in zip(times, values, raw, samples, strict=True)
                if s.drifted is drifted and (uses_p and r < floor) is clipped
            ]
            off_scale = off_scale or (clipped and bool(chosen))
            if chosen:
                axis.scatter(
                    [t for t, _ in chosen], [v for _, v in chosen], s=size, marker=marker,
                    color=colour, edgecolors="white", linewidths=0.6, zorder=order + 1,
                )  # fmt: skip
    for index, threshold in enumerate(thresholds):
        axis.axhline(
            threshold, color=_DRIFT_SHADE, linestyle="--", linewidth=1.2,
            label=f"threshold {threshold:g}" if index == 0 or len(thresholds) > 1 else None,
        )  # fmt: skip
    name = _METHOD_NAMES.get(method, method)
    if uses_p:
        if off_scale:
            axis.scatter([], [], marker="^", s=46, color="#555555", label=f"p < {floor:g}")
        axis.set_yscale("log")
        axis.set_ylim(1.5, floor / 2)  # inverted: up is more drift
        if thresholds:
            axis.axhspan(max(thresholds), floor / 2, color=_DRIFT_SHADE, alpha=0.035, lw=0)
        rule = f"p ≤ {thresholds[0]:g}" if len(thresholds) == 1 else "p below the line"
        title = f"{name}: p-value per feature — drift when {rule} (inverted log axis: up = drift)"
        axis.set_ylabel("p-value", fontsize=9)
    else:
        statistics = [s.statistic for one in series for s in one.samples]
        top = 1.08 * max([*statistics, *(1.25 * t for t in thresholds), 0.0]) or 1.0
        axis.set_ylim(0, top)
        if thresholds:
            axis.axhspan(min(thresholds), top, color=_DRIFT_SHADE, alpha=0.035, lw=0)
        rule = f"≥ {thresholds[0]:g}" if len(thresholds) == 1 else "above the line"
        title = f"{name}: statistic per feature — drift when {rule}"
        axis.set_ylabel("statistic", fontsize=9)
    _style_axis(axis, title)
    _legend(axis)


def _alert_strip_height(group: GroupReport) -> list[float]:
    if not group.alerts:
        return []
    return [0.5 + 0.32 * len({alert.subject for alert in group.alerts})]


def _draw_alert_strip(axes: Sequence[Axes], group: GroupReport) -> list[Axes]:
    """Draw the alert timeline in the first axis when there are alerts; return the others."""
    if not group.alerts:
        return list(axes)
    _, last = group.time_range_ns()
    _draw_alerts(axes[0], group, _x(last) + _days(_window_s(group) * 0.6))
    _style_axis(axes[0], "Alerts (▼ fired, ● resolved)")
    axes[0].grid(False, axis="y")
    return list(axes[1:])


def _save(figure: Figure, path: Path) -> Path:
    FigureCanvasAgg(figure)  # draw with Agg: no display, no pyplot state
    figure.savefig(path, format="png", facecolor="white")
    return path


def _by_method(group: GroupReport) -> dict[str, list[DriftSeries]]:
    """Drift series per test, tests in the registry's order (unknown ones last)."""
    methods: dict[str, list[DriftSeries]] = defaultdict(list)
    for series in group.drift:
        methods[series.method].append(series)
    order = [m for m in METHODS if m in methods] + sorted(set(methods) - set(METHODS))
    return {method: methods[method] for method in order}


def render_drift(group: GroupReport, path: Path) -> Path | None:
    """Write the drift image of one group (None when it has no drift series)."""
    if not group.drift:
        return None
    methods = _by_method(group)
    order = list(methods)
    figure, axes = _new_figure(_alert_strip_height(group) + [2.6] * len(order))
    panels = _draw_alert_strip(axes, group)
    colours = _feature_colours(group)
    for axis, method in zip(panels, order, strict=True):
        _draw_drift_panel(axis, method, methods[method], colours)
    _mark_firing(panels, group)
    _finish_time_axis(figure, axes, group, f"Drift — {group.key.title}")
    return _save(figure, path)


def _draw_metrics(axis: Axes, group: GroupReport, keeps_rewrites: bool) -> None:
    corrections = False
    for index, series in enumerate(group.performance):
        colour = _PALETTE[index % len(_PALETTE)]
        finals = [
            (_x(w.time_ns), w.final_value) for w in series.windows if w.final_value is not None
        ]
        axis.plot(
            [moment for moment, _ in finals], [value for _, value in finals], color=colour,
            linewidth=2.0, marker="o", markersize=5, label=series.metric, zorder=3,
        )  # fmt: skip
        for window in series.windows:
            if window.first_value is None or window.final_value is None or not window.corrected:
                continue
            corrections = True
            moment = _x(window.time_ns)
            axis.plot(
                [moment, moment], [window.first_value, window.final_value], color=colour,
                linewidth=1.0, alpha=0.7, zorder=2,
            )  # fmt: skip
            axis.plot(
                [moment], [window.first_value], marker="o", markersize=6, linestyle="none",
                markerfacecolor="white", markeredgecolor=colour, markeredgewidth=1.4, zorder=4,
            )  # fmt: skip
    if corrections:
        axis.plot(
            [], [], marker="o", markerfacecolor="white", markeredgecolor="#555555",
            linestyle="none", label="first emitted value",
        )  # fmt: skip
    if keeps_rewrites:
        title = "Performance per window: final value (filled) and first emitted value (hollow)"
    else:
        title = "Performance per window: final values (this store keeps no earlier writes)"
    _style_axis(axis, title)
    axis.set_ylabel("metric value", fontsize=9)
    _legend(axis)


def _draw_coverage(axis: Axes, group: GroupReport, width: float, keeps_rewrites: bool) -> None:
    coverage: dict[int, PerformanceWindow] = {}
    for series in group.performance:
        for window in series.windows:
            if window.final_coverage is not None:
                coverage.setdefault(window.time_ns, window)
    times = sorted(coverage)
    for is_final, colour, label in (
        (True, "#4f7cac", "coverage (window final)"),
        (False, "#a9c4e3", "coverage (labels still arriving)"),
    ):
        chosen = [t for t in times if coverage[t].is_final is is_final]
        if chosen:
            axis.bar(
                [_x(t) for t in chosen],
                [100 * (coverage[t].final_coverage or 0.0) for t in chosen],
                width=width, color=colour, label=label,
            )  # fmt: skip
    first = [t for t in times if coverage[t].first_coverage is not None]
    if keeps_rewrites and first:
        axis.scatter(
            [_x(t) for t in first], [100 * (coverage[t].first_coverage or 0.0) for t in first],
            marker="_", s=160, color="#222222", linewidths=2.0, label="at first emission",
            zorder=3,
        )  # fmt: skip
    axis.set_ylim(0, 105)
    axis.set_ylabel("% labelled", fontsize=9)
    _style_axis(axis, "Label coverage per window (labelled / predicted)")
    _legend(axis)


def _draw_volume(axis: Axes, group: GroupReport, width: float) -> None:
    moments = [_x(sample.time_ns) for sample in group.volume]
    on_time = [sample.predictions for sample in group.volume]
    axis.bar(moments, on_time, width=width, color="#9aa5b1", label="predictions")
    late = [sample.late_predictions for sample in group.volume]
    if any(late):
        axis.bar(
            moments, late, bottom=on_time, width=width, color="#f08c00", label="late predictions"
        )
    axis.set_ylabel("events", fontsize=9)
    _style_axis(axis, "Predictions per window")
    _legend(axis)


def render_overview(group: GroupReport, path: Path, keeps_rewrites: bool) -> Path | None:
    """Write the one-image summary of a group: alerts, the drift test that shows most, performance.

    The drift panel is the test under which the most highlighted features
    drifted (ties: a test drawn by its statistic, whose size tells how far
    the data moved, then the registry's order); None when the group has no
    drift or no performance series.
    """
    if not group.drift or not group.performance:
        return None
    methods = _by_method(group)
    colours = _feature_colours(group)
    method = max(
        methods,
        key=lambda m: (
            sum(s.feature in colours and s.ever_drifted for s in methods[m]),
            not methods[m][0].uses_p_value,  # a statistic shows the size of a drift
        ),
    )
    figure, axes = _new_figure([*_alert_strip_height(group), 2.6, 2.6, 1.6])
    panels = _draw_alert_strip(axes, group)
    _draw_drift_panel(panels[0], method, methods[method], colours)
    _draw_metrics(panels[1], group, keeps_rewrites)
    _draw_coverage(panels[2], group, _days(_window_s(group) * 0.8), keeps_rewrites)
    _mark_firing(panels, group)
    _finish_time_axis(figure, axes, group, f"Overview — {group.key.title}")
    return _save(figure, path)


def render_performance(group: GroupReport, path: Path, keeps_rewrites: bool) -> Path | None:
    """Write the performance image of one group (None when it has no performance series)."""
    if not group.performance:
        return None
    heights = _alert_strip_height(group) + [3.0, 1.9] + ([1.5] if group.volume else [])
    figure, axes = _new_figure(heights)
    panels = _draw_alert_strip(axes, group)
    width = _days(_window_s(group) * 0.8)
    _draw_metrics(panels[0], group, keeps_rewrites)
    _draw_coverage(panels[1], group, width, keeps_rewrites)
    if group.volume:
        _draw_volume(panels[2], group, width)
    _mark_firing(panels, group)
    _finish_time_axis(figure, axes, group, f"Performance — {group.key.title}")
    return _save(figure, path)


# ---------------------------------------------------------------------------
# the page
# ---------------------------------------------------------------------------

_CSS: Final = """
body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:0;color:#1d2125;
background:#f6f7f9}
main{max-width:1260px;margin:0 auto;padding:24px}
h1{font-size:26px;margin:0 0 4px}h2{font-size:20px;margin:36px 0 8px;border-bottom:2px solid
#dde1e6;padding-bottom:4px}h3{font-size:15px;margin:18px 0 6px}
.meta{color:#5b6570;font-size:13px}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:12px 0}
.card{background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:10px 14px;min-width:150px}
.card b{display:block;font-size:22px}.card span{color:#5b6570;font-size:12px}
figure{margin:12px 0;background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:6px}
figure img{width:100%;height:auto;display:block}
table{border-collapse:collapse;background:#fff;font-size:13px;margin:6px 0 12px}
th,td{border:1px solid #dde1e6;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#eef1f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
.firing{color:#c0152f;font-weight:bold}.resolved{color:#2b9348;font-weight:bold}
details{margin:6px 0 12px}summary{cursor:pointer;color:#2f4b7c}
"""


def _fmt(value: float | None, digits: int = 3) -> str:
    """A number for the page: fixed digits, or scientific when tiny; ``–`` when missing.

    Examples
    --------
    >>> _fmt(0.71234), _fmt(2.9e-203), _fmt(None), _fmt(0.0)
    ('0.712', '2.9e-203', '–', '0.000')
    """
    if value is None or math.isnan(value):
        return "–"
    if value != 0 and abs(value) < 10**-digits:
        return f"{value:.{digits}g}"
    return f"{value:.{digits}f}"


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.0f}%"


def _utc(time_ns: int) -> str:
    return f"{_when(time_ns):%Y-%m-%d %H:%M:%S}"


def _row(*cells: str, header: bool = False, classes: Sequence[str] = ()) -> str:
    """A table row; cells are escaped, ``classes`` (one per cell, may be empty) added."""
    tag = "th" if header else "td"
    out = []
    for index, cell in enumerate(cells):
        css = classes[index] if index < len(classes) else ""
        attribute = f' class="{css}"' if css else ""
        out.append(f"<{tag}{attribute}>{html.escape(cell)}</{tag}>")
    return "<tr>" + "".join(out) + "</tr>"


def _image_tag(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></figure>'


def _drifted_features(group: GroupReport) -> list[str]:
    return sorted({s.feature for s in group.drift if s.ever_drifted and s.feature != PREDICTION})


def _cards(group: GroupReport) -> str:
    windows = len({s.time_ns for series in group.drift for s in series.samples})
    cards = [
        (str(windows), "drift windows"),
        (str(len(_drifted_features(group))), "features that drifted"),
        (str(sum(a.state == "firing" for a in group.alerts)), "alerts fired"),
        (str(sum(a.state == "resolved" for a in group.alerts)), "alerts resolved"),
    ]
    for series in group.performance:
        final = [w for w in series.windows if w.final_value is not None]
        if final:
            cards.append((_fmt(final[-1].final_value), f"{series.metric}, last window"))
    return (
        '<div class="cards">'
        + "".join(
            f'<div class="card"><b>{html.escape(value)}</b><span>{html.escape(text)}</span></div>'
            for value, text in cards
        )
        + "</div>"
    )


def _alerts_table(group: GroupReport) -> str:
    rows = [
        _row("time (UTC)", "state", "rule", "severity", "feature", "value", "summary", header=True)
    ]
    rows += [
        _row(
            _utc(alert.time_ns),
            alert.state,
            alert.rule,
            alert.severity,
            alert.feature,
            _fmt(alert.value),
            alert.summary,
            classes=("", alert.state, "", "", "", "num"),
        )
        for alert in group.alerts
    ]
    return "<h3>Alerts</h3><table>" + "".join(rows) + "</table>"


def _corrections_table(group: GroupReport) -> str:
    corrected = sorted(
        ((w, s.metric) for s in group.performance for w in s.windows if w.corrected),
        key=lambda item: (item[0].time_ns, item[1]),
    )
    if not corrected:
        return ""
    rows = [
        _row(
            "window (UTC)",
            "metric",
            "first value",
            "coverage then",
            "final value",
            "final coverage",
            "labelled",
            "writes",
            "window final",
            header=True,
        )
    ]
    rows += [
        _row(
            _utc(window.time_ns),
            metric,
            _fmt(window.first_value),
            _percent(window.first_coverage),
            _fmt(window.final_value),
            _percent(window.final_coverage),
            "–" if window.n_labelled is None else str(window.n_labelled),
            str(window.writes),
            "yes" if window.is_final else "no",
            classes=("", "", *["num"] * 6),
        )
        for window, metric in corrected
    ]
    return (
        f"<details><summary>Late-label corrections: {len(corrected)} window values changed "
        "after they were first emitted</summary><table>" + "".join(rows) + "</table></details>"
    )


def _group_section(group: GroupReport, images: Sequence[Path], keeps_rewrites: bool) -> str:
    drifted = _drifted_features(group)
    if any(s.ever_drifted for s in group.drift if s.feature == PREDICTION):
        drifted.append("the prediction")
    parts = [
        f'<section id="{html.escape(group.key.slug)}"><h2>{html.escape(group.key.title)}</h2>',
        _cards(group),
    ]
    if drifted:
        parts.append(f"<p>Drifted in at least one window: {html.escape(', '.join(drifted))}.</p>")
    parts.extend(_image_tag(image, image.stem) for image in images)
    if group.alerts:
        parts.append(_alerts_table(group))
    if keeps_rewrites:
        parts.append(_corrections_table(group))
    parts.append("</section>")
    return "\n".join(parts)


def render_html(report: ReportData, images: Mapping[GroupKey, Sequence[Path]], path: Path) -> Path:
    """Write the self-contained page: every image embedded, no external reference."""
    esc = html.escape
    first = min(g.time_range_ns()[0] for g in report.groups)
    last = max(g.time_range_ns()[1] for g in report.groups)
    note = (
        "Performance points were re-written as late labels arrived; the report shows the "
        "first emitted value next to the final one."
        if report.keeps_rewrites
        else "This store keeps only the last write of each point: performance shows final "
        "values; the file sink's report also shows the values first emitted."
    )
    toc = "".join(
        f'<li><a href="#{esc(g.key.slug)}">{esc(g.key.title)}</a></li>' for g in report.groups
    )
    body = "\n".join(
        _group_section(g, images.get(g.key, ()), report.keeps_rewrites) for g in report.groups
    )
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>driftline report</title><style>{_CSS}</style></head>
<body><main>
<h1>driftline report</h1>
<p class="meta">Source: {esc(report.source)} · {esc(report.selection.describe())} ·
windows from {_utc(first)} to {_utc(last)} UTC · made {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC</p>
<p class="meta">{esc(note)}</p>
<p class="meta">How to read the images: one drift panel per test, one line per feature (in
colour the features that drifted most, the others grey); the dashed red line is the threshold
and the shaded side of it is drift; a dot marks a window flagged as drifted, a triangle a
p-value too small for the scale. Performance: filled dots are
each window's final value, hollow ones the value first emitted before the late labels arrived;
bars show the share of predictions labelled. Alerts run along the top (red/orange while firing,
green dot when resolved) and as dotted lines through the panels where they fired.</p>
<ul>{toc}</ul>
{body}
</main></body></html>
"""
    path.write_text(page, encoding="utf-8")
    return path


def write_report(report: ReportData, out_dir: Path) -> ReportFiles:
    """Draw every group's images and the HTML page into ``out_dir``.

    Returns
    -------
    ReportFiles
        The page (``report.html``) and the PNG images, in page order.
    """
    images: dict[GroupKey, list[Path]] = {}
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for group in report.groups:
            drawn = [
                render_overview(
                    group, out_dir / f"{group.key.slug}-overview.png", report.keeps_rewrites
                ),
                render_drift(group, out_dir / f"{group.key.slug}-drift.png"),
                render_performance(
                    group, out_dir / f"{group.key.slug}-performance.png", report.keeps_rewrites
                ),
            ]
            images[group.key] = [image for image in drawn if image is not None]
        page = render_html(report, images, out_dir / "report.html")
    except OSError as exc:
        where = exc.filename or out_dir
        raise ReportError(f"cannot write the report to {where}: {exc.strerror or exc}") from None
    return ReportFiles(page, tuple(image for group in images.values() for image in group))
