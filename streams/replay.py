"""``driftline replay``: produce recorded events into the topics (backfills, tests).

Files are JSON lines (one event per line, as a serving app would send it) or
CSV. In a predictions CSV the columns ``prediction_id``, ``model_id``,
``model_version``, ``timestamp``, ``prediction`` and ``latency_ms`` are the
event's fields, ``score_<class>`` columns its scores, ``segment_<name>``
columns its segment, and every other column a feature (numbers where they
parse, empty cells missing). A labels CSV has ``prediction_id``, ``model_id``,
``label`` and ``timestamp``.

Every event is validated with the schemas before it is sent; invalid lines are
reported with their line number and reason and are not sent.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from schemas import InputLimits
from schemas.events import decode_label, decode_prediction

PREDICTION_FIELDS = ("prediction_id", "model_id", "model_version", "timestamp", "prediction")


class ReplayError(Exception):
    """A file cannot be replayed (missing, unknown format, missing columns)."""


@dataclass
class ReplayReport:
    """What a replay sent and refused."""

    sent: int = 0
    invalid: list[tuple[int, str]] = field(default_factory=list)


_CODE = re.compile(r"[+-]?0[0-9]")
"""A leading zero before another digit: a code, not a number."""


def _cell(value: str) -> Any:
    """A CSV cell as the JSON value a serving app would have sent.

    Examples
    --------
    >>> [_cell(v) for v in ["", "3", "2.5", "1e3", "true", "gold", "01234", "0.5", "1_000"]]
    [None, 3, 2.5, 1000.0, True, 'gold', '01234', 0.5, '1_000']

    A code with a leading zero (a zip code ``01234``) or an underscore stays
    text: read as a number it would no longer be the category it names.
    """
    if value == "":
        return None
    lowered = value.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if _CODE.match(value) or "_" in value:
        return value
    try:
        number = float(value)
    except ValueError:
        return value
    if value.lstrip("+-").isdigit():
        return int(value)
    return number


def _prediction_from_row(row: dict[str, str]) -> dict[str, Any]:
    event: dict[str, Any] = {name: row.get(name, "") for name in PREDICTION_FIELDS}
    event["prediction"] = _cell(row.get("prediction", ""))
    features: dict[str, Any] = {}
    scores: dict[str, float] = {}
    segment: dict[str, str] = {}
    for name, value in row.items():
        if name in PREDICTION_FIELDS or name == "latency_ms":
            continue
        if name.startswith("score_"):
            if value != "":
                scores[name.removeprefix("score_")] = float(value)
        elif name.startswith("segment_"):
            if value != "":
                segment[name.removeprefix("segment_")] = value
        else:
            features[name] = _cell(value)
    event["features"] = features
    if scores:
        event["scores"] = scores
    if segment:
        event["segment"] = segment
    if row.get("latency_ms"):
        event["latency_ms"] = float(row["latency_ms"])
    return event


def _label_from_row(row: dict[str, str]) -> dict[str, Any]:
    return {
        "prediction_id": row.get("prediction_id", ""),
        "model_id": row.get("model_id", ""),
        "label": _cell(row.get("label", "")),
        "timestamp": row.get("timestamp", ""),
    }


def read_events(path: Path, kind: str) -> Iterator[tuple[int, bytes]]:
    """``(line number, encoded event)`` for every event in a file."""
    if not path.is_file():
        raise ReplayError(f"{kind} file '{path}' does not exist")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        with path.open("rb") as handle:
            for number, line in enumerate(handle, start=1):
                stripped = line.strip()
                if stripped:
                    yield number, stripped
    elif suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            required = PREDICTION_FIELDS if kind == "predictions" else ("prediction_id", "label")
            missing = [name for name in required if name not in (reader.fieldnames or [])]
            if missing:
                raise ReplayError(f"{kind} file '{path}' lacks columns: {', '.join(missing)}")
            convert = _prediction_from_row if kind == "predictions" else _label_from_row
            for number, row in enumerate(reader, start=2):
                yield number, orjson.dumps(convert(row))
    else:
        raise ReplayError(f"cannot tell the format of '{path}'; use .jsonl, .ndjson or .csv")


def validate(kind: str, raw: bytes, limits: InputLimits) -> str:
    """The event's ``prediction_id`` (the message key); raises InvalidEvent."""
    if kind == "predictions":
        return decode_prediction(raw, limits).prediction_id
    return decode_label(raw, limits).prediction_id


def count_events(path: Path) -> int:
    """Events in a file (for the progress bar)."""
    with path.open("rb") as handle:
        lines = sum(1 for line in handle if line.strip())
    return lines - 1 if path.suffix.lower() == ".csv" else lines
