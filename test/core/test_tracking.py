"""The tracker's parts: the assignment solver against scipy's, IDs over moving boxes."""

import numpy as np
import pytest

from tx2_inference.core.tracking import (
    appearance,
    appearance_distance,
    ByteTracker,
    iou_matrix,
    linear_assignment,
    match,
    TrackerConfig,
)


@pytest.mark.parametrize('shape', [(1, 1), (3, 3), (5, 8), (8, 5), (12, 12), (2, 30)])
def test_assignment_cost_equals_scipys(shape):
    # scipy: the oracle here, in the development venv; not on the robot (the Python 3.6 tier).
    linear_sum_assignment = pytest.importorskip(
        'scipy.optimize', reason='scipy, the oracle, is not installed').linear_sum_assignment
    rng = np.random.RandomState(sum(shape))
    for _ in range(20):
        cost = rng.rand(*shape)
        if rng.rand() < 0.5:  # ties and refused pairs, as the tracker makes them
            cost = np.round(cost, 1)
            cost[rng.rand(*shape) < 0.3] = 1e6
        rows, cols = linear_assignment(cost)
        want_rows, want_cols = linear_sum_assignment(cost)
        assert len(rows) == min(shape)
        assert len(set(rows.tolist())) == len(rows) and len(set(cols.tolist())) == len(cols)
        assert cost[rows, cols].sum() == pytest.approx(cost[want_rows, want_cols].sum())


def test_assignment_of_an_empty_matrix():
    rows, cols = linear_assignment(np.zeros((0, 4)))
    assert rows.size == 0 and cols.size == 0


def test_iou_and_gated_match():
    a = np.array([[0, 0, 10, 10], [20, 0, 30, 10]], float)
    b = np.array([[5, 0, 15, 10], [20, 0, 30, 10], [100, 100, 110, 110]], float)
    assert iou_matrix(a, b)[0, 0] == pytest.approx(50 / 150)
    assert iou_matrix(a, b)[1, 1] == pytest.approx(1.0)
    assert sorted(match(a, [0, 0], b, [0, 0, 0], 0.3)) == [(0, 0), (1, 1)]
    assert match(a, [0, 0], b, [0, 0, 0], 0.5) == [(1, 1)]  # the gate refuses IoU 0.33
    assert match(a, [0, 1], b, [0, 0, 0], 0.3) == [(0, 0)]  # classes never match


def walkers(frames, step_s=0.1):
    """Two people walking towards each other along a line and past each other (occluding)."""
    for k in range(frames):
        left = 50.0 + 15.0 * k
        right = 480.0 - 15.0 * k
        yield k * step_s, np.array([[left, 100, left + 40, 200], [right, 110, right + 40, 210]])


def test_ids_follow_two_people_crossing():
    tracker = ByteTracker()
    seen = []
    for time_s, boxes in walkers(30):
        ids = tracker.update(time_s, boxes, np.array([0.9, 0.8]), np.array([0, 0]))
        seen.append(ids.tolist())
    assert seen[0] == [1, 2]
    assert all(ids == [1, 2] for ids in seen), seen


def test_ids_survive_dropped_frames_by_predicting_with_time():
    """After 8 frames, only every third (as when frames are superseded): the stamps say how far.

    The same frames tracked by frame count (each received frame one step) lose both people:
    their boxes moved three steps, further than their width allows at the IoU gate.
    """
    frames = [frame for k, frame in enumerate(walkers(30)) if k < 8 or k % 3 == 0]
    by_time, by_count = ByteTracker(), ByteTracker()
    for k, (time_s, boxes) in enumerate(frames):
        ids = by_time.update(time_s, boxes, np.array([0.9, 0.8]), [0, 0]).tolist()
        counted = by_count.update(k * 0.1, boxes, np.array([0.9, 0.8]), [0, 0]).tolist()
        assert ids == [1, 2], (k, ids)
    assert counted != [1, 2]


def test_a_track_is_found_again_after_a_gap_shorter_than_lost_s():
    tracker = ByteTracker(TrackerConfig(lost_s=1.0))
    for time_s, boxes in walkers(10):
        tracker.update(time_s, boxes[:1], [0.9], [0])
    assert tracker.tracked_count == 1
    for time_s, _ in list(walkers(15))[10:]:  # hidden for 0.5 s
        tracker.update(time_s, np.zeros((0, 4)), [], [])
    assert tracker.lost_count == 1 and tracker.tracked_count == 0
    time_s, boxes = list(walkers(16))[15]
    assert tracker.update(time_s, boxes[:1], [0.9], [0]).tolist() == [1]


def test_a_track_lost_longer_than_lost_s_ends():
    tracker = ByteTracker(TrackerConfig(lost_s=0.3))
    frames = list(walkers(16))
    for time_s, boxes in frames[:10]:
        tracker.update(time_s, boxes[:1], [0.9], [0])
    for time_s, _ in frames[10:15]:
        tracker.update(time_s, np.zeros((0, 4)), [], [])
    assert tracker.lost_count == 0
    assert tracker.update(frames[15][0], frames[15][1][:1], [0.9], [0]).tolist() == [2]


def test_low_scores_continue_a_track_but_never_start_one():
    tracker = ByteTracker(TrackerConfig(high_threshold=0.5, low_threshold=0.1))
    frames = list(walkers(10))
    for time_s, boxes in frames[:5]:
        tracker.update(time_s, boxes[:1], [0.9], [0])
    # Partly hidden: the person scores 0.3 (kept, same ID); a 0.3 box elsewhere starts nothing.
    time_s, boxes = frames[5]
    far = np.array([[600, 400, 640, 500]], float)
    ids = tracker.update(time_s, np.concatenate([boxes[:1], far]), [0.3, 0.3], [0, 0])
    assert ids.tolist() == [1, -1]
    ids = tracker.update(frames[6][0], frames[6][1][:1], [0.05], [0])  # below low_threshold
    assert ids.tolist() == [-1]


def test_a_one_frame_flicker_is_forgotten():
    tracker = ByteTracker()
    frames = list(walkers(4))
    tracker.update(frames[0][0], frames[0][1][:1], [0.9], [0])
    tracker.update(frames[1][0], frames[1][1][:1], [0.9], [0])
    tracker.update(frames[1][0] + 0.05, np.array([[600, 400, 640, 500.0]]), [0.9], [0])  # flicker
    ids = tracker.update(frames[2][0], frames[2][1][:1], [0.9], [0])
    assert ids.tolist() == [1]
    assert len(tracker.tracks) == 1  # the flicker's track was dropped, not kept as lost


def test_time_going_back_and_reset_start_over_with_new_ids():
    tracker = ByteTracker()
    frames = list(walkers(5))
    for time_s, boxes in frames:
        tracker.update(time_s, boxes, [0.9, 0.9], [0, 0])
    ids = tracker.update(0.0, frames[0][1], [0.9, 0.9], [0, 0])  # the recording restarted
    assert ids.tolist() == [3, 4]
    tracker.reset()
    assert tracker.tracks == [] and tracker.lost_count == 0
    assert tracker.update(0.0, frames[0][1], [0.9, 0.9], [0, 0]).tolist() == [5, 6]


def painted(boxes_and_colours, shape=(480, 640, 3)):
    """Return a BGR frame with filled, striped rectangles: people of distinct colours."""
    frame = np.full(shape, 90, np.uint8)
    for (x1, y1, x2, y2), colour in boxes_and_colours:
        frame[int(y1):int(y2), int(x1):int(x2)] = colour
        frame[int(y1):int(y2):6, int(x1):int(x2)] = (20, 20, 20)  # some texture
    return frame


def test_appearance_tells_colours_apart_and_is_zero_for_the_same():
    frame = painted([((100, 100, 140, 200), (0, 0, 200)), ((300, 100, 340, 200), (200, 0, 0))])
    features = appearance(frame, 'bgr', np.array([[100, 100, 140, 200], [300, 100, 340, 200],
                                                  [102, 104, 141, 203], [700, 0, 720, 10.0]]))
    assert features.shape == (4, 128)
    assert np.allclose(features[:3].sum(axis=1), 1.0) and not features[3].any()
    distance = appearance_distance(features[:3], features[:3])
    assert distance[0, 2] < 0.1 and distance[0, 1] > 0.9
    mono = appearance(frame[:, :, 0], 'mono', np.array([[100, 100, 140, 200]]))
    assert mono.shape == (1, 32) and mono.sum() == pytest.approx(1.0)


def test_a_person_appearing_where_a_hidden_one_was_gets_a_new_id():
    """Red walks right and is hidden; blue, never seen, appears where red should be.

    By motion alone blue takes red's ID (IoU with red's predicted box); with colours it gets a
    new one, and red takes its own back when it comes out.
    """
    red, blue = (0, 0, 200), (200, 0, 0)

    def run(config):
        tracker = ByteTracker(config)
        seen = []
        for k in range(16):
            x = 100.0 + 10 * k
            box = [x, 100, x + 40, 200]
            if k < 8:
                people = [(box, red)]
            elif k < 11:
                people = [([x + 8, 100, x + 48, 200], blue)]  # blue in front, red hidden
            else:
                people = [(box, red), ([x + 90, 100, x + 130, 200], blue)]
            boxes = np.array([p[0] for p in people], float)
            features = appearance(painted(people), 'bgr', boxes)
            seen.append(tracker.update(k * 0.1, boxes, [0.9] * len(people), [0] * len(people),
                                       features).tolist())
        return seen

    motion_only = run(TrackerConfig(appearance_gate=1.0))
    assert motion_only[8][0] == 1  # blue took red's ID
    with_colours = run(TrackerConfig())
    assert all(ids == [1] for ids in with_colours[:8])
    assert all(ids[0] != 1 for ids in with_colours[8:11])  # blue: a new ID
    assert with_colours[11][0] == 1  # red is back with its own


def test_lost_s_zero_still_follows_a_track_from_frame_to_frame():
    tracker = ByteTracker(TrackerConfig(lost_s=0.0))
    ids = [tracker.update(t, b[:1], [0.9], [0]).tolist() for t, b in walkers(5)]
    assert ids == [[1]] * 5
    frames = list(walkers(8))
    tracker.update(frames[5][0], np.zeros((0, 4)), [], [])  # unseen once: lost, then ended
    assert tracker.update(frames[6][0], frames[6][1][:1], [0.9], [0]).tolist() == [2]
