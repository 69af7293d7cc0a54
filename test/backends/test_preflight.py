"""The preflight, the device table and the uint8 -> float32 fix (issue 20), on real ONNX models.

No TensorRT here: the preflight itself needs none. Where the engine build is exercised, only the
``tensorrt`` module is replaced (no GPU here), by a stand-in of the 8.2 surface whose ONNX parser
refuses UINT8 the way the real one does before 8.5 ("Unsupported ONNX data type: UINT8 (2)",
onnx/onnx-tensorrt#400); everything around it (the ONNX files, the preflight, the cache) is real.
"""

import json
import os
import subprocess
import sys
import types

import numpy as np
import pytest

from tx2_inference.backends.tensorrt import builder as eb
from tx2_inference.backends.tensorrt import devices, preflight
from tx2_inference.backends.tensorrt.float_input import float_inputs
from tx2_inference.errors import ConfigError, ModelError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TX2 = eb.DeviceIdentity('8.2.1', 'NVIDIA Tegra X2', '6.2')
XAVIER = eb.DeviceIdentity('8.5.2', 'Xavier', '7.2')


def _model(nodes, inputs, outputs, inits=(), opset=13, path=None):
    import onnx
    from onnx import helper
    model = helper.make_model(helper.make_graph(nodes, 'g', inputs, outputs, list(inits)),
                              opset_imports=[helper.make_opsetid('', opset)])
    if path:
        onnx.save(model, path)
    return model


def _uint8_detector_like(path=None):
    """Return a model whose uint8 image input is cast to float first (TF OD API exports)."""
    from onnx import helper
    from onnx import TensorProto as T
    x = helper.make_tensor_value_info('image_tensor:0', T.UINT8, [1, 4, 4, 3])
    y = helper.make_tensor_value_info('scores', T.FLOAT, [1, 4, 4, 3])
    i = helper.make_tensor_value_info('as_int', T.INT32, [1, 4, 4, 3])
    nodes = [helper.make_node('Cast', ['image_tensor:0'], ['ToFloat:0'], name='ToFloat',
                              to=T.FLOAT),
             helper.make_node('Cast', ['image_tensor:0'], ['as_int'], name='ToInt', to=T.INT32),
             helper.make_node('Mul', ['ToFloat:0', 'k'], ['m'], name='scale'),
             helper.make_node('Sigmoid', ['m'], ['scores'], name='act')]
    k = helper.make_tensor('k', T.FLOAT, [], [0.01])
    return _model(nodes, [x], [y, i], [k], path=path)


def _lines(model, target, path='m.onnx'):
    releases, device = devices.target_releases(target)
    return [p.line() for p in preflight.check(model, path, releases, device)]


# --- the support data: extracted by a committed script, cited per release ---

def test_support_data_cites_every_release_and_knows_uint8_from_8_5():
    data = preflight.support_data()
    assert sorted(data) == ['10', '8.0', '8.2', '8.5', '8.6']
    for entry in data.values():
        for source in (entry['source'], entry['uint8_io']['source'],
                       entry['plugins']['source']):
            assert source['repo'] in ('onnx/onnx-tensorrt', 'NVIDIA/TensorRT')
            assert len(source['commit']) == 40 and source['branch'] and source['file']
        assert entry['ops']['Conv']['supported']
    assert data['8.0']['max_opset'] == 13 and data['8.2']['max_opset'] == 13  # "up to Opset 13"
    assert data['8.5']['max_opset'] == 17 and data['10']['min_opset'] == 9
    assert [data[r]['uint8_io']['supported'] for r in ('8.0', '8.2', '8.5', '8.6', '10')] == [
        False, False, True, True, True]
    assert 'UINT8' in data['8.5']['uint8_io']['changelog']['line']
    assert 'EfficientNMS_TRT' in data['8.0']['plugins']['ops']
    assert not data['8.2']['ops']['NonZero']['supported']  # "Added ... NonZero" in 8.5 GA
    assert data['8.5']['ops']['NonZero']['supported']
    assert data['8.2']['ops']['NonMaxSuppression']['experimental']  # "Y [EXPERIMENTAL]"


def test_extraction_script_reproduces_the_committed_data(tmp_path):
    """Regenerated from the mirrors of onnx-tensorrt and TensorRT, where this machine has them."""
    repos = [os.environ.get('ONNX_TENSORRT_REPO', '/work/.mirror/onnx+onnx-tensorrt/repo'),
             os.environ.get('TENSORRT_REPO', '/work/.mirror/NVIDIA+TensorRT/repo')]
    if not all(os.path.isdir(r) for r in repos):
        pytest.skip('no git clones of onnx/onnx-tensorrt and NVIDIA/TensorRT here (set '
                    'ONNX_TENSORRT_REPO and TENSORRT_REPO to regenerate the data)')
    out = subprocess.run([sys.executable, os.path.join(ROOT, 'tools',
                                                       'extract_onnx_trt_support.py')] + repos,
                         stdout=subprocess.PIPE, check=True).stdout
    assert json.loads(out.decode()) == preflight.support_data()


# --- the device table and precision ---

def test_device_table_precision_auto_and_int8_refused():
    assert devices.device_for('6.2').key == 'tx2' and devices.device_for('8.7').key == 'orin'
    assert devices.device_for('8.6') is None  # a desktop GPU
    assert devices.resolve_precision('auto', 'NVIDIA Tegra X2', '6.2', int8_ready=True) == 'fp16'
    assert devices.resolve_precision('auto', 'Xavier', '7.2', int8_ready=True) == 'int8'
    assert devices.resolve_precision('auto', 'Xavier', '7.2', int8_ready=False) == 'fp16'
    # desktop GPUs: the support matrix's FP16/INT8 columns by compute capability
    assert devices.resolve_precision('auto', 'GTX 1080', '6.1', int8_ready=False) == 'fp32'
    assert devices.resolve_precision('int8', 'GTX 1080', '6.1', int8_ready=True) == 'int8'
    assert devices.resolve_precision('auto', 'RTX 3090', '8.6', int8_ready=True) == 'int8'
    with pytest.raises(ConfigError) as err:
        devices.resolve_precision('int8', 'Tesla P100', '6.0', int8_ready=True)
    assert 'Tesla P100 (sm_60)' in str(err.value)
    assert devices.resolve_precision('int8', 'New', '12.0', True, fast_int8=None) == 'int8'
    with pytest.raises(ConfigError) as err:
        devices.resolve_precision('int8', 'NVIDIA Tegra X2', '6.2', int8_ready=True)
    text = str(err.value)
    assert '\n' not in text and 'Jetson TX2' in text and 'sm_62' in text and 'fp16' in text
    assert devices.resolve_precision('int8', 'Orin', '8.7', int8_ready=True) == 'int8'
    assert [devices.release_for(v) for v in ('8.0.1.6', '8.2.1', '8.4.1', '8.5.2', '8.6.2',
                                             '10.3.0', '11.4.0')] == [
        '8.0', '8.2', '8.2', '8.5', '8.6', '10', '10']
    assert devices.target_releases('tx2')[0] == ['8.0', '8.2']
    assert 'auto' in eb.PRECISIONS


def test_build_or_load_refuses_int8_on_tx2_and_resolves_auto(tmp_path):
    path = str(tmp_path / 'relu.onnx')
    from onnx import helper
    from onnx import TensorProto as T
    _model([helper.make_node('Relu', ['x'], ['y'])],
           [helper.make_tensor_value_info('x', T.FLOAT, [1, 4])],
           [helper.make_tensor_value_info('y', T.FLOAT, [1, 4])], path=path)
    built = []

    def fake_build(onnx_path, options):  # stand-in for TensorRT's build only
        built.append(options.precision)
        return b'ENGINE'
    with pytest.raises(ConfigError) as err:
        eb.build_or_load(path, eb.BuildOptions('int8', calib_cache=path), identity=TX2,
                         build_fn=fake_build)
    assert 'no fast INT8' in str(err.value) and not built  # refused before any build
    engine = eb.build_or_load(path, eb.BuildOptions('auto'), identity=TX2, build_fn=fake_build)
    assert built == ['fp16'] and '.fp16.' in os.path.basename(engine)
    with open(os.path.splitext(engine)[0] + '.json') as f:
        assert json.load(f)['options']['precision'] == 'fp16'


def _qdq_model(path):
    from onnx import helper
    from onnx import TensorProto as T
    inits = [helper.make_tensor('s', T.FLOAT, [], [0.1]), helper.make_tensor('z', T.INT8, [], [0])]
    nodes = [helper.make_node('QuantizeLinear', ['x', 's', 'z'], ['q']),
             helper.make_node('DequantizeLinear', ['q', 's', 'z'], ['y'])]
    return _model(nodes, [helper.make_tensor_value_info('x', T.FLOAT, [1, 4])],
                  [helper.make_tensor_value_info('y', T.FLOAT, [1, 4])], inits, path=path)


def test_qdq_model_on_tx2_refused_with_the_fold_command(tmp_path):
    path = str(tmp_path / 'qat.onnx')
    model = _qdq_model(path)
    with pytest.raises(ConfigError) as err:
        eb.build_or_load(path, eb.BuildOptions('fp16'), identity=TX2,
                         build_fn=lambda p, o: b'E')
    assert 'tx2-convert fold-qdq {} -o'.format(path) in str(err.value)
    lines = _lines(model, 'tx2', path)
    assert len(lines) == 1 and 'tx2-convert fold-qdq {} -o OUT.onnx'.format(path) in lines[0]
    assert _lines(model, 'xavier') == [] and _lines(model, 'trt8.2') == []  # INT8 there
    engine = eb.build_or_load(path, eb.BuildOptions('auto'), identity=XAVIER,
                              build_fn=lambda p, o: o.precision.encode())
    assert open(engine, 'rb').read() == b'int8'  # auto: the Q/DQ model's INT8 on Xavier


# --- the checks, one kind of problem each ---

def test_uint8_input_named_for_tensorrt_before_8_5_only():
    model = _uint8_detector_like()
    lines = _lines(model, 'tx2')
    assert len(lines) == 1, lines
    assert "input 'image_tensor:0' is uint8" in lines[0] and 'TensorRT 8.0 and 8.2' in lines[0]
    assert '--target tx2' in lines[0] and 'tx2-convert retarget m.onnx' in lines[0]
    assert _lines(model, 'trt8.5') == [] and _lines(model, 'orin') == []


def test_opset_ops_plugins_dynamic_and_types():
    from onnx import helper
    from onnx import TensorProto as T
    x = helper.make_tensor_value_info('x', T.FLOAT, ['n', 3, 8, 8])
    s = helper.make_tensor_value_info('s', T.FLOAT, [1, 1, 4])
    y = helper.make_tensor_value_info('y', T.INT64, [None, 3])
    nodes = [helper.make_node('NonZero', ['b'], ['nz'], name='nz'),
             helper.make_node('NonMaxSuppression', ['b', 's'], ['y'], name='nms'),
             helper.make_node('ROIAlign_TRT', ['x'], ['r'], name='roi', domain='trt.plugins'),
             helper.make_node('Reshape', ['x', 'shape'], ['b'], name='flat')]
    shape = helper.make_tensor('shape', T.INT64, [3], [1, -1, 4])
    model = _model(nodes, [x, s], [y], [shape], opset=17)
    tx2 = '\n'.join(_lines(model, 'trt8.2'))
    assert 'opset 17' in tx2 and 'up to opset 13' in tx2 and '--opset 13' in tx2
    assert 'nz (NonZero)' in tx2 and 'does not support NonZero' in tx2
    assert 'plugin ROIAlign_TRT is not among the plugins of TensorRT 8.2' in tx2
    assert "input 'x' has dynamic dimensions [-1, 3, 8, 8]" in tx2 and '--batch N' in tx2
    new = '\n'.join(_lines(model, 'trt8.5'))  # opset 17, NonZero and ROIAlign_TRT from 8.5
    assert 'opset' not in new and 'NonZero' not in new and 'ROIAlign' not in new
    assert 'dynamic' in new
    releases, _ = devices.target_releases('trt8.5')
    assert preflight.check(model, 'm.onnx', releases, shapes={'x': None}) == []
    # per-op data types, from the matrix (advisory for the engine build)
    q = helper.make_tensor_value_info('q', T.INT32, [4])
    r = helper.make_tensor_value_info('r', T.INT32, [4])
    typed = _model([helper.make_node('Sqrt', ['q'], ['r'], name='root')], [q], [r])
    problems = preflight.check(typed, 'm.onnx', ['8.0'])
    assert [p.advisory for p in problems] == [True]
    assert 'root (Sqrt) reads INT32' in problems[0].line() and 'FP32, FP16' in problems[0].line()


def test_rules_are_a_list_to_extend():
    def rule_no_relu(facts):
        for node, _ in facts.nodes:
            if node.op_type == 'Sigmoid':
                yield preflight.Problem('mine', 'node {} is mine on {{trt}}'.format(node.name))
    preflight.RULES.append(rule_no_relu)
    try:
        assert 'node act is mine on TensorRT 8.5' in _lines(_uint8_detector_like(), 'trt8.5')
    finally:
        preflight.RULES.remove(rule_no_relu)


# --- uint8 -> float32: the same numbers in ONNX Runtime ---

def test_float_inputs_same_outputs_in_onnxruntime():
    import onnxruntime as ort
    model = _uint8_detector_like()
    fitted, changed = float_inputs(model)
    assert changed == ['image_tensor:0'] and _lines(fitted, 'tx2') == []
    assert [n.name for n in fitted.graph.node] == ['ToInt', 'scale', 'act']  # Cast to float gone
    pixels = np.random.RandomState(1).randint(0, 256, (1, 4, 4, 3))
    run = lambda m, dtype: ort.InferenceSession(  # noqa: E731
        m.SerializeToString(), providers=['CPUExecutionProvider']).run(
            None, {'image_tensor:0': pixels.astype(dtype)})
    for a, b in zip(run(model, np.uint8), run(fitted, np.float32)):
        np.testing.assert_array_equal(a, b)


def test_float_inputs_refuses_a_uint8_input_read_by_other_ops():
    from onnx import helper
    from onnx import TensorProto as T
    x = helper.make_tensor_value_info('x', T.UINT8, [4])
    y = helper.make_tensor_value_info('y', T.UINT8, [4])
    with pytest.raises(ModelError) as err:
        float_inputs(_model([helper.make_node('Identity', ['x'], ['y'], name='pass')], [x], [y]))
    assert "uint8 input 'x' is read by pass (Identity)" in str(err.value)


# --- the engine build: preflight before parsing, parser errors naming the node ---

class _ParserError(object):
    """The 8.x ``ParserError`` surface (code/desc/file/line/func/node; pyOnnx.cpp 8.2)."""

    def __init__(self, desc, node):
        self._desc, self._node = desc, node

    def desc(self):
        return self._desc

    def node(self):
        return self._node

    def __str__(self):
        return 'In node {} (importer): UNSUPPORTED_NODE: {}'.format(self._node, self._desc)


def _trt82(parse_log):
    """Return a stand-in for TensorRT 8.2's module: what build_engine_bytes touches to parse."""
    trt = types.ModuleType('tensorrt')
    trt.__version__ = '8.2.1.8'
    enum = lambda *names: type('Enum', (), dict({n: i for i, n in enumerate(names)},  # noqa
                                                __members__={n: i for i, n in enumerate(names)}))
    trt.BuilderFlag = enum('FP16', 'INT8', 'GPU_FALLBACK')
    trt.NetworkDefinitionCreationFlag = enum('EXPLICIT_BATCH')
    trt.Logger = type('Logger', (), {'WARNING': 2, '__init__': lambda self, s: None})
    for name in ('IInt8EntropyCalibrator2', 'IInt8MinMaxCalibrator'):
        setattr(trt, name, type(name, (), {}))
    config = types.SimpleNamespace(max_workspace_size=0)
    trt.Builder = lambda logger: types.SimpleNamespace(
        create_builder_config=lambda: config, create_network=lambda flags: object())

    class Parser(object):
        """Refuses what the real 8.2 parser refuses in these tests: UINT8, and node 1."""

        def __init__(self, network, logger):
            self.errors = []

        def parse(self, data):
            import onnx
            model = onnx.load_from_string(data)
            parse_log.append(model)
            if any(i.type.tensor_type.elem_type == 2 for i in model.graph.input):
                self.errors = [_ParserError('Unsupported ONNX data type: UINT8 (2)', -1)]
            elif len(model.graph.node) > 1:
                self.errors = [_ParserError('Assertion failed: axes must be an initializer', 1)]
            return not self.errors

        @property
        def num_errors(self):
            return len(self.errors)

        def get_error(self, i):
            return self.errors[i]
    trt.OnnxParser = Parser
    return trt


def test_engine_build_on_tensorrt_8_2_refuses_uint8_before_parsing(tmp_path, monkeypatch):
    """Bug 1: stop before parsing a uint8 model, naming the input and the command.

    Today's build hands it to the parser and says 're-export with a fixed input shape'.
    """
    from tx2_inference.backends.tensorrt import loader
    parsed = []
    monkeypatch.setattr(loader, 'import_tensorrt', lambda: _trt82(parsed))
    path = str(tmp_path / 'detector.onnx')
    _uint8_detector_like(path)
    with pytest.raises(ModelError) as err:
        eb.build_engine_bytes(path, eb.BuildOptions('fp16'))
    text = str(err.value)
    assert "input 'image_tensor:0' is uint8" in text and 'TensorRT 8.2' in text
    assert 'tx2-convert retarget {} --target trt8.2 -o OUT.onnx'.format(path) in text
    assert 'fixed input shape' not in text and parsed == []


def test_parser_failure_names_the_node_and_op(tmp_path, monkeypatch):
    from onnx import helper
    from onnx import TensorProto as T

    from tx2_inference.backends.tensorrt import loader
    parsed = []
    monkeypatch.setattr(loader, 'import_tensorrt', lambda: _trt82(parsed))
    path = str(tmp_path / 'two.onnx')
    _model([helper.make_node('Relu', ['x'], ['h'], name='first'),
            helper.make_node('Unsqueeze', ['h', 'axes'], ['y'], name='expand')],
           [helper.make_tensor_value_info('x', T.FLOAT, [4]),
            helper.make_tensor_value_info('axes', T.INT64, [1])],
           [helper.make_tensor_value_info('y', T.FLOAT, [1, 4])], path=path)
    with pytest.raises(ModelError) as err:
        eb.build_engine_bytes(path, eb.BuildOptions('fp16'))
    text = str(err.value)
    assert 'node 1 expand (Unsqueeze): Assertion failed: axes must be an initializer' in text
    assert 'tx2-convert check {} --target trt8.2'.format(path) in text and parsed


def test_parser_errors_of_tensorrt_10_carry_their_node_name():
    error = types.SimpleNamespace(desc=lambda: 'bad', node=lambda: 7, node_name=lambda: 'n7',
                                  node_operator=lambda: 'TopK')
    assert preflight.describe_parser_errors([error], '/nonexistent.onnx') == \
        'node 7 n7 (TopK): bad'


# --- the command line, on today's default model ---

def test_check_names_the_uint8_input_of_the_default_model(default_model):
    """Done when: `tx2-convert check models/ssdlite_person.onnx --target tx2` fails naming it."""
    proc = subprocess.run([sys.executable, '-m', 'tx2_inference.convert', 'check', default_model,
                           '--target', 'tx2', '--sources'], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, cwd=ROOT)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    problems = [line for line in proc.stdout.splitlines() if line.startswith(default_model)]
    assert len(problems) == 1 and "input 'image_tensor:0' is uint8" in problems[0]
    assert 'onnx/onnx-tensorrt 8.0-GA @' in proc.stdout and '1 problem(s)' in proc.stderr
    ok = subprocess.run([sys.executable, '-m', 'tx2_inference.convert', 'check', default_model,
                         '--target', 'orin'], stdout=subprocess.PIPE, universal_newlines=True,
                        cwd=ROOT)
    assert ok.returncode == 0 and 'passes the preflight for orin' in ok.stdout


def test_retarget_writes_a_model_and_config_that_pass(default_model, tmp_path):
    from tx2_inference.convert.cli import main
    from tx2_inference.core.model_config import ModelConfig
    out = str(tmp_path / 'person_tx2.onnx')
    assert main(['retarget', default_model, '--target', 'tx2', '-o', out]) == 0
    assert preflight.check_target(out, 'tx2') == []
    assert ModelConfig.load(str(tmp_path / 'person_tx2.yaml')).input['dtype'] == 'float32'
def test_retarget_overwrites_nothing_it_was_not_asked_to(default_model, tmp_path):
    """tx2-convert retarget follows every converter's rules (issue 22, ``convert.outputs``).

    Never over the model it reads (its default was in place), an existing output or a
    hand-edited config there only with --force, a .bak of each kept.
    """
    import shutil

    from tx2_inference.convert.cli import main
    model = str(tmp_path / 'person.onnx')
    shutil.copy(default_model, model)
    shutil.copy(os.path.splitext(default_model)[0] + '.yaml', str(tmp_path / 'person.yaml'))
    with open(model, 'rb') as f:
        original = f.read()
    with pytest.raises(SystemExit):  # -o is required: no default in place
        main(['retarget', model, '--target', 'tx2'])
    assert main(['retarget', model, '--target', 'tx2', '-o', model]) == 2
    out = str(tmp_path / 'person_tx2.onnx')
    assert main(['retarget', model, '--target', 'tx2', '-o', out]) == 0
    config = str(tmp_path / 'person_tx2.yaml')
    with open(config, 'a') as f:
        f.write('# completed by hand\n')
    assert main(['retarget', model, '--target', 'tx2', '-o', out]) == 2  # exists: refused
    with open(config) as f:
        assert f.read().endswith('# completed by hand\n')
    assert main(['retarget', model, '--target', 'tx2', '-o', out, '--force']) == 0
    assert os.path.isfile(out + '.bak') and os.path.isfile(config + '.bak')
    with open(model, 'rb') as f:
        assert f.read() == original  # the input was never touched


