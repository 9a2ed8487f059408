"""The batch consumer tells its handler which partitions are read to their end, and since when."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from aiokafka import TopicPartition

from schemas import DriftlineSettings
from streams.consumer import BatchConsumer, LoopSettings, OutputsLost, Partition
from streams.decode import KafkaMessage, RawMessage


class EndsConsumer:
    """An aiokafka stand-in whose partitions have set positions and high watermarks."""

    def __init__(self, ends: dict[Partition, int | None], positions: dict[Partition, int]) -> None:
        self.ends = ends
        self.positions = positions
        self.stale: set[Partition] = set()
        """Partitions whose fetches have failed for an hour."""
        self.deliveries: list[list[RawMessage]] = []
        self.listener: Any = None

    def subscribe(self, topics: list[str], listener: Any) -> None:
        self.listener = listener

    async def start(self) -> None:
        await self.listener.on_partitions_assigned([TopicPartition(*p) for p in self.ends])

    async def getmany(self, timeout_ms: int = 0, max_records: int = 0) -> dict[Any, Any]:
        await asyncio.sleep(timeout_ms / 1000)
        if not self.deliveries:
            return {}
        batch = self.deliveries.pop(0)
        first = batch[0]
        self.positions[(first.topic, first.partition)] = batch[-1].offset + 1
        return {TopicPartition(first.topic, first.partition): batch}

    def highwater(self, partition: TopicPartition) -> int | None:
        return self.ends[(partition.topic, partition.partition)]

    def last_poll_timestamp(self, partition: TopicPartition) -> int | None:
        if self.ends[(partition.topic, partition.partition)] is None:
            return None
        age = 3600 if (partition.topic, partition.partition) in self.stale else 0.05
        return int((time.time() - age) * 1000)

    async def position(self, partition: TopicPartition) -> int:
        return self.positions[(partition.topic, partition.partition)]

    def seek(self, partition: TopicPartition, offset: int) -> None:
        pass

    async def committed(self, partition: TopicPartition) -> int | None:
        return None

    async def seek_to_beginning(self, partition: TopicPartition) -> None:
        pass

    async def commit(self, offsets: Any) -> None:
        pass

    async def stop(self) -> None:
        pass


class Recorder:
    """A handler that records what it hears and says a quiet partition's number changed."""

    def __init__(self) -> None:
        self.quiet_calls: list[dict[Partition, float]] = []
        self.saved: set[Partition] = set()

    def assigned(self, partitions: set[Partition]) -> Mapping[Partition, int]:
        return {}

    async def handle(self, messages: Sequence[KafkaMessage]) -> None:
        pass

    async def quiet(self, partitions: Mapping[Partition, float]) -> set[Partition]:
        self.quiet_calls.append(dict(partitions))
        return {(topic, number) for _, number in partitions for topic in ("p", "l")}

    async def checkpoint(self, partitions: set[Partition]) -> None:
        self.saved |= partitions

    def revoked(self, partitions: set[Partition]) -> None:
        pass


def run_loop(
    consumer: EndsConsumer,
    handler: Recorder,
    seconds: float,
    meanwhile: Callable[[], None] | None = None,
    after: float = 0.0,
) -> None:
    """Run a loop over ``consumer``'s partitions for ``seconds``, then ``meanwhile`` and
    ``after`` seconds more."""
    loop = BatchConsumer(
        DriftlineSettings(),
        sorted({topic for topic, _ in consumer.ends}),
        handler,
        LoopSettings("g", checkpoint_interval_s=3600.0, poll_timeout_ms=10, quiet_interval_s=0.05),
        consumer_factory=lambda **_: consumer,
    )

    async def scenario() -> None:
        task = asyncio.create_task(loop.run())
        await asyncio.sleep(seconds)
        if meanwhile is not None:
            meanwhile()
        await asyncio.sleep(after)
        await loop.stop(5.0)
        await task

    asyncio.run(scenario())


def test_only_partitions_read_to_their_end_are_quiet_and_new_records_restart_the_count() -> None:
    ends: dict[Partition, int | None] = {("p", 0): 10, ("l", 0): None, ("p", 1): 10, ("l", 1): 4}
    consumer = EndsConsumer(ends, {("p", 0): 10, ("l", 0): 0, ("p", 1): 7, ("l", 1): 4})
    # l[1] is at the end it last heard of, an hour ago: its broker may have more
    consumer.stale.add(("l", 1))
    handler = Recorder()

    def two_records() -> None:
        # two new records on p[0] (its end moves with them), read at once
        ends[("p", 0)] = 12
        consumer.deliveries.append(
            [RawMessage("p", 0, 10, b"k", b"{}"), RawMessage("p", 0, 11, b"k", b"{}")]
        )

    run_loop(consumer, handler, 0.6, two_records, after=0.3)
    heard = [call for call in handler.quiet_calls if call]
    # never the partition not fetched yet, the one with records left to read, or
    # the one whose fetches fail
    assert {partition for call in heard for partition in call} == {("p", 0)}
    durations = [call[("p", 0)] for call in heard]
    peak = durations.index(max(durations))
    assert durations[0] == 0.0 and max(durations) >= 0.4
    # after the records came, the partition is quiet again, counted from then
    assert 0 < peak < len(durations) - 1 and durations[peak + 1] < 0.1
    # what the handler changed is saved by the checkpoint at the exit: l[0] too,
    # which no record made dirty
    assert handler.saved == {("p", 0), ("l", 0)}


class LosingRecorder(Recorder):
    """A handler that moves clocks after 0.2 s of quiet, and whose first checkpoint finds
    outputs undelivered (the loop rewinds)."""

    def __init__(self) -> None:
        super().__init__()
        self.lost = False

    async def quiet(self, partitions: Mapping[Partition, float]) -> set[Partition]:
        self.quiet_calls.append(dict(partitions))
        return {partition for partition, seconds in partitions.items() if seconds >= 0.2}

    async def checkpoint(self, partitions: set[Partition]) -> None:
        if not self.lost:
            self.lost = True
            raise OutputsLost("a partial was not delivered")
        await super().checkpoint(partitions)


def test_a_rewind_keeps_counting_a_partition_that_is_still_at_its_end() -> None:
    """After a rewind the restored state has its older clocks: a partition still at its end
    moves them again at the next tick, not a whole setting later."""
    consumer = EndsConsumer({("p", 0): 10}, {("p", 0): 10})
    handler = LosingRecorder()
    run_loop(consumer, handler, 0.5)
    assert handler.lost  # the first quiet move was saved at once, and that rewound
    durations = [call[("p", 0)] for call in handler.quiet_calls]
    assert len(durations) >= 5
    assert durations == sorted(durations) and durations[-1] >= 0.3
    assert ("p", 0) in handler.saved


class RacingConsumer(EndsConsumer):
    """A fetch response with new records lands while the loop waits for a position."""

    async def position(self, partition: TopicPartition) -> int:
        key = (partition.topic, partition.partition)
        position = self.positions[key]
        self.ends[key] = position + 5
        await asyncio.sleep(0)
        return position


def test_records_fetched_while_the_position_is_read_are_not_quiet() -> None:
    consumer = RacingConsumer({("p", 0): 10}, {("p", 0): 10})
    handler = Recorder()
    run_loop(consumer, handler, 0.3)
    assert len(handler.quiet_calls) == 0
