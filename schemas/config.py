"""The monitor configuration: models, features, windows, drift, rules, channels.

One YAML file describes everything a team monitors (see
``compose/monitors.example.yaml``). Model-level ``window`` and ``drift``
sections override the file's ``defaults`` key by key. Cross references (a rule's
channel, a retrain policy's rules, a model filter) are checked when the file is
loaded, and every error names its key path.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from schemas.outputs import Severity
from schemas.vocabulary import (
    BINARY_CLASS_SPELLINGS,
    CATEGORICAL_DRIFT_METHODS,
    DATA_QUALITY_FIELDS,
    DEFAULT_CATEGORICAL_METHODS,
    DEFAULT_METRICS_BY_TASK,
    DEFAULT_NUMERIC_METHODS,
    MEASUREMENTS,
    METRICS_BY_TASK,
    NUMERIC_DRIFT_METHODS,
    FeatureKind,
    Task,
)

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def parse_duration(value: Any) -> Any:
    """Read a duration such as ``"90s"``, ``"1h30m"``, ``"7d"`` or a number of seconds.

    ISO 8601 strings (``"PT1H"``) and :class:`~datetime.timedelta` pass through
    to pydantic unchanged.

    Examples
    --------
    >>> parse_duration("1h30m")
    datetime.timedelta(seconds=5400)
    >>> parse_duration(90)
    datetime.timedelta(seconds=90)
    >>> parse_duration("soon")
    Traceback (most recent call last):
    ...
    ValueError: 'soon' is not a duration; use e.g. 90s, 5m, 1h30m, 7d or a number of seconds
    """
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, int | float):
        return _seconds(value, value)
    if isinstance(value, str) and not value.upper().startswith("P"):
        text = value.replace(" ", "").lower()
        parts = _DURATION.findall(text)
        if not text or "".join(number + unit for number, unit in parts) != text:
            raise ValueError(
                f"{value!r} is not a duration; use e.g. 90s, 5m, 1h30m, 7d or a number of seconds"
            )
        return _seconds(sum(float(number) * _UNITS[unit] for number, unit in parts), value)
    return value


def _seconds(seconds: float, written: object) -> timedelta:
    """A duration of ``seconds``, or a ValueError naming what was written (not an OverflowError)."""
    if not math.isfinite(seconds):
        raise ValueError(f"{written!r} is not a finite duration")
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise ValueError(f"{written!r} is too long a duration (at most 999,999,999 days)") from None


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


def format_duration(value: timedelta) -> str:
    """Write a duration the way the configuration file does.

    Examples
    --------
    >>> format_duration(timedelta(days=7)), format_duration(timedelta(seconds=5400))
    ('7d', '1h30m')
    >>> format_duration(timedelta(0))
    '0s'
    """
    seconds = value.total_seconds()
    if seconds == 0:
        return "0s"
    parts = []
    for unit in ("d", "h", "m", "s"):
        size = _UNITS[unit]
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{int(count)}{unit}")
    if seconds:
        parts.append(f"{round(seconds * 1000)}ms")
    return "".join(parts)


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be a positive duration")
    return value


def _non_negative(value: timedelta) -> timedelta:
    if value < timedelta(0):
        raise ValueError("must not be negative")
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _names(values: tuple[str, ...]) -> str:
    return ", ".join(values)


def _unique(values: list[str], what: str) -> list[str]:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"{what} {value!r} appears twice")
        seen.add(value)
    return values


class WindowConfig(_Section):
    """Event-time windows of a model.

    Examples
    --------
    >>> WindowConfig(size="15m").size
    datetime.timedelta(seconds=900)
    """

    size: Duration = Field(default=timedelta(hours=1), description="Tumbling window length.")
    allowed_lateness: Duration = Field(
        default=timedelta(minutes=5),
        description="How far behind the newest event a prediction may arrive and still count.",
    )
    label_horizon: Duration = Field(
        default=timedelta(days=7),
        description="How long after a window ends its labels are still joined.",
    )
    orphan_label_ttl: Duration = Field(
        default=timedelta(days=1),
        description="How long a label that arrived before its prediction is kept.",
    )
    emit_interval: Duration = Field(
        default=timedelta(seconds=1),
        description="Least time between two re-emissions of a window's performance.",
    )
    runs_behind: Duration = Field(
        default=timedelta(0),
        description=(
            "How far this model's event times may run behind those of other models on the "
            "same topics (a batch uploader, a backfill): within it, its own events' times "
            "judge lateness and close and settle its windows. 0: the newest time of any model."
        ),
    )

    close_when_idle: Duration | None = Field(
        default=None,
        description=(
            "Close this model's windows by the wall clock once an input partition has been "
            "read to its end and stayed quiet this long: the partition then acts as if an event "
            "of the model stamped this long before now had arrived, so the last windows of a "
            "model whose traffic stopped (a retired version, a quiet night, the end of a "
            "backfill) are evaluated and settle. An event stamped earlier that arrives "
            "afterwards is late. Unset: only events move the model's clocks."
        ),
    )

    @field_validator("size", "emit_interval")
    @classmethod
    def _check_positive(cls, value: timedelta) -> timedelta:
        return _positive(value)

    @field_validator("close_when_idle")
    @classmethod
    def _check_idle(cls, value: timedelta | None) -> timedelta | None:
        return None if value is None else _positive(value)

    @field_validator("allowed_lateness", "label_horizon", "orphan_label_ttl", "runs_behind")
    @classmethod
    def _check_non_negative(cls, value: timedelta) -> timedelta:
        return _non_negative(value)


class DriftConfig(_Section):
    """Which drift tests run, with which thresholds and multiple-testing control."""

    numeric_methods: list[str] = Field(default_factory=lambda: list(DEFAULT_NUMERIC_METHODS))
    categorical_methods: list[str] = Field(
        default_factory=lambda: list(DEFAULT_CATEGORICAL_METHODS)
    )
    thresholds: dict[str, float] = Field(
        default_factory=dict,
        description="Method name to threshold, overriding the method's default.",
    )
    multiple_testing: Literal["benjamini_hochberg", "bonferroni", "none"] = "benjamini_hochberg"
    alpha: float = Field(default=0.05, gt=0, lt=1, description="Dataset-level error rate.")
    min_samples: int = Field(
        default=100, ge=1, description="Below this many events a test reports insufficient data."
    )

    @field_validator("numeric_methods")
    @classmethod
    def _numeric(cls, methods: list[str]) -> list[str]:
        return _known_methods(methods, NUMERIC_DRIFT_METHODS, "numeric")

    @field_validator("categorical_methods")
    @classmethod
    def _categorical(cls, methods: list[str]) -> list[str]:
        return _known_methods(methods, CATEGORICAL_DRIFT_METHODS, "categorical")

    @field_validator("thresholds")
    @classmethod
    def _thresholds(cls, thresholds: dict[str, float]) -> dict[str, float]:
        known = tuple(sorted(set(NUMERIC_DRIFT_METHODS) | set(CATEGORICAL_DRIFT_METHODS)))
        for name, value in thresholds.items():
            if name not in known:
                raise ValueError(f"unknown method {name!r}; valid: {_names(known)}")
            if value < 0:
                raise ValueError(f"threshold of {name} must not be negative")
        return thresholds


def _known_methods(methods: list[str], known: tuple[str, ...], kind: str) -> list[str]:
    for method in methods:
        if method not in known:
            raise ValueError(
                f"{method!r} is not a drift method for {kind} data; valid: {_names(known)}"
            )
    return _unique(methods, "method")


class FeatureConfig(_Section):
    """One monitored input feature."""

    name: str = Field(min_length=1, max_length=256)
    kind: FeatureKind
    methods: list[str] | None = Field(
        default=None, description="Drift methods for this feature, overriding the model's."
    )
    importance: float | None = Field(
        default=None, ge=0, description="Weight of the feature for the retrain policy."
    )

    @model_validator(mode="after")
    def _methods_fit_kind(self) -> FeatureConfig:
        if self.methods is not None:
            known = NUMERIC_DRIFT_METHODS if self.kind == "numeric" else CATEGORICAL_DRIFT_METHODS
            _known_methods(self.methods, known, self.kind)
        return self


class PerformanceConfig(_Section):
    """Which performance metrics are computed once labels join."""

    metrics: list[str] | None = Field(
        default=None, description="Metric names; default depends on the task."
    )
    min_labelled: int = Field(
        default=50, ge=1, description="Fewest labelled predictions for a meaningful metric."
    )
    baseline: dict[str, float] = Field(
        default_factory=dict,
        description="Metric to baseline value, overriding the reference profile's.",
    )
    change_detector: Literal["adwin", "page_hinkley", "ddm", "eddm"] | None = Field(
        default="adwin",
        description=(
            "river detector run over each window's joined errors in event-time order, "
            "for change points inside the window; null turns it off."
        ),
    )
    change_params: dict[str, int | float | str] = Field(
        default_factory=dict,
        description="Parameters of the change detector, by river's names (e.g. delta: 0.002).",
    )


class ModelConfig(_Section):
    """One monitored model (all of its versions)."""

    id: str = Field(min_length=1, max_length=256)
    task: Task
    features: list[FeatureConfig] = Field(min_length=1)
    reference: str = Field(
        min_length=1,
        description="Path of the reference profile; '{version}' is replaced by the version.",
    )
    positive_class: str | int | bool | None = Field(
        default=None,
        description=(
            "Positive class of a binary model (default 1). A yes/no class matches both "
            "spellings: with 1 or true, labels and predictions 1, true, '1', 'true' and "
            "'True' are positive (with 0 or false, their counterparts); any other class "
            "('churned') matches exactly."
        ),
    )
    classes: list[str | int | bool] | None = Field(
        default=None, description="Classes of a multiclass model, when known up front."
    )
    segment_by: list[str] = Field(
        default_factory=list, description="Segment names that split windows (e.g. region)."
    )
    window: WindowConfig = Field(default_factory=WindowConfig)
    drift: DriftConfig = Field(default_factory=DriftConfig)
    performance: PerformanceConfig = Field(default_factory=PerformanceConfig)

    @property
    def positive(self) -> str | int | bool:
        """The positive class of a binary model: ``positive_class``, 1 when unset."""
        return 1 if self.positive_class is None else self.positive_class

    @property
    def positive_score(self) -> str:
        """The key of the positive class's score in a prediction's ``scores``."""
        return str(self.positive)

    @property
    def positive_score_keys(self) -> tuple[str, ...]:
        """Every key the positive class's score may come under, ``positive_score`` first.

        For a yes/no positive class (``1``, ``true``) its other spellings too
        (:data:`~schemas.vocabulary.BINARY_CLASS_SPELLINGS`).

        Examples
        --------
        >>> ModelConfig(id="m", task="binary", features=[{"name": "x", "kind": "numeric"}],
        ...             reference="r.json").positive_score_keys
        ('1', 'true', 'True')
        """
        first = self.positive_score
        for spellings in BINARY_CLASS_SPELLINGS:
            if first in spellings:
                return (first, *(key for key in spellings if key != first))
        return (first,)

    @field_validator("features")
    @classmethod
    def _unique_features(cls, features: list[FeatureConfig]) -> list[FeatureConfig]:
        _unique([feature.name for feature in features], "feature")
        return features

    @field_validator("segment_by")
    @classmethod
    def _unique_segments(cls, segment_by: list[str]) -> list[str]:
        return _unique(segment_by, "segment")

    @model_validator(mode="after")
    def _task_consistent(self) -> ModelConfig:
        if self.task != "binary" and self.positive_class is not None:
            raise ValueError(f"positive_class only applies to binary models, not {self.task}")
        if self.task != "multiclass" and self.classes is not None:
            raise ValueError(f"classes only applies to multiclass models, not {self.task}")
        detector = self.performance.change_detector
        if detector is not None:
            from detectors.change import ChangeDetector  # noqa: PLC0415 (a cycle at import)
            from detectors.errors import DetectorError  # noqa: PLC0415

            if detector in ("ddm", "eddm") and self.task == "regression":
                raise ValueError(
                    f"performance.change_detector: {detector} reads 0/1 mistakes; a regression "
                    "model's errors are real values (use adwin or page_hinkley)"
                )
            try:
                ChangeDetector(detector, **self.performance.change_params)
            except DetectorError as exc:
                raise ValueError(f"performance.change_params: {exc}") from None
        elif self.performance.change_params:
            raise ValueError("performance.change_params given without a change_detector")
        if self.performance.metrics is not None:
            valid = METRICS_BY_TASK[self.task]
            for metric in self.performance.metrics:
                if metric not in valid:
                    raise ValueError(
                        f"performance.metrics: {metric} is not defined for {self.task} models; "
                        f"valid: {_names(valid)}"
                    )
        return self

    @property
    def metrics(self) -> tuple[str, ...]:
        """The performance metrics in effect (configured or the task's default)."""
        if self.performance.metrics is not None:
            return tuple(self.performance.metrics)
        return DEFAULT_METRICS_BY_TASK[self.task]

    def methods_for(self, feature: FeatureConfig) -> tuple[str, ...]:
        """Drift methods in effect for a feature."""
        if feature.methods is not None:
            return tuple(feature.methods)
        if feature.kind == "numeric":
            return tuple(self.drift.numeric_methods)
        return tuple(self.drift.categorical_methods)

    def reference_path(self, version: str) -> str:
        """The reference profile location of one model version."""
        return self.reference.replace("{version}", version)


class ChannelConfig(_Section):
    """A notification channel: every apprise URL receives every notification."""

    urls: list[SecretStr] = Field(
        min_length=1, description="apprise URLs (Slack, Teams, Mattermost, email, …); secret."
    )

    @field_validator("urls")
    @classmethod
    def _apprise_knows(cls, urls: list[SecretStr]) -> list[SecretStr]:
        import apprise  # noqa: PLC0415 (only configurations with channels need it)

        for index, url in enumerate(urls):
            text = url.get_secret_value()
            if not apprise.Apprise().add(text):
                scheme = text.partition("://")[0] if "://" in text else "(none)"
                raise ValueError(
                    f"urls[{index}] is not a URL apprise can send to (scheme {scheme!r}); "
                    "see apprise's list of services"
                )
        return urls


RuleKind = Literal[
    "feature_drift",
    "dataset_drift",
    "prediction_drift",
    "performance_drop",
    "data_quality",
    "volume_drop",
    "threshold",
]
Comparison = Literal[">", ">=", "<", "<="]


class SelectorConfig(_Section):
    """Which time series a ``threshold`` rule watches."""

    measurement: str
    field: str
    tags: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known_series(self) -> SelectorConfig:
        if self.measurement not in MEASUREMENTS:
            raise ValueError(
                f"measurement {self.measurement!r} is not written by driftline; "
                f"valid: {_names(tuple(MEASUREMENTS))}"
            )
        fields = MEASUREMENTS[self.measurement]
        if self.field not in fields:
            raise ValueError(
                f"field {self.field!r} is not in {self.measurement}; valid: {_names(fields)}"
            )
        return self


class ResolveConfig(_Section):
    """When a firing alert resolves (hysteresis keeps a flapping value quiet)."""

    threshold: float | None = Field(
        default=None,
        allow_inf_nan=False,
        description="Resolve once the value is back past this (default: threshold).",
    )
    for_windows: int = Field(default=1, ge=1, alias="for")


class RuleConfig(_Section):
    """An alert rule: which metric, which comparison, for how long, who hears of it."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field(min_length=1, max_length=128)
    kind: RuleKind
    models: list[str] = Field(default_factory=list, description="Model ids; empty means all.")
    features: list[str] = Field(default_factory=list, description="Features; empty means all.")
    segments: list[str] = Field(default_factory=list, description="Segment keys; empty means all.")
    metric: str | None = Field(
        default=None,
        description="Drift method, performance metric or data-quality field the rule reads.",
    )
    select: SelectorConfig | None = None
    op: Comparison | None = None
    threshold: float | None = Field(default=None, allow_inf_nan=False)
    baseline_delta: float | None = Field(
        default=None,
        ge=0,
        allow_inf_nan=False,
        description="performance_drop: fire below baseline − delta.",
    )
    min_features: int = Field(default=1, ge=1, description="dataset_drift: drifted features k.")
    min_coverage: float = Field(
        default=0.2, ge=0, le=1, description="performance_drop: least label coverage."
    )
    for_windows: int = Field(default=1, ge=1, alias="for")
    resolve: ResolveConfig = Field(default_factory=ResolveConfig)
    severity: Severity = "warning"
    cooldown: Duration = Field(default=timedelta(hours=1))
    channel: str | None = None

    @field_validator("cooldown")
    @classmethod
    def _check_cooldown(cls, value: timedelta) -> timedelta:
        return _non_negative(value)

    @model_validator(mode="after")
    def _kind_needs(self) -> RuleConfig:
        if self.kind == "threshold":
            if self.select is None or self.op is None or self.threshold is None:
                raise ValueError("a threshold rule needs select, op and threshold")
        elif self.select is not None:
            raise ValueError(f"select only applies to threshold rules, not {self.kind}")
        if self.kind == "performance_drop":
            if self.metric is None:
                raise ValueError("a performance_drop rule needs metric (e.g. accuracy)")
            if (self.threshold is None) == (self.baseline_delta is None):
                raise ValueError(
                    "a performance_drop rule needs exactly one of threshold or baseline_delta"
                )
            known = tuple(sorted({m for ms in METRICS_BY_TASK.values() for m in ms}))
            if self.metric not in known:
                raise ValueError(f"metric {self.metric!r} is unknown; valid: {_names(known)}")
        if self.kind in ("feature_drift", "prediction_drift") and self.metric is not None:
            known = tuple(sorted(set(NUMERIC_DRIFT_METHODS) | set(CATEGORICAL_DRIFT_METHODS)))
            if self.metric not in known:
                raise ValueError(
                    f"metric {self.metric!r} is not a drift method; valid: {_names(known)}"
                )
        if self.kind == "data_quality" and (
            self.metric not in DATA_QUALITY_FIELDS or self.threshold is None
        ):
            raise ValueError(
                "a data_quality rule needs threshold and metric, one of "
                + _names(DATA_QUALITY_FIELDS)
            )
        if self.kind == "volume_drop" and self.threshold is None:
            raise ValueError("a volume_drop rule needs threshold (a fraction of the usual volume)")
        return self


class RetrainPolicyConfig(_Section):
    """When firing alerts turn into one retrain request per model."""

    name: str = Field(min_length=1)
    models: list[str] = Field(default_factory=list, description="Model ids; empty means all.")
    rules: list[str] = Field(min_length=1, description="Rules whose firing alerts count.")
    min_alerts: int = Field(default=1, ge=1, description="Firing alerts needed at once.")
    cooldown: Duration = Field(default=timedelta(days=1))

    @field_validator("cooldown")
    @classmethod
    def _check_cooldown(cls, value: timedelta) -> timedelta:
        return _non_negative(value)


class TopicsConfig(_Section):
    """Partitioning of the topics ``driftline topics create`` makes."""

    partitions: int = Field(default=4, ge=1, le=10_000)
    replication_factor: int = Field(default=1, ge=1, le=16)


class DefaultsConfig(_Section):
    """Defaults every model inherits, key by key."""

    window: dict[str, Any] = Field(default_factory=dict)
    drift: dict[str, Any] = Field(default_factory=dict)
    performance: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _valid_sections(self) -> DefaultsConfig:
        WindowConfig.model_validate(self.window)
        DriftConfig.model_validate(self.drift)
        PerformanceConfig.model_validate(self.performance)
        return self


class MonitorConfig(_Section):
    """The whole monitor configuration file.

    Examples
    --------
    >>> config = MonitorConfig.model_validate({
    ...     "defaults": {"window": {"size": "15m"}},
    ...     "models": [{"id": "churn", "task": "binary", "reference": "ref-{version}.json",
    ...                 "features": [{"name": "tenure", "kind": "numeric"}],
    ...                 "window": {"label_horizon": "2d"}}],
    ... })
    >>> config.models[0].window.size, config.models[0].window.label_horizon.days
    (datetime.timedelta(seconds=900), 2)
    """

    version: Literal[1] = 1
    defaults: DefaultsConfig = Field(default_factory=DefaultsConfig)
    models: list[ModelConfig] = Field(min_length=1)
    channels: dict[str, ChannelConfig] = Field(default_factory=dict)
    rules: list[RuleConfig] = Field(default_factory=list)
    retrain: list[RetrainPolicyConfig] = Field(default_factory=list)
    topics: TopicsConfig = Field(default_factory=TopicsConfig)
    grafana_url: str | None = Field(
        default=None, description="Base URL of Grafana, for links in notifications."
    )

    @model_validator(mode="before")
    @classmethod
    def _inherit_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        defaults = data.get("defaults")
        models = data.get("models")
        if not isinstance(defaults, dict) or not isinstance(models, list):
            return data
        merged = []
        for model in models:
            if not isinstance(model, dict):
                merged.append(model)
                continue
            inherited = dict(model)
            for section in ("window", "drift", "performance"):
                base = defaults.get(section)
                own = model.get(section, {})
                if isinstance(base, dict) and isinstance(own, dict):
                    inherited[section] = {**base, **own}
            merged.append(inherited)
        return {**data, "models": merged}

    @field_validator("models")
    @classmethod
    def _unique_models(cls, models: list[ModelConfig]) -> list[ModelConfig]:
        _unique([model.id for model in models], "model id")
        return models

    @field_validator("rules")
    @classmethod
    def _unique_rules(cls, rules: list[RuleConfig]) -> list[RuleConfig]:
        _unique([rule.name for rule in rules], "rule name")
        return rules

    @model_validator(mode="after")
    def _references(self) -> MonitorConfig:
        model_ids = [model.id for model in self.models]
        rule_names = [rule.name for rule in self.rules]
        problems: list[str] = []
        for index, rule in enumerate(self.rules):
            if rule.channel is not None and rule.channel not in self.channels:
                problems.append(
                    f"rules[{index}].channel: unknown channel {rule.channel!r}; "
                    f"defined: {_names(tuple(self.channels)) or 'none'}"
                )
            problems += _unknown(f"rules[{index}].models", rule.models, model_ids, "model")
            problems += self._rule_fits_models(index, rule)
        for index, policy in enumerate(self.retrain):
            problems += _unknown(f"retrain[{index}].rules", policy.rules, rule_names, "rule")
            problems += _unknown(f"retrain[{index}].models", policy.models, model_ids, "model")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _rule_fits_models(self, index: int, rule: RuleConfig) -> list[str]:
        """Problems of a rule that names a metric, feature or method no model it covers has.

        Such a rule is valid on its own but can never fire; with several
        models one of them having it is enough.
        """
        models = [m for m in self.models if not rule.models or m.id in rule.models]
        if not models:
            return []
        problems = []
        where = f"rules[{index}]"
        if rule.kind == "performance_drop" and rule.metric is not None:
            computed = sorted({metric for model in models for metric in model.metrics})
            if rule.metric not in computed:
                problems.append(
                    f"{where}.metric: no model of the rule computes {rule.metric!r}; computed: "
                    f"{', '.join(computed)} (add it to a model's performance.metrics)"
                )
        names = sorted({feature.name for model in models for feature in model.features})
        problems += _unknown(f"{where}.features", rule.features, names, "feature")
        if rule.kind in ("feature_drift", "prediction_drift") and rule.metric is not None:
            methods = sorted(
                {
                    method
                    for model in models
                    for method in (
                        *model.drift.numeric_methods,
                        *model.drift.categorical_methods,
                        *(m for feature in model.features for m in model.methods_for(feature)),
                    )
                }
            )
            if rule.metric not in methods:
                problems.append(
                    f"{where}.metric: no model of the rule runs drift method {rule.metric!r}; "
                    f"running: {', '.join(methods)}"
                )
        return problems

    def model(self, model_id: str) -> ModelConfig | None:
        """The configuration of one model, or None when it is not monitored."""
        for model in self.models:
            if model.id == model_id:
                return model
        return None


def _unknown(path: str, names: list[str], known: list[str], what: str) -> list[str]:
    return [
        f"{path}[{index}]: unknown {what} {name!r}; defined: {', '.join(known) or 'none'}"
        for index, name in enumerate(names)
        if name not in known
    ]
