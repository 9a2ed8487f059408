"""The monitor configuration: valid files load, bad keys are named by path."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from schemas import ConfigError, load_config, parse_config
from schemas.config import format_duration, parse_duration

EXAMPLE = Path(__file__).resolve().parents[2] / "compose" / "monitors.example.yaml"


def minimal(**model: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "churn",
        "task": "binary",
        "reference": "refs/churn-{version}.json",
        "features": [
            {"name": "tenure", "kind": "numeric"},
            {"name": "plan", "kind": "categorical"},
        ],
    }
    base.update(model)
    return {"models": [base]}


def errors_of(document: dict[str, Any] | str, env: dict[str, str] | None = None) -> list[str]:
    text = document if isinstance(document, str) else yaml.safe_dump(document)
    with pytest.raises(ConfigError) as caught:
        parse_config(text, env=env or {})
    return [str(error) for error in caught.value.errors]


def test_example_config_is_valid() -> None:
    config = load_config(EXAMPLE, env={})
    churn = config.model("churn")
    assert churn is not None
    assert [feature.name for feature in churn.features][:2] == ["tenure_months", "monthly_charges"]
    assert churn.window.size == timedelta(hours=1)
    assert churn.reference_path("7") == "references/churn-7.json"
    eta = config.model("delivery-eta")
    assert eta is not None
    # model-level keys override the defaults, the rest is inherited
    assert eta.window.size == timedelta(minutes=15)
    assert eta.window.allowed_lateness == timedelta(minutes=5)
    assert eta.drift.thresholds == {"psi": 0.2}
    assert eta.metrics == ("mae", "rmse")
    assert config.channels["oncall"].urls[0].get_secret_value() == "json://127.0.0.1:8099/driftline"
    assert config.model("unknown") is None


def test_environment_variables_fill_secrets() -> None:
    config = load_config(EXAMPLE, env={"DRIFTLINE_ONCALL_URL": "slack://a/b/c"})
    url = config.channels["oncall"].urls[0]
    assert url.get_secret_value() == "slack://a/b/c"
    assert "slack" not in repr(config.channels["oncall"])


def test_missing_environment_variable_is_named() -> None:
    document = minimal()
    document["channels"] = {"oncall": {"urls": ["${HOOK_URL}"]}}
    assert errors_of(document) == [
        "channels.oncall.urls[0]: environment variable HOOK_URL is not set"
    ]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda d: d["models"][0]["features"].append({"name": "x", "kind": "numerc"}),
            "models[0].features[2].kind: must be one of numeric, categorical (got 'numerc')",
        ),
        (
            lambda d: d["models"][0].update(task="ranking"),
            "models[0].task: must be one of binary, multiclass, regression (got 'ranking')",
        ),
        (
            lambda d: d["models"][0].update(windw={"size": "1h"}),
            "models[0].windw: is not a known key (check the spelling)",
        ),
        (
            lambda d: d["models"][0].update(window={"size": "soon"}),
            "models[0].window.size: 'soon' is not a duration; use e.g. 90s, 5m, 1h30m, 7d "
            "or a number of seconds",
        ),
        (
            lambda d: d["models"][0].update(window={"size": 0}),
            "models[0].window.size: must be a positive duration",
        ),
        (
            lambda d: d["models"][0]["features"].append({"name": "tenure", "kind": "numeric"}),
            "models[0].features: feature 'tenure' appears twice",
        ),
        (
            lambda d: d["models"][0].update(drift={"numeric_methods": ["ks", "chi2"]}),
            "models[0].drift.numeric_methods: 'chi2' is not a drift method for numeric data; "
            "valid: ks, psi, wasserstein, jensenshannon",
        ),
        (
            lambda d: d["models"][0].update(drift={"alpha": 1.5}),
            "models[0].drift.alpha: Input should be less than 1",
        ),
        (
            lambda d: d["models"][0].update(performance={"metrics": ["accuracy", "rmse"]}),
            "models[0]: performance.metrics: rmse is not defined for binary models; "
            "valid: accuracy, precision, recall, f1, roc_auc, log_loss, brier",
        ),
        (
            lambda d: d.update(models=[]),
            "models: List should have at least 1 item after validation, not 0",
        ),
        (lambda d: d.pop("models"), "models: is required"),
    ],
)
def test_bad_keys_are_named_by_path(change: Any, expected: str) -> None:
    document = minimal()
    change(document)
    assert errors_of(document) == [expected]


def test_rule_references_are_checked() -> None:
    document = minimal()
    document["rules"] = [
        {"name": "drift", "kind": "feature_drift", "channel": "pager", "models": ["fraud"]}
    ]
    document["retrain"] = [{"name": "r", "rules": ["drfit"]}]
    (message,) = errors_of(document)
    assert "rules[0].channel: unknown channel 'pager'; defined: none" in message
    assert "rules[0].models[0]: unknown model 'fraud'; defined: churn" in message
    assert "retrain[0].rules[0]: unknown rule 'drfit'; defined: drift" in message


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"kind": "threshold"}, "a threshold rule needs select, op and threshold"),
        ({"kind": "performance_drop"}, "a performance_drop rule needs metric"),
        (
            {
                "kind": "performance_drop",
                "metric": "accuracy",
                "threshold": 0.8,
                "baseline_delta": 0.05,
            },
            "exactly one of threshold or baseline_delta",
        ),
        (
            {"kind": "data_quality", "metric": "nulls", "threshold": 0.1},
            "a data_quality rule needs",
        ),
        ({"kind": "volume_drop"}, "a volume_drop rule needs threshold"),
        (
            {
                "kind": "threshold",
                "op": ">",
                "threshold": 1,
                "select": {"measurement": "feature_drift", "field": "pvalue"},
            },
            "field 'pvalue' is not in feature_drift",
        ),
        (
            {"kind": "feature_drift", "for": 0},
            "rules[0].for: Input should be greater than or equal to 1",
        ),
        ({"kind": "feature_drift", "threshold": float("nan")}, "rules[0].threshold: Input"),
        ({"kind": "volume_drop", "threshold": float("inf")}, "rules[0].threshold: Input"),
        (
            {"kind": "feature_drift", "resolve": {"threshold": float("-inf")}},
            "rules[0].resolve.threshold: Input should be a finite number",
        ),
        (
            {"kind": "performance_drop", "metric": "accuracy", "baseline_delta": float("inf")},
            "rules[0].baseline_delta: Input should be a finite number",
        ),
        ({"kind": "feature_drift", "cooldown": -3600}, "rules[0].cooldown: must not be negative"),
    ],
)
def test_rule_kinds_check_what_they_need(rule: dict[str, Any], expected: str) -> None:
    document = minimal()
    document["rules"] = [{"name": "r", **rule}]
    (message,) = errors_of(document)
    assert message.startswith("rules[0]")
    assert expected in message


def test_a_negative_retrain_cooldown_is_refused() -> None:
    document = minimal()
    document["rules"] = [{"name": "r", "kind": "feature_drift"}]
    document["retrain"] = [{"name": "p", "rules": ["r"], "cooldown": -86400}]
    (message,) = errors_of(document)
    assert message.startswith("retrain[0].cooldown: must not be negative")


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (
            {"kind": "performance_drop", "metric": "log_loss", "threshold": 0.5},
            "rules[0].metric: no model of the rule computes 'log_loss'; computed: accuracy",
        ),
        (
            {"kind": "performance_drop", "metric": "mae", "threshold": 0.5},
            "no model of the rule computes 'mae'",
        ),
        ({"kind": "feature_drift", "features": ["tenur"]}, "rules[0].features[0]: unknown"),
        (
            {"kind": "feature_drift", "metric": "wasserstein", "threshold": 0.1},
            "rules[0].metric: no model of the rule runs drift method 'wasserstein'; running: chi2",
        ),
    ],
)
def test_a_rule_no_model_can_feed_is_named(rule: dict[str, Any], expected: str) -> None:
    document = minimal()
    document["rules"] = [{"name": "r", **rule}]
    (message,) = errors_of(document)
    assert expected in message


def test_a_rule_one_of_its_models_can_feed_is_accepted() -> None:
    document = minimal()
    document["models"].append(
        {
            "id": "price",
            "task": "regression",
            "reference": "refs/price.json",
            "features": [{"name": "sqft", "kind": "numeric", "methods": ["wasserstein"]}],
        }
    )
    document["rules"] = [
        {"name": "mae", "kind": "performance_drop", "metric": "mae", "threshold": 5},
        {"name": "w", "kind": "feature_drift", "metric": "wasserstein", "threshold": 1},
        {"name": "f", "kind": "feature_drift", "features": ["sqft", "plan"]},
    ]
    assert len(parse_config(yaml.safe_dump(document), env={}).rules) == 3


def test_a_channel_url_apprise_cannot_send_to_is_named_without_its_secret() -> None:
    document = minimal()
    document["channels"] = {"team": {"urls": ["json://127.0.0.1:9/ok", "slak://T0/B0/s3cret"]}}
    (message,) = errors_of(document)
    assert message.startswith("channels.team.urls: ")
    assert "urls[1] is not a URL apprise can send to (scheme 'slak')" in message
    assert "s3cret" not in message


def test_rule_for_alias_and_resolve() -> None:
    document = minimal()
    document["rules"] = [
        {
            "name": "psi",
            "kind": "feature_drift",
            "metric": "psi",
            "threshold": 0.2,
            "for": 3,
            "resolve": {"threshold": 0.1, "for": 2},
            "cooldown": "6h",
        }
    ]
    rule = parse_config(yaml.safe_dump(document), env={}).rules[0]
    assert (rule.for_windows, rule.resolve.for_windows, rule.resolve.threshold) == (3, 2, 0.1)
    assert rule.cooldown == timedelta(hours=6)


def test_duplicate_yaml_keys_are_an_error() -> None:
    text = "models: []\nmodels: []\n"
    (message,) = errors_of(text)
    assert "duplicate key 'models'" in message


def test_yaml_is_loaded_safely() -> None:
    text = "!!python/object/apply:os.system ['echo hacked']\n"
    (message,) = errors_of(text)
    assert "is not valid YAML" in message


def test_non_mapping_document_is_an_error() -> None:
    assert errors_of("- a\n- b\n") == ["<config> must hold a mapping with a 'models' key"]


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("5m", 300),
        ("1h30m", 5400),
        ("7d", 604800),
        ("1w", 604800),
        ("250ms", 0.25),
        (42, 42),
        ("PT2H", 7200),
    ],
)
def test_durations(text: str | int, seconds: float) -> None:
    document = minimal(window={"size": text})
    config = parse_config(yaml.safe_dump(document), env={})
    assert config.models[0].window.size.total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "1x", "h", "1h 2", "-5m"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"), [(1, "1s"), (3600, "1h"), (90061, "1d1h1m1s"), (0.25, "250ms")]
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(timedelta(seconds=seconds)) == text
    assert parse_duration(text) == timedelta(seconds=seconds)


def _laughs(levels: int) -> str:
    """A "billion laughs" document: each level lists the previous one ten times."""
    lines = ["models: []", 'l0: &l0 ["lol ${HOME:-x}"]']
    for level in range(1, levels + 1):
        refs = ", ".join([f"*l{level - 1}"] * 10)
        lines.append(f"l{level}: &l{level} [{refs}]")
    return "\n".join(lines) + "\n"


def test_a_yaml_alias_bomb_is_refused_at_once() -> None:
    text = _laughs(9)  # 10**9 strings once expanded
    assert len(text) < 1000
    started = time.perf_counter()
    errors = errors_of(text)
    assert time.perf_counter() - started < 2.0
    assert len(errors) == 1
    assert "anchors (&l0) are not allowed" in errors[0]
    assert "line 2" in errors[0]


def test_a_yaml_alias_is_refused_naming_its_line() -> None:
    # with no anchor before it, the alias itself is what is refused
    errors = errors_of("models: []\nother: *nowhere\n")
    assert len(errors) == 1
    assert "aliases (*nowhere) are not allowed" in errors[0]
    assert "line 2" in errors[0]


MINIMAL = "models: [{id: m, task: binary, reference: r.json, features: [{name: x, kind: numeric}]"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (MINIMAL + ", window: {size: 1000000000d}}]", "too long a duration"),
        (MINIMAL + ", window: {label_horizon: .inf}}]", "inf is not a finite duration"),
        (MINIMAL + ", window: {size: .nan}}]", "nan is not a finite duration"),
        ("{[a]: 1}", "a key must be a plain value, not list"),
        ("a: " + "[" * 3000 + "]" * 3000, "nested too deeply"),
    ],
)
def test_a_config_that_cannot_be_read_is_refused_with_the_reason_not_a_traceback(
    text: str, expected: str
) -> None:
    assert any(expected in error for error in errors_of(text)), errors_of(text)
