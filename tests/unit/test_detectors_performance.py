"""Performance metrics from sufficient statistics against scikit-learn."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from numpy.typing import NDArray
from sklearn import metrics as sk

from detectors.classification import BinaryStats, MulticlassStats, positive_mask
from detectors.errors import DetectorError
from detectors.regression import RegressionStats
from schemas.vocabulary import METRICS_BY_TASK


def _binary_data(
    seed: int, size: int = 4_000
) -> tuple[NDArray[np.bool_], NDArray[np.bool_], NDArray[np.float64]]:
    rng = np.random.default_rng(seed)
    truth = rng.random(size) < 0.35
    scores = 1 / (1 + np.exp(-(rng.normal(0, 1.5, size) + 1.8 * truth - 0.9)))
    threshold = [0.5, 0.3, 0.999][seed % 3]
    return truth, scores >= threshold, scores


@pytest.mark.parametrize("seed", range(6))
def test_binary_metrics_equal_scikit_learn(seed: int) -> None:
    truth, predicted, scores = _binary_data(seed)
    stats = BinaryStats()
    for part in np.array_split(np.arange(truth.size), 7):
        stats.update(truth[part], predicted[part], scores[part])
    results = stats.compute(METRICS_BY_TASK["binary"])
    expected = {
        "accuracy": sk.accuracy_score(truth, predicted),
        "precision": sk.precision_score(truth, predicted, zero_division=0),
        "recall": sk.recall_score(truth, predicted, zero_division=0),
        "f1": sk.f1_score(truth, predicted, zero_division=0),
        "log_loss": sk.log_loss(truth, scores),
        "brier": sk.brier_score_loss(truth, scores),
    }
    for name, value in expected.items():
        assert results[name].value == pytest.approx(value, abs=1e-9), name
        assert results[name].error_bound == 0.0
    auc = results["roc_auc"]
    exact_auc = sk.roc_auc_score(truth, scores)
    assert auc.value is not None
    assert abs(auc.value - exact_auc) <= auc.error_bound + 1e-12
    assert 0 < auc.error_bound < 0.002
    assert auc.n_labelled == truth.size


def test_auc_bound_is_attained_only_by_same_bin_pairs() -> None:
    # Scores that never share a bin with the other class: the histogram AUC is exact.
    rng = np.random.default_rng(1)
    positives = (rng.integers(500, 1000, 300) + 0.5) / 1000
    negatives = (rng.integers(0, 700, 300) + 0.5) / 1000
    negatives = negatives[~np.isin(negatives, positives)]
    scores = np.concatenate([positives, negatives])
    truth = np.concatenate([np.ones(positives.size, bool), np.zeros(negatives.size, bool)])
    stats = BinaryStats().update(truth, scores > 0.5, scores)
    auc, bound = stats.roc_auc()
    assert bound == 0.0
    assert auc == pytest.approx(sk.roc_auc_score(truth, scores), abs=1e-12)
    # Coarse bins: the error grows but stays within the stated bound.
    coarse = BinaryStats(score_bins=4).update(truth, scores > 0.5, scores)
    auc, bound = coarse.roc_auc()
    assert auc is not None and bound > 0
    assert abs(auc - sk.roc_auc_score(truth, scores)) <= bound


def test_binary_edge_cases() -> None:
    stats = BinaryStats().update([1, 1, 1], [0, 0, 0], [0.2, 0.4, np.nan])
    results = stats.compute()
    assert results["roc_auc"].value is None  # one class only
    assert results["precision"].value == 0.0  # no predicted positives, as scikit-learn
    assert results["accuracy"].value == 0.0
    assert results["log_loss"].n_labelled == 2  # the NaN score is not a score
    empty = BinaryStats().compute(min_labelled=1)
    assert all(result.insufficient_data and result.value is None for result in empty.values())
    few = BinaryStats().update([1, 0], [1, 0]).compute(["accuracy"], min_labelled=10)
    assert few["accuracy"].insufficient_data and few["accuracy"].value is None


def test_binary_merge_and_bytes() -> None:
    truth, predicted, scores = _binary_data(3, 1_000)
    left = BinaryStats().update(truth[:400], predicted[:400], scores[:400])
    right = BinaryStats().update(truth[400:], predicted[400:], scores[400:])
    whole = BinaryStats().update(truth, predicted, scores)
    merged = left.merge(right)
    assert np.array_equal(merged.positive_scores, whole.positive_scores)
    assert merged.true_positive == whole.true_positive
    assert merged.log_loss_sum == pytest.approx(whole.log_loss_sum, rel=1e-14)
    assert BinaryStats.from_bytes(merged.to_bytes()) == merged
    with pytest.raises(DetectorError, match="score_bins=1000"):
        merged.merge(BinaryStats(score_bins=10))


def test_positive_mask_maps_labels() -> None:
    assert positive_mask(["churn", "stay", "churn"], "churn").tolist() == [True, False, True]
    assert positive_mask([True, False], True).tolist() == [True, False]
    assert positive_mask([0, 0], 1).tolist() == [False, False]
    assert positive_mask(["Yes", "yes"], "yes").tolist() == [False, True]


@pytest.mark.parametrize("positive", [1, True, "true", "1"])
def test_a_yes_no_class_is_positive_however_it_is_spelled(positive: object) -> None:
    # Labels from a JSON label source (true/false), predictions from a serving
    # app writing 0/1: before, every label was negative and accuracy read 1.0.
    labels = [True, False, True, True, False, False]
    predicted = [1, 0, 0, 1, 1, 0]
    scores = [0.9, 0.2, 0.4, 0.8, 0.7, 0.1]
    stats = BinaryStats().update(
        positive_mask(labels, positive), positive_mask(predicted, positive), scores
    )
    computed = {name: result.value for name, result in stats.compute().items()}
    truth = [int(value) for value in labels]
    assert computed["accuracy"] == pytest.approx(sk.accuracy_score(truth, predicted))
    assert computed["f1"] == pytest.approx(sk.f1_score(truth, predicted))
    assert computed["roc_auc"] == pytest.approx(sk.roc_auc_score(truth, scores))
    assert positive_mask(labels, not positive if isinstance(positive, bool) else 0).tolist() == [
        not value for value in labels
    ]


def test_binary_invalid_inputs() -> None:
    with pytest.raises(DetectorError, match="y_true must be booleans or 0/1"):
        BinaryStats().update(["yes"], [1])
    with pytest.raises(DetectorError, match="y_pred must have as many values as y_true"):
        BinaryStats().update([1, 0], [1])
    with pytest.raises(DetectorError, match=r"scores must be probabilities in \[0, 1\]"):
        BinaryStats().update([1], [1], [1.5])
    with pytest.raises(DetectorError, match=r"score_bins must be an integer in \[2, 1000000\]"):
        BinaryStats(score_bins=1)
    with pytest.raises(DetectorError, match="'rmse' is not a binary metric"):
        BinaryStats().compute(["rmse"])
    with pytest.raises(DetectorError, match="min_labelled must be an integer >= 1"):
        BinaryStats().compute(min_labelled=0)


def _multiclass_data(seed: int) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
    rng = np.random.default_rng(seed)
    size, classes = 3_000, 5
    truth = rng.choice(classes, size, p=[0.4, 0.3, 0.2, 0.08, 0.02])
    logits = rng.normal(0, 1, (size, classes))
    logits[np.arange(size), truth] += 1.5
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    predicted = probabilities.argmax(axis=1)
    predicted[predicted == 4] = 3  # class 4 is never predicted
    return truth, predicted, probabilities


@pytest.mark.parametrize("seed", range(4))
def test_multiclass_metrics_equal_scikit_learn(seed: int) -> None:
    truth, predicted, probabilities = _multiclass_data(seed)
    stats = MulticlassStats()
    for part in np.array_split(np.arange(truth.size), 5):
        stats.update(truth[part], predicted[part], probabilities[part], score_classes=range(5))
    results = stats.compute(METRICS_BY_TASK["multiclass"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = {
            "accuracy": sk.accuracy_score(truth, predicted),
            "precision_macro": sk.precision_score(
                truth, predicted, average="macro", zero_division=0
            ),
            "recall_macro": sk.recall_score(truth, predicted, average="macro", zero_division=0),
            "f1_macro": sk.f1_score(truth, predicted, average="macro", zero_division=0),
            "f1_weighted": sk.f1_score(truth, predicted, average="weighted", zero_division=0),
            "log_loss": sk.log_loss(truth, probabilities, labels=range(5)),
        }
    for name, value in expected.items():
        assert results[name].value == pytest.approx(value, abs=1e-9), name


def test_multiclass_merge_aligns_classes_by_name() -> None:
    first = MulticlassStats().update(["cat", "dog"], ["cat", "cat"])
    second = MulticlassStats().update(["bird", "dog", 3], ["bird", "dog", 3.0])
    merged = first.merge(second)
    assert merged.classes == ["3", "bird", "cat", "dog"]
    assert merged == second.merge(first)
    whole = MulticlassStats().update(
        ["cat", "dog", "bird", "dog", "3"], ["cat", "cat", "bird", "dog", "3"]
    )
    assert merged == whole
    assert MulticlassStats.from_bytes(merged.to_bytes()) == merged
    assert merged.compute(["accuracy"])["accuracy"].value == pytest.approx(0.8)


def test_multiclass_invalid_inputs() -> None:
    with pytest.raises(DetectorError, match="y_true must not contain missing values"):
        MulticlassStats().update(["a", None], ["a", "b"])
    with pytest.raises(DetectorError, match="score_classes must name the score columns"):
        MulticlassStats().update(["a"], ["a"], [[1.0]])
    with pytest.raises(DetectorError, match=r"scores must have shape \(1, 2\)"):
        MulticlassStats().update(["a"], ["a"], [[1.0]], score_classes=["a", "b"])


def _regression_data(seed: int, offset: float = 0.0) -> tuple[NDArray[np.float64], ...]:
    rng = np.random.default_rng(seed)
    target = offset + rng.gamma(2.0, 10.0, 5_000)
    predicted = target + rng.normal(0, 4.0, target.size)
    return target, predicted


@pytest.mark.parametrize("seed", range(4))
def test_regression_metrics_equal_scikit_learn(seed: int) -> None:
    target, predicted = _regression_data(seed)
    stats = RegressionStats()
    for part in np.array_split(np.arange(target.size), 9):
        stats.update(target[part], predicted[part])
    results = stats.compute(METRICS_BY_TASK["regression"])
    expected = {
        "mae": sk.mean_absolute_error(target, predicted),
        "rmse": sk.root_mean_squared_error(target, predicted),
        "mape": sk.mean_absolute_percentage_error(target, predicted),
        "r2": sk.r2_score(target, predicted),
    }
    for name, value in expected.items():
        assert results[name].value == pytest.approx(value, abs=1e-9), name


def test_r2_survives_a_large_offset() -> None:
    rng = np.random.default_rng(4)
    target = 1e9 + rng.normal(0, 1, 20_000)
    predicted = target + rng.normal(0, 0.5, target.size)
    stats = RegressionStats()
    for part in np.array_split(np.arange(target.size), 13):
        stats.update(target[part], predicted[part])
    assert stats.compute(["r2"])["r2"].value == pytest.approx(
        sk.r2_score(target, predicted), abs=1e-9
    )


@pytest.mark.parametrize("value", [0.1, 1 / 3, 123.456, -7.77])
def test_a_constant_target_gives_r2_zero_however_it_was_batched(value: float) -> None:
    # A hundred equal targets whose float mean is not the value itself.
    targets, predicted = [value] * 100, [value + 0.1] * 100
    whole = RegressionStats().update(targets, predicted)
    one_by_one = RegressionStats()
    for target, guess in zip(targets, predicted, strict=True):
        one_by_one.update([target], [guess])
    halves = RegressionStats().update(targets[:37], predicted[:37])
    halves = halves.merge(RegressionStats().update(targets[37:], predicted[37:]))
    for stats in (whole, one_by_one, halves):
        assert stats.compute(["r2"])["r2"].value == 0.0


def test_regression_zero_targets_constant_targets_and_merge() -> None:
    stats = RegressionStats().update([0.0, 2.0, 4.0], [1.0, 2.0, 5.0])
    results = stats.compute()
    assert stats.n_zero_target == 1
    assert results["mape"].value == pytest.approx(0.125)  # (0 + 1/4) / 2
    assert results["mape"].n_labelled == 2
    constant = RegressionStats().update([3.0, 3.0], [3.0, 3.0]).compute(["r2"])
    assert constant["r2"].value == 1.0
    off = RegressionStats().update([3.0, 3.0], [2.0, 3.0]).compute(["r2"])
    assert off["r2"].value == 0.0
    target, predicted = _regression_data(1, 50.0)
    left = RegressionStats().update(target[:1_000], predicted[:1_000])
    right = RegressionStats().update(target[1_000:], predicted[1_000:])
    whole = RegressionStats().update(target, predicted)
    for merged in (left.merge(right), right.merge(left)):
        assert merged.n == whole.n
        for name in ("mae", "rmse", "mape", "r2"):
            assert merged.compute([name])[name].value == pytest.approx(
                whole.compute([name])[name].value, rel=1e-12
            )
    assert RegressionStats.from_bytes(whole.to_bytes()) == whole
    assert all(result.value is None for result in RegressionStats().compute().values())


def test_regression_invalid_inputs() -> None:
    with pytest.raises(DetectorError, match="y_true must be finite numbers"):
        RegressionStats().update([np.nan], [1.0])
    with pytest.raises(DetectorError, match="y_pred must have as many values"):
        RegressionStats().update([1.0], [1.0, 2.0])
    with pytest.raises(DetectorError, match="y_pred must be numbers"):
        RegressionStats().update([1.0], ["a lot"])
