"""Box helpers shared by the tests, and the hand-labelled person boxes of test/data/persons."""

import json
import os
from typing import List, Sequence, Tuple

from project_files import ROOT

PERSONS = os.path.join(ROOT, 'test', 'data', 'persons')


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Return the intersection over union of two x1, y1, x2, y2 boxes (0 for an empty union)."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def labelled_persons(file_name: str) -> List[Tuple[float, float, float, float]]:
    """Return the hand-labelled person boxes (x1, y1, x2, y2) of a photo in test/data/persons."""
    with open(os.path.join(PERSONS, 'annotations.json')) as f:
        coco = json.load(f)
    image_id = next(i['id'] for i in coco['images'] if i['file_name'] == file_name)
    return [(a['bbox'][0], a['bbox'][1], a['bbox'][0] + a['bbox'][2], a['bbox'][1] + a['bbox'][3])
            for a in coco['annotations'] if a['image_id'] == image_id]
