"""Input events: what serving apps and label sources write to Kafka.

Inputs are tolerant where tolerance is safe (unknown fields are ignored, so a
serving app can add fields without breaking the monitor) and strict where a
wrong value would corrupt a statistic: timestamps must carry a timezone,
identifiers are non-empty and bounded, non-finite feature values become
missing values, and every size is bounded by :class:`schemas.limits.InputLimits`
(passed as validation context ``{"limits": ...}``).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from schemas.errors import FieldError, InvalidEvent, describe_validation_error
from schemas.limits import DEFAULT_LIMITS, InputLimits

SCHEMA_VERSION: Literal[1] = 1

FeatureValue = bool | float | str | None
"""A feature value after validation: number, string, boolean or missing."""

Label = bool | int | float | str
"""A class label or a regression target."""


def _limits(info: ValidationInfo) -> InputLimits:
    context = info.context
    if isinstance(context, dict):
        limits = context.get("limits")
        if isinstance(limits, InputLimits):
            return limits
    return DEFAULT_LIMITS


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_utc)]
"""An RFC 3339 timestamp with an offset, normalised to UTC."""


def _type_name(value: object) -> str:
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return type(value).__name__


def _bounded_text(name: str, value: str, limit: int, setting: str) -> str:
    if len(value) > limit:
        raise ValueError(
            f"{name} is {len(value)} characters long; the limit is {limit} ({setting})"
        )
    return value


def _check_identifier(value: str, info: ValidationInfo) -> str:
    if not value.strip():
        raise ValueError("must be a non-empty string")
    if any(ord(char) < 32 for char in value):
        raise ValueError("must not contain control characters")
    limits = _limits(info)
    return _bounded_text("identifier", value, limits.max_id_length, "max_id_length")


def _scalar(value: object, where: str) -> bool | int | float | str | None:
    # bool before int: bool is a subclass of int in Python.
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int | float):
        return value
    raise ValueError(f"{where} must be a number, string, boolean or null (got {_type_name(value)})")


class _InputEvent(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, str_strip_whitespace=False)

    schema_version: Literal[1] = Field(
        default=SCHEMA_VERSION, description="Version of this event schema; this worker reads 1."
    )
    prediction_id: str = Field(description="Unique id of the prediction; the Kafka message key.")
    model_id: str = Field(description="Identifier of the monitored model.")

    @field_validator("prediction_id", "model_id", mode="after")
    @classmethod
    def _identifier(cls, value: str, info: ValidationInfo) -> str:
        return _check_identifier(value, info)


class PredictionEvent(_InputEvent):
    """One prediction made by a serving app.

    Examples
    --------
    >>> event = PredictionEvent.model_validate_json(
    ...     '{"prediction_id": "p-1", "model_id": "churn", "model_version": "3",'
    ...     ' "timestamp": "2026-11-23T10:00:00+01:00",'
    ...     ' "features": {"tenure": 12, "plan": "gold", "income": NaN},'
    ...     ' "prediction": 1, "scores": {"0": 0.2, "1": 0.8}}'
    ... )
    >>> event.timestamp.isoformat()
    '2026-11-23T09:00:00+00:00'
    >>> event.features
    {'tenure': 12.0, 'plan': 'gold', 'income': None}
    """

    model_version: str = Field(description="Version of the model that made the prediction.")
    timestamp: UtcDatetime = Field(description="Event time of the prediction (RFC 3339, offset).")
    features: dict[str, FeatureValue] = Field(
        description="Feature name to value; NaN and infinities are treated as missing."
    )
    prediction: Label = Field(description="Predicted class or number.")
    scores: dict[str, float] | None = Field(
        default=None, description="Class to probability, each in [0, 1]."
    )
    segment: dict[str, str] | None = Field(
        default=None, description="Segment name to value (e.g. region), for per-segment windows."
    )
    latency_ms: float | None = Field(
        default=None, ge=0, allow_inf_nan=False, description="Serving latency in milliseconds."
    )

    @field_validator("model_version", mode="after")
    @classmethod
    def _version(cls, value: str, info: ValidationInfo) -> str:
        return _check_identifier(value, info)

    @field_validator("features", mode="before")
    @classmethod
    def _features(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, dict):
            return value
        limits = _limits(info)
        if len(value) > limits.max_features:
            raise ValueError(
                f"has {len(value)} features; the limit is {limits.max_features} (max_features)"
            )
        cleaned: dict[str, FeatureValue] = {}
        for name, raw in value.items():
            _bounded_text("feature name", name, limits.max_name_length, "max_name_length")
            item = _scalar(raw, f"value of feature {name!r}")
            if isinstance(item, str):
                _bounded_text(
                    f"value of feature {name!r}",
                    item,
                    limits.max_string_length,
                    "max_string_length",
                )
            elif isinstance(item, int | float) and not isinstance(item, bool):
                item = float(item) if math.isfinite(item) else None
            cleaned[name] = item
        return cleaned

    @field_validator("scores", mode="before")
    @classmethod
    def _scores(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, dict):
            return value
        limits = _limits(info)
        if len(value) > limits.max_features:
            raise ValueError(
                f"has {len(value)} classes; the limit is {limits.max_features} (max_features)"
            )
        for name, score in value.items():
            _bounded_text("class name", name, limits.max_name_length, "max_name_length")
            if isinstance(score, bool) or not isinstance(score, int | float):
                raise ValueError(f"score of class {name!r} must be a number")
            if not (math.isfinite(score) and 0.0 <= score <= 1.0):
                raise ValueError(f"score of class {name!r} must be a probability in [0, 1]")
        return value

    @field_validator("segment", mode="before")
    @classmethod
    def _segment(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, dict):
            return value
        limits = _limits(info)
        if len(value) > limits.max_segments:
            raise ValueError(
                f"has {len(value)} entries; the limit is {limits.max_segments} (max_segments)"
            )
        for name, item in value.items():
            _bounded_text("segment name", name, limits.max_name_length, "max_name_length")
            if not isinstance(item, str):
                raise ValueError(f"value of segment {name!r} must be a string")
            _bounded_text(
                f"value of segment {name!r}", item, limits.max_string_length, "max_string_length"
            )
        return value

    @field_validator("prediction", mode="before")
    @classmethod
    def _prediction(cls, value: Any, info: ValidationInfo) -> Any:
        return _check_label(value, "prediction", _limits(info))


class LabelEvent(_InputEvent):
    """The ground truth of an earlier prediction, possibly days later.

    Examples
    --------
    >>> LabelEvent.model_validate(
    ...     {"prediction_id": "p-1", "model_id": "churn", "label": 0,
    ...      "timestamp": "2026-11-24T08:30:00Z"}
    ... ).label
    0
    """

    label: Label = Field(description="True class or number.")
    timestamp: UtcDatetime = Field(description="When the truth became known (RFC 3339, offset).")

    @field_validator("label", mode="before")
    @classmethod
    def _label(cls, value: Any, info: ValidationInfo) -> Any:
        return _check_label(value, "label", _limits(info))


def _check_label(value: Any, name: str, limits: InputLimits) -> Any:
    item = _scalar(value, name)
    if item is None:
        raise ValueError(f"{name} must not be null")
    if isinstance(item, float) and not math.isfinite(item):
        raise ValueError(f"{name} must be a finite number")
    if isinstance(item, str):
        if not item:
            raise ValueError(f"{name} must not be an empty string")
        _bounded_text(name, item, limits.max_string_length, "max_string_length")
    return item


EventT = TypeVar("EventT", bound=_InputEvent)


def _decode(model: type[EventT], raw: bytes | str, limits: InputLimits) -> EventT:
    size = len(raw.encode("utf-8") if isinstance(raw, str) else raw)
    if size > limits.max_message_bytes:
        raise InvalidEvent(
            [
                FieldError(
                    "",
                    f"message is {size} bytes; the limit is "
                    f"{limits.max_message_bytes} (max_message_bytes)",
                )
            ]
        )
    try:
        return model.model_validate_json(raw, context={"limits": limits})
    except ValidationError as exc:
        raise InvalidEvent(describe_validation_error(exc)) from exc


def decode_prediction(raw: bytes | str, limits: InputLimits = DEFAULT_LIMITS) -> PredictionEvent:
    """Decode and validate one prediction message.

    Parameters
    ----------
    raw
        The message value as received from Kafka (UTF-8 JSON).
    limits
        Size bounds; the message length is checked before parsing.

    Raises
    ------
    InvalidEvent
        With one :class:`~schemas.errors.FieldError` per broken rule.

    Examples
    --------
    >>> decode_prediction(b'{"prediction_id": "", "model_id": "m", "model_version": "1",'
    ...                   b' "timestamp": "2026-01-01T00:00:00", "features": {},'
    ...                   b' "prediction": 1}')
    Traceback (most recent call last):
    ...
    schemas.errors.InvalidEvent: prediction_id: must be a non-empty string; timestamp: ...
    """
    return _decode(PredictionEvent, raw, limits)


def decode_label(raw: bytes | str, limits: InputLimits = DEFAULT_LIMITS) -> LabelEvent:
    """Decode and validate one label message (see :func:`decode_prediction`)."""
    return _decode(LabelEvent, raw, limits)
