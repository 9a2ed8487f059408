"""A synthetic serving app: churn-model traffic that drifts, with late labels.

Used by ``driftline demo``, the end-to-end tests and the benchmarks. The model
is a fixed logistic scorer over numeric and categorical features; from
``drift_from`` on, one numeric feature shifts and one category becomes more
common, and the model's accuracy falls because its decision rule no longer fits
the data. Labels follow their prediction after a random event-time delay, and a
small share of messages is malformed on purpose, so every path of the pipeline
is exercised.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

PLANS = ("basic", "standard", "gold", "platinum")
DEVICES = ("ios", "android", "web")
REGIONS = ("eu", "us", "apac")
COUNTRIES = ("de", "fr", "es", "it", "us", "ca", "jp", "au")

NUMERIC_FEATURES = (
    "tenure_months",
    "monthly_charges",
    "support_calls",
    "days_since_login",
    "age",
    "sessions_30d",
    "discount_pct",
)
"""The numeric features of the synthetic model."""

CATEGORICAL_FEATURES = ("plan", "device", "country")
"""The categorical features of the synthetic model."""

MALFORMED_SAMPLES: tuple[bytes, ...] = (
    b"{not json",
    b'{"prediction_id": "x", "model_id": "churn"}',
    b'{"prediction_id": "x", "model_id": "churn", "model_version": "1",'
    b' "timestamp": "2026-11-23T10:00:00", "features": {}, "prediction": 1}',
    b"\xff\xfe\x00garbage",
    b'{"prediction_id": "", "model_id": "churn", "model_version": "1",'
    b' "timestamp": "2026-11-23T10:00:00Z", "features": {"a": [1]}, "prediction": 1}',
)
"""Messages a worker must send to the dead-letter topic, one per kind of fault."""


@dataclass(frozen=True)
class ScenarioConfig:
    """Shape of the synthetic traffic.

    Parameters
    ----------
    start
        Event time of the first prediction.
    predictions
        Number of predictions.
    rate_per_s
        Predictions per second of event time.
    drift_from
        Fraction of the traffic after which the drift starts (1.0 = never).
    drift_until
        Fraction of the traffic after which the traffic is back to normal.
    label_share
        Fraction of predictions that ever get a label.
    label_delay_s
        Mean label delay in event-time seconds (exponential).
    malformed_every
        One malformed message after every this many predictions (0 = none).
    seed
        Seed of the random generator; same seed, same traffic.
    """

    start: datetime = field(default_factory=lambda: datetime(2026, 11, 23, tzinfo=UTC))
    predictions: int = 10_000
    rate_per_s: float = 5.0
    drift_from: float = 0.5
    drift_until: float = 1.0
    label_share: float = 0.8
    label_delay_s: float = 900.0
    malformed_every: int = 500
    model_id: str = "churn"
    model_version: str = "1"
    seed: int = 7

    def __post_init__(self) -> None:
        if self.predictions < 0:
            raise ValueError(f"predictions must be >= 0, got {self.predictions}")
        if self.rate_per_s <= 0:
            raise ValueError(f"rate_per_s must be > 0, got {self.rate_per_s}")
        if not 0.0 <= self.drift_from <= self.drift_until <= 1.0:
            raise ValueError(
                "need 0 <= drift_from <= drift_until <= 1, got "
                f"{self.drift_from} and {self.drift_until}"
            )
        if not 0.0 <= self.label_share <= 1.0:
            raise ValueError(f"label_share must be in [0, 1], got {self.label_share}")
        if self.start.tzinfo is None:
            raise ValueError("start must carry a timezone")


@dataclass(frozen=True)
class Scenario:
    """Generated traffic: events in the order a serving app would emit them."""

    predictions: list[dict[str, Any]]
    labels: list[dict[str, Any]]
    malformed: list[bytes]
    drift_starts_at: datetime


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def generate(config: ScenarioConfig) -> Scenario:
    """Generate the traffic of a scenario.

    Examples
    --------
    >>> scenario = generate(ScenarioConfig(predictions=1000, seed=1))
    >>> len(scenario.predictions), len(scenario.labels) > 700, len(scenario.malformed)
    (1000, True, 2)
    >>> scenario.predictions[0]["features"]["plan"] in PLANS
    True
    """
    rng = np.random.default_rng(config.seed)
    n = config.predictions
    index_of = np.arange(n)
    drifted = (index_of >= int(n * config.drift_from)) & (index_of < int(n * config.drift_until))
    offsets = np.cumsum(rng.exponential(1.0 / config.rate_per_s, size=n))
    tenure = np.clip(rng.gamma(2.0, 12.0, size=n), 0, 120)
    monthly = rng.normal(70.0, 20.0, size=n) + np.where(drifted, 25.0, 0.0)
    support_calls = rng.poisson(np.where(drifted, 2.5, 1.0))
    days_since_login = rng.exponential(10.0, size=n)
    age = rng.normal(42.0, 12.0, size=n)
    plan_p = np.array([0.4, 0.3, 0.2, 0.1])
    plan_p_drift = np.array([0.15, 0.25, 0.2, 0.4])
    plans = np.where(
        drifted, rng.choice(4, size=n, p=plan_p_drift), rng.choice(4, size=n, p=plan_p)
    )
    devices = rng.choice(3, size=n, p=[0.45, 0.35, 0.2])
    regions = rng.choice(3, size=n, p=[0.5, 0.3, 0.2])
    missing_login = rng.random(n) < 0.02
    sessions = rng.poisson(12.0, size=n)
    discount = np.round(rng.beta(2.0, 8.0, size=n) * 100, 1)
    missing_discount = rng.random(n) < 0.05
    countries = rng.choice(8, size=n, p=[0.2, 0.15, 0.1, 0.1, 0.2, 0.1, 0.1, 0.05])

    # The model the serving app runs; the world it was trained on.
    model_logit = -1.0 - 0.04 * tenure + 0.03 * (monthly - 70) + 0.5 * support_calls
    # The truth: after the drift, expensive plans churn less than the model believes.
    true_logit = model_logit + np.where(drifted, -1.2 * (plans >= 2) - 0.02 * (monthly - 70), 0)
    score = 1.0 / (1.0 + np.exp(-model_logit))
    truth = rng.random(n) < 1.0 / (1.0 + np.exp(-true_logit))

    has_label = rng.random(n) < config.label_share
    delays = rng.exponential(config.label_delay_s, size=n)
    # A few labels arrive before their prediction would have been processed.
    delays[rng.random(n) < 0.01] = 0.0

    predictions: list[dict[str, Any]] = []
    labels: list[tuple[float, dict[str, Any]]] = []
    malformed: list[bytes] = []
    for index in range(n):
        moment = config.start + timedelta(seconds=float(offsets[index]))
        prediction_id = f"{config.model_id}-{config.seed}-{index:08d}"
        predicted = int(score[index] >= 0.5)
        login = None if missing_login[index] else round(float(days_since_login[index]), 3)
        predictions.append(
            {
                "prediction_id": prediction_id,
                "model_id": config.model_id,
                "model_version": config.model_version,
                "timestamp": _iso(moment),
                "features": {
                    "tenure_months": round(float(tenure[index]), 2),
                    "monthly_charges": round(float(monthly[index]), 2),
                    "support_calls": int(support_calls[index]),
                    "days_since_login": login,
                    "age": round(float(age[index]), 1),
                    "plan": PLANS[plans[index]],
                    "device": DEVICES[devices[index]],
                    "sessions_30d": int(sessions[index]),
                    "discount_pct": None if missing_discount[index] else float(discount[index]),
                    "country": COUNTRIES[countries[index]],
                },
                "prediction": predicted,
                "scores": {
                    "0": round(1 - float(score[index]), 6),
                    "1": round(float(score[index]), 6),
                },
                "segment": {"region": REGIONS[regions[index]]},
                "latency_ms": round(float(rng.gamma(2.0, 2.0)), 3),
            }
        )
        if has_label[index]:
            label_time = float(offsets[index] + delays[index])
            labels.append(
                (
                    label_time,
                    {
                        "prediction_id": prediction_id,
                        "model_id": config.model_id,
                        "label": int(truth[index]),
                        "timestamp": _iso(config.start + timedelta(seconds=label_time)),
                    },
                )
            )
        if config.malformed_every and (index + 1) % config.malformed_every == 0:
            malformed.append(MALFORMED_SAMPLES[len(malformed) % len(MALFORMED_SAMPLES)])
    labels.sort(key=lambda item: item[0])
    drift_index = min(int(n * config.drift_from), max(n - 1, 0))
    drift_offset = float(offsets[drift_index]) if n else 0.0
    return Scenario(
        predictions=predictions,
        labels=[label for _, label in labels],
        malformed=malformed,
        drift_starts_at=config.start + timedelta(seconds=math.floor(drift_offset)),
    )


def write_training_csv(path: Path, predictions: int = 20_000, seed: int = 101) -> None:
    """Write undrifted traffic as a training set: features, prediction, score, label.

    ``label`` is the model's own prediction, so the reference baseline is the
    model's agreement with itself; ``driftline reference build`` reads the file.
    """
    training = generate(ScenarioConfig(predictions=predictions, drift_from=1.0, seed=seed))
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*NUMERIC_FEATURES, *CATEGORICAL_FEATURES, "prediction", "score", "label"])
        for event in training.predictions:
            features = event["features"]
            writer.writerow(
                [
                    *(
                        "" if features[name] is None else features[name]
                        for name in NUMERIC_FEATURES
                    ),
                    *(features[name] for name in CATEGORICAL_FEATURES),
                    event["prediction"],
                    event["scores"]["1"],
                    event["prediction"],
                ]
            )
