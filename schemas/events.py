"""Input events: what serving apps and label sources write to Kafka.

Inputs are tolerant where tolerance is safe (unknown fields are ignored, so a
serving app can add fields without breaking the monitor) and strict where a
wrong value would corrupt a statistic: timestamps must carry a timezone,
identifiers are non-empty and bounded, non-finite feature values become
missing values, and every size is bounded by :class:`schemas.limits.InputLimits`
(passed as validation context ``{"limits": ...}``).

:func:`decode_prediction` and :func:`decode_label` read a message in the usual
valid shape with orjson and a few checks (:func:`fast_prediction`,
:func:`fast_label`, several times cheaper) and hand any other message to
pydantic (:func:`validate_prediction`, :func:`validate_label`); both paths
accept the same messages and give the same events.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, NamedTuple, TypeVar

import orjson
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
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
    try:
        return value.astimezone(UTC)
    except OverflowError:
        # 0001-01-01T00:00:00+01:00 is a valid timestamp with no UTC equivalent.
        raise ValueError(f"{value.isoformat()} is out of range once converted to UTC") from None


_DATE_TIME_TEXT = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]")


def _date_time_text(value: Any) -> Any:
    # Numbers (and digit strings) would pass as Unix seconds or milliseconds,
    # a guess the contract does not make: only date-time text is taken.
    if isinstance(value, datetime) or (isinstance(value, str) and _DATE_TIME_TEXT.match(value)):
        return value
    raise ValueError(
        "must be an RFC 3339 date-time with an offset, e.g. 2026-11-23T10:00:00Z "
        f"(got {repr(value)[:40] if isinstance(value, str) else _type_name(value)})"
    )


UtcDatetime = Annotated[AwareDatetime, BeforeValidator(_date_time_text), AfterValidator(_utc)]
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


_CONTROL = re.compile(r"[\x00-\x1f]").search
"""Finds a control character (code point below 32) in a string."""


def _check_identifier(value: str, info: ValidationInfo) -> str:
    # The length first: it bounds the work of the other checks.
    _bounded_text("identifier", value, _limits(info).max_id_length, "max_id_length")
    if not value.strip():
        raise ValueError("must be a non-empty string")
    if _CONTROL(value) is not None:
        raise ValueError("must not contain control characters")
    return value


def _finite_float(value: int | float) -> float | None:
    """The value as a float, or None when it is NaN, infinite or too large for a float."""
    try:
        number = float(value)
    except OverflowError:  # an integer literal of more than 308 digits
        return None
    return number if math.isfinite(number) else None


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
                item = _finite_float(item)
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
            number = _finite_float(score)
            if number is None or not 0.0 <= number <= 1.0:
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


def _sized(raw: bytes | str, limits: InputLimits) -> bytes:
    """The message as bytes, refused before parsing when it is over the size limit."""
    data = raw.encode("utf-8") if isinstance(raw, str) else raw
    size = len(data)
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
    return data


def _validate(model: type[EventT], raw: bytes | str, limits: InputLimits) -> EventT:
    try:
        return model.model_validate_json(raw, context={"limits": limits})
    except ValidationError as exc:
        raise InvalidEvent(describe_validation_error(exc)) from exc


# The fast path.  orjson parses the message and a few type checks vouch for
# the common, valid shape of an event; the event is then built without
# pydantic's validation (as ``model_construct`` does).  Whatever these checks
# do not vouch for goes through pydantic, which either accepts it too or
# names the broken rule, so both paths accept the same messages and give the
# same events (tests/unit/test_decode_fast.py checks this on generated
# messages).  What the checks rely on:
#
# * orjson refuses NaN, Infinity and numbers too large for a float, so every
#   float it returns is finite; it returns integer literals outside
#   [-2**63, 2**64) as floats, so a label that could have been one is left to
#   pydantic, which keeps it an int.
# * A string is never longer in characters than the message is in bytes, so
#   string lengths need no check when the whole message is shorter than
#   ``max_string_length``.
# * Only the canonical RFC 3339 form of a timestamp is taken here, where
#   ``datetime.fromisoformat`` and pydantic read the same instant; pydantic
#   also reads other forms (a space for ``T``, unix seconds, a comma before
#   the fraction, more than six fraction digits, no seconds).
# * pydantic coerces some values the checks leave to it (``"4.5"`` and
#   ``true`` as a latency, ``1.0`` and ``true`` as the schema version).
# * pydantic's parser refuses JSON nested more than about 200 levels deep,
#   orjson only past 1024, wherever the nesting is (an unknown field, a value
#   a later duplicate key replaces). A message with more than ``_NESTING``
#   brackets, counted over the whole text (an upper bound on the depth), is
#   left to pydantic.
# * Both parsers keep the last value of a duplicate key.
# * An event is built as ``model_construct`` builds one (its ``__dict__`` in
#   field order and the set of fields present); the tests compare every
#   field, its type and that set with pydantic's event.

_PREDICTION_FIELDS = frozenset(PredictionEvent.model_fields)
_LABEL_FIELDS = frozenset(LabelEvent.model_fields)
_NESTING = 100
"""Most brackets in a message read here: pydantic refuses more than 200 levels, orjson 1024."""
_TIMESTAMP = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
    r"(?:\.[0-9]{1,6})?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
).fullmatch
_EXACT_INT_FLOAT = 2.0**63
"""Floats below this magnitude came from a float literal, not an integer one."""

_new = object.__new__
_set = object.__setattr__


class _Bounds(NamedTuple):
    message_bytes: int
    id_length: int
    features: int
    name_length: int
    string_length: int
    segments: int


_bounds_of: dict[int, tuple[InputLimits, _Bounds]] = {}


def _bounds(limits: InputLimits) -> _Bounds:
    """The limits as plain integers (cached: reading a model's fields costs more)."""
    entry = _bounds_of.get(id(limits))
    if entry is None or entry[0] is not limits:
        if len(_bounds_of) > 64:
            _bounds_of.clear()
        bounds = _Bounds(
            limits.max_message_bytes,
            limits.max_id_length,
            limits.max_features,
            limits.max_name_length,
            limits.max_string_length,
            limits.max_segments,
        )
        entry = _bounds_of[id(limits)] = (limits, bounds)
    return entry[1]


def _construct(model: type[EventT], values: dict[str, Any], fields_set: set[str]) -> EventT:
    """An event from checked values, as ``model_construct`` builds it (without its cost)."""
    event = _new(model)
    _set(event, "__dict__", values)
    _set(event, "__pydantic_fields_set__", fields_set)
    _set(event, "__pydantic_extra__", None)
    _set(event, "__pydantic_private__", None)
    return event


def _plain_document(data: bytes, fields: frozenset[str]) -> tuple[dict[str, Any], set[str]] | None:
    """The JSON object of a message and the known fields it holds."""
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if type(document) is not dict:
        return None
    return document, document.keys() & fields


def _plain_start(
    data: bytes, fields: frozenset[str], limits: InputLimits
) -> tuple[dict[str, Any], set[str], _Bounds, bool] | None:
    """What both fast paths check first: size, a plain object, the schema version, the ids.

    Returns the document, the known fields it holds, the bounds and whether
    the whole message is within the string bound (its strings then are too).
    """
    bounds = _bounds(limits)
    size = len(data)
    if size > bounds.message_bytes:
        return None
    parsed = _plain_document(data, fields)
    if parsed is None:
        return None
    document, present = parsed
    get = document.get
    version = get("schema_version", SCHEMA_VERSION)
    if (
        type(version) is not int
        or version != SCHEMA_VERSION
        or not _plain_identifier(get("prediction_id"), bounds)
        or not _plain_identifier(get("model_id"), bounds)
    ):
        return None
    return document, present, bounds, size <= bounds.string_length


def _plain_end(data: bytes, document: dict[str, Any]) -> datetime | None:
    """What both fast paths check last: the timestamp, then the nesting depth."""
    timestamp = _plain_timestamp(document.get("timestamp"))
    if timestamp is None or _nested(data):
        return None
    return timestamp


def _nested(data: bytes) -> bool:
    """Whether the message may be nested deeper than pydantic reads (checked last: a count)."""
    return data.count(b"[") + data.count(b"{") > _NESTING


def _plain_identifier(value: Any, bounds: _Bounds) -> bool:
    return (
        type(value) is str
        and 0 < len(value) <= bounds.id_length
        and not value.isspace()
        and (value.isprintable() or _CONTROL(value) is None)
    )


def _plain_label(value: Any, bounds: _Bounds, short: bool) -> bool:
    kind = type(value)
    if kind is int or kind is bool:
        return True
    if kind is float:
        number: float = value
        return -_EXACT_INT_FLOAT < number < _EXACT_INT_FLOAT
    return kind is str and len(value) > 0 and (short or len(value) <= bounds.string_length)


def _plain_timestamp(value: Any) -> datetime | None:
    if type(value) is not str or _TIMESTAMP(value) is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
        return moment if moment.tzinfo is UTC else moment.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def _plain_features(features: Any, bounds: _Bounds, short: bool) -> bool:
    """Check a features object, turning integers into floats in place."""
    if type(features) is not dict or len(features) > bounds.features:
        return False
    name_length = bounds.name_length
    for name, value in features.items():
        if len(name) > name_length:
            return False
        kind = type(value)
        if kind is float or value is None:
            continue
        if kind is int:
            features[name] = float(value)
        elif kind is str:
            if not short and len(value) > bounds.string_length:
                return False
        elif kind is not bool:
            return False
    return True


def _plain_scores(scores: Any, bounds: _Bounds) -> bool:
    """Check a scores object (or null), turning integer 0 and 1 into floats in place."""
    if scores is None:
        return True
    if type(scores) is not dict or len(scores) > bounds.features:
        return False
    for name, score in scores.items():
        if len(name) > bounds.name_length:
            return False
        kind = type(score)
        if kind is float:
            if not 0.0 <= score <= 1.0:
                return False
        elif kind is int and 0 <= score <= 1:
            scores[name] = float(score)
        else:
            return False
    return True


def _plain_segment(segment: Any, bounds: _Bounds, short: bool) -> bool:
    if segment is None:
        return True
    if type(segment) is not dict or len(segment) > bounds.segments:
        return False
    for name, value in segment.items():
        if (
            len(name) > bounds.name_length
            or type(value) is not str
            or (not short and len(value) > bounds.string_length)
        ):
            return False
    return True


def fast_prediction(data: bytes, limits: InputLimits = DEFAULT_LIMITS) -> PredictionEvent | None:
    """The prediction of a message in the common valid shape, without pydantic's validation.

    Returns
    -------
    PredictionEvent or None
        The event :func:`validate_prediction` would return, or None when the
        message is not in the shape this path vouches for (it may still be
        valid: :func:`decode_prediction` then hands it to pydantic).

    Examples
    --------
    >>> fast_prediction(b'{"prediction_id": "p-1", "model_id": "churn", "model_version": "3",'
    ...                 b' "timestamp": "2026-11-23T10:00:00+01:00", "features": {"tenure": 12},'
    ...                 b' "prediction": 1}').features
    {'tenure': 12.0}
    >>> fast_prediction(b'{"prediction_id": "p-1", "model_id": "churn", "model_version": "3",'
    ...                 b' "timestamp": "2026-11-23 10:00:00+01:00", "features": {},'
    ...                 b' "prediction": 1}') is None  # valid, but read by pydantic
    True
    """
    start = _plain_start(data, _PREDICTION_FIELDS, limits)
    if start is None:
        return None
    document, present, bounds, short = start
    get = document.get
    model_version = get("model_version")
    predicted = get("prediction")
    features = get("features")
    scores = get("scores")
    segment = get("segment")
    latency = get("latency_ms")
    if (
        not _plain_identifier(model_version, bounds)
        or not _plain_label(predicted, bounds, short)
        or not _plain_features(features, bounds, short)
        or not _plain_scores(scores, bounds)
        or not _plain_segment(segment, bounds, short)
    ):
        return None
    if latency is not None:
        if type(latency) is int:
            latency = float(latency)
        elif type(latency) is not float:
            return None
        if not latency >= 0.0:
            return None
    timestamp = _plain_end(data, document)
    if timestamp is None:
        return None
    values = {
        "schema_version": SCHEMA_VERSION,
        "prediction_id": document["prediction_id"],
        "model_id": document["model_id"],
        "model_version": model_version,
        "timestamp": timestamp,
        "features": features,
        "prediction": predicted,
        "scores": scores,
        "segment": segment,
        "latency_ms": latency,
    }
    return _construct(PredictionEvent, values, present)


def fast_label(data: bytes, limits: InputLimits = DEFAULT_LIMITS) -> LabelEvent | None:
    """The label of a message in the common valid shape (see :func:`fast_prediction`)."""
    start = _plain_start(data, _LABEL_FIELDS, limits)
    if start is None:
        return None
    document, present, bounds, short = start
    label = document.get("label")
    if not _plain_label(label, bounds, short):
        return None
    timestamp = _plain_end(data, document)
    if timestamp is None:
        return None
    values = {
        "schema_version": SCHEMA_VERSION,
        "prediction_id": document["prediction_id"],
        "model_id": document["model_id"],
        "label": label,
        "timestamp": timestamp,
    }
    return _construct(LabelEvent, values, present)


def validate_prediction(raw: bytes | str, limits: InputLimits = DEFAULT_LIMITS) -> PredictionEvent:
    """Decode one prediction message with pydantic alone (what :func:`decode_prediction` matches).

    Raises
    ------
    InvalidEvent
        As :func:`decode_prediction`.
    """
    _sized(raw, limits)
    return _validate(PredictionEvent, raw, limits)


def validate_label(raw: bytes | str, limits: InputLimits = DEFAULT_LIMITS) -> LabelEvent:
    """Decode one label message with pydantic alone (see :func:`validate_prediction`)."""
    _sized(raw, limits)
    return _validate(LabelEvent, raw, limits)


def decode_prediction(raw: bytes | str, limits: InputLimits = DEFAULT_LIMITS) -> PredictionEvent:
    """Decode and validate one prediction message.

    A message in the common valid shape is read by :func:`fast_prediction`;
    any other goes through pydantic (:func:`validate_prediction`), which
    accepts the same messages and names the rule a refused one broke.

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
    event = fast_prediction(_sized(raw, limits), limits)
    return _validate(PredictionEvent, raw, limits) if event is None else event


def decode_label(raw: bytes | str, limits: InputLimits = DEFAULT_LIMITS) -> LabelEvent:
    """Decode and validate one label message (see :func:`decode_prediction`)."""
    event = fast_label(_sized(raw, limits), limits)
    return _validate(LabelEvent, raw, limits) if event is None else event
