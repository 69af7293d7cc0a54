"""Class-aware non-maximum suppression: the one NMS every decoder uses.

OpenCV does the work. ``cv2.dnn.NMSBoxesBatched`` (OpenCV 4.7+) where it exists; on older
OpenCV (JetPack 4.6 ships 4.1.1) ``cv2.dnn.NMSBoxes`` on boxes shifted by a per-class offset, so
that boxes of different classes never overlap and one plain NMS call is class-aware.
"""

from typing import Optional

import cv2
import numpy as np

_HAS_BATCHED = hasattr(cv2.dnn, 'NMSBoxesBatched')
# Before OpenCV 4.3 the Python NMSBoxes took integer Rects and truncated float boxes
# (opencv/opencv#16143, fixed by #16828); there boxes go in as integers on a fine grid.
_INT_RECTS = tuple(int(v) for v in cv2.__version__.split('.')[:2]) < (4, 3)
# Grid size: Rect areas and their sums stay far inside int32.
_GRID = 16383.0


def _xywh(boxes_xyxy: np.ndarray) -> np.ndarray:
    """Return x, y, width, height boxes (float64, OpenCV's ``Rect2d``) from x1, y1, x2, y2."""
    xywh = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4).copy()
    xywh[:, 2:] -= xywh[:, :2]
    return xywh


def _on_integer_grid(xywh: np.ndarray) -> np.ndarray:
    """Return the boxes moved and scaled (IoU does not change) onto integers 0.._GRID."""
    corners = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
    corners -= corners[:, :2].min(axis=0).tolist() * 2
    corners *= _GRID / max(float(corners.max()), 1e-12)
    corners = np.round(corners)
    return np.concatenate([corners[:, :2], corners[:, 2:] - corners[:, :2]], axis=1)


def _positive_scores(scores: np.ndarray) -> np.ndarray:
    """Return float32 scores OpenCV accepts (all > 0) in the same order as ``scores``.

    OpenCV requires a non-negative score threshold and keeps only scores above it; NMS only
    needs the order, so scores that are not all positive (logits) are replaced by their ranks.
    """
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    if scores.size == 0 or scores.min() > 0:
        return scores
    ranks = np.empty(scores.size, dtype=np.float32)
    ranks[np.argsort(-scores, kind='mergesort')] = np.arange(scores.size, 0, -1)
    return ranks


def _keep(indices: object) -> np.ndarray:
    """Return OpenCV's kept indices (a tuple, an [N] or an [N, 1] array) as an int64 [N] array."""
    return np.asarray(indices, dtype=np.int64).reshape(-1)


def batched_nms(boxes_xyxy: np.ndarray, scores: np.ndarray, class_ids: np.ndarray,
                iou_threshold: float, max_detections: Optional[int] = None,
                use_batched: Optional[bool] = None) -> np.ndarray:
    """
    Suppress overlapping boxes of the same class; boxes of different classes never interact.

    A box is dropped when its IoU with a higher-scoring kept box of the same class is greater
    than ``iou_threshold``. Boxes should have a positive area: OpenCV counts two empty boxes as
    overlapping (the decoders drop empty boxes first).

    :param boxes_xyxy: [N, 4] x1, y1, x2, y2 (any units, any float dtype).
    :param scores: [N] scores; only their order matters.
    :param class_ids: [N] integer class of each box.
    :param iou_threshold: IoU above which the lower-scoring box of a pair is dropped.
    :param max_detections: keep at most this many (the highest scores); None or <= 0: all.
    :param use_batched: force (True) or avoid (False) ``NMSBoxesBatched``; None: use it where
        this OpenCV has it. The fallback is what runs on OpenCV 4.1.
    :returns: int64 indices into the inputs of the kept boxes, highest score first.
    """
    scores = _positive_scores(scores)
    if scores.size == 0:
        return np.zeros(0, dtype=np.int64)
    xywh = _xywh(boxes_xyxy)
    class_ids = np.asarray(class_ids).reshape(-1).astype(np.int32)
    batched = _HAS_BATCHED if use_batched is None else use_batched
    if batched:
        keep = _keep(cv2.dnn.NMSBoxesBatched(xywh, scores, class_ids, 0.0,
                                             float(iou_threshold)))
    else:
        if _INT_RECTS:
            xywh = _on_integer_grid(xywh)
        # Shift each class into its own region, beyond every other class's boxes.
        span = float(np.abs(xywh[:, :2]).max() + np.abs(xywh[:, 2:]).max()) + 1.0
        _, dense_ids = np.unique(class_ids, return_inverse=True)
        xywh[:, :2] += dense_ids.reshape(-1, 1) * (2.0 * span)
        keep = _keep(cv2.dnn.NMSBoxes(xywh, scores, 0.0, float(iou_threshold)))
    # top_k in OpenCV limits the candidates *before* suppression, so cut here instead.
    if max_detections is not None and max_detections > 0:
        keep = keep[:max_detections]
    return keep
