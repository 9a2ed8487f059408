"""The compose stack's serving app: live churn-model traffic that drifts, with late labels.

Two commands, both run inside the driftline image:

``training-data -o train.csv``
    Write the data set the reference profile is built from: predictions of the
    synthetic churn model (``streams.synthetic``) before any drift, with their
    true labels, scores and features, one row per prediction.

``run``
    Produce predictions and labels to Kafka in real time, through
    ``streams.producer.EventProducer`` (confluent-kafka, keyed by
    ``prediction_id``): every event is sent when the wall clock reaches its
    event time, so labels really arrive late (exponential delay, mean
    ``--label-delay`` seconds), and the traffic alternates between the training
    distribution and a drifted one every ``--drift-every`` seconds (one numeric
    feature shifts, one plan becomes common, and the model's accuracy falls).
    A few malformed messages are sent too, so the dead-letter path shows up.

Nothing here is faked for the dashboards: the workers compute every number from
these events.  Kafka and topic settings come from the ``DRIFTLINE_*`` variables,
as for the workers.  Stop with SIGTERM or Ctrl-C: queued messages are flushed.
"""

from __future__ import annotations

import argparse
import csv
import heapq
import logging
import signal
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from schemas import DriftlineSettings, LabelEvent, PredictionEvent
from streams.producer import EventProducer
from streams.synthetic import (
    CATEGORICAL_FEATURES,
    NUMERIC_FEATURES,
    ScenarioConfig,
    generate,
)

log = logging.getLogger("demo-producer")

NUMERIC = NUMERIC_FEATURES
CATEGORICAL = CATEGORICAL_FEATURES


def write_training_data(path: Path, rows: int, seed: int) -> int:
    """Write undrifted synthetic predictions with their true labels as CSV; return the rows."""
    scenario = generate(
        ScenarioConfig(
            predictions=rows, drift_from=1.0, label_share=1.0, malformed_every=0, seed=seed
        )
    )
    truth = {label["prediction_id"]: label["label"] for label in scenario.labels}
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([*NUMERIC, *CATEGORICAL, "prediction", "score", "label"])
        for event in scenario.predictions:
            features = event["features"]
            writer.writerow(
                [
                    *("" if features[name] is None else features[name] for name in NUMERIC),
                    *(features[name] for name in CATEGORICAL),
                    event["prediction"],
                    event["scores"]["1"],
                    truth[event["prediction_id"]],
                ]
            )
    return len(scenario.predictions)


@dataclass(order=True)
class _Due:
    """One message to send when the wall clock reaches ``at`` (epoch seconds)."""

    at: float
    order: int
    kind: str = field(compare=False)  # "prediction", "label" or "malformed"
    payload: Any = field(compare=False)


class LiveTraffic:
    """Generates traffic chunk by chunk and sends each event at its event time.

    Parameters
    ----------
    producer
        Where events go.
    settings
        Topic names (malformed messages are sent raw to the predictions topic).
    rate
        Predictions per second.
    chunk_s
        Seconds of traffic generated at once.
    drift_every_s
        Length of the normal and the drifted phases.
    label_delay_s
        Mean label delay.
    model_version
        Version the predictions carry.
    seed
        Base seed; each chunk uses its own, so prediction ids never repeat.
    """

    def __init__(
        self,
        producer: EventProducer,
        settings: DriftlineSettings,
        *,
        rate: float,
        chunk_s: float,
        drift_every_s: float,
        label_delay_s: float,
        model_version: str,
        seed: int,
    ) -> None:
        self.producer = producer
        self.settings = settings
        self.rate = rate
        self.chunk_s = chunk_s
        self.drift_every_s = drift_every_s
        self.label_delay_s = label_delay_s
        self.model_version = model_version
        self.seed = seed
        self.started = time.time()
        self.next_start = self.started
        self.chunks = 0
        self.sent = {"prediction": 0, "label": 0, "malformed": 0}
        self._queue: list[_Due] = []
        self._order = 0

    def drifting(self, at: float) -> bool:
        """Whether traffic generated for time ``at`` follows the drifted distribution."""
        return int((at - self.started) // self.drift_every_s) % 2 == 1

    def _push(self, at: float, kind: str, payload: Any) -> None:
        self._order += 1
        heapq.heappush(self._queue, _Due(at, self._order, kind, payload))

    def _generate_chunk(self) -> None:
        start = datetime.fromtimestamp(self.next_start, UTC)
        drifting = self.drifting(self.next_start)
        scenario = generate(
            ScenarioConfig(
                start=start,
                predictions=max(1, round(self.rate * self.chunk_s)),
                rate_per_s=self.rate,
                drift_from=0.0 if drifting else 1.0,
                label_delay_s=self.label_delay_s,
                malformed_every=max(1, round(self.rate * self.chunk_s)),  # one a chunk
                model_version=self.model_version,
                seed=self.seed * 1_000_003 + self.chunks,
            )
        )
        for event in scenario.predictions:
            self._push(_epoch(event["timestamp"]), "prediction", event)
        for label in scenario.labels:
            self._push(_epoch(label["timestamp"]), "label", label)
        for index, raw in enumerate(scenario.malformed):
            self._push(self.next_start + index, "malformed", raw)
        last = _epoch(scenario.predictions[-1]["timestamp"])
        log.info(
            "chunk %d: %d predictions %s .. %s (%s), %d labels over the next minutes",
            self.chunks,
            len(scenario.predictions),
            start.strftime("%H:%M:%S"),
            datetime.fromtimestamp(last, UTC).strftime("%H:%M:%S"),
            "drifted" if drifting else "training distribution",
            len(scenario.labels),
        )
        self.chunks += 1
        self.next_start = last + 1e-3

    def _send(self, due: _Due) -> None:
        if due.kind == "prediction":
            self.producer.send_prediction(PredictionEvent.model_validate(due.payload))
        elif due.kind == "label":
            self.producer.send_label(LabelEvent.model_validate(due.payload))
        else:
            key = f"malformed-{self.sent['malformed']}"
            self.producer.send_raw(self.settings.topic_predictions, key, due.payload)
        self.sent[due.kind] += 1

    def step(self) -> float:
        """Send what is due, generate traffic ahead; return seconds until the next event."""
        now = time.time()
        if now >= self.next_start - 1.0:
            self._generate_chunk()
        while self._queue and self._queue[0].at <= now:
            self._send(heapq.heappop(self._queue))
        upcoming = self._queue[0].at if self._queue else self.next_start
        return max(0.0, min(upcoming, self.next_start - 1.0) - time.time())


def _epoch(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp).timestamp()


def run(args: argparse.Namespace) -> int:
    """Produce live traffic until stopped (or for ``--duration`` seconds)."""
    settings = DriftlineSettings()
    overrides = {} if args.compression is None else {"compression.type": args.compression}
    producer = EventProducer(settings, overrides)
    traffic = LiveTraffic(
        producer,
        settings,
        rate=args.rate,
        chunk_s=args.chunk,
        drift_every_s=args.drift_every,
        label_delay_s=args.label_delay,
        model_version=args.model_version,
        seed=args.seed,
    )
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        log.info("received %s, stopping", signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info(
        "producing %.1f predictions/s to %s (labels to %s) via %s; drift every %.0f s",
        args.rate,
        settings.topic_predictions,
        settings.topic_labels,
        settings.kafka_bootstrap,
        args.drift_every,
    )
    deadline = None if args.duration is None else time.time() + args.duration
    last_report = time.time()
    while not stopping and (deadline is None or time.time() < deadline):
        wait = traffic.step()
        time.sleep(min(wait, 0.5))
        if time.time() - last_report >= 60:
            last_report = time.time()
            log.info(
                "sent so far: %d predictions, %d labels, %d malformed; delivered %d, failed %d",
                traffic.sent["prediction"],
                traffic.sent["label"],
                traffic.sent["malformed"],
                producer.delivered,
                producer.failed,
            )
    producer.flush()
    log.info("flushed; %d messages delivered", producer.delivered)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    training = commands.add_parser("training-data", help="write the reference training set (CSV)")
    training.add_argument("-o", "--output", type=Path, required=True)
    training.add_argument("--rows", type=int, default=20_000)
    training.add_argument("--seed", type=int, default=101)
    live = commands.add_parser("run", help="produce live traffic to Kafka")
    live.add_argument("--rate", type=float, default=20.0, help="predictions per second")
    live.add_argument("--chunk", type=float, default=30.0, help="seconds generated at once")
    live.add_argument(
        "--drift-every", type=float, default=600.0, help="seconds per normal / drifted phase"
    )
    live.add_argument("--label-delay", type=float, default=60.0, help="mean label delay, s")
    live.add_argument("--model-version", default="1")
    live.add_argument("--seed", type=int, default=7)
    live.add_argument("--duration", type=float, help="stop after this many seconds")
    live.add_argument(
        "--compression",
        choices=["none", "gzip", "snappy", "lz4", "zstd"],
        help="librdkafka compression.type (default: EventProducer's, lz4; the workers "
        "read lz4, snappy and zstd only with cramjam installed, as in compose/Dockerfile)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.command == "training-data":
        rows = write_training_data(args.output, args.rows, args.seed)
        log.info("wrote %d rows to %s", rows, args.output)
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
