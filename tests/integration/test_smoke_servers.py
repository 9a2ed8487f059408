"""Smoke tests of the real servers the test suite starts (``tests/servers.py``).

Each test talks to a real server through the client library driftline uses
and checks the data comes back unchanged, so a broken harness or a server
deviation shows up here first.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter, defaultdict
from typing import Any

import apprise
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition
from confluent_kafka import Consumer, KafkaError, Message, Producer
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.domain.write_precision import WritePrecision

from tests.servers import (
    ChatReceiver,
    TopicFactory,
    aiokafka_consumer_kwargs,
    aiokafka_producer_kwargs,
    confluent_consumer_config,
    confluent_producer_config,
    consume_messages,
    influx_write,
    influxql,
    unique_topic_name,
    vm_export,
)

pytestmark = pytest.mark.integration


def test_confluent_keyed_json_roundtrip(kafka_bootstrap: str, new_topic: TopicFactory) -> None:
    """Keyed JSON events come back intact, in key order, one partition per key."""
    topic = new_topic(3)
    keys = [f"pred-{k:02d}" for k in range(12)]
    sent: list[tuple[str, dict[str, Any]]] = [
        (keys[i % len(keys)], {"prediction_id": keys[i % len(keys)], "seq": i, "score": i / 8})
        for i in range(60)
    ]
    delivered: dict[int, int] = {}
    errors: list[str] = []

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        value, partition = msg.value(), msg.partition()
        if err is not None or value is None or partition is None:
            errors.append(f"{err} {msg.topic()} {value!r}")
        else:
            delivered[json.loads(value)["seq"]] = partition

    producer = Producer(confluent_producer_config(kafka_bootstrap, {"linger.ms": 5}))
    for key, payload in sent:
        producer.produce(topic, key=key, value=json.dumps(payload), on_delivery=on_delivery)
    assert producer.flush(15) == 0
    assert errors == []
    assert len(delivered) == len(sent)

    consumer = Consumer(confluent_consumer_config(kafka_bootstrap, f"smoke-{uuid.uuid4().hex}"))
    consumer.subscribe([topic])
    received: list[tuple[str, dict[str, Any], int]] = []
    deadline = time.monotonic() + 30
    try:
        while len(received) < len(sent) and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            raw_key, value, partition = msg.key(), msg.value(), msg.partition()
            assert raw_key is not None and value is not None and partition is not None
            received.append((raw_key.decode(), json.loads(value), partition))
    finally:
        consumer.close()

    assert len(received) == len(sent)
    assert sorted((k, p["seq"]) for k, p, _ in received) == sorted((k, p["seq"]) for k, p in sent)
    by_seq = {p["seq"]: p for _, p, _ in received}
    assert all(by_seq[p["seq"]] == p for _, p in sent)

    partitions_of_key: defaultdict[str, set[int]] = defaultdict(set)
    seqs_of_key: defaultdict[str, list[int]] = defaultdict(list)
    for key, payload, partition in received:
        partitions_of_key[key].add(partition)
        seqs_of_key[key].append(payload["seq"])
        assert delivered[payload["seq"]] == partition
    assert all(len(parts) == 1 for parts in partitions_of_key.values()), partitions_of_key
    assert {p for parts in partitions_of_key.values() for p in parts} == {0, 1, 2}
    assert all(seqs == sorted(seqs) for seqs in seqs_of_key.values())

    again = consume_messages(kafka_bootstrap, topic, len(sent))
    assert Counter(m.value() for m in again) == Counter(json.dumps(p).encode() for _, p in sent)


async def _produce_and_consume_in_group(
    bootstrap: str, topic: str, count: int
) -> tuple[dict[str, list[tuple[int, bytes]]], dict[str, set[int]], float]:
    group = f"smoke-group-{uuid.uuid4().hex[:8]}"
    consumers = {
        name: AIOKafkaConsumer(topic, **aiokafka_consumer_kwargs(bootstrap, group))
        for name in ("a", "b")
    }
    started = time.monotonic()
    await asyncio.gather(*(c.start() for c in consumers.values()))
    try:
        # Wait for a settled split: both members assigned, disjoint, covering all partitions.
        assignment: dict[str, set[int]] = {}
        while time.monotonic() - started < 30:
            assignment = {n: {tp.partition for tp in c.assignment()} for n, c in consumers.items()}
            parts = list(assignment.values())
            if all(parts) and not parts[0] & parts[1] and parts[0] | parts[1] == {0, 1, 2, 3}:
                break
            await asyncio.sleep(0.1)
        join_seconds = time.monotonic() - started

        producer = AIOKafkaProducer(**aiokafka_producer_kwargs(bootstrap))
        await producer.start()
        try:
            batch = [
                producer.send(topic, key=f"k{i % 16}".encode(), value=f"event-{i}".encode())
                for i in range(count)
            ]
            await asyncio.gather(*(await asyncio.gather(*batch)))
        finally:
            await producer.stop()

        got: dict[str, list[tuple[int, bytes]]] = {n: [] for n in consumers}

        async def drain(name: str, consumer: AIOKafkaConsumer) -> None:
            deadline = time.monotonic() + 30
            while sum(map(len, got.values())) < count and time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=200)
                for tp, records in batches.items():
                    got[name].extend((tp.partition, r.value) for r in records)

        await asyncio.gather(*(drain(n, c) for n, c in consumers.items()))
        for consumer in consumers.values():
            await consumer.commit()
        committed = {
            p: await consumers[n].committed(TopicPartition(topic, p))
            for n, parts in assignment.items()
            for p in parts
        }
        per_partition = Counter(p for records in got.values() for p, _ in records)
        assert committed == {p: per_partition[p] for p in range(4)}
        return got, assignment, join_seconds
    finally:
        await asyncio.gather(*(c.stop() for c in consumers.values()))


def test_aiokafka_group_splits_partitions(kafka_bootstrap: str, new_topic: TopicFactory) -> None:
    """Two aiokafka consumers in one group share 4 partitions; each record arrives once.

    Found on Tansu 0.6.0: the group works with two members once the session
    timeout is short.  The broker completes a JoinGroup only after half the
    session timeout, so with aiokafka's default (10 s) a join takes 5 s and
    with librdkafka's (45 s) 22 s; with 6 s / 1 s heartbeat both members
    started together are assigned disjoint halves after about 3 s (a member
    joining later triggers a rebalance that settles about 4 s later).  The
    producer must not be idempotent.
    """
    topic = new_topic(4)
    count = 80
    got, assignment, join_seconds = asyncio.run(
        _produce_and_consume_in_group(kafka_bootstrap, topic, count)
    )

    assert all(assignment.values()), assignment
    assert join_seconds < 15
    received = Counter(value for records in got.values() for _, value in records)
    assert received == Counter(f"event-{i}".encode() for i in range(count))
    for name, records in got.items():
        assert records, f"consumer {name} received nothing"
        assert {p for p, _ in records} <= assignment[name]


def test_influxdb_client_write_reads_back_from_victoria_metrics(
    victoria_metrics_url: str,
) -> None:
    """Points written by influxdb-client (v2 write API) come back exactly via export."""
    model_id = f"model-{uuid.uuid4().hex[:8]}"
    base = 1_700_000_000
    expected: dict[tuple[str, str], list[tuple[int, float]]] = defaultdict(list)
    points: list[dict[str, Any]] = []
    for f_index, feature in enumerate(("age", "income", "tenure")):
        for step in range(4):
            statistic = round(0.05 * (f_index + 1) + 0.0125 * step, 6)
            p_value = round(0.5 / (step + 1 + f_index), 6)
            when = base + 3600 * step
            points.append(
                {
                    "measurement": "feature_drift",
                    "tags": {"model_id": model_id, "feature": feature},
                    "fields": {"statistic": statistic, "p_value": p_value},
                    "time": when,
                }
            )
            expected[("feature_drift_statistic", feature)].append((when * 1000, statistic))
            expected[("feature_drift_p_value", feature)].append((when * 1000, p_value))

    with InfluxDBClient(url=victoria_metrics_url, token="unused", org="driftline") as client:
        client.write_api(write_options=SYNCHRONOUS).write(
            bucket="driftline", record=points, write_precision=WritePrecision.S
        )

    series = vm_export(
        victoria_metrics_url, f'{{__name__=~"feature_drift_.*",model_id="{model_id}"}}'
    )
    found = {(s.name, s.metric["feature"]): s.points() for s in series}
    assert found == dict(expected)
    assert all(set(s.metric) == {"__name__", "model_id", "feature"} for s in series)


def test_influxql_mean_by_feature(influxdb1_url: str, influxdb1_database: str) -> None:
    """InfluxDB 1.x computes mean(statistic) per feature from posted line protocol."""
    base = 1_700_000_000
    lines = [
        f"feature_drift,model_id=m1,feature=age statistic=0.1,p_value=0.5 {base}",
        f"feature_drift,model_id=m1,feature=age statistic=0.2,p_value=0.4 {base + 60}",
        f"feature_drift,model_id=m1,feature=age statistic=0.6,p_value=0.01 {base + 120}",
        f"feature_drift,model_id=m1,feature=income statistic=0.25,p_value=0.3 {base}",
        f"feature_drift,model_id=m1,feature=income statistic=0.75,p_value=0.2 {base + 60}",
        # Other model, and a point outside the time range: both excluded by WHERE.
        f"feature_drift,model_id=m2,feature=age statistic=9.0,p_value=0.0 {base + 60}",
        f"feature_drift,model_id=m1,feature=age statistic=5.0,p_value=0.0 {base + 7200}",
    ]
    influx_write(influxdb1_url, influxdb1_database, lines, precision="s")

    results = influxql(
        influxdb1_url,
        influxdb1_database,
        'SELECT mean("statistic") FROM "feature_drift" '
        f"WHERE \"model_id\" = 'm1' AND time >= {base}s AND time < {base + 3600}s "
        'GROUP BY "feature"',
        epoch="s",
    )

    series = results[0]["series"]
    means = {s["tags"]["feature"]: s["values"][0][s["columns"].index("mean")] for s in series}
    # By hand: age (0.1 + 0.2 + 0.6) / 3 = 0.3; income (0.25 + 0.75) / 2 = 0.5.
    assert means.keys() == {"age", "income"}
    assert means["age"] == pytest.approx(0.3, rel=1e-12)
    assert means["income"] == pytest.approx(0.5, rel=1e-12)
    assert all(s["values"][0][0] == base for s in series)


def test_apprise_json_and_mattermost_reach_receiver(chat_receiver: ChatReceiver) -> None:
    """apprise's json:// and mmost:// notifiers post what we expect to the receiver."""
    title, body = "Drift on model m1", "feature age: KS 0.31 > 0.2 (p=0.001)"

    notifier = apprise.Apprise()
    assert notifier.add(f"json://{chat_receiver.url_base}/notify")
    assert notifier.notify(title=title, body=body)
    [request] = chat_receiver.wait_for(1)
    assert (request.method, request.path) == ("POST", "/notify")
    assert request.header("Content-Type") == "application/json"
    assert request.json is not None
    assert request.json["title"] == title
    assert request.json["message"] == body
    assert request.json["type"] == "info"

    chat_receiver.clear()
    token = f"tok{uuid.uuid4().hex[:10]}"
    mattermost = apprise.Apprise()
    assert mattermost.add(f"mmost://{chat_receiver.url_base}/{token}")
    assert mattermost.notify(title=title, body=body)
    [request] = chat_receiver.wait_for(1)
    assert (request.method, request.path) == ("POST", f"/hooks/{token}")
    assert request.json is not None
    # Mattermost has no title: apprise puts it on the first line of the text.
    assert request.json["text"].splitlines() == [title, body]

    chat_receiver.clear()
    chat_receiver.respond_with(500)
    failing = apprise.Apprise()
    assert failing.add(f"json://{chat_receiver.url_base}/down")
    assert not failing.notify(title=title, body=body)
    assert [r.path for r in chat_receiver.wait_for(1)] == ["/down"]


def test_unique_topic_names_differ() -> None:
    """Topic names from the helper never repeat."""
    names = {unique_topic_name("t") for _ in range(100)}
    assert len(names) == 100
