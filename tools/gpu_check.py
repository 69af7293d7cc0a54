#!/usr/bin/env python3
"""`make gpu-check`: say what this GPU machine has, refuse to run without what it needs, run it.

Runs ``test/backends/test_gpu_check.py`` (the TensorRT backend on a real GPU, TensorRT itself a
stand-in) and installs nothing. First it prints what it found: the GPU, its compute capability
and driver, Python, numpy, CuPy and its CUDA runtime, cuda-python (``cuda.bindings``), pycuda,
TensorRT. Then, on a GPU machine, a missing piece is an error, not a row of skipped tests and
exit 0:

- numpy and CuPy (the stand-in's kernel) are required;
- cuda-python is required: the backend's CUDA library off the Jetson. pycuda (JetPack's) is run
  where installed and otherwise reported as unrun: it does not install without ``libcuda`` and
  ``curand.h`` (docs/DESIGN.md, "pycuda").

After pytest, any skipped test fails the check too (read from its JUnit report), naming it.
Usage: ``python3 tools/gpu_check.py [pytest args]`` (``make gpu-check GPU_PYTHON=...``).
"""

import ctypes
import importlib
import os
import subprocess
import sys
import tempfile
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple
import xml.etree.ElementTree as ElementTree

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = 'test/backends/test_gpu_check.py'


def _version(module: str) -> Optional[str]:
    """Return an importable module's version ('?' without one), or None if it is missing."""
    try:
        found = importlib.import_module(module)
    except ImportError:
        return None
    except Exception as error:  # noqa: BLE001 (a broken install is reported, not raised)
        return 'broken ({})'.format(error)
    return str(getattr(found, '__version__', getattr(found, 'VERSION_TEXT', '?')))


def _driver_version() -> str:
    try:
        version = ctypes.c_int(0)
        ctypes.CDLL('libcuda.so.1').cuDriverGetVersion(ctypes.byref(version))
        return '{}.{}'.format(version.value // 1000, version.value % 1000 // 10)
    except (OSError, AttributeError):
        return '?'


def inventory(probe: Optional[Callable[[], Tuple[int, str]]] = None) -> Dict[str, Any]:
    """Return what this machine has for the GPU check (``None``: missing)."""
    sys.path.insert(0, ROOT)
    from tx2_inference.backends.tensorrt import cuda
    count, reason = (probe or cuda.probe_gpu)()
    found = {'gpus': count, 'no_gpu': reason, 'python': '.'.join(map(str, sys.version_info[:3])),
             'numpy': _version('numpy'), 'cupy': _version('cupy'),
             'cuda-python': _version('cuda.bindings') or _version('cuda.cudart'),
             'pycuda': _version('pycuda'), 'tensorrt': _version('tensorrt')}
    if count:
        found['gpu'], found['capability'] = cuda.gpu_name_and_capability()
        found['driver'] = _driver_version()
    if found['cupy'] and count:
        try:
            import cupy
            runtime = cupy.cuda.runtime.runtimeGetVersion()
            found['cupy_cuda'] = '{}.{}'.format(runtime // 1000, runtime % 1000 // 10)
        except Exception as error:  # noqa: BLE001 (CuPy without a working CUDA: say so)
            found['cupy'] = 'broken ({})'.format(error)
    return found


def report(found: Dict[str, Any]) -> List[str]:
    """Return the lines saying what was found."""
    if found['gpus']:
        gpu = '{} x {} (sm_{}), driver CUDA {}'.format(
            found['gpus'], found.get('gpu'), str(found.get('capability', '?')).replace('.', ''),
            found.get('driver', '?'))
    else:
        gpu = 'none ({})'.format(found['no_gpu'])
    return ['GPU: ' + gpu,
            'Python {}, numpy {}, CuPy {}{}'.format(
                found['python'], found['numpy'] or 'MISSING', found['cupy'] or 'MISSING',
                ' (CUDA runtime {})'.format(found['cupy_cuda']) if found.get('cupy_cuda')
                else ''),
            'cuda-python (cuda.bindings) {}; pycuda {}'.format(
                found['cuda-python'] or 'MISSING',
                found['pycuda'] or 'not installed: the pycuda path stays unrun here'),
            'TensorRT: {}'.format(found['tensorrt'] or 'not installed: a stand-in replaces it '
                                  '(test/trt_standin.py)')]


def problems(found: Dict[str, Any]) -> List[str]:
    """Return what the GPU check needs and this machine lacks (empty: ready)."""
    if not found['gpus']:
        return ['no NVIDIA GPU here: {}'.format(found['no_gpu'])]
    missing = []
    if not found['numpy']:
        missing.append('numpy is missing (pip install numpy)')
    if not found['cupy'] or str(found['cupy']).startswith('broken'):
        missing.append('CuPy is {} (the TensorRT stand-in launches its kernel with it): pip '
                       'install cupy-cuda12x (or the wheel for this CUDA)'.format(
                           found['cupy'] or 'missing'))
    if not found['cuda-python'] or str(found['cuda-python']).startswith('broken'):
        missing.append("cuda-python is {} (the backend's CUDA library off the Jetson): pip "
                       'install cuda-python'.format(found['cuda-python'] or 'missing'))
    return missing


def skipped(junit_xml: str) -> List[str]:
    """Return '<test>: <reason>' for every skipped test in a pytest JUnit report."""
    lines = []
    for case in ElementTree.parse(junit_xml).iter('testcase'):
        for skip in case.findall('skipped'):
            lines.append('{}: {}'.format(case.get('name'), skip.get('message', '')))
    return lines


def main(argv: Sequence[str] = (), probe: Optional[Callable[[], Tuple[int, str]]] = None,
         run: Callable[[List[str]], int] = subprocess.call) -> int:
    """Print the inventory; 1 when something is missing or skipped, else pytest's status."""
    found = inventory(probe)
    for line in report(found):
        print('gpu-check: ' + line, flush=True)
    missing = problems(found)
    if missing:
        for line in missing:
            print('gpu-check: FAILED: ' + line, flush=True)
        return 1
    with tempfile.TemporaryDirectory() as folder:
        junit = os.path.join(folder, 'gpu-check.xml')
        status = run([sys.executable, '-m', 'pytest', '-m', 'gpu', '-s', '-q', '-rs', '-p',
                      'no:cacheprovider', '-o', 'addopts=', '-o', 'timeout=280',
                      '--junitxml', junit, TESTS] + list(argv))
        if status == 5:
            print('gpu-check: FAILED: pytest collected no test', flush=True)
            return 1
        left_out = skipped(junit) if os.path.isfile(junit) else []
    for line in left_out:
        print('gpu-check: FAILED: skipped on a GPU machine: ' + line, flush=True)
    if status == 0 and left_out:
        return 1
    return status


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
