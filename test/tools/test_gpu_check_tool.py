"""tools/gpu_check.py (``make gpu-check``) dry-run on this CPU machine: its decisions, not a GPU.

The GPU probe and the device's name are the only things stood in (there is no GPU here); the
libraries are what this machine really has (numpy and the real cuda-bindings, no CuPy, no
pycuda), and pytest's report is a real JUnit file written by a stand-in runner.
"""


from project_files import load_tool
import pytest


@pytest.fixture()
def tool(monkeypatch):
    module = load_tool('gpu_check')
    from tx2_inference.backends.tensorrt import cuda
    monkeypatch.setattr(cuda, 'gpu_name_and_capability', lambda: ('NVIDIA H100 80GB', '9.0'))
    monkeypatch.setattr(module, '_driver_version', lambda: '12.8')
    return module


def _runner(calls, status=0, skipped=(), write=True):
    def run(command):
        calls.append(command)
        junit = command[command.index('--junitxml') + 1]
        if write:
            cases = ''.join('<testcase name="{}"><skipped message="{}"/></testcase>'.format(
                name, why) for name, why in skipped)
            with open(junit, 'w') as f:
                f.write('<testsuites><testsuite>{}<testcase name="ok"/></testsuite>'
                        '</testsuites>'.format(cases))
        return status
    return run


def test_a_gpu_machine_without_cupy_fails_loudly_before_any_test(tool, capsys):
    calls = []
    assert tool.main(probe=lambda: (1, ''), run=_runner(calls)) == 1
    out = capsys.readouterr().out
    assert calls == []  # no pytest run whose every test would be skipped
    assert 'gpu-check: GPU: 1 x NVIDIA H100 80GB (sm_90), driver CUDA 12.8' in out
    assert 'cuda-python (cuda.bindings) 13.0.3' in out  # the real package here
    assert 'pycuda not installed: the pycuda path stays unrun here' in out
    assert 'FAILED: CuPy is missing' in out and 'pip install cupy' in out


def _found(**changes):
    found = dict(gpus=1, no_gpu='', python='3.10.12', numpy='1.26.4', cupy='13.3.0',
                 cupy_cuda='12.8', tensorrt=None, pycuda=None, gpu='H100', capability='9.0',
                 driver='12.8', **{'cuda-python': '12.9.1'})
    found.update(changes)
    return found


def test_a_gpu_machine_without_cuda_python_fails_too(tool):
    assert tool.problems(_found()) == []
    assert tool.problems(_found(**{'cuda-python': None})) == [
        "cuda-python is missing (the backend's CUDA library off the Jetson): pip install "
        'cuda-python']


def test_skipped_or_uncollected_tests_fail_the_check(tool, monkeypatch, capsys):
    monkeypatch.setattr(tool, 'inventory', lambda probe=None: _found())
    calls = []
    assert tool.main(run=_runner(calls)) == 0  # everything ran
    assert calls[0][-1] == tool.TESTS
    assert tool.main(run=_runner(calls, skipped=[('test_waits', 'cupy is missing')])) == 1
    assert 'FAILED: skipped on a GPU machine: test_waits: cupy is missing' in (
        capsys.readouterr().out)
    assert tool.main(run=_runner(calls, status=5, write=False)) == 1
    assert 'collected no test' in capsys.readouterr().out
    assert tool.main(run=_runner(calls, status=1)) == 1  # a failed test: pytest's status
