"""The driftline command: help, check-config on good and broken files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from detectors.profile import CategoricalProfile, ReferenceProfile
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
    assert "Connection refused" in result.stdout  # the cause, not only "transport failure"
    assert "Traceback" not in result.stderr


def test_reference_build_keeps_categorical_codes_as_their_text(tmp_path: Path) -> None:
    # A zip code 01234 is the text a serving app sends, not the number 1234, and
    # NA (Namibia) is a country, not a missing value; an empty cell is missing.
    (tmp_path / "monitors.yaml").write_text(
        "version: 1\n"
        "models:\n"
        "  - id: m\n"
        "    task: binary\n"
        "    reference: refs/m-{version}.json\n"
        "    features:\n"
        "      - {name: x, kind: numeric}\n"
        "      - {name: zip, kind: categorical}\n"
        "      - {name: country, kind: categorical}\n"
    )
    rows = [("1.5", "01234", "NA"), ("NA", "00501", "DE"), ("2.5", "01234", ""), ("3", "", "NA")]
    (tmp_path / "train.csv").write_text(
        "x,zip,country\n" + "".join(",".join(row) + "\n" for row in rows)
    )
    main(["reference", "build", "--model", "m", "--version", "1", "--data",
          str(tmp_path / "train.csv"), "-c", str(tmp_path / "monitors.yaml"),
          "-o", str(tmp_path / "ref.json")])  # fmt: skip
    profile = ReferenceProfile.from_json((tmp_path / "ref.json").read_bytes())
    zips, countries, x = (profile.features[name] for name in ("zip", "country", "x"))
    assert isinstance(zips, CategoricalProfile) and isinstance(countries, CategoricalProfile)
    assert dict(zip(zips.categories, zips.counts.tolist(), strict=True)) == {"01234": 2, "00501": 1}
    assert zips.missing == 1
    assert dict(zip(countries.categories, countries.counts.tolist(), strict=True)) == {
        "NA": 2,
        "DE": 1,
    }
    assert countries.missing == 1
    assert (x.n, x.missing) == (3, 1)  # a numeric column still reads NA as missing


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ("x,y,p,s\n1.5,1,1,0.9\nabc,0,0,0.2\n", "numeric feature column 'x' of '"),
        ("x,y,p,s\n1.5,1,1,0.9\n2.5,0,0,abc\n", "score column 's' of '"),
        ("x,y,p,s\n1.5,1,1,0.9\n2.5,,0,0.2\n", "the baseline from target 'y', prediction 'p'"),
    ],
)
def test_reference_build_names_the_column_it_cannot_read(
    tmp_path: Path, rows: str, expected: str
) -> None:
    (tmp_path / "monitors.yaml").write_text(
        "models: [{id: m, task: binary, reference: r.json, features: [{name: x, kind: numeric}]}]\n"
    )
    (tmp_path / "train.csv").write_text(rows)
    done = run("reference", "build", "--model", "m", "--version", "1",
               "--data", str(tmp_path / "train.csv"), "-c", str(tmp_path / "monitors.yaml"),
               "--target", "y", "--prediction", "p", "--score", "s",
               "-o", str(tmp_path / "ref.json"))  # fmt: skip
    assert done.returncode == 1
    assert expected in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr


def test_reference_build_leaves_out_an_overflowing_baseline_and_reports_an_unwritable_output(
    tmp_path: Path,
) -> None:
    (tmp_path / "monitors.yaml").write_text(
        "models: [{id: m, task: regression, reference: r.json,"
        " features: [{name: x, kind: numeric}]}]\n"
    )
    # |1e308 - (-1e308)| overflows: the MAE is inf, no baseline a rule could use.
    (tmp_path / "train.csv").write_text("x,y,p\n1.5,1e308,-1e308\n2.5,1,1\n3.5,2,2\n")
    args = ["reference", "build", "--model", "m", "--version", "1",
            "--data", str(tmp_path / "train.csv"), "-c", str(tmp_path / "monitors.yaml"),
            "--target", "y", "--prediction", "p"]  # fmt: skip
    done = run(*args, "-o", str(tmp_path / "ref.json"))
    assert done.returncode == 0, done.stdout + done.stderr
    baseline = ReferenceProfile.from_json((tmp_path / "ref.json").read_bytes()).baseline
    assert "mae" not in baseline and "rmse" not in baseline
    (tmp_path / "taken").mkdir()
    done = run(*args, "-o", str(tmp_path / "taken"))
    assert done.returncode == 1
    assert "cannot write" in done.stdout and "Traceback" not in done.stdout + done.stderr
