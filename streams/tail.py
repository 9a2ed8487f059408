"""``driftline alerts tail``: follow the alerts topic, one human line per event."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from pydantic import ValidationError

from schemas import AlertEvent, DriftlineSettings


def format_alert(event: AlertEvent) -> str:
    """One line for a terminal.

    Examples
    --------
    >>> event = AlertEvent(
    ...     alert_id="a1", rule="charges-drift", state="firing", severity="critical",
    ...     model_id="churn", model_version="3", segment="all", metric="ks.p_value",
    ...     feature="monthly_charges", value=1e-9, threshold=0.05,
    ...     window_start="2026-11-23T10:00:00Z", window_end="2026-11-23T10:05:00Z",
    ...     fired_at="2026-11-23T10:05:00Z", summary="monthly_charges drifted",
    ... )
    >>> format_alert(event)
    '2026-11-23 10:05 FIRING   critical churn v3 [all] charges-drift: monthly_charges drifted'
    """
    when = (event.fired_at if event.state == "firing" else event.window_end).strftime(
        "%Y-%m-%d %H:%M"
    )
    return (
        f"{when} {event.state.upper():<8} {event.severity} {event.model_id} "
        f"v{event.model_version} [{event.segment}] {event.rule}: {event.summary}"
    )


UNREACHABLE_AFTER_S = 3.0
"""How long ``alerts tail`` tries while every broker refuses or cannot be resolved."""
METADATA_TIMEOUT_S = 10.0
"""How long it waits for the topic's metadata from brokers that do answer."""


def _alerts_topic_metadata(consumer: Consumer, topic: str, errors: Iterable[KafkaError]) -> Any:
    """The topic's metadata; gives up after a few seconds when no broker can be reached.

    ``errors`` is what the consumer's ``error_cb`` collects; it is served by
    ``poll``, so the wait polls between short metadata requests.
    """
    started = time.monotonic()
    while True:
        try:
            return consumer.list_topics(topic, timeout=1.0)
        except KafkaException as exc:
            failure = exc.args[0].str()
        consumer.poll(0)
        waited = time.monotonic() - started
        down = any(error.code() == KafkaError._ALL_BROKERS_DOWN for error in errors)
        if (down and waited >= UNREACHABLE_AFTER_S) or waited >= METADATA_TIMEOUT_S:
            causes = [e.str() for e in errors if e.code() != KafkaError._ALL_BROKERS_DOWN]
            raise RuntimeError(causes[-1] if causes else failure)


def tail_alerts(
    settings: DriftlineSettings,
    emit: Callable[[str], None],
    *,
    from_beginning: bool = False,
    stop_after_s: float | None = None,
) -> int:
    """Print alerts as they arrive; returns how many were printed."""
    errors: deque[KafkaError] = deque(maxlen=32)  # the latest, for the message
    consumer = Consumer(
        {
            **settings.confluent_config(),
            "group.id": "driftline-tail",
            "enable.auto.commit": False,
            "error_cb": errors.append,
        }
    )
    try:
        metadata = _alerts_topic_metadata(consumer, settings.topic_alerts, errors)
    except RuntimeError as exc:
        consumer.close()
        raise RuntimeError(f"cannot reach Kafka at {settings.kafka_bootstrap}: {exc}") from None
    topic = metadata.topics.get(settings.topic_alerts)
    if topic is None or topic.error is not None:
        consumer.close()
        raise RuntimeError(f"topic {settings.topic_alerts} does not exist")
    start = OFFSET_BEGINNING if from_beginning else OFFSET_END
    consumer.assign([TopicPartition(settings.topic_alerts, p, start) for p in topic.partitions])
    printed = 0
    deadline = None if stop_after_s is None else time.monotonic() + stop_after_s
    try:
        while deadline is None or time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error() is not None:
                continue
            value = message.value()
            try:
                event = AlertEvent.model_validate_json(value or b"")
            except ValidationError as exc:
                emit(f"(unreadable alert at offset {message.offset()}: {exc.error_count()} errors)")
                continue
            emit(format_alert(event))
            printed += 1
    finally:
        consumer.close()
    return printed
