"""The configuration reference, ``docs/configuration.md``, generated from the models.

Every key of :class:`~schemas.config.MonitorConfig` (the YAML file) and every
``DRIFTLINE_*`` variable of :class:`~schemas.settings.DriftlineSettings` gets
one row: key path, type, default, allowed values and description. Types,
defaults, bounds and ``Literal`` choices are read from the pydantic fields;
value sets that validators check (drift methods, metrics, measurements) come
from :mod:`schemas.vocabulary`, bounds that validators enforce from
:data:`CHECKS`. A description is the field's own ``description``, else a note
of :data:`NOTES` (or :data:`SETTING_NOTES`) for that key, else the docstring of
the nested model, with the sentence of :data:`ADDENDA` appended where there is
one. A key with no description is an error, and so is a note for a key that no
longer exists, so the reference cannot silently fall behind the models.

``python -m schemas.reference_doc docs/configuration.md`` (part of ``make
schemas``) writes the file; a unit test fails while it is stale.
"""

from __future__ import annotations

import inspect
import sys
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from schemas.config import MonitorConfig, format_duration
from schemas.settings import DriftlineSettings
from schemas.vocabulary import (
    CATEGORICAL_DRIFT_METHODS,
    DATA_QUALITY_FIELDS,
    MEASUREMENTS,
    METRICS_BY_TASK,
    NUMERIC_DRIFT_METHODS,
)


class ReferenceDocError(ValueError):
    """The models cannot be documented as they are (a key without a description)."""


@dataclass(frozen=True)
class KeyDoc:
    """One documented key: a row of a table."""

    key: str
    type: str
    default: str
    allowed: str
    description: str


@dataclass(frozen=True)
class SectionDoc:
    """The keys of one model (one mapping of the YAML file)."""

    path: str
    summary: str
    keys: tuple[KeyDoc, ...]


def _codes(values: Iterable[object]) -> str:
    return ", ".join(f"`{value}`" for value in values)


def _all_methods() -> tuple[str, ...]:
    return tuple(sorted(set(NUMERIC_DRIFT_METHODS) | set(CATEGORICAL_DRIFT_METHODS)))


def _metrics_by_task() -> str:
    return "; ".join(f"{task}: {_codes(metrics)}" for task, metrics in METRICS_BY_TASK.items())


VALUE_SETS: Mapping[str, Callable[[], str]] = {
    "models[].drift.numeric_methods": lambda: _codes(NUMERIC_DRIFT_METHODS),
    "models[].drift.categorical_methods": lambda: _codes(CATEGORICAL_DRIFT_METHODS),
    "models[].drift.thresholds": lambda: "keys: " + _codes(_all_methods()),
    "models[].features[].methods": lambda: (
        f"numeric: {_codes(NUMERIC_DRIFT_METHODS)}; "
        f"categorical: {_codes(CATEGORICAL_DRIFT_METHODS)}"
    ),
    "models[].performance.metrics": _metrics_by_task,
    "models[].performance.baseline": lambda: "keys: the task's metrics (see `metrics`)",
    "rules[].metric": lambda: (
        f"drift rules: {_codes(_all_methods())}; performance_drop: the task's metrics; "
        f"data_quality: {_codes(DATA_QUALITY_FIELDS)}"
    ),
    "rules[].select.measurement": lambda: _codes(tuple(MEASUREMENTS)),
    "rules[].select.field": lambda: "; ".join(
        f"{measurement}: {_codes(fields)}" for measurement, fields in MEASUREMENTS.items()
    ),
}
"""Key path → the values a validator accepts, from :mod:`schemas.vocabulary`."""

CHECKS: Mapping[str, str] = {
    "models[].window.size": "> 0",
    "models[].window.allowed_lateness": "≥ 0",
    "models[].window.label_horizon": "≥ 0",
    "models[].window.orphan_label_ttl": "≥ 0",
    "models[].window.runs_behind": "≥ 0",
    "models[].window.close_when_idle": "> 0",
    "models[].window.emit_interval": "> 0",
}
"""Key path → bounds that a validator (not the field's type) enforces."""

ADDENDA: Mapping[str, str] = {
    "models[].reference": (
        "A relative path is read from the directory of the configuration file. A model "
        "version without a profile gets volume and performance but no drift or data quality."
    ),
    "rules[].select.measurement": (
        "The alert engine evaluates `feature_drift`, `prediction_drift`, "
        "`model_performance`, `data_quality`, `volume` (field `predictions`) and "
        "`change_points` (fields `detections` and `first_at_s`, the latter only in windows "
        "with a change); a worker refuses a rule on another series or field "
        "(`driftline check-config` does not check this)."
    ),
}
"""Key path → a sentence appended to the key's description."""

NOTES: Mapping[str, str] = {
    # the file
    "version": "Version of the configuration format.",
    "defaults": (
        "Values every model inherits; a model's own `window`, `drift` and `performance` "
        "override them key by key."
    ),
    "defaults.window": "Default keys of `models[].window` (same names, same rules).",
    "defaults.drift": "Default keys of `models[].drift` (same names, same rules).",
    "defaults.performance": "Default keys of `models[].performance` (same names, same rules).",
    "models": "The monitored models; model ids are unique.",
    "channels": (
        "Notification channels by name; rules name them in `channel`. A channel name is "
        "any YAML key."
    ),
    "rules": "Alert rules; rule names are unique. See [alerting](alerting.md).",
    "retrain": "Retrain policies: which firing alerts turn into a retrain request.",
    "topics": "Partitions and replication of the topics `driftline topics create` makes.",
    # models[]
    "models[].id": "The `model_id` of the events; unique in the file.",
    "models[].task": (
        "What the model predicts; decides the performance metrics and how predictions "
        "are profiled (classes for binary and multiclass, numbers for regression)."
    ),
    "models[].features": (
        "The monitored input features; events may carry more, which are ignored. "
        "Feature names are unique."
    ),
    "models[].window": "Event-time windows of this model (overrides `defaults.window`).",
    "models[].drift": "Drift tests of this model (overrides `defaults.drift`).",
    "models[].performance": "Performance metrics of this model (overrides `defaults.performance`).",
    "models[].drift.numeric_methods": "Drift tests run on every numeric feature.",
    "models[].drift.categorical_methods": (
        "Drift tests run on every categorical feature (and on the predicted class)."
    ),
    "models[].drift.multiple_testing": (
        "Correction of the per-feature p-values before the dataset-level drift decision."
    ),
    "models[].features[].name": "The key of the feature in the events' `features`.",
    "models[].features[].kind": "How the feature is profiled and tested.",
    # channels
    "channels.<name>": "One channel.",
    # rules[]
    "rules[].name": "Rule name: in alert events, notifications and the `rule` tag; unique.",
    "rules[].kind": "What the rule watches; see the rule kinds in [alerting](alerting.md).",
    "rules[].select": "`threshold` rules only: the series watched.",
    "rules[].select.measurement": "Measurement of the series ([metrics](metrics.md)).",
    "rules[].select.field": "Field of that measurement compared with `threshold`.",
    "rules[].select.tags": (
        "Tag values the series must have, e.g. `{metric: accuracy}`; empty means any."
    ),
    "rules[].op": (
        "Comparison `value op threshold` that is a breach; the default depends on the kind "
        "([alerting](alerting.md))."
    ),
    "rules[].threshold": (
        "Value the rule compares with; required by `threshold`, `data_quality` and "
        "`volume_drop` rules (there a fraction of the usual volume), optional for drift "
        "rules (then the statistic is compared instead of the test's decision); a "
        "`performance_drop` rule has exactly one of `threshold` and `baseline_delta`."
    ),
    "rules[].for": "Consecutive breached windows before the alert fires.",
    "rules[].resolve": "When a firing alert resolves.",
    "rules[].resolve.for": "Consecutive good windows before a firing alert resolves.",
    "rules[].severity": "Severity in alert events, notifications and the `severity` tag.",
    "rules[].cooldown": (
        "After a resolution, the same alert does not fire again for windows ending "
        "sooner than this."
    ),
    "rules[].channel": "Channel notified; without one, alerts go to the alerts topic only.",
    # retrain[]
    "retrain[].name": "Policy name.",
    "retrain[].cooldown": "Least time between two retrain requests for one model.",
    # topics
    "topics.partitions": (
        "Partitions of every topic `driftline topics create` makes: the most workers "
        "that share the input."
    ),
    "topics.replication_factor": "Replicas of every topic `driftline topics create` makes.",
}
"""Descriptions of configuration keys whose field has none, by key path."""

SETTING_NOTES: Mapping[str, str] = {
    "kafka_bootstrap": "Kafka bootstrap servers, `host:port`, comma-separated.",
    "kafka_security_protocol": "How clients connect to Kafka.",
    "kafka_sasl_mechanism": "SASL mechanism; required with the `SASL_*` protocols.",
    "kafka_sasl_username": "SASL user name; required with the `SASL_*` protocols.",
    "kafka_sasl_password": "SASL password (secret); required with the `SASL_*` protocols.",
    "kafka_ssl_cafile": "CA certificates (PEM) to verify the brokers; default: the system's.",
    "kafka_ssl_certfile": "Client certificate (PEM) for mutual TLS; goes with the key file.",
    "kafka_ssl_keyfile": "Private key (PEM) of the client certificate.",
    "kafka_ssl_key_password": "Password of the private key (secret).",
    "influx_token": "InfluxDB API token (secret), sent in the `Authorization` header only.",
    "influx_org": "InfluxDB organisation written to.",
    "influx_bucket": "InfluxDB bucket written to.",
    "data_dir": (
        "Worker state: partition and merger checkpoints under `checkpoints/`, and the "
        "line-protocol file `metrics.lp` when no InfluxDB URL is set."
    ),
    "topic_predictions": "Topic of the prediction events (input).",
    "topic_labels": "Topic of the label events (input; as many partitions as predictions).",
    "topic_alerts": "Topic the alert events are written to.",
    "topic_retrain_requests": "Topic the retrain requests are written to.",
    "topic_dead_letter": "Topic the refused input messages are written to.",
    "topic_partials": "Internal topic of the per-partition window partials, keyed by model.",
    "max_message_bytes": "Largest input message accepted, checked before parsing.",
    "max_features": "Most features (and score classes) per prediction.",
    "max_string_length": "Longest string value (features, segments, labels).",
    "log_level": "Log level of the worker.",
}
"""Descriptions of settings whose field has none, by field name."""

ENV_PREFIX = "DRIFTLINE_"


def _summary(model: type[BaseModel]) -> str:
    doc = inspect.getdoc(model) or ""
    return doc.split("\n\n", 1)[0].replace("\n", " ").replace("``", "`").strip()


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _without_none(annotation: Any) -> tuple[list[Any], bool]:
    origin = get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        args = list(get_args(annotation))
        return [arg for arg in args if arg is not type(None)], type(None) in args
    return [annotation], False


def type_name(annotation: Any) -> str:
    """How a field's type reads in the reference.

    Examples
    --------
    >>> type_name(list[str]), type_name(dict[str, float]), type_name(timedelta | None)
    ('list[string]', 'map[string, number]', 'duration | null')
    """
    parts, nullable = _without_none(annotation)
    if len(parts) > 1 or nullable:
        text = " | ".join(type_name(part) for part in parts)
        return f"{text} | null" if nullable else text
    annotation = parts[0]
    origin = get_origin(annotation)
    args = get_args(annotation)
    if origin is Annotated:  # validators of a type inside a union (Duration | None)
        return type_name(args[0])
    if origin is Literal:
        kinds = sorted({type_name(type(value)) for value in args})
        return " | ".join(kinds)
    if origin is list:
        return f"list[{type_name(args[0])}]"
    if origin is dict:
        return f"map[{type_name(args[0])}, {type_name(args[1])}]"
    if _is_model(annotation):
        return "mapping"
    simple: dict[Any, str] = {
        str: "string",
        int: "integer",
        float: "number",
        bool: "boolean",
        timedelta: "duration",
        SecretStr: "string (secret)",
        Path: "path",
        Any: "any",
    }
    if annotation in simple:
        return simple[annotation]
    raise ReferenceDocError(f"no reference name for the type {annotation!r}")


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}: {_value(item)}" for key, item in value.items()) + "}"
    if isinstance(value, SecretStr):
        return '""' if not value.get_secret_value() else "(secret)"
    if value == "":
        return '""'
    return str(value)


def default_text(field: FieldInfo, *, unset: str = "null") -> str:
    """The default of a field as the reference shows it (``required`` when none).

    Examples
    --------
    >>> from pydantic import Field
    >>> default_text(Field(default=timedelta(hours=1))), default_text(Field())
    ('`1h`', 'required')
    """
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    if isinstance(value, BaseModel):
        return "see below"
    if value is None:
        return unset
    return f"`{_value(value)}`"


def allowed_text(field: FieldInfo) -> str:
    """Literal choices and numeric or length bounds of a field.

    Examples
    --------
    >>> from pydantic import Field
    >>> allowed_text(Field(gt=0, lt=1))
    '> 0, < 1'
    """
    parts: list[str] = []
    choices, _ = _without_none(field.annotation)
    for choice in choices:
        if get_origin(choice) is Literal:
            parts.append(_codes(get_args(choice)))
    container = choices[0] if len(choices) == 1 else None
    for item in field.metadata:
        if isinstance(item, annotated_types.Gt):
            parts.append(f"> {_value(item.gt)}")
        elif isinstance(item, annotated_types.Ge):
            parts.append(f"≥ {_value(item.ge)}")
        elif isinstance(item, annotated_types.Lt):
            parts.append(f"< {_value(item.lt)}")
        elif isinstance(item, annotated_types.Le):
            parts.append(f"≤ {_value(item.le)}")
        elif isinstance(item, annotated_types.MinLen):
            if container is str:
                parts.append(f"at least {item.min_length} character(s)")
            else:
                parts.append(f"at least {item.min_length} item(s)")
        elif isinstance(item, annotated_types.MaxLen):
            parts.append(f"at most {item.max_length} characters")
    return ", ".join(parts)


def _nested(annotation: Any) -> tuple[type[BaseModel], str] | None:
    """The model inside a field's type, with the path suffix its keys get."""
    parts, _ = _without_none(annotation)
    if len(parts) != 1:
        return None
    annotation = parts[0]
    if _is_model(annotation):
        return annotation, ""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is list and _is_model(args[0]):
        return args[0], "[]"
    if origin is dict and _is_model(args[1]):
        return args[1], ".<name>"
    return None


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _description(path: str, field: FieldInfo, notes: Mapping[str, str], where: str) -> str:
    text = field.description or notes.get(path)
    nested = _nested(field.annotation)
    if not text and nested is not None:
        text = _summary(nested[0])
    if text:
        return f"{text} {ADDENDA[path]}" if path in ADDENDA else text
    raise ReferenceDocError(
        f"{path} has no description: give its field a description in {where} or add a "
        "note to schemas/reference_doc.py"
    )


def config_sections(model: type[BaseModel] = MonitorConfig, path: str = "") -> list[SectionDoc]:
    """One section per model of the configuration, parents before their children.

    Examples
    --------
    >>> [section.path for section in config_sections()][:4]
    ['', 'defaults', 'models[]', 'models[].features[]']
    """
    keys: list[KeyDoc] = []
    children: list[SectionDoc] = []
    for name, field in model.model_fields.items():
        key = _join(path, field.alias or name)
        extra = (CHECKS.get(key, ""), VALUE_SETS[key]() if key in VALUE_SETS else "")
        allowed = ", ".join(part for part in (allowed_text(field), *extra) if part)
        keys.append(
            KeyDoc(
                key,
                type_name(field.annotation),
                default_text(field),
                allowed,
                _description(key, field, NOTES, "schemas/config.py"),
            )
        )
        nested = _nested(field.annotation)
        if nested is not None:
            children.extend(config_sections(nested[0], key + nested[1]))
    return [SectionDoc(path, _summary(model), tuple(keys)), *children]


def setting_keys() -> list[KeyDoc]:
    """One row per ``DRIFTLINE_*`` variable of :class:`DriftlineSettings`.

    Examples
    --------
    >>> setting_keys()[0].key
    'DRIFTLINE_KAFKA_BOOTSTRAP'
    """
    rows = []
    for name, field in DriftlineSettings.model_fields.items():
        rows.append(
            KeyDoc(
                ENV_PREFIX + name.upper(),
                type_name(field.annotation),
                default_text(field, unset="unset"),
                allowed_text(field),
                _description(name, field, SETTING_NOTES, "schemas/settings.py"),
            )
        )
    return rows


def _unknown_notes() -> list[str]:
    config_keys = {key.key for section in config_sections() for key in section.keys}
    config_keys |= {section.path for section in config_sections()}
    unknown = [path for path in (*NOTES, *VALUE_SETS, *CHECKS, *ADDENDA) if path not in config_keys]
    unknown += [name for name in SETTING_NOTES if name not in DriftlineSettings.model_fields]
    return unknown


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ") or "—"


def _table(rows: list[KeyDoc], first: str) -> list[str]:
    lines = [
        f"| {first} | type | default | allowed | description |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        cells = (f"`{row.key}`", row.type, row.default, row.allowed, row.description)
        lines.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    return lines


INTRODUCTION = """\
<!-- Generated by `python -m schemas.reference_doc docs/configuration.md` (`make schemas`)
from schemas/config.py and schemas/settings.py. Do not edit by hand: a test fails while
this file differs from what the models produce. -->

# Configuration reference

driftline reads two kinds of configuration:

- **what to monitor** — one YAML file (models, features, windows, drift tests,
  performance metrics, alert rules, chat channels, retrain policies), given to
  every command with `-c monitors.yaml`;
- **where it runs** — `DRIFTLINE_*` environment variables (Kafka, security,
  InfluxDB, topic names, the data directory), read by every process.

`driftline check-config monitors.yaml` validates a file and explains what it
monitors; every error names its key path, e.g.
`models[0].features[8].kind: must be one of numeric, categorical (got 'text')`.
A full example: [`compose/monitors.example.yaml`](../compose/monitors.example.yaml);
the same contract as JSON Schema:
[`schemas/monitor-config.schema.json`](schemas/monitor-config.schema.json).

## The YAML file

- The file is read with a safe YAML loader; a key that appears twice is an
  error, not a silent overwrite. Unknown keys are errors too.
- `${NAME}` in a string value is replaced by the environment variable `NAME`
  (`${NAME:-fallback}` when it may be unset), so secrets such as webhook URLs
  need not be written into the file. Channel URLs are secrets and are never
  printed.
- A **duration** is written `90s`, `5m`, `1h30m`, `7d`, `1w`, `250ms`, as a
  number of seconds, or in ISO 8601 (`PT1H`).
- `defaults.window`, `defaults.drift` and `defaults.performance` are inherited
  by every model key by key: a model's own section overrides only the keys it
  sets.
- Key paths below: `models[]` is an item of the `models` list,
  `channels.<name>` an entry of the `channels` mapping.
"""

SETTINGS_INTRODUCTION = """\
## Environment settings

Every driftline process reads these variables (names are case-insensitive). Secrets
are never printed: they show as `**********` in logs, errors and reprs.

- A `SASL_PLAINTEXT` or `SASL_SSL` protocol needs `DRIFTLINE_KAFKA_SASL_MECHANISM`,
  `DRIFTLINE_KAFKA_SASL_USERNAME` and `DRIFTLINE_KAFKA_SASL_PASSWORD`.
- `DRIFTLINE_KAFKA_SSL_CERTFILE` and `DRIFTLINE_KAFKA_SSL_KEYFILE` go together
  (a client certificate and its key, for mutual TLS).
- The topic variables rename the topics; every process of one deployment needs the
  same names.
"""


def render() -> str:
    """The whole reference as markdown.

    Raises
    ------
    ReferenceDocError
        When a key has no description, or a note names a key that no longer exists.
    """
    unknown = _unknown_notes()
    if unknown:
        raise ReferenceDocError(
            "schemas/reference_doc.py has notes for keys the models no longer have: "
            + ", ".join(unknown)
        )
    lines = [INTRODUCTION]
    for section in config_sections():
        title = f"`{section.path}`" if section.path else "Top level"
        lines.append(f"### {title}\n")
        if section.summary:
            lines.append(f"{section.summary}\n")
        lines.extend(_table(list(section.keys), "key"))
        lines.append("")
    lines.append(SETTINGS_INTRODUCTION)
    lines.extend(_table(setting_keys(), "variable"))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m schemas.reference_doc PATH``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m schemas.reference_doc PATH", file=sys.stderr)
        return 2
    try:
        text = render()
    except ReferenceDocError as exc:
        print(f"schemas.reference_doc: {exc}", file=sys.stderr)
        return 1
    path = Path(args[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
