"""Full-integer TFLite (int8 input and outputs) through the Detector, like its float twin.

The real SSDLite person model, cut after its preprocessor (the input is ``x * 2/255 - 1``), is
converted once with ``tx2-convert tflite --precision int8 --int8-io`` (about 4 s). Its input
is int8 with (scale, zero point) = (2/255, -1), its outputs int8 with their own per-tensor
parameters. Bounds, on skimage's astronaut against the float ONNX model (measured: IoU 0.981,
score 0.914 vs 0.920): the person found with IoU >= 0.95 and a score within 0.03; nothing at
0.3 on the cat or the cup. The quantised input and the dequantised outputs are also checked
exactly, and against the raw (not dequantised) path, which must not pass for the float one.
"""

import os

from allocations import allocations_over_frames
from boxes import PERSONS
import cv2
import numpy as np
import pytest
import skimage.data

from tx2_inference.backends.tflite_backend import quantization_from_detail
from tx2_inference.core.decoders import create_decoder, DetectionParams
from tx2_inference.core.preprocess import Preprocessor, Transform
from tx2_inference.detector import Detector
from tx2_inference.errors import ConfigError, ModelError

PARAMS = DetectionParams(score_threshold=0.3, iou_threshold=0.6)


def _iou(a, b):
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])
    return float(inter / (area - inter))


@pytest.fixture(scope='session')
def full_int8(default_model, tmp_path_factory):
    """Convert the person model to a full-integer TFLite (int8 I/O), once per session."""
    pytest.importorskip('ai_edge_litert', reason='ai-edge-litert is not installed')
    pytest.importorskip('tensorflow', reason='tensorflow is not installed (workstation only)')
    from tx2_inference.convert.cli import main
    frozen = os.path.join(os.path.dirname(default_model), 'ssdlite_person_frozen.pb')
    out = str(tmp_path_factory.mktemp('tflite_int8') / 'person_int8io.tflite')
    assert main(['tflite', frozen, '-o', out, '--precision', 'int8', '--int8-io',
                 '--inputs', 'Preprocessor/sub[1,300,300,3]',
                 '--outputs', 'Postprocessor/ExpandDims_1,Postprocessor/convert_scores',
                 '--calib-images', PERSONS, '--labels', 'person',
                 '--background-class', '0']) == 0
    return out


@pytest.fixture(scope='module')
def float_detections(default_model):
    """Detect with the float twin (the ONNX model of the same graph) on the photos."""
    with Detector(default_model, backend='onnxruntime', depth=1) as det:
        det.params = PARAMS
        return {name: det.detect(getattr(skimage.data, name)(), 'rgb')
                for name in ('astronaut', 'chelsea', 'coffee')}


@pytest.fixture
def detector(full_int8):
    with Detector(full_int8, backend='tflite', depth=2) as det:
        det.params = PARAMS
        yield det


def test_the_model_is_full_integer_with_per_tensor_parameters(detector):
    assert detector.config.input['dtype'] == 'int8'
    assert [t.dtype for t in detector.backend.inputs + detector.backend.outputs] == \
        [np.dtype(np.int8)] * 3
    scale, zero_point = detector.input_quantization
    assert scale == pytest.approx(2 / 255.0, rel=1e-3) and -3 <= zero_point <= 1
    assert sorted(detector.output_quantization) == ['Postprocessor/ExpandDims_1',
                                                    'Postprocessor/convert_scores']
    assert all(s > 0 for s, _ in detector.output_quantization.values())


def test_detections_agree_with_the_float_model(detector, float_detections):
    for name, expected in float_detections.items():
        got = detector.detect(getattr(skimage.data, name)(), 'rgb')
        if name != 'astronaut':
            assert len(got) == len(expected) == 0, (name, got)
            continue
        assert len(got) >= 1 and got.labels[0] == 'person'
        assert _iou(got.boxes[0], expected.boxes[0]) >= 0.95, (got.boxes[0], expected.boxes[0])
        assert abs(float(got.scores[0]) - float(expected.scores[0])) <= 0.03


def _raw_slot(detector, image):
    """Run one frame on a slot of our own; return the slot and the float input it stands for."""
    slot = detector.backend.create_slot(7, {detector.config.input['name']: detector.input_shape})
    name = detector.config.input['name']
    Preprocessor(detector.config.input, detector.input_shape, slot.inputs[name].dtype,
                 detector.input_quantization)(image, 'rgb', slot.inputs[name])
    detector.backend.run(slot)
    values = np.zeros(detector.input_shape, np.float32)
    Preprocessor(detector.config.input, detector.input_shape, np.float32)(image, 'rgb', values)
    return slot, slot.inputs[name], values


def test_input_is_quantised_and_outputs_dequantised(detector, float_detections):
    astronaut = skimage.data.astronaut()
    slot, q, values = _raw_slot(detector, astronaut)
    scale, zero_point = detector.input_quantization
    # q = round(v / s + zp), saturated: dequantised it is within half a step of v everywhere.
    assert q.dtype == np.int8
    error = np.abs((q.astype(np.float32) - zero_point) * scale - values)
    assert error.max() <= scale / 2 * 1.001, error.max()
    # Not quantised (the float values cast as they are), the input would be 0 or +-1.
    assert np.abs(q.astype(np.int32)).max() > 100
    decoded = detector.decode_inputs(slot)
    for name, (s, zp) in detector.output_quantization.items():
        raw = slot.outputs[name]
        assert raw.dtype == np.int8 and decoded[name].dtype == np.float32
        np.testing.assert_allclose(decoded[name], (raw.astype(np.float64) - zp) * s, rtol=1e-6)
    assert 0.0 <= decoded['Postprocessor/convert_scores'].min()
    assert decoded['Postprocessor/convert_scores'].max() <= 1.0
    assert detector.decode_inputs(slot) is decoded  # the same buffers every frame
    decoder = create_decoder(detector.config.decoder, detector.labels, (300, 300))
    expected = float_detections['astronaut']
    good = decoder(decoded, PARAMS)
    assert len(good) and _iou(good.boxes[0] * 512 / 300.0, expected.boxes[0]) >= 0.95
    raw = decoder(slot.outputs, PARAMS)  # the integers taken for floats: silently wrong
    assert len(raw) == 0 or raw.scores.max() > 1.0 or \
        _iou(raw.boxes[0] * 512 / 300.0, expected.boxes[0]) < 0.5
    detector.backend.release_slot(slot)


def test_no_allocation_per_frame_on_the_quantised_path(detector):
    frame = cv2.resize(skimage.data.astronaut(), (640, 480), interpolation=cv2.INTER_LINEAR)
    found = [0]
    detector.on_result = lambda tag, detections, timing: found.__setitem__(
        0, found[0] + (len(detections) > 0))
    for _ in range(10):
        detector.detect(frame, 'rgb')
    growth, peak = allocations_over_frames(
        lambda: [detector.detect(frame, 'rgb') for _ in range(10)],
        lambda tag: detector.submit(frame, 'rgb', tag), detector.drain, frames=300)
    assert found[0] == 300
    # The dequantised outputs are 46 KiB and the model input 264 KiB: none made per frame.
    assert growth < 32 * 1024, growth
    assert peak < 128 * 1024, peak


def test_preprocessor_quantisation_rounds_saturates_and_allocates_nothing():
    photo = skimage.data.astronaut()[:, :450]
    # uint8 input of s = 1/255, zp = 0 with scale 1/255: q == pixel, a straight copy.
    out = np.zeros((1, 512, 450, 3), np.uint8)
    pre = Preprocessor({'scale': 1 / 255.0}, out.shape, np.uint8, (1 / 255.0, 0))
    assert pre.identity
    pre(photo, 'rgb', out)
    np.testing.assert_array_equal(out[0], photo)
    # int8, a step of 1/64 around mean 0.5: values beyond +-2 saturate at -128 / 127.
    out = np.zeros((1, 3, 100, 100), np.int8)
    pre = Preprocessor({'layout': 'nchw', 'resize': 'letterbox', 'scale': 1 / 255.0,
                        'mean': 0.5, 'std': 0.1, 'pad_value': 0}, out.shape, np.int8,
                       (1 / 64.0, 3))
    transform = pre(photo, 'rgb', out)
    values = np.zeros(out.shape, np.float32)
    Preprocessor({'layout': 'nchw', 'resize': 'letterbox', 'scale': 1 / 255.0, 'mean': 0.5,
                  'std': 0.1, 'pad_value': 0}, out.shape, np.float32)(photo, 'rgb', values)
    expected = np.clip(np.rint(values * 64.0 + 3), -128, 127)
    assert np.abs(out.astype(np.float32) - expected).max() <= 1  # float rounding at ties
    assert (out == 127).any() and (out == -128).any()
    assert transform.pad_x == 6 and (out[0, :, :, :6] == -128).all()  # pad: -317 saturated
    transforms = [Transform(), Transform()]
    buffers = [out, out.copy()]

    def frame(i):
        pre(photo, 'rgb', buffers[i % 2], transforms[i % 2])

    growth, peak = allocations_over_frames(lambda: [frame(i) for i in range(4)], frame,
                                           lambda timeout: True, frames=300)
    assert peak < 16 * 1024 and growth < 4 * 1024, (peak, growth)


def test_unsupported_quantisation_is_refused_with_what_to_do():
    detail = {'name': 'boxes', 'quantization': (0.0, 0),
              'quantization_parameters': {'scales': np.array([0.1, 0.2], np.float32),
                                          'zero_points': np.array([0, 0], np.int32),
                                          'quantized_dimension': 3}}
    with pytest.raises(ModelError, match="'boxes' is quantised per channel"):
        quantization_from_detail(detail)
    single = dict(detail, quantization_parameters={
        'scales': np.array([0.5], np.float32), 'zero_points': np.array([-4], np.int32),
        'quantized_dimension': 0})
    assert quantization_from_detail(single) == (0.5, -4)
    assert quantization_from_detail({'name': 'x', 'quantization': (0.0, 0)}) == (0.0, 0)
    with pytest.raises(ConfigError, match='int8 is not supported'):
        Preprocessor({}, (1, 8, 8, 3), np.int8)  # int8 without its quantisation
    with pytest.raises(ConfigError, match='quantised inputs'):
        Preprocessor({}, (1, 8, 8, 3), np.float32, (0.5, 0))
