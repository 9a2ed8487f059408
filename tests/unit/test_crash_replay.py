"""A worker killed at any moment and restarted from its checkpoints ends with the same points.

The worker's state machine runs here without a broker (as in
``test_worker.py``): two input partitions are read in batches of random
sizes, partials go to an in-memory partials log that the merge side reads
from its own position, and checkpoints are taken on their own cadence. A
crash drops the worker object between two steps; its successor restores from
the checkpoint files, reads the inputs again from the offsets those record
and the partials log from where the merger's checkpoint stood. The traffic
has late predictions, late labels, labels before their predictions, retried
predictions and refused messages attributed to a window that is still ahead
of the watermark when most of them arrive. The last value of every series and
timestamp in the line-protocol file must equal an uninterrupted run's.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from schemas import DriftlineSettings
from streams.app import Worker
from streams.decode import RawMessage
from streams.points import latest_points, parse_line_protocol
from tests.unit.test_windows_merger import CONFIG, REFERENCE, label, prediction

PARTITIONS = 2
EMIT_INTERVAL_S = 1.05
"""A little over the configuration's ``emit_interval`` (1 s, the default)."""
REFUSED_AT_S = 400
"""Event time of the refused messages' timestamp: a window ahead of most traffic."""


def refused(index: int) -> bytes:
    """A prediction refused for its empty id, attributable to the window of REFUSED_AT_S."""
    document = orjson.loads(prediction(f"bad-{index}", REFUSED_AT_S, 0.0))
    document["prediction_id"] = ""
    return orjson.dumps(document)


def traffic(seed: int) -> dict[int, list[tuple[str, bytes, bytes]]]:
    """Per partition, (topic, key, value) in the order they are produced."""
    rng = random.Random(seed)
    timeline: list[tuple[float, int, str, bytes, bytes]] = []
    for index in range(900):
        second = index * 0.8
        pid = f"p{index}"
        part = rng.randrange(PARTITIONS)
        moment = second + (150 if index % 97 == 5 else 0)  # a few late predictions
        value = prediction(pid, second, rng.gauss(0, 1), rng.choice("abc"))
        timeline.append((moment, part, "p", pid.encode(), value))
        if index % 53 == 7:  # a serving app's retry
            timeline.append((moment + 0.1, part, "p", pid.encode(), value))
        if rng.random() < 0.7:
            lag = rng.uniform(-2, 300)  # some labels come before their prediction
            labelled = label(pid, second + max(lag, 0), rng.randrange(2))
            timeline.append((moment + lag, part, "l", pid.encode(), labelled))
        if index % 41 == 0:
            timeline.append((moment + 0.2, part, "p", b"", refused(index)))
    timeline.sort(key=lambda item: item[0])
    by_partition: dict[int, list[tuple[str, bytes, bytes]]] = {p: [] for p in range(PARTITIONS)}
    for _, part, topic, key, value in timeline:
        by_partition[part].append((topic, key, value))
    return by_partition


@dataclass
class Harness:
    """Inputs as two topics per partition, the partials log and the positions read."""

    directory: Path
    inputs: dict[int, list[tuple[str, bytes, bytes]]]
    messages: dict[int, list[RawMessage]] = field(default_factory=dict)
    partials: list[bytes] = field(default_factory=list)
    merged_up_to: int = 0
    crashes: int = 0

    def __post_init__(self) -> None:
        for part, produced in self.inputs.items():
            offsets = {"p": 0, "l": 0}
            numbered = []
            for topic, key, value in produced:
                numbered.append(RawMessage(topic, part, offsets[topic], key or None, value))
                offsets[topic] += 1
            self.messages[part] = numbered
        self.worker = self._start()

    def _start(self) -> Worker:
        settings = DriftlineSettings(
            data_dir=self.directory / "data", topic_predictions="p", topic_labels="l"
        )
        worker = Worker(settings, CONFIG, self.directory, partitions=PARTITIONS)
        # Where each partition resumes: its checkpoint's offsets, else the beginning.
        self.position = {}
        for part in range(PARTITIONS):
            if worker.has_checkpoint(part):
                join = worker.processor(part).join
                self.position[part] = {"p": join.next_offset("p"), "l": join.next_offset("l")}
            else:
                self.position[part] = {"p": 0, "l": 0}
        worker.merger(0)
        return worker

    def pending(self, part: int) -> list[RawMessage]:
        at = self.position[part]
        return [m for m in self.messages[part] if m.offset >= at[m.topic]]

    def ingest(self, part: int, count: int) -> None:
        batch = self.pending(part)[:count]
        if not batch:
            return
        for message in batch:
            self.position[part][message.topic] = message.offset + 1
        _, partials = self.worker.ingest(batch)
        self.partials.extend(value for _, value in partials)

    def merge(self) -> None:
        self.worker.merge([(0, value) for value in self.partials[self.merged_up_to :]])
        self.worker.emit()
        self.worker.flush()
        self.worker.checkpoint_merger(0)
        self.merged_up_to = len(self.partials)

    def crash(self) -> None:
        """The process dies: nothing unsaved survives; a new one starts from the files."""
        self.crashes += 1
        self.worker = self._start()

    def done(self) -> bool:
        return all(not self.pending(part) for part in range(PARTITIONS))


def run(directory: Path, seed: int, crash_at: set[int]) -> dict[Any, dict[str, Any]]:
    rng = random.Random(seed * 7919)
    directory.mkdir(parents=True)
    (directory / "ref.json").write_text(REFERENCE.to_json())
    harness = Harness(directory, traffic(seed))
    step = 0
    while not harness.done():
        step += 1
        harness.ingest(rng.randrange(PARTITIONS), rng.randint(1, 60))
        if step % 3 == 0:
            harness.merge()
        if step % 5 == 0:  # the input side's checkpoint cadence
            for part in range(PARTITIONS):
                if part in harness.worker.processors:
                    harness.worker.checkpoint(part)
        if step in crash_at:
            harness.crash()
    harness.merge()
    time.sleep(EMIT_INTERVAL_S)  # performance points are re-emitted at most this often
    harness.merge()
    assert harness.crashes == len(crash_at)
    lines = (directory / "data" / "metrics.lp").read_text()
    return {
        (point.measurement, point.tags, point.time_ns): dict(point.fields)
        for point in latest_points(parse_line_protocol(lines))
    }


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_a_worker_killed_at_random_steps_ends_like_one_never_killed(
    tmp_path: Path, seed: int
) -> None:
    reference = run(tmp_path / "reference", seed, set())
    crash_at = set(random.Random(seed).sample(range(2, 60), 4))
    crashed = run(tmp_path / "crashed", seed, crash_at)
    volume = [k for k in reference if k[0] == "volume"]
    assert len(volume) > 10 and any(reference[k]["dead_letters"] for k in volume)
    assert any(reference[k]["late_predictions"] for k in volume)
    differences = [
        f"{key}: {reference.get(key)} != {crashed.get(key)}"
        for key in sorted(set(reference) | set(crashed), key=str)
        if reference.get(key) != crashed.get(key)
    ]
    assert differences == [], "\n".join(differences[:20])
