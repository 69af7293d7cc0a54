"""Summary statistics of measured values: the reports' percentile and the node's.

Two definitions on purpose, each under its own name: the reports (demo, soak, benchmark)
interpolate between samples and say NaN when there are none; the node's diagnostics publish
the nearest-rank sample (a latency that was measured) and 0.0 before the first frame.
"""

from typing import Sequence

import numpy as np


def percentile(values: Sequence[float], q: float) -> float:
    """Return the q-th percentile (0 to 100) of ``values``, interpolated (NaN when empty)."""
    return float(np.percentile(values, q)) if len(values) else float('nan')


def nearest_rank_percentile(sorted_values: Sequence[float], q: float) -> float:
    """Return the q-th percentile (0 to 100) of sorted values by nearest rank (0.0 when empty).

    The result is one of the values, never an interpolation between two.
    """
    if not sorted_values:
        return 0.0
    count = len(sorted_values)
    index = min(count - 1, max(0, int(round(q / 100.0 * count)) - 1))
    return float(sorted_values[index])


class RecentValues(object):
    """The last ``size`` values of a measurement, for percentiles (no per-frame allocation)."""

    def __init__(self, size: int = 512) -> None:
        """Keep the last ``size`` values (NaN until added)."""
        self.values = np.full(size, np.nan)
        self.count = 0

    def add(self, value: float) -> None:
        """Keep ``value``, replacing the oldest once ``size`` are kept."""
        self.values[self.count % self.values.shape[0]] = value
        self.count += 1

    def percentile(self, q: float) -> float:
        """Return the interpolated ``q`` percentile of the kept values (NaN when none)."""
        valid = self.values[:min(self.count, self.values.shape[0])]
        return percentile(valid[~np.isnan(valid)], q)
