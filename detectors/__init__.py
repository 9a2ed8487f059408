"""driftline's statistical core: pure computation over numpy arrays, no I/O.

=====================  ==========================================================
module                 what it holds
=====================  ==========================================================
``profile``            reference profiles (numeric, categorical, per model version)
``sketch``             mergeable window sketches over a profile's bins
``binning``            the exact, vectorised slot lookup behind numeric sketches
``ks``, ``psi``,       drift tests: ``(profile, sketch, *, threshold, min_samples)``
``wasserstein``,       → :class:`~detectors.result.DriftResult`
``jensenshannon``,
``chi2``
``registry``           the drift tests by name, default thresholds, directions
``multiple_testing``   Benjamini–Hochberg / Bonferroni dataset-level decisions
``quality``            missing, out-of-range and unseen-category rates
``classification``,    mergeable sufficient statistics for performance metrics
``regression``
``change``             river's change detectors (ADWIN, Page–Hinkley, KSWIN, DDM, EDDM)
``errors``             :class:`~detectors.errors.DetectorError` and parameter checks
=====================  ==========================================================

Modules are imported one by one (``from detectors.ks import ks``); importing the
package itself loads nothing else.
"""
