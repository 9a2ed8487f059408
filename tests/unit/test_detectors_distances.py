"""Wasserstein, Jensen–Shannon, chi-square, the registry, and edge cases of every test."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray
from scipy import stats
from scipy.spatial import distance

from detectors.chi2 import chi2
from detectors.coarse import coarse_edges
from detectors.errors import DetectorError
from detectors.jensenshannon import jensenshannon
from detectors.ks import ks
from detectors.profile import CategoricalProfile, NumericProfile
from detectors.registry import METHODS, get_method, methods_for, run_drift
from detectors.result import DriftResult
from detectors.sketch import CategoricalSketch, NumericSketch
from detectors.wasserstein import wasserstein
from schemas.vocabulary import CATEGORICAL_DRIFT_METHODS, NUMERIC_DRIFT_METHODS


def test_registry_matches_the_vocabulary() -> None:
    assert set(METHODS) == set(NUMERIC_DRIFT_METHODS) | set(CATEGORICAL_DRIFT_METHODS)
    assert methods_for("numeric") == NUMERIC_DRIFT_METHODS
    assert methods_for("categorical") == CATEGORICAL_DRIFT_METHODS
    assert get_method("ks").decision == "p_value_at_most"
    assert get_method("chi2").decision == "p_value_at_most"
    for name in ("psi", "wasserstein", "jensenshannon"):
        assert get_method(name).decision == "statistic_at_least"
    defaults = {name: method.default_threshold for name, method in METHODS.items()}
    assert defaults == {
        "ks": 0.05,
        "psi": 0.2,
        "wasserstein": 0.1,
        "jensenshannon": 0.1,
        "chi2": 0.05,
    }


def test_run_drift_uses_defaults_and_checks_options() -> None:
    rng = np.random.default_rng(0)
    profile = NumericProfile.build(rng.normal(size=5_000))
    sketch = NumericSketch.empty(profile).update(rng.normal(size=500))
    assert run_drift("psi", profile, sketch).threshold == 0.2
    assert run_drift("psi", profile, sketch, threshold=0.05, bins=5).threshold == 0.05
    with pytest.raises(DetectorError, match="psi: 'colour' is not an option; valid: bins, epsilon"):
        run_drift("psi", profile, sketch, colour="red")
    with pytest.raises(DetectorError, match="ks: 'bins' is not an option; valid: none"):
        run_drift("ks", profile, sketch, bins=5)
    with pytest.raises(DetectorError, match="chi2 is not defined for numeric features"):
        run_drift("chi2", profile, sketch)
    with pytest.raises(DetectorError, match="is not a drift test; valid: ks, psi"):
        run_drift("kl", profile, sketch)


def _bin_half_widths(edges: NDArray[np.float64], counts: NDArray[np.int64]) -> float:
    inner = counts[2:-1:2]
    widths = np.diff(edges)
    return float(np.max(widths[inner > 0], initial=0.0)) / 2


@pytest.mark.parametrize("seed", range(4))
def test_wasserstein_within_half_a_bin_of_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    reference = rng.gamma(2.0, 3.0, 20_000)
    current = rng.gamma(2.0, 3.0 + 0.3 * seed, 4_000)
    current = current[current <= reference.max()]
    profile = NumericProfile.build(reference, bins=256)
    sketch = NumericSketch.empty(profile).update(current)
    result = wasserstein(profile, sketch)
    exact = stats.wasserstein_distance(reference, current) / reference.std()
    bound = (
        _bin_half_widths(profile.edges, profile.counts)
        + _bin_half_widths(profile.edges, sketch.counts)
    ) / reference.std()
    assert result.statistic is not None
    assert abs(result.statistic - exact) <= bound + 1e-12
    assert result.drifted == (result.statistic >= 0.1)


def test_wasserstein_is_exact_on_discrete_data() -> None:
    rng = np.random.default_rng(5)
    reference = rng.poisson(3, 10_000).astype(float)
    current = rng.poisson(3.5, 2_000).astype(float)
    current = current[current <= reference.max()]
    profile = NumericProfile.build(reference)
    result = wasserstein(profile, NumericSketch.empty(profile).update(current))
    exact = stats.wasserstein_distance(reference, current) / reference.std()
    assert result.statistic == pytest.approx(exact, abs=1e-12)


def test_wasserstein_places_out_of_range_mass_between_the_extremes() -> None:
    profile = NumericProfile.build(np.arange(0.0, 11.0))  # std sqrt(10)
    sketch = NumericSketch.empty(profile).update(np.full(200, 30.0))
    result = wasserstein(profile, sketch, min_samples=1)
    # All mass at (10 + 30) / 2 = 20, the reference mean is 5.
    assert result.statistic == pytest.approx(15.0 / math.sqrt(10.0), abs=1e-12)


def test_jensenshannon_equals_scipy_on_the_same_bins() -> None:
    rng = np.random.default_rng(6)
    reference = rng.normal(size=20_000)
    current = rng.normal(0.3, 1.2, 3_000)
    profile = NumericProfile.build(reference)
    result = jensenshannon(profile, NumericSketch.empty(profile).update(current))
    edges = coarse_edges(profile)
    p = np.bincount(np.searchsorted(edges, reference, side="left"), minlength=edges.size + 1)
    q = np.bincount(np.searchsorted(edges, current, side="left"), minlength=edges.size + 1)
    assert result.statistic == pytest.approx(distance.jensenshannon(p, q, base=2), abs=1e-12)


def test_categorical_jensenshannon_and_chi2_equal_scipy() -> None:
    rng = np.random.default_rng(7)
    reference = rng.choice(["a", "b", "c", "d"], 4_000, p=[0.5, 0.3, 0.15, 0.05])
    current = rng.choice(["a", "b", "c", "z"], 600, p=[0.4, 0.3, 0.2, 0.1])
    profile = CategoricalProfile.build(reference, max_categories=3)
    sketch = CategoricalSketch.empty(profile).update(current)
    buckets = [["a"], ["b"], ["c"], ["d", "z"]]
    p = np.array([np.isin(reference, bucket).sum() for bucket in buckets])
    q = np.array([np.isin(current, bucket).sum() for bucket in buckets])
    js = jensenshannon(profile, sketch)
    assert js.statistic == pytest.approx(distance.jensenshannon(p, q, base=2), abs=1e-12)
    result = chi2(profile, sketch)
    expected = stats.chi2_contingency(np.vstack([p, q]))
    assert result.statistic == pytest.approx(expected.statistic, rel=1e-12)
    assert result.p_value == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)
    assert result.drifted


def test_chi2_controls_false_alarms() -> None:
    # Under no drift, with a fresh reference sample each time, the two-sample test
    # fires at about its level (a one-sample test against the reference shares would not).
    rng = np.random.default_rng(8)
    categories = ["a", "b", "c", "d", "e"]
    shares = [0.4, 0.25, 0.2, 0.1, 0.05]
    alarms = 0
    for _ in range(300):
        profile = CategoricalProfile.build(rng.choice(categories, 2_000, p=shares))
        window = CategoricalSketch.empty(profile).update(rng.choice(categories, 500, p=shares))
        alarms += chi2(profile, window).drifted
    assert alarms / 300 <= 0.1


def _assert_defined(result: DriftResult) -> None:
    for value in (result.statistic, result.p_value, result.threshold):
        assert value is None or math.isfinite(value)
    if result.p_value is not None:
        assert 0.0 <= result.p_value <= 1.0
    if result.insufficient_data:
        assert result.statistic is None and result.p_value is None and not result.drifted


NUMERIC_REFERENCE = NumericProfile.build(np.random.default_rng(9).normal(size=2_000))
NUMERIC_WINDOWS: dict[str, list[float | None]] = {
    "empty": [],
    "all missing": [None, float("nan"), float("inf")] * 50,
    "all below": [-1e6] * 150,
    "all above": [1e300] * 150,
    "one value repeated": [0.25] * 150,
    "tiny": [0.1, 0.2],
}


@pytest.mark.parametrize("window", sorted(NUMERIC_WINDOWS))
@pytest.mark.parametrize("method", NUMERIC_DRIFT_METHODS)
@pytest.mark.parametrize("min_samples", [1, 100])
def test_numeric_edge_cases_are_defined(window: str, method: str, min_samples: int) -> None:
    sketch = NumericSketch.empty(NUMERIC_REFERENCE).update(
        np.array(NUMERIC_WINDOWS[window], dtype=float)
    )
    result = run_drift(method, NUMERIC_REFERENCE, sketch, min_samples=min_samples)
    _assert_defined(result)
    if sketch.n < min_samples:
        assert result.insufficient_data
    if window.startswith("all ") and window != "all missing" and not result.insufficient_data:
        assert result.drifted


@pytest.mark.parametrize(
    "reference",
    [[], [None] * 10, [3.0] * 200, [1.0, 2.0]],
    ids=["empty", "all-missing", "constant", "two-values"],
)
@pytest.mark.parametrize("method", NUMERIC_DRIFT_METHODS)
def test_degenerate_references_are_defined(reference: list[float | None], method: str) -> None:
    profile = NumericProfile.build(np.array(reference, dtype=float))
    for window in ([3.0] * 150, [2.0, 4.0] * 75, []):
        sketch = NumericSketch.empty(profile).update(window)
        _assert_defined(run_drift(method, profile, sketch, min_samples=1))


CATEGORICAL_REFERENCE = CategoricalProfile.build(["x", "y", "y", "z"] * 50)
CATEGORICAL_WINDOWS: dict[str, list[object]] = {
    "empty": [],
    "all missing": [None] * 150,
    "single category": ["y"] * 150,
    "new categories only": ["new", "other"] * 75,
    "known and new": ["x", "y", "brand-new"] * 50,
}


@pytest.mark.parametrize("window", sorted(CATEGORICAL_WINDOWS))
@pytest.mark.parametrize("method", CATEGORICAL_DRIFT_METHODS)
def test_categorical_edge_cases_are_defined(window: str, method: str) -> None:
    sketch = CategoricalSketch.empty(CATEGORICAL_REFERENCE).update(CATEGORICAL_WINDOWS[window])
    result = run_drift(method, CATEGORICAL_REFERENCE, sketch, min_samples=1)
    _assert_defined(result)
    if window in ("single category", "new categories only"):
        assert result.drifted


@pytest.mark.parametrize("method", CATEGORICAL_DRIFT_METHODS)
def test_single_category_on_both_sides(method: str) -> None:
    profile = CategoricalProfile.build(["only"] * 300)
    result = run_drift(method, profile, CategoricalSketch.empty(profile).update(["only"] * 200))
    _assert_defined(result)
    assert not result.drifted
    assert result.statistic == 0.0


@pytest.mark.parametrize(
    ("method", "options", "message"),
    [
        ("ks", {"threshold": 0.0}, r"threshold must be a number in \(0.0, 1.0\) \(got 0.0\)"),
        ("ks", {"threshold": 1.5}, r"threshold must be a number in \(0.0, 1.0\)"),
        ("ks", {"min_samples": 0}, r"min_samples must be an integer >= 1 \(got 0\)"),
        ("psi", {"threshold": -1.0}, r"threshold must be a number in \[0.0, inf\)"),
        ("psi", {"bins": 1}, r"bins must be an integer in \[2, 1000\] \(got 1\)"),
        ("psi", {"epsilon": 0.0}, r"epsilon must be a number in \(0.0, 0.1\]"),
        ("psi", {"sample_size_alpha": 1.0}, r"sample_size_alpha must be a number in \(0.0, 1.0\)"),
        ("wasserstein", {"threshold": float("nan")}, r"threshold must be a number in \[0.0, inf"),
        ("jensenshannon", {"threshold": 2.0}, r"threshold must be a number in \[0.0, 1.0\]"),
        ("jensenshannon", {"bins": 10_000}, r"bins must be an integer in \[2, 1000\]"),
    ],
)
def test_invalid_parameters_name_the_parameter_and_range(
    method: str, options: dict[str, Any], message: str
) -> None:
    sketch = NumericSketch.empty(NUMERIC_REFERENCE).update([0.0] * 200)
    with pytest.raises(DetectorError, match=message):
        run_drift(method, NUMERIC_REFERENCE, sketch, **options)


def test_mismatched_profile_and_sketch_are_refused() -> None:
    numeric = NumericSketch.empty(NUMERIC_REFERENCE)
    with pytest.raises(DetectorError, match="ks is defined for numeric features"):
        ks(CATEGORICAL_REFERENCE, numeric)  # type: ignore[arg-type]
    with pytest.raises(DetectorError, match="sketch must be a CategoricalSketch"):
        chi2(CATEGORICAL_REFERENCE, numeric)  # type: ignore[arg-type]
    other = NumericProfile.build([1.0, 2.0])
    with pytest.raises(DetectorError, match="another reference profile"):
        wasserstein(other, numeric)


@pytest.mark.parametrize("moved_to", [7.0, -7.0])
def test_jensen_shannon_sees_a_constant_reference_move(moved_to: float) -> None:
    # Bins below, at and above the reference's one value: all the mass changes bin.
    profile = NumericProfile.build([0.0] * 1_000)
    result = jensenshannon(profile, NumericSketch.empty(profile).update([moved_to] * 500))
    expected = distance.jensenshannon(
        [0, 1_000, 0], [500, 0, 0] if moved_to < 0 else [0, 0, 500], base=2
    )
    assert result.statistic == pytest.approx(expected) and result.statistic == pytest.approx(1.0)
    assert result.drifted
