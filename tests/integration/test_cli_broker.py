"""CLI commands against a real broker: topics create and the demo slice."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from schemas import DeadLetter
from streams.decode import RawMessage, decode_predictions
from streams.synthetic import ScenarioConfig, generate
from tests.servers import consume_messages, create_topics, unique_topic_name

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "compose" / "monitors.example.yaml"


def driftline(
    *args: str, env: dict[str, str], timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **env},
        timeout=timeout,
        check=False,
    )


def test_topics_create_is_idempotent(kafka_bootstrap: str, tmp_path: Path) -> None:
    prefix = unique_topic_name("cli")
    names = {
        "DRIFTLINE_TOPIC_PREDICTIONS": f"{prefix}.predictions",
        "DRIFTLINE_TOPIC_LABELS": f"{prefix}.labels",
        "DRIFTLINE_TOPIC_ALERTS": f"{prefix}.alerts",
        "DRIFTLINE_TOPIC_RETRAIN_REQUESTS": f"{prefix}.retrain-requests",
        "DRIFTLINE_TOPIC_DEAD_LETTER": f"{prefix}.dead-letter",
        "DRIFTLINE_TOPIC_PARTIALS": f"{prefix}.partials",
    }
    config = tmp_path / "monitors.yaml"
    config.write_text(EXAMPLE.read_text().replace("partitions: 4", "partitions: 3"))
    env = {"DRIFTLINE_KAFKA_BOOTSTRAP": kafka_bootstrap, **names}
    for _ in range(2):
        result = driftline("topics", "create", "-c", str(config), env=env, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
        for name in names.values():
            assert f"{name}: 3 partitions" in result.stdout
    metadata = AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=10)
    for name in names.values():
        assert len(metadata.topics[name].partitions) == 3


def test_topics_create_refuses_unequal_join_topics(kafka_bootstrap: str, tmp_path: Path) -> None:
    prefix = unique_topic_name("cli-unequal")
    create_topics(kafka_bootstrap, {f"{prefix}.labels": 8})
    env = {
        "DRIFTLINE_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "DRIFTLINE_TOPIC_PREDICTIONS": f"{prefix}.predictions",
        "DRIFTLINE_TOPIC_LABELS": f"{prefix}.labels",
    }
    result = driftline("topics", "create", "-c", str(EXAMPLE), env=env, timeout=60)
    assert result.returncode == 1
    assert f"{prefix}.predictions has 4 partitions but {prefix}.labels has 8" in result.stdout


def test_demo_runs_the_pipeline_and_alerts_on_the_drift(tmp_path: Path) -> None:
    result = driftline(
        "demo", "--duration", "36", "--window", "6", "--rate", "60", "--label-delay", "4",
        env={"DRIFTLINE_DATA_DIR": str(tmp_path), "COLUMNS": "200"},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "alert(s) fired" in result.stdout
    assert "firing" in result.stdout and "feature-drift" in result.stdout
    metrics = (tmp_path / "demo" / "data" / "metrics.lp").read_text()
    assert "feature_drift,feature=monthly_charges,method=ks" in metrics
    assert "model_performance,metric=accuracy" in metrics
    # the broker and the worker were stopped
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True)
    assert str(tmp_path) not in ps.stdout


def test_dead_letters_name_their_reason(kafka_bootstrap: str) -> None:

    valid = generate(ScenarioConfig(predictions=1)).predictions[0]
    raw = [
        RawMessage("p", 0, 10, b"k1", b"{broken"),
        RawMessage("p", 1, 11, b"k2", orjson.dumps({"prediction_id": "k2", "model_id": "m"})),
        RawMessage("p", 2, 12, b"other", orjson.dumps(valid)),
    ]
    batch = decode_predictions(raw)
    assert batch.events == []
    topic = unique_topic_name("dead")
    create_topics(kafka_bootstrap, {topic: 1})
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for letter in batch.dead_letters:
        producer.produce(topic, value=letter.model_dump_json().encode())
    assert producer.flush(10) == 0
    received = [
        DeadLetter.model_validate_json(m.value())
        for m in consume_messages(kafka_bootstrap, topic, 3)
    ]
    by_offset = {letter.source_offset: letter for letter in received}
    assert by_offset[10].original_bytes() == b"{broken"
    assert "Invalid JSON" in by_offset[10].error_message
    assert "model_version: is required" in by_offset[11].error_message
    assert by_offset[12].error_class == "KeyMismatch"
    assert "differs from prediction_id" in by_offset[12].error_message
