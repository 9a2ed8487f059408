"""Per-window drift cost: driftline's sketches against scipy.stats.ks_2samp on raw values.

One window of ``--rows`` rows × ``--features`` numeric features is compared
with a reference of ``--reference-rows`` rows (both 1,000,000 by default).
Features cycle through ten distribution families (normal, skewed, heavy-tailed,
discrete with ties, zero-inflated, …); every fourth one drifts.

driftline's per-window cost is, for every feature: an empty sketch on the
reference profile, ``update`` with the window's values, the KS test and PSI.
Building the profiles is a one-off per model version and is reported apart.
The baseline, in the same run on the same arrays, is
``scipy.stats.ks_2samp(reference, window, method="asymp")``. The KS error is
scipy's exact statistic minus driftline's, against the profile's bound (the
largest reference mass strictly inside one bin).

If Evidently is importable (``pip install evidently "pandas<3"``), its data
drift report on the same data is timed too (``--evidently``).

Usage::

    python -m benchmarks.drift_window                       # the full workload
    python -m benchmarks.drift_window --rows 200000 --features 5
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray
from rich.console import Console
from rich.table import Table
from scipy import stats

from detectors.ks import ks
from detectors.profile import NumericProfile
from detectors.psi import psi
from detectors.sketch import NumericSketch

Sampler = Callable[[np.random.Generator, int, bool], NDArray[np.float64]]
T = TypeVar("T")


def _normal(rng: np.random.Generator, size: int, drift: bool) -> NDArray[np.float64]:
    return rng.normal(0.02 if drift else 0.0, 1.0, size)


def _lognormal(rng: np.random.Generator, size: int, drift: bool) -> NDArray[np.float64]:
    return rng.lognormal(0.0, 1.05 if drift else 1.0, size)


def _exponential(rng: np.random.Generator, size: int, drift: bool) -> NDArray[np.float64]:
    return rng.exponential(3.1 if drift else 3.0, size)


def _student(rng: np.random.Generator, size: int, drift: bool) -> NDArray[np.float64]:
    return rng.standard_t(3, size) + (0.03 if drift else 0.0)


def _counts(rng: np.random.Generator, size: int, drift: bool) -> NDArray[np.float64]:
    return rng.poisson(4.1 if drift else 4.0, size).astype(np.float64)


def _uniform(rng: np.random.Generator, size: int, drift: bool) -> NDArray[np.float64]:
    return rng.uniform(0.0, 1.02 if drift else 1.0, size)


def _bimodal(rng: np.random.Generator, size: int, drift: bool) -> NDArray[np.float64]:
    share = 0.32 if drift else 0.3
    return np.where(rng.random(size) < share, rng.normal(-5, 0.5, size), rng.normal(2, 1, size))


def _zero_inflated(rng: np.random.Generator, size: int, drift: bool) -> NDArray[np.float64]:
    amounts = rng.gamma(2.0, 50.0, size)
    return np.where(rng.random(size) < (0.42 if drift else 0.4), 0.0, amounts)


def _prices(rng: np.random.Generator, size: int, drift: bool) -> NDArray[np.float64]:
    return np.round(rng.lognormal(3.0 + (0.02 if drift else 0.0), 0.5, size), 2)


def _gamma(rng: np.random.Generator, size: int, drift: bool) -> NDArray[np.float64]:
    return rng.gamma(2.0, 2.04 if drift else 2.0, size)


FAMILIES: list[tuple[str, Sampler]] = [
    ("normal", _normal),
    ("lognormal", _lognormal),
    ("exponential", _exponential),
    ("student-t3", _student),
    ("poisson", _counts),
    ("uniform", _uniform),
    ("bimodal", _bimodal),
    ("zero-inflated", _zero_inflated),
    ("prices", _prices),
    ("gamma", _gamma),
]


@dataclass
class FeatureRun:
    name: str
    family: str
    drifted: bool
    profile_s: float
    driftline_s: float
    scipy_s: float
    scipy_d: float
    driftline_d: float
    bound: float
    scipy_p: float
    driftline_p: float
    psi: float


def _timed(action: Callable[[], T]) -> tuple[float, T]:
    gc.collect()
    start = time.perf_counter()
    value = action()
    return time.perf_counter() - start, value


def run_feature(
    index: int, reference_rows: int, rows: int, seed: int
) -> tuple[FeatureRun, NDArray[np.float64], NDArray[np.float64]]:
    family, sampler = FAMILIES[index % len(FAMILIES)]
    drifted = index % 4 == 3
    rng = np.random.default_rng([seed, index])
    reference = sampler(rng, reference_rows, False)
    window = sampler(rng, rows, drifted)

    def build() -> NumericProfile:
        built = NumericProfile.build(reference)
        built.slot_index  # noqa: B018  (the lookup is built once per profile: one-off cost)
        return built

    profile_s, profile = _timed(build)

    def driftline() -> tuple[float, float, float]:
        sketch = NumericSketch.empty(profile).update(window)
        ks_result = ks(profile, sketch)
        psi_result = psi(profile, sketch)
        assert ks_result.statistic is not None and ks_result.p_value is not None
        assert psi_result.statistic is not None
        return ks_result.statistic, ks_result.p_value, psi_result.statistic

    driftline_s, (d, p, psi_value) = _timed(driftline)
    scipy_s, exact = _timed(lambda: stats.ks_2samp(reference, window, method="asymp"))
    run = FeatureRun(
        name=f"f{index:02d}",
        family=family,
        drifted=drifted,
        profile_s=profile_s,
        driftline_s=driftline_s,
        scipy_s=scipy_s,
        scipy_d=float(exact.statistic),
        driftline_d=d,
        bound=profile.ks_error_bound,
        scipy_p=float(exact.pvalue),
        driftline_p=p,
        psi=psi_value,
    )
    return run, reference, window


def run_evidently(
    features: int, reference_rows: int, rows: int, seed: int, console: Console
) -> float | None:
    """Seconds for Evidently's data drift report on the same data, or None if unavailable."""
    if importlib.util.find_spec("evidently") is None or importlib.util.find_spec("pandas") is None:
        console.print("Evidently: not installed (pip install evidently 'pandas<3'); skipped")
        return None
    import pandas as pd  # noqa: PLC0415  (optional, benchmark only)
    from evidently import Report  # noqa: PLC0415
    from evidently.presets import DataDriftPreset  # noqa: PLC0415

    reference_columns = {}
    current_columns = {}
    for index in range(features):
        _, reference, window = run_feature(index, reference_rows, rows, seed)
        reference_columns[f"f{index:02d}"] = reference
        current_columns[f"f{index:02d}"] = window
    reference_frame = pd.DataFrame(reference_columns)
    current_frame = pd.DataFrame(current_columns)
    report = Report([DataDriftPreset(method="ks")])
    seconds, _ = _timed(lambda: report.run(current_frame, reference_frame))
    return seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the window")
    parser.add_argument("--reference-rows", type=int, help="rows in the reference (= --rows)")
    parser.add_argument("--features", type=int, default=20, help="numeric features")
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--evidently", action="store_true", help="also time Evidently")
    args = parser.parse_args(argv)
    rows: int = args.rows
    reference_rows: int = args.reference_rows or rows
    console = Console(highlight=False, width=180)

    runs = [
        run_feature(index, reference_rows, rows, args.seed)[0] for index in range(args.features)
    ]

    table = Table(
        title=f"One window: {rows:,} rows × {args.features} features vs a "
        f"{reference_rows:,}-row reference",
        title_justify="left",
    )
    for heading in (
        "feature",
        "family",
        "drift",
        "scipy D",
        "driftline D",
        "KS error",
        "bound",
        "scipy p",
        "driftline p",
        "PSI",
        "driftline ms",
        "scipy ms",
    ):
        table.add_column(heading, justify="left" if heading in ("feature", "family") else "right")
    for run in runs:
        table.add_row(
            run.name,
            run.family,
            "yes" if run.drifted else "no",
            f"{run.scipy_d:.6f}",
            f"{run.driftline_d:.6f}",
            f"{run.scipy_d - run.driftline_d:.2e}",
            f"{run.bound:.2e}",
            f"{run.scipy_p:.3g}",
            f"{run.driftline_p:.3g}",
            f"{run.psi:.4f}",
            f"{run.driftline_s * 1e3:.1f}",
            f"{run.scipy_s * 1e3:.1f}",
        )
    console.print(table)

    driftline_total = sum(run.driftline_s for run in runs)
    scipy_total = sum(run.scipy_s for run in runs)
    profile_total = sum(run.profile_s for run in runs)
    calm = [run for run in runs if not run.drifted]
    errors = [run.scipy_d - run.driftline_d for run in runs]
    worst = max(range(len(runs)), key=lambda i: errors[i])
    decisions_agree = sum((run.scipy_p <= 0.05) == (run.driftline_p <= 0.05) for run in runs)
    summary = Table(title="Summary", title_justify="left", show_header=False)
    summary.add_column(justify="left")
    summary.add_column(justify="right")
    summary.add_row(
        "driftline per window (update + KS + PSI, all features)", f"{driftline_total:.3f} s"
    )
    summary.add_row("scipy.stats.ks_2samp(method='asymp'), all features", f"{scipy_total:.3f} s")
    summary.add_row("speed-up (scipy / driftline)", f"{scipy_total / driftline_total:.1f}×")
    if calm:
        calm_ratio = sum(run.scipy_s for run in calm) / sum(run.driftline_s for run in calm)
        summary.add_row("speed-up on the undrifted features only", f"{calm_ratio:.1f}×")
    summary.add_row("profile building (one-off per model version)", f"{profile_total:.3f} s")
    summary.add_row(
        "max KS error (scipy D − driftline D)",
        f"{errors[worst]:.2e} ({runs[worst].name}, bound {runs[worst].bound:.2e})",
    )
    summary.add_row(
        "max bound (largest reference mass inside a bin)", f"{max(r.bound for r in runs):.2e}"
    )
    summary.add_row(
        "max |p-value difference|", f"{max(abs(r.scipy_p - r.driftline_p) for r in runs):.2e}"
    )
    summary.add_row(
        "KS decisions (p <= 0.05) agreeing with scipy", f"{decisions_agree} / {len(runs)}"
    )
    console.print(summary)

    if args.evidently:
        seconds = run_evidently(args.features, reference_rows, rows, args.seed, console)
        if seconds is not None:
            console.print(
                f"Evidently data drift report (KS): {seconds:.2f} s, "
                f"{seconds / driftline_total:.0f}× driftline's per-window cost"
            )


if __name__ == "__main__":
    main()
