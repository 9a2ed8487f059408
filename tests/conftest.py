"""Session-scoped fixtures starting real servers (see ``tests/servers.py``).

A server that cannot start fails the tests that need it, with the reason and
the end of the server's log; nothing is silently left out.  Servers start
lazily, on first use, and are stopped by PID at the end of the session.

Fixtures
--------
kafka_bootstrap
    ``"127.0.0.1:PORT"`` of a Tansu broker (or ``$DRIFTLINE_TEST_KAFKA``).
new_topic
    Factory creating a uniquely named topic with N partitions.
victoria_metrics_url
    ``"http://127.0.0.1:PORT"`` of VictoriaMetrics.
influxdb1_url
    ``"http://127.0.0.1:PORT"`` of InfluxDB 1.x.
influxdb1_database
    A fresh database name in that InfluxDB, per test.
chat_receiver
    :class:`tests.servers.ChatReceiver`; emptied and reset to answer 200 before
    every test that uses it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.servers import (
    KAFKA_ENV_VAR,
    ChatReceiver,
    ServerProcess,
    ServerStartError,
    TopicFactory,
    create_topics,
    influx_create_database,
    start_influxdb1,
    start_tansu,
    start_victoria_metrics,
    unique_topic_name,
    wait_for_kafka,
)


def _serve(starter: Callable[[Path], ServerProcess], data_dir: Path) -> Iterator[str]:
    failure: ServerStartError | None = None
    try:
        server = starter(data_dir)
    except ServerStartError as exc:
        failure = exc
    if failure is not None:
        # Failed outside the except block, so the report shows no chained traceback.
        pytest.fail(str(failure), pytrace=False)
    try:
        yield server.endpoint
    finally:
        server.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap address ``host:port`` of a Kafka-protocol broker for the session.

    Starts Tansu (in-memory storage) unless ``DRIFTLINE_TEST_KAFKA`` names a
    running Kafka, which is then used as is.
    """
    external = os.environ.get(KAFKA_ENV_VAR, "").strip()
    if external:
        failure: ServerStartError | None = None
        try:
            wait_for_kafka(external)
        except ServerStartError as exc:
            failure = exc
        if failure is not None:
            pytest.fail(f"{KAFKA_ENV_VAR}={external}: {failure}", pytrace=False)
        yield external
        return
    yield from _serve(start_tansu, tmp_path_factory.mktemp("tansu"))


@pytest.fixture
def new_topic(kafka_bootstrap: str, request: pytest.FixtureRequest) -> TopicFactory:
    """Factory ``new_topic(partitions, prefix=None) -> name`` creating a unique topic.

    The name is ``prefix`` (default: the test's name) plus a uuid suffix; the
    topic exists with exactly ``partitions`` partitions when it returns.
    """

    def make(partitions: int, prefix: str | None = None) -> str:
        name = unique_topic_name(prefix or request.node.name)
        create_topics(kafka_bootstrap, {name: partitions})
        return name

    return make


@pytest.fixture(scope="session")
def victoria_metrics_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``http://127.0.0.1:PORT`` of a VictoriaMetrics started for the session."""
    yield from _serve(start_victoria_metrics, tmp_path_factory.mktemp("victoria-metrics"))


@pytest.fixture
def own_victoria_metrics_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A VictoriaMetrics of this test alone: nothing another test wrote is in it."""
    yield from _serve(start_victoria_metrics, tmp_path_factory.mktemp("own-victoria-metrics"))


@pytest.fixture(scope="session")
def influxdb1_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``http://127.0.0.1:PORT`` of an InfluxDB 1.x started for the session."""
    yield from _serve(start_influxdb1, tmp_path_factory.mktemp("influxdb1"))


@pytest.fixture
def influxdb1_database(influxdb1_url: str, request: pytest.FixtureRequest) -> str:
    """Name of a database created for this test in the session's InfluxDB 1.x."""
    name = unique_topic_name(request.node.name).replace("-", "_").replace(".", "_")
    influx_create_database(influxdb1_url, name)
    return name


@pytest.fixture(scope="session")
def chat_receiver() -> Iterator[ChatReceiver]:
    """An HTTP receiver recording what chat notifiers post (``.url_base`` = host:port)."""
    receiver = ChatReceiver().start()
    try:
        yield receiver
    finally:
        receiver.stop()


@pytest.fixture(autouse=True)
def _fresh_chat_receiver(request: pytest.FixtureRequest) -> None:
    """Give each test that uses ``chat_receiver`` an empty one answering 200."""
    if "chat_receiver" in request.fixturenames:
        receiver: ChatReceiver = request.getfixturevalue("chat_receiver")
        receiver.reset()
