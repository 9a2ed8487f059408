"""Process settings from ``DRIFTLINE_*`` environment variables.

Everything about *where* driftline runs (brokers, security, the time-series
store, topic names, the data directory) comes from the environment; *what* it
monitors comes from the YAML configuration. Secrets are :class:`SecretStr`, so
they print as ``**********`` in logs, reprs and errors.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.limits import InputLimits

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class DriftlineSettings(BaseSettings):
    """Settings of a driftline process, read from ``DRIFTLINE_*`` variables.

    Examples
    --------
    >>> settings = DriftlineSettings(influx_token="s3cret")
    >>> settings.influx_token
    SecretStr('**********')
    >>> settings.kafka_bootstrap
    '127.0.0.1:9092'
    """

    model_config = SettingsConfigDict(
        env_prefix="DRIFTLINE_", extra="ignore", frozen=True, validate_default=True
    )

    kafka_bootstrap: str = Field(default="127.0.0.1:9092", min_length=1)
    kafka_security_protocol: SecurityProtocol = "PLAINTEXT"
    kafka_sasl_mechanism: SaslMechanism | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None
    kafka_ssl_key_password: SecretStr | None = None

    kafka_session_timeout_s: float = Field(
        default=10.0, gt=0, description="Consumer-group session timeout of the workers."
    )
    kafka_heartbeat_interval_s: float = Field(
        default=2.0, gt=0, description="Consumer-group heartbeat interval of the workers."
    )

    group_id: str = Field(
        default="driftline",
        min_length=1,
        description=(
            "Consumer-group name of the workers: the inputs are read by group "
            "`<group_id>-ingest`, the window partials by `<group_id>-merge`."
        ),
    )
    checkpoint_interval_s: float = Field(
        default=5.0,
        gt=0,
        description=(
            "How often a worker saves each partition's join and windows and commits "
            "the offsets they cover; a crash replays at most this much input."
        ),
    )
    fetch_max_wait_ms: int = Field(
        default=100,
        ge=0,
        le=10_000,
        description="Longest time the broker may hold a fetch waiting for data.",
    )

    influx_url: str | None = Field(
        default=None, description="InfluxDB URL; unset writes line protocol under data_dir."
    )
    influx_token: SecretStr = SecretStr("")
    influx_org: str = "driftline"
    influx_bucket: str = "driftline"
    sink_max_buffered_points: int = Field(
        default=100_000,
        ge=1,
        description=(
            "Most points a worker keeps waiting while the store does not take them; from "
            "half of it on, windows are held back in the mergers (their alerts are not)."
        ),
    )
    notify_max_queued: int = Field(
        default=1000,
        ge=1,
        description=(
            "Most chat notifications waiting to be sent, per channel (each channel has its "
            "own sender); beyond that the channel's oldest is dropped and counted."
        ),
    )

    data_dir: Path = Path("./driftline-data")

    topic_predictions: str = "driftline.predictions"
    topic_labels: str = "driftline.labels"
    topic_alerts: str = "driftline.alerts"
    topic_retrain_requests: str = "driftline.retrain-requests"
    topic_dead_letter: str = "driftline.dead-letter"
    topic_partials: str = "driftline.window-partials"

    max_message_bytes: int = Field(default=1_048_576, ge=64)
    max_features: int = Field(default=2000, ge=1)
    max_string_length: int = Field(default=1024, ge=1)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @model_validator(mode="after")
    def _security_consistent(self) -> DriftlineSettings:
        sasl = self.kafka_security_protocol.startswith("SASL")
        if sasl and (
            self.kafka_sasl_mechanism is None
            or self.kafka_sasl_username is None
            or self.kafka_sasl_password is None
        ):
            raise ValueError(
                f"DRIFTLINE_KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs "
                "DRIFTLINE_KAFKA_SASL_MECHANISM, DRIFTLINE_KAFKA_SASL_USERNAME and "
                "DRIFTLINE_KAFKA_SASL_PASSWORD"
            )
        if (self.kafka_ssl_certfile is None) != (self.kafka_ssl_keyfile is None):
            raise ValueError(
                "DRIFTLINE_KAFKA_SSL_CERTFILE and DRIFTLINE_KAFKA_SSL_KEYFILE go together "
                "(client certificate and its key, for mTLS)"
            )
        return self

    @property
    def limits(self) -> InputLimits:
        """Input bounds for decoding events."""
        return InputLimits(
            max_message_bytes=self.max_message_bytes,
            max_features=self.max_features,
            max_string_length=self.max_string_length,
        )

    def aiokafka_config(self) -> dict[str, Any]:
        """Connection settings for aiokafka clients (the worker's consumers).

        Examples
        --------
        >>> config = DriftlineSettings(
        ...     kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="SCRAM-SHA-256",
        ...     kafka_sasl_username="svc", kafka_sasl_password="pw",
        ... ).aiokafka_config()
        >>> config["sasl_mechanism"], config["sasl_plain_username"], config["sasl_plain_password"]
        ('SCRAM-SHA-256', 'svc', 'pw')
        """
        config: dict[str, Any] = {
            "bootstrap_servers": self.kafka_bootstrap.split(","),
            "security_protocol": self.kafka_security_protocol,
        }
        if self.kafka_security_protocol in ("SSL", "SASL_SSL"):
            config["ssl_context"] = self.ssl_context()
        if self.kafka_sasl_mechanism is not None:
            config["sasl_mechanism"] = self.kafka_sasl_mechanism
        if self.kafka_sasl_username is not None:
            config["sasl_plain_username"] = self.kafka_sasl_username
        if self.kafka_sasl_password is not None:
            config["sasl_plain_password"] = self.kafka_sasl_password.get_secret_value()
        return config

    def ssl_context(self) -> ssl.SSLContext:
        """TLS context from the CA file and, for mTLS, the client certificate and key."""
        context = ssl.create_default_context(
            cafile=str(self.kafka_ssl_cafile) if self.kafka_ssl_cafile else None
        )
        if self.kafka_ssl_certfile is not None and self.kafka_ssl_keyfile is not None:
            password = self.kafka_ssl_key_password
            context.load_cert_chain(
                str(self.kafka_ssl_certfile),
                str(self.kafka_ssl_keyfile),
                password.get_secret_value() if password else None,
            )
        return context

    def confluent_config(self) -> dict[str, Any]:
        """Connection settings for confluent-kafka (librdkafka) clients.

        Examples
        --------
        >>> config = DriftlineSettings(
        ...     kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="SCRAM-SHA-512",
        ...     kafka_sasl_username="svc", kafka_sasl_password="pw",
        ... ).confluent_config()
        >>> config["sasl.mechanism"], config["sasl.password"]
        ('SCRAM-SHA-512', 'pw')
        """
        config: dict[str, Any] = {
            "bootstrap.servers": self.kafka_bootstrap,
            "security.protocol": self.kafka_security_protocol,
        }
        if self.kafka_sasl_mechanism is not None:
            config["sasl.mechanism"] = self.kafka_sasl_mechanism
        if self.kafka_sasl_username is not None:
            config["sasl.username"] = self.kafka_sasl_username
        if self.kafka_sasl_password is not None:
            config["sasl.password"] = self.kafka_sasl_password.get_secret_value()
        if self.kafka_ssl_cafile is not None:
            config["ssl.ca.location"] = str(self.kafka_ssl_cafile)
        if self.kafka_ssl_certfile is not None:
            config["ssl.certificate.location"] = str(self.kafka_ssl_certfile)
        if self.kafka_ssl_keyfile is not None:
            config["ssl.key.location"] = str(self.kafka_ssl_keyfile)
        if self.kafka_ssl_key_password is not None:
            config["ssl.key.password"] = self.kafka_ssl_key_password.get_secret_value()
        return config

    @property
    def topics(self) -> dict[str, str]:
        """Role to topic name, for every topic driftline reads or writes."""
        return {
            "predictions": self.topic_predictions,
            "labels": self.topic_labels,
            "alerts": self.topic_alerts,
            "retrain_requests": self.topic_retrain_requests,
            "dead_letter": self.topic_dead_letter,
            "partials": self.topic_partials,
        }
