"""Output events: strict, round-trippable, and JSON Schema files kept current."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas import AlertEvent, DeadLetter, RetrainReason, RetrainRequest, segment_key
from schemas.jsonschema import json_schemas
from schemas.outputs import DEAD_LETTER_ORIGINAL_LIMIT
from streams.points import clean_tag_value

DOCS_SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "schemas"

moments = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC)
)
text = st.text(
    st.characters(codec="utf-8", categories=("L", "N", "P", "S", "Zs")), min_size=1, max_size=40
)
finite = st.floats(allow_nan=False, allow_infinity=False)


def alert(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "alert_id": "a-1",
        "rule": "feature-drift",
        "state": "firing",
        "severity": "warning",
        "model_id": "churn",
        "model_version": "3",
        "segment": "region=eu",
        "metric": "psi",
        "feature": "tenure",
        "value": 0.31,
        "threshold": 0.2,
        "window_start": "2026-11-23T10:00:00Z",
        "window_end": "2026-11-23T11:00:00Z",
        "fired_at": "2026-11-23T11:05:00Z",
        "summary": "tenure drifted",
        "evidence": {"n": 5},
    }
    event.update(overrides)
    return event


def test_outputs_forbid_unknown_fields() -> None:
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        AlertEvent.model_validate(alert(colour="red"))


def test_alert_window_must_be_ordered() -> None:
    with pytest.raises(ValidationError, match="must be after window_start"):
        AlertEvent.model_validate(alert(window_end="2026-11-23T10:00:00Z"))


def test_alert_state_and_severity_are_closed_sets() -> None:
    with pytest.raises(ValidationError):
        AlertEvent.model_validate(alert(state="pending"))
    with pytest.raises(ValidationError):
        AlertEvent.model_validate(alert(severity="page-everyone"))


@given(
    start=moments,
    length=st.integers(1, 10**6),
    value=finite,
    threshold=finite,
    feature=st.none() | text,
    evidence=st.dictionaries(text, st.none() | st.booleans() | finite | text, max_size=5),
)
def test_alert_round_trips(
    start: datetime,
    length: int,
    value: float,
    threshold: float,
    feature: str | None,
    evidence: dict[str, Any],
) -> None:
    event = AlertEvent.model_validate(
        alert(
            window_start=start,
            window_end=start + timedelta(seconds=length),
            value=value,
            threshold=threshold,
            feature=feature,
            evidence=evidence,
        )
    )
    assert AlertEvent.model_validate_json(event.model_dump_json()) == event


@given(start=moments, reasons=st.lists(st.tuples(text, finite), min_size=1, max_size=4))
def test_retrain_request_round_trips(start: datetime, reasons: list[tuple[str, float]]) -> None:
    request = RetrainRequest(
        request_id="churn:3:2026-11-23T10",
        model_id="churn",
        model_version="3",
        requested_at=start,
        window_start=start,
        window_end=start + timedelta(hours=1),
        reasons=[
            RetrainReason(
                alert_id=a, rule="accuracy-drop", metric="accuracy", value=v, threshold=0.8
            )
            for a, v in reasons
        ],
    )
    assert RetrainRequest.model_validate_json(request.model_dump_json()) == request


def test_retrain_request_needs_a_reason() -> None:
    with pytest.raises(ValidationError, match="reasons"):
        RetrainRequest(
            request_id="r",
            model_id="m",
            model_version="1",
            requested_at=datetime(2026, 1, 1, tzinfo=UTC),
            reasons=[],
            window_start=datetime(2026, 1, 1, tzinfo=UTC),
            window_end=datetime(2026, 1, 1, 1, tzinfo=UTC),
        )


@given(
    value=st.binary(max_size=300),
    key=st.none() | st.binary(max_size=30),
    offset=st.integers(0, 2**62),
)
def test_dead_letter_keeps_the_original_bytes(value: bytes, key: bytes | None, offset: int) -> None:
    letter = DeadLetter.from_failure(
        value,
        key=key,
        topic="driftline.predictions",
        partition=1,
        offset=offset,
        error_class="InvalidEvent",
        error_message="bad",
    )
    again = DeadLetter.model_validate_json(letter.model_dump_json())
    assert again.original_bytes() == value
    assert again.source_offset == offset
    assert json.loads(letter.model_dump_json())["source_topic"] == "driftline.predictions"


@given(
    first=st.dictionaries(st.sampled_from(["region", "tier"]), st.text(max_size=6)),
    second=st.dictionaries(st.sampled_from(["region", "tier"]), st.text(max_size=6)),
)
def test_different_segments_never_share_a_key_or_a_series(
    first: dict[str, str], second: dict[str, str]
) -> None:
    names = ("region", "tier")
    one, two = segment_key(first, names), segment_key(second, names)
    assert (one == two) == (first == second)
    # What goes into the segment tag is written as it is.
    assert clean_tag_value(one) == one


@pytest.mark.parametrize(
    ("segment", "key"),
    [
        ({"region": "eu,tier=gold", "tier": "x"}, "region=eu%2Ctier%3Dgold,tier=x"),
        ({"region": "A\\B"}, "region=A%5CB,tier=<none>"),
        ({"region": "New\tYork"}, "region=New%09York,tier=<none>"),
        ({"region": "<none>"}, "region=%3Cnone>,tier=<none>"),
        ({"region": "50%"}, "region=50%25,tier=<none>"),
        ({"region": "New York", "tier": "gold"}, "region=New York,tier=gold"),
    ],
)
def test_segment_values_are_percent_encoded_where_they_would_be_ambiguous(
    segment: dict[str, str], key: str
) -> None:
    assert segment_key(segment, ("tier", "region")) == key


def test_segment_key_uses_only_configured_names() -> None:
    assert (
        segment_key({"region": "eu", "tier": "gold", "user": "u1"}, ("tier", "region"))
        == "region=eu,tier=gold"
    )
    assert segment_key({"tier": "gold"}, ("region",)) == "region=<none>"
    assert segment_key({"region": "eu"}) == "all"


def test_json_schema_files_are_current() -> None:
    generated = json_schemas()
    on_disk = {path.name: path.read_text(encoding="utf-8") for path in DOCS_SCHEMAS.glob("*.json")}
    stale = sorted(name for name in generated if on_disk.get(name) != generated[name])
    extra = sorted(set(on_disk) - set(generated))
    assert not stale and not extra, (
        f"docs/schemas is stale (regenerate with `make schemas`): changed {stale}, extra {extra}"
    )


def test_json_schemas_describe_the_contract() -> None:
    prediction = json.loads(json_schemas()["prediction-event.schema.json"])
    assert set(prediction["required"]) == {
        "prediction_id",
        "model_id",
        "model_version",
        "timestamp",
        "features",
        "prediction",
    }
    alert_schema = json.loads(json_schemas()["alert-event.schema.json"])
    assert alert_schema["additionalProperties"] is False


@pytest.mark.parametrize("size", [DEAD_LETTER_ORIGINAL_LIMIT + 1, 750_000, 1_048_576, 16_000_000])
def test_a_dead_letter_of_a_large_message_fits_a_produce_request(size: int) -> None:
    value = bytes(range(256)) * (size // 256) + b"z" * (size % 256)
    letter = DeadLetter.from_failure(
        value,
        key=b"k",
        topic="driftline.predictions",
        partition=0,
        offset=7,
        error_class="InvalidEvent",
        error_message="message too large",
    )
    encoded = letter.model_dump_json().encode()
    assert len(encoded) < 100_000  # far under the producer's 1 MiB request limit
    again = DeadLetter.model_validate_json(encoded)
    assert again.original_bytes() == value[:65_536]
    assert again.original_truncated is True
    assert again.original_size == size
    assert again.original_sha256 == hashlib.sha256(value).hexdigest()
    assert again.is_of(value)
    assert not again.is_of(value[:-1] + b"?")


def test_a_dead_letter_of_a_message_at_the_cap_keeps_all_of_it() -> None:
    value = b"a" * 65_536
    letter = DeadLetter.from_failure(
        value, topic="t", partition=0, offset=0, error_class="InvalidEvent", error_message="x"
    )
    assert letter.original_bytes() == value
    assert letter.original_truncated is False
    assert letter.is_of(value)


def test_a_dead_letter_written_before_the_cap_still_reads() -> None:
    older = {
        "schema_version": 1,
        "original_b64": base64.b64encode(b"{broken").decode(),
        "source_topic": "driftline.predictions",
        "source_partition": 0,
        "source_offset": 10,
        "error_class": "InvalidEvent",
        "error_message": "Invalid JSON",
        "received_at": "2026-01-01T00:00:00Z",
    }
    letter = DeadLetter.model_validate_json(json.dumps(older))
    assert letter.original_bytes() == b"{broken"
    assert letter.original_size == 7
    assert letter.original_sha256 == hashlib.sha256(b"{broken").hexdigest()
    assert letter.original_truncated is False
