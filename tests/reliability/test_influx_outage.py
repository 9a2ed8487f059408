"""An InfluxDB outage: the store goes away mid-run and comes back; no point is lost.

A real ``driftline worker`` writes the end-to-end scenario of
:mod:`tests.support.pipeline` to VictoriaMetrics (which speaks InfluxDB's v2
write API). After the first part of the traffic is written, the
VictoriaMetrics process is stopped by PID; the rest of the traffic is produced
while it is down. The worker retries with back-off, its buffer fills to the
back-pressure mark (lowered with ``DRIFTLINE_SINK_MAX_BUFFERED_POINTS`` so a
few windows reach it) and it holds windows back. Then a new VictoriaMetrics
process starts with the same command line: same port, same storage directory.

Checked afterwards:

* every point of every closed window equals the offline computation of
  :func:`tests.support.pipeline.check_points` (nothing lost, nothing wrong),
  and each closed window has exactly the drift points the configuration asks
  for, counted here from the feature list;
* the worker's resident memory grew by less than :data:`RSS_GROWTH_BOUND_KIB`
  while the store was down;
* back-pressure shows in the log (the ``back-pressure:`` warning naming the
  failed writes, retries that failed) and in the worker's counter line (the
  minute line, also logged at shutdown: ``write_retries``, ``write_failures``,
  ``windows held back N times``, ``pending=0`` once the store is back).

The issue asked for a 60 s outage; :data:`OUTAGE_S` is shorter by default to
keep the test near a minute on two cores (``DRIFTLINE_TEST_OUTAGE_S=60`` runs
the full one; docs/reliability.md has its figures). It is still long enough for
several flushes to exhaust their retries (about 7.5 s each with the default
:class:`streams.sink.RetryPolicy`) and for back-pressure to engage; the test
checks both happened rather than trusting the duration.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer

from streams.synthetic import ScenarioConfig, generate
from tests.servers import ServerProcess, ServerStartError, start_victoria_metrics, unique_topic_name
from tests.support.pipeline import (
    CATEGORICAL,
    CONFIG,
    METHODS,
    NUMERIC,
    WINDOW_S,
    Run,
    build_reference,
    check_points,
    create_topics,
    expected_windows,
    load_reference,
    scenario_start,
    series,
    start_worker,
    stop,
    topic_env,
    wait_for,
)

pytestmark = pytest.mark.integration

OUTAGE_S = float(os.environ.get("DRIFTLINE_TEST_OUTAGE_S", "25"))
"""How long VictoriaMetrics stays down at least (the issue's 60 s, shortened; see above)."""

MAX_BUFFERED_POINTS = 120
"""``DRIFTLINE_SINK_MAX_BUFFERED_POINTS`` of the worker: back-pressure from 60 pending points."""

RSS_GROWTH_BOUND_KIB = 64 * 1024
"""Most the worker's VmRSS may grow while the store is down (it starts near 150 MiB)."""

CUT = 0.4
"""Share of the scenario's event time produced before the outage; the rest during it."""

RETRY_LINE = re.compile(r"write of \d+ points to \S+ bucket=\S+ failed \(attempt \d+/\d+\)")
GIVE_UP_LINE = "writing points failed, they stay buffered"
BACKPRESSURE_LINE = re.compile(r"back-pressure: (\d+) points wait for ")
COUNTER_LINE = re.compile(
    r"sink \S+ bucket=\S+: points_written=(\d+), write_retries=(\d+), write_failures=(\d+), "
    r"dropped_non_finite=\d+, dropped_empty_points=\d+, rejected_points=0, pending=(\d+), "
    r"windows held back (\d+) times"
)


@pytest.fixture
def victoria_metrics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A VictoriaMetrics of this test alone, as a process the test can stop and restart."""
    failure: ServerStartError | None = None
    try:
        server = start_victoria_metrics(tmp_path_factory.mktemp("outage-victoria-metrics"))
    except ServerStartError as exc:
        failure = exc
    if failure is not None:
        pytest.fail(str(failure), pytrace=False)
    try:
        yield server
    finally:
        server.stop()


def rss_kib(pid: int) -> int:
    """Resident set size of a process, from ``/proc/PID/status`` (kiB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS in /proc/{pid}/status")


def produce(bootstrap: str, env: dict[str, str], events: list[tuple[str, dict[str, Any]]]) -> None:
    """Produce ``(topic, event)`` pairs keyed by prediction id and wait for the broker."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    for topic, event in events:
        producer.produce(topic, orjson.dumps(event), event["prediction_id"].encode())
        producer.poll(0)
    assert producer.flush(30) == 0


def epoch(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["timestamp"]).timestamp()


def test_no_point_is_lost_and_memory_stays_bounded_while_influxdb_is_down(
    kafka_bootstrap: str, victoria_metrics: ServerProcess, tmp_path: Path
) -> None:
    url = victoria_metrics.endpoint
    env = {
        **topic_env(unique_topic_name("outage"), kafka_bootstrap, tmp_path / "data"),
        "DRIFTLINE_INFLUX_URL": url,
        "DRIFTLINE_INFLUX_TOKEN": "outage-token",
        "DRIFTLINE_SINK_MAX_BUFFERED_POINTS": str(MAX_BUFFERED_POINTS),
    }
    (tmp_path / "monitors.yaml").write_text(CONFIG)
    build_reference(tmp_path, env)
    create_topics(tmp_path, env)
    scenario = generate(
        ScenarioConfig(
            start=scenario_start(6), predictions=6_000, rate_per_s=2.0, drift_from=0.5,
            seed=11, malformed_every=0,
        )
    )  # fmt: skip
    run = Run(env, tmp_path, scenario.predictions, scenario.labels, 0, load_reference(tmp_path))
    first, last = epoch(scenario.predictions[0]), epoch(scenario.predictions[-1])
    cut = first + CUT * (last - first)
    events = sorted(
        [(env["DRIFTLINE_TOPIC_PREDICTIONS"], e) for e in scenario.predictions]
        + [(env["DRIFTLINE_TOPIC_LABELS"], e) for e in scenario.labels],
        key=lambda pair: epoch(pair[1]),
    )
    before = [pair for pair in events if epoch(pair[1]) < cut]
    during = [pair for pair in events if epoch(pair[1]) >= cut]
    windows = expected_windows(run)
    written_before = [w for w in windows if w + WINDOW_S + 120 < cut]
    assert len(written_before) >= 2 and len(windows) - len(written_before) >= 4

    produce(kafka_bootstrap, env, before)
    worker = start_worker(run, "worker")
    log_path = tmp_path / "worker.log"
    try:
        assert worker.pid is not None
        wait_for(run, url, written_before, [worker], timeout=60)
        rss_before = rss_kib(worker.pid)

        # The outage: the store's process stops; traffic goes on.
        went_down = time.monotonic()
        assert victoria_metrics.stop() is not None
        produce(kafka_bootstrap, env, during)
        samples = [rss_kib(worker.pid)]
        backpressure: list[int] = []
        while time.monotonic() - went_down < OUTAGE_S or not backpressure:
            assert worker.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() - went_down < OUTAGE_S + 30, (
                "back-pressure never engaged:\n" + log_path.read_text()[-3000:]
            )
            samples.append(rss_kib(worker.pid))
            backpressure = [int(n) for n in BACKPRESSURE_LINE.findall(log_path.read_text())]
            time.sleep(0.5)
        during_log = log_path.read_text()
        victoria_metrics.restart()
        back_up = time.monotonic()

        wait_for(run, url, windows, [worker], timeout=60)
        recovered_s = time.monotonic() - back_up
        rss_after = rss_kib(worker.pid)
        # Held windows and re-emissions drain at the store's pace: retry until they match.
        deadline = time.monotonic() + 45
        while True:
            try:
                check_points(run, url, windows)
                break
            except (AssertionError, KeyError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(1.0)
        matched_s = time.monotonic() - back_up
    finally:
        stop(worker)
    log = log_path.read_text()
    assert worker.returncode == 0, log[-3000:]
    # The counter line of the minute log, also written at shutdown.
    counters = COUNTER_LINE.findall(log)

    # Nothing lost: each closed window has one overall point per feature and method.
    per_window = len(NUMERIC) * len(METHODS["numeric"]) + len(CATEGORICAL) * len(
        METHODS["categorical"]
    )
    statistic = series(url, "feature_drift_statistic")
    closed = {start * 1000 for start in windows}
    found = {
        (key, t) for key, points in statistic.items() if ("segment", "all") in key
        for t, _ in points if t in closed
    }  # fmt: skip
    assert len(found) == per_window * len(windows)

    # The outage was real: flushes exhausted their retries, back-pressure engaged.
    assert len(RETRY_LINE.findall(during_log)) >= 4
    assert during_log.count(GIVE_UP_LINE) >= 2
    assert max(backpressure) >= MAX_BUFFERED_POINTS // 2
    # ... because of the outage, not only of the first backlog: the reason is named.
    assert re.search(r"back-pressure: \d+ points wait for .*\(giving up writing", during_log)

    # Memory stayed bounded while the store was down.
    growth = max(samples) - rss_before
    assert growth < RSS_GROWTH_BOUND_KIB, (rss_before, max(samples), rss_after)

    # The counters say the same; the buffer is empty again.
    assert counters, "no sink counter line:\n" + log[-3000:]
    written, retries, failures, pending, held = (int(v) for v in counters[-1])
    assert retries >= 4 and failures >= 2 and held >= 1
    assert pending == 0
    assert written >= len(found)
    print(
        f"outage {OUTAGE_S:.0f} s, windows back in {recovered_s:.1f} s, all points matched "
        f"after {matched_s:.1f} s; drift points "
        f"{len(found)}/{per_window * len(windows)} in {len(windows)} windows; RSS KiB before "
        f"{rss_before}, max during {max(samples)}, after {rss_after}; counters written="
        f"{written} retries={retries} failures={failures} held={held}; back-pressure at "
        f"{backpressure}"
    )
