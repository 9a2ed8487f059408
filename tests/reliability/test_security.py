"""Security: Kafka credentials reach every client, secrets are never printed, YAML is loaded safely.

* Every Kafka client driftline builds gets the SASL (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)
  and SSL / mTLS settings of :class:`schemas.DriftlineSettings`: the confluent-kafka
  producer of serving apps, the admin clients of ``driftline topics create`` and of the
  worker's start-up, the worker's aiokafka consumers and faust's aiokafka producer. The
  objects are built for real (librdkafka loads the certificate and the encrypted key when
  a client is created) and what they hold is read back; the TLS part is also proven on the
  wire, against a TLS listener that demands the client certificate this test signs.
* A worker configured for SASL_SSL and pointed at a plaintext broker stops with an error
  that names the problem instead of waiting for ever.
* ``driftline worker`` (at DEBUG, with notifications sent and failing),
  ``driftline check-config`` and ``driftline replay`` run with secret values in every
  setting that takes one; no output line holds a secret, raw or encoded.
* The monitor configuration is read with a safe YAML loader: Python tags are refused with a
  clear error and run nothing; an alias bomb is refused quickly.
"""

from __future__ import annotations

import asyncio
import base64
import os
import resource
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient
from pydantic import SecretStr

import streams.app
import streams.producer
import streams.topics
from schemas import ConfigError, DriftlineSettings, parse_config
from streams.app import build_app, source_partitions
from streams.cli import main as driftline_main
from streams.producer import EventProducer
from streams.synthetic import ScenarioConfig, generate
from tests.servers import ChatReceiver, free_port, unique_topic_name
from tests.support.pipeline import (
    FEATURES_YAML,
    ROOT,
    Run,
    build_reference,
    create_topics,
    driftline,
    load_reference,
    scenario_start,
    start_worker,
    stop,
    topic_env,
)

KEY_PASSWORD = "k3y-pass-Q7"
SASL_PASSWORD = "sasl-pass-Z9"
CONFIG = parse_config(
    f"""
models:
  - id: churn
    task: binary
    reference: ref-{{version}}.json
    window: {{size: 300s, allowed_lateness: 30s, label_horizon: 1h, emit_interval: 1s}}
    features:
{FEATURES_YAML}
"""
)


# ------------------------------------------------------------------ certificates


@dataclass(frozen=True)
class Certificates:
    """A test CA, a server certificate for 127.0.0.1, a client certificate with an encrypted key."""

    ca: Path
    other_ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    client_name: str = "driftline-worker"


def _openssl(*args: str, cwd: Path) -> None:
    done = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"openssl {' '.join(args)}: {done.stderr}"


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """Certificates signed by a CA made here (openssl), valid for two days."""
    where = tmp_path_factory.mktemp("certificates")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
    for name in ("ca", "other-ca"):
        _openssl(
            "req",
            "-x509",
            *ec,
            "-nodes",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.pem",
            "-days",
            "2",
            "-subj",
            f"/CN=driftline {name}",
            cwd=where,
        )
    _openssl(
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-aes256",
        "-pass",
        f"pass:{KEY_PASSWORD}",
        "-out",
        "client.key",
        cwd=where,
    )
    _openssl(
        "req",
        "-new",
        "-key",
        "client.key",
        "-passin",
        f"pass:{KEY_PASSWORD}",
        "-subj",
        "/CN=driftline-worker",
        "-out",
        "client.csr",
        cwd=where,
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        "client.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-out",
        "client.pem",
        cwd=where,
    )
    _openssl(
        "req",
        "-new",
        *ec,
        "-nodes",
        "-keyout",
        "server.key",
        "-subj",
        "/CN=127.0.0.1",
        "-out",
        "server.csr",
        cwd=where,
    )
    (where / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.pem",
        cwd=where,
    )
    return Certificates(
        where / "ca.pem",
        where / "other-ca.pem",
        where / "server.pem",
        where / "server.key",
        where / "client.pem",
        where / "client.key",
    )


class TlsListener:
    """A TLS server on 127.0.0.1 that demands a client certificate and records its name."""

    def __init__(self, certificates: Certificates) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(certificates.server_cert, certificates.server_key)
        self.context.load_verify_locations(certificates.ca)
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.socket.settimeout(0.2)
        self.port = self.socket.getsockname()[1]
        self.clients: list[str] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> TlsListener:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.socket.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self.socket.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            connection.settimeout(5)
            try:
                with self.context.wrap_socket(connection, server_side=True) as tls:
                    peer: Any = tls.getpeercert() or {}
                    names = [
                        value
                        for rdn in peer.get("subject", ())
                        for key, value in rdn
                        if key == "commonName"
                    ]
                    self.clients.extend(names)
            except (ssl.SSLError, OSError) as exc:
                self.failures.append(f"{type(exc).__name__}: {exc}")
                connection.close()

    def wait_for_clients(self, count: int = 1, timeout: float = 15.0) -> list[str]:
        """The certificate names of the first ``count`` clients that completed the handshake."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.clients) >= count:
                return self.clients[:count]
            time.sleep(0.05)
        raise AssertionError(
            f"{len(self.clients)} of {count} clients completed a TLS handshake; "
            f"failures: {self.failures}"
        )


@pytest.fixture
def tls_listener(certificates: Certificates) -> Iterator[TlsListener]:
    with TlsListener(certificates) as listener:
        yield listener


def secured(
    certificates: Certificates, protocol: str, mechanism: str | None, bootstrap: str = "127.0.0.1:9"
) -> DriftlineSettings:
    """Settings of one security mode; the TLS files whenever the protocol uses TLS."""
    values: dict[str, Any] = {
        "kafka_bootstrap": bootstrap,
        "kafka_security_protocol": protocol,
        "topic_predictions": "p",
        "topic_labels": "l",
    }
    if protocol.startswith("SASL"):
        values.update(
            kafka_sasl_mechanism=mechanism,
            kafka_sasl_username="svc-driftline",
            kafka_sasl_password=SASL_PASSWORD,
        )
    if protocol.endswith("SSL"):
        values.update(
            kafka_ssl_cafile=certificates.ca,
            kafka_ssl_certfile=certificates.client_cert,
            kafka_ssl_keyfile=certificates.client_key,
            kafka_ssl_key_password=KEY_PASSWORD,
        )
    return DriftlineSettings(**values)


MODES = [
    ("SSL", None),
    ("SASL_PLAINTEXT", "PLAIN"),
    ("SASL_PLAINTEXT", "SCRAM-SHA-256"),
    ("SASL_SSL", "PLAIN"),
    ("SASL_SSL", "SCRAM-SHA-256"),
    ("SASL_SSL", "SCRAM-SHA-512"),
]


def expected_librdkafka(
    certificates: Certificates,
    protocol: str,
    mechanism: str | None,
) -> dict[str, str]:
    """The librdkafka properties a mode must set, written from librdkafka's CONFIGURATION.md."""
    expected = {"bootstrap.servers": "127.0.0.1:9", "security.protocol": protocol}
    if mechanism is not None:
        expected.update(
            {
                "sasl.mechanism": mechanism,
                "sasl.username": "svc-driftline",
                "sasl.password": SASL_PASSWORD,
            }
        )
    if protocol.endswith("SSL"):
        expected.update(
            {
                "ssl.ca.location": str(certificates.ca),
                "ssl.certificate.location": str(certificates.client_cert),
                "ssl.key.location": str(certificates.client_key),
                "ssl.key.password": KEY_PASSWORD,
            }
        )
    return expected


class _Built(Exception):
    """Raised by a recording client after it was built, to stop before any network wait."""


def recording(kind: type[Any], seen: list[dict[str, Any]], *, stop: bool) -> type[Any]:
    """A subclass of a confluent-kafka client that records its configuration, then builds it."""

    class Recording(kind):  # type: ignore[misc]
        def __init__(self, config: dict[str, Any], **kwargs: Any) -> None:
            seen.append(dict(config))
            super().__init__(config, **kwargs)  # librdkafka checks and loads everything here
            if stop:
                raise _Built

    return Recording


# ------------------------------------------------------------------ credentials reach every client


@pytest.mark.parametrize(("protocol", "mechanism"), MODES)
def test_the_confluent_clients_get_the_security_settings(
    certificates: Certificates,
    protocol: str,
    mechanism: str | None,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    settings = secured(certificates, protocol, mechanism)
    expected = expected_librdkafka(certificates, protocol, mechanism)

    # the producer serving apps use (and `driftline replay`)
    seen: list[dict[str, Any]] = []
    monkeypatch.setattr(streams.producer, "Producer", recording(Producer, seen, stop=False))
    EventProducer(settings)
    # the worker's start-up reads the partition count with an admin client (the probe of
    # streams.topics.cluster_metadata, which `driftline topics create` uses too)
    monkeypatch.setattr(streams.topics, "AdminClient", recording(AdminClient, seen, stop=True))
    with pytest.raises(_Built):
        source_partitions(settings)
    # `driftline topics create`, with the settings read from the environment
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if value is not None and value != "":
            monkeypatch.setenv(f"DRIFTLINE_{name.upper()}", str(value))
    (tmp_path / "monitors.yaml").write_text(
        "models: [{id: m, task: binary, reference: r.json, features: [{name: x, kind: numeric}]}]"
    )
    with pytest.raises(_Built):
        driftline_main(["topics", "create", "-c", str(tmp_path / "monitors.yaml")])
    assert len(seen) == 3
    for config in seen:
        assert {key: config.get(key) for key in expected} == expected


@pytest.mark.parametrize("protocol", ["SSL", "SASL_SSL"])
def test_librdkafka_is_given_the_key_password(certificates: Certificates, protocol: str) -> None:
    # librdkafka decrypts the client key when the client is built: a wrong password fails
    # there, so the right one succeeding shows the password arrived.
    mechanism = "PLAIN" if protocol == "SASL_SSL" else None
    settings = secured(certificates, protocol, mechanism)
    EventProducer(settings)
    wrong = settings.model_copy(update={"kafka_ssl_key_password": SecretStr("not-the-password")})
    with pytest.raises(KafkaException, match=r"ssl\.key|private key|decrypt"):
        EventProducer(wrong)


@pytest.mark.parametrize(("protocol", "mechanism"), MODES)
def test_the_worker_consumers_and_faust_producer_get_the_security_settings(
    certificates: Certificates,
    protocol: str,
    mechanism: str | None,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    settings = secured(certificates, protocol, mechanism).model_copy(
        update={"data_dir": tmp_path / "data"}
    )
    # the partition count needs a broker; the clients below are only built
    monkeypatch.setattr(streams.app, "source_partitions", lambda _: 2)

    async def build() -> list[Any]:
        app, worker = build_app(settings, CONFIG, tmp_path)
        assert len(worker.loops) == 2  # ingest and merge
        consumers = [
            AIOKafkaConsumer(*loop.topics, **loop.consumer_options()) for loop in worker.loops
        ]
        faust_producer = cast(Any, app.producer)._new_producer()  # what faust starts for the app
        clients = [consumer._client for consumer in consumers] + [faust_producer.client]
        for consumer in consumers:
            await consumer.stop()
        await faust_producer.stop()
        return clients

    clients = asyncio.run(build())
    for client in clients:
        assert client._security_protocol == protocol
        assert client._sasl_mechanism == (mechanism or "PLAIN")  # aiokafka's default
        if mechanism is not None:
            assert client._sasl_plain_username == "svc-driftline"
            assert client._sasl_plain_password == SASL_PASSWORD
        if protocol.endswith("SSL"):
            context = client._ssl_context
            assert isinstance(context, ssl.SSLContext)
            assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
            cas = [
                dict(item for rdn in cast(Any, ca)["subject"] for item in rdn)["commonName"]
                for ca in context.get_ca_certs()
            ]
            assert cas == ["driftline ca"]
        else:
            assert client._ssl_context is None


def _handshake(context: ssl.SSLContext, port: int) -> None:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.getpeercert()


def test_the_tls_context_verifies_the_broker_and_presents_the_client_certificate(
    certificates: Certificates,
    tls_listener: TlsListener,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    settings = secured(certificates, "SSL", None).model_copy(update={"data_dir": tmp_path / "data"})
    monkeypatch.setattr(streams.app, "source_partitions", lambda _: 2)

    async def contexts() -> list[ssl.SSLContext]:
        app, worker = build_app(settings, CONFIG, tmp_path)
        consumer = AIOKafkaConsumer(*worker.loops[0].topics, **worker.loops[0].consumer_options())
        producer = cast(Any, app.producer)._new_producer()
        found = [consumer._client._ssl_context, producer.client._ssl_context]
        await consumer.stop()
        await producer.stop()
        return found

    for context in asyncio.run(contexts()):
        _handshake(context, tls_listener.port)
    assert tls_listener.wait_for_clients(2) == [certificates.client_name] * 2
    # a broker whose certificate another CA signed is refused
    other = secured(certificates, "SSL", None).model_copy(
        update={"kafka_ssl_cafile": certificates.other_ca}
    )
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(other.ssl_context(), tls_listener.port)


def test_librdkafka_verifies_the_broker_and_presents_the_client_certificate(
    certificates: Certificates, tls_listener: TlsListener
) -> None:
    # The serving apps' producer, on the wire: the listener sees its certificate.
    settings = secured(certificates, "SSL", None, bootstrap=f"127.0.0.1:{tls_listener.port}")
    producer = EventProducer(settings, {"socket.connection.setup.timeout.ms": 5000})
    producer.send_raw("p", "k", b"{}")
    try:
        assert tls_listener.wait_for_clients(1) == [certificates.client_name]
    finally:
        producer._producer.purge()
        producer._producer.flush(0)


# ------------------------------------------------------------------ a secure worker, a plain broker


@pytest.mark.integration
def test_a_sasl_ssl_worker_on_a_plaintext_broker_stops_with_a_clear_error(
    certificates: Certificates, kafka_bootstrap: str, tmp_path: Path
) -> None:
    env = {
        **topic_env(unique_topic_name("secure"), kafka_bootstrap, tmp_path / "data"),
        "DRIFTLINE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "DRIFTLINE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "DRIFTLINE_KAFKA_SASL_USERNAME": "svc-driftline",
        "DRIFTLINE_KAFKA_SASL_PASSWORD": SASL_PASSWORD,
        "DRIFTLINE_KAFKA_SSL_CAFILE": str(certificates.ca),
    }
    (tmp_path / "monitors.yaml").write_text(
        "models: [{id: churn, task: binary, reference: r.json,"
        " features: [{name: x, kind: numeric}]}]"
    )
    started = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "streams.cli", "worker", "-c", "monitors.yaml"],
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(ROOT), **env},
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        output = (
            (exc.stdout or b"").decode(errors="replace")
            if isinstance(exc.stdout, bytes)
            else (exc.stdout or "")
        )
        pytest.fail(f"the worker was still waiting after 90 s, silently:\n{output[-3000:]}")
    took = time.monotonic() - started
    output = done.stdout + done.stderr
    assert done.returncode != 0, output[-3000:]
    # a handshake that never completes is a setting to fix, not a broker to wait for:
    # the worker gives up after one connection attempt's setup timeout, not its 30 s wait
    assert took < 25, f"took {took:.0f} s to give up"
    assert "SSL_HANDSHAKE" in output and "is the listener PLAINTEXT" in output, output[-3000:]
    assert kafka_bootstrap in output, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    assert SASL_PASSWORD not in output


# ------------------------------------------------------------------ secrets are never printed


@dataclass
class Secrets:
    """Secret values and every form they could be printed in."""

    values: dict[str, str] = field(default_factory=dict)

    def forms(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for name, secret in self.values.items():
            out[f"{name} (raw)"] = secret
            out[f"{name} (url-quoted)"] = urllib.parse.quote(secret, safe="")
            out[f"{name} (url-quoted, +)"] = urllib.parse.quote_plus(secret)
            out[f"{name} (base64)"] = base64.b64encode(secret.encode()).decode()
            out[f"{name} (repr)"] = repr(secret)[1:-1]
        return out

    def leaks(self, text: str) -> list[str]:
        """Each line of ``text`` holding a secret, with the secret's name."""
        found = []
        for line in text.splitlines():
            for name, form in self.forms().items():
                if form and form in line:
                    found.append(f"{name}: {line[:300]}")
        return found


SECRETS = Secrets(
    {
        "influx token": "infl-T0k3n+/=secret",
        "sasl password": "sasl-Pa55+w0rd&secret",
        "ssl key password": "ssl-K3y+pa55&secret",
        "chat path token": "chatPathT0kenSecret123",
        "chat query token": "chat+Query=T0ken&secret",
        "chat password": "chatBasicPa55Secret",
        "broken channel token": "brokenHookT0kenSecret456",
        "influx url password": "inflUrlPa55Secret",
    }
)


def _secret_config(receiver: ChatReceiver, dead_port: int) -> str:
    quoted = urllib.parse.quote(SECRETS.values["chat query token"], safe="")
    return f"""
models:
  - id: churn
    task: binary
    reference: ref-{{version}}.json
    window: {{size: 300s, allowed_lateness: 30s, label_horizon: 1h, emit_interval: 1s}}
    drift: {{min_samples: 50}}
    features:
{FEATURES_YAML}
channels:
  oncall:
    urls:
      - "json://driftline:${{CHAT_PASSWORD}}@{receiver.url_base}/hook/${{CHAT_TOKEN}}?token={quoted}"
  broken:
    urls: ["json://127.0.0.1:{dead_port}/hook/${{BROKEN_TOKEN}}"]
rules:
  - {{name: charges-drift, kind: feature_drift, features: [monthly_charges], metric: ks, for: 1,
     severity: critical, channel: oncall}}
  - {{name: charges-drift-too, kind: feature_drift, features: [monthly_charges], metric: ks,
     for: 1, severity: warning, channel: broken}}
retrain:
  - {{name: retrain-on-drift, rules: [charges-drift], cooldown: 1d}}
"""


@pytest.mark.integration
def test_no_secret_is_ever_printed(
    kafka_bootstrap: str,
    own_victoria_metrics_url: str,
    chat_receiver: ChatReceiver,
    tmp_path: Path,
) -> None:
    host, port = own_victoria_metrics_url.removeprefix("http://").split(":")
    influx = f"http://driftline:{SECRETS.values['influx url password']}@{host}:{port}"
    env = {
        **topic_env(unique_topic_name("secrets"), kafka_bootstrap, tmp_path / "data"),
        "DRIFTLINE_INFLUX_URL": influx,
        "DRIFTLINE_INFLUX_TOKEN": SECRETS.values["influx token"],
        "DRIFTLINE_KAFKA_SASL_USERNAME": "svc-driftline",
        "DRIFTLINE_KAFKA_SASL_PASSWORD": SECRETS.values["sasl password"],
        "DRIFTLINE_KAFKA_SSL_KEY_PASSWORD": SECRETS.values["ssl key password"],
        "DRIFTLINE_LOG_LEVEL": "DEBUG",
        "CHAT_TOKEN": SECRETS.values["chat path token"],
        "CHAT_PASSWORD": SECRETS.values["chat password"],
        "BROKEN_TOKEN": SECRETS.values["broken channel token"],
    }
    (tmp_path / "monitors.yaml").write_text(_secret_config(chat_receiver, free_port()))
    outputs: dict[str, str] = {}

    checked = driftline("check-config", "monitors.yaml", env=env, cwd=tmp_path)
    outputs["check-config"] = checked.stdout + checked.stderr
    assert checked.returncode == 0, outputs["check-config"]
    build_reference(tmp_path, env)
    create_topics(tmp_path, env)

    # drift from a third of the traffic on: both rules fire, one notification is delivered,
    # the other fails against a closed port and is retried and logged
    scenario = generate(
        ScenarioConfig(
            start=scenario_start(4),
            predictions=3000,
            rate_per_s=1.0,
            drift_from=0.3,
            seed=23,
            malformed_every=100,
        )
    )
    predictions = tmp_path / "predictions.jsonl"
    lines = [orjson.dumps(event).decode() for event in scenario.predictions]
    lines.insert(10, '{"prediction_id": "bad", "model_id": "churn"}')  # an invalid line, reported
    predictions.write_text("\n".join(lines) + "\n")
    labels = tmp_path / "labels.jsonl"
    labels.write_text("\n".join(orjson.dumps(label).decode() for label in scenario.labels) + "\n")
    replayed = driftline(
        "replay", "--predictions", str(predictions), "--labels", str(labels), env=env, cwd=tmp_path
    )
    outputs["replay"] = replayed.stdout + replayed.stderr
    assert "1 invalid events were not sent" in outputs["replay"], outputs["replay"][-2000:]

    run = Run(env, tmp_path, scenario.predictions, scenario.labels, 0, load_reference(tmp_path))
    worker = start_worker(run, "worker")
    try:
        delivered = chat_receiver.wait_for(1, timeout=180)
        deadline = time.monotonic() + 60
        log = tmp_path / "worker.log"
        while time.monotonic() < deadline and "failed after" not in log.read_text(errors="replace"):
            time.sleep(1)
    finally:
        stop(worker)
    outputs["worker"] = (tmp_path / "worker.log").read_text(errors="replace")
    # the secrets were used: the notification reached the receiver with its token
    assert SECRETS.values["chat path token"] in delivered[0].path
    assert "failed after" in outputs["worker"], "the broken channel's failure was not logged"
    assert "DEBUG" in outputs["worker"]
    leaks = [f"{name}: {leak}" for name, text in outputs.items() for leak in SECRETS.leaks(text)]
    assert not leaks, "\n".join(leaks[:30])


# ------------------------------------------------------------------ YAML


PYTHON_TAGS = [
    "models: !!python/object/apply:os.system ['touch {marker}']",
    "models: !!python/object/new:subprocess.Popen [['touch', '{marker}']]",
    "x: !!python/name:os.system\nmodels: []",
    "models: !!python/object:builtins.dict {{}}",
    "models: !!python/module:os",
]


@pytest.mark.parametrize("document", PYTHON_TAGS)
def test_a_python_tag_in_the_configuration_is_refused_and_runs_nothing(
    document: str, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    with pytest.raises(ConfigError, match=r"not valid YAML.*python/"):
        parse_config(document.format(marker=marker))
    assert not marker.exists()


def test_check_config_names_the_refused_python_tag(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    (tmp_path / "monitors.yaml").write_text(PYTHON_TAGS[0].format(marker=marker))
    done = driftline("check-config", "monitors.yaml", env={}, cwd=tmp_path)
    assert done.returncode == 1
    assert "not valid YAML" in done.stdout, done.stdout
    assert "python/object/apply:os.system" in done.stdout, done.stdout
    assert "Traceback" not in done.stdout + done.stderr
    assert not marker.exists()


def _limit_memory() -> None:
    limit = 3 * 1024**3
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def test_an_alias_bomb_in_the_configuration_is_refused_quickly(tmp_path: Path) -> None:
    # A safe loader still expands aliases: nine levels of nine references are 9⁹ strings.
    levels = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, 10):
        refs = ", ".join([f"*a{level - 1}"] * 9)
        levels.append(f"a{level}: &a{level} [{refs}]")
    (tmp_path / "monitors.yaml").write_text("\n".join(levels) + "\nmodels: []\n")
    started = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "streams.cli", "check-config", "monitors.yaml"],
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
            preexec_fn=_limit_memory,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("check-config was still expanding the aliases after 20 s")
    assert time.monotonic() - started < 20
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr, (done.stdout + done.stderr)[-2000:]
