"""``driftline demo``: the whole pipeline on one machine, with no setup.

It starts an embedded Kafka-protocol broker and a ``driftline worker``, builds
a reference profile from synthetic training data, and runs a synthetic serving
app live: a churn classifier whose traffic drifts part-way through and whose
labels arrive late. A terminal view shows, per window, the most drifted
features, performance with label coverage filling in, and alerts as they fire
and resolve. Everything stops cleanly on Ctrl-C; nothing is left running.
"""

from __future__ import annotations

import heapq
import io
import os
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Producer
from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from schemas import DriftlineSettings, load_config
from streams.embedded import EmbeddedBroker, parent_death_prefix
from streams.points import Point, latest_points
from streams.reference import build_reference
from streams.report import ReportError, ReportFiles, build_report, read_file_store, write_report
from streams.sink import read_line_protocol
from streams.synthetic import (
    CATEGORICAL_FEATURES,
    NUMERIC_FEATURES,
    ScenarioConfig,
    generate,
    write_training_csv,
)
from streams.topics import ensure_topics

SCREENSHOT_NAME = "terminal.svg"
"""The last live view, saved under the demo's directory."""
REPORT_DIR_NAME = "report"
"""Where the demo's report goes, under the demo's directory."""

NUMERIC = NUMERIC_FEATURES
CATEGORICAL = CATEGORICAL_FEATURES

CONFIG = """
models:
  - id: churn
    task: binary
    reference: churn-{{version}}.json
    window: {{size: {window}s, allowed_lateness: 2s, label_horizon: 5m, orphan_label_ttl: 5m,
              emit_interval: 1s}}
    drift: {{min_samples: 100}}
    performance: {{metrics: [accuracy, roc_auc], min_labelled: 30}}
    features:
{features}
rules:
  - name: feature-drift
    kind: feature_drift
    metric: ks
    for: 2
    resolve: {{for: 2}}
    severity: warning
  - name: dataset-drift
    kind: dataset_drift
    min_features: 2
    for: 2
    severity: critical
retrain:
  - name: retrain-on-drift
    rules: [dataset-drift]
    cooldown: 1h
topics: {{partitions: 4}}
"""


@dataclass(frozen=True)
class DemoPlan:
    """How long and how busy the synthetic serving app is."""

    duration_s: float = 120.0
    rate_per_s: float = 60.0
    window_s: int = 15
    drift_from: float = 0.3
    drift_until: float = 0.7
    """Traffic drifts from 30 % to 70 % of the run: alerts fire, then resolve."""
    label_delay_s: float = 20.0
    seed: int = 7

    @property
    def run_s(self) -> float:
        """How long the demo runs: the traffic, then the last labels and window closes."""
        return self.duration_s + self.label_delay_s + 3 * self.window_s


def _write_config(directory: Path, plan: DemoPlan) -> Path:
    features = "\n".join(
        [f"      - {{name: {name}, kind: numeric}}" for name in NUMERIC]
        + [f"      - {{name: {name}, kind: categorical}}" for name in CATEGORICAL]
    )
    path = directory / "monitors.yaml"
    path.write_text(CONFIG.format(window=plan.window_s, features=features))
    return path


def _write_reference(directory: Path, config_path: Path) -> None:
    data = directory / "training.csv"
    write_training_csv(data, seed=1001)
    model = load_config(config_path).model("churn")
    reference = build_reference(
        data, "churn", "1", model=model, prediction="prediction", score="score"
    )
    (directory / "churn-1.json").write_text(reference.to_json())


def _view(found: list[Point], started: float, plan: DemoPlan, drift_at: datetime) -> Group:
    drift: dict[datetime, list[tuple[float, str]]] = defaultdict(list)
    psi: dict[tuple[datetime, str], float] = {}
    performance: dict[datetime, dict[str, Any]] = defaultdict(dict)
    alerts: list[Point] = []
    for point in found:
        tags = dict(point.tags)
        moment = datetime.fromtimestamp(point.time_ns / 1e9, tz=UTC)
        if point.measurement == "feature_drift" and tags.get("segment") == "all":
            value = float(point.fields["statistic"])
            if tags["method"] in ("ks", "jensenshannon"):
                drift[moment].append((value, tags["feature"]))
            elif tags["method"] == "psi":
                psi[(moment, tags["feature"])] = value
        elif point.measurement == "model_performance" and tags.get("segment") == "all":
            performance[moment][tags["metric"]] = point.fields
        elif point.measurement == "alerts":
            alerts.append(point)
    elapsed = min(time.monotonic() - started, plan.run_s)
    windows = Table(
        title=f"windows of {plan.window_s} s — {elapsed:.0f} of {plan.run_s:.0f} s "
        f"(drift starts {drift_at:%H:%M:%S} UTC)",
        title_justify="left",
    )
    windows.add_column("window (UTC)")
    windows.add_column("most drifted features (KS / JS, PSI)")
    windows.add_column("accuracy", justify="right")
    windows.add_column("AUC", justify="right")
    windows.add_column("label coverage", justify="right")
    for moment in sorted(set(drift) | set(performance))[-8:]:
        top = sorted(drift.get(moment, []), reverse=True)[:3]
        described = ", ".join(
            f"{name} {value:.2f}"
            + (f" / {psi[(moment, name)]:.2f}" if (moment, name) in psi else "")
            for value, name in top
        )
        accuracy = performance.get(moment, {}).get("accuracy", {})
        auc = performance.get(moment, {}).get("roc_auc", {})
        coverage = accuracy.get("coverage")
        windows.add_row(
            f"{moment:%H:%M:%S}",
            described or "–",
            f"{accuracy['value']:.3f}" if "value" in accuracy else "–",
            f"{auc['value']:.3f}" if "value" in auc else "–",
            f"{coverage:.0%}" if isinstance(coverage, float) else "–",
        )
    fired = Table(title="alerts", title_justify="left")
    fired.add_column("window end")
    fired.add_column("state")
    fired.add_column("rule")
    fired.add_column("summary")
    for point in sorted(alerts, key=lambda p: p.time_ns)[-8:]:
        tags = dict(point.tags)
        colour = "red" if tags["state"] == "firing" else "green"
        fired.add_row(
            f"{datetime.fromtimestamp(point.time_ns / 1e9, tz=UTC):%H:%M:%S}",
            f"[{colour}]{tags['state']}[/]",
            tags["rule"],
            str(point.fields.get("summary", "")),
        )
    return Group(windows, fired)


def _read_points(path: Path) -> list[Point]:
    if not path.exists():
        return []
    return latest_points(read_line_protocol(path))


def run_demo(settings: DriftlineSettings, console: Console, plan: DemoPlan | None = None) -> int:
    """Run the demo; returns the process exit code."""
    plan = plan or DemoPlan()
    directory = Path(settings.data_dir).resolve() / "demo"
    directory.mkdir(parents=True, exist_ok=True)
    metrics = directory / "data" / "metrics.lp"
    for stale in (metrics, directory / "data" / "checkpoints"):
        if stale.is_file():
            stale.unlink()
        elif stale.is_dir():
            for file in stale.iterdir():
                file.unlink()
    config_path = _write_config(directory, plan)
    console.print("building the reference profile from synthetic training data …")
    _write_reference(directory, config_path)
    worker: subprocess.Popen[bytes] | None = None
    console.print(f"starting an embedded broker and a worker (logs in {directory})")
    with EmbeddedBroker(directory / "broker.log") as broker:
        topics = {name: 4 for name in settings.topics.values()}
        ensure_topics({"bootstrap.servers": broker.bootstrap}, topics)
        env = {
            **os.environ,
            "DRIFTLINE_KAFKA_BOOTSTRAP": broker.bootstrap,
            "DRIFTLINE_DATA_DIR": str(directory / "data"),
            "DRIFTLINE_KAFKA_SESSION_TIMEOUT_S": "6",
            "DRIFTLINE_KAFKA_HEARTBEAT_INTERVAL_S": "1",
        }
        env.pop("DRIFTLINE_INFLUX_URL", None)
        with (directory / "worker.log").open("wb") as log:
            worker = subprocess.Popen(
                [*parent_death_prefix(), sys.executable, "-m", "streams.cli", "worker", "-c",
                 str(config_path)],
                env=env, stdout=log, stderr=subprocess.STDOUT, cwd=directory,
            )  # fmt: skip
        try:
            alerts, view = _serve(broker.bootstrap, settings, plan, console, metrics, worker)
        finally:
            worker.terminate()
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait(10)
    fired = sum(1 for p in alerts if dict(p.tags)["state"] == "firing")
    screenshot = save_screenshot(view, directory / SCREENSHOT_NAME)
    console.print(
        f"[bold]demo finished:[/] {fired} alert(s) fired. Time series: {metrics} "
        f"(line protocol); worker log: {directory / 'worker.log'}; the last live view: "
        f"{screenshot}.",
        highlight=False,
    )
    console.print("drawing the report …")
    try:
        report = write_report(build_report(read_file_store(metrics)), directory / REPORT_DIR_NAME)
    except ReportError as exc:
        console.print(f"[bold red]report:[/] {escape(str(exc))}", highlight=False)
        return 1
    _announce_report(console, report, metrics.parent)
    return 0 if fired else 1


def save_screenshot(view: Group, path: Path, width: int = 120) -> Path:
    """Save a rendering of the live view as an SVG image (rich's recording console)."""
    recorder = Console(
        record=True, width=width, file=io.StringIO(), force_terminal=True, color_system="truecolor"
    )
    recorder.print(view)
    recorder.save_svg(str(path), title="driftline demo")
    return path


def _announce_report(console: Console, report: ReportFiles, data_dir: Path) -> None:
    console.print(
        f"[bold]report:[/] {escape(str(report.html))} (open it in a browser)", highlight=False
    )
    for image in report.images:
        console.print(f"  image: {image}", highlight=False, markup=False)
    console.print(
        f"Draw it again, or from your own worker's data: driftline report --data-dir {data_dir}",
        highlight=False,
        markup=False,
    )


def _serve(
    bootstrap: str,
    settings: DriftlineSettings,
    plan: DemoPlan,
    console: Console,
    metrics: Path,
    worker: subprocess.Popen[bytes],
) -> tuple[list[Point], Group]:
    """The live serving app: predictions now, labels later.

    Returns the alerts written and the live view as it ended.
    """
    started_at = datetime.now(UTC)
    scenario = generate(
        ScenarioConfig(
            start=started_at,
            predictions=int(plan.duration_s * plan.rate_per_s),
            rate_per_s=plan.rate_per_s,
            drift_from=plan.drift_from,
            drift_until=plan.drift_until,
            label_delay_s=plan.label_delay_s,
            malformed_every=997,
            seed=plan.seed,
        )
    )
    schedule: list[tuple[float, int, str, bytes, bytes]] = []
    for index, event in enumerate(scenario.predictions):
        due = datetime.fromisoformat(event["timestamp"]).timestamp()
        key = event["prediction_id"].encode()
        schedule.append((due, index, settings.topic_predictions, key, orjson.dumps(event)))
    offset = len(schedule)
    for index, label in enumerate(scenario.labels):
        due = datetime.fromisoformat(label["timestamp"]).timestamp()
        key = label["prediction_id"].encode()
        schedule.append((due, offset + index, settings.topic_labels, key, orjson.dumps(label)))
    for index, raw in enumerate(scenario.malformed):
        due = started_at.timestamp() + (index + 1) * plan.duration_s / (len(scenario.malformed) + 1)
        schedule.append((due, 2 * offset + index, settings.topic_predictions, b"bad", raw))
    heapq.heapify(schedule)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    started = time.monotonic()
    end = started + plan.run_s
    points: list[Point] = []
    with Live(console=console, refresh_per_second=2) as live:
        last_view = 0.0
        while time.monotonic() < end:
            if worker.poll() is not None:
                raise RuntimeError(f"the worker stopped (status {worker.returncode})")
            now = time.time()
            while schedule and schedule[0][0] <= now:
                _, _, topic, key, value = heapq.heappop(schedule)
                producer.produce(topic, value, key)
            producer.poll(0)
            if time.monotonic() - last_view >= 1.0:
                points = _read_points(metrics)
                live.update(_view(points, started, plan, scenario.drift_starts_at))
                last_view = time.monotonic()
            time.sleep(0.02)
    producer.flush(10)
    points = _read_points(metrics)
    view = _view(points, started, plan, scenario.drift_starts_at)
    return [point for point in points if point.measurement == "alerts"], view
