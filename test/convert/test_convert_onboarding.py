"""tx2-convert on what a newcomer brings: a CenterNet-like packed top-K, an NCHW model.

The CenterNet-like model (test/tiny_models.py) ends in one packed ``[1, K, 6]`` top-K output
(box in pixels, score, class). It is converted by the CLI in its own process, as a user runs
it: TensorFlow, the reference, must run its deterministic reference kernels there (not the
oneDNN ones, which moved a real CenterNet's top-K rows), the packed columns are compared with
their own tolerances, the summary is printed once and the detection defaults given on the
command line land in the model config.
"""

import os
import subprocess
import sys

from boxes import PERSONS
import numpy as np
from project_files import ROOT
import pytest
from tiny_models import CENTERNET_SCRIPT
import yaml

from tx2_inference.convert.cli import main
from tx2_inference.convert.workstation.compare import (
    compare_outputs,
    failure_message,
    parse_tolerances,
)
from tx2_inference.errors import UserError


def _run(args, env=None):
    proc = subprocess.run([sys.executable] + args, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, timeout=600)
    return proc.returncode, proc.stdout


@pytest.fixture(scope='module')
def centernet(tmp_path_factory):
    path = str(tmp_path_factory.mktemp('centernet') / 'saved_model')
    code, out = _run(['-c', CENTERNET_SCRIPT, path],
                     dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2'))
    assert code == 0, out[-3000:]
    return path


def test_centernet_like_packed_top_k_passes_the_tf_check(centernet, tmp_path):
    out = str(tmp_path / 'centernet.onnx')
    env = dict(os.environ, PYTHONPATH=ROOT)
    env.pop('TF_ENABLE_ONEDNN_OPTS', None)  # as a user's shell: the converter sets it
    code, printed = _run(
        ['-m', 'tx2_inference.convert', 'onnx', centernet, '-o', out,
         '--validate-images', PERSONS, '--labels', 'a,b,c', '--decoder', 'generic',
         '--decoder-option', 'output=detections', '--decoder-option', 'box_columns=[0,1,2,3]',
         '--decoder-option', 'score_column=4', '--decoder-option', 'class_column=5',
         '--box-format', 'yxyx', '--box-units', 'pixels',
         '--score-threshold', '0.3', '--iou-threshold', '0.5', '--max-detections', '20',
         '--class-agnostic-nms', 'true'], env)
    assert code == 0, printed[-4000:]
    # TensorFlow says when its oneDNN kernels are on; the converter turned them off.
    assert 'oneDNN custom operations are on' not in printed
    # The summary, once: the step-4 check no longer prints the same lines before it.
    lines = [line for line in printed.splitlines() if 'max abs' in line]
    assert len(lines) == 1 and 'vs TensorFlow  detections' in lines[0], printed
    assert 'per column' in lines[0] and 'rows in another order' not in printed.split('Wrote')[0]
    with open(out[:-len('.onnx')] + '.yaml') as f:
        config = yaml.safe_load(f)
    assert config['input']['layout'] == 'nhwc' and config['input']['size'] == [128, 128]
    assert config['decoder']['type'] == 'generic' and config['decoder']['output'] == 'detections'
    assert config['detection'] == {'score_threshold': 0.3, 'iou_threshold': 0.5,
                                   'max_detections': 20, 'class_agnostic_nms': True}


def _packed(rng):
    boxes = rng.uniform(0, 128, (1, 20, 4))
    scores = np.sort(rng.uniform(0.3, 0.99, (1, 20, 1)), axis=1)[:, ::-1]
    classes = rng.randint(0, 3, (1, 20, 1)).astype(np.float64)
    return np.concatenate([boxes, scores, classes], axis=2)


def test_packed_top_k_columns_take_their_own_tolerances():
    """Pixels, score and class of a packed top-K: each column its tolerance, the class exact."""
    ref = _packed(np.random.RandomState(0))
    moved = ref.copy()
    moved[..., :4] += 0.3  # a third of a pixel: more than the default 1e-3 + 1e-3 * |x| allows
    swap = np.arange(20)
    swap[[4, 5]] = [5, 4]  # and two near-equal rows in the other order
    moved = moved[:, swap]

    def check(got, items=()):
        samples = [({'detections': ref}, {'detections': got})]
        diffs = compare_outputs(samples, ['detections'], (1e-3, 1e-3), parse_tolerances(items),
                                ['detections'])
        return samples, diffs['detections']

    samples, diff = check(moved)
    assert not diff.ok and diff.column_max_abs[:4] == pytest.approx([0.3] * 4)
    assert diff.column_max_abs[4:] == [0.0, 0.0]
    message = failure_message({'detections': diff}, {}, samples, ' NOTE.')
    assert 'detections[FIRST:END]' in message and 'per column max abs' in message
    assert 'Nothing was written. NOTE.' in message  # the reference's own note comes first
    _, diff = check(moved, ['detections[0:4]=0.5'])
    assert diff.ok and diff.reordered_rows == 2
    # The class must match exactly, however loose the pixels are.
    wrong = moved.copy()
    wrong[0, 7, 5] = (wrong[0, 7, 5] + 1) % 3
    _, diff = check(wrong, ['detections[0:4]=0.5'])
    assert not diff.ok and diff.worst[0][-1] == 5
    # ... unless given its own tolerance.
    _, diff = check(wrong, ['detections[0:4]=0.5', 'detections[5]=2'])
    assert diff.ok
    with pytest.raises(UserError):
        parse_tolerances(['detections[4:2]=1'])


@pytest.fixture(scope='module')
def nchw_models(tmp_path_factory):
    """SavedModels with an NCHW input [1, 3, 32, 32] and an ambiguous one [1, 3, 8, 3]."""
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
    import tensorflow as tf
    folder = tmp_path_factory.mktemp('layouts')
    paths = {}
    def model(shape):
        module = tf.Module()
        weights = np.random.RandomState(0).randn(shape[1] * shape[2] * shape[3], 8)
        module.w = tf.Variable(weights.astype(np.float32))

        @tf.function(input_signature=[tf.TensorSpec(shape, tf.float32, name='image')])
        def serve(image):
            rows = tf.reshape(tf.matmul(tf.reshape(image, [1, -1]), module.w), [1, 2, 4])
            return {'boxes': tf.sigmoid(rows), 'scores': tf.nn.softmax(rows[..., :2])}
        module.serve = serve
        return module

    for key, shape in (('nchw', [1, 3, 32, 32]), ('unclear', [1, 3, 8, 3])):
        module = model(shape)
        paths[key] = str(folder / key)
        tf.saved_model.save(module, paths[key], signatures=module.serve.get_concrete_function())
    return paths


def test_an_nchw_model_gets_layout_nchw_without_layout(nchw_models, tmp_path, capsys):
    out = str(tmp_path / 'nchw.onnx')
    assert main(['onnx', nchw_models['nchw'], '-o', out, '--decoder', 'boxes_scores',
                 '--labels', 'a,b']) == 0
    with open(str(tmp_path / 'nchw.yaml')) as f:
        config = yaml.safe_load(f)
    assert config['input']['layout'] == 'nchw' and config['input']['size'] == [32, 32]
    assert 'detection' not in config  # no defaults given, none written
    # Where both axes could hold the channels, the converter asks instead of guessing.
    capsys.readouterr()
    unclear = str(tmp_path / 'unclear.onnx')
    assert main(['onnx', nchw_models['unclear'], '-o', unclear, '--decoder', 'boxes_scores',
                 '--labels', 'a,b']) == 2
    error = capsys.readouterr().err
    assert '--layout' in error and '[1, 3, 8, 3]' in error and 'Nothing was written' in error
    assert not os.path.exists(unclear) and not os.path.exists(str(tmp_path / 'unclear.yaml'))
    assert main(['onnx', nchw_models['unclear'], '-o', unclear, '--decoder', 'boxes_scores',
                 '--labels', 'a,b', '--layout', 'nhwc']) == 0


def test_layout_has_a_help_text(capsys):
    with pytest.raises(SystemExit):
        main(['onnx', '--help'])
    text = capsys.readouterr().out
    layout = text.split('\n  --layout {nhwc,nchw}')[1].split('\n  --')[0]
    assert 'channels' in layout and 'nchw ([1, C, H, W])' in ' '.join(layout.split())
    assert '--class-agnostic-nms' in text and '--score-threshold' in text
