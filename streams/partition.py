"""Everything one source partition does to a batch: decode, join, window.

A :class:`PartitionProcessor` owns the join state and the windows of one
partition number of the (co-partitioned) predictions and labels topics. It is
pure code over raw messages, so the faust agent stays a few lines and the
whole path is testable without a broker. Its checkpoint holds the join, the
open windows and the offsets applied, so a restart from an older committed
offset neither loses nor double-counts anything.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import struct
import time
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from pathlib import Path
from typing import Any, TypeVar

import orjson

from schemas import DeadLetter, InputLimits, LabelEvent, MonitorConfig, PredictionEvent
from streams.decode import DecodedBatch, KafkaMessage, decode_labels, decode_predictions
from streams.join import JoinedPair, JoinPolicy, JoinState, duration_us, event_us
from streams.windows import PartitionWindows, ReferenceLoader, WindowOutput, as_float

CHECKPOINT_MAGIC = b"DLPC"
"""First bytes of a partition checkpoint (format 2 on)."""

CHECKPOINT_FORMAT = 2
"""Format written by :meth:`PartitionProcessor.to_bytes` (the byte after the magic).

Format 1 (zlib-compressed JSON holding the join's checkpoint in hex, no magic)
is still read.
"""

_FRAME = struct.Struct("<IQ")  # lengths of the header and of the join's checkpoint

SLICE_PREDICTIONS = 1000
"""Most predictions of a batch decoded and held as Python objects at a time.

A worker reading a backlog gets batches of thousands of messages, often all
of one partition. Decoded whole, a batch of 5,000 predictions held about
15 MB of small objects at once; Python's allocator keeps the arenas that
served them, and in ``benchmarks.e2e_throughput`` the worker's memory rose by
16 MiB of empty pools the first time such batches came, never given back.
In slices the batch needs a fifth of that, and the cost per event is the
same for slices of 500 to 5,000 (``benchmarks.decode_path --batch``). The
outcome does not depend on how a batch is sliced: the join applies events one
by one in offset order whatever the slices, the drift windows count the
predictions the join counted as new and judge lateness event by event, and
the performance windows take the batch's pairs at once.
"""

EventT = TypeVar("EventT", PredictionEvent, LabelEvent)
_offset_of = attrgetter("offset")


@dataclass
class BatchResult:
    """What a batch produced for the outside world."""

    dead_letters: list[DeadLetter] = field(default_factory=list)
    windows: WindowOutput = field(default_factory=WindowOutput)
    watermarks_us: dict[str, int] = field(default_factory=dict)
    """Per model, the drift watermark (the newest prediction time read, or the model's
    own for one that ``runs_behind``): its drift windows close by it."""
    join_watermarks_us: dict[str, int] = field(default_factory=dict)
    """Per model, the join's watermark: its performance windows settle, and its windows
    are forgotten, by it."""
    predictions: int = 0
    labels: int = 0


class PartitionCheckpointError(ValueError):
    """A partition checkpoint that cannot be read (unknown format, damaged, other partition)."""


def _target(event: PredictionEvent | LabelEvent) -> object:
    """What a regression model's metrics read of an event: its prediction or its label."""
    return event.label if isinstance(event, LabelEvent) else event.prediction


class PartitionProcessor:
    """Decode, join and window the messages of one source partition.

    Parameters
    ----------
    partition
        The partition number (of both topics).
    config
        The monitor configuration.
    load_reference
        Reference profile loader.
    predictions_topic, labels_topic
        Topic names.
    limits
        Input bounds for decoding.
    max_future
        Events stamped further than this ahead of the wall clock are dead
        letters: they would move the watermark and close windows early.
    """

    def __init__(
        self,
        partition: int,
        config: MonitorConfig,
        load_reference: ReferenceLoader,
        *,
        predictions_topic: str,
        labels_topic: str,
        limits: InputLimits,
        max_future: timedelta = timedelta(hours=1),
    ) -> None:
        self.partition = partition
        self.config = config
        self.predictions_topic = predictions_topic
        self.labels_topic = labels_topic
        self.limits = limits
        self.max_future = max_future
        self.policies = {model.id: JoinPolicy.from_model(model) for model in config.models}
        self._regression = frozenset(
            model.id for model in config.models if model.task == "regression"
        )
        self.join = JoinState(
            partition,
            self.policies,
            predictions_topic=predictions_topic,
            labels_topic=labels_topic,
        )
        self.windows = PartitionWindows(config, load_reference)
        self.dead_letter_reasons: Counter[str] = Counter()
        self.unattributed_dead_letters = 0

    def _screen(
        self, batch: DecodedBatch[EventT], messages: Sequence[KafkaMessage], now: datetime
    ) -> tuple[list[EventT], list[int], list[DeadLetter]]:
        """Keep events of configured models stamped no later than now + max_future."""
        policies = self.policies
        horizon = now + self.max_future
        kept: list[EventT] = []
        kept_offsets: list[int] = []
        letters: list[DeadLetter] = []
        by_offset: dict[int, KafkaMessage] | None = None
        regression = self._regression
        for event, offset in zip(batch.events, batch.offsets, strict=True):
            if (
                event.model_id in policies
                and event.timestamp <= horizon
                and (event.model_id not in regression or math.isfinite(as_float(_target(event))))
            ):
                kept.append(event)
                kept_offsets.append(offset)
                continue
            if event.model_id not in policies:
                known = ", ".join(sorted(policies))
                reason = f"model_id: {event.model_id!r} is not monitored (configured: {known})"
            elif event.timestamp > horizon:
                reason = (
                    f"timestamp: {event.timestamp.isoformat()} is more than "
                    f"{self.max_future} ahead of the clock"
                )
            else:
                field = "label" if isinstance(event, LabelEvent) else "prediction"
                reason = (
                    f"{field}: {_target(event)!r} is not a finite number, and model "
                    f"{event.model_id!r} is a regression model"
                )
            if by_offset is None:
                by_offset = {message.offset: message for message in messages}
            message = by_offset[offset]
            letters.append(
                DeadLetter.from_failure(
                    message.value,
                    key=message.key,
                    topic=message.topic,
                    partition=message.partition,
                    offset=message.offset,
                    error_class="Rejected",
                    error_message=reason,
                    received_at=now,
                )
            )
            self.dead_letter_reasons[reason.split(":", 1)[0]] += 1
        return kept, kept_offsets, letters

    def process(self, messages: Sequence[KafkaMessage], now: datetime | None = None) -> BatchResult:
        """Apply one batch of raw messages of this partition (any mix of topics).

        The batch's labels are applied first, then its predictions in slices
        of at most ``SLICE_PREDICTIONS``, each decoded, joined and counted in
        the drift windows before the next is decoded; the joined pairs go to
        the performance windows at the end.
        """
        now = now or datetime.now(UTC)
        result = BatchResult()
        predictions_topic, labels_topic = self.predictions_topic, self.labels_topic
        next_prediction = self.join.next_offset(predictions_topic)
        next_label = self.join.next_offset(labels_topic)
        fresh_predictions = [
            m for m in messages if m.topic == predictions_topic and m.offset >= next_prediction
        ]
        fresh_labels = [m for m in messages if m.topic == labels_topic and m.offset >= next_label]
        decoded_labels = decode_labels(fresh_labels, self.limits, now)
        self.dead_letter_reasons.update(decoded_labels.reasons)
        labels, label_offsets, label_rejects = self._screen(decoded_labels, fresh_labels, now)
        # Labels first: a batch's predictions move the join's watermark, which
        # expires pending predictions; applied first they could expire ones
        # whose labels are in this very batch (a backlog read in big batches
        # would lose joins a live run makes). A label whose prediction comes
        # later in the batch waits as an orphan and joins when it arrives.
        pairs: list[JoinedPair] = []
        if fresh_labels:
            pairs = self.join.add_labels(
                labels, label_offsets, next_offset=max(map(_offset_of, fresh_labels)) + 1
            )
        undecoded: list[DeadLetter] = []
        rejected: list[DeadLetter] = []
        for start in range(0, len(fresh_predictions), SLICE_PREDICTIONS):
            pairs += self._apply_predictions(
                fresh_predictions[start : start + SLICE_PREDICTIONS],
                now,
                result,
                undecoded,
                rejected,
            )
        # The pairs of the whole batch at once: performance sums then add up in
        # the same order however the batch was sliced.
        self.windows.add_pairs(pairs)
        result.dead_letters = [
            *undecoded,
            *decoded_labels.dead_letters,
            *rejected,
            *label_rejects,
        ]
        for letter in result.dead_letters:
            self._attribute(letter)
        self._collect(result)
        result.labels = len(labels)
        return result

    def _collect(self, result: BatchResult) -> None:
        """The windows the watermarks closed or changed, and the watermarks, into ``result``."""
        result.join_watermarks_us = self.join.watermarks_us
        result.windows = self.windows.collect(result.join_watermarks_us)
        result.watermarks_us = self.windows.watermarks_us  # a new dict each time

    def advance_quiet(
        self, predictions_quiet_s: float, labels_quiet_s: float, now: datetime | None = None
    ) -> BatchResult | None:
        """Move the clocks of models with ``window.close_when_idle`` on a quiet partition.

        ``predictions_quiet_s`` and ``labels_quiet_s``: how long each topic's
        partition has been read to its end with nothing new (seconds of wall
        clock). Where that is at least a model's ``close_when_idle``, the
        topic acts as if an event of the model stamped ``now`` less that had
        arrived (:meth:`PartitionWindows.advance_quiet`,
        :meth:`JoinState.advance_quiet`); the labels topic only while the
        predictions topic is quiet too. Returns what the moved clocks
        closed or settled, with the watermarks, or None when no clock moved.
        """
        now = now or datetime.now(UTC)
        moved = False
        for model in self.config.models:
            idle = model.window.close_when_idle
            # Labels come in bursts: their gaps alone settle nothing while predictions flow.
            if idle is None or predictions_quiet_s < idle.total_seconds():
                continue
            # On a grid of a tenth of the setting (1 s to 1 min): a quiet partition
            # sends and saves its clocks a few times per setting, not every second.
            step_us = min(max(duration_us(idle) // 10, 1_000_000), 60_000_000)
            moment_us = event_us(now - idle)
            moment_us -= moment_us % step_us
            moved |= self.windows.advance_quiet(model.id, moment_us)
            moved |= self.join.advance_quiet(
                model.id,
                predictions_us=moment_us,
                labels_us=moment_us if labels_quiet_s >= idle.total_seconds() else None,
            )
        if not moved:
            return None
        result = BatchResult()
        self._collect(result)
        return result

    def _apply_predictions(
        self,
        fresh: Sequence[KafkaMessage],
        now: datetime,
        result: BatchResult,
        undecoded: list[DeadLetter],
        rejected: list[DeadLetter],
    ) -> list[JoinedPair]:
        """Decode, join and window one slice of a batch's predictions; returns the pairs."""
        decoded = decode_predictions(fresh, self.limits, now)
        undecoded += decoded.dead_letters
        self.dead_letter_reasons.update(decoded.reasons)
        predictions, offsets, letters = self._screen(decoded, fresh, now)
        rejected += letters
        # Duplicates (ids the join holds, or seen earlier in the batch) and
        # replayed offsets stay out of the drift windows: the join says which
        # predictions it counted as new, event by event.
        applied: list[int] = []
        past: list[int] = []
        pairs = self.join.add_predictions(
            predictions,
            offsets,
            next_offset=max(map(_offset_of, fresh)) + 1,
            applied=applied,
            past_horizon=past,
        )
        unique_predictions = [predictions[at] for at in applied]
        # The join says which came past their label horizon: the performance
        # windows count the others, as the join does (not by the watermark of
        # the previous batch, which would make coverage depend on batching).
        past_horizon: frozenset[int] = frozenset()
        if past:
            position = {at: index for index, at in enumerate(applied)}
            past_horizon = frozenset(position[at] for at in past)
        self.windows.add_predictions(unique_predictions, past_horizon=past_horizon)
        result.predictions += len(unique_predictions)
        return pairs

    def _attribute(self, letter: DeadLetter) -> None:
        """Count a dead letter in its model's window when the message says which."""
        if letter.original_truncated or letter.original_size > self.limits.max_message_bytes:
            # refused for its size: parsing it is the cost the limit exists to avoid
            self.unattributed_dead_letters += 1
            return
        raw = letter.original_bytes()
        try:
            try:
                document = orjson.loads(raw)
            except orjson.JSONDecodeError:
                # NaN and Infinity literals, which decoding accepts (as missing)
                document = json.loads(raw)
            model_id = document["model_id"]
            version = document.get("model_version", "")
            # json.loads keeps lone surrogates (escapes such as \ud800) that decoding
            # refuses; a version that is not Unicode cannot name a window.
            version.encode("utf-8")
            moment = datetime.fromisoformat(document["timestamp"])
        except (KeyError, TypeError, ValueError, AttributeError, RecursionError):
            self.unattributed_dead_letters += 1
            return
        if (
            not isinstance(model_id, str)
            or not isinstance(version, str)
            or not version
            or moment.tzinfo is None
            or model_id not in self.policies
            or moment > letter.received_at + self.max_future
        ):
            self.unattributed_dead_letters += 1
            return
        self.windows.count_dead_letter(model_id, version, event_us(moment))

    def to_bytes(self) -> bytes:
        """Checkpoint: join state, open windows, offsets.

        The layout is ``CHECKPOINT_MAGIC``, one format byte, the lengths of
        the header and of the join's checkpoint (4 and 8 bytes, little
        endian), the header (zlib-compressed JSON: partition and open
        windows), then the join's own checkpoint as it is
        (:meth:`JoinState.to_bytes`): mostly raw arrays, which neither hex
        nor zlib would make smaller, only slower.
        """
        header = zlib.compress(
            orjson.dumps({"partition": self.partition, "windows": self.windows.snapshot()}), 1
        )
        join = self.join.to_bytes()
        return b"".join(
            (
                CHECKPOINT_MAGIC,
                bytes([CHECKPOINT_FORMAT]),
                _FRAME.pack(len(header), len(join)),
                header,
                join,
            )
        )

    def restore(self, data: bytes) -> None:
        """Load a checkpoint written by :meth:`to_bytes`, or by a driftline before it (format 1).

        Raises
        ------
        PartitionCheckpointError
            Not a partition checkpoint, an unknown format, damaged, or of
            another partition.
        streams.join.CheckpointError
            The join's part is damaged or of an unknown format.
        """
        if data[: len(CHECKPOINT_MAGIC)] == CHECKPOINT_MAGIC:
            document, join = _read_frame(data)
        else:
            document, join = _read_format_1(data)
        if document["partition"] != self.partition:
            raise PartitionCheckpointError(
                f"checkpoint of partition {document['partition']} given to {self.partition}"
            )
        self.join = JoinState.from_bytes(join, self.policies)
        self.windows.restore(document["windows"])


def _read_frame(data: bytes) -> tuple[dict[str, Any], bytes]:
    """Header and join checkpoint of a format-2 checkpoint."""
    start = len(CHECKPOINT_MAGIC)
    if len(data) < start + 1 + _FRAME.size:
        raise PartitionCheckpointError(
            f"damaged partition checkpoint: {len(data)} bytes is shorter than its frame"
        )
    version = data[start]
    if version != CHECKPOINT_FORMAT:
        raise PartitionCheckpointError(
            f"partition checkpoint format {version} is not supported; this driftline reads "
            f"formats 1 and {CHECKPOINT_FORMAT}"
        )
    header_size, join_size = _FRAME.unpack_from(data, start + 1)
    header_start = start + 1 + _FRAME.size
    join_start = header_start + header_size
    if join_start + join_size != len(data):
        raise PartitionCheckpointError(
            f"damaged partition checkpoint: its frame gives {join_start + join_size} bytes, "
            f"the file holds {len(data)} (truncated or appended to)"
        )
    try:
        document = orjson.loads(zlib.decompress(data[header_start:join_start]))
    except (zlib.error, orjson.JSONDecodeError) as exc:
        raise PartitionCheckpointError(
            f"damaged partition checkpoint header: {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(document, dict) or not {"partition", "windows"} <= document.keys():
        raise PartitionCheckpointError(
            "damaged partition checkpoint header: expected an object with partition and windows"
        )
    return document, data[join_start:]


def _read_format_1(data: bytes) -> tuple[dict[str, Any], bytes]:
    """Header and join checkpoint of a format-1 checkpoint (zlib-compressed JSON, join in hex)."""
    try:
        document = orjson.loads(zlib.decompress(data))
    except (zlib.error, orjson.JSONDecodeError) as exc:
        raise PartitionCheckpointError(
            f"not a driftline partition checkpoint: it starts neither with {CHECKPOINT_MAGIC!r} "
            f"nor with zlib-compressed JSON of format 1 ({type(exc).__name__}: {exc})"
        ) from exc
    fmt = document.get("format") if isinstance(document, dict) else None
    if fmt != 1:
        raise PartitionCheckpointError(
            f"partition checkpoint format {fmt!r} is not supported; this driftline reads "
            f"formats 1 and {CHECKPOINT_FORMAT}"
        )
    if not {"partition", "windows", "join"} <= document.keys():
        raise PartitionCheckpointError(
            "damaged partition checkpoint (format 1): expected partition, windows and join"
        )
    try:
        join = bytes.fromhex(document["join"])
    except (TypeError, ValueError) as exc:
        raise PartitionCheckpointError(
            f"damaged partition checkpoint (format 1): the join is not hex: {exc}"
        ) from exc
    return document, join


TEMPORARY_SUFFIX = ".tmp"
"""Ending of the files :func:`write_atomically` writes before renaming them."""


def remove_stale_temporaries(directory: Path, older_than_s: float = 3600.0) -> int:
    """Delete the temporary files of :func:`write_atomically` in ``directory`` that a
    writer killed mid-write left behind (only old ones: another worker sharing the
    directory may be writing one now). Returns how many were deleted."""
    removed = 0
    cutoff = time.time() - older_than_s
    for candidate in directory.glob(f".*{TEMPORARY_SUFFIX}"):
        try:
            if candidate.stat().st_mtime < cutoff:
                candidate.unlink()
                removed += 1
        except FileNotFoundError:
            pass  # another worker removed it meanwhile
    return removed


def write_atomically(path: Path, data: bytes) -> None:
    """Write a file so a crash leaves either the old or the new content.

    The content goes to a temporary file of this writer's own (two workers
    can write one checkpoint at once: one that lost its partitions during a
    stall and does not know it yet, and their new owner), which is then
    renamed over ``path``: each rename is whole, the last one wins.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    unique = f"{os.getpid()}-{secrets.token_hex(6)}"
    temporary = path.with_name(f".{path.name}.{unique}{TEMPORARY_SUFFIX}")
    try:
        with temporary.open("xb") as file:  # created here, with the umask's permissions
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    # The rename itself is durable only once the directory is: without this a
    # power cut could bring the old file back after the offsets were committed.
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
