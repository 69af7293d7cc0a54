"""
A decoder that lives outside the package, installed as its own distribution, in a real node.

The worked example of docs/BRING_YOUR_OWN_DETECTOR.md, end to end: examples/gfl_decoder is
installed with ``pip install --no-deps --target`` into a temporary folder (nothing touches the
venv); its Keras model with a distribution-focal (GFL) head is built and exported as a
SavedModel, and ``tx2-convert onnx --decoder gfl`` converts it and writes a complete config
(the converter finds the plugin by its entry point). A node process with that folder on its
PYTHONPATH loads the plugin through the entry point ``tx2_inference.decoders``, and its
detections equal what the Python API gives with the same parameters, before and after each
``ros2 param set`` (NodeClient.set_parameters): the plugin ends with ``Decoder.select``, so
the node's live parameters act on its output.
"""

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
from typing import Any, Dict

import numpy as np
from project_files import ROOT
import pytest
from rclpy.qos import QoSProfile
from sensor_msgs.msg import Image
import skimage.data
from vision_msgs.msg import Detection2DArray
import yaml

from tx2_inference.ros.image import array_to_image_msg
from tx2_inference.tools.client import detection_xyxy, NodeClient, write_reliable_overrides
from tx2_inference.tools.processes import ModuleProcess

EXAMPLE = os.path.join(ROOT, 'examples', 'gfl_decoder')
PERSONS = os.path.join(ROOT, 'test', 'data', 'persons')
NODE = 'gfl_node'
TOPIC = 'gfl_cam/image_raw'
LABELS = ['circle', 'square', 'triangle']


@pytest.fixture(scope='module')
def plugin_site(tmp_path_factory) -> str:
    """Install examples/gfl_decoder into a temporary folder, as a user's package would be."""
    work = tmp_path_factory.mktemp('gfl_plugin')
    source = str(work / 'gfl_decoder')
    shutil.copytree(EXAMPLE, source)  # the build writes beside the sources: not in the repo
    site = str(work / 'site')
    proc = subprocess.run([sys.executable, '-m', 'pip', 'install', '--quiet', '--no-deps',
                           '--no-build-isolation', '--no-index', '--target', site, source],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=300)
    assert proc.returncode == 0, proc.stdout
    assert os.path.isdir(os.path.join(site, 'gfl_decoder'))
    return site


@pytest.fixture(scope='module')
def on_path(plugin_site):
    """Put the installed plugin on this process's path too (for the converter and the API)."""
    sys.path.insert(0, plugin_site)
    try:
        yield plugin_site
    finally:
        sys.path.remove(plugin_site)
        for name in [n for n in sys.modules if n.split('.')[0] == 'gfl_decoder']:
            del sys.modules[name]


@pytest.fixture(scope='module')
def gfl_model(on_path, tmp_path_factory) -> str:
    """Build the example's Keras model and convert it with tx2-convert; return the .onnx."""
    from tx2_inference.convert.cli import main
    spec = importlib.util.spec_from_file_location('gfl_build_model',
                                                  os.path.join(EXAMPLE, 'build_model.py'))
    build_model = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build_model)
    folder = tmp_path_factory.mktemp('gfl_model')
    saved = build_model.build(str(folder / 'saved_model'))
    onnx_path = str(folder / 'gfl.onnx')
    assert main(['onnx', saved, '-o', onnx_path, '--validate-images', PERSONS,
                 '--decoder', 'gfl', '--labels', ','.join(LABELS),
                 '--scale', str(1 / 255.0)]) == 0
    return onnx_path


def test_the_converter_writes_the_plugins_config(gfl_model):
    with open(os.path.splitext(gfl_model)[0] + '.yaml') as stream:
        config = yaml.safe_load(stream)
    # Found through the entry point: the plugin's known output names filled the tensors.
    assert config['decoder'] == {'type': 'gfl', 'cls': 'cls', 'reg': 'reg'}
    assert config['labels'] == LABELS


def test_a_missing_or_broken_plugin_names_the_module_and_why(on_path, tmp_path, monkeypatch):
    from tx2_inference.core.decoders import create_decoder
    from tx2_inference.errors import ConfigError
    monkeypatch.setenv('TX2_INFERENCE_DECODER_MODULES', 'no_such_pkg,broken_heads')
    with pytest.raises(ConfigError) as missing:
        create_decoder({'type': 'dfl_head', 'module': 'no_such_pkg.heads'}, [], (64, 64))
    assert "cannot import 'no_such_pkg.heads'" in str(missing.value)
    assert "No module named 'no_such_pkg'" in str(missing.value)
    (tmp_path / 'broken_heads.py').write_text('import numpy as np\nnp.frobnicate()\n')
    sys.path.insert(0, str(tmp_path))
    try:
        with pytest.raises(ConfigError) as broken:
            create_decoder({'type': 'dfl_head', 'module': 'broken_heads'}, [], (64, 64))
    finally:
        sys.path.remove(str(tmp_path))
    assert "importing 'broken_heads'" in str(broken.value)
    assert 'frobnicate' in str(broken.value) and 'broken_heads.py:2' in str(broken.value)
    with pytest.raises(ConfigError) as unknown:
        create_decoder({'type': 'dfl_head'}, [], (64, 64))
    assert 'gfl' in str(unknown.value)  # the installed plugin is listed among the choices


def test_a_config_imports_only_allowed_modules_and_never_ends_the_process(on_path, tmp_path,
                                                                          monkeypatch):
    """Issue 22, item 4: a module in the working directory runs nothing; sys.exit is caught."""
    from tx2_inference.core import decoder_plugins
    from tx2_inference.core.decoders import create_decoder
    from tx2_inference.errors import ConfigError
    ran = tmp_path / 'ran'
    (tmp_path / 'evil_heads.py').write_text(
        'import sys\nopen({!r}, "w").write("code ran")\nsys.exit(3)\n'.format(str(ran)))
    monkeypatch.chdir(str(tmp_path))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv('TX2_INFERENCE_DECODER_MODULES', raising=False)
    with pytest.raises(ConfigError) as refused:
        create_decoder({'type': 'evil', 'module': 'evil_heads'}, [], (64, 64))
    assert 'not an allowed module' in str(refused.value) and 'decoder_modules' in str(
        refused.value)
    assert 'gfl_decoder' in str(refused.value)  # the installed entry point's module is
    assert not ran.exists()
    decoder_plugins.allow_modules(['evil_heads'])  # the node's decoder_modules parameter
    try:
        with pytest.raises(ConfigError) as ended:
            create_decoder({'type': 'evil', 'module': 'evil_heads'}, [], (64, 64))
    finally:
        decoder_plugins.allow_modules([])
    assert 'SystemExit: 3' in str(ended.value) and ran.exists()
    # The converter's __main__ runs nothing when imported (a config naming it).
    import importlib
    importlib.import_module('tx2_inference.convert.__main__')


@pytest.mark.parametrize('library', ['importlib.metadata', 'pkg_resources'])
def test_the_entry_point_is_found_with_each_metadata_library(on_path, monkeypatch, library):
    """Python 3.8+ reads importlib.metadata; the robot's 3.6 falls back to pkg_resources."""
    import importlib

    from tx2_inference.core import decoder_plugins
    real = importlib.import_module

    def without_metadata(name, *args):
        if library == 'pkg_resources' and name in ('importlib.metadata', 'importlib_metadata'):
            raise ImportError('no module named ' + name)
        return real(name, *args)
    monkeypatch.setattr(decoder_plugins.importlib, 'import_module', without_metadata)
    [gfl] = [ep for ep in decoder_plugins.entry_points() if ep.name == 'gfl']
    assert gfl.target == 'gfl_decoder:GFLDecoder'
    assert gfl.distribution.replace('-', '_') == 'gfl_decoder'
    assert gfl.load().__name__ == 'GFLDecoder'


def _image() -> np.ndarray:
    """Return a real photo, small: the model's input is 64 x 64."""
    return np.ascontiguousarray(skimage.data.astronaut()[::4, ::4])  # 128 x 128 RGB


def _expected(model: str, **params: Any) -> Any:
    """Return the Python API's detections (the same plugin) with these parameters."""
    from tx2_inference.detector import Detector
    with Detector(model, backend='onnxruntime') as det:
        det.params = det.config.detection_params(**params)
        return det.detect(_image(), 'rgb')


def _as_lists(msg: Any) -> Dict[str, Any]:
    """Return the labels, scores and boxes of a Detection2DArray."""
    return {'labels': [d.results[0].hypothesis.class_id for d in msg.detections],
            'scores': np.array([d.results[0].hypothesis.score for d in msg.detections]),
            'boxes': np.array([detection_xyxy(d) for d in msg.detections]).reshape(-1, 4)}


def test_the_node_uses_the_installed_plugin_and_its_live_parameters(gfl_model, plugin_site,
                                                                      tmp_path):
    # The model's own default threshold, from its config's detection section.
    config_path = os.path.splitext(gfl_model)[0] + '.yaml'
    with open(config_path) as stream:
        config = yaml.safe_load(stream)
    config['detection'] = {'score_threshold': 0.4}
    with open(config_path, 'w') as stream:
        yaml.safe_dump(config, stream)
    overrides = write_reliable_overrides(str(tmp_path / 'qos.yaml'), ['/' + TOPIC])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [plugin_site] + [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep) if p]))
    node = ModuleProcess(['tx2_inference.ros.node', '--ros-args', '-r', '__node:=' + NODE,
                          '--params-file', overrides, '-p', 'model_path:=' + gfl_model,
                          '-p', 'image_topics:=[{}]'.format(TOPIC),
                          '-p', 'backend:=onnxruntime'],
                         str(tmp_path / 'node.log'), env=env)
    client = NodeClient('/' + NODE, name='gfl_tester')
    detections = TOPIC.replace('image_raw', 'detections')
    client.collect(Detection2DArray, detections, QoSProfile(depth=20))
    publisher = client.node.create_publisher(Image, TOPIC, 10)
    try:
        client.wait_for_node(timeout=30.0)
        assert client.transition('configure'), node.log()[-3000:]
        assert client.transition('activate'), node.log()[-3000:]
        stamp = [0]

        def detect() -> Dict[str, Any]:
            msg = array_to_image_msg(_image(), 'rgb8')
            stamp[0] += 1
            msg.header.stamp.sec = stamp[0]
            for _ in range(60):
                publisher.publish(msg)
                got = client.wait_until(lambda: [m for m in client.messages(detections)
                                                 if m.header.stamp.sec == stamp[0]],
                                        timeout=0.5)
                if got:
                    return _as_lists(got[0])
            raise AssertionError('no detections from the node:\n' + node.log()[-3000:])

        def same(got: Dict[str, Any], expected: Any) -> None:
            assert got['labels'] == expected.labels
            np.testing.assert_allclose(got['scores'], expected.scores, atol=1e-5)
            np.testing.assert_allclose(got['boxes'], expected.boxes.reshape(-1, 4), atol=1e-3)

        first = _expected(gfl_model)  # the config's default threshold, 0.4
        assert len(first) >= 3 and set(first.labels) > {first.labels[0]}, first
        same(detect(), first)
        cases = [({'score_threshold': 0.5}, {'score_threshold': 0.5}),
                 ({'class_allowlist': [LABELS[0]]},
                  {'score_threshold': 0.5, 'class_allowlist': [LABELS[0]]}),
                 ({'class_allowlist': LABELS}, {'score_threshold': 0.5}),
                 ({'class_agnostic_nms': True, 'nms_iou_threshold': 0.2},
                  {'score_threshold': 0.5, 'class_agnostic_nms': True, 'iou_threshold': 0.2}),
                 ({'max_detections': 2},
                  {'score_threshold': 0.5, 'class_agnostic_nms': True, 'iou_threshold': 0.2,
                   'max_detections': 2})]
        for change, params in cases:
            results = client.set_parameters(**change)
            assert all(r.successful for r in results), [r.reason for r in results]
            expected = _expected(gfl_model, **params)
            got = detect()
            same(got, expected)
        assert len(_expected(gfl_model, score_threshold=0.5)) > len(got['labels']) == 2
        assert len(first) > len(_expected(gfl_model, score_threshold=0.5)), 'the threshold acts'
    finally:
        client.close()
        status = node.stop(signal.SIGINT)
    log = node.log()
    assert status == 0, log[-3000:]
    assert 'Traceback' not in log and 'Failed to publish log message to rosout' not in log, log



def test_the_docs_page_shows_the_tested_example():
    """docs/BRING_YOUR_OWN_DETECTOR.md quotes the example's files as they are."""
    with open(os.path.join(ROOT, 'docs', 'BRING_YOUR_OWN_DETECTOR.md')) as stream:
        page = stream.read()
    quoted = page.split('<!-- file: ')[1:]
    assert len(quoted) == 2
    for block in quoted:
        path, rest = block.split(' -->\n```python\n', 1)
        with open(os.path.join(ROOT, path)) as stream:
            assert rest.split('```\n', 1)[0] == stream.read(), path


def test_the_node_refuses_a_config_whose_decoder_is_to_be_completed(gfl_model, tmp_path):
    """The node's configure FAILS with the converter's message; it stays unconfigured."""
    import rclpy
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter

    from tx2_inference.backends.base import TensorInfo
    from tx2_inference.convert.config import decoder_section, incomplete_banner
    from tx2_inference.ros.node import InferenceNode
    model = str(tmp_path / 'unknown_head.onnx')
    shutil.copy(gfl_model, model)
    with open(os.path.splitext(gfl_model)[0] + '.yaml') as stream:
        config = yaml.safe_load(stream)
    # What tx2-convert writes for these outputs when it does not know the head.
    outputs = [TensorInfo('cls', (1, 64, 3), np.dtype(np.float32)),
               TensorInfo('reg', (1, 64, 32), np.dtype(np.float32))]
    config['decoder'] = decoder_section(None, {}, outputs, {'input': config['input']})
    config_path = os.path.splitext(model)[0] + '.yaml'
    with open(config_path, 'w') as stream:
        yaml.safe_dump(config, stream)
    printed = incomplete_banner(config_path, config['decoder'])
    context = rclpy.Context()
    rclpy.init(context=context)
    node = InferenceNode('incomplete_node', context=context, parameter_overrides=[
        Parameter('model_path', value=model), Parameter('backend', value='onnxruntime')])
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        error = node._last_error
        assert 'TO BE COMPLETED' in error and 'wrote no decoder rather than guess one' in error
        assert 'cls [1, 64, 3] float32; reg [1, 64, 32] float32' in error
        message = error.split('configure failed: ', 1)[1].split(' Then configure again')[0]
        assert message in printed  # the same message the converter printed
    finally:
        node.destroy_node()
        rclpy.try_shutdown(context=context)
