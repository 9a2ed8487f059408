"""End to end: one ``driftline worker`` against a bare consumer of the same topic, same run.

Everything runs on this machine: an embedded Tansu broker on 127.0.0.1, its
topics (``--partitions``, 4 by default), a reference profile for a 20-feature
binary model built with ``driftline reference build``, and ``--events``
synthetic predictions (the ten features of :mod:`streams.synthetic` padded with
ten numeric ones, about 520 bytes of JSON each) with labels for
``--label-share`` of them, produced up front with confluent-kafka.

Measured, each with its target from issue 4 where it has one:

1. **Baselines** on the predictions topic, read from the beginning: a bare
   aiokafka ``getmany`` loop with ``orjson.loads`` of every value (before and
   after the worker runs; the faster run is the reference), confluent-kafka
   with orjson, and a faust app with the worker's settings whose agent takes
   batches as the worker does and only decodes (the framework's own ceiling).
   Each reader's set-up is left out, as the worker's start-up is.
2. **Throughput.** ``driftline worker -c monitors.yaml`` as a subprocess (file
   sink, join on, labels flowing) on the same topics. After every batch the
   worker sends each partition's progress (the next offset of each input topic
   it has applied) with its watermark to the partials topic; the benchmark
   reads those. The clock starts at the first one (the first batch applied)
   and stops at the one by which every partition has applied every produced
   prediction *and* label. Predictions per second over that span, and over
   each quarter of the predictions.
3. **Label-to-point latency.** With the worker caught up, labels for
   unlabelled predictions of the newest window are produced live (about ten a
   second); for each, the time until ``DATA_DIR/metrics.lp`` holds a
   ``model_performance`` point of that window whose ``n_labelled`` includes it,
   split at the partials topic into the ingest and the merge side. The model's
   ``emit_interval`` is 1 s (the default), so the throttle is part of it.
4. **Window-state memory.** A second worker on fresh topics whose model has
   2-day windows, so every event of a day's traffic falls in one window: its
   RSS (``/proc/PID/status`` VmRSS) after 10⁴, 10⁵ and ``--memory-events``
   events, or as many as it applied when ``--memory-timeout`` ran out (said
   in the output), with the size of the window sketches and the number of ids
   the join holds, from its checkpoints. Twice: the new worker's first
   window, then the next window, whose traffic starts after the first one's
   label horizon so the first one's join state is let go (the ids held show
   it). The first reading includes the worker's own warm-up (its heap growing
   to what backlog batches need); the second is a window filling in a worker
   that has been running.

``--profile FILE`` runs the throughput worker under cProfile and prints its hot
spots, then stops (cProfile's per-call cost inflates faust's per-message
machinery; ``py-spy record --pid`` on the printed worker PID gives truer
shares). Every process started here (the broker, the workers, the faust
reader) is stopped by PID, also on an error or Ctrl-C.

Usage::

    python -m benchmarks.e2e_throughput                 # 200,000 events; memory to 10^6
    python -m benchmarks.e2e_throughput --quick         # 20,000 events; memory to 10^5
    python -m benchmarks.e2e_throughput --events 50000 --memory-events 0
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import itertools
import math
import os
import pstats
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

import faust
import numpy as np
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    Message,
    Producer,
)
from confluent_kafka import TopicPartition as ConfluentPartition
from rich.console import Console
from rich.table import Table

from benchmarks.workers import ROOT, BenchmarkError, WorkerProcess, topic_names, worker_env
from detectors.profile import ReferenceProfile
from schemas import DEFAULT_LIMITS, load_config
from streams.embedded import EmbeddedBroker, parent_death_prefix
from streams.partition import PartitionProcessor
from streams.points import parse_line_protocol
from streams.sink import METRICS_FILE_NAME
from streams.synthetic import ScenarioConfig, generate
from streams.topics import ensure_topics
from streams.windows import PerformanceAccumulator

MODEL_ID = "churn"
MODEL_VERSION = "1"
SYNTHETIC_NUMERIC = (
    "tenure_months",
    "monthly_charges",
    "support_calls",
    "days_since_login",
    "age",
    "sessions_30d",
    "discount_pct",
)
SYNTHETIC_CATEGORICAL = ("plan", "device", "country")
PADDING_NUMERIC = tuple(f"f{index}" for index in range(10, 20))
"""Ten more numeric features (short names keep an event near 520 bytes)."""
NUMERIC = SYNTHETIC_NUMERIC + PADDING_NUMERIC

THROUGHPUT_WINDOW_S = 300
THROUGHPUT_RATE_PER_S = 100.0
"""Event-time rate of the throughput traffic: 30,000 predictions per 5-minute window."""
MEMORY_WINDOW_S = 2 * 86_400
MEMORY_DELAY_S = 7_200
"""The next window's traffic starts this long after its start: past the first
window's end + label horizon (1 h) + allowed lateness (30 s)."""
LABEL_DELAY_S = 120.0
CHUNK = 50_000
TARGET_RATIO = 0.5
TARGET_P95_S = 2.0
TARGET_RSS_CHANGE = 0.10


# ---------------------------------------------------------------------- traffic


@dataclass
class Chunk:
    """Encoded messages of a slice of the traffic: ``(key, value)`` pairs."""

    predictions: list[tuple[bytes, bytes]]
    labels: list[tuple[bytes, bytes]]
    unlabelled: list[tuple[str, int, int]] = field(default_factory=list)
    """``(prediction_id, time_us, prediction)`` of predictions without a label."""


def _padding(rng: np.random.Generator, size: int) -> list[list[float]]:
    columns = [
        rng.gamma(2.0, 3.0, size),
        rng.lognormal(3.0, 0.6, size),
        rng.poisson(0.3, size),
        rng.poisson(0.8, size),
        rng.poisson(6.0, size),
        rng.integers(0, 11, size),
        rng.gamma(2.0, 4.0, size),
        rng.poisson(5.0, size),
        rng.exponential(60.0, size),
        rng.lognormal(2.0, 0.5, size),
    ]
    rows: list[list[float]] = np.round(np.column_stack(columns).astype(np.float64), 2).tolist()
    return rows


def _iso_us(time_us: int) -> str:
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=time_us)).isoformat()


def traffic(
    *,
    start: datetime,
    count: int,
    rate_per_s: float,
    label_share: float,
    seed: int,
    tag: str,
    first_index: int = 0,
) -> Iterator[Chunk]:
    """Synthetic predictions with 20 features and their labels, ``CHUNK`` at a time.

    Ids are ``churn-{tag}-{index:08d}``, unique over the whole traffic; each
    chunk starts where the previous one's event time ended.
    """
    produced = 0
    moment = start
    while produced < count:
        size = min(CHUNK, count - produced)
        index0 = first_index + produced
        scenario = generate(
            ScenarioConfig(
                start=moment,
                predictions=size,
                rate_per_s=rate_per_s,
                drift_from=1.0,
                label_share=label_share,
                label_delay_s=LABEL_DELAY_S,
                malformed_every=0,
                model_id=MODEL_ID,
                model_version=MODEL_VERSION,
                seed=seed * 1_000_003 + index0,
            )
        )
        padding = _padding(np.random.default_rng([seed, index0]), size)
        renamed: dict[str, str] = {}
        predictions: list[tuple[bytes, bytes]] = []
        for offset, (event, extra) in enumerate(zip(scenario.predictions, padding, strict=True)):
            prediction_id = f"{MODEL_ID}-{tag}-{index0 + offset:08d}"
            renamed[event["prediction_id"]] = prediction_id
            event["prediction_id"] = prediction_id
            event["features"].update(zip(PADDING_NUMERIC, extra, strict=True))
            predictions.append((prediction_id.encode(), orjson.dumps(event)))
        labels: list[tuple[bytes, bytes]] = []
        labelled: set[str] = set()
        for label in scenario.labels:
            label["prediction_id"] = prediction_id = renamed[label["prediction_id"]]
            labelled.add(prediction_id)
            labels.append((prediction_id.encode(), orjson.dumps(label)))
        unlabelled = [
            (
                event["prediction_id"],
                int(datetime.fromisoformat(event["timestamp"]).timestamp() * 1_000_000),
                int(event["prediction"]),
            )
            for event in scenario.predictions
            if event["prediction_id"] not in labelled
        ]
        yield Chunk(predictions, labels, unlabelled)
        produced += size
        moment += timedelta(seconds=size / rate_per_s)


class Delivered:
    """End offset of every partition written to, from the producer's delivery reports."""

    def __init__(self) -> None:
        self.ends: dict[tuple[str, int], int] = defaultdict(int)
        self.errors: list[str] = []

    def __call__(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self.errors.append(str(error))
            return
        key = (message.topic() or "", message.partition() or 0)
        offset = message.offset() or 0
        self.ends[key] = max(self.ends[key], offset + 1)


def bulk_producer(bootstrap: str) -> Producer:
    """A producer tuned for pre-producing: large batches, long linger, a deep queue."""
    return Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 50,
            "batch.size": 1_000_000,
            "batch.num.messages": 10_000,
            "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 1_048_576,
            "enable.idempotence": False,
        }
    )


def produce(
    producer: Producer, topic: str, messages: list[tuple[bytes, bytes]], delivered: Delivered
) -> None:
    """Queue messages, waiting for room in the producer's queue when it is full."""
    for key, value in messages:
        while True:
            try:
                producer.produce(topic, value, key, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)


def flush(producer: Producer, delivered: Delivered) -> None:
    """Wait for every queued message; fail on any delivery error."""
    remaining = producer.flush(120)
    if remaining or delivered.errors:
        raise BenchmarkError(
            f"{remaining} messages undelivered, {len(delivered.errors)} delivery errors: "
            f"{delivered.errors[:3]}"
        )


# -------------------------------------------------------------------- baselines


@dataclass(frozen=True)
class ConsumerRate:
    """Messages read and decoded, and the time from the first fetch to the last message.

    Each reader reads the topic twice and times the second pass, so connection
    set-up is left out as the worker's start-up is.
    """

    name: str
    messages: int
    seconds: float
    cpu_seconds: float
    """CPU time the reader's process used meanwhile (all its threads)."""

    @property
    def per_s(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else math.nan

    @property
    def per_cpu_s(self) -> float:
        return self.messages / self.cpu_seconds if self.cpu_seconds > 0 else math.nan


async def _aiokafka_read(
    bootstrap: str, topic: str, partitions: int, expected: int
) -> tuple[int, float, float]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        for _ in ("warm-up", "timed"):
            await consumer.seek_to_beginning()
            count = 0
            deadline = time.monotonic() + 300
            started, cpu_started = time.perf_counter(), time.process_time()
            while count < expected:
                if time.monotonic() > deadline:
                    raise BenchmarkError(f"aiokafka read {count:,} of {expected:,} in 300 s")
                batches = await consumer.getmany(timeout_ms=1000)
                for records in batches.values():
                    for record in records:
                        orjson.loads(record.value)
                    count += len(records)
            seconds = time.perf_counter() - started
            cpu_seconds = time.process_time() - cpu_started
        return count, seconds, cpu_seconds
    finally:
        await consumer.stop()


def aiokafka_rate(
    bootstrap: str, topic: str, partitions: int, expected: int, when: str
) -> ConsumerRate:
    """A bare aiokafka ``getmany`` loop with ``orjson.loads`` of every value."""
    messages, seconds, cpu = asyncio.run(_aiokafka_read(bootstrap, topic, partitions, expected))
    return ConsumerRate(f"bare aiokafka + orjson, {when}", messages, seconds, cpu)


def confluent_rate(bootstrap: str, topic: str, partitions: int, expected: int) -> ConsumerRate:
    """confluent-kafka ``consume`` loop with ``orjson.loads`` of every value."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "driftline-bench-baseline",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        for _ in ("warm-up", "timed"):
            consumer.assign(
                [ConfluentPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)]
            )
            count = 0
            deadline = time.monotonic() + 300
            started, cpu_started = time.perf_counter(), time.process_time()
            while count < expected:
                if time.monotonic() > deadline:
                    raise BenchmarkError(f"confluent-kafka read {count:,} of {expected:,} in 300 s")
                for message in consumer.consume(10_000, timeout=1.0):
                    value = message.value()
                    if message.error() is None and value is not None:
                        orjson.loads(value)
                        count += 1
            seconds = time.perf_counter() - started
            cpu_seconds = time.process_time() - cpu_started
        return ConsumerRate("confluent-kafka + orjson", count, seconds, cpu_seconds)
    finally:
        consumer.close()


def faust_reader(bootstrap: str, topic: str, expected: int, result: Path) -> None:
    """A faust app with the worker's settings whose agent only decodes (run in a child process).

    The agent takes batches as driftline's ``ingest`` does
    (``take_events(2000, within=0.5)``) and calls ``orjson.loads`` on every
    value: the rate the framework itself allows. Writes ``{"messages",
    "seconds", "cpu_seconds"}`` (after its first batch, as for the worker) to
    ``result`` and stops itself.
    """
    app = faust.App(
        "driftline-bench-faust-reader",
        broker=f"kafka://{bootstrap}",
        store="memory://",
        key_serializer="raw",
        value_serializer="raw",
        web_enabled=False,
        topic_disable_leader=True,
        topic_allow_declare=False,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=6.0,
        broker_heartbeat_interval=1.0,
        datadir=str(result.parent / "faust-reader"),
    )
    source = app.topic(topic, key_type=bytes, value_type=bytes)
    marks: list[tuple[float, float, int]] = []

    async def read(stream: Any) -> AsyncIterator[None]:
        count = 0
        async for events in stream.take_events(2000, within=0.5):
            for event in events:
                orjson.loads(event.message.value)
            count += len(events)
            marks.append((time.perf_counter(), time.process_time(), count))
            if count >= expected:
                (first_at, first_cpu, first_count), (last_at, last_cpu, _) = marks[0], marks[-1]
                measured = {
                    "messages": count - first_count,
                    "seconds": last_at - first_at,
                    "cpu_seconds": last_cpu - first_cpu,
                }
                result.write_bytes(orjson.dumps(measured))
                os.kill(os.getpid(), signal.SIGTERM)
            yield None

    app.agent(source, name="bench.read")(read)
    faust.Worker(app, loglevel="warning", quiet=True).execute_from_commandline()


def faust_rate(bootstrap: str, topic: str, expected: int, workdir: Path) -> ConsumerRate:
    """Run :func:`faust_reader` in a child process; stopped by PID whatever happens."""
    result = workdir / "faust-reader.json"
    with (workdir / "faust-reader.log").open("wb") as log:
        process = subprocess.Popen(
            [*parent_death_prefix(), sys.executable, "-m", "benchmarks.e2e_throughput",
             "--faust-reader", bootstrap, topic, str(expected), str(result)],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    try:
        process.wait(300)
    except subprocess.TimeoutExpired:
        raise BenchmarkError("the faust reader did not finish within 300 s") from None
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    if not result.exists():
        tail = (workdir / "faust-reader.log").read_text(errors="replace")[-2000:]
        raise BenchmarkError(f"the faust reader wrote no result:\n{tail}")
    found = orjson.loads(result.read_bytes())
    return ConsumerRate(
        "faust agent, take_events + orjson",
        found["messages"],
        found["seconds"],
        found["cpu_seconds"],
    )


# ----------------------------------------------------------------------- worker


def monitors_yaml(window_s: int, partitions: int) -> str:
    """The monitor configuration: one binary model with the 20 features."""
    features = [f"      - {{name: {name}, kind: numeric}}" for name in NUMERIC]
    features += [f"      - {{name: {name}, kind: categorical}}" for name in SYNTHETIC_CATEGORICAL]
    newline = "\n"
    return f"""models:
  - id: {MODEL_ID}
    task: binary
    reference: ref-{{version}}.json
    segment_by: [region]
    window: {{size: {window_s}s, allowed_lateness: 30s, label_horizon: 1h,
              orphan_label_ttl: 2h, emit_interval: 1s}}
    performance: {{metrics: [accuracy, f1, roc_auc], min_labelled: 20}}
    features:
{newline.join(features)}
topics: {{partitions: {partitions}}}
"""


def write_training_csv(path: Path) -> None:
    """20,000 undrifted rows with the 20 features, prediction, score and label."""
    training = generate(ScenarioConfig(predictions=20_000, drift_from=1.0, seed=101))
    padding = _padding(np.random.default_rng(101), len(training.predictions))
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*NUMERIC, *SYNTHETIC_CATEGORICAL, "prediction", "score", "label"])
        for event, extra in zip(training.predictions, padding, strict=True):
            features = event["features"]
            writer.writerow(
                [
                    *(
                        "" if features[name] is None else features[name]
                        for name in SYNTHETIC_NUMERIC
                    ),
                    *extra,
                    *(features[name] for name in SYNTHETIC_CATEGORICAL),
                    event["prediction"],
                    event["scores"]["1"],
                    event["prediction"],
                ]
            )


def build_reference(directory: Path, env: dict[str, str]) -> float:
    """``driftline reference build`` in ``directory``; returns the seconds it took."""
    write_training_csv(directory / "train.csv")
    started = time.perf_counter()
    built = subprocess.run(
        [sys.executable, "-m", "streams.cli", "reference", "build", "--model", MODEL_ID,
         "--version", MODEL_VERSION, "--data", "train.csv", "--prediction", "prediction",
         "--score", "score", "--target", "label", "-c", "monitors.yaml", "-o", "ref-1.json"],
        cwd=directory, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    if built.returncode != 0:
        raise BenchmarkError(f"driftline reference build failed:\n{built.stdout}{built.stderr}")
    return time.perf_counter() - started


# ------------------------------------------------------------------ checkpoints


class CheckpointReader:
    """Reads ``partition-*.bin`` as a restarting worker does (``PartitionProcessor.restore``)."""

    def __init__(self, config_dir: Path, topics: dict[str, str]) -> None:
        self.config = load_config(config_dir / "monitors.yaml")
        self.reference = ReferenceProfile.from_json((config_dir / "ref-1.json").read_bytes())
        self.topics = topics

    def read(self, path: Path) -> PartitionProcessor:
        processor = PartitionProcessor(
            int(path.stem.rpartition("-")[2]),
            self.config,
            lambda model_id, version: self.reference,
            predictions_topic=self.topics["predictions"],
            labels_topic=self.topics["labels"],
            limits=DEFAULT_LIMITS,
        )
        processor.restore(path.read_bytes())
        return processor

    def applied(self, processor: PartitionProcessor) -> tuple[int, int]:
        """Predictions and labels applied: the next offset of each topic."""
        join = processor.join
        return join.next_offset(self.topics["predictions"]), join.next_offset(self.topics["labels"])


class Progress(threading.Thread):
    """How far the worker has read each partition, from its watermark partials.

    After every batch the worker sends, per source partition, a ``watermark``
    partial carrying the next offset of each input topic it has applied
    (``applied``); its producer timestamp says when. Reading the partials
    topic costs the worker nothing, and unlike the checkpoints (every
    ``DRIFTLINE_CHECKPOINT_INTERVAL_S``) it marks each batch.
    """

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        super().__init__(name="progress", daemon=True)
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": "driftline-bench-progress",
                "enable.auto.commit": False,
            }
        )
        self.consumer.assign(
            [ConfluentPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)]
        )
        self.marks: list[tuple[float, int, int, int]] = []
        """(producer time s, source partition, predictions applied, labels applied)."""
        self.finished = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        try:
            while not self.finished.is_set():
                for message in self.consumer.consume(1000, timeout=0.05):
                    value = message.value()
                    if message.error() is not None or value is None:
                        continue
                    partial = orjson.loads(value)
                    if partial["kind"] != "watermark" or "applied" not in partial:
                        continue
                    at = message.timestamp()[1] / 1000
                    predictions, labels = partial["applied"]
                    with self._lock:
                        self.marks.append((at, int(partial["source"]), predictions, labels))
        finally:
            self.consumer.close()

    def timeline(self) -> list[tuple[float, int, int]]:
        """(time, predictions applied, labels applied) over every partition, in time order."""
        with self._lock:
            marks = sorted(self.marks)
        latest: dict[int, tuple[int, int]] = {}
        found: list[tuple[float, int, int]] = []
        for at, source, predictions, labels in marks:
            before = latest.get(source, (0, 0))
            latest[source] = (max(before[0], predictions), max(before[1], labels))
            found.append(
                (at, sum(v[0] for v in latest.values()), sum(v[1] for v in latest.values()))
            )
        return found

    def first(self, worker: WorkerProcess, timeout: float = 120) -> tuple[float, int, int]:
        """The first batch: when, and what it applied."""
        deadline = time.monotonic() + timeout
        while not (timeline := self.timeline()):
            worker.check()
            if time.monotonic() > deadline:
                raise BenchmarkError(
                    f"the worker applied nothing within {timeout:.0f} s:\n{worker.log_tail()}"
                )
            time.sleep(0.01)
        return timeline[0]

    def completed(self, targets: dict[int, tuple[int, int]]) -> float | None:
        """When every partition had applied its targets, if it has."""
        with self._lock:
            marks = sorted(self.marks)
        done: dict[int, float] = {}
        for at, source, predictions, labels in marks:
            wanted = targets.get(source)
            if wanted and source not in done and predictions >= wanted[0] and labels >= wanted[1]:
                done[source] = at
        waiting = {p for p, wanted in targets.items() if wanted[0] or wanted[1]}
        return max(done.values(), default=0.0) if waiting <= done.keys() else None

    def crossing(self, count: int) -> float | None:
        """When the applied predictions reached ``count``."""
        for at, predictions, _ in self.timeline():
            if predictions >= count:
                return at
        return None

    def applied(self) -> tuple[int, int]:
        timeline = self.timeline()
        return (timeline[-1][1], timeline[-1][2]) if timeline else (0, 0)


@dataclass
class Applied:
    """Where the worker got to: complete, or how far before the time ran out."""

    complete: bool
    finished_at: float
    predictions: int
    labels: int


def wait_applied(
    progress: Progress,
    targets: dict[int, tuple[int, int]],
    worker: WorkerProcess,
    timeout: float,
    poll_s: float = 0.25,
) -> Applied:
    """Wait until every partition has applied its target offsets."""
    deadline = time.monotonic() + timeout
    while (finished := progress.completed(targets)) is None:
        worker.check()
        if time.monotonic() > deadline:
            break
        time.sleep(poll_s)
    predictions, labels = progress.applied()
    return Applied(finished is not None, finished or time.time(), predictions, labels)


def read_checkpoints(
    checkpoints: Path,
    targets: dict[int, tuple[int, int]],
    reader: CheckpointReader,
    worker: WorkerProcess,
    timeout: float = 30.0,
) -> dict[int, PartitionProcessor]:
    """The partitions' checkpoints once they cover ``targets`` (written every few seconds)."""
    deadline = time.monotonic() + timeout
    found: dict[int, PartitionProcessor] = {}
    while True:
        worker.check()
        for partition, wanted in targets.items():
            path = checkpoints / f"partition-{partition}.bin"
            if partition in found or not path.exists():
                continue
            processor = reader.read(path)
            applied = reader.applied(processor)
            if applied[0] >= wanted[0] and applied[1] >= wanted[1]:
                found[partition] = processor
        if len(found) == len(targets) or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def targets_of(
    delivered: Delivered, topics: dict[str, str], partitions: int
) -> dict[int, tuple[int, int]]:
    """Partition to (predictions end offset, labels end offset)."""
    return {
        p: (delivered.ends[(topics["predictions"], p)], delivered.ends[(topics["labels"], p)])
        for p in range(partitions)
    }


# ---------------------------------------------------------------------- latency


@dataclass(frozen=True)
class PerformanceSighting:
    """A ``model_performance`` point (accuracy, all segments) and when it was read."""

    seen_at: float
    window_start_ns: int
    n_labelled: int


def performance_sightings(text: str, seen_at: float) -> list[PerformanceSighting]:
    """The accuracy points of segment ``all`` in complete lines of line protocol."""
    wanted = [line for line in text.splitlines() if line.startswith("model_performance,")]
    found = []
    for point in parse_line_protocol("\n".join(wanted)):
        tags = dict(point.tags)
        if tags.get("metric") == "accuracy" and tags.get("segment") == "all":
            assert isinstance(point.time, int)
            found.append(PerformanceSighting(seen_at, point.time, int(point.fields["n_labelled"])))
    return found


class MetricsTail(threading.Thread):
    """Follows ``metrics.lp`` from an offset; records each performance point when it appears."""

    def __init__(self, path: Path, offset: int) -> None:
        super().__init__(name="metrics-tail", daemon=True)
        self.path = path
        self.offset = offset
        self.sightings: list[PerformanceSighting] = []
        self.finished = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        rest = b""
        with self.path.open("rb") as reader:
            reader.seek(self.offset)
            while not self.finished.is_set():
                data = reader.read()
                if not data:
                    self.finished.wait(0.005)
                    continue
                seen_at = time.perf_counter()
                data = rest + data
                cut = data.rfind(b"\n") + 1
                rest = data[cut:]
                found = performance_sightings(data[:cut].decode(), seen_at)
                with self._lock:
                    self.sightings.extend(found)

    def snapshot(self) -> list[PerformanceSighting]:
        with self._lock:
            return list(self.sightings)


def wait_quiet(
    path: Path, worker: WorkerProcess, quiet_s: float = 2.5, timeout: float = 60
) -> None:
    """Wait until the sink file has not grown for ``quiet_s`` (throttled re-emissions done)."""
    deadline = time.monotonic() + timeout
    size, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        worker.check()
        now_size = path.stat().st_size if path.exists() else 0
        if now_size != size:
            size, since = now_size, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return
        time.sleep(0.1)


class PartialsTail(threading.Thread):
    """Reads the partials topic from the beginning; records each performance partial.

    A partial is what one source partition's processor hands the merger after
    a batch: its cumulative performance window. Seeing it splits the latency
    into the ingest side (batch, decode, join, checkpoint, send) and the merge
    side (batch, merge, throttle, sink).
    """

    def __init__(self, bootstrap: str, topic: str, partitions: int, config_dir: Path) -> None:
        super().__init__(name="partials-tail", daemon=True)
        self.model = load_config(config_dir / "monitors.yaml").model(MODEL_ID)
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": "driftline-bench-partials",
                "enable.auto.commit": False,
            }
        )
        self.consumer.assign(
            [ConfluentPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)]
        )
        self.sightings: dict[tuple[int, int], list[tuple[float, int]]] = defaultdict(list)
        """(source partition, window start µs) → [(seen at, n_labelled)] of segment ``all``."""
        self.finished = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        assert self.model is not None
        try:
            while not self.finished.is_set():
                messages = self.consumer.consume(1000, timeout=0.02)
                seen_at = time.perf_counter()
                for message in messages:
                    value = message.value()
                    if message.error() is not None or value is None:
                        continue
                    partial = orjson.loads(value)
                    if partial["kind"] != "performance" or partial["key"][2] != "all":
                        continue
                    window_start_us = int(partial["key"][3])
                    labelled = PerformanceAccumulator.from_bytes(
                        partial["payload"].encode(), self.model
                    ).n_labelled
                    with self._lock:
                        self.sightings[(int(partial["source"]), window_start_us)].append(
                            (seen_at, labelled)
                        )
        finally:
            self.consumer.close()

    def of(self, source: int, window_start_us: int) -> list[tuple[float, int]]:
        with self._lock:
            return list(self.sightings.get((source, window_start_us), []))


def _percentile(values: list[float], count: int, q: float) -> float:
    """Nearest-rank percentile of ``count`` values, the missing ones infinitely late."""
    if not count:
        return math.nan
    ordered = sorted(values) + [math.inf] * (count - len(values))
    return ordered[max(math.ceil(q / 100 * count), 1) - 1]


@dataclass(frozen=True)
class LatencyResult:
    """Latencies of the labels produced live, whole and split at the partials topic."""

    window_start_us: int
    sent: int
    to_point_s: list[float]
    to_partial_s: list[float]
    partial_to_point_s: list[float]

    def percentile(self, q: float) -> float:
        """Label to point; labels whose point never came count as infinitely late."""
        return _percentile(self.to_point_s, self.sent, q)


def measure_latency(
    *,
    bootstrap: str,
    topics: dict[str, str],
    partitions: int,
    config_dir: Path,
    data_dir: Path,
    unlabelled: list[tuple[str, int, int]],
    count: int,
    rate_per_s: float,
    worker: WorkerProcess,
    seed: int,
    console: Console,
) -> LatencyResult:
    """Produce ``count`` labels live for unlabelled predictions of the newest window."""
    window_us = THROUGHPUT_WINDOW_S * 1_000_000
    by_window: dict[int, list[tuple[str, int, int]]] = defaultdict(list)
    for item in unlabelled:
        by_window[item[1] - item[1] % window_us].append(item)
    eligible = [start for start, items in by_window.items() if len(items) >= count]
    if not eligible:
        raise BenchmarkError(f"no window has {count} unlabelled predictions; lower --live-labels")
    window_start_us = max(eligible)
    window_ns = window_start_us * 1000
    rng = np.random.default_rng([seed, 4])
    candidates = by_window[window_start_us]
    chosen = [candidates[i] for i in rng.choice(len(candidates), size=count, replace=False)]
    gaps = rng.exponential(1.0 / rate_per_s, size=count)

    metrics = data_dir / METRICS_FILE_NAME
    wait_quiet(metrics, worker)
    partials = PartialsTail(bootstrap, topics["partials"], partitions, config_dir)
    partials.start()
    data = metrics.read_bytes()
    cut = data.rfind(b"\n") + 1
    before = [
        s for s in performance_sightings(data[:cut].decode(), 0.0) if s.window_start_ns == window_ns
    ]
    if not before:
        raise BenchmarkError(
            f"no model_performance point for the window at {_iso_us(window_start_us)} yet"
        )
    base = before[-1].n_labelled
    tail = MetricsTail(metrics, cut)
    tail.start()
    label_partition: dict[int, int] = {}
    sent_at: list[float] = []
    try:
        # The merged point's n_labelled is the sum of the sources' latest partials:
        # wait until the tail has read that far into the topic's history.
        deadline = time.monotonic() + 30
        while True:
            base_by_source = {
                source: max((n for _, n in partials.of(source, window_start_us)), default=0)
                for source in range(partitions)
            }
            if sum(base_by_source.values()) == base:
                break
            if time.monotonic() > deadline:
                raise BenchmarkError(
                    f"the partials of the window add up to {sum(base_by_source.values())} "
                    f"labels, the point says {base}"
                )
            time.sleep(0.1)
        console.print(
            f"  window {_iso_us(window_start_us)}: {base:,} labelled so far, "
            f"{len(candidates):,} unlabelled; producing {count} labels at ~{rate_per_s:g}/s"
        )
        producer = Producer(
            {"bootstrap.servers": bootstrap, "linger.ms": 0, "enable.idempotence": False}
        )

        def on_delivery(number: int) -> Callable[[KafkaError | None, Message], None]:
            def record(error: KafkaError | None, message: Message) -> None:
                if error is None:
                    label_partition[number] = message.partition() or 0

            return record

        next_at = time.perf_counter()
        for number, ((prediction_id, _, prediction), gap) in enumerate(
            zip(chosen, gaps, strict=True)
        ):
            pause = next_at - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            label = {
                "prediction_id": prediction_id,
                "model_id": MODEL_ID,
                "label": prediction if rng.random() < 0.7 else 1 - prediction,
                "timestamp": datetime.now(UTC).isoformat(),
            }
            sent_at.append(time.perf_counter())
            producer.produce(
                topics["labels"],
                orjson.dumps(label),
                prediction_id.encode(),
                on_delivery=on_delivery(number),
            )
            producer.poll(0)
            next_at += float(gap)
        if producer.flush(30):
            raise BenchmarkError("live labels were not delivered within 30 s")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            worker.check()
            shown = tail.snapshot()
            if any(s.window_start_ns == window_ns and s.n_labelled >= base + count for s in shown):
                break
            time.sleep(0.05)
        time.sleep(0.5)
    finally:
        tail.finished.set()
        partials.finished.set()
        tail.join(5)
        partials.join(5)
    sightings = [s for s in tail.snapshot() if s.window_start_ns == window_ns]
    to_point, to_partial, partial_to_point = [], [], []
    per_source: dict[int, int] = defaultdict(int)
    for number, sent in enumerate(sent_at):
        shown_at = next((s.seen_at for s in sightings if s.n_labelled >= base + number + 1), None)
        if shown_at is not None:
            to_point.append(shown_at - sent)
        source = label_partition.get(number)
        if source is None:
            continue
        per_source[source] += 1
        wanted = base_by_source[source] + per_source[source]
        partial_at = next(
            (at for at, n in partials.of(source, window_start_us) if n >= wanted), None
        )
        if partial_at is not None:
            to_partial.append(partial_at - sent)
            if shown_at is not None:
                partial_to_point.append(shown_at - partial_at)
    return LatencyResult(window_start_us, len(sent_at), to_point, to_partial, partial_to_point)


# ----------------------------------------------------------------------- memory


@dataclass(frozen=True)
class MemoryPoint:
    """The memory worker after some events of its one window."""

    window: int
    """0: the worker's first window; 1: the next one, after the first one let go."""
    events: int
    target_events: int
    rss_kib: int
    hwm_kib: int
    window_sketch_bytes: int
    join_held: int
    join_pending: int
    seconds: float


def window_sketch_bytes(processors: dict[int, PartitionProcessor]) -> int:
    """In-memory size of the open drift windows' sketch counts, all partitions."""
    return sum(
        sketch.counts.nbytes
        for processor in processors.values()
        for accumulator in processor.windows.drift.values()
        for sketch in [*accumulator.features.values(), accumulator.prediction]
        if sketch is not None
    )


def memory_points(
    *,
    bootstrap: str,
    directory: Path,
    partitions: int,
    steps: list[int],
    label_share: float,
    seed: int,
    timeout: float,
    stack: contextlib.ExitStack,
    console: Console,
) -> list[MemoryPoint]:
    """RSS of a worker after each step's events of a window, in two windows one after the other.

    The second window's traffic starts after the first window's end plus the
    label horizon (and the allowed lateness), so once it comes the first
    window's join state is due to go.
    """
    topics = topic_names("bench-memory")
    ensure_topics({"bootstrap.servers": bootstrap}, dict.fromkeys(topics.values(), partitions))
    data_dir = directory / "data"
    worker = WorkerProcess(
        directory, worker_env(bootstrap, data_dir, topics), directory / "worker.log"
    )
    stack.callback(worker.stop)
    worker.start()
    console.print(f"  worker PID {worker.pid}: {' '.join(worker.argv)} (in {directory})")
    reader = CheckpointReader(directory, topics)
    progress = Progress(bootstrap, topics["partials"], partitions)
    progress.start()
    stack.callback(progress.finished.set)
    # Both windows' traffic (a day each) is in the past: the worker refuses
    # events stamped more than an hour ahead of its clock.
    second_s = math.floor((time.time() - 86_400 - 2 * MEMORY_DELAY_S) / MEMORY_WINDOW_S)
    second_s *= MEMORY_WINDOW_S
    starts = [second_s - MEMORY_WINDOW_S + 60, second_s + MEMORY_DELAY_S]
    rate = steps[-1] / (86_400 - MEMORY_DELAY_S)  # each window's traffic within a day
    producer = bulk_producer(bootstrap)
    delivered = Delivered()
    found: list[MemoryPoint] = []
    produced = 0  # over both windows: ids stay unique
    applied_before = 0
    began = time.monotonic()
    for window, start_s in enumerate(starts):
        start = datetime.fromtimestamp(start_s, tz=UTC)
        console.print("  the worker's first window:" if window == 0 else "  the next window:")
        first_index = produced
        for step in steps:
            for chunk in traffic(
                start=start + timedelta(seconds=(produced - first_index) / rate),
                count=first_index + step - produced,
                rate_per_s=rate,
                label_share=label_share,
                seed=seed + 1 + window,
                tag="m",
                first_index=produced,
            ):
                produce(producer, topics["predictions"], chunk.predictions, delivered)
                produce(producer, topics["labels"], chunk.labels, delivered)
                worker.check()
            flush(producer, delivered)
            produced = first_index + step
            remaining = timeout - (time.monotonic() - began)
            targets = targets_of(delivered, topics, partitions)
            applied = wait_applied(progress, targets, worker, max(remaining, 1.0))
            processors = read_checkpoints(data_dir / "checkpoints", targets, reader, worker)
            memory = worker.memory_kib()
            join = [p.join for p in processors.values()]
            point = MemoryPoint(
                window,
                applied.predictions - applied_before,
                step,
                memory["VmRSS"],
                memory["VmHWM"],
                window_sketch_bytes(processors),
                sum(j.pending_count + j.joined_count + j.orphan_count for j in join),
                sum(j.pending_count for j in join),
                time.monotonic() - began,
            )
            found.append(point)
            console.print(
                f"    {point.events:,} events applied after {point.seconds:.0f} s: "
                f"RSS {point.rss_kib / 1024:.0f} MiB, sketches {point.window_sketch_bytes:,} B, "
                f"join holds {point.join_held:,} ids"
            )
            if not applied.complete:
                console.print(
                    f"  [yellow]stopped at {point.events:,} of {step:,} events: "
                    f"the --memory-timeout of {timeout:.0f} s ran out[/]"
                )
                worker.stop()
                return found
        applied_before = produced
    worker.stop()
    return found


# ------------------------------------------------------------------ the report


@dataclass(frozen=True)
class Throughput:
    """The worker's catch-up of the pre-produced topics, after its first batch."""

    predictions: int
    labels: int
    seconds: float
    cpu_seconds: float
    startup_s: float
    quarters: list[float]
    """Predictions per second over each quarter of the predictions (committed offsets)."""

    @property
    def per_s(self) -> float:
        return self.predictions / self.seconds if self.seconds > 0 else math.nan

    @property
    def per_cpu_s(self) -> float:
        return self.predictions / self.cpu_seconds if self.cpu_seconds > 0 else math.nan


@dataclass
class Results:
    """Everything one run measured."""

    events: int = 0
    labels: int = 0
    event_bytes: float = 0.0
    baselines: list[ConsumerRate] = field(default_factory=list)
    throughput: Throughput | None = None
    latency: LatencyResult | None = None
    memory: list[MemoryPoint] = field(default_factory=list)
    profiled: bool = False


def _verdict(ok: bool) -> str:
    return "[green]pass[/]" if ok else "[bold red]FAIL[/]"


def _mib(kib: int) -> str:
    return f"{kib / 1024:,.0f} MiB"


def report(results: Results, args: argparse.Namespace, console: Console) -> None:
    """The table of figures, targets and verdicts."""
    table = Table(
        title=f"End to end: {results.events:,} predictions (20 features, "
        f"{results.event_bytes:.0f} B mean), {results.labels:,} labels, "
        f"{args.partitions} partitions, Tansu on 127.0.0.1",
        title_justify="left",
    )
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("target", justify="right")
    table.add_column("result")
    aiokafka = [rate for rate in results.baselines if rate.name.startswith("bare aiokafka")]
    best = max((rate.per_s for rate in aiokafka), default=math.nan)
    best_cpu = max((rate.per_cpu_s for rate in aiokafka), default=math.nan)
    for rate in results.baselines:
        share = "" if rate in aiokafka else f" = {rate.per_s / best:.0%} of bare aiokafka"
        table.add_row(
            rate.name,
            f"{rate.per_s:,.0f} msg/s",
            "",
            f"{rate.messages:,} in {rate.seconds:.2f} s{share}; {rate.per_cpu_s:,.0f} per CPU-s",
        )
    throughput = results.throughput
    if throughput is not None:
        note = " [under cProfile]" if results.profiled else ""
        table.add_row(
            f"driftline worker, join on{note}",
            f"{throughput.per_s:,.0f} pred/s",
            "",
            f"{throughput.predictions:,} predictions + {throughput.labels:,} labels "
            f"in {throughput.seconds:.2f} s (startup {throughput.startup_s:.1f} s); "
            f"{throughput.per_cpu_s:,.0f} per CPU-s, "
            f"{throughput.cpu_seconds / throughput.seconds:.2f} CPU-s per s",
        )
        if len(throughput.quarters) == 4 and results.events >= 100_000:
            table.add_row(
                "  by quarter of the predictions",
                " / ".join(f"{rate:,.0f}" for rate in throughput.quarters),
                "",
                "pred/s, from the group's committed offsets",
            )
        if aiokafka:
            ratio = throughput.per_s / best
            table.add_row(
                "driftline / bare aiokafka + orjson (faster run)",
                f"{ratio:.1%}",
                f"≥ {TARGET_RATIO:.0%}",
                _verdict(ratio >= TARGET_RATIO),
            )
            table.add_row(
                "  the same per CPU-second (less sensitive to other load)",
                f"{throughput.per_cpu_s / best_cpu:.1%}",
                "",
                "",
            )
    latency = results.latency
    if latency is not None:
        p50, p95 = latency.percentile(50), latency.percentile(95)
        missing = latency.sent - len(latency.to_point_s)
        table.add_row(
            "label → corrected point, p50",
            f"{p50:.2f} s",
            "",
            f"{latency.sent} labels at ~10/s" + (f", {missing} never shown" if missing else ""),
        )
        table.add_row(
            "label → corrected point, p95",
            f"{p95:.2f} s",
            f"≤ {TARGET_P95_S:g} s",
            _verdict(p95 <= TARGET_P95_S),
        )
        for name, values in (
            ("  label → partial (ingest side), p50 / p95", latency.to_partial_s),
            ("  partial → point (merge side), p50 / p95", latency.partial_to_point_s),
        ):
            table.add_row(
                name,
                f"{_percentile(values, len(values), 50):.2f} / "
                f"{_percentile(values, len(values), 95):.2f} s",
                "",
                f"max {max(values, default=math.nan):.2f} s",
            )
    for window, name in enumerate(("the worker's first window", "the next window")):
        add_memory_rows(table, [p for p in results.memory if p.window == window], name)
    console.print(table)


def add_memory_rows(table: Table, memory: list[MemoryPoint], name: str) -> None:
    """The memory run's readings of one window, and its RSS change against the target."""
    for point in memory:
        short = "" if point.events >= point.target_events else f" (of {point.target_events:,})"
        table.add_row(
            f"worker RSS after {point.events:,} events in {name}{short}",
            _mib(point.rss_kib),
            "",
            f"peak {_mib(point.hwm_kib)}",
        )
    if len(memory) >= 2:
        first, last = memory[0], memory[-1]
        change = last.rss_kib / first.rss_kib - 1
        table.add_row(
            f"RSS change, {first.events:,} → {last.events:,} events",
            f"{change:+.1%}",
            f"within ±{TARGET_RSS_CHANGE:.0%}",
            _verdict(abs(change) <= TARGET_RSS_CHANGE),
        )
        table.add_row(
            "  window sketches (numpy counts in memory)",
            f"{first.window_sketch_bytes / 1024:,.0f} → {last.window_sketch_bytes / 1024:,.0f} KiB",
            "",
            f"{last.window_sketch_bytes / first.window_sketch_bytes - 1:+.1%}",
        )
        per_id = (last.rss_kib - first.rss_kib) * 1024 / max(last.join_held - first.join_held, 1)
        table.add_row(
            "  RSS growth per id the join holds",
            f"{per_id:,.0f} B",
            "",
            "held until the window's end + label horizon",
        )
        table.add_row(
            "  join: ids held (pending + joined + orphans)",
            f"{first.join_held:,} → {last.join_held:,}",
            "",
            f"{last.join_pending:,} pending at the end",
        )


def print_profile(path: Path, console: Console, top: int = 18) -> None:
    """The worker's hot spots: own time, and cumulative time of driftline's functions."""
    profile = pstats.Stats(str(path)).get_stats_profile()
    functions = profile.func_profiles
    idle = sum(
        entry.tottime
        for name, entry in functions.items()
        if name in ("<method 'poll' of 'select.epoll' objects>", "<built-in method select.select>")
        or "epoll" in name
    )
    busy = profile.total_tt - idle
    console.print(
        f"cProfile of the worker ({path}): {profile.total_tt:.1f} s profiled, "
        f"{idle:.1f} s waiting in epoll, {busy:.1f} s busy; shares are of the busy time."
    )
    own = Table(title="Own time (tottime)", title_justify="left")
    for heading in ("function", "where", "calls", "own s", "share"):
        own.add_column(heading, justify="left" if heading in ("function", "where") else "right")
    ranked = sorted(functions.items(), key=lambda item: item[1].tottime, reverse=True)
    for name, entry in [item for item in ranked if "epoll" not in item[0]][:top]:
        own.add_row(
            name,
            f"{Path(entry.file_name).name}:{entry.line_number}" if entry.file_name else "",
            entry.ncalls,
            f"{entry.tottime:.2f}",
            f"{entry.tottime / busy:.1%}",
        )
    console.print(own)
    ours = Table(title="driftline functions, cumulative time", title_justify="left")
    for heading in ("function", "where", "calls", "cumulative s", "share"):
        ours.add_column(heading, justify="left" if heading in ("function", "where") else "right")
    in_repo = [
        (name, entry)
        for name, entry in functions.items()
        if entry.file_name.startswith(str(ROOT)) and "/.venv/" not in entry.file_name
    ]
    for name, entry in sorted(in_repo, key=lambda item: item[1].cumtime, reverse=True)[:top]:
        ours.add_row(
            name,
            f"{Path(entry.file_name).relative_to(ROOT)}:{entry.line_number}",
            entry.ncalls,
            f"{entry.cumtime:.2f}",
            f"{entry.cumtime / busy:.1%}",
        )
    console.print(ours)


# ------------------------------------------------------------------------- run


def run(
    args: argparse.Namespace, workdir: Path, stack: contextlib.ExitStack, console: Console
) -> Results:
    """Every phase; processes are registered on ``stack`` to be stopped by PID."""
    results = Results(profiled=args.profile is not None)
    broker = stack.enter_context(EmbeddedBroker(workdir / "broker.log"))
    bootstrap = broker.bootstrap
    console.print(f"broker: Tansu PID {broker.pid} on {bootstrap}")
    topics = topic_names("bench")
    ensure_topics({"bootstrap.servers": bootstrap}, dict.fromkeys(topics.values(), args.partitions))

    directory = workdir / "throughput"
    directory.mkdir()
    (directory / "monitors.yaml").write_text(monitors_yaml(THROUGHPUT_WINDOW_S, args.partitions))
    env = worker_env(bootstrap, directory / "data", topics)
    seconds = build_reference(directory, env)
    console.print(f"reference profile: driftline reference build, {seconds:.1f} s")

    started = time.perf_counter()
    span = timedelta(seconds=args.events / THROUGHPUT_RATE_PER_S)
    start = datetime.now(UTC) - timedelta(minutes=10) - span
    producer = bulk_producer(bootstrap)
    delivered = Delivered()
    unlabelled: list[tuple[str, int, int]] = []
    value_bytes = 0
    for chunk in traffic(
        start=start,
        count=args.events,
        rate_per_s=THROUGHPUT_RATE_PER_S,
        label_share=args.label_share,
        seed=args.seed,
        tag="t",
    ):
        produce(producer, topics["predictions"], chunk.predictions, delivered)
        produce(producer, topics["labels"], chunk.labels, delivered)
        unlabelled.extend(chunk.unlabelled)
        value_bytes += sum(len(value) for _, value in chunk.predictions)
        results.labels += len(chunk.labels)
    flush(producer, delivered)
    results.events = args.events
    results.event_bytes = value_bytes / args.events
    console.print(
        f"produced {args.events:,} predictions ({results.event_bytes:.0f} B mean) and "
        f"{results.labels:,} labels in {time.perf_counter() - started:.1f} s"
    )

    results.baselines.append(
        aiokafka_rate(bootstrap, topics["predictions"], args.partitions, args.events, "before")
    )
    results.baselines.append(
        confluent_rate(bootstrap, topics["predictions"], args.partitions, args.events)
    )
    results.baselines.append(faust_rate(bootstrap, topics["predictions"], args.events, workdir))
    for rate in results.baselines:
        console.print(f"  {rate.name}: {rate.per_s:,.0f} msg/s")

    profile_to = None if args.profile is None else Path(args.profile).resolve()
    worker = WorkerProcess(directory, env, directory / "worker.log", profile_to)
    stack.callback(worker.stop)
    launched = time.time()
    worker.start()
    console.print(f"worker PID {worker.pid}: {' '.join(worker.argv)} (in {directory})")
    progress = Progress(bootstrap, topics["partials"], args.partitions)
    progress.start()
    stack.callback(progress.finished.set)
    first_at, first_predictions, first_labels = progress.first(worker)
    cpu_at_first = worker.cpu_seconds()
    applied = wait_applied(
        progress,
        targets_of(delivered, topics, args.partitions),
        worker,
        timeout=max(600.0, args.events / 200),
    )
    cpu_at_end = worker.cpu_seconds()  # idle since it finished: its CPU then is negligible
    if not applied.complete:
        raise BenchmarkError(
            f"the worker applied {applied.predictions:,} of {args.events:,} predictions and "
            f"{applied.labels:,} of {results.labels:,} labels before the time ran out"
        )
    marks = [(first_at, first_predictions)]
    for quarter in (1, 2, 3):
        crossed = progress.crossing(args.events * quarter // 4)
        if crossed is not None and crossed > marks[-1][0]:
            marks.append((crossed, args.events * quarter // 4))
    marks.append((applied.finished_at, args.events))
    results.throughput = Throughput(
        args.events - first_predictions,
        results.labels - first_labels,
        applied.finished_at - first_at,
        cpu_at_end - cpu_at_first,
        first_at - launched,
        [(n1 - n0) / (t1 - t0) for (t0, n0), (t1, n1) in itertools.pairwise(marks)],
    )
    console.print(
        f"  caught up: {results.throughput.per_s:,.0f} predictions/s "
        f"({results.throughput.seconds:.2f} s after the first batch)"
    )

    if profile_to is None and args.live_labels:
        console.print("label-to-point latency:")
        results.latency = measure_latency(
            bootstrap=bootstrap,
            topics=topics,
            partitions=args.partitions,
            config_dir=directory,
            data_dir=directory / "data",
            unlabelled=unlabelled,
            count=args.live_labels,
            rate_per_s=10.0,
            worker=worker,
            seed=args.seed,
            console=console,
        )
    worker.stop()
    results.baselines.append(
        aiokafka_rate(bootstrap, topics["predictions"], args.partitions, args.events, "after")
    )
    console.print(f"  {results.baselines[-1].name}: {results.baselines[-1].per_s:,.0f} msg/s")
    if profile_to is not None:
        print_profile(profile_to, console)
    elif args.memory_events:
        console.print("window-state memory:")
        memory_dir = workdir / "memory"
        memory_dir.mkdir()
        (memory_dir / "monitors.yaml").write_text(monitors_yaml(MEMORY_WINDOW_S, args.partitions))
        (memory_dir / "ref-1.json").write_bytes((directory / "ref-1.json").read_bytes())
        results.memory = memory_points(
            bootstrap=bootstrap,
            directory=memory_dir,
            partitions=args.partitions,
            steps=sorted(
                {min(n, args.memory_events) for n in (10_000, 100_000, args.memory_events)}
            ),
            label_share=args.label_share,
            seed=args.seed,
            timeout=args.memory_timeout,
            stack=stack,
            console=console,
        )
    return results


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, help="predictions to pre-produce (200,000)")
    parser.add_argument("--label-share", type=float, default=0.5, help="share with a label")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--live-labels", type=int, help="labels for the latency (200; 0: skip)")
    parser.add_argument(
        "--memory-events", type=int, help="events in the memory run's window (10^6; 0: skip)"
    )
    parser.add_argument(
        "--memory-timeout", type=float, default=900.0, help="seconds for the memory run (900)"
    )
    parser.add_argument("--quick", action="store_true", help="20,000 events, memory to 10^5")
    parser.add_argument("--profile", metavar="FILE", help="run the worker under cProfile")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--faust-reader", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.faust_reader:
        bootstrap, topic, expected, result = args.faust_reader
        faust_reader(bootstrap, topic, int(expected), Path(result))
        return 0
    quick = args.quick
    args.events = args.events or (20_000 if quick else 200_000)
    if args.live_labels is None:
        args.live_labels = 50 if quick else 200
    if args.memory_events is None:
        args.memory_events = 100_000 if quick else 1_000_000
    console = Console(highlight=False, width=160)
    signal.signal(signal.SIGTERM, _interrupt)
    workdir = Path(tempfile.mkdtemp(prefix="driftline-e2e-bench-"))
    load = os.getloadavg()
    console.print(
        f"{os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
        f"work directory {workdir}"
    )
    failed = True
    try:
        with contextlib.ExitStack() as stack:
            results = run(args, workdir, stack, console)
        failed = False
    except BenchmarkError as exc:
        console.print(f"[bold red]benchmark failed:[/] {exc}", markup=True)
        return 1
    except KeyboardInterrupt:
        console.print("[yellow]interrupted; every process started here was stopped[/]")
        return 130
    finally:
        if failed or args.keep:
            console.print(f"logs and data kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    load = os.getloadavg()
    console.print(f"load average after the run {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    report(results, args, console)
    return 0


if __name__ == "__main__":
    sys.exit(main())
