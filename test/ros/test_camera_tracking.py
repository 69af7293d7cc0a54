"""The node's tracking glue (ros/tracking.py): thresholds, what is published, IDs, diagnostics."""

import numpy as np

from tx2_inference.core.decoders import DetectionParams, Detections
from tx2_inference.ros.tracking import CameraTracking, tracking_config, with_ids

LIVE = {'tracking': True, 'tracking_low_threshold': 0.1, 'tracking_iou_gate': 0.2,
        'tracking_lost_s': 1.0, 'tracking_appearance_gate': 0.55}


def frame(x, scores):
    """Return detections of people at x, x + 100, ... with these scores."""
    boxes = [[x + 100 * i, 50, x + 100 * i + 40, 150] for i in range(len(scores))]
    return Detections(np.array(boxes, float), np.array(scores), np.zeros(len(scores)),
                      ['person'] * len(scores))


def test_tracking_decodes_down_to_the_low_threshold_and_keeps_the_high_one():
    params = DetectionParams(score_threshold=0.6, iou_threshold=0.4, max_detections=20)
    decoded, config = tracking_config(params, LIVE)
    assert decoded.score_threshold == 0.1 and decoded.iou_threshold == 0.4
    assert decoded.max_detections == 20
    assert config.high_threshold == 0.6 and config.low_threshold == 0.1
    off, _ = tracking_config(params, dict(LIVE, tracking=False))
    assert off is params
    above, config = tracking_config(params, dict(LIVE, tracking_low_threshold=0.9))
    assert above.score_threshold == 0.6 and config.low_threshold == 0.6  # no second stage


def test_low_scores_are_published_only_where_they_continue_a_track():
    _, config = tracking_config(DetectionParams(score_threshold=0.5), LIVE)
    tracking = CameraTracking()
    kept, ids = tracking.apply(True, config, 0.0, frame(0, [0.9, 0.3]))
    assert ids.tolist() == [1] and kept.scores.tolist() == [np.float32(0.9)]
    tracking.apply(True, config, 0.1, frame(3, [0.9]))  # seen twice: no longer a flicker
    kept, ids = tracking.apply(True, config, 0.2, frame(6, [0.3, 0.3]))  # partly hidden now
    assert ids.tolist() == [1] and len(kept) == 1
    assert with_ids(kept.labels, ids) == ['person #1']
    values = dict(tracking.values())
    assert values['tracking'] == 'on' and values['tracks'] == '1'
    assert values['track_ids_issued'] == '1' and float(values['tracking_ms_mean']) > 0


def test_switched_off_nothing_is_tracked_and_ids_are_never_reused():
    _, config = tracking_config(DetectionParams(score_threshold=0.5), LIVE)
    tracking = CameraTracking()
    tracking.apply(True, config, 0.0, frame(0, [0.9, 0.8]))
    detections = frame(0, [0.9, 0.3])
    kept, ids = tracking.apply(False, config, 0.1, detections)
    assert kept is detections and ids is None and tracking.values() == [('tracking', 'off')]
    _, ids = tracking.apply(True, config, 0.2, frame(0, [0.9, 0.8]))
    assert ids.tolist() == [3, 4]
    tracking.reset()  # deactivate
    _, ids = tracking.apply(True, config, 0.3, frame(0, [0.9]))
    assert ids.tolist() == [5]
