"""The model config: YAML round trip, auto-detection from tensors, errors that name the field."""

import os
from typing import List

import numpy as np
import pytest

from tx2_inference.backends.base import TensorInfo
from tx2_inference.core.model_config import config_path_for, ModelConfig
from tx2_inference.errors import ConfigError

SSD_INPUTS = [TensorInfo('image_tensor:0', (1, 300, 300, 3), np.dtype(np.uint8))]
SSD_OUTPUTS = [TensorInfo('Postprocessor/ExpandDims_1:0', (1, 1917, 1, 4), np.dtype(np.float32)),
               TensorInfo('Postprocessor/convert_scores:0', (1, 1917, 2), np.dtype(np.float32))]
TRT_OUTPUTS = [TensorInfo('num_dets', (1, 1), np.dtype(np.int32)),
               TensorInfo('det_boxes', (1, 100, 4), np.dtype(np.float32)),
               TensorInfo('det_scores', (1, 100), np.dtype(np.float32)),
               TensorInfo('det_classes', (1, 100), np.dtype(np.int32))]
V8_OUTPUTS = [TensorInfo('output0', (1, 84, 8400), np.dtype(np.float32))]


def _write(tmp_path: str, text: str) -> str:
    path = os.path.join(str(tmp_path), 'model.yaml')
    with open(path, 'w') as stream:
        stream.write(text)
    return path


def test_config_path_is_beside_the_model() -> None:
    assert config_path_for('/m/ssd.v2.onnx') == '/m/ssd.v2.yaml'
    assert config_path_for('engine.engine') == 'engine.yaml'


def test_empty_config_is_filled_from_an_ssd_cut(tmp_path: str) -> None:
    config = ModelConfig.for_model(os.path.join(str(tmp_path), 'absent.onnx'))
    resolved = config.resolve(SSD_INPUTS, SSD_OUTPUTS)
    assert resolved.input['name'] == 'image_tensor:0'
    assert (resolved.input['layout'], resolved.input['dtype']) == ('nhwc', 'uint8')
    assert resolved.input['size'] == [300, 300] and resolved.input['color'] == 'rgb'
    assert resolved.decoder == {'type': 'boxes_scores',
                                'boxes': 'Postprocessor/ExpandDims_1:0',
                                'scores': 'Postprocessor/convert_scores:0'}
    assert config.input['name'] is None, 'resolve returns a copy'


def test_families_are_recognised_by_their_outputs() -> None:
    nchw = [TensorInfo('images', (1, 3, 640, 640), np.dtype(np.float32))]
    trt = ModelConfig().resolve(nchw, TRT_OUTPUTS)
    assert trt.decoder['type'] == 'efficient_nms' and trt.decoder['classes'] == 'det_classes'
    assert trt.input['layout'] == 'nchw' and trt.input['size'] == [640, 640]
    v8 = ModelConfig(decoder={'type': 'yolov8'}).resolve(nchw, V8_OUTPUTS)
    assert v8.decoder['output'] == 'output0'


def test_round_trip_through_yaml(tmp_path: str) -> None:
    path = os.path.join(str(tmp_path), 'm.yaml')
    config = ModelConfig({'color': 'bgr', 'resize': 'letterbox', 'mean': [1, 2, 3],
                          'size': (320, 480), 'scale': np.float32(0.5)},
                         {'type': 'yolov5', 'output': 'out'}, ['a', 'b'])
    config.save(path)
    loaded = ModelConfig.load(path)
    assert loaded.to_dict() == config.to_dict() and loaded.path == path
    assert loaded.input['size'] == [320, 480] and loaded.input['scale'] == 0.5


def test_the_default_models_config_resolves_against_its_onnx(default_model: str) -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(default_model, providers=['CPUExecutionProvider'])
    types = {'tensor(uint8)': np.uint8, 'tensor(float)': np.float32}

    def infos(tensors: list) -> List[TensorInfo]:
        return [TensorInfo(t.name, tuple(t.shape), np.dtype(types[t.type])) for t in tensors]

    config = ModelConfig.for_model(default_model)
    assert config.path == config_path_for(default_model)
    resolved = config.resolve(infos(session.get_inputs()), infos(session.get_outputs()))
    assert resolved.labels == ['person'] and resolved.decoder['type'] == 'boxes_scores'


@pytest.mark.parametrize('text, field', [
    ('input: {layout: hwc}', 'input.layout'),
    ('input: {colour: rgb}', 'colour'),
    ('input: {size: [300]}', 'input.size'),
    ('input: {std: [1, 0, 1]}', 'input.std'),
    ('input: {mean: fast}', 'input.mean'),
    ('decoder: {type: yolov99}', 'decoder.type'),
    ('decoder: [boxes]', 'decoder'),
    ('model: x', 'model'),
    ('labels: person', 'labels'),
    ('input: {layout: nhwc', 'not valid YAML'),
])
def test_malformed_files_name_the_file_and_field(tmp_path: str, text: str, field: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        ModelConfig.load(path)
    assert path in str(info.value) and field in str(info.value)


@pytest.mark.parametrize('config, inputs, outputs, field, hint', [
    (ModelConfig({'name': 'images'}), SSD_INPUTS, SSD_OUTPUTS, 'input.name', 'image_tensor:0'),
    (ModelConfig(decoder={'type': 'boxes_scores', 'scores': 'scores'}), SSD_INPUTS,
     SSD_OUTPUTS, 'decoder.scores', 'Postprocessor/convert_scores:0'),
    (ModelConfig(), SSD_INPUTS + [TensorInfo('k', (1,), np.dtype(np.float32))], SSD_OUTPUTS,
     'input.name', 'write input.name'),
    (ModelConfig(), [TensorInfo('x', (1, -1, -1, 3), np.dtype(np.uint8))], SSD_OUTPUTS,
     'input.size', '[height, width]'),
    (ModelConfig(), [TensorInfo('x', (1, 3, 64, 3), np.dtype(np.uint8))], SSD_OUTPUTS,
     'input.layout', 'nhwc or nchw'),
    (ModelConfig({'dtype': 'float32'}), SSD_INPUTS, SSD_OUTPUTS, 'input.dtype', 'uint8'),
    (ModelConfig(), SSD_INPUTS, V8_OUTPUTS, 'decoder.type', 'yolov8'),
    (ModelConfig(decoder={'type': 'yolov8'}), SSD_INPUTS, SSD_OUTPUTS, 'decoder.output',
     'Postprocessor/ExpandDims_1:0'),
    (ModelConfig(decoder={'type': 'generic', 'box_order': 'xyxy'}), SSD_INPUTS, SSD_OUTPUTS,
     'box_order', 'box_format'),
])
def test_what_the_model_leaves_open_fails_naming_the_field(
        config: ModelConfig, inputs: list, outputs: list, field: str, hint: str) -> None:
    with pytest.raises(ConfigError) as info:
        config.resolve(inputs, outputs)
    assert field in str(info.value) and hint in str(info.value), str(info.value)


def test_a_foreign_file_is_never_echoed_only_its_fields_named(tmp_path):
    """Issue 22, item 10: model_config at any readable file was a file oracle in the log."""
    from tx2_inference.core.model_config import ModelConfig
    from tx2_inference.errors import ConfigError
    secret = 'hunter2-secret'
    cases = {
        'keys.yaml': 'db_password: {0}\napi_{0}: 1\n',
        'size.yaml': 'input: {{size: {0}}}\n',
        'labels.yaml': 'labels: {0}\n',
        'decoder.yaml': 'decoder: {{type: {0}}}\n',
        'score.yaml': 'detection: {{score_threshold: {0}}}\n',
        'layout.yaml': 'input: {{layout: {0}}}\n',
        'section.yaml': 'input: {0}\n',
    }
    for name, text in cases.items():
        path = tmp_path / name
        path.write_text(text.format(secret))
        with pytest.raises(ConfigError) as error:
            ModelConfig.load(str(path))
        message = str(error.value)
        assert secret not in message and 'db_password' not in message, (name, message)
        assert str(path) in message
    # A typo is still named, with the fix.
    (tmp_path / 'typo.yaml').write_text('lables: [person]\ninput: {layuot: nhwc}\n')
    with pytest.raises(ConfigError) as error:
        ModelConfig.load(str(tmp_path / 'typo.yaml'))
    assert "'lables' (did you mean 'labels'?)" in str(error.value)
