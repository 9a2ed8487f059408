"""Each model keeps its own event-time clock, though models share topics and partitions."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson

from schemas import DriftlineSettings, MonitorConfig, PredictionEvent
from streams.app import Worker
from streams.decode import RawMessage, decode_predictions
from streams.merger import WindowMerger
from streams.points import Point
from streams.windows import PartitionWindows, WindowKey
from tests.unit.test_windows_merger import (
    REFERENCE,
    T0,
    Partition,
    by_series,
    prediction,
)

MODEL = {
    "task": "binary",
    "reference": "ref.json",
    "window": {"size": 60, "allowed_lateness": 10, "label_horizon": 600},
    "drift": {"min_samples": 2, "numeric_methods": ["ks"], "categorical_methods": ["chi2"]},
    "performance": {"metrics": ["accuracy"], "min_labelled": 1},
    "features": [
        {"name": "x", "kind": "numeric"},
        {"name": "plan", "kind": "categorical"},
    ],
}
# "churn" is served live; "batchy" is uploaded in batches, its events ten
# minutes behind churn's on the same topics.
CONFIG = MonitorConfig.model_validate(
    {"models": [{"id": "churn", **MODEL}, {"id": "batchy", **MODEL}]}
)
BEHIND_S = 600


def load(model_id: str, version: str) -> Any:
    return REFERENCE if version == "1" else None


def batchy(pid: str, second: float, x: float) -> bytes:
    """A prediction of the batch-uploaded model (same shape as churn's)."""
    document = orjson.loads(prediction(pid, second, x))
    document["model_id"] = "batchy"
    return orjson.dumps(document)


def start_us(second: int) -> int:
    return int((T0 + timedelta(seconds=second)).timestamp() * 1_000_000)


def volumes(written: list[Point], model_id: str) -> dict[int, tuple[int, int]]:
    """(predictions, late_predictions) of a model's volume points, by window start (s)."""
    found: dict[int, tuple[int, int]] = {}
    for point in written:
        tags = dict(point.tags)
        if point.measurement == "volume" and tags["model_id"] == model_id:
            second = int((point.time_ns // 1000 - start_us(0)) // 1_000_000)
            on_time, late = point.fields["predictions"], point.fields["late_predictions"]
            assert isinstance(on_time, int) and isinstance(late, int)
            found[second] = (on_time, late)
    return found


def test_a_model_whose_events_run_behind_another_is_not_late() -> None:
    windows = PartitionWindows(CONFIG, load)
    windows.add_predictions(decoded([prediction(f"c{i}", BEHIND_S + i, 0.1) for i in range(5)]))
    # batchy's events are ten minutes older than churn's, within its own lateness
    windows.add_predictions(decoded([batchy(f"b{i}", i, 0.1) for i in range(5)]))
    assert dict(windows.late) == {}
    assert windows.predictions_by_window[WindowKey("batchy", "1", "all", start_us(0))] == 5
    assert windows.watermarks_us == {"churn": start_us(BEHIND_S + 4), "batchy": start_us(4)}
    # and against its own clock a batchy event is late as before
    windows.add_predictions(decoded([batchy("b-late", 70, 0.0), batchy("b-old", 2, 0.0)]))
    assert dict(windows.late) == {WindowKey("batchy", "1", "all", start_us(0)): 1}
    closed = windows.collect(None)
    assert [partial.key for partial in closed.drift] == [
        WindowKey("batchy", "1", "all", start_us(0))
    ]


def decoded(values: list[bytes]) -> list[PredictionEvent]:
    batch = decode_predictions(Partition(0).messages("p", values))
    assert batch.dead_letters == []
    return batch.events


def test_a_checkpoint_keeps_each_models_watermark_and_reads_the_older_single_one() -> None:
    windows = PartitionWindows(CONFIG, load)
    windows.add_predictions(decoded([prediction("c", BEHIND_S, 0.1), batchy("b", 3, 0.2)]))
    restored = PartitionWindows(CONFIG, load)
    restored.restore(orjson.loads(orjson.dumps(windows.snapshot())))
    assert restored.watermarks_us == {"churn": start_us(BEHIND_S), "batchy": start_us(3)}
    # A checkpoint written before watermarks were per model held one for the
    # partition: every configured model resumes from it.
    older = windows.snapshot()
    del older["watermarks"]
    older["watermark"] = start_us(BEHIND_S)
    restored.restore(orjson.loads(orjson.dumps(older)))
    assert restored.watermarks_us == {"churn": start_us(BEHIND_S), "batchy": start_us(BEHIND_S)}


class Pipeline:
    """Partitions and a merger fed as the worker feeds them, every model's watermark sent."""

    def __init__(self, partitions: int, idle_timeout_s: float = 30.0) -> None:
        self.clock = 0.0
        self.merger = WindowMerger(
            CONFIG, load, partitions=partitions, idle_timeout_s=idle_timeout_s, clock=self.now
        )
        self.parts = [Partition(number, load, CONFIG) for number in range(partitions)]
        self.written: list[Point] = []

    def now(self) -> float:
        return self.clock

    def step(self, number: int, predictions: list[bytes], seconds: float = 1.0) -> None:
        self.clock += seconds
        part = self.parts[number]
        result = part.processor.process(part.messages("p", predictions), now=T0 + timedelta(days=1))
        for drift in result.windows.drift:
            self.merger.add_drift(number, drift)
        for perf in result.windows.performance:
            self.merger.add_performance(number, perf)
        self.merger.add_late(number, result.windows.late)
        for model in CONFIG.models:
            self.merger.add_watermark(
                number, model.id, result.watermarks_us.get(model.id), result.join_watermark_us
            )
        self.written.extend(self.merger.evaluate())


def test_the_merger_closes_a_models_window_by_that_models_watermarks() -> None:
    run = Pipeline(partitions=1)
    run.step(0, [prediction(f"c{i}", BEHIND_S + i, 0.1 * i) for i in range(4)])
    run.step(0, [batchy(f"b{i}", i, 0.1 * i) for i in range(4)])
    # churn is ten minutes on; batchy's [0, 60) stays open until batchy passes 70 s
    run.step(0, [prediction("c9", BEHIND_S + 80, 0.0)])
    assert volumes(run.written, "batchy") == {}
    run.step(0, [batchy("b8", 30, 0.5), batchy("b9", 75, 0.0)])
    assert volumes(run.written, "batchy") == {0: (5, 0)}
    assert by_series(run.written, "feature_drift")  # drift of batchy's window was computed


def test_a_partition_without_a_models_traffic_holds_its_windows_only_until_idle() -> None:
    # batchy's traffic lands on partition 0 only; partition 1 reads churn all along
    # (it is heard, so not silent), and has no batchy watermark to send.
    run = Pipeline(partitions=2, idle_timeout_s=30.0)
    run.step(0, [batchy(f"b{i}", i, 0.1 * i) for i in range(4)])
    run.step(0, [batchy("b9", 75, 0.0)])
    for second in range(10):
        run.step(1, [prediction(f"c{second}", BEHIND_S + second, 0.0)], seconds=2.0)
    assert run.clock < 30.0
    assert volumes(run.written, "batchy") == {}  # partition 1 may still read batchy's
    for second in range(10, 20):
        run.step(1, [prediction(f"c{second}", BEHIND_S + second, 0.0)], seconds=2.0)
    assert volumes(run.written, "batchy") == {0: (4, 0)}


def test_a_partition_whose_share_of_a_model_stopped_holds_its_windows_only_until_idle() -> None:
    run = Pipeline(partitions=2, idle_timeout_s=30.0)
    run.step(1, [batchy("p1-first", 1, 0.0)])  # partition 1's batchy watermark: 1 s
    run.step(0, [batchy(f"b{i}", i, 0.1 * i) for i in range(4)])
    run.step(0, [batchy("b9", 75, 0.0)])
    run.step(1, [prediction("c0", BEHIND_S, 0.0)], seconds=10.0)
    assert volumes(run.written, "batchy") == {}
    for second in range(1, 6):  # churn moves on, batchy does not on partition 1
        run.step(1, [prediction(f"c{second}", BEHIND_S + second, 0.0)], seconds=5.0)
    # partition 1's [0, 60) is still open there: it comes as late once it closes
    assert volumes(run.written, "batchy") == {0: (4, 0)}
    run.step(1, [batchy("p1-next", 90, 0.0)])
    assert volumes(run.written, "batchy")[0] == (4, 1)


def test_the_worker_sends_each_model_its_own_watermark(tmp_path: Path) -> None:
    (tmp_path / "ref.json").write_text(REFERENCE.to_json())
    settings = DriftlineSettings(
        data_dir=tmp_path / "data", topic_predictions="p", topic_labels="l"
    )
    worker = Worker(settings, CONFIG, tmp_path, partitions=1)
    messages = [
        RawMessage("p", 0, 0, b"c", prediction("c", BEHIND_S, 0.0)),
        RawMessage("p", 0, 1, b"b", batchy("b", 5, 0.0)),
    ]
    _, partials = worker.ingest(messages)
    marks = {
        document["model"]: document["watermark"]
        for document in (orjson.loads(value) for _, value in partials)
        if document["kind"] == "watermark"
    }
    assert marks == {"churn": start_us(BEHIND_S), "batchy": start_us(5)}
    _, partials = worker.ingest([RawMessage("p", 0, 2, b"c2", prediction("c2", BEHIND_S + 9, 0.0))])
    marks = {
        document["model"]: document["watermark"]
        for document in (orjson.loads(value) for _, value in partials)
        if document["kind"] == "watermark"
    }
    assert marks == {"churn": start_us(BEHIND_S + 9), "batchy": start_us(5)}
