"""Creating driftline's topics with their partition counts, idempotently."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

log = logging.getLogger(__name__)


class TopicError(RuntimeError):
    """A topic could not be created or has the wrong shape."""


class BrokerUnreachable(RuntimeError):
    """No broker answered; the message is the last cause the Kafka client reported."""


PROBE_SETUP_TIMEOUT_MS = 10_000
"""How long the metadata probe gives one connection to connect, handshake and log in."""

# Causes that waiting does not mend: the client's security settings and the
# listener disagree, or the credentials are refused.
_REFUSED_CODES = frozenset(
    {KafkaError._AUTHENTICATION, KafkaError._SSL, KafkaError.SASL_AUTHENTICATION_FAILED}
)
_TLS_NEVER_DONE = "timed out in state SSL_HANDSHAKE"
_REFUSED_WORDS = (_TLS_NEVER_DONE, "SSL handshake failed", "Authentication failed")
TLS_HINT = (
    "no TLS handshake completed: is the listener PLAINTEXT, "
    "or is DRIFTLINE_KAFKA_SECURITY_PROTOCOL wrong?"
)
_ATTEMPT_DETAIL = re.compile(r" \(after \d+ms in state \w+\)")


class _Causes(logging.Handler):
    """What the Kafka client said went wrong, from its error callback and its log."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.latest: deque[str] = deque(maxlen=8)
        self.refused: str | None = None
        self.all_down = False
        self._logged: set[str] = set()

    def error(self, error: KafkaError) -> None:
        if error.code() == KafkaError._ALL_BROKERS_DOWN:
            self.all_down = True
            return
        text = error.str()
        dropped = "Disconnected" in text or "closed by peer" in text  # may be a restart
        self._note(text, (error.code() in _REFUSED_CODES and not dropped) or error.fatal())

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage().partition("]: ")[2] or record.getMessage()
        # Without librdkafka's "(after 0ms in state SSL_HANDSHAKE)": a connection closed
        # during a handshake (a broker restarting behind a proxy) is worth waiting for.
        gist = _ATTEMPT_DETAIL.sub("", text)
        self._note(text, any(word in gist for word in _REFUSED_WORDS))
        # The client retries every few milliseconds: each distinct failure is logged once,
        # at INFO (the cause is in the error raised; commands without logging print once).
        if gist not in self._logged and len(self._logged) < 32:
            self._logged.add(gist)
            log.info("kafka client: %s", text)

    def _note(self, text: str, refused: bool) -> None:
        self.latest.append(text)
        if refused and self.refused is None:
            self.refused = text


def cluster_metadata(
    client_config: Mapping[str, Any],
    topic: str | None = None,
    *,
    timeout: float = 30.0,
    down_patience: float | None = None,
) -> Any:
    """The cluster's metadata (of one topic, when named), from a short-lived admin client.

    Waits up to ``timeout`` seconds for a broker to answer, but gives up at
    once when the client reports a cause that waiting does not mend (a TLS
    handshake that fails or does not complete within
    :data:`PROBE_SETUP_TIMEOUT_MS`, refused credentials), and after
    ``down_patience`` seconds when every broker refuses the connection or
    cannot be resolved (None: wait the whole ``timeout``, for a broker that
    is still starting).

    Raises
    ------
    BrokerUnreachable
        Naming the cause the client reported (``Connect to ... failed:
        Connection refused``, ``... timed out in state SSL_HANDSHAKE``, ...).
    """
    causes = _Causes()
    client_log = logging.Logger("driftline.kafka-probe")
    client_log.addHandler(causes)
    config: dict[str, Any] = {
        "socket.connection.setup.timeout.ms": PROBE_SETUP_TIMEOUT_MS,
        **client_config,
        "error_cb": causes.error,
        "logger": client_log,
        "allow.auto.create.topics": False,  # asking about a topic must not create it
    }
    admin = AdminClient(config)
    answers: list[Any] = []
    failures: list[str] = []

    def request() -> None:
        # One request for the whole timeout: a broker that answers slowly still counts.
        try:
            answers.append(admin.list_topics(topic, timeout=timeout))
        except KafkaException as exc:
            failures.append(exc.args[0].str())

    waiting = threading.Thread(target=request, name="kafka-metadata-probe", daemon=True)
    started = time.monotonic()
    waiting.start()
    while waiting.is_alive():
        admin.poll(0.1)  # serves the error callback and the log, here in this thread
        waited = time.monotonic() - started
        if causes.refused is not None or (
            down_patience is not None and causes.all_down and waited >= down_patience
        ):
            break
    if answers:
        return answers[0]
    cause = causes.refused or (causes.latest or failures or ["no broker answered"])[-1]
    if _TLS_NEVER_DONE in cause:
        cause += f"; {TLS_HINT}"
    raise BrokerUnreachable(cause)


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
    BrokerUnreachable
        When no broker answers (:func:`cluster_metadata`).
    TopicError
        When the broker refuses a topic, or an existing topic has fewer
        partitions than asked (co-partitioning of predictions and labels
        depends on equal counts).
    """
    existing = cluster_metadata(client_config, timeout=timeout).topics
    admin = AdminClient(dict(client_config))
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
