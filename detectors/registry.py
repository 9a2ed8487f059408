"""Drift tests by name, with their default thresholds and decision direction.

The monitor configuration names tests (``drift.numeric_methods``,
``drift.thresholds``); the stream looks them up here. A test is a pure
function ``(profile, sketch, *, threshold, min_samples, **options) ->
DriftResult``; the settings (threshold, minimum sample size, options) live in
the configuration and are passed in, never baked into the computation.

=============  ===========  =================  ===================================
name           kinds        default threshold  drifted when
=============  ===========  =================  ===================================
ks             numeric      0.05               p-value <= threshold
psi            both         0.2                statistic >= threshold
wasserstein    numeric      0.1                statistic >= threshold (in std)
jensenshannon  both         0.1                statistic >= threshold
chi2           categorical  0.05               p-value <= threshold
=============  ===========  =================  ===================================
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from detectors import chi2, jensenshannon, ks, psi, wasserstein
from detectors.errors import DetectorError
from detectors.profile import CategoricalProfile, NumericProfile
from detectors.result import DEFAULT_MIN_SAMPLES, Decision, DriftResult
from detectors.sketch import CategoricalSketch, NumericSketch
from schemas.vocabulary import CATEGORICAL_DRIFT_METHODS, NUMERIC_DRIFT_METHODS, FeatureKind

DriftTest = Callable[..., DriftResult]


@dataclass(frozen=True)
class DriftMethod:
    """A registered drift test.

    Attributes
    ----------
    name
        Name used in the configuration and in the ``method`` tag.
    kinds
        Feature kinds the test is defined for.
    default_threshold
        Threshold used when the configuration does not set one.
    decision
        ``p_value_at_most`` or ``statistic_at_least``.
    test
        The function.

    Examples
    --------
    >>> method = METHODS["wasserstein"]
    >>> method.kinds, method.default_threshold, method.decision
    (('numeric',), 0.1, 'statistic_at_least')
    """

    name: str
    kinds: tuple[FeatureKind, ...]
    default_threshold: float
    decision: Decision
    test: DriftTest


METHODS: Mapping[str, DriftMethod] = {
    method.name: method
    for method in (
        DriftMethod("ks", ("numeric",), ks.DEFAULT_THRESHOLD, "p_value_at_most", ks.ks),
        DriftMethod(
            "psi", ("numeric", "categorical"), psi.DEFAULT_THRESHOLD, "statistic_at_least", psi.psi
        ),
        DriftMethod(
            "wasserstein",
            ("numeric",),
            wasserstein.DEFAULT_THRESHOLD,
            "statistic_at_least",
            wasserstein.wasserstein,
        ),
        DriftMethod(
            "jensenshannon",
            ("numeric", "categorical"),
            jensenshannon.DEFAULT_THRESHOLD,
            "statistic_at_least",
            jensenshannon.jensenshannon,
        ),
        DriftMethod("chi2", ("categorical",), chi2.DEFAULT_THRESHOLD, "p_value_at_most", chi2.chi2),
    )
}
"""Every drift test, by name."""


def get_method(name: str) -> DriftMethod:
    """The registered test called ``name``.

    Examples
    --------
    >>> get_method("psi").default_threshold
    0.2
    >>> get_method("kl")
    Traceback (most recent call last):
    ...
    detectors.errors.DetectorError: method 'kl' is not a drift test; valid: ks, psi, ...
    """
    method = METHODS.get(name)
    if method is None:
        raise DetectorError(f"method {name!r} is not a drift test; valid: {', '.join(METHODS)}")
    return method


def methods_for(kind: FeatureKind) -> tuple[str, ...]:
    """Names of the tests defined for a feature kind, in the vocabulary's order.

    Examples
    --------
    >>> methods_for("categorical")
    ('chi2', 'jensenshannon', 'psi')
    """
    names = NUMERIC_DRIFT_METHODS if kind == "numeric" else CATEGORICAL_DRIFT_METHODS
    return tuple(name for name in names if kind in METHODS[name].kinds)


def run_drift(
    name: str,
    profile: NumericProfile | CategoricalProfile,
    sketch: NumericSketch | CategoricalSketch,
    *,
    threshold: float | None = None,
    min_samples: int = DEFAULT_MIN_SAMPLES,
    **options: Any,
) -> DriftResult:
    """Run a registered test by name (threshold None = the test's default).

    Raises
    ------
    DetectorError
        For an unknown name, a test not defined for the profile's kind, or an
        invalid option (named).

    Examples
    --------
    >>> profile = CategoricalProfile.build(["a", "b"] * 100)
    >>> window = CategoricalSketch.empty(profile).update(["a"] * 150 + ["b"] * 50)
    >>> result = run_drift("chi2", profile, window)
    >>> result.method, result.threshold, result.drifted
    ('chi2', 0.05, True)
    >>> run_drift("ks", profile, window)
    Traceback (most recent call last):
    ...
    detectors.errors.DetectorError: ks is not defined for categorical features; valid: chi2, ...
    """
    method = get_method(name)
    kind: FeatureKind = profile.kind
    if kind not in method.kinds:
        raise DetectorError(
            f"{name} is not defined for {kind} features; valid: {', '.join(methods_for(kind))}"
        )
    accepted = [
        parameter.name
        for parameter in inspect.signature(method.test).parameters.values()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
        and parameter.name not in ("threshold", "min_samples")
    ]
    for option in options:
        if option not in accepted:
            valid = ", ".join(accepted) if accepted else "none"
            raise DetectorError(f"{name}: {option!r} is not an option; valid: {valid}")
    chosen = method.default_threshold if threshold is None else threshold
    return method.test(profile, sketch, threshold=chosen, min_samples=min_samples, **options)
