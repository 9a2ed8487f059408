"""``driftline demo``: the pipeline on one machine with no setup.

This release runs the ingestion slice end to end: an embedded broker, the
topics, a synthetic serving app whose traffic drifts and whose labels arrive
late (with a few malformed messages), and a consumer that validates every
message with the event schemas and sends the invalid ones to the dead-letter
topic. A live view shows what arrived; the detectors and windows join the demo
as they land.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from confluent_kafka import Consumer, Producer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from schemas import DriftlineSettings
from streams.decode import RawMessage, decode_labels, decode_predictions
from streams.embedded import GROUP_SETTINGS, embedded_broker
from streams.synthetic import Scenario, ScenarioConfig, generate
from streams.topics import ensure_topics


@dataclass
class DemoTally:
    """What the demo's consumer has seen so far."""

    produced: int = 0
    predictions: int = 0
    labels: int = 0
    dead_letters: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    by_region: Counter[str] = field(default_factory=Counter)
    first_event: str = ""
    last_event: str = ""

    def consumed(self) -> int:
        return self.predictions + self.labels + self.dead_letters


def _view(tally: DemoTally, drift_at: str) -> Table:
    table = Table(title="driftline demo — ingestion", title_justify="left")
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("messages produced", f"{tally.produced:,}")
    table.add_row("valid predictions", f"{tally.predictions:,}")
    table.add_row("valid labels (late, joined later)", f"{tally.labels:,}")
    table.add_row("dead letters", f"{tally.dead_letters:,}")
    for reason, count in tally.reasons.most_common(5):
        table.add_row(f"  refused at {reason}", f"{count:,}")
    for region, count in sorted(tally.by_region.items()):
        table.add_row(f"  predictions in region={region}", f"{count:,}")
    table.add_row("event time seen", f"{tally.first_event[:19]} → {tally.last_event[:19]}")
    table.add_row("drift starts at (event time)", drift_at)
    return table


def run_demo(
    settings: DriftlineSettings, console: Console, predictions: int = 20_000, seed: int = 7
) -> int:
    """Run the demo; returns the process exit code."""
    data_dir = Path(settings.data_dir) / "demo"
    scenario = generate(ScenarioConfig(predictions=predictions, seed=seed))
    console.print(f"starting an embedded broker (log: {data_dir / 'broker.log'})")
    with embedded_broker(data_dir) as broker:
        # The clients live in their own call so they are closed before the broker stops.
        tally = _run_pipeline(broker.bootstrap, scenario, settings, console)
    if tally.consumed() < tally.produced:
        console.print(f"[red]only {tally.consumed():,} of {tally.produced:,} messages came back[/]")
        return 1
    console.print(
        f"[green]every message accounted for:[/] {tally.predictions:,} predictions, "
        f"{tally.labels:,} labels, {tally.dead_letters:,} dead letters with their reasons."
    )
    console.print(
        "Drift statistics, late-label performance and alerts join this demo as the "
        "detectors and stream workers land (see README)."
    )
    return 0


def _run_pipeline(
    bootstrap: str, scenario: Scenario, settings: DriftlineSettings, console: Console
) -> DemoTally:
    topics = settings.topics
    client = {"bootstrap.servers": bootstrap}
    ensure_topics(
        client,
        {topics["predictions"]: 4, topics["labels"]: 4, topics["dead_letter"]: 1},
    )
    tally = DemoTally()
    producer = Producer({**client, "linger.ms": 20, "enable.idempotence": False})
    for event in scenario.predictions:
        producer.produce(
            topics["predictions"], value=_json(event), key=event["prediction_id"].encode()
        )
        producer.poll(0)
    for label in scenario.labels:
        producer.produce(topics["labels"], value=_json(label), key=label["prediction_id"].encode())
        producer.poll(0)
    for malformed in scenario.malformed:
        producer.produce(topics["predictions"], value=malformed, key=b"malformed")
    remaining = producer.flush(30)
    if remaining:
        console.print(f"[red]{remaining} messages were not delivered[/]")
        return tally
    tally.produced = len(scenario.predictions) + len(scenario.labels) + len(scenario.malformed)
    consumer = Consumer(
        {
            **client,
            **GROUP_SETTINGS,
            "group.id": "driftline-demo",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topics["predictions"], topics["labels"]])
    dead_letters = Producer({**client, "linger.ms": 20})
    deadline = time.monotonic() + 120
    drift_at = scenario.drift_starts_at.isoformat()[:19]
    with Live(_view(tally, drift_at), console=console, refresh_per_second=4) as live:
        while tally.consumed() < tally.produced and time.monotonic() < deadline:
            messages = consumer.consume(1000, timeout=0.5)
            raw = [RawMessage.from_confluent(m) for m in messages if m.error() is None]
            decoded_p = decode_predictions(
                [m for m in raw if m.topic == topics["predictions"]], settings.limits
            )
            decoded_l = decode_labels(
                [m for m in raw if m.topic == topics["labels"]], settings.limits
            )
            for letter in [*decoded_p.dead_letters, *decoded_l.dead_letters]:
                dead_letters.produce(topics["dead_letter"], value=letter.model_dump_json().encode())
            dead_letters.poll(0)
            tally.predictions += len(decoded_p.events)
            tally.labels += len(decoded_l.events)
            tally.dead_letters += len(decoded_p.dead_letters) + len(decoded_l.dead_letters)
            tally.reasons.update(decoded_p.reasons)
            tally.reasons.update(decoded_l.reasons)
            for prediction in decoded_p.events:
                tally.by_region[(prediction.segment or {}).get("region", "?")] += 1
                moment = prediction.timestamp.isoformat()
                tally.first_event = min(tally.first_event or moment, moment)
                tally.last_event = max(tally.last_event, moment)
            live.update(_view(tally, drift_at))
    console.print()
    dead_letters.flush(10)
    consumer.close()
    return tally


def _json(event: dict[str, object]) -> bytes:
    return orjson.dumps(event)
