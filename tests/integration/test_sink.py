"""Sinks against real servers: VictoriaMetrics, InfluxDB 1.6, and a scripted HTTP server.

Expected values come from the plain row specifications below (tags, fields
and times typed out here), never from the line protocol the code produces.
"""

from __future__ import annotations

import email.utils
import http.server
import json
import logging
import math
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from schemas.settings import DriftlineSettings
from streams import points as pts
from streams.points import LineProtocolError, Point, latest_points
from streams.sink import (
    FileSink,
    InfluxSink,
    RetryPolicy,
    SinkBackpressure,
    SinkError,
    SinkUnavailable,
    make_sink,
    read_line_protocol,
)
from tests.servers import LOCALHOST, free_port, influx_write, influxql, vm_export

pytestmark = pytest.mark.integration

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
W0 = datetime(2024, 3, 1, 12, tzinfo=UTC)
W1 = W0 + timedelta(hours=1)
FAST = RetryPolicy(max_attempts=5, initial_delay_s=0.01, max_delay_s=0.02, jitter=0.0)

Row = tuple[str, dict[str, str], dict[str, Any], datetime]

BUILDERS: dict[str, Callable[..., Point]] = {
    "feature_drift": pts.feature_drift,
    "prediction_drift": pts.prediction_drift,
    "model_performance": pts.model_performance,
    "label_lag": pts.label_lag,
    "data_quality": pts.data_quality,
    "volume": pts.volume,
    "alerts": pts.alerts,
}


def rows_for(model_id: str) -> list[Row]:
    """Every measurement, some optional fields absent, escapes in tags and strings.

    Values have at most 12 significant digits (what VictoriaMetrics keeps).
    """
    version = {"model_id": model_id, "model_version": "v3"}
    return [
        (
            "feature_drift",
            {**version, "segment": "region=eu,tier=gold", "feature": "monthly charges"}
            | {"method": "ks"},
            {"statistic": 0.3125, "p_value": 0.0001, "threshold": 0.05, "drifted": True}
            | {"n_current": 512, "n_reference": 20000},
            W0,
        ),
        (
            "feature_drift",
            {**version, "segment": "region=eu,tier=gold", "feature": "monthly charges"}
            | {"method": "psi"},
            {"statistic": 0.25, "p_value": None, "threshold": 0.2, "drifted": True}
            | {"n_current": 640, "n_reference": 20000},
            W1,
        ),
        (
            "prediction_drift",
            {**version, "segment": "all", "method": "ks"},
            {"statistic": 0.0625, "p_value": 0.5, "threshold": 0.05, "drifted": False}
            | {"n_current": 512, "n_reference": 20000},
            W0,
        ),
        (
            "model_performance",
            {**version, "segment": "all", "metric": "f1"},
            {"value": 0.8125, "n_labelled": 96, "coverage": 0.75, "is_final": False},
            W0,
        ),
        (
            "label_lag",
            version,
            {"p50_s": 5400.0, "p95_s": 86400.5, "coverage": 0.75},
            W0,
        ),
        (
            "data_quality",
            {**version, "feature": "plan"},
            {"missing_rate": 0.015625, "out_of_range_rate": None, "unseen_category_rate": 0.125},
            W0,
        ),
        (
            "volume",
            {**version, "segment": "north america"},
            {"predictions": 1200, "labels": 640, "late_predictions": 7, "dead_letters": 2},
            W1,
        ),
        (
            "alerts",
            {**version, "segment": "all", "feature": "tenure", "rule": "f1, below baseline"}
            | {"severity": "critical", "state": "firing"},
            {"value": 0.61, "summary": 'f1 "0.61" < 0.70 on C:\\data, see runbook'},
            W1 + timedelta(seconds=5, microseconds=123_456),
        ),
    ]


def build(row: Row) -> Point:
    measurement, tags, fields, when = row
    time_key = "time" if measurement == "alerts" else "window_start"
    return BUILDERS[measurement](**tags, **fields, **{time_key: when})


def epoch_ms(when: datetime) -> int:
    return (when - EPOCH) // timedelta(milliseconds=1)


def epoch_ns(when: datetime) -> int:
    return (when - EPOCH) // timedelta(microseconds=1) * 1000


# ---------------------------------------------------------------------------
# a scripted HTTP server standing in for InfluxDB
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: str


@dataclass
class ScriptedInflux:
    """Answers ``/api/v2/write`` with scripted statuses (then 204), recording requests."""

    script: list[tuple[int, bytes, dict[str, str]]] = field(default_factory=list)
    port: int = 0
    stall_first_s: float = 0.0
    received: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length).decode("utf-8")
                path, _, query = self.path.partition("?")
                outer.received.append(
                    Received(
                        path,
                        dict(
                            item.split("=", 1)
                            for item in query.split("&")
                            if "=" in item  # org, bucket, precision: plain words here
                        ),
                        {k.lower(): v for k, v in self.headers.items()},
                        body,
                    )
                )
                if len(outer.received) == 1 and outer.stall_first_s:
                    time.sleep(outer.stall_first_s)
                status, payload, headers = outer.script.pop(0) if outer.script else (204, b"", {})
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = http.server.ThreadingHTTPServer((LOCALHOST, self.port), Handler)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{LOCALHOST}:{self.port}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


@pytest.fixture
def scripted() -> Iterator[Callable[..., ScriptedInflux]]:
    started: list[ScriptedInflux] = []

    def start(
        *script: tuple[int, bytes, dict[str, str]], port: int = 0, stall_first_s: float = 0.0
    ) -> ScriptedInflux:
        server = ScriptedInflux(list(script), port, stall_first_s)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def three_points() -> tuple[list[Point], list[str]]:
    """Three volume points and their lines, typed out by hand."""
    points = [
        pts.volume(
            model_id="m1",
            model_version="1",
            segment="all",
            predictions=n,
            labels=0,
            late_predictions=0,
            dead_letters=0,
            window_start=W0 + timedelta(hours=n),
        )
        for n in (1, 2, 3)
    ]
    lines = [
        "volume,model_id=m1,model_version=1,segment=all "
        f"predictions={n}i,labels=0i,late_predictions=0i,dead_letters=0i {stamp}"
        for n, stamp in (
            (1, "1709298000000000000"),
            (2, "1709301600000000000"),
            (3, "1709305200000000000"),
        )
    ]
    return points, lines


# ---------------------------------------------------------------------------
# VictoriaMetrics
# ---------------------------------------------------------------------------


def test_every_measurement_reads_back_from_victoria_metrics(
    victoria_metrics_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    model_id = f"sink-{uuid.uuid4().hex[:10]}"
    rows = rows_for(model_id)
    expected: dict[tuple[str, tuple[tuple[str, str], ...]], list[tuple[int, float]]] = {}
    for measurement, tags, fields, when in rows:
        for name, value in fields.items():
            if value is None or isinstance(value, str):
                continue  # absent; strings are not kept by VictoriaMetrics
            key = (f"{measurement}_{name}", tuple(sorted(tags.items())))
            expected.setdefault(key, []).append((epoch_ms(when), float(value)))

    caplog.set_level(logging.INFO, logger="streams.sink")
    sink = InfluxSink(
        victoria_metrics_url, org="driftline", bucket="driftline", token="unused", chunk_size=3
    )
    with sink:
        sink.add(build(row) for row in rows)
        assert sink.pending == len(rows)
        sink.flush()
        assert sink.pending == 0
        assert sink.stats.points_written == len(rows)
        assert sink.stats.write_retries == sink.stats.write_failures == 0

    series = vm_export(
        victoria_metrics_url, f'{{model_id="{model_id}",__name__!="alerts_summary"}}'
    )
    found = {
        (s.name, tuple(sorted((k, v) for k, v in s.metric.items() if k != "__name__"))): s.points()
        for s in series
    }
    assert found == expected

    # One INFO line per chunk of 3: count, time range, elapsed.
    written = [r.getMessage() for r in caplog.records if r.getMessage().startswith("wrote ")]
    pattern = re.compile(
        r"wrote (\d) points to http://127\.0\.0\.1:\d+ bucket=driftline, "
        r"time range (\S+) \.\. (\S+), in \d+ ms"
    )
    parsed = [pattern.fullmatch(text) for text in written]
    assert all(parsed), written
    assert [(m.group(1), m.group(2), m.group(3)) for m in parsed if m] == [
        ("3", "2024-03-01T12:00:00Z", "2024-03-01T13:00:00Z"),
        ("3", "2024-03-01T12:00:00Z", "2024-03-01T12:00:00Z"),
        ("2", "2024-03-01T13:00:00Z", "2024-03-01T13:00:05.123456Z"),
    ]


def test_victoria_metrics_keeps_both_samples_of_a_rewritten_point(
    victoria_metrics_url: str,
) -> None:
    """Documents VictoriaMetrics 1.79: a re-emitted window is a second sample, not an update."""
    model_id = f"sink-{uuid.uuid4().hex[:10]}"

    def performance(value: float, n_labelled: int) -> Point:
        return pts.model_performance(
            model_id=model_id,
            model_version="v3",
            segment="all",
            metric="f1",
            value=value,
            n_labelled=n_labelled,
            coverage=n_labelled / 128,
            is_final=False,
            window_start=W0,
        )

    with InfluxSink(victoria_metrics_url, org="o", bucket="b") as sink:
        sink.add([performance(0.9, 32)])
        sink.flush()
        sink.add([performance(0.5, 64)])
        sink.flush()

    [value_series] = vm_export(
        victoria_metrics_url, f'model_performance_value{{model_id="{model_id}"}}'
    )
    assert value_series.points() == [(epoch_ms(W0), 0.5), (epoch_ms(W0), 0.9)]


# ---------------------------------------------------------------------------
# InfluxDB 1.6 (InfluxQL), fed the file sink's output
# ---------------------------------------------------------------------------


def test_file_sink_output_in_influxdb1_keeps_strings_and_overwrites(
    influxdb1_url: str, influxdb1_database: str, tmp_path: Path
) -> None:
    """InfluxDB 1.6 has no /api/v2/write (1.8+ has), so the lines go to its /write."""
    model_id = f"sink-{uuid.uuid4().hex[:10]}"
    rows = rows_for(model_id)
    correction: Row = (
        "model_performance",
        {"model_id": model_id, "model_version": "v3", "segment": "all", "metric": "f1"},
        {"value": 0.875, "n_labelled": 120, "coverage": 0.9375, "is_final": True},
        W0,
    )
    path = tmp_path / "metrics.lp"
    with FileSink(path) as sink:
        sink.add(build(row) for row in rows)
        sink.flush()
        sink.add([build(correction)])
    influx_write(influxdb1_url, influxdb1_database, path.read_text("utf-8"), precision="ns")

    expected: dict[str, list[dict[str, Any]]] = {}
    for measurement, tags, fields, when in [*rows[:3], correction, *rows[4:]]:
        present = {name: value for name, value in fields.items() if value is not None}
        expected.setdefault(measurement, []).append({"time": epoch_ns(when), **tags, **present})
    for measurement, wanted in expected.items():
        [result] = influxql(
            influxdb1_url,
            influxdb1_database,
            f'SELECT * FROM "{measurement}" WHERE "model_id" = \'{model_id}\'',
            epoch="ns",
        )
        [series] = result["series"]
        # SELECT * gives a column for every field of the measurement: None where absent.
        got = [
            {column: value for column, value in zip(series["columns"], row, strict=True)}
            for row in series["values"]
        ]
        got = [{column: value for column, value in row.items() if value is not None} for row in got]
        assert got == sorted(wanted, key=lambda row: row["time"]), measurement

    [result] = influxql(
        influxdb1_url,
        influxdb1_database,
        'SELECT "summary" FROM "alerts" WHERE "rule" = \'f1, below baseline\'',
    )
    assert result["series"][0]["values"][0][1] == 'f1 "0.61" < 0.70 on C:\\data, see runbook'


# ---------------------------------------------------------------------------
# retries, permanent errors, back-pressure (scripted server)
# ---------------------------------------------------------------------------


def test_retries_503_then_writes(
    scripted: Callable[..., ScriptedInflux], caplog: pytest.LogCaptureFixture
) -> None:
    server = scripted((503, b"busy", {}), (503, b"", {}))
    points, lines = three_points()
    caplog.set_level(logging.INFO, logger="streams.sink")
    sink = InfluxSink(server.url, org="acme", bucket="models", token="tk-1234", retry=FAST)
    sink.add(points)
    sink.flush()

    assert len(server.received) == 3
    assert all(r.body == "\n".join(lines) for r in server.received)
    first = server.received[0]
    assert first.path == "/api/v2/write"
    assert first.query == {"org": "acme", "bucket": "models", "precision": "ns"}
    assert first.headers["authorization"] == "Token tk-1234"
    assert sink.stats.write_retries == 2
    assert sink.stats.points_written == 3
    assert sink.stats.write_failures == 0
    assert sink.pending == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert "(attempt 1/5): HTTP 503 Service Unavailable: busy; retrying in" in warnings[0]
    assert "(attempt 2/5): HTTP 503 Service Unavailable; retrying in" in warnings[1]
    sink.close()


def test_429_and_500_are_retried_too(scripted: Callable[..., ScriptedInflux]) -> None:
    server = scripted((429, b"", {"Retry-After": "0"}), (500, b"", {}), (502, b"", {}))
    points, _ = three_points()
    with InfluxSink(server.url, org="o", bucket="b", retry=FAST) as sink:
        sink.add(points)
        sink.flush()
        assert sink.stats.write_retries == 3
    assert len(server.received) == 4


def test_retry_after_is_waited_for_even_beyond_the_policys_longest_delay(
    scripted: Callable[..., ScriptedInflux],
) -> None:
    # an HTTP date has whole seconds: 3 s ahead is at least 2 s ahead
    later = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=3), usegmt=True)
    server = scripted((429, b"", {"Retry-After": "0.4"}), (503, b"", {"Retry-After": later}))
    points, _ = three_points()
    policy = RetryPolicy(max_attempts=5, initial_delay_s=0.01, max_delay_s=0.02, jitter=0.0)
    with InfluxSink(server.url, org="o", bucket="b", retry=policy) as sink:
        sink.add(points)
        started = time.monotonic()
        sink.flush()
        # 0.4 s, then until the HTTP date, at least 2 s after the start
        assert time.monotonic() - started >= 1.9
    assert len(server.received) == 3


def test_a_retry_after_beyond_the_budget_holds_later_flushes_back_too(
    scripted: Callable[..., ScriptedInflux],
) -> None:
    server = scripted((429, b"", {"Retry-After": "30"}))
    points, _ = three_points()
    sink = InfluxSink(server.url, org="o", bucket="b", retry=FAST)
    sink.add(points)
    with pytest.raises(SinkUnavailable, match="HTTP 429"):
        sink.flush()
    with pytest.raises(SinkUnavailable, match=r"asked for no writes for [23]\d\.\d s more"):
        sink.flush()
    assert sink.pending == 3
    assert len(server.received) == 1  # the second flush did not call it
    with pytest.raises(SinkError, match="3 points not written"):
        sink.close()


def test_a_timed_out_request_is_retried(
    scripted: Callable[..., ScriptedInflux], caplog: pytest.LogCaptureFixture
) -> None:
    server = scripted(stall_first_s=0.6)
    points, lines = three_points()
    with InfluxSink(server.url, org="o", bucket="b", retry=FAST, timeout_s=0.2) as sink:
        sink.add(points)
        sink.flush()
        assert (sink.stats.write_retries, sink.stats.points_written) == (1, 3)
    # The stalled request reached the server too: writing a point twice is harmless
    # (same series and time), losing it is not.
    assert [r.body for r in server.received] == ["\n".join(lines)] * 2
    assert "(attempt 1/5): ReadTimeoutError" in caplog.text


def test_a_line_refused_with_400_is_isolated_and_the_others_are_written(
    scripted: Callable[..., ScriptedInflux],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # InfluxDB 2.x refuses a whole request for one line it cannot take: kept at
    # the head of the buffer, that line used to stop every later write.
    points, lines = three_points()
    body = json.dumps({"code": "invalid", "message": f"unable to parse '{lines[1]}'"}).encode()
    refused: tuple[int, bytes, dict[str, str]] = (400, body, {})
    # the chunk, then its halves [l0] and [l1, l2], then [l1] and [l2]
    server = scripted(refused, (204, b"", {}), refused, refused, (204, b"", {}))
    sink = InfluxSink(server.url, org="o", bucket="b", retry=FAST)
    sink.add(points)
    sink.flush()
    assert [r.body for r in server.received] == [
        "\n".join(lines),
        lines[0],
        "\n".join(lines[1:]),
        lines[1],
        lines[2],
    ]
    assert sink.pending == 0
    assert (sink.stats.points_written, sink.stats.rejected_points) == (2, 1)
    assert "refused a point for good (HTTP 400, not retried): unable to parse" in caplog.text
    assert f"the point: {lines[1]}" in caplog.text


def test_400_for_every_line_alone_is_permanent_and_names_the_rejected_line(
    scripted: Callable[..., ScriptedInflux],
) -> None:
    # Every line refused alone too: the request is at fault, not a line.
    points, lines = three_points()
    message = f"unable to parse '{lines[1]}': invalid field format"
    body = json.dumps({"code": "invalid", "message": message}).encode()
    server = scripted(*[(400, body, {})] * 5)
    sink = InfluxSink(server.url, org="o", bucket="b", retry=FAST)
    sink.add(points)
    with pytest.raises(SinkError) as caught:
        sink.flush()
    assert type(caught.value) is SinkError  # not SinkUnavailable: do not retry
    assert caught.value.status == 400
    assert "HTTP 400" in str(caught.value)
    assert caught.value.rejected_line == lines[1]
    assert f"first rejected line: {lines[1]}" in str(caught.value)
    assert len(server.received) == 5
    assert sink.stats.write_retries == 0
    assert sink.stats.write_failures == 1
    assert sink.pending == 3  # kept, not dropped


@pytest.mark.parametrize(
    ("status", "message", "refused"),
    [
        (422, "partial write: points beyond retention policy dropped=1", 1),
        (422, "failure writing points to database: partial write: field type conflict", 3),
        # InfluxDB 1.8 and 3.x answer a partial write with 400
        (400, "partial write: field type conflict: input field ... dropped=2", 2),
    ],
)
def test_a_partial_write_is_counted_and_the_next_points_still_go_out(
    scripted: Callable[..., ScriptedInflux],
    caplog: pytest.LogCaptureFixture,
    status: int,
    message: str,
    refused: int,
) -> None:
    # A partial write will never succeed on a retry: kept at the head of the
    # buffer, it used to stop every later write.
    points, lines = three_points()
    body = json.dumps({"code": "unprocessable entity", "message": message}).encode()
    server = scripted((status, body, {}))
    sink = InfluxSink(server.url, org="o", bucket="b", retry=FAST, chunk_size=3)
    sink.add(points)
    sink.flush()
    assert sink.pending == 0
    sink.add(points[:1])
    sink.flush()
    assert [r.body for r in server.received] == ["\n".join(lines), lines[0]]
    assert (sink.stats.rejected_points, sink.stats.points_written) == (refused, 4 - refused)
    assert sink.stats.write_retries == sink.stats.write_failures == 0
    assert f"refused {refused} of 3 points for good (HTTP {status}, not retried)" in caplog.text
    sink.close()


def test_4xx_without_a_named_line_reports_the_chunks_first_line(
    scripted: Callable[..., ScriptedInflux],
) -> None:
    points, lines = three_points()
    server = scripted((404, b'{"code":"not found","message":"bucket \\"b\\" not found"}', {}))
    sink = InfluxSink(server.url, org="o", bucket="b", retry=FAST)
    sink.add(points)
    with pytest.raises(SinkError) as caught:
        sink.flush()
    assert caught.value.status == 404
    assert 'bucket "b" not found' in str(caught.value)
    assert str(caught.value).endswith(f"first line of the refused chunk: {lines[0]}")
    assert len(server.received) == 1


def test_retries_are_bounded_and_points_stay(scripted: Callable[..., ScriptedInflux]) -> None:
    server = scripted(*[(503, b"", {})] * 10)
    points, _ = three_points()
    policy = RetryPolicy(max_attempts=3, initial_delay_s=0.01, max_delay_s=0.01, jitter=0.0)
    sink = InfluxSink(server.url, org="o", bucket="b", retry=policy)
    sink.add(points)
    with pytest.raises(SinkUnavailable, match=r"after 3 attempts.*HTTP 503"):
        sink.flush()
    assert len(server.received) == 3
    assert (sink.stats.write_retries, sink.stats.write_failures, sink.pending) == (2, 1, 3)

    budget = RetryPolicy(
        max_attempts=100, initial_delay_s=0.05, max_delay_s=0.05, max_elapsed_s=0.2, jitter=0.0
    )
    timed = InfluxSink(server.url, org="o", bucket="b", retry=budget)
    timed.add(points)
    before = len(server.received)
    with pytest.raises(SinkUnavailable):
        timed.flush()
    # 0.2 s of budget with 0.05 s pauses: at most 5 attempts (the requests take time too).
    assert 2 <= len(server.received) - before <= 5


def test_backpressure_while_down_then_everything_is_written(
    scripted: Callable[..., ScriptedInflux],
) -> None:
    port = free_port()  # nothing listens there yet: connection refused
    policy = RetryPolicy(max_attempts=2, initial_delay_s=0.01, max_delay_s=0.01, jitter=0.0)
    sink = InfluxSink(
        f"http://{LOCALHOST}:{port}",
        org="o",
        bucket="b",
        retry=policy,
        max_buffered_points=10,
        chunk_size=4,
    )

    def batch(first: int, count: int) -> list[Point]:
        return [
            pts.volume(
                model_id="bp",
                model_version="1",
                segment="all",
                predictions=n,
                labels=0,
                late_predictions=0,
                dead_letters=0,
                window_start=n * 60 * 10**9,
            )
            for n in range(first, first + count)
        ]

    sink.add(batch(0, 6))
    with pytest.raises(SinkUnavailable, match=r"Connection refused"):
        sink.flush()
    sink.add(batch(6, 4))
    assert sink.pending == 10
    with pytest.raises(SinkBackpressure) as caught:
        sink.add(batch(10, 1))
    assert (caught.value.pending, caught.value.adding, caught.value.limit) == (10, 1, 10)
    assert "max_buffered_points=10" in str(caught.value)
    assert "Connection refused" in str(caught.value)  # the last failure is named
    assert sink.pending == 10  # nothing of the refused batch was taken

    server = scripted(port=port)
    sink.flush()
    assert sink.pending == 0
    sink.add(batch(10, 1))
    sink.flush()

    bodies = [r.body for r in server.received]
    assert [body.count("\n") + 1 for body in bodies] == [4, 4, 2, 1]
    written = [
        int(line.split("predictions=")[1].split("i")[0]) for b in bodies for line in b.split("\n")
    ]
    assert written == list(range(11))
    assert sink.stats.points_written == 11
    assert sink.stats.write_failures == 1
    sink.close()


def test_a_batch_larger_than_the_buffer_and_a_closed_sink_are_errors(tmp_path: Path) -> None:
    points, _ = three_points()
    sink = FileSink(tmp_path / "metrics.lp", max_buffered_points=2)
    with pytest.raises(SinkError, match="a batch of 3 points is larger than max_buffered_points=2"):
        sink.add(points)
    assert sink.pending == 0
    sink.add(points[:2])
    sink.close()
    with pytest.raises(SinkError, match="is closed"):
        sink.add(points[:1])
    assert len(read_line_protocol(tmp_path / "metrics.lp")) == 2


# ---------------------------------------------------------------------------
# secrets
# ---------------------------------------------------------------------------


def test_token_and_url_password_never_logged(
    scripted: Callable[..., ScriptedInflux], caplog: pytest.LogCaptureFixture
) -> None:
    token = f"tok-{uuid.uuid4().hex}"
    password = f"pw-{uuid.uuid4().hex}"
    caplog.set_level(logging.DEBUG)
    points, _ = three_points()
    # A server that echoes the token back in its error bodies.
    echo = json.dumps({"message": f"token {token} is not allowed"}).encode()
    server = scripted((503, echo, {}), (503, echo, {}), (401, echo, {}))
    messages: list[str] = []

    sink = InfluxSink(
        f"http://admin:{password}@{LOCALHOST}:{server.port}",
        org="o",
        bucket="b",
        token=SecretStr(token),
        retry=FAST,
    )
    sink.add(points)
    with pytest.raises(SinkError) as permanent:
        sink.flush()
    messages += [str(permanent.value), repr(sink)]
    assert server.received[0].headers["authorization"] == f"Token {token}"  # it was used

    down = InfluxSink(
        f"http://admin:{password}@{LOCALHOST}:{free_port()}",
        org="o",
        bucket="b",
        token=token,
        retry=RetryPolicy(max_attempts=2, initial_delay_s=0.01, jitter=0.0),
        max_buffered_points=3,
    )
    down.add(points)
    with pytest.raises(SinkUnavailable) as unavailable:
        down.flush()
    with pytest.raises(SinkBackpressure) as backpressure:
        down.add(points)
    messages += [str(unavailable.value), str(backpressure.value), repr(down)]

    logged = caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    assert "retrying" in logged  # the retries were logged ...
    for text in [logged, *messages]:
        assert token not in text  # ... without the token
        assert password not in text
    assert "**********" in str(permanent.value)


# ---------------------------------------------------------------------------
# file sink
# ---------------------------------------------------------------------------


def test_file_sink_round_trip_via_make_sink(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = DriftlineSettings(data_dir=tmp_path / "data")
    sink = make_sink(settings)
    assert isinstance(sink, FileSink)
    assert sink.path == tmp_path / "data" / "metrics.lp"

    rows = rows_for("file-model")
    built = [build(row) for row in rows]
    caplog.set_level(logging.INFO, logger="streams.sink")
    nan_point = pts.model_performance(
        model_id="file-model",
        model_version="v3",
        segment="all",
        metric="roc_auc",
        value=math.nan,
        n_labelled=0,
        coverage=0.0,
        is_final=False,
        window_start=W1,
    )
    all_nan = Point("model_performance", (("model_id", "x"),), {"value": math.inf}, W1)
    sink.add([*built, nan_point, all_nan])
    sink.flush()
    assert (sink.stats.dropped_non_finite, sink.stats.dropped_empty_points) == (2, 1)
    assert any("left out 2 NaN/inf fields" in r.getMessage() for r in caplog.records)

    correction = pts.model_performance(
        model_id="file-model",
        model_version="v3",
        segment="all",
        metric="f1",
        value=0.875,
        n_labelled=120,
        coverage=0.9375,
        is_final=True,
        window_start=W0,
    )
    sink.add([correction])
    sink.close()

    back = read_line_protocol(tmp_path / "data" / "metrics.lp")
    without_value = Point(
        "model_performance",
        (
            ("metric", "roc_auc"),
            ("model_id", "file-model"),
            ("model_version", "v3"),
            ("segment", "all"),
        ),
        {"n_labelled": 0, "coverage": 0.0, "is_final": False},
        epoch_ns(W1),
    )
    assert back == [*built, without_value, correction]
    latest = latest_points(back)
    assert len(latest) == len(back) - 1
    assert correction in latest and built[3] not in latest

    # Reopening appends after what is there.
    with FileSink(tmp_path / "data" / "metrics.lp") as again:
        again.add([built[0]])
    assert read_line_protocol(tmp_path / "data" / "metrics.lp")[-1] == built[0]


def test_file_sink_cuts_a_torn_last_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "metrics.lp"
    good = "volume,model_id=m predictions=1i 5\n"
    path.write_text(good + "volume,model_id=m predictions=2", encoding="utf-8")
    with pytest.raises(LineProtocolError, match=r"metrics\.lp, line 2: "):
        read_line_protocol(path)

    caplog.set_level(logging.WARNING, logger="streams.sink")
    with FileSink(path) as sink:
        assert path.read_text("utf-8") == good
        sink.add([Point("volume", (("model_id", "m"),), {"predictions": 3}, 6)])
    assert "removed an incomplete last line (31 bytes)" in caplog.text
    assert read_line_protocol(path) == [
        Point("volume", (("model_id", "m"),), {"predictions": 1}, 5),
        Point("volume", (("model_id", "m"),), {"predictions": 3}, 6),
    ]


def test_file_sink_cuts_a_line_torn_by_another_writer_before_appending(tmp_path: Path) -> None:
    # Workers share the file: one killed in the middle of an append leaves a
    # torn line that the next append of another worker would continue.
    path = tmp_path / "metrics.lp"
    with FileSink(path) as sink:
        sink.add([Point("volume", (("model_id", "a"),), {"predictions": 1}, 5)])
        sink.flush()
        with path.open("ab") as other:
            other.write(b"volume,model_id=b predic")
        sink.add([Point("volume", (("model_id", "a"),), {"predictions": 2}, 6)])
        sink.flush()
    assert read_line_protocol(path) == [
        Point("volume", (("model_id", "a"),), {"predictions": 1}, 5),
        Point("volume", (("model_id", "a"),), {"predictions": 2}, 6),
    ]


def test_lines_discarded_while_their_chunk_is_written_do_not_take_others_with_them(
    tmp_path: Path,
) -> None:
    # The worker's event loop discards a revoked partition's lines while the
    # writer thread is in the middle of a chunk.
    three = [Point("volume", (("model_id", m),), {"predictions": 1}, 5) for m in "abc"]
    lines = [point.to_line_protocol() for point in three]

    class Racing(FileSink):
        def _write_chunk(self, chunk: Sequence[str]) -> None:
            self.discard([lines[1]])  # in flight: written all the same
            super()._write_chunk(chunk)

    with Racing(tmp_path / "metrics.lp", chunk_size=2) as sink:
        sink.add(three)
        sink.flush()
        assert sink.pending == 0
    assert read_line_protocol(tmp_path / "metrics.lp") == three


def test_make_sink_picks_influx_when_a_url_is_set(tmp_path: Path) -> None:
    settings = DriftlineSettings(
        influx_url="http://127.0.0.1:9", influx_token="s3cret-token", data_dir=tmp_path
    )
    sink = make_sink(settings, max_buffered_points=7)
    assert isinstance(sink, InfluxSink)
    assert (sink.org, sink.bucket, sink.max_buffered_points) == ("driftline", "driftline", 7)
    assert "s3cret-token" not in repr(sink)
    sink.close()
    assert not (tmp_path / "metrics.lp").exists()
