"""Our tracker on MOTChallenge's TUD sequences beats the reference tracker's IDs, same boxes.

py-motmetrics (numpy 1.x, pandas < 2.3) lives in build/motmetrics-venv, which `make test`
makes (tools/setup_motmetrics.sh, the Makefile's motmetrics target); made here if missing,
skipped only where it cannot be made.
"""

import json
import os
import subprocess

import pytest

from tx2_inference.tools import mot_eval


@pytest.fixture(scope='module')
def results(tmp_path_factory):
    if not os.path.isfile(mot_eval.venv_python()):
        made = subprocess.call([os.path.join(mot_eval.ROOT, 'tools', 'setup_motmetrics.sh')])
        if made != 0 or not os.path.isfile(mot_eval.venv_python()):
            pytest.skip('build/motmetrics-venv cannot be made here (tools/setup_motmetrics.sh '
                        'failed: PyPI unreachable?)')
    path = str(tmp_path_factory.mktemp('mot') / 'results.json')
    assert mot_eval.main(['--json', path]) == 0
    with open(path) as stream:
        return {result['sequence']: result for result in json.load(stream)}


def test_both_sequences_are_scored_on_the_same_boxes(results):
    assert sorted(results) == ['TUD-Campus', 'TUD-Stadtmitte']
    for result in results.values():
        ours, reference = result['ours'], result['reference']
        # Every box gets an ID: the detections (so misses and false positives) are the same,
        # only the IDs differ.
        assert ours['num_misses'] == reference['num_misses']
        assert ours['num_false_positives'] == reference['num_false_positives']
        # The reference tracker's own figures, as py-motmetrics' README gives them.
        assert reference['num_switches'] == 7
    assert results['TUD-Campus']['reference']['mota'] == pytest.approx(0.526, abs=0.001)
    assert results['TUD-Stadtmitte']['reference']['idf1'] == pytest.approx(0.645, abs=0.001)


@pytest.mark.parametrize('sequence', ['TUD-Campus', 'TUD-Stadtmitte'])
def test_ours_beats_the_reference_tracker(results, sequence):
    ours, reference = results[sequence]['ours'], results[sequence]['reference']
    assert ours['num_switches'] < reference['num_switches']
    assert ours['idf1'] > reference['idf1']
    assert ours['mota'] > reference['mota']
    assert results[sequence]['ours_ms_per_frame'] > 0
