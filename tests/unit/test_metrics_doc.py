"""docs/metrics.md names every measurement, tag and field the service writes.

The points are built through the constructors of :mod:`streams.points`, with
every optional field given, so what is checked is what a worker writes; each
measurement's tags and fields must appear in that measurement's own section.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from schemas.vocabulary import MEASUREMENTS
from streams import points as pts
from streams.points import Point

DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
W0 = datetime(2026, 11, 23, 10, tzinfo=UTC)


def written_points() -> list[Point]:
    """One point of every measurement, each with all of its fields present."""
    model = {"model_id": "churn", "model_version": "3"}
    return [
        pts.feature_drift(
            **model,
            segment="all",
            feature="plan",
            method="chi2",
            statistic=0.31,
            p_value=0.001,
            threshold=0.05,
            drifted=True,
            n_current=900,
            n_reference=20_000,
            window_start=W0,
        ),
        pts.prediction_drift(
            **model,
            segment="region=eu",
            method="ks",
            statistic=0.2,
            p_value=0.01,
            threshold=0.05,
            drifted=True,
            n_current=900,
            n_reference=20_000,
            window_start=W0,
        ),
        pts.model_performance(
            **model,
            segment="all",
            metric="f1",
            value=0.8,
            n_labelled=120,
            coverage=0.4,
            is_final=False,
            window_start=W0,
        ),
        pts.label_lag(**model, p50_s=3600.0, p95_s=86_400.0, coverage=0.4, window_start=W0),
        pts.change_points(
            **model,
            segment="all",
            detector="adwin",
            detections=1,
            first_at_s=1860.0,
            n_labelled=900,
            is_final=False,
            window_start=W0,
        ),
        # Two data-quality points: the numeric and the categorical rate.
        pts.data_quality(
            **model,
            feature="age",
            missing_rate=0.01,
            out_of_range_rate=0.02,
            unseen_category_rate=None,
            window_start=W0,
        ),
        pts.data_quality(
            **model,
            feature="plan",
            missing_rate=0.0,
            out_of_range_rate=None,
            unseen_category_rate=0.05,
            window_start=W0,
        ),
        pts.volume(
            **model,
            segment="all",
            predictions=1000,
            labels=400,
            late_predictions=3,
            dead_letters=1,
            window_start=W0,
        ),
        pts.alerts(
            **model,
            segment="all",
            feature="plan",
            rule="plan-drift",
            severity="warning",
            state="firing",
            value=0.001,
            summary="plan drifted",
            time=W0,
        ),
    ]


def names_by_measurement() -> dict[str, tuple[set[str], set[str]]]:
    """Measurement → (tag keys, field keys) over the points written."""
    found: dict[str, tuple[set[str], set[str]]] = {}
    for point in written_points():
        tags, fields = found.setdefault(point.measurement, (set(), set()))
        tags.update(key for key, _ in point.tags)
        fields.update(point.fields)
    return found


def sections(text: str) -> dict[str, str]:
    """``## `name` `` heading → the text up to the next ``## `` heading."""
    parts = re.split(r"^## ", text, flags=re.MULTILINE)
    found: dict[str, str] = {}
    for part in parts[1:]:
        heading, _, body = part.partition("\n")
        match = re.fullmatch(r"`([a-z_]+)`", heading.strip())
        if match:
            found[match.group(1)] = body
    return found


def undocumented(text: str) -> list[str]:
    """``measurement``, ``measurement.tag`` or ``measurement.field`` missing from ``text``."""
    documented = sections(text)
    missing: list[str] = []
    for measurement, (tags, fields) in sorted(names_by_measurement().items()):
        body = documented.get(measurement)
        if body is None:
            missing.append(measurement)
            continue
        for name in sorted(tags | fields):
            if f"`{name}`" not in body:
                missing.append(f"{measurement}.{name}")
    return missing


def test_the_points_cover_every_measurement_and_field_of_the_vocabulary() -> None:
    built = names_by_measurement()
    assert set(built) == set(MEASUREMENTS)
    for measurement, (_, fields) in built.items():
        assert fields == set(MEASUREMENTS[measurement]), measurement


def test_every_measurement_tag_and_field_is_documented_in_its_section() -> None:
    assert undocumented(DOC.read_text(encoding="utf-8")) == []


def test_every_field_row_states_its_type() -> None:
    body = sections(DOC.read_text(encoding="utf-8"))
    for measurement, (_, fields) in names_by_measurement().items():
        for name in fields:
            row = re.search(rf"^\| `{name}` \| (float|int|bool|string) \|", body[measurement], re.M)
            assert row is not None, f"{measurement}.{name} has no row with its type"


@pytest.mark.parametrize(
    ("removed", "expected"),
    [
        ("| `late_predictions` |", "volume.late_predictions"),
        ("Tags: `model_id`, `model_version`.", "label_lag.model_version"),
    ],
)
def test_a_name_missing_from_its_section_is_reported(removed: str, expected: str) -> None:
    text = DOC.read_text(encoding="utf-8")
    assert removed in text
    without = "\n".join(line for line in text.splitlines() if not line.startswith(removed))
    assert expected in undocumented(without)


def test_a_missing_section_is_reported() -> None:
    text = DOC.read_text(encoding="utf-8").replace("## `label_lag`", "## label lag")
    assert "label_lag" in undocumented(text)
