"""The fast decoding path against pydantic: same messages accepted, same events, same reasons.

``decode_prediction`` / ``decode_label`` read messages in the common valid
shape with msgspec's typed structs and a few checks (``fast_prediction`` / ``fast_label``) and
hand every other message to pydantic. The reference here is the pydantic path
alone (``validate_prediction`` / ``validate_label``): on generated documents,
broken documents and raw bytes, both must accept the same messages and give
equal events (every field, its type and the fields set), or refuse them with
the same reason and key paths.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from schemas import InputLimits, InvalidEvent, LabelEvent, PredictionEvent
from schemas.events import (
    decode_label,
    decode_prediction,
    fast_label,
    fast_prediction,
    validate_label,
    validate_prediction,
)
from streams.synthetic import ScenarioConfig, generate
from tests.unit.test_events import encode, prediction

Decoder = Callable[[bytes | str, InputLimits], PredictionEvent | LabelEvent]
FastDecoder = Callable[[bytes, InputLimits], PredictionEvent | LabelEvent | None]

DIFFERENTIAL = settings(
    max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def snapshot(event: PredictionEvent | LabelEvent) -> tuple[Any, ...]:
    """Everything that tells two events apart: type, fields set, each value's type and repr."""
    values = tuple((name, type(value).__name__, repr(value)) for name, value in vars(event).items())
    assert event.timestamp.tzinfo is UTC
    return type(event), frozenset(event.model_fields_set), values, event.model_dump_json()


def outcome(decode: Decoder, raw: bytes | str, limits: InputLimits) -> tuple[Any, ...]:
    try:
        event = decode(raw, limits)
    except InvalidEvent as exc:
        return ("refused", exc.reason, tuple((error.path, error.message) for error in exc.errors))
    except (OverflowError, UnicodeError) as exc:  # compared, not hidden: both paths must agree
        return ("raised", type(exc).__name__, str(exc))
    return ("accepted", snapshot(event))


def assert_same(kind: str, raw: bytes | str, limits: InputLimits) -> tuple[Any, ...]:
    """Both paths agree on ``raw``; returns the reference outcome."""
    if kind == "prediction":
        decode: Decoder = decode_prediction
        reference: Decoder = validate_prediction
        fast: FastDecoder = fast_prediction
    else:
        decode, reference, fast = decode_label, validate_label, fast_label
    expected = outcome(reference, raw, limits)
    assert outcome(decode, raw, limits) == expected
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if len(data) <= limits.max_message_bytes:
        quick = fast(data, limits)
        if quick is not None:  # the fast path vouched for it: pydantic must accept it too
            assert expected == ("accepted", snapshot(quick))
    return expected


# ------------------------------------------------------------------ documents

MISSING = object()
"""A field left out of the document."""

# Each field is drawn from its usual values (mostly valid, with the edges the
# fast path must get right) or, for a few fields of a document, from wild
# values (other types, broken rules, what only pydantic reads).

texts = st.text(
    st.characters(codec="utf-8")
    | st.sampled_from(["\n", "\t", "\x00", "\x7f", "\u00a0", "\u200b", " ", "é", "😀"]),
    max_size=12,
)
plain_texts = st.text(st.characters(codec="utf-8", exclude_categories=["Cc"]), max_size=10)
long_texts = st.one_of(
    st.integers(0, 40), st.sampled_from([255, 256, 257, 299, 300, 301, 1023, 1024, 1025])
).map(lambda n: "n" * n)
names = st.one_of(plain_texts, st.sampled_from(["tenure", "plan", "0", "1", "n" * 12]))

usual_identifiers = st.one_of(
    st.sampled_from(["p-1", "churn", "3", "a b", " x ", "é", "😀", "n" * 12]),
    plain_texts.filter(str.strip),
)
wild_identifiers = st.one_of(
    st.sampled_from(["", " ", "  \t", "a\nb", "a\x7fb", "a\u00a0b", "\u200b", "\u2003"]),
    texts,
    long_texts,
    st.integers(-3, 3),
    st.none(),
    st.just(["p"]),
)

big_integers = st.one_of(
    st.integers(-(2**70), 2**70),
    st.sampled_from([2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1]),
    st.integers(10**300, 10**310),
    st.just(10**400),
)
usual_numbers = st.one_of(
    st.integers(-5, 5),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, -0.0, 1.0, 0.5, 1e308, 5e-324, 1.0000000000000002, 2.0**63]),
)
numbers = usual_numbers | big_integers | st.floats()
usual_scalars = st.one_of(st.none(), st.booleans(), usual_numbers, plain_texts)
scalars = st.one_of(st.none(), st.booleans(), numbers, texts, long_texts)
values = st.one_of(
    scalars, st.lists(scalars, max_size=2), st.dictionaries(texts, scalars, max_size=2)
)

usual_offsets = st.sampled_from(["Z", "+00:00", "-00:00", "+01:00", "-05:30", "+23:59", "-23:59"])
wild_offsets = st.sampled_from(["z", "+24:00", "+05:60", "+0100", "+01", "", "UTC", " Z"])
usual_fractions = st.one_of(st.just(""), st.integers(1, 6).map(lambda n: "." + "123456"[:n]))
wild_fractions = st.sampled_from([".1234567", ",5", "."])


@st.composite
def rfc3339(
    draw: st.DrawFn, fractions: st.SearchStrategy[str], offsets: st.SearchStrategy[str]
) -> str:
    moment = draw(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)))
    return moment.strftime("%Y-%m-%dT%H:%M:%S").rjust(19, "0") + draw(fractions) + draw(offsets)


usual_timestamps = st.one_of(
    rfc3339(usual_fractions, usual_offsets),
    st.datetimes(
        min_value=datetime(1970, 1, 1),
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30))]),
    ).map(datetime.isoformat),
)
wild_timestamps = st.one_of(
    rfc3339(usual_fractions | wild_fractions, usual_offsets | wild_offsets),
    st.sampled_from(
        [
            "0001-01-01T00:00:00+01:00",
            "9999-12-31T23:00:00-02:00",
            "2026-11-23 10:00:00Z",
            "2026-11-23t10:00:00Z",
            "2026-11-23T10:00Z",
            "2026-11-23T10:00:00.123456789Z",
            "2026-02-30T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-11-23T24:00:00Z",
            "2026-11-23T23:59:60Z",
            "0000-01-01T00:00:00Z",
            "2026-11-23T10:00:00",
            "2026-11-23",
            "20261123T100000Z",
            "1700000000",
            "yesterday",
            "２０２６-11-23T10:00:00Z",
        ]
    ),
    st.integers(0, 2_000_000_000),
    st.floats(0, 2e9),
    st.none(),
)
usual_labels = st.one_of(st.booleans(), usual_numbers, plain_texts.filter(bool))
wild_labels = st.one_of(scalars, st.just([1]), st.just({"a": 1}))
usual_features = st.dictionaries(names, usual_scalars, max_size=8)
usual_scores = st.one_of(
    st.just(MISSING),
    st.none(),
    st.dictionaries(names, st.floats(0, 1), max_size=3),
    st.dictionaries(names, st.sampled_from([0, 1, 0.0, 1.0, -0.0, 0.25]), max_size=3),
)
usual_segments = st.one_of(
    st.just(MISSING), st.none(), st.dictionaries(names, plain_texts, max_size=3)
)


def one_more(
    usual: st.SearchStrategy[Any], keys: st.SearchStrategy[str], wild: st.SearchStrategy[Any]
) -> st.SearchStrategy[dict[str, Any]]:
    """A usual mapping (an empty one instead of null or missing) with one more entry."""
    return st.tuples(usual, keys, wild).map(
        lambda drawn: {**(drawn[0] if isinstance(drawn[0], dict) else {}), drawn[1]: drawn[2]}
    )


wild_features = st.one_of(
    one_more(usual_features, names | texts | long_texts, scalars | long_texts),
    one_more(usual_features, names, values),
    st.just([1, 2]),
    st.none(),
)
wild_scores = st.one_of(
    one_more(usual_scores, names | long_texts, st.sampled_from([2, -1, True, "0.5", None])),
    one_more(usual_scores, names, numbers),
    st.just([0.5]),
)
wild_segments = st.one_of(
    one_more(usual_segments, names | long_texts, texts | long_texts),
    one_more(usual_segments, names, scalars),
    st.just([["region", "eu"]]),
)
usual_latencies = st.one_of(
    st.just(MISSING), st.none(), st.floats(0, 1e6), st.integers(0, 10**6), st.just(-0.0)
)
wild_latencies = st.one_of(numbers, st.booleans(), st.sampled_from(["4.5", "x", -1, -1e-9]))
usual_versions = st.sampled_from([MISSING, 1])
wild_versions = st.sampled_from([1.0, True, 2, "1", None, 0])

PREDICTION_FIELDS: dict[str, tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]] = {
    "schema_version": (usual_versions, wild_versions),
    "prediction_id": (usual_identifiers, wild_identifiers),
    "model_id": (usual_identifiers, wild_identifiers),
    "model_version": (usual_identifiers, wild_identifiers),
    "timestamp": (usual_timestamps, wild_timestamps),
    "features": (usual_features, wild_features),
    "prediction": (usual_labels, wild_labels),
    "scores": (usual_scores, wild_scores),
    "segment": (usual_segments, wild_segments),
    "latency_ms": (usual_latencies, wild_latencies),
}
LABEL_FIELDS = {
    name: PREDICTION_FIELDS[name]
    for name in ("schema_version", "prediction_id", "model_id", "timestamp")
} | {"label": (usual_labels, wild_labels)}

nested = st.integers(1, 300).map(lambda depth: "[" * depth + "]" * depth)
unknowns = st.dictionaries(
    st.sampled_from(["request_path", "extra", "debug", "trace"]), values, max_size=2
)


class _Raw(str):
    """A JSON fragment written as is (deep nesting, special literals)."""


raw_fragments = st.sampled_from(["NaN", "-Infinity", "1e999", "-1e999", "1E2", "-0", "1.0e0"]).map(
    _Raw
) | nested.map(_Raw)


def render(pairs: list[tuple[str, Any]], draw: st.DrawFn) -> bytes | str:
    """JSON text of key/value pairs (duplicates kept), in one of several spellings.

    ``json.dumps`` writes NaN and infinities as ``NaN`` / ``Infinity``, integers
    of any size, and (with ``ensure_ascii``) every non-ASCII character as an
    escape, so the two parsers meet all of those.
    """
    ascii_only = draw(st.booleans())
    spacer = draw(st.sampled_from(["", " ", "\n  "]))
    items = [
        json.dumps(key, ensure_ascii=ascii_only) + ":" + spacer + raw
        for key, raw in (
            (key, value if isinstance(value, _Raw) else json.dumps(value, ensure_ascii=ascii_only))
            for key, value in pairs
        )
    ]
    text = "{" + spacer + ("," + spacer).join(items) + spacer + "}"
    return text if draw(st.integers(0, 9)) == 0 else text.encode("utf-8")


@st.composite
def documents(
    draw: st.DrawFn, fields: dict[str, tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]]
) -> bytes | str:
    """A document whose fields are usual but for one or two wild or missing ones."""
    wild = {draw(st.sampled_from(sorted(fields)))} if draw(st.integers(0, 2)) else set()
    if draw(st.integers(0, 4)) == 0:
        wild.add(draw(st.sampled_from(sorted(fields))))
    missing = {draw(st.sampled_from(sorted(fields)))} if draw(st.integers(0, 7)) == 0 else set()
    pairs: list[tuple[str, Any]] = []
    for name, (usual, other) in fields.items():
        value = draw(other if name in wild else usual)
        if value is not MISSING and name not in missing:
            pairs.append((name, value))
    if draw(st.integers(0, 3)) == 0:
        pairs += list(draw(unknowns).items())
    if draw(st.integers(0, 5)) == 0:
        target = draw(st.sampled_from(["features", "unknown", *fields]))
        fragment = draw(raw_fragments)
        if target == "features":
            keys = draw(st.lists(names, max_size=2))
            body = ",".join(f"{json.dumps(key)}:{fragment}" for key in keys)
            pairs.append(("features", _Raw("{" + body + "}")))
        else:
            pairs.append((target, fragment))
    if draw(st.booleans()):
        pairs = draw(st.permutations(pairs))
    if pairs and draw(st.integers(0, 5)) == 0:  # a duplicate key: the last one counts
        pairs.append(draw(st.sampled_from(pairs)))
    return render(pairs, draw)


def measured(raw: bytes | str) -> dict[str, int]:
    """What each limit bounds, measured on the document with the standard library."""
    data = raw.encode("utf-8") if isinstance(raw, str) else raw
    try:
        document = json.loads(data)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        document = {}

    def mapping(key: str) -> dict[str, Any]:
        value = document.get(key)
        return value if isinstance(value, dict) else {}

    features, scores, segment = mapping("features"), mapping("scores"), mapping("segment")
    candidates = [*features.values(), *segment.values(), document.get("prediction")]
    strings = [value for value in [*candidates, document.get("label")] if isinstance(value, str)]
    ids = [document.get(key) for key in ("prediction_id", "model_id", "model_version")]
    return {
        "max_message_bytes": len(data),
        "max_id_length": max((len(value) for value in ids if isinstance(value, str)), default=1),
        "max_features": max(len(features), len(scores)),
        "max_name_length": max(map(len, [*features, *scores, *segment]), default=1),
        "max_string_length": max(map(len, strings), default=1),
        "max_segments": len(segment),
    }


@st.composite
def limits_near(draw: st.DrawFn, raw: bytes | str) -> InputLimits:
    """The default limits, or limits at the document's sizes with one just above, at or below."""
    if draw(st.integers(0, 2)) == 0:
        return InputLimits()
    sizes = measured(raw)
    tight = draw(st.sampled_from(sorted(sizes)))
    bounds = {
        name: size + draw(st.sampled_from([-1, 0, 1] if name == tight else [0, 3, 1000]))
        for name, size in sizes.items()
    }
    bounds["max_message_bytes"] = max(bounds["max_message_bytes"], 64)
    return InputLimits(**{name: max(bound, 1) for name, bound in bounds.items()})


@DIFFERENTIAL
@given(data=st.data())
def test_predictions_decode_as_pydantic_decodes_them(data: st.DataObject) -> None:
    document = data.draw(documents(PREDICTION_FIELDS), label="document")
    assert_same("prediction", document, data.draw(limits_near(document), label="limits"))


@DIFFERENTIAL
@given(data=st.data())
def test_labels_decode_as_pydantic_decodes_them(data: st.DataObject) -> None:
    document = data.draw(documents(LABEL_FIELDS), label="document")
    assert_same("label", document, data.draw(limits_near(document), label="limits"))


VALID_PREDICTION = encode(prediction())
VALID_LABEL = (
    b'{"prediction_id":"p-1","model_id":"churn","label":1,"timestamp":"2026-11-24T08:30:00Z"}'
)


@st.composite
def damaged(draw: st.DrawFn, message: bytes) -> bytes:
    """A valid message with a slice replaced by arbitrary bytes."""
    start = draw(st.integers(0, len(message)))
    end = draw(st.integers(start, min(len(message), start + 8)))
    return message[:start] + draw(st.binary(max_size=8)) + message[end:]


@DIFFERENTIAL
@given(raw=damaged(VALID_PREDICTION) | st.binary(max_size=64))
def test_damaged_prediction_bytes_are_handled_alike(raw: bytes) -> None:
    assert_same("prediction", raw, InputLimits())


@DIFFERENTIAL
@given(raw=damaged(VALID_LABEL) | st.binary(max_size=64))
def test_damaged_label_bytes_are_handled_alike(raw: bytes) -> None:
    assert_same("label", raw, InputLimits())


# ------------------------------------------------------ the cases of test_events


def with_literal(literal: str) -> bytes:
    return encode(prediction(features={"x": 0})).replace(b'"x": 0', f'"x": {literal}'.encode())


EDGE_CASES: list[tuple[str, bytes | str, InputLimits]] = [
    ("prediction", encode(prediction()), InputLimits()),
    ("prediction", encode(prediction(timestamp="2026-11-23T10:00:00")), InputLimits()),
    ("prediction", encode(prediction(timestamp="yesterday")), InputLimits()),
    *[
        ("prediction", encode(prediction(prediction_id=value)), InputLimits())
        for value in ["", "   ", "a\nb"]
    ],
    ("prediction", encode(prediction(prediction_id="x" * 9)), InputLimits(max_id_length=8)),
    ("prediction", encode(prediction(prediction_id="x" * 8)), InputLimits(max_id_length=8)),
    (
        "prediction",
        encode({k: v for k, v in prediction().items() if k != "model_id"}),
        InputLimits(),
    ),
    (
        "prediction",
        encode(prediction(features={f"f{index}": index for index in range(4)})),
        InputLimits(max_features=3),
    ),
    ("prediction", encode(prediction(features={"n" * 11: 1.0})), InputLimits(max_name_length=10)),
    (
        "prediction",
        encode(prediction(features={"plan": "platinum"})),
        InputLimits(max_string_length=5),
    ),
    *[
        ("prediction", with_literal(literal), InputLimits())
        for literal in ["NaN", "Infinity", "-Infinity", "1e999"]
    ],
    ("prediction", encode(prediction(features={"x": [1, 2]})), InputLimits()),
    ("prediction", encode(prediction(features={"x": {"nested": 1}})), InputLimits()),
    ("prediction", b"{" + b" " * 200, InputLimits(max_message_bytes=100)),
    ("prediction", b"{not json", InputLimits()),
    ("prediction", b'{"prediction_id": "\xff\xfe"}', InputLimits()),
    (
        "prediction",
        encode(prediction()).replace(
            b'"features": {', b'"deep": ' + b"[" * 5000 + b"]" * 5000 + b', "features": {'
        ),
        InputLimits(),
    ),
    *[
        ("prediction", encode(prediction(**{field: value})), InputLimits())
        for field, value in [
            ("scores", {"1": 1.5}),
            ("scores", {"1": "high"}),
            ("segment", {"region": 3}),
            ("latency_ms", -1),
            ("prediction", None),
            ("prediction", [1]),
            ("schema_version", 2),
        ]
    ],
    ("prediction", encode(prediction(request_path="/v1/predict", extra={"a": 1})), InputLimits()),
    (
        "prediction",
        encode(prediction(prediction_id="", timestamp="2026-01-01T00:00:00")),
        InputLimits(),
    ),
    ("prediction", encode(prediction(timestamp="0001-01-01T00:00:00+01:00")), InputLimits()),
    ("prediction", encode(prediction(timestamp="9999-12-31T23:00:00-02:00")), InputLimits()),
    ("prediction", with_literal("1" + "0" * 400), InputLimits()),
    ("prediction", encode(prediction(scores={"1": 10**400})), InputLimits()),
    ("prediction", encode(prediction(prediction=2**64)), InputLimits()),
    ("prediction", encode(prediction(features={"x": 2**64})), InputLimits()),
    ("prediction", encode(prediction(latency_ms="4.5")), InputLimits()),
    ("prediction", encode(prediction(latency_ms=True)), InputLimits()),
    ("prediction", encode(prediction(schema_version=True)), InputLimits()),
    ("prediction", encode(prediction(schema_version=1.0)), InputLimits()),
    ("prediction", encode(prediction(timestamp=1_700_000_000)), InputLimits()),
    (
        "label",
        json.dumps(
            {
                "prediction_id": "p-1",
                "model_id": "churn",
                "label": "yes",
                "timestamp": "2026-11-24T08:30:00-05:00",
            }
        ),
        InputLimits(),
    ),
    *[
        (
            "label",
            json.dumps(
                {
                    "prediction_id": "p-1",
                    "model_id": "churn",
                    "label": "yes",
                    "timestamp": "2026-11-24T08:30:00-05:00",
                    field: value,
                }
            ),
            InputLimits(),
        )
        for field, value in [("label", None), ("label", ""), ("timestamp", "2026-11-24T08:30:00")]
    ],
    (
        "label",
        b'{"prediction_id": "p", "model_id": "m", "label": NaN,'
        b' "timestamp": "2026-01-01T00:00:00Z"}',
        InputLimits(),
    ),
    (
        "label",
        b'{"prediction_id": "p", "model_id": "m", "label": 18446744073709551616,'
        b' "timestamp": "2026-01-01T00:00:00Z"}',
        InputLimits(),
    ),
]


def nested_twice(depth: int) -> bytes:
    """A valid prediction whose ``features`` first holds ``depth`` nested lists (then ``{}``)."""
    return encode(prediction()).replace(
        b'"features": {', b'"features": ' + b"[" * depth + b"]" * depth + b', "features": {'
    )


def with_unknown_depth(depth: int) -> bytes:
    return encode(prediction()).replace(
        b'"features": {', b'"deep": ' + b"[" * depth + b"]" * depth + b', "features": {'
    )


BOUNDARIES: list[tuple[str, bytes | str, InputLimits]] = [
    *[
        ("prediction", encode(prediction(scores={"0": 0.5, "1": value})), InputLimits())
        for value in [0, 1, 2, -1, -0.0, 1.0000000000000002, True]
    ],
    *[
        (
            "prediction",
            encode(prediction(segment={"a": "x", "b": "y"})),
            InputLimits(max_segments=n),
        )
        for n in (1, 2)
    ],
    *[
        (
            "prediction",
            encode(prediction(features={"plan": "n" * length})),
            InputLimits(max_string_length=300),
        )
        for length in (299, 300, 301)
    ],
    *[
        (
            "prediction",
            encode(prediction(segment={"region": "n" * length})),
            InputLimits(max_string_length=300),
        )
        for length in (300, 301)
    ],
    *[
        (
            "prediction",
            encode(prediction(prediction="n" * length)),
            InputLimits(max_string_length=300),
        )
        for length in (0, 300, 301)
    ],
    *[
        (
            "prediction",
            encode(prediction(**{field: {"n" * length: 0.5}})),
            InputLimits(max_name_length=10),
        )
        for field in ("scores", "segment", "features")
        for length in (10, 11)
    ],
    *[
        (
            "prediction",
            encode(prediction(features={"a": 1, "b": 2, "c": 3})),
            InputLimits(max_features=n),
        )
        for n in (2, 3)
    ],
    *[
        (
            "prediction",
            encode(prediction(scores={"a": 0.1, "b": 0.2, "c": 0.7})),
            InputLimits(max_features=n),
        )
        for n in (2, 3)
    ],
    *[
        ("prediction", encode(prediction(model_version="v" * length)), InputLimits(max_id_length=8))
        for length in (8, 9)
    ],
    *[("prediction", nested_twice(depth), InputLimits()) for depth in (150, 199, 200, 201, 250)],
    *[("prediction", with_unknown_depth(depth), InputLimits()) for depth in (60, 199, 200, 201)],
    *[
        ("prediction", encode(prediction(latency_ms=value)), InputLimits())
        for value in [0, -0.0, -1e-300, 1e308, True, False, "4.5", None]
    ],
    *[
        ("prediction", encode(prediction(prediction=value)), InputLimits())
        for value in [2**63 - 1, 2**63, 2**64, -(2**63), -(2**63) - 1, 9.3e18, -9.3e18, 0.5, False]
    ],
    ("prediction", encode(prediction(schema_version=None)), InputLimits()),
    # What the compiled decoder skips unread in an unknown field, pydantic still reads.
    *[
        (
            "prediction",
            encode(prediction()).replace(b'"features": {', unknown + b', "features": {'),
            InputLimits(),
        )
        for unknown in [
            b'"\x80note": 1',
            b'"note": "\xed\xa0\x80"',
            b'"note": "\\ud800"',
            b'"\\uDC00": 1',
            b'"note": "\\ud83d\\ude00"',
            b'"note": 01',
            b'"note": [1,]',
            b'"note": tru',
            b'"note": 1' + b"0" * 4300,
            b'"note": -1' + b"0" * 4300 + b".5",
            b'"note": {"a": 1' + b"0" * 4299 + b"}",
        ]
    ],
    *[
        ("prediction", with_literal(literal), InputLimits())
        for literal in ["1" + "0" * 4300 + "e-4300", "1" + "0" * 4299 + "e-4299"]
    ],
    (
        "prediction",
        encode(prediction(features={"x": "\ud83d\ude00" * 3})),
        InputLimits(max_string_length=3),
    ),
    *[
        ("label", VALID_LABEL.replace(b'"label":1', f'"label":{value}'.encode()), InputLimits())
        for value in [2**64, 2**64 - 1, -(2**63) - 1, -(2**63)]
    ],
    (
        "label",
        b'{"prediction_id": "p", "model_id": "m", "label": "",'
        b' "timestamp": "2026-01-01T00:00:00Z"}',
        InputLimits(),
    ),
]


@pytest.mark.parametrize(("kind", "raw", "limits"), EDGE_CASES + BOUNDARIES)
def test_edge_cases_decode_as_pydantic_decodes_them(
    kind: str, raw: bytes | str, limits: InputLimits
) -> None:
    assert_same(kind, raw, limits)


@pytest.mark.filterwarnings("ignore:Pydantic serializer warnings")
def test_the_differential_test_can_tell_paths_apart() -> None:
    # A feature kept an int (where pydantic gives a float) must show up.
    fast = fast_prediction(encode(prediction()))
    assert fast is not None
    changed = fast.model_copy(update={"features": {**fast.features, "tenure": 12}})
    assert fast == changed  # pydantic's equality does not see it ...
    assert snapshot(fast) != snapshot(changed)  # ... the snapshot does


# ------------------------------------------------------------- coverage of the fast path


def test_the_fast_path_takes_the_synthetic_traffic() -> None:
    scenario = generate(ScenarioConfig(predictions=300, seed=3, malformed_every=0))
    for document in scenario.predictions:
        raw = json.dumps(document).encode()
        event = fast_prediction(raw)
        assert event is not None
        assert snapshot(event) == snapshot(validate_prediction(raw))
    for document in scenario.labels:
        raw = json.dumps(document).encode()
        label = fast_label(raw)
        assert label is not None
        assert snapshot(label) == snapshot(validate_label(raw))


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"schema_version": 1, "latency_ms": 3, "scores": {"0": 0, "1": 1}},
        {"scores": None, "segment": None, "latency_ms": None},
        {"timestamp": "2026-11-23T10:00:00.5-05:30", "prediction": "yes"},
        {"request_path": "/v1/predict", "prediction": 2.5, "features": {}},
    ],
)
def test_the_fast_path_takes_valid_events_in_the_usual_shape(overrides: dict[str, Any]) -> None:
    raw = encode(prediction(**overrides))
    event = fast_prediction(raw)
    assert event is not None
    assert snapshot(event) == snapshot(validate_prediction(raw))


@example(value=1.5)
@given(value=st.floats(0, 1e6))
def test_a_fast_event_holds_floats_where_pydantic_does(value: float) -> None:
    raw = encode(prediction(features={"a": 7, "b": value}, latency_ms=7))
    event = fast_prediction(raw)
    assert event is not None
    assert type(event.features["a"]) is float and event.features["a"] == 7.0
    assert type(event.latency_ms) is float
    assert event.features["b"] == value
