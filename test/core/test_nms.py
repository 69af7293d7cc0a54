"""Class-aware NMS agrees with a plain reference, on both OpenCV paths."""

from typing import List

from boxes import iou as box_iou
from hypothesis import assume, given, settings
from hypothesis import strategies as st
import numpy as np
import pytest

from tx2_inference.core import nms

# NMSBoxesBatched (OpenCV >= 4.7); NMSBoxes with per-class offsets on float boxes (4.3 to 4.6);
# the same on an integer grid (4.1 on JetPack 4.6, whose Python NMSBoxes truncates floats).
PATHS = ['batched', 'offsets', 'offsets-int']
# IoU differences the integer grid may introduce; pairs this close to the threshold are skipped.
IOU_MARGIN = {'batched': 1e-4, 'offsets': 1e-4, 'offsets-int': 0.02}


def batched_nms(path: str, *args: object, **kwargs: object) -> np.ndarray:
    """Run nms.batched_nms the way the OpenCV version named by ``path`` would."""
    if path == 'batched' and not nms._HAS_BATCHED:
        pytest.skip('this OpenCV ({}) has no NMSBoxesBatched (4.7+): its other paths '
                    'are the ones that run here'.format(nms.cv2.__version__))
    saved = nms._INT_RECTS
    nms._INT_RECTS = path == 'offsets-int'
    try:
        return nms.batched_nms(*args, use_batched=path == 'batched', **kwargs)
    finally:
        nms._INT_RECTS = saved


def reference_nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray,
                  iou_threshold: float) -> List[int]:
    """Greedy NMS, one box at a time: the textbook definition."""
    kept: List[int] = []
    for i in sorted(range(len(scores)), key=lambda j: -scores[j]):
        if all(classes[k] != classes[i] or box_iou(boxes[k], boxes[i]) <= iou_threshold
               for k in kept):
            kept.append(i)
    return kept


@st.composite
def cases(draw: st.DrawFn) -> tuple:
    """Random boxes (positive area) in a small field so that many overlap, distinct scores."""
    n = draw(st.integers(0, 30))
    corner, side = st.floats(0, 100, width=32), st.floats(0.5, 60, width=32)
    xywh = np.array(draw(st.lists(st.tuples(corner, corner, side, side), min_size=n,
                                  max_size=n)), np.float64).reshape(-1, 4)
    boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1)
    scores = np.array(draw(st.permutations(range(n))), np.float32) / max(n, 1) + 0.01
    classes = np.array(draw(st.lists(st.integers(0, 3), min_size=n, max_size=n)), np.int32)
    iou = draw(st.floats(0.05, 0.95))
    return boxes, scores, classes, iou


@pytest.mark.parametrize('path', PATHS)
@settings(max_examples=150, deadline=None)
@given(case=cases())
def test_agrees_with_the_reference(path: str, case: tuple) -> None:
    boxes, scores, classes, iou = case
    # Pairs with an IoU within rounding of the threshold could go either way; skip them.
    assume(all(abs(box_iou(boxes[i], boxes[j]) - iou) > IOU_MARGIN[path]
               for i in range(len(boxes)) for j in range(i)))
    kept = batched_nms(path, boxes, scores, classes, iou)
    assert kept.tolist() == reference_nms(boxes, scores, classes, iou)


@pytest.mark.parametrize('path', PATHS)
def test_classes_do_not_suppress_each_other(path: str) -> None:
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [1, 1, 10, 10]], np.float32)
    kept = batched_nms(path, boxes, [0.9, 0.8, 0.7], [0, 1, 0], 0.5)
    assert kept.tolist() == [0, 1]


@pytest.mark.parametrize('path', PATHS)
def test_max_detections_cuts_after_suppression(path: str) -> None:
    # OpenCV's top_k would cut the candidates before NMS: here the 2nd box is suppressed, so
    # the best two survivors are boxes 0 and 2.
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 11], [50, 50, 60, 60], [80, 80, 90, 90]])
    kept = batched_nms(path, boxes, [0.9, 0.8, 0.7, 0.6], [0, 0, 0, 0], 0.5, max_detections=2)
    assert kept.tolist() == [0, 2]


@pytest.mark.parametrize('path', PATHS)
def test_logits_and_empty_input(path: str) -> None:
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30]], np.float32)
    kept = batched_nms(path, boxes, [-0.5, 2.0, -3.0], [1, 1, 1], 0.5)
    assert kept.tolist() == [1, 2]
    empty = batched_nms(path, np.zeros((0, 4)), np.zeros(0), np.zeros(0), 0.5)
    assert empty.shape == (0,) and empty.dtype == np.int64
