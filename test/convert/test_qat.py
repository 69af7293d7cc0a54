"""Quantization-aware training end to end on CPU: examples/qat_detector.py, then every runtime.

The example runs in build/qat-env (tf-keras 2.21 + TFMOT 0.8.1 over the venv's TensorFlow;
tools/setup_qat_env.sh, which `make test` runs first): it labels 16 real vtest frames with the
default person model, trains a small tf_keras detector a few steps, wraps it with
``qat.quantize_model`` (symmetric INT8 Q/DQ), calibrates, fine-tunes and exports; with
``--tfmot`` also TFMOT's own ``quantize_model``. Then, in this (main) environment:

- `tx2-convert onnx` on the QAT SavedModel keeps the Q/DQ (INT8, zero point 0, per-channel
  weights per output channel), checks ONNX Runtime against the TF fake-quant graph on the real
  frames to atol 0.05 + rtol 1e-3 (a rounding flip at a .5 boundary moves nearby outputs by a
  few hundredths; 99 % differ by < 1e-3), and the model is "explicit INT8 ready";
- `fold-qdq` gives an FP32 model without Q/DQ whose outputs match the Q/DQ model's;
- `evaluate` puts TF FP32, PTQ INT8, QAT INT8 and folded QAT side by side on the frames;
- the TFMOT model converts to TFLite and ONNX (UINT8 Q/DQ, zero point != 0, no weight Q/DQ)
  and runs there; `engine` refuses it for TensorRT with those reasons;
- a Keras 3 model is refused by the wrapper, saying why.
"""

import json
import os
import subprocess

from boxes import ROOT
import numpy as np
import pytest

from tx2_inference.convert.cli import main

VTEST = os.path.join(ROOT, 'test', 'data', 'vtest')
QAT_ENV = os.path.join(ROOT, 'build', 'qat-env')
QAT_PYTHON = os.path.join(QAT_ENV, 'bin', 'python')
EXAMPLE = os.path.join(ROOT, 'examples', 'qat_detector.py')
#: ONNX Runtime against the TF fake-quant graph: what `tx2-convert onnx` holds a QAT model to
#: (tf_onnx.QDQ_ATOL: a rare activation at a .5 rounding boundary lands one INT8 step apart).
ATOL, RTOL = 0.05, 1e-3


def qat_env():
    """Make (or find) build/qat-env; skip with the reason if it cannot be made."""
    proc = subprocess.run([os.path.join(ROOT, 'tools', 'setup_qat_env.sh')],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=600)
    if proc.returncode != 0:
        pytest.skip('build/qat-env cannot be made here: ' + proc.stdout.strip()[-500:])
    return QAT_PYTHON


def env():
    e = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL='2')
    e.setdefault('HOME', '/tmp')
    return e


@pytest.fixture(scope='module')
def example(tmp_path_factory):
    python = qat_env()
    out = str(tmp_path_factory.mktemp('qat'))
    proc = subprocess.run([python, EXAMPLE, '--frames', VTEST, '--out', out, '--steps', '20',
                           '--qat-steps', '5', '--tfmot'], env=env(), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, timeout=280)
    assert proc.returncode == 0, proc.stdout[-3000:]
    with open(os.path.join(out, 'example.json')) as f:
        record = json.load(f)
    with open(os.path.join(out, 'onnx_args.txt')) as f:
        record['onnx_args'] = f.read().split()
    record['out'] = out
    return record


@pytest.fixture(scope='module')
def qat_onnx(example):
    from tx2_inference.convert.workstation import tf_onnx
    path = os.path.join(example['out'], 'qat.onnx')
    assert main(['onnx', os.path.join(example['out'], 'qat_savedmodel'), '-o', path,
                 '--validate-images', VTEST] + example['onnx_args']) == 0  # default tolerance
    with open(path[:-5] + '.yaml') as f:
        assert 'boxes_scores' in f.read()
    return path, tf_onnx


def test_example_trains_quantizes_and_exports(example):
    assert example['frames'] == 16 and example['teacher_boxes'] >= 16
    assert example['fp32_loss'][1] < example['fp32_loss'][0]  # it learns
    assert len(example['wrapped_layers']) == 8  # stem, 3 x (depthwise, pointwise), head
    for name in ('fp32_savedmodel', 'qat_savedmodel', 'tfmot_savedmodel'):
        assert os.path.isfile(os.path.join(example['out'], name, 'saved_model.pb'))


def test_qat_onnx_matches_tf_fake_quant_and_is_tensorrt_ready(qat_onnx):
    import onnx
    from onnx import numpy_helper

    from tx2_inference.backends.tensorrt import qdq
    path, _ = qat_onnx
    model = onnx.load(path)
    verdict = qdq.readiness(model)
    assert verdict.ready, verdict.summary()
    assert verdict.weighted == verdict.weighted_int8 == 8 and verdict.opset >= 13
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    q_nodes = [n for n in model.graph.node if n.op_type == 'QuantizeLinear']
    assert len(q_nodes) == 16  # each wrapped layer: its input and its weights
    weight_q = [n for n in q_nodes if n.input[0] in inits]
    assert len(weight_q) == 8
    for n in q_nodes:
        assert inits[n.input[2]].dtype == np.int8 and not inits[n.input[2]].any()
    for n in weight_q:  # per-channel: one scale per output channel of the weight
        axis = [a.i for a in n.attribute if a.name == 'axis'][0]
        assert inits[n.input[1]].shape == (inits[n.input[0]].shape[axis],)
    # Conv weights in ONNX layout: axis 0 (depthwise kernels keep TF's layout, a Transpose
    # follows their DQ, which TensorRT commutes)
    assert sum(inits[n.input[0]].ndim == 4 and n.attribute[0].i == 0 for n in weight_q) >= 4
    # ORT vs TF fake-quant on the real frames, checked by `tx2-convert onnx` itself
    _, tf_onnx = qat_onnx
    out = path[:-5] + '_again.onnx'
    result = tf_onnx.convert(os.path.join(os.path.dirname(path), 'qat_savedmodel'), out,
                             validate_images=VTEST, input_cfg={'scale': 1 / 255.0})
    assert set(result.diffs) == {'boxes', 'scores'}
    for d in result.diffs.values():
        assert d['max_abs'] <= ATOL + RTOL, result.diffs
    assert result.qdq is not None and result.qdq.ready and tf_onnx.QDQ_ATOL == ATOL


def test_fold_matches_the_qdq_model_and_evaluate_side_by_side(example, qat_onnx, tmp_path):
    from tx2_inference.backends.tensorrt import qdq
    from tx2_inference.convert import config as cfgmod
    from tx2_inference.convert import fold_qdq
    from tx2_inference.convert.quantize import calibration_feeds
    path, _ = qat_onnx
    folded = str(tmp_path / 'qat_folded.onnx')
    assert main(['fold-qdq', path, '-o', folded, '--images', VTEST]) == 0
    assert qdq.count_qdq(folded) == (0, 0)
    feeds = calibration_feeds(path, VTEST, cfgmod.load(path[:-5] + '.yaml'), 16)
    diffs = fold_qdq.compare(path, folded, feeds)
    # only the activations' rounding differs: small on average, a few hundredths at most
    for d in diffs.values():
        assert d['mean_abs'] < 0.005 and d['max_abs'] < 0.1, diffs
    fp32 = str(tmp_path / 'fp32.onnx')
    saved = os.path.join(example['out'], 'fp32_savedmodel')
    assert main(['onnx', saved, '-o', fp32] + example['onnx_args']) == 0
    ptq = str(tmp_path / 'ptq.onnx')
    assert main(['quantize', fp32, '-o', ptq, '--calib-images', VTEST, '--no-measure']) == 0
    out = tmp_path / 'eval'
    assert main(['evaluate', '--footage', VTEST, '--tf', saved, '--tf-config', path[:-5] + '.yaml',
                 '--onnx', 'PTQ INT8=' + ptq, '--onnx', 'QAT INT8=' + path,
                 '--onnx', 'QAT folded=' + folded, '--out', str(out)]) == 0
    report = json.loads((out / 'summary.json').read_text())
    assert [m['name'] for m in report['models']] == [
        'TensorFlow (original)', 'PTQ INT8', 'QAT INT8', 'QAT folded']
    assert all(m['ms_median'] > 0 for m in report['models'])


def test_tfmot_model_runs_on_tflite_and_ort_and_is_refused_for_tensorrt(example, tmp_path,
                                                                       capsys):
    from tx2_inference.backends.tensorrt import qdq
    saved = os.path.join(example['out'], 'tfmot_savedmodel')
    onnx_path = str(tmp_path / 'tfmot.onnx')
    # TFMOT's asymmetric activations convert to UINT8 Q/DQ; ORT runs them (checked vs TF)
    assert main(['onnx', saved, '-o', onnx_path, '--decoder', 'generic', '--validate-images',
                 VTEST, '--scale', str(1 / 255.0), '--atol', '0.2']) in (0, 3)
    verdict = qdq.readiness(onnx_path)
    assert verdict.has_qdq and not verdict.ready
    text = ' '.join(verdict.reasons)
    assert 'non-zero zero points' in text and 'UINT8' in text
    assert 'no weighted layer has Q/DQ on both its input and its weights' in text
    capsys.readouterr()
    assert main(['engine', onnx_path]) == 2
    err = capsys.readouterr().err
    assert 'TensorRT only supports symmetric quantization' in err and 'fold-qdq' in err
    lite = str(tmp_path / 'tfmot.tflite')
    assert main(['tflite', saved, '-o', lite, '--precision', 'int8', '--calib-images', VTEST,
                 '--scale', str(1 / 255.0), '--decoder', 'generic']) in (0, 3)
    from tx2_inference.backends.tflite_backend import _interpreter_class
    interp = _interpreter_class()(model_path=lite)
    interp.allocate_tensors()
    kinds = [d['dtype'] for d in interp.get_tensor_details()]
    assert kinds.count(np.int8) >= 8  # TFLite runs TFMOT's INT8 kernels


def test_keras3_model_is_refused_with_the_reason():
    python = qat_env()
    code = ('import keras\n'
            'from tx2_inference.convert.workstation import qat\n'
            'm = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])\n'
            'try:\n    qat.quantize_model(m)\nexcept Exception as e:\n    print(e)\n')
    proc = subprocess.run([python, '-c', code], env=env(), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, timeout=120)
    assert 'is a Keras 3 model' in proc.stdout and 'tf_keras' in proc.stdout, proc.stdout
