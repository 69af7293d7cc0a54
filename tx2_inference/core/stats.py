"""Summary statistics of measured values, shared by the demo, the soak and the benchmark."""

from typing import Sequence

import numpy as np


def percentile(values: Sequence[float], q: float) -> float:
    """Return the q-th percentile (0 to 100) of ``values`` (NaN when empty)."""
    return float(np.percentile(values, q)) if len(values) else float('nan')
