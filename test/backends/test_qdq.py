"""Q/DQ models on the robot's side: the explicit-INT8 verdict and the fold to FP32 weights.

Small real ONNX models built with onnx.helper in the three arrangements real converters write,
run in ONNX Runtime (runs under the robot's Python 3.6 too: onnx and numpy only):

- tf2onnx's QAT form: a float weight -> QuantizeLinear -> DequantizeLinear (per channel) ->
  Conv, the activation's Q -> Transpose -> DQ (tf2onnx moves transposes between them);
- ONNX Runtime's PTQ form: an INT8 weight initializer -> DequantizeLinear;
- TFMOT's form: UINT8 activations with a non-zero zero point, no weight Q/DQ.

The folded model must compute exactly what the Q/DQ model computes with its activations left
in float (checked against the same model with the activation pair removed by hand), and the
verdicts must name what TensorRT would refuse.
"""

import numpy as np
import pytest

onnx = pytest.importorskip('onnx')
ort = pytest.importorskip('onnxruntime')
from onnx import helper, numpy_helper, TensorProto  # noqa: E402

from tx2_inference.backends.tensorrt import qdq  # noqa: E402
from tx2_inference.errors import UserError  # noqa: E402

RNG = np.random.RandomState(0)
W = RNG.uniform(-1, 1, (4, 3, 3, 3)).astype(np.float32)  # Conv weight, ONNX layout
B = RNG.uniform(-0.1, 0.1, 4).astype(np.float32)
W_SCALE = (np.abs(W).reshape(4, -1).max(1) / 127.0).astype(np.float32)
X_SCALE = np.float32(2.0 / 127.0)


def _init(name, value):
    return numpy_helper.from_array(np.asarray(value), name)


def build(form, activation_qdq=True, weight=W):
    """Return a Conv model with input x [1, 3, 8, 8] (NHWC transposed in) -> y [1, 4, 8, 8]."""
    inits = [_init('b', B)]
    nodes = []
    x = 'x_nchw'
    if activation_qdq:
        if form == 'tfmot':
            inits += [_init('xs', np.float32(4.0 / 255)), _init('xz', np.uint8(127))]
        else:
            inits += [_init('xs', X_SCALE), _init('xz', np.int8(0))]
        # tf2onnx's order: Q, then a Transpose, then DQ
        nodes.append(helper.make_node('QuantizeLinear', ['x', 'xs', 'xz'], ['xq'], name='q_x'))
        nodes.append(helper.make_node('Transpose', ['xq'], ['xq_t'], perm=[0, 3, 1, 2]))
        nodes.append(helper.make_node('DequantizeLinear', ['xq_t', 'xs', 'xz'], [x],
                                      name='dq_x'))
    else:
        nodes.append(helper.make_node('Transpose', ['x'], ['x_t'], perm=[0, 3, 1, 2]))
        x = 'x_t'
    if form == 'tf2onnx':
        inits += [_init('w', W), _init('ws', W_SCALE), _init('wz', np.zeros(4, np.int8))]
        nodes.append(helper.make_node('QuantizeLinear', ['w', 'ws', 'wz'], ['wq'], axis=0))
        nodes.append(helper.make_node('DequantizeLinear', ['wq', 'ws', 'wz'], ['w_dq'], axis=0))
        weight = 'w_dq'
    elif form == 'ort':
        w8 = np.clip(np.rint(W / W_SCALE[:, None, None, None]), -127, 127).astype(np.int8)
        inits += [_init('w8', w8), _init('ws', W_SCALE), _init('wz', np.zeros(4, np.int8))]
        nodes.append(helper.make_node('DequantizeLinear', ['w8', 'ws', 'wz'], ['w_dq'], axis=0))
        weight = 'w_dq'
    else:  # tfmot: the weight fake-quant folded away by TF
        inits.append(_init('w', weight))
        weight = 'w'
    nodes.append(helper.make_node('Conv', [x, weight, 'b'], ['y'], pads=[1, 1, 1, 1],
                                  name='conv'))
    graph = helper.make_graph(
        nodes, 'g',
        [helper.make_tensor_value_info('x', TensorProto.FLOAT, [1, 8, 8, 3])],
        [helper.make_tensor_value_info('y', TensorProto.FLOAT, [1, 4, 8, 8])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 13)])
    model.ir_version = 7  # what ONNX Runtime 1.10 (the robot's) reads
    onnx.checker.check_model(model)
    return model


def run(model, x):
    sess = ort.InferenceSession(model.SerializeToString(), providers=['CPUExecutionProvider'])
    return sess.run(None, {'x': x})[0]


@pytest.mark.parametrize('form', ['tf2onnx', 'ort'])
def test_fold_equals_the_qdq_model_with_float_activations(form):
    model = build(form)
    folded = qdq.fold(model)
    assert qdq.count_qdq(folded) == (0, 0) and qdq.count_qdq(model) != (0, 0)
    x = RNG.uniform(-1, 1, (1, 8, 8, 3)).astype(np.float32)
    # the INT8 grid's weights in float, activations unquantized: what the fold must compute
    w_grid = np.rint(W / W_SCALE[:, None, None, None]) * W_SCALE[:, None, None, None]
    want = run(build('tfmot', activation_qdq=False, weight=w_grid.astype(np.float32)), x)
    np.testing.assert_allclose(run(folded, x), want, atol=1e-6)
    # the weights are on their INT8 grid: not the float weights
    plain = run(build('tfmot', activation_qdq=False), x)
    assert np.abs(want - plain).max() > 1e-4
    # and the Q/DQ model differs from it only by the activation rounding (step 2/127)
    assert np.abs(run(model, x) - want).max() < 0.3


def test_readiness_of_each_form():
    for form in ('tf2onnx', 'ort'):
        verdict = qdq.readiness(build(form))
        assert verdict.ready, verdict.summary()
        assert verdict.weighted == verdict.weighted_int8 == 1
        assert verdict.summary().startswith('explicit INT8 ready')
    tfmot = qdq.readiness(build('tfmot'))
    assert not tfmot.ready and tfmot.refused
    text = ' '.join(tfmot.reasons)
    assert 'UINT8' in text and 'non-zero zero points' in text and 'NVIDIA/TensorRT#2774' in text
    assert tfmot.advisory and 'no weighted layer has Q/DQ' in tfmot.advisory[0]
    model = build('ort')
    model.opset_import[0].version = 10
    old = qdq.readiness(model)
    assert not old.ready and 'opset 10' in old.reasons[0]
    assert not qdq.readiness(build('tfmot', activation_qdq=False)).has_qdq


def test_fold_refuses_what_has_no_float_meaning():
    model = build('tf2onnx')
    graph = model.graph
    # a QuantizeLinear whose INT8 output is the graph's answer
    graph.output.append(helper.make_tensor_value_info('xq', TensorProto.INT8, None))
    with pytest.raises(UserError, match='graph output'):
        qdq.fold(model)
    with pytest.raises(UserError, match='Cannot read'):
        qdq.readiness('/nonexistent/model.onnx')
