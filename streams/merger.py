"""Combining the partials of every source partition into a model's results.

Each source partition reports its closed drift windows, its cumulative
performance windows, its late counts and its watermark. The merger keeps the
latest partial per (window, source partition) — so a replayed partial replaces
rather than adds — and evaluates:

* a drift window once every source partition has closed it (its watermark
  passed the window's end plus the allowed lateness), or has been silent for
  ``idle_timeout_s``: drift, data-quality and volume points, written once;
* a performance window every time a partial changes it (at most once per the
  model's ``emit_interval``), with ``n_labelled``, coverage, label-lag
  percentiles and ``is_final`` — same series and timestamp, so the store keeps
  the corrected value.

A window that had only late predictions or only refused messages (no drift
partial) gets a volume point too, once it is closed the same way: predictions 0
and its counts, written again when those counts change.

A window settles when its performance is final on every partition. The merger
then keeps its on-time count, labels and late/dead-letter counts until the
window is forgotten (:func:`~streams.windows.forgotten_after_us`, by the
slowest partition's watermark): a prediction or refused message arriving for
it in the meantime rewrites its volume point with the full counts, and a
replayed drift or performance partial of it (a partition resuming from a
checkpoint taken before the window settled) is ignored instead of overwriting
the final points with a part of the data. Partials of a forgotten window are
ignored too.

A window whose start line protocol cannot carry (before 1677-09-21 or after
2262-04-11, int64 nanoseconds) is dropped with a counted, rate-limited warning
whenever one of its partials arrives or is restored: its points could not be
written, and making them would stop the worker.

Because sketches and statistics merge by exact addition, the points do not
depend on how partitions are spread over workers.
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from alerts.observation import ChangePoints, WindowObservation
from detectors.change import TIMELINE_STEPS, scan_timeline
from detectors.multiple_testing import DatasetDriftDecision, dataset_drift, p_values_of
from detectors.profile import ReferenceProfile
from detectors.quality import DataQualityResult, data_quality
from detectors.registry import run_drift
from detectors.result import DriftResult
from schemas import ModelConfig, MonitorConfig
from schemas.outputs import ALL_SEGMENTS
from streams import points
from streams.join import duration_us
from streams.points import Point
from streams.windows import (
    MICROS,
    DriftAccumulator,
    DriftPartial,
    PerformanceAccumulator,
    PerformancePartial,
    ReferenceLoader,
    WindowKey,
    forgotten_after_us,
)

log = logging.getLogger(__name__)

DROP_WARNING_INTERVAL_S = 60.0
"""Least time between two warnings about windows dropped for their start time."""

FORGET_INTERVAL_S = 1.0
"""Least time between two sweeps for evaluated windows past retention."""


def window_start(key: WindowKey) -> datetime:
    """The window's start as a UTC datetime (the points' timestamp)."""
    return datetime.fromtimestamp(key.window_start_us / MICROS, tz=UTC)


def window_end(model: ModelConfig, key: WindowKey) -> datetime:
    """The window's end as a UTC datetime."""
    return window_start(key) + model.window.size


@dataclass(frozen=True)
class DriftWindowResult:
    """Everything computed for one closed drift window of a model segment."""

    key: WindowKey
    predictions: int
    features: dict[str, dict[str, DriftResult]]
    prediction: dict[str, DriftResult]
    dataset: DatasetDriftDecision | None
    points: list[Point]


@dataclass
class _DriftSlot:
    partials: dict[int, DriftPartial] = field(default_factory=dict)
    first_seen: float = 0.0


@dataclass
class _PerformanceSlot:
    partials: dict[int, PerformancePartial] = field(default_factory=dict)
    last_emitted: float = -1e18
    pending: bool = False
    first_seen: float = 0.0


class WindowMerger:
    """Merges partials of ``partitions`` source partitions.

    Parameters
    ----------
    config
        The monitor configuration.
    load_reference
        ``(model_id, version) -> ReferenceProfile | None``.
    partitions
        Number of source partitions (of the predictions topic).
    idle_timeout_s
        A source partition silent this long no longer holds windows back.
    clock
        Monotonic seconds (injectable for tests).
    """

    def __init__(
        self,
        config: MonitorConfig,
        load_reference: ReferenceLoader,
        partitions: int,
        *,
        idle_timeout_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if partitions < 1:
            raise ValueError(f"partitions must be >= 1, got {partitions}")
        self.config = config
        self.load_reference = load_reference
        self.partitions = partitions
        self.idle_timeout_s = idle_timeout_s
        self.clock = clock
        self._drift: dict[WindowKey, _DriftSlot] = {}
        self._performance: dict[WindowKey, _PerformanceSlot] = {}
        self._late: dict[WindowKey, dict[int, int]] = defaultdict(dict)
        self._dead: dict[WindowKey, dict[int, int]] = defaultdict(dict)
        self._closed: dict[WindowKey, tuple[int, dict[int, int]]] = {}
        """Evaluated drift windows: predictions, and per source partition those its
        partial counted (-1: unknown, from an older checkpoint)."""
        self._watermarks: dict[str, dict[int, int]] = defaultdict(dict)
        # Each partition's join watermark: how far labels can still come. Its
        # windows settle and are forgotten by it, so the merger judges them by
        # it too (the drift watermark runs ahead when labels lag).
        self._join_watermarks: dict[str, dict[int, int]] = defaultdict(dict)
        # When each partition was last heard from; all of them at the start, so a
        # partition counts as silent only once it has been for idle_timeout_s.
        self._heard: dict[int, float] = dict.fromkeys(range(partitions), clock())
        self._observations: list[WindowObservation] = []
        self._counts_seen: dict[WindowKey, float] = {}
        self._counts_emitted: dict[WindowKey, tuple[int, int]] = {}
        self._settled: dict[WindowKey, int] = {}
        """Windows whose performance is final, with their labels joined."""
        self._forgot_at = -1e18
        self.ignored_partials = 0
        """Partials of settled or forgotten windows, ignored (replays after a restart)."""
        self.dropped_windows = 0
        """Partials dropped because their window starts outside line protocol's times."""
        self.incomplete_drift = 0
        """Windows whose drift was not computed: their sketches missed some predictions."""
        self._observed_drift: set[WindowKey] = set()
        self._observed_early: dict[WindowKey, tuple[int, bool, float]] = {}
        """Windows the alert rules judged while their points were held back
        (:meth:`observe_held`): for performance, with how many labels, whether
        final, and when."""
        self.unconfigured_partials = 0
        """Partials of models no longer in the configuration, dropped."""
        self._unconfigured_warned: set[str] = set()
        self._dropped_unreported = 0
        self._drop_warned_at: float | None = None

    def _keeps(self, key: WindowKey, what: str) -> bool:
        """Whether a partial of ``key`` can be kept; counts and warns about one that cannot."""
        if self.config.model(key.model_id) is None:
            # A model taken out of the configuration: its partials (in the
            # topic, or in a checkpoint from before) have nowhere to go.
            self.unconfigured_partials += 1
            if key.model_id not in self._unconfigured_warned:
                self._unconfigured_warned.add(key.model_id)
                log.warning(
                    "%s of model %r ignored: the model is not in the configuration (any more); "
                    "its windows are dropped",
                    what,
                    key.model_id,
                )
            return False
        if points.carries_time_us(key.window_start_us):
            return True
        self.dropped_windows += 1
        self._dropped_unreported += 1
        now = self.clock()
        if self._drop_warned_at is None or now - self._drop_warned_at >= DROP_WARNING_INTERVAL_S:
            log.warning(
                "dropped %d partial(s) since the last such warning (%d in all) of windows "
                "starting outside 1677-09-21..2262-04-11, which line protocol cannot carry; "
                "latest: %s of model %r version %r starting at %d us",
                self._dropped_unreported,
                self.dropped_windows,
                what,
                key.model_id,
                key.model_version,
                key.window_start_us,
            )
            self._dropped_unreported = 0
            self._drop_warned_at = now
        return False

    def drain_observations(self) -> list[WindowObservation]:
        """Window observations for the alert rules made since the last call."""
        observations, self._observations = self._observations, []
        return observations

    def snapshot(self) -> dict[str, Any]:
        """Checkpointable state (see :meth:`restore`); silence timers restart on restore."""

        def partial_drift(partial: DriftPartial) -> list[Any]:
            payload = None if partial.payload is None else partial.payload.decode()
            return [payload, partial.predictions]

        return {
            "drift": [
                [key.encode(), [[s, partial_drift(p)] for s, p in slot.partials.items()]]
                for key, slot in self._drift.items()
            ],
            "performance": [
                [
                    key.encode(),
                    [[s, p.payload.decode(), p.final] for s, p in slot.partials.items()],
                    slot.pending,
                ]
                for key, slot in self._performance.items()
            ],
            "late": [
                [key.encode(), list(by_source.items())] for key, by_source in self._late.items()
            ],
            "dead": [
                [key.encode(), list(by_source.items())] for key, by_source in self._dead.items()
            ],
            "closed": [
                [key.encode(), predictions, sorted(sources.items())]
                for key, (predictions, sources) in self._closed.items()
            ],
            "watermarks": {model: list(marks.items()) for model, marks in self._watermarks.items()},
            "join_watermarks": {
                model: list(marks.items()) for model, marks in self._join_watermarks.items()
            },
            "settled": [[key.encode(), labels] for key, labels in self._settled.items()],
            "counts_written": [
                [key.encode(), list(counts)] for key, counts in self._counts_emitted.items()
            ],
        }

    def restore(self, document: dict[str, Any]) -> None:
        """Load what :meth:`snapshot` wrote."""
        now = self.clock()
        self._drift = {}
        for raw_key, partials in document["drift"]:
            key = WindowKey.decode(raw_key)
            if not self._keeps(key, "restored drift window"):
                continue
            slot = _DriftSlot(first_seen=now)
            for source, (payload, predictions) in partials:
                encoded = None if payload is None else payload.encode()
                slot.partials[int(source)] = DriftPartial(key, encoded, int(predictions))
            self._drift[key] = slot
        self._performance = {}
        for raw_key, partials, pending in document["performance"]:
            key = WindowKey.decode(raw_key)
            if not self._keeps(key, "restored performance window"):
                continue
            perf_slot = _PerformanceSlot(pending=bool(pending), first_seen=now)
            for source, payload, final in partials:
                perf_slot.partials[int(source)] = PerformancePartial(
                    key, payload.encode(), bool(final)
                )
            self._performance[key] = perf_slot
        self._late = defaultdict(dict)
        for raw_key, by_source in document["late"]:
            key = WindowKey.decode(raw_key)
            if self._keeps(key, "restored late count"):
                self._late[key] = {int(s): int(n) for s, n in by_source}
        self._dead = defaultdict(dict)
        for raw_key, by_source in document.get("dead", []):
            key = WindowKey.decode(raw_key)
            if self._keeps(key, "restored dead-letter count"):
                self._dead[key] = {int(s): int(n) for s, n in by_source}
        self._closed = {}
        for raw_key, predictions, sources in document["closed"]:
            key = WindowKey.decode(raw_key)
            if self._keeps(key, "restored closed window"):
                # [source, predictions] pairs; an older checkpoint has the sources only
                counts = [
                    (int(s[0]), int(s[1])) if isinstance(s, list) else (int(s), -1) for s in sources
                ]
                self._closed[key] = (int(predictions), dict(counts))
        self._settled = {}
        for raw_key, labels in document.get("settled", []):
            key = WindowKey.decode(raw_key)
            if self._keeps(key, "restored settled window"):
                self._settled[key] = int(labels)
        self._counts_seen = dict.fromkeys(self._late.keys() | self._dead.keys(), now)
        if "counts_written" in document:
            # what was written: counts that came while the sink held back (and
            # evaluation with it) are still to be written after a restart
            self._counts_emitted = {}
            for raw_key, (late, dead) in document["counts_written"]:
                key = WindowKey.decode(raw_key)
                if self._keeps(key, "restored written counts"):
                    self._counts_emitted[key] = (int(late), int(dead))
        else:  # a checkpoint of an earlier version: taken as written
            self._counts_emitted = {
                key: self._counts(key) for key in self._counts_seen if key in self._closed
            }
        self._watermarks = defaultdict(dict)
        for model, marks in document["watermarks"].items():
            self._watermarks[model] = {int(s): int(w) for s, w in marks}
        self._join_watermarks = defaultdict(dict)
        for model, marks in document.get("join_watermarks", {}).items():
            self._join_watermarks[model] = {int(s): int(w) for s, w in marks}
        self._heard = dict.fromkeys(range(self.partitions), now)

    def _model(self, model_id: str) -> ModelConfig:
        model = self.config.model(model_id)
        if model is None:
            raise KeyError(f"model {model_id!r} is not configured")
        return model

    def add_watermark(
        self,
        source: int,
        model_id: str,
        watermark_us: int | None,
        join_watermark_us: int | None = None,
        *,
        heard: bool = True,
    ) -> None:
        """A source partition's drift watermark for one model, and its join watermark.

        Drift windows close by the first; performance windows settle, and
        windows are forgotten, by the second (a partition without one, an
        older worker, is judged by its drift watermark). ``heard=False``: the
        partition read nothing, its clocks moved because it is quiet
        (``window.close_when_idle``), and it stays silent for the idle timeout.
        """
        if heard:
            self._heard[source] = self.clock()
        for marks, value in (
            (self._watermarks, watermark_us),
            (self._join_watermarks, join_watermark_us),
        ):
            if value is not None:
                known = marks[model_id].get(source)
                if known is None or value > known:
                    marks[model_id][source] = value

    def _settle_watermarks(self, model_id: str) -> dict[int, int]:
        """Per partition, the watermark its performance windows settle by."""
        marks = dict(self._watermarks.get(model_id, {}))
        marks.update(self._join_watermarks.get(model_id, {}))
        return marks

    def add_drift(self, source: int, partial: DriftPartial, *, heard: bool = True) -> None:
        """A drift window closed by a source partition (``heard``: see :meth:`add_watermark`)."""
        if heard:
            self._heard[source] = self.clock()
        if not self._keeps(partial.key, "drift partial"):
            return
        if self._forgotten(partial.key):
            self.ignored_partials += 1
            return
        closed = self._closed.get(partial.key)
        if closed is not None and source in closed[1]:
            # A replay of a partial already evaluated, with the same count; more
            # predictions come from a partition that lost a clock move in a crash
            # (``close_when_idle``) and counted a later one on time: late here.
            counted = closed[1][source]
            if 0 <= counted < partial.predictions:
                log.warning(
                    "drift partial for %s from partition %d sent again with %d predictions "
                    "after the window was evaluated with %d; the %d more count as late",
                    partial.key,
                    source,
                    partial.predictions,
                    counted,
                    partial.predictions - counted,
                )
                self._late[partial.key][-1 - source] = partial.predictions - counted
                self._counts_seen.setdefault(partial.key, self.clock())
            return
        if closed is not None:
            log.warning(
                "drift partial for %s from partition %d after the window was evaluated; "
                "its %d predictions count as late",
                partial.key,
                source,
                partial.predictions,
            )
            self._late[partial.key][-1 - source] = partial.predictions
            self._counts_seen.setdefault(partial.key, self.clock())  # its volume is rewritten
            return
        slot = self._drift.get(partial.key)
        if slot is None:
            slot = self._drift[partial.key] = _DriftSlot(first_seen=self.clock())
        slot.partials[source] = partial

    def _forgotten(self, key: WindowKey) -> bool:
        """Whether a window no longer held here is past retention on every partition.

        Partitions keep reporting a window's cumulative counts until they
        forget it too; such a repeat must not start the window again.
        """
        if (
            key in self._drift
            or key in self._closed
            or key in self._performance
            or key in self._settled
        ):
            return False
        model = self.config.model(key.model_id)
        return model is not None and self._past(key, model, forgotten_after_us(model))

    def _past(self, key: WindowKey, model: ModelConfig, after_us: int) -> bool:
        """Whether every partition's join watermark is strictly past ``after_us`` from the
        window's start: the partitions' own rule, so a late count a partition still sends
        for the window is one the merger still holds it for."""
        watermarks = self._settle_watermarks(key.model_id)
        now = self.clock()
        return bool(watermarks) and all(
            watermarks[source] > key.window_start_us + after_us
            if source in watermarks
            else self._silent(source, now)
            for source in range(self.partitions)
        )

    def _silent(self, source: int, now: float) -> bool:
        """Whether a source partition has been silent for ``idle_timeout_s``.

        One that is and has sent no watermark has read nothing (every partition
        with input sends its watermark after each batch): it holds no window
        back."""
        return now - self._heard.get(source, -math.inf) >= self.idle_timeout_s

    def add_late(self, source: int, late: dict[WindowKey, int]) -> None:
        """Cumulative late-prediction counts of a source partition."""
        for key, count in late.items():
            if self._keeps(key, "late count") and not self._forgotten(key):
                self._late[key][source] = count
                self._counts_seen.setdefault(key, self.clock())

    def add_dead_letters(self, source: int, dead: dict[WindowKey, int]) -> None:
        """Cumulative dead-letter counts of a source partition, by window."""
        for key, count in dead.items():
            if self._keeps(key, "dead-letter count") and not self._forgotten(key):
                self._dead[key][source] = count
                self._counts_seen.setdefault(key, self.clock())

    def add_performance(
        self, source: int, partial: PerformancePartial, *, heard: bool = True
    ) -> None:
        """A cumulative performance window of a source partition (``heard``: see
        :meth:`add_watermark`)."""
        if heard:
            self._heard[source] = self.clock()
        if not self._keeps(partial.key, "performance partial"):
            return
        if partial.key in self._settled or self._forgotten(partial.key):
            self.ignored_partials += 1
            return
        slot = self._performance.get(partial.key)
        if slot is None:
            slot = self._performance[partial.key] = _PerformanceSlot(first_seen=self.clock())
        slot.partials[source] = partial
        slot.pending = True

    def _final(
        self, key: WindowKey, model: ModelConfig, slot: _PerformanceSlot, now: float
    ) -> bool:
        """Whether a performance window is final on every source partition.

        Every partial received must be final, and every partition that sent
        none must be past the window's label horizon (it had no prediction in
        the window: it would have sent a partial before its watermark moved
        on) or silent for ``idle_timeout_s``. A partition that is behind — a
        backlog being read — may still send the window's predictions and
        labels, so the window waits for it.
        """
        if not slot.partials or not all(p.final for p in slot.partials.values()):
            return False
        settles_at = key.window_start_us + duration_us(
            model.window.size + model.window.label_horizon
        )
        # strictly past: partitions make a window final once their watermark is later
        return self._others_passed(
            key,
            slot.partials,
            settles_at + 1,
            slot.first_seen,
            now,
            watermarks=self._settle_watermarks(key.model_id),
        )

    def _ready(
        self, key: WindowKey, slot: _DriftSlot, now: float, *, idle_closes: bool = True
    ) -> bool:
        model = self._model(key.model_id)
        size = duration_us(model.window.size)
        lateness = duration_us(model.window.allowed_lateness)
        closes_at = key.window_start_us + size + lateness
        return self._others_passed(
            key, slot.partials, closes_at, slot.first_seen, now, idle_closes=idle_closes
        )

    def _others_passed(
        self,
        key: WindowKey,
        reported: Mapping[int, object],
        at_us: int,
        first_seen: float,
        now: float,
        *,
        idle_closes: bool = True,
        watermarks: Mapping[int, int] | None = None,
    ) -> bool:
        """Whether every source partition not in ``reported`` has a watermark at ``at_us``
        or later, or (with ``idle_closes``) has been silent for ``idle_timeout_s`` while
        the window has waited that long. ``watermarks``: the drift watermarks unless given."""
        if watermarks is None:
            watermarks = self._watermarks.get(key.model_id, {})
        waited = now - first_seen >= self.idle_timeout_s
        for source in range(self.partitions):
            if source in reported:
                continue
            watermark = watermarks.get(source)
            if watermark is not None and watermark >= at_us:
                continue
            # A silent partition lets the window go when idle closes it, or when
            # it has read nothing at all.
            if waited and (idle_closes or watermark is None) and self._silent(source, now):
                continue
            return False
        return True

    def waiting(self) -> set[tuple[str, str, str, datetime]]:
        """Drift windows known but not evaluated: (model, version, segment, start)."""
        return {
            (key.model_id, key.model_version, key.segment, window_start(key)) for key in self._drift
        }

    def observe_held(self) -> None:
        """Observations of ready windows for the alert rules, keeping the windows held.

        While the sink holds points back, :meth:`evaluate` is not called and
        the windows wait here; this lets the rules judge them meanwhile.  Each
        drift window is observed once, a performance window again when more
        labels joined.  :meth:`evaluate` observes them again later with their
        points; the alert engine judges a window it has seen only once.
        """
        now = self.clock()
        for key in sorted(self._drift):
            slot = self._drift[key]
            if key in self._observed_drift or not self._ready(key, slot, now):
                continue
            self._evaluate_drift(key, list(slot.partials.values()), early=True)
            self._observed_drift.add(key)
        for key in sorted(self._performance):
            perf_slot = self._performance[key]
            model = self._model(key.model_id)
            seen = self._observed_early.get(key)
            if seen is not None and now - seen[2] < model.window.emit_interval.total_seconds():
                continue  # throttled as evaluate() throttles its points
            final = self._final(key, model, perf_slot, now)
            if not (perf_slot.pending or final):
                continue
            merged = self._merged_performance(model, perf_slot)
            if seen is None or seen[:2] != (merged.n_labelled, final):
                self._evaluate_performance(model, key, merged, final)
            self._observed_early[key] = (merged.n_labelled, final, now)

    def evaluate(self) -> list[Point]:
        """Points of every window that became ready since the last call."""
        now = self.clock()
        output: list[Point] = []
        ready = [key for key, slot in self._drift.items() if self._ready(key, slot, now)]
        for key in sorted(ready):
            self._observed_drift.discard(key)
            drift_slot = self._drift.pop(key)
            result = self._evaluate_drift(key, list(drift_slot.partials.values()))
            self._closed[key] = (
                result.predictions,
                {source: part.predictions for source, part in drift_slot.partials.items()},
            )
            self._record_counts(key)
            output.extend(result.points)
        with_volume: set[WindowKey] = set()
        for key, slot in list(self._performance.items()):
            model = self._model(key.model_id)
            final = self._final(key, model, slot, now)
            interval = model.window.emit_interval.total_seconds()
            # A window made final by another partition's watermark is written once
            # more with is_final, even when nothing new came since its last point.
            if final or (slot.pending and now - slot.last_emitted >= interval):
                merged = self._merged_performance(model, slot)
                output.extend(self._evaluate_performance(model, key, merged, final))
                slot.pending = False
                slot.last_emitted = now
                if key in self._closed:
                    with_volume.add(key)
                    self._record_counts(key)
            if final:
                self._settled[key] = merged.n_labelled
                self._performance.pop(key)
                self._observed_early.pop(key, None)
        output.extend(self._evaluate_counts_only(now, with_volume))
        if now - self._forgot_at >= FORGET_INTERVAL_S:
            self._forgot_at = now
            self._forget_old_windows()
        return output

    def _forget_old_windows(self) -> None:
        """Drop what is kept of evaluated windows once every partition is past retention."""
        held = self._closed.keys() | self._settled.keys()
        for key in [k for k in held if k not in self._drift and k not in self._performance]:
            model = self.config.model(key.model_id)
            if model is not None and not self._past(key, model, forgotten_after_us(model)):
                continue
            for kept in (
                self._closed,
                self._settled,
                self._late,
                self._dead,
                self._counts_seen,
                self._counts_emitted,
            ):
                kept.pop(key, None)

    def _counts(self, key: WindowKey) -> tuple[int, int]:
        return sum(self._late.get(key, {}).values()), sum(self._dead.get(key, {}).values())

    def _record_counts(self, key: WindowKey) -> None:
        if key in self._counts_seen:
            self._counts_emitted[key] = self._counts(key)

    def _evaluate_counts_only(self, now: float, with_volume: set[WindowKey]) -> list[Point]:
        """Volume of windows known only by late or dead-letter counts, once closed."""
        output: list[Point] = []
        for key in sorted(self._counts_seen):
            if key in self._drift or key in with_volume or self.config.model(key.model_id) is None:
                continue
            counts = self._counts(key)
            if key in self._closed:
                # evaluated before: written again only when a count changed
                # (none recorded: its volume point was written without counts)
                if self._counts_emitted.get(key, (0, 0)) == counts:
                    continue
                on_time = self._closed[key][0]
            elif self._ready(
                # Every partition must have passed it: a silent partition may
                # still hold the window open and send its drift partial later.
                key,
                _DriftSlot(first_seen=self._counts_seen[key]),
                now,
                idle_closes=False,
            ):
                on_time = 0
                self._closed[key] = (0, {})
            else:
                continue
            output.append(self._volume(key, window_start(key), on_time, labels=None))
            self._counts_emitted[key] = counts
        return output

    def _evaluate_drift(
        self, key: WindowKey, partials: list[DriftPartial], *, early: bool = False
    ) -> DriftWindowResult:
        """The window's drift, data quality and volume, and its observation for the rules.

        ``early``: judged while its points are held back (:meth:`observe_held`);
        a window without complete sketches is counted and logged only when it
        is evaluated for good.
        """
        model = self._model(key.model_id)
        predictions = sum(partial.predictions for partial in partials)
        reference = self.load_reference(key.model_id, key.model_version)
        start = window_start(key)
        features: dict[str, dict[str, DriftResult]] = {}
        prediction: dict[str, DriftResult] = {}
        qualities: dict[str, DataQualityResult] = {}
        dataset: DatasetDriftDecision | None = None
        out: list[Point] = []
        merged = self._sketches(key, partials, predictions, reference, early=early)
        if merged is not None and reference is not None:
            for feature in model.features:
                sketch = merged.features.get(feature.name)
                profile = reference.features.get(feature.name)
                if sketch is None or profile is None:
                    continue
                results: dict[str, DriftResult] = {}
                for method in model.methods_for(feature):
                    result = run_drift(
                        method,
                        profile,
                        sketch,
                        threshold=model.drift.thresholds.get(method),
                        min_samples=model.drift.min_samples,
                    )
                    results[method] = result
                    out.extend(self._drift_points(key, start, result, feature.name))
                features[feature.name] = results
                quality_result = data_quality(sketch)
                qualities[feature.name] = quality_result
                quality = quality_result.fields()
                if key.segment == ALL_SEGMENTS:
                    out.append(
                        points.data_quality(
                            model_id=key.model_id,
                            model_version=key.model_version,
                            feature=feature.name,
                            missing_rate=quality["missing_rate"],
                            out_of_range_rate=quality["out_of_range_rate"],
                            unseen_category_rate=quality["unseen_category_rate"],
                            window_start=start,
                        )
                    )
            if merged.prediction is not None and reference.prediction is not None:
                kind = "numeric" if model.task == "regression" else "categorical"
                methods = (
                    model.drift.numeric_methods
                    if kind == "numeric"
                    else model.drift.categorical_methods
                )
                for method in methods:
                    result = run_drift(
                        method,
                        reference.prediction,
                        merged.prediction,
                        threshold=model.drift.thresholds.get(method),
                        min_samples=model.drift.min_samples,
                    )
                    prediction[method] = result
                    out.extend(self._drift_points(key, start, result, None))
            primary = {name: next(iter(results.values())) for name, results in features.items()}
            dataset = dataset_drift(
                p_values_of(
                    {
                        name: results.get("ks") or results.get("chi2") or primary[name]
                        for name, results in features.items()
                    }
                ),
                correction=model.drift.multiple_testing,
                alpha=model.drift.alpha,
            )
        out.append(self._volume(key, start, predictions, labels=None))
        self._observations.append(
            WindowObservation(
                key.model_id,
                key.model_version,
                key.segment,
                start,
                window_end(model, key),
                feature_drift=features or None,
                prediction_drift=prediction or None,
                dataset_drift=dataset,
                data_quality=qualities or None,
                predictions=predictions,
                baseline=dict(reference.baseline) if reference is not None else {},
            )
        )
        return DriftWindowResult(key, predictions, features, prediction, dataset, out)

    def _sketches(
        self,
        key: WindowKey,
        partials: list[DriftPartial],
        predictions: int,
        reference: ReferenceProfile | None,
        *,
        early: bool = False,
    ) -> DriftAccumulator | None:
        """The window's merged sketches, or None when they did not count every prediction.

        A partition sketches a window only from when it has the version's
        reference profile: a profile written while workers run is found by each
        partition at its own moment (:class:`streams.app.ReferenceStore`), so
        the windows open then hold sketches of part of their predictions. Drift
        from them would rest on part of the window, so none is computed.
        """
        payloads = [partial.payload for partial in partials if partial.payload is not None]
        if reference is None or not payloads:
            return None
        accumulators = [DriftAccumulator.from_bytes(payload, reference) for payload in payloads]
        sketched = sum(accumulator.predictions for accumulator in accumulators)
        if sketched != predictions:
            if early:
                return None
            self.incomplete_drift += 1
            log.warning(
                "drift of %s version %s, segment %s, window %s not computed: its sketches "
                "hold %d of its %d predictions (the reference profile was not loaded by every "
                "partition when the window began; one written while workers run is found within "
                "a minute, and the windows that begin after that have drift)",
                key.model_id,
                key.model_version,
                key.segment,
                window_start(key).isoformat(),
                sketched,
                predictions,
            )
            return None
        merged = accumulators[0]
        for accumulator in accumulators[1:]:
            merged = merged.merge(accumulator)
        return merged

    @staticmethod
    def _drift_points(
        key: WindowKey, start: datetime, result: DriftResult, feature: str | None
    ) -> list[Point]:
        if result.insufficient_data or result.statistic is None:
            return []
        common = {
            "model_id": key.model_id,
            "model_version": key.model_version,
            "segment": key.segment,
            "method": result.method,
            "statistic": result.statistic,
            "p_value": result.p_value,
            "threshold": result.threshold,
            "drifted": result.drifted,
            "n_current": result.n_current,
            "n_reference": result.n_reference,
            "window_start": start,
        }
        if feature is None:
            return [points.prediction_drift(**common)]  # type: ignore[arg-type]
        return [points.feature_drift(feature=feature, **common)]  # type: ignore[arg-type]

    def _volume(
        self, key: WindowKey, start: datetime, predictions: int, labels: int | None
    ) -> Point:
        late = sum(self._late.get(key, {}).values())
        slot = self._performance.get(key)
        if labels is None:
            labels = self._settled.get(key, 0)
            if slot is not None and slot.partials:
                labels = self._merged_performance(self._model(key.model_id), slot).n_labelled
        return points.volume(
            model_id=key.model_id,
            model_version=key.model_version,
            segment=key.segment,
            predictions=predictions,
            labels=labels,
            late_predictions=late,
            dead_letters=sum(self._dead.get(key, {}).values()),
            window_start=start,
        )

    @staticmethod
    def _merged_performance(model: ModelConfig, slot: _PerformanceSlot) -> PerformanceAccumulator:
        accumulators = [
            PerformanceAccumulator.from_bytes(partial.payload, model)
            for partial in slot.partials.values()
        ]
        merged = accumulators[0]
        for accumulator in accumulators[1:]:
            merged = merged.merge(accumulator)
        return merged

    def _evaluate_performance(
        self, model: ModelConfig, key: WindowKey, merged: PerformanceAccumulator, final: bool
    ) -> list[Point]:
        start = window_start(key)
        labelled = merged.n_labelled
        coverage = labelled / merged.predictions if merged.predictions else 0.0
        out: list[Point] = []
        results = merged.stats.compute(model.metrics, min_labelled=model.performance.min_labelled)
        for metric, result in results.items():
            if result.value is None or result.insufficient_data:
                continue
            out.append(
                points.model_performance(
                    model_id=key.model_id,
                    model_version=key.model_version,
                    segment=key.segment,
                    metric=metric,
                    value=result.value,
                    n_labelled=result.n_labelled,
                    coverage=coverage,
                    is_final=final,
                    window_start=start,
                )
            )
        detector = model.performance.change_detector
        change: ChangePoints | None = None
        if detector is not None and labelled:
            scan = scan_timeline(
                detector,
                model.performance.change_params,
                merged.timeline_counts,
                merged.timeline_errors,
            )
            step_s = duration_us(model.window.size) / 1e6 / TIMELINE_STEPS
            first_at_s = -1.0 if scan.first_step is None else (scan.first_step + 1) * step_s
            change = ChangePoints(detector, scan.detections, first_at_s, labelled)
            out.append(
                points.change_points(
                    model_id=key.model_id,
                    model_version=key.model_version,
                    segment=key.segment,
                    detector=detector,
                    detections=scan.detections,
                    first_at_s=first_at_s,
                    n_labelled=labelled,
                    is_final=final,
                    window_start=start,
                )
            )
        reference = self.load_reference(key.model_id, key.model_version)
        self._observations.append(
            WindowObservation(
                key.model_id,
                key.model_version,
                key.segment,
                start,
                window_end(model, key),
                performance=results,
                coverage=min(coverage, 1.0),
                is_final=final,
                baseline=dict(reference.baseline) if reference is not None else {},
                change_points=change,
            )
        )
        if key.segment == ALL_SEGMENTS and labelled:
            out.append(
                points.label_lag(
                    model_id=key.model_id,
                    model_version=key.model_version,
                    p50_s=merged.lag_percentile(50),
                    p95_s=merged.lag_percentile(95),
                    coverage=coverage,
                    window_start=start,
                )
            )
        if key in self._closed:
            on_time = self._closed[key][0]
            out.append(self._volume(key, start, on_time, labels=labelled))
        return out
