"""Output events: what driftline itself publishes.

Outputs are strict (``extra="forbid"``): a consumer of the alerts or retrain
topics can rely on every field being one driftline meant to write.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.events import SCHEMA_VERSION, UtcDatetime

Severity = Literal["info", "warning", "critical"]
AlertState = Literal["firing", "resolved"]
EvidenceValue = float | int | str | bool | None

ALL_SEGMENTS = "all"
"""Segment key of the window that covers every event of a model version."""


def segment_key(segment: Mapping[str, str] | None, keys: tuple[str, ...] = ()) -> str:
    """Canonical string for a segment, as used in window keys and InfluxDB tags.

    Parameters
    ----------
    segment
        The event's segment mapping, or None.
    keys
        The segment names the model is windowed by (``segment_by`` in the
        configuration); other entries are ignored so the number of series stays
        bounded by configuration, not by traffic.

    Examples
    --------
    >>> segment_key({"tier": "gold", "region": "eu"}, ("region", "tier"))
    'region=eu,tier=gold'
    >>> segment_key({"region": "eu"}, ())
    'all'
    >>> segment_key(None, ("region",))
    'region=<none>'
    >>> segment_key({"city": "New York, NY", "tier": "<none>"}, ("city", "tier"))
    'city=New York%2C NY,tier=%3Cnone>'

    A value's ``%``, ``,``, ``=``, ``\\``, ``<`` and control characters are
    percent-encoded, so two different segments never share a key (nor an
    InfluxDB series, where a backslash or a control character could not be
    written as it is), and a value ``"<none>"`` is not a missing one.
    """
    if not keys:
        return ALL_SEGMENTS
    values = segment or {}
    return ",".join(
        f"{key}={_segment_value(values[key]) if key in values else '<none>'}"
        for key in sorted(keys)
    )


_SEGMENT_SPECIAL = re.compile(r"[%,=\\<\x00-\x1f\x7f]")


def _segment_value(value: str) -> str:
    if _SEGMENT_SPECIAL.search(value) is None:
        return value
    return _SEGMENT_SPECIAL.sub(lambda match: f"%{ord(match.group()):02X}", value)


def _check_window(window_start: datetime, window_end: datetime) -> None:
    if window_end <= window_start:
        raise ValueError(
            f"window_end ({window_end.isoformat()}) must be after "
            f"window_start ({window_start.isoformat()})"
        )


class _OutputEvent(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = Field(
        default=SCHEMA_VERSION, description="Version of this event schema."
    )


class AlertEvent(_OutputEvent):
    """An alert firing or resolving, one per transition of the alert state machine.

    Examples
    --------
    >>> event = AlertEvent(
    ...     alert_id="a1", rule="feature-drift", state="firing", severity="warning",
    ...     model_id="churn", model_version="3", segment="all", metric="psi",
    ...     feature="tenure", value=0.31, threshold=0.2,
    ...     window_start="2026-11-23T10:00:00Z", window_end="2026-11-23T11:00:00Z",
    ...     fired_at="2026-11-23T11:05:00Z", summary="tenure drifted (PSI 0.31 > 0.2)",
    ...     evidence={"n_current": 5000},
    ... )
    >>> event.model_dump(mode="json")["window_start"]
    '2026-11-23T10:00:00Z'
    """

    alert_id: str = Field(min_length=1, description="Stable id of this alert occurrence.")
    rule: str = Field(min_length=1, description="Name of the rule that produced the alert.")
    state: AlertState
    severity: Severity
    model_id: str = Field(min_length=1)
    model_version: str = Field(min_length=1)
    segment: str = Field(min_length=1, description="Segment key such as 'region=eu', or 'all'.")
    metric: str = Field(min_length=1, description="Metric the rule watches, e.g. psi, accuracy.")
    feature: str | None = Field(description="Feature the alert is about, or null.")
    value: float = Field(description="Observed value that triggered the transition.")
    threshold: float = Field(description="Threshold the value was compared with.")
    window_start: UtcDatetime
    window_end: UtcDatetime
    fired_at: UtcDatetime = Field(description="When the alert first fired.")
    summary: str = Field(min_length=1, max_length=500, description="One line for humans.")
    evidence: dict[str, EvidenceValue] = Field(
        default_factory=dict, description="The numbers behind the decision."
    )

    @model_validator(mode="after")
    def _window_order(self) -> AlertEvent:
        _check_window(self.window_start, self.window_end)
        return self


class RetrainReason(BaseModel):
    """One firing alert behind a retrain request."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    alert_id: str = Field(min_length=1)
    rule: str = Field(min_length=1)
    metric: str = Field(min_length=1)
    feature: str | None = None
    value: float
    threshold: float


class RetrainRequest(_OutputEvent):
    """A request to retrain a model, for retraining pipelines to consume.

    ``request_id`` is an idempotency key: a pipeline that sees the same request
    twice retrains once.
    """

    request_id: str = Field(min_length=1, description="Idempotency key.")
    model_id: str = Field(min_length=1)
    model_version: str = Field(min_length=1)
    requested_at: UtcDatetime
    reasons: list[RetrainReason] = Field(min_length=1)
    window_start: UtcDatetime
    window_end: UtcDatetime

    @model_validator(mode="after")
    def _window_order(self) -> RetrainRequest:
        _check_window(self.window_start, self.window_end)
        return self


DEAD_LETTER_ORIGINAL_LIMIT = 64 * 1024
"""Most bytes of a refused message a dead letter keeps (64 KiB).

A dead letter must fit in one produce request (1 MiB by default) whatever was
refused: the base64 of 64 KiB is about 87 KB, well under that, and enough to see
what a broken message looked like. A longer original is identified by its size
and SHA-256 instead.
"""


class DeadLetter(_OutputEvent):
    """A message that could not be processed, with the reason and its origin.

    At most :data:`DEAD_LETTER_ORIGINAL_LIMIT` bytes of the original value are
    kept (``original_truncated`` says when that is a prefix);
    ``original_size`` and ``original_sha256`` describe the whole value.

    Examples
    --------
    >>> letter = DeadLetter.from_failure(
    ...     b"not json", topic="driftline.predictions", partition=2, offset=41,
    ...     error_class="InvalidEvent", error_message="Invalid JSON",
    ... )
    >>> letter.original_bytes()
    b'not json'
    >>> letter.original_size, letter.original_truncated
    (8, False)
    >>> big = DeadLetter.from_failure(
    ...     b"x" * 100_000, topic="t", partition=0, offset=0,
    ...     error_class="InvalidEvent", error_message="too large",
    ... )
    >>> len(big.original_bytes()), big.original_size, big.original_truncated
    (65536, 100000, True)
    """

    original_b64: str = Field(
        description=(
            "The original message value, base64-encoded: all of it, or its first "
            f"{DEAD_LETTER_ORIGINAL_LIMIT} bytes when original_truncated is true."
        )
    )
    original_size: int = Field(ge=0, description="Length of the whole original value in bytes.")
    original_sha256: str = Field(
        pattern=r"^[0-9a-f]{64}$",
        description="SHA-256 of the whole original value, lowercase hex.",
    )
    original_truncated: bool = Field(
        description="True when original_b64 holds only a prefix of the original value."
    )
    original_key_b64: str | None = Field(
        default=None, description="The original message key, base64-encoded."
    )
    source_topic: str = Field(min_length=1)
    source_partition: int = Field(ge=0)
    source_offset: int = Field(ge=0)
    error_class: str = Field(min_length=1, description="Kind of failure, e.g. InvalidEvent.")
    error_message: str = Field(description="What was wrong, naming the field and rule.")
    received_at: UtcDatetime

    @model_validator(mode="before")
    @classmethod
    def _describe_whole_original(cls, data: Any) -> Any:
        # Dead letters written before the original was capped kept all of it:
        # its size and digest follow from the bytes.
        if isinstance(data, dict) and isinstance(data.get("original_b64"), str):
            missing = {"original_size", "original_sha256", "original_truncated"} - data.keys()
            if missing == {"original_size", "original_sha256", "original_truncated"}:
                try:
                    whole = base64.b64decode(data["original_b64"], validate=True)
                except ValueError:
                    return data  # reported by the field validation
                data = {
                    **data,
                    "original_size": len(whole),
                    "original_sha256": hashlib.sha256(whole).hexdigest(),
                    "original_truncated": False,
                }
        return data

    @classmethod
    def from_failure(
        cls,
        value: bytes | None,
        *,
        topic: str,
        partition: int,
        offset: int,
        error_class: str,
        error_message: str,
        key: bytes | None = None,
        received_at: datetime | None = None,
    ) -> DeadLetter:
        """Build a dead letter from the raw message and the error it caused.

        Only the first :data:`DEAD_LETTER_ORIGINAL_LIMIT` bytes of ``value``
        are kept, so the letter stays far below a producer's request limit.
        """
        whole = value or b""
        kept = whole[:DEAD_LETTER_ORIGINAL_LIMIT]
        return cls(
            original_b64=base64.b64encode(kept).decode("ascii"),
            original_size=len(whole),
            original_sha256=hashlib.sha256(whole).hexdigest(),
            original_truncated=len(kept) < len(whole),
            original_key_b64=None if key is None else base64.b64encode(key).decode("ascii"),
            source_topic=topic,
            source_partition=partition,
            source_offset=offset,
            error_class=error_class,
            error_message=error_message[:4000],
            received_at=received_at or datetime.now(UTC),
        )

    def original_bytes(self) -> bytes:
        """The original message value as kept: a prefix when ``original_truncated``."""
        return base64.b64decode(self.original_b64)

    def is_of(self, value: bytes | None) -> bool:
        """Whether this letter was made from ``value`` (size, digest and kept prefix agree).

        Examples
        --------
        >>> letter = DeadLetter.from_failure(
        ...     b"y" * 70_000, topic="t", partition=0, offset=0,
        ...     error_class="InvalidEvent", error_message="too large",
        ... )
        >>> letter.is_of(b"y" * 70_000), letter.is_of(b"y" * 69_999)
        (True, False)
        """
        whole = value or b""
        kept = self.original_bytes()
        return (
            len(whole) == self.original_size
            and hashlib.sha256(whole).hexdigest() == self.original_sha256
            and whole[: len(kept)] == kept
            and (len(kept) < len(whole)) == self.original_truncated
        )
