"""
The tracker on real trajectories: MOTChallenge's TUD sequences, scored by py-motmetrics.

py-motmetrics 1.4.0 ships, for TUD-Campus and TUD-Stadtmitte (MOT15, 25 FPS), the ground truth
(``gt.txt``) and one tracker's output boxes with that tracker's IDs (``test.txt``). This tool
strips the IDs from those boxes, tracks them with :class:`tx2_inference.core.tracking.ByteTracker`
(frame times from the frame rate) and scores both ID sets against the ground truth on the same
boxes: MOTA, IDF1, ID switches. The boxes carry no scores, so every box counts as high-score.

motmetrics needs numpy 1.x and pandas < 2.3, so this runs in its own environment,
``build/motmetrics-venv`` (``tools/setup_motmetrics.sh``); started from another Python it runs
itself there.

Usage: ``python -m tx2_inference.tools.mot_eval [--json FILE]`` prints the table.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional

import numpy as np

from tx2_inference.core.tracking import ByteTracker, TrackerConfig

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VENV = os.environ.get('TX2_MOTMETRICS_VENV', os.path.join(ROOT, 'build', 'motmetrics-venv'))
SEQUENCES = ('TUD-Campus', 'TUD-Stadtmitte')
FRAME_RATE_HZ = 25.0  # both sequences (MOT15 seqinfo)
METRICS = ('mota', 'idf1', 'num_switches', 'num_false_positives', 'num_misses',
           'num_unique_objects', 'mostly_tracked')


def venv_python() -> str:
    """Return the motmetrics environment's interpreter."""
    return os.path.join(VENV, 'bin', 'python')


def track_boxes(rows: np.ndarray, config: Optional[TrackerConfig] = None) -> Dict[str, Any]:
    """Track MOTChallenge rows (frame, id, x, y, w, h, ...) with their IDs ignored.

    :returns: ``rows`` ([N, 6] frame, our id, x, y, w, h; detections without an ID left out)
        and ``ms_per_frame`` (the tracker's mean update time).
    """
    tracker = ByteTracker(config)
    frames = rows[:, 0].astype(int)
    out = []  # type: List[List[float]]
    elapsed, count = 0.0, 0
    for frame in range(int(frames.min()), int(frames.max()) + 1):
        here = rows[frames == frame]
        boxes = np.concatenate([here[:, 2:4], here[:, 2:4] + here[:, 4:6]], axis=1)
        start = time.perf_counter()
        ids = tracker.update(frame / FRAME_RATE_HZ, boxes, np.ones(len(here)),
                             np.zeros(len(here), dtype=np.int64))
        elapsed += time.perf_counter() - start
        count += 1
        out += [[frame, int(i)] + here[k, 2:6].tolist() for k, i in enumerate(ids) if i >= 0]
    return {'rows': np.array(out, dtype=np.float64).reshape(-1, 6),
            'ms_per_frame': 1e3 * elapsed / max(count, 1)}


def _scores(motmetrics: Any, gt: Any, rows: np.ndarray) -> Dict[str, float]:
    """Return the METRICS of tracker rows [N, >=6] against the ground truth frame."""
    import pandas
    frame = pandas.DataFrame(rows[:, :6], columns=['FrameId', 'Id', 'X', 'Y', 'Width', 'Height'])
    frame['FrameId'] = frame['FrameId'].astype(int)
    frame['Id'] = frame['Id'].astype(int)
    frame['Confidence'] = 1.0
    frame = frame.set_index(['FrameId', 'Id'])
    accumulator = motmetrics.utils.compare_to_groundtruth(gt, frame, 'iou', distth=0.5)
    summary = motmetrics.metrics.create().compute(accumulator, metrics=list(METRICS))
    return {name: float(summary[name].iloc[0]) for name in METRICS}


def evaluate(config: Optional[TrackerConfig] = None) -> List[Dict[str, Any]]:
    """Score our IDs and the reference tracker's on each sequence (in this environment)."""
    import motmetrics
    data = os.path.join(os.path.dirname(motmetrics.__file__), 'data')
    results = []
    for name in SEQUENCES:
        gt = motmetrics.io.loadtxt(os.path.join(data, name, 'gt.txt'), fmt='mot15-2D')
        # Loaded as motmetrics loads them (it moves MOTChallenge's 1-based corners by -1 px).
        test = motmetrics.io.loadtxt(os.path.join(data, name, 'test.txt'), fmt='mot15-2D')
        reference = test.reset_index()[['FrameId', 'Id', 'X', 'Y', 'Width', 'Height']].values
        reference = reference.astype(np.float64)
        ours = track_boxes(reference, config)
        results.append({'sequence': name, 'boxes': int(len(reference)),
                        'frames': int(reference[:, 0].max() - reference[:, 0].min() + 1),
                        'reference': _scores(motmetrics, gt, reference),
                        'ours': _scores(motmetrics, gt, ours['rows']),
                        'ours_ms_per_frame': ours['ms_per_frame']})
    return results


def table(results: List[Dict[str, Any]]) -> str:
    """Return the results as a Markdown table."""
    lines = ['| sequence | IDs from | MOTA | IDF1 | ID switches | false pos. | misses |',
             '| --- | --- | --- | --- | --- | --- | --- |']
    for result in results:
        for who, label in (('reference', 'reference tracker (motmetrics test.txt)'),
                           ('ours', 'ours (ByteTracker, IDs stripped)')):
            s = result[who]
            lines.append('| {} | {} | {:.3f} | {:.3f} | {:d} | {:d} | {:d} |'.format(
                result['sequence'], label, s['mota'], s['idf1'], int(s['num_switches']),
                int(s['num_false_positives']), int(s['num_misses'])))
    return '\n'.join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    """Print the table (and write JSON); run under the motmetrics environment if needed."""
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument('--json', help='also write the results to this file')
    args = parser.parse_args(argv)
    try:
        import motmetrics  # noqa: F401
    except ImportError:
        if not os.path.isfile(venv_python()):
            print('mot_eval: py-motmetrics is not in this Python and {} does not exist: make it '
                  'with tools/setup_motmetrics.sh'.format(VENV), file=sys.stderr)
            return 1
        environment = dict(os.environ, PYTHONPATH=ROOT)
        return subprocess.call([venv_python(), '-m', 'tx2_inference.tools.mot_eval'] +
                               (sys.argv[1:] if argv is None else list(argv)), env=environment)
    results = evaluate()
    print(table(results))
    for result in results:
        print('{}: our tracker {:.3f} ms per frame ({} frames, {} boxes)'.format(
            result['sequence'], result['ours_ms_per_frame'], result['frames'],
            result['boxes']))
    if args.json:
        with open(args.json, 'w') as stream:
            json.dump(results, stream, indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main())
