"""A model that runs behind others on the same topics is judged by its own events' times."""

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
# minutes behind churn's on the same topics, and configured to run up to a day
# behind. "plain" runs behind too, but is not configured for it.
BEHIND_S = 600
DAY = 86_400
BATCHY = {**MODEL, "window": {**MODEL["window"], "runs_behind": "1d"}}  # type: ignore[dict-item]
CONFIG = MonitorConfig.model_validate(
    {"models": [{"id": "churn", **MODEL}, {"id": "batchy", **BATCHY}, {"id": "plain", **MODEL}]}
)


def load(model_id: str, version: str) -> Any:
    return REFERENCE if version == "1" else None


def of_model(model_id: str, document: bytes) -> bytes:
    """The same event, of another model."""
    event = orjson.loads(document)
    event["model_id"] = model_id
    return orjson.dumps(event)


def batchy(pid: str, second: float, x: float) -> bytes:
    return of_model("batchy", prediction(pid, second, x))


def batchy_label(pid: str, second: float, value: int) -> bytes:
    return of_model("batchy", label(pid, second, value))


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


def decoded(values: list[bytes]) -> list[PredictionEvent]:
    batch = decode_predictions(Partition(0).messages("p", values))
    assert batch.dead_letters == []
    return batch.events


def decoded_labels(values: list[bytes]) -> list[LabelEvent]:
    batch = decode_labels(Partition(0).messages("l", values))
    assert batch.dead_letters == []
    return batch.events


def test_a_model_that_runs_behind_is_judged_by_its_own_events() -> None:
    windows = PartitionWindows(CONFIG, load)
    windows.add_predictions(decoded([prediction(f"c{i}", BEHIND_S + i, 0.1) for i in range(5)]))
    # ten minutes behind churn: batchy's within its own lateness, plain's late
    windows.add_predictions(decoded([batchy(f"b{i}", i, 0.1) for i in range(5)]))
    windows.add_predictions(decoded([of_model("plain", prediction("p", 1, 0.1))]))
    assert dict(windows.late) == {WindowKey("plain", "1", "all", start_us(0)): 1}
    assert windows.predictions_by_window[WindowKey("batchy", "1", "all", start_us(0))] == 5
    assert windows.watermarks_us == {
        "churn": start_us(BEHIND_S + 4),
        "batchy": start_us(4),
        "plain": start_us(BEHIND_S + 4),
    }
    # and against its own clock a batchy event is late as any other
    windows.add_predictions(decoded([batchy("b-late", 70, 0.0), batchy("b-old", 2, 0.0)]))
    assert windows.late[WindowKey("batchy", "1", "all", start_us(0))] == 1
    closed = windows.collect({})
    assert [partial.key for partial in closed.drift] == [
        WindowKey("batchy", "1", "all", start_us(0))
    ]


def test_a_model_runs_behind_the_partition_no_further_than_configured() -> None:
    windows = PartitionWindows(CONFIG, load)
    windows.add_predictions(decoded([batchy("b0", 5, 0.1)]))
    windows.add_predictions(decoded([prediction("c", DAY + 71, 0.1)]))
    # a day on, churn closes batchy's [0, 60) though batchy read nothing newer
    assert windows.watermarks_us["batchy"] == start_us(71)
    assert [partial.key for partial in windows.collect({}).drift] == [
        WindowKey("batchy", "1", "all", start_us(0))
    ]
    windows.add_predictions(decoded([batchy("b1", 6, 0.1)]))
    assert windows.late == {WindowKey("batchy", "1", "all", start_us(0)): 1}


def test_a_checkpoint_keeps_each_models_own_time_and_reads_the_older_partition_one() -> None:
    windows = PartitionWindows(CONFIG, load)
    windows.add_predictions(decoded([prediction("c", BEHIND_S, 0.1), batchy("b", 3, 0.2)]))
    restored = PartitionWindows(CONFIG, load)
    restored.restore(orjson.loads(orjson.dumps(windows.snapshot())))
    assert restored.watermarks_us == windows.watermarks_us
    assert restored.watermarks_us["batchy"] == start_us(3)
    # A checkpoint written before models had their own kept the partition's:
    # every model resumes from it.
    older = windows.snapshot()
    del older["own"]
    restored.restore(orjson.loads(orjson.dumps(older)))
    assert restored.watermarks_us["batchy"] == start_us(BEHIND_S)


def test_watermarks_of_a_model_taken_out_of_the_configuration_are_dropped() -> None:
    windows = PartitionWindows(CONFIG, load)
    windows.add_predictions(decoded([prediction("c", BEHIND_S, 0.1), batchy("b", 3, 0.2)]))
    windows.collect({"churn": start_us(1), "batchy": start_us(2)})
    churn_only = MonitorConfig.model_validate({"models": [{"id": "churn", **MODEL}]})
    restored = PartitionWindows(churn_only, load)
    restored.restore(orjson.loads(orjson.dumps(windows.snapshot())))
    assert restored.own_us == {"churn": start_us(BEHIND_S)}
    assert restored.join_watermarks_us == {"churn": start_us(1)}


class Pipeline:
    """Partitions and a merger fed as the worker feeds them, every model's watermark sent."""

    def __init__(self, partitions: int) -> None:
        self.clock = 0.0
        self.merger = WindowMerger(CONFIG, load, partitions=partitions, clock=self.now)
        self.parts = [Partition(number, load, CONFIG) for number in range(partitions)]
        self.written: list[Point] = []

    def now(self) -> float:
        return self.clock

    def step(self, number: int, predictions: list[bytes], labels: Sequence[bytes] = ()) -> None:
        self.clock += 1.0
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


def test_a_partition_without_the_models_traffic_holds_its_window_for_runs_behind() -> None:
    # batchy's traffic lands on partition 0 only; partition 1 reads churn, and
    # vouches for batchy only up to churn's time less a day.
    run = Pipeline(partitions=2)
    run.step(0, [batchy(f"b{i}", i, 0.1 * i) for i in range(4)])
    run.step(0, [batchy("b9", 75, 0.0)])  # partition 0 closes batchy's [0, 60)
    run.step(1, [prediction("c0", BEHIND_S, 0.0)])
    assert volumes(run.written, "batchy") == {}
    run.step(1, [prediction("c1", DAY + 70, 0.0)])
    assert volumes(run.written, "batchy") == {0: (4, 0)}


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


def test_a_model_that_runs_behind_joins_its_labels_by_its_own_horizon() -> None:
    # churn is half a day on; batchy's predictions, half a day old, are within
    # their own label horizon (600 s): they wait for labels, their window open.
    run = Pipeline(partitions=1)
    run.step(0, [prediction("c0", DAY // 2, 0.0)], [label("c0", DAY // 2 + 1, 1)])
    run.step(0, [batchy("b0", 5, 0.0), batchy("b1", 6, 0.0)], [batchy_label("b0", 30, 1)])
    plain = of_model("plain", prediction("p0", 5, 0.0))
    run.step(0, [plain])  # half a day behind too, but judged by the partition
    join = run.parts[0].processor.join
    assert join.counters()[("batchy", "1")] == JoinCounters(predictions=2, joined=1)
    assert join.counters()[("plain", "1")] == JoinCounters(predictions=1, unlabelled=1)
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

    def marks(messages: list[RawMessage]) -> dict[str, int]:
        _, partials = worker.ingest(messages)
        return {
            document["model"]: document["watermark"]
            for document in (orjson.loads(value) for _, value in partials)
            if document["kind"] == "watermark"
        }

    assert marks(
        [
            RawMessage("p", 0, 0, b"c", prediction("c", BEHIND_S, 0.0)),
            RawMessage("p", 0, 1, b"b", batchy("b", 5, 0.0)),
        ]
    ) == {"churn": start_us(BEHIND_S), "batchy": start_us(5), "plain": start_us(BEHIND_S)}
    assert marks([RawMessage("p", 0, 2, b"c2", prediction("c2", DAY + 9, 0.0))]) == {
        "churn": start_us(DAY + 9),
        "batchy": start_us(9),
        "plain": start_us(DAY + 9),
    }


POLICIES = {model.id: JoinPolicy.from_model(model) for model in CONFIG.models}


def test_the_joins_checkpoint_keeps_each_models_own_watermark() -> None:
    state = JoinState(0, POLICIES, predictions_topic="p", labels_topic="l")
    events = decoded([prediction("c", DAY, 0.0), batchy("b", 5, 0.0)])
    state.add_predictions(events, [0, 1])
    marks = state.watermarks_us
    # one topic seen: the partition trails churn's newest by max_skew (a day);
    # batchy's own trails its newest by as much, and the partition's less a day
    # is older still
    assert marks == {"churn": start_us(0), "batchy": start_us(5 - DAY), "plain": start_us(0)}
    restored = JoinState.from_bytes(state.to_bytes(), POLICIES)
    assert restored.watermarks_us == marks
    assert restored.to_bytes() == state.to_bytes()


def test_a_retired_models_held_predictions_expire_by_the_partitions_watermark() -> None:
    state = JoinState(0, POLICIES, predictions_topic="p", labels_topic="l")
    state.add_predictions(decoded([batchy("b", 5, 0.0)]), [0])
    retired = JoinState.from_bytes(state.to_bytes(), {"churn": POLICIES["churn"]})
    assert retired.pending_count == 1
    retired.add_labels(decoded_labels([label("c", 2 * DAY, 1)]), [0])
    retired.add_predictions(decoded([prediction("c", 2 * DAY, 0.0)]), [1])
    assert retired.counters()[("batchy", "1")].unlabelled == 1
    assert retired.pending_count == 0


def with_runs_behind(runs_behind: str) -> MonitorConfig:
    """CONFIG with batchy's runs_behind changed (as between two restarts)."""
    batchy_window = {**MODEL["window"], "runs_behind": runs_behind}  # type: ignore[dict-item]
    return MonitorConfig.model_validate(
        {
            "models": [
                {"id": "churn", **MODEL},
                {"id": "batchy", **MODEL, "window": batchy_window},
                {"id": "plain", **MODEL},
            ]
        }
    )


def test_raising_runs_behind_at_a_restart_moves_no_watermark_back() -> None:
    # What a partition has sent (and closed windows by) stays promised: the
    # watermarks it restores with a larger runs_behind start from those.
    windows = PartitionWindows(with_runs_behind("0s"), load)
    windows.add_predictions(decoded([batchy("b", 5, 0.1), prediction("c", 1000, 0.1)]))
    sent = windows.watermarks_us
    assert sent["batchy"] == start_us(1000)
    restored = PartitionWindows(with_runs_behind("1d"), load)
    restored.restore(orjson.loads(orjson.dumps(windows.snapshot())))
    assert restored.watermarks_us == sent
    restored.add_predictions(decoded([batchy("b-old", 70, 0.1)]))  # behind what was sent
    assert restored.late == {WindowKey("batchy", "1", "all", start_us(60)): 1}

    policies = {model.id: JoinPolicy.from_model(model) for model in with_runs_behind("0s").models}
    state = JoinState(0, policies, predictions_topic="p", labels_topic="l")
    state.add_labels(decoded_labels([label("c", 1000, 1)]), [0])
    state.add_predictions(decoded([batchy("b", 5, 0.0), prediction("c", 1000, 0.0)]), [0, 1])
    marks = state.watermarks_us
    assert marks["batchy"] == start_us(1000)
    raised = {model.id: JoinPolicy.from_model(model) for model in with_runs_behind("1d").models}
    again = JoinState.from_bytes(state.to_bytes(), raised)
    assert again.watermarks_us == marks
