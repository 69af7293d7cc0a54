"""The runtime layers' tests again, under the robot's Python: CPython 3.6 as on JetPack 4.6.

vermin (test_python36.py) reads the syntax; this runs the code. ``build/py36-venv``
(tools/setup_py36.sh, which ``make test`` runs) holds a real CPython 3.6 with the last releases
that have cp36 wheels of what the robot runs: numpy 1.19, OpenCV 4.5, ONNX Runtime 1.10, onnx
1.11, PyYAML 5.4 (requirements/py36.txt). In it, the tests of everything the robot runs except
ROS and TensorRT run: the core (pre-processing, decoders, NMS, model configs), the ONNX Runtime
backend, the executor and the detector, on the real person model and real photographs, and the
engine build's preflight (``tx2-convert check``, ``retarget``: onnx 1.11 and ONNX Runtime
1.10). The tests that need ROS messages, TensorFlow or a GPU skip there, each naming why.

Found by it, and fixed: ONNX Runtime 1.10 refuses to bind numpy's int64 buffers (see
``onnxruntime_backend._element_type``); the shared test model used opset 18, newer than the
robot's onnx and ONNX Runtime read.
"""

import os
import re
import subprocess
import sys

from project_files import ROOT
import pytest

VENV = os.environ.get('TX2_PY36_VENV', os.path.join(ROOT, 'build', 'py36-venv'))
PYTHON = os.path.join(VENV, 'bin', 'python')
#: The runtime layers: errors and core, the ONNX Runtime backend, the executor and detector.
RUNTIME_TESTS = ('test/core', 'test/facade', 'test/backends/test_backends.py',
                 'test/backends/test_preflight.py', 'test/backends/test_qdq.py',
                 'test/backends/test_affinity.py', 'test/backends/test_ort_spin.py')
#: The libraries whose JetPack-era releases the tier is about (pip name -> import name).
LIBRARIES = {'numpy': 'numpy', 'opencv-python-headless': 'cv2', 'onnxruntime': 'onnxruntime',
             'onnx': 'onnx', 'PyYAML': 'yaml'}


def _pins() -> dict:
    pins = {}
    with open(os.path.join(ROOT, 'requirements', 'py36.txt')) as stream:
        for line in stream:
            name, _, version = line.split('#')[0].strip().partition('==')
            if version:
                pins[name] = version
    return pins


@pytest.fixture(scope='module')
def python36() -> str:
    if not os.path.isfile(PYTHON):
        pytest.skip('no Python 3.6 environment at {}: tools/setup_py36.sh makes it where a '
                    'CPython 3.6 interpreter exists (set TX2_PY36 to one)'.format(VENV))
    return PYTHON


def test_the_environment_is_the_robots(python36: str) -> None:
    """A real CPython 3.6, with the pinned JetPack-era library releases."""
    script = ('import sys, importlib; print(".".join(map(str, sys.version_info[:3]))); '
              '[print(importlib.import_module(m).__version__) for m in sys.argv[1:]]')
    out = subprocess.check_output([python36, '-c', script] + list(LIBRARIES.values()),
                                  universal_newlines=True, cwd=ROOT).split()
    assert out[0].startswith('3.6.'), out[0]
    pins = _pins()
    for (name, _), version in zip(LIBRARIES.items(), out[1:]):
        # OpenCV reports 4.5.5 for the wheel 4.5.5.64
        assert pins[name].startswith(version), (name, version, pins[name])


def test_runtime_layers_pass_on_python36(python36: str, default_model: str) -> None:
    """Every runtime-layer test passes under 3.6; those needing ROS/TF/a GPU say why not."""
    env = dict(os.environ, PYTHONPATH=ROOT, PYTHONDONTWRITEBYTECODE='1')
    proc = subprocess.Popen(
        [python36, '-m', 'pytest', '-q', '-rs', '-p', 'no:cacheprovider'] + list(RUNTIME_TESTS),
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        universal_newlines=True)
    out, _ = proc.communicate(timeout=600)
    tail = out[-6000:]
    sys.stdout.write('--- pytest under {} ---\n{}\n'.format(python36, tail))
    assert proc.returncode == 0, tail
    summary = out.strip().splitlines()[-1]
    passed = int(re.search(r'(\d+) passed', summary).group(1))
    assert 'error' not in summary and 'failed' not in summary, summary
    # The tier is the runtime's tests, not a handful: most of them run, not skip.
    skipped = re.search(r'(\d+) skipped', summary)
    assert passed > 2 * int(skipped.group(1) if skipped else 0), summary
