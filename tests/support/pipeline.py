"""The end-to-end scenario, the worker launcher and the offline checks.

A seeded scenario (10 features, numeric and categorical, drift from a known
window on, labels delayed by random event-time lags, some labels produced
before their prediction, malformed messages, a model nobody monitors) runs
through real ``driftline worker`` processes. Every point is compared with an
offline computation of the same windows done here with ``detectors/`` on the
generated events — not with anything the worker reports about itself.

Used by ``tests/e2e/test_pipeline.py``, ``tests/reliability/test_chaos.py``
and ``benchmarks/chaos.py``.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
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
from detectors.result import DriftResult
from detectors.sketch import empty_sketch
from schemas import DeadLetter
from streams.synthetic import Scenario, write_training_csv
from tests.servers import VMSeries, consume_at_least, vm_export

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
PARTITIONS = 4

FEATURES_YAML = "\n".join(
    [f"      - {{name: {name}, kind: numeric}}" for name in NUMERIC]
    + [f"      - {{name: {name}, kind: categorical}}" for name in CATEGORICAL]
)

MODELS_YAML = f"""
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
{FEATURES_YAML}"""
"""The end-to-end model, the ``models:`` part of a configuration."""

CONFIG = f"""{MODELS_YAML}
topics: {{partitions: {PARTITIONS}}}
"""
"""The monitor configuration of the end-to-end scenario (no alert rules)."""

SeriesKey = tuple[tuple[str, str], ...]


@dataclass
class Run:
    """A worker run's environment and what was produced."""

    env: dict[str, str]
    workdir: Path
    predictions: list[dict[str, Any]]
    labels: list[dict[str, Any]]
    malformed: int
    reference: ReferenceProfile


def topic_env(prefix: str, bootstrap: str, data_dir: Path) -> dict[str, str]:
    """Worker environment: the broker, Tansu's group timings, a data dir, topics named by prefix.

    Parameters
    ----------
    prefix
        Unique prefix of every topic name.
    bootstrap
        ``host:port`` of the broker.
    data_dir
        ``DRIFTLINE_DATA_DIR``.
    """
    return {
        "DRIFTLINE_KAFKA_BOOTSTRAP": bootstrap,
        "DRIFTLINE_KAFKA_SESSION_TIMEOUT_S": "6",
        "DRIFTLINE_KAFKA_HEARTBEAT_INTERVAL_S": "1",
        "DRIFTLINE_DATA_DIR": str(data_dir),
        "DRIFTLINE_TOPIC_PREDICTIONS": f"{prefix}.predictions",
        "DRIFTLINE_TOPIC_LABELS": f"{prefix}.labels",
        "DRIFTLINE_TOPIC_ALERTS": f"{prefix}.alerts",
        "DRIFTLINE_TOPIC_RETRAIN_REQUESTS": f"{prefix}.retrain",
        "DRIFTLINE_TOPIC_DEAD_LETTER": f"{prefix}.dead",
        "DRIFTLINE_TOPIC_PARTIALS": f"{prefix}.partials",
    }


def driftline(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``driftline ARGS`` from the source tree and wait for it (120 s at most)."""
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        timeout=120,
        check=False,
    )


def write_reference_training_csv(path: Path) -> None:
    """The training set the reference profile of version 1 is built from."""
    write_training_csv(path, predictions=20_000, seed=101)


def build_reference(workdir: Path, env: dict[str, str], *, with_scores: bool = True) -> None:
    """Write the training set and build ``ref-1.json`` in ``workdir`` with the CLI."""
    write_reference_training_csv(workdir / "train.csv")
    scores = ["--prediction", "prediction", "--score", "score", "--target", "label"]
    built = driftline(
        "reference", "build", "--model", "churn", "--version", "1", "--data", "train.csv",
        *(scores if with_scores else []), "-c", "monitors.yaml", "-o", "ref-1.json",
        env=env, cwd=workdir,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout + built.stderr


def create_topics(workdir: Path, env: dict[str, str]) -> None:
    """``driftline topics create`` for the topics named in ``env``."""
    created = driftline("topics", "create", "-c", "monitors.yaml", env=env, cwd=workdir)
    assert created.returncode == 0, created.stdout + created.stderr


def load_reference(workdir: Path) -> ReferenceProfile:
    """The reference profile built by :func:`build_reference`."""
    return ReferenceProfile.from_json((workdir / "ref-1.json").read_bytes())


def scenario_start(hours_back: float) -> datetime:
    """A whole hour at least ``hours_back`` hours ago: event times stay in the past."""
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    return now - timedelta(hours=math.ceil(hours_back))


def produce_backlog(bootstrap: str, env: dict[str, str], scenario: Scenario) -> int:
    """Produce the end-to-end scenario at once; returns the number of dead-letter messages.

    Every 40th label is on the topic before any prediction; every 200th
    prediction is sent twice (a serving app's retry); the scenario's malformed
    messages, a prediction of a model nobody monitors and one stamped three days
    ahead follow the valid traffic. Compressed with lz4, as serving apps often do.
    """
    early = {label["prediction_id"] for label in scenario.labels[::40]}
    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 20, "compression.type": "lz4"}
    )
    predictions_topic, labels_topic = (
        env["DRIFTLINE_TOPIC_PREDICTIONS"],
        env["DRIFTLINE_TOPIC_LABELS"],
    )

    def send(topic: str, event: dict[str, Any]) -> None:
        producer.produce(topic, orjson.dumps(event), event["prediction_id"].encode())
        producer.poll(0)

    for label in scenario.labels:
        if label["prediction_id"] in early:
            send(labels_topic, label)
    for index, event in enumerate(scenario.predictions):
        send(predictions_topic, event)
        if index % 200 == 7:
            send(predictions_topic, event)
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
    assert producer.flush(30) == 0
    return len(scenario.malformed) + 2


def produce_predictions(bootstrap: str, topic: str, events: Sequence[dict[str, Any]]) -> None:
    """Produce predictions keyed by their id, all at once, and wait until they are delivered."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    for event in events:
        producer.produce(topic, orjson.dumps(event), event["prediction_id"].encode())
        producer.poll(0)
    assert producer.flush(30) == 0


def start_worker(
    run: Run, name: str, extra_env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``driftline worker`` in ``run.workdir``; its output goes to ``NAME.log`` there."""
    with (run.workdir / f"{name}.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker", "-c", "monitors.yaml"],
            cwd=run.workdir,
            env={**os.environ, "PYTHONPATH": str(ROOT), **run.env, **(extra_env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def stop(process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """Stop a worker by PID the way an orchestrator does: SIGTERM, then SIGKILL."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def window(moment: str) -> int:
    """Start (epoch seconds) of the window holding an ISO timestamp."""
    seconds = int(datetime.fromisoformat(moment).timestamp())
    return seconds - seconds % WINDOW_S


def expected_windows(run: Run) -> list[int]:
    """Windows every partition has closed: those ending well before the newest event."""
    newest = max(datetime.fromisoformat(e["timestamp"]).timestamp() for e in run.predictions)
    starts = sorted({window(event["timestamp"]) for event in run.predictions})
    return [start for start in starts if start + WINDOW_S + LATENESS_S + 120 < newest]


def series(url: str, name: str) -> dict[SeriesKey, list[tuple[int, float]]]:
    """Every sample of metric ``name`` in VictoriaMetrics, by sorted label pairs."""
    found: list[VMSeries] = vm_export(url, f'{{__name__="{name}"}}', start=0)
    return {
        tuple(sorted((k, v) for k, v in s.metric.items() if k != "__name__")): s.points()
        for s in found
    }


def wait_for(
    run: Run,
    url: str,
    windows: Sequence[int],
    workers: Sequence[subprocess.Popen[bytes]],
    timeout: float = 120,
) -> None:
    """Wait until every window has a volume point; fail early if a worker exits."""
    deadline = time.monotonic() + timeout
    wanted = {start * 1000 for start in windows}
    seen: set[int] = set()
    while time.monotonic() < deadline and all(w.poll() is None for w in workers):
        volume = series(url, "volume_predictions")
        seen = {t for points in volume.values() for t, _ in points}
        if wanted <= seen:
            return
        time.sleep(1.0)
    logs = "\n".join(p.read_text()[-3000:] for p in run.workdir.glob("worker*.log"))
    raise AssertionError(f"windows {sorted(wanted - seen)} never appeared; worker logs:\n{logs}")


def offline_drift(
    reference: ReferenceProfile, predictions: Sequence[dict[str, Any]], window_start: int
) -> dict[tuple[str, str], DriftResult]:
    """Drift of every feature and method in one window, computed here with ``detectors/``."""
    events = [e for e in predictions if window(e["timestamp"]) == window_start]
    results = {}
    for kind, names in (("numeric", NUMERIC), ("categorical", CATEGORICAL)):
        for name in names:
            profile = reference.features[name]
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


def check_points(run: Run, url: str, windows: Sequence[int]) -> None:
    """Compare the points in VictoriaMetrics with the offline computation of every window."""
    statistic = series(url, "feature_drift_statistic")
    drifted = series(url, "feature_drift_drifted")
    for start in windows:
        expected = offline_drift(run.reference, run.predictions, start)
        for (feature, method), result in expected.items():
            key: SeriesKey = (
                ("feature", feature), ("method", method), ("model_id", "churn"),
                ("model_version", "1"), ("segment", "all"),
            )  # fmt: skip
            samples = dict(statistic[key])
            assert result.statistic is not None
            assert samples[start * 1000] == pytest.approx(result.statistic, rel=1e-9, abs=1e-12), (
                feature, method, start,
            )  # fmt: skip
            assert dict(drifted[key])[start * 1000] == float(result.drifted)

    # The drifting features are flagged from the drift window on, not before.
    ks_monthly = dict(
        drifted[(("feature", "monthly_charges"), ("method", "ks"), ("model_id", "churn"),
                 ("model_version", "1"), ("segment", "all"))]
    )  # fmt: skip
    drift_start = window(run.predictions[len(run.predictions) // 2]["timestamp"])
    assert all(ks_monthly[w * 1000] == 0.0 for w in windows if w + WINDOW_S <= drift_start)
    assert all(ks_monthly[w * 1000] == 1.0 for w in windows if w > drift_start)

    # Performance: every produced label joined; values equal an offline computation.
    labels = {label["prediction_id"]: label for label in run.labels}
    accuracy = series(url, "model_performance_value")
    coverage = series(url, "model_performance_coverage")
    lag_p50 = series(url, "label_lag_p50_s")
    for start in windows:
        events = [e for e in run.predictions if window(e["timestamp"]) == start]
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
            values = [v for t, v in accuracy[key] if t == start * 1000]
            # Re-emitted as labels arrived; the corrected (complete) value is among them.
            assert any(v == pytest.approx(want[metric].value, rel=1e-9) for v in values), (
                metric, start, values, want[metric].value,
            )  # fmt: skip
        key = (("metric", "accuracy"), ("model_id", "churn"), ("model_version", "1"),
               ("segment", "all"))  # fmt: skip
        covered = [v for t, v in coverage[key] if t == start * 1000]
        assert any(v == pytest.approx(len(joined) / len(events), rel=1e-9) for v in covered)
        lags = sorted(
            datetime.fromisoformat(labels[e["prediction_id"]]["timestamp"]).timestamp()
            - datetime.fromisoformat(e["timestamp"]).timestamp()
            for e in joined
        )
        exact_p50 = lags[math.ceil(0.5 * len(lags)) - 1]
        reported = [v for t, v in lag_p50[(("model_id", "churn"), ("model_version", "1"))]
                    if t == start * 1000]  # fmt: skip
        # The lag histogram's bins are < 5 % wide: the reported p50 is the upper
        # edge of the bin holding the exact one.
        assert any(exact_p50 <= v <= max(exact_p50 * 1.05, 0.011) for v in reported), (
            start, exact_p50, reported,
        )  # fmt: skip

    # Volume: on-time predictions per window equal what was produced for it.
    volume = series(url, "volume_predictions")
    produced = Counter(window(e["timestamp"]) for e in run.predictions)
    key = (("model_id", "churn"), ("model_version", "1"), ("segment", "all"))
    for start in windows:
        assert dict(volume[key])[start * 1000] == produced[start]
    # Segments split the same predictions: their volumes add up to the total.
    by_segment: dict[int, float] = defaultdict(float)
    for series_key, points in volume.items():
        if dict(series_key)["segment"].startswith("region="):
            # a window's volume is re-written as labels arrive: one value per time
            for t, v in dict(points).items():
                by_segment[t] += v
    for start in windows:
        assert by_segment[start * 1000] == produced[start], {
            series_key: dict(points).get(start * 1000) for series_key, points in volume.items()
        }


def check_dead_letters(run: Run, bootstrap: str) -> None:
    """Every malformed or rejected message of :func:`produce_backlog` is a dead letter."""
    # At least once: a worker that replays batches after a crash sends their
    # dead letters again; each names its source message, so count distinct ones.
    distinct = {}
    for message in consume_at_least(
        bootstrap, run.env["DRIFTLINE_TOPIC_DEAD_LETTER"], run.malformed
    ):
        letter = DeadLetter.model_validate_json(message.value())
        distinct[(letter.source_topic, letter.source_partition, letter.source_offset)] = letter
    letters = list(distinct.values())
    assert len(letters) == run.malformed
    reasons = " | ".join(letter.error_message for letter in letters)
    assert "'fraud' is not monitored" in reasons
    assert "ahead of the clock" in reasons
    assert "Invalid JSON" in reasons
    assert "timestamp: Input should have timezone info" in reasons
    assert all(letter.source_topic == run.env["DRIFTLINE_TOPIC_PREDICTIONS"] for letter in letters)
