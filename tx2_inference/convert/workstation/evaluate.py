"""Workstation only: `tx2-convert evaluate`, accuracy and speed of each model side by side.

Runs every given model (the TensorFlow original, ONNX FP32, INT8 ONNX, TFLite, a TensorRT
engine where a GPU is present) on a COCO-format labelled image set and reports:

- mAP@0.5 and mAP@0.5:0.95 (pycocotools ``COCOeval``, bbox), labels matched to COCO categories
  by name;
- agreement with the original (the first model): the share of its detections (score >= 0.5)
  that the model also finds (same class, IoU >= 0.5), their mean IoU and mean score change;
- latency: median wall time of one ``detect`` (preprocess + inference + decode), in ms.

ONNX, TFLite and engines run through the core's :class:`tx2_inference.detector.Detector`, as
on the robot. The TensorFlow original runs the same graph tensors the ONNX model was cut at,
through the same preprocessor and decoder, so the agreement column isolates conversion error.
Writes ``report.md``, ``report.json`` and ``report.png`` (matplotlib, Agg) to ``--out``.
"""

import json
import logging
import os
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from tx2_inference.convert import config as cfgmod
from tx2_inference.core import images as imgs
from tx2_inference.core.decoders import create_decoder, DetectionParams, Detections
from tx2_inference.core.fileio import atomic_path, atomic_write_text
from tx2_inference.errors import UserError

LOG = logging.getLogger('tx2_inference.convert')

AGREEMENT_SCORE = 0.5
AGREEMENT_IOU = 0.5


class ModelRunner(object):
    """A named model: ``detect(image_rgb) -> Detections`` in source pixels, and ``close()``."""

    def __init__(self, name: str, kind: str, path: str,
                 detect: Callable[[np.ndarray], Detections],
                 close: Callable[[], None]) -> None:
        """Hold the name, kind (tf/onnx/tflite/engine), file and callables."""
        self.name = name
        self.kind = kind
        self.path = path
        self.detect = detect
        self.close = close


def detector_runner(name: str, kind: str, path: str, params: DetectionParams,
                    threads: Optional[int] = None) -> ModelRunner:
    """Open ``path`` with the core Detector (backend from ``kind``)."""
    from tx2_inference.detector import Detector
    backend = {'onnx': 'onnxruntime', 'tflite': 'tflite', 'engine': 'tensorrt'}[kind]
    det = Detector(path, backend=backend, depth=1, threads=threads)
    det.params = params
    return ModelRunner(name, kind, path, lambda img: det.detect(img, 'rgb'), det.close)


def tf_runner(path: str, config_path: str, params: DetectionParams, tag: str = 'serve',
              threads: Optional[int] = None) -> ModelRunner:
    """Run the TensorFlow original on the tensors named by a (converted model's) config."""
    from tx2_inference.convert.workstation.tf_runner import TFRunner
    from tx2_inference.core.preprocess import Preprocessor
    cfg = cfgmod.load(config_path)
    inp, dec = cfg['input'], cfg['decoder']
    if not inp.get('name') or not inp.get('size'):
        raise UserError('{}: input.name and input.size are needed to run the TF model.'.format(
            config_path))
    names = [dec[k] for k in ('boxes', 'scores') if dec.get(k)]
    keys = list(names)  # as the decoder names them
    in_name = inp['name']
    from tx2_inference.convert.workstation.tf_runner import signature, source_kind
    if source_kind(path) == 'saved_model':  # a config may name the signature's keys
        sig = signature(path, tag, 'serving_default')
        in_name = sig.inputs[in_name][0] if in_name in sig.inputs else in_name
        names = [sig.outputs[n][0] if n in sig.outputs else n for n in names]
    runner = TFRunner(path, names, tag, threads=threads)
    dtype, _ = runner.tensor_dtype_shape(in_name)
    h, w = inp['size']
    shape = (1, h, w, 3) if inp.get('layout', 'nhwc') == 'nhwc' else (1, 3, h, w)
    pre = Preprocessor(inp, shape, dtype)
    buf = np.empty(shape, np.dtype(dtype))
    decoder = create_decoder(dec, cfg.get('labels') or [], (h, w))

    def detect(img: np.ndarray) -> Detections:
        transform = pre(img, 'rgb', buf)
        outputs = dict(zip(keys, runner.run({in_name: buf})))
        d = decoder(outputs, params)
        return Detections(transform.to_source(d.boxes), d.scores, d.class_ids, d.labels)
    return ModelRunner('TensorFlow (original)', 'tf', path, detect, runner.close)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Return the IoU of every box of ``a`` [N, 4] with every box of ``b`` [M, 4] (xyxy)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def agreement(reference: Sequence[Detections], other: Sequence[Detections]) -> Dict[str, float]:
    """Compare per-image detections (score >= 0.5) with the reference's; greedy IoU matching.

    :returns: ``recall`` (share of reference detections found), ``precision`` (share of the
        model's detections that match one), ``mean_iou`` and ``mean_score_diff`` of matches.
    """
    found = total_ref = total_other = 0
    ious, dscores = [], []  # type: List[float], List[float]
    for ref, det in zip(reference, other):
        rk = ref.scores >= AGREEMENT_SCORE
        ok = det.scores >= AGREEMENT_SCORE
        rb, rs, rc = ref.boxes[rk], ref.scores[rk], ref.class_ids[rk]
        ob, os_, oc = det.boxes[ok], det.scores[ok], det.class_ids[ok]
        total_ref += len(rb)
        total_other += len(ob)
        if not len(rb) or not len(ob):
            continue
        m = iou_matrix(rb, ob)
        m[rc[:, None] != oc[None, :]] = 0.0
        used = set()
        for i in np.argsort(-rs):
            j = int(np.argmax(np.where([k in used for k in range(len(ob))], -1.0, m[i])))
            if j not in used and m[i, j] >= AGREEMENT_IOU:
                used.add(j)
                found += 1
                ious.append(float(m[i, j]))
                dscores.append(abs(float(rs[i]) - float(os_[j])))
    return {'recall': found / float(total_ref) if total_ref else 1.0,
            'precision': found / float(total_other) if total_other else 1.0,
            'mean_iou': float(np.mean(ious)) if ious else float('nan'),
            'mean_score_diff': float(np.mean(dscores)) if dscores else float('nan'),
            'reference_detections': total_ref}


def coco_map(coco_gt: Any, results: List[Dict[str, Any]], image_ids: List[int]
             ) -> Dict[str, float]:
    """Return mAP@0.5 and mAP@0.5:0.95 of ``results`` (COCO result dicts) with pycocotools."""
    import contextlib
    import io

    from pycocotools.cocoeval import COCOeval
    if not results:
        return {'map50': 0.0, 'map50_95': 0.0}
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes(results)
        ev = COCOeval(coco_gt, coco_dt, 'bbox')
        ev.params.imgIds = image_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {'map50': max(float(ev.stats[1]), 0.0), 'map50_95': max(float(ev.stats[0]), 0.0)}


def evaluate(runners: List[ModelRunner], images_dir: str, annotations: str,
             repeats: int = 3) -> Dict[str, Any]:
    """Run every model on every labelled image; return the report data (first = reference)."""
    from pycocotools.coco import COCO
    if not os.path.isfile(annotations):
        raise UserError('Annotations {!r} do not exist: pass a COCO-format JSON.'.format(
            annotations))
    import contextlib
    import io
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(annotations)
    cats = {c['name']: c['id'] for c in coco.loadCats(coco.getCatIds())}
    image_ids = sorted(coco.getImgIds())
    photos = []
    for iid in image_ids:
        info = coco.loadImgs(iid)[0]
        path = os.path.join(images_dir, info['file_name'])
        if not os.path.isfile(path):
            raise UserError('Image {!r} named in {} is not in {!r}.'.format(
                info['file_name'], annotations, images_dir))
        photos.append((iid, info['file_name'], imgs.read_rgb(path)))
    report = {'images': len(photos), 'annotations': len(coco.getAnnIds()),
              'categories': sorted(cats), 'models': []}  # type: Dict[str, Any]
    reference = None  # type: Optional[List[Detections]]
    for runner in runners:
        LOG.info('[evaluate] %s (%s)', runner.name, runner.path)
        dets, times, results = [], [], []
        for iid, _, img in photos:
            runner.detect(img)  # warm-up (first-call allocations, lazy init)
            ts = []
            for _ in range(max(repeats, 1)):
                t0 = time.perf_counter()
                d = runner.detect(img)
                ts.append((time.perf_counter() - t0) * 1000.0)
            times.append(float(np.median(ts)))
            dets.append(d)
            for box, score, label in zip(d.boxes, d.scores, d.labels):
                if label in cats:
                    x1, y1, x2, y2 = [float(v) for v in box]
                    results.append({'image_id': iid, 'category_id': cats[label],
                                    'bbox': [x1, y1, x2 - x1, y2 - y1], 'score': float(score)})
        entry = {'name': runner.name, 'kind': runner.kind, 'path': runner.path,
                 'size_mb': _size_mb(runner.path), 'latency_ms': float(np.median(times))}
        entry.update(coco_map(coco, results, image_ids))
        entry['best_scores'] = {name: float(d.scores.max()) if len(d) else 0.0
                                for (_, name, _), d in zip(photos, dets)}
        if reference is None:
            reference = dets
            entry['agreement'] = None
        else:
            entry['agreement'] = agreement(reference, dets)
        report['models'].append(entry)
    return report


def _size_mb(path: str) -> float:
    """Return a model's size in MB (a SavedModel folder counts all its files)."""
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path)
                   for f in fs) / 1e6
    return os.path.getsize(path) / 1e6 if os.path.isfile(path) else 0.0


def markdown(report: Dict[str, Any]) -> str:
    """Render the report as a Markdown table."""
    ref = report['models'][0]['name'] if report['models'] else ''
    lines = ['# Evaluation: {} images, {} labelled boxes ({})'.format(
        report['images'], report['annotations'], ', '.join(report['categories'])), '',
        "Agreement: share of the reference's ({}) detections with score >= {} that the model "
        'also finds (same class, IoU >= {}), and the mean |score change| of those.'.format(
            ref, AGREEMENT_SCORE, AGREEMENT_IOU), '',
        '| model | size MB | mAP@0.5 | mAP@0.5:0.95 | Δ mAP@0.5 | agreement | mean Δscore '
        '| latency ms |', '|---|---:|---:|---:|---:|---:|---:|---:|']
    base = report['models'][0]['map50'] if report['models'] else 0.0
    for m in report['models']:
        ag = m.get('agreement')
        lines.append('| {} | {:.1f} | {:.3f} | {:.3f} | {:+.3f} | {} | {} | {:.1f} |'.format(
            m['name'], m['size_mb'], m['map50'], m['map50_95'], m['map50'] - base,
            '{:.0%}'.format(ag['recall']) if ag else 'reference',
            '{:.3f}'.format(ag['mean_score_diff']) if ag else '-', m['latency_ms']))
    for m in report['models']:
        if m.get('skipped'):
            lines.append('\n{}: skipped ({})'.format(m['name'], m['skipped']))
    notes = report.get('notes') or []
    if notes:
        lines += [''] + ['- ' + n for n in notes]
    return '\n'.join(lines) + '\n'


def plot(report: Dict[str, Any], path: str) -> None:
    """Write a two-panel bar chart (mAP and latency per model) as PNG, atomically."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    models = [m for m in report['models'] if not m.get('skipped')]
    names = [m['name'] for m in models]
    x = np.arange(len(models))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ax1.bar(x - 0.2, [m['map50'] for m in models], 0.4, label='mAP@0.5')
    ax1.bar(x + 0.2, [m['map50_95'] for m in models], 0.4, label='mAP@0.5:0.95')
    ax1.set_xticks(x)
    ax1.set_xticklabels(names, rotation=20, ha='right', fontsize=8)
    ax1.set_ylim(0, 1)
    ax1.set_title('Accuracy')
    ax1.legend(fontsize=8, loc='lower right')
    ax2.bar(x, [m['latency_ms'] for m in models], 0.5, color='tab:orange')
    ax2.set_xticks(x)
    ax2.set_xticklabels(names, rotation=20, ha='right', fontsize=8)
    ax2.set_ylabel('ms per image (median)')
    ax2.set_title('Latency on this machine')
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format='png', dpi=100)
    plt.close(fig)


def write_outputs(report: Dict[str, Any], out_dir: str, stem: str,
                  to_markdown: Callable[[Dict[str, Any]], str],
                  to_plot: Callable[[Dict[str, Any], str], None]) -> Dict[str, str]:
    """Write ``stem``.md, .json and .png of ``report`` to ``out_dir``; return their paths."""
    paths = {k: os.path.join(out_dir, stem + '.' + k) for k in ('md', 'json', 'png')}
    atomic_write_text(paths['json'], json.dumps(report, indent=1) + '\n')
    atomic_write_text(paths['md'], to_markdown(report))
    to_plot(report, paths['png'])
    return paths


def write_report(report: Dict[str, Any], out_dir: str) -> Dict[str, str]:
    """Write report.md, report.json and report.png to ``out_dir``; return their paths."""
    return write_outputs(report, out_dir, 'report', markdown, plot)


def _named(kind: str, spec: str) -> Tuple[str, str]:
    """Split ``LABEL=path`` (or a bare path, named by its kind and file name)."""
    label, sep, path = spec.partition('=')
    if sep and label and not os.path.exists(spec):
        return label, path
    return '{} {}'.format(KIND_NAMES[kind], os.path.basename(spec.rstrip('/'))), spec


KIND_NAMES = {'onnx': 'ONNX', 'tflite': 'TFLite', 'engine': 'ENGINE'}


def run(images: str, annotations: Optional[str], out: str, tf: Optional[str] = None,
        tf_config: Optional[str] = None, onnx: Sequence[str] = (), tflite: Sequence[str] = (),
        engine: Sequence[str] = (), score_threshold: float = 0.3, repeats: int = 3,
        every: int = 1, max_frames: Optional[int] = None, start: int = 0) -> str:
    """Evaluate each model, write the report to ``out``; return a summary.

    With ``annotations`` (COCO JSON): mAP against the labels on the images of ``images``.
    Without: the reference mode (:mod:`.reference`) on ``images``, a folder of images or a
    video (frames ``start``, ``start + every``, ... at most ``max_frames``); the first model
    (``tf``, else the first ``onnx``) is the reference.

    :param tf: a SavedModel or frozen graph (with ``tf_config``, or the config of the first
        ``onnx`` model).
    :param onnx: ONNX models, each a path or ``LABEL=path``; ``tflite``, ``engine``: the same
        for TFLite and TensorRT engines (an engine that cannot run here is skipped with a note).
    :param repeats: labelled mode: runs per image for the latency median.
    """
    from tx2_inference.convert.workstation import footage
    from tx2_inference.convert.workstation import reference as refmode
    params = DetectionParams(score_threshold=score_threshold, iou_threshold=0.45,
                             max_detections=100)
    runners, notes = [], []  # type: List[ModelRunner], List[str]
    frames = None
    if not annotations:
        frames = footage.read_frames(images, every, max_frames, start)
    try:
        named = [(kind, _named(kind, spec)) for kind, specs in
                 (('onnx', onnx), ('tflite', tflite), ('engine', engine)) for spec in specs]
        if tf:
            cfg = tf_config or (cfgmod.config_path_for(named[0][1][1]) if named else None)
            if not cfg:
                raise UserError('--tf needs --tf-config (or an --onnx model whose config names '
                                'the tensors to run).')
            runners.append(tf_runner(tf, cfg, params))
        for kind, (name, path) in named:
            if not os.path.exists(path):
                raise UserError('Model {!r} does not exist.'.format(path))
            try:
                runners.append(detector_runner(name, kind, path, params))
            except UserError as e:
                if kind != 'engine':
                    raise
                notes.append('{} skipped: {}'.format(name, e))
        if not runners:
            raise UserError('Nothing to evaluate: pass --tf, --onnx, --tflite or --engine.')
        if frames is not None:
            if len(runners) < 2:
                raise UserError('The reference mode scores models against the first (--tf, '
                                'else the first --onnx): pass at least two models.')
            report = refmode.evaluate_reference(runners, frames, images)
        else:
            report = evaluate(runners, images, annotations or '', repeats)
    finally:
        for r in runners:
            r.close()
    if frames is not None:
        report['notes'] = notes + ['every {} frame(s) from frame {} of {}; detections >= {} '
                                   'kept for mAP; {} detections at most per frame'.format(
                                       every, start, images, score_threshold, 100)]
        paths = refmode.write_summary(report, out)
        return refmode.markdown(report) + '\nWrote {}'.format(', '.join(sorted(paths.values())))
    report['notes'] = notes + ['latency: median of {} runs per image on this machine, one '
                               'frame at a time (preprocess + inference + decode)'.format(
                                   repeats)]
    paths = write_report(report, out)
    return markdown(report) + '\nWrote {}'.format(', '.join(sorted(paths.values())))
