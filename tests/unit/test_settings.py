"""Process settings from DRIFTLINE_* variables; secrets never printed."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from schemas import DriftlineSettings


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFTLINE_KAFKA_BOOTSTRAP", "broker-1:9093,broker-2:9093")
    monkeypatch.setenv("DRIFTLINE_INFLUX_URL", "http://127.0.0.1:8086")
    monkeypatch.setenv("DRIFTLINE_INFLUX_TOKEN", "tok-123456")
    monkeypatch.setenv("DRIFTLINE_TOPIC_PREDICTIONS", "ml.preds")
    monkeypatch.setenv("DRIFTLINE_MAX_FEATURES", "50")
    settings = DriftlineSettings()
    assert settings.kafka_bootstrap == "broker-1:9093,broker-2:9093"
    assert settings.influx_url == "http://127.0.0.1:8086"
    assert settings.influx_token.get_secret_value() == "tok-123456"
    assert settings.topics["predictions"] == "ml.preds"
    assert settings.topics["dead_letter"] == "driftline.dead-letter"
    assert settings.limits.max_features == 50


def test_secrets_do_not_appear_in_reprs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFTLINE_INFLUX_TOKEN", "tok-SECRET-1")
    monkeypatch.setenv("DRIFTLINE_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("DRIFTLINE_KAFKA_SASL_MECHANISM", "PLAIN")
    monkeypatch.setenv("DRIFTLINE_KAFKA_SASL_USERNAME", "svc")
    monkeypatch.setenv("DRIFTLINE_KAFKA_SASL_PASSWORD", "pw-SECRET-2")
    settings = DriftlineSettings()
    shown = repr(settings) + str(settings) + settings.model_dump_json()
    assert "SECRET" not in shown
    assert settings.confluent_config()["sasl.password"] == "pw-SECRET-2"


def test_sasl_needs_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFTLINE_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    with pytest.raises(ValidationError, match="DRIFTLINE_KAFKA_SASL_MECHANISM"):
        DriftlineSettings()


def test_bad_security_protocol_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFTLINE_KAFKA_SECURITY_PROTOCOL", "TLS")
    with pytest.raises(ValidationError, match="kafka_security_protocol"):
        DriftlineSettings()


def test_mtls_needs_certificate_and_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFTLINE_KAFKA_SSL_CERTFILE", "/etc/driftline/client.pem")
    with pytest.raises(ValidationError, match="go together"):
        DriftlineSettings()
    monkeypatch.setenv("DRIFTLINE_KAFKA_SSL_KEYFILE", "/etc/driftline/client.key")
    monkeypatch.setenv("DRIFTLINE_KAFKA_SECURITY_PROTOCOL", "SSL")
    config = DriftlineSettings().confluent_config()
    assert config["ssl.certificate.location"] == "/etc/driftline/client.pem"
    assert config["ssl.key.location"] == "/etc/driftline/client.key"
    assert config["security.protocol"] == "SSL"
