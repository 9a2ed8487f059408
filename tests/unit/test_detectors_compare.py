"""``driftline compare`` logic (streams.compare.run_compare) on small files."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pa_parquet
import pytest
from scipy import stats

from streams.compare import run_compare

ROWS_REFERENCE = 3_000
ROWS_CURRENT = 1_200


def _columns(seed: int, rows: int, shift: float) -> dict[str, list[Any]]:
    rng = np.random.default_rng(seed)
    age = np.round(rng.normal(40 + shift, 12, rows), 3).tolist()
    age[::97] = [None] * len(age[::97])  # some missing values
    return {
        "age": age,
        "income": np.round(rng.lognormal(10, 0.8, rows), 2).tolist(),
        "visits": rng.poisson(3 + shift / 10, rows).tolist(),
        "plan": rng.choice(["basic", "pro", "team"], rows, p=[0.6, 0.3, 0.1]).tolist(),
        "region": rng.choice(
            ["eu", "us", "apac"] if shift == 0 else ["eu", "us", "latam"], rows
        ).tolist(),
        "active": (rng.random(rows) < 0.7).tolist(),
    }


def _write(path: Path, columns: dict[str, list[Any]]) -> Path:
    table = pa.table(columns)
    if path.suffix == ".csv":
        pa_csv.write_csv(table, path)
    elif path.suffix == ".parquet":
        pa_parquet.write_table(table, path)
    else:
        names = list(columns)
        with path.open("w", encoding="utf-8") as handle:
            for row in zip(*(columns[name] for name in names), strict=True):
                handle.write(json.dumps(dict(zip(names, row, strict=True))) + "\n")
    return path


def _compare(
    reference: Path, current: Path, features: list[str] | None = None, **kwargs: Any
) -> tuple[int, str]:
    out = io.StringIO()
    code = run_compare(reference, current, features, True, out, **kwargs)
    return code, out.getvalue()


def _finite(values: list[Any]) -> np.ndarray[Any, np.dtype[np.float64]]:
    array = np.array([math.nan if value is None else value for value in values], dtype=float)
    finite: np.ndarray[Any, np.dtype[np.float64]] = array[np.isfinite(array)]
    return finite


@pytest.fixture(scope="module")
def data() -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
    return _columns(1, ROWS_REFERENCE, 0.0), _columns(2, ROWS_CURRENT, 4.0)


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_json_rows_match_independent_computations(
    tmp_path: Path, suffix: str, data: tuple[dict[str, list[Any]], dict[str, list[Any]]]
) -> None:
    reference_columns, current_columns = data
    reference = _write(tmp_path / f"reference{suffix}", reference_columns)
    current = _write(tmp_path / f"current{suffix}", current_columns)
    code, output = _compare(reference, current)
    assert code == 0
    rows = json.loads(output)
    required = {"feature", "method", "statistic", "p_value", "drifted"}
    for row in rows:
        assert required <= set(row)
        assert set(row) <= required | {"threshold", "n_reference", "n_current", "insufficient_data"}
    by_key = {(row["feature"], row["method"]): row for row in rows}
    assert sorted(by_key) == sorted(
        [
            (name, method)
            for name in ("age", "income", "visits")
            for method in ("ks", "psi", "wasserstein")
        ]
        + [
            (name, method)
            for name in ("plan", "region", "active")
            for method in ("chi2", "jensenshannon")
        ]
    )
    for name in ("age", "income", "visits"):
        ref = _finite(reference_columns[name])
        cur = _finite(current_columns[name])
        row = by_key[(name, "ks")]
        assert (row["n_reference"], row["n_current"]) == (ref.size, cur.size)
        exact = stats.ks_2samp(ref, cur, method="asymp")
        assert 0 <= exact.statistic - row["statistic"] <= 1 / 2048 + 1e-12
        en = round(ref.size * cur.size / (ref.size + cur.size))
        assert abs(row["p_value"] - stats.kstwo.sf(row["statistic"], en)) <= 1e-6
        assert row["drifted"] == (row["p_value"] <= 0.05)
    # A shift of 4 years in age is drift for every numeric test.
    assert by_key[("age", "ks")]["drifted"] and by_key[("age", "wasserstein")]["drifted"]
    # chi-square straight from the category counts.
    for name in ("plan", "region", "active"):
        ref_values = [str(v).lower() for v in reference_columns[name]]
        cur_values = [str(v).lower() for v in current_columns[name]]
        categories = sorted(set(ref_values) | set(cur_values))
        table = [
            [ref_values.count(c) for c in categories],
            [cur_values.count(c) for c in categories],
        ]
        expected = stats.chi2_contingency(np.array(table))
        row = by_key[(name, "chi2")]
        assert row["statistic"] == pytest.approx(expected.statistic, rel=1e-12)
        assert row["p_value"] == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)
    assert by_key[("region", "chi2")]["drifted"]  # apac replaced by latam
    assert not by_key[("plan", "chi2")]["drifted"]


def test_all_formats_give_the_same_answer(
    tmp_path: Path, data: tuple[dict[str, list[Any]], dict[str, list[Any]]]
) -> None:
    outputs = set()
    for suffix in (".csv", ".parquet", ".jsonl"):
        reference = _write(tmp_path / f"reference{suffix}", data[0])
        current = _write(tmp_path / f"current{suffix}", data[1])
        code, output = _compare(reference, current, ["age", "plan", "active"])
        assert code == 0
        outputs.add(output)
    assert len(outputs) == 1


def test_features_select_and_order_columns(
    tmp_path: Path, data: tuple[dict[str, list[Any]], dict[str, list[Any]]]
) -> None:
    reference = _write(tmp_path / "reference.parquet", data[0])
    current = _write(tmp_path / "current.csv", data[1])
    code, output = _compare(reference, current, ["plan", "income", "plan"])
    assert code == 0
    assert [row["feature"] for row in json.loads(output)] == ["plan"] * 2 + ["income"] * 3


def test_table_output(
    tmp_path: Path, data: tuple[dict[str, list[Any]], dict[str, list[Any]]]
) -> None:
    reference = _write(tmp_path / "reference.csv", data[0])
    current = _write(tmp_path / "current.csv", data[1])
    out = io.StringIO()
    assert run_compare(reference, current, None, False, out) == 0
    text = out.getvalue()
    for word in ("feature", "age", "ks", "psi", "wasserstein", "chi2", "jensenshannon", "yes"):
        assert word in text
    assert "features drifted" in text and "Benjamini" in text


def test_small_data_is_insufficient_not_meaningless(tmp_path: Path) -> None:
    reference = _write(tmp_path / "reference.csv", {"x": [1.0, 2.0, 3.0], "c": ["a", "b", "a"]})
    current = _write(tmp_path / "current.csv", {"x": [9.0, 9.0], "c": ["z", "z"]})
    code, output = _compare(reference, current)
    assert code == 0
    for row in json.loads(output):
        assert row["insufficient_data"] and row["statistic"] is None and not row["drifted"]
    code, output = _compare(reference, current, min_samples=1)
    assert all(row["statistic"] is not None for row in json.loads(output))


def test_untestable_columns_are_left_out_unless_asked_for(tmp_path: Path) -> None:
    reference = tmp_path / "reference.parquet"
    current = tmp_path / "current.parquet"
    for path, size in ((reference, 200), (current, 150)):
        pa_parquet.write_table(
            pa.table(
                {
                    "x": np.arange(size, dtype=float),
                    "seen_at": pa.array(np.arange(size), pa.timestamp("s")),
                }
            ),
            path,
        )
    out = io.StringIO()
    assert run_compare(reference, current, None, False, out) == 0
    assert "not compared" in out.getvalue() and "seen_at (timestamp" in out.getvalue()
    code, output = _compare(reference, current, ["seen_at"])
    assert code == 1
    assert "column 'seen_at'" in output and "has type timestamp" in output


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing column", "column 'tenure' is missing from current file"),
        ("missing file", "reference file"),
        ("unknown suffix", "cannot tell the format of current file"),
        ("type conflict", "column 'x' is numeric (double) in"),
        ("unreadable", "could not read current file"),
        ("no features", "--features: no feature names given"),
    ],
)
def test_bad_input_gives_one_clear_line(tmp_path: Path, case: str, message: str) -> None:
    reference = _write(tmp_path / "reference.csv", {"x": [1.5, 2.5], "tenure": [1, 2]})
    current = _write(tmp_path / "current.csv", {"x": [1.5, 2.5], "plan": ["a", "b"]})
    features: list[str] | None = None
    if case == "missing column":
        features = ["x", "tenure"]
    elif case == "missing file":
        reference = tmp_path / "nowhere.csv"
    elif case == "unknown suffix":
        current = tmp_path / "current.xlsx"
        current.write_text("x\n1\n")
    elif case == "type conflict":
        current = _write(tmp_path / "current.jsonl", {"x": ["a", "b"]})
        features = ["x"]
    elif case == "unreadable":
        current = tmp_path / "broken.parquet"
        current.write_bytes(b"this is not parquet")
    else:
        features = [" ", ""]
    out, err = io.StringIO(), io.StringIO()
    code = run_compare(reference, current, features, True, out, err=err)
    assert code == 1
    assert out.getvalue() == ""
    lines = err.getvalue().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
