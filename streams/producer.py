"""A producer for serving apps: send predictions and labels without blocking.

``EventProducer`` wraps a confluent-kafka producer: ``send_*`` validates the
event with the schemas, queues it keyed by ``prediction_id`` (so predictions
and their labels land in the same partition) and returns at once; librdkafka
batches in the background. Delivery failures are never silent: they are
counted, kept (the last few), logged, and :meth:`EventProducer.flush` raises
:class:`DeliveryError` when any message was lost.

Examples
--------
In a serving app::

    producer = EventProducer(DriftlineSettings())
    producer.send_prediction(PredictionEvent(...))
    ...
    producer.flush()  # on shutdown
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Mapping
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from schemas import DriftlineSettings, LabelEvent, PredictionEvent

log = logging.getLogger(__name__)


class DeliveryError(RuntimeError):
    """Messages could not be delivered to Kafka."""


class EventProducer:
    """Non-blocking, batched producer of driftline input events.

    Parameters
    ----------
    settings
        Brokers, security and topic names.
    overrides
        Extra librdkafka settings (e.g. ``{"linger.ms": 5}``).
    """

    def __init__(
        self, settings: DriftlineSettings, overrides: Mapping[str, Any] | None = None
    ) -> None:
        config: dict[str, Any] = {
            **settings.confluent_config(),
            "linger.ms": 20,
            "compression.type": "lz4",
            "enable.idempotence": False,
            # Room for the largest event the input limits accept (librdkafka's
            # own default, 1,000,000 bytes, is below the 1 MiB limit).
            "message.max.bytes": max(1_000_000, settings.max_message_bytes + 65_536),
            **(overrides or {}),
        }
        self._producer = Producer(config)
        self._predictions = settings.topic_predictions
        self._labels = settings.topic_labels
        self._lock = threading.Lock()
        self.delivered = 0
        self.failed = 0
        self.recent_errors: deque[str] = deque(maxlen=20)

    def _on_delivery(self, error: KafkaError | None, message: Message) -> None:
        if error is None:
            with self._lock:
                self.delivered += 1
            return
        self._failed(f"{message.topic()} key={message.key()!r}: {error.str()}")

    def _failed(self, reason: str) -> None:
        with self._lock:
            self.failed += 1
            self.recent_errors.append(reason)
        log.error("delivery failed: %s", reason)

    def _send(self, topic: str, key: str, value: bytes) -> None:
        while True:
            try:
                self._producer.produce(
                    topic, value=value, key=key.encode(), on_delivery=self._on_delivery
                )
                break
            except BufferError:
                # The local queue is full: serve delivery reports to make room.
                self._producer.poll(0.1)
            except KafkaException as exc:
                # Refused before it was queued (too large for the client, unknown
                # topic): a failed delivery like any other, not an exception in
                # the serving app's request path.
                self._failed(f"{topic} key={key.encode()!r}: {exc.args[0].str()}")
                break
        self._producer.poll(0)

    def send_prediction(self, event: PredictionEvent) -> None:
        """Queue one prediction (returns at once)."""
        self._send(self._predictions, event.prediction_id, event.model_dump_json().encode())

    def send_label(self, event: LabelEvent) -> None:
        """Queue one label (returns at once)."""
        self._send(self._labels, event.prediction_id, event.model_dump_json().encode())

    def send_raw(self, topic: str, key: str, value: bytes) -> None:
        """Queue an already encoded message (replays of recorded events)."""
        self._send(topic, key, value)

    def flush(self, timeout: float = 30.0) -> None:
        """Wait for every queued message; raise if any was lost or is still queued."""
        remaining = self._producer.flush(timeout)
        if remaining:
            raise DeliveryError(f"{remaining} messages still queued after {timeout:.0f} s")
        if self.failed:
            raise DeliveryError(
                f"{self.failed} messages were not delivered; last: "
                + "; ".join(list(self.recent_errors)[-3:])
            )
