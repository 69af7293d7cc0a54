"""Tile geometry, boxes back into frame pixels, and the merge across tile edges (no ROS)."""

import numpy as np
import pytest

from tx2_inference.core.tiles import (
    BOTTOM,
    cut_edges,
    LEFT,
    merge_tiles,
    offset_boxes,
    RIGHT,
    TileGrid,
    TOP,
)
from tx2_inference.errors import ConfigError


def test_a_grid_covers_the_frame_with_equal_overlapping_tiles():
    grid = TileGrid(3, 2, overlap=0.25, whole_frame=True)
    tiles = grid.tiles(576, 768)
    assert len(tiles) == len(grid) == 7
    assert tiles[-1] == (0, 0, 768, 576)  # the whole frame last
    covered = np.zeros((576, 768), bool)
    for x1, y1, x2, y2 in tiles[:-1]:
        covered[y1:y2, x1:x2] = True
    assert covered.all()
    widths = {x2 - x1 for x1, _, x2, _ in tiles[:-1]}
    heights = {y2 - y1 for _, y1, _, y2 in tiles[:-1]}
    assert len(widths) == 1 and len(heights) == 1
    width, height = widths.pop(), heights.pop()
    # Neighbours share a quarter of a tile (to a pixel of rounding).
    assert abs((tiles[0][2] - tiles[1][0]) - 0.25 * width) <= 1
    assert abs((tiles[0][3] - tiles[3][1]) - 0.25 * height) <= 1
    assert tiles[2][2] == 768 and tiles[3][3] == 576


def test_parse_names_the_grid_or_no_tiling():
    assert TileGrid.parse('') is None and TileGrid.parse('off') is None
    assert TileGrid.parse('1x1') is None
    grid = TileGrid.parse(' 3x2 ', 0.1, True)
    assert (grid.columns, grid.rows, grid.overlap, grid.whole_frame) == (3, 2, 0.1, True)
    for bad in ('2', '2x', 'x2', '2*2', 'two'):
        with pytest.raises(ConfigError, match="COLUMNSxROWS: use e.g. '2x2'"):
            TileGrid.parse(bad)
    with pytest.raises(ConfigError, match='from 1 to 8'):
        TileGrid.parse('9x2')
    for overlap in (-0.1, 1.0, float('nan')):
        with pytest.raises(ConfigError, match='tile_overlap'):
            TileGrid(2, 2, overlap)


def test_boxes_move_into_frame_pixels_and_their_cut_sides_are_named():
    tile = (300, 200, 500, 400)  # an inner tile of a 600 x 800 frame: every side is inside
    boxes = offset_boxes(np.array([[0, 50, 40, 120], [60, 60, 100, 100], [150, 170, 200, 200]],
                                  np.float32), tile)
    assert boxes.tolist() == [[300, 250, 340, 320], [360, 260, 400, 300], [450, 370, 500, 400]]
    cut = cut_edges(boxes, tile, 600, 800, margin=2.0)
    assert cut[0].tolist() == [True, False, False, False]  # on the tile's left side
    assert not cut[1].any()  # inside the tile
    assert cut[2, RIGHT] and cut[2, BOTTOM] and not cut[2, LEFT] and not cut[2, TOP]
    # A tile's sides on the frame's own edges cut nothing.
    corner = cut_edges(np.array([[0, 0, 10, 10]], np.float32), (0, 0, 200, 200), 600, 800, 2.0)
    assert not corner.any()


def _merge(boxes, scores, cut, classes=None, iou=0.45, max_detections=0):
    boxes = np.array(boxes, np.float32)
    cut = np.array(cut, bool)
    classes = np.zeros(len(boxes), np.int32) if classes is None else np.array(classes)
    return merge_tiles(boxes, np.array(scores, np.float32), classes, cut, iou,
                       max_detections=max_detections)


def test_a_person_cut_by_a_tile_edge_is_one_box_covering_both_parts():
    # Tile A ends at x 420, tile B starts at x 380; a person from x 360 to 440 is cut in both.
    parts = [[360, 100, 420, 260], [380, 100, 440, 260]]
    cut = [[False, False, True, False], [True, False, False, False]]
    keep, boxes = _merge(parts, [0.8, 0.7], cut)
    assert keep.tolist() == [0]
    assert boxes.tolist() == [[360, 100, 440, 260]]
    # A person cut across a horizontal seam (IoU 0.33, all of the top part covered): merged
    # only because it is cut there, and only where the sides not cut agree.
    whole, top = [100, 100, 140, 260], [102, 100, 141, 153]
    keep, _ = _merge([whole, top], [0.8, 0.7], np.zeros((2, 4), bool))
    assert keep.tolist() == [0, 1]
    cut_bottom = [[False] * 4, [False, False, False, True]]
    keep, _ = _merge([whole, top], [0.8, 0.7], cut_bottom)
    assert keep.tolist() == [0]
    # A child cut by the seam, half in front of an adult: 3/4 of it inside the adult's box,
    # but its left side 10 pixels (a quarter of its width) off: two people.
    keep, _ = _merge([whole, [110, 200, 150, 260]], [0.8, 0.7],
                     [[False] * 4, [False, False, True, False]])
    assert keep.tolist() == [0, 1]


def test_a_cut_part_is_absorbed_by_the_whole_box_of_the_same_person():
    whole, part = [100, 100, 140, 220], [100, 100, 140, 150]  # IoU 0.42: NMS alone keeps both
    keep, boxes = _merge([part, whole], [0.9, 0.6], [[False, False, False, True], [False] * 4])
    assert keep.tolist() == [0] and boxes.tolist() == [whole]  # the cut box grows to the whole
    keep, boxes = _merge([whole, part], [0.9, 0.6], [[False] * 4, [False, False, False, True]])
    assert keep.tolist() == [0] and boxes.tolist() == [whole]  # a whole box stays as it is
    # Two people close together, neither cut: two boxes.
    keep, _ = _merge([whole, [130, 100, 170, 220]], [0.9, 0.8], np.zeros((2, 4), bool))
    assert keep.tolist() == [0, 1]


def test_merge_keeps_classes_apart_and_the_best_first():
    boxes = [[0, 0, 50, 100], [0, 0, 50, 100], [200, 0, 240, 80]]
    keep, _ = _merge(boxes, [0.5, 0.9, 0.7], np.zeros((3, 4), bool), classes=[0, 1, 0])
    assert keep.tolist() == [1, 2, 0]
    keep, _ = _merge(boxes, [0.5, 0.9, 0.7], np.zeros((3, 4), bool), classes=[0, 1, 0],
                     max_detections=2)
    assert keep.tolist() == [1, 2]
    keep, boxes = _merge(np.zeros((0, 4)), [], np.zeros((0, 4), bool))
    assert keep.shape == (0,) and boxes.shape == (0, 4)
