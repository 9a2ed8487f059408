"""The ``driftline`` command line.

Each subcommand is a thin shell over the packages: it reads settings from the
environment, the monitor configuration from YAML, and hands values down.
Errors a user can fix are printed as one clear message per problem and a
non-zero exit code, never as a traceback.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from rich.console import Console

from schemas import ConfigError, DriftlineSettings, InvalidEvent, MonitorConfig, load_config
from schemas.config import format_duration
from schemas.errors import FieldError

# Each command imports what it runs when it runs: `driftline --help`, `alerts tail` and
# `topics create` do not pay for faust, scipy or matplotlib.

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2

Handler = Callable[[argparse.Namespace, Console], int]


def _version() -> str:
    try:
        return version("driftline")
    except PackageNotFoundError:
        return "unknown"


def _rule_problems(config: MonitorConfig) -> list[FieldError]:
    """Rules the schema accepts but the alert engine cannot judge (as a worker would refuse)."""
    from alerts.errors import AlertError
    from alerts.rules import check_rule

    problems = []
    for index, rule in enumerate(config.rules):
        try:
            check_rule(rule, index)
        except AlertError as exc:
            problems.append(FieldError("", str(exc)))
    return problems


def check_config(args: argparse.Namespace, console: Console) -> int:
    """Validate a monitor configuration and explain what it monitors."""
    try:
        config = load_config(args.config)
        problems = _rule_problems(config)
        if problems:
            raise ConfigError(problems)
    except ConfigError as exc:
        count = len(exc.errors)
        console.print(
            f"[bold red]{args.config}: {count} problem{'s' if count != 1 else ''}[/]",
            highlight=False,
        )
        for error in exc.errors:
            console.print(f"  {error}", highlight=False, markup=False)
        return EXIT_INVALID
    console.print(f"[bold green]{args.config}: valid[/]", highlight=False)
    _explain(config, console)
    return EXIT_OK


def _explain(config: MonitorConfig, console: Console) -> None:
    for model in config.models:
        window = model.window
        numeric = sum(feature.kind == "numeric" for feature in model.features)
        console.print(
            f"model [bold]{model.id}[/] ({model.task}): {len(model.features)} features "
            f"({numeric} numeric, {len(model.features) - numeric} categorical), "
            f"windows of {format_duration(window.size)}, "
            f"lateness {format_duration(window.allowed_lateness)}, "
            f"labels joined for {format_duration(window.label_horizon)}"
            + (
                ""
                if window.close_when_idle is None
                else f", closed after {format_duration(window.close_when_idle)} quiet"
            ),
            highlight=False,
        )
        segments = ", ".join(model.segment_by) or "none (one series per version)"
        console.print(f"  segments: {segments}", highlight=False, markup=False)
        console.print(
            f"  drift: numeric {', '.join(model.drift.numeric_methods)}; categorical "
            f"{', '.join(model.drift.categorical_methods)}; dataset decision by "
            f"{model.drift.multiple_testing} at alpha {model.drift.alpha}; "
            f"at least {model.drift.min_samples} events per window",
            highlight=False,
            markup=False,
        )
        console.print(
            f"  performance: {', '.join(model.metrics)} "
            f"(at least {model.performance.min_labelled} labels)",
            highlight=False,
            markup=False,
        )
        console.print(f"  reference: {model.reference}", highlight=False, markup=False)
    for rule in config.rules:
        target = rule.channel or "alerts topic only"
        console.print(
            f"rule [bold]{rule.name}[/] ({rule.kind}, {rule.severity}) for {rule.for_windows} "
            f"window(s), cooldown {format_duration(rule.cooldown)} -> {target}",
            highlight=False,
        )
    for name, channel in config.channels.items():
        console.print(
            f"channel [bold]{name}[/]: {len(channel.urls)} URL(s) (secret, not shown)",
            highlight=False,
        )
    for policy in config.retrain:
        console.print(
            f"retrain policy [bold]{policy.name}[/]: {policy.min_alerts} firing alert(s) of "
            f"{', '.join(policy.rules)}, cooldown {format_duration(policy.cooldown)}",
            highlight=False,
        )


def run_demo_command(args: argparse.Namespace, console: Console) -> int:
    """Run ``driftline demo``."""
    from streams.demo import DemoPlan, run_demo

    plan = DemoPlan(
        duration_s=args.duration, rate_per_s=args.rate, window_s=args.window, seed=args.seed
    )
    if args.label_delay is not None:
        plan = replace(plan, label_delay_s=args.label_delay)
    try:
        return run_demo(DriftlineSettings(), console, plan)
    except KeyboardInterrupt:
        console.print("demo stopped; the broker and the worker were shut down")
        return EXIT_OK


def topics_command(args: argparse.Namespace, console: Console) -> int:
    """Create every driftline topic with its configured partition count."""
    from confluent_kafka import KafkaException

    from streams.topics import BrokerUnreachable, TopicError, ensure_topics

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        for error in exc.errors:
            console.print(f"{args.config}: {error}", highlight=False, markup=False)
        return EXIT_INVALID
    settings = DriftlineSettings()
    partitions = config.topics.partitions
    wanted = {name: partitions for name in settings.topics.values()}
    try:
        counts = ensure_topics(
            settings.confluent_config(), wanted, config.topics.replication_factor
        )
    except TopicError as exc:
        console.print(f"driftline topics: {exc}", highlight=False, markup=False)
        return EXIT_INVALID
    except (BrokerUnreachable, KafkaException) as exc:
        console.print(
            f"driftline topics: cannot use Kafka at {settings.kafka_bootstrap} "
            f"({settings.kafka_security_protocol}): {exc}",
            highlight=False,
            markup=False,
        )
        return EXIT_INVALID
    if counts[settings.topic_predictions] != counts[settings.topic_labels]:
        console.print(
            f"driftline topics: {settings.topic_predictions} has "
            f"{counts[settings.topic_predictions]} partitions but {settings.topic_labels} has "
            f"{counts[settings.topic_labels]}; they must be equal for the join",
            highlight=False,
            markup=False,
        )
        return EXIT_INVALID
    for name, count in counts.items():
        console.print(f"{name}: {count} partitions", highlight=False, markup=False)
    return EXIT_OK


def compare_command(args: argparse.Namespace, console: Console) -> int:
    """One-shot drift table between two data sets."""
    from streams.compare import run_compare

    features = None if args.features is None else args.features.split(",")
    return run_compare(
        Path(args.reference),
        Path(args.current),
        features,
        args.json,
        sys.stdout,
        min_samples=args.min_samples,
        err=sys.stderr,
    )


def _load_or_report(path: str, console: Console) -> MonitorConfig | None:
    try:
        config = load_config(path)
        problems = _rule_problems(config)
        if problems:
            raise ConfigError(problems)
        return config
    except ConfigError as exc:
        for error in exc.errors:
            console.print(f"{path}: {error}", highlight=False, markup=False)
        return None


def reference_command(args: argparse.Namespace, console: Console) -> int:
    """Build a reference profile and write it as JSON."""
    from rich.progress import Progress

    from streams.partition import write_atomically
    from streams.reference import ReferenceBuildError, build_reference

    model = None
    if args.config:
        config = _load_or_report(args.config, console)
        if config is None:
            return EXIT_INVALID
        model = config.model(args.model)
        if model is None:
            console.print(
                f"driftline reference: model {args.model!r} is not in {args.config}",
                highlight=False,
                markup=False,
            )
            return EXIT_INVALID
    try:
        with Progress(console=console, transient=True) as progress:
            reference = build_reference(
                Path(args.data),
                args.model,
                args.model_version,
                model=model,
                target=args.target,
                prediction=args.prediction,
                score=args.score,
                progress=progress,
            )
    except ReferenceBuildError as exc:
        console.print(f"driftline reference: {exc}", highlight=False, markup=False)
        return EXIT_INVALID
    output = Path(args.output)
    try:
        write_atomically(output, reference.to_json().encode("utf-8"))
    except OSError as exc:
        console.print(
            f"driftline reference: cannot write '{output}': {exc}", highlight=False, markup=False
        )
        return EXIT_INVALID
    console.print(
        f"wrote {output}: {len(reference.features)} features, "
        f"baseline {dict(reference.baseline) or 'none'}",
        highlight=False,
        markup=False,
    )
    return EXIT_OK


def worker_command(args: argparse.Namespace, console: Console) -> int:
    """Run a faust worker until it is stopped."""
    import faust
    from confluent_kafka import KafkaException

    from streams.allocator import fix_mmap_threshold, relax_collector
    from streams.app import build_app

    config = _load_or_report(args.config, console)
    if config is None:
        return EXIT_INVALID
    settings = DriftlineSettings()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    fix_mmap_threshold()
    relax_collector()
    try:
        app, _ = build_app(settings, config, Path(args.config).resolve().parent)
    except (KafkaException, RuntimeError) as exc:
        console.print(
            f"driftline worker: cannot use Kafka at {settings.kafka_bootstrap} "
            f"({settings.kafka_security_protocol}): {exc}",
            highlight=False,
            markup=False,
        )
        return EXIT_INVALID
    faust_worker = faust.Worker(app, loglevel=settings.log_level.lower(), quiet=True)
    faust_worker.execute_from_commandline()
    return EXIT_OK


def replay_command(args: argparse.Namespace, console: Console) -> int:
    """Validate and produce recorded predictions (and labels) with a progress bar."""
    from rich.progress import Progress

    from streams.producer import DeliveryError, EventProducer
    from streams.replay import (
        ReplayError,
        ReplayReport,
        RowError,
        check_file,
        read_events,
        validate,
    )

    settings = DriftlineSettings()
    producer = EventProducer(settings)
    files = [("predictions", Path(args.predictions), settings.topic_predictions)]
    if args.labels:
        files.append(("labels", Path(args.labels), settings.topic_labels))
    report = ReplayReport()
    try:
        # every file, before anything is sent
        totals = [check_file(path, kind) for kind, path, _ in files]
        with Progress(console=console) as progress:
            for (kind, path, topic), total in zip(files, totals, strict=True):
                task = progress.add_task(f"{kind} from {path.name}", total=total)
                for number, raw in read_events(path, kind):
                    if isinstance(raw, RowError):
                        report.invalid.append((number, f"{path.name}:{number}: {raw}"))
                        progress.advance(task)
                        continue
                    try:
                        key = validate(kind, raw, settings.limits)
                    except InvalidEvent as exc:
                        report.invalid.append((number, f"{path.name}:{number}: {exc.reason}"))
                    else:
                        producer.send_raw(topic, key, raw)
                        report.sent += 1
                    progress.advance(task)
        producer.flush()
    except (ReplayError, DeliveryError) as exc:
        console.print(f"driftline replay: {exc}", highlight=False, markup=False)
        return EXIT_INVALID
    console.print(f"sent {report.sent:,} events", highlight=False, markup=False)
    if report.invalid:
        console.print(
            f"{len(report.invalid):,} invalid events were not sent:", highlight=False, markup=False
        )
        for _, reason in report.invalid[:20]:
            console.print(f"  {reason}", highlight=False, markup=False)
        return EXIT_INVALID
    return EXIT_OK


def alerts_command(args: argparse.Namespace, console: Console) -> int:
    """Follow the alerts topic, one line per event, until interrupted."""
    from confluent_kafka import KafkaException

    from streams.tail import tail_alerts

    try:
        tail_alerts(
            DriftlineSettings(),
            lambda line: console.print(line, highlight=False, markup=False),
            from_beginning=args.from_beginning,
            stop_after_s=args.for_seconds,
        )
    except KeyboardInterrupt:
        return EXIT_OK
    except (RuntimeError, KafkaException) as exc:
        console.print(f"driftline alerts: {exc}", highlight=False, markup=False)
        return EXIT_INVALID
    return EXIT_OK


def report_command(args: argparse.Namespace, console: Console) -> int:
    """Plot drift, performance and alerts from the file sink or InfluxDB."""
    from streams.report import (
        ReportError,
        Selection,
        build_report,
        read_file_store,
        read_influx_store,
        write_report,
    )

    thresholds: dict[str, dict[str, float]] = {}
    if args.config:
        config = _load_or_report(args.config, console)
        if config is None:
            return EXIT_INVALID
        thresholds = {model.id: dict(model.drift.thresholds) for model in config.models}
    settings = DriftlineSettings()
    selection = Selection(args.model, args.since, args.until)
    try:
        if args.data_dir is None and settings.influx_url:
            store = read_influx_store(
                settings.influx_url,
                settings.influx_bucket,
                settings.influx_token.get_secret_value(),
                selection,
            )
        else:
            data_dir = Path(args.data_dir) if args.data_dir else settings.data_dir
            store = read_file_store(data_dir, selection)
        files = write_report(build_report(store, thresholds=thresholds), Path(args.out))
    except ReportError as exc:
        console.print(f"driftline report: {exc}", highlight=False, markup=False)
        return EXIT_INVALID
    console.print(f"report: {files.html}", highlight=False, markup=False)
    for image in files.images:
        console.print(f"  image: {image}", highlight=False, markup=False)
    return EXIT_OK


def _report_time(text: str) -> object:
    from streams.report import parse_report_time

    try:
        return parse_report_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value >= 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds (0 or more)")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``driftline`` with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="driftline",
        description="Monitor machine-learning models in production from their Kafka streams.",
    )
    parser.add_argument("--version", action="version", version=f"driftline {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help_text: str, handler: Handler) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        return sub

    check = command(
        "check-config", "Validate a monitor configuration and explain it.", check_config
    )
    check.add_argument("config", help="monitor configuration (YAML)")

    worker = command("worker", "Run a stream-processing worker.", worker_command)
    worker.add_argument("-c", "--config", required=True, help="monitor configuration (YAML)")

    topics = command("topics", "Manage driftline's Kafka topics.", topics_command)
    topics.add_argument("action", choices=["create"])
    topics.add_argument("-c", "--config", required=True, help="monitor configuration (YAML)")

    reference = command(
        "reference", "Build a reference profile from a data set.", reference_command
    )
    reference.add_argument("action", choices=["build"])
    reference.add_argument("--model", required=True)
    reference.add_argument("--version", dest="model_version", required=True)
    reference.add_argument("--data", required=True, help="CSV, Parquet or JSON lines")
    reference.add_argument("--target")
    reference.add_argument("--prediction")
    reference.add_argument("--score")
    reference.add_argument("-o", "--output", required=True)
    reference.add_argument("-c", "--config", help="monitor configuration: features, task, metrics")

    replay = command("replay", "Produce recorded events into the topics.", replay_command)
    replay.add_argument("--predictions", required=True)
    replay.add_argument("--labels")

    demo = command("demo", "Run the whole pipeline on one machine with no setup.", run_demo_command)
    demo.add_argument("--duration", type=float, default=120.0, help="seconds of live traffic")
    demo.add_argument("--rate", type=float, default=60.0, help="predictions per second")
    demo.add_argument("--window", type=int, default=15, help="window size in seconds")
    demo.add_argument(
        "--label-delay",
        type=_seconds,
        help="mean seconds from a prediction to its label (default 20)",
    )
    demo.add_argument("--seed", type=int, default=7)
    report = command(
        "report",
        "Plot drift, performance and alerts over time (PNG images and one HTML page) from the "
        "file sink under DRIFTLINE_DATA_DIR, or from InfluxDB when DRIFTLINE_INFLUX_URL is set.",
        report_command,
    )
    report.add_argument("--model", help="only this model id")
    report.add_argument(
        "--since", type=_report_time, help="a time (2024-05-01T12:00Z) or a duration ago (6h, 7d)"
    )
    report.add_argument("--until", type=_report_time, help="a time or a duration ago")
    report.add_argument(
        "-o", "--out", "--output", dest="out", default="driftline-report", help="output directory"
    )
    report.add_argument(
        "--data-dir",
        help="read DATA_DIR/metrics.lp (the file sink) even when DRIFTLINE_INFLUX_URL is set",
    )
    report.add_argument(
        "-c", "--config", help="monitor configuration, for thresholds points do not carry"
    )

    compare = command("compare", "One-shot drift table between two data sets.", compare_command)
    compare.add_argument("--reference", required=True)
    compare.add_argument("--current", required=True)
    compare.add_argument("--features")
    compare.add_argument("--json", action="store_true")
    compare.add_argument("--min-samples", type=int, default=100)

    alerts = command("alerts", "Follow the alerts topic.", alerts_command)
    alerts.add_argument("action", choices=["tail"])
    alerts.add_argument("--from-beginning", action="store_true")
    alerts.add_argument(
        "--for", dest="for_seconds", type=float, help="stop after this many seconds"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``driftline`` console command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    console = Console(stderr=False, soft_wrap=True)
    handler: Handler = args.handler
    try:
        return handler(args, console)
    except BrokenPipeError:
        # The reader went away (e.g. `driftline compare --json | head`): not an error.
        sys.stderr.close()
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
