"""``driftline compare``: a one-shot drift table between two data sets.

The reference data set is profiled exactly as ``driftline reference build``
profiles training data, the current one is sketched exactly as a stream
window is, and the same registered drift tests run on them, so a table printed
here is what the stream would report for a window holding the current data.

Formats by file suffix: ``.csv``, ``.tsv``, ``.parquet`` / ``.pq``, ``.jsonl`` /
``.ndjson`` / ``.json`` (JSON lines). Numeric columns get KS, PSI and
Wasserstein; string and boolean columns chi-square and Jensen–Shannon. Empty
CSV cells are missing values.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pa_parquet
from rich.console import Console
from rich.table import Table

from detectors.errors import DetectorError
from detectors.multiple_testing import dataset_drift
from detectors.profile import CategoricalProfile, NumericProfile
from detectors.registry import run_drift
from detectors.result import DEFAULT_MIN_SAMPLES, DriftResult
from detectors.sketch import CategoricalSketch, NumericSketch
from schemas.vocabulary import FeatureKind

EXIT_OK = 0
EXIT_INVALID = 1

NUMERIC_METHODS: tuple[str, ...] = ("ks", "psi", "wasserstein")
CATEGORICAL_METHODS: tuple[str, ...] = ("chi2", "jensenshannon")
_P_VALUE_METHOD: dict[FeatureKind, str] = {"numeric": "ks", "categorical": "chi2"}
_SUFFIXES = {
    ".csv": "CSV",
    ".tsv": "TSV",
    ".parquet": "Parquet",
    ".pq": "Parquet",
    ".jsonl": "JSON lines",
    ".ndjson": "JSON lines",
    ".json": "JSON lines",
}


class CompareError(Exception):
    """A problem with the input that the user can fix; the message is one line."""


@dataclass(frozen=True)
class FeatureRow:
    """One row of the comparison: a feature, a method and its result."""

    feature: str
    kind: FeatureKind
    result: DriftResult

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` row."""
        result = self.result
        return {
            "feature": self.feature,
            "method": result.method,
            "statistic": result.statistic,
            "p_value": result.p_value,
            "threshold": result.threshold,
            "drifted": result.drifted,
            "n_reference": result.n_reference,
            "n_current": result.n_current,
            "insufficient_data": result.insufficient_data,
        }


def read_table(path: Path, role: str, text_columns: Collection[str] = ()) -> pa.Table:
    """Read a CSV, TSV, Parquet or JSON-lines file with pyarrow.

    In a CSV or TSV file, the ``text_columns`` (configured categorical
    features) are read as the text they hold: a code ``01234`` stays
    ``"01234"``, as a serving app sends it, not the number 1234. Only an
    empty cell is missing in a text column; other columns also read ``NA``,
    ``null`` or ``NaN`` as missing, as pyarrow does.
    """
    if not path.exists():
        raise CompareError(f"{role} file '{path}' does not exist")
    if path.is_dir():
        raise CompareError(f"{role} '{path}' is a directory, not a data file")
    suffixes = [suffix.lower() for suffix in path.suffixes]
    while suffixes and suffixes[-1] in (".gz", ".bz2", ".zst", ".lz4"):
        suffixes.pop()
    suffix = suffixes[-1] if suffixes else ""
    kind = _SUFFIXES.get(suffix)
    if kind is None:
        raise CompareError(
            f"cannot tell the format of {role} file '{path}' from its suffix; "
            "use .csv, .tsv, .parquet, .pq, .jsonl, .ndjson or .json"
        )
    try:
        if kind in ("CSV", "TSV"):
            table = _read_csv(
                path,
                kind,
                pa_csv.ConvertOptions(
                    strings_can_be_null=True,
                    column_types=dict.fromkeys(text_columns, pa.string()),
                ),
            )
            return _only_empty_text_missing(path, table, text_columns, kind)
        if kind == "Parquet":
            return pa_parquet.read_table(path)
        return pa_json.read_json(path)
    except (pa.ArrowException, OSError) as exc:
        raise CompareError(
            f"could not read {role} file '{path}' as {kind}: {first_line(exc)}"
        ) from None


def first_line(exc: BaseException) -> str:
    """The first line of an error's message, or its type's name when it has none."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _read_csv(path: Path, kind: str, convert: pa_csv.ConvertOptions) -> pa.Table:
    delimiter = "\t" if kind == "TSV" else ","
    return pa_csv.read_csv(
        path, parse_options=pa_csv.ParseOptions(delimiter=delimiter), convert_options=convert
    )


def _only_empty_text_missing(
    path: Path, table: pa.Table, text_columns: Collection[str], kind: str
) -> pa.Table:
    """The text columns read again with only empty cells as missing (``NA`` is Namibia)."""
    wanted = [name for name in text_columns if name in table.column_names]
    if not wanted:
        return table
    raw = _read_csv(
        path,
        kind,
        pa_csv.ConvertOptions(
            include_columns=wanted,
            column_types=dict.fromkeys(wanted, pa.string()),
            strings_can_be_null=False,
        ),
    )
    for name in wanted:
        column = raw.column(name)
        empty = pc.equal(column, "")
        text = pc.if_else(empty, pa.scalar(None, pa.string()), column)
        table = table.set_column(table.column_names.index(name), name, text)
    return table


def column_kind(data_type: pa.DataType) -> FeatureKind | None:
    """``numeric`` or ``categorical`` for a column type, None when compare cannot test it.

    Examples
    --------
    >>> column_kind(pa.int32()), column_kind(pa.bool_()), column_kind(pa.date32())
    ('numeric', 'categorical', None)
    """
    if pa.types.is_dictionary(data_type):
        data_type = data_type.value_type
    if pa.types.is_integer(data_type) or pa.types.is_floating(data_type):
        return "numeric"
    if pa.types.is_decimal(data_type):
        return "numeric"
    if (
        pa.types.is_string(data_type)
        or pa.types.is_large_string(data_type)
        or pa.types.is_boolean(data_type)
    ):
        return "categorical"
    return None


def _kind_of(
    name: str, reference: pa.Table, current: pa.Table, paths: Sequence[Path]
) -> FeatureKind | None:
    reference_type = reference.schema.field(name).type
    current_type = current.schema.field(name).type
    kinds = [
        None if pa.types.is_null(data_type) else column_kind(data_type)
        for data_type in (reference_type, current_type)
    ]
    for data_type, kind, path in zip((reference_type, current_type), kinds, paths, strict=True):
        if kind is None and not pa.types.is_null(data_type):
            raise CompareError(
                f"column '{name}' in '{path}' has type {data_type}; "
                "compare tests numeric, string and boolean columns"
            )
    if kinds[0] is not None and kinds[1] is not None and kinds[0] != kinds[1]:
        raise CompareError(
            f"column '{name}' is {kinds[0]} ({reference_type}) in '{paths[0]}' "
            f"but {kinds[1]} ({current_type}) in '{paths[1]}'"
        )
    return kinds[0] or kinds[1] or "categorical"


def _numeric(column: pa.ChunkedArray) -> np.ndarray[Any, np.dtype[np.float64]]:
    if pa.types.is_null(column.type):
        return np.full(len(column), np.nan)
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    values = pc.fill_null(pc.cast(column, pa.float64()), float("nan"))
    return np.asarray(values.to_numpy(), dtype=np.float64)


def _categorical(column: pa.ChunkedArray) -> list[object]:
    values: list[object] = column.to_pylist()
    return values


def select_features(
    reference: pa.Table, current: pa.Table, features: list[str] | None, paths: Sequence[Path]
) -> tuple[list[tuple[str, FeatureKind]], list[tuple[str, str]]]:
    """The features to compare with their kinds, and the columns left out with their types.

    Explicit names must exist in both files and be testable; without names,
    every reference column is compared except those of other types
    (timestamps, lists, …), which are listed as left out.
    """
    if features is not None:
        names = list(dict.fromkeys(name.strip() for name in features if name.strip()))
        if not names:
            raise CompareError("--features: no feature names given")
        explicit = True
    else:
        names = list(reference.column_names)
        explicit = False
    for name in names:
        for table, path, role in (
            (reference, paths[0], "reference"),
            (current, paths[1], "current"),
        ):
            if name not in table.column_names:
                hint = "" if explicit else "; pass --features to compare a subset"
                columns = ", ".join(table.column_names[:20])
                more = ", …" if len(table.column_names) > 20 else ""
                raise CompareError(
                    f"column '{name}' is missing from {role} file '{path}' "
                    f"(its columns: {columns}{more}){hint}"
                )
    selected: list[tuple[str, FeatureKind]] = []
    skipped: list[tuple[str, str]] = []
    for name in names:
        if not explicit:
            types = (reference.schema.field(name).type, current.schema.field(name).type)
            untestable = [
                data_type
                for data_type in types
                if not pa.types.is_null(data_type) and column_kind(data_type) is None
            ]
            if untestable:
                skipped.append((name, str(untestable[0])))
                continue
        kind = _kind_of(name, reference, current, paths)
        if kind is not None:
            selected.append((name, kind))
    if not selected:
        raise CompareError(
            f"no numeric, string or boolean columns to compare in '{paths[0]}' and '{paths[1]}'"
        )
    return selected, skipped


def compare_tables(
    reference: pa.Table,
    current: pa.Table,
    selected: Sequence[tuple[str, FeatureKind]],
    min_samples: int = DEFAULT_MIN_SAMPLES,
) -> list[FeatureRow]:
    """Profile the reference, sketch the current data and run the tests, per feature."""
    rows: list[FeatureRow] = []
    for name, kind in selected:
        if kind == "numeric":
            numeric_profile = NumericProfile.build(_numeric(reference.column(name)))
            numeric_sketch = NumericSketch.empty(numeric_profile).update(
                _numeric(current.column(name))
            )
            for method in NUMERIC_METHODS:
                result = run_drift(method, numeric_profile, numeric_sketch, min_samples=min_samples)
                rows.append(FeatureRow(name, kind, result))
        else:
            categorical_profile = CategoricalProfile.build(_categorical(reference.column(name)))
            categorical_sketch = CategoricalSketch.empty(categorical_profile).update(
                _categorical(current.column(name))
            )
            for method in CATEGORICAL_METHODS:
                result = run_drift(
                    method, categorical_profile, categorical_sketch, min_samples=min_samples
                )
                rows.append(FeatureRow(name, kind, result))
    return rows


def _number(value: float | None, p_value: bool = False) -> str:
    if value is None:
        return "–"
    if p_value:
        return f"{value:.3g}" if value >= 1e-4 or value == 0 else f"{value:.1e}"
    return f"{value:.4g}"


def _print_table(
    rows: Sequence[FeatureRow],
    skipped: Sequence[tuple[str, str]],
    paths: tuple[Path, Path],
    out: TextIO,
    alpha: float = 0.05,
) -> None:
    reference, current = paths
    width = None if getattr(out, "isatty", lambda: False)() else 120
    console = Console(file=out, width=width, highlight=False, soft_wrap=False)
    table = Table(
        title=f"driftline compare: {reference.name} → {current.name}", title_justify="left"
    )
    for heading, justify in (
        ("feature", "left"),
        ("method", "left"),
        ("statistic", "right"),
        ("p-value", "right"),
        ("threshold", "right"),
        ("drifted", "left"),
        ("n ref", "right"),
        ("n cur", "right"),
    ):
        table.add_column(heading, justify=justify)  # type: ignore[arg-type]
    for row in rows:
        result = row.result
        if result.insufficient_data:
            decision = "[yellow]too few values[/]"
        elif result.drifted:
            decision = "[bold red]yes[/]"
        else:
            decision = "[green]no[/]"
        table.add_row(
            row.feature,
            result.method,
            _number(result.statistic),
            _number(result.p_value, p_value=True),
            _number(result.threshold),
            decision,
            str(result.n_reference),
            str(result.n_current),
        )
    console.print(table)
    p_values = {
        row.feature: None if row.result.insufficient_data else row.result.p_value
        for row in rows
        if row.result.method == _P_VALUE_METHOD[row.kind]
    }
    dataset = dataset_drift(p_values, alpha=alpha)
    console.print(
        f"{dataset.n_drifted} of {dataset.n_tested} features drifted "
        f"(KS / chi-square p-values, Benjamini–Hochberg at {alpha})"
        + (f"; too few values: {', '.join(dataset.untested)}" if dataset.untested else ""),
        markup=False,
    )
    if skipped:
        console.print(
            "not compared (not numeric, string or boolean): "
            + ", ".join(f"{name} ({data_type})" for name, data_type in skipped),
            markup=False,
        )


def run_compare(
    reference: Path,
    current: Path,
    features: list[str] | None,
    as_json: bool,
    out: TextIO,
    *,
    min_samples: int = DEFAULT_MIN_SAMPLES,
    err: TextIO | None = None,
) -> int:
    """Compare two data sets feature by feature and print the drift table.

    Parameters
    ----------
    reference, current
        CSV, TSV, Parquet or JSON-lines files.
    features
        Feature names to compare (each must exist in both files), or None for
        every numeric, string and boolean column of the reference.
    as_json
        Print a JSON list of rows (``feature``, ``method``, ``statistic``,
        ``p_value``, ``threshold``, ``drifted``, ``n_reference``,
        ``n_current``, ``insufficient_data``) instead of a table.
    out
        Where the table or JSON goes.
    min_samples
        Fewest non-missing values on each side for a test result.
    err
        Where a problem is reported (one line); ``out`` when None.

    Returns
    -------
    int
        0 when the comparison ran (whatever it found), 1 for bad input.
    """
    paths = (Path(reference), Path(current))
    try:
        reference_table = read_table(paths[0], "reference")
        current_table = read_table(paths[1], "current")
        selected, skipped = select_features(reference_table, current_table, features, paths)
        rows = compare_tables(reference_table, current_table, selected, min_samples)
    except (CompareError, DetectorError) as exc:
        print(f"driftline compare: {exc}", file=err if err is not None else out)
        return EXIT_INVALID
    if as_json:
        json.dump([row.to_dict() for row in rows], out, indent=2, allow_nan=False)
        out.write("\n")
    else:
        _print_table(rows, skipped, paths, out)
    return EXIT_OK
