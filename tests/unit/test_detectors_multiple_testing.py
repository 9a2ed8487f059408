"""Dataset-level drift decisions with multiple-testing control, and data quality."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.errors import DetectorError
from detectors.multiple_testing import dataset_drift, p_values_of
from detectors.profile import CategoricalProfile, NumericProfile
from detectors.quality import data_quality
from detectors.result import DriftResult, insufficient
from detectors.sketch import CategoricalSketch, NumericSketch


def _plain_benjamini_hochberg(p_values: list[float], alpha: float) -> set[int]:
    """Step-up: reject the k smallest, k the largest rank with p_(k) <= k alpha / m."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    largest = 0
    for rank, index in enumerate(order, start=1):
        if p_values[index] <= rank * alpha / m:
            largest = rank
    return set(order[:largest])


@given(
    p_values=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=40),
    alpha=st.floats(0.001, 0.5),
)
@settings(max_examples=200, deadline=None)
def test_benjamini_hochberg_matches_the_step_up_rule(p_values: list[float], alpha: float) -> None:
    named = {f"f{i}": p for i, p in enumerate(p_values)}
    decision = dataset_drift(named, alpha=alpha)

    def rule(level: float) -> set[str]:
        return {f"f{i}" for i in _plain_benjamini_hochberg(p_values, level)}

    # A p-value exactly at a cut k·alpha/m may go either way by the rounding of
    # the adjusted p-values, and with it every smaller one: the decision lies
    # between the rule at a hair below alpha and at a hair above it.
    assert rule(alpha * (1 - 1e-9)) <= set(decision.drifted_features) <= rule(alpha * (1 + 1e-9))
    assert decision.n_tested == len(p_values)


def test_bonferroni_and_none() -> None:
    p_values = {"a": 0.001, "b": 0.02, "c": 0.5, "d": None}
    bonferroni = dataset_drift(p_values, correction="bonferroni", alpha=0.05)
    assert bonferroni.drifted_features == ("a",)
    assert bonferroni.adjusted_p_values == pytest.approx({"a": 0.003, "b": 0.06, "c": 1.0})
    assert bonferroni.untested == ("d",)
    raw = dataset_drift(p_values, correction="none", alpha=0.05, min_features=2)
    assert raw.drifted_features == ("a", "b") and raw.drifted and raw.n_drifted == 2


def test_a_hundred_calm_features_do_not_fire_every_window() -> None:
    rng = np.random.default_rng(0)
    windows = 200
    uncorrected = corrected = 0
    for _ in range(windows):
        p_values = {f"f{i}": float(p) for i, p in enumerate(rng.uniform(size=100))}
        uncorrected += dataset_drift(p_values, correction="none").drifted
        corrected += dataset_drift(p_values).drifted
    assert uncorrected / windows > 0.95
    assert corrected / windows <= 0.1


def test_min_features_and_empty_input() -> None:
    decision = dataset_drift({"a": 1e-6, "b": 1e-6}, min_features=3)
    assert decision.n_drifted == 2 and not decision.drifted
    nothing = dataset_drift({})
    assert (nothing.n_tested, nothing.drifted, nothing.drifted_features) == (0, False, ())


def test_p_values_of_results() -> None:
    results = {
        "a": DriftResult("ks", 0.3, 0.001, 0.05, True, 100, 100),
        "b": insufficient("ks", 0.05, 100, 1),
        "c": DriftResult("psi", 0.3, None, 0.2, True, 100, 100),
    }
    assert p_values_of(results) == {"a": 0.001, "b": None, "c": None}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"correction": "holm"}, "correction must be one of benjamini_hochberg, bonferroni, none"),
        ({"alpha": 0.0}, r"alpha must be a number in \(0.0, 1.0\)"),
        ({"min_features": 0}, r"min_features must be an integer >= 1"),
    ],
)
def test_invalid_settings(options: dict[str, object], message: str) -> None:
    with pytest.raises(DetectorError, match=message):
        dataset_drift({"a": 0.1}, **options)  # type: ignore[arg-type]
    with pytest.raises(DetectorError, match=r"p_values must be numbers in \[0, 1\]"):
        dataset_drift({"a": 1.5})


def test_numeric_data_quality() -> None:
    profile = NumericProfile.build(np.linspace(0.0, 10.0, 1_000))
    sketch = NumericSketch.empty(profile).update(
        [-1.0, 0.0, 5.0, 10.0, 11.0, None, float("nan"), 3.0]
    )
    quality = data_quality(sketch)
    assert quality.n_total == 8
    assert quality.missing_rate == pytest.approx(2 / 8)
    assert quality.out_of_range_rate == pytest.approx(2 / 8)
    assert quality.unseen_category_rate is None
    assert set(quality.fields()) == {"missing_rate", "out_of_range_rate", "unseen_category_rate"}


def test_categorical_data_quality() -> None:
    profile = CategoricalProfile.build(["a"] * 8 + ["b"] * 1 + ["c"], max_categories=2)
    sketch = CategoricalSketch.empty(profile).update(["a", "c", "new", None])
    quality = data_quality(sketch)
    assert quality.missing_rate == 0.25
    assert quality.unseen_category_rate == 0.5
    assert quality.out_of_range_rate is None
    assert quality.reference_other_share == pytest.approx(0.1)


def test_quality_of_empty_and_all_missing_windows() -> None:
    profile = NumericProfile.build([1.0, 2.0])
    empty = data_quality(NumericSketch.empty(profile))
    assert (empty.n_total, empty.missing_rate, empty.out_of_range_rate) == (0, 0.0, 0.0)
    missing = data_quality(NumericSketch.empty(profile).update([None, None]))
    assert (missing.missing_rate, missing.out_of_range_rate) == (1.0, 0.0)
    nothing = NumericProfile.build([])
    assert data_quality(NumericSketch.empty(nothing).update([1.0])).out_of_range_rate == 1.0
    with pytest.raises(DetectorError, match="sketch must be"):
        data_quality("age")  # type: ignore[arg-type]
