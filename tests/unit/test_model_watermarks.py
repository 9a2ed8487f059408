"""Each model keeps its own event-time clock, though models share topics and partitions."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson

from schemas import DriftlineSettings, LabelEvent, MonitorConfig, PredictionEvent
from streams.app import Worker
from streams.decode import RawMessage, decode_labels, decode_predictions
from streams.join import JoinCounters, JoinPolicy, JoinState
from streams.merger import WindowMerger
from streams.points import Point
from streams.windows import PartitionWindows, WindowKey
from tests.unit.test_windows_merger import (
    REFERENCE,
    T0,
    Partition,
    by_series,
    label,
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


def batchy_label(pid: str, second: float, value: int) -> bytes:
    document = orjson.loads(label(pid, second, value))
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
    closed = windows.collect({})
    assert [partial.key for partial in closed.drift] == [
        WindowKey("batchy", "1", "all", start_us(0))
    ]


def decoded(values: list[bytes]) -> list[PredictionEvent]:
    batch = decode_predictions(Partition(0).messages("p", values))
    assert batch.dead_letters == []
    return batch.events


def decoded_labels(values: list[bytes]) -> list[LabelEvent]:
    batch = decode_labels(Partition(0).messages("l", values))
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

    def step(
        self,
        number: int,
        predictions: list[bytes],
        labels: Sequence[bytes] = (),
        seconds: float = 1.0,
    ) -> None:
        self.clock += seconds
        part = self.parts[number]
        batch = part.messages("p", predictions) + part.messages("l", list(labels))
        result = part.processor.process(batch, now=T0 + timedelta(days=30))
        assert result.dead_letters == []
        for drift in result.windows.drift:
            self.merger.add_drift(number, drift)
        for perf in result.windows.performance:
            self.merger.add_performance(number, perf)
        self.merger.add_late(number, result.windows.late)
        for model in CONFIG.models:
            self.merger.add_watermark(
                number,
                model.id,
                result.watermarks_us.get(model.id),
                result.join_watermarks_us.get(model.id),
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


def test_a_partition_that_read_none_of_a_models_events_holds_none_of_its_windows() -> None:
    # batchy's traffic lands on partition 0 only; partition 1 reads churn.
    run = Pipeline(partitions=2)
    run.step(0, [batchy(f"b{i}", i, 0.1 * i) for i in range(4)])
    run.step(0, [batchy("b9", 75, 0.0)])  # partition 0 closes batchy's [0, 60)
    # partition 1 has not reported yet: it may hold batchy's events
    assert volumes(run.written, "batchy") == {}
    run.step(1, [prediction("c0", BEHIND_S, 0.0)])  # it reports, without a batchy watermark
    assert run.clock < 30.0  # well before it could count as silent
    assert volumes(run.written, "batchy") == {0: (4, 0)}


def test_a_partition_between_two_events_of_a_sparse_model_holds_its_window() -> None:
    # Partition 1 has batchy's [0, 60) open; its next batchy event closes it.
    # Reading churn meanwhile, for longer than the idle timeout, it is not
    # silent: the window waits for its part instead of counting it late.
    run = Pipeline(partitions=2)
    run.step(1, [batchy("p1-first", 1, 0.0)])
    run.step(0, [batchy(f"b{i}", i, 0.1 * i) for i in range(4)])
    run.step(0, [batchy("b9", 75, 0.0)])
    for second in range(12):
        run.step(1, [prediction(f"c{second}", BEHIND_S + second, 0.0)], seconds=5.0)
    assert run.clock > 60.0
    assert volumes(run.written, "batchy") == {}
    run.step(1, [batchy("p1-next", 90, 0.0)])
    assert volumes(run.written, "batchy") == {0: (5, 0)}


def batchy_accuracy(written: list[Point]) -> list[dict[str, Any]]:
    """Fields of batchy's accuracy points of the window at 0 s, in the order written."""
    return [
        dict(point.fields)
        for point in written
        if point.measurement == "model_performance"
        and dict(point.tags)["model_id"] == "batchy"
        and dict(point.tags)["metric"] == "accuracy"
        and point.time_ns // 1000 == start_us(0)
    ]


def test_a_model_behind_another_joins_its_labels_by_its_own_horizon() -> None:
    # churn is a day on; batchy's predictions, a day old, are within their own
    # label horizon (600 s): they wait for labels and their window stays open.
    run = Pipeline(partitions=2)
    run.step(0, [prediction("c0", 86_400, 0.0)], [label("c0", 86_401, 1)])
    run.step(0, [batchy("b0", 5, 0.0), batchy("b1", 6, 0.0)], [batchy_label("b0", 30, 1)])
    processor = run.parts[0].processor
    assert processor.join.counters()[("batchy", "1")] == JoinCounters(predictions=2, joined=1)
    run.step(1, [prediction("c1", 86_400, 0.0)])  # partition 1 reports: no batchy
    run.step(0, [batchy("b2", 400, 0.0)], [batchy_label("b1", 401, 0)])
    performance = batchy_accuracy(run.written)
    assert [(fields["n_labelled"], fields["is_final"]) for fields in performance][-1] == (2, False)
    # past batchy's horizon (60 + 600 s) by its own clock: final, both labels in
    run.step(0, [batchy("b3", 2000, 0.0)], [batchy_label("b3", 2001, 1)])
    run.clock += 60.0
    run.written.extend(run.merger.evaluate())
    final = [fields for fields in batchy_accuracy(run.written) if fields["is_final"]]
    assert [(fields["n_labelled"], fields["value"]) for fields in final] == [(2, 0.5)]


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


POLICIES = {model.id: JoinPolicy.from_model(model) for model in CONFIG.models}


def test_the_joins_checkpoint_keeps_each_models_watermark() -> None:
    state = JoinState(0, POLICIES, predictions_topic="p", labels_topic="l")
    events = decoded([prediction("c", 86_400, 0.0), batchy("b", 5, 0.0)])
    state.add_predictions(events, [0, 1])
    marks = state.watermarks_us
    # one topic seen: each trails its model's newest prediction by max_skew (a day)
    assert marks == {"churn": start_us(0), "batchy": start_us(5) - 86_400_000_000}
    restored = JoinState.from_bytes(state.to_bytes(), POLICIES)
    assert restored.watermarks_us == marks
    assert restored.to_bytes() == state.to_bytes()


def test_a_retired_models_held_predictions_expire_by_the_other_models() -> None:
    # batchy is taken out of the configuration: no event moves its watermark
    # again, so its pending prediction goes by the newest of the others'.
    state = JoinState(0, POLICIES, predictions_topic="p", labels_topic="l")
    state.add_predictions(decoded([batchy("b", 5, 0.0)]), [0])
    retired = JoinState.from_bytes(state.to_bytes(), {"churn": POLICIES["churn"]})
    assert retired.pending_count == 1
    late_churn = decoded([prediction("c", 2 * 86_400, 0.0)])
    retired.add_labels(decoded_labels([label("c", 2 * 86_400, 1)]), [0])
    retired.add_predictions(late_churn, [1])
    assert retired.counters()[("batchy", "1")].unlabelled == 1
    assert retired.pending_count == 0


def test_a_window_closed_after_its_model_paused_past_retention_is_counted_not_lost() -> None:
    # batchy pauses for three days (churn goes on) and comes back: its last
    # window closes only now, when the merger has long let it go. Its
    # predictions count with those of forgotten windows instead of vanishing.
    run = Pipeline(partitions=1)
    run.step(0, [batchy(f"b{i}", i, 0.1 * i) for i in range(4)])
    run.step(0, [prediction("c0", 3 * 86_400, 0.0)], [label("c0", 3 * 86_400, 1)])
    run.step(0, [batchy("back", 3 * 86_400, 0.0)])
    windows = run.parts[0].processor.windows
    assert windows.past_retention == 4
    assert run.merger.ignored_partials == 0
    assert volumes(run.written, "batchy") == {}


def test_a_restored_merger_waits_for_a_partition_to_report_again() -> None:
    # What a partition reported before the merger's restart is not known after
    # it: until it reports again it may hold any model's events.
    run = Pipeline(partitions=2)
    run.step(1, [prediction("c0", BEHIND_S, 0.0)])  # reports: no batchy
    restored = WindowMerger(CONFIG, load, partitions=2, clock=run.now)
    restored.restore(orjson.loads(orjson.dumps(run.merger.snapshot())))
    run.merger = restored
    run.step(0, [batchy(f"b{i}", i, 0.1 * i) for i in range(4)])
    run.step(0, [batchy("b9", 75, 0.0)])
    assert volumes(run.written, "batchy") == {}
    run.step(1, [prediction("c1", BEHIND_S + 1, 0.0)])
    assert volumes(run.written, "batchy") == {0: (4, 0)}


def test_watermarks_of_a_model_taken_out_of_the_configuration_are_dropped() -> None:
    windows = PartitionWindows(CONFIG, load)
    windows.add_predictions(decoded([prediction("c", BEHIND_S, 0.1), batchy("b", 3, 0.2)]))
    windows.collect({"churn": start_us(1), "batchy": start_us(2)})
    churn_only = MonitorConfig.model_validate({"models": [{"id": "churn", **MODEL}]})
    restored = PartitionWindows(churn_only, load)
    restored.restore(orjson.loads(orjson.dumps(windows.snapshot())))
    assert restored.watermarks_us == {"churn": start_us(BEHIND_S)}
    assert restored.join_watermarks_us == {"churn": start_us(1)}
