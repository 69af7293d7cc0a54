"""`tx2-convert evaluate` reference mode, `fold-qdq` and the explicit-INT8 readiness check.

Real footage: 16 frames of OpenCV's vtest.avi (Debian opencv-doc), every 50th from frame 25,
halved to 384x288 (test/data/vtest, README there), and a video written from them. Real models:
the default SSDLite person detector and its INT8 variants from `tx2-convert quantize`.

- The scoring itself on boxes built by hand: a shifted box, a lost box, a new box, each with
  its known IoU, recall, score drift and changed frame.
- The reference mode end to end: the FP32 model scores perfectly against itself; INT8 QOperator
  and QDQ are scored on the same frames (mAP, recall, IoU, drift, changed frames, ms); the
  report is written as Markdown, JSON and a PNG; a video is read every Nth frame; bad input
  says what was wrong.
- `quantize`'s default keeps the ops after the last weighted layer (box decoding) in float:
  against the same model with them quantized, boxes sit measurably closer to FP32's.
- `fold-qdq` on ORT's QDQ model: no Q/DQ left, the folded model's detections agree with the
  Q/DQ model's; the readiness check calls the QDQ model ready and the QOperator (UINT8,
  zero point != 0) one not, with the reasons, and `engine` refuses the latter before TensorRT.
"""

import json
import os

from boxes import ROOT
import numpy as np
import pytest

from tx2_inference.convert.cli import main
from tx2_inference.core.decoders import Detections

VTEST = os.path.join(ROOT, 'test', 'data', 'vtest')


def dets(boxes, scores):
    n = len(scores)
    return Detections(np.array(boxes, np.float32).reshape(-1, 4), np.array(scores, np.float32),
                      np.zeros(n, np.int32), ['person'] * n)


def test_scoring_against_the_reference_on_known_boxes():
    from tx2_inference.convert.workstation import reference as ref
    a, b = [0, 0, 100, 100], [200, 200, 300, 300]
    shifted = [10, 0, 110, 100]  # IoU 90/110
    reference = [dets([a, b], [0.9, 0.8]), dets([a], [0.7]), dets([], [])]
    same = ref.score_variant(reference, reference, ref._coco_gt(reference, [(400, 400)] * 3))
    assert same['recall'] == 1.0 and same['mean_iou'] == 1.0 and same['changed_frames'] == 0
    assert same['map50'] == pytest.approx(1.0) and same['score_drift'] == 0.0
    variant = [dets([shifted], [0.85]),  # b lost, a shifted
               dets([a, b], [0.6, 0.9]),  # a found (score -0.1), b new
               dets([], [])]
    got = ref.score_variant(reference, variant, ref._coco_gt(reference, [(400, 400)] * 3))
    assert got['recall'] == pytest.approx(2 / 3.0)
    assert got['mean_iou'] == pytest.approx((90 / 110.0 + 1.0) / 2)
    assert got['score_drift'] == pytest.approx((0.05 + 0.1) / 2, abs=1e-6)
    assert got['changed_frames'] == 2 and got['changed_share'] == pytest.approx(2 / 3.0)
    assert 0.0 < got['map50'] < 1.0 and got['map50_95'] < got['map50']


@pytest.fixture(scope='module')
def int8_models(default_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp('int8')
    paths = {}
    for fmt in ('qdq', 'qoperator'):
        paths[fmt] = str(folder / 'person_{}.onnx'.format(fmt))
        assert main(['quantize', default_model, '-o', paths[fmt], '--calib-images', VTEST,
                     '--calib-limit', '8', '--format', fmt, '--no-measure']) == 0
    return paths


def test_reference_mode_on_real_footage(default_model, int8_models, tmp_path, capsys):
    out = tmp_path / 'report'
    assert main(['evaluate', '--footage', VTEST, '--onnx', 'FP32=' + default_model,
                 '--onnx', 'INT8 QOperator=' + int8_models['qoperator'],
                 '--onnx', 'INT8 QDQ=' + int8_models['qdq'], '--out', str(out)]) == 0
    captured = capsys.readouterr()
    assert 'evaluate 3 models' in captured.err and '16/16' in captured.err  # the progress bar
    report = json.loads((out / 'summary.json').read_text())
    assert report['mode'] == 'reference' and report['frames'] == 16
    assert report['reference'] == 'FP32' and report['reference_boxes'] >= 16  # people walk
    fp32, qop, qdq = report['models']
    assert fp32['recall'] == 1.0 and fp32['map50'] == pytest.approx(1.0)
    assert fp32['changed_frames'] == 0 and fp32['score_drift'] == 0.0
    for m in (qop, qdq):
        # INT8 finds most of FP32's people, and moves the boxes: mAP@.5:.95 drops more
        assert 0.7 <= m['recall'] <= 1.0 and 0.6 <= m['mean_iou'] < 1.0
        assert 0.7 <= m['map50'] <= 1.0 and m['map50_95'] < m['map50']
        assert 0.0 < m['score_drift'] < 0.2 and m['ms_median'] > 0
        assert m['size_mb'] < 0.5 * fp32['size_mb']
    md = (out / 'summary.md').read_text()
    assert '| FP32 (reference) |' in md and '| INT8 QDQ |' in md and 'changed' in md
    import cv2
    plot = cv2.imread(str(out / 'summary.png'))
    assert plot is not None and plot.shape[0] > 300 and plot.std() > 10
    assert '| INT8 QOperator |' in captured.out


def test_float_tail_keeps_the_boxes_where_fp32_puts_them(default_model, int8_models, tmp_path):
    """`quantize`'s default keeps the box decoding in float; quantizing it too moves boxes."""
    from tx2_inference.backends.tensorrt import qdq
    from tx2_inference.convert import quantize
    tail = quantize.tail_nodes(default_model)
    assert any(n.startswith('Postprocessor/Decode') for n in tail)
    assert not any('Conv' in n and 'BoxPredictor' not in n for n in tail)
    everything = str(tmp_path / 'qdq_all.onnx')
    assert main(['quantize', default_model, '-o', everything, '--calib-images', VTEST,
                 '--calib-limit', '8', '--quantize-tail', '--no-measure']) == 0
    assert qdq.count_qdq(everything)[0] > qdq.count_qdq(int8_models['qdq'])[0]
    assert qdq.readiness(int8_models['qdq']).ready  # every weighted layer still INT8
    out = tmp_path / 'tail'
    assert main(['evaluate', '--footage', VTEST, '--onnx', default_model,
                 '--onnx', 'default=' + int8_models['qdq'], '--onnx', 'all=' + everything,
                 '--out', str(out)]) == 0
    _, default, quantized = json.loads((out / 'summary.json').read_text())['models']
    assert default['mean_iou'] > quantized['mean_iou'] + 0.05
    assert default['map50_95'] > quantized['map50_95'] + 0.2


def test_reference_mode_reads_every_nth_frame_of_a_video(default_model, int8_models, tmp_path):
    import cv2
    video = str(tmp_path / 'walk.avi')
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*'MJPG'), 10, (384, 288))
    for name in sorted(os.listdir(VTEST)):
        if name.endswith('.jpg'):
            writer.write(cv2.imread(os.path.join(VTEST, name)))
    writer.release()
    out = tmp_path / 'video'
    assert main(['evaluate', '--footage', video, '--every', '3', '--max-frames', '4',
                 '--onnx', default_model, '--onnx', int8_models['qoperator'],
                 '--out', str(out)]) == 0
    report = json.loads((out / 'summary.json').read_text())
    assert report['frames'] == 4 and report['frame_names'] == ['walk.avi#0', 'walk.avi#9']
    assert report['models'][1]['name'] == 'ONNX person_qoperator.onnx'


def test_reference_mode_bad_input_says_what_to_do(default_model, tmp_path, capsys):
    bad = tmp_path / 'not_a_video.avi'
    bad.write_bytes(b'RIFF....AVI garbage')
    for argv, expected in (
            (['--footage', str(bad), '--onnx', default_model, '--onnx', default_model],
             'cannot open'),
            (['--footage', str(tmp_path / 'missing'), '--onnx', default_model], 'does not exist'),
            (['--footage', VTEST, '--onnx', default_model], 'at least two models'),
            (['--footage', VTEST, '--every', '0', '--onnx', default_model], 'N >= 1')):
        assert main(['evaluate', '--out', str(tmp_path / 'o')] + argv) == 2
        err = capsys.readouterr().err
        assert expected in err, err
    assert not (tmp_path / 'o' / 'summary.json').exists()


def test_fold_qdq_matches_the_qdq_model_and_readiness(int8_models, tmp_path, capsys):
    from tx2_inference.backends.tensorrt import qdq
    from tx2_inference.convert.workstation.reference import match_frame
    from tx2_inference.core import images
    from tx2_inference.detector import Detector
    ready = qdq.readiness(int8_models['qdq'])
    assert ready.ready and ready.weighted == ready.weighted_int8 > 50, ready.summary()
    assert ready.summary().startswith('explicit INT8 ready')
    qop = qdq.readiness(int8_models['qoperator'])
    assert not qop.ready
    assert any('zero points' in r for r in qop.reasons) and any('UINT8' in r for r in qop.reasons)
    assert main(['engine', int8_models['qoperator']]) == 2
    assert 'TensorRT only supports symmetric quantization' in capsys.readouterr().err
    folded = str(tmp_path / 'folded.onnx')
    assert main(['fold-qdq', int8_models['qdq'], '-o', folded, '--images', VTEST]) == 0
    assert 'max abs' in capsys.readouterr().out
    assert qdq.count_qdq(folded) == (0, 0) and os.path.isfile(folded[:-5] + '.yaml')
    assert not qdq.readiness(folded).has_qdq
    # the folded model's people are the Q/DQ model's
    found = total = 0
    ious = []
    with Detector(int8_models['qdq'], backend='onnxruntime') as a, \
            Detector(folded, backend='onnxruntime') as b:
        for path in images.list_images(VTEST):
            img = images.read_rgb(path)
            n_ref, _, pairs = match_frame(a.detect(img, 'rgb'), b.detect(img, 'rgb'))
            total += n_ref
            found += len(pairs)
            ious += [iou for iou, _ in pairs]
    assert total >= 16 and found >= 0.85 * total and np.mean(ious) > 0.75, (total, found, ious)
    assert main(['fold-qdq', folded, '-o', str(tmp_path / 'again.onnx')]) == 2
    assert 'nothing to fold' in capsys.readouterr().err
