"""Input rules of prediction and label events, one test per rule."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import InputLimits, InvalidEvent, LabelEvent, PredictionEvent
from schemas.events import decode_label, decode_prediction


def prediction(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "prediction_id": "p-1",
        "model_id": "churn",
        "model_version": "3",
        "timestamp": "2026-11-23T10:00:00+02:00",
        "features": {"tenure": 12, "plan": "gold", "active": True, "income": None},
        "prediction": 1,
        "scores": {"0": 0.25, "1": 0.75},
        "segment": {"region": "eu"},
        "latency_ms": 4.5,
    }
    event.update(overrides)
    return event


def encode(event: dict[str, Any]) -> bytes:
    return json.dumps(event).encode()


def rejection(raw: bytes | str, limits: InputLimits | None = None) -> str:
    with pytest.raises(InvalidEvent) as caught:
        decode_prediction(raw, limits or InputLimits())
    return str(caught.value)


def test_valid_prediction_is_normalised() -> None:
    event = decode_prediction(encode(prediction()))
    assert event.timestamp == datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
    assert event.timestamp.utcoffset() == timedelta(0)
    assert event.features == {"tenure": 12.0, "plan": "gold", "active": True, "income": None}
    assert isinstance(event.features["tenure"], float)
    assert event.features["active"] is True
    assert event.scores == {"0": 0.25, "1": 0.75}
    assert event.schema_version == 1


def test_timestamp_without_timezone_is_rejected() -> None:
    message = rejection(encode(prediction(timestamp="2026-11-23T10:00:00")))
    assert message.startswith("timestamp:")
    assert "timezone" in message


def test_timestamp_that_is_not_a_date_is_rejected() -> None:
    assert rejection(encode(prediction(timestamp="yesterday"))).startswith("timestamp:")


@pytest.mark.parametrize("value", ["", "   ", "a\nb"])
def test_prediction_id_must_be_a_printable_non_empty_string(value: str) -> None:
    assert rejection(encode(prediction(prediction_id=value))).startswith("prediction_id:")


def test_prediction_id_is_bounded() -> None:
    limits = InputLimits(max_id_length=8)
    message = rejection(encode(prediction(prediction_id="x" * 9)), limits)
    assert message.startswith("prediction_id:")
    assert "max_id_length" in message
    assert decode_prediction(encode(prediction(prediction_id="x" * 8)), limits)


def test_model_id_is_required() -> None:
    event = prediction()
    del event["model_id"]
    assert rejection(encode(event)) == "model_id: is required"


def test_feature_count_is_bounded() -> None:
    limits = InputLimits(max_features=3)
    features = {f"f{index}": index for index in range(4)}
    message = rejection(encode(prediction(features=features)), limits)
    assert message.startswith("features:")
    assert "4 features" in message
    assert "max_features" in message


def test_feature_name_length_is_bounded() -> None:
    limits = InputLimits(max_name_length=10)
    message = rejection(encode(prediction(features={"n" * 11: 1.0})), limits)
    assert message.startswith("features:")
    assert "max_name_length" in message


def test_feature_string_value_is_bounded() -> None:
    limits = InputLimits(max_string_length=5)
    message = rejection(encode(prediction(features={"plan": "platinum"})), limits)
    assert "feature 'plan'" in message
    assert "max_string_length" in message


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_feature_values_become_missing(literal: str) -> None:
    raw = encode(prediction(features={"x": 0})).replace(b'"x": 0', f'"x": {literal}'.encode())
    assert decode_prediction(raw).features == {"x": None}


@pytest.mark.parametrize("value", [[1, 2], {"nested": 1}])
def test_feature_values_must_be_scalars(value: Any) -> None:
    message = rejection(encode(prediction(features={"x": value})))
    assert message.startswith("features:")
    assert "feature 'x' must be a number, string, boolean or null" in message


def test_oversize_message_is_rejected_before_parsing() -> None:
    limits = InputLimits(max_message_bytes=100)
    raw = b"{" + b" " * 200
    message = rejection(raw, limits)
    assert "201 bytes" in message
    assert "max_message_bytes" in message


def test_invalid_json_and_invalid_utf8_are_rejected() -> None:
    assert "JSON" in rejection(b"{not json")
    assert rejection(b'{"prediction_id": "\xff\xfe"}')


def test_deeply_nested_json_is_rejected_without_crashing() -> None:
    raw = encode(prediction()).replace(
        b'"features": {', b'"deep": ' + b"[" * 5000 + b"]" * 5000 + b', "features": {'
    )
    assert rejection(raw)


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("scores", {"1": 1.5}, "probability in [0, 1]"),
        ("scores", {"1": "high"}, "must be a number"),
        ("segment", {"region": 3}, "must be a string"),
        ("latency_ms", -1, "greater than or equal to 0"),
        ("prediction", None, "must not be null"),
        ("prediction", [1], "prediction must be a number"),
        ("schema_version", 2, "must be one of 1"),
    ],
)
def test_field_rules_name_the_field(field: str, value: Any, expected: str) -> None:
    message = rejection(encode(prediction(**{field: value})))
    assert message.startswith(f"{field}:")
    assert expected in message


def test_unknown_fields_on_inputs_are_ignored() -> None:
    event = decode_prediction(encode(prediction(request_path="/v1/predict", extra={"a": 1})))
    assert "request_path" not in event.model_dump()


def test_several_problems_are_all_reported() -> None:
    with pytest.raises(InvalidEvent) as caught:
        decode_prediction(encode(prediction(prediction_id="", timestamp="2026-01-01T00:00:00")))
    assert [error.path for error in caught.value.errors] == ["prediction_id", "timestamp"]


def test_label_event_rules() -> None:
    label = {
        "prediction_id": "p-1",
        "model_id": "churn",
        "label": "yes",
        "timestamp": "2026-11-24T08:30:00-05:00",
    }
    event = decode_label(json.dumps(label))
    assert event.timestamp == datetime(2026, 11, 24, 13, 30, tzinfo=UTC)
    for field, value, expected in [
        ("label", None, "label: label must not be null"),
        ("label", "", "label: label must not be an empty string"),
        ("timestamp", "2026-11-24T08:30:00", "timestamp: Input should have timezone info"),
    ]:
        with pytest.raises(InvalidEvent) as caught:
            decode_label(json.dumps({**label, field: value}))
        assert str(caught.value).startswith(expected)


def test_non_finite_label_is_rejected() -> None:
    raw = (
        b'{"prediction_id": "p", "model_id": "m", "label": NaN,'
        b' "timestamp": "2026-01-01T00:00:00Z"}'
    )
    with pytest.raises(InvalidEvent, match="label: label must be a finite number"):
        decode_label(raw)


names = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=20
)
feature_values = st.one_of(
    st.none(),
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
)
timestamps = st.datetimes(
    min_value=datetime(1990, 1, 1),
    max_value=datetime(2100, 1, 1),
    timezones=st.sampled_from(
        [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]
    ),
)


@given(
    prediction_id=names.filter(str.strip),
    timestamp=timestamps,
    features=st.dictionaries(names, feature_values, max_size=20),
    predicted=st.one_of(st.booleans(), st.integers(-5, 5), names),
    scores=st.none() | st.dictionaries(names, st.floats(0, 1), max_size=5),
)
def test_prediction_round_trips_through_json(
    prediction_id: str,
    timestamp: datetime,
    features: dict[str, Any],
    predicted: Any,
    scores: dict[str, float] | None,
) -> None:
    event = PredictionEvent(
        prediction_id=prediction_id,
        model_id="m",
        model_version="1",
        timestamp=timestamp,
        features=features,
        prediction=predicted,
        scores=scores,
    )
    again = decode_prediction(event.model_dump_json())
    assert again == event
    assert again.timestamp == timestamp
    for name, value in features.items():
        if isinstance(value, float):
            assert again.features[name] == value
            assert math.isfinite(value)


@given(
    label=st.one_of(
        st.booleans(),
        st.integers(-(10**6), 10**6),
        st.floats(allow_nan=False, allow_infinity=False),
    ),
    timestamp=timestamps,
)
def test_label_round_trips_through_json(label: Any, timestamp: datetime) -> None:
    event = LabelEvent(prediction_id="p", model_id="m", label=label, timestamp=timestamp)
    again = decode_label(event.model_dump_json())
    assert again == event
    assert type(again.label) is type(label)


def test_a_timestamp_with_no_utc_equivalent_is_refused_not_raised() -> None:
    for stamp in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:00:00-02:00"):
        message = rejection(encode(prediction(timestamp=stamp)))
        assert message == f"timestamp: {stamp} is out of range once converted to UTC"


def test_integers_too_large_for_a_float_are_missing_features_and_refused_scores() -> None:
    huge = "1" + "0" * 400
    raw = encode(prediction(features={"x": 0})).replace(b'"x": 0', f'"x": {huge}'.encode())
    assert decode_prediction(raw).features == {"x": None}
    raw = encode(prediction(scores={"1": 0})).replace(b'"1": 0', f'"1": {huge}'.encode())
    assert rejection(raw) == "scores: score of class '1' must be a probability in [0, 1]"


@pytest.mark.parametrize("value", ["\n" * 9, " " * 9, "x" * 9])
def test_an_identifier_over_the_limit_is_refused_for_its_length_first(value: str) -> None:
    # The length is checked before anything that reads every character.
    message = rejection(encode(prediction(model_id=value)), InputLimits(max_id_length=8))
    assert message == "model_id: identifier is 9 characters long; the limit is 8 (max_id_length)"
