"""
The node's tracking: one `ByteTracker` per camera over each frame's decoded detections.

`tracking_config` turns the live parameters into the tracker's thresholds (the high one is the
detection score threshold) and the detector's parameters (decoded down to the low threshold,
so the second association stage has boxes to match). `CameraTracking` runs one camera's
tracker on the completion thread (results arrive in order per camera), keeps the detections
that are published (high-score ones, and low-score ones that continue a track) and counts what
/diagnostics shows.
"""

import collections
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from tx2_inference.core.decoders import DetectionParams, Detections
from tx2_inference.core.tracking import appearance, ByteTracker, TrackerConfig

TIMING_SAMPLES = 100


def tracking_config(params: DetectionParams, live: Dict[str, Any]
                    ) -> Tuple[DetectionParams, TrackerConfig]:
    """Return the detector's parameters and the trackers' thresholds for these live values.

    :param params: the detection parameters without tracking (their score threshold is the
        tracker's high threshold).
    :param live: the node's live parameters (``tracking``, ``tracking_*``).
    """
    config = TrackerConfig(high_threshold=params.score_threshold,
                           low_threshold=min(live['tracking_low_threshold'],
                                             params.score_threshold),
                           iou_gate=live['tracking_iou_gate'], lost_s=live['tracking_lost_s'],
                           appearance_gate=live['tracking_appearance_gate'])
    if live['tracking']:
        params = DetectionParams(config.low_threshold, params.iou_threshold,
                                 params.max_detections, params.class_allowlist,
                                 params.class_agnostic_nms)
    return params, config


class CameraTracking(object):
    """One camera's tracker, switched on and off by the live ``tracking`` parameter."""

    def __init__(self) -> None:
        """Start switched off."""
        self.lock = threading.Lock()
        self.tracker = None  # type: Optional[ByteTracker]
        self.ids_issued = 0
        self.times_ms = collections.deque(maxlen=TIMING_SAMPLES)  # type: collections.deque

    def reset(self) -> None:
        """Forget the tracks (deactivate, tracking switched off); IDs are not reused."""
        with self.lock:
            if self.tracker is not None:
                self.tracker.reset()

    def apply(self, enabled: bool, config: TrackerConfig, time_s: float,
              detections: Detections, image: Optional[np.ndarray] = None,
              color: str = 'rgb') -> Tuple[Detections, Optional[np.ndarray]]:
        """Track one frame's detections; return those to publish and their IDs.

        :param enabled: the ``tracking`` parameter now; off, the detections pass unchanged
            (IDs None) and the tracks are forgotten.
        :param time_s: the frame's image stamp in seconds (its arrival time if unstamped).
        :param image: the frame (``color``: rgb, bgr or mono), for the boxes' colours; None:
            motion only.
        """
        with self.lock:
            if not enabled:
                self.tracker = None
                return detections, None
            if self.tracker is None:
                self.tracker = ByteTracker(config)
                self.tracker.next_id = self.ids_issued + 1
            self.tracker.config = config
            start = time.perf_counter()
            features = None
            if image is not None and config.appearance_gate < 1.0:
                features = appearance(image, color, detections.boxes)
            ids = self.tracker.update(time_s, detections.boxes, detections.scores,
                                      detections.class_ids, features)
            keep = np.where((detections.scores >= config.high_threshold) | (ids >= 0))[0]
            kept = Detections(detections.boxes[keep], detections.scores[keep],
                              detections.class_ids[keep],
                              [detections.labels[i] for i in keep.tolist()])
            self.times_ms.append((time.perf_counter() - start) * 1e3)
            self.ids_issued = self.tracker.next_id - 1
            return kept, ids[keep]

    def values(self) -> List[Tuple[str, str]]:
        """Return the /diagnostics values: tracks now, lost, IDs issued, ms per frame."""
        with self.lock:
            tracker = self.tracker
            if tracker is None:
                return [('tracking', 'off')]
            times = list(self.times_ms)
            return [('tracking', 'on'), ('tracks', str(tracker.tracked_count)),
                    ('tracks_lost', str(tracker.lost_count)),
                    ('track_ids_issued', str(self.ids_issued)),
                    ('tracking_ms_mean', '{:.3f}'.format(
                        sum(times) / len(times) if times else 0.0))]


def with_ids(labels: List[str], ids: Optional[np.ndarray]) -> List[str]:
    """Return the labels with ``#<id>`` appended (for the debug image)."""
    if ids is None:
        return labels
    return ['{} #{}'.format(label, i) if i >= 0 else label
            for label, i in zip(labels, ids.tolist())]
