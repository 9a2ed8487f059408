"""Rules: one :class:`~schemas.config.RuleConfig` on one observation → outcomes.

A rule yields one :class:`~alerts.outcome.RuleOutcome` per alert key it
judges in the window (per feature for the per-feature kinds), or nothing when
it does not apply: the model or segment filter does not match, the
observation lacks the part the rule reads, the result has insufficient data,
label coverage is below ``min_coverage``, or there is no baseline yet.

Semantics per kind (``value op threshold`` is a breach):

``feature_drift``
    Per feature (filtered by ``features``). ``metric`` names the drift
    method; by default the feature's first configured method present in the
    window. Without ``threshold`` the detector's decision is the breach
    (``drifted``), with value the p-value for p-value tests (``ks``,
    ``chi2``: metric ``ks.p_value``, op ``<=``) and the statistic otherwise
    (op ``>=``). With ``threshold`` the statistic is compared, ``op``
    defaulting to ``>=``.
``prediction_drift``
    The same on the prediction (methods of the model's prediction kind).
``dataset_drift``
    Value: features drifted after the multiple-testing correction (only
    those in ``features`` when given, e.g. the top features); breach when it
    is at least ``min_features``.
``performance_drop``
    Only on windows with label coverage >= ``min_coverage`` (unknown
    coverage counts as 0). Static ``threshold`` (``op`` defaults to ``<`` for
    metrics where higher is better, ``>`` for errors and losses), or relative
    to the observation's baseline: below ``baseline - baseline_delta``
    (higher is better) or above ``baseline + baseline_delta`` (lower is
    better; ``log_loss``, ``mae``, …). No baseline, no outcome.
``data_quality``
    Per feature: the ``metric`` rate ``op`` (default ``>``) ``threshold``;
    rates that do not apply to the feature (None) and empty windows are
    skipped.
``volume_drop``
    The window's predictions below ``threshold`` × the usual volume (median
    of recent windows, :mod:`alerts.volume`); no outcome until the history
    is long enough.
``threshold``
    Any supported series (:mod:`alerts.selector`) ``op`` ``threshold``.

``resolve.threshold`` is on the rule's own scale: a fraction of the usual
volume for ``volume_drop``, a feature count for ``dataset_drift``, the value
itself otherwise. It must lie on the good side of ``threshold`` (checked by
:func:`check_rule` where the threshold is static).

``segments`` filters by segment key: a filter matches a segment when each of
its ``name=value`` parts is one of the segment's (``region=eu`` matches
``region=eu,tier=gold``; ``all`` matches only the whole-model windows).
"""

from __future__ import annotations

from collections.abc import Sequence

from alerts.errors import AlertError
from alerts.key import AlertKey
from alerts.observation import WindowObservation
from alerts.outcome import Comparison, RuleOutcome
from alerts.selector import default_method, selector_problem, series_values
from alerts.volume import VolumeBaseline
from detectors.registry import METHODS
from detectors.result import DriftResult
from schemas.config import ModelConfig, RuleConfig
from schemas.outputs import EvidenceValue
from schemas.vocabulary import HIGHER_IS_BETTER

FEATURE_KINDS = ("feature_drift", "dataset_drift", "data_quality", "threshold")
"""Rule kinds where a ``features`` filter means something."""

NAMES_SHOWN = 5
"""Drifted features named in a dataset-drift summary."""


def _bad_side(op: Comparison, threshold: float, resolve: float) -> bool:
    if op in (">", ">="):
        return resolve > threshold
    return resolve < threshold


def check_rule(rule: RuleConfig, index: int | None = None) -> None:
    """Raise :class:`AlertError` for a rule the schema accepts but the engine cannot judge.

    Examples
    --------
    >>> check_rule(RuleConfig(name="drift", kind="feature_drift", op=">", threshold=0.2,
    ...                       resolve={"threshold": 0.3}), 0)
    Traceback (most recent call last):
    ...
    alerts.errors.AlertError: rules[0] 'drift': resolve.threshold 0.3 must be on the good side ...
    """
    where = f"rules[{index}] {rule.name!r}" if index is not None else f"rule {rule.name!r}"
    problem = _problem(rule)
    if problem is not None:
        raise AlertError(f"{where}: {problem}")


def _problem(rule: RuleConfig) -> str | None:
    kind = rule.kind
    resolve = rule.resolve.threshold
    if rule.features and kind not in FEATURE_KINDS:
        return f"features only applies to {', '.join(FEATURE_KINDS)} rules, not {kind}"
    if rule.baseline_delta is not None and kind != "performance_drop":
        return f"baseline_delta only applies to performance_drop rules, not {kind}"
    if kind == "performance_drop" and rule.baseline_delta is not None and rule.op is not None:
        return (
            "op only applies to a static threshold; with baseline_delta the metric's "
            "direction decides"
        )
    if rule.op is not None and rule.threshold is None:
        return "op needs a threshold"
    op: Comparison | None = rule.op
    if kind in ("feature_drift", "prediction_drift") and rule.threshold is not None:
        if op in ("<", "<="):
            return (
                f"op {op} would fire while the drift statistic stays small (no drift); "
                "a drift rule's threshold is on the statistic, larger meaning more drift. "
                "To fire on a small p-value, use a threshold rule with "
                f"select: {{measurement: {kind}, field: p_value}}"
            )
        op = op or ">="
    elif kind == "dataset_drift":
        if rule.threshold is not None:
            return "dataset_drift counts drifted features: use min_features, not threshold"
        if resolve is not None and resolve > rule.min_features:
            return (
                f"resolve.threshold {resolve} must be at most min_features={rule.min_features} "
                "(a count of drifted features)"
            )
        return None
    elif kind == "performance_drop":
        if rule.baseline_delta is not None:
            return None
        higher = rule.metric in HIGHER_IS_BETTER
        op = op or ("<" if higher else ">")
    elif kind == "data_quality":
        if rule.threshold is not None and not 0 <= rule.threshold <= 1:
            return f"threshold must be a rate in [0, 1] for {rule.metric} (got {rule.threshold})"
        op = op or ">"
    elif kind == "volume_drop":
        if op not in (None, "<", "<="):
            return f"op of a volume_drop rule must be < or <= (got {op})"
        if rule.threshold is None or not 0 < rule.threshold <= 1:
            return (
                f"threshold must be a fraction of the usual volume in (0, 1] (got {rule.threshold})"
            )
        op = op or "<"
    elif kind == "threshold" and rule.select is not None:
        problem = selector_problem(rule.select, rule.metric)
        if problem is not None:
            return problem
    if (
        op is not None
        and rule.threshold is not None
        and resolve is not None
        and _bad_side(op, rule.threshold, resolve)
    ):
        side = "at most" if op in (">", ">=") else "at least"
        return (
            f"resolve.threshold {resolve} must be on the good side of threshold "
            f"{rule.threshold} ({side} it, as op is {op})"
        )
    return None


def segment_matches(filters: Sequence[str], segment: str) -> bool:
    """Whether a segment key passes a rule's ``segments`` filter (empty: all).

    Examples
    --------
    >>> segment_matches(["region=eu"], "region=eu,tier=gold"), segment_matches(["all"], "region=eu")
    (True, False)
    >>> segment_matches([], "region=us")
    True
    """
    if not filters:
        return True
    parts = set(segment.split(","))
    return any(set(wanted.split(",")) <= parts for wanted in filters)


def applies_to(rule: RuleConfig, observation: WindowObservation) -> bool:
    """Whether the rule's model and segment filters let the observation through."""
    if rule.models and observation.model_id not in rule.models:
        return False
    return segment_matches(rule.segments, observation.segment)


def evaluate_rule(
    rule: RuleConfig,
    observation: WindowObservation,
    *,
    model: ModelConfig | None = None,
    volume_baseline: VolumeBaseline | None = None,
) -> list[RuleOutcome]:
    """Judge one window by one rule.

    Parameters
    ----------
    rule
        The rule.
    observation
        The window.
    model
        The model's configuration, for its default drift methods (may be None).
    volume_baseline
        The usual volume before this window (``volume_drop`` only; None: not
        enough history).

    Returns
    -------
    list of RuleOutcome
        One per judged key; empty when the rule does not apply.

    Examples
    --------
    >>> from datetime import UTC, datetime
    >>> from detectors.result import DriftResult
    >>> rule = RuleConfig(name="drift", kind="feature_drift", metric="psi", op=">", threshold=0.2)
    >>> start = datetime(2026, 11, 23, 10, tzinfo=UTC)
    >>> observation = WindowObservation(
    ...     "churn", "3", "region=eu", start, start.replace(hour=11),
    ...     feature_drift={"tenure": {"psi": DriftResult("psi", 0.31, None, 0.2, True, 5000, 800)},
    ...                    "plan": {"psi": DriftResult("psi", 0.02, None, 0.2, False, 5000, 800)}},
    ... )
    >>> [(o.key.feature, o.value, o.breached) for o in evaluate_rule(rule, observation)]
    [('tenure', 0.31, True), ('plan', 0.02, False)]
    """
    if not applies_to(rule, observation):
        return []
    kind = rule.kind
    if kind == "feature_drift":
        return _feature_drift(rule, observation, model)
    if kind == "prediction_drift":
        return _prediction_drift(rule, observation, model)
    if kind == "dataset_drift":
        return _dataset_drift(rule, observation)
    if kind == "performance_drop":
        return _performance_drop(rule, observation)
    if kind == "data_quality":
        return _data_quality(rule, observation)
    if kind == "volume_drop":
        return _volume_drop(rule, observation, volume_baseline)
    return _threshold(rule, observation, model)


def _key(rule: RuleConfig, observation: WindowObservation, feature: str | None) -> AlertKey:
    return AlertKey(
        rule.name, observation.model_id, observation.model_version, observation.segment, feature
    )


def _drift_outcome(
    rule: RuleConfig, key: AlertKey, result: DriftResult, subject: str
) -> RuleOutcome | None:
    if result.insufficient_data or result.statistic is None:
        return None
    evidence: dict[str, EvidenceValue] = {
        "method": result.method,
        "statistic": result.statistic,
        "p_value": result.p_value,
        "test_threshold": result.threshold,
        "drifted": result.drifted,
        "n_current": result.n_current,
        "n_reference": result.n_reference,
    }
    resolve = rule.resolve.threshold
    if rule.threshold is not None:
        op: Comparison = rule.op or ">="
        return RuleOutcome.judge(
            key,
            result.method,
            result.statistic,
            op,
            rule.threshold,
            resolve,
            subject,
            n=result.n_current,
            evidence=evidence,
        )
    method = METHODS.get(result.method)
    if method is not None and method.decision == "p_value_at_most":
        if result.p_value is None:
            return None
        return RuleOutcome.judge(
            key,
            f"{result.method}.p_value",
            result.p_value,
            "<=",
            result.threshold,
            resolve,
            subject,
            n=result.n_current,
            evidence=evidence,
            breached=result.drifted,
        )
    return RuleOutcome.judge(
        key,
        result.method,
        result.statistic,
        ">=",
        result.threshold,
        resolve,
        subject,
        n=result.n_current,
        evidence=evidence,
        breached=result.drifted,
    )


def _feature_drift(
    rule: RuleConfig, observation: WindowObservation, model: ModelConfig | None
) -> list[RuleOutcome]:
    configured = {} if model is None else {f.name: model.methods_for(f) for f in model.features}
    outcomes: list[RuleOutcome] = []
    for name, results in (observation.feature_drift or {}).items():
        if rule.features and name not in rule.features:
            continue
        method = rule.metric or default_method(results, configured.get(name, ()))
        result = None if method is None else results.get(method)
        if result is None:
            continue
        outcome = _drift_outcome(
            rule, _key(rule, observation, name), result, f"feature {name} drifted"
        )
        if outcome is not None:
            outcomes.append(outcome)
    return outcomes


def _prediction_drift(
    rule: RuleConfig, observation: WindowObservation, model: ModelConfig | None
) -> list[RuleOutcome]:
    results = observation.prediction_drift
    if not results:
        return []
    configured: tuple[str, ...] = ()
    if model is not None:
        configured = tuple(
            model.drift.numeric_methods
            if model.task == "regression"
            else model.drift.categorical_methods
        )
    method = rule.metric or default_method(results, configured)
    result = None if method is None else results.get(method)
    if result is None:
        return []
    outcome = _drift_outcome(rule, _key(rule, observation, None), result, "predictions drifted")
    return [] if outcome is None else [outcome]


def _dataset_drift(rule: RuleConfig, observation: WindowObservation) -> list[RuleOutcome]:
    decision = observation.dataset_drift
    if decision is None:
        return []
    wanted = set(rule.features)
    tested = [name for name in decision.adjusted_p_values if not wanted or name in wanted]
    if not tested:
        return []
    drifted = [name for name in decision.drifted_features if not wanted or name in wanted]
    shown = ", ".join(drifted[:NAMES_SHOWN]) + ("…" if len(drifted) > NAMES_SHOWN else "")
    evidence: dict[str, EvidenceValue] = {
        "n_tested": len(tested),
        "drifted_features": ",".join(drifted),
        "correction": decision.correction,
        "alpha": decision.alpha,
        "untested": len(decision.untested),
    }
    subject = f"dataset drifted: {shown}" if drifted else "dataset drifted"
    return [
        RuleOutcome.judge(
            _key(rule, observation, None),
            "drifted_features",
            len(drifted),
            ">=",
            rule.min_features,
            rule.resolve.threshold,
            subject,
            evidence=evidence,
        )
    ]


def _performance_drop(rule: RuleConfig, observation: WindowObservation) -> list[RuleOutcome]:
    metric = rule.metric
    if metric is None or observation.performance is None:
        return []
    result = observation.performance.get(metric)
    if result is None or result.insufficient_data or result.value is None:
        return []
    coverage = observation.coverage
    if (coverage if coverage is not None else 0.0) < rule.min_coverage:
        return []
    higher = metric in HIGHER_IS_BETTER
    evidence: dict[str, EvidenceValue] = {
        "n_labelled": result.n_labelled,
        "coverage": coverage,
        "is_final": observation.is_final,
        "error_bound": result.error_bound,
    }
    if rule.threshold is not None:
        op: Comparison = rule.op or ("<" if higher else ">")
        threshold = rule.threshold
    else:
        baseline = observation.baseline.get(metric)
        if baseline is None or rule.baseline_delta is None:
            return []
        op = "<" if higher else ">"
        delta = rule.baseline_delta
        threshold = baseline - delta if higher else baseline + delta
        evidence.update(baseline=baseline, baseline_delta=delta)
    subject = f"{metric} dropped" if op in ("<", "<=") else f"{metric} rose"
    return [
        RuleOutcome.judge(
            _key(rule, observation, None),
            metric,
            result.value,
            op,
            threshold,
            rule.resolve.threshold,
            subject,
            n=result.n_labelled,
            evidence=evidence,
        )
    ]


def _data_quality(rule: RuleConfig, observation: WindowObservation) -> list[RuleOutcome]:
    metric = rule.metric
    if metric is None or rule.threshold is None:
        return []
    op: Comparison = rule.op or ">"
    outcomes: list[RuleOutcome] = []
    for name, quality in (observation.data_quality or {}).items():
        if rule.features and name not in rule.features:
            continue
        fields = quality.fields()
        rate = fields.get(metric)
        if rate is None or quality.n_total == 0:
            continue
        direction = "high" if op in (">", ">=") else "low"
        outcomes.append(
            RuleOutcome.judge(
                _key(rule, observation, name),
                metric,
                rate,
                op,
                rule.threshold,
                rule.resolve.threshold,
                f"{metric} of feature {name} too {direction}",
                n=quality.n_total,
                evidence={"n_total": quality.n_total, **fields},
            )
        )
    return outcomes


def _volume_drop(
    rule: RuleConfig, observation: WindowObservation, baseline: VolumeBaseline | None
) -> list[RuleOutcome]:
    if observation.predictions is None or baseline is None or rule.threshold is None:
        return []
    op: Comparison = rule.op or "<"
    resolve = rule.resolve.threshold
    evidence: dict[str, EvidenceValue] = {
        "usual_volume": baseline.median,
        "history_windows": baseline.windows,
        "ratio": rule.threshold,
        "ratio_of_usual": observation.predictions / baseline.median if baseline.median else None,
    }
    return [
        RuleOutcome.judge(
            _key(rule, observation, None),
            "predictions",
            observation.predictions,
            op,
            rule.threshold * baseline.median,
            None if resolve is None else resolve * baseline.median,
            "prediction volume dropped",
            n=observation.predictions,
            evidence=evidence,
        )
    ]


def _threshold(
    rule: RuleConfig, observation: WindowObservation, model: ModelConfig | None
) -> list[RuleOutcome]:
    select = rule.select
    if select is None or rule.op is None or rule.threshold is None:
        return []
    outcomes: list[RuleOutcome] = []
    for value in series_values(
        select,
        observation,
        metric=rule.metric,
        features=rule.features,
        model=model,
        min_coverage=rule.min_coverage,
    ):
        of_feature = "" if value.feature is None else f" of feature {value.feature}"
        subject = f"{select.measurement} {select.field}{of_feature} crossed its threshold"
        outcomes.append(
            RuleOutcome.judge(
                _key(rule, observation, value.feature),
                value.metric,
                value.value,
                rule.op,
                rule.threshold,
                rule.resolve.threshold,
                subject,
                n=value.n,
                evidence=value.evidence,
            )
        )
    return outcomes
