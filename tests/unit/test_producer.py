"""The serving apps' producer on paths that fail before any broker is involved."""

from __future__ import annotations

import pytest

from schemas import DriftlineSettings
from streams.producer import DeliveryError, EventProducer

# Nothing listens there; every path below fails (or queues) before a connection.
SETTINGS = DriftlineSettings(kafka_bootstrap="127.0.0.1:9")
QUIET = {"log_level": 0}  # no log line per refused connection


def test_a_message_refused_before_it_is_queued_is_a_failed_delivery_not_an_exception() -> None:
    producer = EventProducer(SETTINGS, {**QUIET, "message.max.bytes": 1_000})
    producer.send_raw("driftline.predictions", "p1", b"x" * 5_000)  # does not raise
    assert producer.failed == 1
    assert "p1" in producer.recent_errors[-1] and "too large" in producer.recent_errors[-1].lower()
    with pytest.raises(DeliveryError, match="not delivered"):
        producer.flush(timeout=0.1)


def test_the_largest_event_the_input_limits_accept_is_queued() -> None:
    producer = EventProducer(SETTINGS, QUIET)
    size = SETTINGS.max_message_bytes  # 1 MiB, above librdkafka's default of 1,000,000
    producer.send_raw("driftline.predictions", "p1", b"x" * size)
    assert producer.failed == 0
    # Queued, waiting for a broker: purged, it comes back as the one failed
    # delivery. (len() of the producer also counts librdkafka's own requests.)
    producer._producer.purge()
    producer._producer.poll(0)
    assert producer.failed == 1
    assert "p1" in producer.recent_errors[-1] and "purged" in producer.recent_errors[-1].lower()
