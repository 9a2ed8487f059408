"""Generic ``threshold`` rules: a measurement's field, read from an observation.

A ``threshold`` rule names a series the way the InfluxDB layout does
(``select: {measurement, field, tags}``); the engine reads the same number
from the observation instead of querying the store. Supported:

=================  =======================================  ================================
measurement        fields                                   tags
=================  =======================================  ================================
feature_drift      statistic, p_value, threshold, drifted,  model_id, model_version,
                   n_current, n_reference                   segment, feature, method
prediction_drift   same as feature_drift                    model_id, model_version,
                                                            segment, method
model_performance  value, n_labelled, coverage, is_final    model_id, model_version,
                                                            segment, metric
data_quality       missing_rate, out_of_range_rate,         model_id, model_version, feature
                   unseen_category_rate
volume             predictions                              model_id, model_version, segment
change_points      detections, first_at_s                   model_id, model_version,
                                                            segment, detector
=================  =======================================  ================================

Not supported (the observation does not carry them): ``label_lag``, the
``labels``, ``late_predictions`` and ``dead_letters`` fields of ``volume``, the
``n_labelled`` and ``is_final`` fields of ``change_points``, and ``alerts``.
Booleans (``drifted``, ``is_final``) read as 1 or 0. ``first_at_s`` of a
window without a change is not a value (the point writes −1).

Without a ``method`` tag a drift series uses the rule's ``metric``, else the
feature's first configured method present in the window. A
``model_performance`` series needs the ``metric`` tag or the rule's
``metric``; its ``value`` field is only read on windows whose label coverage
reaches the rule's ``min_coverage`` (like ``performance_drop``). Results with
insufficient data are skipped, as they are never written to the store.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from alerts.observation import WindowObservation
from detectors.result import DriftResult
from schemas.config import ModelConfig, SelectorConfig
from schemas.outputs import EvidenceValue

_DRIFT_FIELDS = ("statistic", "p_value", "threshold", "drifted", "n_current", "n_reference")

SUPPORTED_FIELDS: Mapping[str, tuple[str, ...]] = {
    "feature_drift": _DRIFT_FIELDS,
    "prediction_drift": _DRIFT_FIELDS,
    "model_performance": ("value", "n_labelled", "coverage", "is_final"),
    "data_quality": ("missing_rate", "out_of_range_rate", "unseen_category_rate"),
    "volume": ("predictions",),
    "change_points": ("detections", "first_at_s"),
}
"""Measurement → fields a threshold rule can watch."""

SUPPORTED_TAGS: Mapping[str, tuple[str, ...]] = {
    "feature_drift": ("model_id", "model_version", "segment", "feature", "method"),
    "prediction_drift": ("model_id", "model_version", "segment", "method"),
    "model_performance": ("model_id", "model_version", "segment", "metric"),
    "data_quality": ("model_id", "model_version", "feature"),
    "volume": ("model_id", "model_version", "segment"),
    "change_points": ("model_id", "model_version", "segment", "detector"),
}
"""Measurement → tags a threshold rule can filter on."""


@dataclass(frozen=True)
class SeriesValue:
    """One number of the selected series in one window.

    Examples
    --------
    >>> SeriesValue(None, "predictions", 812.0, 812).metric
    'predictions'
    """

    feature: str | None
    metric: str
    value: float
    n: int | None
    evidence: Mapping[str, EvidenceValue] = field(default_factory=dict)


def selector_problem(select: SelectorConfig, metric: str | None) -> str | None:
    """Why the engine cannot evaluate ``select``, or None when it can.

    Examples
    --------
    >>> selector_problem(SelectorConfig(measurement="label_lag", field="p95_s"), None)
    'select.measurement label_lag is not observed by the alert engine; supported: ...'
    >>> selector_problem(SelectorConfig(measurement="volume", field="predictions"), None) is None
    True
    """
    fields = SUPPORTED_FIELDS.get(select.measurement)
    if fields is None:
        return (
            f"select.measurement {select.measurement} is not observed by the alert engine; "
            f"supported: {', '.join(SUPPORTED_FIELDS)}"
        )
    if select.field not in fields:
        return (
            f"select.field {select.field} of {select.measurement} is not observed by the alert "
            f"engine; supported: {', '.join(fields)}"
        )
    tags = SUPPORTED_TAGS[select.measurement]
    for tag in select.tags:
        if tag not in tags:
            return (
                f"select.tags.{tag} is not a tag of {select.measurement}; valid: {', '.join(tags)}"
            )
    if select.measurement == "model_performance" and "metric" not in select.tags and metric is None:
        return "a threshold rule on model_performance needs select.tags.metric or metric"
    return None


def _matches(select: SelectorConfig, observation: WindowObservation) -> bool:
    for tag in ("model_id", "model_version", "segment"):
        wanted = select.tags.get(tag)
        if wanted is not None and wanted != getattr(observation, tag):
            return False
    return True


def default_method(results: Mapping[str, DriftResult], configured: Sequence[str]) -> str | None:
    """The first configured method present in ``results``, else the first present.

    Examples
    --------
    >>> from detectors.result import DriftResult
    >>> results = {"ks": DriftResult("ks", 0.1, 0.3, 0.05, False, 500, 500),
    ...            "psi": DriftResult("psi", 0.05, None, 0.2, False, 500, 500)}
    >>> default_method(results, ("psi", "ks")), default_method(results, ("chi2",))
    ('psi', 'ks')
    """
    for method in configured:
        if method in results:
            return method
    return next(iter(results), None)


def _drift_value(
    select: SelectorConfig, result: DriftResult
) -> tuple[str, float, int, dict[str, EvidenceValue]] | None:
    if result.insufficient_data or result.statistic is None:
        return None
    raw: float | int | bool | None = getattr(result, select.field)
    if raw is None:
        return None
    metric = result.method if select.field == "statistic" else f"{result.method}.{select.field}"
    evidence: dict[str, EvidenceValue] = {
        "method": result.method,
        "statistic": result.statistic,
        "p_value": result.p_value,
        "test_threshold": result.threshold,
        "drifted": result.drifted,
        "n_current": result.n_current,
        "n_reference": result.n_reference,
    }
    return metric, float(raw), result.n_current, evidence


def series_values(
    select: SelectorConfig,
    observation: WindowObservation,
    *,
    metric: str | None = None,
    features: Sequence[str] = (),
    model: ModelConfig | None = None,
    min_coverage: float = 0.0,
) -> list[SeriesValue]:
    """The selected series' numbers in one observation (empty when it lacks them).

    Parameters
    ----------
    select
        The rule's selector.
    observation
        The window.
    metric
        The rule's ``metric`` (drift method or performance metric when the
        selector has no tag for it).
    features
        The rule's feature filter (empty: all).
    model
        The model's configuration, for its drift methods (may be None).
    min_coverage
        Least label coverage for ``model_performance`` ``value``.

    Examples
    --------
    >>> from datetime import UTC, datetime
    >>> start = datetime(2026, 11, 23, 10, tzinfo=UTC)
    >>> observation = WindowObservation("churn", "3", "all", start, start.replace(hour=11),
    ...                                 predictions=812)
    >>> series_values(SelectorConfig(measurement="volume", field="predictions"), observation)
    [SeriesValue(feature=None, metric='predictions', value=812.0, n=812, evidence={})]
    """
    if not _matches(select, observation):
        return []
    measurement = select.measurement
    if measurement in ("feature_drift", "prediction_drift"):
        return _drift_series(select, observation, metric, features, model)
    if measurement == "model_performance":
        return _performance_series(select, observation, metric, min_coverage)
    if measurement == "data_quality":
        return _quality_series(select, observation, features)
    if measurement == "volume" and observation.predictions is not None:
        count = observation.predictions
        return [SeriesValue(None, "predictions", float(count), count)]
    change = observation.change_points
    if measurement == "change_points" and change is not None:
        if select.tags.get("detector", change.detector) != change.detector:
            return []
        if select.field == "first_at_s" and not change.detections:
            return []  # no signal: there is no place (the point's -1 is not a time)
        value = float(change.detections if select.field == "detections" else change.first_at_s)
        evidence: dict[str, EvidenceValue] = {
            "detector": change.detector,
            "detections": change.detections,
            "first_at_s": change.first_at_s,
        }
        return [SeriesValue(None, select.field, value, change.n_labelled, evidence)]
    return []


def _drift_series(
    select: SelectorConfig,
    observation: WindowObservation,
    metric: str | None,
    features: Sequence[str],
    model: ModelConfig | None,
) -> list[SeriesValue]:
    wanted_method: str | None = select.tags.get("method", metric)
    per_feature: dict[str | None, Mapping[str, DriftResult]] = {}
    configured: dict[str | None, tuple[str, ...]] = {}
    if select.measurement == "prediction_drift":
        if observation.prediction_drift is not None:
            per_feature[None] = observation.prediction_drift
        if model is not None:
            configured[None] = tuple(
                model.drift.numeric_methods
                if model.task == "regression"
                else model.drift.categorical_methods
            )
    else:
        wanted_feature = select.tags.get("feature")
        for name, results in (observation.feature_drift or {}).items():
            if features and name not in features:
                continue
            if wanted_feature is not None and name != wanted_feature:
                continue
            per_feature[name] = results
        if model is not None:
            configured = {f.name: model.methods_for(f) for f in model.features}
    values: list[SeriesValue] = []
    for feature, results in per_feature.items():
        method = wanted_method or default_method(results, configured.get(feature, ()))
        result = None if method is None else results.get(method)
        if result is None:
            continue
        read = _drift_value(select, result)
        if read is not None:
            values.append(SeriesValue(feature, read[0], read[1], read[2], read[3]))
    return values


def _performance_series(
    select: SelectorConfig, observation: WindowObservation, metric: str | None, min_coverage: float
) -> list[SeriesValue]:
    name = select.tags.get("metric", metric)
    if name is None or observation.performance is None:
        return []
    result = observation.performance.get(name)
    if result is None or result.insufficient_data or result.value is None:
        return []
    coverage = observation.coverage
    evidence: dict[str, EvidenceValue] = {
        "metric_value": result.value,
        "n_labelled": result.n_labelled,
        "coverage": coverage,
        "is_final": observation.is_final,
    }
    value: float | None
    if select.field == "value":
        covered = (coverage if coverage is not None else 0.0) >= min_coverage
        if not covered and not (coverage is None and min_coverage == 0.0):
            return []
        value = result.value
    elif select.field == "n_labelled":
        value = float(result.n_labelled)
    elif select.field == "coverage":
        value = coverage
    else:
        value = 1.0 if observation.is_final else 0.0
    if value is None:
        return []
    shown = name if select.field == "value" else select.field
    return [SeriesValue(None, shown, float(value), result.n_labelled, evidence)]


def _quality_series(
    select: SelectorConfig, observation: WindowObservation, features: Sequence[str]
) -> list[SeriesValue]:
    wanted_feature = select.tags.get("feature")
    values: list[SeriesValue] = []
    for name, quality in (observation.data_quality or {}).items():
        if (features and name not in features) or (wanted_feature not in (None, name)):
            continue
        rate = quality.fields()[select.field]
        if rate is None or quality.n_total == 0:
            continue
        evidence: dict[str, EvidenceValue] = {"n_total": quality.n_total, **quality.fields()}
        values.append(SeriesValue(name, select.field, float(rate), quality.n_total, evidence))
    return values
