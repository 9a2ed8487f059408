"""Partition windows and the merger: pure tests with hand-built traffic."""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import orjson
import pytest
from sklearn.metrics import accuracy_score, log_loss

from detectors.profile import CategoricalProfile, NumericProfile, ReferenceProfile
from detectors.registry import run_drift
from detectors.sketch import empty_sketch
from schemas import DEFAULT_LIMITS, LabelEvent, MonitorConfig, PredictionEvent
from streams import partition as partition_module
from streams.decode import RawMessage, decode_predictions
from streams.join import JoinPolicy, JoinState
from streams.merger import WindowMerger
from streams.partition import PartitionProcessor
from streams.points import Point
from streams.windows import (
    DriftAccumulator,
    FeatureColumns,
    PartitionWindows,
    PerformanceAccumulator,
    ReferenceLoader,
    WindowKey,
    _numeric_column,
    new_stats,
)

T0 = datetime(2026, 11, 1, tzinfo=UTC)
rng = np.random.default_rng(5)
REFERENCE = ReferenceProfile(
    "churn",
    "1",
    features={
        "x": NumericProfile.build(rng.normal(0, 1, 5000), bins=256),
        "plan": CategoricalProfile.build(["a", "b", "b", "c"] * 500),
    },
)
CONFIG = MonitorConfig.model_validate(
    {
        "models": [
            {
                "id": "churn",
                "task": "binary",
                "reference": "ref.json",
                "segment_by": ["region"],
                "window": {"size": 60, "allowed_lateness": 10, "label_horizon": 600},
                "drift": {"min_samples": 5, "numeric_methods": ["ks"],
                          "categorical_methods": ["chi2"]},
                "performance": {"metrics": ["accuracy"], "min_labelled": 1},
                "features": [{"name": "x", "kind": "numeric"},
                             {"name": "plan", "kind": "categorical"}],
            }
        ]
    }
)  # fmt: skip


def load(model_id: str, version: str) -> ReferenceProfile | None:
    return REFERENCE if (model_id, version) == ("churn", "1") else None


def prediction(pid: str, second: float, x: float, plan: str = "a", region: str = "eu") -> bytes:
    return orjson.dumps(
        {"prediction_id": pid, "model_id": "churn", "model_version": "1",
         "timestamp": (T0 + timedelta(seconds=second)).isoformat(),
         "features": {"x": x, "plan": plan}, "prediction": 1, "scores": {"1": 0.8},
         "segment": {"region": region}}
    )  # fmt: skip


def label(pid: str, second: float, value: int) -> bytes:
    return orjson.dumps(
        {"prediction_id": pid, "model_id": "churn", "label": value,
         "timestamp": (T0 + timedelta(seconds=second)).isoformat()}
    )  # fmt: skip


class Partition:
    def __init__(
        self, number: int, references: ReferenceLoader = load, config: MonitorConfig = CONFIG
    ) -> None:
        self.number = number
        self.offsets = {"p": 0, "l": 0}
        self.processor = PartitionProcessor(
            number,
            config,
            references,
            predictions_topic="p",
            labels_topic="l",
            limits=DEFAULT_LIMITS,
        )

    def messages(self, topic: str, values: list[bytes]) -> list[RawMessage]:
        out = []
        for value in values:
            try:
                key = str(orjson.loads(value)["prediction_id"]).encode()
            except (orjson.JSONDecodeError, KeyError):
                key = b"unparseable"
            out.append(RawMessage(topic, self.number, self.offsets[topic], key, value))
            self.offsets[topic] += 1
        return out


def feed(merger: WindowMerger, part: Partition, messages: list[RawMessage]) -> Any:
    result = part.processor.process(messages, now=T0 + timedelta(days=1))
    for drift in result.windows.drift:
        merger.add_drift(part.number, drift)
    for perf in result.windows.performance:
        merger.add_performance(part.number, perf)
    merger.add_late(part.number, result.windows.late)
    merger.add_dead_letters(part.number, result.windows.dead_letters)
    merger.add_watermark(
        part.number,
        "churn",
        result.watermarks_us.get("churn"),
        result.join_watermarks_us.get("churn"),
    )
    return result


def by_series(found: list[Point], measurement: str) -> dict[tuple[Any, ...], dict[str, Any]]:
    return {p.tags: p.fields for p in found if p.measurement == measurement}


def feed_first_window(merger: WindowMerger, first: Partition, second: Partition) -> list[float]:
    """Six predictions of window [0, 60 s), four to the first partition and two to the second."""
    xs = [0.1, -0.4, 1.2, 0.3, -1.0, 0.8]
    feed(
        merger,
        first,
        first.messages("p", [prediction(f"a{i}", i, x) for i, x in enumerate(xs[:4])]),
    )
    feed(
        merger,
        second,
        second.messages("p", [prediction(f"b{i}", i, x) for i, x in enumerate(xs[4:])]),
    )
    return xs


def test_a_window_is_evaluated_once_every_partition_has_closed_it() -> None:
    clock = [0.0]
    merger = WindowMerger(CONFIG, load, partitions=2, clock=lambda: clock[0])
    first, second = Partition(0), Partition(1)
    xs = feed_first_window(merger, first, second)
    # partition 0 moves past 60 + 10 s; partition 1 has not: nothing yet
    feed(merger, first, first.messages("p", [prediction("a9", 75, 0.0)]))
    assert merger.evaluate() == []
    feed(merger, second, second.messages("p", [prediction("b9", 71, 0.0)]))
    found = merger.evaluate()
    drift = by_series(found, "feature_drift")
    key = (("feature", "x"), ("method", "ks"), ("model_id", "churn"), ("model_version", "1"),
           ("segment", "all"))  # fmt: skip
    sketch = empty_sketch(REFERENCE.features["x"]).update(xs)
    want = run_drift("ks", REFERENCE.features["x"], sketch, min_samples=5)
    assert drift[key]["statistic"] == want.statistic
    assert drift[key]["n_current"] == 6
    volume = by_series(found, "volume")
    assert (
        volume[(("model_id", "churn"), ("model_version", "1"), ("segment", "all"))]["predictions"]
        == 6
    )
    assert (
        volume[(("model_id", "churn"), ("model_version", "1"), ("segment", "region=eu"))][
            "predictions"
        ]
        == 6
    )
    # evaluated once: a second call has nothing new
    assert by_series(merger.evaluate(), "feature_drift") == {}


def test_an_idle_partition_stops_holding_windows_back_after_the_timeout() -> None:
    clock = [0.0]
    merger = WindowMerger(CONFIG, load, partitions=2, idle_timeout_s=30, clock=lambda: clock[0])
    only = Partition(0)
    feed(merger, only, only.messages("p", [prediction(f"a{i}", i, 0.1 * i) for i in range(6)]))
    feed(merger, only, only.messages("p", [prediction("late-ish", 80, 0.0)]))
    clock[0] = 29.0
    assert by_series(merger.evaluate(), "volume") == {}
    clock[0] = 30.5
    volume = by_series(merger.evaluate(), "volume")
    assert (
        volume[(("model_id", "churn"), ("model_version", "1"), ("segment", "all"))]["predictions"]
        == 6
    )


def test_replayed_batches_change_nothing_and_late_predictions_are_counted() -> None:
    merger = WindowMerger(CONFIG, load, partitions=1)
    part = Partition(0)
    batch = part.messages("p", [prediction(f"a{i}", i, 0.2) for i in range(6)])
    feed(merger, part, batch)
    again = part.processor.process(batch, now=T0 + timedelta(days=1))  # a replay
    assert again.predictions == 0
    assert again.dead_letters == []
    feed(merger, part, part.messages("p", [prediction("z", 90, 0.0)]))
    feed(merger, part, part.messages("p", [prediction("late", 5, 0.0)]))  # window [0, 60) closed
    found = merger.evaluate()
    volume = by_series(found, "volume")[
        (("model_id", "churn"), ("model_version", "1"), ("segment", "all"))
    ]
    assert volume["predictions"] == 6
    assert volume["late_predictions"] == 1


def test_labels_update_performance_and_dead_letters_land_in_their_window() -> None:
    merger = WindowMerger(CONFIG, load, partitions=1)
    part = Partition(0)
    feed(merger, part, part.messages("p", [prediction(f"a{i}", i, 0.0) for i in range(4)]))
    feed(merger, part, part.messages("l", [label("a0", 30, 1), label("a1", 31, 0)]))
    bad = orjson.loads(prediction("bad", 3, 0.0))
    bad["features"] = {"x": [1]}
    feed(merger, part, part.messages("p", [orjson.dumps(bad), b"{not json"]))
    feed(merger, part, part.messages("p", [prediction("z", 90, 0.0)]))
    found = merger.evaluate()
    perf = by_series(found, "model_performance")[
        (("metric", "accuracy"), ("model_id", "churn"), ("model_version", "1"), ("segment", "all"))
    ]
    # two labels joined, both predicted 1: one right (a0), one wrong (a1)
    assert perf["value"] == 0.5
    assert perf["n_labelled"] == 2
    assert perf["coverage"] == pytest.approx(2 / 4)
    volume = by_series(found, "volume")[
        (("model_id", "churn"), ("model_version", "1"), ("segment", "all"))
    ]
    assert volume["dead_letters"] == 1  # the invalid JSON cannot be attributed
    assert part.processor.unattributed_dead_letters == 1


def test_checkpoints_restore_partition_and_merger_state() -> None:
    merger = WindowMerger(CONFIG, load, partitions=1)
    part = Partition(0)
    feed(merger, part, part.messages("p", [prediction(f"a{i}", i, 0.1 * i) for i in range(6)]))
    restored = Partition(0)
    restored.processor.restore(part.processor.to_bytes())
    restored.offsets = dict(part.offsets)
    merger_copy = WindowMerger(CONFIG, load, partitions=1)
    merger_copy.restore(orjson.loads(orjson.dumps(merger.snapshot())))
    closing = [prediction("z", 90, 0.0)]
    feed(merger, part, part.messages("p", closing))
    feed(merger_copy, restored, restored.messages("p", closing))
    assert sorted(p.to_line_protocol() for p in merger.evaluate()) == sorted(
        p.to_line_protocol() for p in merger_copy.evaluate()
    )


def feed_split(merger: WindowMerger, part: Partition, messages: list[RawMessage]) -> list[Point]:
    """Like :func:`feed`, with the merger evaluating between the window partials and
    the watermark message (they can arrive in two reads of the partials topic)."""
    result = part.processor.process(messages, now=T0 + timedelta(days=1))
    for drift in result.windows.drift:
        merger.add_drift(part.number, drift)
    for perf in result.windows.performance:
        merger.add_performance(part.number, perf)
    found = merger.evaluate()
    merger.add_late(part.number, result.windows.late)
    merger.add_dead_letters(part.number, result.windows.dead_letters)
    merger.add_watermark(
        part.number,
        "churn",
        result.watermarks_us.get("churn"),
        result.join_watermarks_us.get("churn"),
    )
    return found + merger.evaluate()


ALL_0 = (("model_id", "churn"), ("model_version", "1"), ("segment", "all"))


def window_0(found: list[Point], measurement: str) -> list[dict[str, Any]]:
    """Fields of every ``measurement`` point of the ``all`` window at 0 s, in write order."""
    start = T0.timestamp() * 1_000_000_000
    return [
        dict(p.fields)
        for p in found
        if p.measurement == measurement and set(ALL_0) <= set(p.tags) and p.time_ns == start
    ]


def test_a_settled_window_keeps_its_counts_until_forgotten_and_ignores_replays() -> None:
    # size 60 s, lateness 10 s, horizon 600 s: [0, 60) settles once the join's
    # watermark passes 660 s and is forgotten past 660 + 600 s.
    clock = [0.0]
    merger = WindowMerger(CONFIG, load, partitions=2, clock=lambda: clock[0])
    first, second = Partition(0), Partition(1)
    written: list[Point] = []

    def step(
        part: Partition, predictions: Sequence[bytes] = (), labels: Sequence[bytes] = ()
    ) -> None:
        clock[0] += 5.0
        batch = part.messages("p", list(predictions)) + part.messages("l", list(labels))
        written.extend(feed_split(merger, part, batch))

    def last_volume() -> tuple[int, int, int]:
        final = window_0(written, "volume")[-1]
        return final["predictions"], final["late_predictions"], final["labels"]

    step(first, [prediction(f"a{i}", i, 0.1 * i) for i in range(4)])
    step(second, [prediction(f"b{i}", i, 0.2 * i) for i in range(2)])
    step(first, labels=[label("a0", 30, 1), label("a1", 31, 1)])
    step(first, [prediction("c", 80, 0.0), prediction("late-1", 5, 0.0)])
    step(second, [prediction("d", 80, 0.0)])
    before_settling = first.processor.to_bytes()
    # Both partitions' join watermarks pass 660 s; the first one's in a batch
    # whose watermark message is read after the merger settled the window.
    step(second, [prediction("e1", 700, 0.0)])
    step(second, labels=[label("e1", 701, 0)])
    step(first, [prediction("e0", 700, 0.0)], [label("e0", 701, 0)])
    # 4 + 2 on time, one late, two labels (a0, a1), whatever the partials' split
    assert last_volume() == (6, 1, 2)
    performance = window_0(written, "model_performance")
    assert performance[-1]["is_final"] is True and performance[-1]["n_labelled"] == 2

    # A prediction for the settled window: its volume is written again, in full.
    written.clear()
    step(first, [prediction("late-2", 7, 0.0)])
    assert len(window_0(written, "volume")) == 1 and last_volume() == (6, 2, 2)
    assert window_0(written, "model_performance") == []

    # A partition resuming from a checkpoint taken before the window settled
    # replays its partials: they leave the final points alone.
    written.clear()
    ignored = merger.ignored_partials
    first = Partition(0)
    first.processor.restore(before_settling)
    first.offsets = {"p": 6, "l": 2}  # where the checkpoint stood
    step(first, [prediction("e0", 700, 0.0)], [label("e0", 701, 0)])
    step(first, [prediction("late-2", 7, 0.0)])
    assert merger.ignored_partials > ignored
    assert window_0(written, "model_performance") == []
    assert last_volume() == (6, 2, 2)  # counts replace, never add up

    # Past retention on every partition the window is forgotten.
    for part in (first, second):
        step(part, [prediction(f"f{part.number}", 1300, 0.0)], [label(f"f{part.number}", 1301, 0)])
        step(part, [prediction(f"g{part.number}", 1310, 0.0)])
    written.clear()
    step(first, [prediction("late-3", 9, 0.0)])
    assert window_0(written, "volume") == []
    assert first.processor.windows.past_retention == 1
    snapshot = merger.snapshot()
    held = [
        WindowKey.decode(entry[0]).window_start_us
        for section in ("drift", "performance", "late", "dead", "closed", "settled")
        for entry in snapshot[section]
    ]
    assert held and int(T0.timestamp() * 1_000_000) not in held  # any segment
    assert key("all", 0) not in first.processor.windows.late


def test_performance_waits_for_a_partition_that_is_behind_before_it_is_final() -> None:
    clock = [0.0]
    merger = WindowMerger(CONFIG, load, partitions=2, clock=lambda: clock[0])
    first, second = Partition(0), Partition(1)
    written: list[Point] = []

    def step(part: Partition, predictions: Sequence[bytes], labels: Sequence[bytes]) -> None:
        clock[0] += 1.0
        batch = part.messages("p", list(predictions)) + part.messages("l", list(labels))
        written.extend(feed_split(merger, part, batch))

    # The first partition reads its share of [0, 60) and moves past the horizon
    # (660 s); the second, reading a backlog, has not read [0, 60) yet.
    step(first, [prediction(f"a{i}", i, 0.0) for i in range(3)], [label("a0", 30, 1)])
    step(first, [prediction("a9", 700, 0.0)], [label("a9", 701, 0)])
    performance = window_0(written, "model_performance")
    assert performance and not any(p["is_final"] for p in performance)
    # The second partition catches up: two predictions and their labels, then past 660 s.
    step(second, [prediction("b0", 1, 0.0), prediction("b1", 2, 0.0)], [])
    step(second, [], [label("b0", 40, 1), label("b1", 41, 0)])
    step(second, [prediction("b9", 700, 0.0)], [label("b9", 701, 0)])
    final = [p for p in window_0(written, "model_performance") if p["is_final"]]
    assert final and {p["n_labelled"] for p in final} == {3}  # a0, b0 and b1
    volume = window_0(written, "volume")[-1]
    assert (volume["predictions"], volume["labels"]) == (5, 3)


def test_the_first_late_prediction_of_a_settled_window_rewrites_its_volume() -> None:
    merger = WindowMerger(CONFIG, load, partitions=1)
    part = Partition(0)
    written: list[Point] = []
    for predictions, labels in (
        ([prediction(f"a{i}", i, 0.0) for i in range(3)], [label("a0", 30, 1)]),
        ([prediction("z", 700, 0.0)], [label("z", 701, 0)]),  # [0, 60) settles
        ([prediction("very-late", 4, 0.0)], []),  # its first late prediction
    ):
        batch = part.messages("p", predictions) + part.messages("l", labels)
        written.extend(feed_split(merger, part, batch))
    volume = window_0(written, "volume")[-1]
    assert (volume["predictions"], volume["late_predictions"], volume["labels"]) == (3, 1, 1)


def test_events_of_unmonitored_models_and_far_future_are_dead_letters() -> None:
    part = Partition(0)
    stranger = orjson.loads(prediction("s", 1, 0.0))
    stranger["model_id"] = "fraud"
    future = orjson.loads(prediction("f", 1, 0.0))
    future["timestamp"] = (T0 + timedelta(days=3)).isoformat()
    result = part.processor.process(
        part.messages("p", [orjson.dumps(stranger), orjson.dumps(future)]),
        now=T0 + timedelta(days=1),
    )
    reasons = sorted(letter.error_message for letter in result.dead_letters)
    assert reasons[0].startswith("model_id: 'fraud' is not monitored")
    assert reasons[1].startswith("timestamp: ") and "ahead of the clock" in reasons[1]
    assert part.processor.windows.watermark_us is None


def test_duplicate_predictions_stay_out_of_the_windows() -> None:
    merger = WindowMerger(CONFIG, load, partitions=1)
    part = Partition(0)
    originals = [prediction(f"a{i}", i, 0.1 * i) for i in range(6)]
    # the same ids again, in a later batch and inside one batch
    feed(merger, part, part.messages("p", [*originals, originals[0]]))
    feed(merger, part, part.messages("p", originals[1:3]))
    feed(merger, part, part.messages("p", [prediction("z", 90, 0.0)]))
    volume = by_series(merger.evaluate(), "volume")[
        (("model_id", "churn"), ("model_version", "1"), ("segment", "all"))
    ]
    assert volume["predictions"] == 6
    counters = part.processor.join.counters()
    assert sum(c.duplicate_predictions for c in counters.values()) == 3


def sliced_traffic(part: Partition) -> list[RawMessage]:
    """One backlog batch of 2,500 predictions over three windows, with what slices
    must not lose: ids repeated across slice boundaries, refused messages, late
    predictions, and labels for predictions before and after them in the batch."""
    values = []
    for i in range(2_500):
        second = i * 0.06 if i % 97 else max(0.0, i * 0.06 - 80)  # every 97th is late
        values.append(
            prediction(f"s{i}", second, (i % 13) / 3 - 2, "abc"[i % 3], ["eu", "us"][i % 2])
        )
    values[999] = values[1000] = prediction("edge", 50.0, 0.5)  # both sides of a boundary
    values[1500] = prediction("s10", 10.0, 0.1)  # a repeat of an id from the first slice
    values[1234] = b"{not json"
    values[2001] = b'{"prediction_id": "bad"}'
    labels = [label(f"s{i}", 100.0, i % 2) for i in range(0, 2_500, 7)]
    return part.messages("l", labels) + part.messages("p", values)


def test_a_batch_applied_in_slices_gives_what_it_gives_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    outcomes = []
    for slice_size in (partition_module.SLICE_PREDICTIONS, 10**9):
        monkeypatch.setattr(partition_module, "SLICE_PREDICTIONS", slice_size)
        slices: list[int] = []
        decode = decode_predictions

        def counted(
            messages: Sequence[Any], *args: Any, decode: Any = decode, slices: list[int] = slices
        ) -> Any:
            slices.append(len(messages))
            return decode(messages, *args)

        monkeypatch.setattr(partition_module, "decode_predictions", counted)
        merger = WindowMerger(CONFIG, load, partitions=1)
        part = Partition(0)
        result = feed(merger, part, sliced_traffic(part))
        feed(merger, part, part.messages("p", [prediction("z", 2_000, 0.0)]))
        outcomes.append(
            (
                sorted(p.to_line_protocol() for p in merger.evaluate()),
                [(letter.source_offset, letter.error_message) for letter in result.dead_letters],
                result.predictions,
                part.processor.join.counters(),
            )
        )
        assert max(slices) <= slice_size
        if slice_size < 2_500:
            assert slices == [1_000, 1_000, 500, 1]
    sliced, whole = outcomes
    assert sliced == whole
    lines, letters, predictions, counters = whole
    assert [offset for offset, _ in letters] == [1234, 2001]
    assert predictions == 2_500 - 2 - 2  # two refused, two repeats
    assert sum(c.joined for c in counters.values()) == len(range(0, 2_500, 7))
    assert sum(c.duplicate_predictions for c in counters.values()) == 2
    assert any("late_predictions=" in line for line in lines)
    labelled = [
        int(re.search(r"n_labelled=(\d+)i", line).group(1))  # type: ignore[union-attr]
        for line in lines
        if line.startswith("model_performance,")
        and "metric=accuracy" in line
        and "segment=all" in line
    ]
    assert len(labelled) == 3  # every label reached its window's performance
    assert sum(labelled) == len(range(0, 2_500, 7))


DAY_S = 86_400


def repeat_unlabelled_at_once(part: Partition) -> list[RawMessage]:
    """An id past its horizon on arrival (counted unlabelled, not held), repeated
    in the next slice."""
    values = [prediction("n", 2 * DAY_S, 0.0), prediction("old", 0, 0.1)]
    values += [prediction(f"n{i}", 2 * DAY_S + i / 100, 0.0) for i in range(998)]
    return part.messages("p", [*values, prediction("old", 0, 0.1)])


def repeat_of_an_id_expired_by_the_first_slice(part: Partition) -> list[RawMessage]:
    """An id held from an earlier batch whose horizon the first slice passes."""
    part.processor.process(part.messages("p", [prediction("x", 0, 0.1)]), now=T0)
    values = [prediction(f"n{i}", 2 * DAY_S + i / 100, 0.0) for i in range(1000)]
    return part.messages("p", [*values, prediction("x", 2 * DAY_S + 20, 0.1)])


def repeat_after_labels_expired_it(part: Partition) -> list[RawMessage]:
    """A held id repeated in a batch whose labels move the watermark past its horizon."""
    part.processor.process(part.messages("p", [prediction("x", 0, 0.1)]), now=T0)
    return part.messages("l", [label("zz", 2 * DAY_S, 1)]) + part.messages(
        "p", [prediction("x", 2 * DAY_S, 0.1)]
    )


@pytest.mark.parametrize(
    "traffic",
    [
        repeat_unlabelled_at_once,
        repeat_of_an_id_expired_by_the_first_slice,
        repeat_after_labels_expired_it,
    ],
)
def test_the_windows_count_the_predictions_the_join_counts_however_sliced(
    monkeypatch: pytest.MonkeyPatch, traffic: Any
) -> None:
    outcomes = []
    for slice_size in (partition_module.SLICE_PREDICTIONS, 10**9):
        monkeypatch.setattr(partition_module, "SLICE_PREDICTIONS", slice_size)
        part = Partition(0)
        messages = traffic(part)
        before = sum(
            c.predictions - c.duplicate_predictions for c in part.processor.join.counters().values()
        )
        windows = part.processor.windows
        counted: list[int] = []
        add = windows.add_predictions

        def counting(
            events: Sequence[PredictionEvent],
            add: Any = add,
            counted: list[int] = counted,
            **options: Any,
        ) -> None:
            counted.append(len(events))
            add(events, **options)

        monkeypatch.setattr(windows, "add_predictions", counting)
        result = part.processor.process(messages, now=T0 + timedelta(days=10))
        counters = part.processor.join.counters()
        new = sum(c.predictions - c.duplicate_predictions for c in counters.values()) - before
        # The windows count every prediction the join counted as new, and no other.
        assert sum(counted) == new == result.predictions
        outcomes.append((result.predictions, counters))
    assert outcomes[0] == outcomes[1]


# ------------------------------------------------- windows read each batch once

WIDE = ReferenceProfile(
    "churn",
    "1",
    features={
        "x": REFERENCE.features["x"],
        "plan": REFERENCE.features["plan"],
        "y": NumericProfile.build(rng.normal(3, 1, 2000), bins=64),
    },
    prediction=CategoricalProfile.build([0, 1, 1]),
)


def wide(model_id: str, version: str) -> ReferenceProfile | None:
    """The same wide reference for versions 1 and 2 of churn."""
    return WIDE if model_id == "churn" and version in ("1", "2") else None


def event(
    pid: str, second: float, features: dict[str, Any], *, region: str | None = "eu", **more: Any
) -> PredictionEvent:
    fields: dict[str, Any] = {
        "prediction_id": pid,
        "model_id": "churn",
        "model_version": "1",
        "timestamp": T0 + timedelta(seconds=second),
        "features": features,
        "prediction": 1,
        "segment": None if region is None else {"region": region},
    }
    return PredictionEvent(**(fields | more))


def sketches(windows: PartitionWindows, key: WindowKey) -> dict[str, Any]:
    accumulator = windows.drift[key]
    assert accumulator.prediction is not None
    return {**accumulator.features, "prediction": accumulator.prediction}


def expected(x: list[Any], plan: list[Any], y: list[Any], predicted: list[Any]) -> dict[str, Any]:
    """Sketches written out by hand: what each window must hold."""
    return {
        "x": empty_sketch(WIDE.features["x"]).update(x),
        "plan": empty_sketch(WIDE.features["plan"]).update(plan),
        "y": empty_sketch(WIDE.features["y"]).update(y),
        "prediction": empty_sketch(WIDE.prediction).update(predicted),  # type: ignore[arg-type]
    }


def key(segment: str, start_s: int, version: str = "1") -> WindowKey:
    return WindowKey("churn", version, segment, int((T0.timestamp() + start_s) * 1_000_000))


def test_every_window_and_segment_of_a_batch_counts_its_own_events() -> None:
    events = [
        event("a", 1, {"x": 0.5, "plan": "a", "y": 2.5}),
        event("b", 2, {"x": -1.0, "plan": "b", "y": "n/a"}),  # a string where y is numeric
        event("c", 3, {"x": None, "y": None}, region="us"),  # plan missing
        event("d", 4, {"x": 1.5, "plan": "zz", "y": True}, region=None, prediction=0),
        event("e", 61, {"x": 2.0, "plan": "c", "y": True}, region="us"),  # a bool: missing
        event("f", 62, {"x": 0.1, "plan": "a", "y": 4.0}, region="us"),
        event("g", 63, {"plan": "a"}, model_version="2"),  # other version, same reference
    ]
    windows = PartitionWindows(CONFIG, wide)
    windows.add_predictions(events)
    # A string or a bool where y is numeric is missing, whatever else the batch holds.
    want = {
        key("all", 0): expected([0.5, -1.0, None, 1.5], ["a", "b", None, "zz"],
                                [2.5, None, None, None], [1, 1, 1, 0]),
        key("region=eu", 0): expected([0.5, -1.0], ["a", "b"], [2.5, None], [1, 1]),
        key("region=us", 0): expected([None], [None], [None], [1]),
        key("region=<none>", 0): expected([1.5], ["zz"], [None], [0]),
        key("all", 60): expected([2.0, 0.1], ["c", "a"], [None, 4.0], [1, 1]),
        key("region=us", 60): expected([2.0, 0.1], ["c", "a"], [None, 4.0], [1, 1]),
        key("all", 60, "2"): expected([None], ["a"], [None], [1]),
        key("region=eu", 60, "2"): expected([None], ["a"], [None], [1]),
    }  # fmt: skip
    assert set(windows.drift) == set(want)
    for window, sketch in want.items():
        assert sketches(windows, window) == sketch, window
        assert windows.predictions_by_window[window] == sketch["prediction"].n_total
        assert windows.drift[window].predictions == sketch["prediction"].n_total
    assert windows.watermark_us == key("all", 63).window_start_us

    # One event per batch in time order gives the same windows as one batch.
    together, one_by_one = PartitionWindows(CONFIG, wide), PartitionWindows(CONFIG, wide)
    together.add_predictions(events)
    for single in events:
        one_by_one.add_predictions([single])
    assert set(one_by_one.drift) == set(together.drift) == set(want)
    for window in want:
        assert sketches(one_by_one, window) == sketches(together, window)


def test_predictions_for_closed_windows_are_late_in_every_segment() -> None:
    windows = PartitionWindows(CONFIG, wide)
    windows.add_predictions([event("a", 130, {"x": 0.0, "plan": "a", "y": 1.0})])
    # [0, 60) closed at 70 and [60, 120) at 130: only [120, 180) is open
    windows.add_predictions(
        [
            event("b", 5, {"x": 1.0, "plan": "a", "y": 1.0}, region="us"),
            event("c", 65, {"x": 1.0, "plan": "a", "y": 1.0}),
            event("d", 125, {"x": 9.0, "plan": "b", "y": 2.0}, region="us"),
        ]
    )
    assert dict(windows.late) == {
        key("all", 0): 1,
        key("region=us", 0): 1,
        key("all", 60): 1,
        key("region=eu", 60): 1,
    }
    assert sketches(windows, key("all", 120)) == expected(
        [0.0, 9.0], ["a", "b"], [1.0, 2.0], [1, 1]
    )
    assert windows.performance[key("region=us", 0)].predictions == 1
    assert windows.watermark_us == key("all", 130).window_start_us


def test_lateness_does_not_depend_on_how_predictions_were_batched() -> None:
    # In offset order: 130 closes [0, 60) (closed from 70 on), so the 5 after it
    # is late, whether the three come in one batch or one at a time.
    events = [
        event("a", 1, {"x": 0.0, "plan": "a", "y": 1.0}),
        event("b", 130, {"x": 1.0, "plan": "a", "y": 1.0}),
        event("c", 5, {"x": 2.0, "plan": "b", "y": 2.0}),
    ]
    together, one_by_one = PartitionWindows(CONFIG, wide), PartitionWindows(CONFIG, wide)
    together.add_predictions(events)
    for single in events:
        one_by_one.add_predictions([single])
    assert (
        dict(together.late)
        == dict(one_by_one.late)
        == {
            key("all", 0): 1,
            key("region=eu", 0): 1,
        }
    )
    assert sketches(together, key("all", 0)) == sketches(one_by_one, key("all", 0))
    assert sketches(together, key("all", 0)) == expected([0.0], ["a"], [1.0], [1])


def test_event_times_are_read_to_the_microsecond_as_the_join_reads_them() -> None:
    # 2040-03-03T15:15:39.027856Z through a float timestamp is one microsecond short.
    moment = datetime(2040, 3, 3, 15, 15, 39, 27_856, tzinfo=UTC)
    days = (moment.date() - datetime(1970, 1, 1).date()).days
    exact = ((days * 24 + 15) * 60 + 15) * 60 * 1_000_000 + 39_027_856
    windows = PartitionWindows(CONFIG, wide)
    windows.add_predictions([event("p", 0, {"x": 1.0}, timestamp=moment)])
    assert windows.watermark_us == exact


@pytest.mark.parametrize("size", ["4.1s", "1001ms", "16.4s"])
def test_labels_land_in_the_window_of_their_prediction_whatever_the_window_size(
    size: str,
) -> None:
    # 4.1 s through a float is 4,099,999.99… µs: the windows truncated it while
    # the join rounded it, and their window starts drifted apart.
    config = MonitorConfig.model_validate(
        {"models": [{"id": "churn", "task": "binary", "reference": "ref.json",
                     "window": {"size": size, "allowed_lateness": "1s", "label_horizon": "60s"},
                     "performance": {"metrics": ["accuracy"], "min_labelled": 1},
                     "features": [{"name": "x", "kind": "numeric"}]}]}
    )  # fmt: skip
    processor = PartitionProcessor(
        0, config, load, predictions_topic="p", labels_topic="l", limits=DEFAULT_LIMITS
    )
    ids = [f"a{i}" for i in range(8)]
    predictions = [
        RawMessage("p", 0, at, pid.encode(), prediction(pid, 1 + 2 * at, 0.5))
        for at, pid in enumerate(ids)
    ]
    labels = [RawMessage("l", 0, at, pid.encode(), label(pid, 30, 1)) for at, pid in enumerate(ids)]
    processor.process(predictions, now=T0 + timedelta(days=1))
    processor.process(labels, now=T0 + timedelta(days=1))
    windows = processor.windows.performance.values()
    assert sum(window.predictions for window in windows) == len(ids)
    assert all(window.n_labelled == window.predictions for window in windows)


def test_a_regression_model_refuses_a_label_or_prediction_that_is_not_a_number() -> None:
    # The schema takes any scalar; a regression model's metrics need numbers. One
    # string label used to raise out of process() after the join had applied the
    # batch, so the partition stopped at it on every restart.
    config = MonitorConfig.model_validate(
        {"models": [{"id": "price", "task": "regression", "reference": "ref.json",
                     "window": {"size": 60, "allowed_lateness": 10, "label_horizon": 600},
                     "performance": {"metrics": ["mae"], "min_labelled": 1},
                     "features": [{"name": "x", "kind": "numeric"}]}]}
    )  # fmt: skip

    def message(topic: str, offset: int, pid: str, **fields: Any) -> RawMessage:
        moment = (T0 + timedelta(seconds=offset)).isoformat()
        document = {"prediction_id": pid, "model_id": "price", "timestamp": moment, **fields}
        return RawMessage(topic, 0, offset, pid.encode(), orjson.dumps(document))

    def predicted(offset: int, pid: str, value: Any) -> RawMessage:
        return message("p", offset, pid, model_version="1", features={"x": 1.0}, prediction=value)

    processor = PartitionProcessor(
        0, config, load, predictions_topic="p", labels_topic="l", limits=DEFAULT_LIMITS
    )
    now = T0 + timedelta(days=1)
    first = processor.process(
        [predicted(0, "a", 10.0), predicted(1, "b", 11), predicted(2, "c", "high"),
         predicted(3, "d", True), predicted(4, "e", 12.5)],
        now=now,
    )  # fmt: skip
    second = processor.process(
        [message("l", 0, "a", label=11.0), message("l", 1, "b", label="n/a"),
         message("l", 2, "e", label=False), message("l", 3, "e2", label=0.5)],
        now=now,
    )  # fmt: skip
    huge = b'{"prediction_id": "f", "model_id": "price", "timestamp": "2026-11-01T00:00:05Z", '
    third = processor.process(
        [RawMessage("l", 0, 4, b"f", huge + b'"label": 1' + b"0" * 400 + b"}")]
    )
    refused = [
        (letter.source_topic, letter.source_offset, letter.error_message)
        for letter in [*first.dead_letters, *second.dead_letters, *third.dead_letters]
    ]
    why = "is not a finite number, and model 'price' is a regression model"
    assert refused == [
        ("p", 2, f"prediction: 'high' {why}"),
        ("p", 3, f"prediction: True {why}"),
        ("l", 1, f"label: 'n/a' {why}"),
        ("l", 2, f"label: False {why}"),
        ("l", 4, f"label: {10**400!r} {why}"),
    ]
    [window] = processor.windows.performance.values()
    assert (window.predictions, window.n_labelled) == (3, 1)  # a, b, e; only a's label is good
    assert processor.join.next_offset("l") == 5


@pytest.mark.parametrize("cuts", [(), (1,), (2,), (1, 2, 3)])
def test_a_prediction_past_its_label_horizon_is_left_out_of_coverage_however_batched(
    cuts: tuple[int, ...],
) -> None:
    # Window [0, 60 s) settles once the join's watermark passes 660 s. "e1" comes
    # in time; "q" moves the watermark to 1,000 s; "late" and "later" (at 6 and
    # 7 s) then come past the horizon: the join counts them unlabelled at once,
    # so the window holds a0, a1 and e1, one of them labelled, however the four
    # messages are cut into batches.
    merger = WindowMerger(CONFIG, load, partitions=1)
    part = Partition(0)
    feed(merger, part, part.messages("p", [prediction("a0", 1, 0.1), prediction("a1", 2, 0.2)]))
    feed(merger, part, part.messages("l", [label("a0", 30, 1), label("zz", 1000, 1)]))
    sequence = [
        prediction("e1", 5, 0.3),
        prediction("q", 1000, 0.0),
        prediction("late", 6, 0.0),
        prediction("later", 7, 0.0),
    ]
    bounds = [0, *cuts, len(sequence)]
    for start, end in itertools.pairwise(bounds):
        feed(merger, part, part.messages("p", sequence[start:end]))
    final = [
        (dict(point.tags)["segment"], point.fields)
        for point in merger.evaluate()
        if point.measurement == "model_performance" and point.time_ns == int(T0.timestamp()) * 10**9
    ]
    assert [(segment, fields["n_labelled"]) for segment, fields in final] == [
        ("all", 1),
        ("region=eu", 1),
    ]
    assert [fields["coverage"] for _, fields in final] == pytest.approx([1 / 3, 1 / 3])
    assert all(fields["is_final"] for _, fields in final)


def test_a_regression_pair_held_from_before_the_screen_is_left_out_not_raised() -> None:
    # A checkpoint of an older worker may hold a string prediction: its pair
    # must not stop the partition when its label comes.
    model = MonitorConfig.model_validate(
        {"models": [{"id": "price", "task": "regression", "reference": "ref.json",
                     "features": [{"name": "x", "kind": "numeric"}]}]}
    ).models[0]  # fmt: skip
    join = JoinState(0, {"price": JoinPolicy.from_model(model)})
    held = [
        PredictionEvent(prediction_id=pid, model_id="price", model_version="1",
                        timestamp=T0, features={}, prediction=value)
        for pid, value in [("a", 10.0), ("b", "high"), ("c", 12.0)]
    ]  # fmt: skip
    join.add_predictions(held, [0, 1, 2])
    labels = [
        LabelEvent(prediction_id=pid, model_id="price", label=value, timestamp=T0)
        for pid, value in [("a", 11.0), ("b", 3.0), ("c", "n/a")]
    ]
    pairs = join.add_labels(labels, [0, 1, 2])
    window = PerformanceAccumulator(new_stats(model))
    window.add_pairs(model, pairs)
    assert window.n_labelled == 1
    assert window.stats.compute(["mae"])["mae"].value == 1.0


def test_a_numeric_prediction_is_read_per_window_like_a_numeric_feature() -> None:
    reference = ReferenceProfile(
        "m",
        "1",
        features={"only": NumericProfile.build(rng.normal(0, 1, 500), bins=32)},
        prediction=NumericProfile.build(rng.normal(0, 1, 500), bins=32),
    )
    events = [
        event("a", 1, {"only": 0.5}, prediction=0.25),
        event("b", 2, {}, prediction="high"),
        event("c", 3, {"only": -0.5}, prediction=True),
    ]
    columns = FeatureColumns(reference, events)
    accumulator = DriftAccumulator.empty(reference)
    accumulator.update_columns(columns, np.array([0, 1]))  # a string: read as missing
    assert accumulator.prediction == empty_sketch(reference.prediction).update(  # type: ignore[arg-type]
        [0.25, None]
    )
    assert accumulator.features["only"] == empty_sketch(reference.features["only"]).update(
        [0.5, None]
    )
    alone = DriftAccumulator.empty(reference)
    alone.update_columns(columns, np.array([2]))  # a bool is missing too
    assert alone.prediction == empty_sketch(reference.prediction).update([None])  # type: ignore[arg-type]
    whole = DriftAccumulator.empty(reference)
    whole.update(events)
    assert whole.predictions == 3
    assert whole.prediction == empty_sketch(reference.prediction).update(  # type: ignore[arg-type]
        [0.25, None, None]
    )


@pytest.mark.parametrize("rows", [None, [], [3], [0, 2, 5, 7, 11], list(range(0, 40, 3))])
def test_columns_binned_once_count_what_each_window_would_count_alone(
    rows: list[int] | None,
) -> None:
    # Two numeric features with missing values (absent, null, a string, a bool),
    # a categorical one and a numeric prediction: every window's sketches from
    # the shared bins must equal sketches fed the selected values directly.
    reference = ReferenceProfile(
        "m",
        "1",
        features={
            "x": NumericProfile.build(rng.normal(0, 1, 500), bins=16),
            "y": NumericProfile.build(rng.exponential(2.0, 500), bins=64),
            "plan": CategoricalProfile.build(["a", "b", "b"]),
        },
        prediction=NumericProfile.build(rng.normal(0, 1, 500), bins=8),
    )
    odd: list[Any] = [None, "text", True, 1e300, -0.0]
    events = [
        event(
            f"p{at}",
            at,
            {
                "x": float(rng.normal()) if at % 4 else odd[at % 5],
                "y": float(rng.exponential(2.0)) if at % 7 else "seven",
                "plan": "abc"[at % 3],
            }
            | ({} if at % 9 else {"x": None}),
            prediction=float(rng.normal()) if at % 6 else "high",
        )
        for at in range(40)
    ]
    columns = FeatureColumns(reference, events)
    selected = None if rows is None else np.array(rows, dtype=np.intp)
    accumulator = DriftAccumulator.empty(reference)
    accumulator.update_columns(columns, selected)
    picked = events if rows is None else [events[row] for row in rows]

    def numbers(values: list[Any]) -> list[Any]:
        return [v if type(v) in (int, float) else None for v in values]

    for name in ("x", "y"):
        assert accumulator.features[name] == empty_sketch(reference.features[name]).update(
            numbers([e.features.get(name) for e in picked])
        ), name
    assert accumulator.features["plan"] == empty_sketch(reference.features["plan"]).update(
        [e.features["plan"] for e in picked]  # type: ignore[arg-type]
    )
    assert accumulator.prediction == empty_sketch(reference.prediction).update(  # type: ignore[arg-type]
        numbers([e.prediction for e in picked])
    )
    assert accumulator.predictions == len(picked)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([1.5, None, 2], [1.5, np.nan, 2.0]),
        ([1.5, True, False], [1.5, np.nan, np.nan]),
        ([1.5, "2.5", "x"], [1.5, np.nan, np.nan]),
        ([10**400, 3], [np.nan, 3.0]),
        ([np.float64(0.25), np.int64(4)], [0.25, np.nan]),
        ([], []),
    ],
)
def test_a_numeric_column_keeps_numbers_and_misses_the_rest(
    values: list[Any], expected: list[float]
) -> None:
    column = _numeric_column(values)
    assert column.dtype == np.float64
    np.testing.assert_array_equal(column, np.asarray(expected, dtype=np.float64))


MULTICLASS = MonitorConfig.model_validate(
    {
        "models": [
            {
                "id": "iris",
                "task": "multiclass",
                "reference": "ref.json",
                "window": {"size": 60, "allowed_lateness": 10, "label_horizon": 600},
                "performance": {"metrics": ["accuracy", "log_loss"], "min_labelled": 1},
                "features": [{"name": "x", "kind": "numeric"}],
            }
        ]
    }
)


def test_multiclass_log_loss_comes_from_the_class_scores_of_joined_predictions() -> None:
    classes = ["setosa", "versicolor", "virginica"]
    generator = np.random.default_rng(17)
    count = 40
    probabilities = generator.dirichlet([2.0, 2.0, 2.0], size=count)
    truth = [classes[i] for i in generator.integers(0, 3, size=count)]
    predicted = [classes[int(np.argmax(row))] for row in probabilities]
    predictions, labels = [], []
    for index in range(count):
        document: dict[str, Any] = {
            "prediction_id": f"q{index}", "model_id": "iris", "model_version": "1",
            "timestamp": (T0 + timedelta(seconds=index)).isoformat(),
            "features": {"x": float(index)}, "prediction": predicted[index],
        }  # fmt: skip
        if index % 8 != 7:  # every eighth prediction carries no scores
            scores = list(zip(classes, probabilities[index].tolist(), strict=True))
            # listed in a different order by every other prediction
            document["scores"] = dict(scores if index % 2 else scores[::-1])
        predictions.append(orjson.dumps(document))
        labels.append(
            orjson.dumps(
                {
                    "prediction_id": f"q{index}",
                    "model_id": "iris",
                    "label": truth[index],
                    "timestamp": (T0 + timedelta(seconds=index + 30)).isoformat(),
                }
            )
        )
    processor = PartitionProcessor(
        0, MULTICLASS, lambda *_: None, predictions_topic="p", labels_topic="l",
        limits=DEFAULT_LIMITS,
    )  # fmt: skip
    merger = WindowMerger(MULTICLASS, lambda *_: None, partitions=1, clock=lambda: 0.0)
    batches = [
        [RawMessage("p", 0, i, f"q{i}".encode(), v) for i, v in enumerate(predictions)],
        # labels in two batches, so two updates of the window are merged
        [RawMessage("l", 0, i, f"q{i}".encode(), v) for i, v in enumerate(labels[:25])],
        [RawMessage("l", 0, 25 + i, f"q{25 + i}".encode(), v) for i, v in enumerate(labels[25:])],
    ]
    for batch in batches:
        result = processor.process(batch, now=T0 + timedelta(days=1))
        for perf in result.windows.performance:
            merger.add_performance(0, perf)
        merger.add_watermark(
            0, "iris", result.watermarks_us.get("iris"), result.join_watermarks_us.get("iris")
        )
    found = by_series(merger.evaluate(), "model_performance")
    metric = {dict(tags)["metric"]: fields for tags, fields in found.items()}
    scored = [index for index in range(count) if index % 8 != 7]
    assert metric["accuracy"]["value"] == pytest.approx(accuracy_score(truth, predicted))
    assert metric["accuracy"]["n_labelled"] == count
    want = log_loss([truth[i] for i in scored], probabilities[scored], labels=classes)
    assert metric["log_loss"]["value"] == pytest.approx(want, rel=1e-12)
    assert metric["log_loss"]["n_labelled"] == len(scored)


def test_no_drift_from_a_window_some_partitions_sketched_without_the_profile() -> None:
    # Partition 1 started before the profile was written: it counts its
    # predictions but has no sketches. Drift from partition 0's sketches alone
    # would describe two thirds of the window as if it were all of it.
    merger = WindowMerger(CONFIG, load, partitions=2, clock=lambda: 0.0)
    first, second = Partition(0), Partition(1, lambda *_: None)
    feed_first_window(merger, first, second)
    feed(merger, first, first.messages("p", [prediction("a9", 75, 0.0)]))
    feed(merger, second, second.messages("p", [prediction("b9", 71, 0.0)]))
    found = merger.evaluate()
    assert by_series(found, "feature_drift") == {}
    assert by_series(found, "data_quality") == {}
    assert merger.incomplete_drift == 2  # the all segment and region=eu
    volume = by_series(found, "volume")
    assert (
        volume[(("model_id", "churn"), ("model_version", "1"), ("segment", "all"))]["predictions"]
        == 6
    )


def test_a_profile_found_mid_window_gives_drift_from_the_next_window_on() -> None:
    available = [False]

    def appearing(model_id: str, version: str) -> ReferenceProfile | None:
        return load(model_id, version) if available[0] else None

    merger = WindowMerger(CONFIG, appearing, partitions=1, clock=lambda: 0.0)
    part = Partition(0, appearing)
    feed(merger, part, part.messages("p", [prediction(f"a{i}", i, 0.1 * i) for i in range(4)]))
    available[0] = True  # the profile is written while window [0, 60 s) is open
    feed(merger, part, part.messages("p", [prediction(f"b{i}", 4 + i, 0.2) for i in range(2)]))
    xs = [0.3, -0.2, 1.1, 0.0, -0.7, 0.4, 0.9]
    feed(
        merger,
        part,
        part.messages("p", [prediction(f"c{i}", 61 + i, x) for i, x in enumerate(xs)]),
    )
    feed(merger, part, part.messages("p", [prediction("z", 200, 0.0)]))
    found = merger.evaluate()
    drift = [
        p for p in found if p.measurement == "feature_drift" and dict(p.tags)["feature"] == "x"
    ]
    starts = {p.time for p in drift}
    assert len(starts) == 1  # the second window only
    [all_segment] = [p for p in drift if dict(p.tags)["segment"] == "all"]
    assert all_segment.fields["n_current"] == len(xs)
    sketch = empty_sketch(REFERENCE.features["x"]).update(xs)
    want = run_drift("ks", REFERENCE.features["x"], sketch, min_samples=5)
    assert all_segment.fields["statistic"] == want.statistic
    assert merger.incomplete_drift == 2  # the first window: all and region=eu


class TwoPartitions:
    """A merger over two partitions fed step by step, a second of clock per step."""

    def __init__(self) -> None:
        self.clock = [0.0]
        self.merger = WindowMerger(CONFIG, load, partitions=2, clock=lambda: self.clock[0])
        self.p0, self.p1 = Partition(0), Partition(1)
        self.written: list[Point] = []

    def step(self, part: Partition, predictions: list[bytes], labels: list[bytes]) -> None:
        self.clock[0] += 1.0
        batch = part.messages("p", predictions) + part.messages("l", labels)
        self.written.extend(feed_split(self.merger, part, batch))


@pytest.mark.parametrize("p1_first", [False, True])
def test_a_window_made_final_by_another_partition_is_written_final(p1_first: bool) -> None:
    # Partition 0 holds all of [0, 60) and settles it first; the window is final
    # for the merger only when partition 1, which has nothing in it, passes its
    # horizon too: that must write is_final, whichever partition is read first.
    two = TwoPartitions()
    merger, p0, p1, step, written = two.merger, two.p0, two.p1, two.step, two.written

    step(p0, [prediction(f"a{i}", i, 0.0) for i in range(3)], [label("a0", 30, 1)])
    step(p1, [prediction("b0", 65, 0.0)], [label("b0", 66, 1)])
    moves = [
        (p0, [prediction("a9", 700, 0.0)], [label("a9", 701, 0)]),
        (p1, [prediction("b9", 700, 0.0)], [label("b9", 701, 0)]),
    ]
    for part, predictions, labels in reversed(moves) if p1_first else moves:
        step(part, predictions, labels)
    for moment in (100.0, 1000.0):
        two.clock[0] = moment
        written.extend(merger.evaluate())
    final = [fields for fields in window_0(written, "model_performance") if fields["is_final"]]
    assert [(fields["n_labelled"], fields["coverage"]) for fields in final] == [(1, 1 / 3)]


def test_a_drift_partial_after_its_window_was_evaluated_rewrites_the_volume() -> None:
    clock = [0.0]
    merger = WindowMerger(CONFIG, load, partitions=2, idle_timeout_s=30, clock=lambda: clock[0])
    p0, p1 = Partition(0), Partition(1)
    written: list[Point] = []

    def step(part: Partition, predictions: list[bytes]) -> None:
        written.extend(feed_split(merger, part, part.messages("p", predictions)))

    step(p0, [prediction(f"a{i}", i, 0.1 * i) for i in range(6)])
    step(p1, [prediction("b0", 1, 0.0), prediction("b1", 2, 0.0)])  # 2 more in [0, 60)
    step(p0, [prediction("a9", 80, 0.0)])  # partition 0 closes [0, 60)
    clock[0] = 40.0  # partition 1 silent for more than 30 s: evaluated without it
    written.extend(merger.evaluate())
    step(p1, [prediction("b9", 80, 0.0)])  # its partial now: 2 late predictions
    for moment in (41.0, 50.0, 100.0):
        clock[0] = moment
        written.extend(merger.evaluate())
    volume = window_0(written, "volume")
    assert (volume[-1]["predictions"], volume[-1]["late_predictions"]) == (6, 2)


@pytest.mark.parametrize("restart", [False, True])
def test_counts_that_came_while_points_were_held_back_are_written_after_a_restart(
    restart: bool,
) -> None:
    # Under the sink's back-pressure the worker checkpoints the merger without
    # evaluating it: a late count received then is not written yet.
    merger = WindowMerger(CONFIG, load, partitions=1)
    part = Partition(0)
    feed(merger, part, part.messages("p", [prediction(f"a{i}", i, 0.1 * i) for i in range(6)]))
    feed(
        merger,
        part,
        part.messages("p", [prediction("z", 700, 0.0)]) + part.messages("l", [label("z", 701, 0)]),
    )
    assert window_0(merger.evaluate(), "volume")[-1]["late_predictions"] == 0
    feed(merger, part, part.messages("p", [prediction("late", 5, 0.0)]))
    if restart:
        document = orjson.loads(orjson.dumps(merger.snapshot()))
        merger = WindowMerger(CONFIG, load, partitions=1)
        merger.restore(document)
    later = [point for _ in range(3) for point in merger.evaluate()]
    assert [fields["late_predictions"] for fields in window_0(later, "volume")] == [1]


@pytest.mark.parametrize("order", ["partition 1 first", "partition 0 first"])
def test_a_partition_whose_labels_lag_keeps_the_window_open_whatever_the_read_order(
    order: str,
) -> None:
    # Partition 1's predictions run ahead (700 s) while its labels lag: its drift
    # watermark passes [0, 60)'s horizon (660 s) long before its join's does, and
    # a late prediction of the window and its label still come. The merger must
    # wait for its join watermark, as the partition does, in either order.
    two = TwoPartitions()
    merger, p0, p1, step, written = two.merger, two.p0, two.p1, two.step, two.written

    p0_steps = [
        ([prediction(f"a{i}", i, 0.0) for i in range(3)], [label("a0", 30, 1)]),
        ([prediction("a9", 700, 0.0)], [label("a9", 701, 0)]),
    ]
    p1_steps = [
        ([prediction("b9", 700, 0.0)], []),
        ([prediction("b0", 5, 0.0)], []),
        ([], [label("b0", 40, 1)]),
        ([], [label("b9", 701, 0)]),
    ]
    if order == "partition 1 first":
        plan = [(p1, s) for s in p1_steps[:3]] + [(p0, s) for s in p0_steps] + [(p1, p1_steps[3])]
    else:
        plan = [(p1, p1_steps[0])] + [(p0, s) for s in p0_steps] + [(p1, s) for s in p1_steps[1:]]
    for part, (predictions, labels) in plan:
        step(part, predictions, labels)
    final = [fields for fields in window_0(written, "model_performance") if fields["is_final"]]
    assert [(fields["n_labelled"], fields["coverage"]) for fields in final] == [(2, 0.5)]
    assert merger.ignored_partials == 0


class _OnePartition:
    """Traffic on partition 0 only, of a merger of ``partitions``; the clock moves each step."""

    def __init__(self, *, partitions: int, tick_s: float) -> None:
        self.clock = 0.0
        self.tick_s = tick_s
        self.merger = WindowMerger(CONFIG, load, partitions=partitions, clock=lambda: self.clock)
        self.partition = Partition(0)
        self.written: list[Point] = []

    def step(self, predictions: Sequence[bytes] = (), labels: Sequence[bytes] = ()) -> None:
        self.clock += self.tick_s
        part = self.partition
        batch = part.messages("p", list(predictions)) + part.messages("l", list(labels))
        self.written.extend(feed_split(self.merger, part, batch))
        self.written.extend(self.merger.evaluate())


def test_a_late_prediction_right_at_the_forgetting_point_is_counted_once() -> None:
    # [0, 60) is forgotten past 60 + 600 + 600 = 1260 s of join watermark.  At
    # exactly 1260 s the partition still counts a late prediction in the window;
    # the merger must still hold the window to write it (it dropped the count).
    feed = _OnePartition(partitions=1, tick_s=5.0)
    only, step, written = feed.partition, feed.step, feed.written
    step([prediction(f"a{i}", i, 0.1 * i) for i in range(4)], [label("a0", 30, 1)])
    step([prediction("b", 700, 0.0)], [label("b", 700, 1)])
    step([prediction("c", 1260, 0.0)], [label("c", 1260, 1)])
    assert only.processor.join.watermark_us == int((T0.timestamp() + 1260) * 1_000_000)
    written.clear()
    step([prediction("late", 7, 0.0)])
    assert only.processor.windows.past_retention == 0
    volumes = window_0(written, "volume")
    assert volumes and volumes[-1]["late_predictions"] == 1


def test_a_partition_that_reads_nothing_holds_no_window_back() -> None:
    # Two partitions, all traffic on the first: a window with late predictions
    # only still gets its volume point, and old windows are forgotten (they
    # were held for ever, the merger's checkpoint growing with every window).
    feed = _OnePartition(partitions=2, tick_s=40.0)  # past the idle timeout (30 s) each step
    merger, step, written = feed.merger, feed.step, feed.written
    step([prediction("a", 200, 0.0), prediction("late", 5, 0.0)])  # [0, 60): late only
    for second in range(300, 3000, 60):
        step([prediction(f"b{second}", second, 0.0)], [label(f"b{second}", second + 1, 1)])
    volumes = window_0(written, "volume")
    assert volumes and volumes[-1]["late_predictions"] == 1 and volumes[-1]["predictions"] == 0
    held = merger.snapshot()
    starts = {
        WindowKey.decode(entry[0]).window_start_us
        for section in ("closed", "settled", "late")
        for entry in held[section]
    }
    assert int(T0.timestamp() * 1_000_000) not in starts  # [0, 60) forgotten
    assert len(starts) < 30  # only the windows within retention (45 were seen)
