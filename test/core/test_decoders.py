"""Decoders fed the real output layouts they claim to handle, made by a Keras model + ONNX.

One small Keras model, exported as a SavedModel and converted to ONNX once per session, has an
output set per decoder family. Every set describes the same scene in that family's layout, so
every decoder must find the same detections. Plus the real SSD person model on a real photo.
"""

import os
import subprocess
import sys
from typing import Any, Dict

import numpy as np
import pytest

from tx2_inference.backends.base import TensorInfo
from tx2_inference.core.decoders import (
    create_decoder,
    Decoder,
    DetectionParams,
    Detections,
    register_decoder,
)
from tx2_inference.core.model_config import ModelConfig
from tx2_inference.core.preprocess import Preprocessor
from tx2_inference.errors import ConfigError

HEIGHT, WIDTH = 64, 96
LABELS = ['cat', 'dog', 'bird']
# The scene, in model-input pixels: x1, y1, x2, y2, class, score.
SCENE = np.array([
    [10, 8, 40, 30, 1, 0.90],   # A
    [50, 20, 90, 60, 2, 0.80],  # B
    [12, 9, 41, 31, 1, 0.70],   # A again, slightly moved: NMS must drop it
    [11, 8, 40, 30, 0, 0.60],   # on A but another class: class-aware NMS keeps it
    [60, 2, 70, 12, 0, 0.20],   # below the score threshold
    [0, 0, 5, 5, 2, 0.05],
])
EXPECTED = SCENE[[0, 1, 3]]  # after a 0.5 score threshold and NMS at IoU 0.45, best first
POST_NMS = SCENE[[0, 1, 3, 5]]  # what an in-graph NMS would output (then thresholded)

# decoder config per output family (tensor names are the Keras output names).
FAMILIES = {
    'yolov8': {'type': 'yolov8', 'output': 'yolov8'},
    'yolov5': {'type': 'yolov5', 'output': 'yolov5'},
    'boxes_scores': {'type': 'boxes_scores', 'boxes': 'ssd_boxes', 'scores': 'ssd_scores',
                     'score_activation': 'none'},
    'tf_od_api': {'type': 'tf_od_api', 'boxes': 'detection_boxes',
                  'scores': 'detection_scores', 'classes': 'detection_classes',
                  'num_detections': 'num_detections'},
    'efficient_nms': {'type': 'efficient_nms', 'boxes': 'det_boxes', 'scores': 'det_scores',
                      'classes': 'det_classes', 'num_detections': 'num_dets'},
    'generic_packed': {'type': 'generic', 'output': 'packed', 'box_format': 'cxcywh',
                       'box_units': 'normalized', 'score_column': 4, 'class_column': 5,
                       'score_activation': 'sigmoid'},
    'generic_softmax': {'type': 'generic', 'boxes': 'xyxy_boxes', 'scores': 'logits',
                        'score_activation': 'softmax', 'background_class': 0,
                        'multi_label': True},
}


def _scene_arrays(scene: np.ndarray) -> Dict[str, np.ndarray]:
    """Return the scene's boxes in every encoding the model outputs."""
    xyxy = scene[:, :4].astype(np.float32)
    classes = scene[:, 4].astype(np.int64)
    scores = scene[:, 5].astype(np.float32)
    size = np.array([WIDTH, HEIGHT, WIDTH, HEIGHT], np.float32)
    cxcywh = np.concatenate([(xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]], 1)
    one_hot = np.eye(len(LABELS), dtype=np.float32)[classes]
    return {'xyxy': xyxy, 'yxyx_norm': (xyxy / size)[:, [1, 0, 3, 2]], 'cxcywh': cxcywh,
            'classes': classes.astype(np.float32), 'scores': scores,
            'probs': one_hot * scores[:, None]}


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p)).astype(np.float32)


def _build_keras_model() -> Any:
    """Return a Keras model whose outputs are the scene in each family's layout."""
    import keras
    from keras import layers, ops

    s = _scene_arrays(SCENE)
    p = _scene_arrays(POST_NMS)
    n = len(SCENE)

    class Scene(layers.Layer):
        """Emits the scene; the image only enters as 0 * its mean, so outputs are computed."""

        def call(self, image):
            zero = ops.mean(image) * 0.0

            def const(array: np.ndarray):
                return ops.expand_dims(ops.convert_to_tensor(array.astype(np.float32)), 0) + zero

            # YOLOv8 computes [N, 4 + C] and the export transposes it to [4 + C, N].
            v8 = ops.transpose(const(np.concatenate([s['cxcywh'], s['probs']], 1)), (0, 2, 1))
            v5 = const(np.concatenate([s['cxcywh'], s['scores'][:, None],
                                       s['probs'] / s['scores'][:, None]], 1))
            # SSD cut: [1, N, 1, 4] boxes; sigmoid of logits, background column 0.
            ssd_boxes = ops.reshape(const(s['yxyx_norm']), (1, n, 1, 4))
            background = np.full((n, 1), 0.01, np.float32)
            ssd_scores = ops.sigmoid(const(_logit(np.concatenate([background, s['probs']], 1))))
            packed = const(np.concatenate([s['cxcywh'] / [WIDTH, HEIGHT, WIDTH, HEIGHT],
                                           _logit(s['scores'])[:, None],
                                           s['classes'][:, None]], 1))
            logits = np.log(np.concatenate([1 - s['scores'][:, None],
                                            s['probs'] + 1e-6], 1))
            k = len(POST_NMS) + 2  # padded rows after num_detections
            pad = np.zeros((k - len(POST_NMS), 4), np.float32)
            return {
                'yolov8': v8, 'yolov5': v5, 'ssd_boxes': ssd_boxes, 'ssd_scores': ssd_scores,
                'packed': packed, 'xyxy_boxes': const(s['xyxy']), 'logits': const(logits),
                'detection_boxes': const(np.concatenate([p['yxyx_norm'], pad])),
                'detection_scores': const(np.pad(p['scores'], (0, len(pad)))),
                'detection_classes': const(np.pad(p['classes'] + 1, (0, len(pad)))),
                'num_detections': ops.reshape(const(np.array([len(POST_NMS)])), (1,)),
                'det_boxes': const(np.concatenate([p['xyxy'], pad])),
                'det_scores': const(np.pad(p['scores'], (0, len(pad)))),
                'det_classes': ops.cast(const(np.pad(p['classes'], (0, len(pad)))), 'int32'),
                'num_dets': ops.cast(const(np.array([len(POST_NMS)])), 'int32'),
            }

    image = keras.Input((HEIGHT, WIDTH, 3), batch_size=1, name='image')
    return keras.Model(image, Scene()(image))


@pytest.fixture(scope='session')
def scene_onnx(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Export the scene model as a SavedModel and convert it to ONNX (once per session)."""
    pytest.importorskip('keras', reason='building the scene model needs Keras and TensorFlow '
                        '(a workstation tool, not in the Python 3.6 runtime tier)')
    folder = tmp_path_factory.mktemp('scene_model')
    saved_model = str(folder / 'saved_model')
    _build_keras_model().export(saved_model, format='tf_saved_model', verbose=False)
    onnx_path = str(folder / 'scene.onnx')
    proc = subprocess.run(
        [sys.executable, '-m', 'tf2onnx.convert', '--saved-model', saved_model, '--tag', 'serve',
         '--signature_def', 'serving_default', '--output', onnx_path],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3'))
    assert proc.returncode == 0, proc.stdout[-3000:]
    return onnx_path


@pytest.fixture(scope='session')
def scene_outputs(scene_onnx: str) -> Dict[str, np.ndarray]:
    """Run the converted model once in ONNX Runtime on a real photo; outputs by name."""
    import onnxruntime as ort
    from skimage import data

    session = ort.InferenceSession(scene_onnx, providers=['CPUExecutionProvider'])
    (inp,) = session.get_inputs()
    buffer = np.zeros((1, HEIGHT, WIDTH, 3), np.float32)
    Preprocessor({'scale': 1 / 255.0}, buffer.shape, buffer.dtype)(data.astronaut(), 'rgb',
                                                                    buffer)
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {inp.name: buffer})))


def _assert_scene(found: Detections, expected: np.ndarray, atol: float = 1e-3) -> None:
    """Assert detections equal the expected scene rows, best first."""
    np.testing.assert_allclose(found.boxes, expected[:, :4], atol=atol)
    np.testing.assert_array_equal(found.class_ids, expected[:, 4].astype(np.int32))
    np.testing.assert_allclose(found.scores, expected[:, 5], atol=1e-3)
    assert found.labels == [LABELS[int(c)] for c in expected[:, 4]]
    assert found.boxes.dtype == np.float32 and found.class_ids.dtype == np.int32


def test_onnx_outputs_have_the_claimed_layouts(scene_outputs: Dict[str, np.ndarray]) -> None:
    n, c = len(SCENE), len(LABELS)
    assert scene_outputs['yolov8'].shape == (1, 4 + c, n)
    assert scene_outputs['yolov5'].shape == (1, n, 5 + c)
    assert scene_outputs['ssd_boxes'].shape == (1, n, 1, 4)
    assert scene_outputs['ssd_scores'].shape == (1, n, 1 + c)
    assert scene_outputs['det_classes'].dtype == np.int32
    assert scene_outputs['num_dets'].shape == (1, 1)


@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_every_family_decodes_the_scene(family: str,
                                        scene_outputs: Dict[str, np.ndarray]) -> None:
    decoder = create_decoder(FAMILIES[family], LABELS, (HEIGHT, WIDTH))
    found = decoder(scene_outputs, DetectionParams(0.5, 0.45, 100))
    _assert_scene(found, EXPECTED, atol=0.02)


def test_params_change_between_frames(scene_outputs: Dict[str, np.ndarray]) -> None:
    decoder = create_decoder(FAMILIES['yolov8'], LABELS, (HEIGHT, WIDTH))
    # A looser threshold brings the 0.2 box; a lax IoU keeps the moved duplicate of A.
    _assert_scene(decoder(scene_outputs, DetectionParams(0.1, 0.45, 100)), SCENE[[0, 1, 3, 4]])
    _assert_scene(decoder(scene_outputs, DetectionParams(0.5, 0.95, 100)), SCENE[[0, 1, 2, 3]])
    _assert_scene(decoder(scene_outputs, DetectionParams(0.5, 0.45, 2)), SCENE[[0, 1]])
    allow = DetectionParams(0.5, 0.45, 100, class_allowlist=['cat', 2])
    _assert_scene(decoder(scene_outputs, allow), SCENE[[1, 3]])
    with pytest.raises(ConfigError, match='fish'):
        decoder(scene_outputs, DetectionParams(class_allowlist=['fish']))
    with pytest.raises(ConfigError, match='iou_threshold'):
        DetectionParams(iou_threshold=45)


def test_post_nms_families_respect_num_detections(scene_outputs: Dict[str, np.ndarray]) -> None:
    for family in ('tf_od_api', 'efficient_nms'):
        decoder = create_decoder(FAMILIES[family], LABELS, (HEIGHT, WIDTH))
        found = decoder(scene_outputs, DetectionParams(0.0, 0.45, 100))
        _assert_scene(found, POST_NMS, atol=0.02)  # not the zero-padded rows


def test_config_resolves_names_from_the_onnx_model(scene_onnx: str) -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(scene_onnx, providers=['CPUExecutionProvider'])

    def infos(tensors):
        return [TensorInfo(t.name, tuple(t.shape), np.dtype(np.float32)) for t in tensors]

    inputs, outputs = infos(session.get_inputs()), infos(session.get_outputs())
    config = ModelConfig(decoder={'type': 'efficient_nms'}).resolve(inputs, outputs)
    assert config.decoder['boxes'] == 'det_boxes'
    assert config.decoder['num_detections'] == 'num_dets'
    assert config.input['size'] == [HEIGHT, WIDTH] and config.input['layout'] == 'nhwc'
    with pytest.raises(ConfigError, match=r'decoder\.output.*yolov8'):  # names the outputs
        ModelConfig(decoder={'type': 'yolov8'}).resolve(inputs, outputs)


def test_real_ssd_person_model_on_a_photo(default_model: str) -> None:
    import onnxruntime as ort
    from skimage import data

    session = ort.InferenceSession(default_model, providers=['CPUExecutionProvider'])
    config = ModelConfig.for_model(default_model)
    (inp,) = session.get_inputs()
    buffer = np.zeros([1] + config.input['size'] + [3], np.uint8)
    photo = data.astronaut()
    transform = Preprocessor(config.input, buffer.shape, buffer.dtype)(photo, 'rgb', buffer)
    names = [o.name for o in session.get_outputs()]
    outputs = dict(zip(names, session.run(names, {inp.name: buffer})))
    decoder = create_decoder(config.decoder, config.labels, tuple(config.input['size']))
    found = decoder(outputs, DetectionParams(0.5, 0.45, 10))
    assert found.labels[:1] == ['person'] and found.scores[0] > 0.8
    x1, y1, x2, y2 = transform.to_source(found.boxes[:1])[0]
    # The astronaut fills most of the 512 x 512 photo's height, on the left two thirds.
    assert x2 - x1 > 150 and y2 - y1 > 300 and x1 < 200 and x2 < 512 and y2 <= 512


def test_register_decoder_adds_a_type_without_touching_the_package() -> None:
    @register_decoder('center_points_test')
    class CenterPoints(Decoder):
        tensor_options = ('points',)

        def decode(self, outputs, params):
            pts = self.tensor(outputs, 'points')  # [N, 3]: cx, cy, score
            keep = pts[:, 2] >= params.score_threshold
            boxes = np.concatenate([pts[keep, :2] - 2, pts[keep, :2] + 2], 1)
            return self.detections(boxes, pts[keep, 2], np.zeros(keep.sum()))

    config = ModelConfig(decoder={'type': 'center_points_test', 'points': 'pts'})
    decoder = create_decoder(config.decoder, ['ball'], (32, 32))
    found = decoder({'pts': np.array([[[10, 10, 0.9], [5, 5, 0.1]]])}, DetectionParams())
    assert found.labels == ['ball']
    np.testing.assert_allclose(found.boxes, [[8, 8, 12, 12]])
    with pytest.raises(ValueError, match='already registered'):
        register_decoder('yolov8')(CenterPoints)
    with pytest.raises(ConfigError, match='unknown option.*pointz'):
        create_decoder({'type': 'center_points_test', 'pointz': 'x'}, [], (32, 32))


def test_select_is_what_every_decoder_ends_with_and_nms_may_be_class_agnostic() -> None:
    """One object reported as "car 0.55" and "truck 0.32": per class both, agnostic the car."""
    decoder = create_decoder({'type': 'generic', 'boxes': 'b', 'scores': 's'},
                             ['car', 'truck'], (64, 64))
    boxes = np.array([[10, 10, 40, 40], [10, 10, 40, 40], [50, 50, 60, 60]], np.float32)
    scores = np.array([[0.55, 0.1], [0.1, 0.32], [0.1, 0.9]], np.float32)
    outputs = {'b': boxes[None], 's': scores[None]}
    per_class = decoder(outputs, DetectionParams(score_threshold=0.3))
    assert per_class.labels == ['truck', 'car', 'truck']
    agnostic = decoder(outputs, DetectionParams(score_threshold=0.3, class_agnostic_nms=True))
    assert agnostic.labels == ['truck', 'car'] and agnostic.scores.tolist() == pytest.approx(
        [0.9, 0.55])
    # The public helper on its own, as a custom decoder calls it: threshold, allow-list, NMS,
    # max detections, best first.
    picked = decoder.select(boxes, scores.max(axis=1), scores.argmax(axis=1),
                            DetectionParams(score_threshold=0.3, class_allowlist=['truck'],
                                            max_detections=1))
    assert picked.labels == ['truck'] and picked.scores.tolist() == pytest.approx([0.9])
    assert len(decoder.select(boxes, [0.9, 0.8, 0.7], [0, 0, 0], DetectionParams(),
                              nms=False)) == 3  # after NMS already: only sorted and cut


def test_the_model_configs_detection_defaults_and_what_overrides_them() -> None:
    config = ModelConfig.from_dict({'detection': {'score_threshold': 0.3,
                                                  'class_agnostic_nms': True}})
    params = config.detection_params(score_threshold=None, max_detections=7)
    assert (params.score_threshold, params.class_agnostic_nms) == (0.3, True)
    assert (params.iou_threshold, params.max_detections) == (0.45, 7)  # default, override
    for bad, field in (({'score': 0.3}, 'unknown key'), ({'iou_threshold': 2.0}, 'between'),
                       ({'class_agnostic_nms': 'yes'}, 'true/false')):
        with pytest.raises(ConfigError, match=field):
            ModelConfig.from_dict({'detection': bad})
