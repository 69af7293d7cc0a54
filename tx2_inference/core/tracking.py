"""
Multi-object tracking by detection: ByteTrack's association over one camera's detections.

What it does, per frame (Zhang et al., "ByteTrack", ECCV 2022):

1. every track's Kalman filter predicts its box at the frame's *time* (the image stamp, in
   seconds), so a dropped or superseded frame is a longer step, not a missed one;
2. detections scoring at least ``high_threshold`` are matched to all tracks (tracked and lost)
   by IoU with an optimal assignment, pairs below ``iou_gate`` refused;
3. the low-score detections (``low_threshold`` up to ``high_threshold``: often people partly
   hidden) are matched to the tracks still unmatched that were seen in the last frame, with a
   stricter gate (IoU >= 0.5, as ByteTrack); they continue a track but never start one;
4. a track born in the previous frame that finds no detection is deleted (a one-frame
   flicker), other unmatched tracks are kept as lost for ``lost_s`` seconds;
5. each high-score detection left over starts a track with a new ID at once.

Boxes of different classes never match. Every detection of ``high_threshold`` or more gets an
ID; a low-score one gets one only where it continues a track (else -1).

Motion alone cannot tell two people apart while they overlap: where the detector sees one box
for both, the track of the one hidden takes the other's box. Given the frame, the tracker also
keeps a colour histogram of each track's torso (`appearance`) and refuses a high-score match
whose colours differ from the track's by more than ``appearance_gate`` (Bhattacharyya
distance): the track is then lost rather than handed to another person. The low-score stage
(boxes of people partly hidden, their colours mixed with the occluder's) does not use it.

Why our own code rather than a library: the robot runs Python 3.6 (JetPack 4.6), and of the
trackers people use, ``supervision`` (ByteTrack), ``lap``/``lapx`` (the assignment solver
ByteTrack calls) and ``motpy`` have no release installable there, ``norfair`` only 0.1.x
(2020, no two-stage association); scipy's ``linear_sum_assignment`` is on JetPack's apt
(python3-scipy 0.19) but scipy is not a runtime dependency of this package, and would add one
for a 40-line function. So this module is numpy (OpenCV only for the colour histograms): the
Kalman filter (ByteTrack's constant-velocity model over centre, aspect ratio and height, made
time-continuous) and the shortest-augmenting-path assignment (Crouse 2016, the algorithm of
scipy's ``linear_sum_assignment``, which the tests use as the oracle).
"""

from typing import List, Optional, Tuple

import numpy as np

#: ByteTrack's noise weights, relative to the box height, tuned on 30 FPS video (MOT17).
_STD_POSITION = 1.0 / 20
_STD_VELOCITY = 1.0 / 160
_REFERENCE_RATE_HZ = 30.0
#: Gates ByteTrack uses for the low-score stage and for tracks born in the previous frame.
LOW_STAGE_IOU = 0.5
NEWBORN_IOU = 0.3
DEFAULT_APPEARANCE_GATE = 0.55
#: The share of a track's appearance kept at each match (DeepSORT, BoT-SORT: 0.9).
_APPEARANCE_MEMORY = 0.9
#: Cost given to a refused pair: above any IoU distance, so the solver avoids refused pairs first.
_REFUSED = 1e6


def linear_assignment(cost: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """
    Return the rows and columns of a minimum-cost assignment (as scipy's linear_sum_assignment).

    Shortest augmenting paths with dual variables (Crouse, "On implementing 2D rectangular
    assignment algorithms", IEEE TAES 2016): one path per row of the smaller side,
    O(n^2 m) in numpy steps. Every row (or every column, if there are fewer) is assigned.

    :param cost: float [N, M], finite.
    :returns: (rows, columns), int64, sorted by row.
    """
    cost = np.asarray(cost, dtype=np.float64)
    if cost.ndim != 2:
        raise ValueError('cost must be a 2-D matrix, got shape {}'.format(cost.shape))
    transposed = cost.shape[0] > cost.shape[1]
    if transposed:
        cost = cost.T
    rows, cols = cost.shape
    u, v = np.zeros(rows), np.zeros(cols)
    col4row = np.full(rows, -1, dtype=np.int64)
    row4col = np.full(cols, -1, dtype=np.int64)
    path = np.full(cols, -1, dtype=np.int64)
    for current in range(rows):
        shortest = np.full(cols, np.inf)
        remaining = np.ones(cols, dtype=bool)
        visited_rows = []
        row, sink, lowest = current, -1, 0.0
        while sink < 0:
            visited_rows.append(row)
            reduced = lowest + cost[row] - u[row] - v
            better = remaining & (reduced < shortest)
            path[better] = row
            shortest[better] = reduced[better]
            candidates = np.where(remaining)[0]
            best = shortest[candidates].min()
            ties = candidates[shortest[candidates] == best]
            free = ties[row4col[ties] < 0]  # prefer a free column: the path ends there
            column = int(free[0] if free.size else ties[0])
            lowest = float(best)
            remaining[column] = False
            if row4col[column] < 0:
                sink = column
            else:
                row = int(row4col[column])
        u[current] += lowest
        for row in visited_rows[1:]:
            u[row] += lowest - shortest[col4row[row]]
        done = ~remaining
        v[done] -= lowest - shortest[done]
        column = sink
        while True:  # augment along the path back to the current row
            row = int(path[column])
            row4col[column] = row
            col4row[row], column = column, int(col4row[row])
            if row == current:
                break
    assigned_rows = np.arange(rows, dtype=np.int64)
    if transposed:
        order = np.argsort(col4row)
        return col4row[order], assigned_rows[order]
    return assigned_rows, col4row


def appearance(image: np.ndarray, color: str, boxes: np.ndarray) -> np.ndarray:
    """
    Return a colour histogram of each box's torso: [N, 128] (HSV 8x4x4), [N, 32] for mono.

    The region is the box's middle 60 % across and 10-60 % down (less background, no legs
    swinging). Each row sums to 1 (all zero for a box outside the image).

    :param image: HxWx3 uint8 ``'rgb'`` or ``'bgr'``, or HxW uint8 ``'mono'``.
    :param boxes: float [N, 4] x1 y1 x2 y2 in the image's pixels.
    """
    import cv2  # here: the tracker itself needs numpy only (mot_eval runs it without OpenCV)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    mono = color == 'mono' or image.ndim == 2
    bins = 32 if mono else 128
    features = np.zeros((len(boxes), bins), dtype=np.float32)
    height, width = image.shape[:2]
    for index, (x1, y1, x2, y2) in enumerate(boxes.tolist()):
        w, h = x2 - x1, y2 - y1
        left, right = int(max(x1 + 0.2 * w, 0)), int(min(x2 - 0.2 * w, width))
        top, bottom = int(max(y1 + 0.1 * h, 0)), int(min(y1 + 0.6 * h, height))
        if right <= left or bottom <= top:
            continue
        crop = np.ascontiguousarray(image[top:bottom, left:right])
        if mono:
            hist = cv2.calcHist([crop.reshape(crop.shape[0], crop.shape[1])], [0], None, [32],
                                [0, 256])
        else:
            code = cv2.COLOR_RGB2HSV if color == 'rgb' else cv2.COLOR_BGR2HSV
            hist = cv2.calcHist([cv2.cvtColor(crop, code)], [0, 1, 2], None, [8, 4, 4],
                                [0, 180, 0, 256, 0, 256])
        hist = hist.reshape(-1)
        features[index] = hist / max(float(hist.sum()), 1e-9)
    return features


def appearance_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Return the Bhattacharyya distance (0 same, 1 disjoint) of histograms [N, B] and [M, B]."""
    coefficient = np.sqrt(np.asarray(a, np.float64)).dot(np.sqrt(np.asarray(b, np.float64)).T)
    return np.sqrt(np.clip(1.0 - coefficient, 0.0, 1.0))


def iou_matrix(a_xyxy: np.ndarray, b_xyxy: np.ndarray) -> np.ndarray:
    """Return the IoU of every box of ``a`` [N, 4] with every box of ``b`` [M, 4] (x1 y1 x2 y2)."""
    a = np.asarray(a_xyxy, dtype=np.float64).reshape(-1, 1, 4)
    b = np.asarray(b_xyxy, dtype=np.float64).reshape(1, -1, 4)
    width = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    height = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = width * height
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / np.maximum(area_a + area_b - inter, 1e-9)


def match(track_boxes: np.ndarray, track_classes: np.ndarray, det_boxes: np.ndarray,
          det_classes: np.ndarray, min_iou: float,
          refused: Optional[np.ndarray] = None) -> List[Tuple[int, int]]:
    """Return (track, detection) pairs of an optimal IoU assignment, each pair's IoU >= min_iou.

    Pairs of different classes, below the gate, or True in ``refused`` [tracks, detections]
    are refused.
    """
    if len(track_boxes) == 0 or len(det_boxes) == 0:
        return []
    iou = iou_matrix(track_boxes, det_boxes)
    allowed = (iou >= min_iou) & (iou > 0.0) & (
        np.asarray(track_classes).reshape(-1, 1) == np.asarray(det_classes).reshape(1, -1))
    if refused is not None:
        allowed &= ~refused
    pairs = []  # type: List[Tuple[int, int]]
    cost = 1.0 - iou
    # Solved per group of tracks and detections linked by allowed pairs: the same optimum
    # (pairs across groups are all refused), and most groups are one track and one detection.
    for rows, cols in _groups(allowed):
        if len(rows) == 1 and len(cols) == 1:
            pairs.append((int(rows[0]), int(cols[0])))
            continue
        sub = np.where(allowed[np.ix_(rows, cols)], cost[np.ix_(rows, cols)], _REFUSED)
        for r, c in zip(*linear_assignment(sub)):
            if sub[r, c] < _REFUSED:
                pairs.append((int(rows[r]), int(cols[c])))
    return sorted(pairs)


def _groups(allowed: np.ndarray) -> List[Tuple[np.ndarray, np.ndarray]]:
    """Return the connected groups (rows, columns) of a boolean matrix's True entries."""
    rows_left = set(np.where(allowed.any(axis=1))[0].tolist())
    groups = []
    while rows_left:
        rows, cols = {rows_left.pop()}, set()  # type: set, set
        grown = True
        while grown:
            new_cols = set(np.where(allowed[sorted(rows)].any(axis=0))[0].tolist())
            new_rows = set(np.where(allowed[:, sorted(new_cols)].any(axis=1))[0].tolist())
            grown = new_cols != cols or new_rows != rows
            rows, cols = new_rows, new_cols
        rows_left -= rows
        groups.append((np.array(sorted(rows)), np.array(sorted(cols))))
    return groups


def _xyah(box: np.ndarray) -> np.ndarray:
    """Return centre x, centre y, aspect ratio (w / h), height of an x1 y1 x2 y2 box."""
    x1, y1, x2, y2 = [float(v) for v in box]
    height = max(y2 - y1, 1e-3)
    return np.array([(x1 + x2) / 2.0, (y1 + y2) / 2.0, (x2 - x1) / height, height])


def _xyxy(xyah: np.ndarray) -> np.ndarray:
    """Return x1 y1 x2 y2 boxes of centre, aspect, height rows [N, >=4]."""
    xyah = np.asarray(xyah, dtype=np.float64).reshape(-1, xyah.shape[-1])
    width = xyah[:, 2] * xyah[:, 3]
    return np.stack([xyah[:, 0] - width / 2, xyah[:, 1] - xyah[:, 3] / 2,
                     xyah[:, 0] + width / 2, xyah[:, 1] + xyah[:, 3] / 2], axis=1)


class Track(object):
    """One object: its ID, class, Kalman state (x, y, a, h and their rates per second)."""

    __slots__ = ('track_id', 'class_id', 'mean', 'covariance', 'last_seen', 'hits', 'lost',
                 'feature')

    def __init__(self, track_id: int, class_id: int, box: np.ndarray, time_s: float,
                 feature: Optional[np.ndarray] = None) -> None:
        """Start a track at a detection, velocity unknown; ``feature``: its appearance."""
        self.feature = feature
        self.track_id = track_id
        self.class_id = class_id
        measurement = _xyah(box)
        height = measurement[3]
        self.mean = np.concatenate([measurement, np.zeros(4)])
        rate = _REFERENCE_RATE_HZ
        std = [2 * _STD_POSITION * height, 2 * _STD_POSITION * height, 1e-2,
               2 * _STD_POSITION * height, 10 * _STD_VELOCITY * height * rate,
               10 * _STD_VELOCITY * height * rate, 1e-5 * rate, 10 * _STD_VELOCITY * height * rate]
        self.covariance = np.diag(np.square(std))
        self.last_seen = time_s
        self.hits = 1
        self.lost = False

    def update(self, box: np.ndarray, time_s: float) -> None:
        """Correct the state with a matched detection (the state was predicted to ``time_s``)."""
        height = self.mean[3]
        noise = np.diag(np.square([_STD_POSITION * height, _STD_POSITION * height, 1e-1,
                                   _STD_POSITION * height]))
        projected = self.covariance[:4, :4] + noise
        gain = np.linalg.solve(projected, self.covariance[:4, :]).T  # P H^T S^-1 (S symmetric)
        self.mean = self.mean + gain.dot(_xyah(box) - self.mean[:4])
        self.covariance = self.covariance - gain.dot(projected).dot(gain.T)
        self.last_seen = time_s
        self.hits += 1
        self.lost = False

    def see(self, feature: np.ndarray) -> None:
        """Blend a matched box's appearance into the track's (a slow running mean)."""
        if self.feature is None:
            self.feature = feature
        else:
            self.feature = _APPEARANCE_MEMORY * self.feature + \
                (1.0 - _APPEARANCE_MEMORY) * feature


def predict(tracks: List[Track], dt_s: float) -> None:
    """Move every track's state ``dt_s`` seconds ahead (constant velocity, noise grows with dt).

    Process noise is ByteTrack's per-frame noise at 30 FPS, scaled to the step: a variance that
    grows linearly with time, so two 0.1 s steps predict as one 0.2 s step.
    """
    if not tracks or dt_s <= 0.0:
        return
    means = np.stack([track.mean for track in tracks])
    covariances = np.stack([track.covariance for track in tracks])
    transition = np.eye(8)
    transition[range(4), range(4, 8)] = dt_s
    heights = means[:, 3:4]
    rate = _REFERENCE_RATE_HZ
    std = np.concatenate([
        _STD_POSITION * heights, _STD_POSITION * heights, np.full_like(heights, 1e-2),
        _STD_POSITION * heights, _STD_VELOCITY * heights * rate,
        _STD_VELOCITY * heights * rate, np.full_like(heights, 1e-5 * rate),
        _STD_VELOCITY * heights * rate], axis=1)
    noise = np.square(std) * (dt_s * rate)
    means = means.dot(transition.T)
    covariances = np.einsum('ij,njk,lk->nil', transition, covariances, transition)
    covariances[:, range(8), range(8)] += noise
    for index, track in enumerate(tracks):
        track.mean = means[index]
        track.covariance = covariances[index]


class TrackerConfig(object):
    """
    The tracker's thresholds; read at every update, so they may change between frames.

    :param high_threshold: detections scoring this or more are matched first and start tracks.
    :param low_threshold: detections from this up to ``high_threshold`` may continue a track.
    :param iou_gate: the least IoU of a high-score detection with a track's predicted box.
    :param lost_s: seconds an unmatched track is kept (and can be found again) before it ends.
    :param appearance_gate: with features, the largest colour distance (0-1) of a high-score
        match; 1.0 switches the check off.
    """

    __slots__ = ('high_threshold', 'low_threshold', 'iou_gate', 'lost_s', 'appearance_gate')

    def __init__(self, high_threshold: float = 0.5, low_threshold: float = 0.1,
                 iou_gate: float = 0.2, lost_s: float = 1.0,
                 appearance_gate: float = DEFAULT_APPEARANCE_GATE) -> None:
        """Store the thresholds."""
        self.high_threshold = float(high_threshold)
        self.low_threshold = float(low_threshold)
        self.iou_gate = float(iou_gate)
        self.lost_s = float(lost_s)
        self.appearance_gate = float(appearance_gate)

    def __repr__(self) -> str:
        """Show the fields."""
        return 'TrackerConfig({})'.format(', '.join(
            '{}={!r}'.format(name, getattr(self, name)) for name in self.__slots__))


class ByteTracker(object):
    """
    One camera's tracks; `update` once per frame, in the order of the frames' times.

    Not thread-safe: one caller per camera (the node's completion thread).
    """

    def __init__(self, config: Optional[TrackerConfig] = None) -> None:
        """Start with no tracks; IDs count from 1."""
        self.config = config if config is not None else TrackerConfig()
        self.tracks = []  # type: List[Track]
        self.last_time = None  # type: Optional[float]
        self.next_id = 1

    def reset(self) -> None:
        """Forget every track; the next IDs continue the count (an old ID is never reused)."""
        self.tracks = []
        self.last_time = None

    @property
    def tracked_count(self) -> int:
        """Return the number of tracks matched in the last frame."""
        return sum(1 for track in self.tracks if not track.lost)

    @property
    def lost_count(self) -> int:
        """Return the number of tracks kept while unmatched."""
        return sum(1 for track in self.tracks if track.lost)

    def update(self, time_s: float, boxes: np.ndarray, scores: np.ndarray,
               class_ids: np.ndarray, features: Optional[np.ndarray] = None) -> np.ndarray:
        """
        Associate one frame's detections with the tracks; return each detection's track ID.

        :param time_s: the frame's time (its image stamp) in seconds. A time earlier than the
            last frame's (a camera or recording restarted) starts over without tracks.
        :param boxes: float [N, 4] x1 y1 x2 y2; ``scores`` float [N]; ``class_ids`` int [N].
        :param features: [N, B] `appearance` of each box, or None (motion only).
        :returns: int64 [N]: the track ID of each detection, -1 for a low-score detection that
            continues no track and for detections below ``low_threshold``.
        """
        config = self.config
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if features is not None:
            features = np.asarray(features, dtype=np.float64).reshape(len(boxes), -1)
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        classes = np.asarray(class_ids, dtype=np.int64).reshape(-1)
        ids = np.full(len(scores), -1, dtype=np.int64)
        if self.last_time is not None and time_s < self.last_time:
            self.reset()
        dt = 0.0 if self.last_time is None else time_s - self.last_time
        self.last_time = time_s
        # Tracks unseen for longer than lost_s end before they could take a detection; a track
        # seen in the previous frame is a candidate in this one, however long the step.
        self.tracks = [t for t in self.tracks if time_s - t.last_seen <= config.lost_s + dt]
        predict(self.tracks, dt)

        high = np.where(scores >= config.high_threshold)[0]
        low = np.where((scores >= config.low_threshold) & (scores < config.high_threshold))[0]
        newborn = [t for t in self.tracks if t.hits == 1 and not t.lost]
        pool = [t for t in self.tracks if not (t.hits == 1 and not t.lost)]
        matched = set()  # type: set

        def associate(tracks: List[Track], detections: np.ndarray, min_iou: float,
                      by_appearance: bool = True) -> Tuple[List[Track], np.ndarray]:
            if not tracks or detections.size == 0:
                return tracks, detections
            predicted = _xyxy(np.stack([t.mean[:4] for t in tracks]))
            refused = None
            if by_appearance and features is not None and config.appearance_gate < 1.0:
                refused = np.zeros((len(tracks), detections.size), dtype=bool)
                known = [i for i, t in enumerate(tracks) if t.feature is not None]
                if known:
                    refused[known] = appearance_distance(
                        np.stack([tracks[i].feature for i in known]),
                        features[detections]) > config.appearance_gate
            pairs = match(predicted, np.array([t.class_id for t in tracks]), boxes[detections],
                          classes[detections], min_iou, refused)
            for track_index, det_index in pairs:
                track, detection = tracks[track_index], int(detections[det_index])
                track.update(boxes[detection], time_s)
                if by_appearance and features is not None:
                    track.see(features[detection])
                ids[detection] = track.track_id
                matched.add(id(track))
            taken = {t for _, t in pairs}
            left = np.array([d for i, d in enumerate(detections) if i not in taken],
                            dtype=np.int64)
            return [t for t in tracks if id(t) not in matched], left

        pool, high = associate(pool, high, config.iou_gate)
        recent = [t for t in pool if not t.lost]
        associate(recent, low, max(config.iou_gate, LOW_STAGE_IOU), by_appearance=False)
        newborn_left, high = associate(newborn, high, max(config.iou_gate, NEWBORN_IOU))
        dropped = {id(t) for t in newborn_left}
        survivors = []
        for track in self.tracks:
            if id(track) in dropped:
                continue  # born last frame, not seen again: a flicker
            if id(track) not in matched:
                track.lost = True
            survivors.append(track)
        for detection in high:
            track = Track(self.next_id, int(classes[detection]), boxes[detection], time_s,
                          None if features is None else features[detection])
            self.next_id += 1
            ids[detection] = track.track_id
            survivors.append(track)
        self.tracks = survivors
        return ids
