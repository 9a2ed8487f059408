"""Creating driftline's topics with their partition counts, idempotently."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

log = logging.getLogger(__name__)


class TopicError(RuntimeError):
    """A topic could not be created or has the wrong shape."""


def ensure_topics(
    client_config: Mapping[str, Any],
    partitions: Mapping[str, int],
    replication_factor: int = 1,
    timeout: float = 30.0,
) -> dict[str, int]:
    """Create every missing topic; leave existing ones alone.

    Parameters
    ----------
    client_config
        librdkafka settings (bootstrap servers, security).
    partitions
        Topic name to partition count.
    replication_factor
        Replicas of each new topic.
    timeout
        Seconds to wait for the topics to appear in the metadata.

    Returns
    -------
    dict
        Topic name to the partition count it has now.

    Raises
    ------
    TopicError
        When the broker refuses a topic, or an existing topic has fewer
        partitions than asked (co-partitioning of predictions and labels
        depends on equal counts).
    """
    admin = AdminClient(dict(client_config))
    existing = admin.list_topics(timeout=timeout).topics
    missing = [name for name in partitions if name not in existing]
    if missing:
        futures = admin.create_topics(
            [NewTopic(name, partitions[name], replication_factor) for name in missing],
            operation_timeout=timeout,
        )
        for name, future in futures.items():
            try:
                future.result(timeout)
                log.info("created topic %s with %d partitions", name, partitions[name])
            except KafkaException as exc:
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise TopicError(f"cannot create topic {name}: {exc}") from exc
    deadline = time.monotonic() + timeout
    while True:
        metadata = admin.list_topics(timeout=timeout).topics
        counts = {name: len(metadata[name].partitions) for name in partitions if name in metadata}
        if len(counts) == len(partitions) and all(counts.values()):
            break
        if time.monotonic() > deadline:
            absent = sorted(set(partitions) - set(counts))
            raise TopicError(f"topics did not appear within {timeout:.0f} s: {absent}")
        time.sleep(0.1)
    for name, count in counts.items():
        if count < partitions[name]:
            raise TopicError(
                f"topic {name} exists with {count} partitions, fewer than the {partitions[name]} "
                "configured; add partitions to it or change topics.partitions"
            )
    return counts
