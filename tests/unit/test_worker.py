"""The worker's state machine without a broker: ingest, merge, checkpoints, counters."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import orjson
import pytest

from alerts.engine import AlertEngine
from detectors.profile import NumericProfile, ReferenceProfile
from schemas import DriftlineSettings, MonitorConfig
from streams.app import ReferenceStore, Worker
from streams.decode import RawMessage
from streams.points import Point, parse_line_protocol
from streams.sink import FileSink, InfluxSink, RetryPolicy, SinkError
from tests.unit.test_windows_merger import CONFIG, REFERENCE, label, prediction


def make_worker(tmp_path: Path) -> Worker:
    (tmp_path / "ref.json").write_text(REFERENCE.to_json())
    settings = DriftlineSettings(
        data_dir=tmp_path / "data", topic_predictions="p", topic_labels="l"
    )
    return Worker(settings, CONFIG, tmp_path, partitions=1)


def test_worker_turns_messages_into_points_and_checkpoints(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    worker = make_worker(tmp_path)
    messages = [
        RawMessage("p", 0, offset, f"a{offset}".encode(), prediction(f"a{offset}", offset, 0.1))
        for offset in range(6)
    ]
    messages += [RawMessage("l", 0, 0, b"a0", label("a0", 20, 1))]
    messages += [RawMessage("p", 0, 6, b"z", prediction("z", 95, 0.0))]
    dead, partials = worker.ingest(messages)
    assert dead == []
    checkpoint = tmp_path / "data" / "checkpoints" / "partition-0.bin"
    assert not checkpoint.exists()  # saved on the loop's cadence, not per batch
    worker.checkpoint(0)
    assert checkpoint.exists()
    kinds = [orjson.loads(value)["kind"] for _, value in partials]
    assert kinds.count("drift") == 2  # the [0, 60) window: segments all and region=eu
    assert all(key == b"churn" for key, _ in partials)
    outbox = worker.merge([(0, value) for _, value in partials])
    assert outbox.alerts == []  # the configuration has no rules
    worker.flush()
    lines = (tmp_path / "data" / "metrics.lp").read_text()
    volume = [p for p in parse_line_protocol(lines) if p.measurement == "volume"]
    assert {dict(p.tags)["segment"]: p.fields["predictions"] for p in volume} == {
        "all": 6,
        "region=eu": 6,
    }
    with caplog.at_level(logging.INFO, logger="streams.app"):
        worker.log_counters()
    assert "partition 0 join: predictions=7, labels=1, joined=1" in caplog.text
    assert "unlabelled=0" in caplog.text


def test_a_revoked_partition_is_read_back_from_its_checkpoint(tmp_path: Path) -> None:
    worker = make_worker(tmp_path)
    first = [RawMessage("p", 0, i, f"a{i}".encode(), prediction(f"a{i}", i, 0.1)) for i in range(3)]
    worker.ingest(first)
    worker.checkpoint(0)
    worker.forget("p", {0})
    assert worker.processors == {}
    # the same messages again (as after a rebalance): skipped by their offsets
    worker.ingest(first)
    restored = worker.processors[0]
    counters = restored.join.counters()
    assert sum(c.predictions for c in counters.values()) == 3
    # the replay was recognised before decoding: nothing counted twice
    counts = {key.segment: n for key, n in restored.windows.predictions_by_window.items()}
    assert counts == {"all": 3, "region=eu": 3}
    assert restored.join.next_offset("p") == 3


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _store_down_worker(tmp_path: Path, max_buffered_points: int = 1000) -> Worker:
    """A worker whose InfluxDB refuses connections (a port nothing listens on)."""
    sink = InfluxSink(
        f"http://127.0.0.1:{_closed_port()}",
        org="o",
        bucket="b",
        max_buffered_points=max_buffered_points,
        retry=RetryPolicy(max_attempts=1),
        timeout_s=1.0,
    )
    (tmp_path / "ref.json").write_text(REFERENCE.to_json())
    settings = DriftlineSettings(
        data_dir=tmp_path / "data", topic_predictions="p", topic_labels="l"
    )
    return Worker(settings, CONFIG, tmp_path, partitions=1, sink=sink)


def _closing_batch() -> list[RawMessage]:
    messages = [
        RawMessage("p", 0, offset, f"a{offset}".encode(), prediction(f"a{offset}", offset, 0.1))
        for offset in range(6)
    ]
    return [*messages, RawMessage("p", 0, 6, b"z", prediction("z", 95, 0.0))]


def test_points_released_while_the_store_is_down_survive_a_crash(tmp_path: Path) -> None:
    worker = _store_down_worker(tmp_path)
    _, partials = worker.ingest(_closing_batch())
    worker.merge([(0, value) for _, value in partials])
    released = worker.sink.pending
    assert released > 0
    with pytest.raises(SinkError):
        worker.flush()
    assert worker.sink.pending == released  # kept for the next try
    worker.checkpoint_merger(0)
    # The process dies here; its successor writes to a store that works.
    successor = make_worker(tmp_path)
    successor.merger(0)
    assert successor.sink.pending == released
    successor.flush()
    assert successor.unflushed[0] == []
    lines = (tmp_path / "data" / "metrics.lp").read_text()
    volume = [p for p in parse_line_protocol(lines) if p.measurement == "volume"]
    assert {dict(p.tags)["segment"]: p.fields["predictions"] for p in volume} == {
        "all": 6,
        "region=eu": 6,
    }
    # Once written, a checkpoint no longer carries them.
    successor.checkpoint_merger(0)
    document = orjson.loads((tmp_path / "data" / "checkpoints" / "merger-0.json").read_bytes())
    assert document["unflushed"] == []


def test_a_full_sink_holds_windows_back_instead_of_failing(tmp_path: Path) -> None:
    worker = _store_down_worker(tmp_path, max_buffered_points=4)
    # Two points already wait: half the bound, the high-water mark.
    worker.sink.add(parse_line_protocol("x,model_id=m f=1 1\nx,model_id=m f=2 2"))
    _, partials = worker.ingest(_closing_batch())
    outbox = worker.merge([(0, value) for _, value in partials])
    assert outbox.alerts == []
    assert worker.held_back == 1
    assert worker.sink.pending == 2  # nothing evaluated, nothing added
    # The store is back (simulated by a sink that can write): the window comes out.
    worker.sink = FileSink(tmp_path / "later.lp")
    worker.emit()
    worker.flush()
    lines = (tmp_path / "later.lp").read_text()
    assert any(p.measurement == "volume" for p in parse_line_protocol(lines))


def test_alerts_go_out_while_the_store_is_down_and_not_again_when_it_is_back(
    tmp_path: Path,
) -> None:
    worker = _store_down_worker(tmp_path, max_buffered_points=8)
    document = CONFIG.model_dump(mode="json", exclude_unset=True)
    document["rules"] = [  # the KS statistic is never below 0: fires on every window
        {"name": "any-ks", "kind": "feature_drift", "metric": "ks", "op": ">=", "threshold": 0}
    ]
    worker.config = MonitorConfig.model_validate(document)
    worker.sink.add(parse_line_protocol("x,model_id=m f=1 1\nx,model_id=m f=2 2\nx f=3 3\nx f=4 4"))
    _, partials = worker.ingest(_closing_batch())
    worker.merger(0)
    worker.engines[0] = AlertEngine(worker.config)
    outbox = worker.merge([(0, value) for _, value in partials])
    assert worker.held_back == 1
    # The window is held (no drift or volume point), its alerts are not.
    fired = sorted(orjson.loads(value)["segment"] for _, value in outbox.alerts)
    assert fired == ["all", "region=eu"]
    assert worker.sink.pending == 4 + 2  # the two alert points
    assert worker.emit().alerts == []  # judged once while held
    # The store is back: the window's points come out, and no alert a second time.
    worker.sink = FileSink(tmp_path / "later.lp")
    assert worker.emit().alerts == []
    worker.flush()
    lines = parse_line_protocol((tmp_path / "later.lp").read_text())
    # (the alert points went to the first sink's buffer, with the store down)
    assert {p.measurement for p in lines} >= {"feature_drift", "volume"}


def _held_worker(tmp_path: Path, rule: dict[str, object]) -> Worker:
    """A worker whose store is down and whose sink is at its high-water mark."""
    worker = _store_down_worker(tmp_path, max_buffered_points=8)
    document = CONFIG.model_dump(mode="json", exclude_unset=True)
    document["rules"] = [rule]
    worker.config = MonitorConfig.model_validate(document)
    worker.sink.add(parse_line_protocol("x,model_id=m f=1 1\nx,model_id=m f=2 2\nx f=3 3\nx f=4 4"))
    worker.merger(0)
    worker.engines[0] = AlertEngine(worker.config)
    return worker


def test_while_held_a_drift_window_is_judged_though_its_performance_was_judged_first(
    tmp_path: Path,
) -> None:
    rule = {"name": "any-ks", "kind": "feature_drift", "metric": "ks", "op": ">=", "threshold": 0}
    worker = _held_worker(tmp_path, rule)
    first = [*_closing_batch()[:-1], RawMessage("l", 0, 0, b"a0", label("a0", 20, 1))]
    _, partials = worker.ingest(first)
    worker.merge([(0, value) for _, value in partials])  # its performance window, judged
    _, partials = worker.ingest(_closing_batch()[-1:])  # closes the drift window
    outbox = worker.merge([(0, value) for _, value in partials])
    assert worker.held_back == 2
    assert sorted(orjson.loads(value)["segment"] for _, value in outbox.alerts) == [
        "all",
        "region=eu",
    ]


def test_while_held_a_performance_window_is_judged_with_its_drift_window(tmp_path: Path) -> None:
    rule = {"name": "acc", "kind": "performance_drop", "metric": "accuracy", "threshold": 2.0}
    worker = _held_worker(tmp_path, {**rule, "min_coverage": 0.0})
    batch = _closing_batch()
    batch.insert(6, RawMessage("l", 0, 0, b"a0", label("a0", 20, 1)))
    _, partials = worker.ingest(batch)
    outbox = worker.merge([(0, value) for _, value in partials])
    assert worker.held_back == 1
    assert sorted(orjson.loads(value)["segment"] for _, value in outbox.alerts) == [
        "all",
        "region=eu",
    ]


def test_a_refused_message_with_a_lone_surrogate_and_nan_does_not_stop_the_batch(
    tmp_path: Path,
) -> None:
    worker = make_worker(tmp_path)
    # NaN makes orjson refuse the dead letter's original, and the fallback
    # parser keeps the lone surrogate of the version: it must not name a window.
    hostile = (
        b'{"prediction_id": "h", "model_id": "churn", "model_version": "\\ud800",'
        b' "timestamp": "2026-11-23T10:00:00Z", "features": {"x": NaN}, "prediction": 1}'
    )
    messages = [
        RawMessage("p", 0, 0, b"a0", prediction("a0", 0, 0.1)),
        RawMessage("p", 0, 1, b"h", hostile),
        RawMessage("p", 0, 2, b"a1", prediction("a1", 1, 0.1)),
    ]
    dead, partials = worker.ingest(messages)
    assert len(dead) == 1
    assert orjson.loads(dead[0])["source_offset"] == 1
    assert partials  # encoded without error
    assert worker.processors[0].unattributed_dead_letters == 1


def test_a_profile_that_does_not_fit_the_configuration_is_not_used(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Built without -c, 'plan' coded as numbers and a 0/1 prediction are numeric:
    # the configured chi2 cannot test them (it raised in the merge loop).
    misfit = ReferenceProfile(
        "churn",
        "1",
        features={"x": REFERENCE.features["x"], "plan": NumericProfile.build([1.0, 2.0] * 50)},
        prediction=NumericProfile.build([0.0, 1.0] * 50),
    )
    (tmp_path / "ref.json").write_text(misfit.to_json())
    store = ReferenceStore(CONFIG, tmp_path, retry_s=0.0)
    with caplog.at_level(logging.ERROR, logger="streams.app"):
        assert store("churn", "1") is None
    assert "feature 'plan' is categorical in the configuration but numeric" in caplog.text
    assert "the prediction of a binary model is profiled as numeric" in caplog.text
    (tmp_path / "ref.json").write_text(REFERENCE.to_json())  # rebuilt: read again
    assert store("churn", "1") is not None


def test_a_revoked_partials_partition_takes_its_unconfirmed_points_out_of_the_sink(
    tmp_path: Path,
) -> None:
    # Its next owner writes them from the checkpoint; written from here as well,
    # an old value could land after the new owner's corrected one.
    worker = make_worker(tmp_path)
    mine = Point("volume", (("model_id", "kept"),), {"predictions": 1}, 5)
    theirs = Point("volume", (("model_id", "moved"),), {"predictions": 1}, 5)
    worker._add_points(1, [mine])
    worker._add_points(0, [theirs])
    assert worker.sink.pending == 2
    worker.forget(worker.settings.topic_partials, {0})
    assert worker.sink.pending == 1
    worker.flush()
    assert parse_line_protocol((tmp_path / "data" / "metrics.lp").read_text()) == [mine]
