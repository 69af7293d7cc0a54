"""`tx2-convert`: TensorFlow model -> ONNX -> TensorRT engine / INT8 QDQ ONNX / TFLite.

Subcommands::

    tx2-convert onnx MODEL -o model.onnx [--inputs T[1,H,W,3]] [--outputs A,B] [...]
    tx2-convert engine model.onnx [--precision fp16|int8] [--calib-images DIR] [...]
    tx2-convert quantize model.onnx --calib-images DIR -o model_int8.onnx [--format qdq]
    tx2-convert tflite MODEL -o model.tflite [--precision int8 --calib-images DIR [--int8-io]]
    tx2-convert evaluate --images DIR --annotations coco.json --tf MODEL --onnx m.onnx ...

Runs on the robot (Python 3.6): TensorFlow, TensorRT and ONNX Runtime are imported only by
the subcommand that needs them. A problem the user can fix prints one line (what was wrong,
what to do) and exits with status 2; nothing partial is written.
"""

import argparse
import logging
import sys
from typing import Any, Dict, List, Optional

from tx2_inference.backends import PRECISIONS
from tx2_inference.errors import UserError

LOG = logging.getLogger('tx2_inference.convert')

EXIT_USER_ERROR = 2


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
    g.add_argument('--layout', choices=['nhwc', 'nchw'])
    g.add_argument('--color', choices=['rgb', 'bgr', 'mono'])
    g.add_argument('--resize', choices=['stretch', 'letterbox'])
    g.add_argument('--scale', type=float, help='value = (pixel * scale - mean) / std')
    g.add_argument('--mean', type=_floats)
    g.add_argument('--std', type=_floats)
    g.add_argument('--decoder', default='boxes_scores',
                   help='tf_od_api | boxes_scores | efficient_nms | yolov5 | yolov8 | generic')
    g.add_argument('--boxes', help='boxes output (default: the first output)')
    g.add_argument('--scores', help='scores output (default: the second output)')
    g.add_argument('--box-format', default='yxyx', choices=['yxyx', 'xyxy', 'cxcywh'])
    g.add_argument('--box-units', default='normalized', choices=['normalized', 'pixels'])
    g.add_argument('--score-activation', default='none', choices=['none', 'sigmoid', 'softmax'])
    g.add_argument('--background-class', type=int, default=None,
                   help='index of a background score column to drop')


def _input_overrides(args: argparse.Namespace) -> Dict[str, Any]:
    """Return the config's input keys given on the command line."""
    return {'layout': args.layout, 'color': args.color, 'resize': args.resize,
            'scale': args.scale, 'mean': args.mean, 'std': args.std}


def _decoder(args: argparse.Namespace, outputs: List[str]) -> Dict[str, Any]:
    """Return the config's decoder section from the options and the model's outputs."""
    dec = {'type': args.decoder}  # type: Dict[str, Any]
    if args.decoder == 'boxes_scores':
        dec['boxes'] = args.boxes or (outputs[0] if outputs else None)
        dec['scores'] = args.scores or (outputs[1] if len(outputs) > 1 else None)
        dec['box_format'] = args.box_format
        dec['box_units'] = args.box_units
        dec['score_activation'] = args.score_activation
        dec['background_class'] = args.background_class
    return dec


def _check_config_args(args: argparse.Namespace) -> None:
    """Validate the config options before any conversion, so a bad one writes nothing."""
    from tx2_inference.core.model_config import ModelConfig
    ModelConfig.from_dict({'input': _input_overrides(args),
                           'decoder': {'type': args.decoder}})


def cmd_onnx(args: argparse.Namespace) -> int:
    """`onnx`: SavedModel / frozen graph -> ONNX, validated, with its model config."""
    from tx2_inference.convert import config as cfgmod
    from tx2_inference.convert.workstation import tf_onnx
    _check_config_args(args)
    if args.list_tensors:
        for line in tf_onnx.list_tensors(args.model, args.tag, args.list_tensors):
            print(line)
        return 0
    if not args.output:
        raise UserError('Pass the output path: -o model.onnx.')
    result = tf_onnx.convert(
        args.model, args.output, inputs=args.inputs, outputs=args.outputs, tag=args.tag,
        signature_name=args.signature, opset=args.opset, fold=not args.no_fold,
        validate_images=args.validate_images, input_cfg=_input_overrides(args),
        atol=args.atol, rtol=args.rtol)
    name, shape, onnx_type = result.inputs[0]
    dtype = {'tensor(uint8)': 'uint8', 'tensor(float)': 'float32',
             'tensor(float16)': 'float16'}.get(onnx_type, onnx_type)
    cfg = cfgmod.build(name, shape, dtype, _input_overrides(args),
                       _decoder(args, result.outputs), cfgmod.parse_labels(args.labels))
    cfg_path = cfgmod.config_path_for(args.output)
    cfgmod.save(cfg_path, cfg, header='Written by tx2-convert onnx from {}.'.format(args.model))
    print('Wrote {} and {} ({:.1f} s).'.format(args.output, cfg_path, result.seconds))
    for out, d in sorted(result.diffs.items()):
        print('  vs TensorFlow  {:<40s} max abs {:.3g}  max rel {:.3g}'.format(
            out, d['max_abs'], d['max_rel']))
    return 0


def cmd_engine(args: argparse.Namespace) -> int:
    """`engine`: ONNX -> TensorRT engine on this device, through the engine cache."""
    from tx2_inference.backends.tensorrt import builder as engine_builder
    opts = engine_builder.BuildOptions(
        precision=args.precision, workspace_mb=args.workspace_mb, dla_core=args.dla_core,
        calib_images=args.calib_images, calib_cache=args.calib_cache,
        calibrator=args.calibrator, calib_batch=args.calib_batch,
        calib_limit=args.calib_limit, timing_cache=args.timing_cache,
        shapes=engine_builder.parse_shape_profiles(args.shapes), config_path=args.config,
        profiles=args.profiles)
    path = engine_builder.build_or_load(args.onnx, opts, cache_dir=args.cache_dir,
                                        output=args.output, force=args.force)
    print('Engine: {}'.format(path))
    return 0


def cmd_quantize(args: argparse.Namespace) -> int:
    """`quantize`: ONNX -> INT8 ONNX (ONNX Runtime static quantization)."""
    from tx2_inference.convert import quantize
    report = quantize.quantize(args.onnx, args.output, args.calib_images, fmt=args.format,
                               config_path=args.config, limit=args.calib_limit,
                               method=args.method, per_channel=not args.per_tensor,
                               measure=not args.no_measure)
    print(report.summary())
    return 0


def cmd_tflite(args: argparse.Namespace) -> int:
    """`tflite`: SavedModel / frozen graph -> TFLite FP32, FP16 or INT8."""
    from tx2_inference.convert.workstation import tf_lite
    _check_config_args(args)
    result = tf_lite.convert(args.model, args.output, precision=args.precision,
                             inputs=args.inputs, outputs=args.outputs, tag=args.tag,
                             signature_name=args.signature, calib_images=args.calib_images,
                             calib_limit=args.calib_limit, input_overrides=_input_overrides(args),
                             labels=args.labels, decoder=_decoder(args, []), args=args,
                             int8_io=args.int8_io)
    print(result)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """`evaluate`: mAP, agreement and latency of each model on a COCO-format set."""
    from tx2_inference.convert.workstation import evaluate
    report = evaluate.run(args)
    print(report)
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
    p.add_argument('--atol', type=float, default=1e-3)
    p.add_argument('--rtol', type=float, default=1e-3)
    p.add_argument('--list-tensors', nargs='?', const='', metavar='SUBSTRING',
                   help="print the graph's tensors (optionally matching) and exit")
    _add_config_args(p)
    p.set_defaults(func=cmd_onnx)

    p = sub.add_parser('engine', help='ONNX -> TensorRT engine (on the target device)')
    p.add_argument('onnx')
    p.add_argument('-o', '--output', help='copy the engine here (default: the cache only)')
    p.add_argument('--precision', default='fp16', choices=PRECISIONS)
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
    p.add_argument('--force', action='store_true', help='rebuild even if cached')
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
    p.add_argument('--method', default='minmax', choices=['minmax', 'entropy', 'percentile'])
    p.add_argument('--per-tensor', action='store_true', help='per-tensor weight scales')
    p.add_argument('--no-measure', action='store_true', help='skip the speed measurement')
    p.set_defaults(func=cmd_quantize)

    p = sub.add_parser('tflite', help='SavedModel or frozen graph -> TFLite')
    p.add_argument('model')
    p.add_argument('-o', '--output', required=True)
    p.add_argument('--precision', default='fp32', choices=PRECISIONS)
    p.add_argument('--tag', default='serve')
    p.add_argument('--signature', default='serving_default')
    p.add_argument('--inputs', help='frozen graph / cut: name[1,300,300,3]')
    p.add_argument('--outputs', help='frozen graph / cut: A,B')
    p.add_argument('--calib-images', help='representative dataset for INT8')
    p.add_argument('--calib-limit', type=int, default=64)
    p.add_argument('--int8-io', action='store_true',
                   help='with --precision int8: int8 input and outputs (full-integer model)')
    _add_config_args(p)
    p.set_defaults(func=cmd_tflite)

    p = sub.add_parser('evaluate', help='mAP / agreement / latency side by side')
    p.add_argument('--images', required=True, help='folder of the labelled images')
    p.add_argument('--annotations', required=True, help='COCO-format JSON')
    p.add_argument('--tf', help='original TensorFlow model (SavedModel or frozen graph)')
    p.add_argument('--tf-config', help="model config for the TF model (default: the ONNX's)")
    p.add_argument('--onnx', action='append', default=[], help='ONNX model (repeatable)')
    p.add_argument('--tflite', action='append', default=[], help='TFLite model (repeatable)')
    p.add_argument('--engine', action='append', default=[], help='TensorRT engine')
    p.add_argument('--score-threshold', type=float, default=0.05)
    p.add_argument('--out', default='output/evaluate', help='report folder')
    p.add_argument('--repeats', type=int, default=3, help='latency runs per image')
    p.set_defaults(func=cmd_evaluate)
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
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        print('tx2-convert {}: error: {}'.format(args.command, e), file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == '__main__':
    sys.exit(main())
