"""Tiled inference's geometry and merge: tiles of a frame, boxes back to the frame, one NMS.

A small person in a large frame is a few pixels once the frame is squeezed into a 300x300
model input. Tiling runs the model on overlapping crops (``TileGrid``, e.g. ``2x2`` with 20 %
overlap, optionally plus the whole frame), maps each crop's boxes back into frame pixels
(``offset_boxes``) and merges them (``merge_tiles``).

The merge is a greedy NMS that knows where the tiles were cut. A box that touches an edge of
its tile which lies *inside* the frame (``cut_edges``) may be a part of an object that
continues in the next tile; such a box and a box that largely contains it (intersection over
the smaller box's area >= ``ios_threshold``), and whose sides agree where neither is cut, are
one object: the better-scoring box is kept, grown to cover both when it is the cut one. Boxes
that are not cut are suppressed by IoU as a plain NMS would, so two people standing close
together stay two boxes.

Everything here is numpy only (no ROS, no backend); the facade (``tx2_inference.tiling``)
runs the tiles through the executor.
"""

import re
from typing import List, Optional, Sequence, Tuple

import numpy as np

from tx2_inference.errors import ConfigError

# Sides of a box or a tile, in the column order of x1, y1, x2, y2.
LEFT, TOP, RIGHT, BOTTOM = 0, 1, 2, 3
_GRID = re.compile(r'^\s*(\d+)\s*x\s*(\d+)\s*$')
MAX_TILES_PER_SIDE = 8

Tile = Tuple[int, int, int, int]  # x1, y1, x2, y2 in frame pixels (x2, y2 exclusive)


class TileGrid(object):
    """
    How a frame is cut into tiles: ``columns x rows`` overlapping crops, and the whole frame.

    :param columns: tiles across.
    :param rows: tiles down.
    :param overlap: the fraction of a tile's width (height) it shares with its neighbour,
        0 <= overlap < 1 (0.2: a person up to a fifth of a tile wide is whole in one tile).
    :param whole_frame: also run the whole frame (big objects that no tile holds whole).
    :raises ConfigError: a grid or overlap out of range.
    """

    __slots__ = ('columns', 'rows', 'overlap', 'whole_frame', '_cache')

    def __init__(self, columns: int, rows: int, overlap: float = 0.2,
                 whole_frame: bool = False) -> None:
        """Check and store the grid."""
        for name, value in (('columns', columns), ('rows', rows)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not (
                    1 <= value <= MAX_TILES_PER_SIDE):
                raise ConfigError('tiles: {} must be a whole number from 1 to {}, got {!r}.'
                                  .format(name, MAX_TILES_PER_SIDE, value))
        overlap = float(overlap)
        if not 0.0 <= overlap < 1.0 or overlap != overlap:
            raise ConfigError('tile_overlap must be at least 0 and below 1 (a fraction of a '
                              'tile), got {!r}.'.format(overlap))
        self.columns = int(columns)
        self.rows = int(rows)
        self.overlap = overlap
        self.whole_frame = bool(whole_frame)
        self._cache = (None, [])  # type: Tuple[Optional[Tuple[int, int]], List[Tile]]

    @classmethod
    def parse(cls, text: str, overlap: float = 0.2,
              whole_frame: bool = False) -> Optional['TileGrid']:
        """Return the grid ``'COLUMNSxROWS'`` names (``'2x2'``), or None for ``''``/``'off'``.

        ``'1x1'`` is no tiling either (None) unless ``whole_frame`` asks for it, which would
        run the frame twice: that is refused too.

        :raises ConfigError: text that is not ``CxR``, saying what is.
        """
        text = (text or '').strip().lower()
        if text in ('', 'off', 'none'):
            return None
        match = _GRID.match(text)
        if match is None:
            raise ConfigError(
                "tiles {!r} is not COLUMNSxROWS: use e.g. '2x2' (four tiles), '3x2' (three "
                "across, two down), or '' for no tiling.".format(text))
        columns, rows = int(match.group(1)), int(match.group(2))
        if columns == 1 and rows == 1:
            return None
        return cls(columns, rows, overlap, whole_frame)

    def __len__(self) -> int:
        """Return the number of inferences per frame (the tiles, and the whole frame)."""
        return self.columns * self.rows + int(self.whole_frame)

    def __repr__(self) -> str:
        """Show the grid as the node's parameters would set it."""
        return 'TileGrid({}x{}, overlap={:g}{})'.format(
            self.columns, self.rows, self.overlap, ', whole_frame' if self.whole_frame else '')

    def tiles(self, height: int, width: int) -> List[Tile]:
        """Return the tiles of a ``height x width`` frame, row by row; the whole frame last.

        Tiles have the same size, cover the frame and share ``overlap`` of their size with
        their neighbours; the last column and row end at the frame's edge. Computed once per
        frame size.
        """
        key = (int(height), int(width))
        if self._cache[0] == key:
            return self._cache[1]
        xs = _spans(key[1], self.columns, self.overlap)
        ys = _spans(key[0], self.rows, self.overlap)
        tiles = [(x1, y1, x2, y2) for y1, y2 in ys for x1, x2 in xs]
        if self.whole_frame:
            tiles.append((0, 0, key[1], key[0]))
        self._cache = (key, tiles)
        return tiles


def _spans(length: int, count: int, overlap: float) -> List[Tuple[int, int]]:
    """Return ``count`` equal spans of ``[0, length)`` that overlap by ``overlap`` of a span."""
    if count == 1:
        return [(0, length)]
    size = length / (count - (count - 1) * overlap)
    step = size * (1.0 - overlap)
    extent = max(int(round(size)), 1)
    spans = []
    for index in range(count):
        start = min(int(round(index * step)), length - extent)
        spans.append((max(start, 0), min(max(start, 0) + extent, length)))
    return spans


def offset_boxes(boxes_xyxy: np.ndarray, tile: Tile) -> np.ndarray:
    """Move [N, 4] boxes from tile pixels into frame pixels, in place; return them."""
    boxes_xyxy[:, 0::2] += tile[0]
    boxes_xyxy[:, 1::2] += tile[1]
    return boxes_xyxy


def cut_edges(boxes_xyxy: np.ndarray, tile: Tile, height: int, width: int,
              margin: float) -> np.ndarray:
    """Return [N, 4] bools: which sides of each box lie on a side of the tile inside the frame.

    Such a box may be the part of an object that the tile cut off. A side within ``margin``
    pixels of the tile's side counts (detectors rarely put a box exactly on the edge); the
    tile's sides on the frame's own edges cut nothing.

    :param boxes_xyxy: boxes in frame pixels.
    :param tile: the tile they were found in (frame pixels).
    """
    boxes = np.asarray(boxes_xyxy, dtype=np.float32).reshape(-1, 4)
    x1, y1, x2, y2 = tile
    cut = np.zeros(boxes.shape, dtype=bool)
    if x1 > 0:
        cut[:, LEFT] = boxes[:, 0] <= x1 + margin
    if y1 > 0:
        cut[:, TOP] = boxes[:, 1] <= y1 + margin
    if x2 < width:
        cut[:, RIGHT] = boxes[:, 2] >= x2 - margin
    if y2 < height:
        cut[:, BOTTOM] = boxes[:, 3] >= y2 - margin
    return cut


def merge_tiles(boxes_xyxy: np.ndarray, scores: np.ndarray, class_ids: np.ndarray,
                cut: np.ndarray, iou_threshold: float, ios_threshold: float = 0.7,
                max_detections: int = 0, class_agnostic: bool = False,
                side_tolerance: float = 0.2) -> Tuple[np.ndarray, np.ndarray]:
    """
    Merge the boxes of every tile of a frame into one set: greedy NMS that knows tile cuts.

    In score order, a box joins an earlier kept box of its class (any class with
    ``class_agnostic``) when their IoU is above ``iou_threshold`` (a plain NMS), or when one
    of the two is cut by a tile edge (``cut_edges``), their intersection covers at least
    ``ios_threshold`` of the smaller box, and the sides that neither has cut agree (within
    ``side_tolerance`` of the smaller box's width or height): the two are one object, seen
    whole in one tile and cut in the other (or cut in both, across the overlap). The side
    check keeps apart two people walking side by side when a tile cuts one of them. A kept box
    that is cut grows to cover the box it absorbs (a grown side is cut only if the absorbed
    box's was); a whole kept box stays as it is.

    :param boxes_xyxy: [N, 4] boxes in frame pixels, from every tile.
    :param scores: [N] scores.
    :param class_ids: [N] class ids.
    :param cut: [N, 4] bools from ``cut_edges``.
    :param max_detections: keep at most this many, best first (<= 0: all).
    :returns: (indices of the kept boxes, best first, int64 [K]; their merged boxes
        float32 [K, 4]).
    """
    boxes = np.asarray(boxes_xyxy, dtype=np.float32).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    classes = np.asarray(class_ids).reshape(-1)
    cuts = np.asarray(cut, dtype=bool).reshape(-1, 4)
    order = np.argsort(-scores, kind='mergesort')
    areas = np.maximum(boxes[:, 2] - boxes[:, 0], 0) * np.maximum(boxes[:, 3] - boxes[:, 1], 0)
    kept = []  # type: List[int]
    merged = []  # type: List[np.ndarray]
    kept_cuts = []  # type: List[np.ndarray]
    for index in order:
        box, box_cut = boxes[index], cuts[index]
        joined = False
        for slot, other in enumerate(kept):
            if not class_agnostic and classes[other] != classes[index]:
                continue
            target, target_cut = merged[slot], kept_cuts[slot]
            inter = _intersection(box, target)
            if inter <= 0.0:
                continue
            area_t = (target[2] - target[0]) * (target[3] - target[1])
            union = areas[index] + area_t - inter
            if union > 0 and inter / union > iou_threshold:
                joined = True
            elif (box_cut.any() or target_cut.any()) and \
                    inter / max(min(areas[index], area_t), 1e-6) >= ios_threshold and \
                    _sides_agree(box, box_cut, target, target_cut, side_tolerance):
                joined = True
            if joined:
                if target_cut.any():  # a cut box grows to cover what it is part of
                    grown = np.concatenate([np.minimum(target[:2], box[:2]),
                                            np.maximum(target[2:], box[2:])])
                    moved = grown != target
                    kept_cuts[slot] = np.where(moved, box_cut, target_cut)
                    merged[slot] = grown
                break
        if not joined:
            kept.append(int(index))
            merged.append(box.copy())
            kept_cuts.append(box_cut.copy())
    if max_detections > 0:
        kept, merged = kept[:max_detections], merged[:max_detections]
    return (np.asarray(kept, dtype=np.int64),
            np.asarray(merged, dtype=np.float32).reshape(-1, 4))


def _sides_agree(a: np.ndarray, a_cut: np.ndarray, b: np.ndarray, b_cut: np.ndarray,
                 tolerance: float) -> bool:
    """Return whether the sides that neither box has cut lie within ``tolerance`` of a size."""
    width = min(a[2] - a[0], b[2] - b[0])
    height = min(a[3] - a[1], b[3] - b[1])
    for side in (LEFT, TOP, RIGHT, BOTTOM):
        if a_cut[side] or b_cut[side]:
            continue
        size = width if side in (LEFT, RIGHT) else height
        if abs(float(a[side]) - float(b[side])) > tolerance * size:
            return False
    return True


def _intersection(a: np.ndarray, b: np.ndarray) -> float:
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    return float(width * height) if width > 0 and height > 0 else 0.0


def edge_margin(tile: Tile, input_size: Sequence[int], pixels: float = 2.0) -> float:
    """Return how close (frame pixels) a box side must be to a tile side to count as cut.

    ``pixels`` model-input pixels, scaled to the tile: the model places edges to a pixel or
    two of its input.
    """
    height, width = int(input_size[0]), int(input_size[1])
    return pixels * max((tile[2] - tile[0]) / float(width), (tile[3] - tile[1]) / float(height))
