"""The whole pipeline: produced events → `driftline worker` → points in VictoriaMetrics.

A seeded scenario (10 features, numeric and categorical, drift from a known
window on, labels delayed by random event-time lags, some labels produced
before their prediction, malformed messages, a model nobody monitors) runs
through real worker processes on the real broker. Every point is compared with
an offline computation of the same windows done here with ``detectors/`` on the
generated events — not with anything the worker reports about itself.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer

from detectors.classification import BinaryStats, positive_mask
from detectors.profile import ReferenceProfile
from detectors.registry import run_drift
from detectors.sketch import empty_sketch
from schemas import DeadLetter
from streams.synthetic import ScenarioConfig, generate, write_training_csv
from tests.servers import VMSeries, consume_messages, unique_topic_name, vm_export

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
WINDOW_S = 300
LATENESS_S = 30
NUMERIC = [
    "tenure_months",
    "monthly_charges",
    "support_calls",
    "days_since_login",
    "age",
    "sessions_30d",
    "discount_pct",
]
CATEGORICAL = ["plan", "device", "country"]
METHODS = {"numeric": ["ks", "psi", "wasserstein"], "categorical": ["chi2", "jensenshannon"]}
MIN_SAMPLES = 50

CONFIG = f"""
models:
  - id: churn
    task: binary
    reference: ref-{{version}}.json
    segment_by: [region]
    window: {{size: {WINDOW_S}s, allowed_lateness: {LATENESS_S}s, label_horizon: 1h,
              orphan_label_ttl: 2h, emit_interval: 1s}}
    drift:
      numeric_methods: [ks, psi, wasserstein]
      categorical_methods: [chi2, jensenshannon]
      min_samples: {MIN_SAMPLES}
    performance: {{metrics: [accuracy, f1, roc_auc], min_labelled: 20}}
    features:
{chr(10).join(f"      - {{name: {name}, kind: numeric}}" for name in NUMERIC)}
{chr(10).join(f"      - {{name: {name}, kind: categorical}}" for name in CATEGORICAL)}
topics: {{partitions: 4}}
"""


@dataclass
class Run:
    """A worker run's environment and what was produced."""

    env: dict[str, str]
    workdir: Path
    predictions: list[dict[str, Any]]
    labels: list[dict[str, Any]]
    malformed: int
    reference: ReferenceProfile


def _driftline(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        timeout=120,
        check=False,
    )


def _write_training_csv(path: Path) -> None:
    write_training_csv(path, predictions=20_000, seed=101)


@pytest.fixture
def pipeline(kafka_bootstrap: str, own_victoria_metrics_url: str, tmp_path: Path) -> Iterator[Run]:
    prefix = unique_topic_name("e2e")
    env = {
        "DRIFTLINE_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "DRIFTLINE_KAFKA_SESSION_TIMEOUT_S": "6",
        "DRIFTLINE_KAFKA_HEARTBEAT_INTERVAL_S": "1",
        "DRIFTLINE_INFLUX_URL": own_victoria_metrics_url,
        "DRIFTLINE_INFLUX_TOKEN": "e2e-token",
        "DRIFTLINE_DATA_DIR": str(tmp_path / "data"),
        "DRIFTLINE_TOPIC_PREDICTIONS": f"{prefix}.predictions",
        "DRIFTLINE_TOPIC_LABELS": f"{prefix}.labels",
        "DRIFTLINE_TOPIC_ALERTS": f"{prefix}.alerts",
        "DRIFTLINE_TOPIC_RETRAIN_REQUESTS": f"{prefix}.retrain",
        "DRIFTLINE_TOPIC_DEAD_LETTER": f"{prefix}.dead",
        "DRIFTLINE_TOPIC_PARTIALS": f"{prefix}.partials",
    }
    (tmp_path / "monitors.yaml").write_text(CONFIG)
    _write_training_csv(tmp_path / "train.csv")
    built = _driftline(
        "reference", "build", "--model", "churn", "--version", "1", "--data", "train.csv",
        "--prediction", "prediction", "--score", "score", "--target", "label",
        "-c", "monitors.yaml", "-o", "ref-1.json", env=env, cwd=tmp_path,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout + built.stderr
    created = _driftline("topics", "create", "-c", "monitors.yaml", env=env, cwd=tmp_path)
    assert created.returncode == 0, created.stdout + created.stderr

    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=6)
    scenario = generate(
        ScenarioConfig(start=start, predictions=6_000, rate_per_s=2.0, drift_from=0.5, seed=11)
    )
    early = {label["prediction_id"] for label in scenario.labels[::40]}
    # lz4 as serving apps often compress: the workers must read it.
    producer = Producer(
        {"bootstrap.servers": kafka_bootstrap, "linger.ms": 20, "compression.type": "lz4"}
    )
    predictions_topic, labels_topic = (
        env["DRIFTLINE_TOPIC_PREDICTIONS"],
        env["DRIFTLINE_TOPIC_LABELS"],
    )

    def send(topic: str, event: dict[str, Any]) -> None:
        producer.produce(topic, orjson.dumps(event), event["prediction_id"].encode())
        producer.poll(0)

    # A few labels are on the topic before their prediction is.
    for label in scenario.labels:
        if label["prediction_id"] in early:
            send(labels_topic, label)
    for index, event in enumerate(scenario.predictions):
        send(predictions_topic, event)
        if index % 200 == 7:
            send(predictions_topic, event)  # a serving app's retry: a duplicate
    for label in scenario.labels:
        if label["prediction_id"] not in early:
            send(labels_topic, label)
    stranger = dict(scenario.predictions[0], prediction_id="x-1", model_id="fraud")
    future = dict(
        scenario.predictions[1],
        prediction_id="x-2",
        timestamp=(datetime.now(UTC) + timedelta(days=3)).isoformat(),
    )
    for index, raw in enumerate(scenario.malformed):
        producer.produce(predictions_topic, raw, f"bad-{index}".encode())
    for event in (stranger, future):
        send(predictions_topic, event)
    malformed = len(scenario.malformed) + 2
    assert producer.flush(30) == 0
    yield Run(
        env,
        tmp_path,
        scenario.predictions,
        scenario.labels,
        malformed,
        ReferenceProfile.from_json((tmp_path / "ref-1.json").read_bytes()),
    )


def _start_worker(
    run: Run, name: str, extra_env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    log = (run.workdir / f"{name}.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "worker", "-c", "monitors.yaml"],
        cwd=run.workdir,
        env={**os.environ, "PYTHONPATH": str(ROOT), **run.env, **(extra_env or {})},
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def _window(moment: str) -> int:
    seconds = int(datetime.fromisoformat(moment).timestamp())
    return seconds - seconds % WINDOW_S


def _expected_windows(run: Run) -> list[int]:
    """Windows every partition has closed: those ending well before the newest event."""
    newest = max(datetime.fromisoformat(e["timestamp"]).timestamp() for e in run.predictions)
    starts = sorted({_window(event["timestamp"]) for event in run.predictions})
    return [start for start in starts if start + WINDOW_S + LATENESS_S + 120 < newest]


def _series(url: str, name: str) -> dict[tuple[tuple[str, str], ...], list[tuple[int, float]]]:
    found: list[VMSeries] = vm_export(url, f'{{__name__="{name}"}}', start=0)
    return {
        tuple(sorted((k, v) for k, v in s.metric.items() if k != "__name__")): s.points()
        for s in found
    }


def _wait_for(
    run: Run,
    url: str,
    windows: list[int],
    workers: list[subprocess.Popen[bytes]],
    timeout: float = 120,
) -> None:
    deadline = time.monotonic() + timeout
    wanted = {start * 1000 for start in windows}
    seen: set[int] = set()
    while time.monotonic() < deadline and all(w.poll() is None for w in workers):
        volume = _series(url, "volume_predictions")
        seen = {t for points in volume.values() for t, _ in points}
        if wanted <= seen:
            return
        time.sleep(1.0)
    logs = "\n".join(p.read_text()[-3000:] for p in run.workdir.glob("worker*.log"))
    raise AssertionError(f"windows {sorted(wanted - seen)} never appeared; worker logs:\n{logs}")


def _offline_drift(run: Run, window: int) -> dict[tuple[str, str], Any]:
    events = [e for e in run.predictions if _window(e["timestamp"]) == window]
    results = {}
    for kind, names in (("numeric", NUMERIC), ("categorical", CATEGORICAL)):
        for name in names:
            profile = run.reference.features[name]
            sketch = empty_sketch(profile)
            values = [e["features"][name] for e in events]
            sketch.update(
                [math.nan if v is None else v for v in values] if kind == "numeric" else values
            )
            for method in METHODS[kind]:
                results[(name, method)] = run_drift(
                    method, profile, sketch, min_samples=MIN_SAMPLES
                )
    return results


def _check_points(run: Run, url: str, windows: list[int]) -> None:
    statistic = _series(url, "feature_drift_statistic")
    drifted = _series(url, "feature_drift_drifted")
    for window in windows:
        expected = _offline_drift(run, window)
        for (feature, method), result in expected.items():
            key: tuple[tuple[str, str], ...] = (
                ("feature", feature), ("method", method), ("model_id", "churn"),
                ("model_version", "1"), ("segment", "all"),
            )  # fmt: skip
            samples = dict(statistic[key])
            assert result.statistic is not None
            assert samples[window * 1000] == pytest.approx(result.statistic, rel=1e-9, abs=1e-12), (
                feature, method, window,
            )  # fmt: skip
            assert dict(drifted[key])[window * 1000] == float(result.drifted)

    # The drifting features are flagged from the drift window on, not before.
    ks_monthly = dict(
        drifted[(("feature", "monthly_charges"), ("method", "ks"), ("model_id", "churn"),
                 ("model_version", "1"), ("segment", "all"))]
    )  # fmt: skip
    drift_start = _window(run.predictions[len(run.predictions) // 2]["timestamp"])
    assert all(ks_monthly[w * 1000] == 0.0 for w in windows if w + WINDOW_S <= drift_start)
    assert all(ks_monthly[w * 1000] == 1.0 for w in windows if w > drift_start)

    # Performance: every produced label joined; values equal an offline computation.
    labels = {label["prediction_id"]: label for label in run.labels}
    accuracy = _series(url, "model_performance_value")
    coverage = _series(url, "model_performance_coverage")
    lag_p50 = _series(url, "label_lag_p50_s")
    for window in windows:
        events = [e for e in run.predictions if _window(e["timestamp"]) == window]
        joined = [e for e in events if e["prediction_id"] in labels]
        stats = BinaryStats().update(
            positive_mask([labels[e["prediction_id"]]["label"] for e in joined], 1),
            positive_mask([e["prediction"] for e in joined], 1),
            [e["scores"]["1"] for e in joined],
        )
        want = stats.compute(["accuracy", "f1", "roc_auc"])
        for metric in ("accuracy", "f1", "roc_auc"):
            key = (("metric", metric), ("model_id", "churn"), ("model_version", "1"),
                   ("segment", "all"))  # fmt: skip
            values = [v for t, v in accuracy[key] if t == window * 1000]
            # Re-emitted as labels arrived; the corrected (complete) value is among them.
            assert any(v == pytest.approx(want[metric].value, rel=1e-9) for v in values), (
                metric, window, values, want[metric].value,
            )  # fmt: skip
        key = (("metric", "accuracy"), ("model_id", "churn"), ("model_version", "1"),
               ("segment", "all"))  # fmt: skip
        covered = [v for t, v in coverage[key] if t == window * 1000]
        assert any(v == pytest.approx(len(joined) / len(events), rel=1e-9) for v in covered)
        lags = sorted(
            datetime.fromisoformat(labels[e["prediction_id"]]["timestamp"]).timestamp()
            - datetime.fromisoformat(e["timestamp"]).timestamp()
            for e in joined
        )
        exact_p50 = lags[math.ceil(0.5 * len(lags)) - 1]
        reported = [v for t, v in lag_p50[(("model_id", "churn"), ("model_version", "1"))]
                    if t == window * 1000]  # fmt: skip
        # The lag histogram's bins are < 5 % wide: the reported p50 is the upper
        # edge of the bin holding the exact one.
        assert any(exact_p50 <= v <= max(exact_p50 * 1.05, 0.011) for v in reported), (
            window, exact_p50, reported,
        )  # fmt: skip

    # Volume: on-time predictions per window equal what was produced for it.
    volume = _series(url, "volume_predictions")
    produced = Counter(_window(e["timestamp"]) for e in run.predictions)
    key = (("model_id", "churn"), ("model_version", "1"), ("segment", "all"))
    for window in windows:
        assert dict(volume[key])[window * 1000] == produced[window]
    # Segments split the same predictions: their volumes add up to the total.
    by_segment: dict[int, float] = defaultdict(float)
    for series_key, points in volume.items():
        if dict(series_key)["segment"].startswith("region="):
            # a window's volume is re-written as labels arrive: one value per time
            for t, v in dict(points).items():
                by_segment[t] += v
    for window in windows:
        assert by_segment[window * 1000] == produced[window], {
            series_key: dict(points).get(window * 1000) for series_key, points in volume.items()
        }


def _check_dead_letters(run: Run, bootstrap: str) -> None:
    letters = [
        DeadLetter.model_validate_json(message.value())
        for message in consume_messages(
            bootstrap, run.env["DRIFTLINE_TOPIC_DEAD_LETTER"], run.malformed
        )
    ]
    assert len(letters) == run.malformed
    reasons = " | ".join(letter.error_message for letter in letters)
    assert "'fraud' is not monitored" in reasons
    assert "ahead of the clock" in reasons
    assert "Invalid JSON" in reasons
    assert "timestamp: Input should have timezone info" in reasons
    assert all(letter.source_topic == run.env["DRIFTLINE_TOPIC_PREDICTIONS"] for letter in letters)


def test_one_worker_matches_an_offline_computation(
    pipeline: Run, own_victoria_metrics_url: str, kafka_bootstrap: str
) -> None:
    windows = _expected_windows(pipeline)
    assert len(windows) >= 3
    worker = _start_worker(pipeline, "worker")
    try:
        _wait_for(pipeline, own_victoria_metrics_url, windows, [worker])
        time.sleep(3)  # let the last performance re-emissions land
        _check_points(pipeline, own_victoria_metrics_url, windows)
        _check_dead_letters(pipeline, kafka_bootstrap)
    finally:
        _stop(worker)
    assert worker.returncode == 0, (pipeline.workdir / "worker.log").read_text()[-3000:]


def test_two_workers_give_the_same_points(
    pipeline: Run, own_victoria_metrics_url: str, kafka_bootstrap: str
) -> None:
    windows = _expected_windows(pipeline)
    workers = [_start_worker(pipeline, "worker-a"), _start_worker(pipeline, "worker-b")]
    try:
        _wait_for(pipeline, own_victoria_metrics_url, windows, workers, timeout=180)
        time.sleep(3)
        _check_points(pipeline, own_victoria_metrics_url, windows)
        _check_dead_letters(pipeline, kafka_bootstrap)
        logs = [(pipeline.workdir / f"worker-{n}.log").read_text() for n in "ab"]
        # Both workers took part: each one processed partitions of its own.
        assert all("restored from" in log or "loaded reference" in log for log in logs)
    finally:
        for worker in workers:
            _stop(worker)


def test_a_killed_worker_resumes_without_loss_or_double_counting(
    pipeline: Run, own_victoria_metrics_url: str, kafka_bootstrap: str
) -> None:
    windows = _expected_windows(pipeline)
    # Checkpoints every 50 ms, so the first one is written early in the scenario.
    first = _start_worker(pipeline, "worker-1", {"DRIFTLINE_CHECKPOINT_INTERVAL_S": "0.05"})
    try:
        checkpoints = pipeline.workdir / "data" / "checkpoints"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not list(checkpoints.glob("partition-*.bin")):
            time.sleep(0.02)
        assert list(checkpoints.glob("partition-*.bin")), "the worker never checkpointed"
    finally:
        first.kill()  # no clean shutdown: state is whatever the last checkpoint holds
        first.wait(10)
    volume = _series(own_victoria_metrics_url, "volume_predictions")
    written = {t for points in volume.values() for t, _ in points}
    # killed mid-scenario: some expected windows were not written yet
    assert not {start * 1000 for start in windows} <= written
    second = _start_worker(pipeline, "worker-2")
    try:
        _wait_for(pipeline, own_victoria_metrics_url, windows, [second], timeout=180)
        time.sleep(3)
        _check_points(pipeline, own_victoria_metrics_url, windows)
        _check_dead_letters(pipeline, kafka_bootstrap)
        assert "restored from" in (pipeline.workdir / "worker-2.log").read_text()
    finally:
        _stop(second)
