"""Drawing detections on an image: the node's debug image and the demo's pictures."""

from typing import Sequence, Tuple

import cv2
import numpy as np

INK = (0, 255, 0)
TEXT = (0, 0, 0)


def draw_detections(image: np.ndarray, color: str, boxes: np.ndarray, scores: np.ndarray,
                    labels: Sequence[str]) -> Tuple[np.ndarray, str]:
    """Return a copy of `image` with boxes and 'label score' tags drawn, and its encoding.

    :param image: HxWx3 (rgb or bgr) or HxW (mono) uint8 image; it is not modified.
    :param color: 'rgb', 'bgr' or 'mono'; a mono image is drawn on in RGB.
    :param boxes: [N, 4] x1, y1, x2, y2 in the image's pixels.
    :returns: (canvas, ROS encoding of the canvas).
    """
    if color == 'mono':
        canvas, encoding = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_GRAY2RGB), 'rgb8'
    else:
        canvas, encoding = np.array(image, dtype=np.uint8, order='C'), color + '8'
    height, width = canvas.shape[:2]
    # Lines and text scale with the image, so a tag stays readable on 300 px and 4K alike.
    size = max(height, width)
    thickness = max(1, int(round(size / 320.0)))
    font_scale = max(0.4, size / 1200.0)
    for (x1, y1, x2, y2), score, label in zip(boxes.tolist(), scores.tolist(), labels):
        p1, p2 = (int(round(x1)), int(round(y1))), (int(round(x2)), int(round(y2)))
        cv2.rectangle(canvas, p1, p2, INK, thickness)
        tag = '{} {:.2f}'.format(label, score)
        (tw, th), base = cv2.getTextSize(tag, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)
        # Above the box where there is room, else just inside its top edge; never off-image.
        top = p1[1] - th - base - 2 if p1[1] - th - base - 2 >= 0 else p1[1]
        left = min(max(0, p1[0]), max(0, width - tw - 2))
        cv2.rectangle(canvas, (left, top), (left + tw + 2, top + th + base + 2), INK, -1)
        cv2.putText(canvas, tag, (left + 1, top + th + 1), cv2.FONT_HERSHEY_SIMPLEX,
                    font_scale, TEXT, thickness, cv2.LINE_AA)
    return canvas, encoding
