"""Where values fall among a profile's bin edges: the hot path of every numeric sketch.

Slot layout
-----------
For ``K`` strictly increasing edges ``e[0] < … < e[K-1]`` a value ``x`` falls
into one of ``2K + 1`` slots::

    slot 0        (-inf, e[0])        underflow
    slot 2j + 1   {e[j]}              exactly on edge j
    slot 2j       (e[j-1], e[j])      strictly between edges j-1 and j  (1 <= j < K)
    slot 2K       (e[K-1], +inf)      overflow

The slot of ``x`` is ``#(edges < x) + #(edges <= x)``. Keeping every edge as a
slot of its own makes the cumulative counts exact on both sides of each edge,
which is what bounds the error of the sketched KS statistic by the reference
mass strictly *inside* one bin (see :mod:`detectors.ks`).

How the lookup is fast and exact
--------------------------------
``np.searchsorted`` of unsorted values into a few thousand edges costs about
70 ns per value (a branchy binary search); sorting the batch first costs more.
:class:`SlotIndex` maps each value to a cell of a uniform grid with
``trunc(clip((x - a) * s))``. Under IEEE rounding this is a monotone
(non-decreasing) function of ``x``, so every edge whose cell is below the
value's cell is below the value and every edge whose cell is above is above it.
Only the ``W`` edges that may share the value's cell (``W`` is 1 or 2 on most
data) are compared with the value, exactly. The grid's range and ``W`` are
chosen per edge set to minimise the expected work; cells that hold more than
``W`` edges (heavy tails clipped into the end cells) are marked with NaN and
their values resolved with ``searchsorted``. The result
is exact for every input; only the speed depends on the data.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

_DIRECT_EDGES = 6
"""Up to this many edges every value is compared with every edge (no grid)."""

_MAX_PASSES = 4
"""Most edges compared per value through the grid."""

_PASS_COST = 1.0
"""Relative cost per value of one comparison pass (a gather and two compares)."""

_SEARCH_COST = 25.0
"""Relative cost per value of a binary search among a few thousand edges."""

_CHUNK = 1 << 16


class SlotIndex:
    """Vectorised, exact slot lookup for one set of edges (see the module docstring).

    Parameters
    ----------
    edges
        Strictly increasing, finite float64 edges (may be empty).

    Examples
    --------
    >>> index = SlotIndex(np.array([0.0, 1.0, 2.0]))
    >>> index.slots(np.array([-5.0, 0.0, 0.5, 1.0, 2.0, 7.0])).tolist()
    [0, 1, 2, 3, 5, 6]
    >>> index.count(np.array([0.5, 0.5, 9.0])).tolist()
    [0, 0, 2, 0, 0, 0, 1]
    """

    def __init__(self, edges: NDArray[np.float64]) -> None:
        self.edges: NDArray[np.float64] = np.ascontiguousarray(edges, dtype=np.float64)
        self.n_slots = 2 * self.edges.size + 1
        self._origin = 0.0
        self._scale = 0.0
        self._cells = 1
        self._candidates: list[NDArray[np.float64]] = []
        self._offset: NDArray[np.float32] = np.zeros(1, dtype=np.float32)
        self._crowded = False
        if self.edges.size > _DIRECT_EDGES:
            self._build_grid()

    def _cell_of(
        self, values: NDArray[np.float64], scale: float, origin: float, cells: int
    ) -> NDArray[np.intp]:
        if scale == 0.0:
            return np.zeros(values.shape, dtype=np.intp)
        with np.errstate(over="ignore", invalid="ignore"):
            position = np.subtract(values, origin)
            np.multiply(position, scale, out=position)
        np.clip(position, 0.0, float(cells - 1), out=position)
        return position.astype(np.intp)

    def _build_grid(self) -> None:
        k = self.edges.size
        cells = int(min(1 << 17, max(1024, 16 * k)))
        trims = sorted({0, k // 256, k // 64, k // 16, k // 4})
        best: tuple[float, float, float, int, NDArray[np.intp]] | None = None
        for low_trim in trims:
            for high_trim in trims:
                low = float(self.edges[low_trim])
                high = float(self.edges[k - 1 - high_trim])
                if not high > low:
                    continue
                with np.errstate(over="ignore", divide="ignore"):
                    scale = float(cells / (high - low))
                if not np.isfinite(scale):
                    continue
                edge_cells = self._cell_of(self.edges, scale, low, cells)
                first = np.searchsorted(edge_cells, np.arange(cells + 1), side="left")
                width = np.diff(first)
                for passes in range(1, _MAX_PASSES + 1):
                    # Reference mass is about width / k per cell: the share of values
                    # that land in a crowded cell and need a binary search.
                    crowded_share = float(width[width > passes].sum()) / k
                    cost = passes * _PASS_COST + crowded_share * _SEARCH_COST
                    if best is None or cost < best[0]:
                        best = (cost, low, scale, passes, first)
        if best is None:  # edges too far apart for any float grid: search everything
            self._origin, self._scale, self._cells = 0.0, 0.0, 1
            first = np.array([0, k], dtype=np.intp)
            passes = 0
        else:
            _, self._origin, self._scale, passes, first = best
            self._cells = cells
        width = np.diff(first)
        padded = np.concatenate([self.edges, np.full(passes + 1, np.inf)])
        starts = first[:-1]
        self._candidates = [padded[starts + i] for i in range(passes)]
        crowded = width > passes
        self._crowded = bool(crowded.any())
        # float32 holds every slot index exactly (at most 2 * 65,537 + 1 < 2**24) and
        # NaN marks the crowded cells; half the cache footprint of float64.
        self._offset = (2 * starts).astype(np.float32)
        self._offset[crowded] = np.nan

    def slots(self, values: NDArray[np.float64]) -> NDArray[np.intp]:
        """Slot index of every value (finite float64, any order)."""
        x = np.asarray(values, dtype=np.float64)
        if self.edges.size <= _DIRECT_EDGES:
            slot = np.zeros(x.shape, dtype=np.intp)
            for edge in self.edges:
                slot += x > edge
                slot += x >= edge
            return slot
        cell = self._cell_of(x, self._scale, self._origin, self._cells)
        steps = np.zeros(x.shape, dtype=np.uint8)
        for candidates in self._candidates:
            edge = candidates[cell]
            steps += np.greater(x, edge).view(np.uint8)
            steps += np.greater_equal(x, edge).view(np.uint8)
        total = self._offset[cell]
        total += steps
        if self._crowded:
            crowded = np.flatnonzero(np.isnan(total))
            if crowded.size:
                crowded_x = x[crowded]
                total[crowded] = np.searchsorted(self.edges, crowded_x, side="left")
                total[crowded] += np.searchsorted(self.edges, crowded_x, side="right")
        return total.astype(np.intp)

    def count(self, values: NDArray[np.float64]) -> NDArray[np.int64]:
        """Number of values in every slot (length ``2K + 1``).

        Large batches are processed in chunks of 64 Ki values so that the
        temporaries stay in the CPU cache (about twice as fast on 10⁶ values).
        """
        x = np.asarray(values, dtype=np.float64).reshape(-1)
        counts = np.zeros(self.n_slots, dtype=np.int64)
        for start in range(0, x.size, _CHUNK):
            slot = self.slots(x[start : start + _CHUNK])
            counts += np.bincount(slot, minlength=self.n_slots)
        return counts
