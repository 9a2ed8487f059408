"""What the metadata probe makes of the Kafka client's errors and log lines (no broker)."""

from __future__ import annotations

import logging
import time

import pytest
from confluent_kafka import KafkaError

from streams.topics import BrokerUnreachable, _Causes, cluster_metadata


def client_line(text: str, level: int = logging.WARNING) -> logging.LogRecord:
    """A log record as confluent-kafka hands librdkafka's lines to a Python logger."""
    return logging.LogRecord(
        "probe", level, __file__, 1, f"FAIL [rdkafka#producer-1] [thrd:main]: {text}", None, None
    )


def test_a_refused_connection_is_a_cause_to_wait_on_not_to_give_up_for() -> None:
    causes = _Causes()
    causes.error(KafkaError(KafkaError._TRANSPORT, "127.0.0.1:9/bootstrap: Connection refused"))
    causes.error(KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"))
    assert causes.all_down
    assert causes.refused is None
    # "all brokers down" says nothing about why: the message keeps the connection's cause
    assert list(causes.latest) == ["127.0.0.1:9/bootstrap: Connection refused"]


@pytest.mark.parametrize(
    "error",
    [
        KafkaError(KafkaError._SSL, "b:9093/bootstrap: SSL handshake failed: certificate verify"),
        KafkaError(KafkaError._AUTHENTICATION, "b:9093/bootstrap: SASL authentication error"),
        KafkaError(KafkaError.SASL_AUTHENTICATION_FAILED, "Authentication failed: bad password"),
    ],
)
def test_tls_and_authentication_errors_are_causes_to_give_up_for(error: KafkaError) -> None:
    causes = _Causes()
    causes.error(error)
    assert causes.refused == error.str()


def test_a_handshake_that_never_completes_is_read_from_the_client_log() -> None:
    # librdkafka reports it only in its log; its error callback says "all brokers down"
    causes = _Causes()
    timed_out = (
        "sasl_ssl://127.0.0.1:5/bootstrap: Connection setup timed out in state SSL_HANDSHAKE "
        "(after 10008ms in state SSL_HANDSHAKE)"
    )
    causes.handle(client_line(timed_out))
    assert causes.refused == timed_out


def test_a_connection_dropped_during_a_handshake_is_waited_for() -> None:
    # a broker restarting behind a proxy drops handshakes for a while: not a setting to fix
    dropped = (
        "ssl://b:9093/bootstrap: Disconnected: SSL connection closed by peer "
        "(after 0ms in state SSL_HANDSHAKE)"
    )
    causes = _Causes()
    causes.handle(client_line(dropped))
    causes.error(KafkaError(KafkaError._SSL, dropped))
    assert causes.refused is None
    assert list(causes.latest) == [dropped, dropped]


def test_each_distinct_failure_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    causes = _Causes()
    with caplog.at_level(logging.DEBUG, logger="streams.topics"):
        for after in (0, 1, 0, 2):
            refused = f"127.0.0.1:9/bootstrap: Connection refused (after {after}ms in state X)"
            causes.handle(client_line(refused))
        causes.handle(client_line("127.0.0.1:9/bootstrap: Failed to resolve 'x'"))
    logged = [record.getMessage() for record in caplog.records if record.name == "streams.topics"]
    assert len(logged) == 2
    assert logged[0].startswith("kafka client: 127.0.0.1:9/bootstrap: Connection refused")
    assert "Failed to resolve" in logged[1]
    assert len(causes.latest) == 5  # every attempt still counts as the latest cause


def test_an_unreachable_broker_is_named_after_the_patience_not_the_timeout() -> None:
    started = time.monotonic()
    with pytest.raises(BrokerUnreachable, match=r"127\.0\.0\.1:9.*Connection refused"):
        cluster_metadata({"bootstrap.servers": "127.0.0.1:9"}, timeout=60.0, down_patience=0.5)
    assert time.monotonic() - started < 30
