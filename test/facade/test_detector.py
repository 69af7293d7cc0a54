"""The Detector facade end to end: the real SSDLite person model on real photographs."""

import threading

from allocations import allocations_over_frames
import cv2
import numpy as np
import pytest
import skimage.data

from tx2_inference.core.decoders import DetectionParams
from tx2_inference.detector import Detector
from tx2_inference.errors import FrameError, ModelError


@pytest.fixture(scope='module')
def astronaut():
    return skimage.data.astronaut()  # 512x512 RGB, one person


@pytest.fixture
def detector(default_model):
    with Detector(default_model, backend='onnxruntime') as det:
        yield det


def _best_person(detections):
    assert detections.labels and detections.labels[0] == 'person'
    return detections.boxes[0], detections.scores[0]


def test_finds_the_astronaut_in_source_pixels(detector, astronaut):
    assert detector.labels == ['person'] and detector.backend_name == 'onnxruntime'
    detections = detector.detect(astronaut, 'rgb')
    box, score = _best_person(detections)
    assert score > 0.8
    x1, y1, x2, y2 = box
    # The astronaut fills the left two thirds of the photo, head to the bottom edge.
    assert 0 <= x1 < 60 and 300 < x2 <= 512 and 0 <= y1 < 100 and 450 < y2 <= 512
    assert detections.boxes.dtype == np.float32 and detections.class_ids.dtype == np.int32


def test_bgr_and_a_stretched_source_map_back_to_their_own_pixels(detector, astronaut):
    box, score = _best_person(detector.detect(astronaut, 'rgb'))
    bgr_box, bgr_score = _best_person(detector.detect(np.ascontiguousarray(astronaut[..., ::-1]),
                                                      'bgr'))
    np.testing.assert_allclose(bgr_box, box, atol=0.5)
    assert abs(bgr_score - score) < 1e-3
    # Twice as wide: the model sees the same 300x300 input, boxes come back twice as wide.
    wide = cv2.resize(astronaut, (1024, 512), interpolation=cv2.INTER_LINEAR)
    wide_box, _ = _best_person(detector.detect(wide, 'rgb'))
    np.testing.assert_allclose(wide_box, box * [2, 1, 2, 1], atol=3.0)


def test_no_person_in_the_cat(detector):
    assert len(detector.detect(skimage.data.chelsea(), 'rgb')) == 0


def test_params_are_read_at_each_frame(detector, astronaut):
    detector.params = DetectionParams(score_threshold=0.999)
    assert len(detector.detect(astronaut, 'rgb')) == 0
    detector.params = DetectionParams(score_threshold=0.3, class_allowlist=['person'])
    assert len(detector.detect(astronaut, 'rgb')) >= 1


def test_submit_delivers_in_order_with_timing_and_stats(default_model, astronaut):
    results = []
    done = threading.Event()

    def on_result(tag, detections, timing):
        results.append((tag, len(detections), timing))
        if tag == 19:
            done.set()

    with Detector(default_model, backend='onnxruntime', on_result=on_result) as det:
        for tag in range(20):
            det.submit(astronaut, 'rgb', tag)
        assert det.drain(30) and done.is_set()
        stats = det.stats()
    tags = [tag for tag, _, _ in results]
    assert tags == sorted(tags) and tags[-1] == 19
    assert all(n >= 1 for _, n, _ in results)
    assert all(t['infer_ms'] > 0 and t['latency_ms'] >= t['infer_ms'] for _, _, t in results)
    assert stats['submitted'] == 20
    assert stats['completed'] + stats['dropped_reasons']['superseded'] == 20
    assert stats['infer_ms_p50'] > 0 and stats['backend'] == 'onnxruntime'


def test_bad_frames_are_reported_not_raised_from_submit(default_model, astronaut):
    errors = []
    with Detector(default_model, backend='onnxruntime',
                  on_error=lambda tag, error: errors.append((tag, error))) as det:
        det.submit(astronaut.astype(np.float32), 'rgb', 'float')
        det.submit(astronaut, 'mono', 'wrong colour')
        assert det.drain(30)
        with pytest.raises(FrameError):
            det.detect(astronaut[:, :, :2], 'rgb')
        assert det.stats()['dropped_reasons']['error'] == 3
    assert [(tag, type(e)) for tag, e in errors] == [('float', FrameError),
                                                     ('wrong colour', FrameError)]


def test_close_is_idempotent_and_final(default_model, astronaut):
    det = Detector(default_model, backend='onnxruntime')
    det.close()
    det.close()
    with pytest.raises(RuntimeError, match='closed'):
        det.submit(astronaut, 'rgb')


def test_missing_model_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match='does not exist'):
        Detector(str(tmp_path / 'nothing.onnx'), config_path=None, backend='onnxruntime')


def test_no_allocation_per_frame_on_the_hot_path(default_model, astronaut):
    """1,000 real 640x480 frames: preprocess + infer + decode + map back, under tracemalloc."""
    frame = cv2.resize(astronaut, (640, 480), interpolation=cv2.INTER_LINEAR)
    delivered = [0]

    def on_result(tag, detections, timing):
        delivered[0] += len(detections) > 0

    with Detector(default_model, backend='onnxruntime', on_result=on_result) as det:
        for _ in range(20):  # warm up: scratch buffers per source size, ORT caches
            det.detect(frame, 'rgb')
        growth, peak = allocations_over_frames(
            lambda: [det.detect(frame, 'rgb') for _ in range(20)],
            lambda tag: det.submit(frame, 'rgb', tag), det.drain)
    assert delivered[0] == 1000  # every frame went the whole way and found the person
    # Nothing kept per frame, and no frame- or buffer-sized temporary: the source frame is
    # 900 KiB, the model input 264 KiB, the raw outputs 46 KiB.
    assert growth < 32 * 1024, growth
    assert peak < 128 * 1024, peak


def test_warmup_runs_every_slot_and_leaves_frames_and_stats_alone(default_model, astronaut):
    """What the node calls at configure: one synthetic inference per slot, not counted."""
    delivered = []
    with Detector(default_model, backend='onnxruntime', depth=3,
                  on_result=lambda *result: delivered.append(result)) as det:
        assert all(np.isnan(slot.infer_ms) for slot in det._executor.slots)
        took_ms = det.warmup()
        # Each slot ran the model once on its own worker thread (its timing is set) ...
        assert all(slot.infer_ms > 0 for slot in det._executor.slots)
        assert took_ms >= sum(slot.infer_ms for slot in det._executor.slots)
        # ... and nothing a user counts saw it: no result callback, no frame in the stats.
        stats = det.stats()
        assert delivered == [] and stats['submitted'] == 0 and stats['completed'] == 0
        # Real frames afterwards are untouched by the synthetic one.
        box, score = _best_person(det.detect(astronaut, 'rgb'))
        assert score > 0.8 and det.stats()['submitted'] == 1
def test_a_bgr_normalised_model_sees_the_same_from_rgb8_and_bgr8(bgr_normalised_model,
                                                                default_model, astronaut):
    """Per-channel mean/std apply in the model's order, whatever order the camera sends."""
    pytest.importorskip('sensor_msgs', reason='ROS 2 messages (not in the Python 3.6 tier)')
    from tx2_inference.ros.image import array_to_image_msg, image_to_array
    bgr = np.ascontiguousarray(astronaut[:, :, ::-1])
    with Detector(bgr_normalised_model, backend='onnxruntime') as det:
        det.params = DetectionParams(score_threshold=0.3)
        from_rgb8 = det.detect(*image_to_array(array_to_image_msg(astronaut, 'rgb8')))
        from_bgr8 = det.detect(*image_to_array(array_to_image_msg(bgr, 'bgr8')))
    with Detector(default_model, backend='onnxruntime') as plain:
        plain.params = DetectionParams(score_threshold=0.3)
        reference = plain.detect(astronaut, 'rgb')
    assert len(reference) >= 1
    for got in (from_rgb8, from_bgr8):
        assert got.labels == reference.labels
        # The float input rounds back to the same uint8 pixels the plain model gets.
        np.testing.assert_allclose(got.boxes, reference.boxes, atol=0.5)
        np.testing.assert_allclose(got.scores, reference.scores, atol=2e-3)
    np.testing.assert_array_equal(from_rgb8.boxes, from_bgr8.boxes)
    np.testing.assert_array_equal(from_rgb8.scores, from_bgr8.scores)
