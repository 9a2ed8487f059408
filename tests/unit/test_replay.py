"""Reading recorded events for ``driftline replay`` (no broker: files to events)."""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas import DEFAULT_LIMITS, InvalidEvent
from streams.replay import ReplayError, RowError, check_file, read_events, validate

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
