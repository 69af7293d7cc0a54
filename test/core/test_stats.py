"""The two percentiles: interpolated for the reports, nearest-rank for the node's diagnostics."""

import math

import numpy as np

from tx2_inference.core.stats import nearest_rank_percentile, percentile, RecentValues


def test_report_percentile_interpolates_and_is_nan_when_empty():
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([5.0], 99) == 5.0
    assert math.isnan(percentile([], 50))


def test_nearest_rank_is_a_measured_value_and_zero_when_empty():
    values = [3.0, 5.0, 7.0, 12.0]
    assert nearest_rank_percentile(values, 50) == 5.0  # the 2nd of 4, not 6.0
    assert nearest_rank_percentile(values, 99) == 12.0
    assert nearest_rank_percentile(values, 0) == 3.0
    assert nearest_rank_percentile([], 50) == 0.0
    latencies = sorted(np.random.RandomState(0).uniform(1, 100, 500).tolist())
    for q in (50, 90, 99):
        assert nearest_rank_percentile(latencies, q) in latencies


def test_nearest_rank_matches_the_node_diagnostics_before_the_split():
    """The node published round(fraction * n)-th sample (1-based); q in 0..100 is the same."""
    values = sorted(np.random.RandomState(1).uniform(0, 50, 137).tolist())
    for fraction in (0.50, 0.99):
        index = min(len(values) - 1, max(0, int(round(fraction * len(values))) - 1))
        assert nearest_rank_percentile(values, fraction * 100) == values[index]


def test_recent_values_keep_the_last_size_values_only():
    """The executor's and the tiler's timing windows: NaN before a value, then the last N."""
    recent = RecentValues(4)
    assert math.isnan(recent.percentile(50))
    for value in (100.0, 1.0, 2.0, 3.0, 4.0):  # 100 falls out of the window of 4
        recent.add(value)
    assert recent.percentile(100) == 4.0 and recent.percentile(0) == 1.0
    assert recent.percentile(50) == 2.5
