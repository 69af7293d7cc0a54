#!/usr/bin/env python3
"""The precision trade-off of the default person model on real footage, in one command.

Builds every variant of ``models/ssdlite_person`` with ``tx2-convert`` (ONNX Runtime INT8 QDQ
per calibration method, QOperator, the Q/DQ model folded to FP32 weights, TFLite FP16 and
INT8), then runs ``tx2-convert evaluate`` in reference mode (the TensorFlow SavedModel is the
reference) on frames of OpenCV's ``vtest.avi`` (tools/get_footage.py), and, with
``--calibration``, the calibration table: INT8 QDQ against ONNX Runtime FP32 for 8, 32 and 128
calibration frames x MinMax/Entropy/Percentile x per-channel/per-tensor weights.

Calibration frames (3, 9, 15, ... of the video) and evaluation frames (0, 2, 4, ...) never
overlap. Everything goes to ``--out`` (default output/precision): the variants,
``evaluate/summary.{md,json,png}`` and ``calibration.{md,json}``.

Usage::

    python tools/precision_study.py [--frames 300] [--calibration] [--calib-eval-frames 150]
"""

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

MODELS = os.path.join(ROOT, 'models')
ONNX = os.path.join(MODELS, 'ssdlite_person.onnx')
FROZEN = os.path.join(MODELS, 'ssdlite_person_frozen.pb')
SAVED = os.path.join(MODELS, 'ssdlite_person_savedmodel')
TFLITE_CUT = ['--inputs', 'Preprocessor/sub[1,300,300,3]', '--outputs',
              'Postprocessor/ExpandDims_1,Postprocessor/convert_scores', '--labels', 'person',
              '--background-class', '0']
METHODS = ('minmax', 'entropy', 'percentile')
SIZES = (8, 32, 128)


def cli(*argv):
    """Run one tx2-convert command in this process; raise if it fails."""
    from tx2_inference.convert.cli import main
    print('$ tx2-convert ' + ' '.join(argv), flush=True)
    status = main(list(argv))
    if status != 0:
        raise SystemExit('tx2-convert {} failed ({})'.format(argv[0], status))


def footage():
    """Return the checked path of vtest.avi."""
    out = subprocess.run([sys.executable, os.path.join(ROOT, 'tools', 'get_footage.py')],
                         stdout=subprocess.PIPE, universal_newlines=True, check=True)
    return out.stdout.strip().splitlines()[-1]


def calibration_sets(video, out):
    """Write 128 calibration frames (3, 9, 15, ...) and the 8/32 subsets spread over them."""
    from tx2_inference.convert.workstation import footage as fmod
    frames = fmod.read_frames(video, every=6, limit=max(SIZES), start=3)
    sets = {}
    for n in SIZES:
        folder = os.path.join(out, 'calib_{}'.format(n))
        step = len(frames) // n
        if not os.path.isdir(folder):
            fmod.write_frames(frames[::step][:n], folder)
        sets[n] = folder
    return sets


def variants(out, calib):
    """Convert every variant; return the evaluate arguments (LABEL=path)."""
    from tx2_inference.backends.tensorrt import qdq as qdqmod
    args = ['--onnx', 'ORT FP32=' + ONNX]
    for method in METHODS:
        path = os.path.join(out, 'int8_qdq_{}.onnx'.format(method))
        if not os.path.exists(path):
            cli('quantize', ONNX, '-o', path, '--calib-images', calib, '--method', method,
                '--no-measure')
        args += ['--onnx', 'INT8 QDQ {}={}'.format(method, path)]
    path = os.path.join(out, 'int8_qoperator.onnx')
    if not os.path.exists(path):
        cli('quantize', ONNX, '-o', path, '--calib-images', calib, '--format', 'qoperator',
            '--no-measure')
    args += ['--onnx', 'INT8 QOperator minmax=' + path]
    folded = os.path.join(out, 'int8_qdq_minmax_folded.onnx')
    if not os.path.exists(folded):
        cli('fold-qdq', os.path.join(out, 'int8_qdq_minmax.onnx'), '-o', folded)
    assert qdqmod.count_qdq(folded) == (0, 0)
    args += ['--onnx', 'QDQ minmax folded to FP32=' + folded]
    for precision in ('fp16', 'int8'):
        path = os.path.join(out, 'tflite_{}.tflite'.format(precision))
        if not os.path.exists(path):
            cli('tflite', FROZEN, '-o', path, '--precision', precision, '--calib-images',
                calib, *TFLITE_CUT)
        args += ['--tflite', 'TFLite {}={}'.format(precision.upper(), path)]
    return args


def calibration_table(out, sets, video, frames):
    """Quantize 18 QDQ models and score each against ORT FP32 on the same frames."""
    from tx2_inference.convert import quantize
    from tx2_inference.convert.workstation import evaluate as ev
    from tx2_inference.convert.workstation import footage as fmod
    from tx2_inference.convert.workstation import reference as ref
    from tx2_inference.core.decoders import DetectionParams
    t0 = time.time()
    os.makedirs(os.path.join(out, 'calib'), exist_ok=True)
    rows, paths = [], []
    for n in SIZES:
        for method in METHODS:
            for per_channel in (True, False):
                path = os.path.join(out, 'calib', 'qdq_{}_{}_{}.onnx'.format(
                    n, method, 'pc' if per_channel else 'pt'))
                t = time.time()
                if not os.path.exists(path):  # per-tensor reuses per-channel's ranges
                    quantize.quantize(ONNX, path, sets[n], limit=n, method=method,
                                      per_channel=per_channel, measure=False,
                                      calib_cache=os.path.join(out, 'calib', 'ranges_{}_{}.json'
                                                               .format(n, method)))
                rows.append({'frames': n, 'method': method, 'per_channel': per_channel,
                             'calibration_s': time.time() - t})
                paths.append(path)
    t_quant = time.time() - t0
    params = DetectionParams(score_threshold=0.05, iou_threshold=0.45, max_detections=100)
    evals = fmod.read_frames(video, every=4, limit=frames, start=0)
    runners = [ev.detector_runner('ORT FP32', 'onnx', ONNX, params, threads=1)]
    runners += [ev.detector_runner(os.path.basename(p), 'onnx', p, params, threads=1)
                for p in paths]
    try:
        dets, times = ref.run_models(runners, evals)
    finally:
        for r in runners:
            r.close()
    gt = ref._coco_gt(dets[0], [img.shape[:2] for _, img in evals])
    for i, row in enumerate(rows, start=1):
        row.update(ref.score_variant(dets[0], dets[i], gt))
    result = {'eval_frames': len(evals), 'eval_every': 4, 'reference_boxes':
              len(gt.dataset['annotations']), 'quantize_s': t_quant,
              'evaluate_s': time.time() - t0 - t_quant, 'rows': rows}
    with open(os.path.join(out, 'calibration.json'), 'w') as f:
        json.dump(result, f, indent=1)
    lines = ['INT8 QDQ (S8S8) against ONNX Runtime FP32 on {} frames of vtest.avi (0, 4, 8, '
             '...; {} reference boxes >= 0.5); calibration frames 3, 9, 15, ... '
             '(quantize {:.0f} s, evaluate {:.0f} s; per-tensor rows reuse the per-channel '
             "row's activation ranges, a calibration cache).".format(
                 len(evals), result['reference_boxes'], t_quant, result['evaluate_s']), '',
             '| calib frames | method | weights | mAP@0.5 | mAP@.5:.95 | recall@0.5 | mean IoU '
             '| score drift | changed frames | quantize s |',
             '|---:|---|---|---:|---:|---:|---:|---:|---:|---:|']
    for r in rows:
        lines.append('| {} | {} | {} | {:.3f} | {:.3f} | {:.3f} | {:.3f} | {:.3f} | {:.0%} | '
                     '{:.0f} |'.format(r['frames'], r['method'],
                                       'per-channel' if r['per_channel'] else 'per-tensor',
                                       r['map50'], r['map50_95'], r['recall'], r['mean_iou'],
                                       r['score_drift'], r['changed_share'],
                                       r['calibration_s']))
    text = '\n'.join(lines) + '\n'
    with open(os.path.join(out, 'calibration.md'), 'w') as f:
        f.write(text)
    print(text)


def main():
    """Build the variants, evaluate them, optionally the calibration table."""
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--out', default=os.path.join(ROOT, 'output', 'precision'))
    p.add_argument('--frames', type=int, default=300, help='evaluation frames (every 2nd)')
    p.add_argument('--calib-frames', type=int, default=32, choices=SIZES,
                   help='calibration frames of the variants')
    p.add_argument('--calibration', action='store_true', help='also the calibration table')
    p.add_argument('--calib-eval-frames', type=int, default=150,
                   help='calibration table: evaluation frames (every 4th)')
    p.add_argument('--no-variants', action='store_true', help='only the calibration table')
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    video = footage()
    sets = calibration_sets(video, a.out)
    t0 = time.time()
    if not a.no_variants:
        args = variants(a.out, sets[a.calib_frames])
        t1 = time.time()
        cli('evaluate', '--footage', video, '--every', '2', '--max-frames', str(a.frames),
            '--tf', SAVED, '--tf-config', os.path.splitext(ONNX)[0] + '.yaml',
            '--out', os.path.join(a.out, 'evaluate'), *args)
        print('variants {:.0f} s, evaluate {:.0f} s'.format(t1 - t0, time.time() - t1))
    if a.calibration:
        calibration_table(a.out, sets, video, a.calib_eval_frames)
    print('total {:.0f} s'.format(time.time() - t0))


if __name__ == '__main__':
    main()
