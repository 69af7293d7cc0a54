"""The triton row of `make bench` runs end to end and reports both backends (figures: bench)."""

import pytest

from tx2_inference.tools.bench.triton_bench import triton_row
from tx2_inference.tools.benchmark import load_frame
from tx2_inference.tools.triton_server import unavailable


def test_triton_row_reports_both_backends(default_model, tmp_path):
    if unavailable():
        pytest.skip(unavailable())
    lines = []
    row = triton_row(default_model, None, load_frame(), frames=6, rounds=1, depth=2,
                     threads=None, log=lines.append, folder=str(tmp_path))
    assert 'skipped' not in row, row
    for backend in ('onnxruntime', 'triton'):
        assert row[backend + '_fps'] > 0
        assert 0 < row[backend + '_latency_ms_p50'] <= row[backend + '_latency_ms_p99']
        assert row[backend + '_request_ms_p50'] > 0
    assert row['triton_over_onnxruntime_fps'] > 0
    assert len(lines) == 2 and 'triton' in lines[1]
