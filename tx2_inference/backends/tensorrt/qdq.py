"""Q/DQ (explicitly quantized) ONNX models: TensorRT readiness, and the fold to FP32 weights.

A QAT or PTQ model carries QuantizeLinear/DequantizeLinear pairs. TensorRT (>= 8.0) builds such
a model as *explicit* INT8, and only in one form (TensorRT developer guide, "Explicit
Quantization"; onnx-tensorrt's QuantizeLinear/DequantizeLinear importers):

- symmetric: every zero point 0, INT8 (not UINT8: "TRT only supports symmetric quantization",
  NVIDIA/TensorRT#2774);
- opset >= 13 for per-channel (per-axis) scales, which weights want on their output-channel
  axis (0 for Conv/Gemm weights, 1 for ConvTranspose);
- Q/DQ on the weights of each Conv/Gemm/MatMul as well as on its data input: a layer without
  weight Q/DQ is not fused into an INT8 kernel and runs in higher precision.

:func:`readiness` says whether a model is "explicit INT8 ready" and, if not, why. Devices
without fast INT8 (Tegra X2, sm_62) build no INT8 at all: :func:`fold` replaces every pair by
what it means in floating point (weights fake-quantized once, activations left unquantized),
giving an FP32 model to build as FP16 (``tx2-convert fold-qdq``).

Runs on the robot: needs only ``onnx`` and numpy, imported when called (Python 3.6).
"""

from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from tx2_inference.errors import UserError

QUANT = 'QuantizeLinear'
DEQUANT = 'DequantizeLinear'
#: Layers TensorRT runs in INT8 when both their data and weight inputs come through Q/DQ.
WEIGHTED = {'Conv': 1, 'ConvTranspose': 1, 'Gemm': 1, 'MatMul': 1}
#: The weight's output-channel axis TensorRT expects per-channel scales on.
WEIGHT_AXIS = {'Conv': 0, 'ConvTranspose': 1, 'Gemm': 0, 'MatMul': 1}
MIN_OPSET = 13
#: Ops that only move data: Q/DQ commute with them (tf2onnx puts Transposes between).
SHAPE_OPS = ('Transpose', 'Reshape', 'Squeeze', 'Unsqueeze', 'Identity', 'Flatten')


class Readiness(object):
    """The verdict of :func:`readiness`: ``ready``, ``reasons`` (why not) and counts."""

    def __init__(self) -> None:
        """Start with no Q/DQ seen and no reason."""
        self.opset = 0
        self.quantize = 0
        self.dequantize = 0
        self.weighted = 0
        self.weighted_int8 = 0
        self.reasons = []  # type: List[str]
        #: The reasons TensorRT still builds with (those layers run in FP16/FP32): advisory.
        self.advisory = []  # type: List[str]

    @property
    def has_qdq(self) -> bool:
        """Return True if the model has any Q/DQ node."""
        return bool(self.quantize or self.dequantize)

    @property
    def refused(self) -> List[str]:
        """Return the reasons TensorRT's parser refuses the model for (not advisory)."""
        return [r for r in self.reasons if r not in self.advisory]

    @property
    def ready(self) -> bool:
        """Return True if TensorRT can build the model as explicit INT8 as it is."""
        return self.has_qdq and not self.reasons

    def summary(self) -> str:
        """Return one line: the verdict, then the reasons."""
        if not self.has_qdq:
            return 'no Q/DQ nodes: not an explicitly quantized model (implicit INT8 needs ' \
                   'calibration images; FP16 needs nothing)'
        head = '{} QuantizeLinear, {} DequantizeLinear, opset {}; {} of {} weighted layers ' \
               'with Q/DQ on data and weights'.format(self.quantize, self.dequantize,
                                                      self.opset, self.weighted_int8,
                                                      self.weighted)
        if self.ready:
            return 'explicit INT8 ready: ' + head
        return 'not explicit INT8 ready: {}. ({})'.format('; '.join(self.reasons), head)

    def as_dict(self) -> Dict[str, Any]:
        """Return the verdict as JSON-ready data."""
        return {'ready': self.ready, 'reasons': list(self.reasons), 'opset': self.opset,
                'quantize': self.quantize, 'dequantize': self.dequantize,
                'weighted_layers': self.weighted, 'weighted_layers_int8': self.weighted_int8}


def _load(model: Any) -> Any:
    """Return a ModelProto from a path or a ModelProto."""
    import onnx
    if isinstance(model, str):
        try:
            return onnx.load(model)
        except Exception as e:  # DecodeError, OSError: say which file
            raise UserError('Cannot read {!r} as an ONNX model: {}'.format(
                model, str(e).splitlines()[0] if str(e) else type(e).__name__)) from None
    return model


def _opset(model: Any) -> int:
    for imp in model.opset_import:
        if imp.domain in ('', 'ai.onnx'):
            return int(imp.version)
    return 0


def _constants(graph: Any) -> Dict[str, np.ndarray]:
    """Return the initializers and Constant-node values of ``graph`` by output name."""
    from onnx import numpy_helper
    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == 'Constant' and node.attribute:
            for attr in node.attribute:
                if attr.name == 'value':
                    values[node.output[0]] = numpy_helper.to_array(attr.t)
    return values


def count_qdq(model: Any) -> Tuple[int, int]:
    """Return (QuantizeLinear, DequantizeLinear) node counts of a model (path or proto)."""
    graph = _load(model).graph
    return (sum(n.op_type == QUANT for n in graph.node),
            sum(n.op_type == DEQUANT for n in graph.node))


def readiness(model: Any) -> Readiness:
    """Say whether TensorRT can build ``model`` (path or ModelProto) as explicit INT8."""
    model = _load(model)
    graph = model.graph
    consts = _constants(graph)
    producer = {o: n for n in graph.node for o in n.output}
    r = Readiness()
    r.opset = _opset(model)
    r.quantize, r.dequantize = count_qdq(model)
    if not r.has_qdq:
        return r
    if r.opset < MIN_OPSET:
        r.reasons.append('opset {} < {}: per-channel weight scales need opset 13 (convert '
                         'with --opset 13)'.format(r.opset, MIN_OPSET))
    nonzero, unsigned = [], []  # type: List[str], List[str]
    for node in graph.node:
        if node.op_type not in (QUANT, DEQUANT):
            continue
        zp = consts.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if zp is not None and zp.dtype == np.uint8:
            unsigned.append(node.name or node.output[0])
        if zp is not None and np.any(zp.astype(np.int64) != 0):
            nonzero.append(node.name or node.output[0])
    int32 = [n.name or n.output[0] for n in graph.node if n.op_type == DEQUANT and
             n.input[0] in consts and consts[n.input[0]].dtype == np.int32]
    if int32:
        r.reasons.append('{} DequantizeLinear nodes read INT32 constants (quantized biases, '
                         'e.g. {}): TensorRT dequantizes INT8 only and wants float biases '
                         '(tx2-convert quantize leaves biases in float)'.format(
                             len(int32), int32[0]))
    if unsigned:
        r.reasons.append('{} Q/DQ nodes are UINT8 (e.g. {}): TensorRT takes INT8 only'.format(
            len(unsigned), unsigned[0]))
    if nonzero:
        r.reasons.append('{} Q/DQ nodes have non-zero zero points (e.g. {}): TensorRT only '
                         'supports symmetric quantization (NVIDIA/TensorRT#2774); quantize '
                         'symmetric (tx2_inference qat recipe, or tx2-convert quantize '
                         '--format qdq)'.format(len(nonzero), nonzero[0]))
    qops = sorted({n.op_type for n in graph.node if n.op_type.startswith('QLinear') or
                   n.op_type in ('ConvInteger', 'MatMulInteger')})
    if qops:
        r.reasons.append('QOperator nodes ({}) have no TensorRT importer: quantize with '
                         '--format qdq for TensorRT'.format(', '.join(qops)))
    bare = []  # type: List[str]
    for node in graph.node:
        if node.op_type not in WEIGHTED or len(node.input) < 2:
            continue
        weight, dq_w = _through_shape_ops(node.input[1], producer)
        const_weight = weight in consts or (dq_w is not None and dq_w.op_type == DEQUANT)
        if not const_weight:
            continue  # MatMul of two activations: not a weighted layer
        r.weighted += 1
        _, dq_x = _through_shape_ops(node.input[0], producer)
        if dq_w is not None and dq_w.op_type == DEQUANT and dq_x is not None and \
                dq_x.op_type == DEQUANT:
            r.weighted_int8 += 1
        else:
            bare.append(node.name or node.output[0])
    if r.weighted and not r.weighted_int8:
        r.advisory.append('no weighted layer has Q/DQ on both its input and its weights (e.g. '
                         '{}): TensorRT would run them in FP16/FP32, so the model is not INT8 '
                         '(TFMOT folds weight fake-quant away; use the symmetric QAT recipe, '
                         'tx2_inference.convert.workstation.qat)'.format(bare[0]))
    elif bare:
        r.advisory.append('{} of {} weighted layers lack Q/DQ on their input or weights (e.g. '
                         '{}): they run in higher precision'.format(len(bare), r.weighted,
                                                                    bare[0]))
    r.reasons += r.advisory
    return r


def _scale_and_zero_point(scale: np.ndarray, zp: Optional[np.ndarray], ndim: int,
                          axis: int) -> Tuple[np.ndarray, np.ndarray]:
    """Return scale and zero point as float64, shaped to broadcast along ``axis``."""
    scale = np.asarray(scale, np.float64)
    zp = np.zeros_like(scale) if zp is None else np.asarray(zp, np.float64)
    if scale.ndim == 1 and ndim > 0:
        shape = [1] * ndim
        shape[axis] = -1
        scale, zp = scale.reshape(shape), zp.reshape(shape)
    return scale, zp


def _dequantized(q: np.ndarray, scale: np.ndarray, zp: Optional[np.ndarray],
                 axis: int) -> np.ndarray:
    """Return DequantizeLinear(q, scale, zp) along ``axis`` as float32."""
    scale, zpf = _scale_and_zero_point(scale, zp, q.ndim, axis)
    return ((q.astype(np.float64) - zpf) * scale).astype(np.float32)


def _quantized(x: np.ndarray, scale: np.ndarray, zp: Optional[np.ndarray], axis: int,
               dtype: Any) -> np.ndarray:
    """Return QuantizeLinear(x, scale, zp) along ``axis``: round half to even, saturate."""
    scale, zpf = _scale_and_zero_point(scale, zp, x.ndim, axis)
    info = np.iinfo(dtype)
    return np.clip(np.rint(x.astype(np.float64) / scale) + zpf, info.min, info.max).astype(dtype)


def _axis(node: Any, rank: int) -> int:
    for attr in node.attribute:
        if attr.name == 'axis':
            return int(attr.i) % max(rank, 1)
    return 1 % max(rank, 1)


def _through_shape_ops(name: str, producer: Dict[str, Any]) -> Tuple[str, Optional[Any]]:
    """Follow ``name`` up through shape-only ops; return (tensor, its producing node)."""
    node = producer.get(name)
    while node is not None and node.op_type in SHAPE_OPS and node.input:
        name = node.input[0]
        node = producer.get(name)
    return name, node


def fold(model: Any) -> Any:
    """Return a copy of ``model`` without Q/DQ: weights fake-quantized, activations in float.

    - ``DequantizeLinear`` of a constant (ORT's INT8 weights) becomes the float constant;
    - ``QuantizeLinear`` of a constant (tf2onnx's QAT weights) becomes the constant rounded to
      its INT8 grid (quantized and dequantized with its scale), its ``DequantizeLinear`` goes:
      the weights equal what the Q/DQ model computes;
    - on an activation both go (shape-only ops between them, such as the Transpose tf2onnx
      puts there, then carry the float tensor).

    :raises UserError: a Q/DQ node in another arrangement (e.g. a QuantizeLinear feeding an
        integer op or a graph output), which has no float equivalent.
    """
    import copy

    import onnx
    from onnx import helper, numpy_helper
    model = copy.deepcopy(_load(model))
    graph = model.graph
    consts = _constants(graph)
    producer = {o: n for n in graph.node for o in n.output}
    outputs = {o.name for o in graph.output}
    rename = {}  # type: Dict[str, str]
    drop, new_init, identities = set(), [], []  # type: ignore
    for node in graph.node:
        if node.op_type not in (QUANT, DEQUANT):
            continue
        if len(node.input) < 2 or node.input[1] not in consts:
            raise UserError('{} {!r} has a computed scale; fold-qdq folds constant scales '
                            'only.'.format(node.op_type, node.name))
        scale = consts[node.input[1]]
        zp = consts.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        src = node.input[0]
        drop.add(id(node))
        if node.op_type == QUANT:
            if node.output[0] in outputs:
                raise UserError('QuantizeLinear {!r} is a graph output: the model answers in '
                                'integers there and has no float equivalent.'.format(node.name))
            if src in consts:  # a weight: its INT8 grid, in float
                value = consts[src]
                ax = _axis(node, value.ndim)
                dtype = zp.dtype if zp is not None else np.uint8
                folded = _dequantized(_quantized(value, scale, zp, ax, dtype), scale, zp, ax)
                new_init.append(numpy_helper.from_array(folded, node.output[0]))
            else:
                rename[node.output[0]] = src
            continue
        if src in consts:  # an INT8 constant: the weight itself
            new_init.append(numpy_helper.from_array(
                _dequantized(consts[src], scale, zp, _axis(node, consts[src].ndim)),
                node.output[0]))
            continue
        _, origin = _through_shape_ops(src, producer)
        if origin is None or origin.op_type != QUANT:
            raise UserError('DequantizeLinear {!r} reads {!r}, which comes from neither a '
                            'constant nor a QuantizeLinear: fold-qdq cannot give it a float '
                            'meaning.'.format(node.name, src))
        if node.output[0] in outputs:
            identities.append(helper.make_node('Identity', [src], [node.output[0]],
                                               name=(node.name or node.output[0]) + '_fold'))
        else:
            rename[node.output[0]] = src
    kept = [n for n in graph.node if id(n) not in drop]
    for n in kept + identities:
        for k, name in enumerate(n.input):
            while name in rename:
                name = rename[name]
            n.input[k] = name
    del graph.node[:]
    graph.node.extend(kept + identities)
    graph.initializer.extend(new_init)
    del graph.value_info[:]  # tensors between a Q and its DQ are float now: let ORT infer
    used = {i for n in graph.node for i in n.input} | outputs
    keep_init = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep_init)
    keep_const = [n for n in graph.node if n.op_type != 'Constant' or n.output[0] in used]
    del graph.node[:]
    graph.node.extend(keep_const)
    _toposort(graph)
    onnx.checker.check_model(model)
    return model


def _toposort(graph: Any) -> None:
    """Order ``graph.node`` so that every node follows the producers of its inputs."""
    known = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {''}
    pending = list(graph.node)
    ordered = []
    while pending:
        rest = []
        for n in pending:
            if all(i in known for i in n.input):
                ordered.append(n)
                known.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(pending):
            ordered += rest  # a cycle or a subgraph reference: leave the rest as it was
            break
        pending = rest
    del graph.node[:]
    graph.node.extend(ordered)
