"""Alerts end to end: drift that starts and ends → one firing, one resolved, one retrain request."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from detectors.profile import ReferenceProfile
from schemas import AlertEvent, RetrainRequest
from streams.synthetic import ScenarioConfig, generate
from tests.e2e.test_pipeline import (
    CATEGORICAL,
    NUMERIC,
    Run,
    _driftline,
    _start_worker,
    _stop,
    _write_training_csv,
)
from tests.servers import ChatReceiver, consume_messages, unique_topic_name
from tests.support.pipeline import produce_predictions

pytestmark = pytest.mark.integration

WINDOW_S = 300


def config(receiver: ChatReceiver) -> str:
    features = "\n".join(
        [f"      - {{name: {n}, kind: numeric}}" for n in NUMERIC]
        + [f"      - {{name: {n}, kind: categorical}}" for n in CATEGORICAL]
    )
    return f"""
models:
  - id: churn
    task: binary
    reference: ref-{{version}}.json
    window: {{size: {WINDOW_S}s, allowed_lateness: 30s, label_horizon: 1h, emit_interval: 1s}}
    drift: {{min_samples: 50}}
    features:
{features}
channels:
  oncall:
    urls: ["json://{receiver.url_base}/driftline-hook"]
rules:
  - name: charges-drift
    kind: feature_drift
    features: [monthly_charges]
    metric: ks
    for: 2
    resolve: {{for: 2}}
    severity: critical
    cooldown: 1h
    channel: oncall
retrain:
  - name: retrain-on-drift
    rules: [charges-drift]
    cooldown: 1d
"""


def test_drift_fires_once_resolves_once_and_requests_one_retrain(
    kafka_bootstrap: str, victoria_metrics_url: str, chat_receiver: ChatReceiver, tmp_path: Path
) -> None:
    prefix = unique_topic_name("alerts")
    env = {
        "DRIFTLINE_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "DRIFTLINE_KAFKA_SESSION_TIMEOUT_S": "6",
        "DRIFTLINE_KAFKA_HEARTBEAT_INTERVAL_S": "1",
        "DRIFTLINE_INFLUX_URL": victoria_metrics_url,
        "DRIFTLINE_DATA_DIR": str(tmp_path / "data"),
        "DRIFTLINE_TOPIC_PREDICTIONS": f"{prefix}.predictions",
        "DRIFTLINE_TOPIC_LABELS": f"{prefix}.labels",
        "DRIFTLINE_TOPIC_ALERTS": f"{prefix}.alerts",
        "DRIFTLINE_TOPIC_RETRAIN_REQUESTS": f"{prefix}.retrain",
        "DRIFTLINE_TOPIC_DEAD_LETTER": f"{prefix}.dead",
        "DRIFTLINE_TOPIC_PARTIALS": f"{prefix}.partials",
    }
    (tmp_path / "monitors.yaml").write_text(config(chat_receiver))
    _write_training_csv(tmp_path / "train.csv")
    built = _driftline(
        "reference", "build", "--model", "churn", "--version", "1", "--data", "train.csv",
        "-c", "monitors.yaml", "-o", "ref-1.json", env=env, cwd=tmp_path,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout + built.stderr
    created = _driftline("topics", "create", "-c", "monitors.yaml", env=env, cwd=tmp_path)
    assert created.returncode == 0, created.stdout + created.stderr

    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=8)
    scenario = generate(
        ScenarioConfig(
            start=start, predictions=8_000, rate_per_s=2.0, drift_from=0.3, drift_until=0.6,
            seed=21, malformed_every=0,
        )
    )  # fmt: skip
    produce_predictions(kafka_bootstrap, env["DRIFTLINE_TOPIC_PREDICTIONS"], scenario.predictions)

    def window(index: int) -> int:
        seconds = int(datetime.fromisoformat(scenario.predictions[index]["timestamp"]).timestamp())
        return seconds - seconds % WINDOW_S

    first_drifted = window(int(0.3 * 8_000))
    first_normal = window(int(0.6 * 8_000))
    # The first whole drifted window is the first one after the drift starts
    # mid-window; two consecutive drifted windows fire: at the second whole one.
    expected_fire = first_drifted + 2 * WINDOW_S
    expected_resolve = first_normal + 2 * WINDOW_S

    run = Run(env, tmp_path, scenario.predictions, [], 0,
              ReferenceProfile.from_json((tmp_path / "ref-1.json").read_bytes()))  # fmt: skip
    worker = _start_worker(run, "worker")
    try:
        notes = chat_receiver.wait_for(2, timeout=150)
        alerts = [
            AlertEvent.model_validate_json(m.value())
            for m in consume_messages(kafka_bootstrap, env["DRIFTLINE_TOPIC_ALERTS"], 2, timeout=30)
        ]
        requests = [
            RetrainRequest.model_validate_json(m.value())
            for m in consume_messages(kafka_bootstrap, env["DRIFTLINE_TOPIC_RETRAIN_REQUESTS"], 1)
        ]
        time.sleep(5)  # nothing more may arrive
        assert len(chat_receiver.requests) == 2
    finally:
        _stop(worker)
    assert [a.state for a in alerts] == ["firing", "resolved"]
    firing, resolved = alerts
    assert firing.alert_id == resolved.alert_id
    assert (firing.rule, firing.model_id, firing.feature) == (
        "charges-drift",
        "churn",
        "monthly_charges",
    )
    assert firing.window_start.timestamp() in (expected_fire - WINDOW_S, expected_fire)
    assert resolved.window_start.timestamp() in (expected_resolve - WINDOW_S, expected_resolve)
    assert firing.severity == "critical"
    assert firing.value <= 0.05  # a KS p-value at or below alpha

    fire_note, resolve_note = (request.json for request in notes)
    assert isinstance(fire_note, dict) and isinstance(resolve_note, dict)
    assert "FIRING" in fire_note["title"] and "charges-drift" in fire_note["title"]
    assert "monthly_charges" in fire_note["message"]
    assert firing.window_start.strftime("%H:%M") in fire_note["message"]
    assert "RESOLVED" in resolve_note["title"]

    tail = _driftline("alerts", "tail", "--from-beginning", "--for", "5", env=env, cwd=tmp_path)
    assert tail.returncode == 0, tail.stderr
    lines = tail.stdout.splitlines()
    assert len(lines) == 2
    assert " FIRING   critical churn v1 [all] charges-drift: " in lines[0]
    assert " RESOLVED critical churn v1 [all] charges-drift: " in lines[1]

    (request,) = requests
    assert request.model_id == "churn"
    assert [reason.alert_id for reason in request.reasons] == [firing.alert_id]
