"""Workstation only: SavedModel / frozen GraphDef -> TFLite in FP32, FP16 or INT8.

- Whole SavedModel (a signature): ``tf.lite.TFLiteConverter.from_saved_model``.
- Graph cut (``--inputs/--outputs``, e.g. the Object Detection API person model, whose
  Preprocessor ``map`` loop TFLite cannot take: cut the input at ``Preprocessor/sub``, see
  ../shared/notes/models-and-images.md): the graph is frozen and converted with
  ``tf.compat.v1.lite.TFLiteConverter.from_frozen_graph``.
- FP16: float16 weights. INT8: post-training quantization with a representative dataset from
  the user's images (preprocessed with the config's ``input`` section); inputs and outputs stay
  float, so the model config does not change between precisions. ``int8_io`` (``--int8-io``)
  makes a full-integer model instead: int8 input and outputs with per-tensor (scale, zero
  point), integer-only builtin ops; ``Detector`` quantises the input and dequantises the
  outputs, and the config's ``input.dtype`` is int8.

The result is compared with TensorFlow on the calibration/sample images (FP32 must match within
a tolerance; FP16/INT8 differences are reported). The model config is written beside it.
"""

import logging
import os
import tempfile
import time
from typing import Any, Dict, List, Optional

import numpy as np

from tx2_inference.backends import FIXED_PRECISIONS as PRECISIONS
from tx2_inference.convert import config as cfgmod
from tx2_inference.convert.workstation.tf_onnx import compare, parse_tensor_specs
from tx2_inference.convert.workstation.tf_runner import (
    _tf,
    graph_node_names,
    signature,
    source_kind,
)
from tx2_inference.core import images as imgs
from tx2_inference.core.fileio import atomic_path
from tx2_inference.errors import ModelError, UserError

LOG = logging.getLogger('tx2_inference.convert')

FP32_ATOL = 1e-3


def _strip(name: str) -> str:
    """Return a node name without ``:0``."""
    return name.rsplit(':', 1)[0] if ':' in name else name


def _frozen_graph_file(source: str, kind: str, tag: str, outputs: List[str], tmpdir: str) -> str:
    """Return a frozen GraphDef file of ``source`` (SavedModels are frozen first)."""
    if kind == 'frozen_graph':
        return source
    tf = _tf()
    graph = tf.Graph()
    with tf.compat.v1.Session(graph=graph) as sess:
        tf.compat.v1.saved_model.loader.load(sess, tag.split(','), source)
        frozen = tf.compat.v1.graph_util.convert_variables_to_constants(
            sess, graph.as_graph_def(), [_strip(o) for o in outputs])
    path = os.path.join(tmpdir, 'frozen.pb')
    with open(path, 'wb') as f:
        f.write(frozen.SerializeToString())
    return path


def graph_normalisation(graph_def, input_name: str) -> Optional[Dict[str, Any]]:
    """Read ``value = pixel * scale - mean`` from the graph when a cut input is ``Sub(Mul)``.

    The TF Object Detection API's SSD preprocessor computes ``x * (2/255) - 1`` as
    ``Preprocessor/sub = Preprocessor/mul - 1``; cutting the input at that Sub, the model
    config must say so. Returns ``{'scale', 'mean', 'std'}`` or None when the pattern is absent.
    """
    from tensorflow.python.framework import tensor_util
    nodes = {n.name: n for n in graph_def.node}

    def const(name: str) -> Optional[float]:
        node = nodes.get(_strip(name))
        if node is None or node.op != 'Const':
            return None
        value = tensor_util.MakeNdarray(node.attr['value'].tensor)
        return float(value) if value.size == 1 else None

    sub = nodes.get(_strip(input_name))
    if sub is None or sub.op != 'Sub' or len(sub.input) != 2:
        return None
    mul, mean = nodes.get(_strip(sub.input[0])), const(sub.input[1])
    if mul is None or mul.op != 'Mul' or mean is None:
        return None
    scales = [v for v in (const(i) for i in mul.input) if v is not None]
    if len(scales) != 1:
        return None
    return {'scale': scales[0], 'mean': [mean] * 3, 'std': [1.0] * 3}


def _interpreter(model: bytes, threads: int = 2) -> Any:
    """Return an allocated TFLite interpreter (ai-edge-litert, else tf.lite)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # older installs
        Interpreter = _tf().lite.Interpreter  # noqa: N806
    interp = Interpreter(model_content=model, num_threads=threads)
    interp.allocate_tensors()
    return interp


def run_tflite(interp: Any, x: np.ndarray) -> Dict[str, np.ndarray]:
    """Run a one-input TFLite interpreter on float ``x``; return float outputs by tensor name.

    A quantised integer input is fed ``round(x / scale + zero_point)`` (saturated), and
    quantised integer outputs come back dequantised.
    """
    detail = interp.get_input_details()[0]
    scale, zero_point = detail['quantization']
    dtype = np.dtype(detail['dtype'])
    if scale and np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        x = np.clip(np.rint(x / scale + zero_point), info.min, info.max)
    interp.set_tensor(detail['index'], np.asarray(x).astype(dtype))
    interp.invoke()
    result = {}
    for d in interp.get_output_details():
        value = interp.get_tensor(d['index']).copy()
        scale, zero_point = d['quantization']
        if scale and np.issubdtype(np.dtype(d['dtype']), np.integer):
            value = (value.astype(np.float32) - zero_point) * np.float32(scale)
        result[d['name']] = value
    return result


def convert(source: str, output: str, precision: str = 'fp32', inputs: Optional[str] = None,
            outputs: Optional[str] = None, tag: str = 'serve',
            signature_name: str = 'serving_default', calib_images: Optional[str] = None,
            calib_limit: int = 64, input_overrides: Optional[Dict[str, Any]] = None,
            labels: Optional[str] = None, decoder_type: Optional[str] = None,
            decoder_options: Optional[Dict[str, Any]] = None,
            int8_io: bool = False,
            detection: Optional[Dict[str, Any]] = None,
            force: bool = False) -> 'TfliteResult':
    """Convert ``source`` to a TFLite model at ``output`` and write its config beside it.

    :param decoder_type: ``--decoder`` (None: only a type the output names make unambiguous).
    :param decoder_options: decoder keys given on the command line.
    :param int8_io: with ``precision='int8'``: int8 input and outputs (a full-integer model).
    :param detection: the config's ``detection`` section (the model's detection defaults).
    :param force: replace a hand-edited config beside ``output`` (a ``.bak`` copy is kept).

    :returns: the summary (str() of it: sizes, TF comparison), the config path and the
        decoder section written (``type: to_be_completed`` where it could not be told).
    :raises UserError: bad paths/tensors, INT8 without images, TFLite conversion errors.
    """
    tf = _tf()
    t0 = time.time()
    if precision not in PRECISIONS:
        raise UserError('--precision {!r}: choose {}.'.format(precision, ', '.join(PRECISIONS)))
    if precision == 'int8' and not calib_images:
        raise UserError('INT8 needs a representative dataset: pass --calib-images DIR.')
    if int8_io and precision != 'int8':
        raise UserError('--int8-io makes a full-integer model: use it with --precision int8.')
    kind = source_kind(source)
    specs = parse_tensor_specs(inputs)
    outs = [n for n, _ in parse_tensor_specs(outputs)]
    cut = bool(specs or outs)
    if cut and not (specs and outs):
        raise UserError('A graph cut needs both --inputs (with shapes) and --outputs.')
    if not cut and kind == 'frozen_graph':
        raise UserError('A frozen graph has no signature: pass --inputs name[1,H,W,3] and '
                        '--outputs.')
    if cut:
        names, _ = graph_node_names(source, tag)
        missing = [n for n in [s[0] for s in specs] + outs if _strip(n) not in names]
        if missing:
            raise UserError('Tensor(s) {} not found in {!r}; list them with `tx2-convert onnx '
                            '--list-tensors MODEL`.'.format(missing, source))
        if any(s is None for _, s in specs):
            raise UserError('Give each cut input a fixed shape, e.g. --inputs '
                            'Preprocessor/sub[1,300,300,3].')
    else:
        signature(source, tag, signature_name)  # a clear error for a wrong signature/tag
    input_cfg = {k: v for k, v in (input_overrides or {}).items() if v is not None}
    if cut and not any(k in input_cfg for k in ('scale', 'mean', 'std')):
        from tx2_inference.convert.workstation.tf_runner import _meta_graph, load_graph_def
        gd = _meta_graph(source, tag).graph_def if kind == 'saved_model' else \
            load_graph_def(source)
        found = graph_normalisation(gd, specs[0][0])
        if found:
            LOG.info('[tflite] input %s normalises in the graph: scale %.6g, mean %g, std 1 '
                     '(written to the config)', specs[0][0], found['scale'], found['mean'][0])
            input_cfg.update(found)
    with tempfile.TemporaryDirectory(prefix='tx2_tflite_') as tmpdir:
        if cut:
            pb = _frozen_graph_file(source, kind, tag, outs, tmpdir)
            conv = tf.compat.v1.lite.TFLiteConverter.from_frozen_graph(
                pb, [_strip(n) for n, _ in specs], [_strip(o) for o in outs],
                input_shapes={_strip(n): s for n, s in specs})
        else:
            conv = tf.lite.TFLiteConverter.from_saved_model(source, signature_keys=[
                signature_name], tags=set(tag.split(',')))
        in_shape = None
        if cut:
            in_shape = specs[0][1]
        if precision == 'fp16':
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.target_spec.supported_types = [tf.float16]
        elif precision == 'int8':
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            paths = imgs.list_images(calib_images, calib_limit)
            shape_holder = {}  # type: Dict[str, Any]

            def representative() -> Any:
                for p in paths:
                    shp = in_shape or shape_holder['shape']
                    yield [imgs.prepare(imgs.read_rgb(p), input_cfg, shp, np.float32)]
            if in_shape is None:
                shape_holder['shape'] = _signature_input_shape(source, tag, signature_name)
            conv.representative_dataset = representative
            if int8_io:
                conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
                conv.inference_input_type = tf.int8
                conv.inference_output_type = tf.int8
            LOG.info('[tflite] INT8 calibration on %d images%s', len(paths),
                     ' (int8 input and outputs)' if int8_io else '')
        LOG.info('[tflite 1/3] converting %s (%s)', source, precision)
        try:
            model = conv.convert()
        except Exception as e:
            first = str(e).strip().splitlines()
            msg = first[0][:300] if first else type(e).__name__
            ops = [ln.strip() for ln in first if 'tf.' in ln or 'Op' in ln][:3]
            raise UserError('TFLite cannot convert {!r}: {}{}. Cut the graph around the '
                            'unsupported part with --inputs/--outputs (for TF1 Object Detection '
                            'API models: --inputs Preprocessor/sub[1,300,300,3] --outputs '
                            'Postprocessor/ExpandDims_1,Postprocessor/convert_scores).'.format(
                                source, msg, (' (' + '; '.join(ops) + ')') if ops else '')
                            ) from e
    interp = _interpreter(model)
    detail = interp.get_input_details()[0]
    shape = [int(d) for d in detail['shape']]
    out_names = [d['name'] for d in interp.get_output_details()]
    LOG.info('[tflite 2/3] comparing with TensorFlow')
    diffs = _compare_with_tf(source, kind, tag, signature_name, specs, outs, cut, interp,
                             shape, input_cfg, calib_images)
    if precision == 'fp32':
        bad = {k: v for k, v in diffs.items() if v['max_abs'] > FP32_ATOL}
        if bad:
            raise ModelError('TFLite FP32 output(s) differ from TensorFlow by more than {} '
                             '({}); nothing was written.'.format(FP32_ATOL, bad))
    with atomic_path(output) as tmp:
        with open(tmp, 'wb') as f:
            f.write(model)
    from tx2_inference.backends.base import TensorInfo
    dtype = np.dtype(detail['dtype']).name
    cfg = cfgmod.build(detail['name'], shape, dtype, input_cfg, {},
                       cfgmod.parse_labels(labels))
    output_info = [TensorInfo(d['name'], tuple(int(v) for v in d['shape']), np.dtype(d['dtype']))
                   for d in interp.get_output_details()]
    cfg['decoder'] = cfgmod.decoder_section(decoder_type, decoder_options or {}, output_info,
                                            cfg, lambda name: _tflite_name(name, out_names))
    if detection:
        cfg['detection'] = dict(detection)
    cfg_path = cfgmod.save(None, cfg, header='Written by tx2-convert tflite ({}) from {}.'.format(
        precision, source), model=output, force=force)
    label = precision.upper() + (' with int8 I/O' if int8_io else '')
    lines = ['Wrote {} ({}, {:.1f} MB) and {} in {:.1f} s.'.format(
        output, label, len(model) / 1e6, cfg_path, time.time() - t0)]
    for name, d in sorted(diffs.items()):
        lines.append('  vs TensorFlow  {:<40s} max abs {:.3g}'.format(name, d['max_abs']))
    return TfliteResult('\n'.join(lines), cfg_path, cfg['decoder'])


class TfliteResult(object):
    """What :func:`convert` wrote: its summary (``str()``), config path and decoder section."""

    def __init__(self, summary: str, config_path: str, decoder: Dict[str, Any]) -> None:
        """Keep the fields."""
        self.summary = summary
        self.config_path = config_path
        self.decoder = decoder

    def __str__(self) -> str:
        """Return the summary."""
        return self.summary


def _tflite_name(name: Optional[str], out_names: List[str]) -> Optional[str]:
    """Map a TF tensor name (``a/b:0``) to the TFLite output name (``a/b``) when present."""
    if not name:
        return None
    for cand in (name, _strip(name)):
        if cand in out_names:
            return cand
    return None


def _signature_input_shape(source: str, tag: str, sig_name: str) -> List[int]:
    """Return the fixed shape (batch 1) of a signature's single input."""
    sig = signature(source, tag, sig_name)
    (_, _, dims), = sig.inputs.values()
    if not dims or any(d is None for d in dims[1:]):
        raise UserError('The signature input has no fixed shape ({}); export the model with a '
                        'fixed input size.'.format(dims))
    return [1] + list(dims[1:])


def _compare_with_tf(source: str, kind: str, tag: str, sig_name: str, specs, outs: List[str],
                     cut: bool, interp: Any, shape: List[int], input_cfg: Dict[str, Any],
                     images_dir: Optional[str]) -> Dict[str, Dict[str, float]]:
    """Run TF and TFLite on up to 3 images (or seeded noise); return diffs per output."""
    from tx2_inference.convert.workstation.tf_runner import TFRunner
    tf = _tf()
    rng = np.random.RandomState(0)
    paths = imgs.list_images(images_dir, 3) if images_dir else []
    xs = ([imgs.prepare(imgs.read_rgb(p), input_cfg, shape, np.float32) for p in paths] or
          [rng.uniform(-1, 1, size=shape).astype(np.float32)])
    worst = {}  # type: Dict[str, Dict[str, float]]
    if cut:
        runner = TFRunner(source, outs, tag)
        try:
            for x in xs:
                ref = runner.run({specs[0][0]: x})
                got = run_tflite(interp, x)
                got_list = [got.get(_strip(o), got.get(o)) for o in outs]
                _merge(worst, compare(ref, got_list, outs))
        finally:
            runner.close()
        return worst
    loaded = tf.saved_model.load(source, tags=tag.split(','))
    fn = loaded.signatures[sig_name]
    (key, _), = fn.structured_input_signature[1].items()
    for x in xs:
        ref = {k: v.numpy() for k, v in fn(**{key: tf.constant(x)}).items()}
        got = run_tflite(interp, x)
        names = sorted(ref)
        got_by_shape = _match_outputs(ref, got)
        _merge(worst, compare([ref[n] for n in names], [got_by_shape[n] for n in names], names))
    return worst


def _match_outputs(ref: Dict[str, np.ndarray], got: Dict[str, np.ndarray]
                   ) -> Dict[str, np.ndarray]:
    """Pair TFLite outputs (named like ``StatefulPartitionedCall:1``) with signature keys."""
    out = {}
    pool = dict(got)
    for key in sorted(ref):
        named = [k for k in pool if k.endswith(key)]
        pick = named[0] if named else next(
            (k for k in sorted(pool) if pool[k].shape == ref[key].shape), None)
        if pick is None:
            raise ModelError('TFLite output for {!r} not found among {}.'.format(key, list(got)))
        out[key] = pool.pop(pick)
    return out


def _merge(worst: Dict[str, Dict[str, float]], diffs: Dict[str, Dict[str, float]]) -> None:
    """Keep the maximum of each difference."""
    for name, d in diffs.items():
        w = worst.setdefault(name, {'max_abs': 0.0, 'max_rel': 0.0})
        for k in w:
            w[k] = max(w[k], d[k])

