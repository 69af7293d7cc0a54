"""`tx2-convert onnx --target tx2` on the real SSDLite person SavedModel (issue 20, bug 1).

The SavedModel that ``tools/get_default_model.py`` makes (the TF1 Object Detection API export:
a uint8 ``image_tensor``), converted as that script does (same input shape, cut at the same
tensors, same config options) but with ``--target tx2``, once for the module (~10 s):

- the model passes ``tx2-convert check --target tx2`` (today's default model fails it, naming
  its uint8 input: test/backends/test_preflight.py);
- its input and its config are float32, and through the Detector on ONNX Runtime (our
  pre-processor writing float, our decoder and NMS, as on the robot) it finds the same people,
  boxes and scores as the uint8 default model on the real photos of test/data/persons.
"""

import os
import sys

from boxes import PERSONS
import numpy as np
from project_files import load_tool
import pytest

from tx2_inference.convert.cli import main
from tx2_inference.core.decoders import DetectionParams


def _get_default_model():
    """Import tools/get_default_model.py (its INPUT and CUT: the default model's conversion)."""
    return load_tool('get_default_model')


@pytest.fixture(scope='module')
def tx2_model(default_model, tmp_path_factory):
    """Convert the default model's SavedModel with --target tx2 (once for the module)."""
    tool = _get_default_model()
    saved = os.path.join(os.path.dirname(default_model), 'ssdlite_person_savedmodel')
    out = str(tmp_path_factory.mktemp('tx2') / 'person_tx2.onnx')
    status = main(['onnx', saved, '-o', out, '--tag', 'serve', '--signature',
                   'serving_default', '--inputs', tool.INPUT, '--outputs', tool.CUT,
                   '--validate-images', PERSONS, '--labels', 'person', '--layout', 'nhwc',
                   '--color', 'rgb', '--resize', 'stretch', '--scale', '1', '--mean', '0,0,0',
                   '--std', '1,1,1', '--decoder', 'boxes_scores', '--box-format', 'yxyx',
                   '--box-units', 'normalized', '--score-activation', 'none',
                   '--background-class', '0', '--target', 'tx2'])
    assert status == 0
    return out


def test_target_tx2_model_passes_the_preflight(tx2_model, default_model, capsys):
    import onnx

    from tx2_inference.core.model_config import ModelConfig
    model = onnx.load(tx2_model, load_external_data=False)
    assert [i.type.tensor_type.elem_type for i in model.graph.input] == [
        onnx.TensorProto.FLOAT]
    cfg = ModelConfig.load(os.path.splitext(tx2_model)[0] + '.yaml')
    assert cfg.input['dtype'] == 'float32' and cfg.input['name'] == 'image_tensor:0'
    capsys.readouterr()
    assert main(['check', tx2_model, '--target', 'tx2']) == 0
    assert 'passes the preflight for tx2 (TensorRT 8.0 and 8.2)' in capsys.readouterr().out
    assert main(['check', default_model, '--target', 'tx2']) == 1  # the uint8 one does not


def _detections(model_path, dtype):
    import cv2

    from tx2_inference.detector import Detector
    found = {}
    with Detector(model_path, backend='onnxruntime', depth=1) as det:
        det.params = DetectionParams(score_threshold=0.3, iou_threshold=0.6)
        assert det.backend.inputs[0].dtype == dtype  # the pre-processor writes this type
        for name in sorted(os.listdir(PERSONS)):
            if name.endswith(('.jpg', '.png')):
                bgr = cv2.imread(os.path.join(PERSONS, name))
                found[name] = det.detect(bgr, 'bgr')
    return found


def test_target_tx2_model_gives_the_same_detections(tx2_model, default_model):
    """Same people, boxes and scores in ONNX Runtime as the uint8 model, on real photos."""
    uint8 = _detections(default_model, np.uint8)
    float32 = _detections(tx2_model, np.float32)
    assert sum(len(d.scores) for d in uint8.values()) >= 4  # people were found at all
    for name, want in uint8.items():
        got = float32[name]
        assert len(got.scores) == len(want.scores), name
        np.testing.assert_allclose(got.boxes, want.boxes, atol=0.5, err_msg=name)
        np.testing.assert_allclose(got.scores, want.scores, atol=1e-4, err_msg=name)
        assert got.labels == want.labels


if __name__ == '__main__':
    sys.exit(pytest.main([__file__, '-q']))
