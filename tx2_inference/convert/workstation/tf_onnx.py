"""Workstation only: TensorFlow SavedModel / frozen GraphDef -> ONNX through tf2onnx.

Steps, each failing with one clear :class:`UserError`: resolve inputs/outputs (a signature or
named tensors for a graph cut), convert with tf2onnx (fixed input shapes, opset), fold
constants with onnx-graphsurgeon, check the model, compare it with TensorFlow on sample
images, and only then move it into place (no partial output file on any failure).

``batch`` (``--batch N`` or ``dynamic``, issue 16) sets the inputs' first dimension before
conversion: N frames per inference (validated against TensorFlow at batch N), or a free batch,
then checked by running two frames at once against each frame alone; a graph that fixes its
batch inside (a Reshape to batch 1, a loop over the batch) fails that check with what to do.
"""

import logging
import re
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from tx2_inference.convert.workstation.tf_runner import (
    _tf,
    load_graph,
    node_ops,
    reference_kernels_note,
    signature,
    source_kind,
    TFRunner,
)
from tx2_inference.core import images as imgs
from tx2_inference.core.fileio import atomic_path
from tx2_inference.errors import ModelError, UserError

LOG = logging.getLogger('tx2_inference.convert')

_SPEC = re.compile(r'^(?P<name>[^\[\]]+?)(\[(?P<shape>[-0-9, ?]*)\])?$')


def parse_tensor_specs(text: Optional[str]) -> List[Tuple[str, Optional[List[int]]]]:
    """Parse ``'a:0[1,300,300,3],b:0'`` into [(name, shape or None)].

    :raises UserError: on a malformed item.
    """
    if not text:
        return []
    items, depth, cur = [], 0, ''
    for ch in text:
        depth += ch == '['
        depth -= ch == ']'
        if ch == ',' and depth == 0:
            items.append(cur)
            cur = ''
        else:
            cur += ch
    items.append(cur)
    out = []
    for item in (i.strip() for i in items if i.strip()):
        m = _SPEC.match(item)
        if not m:
            raise UserError('Cannot parse tensor {!r}: write name:0 or name:0[1,300,300,3].'
                            .format(item))
        name = m.group('name').strip()
        if ':' not in name:
            name += ':0'
        shape = None
        if m.group('shape') is not None:
            try:
                shape = [int(d) if d.strip() not in ('?', '') else -1
                         for d in m.group('shape').split(',')]
            except ValueError:
                raise UserError('Cannot parse the shape of {!r}: write integers, e.g. '
                                '[1,300,300,3].'.format(item)) from None
        out.append((name, shape))
    return out


class OnnxResult(object):
    """What :func:`convert` produced: paths, tensor names and the TF comparison."""

    def __init__(self) -> None:
        """Start empty."""
        self.onnx_path = ''
        self.inputs = []  # type: List[Tuple[str, List[int], str]]  (onnx name, shape, dtype)
        self.outputs = []  # type: List[str]  onnx output names
        self.output_info = []  # type: list  (TensorInfo of each onnx output)
        self.tf_inputs = []  # type: List[str]
        self.tf_outputs = []  # type: List[str]
        self.rename = {}  # type: Dict[str, str]  TF graph name -> onnx name
        self.diffs = {}  # type: Dict[str, Dict[str, float]]  by onnx output name
        self.seconds = 0.0
        self.qdq = None  # type: Optional[object]  (a fake-quant model: its qdq.Readiness)

    def onnx_name(self, name: str) -> Optional[str]:
        """Return the ONNX output name of ``name`` (an ONNX name, or the TF graph's)."""
        if name in self.outputs:
            return name
        for candidate in (name, name if ':' in name else name + ':0'):
            if self.rename.get(candidate) in self.outputs:
                return self.rename[candidate]
        return None


def _resolve(source: str, kind: str, tag: str, sig_name: str, inputs_text: Optional[str],
             outputs_text: Optional[str]):
    """Return (input specs, output names, rename map tf->onnx) checked against the graph."""
    specs = parse_tensor_specs(inputs_text)
    outs = [n for n, _ in parse_tensor_specs(outputs_text)]
    rename = {}  # type: Dict[str, str]
    if kind == 'saved_model' and (not specs or not outs):
        sig = signature(source, tag, sig_name)
        if not specs:
            specs = [(t[0], None) for t in sig.inputs.values()]
            rename.update({t[0]: k for k, t in sig.inputs.items()})
        if not outs:
            outs = [t[0] for t in sig.outputs.values()]
            rename.update({t[0]: k for k, t in sig.outputs.items()})
    if kind == 'frozen_graph' and (not specs or not outs):
        raise UserError('A frozen graph has no signature: pass --inputs and --outputs (tensor '
                        'names, e.g. --inputs image_tensor:0[1,300,300,3]).')
    graph_def = load_graph(source, tag)  # parsed once for the names and the shapes
    ops = node_ops(graph_def)
    names = set(ops)
    missing = [n for n in [s[0] for s in specs] + outs if n.rsplit(':', 1)[0] not in names]
    if missing:
        hint = _close_names(missing[0].rsplit(':', 1)[0], names)
        raise UserError('Tensor {} not found in {!r}.{} List the graph with `tx2-convert onnx '
                        '--list-tensors MODEL`.'.format(', '.join(repr(m) for m in missing),
                                                        source, hint))
    _check_shapes(graph_def, specs)
    return specs, outs, rename, ops


def _check_shapes(graph_def, specs: List[Tuple[str, Optional[List[int]]]]) -> None:
    """Refuse a given input shape whose rank or fixed dims contradict the graph's placeholder."""
    placeholders = {n.name: n for n in graph_def.node if n.op == 'Placeholder'}
    for name, shape in specs:
        node = placeholders.get(name.rsplit(':', 1)[0])
        if shape is None or node is None or 'shape' not in node.attr:
            continue
        proto = node.attr['shape'].shape
        if proto.unknown_rank:
            continue
        dims = [int(d.size) for d in proto.dim]
        if len(dims) != len(shape) or any(g >= 0 and g != s for g, s in zip(dims, shape)):
            raise UserError('Shape mismatch for input {!r}: the graph has {} ({} = any), '
                            '--inputs gives {}. Give a shape of the same rank that keeps the '
                            'fixed dimensions.'.format(name, dims, -1, shape))


def _close_names(name: str, names: set) -> str:
    """Suggest graph node names close to ``name``."""
    import difflib
    close = difflib.get_close_matches(name, sorted(names), n=3, cutoff=0.6)
    return ' Did you mean {}?'.format(', '.join(c + ':0' for c in close)) if close else ''


def list_tensors(source: str, tag: str = 'serve', signature_name: str = 'serving_default',
                 pattern: str = '') -> List[str]:
    """Return the model's tensors with shapes, named as --inputs/--outputs and ONNX name them.

    A SavedModel's signature comes first: its keys are the converted model's input and output
    names (what the model config and the comparison name), beside the graph tensors they are.
    Then every tensor of the graph the converter reads (a SavedModel's functions inlined), as
    ``name:N  [shape]  dtype  (Op)``: the names ``--inputs`` and ``--outputs`` take, which a
    cut output keeps in the ONNX model. ``pattern``: only tensors whose name contains it.
    """
    tf = _tf()
    kind = source_kind(source)
    keys = {}  # type: Dict[str, str]  frozen graph tensor -> signature key (= ONNX name)
    if kind == 'saved_model':
        graph_def, tf_in, tf_out, _, keys = _load_frozen(source, kind, tag, signature_name,
                                                         [], [], {})
    else:
        graph_def, tf_in, tf_out = load_graph(source, tag), [], []
    graph = tf.Graph()
    with graph.as_default():
        tf.import_graph_def(graph_def, name='')

    def describe(tensor) -> str:
        dims = tensor.shape.as_list() if tensor.shape.rank is not None else None
        return '{}  {}'.format(dims, tensor.dtype.name)

    lines = []
    if kind == 'saved_model':
        lines.append('signature {!r} (its keys are the ONNX input and output names):'.format(
            signature_name))
        for role, names in (('input ', tf_in), ('output', tf_out)):
            for name in names:
                lines.append('  {} {}  {}  (graph tensor {})'.format(
                    role, keys.get(name, name), describe(graph.get_tensor_by_name(name)), name))
    lines.append('graph tensors{} (names for --inputs/--outputs):'.format(
        ' containing {!r}'.format(pattern) if pattern else ''))
    for op in graph.get_operations():
        for tensor in op.outputs:
            if pattern in tensor.name:
                lines.append('  {}  {}  ({})'.format(tensor.name, describe(tensor), op.type))
    return lines


_CONTROL_FLOW = {'Enter', 'Exit', 'Merge', 'Switch', 'NextIteration', 'LoopCond', 'Assert',
                 'TensorArrayV3', 'TensorArrayReadV3', 'TensorArrayWriteV3',
                 'TensorArrayGatherV3', 'TensorArrayScatterV3', 'TensorArraySizeV3',
                 'While', 'StatelessWhile'}


def _loop_scopes(graph_def) -> List[str]:
    """Return the name scopes of TF1/TF2 while loops in a graph (e.g. in-graph NMS)."""
    scopes = set()
    for n in graph_def.node:
        if n.op in ('LoopCond', 'While', 'StatelessWhile'):
            scopes.add(n.name.rsplit('/while', 1)[0] if '/while' in n.name else n.name)
    return sorted(scopes)


def _loop_hint(graph_def) -> str:
    """Say where the loops are and that cutting before them is the fix."""
    scopes = _loop_scopes(graph_def)
    if not scopes:
        return ''
    return (' The graph keeps control-flow loops ({}), which tf2onnx often converts wrongly or '
            "not at all (e.g. the Object Detection API's NMS): cut before them with --outputs "
            '(for TF1 detection models: Postprocessor/ExpandDims_1:0,'
            'Postprocessor/convert_scores:0).'.format(', '.join(scopes[:3])))


def _unsupported_ops(frozen_graph, opset: int) -> List[Tuple[str, str, List[str]]]:
    """Return (node, op, its inputs) for nodes tf2onnx has no handler for at ``opset``."""
    from tf2onnx.handler import tf_op
    known = set()
    for domain_ops in tf_op.get_opsets().values():
        for per_version in domain_ops:
            known.update(per_version.keys())
    skip = {'Placeholder', 'Const', 'Identity', 'NoOp', 'PlaceholderWithDefault'} | _CONTROL_FLOW
    return [(n.name, n.op, [i for i in n.input if not i.startswith('^')])
            for n in frozen_graph.node if n.op not in known and n.op not in skip]


def _load_frozen(source: str, kind: str, tag: str, sig_name: str, in_names: List[str],
                 outs: List[str], rename: Dict[str, str]):
    """Load and freeze the graph with tf2onnx's own loaders (as its CLI does)."""
    from tf2onnx import tf_loader
    if kind == 'saved_model':
        # Without --inputs/--outputs tf2onnx takes the signature itself (for a TF2 SavedModel
        # the tensor names inside its function differ from the signature's graph names).
        graph_def, inputs, outputs, tables, to_rename = tf_loader.from_saved_model(
            source, in_names or None, outs or None, tag, [sig_name], None, False,
            return_initialized_tables=True, return_tensors_to_rename=True)
        return graph_def, inputs, outputs, tables, to_rename
    graph_def, inputs, outputs = tf_loader.from_graphdef(source, in_names, outs)
    return graph_def, inputs, outputs, None, {}


def _tf2onnx(graph_def, name: str, inputs: List[str], outputs: List[str],
             shapes: Dict[str, List[int]], opset: int, tables, rename: Dict[str, str]):
    """Run tf2onnx's converter (the same call sequence as ``python -m tf2onnx.convert``)."""
    tf = _tf()
    from tf2onnx.convert import _convert_common
    with tf.device('/cpu:0'):
        model_proto, _ = _convert_common(
            graph_def, name=name, continue_on_error=False, opset=opset,
            shape_override=shapes or None, input_names=inputs, output_names=outputs,
            tensors_to_rename=rename, initialized_tables=tables)
    return model_proto


#: The TF check's default absolute tolerance.
ATOL = 1e-3
#: ... for a fake-quant (QAT) graph. TensorFlow's kernel and ONNX Runtime's QuantizeLinear
#: compute x / scale in different float steps: an activation within float error of a .5
#: boundary lands one INT8 step apart, and that moves nearby outputs by a few hundredths
#: (measured on examples/qat_detector.py, 32 vtest frames x 800 scores: mean |diff| 5e-5,
#: 99 % within 1e-3, max 0.032).
QDQ_ATOL = 0.05

#: TensorFlow's fake-quant ops: tf2onnx turns them into QuantizeLinear/DequantizeLinear.
FAKE_QUANT_OPS = ('QuantizeAndDequantizeV2', 'QuantizeAndDequantizeV3', 'QuantizeAndDequantizeV4',
                  'FakeQuantWithMinMaxVars', 'FakeQuantWithMinMaxVarsPerChannel',
                  'FakeQuantWithMinMaxArgs')


def fake_quant_ops(graph_def) -> Dict[str, int]:
    """Return the fake-quant ops of a (frozen) GraphDef and how many of each."""
    found = {}  # type: Dict[str, int]
    nodes = list(graph_def.node) + [n for f in graph_def.library.function for n in f.node_def]
    for node in nodes:
        if node.op in FAKE_QUANT_OPS:
            found[node.op] = found.get(node.op, 0) + 1
    return found


def fold_constants(model):
    """Fold constants and drop dead nodes (onnx-graphsurgeon, as polygraphy sanitize does).

    QuantizeLinear/DequantizeLinear are never folded: on constant weights they are the
    weights' INT8 form, which TensorRT's explicit quantization needs to see.
    """
    import onnx_graphsurgeon as gs
    graph = gs.import_onnx(model)
    graph.fold_constants(should_exclude_node=lambda node: node.op in (
        'QuantizeLinear', 'DequantizeLinear')).cleanup().toposort()
    folded = gs.export_onnx(graph)
    folded.ir_version = model.ir_version
    del folded.opset_import[:]
    folded.opset_import.extend(model.opset_import)
    return folded


def with_batch(specs: List[Tuple[str, Optional[List[int]]]], batch: Optional[str],
               graph_shapes: Dict[str, List[int]]) -> List[Tuple[str, Optional[List[int]]]]:
    """Return the input specs with their first dimension set to ``batch`` (N or dynamic: -1).

    :param graph_shapes: the graph's placeholder shapes, for inputs given without a shape.
    :raises UserError: a bad ``batch``, or an input whose shape is unknown.
    """
    if not batch:
        return specs
    if str(batch).lower() == 'dynamic':
        first = -1
    else:
        try:
            first = int(batch)
        except ValueError:
            first = 0
        if first < 1:
            raise UserError('--batch {!r}: give a number of frames (e.g. 4) or dynamic.'.format(
                batch))
    out = []
    for name, shape in specs:
        shape = list(shape) if shape else list(graph_shapes.get(name) or [])
        if not shape:
            raise UserError('--batch: the shape of input {!r} is unknown: give it with --inputs '
                            '{}[{},300,300,3].'.format(name, name, batch))
        out.append((name, [first] + shape[1:]))
    return out


def _placeholder_shapes(graph_def) -> Dict[str, List[int]]:
    """Return ``name:0`` -> shape (-1 where unknown) of the graph's placeholders."""
    shapes = {}
    for node in graph_def.node:
        if node.op == 'Placeholder' and 'shape' in node.attr and \
                not node.attr['shape'].shape.unknown_rank:
            shapes[node.name + ':0'] = [int(d.size) for d in node.attr['shape'].shape.dim]
    return shapes


def check_batches(onnx_path: str, feed: Dict[str, np.ndarray], atol: float,
                  rtol: float) -> None:
    """Run two frames at once on a dynamic-batch model; each row must equal its frame alone.

    :raises UserError: the model fails at batch 2 or mixes the frames, saying what to do.
    """
    import onnxruntime as ort
    sess = ort.InferenceSession(onnx_path, providers=['CPUExecutionProvider'])
    names = [i.name for i in sess.get_inputs()]
    singles = [dict(zip(names, feed.values()))]
    singles.append({n: v[::-1].copy() if v.ndim > 1 else v for n, v in singles[0].items()})
    pair = {n: np.concatenate([s[n] for s in singles]) for n in names}
    advice = ('convert with a fixed batch instead (--batch N, the number of cameras), or use '
              'batch_size 1')
    try:
        together = sess.run(None, pair)
        alone = [sess.run(None, s) for s in singles]
    except Exception as error:
        raise UserError('The converted graph does not run two frames at once: {}. A part of '
                        'it fixes the batch (e.g. a Reshape to batch 1, or a loop over the '
                        'batch); {}.'.format(str(error).splitlines()[0][:300], advice)) from None
    outputs = [o.name for o in sess.get_outputs()]
    for index, name in enumerate(outputs):
        for row in range(2):
            got, want = together[index], alone[row][index]
            if got.shape[:1] != (2,) or not np.allclose(got[row:row + 1], want, atol=atol,
                                                        rtol=rtol):
                raise UserError('Output {!r} of two frames at once is not each frame alone '
                                '(shape {} for batch 2, {} for batch 1): the graph mixes or '
                                'drops the batch; {}.'.format(name, list(got.shape),
                                                              list(want.shape), advice))


def sample_feed(runner: TFRunner, specs: List[Tuple[str, Optional[List[int]]]],
                images_dir: Optional[str], input_cfg: Dict, count: int = 3,
                ) -> List[Dict[str, np.ndarray]]:
    """Build ``count`` feeds: images from ``images_dir`` for image inputs, else seeded noise."""
    rng = np.random.RandomState(0)
    paths = imgs.list_images(images_dir, count) if images_dir else []
    feeds = []
    for i in range(max(count if not paths else len(paths), 1)):
        feed = {}
        for name, shape in specs:
            dtype, dims = runner.tensor_dtype_shape(name)
            shp = list(shape or dims or [])
            if shp and (shp[0] is None or shp[0] < 0):
                shp[0] = 1  # a free batch dimension: validate with batch 1
            if not shp or any(d is None or d < 0 for d in shp):
                raise UserError('Input {!r} has no fixed shape ({}): pass one, e.g. --inputs '
                                '{}[1,300,300,3].'.format(name, shp, name))
            image_like = len(shp) == 4 and (shp[3] in (1, 3) or shp[1] in (1, 3))
            if paths and image_like:  # a batch of N: this image and the next ones
                feed[name] = np.concatenate([
                    imgs.prepare(imgs.read_rgb(paths[(i + k) % len(paths)]), input_cfg,
                                 [1] + shp[1:], dtype) for k in range(shp[0])])
            elif np.dtype(dtype) == np.uint8:
                feed[name] = rng.randint(0, 256, size=shp).astype(np.uint8)
            else:
                feed[name] = rng.uniform(-1, 1, size=shp).astype(dtype)
        feeds.append(feed)
    return feeds


def compare(ref: Sequence[np.ndarray], got: Sequence[np.ndarray], names: Sequence[str],
            ) -> Dict[str, Dict[str, float]]:
    """Return per output the max abs diff and max rel diff (``|d| / max(|ref|, 1e-6)``)."""
    out = {}
    for name, r, g in zip(names, ref, got):
        r = np.asarray(r, np.float64)
        g = np.asarray(g, np.float64)
        if r.shape != g.shape:
            raise ModelError('Output {!r}: ONNX shape {} differs from TensorFlow {}.'.format(
                name, g.shape, r.shape))
        d = np.abs(r - g)
        out[name] = {'max_abs': float(d.max()) if d.size else 0.0,
                     'max_rel': float((d / np.maximum(np.abs(r), 1e-6)).max()) if d.size
                     else 0.0}
    return out


def convert(source: str, output: str, inputs: Optional[str] = None,
            outputs: Optional[str] = None, tag: str = 'serve',
            signature_name: str = 'serving_default', opset: int = 13, fold: bool = True,
            validate_images: Optional[str] = None, input_cfg: Optional[Dict] = None,
            atol: Optional[float] = None, rtol: float = 1e-3,
            tolerances: Optional[Dict[str, Tuple[float, float]]] = None,
            order_free: Sequence[str] = (), batch: Optional[str] = None) -> OnnxResult:
    """Convert ``source`` to ONNX at ``output``, validated against TensorFlow.

    Fails (``UserError``, nothing written) if any output differs from TensorFlow by more than
    its tolerance, ``atol + rtol * |tf|`` (or ``tolerances[name]``; ``atol`` by default
    :data:`ATOL`, or :data:`QDQ_ATOL` for a fake-quant graph), on images from
    ``validate_images`` (prepared with ``input_cfg``) or, without a folder, on seeded random
    inputs. Detection outputs (after a TopK/NMS, or named in ``order_free``) are compared as
    detections (:mod:`tx2_inference.convert.workstation.compare`). Outputs are named as the
    ONNX model names them, in the comparison as everywhere. ``batch``: N or
    ``dynamic`` (see the module docstring).
    """
    import onnx
    t0 = time.time()
    input_cfg = input_cfg or {}
    kind = source_kind(source)
    specs, outs, rename, _ = _resolve(source, kind, tag, signature_name, inputs, outputs)
    if batch:
        specs = with_batch(specs, batch, _placeholder_shapes(load_graph(source, tag)))
    in_names = [n for n, _ in specs]
    # tf2onnx takes a free dimension as None.
    shapes = {n: [None if d < 0 else d for d in s] for n, s in specs if s}
    LOG.info('[onnx 1/5] loading %s %s (inputs %s, outputs %s)', kind, source, in_names, outs)
    from_signature = kind == 'saved_model' and not (inputs and outputs)
    graph_def, tf_in, tf_out, tables, to_rename = _load_frozen(
        source, kind, tag, signature_name, [] if from_signature else in_names,
        [] if from_signature else outs, rename)
    fq = fake_quant_ops(graph_def)
    if atol is None:
        atol = QDQ_ATOL if fq else ATOL
    if fq:
        LOG.info('[onnx 1/5] a quantized (fake-quant) graph: %s; TF check atol %g (INT8 '
                 'rounding at .5 boundaries can differ between TF and ONNX Runtime)', ', '.join(
                     '{} x{}'.format(k, v) for k, v in sorted(fq.items())), atol)
        if opset < 13:
            raise UserError('{!r} is a quantization-aware (fake-quant) model: its per-channel '
                            'Q/DQ needs opset >= 13 (TensorRT explicit INT8 too); pass --opset '
                            '13 or more.'.format(source))
    LOG.info('[onnx 2/5] tf2onnx, opset %d', opset)
    try:
        model = _tf2onnx(graph_def, source, tf_in, tf_out, shapes, opset, tables, to_rename)
    except UserError:
        raise
    except Exception as e:  # tf2onnx raises bare Exceptions/ValueErrors for unsupported ops
        bad = _unsupported_ops(graph_def, opset)
        msg = 'tf2onnx cannot convert {!r}: {}'.format(source, str(e).splitlines()[0][:300])
        if bad:
            msg += ('. Ops without an ONNX conversion: {}. Cut the graph before them: pass '
                    '--outputs with the tensors that feed them, e.g. {}.').format(
                        ', '.join('{} ({})'.format(n, o) for n, o, _ in bad[:5]),
                        ','.join(sorted({i if ':' in i else i + ':0'
                                         for _, _, ins in bad[:2] for i in ins})[:4]))
        else:
            msg += '.' + (_loop_hint(graph_def) or ' Cut the graph before the part that fails: '
                          'pass --outputs with earlier tensors (see --list-tensors).')
        raise UserError(msg) from e
    if fold:
        LOG.info('[onnx 3/5] folding constants')
        model = fold_constants(model)
    onnx.checker.check_model(model)
    result = OnnxResult()
    result.tf_inputs, result.tf_outputs = list(in_names), list(outs)
    result.outputs = [o.name for o in model.graph.output]
    result.rename = dict(rename)
    with atomic_path(output) as tmp:
        onnx.save(model, tmp)
        LOG.info('[onnx 4/5] comparing with TensorFlow')
        try:
            result.diffs = validate(source, tmp, tag, specs, outs, rename, validate_images,
                                    input_cfg, atol, rtol, tolerances, order_free)
        except UserError as e:
            raise UserError(str(e) + _loop_hint(graph_def)) from None
        if batch and str(batch).lower() == 'dynamic':
            LOG.info('[onnx 4/5] checking two frames at once against each alone')
            runner = TFRunner(source, outs, tag)
            try:
                feed = sample_feed(runner, specs, validate_images, input_cfg, count=1)[0]
            finally:
                runner.close()
            check_batches(tmp, feed, atol, rtol)
        import onnxruntime as ort

        from tx2_inference.backends.base import TensorInfo
        sess = ort.InferenceSession(tmp, providers=['CPUExecutionProvider'])
        result.inputs = [(i.name, list(i.shape), i.type) for i in sess.get_inputs()]
        # Shapes as run on the samples (a SavedModel's outputs often have dynamic dims).
        result.output_info = [
            TensorInfo(o.name, tuple(result.diffs.get(o.name, {}).get('shape') or
                                     (d.dim_value if d.HasField('dim_value') else -1
                                      for d in o.type.tensor_type.shape.dim)),
                       onnx.helper.tensor_dtype_to_np_dtype(o.type.tensor_type.elem_type))
            for o in model.graph.output]
    if fq:
        from tx2_inference.backends.tensorrt import qdq
        result.qdq = qdq.readiness(model)
        LOG.info('[onnx 5/5] TensorRT: %s', result.qdq.summary())
    result.onnx_path = output
    result.seconds = time.time() - t0
    LOG.info('[onnx 5/5] wrote %s (%.1f s)', output, result.seconds)
    return result


def validate(source: str, onnx_path: str, tag: str, specs, outs: List[str],
             rename: Dict[str, str], images_dir: Optional[str], input_cfg: Dict,
             atol: float, rtol: float,
             tolerances: Optional[Dict[str, Tuple[float, float]]] = None,
             order_free: Sequence[str] = ()) -> Dict[str, Dict[str, float]]:
    """Run TensorFlow and ONNX Runtime on the same inputs; raise if they differ too much.

    Outputs are named by their ONNX names (a ``tolerances`` or ``order_free`` entry may also
    use the TF graph name); see :func:`convert`.

    :returns: ONNX output name -> ``max_abs``, ``max_rel``, ``reordered_rows`` (detection rows
        matched in another order), ``crossed_rows`` (rows at the top-K cut-off in one runtime
        only, not compared) and ``shape`` (as run).
    """
    import onnx
    import onnxruntime as ort

    from tx2_inference.convert.workstation import compare as cmp
    runner = TFRunner(source, outs, tag)
    try:
        feeds = sample_feed(runner, specs, images_dir, input_cfg)
        sess = ort.InferenceSession(onnx_path, providers=['CPUExecutionProvider'])
        onnx_in = [i.name for i in sess.get_inputs()]
        onnx_out = [o.name for o in sess.get_outputs()]
        tf_to_onnx_in = {n: (rename.get(n, n) if rename.get(n, n) in onnx_in else
                             onnx_in[k]) for k, (n, _) in enumerate(specs)}
        names = [rename.get(o, o) if rename.get(o, o) in onnx_out else onnx_out[k]
                 for k, o in enumerate(outs)]
        onnx_of = dict(zip(outs, names))
        label = {n: n if n == o else '{} (TF {})'.format(n, o) for o, n in onnx_of.items()}
        own = {}  # type: Dict[str, Tuple[float, float]]
        for key, value in (tolerances or {}).items():  # TF or ONNX names, maybe with [columns]
            base, columns = cmp.split_columns(key)
            own[onnx_of.get(base, base) + key[len(base):]] = value
        unknown = sorted({cmp.split_columns(k)[0] for k in own} - set(names))
        forced = [onnx_of.get(k, k) for k in order_free]
        unknown += sorted(set(forced) - set(names))
        if unknown:
            raise UserError('--tolerance/--order-free name(s) {} are not outputs of this model; '
                            'its outputs are {}.'.format(', '.join(unknown), ', '.join(names)))
        free = sorted(set(forced) | set(cmp.row_ordered_outputs(onnx.load(onnx_path), names)))
        samples = []
        for feed in feeds:
            ref = runner.run(feed)
            got = sess.run(names, {tf_to_onnx_in[n]: v for n, v in feed.items()})
            samples.append((dict(zip(names, ref)), dict(zip(names, got))))
        diffs = cmp.compare_outputs(samples, names, (atol, rtol), own, free)
        for name, d in diffs.items():  # the summary prints them once, at the end
            LOG.debug('  %-40s max abs %.3g  max rel %.3g%s', label[name], d.max_abs, d.max_rel,
                      '  (detections: %d rows matched in another order, %d at the cut-off)'
                      % (d.reordered_rows, d.crossed_rows)
                      if d.as_detections else '')
        if not all(d.ok for d in diffs.values()):
            raise UserError(cmp.failure_message(diffs, label, samples,
                                                reference_kernels_note()))
        return {name: {'max_abs': d.max_abs, 'max_rel': d.max_rel,
                       'column_max_abs': d.column_max_abs,
                       'reordered_rows': d.reordered_rows, 'crossed_rows': d.crossed_rows,
                       'shape': list(np.shape(samples[0][1][name]))}
                for name, d in diffs.items()}
    finally:
        runner.close()
