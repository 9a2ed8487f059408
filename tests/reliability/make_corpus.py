"""The hostile-input corpus: messages a worker must refuse or count, and never crash on.

``python -m tests.reliability.make_corpus`` writes ``tests/reliability/corpus/*.jsonl``
from the generators below (seeded, so the output is the same on every run);
``tests/reliability/test_hostile_input.py`` checks that the committed files
are what this script writes, and feeds every entry to a partition processor
and to a real ``driftline worker``.

Each line of a corpus file is one Kafka message and what must become of it:

``name``
    Unique, ``category/what``.
``topic``
    ``predictions`` or ``labels``.
``key`` / ``key_b64``
    The message key as text, or base64 when it is not UTF-8; absent for no key.
``value`` / ``value_b64`` / ``value_parts``
    The message value as text, as base64 when it is not UTF-8, or as a recipe
    for a large value: a list of parts, each ``{"text": s, "times": n}`` (``s``
    repeated ``n`` times) or ``{"members": n, "value": v}`` (``n`` JSON object
    members ``"<name>": v`` with distinct short names, comma-separated).
    ``null`` is a tombstone (a message without a value).
``expect``
    ``dead``: the message goes to the dead-letter topic; ``late``: a
    prediction for a window closed long ago, counted as late; ``orphan``: a
    label whose prediction never comes, held and counted as an orphan.
``error_class``, ``reason``
    For ``dead``: the dead letter's error class (``InvalidEvent``,
    ``Rejected`` or ``KeyMismatch``) and the substrings its error message
    must contain: the field and the rule broken. They are written here from
    the input rules of ``docs/events.md``, not copied from what the worker
    says.
"""

from __future__ import annotations

import base64
import json
import math
import random
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CORPUS_DIR = Path(__file__).resolve().parent / "corpus"
MODEL_ID = "churn"
TIMESTAMP = "2026-11-01T08:00:00Z"

NAME_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
NAN = math.nan
INF = math.inf


@dataclass(frozen=True)
class Entry:
    """One hostile message and what must become of it."""

    name: str
    topic: str
    key: bytes | None
    value: bytes | None
    expect: str
    error_class: str = ""
    reason: tuple[str, ...] = ()
    parts: tuple[tuple[Any, ...], ...] | None = None
    """The recipe ``value`` was built from, kept so large values are stored small."""

    def to_json(self) -> dict[str, Any]:
        """The corpus line of this entry."""
        line: dict[str, Any] = {"name": self.name, "topic": self.topic}
        if self.key is not None:
            line.update(_text_or_b64("key", self.key))
        if self.parts is not None:
            line["value_parts"] = [_part_json(part) for part in self.parts]
        elif self.value is None:
            line["value"] = None
        else:
            line.update(_text_or_b64("value", self.value))
        line["expect"] = self.expect
        if self.expect == "dead":
            line["error_class"] = self.error_class
            line["reason"] = list(self.reason)
        return line

    @classmethod
    def from_json(cls, line: dict[str, Any]) -> Entry:
        """Inverse of :meth:`to_json`."""
        key = _bytes_of(line, "key")
        parts: tuple[tuple[Any, ...], ...] | None = None
        if "value_parts" in line:
            parts = tuple(_part_of(part) for part in line["value_parts"])
            value: bytes | None = build_parts(parts)
        else:
            value = _bytes_of(line, "value")
        return cls(
            name=line["name"],
            topic=line["topic"],
            key=key,
            value=value,
            expect=line["expect"],
            error_class=line.get("error_class", ""),
            reason=tuple(line.get("reason", ())),
            parts=parts,
        )


def _text_or_b64(field: str, data: bytes) -> dict[str, str]:
    try:
        return {field: data.decode("utf-8")}
    except UnicodeDecodeError:
        return {f"{field}_b64": base64.b64encode(data).decode("ascii")}


def _bytes_of(line: dict[str, Any], field: str) -> bytes | None:
    if f"{field}_b64" in line:
        return base64.b64decode(line[f"{field}_b64"])
    text = line.get(field)
    return None if text is None else str(text).encode("utf-8")


def _part_json(part: tuple[Any, ...]) -> dict[str, Any]:
    if part[0] == "text":
        return {"text": part[1], "times": part[2]}
    return {"members": part[1], "value": part[2]}


def _part_of(data: dict[str, Any]) -> tuple[Any, ...]:
    if "text" in data:
        return ("text", data["text"], int(data["times"]))
    return ("members", int(data["members"]), data["value"])


def member_name(index: int) -> str:
    """A short distinct name for the index-th generated object member."""
    digits = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, len(NAME_ALPHABET))
        digits = NAME_ALPHABET[rest] + digits
    return digits


def build_parts(parts: tuple[tuple[Any, ...], ...]) -> bytes:
    """The bytes a ``value_parts`` recipe stands for."""
    chunks: list[bytes] = []
    for part in parts:
        if part[0] == "text":
            chunks.append(part[1].encode("utf-8") * part[2])
        else:
            _, count, value = part
            chunks.append(b",".join(f'"{member_name(i)}":{value}'.encode() for i in range(count)))
    return b"".join(chunks)


# ------------------------------------------------------------------ templates


def prediction_doc(prediction_id: str, /, **changes: Any) -> dict[str, Any]:
    """A valid prediction of the monitored model, with fields replaced or removed."""
    document: dict[str, Any] = {
        "prediction_id": prediction_id,
        "model_id": MODEL_ID,
        "model_version": "1",
        "timestamp": TIMESTAMP,
        "features": {
            "tenure_months": 12.5,
            "monthly_charges": 70.2,
            "support_calls": 1,
            "days_since_login": 3.1,
            "age": 41.0,
            "plan": "gold",
            "device": "ios",
            "sessions_30d": 12,
            "discount_pct": 10.0,
            "country": "de",
        },
        "prediction": 1,
        "scores": {"0": 0.3, "1": 0.7},
        "segment": {"region": "eu"},
        "latency_ms": 3.5,
    }
    for name, value in changes.items():
        if value is _REMOVE:
            del document[name]
        else:
            document[name] = value
    return document


def label_doc(prediction_id: str, /, **changes: Any) -> dict[str, Any]:
    """A valid label of the monitored model, with fields replaced or removed."""
    document: dict[str, Any] = {
        "prediction_id": prediction_id,
        "model_id": MODEL_ID,
        "label": 1,
        "timestamp": TIMESTAMP,
    }
    for name, value in changes.items():
        if value is _REMOVE:
            del document[name]
        else:
            document[name] = value
    return document


_REMOVE = object()


def encode(document: Any) -> bytes:
    """Compact JSON, NaN and infinities written as JavaScript literals."""
    return json.dumps(document, ensure_ascii=False, allow_nan=True, separators=(",", ":")).encode(
        "utf-8"
    )


def is_json(data: bytes) -> bool:
    """Whether a strict reader (UTF-8, RFC 8259, NaN literals allowed) takes ``data``."""
    try:
        json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return False
    return True


class _Corpus:
    """Collects entries with unique names and fresh prediction ids."""

    def __init__(self) -> None:
        self.entries: list[Entry] = []
        self.names: set[str] = set()
        self.counter = 0

    def fresh_id(self) -> str:
        self.counter += 1
        return f"hostile-{self.counter:05d}"

    def key_for(self, value: bytes | None) -> bytes:
        """The value's ``prediction_id`` as key when it has a plain one, else a fresh id."""
        try:
            document = json.loads((value or b"").decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            document = None
        if isinstance(document, dict) and isinstance(document.get("prediction_id"), str):
            return str(document["prediction_id"]).encode("utf-8", "surrogatepass")
        return self.fresh_id().encode()

    def add(
        self,
        name: str,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None,
        expect: str = "dead",
        error_class: str = "InvalidEvent",
        reason: tuple[str, ...] = (),
        parts: tuple[tuple[Any, ...], ...] | None = None,
    ) -> None:
        if name in self.names:
            raise ValueError(f"duplicate corpus entry name {name!r}")
        self.names.add(name)
        self.entries.append(
            Entry(
                name,
                topic,
                key,
                value,
                expect,
                error_class if expect == "dead" else "",
                reason if expect == "dead" else (),
                parts,
            )
        )

    def dead(
        self,
        name: str,
        topic: str,
        value: bytes | None,
        reason: tuple[str, ...],
        *,
        key: bytes | None = None,
        error_class: str = "InvalidEvent",
        parts: tuple[tuple[Any, ...], ...] | None = None,
    ) -> None:
        self.add(
            name,
            topic,
            value,
            key=key if key is not None else self.key_for(value),
            error_class=error_class,
            reason=reason,
            parts=parts,
        )

    def dead_parts(
        self, name: str, topic: str, parts: tuple[tuple[Any, ...], ...], reason: tuple[str, ...]
    ) -> None:
        """A large refused message, stored as its recipe (and keyed by a fresh id)."""
        key = self.fresh_id().encode()
        self.dead(name, topic, build_parts(parts), reason, key=key, parts=parts)


# ------------------------------------------------------------------ categories

BAD_UTF8: dict[str, bytes] = {
    "ff": b"\xff",
    "fe": b"\xfe",
    "lone-continuation": b"\x80",
    "overlong-nul": b"\xc0\x80",
    "overlong-slash": b"\xc1\xbf",
    "overlong-3": b"\xe0\x80\x80",
    "cesu-surrogate-high": b"\xed\xa0\x80",
    "cesu-surrogate-low": b"\xed\xbf\xbf",
    "above-u10ffff": b"\xf4\x90\x80\x80",
    "five-byte": b"\xf8\x88\x80\x80\x80",
    "truncated-2-of-3": b"\xe2\x82",
    "truncated-3-of-4": b"\xf0\x9f\x98",
}
BAD_ESCAPES: dict[str, str] = {
    "lone-high": "\\ud800",
    "lone-low": "\\udfff",
    "high-then-letter": "\\ud800x",
    "high-then-non-low": "\\ud83d\\u0041",
    "reversed-pair": "\\udc00\\ud800",
}
MARK = "MARK3R"
PREDICTION_SLOTS: dict[str, dict[str, Any]] = {
    "prediction_id": {"prediction_id": MARK},
    "model_id": {"model_id": MARK},
    "model_version": {"model_version": MARK},
    "timestamp": {"timestamp": MARK},
    "feature-name": {"features": {MARK: 1.0}},
    "feature-value": {"features": {"plan": MARK}},
    "segment-value": {"segment": {"region": MARK}},
    "prediction": {"prediction": MARK},
}
LABEL_SLOTS: dict[str, dict[str, Any]] = {
    "prediction_id": {"prediction_id": MARK},
    "model_id": {"model_id": MARK},
    "timestamp": {"timestamp": MARK},
    "label": {"label": MARK},
}


def _slot_doc(corpus: _Corpus, topic: str, changes: dict[str, Any]) -> bytes:
    base = prediction_doc if topic == "predictions" else label_doc
    return encode(base(corpus.fresh_id(), **changes))


def encoding(corpus: _Corpus) -> None:
    """Invalid UTF-8, lone surrogate escapes, other encodings, control characters."""
    for topic, slots in (("predictions", PREDICTION_SLOTS), ("labels", LABEL_SLOTS)):
        for slot, changes in slots.items():
            template = _slot_doc(corpus, topic, changes)
            for bad_name, bad in BAD_UTF8.items():
                value = template.replace(MARK.encode(), b"ab" + bad + b"cd")
                corpus.dead(f"encoding/{topic}-{slot}-{bad_name}", topic, value, ("Invalid JSON",))
            for escape_name, escape in BAD_ESCAPES.items():
                value = template.replace(MARK.encode(), f"ab{escape}cd".encode())
                corpus.dead(
                    f"encoding/{topic}-{slot}-escape-{escape_name}", topic, value, ("Invalid JSON",)
                )
            for control in ("\x00", "\x01", "\x1f", "\n", "\t"):
                value = template.replace(MARK.encode(), f"ab{control}cd".encode())
                corpus.dead(
                    f"encoding/{topic}-{slot}-raw-control-{ord(control):02x}",
                    topic,
                    value,
                    ("Invalid JSON",),
                )
    text = encode(prediction_doc(corpus.fresh_id())).decode("utf-8")
    whole = {
        "utf-16-le": text.encode("utf-16-le"),
        "utf-16-be": text.encode("utf-16-be"),
        "utf-16-bom": text.encode("utf-16"),
        "utf-32": text.encode("utf-32"),
        "utf-8-bom": b"\xef\xbb\xbf" + text.encode("utf-8"),
        "latin-1": text.replace("gold", "g\u00f6ld").encode("latin-1"),
        "cesu-8-emoji": text.replace("gold", "MARK")
        .encode()
        .replace(b"MARK", b"\xed\xa0\xbd\xed\xb8\x80"),
    }
    for name, value in whole.items():
        corpus.dead(f"encoding/whole-message-{name}", "predictions", value, ("Invalid JSON",))
    rng = random.Random(61)
    kept = 0
    while kept < 24:
        size = rng.choice([1, 2, 3, 7, 64, 512, 4096])
        value = bytes(rng.randrange(256) for _ in range(size))
        if is_json(value):
            continue
        corpus.dead(f"encoding/random-bytes-{kept:02d}", "predictions", value, ("Invalid JSON",))
        kept += 1


def structure(corpus: _Corpus) -> None:
    """Not a JSON object: empty, scalars, truncation, trailing data, syntax, deep nesting."""
    for name, text in {
        "empty": "",
        "space": " ",
        "newline": "\n",
        "spaces": " " * 1000,
    }.items():
        corpus.dead(f"structure/{name}", "predictions", text.encode(), ("Invalid JSON",))
        corpus.dead(f"structure/label-{name}", "labels", text.encode(), ("Invalid JSON",))
    for name, text in {
        "null": "null",
        "true": "true",
        "false": "false",
        "zero": "0",
        "minus-one": "-1",
        "huge-number": "1e999",
        "string": '"text"',
        "empty-array": "[]",
        "array-of-object": "[{}]",
    }.items():
        corpus.dead(f"structure/top-level-{name}", "predictions", text.encode(), ("object",))
        corpus.dead(f"structure/label-top-level-{name}", "labels", text.encode(), ("object",))
    wrapped = b"[" + encode(prediction_doc(corpus.fresh_id())) + b"]"
    corpus.dead("structure/prediction-in-array", "predictions", wrapped, ("object",))
    corpus.dead("structure/empty-object", "predictions", b"{}", ("prediction_id", "required"))
    corpus.dead("structure/label-empty-object", "labels", b"{}", ("prediction_id", "required"))

    valid = encode(prediction_doc(corpus.fresh_id()))
    for cut in range(1, len(valid), 7):
        corpus.dead(
            f"structure/truncated-at-{cut:03d}", "predictions", valid[:cut], ("Invalid JSON",)
        )
    label = encode(label_doc(corpus.fresh_id()))
    for cut in range(1, len(label), 5):
        corpus.dead(
            f"structure/label-truncated-at-{cut:03d}", "labels", label[:cut], ("Invalid JSON",)
        )
    for name, tail in {
        "letter": b"x",
        "brace": b"}",
        "second-object": valid,
        "nul": b"\x00",
        "comment": b" // note",
        "comma": b",",
        "bracket": b"]",
    }.items():
        corpus.dead(
            f"structure/trailing-{name}",
            "predictions",
            encode(prediction_doc(corpus.fresh_id())) + tail,
            ("Invalid JSON",),
        )
    text = encode(prediction_doc(corpus.fresh_id())).decode()
    syntax = {
        "single-quotes": text.replace('"', "'"),
        "unquoted-keys": text.replace('"prediction_id"', "prediction_id"),
        "trailing-comma-object": text[:-1] + ",}",
        "trailing-comma-array": text.replace('"eu"}', '"eu",}'),
        "block-comment": text.replace('{"prediction_id"', '{/* c */"prediction_id"'),
        "leading-zero": text.replace('"support_calls":1', '"support_calls":01'),
        "hex-number": text.replace('"support_calls":1', '"support_calls":0x10'),
        "bare-fraction": text.replace('"support_calls":1', '"support_calls":.5'),
        "plus-sign": text.replace('"support_calls":1', '"support_calls":+1'),
        "dangling-point": text.replace('"support_calls":1', '"support_calls":1.'),
        "dangling-exponent": text.replace('"support_calls":1', '"support_calls":1e'),
        "double-minus": text.replace('"support_calls":1', '"support_calls":--1'),
        "python-true": text.replace('"prediction":1', '"prediction":True'),
        "python-none": text.replace('"days_since_login":3.1', '"days_since_login":None'),
        "undefined": text.replace('"days_since_login":3.1', '"days_since_login":undefined'),
        "missing-colon": text.replace('"prediction":1', '"prediction" 1'),
        "missing-comma": text.replace(',"prediction":1', '"prediction":1'),
        "unterminated-string": text.replace('"gold"', '"gold'),
        "unbalanced-braces": text + "}",
        "backslash-escape": text.replace('"gold"', '"go\\ld"'),
        "short-unicode-escape": text.replace('"gold"', '"\\u12"'),
    }
    for name, value in syntax.items():
        corpus.dead(f"structure/syntax-{name}", "predictions", value.encode(), ("Invalid JSON",))

    prefix = encode(prediction_doc(corpus.fresh_id()))[:-1].decode()
    before_plan, after_plan = prefix.split('"plan":"gold"')
    for depth in (256, 1000, 1025, 100_000):
        nests: dict[str, tuple[tuple[Any, ...], ...]] = {
            "top-array": (("text", "[", depth), ("text", "]", depth)),
            "top-array-unclosed": (("text", "[", depth),),
            "top-object": (("text", '{"a":', depth), ("text", "1", 1), ("text", "}", depth)),
            "unknown-field": (
                ("text", prefix + ',"extra":', 1),
                ("text", "[", depth),
                ("text", "]", depth),
                ("text", "}", 1),
            ),
            "feature-value": (
                ("text", before_plan + '"plan":', 1),
                ("text", "[", depth),
                ("text", "]", depth),
                ("text", after_plan + "}", 1),
            ),
        }
        for name, parts in nests.items():
            corpus.dead_parts(
                f"structure/deep-{name}-{depth}", "predictions", parts, ("Invalid JSON",)
            )


def limits(corpus: _Corpus) -> None:
    """Every bound of docs/events.md broken, up to messages of 16 MB."""

    def stretched(document: dict[str, Any], fill: str, length: int) -> tuple[tuple[Any, ...], ...]:
        """The document with ``fill * length`` where it holds the marker."""
        head, tail = encode(document).decode().split(MARK)
        return (("text", head, 1), ("text", fill, length), ("text", tail, 1))

    long_strings: list[tuple[str, str, dict[str, Any], tuple[str, ...], tuple[int, ...]]] = [
        (
            "predictions",
            "prediction_id",
            {"prediction_id": MARK},
            ("prediction_id", "max_id_length"),
            (257, 10_000, 1_000_000),
        ),
        (
            "predictions",
            "model_id",
            {"model_id": MARK},
            ("model_id", "max_id_length"),
            (257, 10_000, 1_000_000),
        ),
        (
            "predictions",
            "model_version",
            {"model_version": MARK},
            ("model_version", "max_id_length"),
            (257, 10_000, 1_000_000),
        ),
        (
            "labels",
            "prediction_id",
            {"prediction_id": MARK},
            ("prediction_id", "max_id_length"),
            (257, 1_000_000),
        ),
        ("labels", "model_id", {"model_id": MARK}, ("model_id", "max_id_length"), (257, 1_000_000)),
        (
            "predictions",
            "feature-name",
            {"features": {MARK: 1.0}},
            ("features", "max_name_length"),
            (257, 100_000),
        ),
        (
            "predictions",
            "feature-string",
            {"features": {"plan": MARK}},
            ("features", "max_string_length"),
            (1025, 1_000_000),
        ),
        (
            "predictions",
            "segment-name",
            {"segment": {MARK: "eu"}},
            ("segment", "max_name_length"),
            (257,),
        ),
        (
            "predictions",
            "segment-value",
            {"segment": {"region": MARK}},
            ("segment", "max_string_length"),
            (1025, 1_000_000),
        ),
        (
            "predictions",
            "score-class",
            {"scores": {MARK: 0.5}},
            ("scores", "max_name_length"),
            (257,),
        ),
        (
            "predictions",
            "prediction-string",
            {"prediction": MARK},
            ("prediction", "max_string_length"),
            (1025, 1_000_000),
        ),
        (
            "labels",
            "label-string",
            {"label": MARK},
            ("label", "max_string_length"),
            (1025, 1_000_000),
        ),
    ]
    for topic, what, changes, reason, lengths in long_strings:
        base = prediction_doc if topic == "predictions" else label_doc
        for length in lengths:
            document = base(corpus.fresh_id(), **changes)
            corpus.dead_parts(
                f"limits/{topic}-{what}-{length}-chars",
                topic,
                stretched(document, "s", length),
                reason,
            )

    def with_members(field: str, count: int, value: str) -> tuple[tuple[Any, ...], ...]:
        document = encode(prediction_doc(corpus.fresh_id(), **{field: {}})).decode()
        head, tail = document.split(f'"{field}":{{}}')
        return (
            ("text", f'{head}"{field}":{{', 1),
            ("members", count, value),
            ("text", "}" + tail, 1),
        )

    for field, value, counts, rule in (
        ("features", "0", (2001, 10_000, 100_000), "max_features"),
        ("scores", "0.5", (2001, 100_000), "max_features"),
        ("segment", '"eu"', (17, 1000, 80_000), "max_segments"),
    ):
        for count in counts:
            corpus.dead_parts(
                f"limits/{field}-{count}-entries",
                "predictions",
                with_members(field, count, value),
                (field, rule),
            )

    def padded(document: dict[str, Any], size: int) -> tuple[tuple[Any, ...], ...]:
        head = encode(document)[:-1].decode() + ',"padding":"'
        tail = '"}'
        return (("text", head, 1), ("text", "x", size - len(head) - len(tail)), ("text", tail, 1))

    for size in (1_048_577, 2_000_000, 5_000_000, 16_000_000):
        corpus.dead_parts(
            f"limits/message-{size}-bytes",
            "predictions",
            padded(prediction_doc(corpus.fresh_id()), size),
            ("max_message_bytes",),
        )
    corpus.dead_parts(
        "limits/label-message-1048577-bytes",
        "labels",
        padded(label_doc(corpus.fresh_id()), 1_048_577),
        ("max_message_bytes",),
    )
    corpus.dead_parts(
        "limits/message-2000000-bytes-of-features",
        "predictions",
        with_members("features", 220_000, "0"),
        ("max_message_bytes",),
    )
    # exactly at the limit: parsed, and refused for what it says, not for its size
    at_limit = prediction_doc(corpus.fresh_id(), model_id="fraud")
    parts = padded(at_limit, 1_048_576)
    corpus.dead(
        "limits/message-at-the-limit-unknown-model",
        "predictions",
        build_parts(parts),
        ("model_id", "not monitored"),
        key=at_limit["prediction_id"].encode(),
        error_class="Rejected",
        parts=parts,
    )


WRONG_IDENTIFIERS: dict[str, Any] = {
    "number": 1,
    "float": 1.5,
    "true": True,
    "null": None,
    "array": [],
    "object": {},
    "array-of-string": ["a"],
    "empty": "",
    "blank": "   ",
    "nul": "a\u0000b",
    "newline": "a\nb",
    "tab-only": "\t",
    "next-line-only": "\u0085",
}
WRONG_VALUES: dict[str, dict[str, Any]] = {
    "timestamp": {
        "true": True,
        "null": None,
        "array": [],
        "object": {},
        "empty": "",
        "word": "now",
        "month-13": "2026-13-01T00:00:00Z",
        "february-30": "2026-02-30T00:00:00Z",
        "hour-25": "2026-11-01T25:00:00Z",
        "naive": "2026-11-01T08:00:00",
        "naive-space": "2026-11-01 08:00:00",
        "date-only": "2026-11-01",
        "offset-24h": "2026-11-01T08:00:00+24:00",
        "offset-99": "2026-11-01T08:00:00+99:99",
        "leap-second": "2026-12-31T23:59:60Z",
        "year-0": "0000-01-01T00:00:00Z",
        "year-10000": "10000-01-01T00:00:00Z",
        "before-year-1-in-utc": "0001-01-01T00:00:00+01:00",
        "after-9999-in-utc": "9999-12-31T23:59:59-01:00",
        "double-zone": "2026-11-01T08:00:00ZZ",
        "basic-format": "20261101T080000Z",
        "week-date": "2026-W44-1T08:00:00Z",
        "unicode-minus": "2026\u221211\u221201T08:00:00Z",
        "huge-unix": 1e20,
        "negative-huge-unix": -1e20,
    },
    "features": {
        "null": None,
        "array": [],
        "string": "x",
        "number": 1,
        "true": True,
        "pairs": [["plan", "gold"]],
        "array-value": {"plan": []},
        "object-value": {"plan": {}},
        "nested-number": {"plan": [1]},
        "nested-object": {"plan": {"a": 1}},
    },
    "prediction": {
        "null": None,
        "array": [],
        "object": {},
        "empty-string": "",
        "nan": NAN,
        "infinity": INF,
        "minus-infinity": -INF,
    },
    "scores": {
        "array": [],
        "string": "x",
        "number": 1,
        "string-score": {"1": "0.5"},
        "bool-score": {"1": True},
        "above-one": {"1": 1.5},
        "negative": {"1": -0.1},
        "nan-score": {"1": NAN},
        "infinite-score": {"1": INF},
        "null-score": {"1": None},
        "array-score": {"1": [0.5]},
    },
    "segment": {
        "array": [],
        "string": "eu",
        "number": 1,
        "number-value": {"region": 1},
        "null-value": {"region": None},
        "array-value": {"region": ["eu"]},
        "object-value": {"region": {"a": "b"}},
        "bool-value": {"region": True},
    },
    "latency_ms": {
        "negative": -1,
        "tiny-negative": -1e-9,
        "word": "abc",
        "array": [],
        "object": {},
        "nan": NAN,
        "infinity": INF,
        "nan-string": "NaN",
        "infinity-string": "inf",
    },
    "schema_version": {
        "zero": 0,
        "two": 2,
        "string": "1",
        "null": None,
        "array": [],
        "fraction": 1.5,
        "huge": 10**20,
    },
}
LABEL_WRONG_VALUES: dict[str, dict[str, Any]] = {
    "label": {
        "null": None,
        "array": [],
        "object": {},
        "empty-string": "",
        "nan": NAN,
        "infinity": INF,
        "minus-infinity": -INF,
    },
    "timestamp": {
        name: WRONG_VALUES["timestamp"][name]
        for name in ("null", "empty", "naive", "date-only", "offset-24h", "year-0")
    },
}
NUMERIC_TIMESTAMPS: dict[str, Any] = {
    "unix-seconds": 1_000_000_000,
    "unix-milliseconds": 1_000_000_000_000,
    "unix-seconds-string": "1000000000",
    "unix-zero": 0,
    "unix-fraction": 1_000_000_000.5,
}
"""Numbers carry no offset: docs/events.md asks for RFC 3339 with one.

All long past, so that if one is taken it is a late prediction, not a
change to the windows of the valid traffic it is mixed with.
"""


def types(corpus: _Corpus) -> None:
    """One field of an otherwise valid event of the wrong type, shape or range, or missing."""
    for field in ("prediction_id", "model_id", "model_version"):
        for name, value in WRONG_IDENTIFIERS.items():
            corpus.dead(
                f"types/{field}-{name}",
                "predictions",
                encode(prediction_doc(corpus.fresh_id(), **{field: value})),
                (field,),
            )
    for field in ("prediction_id", "model_id"):
        for name, value in WRONG_IDENTIFIERS.items():
            corpus.dead(
                f"types/label-{field}-{name}",
                "labels",
                encode(label_doc(corpus.fresh_id(), **{field: value})),
                (field,),
            )
    for field, values in WRONG_VALUES.items():
        for name, value in values.items():
            corpus.dead(
                f"types/{field}-{name}",
                "predictions",
                encode(prediction_doc(corpus.fresh_id(), **{field: value})),
                (field,),
            )
    for field, values in LABEL_WRONG_VALUES.items():
        for name, value in values.items():
            corpus.dead(
                f"types/label-{field}-{name}",
                "labels",
                encode(label_doc(corpus.fresh_id(), **{field: value})),
                (field,),
            )
    for name, value in NUMERIC_TIMESTAMPS.items():
        corpus.dead(
            f"types/timestamp-{name}",
            "predictions",
            encode(prediction_doc(corpus.fresh_id(), timestamp=value)),
            ("timestamp",),
        )
        corpus.dead(
            f"types/label-timestamp-{name}",
            "labels",
            encode(label_doc(corpus.fresh_id(), timestamp=value)),
            ("timestamp",),
        )
    for field in (
        "prediction_id",
        "model_id",
        "model_version",
        "timestamp",
        "features",
        "prediction",
    ):
        corpus.dead(
            f"types/missing-{field}",
            "predictions",
            encode(prediction_doc(corpus.fresh_id(), **{field: _REMOVE})),
            (field, "required"),
        )
    for field in ("prediction_id", "model_id", "label", "timestamp"):
        corpus.dead(
            f"types/label-missing-{field}",
            "labels",
            encode(label_doc(corpus.fresh_id(), **{field: _REMOVE})),
            (field, "required"),
        )


UNKNOWN_MODELS = {
    "other": "fraud",
    "upper-case": "CHURN",
    "trailing-space": "churn ",
    "leading-space": " churn",
    "umlaut": "ch\u00fcrn",
    "zero-width-space": "churn\u200b",
    "suffix": "churn-2",
    "cyrillic-c": "\u0441hurn",
    "fullwidth": "\uff43hurn",
}
FAR_FUTURE = {
    "year-2100": "2100-01-01T00:00:00Z",
    "int64-nanoseconds-end": "2262-04-11T23:47:17Z",
    "year-3000-plus-14h": "3000-01-01T00:00:00+14:00",
    "year-9999": "9999-12-31T23:59:59Z",
    "last-microsecond": "9999-12-31T23:59:59.999999+00:00",
}
FAR_PAST = {
    "epoch": "1970-01-01T00:00:00Z",
    "billennium": "2001-09-09T01:46:40Z",
    "year-1900": "1900-01-01T00:00:00Z",
    "int64-nanoseconds-start": "1677-09-21T00:12:44Z",
    "before-int64-nanoseconds": "1677-09-21T00:12:43Z",
    "year-1": "0001-01-01T00:00:00Z",
    "year-1-plus-1us": "0001-01-01T00:00:00.000001Z",
    "before-epoch": "1969-12-31T23:59:59.999999Z",
    "leap-day-minus-12h": "2000-02-29T12:00:00-12:00",
}


def identity(corpus: _Corpus) -> None:
    """Unknown models, far-future and far-past times, keys, tombstones, duplicate JSON keys."""
    for name, model in UNKNOWN_MODELS.items():
        for topic, base in (("predictions", prediction_doc), ("labels", label_doc)):
            pid = corpus.fresh_id()
            corpus.dead(
                f"identity/{topic}-unknown-model-{name}",
                topic,
                encode(base(pid, model_id=model)),
                ("model_id", "not monitored"),
                key=pid.encode(),
                error_class="Rejected",
            )
    for name, moment in FAR_FUTURE.items():
        for topic, base in (("predictions", prediction_doc), ("labels", label_doc)):
            pid = corpus.fresh_id()
            corpus.dead(
                f"identity/{topic}-far-future-{name}",
                topic,
                encode(base(pid, timestamp=moment)),
                ("timestamp", "ahead of the clock"),
                key=pid.encode(),
                error_class="Rejected",
            )
    for name, moment in FAR_PAST.items():
        pid = corpus.fresh_id()
        corpus.add(
            f"identity/predictions-far-past-{name}",
            "predictions",
            encode(prediction_doc(pid, timestamp=moment)),
            key=pid.encode(),
            expect="late",
        )
        pid = corpus.fresh_id()
        corpus.add(
            f"identity/labels-far-past-{name}",
            "labels",
            encode(label_doc(pid, timestamp=moment)),
            key=pid.encode(),
            expect="orphan",
        )
    other_keys: dict[str, Callable[[str], bytes]] = {
        "other": lambda pid: b"someone-else",
        "empty": lambda pid: b"",
        "not-utf-8": lambda pid: b"\xff\xfe" + pid.encode(),
        "upper-case": lambda pid: pid.upper().encode(),
        "trailing-space": lambda pid: pid.encode() + b" ",
        "trailing-nul": lambda pid: pid.encode() + b"\x00",
    }
    for topic, base in (("predictions", prediction_doc), ("labels", label_doc)):
        for name, make_key in other_keys.items():
            pid = corpus.fresh_id()
            corpus.dead(
                f"identity/{topic}-key-{name}",
                topic,
                encode(base(pid)),
                ("key", "differs from prediction_id"),
                key=make_key(pid),
                error_class="KeyMismatch",
            )
        pid = corpus.fresh_id()
        corpus.dead(f"identity/{topic}-tombstone", topic, None, ("tombstone",), key=pid.encode())
    # duplicate JSON keys: the last one counts, as in every reader driftline uses
    pid = corpus.fresh_id()
    last_unknown = encode(prediction_doc(pid))[:-1] + b',"model_id":"fraud"}'
    corpus.dead(
        "identity/duplicate-json-key-last-unknown",
        "predictions",
        last_unknown,
        ("model_id", "not monitored"),
        key=pid.encode(),
        error_class="Rejected",
    )
    pid = corpus.fresh_id()
    first_unknown = (
        b'{"model_id":"fraud",' + encode(prediction_doc(pid, timestamp=FAR_PAST["epoch"]))[1:]
    )
    corpus.add(
        "identity/duplicate-json-key-first-unknown-far-past",
        "predictions",
        first_unknown,
        key=pid.encode(),
        expect="late",
    )


def mutants(corpus: _Corpus, count: int = 400) -> None:
    """Seeded byte-level mutations of valid events that a strict JSON reader refuses."""
    rng = random.Random(7)
    made = 0
    while made < count:
        topic = "predictions" if made % 3 else "labels"
        pid = corpus.fresh_id()
        original = encode(prediction_doc(pid) if topic == "predictions" else label_doc(pid))
        data = bytearray(original)
        for _ in range(rng.randint(1, 4)):
            position = rng.randrange(len(data))
            operation = rng.randrange(5)
            if operation == 0:
                data[position] = rng.randrange(256)
            elif operation == 1:
                del data[position]
            elif operation == 2:
                data.insert(position, rng.choice(b'{}[]",:\\\x00\xff '))
            elif operation == 3:
                end = min(len(data), position + rng.randint(1, 16))
                data[position:position] = data[position:end]
            else:
                data[position] ^= 1 << rng.randrange(8)
        value = bytes(data)
        if is_json(value):
            continue
        corpus.dead(
            f"mutants/{topic}-{made:03d}", topic, value, ("Invalid JSON",), key=pid.encode()
        )
        made += 1


def combinations(corpus: _Corpus, count: int = 300) -> None:
    """Seeded combinations of two or three broken fields: each one named in the reason."""
    rng = random.Random(11)
    fields = sorted(WRONG_VALUES)
    identifier_fields = ["prediction_id", "model_id", "model_version"]
    for index in range(count):
        chosen = rng.sample(identifier_fields + fields, rng.randint(2, 3))
        changes: dict[str, Any] = {}
        for field in chosen:
            if field in identifier_fields:
                changes[field] = WRONG_IDENTIFIERS[rng.choice(sorted(WRONG_IDENTIFIERS))]
            else:
                changes[field] = WRONG_VALUES[field][rng.choice(sorted(WRONG_VALUES[field]))]
        pid = corpus.fresh_id()
        corpus.dead(
            f"combinations/{index:03d}-{'-'.join(sorted(chosen))}",
            "predictions",
            encode(prediction_doc(pid, **changes)),
            tuple(sorted(chosen)),
            key=pid.encode(),
        )


CATEGORIES = {
    "encoding": encoding,
    "structure": structure,
    "limits": limits,
    "types": types,
    "identity": identity,
    "mutants": mutants,
    "combinations": combinations,
}


def generate() -> dict[str, list[Entry]]:
    """Every corpus entry, by category (the file it is stored in)."""
    corpus = _Corpus()
    by_category: dict[str, list[Entry]] = {}
    for category, make in CATEGORIES.items():
        start = len(corpus.entries)
        make(corpus)
        by_category[category] = corpus.entries[start:]
    return by_category


def render(entries: list[Entry]) -> str:
    """A corpus file's text: one JSON object per line."""
    return "".join(json.dumps(entry.to_json(), separators=(",", ":")) + "\n" for entry in entries)


def load_corpus(directory: Path = CORPUS_DIR) -> list[Entry]:
    """Every entry of the committed corpus, in file then line order."""
    entries: list[Entry] = []
    for path in sorted(directory.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            entries.append(Entry.from_json(json.loads(line)))
    return entries


def iter_files() -> Iterator[tuple[Path, str]]:
    """``(path, text)`` of every corpus file this script writes."""
    for category, entries in generate().items():
        yield CORPUS_DIR / f"{category}.jsonl", render(entries)


def main() -> int:
    """Write the corpus files and print how many entries each holds."""
    CORPUS_DIR.mkdir(parents=True, exist_ok=True)
    total = 0
    for path, text in iter_files():
        path.write_text(text, encoding="utf-8")
        lines = text.count("\n")
        total += lines
        print(f"{path.name}: {lines} entries, {len(text.encode()):,} bytes")
    print(f"{total} entries")
    return 0


if __name__ == "__main__":
    sys.exit(main())
