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
from project_files import ROOT
import pytest
import tensorrt_lean_bindings as lean

from tx2_inference.backends.tensorrt import builder as eb
from tx2_inference.backends.tensorrt.cuda import probe_gpu
from tx2_inference.errors import ConfigError, ModelError, UserError

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
        eb.cache_key(sha, TX2, eb.BuildOptions('fp16', workspace_mb=64)),           # workspace
    ]
    assert len(set(others + [base])) == len(others) + 1
    # the timing cache's path does not change the engine's identity
    assert base == eb.cache_key(sha, TX2, eb.BuildOptions('fp16', timing_cache='/tmp/x'))


def test_cache_key_follows_the_int8_calibration_data(tmp_path, onnx_file):
    """Bug 6: a new calibration image set or cache is a new engine, not the old one."""
    sha = eb.file_sha256(onnx_file)
    images = _calibration_images(tmp_path / 'calib', 3)
    key = lambda **kw: eb.cache_key(sha, TX2, eb.BuildOptions('int8', **kw))  # noqa: E731
    first = key(calib_images=images)
    assert first == key(calib_images=images)  # stable, and the folder's path is not in it
    moved = str(tmp_path / 'moved')
    os.rename(images, moved)
    assert key(calib_images=moved) == first
    with open(os.path.join(moved, '0.png'), 'r+b') as f:  # one image retaken
        f.seek(60)
        f.write(b'\x01\x02')
    assert key(calib_images=moved) != first
    assert key(calib_images=moved, calib_limit=2) != key(calib_images=moved)
    # From a calibration cache alone: its content.
    cache = tmp_path / 'calib.cache'
    cache.write_bytes(b'TRT-8201-EntropyCalibration2\ninput: 3c010a14')
    from_cache = key(calib_cache=str(cache))
    cache.write_bytes(b'TRT-8201-EntropyCalibration2\ninput: 3c0a0a14')
    assert key(calib_cache=str(cache)) != from_cache
    # Images and a cache: the images decide (the cache is written from them, key unchanged).
    both = key(calib_images=moved, calib_cache=str(cache))
    cache.write_bytes(b'rewritten after calibration')
    assert key(calib_images=moved, calib_cache=str(cache)) == both
    # Not INT8: calibration data is not part of the engine.
    assert (eb.cache_key(sha, TX2, eb.BuildOptions('fp16', calib_images=moved))
            == eb.cache_key(sha, TX2, eb.BuildOptions('fp16')))


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
    from tx2_inference.backends.tensorrt import builder as eb
    import tx2_inference.core.fileio as fileio
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


def _calibration_images(folder, count):
    import cv2
    folder.mkdir()
    rng = np.random.RandomState(1)
    for i in range(count):
        cv2.imwrite(str(folder / '{}.png'.format(i)),
                    rng.randint(0, 256, (40 + i, 60, 3)).astype(np.uint8))
    return str(folder)


def test_calibration_batches_cover_every_image_and_are_preprocessed(tmp_path):
    from tx2_inference.core import images
    paths = images.list_images(_calibration_images(tmp_path / 'calib', 7))
    cfg = {'layout': 'nchw', 'color': 'rgb', 'scale': 1 / 255.0, 'mean': [0.5] * 3,
           'std': [0.25] * 3}
    batches = eb.CalibrationBatches(paths, cfg, (3, 3, 32, 32), np.float32)
    assert len(batches) == 3 and batches.batch_shape == (3, 3, 32, 32)
    assert batches.nbytes == 3 * 3 * 32 * 32 * 4
    # Every image is calibrated; the last batch is filled up from the start.
    fed = [p for b in range(len(batches)) for p in batches.batch_paths(b)]
    assert set(fed) == set(paths) and fed[7:] == paths[:2]
    got = [b.copy() for b in batches]
    assert len(got) == 3 and all(b.shape == (3, 3, 32, 32) and b.flags.c_contiguous
                                 for b in got)
    # image 4 is the 2nd of batch 2; same preprocessing as the runtime's
    expect = images.prepare(images.read_rgb(paths[4]), cfg, (1, 3, 32, 32), np.float32)[0]
    np.testing.assert_allclose(got[1][1], expect)
    np.testing.assert_allclose(got[2][2], images.prepare(images.read_rgb(paths[1]), cfg,
                                                         (1, 3, 32, 32), np.float32)[0])
    assert -2.1 <= got[0].min() and got[0].max() <= 2.1  # (x/255 - .5) / .25
    # Fewer images than a batch still calibrate (repeated), none is refused.
    assert len(eb.CalibrationBatches(paths[:2], cfg, (3, 3, 32, 32), np.float32)) == 1
    with pytest.raises(UserError):
        eb.CalibrationBatches([], cfg, (3, 3, 32, 32), np.float32)


def test_calibration_shape_static_uses_the_networks_batch_dynamic_its_profile():
    from tx2_inference.backends.tensorrt.calibrator import calibration_shape
    # Static batch-1: TensorRT feeds the network's own shape, whatever --calib-batch says.
    assert calibration_shape((1, 300, 300, 3), None, 8) == ((1, 300, 300, 3), False)
    profile = ((1, 300, 300, 3), (2, 300, 300, 3), (4, 300, 300, 3))
    assert calibration_shape((-1, 300, 300, 3), profile, 8) == ((4, 300, 300, 3), True)
    assert calibration_shape((-1, 300, 300, 3), profile, 3) == ((3, 300, 300, 3), True)
    with pytest.raises(UserError, match='--shapes'):
        calibration_shape((-1, 300, 300, 3), None, 8)


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


def test_an_engine_build_without_the_onnx_package_names_the_pip_line(default_model,
                                                                       monkeypatch):
    # Every engine build reads the model with `onnx`, which no rosdep key installs: a robot
    # without it got a bare ModuleNotFoundError at its first configure (issue 20, bug 2).
    monkeypatch.setitem(sys.modules, 'onnx', None)  # as if not installed
    with pytest.raises(eb.BackendUnavailableError) as info:
        eb._onnx_ops(default_model)
    assert 'pip3 install onnx==1.11.0' in str(info.value)


def test_cli_engine_without_gpu_is_one_clear_error(tmp_path, onnx_file, capsys):
    if probe_gpu(refresh=True)[0]:
        pytest.skip('a GPU is present: the no-GPU message cannot be shown here')
    from tx2_inference.convert.cli import main
    assert main(['engine', onnx_file, '--cache-dir', str(tmp_path / 'c')]) == 2
    err = capsys.readouterr().err
    assert 'no usable GPU' in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / 'c').exists() or not os.listdir(str(tmp_path / 'c'))


@pytest.mark.gpu
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


# ``DataType`` per TensorRT release, from NVIDIA/TensorRT's headers (``enum class DataType`` of
# include/NvInferRuntimeCommon.h on release/8.0 08db8ef, release/8.2 f5f4e6f, release/8.5; of
# NvInferRuntimeBase.h on release/8.6 a0215c1 and release/10.3 5b990f0); 11.4: the real lean
# bindings. No UINT8 before 8.5 (i20-target's uint8 conversion is what makes such models build).
DATA_TYPES = {
    '8.0': ['FLOAT', 'HALF', 'INT8', 'INT32', 'BOOL'],
    '8.2': ['FLOAT', 'HALF', 'INT8', 'INT32', 'BOOL'],
    '8.5': ['FLOAT', 'HALF', 'INT8', 'INT32', 'BOOL', 'UINT8'],
    '8.6': ['FLOAT', 'HALF', 'INT8', 'INT32', 'BOOL', 'UINT8', 'FP8'],
    '10.3': ['FLOAT', 'HALF', 'INT8', 'INT32', 'BOOL', 'UINT8', 'FP8', 'BF16', 'INT64', 'INT4'],
    '11.4': sorted(lean.DataType.__members__, key=lambda n: int(lean.DataType.__members__[n])),
}
# ONNX TensorProto type -> the TensorRT type the ONNX parser gives it (onnx-tensorrt 8.2-GA
# f42daee, onnx2trt_utils.cpp convertDtype: DOUBLE -> FLOAT, INT64 -> INT32 where there is no
# INT64; anything else is "Unsupported ONNX data type: NAME (n)").
_ONNX_TO_TRT = {1: 'FLOAT', 11: 'FLOAT', 10: 'HALF', 3: 'INT8', 6: 'INT32', 9: 'BOOL',
                2: 'UINT8', 7: 'INT64', 16: 'BF16'}
_NUMPY = {'FLOAT': np.float32, 'HALF': np.float16, 'INT8': np.int8, 'INT32': np.int32,
          'BOOL': np.bool_, 'UINT8': np.uint8, 'INT64': np.int64}


def _fake_onnx_parser(trt, log):
    """``trt.OnnxParser``: the real ONNX is read; input types the release lacks are refused."""
    import onnx

    class Parser(object):
        def __init__(self, network, logger):
            self.network, self.errors = network, []
            self.num_errors = 0

        def parse(self, data):
            model = onnx.load_from_string(bytes(data))
            weights = {i.name for i in model.graph.initializer}
            for tensor in model.graph.input:
                if tensor.name in weights:
                    continue
                code = tensor.type.tensor_type.elem_type
                name = _ONNX_TO_TRT.get(code, '?')
                if name == 'INT64' and name not in trt.DataType.__members__:
                    name = 'INT32'
                if name not in trt.DataType.__members__:
                    self.errors.append('In node -1 (importInput): UNSUPPORTED_NODE: Assertion '
                                       'failed: convertDtype(...) && "Failed to convert ONNX '
                                       'date type to TensorRT data type." ({}: Unsupported ONNX '
                                       'data type: {} ({}))'.format(
                                           tensor.name, onnx.TensorProto.DataType.Name(code),
                                           code))
                    continue
                self.network.input.dtype = getattr(trt.DataType, name)
            self.num_errors = len(self.errors)
            log.append(('parsed', self.num_errors))
            return not self.errors

        def get_error(self, index):
            return self.errors[index]

    return Parser


def _fake_trt(version, log, input_shape=(1, 300, 300, 3), refuse_profile=False):
    import types
    major = int(version.split('.')[0])
    trt = types.ModuleType('tensorrt')
    trt.__version__ = version
    types_here = DATA_TYPES[version.rsplit('.', 1)[0]]
    trt.DataType = type('DataType', (), dict({n: i for i, n in enumerate(types_here)},
                                             __members__={n: i for i, n in enumerate(types_here)}))
    enum = lambda *names: type('Enum', (), dict({n: i for i, n in enumerate(names)},  # noqa
                                                __members__={n: i for i, n in enumerate(names)}))
    flags = ['FP16', 'INT8', 'GPU_FALLBACK'] if major < 11 else ['GPU_FALLBACK']
    if major >= 10 or version.startswith('8.6'):
        flags += ['VERSION_COMPATIBLE', 'EXCLUDE_LEAN_RUNTIME']
    trt.BuilderFlag = enum(*flags)
    trt.NetworkDefinitionCreationFlag = enum(*(['EXPLICIT_BATCH', 'STRONGLY_TYPED'][
        :1 if major < 10 else 2] if major < 11 else ['STRONGLY_TYPED']))
    trt.MemoryPoolType = enum('WORKSPACE')
    trt.DeviceType = enum('GPU', 'DLA')
    trt.Logger = type('Logger', (), {'WARNING': 2, '__init__': lambda self, s: None})
    trt.nptype = lambda dtype: _NUMPY[types_here[dtype]]
    if major < 11:
        for name in ('IInt8EntropyCalibrator2', 'IInt8MinMaxCalibrator'):
            setattr(trt, name, type(name, (), {'__init__': lambda self: None}))
    if major >= 10:
        trt.IProgressMonitor = type('IProgressMonitor', (), {'__init__': lambda self: None})

    profiles = []

    def add_optimization_profile(profile):  # returns the profile's index, -1 if invalid
        log.append(('profile', profile))
        profiles.append(profile)
        return -1 if refuse_profile else len(profiles) - 1

    def create_optimization_profile():
        label = 'profile{}'.format(len([e for e in log if e[0] == 'create_profile']))
        log.append(('create_profile', label))
        return _Rec(log, label, set_shape=lambda name, lo, opt, hi: log.append(
            ('set_shape', label, name, tuple(lo), tuple(opt), tuple(hi))))

    def make_config():
        flags = set()
        attrs = {'set_flag': lambda f: log.append(('flag', f)) or flags.add(f), '_flags': flags,
                 'set_calibration_profile': lambda p: log.append(('calibration_profile', p))
                 or True,
                 'add_optimization_profile': add_optimization_profile,
                 'create_timing_cache': lambda b: ('cache', b),
                 'set_timing_cache': lambda c, ignore_mismatch: log.append(('timing', c)),
                 'get_timing_cache': lambda: _Rec(log, 'tc', serialize=lambda: b'TC')}
        if major >= 10 or version.startswith('8.6'):
            attrs['set_memory_pool_limit'] = lambda pool, n: log.append(('pool', pool, n))
        else:
            attrs['max_workspace_size'] = 0
        return _Rec(log, 'config', **attrs)

    tensor = _Rec(log, 'input', name='image_tensor:0', shape=input_shape,
                  dtype=trt.DataType.FLOAT)
    network = _Rec(log, 'network', num_inputs=1, get_input=lambda i: tensor, input=tensor)

    def create_network(flags):
        log.append(('network_flags', flags))
        network.flags = flags
        return network

    def build_serialized_network(network, config):
        # TensorRT 10 refuses FP16/INT8 on a strongly typed network (NVIDIA/TensorRT#4253).
        strongly = major == 10 and network.flags & (1 << trt.NetworkDefinitionCreationFlag
                                                    .STRONGLY_TYPED)
        if strongly and {0, 1} & config._flags:
            log.append(('refused', 'precision flag on a strongly typed network'))
            return None
        calibrator = config.__dict__.get('int8_calibrator')
        if calibrator is not None:  # what TensorRT does with a calibrator: read every batch
            fed = []
            while True:
                pointers = calibrator.get_batch(['image_tensor:0'])
                if pointers is None:
                    break
                fed.append((calibrator.get_batch_size(), pointers))
            log.append(('calibrated', fed))
        return b'SERIALIZED'
    builder_attrs = {'create_builder_config': make_config, 'create_network': create_network,
                     'build_serialized_network': build_serialized_network, 'num_DLA_cores': 0,
                     'create_optimization_profile': create_optimization_profile}
    if major < 11:
        builder_attrs.update(platform_has_fast_fp16=True, platform_has_fast_int8=False)
    trt.Builder = lambda logger: _Rec(log, 'builder', **builder_attrs)
    trt.OnnxParser = _fake_onnx_parser(trt, log)
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
    from tx2_inference.backends.tensorrt import loader
    log = []
    monkeypatch.setattr(loader, 'import_tensorrt', lambda: _fake_trt(version, log))
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
        log.clear()
        assert eb.build_engine_bytes(qdq, int8) == b'SERIALIZED'  # QDQ: no calibrator
        assert not any(e[0] == 'calibrated' for e in log)
        if version.startswith('10'):
            # Strongly typed (the types come from the QDQ ONNX): no precision flag at all, or
            # TensorRT 10 refuses the build (NVIDIA/TensorRT#4253; trtexec clears them too).
            assert [e[1] for e in log if e[0] == 'network_flags'][-1] == 2  # STRONGLY_TYPED
            assert ('flag', 0) not in log and ('flag', 1) not in log
        else:  # 8.x: explicit quantization still needs the INT8 flag
            assert ('flag', 1) in log  # BuilderFlag.INT8
            assert 'no fast INT8' in caplog.text  # platform_has_fast_int8 False, as on a TX2


# --- Optimisation profiles: one identical profile per executor slot for dynamic inputs ---

_DYNAMIC = (-1, 300, 300, 3)
_SHAPES = {'image_tensor:0': ((1, 300, 300, 3), (2, 300, 300, 3), (4, 300, 300, 3))}


@pytest.mark.parametrize('version', ['8.2.1', '10.3.0', '11.4.0'])
def test_dynamic_network_gets_one_identical_profile_per_slot(version, tmp_path, monkeypatch):
    # TensorRT is replaced by the recording fake above (its builder, config, profiles only).
    from tx2_inference.backends.tensorrt import loader
    plain = _tiny_onnx(str(tmp_path / 'plain.onnx'), qdq=False)
    log = []
    monkeypatch.setattr(loader, 'import_tensorrt',
                        lambda: _fake_trt(version, log, input_shape=_DYNAMIC))
    assert eb.build_engine_bytes(plain, eb.BuildOptions('fp32', shapes=_SHAPES,
                                                        profiles=3)) == b'SERIALIZED'
    added = [e[1] for e in log if e[0] == 'profile']
    assert len(added) == 3 and len({id(p) for p in added}) == 3  # three profile objects
    shapes = [e[1:] for e in log if e[0] == 'set_shape']
    assert [s[0] for s in shapes] == ['profile0', 'profile1', 'profile2']
    assert {s[1:] for s in shapes} == {('image_tensor:0',) + _SHAPES['image_tensor:0']}
    # The default is the node's default executor_depth, 2.
    log.clear()
    eb.build_engine_bytes(plain, eb.BuildOptions('fp32', shapes=_SHAPES))
    assert len([e for e in log if e[0] == 'profile']) == 2
    # Dynamic without --shapes: say what to pass. A profile TensorRT refuses: a clear error.
    with pytest.raises(UserError, match='--shapes image_tensor:0:MIN:OPT:MAX'):
        eb.build_engine_bytes(plain, eb.BuildOptions('fp32', profiles=3))
    monkeypatch.setattr(loader, 'import_tensorrt', lambda: _fake_trt(
        version, log, input_shape=_DYNAMIC, refuse_profile=True))
    with pytest.raises(ModelError, match='refused optimisation profile 0'):
        eb.build_engine_bytes(plain, eb.BuildOptions('fp32', shapes=_SHAPES))


@pytest.mark.parametrize('version', ['8.2.1', '11.4.0'])
def test_static_network_gets_no_extra_profiles(version, tmp_path, monkeypatch):
    # TensorRT is replaced by the recording fake above (its builder, config, profiles only).
    from tx2_inference.backends.tensorrt import loader
    plain = _tiny_onnx(str(tmp_path / 'plain.onnx'), qdq=False)
    log = []
    monkeypatch.setattr(loader, 'import_tensorrt', lambda: _fake_trt(version, log))
    eb.build_engine_bytes(plain, eb.BuildOptions('fp32', profiles=4))
    assert [e for e in log if e[0] in ('create_profile', 'profile')] == []
    # Fixed shapes given with --shapes: the one profile they describe, as before.
    fixed = {'image_tensor:0': ((1, 300, 300, 3),) * 3}
    eb.build_engine_bytes(plain, eb.BuildOptions('fp32', shapes=fixed, profiles=4))
    assert len([e for e in log if e[0] == 'profile']) == 1


def test_profile_count_is_in_the_key_and_metadata_of_dynamic_engines(tmp_path, onnx_file):
    sha = eb.file_sha256(onnx_file)
    key = lambda **kw: eb.cache_key(sha, TX2, eb.BuildOptions('fp16', **kw))  # noqa: E731
    assert key(shapes=_SHAPES, profiles=2) != key(shapes=_SHAPES, profiles=3)
    assert key(shapes=_SHAPES) == key(shapes=_SHAPES, profiles=2)
    # A static model's engine does not depend on it: same key, no rebuild for another depth.
    assert key() == key(profiles=3) == key(profiles=1)
    assert 'profiles' not in eb.BuildOptions('fp16').key_fields()
    with pytest.raises(ConfigError, match='executor_depth'):
        eb.BuildOptions('fp16', profiles=0)
    cache = eb.EngineCache(str(tmp_path / 'engines'))
    calls = []

    def build(path, opts):
        calls.append(opts.profiles)
        return fake_build(path, opts)

    two = cache.get_or_build(onnx_file, eb.BuildOptions('fp16', shapes=_SHAPES), TX2, build)
    meta = eb.EngineCache.read_metadata(os.path.splitext(two)[0] + '.json')
    assert meta['options']['profiles'] == 2
    assert meta['options']['shapes'] == {'image_tensor:0': [list(s) for s in
                                                            _SHAPES['image_tensor:0']]}
    three = cache.get_or_build(onnx_file, eb.BuildOptions('fp16', shapes=_SHAPES, profiles=3),
                               TX2, build)
    assert three != two and calls == [2, 3]  # built for 3 slots, not the 2-slot one reused
    assert cache.get_or_build(onnx_file, eb.BuildOptions('fp16', shapes=_SHAPES, profiles=3),
                              TX2, build) == three and calls == [2, 3]
    # Rebuilt on another device from its metadata: the same shapes and profile count.
    seen = []
    eb.check_engine_file(three, ORIN, build_fn=lambda p, o: seen.append(o) or fake_build(p, o))
    assert seen[0].profiles == 3 and seen[0].shapes == _SHAPES


def test_cli_engine_profiles_option(tmp_path, onnx_file, monkeypatch, capsys):
    from tx2_inference.convert import cli
    got = []
    monkeypatch.setattr(eb, 'build_or_load', lambda onnx, opts, **kw: got.append(opts) or 'x')
    shapes = 'image_tensor:0:1x300x300x3:2x300x300x3:4x300x300x3'
    assert cli.main(['engine', onnx_file, '--shapes', shapes, '--profiles', '3']) == 0
    assert cli.main(['engine', onnx_file, '--shapes', shapes]) == 0
    assert [o.profiles for o in got] == [3, 2] and got[0].shapes == _SHAPES
    assert cli.main(['engine', onnx_file, '--profiles', '0']) == 2
    assert 'profiles must be at least 1' in capsys.readouterr().err


@pytest.mark.gpu
def test_real_dynamic_engine_runs_two_slots_on_two_profiles(tmp_path):
    pytest.importorskip('tensorrt', reason='TensorRT (full, with the Builder) not installed')
    import onnx
    from onnx import helper, TensorProto

    from tx2_inference.backends.tensorrt.runtime import TensorRTBackend
    x = helper.make_tensor_value_info('x', TensorProto.FLOAT, ['N', 4])
    y = helper.make_tensor_value_info('y', TensorProto.FLOAT, ['N', 4])
    model = helper.make_model(helper.make_graph([helper.make_node('Relu', ['x'], ['y'])], 'g',
                                                [x], [y]),
                              opset_imports=[helper.make_opsetid('', 13)])
    path = str(tmp_path / 'dynamic.onnx')
    onnx.save(model, path)
    shapes = {'x': ((1, 4), (2, 4), (4, 4))}
    engine = eb.build_or_load(path, eb.BuildOptions('fp32', shapes=shapes, profiles=2),
                              cache_dir=str(tmp_path / 'engines'))
    with TensorRTBackend(engine) as backend:
        assert backend._engine.num_optimization_profiles == 2
        slots = [backend.create_slot(i, {'x': (i + 1, 4)}) for i in range(2)]
        assert [s.handle.profile for s in slots] == [0, 1]
        for i, slot in enumerate(slots):
            slot.inputs['x'][:] = np.arange(-4 * (i + 1), 4 * (i + 1),
                                            2).reshape(i + 1, 4).astype(np.float32)
        for slot in slots:  # both in flight at once, each context on its own profile
            backend.launch(slot)
        for slot in slots:
            assert backend.wait(slot, timeout=10.0)
            np.testing.assert_array_equal(slot.outputs['y'], np.maximum(slot.inputs['x'], 0))
        with pytest.raises(ModelError, match='--profiles N'):
            backend.create_slot(2, {'x': (1, 4)})


# --- INT8 calibration through the build (TensorRT replaced by the recording fake above, and the
# calibrator's CUDA by a host stand-in: no GPU here) ---

class _HostCudaDevice(object):
    """cuda.open_cuda's device, on the host: it records pushes, allocations and copies."""

    opened = []

    def __init__(self):
        self.depth, self.live, self.closed, self.copied = 0, set(), False, []
        _HostCudaDevice.opened.append(self)

    def push(self):
        self.depth += 1

    def pop(self):
        self.depth -= 1

    def _make(self, value):
        self.live.add(value)
        return value

    def mem_alloc(self, nbytes):
        self.nbytes = nbytes
        return self._make(0x1000)

    def stream(self):
        return self._make('stream')

    def event(self, blocking=False):
        return self._make('event')

    def memcpy_htod_async(self, device, host, stream):
        assert self.depth > 0 and host.nbytes == self.nbytes
        self.copied.append(host.copy())

    def record(self, event, stream):
        pass

    def synchronize(self, event):
        pass

    def free(self, *objects):
        assert self.depth > 0
        self.live.difference_update(objects)

    def close(self):
        self.closed = True


@pytest.fixture()
def host_cuda(monkeypatch):
    from tx2_inference.backends.tensorrt import cuda
    _HostCudaDevice.opened = []
    monkeypatch.setattr(cuda, 'open_cuda', lambda *a, **k: _HostCudaDevice())
    return _HostCudaDevice.opened


@pytest.mark.parametrize('input_shape, calib_batch, batches, batch', [
    ((1, 300, 300, 3), 8, 7, 1),   # static batch 1: every image, one at a time (#2978)
    (_DYNAMIC, 8, 2, 4),           # dynamic: --calib-batch clamped to the profile's max 4
    (_DYNAMIC, 3, 3, 3),
])
def test_int8_calibrates_every_image_in_batches_the_network_accepts(
        input_shape, calib_batch, batches, batch, tmp_path, monkeypatch, host_cuda):
    from tx2_inference.backends.tensorrt import loader
    plain = _tiny_onnx(str(tmp_path / 'plain.onnx'), qdq=False)
    log = []
    monkeypatch.setattr(loader, 'import_tensorrt',
                        lambda: _fake_trt('8.2.1', log, input_shape=input_shape))
    shapes = _SHAPES if -1 in input_shape else {}
    options = eb.BuildOptions('int8', calib_images=_calibration_images(tmp_path / 'c', 7),
                              calib_batch=calib_batch, shapes=shapes,
                              config_path=os.path.join(ROOT, 'models', 'ssdlite_person.yaml'))
    assert eb.build_engine_bytes(plain, options) == b'SERIALIZED'
    fed = [e[1] for e in log if e[0] == 'calibrated'][0]
    assert len(fed) == batches and {size for size, _ in fed} == {batch}
    device = host_cuda[0]
    assert device.nbytes == batch * 300 * 300 * 3 * 4  # exactly one float32 batch
    assert all(c.shape == (batch, 300, 300, 3) for c in device.copied)
    profiles = [e[1] for e in log if e[0] == 'calibration_profile']
    if -1 in input_shape:  # NvInfer.h: must be set for runtime dimensions
        label = profiles[0]._label
        assert [e[2:] for e in log if e[0] == 'set_shape' and e[1] == label] == [
            ('image_tensor:0',) + ((batch, 300, 300, 3),) * 3]
    else:
        assert profiles == []
    assert device.live == set() and device.depth == 0 and device.closed


def test_calibrator_cuda_state_is_released_when_the_build_fails_early(
        tmp_path, monkeypatch, host_cuda):
    from tx2_inference.backends.tensorrt import loader
    plain = _tiny_onnx(str(tmp_path / 'plain.onnx'), qdq=False)
    monkeypatch.setattr(loader, 'import_tensorrt', lambda: _fake_trt('8.2.1', []))
    options = eb.BuildOptions('int8', calib_images=_calibration_images(tmp_path / 'c', 2),
                              dla_core=0,  # this device has no DLA: refused after precision
                              config_path=os.path.join(ROOT, 'models', 'ssdlite_person.yaml'))
    with pytest.raises(ConfigError, match='DLA core 0'):
        eb.build_engine_bytes(plain, options)
    # No context left pushed on this thread (pycuda would abort the process at its exit).
    assert all(d.depth == 0 and d.closed and not d.live for d in host_cuda)


@pytest.mark.parametrize('version', ['8.2.1', '10.3.0', '11.4.0'])
def test_version_compatible_builds_for_the_lean_runtime(version, tmp_path, monkeypatch):
    from tx2_inference.backends.tensorrt import loader
    plain = _tiny_onnx(str(tmp_path / 'plain.onnx'), qdq=False)
    log = []
    trt = _fake_trt(version, log)
    monkeypatch.setattr(loader, 'import_tensorrt', lambda: trt)
    options = eb.BuildOptions('fp32', version_compatible=True)
    if version.startswith('8.2'):
        with pytest.raises(UserError, match='8.6 and later'):
            eb.build_engine_bytes(plain, options)
        return
    assert eb.build_engine_bytes(plain, options) == b'SERIALIZED'
    flags = {e[1] for e in log if e[0] == 'flag'}
    assert flags == {int(trt.BuilderFlag.VERSION_COMPATIBLE),
                     int(trt.BuilderFlag.EXCLUDE_LEAN_RUNTIME)}
    # A model with a TensorRT plugin op cannot be version compatible: said before building.
    import onnx
    model = onnx.load(plain)
    model.graph.node[0].op_type = 'EfficientNMS_TRT'
    onnx.save(model, plain)
    with pytest.raises(UserError, match='EfficientNMS_TRT'):
        eb.build_engine_bytes(plain, options)


def test_version_compatible_is_in_the_key_metadata_and_rebuild(tmp_path, onnx_file):
    sha = eb.file_sha256(onnx_file)
    plain, compatible = eb.BuildOptions('fp16'), eb.BuildOptions('fp16', version_compatible=True)
    assert 'version_compatible' not in plain.key_fields()  # existing keys unchanged
    assert eb.cache_key(sha, TX2, plain) != eb.cache_key(sha, TX2, compatible)
    path = eb.build_or_load(onnx_file, compatible, cache_dir=str(tmp_path / 'c'), identity=TX2,
                            build_fn=fake_build)
    assert eb.engine_metadata(path)['options']['version_compatible'] is True
    seen = []
    eb.check_engine_file(path, ORIN, build_fn=lambda p, o: seen.append(o) or fake_build(p, o))
    assert seen[0].version_compatible


def test_cli_engine_version_compatible_option(tmp_path, onnx_file, monkeypatch):
    from tx2_inference.convert import cli
    got = []
    monkeypatch.setattr(eb, 'build_or_load', lambda onnx, opts, **kw: got.append(opts) or 'x')
    assert cli.main(['engine', onnx_file, '--version-compatible']) == 0
    assert cli.main(['engine', onnx_file]) == 0
    assert [o.version_compatible for o in got] == [True, False]


def test_a_cache_others_can_write_is_refused_and_its_lock_never_follows_a_link(tmp_path,
                                                                                onnx_file):
    """Issue 22, item 9: an engine planted in a shared folder is never loaded."""
    opts = eb.BuildOptions('fp16')
    shared = tmp_path / 'shared'
    cache = eb.EngineCache(str(shared))
    planted = cache.get_or_build(onnx_file, opts, TX2, fake_build)  # a valid-looking entry
    assert oct(os.stat(str(shared)).st_mode & 0o777) == oct(0o700)  # made private
    os.chmod(str(shared), 0o777)
    with pytest.raises(ModelError) as error:
        cache.get_or_build(onnx_file, opts, TX2, fake_build)
    assert 'writable by group or others (mode 777)' in str(error.value)
    assert 'chmod go-w' in str(error.value)
    os.chmod(str(shared), 0o755)
    os.chown(str(shared), 65534, -1)  # another user's folder (the tests run as root here)
    try:
        with pytest.raises(ModelError) as error:
            cache.get_or_build(onnx_file, opts, TX2, fake_build)
        assert 'belongs to another user (uid 65534)' in str(error.value)
    finally:
        os.chown(str(shared), os.getuid(), -1)
    # A lock file that is a link (to a file the process may write) is refused, not followed.
    victim = tmp_path / 'victim.txt'
    victim.write_text('keep')
    lock = os.path.splitext(planted)[0] + '.lock'
    if os.path.lexists(lock):
        os.unlink(lock)
    os.symlink(str(victim), lock)
    with pytest.raises(ModelError) as error:
        cache.get_or_build(onnx_file, opts, TX2, fake_build, force=True)
    assert 'a link there is refused' in str(error.value) and victim.read_text() == 'keep'


def test_prune_keeps_the_newest_engines_of_each_model(tmp_path, onnx_file):
    cache = eb.EngineCache(str(tmp_path / 'engines'))
    built = []
    for round_ in range(3):  # the model re-converted three times: three keys
        with open(onnx_file, 'ab') as f:
            f.write(b'retrained %d' % round_)
        built.append(cache.get_or_build(onnx_file, eb.BuildOptions('fp16'), TX2, fake_build))
        meta = os.path.splitext(built[-1])[0] + '.json'
        os.utime(meta, (1000 + round_, 1000 + round_))
    other = tmp_path / 'other.onnx'
    other.write_bytes(b'another model')
    kept_other = cache.get_or_build(str(other), eb.BuildOptions('fp16'), TX2, fake_build)
    assert cache.prune(1, 'model') == sorted(built[:2])
    left = sorted(os.listdir(str(tmp_path / 'engines')))
    assert os.path.basename(built[2]) in left and os.path.basename(kept_other) in left
    assert not any(os.path.basename(p)[:-len('.engine')] in n for p in built[:2] for n in left)
    assert cache.prune(0) == sorted([built[2], kept_other])


# A Xavier NX (sm_72: fast INT8; a TX2 refuses INT8, devices.py) after JetPack 4.6 -> 4.6.1.
XAVIER_JP461 = eb.DeviceIdentity('8.2.1', 'Xavier', '7.2')


def test_a_stale_int8_engine_is_rebuilt_with_what_its_build_had(tmp_path):
    """Bug 5: TensorRT 8.0.1 -> 8.2.1 rebuilds with the calibration, workspace, timing cache."""
    onnx_path = _tiny_onnx(str(tmp_path / 'plain.onnx'), qdq=False)
    images = _calibration_images(tmp_path / 'calib', 3)
    options = eb.BuildOptions('int8', calib_images=images, calib_cache=str(tmp_path / 'c.cache'),
                              workspace_mb=512, timing_cache=str(tmp_path / 'timing.cache'),
                              calib_batch=2, calibrator='minmax',
                              config_path=os.path.join(ROOT, 'models', 'ssdlite_person.yaml'))
    jp46 = eb.DeviceIdentity('8.0.1', 'Xavier', '7.2')
    path = eb.build_or_load(onnx_path, options, cache_dir=str(tmp_path / 'engines'),
                            identity=jp46, build_fn=fake_build)
    seen = []
    rebuilt = eb.check_engine_file(path, XAVIER_JP461,
                                   build_fn=lambda p, o: seen.append(o) or fake_build(p, o))
    assert rebuilt != path and len(seen) == 1
    again = seen[0]
    for name in ('precision', 'calib_images', 'calib_cache', 'workspace_mb', 'timing_cache',
                 'calib_batch', 'calibrator', 'config_path'):
        assert getattr(again, name) == getattr(options, name), name
    assert eb.engine_metadata(rebuilt)['trt_version'] == '8.2.1'
    # The calibration data is gone from the robot: refused with the exact command to run.
    import shutil
    shutil.rmtree(images)
    with pytest.raises(ModelError) as err:
        eb.check_engine_file(path, XAVIER_JP461, build_fn=fake_build)
    message = str(err.value)
    assert 'trt_version 8.0.1 (this device: 8.2.1)' in message
    assert 'the calibration images {!r}'.format(images) in message
    assert ('tx2-convert engine {} --precision int8 --workspace-mb 512 --calib-images {} '
            '--calib-cache {} --calibrator minmax --timing-cache {}'.format(
                onnx_path, images, options.calib_cache, options.timing_cache)) in message
    assert message.endswith('-o {}'.format(path))


def test_a_stale_int8_engine_from_a_qdq_model_needs_no_calibration(tmp_path):
    onnx_path = _tiny_onnx(str(tmp_path / 'qdq.onnx'), qdq=True)
    jp46 = eb.DeviceIdentity('8.0.1', 'Xavier', '7.2')
    path = eb.build_or_load(onnx_path, eb.BuildOptions('int8'), cache_dir=str(tmp_path / 'e'),
                            identity=jp46, build_fn=fake_build)
    assert eb.check_engine_file(path, XAVIER_JP461, build_fn=fake_build) != path


def test_a_calibration_cache_from_other_images_is_recalibrated(tmp_path, caplog):
    import types

    from tx2_inference.backends.tensorrt.calibrator import make_calibrator
    trt = types.SimpleNamespace(IInt8EntropyCalibrator2=type(
        'IInt8EntropyCalibrator2', (), {'__init__': lambda self: None}))
    cache = str(tmp_path / 'calib.cache')
    batches = []  # images are given (their batches are not read here)
    first = make_calibrator(trt, 'entropy', batches, cache, source='images:aaa')
    assert first.read_calibration_cache() is None
    first.write_calibration_cache(b'scales from images aaa')
    assert first.read_calibration_cache() == b'scales from images aaa'
    other = make_calibrator(trt, 'entropy', batches, cache, source='images:bbb')
    assert other.read_calibration_cache() is None  # TensorRT then calibrates from the images
    assert 'not written from these calibration images' in caplog.text
    # No images: the cache alone is the calibration, whatever wrote it.
    assert make_calibrator(trt, 'entropy', None, cache).read_calibration_cache() == (
        b'scales from images aaa')


def _batch_onnx(path, batch):
    """Write a one-Relu ONNX with the fake network's input, of batch ``batch`` ('N': free)."""
    import onnx
    from onnx import helper, TensorProto
    shape = [batch, 300, 300, 3]
    x = helper.make_tensor_value_info('image_tensor:0', TensorProto.FLOAT, shape)
    y = helper.make_tensor_value_info('y', TensorProto.FLOAT, shape)
    model = helper.make_model(helper.make_graph(
        [helper.make_node('Relu', ['image_tensor:0'], ['y'])], 'g', [x], [y]),
        opset_imports=[helper.make_opsetid('', 13)])
    onnx.save(model, path)
    return path


def test_the_nodes_onnx_build_takes_batch_size_and_finds_the_cli_engine(
        tmp_path, monkeypatch, capsys):
    """Bug 4: batch_size reaches the build; `tx2-convert engine --batch N` has the same key."""
    from tx2_inference import backends
    from tx2_inference.backends.tensorrt import loader, runtime
    from tx2_inference.convert import cli
    log = []
    monkeypatch.setattr(loader, 'import_tensorrt',
                        lambda: _fake_trt('8.2.1', log, input_shape=_DYNAMIC))
    monkeypatch.setattr(eb, 'device_identity', lambda: TX2)
    built = []
    real_build = eb.build_engine_bytes
    monkeypatch.setattr(eb, 'build_engine_bytes',
                        lambda path, opts: built.append(opts) or real_build(path, opts))
    opened = []
    monkeypatch.setattr(runtime, 'TensorRTBackend',
                        lambda path, device=0, **kw: opened.append(path) or
                        type('Opened', (), {'precision': None})())
    onnx_path = _batch_onnx(str(tmp_path / 'cams.onnx'), 'N')
    cache = str(tmp_path / 'engines')
    # Built by hand first, as the README says, then the node starts with batch_size 4.
    assert cli.main(['engine', onnx_path, '--batch', '4', '--cache-dir', cache]) == 0
    by_hand = capsys.readouterr().out.split('Engine: ')[1].strip()
    backends.open_backend(onnx_path, 'tensorrt', engine_cache_dir=cache, batch_size=4, depth=2)
    assert opened == [by_hand] and len(built) == 1  # found, not built again
    assert built[0].shapes == {'image_tensor:0': ((1, 300, 300, 3), (4, 300, 300, 3),
                                                  (4, 300, 300, 3))}
    # Another batch_size or depth is another engine, built with its profiles at configure.
    backends.open_backend(onnx_path, 'tensorrt', engine_cache_dir=cache, batch_size=2, depth=3)
    assert len(built) == 2 and opened[-1] != by_hand
    assert built[1].shapes['image_tensor:0'][2] == (2, 300, 300, 3) and built[1].profiles == 3
    assert len([e for e in log if e[0] == 'profile']) == 2 + 3
    # A fixed-batch model gets no profiles: it runs its own batch (the detector says the rest).
    fixed = _batch_onnx(str(tmp_path / 'one.onnx'), 1)
    monkeypatch.setattr(loader, 'import_tensorrt', lambda: _fake_trt('8.2.1', log))
    backends.open_backend(fixed, 'tensorrt', engine_cache_dir=cache, batch_size=4)
    assert built[-1].shapes == {}


def test_a_prebuilt_engine_reports_the_precision_it_was_built_with(tmp_path, monkeypatch):
    """The node's default precision is auto: a .engine's precision is its metadata's.

    /diagnostics and the configure log show ``detector.precision``; an engine built by
    ``tx2-convert engine`` (fp16 here) must not be reported as ``auto``. Only the device
    identity and the TensorRT runtime are replaced (no GPU here); the metadata is the cache's.
    """
    from tx2_inference import backends
    from tx2_inference.backends.tensorrt import runtime
    monkeypatch.setattr(eb, 'device_identity', lambda: TX2)
    monkeypatch.setattr(runtime, 'TensorRTBackend',
                        lambda path, device=0, **kw: type('Opened', (), {'precision': None})())
    onnx_path = tmp_path / 'model.onnx'
    onnx_path.write_bytes(b'onnx bytes')
    engine = eb.build_or_load(str(onnx_path), eb.BuildOptions('fp16'), identity=TX2,
                              build_fn=fake_build, output=str(tmp_path / 'model.engine'))
    assert backends.open_backend(engine, 'tensorrt', precision='auto').precision == 'fp16'
    # Without metadata (trtexec's engines) nothing says which: not 'auto' either.
    bare = tmp_path / 'bare.engine'
    bare.write_bytes(b'engine bytes')
    assert backends.open_backend(str(bare), 'tensorrt', precision='auto').precision == \
        'unknown'


def test_the_cli_engine_by_default_is_the_one_the_node_finds(tmp_path, monkeypatch, capsys):
    """tx2-convert engine without --precision builds what the node's default (auto) asks for.

    On an Orin a Q/DQ model builds INT8 under auto; were the CLI's default FP16, the engine
    built by hand would sit under another key and the node would build again at configure
    (minutes on a Jetson). Only the TensorRT build and runtime are replaced.
    """
    from tx2_inference import backends
    from tx2_inference.backends.tensorrt import runtime
    from tx2_inference.convert import cli
    monkeypatch.setattr(eb, 'device_identity', lambda: ORIN)
    built = []
    monkeypatch.setattr(eb, 'build_engine_bytes',
                        lambda path, opts: built.append(opts.precision) or fake_build(path, opts))
    opened = []
    monkeypatch.setattr(runtime, 'TensorRTBackend',
                        lambda path, device=0, **kw: opened.append(path) or
                        type('Opened', (), {'precision': None})())
    onnx_path = _tiny_onnx(str(tmp_path / 'qat.onnx'), qdq=True)
    cache = str(tmp_path / 'engines')
    assert cli.main(['engine', onnx_path, '--cache-dir', cache]) == 0
    by_hand = capsys.readouterr().out.split('Engine: ')[1].strip()
    backend = backends.open_backend(onnx_path, 'tensorrt', precision='auto',
                                    engine_cache_dir=cache)
    assert opened == [by_hand] and built == ['int8'] and backend.precision == 'int8'


def test_the_detector_hands_batch_size_and_depth_to_the_backend(monkeypatch, default_model):
    from tx2_inference import detector
    seen = {}

    class StopError(Exception):
        pass

    def open_backend(model_path, backend, **kwargs):
        seen.update(kwargs)
        raise StopError()

    monkeypatch.setattr(detector, 'open_backend', open_backend)
    with pytest.raises(StopError):
        detector.Detector(default_model, backend='tensorrt', batch_size=4, depth=3)
    assert seen['batch_size'] == 4 and seen['depth'] == 3


@pytest.mark.parametrize('version, takes_uint8', [
    ('8.0.1', False), ('8.2.1', False), ('8.5.2', True), ('10.3.0', True), ('11.4.0', True)])
def test_the_builder_fake_refuses_types_its_tensorrt_lacks(version, takes_uint8, tmp_path,
                                                           monkeypatch):
    """A uint8 input (every TF OD API export) does not parse before TensorRT 8.5."""
    import onnx
    from onnx import helper, TensorProto

    from tx2_inference.backends.tensorrt import loader
    log = []
    monkeypatch.setattr(loader, 'import_tensorrt', lambda: _fake_trt(version, log))
    x = helper.make_tensor_value_info('image_tensor:0', TensorProto.UINT8, [1, 300, 300, 3])
    y = helper.make_tensor_value_info('y', TensorProto.FLOAT, [1, 300, 300, 3])
    path = str(tmp_path / 'uint8.onnx')
    onnx.save(helper.make_model(helper.make_graph(
        [helper.make_node('Cast', ['image_tensor:0'], ['y'], to=TensorProto.FLOAT)], 'g',
        [x], [y]), opset_imports=[helper.make_opsetid('', 13)]), path)
    import types
    network = types.SimpleNamespace(input=types.SimpleNamespace(dtype=None))
    parser = _fake_trt(version, log).OnnxParser(network, None)
    with open(path, 'rb') as f:
        assert parser.parse(f.read()) == takes_uint8
    if takes_uint8:
        assert network.input.dtype == _fake_trt(version, log).DataType.UINT8
        assert eb.build_engine_bytes(path, eb.BuildOptions('fp32')) == b'SERIALIZED'
        return
    assert 'Unsupported ONNX data type: UINT8 (2)' in parser.get_error(0)
    with pytest.raises(ModelError, match="'image_tensor:0'"):  # the preflight says it first
        eb.build_engine_bytes(path, eb.BuildOptions('fp32'))
