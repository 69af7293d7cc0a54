"""EngineCache and the engine build around TensorRT, tested without a GPU.

Only ``build_engine_bytes`` (the TensorRT call itself) is replaced, by ``fake_build`` below or
a subprocess twin of it; keys, metadata, checksums, atomic writes, the lock, stale/corrupt
handling and calibration batching are the real code. The real TensorRT build is tested where a
GPU and TensorRT are present, and skipped with the reason otherwise.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from tx2_inference import engine_builder as eb
from tx2_inference.backends.cuda import probe_gpu
from tx2_inference.errors import ConfigError, ModelError, UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TX2 = eb.DeviceIdentity('8.2.1', 'NVIDIA Tegra X2', '6.2')
ORIN = eb.DeviceIdentity('8.5.2', 'Orin', '8.7')


def fake_build(onnx_path, options):
    """Stand-in for TensorRT: deterministic bytes derived from the ONNX and the options."""
    with open(onnx_path, 'rb') as f:
        return b'ENGINE:' + options.precision.encode() + b':' + f.read()


@pytest.fixture()
def onnx_file(tmp_path):
    path = tmp_path / 'model.onnx'
    path.write_bytes(b'not really onnx, only hashed' * 100)
    return str(path)


def test_cache_key_depends_on_every_part(onnx_file):
    sha = eb.file_sha256(onnx_file)
    base = eb.cache_key(sha, TX2, eb.BuildOptions('fp16'))
    assert base == eb.cache_key(sha, TX2, eb.BuildOptions('fp16'))  # stable
    others = [
        eb.cache_key('0' * 64, TX2, eb.BuildOptions('fp16')),                       # ONNX
        eb.cache_key(sha, eb.DeviceIdentity('8.2.3', TX2.gpu_name, '6.2'),
                     eb.BuildOptions('fp16')),                                      # TensorRT
        eb.cache_key(sha, ORIN, eb.BuildOptions('fp16')),                           # GPU
        eb.cache_key(sha, eb.DeviceIdentity('8.2.1', TX2.gpu_name, '7.2'),
                     eb.BuildOptions('fp16')),                                      # capability
        eb.cache_key(sha, TX2, eb.BuildOptions('fp32')),                            # precision
        eb.cache_key(sha, TX2, eb.BuildOptions('fp16', dla_core=0)),                # DLA
    ]
    assert len(set(others + [base])) == len(others) + 1
    # paths of caches and the workspace size do not change the engine's identity
    assert base == eb.cache_key(sha, TX2, eb.BuildOptions('fp16', workspace_mb=64,
                                                          timing_cache='/tmp/x'))


def test_build_store_and_hit_with_metadata(tmp_path, onnx_file):
    cache = eb.EngineCache(str(tmp_path / 'engines'))
    calls = []

    def build(path, opts):
        calls.append(path)
        return fake_build(path, opts)

    path = cache.get_or_build(onnx_file, eb.BuildOptions('fp16'), TX2, build)
    assert os.path.basename(path).startswith('model.fp16.') and path.endswith('.engine')
    with open(os.path.splitext(path)[0] + '.json') as f:
        meta = json.load(f)
    engine = open(path, 'rb').read()
    assert engine == fake_build(onnx_file, eb.BuildOptions('fp16'))
    assert meta['engine_sha256'] == eb.file_sha256(path)
    assert meta['engine_bytes'] == len(engine)
    assert meta['onnx_sha256'] == eb.file_sha256(onnx_file)
    assert (meta['trt_version'], meta['gpu_name'], meta['compute_capability']) == (
        '8.2.1', 'NVIDIA Tegra X2', '6.2')
    assert meta['options']['precision'] == 'fp16'
    # second call: a hit, no build
    assert cache.get_or_build(onnx_file, eb.BuildOptions('fp16'), TX2, build) == path
    assert len(calls) == 1
    # another precision or GPU is another entry
    other = cache.get_or_build(onnx_file, eb.BuildOptions('fp32'), TX2, build)
    assert other != path and len(calls) == 2
    assert cache.get_or_build(onnx_file, eb.BuildOptions('fp16'), ORIN, build) not in (
        path, other)
    # the ONNX changed: a new key, a new build
    with open(onnx_file, 'ab') as f:
        f.write(b'retrained')
    assert cache.get_or_build(onnx_file, eb.BuildOptions('fp16'), TX2, build) != path
    assert len(calls) == 4


def test_corrupted_engine_is_detected_and_rebuilt(tmp_path, onnx_file):
    cache = eb.EngineCache(str(tmp_path))
    opts = eb.BuildOptions('fp16')
    path = cache.get_or_build(onnx_file, opts, TX2, fake_build)
    entry = cache.entry(onnx_file, eb.file_sha256(onnx_file), TX2, opts)
    assert cache.check(entry) == 'ok'
    with open(path, 'r+b') as f:  # flip one byte, same size
        f.seek(10)
        byte = f.read(1)
        f.seek(10)
        f.write(bytes([byte[0] ^ 0xFF]))
    assert cache.check(entry) == 'corrupt'
    calls = []
    rebuilt = cache.get_or_build(onnx_file, opts, TX2,
                                 lambda p, o: calls.append(1) or fake_build(p, o))
    assert rebuilt == path and calls == [1] and cache.check(entry) == 'ok'
    os.truncate(path, 5)  # a truncated copy
    assert cache.check(entry) == 'corrupt'
    os.unlink(entry.metadata)  # an engine without metadata is not trusted
    assert cache.check(entry) == 'missing'


def test_stale_engine_rebuilt_from_onnx_or_clear_error(tmp_path, onnx_file):
    cache = eb.EngineCache(str(tmp_path))
    built_on_tx2 = cache.get_or_build(onnx_file, eb.BuildOptions('fp16'), TX2, fake_build)
    # On the TX2 itself the engine is valid as it is.
    assert eb.check_engine_file(built_on_tx2, TX2, build_fn=fake_build) == built_on_tx2
    # Copied to an Orin: stale per its metadata; the ONNX (recorded in it) is at hand -> rebuilt
    fresh = eb.check_engine_file(built_on_tx2, ORIN, build_fn=fake_build)
    assert fresh != built_on_tx2 and os.path.isfile(fresh)
    with open(os.path.splitext(fresh)[0] + '.json') as f:
        assert json.load(f)['gpu_name'] == 'Orin'
    # Without the ONNX: a clear error naming what to do.
    os.unlink(onnx_file)
    with pytest.raises(ModelError) as err:
        eb.check_engine_file(built_on_tx2, ORIN, build_fn=fake_build)
    message = str(err.value)
    assert 'another device' in message and 'gpu_name NVIDIA Tegra X2' in message
    assert 'Copy the .onnx file' in message


_CHILD = textwrap.dedent("""
    import os, sys, time
    sys.path.insert(0, {root!r})
    from tx2_inference import engine_builder as eb
    import tx2_inference.convert.fileio as fileio
    mode, onnx, cache_dir, marker = sys.argv[1:5]
    identity = eb.DeviceIdentity('8.2.1', 'NVIDIA Tegra X2', '6.2')

    def build(path, options):
        with open(marker, 'a') as f:
            f.write('build %d\\n' % os.getpid())
        if mode == 'hang-in-build':
            time.sleep(60)
        time.sleep(float(os.environ.get('BUILD_SECONDS', '0.5')))
        return b'E' * (4 << 20)

    if mode == 'hang-in-write':  # killed after the temp engine is written, before its rename
        real_replace = os.replace
        def slow_replace(src, dst):
            with open(marker, 'a') as f:
                f.write('writing\\n')
            time.sleep(60)
            real_replace(src, dst)
        fileio.os.replace = slow_replace
    print(eb.EngineCache(cache_dir).get_or_build(onnx, eb.BuildOptions('fp16'), identity,
                                                 build))
""")


def _spawn(tmp_path, mode, onnx_file, marker, env=None):
    script = tmp_path / 'child.py'
    script.write_text(_CHILD.format(root=ROOT))
    return subprocess.Popen([sys.executable, str(script), mode, onnx_file,
                             str(tmp_path / 'cache'), str(marker)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True, env=dict(os.environ, **(env or {})))


def _wait_for(marker, text, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if marker.exists() and text in marker.read_text():
            return
        time.sleep(0.05)
    raise AssertionError('child never reached {!r}'.format(text))


@pytest.mark.parametrize('mode,stage', [('hang-in-build', 'build'),
                                        ('hang-in-write', 'writing')])
def test_killed_build_leaves_no_half_engine(tmp_path, onnx_file, mode, stage):
    marker = tmp_path / 'marker'
    child = _spawn(tmp_path, mode, onnx_file, marker)
    try:
        _wait_for(marker, stage)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.communicate()
    cache = eb.EngineCache(str(tmp_path / 'cache'))
    entry = cache.entry(onnx_file, eb.file_sha256(onnx_file), TX2, eb.BuildOptions('fp16'))
    assert not os.path.exists(entry.engine) and not os.path.exists(entry.metadata)
    # The next build is not blocked by the dead process's lock and cleans its temp files.
    path = cache.get_or_build(onnx_file, eb.BuildOptions('fp16'), TX2, fake_build)
    assert cache.check(entry) == 'ok' and path == entry.engine
    leftovers = [n for n in os.listdir(str(tmp_path / 'cache')) if n.endswith('.tmp')]
    assert leftovers == []


def test_two_concurrent_builders_leave_one_good_engine(tmp_path, onnx_file):
    marker = tmp_path / 'marker'
    env = {'BUILD_SECONDS': '1.5'}
    a = _spawn(tmp_path, 'normal', onnx_file, marker, env)
    b = _spawn(tmp_path, 'normal', onnx_file, marker, env)
    out_a, err_a = a.communicate(timeout=60)
    out_b, err_b = b.communicate(timeout=60)
    assert a.returncode == 0 and b.returncode == 0, err_a + err_b
    assert out_a.strip() == out_b.strip()
    assert marker.read_text().count('build') == 1  # the second waited and reused it
    cache = eb.EngineCache(str(tmp_path / 'cache'))
    entry = cache.entry(onnx_file, eb.file_sha256(onnx_file), TX2, eb.BuildOptions('fp16'))
    assert cache.check(entry) == 'ok'
    assert os.path.getsize(entry.engine) == 4 << 20


def test_build_or_load_copies_output_with_metadata(tmp_path, onnx_file):
    out = str(tmp_path / 'deploy' / 'model.engine')
    path = eb.build_or_load(onnx_file, eb.BuildOptions('fp32'), cache_dir=str(tmp_path / 'c'),
                            output=out, identity=TX2, build_fn=fake_build)
    assert path == out and open(out, 'rb').read() == fake_build(onnx_file,
                                                                eb.BuildOptions('fp32'))
    assert eb.check_engine_file(out, TX2) == out  # metadata travelled with it
    with pytest.raises(ModelError):
        eb.build_or_load(str(tmp_path / 'missing.onnx'), eb.BuildOptions(), identity=TX2,
                         build_fn=fake_build)


def test_calibration_batches_are_full_and_preprocessed(tmp_path):
    import cv2
    folder = tmp_path / 'calib'
    folder.mkdir()
    rng = np.random.RandomState(1)
    for i in range(7):
        cv2.imwrite(str(folder / '{}.png'.format(i)),
                    rng.randint(0, 256, (40 + i, 60, 3)).astype(np.uint8))
    from tx2_inference.convert import images
    paths = images.list_images(str(folder))
    cfg = {'layout': 'nchw', 'color': 'rgb', 'scale': 1 / 255.0, 'mean': [0.5] * 3,
           'std': [0.25] * 3}
    batches = eb.CalibrationBatches(paths, cfg, (1, 3, 32, 32), np.float32, batch_size=3)
    assert len(batches) == 2 and batches.batch_shape == (3, 3, 32, 32)
    assert batches.nbytes == 3 * 3 * 32 * 32 * 4
    got = [b.copy() for b in batches]
    assert len(got) == 2 and all(b.shape == (3, 3, 32, 32) and b.flags.c_contiguous
                                 for b in got)
    # image 4 is the 2nd of batch 2; same preprocessing as the runtime's
    expect = images.prepare(images.read_rgb(paths[4]), cfg, (1, 3, 32, 32), np.float32)[0]
    np.testing.assert_allclose(got[1][1], expect)
    assert -2.1 <= got[0].min() and got[0].max() <= 2.1  # (x/255 - .5) / .25
    with pytest.raises(UserError):
        eb.CalibrationBatches(paths[:2], cfg, (1, 3, 32, 32), np.float32, batch_size=3)


def test_shape_profiles_and_options_are_checked():
    profiles = eb.parse_shape_profiles('input:1x3x300x300:4x3x300x300:8x3x300x300')
    assert profiles == {'input': ((1, 3, 300, 300), (4, 3, 300, 300), (8, 3, 300, 300))}
    for bad in ('input:1x3:2x3', 'input:4x3x300x300:1x3x300x300:8x3x300x300', 'x:axb:1:1'):
        with pytest.raises(UserError):
            eb.parse_shape_profiles(bad)
    with pytest.raises(ConfigError):
        eb.BuildOptions('int4')
    with pytest.raises(ConfigError):
        eb.BuildOptions('int8', calibrator='percentile')


def test_cli_engine_without_gpu_is_one_clear_error(tmp_path, onnx_file, capsys):
    if probe_gpu(refresh=True)[0]:
        pytest.skip('a GPU is present: the no-GPU message cannot be shown here')
    from tx2_inference.convert.cli import main
    assert main(['engine', onnx_file, '--cache-dir', str(tmp_path / 'c')]) == 2
    err = capsys.readouterr().err
    assert 'no usable GPU' in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / 'c').exists() or not os.listdir(str(tmp_path / 'c'))


@pytest.mark.skipif(probe_gpu()[0] == 0, reason='no GPU here ({}): the real TensorRT build '
                    'runs on a Jetson or a GPU machine'.format(probe_gpu()[1]))
def test_real_tensorrt_build_of_the_default_model(tmp_path, default_model):
    pytest.importorskip('tensorrt', reason='TensorRT (full, with the Builder) not installed')
    path = eb.build_or_load(default_model, eb.BuildOptions('fp16'), cache_dir=str(tmp_path))
    meta = eb.EngineCache.read_metadata(os.path.splitext(path)[0] + '.json')
    assert meta['engine_sha256'] == eb.file_sha256(path)
    again = eb.build_or_load(default_model, eb.BuildOptions('fp16'), cache_dir=str(tmp_path))
    assert again == path


# --- The TensorRT call sequences per version, against recording fakes of each API surface ---
# Here TensorRT itself is replaced (no GPU): a fake module with the attributes of 8.2, 10 or 11
# records the calls, so the version branches of build_engine_bytes are checked name by name.

class _Rec(object):
    """Records attribute writes and method calls."""

    def __init__(self, log, label, **attrs):
        self.__dict__.update(attrs)
        self._log, self._label = log, label

    def __setattr__(self, key, value):
        if not key.startswith('_') and '_log' in self.__dict__:
            self._log.append(('set', self._label + '.' + key, value))
        object.__setattr__(self, key, value)


def _fake_trt(version, log):
    import types
    major = int(version.split('.')[0])
    trt = types.ModuleType('tensorrt')
    trt.__version__ = version
    enum = lambda *names: type('Enum', (), dict({n: i for i, n in enumerate(names)},  # noqa
                                                __members__={n: i for i, n in enumerate(names)}))
    trt.BuilderFlag = enum(*(['FP16', 'INT8', 'GPU_FALLBACK'] if major < 11 else
                             ['GPU_FALLBACK']))
    trt.NetworkDefinitionCreationFlag = enum(*(['EXPLICIT_BATCH', 'STRONGLY_TYPED'][
        :1 if major < 10 else 2] if major < 11 else ['STRONGLY_TYPED']))
    trt.MemoryPoolType = enum('WORKSPACE')
    trt.DeviceType = enum('GPU', 'DLA')
    trt.Logger = type('Logger', (), {'WARNING': 2, '__init__': lambda self, s: None})
    trt.nptype = lambda dtype: np.uint8
    if major < 11:
        for name in ('IInt8EntropyCalibrator2', 'IInt8MinMaxCalibrator'):
            setattr(trt, name, type(name, (), {'__init__': lambda self: None}))
    if major >= 10:
        trt.IProgressMonitor = type('IProgressMonitor', (), {'__init__': lambda self: None})

    def make_config():
        attrs = {'set_flag': lambda f: log.append(('flag', f)),
                 'add_optimization_profile': lambda p: log.append(('profile', p)),
                 'create_timing_cache': lambda b: ('cache', b),
                 'set_timing_cache': lambda c, ignore_mismatch: log.append(('timing', c)),
                 'get_timing_cache': lambda: _Rec(log, 'tc', serialize=lambda: b'TC')}
        if major >= 10 or version.startswith('8.6'):
            attrs['set_memory_pool_limit'] = lambda pool, n: log.append(('pool', pool, n))
        else:
            attrs['max_workspace_size'] = 0
        return _Rec(log, 'config', **attrs)

    tensor = _Rec(log, 'input', name='image_tensor:0', shape=(1, 300, 300, 3), dtype='uint8')
    network = _Rec(log, 'network', num_inputs=1, get_input=lambda i: tensor)

    def create_network(flags):
        log.append(('network_flags', flags))
        return network
    builder_attrs = {'create_builder_config': make_config, 'create_network': create_network,
                     'build_serialized_network': lambda n, c: b'SERIALIZED', 'num_DLA_cores': 0,
                     'create_optimization_profile': lambda: None}
    if major < 11:
        builder_attrs.update(platform_has_fast_fp16=True, platform_has_fast_int8=False)
    trt.Builder = lambda logger: _Rec(log, 'builder', **builder_attrs)
    trt.OnnxParser = lambda network, logger: _Rec(log, 'parser', parse=lambda b: True,
                                                  num_errors=0)
    return trt


def _tiny_onnx(path, qdq):
    import onnx
    from onnx import helper, TensorProto
    x = helper.make_tensor_value_info('x', TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info('y', TensorProto.FLOAT, [1, 4])
    if qdq:
        inits = [helper.make_tensor('s', TensorProto.FLOAT, [], [0.1]),
                 helper.make_tensor('z', TensorProto.INT8, [], [0])]
        nodes = [helper.make_node('QuantizeLinear', ['x', 's', 'z'], ['q']),
                 helper.make_node('DequantizeLinear', ['q', 's', 'z'], ['y'])]
    else:
        inits, nodes = [], [helper.make_node('Relu', ['x'], ['y'])]
    model = helper.make_model(helper.make_graph(nodes, 'g', [x], [y], inits),
                              opset_imports=[helper.make_opsetid('', 13)])
    onnx.save(model, path)
    return path


@pytest.mark.parametrize('version', ['8.2.1', '10.3.0', '11.4.0'])
def test_tensorrt_call_sequence_per_version(version, tmp_path, monkeypatch, caplog):
    from tx2_inference.backends import tensorrt_backend
    log = []
    monkeypatch.setattr(tensorrt_backend, 'import_tensorrt', lambda: _fake_trt(version, log))
    plain = _tiny_onnx(str(tmp_path / 'plain.onnx'), qdq=False)
    qdq = _tiny_onnx(str(tmp_path / 'qdq.onnx'), qdq=True)
    timing = str(tmp_path / 'timing.cache')
    opts = eb.BuildOptions('fp16', workspace_mb=256, timing_cache=timing)
    assert eb.build_engine_bytes(plain, opts) == b'SERIALIZED'
    flags = [e[1] for e in log if e[0] == 'network_flags'][0]
    assert flags == (1 if version.startswith('8.') else 0)  # EXPLICIT_BATCH only before 10
    if version.startswith('8.2'):
        assert ('set', 'config.max_workspace_size', 256 << 20) in log
    else:
        assert ('pool', 0, 256 << 20) in log  # set_memory_pool_limit(WORKSPACE, n)
    assert (('flag', 0) in log) == (not version.startswith('11'))  # BuilderFlag.FP16
    assert open(timing, 'rb').read() == b'TC'  # the timing cache is written back
    assert any(e[:2] == ('set', 'config.progress_monitor') for e in log) == (
        not version.startswith('8'))
    log.clear()
    int8 = eb.BuildOptions('int8')
    if version.startswith('11'):
        with pytest.raises(UserError) as err:  # strongly typed: INT8 only from QDQ
            eb.build_engine_bytes(plain, int8)
        assert 'tx2-convert quantize' in str(err.value)
        assert eb.build_engine_bytes(qdq, int8) == b'SERIALIZED'
    else:
        with pytest.raises(UserError) as err:  # no images and no cache: say what to pass
            eb.build_engine_bytes(plain, int8)
        assert '--calib-images' in str(err.value)
        caplog.clear()
        assert eb.build_engine_bytes(qdq, int8) == b'SERIALIZED'  # QDQ: no calibrator
        assert ('flag', 1) in log  # BuilderFlag.INT8
        assert 'no fast INT8' in caplog.text  # platform_has_fast_int8 False, as on a TX2
        if version.startswith('10'):
            assert [e[1] for e in log if e[0] == 'network_flags'][-1] == 2  # STRONGLY_TYPED
