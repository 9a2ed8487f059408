"""Hostile input: every bad message is refused or counted, and the valid traffic around it is
processed exactly as if the bad messages had never been sent.

The hostile messages are the committed corpus (``tests/reliability/corpus``, written by
``make_corpus.py``: invalid UTF-8, deep JSON, huge strings, 10⁵ features, NaN and
infinities, wrong types, far-past and far-future timestamps, missing zones, unknown models,
keys that differ, tombstones, oversize messages), messages derived from the valid traffic
(duplicates and colliding prediction ids, repeated labels, labels of unknown models), and
messages hypothesis generates. Two levels:

* pure: :class:`streams.partition.PartitionProcessor` and :class:`streams.merger.WindowMerger`
  fed valid traffic with the hostile messages mixed in, compared batch by batch with the same
  code fed the valid traffic alone;
* real: a ``driftline worker`` on the Tansu broker fed the same mix; every refused message is
  found on the dead-letter topic by its source topic, partition and offset, and the points of
  the valid traffic equal an offline computation over the valid events.

What a message must become is written down when it is made (``Sent.expect`` and, for dead
letters, the error class and the words of the rule it breaks), never read back from the code.
"""

from __future__ import annotations

import base64
import contextlib
import gc
import json
import logging
import math
import random
import time
import traceback
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from detectors.profile import ReferenceProfile
from schemas import DEFAULT_LIMITS, DeadLetter, InvalidEvent, MonitorConfig, parse_config
from schemas.events import decode_prediction
from streams.app import ReferenceStore
from streams.decode import RawMessage
from streams.merger import WindowMerger
from streams.partition import BatchResult, PartitionProcessor
from streams.reference import build_reference
from streams.synthetic import ScenarioConfig, generate, write_training_csv
from streams.windows import DriftPartial, PerformanceAccumulator, ReferenceLoader, WindowKey
from tests.reliability.make_corpus import (
    CORPUS_DIR,
    Entry,
    encode,
    iter_files,
    label_doc,
    load_corpus,
    member_name,
    prediction_doc,
)
from tests.servers import unique_topic_name
from tests.support.pipeline import (
    FEATURES_YAML,
    LATENESS_S,
    MIN_SAMPLES,
    NUMERIC,
    WINDOW_S,
    Run,
    check_points,
    create_topics,
    expected_windows,
    load_reference,
    scenario_start,
    start_worker,
    stop,
    topic_env,
    wait_for,
)
from tests.support.pipeline import build_reference as build_reference_with_cli

PREDICTIONS = "driftline.predictions"
LABELS = "driftline.labels"
T0 = datetime(2026, 11, 20, tzinfo=UTC)
MICROS = 1_000_000

CONFIG_TEXT = f"""
models:
  - id: churn
    task: binary
    reference: ref-{{version}}.json
    segment_by: [region]
    window: {{size: {WINDOW_S}s, allowed_lateness: {LATENESS_S}s, label_horizon: 1d,
              orphan_label_ttl: 2h, emit_interval: 1s}}
    drift:
      numeric_methods: [ks, psi, wasserstein]
      categorical_methods: [chi2, jensenshannon]
      min_samples: {MIN_SAMPLES}
    performance: {{metrics: [accuracy, f1, roc_auc], min_labelled: 20}}
    features:
{FEATURES_YAML}
topics: {{partitions: 2}}
"""
"""The e2e pipeline's model, with labels joined for a day so no duplicate outlives its original."""

CONFIG: MonitorConfig = parse_config(CONFIG_TEXT)


# ------------------------------------------------------------------ messages and traffic


@dataclass(frozen=True)
class Sent:
    """One message of a test's traffic and what must become of it.

    ``expect`` is ``valid``, ``dead`` (with ``error_class`` and the words of
    ``reason``), ``late``, ``orphan``, ``duplicate_prediction`` or
    ``duplicate_label``.
    """

    topic: str
    key: bytes | None
    value: bytes | None
    expect: str
    error_class: str = ""
    reason: tuple[str, ...] = ()
    name: str = ""


def from_entry(entry: Entry) -> Sent:
    """A corpus entry as a message of the pure tests' topics."""
    return Sent(
        PREDICTIONS if entry.topic == "predictions" else LABELS,
        entry.key,
        entry.value,
        entry.expect,
        entry.error_class,
        entry.reason,
        f"corpus:{entry.name}",
    )


def _json(document: dict[str, Any]) -> bytes:
    return encode(document)


def valid_traffic(
    predictions: int,
    seed: int,
    *,
    start: datetime = T0,
    quirky: bool = True,
    rate_per_s: float = 0.5,
) -> list[Sent]:
    """Valid predictions and labels in the order a serving app and a label source emit them.

    Besides the synthetic model's ordinary traffic, some events are odd but valid: NaN and
    infinite feature values (missing), ids in several scripts with an emoji and a
    right-to-left mark, unknown fields nested 50 deep, a 900-character string; with
    ``quirky``, also messages without a key and a boolean in a numeric feature (which the
    offline computation of the real-level test does not model).
    """
    scenario = generate(
        ScenarioConfig(
            start=start,
            predictions=predictions,
            rate_per_s=rate_per_s,
            drift_from=0.5,
            label_delay_s=300.0,
            malformed_every=0,
            seed=seed,
        )
    )
    renamed: dict[str, str] = {}
    keyless: set[str] = set()
    timed: list[tuple[datetime, int, Sent]] = []
    for index, original in enumerate(scenario.predictions):
        event = dict(original, features=dict(original["features"]))
        variant = index % 41
        if variant == 3:
            event["features"]["monthly_charges"] = math.nan
        elif variant == 7:
            event["features"]["age"] = math.inf
            event["features"]["tenure_months"] = -math.inf
        elif variant == 11:
            event["features"]["sessions_30d"] = 10**400  # overflows a float: missing
        elif variant == 15:
            new_id = f"ünïcødé-ид-{index}-😀-\u202eltr"
            renamed[event["prediction_id"]] = new_id
            event["prediction_id"] = new_id
        elif variant == 19:
            nested: Any = 1
            for _ in range(50):
                nested = [nested]
            event["debug"] = {"trace": nested, "note": "n" * 900}
        elif variant == 23:
            event["features"]["device"] = "d" * 900
        elif variant == 27 and quirky:
            keyless.add(event["prediction_id"])
        elif variant == 31 and quirky:
            event["features"]["support_calls"] = True
        value = _json(event)
        key = None if event["prediction_id"] in keyless else event["prediction_id"].encode()
        moment = datetime.fromisoformat(event["timestamp"])
        timed.append((moment, 0, Sent(PREDICTIONS, key, value, "valid", name="valid")))
    for original_label in scenario.labels:
        pid = renamed.get(original_label["prediction_id"], original_label["prediction_id"])
        label = dict(original_label, prediction_id=pid)
        moment = datetime.fromisoformat(label["timestamp"])
        timed.append(
            (moment, 1, Sent(LABELS, label["prediction_id"].encode(), _json(label), "valid"))
        )
    timed.sort(key=lambda item: (item[0], item[1]))
    return [sent for _, _, sent in timed]


def in_batches(messages: Sequence[Sent], rng: random.Random) -> list[list[Sent]]:
    """Cut a sequence into batches of random sizes, as fetches bring them."""
    batches: list[list[Sent]] = []
    position = 0
    while position < len(messages):
        size = rng.randint(20, 160)
        batches.append(list(messages[position : position + size]))
        position += size
    return batches


def event_of(sent: Sent) -> dict[str, Any]:
    """The JSON document of a valid message."""
    assert sent.value is not None
    document: dict[str, Any] = json.loads(sent.value)
    return document


def derived_hostile(
    valid: list[list[Sent]], rng: random.Random, now: datetime, per_batch: int = 3
) -> dict[int, list[Sent]]:
    """Hostile messages made from the valid traffic, by the batch they go into.

    Each copies a valid message of an earlier batch (so the original was applied first):
    the same prediction again, with other values, with another model version, for a model
    nobody monitors; a label again or flipped; an event under another key; a copy stamped
    hours to centuries ahead of the clock.
    """
    out: dict[int, list[Sent]] = defaultdict(list)
    everything = [sent for batch in valid for sent in batch]
    for number in range(1, len(valid)):
        earlier = [sent for batch in valid[:number] for sent in batch]
        predictions = [sent for sent in earlier if sent.topic == PREDICTIONS]
        labels = [sent for sent in earlier if sent.topic == LABELS]
        for _ in range(per_batch):
            kind = rng.choice(DERIVED_KINDS)
            made = kind(rng, predictions, labels, everything, now)
            if made is not None:
                out[number].append(made)
    return out


def _again(rng: random.Random, predictions: list[Sent], *_: Any) -> Sent | None:
    if not predictions:
        return None
    original = rng.choice(predictions)
    return Sent(
        original.topic,
        original.key,
        original.value,
        "duplicate_prediction",
        name="duplicate prediction (a retry)",
    )


def _again_changed(rng: random.Random, predictions: list[Sent], *_: Any) -> Sent | None:
    if not predictions:
        return None
    original = rng.choice(predictions)
    event = event_of(original)
    moment = datetime.fromisoformat(event["timestamp"]) - timedelta(seconds=rng.randint(0, 900))
    event.update(
        timestamp=moment.isoformat(),
        prediction=1 - int(event["prediction"]),
        features={name: -1.0 if name in NUMERIC else "colliding" for name in event["features"]},
    )
    return Sent(
        PREDICTIONS,
        original.key,
        _json(event),
        "duplicate_prediction",
        name="colliding prediction id, other values, earlier time",
    )


def _again_other_version(rng: random.Random, predictions: list[Sent], *_: Any) -> Sent | None:
    if not predictions:
        return None
    original = rng.choice(predictions)
    event = dict(event_of(original), model_version="2")
    return Sent(
        PREDICTIONS,
        original.key,
        _json(event),
        "duplicate_prediction",
        name="colliding prediction id, other model version",
    )


def _unknown_model(
    rng: random.Random, predictions: list[Sent], labels: list[Sent], *_: Any
) -> Sent | None:
    pool = predictions + labels
    if not pool:
        return None
    original = rng.choice(pool)
    event = dict(event_of(original), model_id=rng.choice(["fraud", "Churn", "churn2"]))
    return Sent(
        original.topic,
        original.key,
        _json(event),
        "dead",
        "Rejected",
        ("model_id", "not monitored"),
        "colliding id of a model nobody monitors",
    )


def _label_again(rng: random.Random, _: list[Sent], labels: list[Sent], *__: Any) -> Sent | None:
    if not labels:
        return None
    original = rng.choice(labels)
    event = event_of(original)
    if rng.random() < 0.5:
        event["label"] = 1 - int(event["label"])
    return Sent(
        LABELS,
        original.key,
        _json(event),
        "duplicate_label",
        name="the same label again, or flipped",
    )


def _other_key(
    rng: random.Random, _: list[Sent], __: list[Sent], everything: list[Sent], *___: Any
) -> Sent | None:
    original = rng.choice(everything)
    other = rng.choice([b"", b"someone-else", b"\xff\xfe", (original.key or b"k") + b" "])
    return Sent(
        original.topic,
        other,
        original.value,
        "dead",
        "KeyMismatch",
        ("key", "differs from prediction_id"),
        "key differs from prediction_id",
    )


def _far_future(
    rng: random.Random, _: list[Sent], __: list[Sent], everything: list[Sent], now: datetime
) -> Sent | None:
    original = rng.choice(everything)
    event = event_of(original)
    ahead = rng.choice([timedelta(minutes=61), timedelta(days=3), timedelta(days=365 * 80)])
    event.update(
        prediction_id=f"future-{uuid.uuid4().hex[:8]}", timestamp=(now + ahead).isoformat()
    )
    return Sent(
        original.topic,
        event["prediction_id"].encode(),
        _json(event),
        "dead",
        "Rejected",
        ("timestamp", "ahead of the clock"),
        "stamped far ahead of the clock",
    )


DERIVED_KINDS: list[Callable[..., Sent | None]] = [
    _again,
    _again_changed,
    _again_other_version,
    _unknown_model,
    _label_again,
    _other_key,
    _far_future,
]


def mix(
    valid: list[list[Sent]],
    hostile: dict[int, list[Sent]],
    rng: random.Random,
) -> list[list[Sent]]:
    """Each batch with its hostile messages at random places (the valid order is kept)."""
    mixed: list[list[Sent]] = []
    for number, batch in enumerate(valid):
        combined = list(batch)
        for sent in hostile.get(number, []):
            combined.insert(rng.randint(0, len(combined)), sent)
        mixed.append(combined)
    return mixed


def spread(items: Sequence[Sent], batches: int, rng: random.Random) -> dict[int, list[Sent]]:
    """Hostile messages over batches 1 … batches-1 (the first batch stays valid)."""
    out: dict[int, list[Sent]] = defaultdict(list)
    for sent in items:
        out[rng.randint(1, batches - 1)].append(sent)
    return out


def with_offsets(
    batches: list[list[Sent]], partition: int = 0
) -> tuple[list[list[RawMessage]], dict[tuple[str, int], Sent]]:
    """Raw messages with consecutive offsets per topic, and what each offset must become."""
    offsets: Counter[str] = Counter()
    raw: list[list[RawMessage]] = []
    by_offset: dict[tuple[str, int], Sent] = {}
    for batch in batches:
        out = []
        for sent in batch:
            offset = offsets[sent.topic]
            offsets[sent.topic] += 1
            out.append(RawMessage(sent.topic, partition, offset, sent.key, sent.value))
            by_offset[(sent.topic, offset)] = sent
        raw.append(out)
    return raw, by_offset


# ------------------------------------------------------------------ running the pure code


SeriesKey = tuple[str, tuple[tuple[str, str], ...], int]


@dataclass
class Outcome:
    """What a partition processor and a merger made of a sequence of batches."""

    processor: PartitionProcessor
    drift: list[list[DriftPartial]] = field(default_factory=list)
    watermarks: list[tuple[dict[str, int], int | None]] = field(default_factory=list)
    performance: dict[WindowKey, bytes] = field(default_factory=dict)
    late: dict[WindowKey, int] = field(default_factory=dict)
    dead_by_window: dict[WindowKey, int] = field(default_factory=dict)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    points: dict[SeriesKey, dict[str, Any]] = field(default_factory=dict)
    merger_error: str | None = None
    """The merger's exception, if it raised (it is then fed no further batch)."""


def run_batches(
    batches: list[list[RawMessage]], references: ReferenceLoader, now: datetime
) -> Outcome:
    """Feed batches to a fresh processor and merger, as a worker's two loops would."""

    processor = PartitionProcessor(
        0,
        CONFIG,
        references,
        predictions_topic=PREDICTIONS,
        labels_topic=LABELS,
        limits=DEFAULT_LIMITS,
    )
    clock = [0.0]
    merger = WindowMerger(CONFIG, references, partitions=1, clock=lambda: clock[0])
    outcome = Outcome(processor)
    for batch in batches:
        result = processor.process(batch, now=now)
        outcome.dead_letters.extend(result.dead_letters)
        outcome.drift.append(list(result.windows.drift))
        outcome.watermarks.append((result.watermarks_us, processor.join.watermark_us))
        for partial in result.windows.performance:
            outcome.performance[partial.key] = partial.payload
        outcome.late.update(result.windows.late)
        outcome.dead_by_window.update(result.windows.dead_letters)
        if outcome.merger_error is None:
            # The merger is a worker's other loop: when it raises, the partition side is
            # still checked, and test_the_merger_takes_every_partial_it_is_handed says why.
            try:
                merge(merger, result)
                clock[0] += 10.0
                for point in merger.evaluate():
                    outcome.points[(point.measurement, point.tags, point.time_ns)] = dict(
                        point.fields
                    )
            except Exception as exc:  # reported by a test, never swallowed
                outcome.merger_error = "".join(traceback.format_exception(exc)[-6:])
    return outcome


def merge(merger: WindowMerger, result: BatchResult) -> None:
    """Hand a batch's partials to the merger, as the partials topic would."""
    for drift in result.windows.drift:
        merger.add_drift(0, drift)
    for performance in result.windows.performance:
        merger.add_performance(0, performance)
    merger.add_late(0, result.windows.late)
    merger.add_dead_letters(0, result.windows.dead_letters)
    merger.add_watermark(
        0, "churn", result.watermarks_us.get("churn"), result.join_watermarks_us.get("churn")
    )


def counter_totals(processor: PartitionProcessor) -> Counter[str]:
    """The join's counters summed over models and versions."""
    totals: Counter[str] = Counter()
    for counters in processor.join.counters().values():
        for name, value in vars(counters).items():
            totals[name] += value
    return totals


def window_start_us(sent: Sent) -> int:
    """Start of the window of a prediction message's timestamp, in microseconds."""
    moment = datetime.fromisoformat(event_of(sent)["timestamp"])
    size = WINDOW_S * MICROS
    micros = (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    return micros - micros % size


def window_of(key: WindowKey) -> int:
    return key.window_start_us // MICROS


@dataclass(frozen=True)
class Mixed:
    """A mixed run, the valid-only run of the same batches, and what each message must become."""

    mixed: Outcome
    alone: Outcome
    expected: dict[tuple[str, int], Sent]
    valid_windows: set[int]


def run_mixed(
    valid: list[list[Sent]],
    hostile: dict[int, list[Sent]],
    references: ReferenceLoader,
    now: datetime,
    rng: random.Random,
    alone: Outcome | None = None,
) -> Mixed:
    """Run the valid batches with and without the hostile messages."""
    mixed_batches, expected = with_offsets(mix(valid, hostile, rng))
    # the valid-only run reads the same valid messages, at the same offsets, in the same batches
    valid_batches = [
        [raw for raw in batch if expected[(raw.topic, raw.offset)].expect == "valid"]
        for batch in mixed_batches
    ]
    if alone is None:
        alone = run_batches(valid_batches, references, now)
    mixed = run_batches(mixed_batches, references, now)
    windows = {
        int(datetime.fromisoformat(event_of(sent)["timestamp"]).timestamp()) // WINDOW_S * WINDOW_S
        for batch in valid
        for sent in batch
        if sent.topic == PREDICTIONS
    }
    return Mixed(mixed, alone, expected, windows)


def assert_valid_results_unchanged(run: Mixed) -> None:
    """Batch by batch, the mixed run's windows and watermarks are those of the valid run."""
    mixed, alone = run.mixed, run.alone
    assert alone.dead_letters == []
    for number, (got, want) in enumerate(zip(mixed.watermarks, alone.watermarks, strict=True)):
        # Far-future, far-past and duplicate messages move neither the windows' watermark
        # nor the join's.
        assert got == want, f"batch {number}: watermarks (windows, join) {got} != {want}"
    for number, (got_drift, want_drift) in enumerate(zip(mixed.drift, alone.drift, strict=True)):
        # the same drift windows close in the same batch, with the same sketches
        assert got_drift == want_drift, f"batch {number}: drift partials differ"
    for key, payload in alone.performance.items():
        assert mixed.performance.get(key) == payload, f"performance window {key} differs"
    model = CONFIG.models[0]
    for key, payload in mixed.performance.items():
        if key in alone.performance:
            continue
        # windows only hostile messages opened: far in the past, no label joined
        assert window_of(key) not in run.valid_windows, key
        assert PerformanceAccumulator.from_bytes(payload, model).n_labelled == 0, key
    for key, count in alone.late.items():
        assert mixed.late.get(key) == count, key
    assert alone.merger_error is None, alone.merger_error
    if mixed.merger_error is not None:
        return  # test_the_merger_takes_every_partial_it_is_handed reports it
    mixed_points = mixed.points
    for series, want_fields in alone.points.items():
        got_fields = mixed_points.get(series)
        assert got_fields is not None, f"point {series} missing from the mixed run"
        # volume.dead_letters is the one field the hostile messages change
        got_kept = {k: v for k, v in got_fields.items() if k != "dead_letters"}
        want_kept = {k: v for k, v in want_fields.items() if k != "dead_letters"}
        assert got_kept == want_kept, series
    for series in mixed_points.keys() - alone.points.keys():
        assert series[2] // 1_000_000_000 not in run.valid_windows, series


def assert_every_message_accounted_for(run: Mixed) -> dict[str, int]:
    """Each hostile message is a dead letter with its reason, or in the counter it belongs to."""
    mixed, alone = run.mixed, run.alone
    letters = {(letter.source_topic, letter.source_offset): letter for letter in mixed.dead_letters}
    assert len(letters) == len(mixed.dead_letters), "two dead letters for one message"
    kinds: Counter[str] = Counter()
    wrong: list[str] = []
    for position, sent in run.expected.items():
        kinds[sent.expect] += 1
        letter = letters.get(position)
        if sent.expect != "dead":
            if letter is not None:
                wrong.append(f"{sent.name} at {position}: refused ({letter.error_message[:200]})")
            continue
        if letter is None:
            wrong.append(f"{sent.name} at {position}: not a dead letter")
            continue
        problems = []
        if letter.error_class != sent.error_class:
            problems.append(f"class {letter.error_class}, want {sent.error_class}")
        missing = [word for word in sent.reason if word not in letter.error_message]
        if missing:
            problems.append(f"reason lacks {missing}")
        if not letter.is_of(sent.value or b""):
            problems.append("original bytes differ")
        key = None if sent.key is None else base64.b64encode(sent.key).decode()
        if letter.original_key_b64 != key:
            problems.append("original key differs")
        if letter.source_partition != 0:
            problems.append(f"partition {letter.source_partition}")
        if problems:
            wrong.append(
                f"{sent.name} at {position}: {'; '.join(problems)} "
                f"(got {letter.error_class}: {letter.error_message[:300]!r})"
            )
    assert not wrong, f"{len(wrong)} messages not handled as expected:\n" + "\n".join(wrong[:60])
    assert len(mixed.dead_letters) == kinds["dead"]

    # Accepted hostile messages are in the join's counters, and nowhere else.
    got, want = counter_totals(mixed.processor), counter_totals(alone.processor)
    delta = {name: got[name] - want[name] for name in got.keys() | want.keys()}
    hostile_predictions = kinds["duplicate_prediction"] + kinds["late"]
    assert delta["predictions"] == hostile_predictions, delta
    assert delta["duplicate_predictions"] == kinds["duplicate_prediction"], delta
    # a prediction stamped before its label horizon can join nothing: unlabelled at once
    assert delta["unlabelled"] == kinds["late"], delta
    assert delta["labels"] == kinds["duplicate_label"] + kinds["orphan"], delta
    assert delta["duplicate_labels"] == kinds["duplicate_label"], delta
    assert delta["joined"] == 0, delta
    orphans = mixed.processor.join.orphan_count - alone.processor.join.orphan_count
    assert orphans + delta["orphan_labels"] == kinds["orphan"], (orphans, delta)
    # Late predictions are counted in their (long closed) windows, segment `all`, or, when
    # the partition has already forgotten the window (a label horizon after it settled),
    # in `past_retention`; each in exactly one of the two.
    late_windows = {
        window_start_us(sent) for sent in run.expected.values() if sent.expect == "late"
    }
    new_keys = [key for key in mixed.late.keys() - alone.late.keys() if key.segment == "all"]
    assert {key.window_start_us for key in new_keys} <= late_windows
    past = mixed.processor.windows.past_retention - alone.processor.windows.past_retention
    assert sum(mixed.late[key] for key in new_keys) + past == kinds["late"]
    return dict(kinds)


def assert_dead_letters_counted_in_their_windows(run: Mixed) -> None:
    """Refused messages that name the model, a version and a time count in that window."""
    mixed = run.mixed
    # docs/metrics.md: volume.dead_letters counts the refused messages that name this model,
    # version and a time in the window; checked for the valid traffic's windows (those of
    # long-closed windows start again once the window is final)
    named: Counter[int] = Counter()
    for sent in run.expected.values():
        moment = named_time(sent) if sent.expect == "dead" else None
        if moment is not None and moment // (WINDOW_S * MICROS) * WINDOW_S in run.valid_windows:
            named[moment - moment % (WINDOW_S * MICROS)] += 1
    counted_dead = {
        key.window_start_us: count
        for key, count in mixed.dead_by_window.items()
        if window_of(key) in run.valid_windows
    }
    assert counted_dead == dict(named)


def named_time(sent: Sent) -> int | None:
    """Microseconds of the time a refused message names with the monitored model and a version."""
    try:
        document = json.loads((sent.value or b"").decode("utf-8"))
        moment = datetime.fromisoformat(document["timestamp"])
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return None
    if (
        document.get("model_id") != "churn"
        or not isinstance(document.get("model_version"), str)
        or not document["model_version"]
        or moment.tzinfo is None
    ):
        return None
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def references(tmp_path_factory: pytest.TempPathFactory) -> ReferenceStore:
    """The worker's reference loader over ``ref-1.json`` (built as the CLI builds it).

    The worker's own loader, so that versions named by hostile messages reach the code that
    turns them into file names.
    """
    directory = tmp_path_factory.mktemp("reference")
    write_training_csv(directory / "train.csv")
    model = CONFIG.model("churn")
    profile = build_reference(
        directory / "train.csv",
        "churn",
        "1",
        model=model,
        target="label",
        prediction="prediction",
        score="score",
    )
    (directory / "ref-1.json").write_text(profile.to_json())
    return ReferenceStore(CONFIG, directory)


@pytest.fixture(scope="module")
def corpus() -> list[Entry]:
    """The committed corpus."""
    return load_corpus()


@pytest.fixture(scope="module")
def corpus_run(references: ReferenceLoader, corpus: list[Entry]) -> Mixed:
    """The whole corpus and the derived messages mixed into 40 minutes of valid traffic."""
    rng = random.Random(2026)
    traffic = valid_traffic(1200, seed=31)
    valid = in_batches(traffic, rng)
    last = max(datetime.fromisoformat(event_of(s)["timestamp"]) for s in traffic)
    now = last + timedelta(minutes=1)
    hostile = spread([from_entry(entry) for entry in corpus], len(valid), rng)
    for number, extra in derived_hostile(valid, rng, now, per_batch=6).items():
        hostile[number].extend(extra)
    return run_mixed(valid, hostile, references, now, rng)


# ------------------------------------------------------------------ pure tests


def test_the_committed_corpus_is_what_make_corpus_writes(corpus: list[Entry]) -> None:
    stale = [
        path.name
        for path, text in iter_files()
        if not path.exists() or path.read_text(encoding="utf-8") != text
    ]
    assert not stale, f"run `python -m tests.reliability.make_corpus`: {stale} are stale"
    assert len(corpus) >= 1000
    assert sorted(p.name for p in CORPUS_DIR.glob("*.jsonl")) == sorted(
        path.name for path, _ in iter_files()
    )
    kinds = Counter(entry.expect for entry in corpus)
    assert kinds["dead"] >= 1000 and kinds["late"] and kinds["orphan"], kinds


def test_every_corpus_and_derived_message_is_refused_or_counted(corpus_run: Mixed) -> None:
    kinds = assert_every_message_accounted_for(corpus_run)
    assert kinds["dead"] >= 1000
    assert kinds["duplicate_prediction"] and kinds["duplicate_label"], kinds


def test_refused_messages_count_in_the_volume_of_the_window_they_name(corpus_run: Mixed) -> None:
    assert_dead_letters_counted_in_their_windows(corpus_run)


def test_the_valid_traffic_between_them_gives_the_same_results(corpus_run: Mixed) -> None:
    assert_valid_results_unchanged(corpus_run)
    # the run did close windows and write points (the comparison was not vacuous)
    assert sum(len(batch) for batch in corpus_run.alone.drift) >= 8
    measurements = Counter(series[0] for series in corpus_run.alone.points)
    assert measurements["feature_drift"] and measurements["model_performance"], measurements


def test_far_future_timestamps_do_not_move_the_watermark_or_close_windows(
    references: ReferenceLoader,
) -> None:
    rng = random.Random(4)
    traffic = valid_traffic(400, seed=8)
    valid = in_batches(traffic, rng)
    last = max(datetime.fromisoformat(event_of(s)["timestamp"]) for s in traffic)
    now = last + timedelta(minutes=1)
    hostile: dict[int, list[Sent]] = defaultdict(list)
    for number in range(1, len(valid)):
        for ahead in (timedelta(minutes=61), timedelta(days=1), timedelta(days=365 * 7000)):
            moment = min(now + ahead, datetime(9999, 12, 31, tzinfo=UTC))
            for topic, document in (
                (
                    PREDICTIONS,
                    prediction_doc(f"ahead-{number}-{ahead}", timestamp=moment.isoformat()),
                ),
                (LABELS, label_doc(f"ahead-{number}-{ahead}", timestamp=moment.isoformat())),
            ):
                hostile[number].append(
                    Sent(
                        topic,
                        document["prediction_id"].encode(),
                        encode(document),
                        "dead",
                        "Rejected",
                        ("timestamp", "ahead of the clock"),
                        "far future",
                    )
                )
    run = run_mixed(valid, hostile, references, now, rng)
    assert_every_message_accounted_for(run)
    assert_dead_letters_counted_in_their_windows(run)
    assert_valid_results_unchanged(run)
    assert run.mixed.merger_error is None, run.mixed.merger_error
    # and the windows still open at the end (the newest events') were not closed by them
    newest = run.alone.watermarks[-1][0]
    assert newest
    assert run.mixed.processor.windows.watermarks_us == newest
    assert run.mixed.processor.windows.predictions_by_window.keys() == (
        run.alone.processor.windows.predictions_by_window.keys()
    )
    assert run.mixed.processor.windows.predictions_by_window, "no window was left open"


def test_the_merger_takes_every_partial_it_is_handed(corpus_run: Mixed) -> None:
    # A partial that makes the merger raise stops a worker's merge loop (and, read again
    # after a restart, stops it again): whatever the partitions hand on must be evaluated.
    assert corpus_run.alone.merger_error is None, corpus_run.alone.merger_error
    assert corpus_run.mixed.merger_error is None, corpus_run.mixed.merger_error


def _processor(references: ReferenceLoader) -> PartitionProcessor:
    return PartitionProcessor(
        0,
        CONFIG,
        references,
        predictions_topic=PREDICTIONS,
        labels_topic=LABELS,
        limits=DEFAULT_LIMITS,
    )


def _prediction(pid: str, moment: datetime, **changes: Any) -> RawMessage:
    return RawMessage(
        PREDICTIONS,
        0,
        0,
        pid.encode(),
        encode(prediction_doc(pid, timestamp=moment.isoformat(), **changes)),
    )


def _numbered(messages: list[RawMessage], start: dict[str, int]) -> list[RawMessage]:
    out = []
    for message in messages:
        out.append(
            RawMessage(message.topic, 0, start.get(message.topic, 0), message.key, message.value)
        )
        start[message.topic] = start.get(message.topic, 0) + 1
    return out


def test_a_dead_letter_stamped_before_year_1_in_utc_does_not_stop_the_merger(
    references: ReferenceLoader,
) -> None:
    # Refused (out of range once in UTC), and then counted in the volume of a window
    # that starts in year 0, which the merger cannot turn into a date.
    processor = _processor(references)
    offsets: dict[str, int] = {}
    valid = [_prediction(f"v{i}", T0 + timedelta(seconds=i)) for i in range(60)]
    refused = RawMessage(
        PREDICTIONS,
        0,
        0,
        b"old",
        encode(prediction_doc("old", timestamp="0001-01-01T00:00:00+01:00")),
    )
    merger = WindowMerger(CONFIG, references, partitions=1, clock=lambda: 0.0)
    first = processor.process(_numbered([*valid, refused], offsets), now=T0 + timedelta(hours=1))
    assert [letter.error_class for letter in first.dead_letters] == ["InvalidEvent"]
    later = [_prediction("v-late", T0 + timedelta(seconds=WINDOW_S + LATENESS_S + 1))]
    second = processor.process(_numbered(later, offsets), now=T0 + timedelta(hours=1))
    for result in (first, second):
        merge(merger, result)
    points = merger.evaluate()  # must not raise
    assert any(point.measurement == "feature_drift" for point in points)


@pytest.mark.parametrize(
    "moment", ["0001-01-01T00:00:00Z", "1677-09-21T00:12:43Z", "1500-06-01T12:00:00+05:00"]
)
def test_an_ancient_prediction_in_a_partitions_first_batch_does_not_stop_the_merger(
    references: ReferenceLoader, moment: str
) -> None:
    # Before the partition has a watermark nothing is late: the ancient window is a drift
    # window like any other, closed at once, and its points carry a time before 1677,
    # which line protocol (int64 nanoseconds) cannot hold.
    processor = _processor(references)
    merger = WindowMerger(CONFIG, references, partitions=1, clock=lambda: 0.0)
    offsets: dict[str, int] = {}
    ancient = _prediction("ancient", datetime.fromisoformat(moment))
    valid = [_prediction(f"v{i}", T0 + timedelta(seconds=i)) for i in range(60)]
    closing = [_prediction("z", T0 + timedelta(seconds=WINDOW_S + LATENESS_S + 1))]
    for batch in ([ancient, *valid], closing):
        merge(merger, processor.process(_numbered(batch, offsets), now=T0 + timedelta(hours=1)))
    points = merger.evaluate()  # must not raise
    assert any(point.measurement == "feature_drift" for point in points)


def test_a_long_prediction_id_does_not_stop_the_rest_of_its_batch_from_joining(
    references: ReferenceLoader,
) -> None:
    # One accepted event with a long id (here stamped long ago: a late prediction) in the
    # batch of ordinary ones; their labels, in a later batch, must find them.
    processor = _processor(references)
    offsets: dict[str, int] = {}
    predictions = [_prediction(f"p-{i}", T0 + timedelta(seconds=i)) for i in range(5)]
    odd = _prediction("x" * 200, datetime(2001, 1, 1, tzinfo=UTC))
    processor.process(_numbered([*predictions, odd], offsets), now=T0 + timedelta(hours=1))
    labels = [
        RawMessage(
            LABELS,
            0,
            0,
            f"p-{i}".encode(),
            encode(label_doc(f"p-{i}", timestamp=(T0 + timedelta(seconds=60)).isoformat())),
        )
        for i in range(5)
    ]
    processor.process(_numbered(labels, offsets), now=T0 + timedelta(hours=1))
    totals = counter_totals(processor)
    assert totals["joined"] == 5, totals
    assert processor.join.orphan_count == 0
    # and a duplicate of each is recognised as one, whatever its batch holds
    again = _numbered([*predictions, _prediction("y" * 100, T0)], offsets)
    processor.process(again, now=T0 + timedelta(hours=1))
    assert counter_totals(processor)["duplicate_predictions"] == 5


def test_a_bool_in_a_numeric_feature_counts_the_same_whatever_else_is_in_its_batch(
    references: ReferenceLoader,
) -> None:
    # The same events in one batch or in two must give the same window: a string in one
    # event's numeric feature must not change how another event's value is read.
    def events() -> list[RawMessage]:
        features = dict(prediction_doc("f")["features"])
        return [
            _prediction(
                "a", T0 + timedelta(seconds=1), features={**features, "support_calls": True}
            ),
            _prediction(
                "b", T0 + timedelta(seconds=2), features={**features, "support_calls": "three"}
            ),
            *[_prediction(f"c{i}", T0 + timedelta(seconds=3 + i)) for i in range(5)],
        ]

    closing = _prediction("z", T0 + timedelta(seconds=WINDOW_S + LATENESS_S + 1))
    together, apart = _processor(references), _processor(references)
    offsets: dict[str, int] = {}
    closed_together = [
        together.process(_numbered(events(), offsets), now=T0 + timedelta(hours=1)),
        together.process(_numbered([closing], offsets), now=T0 + timedelta(hours=1)),
    ]
    first, second, *rest = events()
    offsets = {}
    closed_apart = [
        apart.process(_numbered([first, *rest], offsets), now=T0 + timedelta(hours=1)),
        apart.process(_numbered([second], offsets), now=T0 + timedelta(hours=1)),
        apart.process(_numbered([closing], offsets), now=T0 + timedelta(hours=1)),
    ]
    drift_together = [p for result in closed_together for p in result.windows.drift]
    drift_apart = [p for result in closed_apart for p in result.windows.drift]
    assert drift_together and drift_together == drift_apart


def test_a_prediction_whose_version_is_as_long_as_allowed_is_processed(
    references: ReferenceLoader,
) -> None:
    # 256 characters is within max_id_length; the version becomes part of a reference file
    # name (ref-<version>.json), longer than a file name may be: no reference, no crash.
    processor = _processor(references)
    merger = WindowMerger(CONFIG, references, partitions=1, clock=lambda: 0.0)
    offsets: dict[str, int] = {}
    long_version = "v" * DEFAULT_LIMITS.max_id_length
    batch = [
        _prediction(f"v{i}", T0 + timedelta(seconds=i), model_version=long_version)
        for i in range(5)
    ]
    batch.append(_prediction("z", T0 + timedelta(seconds=WINDOW_S + LATENESS_S + 1)))
    result = processor.process(_numbered(batch, offsets), now=T0 + timedelta(hours=1))
    assert result.dead_letters == []
    merge(merger, result)
    merger.evaluate()
    assert processor.windows.predictions_by_window or result.windows.drift


def test_a_model_version_names_no_file_outside_the_references(tmp_path: Path) -> None:
    # With `reference: refs/{version}.json`, the version "../elsewhere" of an event (a valid
    # identifier) must not make the worker read refs/../elsewhere.json.
    config = parse_config(CONFIG_TEXT.replace("ref-{version}.json", "refs/{version}.json"))
    profile = ReferenceProfile("churn", "1", features={})
    (tmp_path / "refs").mkdir()
    (tmp_path / "refs" / "1.json").write_text(profile.to_json())
    (tmp_path / "elsewhere.json").write_text(profile.to_json())
    store = ReferenceStore(config, tmp_path)
    assert store("churn", "1") is not None
    assert store("churn", "../elsewhere") is None


def test_late_predictions_of_long_closed_windows_show_in_the_volume_points(
    references: ReferenceLoader,
) -> None:
    # docs: a late prediction is counted in volume.late_predictions. One for a window that
    # never had an on-time prediction (here a day old) must be counted somewhere a
    # dashboard sees, not only in the partition's memory.
    processor = _processor(references)
    merger = WindowMerger(CONFIG, references, partitions=1, clock=lambda: 0.0)
    offsets: dict[str, int] = {}
    now = T0 + timedelta(hours=1)
    valid = [_prediction(f"v{i}", T0 + timedelta(seconds=i)) for i in range(60)]
    day_old = [_prediction(f"old{i}", T0 - timedelta(days=1)) for i in range(3)]
    closing = [_prediction("z", T0 + timedelta(seconds=WINDOW_S + LATENESS_S + 1))]
    for batch in (valid, day_old, closing):
        merge(merger, processor.process(_numbered(batch, offsets), now=now))
    points = merger.evaluate()
    old_start = (T0 - timedelta(days=1)).timestamp() // WINDOW_S * WINDOW_S
    late = [
        point.fields.get("late_predictions")
        for point in points
        if point.measurement == "volume"
        and dict(point.tags)["segment"] == "all"
        and point.time_ns // 1_000_000_000 == old_start
    ]
    assert late == [3], [(p.measurement, p.tags, p.time_ns, p.fields) for p in points]


def test_a_window_where_every_message_was_refused_reports_its_dead_letters(
    references: ReferenceLoader,
) -> None:
    # A serving app that sends nothing but broken events for a window: the window's
    # volume point must say so (dead_letters), not stay silent as if there were no traffic.
    processor = _processor(references)
    merger = WindowMerger(CONFIG, references, partitions=1, clock=lambda: 0.0)
    offsets: dict[str, int] = {}
    now = T0 + timedelta(hours=1)
    first = [_prediction(f"v{i}", T0 + timedelta(seconds=i)) for i in range(60)]
    broken_window = T0 + timedelta(seconds=WINDOW_S)
    broken = [
        _prediction(f"b{i}", broken_window + timedelta(seconds=i), features={"plan": [1]})
        for i in range(7)
    ]
    third = [_prediction(f"w{i}", T0 + timedelta(seconds=2 * WINDOW_S + i)) for i in range(60)]
    closing = [_prediction("z", T0 + timedelta(seconds=3 * WINDOW_S + LATENESS_S + 1))]
    for batch in (first, broken, third, closing):
        merge(merger, processor.process(_numbered(batch, offsets), now=now))
    points = merger.evaluate()
    dead = {
        point.time_ns // 1_000_000_000: point.fields.get("dead_letters")
        for point in points
        if point.measurement == "volume" and dict(point.tags)["segment"] == "all"
    }
    assert dead.get(int(broken_window.timestamp())) == 7, dead


# ------------------------------------------------------------------ cost of refusing


def _best_of(repeat: int, action: Callable[[], object]) -> float:
    """Shortest of ``repeat`` timings of ``action`` (garbage collection off), in seconds."""
    best = math.inf
    enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeat):
            started = time.perf_counter()
            with contextlib.suppress(InvalidEvent):
                action()
            best = min(best, time.perf_counter() - started)
    finally:
        if enabled:
            gc.enable()
    return best


def _parse_cost_and(message: bytes, action: Callable[[], object]) -> tuple[float, float]:
    """Best times of parsing ``message`` with orjson and of ``action``, measured in turns.

    A message orjson refuses is timed as a JSON string of the same length instead.
    Alternating the two keeps a busy machine from favouring one of them.
    """
    try:
        orjson.loads(message)
        parsed = message
    except orjson.JSONDecodeError:
        parsed = b'"' + b"x" * (len(message) - 2) + b'"'
    parse = took = math.inf
    for _ in range(5):
        parse = min(parse, _best_of(1, lambda: orjson.loads(parsed)))
        took = min(took, _best_of(1, action))
    return parse, took


def _worst(name: str) -> bytes:
    head = encode(prediction_doc("w"))[:-1]
    if name == "16 MB string":
        return b'"' + b"x" * 16_000_000 + b'"'
    if name == "16 MB event":
        return head + b',"padding":"' + b"x" * 16_000_000 + b'"}'
    if name == "2 MB of features":
        members = b",".join(b'"%s":0' % member_name(i).encode() for i in range(250_000))
        return head.replace(b'"features":{', b'"features":{' + members + b",", 1) + b"}"
    document = prediction_doc("w")
    text = {
        "1e5 features": lambda: (
            head.replace(
                b'"features":{',
                b'"features":{'
                + b",".join(b'"%s":0' % member_name(i).encode() for i in range(100_000))
                + b",",
                1,
            )
            + b"}"
        ),
        "1e5 score classes": lambda: encode(
            dict(document, scores={member_name(i): 0.5 for i in range(100_000)})
        ),
        "8e4 segments": lambda: encode(
            dict(document, segment={member_name(i): "eu" for i in range(80_000)})
        ),
        "1 MB prediction_id": lambda: encode(dict(document, prediction_id="i" * 1_000_000)),
        "1 MB model_id": lambda: encode(dict(document, model_id="i" * 1_000_000)),
        "1 MB feature value": lambda: encode(dict(document, features={"plan": "s" * 1_000_000})),
        "1e5-character feature name": lambda: encode(dict(document, features={"n" * 100_000: 1})),
        "1e6 nested arrays": lambda: b"[" * 1_000_000,
        "nesting in an unknown field": lambda: (
            head + b',"x":' + b"[" * 500_000 + b"]" * 500_000 + b"}"
        ),
    }[name]()
    assert len(text) <= DEFAULT_LIMITS.max_message_bytes, (name, len(text))
    return text


@pytest.mark.parametrize("name", ["16 MB string", "16 MB event", "2 MB of features"])
def test_an_oversize_message_is_refused_before_it_is_parsed(name: str) -> None:
    message = _worst(name)
    with pytest.raises(InvalidEvent, match="max_message_bytes"):
        decode_prediction(message)
    parse, refuse = _parse_cost_and(message, lambda: decode_prediction(message))
    assert refuse < 0.05 * parse, (refuse, parse)


@pytest.mark.parametrize("name", ["16 MB string", "16 MB event", "2 MB of features"])
def test_a_worker_turns_an_oversize_message_into_a_dead_letter_without_parsing_it(
    references: ReferenceLoader, name: str
) -> None:
    # the whole partition step (decode, screen, dead letter, window attribution)
    message = _worst(name)
    processor = _processor(references)
    offset = [0]

    def process() -> None:
        offset[0] += 1
        result = processor.process([RawMessage(PREDICTIONS, 0, offset[0], b"k", message)], now=T0)
        assert "max_message_bytes" in result.dead_letters[0].error_message

    parse, refuse = _parse_cost_and(message, process)
    # Not parsed (that alone would cost one parse): what remains is linear, the
    # sha256 of the whole message its dead letter carries (16 ms of 24 at 16 MB here).
    assert refuse < 0.8 * parse, (refuse, parse)


@pytest.mark.parametrize(
    "name",
    [
        "1e5 features",
        "1e5 score classes",
        "8e4 segments",
        "1 MB prediction_id",
        "1 MB model_id",
        "1 MB feature value",
        "1e5-character feature name",
        "1e6 nested arrays",
        "nesting in an unknown field",
    ],
)
def test_refusing_a_message_within_the_size_limit_costs_no_more_than_reading_it(name: str) -> None:
    # Within max_message_bytes a message must be parsed to be judged, and refusing it
    # may cost what reading it with orjson and then with pydantic costs (up to about ten
    # orjson parses for a dense object, measured). Twenty is beyond that: work a limit
    # should have stopped, such as a per-character Python loop before a length check.
    message = _worst(name)
    with pytest.raises(InvalidEvent):
        decode_prediction(message)
    parse, refuse = _parse_cost_and(message, lambda: decode_prediction(message))
    assert refuse < 20 * parse + 0.002, (refuse, parse)


# ------------------------------------------------------------------ hypothesis

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
NOT_A_STRING = JSON_VALUES.filter(lambda value: not isinstance(value, str))
BAD_IDENTIFIER = (
    NOT_A_STRING
    | st.text(alphabet=" \t\n\r\x0b\x0c\x85\u2028\u3000", max_size=5)
    | st.builds(
        lambda a, c, b: a + c + b,
        st.text(max_size=5),
        st.sampled_from([chr(i) for i in range(32)]),
        st.text(max_size=5),
    )
    | st.integers(257, 3000).map(lambda n: "i" * n)
)
NAIVE_TIMES = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31))
BAD_TIMESTAMP = (
    NOT_A_STRING.filter(lambda v: not isinstance(v, int | float) or isinstance(v, bool))
    | NAIVE_TIMES.map(lambda moment: moment.isoformat())
    | NAIVE_TIMES.map(lambda moment: moment.strftime("%d/%m/%Y %H:%M:%S +00:00"))
    | st.text(alphabet="abcxyz:-+ TZ", max_size=25)
)
NOT_A_FEATURE_VALUE = st.lists(JSON_SCALARS, max_size=3) | st.dictionaries(
    st.text(max_size=5), JSON_SCALARS, max_size=3
)
BAD_FEATURES = NOT_A_STRING.filter(lambda v: not isinstance(v, dict)) | st.builds(
    lambda good, name, bad: {**good, name: bad},
    st.just(prediction_doc("x")["features"]),
    st.text(max_size=10),
    NOT_A_FEATURE_VALUE,
)
BAD_SCORE = (
    st.floats(allow_nan=True, allow_infinity=True).filter(lambda x: not 0.0 <= x <= 1.0)
    | st.text(max_size=5)
    | st.booleans()
    | st.none()
    | st.lists(st.floats(0, 1), max_size=2)
)
BAD_LABEL = (
    st.none()
    | st.just("")
    | st.lists(JSON_SCALARS, max_size=3)
    | st.dictionaries(st.text(max_size=4), JSON_SCALARS, max_size=3)
    | st.sampled_from([math.nan, math.inf, -math.inf])
)
FAR_PAST = st.datetimes(
    min_value=datetime(1, 1, 1), max_value=datetime(2026, 11, 1), timezones=st.just(UTC)
)


Maker = Callable[[str], Sent]
"""Builds a hostile message around a prediction id unique in its example."""


@st.composite
def broken_event(draw: st.DrawFn) -> Maker:
    """A prediction or label with one field broken in a way docs/events.md refuses."""
    if draw(st.booleans()):
        field_name = draw(
            st.sampled_from(
                [
                    "prediction_id",
                    "model_id",
                    "model_version",
                    "timestamp",
                    "features",
                    "scores",
                    "prediction",
                ]
            )
        )
        bad = {
            "prediction_id": BAD_IDENTIFIER,
            "model_id": BAD_IDENTIFIER,
            "model_version": BAD_IDENTIFIER,
            "timestamp": BAD_TIMESTAMP,
            "features": BAD_FEATURES,
            "scores": st.dictionaries(
                st.sampled_from(["0", "1"]), BAD_SCORE, min_size=1, max_size=2
            ),
            "prediction": BAD_LABEL,
        }[field_name]
        topic, base = PREDICTIONS, prediction_doc
    else:
        field_name = draw(st.sampled_from(["prediction_id", "model_id", "timestamp", "label"]))
        bad = {
            "prediction_id": BAD_IDENTIFIER,
            "model_id": BAD_IDENTIFIER,
            "timestamp": BAD_TIMESTAMP,
            "label": BAD_LABEL,
        }[field_name]
        topic, base = LABELS, label_doc
    value = draw(bad)
    return lambda pid: Sent(
        topic,
        pid.encode(),
        encode(base(pid, **{field_name: value})),
        "dead",
        "InvalidEvent",
        (field_name,),
        f"hypothesis: broken {field_name}: {value!r:.80}",
    )


@st.composite
def not_json(draw: st.DrawFn) -> Maker:
    """Bytes no strict JSON reader takes, or JSON that is not an event object."""
    topic = draw(st.sampled_from([PREDICTIONS, LABELS]))
    if draw(st.booleans()):
        raw = draw(st.binary(max_size=300))
        try:
            json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return lambda pid: Sent(
                topic,
                pid.encode(),
                raw,
                "dead",
                "InvalidEvent",
                ("Invalid JSON",),
                f"hypothesis: not JSON {raw!r:.80}",
            )
    value = encode(draw(JSON_VALUES.filter(lambda v: not isinstance(v, dict))))
    return lambda pid: Sent(
        topic,
        pid.encode(),
        value,
        "dead",
        "InvalidEvent",
        ("object",),
        f"hypothesis: JSON, not an object {value!r:.80}",
    )


@st.composite
def far_past(draw: st.DrawFn) -> Maker:
    """A valid prediction (late) or label (orphan), stamped long ago."""
    moment = draw(FAR_PAST).isoformat()
    if draw(st.booleans()):
        return lambda pid: Sent(
            PREDICTIONS,
            pid.encode(),
            encode(prediction_doc(pid, timestamp=moment)),
            "late",
            name=f"hypothesis: prediction at {moment}",
        )
    return lambda pid: Sent(
        LABELS,
        pid.encode(),
        encode(label_doc(pid, timestamp=moment)),
        "orphan",
        name=f"hypothesis: label at {moment}",
    )


HOSTILE = st.one_of(broken_event(), not_json(), far_past())


_VALID = in_batches(valid_traffic(300, seed=77), random.Random(3))
_NOW = timedelta(minutes=1) + max(
    datetime.fromisoformat(event_of(sent)["timestamp"]) for batch in _VALID for sent in batch
)
_ALONE: dict[str, Outcome] = {}
"""The valid-only outcome, shared by the examples (it does not depend on the hostile mix)."""


# Each example is a whole run of a few hundred messages: no shrinking (it takes minutes);
# a failure names the messages involved (``Sent.name``) instead.
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
@given(
    standalone=st.lists(
        st.tuples(st.integers(1, len(_VALID) - 1), HOSTILE), min_size=10, max_size=30
    ),
    derived_seed=st.integers(0, 2**32 - 1),
)
def test_generated_hostile_messages_are_refused_or_counted_and_change_nothing_else(
    references: ReferenceLoader, standalone: list[tuple[int, Maker]], derived_seed: int
) -> None:
    rng = random.Random(derived_seed)
    hostile: dict[int, list[Sent]] = defaultdict(list)
    for index, (number, make) in enumerate(standalone):
        hostile[number].append(make(f"hyp-{index}"))
    for number, extra in derived_hostile(_VALID, rng, _NOW, per_batch=2).items():
        hostile[number].extend(extra)
    run = run_mixed(_VALID, hostile, references, _NOW, rng, alone=_ALONE.get("alone"))
    _ALONE["alone"] = run.alone
    assert_every_message_accounted_for(run)
    assert_dead_letters_counted_in_their_windows(run)
    assert_valid_results_unchanged(run)
    assert run.mixed.merger_error is None, run.mixed.merger_error


# ------------------------------------------------------------------ a real worker


def as_offline_event(sent: Sent) -> dict[str, Any]:
    """A valid prediction as docs/events.md says the worker reads it: non-finite numbers missing."""
    event = event_of(sent)
    features: dict[str, Any] = {}
    for name, value in event["features"].items():
        features[name] = value
        if isinstance(value, int | float) and not isinstance(value, bool):
            try:
                number = float(value)
            except OverflowError:
                number = math.inf
            features[name] = number if math.isfinite(number) else None
    return dict(event, features=features)


@dataclass
class Delivered:
    """Where each produced message landed."""

    positions: dict[int, tuple[str, int, int]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def produce(bootstrap: str, messages: Sequence[tuple[str, Sent]]) -> Delivered:
    """Produce ``(topic, message)`` in order; record each one's partition and offset."""
    delivered = Delivered()
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 20,
            "enable.idempotence": False,
            "message.max.bytes": 20_000_000,
            "compression.type": "lz4",
        }
    )

    def report(index: int) -> Callable[[Any, Any], None]:
        def on_delivery(error: Any, message: Any) -> None:
            if error is not None:
                delivered.errors.append(f"message {index}: {error}")
            else:
                delivered.positions[index] = (
                    message.topic(),
                    message.partition(),
                    message.offset(),
                )

        return on_delivery

    for index, (topic, sent) in enumerate(messages):
        while True:
            try:
                producer.produce(topic, sent.value, sent.key, on_delivery=report(index))
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(60) == 0
    return delivered


def read_dead_letters(
    bootstrap: str, topic: str, count: int, timeout: float, alive: Callable[[], bool]
) -> list[DeadLetter]:
    """Every dead letter on the topic, reading until ``count`` arrived or ``timeout`` passed."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "fetch.message.max.bytes": 32_000_000,
            "receive.message.max.bytes": 64_000_000,
        }
    )
    letters: list[DeadLetter] = []
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        partitions = sorted(metadata.topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        deadline = time.monotonic() + timeout
        while len(letters) < count and time.monotonic() < deadline and alive():
            message = consumer.poll(0.5)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    continue
                raise RuntimeError(f"reading {topic}: {error}")
            letters.append(DeadLetter.model_validate_json(message.value() or b""))
    finally:
        consumer.close()
    return letters


@pytest.mark.integration
def test_a_worker_dead_letters_every_hostile_message_and_keeps_the_valid_results(
    kafka_bootstrap: str, own_victoria_metrics_url: str, tmp_path: Path, corpus: list[Entry]
) -> None:
    started = time.monotonic()
    env = {
        **topic_env(unique_topic_name("hostile"), kafka_bootstrap, tmp_path / "data"),
        "DRIFTLINE_INFLUX_URL": own_victoria_metrics_url,
        "DRIFTLINE_INFLUX_TOKEN": "hostile-token",
    }
    (tmp_path / "monitors.yaml").write_text(CONFIG_TEXT)
    build_reference_with_cli(tmp_path, env)
    create_topics(tmp_path, env)
    topics = {
        PREDICTIONS: env["DRIFTLINE_TOPIC_PREDICTIONS"],
        LABELS: env["DRIFTLINE_TOPIC_LABELS"],
    }

    rng = random.Random(99)
    traffic = valid_traffic(3600, seed=41, start=scenario_start(4), quirky=False, rate_per_s=1.0)
    valid = in_batches(traffic, rng)
    # a day ahead of the clock: the worker reads them a minute or two after they are made
    hostile = spread([from_entry(entry) for entry in corpus], len(valid), rng)
    for number, extra in derived_hostile(
        valid, rng, datetime.now(UTC) + timedelta(days=1), per_batch=4
    ).items():
        hostile[number].extend(extra)
    ordered = [sent for batch in mix(valid, hostile, rng) for sent in batch]
    delivered = produce(kafka_bootstrap, [(topics[sent.topic], sent) for sent in ordered])
    assert not delivered.errors, delivered.errors[:5]

    run = Run(
        env,
        tmp_path,
        [as_offline_event(s) for s in traffic if s.topic == PREDICTIONS],
        [event_of(s) for s in traffic if s.topic == LABELS],
        0,
        load_reference(tmp_path),
    )
    windows = expected_windows(run)
    assert len(windows) >= 8
    wanted = {
        delivered.positions[index]: sent
        for index, sent in enumerate(ordered)
        if sent.expect == "dead"
    }
    produced_at = time.monotonic()
    worker = start_worker(run, "worker", {"DRIFTLINE_LOG_LEVEL": "INFO"})
    try:
        wait_for(run, own_victoria_metrics_url, windows, [worker], timeout=240)
        letters = read_dead_letters(
            kafka_bootstrap,
            env["DRIFTLINE_TOPIC_DEAD_LETTER"],
            len(wanted),
            120,
            lambda: worker.poll() is None,
        )
        time.sleep(3)  # the last performance re-emissions
        check_points(run, own_victoria_metrics_url, windows)
        alive = worker.poll() is None
    finally:
        stop(worker)
    log = (tmp_path / "worker.log").read_text(errors="replace")
    assert alive, f"the worker exited ({worker.returncode}):\n{log[-4000:]}"
    assert worker.returncode == 0, log[-4000:]

    found = {
        (dead.source_topic, dead.source_partition, dead.source_offset): dead for dead in letters
    }
    assert len(found) == len(letters), "a message was dead-lettered twice"
    missing = [f"{wanted[p].name} at {p}" for p in wanted.keys() - found.keys()]
    unexpected = [f"{p}: {found[p].error_message[:160]}" for p in found.keys() - wanted.keys()]
    wrong = []
    for position in wanted.keys() & found.keys():
        sent, letter = wanted[position], found[position]
        words = [word for word in sent.reason if word not in letter.error_message]
        if letter.error_class != sent.error_class or words or not letter.is_of(sent.value or b""):
            wrong.append(
                f"{sent.name} at {position}: {letter.error_class}: {letter.error_message[:200]!r}"
            )
    assert not (missing or unexpected or wrong), (
        f"{len(wanted)} expected dead letters, {len(letters)} read; "
        f"missing {len(missing)}: {sorted(missing)[:40]}; unexpected {len(unexpected)}: "
        f"{unexpected[:10]}; wrong {len(wrong)}: {wrong[:20]}\nworker log:\n{log[-3000:]}"
    )
    assert "Traceback" not in log, log[-4000:]
    print(
        f"{len(ordered)} messages ({len(ordered) - len(traffic)} hostile, {len(wanted)} "
        f"dead letters matched by offset); produced in {produced_at - started:.0f} s, "
        f"worker done in {time.monotonic() - produced_at:.0f} s"
    )


def test_a_reference_profile_written_after_start_is_found_without_a_restart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = [0.0]
    store = ReferenceStore(CONFIG, tmp_path, retry_s=60.0, clock=lambda: clock[0])
    with caplog.at_level(logging.WARNING, logger="streams.app"):
        assert store("churn", "1") is None
        profile = ReferenceProfile("churn", "1", features={})
        (tmp_path / "ref-1.json").write_text(profile.to_json())
        clock[0] = 59.0  # not looked for again yet
        assert store("churn", "1") is None
        clock[0] = 60.0
        found = store("churn", "1")
        assert found is not None and found.model_version == "1"
        (tmp_path / "ref-1.json").unlink()
        assert store("churn", "1") is found  # kept once loaded
        # a version that cannot name a file is never looked for again
        assert store("churn", "../x") is None
        clock[0] = 1e9
        assert store("churn", "../x") is None
    messages = [record.getMessage() for record in caplog.records]
    assert sum("no reference profile for churn version 1" in m for m in messages) == 1
    assert sum("cannot name a reference file" in m for m in messages) == 1
