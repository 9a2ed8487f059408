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
from typing import Any, cast

import orjson

from schemas import InputLimits
from schemas.events import decode_label, decode_prediction

PREDICTION_FIELDS = ("prediction_id", "model_id", "model_version", "timestamp", "prediction")
LABEL_FIELDS = ("prediction_id", "model_id", "label", "timestamp")


_BOM = "\ufeff".encode()


class ReplayError(Exception):
    """A file cannot be replayed (missing, unknown format, missing columns)."""


class RowError(ValueError):
    """A CSV row that cannot become an event (its reason names the problem)."""


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
    scores: dict[str, Any] = {}
    segment: dict[str, str] = {}
    for name, value in row.items():
        if name in PREDICTION_FIELDS or name == "latency_ms":
            continue
        if name.startswith("score_"):
            if value != "":
                scores[name.removeprefix("score_")] = _number_or_text(value)
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
        event["latency_ms"] = _number_or_text(row["latency_ms"])
    return event


def _number_or_text(value: str) -> Any:
    """A number, or the text as it is for the event's validation to refuse by name."""
    try:
        return float(value)
    except ValueError:
        return value


def _label_from_row(row: dict[str, str]) -> dict[str, Any]:
    return {
        "prediction_id": row.get("prediction_id", ""),
        "model_id": row.get("model_id", ""),
        "label": _cell(row.get("label", "")),
        "timestamp": row.get("timestamp", ""),
    }


def check_file(path: Path, kind: str) -> int:
    """Refuse a file that cannot be replayed, before anything of any file is sent.

    Returns
    -------
    int
        The file's events (for a progress bar).

    Raises
    ------
    ReplayError
        It does not exist, is not a regular file, has an unknown suffix, is a
        CSV file without the required columns or not CSV, is not UTF-8 text,
        or has no events.
    """
    if not path.exists():
        raise ReplayError(f"{kind} file '{path}' does not exist")
    if not path.is_file():
        raise ReplayError(f"{kind} file '{path}' is not a regular file")
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".ndjson", ".json", ".csv"):
        raise ReplayError(f"cannot tell the format of '{path}'; use .jsonl, .ndjson or .csv")
    number = 0
    try:
        with path.open("rb") as handle:
            for line in handle:
                number += 1
                line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ReplayError(
            f"{kind} file '{path}' is not UTF-8 text (line {number}: {exc})"
        ) from None
    except OSError as exc:
        raise ReplayError(f"cannot read {kind} file '{path}': {exc}") from None
    events = count_events(path, kind)  # a CSV file parses to its end here
    if not events:
        raise ReplayError(f"{kind} file '{path}' has no events")
    return events


# Cells as long as a message may be: a larger one is refused by the event's
# validation with its size, not by the CSV reader with a traceback.
csv.field_size_limit(max(csv.field_size_limit(), 64 * 1024 * 1024))


def _csv_rows(path: Path, kind: str) -> Iterator[tuple[int, dict[str | None, Any]]]:
    """``(line number where the row ends, row)`` of a CSV file, its header checked.

    Raises
    ------
    ReplayError
        Missing or repeated columns, or text that is not CSV (an unclosed
        quote, for one), naming the line.
    """
    # utf-8-sig: a byte-order mark (spreadsheets write one) is not part of the first column.
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle, strict=True)
        try:
            columns = reader.fieldnames or []
            repeated = sorted({name for name in columns if columns.count(name) > 1})
            if repeated:
                raise ReplayError(f"{kind} file '{path}' repeats columns: {', '.join(repeated)}")
            required = PREDICTION_FIELDS if kind == "predictions" else LABEL_FIELDS
            missing = [name for name in required if name not in columns]
            if missing:
                raise ReplayError(f"{kind} file '{path}' lacks columns: {', '.join(missing)}")
            for row in reader:
                yield reader.line_num, row
        except csv.Error as exc:
            raise ReplayError(f"{path}:{reader.line_num}: not valid CSV ({exc})") from None


def read_events(path: Path, kind: str) -> Iterator[tuple[int, bytes | RowError]]:
    """``(line number, encoded event)`` for every event in a file (see :func:`check_file`).

    A CSV row with more or fewer cells than the header comes as a
    :class:`RowError` instead of an event.
    """
    check_file(path, kind)
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        with path.open("rb") as handle:
            for number, line in enumerate(handle, start=1):
                stripped = line.removeprefix(_BOM).strip() if number == 1 else line.strip()
                if stripped:
                    yield number, stripped
    elif suffix == ".csv":
        convert = _prediction_from_row if kind == "predictions" else _label_from_row
        width = 0
        for number, row in _csv_rows(path, kind):
            width = width or len(row) - (None in row)
            if None in row or any(value is None for value in row.values()):
                extra = row.get(None) or ()
                absent = sum(value is None for value in row.values())
                cells = width + len(extra) - absent
                yield number, RowError(f"the row has {cells} cells; the header has {width}")
                continue
            try:
                yield number, orjson.dumps(convert(cast(dict[str, str], row)))
            except TypeError as exc:  # orjson: an integer beyond 64 bits
                yield number, RowError(f"a cell cannot be sent as JSON: {exc}")
    else:
        raise ReplayError(f"cannot tell the format of '{path}'; use .jsonl, .ndjson or .csv")


def validate(kind: str, raw: bytes, limits: InputLimits) -> str:
    """The event's ``prediction_id`` (the message key); raises InvalidEvent."""
    if kind == "predictions":
        return decode_prediction(raw, limits).prediction_id
    return decode_label(raw, limits).prediction_id


def count_events(path: Path, kind: str) -> int:
    """Events in a file (for the progress bar): CSV rows, or lines that are not blank."""
    if path.suffix.lower() == ".csv":
        return sum(1 for _ in _csv_rows(path, kind))
    with path.open("rb") as handle:
        return sum(1 for line in handle if line.removeprefix(_BOM).strip())
