"""Input events: what serving apps and label sources write to Kafka.

Inputs are tolerant where tolerance is safe (unknown fields are ignored, so a
serving app can add fields without breaking the monitor) and strict where a
wrong value would corrupt a statistic: timestamps must carry a timezone,
identifiers are non-empty and bounded, non-finite feature values become
missing values, and every size is bounded by :class:`schemas.limits.InputLimits`
(passed as validation context ``{"limits": ...}``).

:func:`decode_prediction` and :func:`decode_label` read a message in the usual
valid shape with msgspec's typed structs and a few checks (:func:`fast_prediction`,
:func:`fast_label`, several times cheaper) and hand any other message to
pydantic (:func:`validate_prediction`, :func:`validate_label`); both paths
accept the same messages and give the same events.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, NamedTuple, TypeVar

import msgspec
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


# The fast path.  msgspec decodes the message into typed structs whose
# constraints are the limits' (lengths, counts, ranges), in compiled code; a
# few Python checks vouch for the rest, and the event is built without
# pydantic's validation (as ``model_construct`` does).  Whatever the structs
# or the checks do not vouch for goes through pydantic, which either accepts
# it too or names the broken rule, so both paths accept the same messages and
# give the same events (tests/unit/test_decode_fast.py checks this on
# generated messages).  What the path relies on:
#
# * msgspec refuses NaN and Infinity literals and numbers too large for a
#   float, so every float it returns is finite; it reads a float field's
#   integer literals as floats (as pydantic does for features, scores and
#   the latency) and keeps other integers exact.  A label or prediction
#   outside the 64-bit integers, or a float at or beyond 2**63, is left to
#   pydantic.
# * Length bounds count characters, as pydantic's do.
# * Only the canonical RFC 3339 form of a timestamp is taken here, where
#   ``datetime.fromisoformat`` and pydantic read the same instant; pydantic
#   also reads other forms (a space for ``T``, unix seconds, a comma before
#   the fraction, more than six fraction digits, no seconds).  (msgspec's own
#   date-time type rounds more than six fraction digits where pydantic
#   truncates, and telling those apart costs more than this check.)
# * msgspec is strict where pydantic coerces (``"4.5"`` and ``true`` as a
#   latency, ``1.0`` and ``true`` as the schema version): those go to pydantic.
# * pydantic's parser refuses JSON nested more than about 200 levels deep,
#   wherever the nesting is (an unknown field, a value a later duplicate key
#   replaces). A message with more than ``_NESTING`` brackets, counted over
#   the whole text (an upper bound on the depth), is left to pydantic.
# * msgspec does not read the unknown fields it skips: a message that is not
#   UTF-8 throughout, or holds a surrogate escape (``\\ud800``) anywhere, is
#   left to pydantic.
# * pydantic's parser refuses a number with more than 4,300 digits before its
#   fraction anywhere in the message; msgspec skips unknown fields unread and
#   reads ``1{4300 zeros}e-4300`` as 1.0, so a message holding a run of more
#   digits than that (only possible in a message that long) is left to pydantic.
# * Both parsers keep the last value of a duplicate key and ignore unknown
#   fields; a field left out is ``UNSET``, so the set of fields present is
#   known.
# * An event is built as ``model_construct`` builds one (its ``__dict__`` in
#   field order and the set of fields present); the tests compare every
#   field, its type and that set with pydantic's event.

_NESTING = 100
"""Most brackets in a message read here: pydantic refuses more than 200 levels."""
_TIMESTAMP = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
    r"(?:\.[0-9]{1,6})?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
).fullmatch
_EXACT_INT_FLOAT = 2.0**63
"""Float labels of this magnitude or more are left to pydantic, as 65-bit integers are."""
_INT_LOW, _INT_HIGH = -(2**63), 2**64
"""Integers pydantic and msgspec both keep exact (beyond them pydantic decides)."""

_new = object.__new__
_set = object.__setattr__


class _Decoders(NamedTuple):
    prediction: msgspec.json.Decoder[Any]
    label: msgspec.json.Decoder[Any]
    message_bytes: int


def _structs(limits: InputLimits) -> _Decoders:
    """Typed structs of both events, bounded by ``limits``."""
    identifier = Annotated[str, msgspec.Meta(min_length=1, max_length=limits.max_id_length)]
    name = Annotated[str, msgspec.Meta(max_length=limits.max_name_length)]
    text = Annotated[str, msgspec.Meta(max_length=limits.max_string_length)]
    label = (
        bool
        | int
        | float
        | Annotated[str, msgspec.Meta(min_length=1, max_length=limits.max_string_length)]
    )
    features = Annotated[
        dict[name, float | text | bool | None],
        msgspec.Meta(max_length=limits.max_features),
    ]
    scores = Annotated[
        dict[name, Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]],
        msgspec.Meta(max_length=limits.max_features),
    ]
    segment = Annotated[
        dict[name, text],
        msgspec.Meta(max_length=limits.max_segments),
    ]
    latency = Annotated[float, msgspec.Meta(ge=0.0)]
    unset = msgspec.UnsetType
    prediction = msgspec.defstruct(
        "Prediction",
        [
            ("prediction_id", identifier),
            ("model_id", identifier),
            ("model_version", identifier),
            ("timestamp", str),
            ("features", features),
            ("prediction", label),
            ("scores", scores | None | unset, msgspec.UNSET),
            ("segment", segment | None | unset, msgspec.UNSET),
            ("latency_ms", latency | None | unset, msgspec.UNSET),
            ("schema_version", int | unset, msgspec.UNSET),
        ],
        gc=False,
    )
    label_event = msgspec.defstruct(
        "Label",
        [
            ("prediction_id", identifier),
            ("model_id", identifier),
            ("label", label),
            ("timestamp", str),
            ("schema_version", int | unset, msgspec.UNSET),
        ],
        gc=False,
    )
    return _Decoders(
        msgspec.json.Decoder(prediction),
        msgspec.json.Decoder(label_event),
        limits.max_message_bytes,
    )


_decoders_of: dict[int, tuple[InputLimits, _Decoders]] = {}


def _decoders(limits: InputLimits) -> _Decoders:
    """The decoders of ``limits`` (cached: building them costs milliseconds)."""
    entry = _decoders_of.get(id(limits))
    if entry is None or entry[0] is not limits:
        if len(_decoders_of) > 64:
            _decoders_of.clear()
        entry = _decoders_of[id(limits)] = (limits, _structs(limits))
    return entry[1]


def _construct(model: type[EventT], values: dict[str, Any], fields_set: set[str]) -> EventT:
    """An event from checked values, as ``model_construct`` builds it (without its cost)."""
    event = _new(model)
    _set(event, "__dict__", values)
    _set(event, "__pydantic_fields_set__", fields_set)
    _set(event, "__pydantic_extra__", None)
    _set(event, "__pydantic_private__", None)
    return event


_UNSET = msgspec.UNSET


def _struct(data: bytes, decoder: msgspec.json.Decoder[Any], limit: int) -> Any:
    """The message as a struct, or None when msgspec refuses it or it is too big or deep."""
    size = len(data)
    if size > limit or not (data.isascii() or _utf8(data)) or _SURROGATE(data):
        return None
    try:
        struct = decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None
    version = struct.schema_version
    if (
        (version is not _UNSET and version != SCHEMA_VERSION)
        or _nested(data)
        or (size > _LONGEST_NUMBER and _LONG_RUN in data.translate(_DIGITS_AS_ZERO))
    ):
        return None
    return struct


def _utf8(data: bytes) -> bool:
    """Whether the message is UTF-8 throughout (msgspec skips unknown fields unread)."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]").search
"""Finds a surrogate escape, which msgspec does not check in the unknown fields it skips."""


_LONGEST_NUMBER = 4300
"""Most digits pydantic's parser reads in a number's integer part (it refuses longer ones)."""
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_RUN = b"0" * (_LONGEST_NUMBER + 1)
"""A run of digits longer than pydantic reads, once every digit is a 0 (msgspec skips
unknown numbers unread). Translating and searching costs about a millisecond a
megabyte, a regular expression for the run ten times more."""


def _nested(data: bytes) -> bool:
    """Whether the message may be nested deeper than pydantic reads (checked last: a count)."""
    return data.count(b"[") + data.count(b"{") > _NESTING


def _plain_identifier(value: str) -> bool:
    return not value.isspace() and (value.isprintable() or _CONTROL(value) is None)


def _plain_label(value: Any) -> bool:
    kind = type(value)
    if kind is float:
        number: float = value
        return -_EXACT_INT_FLOAT < number < _EXACT_INT_FLOAT
    return kind is not int or _INT_LOW <= value < _INT_HIGH


def _plain_timestamp(value: str) -> datetime | None:
    if _TIMESTAMP(value) is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
        return moment if moment.tzinfo is UTC else moment.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def _subsets(required: set[str], optional: tuple[str, ...]) -> dict[tuple[bool, ...], set[str]]:
    """The fields set of an event, by which optional fields are left out (``UNSET``)."""
    subsets = {}
    for bits in range(2 ** len(optional)):
        unset = tuple(bool(bits >> index & 1) for index in range(len(optional)))
        subsets[unset] = required | {
            name for name, out in zip(optional, unset, strict=True) if not out
        }
    return subsets


_PREDICTION_FIELDS_SET = _subsets(
    {"prediction_id", "model_id", "model_version", "timestamp", "features", "prediction"},
    ("schema_version", "scores", "segment", "latency_ms"),
)
_LABEL_FIELDS_SET = _subsets(
    {"prediction_id", "model_id", "label", "timestamp"}, ("schema_version",)
)


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
    ...                 b' "timestamp": "2026-11-23T10:00:00,5+01:00", "features": {},'
    ...                 b' "prediction": 1}') is None  # valid, but read by pydantic
    True
    """
    decoders = _decoders(limits)
    struct = _struct(data, decoders.prediction, decoders.message_bytes)
    if struct is None:
        return None
    predicted = struct.prediction
    if not (
        _plain_identifier(struct.prediction_id)
        and _plain_identifier(struct.model_id)
        and _plain_identifier(struct.model_version)
        and _plain_label(predicted)
    ):
        return None
    timestamp = _plain_timestamp(struct.timestamp)
    if timestamp is None:
        return None
    version, scores, segment, latency = (
        struct.schema_version,
        struct.scores,
        struct.segment,
        struct.latency_ms,
    )
    values = {
        "schema_version": SCHEMA_VERSION,
        "prediction_id": struct.prediction_id,
        "model_id": struct.model_id,
        "model_version": struct.model_version,
        "timestamp": timestamp,
        "features": struct.features,
        "prediction": predicted,
        "scores": None if scores is _UNSET else scores,
        "segment": None if segment is _UNSET else segment,
        "latency_ms": None if latency is _UNSET else latency,
    }
    unset = (version is _UNSET, scores is _UNSET, segment is _UNSET, latency is _UNSET)
    return _construct(PredictionEvent, values, _PREDICTION_FIELDS_SET[unset].copy())


def fast_label(data: bytes, limits: InputLimits = DEFAULT_LIMITS) -> LabelEvent | None:
    """The label of a message in the common valid shape (see :func:`fast_prediction`)."""
    decoders = _decoders(limits)
    struct = _struct(data, decoders.label, decoders.message_bytes)
    if struct is None:
        return None
    label = struct.label
    if not (
        _plain_identifier(struct.prediction_id)
        and _plain_identifier(struct.model_id)
        and _plain_label(label)
    ):
        return None
    timestamp = _plain_timestamp(struct.timestamp)
    if timestamp is None:
        return None
    values = {
        "schema_version": SCHEMA_VERSION,
        "prediction_id": struct.prediction_id,
        "model_id": struct.model_id,
        "label": label,
        "timestamp": timestamp,
    }
    fields_set = _LABEL_FIELDS_SET[(struct.schema_version is _UNSET,)].copy()
    return _construct(LabelEvent, values, fields_set)


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
