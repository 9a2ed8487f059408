"""Mergeable sufficient statistics for binary and multiclass classifiers.

Binary: the confusion counts, log-loss and Brier sums over scored events, and
a histogram of the positive-class score per true class (``score_bins`` equal
bins on [0, 1], default 1,000) for ROC AUC.

ROC AUC from histograms
-----------------------
The exact AUC is ``P(s+ > s-) + ½ P(s+ = s-)`` over all (positive, negative)
pairs. Bin ``b = min(floor(s · B), B - 1)`` is non-decreasing in the score, so a
pair in different bins is ordered the same way by bins as by scores; only pairs
in the *same* bin are uncertain, and the histogram counts each as ½ where the
exact value is 0, ½ or 1. Hence::

    |AUC_hist - AUC_exact| <= ½ · Σ_b P_b N_b / (n₊ n₋)

with ``P_b``, ``N_b`` the positives and negatives in bin ``b``. The bound is
computed from the histograms themselves and returned as the result's
``error_bound``: it is small when scores are spread out and grows when many
scores of both classes share a bin (ties in the exact sense are not errors, so
the bound is conservative).

Multiclass: the confusion matrix over the classes seen (canonical label keys,
see :func:`detectors.values.label_codes`) and the log-loss sum. Macro averages
use the classes that appear in the labels or the predictions of the window, as
scikit-learn does without an explicit ``labels`` argument.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from detectors import codec
from detectors.errors import DetectorError, check_int
from detectors.performance import (
    PerformanceResult,
    check_metrics,
    check_min_labelled,
    ratio,
    result,
)
from detectors.values import CategoryValues, category_key, label_codes
from schemas.vocabulary import BINARY_CLASS_SPELLINGS, METRICS_BY_TASK

DEFAULT_SCORE_BINS = 1000
_EPS = float(np.finfo(np.float64).eps)


def positive_keys(positive_class: object) -> frozenset[str]:
    """The canonical keys that name the positive class of a binary model.

    A yes/no class has two spellings, ``1`` and ``true`` (``0`` and
    ``false``): labels written as JSON booleans and predictions written as 0/1
    must agree on what is positive (:data:`~schemas.vocabulary.BINARY_CLASS_SPELLINGS`).

    Examples
    --------
    >>> sorted(positive_keys(True)), sorted(positive_keys("churned"))
    (['1', 'True', 'true'], ['churned'])
    """
    key = category_key(positive_class)
    if key is None:
        raise DetectorError(f"positive_class must not be missing (got {positive_class!r})")
    for spellings in BINARY_CLASS_SPELLINGS:
        if key in spellings:
            return frozenset(spellings)
    return frozenset({key})


def positive_mask(labels: CategoryValues, positive_class: object = 1) -> NDArray[np.bool_]:
    """Which labels are the positive class, comparing canonical keys (see :func:`positive_keys`).

    Examples
    --------
    >>> positive_mask(["yes", "no", "yes"], "yes").tolist()
    [True, False, True]
    >>> positive_mask(np.array([1.0, 0.0]), 1).tolist()
    [True, False]
    >>> positive_mask([True, False, "true", 0], 1).tolist()
    [True, False, True, False]
    """
    keys, codes = label_codes(labels, "labels")
    wanted = positive_keys(positive_class)
    positions = [index for index, key in enumerate(keys) if key in wanted]
    mask: NDArray[np.bool_] = np.isin(codes, positions)
    return mask


def _binary(name: str, values: ArrayLike) -> NDArray[np.bool_]:
    array = np.asarray(values).reshape(-1)
    if array.dtype == np.bool_:
        return array.astype(np.bool_, copy=False)
    try:
        numbers = array.astype(np.float64)
    except (TypeError, ValueError):
        numbers = np.full(array.size, np.nan)
    if not np.all((numbers == 0.0) | (numbers == 1.0)):
        raise DetectorError(
            f"{name} must be booleans or 0/1 (1 = positive class); "
            "map class labels with positive_mask() first"
        )
    positive: NDArray[np.bool_] = numbers == 1.0
    return positive


def _probabilities(name: str, values: ArrayLike, shape: tuple[int, ...]) -> NDArray[np.float64]:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise DetectorError(f"{name} must be numbers in [0, 1] (NaN = no score)") from None
    if array.shape != shape:
        raise DetectorError(f"{name} must have shape {shape} (got {array.shape})")
    finite = array[np.isfinite(array)]
    if np.isinf(array).any() or (finite.size and (finite.min() < 0.0 or finite.max() > 1.0)):
        raise DetectorError(f"{name} must be probabilities in [0, 1] (NaN = no score)")
    return array


def _log_loss_terms(probability_of_truth: NDArray[np.float64]) -> float:
    return float(-np.sum(np.log(np.clip(probability_of_truth, _EPS, 1.0 - _EPS))))


class BinaryStats:
    """Sufficient statistics of a binary classifier's labelled predictions.

    Parameters
    ----------
    score_bins
        Equal-width bins on [0, 1] for the score histograms, 2 to 1,000,000.

    Examples
    --------
    >>> rng = np.random.default_rng(2)
    >>> truth = rng.random(5_000) < 0.3
    >>> scores = np.clip(0.3 + 0.4 * truth + rng.normal(0, 0.2, 5_000), 0, 1)
    >>> stats = BinaryStats().update(truth, scores >= 0.5, scores)
    >>> auc = stats.compute(["roc_auc"])["roc_auc"]
    >>> round(auc.value, 4), auc.error_bound < 0.001
    (0.9228, True)
    >>> round(stats.compute(["accuracy"])["accuracy"].value, 4)
    0.8426
    """

    def __init__(self, score_bins: int = DEFAULT_SCORE_BINS) -> None:
        self.score_bins = check_int("score_bins", score_bins, 2, 1_000_000)
        self.true_positive = 0
        self.false_positive = 0
        self.true_negative = 0
        self.false_negative = 0
        self.n_scored = 0
        self.log_loss_sum = 0.0
        self.brier_sum = 0.0
        self.positive_scores: NDArray[np.int64] = np.zeros(self.score_bins, dtype=np.int64)
        self.negative_scores: NDArray[np.int64] = np.zeros(self.score_bins, dtype=np.int64)

    def update(
        self, y_true: ArrayLike, y_pred: ArrayLike, scores: ArrayLike | None = None
    ) -> BinaryStats:
        """Add a batch of labelled predictions; returns ``self``.

        Parameters
        ----------
        y_true, y_pred
            Booleans or 0/1, 1 meaning the positive class.
        scores
            Positive-class probabilities in [0, 1]; NaN where an event has none.
        """
        truth = _binary("y_true", y_true)
        predicted = _binary("y_pred", y_pred)
        if predicted.size != truth.size:
            raise DetectorError(
                f"y_pred must have as many values as y_true ({truth.size}, got {predicted.size})"
            )
        hits = int(np.count_nonzero(truth & predicted))
        positives = int(np.count_nonzero(truth))
        predicted_positives = int(np.count_nonzero(predicted))
        self.true_positive += hits
        self.false_negative += positives - hits
        self.false_positive += predicted_positives - hits
        self.true_negative += truth.size - positives - predicted_positives + hits
        if scores is not None:
            probability = _probabilities("scores", scores, truth.shape)
            scored = np.isfinite(probability)
            labels = truth[scored]
            positive_probability = probability[scored]
            self.n_scored += int(labels.size)
            truth_probability = np.where(labels, positive_probability, 1.0 - positive_probability)
            self.log_loss_sum += _log_loss_terms(truth_probability)
            self.brier_sum += float(np.sum((positive_probability - labels) ** 2))
            bins = np.minimum(
                (positive_probability * self.score_bins).astype(np.intp), self.score_bins - 1
            )
            self.positive_scores += np.bincount(bins[labels], minlength=self.score_bins)
            self.negative_scores += np.bincount(bins[~labels], minlength=self.score_bins)
        return self

    def merge(self, other: BinaryStats) -> BinaryStats:
        """A new object with both sets of predictions."""
        if not isinstance(other, BinaryStats) or other.score_bins != self.score_bins:
            raise DetectorError(f"other must be a BinaryStats with score_bins={self.score_bins}")
        merged = BinaryStats(self.score_bins)
        for name in (
            "true_positive",
            "false_positive",
            "true_negative",
            "false_negative",
            "n_scored",
            "log_loss_sum",
            "brier_sum",
        ):
            setattr(merged, name, getattr(self, name) + getattr(other, name))
        merged.positive_scores = self.positive_scores + other.positive_scores
        merged.negative_scores = self.negative_scores + other.negative_scores
        return merged

    @property
    def n_labelled(self) -> int:
        """Labelled predictions counted."""
        return self.true_positive + self.false_positive + self.true_negative + self.false_negative

    def roc_auc(self) -> tuple[float | None, float]:
        """ROC AUC from the score histograms and its error bound (None with one class)."""
        positives = self.positive_scores.astype(np.float64)
        negatives = self.negative_scores.astype(np.float64)
        pairs = positives.sum() * negatives.sum()
        if pairs == 0:
            return None, 0.0
        below = np.cumsum(negatives) - negatives
        auc = float(np.dot(positives, below + 0.5 * negatives) / pairs)
        bound = float(0.5 * np.dot(positives, negatives) / pairs)
        return auc, bound

    def compute(
        self, metrics: Iterable[str] = METRICS_BY_TASK["binary"], *, min_labelled: int = 1
    ) -> dict[str, PerformanceResult]:
        """The requested metrics (names from ``METRICS_BY_TASK["binary"]``).

        Parameters
        ----------
        metrics
            Metric names.
        min_labelled
            Fewest events (>= 1) for a value; fewer gives ``insufficient_data``.
        """
        names = check_metrics(metrics, "binary")
        min_labelled = check_min_labelled(min_labelled)
        tp, fp, fn = self.true_positive, self.false_positive, self.false_negative
        n = self.n_labelled
        scored = self.n_scored
        results: dict[str, PerformanceResult] = {}
        for name in names:
            if name == "accuracy":
                results[name] = result(name, ratio(tp + self.true_negative, n), n, min_labelled)
            elif name == "precision":
                results[name] = result(name, ratio(tp, tp + fp), n, min_labelled)
            elif name == "recall":
                results[name] = result(name, ratio(tp, tp + fn), n, min_labelled)
            elif name == "f1":
                results[name] = result(name, ratio(2 * tp, 2 * tp + fp + fn), n, min_labelled)
            elif name == "roc_auc":
                auc, bound = self.roc_auc()
                results[name] = result(name, auc, scored, min_labelled, bound)
            elif name == "log_loss":
                value = self.log_loss_sum / scored if scored else None
                results[name] = result(name, value, scored, min_labelled)
            else:
                value = self.brier_sum / scored if scored else None
                results[name] = result(name, value, scored, min_labelled)
        return results

    def to_bytes(self) -> bytes:
        """Compact, exact serialisation (see :mod:`detectors.codec`)."""
        fields: dict[str, Any] = {
            "true_positive": self.true_positive,
            "false_positive": self.false_positive,
            "true_negative": self.true_negative,
            "false_negative": self.false_negative,
            "n_scored": self.n_scored,
            "log_loss_sum": self.log_loss_sum,
            "brier_sum": self.brier_sum,
        }
        arrays = {"positive_scores": self.positive_scores, "negative_scores": self.negative_scores}
        return codec.encode("binary-stats", f"bins={self.score_bins}", fields, arrays)

    @classmethod
    def from_bytes(cls, data: bytes) -> BinaryStats:
        """Read what :meth:`to_bytes` wrote."""
        _, _, fields, arrays = codec.decode(data, "binary-stats")
        stats = cls(int(arrays["positive_scores"].size))
        for name in ("true_positive", "false_positive", "true_negative", "false_negative"):
            setattr(stats, name, int(fields[name]))
        stats.n_scored = int(fields["n_scored"])
        stats.log_loss_sum = float(fields["log_loss_sum"])
        stats.brier_sum = float(fields["brier_sum"])
        stats.positive_scores = arrays["positive_scores"]
        stats.negative_scores = arrays["negative_scores"]
        return stats

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BinaryStats):
            return NotImplemented
        return self.to_bytes() == other.to_bytes()

    __hash__ = None  # type: ignore[assignment]


class MulticlassStats:
    """Sufficient statistics of a multiclass classifier's labelled predictions.

    Parameters
    ----------
    classes
        Classes known up front (optional; classes seen later are added).

    Examples
    --------
    >>> stats = MulticlassStats().update(["a", "b", "c", "a"], ["a", "c", "c", "a"])
    >>> stats.classes, stats.confusion.tolist()
    (['a', 'b', 'c'], [[2, 0, 0], [0, 0, 1], [0, 0, 1]])
    >>> {name: round(r.value, 3) for name, r in stats.compute(["accuracy", "f1_macro"]).items()}
    {'accuracy': 0.75, 'f1_macro': 0.556}
    """

    def __init__(self, classes: Iterable[object] = ()) -> None:
        self.classes: list[str] = []
        self.confusion: NDArray[np.int64] = np.zeros((0, 0), dtype=np.int64)
        self.n_scored = 0
        self.log_loss_sum = 0.0
        keys = [category_key(value) for value in classes]
        if any(key is None for key in keys):
            raise DetectorError("classes must not contain missing values")
        self._add_classes(key for key in keys if key is not None)

    def _add_classes(self, keys: Iterable[str]) -> None:
        new = set(keys) - set(self.classes)
        if not new:
            return
        classes = sorted(set(self.classes) | new)
        position = np.array([classes.index(key) for key in self.classes], dtype=np.intp)
        confusion = np.zeros((len(classes), len(classes)), dtype=np.int64)
        confusion[np.ix_(position, position)] = self.confusion
        self.classes, self.confusion = classes, confusion

    def _positions(self, keys: Sequence[str]) -> NDArray[np.intp]:
        index = {key: position for position, key in enumerate(self.classes)}
        return np.array([index[key] for key in keys], dtype=np.intp)

    def update(
        self,
        y_true: CategoryValues,
        y_pred: CategoryValues,
        scores: ArrayLike | None = None,
        score_classes: Sequence[object] | None = None,
    ) -> MulticlassStats:
        """Add a batch of labelled predictions; returns ``self``.

        Parameters
        ----------
        y_true, y_pred
            Class labels (str, int, bool, float; compared by canonical key).
        scores
            Optional ``(n, len(score_classes))`` probabilities; a row with a NaN
            has no score. A true class without a score column counts as
            probability 0 (log-loss term ``-ln(eps)``).
        score_classes
            The classes of the score columns; required with ``scores``.
        """
        true_keys, true_codes = label_codes(y_true, "y_true")
        pred_keys, pred_codes = label_codes(y_pred, "y_pred")
        if pred_codes.size != true_codes.size:
            raise DetectorError(
                f"y_pred must have as many values as y_true ({true_codes.size}, "
                f"got {pred_codes.size})"
            )
        self._add_classes([*true_keys, *pred_keys])
        size = len(self.classes)
        truth = self._positions(true_keys)[true_codes] if true_codes.size else true_codes
        predicted = self._positions(pred_keys)[pred_codes] if pred_codes.size else pred_codes
        pairs = np.bincount(truth * size + predicted, minlength=size * size)
        self.confusion += pairs.reshape(size, size)
        if scores is not None:
            self._update_scores(truth, scores, score_classes)
        return self

    def _update_scores(
        self,
        truth: NDArray[np.intp],
        scores: ArrayLike,
        score_classes: Sequence[object] | None,
    ) -> None:
        if score_classes is None:
            raise DetectorError("score_classes must name the score columns when scores are given")
        column_keys = [category_key(value) for value in score_classes]
        probability = _probabilities("scores", scores, (truth.size, len(column_keys)))
        column_of = {key: column for column, key in enumerate(column_keys) if key is not None}
        columns = np.array([column_of.get(key, -1) for key in self.classes], dtype=np.intp)
        scored = np.all(np.isfinite(probability), axis=1)
        rows = np.flatnonzero(scored)
        truth_columns = columns[truth[rows]]
        truth_probability = np.where(
            truth_columns >= 0, probability[rows, np.maximum(truth_columns, 0)], 0.0
        )
        self.n_scored += int(rows.size)
        self.log_loss_sum += _log_loss_terms(truth_probability)

    def merge(self, other: MulticlassStats) -> MulticlassStats:
        """A new object with both sets of predictions (classes aligned by name)."""
        if not isinstance(other, MulticlassStats):
            raise DetectorError(f"other must be a MulticlassStats (got {type(other).__name__})")
        merged = MulticlassStats([*self.classes, *other.classes])
        for part in (self, other):
            position = merged._positions(part.classes)
            merged.confusion[np.ix_(position, position)] += part.confusion
        merged.n_scored = self.n_scored + other.n_scored
        merged.log_loss_sum = self.log_loss_sum + other.log_loss_sum
        return merged

    @property
    def n_labelled(self) -> int:
        """Labelled predictions counted."""
        return int(self.confusion.sum())

    def compute(
        self, metrics: Iterable[str] = METRICS_BY_TASK["multiclass"], *, min_labelled: int = 1
    ) -> dict[str, PerformanceResult]:
        """The requested metrics (names from ``METRICS_BY_TASK["multiclass"]``)."""
        names = check_metrics(metrics, "multiclass")
        min_labelled = check_min_labelled(min_labelled)
        n = self.n_labelled
        hits = np.diag(self.confusion).astype(np.float64)
        actual = self.confusion.sum(axis=1).astype(np.float64)
        predicted = self.confusion.sum(axis=0).astype(np.float64)
        present = (actual + predicted) > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = np.where(predicted > 0, hits / predicted, 0.0)[present]
            recall = np.where(actual > 0, hits / actual, 0.0)[present]
            f1 = np.where(actual + predicted > 0, 2 * hits / (actual + predicted), 0.0)[present]
        support = actual[present]
        values: dict[str, float | None] = {
            "accuracy": ratio(float(hits.sum()), n),
            "precision_macro": float(precision.mean()) if precision.size else 0.0,
            "recall_macro": float(recall.mean()) if recall.size else 0.0,
            "f1_macro": float(f1.mean()) if f1.size else 0.0,
            "f1_weighted": ratio(float(np.dot(f1, support)), float(support.sum())),
        }
        results: dict[str, PerformanceResult] = {}
        for name in names:
            if name == "log_loss":
                loss = self.log_loss_sum / self.n_scored if self.n_scored else None
                results[name] = result(name, loss, self.n_scored, min_labelled)
            else:
                results[name] = result(name, values[name], n, min_labelled)
        return results

    def to_bytes(self) -> bytes:
        """Compact, exact serialisation (see :mod:`detectors.codec`)."""
        fields: dict[str, Any] = {
            "classes": self.classes,
            "n_scored": self.n_scored,
            "log_loss_sum": self.log_loss_sum,
        }
        return codec.encode(
            "multiclass-stats", "classes", fields, {"confusion": self.confusion.reshape(-1)}
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> MulticlassStats:
        """Read what :meth:`to_bytes` wrote."""
        _, _, fields, arrays = codec.decode(data, "multiclass-stats")
        classes = [str(key) for key in fields["classes"]]
        size = len(classes)
        confusion = arrays["confusion"]
        if confusion.size != size * size or classes != sorted(set(classes)):
            raise DetectorError("data: corrupt multiclass statistics")
        stats = cls()
        stats.classes = classes
        stats.confusion = confusion.reshape(size, size)
        stats.n_scored = int(fields["n_scored"])
        stats.log_loss_sum = float(fields["log_loss_sum"])
        return stats

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MulticlassStats):
            return NotImplemented
        return self.to_bytes() == other.to_bytes()

    __hash__ = None  # type: ignore[assignment]
