"""Reading recorded events for ``driftline replay`` (no broker: files to events)."""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas import DEFAULT_LIMITS, InvalidEvent
from streams.replay import (
    ReplayError,
    RowError,
    check_file,
    count_events,
    read_events,
    validate,
)

HEADER = "prediction_id,model_id,model_version,timestamp,prediction,x,score_1,latency_ms\n"
GOOD = "p1,m,1,2026-11-01T10:00:00Z,1,2.5,0.75,3\n"


def outcomes(path: Path) -> list[str]:
    """Per row: 'ok', the row's problem, or the field the event's validation names."""
    found = []
    for number, raw in read_events(path, "predictions"):
        if isinstance(raw, RowError):
            found.append(f"{number}: {raw}")
            continue
        try:
            validate("predictions", raw, DEFAULT_LIMITS)
        except InvalidEvent as exc:
            found.append(f"{number}: {exc.errors[0].path}")
        else:
            found.append(f"{number}: ok")
    return found


def test_bad_csv_rows_are_reported_by_line_and_the_others_still_read(tmp_path: Path) -> None:
    path = tmp_path / "predictions.csv"
    path.write_text(
        HEADER
        + GOOD
        + "p2,m,1,2026-11-01T10:00:00Z,1,2.5,0.75,3,EXTRA\n"
        + "p3,m,1,2026-11-01T10:00:00Z,1,2.5\n"
        + "p4,m,1,2026-11-01T10:00:00Z,1,2.5,abc,3\n"
        + "p5,m,1,2026-11-01T10:00:00Z,1,2.5,0.75,fast\n"
        + GOOD.replace("p1", "p6")
    )
    assert outcomes(path) == [
        "2: ok",
        "3: the row has 9 cells; the header has 8",
        "4: the row has 6 cells; the header has 8",
        "5: scores",
        "6: latency_ms",
        "7: ok",
    ]


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("missing.jsonl", None, "does not exist"),
        ("folder.jsonl", "dir", "is not a regular file"),
        ("events.txt", "{}\n", "cannot tell the format"),
        ("latin1.csv", HEADER.encode() + b"p1,m,1,2026-11-01T10:00:00Z,1,caf\xe9,,\n", "not UTF-8"),
        ("short.csv", "prediction_id,label\n", "lacks columns: model_id, model_version"),
    ],
)
def test_a_file_that_cannot_be_replayed_is_refused_before_anything_is_sent(
    tmp_path: Path, name: str, content: str | bytes | None, reason: str
) -> None:
    path = tmp_path / name
    if content == "dir":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(ReplayError, match=reason):
        check_file(path, "predictions")


def test_an_unclosed_quote_refuses_the_file_naming_the_line(tmp_path: Path) -> None:
    # The lenient reader took every later row into one cell and sent nothing of them.
    path = tmp_path / "predictions.csv"
    path.write_text(HEADER + GOOD + 'p2,m,1,2026-11-01T10:00:00Z,1,"oops,0.75,3\n' + GOOD * 3)
    with pytest.raises(ReplayError, match=r"predictions.csv:\d+: not valid CSV"):
        check_file(path, "predictions")


def test_rows_are_numbered_by_the_line_where_they_end_and_counted_as_rows(
    tmp_path: Path,
) -> None:
    path = tmp_path / "predictions.csv"
    path.write_text(
        HEADER
        + 'p1,m,1,2026-11-01T10:00:00Z,1,"two\nlines",0.75,3\n'  # lines 2-3
        + GOOD.replace("p1", "p2")  # line 4
        + "p3,m,1,2026-11-01T10:00:00Z,1,2.5,abc,3\n"  # line 5
    )
    assert outcomes(path) == ["3: ok", "4: ok", "5: scores"]
    assert count_events(path, "predictions") == 3


def test_an_integer_beyond_64_bits_is_a_row_error_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "predictions.csv"
    path.write_text(HEADER + GOOD.replace(",2.5,", f",{2**70},") + GOOD.replace("p1", "p2"))
    found = outcomes(path)
    assert found[0].startswith("2: a cell cannot be sent as JSON")
    assert found[1] == "3: ok"


def test_a_byte_order_mark_is_not_part_of_the_first_column_or_line(tmp_path: Path) -> None:
    csv_path = tmp_path / "predictions.csv"
    csv_path.write_bytes(b"\xef\xbb\xbf" + (HEADER + GOOD).encode())
    check_file(csv_path, "predictions")
    assert outcomes(csv_path) == ["2: ok"]
    lines = tmp_path / "predictions.jsonl"
    event = (
        b'{"prediction_id": "p1", "model_id": "m", "model_version": "1", '
        b'"timestamp": "2026-11-01T10:00:00Z", "features": {"x": 1.5}, "prediction": 1}\n'
    )
    lines.write_bytes(b"\xef\xbb\xbf" + event)
    assert outcomes(lines) == ["1: ok"]
    assert count_events(lines, "predictions") == 1


def test_repeated_columns_and_a_labels_file_without_its_fields_are_refused(
    tmp_path: Path,
) -> None:
    path = tmp_path / "predictions.csv"
    path.write_text(HEADER.replace(",x,", ",x,x,") + GOOD.replace(",2.5,", ",2.5,999,"))
    with pytest.raises(ReplayError, match="repeats columns: x"):
        check_file(path, "predictions")
    labels = tmp_path / "labels.csv"
    labels.write_text("prediction_id,label\np1,1\n")
    with pytest.raises(ReplayError, match="lacks columns: model_id, timestamp"):
        check_file(labels, "labels")


def test_a_file_without_events_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "predictions.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(ReplayError, match="has no events"):
        check_file(empty, "predictions")
    header_only = tmp_path / "predictions.csv"
    header_only.write_text(HEADER)
    with pytest.raises(ReplayError, match="has no events"):
        check_file(header_only, "predictions")
