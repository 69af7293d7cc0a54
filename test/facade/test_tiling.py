"""Tiled inference through the Detector: the small people it finds, and tiles as batch rows.

Real frames (test/data/small_people: 24 frames of OpenCV's vtest.avi, 146 people labelled by
hand), the real default model on ONNX Runtime, and its ``tx2-convert onnx --batch dynamic``
twin (the ``batch_model`` fixture) for the batched rows.
"""

import threading

import numpy as np
import pytest

from tx2_inference.core.tiles import TileGrid
from tx2_inference.detector import Detector
from tx2_inference.errors import FrameError
from tx2_inference.tools.bench.tiles import evaluate, load_labelled, match

GRID = TileGrid(3, 3, overlap=0.25)


@pytest.fixture(scope='module')
def labelled():
    return load_labelled()


def test_tiling_finds_the_small_people_the_untiled_model_misses(default_model, labelled):
    with Detector(default_model, backend='onnxruntime') as plain:
        before = evaluate(plain, labelled)
    with Detector(default_model, backend='onnxruntime', tiles=GRID) as tiled:
        after = evaluate(tiled, labelled)
        tiled.tiler.cut_aware = False  # a plain NMS over every tile's boxes, for comparison
        plain = evaluate(tiled, labelled)
    assert before['labels'] == 146
    # Measured: 78 of 146 people untiled (recall 0.53), 121 with 3x3 tiles (0.83).
    assert before['recall'] < 0.6
    assert after['recall'] >= before['recall'] + 0.2, (before['recall'], after['recall'])
    # The merge joins the parts of people cut by tile edges, which a plain NMS leaves as
    # extra boxes (measured: 125 detections against 131, precision 0.97 against 0.92).
    assert after['precision'] >= 0.9
    assert after['detections'] < plain['detections'] and after['recall'] >= plain['recall']
    # The people only the tiles find are small: most are under 100 of the frame's 576 rows
    # and 40 of its 768 columns (in the untiled model's 300x300 input: under 52 x 16 pixels).
    recovered = [box for (_, _, labels), was, now in zip(labelled, before['found'],
                                                         after['found'])
                 for box, found_before, found_after in zip(labels, was, now)
                 if found_after and not found_before]
    assert len(recovered) >= 30
    assert np.median([box[3] - box[1] for box in recovered]) < 100
    assert np.median([box[2] - box[0] for box in recovered]) < 40


def test_tiles_run_as_one_inference_where_the_model_batches(default_model, batch_model,
                                                           labelled):
    _, frame, labels = labelled[10]
    with Detector(batch_model, backend='onnxruntime', tiles=GRID) as batched, \
            Detector(default_model, backend='onnxruntime', tiles=GRID) as sequential:
        assert batched.batch_size == 9 and sequential.batch_size == 1
        one, other = batched.detect(frame, 'bgr'), sequential.detect(frame, 'bgr')
        assert batched.stats()['tiling']['inferences_per_frame_mean'] == 1.0
        assert batched.stats()['inferences'] == 1
        assert sequential.stats()['tiling']['inferences_per_frame_mean'] == 9.0
    # The same model either way: the same people, the same boxes (to a pixel).
    assert len(one) == len(other) and len(one) >= 5
    np.testing.assert_allclose(one.boxes, other.boxes, atol=1.0)
    assert sum(hit >= 0 for hit in match(one.boxes.tolist(), labels)) >= 5


def test_each_camera_gets_each_frame_once_merged_in_order(batch_model, labelled):
    results, errors, lock = [], [], threading.Lock()

    def on_result(tag, detections, timing):
        with lock:
            results.append((tag, len(detections), timing))

    grid = TileGrid(2, 2, overlap=0.25, whole_frame=True)
    with Detector(batch_model, backend='onnxruntime', tiles=grid, batch_size=2,
                  sources=['cam0', 'cam1'], on_result=on_result,
                  on_error=lambda tag, error: errors.append((tag, error))) as detector:
        for index in range(6):
            for camera in ('cam0', 'cam1'):
                detector.submit(labelled[index][1], 'bgr', (camera, index), camera)
                detector.drain(30.0)  # no frame superseded: every one is answered
        detector.submit(np.zeros(5, np.uint8), 'bgr', ('cam0', 'bad'), 'cam0')
        detector.submit(labelled[0][1], 'bgr', ('cam0', 6), 'cam0')
        assert detector.drain(30.0)
        stats = detector.stats()
    assert [tag for tag, _ in errors] == [('cam0', 'bad')]
    assert isinstance(errors[0][1], FrameError)
    for camera in ('cam0', 'cam1'):
        tags = [tag[1] for tag, _, _ in results if tag[0] == camera]
        assert tags == list(range(7 if camera == 'cam0' else 6))  # once each, in order
    tag, count, timing = results[0]
    assert count >= 1 and timing['tiles'] == 5.0 and timing['tile_inferences'] >= 1
    assert timing['latency_ms'] >= timing['infer_ms'] > 0
    # Per camera: frames (not tiles); the tiling figures for /diagnostics.
    assert set(stats['sources']) == {'cam0', 'cam1'}
    assert stats['sources']['cam0']['completed'] == 7
    assert stats['sources']['cam0']['dropped_reasons']['error'] == 1
    assert stats['tiling']['tiles_per_frame'] == 5 and stats['tiling']['frames'] == 13
    assert stats['tiling']['frame_ms_p50'] > 0


def test_a_flood_keeps_frames_whole_newest_wins(default_model, labelled):
    """Above the model's rate a camera's waiting frame is replaced; every answer is whole."""
    results = []
    grid = TileGrid(2, 2, overlap=0.25)
    with Detector(default_model, backend='onnxruntime', tiles=grid,
                  on_result=lambda tag, d, t: results.append((tag, t['tiles']))) as detector:
        for index in range(40):
            detector.submit(labelled[index % len(labelled)][1], 'bgr', index, 'cam0')
        assert detector.drain(30.0)
        source = detector.stats()['sources']['cam0']
    answered = [tag for tag, _ in results]
    assert answered == sorted(answered) and answered[-1] == 39  # in order, the newest kept
    assert all(tiles == 4.0 for _, tiles in results)
    assert source['completed'] == len(results) and source['completed'] >= 2
    assert source['completed'] + source['dropped_reasons']['superseded'] == 40


def test_only_the_cameras_named_are_tiled(default_model, labelled):
    results = []
    with Detector(default_model, backend='onnxruntime', tiles=TileGrid(2, 2),
                  tile_sources=['far'],
                  on_result=lambda tag, d, t: results.append((tag, t.get('tiles')))) as detector:
        for camera in ('far', 'near'):
            detector.submit(labelled[3][1], 'bgr', camera, camera)
            assert detector.drain(30.0)
        stats = detector.stats()
    assert results == [('far', 4.0), ('near', None)]  # near: the whole frame, once
    assert stats['tiling']['frames'] == 1
    assert stats['sources']['near']['completed'] == stats['sources']['far']['completed'] == 1
