"""A partition's checkpoint: the raw frame written now, and format 1 written before it."""

from __future__ import annotations

import os
import struct
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from schemas import MonitorConfig
from streams.join import CheckpointError
from streams.partition import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_MAGIC,
    PartitionCheckpointError,
    remove_stale_temporaries,
    write_atomically,
)
from streams.windows import PerformancePartial
from tests.unit.test_windows_merger import CONFIG, Partition, label, prediction

FORMAT_1 = Path(__file__).parent / "data" / "partition-0-format-1.bin"
"""Written by ``PartitionProcessor.to_bytes`` at commit cbe8b86 (the join in hex in
JSON) after the batches of :func:`fed`."""


def fed() -> Partition:
    """Six predictions, then the label of one of them and an orphan label."""
    part = Partition(0)
    part.processor.process(part.messages("p", [prediction(f"a{i}", i, 0.1 * i) for i in range(6)]))
    part.processor.process(part.messages("l", [label("a0", 20, 1), label("zz", 21, 0)]))
    return part


def test_the_join_is_stored_raw_after_a_small_header() -> None:
    processor = fed().processor
    data = processor.to_bytes()
    join = processor.join.to_bytes()
    assert data[:5] == CHECKPOINT_MAGIC + bytes([CHECKPOINT_FORMAT])
    header_size, join_size = struct.unpack_from("<IQ", data, 5)
    assert join_size == len(join)
    assert data[-join_size:] == join  # as it is: no hex, no second compression
    assert len(data) == 5 + 12 + header_size + join_size
    header = orjson.loads(zlib.decompress(data[17 : 17 + header_size]))
    assert header == {"partition": 0, "windows": processor.windows.snapshot()}


def test_a_checkpoint_restores_the_same_state() -> None:
    part = fed()
    data = part.processor.to_bytes()
    restored = Partition(0)
    restored.processor.restore(data)
    assert restored.processor.to_bytes() == data
    assert restored.processor.join.counters() == part.processor.join.counters()


def test_a_format_1_checkpoint_restores_as_the_state_it_was_written_from() -> None:
    restored = Partition(0)
    restored.processor.restore(FORMAT_1.read_bytes())
    join = restored.processor.join
    assert (join.pending_count, join.joined_count, join.orphan_count) == (5, 1, 1)
    assert join.applied_offsets == {("p", 0): 6, ("l", 0): 2}
    # the same batches applied by this version give the same join, byte for byte ...
    reference = fed()
    assert join.to_bytes() == reference.processor.join.to_bytes()
    # ... and the same output and state from the next batch on, but for the
    # errors' timeline of the performance windows, which format 1 did not keep:
    # there, only the label joined after the restore is in it.
    restored.offsets = dict(reference.offsets)
    closing = [
        part.processor.process(
            part.messages("l", [label("a1", 80, 0)])
            + part.messages("p", [prediction("z", 90, 0.0)])
        )
        for part in (reference, restored)
    ]
    assert closing[1].windows.drift == closing[0].windows.drift
    assert closing[1].windows.drift  # the first window closed
    timelines = [
        [orjson.loads(p.payload).pop("t") for p in closing[i].windows.performance] for i in (0, 1)
    ]
    # [0, 60) in segments all and eu: a0 joined before, a1 now; [60, 120): none yet
    assert [sum(n for _, n, _ in t) for t in timelines[0]] == [2, 2, 0, 0]
    assert [sum(n for _, n, _ in t) for t in timelines[1]] == [1, 1, 0, 0]  # a1 only
    assert without_timelines(closing[1].windows.performance) == without_timelines(
        closing[0].windows.performance
    )
    assert restored.processor.join.to_bytes() == reference.processor.join.to_bytes()


def without_timelines(partials: list[PerformancePartial]) -> list[tuple[object, ...]]:
    documents = [(p.key, p.final, orjson.loads(p.payload)) for p in partials]
    return [
        (key, final, {k: v for k, v in doc.items() if k != "t"}) for key, final, doc in documents
    ]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda data: data[:-1], "truncated or appended to"),
        (lambda data: data + b"\0", "truncated or appended to"),
        (lambda data: data[:10], "shorter than its frame"),
        (lambda data: data[:4] + b"\x09" + data[5:], "format 9 is not supported"),
        (lambda data: data[:17] + b"\0" + data[18:], "damaged partition checkpoint header"),
        (lambda data: b"not a checkpoint", "not a driftline partition checkpoint"),
        (lambda data: zlib.compress(b'{"format": 7}'), "format 7 is not supported"),
        (lambda data: zlib.compress(b'{"format": 1}'), "expected partition, windows and join"),
        (
            lambda data: zlib.compress(b'{"format": 1, "partition": 0, "windows": 0, "join": "x"}'),
            "the join is not hex",
        ),
    ],
)
def test_a_damaged_checkpoint_is_refused_with_the_reason(
    damage: Callable[[bytes], bytes], message: str
) -> None:
    data = damage(fed().processor.to_bytes())
    with pytest.raises(PartitionCheckpointError, match=message):
        Partition(0).processor.restore(data)


def test_a_damaged_join_is_refused_by_the_join() -> None:
    processor = fed().processor
    data = bytearray(processor.to_bytes())
    data[-len(processor.join.to_bytes())] ^= 0xFF  # the first byte of the join's magic
    with pytest.raises(CheckpointError, match="not a driftline join checkpoint"):
        Partition(0).processor.restore(bytes(data))


def test_a_checkpoint_of_another_partition_is_refused() -> None:
    data = fed().processor.to_bytes()
    with pytest.raises(PartitionCheckpointError, match="checkpoint of partition 0 given to 1"):
        Partition(1).processor.restore(data)
    with pytest.raises(PartitionCheckpointError, match="checkpoint of partition 0 given to 1"):
        Partition(1).processor.restore(FORMAT_1.read_bytes())


def test_two_writers_of_one_checkpoint_leave_one_whole_file(tmp_path: Path) -> None:
    """A worker that lost its partitions in a stall and their new owner may save the same
    checkpoint at once: neither write fails and the file is always one of them, whole."""
    path = tmp_path / "checkpoints" / "merger-1.json"
    contents = {name: name.encode() * 200_000 for name in ("a", "b")}
    errors: list[BaseException] = []
    seen: set[bytes] = set()

    def write(data: bytes) -> None:
        try:
            for _ in range(40):
                write_atomically(path, data)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(data,)) for data in contents.values()]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        if path.exists():
            seen.add(path.read_bytes())
    for thread in threads:
        thread.join()
    assert errors == []
    assert seen <= set(contents.values())
    assert path.read_bytes() in contents.values()
    assert [p.name for p in path.parent.iterdir()] == ["merger-1.json"]  # no temporary left


def test_only_old_temporary_files_of_interrupted_writes_are_removed(tmp_path: Path) -> None:
    old = tmp_path / ".partition-0.bin.1234-aa.tmp"
    fresh = tmp_path / ".partition-1.bin.1234-bb.tmp"  # another worker writing it now
    kept = tmp_path / "partition-0.bin"
    for file in (old, fresh, kept):
        file.write_bytes(b"x")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    os.utime(kept, (time.time() - 7200, time.time() - 7200))
    assert remove_stale_temporaries(tmp_path) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [fresh.name, kept.name]


@pytest.mark.parametrize(
    "window",
    [
        {"size": 7200, "allowed_lateness": 30, "label_horizon": 172800},  # wider times stored
        {"size": 25, "allowed_lateness": 2, "label_horizon": 30},  # shorter, horizon too
        {"size": 45, "allowed_lateness": 10, "label_horizon": 600},  # another grid
    ],
)
def test_a_checkpoint_restores_under_changed_window_settings(window: dict[str, int]) -> None:
    # Window settings are not migrated (docs/operations.md): a worker restarted with new
    # ones keeps the windows open in its checkpoints as they are, puts new predictions on
    # the new grid, and loses or double-counts nothing in the join.
    size_us = window["size"] * 1_000_000
    document = CONFIG.model_dump(mode="json", by_alias=True, exclude_unset=True)
    document["models"][0]["window"] = window
    before = Partition(0)
    before.processor.process(
        before.messages("p", [prediction(f"a{i}", i, 0.1 * i) for i in range(0, 150, 3)])
    )
    before.processor.process(
        before.messages("l", [label(f"a{i}", i + 5, 1) for i in range(0, 60, 6)])
    )
    open_at_restore = {key.window_start_us for key in before.processor.windows.drift}
    after = Partition(0, config=MonitorConfig.model_validate(document))
    after.offsets = dict(before.offsets)
    after.processor.restore(before.processor.to_bytes())
    batches = [
        ("p", [prediction(f"b{i}", i, 0.1 * i) for i in range(150, 9000, 7)]),
        ("l", [label(f"a{i}", i + 500, 0) for i in range(60, 150, 6)]
              + [label(f"b{i}", i + 30, 1) for i in range(150, 9000, 70)]),
        ("p", [prediction(f"c{i}", i, 0.1 * i) for i in range(9000, 200_000, 500)]),
    ]  # fmt: skip
    closed: set[int] = set()
    for topic, values in batches:
        result = after.processor.process(after.messages(topic, values))
        closed |= {partial.key.window_start_us for partial in result.windows.drift}
    counters = after.processor.join.counters()[("churn", "1")]
    produced = len(range(0, 150, 3)) + len(range(150, 9000, 7)) + len(range(9000, 200_000, 500))
    assert counters.predictions == produced
    assert counters.predictions == (
        counters.duplicate_predictions
        + counters.joined
        + counters.unlabelled
        + after.processor.join.pending_count
    )
    new_grid = {start for start in closed if start not in open_at_restore}
    assert new_grid, "no window of the new settings closed"
    assert all(start % size_us == 0 for start in new_grid)
