"""`tx2-convert`: TensorFlow model -> ONNX -> TensorRT engine / INT8 QDQ ONNX / TFLite.

Subcommands::

    tx2-convert onnx MODEL -o model.onnx [--inputs T[1,H,W,3]] [--outputs A,B] [...]
    tx2-convert engine model.onnx [--precision auto|fp32|fp16|int8] [--calib-images DIR] [...]
    tx2-convert quantize model.onnx --calib-images DIR -o model_int8.onnx [--format qdq]
    tx2-convert fold-qdq model_qdq.onnx -o model_folded.onnx [--images DIR]
    tx2-convert tflite MODEL -o model.tflite [--precision int8 --calib-images DIR [--int8-io]]
    tx2-convert evaluate --images DIR --annotations coco.json --tf MODEL --onnx m.onnx ...
    tx2-convert evaluate --footage video.avi --every 2 --tf MODEL --onnx int8=m_int8.onnx ...
    tx2-convert triton-repo model.onnx|model.engine -o model_repository [--max-batch-size N]
    tx2-convert check model.onnx --target tx2|nano|xavier|orin|trt8.0|trt8.2|trt8.5|trt8.6|trt10
    tx2-convert retarget model.onnx --target tx2 -o model_tx2.onnx

Runs on the robot (Python 3.6): TensorFlow, TensorRT and ONNX Runtime are imported only by
the subcommand that needs them. A problem the user can fix prints one line (what was wrong,
what to do) and exits with status 2; nothing partial is written.
"""

import argparse
import logging
import os
import sys
from typing import Any, Dict, List, Optional, Tuple

from tx2_inference.backends import FIXED_PRECISIONS, PRECISIONS
from tx2_inference.backends.tensorrt.devices import TARGETS
from tx2_inference.errors import UserError

LOG = logging.getLogger('tx2_inference.convert')

EXIT_USER_ERROR = 2
#: The model and its config were written, but the config's decoder is to be completed.
EXIT_CONFIG_INCOMPLETE = 3
#: `check` (or `onnx`/`retarget --target`) found problems for the target's TensorRT.
EXIT_TARGET_PROBLEMS = 1


def _floats(text: str) -> List[float]:
    """Parse '0.5' or '0.5,0.5,0.5' into a list of floats."""
    try:
        return [float(v) for v in text.split(',')]
    except ValueError:
        raise argparse.ArgumentTypeError('expected numbers separated by commas, got '
                                         '{!r}'.format(text)) from None


def _add_config_args(p: argparse.ArgumentParser) -> None:
    """Options that describe the model for its config YAML (docs/DESIGN.md)."""
    g = p.add_argument_group('model config (written beside the model)')
    g.add_argument('--labels', help='comma list or a file with one label a line')
    g.add_argument('--layout', choices=['nhwc', 'nchw'],
                   help='where the image input has its channels: nhwc ([1, H, W, C], '
                   "TensorFlow's default) or nchw ([1, C, H, W]); default: the axis, 3 or 1, "
                   'that has the 1 or 3 channels; when both or neither could, the conversion '
                   'stops and asks for it')
    g.add_argument('--color', choices=['rgb', 'bgr', 'mono'])
    g.add_argument('--resize', choices=['stretch', 'letterbox'])
    g.add_argument('--scale', type=float, help='value = (pixel * scale - mean) / std')
    g.add_argument('--mean', type=_floats)
    g.add_argument('--std', type=_floats)
    g.add_argument('--decoder', help='tf_od_api | boxes_scores | efficient_nms | yolov5 | '
                   'yolov8 | generic | a plugin type (default: the one type whose known output '
                   'names the model has; else the decoder section is written TO BE COMPLETED '
                   'and the exit status is 3: nothing is guessed)')
    g.add_argument('--boxes', help="boxes output (default: the decoder's known name, or the "
                   'one output whose last axis is 4 beside exactly one other)')
    g.add_argument('--scores', help='scores output (default: as --boxes)')
    g.add_argument('--box-format', choices=['yxyx', 'xyxy', 'cxcywh'],
                   help="default: the decoder type's")
    g.add_argument('--box-units', choices=['normalized', 'pixels'],
                   help="default: the decoder type's")
    g.add_argument('--score-activation', choices=['none', 'sigmoid', 'softmax'],
                   help="default: the decoder type's")
    g.add_argument('--background-class', type=int, default=None,
                   help='index of a background score column to drop')
    d = p.add_argument_group("the model's detection defaults (its config's detection section; "
                             'a node parameter set at launch still wins)')
    d.add_argument('--score-threshold', type=float,
                   help='lowest score kept (default when unset: 0.5)')
    d.add_argument('--iou-threshold', type=float,
                   help='NMS: boxes overlapping more than this are one (default: 0.45)')
    d.add_argument('--max-detections', type=int,
                   help='most detections per frame (default: 100)')
    d.add_argument('--class-agnostic-nms', choices=['true', 'false'],
                   help='true: NMS across classes, one box per object whatever its class '
                   '(default: false, per class)')
    g.add_argument('--decoder-option', action='append', default=[], type=_option,
                   metavar='KEY=VALUE', help='any decoder key, VALUE in YAML (repeatable), '
                   'e.g. output=detections, box_columns=[0,1,2,3], class_scores=[5,null], '
                   'module=my_pkg.heads')


def _option(text: str) -> Tuple[str, Any]:
    """Parse ``KEY=VALUE`` (VALUE in YAML) into a pair."""
    import yaml
    key, sep, value = text.partition('=')
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError('expected KEY=VALUE, got {!r}'.format(text))
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError:
        raise argparse.ArgumentTypeError('the value of {!r} is not YAML'.format(text)) from None


def _input_overrides(args: argparse.Namespace) -> Dict[str, Any]:
    """Return the config's input keys given on the command line."""
    return {'layout': args.layout, 'color': args.color, 'resize': args.resize,
            'scale': args.scale, 'mean': args.mean, 'std': args.std}


def detection_defaults(args: argparse.Namespace) -> Dict[str, Any]:
    """Return the detection section's keys given on the command line."""
    given = {'score_threshold': args.score_threshold, 'iou_threshold': args.iou_threshold,
             'max_detections': args.max_detections,
             'class_agnostic_nms': None if args.class_agnostic_nms is None
             else args.class_agnostic_nms == 'true'}  # type: Dict[str, Any]
    return {k: v for k, v in given.items() if v is not None}


def decoder_options(args: argparse.Namespace) -> Dict[str, Any]:
    """Return the decoder keys given on the command line (the type apart)."""
    given = {'boxes': args.boxes, 'scores': args.scores, 'box_format': args.box_format,
             'box_units': args.box_units, 'score_activation': args.score_activation,
             'background_class': args.background_class}  # type: Dict[str, Any]
    given.update(args.decoder_option)
    return {k: v for k, v in given.items() if v is not None}


def _check_config_args(args: argparse.Namespace) -> None:
    """Validate the config options before any conversion, so a bad one writes nothing."""
    from tx2_inference.core.model_config import ModelConfig
    decoder = dict(decoder_options(args), type=args.decoder) if args.decoder else {}
    ModelConfig.from_dict({'input': _input_overrides(args), 'decoder': decoder,
                           'detection': detection_defaults(args)})


def report_incomplete(cfg_path: str, decoder: Dict[str, Any]) -> int:
    """Print the loud notice of an incomplete config; return the exit status to use."""
    from tx2_inference.convert import config as cfgmod
    from tx2_inference.core.decoders import TO_BE_COMPLETED
    if decoder.get('type') != TO_BE_COMPLETED:
        return 0
    print(cfgmod.incomplete_banner(cfg_path, decoder), file=sys.stderr)
    return EXIT_CONFIG_INCOMPLETE


def cmd_onnx(args: argparse.Namespace) -> int:
    """`onnx`: SavedModel / frozen graph -> ONNX, validated, with its model config."""
    from tx2_inference.convert import config as cfgmod
    from tx2_inference.convert.workstation import tf_onnx
    from tx2_inference.convert.workstation.compare import parse_tolerances
    _check_config_args(args)
    if args.list_tensors:
        for line in tf_onnx.list_tensors(args.model, args.tag, args.signature, args.match or ''):
            print(line)
        return 0
    if not args.output:
        raise UserError('Pass the output path: -o model.onnx.')
    from tx2_inference.convert import outputs
    outputs.check_output(args.output, [args.model], args.force)
    result = tf_onnx.convert(
        args.model, args.output, inputs=args.inputs, outputs=args.outputs, tag=args.tag,
        signature_name=args.signature, opset=args.opset, fold=not args.no_fold,
        validate_images=args.validate_images, input_cfg=_input_overrides(args),
        atol=args.atol, rtol=args.rtol, tolerances=parse_tolerances(args.tolerance),
        order_free=[n for n in (args.order_free or '').split(',') if n], batch=args.batch)
    name, shape, onnx_type = result.inputs[0]
    if args.target:  # e.g. uint8 inputs -> float32 for TensorRT < 8.5 (checked in ORT)
        onnx_type = _retarget_output(args.output, args.target, onnx_type)
    dtype = {'tensor(uint8)': 'uint8', 'tensor(float)': 'float32',
             'tensor(float16)': 'float16'}.get(onnx_type, onnx_type)
    try:
        cfg = cfgmod.build(name, shape, dtype, _input_overrides(args), {},
                           cfgmod.parse_labels(args.labels))
    except UserError as error:  # nothing partial: the model goes with its config
        os.remove(args.output)
        raise UserError('{} Nothing was written.'.format(error)) from None
    cfg['decoder'] = cfgmod.decoder_section(args.decoder, decoder_options(args),
                                            result.output_info, cfg, result.onnx_name)
    if detection_defaults(args):
        cfg['detection'] = detection_defaults(args)
    if args.batch:  # the largest batch: N, or -1 for any (a dynamic batch)
        cfg['input']['batch'] = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else -1
    cfg_path = cfgmod.save(None, cfg, header='Written by tx2-convert onnx from {}.'.format(
        args.model), model=args.output, force=args.force)
    print('Wrote {} and {} ({:.1f} s).'.format(args.output, cfg_path, result.seconds))
    for out, d in sorted(result.diffs.items()):
        print('  vs TensorFlow  {:<40s} max abs {:.3g}  max rel {:.3g}{}{}'.format(
            out, d['max_abs'], d['max_rel'], '  (per column {})'.format(
                ', '.join('{:.3g}'.format(v) for v in d['column_max_abs']))
            if d.get('column_max_abs') else '',
            '  (detections: {} rows in another order, {} at the top-K cut-off)'.format(
                d['reordered_rows'], d.get('crossed_rows', 0))
            if d.get('reordered_rows') or d.get('crossed_rows') else ''))
    if result.qdq is not None:
        print('  Q/DQ model for TensorRT: {}'.format(result.qdq.summary()))
    status = report_incomplete(cfg_path, cfg['decoder'])
    if args.target:
        status = status or report_check(args.output, args.target)
    return status


def _retarget_output(onnx_path: str, target: str, onnx_type: str) -> str:
    """Fit the written ONNX to ``target`` in place; return its first input's new type."""
    import onnx

    from tx2_inference.convert import retarget
    from tx2_inference.core.fileio import atomic_path
    model = onnx.load(onnx_path)
    fitted = retarget.retarget_model(model, target)
    if fitted is model:
        return onnx_type
    with atomic_path(onnx_path) as tmp:
        onnx.save(fitted, tmp)
    print('Input(s) made float32 for {} (its TensorRT has no uint8; same outputs in ONNX '
          'Runtime).'.format(target))
    return 'tensor(float)'


def report_check(onnx_path: str, target: str, sources: bool = False) -> int:
    """Print the preflight of ``onnx_path`` on ``target``; return 0, or 1 on any problem."""
    from tx2_inference.backends.tensorrt import devices, preflight
    releases, device = devices.target_releases(target)
    lines = preflight.check_target(onnx_path, target)
    what = '{} (TensorRT {})'.format(target, ' and '.join(releases))
    for line in lines:
        print('{}: {}'.format(onnx_path, line))
    if sources:
        for line in preflight.sources(releases):
            print('  checked against ' + line)
    if lines:
        print('{}: {} problem(s) for {}; fix them before copying it to the robot.'.format(
            onnx_path, len(lines), what), file=sys.stderr)
        return EXIT_TARGET_PROBLEMS
    print('{}: passes the preflight for {}{}.'.format(
        onnx_path, what, ' ({})'.format(device.name) if device else ''))
    from tx2_inference.backends.tensorrt import qdq
    verdict = qdq.readiness(onnx_path)
    if verdict.has_qdq:
        print('{}: {}'.format(onnx_path, verdict.summary()))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """`check`: will the target's TensorRT take this ONNX? (no TensorRT needed)."""
    if args.list_targets:
        from tx2_inference.backends.tensorrt import devices
        print('\n'.join(devices.table()))
        return 0
    if not args.onnx or not args.target:
        raise UserError('Pass the model and the target: tx2-convert check MODEL.onnx --target '
                        'tx2.')
    return report_check(args.onnx, args.target, sources=args.sources)


def cmd_retarget(args: argparse.Namespace) -> int:
    """`retarget`: fit an ONNX model (and its config) to a target, then check it."""
    from tx2_inference.convert import retarget
    retarget.retarget_file(args.onnx, args.target, args.output, force=args.force)
    print('Wrote {}.'.format(args.output))
    return report_check(args.output, args.target)


def batch_profiles(onnx_path: str, batch: int) -> str:
    """Return ``--shapes`` for batches 1..``batch`` of every input with a free first dimension.

    The same profiles the node builds for ``batch_size`` (``options.batch_shapes``).

    :raises UserError: the model has no free batch dimension and a fixed one other than batch.
    """
    from tx2_inference.backends.tensorrt.builder import onnx_inputs
    from tx2_inference.backends.tensorrt.options import batch_shapes
    profiles = batch_shapes(onnx_inputs(onnx_path), batch, strict=True)
    return ','.join('{}:{}'.format(name, ':'.join('x'.join(str(d) for d in s) for s in shapes))
                    for name, shapes in profiles.items())


def refuse_unready_qdq(onnx_path: str) -> None:
    """Refuse a Q/DQ model TensorRT cannot build as explicit INT8, saying why and what to do.

    E.g. a TensorFlow Model Optimization QAT model: UINT8 Q/DQ with zero point 127 and no
    weight Q/DQ. TensorRT's parser would reject the zero points with a bare error
    (NVIDIA/TensorRT#2774).
    """
    if not os.path.isfile(onnx_path):
        return  # the builder says the model is missing
    from tx2_inference.backends.tensorrt import qdq
    try:
        verdict = qdq.readiness(onnx_path)
    except UserError:
        return  # not readable as ONNX: the build says so, after its GPU and TensorRT checks
    if verdict.advisory and not verdict.refused:
        LOG.warning('%s: %s', onnx_path, verdict.summary())
    if verdict.refused:
        raise UserError('{}: a Q/DQ model TensorRT cannot build: {} Run it as it is with ONNX '
                        'Runtime (or its TFLite export), quantize it symmetric for TensorRT '
                        '(the QAT recipe in tx2_inference.convert.workstation.qat, or tx2-convert '
                        'quantize on the FP32 model), or fold it to FP32 for FP16 '
                        '(tx2-convert fold-qdq).'.format(onnx_path, verdict.summary()))


def cmd_engine(args: argparse.Namespace) -> int:
    """`engine`: ONNX -> TensorRT engine on this device, through the engine cache."""
    from tx2_inference.backends.tensorrt import builder as engine_builder
    refuse_unready_qdq(args.onnx)
    if args.batch and not args.shapes:
        args.shapes = batch_profiles(args.onnx, args.batch) or None
    opts = engine_builder.BuildOptions(
        precision=args.precision, workspace_mb=args.workspace_mb, dla_core=args.dla_core,
        calib_images=args.calib_images, calib_cache=args.calib_cache,
        calibrator=args.calibrator, calib_batch=args.calib_batch,
        calib_limit=args.calib_limit, timing_cache=args.timing_cache,
        shapes=engine_builder.parse_shape_profiles(args.shapes), config_path=args.config,
        profiles=args.profiles, version_compatible=args.version_compatible)
    path = engine_builder.build_or_load(args.onnx, opts, cache_dir=args.cache_dir,
                                        output=args.output, force=args.force)
    print('Engine: {}'.format(path))
    if args.prune is not None:
        from tx2_inference.backends.tensorrt.cache import EngineCache
        cache = EngineCache(args.cache_dir or os.path.join(
            os.path.dirname(os.path.abspath(args.onnx)), 'engines'))
        stem = os.path.splitext(os.path.basename(args.onnx))[0]
        for removed in cache.prune(args.prune, stem):
            print('Pruned: {}'.format(removed))
    return 0


def cmd_quantize(args: argparse.Namespace) -> int:
    """`quantize`: ONNX -> INT8 ONNX (ONNX Runtime static quantization)."""
    from tx2_inference.convert import quantize
    report = quantize.quantize(args.onnx, args.output, args.calib_images, fmt=args.format,
                               config_path=args.config, limit=args.calib_limit,
                               method=args.method, per_channel=not args.per_tensor,
                               measure=not args.no_measure, force=args.force,
                               calib_cache=args.calib_cache, float_tail=not args.quantize_tail)
    print(report.summary())
    return 0


def cmd_fold_qdq(args: argparse.Namespace) -> int:
    """`fold-qdq`: Q/DQ ONNX -> FP32 weights (for FP16 on devices without INT8), checked."""
    from tx2_inference.convert import fold_qdq
    report = fold_qdq.fold_file(args.onnx, args.output, images=args.images,
                                config_path=args.config, atol=args.atol, rtol=args.rtol,
                                force=args.force)
    print(fold_qdq.summary(report))
    return 0


def cmd_tflite(args: argparse.Namespace) -> int:
    """`tflite`: SavedModel / frozen graph -> TFLite FP32, FP16 or INT8."""
    from tx2_inference.convert import outputs
    from tx2_inference.convert.workstation import tf_lite
    _check_config_args(args)
    outputs.check_output(args.output, [args.model], args.force)
    result = tf_lite.convert(args.model, args.output, precision=args.precision,
                             inputs=args.inputs, outputs=args.outputs, tag=args.tag,
                             signature_name=args.signature, calib_images=args.calib_images,
                             calib_limit=args.calib_limit, input_overrides=_input_overrides(args),
                             labels=args.labels, decoder_type=args.decoder,
                             decoder_options=decoder_options(args),
                             int8_io=args.int8_io, detection=detection_defaults(args),
                             force=args.force)
    print(result)
    return report_incomplete(result.config_path, result.decoder)


def cmd_evaluate(args: argparse.Namespace) -> int:
    """`evaluate`: mAP, agreement and latency of each model on a COCO-format set."""
    from tx2_inference.convert.workstation import evaluate
    report = evaluate.run(args.images, args.annotations, args.out, tf=args.tf,
                          tf_config=args.tf_config, onnx=args.onnx, tflite=args.tflite,
                          engine=args.engine, score_threshold=args.score_threshold,
                          repeats=args.repeats, every=args.every, max_frames=args.max_frames,
                          start=args.start)
    print(report)
    return 0


def cmd_triton_repo(args: argparse.Namespace) -> int:
    """`triton-repo`: a Triton model repository entry (config.pbtxt checked by its schema)."""
    from tx2_inference.convert import triton_repo
    extra = None
    if args.extra:
        extra = args.extra
        if os.path.isfile(extra):
            with open(extra) as f:
                extra = f.read()
    paths = triton_repo.write_repository(
        args.model, args.output, name=args.name, version=args.version,
        max_batch_size=args.max_batch_size, dynamic_batching=not args.no_dynamic_batching,
        queue_delay_us=args.max_queue_delay_us, instances=args.instances, kind=args.kind,
        config_path=args.config, onnx_path=args.onnx, extra=extra, force=args.force)
    print('Wrote {} ({}): {}, {} and {}.'.format(
        paths['folder'], paths['platform'], paths['config'], paths['model'],
        paths['model_config']))
    if paths['platform'] == 'tensorrt_plan':
        print('A TensorRT engine runs only on the GPU model and TensorRT version it was built '
              "for: build it on the server's GPU (same TensorRT as the Triton release), or "
              'serve the ONNX model instead.')
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Return the `tx2-convert` argument parser."""
    parser = argparse.ArgumentParser(
        prog='tx2-convert', description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('-v', '--verbose', action='store_true', help='debug logging')
    sub = parser.add_subparsers(dest='command')

    p = sub.add_parser('onnx', help='SavedModel or frozen graph -> ONNX (validated vs TF)')
    p.add_argument('model', help='SavedModel folder or frozen GraphDef (.pb)')
    p.add_argument('-o', '--output', help='ONNX file to write (its .yaml config beside it)')
    p.add_argument('--tag', default='serve', help='SavedModel tag set (comma separated)')
    p.add_argument('--signature', default='serving_default', help='SavedModel signature')
    p.add_argument('--inputs', help='input tensors with fixed shapes: name:0[1,300,300,3],...')
    p.add_argument('--outputs', help='output tensors, to cut the graph: A:0,B:0')
    p.add_argument('--opset', type=int, default=13)
    p.add_argument('--no-fold', action='store_true', help='skip constant folding')
    p.add_argument('--validate-images', help='folder of sample images for the TF comparison '
                   '(default: seeded random inputs)')
    p.add_argument('--atol', type=float, default=None,
                   help='TF check: absolute tolerance of every output without its own '
                   '(default 1e-3; 0.05 for a fake-quant/QAT graph: INT8 rounding at .5 '
                   'boundaries can differ between TF and ONNX Runtime)')
    p.add_argument('--rtol', type=float, default=1e-3,
                   help='TF check: relative tolerance of every output without its own')
    p.add_argument('--tolerance', action='append', default=[],
                   metavar='NAME[COLUMNS]=ATOL[:RTOL]',
                   help="TF check: one output's own tolerance, by the name the check prints, "
                   'or of columns of its last axis: NAME[0:4]=0.5 (columns 0-3), NAME[4]=0.01 '
                   '(a packed top-K: pixels, score and class differ); repeatable')
    p.add_argument('--order-free', metavar='A,B', help='TF check: compare these outputs as '
                   'detections (rows matched by value, not position); outputs computed from '
                   'a TopK or NMS always are')
    p.add_argument('--list-tensors', action='store_true',
                   help="print the signature's and the graph's tensors with their shapes and "
                   'exit (no conversion)')
    p.add_argument('--match', metavar='SUBSTRING',
                   help='with --list-tensors: only tensors whose name contains it')
    p.add_argument('--force', action='store_true', help='replace an existing output and a '
                   'hand-edited config (.bak copies kept)')
    p.add_argument('--batch', metavar='N|dynamic',
                   help="frames per inference: the inputs' first dimension becomes N (or free "
                   'with dynamic), for batch_size N on several cameras (default: as the graph)')
    p.add_argument('--target', choices=TARGETS,
                   help='fit the model to this device or TensorRT release (e.g. tx2: uint8 '
                   'inputs become float32, checked in ONNX Runtime) and run the preflight '
                   '(tx2-convert check) on it')
    _add_config_args(p)
    p.set_defaults(func=cmd_onnx)

    p = sub.add_parser('engine', help='ONNX -> TensorRT engine (on the target device)')
    p.add_argument('onnx')
    p.add_argument('-o', '--output', help='copy the engine here (default: the cache only)')
    p.add_argument('--precision', default='auto', choices=PRECISIONS,
                   help="auto (default, as the node's precision parameter, so the node finds "
                   'this engine in the cache): the best this GPU has (FP16 on a TX2; INT8 where '
                   'the GPU has it and the model is Q/DQ or calibrated); int8 is refused on a '
                   'GPU without it')
    p.add_argument('--config', help='model config (default: beside the ONNX)')
    p.add_argument('--cache-dir', help='engine cache folder (default: beside the ONNX)')
    p.add_argument('--workspace-mb', type=int, default=1024)
    p.add_argument('--dla-core', type=int, default=None, help='Xavier/Orin DLA core')
    p.add_argument('--calib-images', help='INT8 (TensorRT <= 10): folder of images')
    p.add_argument('--calib-cache', help='INT8 calibration cache file (read and written)')
    p.add_argument('--calibrator', default='entropy', choices=['entropy', 'minmax'])
    p.add_argument('--calib-batch', type=int, default=8)
    p.add_argument('--calib-limit', type=int, default=256)
    p.add_argument('--timing-cache', help='timing cache file (read and written)')
    p.add_argument('--shapes', help='dynamic input profiles: name:min:opt:max with shapes '
                   'as 1x3x300x300, e.g. input:1x3x300x300:4x3x300x300:8x3x300x300')
    p.add_argument('--profiles', type=int, default=2, metavar='N',
                   help='dynamic inputs: N identical optimisation profiles, one per executor '
                   "slot (the node's executor_depth; TensorRT lets one slot use a profile at "
                   'a time). Static models ignore it (default: 2)')
    p.add_argument('--version-compatible', action='store_true',
                   help='TensorRT 8.6+: build with VERSION_COMPATIBLE | EXCLUDE_LEAN_RUNTIME so '
                   'the runtime-only tensorrt_lean package can run it (no plugin ops)')
    p.add_argument('--batch', type=int, metavar='N',
                   help='a dynamic-batch ONNX: profiles for batches 1..N (what --shapes '
                   'would say), for batch_size up to N')
    p.add_argument('--force', action='store_true', help='rebuild even if cached')
    p.add_argument('--prune', type=int, metavar='N', help="then delete all but this model's N "
                   'newest engines in the cache (older ONNX versions, other options)')
    p.set_defaults(func=cmd_engine)

    p = sub.add_parser('quantize', help='ONNX -> INT8 ONNX (ONNX Runtime static, calibrated)')
    p.add_argument('onnx')
    p.add_argument('-o', '--output', required=True)
    p.add_argument('--calib-images', required=True)
    p.add_argument('--calib-limit', type=int, default=64)
    p.add_argument('--config', help='model config (default: beside the ONNX)')
    p.add_argument('--format', default='qdq', choices=['qdq', 'qoperator'],
                   help='qdq: symmetric S8S8 QDQ for TensorRT (slow on ORT CPU); qoperator: '
                   'U8S8 QOperator for ONNX Runtime on CPU')
    p.add_argument('--method', default='minmax', choices=['minmax', 'entropy', 'percentile'],
                   help='calibration (docs/PRECISION.md, table): minmax (default; as good as '
                   'percentile at 8-128 frames, and faster); percentile; entropy (clips '
                   'detection heads: the worst on the person model)')
    p.add_argument('--per-tensor', action='store_true', help='per-tensor weight scales')
    p.add_argument('--calib-cache', metavar='FILE.json', help='activation ranges: read if '
                   'present (same --method), else written (ONNX Runtime >= 1.32)')
    p.add_argument('--quantize-tail', action='store_true',
                   help='also quantize the ops after the last Conv/Gemm/MatMul (box decoding, '
                   'score activation); by default they stay float: on the person model that '
                   'keeps mAP@.5:.95 against FP32 at 0.92 instead of 0.46 (docs/PRECISION.md)')
    p.add_argument('--no-measure', action='store_true', help='skip the speed measurement')
    p.add_argument('--force', action='store_true', help='replace an existing output and a '
                   'hand-edited config (.bak copies kept); never the input')
    p.set_defaults(func=cmd_quantize)

    p = sub.add_parser('fold-qdq', help='Q/DQ (QAT/PTQ INT8) ONNX -> FP32 weights, for FP16 '
                       'on devices without INT8 (Tegra X2); checked against it in ORT')
    p.add_argument('onnx')
    p.add_argument('-o', '--output', required=True)
    p.add_argument('--images', help='folder of images for the check (default: seeded random '
                   'inputs), prepared by the model config')
    p.add_argument('--config', help='model config (default: beside the ONNX)')
    p.add_argument('--atol', type=float, default=0.05,
                   help='check: largest |folded - Q/DQ| allowed, plus --rtol x max|Q/DQ|')
    p.add_argument('--rtol', type=float, default=0.1)
    p.add_argument('--force', action='store_true', help='replace an existing output (a .bak '
                   'copy is kept)')
    p.set_defaults(func=cmd_fold_qdq)

    p = sub.add_parser('tflite', help='SavedModel or frozen graph -> TFLite')
    p.add_argument('model')
    p.add_argument('-o', '--output', required=True)
    p.add_argument('--precision', default='fp32', choices=FIXED_PRECISIONS)
    p.add_argument('--tag', default='serve')
    p.add_argument('--signature', default='serving_default')
    p.add_argument('--inputs', help='frozen graph / cut: name[1,300,300,3]')
    p.add_argument('--outputs', help='frozen graph / cut: A,B')
    p.add_argument('--calib-images', help='representative dataset for INT8')
    p.add_argument('--calib-limit', type=int, default=64)
    p.add_argument('--force', action='store_true', help='replace an existing output and a '
                   'hand-edited config (.bak copies kept)')
    p.add_argument('--int8-io', action='store_true',
                   help='with --precision int8: int8 input and outputs (full-integer model)')
    _add_config_args(p)
    p.set_defaults(func=cmd_tflite)

    p = sub.add_parser('evaluate', help='mAP / agreement / latency side by side: against '
                       'labels, or (no --annotations) against the FP32 reference on footage')
    p.add_argument('--images', '--footage', dest='images', required=True,
                   help='folder of images, or (reference mode) a video file')
    p.add_argument('--annotations', help='COCO-format JSON of the images; without it: '
                   'reference mode, every model scored against the first (--tf, else the '
                   'first --onnx)')
    p.add_argument('--every', type=int, default=1, metavar='N',
                   help='reference mode: every Nth frame of the video or folder')
    p.add_argument('--max-frames', type=int, default=None, metavar='N',
                   help='reference mode: at most N frames')
    p.add_argument('--start', type=int, default=0, help='reference mode: first frame index')
    p.add_argument('--tf', help='original TensorFlow model (SavedModel or frozen graph)')
    p.add_argument('--tf-config', help="model config for the TF model (default: the ONNX's)")
    p.add_argument('--onnx', action='append', default=[], metavar='[LABEL=]MODEL',
                   help='ONNX model (repeatable)')
    p.add_argument('--tflite', action='append', default=[], metavar='[LABEL=]MODEL',
                   help='TFLite model (repeatable)')
    p.add_argument('--engine', action='append', default=[], metavar='[LABEL=]MODEL',
                   help='TensorRT engine (skipped with a note where it cannot run)')
    p.add_argument('--score-threshold', type=float, default=0.05)
    p.add_argument('--out', default='output/evaluate', help='report folder')
    p.add_argument('--repeats', type=int, default=3, help='latency runs per image')
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser('triton-repo', help='ONNX or TensorRT engine -> Triton model repository')
    p.add_argument('model', help='.onnx model or TensorRT engine (.engine, .plan)')
    p.add_argument('-o', '--output', default='model_repository',
                   help='the repository folder (default: model_repository)')
    p.add_argument('--name', help="the model's name on the server (default: the file's)")
    p.add_argument('--version', type=int, default=1, help='version folder (default: 1)')
    p.add_argument('--config', help='model config YAML (default: beside the model)')
    p.add_argument('--onnx', help='engine only: the ONNX it was built from (its tensors)')
    p.add_argument('--max-batch-size', type=int, default=None,
                   help='0: no batching; default: 8 when the first dimension of every tensor '
                   'is dynamic, else 0')
    p.add_argument('--no-dynamic-batching', action='store_true',
                   help='no dynamic batching (default: on when batching)')
    p.add_argument('--max-queue-delay-us', type=int, default=100,
                   help='dynamic batching: the longest a request waits for others (us)')
    p.add_argument('--instances', type=int, default=1, help='model instances (default: 1)')
    p.add_argument('--kind', default='gpu', choices=['gpu', 'cpu'],
                   help='instance kind (default: gpu)')
    p.add_argument('--extra', help='ModelConfig text (or a file of it) merged into '
                   'config.pbtxt, e.g. optimization settings; checked by the schema')
    p.add_argument('--force', action='store_true', help='replace an existing model folder')
    p.set_defaults(func=cmd_triton_repo)

    p = sub.add_parser('check', help="preflight: will the target's TensorRT take this ONNX? "
                       '(any machine, no TensorRT; exit 1 on any problem)')
    p.add_argument('onnx', nargs='?')
    p.add_argument('--target', choices=TARGETS,
                   help="a Jetson (its JetPack's TensorRT: tx2 and nano 8.0 and 8.2, xavier "
                   '8.5, orin 10) or a TensorRT release')
    p.add_argument('--sources', action='store_true',
                   help='also print the support data checked against (repo, branch, commit)')
    p.add_argument('--list-targets', action='store_true',
                   help='print the device table (compute capability, FP16, INT8, DLA, JetPack '
                   '-> TensorRT) and exit')
    p.set_defaults(func=cmd_check)

    p = sub.add_parser('retarget', help='fit an ONNX model to a target (uint8 inputs -> float32 '
                       'for TensorRT < 8.5), then check it')
    p.add_argument('onnx')
    p.add_argument('--target', required=True, choices=TARGETS)
    p.add_argument('-o', '--output', required=True, help='the fitted model (never the one it '
                   'reads); its .yaml config is written beside it')
    p.add_argument('--force', action='store_true', help='replace an existing output (a .bak '
                   'copy is kept)')
    p.set_defaults(func=cmd_retarget)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Run `tx2-convert`; return the exit status (0 ok, 2 user error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format='%(message)s')
    if not args.verbose:
        for noisy in ('tf2onnx', 'tensorflow', 'absl'):
            logging.getLogger(noisy).setLevel(logging.ERROR)
    if not getattr(args, 'func', None):
        parser.print_help()
        return EXIT_USER_ERROR
    if args.command in ('onnx', 'tflite', 'evaluate'):
        # TensorFlow, the reference, runs its deterministic kernels (before it is imported).
        from tx2_inference.convert.workstation.tf_runner import use_reference_kernels
        use_reference_kernels()
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        print('tx2-convert {}: error: {}'.format(args.command, e), file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == '__main__':
    sys.exit(main())
