"""Memory, checkpoint and per-event cost of the late-label join, against the join of id strings.

**Workload.** One model whose windows last two days, so every event falls in
one window and nothing expires: ``N`` predictions (10⁴, 10⁵, 10⁶), half of
them labelled. Events are built like a serving app's: a random UUID as
``prediction_id``, two versions, a ``region`` segment of three values, an
integer class and two class scores. They go to a
:class:`streams.join.JoinState` in batches of 2,000, as the worker hands
them over; the labels of a batch's even-numbered predictions come one batch
later, 60 s after them. Only one batch of events exists at a time, so what
stays in memory is the join.

**Memory and checkpoints**, each size and join in a fresh process: bytes per
held id (pending and joined ids together) from ``tracemalloc`` (every
allocation still held once the events are gone, numpy arrays included) and
from the process's resident memory (``VmRSS``) before and after; then
``to_bytes`` and ``from_bytes`` of the final state (best of three) and the
checkpoint's size.

**Per-event cost**, both joins in one process: each is filled with ``N``
predictions as above, then 30 more rounds of the workload (2,000 predictions,
then the labels of the previous round's even-numbered ones) go to both,
alternating which goes first. The CPU time of each ``add_predictions`` and
``add_labels`` call is taken with the garbage collector paused (it runs
between calls), so the figure is the join's own work; the ratio is the median
of the per-round ratios.

**Baseline**, in the same run: the newest committed ``streams/join.py`` that
still held id strings (found with ``git log``, or ``--baseline-ref``), loaded
as a module of its own.

Usage::

    python -m benchmarks.join_memory                          # 10⁴, 10⁵, 10⁶ (≈ 20 min)
    python -m benchmarks.join_memory --sizes 10000 100000     # quicker
    python -m benchmarks.join_memory --no-baseline
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

from rich.console import Console
from rich.table import Table

import streams.join
from schemas.events import LabelEvent, PredictionEvent

ROOT = Path(__file__).resolve().parent.parent
BATCH = 2_000
ROUNDS = 30
WINDOW_START = datetime(2026, 3, 2, tzinfo=UTC)
MODEL = "churn"
# The marker of the hashed storage: a join.py without it held id strings.
HASHED_MARKER = "_prediction_id_hashes"


def load_join(path: str | None) -> ModuleType:
    """``streams.join``, or the file at ``path`` loaded as a module of its own."""
    if path is None:
        return streams.join
    spec = importlib.util.spec_from_file_location("driftline_join_baseline", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


def batches(
    count: int, first: int = 0, spread: int | None = None
) -> Iterator[tuple[list[PredictionEvent], list[LabelEvent]]]:
    """Predictions ``first`` … ``first + count``, in batches, each with the labels
    of the batch before it; ``spread`` predictions fill one day of the window."""
    spacing = timedelta(seconds=86_400 / (spread or count))
    waiting: list[LabelEvent] = []
    for start in range(first, first + count, BATCH):
        predictions = []
        labels = waiting
        waiting = []
        for index in range(start, min(start + BATCH, first + count)):
            score = ((index * 7919) % 10007) / 10007
            moment = WINDOW_START + index * spacing
            prediction_id = str(uuid.UUID(int=(index * 0x9E3779B97F4A7C15 + 1) % 2**128))
            predictions.append(
                PredictionEvent.model_construct(
                    prediction_id=prediction_id,
                    model_id=MODEL,
                    model_version=("41", "42")[index % 2],
                    timestamp=moment,
                    features={},
                    prediction=int(score > 0.5),
                    scores={"0": 1 - score, "1": score},
                    segment={"region": ("eu", "us", "apac")[index % 3]},
                )
            )
            if index % 2 == 0:
                waiting.append(
                    LabelEvent.model_construct(
                        prediction_id=prediction_id,
                        model_id=MODEL,
                        label=index % 3 % 2,
                        timestamp=moment + timedelta(seconds=60),
                    )
                )
        yield predictions, labels
    yield [], waiting


class Feeder:
    """A join state fed with consecutive offsets."""

    def __init__(self, join: ModuleType) -> None:
        self.policies = {MODEL: join.JoinPolicy(2 * 86_400, 3_600, 3_600)}
        self.state = join.JoinState(0, self.policies)
        self.predictions = 0
        self.labels = 0

    def feed(self, predictions: list[PredictionEvent], labels: list[LabelEvent]) -> None:
        self.feed_predictions(predictions)
        self.feed_labels(labels)

    def feed_predictions(self, events: list[PredictionEvent]) -> None:
        self.state.add_predictions(events, range(self.predictions, self.predictions + len(events)))
        self.predictions += len(events)

    def feed_labels(self, events: list[LabelEvent]) -> None:
        self.state.add_labels(events, range(self.labels, self.labels + len(events)))
        self.labels += len(events)


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def memory_child(path: str | None, count: int, trace: bool) -> dict[str, Any]:
    """Bytes per held id (and checkpoint times unless tracing), in this fresh process."""
    join = load_join(path)
    for _ in batches(4_000):  # warm up the event classes and the allocator
        pass
    gc.collect()
    if trace:
        tracemalloc.start()
    traced_before = tracemalloc.get_traced_memory()[0] if trace else 0
    rss_before = rss_bytes()
    feeder = Feeder(join)
    for predictions, labels in batches(count):
        feeder.feed(predictions, labels)
        del predictions, labels
    gc.collect()
    state = feeder.state
    held = state.pending_count + state.joined_count + state.orphan_count
    if trace:
        traced = tracemalloc.get_traced_memory()[0] - traced_before
        tracemalloc.stop()
        return {"held": held, "traced_per_id": traced / held}
    result: dict[str, Any] = {"held": held, "rss_per_id": (rss_bytes() - rss_before) / held}
    writes, reads = [], []
    data = b""
    for _ in range(3):
        started = time.perf_counter()
        data = state.to_bytes()
        writes.append(time.perf_counter() - started)
        started = time.perf_counter()
        join.JoinState.from_bytes(data, feeder.policies)
        reads.append(time.perf_counter() - started)
    result.update(to_bytes_s=min(writes), from_bytes_s=min(reads), checkpoint_bytes=len(data))
    return result


def cost_child(paths: dict[str, str | None], count: int) -> dict[str, Any]:
    """Paired CPU time per event of each join, at ``count`` held ids, in this process."""
    feeders = {name: Feeder(load_join(path)) for name, path in paths.items()}
    spread = count + ROUNDS * BATCH  # the rounds stay in the window too
    for predictions, labels in batches(count, spread=spread):
        for feeder in feeders.values():
            feeder.feed(predictions, labels)
    rounds = list(batches(ROUNDS * BATCH, first=count, spread=spread))
    times: dict[str, dict[str, list[float]]] = {
        name: {"predictions": [], "labels": []} for name in feeders
    }
    names = list(feeders)
    for number, (predictions, labels) in enumerate(rounds[:-1]):
        for name in names if number % 2 else names[::-1]:
            feeder = feeders[name]
            for kind, events in (("predictions", predictions), ("labels", labels)):
                gc.collect()
                gc.disable()
                started = time.process_time()
                if kind == "predictions":
                    feeder.feed_predictions(predictions)
                else:
                    feeder.feed_labels(labels)
                elapsed = time.process_time() - started
                gc.enable()
                if events and number:  # the first round's labels belong to the fill
                    times[name][kind].append(elapsed / len(events) * 1e6)
    return times


def baseline_source(ref: str | None) -> tuple[str, str] | None:
    """(commit, source) of the baseline join.py, or None if there is none."""

    def show(commit: str) -> str:
        return subprocess.run(
            ["git", "show", f"{commit}:streams/join.py"],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    if ref is not None:
        return ref, show(ref)
    commits = subprocess.run(
        ["git", "log", "--format=%H", "--", "streams/join.py"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    for commit in commits:
        source = show(commit)
        if HASHED_MARKER not in source:
            return commit[:12], source
    return None


def run_child(*arguments: str) -> Any:
    command = [sys.executable, "-m", "benchmarks.join_memory", *arguments]
    output = subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True)
    return json.loads(output.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--baseline-ref", help="commit of the baseline streams/join.py")
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--cost-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--module", help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child is not None:
        print(json.dumps(memory_child(args.module, args.memory_child, args.trace)))
        return
    if args.cost_child is not None:
        paths = {"hashed": None} | ({} if args.module is None else {"strings": args.module})
        print(json.dumps(cost_child(paths, args.cost_child)))
        return

    console = Console(highlight=False, width=160)
    implementations: list[tuple[str, str | None]] = [("hashed columns (working tree)", None)]
    with tempfile.TemporaryDirectory() as scratch:
        baseline: str | None = None
        if not args.no_baseline:
            found = baseline_source(args.baseline_ref)
            if found is None:
                console.print("no committed streams/join.py without hashed storage: no baseline")
            else:
                commit, source = found
                path = Path(scratch) / "join_baseline.py"
                path.write_text(source)
                baseline = str(path)
                implementations.append((f"id strings ({commit})", baseline))
        memory = []
        for name, module in implementations:
            for count in args.sizes:
                console.print(f"memory, {name}: {count:,} predictions …")
                extra = [] if module is None else ["--module", module]
                measured = run_child("--memory-child", str(count), *extra)
                measured |= run_child("--memory-child", str(count), "--trace", *extra)
                memory.append((name, count, measured))
        costs = []
        for count in args.sizes:
            console.print(f"per-event cost at {count:,} held ids …")
            extra = [] if baseline is None else ["--module", baseline]
            costs.append((count, run_child("--cost-child", str(count), *extra)))

    table = Table(title="Memory and checkpoints: one window, half the predictions labelled")
    for column in (
        "join",
        "predictions",
        "held ids",
        "B/id tracemalloc",
        "B/id RSS",
        "to_bytes",
        "from_bytes",
        "checkpoint B/id",
    ):
        table.add_column(column, justify="left" if column == "join" else "right")
    for name, count, m in memory:
        table.add_row(
            name,
            f"{count:,}",
            f"{m['held']:,}",
            f"{m['traced_per_id']:.1f}",
            f"{m['rss_per_id']:.1f}",
            f"{m['to_bytes_s'] * 1e3:.1f} ms",
            f"{m['from_bytes_s'] * 1e3:.1f} ms",
            f"{m['checkpoint_bytes'] / m['held']:.1f}",
        )
    console.print(table)

    table = Table(title=f"CPU µs per event, batches of {BATCH:,} (median of {ROUNDS - 1} rounds)")
    for column in ("held ids", "kind", "hashed columns", "id strings", "hashed / strings"):
        table.add_column(column, justify="right")
    median = statistics.median
    for count, times in costs:
        for kind in ("predictions", "labels"):
            hashed = times["hashed"][kind]
            strings = times.get("strings", {}).get(kind)
            table.add_row(
                f"{count:,}",
                kind,
                f"{median(hashed):.2f}",
                "" if strings is None else f"{median(strings):.2f}",
                ""
                if strings is None
                else f"{median(h / s for h, s in zip(hashed, strings, strict=True)):.2f}",
            )
    console.print(table)
    console.print(
        "RSS: the process's resident memory after minus before, per held id (the allocator's "
        "retained memory included). Per-event times: garbage collector paused during each call."
    )


if __name__ == "__main__":
    main()
