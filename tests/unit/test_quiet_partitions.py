"""``window.close_when_idle``: a partition read to its end and quiet closes a model's windows."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from schemas import DriftlineSettings, MonitorConfig
from streams.app import Worker
from streams.decode import RawMessage
from streams.merger import WindowMerger
from streams.partition import PartitionProcessor
from streams.windows import WindowKey
from tests.unit.test_model_watermarks import MODEL, of_model, start_us
from tests.unit.test_windows_merger import REFERENCE, T0, Partition, label, prediction

# Windows of 60 s closing 10 s after their end, labels joined for 600 s after it.
# "churn" closes when idle for a minute; "plain" waits for events.
IDLE_S = 60
CHURN = {**MODEL, "window": {**MODEL["window"], "close_when_idle": f"{IDLE_S}s"}}  # type: ignore[dict-item]
CONFIG = MonitorConfig.model_validate(
    {"models": [{"id": "churn", **CHURN}, {"id": "plain", **MODEL}]}
)
WINDOW_0 = WindowKey("churn", "1", "all", start_us(0))


def load(model_id: str, version: str) -> Any:
    return REFERENCE if version == "1" else None


def at(second: float) -> Any:
    return T0 + timedelta(seconds=second)


def fed(*, labels: bool = False) -> Partition:
    """A partition that read five churn predictions (and one plain one) of the first window."""
    part = Partition(0, load, CONFIG)
    values = [prediction(f"c{i}", i, 0.1 * i) for i in range(5)]
    values.append(of_model("plain", prediction("p0", 1, 0.5)))
    part.processor.process(part.messages("p", values), now=at(6))
    if labels:
        part.processor.process(part.messages("l", [label("c0", 20, 1)]), now=at(20))
    return part


def test_the_setting_must_be_a_positive_duration() -> None:
    assert CONFIG.model("churn").window.close_when_idle == timedelta(seconds=IDLE_S)  # type: ignore[union-attr]
    assert CONFIG.model("plain").window.close_when_idle is None  # type: ignore[union-attr]
    for wrong in ("0s", "-5m"):
        window = {**MODEL["window"], "close_when_idle": wrong}  # type: ignore[dict-item]
        with pytest.raises(ValidationError, match="close_when_idle"):
            MonitorConfig.model_validate({"models": [{"id": "m", **MODEL, "window": window}]})


def test_a_quiet_partition_closes_the_window_of_a_model_whose_traffic_stopped() -> None:
    part = fed()
    processor: PartitionProcessor = part.processor
    # The window [0, 60) closes once the model's clock reaches 70 s: quiet for a
    # minute at 125 s, the clock would be at 65 s (on a 6 s grid: 60 s), not yet.
    assert processor.advance_quiet(IDLE_S, IDLE_S, now=at(125)) is not None
    assert processor.windows.watermarks_us["churn"] == start_us(60)
    result = processor.advance_quiet(IDLE_S, IDLE_S, now=at(140))  # clock at 78 s
    assert result is not None
    assert [partial.key for partial in result.windows.drift] == [WINDOW_0]
    assert result.windows.drift[0].predictions == 5
    assert result.watermarks_us["churn"] == start_us(78)
    # the model without the setting still waits for events (newest: 4 s)
    assert result.watermarks_us["plain"] == start_us(4)
    assert WindowKey("plain", "1", "all", start_us(0)) in processor.windows.predictions_by_window


def test_nothing_moves_before_the_partition_was_quiet_for_the_setting() -> None:
    part = fed()
    assert part.processor.advance_quiet(IDLE_S - 1, IDLE_S - 1, now=at(3600)) is None
    assert part.processor.windows.watermarks_us["churn"] == start_us(4)
    # nor back: a quiet clock behind the newest prediction leaves it
    assert part.processor.advance_quiet(IDLE_S, 0, now=at(IDLE_S + 1)) is None
    assert part.processor.windows.watermarks_us["churn"] == start_us(4)


def test_a_partition_that_read_nothing_vouches_for_nothing() -> None:
    part = Partition(0, load, CONFIG)
    assert part.processor.advance_quiet(3600, 3600, now=at(7200)) is None
    assert part.processor.windows.watermarks_us == {}
    assert part.processor.join.watermarks_us == {}
    # a backfill of older events that starts afterwards is on time, and joins
    result = part.processor.process(part.messages("p", [prediction("c0", 1, 0.1)]), now=at(7201))
    assert result.windows.late == {}
    assert part.processor.windows.predictions_by_window[WINDOW_0] == 1
    part.processor.process(part.messages("l", [label("c0", 30, 1)]), now=at(7202))
    assert part.processor.join.counters()[("churn", "1")].joined == 1


def test_a_prediction_stamped_before_the_quiet_clock_is_late() -> None:
    part = fed()
    part.processor.advance_quiet(IDLE_S, IDLE_S, now=at(140))
    result = part.processor.process(
        part.messages("p", [prediction("c-late", 30, 0.2), prediction("c-new", 80, 0.2)]),
        now=at(141),
    )
    assert dict(result.windows.late) == {WINDOW_0: 1}
    assert (
        part.processor.windows.predictions_by_window[WindowKey("churn", "1", "all", start_us(60))]
        == 1
    )


def test_labels_settle_a_window_only_when_both_topics_are_quiet() -> None:
    part = fed(labels=True)
    processor = part.processor
    # The window settles when the join's watermark passes 60 + 600 s. With the
    # labels topic still flowing, the predictions' quiet clock alone cannot
    # move it past the labels' newest time (20 s).
    late = 60 + 600 + IDLE_S + 60
    # The labels' gap alone moves nothing while predictions flow: labels come in bursts.
    assert processor.advance_quiet(0, 10 * IDLE_S, now=at(late)) is None
    result = processor.advance_quiet(IDLE_S, 0, now=at(late))
    assert result is not None
    assert result.join_watermarks_us["churn"] == start_us(20)
    assert all(not partial.final for partial in result.windows.performance)
    counters = processor.join.counters()[("churn", "1")]
    assert (counters.joined, counters.unlabelled) == (1, 0)
    # Both quiet: the clock (on a 6 s grid) passes the horizon, the four
    # unlabelled predictions expire and the window's performance is final.
    result = processor.advance_quiet(IDLE_S, IDLE_S, now=at(late))
    assert result is not None
    assert result.join_watermarks_us["churn"] == start_us(late - IDLE_S)
    [final] = [p for p in result.windows.performance if p.key == WINDOW_0]
    assert final.final
    counters = processor.join.counters()[("churn", "1")]
    assert (counters.joined, counters.unlabelled) == (1, 4)
    # the model without the setting keeps the partition's: the older topic's newest time
    assert processor.join.watermarks_us["plain"] == start_us(4)


def test_quiet_clocks_survive_a_checkpoint() -> None:
    part = fed(labels=True)
    part.processor.advance_quiet(IDLE_S, IDLE_S, now=at(140))
    restored = Partition(0, load, CONFIG)
    restored.processor.restore(part.processor.to_bytes())
    assert restored.processor.windows.watermarks_us == part.processor.windows.watermarks_us
    assert restored.processor.join.watermarks_us == part.processor.join.watermarks_us
    assert restored.processor.windows.watermarks_us["churn"] == start_us(78)
    assert restored.processor.join.watermarks_us["churn"] == start_us(78)


def test_a_quiet_partition_stays_silent_for_the_windows_of_other_models(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Moving its clocks, a quiet partition holds back no window of a model without the
    setting any longer than before: the merger still counts it silent (30 s)."""
    settings = DriftlineSettings(
        data_dir=tmp_path / "data", topic_predictions="p", topic_labels="l"
    )
    worker = Worker(settings, CONFIG, tmp_path, partitions=2)
    clock = [0.0]
    merger = WindowMerger(CONFIG, load, 2, idle_timeout_s=30.0, clock=lambda: clock[0])
    plain_0 = WindowKey("plain", "1", "all", start_us(0))
    # Partition 0 reads plain's window 0 and a newer event that closes it there;
    # partition 1 reads a plain and a churn prediction of window 0, then nothing.
    first = [(f"p{i}", i) for i in range(3)] + [("p-new", 200)]
    partials = worker.ingest(
        [
            RawMessage("p", 0, i, pid.encode(), of_model("plain", prediction(pid, second, 0.1)))
            for i, (pid, second) in enumerate(first)
        ]
    )[1]
    partials += worker.ingest(
        [
            RawMessage("p", 1, 0, b"q0", of_model("plain", prediction("q0", 5, 0.2))),
            RawMessage("p", 1, 1, b"c0", prediction("c0", 5, 0.2)),
        ]
    )[1]
    for _, value in partials:
        Worker._apply_partial(merger, orjson.loads(value))
    assert merger.evaluate() == []  # plain's window waits for partition 1
    # 31 s later partition 1 has been quiet long enough to close churn's window by the clock
    clock[0] = 31.0
    with caplog.at_level(logging.INFO, logger="streams.app"):
        quiet, moved = worker.advance_quiet({("p", 1): IDLE_S, ("l", 1): IDLE_S})
    # the operator sees what the clock closed
    assert "partition 1 quiet (predictions 60 s, labels 60 s): closed 1 drift windows" in (
        caplog.text
    )
    assert moved == {("p", 1), ("l", 1)}
    assert all(orjson.loads(value)["quiet"] is True for _, value in quiet)
    for _, value in quiet:
        Worker._apply_partial(merger, orjson.loads(value))
    volumes = {
        (dict(point.tags)["model_id"], point.time_ns // 1000): point.fields["predictions"]
        for point in merger.evaluate()
        if point.measurement == "volume" and dict(point.tags)["segment"] == "all"
    }
    # churn's window by partition 1's clock; plain's because partition 1 is silent
    # (with partition 0's three predictions: the merger's rule for a silent partition)
    assert volumes == {("churn", start_us(0)): 1, ("plain", plain_0.window_start_us): 3}


def test_a_topic_the_partition_has_not_read_moves_nothing_in_the_join() -> None:
    """Labels of a backfill read before its predictions: the join's prediction side stays."""
    part = Partition(0, load, CONFIG)
    part.processor.process(part.messages("l", [label("c0", 30, 1)]), now=at(31))
    assert part.processor.advance_quiet(IDLE_S, IDLE_S, now=at(7200)) is not None
    # the labels' clock moved (both topics quiet), the predictions' did not
    assert part.processor.windows.watermarks_us == {}
    part.processor.process(part.messages("p", [prediction("c0", 1, 0.1)]), now=at(7201))
    counters = part.processor.join.counters()[("churn", "1")]
    assert (counters.joined, counters.unlabelled) == (1, 0)


def _window_0_volume(merger: WindowMerger) -> tuple[int, int]:
    """(predictions, late_predictions) of churn's window 0 in the points ``evaluate`` writes."""
    found = [
        (point.fields["predictions"], point.fields["late_predictions"])
        for point in merger.evaluate()
        if point.measurement == "volume"
        and dict(point.tags)["model_id"] == "churn"
        and dict(point.tags)["segment"] == "all"
        and point.time_ns // 1000 == WINDOW_0.window_start_us
    ]
    assert len(found) == 1
    predictions, late = found[0]
    assert isinstance(predictions, int) and isinstance(late, int)
    return predictions, late


def test_a_clock_move_lost_in_a_crash_leaves_no_prediction_uncounted(tmp_path: Path) -> None:
    """The merger evaluated a window closed by a quiet move the partition did not save; the
    restarted partition counts a later prediction of it on time and sends the window again:
    the merger counts the one more as late instead of dropping the partial as a replay."""
    part = fed()
    saved = part.processor.to_bytes()  # the last checkpoint, from before the move
    merger = WindowMerger(CONFIG, load, 1, idle_timeout_s=30.0, clock=lambda: 0.0)
    settings = DriftlineSettings(
        data_dir=tmp_path / "data", topic_predictions="p", topic_labels="l"
    )
    worker = Worker(settings, CONFIG, tmp_path, partitions=1)

    def send(result: Any, quiet: bool = False) -> None:
        for _, value in worker._partials(0, part.processor, result, quiet=quiet):
            Worker._apply_partial(merger, orjson.loads(value))

    send(part.processor.advance_quiet(IDLE_S, IDLE_S, now=at(140)), quiet=True)
    assert _window_0_volume(merger) == (5, 0)
    part.processor.restore(saved)  # a crash before the move was saved
    late = part.messages("p", [prediction("c-late", 30, 0.2)])
    send(part.processor.process(late, now=at(141)))
    send(part.processor.process(part.messages("p", [prediction("c-new", 200, 0.2)]), now=at(201)))
    assert _window_0_volume(merger) == (5, 1)
    # kept in the merger's checkpoint, per source partition
    restored = WindowMerger(CONFIG, load, 1, idle_timeout_s=30.0, clock=lambda: 0.0)
    restored.restore(orjson.loads(orjson.dumps(merger.snapshot())))
    assert restored.snapshot()["closed"] == merger.snapshot()["closed"]
    # an older checkpoint names the sources only: their counts are unknown, none is late
    older = orjson.loads(orjson.dumps(merger.snapshot()))
    older["closed"] = [[key, n, [s for s, _ in sources]] for key, n, sources in older["closed"]]
    legacy = WindowMerger(CONFIG, load, 1, idle_timeout_s=30.0, clock=lambda: 0.0)
    legacy.restore(older)
    closed = legacy.snapshot()["closed"]
    assert len(closed) == len(older["closed"]) >= 1
    assert all(sources == [(0, -1)] for _, _, sources in closed)
