"""Change points inside a window: the detector scan, and the ``change_points`` points.

The scan reads a window's errors by event-time slice; the slices add up over
batches and partitions, so the points must not depend on how labels came.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest
from numpy.typing import ArrayLike, NDArray

import detectors.change
from alerts.engine import AlertEngine
from detectors.change import TIMELINE_STEPS, ChangeDetector, scan_timeline
from detectors.errors import DetectorError
from schemas import DriftlineSettings, MonitorConfig
from streams.app import Outbox, Worker
from streams.decode import RawMessage
from streams.points import parse_line_protocol
from tests.unit.test_windows_merger import CONFIG, REFERENCE, label, prediction


def test_a_steady_error_rate_has_no_change_and_a_jump_is_found_after_it() -> None:
    counts = [200] * TIMELINE_STEPS
    steady = [10.0] * TIMELINE_STEPS  # 5 % mistakes throughout
    assert scan_timeline("adwin", {}, counts, steady).detections == 0
    jump = [10.0] * 40 + [120.0] * 20  # 60 % from slice 40 on
    for method in ("adwin", "page_hinkley", "ddm"):
        scan = scan_timeline(method, {}, counts, jump)
        assert scan.detections >= 1, method
        assert scan.first_step is not None and 40 <= scan.first_step < TIMELINE_STEPS, method
    assert scan_timeline("adwin", {}, counts, jump).fed == 50 * TIMELINE_STEPS


def test_a_slice_feeds_its_share_of_mistakes_spread_evenly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fed: list[float] = []

    class Recorder(ChangeDetector):
        def update(self, values: ArrayLike) -> NDArray[np.int64]:
            fed.extend(np.asarray(values, dtype=float).tolist())
            return super().update(values)

    monkeypatch.setattr(detectors.change, "ChangeDetector", Recorder)
    # 7 mistakes in 10 predictions; 30 in 1,000, read as 50 values: 1.5 ones, rounded to 2.
    scan_timeline("ddm", {}, [10, 0, 1000], [7, 0, 30])
    assert fed[:10] == [0, 1, 1, 0, 1, 1, 0, 1, 1, 1]  # j·7//10 − (j−1)·7//10 for j = 1…10
    assert sum(fed[10:]) == 2 and len(fed[10:]) == 50


def test_the_scan_refuses_what_it_cannot_read() -> None:
    with pytest.raises(DetectorError, match="cannot scan a window; valid: adwin"):
        scan_timeline("kswin", {}, [1], [0])
    with pytest.raises(DetectorError, match="differ in length"):
        scan_timeline("adwin", {}, [1, 2], [0])
    with pytest.raises(DetectorError, match="delta must be a number in"):
        scan_timeline("adwin", {"delta": 3}, [1], [0])


def _worker(tmp_path: Path) -> Worker:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "ref.json").write_text(REFERENCE.to_json())
    settings = DriftlineSettings(
        data_dir=tmp_path / "data", topic_predictions="p", topic_labels="l"
    )
    return Worker(settings, CONFIG, tmp_path, partitions=1)


def _run_shift(worker: Worker, label_batches: list[list[int]]) -> Outbox:
    """1,200 predictions of one 60 s window, their labels in the given batches."""
    times = [n * 0.05 for n in range(1200)]
    # Correct (label 1) but for every 20th prediction before 36 s, and 3 of 5 after.
    labels = [
        0 if (t < 36 and n % 20 == 0) or (t >= 36 and n % 5 < 3) else 1 for n, t in enumerate(times)
    ]
    messages = [
        RawMessage("p", 0, n, f"a{n}".encode(), prediction(f"a{n}", t, 0.1))
        for n, t in enumerate(times)
    ]
    partials = worker.ingest(messages)[1]
    offset = 0
    for batch in label_batches:
        labelled = [
            RawMessage("l", 0, offset + i, f"a{n}".encode(), label(f"a{n}", 70.0, labels[n]))
            for i, n in enumerate(batch)
        ]
        offset += len(batch)
        partials += worker.ingest(labelled)[1]
    return worker.merge([(0, value) for _, value in partials])


def _change_points(tmp_path: Path, label_batches: list[list[int]]) -> list[dict[str, object]]:
    """The last change_points point of each series after :func:`_run_shift`."""
    worker = _worker(tmp_path)
    _run_shift(worker, label_batches)
    worker.flush()
    lines = (tmp_path / "data" / "metrics.lp").read_text()
    found = [p for p in parse_line_protocol(lines) if p.measurement == "change_points"]
    last = {}
    for point in found:  # the last point of each series is what InfluxDB keeps
        last[point.tags] = point
    return [{**dict(p.tags), **p.fields} for p in sorted(last.values(), key=lambda p: p.tags)]


def test_a_change_inside_the_window_is_written_the_same_however_labels_come(
    tmp_path: Path,
) -> None:
    everything = list(range(1200))
    rng = np.random.default_rng(5)
    shuffled = rng.permutation(1200).tolist()
    at_once = _change_points(tmp_path / "a", [everything])
    in_pieces = _change_points(tmp_path / "b", [shuffled[:100], shuffled[100:700], shuffled[700:]])
    assert at_once == in_pieces
    by_segment = {point["segment"]: point for point in at_once}
    assert set(by_segment) == {"all", "region=eu"}
    point = by_segment["all"]
    assert point["detector"] == "adwin"
    assert point["n_labelled"] == 1200
    assert isinstance(point["detections"], int) and point["detections"] >= 1
    # The error rate jumps at 36 s: the first signal comes in a later slice.
    assert isinstance(point["first_at_s"], float) and 36.0 < point["first_at_s"] <= 60.0


def test_a_window_without_change_has_none(tmp_path: Path) -> None:
    worker = _worker(tmp_path)
    messages = [
        RawMessage("p", 0, n, f"a{n}".encode(), prediction(f"a{n}", n * 0.1, 0.1))
        for n in range(500)
    ]
    labels = [
        RawMessage("l", 0, n, f"a{n}".encode(), label(f"a{n}", 70.0, 0 if n % 10 == 0 else 1))
        for n in range(500)
    ]
    partials = worker.ingest(messages)[1] + worker.ingest(labels)[1]
    worker.merge([(0, value) for _, value in partials])
    worker.flush()
    lines = (tmp_path / "data" / "metrics.lp").read_text()
    found = [p for p in parse_line_protocol(lines) if p.measurement == "change_points"]
    assert found and all(p.fields["detections"] == 0 for p in found)
    assert all(p.fields["first_at_s"] == -1.0 for p in found)


def test_a_threshold_rule_on_change_points_fires_with_where_the_change_came(
    tmp_path: Path,
) -> None:
    worker = _worker(tmp_path)
    document = CONFIG.model_dump(mode="json", exclude_unset=True)
    document["rules"] = [
        {"name": "error-shift", "kind": "threshold", "op": ">", "threshold": 0,
         "select": {"measurement": "change_points", "field": "detections",
                    "tags": {"segment": "all"}}},
    ]  # fmt: skip
    worker.config = MonitorConfig.model_validate(document)
    worker.merger(0)
    worker.engines[0] = AlertEngine(worker.config)
    outbox = _run_shift(worker, [list(range(1200))])
    events = [orjson.loads(value) for _, value in outbox.alerts]
    assert [(e["rule"], e["segment"], e["state"]) for e in events] == [
        ("error-shift", "all", "firing")
    ]
    assert 36.0 < events[0]["evidence"]["first_at_s"] <= 60.0
    assert events[0]["evidence"]["detector"] == "adwin"
