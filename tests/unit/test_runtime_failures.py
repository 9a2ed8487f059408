"""The worker's consumer loops when something fails: a batch, a send, a checkpoint, a model.

The broker is replaced by small fakes (a consumer that hands out prepared
batches, topics whose sends fail on purpose): what is tested is the loops'
bookkeeping, which decides whether a failure loses or repeats work.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Iterable
from pathlib import Path
from typing import Any

import faust.topics
import orjson
import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError
from faust.exceptions import ProducerSendError

import streams.app as app_module
from schemas import DriftlineSettings, MonitorConfig
from streams.app import Outbox, Worker, _InputHandler, _MergeHandler
from streams.consumer import BatchConsumer, LoopSettings, OutputsLost, Partition
from streams.decode import RawMessage
from streams.partition import PartitionProcessor
from tests.unit.test_windows_merger import CONFIG, REFERENCE, label, prediction


def make_worker(tmp_path: Path, config: MonitorConfig = CONFIG) -> Worker:
    (tmp_path / "ref.json").write_text(REFERENCE.to_json())
    settings = DriftlineSettings(
        data_dir=tmp_path / "data", topic_predictions="p", topic_labels="l"
    )
    return Worker(settings, config, tmp_path, partitions=1)


def renamed_model() -> MonitorConfig:
    """CONFIG with its one model retired and another monitored instead."""
    document = CONFIG.model_dump(mode="json", exclude_unset=True)
    document["models"][0]["id"] = "fraud"
    return MonitorConfig.model_validate(document)


def predictions(count: int, first: int = 0) -> list[RawMessage]:
    return [
        RawMessage("p", 0, offset, f"a{offset}".encode(), prediction(f"a{offset}", offset, 0.1))
        for offset in range(first, first + count)
    ]


def closing() -> RawMessage:
    """A prediction late enough in event time to close the window [0, 60)."""
    return RawMessage("p", 0, 6, b"z", prediction("z", 95, 0.0))


class FakeConsumer:
    """Enough of aiokafka's consumer for a :class:`BatchConsumer`: prepared batches."""

    def __init__(self, owned: set[Partition], batches: list[list[RawMessage]]) -> None:
        self.owned = owned
        self.batches = list(batches)
        self.listener: Any = None
        self.commits: list[dict[Partition, int]] = []

    def subscribe(self, topics: list[str], listener: Any) -> None:
        self.listener = listener

    async def start(self) -> None:
        await self.listener.on_partitions_assigned([TopicPartition(t, p) for t, p in self.owned])

    async def getmany(self, timeout_ms: int = 0, max_records: int = 0) -> dict[Any, Any]:
        if not self.batches:
            await asyncio.sleep(timeout_ms / 1000)
            return {}
        records: dict[TopicPartition, list[RawMessage]] = {}
        for message in self.batches.pop(0):
            records.setdefault(TopicPartition(message.topic, message.partition), []).append(message)
        return records

    def seek(self, partition: TopicPartition, offset: int) -> None:
        pass

    async def seek_to_beginning(self, partition: TopicPartition) -> None:
        pass

    async def committed(self, partition: TopicPartition) -> int | None:
        return None

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append({(tp.topic, tp.partition): n for tp, n in offsets.items()})

    async def stop(self) -> None:
        pass


def _future(result: Any = None, error: BaseException | None = None) -> asyncio.Future[Any]:
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)
    return future


class FakeTopic:
    """A topic whose sends raise (``raising``) or fail on delivery (``failing``), by call number."""

    def __init__(
        self,
        *,
        raising: Iterable[int] = (),
        failing: Iterable[int] = (),
        error: BaseException | None = None,
    ) -> None:
        self.raising, self.failing = set(raising), set(failing)
        self.error = error or KafkaTimeoutError("timed out")
        self.calls = 0
        self.delivered: list[tuple[bytes | None, bytes]] = []

    async def send(self, key: bytes | None = None, value: bytes = b"") -> Awaitable[Any]:
        call, self.calls = self.calls, self.calls + 1
        if call in self.raising:
            raise self.error
        if call in self.failing:
            return _future(error=self.error)
        self.delivered.append((key, value))
        return _future("ok")


class FakeProducer:
    async def flush(self) -> None:
        pass


class _FakeApp:
    producer = FakeProducer()


def FakeApp() -> Any:  # noqa: N802 (stands for the faust app class)
    return _FakeApp()


def input_loop(
    worker: Worker, handler: Any, batches: list[list[RawMessage]]
) -> tuple[BatchConsumer, FakeConsumer]:
    """An input loop of partition 0 over a fake consumer handing out ``batches``."""
    consumer = FakeConsumer({("p", 0), ("l", 0)}, batches)
    loop = BatchConsumer(
        worker.settings,
        ["p", "l"],
        handler,
        LoopSettings("g", checkpoint_interval_s=3600.0),
        consumer_factory=lambda **_: consumer,
    )
    return loop, consumer


def run_loop(worker: Worker, handler: Any, batches: list[list[RawMessage]]) -> FakeConsumer:
    """Run an input loop over ``batches`` until they are consumed, then stop it."""
    loop, consumer = input_loop(worker, handler, batches)

    async def scenario() -> None:
        task = asyncio.create_task(loop.run())
        while consumer.batches and not task.done():
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        await loop.stop(5.0)
        await task

    asyncio.run(scenario())
    return consumer


def test_a_batch_that_raises_is_neither_checkpointed_nor_committed(tmp_path: Path) -> None:
    worker = make_worker(tmp_path)

    class Failing(_InputHandler):
        async def handle(self, messages: Any) -> None:
            await super().handle(messages)
            raise RuntimeError("a bug half-way through the batch")

    handler = Failing(FakeApp(), worker, FakeTopic(), FakeTopic())
    with pytest.raises(RuntimeError, match="half-way"):
        run_loop(worker, handler, [[*predictions(6), closing()]])
    assert not (tmp_path / "data" / "checkpoints" / "partition-0.bin").exists()
    assert worker.processors == {}  # let go of: nothing here may save it any more


def test_a_partial_the_producer_refuses_rewinds_instead_of_being_lost(tmp_path: Path) -> None:
    worker = make_worker(tmp_path)
    partials = FakeTopic(raising={0}, error=MessageSizeTooLargeError("too large"))
    handler = _InputHandler(FakeApp(), worker, FakeTopic(), partials)

    async def scenario() -> None:
        await handler.handle([*predictions(6), closing()])  # does not raise
        with pytest.raises(OutputsLost, match="too large"):
            await handler.checkpoint({("p", 0)})

    asyncio.run(scenario())
    assert not (tmp_path / "data" / "checkpoints" / "partition-0.bin").exists()


def _wrapped_by_faust() -> BaseException:
    """What faust's producer raises for a message aiokafka finds too large."""
    try:
        try:
            raise MessageSizeTooLargeError("The message is 2000000 bytes when serialized")
        except MessageSizeTooLargeError as exc:
            raise ProducerSendError(f"Error while sending: {exc!r}") from exc
    except ProducerSendError as wrapped:
        return wrapped


@pytest.mark.parametrize(
    ("error", "lost"),
    [
        (KafkaTimeoutError("timed out"), True),
        (MessageSizeTooLargeError("too large"), False),
        (_wrapped_by_faust(), False),
    ],
)
def test_a_dead_letter_is_retried_unless_the_broker_refuses_it_for_good(
    tmp_path: Path, error: BaseException, lost: bool
) -> None:
    worker = make_worker(tmp_path)
    handler = _InputHandler(FakeApp(), worker, FakeTopic(failing={0}, error=error), FakeTopic())

    async def scenario() -> None:
        await handler.handle([RawMessage("p", 0, 0, b"k", b"{not json")])
        await handler.checkpoint({("p", 0)})

    if lost:
        with pytest.raises(OutputsLost):
            asyncio.run(scenario())
        assert worker.dead_letters_unsent == 0
    else:
        asyncio.run(scenario())
        assert worker.dead_letters_unsent == 1
        assert (tmp_path / "data" / "checkpoints" / "partition-0.bin").exists()


def test_a_loop_cancelled_in_the_middle_of_a_batch_saves_nothing(tmp_path: Path) -> None:
    worker = make_worker(tmp_path)

    class Stuck(FakeTopic):
        """The second send never returns (the producer's buffer full, the broker away)."""

        blocked = False

        async def send(self, key: bytes | None = None, value: bytes = b"") -> Awaitable[Any]:
            if self.calls == 1:
                self.blocked = True
                await asyncio.Event().wait()
            return await super().send(key, value)

    partials = Stuck()
    handler = _InputHandler(FakeApp(), worker, FakeTopic(), partials)
    loop, consumer = input_loop(worker, handler, [[*predictions(6), closing()]])

    async def scenario() -> None:
        task = asyncio.create_task(loop.run())
        while not partials.blocked:
            await asyncio.sleep(0.01)
        task.cancel()  # faust cancels the task when stopping it took too long
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert len(partials.delivered) == 1  # of the batch's several partials
    assert not (tmp_path / "data" / "checkpoints" / "partition-0.bin").exists()
    assert consumer.commits == []


def test_a_loop_cancelled_while_its_checkpoint_awaits_deliveries_saves_nothing(
    tmp_path: Path,
) -> None:
    worker = make_worker(tmp_path)

    class Unconfirmed(FakeTopic):
        """Sends whose delivery is never confirmed (futures left pending)."""

        def __init__(self) -> None:
            super().__init__()
            self.futures: list[asyncio.Future[Any]] = []

        async def send(self, key: bytes | None = None, value: bytes = b"") -> Awaitable[Any]:
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self.futures.append(future)
            return future

    partials = Unconfirmed()
    handler = _InputHandler(FakeApp(), worker, FakeTopic(), partials)
    consumer = FakeConsumer({("p", 0), ("l", 0)}, [[*predictions(6), closing()]])
    loop = BatchConsumer(  # checkpoints after every batch, as the merge loop does
        worker.settings,
        ["p", "l"],
        handler,
        LoopSettings("g", checkpoint_interval_s=0.0),
        consumer_factory=lambda **_: consumer,
    )

    async def scenario() -> None:
        task = asyncio.create_task(loop.run())
        while not (partials.futures and loop.batches == 1):
            await asyncio.sleep(0)
        await asyncio.sleep(0)  # the checkpoint now waits for the deliveries
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert partials.futures and not any(f.done() and not f.cancelled() for f in partials.futures)
    assert not (tmp_path / "data" / "checkpoints" / "partition-0.bin").exists()
    assert consumer.commits == []


def test_a_revoked_partition_goes_even_when_its_checkpoint_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = make_worker(tmp_path)
    handler = _InputHandler(FakeApp(), worker, FakeTopic(), FakeTopic())
    loop, consumer = input_loop(worker, handler, [])

    def disk_full(path: Path, data: bytes) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(app_module, "write_atomically", disk_full)

    async def scenario() -> None:
        loop._consumer = consumer
        loop.on_assigned({("p", 0), ("l", 0)})
        async with loop._lock:
            loop._positions[("p", 0)] = 3
            loop._dirty.add(("p", 0))
            await handler.handle(predictions(3))
        await loop.on_revoked({("p", 0), ("l", 0)})

    asyncio.run(scenario())
    assert loop.owned == set()
    assert worker.processors == {}
    assert consumer.commits == []


def test_a_merger_resumes_where_its_saved_state_ends_not_at_the_committed_offset(
    tmp_path: Path,
) -> None:
    """A merger checkpoint older than the group's committed offset (written by a worker
    that had lost the partition without knowing it yet) resumes at its own offset: the
    partials after it are applied again instead of being skipped."""
    source = make_worker(tmp_path)
    _, opening = source.ingest(predictions(6))
    _, closed = source.ingest([closing()])  # the drift partial of the window [0, 60)
    topic = [
        RawMessage("partials", 0, offset, key, value)
        for offset, (key, value) in enumerate([*opening, *closed])
    ]

    async def publish() -> None:
        pass

    owner = make_worker(tmp_path)
    handler = _MergeHandler(owner, publish)
    handler.assigned({("partials", 0)})
    path = tmp_path / "data" / "checkpoints" / "merger-0.json"
    asyncio.run(handler.handle(topic[: len(opening)]))
    owner.checkpoint_merger(0)
    stale = path.read_bytes()
    asyncio.run(handler.handle(topic[len(opening) :]))
    owner.checkpoint_merger(0)
    committed = len(topic)  # the owner's consumer committed every partial it applied
    assert orjson.loads(path.read_bytes())["next_offset"] == committed
    path.write_bytes(stale)  # the late write of the worker that had lost the partition

    successor = make_worker(tmp_path)
    successor_handler = _MergeHandler(successor, publish)
    positions = successor_handler.assigned({("partials", 0)})
    assert positions == {("partials", 0): len(opening)}
    start = positions.get(("partials", 0), committed)
    asyncio.run(successor_handler.handle(topic[start:]))
    assert [n for _, n, _ in successor.mergers[0].snapshot()["closed"]] == [6, 6]  # all, segment
    # a checkpoint written before the offset was kept resumes at the committed offset
    older = orjson.loads(stale)
    del older["next_offset"]
    path.write_bytes(orjson.dumps(older))
    assert _MergeHandler(make_worker(tmp_path), publish).assigned({("partials", 0)}) == {}
    # so does one written reading a partials topic of another name
    older["next_offset"] = len(opening)
    older["partials_topic"] = "partials-before"
    path.write_bytes(orjson.dumps(older))
    assert _MergeHandler(make_worker(tmp_path), publish).assigned({("partials", 0)}) == {}


def test_a_worker_that_stood_still_past_its_session_evaluates_and_saves_nothing_for_a_while(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """After a stall its partitions may be another worker's: until its groups answer, its
    points and merger checkpoints could be older than the new owner's."""
    source = make_worker(tmp_path)
    _, partials = source.ingest([*predictions(6), closing()])
    worker = make_worker(tmp_path)
    now = [100.0]
    worker.clock = lambda: now[0]
    session = worker.settings.kafka_session_timeout_s
    hold = max(app_module.STALL_HOLD_S, 3 * worker.settings.kafka_heartbeat_interval_s)
    worker.beat()
    now[0] += session + 1  # stopped; the timer has not run since
    path = tmp_path / "data" / "checkpoints" / "merger-0.json"
    worker.merge([(0, value) for _, value in partials], {0: len(partials)})
    worker.checkpoint_merger(0)
    assert worker.sink.pending == 0 and not path.exists()
    assert worker.mergers[0].waiting()  # the closed window, applied but not evaluated
    with caplog.at_level(logging.WARNING):
        worker.beat()
    assert worker.stalls == 1 and f"stood still for {session + 1:.1f} s" in caplog.text
    now[0] += hold - 0.1
    worker.beat()
    worker.emit()
    assert worker.sink.pending == 0 and worker.stalls == 1
    now[0] += 0.2  # its groups answered meanwhile (a revocation would have dropped it all)
    worker.beat()
    worker.emit()
    worker.checkpoint_merger(0)
    assert worker.sink.pending > 0 and not worker.mergers[0].waiting()
    assert orjson.loads(path.read_bytes())["next_offset"] == len(partials)


def test_a_checkpoint_of_other_topics_is_named_in_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    worker = make_worker(tmp_path)
    worker.ingest([*predictions(3), RawMessage("l", 0, 0, b"a0", label("a0", 20, 1))])
    worker.checkpoint(0)

    def restored(predictions_topic: str, labels_topic: str) -> PartitionProcessor:
        settings = DriftlineSettings(
            data_dir=tmp_path / "data",
            topic_predictions=predictions_topic,
            topic_labels=labels_topic,
        )
        return Worker(settings, CONFIG, tmp_path, partitions=1).processor(0)

    with caplog.at_level(logging.WARNING):
        restored("p", "l")
        assert "checkpoint" not in caplog.text
        processor = restored("p", "l2")  # only the labels topic renamed
    assert "written reading l, not configured now (configured: l2, p)" in caplog.text
    assert processor.join.next_offset("l2") == 0  # the new topic is read from its start
    assert processor.join.next_offset("p") == 3


def test_a_retired_model_does_not_stop_its_partition_or_merger(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    worker = make_worker(tmp_path)
    messages = [*predictions(6), RawMessage("l", 0, 0, b"a0", label("a0", 20, 1))]
    _, partials = worker.ingest(messages)
    worker.checkpoint(0)
    worker.merge([(0, value) for _, value in partials])
    worker.checkpoint_merger(0)
    successor = make_worker(tmp_path, renamed_model())
    with caplog.at_level(logging.WARNING):
        processor = successor.processor(0)
        successor.merger(0)
        successor.emit()
        successor.merge([(0, value) for _, value in partials])  # partials still in the topic
    assert processor.windows.performance == {}
    assert processor.join.next_offset("p") == 6  # the join's place is kept
    assert "model(s) 'churn' dropped from the checkpoint" in caplog.text
    assert successor.mergers[0].unconfigured_partials > 0
    assert "of model 'churn' ignored" in caplog.text


def test_undelivered_alerts_are_kept_saved_and_sent_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "ref.json").write_text(REFERENCE.to_json())
    monkeypatch.setattr(app_module, "source_partitions", lambda settings: 1)
    topic = FakeTopic(failing={1})  # the second message fails on delivery

    async def send(self: Any, key: bytes | None = None, value: bytes = b"", **_: Any) -> Any:
        return await topic.send(key, value)

    monkeypatch.setattr(faust.topics.Topic, "send", send)
    settings = DriftlineSettings(data_dir=tmp_path / "data")
    app, worker = app_module.build_app(settings, CONFIG, tmp_path)
    app.producer = FakeProducer()  # type: ignore[assignment]
    publish = worker.loops[1].handler.publish  # type: ignore[attr-defined]
    worker.merger(0)
    sent = [(f"a{n}".encode(), f'{{"n":{n}}}'.encode()) for n in range(3)]
    worker.unpublished[0].extend(Outbox(alerts=list(sent)))

    asyncio.run(publish())
    # The first went; from the failed one on, all stay, in order, and are saved.
    assert topic.delivered == [sent[0], sent[2]]
    assert worker.unpublished[0].alerts == sent[1:]
    worker.checkpoint_merger(0)
    saved = orjson.loads((tmp_path / "data" / "checkpoints" / "merger-0.json").read_bytes())
    assert saved["unpublished"]["alerts"] == [[k.decode(), v.decode()] for k, v in sent[1:]]
    # A worker restarted from that checkpoint has them to send.
    restarted = make_worker(tmp_path)
    restarted.merger(0)
    assert restarted.unpublished[0].alerts == sent[1:]
    # The next round delivers them and the outbox is empty.
    asyncio.run(publish())
    assert topic.delivered[2:] == sent[1:]
    assert worker.unpublished[0].alerts == []
