"""`tx2-convert quantize`: ONNX -> INT8 ONNX with ONNX Runtime static quantization.

Two formats, because the right INT8 form depends on the runtime (../shared/notes/ml-stack.md):

- ``qdq`` (default): QuantizeLinear/DequantizeLinear pairs, symmetric S8S8 (zero points 0), the
  form TensorRT accepts; the INT8 path for TensorRT 11 (strongly typed). On ONNX Runtime's CPU
  provider it can be *slower* than FP32.
- ``qoperator``: U8S8 QLinear* operators, the fast INT8 form for ONNX Runtime on a CPU robot.

Calibration runs the model on the user's images, preprocessed exactly as the runtime does
(the model config beside the ONNX). The report measures FP32 vs INT8 latency on this CPU and
the outputs' agreement, and says which model to deploy: an INT8 model slower than FP32 here is
not recommended for ONNX Runtime. Nothing partial is written on failure.
"""

import contextlib
import json
import logging
import os
import time
from typing import Any, Dict, Iterator, List, Optional

import numpy as np

from tx2_inference.core import images
from tx2_inference.core.fileio import atomic_path, atomic_write_text
from tx2_inference.errors import ModelError, UserError

LOG = logging.getLogger('tx2_inference.convert')

#: Histogram bins of the entropy calibrator (TensorRT's entropy calibration uses 2048).
ENTROPY_BINS = 2048


class QuantizeReport(object):
    """What quantization produced and measured."""

    def __init__(self, output: str, fmt: str) -> None:
        """Start a report for ``output`` in format ``fmt``."""
        self.output = output
        self.format = fmt
        self.calibration_images = 0
        self.fp32_ms = float('nan')
        self.int8_ms = float('nan')
        self.max_abs_diff = {}  # type: Dict[str, float]
        self.fp32_mb = 0.0
        self.int8_mb = 0.0

    @property
    def speedup(self) -> float:
        """Return FP32 time / INT8 time (> 1: INT8 is faster on this CPU)."""
        return self.fp32_ms / self.int8_ms if self.int8_ms else float('nan')

    def recommendation(self) -> str:
        """Say where this INT8 model should be used."""
        if self.format == 'qdq':
            where = 'for TensorRT (tx2-convert engine; the INT8 path on TensorRT 11)'
        else:
            where = 'for ONNX Runtime on a CPU robot'
        if np.isnan(self.speedup):
            return 'Use it {}.'.format(where)
        if self.speedup < 1.0:
            return ('Use it {}. Do NOT deploy it on ONNX Runtime CPU: it is {:.1f}x slower than '
                    'FP32 here ({:.1f} vs {:.1f} ms){}.'.format(
                        where, 1.0 / self.speedup, self.int8_ms, self.fp32_ms,
                        '; for ORT CPU use --format qoperator' if self.format == 'qdq' else
                        '; keep the FP32 model'))
        return 'Use it {}: {:.2f}x faster than FP32 on ONNX Runtime CPU here ({:.1f} vs {:.1f} ' \
               'ms).'.format(where, self.speedup, self.int8_ms, self.fp32_ms)

    def as_dict(self) -> Dict[str, Any]:
        """Return the report as JSON-ready data."""
        return {'output': self.output, 'format': self.format,
                'calibration_images': self.calibration_images,
                'ort_cpu_ms': {'fp32': self.fp32_ms, 'int8': self.int8_ms},
                'speedup': self.speedup, 'size_mb': {'fp32': self.fp32_mb,
                                                     'int8': self.int8_mb},
                'max_abs_diff_vs_fp32': self.max_abs_diff,
                'recommendation': self.recommendation()}

    def summary(self) -> str:
        """Return a human summary."""
        lines = ['Wrote {} ({} INT8, {:.1f} MB; FP32 {:.1f} MB), calibrated on {} images.'.format(
            self.output, self.format.upper(), self.int8_mb, self.fp32_mb,
            self.calibration_images)]
        for name, diff in sorted(self.max_abs_diff.items()):
            lines.append('  vs FP32  {:<40s} max abs {:.4g}'.format(name, diff))
        lines.append(self.recommendation())
        return '\n'.join(lines)


class _ImageReader(object):
    """An ``onnxruntime.quantization.CalibrationDataReader`` over preprocessed images."""

    def __init__(self, feeds: List[Dict[str, np.ndarray]]) -> None:
        self._feeds = iter(feeds)

    def get_next(self) -> Optional[Dict[str, np.ndarray]]:
        return next(self._feeds, None)


def calibration_feeds(onnx_path: str, calib_dir: str, cfg: Dict[str, Any],
                      limit: int) -> List[Dict[str, np.ndarray]]:
    """Preprocess up to ``limit`` images of ``calib_dir`` into ONNX input feeds.

    :param cfg: the model's config (``config.load``), whose ``input`` section says how.
    """
    import onnxruntime as ort

    sess = ort.InferenceSession(onnx_path, providers=['CPUExecutionProvider'])
    inp = sess.get_inputs()[0]
    if len(sess.get_inputs()) != 1:
        raise UserError('{!r} has {} inputs; calibration from images needs a model with one '
                        'image input.'.format(onnx_path, len(sess.get_inputs())))
    dtype = {'tensor(uint8)': np.uint8, 'tensor(float)': np.float32,
             'tensor(float16)': np.float16}.get(inp.type)
    if dtype is None:
        raise UserError('input {!r} of {!r} has type {}; expected an image tensor (uint8 or '
                        'float).'.format(inp.name, onnx_path, inp.type))
    shape = [d if isinstance(d, int) and d > 0 else 1 for d in inp.shape]
    if 'size' in cfg.get('input', {}):
        h, w = cfg['input']['size']
        if cfg['input'].get('layout', 'nhwc') == 'nchw':
            shape[2:4] = [h, w]
        else:
            shape[1:3] = [h, w]
    paths = images.list_images(calib_dir, limit)
    LOG.info('calibration: %d images from %s', len(paths), calib_dir)
    return [{inp.name: images.prepare(images.read_rgb(p), cfg.get('input', {}), shape, dtype)}
            for p in paths]


def ort_latency_ms(onnx_paths: List[str], feed: Dict[str, np.ndarray], runs: int = 20,
                   threads: Optional[int] = None) -> List[float]:
    """Return each model's median ONNX Runtime CPU latency for one inference, in ms.

    The models run interleaved (a, b, a, b, ...) after warm-ups, so a busy machine slows them
    alike and the comparison stays fair.
    """
    import onnxruntime as ort
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    sessions = [ort.InferenceSession(p, opts, providers=['CPUExecutionProvider'])
                for p in onnx_paths]
    for sess in sessions:
        for _ in range(3):
            sess.run(None, feed)
    times = [[] for _ in sessions]  # type: List[List[float]]
    for _ in range(runs):
        for sess, bucket in zip(sessions, times):
            t0 = time.perf_counter()
            sess.run(None, feed)
            bucket.append((time.perf_counter() - t0) * 1000.0)
    return [float(np.median(t)) for t in times]


def quantize(onnx_path: str, output: str, calib_dir: str, fmt: str = 'qdq',
             config_path: Optional[str] = None, limit: int = 64, method: str = 'minmax',
             per_channel: bool = True, measure: bool = True,
             latency_runs: int = 20, force: bool = False,
             calib_cache: Optional[str] = None, float_tail: bool = True) -> QuantizeReport:
    """Quantize ``onnx_path`` to INT8 at ``output`` (its .yaml config copied beside it).

    :param force: replace an existing ``output`` and a hand-edited config there (``.bak``
        copies kept); ``output`` equal to ``onnx_path`` is refused even so.

    :param fmt: ``qdq`` (symmetric S8S8, for TensorRT) or ``qoperator`` (U8S8, for ORT CPU).
    :param method: calibration: minmax, entropy or percentile.
    :param float_tail: keep the ops after the last weighted layer (box decoding, score
        activation, concatenations: :func:`tail_nodes`) in float. Measured on the person model
        (docs/PRECISION.md): mAP@.5:.95 against FP32 0.46 -> 0.92 (QDQ), the weighted layers
        all still INT8.
    :param calib_cache: a JSON file of activation ranges (ORT >= 1.32): read if it exists
        (same method; no image is run then), else written. Ranges do not depend on the
        format or on per-channel weights, so one cache serves every such variant.
    :raises UserError: a missing file or folder, or a model ORT cannot quantize.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, quantize_static, QuantType

    from tx2_inference.convert import config as cfgmod
    if not os.path.isfile(onnx_path):
        raise UserError('ONNX model {!r} does not exist.'.format(onnx_path))
    if fmt not in ('qdq', 'qoperator'):
        raise UserError('--format {!r}: choose qdq or qoperator.'.format(fmt))
    from tx2_inference.convert import outputs
    outputs.check_output(output, [onnx_path, config_path], force)
    cfg = cfgmod.load(config_path or cfgmod.config_path_for(onnx_path))
    feeds = calibration_feeds(onnx_path, calib_dir, cfg, limit)
    report = QuantizeReport(output, fmt)
    report.calibration_images = len(feeds)
    methods = {'minmax': CalibrationMethod.MinMax, 'entropy': CalibrationMethod.Entropy,
               'percentile': CalibrationMethod.Percentile}
    if fmt == 'qdq':
        kwargs = {'quant_format': QuantFormat.QDQ, 'activation_type': QuantType.QInt8,
                  'weight_type': QuantType.QInt8,
                  # float biases: TensorRT dequantizes INT8 only (no INT32 bias Q/DQ)
                  'extra_options': {'ActivationSymmetric': True, 'WeightSymmetric': True,
                                    'QuantizeBias': False}}
    else:
        kwargs = {'quant_format': QuantFormat.QOperator, 'activation_type': QuantType.QUInt8,
                  'weight_type': QuantType.QInt8}
    LOG.info('[quantize 1/3] %s INT8, %s calibration on %d images', fmt.upper(), method,
             len(feeds))
    with atomic_path(output) as tmp:
        src = _preprocessed(onnx_path, tmp + '.pre.onnx')
        try:
            with _entropy_bins(ENTROPY_BINS if method == 'entropy' else 0):
                if calib_cache:
                    kwargs['calibration_cache_path'] = calib_cache
                if float_tail:
                    kwargs['nodes_to_exclude'] = tail_nodes(src)
                    LOG.info('[quantize 1/3] %d ops after the last weighted layer stay float',
                             len(kwargs['nodes_to_exclude']))
                quantize_static(src, tmp, _ImageReader(feeds), per_channel=per_channel,
                                calibrate_method=methods[method], **kwargs)
        except Exception as e:
            raise ModelError('ONNX Runtime could not quantize {!r}: {}'.format(
                onnx_path, str(e).splitlines()[0] if str(e) else type(e).__name__)) from e
        finally:
            if src != onnx_path and os.path.exists(src):
                os.unlink(src)
        LOG.info('[quantize 2/3] comparing INT8 with FP32')
        report.max_abs_diff = _agreement(onnx_path, tmp, feeds[:8])
        if measure:
            LOG.info('[quantize 3/3] measuring ONNX Runtime CPU latency (FP32 vs INT8)')
            report.fp32_ms, report.int8_ms = ort_latency_ms([onnx_path, tmp], feeds[0],
                                                            latency_runs)
        report.fp32_mb = os.path.getsize(onnx_path) / 1e6
        report.int8_mb = os.path.getsize(tmp) / 1e6
    cfgmod.save(None, cfg, header='Written by tx2-convert quantize ({} INT8) from {}.'.format(
        fmt.upper(), os.path.basename(onnx_path)), model=output, force=force)
    atomic_write_text(os.path.splitext(output)[0] + '.quantize.json',
                      json.dumps(report.as_dict(), indent=1) + '\n')
    return report


#: Layers with weights: what INT8 is for.
WEIGHTED_OPS = ('Conv', 'ConvTranspose', 'Gemm', 'MatMul')


def tail_nodes(onnx_path: str) -> List[str]:
    """Return the names of the nodes downstream of every weighted layer (none feeds one).

    In a detector these decode the boxes (exp, multiplies by anchor sizes), apply the score
    activation and concatenate the heads: quantizing their 8-bit outputs moves every box.
    """
    import onnx
    graph = onnx.load(onnx_path, load_external_data=False).graph
    producer = {o: n for n in graph.node for o in n.output}

    def reads(node: Any) -> List[str]:
        """Return the tensors a node reads, its subgraphs' outer-scope reads included."""
        names = list(node.input)
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField('g') else []) + list(attr.graphs):
                names += [i for n in sub.node for i in reads(n)]
        return names

    feeds_weighted = set()  # ids of nodes upstream of (or being) a weighted layer
    stack = [n for n in graph.node if n.op_type in WEIGHTED_OPS]
    while stack:
        node = stack.pop()
        if id(node) in feeds_weighted:
            continue
        feeds_weighted.add(id(node))
        stack.extend(producer[i] for i in reads(node) if i in producer)
    return [n.name for n in graph.node if id(n) not in feeds_weighted and n.name]


@contextlib.contextmanager
def _entropy_bins(bins: int) -> Iterator[None]:
    """Give ORT's entropy calibrator ``bins`` histogram bins inside the block.

    ``quantize_static`` (ORT 1.16-1.32) forwards no bin count to ``create_calibrator``, whose
    entropy default is 128 bins for 128 quantized bins: the KL search then has one candidate,
    the full range, and 'entropy' gives exactly MinMax's scales (measured: all 377 scales of
    the default model equal). With 2048 bins it searches thresholds as TensorRT's does.
    """
    import importlib
    ortq = importlib.import_module('onnxruntime.quantization.quantize')  # not the function
    original = ortq.create_calibrator
    if not bins:
        yield
        return

    def create(*args: Any, **kwargs: Any) -> Any:
        options = dict(kwargs.get('extra_options') or {})
        options.setdefault('num_bins', bins)
        kwargs['extra_options'] = options
        return original(*args, **kwargs)

    ortq.create_calibrator = create
    try:
        yield
    finally:
        ortq.create_calibrator = original


def _preprocessed(onnx_path: str, out: str) -> str:
    """Run ORT's ``quant_pre_process`` (shape inference, folding); fall back to the input."""
    try:
        from onnxruntime.quantization.shape_inference import quant_pre_process
        quant_pre_process(onnx_path, out, skip_symbolic_shape=False)
        return out
    except Exception as e:  # optional step: needs sympy; some models refuse it
        LOG.info('quant_pre_process skipped (%s)', str(e).splitlines()[0] if str(e) else e)
        if os.path.exists(out):
            os.unlink(out)
        return onnx_path


def _agreement(fp32_path: str, int8_path: str,
               feeds: List[Dict[str, np.ndarray]]) -> Dict[str, float]:
    """Return the max abs difference per output between the FP32 and INT8 models."""
    import onnxruntime as ort
    a = ort.InferenceSession(fp32_path, providers=['CPUExecutionProvider'])
    b = ort.InferenceSession(int8_path, providers=['CPUExecutionProvider'])
    names = [o.name for o in a.get_outputs()]
    worst = dict.fromkeys(names, 0.0)
    for feed in feeds:
        for name, x, y in zip(names, a.run(names, feed), b.run(names, feed)):
            worst[name] = max(worst[name], float(np.max(np.abs(
                np.asarray(x, np.float64) - np.asarray(y, np.float64)))))
    return worst
