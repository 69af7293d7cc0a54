"""What each of the newcomer's make targets sets up, read from make's own dry run.

`make demo` must not set up the Triton server (build/triton, 380 MB that only the tests and
the benchmark use; MLServer, its former stand-in, is gone) nor the tracking evaluation's
py-motmetrics environment; `make test` makes both, `make bench` the Triton server.
``make -n -B`` prints every recipe line make would run, without running any; the environment
scripts it names are read for what they call.
"""

import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def dry_run(target: str) -> str:
    """Return the commands ``make <target>`` would run, and the text of the scripts they call."""
    out = subprocess.run(['make', '-n', '-B', '-C', ROOT, target], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, universal_newlines=True, timeout=60,
                         check=True).stdout
    scripts = [word for line in out.splitlines() for word in line.split()
               if word.startswith('tools/') and word.endswith('.sh')]
    assert scripts, 'make {} runs no set-up script: {}'.format(target, out)
    texts = [out]
    for script in scripts:
        with open(os.path.join(ROOT, script)) as f:
            texts.append(f.read())
    return '\n'.join(texts)


def test_demo_creates_no_mlserver_environment():
    assert 'setup_env.sh' in dry_run('demo')
    assert 'mlserver' not in dry_run('demo').lower()
    assert 'triton' not in dry_run('demo').lower()
    assert 'motmetrics' not in dry_run('demo').lower()


@pytest.mark.parametrize('target', ['test', 'bench'])
def test_tests_and_benchmark_set_up_the_triton_server(target):
    assert 'tools/setup_triton.sh' in dry_run(target)
    assert 'mlserver' not in dry_run(target).lower()
    if target == 'test':
        assert 'tools/setup_motmetrics.sh' in dry_run(target)
