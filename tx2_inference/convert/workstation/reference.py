"""`tx2-convert evaluate` reference mode: every variant scored against the FP32 model.

No labels needed. The first model (the FP32 TensorFlow SavedModel or FP32 ONNX) is the
reference; its detections with score >= :data:`GT_SCORE` are the ground truth of every other
model on the same frames:

- ``map50``, ``map50_95``: pycocotools' COCO mAP with the reference's boxes as ground truth
  and the variant's detections (score >= the evaluation threshold) as results;
- ``recall``: share of reference boxes the variant also finds (score >= GT_SCORE, same class,
  IoU >= 0.5, greedy by the reference's score), ``mean_iou`` of those matches;
- ``score_drift``: mean |score - reference score| of the matches (``max_score_drift``);
- ``changed_frames``: frames whose answer (boxes >= GT_SCORE) is not one-to-one the
  reference's at IoU 0.5;
- ``ms_median``/``ms_mean``: time per frame (preprocess, inference, decode, NMS) on this
  machine, the models run frame by frame in turn so a busy machine slows them alike.

Writes ``summary.md``, ``summary.json`` and ``summary.png`` (accuracy against time per frame).
"""

import contextlib
import io
import logging
import os
import sys
import time
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from tx2_inference.convert.workstation.evaluate import (
    _size_mb,
    iou_matrix,
    ModelRunner,
    write_outputs,
)
from tx2_inference.convert.workstation.footage import Frame
from tx2_inference.core.decoders import Detections
from tx2_inference.core.fileio import atomic_path

LOG = logging.getLogger('tx2_inference.convert')

GT_SCORE = 0.5
MATCH_IOU = 0.5


def match_frame(ref: Detections, det: Detections) -> Tuple[int, int, List[Tuple[float, float]]]:
    """Match one frame's detections (score >= GT_SCORE) to the reference's, greedily.

    :returns: (reference boxes, variant boxes, [(IoU, |score change|) per match]).
    """
    rk = ref.scores >= GT_SCORE
    dk = det.scores >= GT_SCORE
    rb, rs, rc = ref.boxes[rk], ref.scores[rk], ref.class_ids[rk]
    db, ds, dc = det.boxes[dk], det.scores[dk], det.class_ids[dk]
    pairs = []  # type: List[Tuple[float, float]]
    if len(rb) and len(db):
        m = iou_matrix(rb, db)
        m[rc[:, None] != dc[None, :]] = 0.0
        free = np.ones(len(db), bool)
        for i in np.argsort(-rs, kind='stable'):
            cand = np.where(free, m[i], -1.0)
            j = int(np.argmax(cand))
            if cand[j] >= MATCH_IOU:
                free[j] = False
                pairs.append((float(m[i, j]), abs(float(rs[i]) - float(ds[j]))))
    return len(rb), len(db), pairs


def _coco_gt(reference: Sequence[Detections], sizes: Sequence[Tuple[int, int]]) -> Any:
    """Return a pycocotools COCO whose annotations are the reference's boxes >= GT_SCORE."""
    from pycocotools.coco import COCO
    anns, cats = [], set()
    for iid, d in enumerate(reference):
        for box, score, cls in zip(d.boxes, d.scores, d.class_ids):
            if score < GT_SCORE:
                continue
            x1, y1, x2, y2 = [float(v) for v in box]
            cats.add(int(cls))
            anns.append({'id': len(anns) + 1, 'image_id': iid, 'category_id': int(cls) + 1,
                         'bbox': [x1, y1, x2 - x1, y2 - y1], 'area': (x2 - x1) * (y2 - y1),
                         'iscrowd': 0})
    coco = COCO()
    coco.dataset = {'images': [{'id': i, 'width': w, 'height': h}
                               for i, (h, w) in enumerate(sizes)],
                    'annotations': anns,
                    'categories': [{'id': c + 1, 'name': str(c)} for c in sorted(cats)]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def coco_against(coco_gt: Any, dets: Sequence[Detections]) -> Dict[str, float]:
    """Return mAP@0.5 and mAP@0.5:0.95 of ``dets`` against the reference's COCO."""
    from pycocotools.cocoeval import COCOeval
    if not coco_gt.dataset['annotations']:
        return {'map50': float('nan'), 'map50_95': float('nan')}
    known = {c['id'] for c in coco_gt.dataset['categories']}
    results = []
    for iid, d in enumerate(dets):
        for box, score, cls in zip(d.boxes, d.scores, d.class_ids):
            if int(cls) + 1 in known:
                x1, y1, x2, y2 = [float(v) for v in box]
                results.append({'image_id': iid, 'category_id': int(cls) + 1,
                                'bbox': [x1, y1, x2 - x1, y2 - y1], 'score': float(score)})
    if not results:
        return {'map50': 0.0, 'map50_95': 0.0}
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(coco_gt, coco_gt.loadRes(results), 'bbox')
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {'map50': max(float(ev.stats[1]), 0.0), 'map50_95': max(float(ev.stats[0]), 0.0)}


def score_variant(reference: Sequence[Detections], dets: Sequence[Detections],
                  coco_gt: Any) -> Dict[str, Any]:
    """Return every agreement figure of one variant against the reference (module docs)."""
    n_ref = changed = 0
    ious, drift = [], []  # type: List[float], List[float]
    for ref, det in zip(reference, dets):
        nr, nd, pairs = match_frame(ref, det)
        n_ref += nr
        changed += int(len(pairs) != nr or len(pairs) != nd)
        ious += [p[0] for p in pairs]
        drift += [p[1] for p in pairs]
    out = {'recall': len(ious) / float(n_ref) if n_ref else float('nan'),
           'mean_iou': float(np.mean(ious)) if ious else float('nan'),
           'score_drift': float(np.mean(drift)) if drift else float('nan'),
           'max_score_drift': float(np.max(drift)) if drift else float('nan'),
           'changed_frames': changed,
           'changed_share': changed / float(len(dets)) if len(dets) else float('nan')}
    out.update(coco_against(coco_gt, dets))
    return out


def _progress(total: int, desc: str) -> Any:
    """Return a tqdm progress bar on stderr.

    In a terminal (or with TX2_PROGRESS set) it updates twice a second; in a log, every 10 %.
    """
    from tqdm import tqdm
    tty = sys.stderr.isatty() or bool(os.environ.get('TX2_PROGRESS'))
    return tqdm(total=total, desc=desc, unit='frame', file=sys.stderr, dynamic_ncols=True,
                mininterval=0.5 if tty else 30.0, miniters=None if tty else max(total // 10, 1))


def run_models(runners: Sequence[ModelRunner], frames: Sequence[Frame]
               ) -> Tuple[List[List[Detections]], List[List[float]]]:
    """Run every model on every frame, models in turn per frame; return detections and ms.

    Each model's first call (allocations, lazy initialisation) runs before the timed pass.
    """
    for r in runners:
        r.detect(frames[0][1])
    dets = [[] for _ in runners]  # type: List[List[Detections]]
    times = [[] for _ in runners]  # type: List[List[float]]
    bar = _progress(len(frames), 'evaluate {} models'.format(len(runners)))
    try:
        for k, (_, img) in enumerate(frames):
            order = range(len(runners)) if k % 2 == 0 else reversed(range(len(runners)))
            for i in order:
                t0 = time.perf_counter()
                d = runners[i].detect(img)
                times[i].append((time.perf_counter() - t0) * 1000.0)
                dets[i].append(d)
            bar.update(1)
    finally:
        bar.close()
    return dets, times


def evaluate_reference(runners: Sequence[ModelRunner], frames: Sequence[Frame],
                       source: str) -> Dict[str, Any]:
    """Score every runner against the first on ``frames``; return the report data."""
    dets, times = run_models(runners, frames)
    sizes = [img.shape[:2] for _, img in frames]
    coco_gt = _coco_gt(dets[0], sizes)
    report = {'mode': 'reference', 'source': source, 'frames': len(frames),
              'frame_names': [frames[0][0], frames[-1][0]],
              'reference': runners[0].name, 'gt_score': GT_SCORE, 'match_iou': MATCH_IOU,
              'reference_boxes': len(coco_gt.dataset['annotations']),
              'frames_with_boxes': len({a['image_id'] for a in coco_gt.dataset['annotations']}),
              'models': []}  # type: Dict[str, Any]
    for i, r in enumerate(runners):
        entry = {'name': r.name, 'kind': r.kind, 'path': r.path, 'size_mb': _size_mb(r.path),
                 'ms_median': float(np.median(times[i])), 'ms_mean': float(np.mean(times[i])),
                 'detections': int(sum(int(np.sum(d.scores >= GT_SCORE)) for d in dets[i]))}
        entry.update(score_variant(dets[0], dets[i], coco_gt))
        if i == 0:
            entry['reference'] = True
        report['models'].append(entry)
    return report


def _f(value: float, fmt: str = '{:.3f}') -> str:
    return '-' if value is None or value != value else fmt.format(value)


def markdown(report: Dict[str, Any]) -> str:
    """Render the reference-mode report as Markdown."""
    ref = report['models'][0]
    lines = [
        '# Agreement with {} on {} frames of {}'.format(report['reference'], report['frames'],
                                                      report['source']), '',
        "Ground truth: the reference's {} boxes with score >= {} ({} frames have one). mAP: "
        'pycocotools; recall, mean IoU, score drift: matches at IoU >= {}, same class; '
        "changed: frames whose boxes >= {} are not one-to-one the reference's; ms: time per "
        'frame on this machine (median; preprocess + inference + decode).'.format(
            report['reference_boxes'], report['gt_score'], report['frames_with_boxes'],
            report['match_iou'], report['gt_score']), '',
        '| model | MB | mAP@0.5 | mAP@.5:.95 | recall@0.5 | mean IoU | score drift | changed '
        'frames | ms/frame | vs ref |',
        '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|']
    for m in report['models']:
        lines.append('| {}{} | {:.1f} | {} | {} | {} | {} | {} | {} ({}) | {:.1f} | {:.2f}x |'
                     .format(m['name'], ' (reference)' if m.get('reference') else '',
                             m['size_mb'], _f(m['map50']), _f(m['map50_95']), _f(m['recall']),
                             _f(m['mean_iou']), _f(m['score_drift']), m['changed_frames'],
                             _f(m['changed_share'], '{:.0%}'), m['ms_median'],
                             m['ms_median'] / ref['ms_median'] if ref['ms_median'] else 0))
    notes = report.get('notes') or []
    if notes:
        lines += [''] + ['- ' + n for n in notes]
    return '\n'.join(lines) + '\n'


def plot(report: Dict[str, Any], path: str) -> None:
    """Write one scatter plot: mAP@0.5 and @.5:.95 against ms per frame, one point a model."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(9, 5.5))
    shown = [m for m in report['models']
             if m['ms_median'] > 0 and np.isfinite(m['map50']) and np.isfinite(m['map50_95'])]
    if not shown:
        ax.text(0.5, 0.5, 'no reference box with score >= {}: nothing to score'.format(
            report['gt_score']), ha='center', va='center', transform=ax.transAxes)
    for k, m in enumerate(shown):
        c = 'C{}'.format(k % 10)
        ax.scatter([m['ms_median']], [m['map50']], color=c, marker='o', s=50)
        ax.scatter([m['ms_median']], [m['map50_95']], color=c, marker='^', s=40)
        ax.plot([m['ms_median']] * 2, [m['map50'], m['map50_95']], color=c, lw=0.8)
        ax.annotate(m['name'], (m['ms_median'], m['map50']), fontsize=7,
                    xytext=(4, 3 - 9 * (k % 3)), textcoords='offset points', color=c)
    if shown:
        ax.set_xscale('log')
    ax.set_xlabel('ms per frame on this machine (median, log scale)')
    ax.set_ylabel('mAP against the reference')
    ax.set_ylim(0, 1.05)
    ax.set_title('Accuracy vs speed, {} frames of {} (o mAP@0.5, ^ mAP@.5:.95)'.format(
        report['frames'], os.path.basename(report['source'])), fontsize=10)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format='png', dpi=100)
    plt.close(fig)


def write_summary(report: Dict[str, Any], out_dir: str) -> Dict[str, str]:
    """Write summary.md, summary.json and summary.png to ``out_dir``; return their paths."""
    return write_outputs(report, out_dir, 'summary', markdown, plot)
