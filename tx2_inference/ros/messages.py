"""Detections and labels as vision_msgs: `Detection2DArray` and the latched `LabelInfo`."""

from typing import Any, Optional, Sequence

import numpy as np
from vision_msgs.msg import (
    Detection2D,
    Detection2DArray,
    LabelInfo,
    ObjectHypothesisWithPose,
    VisionClass,
)


def detections_to_msg(header: Any, boxes: np.ndarray, scores: np.ndarray,
                      labels: Sequence[str], ids: Optional[np.ndarray] = None
                      ) -> Detection2DArray:
    """
    Build a `Detection2DArray` (empty when there are no boxes).

    :param header: the source image's header (stamp and frame_id are kept).
    :param boxes: float [N, 4] x1, y1, x2, y2 in source-image pixels.
    :param scores: float [N].
    :param labels: N label strings, the hypotheses' ``class_id``.
    :param ids: N track IDs (tracking on): each ``Detection2D.id`` is its ID as a string, ''
        where it is negative; None leaves every ``id`` empty.
    :returns: the message, one `Detection2D` per box with one hypothesis.
    """
    msg = Detection2DArray(header=header)
    track_ids = [-1] * len(labels) if ids is None else ids.tolist()
    for (x1, y1, x2, y2), score, label, track_id in zip(boxes.tolist(), scores.tolist(), labels,
                                                         track_ids):
        detection = Detection2D(header=header)
        if track_id >= 0:
            detection.id = str(track_id)
        detection.bbox.center.position.x = (x1 + x2) / 2.0
        detection.bbox.center.position.y = (y1 + y2) / 2.0
        detection.bbox.size_x = x2 - x1
        detection.bbox.size_y = y2 - y1
        hypothesis = ObjectHypothesisWithPose()
        hypothesis.hypothesis.class_id = str(label)
        hypothesis.hypothesis.score = float(score)
        detection.results.append(hypothesis)
        msg.detections.append(detection)
    return msg


def label_info_msg(labels: Sequence[str], threshold: float, stamp: Any) -> LabelInfo:
    """
    Build the `LabelInfo` of a model: class id -> label name, and the score threshold.

    :param labels: the model's labels; a detection's class id is its index here.
    :param threshold: the score threshold detections are published above.
    :param stamp: the header stamp (builtin_interfaces/Time).
    """
    msg = LabelInfo()
    msg.header.stamp = stamp
    msg.class_map = [VisionClass(class_id=i, class_name=name) for i, name in enumerate(labels)]
    msg.threshold = float(threshold)
    return msg
