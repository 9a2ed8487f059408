"""Names shared by the configuration and the computation: tasks, methods, metrics.

The detectors register their implementations under these names; the
configuration validates against them so a typo is caught when the file is
loaded, not when the first window closes.
"""

from __future__ import annotations

from typing import Literal

Task = Literal["binary", "multiclass", "regression"]
FeatureKind = Literal["numeric", "categorical"]

BINARY_CLASS_SPELLINGS: tuple[tuple[str, ...], ...] = (
    ("1", "true", "True"),
    ("0", "false", "False"),
)
"""How each class of a yes/no model may be written: a label source writing JSON
``true`` and a serving app writing ``1`` (or a score under ``"True"``) mean the
same class of a binary model. Any other positive class (``"churned"``) is
matched by its canonical key alone."""

NUMERIC_DRIFT_METHODS: tuple[str, ...] = ("ks", "psi", "wasserstein", "jensenshannon")
"""Drift tests defined for numeric features (and numeric predictions or scores)."""

CATEGORICAL_DRIFT_METHODS: tuple[str, ...] = ("chi2", "jensenshannon", "psi")
"""Drift tests defined for categorical features (and class predictions)."""

DEFAULT_NUMERIC_METHODS: tuple[str, ...] = ("ks", "psi")
DEFAULT_CATEGORICAL_METHODS: tuple[str, ...] = ("chi2", "jensenshannon")

METRICS_BY_TASK: dict[str, tuple[str, ...]] = {
    "binary": (
        "accuracy",
        "precision",
        "recall",
        "f1",
        "roc_auc",
        "log_loss",
        "brier",
    ),
    "multiclass": (
        "accuracy",
        "precision_macro",
        "recall_macro",
        "f1_macro",
        "f1_weighted",
        "log_loss",
    ),
    "regression": ("mae", "rmse", "mape", "r2"),
}
"""Performance metrics that are defined for each task type."""

DEFAULT_METRICS_BY_TASK: dict[str, tuple[str, ...]] = {
    "binary": ("accuracy", "f1", "roc_auc"),
    "multiclass": ("accuracy", "f1_macro"),
    "regression": ("mae", "rmse"),
}

HIGHER_IS_BETTER: frozenset[str] = frozenset(
    {
        "accuracy",
        "precision",
        "recall",
        "f1",
        "roc_auc",
        "precision_macro",
        "recall_macro",
        "f1_macro",
        "f1_weighted",
        "r2",
    }
)
"""Metrics where a drop is bad; for the others (errors, losses) a rise is bad."""

DATA_QUALITY_FIELDS: tuple[str, ...] = ("missing_rate", "out_of_range_rate", "unseen_category_rate")

MEASUREMENTS: dict[str, tuple[str, ...]] = {
    "feature_drift": ("statistic", "p_value", "threshold", "drifted", "n_current", "n_reference"),
    "prediction_drift": (
        "statistic",
        "p_value",
        "threshold",
        "drifted",
        "n_current",
        "n_reference",
    ),
    "model_performance": ("value", "n_labelled", "coverage", "is_final"),
    "label_lag": ("p50_s", "p95_s", "coverage"),
    "change_points": ("detections", "first_at_s", "n_labelled", "is_final"),
    "data_quality": DATA_QUALITY_FIELDS,
    "volume": ("predictions", "labels", "late_predictions", "dead_letters"),
    "alerts": ("value", "summary"),
}
"""InfluxDB measurements driftline writes, with their fields (DESIGN.md layout)."""
