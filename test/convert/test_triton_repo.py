"""`tx2-convert triton-repo`: a Triton model repository, checked by Triton's ModelConfig schema."""

import filecmp
import os
import subprocess
import sys

from google.protobuf import text_format
from project_files import ROOT
import pytest
from tritonclient.grpc import model_config_pb2

from tx2_inference.convert.triton_repo import parse_config
from tx2_inference.errors import ConfigError


def _convert(*args):
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, '-m', 'tx2_inference.convert', 'triton-repo'] +
                          [str(a) for a in args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, timeout=120)
    return proc.returncode, proc.stdout


def _config(folder):
    with open(os.path.join(folder, 'config.pbtxt')) as f:
        return text_format.Parse(f.read(), model_config_pb2.ModelConfig())


def test_person_model_repository(default_model, tmp_path):
    repo = tmp_path / 'model_repository'
    code, out = _convert(default_model, '-o', repo)
    assert code == 0, out
    folder = repo / 'ssdlite_person'
    assert sorted(os.listdir(folder)) == ['1', 'config.pbtxt', 'ssdlite_person.yaml']
    assert filecmp.cmp(folder / '1' / 'model.onnx', default_model, shallow=False)
    assert filecmp.cmp(folder / 'ssdlite_person.yaml',
                       os.path.splitext(default_model)[0] + '.yaml', shallow=False)
    config = _config(folder)
    assert config.name == 'ssdlite_person' and config.platform == 'onnxruntime_onnx'
    # The input's batch dimension is fixed to 1: no batching, full dims.
    assert config.max_batch_size == 0 and not config.HasField('dynamic_batching')
    assert [(i.name, list(i.dims), i.data_type) for i in config.input] == \
        [('image_tensor:0', [1, 300, 300, 3], model_config_pb2.DataType.TYPE_UINT8)]
    assert [o.name for o in config.output] == ['Postprocessor/ExpandDims_1:0',
                                               'Postprocessor/convert_scores:0']
    assert list(config.output[1].dims) == [-1, -1, 2]
    assert [(g.count, g.kind) for g in config.instance_group] == \
        [(1, model_config_pb2.ModelInstanceGroup.Kind.KIND_GPU)]


@pytest.fixture(scope='module')
def batch_model(tmp_path_factory):
    """Build a real ONNX model with a dynamic batch: images [N, 3, 32, 32] -> boxes, scores."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper, TensorProto
    nodes = [helper.make_node('Reshape', ['images', 'four'], ['boxes']),
             helper.make_node('Reshape', ['images', 'two'], ['scores'])]
    inits = [numpy_helper.from_array(np.array([0, -1, 4], np.int64), 'four'),
             numpy_helper.from_array(np.array([0, -1, 2], np.int64), 'two')]
    graph = helper.make_graph(
        nodes, 'batch', [helper.make_tensor_value_info('images', TensorProto.FLOAT,
                                                       ['N', 3, 32, 32])],
        [helper.make_tensor_value_info('boxes', TensorProto.FLOAT, ['N', 768, 4]),
         helper.make_tensor_value_info('scores', TensorProto.FLOAT, ['N', 1536, 2])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = tmp_path_factory.mktemp('batch') / 'conv.onnx'
    onnx.save(model, str(path))
    (path.parent / 'conv.yaml').write_text(
        'input: {name: images, layout: nchw, dtype: float32}\n'
        'decoder: {type: boxes_scores, boxes: boxes, scores: scores}\nlabels: [a, b]\n')
    return str(path)


def test_dynamic_batch_model_gets_batching(batch_model, tmp_path):
    repo = tmp_path / 'repo'
    code, out = _convert(batch_model, '-o', repo, '--name', 'conv', '--version', 3,
                         '--instances', 2, '--kind', 'cpu', '--max-queue-delay-us', 500)
    assert code == 0, out
    folder = repo / 'conv'
    assert os.path.isfile(folder / '3' / 'model.onnx') and os.path.isfile(folder / 'conv.yaml')
    config = _config(folder)
    assert config.max_batch_size == 8
    assert config.dynamic_batching.max_queue_delay_microseconds == 500
    assert list(config.input[0].dims) == [3, 32, 32]  # without the batch dimension
    assert [list(o.dims) for o in config.output] == [[768, 4], [1536, 2]]
    assert [(g.count, g.kind) for g in config.instance_group] == \
        [(2, model_config_pb2.ModelInstanceGroup.Kind.KIND_CPU)]
    code, out = _convert(batch_model, '-o', repo, '--name', 'conv')
    assert code == 2 and 'exists' in out and '--force' in out
    code, out = _convert(batch_model, '-o', repo, '--name', 'conv', '--force',
                         '--max-batch-size', 4, '--no-dynamic-batching')
    assert code == 0, out
    config = _config(folder)
    assert config.max_batch_size == 4 and not config.HasField('dynamic_batching')


def test_batching_a_fixed_batch_model_is_refused(default_model, tmp_path):
    code, out = _convert(default_model, '-o', tmp_path / 'r', '--max-batch-size', 4)
    assert code == 2 and 'image_tensor:0' in out and '--max-batch-size 0' in out
    assert not os.path.exists(tmp_path / 'r' / 'ssdlite_person')


def test_a_typo_fails_here_not_on_the_server(default_model, tmp_path):
    extra = tmp_path / 'extra.pbtxt'
    extra.write_text('optimization { execution_accelerators { gpu_execution_accelerator '
                     '[ { name: "tensorrt" } ] } }\nmodel_warmup_typo: 1\n')
    code, out = _convert(default_model, '-o', tmp_path / 'r', '--extra', extra)
    assert code == 2 and 'model_warmup_typo' in out and "Triton's ModelConfig" in out
    assert not os.path.exists(tmp_path / 'r' / 'ssdlite_person')
    extra.write_text('optimization { execution_accelerators { gpu_execution_accelerator '
                     '[ { name: "tensorrt" } ] } }\n')
    code, out = _convert(default_model, '-o', tmp_path / 'r', '--extra', extra)
    assert code == 0, out
    config = _config(tmp_path / 'r' / 'ssdlite_person')
    assert config.optimization.execution_accelerators.gpu_execution_accelerator[0].name == \
        'tensorrt'
    assert config.platform == 'onnxruntime_onnx'  # merged, not replaced
    with pytest.raises(ConfigError) as error:
        parse_config('instance_group [ { kind: KIND_TPU } ]')
    assert 'KIND_TPU' in str(error.value)


def test_tensorrt_engine_uses_its_onnx_for_tensors(default_model, tmp_path):
    # Stand-in: no TensorRT here, so the engine is bytes the converter copies without reading
    # (it reads the tensors from the ONNX beside the engine, as on a real Jetson).
    engine = tmp_path / 'ssdlite_person.engine'
    engine.write_bytes(b'\x00' * 64)
    code, out = _convert(engine, '-o', tmp_path / 'r', '--config',
                         os.path.splitext(default_model)[0] + '.yaml')
    assert code == 2 and '--onnx' in out
    code, out = _convert(engine, '-o', tmp_path / 'r', '--onnx', default_model, '--config',
                         os.path.splitext(default_model)[0] + '.yaml')
    assert code == 0, out
    assert 'build it on the server' in out
    folder = tmp_path / 'r' / 'ssdlite_person'
    config = _config(folder)
    assert config.platform == 'tensorrt_plan'
    assert (folder / '1' / 'model.plan').read_bytes() == engine.read_bytes()
    code, out = _convert(engine, '-o', tmp_path / 'r2', '--onnx', default_model, '--kind', 'cpu')
    assert code == 2 and 'GPU' in out


def test_a_model_config_that_does_not_fit_the_model_is_refused(default_model, tmp_path):
    bad = tmp_path / 'bad.yaml'
    bad.write_text('input: {name: images}\ndecoder: {type: boxes_scores}\nlabels: [person]\n')
    code, out = _convert(default_model, '-o', tmp_path / 'r', '--config', bad)
    assert code == 2 and "'images'" in out and 'image_tensor:0' in out


def test_names_that_are_paths_never_remove_or_write_outside_the_repository(default_model,
                                                                           tmp_path):
    """``--name . --force`` deleted every model; ``..`` its parent; ``../x`` wrote outside."""
    repo = tmp_path / 'model_repository'
    code, out = _convert(default_model, '-o', repo, '--name', 'keep')
    assert code == 0, out
    (tmp_path / 'precious.txt').write_text('the user keeps this')
    for name in ('.', '..', '../x', 'a/b', '.hidden', 'x y'):
        code, out = _convert(default_model, '-o', repo, '--name', name, '--force')
        assert code == 2 and 'is not a model name' in out, (name, out)
    assert sorted(os.listdir(str(repo))) == ['keep']
    assert (tmp_path / 'precious.txt').exists() and not (tmp_path / 'x').exists()
    # A model folder that is a link out of the repository: the link goes, its target stays.
    outside = tmp_path / 'outside'
    outside.mkdir()
    (outside / 'data.txt').write_text("not the repository's")
    os.symlink(str(outside), str(repo / 'linked'))
    code, out = _convert(default_model, '-o', repo, '--name', 'linked', '--force')
    assert code == 0, out
    assert (outside / 'data.txt').exists() and not (repo / 'linked').is_symlink()
    # --force replaces one model by rename: the others stay, nothing left aside.
    code, out = _convert(default_model, '-o', repo, '--name', 'keep', '--force')
    assert code == 0, out
    assert sorted(os.listdir(str(repo))) == ['keep', 'linked']
    assert filecmp.cmp(str(repo / 'keep' / '1' / 'model.onnx'), default_model, shallow=False)
