"""The worker's batch consumer loop: whole fetches in, state saved, offsets committed.

faust's stream hands an agent one event at a time, which caps a worker at
about 11 k messages a second on this project's benchmark machine, whatever
the agent does (docs/performance.md). The worker therefore reads its topics
with aiokafka's ``getmany`` — every record a fetch brought, per partition —
and runs the loop as a task of its faust app, which still provides the
process: start-up, signals, timers, the producer, logging.

The loop's contract with its owner (:class:`BatchHandler`):

* ``assigned`` names the partitions this consumer now owns and may return the
  position to start each from: the offsets its saved state covers. The
  position comes from the owner's checkpoint, not only from the group's
  committed offset, so a restart resumes exactly where the state ends even
  when the broker's offset bookkeeping is behind or wrong.
* ``handle`` applies a batch (never records of a partition this consumer no
  longer owns).
* ``checkpoint`` saves the state of some partitions; only then are their
  consumed positions committed, so a committed offset never runs ahead of
  saved state. It runs every ``checkpoint_interval_s``, when partitions are
  revoked, and when the loop stops.
* ``revoked`` drops the state of partitions taken away, after their last
  checkpoint.

Partitions of the input topics are assigned with the range assignor, which
gives one consumer the same partition numbers of every topic subscribed when
the topics have as many partitions each: the predictions and labels of one
partition number meet in one worker, as the join requires.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import IllegalStateError

from schemas import DriftlineSettings
from streams.decode import KafkaMessage

log = logging.getLogger(__name__)

Partition = tuple[str, int]


class OutputsLost(RuntimeError):
    """Raised by :meth:`BatchHandler.checkpoint` when outputs since the last one were not delivered.

    The loop then rewinds: the handler drops its in-memory state of every
    owned partition and reads it back from the last checkpoint, and the
    consumer seeks to that checkpoint's offsets, so the batches are applied
    and their outputs sent again.
    """


class BatchHandler(Protocol):
    """What a :class:`BatchConsumer` drives."""

    def assigned(self, partitions: set[Partition]) -> Mapping[Partition, int]:
        """Partitions now owned; returns the position to start each from, if known."""
        ...

    async def handle(self, messages: Sequence[KafkaMessage]) -> None:
        """Apply one batch."""
        ...

    async def quiet(self, partitions: Mapping[Partition, float]) -> set[Partition]:
        """Owned partitions read to their end, with how long (s) nothing new came.

        Called about once a second (``LoopSettings.quiet_interval_s``);
        returns the partitions whose state it changed, which the loop saves.
        """
        ...

    async def checkpoint(self, partitions: set[Partition]) -> None:
        """Save the state of these partitions (outputs delivered first)."""
        ...

    def revoked(self, partitions: set[Partition]) -> None:
        """Drop the state of partitions no longer owned (already checkpointed)."""
        ...


@dataclass(frozen=True)
class LoopSettings:
    """Tuning of one consumer loop."""

    group_id: str
    checkpoint_interval_s: float
    max_records: int = 5000
    poll_timeout_ms: int = 100
    quiet_interval_s: float | None = None
    """How often the handler hears which partitions are quiet (None: never)."""
    quiet_fetch_age_s: float = 5.0
    """A partition whose last fetch response is older than this is not quiet: the broker
    may have more that the consumer cannot fetch (a leader down, a network split)."""


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, loop: BatchConsumer) -> None:
        self.loop = loop

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self.loop.on_revoked({(tp.topic, tp.partition) for tp in revoked})

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self.loop.on_assigned({(tp.topic, tp.partition) for tp in assigned})


class BatchConsumer:
    """Consume topics in a consumer group, batch by batch, for a :class:`BatchHandler`."""

    def __init__(
        self,
        settings: DriftlineSettings,
        topics: list[str],
        handler: BatchHandler,
        loop_settings: LoopSettings,
        *,
        consumer_factory: Callable[..., AIOKafkaConsumer] = AIOKafkaConsumer,
    ) -> None:
        self.settings = settings
        self.topics = topics
        self.handler = handler
        self.loop_settings = loop_settings
        self._consumer_factory = consumer_factory
        self._consumer: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()
        self._positions: dict[Partition, int] = {}
        self._dirty: set[Partition] = set()
        self._owned: set[Partition] = set()
        self._quiet_since: dict[Partition, float] = {}
        """Per owned partition read to its end: since when (monotonic) nothing new came."""
        self._saved_at: dict[Partition, float] = {}
        """When each partition's state was last saved (monotonic)."""
        self._stopping = asyncio.Event()
        self._stopped = asyncio.Event()
        self.batches = 0
        self.messages = 0

    def consumer_options(self) -> dict[str, Any]:
        """Everything the aiokafka consumer is created with (security included)."""
        return {
            **self.settings.aiokafka_config(),
            "group_id": self.loop_settings.group_id,
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "session_timeout_ms": int(self.settings.kafka_session_timeout_s * 1000),
            "heartbeat_interval_ms": int(self.settings.kafka_heartbeat_interval_s * 1000),
            "fetch_max_wait_ms": self.settings.fetch_max_wait_ms,
            "max_partition_fetch_bytes": max(1_048_576, self.settings.max_message_bytes),
            "partition_assignment_strategy": (RangePartitionAssignor,),
        }

    @property
    def owned(self) -> set[Partition]:
        """Partitions currently assigned to this consumer."""
        return set(self._owned)

    def on_assigned(self, partitions: set[Partition]) -> None:
        """Take partitions over and seek each to where its saved state ends."""
        assert self._consumer is not None
        self._owned |= partitions
        positions = self.handler.assigned(partitions)
        for (topic, number), offset in positions.items():
            self._consumer.seek(TopicPartition(topic, number), offset)
            self._positions[(topic, number)] = offset
        log.info(
            "group %s: assigned %s",
            self.loop_settings.group_id,
            ", ".join(f"{t}[{p}]" for t, p in sorted(partitions)) or "nothing",
        )

    async def on_revoked(self, partitions: set[Partition]) -> None:
        """Checkpoint and commit partitions being taken away, then drop them."""
        async with self._lock:
            mine = partitions & self._owned
            try:
                await self._checkpoint(mine)
            except Exception:
                # The partitions go whatever happened: holding on to them would
                # save their state over the new owner's.  They restart from
                # their last good checkpoint, replaying what came after it.
                log.exception(
                    "group %s: checkpoint of revoked partitions failed; they resume from "
                    "their previous checkpoint",
                    self.loop_settings.group_id,
                )
            finally:
                self.handler.revoked(mine)
                self._owned -= partitions
                for partition in partitions:
                    self._positions.pop(partition, None)
                    self._dirty.discard(partition)
                    self._quiet_since.pop(partition, None)
                    self._saved_at.pop(partition, None)
        if partitions:
            log.info(
                "group %s: revoked %s",
                self.loop_settings.group_id,
                ", ".join(f"{t}[{p}]" for t, p in sorted(partitions)),
            )

    async def _checkpoint(self, partitions: set[Partition]) -> None:
        due = partitions & self._dirty
        if not due:
            return
        try:
            await self.handler.checkpoint(due)
        except OutputsLost as exc:
            await self._rewind(exc)
            return
        offsets = {
            TopicPartition(topic, number): self._positions[(topic, number)]
            for topic, number in due
            if (topic, number) in self._positions
        }
        self._dirty -= due
        saved_at = time.monotonic()
        self._saved_at.update(dict.fromkeys(due, saved_at))
        if offsets and self._consumer is not None:
            try:
                await self._consumer.commit(offsets)
            except Exception as exc:
                # The saved state records its own offsets, so a failed commit
                # costs a longer replay after a restart, never a wrong result.
                log.warning("group %s: offset commit failed: %s", self.loop_settings.group_id, exc)

    async def _rewind(self, reason: Exception) -> None:
        assert self._consumer is not None
        owned = set(self._owned)
        log.warning(
            "group %s: %s; rewinding %d partitions to their last checkpoint",
            self.loop_settings.group_id,
            reason,
            len(owned),
        )
        self.handler.revoked(owned)
        self._dirty.clear()
        self._positions.clear()
        # _quiet_since is kept: a partition whose checkpoint covers all it read is
        # still at its end after the seek and moves its restored clocks again
        self.on_assigned(owned)
        for topic, number in owned - self._positions.keys():
            # never checkpointed: from the group's committed offset, else the beginning
            tp = TopicPartition(topic, number)
            committed = await self._consumer.committed(tp)
            if committed is None:
                await self._consumer.seek_to_beginning(tp)
            else:
                self._consumer.seek(tp, committed)

    async def _tell_quiet(self, consumer: AIOKafkaConsumer) -> None:
        """Tell the handler which owned partitions are read to their end, and since when.

        A partition is at its end when the consumer's position has reached the
        high watermark of a fetch response of the last ``quiet_fetch_age_s``
        (one comes every ``fetch_max_wait_ms`` while nothing is new); one being
        read, one with records behind its position, one not fetched yet and one
        whose fetches fail is not. The partitions whose state the handler
        changed are saved at once (at most once a checkpoint interval), so a
        crash rarely loses a move the merger has seen (quiet moves depend on
        the wall clock: a replay does not repeat them).
        """
        now = time.monotonic()
        fresh_after_ms = (time.time() - self.loop_settings.quiet_fetch_age_s) * 1000
        quiet: dict[Partition, float] = {}
        for partition in sorted(self._owned):
            tp = TopicPartition(*partition)
            try:
                end = consumer.highwater(tp)
                fetched_ms = consumer.last_poll_timestamp(tp)
            except AssertionError:  # aiokafka's check that the partition is assigned
                end = fetched_ms = None
            position = None
            if end is not None and fetched_ms is not None and fetched_ms >= fresh_after_ms:
                try:
                    # immediate: a partition with a fetch response has a position
                    position = await asyncio.wait_for(consumer.position(tp), 1.0)
                    # a fetch answered meanwhile may have brought records not read yet
                    end = consumer.highwater(tp)
                except (AssertionError, IllegalStateError, TimeoutError):
                    position = None  # taken away, or its position is being reset
            if end is None or position is None or position < end:
                self._quiet_since.pop(partition, None)
                continue
            quiet[partition] = now - self._quiet_since.setdefault(partition, now)
        if not quiet:
            return
        moved = await self.handler.quiet(quiet) & self._owned
        self._dirty |= moved
        # at once, unless saved within a checkpoint interval (small settings move often)
        interval = self.loop_settings.checkpoint_interval_s
        due = {p for p in moved if now - self._saved_at.get(p, -math.inf) >= interval}
        if due:
            await self._checkpoint(due)

    async def checkpoint_all(self) -> None:
        """Save every owned partition with unsaved changes and commit its offsets."""
        async with self._lock:
            await self._checkpoint(set(self._owned))

    async def stop(self, timeout_s: float = 30.0) -> None:
        """Finish the current batch, checkpoint, commit and leave the group."""
        self._stopping.set()
        if self._consumer is not None:
            try:
                await asyncio.wait_for(self._stopped.wait(), timeout_s)
            except TimeoutError:
                log.error(
                    "group %s: the consumer loop did not stop within %.0f s",
                    self.loop_settings.group_id,
                    timeout_s,
                )

    async def run(self) -> None:
        """Consume until :meth:`stop` or cancellation; checkpoint on the way out.

        When a batch raises, or the loop is cancelled while it applies one,
        the loop ends and saves nothing: the batch may be half applied and
        its outputs half sent, so its partitions resume from their last
        checkpoint.
        """
        consumer = self._consumer_factory(**self.consumer_options())
        self._consumer = consumer
        failed = False
        try:
            consumer.subscribe(self.topics, listener=_Listener(self))
            await consumer.start()
            next_checkpoint = time.monotonic() + self.loop_settings.checkpoint_interval_s
            quiet_interval = self.loop_settings.quiet_interval_s
            next_quiet = math.inf if quiet_interval is None else time.monotonic() + quiet_interval
            while not self._stopping.is_set():
                records = await consumer.getmany(
                    timeout_ms=self.loop_settings.poll_timeout_ms,
                    max_records=self.loop_settings.max_records,
                )
                async with self._lock:
                    messages: list[KafkaMessage] = []
                    for tp, batch in records.items():
                        partition = (tp.topic, tp.partition)
                        if partition not in self._owned or not batch:
                            continue  # fetched before a revocation: the new owner reads it
                        messages.extend(batch)
                        self._positions[partition] = batch[-1].offset + 1
                        self._dirty.add(partition)
                        self._quiet_since.pop(partition, None)
                    if messages:
                        # Until it returns, the batch may be half applied: cancelled
                        # or failed there, the loop ends without a checkpoint.
                        failed = True
                        await self.handler.handle(messages)
                        failed = False
                        self.batches += 1
                        self.messages += len(messages)
                    if time.monotonic() >= next_quiet:
                        await self._tell_quiet(consumer)
                        next_quiet = time.monotonic() + (quiet_interval or 0.0)
                    if time.monotonic() >= next_checkpoint:
                        await self._checkpoint(set(self._owned))
                        next_checkpoint = (
                            time.monotonic() + self.loop_settings.checkpoint_interval_s
                        )
        except Exception:
            failed = True
            raise
        finally:
            try:
                if failed:
                    log.error(
                        "group %s: the consumer loop ended on an error or inside a batch; %d "
                        "partitions keep their last checkpoint",
                        self.loop_settings.group_id,
                        len(self._owned),
                    )
                else:
                    await asyncio.shield(self.checkpoint_all())
            finally:
                # Leaving the group: from here on another worker may own the
                # partitions, so nothing of this one may save their state.
                self.handler.revoked(set(self._owned))
                self._owned.clear()
                self._positions.clear()
                self._dirty.clear()
                self._quiet_since.clear()
                self._saved_at.clear()
                await consumer.stop()
                self._consumer = None
                self._stopped.set()
