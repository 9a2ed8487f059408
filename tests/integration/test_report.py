"""``driftline report`` from a real InfluxDB 1.6 agrees with the report from the file sink.

The scenario of ``tests/unit/test_report.py`` is written by the real file sink;
the same file is posted to InfluxDB 1.6 (``/write``), which keeps one row per
series and timestamp.  The report read back through InfluxQL must have the
same groups, drift series, alerts, volume and final performance values as the
report made from the file; only the first emitted values of re-written
performance points are the file's alone.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.cli import main
from streams.report import (
    ReportData,
    ReportError,
    Selection,
    build_report,
    read_file_store,
    read_influx_store,
    write_report,
)
from tests.servers import influx_write
from tests.unit.test_report import (
    EU_HASH,
    T0_NS,
    WINDOW_NS,
    check_png,
    window,
    write_scenario,
)

pytestmark = pytest.mark.integration


def comparable(report: ReportData) -> dict[str, object]:
    """What both stores must agree on, group by group."""
    return {
        group.key.slug: {
            "drift": [(series.feature, series.method, series.samples) for series in group.drift],
            "alerts": group.alerts,
            "volume": group.volume,
            "performance": [
                (
                    series.metric,
                    [
                        (w.time_ns, w.final_value, w.final_coverage, w.n_labelled, w.is_final)
                        for w in series.windows
                    ],
                )
                for series in group.performance
            ],
        }
        for group in report.groups
    }


@pytest.fixture
def stores(tmp_path: Path, influxdb1_url: str, influxdb1_database: str) -> Path:
    """The scenario in ``tmp_path/data/metrics.lp`` and in the test's InfluxDB database."""
    metrics = write_scenario(tmp_path / "data")
    influx_write(influxdb1_url, influxdb1_database, metrics.read_text(encoding="utf-8"))
    return tmp_path / "data"


def test_report_from_influxdb_has_the_series_of_the_report_from_the_file(
    stores: Path, influxdb1_url: str, influxdb1_database: str, tmp_path: Path
) -> None:
    from_file = build_report(read_file_store(stores))
    from_influx = build_report(read_influx_store(influxdb1_url, influxdb1_database))
    assert not from_influx.keeps_rewrites
    assert comparable(from_influx) == comparable(from_file)
    assert len(from_file.groups) == 3
    # InfluxDB keeps the last write only: the first emitted value is the final one there
    file_accuracy = from_file.groups[0].performance[0].windows
    influx_accuracy = from_influx.groups[0].performance[0].windows
    assert [w.first_value for w in file_accuracy] == [0.5, 0.8, 0.6]
    assert [w.first_value for w in influx_accuracy] == [0.75, 0.8, 0.65]
    assert [w.writes for w in influx_accuracy] == [1, 1, 1]
    files = write_report(from_influx, tmp_path / "out")
    for image in files.images:
        assert check_png(image.read_bytes()).width == 1200
    page = files.html.read_text(encoding="utf-8")
    assert f"InfluxDB {influxdb1_url}, database {influxdb1_database}" in page
    assert "Late-label corrections" not in page


def test_selection_is_applied_by_the_queries(
    stores: Path, influxdb1_url: str, influxdb1_database: str
) -> None:
    selection = Selection("churn", since=window(2), until=window(4))
    from_file = build_report(read_file_store(stores, selection))
    from_influx = build_report(read_influx_store(influxdb1_url, influxdb1_database, "", selection))
    assert comparable(from_influx) == comparable(from_file)
    times = {s.time_ns for g in from_influx.groups for d in g.drift for s in d.samples}
    assert times == {T0_NS + i * WINDOW_NS for i in (2, 3, 4)}


def test_report_command_reads_influxdb_when_its_url_is_set(
    stores: Path,
    influxdb1_url: str,
    influxdb1_database: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DRIFTLINE_INFLUX_URL", influxdb1_url)
    monkeypatch.setenv("DRIFTLINE_INFLUX_BUCKET", influxdb1_database)
    out = tmp_path / "from-influx"
    assert main(["report", "-o", str(out), "--model", "churn"]) == 0
    printed = capsys.readouterr().out
    assert f"report: {out / 'report.html'}" in printed
    assert sorted(path.name for path in out.iterdir()) == [
        "churn-v3-all-drift.png",
        "churn-v3-all-overview.png",
        "churn-v3-all-performance.png",
        f"churn-v3-region_eu_west-{EU_HASH}-drift.png",
        "report.html",
    ]
    # --data-dir reads the file even when an InfluxDB URL is set
    assert main(["report", "-o", str(tmp_path / "from-file"), "--data-dir", str(stores)]) == 0
    assert str(stores / "metrics.lp") in (tmp_path / "from-file" / "report.html").read_text()


def test_unknown_database_and_empty_database_are_clear_errors(
    influxdb1_url: str, influxdb1_database: str
) -> None:
    with pytest.raises(ReportError, match=r"database not found.*DBRP mapping"):
        read_influx_store(influxdb1_url, f"{influxdb1_database}_missing")
    with pytest.raises(ReportError, match="nothing to report"):
        build_report(read_influx_store(influxdb1_url, influxdb1_database))
