"""Per-event cost of a worker's hot path, against ``orjson.loads`` in the same run.

The traffic is the one of :mod:`benchmarks.e2e_throughput`: synthetic churn
predictions (the ten features of :mod:`streams.synthetic` padded with ten
numeric ones, about 520 bytes of JSON each) and labels for ``--label-share``
of them, with a reference profile built from undrifted traffic and the same
monitor configuration (one binary model, segments by region, 5-minute
windows). No broker is involved: everything is timed in this process.

Measured, each as the best of ``--repeat`` runs, in µs of this process's CPU
time per message (CPU time, so other load on the machine matters less):

1. ``orjson.loads`` of every prediction (the baseline; a bare consumer's decode);
2. pydantic's ``PredictionEvent.model_validate_json`` (the validation alone);
3. ``decode_prediction`` and ``decode_label`` (what the worker calls per message);
4. ``PartitionProcessor.process`` on batches of ``--batch`` messages of one
   partition, predictions and labels interleaved in event-time order: decode,
   screen, late-label join, drift and performance windows, partials. Per
   message and per prediction, with the garbage collector off (as the rows
   above) and on (as in a worker).

Usage::

    python -m benchmarks.decode_path                   # 20,000 predictions, batches of 2,000
    python -m benchmarks.decode_path --events 6000 --repeat 3
    python -m benchmarks.decode_path --stages          # and process stage by stage
"""

from __future__ import annotations

import argparse
import gc
import heapq
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from benchmarks.e2e_throughput import (
    MODEL_ID,
    MODEL_VERSION,
    THROUGHPUT_RATE_PER_S,
    THROUGHPUT_WINDOW_S,
    monitors_yaml,
    traffic,
    write_training_csv,
)
from detectors.profile import ReferenceProfile
from schemas import DEFAULT_LIMITS, MonitorConfig, PredictionEvent, parse_config
from schemas.events import decode_label, decode_prediction
from streams import partition as partition_module
from streams.decode import RawMessage
from streams.partition import PartitionProcessor
from streams.reference import build_reference

START = datetime(2026, 11, 23, tzinfo=UTC)
PREDICTIONS_TOPIC = "driftline.predictions"
LABELS_TOPIC = "driftline.labels"


@dataclass(frozen=True)
class Workload:
    """Encoded traffic of one partition and what the worker needs to process it."""

    predictions: list[bytes]
    labels: list[bytes]
    batches: list[list[RawMessage]]
    config: MonitorConfig
    reference: ReferenceProfile
    now: datetime


def build_workload(events: int, label_share: float, batch: int, seed: int) -> Workload:
    """Traffic, configuration and reference profile (nothing of it is timed)."""
    predictions: list[tuple[bytes, bytes]] = []
    labels: list[tuple[bytes, bytes]] = []
    for chunk in traffic(
        start=START,
        count=events,
        rate_per_s=THROUGHPUT_RATE_PER_S,
        label_share=label_share,
        seed=seed,
        tag="decode",
    ):
        predictions += chunk.predictions
        labels += chunk.labels
    config = parse_config(monitors_yaml(THROUGHPUT_WINDOW_S, partitions=1))
    model = config.model(MODEL_ID)
    with tempfile.TemporaryDirectory(prefix="driftline-decode-") as directory:
        training = Path(directory) / "train.csv"
        write_training_csv(training)
        reference = build_reference(
            training,
            MODEL_ID,
            MODEL_VERSION,
            model=model,
            target="label",
            prediction="prediction",
            score="score",
        )

    def stamped(
        topic: str, pairs: list[tuple[bytes, bytes]]
    ) -> list[tuple[str, str, int, bytes, bytes]]:
        return [
            (orjson.loads(value)["timestamp"], topic, offset, key, value)
            for offset, (key, value) in enumerate(pairs)
        ]

    # Both topics in event-time order, as a consumer of one partition would read them.
    merged = list(
        heapq.merge(
            stamped(PREDICTIONS_TOPIC, predictions),
            stamped(LABELS_TOPIC, labels),
            key=lambda item: datetime.fromisoformat(item[0]),
        )
    )
    messages = [RawMessage(topic, 0, offset, key, value) for _, topic, offset, key, value in merged]
    last = max(datetime.fromisoformat(item[0]) for item in merged)
    return Workload(
        predictions=[value for _, value in predictions],
        labels=[value for _, value in labels],
        batches=[messages[start : start + batch] for start in range(0, len(messages), batch)],
        config=config,
        reference=reference,
        now=last + timedelta(minutes=5),
    )


def best_of(repeat: int, run: Callable[[], float], *, collect: bool = False) -> float:
    """The smallest of ``repeat`` timings (CPU seconds).

    The garbage collector is off while timing unless ``collect``: a worker runs
    with it on, and its passes over the objects a batch allocates are part of
    the worker's cost.
    """
    timings = []
    for _ in range(repeat):
        gc.collect()
        if not collect:
            gc.disable()
        try:
            timings.append(run())
        finally:
            gc.enable()
    return min(timings)


def timed_map(function: Callable[[bytes], object], values: Sequence[bytes]) -> Callable[[], float]:
    def run() -> float:
        started = time.process_time()
        for value in values:
            function(value)
        return time.process_time() - started

    return run


def new_processor(workload: Workload) -> PartitionProcessor:
    """A fresh processor of partition 0 for the workload's configuration."""
    return PartitionProcessor(
        0,
        workload.config,
        lambda model_id, version: (
            workload.reference if (model_id, version) == (MODEL_ID, MODEL_VERSION) else None
        ),
        predictions_topic=PREDICTIONS_TOPIC,
        labels_topic=LABELS_TOPIC,
        limits=DEFAULT_LIMITS,
    )


def timed_process(workload: Workload) -> Callable[[], float]:
    def run() -> float:
        processor = new_processor(workload)
        elapsed = 0.0
        for batch in workload.batches:
            started = time.process_time()
            result = processor.process(batch, now=workload.now)
            elapsed += time.process_time() - started
            if result.dead_letters:
                raise RuntimeError(f"unexpected dead letter: {result.dead_letters[0]}")
        return elapsed

    return run


def timed_stages(workload: Workload) -> Callable[[], tuple[float, dict[str, float]]]:
    """A run of ``process`` that also times its stages (CPU seconds of each).

    The stages are the calls ``PartitionProcessor.process`` makes: decoding of
    each topic, the join of each, the drift windows, the performance windows
    and the collection of partials; what is left is the method's own work
    (splitting the batch by topic, screening, freeing the batch's events).
    """
    stages = {
        "decode predictions": (partition_module, "decode_predictions"),
        "decode labels": (partition_module, "decode_labels"),
    }

    def timing(spent: dict[str, float], name: str, call: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.process_time()
            try:
                return call(*args, **kwargs)
            finally:
                spent[name] = spent.get(name, 0.0) + time.process_time() - started

        return timed

    def run() -> tuple[float, dict[str, float]]:
        spent: dict[str, float] = {}
        processor = new_processor(workload)
        join, windows = processor.join, processor.windows
        for name, owner, method in [
            ("join predictions", join, "add_predictions"),
            ("join labels", join, "add_labels"),
            ("drift windows", windows, "add_predictions"),
            ("performance windows", windows, "add_pairs"),
            ("collect partials", windows, "collect"),
        ]:
            setattr(owner, method, timing(spent, name, getattr(owner, method)))
        originals = {name: getattr(module, attr) for name, (module, attr) in stages.items()}
        for name, (module, attribute) in stages.items():
            setattr(module, attribute, timing(spent, name, originals[name]))
        try:
            started = time.process_time()
            for batch in workload.batches:
                processor.process(batch, now=workload.now)
            total = time.process_time() - started
        finally:
            for name, (module, attribute) in stages.items():
                setattr(module, attribute, originals[name])
        return total, spent

    return run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=20_000, help="predictions (default 20000)")
    parser.add_argument("--label-share", type=float, default=0.5, help="labelled share (0.5)")
    parser.add_argument("--batch", type=int, default=2_000, help="messages per batch (2000)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per measurement (5)")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--stages", action="store_true", help="also time process stage by stage")
    args = parser.parse_args(argv)
    console = Console(highlight=False, width=140)
    console.print(
        f"building {args.events:,} predictions, their labels and the reference profile ..."
    )
    workload = build_workload(args.events, args.label_share, args.batch, args.seed)
    # The traffic held for the benchmark is no part of a worker's heap: keep it
    # out of the collector's passes.
    gc.collect()
    gc.freeze()
    predictions, labels = workload.predictions, workload.labels
    messages = len(predictions) + len(labels)
    size = sum(map(len, predictions)) / len(predictions)
    console.print(
        f"{len(predictions):,} predictions (mean {size:.0f} bytes), {len(labels):,} labels, "
        f"{len(workload.batches)} batches of up to {args.batch:,} messages"
    )

    def validate(value: bytes) -> object:
        return PredictionEvent.model_validate_json(value, context={"limits": DEFAULT_LIMITS})

    measured: list[tuple[str, Callable[[bytes], object], list[bytes]]] = [
        ("orjson.loads (baseline)", orjson.loads, predictions),
        ("pydantic model_validate_json", validate, predictions),
        ("decode_prediction", decode_prediction, predictions),
        ("orjson.loads, labels", orjson.loads, labels),
        ("decode_label", decode_label, labels),
    ]
    rows = [
        (name, best_of(args.repeat, timed_map(function, values)), len(values))
        for name, function, values in measured
    ]
    process_s = best_of(args.repeat, timed_process(workload))
    collected_s = best_of(args.repeat, timed_process(workload), collect=True)
    baseline_us = rows[0][1] / rows[0][2] * 1e6
    label_baseline_us = rows[3][1] / rows[3][2] * 1e6

    table = Table(title="CPU µs per message (best of runs)", title_justify="left")
    table.add_column("path")
    table.add_column("µs / message", justify="right")
    table.add_column("× orjson.loads", justify="right")
    for name, seconds, count in rows:
        per_message = seconds / count * 1e6
        base = label_baseline_us if "label" in name else baseline_us
        table.add_row(name, f"{per_message:.2f}", f"{per_message / base:.2f}")
    for name, seconds in [("", process_s), (", garbage collector on", collected_s)]:
        for unit, count in [("message", messages), ("prediction", len(predictions))]:
            per_unit = seconds / count * 1e6
            table.add_row(
                f"PartitionProcessor.process{name}, per {unit} ({count:,})",
                f"{per_unit:.2f}",
                f"{per_unit / baseline_us:.2f}",
            )
    console.print(table)
    if args.stages:
        run_stages = timed_stages(workload)
        runs = []
        for _ in range(args.repeat):
            gc.collect()
            gc.disable()
            try:
                runs.append(run_stages())
            finally:
                gc.enable()
        total, spent = min(runs, key=lambda run: run[0])
        stages = Table(
            title="process by stage, CPU µs per prediction (the fastest run; GC off)",
            title_justify="left",
        )
        stages.add_column("stage")
        stages.add_column("µs / prediction", justify="right")
        stages.add_column("share", justify="right")
        rest = total - sum(spent.values())
        for name, seconds in [*sorted(spent.items(), key=lambda item: -item[1]), ("rest", rest)]:
            stages.add_row(
                name, f"{seconds / len(predictions) * 1e6:.2f}", f"{seconds / total:.0%}"
            )
        stages.add_row("process", f"{total / len(predictions) * 1e6:.2f}", "100%")
        console.print(stages)
    console.print(
        f"process: {messages / process_s:,.0f} messages/s, "
        f"{len(predictions) / process_s:,.0f} predictions/s on one core "
        f"({messages / collected_s:,.0f} and {len(predictions) / collected_s:,.0f} "
        "with the garbage collector on)"
    )


if __name__ == "__main__":
    main()
