"""Tiled inference: recall on hand-labelled small people, and the cost, batched vs sequential.

Recall: the 24 frames of OpenCV's vtest.avi in ``test/data/small_people`` (146 people labelled
by hand, COCO boxes) run untiled and with each grid; a detection matches an unmatched label at
IoU >= 0.5 (best score first). ``python -m tx2_inference.tools.bench.tiles --recall`` prints the
table in docs/TILING.md and draws ``tiles_recall.png`` (labels white, found untiled blue, found
only with tiles green, missed red).

Cost (``make bench``'s tiling row, ``measure_cost``): one 768x576 frame at a time, closed loop,
per grid: the default model (batch 1: tiles one after another on the executor's slots) and its
``--batch dynamic`` twin (a frame's tiles are the rows of one inference), alternating in
rounds; milliseconds per frame (submit to merged result) and their ratio.
"""

import argparse
import json
import os
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from tx2_inference.core.decoders import DetectionParams
from tx2_inference.core.tiles import TileGrid
from tx2_inference.detector import Detector

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__)))))
LABELLED = os.path.join(ROOT, 'test', 'data', 'small_people')
# The grids of the recall table: (name, columns, rows, whole frame).
GRIDS = (('2x2', 2, 2, False), ('2x2 + whole', 2, 2, True), ('3x2 + whole', 3, 2, True),
         ('3x3', 3, 3, False), ('3x3 + whole', 3, 3, True), ('4x3 + whole', 4, 3, True))
OVERLAP = 0.25

Box = Tuple[float, float, float, float]


def load_labelled(folder: str = LABELLED) -> List[Tuple[str, np.ndarray, List[Box]]]:
    """Return ``(file name, BGR frame, [x1, y1, x2, y2 label])`` for each labelled frame."""
    import cv2
    with open(os.path.join(folder, 'annotations.json')) as f:
        coco = json.load(f)
    boxes = {image['id']: [] for image in coco['images']}  # type: Dict[int, List[Box]]
    for ann in coco['annotations']:
        x, y, w, h = ann['bbox']
        boxes[ann['image_id']].append((x, y, x + w, y + h))
    frames = []
    for image in coco['images']:
        frame = cv2.imread(os.path.join(folder, image['file_name']))
        if frame is None:
            raise IOError('cannot read ' + os.path.join(folder, image['file_name']))
        frames.append((image['file_name'], frame, boxes[image['id']]))
    return frames


def overlaps(box: Sequence[float], labels: np.ndarray) -> np.ndarray:
    """Return the IoU of one x1, y1, x2, y2 box with each of [N, 4] ``labels``."""
    lo = np.maximum(labels[:, :2], box[:2])
    hi = np.minimum(labels[:, 2:], box[2:])
    inter = np.prod(np.clip(hi - lo, 0.0, None), axis=1)
    areas = np.prod(labels[:, 2:] - labels[:, :2], axis=1)
    union = areas + (box[2] - box[0]) * (box[3] - box[1]) - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def match(detections: Sequence[Sequence[float]], labels: Sequence[Box],
          threshold: float = 0.5) -> List[int]:
    """Return, per label, the index of the detection matched to it (best score first), or -1.

    A detection takes the free label it overlaps most, at IoU >= ``threshold``.

    :param detections: boxes, best first.
    """
    found = np.full(len(labels), -1, dtype=np.int64)
    targets = np.asarray(labels, dtype=np.float64).reshape(-1, 4)
    for index, box in enumerate(detections):
        scores = overlaps(np.asarray(box, dtype=np.float64), targets)
        scores[found >= 0] = -1.0
        if targets.shape[0] and scores.max() >= threshold:
            found[int(np.argmax(scores))] = index
    return found.tolist()


def evaluate(detector: Detector, frames: Sequence[Tuple[str, np.ndarray, List[Box]]],
             threshold: float = 0.5) -> Dict[str, Any]:
    """Run ``detector`` on labelled frames; return recall, precision and each label's match.

    ``found``: per frame, per label, whether a detection matched it at IoU >= ``threshold``.
    """
    found, detections, matched = [], 0, 0
    for _, frame, labels in frames:
        result = detector.detect(frame, 'bgr')
        hits = match(result.boxes.tolist(), labels, threshold)
        found.append([hit >= 0 for hit in hits])
        detections += len(result)
        matched += sum(hit >= 0 for hit in hits)
    total = sum(len(labels) for _, _, labels in frames)
    return {'labels': total, 'found': found, 'matched': matched, 'detections': detections,
            'recall': matched / total if total else float('nan'),
            'precision': matched / detections if detections else float('nan')}


def recall_table(model: str, backend: str = 'onnxruntime', frames: Optional[List[Any]] = None,
                 grids: Sequence[Tuple[str, int, int, bool]] = GRIDS,
                 score_threshold: Optional[float] = None) -> List[Dict[str, Any]]:
    """Return one row per grid (the first: untiled) with recall, precision and inferences."""
    frames = load_labelled() if frames is None else frames
    rows = []
    for name, columns, rows_, whole in (('untiled', 1, 1, False),) + tuple(grids):
        grid = None if name == 'untiled' else TileGrid(columns, rows_, OVERLAP, whole)
        with Detector(model, backend=backend, tiles=grid) as detector:
            if score_threshold is not None:
                detector.params = DetectionParams(score_threshold=score_threshold)
            row = evaluate(detector, frames)
        row.update(grid=name, inferences=len(grid) if grid is not None else 1)
        rows.append(row)
    return rows


def merge_table(model: str, backend: str = 'onnxruntime', frames: Optional[List[Any]] = None,
                grids: Sequence[Tuple[str, int, int, bool]] = (('3x3', 3, 3, False),
                                                               ('3x3 + whole', 3, 3, True))
                ) -> List[Dict[str, Any]]:
    """Return recall and precision per grid with the cut-aware merge and with a plain NMS."""
    frames = load_labelled() if frames is None else frames
    rows = []
    for name, columns, rows_, whole in grids:
        with Detector(model, backend=backend,
                      tiles=TileGrid(columns, rows_, OVERLAP, whole)) as detector:
            for cut_aware in (True, False):
                detector.tiler.cut_aware = cut_aware
                row = evaluate(detector, frames)
                row.update(grid=name, merge='cut-aware' if cut_aware else 'plain NMS')
                rows.append(row)
    return rows


def format_merge(rows: Sequence[Dict[str, Any]]) -> str:
    """Return the merge comparison as Markdown."""
    lines = ['| tiles | merge | recall @ IoU 0.5 | precision | detections |',
             '| --- | --- | --- | --- | --- |']
    for row in rows:
        lines.append('| {} | {} | {:.3f} | {:.3f} | {} |'.format(
            row['grid'], row['merge'], row['recall'], row['precision'], row['detections']))
    return '\n'.join(lines)


def format_recall(rows: Sequence[Dict[str, Any]]) -> str:
    """Return the recall table as Markdown."""
    lines = ['| tiles | inferences per frame | recall @ IoU 0.5 | precision | people found |',
             '| --- | --- | --- | --- | --- |']
    for row in rows:
        lines.append('| {} | {} | {:.3f} | {:.3f} | {} of {} |'.format(
            row['grid'], row['inferences'], row['recall'], row['precision'], row['matched'],
            row['labels']))
    return '\n'.join(lines)


def draw_recall(frames: Sequence[Tuple[str, np.ndarray, List[Box]]], untiled: Dict[str, Any],
                tiled: Dict[str, Any], path: str, columns: int = 4, count: int = 8) -> str:
    """Draw the labels of the first ``count`` frames into a grid of half-size frames at ``path``.

    Blue: found untiled; green: found only with tiles; red: missed by both.
    """
    import cv2
    tiles = []
    for index, (name, frame, labels) in enumerate(frames[:count]):
        canvas = frame.copy()
        for label, box in enumerate(labels):
            before, after = untiled['found'][index][label], tiled['found'][index][label]
            color = (255, 128, 0) if before else (0, 200, 0) if after else (0, 0, 255)
            x1, y1, x2, y2 = (int(round(v)) for v in box)
            cv2.rectangle(canvas, (x1, y1), (x2, y2), color, 2)
        cv2.putText(canvas, name, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2)
        tiles.append(cv2.resize(canvas, (frame.shape[1] // 2, frame.shape[0] // 2),
                                interpolation=cv2.INTER_AREA))
    rows = [np.hstack(tiles[i:i + columns]) for i in range(0, len(tiles), columns)]
    cv2.imwrite(path, np.vstack(rows))
    return path


def parse_grids(text: str) -> List[Tuple[str, int, int, bool]]:
    """Return the grids of ``'3x3,2x2+whole'`` as (name, columns, rows, whole frame)."""
    grids = []
    for item in (part.strip() for part in text.split(',')):
        if not item:
            continue
        spec, _, whole = item.partition('+')
        grid = TileGrid.parse(spec)
        if grid is None or whole not in ('', 'whole'):
            raise ValueError('tiles {!r}: give COLUMNSxROWS or COLUMNSxROWS+whole, e.g. '
                             '3x3,2x2+whole'.format(item))
        grids.append((spec.strip() + (' + whole' if whole else ''), grid.columns, grid.rows,
                      bool(whole)))
    return grids


def _ms_per_frame(detector: Detector, frame: np.ndarray, frames: int) -> float:
    """Return ms per frame, closed loop: submit the next frame when the last one is merged."""
    done = []
    detector.on_result = lambda tag, detections, timing: done.append(timing['latency_ms'])
    start = time.perf_counter()
    for index in range(frames):
        detector.submit(frame, 'bgr', index, 'camera')
        detector.drain(30.0)
    elapsed = time.perf_counter() - start
    if len(done) != frames:
        raise RuntimeError('{} of {} tiled frames answered'.format(len(done), frames))
    return elapsed / frames * 1e3


def measure_cost(model: str, batch_model: str, frame: np.ndarray,
                 grids: Sequence[Tuple[str, int, int, bool]] = (('3x3', 3, 3, False),
                                                                 ('2x2 + whole', 2, 2, True)),
                 frames: int = 20, rounds: int = 3, backend: str = 'onnxruntime',
                 threads: Optional[int] = None, log: Any = print) -> Dict[str, Any]:
    """Return ms per frame untiled, tiles sequential (batch-1 model) and batched, per grid.

    The detectors run alternately, ``frames`` frames per turn, ``rounds`` times; figures are
    medians over rounds, and the ratios are taken within each round.
    """
    rows = {}  # type: Dict[str, Any]
    for name, columns, rows_, whole in grids:
        grid = TileGrid(columns, rows_, OVERLAP, whole)
        detectors = {
            'untiled': Detector(model, backend=backend, threads=threads),
            'sequential': Detector(model, backend=backend, threads=threads, tiles=grid),
            'batched': Detector(batch_model, backend=backend, threads=threads, tiles=grid)}
        try:
            for detector in detectors.values():
                detector.warmup()
                _ms_per_frame(detector, frame, 3)
            samples = {key: [] for key in detectors}  # type: Dict[str, List[float]]
            for round_ in range(rounds):
                for key, detector in detectors.items():
                    samples[key].append(_ms_per_frame(detector, frame, frames))
                log('tiles {} round {}: {}'.format(name, round_ + 1, ', '.join(
                    '{} {:.1f} ms'.format(k, v[-1]) for k, v in samples.items())))
            stats = detectors['batched'].stats()['tiling']
            rows[name] = {
                'tiles': len(grid),
                'untiled_ms': float(np.median(samples['untiled'])),
                'sequential_ms': float(np.median(samples['sequential'])),
                'batched_ms': float(np.median(samples['batched'])),
                'batched_over_sequential': float(np.median(
                    [b / s for b, s in zip(samples['batched'], samples['sequential'])])),
                'sequential_over_untiled': float(np.median(
                    [s / u for s, u in zip(samples['sequential'], samples['untiled'])])),
                'batched_inferences_per_frame': stats['inferences_per_frame_mean'],
                'sequential_inferences_per_frame':
                    detectors['sequential'].stats()['tiling']['inferences_per_frame_mean']}
        finally:
            for detector in detectors.values():
                detector.close()
    return rows


def format_cost(rows: Dict[str, Any]) -> str:
    """Return the cost rows as Markdown."""
    lines = ['| tiles | untiled ms/frame | sequential ms/frame (inferences) | batched ms/frame '
             '(inferences) | batched / sequential | sequential / untiled |',
             '| --- | --- | --- | --- | --- | --- |']
    for name, row in rows.items():
        lines.append('| {} ({}) | {:.1f} | {:.1f} ({:.0f}) | {:.1f} ({:.0f}) | {:.2f} | {:.2f} |'
                     .format(name, row['tiles'], row['untiled_ms'], row['sequential_ms'],
                             row['sequential_inferences_per_frame'], row['batched_ms'],
                             row['batched_inferences_per_frame'],
                             row['batched_over_sequential'], row['sequential_over_untiled']))
    return '\n'.join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    """Print the recall table (and draw it) and/or the cost table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--model', default=os.path.join(ROOT, 'models', 'ssdlite_person.onnx'))
    parser.add_argument('--batch-model', default=os.path.join(
        ROOT, 'output', 'benchmark', 'ssdlite_person_batch.onnx'),
        help='the --batch dynamic twin of --model (for --cost)')
    parser.add_argument('--recall', action='store_true', help='the recall table')
    parser.add_argument('--cost', action='store_true', help='batched against sequential')
    parser.add_argument('--tiles', default='3x3,2x2+whole', help='--cost grids (%(default)s)')
    parser.add_argument('--picture', default='tiles_recall.png', help='where --recall draws')
    parser.add_argument('--frames', type=int, default=20)
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--threads', type=int)
    args = parser.parse_args(argv)
    if args.recall:
        frames = load_labelled()
        rows = recall_table(args.model, frames=frames)
        print(format_recall(rows))
        best = max(rows[1:], key=lambda r: r['recall'])
        print(format_merge(merge_table(args.model, frames=frames)))
        print('picture: ' + draw_recall(frames, rows[0], best, args.picture) +
              ' (labels: blue found untiled, green only with {}, red missed)'.format(best['grid']))
    if args.cost:
        import cv2
        frame = cv2.imread(os.path.join(LABELLED, 'vtest_340.jpg'))
        rows = measure_cost(args.model, args.batch_model, frame, parse_grids(args.tiles),
                            frames=args.frames,
                            rounds=args.rounds, threads=args.threads,
                            log=lambda m: print(m, file=sys.stderr))
        print(format_cost(rows))
    return 0


if __name__ == '__main__':
    sys.exit(main())
