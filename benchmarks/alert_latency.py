"""Alert latency: from a window's close to its AlertEvent on the alerts topic, live traffic.

Everything runs on this machine: an embedded Tansu broker on 127.0.0.1, the
topics (``driftline topics create``, 4 partitions), a reference profile built
with ``driftline reference build`` and one ``driftline worker -c monitors.yaml``
(file sink). The model has ``--window-s`` windows (10 s) with ``--lateness-s``
allowed lateness (1 s) and one ``feature_drift`` rule on ``monthly_charges``
(KS statistic ≥ 0.2, ``for: 1``, ``resolve: {for: 1}``, no cooldown).

A live serving app is simulated: ``--rate`` predictions per second (200), each
stamped with the wall clock at the moment it is produced, keyed by a unique
prediction id (the default partitioner spreads them over every partition;
``--linger-ms`` is the producer's linger, librdkafka's default 5 ms). After a
warm-up, windows alternate between drifted and normal traffic, so every window
closing is a transition: a drifted window fires, the normal one after it
resolves, each an AlertEvent. ``--transitions`` windows are measured.

**Window close** is the wall-clock moment when, on every partition, a
prediction stamped at or after the window's end + allowed lateness has been
produced (the ``produce`` call, recorded on this side) — from then on no worker
can be waiting for more data of that window. **Latency** is the time from that
moment to the AlertEvent naming the window (``window_start``) being received
by a confluent-kafka reader of the alerts topic (``fetch.wait.max.ms`` 10), so
the reader's own hop is included; the event's producer timestamp (when the
worker wrote it) is shown too.

Where the time goes, per window: the closing predictions' delivery reports;
the drift partials the worker's ``ingest`` agent writes to the partials topic
when a partition closes the window (their producer timestamps, read from the
topic); the AlertEvent's producer timestamp (written by the ``merge`` agent);
and its arrival here; with the CPU of the broker, the worker and the machine,
and the producer's produce-request round trips (librdkafka statistics).

**Baseline**, in the same run on the same broker once the worker is stopped:
the same live traffic on a fresh topic, read by one bare aiokafka consumer with
faust's fetch setting (``fetch_max_wait_ms=1500``, hard-coded in faust's
driver), for as long as the driftline phase ran (``--baseline-s``): what one
Kafka hop costs on this broker, over time. The worker's path takes two such
hops (predictions, then the partials topic) before the AlertEvent is written.

Every process started here (the broker, the worker) is stopped by PID, also on
an error or Ctrl-C.

Usage::

    python -m benchmarks.alert_latency                  # 20 transitions, then the baseline
    python -m benchmarks.alert_latency --transitions 6 --baseline-s 0   # a quick look
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import functools
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, Producer
from confluent_kafka import TopicPartition as ConfluentPartition
from rich.console import Console
from rich.table import Table

from benchmarks.workers import (
    BenchmarkError,
    WorkerProcess,
    process_cpu_seconds,
    topic_names,
    worker_env,
)
from schemas import AlertEvent
from streams.embedded import EmbeddedBroker
from streams.synthetic import CATEGORICAL_FEATURES, NUMERIC_FEATURES, ScenarioConfig, generate
from streams.topics import ensure_topics

MODEL_ID = "churn"
MODEL_VERSION = "1"
NUMERIC = NUMERIC_FEATURES
CATEGORICAL = CATEGORICAL_FEATURES
DRIFTING_FEATURE = "monthly_charges"
KS_THRESHOLD = 0.2
"""KS statistic of the rule: about 0.48 on drifted windows, about 0.02 on normal ones."""
POOL = 4_000
"""Events per traffic pool (normal, drifted), reused with fresh ids and timestamps."""
TARGET_P95_S = 5.0
READER_FETCH_WAIT_MS = 10
FAUST_FETCH_WAIT_MS = 1500
"""faust's aiokafka driver passes ``fetch_max_wait_ms=1500`` to every consumer."""
MICROS = 1_000_000
QUARTERS = 4


# ------------------------------------------------------------------ set-up


def monitors_yaml(window_s: int, lateness_s: int, partitions: int) -> str:
    """One binary model, short windows, a drift rule that fires and resolves on every window."""
    features = [f"      - {{name: {name}, kind: numeric}}" for name in NUMERIC]
    features += [f"      - {{name: {name}, kind: categorical}}" for name in CATEGORICAL]
    newline = "\n"
    return f"""models:
  - id: {MODEL_ID}
    task: binary
    reference: ref-{{version}}.json
    window: {{size: {window_s}s, allowed_lateness: {lateness_s}s, label_horizon: 1m,
              orphan_label_ttl: 1m, emit_interval: 1s}}
    drift: {{min_samples: 50}}
    features:
{newline.join(features)}
rules:
  - name: charges-drift
    kind: feature_drift
    features: [{DRIFTING_FEATURE}]
    metric: ks
    threshold: {KS_THRESHOLD}
    for: 1
    resolve: {{for: 1}}
    cooldown: 0s
    severity: critical
topics: {{partitions: {partitions}}}
"""


def write_training_csv(path: Path) -> None:
    """20,000 undrifted rows of the synthetic model's features."""
    training = generate(ScenarioConfig(predictions=20_000, drift_from=1.0, seed=101))
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*NUMERIC, *CATEGORICAL, "prediction", "score"])
        for event in training.predictions:
            features = event["features"]
            writer.writerow(
                [
                    *("" if features[name] is None else features[name] for name in NUMERIC),
                    *(features[name] for name in CATEGORICAL),
                    event["prediction"],
                    event["scores"]["1"],
                ]
            )


def driftline(directory: Path, env: dict[str, str], *args: str) -> None:
    """Run a ``driftline`` command in ``directory``; raise with its output when it fails."""
    done = subprocess.run(
        [sys.executable, "-m", "streams.cli", *args],
        cwd=directory, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise BenchmarkError(f"driftline {' '.join(args)} failed:\n{done.stdout}{done.stderr}")


# ---------------------------------------------------------------- resources


def _machine_jiffies() -> tuple[int, int]:
    """Busy and total CPU jiffies of the whole machine, from ``/proc/stat``."""
    user, nice, system, idle, iowait, *rest = (
        int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    )
    total = user + nice + system + idle + iowait + sum(rest)
    return total - idle - iowait, total


@dataclass(frozen=True)
class Sample:
    """CPU counters at one moment."""

    at: float
    machine_busy: int
    machine_total: int
    processes: tuple[float, ...]


@dataclass
class Resources:
    """CPU samples once a second and the producer's request round trips (librdkafka stats)."""

    pids: dict[str, int]
    samples: list[Sample] = field(default_factory=list)
    produce_rtt: list[tuple[float, float, float]] = field(default_factory=list)
    """``(at, max round trip of a produce request, max time queued in the client)`` in s."""

    def sample(self) -> None:
        busy, total = _machine_jiffies()
        cpu = tuple(process_cpu_seconds(pid) for pid in self.pids.values())
        self.samples.append(Sample(time.time(), busy, total, cpu))

    def follow(self, stop: threading.Event) -> None:
        """Sample every second until ``stop`` is set (run in a thread)."""
        while not stop.wait(1.0):
            self.sample()

    def on_stats(self, document: str) -> None:
        """librdkafka statistics callback: the broker's produce round trip and queueing."""
        at = time.time()
        for broker in orjson.loads(document)["brokers"].values():
            if broker["nodeid"] >= 0 and broker["rtt"]["cnt"]:
                queued = max(broker["int_latency"]["max"], broker["outbuf_latency"]["max"])
                self.produce_rtt.append((at, broker["rtt"]["max"] / MICROS, queued / MICROS))

    def shares(self, start: float, end: float) -> tuple[float, dict[str, float]]:
        """Machine CPU busy share (of all cores) and each process's cores over ``[start, end]``."""
        inside = [s for s in self.samples if start - 1.0 <= s.at <= end + 1.0]
        if len(inside) < 2:
            return math.nan, dict.fromkeys(self.pids, math.nan)
        first, last = inside[0], inside[-1]
        seconds = last.at - first.at
        busy = (last.machine_busy - first.machine_busy) / max(
            1, last.machine_total - first.machine_total
        )
        cores = {
            name: (last.processes[i] - first.processes[i]) / seconds
            for i, name in enumerate(self.pids)
        }
        return busy, cores

    def worst_rtt(self, start: float, end: float) -> tuple[float, float]:
        """Largest produce round trip and client queueing reported in ``[start, end]``."""
        inside = [(rtt, queued) for at, rtt, queued in self.produce_rtt if start <= at <= end + 1.0]
        if not inside:
            return math.nan, math.nan
        return max(r for r, _ in inside), max(q for _, q in inside)


# -------------------------------------------------------------- live traffic


def _iso_us(time_us: int) -> str:
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=time_us)
    return moment.isoformat().replace("+00:00", "Z")


def worker_time_us(timestamp: str) -> int:
    """An event time in microseconds exactly as the worker computes it (``streams.windows``)."""
    return int(datetime.fromisoformat(timestamp).timestamp() * MICROS)


@dataclass(frozen=True)
class ClosingMessage:
    """The first prediction of a partition stamped at or after a window's close."""

    produced_at: float
    acked_at: float


class CloseTracker:
    """Producer side: when each partition received a prediction past each window's close.

    Fed by the producer's delivery reports, which name the partition the
    default partitioner chose; the time recorded is that of the ``produce``
    call (the serving app's moment), the delivery time is kept beside it.
    """

    def __init__(self, window_us: int, lateness_us: int, partitions: int) -> None:
        self.window_us = window_us
        self.lateness_us = lateness_us
        self.partitions = partitions
        self.closed_through: dict[int, int] = {}
        self.closing: dict[int, dict[int, ClosingMessage]] = defaultdict(dict)
        self.errors: list[str] = []

    def on_delivery(
        self, event_us: int, produced_at: float, error: KafkaError | None, message: Message
    ) -> None:
        """Delivery report of one prediction (bound to its event time and produce time)."""
        if error is not None:
            self.errors.append(str(error))
            return
        partition = message.partition() or 0
        # Windows k with k*W + W + L <= event time are closed by this prediction.
        newest = (event_us - self.lateness_us - self.window_us) // self.window_us
        known = self.closed_through.get(partition, newest)
        closing = ClosingMessage(produced_at, time.time())
        for index in range(known + 1, newest + 1):
            self.closing[index][partition] = closing
        self.closed_through[partition] = max(known, newest)

    def close_of(self, index: int) -> tuple[float, float] | None:
        """Window ``index``'s close (latest produce time over partitions) and latest delivery."""
        found = self.closing.get(index, {})
        if len(found) < self.partitions:
            return None
        return (
            max(message.produced_at for message in found.values()),
            max(message.acked_at for message in found.values()),
        )


class LiveTraffic:
    """Predictions stamped with the wall clock, normal or drifted by window index."""

    def __init__(self, seed: int) -> None:
        self.pools = {
            drifted: [
                {key: value for key, value in event.items() if key != "timestamp"}
                for event in generate(
                    ScenarioConfig(
                        predictions=POOL,
                        drift_from=0.0 if drifted else 1.0,
                        label_share=0.0,
                        malformed_every=0,
                        model_id=MODEL_ID,
                        model_version=MODEL_VERSION,
                        seed=seed + drifted,
                    )
                ).predictions
            ]
            for drifted in (False, True)
        }
        self.sent = 0

    def next(self, now_us: int, drifted: bool) -> tuple[bytes, bytes, int]:
        """Key, value and worker event time of the next prediction, stamped ``now_us``."""
        template = self.pools[drifted][self.sent % POOL]
        prediction_id = f"{MODEL_ID}-live-{self.sent:09d}"
        timestamp = _iso_us(now_us)
        self.sent += 1
        value = orjson.dumps({**template, "prediction_id": prediction_id, "timestamp": timestamp})
        return prediction_id.encode(), value, worker_time_us(timestamp)


class LiveProducer:
    """A serving app: ``rate`` predictions a second, each stamped when it is produced.

    Call :meth:`step` often (every few milliseconds); it produces what is due
    since the start and serves the delivery reports.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        *,
        rate: float,
        linger_ms: int,
        traffic: LiveTraffic,
        tracker: CloseTracker,
        resources: Resources,
    ) -> None:
        self.topic = topic
        self.rate = rate
        self.traffic = traffic
        self.tracker = tracker
        self.producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "linger.ms": linger_ms,
                "enable.idempotence": False,
                "statistics.interval.ms": 1000,
                "stats_cb": resources.on_stats,
            }
        )
        self.started = time.time()
        self.sent = 0

    def step(self, drifted: Callable[[int], bool]) -> None:
        """Produce the predictions due by now; ``drifted(window index)`` picks the traffic."""
        due = int((time.time() - self.started) * self.rate) - self.sent
        for _ in range(due):
            now_us = time.time_ns() // 1000
            key, value, event_us = self.traffic.next(
                now_us, drifted(now_us // self.tracker.window_us)
            )
            self.producer.produce(
                self.topic,
                value,
                key,
                on_delivery=functools.partial(self.tracker.on_delivery, event_us, time.time()),
            )
            self.sent += 1
        self.producer.poll(0)
        if self.tracker.errors:
            raise BenchmarkError(f"delivery errors: {self.tracker.errors[:3]}")

    def flush(self) -> None:
        """Wait for the queued predictions (at most 30 s)."""
        self.producer.flush(30)


# ------------------------------------------------------------------ readers


@dataclass(frozen=True)
class Arrival:
    """A message read from a topic: when this side received it, when its producer wrote it."""

    received_at: float
    written_at: float


@dataclass
class Observed:
    """What the reader of the alerts and partials topics saw (appended from its thread)."""

    alerts: list[tuple[AlertEvent, Arrival]] = field(default_factory=list)
    drift_partials: dict[int, dict[int, Arrival]] = field(default_factory=lambda: defaultdict(dict))
    first_partial_at: float | None = None
    timestamp_types: set[int] = field(default_factory=set)


def read_outputs(
    bootstrap: str,
    topics: dict[str, str],
    partitions: int,
    observed: Observed,
    stop: threading.Event,
) -> None:
    """Follow the alerts and partials topics from the beginning until ``stop`` is set."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "driftline-bench-alert-reader",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": READER_FETCH_WAIT_MS,
        }
    )
    try:
        consumer.assign(
            [
                ConfluentPartition(topics[role], partition, OFFSET_BEGINNING)
                for role in ("alerts", "partials")
                for partition in range(partitions)
            ]
        )
        while not stop.is_set():
            for message in consumer.consume(100, timeout=0.1):
                received_at = time.time()
                value = message.value()
                if message.error() is not None or value is None:
                    continue
                kind, stamp = message.timestamp()
                observed.timestamp_types.add(kind)
                arrival = Arrival(received_at, stamp / 1000)
                if message.topic() == topics["alerts"]:
                    observed.alerts.append((AlertEvent.model_validate_json(value), arrival))
                    continue
                if observed.first_partial_at is None:
                    observed.first_partial_at = received_at
                partial = orjson.loads(value)
                if partial["kind"] == "drift" and partial["key"][2] == "all":
                    observed.drift_partials[int(partial["key"][3])][int(partial["source"])] = (
                        arrival
                    )
    finally:
        consumer.close()


@dataclass
class HopLatency:
    """Produce-to-receipt times of a bare aiokafka consumer: ``(received at, seconds)``."""

    fetch_max_wait_ms: int
    samples: list[tuple[float, float]] = field(default_factory=list)

    def seconds(self, start: float = -math.inf, end: float = math.inf) -> list[float]:
        """Latencies of the messages received in ``[start, end)``."""
        return [latency for at, latency in self.samples if start <= at < end]


async def _follow(
    bootstrap: str, topic: str, partitions: int, hop: HopLatency, stop: threading.Event
) -> None:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        fetch_max_wait_ms=hop.fetch_max_wait_ms,
    )
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, partition) for partition in range(partitions)])
        await consumer.seek_to_beginning()
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=100)
            received_at = time.time()
            for records in batches.values():
                for record in records:
                    hop.samples.append((received_at, received_at - record.timestamp / 1000))
    finally:
        await consumer.stop()


def follow_topic(
    bootstrap: str, topic: str, partitions: int, hop: HopLatency, stop: threading.Event
) -> None:
    """The baseline reader: a bare aiokafka consumer in its own event loop (run in a thread)."""
    asyncio.run(_follow(bootstrap, topic, partitions, hop, stop))


@contextlib.contextmanager
def background(target: Callable[..., None], *args: Any) -> Iterator[threading.Event]:
    """Run ``target(*args, stop)`` in a thread; set ``stop`` and join it on the way out."""
    stop = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            target(*args, stop)
        except BaseException as exc:  # reported in the main thread below
            failure.append(exc)

    thread = threading.Thread(target=run, name=target.__name__, daemon=True)
    thread.start()
    try:
        yield stop
    finally:
        stop.set()
        thread.join(30)
    if failure:
        raise BenchmarkError(f"{target.__name__} failed: {failure[0]!r}") from failure[0]


# -------------------------------------------------------------------- phases


@dataclass(frozen=True)
class WindowLatency:
    """One measured window: its transition and the moments of its way to the alerts topic."""

    window_start: datetime
    state: str
    closed_at: float
    acked_at: float
    last_partial_at: float
    written_at: float
    received_at: float

    @property
    def total(self) -> float:
        return self.received_at - self.closed_at


@dataclass
class AlertPhase:
    """The driftline phase: the measured windows, and the alerts that were missing or extra."""

    resources: Resources
    started: float
    ended: float = 0.0
    produced: int = 0
    windows: list[WindowLatency] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    timestamp_types: set[int] = field(default_factory=set)


@dataclass
class BaselinePhase:
    """The same live traffic read by a bare consumer, no worker."""

    resources: Resources
    hop: HopLatency
    started: float
    ended: float = 0.0
    produced: int = 0


def measure_alerts(
    args: argparse.Namespace, broker: EmbeddedBroker, workdir: Path, console: Console
) -> AlertPhase:
    """Set up and run the worker, produce live traffic until every measured alert arrived."""
    window_us = args.window_s * MICROS
    lateness_us = args.lateness_s * MICROS
    topics = topic_names("bench")
    (workdir / "monitors.yaml").write_text(
        monitors_yaml(args.window_s, args.lateness_s, args.partitions)
    )
    env = worker_env(broker.bootstrap, workdir / "data", topics)
    write_training_csv(workdir / "train.csv")
    driftline(workdir, env, "reference", "build", "--model", MODEL_ID, "--version", MODEL_VERSION,
              "--data", "train.csv", "-c", "monitors.yaml", "-o", "ref-1.json")  # fmt: skip
    driftline(workdir, env, "topics", "create", "-c", "monitors.yaml")
    with contextlib.ExitStack() as stack:
        observed = Observed()
        stack.enter_context(
            background(read_outputs, broker.bootstrap, topics, args.partitions, observed)
        )
        worker = WorkerProcess(workdir, env, workdir / "worker.log")
        stack.callback(worker.stop)
        worker.start()
        console.print(f"worker PID {worker.pid}: {' '.join(worker.argv)} (in {workdir})")
        resources = Resources(
            {"Tansu": broker.pid or 0, "worker": worker.pid, "this script": os.getpid()}
        )
        resources.sample()
        stack.enter_context(background(resources.follow))
        tracker = CloseTracker(window_us, lateness_us, args.partitions)
        producer = LiveProducer(
            broker.bootstrap,
            topics["predictions"],
            rate=args.rate,
            linger_ms=args.linger_ms,
            traffic=LiveTraffic(args.seed),
            tracker=tracker,
            resources=resources,
        )
        phase = AlertPhase(resources, producer.started)
        first_measured: int | None = None
        expected: dict[int, str] = {}
        received: dict[int, tuple[AlertEvent, Arrival]] = {}
        seen_alerts = 0
        deadline = producer.started + 120.0  # for the worker to start; moved once measuring

        def drifted(index: int) -> bool:
            """Measured windows alternate, the first one drifted; warm-up windows are normal."""
            if first_measured is None or index < first_measured:
                return False
            return (index - first_measured) % 2 == 0

        next_check = producer.started
        while True:
            producer.step(drifted)
            now = time.time()
            if now >= next_check:
                next_check = now + 0.5
                worker.check()
                if first_measured is None and observed.first_partial_at is not None:
                    # One whole normal window after the worker's first batch, then measure.
                    first_measured = int(now * MICROS) // window_us + 2
                    expected = {
                        first_measured + offset: "firing" if offset % 2 == 0 else "resolved"
                        for offset in range(args.transitions)
                    }
                    last_close = (first_measured + args.transitions) * window_us + lateness_us
                    deadline = last_close / MICROS + args.timeout
                    console.print(
                        f"worker consuming after {observed.first_partial_at - producer.started:.1f}"
                        f" s; measuring {args.transitions} windows from "
                        f"{_iso_us(first_measured * window_us)}, drifted and normal alternately"
                    )
                for alert, arrival in observed.alerts[seen_alerts:]:
                    index = int(alert.window_start.timestamp() * MICROS) // window_us
                    if expected.get(index) == alert.state and index not in received:
                        received[index] = (alert, arrival)
                        close = tracker.close_of(index)
                        after = "" if close is None else f", {arrival.received_at - close[0]:.2f} s"
                        console.print(
                            f"  {len(received):2}/{args.transitions} {alert.state:8} window "
                            f"{alert.window_start:%H:%M:%S} (KS {alert.value:.3f}{after})"
                        )
                    else:
                        phase.unexpected.append(
                            f"{alert.state} for window {alert.window_start:%H:%M:%S} "
                            f"({alert.metric} {alert.value:.3f})"
                        )
                seen_alerts = len(observed.alerts)
                if (expected and len(received) == len(expected)) or now > deadline:
                    break
            time.sleep(0.002)
        phase.ended = time.time()
        resources.sample()
        producer.flush()
        phase.produced = producer.sent
    phase.timestamp_types = set(observed.timestamp_types)
    if first_measured is None:
        raise BenchmarkError(f"the worker never wrote a partial:\n{worker.log_tail()}")
    for index, state in sorted(expected.items()):
        close = tracker.close_of(index)
        partials = observed.drift_partials.get(index * window_us, {})
        if index not in received or close is None or len(partials) < args.partitions:
            why = (
                "no AlertEvent"
                if index not in received
                else "close not seen on every partition"
                if close is None
                else f"drift partials of {len(partials)} partitions seen"
            )
            phase.missing.append(f"{state} for window {_iso_us(index * window_us)}: {why}")
            continue
        alert, arrival = received[index]
        phase.windows.append(
            WindowLatency(
                window_start=alert.window_start,
                state=state,
                closed_at=close[0],
                acked_at=close[1],
                last_partial_at=max(partial.written_at for partial in partials.values()),
                written_at=arrival.written_at,
                received_at=arrival.received_at,
            )
        )
    return phase


def measure_baseline(
    args: argparse.Namespace, broker: EmbeddedBroker, seconds: float, console: Console
) -> BaselinePhase:
    """The same live traffic on a fresh topic for ``seconds``, read by one bare consumer."""
    topic = "bench.baseline"
    ensure_topics({"bootstrap.servers": broker.bootstrap}, {topic: args.partitions})
    resources = Resources({"Tansu": broker.pid or 0, "this script": os.getpid()})
    hop = HopLatency(FAUST_FETCH_WAIT_MS)
    console.print(
        f"baseline: {seconds:.0f} s of the same traffic on {topic}, one bare aiokafka consumer "
        f"(fetch_max_wait_ms={hop.fetch_max_wait_ms}), no worker"
    )
    with contextlib.ExitStack() as stack:
        resources.sample()
        stack.enter_context(background(resources.follow))
        stack.enter_context(background(follow_topic, broker.bootstrap, topic, args.partitions, hop))
        producer = LiveProducer(
            broker.bootstrap,
            topic,
            rate=args.rate,
            linger_ms=args.linger_ms,
            traffic=LiveTraffic(args.seed),
            tracker=CloseTracker(args.window_s * MICROS, args.lateness_s * MICROS, args.partitions),
            resources=resources,
        )
        phase = BaselinePhase(resources, hop, producer.started)
        while time.time() < producer.started + seconds:
            producer.step(lambda index: False)
            time.sleep(0.002)
        phase.ended = time.time()
        resources.sample()
        producer.flush()
        phase.produced = producer.sent
        time.sleep(2.0)  # the reader's last fetches
    return phase


# -------------------------------------------------------------------- report


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (the smallest value with at least q % at or below it)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def _seconds(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.2f} s"


def _row(values: Sequence[float]) -> list[str]:
    return [_seconds(percentile(values, q)) for q in (50, 95, 100)]


def _quarters(start: float, end: float) -> list[tuple[float, float]]:
    step = (end - start) / QUARTERS
    return [(start + i * step, start + (i + 1) * step) for i in range(QUARTERS)]


def _cores(resources: Resources, start: float, end: float, name: str) -> str:
    if name not in resources.pids:
        return ""
    return f"{resources.shares(start, end)[1][name]:.2f}"


def report(
    alerts: AlertPhase, baseline: BaselinePhase | None, args: argparse.Namespace, console: Console
) -> bool:
    """Print the tables; True when the target is met."""
    windows = alerts.windows
    totals = [w.total for w in windows]
    passed = bool(windows) and not alerts.missing and percentile(totals, 95) <= TARGET_P95_S
    for name, phase in (("driftline", alerts), ("baseline", baseline)):
        if phase is None:
            continue
        seconds = phase.ended - phase.started
        busy, cores = phase.resources.shares(phase.started, phase.ended)
        console.print(
            f"{name}: {phase.produced:,} predictions produced live in {seconds:.0f} s "
            f"({phase.produced / seconds:.0f}/s); machine CPU {busy:.0%} busy; "
            + ", ".join(f"{process} {share:.2f} cores" for process, share in cores.items())
        )

    headline = Table(
        title=f"Window close → AlertEvent ({len(windows)} of {args.transitions} transitions, "
        f"{args.window_s} s windows, {args.lateness_s} s lateness, {args.rate:.0f}/s live)",
        title_justify="left",
    )
    for heading in ("", "p50", "p95", "max", "target", "result"):
        headline.add_column(heading, justify="left" if heading == "" else "right")
    headline.add_row(
        "close → AlertEvent received (alerts reader)",
        *_row(totals),
        f"p95 ≤ {TARGET_P95_S:.0f} s",
        "[bold green]PASS[/]" if passed else "[bold red]FAIL[/]",
    )
    headline.add_row(
        "close → AlertEvent written (its producer timestamp)",
        *_row([w.written_at - w.closed_at for w in windows]),
        "",
        "",
    )
    console.print(headline)

    stages = Table(title="Where the time goes, per window", title_justify="left")
    for heading in ("stage", "p50", "p95", "max", "what it holds"):
        stages.add_column(
            heading, justify="left" if heading in ("stage", "what it holds") else "right"
        )
    stages.add_row(
        "close → closing predictions acknowledged",
        *_row([w.acked_at - w.closed_at for w in windows]),
        f"producer linger ({args.linger_ms} ms), the broker's append",
    )
    stages.add_row(
        "close → last partition's drift partial written",
        *_row([w.last_partial_at - w.closed_at for w in windows]),
        "ingest: predictions fetch, take_events(within=0.5 s), batch",
    )
    stages.add_row(
        "last drift partial → AlertEvent written",
        *_row([w.written_at - w.last_partial_at for w in windows]),
        "merge: partials fetch, take_events(within=0.5 s), rules",
    )
    stages.add_row(
        "AlertEvent written → received here",
        *_row([w.received_at - w.written_at for w in windows]),
        f"this reader's hop (fetch.wait.max.ms={READER_FETCH_WAIT_MS})",
    )
    if baseline is not None:
        first = _quarters(baseline.started, baseline.ended)[0]
        stages.add_row(
            "baseline: one hop, first quarter of its run",
            *_row(baseline.hop.seconds(*first)),
            f"bare aiokafka, fetch_max_wait_ms={baseline.hop.fetch_max_wait_ms}, produce → receipt",
        )
        stages.add_row(
            "baseline: one hop, whole run",
            *_row(baseline.hop.seconds()),
            f"{len(baseline.hop.samples):,} messages",
        )
    console.print(stages)

    over_time = Table(
        title="The broker over time (quarters of each phase; latency: close → AlertEvent "
        "received for driftline, one hop for the baseline)",
        title_justify="left",
    )
    for heading in ("phase", "seconds", "predictions stored", "Tansu cores", "worker cores"):
        over_time.add_column(heading, justify="left" if heading == "phase" else "right")
    for heading in ("produce rtt max", "n", "latency p50", "latency max"):
        over_time.add_column(heading, justify="right")
    phases: list[tuple[str, AlertPhase | BaselinePhase]] = [("driftline", alerts)]
    if baseline is not None:
        phases.append(("baseline", baseline))
    for name, phase in phases:
        for start, end in _quarters(phase.started, phase.ended):
            if isinstance(phase, AlertPhase):
                latencies = [w.total for w in windows if start <= w.closed_at < end]
            else:
                latencies = phase.hop.seconds(start, end)
            over_time.add_row(
                name,
                f"{start - phase.started:.0f}–{end - phase.started:.0f}",
                f"{(end - phase.started) * args.rate:,.0f}",
                _cores(phase.resources, start, end, "Tansu"),
                _cores(phase.resources, start, end, "worker"),
                _seconds(phase.resources.worst_rtt(start, end)[0]),
                f"{len(latencies):,}",
                _seconds(percentile(latencies, 50)),
                _seconds(percentile(latencies, 100)),
            )
    console.print(over_time)

    if windows:
        detail = Table(
            title="Each window: seconds after its close; CPU and the producer's worst produce "
            "request from one window before the close to the AlertEvent's arrival",
            title_justify="left",
        )
        headings = ["window", "transition", "acked", "partials", "written", "received"]
        headings += ["machine busy", *(f"{name} cores" for name in alerts.resources.pids)]
        headings += ["produce rtt max", "queued max"]
        for heading in headings:
            detail.add_column(
                heading, justify="left" if heading in ("window", "transition") else "right"
            )
        for w in windows:
            start = w.closed_at - args.window_s
            busy, cores = alerts.resources.shares(start, w.received_at)
            rtt, queued = alerts.resources.worst_rtt(start, w.received_at)
            detail.add_row(
                f"{w.window_start:%H:%M:%S}",
                w.state,
                f"{w.acked_at - w.closed_at:.2f}",
                f"{w.last_partial_at - w.closed_at:.2f}",
                f"{w.written_at - w.closed_at:.2f}",
                f"{w.total:.2f}",
                f"{busy:.0%}",
                *(f"{share:.2f}" for share in cores.values()),
                _seconds(rtt),
                _seconds(queued),
            )
        console.print(detail)
    if alerts.missing:
        console.print(f"[red]missing ({len(alerts.missing)}):[/] {'; '.join(alerts.missing)}")
    if alerts.unexpected:
        console.print(
            f"other alert events (warm-up or wrong state): {'; '.join(alerts.unexpected)}"
        )
    if alerts.timestamp_types != {1}:
        console.print(
            f"note: message timestamp types seen {sorted(alerts.timestamp_types)} (1 = CreateTime)"
        )
    return passed


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--transitions", type=int, default=20, help="windows measured (20)")
    parser.add_argument("--rate", type=float, default=200.0, help="predictions per second (200)")
    parser.add_argument("--window-s", type=int, default=10, help="window size in seconds (10)")
    parser.add_argument("--lateness-s", type=int, default=1, help="allowed lateness (1 s)")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--linger-ms", type=int, default=5, help="producer linger (5 ms)")
    parser.add_argument(
        "--baseline-s",
        type=float,
        help="baseline phase length (that of the driftline phase; 0: skip)",
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="wait after the last close")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--seed", type=int, default=2024)
    args = parser.parse_args(argv)
    if args.transitions < 1 or args.rate <= 0 or args.window_s < 1 or args.lateness_s < 0:
        parser.error("need --transitions >= 1, --rate > 0, --window-s >= 1, --lateness-s >= 0")
    console = Console(highlight=False, width=180)
    signal.signal(signal.SIGTERM, _interrupt)
    workdir = Path(tempfile.mkdtemp(prefix="driftline-alert-bench-"))
    load = os.getloadavg()
    console.print(
        f"{os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
        f"work directory {workdir}"
    )
    failed = True
    baseline: BaselinePhase | None = None
    try:
        with EmbeddedBroker(workdir / "broker.log") as broker:
            console.print(f"broker: Tansu PID {broker.pid} on {broker.bootstrap}")
            alerts = measure_alerts(args, broker, workdir, console)
            seconds = alerts.ended - alerts.started if args.baseline_s is None else args.baseline_s
            if seconds > 0:
                baseline = measure_baseline(args, broker, seconds, console)
        failed = False
    except BenchmarkError as exc:
        console.print(f"[bold red]benchmark failed:[/] {exc}")
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
    return 0 if report(alerts, baseline, args, console) else 1


if __name__ == "__main__":
    sys.exit(main())
