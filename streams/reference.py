"""``driftline reference build``: a reference profile from a training data set.

Reads CSV, Parquet or JSON lines, profiles every monitored feature (fine
quantile bins for numeric columns, frequencies for categorical ones), the
prediction and the positive-class score, and — when the target and the
prediction are both given — the baseline performance the alert rules compare
against. The profile is written as JSON; the worker loads it from the path the
configuration names.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa
from rich.progress import Progress

from detectors.classification import BinaryStats, MulticlassStats, positive_mask
from detectors.errors import DetectorError
from detectors.profile import (
    CategoricalProfile,
    NumericProfile,
    Profile,
    ReferenceProfile,
    build_profile,
)
from detectors.regression import RegressionStats
from schemas import ModelConfig
from streams.compare import (
    CompareError,
    _categorical,
    _numeric,
    column_kind,
    first_line,
    read_table,
)


class ReferenceBuildError(Exception):
    """The data set cannot give the requested profile (missing column, bad type)."""


def _column(table: pa.Table, name: str, path: Path) -> pa.ChunkedArray:
    if name not in table.column_names:
        raise ReferenceBuildError(
            f"column '{name}' is missing from '{path}' (its columns: "
            f"{', '.join(table.column_names)})"
        )
    return table.column(name)


@contextmanager
def _reading(what: str, path: Path) -> Iterator[None]:
    """Turn a column that cannot be read as intended into a ReferenceBuildError naming it."""
    try:
        yield
    except (pa.ArrowException, DetectorError, ValueError, TypeError) as exc:
        raise ReferenceBuildError(f"{what} of '{path}': {first_line(exc)}") from None


def _profile(column: pa.ChunkedArray, kind: str) -> Profile:
    if kind == "numeric":
        return build_profile(_numeric(column), "numeric")
    return build_profile(_categorical(column), "categorical")


def _baseline(
    task: str,
    metrics: Sequence[str],
    target: pa.ChunkedArray,
    prediction: pa.ChunkedArray,
    score: pa.ChunkedArray | None,
    positive_class: object,
) -> dict[str, float]:
    if task == "regression":
        truth = _numeric(target)
        predicted = _numeric(prediction)
        keep = np.isfinite(truth) & np.isfinite(predicted)
        regression = RegressionStats().update(truth[keep], predicted[keep])
        computed = regression.compute(metrics)
    elif task == "binary":
        scores = None if score is None else _numeric(score)
        binary = BinaryStats().update(
            positive_mask(_categorical(target), positive_class),
            positive_mask(_categorical(prediction), positive_class),
            scores,
        )
        computed = binary.compute(metrics)
    else:
        multiclass = MulticlassStats().update(_categorical(target), _categorical(prediction))
        computed = multiclass.compute(metrics)
    # A metric that overflowed (an MAE of inf from values near the float limit)
    # is no baseline a rule could compare with.
    return {
        name: result.value
        for name, result in computed.items()
        if result.value is not None and np.isfinite(result.value)
    }


def build_reference(
    data: Path,
    model_id: str,
    version: str,
    *,
    model: ModelConfig | None = None,
    target: str | None = None,
    prediction: str | None = None,
    score: str | None = None,
    progress: Progress | None = None,
) -> ReferenceProfile:
    """Profile a data set for one model version.

    Parameters
    ----------
    data
        CSV, Parquet or JSON-lines file.
    model_id, version
        The model version described.
    model
        Its configuration: which features, of which kind, and the task and
        metrics of the baseline. Without it every other column is a feature
        of the kind its type suggests.
    target, prediction, score
        Columns of the true value, the model's prediction and its
        positive-class score.
    """
    text_columns = (
        [feature.name for feature in model.features if feature.kind == "categorical"]
        if model is not None
        else []
    )
    try:
        table = read_table(data, "reference", text_columns)
    except CompareError as exc:
        raise ReferenceBuildError(str(exc)) from None
    special = {name for name in (target, prediction, score) if name}
    if model is not None:
        wanted = [(feature.name, str(feature.kind)) for feature in model.features]
    else:
        wanted = []
        for name in table.column_names:
            kind = column_kind(table.schema.field(name).type)
            if name not in special and kind is not None:
                wanted.append((name, kind))
    task = model.task if model is not None else None
    task_id = progress.add_task("profiling", total=len(wanted) + 1) if progress else None
    features: dict[str, Profile] = {}
    for name, feature_kind in wanted:
        with _reading(f"{feature_kind} feature column '{name}'", data):
            features[name] = _profile(_column(table, name, data), feature_kind)
        if progress is not None and task_id is not None:
            progress.advance(task_id)
    prediction_profile: Profile | None = None
    scores: dict[str, NumericProfile] = {}
    baseline: dict[str, float] = {}
    if prediction:
        column = _column(table, prediction, data)
        kind = "numeric" if task == "regression" else "categorical"
        if task is None:
            kind = column_kind(column.type) or "categorical"
        with _reading(f"{kind} prediction column '{prediction}'", data):
            prediction_profile = _profile(column, kind)
    if score:
        with _reading(f"score column '{score}'", data):
            profile = build_profile(_numeric(_column(table, score, data)), "numeric")
        assert isinstance(profile, NumericProfile)
        scores["1" if model is None else model.positive_score] = profile
    if target and prediction and model is not None:
        with _reading(
            f"the baseline from target '{target}', prediction '{prediction}'"
            + (f" and score '{score}'" if score else ""),
            data,
        ):
            baseline = _baseline(
                model.task,
                model.metrics,
                _column(table, target, data),
                _column(table, prediction, data),
                _column(table, score, data) if score else None,
                model.positive,
            )
    if progress is not None and task_id is not None:
        progress.advance(task_id)
    if not features:
        raise ReferenceBuildError(f"'{data}' has no column to profile")
    for name, profile in features.items():
        if isinstance(profile, CategoricalProfile | NumericProfile) and profile.n == 0:
            raise ReferenceBuildError(f"column '{name}' of '{data}' has no values to profile")
    with _reading("the profile", data):
        return ReferenceProfile(model_id, version, features, prediction_profile, scores, baseline)


def profile_mismatches(model: ModelConfig, reference: ReferenceProfile) -> list[str]:
    """Where a profile disagrees with the model's configuration on a kind, one reason each.

    A feature configured as categorical with a numeric profile (or the other
    way round), or a prediction profiled as numeric for a classifier (or as
    categorical for a regression model), cannot be tested: the profile was
    built for another configuration (``driftline reference build`` without
    ``-c`` types columns by their values).
    """
    problems = []
    for feature in model.features:
        profile = reference.features.get(feature.name)
        if profile is not None and profile.kind != feature.kind:
            problems.append(
                f"feature '{feature.name}' is {feature.kind} in the configuration but "
                f"{profile.kind} in the profile"
            )
    expected = "numeric" if model.task == "regression" else "categorical"
    if reference.prediction is not None and reference.prediction.kind != expected:
        problems.append(
            f"the prediction of a {model.task} model is profiled as {reference.prediction.kind}"
        )
    return problems
