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
                 '--opset', '13', '--labels', 'a,b', '--decoder', 'boxes_scores'] + SCALE) == 0
    model = onnx.load(out)
    assert {o.version for o in model.opset_import if o.domain in ('', 'ai.onnx')} == {13}
    assert not [n for n in model.graph.node if n.op_type == 'Constant']  # folded
    cfg = ModelConfig.load(str(tmp_path / 'keras.yaml'))
    assert cfg.input['name'] == 'image' and cfg.input['size'] == [32, 32]
    assert cfg.input['dtype'] == 'float32' and cfg.labels == ['a', 'b']
    # --decoder given: boxes are the one output whose last axis is 4, scores the other one.
    assert cfg.decoder == {'type': 'boxes_scores', 'boxes': 'output_0', 'scores': 'output_1'}
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
                 '--calib-images', DATA, '--decoder', 'boxes_scores'] + SCALE) == 0
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
         "'yolo9' (did you mean 'yolov"),  # a near miss is named; other text never is
        (['tflite', keras_saved_model, '-o', str(tmp_path / 'x.tflite'), '--std', '0,1,1'],
         'input.std'),
        (['tflite', keras_saved_model, '-o', str(tmp_path / 'x.tflite'), '--precision', 'int8'],
         '--calib-images'),
        # validation failing (a tolerance nothing can meet): the file is not written
        (['onnx', keras_saved_model, '-o', str(out), '--atol', '-1', '--rtol', '0'],
         'differs from TensorFlow'),
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


def test_no_decoder_is_guessed_the_config_is_marked_and_refused(keras_saved_model, tmp_path,
                                                               capsys):
    """Unknown output names and no --decoder: the decoder section is to be completed."""
    from tx2_inference.core.model_config import ModelConfig
    from tx2_inference.detector import Detector
    from tx2_inference.errors import ConfigError
    out = str(tmp_path / 'keras.onnx')
    capsys.readouterr()
    assert main(['onnx', keras_saved_model, '-o', out] + SCALE) == 3
    err = capsys.readouterr().err
    assert 'INCOMPLETE' in err and 'TO BE COMPLETED' in err
    assert 'output_0 [1, 64, 4] float32' in err and 'output_1 [1, 64, 3] float32' in err
    assert 'boxes_scores (boxes [N, 4]' in err  # a type that could fit, and why
    config = ModelConfig.load(str(tmp_path / 'keras.yaml'))
    assert config.incomplete and config.decoder['outputs'] == {
        'output_0': '[1, 64, 4] float32', 'output_1': '[1, 64, 3] float32'}
    with pytest.raises(ConfigError) as refused:
        Detector(out, backend='onnxruntime')
    # The node's configure fails with this message too (it opens the model with a Detector).
    message = str(refused.value)
    assert message in err.replace('\n', ' ') or message in err
    assert 'wrote no decoder rather than guess one' in message
    # A named decoder whose tensors the model leaves open is not guessed either.
    capsys.readouterr()
    assert main(['onnx', keras_saved_model, '-o', out, '--decoder', 'yolov8', '--force'] +
                SCALE) == 3
    assert 'decoder yolov8 needs the output tensor for output' in capsys.readouterr().err


def test_list_tensors_lists_every_tensor_with_its_shape_and_stops(keras_saved_model, tmp_path,
                                                                 capsys):
    capsys.readouterr()
    assert main(['onnx', keras_saved_model, '--list-tensors']) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "signature 'serving_default' (its keys are the ONNX input and output names):" in lines
    assert any(line.split()[:3] == ['output', 'output_0', '[None,'] for line in lines), lines
    shaped = lines[lines.index(next(x for x in lines if x.startswith('graph tensors'))) + 1:]
    assert len(shaped) > 10 and all(line.strip().split()[0].rsplit(':', 1)[1].isdigit()
                                    for line in shaped)
    assert any(line.split()[:5] == ['image:0', '[None,', '32,', '32,', '3]'] for line in shaped)
    assert '  input  image  [None, 32, 32, 3]  float32  (graph tensor image:0)' in lines
    assert not os.listdir(str(tmp_path))  # nothing converted, nothing written
    assert main(['onnx', keras_saved_model, '--list-tensors', '--match', 'Softmax']) == 0
    graph_part = capsys.readouterr().out.split('graph tensors')[1].splitlines()[1:]
    assert graph_part and all('Softmax' in line for line in graph_part)


def _top_k_model(path, seed, keep):
    """Save a small Keras detector whose rows come out of a top-K with near-equal scores.

    Every row's score is a shared term plus 1e-6 of its own: scores differ in the 7th digit,
    where TensorFlow's and ONNX Runtime's float rounding differ, so the two runtimes sort
    some rows differently (both correctly).
    """
    import keras
    from keras import ops
    keras.utils.set_random_seed(seed)
    inp = keras.Input((32, 32, 3), batch_size=1, name='image')
    x = keras.layers.Conv2D(8, 3, strides=2, padding='same', activation='relu')(inp)
    x = keras.layers.Conv2D(16, 3, strides=1, padding='same', activation='relu')(x)
    rows = keras.layers.Reshape((256, 16))(x)
    shared = keras.layers.RepeatVector(256)(keras.layers.GlobalAveragePooling2D()(x))
    boxes = keras.layers.Dense(4)(rows)
    scores = ops.reshape(keras.layers.Dense(1, activation='sigmoid')(shared + rows * 1e-6),
                         (1, 256))
    top, index = ops.top_k(scores, keep)
    picked = ops.take_along_axis(boxes, ops.expand_dims(index, -1), axis=1)
    model = keras.Model(inp, {'detection_boxes': picked, 'detection_scores': top})
    model.export(path, format='tf_saved_model', verbose=False)
    return path


def test_top_k_detections_are_compared_as_detections(tmp_path, capsys):
    """A correct top-K model passes (rows reordered); a wrong conversion fails, named."""
    from tx2_inference.convert.workstation import tf_onnx
    from tx2_inference.errors import UserError
    right = _top_k_model(str(tmp_path / 'right'), 0, 256)
    out = str(tmp_path / 'topk.onnx')
    result = tf_onnx.convert(right, out, validate_images=DATA, input_cfg={'scale': 1 / 255.0})
    # The check names outputs as the ONNX model does, and matched rows that came back in
    # another order: compared element by element, this correct model fails.
    assert sorted(result.diffs) == ['detection_boxes', 'detection_scores'] == sorted(
        result.outputs)
    assert result.diffs['detection_boxes']['reordered_rows'] > 0
    assert result.diffs['detection_boxes']['max_abs'] < 1e-5
    # The CLI writes a complete config when told the decoder and its tensors.
    capsys.readouterr()
    assert main(['onnx', right, '-o', out, '--force', '--validate-images', DATA, '--decoder',
                 'generic', '--boxes', 'detection_boxes', '--scores', 'detection_scores'] +
                SCALE) == 0
    printed = capsys.readouterr().out
    assert 'vs TensorFlow  detection_boxes' in printed and 'rows in another order' in printed
    # A wrong conversion: the ONNX of another model (other weights) checked against this one.
    other = _top_k_model(str(tmp_path / 'other'), 1, 256)
    wrong = str(tmp_path / 'wrong.onnx')
    tf_onnx.convert(other, wrong, input_cfg={'scale': 1 / 255.0})
    specs, outs, rename, _ = tf_onnx._resolve(right, 'saved_model', 'serve', 'serving_default',
                                              None, None)
    with pytest.raises(UserError) as failed:
        tf_onnx.validate(right, wrong, 'serve', specs, outs, rename, DATA, {'scale': 1 / 255.0},
                         1e-3, 1e-3)
    message = str(failed.value)
    assert 'differs from TensorFlow' in message and 'detection_boxes' in message
    assert 'rows matched as detections' in message and 'Check the input shape' not in message
    # Per-output tolerances: wide enough for these two outputs, the same files pass.
    tf_onnx.validate(right, wrong, 'serve', specs, outs, rename, DATA, {'scale': 1 / 255.0},
                     1e-3, 1e-3, {'detection_boxes': (100.0, 0.0),
                                  'detection_scores': (1.0, 0.0)})


def test_detection_rows_are_matched_and_the_top_k_cut_off_may_differ():
    """Compare as detections: reordered rows pass, another row at the cut-off passes.

    A wrong row elsewhere fails, naming the output and the worst element.
    """
    from tx2_inference.convert.workstation.compare import compare_outputs, failure_message
    rng = np.random.RandomState(0)
    boxes = rng.uniform(0, 300, (1, 20, 4))
    scores = np.sort(rng.uniform(0.1, 0.9, (1, 20)))[:, ::-1].copy()
    names = ['boxes', 'scores']

    def run(got_boxes, got_scores):
        samples = [({'boxes': boxes, 'scores': scores},
                    {'boxes': got_boxes, 'scores': got_scores})]
        return samples, compare_outputs(samples, names, (1e-3, 1e-3), {}, names)

    swap = np.arange(20)
    swap[[5, 6]] = [6, 5]  # two near-equal detections in the other order
    _, diffs = run(boxes[:, swap], scores[:, swap])
    assert all(d.ok for d in diffs.values()) and diffs['boxes'].reordered_rows == 2
    cut_boxes, cut_scores = boxes.copy(), scores.copy()
    cut_boxes[0, 19] = [1, 2, 3, 4]  # the other runtime kept another detection as its last
    cut_scores[0, 19] += 1e-6
    _, diffs = run(cut_boxes, cut_scores)
    assert all(d.ok for d in diffs.values()) and diffs['boxes'].crossed_rows == 1
    wrong = boxes.copy()
    wrong[0, 3] += 5.0  # a detection in the middle moved: a real difference
    samples, diffs = run(wrong, scores)
    assert not diffs['boxes'].ok and diffs['scores'].ok
    message = failure_message(diffs, {'boxes': 'boxes'}, samples)
    assert 'boxes: max abs 5' in message and '--tolerance NAME=ATOL' in message
    # Compared element by element (not as detections), a reorder fails and the hint says so.
    samples = [({'boxes': boxes}, {'boxes': boxes[:, swap]})]
    diffs = compare_outputs(samples, ['boxes'], (1e-3, 1e-3), {}, [])
    assert not diffs['boxes'].ok
    assert '--order-free boxes' in failure_message(diffs, {}, samples)
