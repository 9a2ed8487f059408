"""The driftline command: help, check-config on good and broken files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from streams.cli import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "compose" / "monitors.example.yaml"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )


def test_help_lists_every_subcommand() -> None:
    result = run("--help")
    assert result.returncode == 0
    for command in (
        "worker",
        "topics",
        "reference",
        "replay",
        "demo",
        "report",
        "compare",
        "check-config",
        "alerts",
    ):
        assert command in result.stdout


def test_check_config_accepts_the_example() -> None:
    result = run("check-config", str(EXAMPLE))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid" in result.stdout
    assert (
        "model churn (binary): 10 features (6 numeric, 4 categorical), windows of 1h"
        in result.stdout
    )
    assert "json://" not in result.stdout


def test_check_config_names_the_bad_key(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        EXAMPLE.read_text().replace(
            "{name: device, kind: categorical}", "{name: device, kind: text}"
        )
    )
    result = run("check-config", str(broken))
    assert result.returncode == 1
    assert (
        "models[0].features[8].kind: must be one of numeric, categorical (got 'text')"
        in result.stdout
    )
    assert "Traceback" not in result.stdout + result.stderr


def test_check_config_refuses_a_rule_the_worker_would_refuse(tmp_path: Path) -> None:
    # The schema accepts a resolve threshold on the wrong side of the firing
    # one; the alert engine cannot judge such a rule, so neither may check-config.
    broken = tmp_path / "broken.yaml"
    text = EXAMPLE.read_text()
    assert "resolve: {threshold: 0.1, for: 2}" in text
    broken.write_text(
        text.replace("resolve: {threshold: 0.1, for: 2}", "resolve: {threshold: 0.3}", 1)
    )
    result = run("check-config", str(broken))
    assert result.returncode == 1, result.stdout
    assert (
        "rules[0] 'feature-drift': resolve.threshold 0.3 must be on the good side" in result.stdout
    )
    assert "Traceback" not in result.stdout + result.stderr


def test_check_config_on_a_missing_file(tmp_path: Path) -> None:
    result = run("check-config", str(tmp_path / "nope.yaml"))
    assert result.returncode == 1
    assert "cannot read" in result.stdout
    assert "Traceback" not in result.stderr


def test_report_without_data_says_where_it_looked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", "--data-dir", str(tmp_path / "empty")]) == 1
    out = capsys.readouterr().out
    assert f"no time series at {tmp_path / 'empty' / 'metrics.lp'}" in out
    assert "Traceback" not in out


def test_alerts_tail_without_a_broker_is_a_clear_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "streams.cli", "alerts", "tail", "--for", "1"],
        capture_output=True, text=True, cwd=ROOT, timeout=60, check=False,
        env={"PATH": "/usr/bin:/bin", "DRIFTLINE_KAFKA_BOOTSTRAP": "127.0.0.1:9"},
    )  # fmt: skip
    assert result.returncode == 1
    assert "driftline alerts: cannot reach Kafka at 127.0.0.1:9" in result.stdout
    assert "Traceback" not in result.stderr
