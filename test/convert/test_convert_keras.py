"""tx2-convert on a Keras model exported as a SavedModel: every path against TensorFlow.

A small two-output "detector" (boxes through a sigmoid, class scores through a softmax) is
exported with ``model.export(..., format='tf_saved_model')``, as a Keras 3 user would, then
converted with the CLI. Tolerances against TensorFlow's own outputs on real photos:
ONNX 1e-5 and TFLite FP32 1e-4 (float rounding), TFLite FP16 1e-2, TFLite INT8 0.05
(probabilities in [0, 1]).
"""

import os

from boxes import PERSONS
import numpy as np
import pytest

from tx2_inference.convert.cli import main
from tx2_inference.core import images

DATA = PERSONS
SCALE = ['--scale', str(1 / 255.0)]


@pytest.fixture(scope='module')
def keras_saved_model(tmp_path_factory):
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
    import keras
    keras.utils.set_random_seed(0)
    inp = keras.Input((32, 32, 3), batch_size=1, name='image')
    x = keras.layers.Conv2D(8, 3, strides=2, padding='same', activation='relu')(inp)
    x = keras.layers.Conv2D(16, 3, strides=2, padding='same', activation='relu')(x)
    x = keras.layers.Reshape((64, 16))(x)
    boxes = keras.layers.Dense(4, activation='sigmoid', name='boxes')(x)
    scores = keras.layers.Dense(3, activation='softmax', name='scores')(x)
    path = str(tmp_path_factory.mktemp('keras') / 'saved_model')
    keras.Model(inp, [boxes, scores]).export(path, format='tf_saved_model', verbose=False)
    return path


def tf_outputs(saved_model, x):
    """TensorFlow's own result: the SavedModel's serving signature, keyed by output name."""
    import tensorflow as tf
    fn = tf.saved_model.load(saved_model).signatures['serving_default']
    return {k: v.numpy() for k, v in fn(image=tf.constant(x)).items()}


def photo_inputs(cfg_input, dtype=np.float32):
    paths = images.list_images(DATA, 3)
    return [images.prepare(images.read_rgb(p), cfg_input, (1, 32, 32, 3), dtype) for p in paths]


def test_onnx_matches_tensorflow(keras_saved_model, tmp_path):
    import onnx
    import onnxruntime as ort

    from tx2_inference.core.model_config import ModelConfig
    out = str(tmp_path / 'keras.onnx')
    assert main(['onnx', keras_saved_model, '-o', out, '--validate-images', DATA,
                 '--opset', '13', '--labels', 'a,b'] + SCALE) == 0
    model = onnx.load(out)
    assert {o.version for o in model.opset_import if o.domain in ('', 'ai.onnx')} == {13}
    assert not [n for n in model.graph.node if n.op_type == 'Constant']  # folded
    cfg = ModelConfig.load(str(tmp_path / 'keras.yaml'))
    assert cfg.input['name'] == 'image' and cfg.input['size'] == [32, 32]
    assert cfg.input['dtype'] == 'float32' and cfg.labels == ['a', 'b']
    sess = ort.InferenceSession(out, providers=['CPUExecutionProvider'])
    for x in photo_inputs(cfg.input):
        ref = tf_outputs(keras_saved_model, x)
        got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {'image': x})))
        assert sorted(got) == sorted(ref) == ['output_0', 'output_1']
        for name in ref:
            np.testing.assert_allclose(got[name], ref[name], atol=1e-5, rtol=0)


@pytest.mark.parametrize('precision,atol', [('fp32', 1e-4), ('fp16', 1e-2), ('int8', 0.05)])
def test_tflite_matches_tensorflow(keras_saved_model, tmp_path, precision, atol):
    from tx2_inference.convert.workstation.tf_lite import _interpreter, _match_outputs, run_tflite
    from tx2_inference.core.model_config import ModelConfig
    out = str(tmp_path / 'keras_{}.tflite'.format(precision))
    assert main(['tflite', keras_saved_model, '-o', out, '--precision', precision,
                 '--calib-images', DATA] + SCALE) == 0
    cfg = ModelConfig.load(str(tmp_path / 'keras_{}.yaml'.format(precision)))
    assert cfg.input['scale'] == pytest.approx(1 / 255.0)
    with open(out, 'rb') as f:
        interp = _interpreter(f.read())
    worst = 0.0
    for x in photo_inputs(cfg.input):
        ref = tf_outputs(keras_saved_model, x)
        got = _match_outputs(ref, run_tflite(interp, x))
        for name in ref:
            worst = max(worst, float(np.abs(got[name] - ref[name]).max()))
    assert worst <= atol
    if precision != 'fp32':
        assert worst > 0  # the quantized model really is a different model


def test_bad_input_gives_one_clear_message_and_no_file(keras_saved_model, tmp_path, capsys):
    out = tmp_path / 'x.onnx'
    cases = [
        (['onnx', str(tmp_path / 'missing'), '-o', str(out)], 'does not exist'),
        (['onnx', keras_saved_model, '-o', str(out), '--signature', 'predict'],
         "it has ['serve', 'serving_default']"),
        (['onnx', keras_saved_model, '-o', str(out), '--tag', 'train'], 'no MetaGraph with tag'),
        (['onnx', keras_saved_model, '-o', str(out), '--decoder', 'yolo9'],
         "'yolo9' is not a known decoder"),
        (['tflite', keras_saved_model, '-o', str(tmp_path / 'x.tflite'), '--std', '0,1,1'],
         'input.std'),
        (['tflite', keras_saved_model, '-o', str(tmp_path / 'x.tflite'), '--precision', 'int8'],
         '--calib-images'),
        # validation failing (a tolerance nothing can meet): the file is not written
        (['onnx', keras_saved_model, '-o', str(out), '--atol', '-1', '--rtol', '0'],
         'differ from TensorFlow'),
    ]
    for argv, expected in cases:
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert expected in err, (argv, err)
        assert len(err.splitlines()) == 1, err
        assert not out.exists() and not (tmp_path / 'x.tflite').exists()
        assert not [n for n in os.listdir(str(tmp_path)) if n.endswith('.tmp')]


def test_module_entry_point_exit_status(tmp_path):
    """`python -m tx2_inference.convert`: 0 for help, 2 and one line for a missing model."""
    import subprocess
    import sys
    ok = subprocess.Popen([sys.executable, '-m', 'tx2_inference.convert', '--help'],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True)
    out, _ = ok.communicate(timeout=60)
    assert ok.returncode == 0
    for sub in ('onnx', 'engine', 'quantize', 'tflite', 'evaluate'):
        assert sub in out
    bad = subprocess.Popen([sys.executable, '-m', 'tx2_inference.convert', 'quantize',
                            str(tmp_path / 'none.onnx'), '-o', str(tmp_path / 'q.onnx'),
                            '--calib-images', DATA], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, universal_newlines=True)
    _, err = bad.communicate(timeout=60)
    assert bad.returncode == 2 and err.strip().startswith('tx2-convert quantize: error:')
    assert 'does not exist' in err and not os.listdir(str(tmp_path))
