"""`make bench`'s tiling row, short: untiled, tiles sequential and tiles batched (issue 24)."""

import pytest

from tx2_inference.tools.bench.tiles import format_cost, load_labelled, measure_cost, parse_grids


def test_the_tiling_row_measures_sequential_and_batched_tiles(default_model, batch_model):
    frame = load_labelled()[10][1]
    rows = measure_cost(default_model, batch_model, frame, parse_grids('2x2+whole'), frames=3,
                        rounds=1, log=lambda line: None)
    row = rows['2x2 + whole']
    assert row['tiles'] == 5
    assert row['sequential_inferences_per_frame'] == 5.0
    assert row['batched_inferences_per_frame'] == 1.0  # the tiles are rows of one inference
    for key in ('untiled_ms', 'sequential_ms', 'batched_ms'):
        assert 0.0 < row[key] < 10000.0, key
    assert row['batched_over_sequential'] == pytest.approx(
        row['batched_ms'] / row['sequential_ms'])
    assert '| 2x2 + whole (5) |' in format_cost(rows)


def test_grids_are_named_as_on_the_command_line():
    assert parse_grids('3x3, 2x2+whole,') == [('3x3', 3, 3, False), ('2x2 + whole', 2, 2, True)]
    for bad in ('1x1', '3x3+all', 'big'):
        with pytest.raises(Exception, match='COLUMNSxROWS'):
            parse_grids(bad)
