"""The README demo on the real pipeline: node and camera player processes, the real model.

The README promises: a person found on the astronaut photo, nobody on the cat (chelsea) and
the cup (coffee). The person's box must overlap the hand-labelled box with IoU >= 0.5.
"""

import json
import os
import subprocess
import sys

from boxes import iou, labelled_persons
import cv2
import pytest

THRESHOLD = 0.5  # the node's default score_threshold (config/params.yaml)


@pytest.fixture(scope='module')
def demo(default_model, tmp_path_factory):
    out = str(tmp_path_factory.mktemp('demo'))
    proc = subprocess.run(
        [sys.executable, '-m', 'tx2_inference.tools.demo', '--model', default_model,
         '--output', out, '--loops', '1', '--rate', '5'],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=240)
    with open(os.path.join(out, 'summary.json')) as f:
        summary = json.load(f)
    return proc, out, summary


def test_demo_exits_cleanly_and_says_where_the_files_are(demo):
    proc, out, summary = demo
    assert proc.returncode == 0, proc.stdout
    assert out in proc.stdout
    assert '| astronaut |' in proc.stdout
    assert summary['graph']['node_exit'] == 0, 'the node did not exit cleanly on SIGINT'


def test_person_on_the_astronaut(demo):
    _, _, summary = demo
    dets = summary['photos']['astronaut']['detections']
    persons = [d for d in dets if d['label'] == 'person' and d['score'] >= THRESHOLD]
    truth = labelled_persons('astronaut.jpg')[0]
    assert any(iou(d['box_xyxy'], truth) >= 0.5 for d in persons), dets


@pytest.mark.parametrize('photo', ['chelsea', 'coffee'])
def test_nobody_on_the_cat_and_the_cup(demo, photo):
    _, _, summary = demo
    entry = summary['photos'][photo]
    assert entry['answers'] >= 1, 'the node never answered for ' + photo
    assert [d for d in entry['detections'] if d['score'] >= THRESHOLD] == []


def test_every_photo_answered_with_pictures_and_a_plot(demo):
    _, out, summary = demo
    for name, entry in summary['photos'].items():
        assert entry['answers'] >= 1, name
        picture = cv2.imread(os.path.join(out, name + '_detections.png'))
        assert picture is not None and picture.shape[0] > 100, name
    plot = cv2.imread(os.path.join(out, 'latency.png'))
    assert plot is not None and plot.shape[1] > 400
    assert 0 < summary['latency_ms_p50'] <= summary['latency_ms_p99']
    with open(os.path.join(out, 'summary.md')) as f:
        table = f.read()
    assert all('| %s |' % name in table for name in summary['photos'])


def test_output_is_emptied_only_when_the_demo_made_it(default_model, tmp_path):
    """``--output ~`` deleted a home (issue 22, item 8): a foreign folder is refused."""
    home = tmp_path / 'home'
    home.mkdir()
    (home / 'thesis.tex').write_text('years of work')
    proc = subprocess.run(
        [sys.executable, '-m', 'tx2_inference.tools.demo', '--model', default_model,
         '--output', str(home)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        universal_newlines=True, timeout=60)
    assert proc.returncode == 2 and 'nothing was deleted' in proc.stdout, proc.stdout
    assert (home / 'thesis.tex').read_text() == 'years of work'
    link = tmp_path / 'link'
    os.symlink(str(home), str(link))
    from tx2_inference.errors import UserError
    from tx2_inference.tools.demo import MARKER, prepare_output
    with pytest.raises(UserError):
        prepare_output(str(link))
    # Its own folder (the marker): emptied for the next run; a new folder is made and marked.
    out = tmp_path / 'out'
    prepare_output(str(out))
    (out / 'old.png').write_text('last run')
    prepare_output(str(out))
    assert sorted(os.listdir(str(out))) == [MARKER]
