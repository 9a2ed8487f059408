"""Event-time windows of one source partition, and their mergeable partials.

A partition's predictions are counted into per-window sketches (drift, data
quality, volume) and its joined labels into per-window performance statistics.
Windows are keyed by model, version, segment and start; every prediction feeds
the ``all`` segment and, when the model is configured with ``segment_by``, its
own segment too.

* A **drift window** closes when its model's watermark in the partition
  (the newest prediction time seen, minus the model's allowed lateness) passes
  its end. The newest time is the partition's, of any model, unless the model
  ``runs_behind``: then the later of its own newest and the partition's less
  that (a model whose events run behind others' on the same topics). A model
  with ``close_when_idle`` has its own moved by the wall clock while the
  partition is quiet (:meth:`PartitionWindows.advance_quiet`).
  Its sketches are handed out once as a :class:`DriftPartial`; predictions for
  a closed window are counted as late.
* A **performance window** stays open until the join's watermark passes its
  end plus the label horizon. Each batch that changes it hands out a
  cumulative :class:`PerformancePartial` (the whole window so far), so a
  receiver replaces rather than adds and a replayed batch changes nothing.

Partials from every partition of a model are combined by
:mod:`streams.merger`; both sides are pure code, the faust agents in
:mod:`streams.app` move the bytes.
"""

from __future__ import annotations

import logging
import math
import sys
from collections import defaultdict
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from operator import itemgetter
from typing import Any, NamedTuple

import numpy as np
import orjson
from numpy.typing import NDArray

from detectors.change import TIMELINE_STEPS
from detectors.classification import BinaryStats, MulticlassStats, positive_mask
from detectors.profile import CategoricalProfile, NumericProfile, ReferenceProfile
from detectors.regression import RegressionStats
from detectors.sketch import CategoricalSketch, NumericSketch
from detectors.values import label_codes
from schemas import ModelConfig, MonitorConfig, PredictionEvent
from schemas.outputs import ALL_SEGMENTS, segment_key
from streams.join import JoinedPair, duration_us, event_us, score_under

MICROS = 1_000_000

log = logging.getLogger(__name__)
_MAX = sys.float_info.max

LAG_EDGES_S: np.ndarray[Any, np.dtype[np.float64]] = np.concatenate(
    ([0.0], np.geomspace(0.01, 90 * 86_400.0, 400))
)
"""Bin edges of the label-lag histogram: 0, then log-spaced 10 ms … 90 days.

Neighbouring edges differ by 5.3 % (a factor of 1.0526), so a lag percentile
read from the histogram (the upper edge of its bin) is at most 5.3 % above
the exact one; negative lags (a label stamped before its prediction) fall
into the first bin.
"""

Stats = BinaryStats | MulticlassStats | RegressionStats
Sketch = NumericSketch | CategoricalSketch
ReferenceLoader = Callable[[str, str], ReferenceProfile | None]


class WindowKey(NamedTuple):
    """Identity of one window of one model version and segment."""

    model_id: str
    model_version: str
    segment: str
    window_start_us: int

    def encode(self) -> list[Any]:
        """JSON-ready form."""
        return list(self)

    @classmethod
    def decode(cls, data: Sequence[Any]) -> WindowKey:
        """Inverse of :meth:`encode`."""
        model_id, model_version, segment, start = data
        return cls(str(model_id), str(model_version), str(segment), int(start))


def new_stats(model: ModelConfig) -> Stats:
    """Empty performance statistics for a model's task."""
    if model.task == "binary":
        return BinaryStats()
    if model.task == "multiclass":
        return MulticlassStats(model.classes or ())
    return RegressionStats()


def stats_from_bytes(model: ModelConfig, data: bytes) -> Stats:
    """Performance statistics of a model's task from their bytes."""
    if model.task == "binary":
        return BinaryStats.from_bytes(data)
    if model.task == "multiclass":
        return MulticlassStats.from_bytes(data)
    return RegressionStats.from_bytes(data)


_NUMBERS = frozenset({float, int, type(None)})
"""Types a numeric column converts as they are (None is missing)."""


def _numeric_column(values: list[Any]) -> np.ndarray[Any, np.dtype[np.float64]]:
    # A boolean where a number belongs is a type error like a string, whatever
    # else the batch holds: counted as missing, never as 0 or 1.
    if _NUMBERS.issuperset(map(type, values)):  # one C-level pass over the types
        try:
            return np.asarray(values, dtype=np.float64)
        except OverflowError:  # an integer beyond the floats (a label may be one)
            pass
    # A string or another type where a number belongs: a schema violation of
    # that one value, counted as missing rather than failing the batch.
    return np.asarray(list(map(as_float, values)), dtype=np.float64)


def as_float(value: Any) -> float:
    """A number as a float; NaN for anything else, and for integers beyond the floats."""
    if isinstance(value, float):
        return float(value)
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            return math.nan
    return math.nan


def _empty_sketch(profile: NumericProfile | CategoricalProfile) -> Sketch:
    if isinstance(profile, NumericProfile):
        return NumericSketch.empty(profile)
    return CategoricalSketch.empty(profile)


def _take(values: Sequence[Any], rows: NDArray[np.intp] | None) -> list[Any]:
    return list(values) if rows is None else [values[row] for row in rows.tolist()]


def _objects(values: Sequence[Any]) -> NDArray[np.object_]:
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


class FeatureColumns:
    """The profiled features and the prediction of a batch of events, a column each.

    The values are read in one pass over the events (``itemgetter`` of every
    profiled feature, then a transpose), numeric features become one float64
    array, so the sketches of every window and segment of the batch are updated
    from rows of these columns without reading the events again. A numeric
    value that is not a number (a string, a boolean) is missing, value by value,
    so the outcome does not depend on how events were batched.

    Parameters
    ----------
    reference
        The profile whose features are read (missing ones are None).
    events
        The predictions, in row order.
    """

    def __init__(self, reference: ReferenceProfile, events: Sequence[PredictionEvent]) -> None:
        names = list(reference.features)
        self.size = len(events)
        columns: list[Sequence[Any]] = [()] * len(names) if not events else []
        if names and events:
            dicts = [event.features for event in events]
            if len(names) == 1:
                columns = [[features.get(names[0]) for features in dicts]]
            else:
                getter = itemgetter(*names)
                try:
                    rows = list(map(getter, dicts))
                except KeyError:  # a feature missing from some events
                    rows = [tuple(map(features.get, names)) for features in dicts]
                columns = list(zip(*rows, strict=True))
        numeric = [
            index
            for index, name in enumerate(names)
            if isinstance(reference.features[name], NumericProfile)
        ]
        numeric_set = frozenset(numeric)
        categorical = [index for index in range(len(names)) if index not in numeric_set]
        self.numeric_position = {names[index]: position for position, index in enumerate(numeric)}
        self._reference = reference
        self._bins: _NumericBins | None = None
        numeric_columns = [columns[index] for index in numeric]
        self.numeric: NDArray[np.float64] = np.empty(
            (len(numeric_columns), self.size), dtype=np.float64
        )
        for position, column in enumerate(numeric_columns):
            # value by value: a string or a bool is missing wherever it is
            self.numeric[position] = _numeric_column(list(column))
        self.categorical = {names[index]: _objects(columns[index]) for index in categorical}
        self.predicted = [event.prediction for event in events]
        self.predicted_numbers: NDArray[np.float64] | None = None
        if isinstance(reference.prediction, NumericProfile):
            self.predicted_numbers = _numeric_column(self.predicted)

    @property
    def bins(self) -> _NumericBins:
        """The numeric columns binned (built on first use, then shared by every window).

        Rows follow ``numeric_position``; a numeric prediction is the last row.
        """
        if self._bins is None:
            reference = self._reference
            profiles = [
                profile
                for profile in reference.features.values()
                if isinstance(profile, NumericProfile)
            ]
            values = self.numeric
            if self.predicted_numbers is not None and isinstance(
                reference.prediction, NumericProfile
            ):
                profiles.append(reference.prediction)
                values = np.vstack((values, self.predicted_numbers))
            self._bins = _NumericBins(profiles, values)
        return self._bins


class _NumericBins:
    """The slot of every value of a batch's numeric columns, for one reference profile.

    A batch is counted into the ``all`` window and, with segments, into its
    segment's window: binning each value once and counting slots per window
    (one ``bincount`` for every column at once) costs a third of binning the
    rows again for every window, most of it numpy's per-call overhead on
    batches of a thousand. Each column owns a block of its profile's slots
    plus one for its missing values, so a window's counts come from a single
    ``bincount`` of the selected rows.
    """

    __slots__ = ("blocks", "slots", "values")

    def __init__(self, profiles: Sequence[NumericProfile], values: NDArray[np.float64]) -> None:
        finite = np.isfinite(values)
        sizes = [profile.slot_index.n_slots + 1 for profile in profiles]
        self.blocks = np.concatenate(([0], np.cumsum(sizes, dtype=np.intp)))
        self.slots = np.empty(values.shape, np.intp)
        for row, profile in enumerate(profiles):
            start, missing_slot = int(self.blocks[row]), int(self.blocks[row + 1]) - 1
            is_finite = finite[row]
            slots = self.slots[row]
            if is_finite.all():
                slots[:] = profile.slot_index.slots(values[row])
                slots += start
            else:
                slots[:] = missing_slot
                slots[is_finite] = profile.slot_index.slots(values[row][is_finite]) + start
        # NaN where a value is missing: fmin and fmax skip it.
        self.values = values if finite.all() else np.where(finite, values, np.nan)

    def count(
        self, rows: NDArray[np.intp] | None
    ) -> tuple[list[NDArray[np.int64]], list[int], list[float], list[float]]:
        """Per column: slot counts, missing values, minimum and maximum (±inf if none)."""
        slots = self.slots if rows is None else self.slots[:, rows]
        values = self.values if rows is None else self.values[:, rows]
        counts = np.bincount(slots.ravel(), minlength=int(self.blocks[-1]))
        lowest = np.fmin.reduce(values, axis=1, initial=np.inf).tolist()
        highest = np.fmax.reduce(values, axis=1, initial=-np.inf).tolist()
        blocks = self.blocks.tolist()
        parts = [counts[start : end - 1] for start, end in pairwise(blocks)]
        missing = [int(counts[end - 1]) for end in blocks[1:]]
        return parts, missing, lowest, highest


@dataclass
class DriftAccumulator:
    """Sketches of one drift window: every profiled feature and the prediction."""

    reference: ReferenceProfile
    features: dict[str, Sketch] = field(default_factory=dict)
    prediction: Sketch | None = None
    predictions: int = 0

    @classmethod
    def empty(cls, reference: ReferenceProfile) -> DriftAccumulator:
        """No values yet, one sketch per profiled feature."""
        return cls(
            reference,
            {name: _empty_sketch(profile) for name, profile in reference.features.items()},
            None if reference.prediction is None else _empty_sketch(reference.prediction),
        )

    def update(self, events: Sequence[PredictionEvent]) -> None:
        """Count a batch of predictions (one vectorised update per feature)."""
        self.update_columns(FeatureColumns(self.reference, events))

    def update_columns(self, columns: FeatureColumns, rows: NDArray[np.intp] | None = None) -> None:
        """Count some rows (all when None) of a batch's columns, built on this reference."""
        self.predictions += columns.size if rows is None else int(rows.size)
        counts, missing, lowest, highest = columns.bins.count(rows)
        for name, sketch in self.features.items():
            if isinstance(sketch, NumericSketch):
                at = columns.numeric_position[name]
                sketch.add_binned(counts[at], missing[at], lowest[at], highest[at])
            else:
                values = columns.categorical[name]
                sketch.update(values if rows is None else values[rows])
        if self.prediction is not None:
            if isinstance(self.prediction, NumericSketch):
                if columns.predicted_numbers is None:
                    self.prediction.update(_numeric_column(_take(columns.predicted, rows)))
                else:  # the last row of the bins
                    self.prediction.add_binned(counts[-1], missing[-1], lowest[-1], highest[-1])
            else:
                self.prediction.update(_take(columns.predicted, rows))

    def merge(self, other: DriftAccumulator) -> DriftAccumulator:
        """Both windows' values (exact addition)."""
        features: dict[str, Sketch] = {}
        for name, sketch in self.features.items():
            features[name] = sketch.merge(other.features[name])  # type: ignore[arg-type]
        prediction = self.prediction
        if prediction is not None and other.prediction is not None:
            prediction = prediction.merge(other.prediction)  # type: ignore[arg-type]
        return DriftAccumulator(
            self.reference, features, prediction, self.predictions + other.predictions
        )

    def to_bytes(self) -> bytes:
        """Compact form for shipping to the merger."""
        document = {
            "n": self.predictions,
            "f": {name: sketch.to_bytes().hex() for name, sketch in self.features.items()},
            "p": None if self.prediction is None else self.prediction.to_bytes().hex(),
        }
        return orjson.dumps(document)

    @classmethod
    def from_bytes(cls, data: bytes, reference: ReferenceProfile) -> DriftAccumulator:
        """Inverse of :meth:`to_bytes` against the same reference."""
        document = orjson.loads(data)
        features: dict[str, Sketch] = {}
        for name, hexed in document["f"].items():
            profile = reference.features[name]
            raw = bytes.fromhex(hexed)
            if isinstance(profile, NumericProfile):
                features[name] = NumericSketch.from_bytes(raw, profile)
            else:
                features[name] = CategoricalSketch.from_bytes(raw, profile)
        prediction: Sketch | None = None
        if document["p"] is not None and reference.prediction is not None:
            raw = bytes.fromhex(document["p"])
            if isinstance(reference.prediction, NumericProfile):
                prediction = NumericSketch.from_bytes(raw, reference.prediction)
            else:
                prediction = CategoricalSketch.from_bytes(raw, reference.prediction)
        return cls(reference, features, prediction, int(document["n"]))


def _update_multiclass(
    stats: MulticlassStats, pairs: Sequence[JoinedPair], labels: list[Any], predicted: list[Any]
) -> None:
    """Count multiclass pairs, with their class scores where the prediction carried them.

    Pairs are grouped by the set of classes their scores name (usually one
    group, whatever order each prediction lists them in), so each group's
    scores form one matrix; pairs without scores count in the confusion
    matrix only.
    """
    groups: dict[tuple[str, ...], list[tuple[int, Mapping[str, float]]]] = {}
    unscored: list[int] = []
    for index, pair in enumerate(pairs):
        scores = pair.scores
        if scores:
            groups.setdefault(tuple(sorted(scores)), []).append((index, scores))
        else:
            unscored.append(index)
    if unscored:
        stats.update([labels[i] for i in unscored], [predicted[i] for i in unscored])
    for classes, members in groups.items():
        rows = [index for index, _ in members]
        matrix = np.asarray(
            [[scores[name] for name in classes] for _, scores in members], dtype=np.float64
        )
        stats.update([labels[i] for i in rows], [predicted[i] for i in rows], matrix, classes)


@dataclass
class PerformanceAccumulator:
    """Labelled-prediction statistics of one performance window."""

    stats: Stats
    predictions: int = 0
    lag_counts: np.ndarray[Any, np.dtype[np.int64]] = field(
        default_factory=lambda: np.zeros(LAG_EDGES_S.size, dtype=np.int64)
    )
    timeline_counts: np.ndarray[Any, np.dtype[np.int64]] = field(
        default_factory=lambda: np.zeros(TIMELINE_STEPS, dtype=np.int64)
    )
    """Joined predictions per slice of the window's event time (for change points)."""
    timeline_errors: np.ndarray[Any, np.dtype[np.float64]] = field(
        default_factory=lambda: np.zeros(TIMELINE_STEPS, dtype=np.float64)
    )
    """Their errors summed per slice: mistakes (0/1), or absolute errors for regression."""

    def add_pairs(self, model: ModelConfig, pairs: Sequence[JoinedPair]) -> None:
        """Add joined (prediction, label) pairs of this window."""
        if not pairs:
            return
        labels = [pair.label for pair in pairs]
        predicted = [pair.prediction for pair in pairs]
        stats = self.stats
        kept: NDArray[np.bool_] | None = None  # the pairs the metrics count (None: all)
        errors: NDArray[np.float64]
        if isinstance(stats, BinaryStats):
            positive, (key, *aliases) = model.positive, model.positive_score_keys
            found = [
                None if p.scores is None else score_under(p.scores, key, aliases) for p in pairs
            ]
            scores = np.asarray(
                [math.nan if score is None else score for score in found], dtype=np.float64
            )
            truth_mask = positive_mask(labels, positive)
            predicted_mask = positive_mask(predicted, positive)
            stats.update(truth_mask, predicted_mask, scores if np.isfinite(scores).any() else None)
            errors = (truth_mask != predicted_mask).astype(np.float64)
        elif isinstance(stats, MulticlassStats):
            _update_multiclass(stats, pairs, labels, predicted)
            true_keys, true_codes = label_codes(labels, "labels")
            pred_keys, pred_codes = label_codes(predicted, "predictions")
            errors = (
                np.asarray(true_keys, dtype=object)[true_codes]
                != np.asarray(pred_keys, dtype=object)[pred_codes]
            ).astype(np.float64)
        else:
            truth, guess = _numeric_column(labels), _numeric_column(predicted)
            numbers = np.isfinite(truth) & np.isfinite(guess)
            if not numbers.all():
                # New input of a regression model is screened (a dead letter); a
                # pair held in a checkpoint of an older version may still carry
                # a string: it is left out of the metrics, not allowed to raise.
                log.warning(
                    "%d joined pairs of model %s left out of its metrics: a label or "
                    "prediction is not a number",
                    int(numbers.size - np.count_nonzero(numbers)),
                    model.id,
                )
                truth, guess = truth[numbers], guess[numbers]
                kept = numbers
            stats.update(truth, guess)
            errors = np.abs(truth - guess)
        self._add_timeline(model, pairs, errors, kept)
        lags = np.asarray([pair.label_lag_s for pair in pairs], dtype=np.float64)
        slots = np.clip(np.searchsorted(LAG_EDGES_S, lags, side="right") - 1, 0, None)
        self.lag_counts += np.bincount(slots, minlength=LAG_EDGES_S.size)

    def _add_timeline(
        self,
        model: ModelConfig,
        pairs: Sequence[JoinedPair],
        errors: NDArray[np.float64],
        kept: NDArray[np.bool_] | None,
    ) -> None:
        size_us = duration_us(model.window.size)
        offsets = np.fromiter(
            (pair.prediction_time_us - pair.window_start_us for pair in pairs),
            np.int64,
            len(pairs),
        )
        if kept is not None:
            offsets = offsets[kept]
        steps = np.clip(offsets * TIMELINE_STEPS // size_us, 0, TIMELINE_STEPS - 1)
        with np.errstate(over="ignore"):  # errors past 1e308 sum to inf, as RMSE's do
            self.timeline_errors += np.bincount(steps, errors, TIMELINE_STEPS)
        self.timeline_counts += np.bincount(steps, minlength=TIMELINE_STEPS)

    @property
    def n_labelled(self) -> int:
        """Labelled predictions in the window."""
        return self.stats.n_labelled

    def lag_percentile(self, q: float) -> float | None:
        """Label-lag percentile in seconds (upper edge of its bin), None without labels."""
        total = int(self.lag_counts.sum())
        if total == 0:
            return None
        rank = math.ceil(q / 100.0 * total)
        slot = int(np.searchsorted(np.cumsum(self.lag_counts), max(rank, 1)))
        upper = LAG_EDGES_S[min(slot + 1, LAG_EDGES_S.size - 1)]
        return float(upper)

    def merge(self, other: PerformanceAccumulator) -> PerformanceAccumulator:
        """Both windows' pairs (exact addition)."""
        return PerformanceAccumulator(
            self.stats.merge(other.stats),  # type: ignore[arg-type]
            self.predictions + other.predictions,
            self.lag_counts + other.lag_counts,
            self.timeline_counts + other.timeline_counts,
            self.timeline_errors + other.timeline_errors,
        )

    def to_bytes(self) -> bytes:
        """Compact form for shipping to the merger."""
        nonzero = np.flatnonzero(self.lag_counts)
        return orjson.dumps(
            {
                "s": self.stats.to_bytes().hex(),
                "n": self.predictions,
                "l": [[int(i), int(self.lag_counts[i])] for i in nonzero],
                "t": [
                    # an overflowed sum (inf) as the largest float: JSON has no inf
                    [
                        int(i),
                        int(self.timeline_counts[i]),
                        min(float(self.timeline_errors[i]), _MAX),
                    ]
                    for i in np.flatnonzero(self.timeline_counts)
                ],
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes, model: ModelConfig) -> PerformanceAccumulator:
        """Inverse of :meth:`to_bytes`."""
        document = orjson.loads(data)
        lags = np.zeros(LAG_EDGES_S.size, dtype=np.int64)
        for index, count in document["l"]:
            lags[index] = count
        counts = np.zeros(TIMELINE_STEPS, dtype=np.int64)
        errors = np.zeros(TIMELINE_STEPS, dtype=np.float64)
        for index, count, error in document.get("t", []):  # none from an older worker
            counts[index], errors[index] = count, error
        return cls(
            stats_from_bytes(model, bytes.fromhex(document["s"])),
            int(document["n"]),
            lags,
            counts,
            errors,
        )


@dataclass(frozen=True)
class DriftPartial:
    """A closed drift window of one source partition.

    ``payload`` holds the sketches (None when the version has no reference
    profile); ``predictions`` the on-time predictions counted.
    """

    key: WindowKey
    payload: bytes | None
    predictions: int


@dataclass(frozen=True)
class PerformancePartial:
    """A performance window of one source partition, cumulative so far."""

    key: WindowKey
    payload: bytes
    final: bool


@dataclass
class WindowOutput:
    """What one batch of a partition hands to the merger."""

    drift: list[DriftPartial] = field(default_factory=list)
    performance: list[PerformancePartial] = field(default_factory=list)
    late: dict[WindowKey, int] = field(default_factory=dict)
    dead_letters: dict[WindowKey, int] = field(default_factory=dict)


_SEGMENT_KEYS_KEPT = 4096
"""Segment keys remembered per model (the combinations of values seen most recently)."""
_NO_TIME = -(2**63)
"""Before every event time: a model's watermark before its first prediction."""


def forgotten_after_us(model: ModelConfig) -> int:
    """How long after its start a window's late and dead-letter counts are kept.

    A window settles (its performance is final) once the watermark passes its
    end plus the label horizon. Predictions and refused messages of a settled
    window still count in its volume point for one more label horizon (at
    least one window plus the allowed lateness); then the window is forgotten
    by partitions and merger alike, and a prediction for it only counts in
    ``past_retention`` (a refused message in ``dead_letters_past_retention``).
    """
    size = duration_us(model.window.size)
    lateness = duration_us(model.window.allowed_lateness)
    horizon = duration_us(model.window.label_horizon)
    return size + horizon + max(horizon, size + lateness)


class _Windowing:
    """What a model's configuration says about its windows, in integer microseconds."""

    __slots__ = (
        "_segments",
        "behind_us",
        "closes_after_us",
        "forgotten_after_us",
        "horizon_us",
        "model",
        "segment_by",
        "settles_after_us",
        "size_us",
    )

    def __init__(self, model: ModelConfig) -> None:
        self.model = model
        self.size_us = duration_us(model.window.size)
        lateness_us = duration_us(model.window.allowed_lateness)
        self.closes_after_us = self.size_us + lateness_us
        self.horizon_us = duration_us(model.window.label_horizon)
        self.settles_after_us = self.size_us + self.horizon_us
        self.forgotten_after_us = forgotten_after_us(model)
        self.behind_us = duration_us(model.window.runs_behind)
        self.segment_by = tuple(model.segment_by or ())
        self._segments: dict[str | tuple[str | None, ...] | None, str] = {}

    def segment(self, segment: Mapping[str, str] | None) -> str:
        """``segment_key(segment, segment_by)``, remembered per combination of values."""
        values = segment or {}
        names = self.segment_by
        # None stands for a missing name (segment values are strings).
        combination = values.get(names[0]) if len(names) == 1 else tuple(map(values.get, names))
        key = self._segments.get(combination)
        if key is None:
            if len(self._segments) >= _SEGMENT_KEYS_KEPT:
                self._segments.clear()
            key = self._segments[combination] = segment_key(segment, names)
        return key


class PartitionWindows:
    """Drift and performance windows of one source partition.

    Parameters
    ----------
    config
        The monitor configuration (models, windows, segments).
    load_reference
        ``(model_id, version) -> ReferenceProfile | None``; without a reference
        a version still gets volume and performance, not drift.
    """

    def __init__(self, config: MonitorConfig, load_reference: ReferenceLoader) -> None:
        self.config = config
        self._load_reference = load_reference
        self._references: dict[tuple[str, str], ReferenceProfile] = {}
        self.drift: dict[WindowKey, DriftAccumulator] = {}
        self.predictions_by_window: dict[WindowKey, int] = defaultdict(int)
        self.performance: dict[WindowKey, PerformanceAccumulator] = {}
        self.watermark_us: int | None = None
        """The newest prediction time read, of any model (µs)."""
        self.own_us: dict[str, int] = {}
        """Per model, its newest prediction time read (µs), or later where a quiet
        partition moved it (:meth:`advance_quiet`)."""
        self.late: dict[WindowKey, int] = defaultdict(int)
        self.dead_letters: dict[WindowKey, int] = defaultdict(int)
        self._dirty: set[WindowKey] = set()
        self._windowing: dict[str, _Windowing] = {}
        self.join_watermarks_us: dict[str, int] = {}
        """Per model, the join's watermark at the last :meth:`collect`: windows it settled
        take no labels."""
        self.past_retention = 0
        """Predictions of windows already forgotten (counted nowhere else)."""
        self.dead_letters_past_retention = 0
        """Refused messages attributed to windows already forgotten (in the dead-letter topic)."""

    def reference(self, model_id: str, version: str) -> ReferenceProfile | None:
        """The reference profile of a model version (kept once found; the loader is asked
        again while it has none, and decides how often it looks)."""
        key = (model_id, version)
        reference = self._references.get(key)
        if reference is None:
            reference = self._load_reference(model_id, version)
            if reference is not None:
                self._references[key] = reference
        return reference

    def _model(self, model_id: str) -> ModelConfig:
        return self._windowing_of(model_id).model

    def _windowing_of(self, model_id: str) -> _Windowing:
        windowing = self._windowing.get(model_id)
        if windowing is None:
            model = self.config.model(model_id)
            if model is None:
                raise KeyError(f"model {model_id!r} is not configured")
            windowing = self._windowing[model_id] = _Windowing(model)
        return windowing

    def closes_at_us(self, model: ModelConfig, key: WindowKey) -> int:
        """Watermark at which a drift window closes."""
        size = duration_us(model.window.size)
        lateness = duration_us(model.window.allowed_lateness)
        return key.window_start_us + size + lateness

    @property
    def watermarks_us(self) -> dict[str, int]:
        """Each configured model's drift watermark (µs), once a prediction was read.

        The partition's newest prediction time, or for a model that
        ``runs_behind``, the later of its own newest and the partition's less
        that.
        """
        newest = self.watermark_us
        if newest is None:
            return {}
        return {model.id: self._watermark_of(model.id, newest) for model in self.config.models}

    def _watermark_of(self, model_id: str, newest: int) -> int:
        floor = newest - self._windowing_of(model_id).behind_us
        own = self.own_us.get(model_id, _NO_TIME)
        return own if own > floor else floor

    def advance_quiet(self, model_id: str, moment_us: int) -> bool:
        """Move a model's clock to ``moment_us`` as if a prediction of it stamped then
        had been read (``window.close_when_idle``): never back, and only once the
        partition has read a prediction. Returns whether it moved."""
        if self.watermark_us is None or moment_us <= self.own_us.get(model_id, _NO_TIME):
            return False
        self.own_us[model_id] = moment_us
        return True

    def is_closed(self, model: ModelConfig, key: WindowKey) -> bool:
        """Whether this partition's drift window has closed (by its model's watermark)."""
        newest = self.watermark_us
        return newest is not None and self._watermark_of(key.model_id, newest) >= self.closes_at_us(
            model, key
        )

    def add_predictions(
        self, events: Iterable[PredictionEvent], past_horizon: Container[int] | None = None
    ) -> None:
        """Count a batch of predictions into their windows.

        Every event belongs to the ``all`` window of its model, version and
        start and, with ``segment_by``, to its segment's window. Events of a
        closed window are counted as late; the others' features are read once
        per model version (:class:`FeatureColumns`) and each open window's
        sketches count its rows.

        ``past_horizon`` holds the positions of the events that came after
        their window's label horizon, as the join judged them event by event
        (``JoinState.add_predictions``): the performance windows count every
        other event. Without it, a late event counts there unless the join's
        watermark at the last :meth:`collect` had passed the horizon.
        """
        batch = events if isinstance(events, Sequence) else list(events)
        if not batch:
            return
        windowings = self._windowing
        rows_of: dict[tuple[str, str, str, int], list[int]] = {}
        late_of: dict[tuple[str, str, str, int], int] = {}
        # Events past their label horizon, per window, among the late ones and
        # among the others (each subtracted from its own count).
        late_unjoinable: dict[tuple[str, str, str, int], int] = {}
        open_unjoinable: dict[tuple[str, str, str, int], int] = {}
        past = past_horizon or None  # nothing to look up in the usual case
        # Lateness is judged event by event against the model's watermark as it
        # stood just before the event (from the newest times of the predictions
        # read before it, in offset order), so it does not depend on how the
        # messages were batched: a live run and a replay agree.
        top = _NO_TIME if self.watermark_us is None else self.watermark_us
        own_of = self.own_us
        for index, event in enumerate(batch):
            model_id = event.model_id
            windowing = windowings.get(model_id) or self._windowing_of(model_id)
            moment = event_us(event.timestamp)
            start = moment - moment % windowing.size_us
            own = own_of.get(model_id, _NO_TIME)
            watermark = top - windowing.behind_us
            if own > watermark:  # noqa: PLR1730 (cheaper than max() per event)
                watermark = own
            late = watermark >= start + windowing.closes_after_us
            if moment > own:
                own_of[model_id] = moment
            if moment > top:  # noqa: PLR1730
                top = moment
            version = event.model_version
            identities = [(model_id, version, ALL_SEGMENTS, start)]
            if windowing.segment_by:
                identities.append((model_id, version, windowing.segment(event.segment), start))
            if past is not None and index in past:
                unjoinable = late_unjoinable if late else open_unjoinable
                for identity in identities:
                    unjoinable[identity] = unjoinable.get(identity, 0) + 1
            for identity in identities:
                if late:
                    late_of[identity] = late_of.get(identity, 0) + 1
                    continue
                rows = rows_of.get(identity)
                if rows is None:
                    rows_of[identity] = [index]
                else:
                    rows.append(index)
        for identity, count in late_of.items():
            key = WindowKey(*identity)
            windowing = windowings[key.model_id]
            if self._passed(key, windowing.forgotten_after_us):
                if key.segment == ALL_SEGMENTS:
                    self.past_retention += count
                continue
            # Too late for drift; still predictions that labels may join, unless
            # the window's performance is already final.
            self.late[key] += count
            if past_horizon is not None:
                joinable = count - late_unjoinable.get(identity, 0)
            else:
                joinable = 0 if self._passed(key, windowing.settles_after_us) else count
            if joinable:
                self._count_for_performance(windowing.model, key, joinable)
        open_windows = [(WindowKey(*identity), rows) for identity, rows in rows_of.items()]
        columns: dict[tuple[str, str], tuple[FeatureColumns, NDArray[np.intp] | None]] = {}
        for key, rows in open_windows:
            self.predictions_by_window[key] += len(rows)
            joinable = len(rows) - open_unjoinable.get(key, 0)
            if joinable:
                self._count_for_performance(windowings[key.model_id].model, key, joinable)
            reference = self.reference(key.model_id, key.model_version)
            if reference is None:
                continue
            accumulator = self.drift.get(key)
            if accumulator is None:
                accumulator = self.drift[key] = DriftAccumulator.empty(reference)
            version = (key.model_id, key.model_version)
            if version not in columns:
                columns[version] = self._columns(reference, batch, version, open_windows)
            read, positions = columns[version]
            if len(rows) == read.size:  # every row read (order does not matter to sketches)
                accumulator.update_columns(read)
            else:
                selected = np.asarray(rows, dtype=np.intp)
                if positions is not None:
                    selected = np.searchsorted(positions, selected)
                accumulator.update_columns(read, selected)
        if top != _NO_TIME:
            self.watermark_us = top

    @staticmethod
    def _columns(
        reference: ReferenceProfile,
        batch: Sequence[PredictionEvent],
        version: tuple[str, str],
        open_windows: Sequence[tuple[WindowKey, list[int]]],
    ) -> tuple[FeatureColumns, NDArray[np.intp] | None]:
        """Columns of a version's events in open windows, and their positions in the batch.

        The ``all`` windows of a version hold each of its events once, so their
        rows are the version's rows; positions are None when that is the batch.
        """
        rows = [
            row
            for key, window_rows in open_windows
            if (key.model_id, key.model_version) == version and key.segment == ALL_SEGMENTS
            for row in window_rows
        ]
        if len(rows) == len(batch):
            return FeatureColumns(reference, batch), None
        positions = np.sort(np.asarray(rows, dtype=np.intp))
        return FeatureColumns(reference, [batch[row] for row in positions.tolist()]), positions

    def count_dead_letter(self, model_id: str, model_version: str, moment_us: int) -> None:
        """Count a refused message in the volume of its window (``all`` segment)."""
        if self.config.model(model_id) is None:
            return
        windowing = self._windowing_of(model_id)
        start = moment_us - moment_us % windowing.size_us
        key = WindowKey(model_id, model_version, ALL_SEGMENTS, start)
        if self._passed(key, windowing.forgotten_after_us):
            self.dead_letters_past_retention += 1
            return
        self.dead_letters[key] += 1
        self._dirty.add(key)
        if key not in self.performance and not self._passed(key, windowing.settles_after_us):
            self.performance[key] = PerformanceAccumulator(new_stats(windowing.model))

    def _passed(self, key: WindowKey, after_us: int) -> bool:
        """Whether the join's watermark of the window's model is strictly past ``after_us``
        from the window's start."""
        watermark = self.join_watermarks_us.get(key.model_id)
        return watermark is not None and watermark > key.window_start_us + after_us

    def _count_for_performance(self, model: ModelConfig, key: WindowKey, count: int) -> None:
        perf = self.performance.get(key)
        if perf is None:
            perf = self.performance[key] = PerformanceAccumulator(new_stats(model))
        perf.predictions += count
        self._dirty.add(key)

    def add_pairs(self, pairs: Iterable[JoinedPair]) -> None:
        """Add joined pairs to their performance windows."""
        windowings = self._windowing
        grouped: dict[tuple[str, str, str, int], list[JoinedPair]] = {}
        for pair in pairs:
            model_id = pair.model_id
            windowing = windowings.get(model_id) or self._windowing_of(model_id)
            identity = (model_id, pair.model_version, ALL_SEGMENTS, pair.window_start_us)
            group = grouped.get(identity)
            if group is None:
                grouped[identity] = [pair]
            else:
                group.append(pair)
            if windowing.segment_by:
                segment = windowing.segment(pair.segment)
                identity = (model_id, pair.model_version, segment, pair.window_start_us)
                group = grouped.get(identity)
                if group is None:
                    grouped[identity] = [pair]
                else:
                    group.append(pair)
        for identity, batch in grouped.items():
            key = WindowKey(*identity)
            model = windowings[key.model_id].model
            perf = self.performance.get(key)
            if perf is None:
                perf = self.performance[key] = PerformanceAccumulator(new_stats(model))
            perf.add_pairs(model, batch)
            self._dirty.add(key)

    def collect(self, join_watermarks_us: Mapping[str, int]) -> WindowOutput:
        """Close what the watermarks passed and hand out partials.

        Drift windows past their model's watermark leave the state as
        :class:`DriftPartial`; performance windows that changed since the last
        call (or whose horizon their model's join watermark passed, as final)
        are handed out cumulatively. ``join_watermarks_us``: the join's, per model.
        """
        output = WindowOutput()
        self.join_watermarks_us.update(join_watermarks_us)
        closed = [
            key
            for key in self.predictions_by_window
            if self.is_closed(self._model(key.model_id), key)
        ]
        for key in closed:
            predictions = self.predictions_by_window.pop(key)
            accumulator = self.drift.pop(key, None)
            payload = None if accumulator is None else accumulator.to_bytes()
            output.drift.append(DriftPartial(key, payload, predictions))
        if self.late:
            output.late = dict(self.late)
        if self.dead_letters:
            output.dead_letters = dict(self.dead_letters)
        for key in list(self.performance):
            final = self._passed(key, self._windowing_of(key.model_id).settles_after_us)
            if final or key in self._dirty:
                perf = self.performance[key]
                output.performance.append(PerformancePartial(key, perf.to_bytes(), final))
                if final:
                    self.performance.pop(key)
        # Counts stay cumulative after the window settled (a prediction may still
        # come late), until the window is forgotten; the merger forgets it then too.
        for counts in (self.late, self.dead_letters):
            for key in [
                k
                for k in counts
                if self._passed(k, self._windowing_of(k.model_id).forgotten_after_us)
            ]:
                del counts[key]
        self._dirty.clear()
        return output

    def snapshot(self) -> dict[str, Any]:
        """Checkpointable state (see :meth:`restore`)."""
        return {
            "watermark": self.watermark_us,
            "own": self.own_us,
            "marks": self.watermarks_us,
            "drift": [[key.encode(), acc.to_bytes().decode()] for key, acc in self.drift.items()],
            "counts": [[key.encode(), n] for key, n in self.predictions_by_window.items()],
            "perf": [
                [key.encode(), acc.to_bytes().decode()] for key, acc in self.performance.items()
            ],
            "late": [[key.encode(), n] for key, n in self.late.items()],
            "dead": [[key.encode(), n] for key, n in self.dead_letters.items()],
            "join_watermarks": self.join_watermarks_us,
            "past_retention": self.past_retention,
            "dead_letters_past_retention": self.dead_letters_past_retention,
        }

    def _per_model(
        self, document: Mapping[str, Any], name: str, partition_us: int | None
    ) -> dict[str, int]:
        """Times per configured model stored under ``name``, or ``partition_us`` for
        every configured model when the checkpoint has none (written before)."""
        if name in document:
            stored: Mapping[str, Any] = document[name]
            return {m: int(t) for m, t in stored.items() if self.config.model(m) is not None}
        if partition_us is None:
            return {}
        return {model.id: int(partition_us) for model in self.config.models}

    def restore(self, document: Mapping[str, Any]) -> None:
        """Load what :meth:`snapshot` wrote.

        Windows of a model no longer in the configuration are dropped, with a
        warning: a retired model must not stop its partitions from starting.
        """
        dropped: set[str] = set()

        def kept(items: Iterable[Sequence[Any]]) -> Iterator[tuple[WindowKey, Any]]:
            for raw_key, value in items:
                key = WindowKey.decode(raw_key)
                if self.config.model(key.model_id) is None:
                    dropped.add(key.model_id)
                else:
                    yield key, value

        self.watermark_us = document["watermark"]
        # Per model, of the configured ones; a checkpoint from before they were
        # kept per model has the partition's, and every model resumes from it.
        self.own_us = self._per_model(document, "own", self.watermark_us)
        now = self.watermarks_us
        for model_id, mark in document.get("marks", {}).items():
            # a floor: the watermark sent before the checkpoint (runs_behind may have changed)
            if model_id in now and int(mark) > now[model_id]:
                self.own_us[model_id] = max(self.own_us.get(model_id, _NO_TIME), int(mark))
        self.drift = {}
        for key, payload in kept(document["drift"]):
            reference = self.reference(key.model_id, key.model_version)
            if reference is not None:
                self.drift[key] = DriftAccumulator.from_bytes(payload.encode(), reference)
        self.predictions_by_window = defaultdict(
            int, {key: int(n) for key, n in kept(document["counts"])}
        )
        self.performance = {
            key: PerformanceAccumulator.from_bytes(payload.encode(), self._model(key.model_id))
            for key, payload in kept(document["perf"])
        }
        self.late = defaultdict(int, {key: int(n) for key, n in kept(document["late"])})
        self.dead_letters = defaultdict(
            int, {key: int(n) for key, n in kept(document.get("dead", []))}
        )
        if dropped:
            log.warning(
                "windows of model(s) %s dropped from the checkpoint: not in the configuration",
                ", ".join(sorted(map(repr, dropped))),
            )
        self.join_watermarks_us = self._per_model(
            document, "join_watermarks", document.get("join_watermark")
        )
        self.past_retention = int(document.get("past_retention", 0))
        self.dead_letters_past_retention = int(document.get("dead_letters_past_retention", 0))
