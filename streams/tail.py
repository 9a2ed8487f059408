"""``driftline alerts tail``: follow the alerts topic, one human line per event."""

from __future__ import annotations

import time
from collections.abc import Callable

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, TopicPartition
from pydantic import ValidationError

from schemas import AlertEvent, DriftlineSettings
from streams.topics import BrokerUnreachable, cluster_metadata


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


def tail_alerts(
    settings: DriftlineSettings,
    emit: Callable[[str], None],
    *,
    from_beginning: bool = False,
    stop_after_s: float | None = None,
) -> int:
    """Print alerts as they arrive; returns how many were printed."""
    try:
        metadata = cluster_metadata(
            settings.confluent_config(),
            settings.topic_alerts,
            timeout=METADATA_TIMEOUT_S,
            down_patience=UNREACHABLE_AFTER_S,
        )
    except BrokerUnreachable as exc:
        raise RuntimeError(f"cannot reach Kafka at {settings.kafka_bootstrap}: {exc}") from None
    topic = metadata.topics.get(settings.topic_alerts)
    if topic is None or topic.error is not None:
        raise RuntimeError(f"topic {settings.topic_alerts} does not exist")
    consumer = Consumer(
        {**settings.confluent_config(), "group.id": "driftline-tail", "enable.auto.commit": False}
    )
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
