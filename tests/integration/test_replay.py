"""`driftline replay` and the serving-app producer against the real broker."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from schemas import DriftlineSettings, PredictionEvent
from streams.embedded import free_port
from streams.producer import DeliveryError, EventProducer
from streams.synthetic import ScenarioConfig, generate
from tests.servers import consume_messages, create_topics, unique_topic_name

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_replay_sends_valid_events_keyed_and_reports_invalid_lines(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    scenario = generate(ScenarioConfig(predictions=300, seed=4, malformed_every=0))
    predictions = tmp_path / "predictions.jsonl"
    lines = [orjson.dumps(event) for event in scenario.predictions]
    lines.insert(10, b'{"prediction_id": "p-x", "model_id": "churn"}')
    predictions.write_bytes(b"\n".join(lines) + b"\n")
    labels = tmp_path / "labels.csv"
    with labels.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, ["prediction_id", "model_id", "label", "timestamp"])
        writer.writeheader()
        writer.writerows(scenario.labels)
    prefix = unique_topic_name("replay")
    create_topics(kafka_bootstrap, {f"{prefix}.p": 3, f"{prefix}.l": 3})
    result = subprocess.run(
        [sys.executable, "-m", "streams.cli", "replay", "--predictions", str(predictions),
         "--labels", str(labels)],
        capture_output=True, text=True, cwd=ROOT, timeout=120, check=False,
        env={**os.environ, "DRIFTLINE_KAFKA_BOOTSTRAP": kafka_bootstrap,
             "DRIFTLINE_TOPIC_PREDICTIONS": f"{prefix}.p", "DRIFTLINE_TOPIC_LABELS": f"{prefix}.l"},
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    sent = len(scenario.predictions) + len(scenario.labels)
    assert f"sent {sent:,} events" in result.stdout
    assert "predictions.jsonl:11: model_version: is required" in result.stdout
    received = consume_messages(kafka_bootstrap, f"{prefix}.p", len(scenario.predictions))
    by_key = {m.key().decode(): orjson.loads(m.value()) for m in received}
    assert by_key == {e["prediction_id"]: e for e in scenario.predictions}
    got_labels = consume_messages(kafka_bootstrap, f"{prefix}.l", len(scenario.labels))
    decoded = sorted(
        (orjson.loads(m.value()) for m in got_labels), key=lambda x: x["prediction_id"]
    )
    assert decoded == sorted(scenario.labels, key=lambda x: x["prediction_id"])
    # a prediction and its label share a partition (the join is partition-local)
    partition_of = {m.key(): m.partition() for m in received}
    assert all(partition_of[m.key()] == m.partition() for m in got_labels)


def test_producer_surfaces_delivery_errors() -> None:
    settings = DriftlineSettings(kafka_bootstrap=f"127.0.0.1:{free_port()}")
    producer = EventProducer(settings, {"message.timeout.ms": 1500})
    event = PredictionEvent.model_validate(generate(ScenarioConfig(predictions=1)).predictions[0])
    producer.send_prediction(event)  # returns at once although nothing listens
    with pytest.raises(DeliveryError, match="1 messages were not delivered"):
        producer.flush(timeout=10)
    assert producer.failed == 1
    assert producer.delivered == 0
