"""docs/configuration.md: current, complete, and true to the models.

The keys expected in the reference are found here by walking the models' JSON
Schema (``$ref``, ``anyOf``, ``items``, ``additionalProperties``), not by the
generator's own walk over the pydantic fields; documented defaults are checked
against the defaults of that JSON Schema.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, Field, TypeAdapter

from alerts.selector import SUPPORTED_FIELDS
from schemas.config import MonitorConfig, parse_duration
from schemas.reference_doc import ADDENDA, ReferenceDocError, config_sections, main, render
from schemas.settings import DriftlineSettings

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def schema_keys(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Key path → its JSON Schema property, for every property reachable from the root."""
    definitions = schema.get("$defs", {})

    def resolve(node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            node = definitions[node["$ref"].rsplit("/", 1)[1]]
        return node

    def objects(node: dict[str, Any], suffix: str) -> list[tuple[dict[str, Any], str]]:
        """The object schemas a property leads to, with the path suffix of their keys."""
        node = resolve(node)
        found: list[tuple[dict[str, Any], str]] = []
        for option in node.get("anyOf", []):
            found += objects(option, suffix)
        if "properties" in node:
            found.append((node, suffix))
        if node.get("type") == "array" and "items" in node:
            found += objects(node["items"], suffix + "[]")
        extra = node.get("additionalProperties")
        if isinstance(extra, dict) and extra:
            found += objects(extra, suffix + ".<name>")
        return found

    keys: dict[str, dict[str, Any]] = {}

    def walk(node: dict[str, Any], prefix: str) -> None:
        for name, prop in node["properties"].items():
            path = f"{prefix}.{name}" if prefix else name
            keys[path] = prop
            for child, suffix in objects(prop, ""):
                walk(child, path + suffix)

    walk(resolve(schema), "")
    return keys


def doc_rows(text: str) -> dict[str, list[str]]:
    """First cell (a key or variable in backticks) → the other cells of its row."""
    rows: dict[str, list[str]] = {}
    for line in text.splitlines():
        match = re.match(r"^\| `([^`]+)` \|(.*)\|$", line)
        if match:
            cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", match.group(2))]
            rows[match.group(1)] = cells
    return rows


def missing_keys(text: str) -> list[str]:
    """Configuration keys and settings variables without a row in ``text``."""
    rows = doc_rows(text)
    wanted = list(schema_keys(MonitorConfig.model_json_schema(mode="validation")))
    prefix = DriftlineSettings.model_config["env_prefix"]
    wanted += [prefix + name.upper() for name in DriftlineSettings.model_fields]
    return [key for key in wanted if key not in rows]


def test_configuration_md_is_current() -> None:
    assert DOC.read_text(encoding="utf-8") == render(), (
        "docs/configuration.md is stale: regenerate it with `make schemas`"
    )


def test_every_key_and_variable_has_a_described_row() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert missing_keys(text) == []
    rows = doc_rows(text)
    undescribed = [key for key, cells in rows.items() if cells[-1] in ("", "—")]
    assert undescribed == []


def test_the_schema_walk_finds_nested_keys() -> None:
    keys = schema_keys(MonitorConfig.model_json_schema(mode="validation"))
    for expected in (
        "models[].features[].kind",
        "channels.<name>.urls",
        "rules[].select.measurement",
        "rules[].resolve.for",
        "rules[].for",
        "topics.replication_factor",
    ):
        assert expected in keys
    assert len(keys) >= 60


def test_a_missing_row_is_reported() -> None:
    text = DOC.read_text(encoding="utf-8")
    without = "\n".join(
        line
        for line in text.splitlines()
        if not line.startswith(("| `models[].window.size` |", "| `DRIFTLINE_DATA_DIR` |"))
    )
    assert missing_keys(without) == ["models[].window.size", "DRIFTLINE_DATA_DIR"]


def _documented_default(cell: str) -> str:
    return cell.strip("`")


def test_documented_defaults_match_the_schema() -> None:
    rows = doc_rows(DOC.read_text(encoding="utf-8"))
    checked = 0
    for key, prop in schema_keys(MonitorConfig.model_json_schema(mode="validation")).items():
        if "default" not in prop:
            continue
        expected = prop["default"]
        documented = _documented_default(rows[key][1])
        if prop.get("format") == "duration":
            expected_delta = TypeAdapter(timedelta).validate_python(expected)
            assert parse_duration(documented) == expected_delta, key
        elif expected is None:
            assert documented == "null", key
        elif isinstance(expected, bool):
            assert documented == str(expected).lower(), key
        elif isinstance(expected, int | float):
            assert float(documented) == float(expected), key
        elif isinstance(expected, str):
            assert documented == expected, key
        elif expected in ([], {}):
            assert documented == ("[]" if expected == [] else "{}"), key
        else:
            continue
        checked += 1
    assert checked >= 30


def test_documented_settings_defaults_are_what_an_empty_environment_gives(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in list(os.environ):
        if name.upper().startswith("DRIFTLINE_"):
            monkeypatch.delenv(name)
    settings = DriftlineSettings()
    rows = doc_rows(DOC.read_text(encoding="utf-8"))
    assert _documented_default(rows["DRIFTLINE_KAFKA_BOOTSTRAP"][1]) == settings.kafka_bootstrap
    assert rows["DRIFTLINE_INFLUX_URL"][1] == "unset" and settings.influx_url is None
    assert _documented_default(rows["DRIFTLINE_TOPIC_PARTIALS"][1]) == settings.topic_partials
    assert float(_documented_default(rows["DRIFTLINE_KAFKA_SESSION_TIMEOUT_S"][1])) == (
        settings.kafka_session_timeout_s
    )
    assert Path(_documented_default(rows["DRIFTLINE_DATA_DIR"][1])) == settings.data_dir


def test_the_note_on_threshold_rules_names_what_the_alert_engine_evaluates() -> None:
    named = set(re.findall(r"`([a-z_]+)`", ADDENDA["rules[].select.measurement"]))
    assert set(SUPPORTED_FIELDS) <= named
    # the fields named are those of the measurements the engine reads only in part
    assert named - set(SUPPORTED_FIELDS) == {"predictions", "detections", "first_at_s"}
    assert SUPPORTED_FIELDS["volume"] == ("predictions",)
    assert SUPPORTED_FIELDS["change_points"] == ("detections", "first_at_s")


class _Undocumented(BaseModel):
    documented: int = Field(default=1, description="Has one.")
    silent: int = 2


def test_a_key_without_a_description_is_an_error() -> None:
    with pytest.raises(ReferenceDocError, match="silent has no description"):
        config_sections(_Undocumented)


def test_main_writes_the_reference(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "docs" / "configuration.md"
    assert main([str(target)]) == 0
    assert target.read_text(encoding="utf-8") == render()
    assert main([]) == 2
    assert "usage" in capsys.readouterr().err
