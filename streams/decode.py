"""Decoding a batch of raw messages into events and dead letters.

Every message either becomes a validated event or a :class:`DeadLetter` that
carries the original bytes, where it came from and why it was refused; nothing
is dropped and a bad message never raises out of the batch.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Generic, NamedTuple, Protocol, TypeVar

from confluent_kafka import Message

from schemas import (
    DEFAULT_LIMITS,
    DeadLetter,
    InputLimits,
    InvalidEvent,
    LabelEvent,
    PredictionEvent,
)
from schemas.events import decode_label, decode_prediction

EventT = TypeVar("EventT", PredictionEvent, LabelEvent)


class KafkaMessage(Protocol):
    """What driftline reads of a Kafka record.

    :class:`RawMessage` is one, and so is aiokafka's ``ConsumerRecord``,
    which the worker's consumer loops hand over as they are (building a
    copy of every record cost them more than decoding its envelope).
    """

    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...

    @property
    def key(self) -> bytes | None: ...

    @property
    def value(self) -> bytes | None: ...


class RawMessage(NamedTuple):
    """A message as read from Kafka, independent of the client library.

    Tests, benchmarks and replays build them; the worker's consumer loops
    hand aiokafka's records over instead (see :class:`KafkaMessage`).
    """

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None

    @classmethod
    def from_confluent(cls, message: Message) -> RawMessage:
        """Wrap a confluent-kafka message that carries no error."""
        return cls(
            topic=message.topic() or "",
            partition=message.partition() or 0,
            offset=message.offset() or 0,
            key=message.key(),
            value=message.value(),
        )


@dataclass
class DecodedBatch(Generic[EventT]):
    """The outcome of decoding one batch from one topic.

    ``offsets`` holds the offset of each event's message (same order as
    ``events``).
    """

    events: list[EventT] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    reasons: Counter[str] = field(default_factory=Counter)
    offsets: list[int] = field(default_factory=list)


def _first_path(error: InvalidEvent) -> str:
    first = error.errors[0] if error.errors else None
    return first.path or "message" if first else "message"


def _decode(
    messages: Iterable[KafkaMessage],
    decoder: type[EventT],
    limits: InputLimits,
    received_at: datetime | None,
) -> DecodedBatch[EventT]:
    batch: DecodedBatch[EventT] = DecodedBatch()
    decode = decode_prediction if decoder is PredictionEvent else decode_label
    now = received_at or datetime.now(UTC)
    events, offsets = batch.events, batch.offsets
    for message in messages:
        error_class, reason = "InvalidEvent", ""
        if message.value is None:
            reason, path = "message has no value (tombstone)", "message"
        else:
            try:
                event = decode(message.value, limits)
            except InvalidEvent as exc:
                reason, path = exc.reason, _first_path(exc)
            else:
                key = message.key
                if key is None or key.decode("utf-8", "replace") == event.prediction_id:
                    events.append(event)  # type: ignore[arg-type]
                    offsets.append(message.offset)
                    continue
                text = key.decode("utf-8", "replace")
                reason, path = (
                    f"message key {text!r} differs from prediction_id {event.prediction_id!r}",
                    "key",
                )
                error_class = "KeyMismatch"
        batch.reasons[path] += 1
        batch.dead_letters.append(
            DeadLetter.from_failure(
                message.value,
                key=message.key,
                topic=message.topic,
                partition=message.partition,
                offset=message.offset,
                error_class=error_class,
                error_message=reason,
                received_at=now,
            )
        )
    return batch


def decode_predictions(
    messages: Iterable[KafkaMessage],
    limits: InputLimits = DEFAULT_LIMITS,
    received_at: datetime | None = None,
) -> DecodedBatch[PredictionEvent]:
    """Decode prediction messages; invalid ones become dead letters.

    Examples
    --------
    >>> batch = decode_predictions([RawMessage("p", 0, 7, b"k", b"{oops")])
    >>> len(batch.events), batch.dead_letters[0].source_offset, dict(batch.reasons)
    (0, 7, {'message': 1})
    """
    return _decode(messages, PredictionEvent, limits, received_at)


def decode_labels(
    messages: Iterable[KafkaMessage],
    limits: InputLimits = DEFAULT_LIMITS,
    received_at: datetime | None = None,
) -> DecodedBatch[LabelEvent]:
    """Decode label messages; invalid ones become dead letters."""
    return _decode(messages, LabelEvent, limits, received_at)
