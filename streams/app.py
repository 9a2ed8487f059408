"""The faust application behind ``driftline worker``.

faust runs the process (start-up, signals, timers, the producer); the topics
are read by two batch consumer loops (:mod:`streams.consumer`) running as
tasks of the app:

* ``ingest`` reads the predictions and labels topics (co-partitioned) a
  whole fetch at a time, hands each partition's messages to its
  :class:`~streams.partition.PartitionProcessor` and sends dead letters and
  window partials on. Every ``checkpoint_interval_s`` (and on revocation and
  shutdown) it delivers those outputs, saves each changed partition's state
  with the offsets it covers, and only then commits the offsets; after a
  restart each partition resumes from its checkpoint's offsets.
* ``merge`` reads the partials topic (keyed by model) and feeds the
  :class:`~streams.merger.WindowMerger`, whose points go to the sink, and the
  alert engine, whose events go to the alerts and retrain-requests topics;
  its state is saved after every batch.
* a one-second timer evaluates windows held back by idle partitions and
  throttled performance updates.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import faust
import orjson
from aiokafka.errors import MessageSizeTooLargeError, RecordListTooLargeError, RecordTooLargeError
from faust.app.base import BootStrategy

from alerts.engine import AlertEngine
from alerts.observation import WindowObservation
from detectors.profile import ReferenceProfile
from schemas import DriftlineSettings, MonitorConfig
from streams import points
from streams.allocator import trim_heap
from streams.consumer import BatchConsumer, LoopSettings, OutputsLost, Partition
from streams.decode import KafkaMessage
from streams.merger import WindowMerger
from streams.notify import Notifier, OutgoingNotification
from streams.partition import (
    BatchResult,
    PartitionProcessor,
    remove_stale_temporaries,
    write_atomically,
)
from streams.points import Point, parse_line_protocol
from streams.reference import profile_mismatches
from streams.sink import BufferedSink, SinkBackpressure, SinkError, make_sink
from streams.topics import cluster_metadata
from streams.windows import DriftPartial, PerformancePartial, WindowKey

log = logging.getLogger(__name__)


REFERENCE_RETRY_S = 60.0
"""How long a missing or unreadable reference profile is taken as absent before it is read again."""

STALL_HOLD_S = 2.0
"""Least time a worker that stood still past its session timeout waits for its groups."""


class ReferenceStore:
    """Loads reference profiles named by the configuration.

    A profile that loads is kept. One that is missing or unreadable is looked
    for again ``retry_s`` later, so a profile written after the workers
    started (a new model version deployed before its profile was built) is
    picked up without a restart; the warning is logged the first time only.
    Windows that began before a partition found the profile have incomplete
    sketches and get no drift (:class:`streams.merger.WindowMerger`).
    """

    def __init__(
        self,
        config: MonitorConfig,
        base: Path,
        *,
        retry_s: float = REFERENCE_RETRY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.base = base
        self.retry_s = retry_s
        self.clock = clock
        self._cache: dict[tuple[str, str], ReferenceProfile] = {}
        self._absent: dict[tuple[str, str], float] = {}
        """Profiles not found, with when to look again (never for a version that names no file)."""

    def __call__(self, model_id: str, version: str) -> ReferenceProfile | None:
        key = (model_id, version)
        reference = self._cache.get(key)
        if reference is not None:
            return reference
        if self.clock() < self._absent.get(key, -math.inf):
            return None
        path = self._path(model_id, version)
        if path is None:
            self._absent[key] = math.inf
            return None
        reference = self._read(model_id, version, path, quiet=key in self._absent)
        if reference is None:
            self._absent[key] = self.clock() + self.retry_s
            return None
        self._absent.pop(key, None)
        self._cache[key] = reference
        return reference

    def _path(self, model_id: str, version: str) -> Path | None:
        """The profile's file, or None when the model or the version names none."""
        model = self.config.model(model_id)
        if model is None:
            return None
        if "/" in version or "\\" in version or version in (".", "..") or "\0" in version:
            log.warning(
                "model %s version %r cannot name a reference file (path characters): drift is "
                "not computed for it",
                model_id,
                version[:80],
            )
            return None
        path = Path(model.reference_path(version))
        return path if path.is_absolute() else self.base / path

    def _read(
        self, model_id: str, version: str, path: Path, *, quiet: bool
    ) -> ReferenceProfile | None:
        """The profile in ``path``, or None (warned about unless ``quiet``)."""
        try:
            reference = ReferenceProfile.from_json(path.read_bytes())
        except FileNotFoundError:
            if not quiet:
                log.warning(
                    "no reference profile for %s version %s at %s: drift is not computed for "
                    "it (volume and performance are); looking again every %.0f s",
                    model_id,
                    version,
                    path,
                    self.retry_s,
                )
            return None
        except (OSError, ValueError) as exc:
            if not quiet:
                log.error(
                    "reference profile for %s version %r unreadable (%s): drift is not "
                    "computed for it; reading it again every %.0f s",
                    model_id,
                    version[:80],
                    exc,
                    self.retry_s,
                )
            return None
        model = self.config.model(model_id)
        problems = [] if model is None else profile_mismatches(model, reference)
        if problems:
            if not quiet:
                log.error(
                    "reference profile for %s version %r at %s does not fit the configuration "
                    "(%s): drift is not computed for it; rebuild it with `driftline reference "
                    "build -c CONFIG` (read again every %.0f s)",
                    model_id,
                    version[:80],
                    path,
                    "; ".join(problems),
                    self.retry_s,
                )
            return None
        log.info("loaded reference profile of %s version %s from %s", model_id, version, path)
        return reference


def _credentials(settings: DriftlineSettings) -> Any:
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = settings.ssl_context() if protocol in ("SSL", "SASL_SSL") else None
    if protocol.startswith("SASL"):
        password = settings.kafka_sasl_password
        username = settings.kafka_sasl_username or ""
        secret = password.get_secret_value() if password else ""
        if settings.kafka_sasl_mechanism == "PLAIN":
            return faust.SASLCredentials(
                username=username, password=secret, ssl_context=context, mechanism="PLAIN"
            )
        return faust.SASLCredentials(
            username=username,
            password=secret,
            ssl_context=context,
            mechanism=settings.kafka_sasl_mechanism,
        )
    return faust.SSLCredentials(context)


def source_partitions(settings: DriftlineSettings) -> int:
    """Partition count of the predictions topic (the merger waits for each)."""
    metadata = cluster_metadata(settings.confluent_config(), settings.topic_predictions)
    topic = metadata.topics.get(settings.topic_predictions)
    if topic is None or topic.error is not None or not topic.partitions:
        raise RuntimeError(
            f"topic {settings.topic_predictions} does not exist; run `driftline topics create`"
        )
    return len(topic.partitions)


def encode_partial(kind: str, source: int, model_id: str, body: dict[str, Any]) -> bytes:
    """One message of the partials topic."""
    return orjson.dumps({"kind": kind, "source": source, "model": model_id, **body})


@dataclass
class Outbox:
    """Messages the merger side produced, for the alerts and retrain-requests topics."""

    alerts: list[tuple[bytes, bytes]] = field(default_factory=list)
    retrain_requests: list[tuple[bytes, bytes]] = field(default_factory=list)

    def extend(self, other: Outbox) -> None:
        """Append another outbox's messages."""
        self.alerts.extend(other.alerts)
        self.retrain_requests.extend(other.retrain_requests)

    def __bool__(self) -> bool:
        return bool(self.alerts or self.retrain_requests)

    def to_json(self) -> dict[str, list[list[str]]]:
        """The messages as text, for a checkpoint (keys and values are UTF-8 JSON)."""
        return {
            "alerts": [[key.decode(), value.decode()] for key, value in self.alerts],
            "retrain_requests": [
                [key.decode(), value.decode()] for key, value in self.retrain_requests
            ],
        }

    @classmethod
    def from_json(cls, document: dict[str, list[list[str]]]) -> Outbox:
        """Inverse of :meth:`to_json`."""
        return cls(
            [(key.encode(), value.encode()) for key, value in document.get("alerts", [])],
            [(key.encode(), value.encode()) for key, value in document.get("retrain_requests", [])],
        )


class Worker:
    """State of one worker process: processors per partition, the merger, the sink."""

    def __init__(
        self,
        settings: DriftlineSettings,
        config: MonitorConfig,
        config_dir: Path,
        partitions: int,
        sink: BufferedSink | None = None,
    ) -> None:
        self.settings = settings
        self.config = config
        self.references = ReferenceStore(config, config_dir)
        self.checkpoints = Path(settings.data_dir) / "checkpoints"
        if self.checkpoints.is_dir():
            removed = remove_stale_temporaries(self.checkpoints)
            if removed:
                log.info("%d temporary files of interrupted checkpoint writes removed", removed)
        self.partitions = partitions
        self.processors: dict[int, PartitionProcessor] = {}
        self.mergers: dict[int, WindowMerger] = {}
        self.engines: dict[int, AlertEngine] = {}
        self.sink = sink or make_sink(settings)
        self.notifier = Notifier(
            {name: channel.urls for name, channel in config.channels.items()},
            max_queued=settings.notify_max_queued,
        )
        self.loops: list[BatchConsumer] = []
        # Alert and retrain-request messages of each partials partition that the
        # broker has not acknowledged yet, oldest first: saved with the merger's
        # checkpoint, sent again until delivered (the engines fire only once).
        self.unpublished: dict[int, Outbox] = defaultdict(Outbox)
        # Points a merger released that the store has not confirmed, by partials
        # partition, numbered: saved with the merger's checkpoint so a crash
        # while the store is down loses none of them.
        self.unflushed: dict[int, list[tuple[int, str]]] = defaultdict(list)
        self.merged_offsets: dict[int, int] = {}
        """Per partials partition, the next offset its merger has to apply: saved in the
        merger's checkpoint, where the partition resumes (not from the committed offset)."""
        self._sequence = 0
        # Released points the sink's bounded buffer had no room for yet, in
        # order; moved into it as flushes make room (one evaluation can
        # release more windows than the buffer holds, after an outage).
        self._overflow: list[tuple[int, Point]] = []
        self._added_up_to = 0
        """Sequence number of the last point handed to the sink."""
        self.flush_wanted = asyncio.Event()
        self.held_back = 0
        self.clock: Callable[[], float] = time.monotonic
        self._beat_at: float | None = None
        self._stalled_until = -math.inf
        self.stalls = 0
        """Times the process stood still longer than the group session timeout."""
        self.dead_letters_unsent = 0
        """Dead letters the producer refused outright (too large); counted, not retried."""
        """Evaluations skipped because the sink's buffer was past its high-water mark."""
        self._held_logged = 0.0

    def forget(self, topic: str, partitions: set[int]) -> None:
        """Drop in-memory state of revoked partitions; their checkpoints stay on disk.

        When a partition comes back (to this worker or another) its state is
        read from the checkpoint, never from a copy that another worker may
        have moved past in the meantime.
        """
        if topic in (self.settings.topic_predictions, self.settings.topic_labels):
            for partition in partitions:
                processor = self.processors.pop(partition, None)
                if processor is not None:  # its counters as this worker leaves it
                    self._log_partition(partition, processor)
        elif topic == self.settings.topic_partials:
            for partition in partitions:
                merger = self.mergers.pop(partition, None)
                if merger is not None:
                    self._log_merger(partition, merger)
                self.merged_offsets.pop(partition, None)
                self.engines.pop(partition, None)
                self.unpublished.pop(partition, None)  # in its checkpoint, for the next owner
                # Its points not confirmed yet are in the partition's checkpoint
                # for whoever takes it over.  Written from here too, they could
                # land after the new owner's later value of the same point (a
                # corrected performance window) and overwrite it.
                unconfirmed = self.unflushed.pop(partition, [])
                sequences = {sequence for sequence, _ in unconfirmed}
                self._overflow = [e for e in self._overflow if e[0] not in sequences]
                self.sink.discard(line for _, line in unconfirmed)

    def merger(self, partition: int) -> WindowMerger:
        """The merger of a partials partition, restored from its checkpoint if any."""
        merger = self.mergers.get(partition)
        if merger is None:
            merger = WindowMerger(self.config, self.references, self.partitions)
            engine = AlertEngine(self.config)
            path = self.checkpoints / f"merger-{partition}.json"
            if path.exists():
                document = orjson.loads(path.read_bytes())
                merger.restore(document["merger"])
                engine.restore(document["alerts"])
                unpublished = Outbox.from_json(document.get("unpublished", {}))
                if unpublished:
                    self.unpublished[partition] = unpublished
                lines = document.get("unflushed", [])
                if lines:
                    self._add_points(partition, parse_line_protocol("\n".join(lines)))
                # None: written before it was kept, or reading another partials topic
                next_offset = document.get("next_offset")
                if document.get("partials_topic") != self.settings.topic_partials:
                    next_offset = None
                if next_offset is not None:
                    self.merged_offsets[partition] = int(next_offset)
                log.info(
                    "merger of partials partition %d restored from %s (%d points to write, "
                    "resuming at offset %s)",
                    partition,
                    path,
                    len(lines),
                    "committed" if next_offset is None else next_offset,
                )
            self.mergers[partition] = merger
            self.engines[partition] = engine
        return merger

    def processor(self, partition: int) -> PartitionProcessor:
        """The processor of a partition, restored from its checkpoint if any."""
        processor = self.processors.get(partition)
        if processor is None:
            processor = PartitionProcessor(
                partition,
                self.config,
                self.references,
                predictions_topic=self.settings.topic_predictions,
                labels_topic=self.settings.topic_labels,
                limits=self.settings.limits,
            )
            path = self._checkpoint_path(partition)
            if path.exists():
                processor.restore(path.read_bytes())
                log.info(
                    "partition %d restored from %s (offsets %s)",
                    partition,
                    path,
                    processor.join.applied_offsets,
                )
                read = {topic for topic, _ in processor.join.applied_offsets}
                configured = {self.settings.topic_predictions, self.settings.topic_labels}
                if read - configured:
                    log.warning(
                        "partition %d's checkpoint in %s was written reading %s, not configured "
                        "now (configured: %s): its windows and join state are kept and a "
                        "configured topic it did not read is read from its start; point "
                        "DRIFTLINE_DATA_DIR elsewhere to start afresh",
                        partition,
                        path.parent,
                        ", ".join(sorted(read - configured)),
                        ", ".join(sorted(configured)),
                    )
            self.processors[partition] = processor
        return processor

    def _checkpoint_path(self, partition: int) -> Path:
        return self.checkpoints / f"partition-{partition}.bin"

    def has_checkpoint(self, partition: int) -> bool:
        """Whether a source partition has saved state (in memory or on disk)."""
        return partition in self.processors or self._checkpoint_path(partition).exists()

    def checkpoint(self, partition: int) -> None:
        """Save a partition's state with the offsets it covers (before they are committed)."""
        write_atomically(self._checkpoint_path(partition), self.processors[partition].to_bytes())

    def ingest(
        self, messages: Sequence[KafkaMessage]
    ) -> tuple[list[bytes], list[tuple[bytes, bytes]]]:
        """Process a batch; returns dead letters and (key, value) partial messages."""
        by_partition: dict[int, list[KafkaMessage]] = defaultdict(list)
        for message in messages:
            by_partition[message.partition].append(message)
        dead: list[bytes] = []
        partials: list[tuple[bytes, bytes]] = []
        for partition, batch in sorted(by_partition.items()):
            processor = self.processor(partition)
            result = processor.process(batch)
            dead.extend(letter.model_dump_json().encode() for letter in result.dead_letters)
            partials += self._partials(partition, processor, result)
        return dead, partials

    def _partials(
        self,
        partition: int,
        processor: PartitionProcessor,
        result: BatchResult,
        *,
        quiet: bool = False,
    ) -> list[tuple[bytes, bytes]]:
        """The (key, value) partial messages of what a partition's batch produced, or
        (``quiet``) what its clocks moved by :meth:`advance_quiet` did."""
        windows = result.windows
        marked: dict[str, Any] = {"quiet": True} if quiet else {}

        def message(kind: str, model_id: str, body: dict[str, Any]) -> tuple[bytes, bytes]:
            return model_id.encode(), encode_partial(kind, partition, model_id, body | marked)

        partials = [
            message(
                "drift",
                drift.key.model_id,
                {
                    "key": drift.key.encode(),
                    "payload": None if drift.payload is None else drift.payload.decode(),
                    "predictions": drift.predictions,
                },
            )
            for drift in windows.drift
        ]
        partials += [
            message(
                "performance",
                perf.key.model_id,
                {"key": perf.key.encode(), "payload": perf.payload.decode(), "final": perf.final},
            )
            for perf in windows.performance
        ]
        applied = [
            processor.join.next_offset(self.settings.topic_predictions),
            processor.join.next_offset(self.settings.topic_labels),
        ]
        late_by_model: dict[str, list[list[Any]]] = defaultdict(list)
        for key, count in windows.late.items():
            late_by_model[key.model_id].append([key.encode(), count])
        dead_by_model: dict[str, list[list[Any]]] = defaultdict(list)
        for key, count in windows.dead_letters.items():
            dead_by_model[key.model_id].append([key.encode(), count])
        for model in self.config.models:
            body: dict[str, Any] = {
                "watermark": result.watermarks_us.get(model.id),
                "join_watermark": result.join_watermarks_us.get(model.id),
                # how far this partition has read: progress for operators and benchmarks
                "applied": applied,
            }
            if model.id in late_by_model:
                body["late"] = late_by_model[model.id]
            if model.id in dead_by_model:
                body["dead"] = dead_by_model[model.id]
            partials.append(message("watermark", model.id, body))
        return partials

    def advance_quiet(
        self, quiet: Mapping[Partition, float]
    ) -> tuple[list[tuple[bytes, bytes]], set[Partition]]:
        """Move the clocks of quiet partitions (``window.close_when_idle``).

        ``quiet``: per owned input partition, how long it has been read to
        its end with nothing new (seconds). Returns the partial messages of
        what the moved clocks closed or settled, and the input partitions
        whose state changed (to be checkpointed).
        """
        partials: list[tuple[bytes, bytes]] = []
        moved: set[Partition] = set()
        predictions, labels = self.settings.topic_predictions, self.settings.topic_labels
        for partition, processor in sorted(self.processors.items()):
            result = processor.advance_quiet(
                quiet.get((predictions, partition), 0.0), quiet.get((labels, partition), 0.0)
            )
            if result is None:
                continue
            partials += self._partials(partition, processor, result, quiet=True)
            moved |= {(predictions, partition), (labels, partition)}
            closed = [drift.key for drift in result.windows.drift]
            settled = [perf.key for perf in result.windows.performance if perf.final]
            if closed or settled:
                log.info(
                    "partition %d quiet (predictions %.0f s, labels %.0f s): closed %d drift "
                    "windows and settled %d performance windows by the clock (%s)",
                    partition,
                    quiet.get((predictions, partition), 0.0),
                    quiet.get((labels, partition), 0.0),
                    len(closed),
                    len(settled),
                    ", ".join(sorted({key.model_id for key in closed + settled})),
                )
        return partials, moved

    def merge(
        self, messages: list[tuple[int, bytes]], next_offsets: Mapping[int, int] | None = None
    ) -> Outbox:
        """Apply partial messages ``(partials partition, value)``; flush ready points.

        ``next_offsets``: per partials partition, the offset after the last of
        ``messages``, kept with the merger's state (:attr:`merged_offsets`).
        """
        for partition, value in messages:
            self._apply_partial(self.merger(partition), orjson.loads(value))
        if next_offsets:
            self.merged_offsets.update(next_offsets)
        return self.emit()

    def checkpoint_merger(self, partition: int) -> None:
        """Save a partials partition's merger and alert state (not while :meth:`stalled`:
        the next owner then resumes from the last one saved)."""
        if self.stalled():
            return
        document = {
            "merger": self.mergers[partition].snapshot(),
            "alerts": self.engines[partition].snapshot(),
            "unflushed": [line for _, line in self.unflushed.get(partition, [])],
            "unpublished": self.unpublished.get(partition, Outbox()).to_json(),
            "next_offset": self.merged_offsets.get(partition),
            "partials_topic": self.settings.topic_partials,
        }
        write_atomically(self.checkpoints / f"merger-{partition}.json", orjson.dumps(document))

    @staticmethod
    def _apply_partial(merger: WindowMerger, message: dict[str, Any]) -> None:
        source = int(message["source"])
        kind = message["kind"]
        # sent by a quiet partition: its clocks moved, it read nothing
        heard = not message.get("quiet", False)
        if kind == "drift":
            payload = message["payload"]
            merger.add_drift(
                source,
                DriftPartial(
                    WindowKey.decode(message["key"]),
                    None if payload is None else payload.encode(),
                    int(message["predictions"]),
                ),
                heard=heard,
            )
        elif kind == "performance":
            merger.add_performance(
                source,
                PerformancePartial(
                    WindowKey.decode(message["key"]),
                    message["payload"].encode(),
                    bool(message["final"]),
                ),
                heard=heard,
            )
        elif kind == "watermark":
            if "dead" in message:
                merger.add_dead_letters(
                    source, {WindowKey.decode(k): int(n) for k, n in message["dead"]}
                )
            if "late" in message:
                merger.add_late(source, {WindowKey.decode(k): int(n) for k, n in message["late"]})
            merger.add_watermark(
                source,
                message["model"],
                message["watermark"],
                message.get("join_watermark"),
                heard=heard,
            )
        else:
            log.warning("unknown partial kind %r from partition %d ignored", kind, source)

    @staticmethod
    def _log_partition(partition: int, processor: PartitionProcessor) -> None:
        """The counter lines of one source partition."""
        totals: dict[str, int] = {}
        for counters in processor.join.counters().values():
            for name, value in asdict(counters).items():
                totals[name] = totals.get(name, 0) + value
        log.info(
            "partition %d join: %s; dead letters unattributed: %d; pending %d, orphans %d; "
            "predictions of forgotten windows: %d, dead letters of forgotten windows: %d",
            partition,
            ", ".join(f"{name}={value}" for name, value in totals.items()),
            processor.unattributed_dead_letters,
            processor.join.pending_count,
            processor.join.orphan_count,
            processor.windows.past_retention,
            processor.windows.dead_letters_past_retention,
        )
        if processor.dead_letter_reasons:
            log.info(
                "partition %d dead letters by reason: %s",
                partition,
                ", ".join(
                    f"{reason}={count}"
                    for reason, count in processor.dead_letter_reasons.most_common()
                ),
            )

    @staticmethod
    def _log_merger(partition: int, merger: WindowMerger) -> None:
        """The counter line of one partials partition's merger, when it has something to say."""
        if (
            merger.ignored_partials
            or merger.dropped_windows
            or merger.incomplete_drift
            or merger.unconfigured_partials
        ):
            log.info(
                "merger %d: partials of settled or forgotten windows ignored %d, "
                "of windows outside line protocol's times dropped %d, of models not "
                "configured dropped %d; windows without drift for want of a reference "
                "profile on some partition %d",
                partition,
                merger.ignored_partials,
                merger.dropped_windows,
                merger.unconfigured_partials,
                merger.incomplete_drift,
            )

    def log_counters(self) -> None:
        """One line per owned partition with the join's counters (expiries included)."""
        for partition, processor in sorted(self.processors.items()):
            self._log_partition(partition, processor)
        for partition, merger in sorted(self.mergers.items()):
            self._log_merger(partition, merger)
        for loop in self.loops:
            log.info(
                "consumer %s: %d messages in %d batches",
                loop.loop_settings.group_id,
                loop.messages,
                loop.batches,
            )
        sink = asdict(self.sink.stats)
        log.info(
            "sink %s: %s, pending=%d, windows held back %d times, dead letters unsent %d%s",
            self.sink.target,
            ", ".join(f"{name}={value}" for name, value in sink.items()),
            self.sink.pending,
            self.held_back,
            self.dead_letters_unsent,
            f"; last failure: {self.sink.last_failure}" if self.sink.last_failure else "",
        )
        notes = asdict(self.notifier.stats)
        log.info(
            "notifications: %s, queued=%d",
            ", ".join(f"{name}={value}" for name, value in notes.items()),
            self.notifier.queued,
        )

    def _add_points(self, partition: int, ready: list[Point]) -> None:
        if not ready:
            return
        for point in ready:
            self._sequence += 1
            self.unflushed[partition].append((self._sequence, point.to_line_protocol()))
            self._overflow.append((self._sequence, point))
        self.offer()

    def offer(self) -> None:
        """Move released points into the sink's buffer, as many as it has room for."""
        while self._overflow:
            room = self.sink.max_buffered_points - self.sink.pending
            if room <= 0:
                break
            batch = self._overflow[:room]
            try:
                self.sink.add([point for _, point in batch])
            except SinkBackpressure:  # pending only shrinks meanwhile; kept for safety
                break
            del self._overflow[: len(batch)]
            self._added_up_to = batch[-1][0]
            self.flush_wanted.set()

    def backpressure(self) -> bool:
        """Whether the sink's buffer is past half its bound (the store is not keeping up)."""
        return bool(self._overflow) or self.sink.pending >= self.sink.max_buffered_points // 2

    def flush(self) -> None:
        """Write the buffered points (blocking: the app runs :meth:`write` instead)."""
        written_up_to = self._added_up_to
        self.sink.flush()
        self._written(written_up_to)

    async def write(self) -> None:
        """Write the buffered points from a thread; the event loop goes on meanwhile."""
        written_up_to = self._added_up_to
        await asyncio.to_thread(self.sink.flush)
        self._written(written_up_to)  # in the loop: points added meanwhile stay tracked

    def _written(self, up_to: int) -> None:
        """Forget the copies kept for the checkpoints of points the store confirmed."""
        for partition, entries in list(self.unflushed.items()):
            self.unflushed[partition] = [e for e in entries if e[0] > up_to]

    def beat(self) -> None:
        """The one-second timer's mark: notes when the process stood still longer than the
        group session timeout (stopped, or starved of CPU), see :meth:`stalled`."""
        now = self.clock()
        timeout = self.settings.kafka_session_timeout_s
        still = self._still_for(now)
        if still > timeout:
            self.stalls += 1
            hold = max(STALL_HOLD_S, 3 * self.settings.kafka_heartbeat_interval_s)
            self._stalled_until = now + hold
            log.warning(
                "the worker stood still for %.1f s, longer than the group session timeout "
                "(%.0f s): its partitions may have moved without it knowing yet; for %.0f s, "
                "the time its groups take to tell it, windows are not evaluated, points not "
                "written and merger state not saved",
                still,
                timeout,
                hold,
            )
        self._beat_at = now

    def stalled(self) -> bool:
        """Whether the process stood still past the session timeout a moment ago.

        Its groups may have given its partitions to another worker, which it
        learns only from its next heartbeat: until then (a few heartbeat
        intervals) it evaluates no window and writes no point or merger
        checkpoint, which could be older than the new owner's. Partials are
        still applied (their state and offset are saved together, later).
        """
        now = self.clock()
        overdue = self._still_for(now) > self.settings.kafka_session_timeout_s
        return overdue or now < self._stalled_until

    def _still_for(self, now: float) -> float:
        """Seconds since the timer's last mark (0 before the first)."""
        return 0.0 if self._beat_at is None else now - self._beat_at

    def emit(self) -> Outbox:
        """Evaluate ready windows and run the alert rules; points go to the sink's buffer.

        Returns the alert and retrain-request messages to publish; chat
        notifications go to the notifier's queue. While the sink's buffer is
        past its high-water mark (the store is down or slow) the windows wait
        in the mergers, which keeps memory bounded and loses nothing; the
        alert rules still judge them as they become ready (their points
        follow once the store takes points again), so alerts go out while
        the store is down. Nothing is evaluated while :meth:`stalled`.
        """
        outbox = Outbox()
        if self.stalled():
            return outbox
        self.offer()
        held = self.backpressure()
        if held:
            self.held_back += 1
            now = time.monotonic()
            if now - self._held_logged >= 10:
                self._held_logged = now
                log.warning(
                    "back-pressure: %d points wait for %s (%s); windows are held until it "
                    "accepts them (their alerts are not)",
                    self.sink.pending + len(self._overflow),
                    self.sink.target,
                    self.sink.last_failure or "slow",
                )
        for partition, merger in self.mergers.items():
            if held:
                merger.observe_held()
                ready: list[Point] = []
            else:
                ready = merger.evaluate()
            fresh = self._judge(
                self.engines[partition], merger.drain_observations(), merger.waiting(), ready
            )
            self._add_points(partition, ready)
            if fresh:
                self.unpublished[partition].extend(fresh)
                outbox.extend(fresh)
        return outbox

    def _judge(
        self,
        engine: AlertEngine,
        observations: list[WindowObservation],
        waiting: set[tuple[str, str, str, datetime]],
        ready: list[Point],
    ) -> Outbox:
        """Run the alert rules on windows; alert points join ``ready``, chat the notifier."""
        fresh = Outbox()
        for observation in [*observations, *engine.silences(observations, waiting)]:
            output = engine.observe(observation)
            for event in output.alert_events:
                fresh.alerts.append((event.alert_id.encode(), event.model_dump_json().encode()))
                ready.append(
                    points.alerts(
                        model_id=event.model_id,
                        model_version=event.model_version,
                        segment=event.segment,
                        feature=event.feature,
                        rule=event.rule,
                        severity=event.severity,
                        state=event.state,
                        value=event.value,
                        summary=event.summary,
                        time=event.window_end,
                    )
                )
                log.warning("alert %s %s: %s", event.state, event.rule, event.summary)
            for request in output.retrain_requests:
                fresh.retrain_requests.append(
                    (request.request_id.encode(), request.model_dump_json().encode())
                )
                log.warning("retrain requested for %s v%s", request.model_id, request.model_version)
            for message in output.notifications:
                body = message.body if message.link is None else f"{message.body}\n{message.link}"
                self.notifier.submit(OutgoingNotification(message.channel, message.title, body))
        return fresh


_REFUSED_FOR_GOOD = (MessageSizeTooLargeError, RecordTooLargeError, RecordListTooLargeError)
"""Producer errors that a retry of the same message meets again."""


def refused_for_good(error: BaseException) -> bool:
    """Whether a send failed for a reason a retry meets again (the message is too large).

    faust wraps the producer's error (``ProducerSendError`` raised from it),
    so the whole chain of causes is looked at.
    """
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, _REFUSED_FOR_GOOD):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or (None if cause.__suppress_context__ else cause.__context__)
    return False


async def _sending(topic: Any, key: bytes | None, value: bytes) -> Awaitable[Any]:
    """The delivery future of one message; a send that raises gives a failed future."""
    try:
        future: Awaitable[Any] = await topic.send(key=key, value=value)
    except Exception as exc:
        failed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        failed.set_exception(exc)
        return failed
    return future


class _InputHandler:
    """Drives the worker's partition processors from the input topics' consumer loop."""

    def __init__(self, app: faust.App, worker: Worker, dead_letters: Any, partials: Any) -> None:
        self.app = app
        self.worker = worker
        self.dead_letters = dead_letters
        self.partials = partials
        self.sent: list[Awaitable[Any]] = []
        """Delivery futures of the partials sent since the last checkpoint."""
        self.sent_dead: list[Awaitable[Any]] = []
        """Delivery futures of the dead letters sent since the last checkpoint."""

    def assigned(self, partitions: set[Partition]) -> dict[Partition, int]:
        positions: dict[Partition, int] = {}
        for number in sorted({number for _, number in partitions}):
            if self.worker.has_checkpoint(number):
                join = self.worker.processor(number).join
                positions.update(
                    {(topic, n): join.next_offset(topic) for topic, n in partitions if n == number}
                )
            else:
                self.worker.processor(number)
        return positions

    async def handle(self, messages: Sequence[KafkaMessage]) -> None:
        dead, outgoing = self.worker.ingest(messages)
        # A send that raises (the producer's buffer full past its timeout, a
        # message too large) counts as an undelivered output: the next
        # checkpoint sees it and rewinds, as for a delivery that fails later.
        for letter in dead:
            self.sent_dead.append(await _sending(self.dead_letters, None, letter))
        for key, value in outgoing:
            self.sent.append(await _sending(self.partials, key, value))

    async def quiet(self, partitions: Mapping[Partition, float]) -> set[Partition]:
        outgoing, moved = self.worker.advance_quiet(partitions)
        for key, value in outgoing:
            self.sent.append(await _sending(self.partials, key, value))
        return moved

    async def checkpoint(self, partitions: set[Partition]) -> None:
        # Outputs of the batches first: a checkpoint never covers a partial
        # or a dead letter the broker has not acknowledged.
        await self.app.producer.flush()
        # Taken off only once gathered: cancelled meanwhile, they are seen again.
        dead, sent = list(self.sent_dead), list(self.sent)
        dead_results = await asyncio.gather(*dead, return_exceptions=True)
        sent_results = await asyncio.gather(*sent, return_exceptions=True)
        del self.sent_dead[: len(dead)], self.sent[: len(sent)]
        failures: list[BaseException] = []
        for result in dead_results:
            if isinstance(result, BaseException) and refused_for_good(result):
                # A dead letter the broker refuses as too large would be
                # refused again on a replay: counted and logged, not retried.
                self.worker.dead_letters_unsent += 1
                log.error("dead letter not delivered: %r", result)
            elif isinstance(result, BaseException):
                failures.append(result)  # a timeout, a leader moving: retried by the rewind
        failures += [result for result in sent_results if isinstance(result, BaseException)]
        too_large = [failure for failure in failures if refused_for_good(failure)]
        if too_large:
            # A partial the broker refuses as too large is refused again on every
            # replay: the partitions cannot move on until the limit is raised.
            log.error(
                "a partial is larger than the producer or the broker accepts; its partitions "
                "replay from their last checkpoint until the limits are raised (the producer "
                "takes twice DRIFTLINE_MAX_MESSAGE_BYTES; the partials topic's "
                "max.message.bytes): %r",
                too_large[0],
            )
        if failures:
            raise OutputsLost(
                f"{len(failures)} of {len(sent) + len(dead)} outputs were not delivered "
                f"({failures[0]!r})"
            )
        for number in sorted({number for _, number in partitions}):
            if number in self.worker.processors:
                self.worker.checkpoint(number)
        # The batches and checkpoints since the last round have freed their
        # blocks; the heap hands the pages back (streams/allocator.py).
        trim_heap()

    def revoked(self, partitions: set[Partition]) -> None:
        for topic in {topic for topic, _ in partitions}:
            self.worker.forget(topic, {n for t, n in partitions if t == topic})


class _MergeHandler:
    """Drives the mergers and alert engines from the partials topic's consumer loop."""

    def __init__(self, worker: Worker, publish: Callable[[], Awaitable[None]]) -> None:
        self.worker = worker
        self.publish = publish

    def assigned(self, partitions: set[Partition]) -> dict[Partition, int]:
        # Each partition resumes where its merger's saved state ends. A checkpoint
        # can be older than the group's committed offset: one written by a worker
        # that had lost the partition without knowing it yet (its heartbeats late),
        # or the state a revoked consumer had no batch to save for. From the
        # committed offset the partials in between would be lost; from here they
        # are applied to the state saved, as the worker that saved it would have.
        positions: dict[Partition, int] = {}
        for topic, number in sorted(partitions):
            self.worker.merger(number)
            if number in self.worker.merged_offsets:
                positions[(topic, number)] = self.worker.merged_offsets[number]
        return positions

    async def handle(self, messages: Sequence[KafkaMessage]) -> None:
        next_offsets: dict[int, int] = {}
        for message in messages:
            next_offsets[message.partition] = message.offset + 1
        self.worker.merge([(m.partition, m.value or b"") for m in messages], next_offsets)
        await self.publish()

    async def quiet(self, partitions: Mapping[Partition, float]) -> set[Partition]:
        return set()  # the partials topic has no clocks to move

    async def checkpoint(self, partitions: set[Partition]) -> None:
        for _, number in sorted(partitions):
            if number in self.worker.mergers:
                self.worker.checkpoint_merger(number)

    def revoked(self, partitions: set[Partition]) -> None:
        self.worker.forget(self.worker.settings.topic_partials, {n for _, n in partitions})


def build_app(
    settings: DriftlineSettings,
    config: MonitorConfig,
    config_dir: Path,
    *,
    max_records: int = 5000,
) -> tuple[faust.App, Worker]:
    """The faust app of a worker and the state it drives.

    The app runs two batch consumer loops as tasks (the input topics in group
    ``<group_id>-ingest``, the partials topic in ``<group_id>-merge``), the
    one-second evaluation timer, the minute counter log and the notifier.
    """
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.group_id,
        broker=[f"kafka://{server}" for server in settings.kafka_bootstrap.split(",")],
        broker_credentials=_credentials(settings),
        store="memory://",
        key_serializer="raw",
        value_serializer="raw",
        web_enabled=False,
        topic_disable_leader=True,
        topic_allow_declare=False,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.kafka_session_timeout_s,
        broker_heartbeat_interval=settings.kafka_heartbeat_interval_s,
        datadir=str(Path(settings.data_dir) / "faust"),
        # A dead letter carries the refused message whole, plus why: room for the
        # largest message the worker reads (faust's default is 1,000,000 bytes).
        producer_max_request_size=max(1_000_000, 2 * settings.max_message_bytes),
    )
    # faust's own consumer stays off: the topics are read by the batch loops below.
    app.boot_strategy = BootStrategy(app, enable_kafka_consumer=False)
    worker = Worker(settings, config, config_dir, source_partitions(settings))
    dead_letters = app.topic(settings.topic_dead_letter, key_type=bytes, value_type=bytes)
    partials = app.topic(settings.topic_partials, key_type=bytes, value_type=bytes)
    alerts_topic = app.topic(settings.topic_alerts, key_type=bytes, value_type=bytes)
    retrain_topic = app.topic(settings.topic_retrain_requests, key_type=bytes, value_type=bytes)

    publishing = asyncio.Lock()

    async def publish() -> None:
        """Send what the engines produced and the broker has not acknowledged yet.

        Delivered messages leave ``worker.unpublished``; from the first one
        that failed on, a partition's messages stay and go again at the next
        call (the one-second timer), in order, so a consumer may see a
        message twice (ids are stable) but never miss one.
        """
        async with publishing:
            rounds = []
            for box in list(worker.unpublished.values()):
                for messages, topic in (
                    (box.alerts, alerts_topic),
                    (box.retrain_requests, retrain_topic),
                ):
                    if messages:
                        sending = list(messages)
                        futures = [await _sending(topic, key, value) for key, value in sending]
                        rounds.append((messages, sending, futures))
            if not rounds:
                return
            await app.producer.flush()
            for messages, sending, futures in rounds:
                results = await asyncio.gather(*futures, return_exceptions=True)
                failed = [at for at, r in enumerate(results) if isinstance(r, BaseException)]
                delivered = failed[0] if failed else len(results)
                if messages[:delivered] == sending[:delivered]:
                    del messages[:delivered]
                if failed:
                    log.error(
                        "%d of %d alert or retrain messages not delivered, sent again in a "
                        "second: %r",
                        len(failed),
                        len(sending),
                        results[delivered],
                    )

    ingest_loop = BatchConsumer(
        settings,
        [settings.topic_predictions, settings.topic_labels],
        _InputHandler(app, worker, dead_letters, partials),
        LoopSettings(
            f"{settings.group_id}-ingest",
            checkpoint_interval_s=settings.checkpoint_interval_s,
            max_records=max_records,
            # once a second, only when some model closes its windows when idle
            quiet_interval_s=(
                1.0 if any(m.window.close_when_idle for m in config.models) else None
            ),
            # an idle partition's fetch answers every fetch_max_wait_ms: older than
            # that (with room for a round trip) is a fetch that failed
            quiet_fetch_age_s=max(5.0, 2 * settings.fetch_max_wait_ms / 1000 + 1.0),
        ),
    )
    merge_loop = BatchConsumer(
        settings,
        [settings.topic_partials],
        _MergeHandler(worker, publish),
        # Partials are few and the merger's state is small: saved after every batch.
        LoopSettings(f"{settings.group_id}-merge", checkpoint_interval_s=0.0),
    )
    worker.loops = [ingest_loop, merge_loop]

    async def ingest() -> None:
        await ingest_loop.run()

    async def merge() -> None:
        await merge_loop.run()

    async def beat() -> None:
        # a timer of its own: tick can wait on the producer, which is no stall
        worker.beat()

    async def tick() -> None:
        worker.emit()
        await publish()
        for partition in list(worker.mergers):
            worker.checkpoint_merger(partition)

    async def notifications() -> None:
        await worker.notifier.run()

    async def flusher() -> None:
        # The sink's writes block (HTTP with retries and back-off): in a thread,
        # so heartbeats and the loops go on while the store is slow or down.
        while True:
            await worker.flush_wanted.wait()
            worker.flush_wanted.clear()
            if worker.stalled():  # what it holds may be older than a new owner's points
                await asyncio.sleep(0.5)
                worker.flush_wanted.set()
                continue
            try:
                await worker.write()
            except SinkError as exc:
                log.error("writing points failed, they stay buffered: %s", exc)
                worker.flush_wanted.set()
                await asyncio.sleep(1.0)
            else:
                worker.offer()  # points held for room go next, not a tick later

    async def report() -> None:
        worker.log_counters()

    async def stop_loops(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        # Before faust flushes and stops its producer, and while the partitions
        # are still this worker's: alerts out, points written, mergers saved.
        # Then the loops stop: their last checkpoints deliver their outputs
        # first, and they let go of the partitions' state as they leave.
        await publish()  # what is still undelivered stays in the mergers' checkpoints
        # one more try, unless the store is known down or the partitions may have moved
        if worker.sink.last_failure is None and not worker.stalled():
            try:
                await worker.write()
            except SinkError as exc:
                log.error("points not written at shutdown (kept in the checkpoints): %s", exc)
        for partition in list(worker.mergers):
            worker.checkpoint_merger(partition)
        await asyncio.gather(*(loop.stop() for loop in worker.loops))
        abandoned = await worker.notifier.close(5.0)
        if abandoned:
            log.error("%d chat notifications not sent at shutdown", abandoned)
        worker.log_counters()  # the final counters, as the minute line has them

    app.on_before_shutdown.connect(stop_loops)
    app.task(ingest)
    app.task(merge)
    app.timer(1.0)(beat)
    app.timer(1.0)(tick)
    app.timer(60.0)(report)
    app.task(notifications)
    app.task(flusher)
    return app, worker
