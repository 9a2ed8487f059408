"""The whole pipeline: produced events → `driftline worker` → points in VictoriaMetrics.

A seeded scenario (10 features, numeric and categorical, drift from a known
window on, labels delayed by random event-time lags, some labels produced
before their prediction, malformed messages, a model nobody monitors) runs
through real worker processes on the real broker. Every point is compared with
an offline computation of the same windows done with ``detectors/`` on the
generated events (:mod:`tests.support.pipeline`) — not with anything the
worker reports about itself.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from streams.synthetic import ScenarioConfig, generate
from tests.servers import unique_topic_name
from tests.support.pipeline import (
    CATEGORICAL,
    CONFIG,
    LATENESS_S,
    NUMERIC,
    WINDOW_S,
    Run,
    build_reference,
    check_dead_letters,
    check_points,
    create_topics,
    driftline,
    expected_windows,
    load_reference,
    offline_drift,
    produce_backlog,
    scenario_start,
    series,
    start_worker,
    stop,
    topic_env,
    wait_for,
    window,
    write_reference_training_csv,
)

# tests/e2e/test_alerts.py imports these names from this module.
__all__ = [
    "CATEGORICAL",
    "NUMERIC",
    "Run",
    "_driftline",
    "_start_worker",
    "_stop",
    "_write_training_csv",
]

pytestmark = pytest.mark.integration

_driftline = driftline
_start_worker = start_worker
_stop = stop
_write_training_csv = write_reference_training_csv


def _prepare(bootstrap: str, metrics_url: str, workdir: Path, config: str, predictions: int) -> Run:
    env = {
        **topic_env(unique_topic_name("e2e"), bootstrap, workdir / "data"),
        "DRIFTLINE_INFLUX_URL": metrics_url,
        "DRIFTLINE_INFLUX_TOKEN": "e2e-token",
    }
    (workdir / "monitors.yaml").write_text(config)
    build_reference(workdir, env)
    create_topics(workdir, env)
    scenario = generate(
        ScenarioConfig(
            start=scenario_start(6),
            predictions=predictions,
            rate_per_s=2.0,
            drift_from=0.5,
            seed=11,
        )
    )
    malformed = produce_backlog(bootstrap, env, scenario)
    return Run(
        env, workdir, scenario.predictions, scenario.labels, malformed, load_reference(workdir)
    )


@pytest.fixture
def pipeline(kafka_bootstrap: str, own_victoria_metrics_url: str, tmp_path: Path) -> Iterator[Run]:
    yield _prepare(kafka_bootstrap, own_victoria_metrics_url, tmp_path, CONFIG, 6_000)


def test_one_worker_matches_an_offline_computation(
    pipeline: Run, own_victoria_metrics_url: str, kafka_bootstrap: str
) -> None:
    windows = expected_windows(pipeline)
    assert len(windows) >= 3
    worker = start_worker(pipeline, "worker")
    try:
        wait_for(pipeline, own_victoria_metrics_url, windows, [worker])
        time.sleep(3)  # let the last performance re-emissions land
        check_points(pipeline, own_victoria_metrics_url, windows)
        check_dead_letters(pipeline, kafka_bootstrap)
    finally:
        stop(worker)
    assert worker.returncode == 0, (pipeline.workdir / "worker.log").read_text()[-3000:]


def test_two_workers_give_the_same_points(
    pipeline: Run, own_victoria_metrics_url: str, kafka_bootstrap: str
) -> None:
    windows = expected_windows(pipeline)
    workers = [start_worker(pipeline, "worker-a"), start_worker(pipeline, "worker-b")]
    try:
        wait_for(pipeline, own_victoria_metrics_url, windows, workers, timeout=180)
        time.sleep(3)
        check_points(pipeline, own_victoria_metrics_url, windows)
        check_dead_letters(pipeline, kafka_bootstrap)
        logs = [(pipeline.workdir / f"worker-{n}.log").read_text() for n in "ab"]
        # Both workers took part: each one processed partitions of its own.
        assert all("restored from" in log or "loaded reference" in log for log in logs)
    finally:
        for worker in workers:
            stop(worker)


def test_a_killed_worker_resumes_without_loss_or_double_counting(
    pipeline: Run, own_victoria_metrics_url: str, kafka_bootstrap: str
) -> None:
    windows = expected_windows(pipeline)
    # Checkpoints every 50 ms, so the first one is written early in the scenario.
    first = start_worker(pipeline, "worker-1", {"DRIFTLINE_CHECKPOINT_INTERVAL_S": "0.05"})
    try:
        checkpoints = pipeline.workdir / "data" / "checkpoints"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not list(checkpoints.glob("partition-*.bin")):
            time.sleep(0.02)
        assert list(checkpoints.glob("partition-*.bin")), "the worker never checkpointed"
    finally:
        first.kill()  # no clean shutdown: state is whatever the last checkpoint holds
        first.wait(10)
    volume = series(own_victoria_metrics_url, "volume_predictions")
    written = {t for points in volume.values() for t, _ in points}
    # killed mid-scenario: some expected windows were not written yet
    assert not {start * 1000 for start in windows} <= written
    second = start_worker(pipeline, "worker-2")
    try:
        wait_for(pipeline, own_victoria_metrics_url, windows, [second], timeout=180)
        time.sleep(3)
        check_points(pipeline, own_victoria_metrics_url, windows)
        check_dead_letters(pipeline, kafka_bootstrap)
        assert "restored from" in (pipeline.workdir / "worker-2.log").read_text()
    finally:
        stop(second)


def test_quiet_partitions_close_and_settle_the_last_windows(
    kafka_bootstrap: str, own_victoria_metrics_url: str, tmp_path: Path
) -> None:
    """With ``close_when_idle``, the windows no newer event closes are evaluated too,
    by two workers that share the partitions."""
    config = CONFIG.replace("emit_interval: 1s}", "emit_interval: 1s, close_when_idle: 4s}")
    assert config != CONFIG
    run = _prepare(kafka_bootstrap, own_victoria_metrics_url, tmp_path, config, 1_500)
    starts = sorted({window(event["timestamp"]) for event in run.predictions})
    newest = max(datetime.fromisoformat(e["timestamp"]).timestamp() for e in run.predictions)
    # Without the setting no event would ever close the last window, or settle any.
    assert starts[-1] + WINDOW_S + LATENESS_S > newest
    started = [start_worker(run, f"worker-{n}") for n in range(2)]
    try:
        wait_for(run, own_victoria_metrics_url, starts, started)
        deadline = time.monotonic() + 60
        final: dict[int, float] = {}
        key = (("metric", "accuracy"), ("model_id", "churn"), ("model_version", "1"),
               ("segment", "all"))  # fmt: skip
        while time.monotonic() < deadline:
            # a window's point is re-written at one timestamp: any sample may come last
            final = defaultdict(float)
            for t, v in series(own_victoria_metrics_url, "model_performance_is_final")[key]:
                final[t // 1000] = max(final[t // 1000], v)
            if all(final[start] == 1.0 for start in starts):
                break
            time.sleep(1.0)
        assert dict(final) == dict.fromkeys(starts, 1.0)
        # Every window, the last one included, equals the offline computation.
        volume = series(own_victoria_metrics_url, "volume_predictions")
        produced = Counter(window(e["timestamp"]) for e in run.predictions)
        counts = dict(volume[(("model_id", "churn"), ("model_version", "1"), ("segment", "all"))])
        assert {t // 1000: v for t, v in counts.items()} == produced
        statistic = series(own_victoria_metrics_url, "feature_drift_statistic")
        for start in starts:
            for (feature, method), result in offline_drift(
                run.reference, run.predictions, start
            ).items():
                series_key = (
                    ("feature", feature), ("method", method), ("model_id", "churn"),
                    ("model_version", "1"), ("segment", "all"),
                )  # fmt: skip
                assert dict(statistic[series_key])[start * 1000] == pytest.approx(
                    result.statistic, rel=1e-9, abs=1e-12
                ), (feature, method, start)
        labels = {label["prediction_id"] for label in run.labels}
        coverage = series(own_victoria_metrics_url, "model_performance_coverage")[key]
        for start in starts:
            events = [e for e in run.predictions if window(e["timestamp"]) == start]
            joined = sum(e["prediction_id"] in labels for e in events)
            # re-written as partitions' partials came; the complete value is among them
            covered = [v for t, v in coverage if t == start * 1000]
            assert any(v == pytest.approx(joined / len(events), rel=1e-9) for v in covered), (
                start,
                covered,
            )
    finally:
        for worker in started:
            stop(worker)
    for n, worker in enumerate(started):
        assert worker.returncode == 0, (run.workdir / f"worker-{n}.log").read_text()[-3000:]
