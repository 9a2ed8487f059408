"""The partition-local late-label join: predictions ⋈ labels by ``prediction_id``.

Predictions and labels are co-partitioned by ``prediction_id``, so partition
*p* of both topics feeds one :class:`JoinState`.  The worker hands it one
decoded batch at a time, with the Kafka offsets of the events; the state
returns the pairs that batch completed and keeps everything else in a compact
form until it expires into a counter.  Pure computation: no Kafka, no asyncio,
no clock.

Notes
-----
**Event time.**  Times are integer microseconds since the UTC epoch, so window
arithmetic and checkpoints are exact.  A prediction belongs to the tumbling
window ``window_start = floor(t / window_size) * window_size`` (epoch aligned).

**Watermark.**  One watermark per partition, from the newest event time seen
on each topic (``prediction_max`` and ``label_max``)::

    watermark = max(min(prediction_max, label_max), max(prediction_max, label_max) − max_skew)

advanced event by event and never moved back.  A model's watermark is the
partition's, unless its policy lets it run behind the others
(``runs_behind_s``: a slow clock, a batch uploader, a backfill replayed while
other models are live): then the later of the partition's less that and the
same rule over the model's own events, so within that gap its predictions
are joined and expired by its own times.  A model with ``close_when_idle``
also has its own times moved by the wall clock when the partition is quiet
(:meth:`JoinState.advance_quiet`).  With both topics flowing (their
newest times less than ``max_skew_s`` apart) it is the older of the two
topics' newest times: when the worker reads one topic far
ahead of the other (catching up a backlog, or a labels topic whose times run
ahead of the predictions), the topic read ahead cannot expire entries the
slower topic still has to match.  When one topic is idle or not seen yet (a
model whose labels never come, a quiet hour of predictions, the start of a
run), the watermark trails the other topic by ``max_skew_s`` (one day by
default), so memory stays bounded while either topic flows.  The price: if
one topic is read more than ``max_skew_s`` ahead of the other, the watermark
follows the fast topic minus ``max_skew_s`` and can expire entries the slow
topic has not delivered yet; keep ``max_skew_s`` above the consumption skew
you expect.  The watermark never uses wall-clock time, so a replay gives the
same result; a far-future timestamp would move it at once to that time minus
``max_skew_s`` and expire everything, so the caller must refuse events
implausibly far ahead of the clock (dead letter) before they get here.

**Order of work.**  For every event, in order: skip it if its offset was
already applied; if its time is the newest of its topic, record it and
recompute the watermark; then apply it to what is still held, where an entry
is held while its deadline (a prediction's horizon, an orphan's TTL) is not
before the watermark.  The outcome is a function of the sequence of events
alone, whatever the batch boundaries.  Entries whose deadline the watermark
passed are dropped into their counters in bulk at the end of the batch.

**Horizon.**  A prediction can be joined while the watermark is at most
``window_end + label_horizon``; once the watermark is strictly later, the
prediction expires into ``unlabelled`` (per model and version).  The horizon
is judged by the watermark, not by a label's own time: a label stamped past
the horizon still joins while the watermark has not passed it (while the
predictions topic has not passed it and the labels topic is at most
``max_skew_s`` beyond it), and finds its prediction expired, waiting as an
orphan, once it has.  Performance windows close on the same watermark
(:mod:`streams.windows`), so such a pair still lands in an open window.  A
prediction that arrives when its horizon has already passed counts as
``unlabelled`` at once and is not joined.

**Orphan TTL.**  A label that arrives before its prediction waits as an orphan
until the watermark is strictly later than ``max(watermark at its arrival,
its own time) + orphan_label_ttl``; then it counts in ``orphan_labels``.
Counting from the watermark gives a label with an oddly old timestamp its full
TTL of event-time progress; counting from the label's own time keeps a label
from expiring early when it arrives while the watermark is still far behind
(at the start, or while the predictions topic is read behind the labels).

**Duplicates.**  Ids are scoped by ``model_id``.  A prediction whose id is
pending or joined counts in ``duplicate_predictions`` and is ignored.  A label
for a joined prediction, or a second label for an orphan, counts in
``duplicate_labels`` and is ignored: the first label wins.  Joined ids are kept
until the watermark passes their window's horizon; a duplicate arriving after that is no
longer recognised: a label becomes an orphan, a prediction with the same
timestamp is past its horizon and counts as ``unlabelled``.

**Label lag.**  ``label_lag_s = label time − prediction time``; negative when a
label source stamps a label before the prediction (clock skew).  The pair
keeps the sign; the windows' lag histogram counts such a lag in its first
bin (10 ms).

**Conservation.**  Summing the counters over all keys, at any time:
``predictions = duplicate_predictions + joined + unlabelled + pending_count``
and ``labels = duplicate_labels + joined + orphan_labels + orphan_count``.

**Storage.**  The join holds no id strings.  Each model keeps a 64-bit hash
of every held ``prediction_id`` with a 32-bit tag, in a few sorted numpy
arrays of growing size (:class:`_Keys`: a batch is found with one binary
search per array, new keys are merged into the smallest; 12 bytes a key, no
hash table, no spare room), and the fields of
pending predictions and orphan labels in numpy columns: a pending
prediction's window and profile as codes one byte wide (wider only while a
model holds more than 127 windows or profiles) and its time as µs from its
window's start (4 bytes for windows up to 71 minutes, 5 up to 6.3 days), orphans'
times as int64 µs, class scores as float64 (a binary model's only the
positive class's: ``JoinPolicy.score_kept``), numeric predictions and labels
as float64 with a small-int kind code, and version, segment, score class
names and categorical predictions interned per model as one *profile* code.
A pending prediction of a binary model with a one-hour window takes 14 bytes
besides its key.  Measured with tracemalloc (``python -m
benchmarks.join_memory``: two-day windows, two class scores, spare capacity
of the columns included): 25.5 bytes per id with half of them labelled (27
with 8-byte times, 30 with 4-byte codes, 36 with the hash table before the
sorted arrays, 235–250 when ids were held as strings).  A batch is looked
up with a few array operations, applied event by event in Python over that
snapshot, and written back with array operations.

**Hash collisions.**  Two different ids of one model collide with probability
2⁻⁶⁴ per pair, so with *n* ids held at once the chance that any two of them
share a hash is about n² / 2⁶⁵: 3·10⁻⁸ for a million held ids; for 10¹¹ ids
passing through a state that holds a million (years of traffic on one
partition), about 0.5 % that one of them meets a held id's hash.  A
collision cannot corrupt the state or raise: the second id behaves as a
repeat of the first, so it shows in the counters as a duplicate
(``duplicate_predictions``, ``duplicate_labels``), or its label joins the
first id's prediction.  The hash (:func:`prediction_id_hash`) is fixed (not
salted per process), so checkpoints stay valid across restarts and machines.
"""

from __future__ import annotations

import heapq
import math
import struct
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from itertools import chain
from operator import attrgetter
from types import MappingProxyType
from typing import Any, NamedTuple, cast

import numpy as np
import orjson
from numpy.typing import NDArray

from schemas.config import ModelConfig, WindowConfig
from schemas.events import Label, LabelEvent, PredictionEvent

DEFAULT_PREDICTIONS_TOPIC = "driftline.predictions"
DEFAULT_LABELS_TOPIC = "driftline.labels"

CHECKPOINT_MAGIC = b"DLJN"
"""First bytes of a join checkpoint."""

CHECKPOINT_VERSION = 2
"""Format version written by :meth:`JoinState.to_bytes` (the byte after the magic).

Version 1 (zlib-compressed JSON with the id strings) is still read.
"""

CounterKey = tuple[str, str | None]
"""``(model_id, model_version)``; the version is None for counters of label events."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)
_US_PER_S = 1_000_000
_NO_WATERMARK = -(2**63)
_NOTHING_DUE = 2**63
_INTERN_LIMIT = 4096
_INT64 = range(-(2**63), 2**63)
_ZLIB_LEVEL = 1

# What a key refers to.  The first three are stored in an entry's tag as
# ``(ref << 2) | kind``; the last three exist only while a batch is applied.
_PENDING = 0  # ref: row of the pending store
_JOINED = 1  # ref: window code
_ORPHAN = 2  # ref: row of the orphan store
_ABSENT = 3
_NEW_PENDING = 4  # a pending prediction of the batch, not stored yet
_NEW_ORPHAN = 5  # an orphan label of the batch, not stored yet
_NEVER = -(2**63)  # the deadline of an absent key: never held
# Stored fields a batch reads on demand (:class:`_Found`): name → column of each store.
_PENDING_DETAIL = {
    "time": "time",
    "window": "window",
    "profile": "profile",
    "value": "pred",
    "scores": "scores",
}
_ORPHAN_DETAIL = {"time": "time", "value": "label", "code": "code"}
_MAX_ROWS = 2**29 - 1  # a row number must fit a tag (int32)
_TIME_LOW = 2**32 - 1  # a pending time's low bits (µs from its window's start)

# How a profile holds its prediction: the value itself, or a kind of the float column.
_INTERNED = 0
_FLOAT = 1
_INT = 2
_EXACT_INT = range(-(2**53), 2**53 + 1)  # integers a float64 holds exactly

# Label codes in the orphan store: ≥ 0 is a row of the model's value table.
_LABEL_FLOAT = -1
_LABEL_INT = -2

_MASK64 = (1 << 64) - 1
_HASH_SEED = 0x243F6A8885A308D3
_HASH_LENGTH = 0x9E3779B97F4A7C15
_HASH_WORD = 0xBF58476D1CE4E5B9
_FMIX_1 = 0xFF51AFD7ED558CCD
_FMIX_2 = 0xC4CEB9FE1A85EC53

# The levels of held keys (:class:`_Keys`): level 0 holds up to _LEVEL_BASE keys,
# each next one _LEVEL_GROWTH times more.
_LEVEL_BASE = 4096
_LEVEL_GROWTH = 8
_LEVEL_SHIFT = 40  # a handle is ``level << _LEVEL_SHIFT | position``
_POSITION_MASK = (1 << _LEVEL_SHIFT) - 1
_NO_KEYS: NDArray[np.uint64] = np.empty(0, np.uint64)
_NO_TAGS: NDArray[np.int32] = np.empty(0, np.int32)
_NO_KEYS.flags.writeable = False
_NO_TAGS.flags.writeable = False


class JoinError(ValueError):
    """A join was given input it cannot apply (bad policy, batch or model)."""


class UnknownModelError(JoinError):
    """An event names a model the join has no policy for."""


class CheckpointError(JoinError):
    """A checkpoint is not one this version of driftline can read."""


def _to_us(seconds: float) -> int:
    return round(seconds * _US_PER_S)


def event_us(moment: datetime) -> int:
    """An aware datetime as integer microseconds since the epoch, exactly.

    ``int(moment.timestamp() * 1e6)`` goes through a float and is a
    microsecond short for some times from 2038 on; every part of the worker
    that turns an event time into microseconds uses this instead.
    """
    return (moment - _EPOCH) // _ONE_US


_model_id_of = attrgetter("model_id")
_prediction_id_of = attrgetter("prediction_id")


def score_under(scores: Mapping[str, float], key: str, aliases: Sequence[str] = ()) -> float | None:
    """The score under ``key``, else under the first of ``aliases`` present; None if none.

    Examples
    --------
    >>> score_under({"false": 0.2, "true": 0.8}, "1", ("true", "True"))
    0.8
    """
    score = scores.get(key)
    if score is None:
        score = next((scores[alias] for alias in aliases if alias in scores), None)
    return score


def duration_us(duration: timedelta) -> int:
    """A configured duration in integer microseconds, exactly (a timedelta counts them).

    ``int(duration.total_seconds() * 1e6)`` goes through a float and loses a
    microsecond for sizes such as ``4.1s``; the join's policy, in float
    seconds, rounds to the same integer (:func:`_to_us`).
    """
    return duration // _ONE_US


def _from_us(microseconds: int) -> datetime:
    return _EPOCH + timedelta(microseconds=microseconds)


# ------------------------------------------------------------------------ hashing


def prediction_id_hash(prediction_id: str) -> int:
    """The 64-bit key under which the join holds a prediction id.

    The UTF-8 bytes, zero-padded to whole 64-bit little-endian words, go
    through ``h = (h ^ word) · K; h ^= h >> 32`` from a seed mixed with the
    length in characters, then the MurmurHash3 finaliser.  Each step is a
    bijection of ``h``, so ids that differ in one word never collide; for
    others a collision has probability about 2⁻⁶⁴.  :func:`_prediction_id_hashes`
    computes the same function on a whole batch with numpy.

    Examples
    --------
    >>> hex(prediction_id_hash("p-1"))
    '0x389d5dc220f1ebe'
    >>> batch = _prediction_id_hashes(["p-1", "a-longer-id", "ünïcödé"])
    >>> [prediction_id_hash(i) for i in ("p-1", "a-longer-id", "ünïcödé")] == batch.tolist()
    True
    """
    data = prediction_id.encode()
    size = -(-len(data) // 8) * 8 or 8
    key = _HASH_SEED ^ ((len(prediction_id) * _HASH_LENGTH) & _MASK64)
    for (word,) in struct.iter_unpack("<Q", data.ljust(size, b"\0")):
        key = ((key ^ word) * _HASH_WORD) & _MASK64
        key ^= key >> 32
    key ^= key >> 33
    key = (key * _FMIX_1) & _MASK64
    key ^= key >> 33
    key = (key * _FMIX_2) & _MASK64
    return key ^ (key >> 33)


def _prediction_id_hashes(prediction_ids: Sequence[str]) -> NDArray[np.uint64]:
    """:func:`prediction_id_hash` of every id, vectorised over the batch."""
    count = len(prediction_ids)
    if not count:
        return np.empty(0, np.uint64)
    lengths = np.fromiter(map(len, prediction_ids), np.int64, count)
    sizes = lengths  # in bytes: the same for ASCII
    longest = int(lengths.max())
    width = -(-longest // 8) * 8 or 8
    text = "".join(prediction_ids).encode()
    try:
        # ASCII ids all of one length (UUIDs, say): as many bytes as characters.
        if len(text) == count * longest and int(lengths.min()) == longest:
            raw = np.zeros((count, width), np.uint8)
            raw[:, :longest] = np.frombuffer(text, np.uint8).reshape(count, longest)
        else:
            raw = np.array(prediction_ids, dtype=f"S{width}")
    except UnicodeEncodeError:
        encoded = [prediction_id.encode() for prediction_id in prediction_ids]
        sizes = np.fromiter(map(len, encoded), np.int64, count)
        width = -(-int(sizes.max()) // 8) * 8 or 8
        raw = np.array(encoded, dtype=f"S{width}")
    words = raw.view("<u8").reshape(count, width // 8)
    word_counts = np.maximum(-(-sizes // 8), 1)
    keys = lengths.astype(np.uint64) * np.uint64(_HASH_LENGTH)
    keys ^= np.uint64(_HASH_SEED)
    shift = np.uint64(32)
    uniform = bool((word_counts == words.shape[1]).all())
    for at, column in enumerate(words.T):
        mixed = (keys ^ column) * np.uint64(_HASH_WORD)
        mixed ^= mixed >> shift
        # Only an id's own words: padding a shorter id to the batch's width would change it.
        keys = mixed if uniform else np.where(word_counts > at, mixed, keys)
    shift = np.uint64(33)
    keys ^= keys >> shift
    keys *= np.uint64(_FMIX_1)
    keys ^= keys >> shift
    keys *= np.uint64(_FMIX_2)
    keys ^= keys >> shift
    return keys


# ------------------------------------------------------------------- public types


@dataclass(frozen=True)
class JoinPolicy:
    """How long one model's predictions and early labels wait to be joined.

    Parameters
    ----------
    window_size_s
        Tumbling window length in seconds, > 0.
    label_horizon_s
        Seconds after a window's end during which its predictions can still
        be joined, ≥ 0.
    orphan_label_ttl_s
        Seconds a label that arrived before its prediction is kept, ≥ 0:
        until the watermark is past the later of the watermark at its
        arrival and its own time, plus this.
    score_kept
        A class name: of each prediction's ``scores`` only this class's
        score is kept (a binary model's positive class, the only score its
        metrics read; a pending prediction with two class scores then takes
        8 bytes less), and the pairs carry only it, under this name. None
        keeps every score.
    score_aliases
        Other names the kept class's score may come under, tried in order
        when ``score_kept`` is not among a prediction's scores (``"true"``
        for ``"1"``: ``ModelConfig.positive_score_keys``).
    runs_behind_s
        How far the model's event times may run behind the partition's
        newest (other models' on the same topics), ≥ 0: its watermark is the
        later of the partition's less this and the one over its own events.
        0: the partition's.

    Examples
    --------
    >>> policy = JoinPolicy.from_window_config(WindowConfig(size="15m", label_horizon="2d"))
    >>> policy.window_size_s, policy.label_horizon_s, policy.orphan_label_ttl_s, policy.score_kept
    (900.0, 172800.0, 86400.0, None)
    """

    window_size_s: float
    label_horizon_s: float
    orphan_label_ttl_s: float
    score_kept: str | None = None
    score_aliases: tuple[str, ...] = ()
    runs_behind_s: float = 0.0

    def __post_init__(self) -> None:
        checks = (
            ("window_size_s", self.window_size_s, 1e-6, "≥ 1e-6 (one microsecond)"),
            ("label_horizon_s", self.label_horizon_s, 0.0, "≥ 0"),
            ("orphan_label_ttl_s", self.orphan_label_ttl_s, 0.0, "≥ 0"),
            ("runs_behind_s", self.runs_behind_s, 0.0, "≥ 0"),
        )
        for name, value, low, valid in checks:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise JoinError(f"{name} must be a number of seconds, not {value!r}")
            if not (math.isfinite(value) and value >= low):
                raise JoinError(f"{name} must be finite and {valid}, not {value!r}")
        if self.score_kept is not None and not isinstance(self.score_kept, str):
            raise JoinError(f"score_kept must be a class name or None, not {self.score_kept!r}")
        if not all(isinstance(alias, str) for alias in self.score_aliases) or (
            self.score_aliases and self.score_kept is None
        ):
            raise JoinError(
                f"score_aliases must be class names beside a score_kept, not {self.score_aliases!r}"
            )

    @classmethod
    def from_window_config(
        cls,
        window: WindowConfig,
        score_kept: str | None = None,
        score_aliases: tuple[str, ...] = (),
    ) -> JoinPolicy:
        """The policy of a model's ``window`` section of the configuration."""
        return cls(
            window_size_s=window.size.total_seconds(),
            label_horizon_s=window.label_horizon.total_seconds(),
            orphan_label_ttl_s=window.orphan_label_ttl.total_seconds(),
            score_kept=score_kept,
            score_aliases=score_aliases,
            runs_behind_s=window.runs_behind.total_seconds(),
        )

    @classmethod
    def from_model(cls, model: ModelConfig) -> JoinPolicy:
        """The policy of a configured model: its windows, and for a binary model only
        the positive class's score (the only score its metrics read)."""
        if model.task != "binary":
            return cls.from_window_config(model.window)
        kept, *aliases = model.positive_score_keys
        return cls.from_window_config(model.window, kept, tuple(aliases))


@dataclass(frozen=True, slots=True)
class JoinedPair:
    """A prediction with its label: what performance metrics are computed from.

    Attributes
    ----------
    prediction_id, model_id, model_version
        Identity of the prediction.
    segment
        The prediction's segment as sent (read-only, shared between pairs of
        the same segment), or None; :func:`schemas.outputs.segment_key` turns
        it into a window key.
    prediction, scores
        What the model predicted, and its class probabilities or None (only
        the kept class's when the policy keeps one: ``JoinPolicy.score_kept``).
    prediction_time_us, label_time_us, window_start_us
        Event times in integer microseconds since the UTC epoch; the
        ``prediction_time``, ``label_time`` and ``window_start`` properties
        give them as datetimes.
    label
        The ground truth.
    label_lag_s
        ``label_time − prediction_time`` in seconds; negative when the label
        is stamped before the prediction.
    """

    prediction_id: str
    model_id: str
    model_version: str
    segment: Mapping[str, str] | None
    prediction: Label
    scores: dict[str, float] | None
    prediction_time_us: int
    label: Label
    label_time_us: int
    window_start_us: int
    label_lag_s: float

    @property
    def prediction_time(self) -> datetime:
        """Event time of the prediction (UTC)."""
        return _from_us(self.prediction_time_us)

    @property
    def label_time(self) -> datetime:
        """When the label became known (UTC)."""
        return _from_us(self.label_time_us)

    @property
    def window_start(self) -> datetime:
        """Start of the prediction's window (UTC)."""
        return _from_us(self.window_start_us)


# Setting the slots of a new JoinedPair directly costs half of its frozen __init__
# (object.__setattr__ per field): one pair per join, in the per-event loops.
_new_object = object.__new__
(
    _set_prediction_id,
    _set_model_id,
    _set_model_version,
    _set_segment,
    _set_prediction,
    _set_scores,
    _set_prediction_time_us,
    _set_label,
    _set_label_time_us,
    _set_window_start_us,
    _set_label_lag_s,
) = (getattr(JoinedPair, field.name).__set__ for field in fields(JoinedPair))


def _new_pair(
    prediction_id: str,
    model_id: str,
    model_version: str,
    segment: Mapping[str, str] | None,
    prediction: Label,
    scores: dict[str, float] | None,
    prediction_time_us: int,
    label: Label,
    label_time_us: int,
    window_start_us: int,
    label_lag_s: float,
) -> JoinedPair:
    """``JoinedPair(...)`` with the same arguments, built faster."""
    pair: JoinedPair = _new_object(JoinedPair)
    _set_prediction_id(pair, prediction_id)
    _set_model_id(pair, model_id)
    _set_model_version(pair, model_version)
    _set_segment(pair, segment)
    _set_prediction(pair, prediction)
    _set_scores(pair, scores)
    _set_prediction_time_us(pair, prediction_time_us)
    _set_label(pair, label)
    _set_label_time_us(pair, label_time_us)
    _set_window_start_us(pair, window_start_us)
    _set_label_lag_s(pair, label_lag_s)
    return pair


@dataclass(frozen=True)
class JoinCounters:
    """What the join did, for one counter key; add snapshots to merge partitions.

    Prediction-side counts (``predictions``, ``joined``,
    ``duplicate_predictions``, ``unlabelled``) are keyed by model and version;
    label-side counts (``labels``, ``duplicate_labels``, ``orphan_labels``) by
    model with version None, since a label carries no version.
    ``replayed_skipped`` counts events of either kind skipped because their
    offset had already been applied, under the key of the event.

    Examples
    --------
    >>> JoinCounters(predictions=2, joined=1) + JoinCounters(predictions=1)
    JoinCounters(predictions=3, labels=0, joined=1, duplicate_predictions=0, \
duplicate_labels=0, unlabelled=0, orphan_labels=0, replayed_skipped=0)
    """

    predictions: int = 0
    labels: int = 0
    joined: int = 0
    duplicate_predictions: int = 0
    duplicate_labels: int = 0
    unlabelled: int = 0
    orphan_labels: int = 0
    replayed_skipped: int = 0

    def __add__(self, other: JoinCounters) -> JoinCounters:
        return JoinCounters(
            *(getattr(self, f.name) + getattr(other, f.name) for f in fields(JoinCounters))
        )


_COUNTER_NAMES = tuple(f.name for f in fields(JoinCounters))


@dataclass(slots=True)
class _Counts:
    """Mutable twin of :class:`JoinCounters` (kept apart so snapshots stay frozen)."""

    predictions: int = 0
    labels: int = 0
    joined: int = 0
    duplicate_predictions: int = 0
    duplicate_labels: int = 0
    unlabelled: int = 0
    orphan_labels: int = 0
    replayed_skipped: int = 0

    @classmethod
    def restore(cls, values: Sequence[int]) -> _Counts:
        if len(values) != len(_COUNTER_NAMES):
            raise CheckpointError(
                f"a counter row has {len(values)} values, expected {len(_COUNTER_NAMES)}"
            )
        return cls(*(int(value) for value in values))

    def values(self) -> list[int]:
        return [getattr(self, name) for name in _COUNTER_NAMES]


# ------------------------------------------------------------------------ storage


class _Rows:
    """Numpy columns of equal length; released rows are reused before the columns grow.

    ``marker`` names an integer column that is −1 on released rows.  Columns
    grow by a quarter at a time, so at most a fifth of their memory is slack.
    """

    __slots__ = ("columns", "free", "marker", "n_free", "size")

    def __init__(self, marker: str, spec: Mapping[str, type[np.generic]]) -> None:
        self.columns: dict[str, NDArray[Any]] = {
            name: np.empty(0, dtype) for name, dtype in spec.items()
        }
        self.marker = marker
        self.size = 0  # rows handed out so far, live or released
        self.free: NDArray[np.int32] = np.empty(0, np.int32)
        self.n_free = 0

    def __getitem__(self, name: str) -> NDArray[Any]:
        return self.columns[name]

    @property
    def live(self) -> int:
        """Rows in use."""
        return self.size - self.n_free

    @property
    def mostly_free(self) -> bool:
        """Whether compacting pays: most rows released, or all of them."""
        return self.n_free > max(4096, 2 * self.live) or (self.n_free > 64 and not self.live)

    def allocate(self, count: int) -> NDArray[np.int64]:
        """``count`` rows to write, released ones first."""
        reused = min(count, self.n_free)
        rows = self.free[self.n_free - reused : self.n_free].astype(np.int64)
        self.n_free -= reused
        fresh = count - reused
        if fresh:
            start = self.size
            if start + fresh > _MAX_ROWS:
                raise JoinError(
                    f"the join state of one model would hold more than {_MAX_ROWS} entries"
                )
            self._reserve(start + fresh)
            self.size = start + fresh
            rows = np.concatenate((rows, np.arange(start, start + fresh)))
        return rows

    def release(self, rows: NDArray[np.int64]) -> None:
        """Mark rows unused; :meth:`allocate` hands them out again."""
        if not rows.size:
            return
        self.columns[self.marker][rows] = -1
        end = self.n_free + rows.size
        if end > self.free.size:
            grown = np.empty(max(end, self.free.size * 5 // 4 + 64), np.int32)
            grown[: self.n_free] = self.free[: self.n_free]
            self.free = grown
        self.free[self.n_free : end] = rows
        self.n_free = end

    def _reserve(self, rows: int) -> None:
        capacity = len(self.columns[self.marker])
        if rows <= capacity:
            return
        capacity = max(rows, capacity * 5 // 4, 64)
        for name, column in self.columns.items():
            grown = np.empty((capacity, *column.shape[1:]), column.dtype)
            grown[: self.size] = column[: self.size]
            self.columns[name] = grown

    def fit(self, name: str, largest: int, smallest: int = 0) -> None:
        """Widen an integer column, if need be, to hold values from ``smallest`` to ``largest``.

        Code columns start as int8 and take int16, then int32, only when a
        model has that many windows or profiles at once; so does the high
        part of a pending time beyond 32 bits of µs (windows past 71 minutes).
        """
        column = self.columns[name]
        info = np.iinfo(column.dtype)
        if info.min <= smallest and largest <= info.max:
            return
        # The new type holds what the column held as well as the new values.
        low, high = min(smallest, int(info.min)), max(largest, int(info.max))
        dtype = next(
            t
            for t in (np.int16, np.int32, np.int64)
            if np.iinfo(t).min <= low and high <= np.iinfo(t).max
        )
        self.columns[name] = column.astype(dtype)

    def add_column(self, name: str, column: NDArray[Any]) -> None:
        """Add (or replace) a column; ``column`` covers the rows handed out so far."""
        capacity = len(self.columns[self.marker])
        full = np.empty((capacity, *column.shape[1:]), column.dtype)
        full[: self.size] = column[: self.size]
        self.columns[name] = full

    def compact(self) -> NDArray[np.int64]:
        """Drop released rows and shrink; returns old row → new row (−1 if dropped)."""
        keep = self.columns[self.marker][: self.size] >= 0
        live = int(np.count_nonzero(keep))
        remap = np.full(self.size, -1, np.int64)
        remap[keep] = np.arange(live)
        capacity = max(64, live * 5 // 4)
        for name, column in self.columns.items():
            packed = np.empty((capacity, *column.shape[1:]), column.dtype)
            packed[:live] = column[: self.size][keep]
            self.columns[name] = packed
        self.size = live
        self.free = np.empty(0, np.int32)
        self.n_free = 0
        return remap


class _Keys:
    """Held keys with an int32 tag each, in sorted levels: no hash table, no spare room.

    Level *i* holds at most ``_LEVEL_BASE · _LEVEL_GROWTH**i`` keys in
    ascending order with their tags alongside (12 bytes a key).  New keys are
    merged into level 0; a level grown past its size is merged into the next
    one, so a key is rewritten a few times in its life and a batch is looked
    up with one binary search per level.  A removed key keeps its place with
    the tag −1 (a hole) until its level is merged or a quarter of the level
    is holes.  A live key is in one level only; a key removed and added again
    may also be a hole elsewhere.

    A *handle* (``level << 40 | position``) names a held key until the next
    :meth:`insert` or :meth:`remove` moves it.
    """

    __slots__ = ("holes", "keys", "live", "tags")

    def __init__(self) -> None:
        self.keys: list[NDArray[np.uint64]] = []
        self.tags: list[NDArray[np.int32]] = []
        self.holes: list[int] = []
        self.live = 0

    def find(self, keys: NDArray[np.uint64]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """The handle and tag of each key; −1 and −1 where it is not held."""
        handles = np.full(keys.size, -1, np.int64)
        tags = np.full(keys.size, -1, np.int64)
        if not self.live:
            return handles, tags
        # Searched in ascending order, each key's search starts where the last
        # one ended: about three times faster than in the batch's order.
        order = np.argsort(keys)
        ordered = keys[order]
        for level, (held, held_tags) in enumerate(zip(self.keys, self.tags, strict=True)):
            if not held.size:
                continue
            at = np.searchsorted(held, ordered)
            np.minimum(at, held.size - 1, out=at)
            tag = held_tags[at]
            hit = np.flatnonzero((held[at] == ordered) & (tag >= 0))
            handles[order[hit]] = (level << _LEVEL_SHIFT) | at[hit]
            tags[order[hit]] = tag[hit]
        return handles, tags

    def find_one(self, key: int) -> int:
        """The tag of one key, −1 if it is not held."""
        _, tags = self.find(np.asarray([key], np.uint64))
        return int(tags[0])

    def set_tags(self, handles: NDArray[np.int64], tags: NDArray[np.int64]) -> None:
        """Replace the tags of held keys."""
        levels = handles >> _LEVEL_SHIFT
        for level in np.unique(levels).tolist():
            mine = levels == level
            self.tags[level][handles[mine] & _POSITION_MASK] = tags[mine]

    def remove(self, handles: NDArray[np.int64]) -> None:
        """Stop holding the keys of ``handles`` (distinct, held)."""
        levels = handles >> _LEVEL_SHIFT
        for level in np.unique(levels).tolist():
            positions = handles[levels == level] & _POSITION_MASK
            self.tags[level][positions] = -1
            self.holes[level] += positions.size
            self.live -= positions.size
            if self.holes[level] * 4 > self.keys[level].size:
                self.keys[level], self.tags[level] = self._packed(level)
                self.holes[level] = 0

    def insert(self, keys: NDArray[np.uint64], tags: NDArray[np.int64]) -> None:
        """Hold new keys (distinct, none of them held) with their tags."""
        if not keys.size:
            return
        order = np.argsort(keys)
        keys, new_tags = keys[order], tags[order].astype(np.int32)
        self.live += keys.size
        level = 0
        while True:
            if level == len(self.keys):
                self.keys.append(keys)
                self.tags.append(new_tags)
                self.holes.append(0)
                return
            held, held_tags = self._packed(level)
            keys, new_tags = _merge_sorted(held, held_tags, keys, new_tags)
            if keys.size <= _LEVEL_BASE * _LEVEL_GROWTH**level:
                self.keys[level], self.tags[level], self.holes[level] = keys, new_tags, 0
                return
            self.keys[level], self.tags[level], self.holes[level] = _NO_KEYS, _NO_TAGS, 0
            level += 1

    def items(self) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """Handles and tags of every held key (holes included, with tag −1), level by level."""
        if not self.keys:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        handles = np.concatenate(
            [(level << _LEVEL_SHIFT) + np.arange(held.size) for level, held in enumerate(self.keys)]
        )
        return handles, np.concatenate(self.tags).astype(np.int64)

    def sorted_items(self) -> tuple[NDArray[np.uint64], NDArray[np.int64]]:
        """Every held key in ascending order, with its tag."""
        keys = np.concatenate([_NO_KEYS, *self.keys])
        tags = np.concatenate([_NO_TAGS, *self.tags]).astype(np.int64)
        held = tags >= 0
        keys, tags = keys[held], tags[held]
        order = np.argsort(keys, kind="stable")  # sorted runs: merged, not sorted anew
        return keys[order], tags[order]

    @classmethod
    def build(cls, keys: NDArray[np.uint64], tags: NDArray[np.int64]) -> _Keys:
        """Hold distinct keys given in ascending order, as one level."""
        held = cls()
        if keys.size:
            level = 0
            while keys.size > _LEVEL_BASE * _LEVEL_GROWTH**level:
                level += 1
            held.keys = [_NO_KEYS] * level + [keys.astype(np.uint64)]
            held.tags = [_NO_TAGS] * level + [tags.astype(np.int32)]
            held.holes = [0] * (level + 1)
            held.live = keys.size
        return held

    def _packed(self, level: int) -> tuple[NDArray[np.uint64], NDArray[np.int32]]:
        keys, tags = self.keys[level], self.tags[level]
        if not self.holes[level]:
            return keys, tags
        kept = tags >= 0
        return keys[kept], tags[kept]


def _merge_sorted(
    keys: NDArray[np.uint64],
    tags: NDArray[np.int32],
    new_keys: NDArray[np.uint64],
    new_tags: NDArray[np.int32],
) -> tuple[NDArray[np.uint64], NDArray[np.int32]]:
    """Two ascending runs of distinct keys (with their tags) as one."""
    if not keys.size:
        return new_keys, new_tags
    at = np.searchsorted(keys, new_keys) + np.arange(new_keys.size)
    size = keys.size + new_keys.size
    merged_keys = np.empty(size, np.uint64)
    merged_tags = np.empty(size, np.int32)
    old = np.ones(size, bool)
    old[at] = False
    merged_keys[at] = new_keys
    merged_tags[at] = new_tags
    merged_keys[old] = keys
    merged_tags[old] = tags
    return merged_keys, merged_tags


class _Profile(NamedTuple):
    """What pending predictions of one model share: version, segment, classes, value."""

    version: str
    counts: _Counts
    segment: Mapping[str, str] | None
    names: tuple[str, ...] | None
    kind: int  # _INTERNED: ``value`` is the prediction; _FLOAT, _INT: in the float column
    value: Label | None


ProfileKey = tuple[
    str, tuple[tuple[str, str], ...] | None, tuple[str, ...] | None, type, Label | None
]
"""Version, segment items, score class names, prediction type, interned prediction or None."""


def _prediction_parts(prediction: Label) -> tuple[Label | None, float]:
    """The prediction as the profile holds it (None: in the float column), and the float.

    Floats and integers beyond ±256 (regression targets) go to the float
    column, exactly up to ±2⁵³; other values (classes) are interned.  Inlined
    in :meth:`JoinState.add_predictions`.
    """
    kind = type(prediction)
    if kind is float:
        return None, cast(float, prediction)
    if kind is int and 256 < abs(cast(int, prediction)) <= 2**53:
        return None, float(prediction)
    return prediction, 0.0


class _ModelJoin:
    """Join state of one model_id within the partition.

    Every held key is in ``keys`` (its 64-bit hash and a tag).  A pending
    prediction also has a row of ``pending`` (window code, time since the
    window's start, profile code, and when the model needs them the float
    column ``pred`` and the 2-d ``scores``); an orphan label a row of
    ``orphans`` (its key, label as float and code, time, expiry).  A joined
    id has only its key, whose tag holds its window code.  Windows,
    profiles and interned label values are small per-model tables.
    """

    __slots__ = (
        "behind_us",
        "counts",
        "keys",
        "label_counts",
        "label_max_us",
        "last_window",
        "lifetime_us",
        "orphan_due",
        "orphan_ttl_us",
        "orphans",
        "pending",
        "prediction_max_us",
        "profile_codes",
        "profiles",
        "released_orphans",
        "released_pending",
        "score_aliases",
        "score_kept",
        "score_width",
        "segments",
        "value_codes",
        "values",
        "versions",
        "watermark_us",
        "window_codes",
        "window_deadline",
        "window_deadlines",
        "window_heap",
        "window_size_us",
        "window_start",
        "window_starts",
        "windows_free",
    )

    def __init__(self, policy: JoinPolicy | None) -> None:
        # Without a policy (a model dropped from the configuration, seen again only
        # in a checkpoint or a replay) nothing new is admitted; held entries expire
        # by the partition's watermark (behind_us 0), as no event moves its own.
        self.behind_us = 0 if policy is None else _to_us(policy.runs_behind_s)
        self.window_size_us = 1 if policy is None else max(1, _to_us(policy.window_size_s))
        self.lifetime_us = (
            0 if policy is None else (self.window_size_us + _to_us(policy.label_horizon_s))
        )
        self.orphan_ttl_us = 0 if policy is None else _to_us(policy.orphan_label_ttl_s)
        self.score_kept = None if policy is None else policy.score_kept
        self.score_aliases = () if policy is None else policy.score_aliases
        # Every held key (pending, joined or orphan), with its tag.
        self.keys = _Keys()
        # A pending prediction's time is held as the µs since its window's start;
        # past 2**32 µs its high bits go to a ``time_high`` column (_store_times).
        self.pending = _Rows("window", {"window": np.int8, "time": np.uint32, "profile": np.int8})
        self.orphans = _Rows(
            "live",
            {
                "live": np.int8,
                "key": np.uint64,
                "label": np.float64,
                "code": np.int32,
                "time": np.int64,
                "expiry": np.int64,
            },
        )
        self.orphan_due = _NOTHING_DUE
        # The watermark over the model's own events and its newest time on each
        # topic (module notes); its watermark is the later of this one and the
        # partition's less behind_us.
        self.watermark_us = _NO_WATERMARK
        self.prediction_max_us = _NO_WATERMARK
        self.label_max_us = _NO_WATERMARK
        self.score_width = 0
        self.released_pending: list[int] = []
        self.released_orphans: list[int] = []
        # Windows by code; a code is reused once its window expired.
        self.window_start: list[int] = []
        self.window_deadline: list[int] = []
        self.window_deadlines: NDArray[np.int64] = np.empty(0, np.int64)
        self.window_starts: NDArray[np.int64] = np.empty(0, np.int64)
        self.window_codes: dict[tuple[int, int], int] = {}
        self.windows_free: list[int] = []
        self.window_heap: list[tuple[int, int]] = []
        self.last_window = (0, -1, 0)  # start, deadline, code of the last window used
        self.profiles: list[_Profile] = []
        self.profile_codes: dict[ProfileKey, int] = {}
        self.values: list[Label] = []
        self.value_codes: dict[tuple[type, Label], int] = {}
        self.counts: dict[str, _Counts] = {}
        self.label_counts = _Counts()
        self.versions: dict[str, tuple[str, _Counts]] = {}
        self.segments: dict[tuple[tuple[str, str], ...], Mapping[str, str]] = {}

    # ------------------------------------------------------------- interning

    def version(self, version: str) -> tuple[str, _Counts]:
        """The interned version string and its counters."""
        known = self.versions.get(version)
        if known is not None:
            return known
        if len(self.versions) >= _INTERN_LIMIT:
            self.versions.clear()
        counts = self.counts.get(version)
        if counts is None:
            self.counts[version] = counts = _Counts()
        self.versions[version] = known = (version, counts)
        return known

    def segment(self, key: tuple[tuple[str, str], ...]) -> Mapping[str, str]:
        """One shared read-only mapping per distinct segment (bounded cache)."""
        interned = self.segments.get(key)
        if interned is None:
            if len(self.segments) >= _INTERN_LIMIT:
                self.segments.clear()
            self.segments[key] = interned = MappingProxyType(dict(key))
        return interned

    def profile(self, key: ProfileKey) -> int:
        """The code of a profile, created on first use."""
        code = self.profile_codes.get(key)
        if code is not None:
            return code
        version, segment, names, prediction_type, value = key
        kind = _INTERNED
        if value is None:
            kind = _FLOAT if prediction_type is float else _INT
            if "pred" not in self.pending.columns:
                self.pending.add_column("pred", np.zeros(self.pending.size, np.float64))
        if names is not None and len(names) > self.score_width:
            self._widen_scores(len(names))
        code = len(self.profiles)
        self.pending.fit("profile", code)
        self.profiles.append(
            _Profile(
                version,
                self.version(version)[1],
                None if segment is None else self.segment(segment),
                names,
                kind,
                value,
            )
        )
        self.profile_codes[key] = code
        return code

    def _widen_scores(self, width: int) -> None:
        scores = np.full((self.pending.size, width), np.nan)
        if self.score_width:
            scores[:, : self.score_width] = self.pending["scores"][: self.pending.size]
        self.pending.add_column("scores", scores)
        self.score_width = width

    def label_code(self, label: Label) -> tuple[float, int]:
        """A label as (float column, code): exact for every label type."""
        kind = type(label)
        if kind is float:
            return label, _LABEL_FLOAT  # type: ignore[return-value]
        if kind is int and label in _EXACT_INT:
            return float(label), _LABEL_INT
        code = self.value_codes.get((kind, label))
        if code is None:
            code = self.value_codes[(kind, label)] = len(self.values)
            self.values.append(label)
        return 0.0, code

    def label_value(self, value: float, code: int) -> Label:
        """Inverse of :meth:`label_code`."""
        if code == _LABEL_FLOAT:
            return value
        if code == _LABEL_INT:
            return int(value)
        return self.values[code]

    def window(self, window_start_us: int, deadline_us: int) -> int:
        """The code of a window, created (and scheduled for expiry) on first use."""
        key = (window_start_us, deadline_us)
        code = self.window_codes.get(key)
        if code is None:
            if self.windows_free:
                code = self.windows_free.pop()
                self.window_start[code] = window_start_us
                self.window_deadline[code] = deadline_us
            else:
                code = len(self.window_start)
                self.pending.fit("window", code)
                self.window_start.append(window_start_us)
                self.window_deadline.append(deadline_us)
                if code >= self.window_deadlines.size:
                    size = max(16, 2 * code)
                    self.window_deadlines = np.resize(self.window_deadlines, size)
                    self.window_starts = np.resize(self.window_starts, size)
            self.window_deadlines[code] = deadline_us
            self.window_starts[code] = window_start_us
            self.window_codes[key] = code
            heapq.heappush(self.window_heap, (deadline_us, code))
        self.last_window = (window_start_us, deadline_us, code)
        return code

    def next_due(self) -> int:
        due = self.window_heap[0][0] if self.window_heap else _NOTHING_DUE
        return min(due, self.orphan_due)

    # --------------------------------------------------------------- reading

    def lookup(self, keys: NDArray[np.uint64]) -> dict[str, NDArray[np.int64]]:
        """What is held under each key: kind, deadline, tag reference and handle."""
        count = keys.size
        rows, tag = self.keys.find(keys)
        kind = np.where(rows >= 0, tag & 3, _ABSENT)
        ref = tag >> 2
        deadline = np.full(count, _NEVER, np.int64)
        pending = np.flatnonzero(kind == _PENDING)
        if pending.size:
            windows = self.pending["window"][ref[pending]]
            deadline[pending] = self.window_deadlines[windows]
        joined = np.flatnonzero(kind == _JOINED)
        if joined.size:
            deadline[joined] = self.window_deadlines[ref[joined]]
        orphan = np.flatnonzero(kind == _ORPHAN)
        if orphan.size:
            deadline[orphan] = self.orphans["expiry"][ref[orphan]]
        return {"kind": kind, "deadline": deadline, "ref": ref, "entry": rows}

    def detail(self, name: str, kind: NDArray[np.int64], ref: NDArray[np.int64]) -> NDArray[Any]:
        """A stored field of the pending predictions or orphans found by :meth:`lookup`."""
        pending = np.flatnonzero(kind == _PENDING)
        orphan = np.flatnonzero(kind == _ORPHAN)
        values: NDArray[Any]
        if name == "scores":
            values = np.zeros((kind.size, self.score_width))
        else:
            values = np.zeros(kind.size, np.float64 if name == "value" else np.int64)
        column = _PENDING_DETAIL.get(name)
        if name == "time" and pending.size:
            values[pending] = self.pending_times(ref[pending])
        elif column is not None and pending.size and column in self.pending.columns:
            values[pending] = self.pending[column][ref[pending]]
        column = _ORPHAN_DETAIL.get(name)
        if column is not None and orphan.size:
            values[orphan] = self.orphans[column][ref[orphan]]
        return values

    # -------------------------------------------------------------- applying

    def apply(
        self, batch: _Batch, columns: dict[str, NDArray[np.int64]], at: NDArray[np.int64]
    ) -> None:
        """Write the last change of each key a batch changed (``at``: their positions)."""
        kind = columns["kind"][at]
        entries = columns["entry"][at]
        tags = np.empty(at.size, np.int64)
        joined = kind == _JOINED
        tags[joined] = (columns["window"][at[joined]] << 2) | _JOINED
        new_pending = np.flatnonzero(kind == _NEW_PENDING)
        if new_pending.size:
            tags[new_pending] = self._store_pending(batch, columns, at[new_pending]) << 2
        new_orphans = np.flatnonzero(kind == _NEW_ORPHAN)
        orphan_rows = np.empty(0, np.int64)
        if new_orphans.size:
            orphan_rows = self._store_orphans(batch, columns, at[new_orphans])
            tags[new_orphans] = (orphan_rows << 2) | _ORPHAN
        stored = entries >= 0
        self.keys.set_tags(entries[stored], tags[stored])
        fresh = np.flatnonzero(~stored)
        if fresh.size:
            self.keys.insert(batch.hashes[at[fresh]], tags[fresh])
        if new_orphans.size:
            self.orphans["live"][orphan_rows] = 1
            self.orphans["key"][orphan_rows] = batch.hashes[at[new_orphans]]
            expiries = self.orphans["expiry"][orphan_rows]
            self.orphan_due = min(self.orphan_due, int(expiries.min()))

    def release_rows(self) -> None:
        """Free the rows of pending predictions joined and orphans consumed or replaced."""
        if self.released_pending:
            self.pending.release(np.asarray(self.released_pending, np.int64))
            self.released_pending = []
        if self.released_orphans:
            self.orphans.release(np.asarray(self.released_orphans, np.int64))
            self.released_orphans = []

    def _store_pending(
        self, batch: _Batch, columns: dict[str, NDArray[np.int64]], at: NDArray[np.int64]
    ) -> NDArray[np.int64]:
        count = at.size
        rows = self.pending.allocate(count)
        pending = self.pending
        windows = columns["window"][at]
        pending["window"][rows] = windows
        self._store_times(rows, columns["time"][at], windows)
        pending["profile"][rows] = columns["profile"][at]
        positions = at.tolist()
        if "pred" in pending.columns:
            values = batch.changes["value"]
            pending["pred"][rows] = np.fromiter((values[p] for p in positions), np.float64, count)
        width = self.score_width
        if width:
            all_scores = batch.changes["scores"]
            scores = [all_scores[p] for p in positions]
            try:
                # Rows of one length (all classes, or the one kept when rows of
                # every score, from before the policy kept one, are still held).
                [length] = set(map(len, scores))
                flat = np.fromiter(chain.from_iterable(scores), np.float64, count * length)
                if length == width:
                    pending["scores"][rows] = flat.reshape(count, width)
                else:
                    block = np.full((count, width), np.nan)
                    block[:, :length] = flat.reshape(count, length)
                    pending["scores"][rows] = block
            except (ValueError, TypeError):  # rows of several lengths, or without scores
                block = np.full((count, width), np.nan)
                for row, values_row in enumerate(scores):
                    if values_row:
                        block[row, : len(values_row)] = values_row
                pending["scores"][rows] = block
        return rows

    def _store_times(
        self, rows: NDArray[np.int64], times: NDArray[np.int64], windows: NDArray[Any]
    ) -> None:
        """Hold pending predictions' times (µs) as offsets from their windows' starts."""
        if not rows.size:
            return
        offsets = times - self.window_starts[windows]
        pending = self.pending
        if "time_high" in pending.columns or not (
            int(offsets.min()) >= 0 and int(offsets.max()) <= _TIME_LOW
        ):
            # Past 71 minutes: the bits above the low 32 in a column of their
            # own, one byte wide up to 6.3 days from the window's start.
            high = offsets >> 32
            if "time_high" not in pending.columns:
                pending.add_column("time_high", np.zeros(pending.size, np.int8))
            pending.fit("time_high", int(high.max()), int(high.min()))
            pending["time_high"][rows] = high
            offsets = offsets & _TIME_LOW
        pending["time"][rows] = offsets

    def pending_offsets(self, rows: NDArray[np.int64]) -> NDArray[np.int64]:
        """The times of pending predictions held in ``rows``, as µs from their windows' starts."""
        pending = self.pending
        offsets: NDArray[np.int64] = pending["time"][rows].astype(np.int64)
        if "time_high" in pending.columns:
            offsets += pending["time_high"][rows].astype(np.int64) << 32
        return offsets

    def pending_times(self, rows: NDArray[np.int64]) -> NDArray[np.int64]:
        """The times (µs) of pending predictions held in ``rows``."""
        times: NDArray[np.int64] = self.window_starts[self.pending["window"][rows]]
        return times + self.pending_offsets(rows)

    def _store_orphans(
        self, batch: _Batch, columns: dict[str, NDArray[np.int64]], at: NDArray[np.int64]
    ) -> NDArray[np.int64]:
        count = at.size
        rows = self.orphans.allocate(count)
        orphans = self.orphans
        all_labels = batch.changes["label"]
        labels = [all_labels[p] for p in at.tolist()]
        kinds = set(map(type, labels))
        exact = np.empty(0, np.int64)
        if kinds == {int}:  # class labels: exact in the float column unless beyond 2**53
            try:
                exact = np.fromiter(labels, np.int64, count)
            except OverflowError:
                kinds = set()
            if exact.size and np.abs(exact).max() > 2**53:
                kinds = set()
        if kinds == {float}:
            orphans["label"][rows] = np.fromiter(labels, np.float64, count)
            orphans["code"][rows] = _LABEL_FLOAT
        elif kinds == {int}:
            orphans["label"][rows] = exact
            orphans["code"][rows] = _LABEL_INT
        else:
            coded = [self.label_code(label) for label in labels]
            orphans["label"][rows] = [value for value, _ in coded]
            orphans["code"][rows] = [code for _, code in coded]
        orphans["time"][rows] = columns["time"][at]
        deadlines = batch.changes["deadline"]
        orphans["expiry"][rows] = np.fromiter((deadlines[p] for p in at.tolist()), np.int64, count)
        return rows

    # -------------------------------------------------------------- expiring

    def expire(self, watermark: int) -> None:
        """Drop every entry whose deadline is before ``watermark`` into its counter."""
        heap = self.window_heap
        expired: list[int] = []
        while heap and heap[0][0] < watermark:
            deadline_us, code = heapq.heappop(heap)
            del self.window_codes[(self.window_start[code], deadline_us)]
            expired.append(code)
        if expired:
            self._expire_windows(expired)
            self.windows_free.extend(expired)
            if self.last_window[2] in expired:
                self.last_window = (0, -1, 0)
        if self.orphan_due < watermark:
            self._expire_orphans(watermark)
        self._maintain()

    def _expire_windows(self, codes: list[int]) -> None:
        handles, tag = self.keys.items()
        kind = tag & 3
        ref = tag >> 2
        due = np.zeros(len(self.window_start), bool)
        due[codes] = True
        pending = np.flatnonzero((tag >= 0) & (kind == _PENDING))
        pending_rows = ref[pending]
        expired = due[self.pending["window"][pending_rows]]
        pending, pending_rows = pending[expired], pending_rows[expired]
        joined = np.flatnonzero((tag >= 0) & (kind == _JOINED))
        joined = joined[due[ref[joined]]]
        if pending_rows.size:
            profiles = np.bincount(self.pending["profile"][pending_rows])
            for code in np.flatnonzero(profiles).tolist():
                self.profiles[code].counts.unlabelled += int(profiles[code])
            self.pending.release(pending_rows)
        self.keys.remove(handles[np.concatenate((pending, joined))])

    def _expire_orphans(self, watermark: int) -> None:
        size = self.orphans.size
        expiry = self.orphans["expiry"][:size]
        live = self.orphans["live"][:size] >= 0
        expired = np.flatnonzero(live & (expiry < watermark))
        self.label_counts.orphan_labels += expired.size
        if expired.size:
            handles, _ = self.keys.find(self.orphans["key"][expired])
            self.keys.remove(handles)
        self.orphans.release(expired)
        remaining = expiry[live & (expiry >= watermark)]
        self.orphan_due = int(remaining.min()) if remaining.size else _NOTHING_DUE

    def _maintain(self) -> None:
        """Shrink stores mostly free and tables mostly unused."""
        if self.pending.mostly_free:
            remap = self.pending.compact()
            self._remap_tags(_PENDING, remap)
        if self.orphans.mostly_free:
            remap = self.orphans.compact()
            self._remap_tags(_ORPHAN, remap)
        if len(self.profiles) > _INTERN_LIMIT and len(self.profiles) > 4 * self.pending.live:
            self._compact_profiles()
        if len(self.values) > _INTERN_LIMIT and len(self.values) > 4 * self.orphans.live:
            self._compact_values()

    def _remap_tags(self, kind: int, remap: NDArray[np.int64]) -> None:
        for tags in self.keys.tags:
            mine = np.flatnonzero((tags >= 0) & ((tags & 3) == kind))
            if mine.size:
                tags[mine] = (remap[tags[mine] >> 2] << 2) | kind

    def _compact_profiles(self) -> None:
        live = self.pending["window"][: self.pending.size] >= 0
        codes = self.pending["profile"][: self.pending.size]
        used = np.flatnonzero(np.bincount(codes[live], minlength=len(self.profiles)))
        remap = np.full(len(self.profiles), -1, np.int64)
        remap[used] = np.arange(used.size)
        codes[live] = remap[codes[live]]
        self.profiles = [self.profiles[code] for code in used.tolist()]
        kept = set(used.tolist())
        self.profile_codes = {
            key: int(remap[code]) for key, code in self.profile_codes.items() if code in kept
        }

    def _compact_values(self) -> None:
        live = self.orphans["live"][: self.orphans.size] >= 0
        codes = self.orphans["code"][: self.orphans.size]
        interned = live & (codes >= 0)
        used = np.flatnonzero(np.bincount(codes[interned], minlength=len(self.values)))
        remap = np.full(len(self.values), -1, np.int64)
        remap[used] = np.arange(used.size)
        codes[interned] = remap[codes[interned]]
        self.values = [self.values[code] for code in used.tolist()]
        self.value_codes = {(type(value), value): code for code, value in enumerate(self.values)}


_LookupPart = tuple["_ModelJoin", NDArray[np.int64] | None, dict[str, NDArray[np.int64]]]
"""A model, the positions of its events in the batch (None: all of them), its lookup."""


class _Found:
    """What the models held under each key of a batch before it (:meth:`_ModelJoin.lookup`).

    ``kind``, ``deadline``, ``ref`` and ``entry`` are read for every key; the
    stored fields of pending predictions and orphans (``time``, ``window``,
    ``profile``, ``value``, ``code``, ``scores``) only when a loop asks for
    them.  The models do not change until the batch is committed, so reading
    late reads the same.  :meth:`column` gives a field by event position, as
    a list: what the per-event loops index.
    """

    __slots__ = ("count", "lists", "parts")

    def __init__(
        self,
        count: int,
        parts: list[_LookupPart],
    ) -> None:
        self.count = count
        self.parts = parts  # model, positions of its events (None: all), lookup
        self.lists: dict[str, list[Any]] = {}

    def column(self, name: str) -> list[Any]:
        values = self.lists.get(name)
        if values is None:
            values = self.lists[name] = self._array(name).tolist()
        return values

    def _array(self, name: str) -> NDArray[Any]:
        arrays = []
        for model, _, found in self.parts:
            if name in found:
                arrays.append(found[name])
            else:
                arrays.append(model.detail(name, found["kind"], found["ref"]))
        if len(self.parts) == 1 and self.parts[0][1] is None:
            return arrays[0]
        if not self.parts:
            return np.zeros((0, 0) if name == "scores" else 0, np.int64)
        width = max(array.shape[1] for array in arrays) if name == "scores" else 0
        shape = (self.count, width) if name == "scores" else (self.count,)
        merged = np.zeros(shape, arrays[0].dtype)
        for (_, positions, _), array in zip(self.parts, arrays, strict=True):
            if name == "scores":
                merged[positions, : array.shape[1]] = array
            else:
                merged[positions] = array
        return merged


class _Batch:
    """Scratch of one ``add_*`` call: what it looked up and what it changed.

    ``found`` is the state before the batch.  A change of a key (a join, a new
    pending prediction or orphan) is written at the position of the event
    that made it, in the lists of ``changes`` (``kind``, ``deadline``,
    ``entry``, ``window``, ``time``, and the fields of a new pending
    prediction or orphan; ``kind`` is −1 where nothing changed).  When a key
    occurs more than once in the batch (``repeats``), ``changed`` maps it
    (model bits above the 64 hash bits) to the position of its latest change,
    so later events see it.  :meth:`_ModelJoin.apply` writes the last change
    of each key to the columns.
    """

    __slots__ = ("changed", "changes", "found", "hashes", "keys", "models", "repeats")

    def __init__(
        self, hashes: NDArray[np.uint64], keys: list[int], found: _Found, models: list[_ModelJoin]
    ) -> None:
        self.hashes = hashes
        self.keys = keys
        self.found = found
        self.models = models
        self.repeats = len(set(keys)) < len(keys)
        self.changed: dict[int, int] = {}
        count = len(keys)
        self.changes: dict[str, list[Any]] = {"kind": [-1] * count}

    def lists(self, *names: str) -> list[list[Any]]:
        """Change lists, one slot per event, created on first use."""
        count = len(self.keys)
        return [self.changes.setdefault(name, [0] * count) for name in names]

    def final_changes(self) -> NDArray[np.int64]:
        """Positions of the last change of each key changed."""
        if self.repeats:
            return np.fromiter(self.changed.values(), np.int64, len(self.changed))
        kinds = np.fromiter(self.changes["kind"], np.int64, len(self.keys))
        return np.flatnonzero(kinds >= 0)


class JoinState:
    """Late-label join state of one source partition.

    Parameters
    ----------
    partition
        Partition number shared by the predictions and labels topics.
    policies
        ``model_id`` → :class:`JoinPolicy`.  Events of other models raise
        :class:`UnknownModelError` (the caller dead-letters them first).
        Policies apply when an event is admitted; what is already held keeps
        the deadlines it was admitted with, also across a checkpoint.
    predictions_topic, labels_topic
        Topic names, used as keys of :attr:`applied_offsets`.
    max_skew_s
        How far, in seconds of event time, the watermark trails the newest
        time of either topic when the other is idle or behind (see the module
        notes on the watermark).  Stored in a checkpoint; :meth:`from_bytes`
        gives the default to a checkpoint written before it was stored.

    Examples
    --------
    >>> from datetime import datetime, UTC
    >>> state = JoinState(0, {"churn": JoinPolicy(3600, 7 * 86400, 86400)})
    >>> prediction = PredictionEvent(
    ...     prediction_id="p-1", model_id="churn", model_version="3",
    ...     timestamp=datetime(2026, 1, 1, 10, 30, tzinfo=UTC), features={"x": 1.0},
    ...     prediction=1, scores={"0": 0.2, "1": 0.8})
    >>> state.add_predictions([prediction], offsets=[40])
    []
    >>> label = LabelEvent(prediction_id="p-1", model_id="churn", label=0,
    ...                    timestamp=datetime(2026, 1, 2, 10, 30, tzinfo=UTC))
    >>> [pair] = state.add_labels([label], offsets=[7])
    >>> pair.prediction, pair.label, pair.label_lag_s, pair.window_start.isoformat()
    (1, 0, 86400.0, '2026-01-01T10:00:00+00:00')
    >>> state.add_labels([label], offsets=[7])  # a replay after a restart
    []
    >>> state.counters()[("churn", "3")].joined, state.applied_offsets
    (1, {('driftline.predictions', 0): 41, ('driftline.labels', 0): 8})
    >>> JoinState.from_bytes(state.to_bytes(), state.policies).counters() == state.counters()
    True
    """

    def __init__(
        self,
        partition: int,
        policies: Mapping[str, JoinPolicy],
        *,
        predictions_topic: str = DEFAULT_PREDICTIONS_TOPIC,
        labels_topic: str = DEFAULT_LABELS_TOPIC,
        max_skew_s: float = 86_400.0,
    ) -> None:
        if isinstance(partition, bool) or not isinstance(partition, int) or partition < 0:
            raise JoinError(f"partition must be an integer ≥ 0, not {partition!r}")
        if not predictions_topic or not labels_topic or predictions_topic == labels_topic:
            raise JoinError(
                "predictions_topic and labels_topic must be two different non-empty names, "
                f"not {predictions_topic!r} and {labels_topic!r}"
            )
        self._partition = partition
        self._predictions_topic = predictions_topic
        self._labels_topic = labels_topic
        self._policies = dict(policies)
        self._models: dict[str, _ModelJoin] = {}
        self._model_bits: dict[str, int] = {}
        self._offsets: dict[str, int] = {}
        self._watermark_us = _NO_WATERMARK
        self._prediction_max_us = _NO_WATERMARK
        self._label_max_us = _NO_WATERMARK
        if (
            isinstance(max_skew_s, bool)
            or not isinstance(max_skew_s, int | float)
            or not math.isfinite(max_skew_s)
            or max_skew_s < 0
        ):
            raise JoinError(
                f"max_skew_s must be a finite number of seconds ≥ 0, not {max_skew_s!r}"
            )
        self._max_skew_us = _to_us(max_skew_s)
        self._next_due_us = _NOTHING_DUE

    # ------------------------------------------------------------------ reading

    @property
    def partition(self) -> int:
        """The source partition this state joins."""
        return self._partition

    @property
    def policies(self) -> Mapping[str, JoinPolicy]:
        """The policies by model_id (read-only)."""
        return MappingProxyType(self._policies)

    @property
    def watermark_us(self) -> int | None:
        """The partition's watermark (µs since epoch), None before any event.

        ``max(min(prediction_max, label_max), max(prediction_max, label_max) −
        max_skew)`` over the newest time seen on each topic, or later if
        :meth:`expire` moved it; it never moves back.  Before the second topic
        is seen it trails the first by ``max_skew_s``.
        """
        return None if self._watermark_us == _NO_WATERMARK else self._watermark_us

    @property
    def watermarks_us(self) -> dict[str, int]:
        """Each configured model's watermark (µs since epoch), once the partition has one.

        The later of the partition's watermark less the model's
        ``runs_behind_s`` and the same rule over the model's own events: with
        ``runs_behind_s`` 0 (the default) the partition's.
        """
        partition = self._watermark_us
        if partition == _NO_WATERMARK:
            return {}
        marks = {}
        for model_id, policy in self._policies.items():
            model = self._models.get(model_id)
            own = _NO_WATERMARK if model is None else model.watermark_us
            marks[model_id] = max(own, partition - _to_us(policy.runs_behind_s))
        return marks

    @property
    def applied_offsets(self) -> dict[tuple[str, int], int]:
        """``(topic, partition)`` → next offset to consume: everything below is applied."""
        return {(topic, self._partition): offset for topic, offset in self._offsets.items()}

    def has_prediction(self, model_id: str, prediction_id: str) -> bool:
        """Whether a prediction with this id is held (pending or joined, until its horizon).

        A second prediction with a held id is a duplicate (unless the watermark
        has passed its window's horizon by then): :meth:`add_predictions`
        counts it as one and keeps it out of the state.
        """
        model = self._models.get(model_id)
        if model is None or not model.keys.live:
            return False
        tag = model.keys.find_one(prediction_id_hash(prediction_id))
        return tag >= 0 and tag & 3 != _ORPHAN

    def next_offset(self, topic: str) -> int:
        """Next offset of ``topic`` to apply (0 when none was applied yet).

        The worker can drop raw messages below it before decoding them.
        """
        return self._offsets.get(topic, 0)

    @property
    def pending_count(self) -> int:
        """Unlabelled predictions held, over all models."""
        return sum(model.pending.live for model in self._models.values())

    @property
    def joined_count(self) -> int:
        """Ids of joined predictions held for duplicate detection, over all models."""
        return sum(
            model.keys.live - model.pending.live - model.orphans.live
            for model in self._models.values()
        )

    @property
    def orphan_count(self) -> int:
        """Labels waiting for their prediction, over all models."""
        return sum(model.orphans.live for model in self._models.values())

    def counters(self) -> dict[CounterKey, JoinCounters]:
        """Snapshot of the counters since the state began (survives checkpoints)."""
        snapshot: dict[CounterKey, JoinCounters] = {}
        for model_id, model in self._models.items():
            for version, counts in model.counts.items():
                snapshot[(model_id, version)] = JoinCounters(*counts.values())
            if any(model.label_counts.values()):
                snapshot[(model_id, None)] = JoinCounters(*model.label_counts.values())
        return snapshot

    # ----------------------------------------------------------------- applying

    def add_predictions(
        self,
        events: Sequence[PredictionEvent],
        offsets: Sequence[int],
        *,
        next_offset: int | None = None,
        applied: list[int] | None = None,
        past_horizon: list[int] | None = None,
    ) -> list[JoinedPair]:
        """Apply a batch of prediction events from this partition.

        Parameters
        ----------
        events
            Decoded events, in offset order.
        offsets
            The Kafka offset of each event (same length as ``events``).  Events
            below the recorded next offset are skipped (``replayed_skipped``).
        next_offset
            Offset after the batch's last message, when the batch ended with
            messages that did not decode (dead letters); the recorded next
            offset becomes at least this.
        applied
            When given, the position in ``events`` of every prediction
            counted as a new one (not a duplicate, not a replayed offset) is
            appended, in order: the predictions the drift windows count.
        past_horizon
            When given, the position of every applied prediction whose label
            horizon the watermark had already passed when it came (counted
            ``unlabelled`` at once, never joinable) is appended, in order: the
            performance windows leave those out of their prediction counts.

        Returns
        -------
        list of JoinedPair
            Pairs completed by this batch (labels that were waiting), in order.

        Raises
        ------
        JoinError
            ``events`` and ``offsets`` differ in length.
        UnknownModelError
            An event to apply has a model without policy; nothing is applied.
        """
        topic = self._predictions_topic
        next_expected, model_ids = self._check_batch(events, offsets, topic)
        pairs: list[JoinedPair] = []
        batch = self._lookup(events, model_ids)
        found = batch.found
        found_kind = found.column("kind")
        found_deadline = found.column("deadline")
        found_entry = found.column("entry")
        keys = batch.keys
        changed = batch.changed
        repeats = batch.repeats
        # A prediction batch changes a key into a joined id or a new pending prediction.
        changes = batch.lists("kind", "deadline", "entry", "window", "time", "profile", "value")
        kinds, deadlines, entries, windows, times, profiles, values = changes
        [scores_of] = batch.lists("scores")
        models = self._models
        watermark = self._watermark_us
        label_max = self._label_max_us
        prediction_max = self._prediction_max_us
        max_skew = self._max_skew_us
        next_due = self._next_due_us
        # The own watermark and newest times of the model of the event at hand, as
        # locals (most batches hold one model); written back on a change of model.
        current: _ModelJoin | None = None
        own = own_predictions = own_labels = behind = _NO_WATERMARK
        for at, (event, offset) in enumerate(zip(events, offsets, strict=True)):
            model_id = event.model_id
            model = models[model_id]
            if model is not current:
                own, own_predictions, own_labels, behind = _switch_clock(
                    current, model, own, own_predictions, own_labels
                )
                current = model
            version, counts = model.versions.get(event.model_version) or model.version(
                event.model_version
            )
            if offset < next_expected:
                counts.replayed_skipped += 1
                continue
            next_expected = offset + 1
            time_us = (event.timestamp - _EPOCH) // _ONE_US
            if time_us > prediction_max:
                prediction_max = time_us
                # The watermark rule of the module notes, for a new newest prediction.
                candidate = time_us
                if label_max < time_us:
                    candidate = label_max if label_max > time_us - max_skew else time_us - max_skew
                if candidate > watermark:  # noqa: PLR1730 (cheaper than max() per event)
                    watermark = candidate
            if time_us > own_predictions:
                own_predictions = time_us
                # The same rule over the model's own events.
                candidate = time_us
                if own_labels < time_us:
                    candidate = (
                        own_labels if own_labels > time_us - max_skew else time_us - max_skew
                    )
                if candidate > own:  # noqa: PLR1730
                    own = candidate
            # The model's watermark: its own, or the partition's less runs_behind.
            effective = watermark - behind
            if own > effective:  # noqa: PLR1730
                effective = own
            counts.predictions += 1
            key = keys[at]
            changed_at = changed.get(key) if repeats else None
            if changed_at is None:
                kind, deadline, entry = found_kind[at], found_deadline[at], found_entry[at]
            else:
                kind, deadline, entry = (
                    kinds[changed_at],
                    deadlines[changed_at],
                    entries[changed_at],
                )
            alive = deadline >= effective
            if alive and kind != _ORPHAN:  # pending or joined: a repeat
                counts.duplicate_predictions += 1
                continue
            if applied is not None:
                applied.append(at)
            window_start_us = time_us - time_us % model.window_size_us
            deadline_us = window_start_us + model.lifetime_us
            if effective > deadline_us:
                counts.unlabelled += 1
                if past_horizon is not None:
                    past_horizon.append(at)
                continue
            last_start, last_deadline, window = model.last_window
            if last_start != window_start_us or last_deadline != deadline_us:
                window = model.window(window_start_us, deadline_us)
                next_due = min(next_due, deadline_us)
            raw_segment = event.segment
            segment = None if raw_segment is None else tuple(raw_segment.items())
            scores = event.scores
            kept = model.score_kept
            if kept is not None and scores is not None:
                score = score_under(scores, kept, model.score_aliases)
                scores = None if score is None else {kept: score}
            if repeats:
                changed[key] = at
            kinds[at] = _JOINED
            deadlines[at] = deadline_us
            entries[at] = entry
            windows[at] = window
            if alive:  # a stored orphan label is waiting: join them
                label = model.label_value(found.column("value")[at], found.column("code")[at])
                label_time_us = found.column("time")[at]
                model.released_orphans.append(found.column("ref")[at])
                counts.joined += 1
                pairs.append(
                    _new_pair(
                        event.prediction_id,
                        model_id,
                        version,
                        None if segment is None else model.segment(segment),
                        event.prediction,
                        # a copy: the pair must not share the event's dict
                        scores if scores is None or kept is not None else dict(scores),
                        time_us,
                        label,
                        label_time_us,
                        window_start_us,
                        (label_time_us - time_us) / _US_PER_S,
                    )
                )
                continue
            if kind != _ABSENT:  # expired earlier in this batch, replaced now
                self._retire(model, batch, at, changed_at)
            prediction = event.prediction
            prediction_type = type(prediction)
            interned: Label | None = prediction  # as _prediction_parts, inlined
            value = 0.0
            if prediction_type is float:
                interned, value = None, prediction  # type: ignore[assignment]
            elif (
                prediction_type is int
                and not -256 <= prediction <= 256  # type: ignore[operator]
                and -(2**53) <= prediction <= 2**53  # type: ignore[operator]
            ):
                interned, value = None, float(prediction)
            names = None if scores is None else tuple(scores)
            profile_key = (version, segment, names, prediction_type, interned)
            profile = model.profile_codes.get(profile_key)
            if profile is None:
                profile = model.profile(profile_key)
            kinds[at] = _NEW_PENDING
            times[at] = time_us
            profiles[at] = profile
            values[at] = value
            scores_of[at] = None if scores is None else tuple(scores.values())
        if current is not None:
            _switch_clock(current, current, own, own_predictions, own_labels)
        self._prediction_max_us = prediction_max
        self._watermark_us = watermark
        self._next_due_us = next_due
        self._commit(batch)
        self._record_offset(topic, next_expected, next_offset)
        return pairs

    def add_labels(
        self,
        events: Sequence[LabelEvent],
        offsets: Sequence[int],
        *,
        next_offset: int | None = None,
    ) -> list[JoinedPair]:
        """Apply a batch of label events from this partition.

        Parameters and errors as in :meth:`add_predictions`.

        Returns
        -------
        list of JoinedPair
            Pairs completed by this batch (predictions that were pending).
        """
        topic = self._labels_topic
        next_expected, model_ids = self._check_batch(events, offsets, topic)
        pairs: list[JoinedPair] = []
        batch = self._lookup(events, model_ids)
        found = batch.found
        found_kind = found.column("kind")
        found_deadline = found.column("deadline")
        found_entry = found.column("entry")
        found_ref = found.column("ref")
        found_time = found.column("time")
        found_window = found.column("window")
        found_profile = found.column("profile")
        found_value = found.column("value")
        found_scores = found.column("scores")
        keys = batch.keys
        changed = batch.changed
        repeats = batch.repeats
        # A label batch changes a key into a joined id or a new orphan.
        kinds, deadlines, entries, windows, times, labels = batch.lists(
            "kind", "deadline", "entry", "window", "time", "label"
        )
        models = self._models
        watermark = self._watermark_us
        label_max = self._label_max_us
        prediction_max = self._prediction_max_us
        max_skew = self._max_skew_us
        next_due = self._next_due_us
        current: _ModelJoin | None = None  # as in add_predictions
        own = own_predictions = own_labels = behind = _NO_WATERMARK
        for at, (event, offset) in enumerate(zip(events, offsets, strict=True)):
            model = models[event.model_id]
            if model is not current:
                own, own_predictions, own_labels, behind = _switch_clock(
                    current, model, own, own_predictions, own_labels
                )
                current = model
            counts = model.label_counts
            if offset < next_expected:
                counts.replayed_skipped += 1
                continue
            next_expected = offset + 1
            time_us = (event.timestamp - _EPOCH) // _ONE_US
            if time_us > label_max:
                label_max = time_us
                # The watermark rule of the module notes, for a new newest label.
                candidate = time_us
                if prediction_max < time_us:
                    candidate = (
                        prediction_max
                        if prediction_max > time_us - max_skew
                        else time_us - max_skew
                    )
                if candidate > watermark:  # noqa: PLR1730 (cheaper than max() per event)
                    watermark = candidate
            if time_us > own_labels:
                own_labels = time_us
                candidate = time_us
                if own_predictions < time_us:
                    candidate = (
                        own_predictions
                        if own_predictions > time_us - max_skew
                        else time_us - max_skew
                    )
                if candidate > own:  # noqa: PLR1730
                    own = candidate
            effective = watermark - behind
            if own > effective:  # noqa: PLR1730
                effective = own
            counts.labels += 1
            key = keys[at]
            changed_at = changed.get(key) if repeats else None
            if changed_at is None:
                kind, deadline, entry = found_kind[at], found_deadline[at], found_entry[at]
            else:
                kind, deadline, entry = (
                    kinds[changed_at],
                    deadlines[changed_at],
                    entries[changed_at],
                )
            if deadline >= effective:
                if kind != _PENDING:  # joined, or a label is already waiting
                    counts.duplicate_labels += 1
                    continue
                # A stored pending prediction: join them.
                profile = model.profiles[found_profile[at]]
                if profile.kind == _INTERNED:
                    prediction = cast(Label, profile.value)
                elif profile.kind == _FLOAT:
                    prediction = found_value[at]
                else:
                    prediction = int(found_value[at])
                names = profile.names
                window, prediction_time_us = found_window[at], found_time[at]
                model.released_pending.append(found_ref[at])
                profile.counts.joined += 1
                if repeats:
                    changed[key] = at
                kinds[at] = _JOINED
                deadlines[at] = deadline
                entries[at] = entry
                windows[at] = window
                pairs.append(
                    _new_pair(
                        event.prediction_id,
                        event.model_id,
                        profile.version,
                        profile.segment,
                        prediction,
                        None if names is None else dict(zip(names, found_scores[at], strict=False)),
                        prediction_time_us,
                        event.label,
                        time_us,
                        model.window_start[window],
                        (time_us - prediction_time_us) / _US_PER_S,
                    )
                )
                continue
            if kind != _ABSENT:  # expired earlier in this batch, replaced now
                self._retire(model, batch, at, changed_at)
            expiry_us = max(effective, time_us) + model.orphan_ttl_us
            if repeats:
                changed[key] = at
            kinds[at] = _NEW_ORPHAN
            deadlines[at] = expiry_us
            entries[at] = entry
            times[at] = time_us
            labels[at] = event.label
            next_due = min(next_due, expiry_us)
        if current is not None:
            _switch_clock(current, current, own, own_predictions, own_labels)
        self._label_max_us = label_max
        self._watermark_us = watermark
        self._next_due_us = next_due
        self._commit(batch)
        self._record_offset(topic, next_expected, next_offset)
        return pairs

    @staticmethod
    def _retire(model: _ModelJoin, batch: _Batch, at: int, changed_at: int | None) -> None:
        """Count an entry whose deadline passed earlier in the batch, now replaced.

        Left alone, it would be counted when the batch ends; replaced, it is
        counted here, as if it had expired at once.
        """
        found = batch.found
        kind = found.column("kind")[at] if changed_at is None else batch.changes["kind"][changed_at]
        if kind == _PENDING:
            model.profiles[found.column("profile")[at]].counts.unlabelled += 1
            model.released_pending.append(found.column("ref")[at])
        elif kind == _ORPHAN:
            model.label_counts.orphan_labels += 1
            model.released_orphans.append(found.column("ref")[at])
        elif kind == _NEW_PENDING:
            assert changed_at is not None
            model.profiles[batch.changes["profile"][changed_at]].counts.unlabelled += 1
        elif kind == _NEW_ORPHAN:
            model.label_counts.orphan_labels += 1

    def _lookup(
        self, events: Sequence[PredictionEvent] | Sequence[LabelEvent], model_ids: set[str]
    ) -> _Batch:
        """Hash the batch's ids and read what each model holds under them, in bulk."""
        count = len(events)
        ids = list(map(_prediction_id_of, events))
        ordered = sorted(model_ids)
        models = [self._model(model_id) for model_id in ordered]
        if len(models) <= 1:
            hashes = _prediction_id_hashes(ids)
            keys = hashes.tolist()
            parts: list[_LookupPart] = [(model, None, model.lookup(hashes)) for model in models]
        else:
            hashes = np.empty(count, np.uint64)
            keys = [0] * count
            parts = []
            groups: dict[str, list[int]] = {model_id: [] for model_id in ordered}
            for position, event in enumerate(events):
                groups[event.model_id].append(position)
            for model, (model_id, positions) in zip(models, groups.items(), strict=True):
                mine = np.asarray(positions, np.int64)
                hashes[mine] = _prediction_id_hashes([ids[p] for p in positions])
                bits = self._model_bits[model_id]
                for position, key in zip(positions, hashes[mine].tolist(), strict=True):
                    keys[position] = key | bits
                parts.append((model, mine, model.lookup(hashes[mine])))
        return _Batch(hashes, keys, _Found(count, parts), models)

    def _commit(self, batch: _Batch) -> None:
        """Write what the batch changed to the columns, then expire what is due."""
        for model in batch.models:
            model.release_rows()  # first, so that new rows reuse them
        final = batch.final_changes()
        if final.size:
            columns = {
                name: np.fromiter(values, np.int64, len(values))
                for name, values in batch.changes.items()
                if name in ("kind", "entry", "window", "time", "profile")
            }
            for model, positions, _ in batch.found.parts:
                if positions is None:
                    mine = final
                else:
                    member = np.zeros(len(batch.keys), bool)
                    member[positions] = True
                    mine = final[member[final]]
                if mine.size:
                    model.apply(batch, columns, mine)
        if self._watermark_us > self._next_due_us:
            self._expire_due()

    def expire(self, now_event_time: datetime) -> None:
        """Advance the watermark to ``now_event_time`` (if later) and expire what is due.

        Expiry also happens inside :meth:`add_predictions` and :meth:`add_labels`
        as events move the watermark.  The newest time of each topic is left
        as it is, so the watermark stays here until the topics' own rule
        (module notes) passes it.  Call this only to move an idle
        partition forward with an event time from elsewhere (for example the
        watermark of the other partitions).  Expired entries are recorded in
        :meth:`counters` (``unlabelled``, ``orphan_labels``).
        """
        now_us = event_us(now_event_time)
        if now_us > self._watermark_us:
            self._watermark_us = now_us
            if now_us > self._next_due_us:
                self._expire_due()

    def advance_quiet(
        self, model_id: str, *, predictions_us: int | None = None, labels_us: int | None = None
    ) -> bool:
        """Move a model's newest prediction and label times up, as a quiet partition may.

        For ``window.close_when_idle``: a partition read to its end that stayed
        quiet acts on each topic as if an event of the model stamped then
        (µs) had arrived; the model's watermark follows by the rule of the
        module notes over its own times, and what it passed expires.  A
        topic's time moves only once the partition has read that topic (a
        partition that has read nothing there vouches for nothing), and never
        back.  Returns whether a time moved.
        """
        if predictions_us is not None and self._prediction_max_us == _NO_WATERMARK:
            predictions_us = None
        if labels_us is not None and self._label_max_us == _NO_WATERMARK:
            labels_us = None
        if (predictions_us is None and labels_us is None) or model_id not in self._policies:
            return False
        model = self._model(model_id)
        prediction_max, label_max = model.prediction_max_us, model.label_max_us
        if predictions_us is not None and predictions_us > prediction_max:
            prediction_max = predictions_us
        if labels_us is not None and labels_us > label_max:
            label_max = labels_us
        if (prediction_max, label_max) == (model.prediction_max_us, model.label_max_us):
            return False
        model.prediction_max_us, model.label_max_us = prediction_max, label_max
        newest, oldest = max(prediction_max, label_max), min(prediction_max, label_max)
        model.watermark_us = max(model.watermark_us, oldest, newest - self._max_skew_us)
        self._expire_due()
        return True

    def _check_batch(
        self,
        events: Sequence[PredictionEvent] | Sequence[LabelEvent],
        offsets: Sequence[int],
        topic: str,
    ) -> tuple[int, set[str]]:
        """The first offset to apply, and the batch's model ids; refuses unknown models."""
        if len(events) != len(offsets):
            raise JoinError(
                f"{len(events)} events but {len(offsets)} offsets for {topic}; "
                "give one offset per event"
            )
        start = self._offsets.get(topic, 0)
        model_ids = set(map(_model_id_of, events))
        if not model_ids.difference(self._policies):
            return start, model_ids
        # Some model is unknown: refuse the batch only if such an event would be applied.
        next_expected = start
        unknown: set[str] = set()
        for event, offset in zip(events, offsets, strict=True):
            if offset < next_expected:
                continue
            next_expected = offset + 1
            if event.model_id not in self._policies:
                unknown.add(event.model_id)
        if unknown:
            known = ", ".join(sorted(self._policies)) or "none"
            raise UnknownModelError(
                f"no join policy for model(s) {', '.join(sorted(unknown))} on {topic} "
                f"partition {self._partition}; known models: {known}"
            )
        return start, model_ids

    def _record_offset(self, topic: str, next_expected: int, next_offset: int | None) -> None:
        if next_offset is not None:
            next_expected = max(next_expected, next_offset)
        if next_expected > self._offsets.get(topic, 0):
            self._offsets[topic] = next_expected

    def _model(self, model_id: str) -> _ModelJoin:
        model = self._models.get(model_id)
        if model is None:
            self._model_bits[model_id] = len(self._models) << 64
            self._models[model_id] = model = _ModelJoin(self._policies.get(model_id))
        return model

    def _expire_due(self) -> None:
        next_due = _NOTHING_DUE
        partition = self._watermark_us
        for model in self._models.values():
            watermark = max(model.watermark_us, partition - model.behind_us)
            if model.next_due() < watermark:
                model.expire(watermark)
            next_due = min(next_due, model.next_due())
        self._next_due_us = next_due

    # --------------------------------------------------------------- checkpoint

    def to_bytes(self) -> bytes:
        """A compact, exact checkpoint: held entries, watermark, offsets and counters.

        The newest event time of each topic is stored with the watermark, so
        a restored state moves its watermark as the uninterrupted one would.
        Entries are written in the order of their keys and the tables
        (windows, profiles, label values) in a canonical order, so equal
        states write equal bytes whatever order their ids arrived in.

        The layout is ``CHECKPOINT_MAGIC``, one format-version byte, the
        length of a zlib-compressed JSON header (4 bytes, little endian), the
        header (offsets, counters, tables, and the type and length of every
        column), then the columns as raw little-endian arrays: per model, the
        keys of joined ids, pending predictions and orphan labels and their
        fields, times relative to their window start, codes in the narrowest
        integer type that holds them.  The columns are not compressed: keys
        and scores hardly compress, and zlib ran at 56 MB/s on the development
        machine, far slower than writing them.  Measured: 9 bytes per joined
        id and 30–34 per pending prediction with two class scores; 0.08–0.11 s
        to write or to read a million held ids (``benchmarks/join_memory.py``).
        On restore, consume from :attr:`applied_offsets` (records below are
        skipped, so a replay is harmless).
        """
        writer = _ColumnWriter()
        models = [
            _write_model(model_id, self._models[model_id], writer)
            for model_id in sorted(self._models)
        ]
        header = {
            "partition": self._partition,
            "predictions_topic": self._predictions_topic,
            "labels_topic": self._labels_topic,
            "watermark": self._watermark_us,
            "prediction_max": self._prediction_max_us,
            "label_max": self._label_max_us,
            "max_skew": self._max_skew_us,
            # each model's watermark as sent: a floor after a restart (runs_behind may change)
            "marks": self.watermarks_us,
            "offsets": dict(sorted(self._offsets.items())),
            "models": models,
        }
        compressed = zlib.compress(orjson.dumps(header), _ZLIB_LEVEL)
        return b"".join(
            (
                CHECKPOINT_MAGIC,
                bytes([CHECKPOINT_VERSION]),
                struct.pack("<I", len(compressed)),
                compressed,
                *writer.blobs,
            )
        )

    @classmethod
    def from_bytes(cls, data: bytes, policies: Mapping[str, JoinPolicy]) -> JoinState:
        """Restore a state written by :meth:`to_bytes` (format 2, or format 1 from before).

        Parameters
        ----------
        data
            The checkpoint.
        policies
            Policies for events applied from now on (held entries keep their
            stored deadlines).

        A format-1 checkpoint holds the id strings; they are hashed on
        restore.  One written before the newest time of each topic was
        stored restores both as its watermark: the watermark then waits until
        both topics pass it (or one passes it by ``max_skew_s``).  One written
        before each model kept its own watermark gives every model the
        partition's.  The state gets the default ``max_skew_s``.

        Raises
        ------
        CheckpointError
            Not a join checkpoint, an unknown format version, or damaged.
        """
        header = len(CHECKPOINT_MAGIC)
        if data[:header] != CHECKPOINT_MAGIC or len(data) <= header:
            raise CheckpointError(
                f"not a driftline join checkpoint (expected it to start with {CHECKPOINT_MAGIC!r})"
            )
        version = data[header]
        if version not in (1, CHECKPOINT_VERSION):
            raise CheckpointError(
                f"join checkpoint format version {version} is not supported; "
                f"this driftline reads versions 1 and {CHECKPOINT_VERSION}"
            )
        try:
            if version == 1:
                return cls._restore_v1(orjson.loads(zlib.decompress(data[header + 1 :])), policies)
            return cls._restore(memoryview(data)[header + 1 :], policies)
        except CheckpointError:
            raise
        except (
            zlib.error,
            struct.error,
            ValueError,
            KeyError,
            TypeError,
            IndexError,
            AttributeError,
        ) as exc:
            raise CheckpointError(
                f"damaged join checkpoint (format {version}): {type(exc).__name__}: {exc}"
            ) from exc

    @classmethod
    def _restore_header(
        cls, payload: dict[str, Any], policies: Mapping[str, JoinPolicy]
    ) -> JoinState:
        state = cls(
            payload["partition"],
            policies,
            predictions_topic=payload["predictions_topic"],
            labels_topic=payload["labels_topic"],
        )
        state._watermark_us = int(payload["watermark"])
        state._prediction_max_us = int(payload.get("prediction_max", payload["watermark"]))
        state._label_max_us = int(payload.get("label_max", payload["watermark"]))
        state._max_skew_us = int(payload.get("max_skew", state._max_skew_us))
        state._offsets = {str(topic): int(offset) for topic, offset in payload["offsets"].items()}
        return state

    @classmethod
    def _restore(cls, data: memoryview, policies: Mapping[str, JoinPolicy]) -> JoinState:
        (size,) = struct.unpack_from("<I", data)
        payload = orjson.loads(zlib.decompress(data[4 : 4 + size]))
        state = cls._restore_header(payload, policies)
        reader = _ColumnReader(data, 4 + size)
        for stored in payload["models"]:
            model = state._model(stored["model_id"])
            _restore_counters(model, stored)
            _restore_watermarks(model, stored, payload)
            _read_model(model, stored, reader)
        reader.finish()
        _restore_marks(state, payload)
        state._next_due_us = min(
            (model.next_due() for model in state._models.values()), default=_NOTHING_DUE
        )
        return state

    @classmethod
    def _restore_v1(cls, payload: dict[str, Any], policies: Mapping[str, JoinPolicy]) -> JoinState:
        state = cls._restore_header(payload, policies)
        for stored in payload["models"]:
            model = state._model(stored["model_id"])
            _restore_counters(model, stored)
            _restore_watermarks(model, stored, payload)
            _read_model_v1(model, stored)
        _restore_marks(state, payload)
        state._next_due_us = min(
            (model.next_due() for model in state._models.values()), default=_NOTHING_DUE
        )
        return state


# ------------------------------------------------------------------ checkpoint io


class _ColumnWriter:
    """Raw little-endian arrays of a checkpoint, with their names, types and shapes."""

    def __init__(self) -> None:
        self.blobs: list[bytes] = []
        self.specs: list[list[Any]] = []

    def add(self, name: str, values: NDArray[Any]) -> None:
        array = np.ascontiguousarray(values, values.dtype.newbyteorder("<"))
        self.specs.append([name, array.dtype.str, list(array.shape)])
        self.blobs.append(array.tobytes())

    def take(self) -> list[list[Any]]:
        """The specs added since the last call."""
        specs, self.specs = self.specs, []
        return specs


class _ColumnReader:
    """Reads the arrays a :class:`_ColumnWriter` wrote, in order, without copying."""

    def __init__(self, data: memoryview, offset: int) -> None:
        self.data = data
        self.offset = offset

    def read(self, spec: list[Any]) -> NDArray[Any]:
        name, dtype_name, shape = spec
        dtype = np.dtype(dtype_name)
        if dtype.kind not in "uif" or not all(isinstance(n, int) and n >= 0 for n in shape):
            raise CheckpointError(f"column {name!r} has a bad type or shape: {spec!r}")
        count = math.prod(shape)
        end = self.offset + count * dtype.itemsize
        if end > len(self.data):
            raise CheckpointError(f"join checkpoint truncated in column {name!r}")
        array = np.frombuffer(self.data, dtype, count, self.offset).reshape(shape)
        self.offset = end
        return array

    def columns(self, specs: list[list[Any]]) -> dict[str, NDArray[Any]]:
        return {str(spec[0]): self.read(spec) for spec in specs}

    def finish(self) -> None:
        if self.offset != len(self.data):
            raise CheckpointError(
                f"join checkpoint has {len(self.data) - self.offset} bytes after its last column"
            )


def _narrow(values: NDArray[np.int64]) -> NDArray[Any]:
    """The integers in the smallest type that holds them all."""
    if not values.size:
        return values.astype(np.uint8)
    low, high = int(values.min()), int(values.max())
    for dtype in (np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32):
        info = np.iinfo(dtype)
        if info.min <= low and high <= info.max:
            return values.astype(dtype)
    return values.astype(np.int64)


def _used(codes: NDArray[np.int64], size: int) -> list[int]:
    if not codes.size:
        return []
    used: list[int] = np.flatnonzero(np.bincount(codes, minlength=size)).tolist()
    return used


def _encode_profile(profile: _Profile) -> list[Any]:
    return [
        profile.version,
        None if profile.segment is None else dict(profile.segment),
        None if profile.names is None else list(profile.names),
        profile.kind,
        None if profile.kind != _INTERNED else _encode_value(profile.value),
    ]


def _profile_key(stored: list[Any]) -> ProfileKey:
    version, segment, names, kind, value = stored
    if kind == _INTERNED:
        interned: Label | None = _decode_value(value)
        prediction_type: type = type(interned)
    elif kind in (_FLOAT, _INT):
        interned, prediction_type = None, float if kind == _FLOAT else int
    else:
        raise CheckpointError(f"unknown prediction kind {kind!r} in a profile")
    return (
        str(version),
        None if segment is None else tuple((str(k), str(v)) for k, v in segment.items()),
        None if names is None else tuple(str(name) for name in names),
        prediction_type,
        interned,
    )


def _write_model(model_id: str, model: _ModelJoin, writer: _ColumnWriter) -> dict[str, Any]:
    """Header of one model; its columns go to ``writer``, entries in key order."""
    keys, tags = model.keys.sorted_items()
    kinds, refs = tags & 3, tags >> 2
    joined = np.flatnonzero(kinds == _JOINED)
    pending = np.flatnonzero(kinds == _PENDING)
    orphan = np.flatnonzero(kinds == _ORPHAN)
    joined_windows = refs[joined]
    pending_rows = refs[pending]
    store = model.pending
    pending_windows = store["window"][pending_rows]

    window_count = len(model.window_start)
    window_use = np.bincount(joined_windows, minlength=window_count)
    window_use += np.bincount(pending_windows, minlength=window_count)
    windows = sorted(
        np.flatnonzero(window_use).tolist(),
        key=lambda code: (model.window_deadline[code], model.window_start[code]),
    )
    window_remap = _remap(windows, window_count)

    profile_codes = store["profile"][pending_rows]
    used = _used(profile_codes, len(model.profiles))
    encoded = {code: _encode_profile(model.profiles[code]) for code in used}
    profiles = sorted(used, key=lambda code: orjson.dumps(encoded[code]))
    profile_remap = _remap(profiles, len(model.profiles))
    width = max((len(model.profiles[code].names or ()) for code in used), default=0)
    numeric = any(model.profiles[code].kind != _INTERNED for code in used)

    orphans = model.orphans
    orphan_rows = refs[orphan]
    label_codes = orphans["code"][orphan_rows].astype(np.int64)
    interned = label_codes >= 0
    used = _used(label_codes[interned], len(model.values))
    encoded_values = {code: _encode_value(model.values[code]) for code in used}
    values = sorted(used, key=lambda code: orjson.dumps(encoded_values[code]))
    value_remap = _remap(values, len(model.values))
    if value_remap is not None:
        label_codes[interned] = value_remap[label_codes[interned]]
    orphan_times = orphans["time"][orphan_rows]

    def codes(values: NDArray[Any], remap: NDArray[np.int64] | None, count: int) -> NDArray[Any]:
        dtype = np.uint8 if count <= 2**8 else np.uint16 if count <= 2**16 else np.int32
        return (values if remap is None else remap[values]).astype(dtype)

    writer.add("joined_key", keys[joined])
    writer.add("joined_window", codes(joined_windows, window_remap, len(windows)))
    writer.add("pending_key", keys[pending])
    writer.add("pending_window", codes(pending_windows, window_remap, len(windows)))
    writer.add("pending_time", _narrow(model.pending_offsets(pending_rows)))
    writer.add("pending_profile", codes(profile_codes, profile_remap, len(profiles)))
    if numeric:
        writer.add("pending_pred", store["pred"][pending_rows])
    if width:
        writer.add("pending_scores", store["scores"][pending_rows, :width])
    writer.add("orphan_key", keys[orphan])
    writer.add("orphan_label", orphans["label"][orphan_rows])
    writer.add("orphan_code", _narrow(label_codes))
    writer.add("orphan_time", orphan_times)
    writer.add("orphan_expiry", _narrow(orphans["expiry"][orphan_rows] - orphan_times))
    return {
        "model_id": model_id,
        "watermark": model.watermark_us,
        "prediction_max": model.prediction_max_us,
        "label_max": model.label_max_us,
        "counters": [[v, c.values()] for v, c in sorted(model.counts.items())],
        "label_counters": model.label_counts.values(),
        "windows": [[model.window_start[c], model.window_deadline[c]] for c in windows],
        "profiles": [encoded[code] for code in profiles],
        "values": [encoded_values[code] for code in values],
        "columns": writer.take(),
    }


def _remap(ordered: list[int], size: int) -> NDArray[np.int64] | None:
    """Old code → position in ``ordered``; None when every code keeps its number."""
    if ordered == list(range(len(ordered))):
        return None
    remap = np.zeros(max(size, 1), np.int64)
    remap[ordered] = np.arange(len(ordered))
    return remap


def _restore_counters(model: _ModelJoin, stored: Mapping[str, Any]) -> None:
    # Counters first: profiles and the version cache hand out these objects.
    for version, values in stored["counters"]:
        model.counts[str(version)] = _Counts.restore(values)
    model.label_counts = _Counts.restore(stored["label_counters"])


def _switch_clock(
    left: _ModelJoin | None, taken: _ModelJoin, own: int, own_predictions: int, own_labels: int
) -> tuple[int, int, int, int]:
    """In an event loop that keeps a model's own watermark and newest times in locals:
    store those of the model it leaves (if any); return those of the model it takes up,
    with how far it may run behind the partition."""
    if left is not None:
        left.watermark_us, left.prediction_max_us, left.label_max_us = (
            own,
            own_predictions,
            own_labels,
        )
    return taken.watermark_us, taken.prediction_max_us, taken.label_max_us, taken.behind_us


def _restore_marks(state: JoinState, header: Mapping[str, Any]) -> None:
    """No model's watermark goes below the one sent before the checkpoint (older
    checkpoints: the partition's, sent for every model)."""
    if state._watermark_us == _NO_WATERMARK:
        return
    marks = header.get("marks")
    if marks is None:
        marks = dict.fromkeys(state._policies, state._watermark_us)
    now = state.watermarks_us
    for model_id, mark in marks.items():
        if model_id in state._policies and int(mark) > now[model_id]:
            model = state._model(model_id)
            model.watermark_us = max(model.watermark_us, int(mark))


def _restore_watermarks(
    model: _ModelJoin, stored: Mapping[str, Any], header: Mapping[str, Any]
) -> None:
    """A model's own watermark and newest times.  A checkpoint written before they
    were kept has the partition's only, and the model resumes from those (as it was
    judged by them)."""
    source = stored if "watermark" in stored else header
    watermark = int(source["watermark"])
    model.watermark_us = watermark
    model.prediction_max_us = int(source.get("prediction_max", watermark))
    model.label_max_us = int(source.get("label_max", watermark))


def _read_model(model: _ModelJoin, stored: Mapping[str, Any], reader: _ColumnReader) -> None:
    columns = reader.columns(stored["columns"])
    windows = np.asarray(
        [model.window(int(start), int(deadline)) for start, deadline in stored["windows"]],
        np.int64,
    )
    starts = np.asarray([int(start) for start, _ in stored["windows"]], np.int64)
    profiles = np.asarray([model.profile(_profile_key(p)) for p in stored["profiles"]], np.int64)
    values = np.asarray([model.label_code(_decode_value(v))[1] for v in stored["values"]], np.int64)
    pending_window = columns["pending_window"].astype(np.int64)
    codes = columns["orphan_code"].astype(np.int64)
    interned = codes >= 0
    codes[interned] = values[codes[interned]]
    orphan_time = columns["orphan_time"].astype(np.int64)
    count = pending_window.size
    pred = columns.get("pending_pred")
    scores = columns.get("pending_scores")
    _load_model(
        model,
        joined=(columns["joined_key"], windows[columns["joined_window"].astype(np.int64)]),
        pending=(
            columns["pending_key"],
            windows[pending_window],
            starts[pending_window] + columns["pending_time"].astype(np.int64),
            profiles[columns["pending_profile"].astype(np.int64)],
            np.zeros(count) if pred is None else pred,
            np.zeros((count, 0)) if scores is None else scores,
        ),
        orphans=(
            columns["orphan_key"],
            columns["orphan_label"],
            codes,
            orphan_time,
            orphan_time + columns["orphan_expiry"].astype(np.int64),
        ),
    )


def _read_model_v1(model: _ModelJoin, stored: Mapping[str, Any]) -> None:
    """Load a model of a format-1 checkpoint, which holds ids, not hashes."""
    versions = [str(v) for v in stored["versions"]]
    segments = [None if s is None else tuple(s.items()) for s in stored["segments"]]
    names = [None if n is None else tuple(n) for n in stored["score_names"]]
    joined_ids: list[str] = []
    joined_windows: list[int] = []
    pending_ids: list[str] = []
    pending: list[tuple[int, int, int, float, list[float] | None]] = []
    for item in stored["windows"]:
        start = int(item["start"])
        window = model.window(start, int(item["deadline"]))
        joined_ids += item["joined"]
        joined_windows += [window] * len(item["joined"])
        pending_ids += item["ids"]
        for v, s, prediction, n, scores, offset_us in zip(
            item["version"],
            item["segment"],
            _decode_values(item["prediction"]),
            item["names"],
            item["scores"],
            item["time"],
            strict=True,
        ):
            interned, value = _prediction_parts(prediction)
            key = (versions[v], segments[s], names[n], type(prediction), interned)
            profile = model.profile(key)
            pending.append((window, start + offset_us, profile, value, scores))
    width = model.score_width
    scores_block = np.full((len(pending), width), np.nan)
    for at, (*_, scores) in enumerate(pending):
        if scores:
            scores_block[at, : len(scores)] = scores
    orphans = stored["orphans"]
    coded = [model.label_code(label) for label in _decode_values(orphans["label"])]
    _load_model(
        model,
        joined=(_prediction_id_hashes(joined_ids), np.asarray(joined_windows, np.int64)),
        pending=(
            _prediction_id_hashes(pending_ids),
            np.asarray([p[0] for p in pending], np.int64),
            np.asarray([p[1] for p in pending], np.int64),
            np.asarray([p[2] for p in pending], np.int64),
            np.asarray([p[3] for p in pending], np.float64),
            scores_block,
        ),
        orphans=(
            _prediction_id_hashes(orphans["ids"]),
            np.asarray([value for value, _ in coded], np.float64),
            np.asarray([code for _, code in coded], np.int64),
            np.asarray(orphans["time"], np.int64),
            np.asarray(orphans["expiry"], np.int64),
        ),
    )


def _load_model(
    model: _ModelJoin,
    *,
    joined: tuple[NDArray[Any], NDArray[np.int64]],
    pending: tuple[
        NDArray[Any],
        NDArray[np.int64],
        NDArray[np.int64],
        NDArray[np.int64],
        NDArray[Any],
        NDArray[Any],
    ],
    orphans: tuple[
        NDArray[Any], NDArray[Any], NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]
    ],
) -> None:
    """Fill an empty model with entries (each group given in any order)."""
    joined_keys, joined_windows = joined
    pending_keys, pending_windows, pending_times, pending_profiles, pending_preds, scores = pending
    orphan_keys, labels, codes, orphan_times, expiries = orphans
    keys = np.concatenate((joined_keys, pending_keys, orphan_keys)).astype(np.uint64)
    first_pending, first_orphan = joined_keys.size, joined_keys.size + pending_keys.size
    tags = np.empty(keys.size, np.int64)  # joined, then pending, then orphans
    tags[:first_pending] = (joined_windows << 2) | _JOINED
    store = model.pending
    pending_rows = store.allocate(pending_keys.size)
    store["window"][pending_rows] = pending_windows
    model._store_times(pending_rows, pending_times, pending_windows)
    store["profile"][pending_rows] = pending_profiles
    if "pred" in store.columns:
        store["pred"][pending_rows] = pending_preds
    if model.score_width:
        block = np.full((pending_rows.size, model.score_width), np.nan)
        block[:, : scores.shape[1]] = scores
        store["scores"][pending_rows] = block
    tags[first_pending:first_orphan] = pending_rows << 2
    orphan_rows = model.orphans.allocate(orphan_keys.size)
    model.orphans["live"][orphan_rows] = 1
    model.orphans["key"][orphan_rows] = orphan_keys
    model.orphans["label"][orphan_rows] = labels
    model.orphans["code"][orphan_rows] = codes
    model.orphans["time"][orphan_rows] = orphan_times
    model.orphans["expiry"][orphan_rows] = expiries
    tags[first_orphan:] = (orphan_rows << 2) | _ORPHAN
    model.orphan_due = int(expiries.min()) if expiries.size else _NOTHING_DUE
    order = np.argsort(keys, kind="stable")  # each group is sorted: a merge, fast
    keys, tags = keys[order], tags[order]
    repeated = np.flatnonzero(keys[1:] == keys[:-1]) + 1
    if repeated.size:
        # Two ids with one hash (only a format-1 checkpoint can hold them): the
        # later one goes, counted as a duplicate.
        for tag in tags[repeated].tolist():
            if tag & 3 == _PENDING:
                profile = model.pending["profile"].item(tag >> 2)
                model.profiles[profile].counts.duplicate_predictions += 1
                model.pending.release(np.asarray([tag >> 2]))
            elif tag & 3 == _ORPHAN:
                model.label_counts.duplicate_labels += 1
                model.orphans.release(np.asarray([tag >> 2]))
        keep = np.ones(keys.size, bool)
        keep[repeated] = False
        keys, tags = keys[keep], tags[keep]
    model.keys = _Keys.build(keys, tags)


def _encode_value(value: Label | None) -> Any:
    # JSON numbers beyond 64 bits (valid in an event) travel as ["int", "digits"].
    return ["int", str(value)] if type(value) is int and value not in _INT64 else value


def _decode_value(value: Any) -> Label:
    if type(value) is list:
        if len(value) != 2 or value[0] != "int":
            raise CheckpointError(f"bad value {value!r} in a join checkpoint")
        return int(value[1])
    if not isinstance(value, bool | int | float | str):
        raise CheckpointError(f"bad value {value!r} in a join checkpoint")
    return value


def _decode_values(values: list[Any]) -> Iterator[Label]:
    for value in values:
        yield int(value[1]) if type(value) is list else value
