"""The real SSDLite person detector through every converter path, on real photos.

- ONNX through the frozen-graph path and the cut: detections through the core Detector (our
  decoder + NMS on the cut tensors) match TensorFlow's own (the full graph with its in-graph
  NMS) on astronaut, chelsea and coffee.
- INT8 (ORT QDQ and QOperator, TFLite INT8 cut at Preprocessor/sub): within an accuracy bound
  of FP32 on the photos: the astronaut's person found with IoU >= 0.8 against FP32's box and a
  score within 0.1; no person >= 0.5 on the cat or the cup.
- `evaluate` on test/data/persons (boxes labelled by hand): a real mAP, the same for ONNX and
  TensorFlow, and a report in Markdown, JSON and PNG.
"""

import json
import os

from boxes import PERSONS
import numpy as np
import pytest

from tx2_inference.convert.cli import main
from tx2_inference.core.decoders import DetectionParams

CUT = 'Postprocessor/ExpandDims_1:0,Postprocessor/convert_scores:0'
PHOTOS = ('astronaut', 'chelsea', 'coffee')


def photo(name):
    from skimage import data
    return getattr(data, name)()


@pytest.fixture(scope='module')
def models(default_model):
    folder = os.path.dirname(default_model)
    return {'onnx': default_model,
            'frozen': os.path.join(folder, 'ssdlite_person_frozen.pb'),
            'saved': os.path.join(folder, 'ssdlite_person_savedmodel')}


def detect_all(model_path, threshold=0.3):
    """Return detections on the three photos through the core Detector (as on the robot)."""
    from tx2_inference.detector import Detector
    with Detector(model_path, backend='auto', depth=1) as det:
        det.params = DetectionParams(score_threshold=threshold, iou_threshold=0.6)
        return {n: det.detect(photo(n), 'rgb') for n in PHOTOS}


def iou(a, b):
    from tx2_inference.convert.workstation.evaluate import iou_matrix
    return float(iou_matrix(np.asarray(a)[None], np.asarray(b)[None])[0, 0])


@pytest.fixture(scope='module')
def fp32(models):
    return detect_all(models['onnx'])


def test_default_model_and_config(models):
    from tx2_inference.core.model_config import ModelConfig
    for path in models.values():
        assert os.path.exists(path)
    cfg = ModelConfig.load(os.path.splitext(models['onnx'])[0] + '.yaml')
    assert cfg.labels == ['person']
    assert cfg.input['name'] == 'image_tensor:0' and cfg.input['dtype'] == 'uint8'
    assert cfg.input['size'] == [300, 300] and cfg.input['resize'] == 'stretch'
    assert cfg.input['color'] == 'rgb' and cfg.input['layout'] == 'nhwc'
    assert cfg.decoder == {'type': 'boxes_scores', 'boxes': 'Postprocessor/ExpandDims_1:0',
                           'scores': 'Postprocessor/convert_scores:0', 'box_format': 'yxyx',
                           'box_units': 'normalized', 'score_activation': 'none',
                           'background_class': 0}


def test_frozen_graph_cut_matches_tensorflow_detections(models, tmp_path):
    """Frozen graph -> ONNX (cut) -> Detector, against the TF graph's own NMS outputs."""
    out = str(tmp_path / 'person.onnx')
    assert main(['onnx', models['frozen'], '-o', out, '--inputs',
                 'image_tensor:0[1,300,300,3]', '--outputs', CUT, '--labels', 'person',
                 '--background-class', '0']) == 0
    ours = detect_all(out)
    from tx2_inference.convert.workstation.tf_runner import TFRunner
    from tx2_inference.core.preprocess import Preprocessor
    tf_full = TFRunner(models['frozen'], ['detection_boxes:0', 'detection_scores:0'])
    pre = Preprocessor({}, (1, 300, 300, 3), np.uint8)  # the same 300x300 stretch input
    buf = np.empty((1, 300, 300, 3), np.uint8)
    try:
        for name in PHOTOS:
            img = photo(name)
            pre(img, 'rgb', buf)
            boxes, scores = tf_full.run({'image_tensor:0': buf})
            keep = scores[0] >= 0.3
            h, w = img.shape[:2]
            ref = boxes[0][keep][:, [1, 0, 3, 2]] * [w, h, w, h]  # yxyx normalized -> xyxy px
            got = ours[name]
            assert len(got) == int(keep.sum()), (name, got, scores[0][keep])
            for box, score, ref_box, ref_score in zip(got.boxes, got.scores, ref,
                                                      scores[0][keep]):
                assert iou(box, ref_box) >= 0.95 and abs(score - ref_score) <= 0.01
    finally:
        tf_full.close()
    assert len(ours['astronaut']) >= 1 and ours['astronaut'].scores[0] >= 0.8
    assert not len(ours['chelsea']) and not len(ours['coffee'])


def assert_int8_close(fp32, int8):
    """Check the INT8 model against FP32 on the three photos (the accuracy bound)."""
    a, b = fp32['astronaut'], int8['astronaut']
    assert len(b) >= 1
    assert iou(a.boxes[0], b.boxes[0]) >= 0.8
    assert abs(float(a.scores[0]) - float(b.scores[0])) <= 0.1
    for name in ('chelsea', 'coffee'):
        assert not (int8[name].scores >= 0.5).any(), (name, int8[name])


@pytest.fixture(scope='module')
def qdq(models, tmp_path_factory):
    out = str(tmp_path_factory.mktemp('qdq') / 'person_int8.onnx')
    assert main(['quantize', models['onnx'], '-o', out, '--calib-images', PERSONS]) == 0
    return out


def test_int8_qdq_is_symmetric_and_close_to_fp32(qdq, fp32):
    import onnx
    from onnx import numpy_helper
    model = onnx.load(qdq)
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    quant = [n for n in model.graph.node if n.op_type == 'QuantizeLinear']
    assert len(quant) > 50
    for node in quant:  # TensorRT needs zero points of 0 (symmetric) and int8
        zp = inits[node.input[2]]
        assert zp.dtype == np.int8 and not zp.any(), node.name
    assert_int8_close(fp32, detect_all(qdq))
    with open(os.path.splitext(qdq)[0] + '.quantize.json') as f:
        report = json.load(f)
    assert report['format'] == 'qdq' and report['calibration_images'] == 5
    assert report['ort_cpu_ms']['fp32'] > 0 and report['ort_cpu_ms']['int8'] > 0
    slower = report['ort_cpu_ms']['int8'] > report['ort_cpu_ms']['fp32']
    assert ('Do NOT deploy it on ONNX Runtime CPU' in report['recommendation']) == slower


def test_int8_qoperator_for_ort_cpu(models, fp32, tmp_path):
    import onnx
    out = str(tmp_path / 'person_u8s8.onnx')
    assert main(['quantize', models['onnx'], '-o', out, '--calib-images', PERSONS,
                 '--format', 'qoperator']) == 0
    ops = {n.op_type for n in onnx.load(out).graph.node}
    assert 'QLinearConv' in ops and 'QuantizeLinear' in ops
    assert_int8_close(fp32, detect_all(out))


@pytest.fixture(scope='module')
def tflite_int8(models, tmp_path_factory):
    out = str(tmp_path_factory.mktemp('tflite') / 'person_int8.tflite')
    assert main(['tflite', models['frozen'], '-o', out, '--precision', 'int8',
                 '--inputs', 'Preprocessor/sub[1,300,300,3]',
                 '--outputs', 'Postprocessor/ExpandDims_1,Postprocessor/convert_scores',
                 '--calib-images', PERSONS, '--labels', 'person',
                 '--background-class', '0']) == 0  # normalisation: read from the graph
    return out


def test_tflite_int8_cut_config_and_accuracy(tflite_int8, fp32, models):
    from tx2_inference.core.model_config import ModelConfig
    cfg = ModelConfig.load(os.path.splitext(tflite_int8)[0] + '.yaml')
    assert cfg.input['dtype'] == 'float32' and cfg.input['name'] == 'Preprocessor/sub'
    assert cfg.input['scale'] == pytest.approx(2 / 255.0)
    assert cfg.input['mean'] == [1.0, 1.0, 1.0] and cfg.input['std'] == [1.0, 1.0, 1.0]
    assert cfg.decoder['boxes'] == 'Postprocessor/ExpandDims_1'
    assert os.path.getsize(tflite_int8) < 0.4 * os.path.getsize(models['onnx'])  # int8 weights
    assert_int8_close(fp32, detect_all(tflite_int8))


def test_uncut_detection_graph_is_refused_with_the_cut_to_use(models, tmp_path, capsys):
    out = tmp_path / 'full.onnx'
    assert main(['onnx', models['frozen'], '-o', str(out), '--inputs',
                 'image_tensor:0[1,300,300,3]', '--outputs', 'detection_boxes:0']) == 2
    err = capsys.readouterr().err
    assert 'Postprocessor/ExpandDims_1:0,Postprocessor/convert_scores:0' in err
    assert 'BatchMultiClassNonMaxSuppression' in err and not out.exists()
    for argv, expected in (
            (['--inputs', 'image_tensor:0[1,300,300]', '--outputs', CUT], 'Shape mismatch'),
            (['--inputs', 'image_tensor:0[1,300,300,3]', '--outputs',
              'Postprocessor/ExpandDims_7:0'], 'Did you mean'),
            ([], 'pass --inputs and --outputs')):
        assert main(['onnx', models['frozen'], '-o', str(out)] + argv) == 2
        err = capsys.readouterr().err.strip()
        assert expected in err and len(err.splitlines()) == 1, err
        assert not out.exists()
    assert main(['onnx', models['frozen'], '--list-tensors', 'Postprocessor/convert_sc']) == 0
    listed = capsys.readouterr().out.splitlines()
    assert 'Postprocessor/convert_scores:0  (Sigmoid)' in listed


def test_evaluate_report_on_hand_labelled_photos(models, qdq, tflite_int8, tmp_path):
    out = tmp_path / 'report'
    assert main(['evaluate', '--images', PERSONS, '--annotations',
                 os.path.join(PERSONS, 'annotations.json'), '--tf', models['saved'],
                 '--onnx', models['onnx'], '--onnx', qdq, '--tflite', tflite_int8,
                 '--out', str(out), '--repeats', '1']) == 0
    with open(str(out / 'report.json')) as f:
        report = json.load(f)
    tf_, onnx_, qdq_, lite = report['models']
    assert report['images'] == 5 and report['annotations'] == 5
    assert tf_['kind'] == 'tf' and tf_['agreement'] is None
    # a real number: most hand-labelled persons found, and far from perfect at 0.5:0.95
    assert 0.5 <= tf_['map50'] <= 1.0 and tf_['map50_95'] < tf_['map50']
    assert abs(onnx_['map50'] - tf_['map50']) <= 0.01
    assert abs(onnx_['map50_95'] - tf_['map50_95']) <= 0.01
    assert onnx_['agreement']['recall'] == 1.0 and onnx_['agreement']['mean_iou'] > 0.99
    for m in (qdq_, lite):
        assert m['map50'] >= tf_['map50'] - 0.25 and m['agreement']['recall'] >= 0.6
    assert all(m['latency_ms'] > 0 for m in report['models'])
    md = (out / 'report.md').read_text()
    assert '| model | size MB | mAP@0.5 |' in md and 'TensorFlow (original)' in md
    import cv2
    png = cv2.imread(str(out / 'report.png'))
    assert png is not None and png.shape[0] > 100


def test_coco_map_is_one_for_the_labels_themselves_and_drops_when_shifted():
    from pycocotools.coco import COCO

    from tx2_inference.convert.workstation.evaluate import coco_map
    ann = os.path.join(PERSONS, 'annotations.json')
    coco = COCO(ann)
    perfect = [{'image_id': a['image_id'], 'category_id': 1, 'bbox': a['bbox'], 'score': 0.9}
               for a in coco.loadAnns(coco.getAnnIds())]
    ids = sorted(coco.getImgIds())
    assert coco_map(coco, perfect, ids) == {'map50': 1.0, 'map50_95': 1.0}
    shifted = [dict(r, bbox=[r['bbox'][0] + 0.3 * r['bbox'][2]] + r['bbox'][1:])
               for r in perfect]  # IoU 0.54: counted at 0.5, not at 0.55 and up
    result = coco_map(coco, shifted, ids)
    assert result['map50'] == 1.0 and result['map50_95'] == pytest.approx(0.1, abs=0.01)
    assert coco_map(coco, [], ids) == {'map50': 0.0, 'map50_95': 0.0}
