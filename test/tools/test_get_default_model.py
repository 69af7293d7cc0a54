"""tools/get_default_model.py downloads a wheel only: no sdist's code runs (issue 22, item 12).

A real ``pip download`` with the tool's own command, against a local index (``--no-index
--find-links``) that offers only a source distribution whose setup.py leaves a mark when run.
pip runs setup.py to read an sdist's metadata, before any checksum of ours could refuse it.
"""

import os
import subprocess
import tarfile

from project_files import load_tool

SETUP = """
import os
open(os.environ['TX2_SDIST_MARK'], 'w').write('setup.py ran')
from setuptools import setup
setup(name='evil-model', version='0.2')
"""


def _tool():
    return load_tool('get_default_model')


def test_pip_download_takes_wheels_only_so_no_sdist_code_runs(tmp_path):
    index = tmp_path / 'index'
    (index / 'evil-model-0.2').mkdir(parents=True)
    (index / 'evil-model-0.2' / 'setup.py').write_text(SETUP)
    (index / 'evil-model-0.2' / 'PKG-INFO').write_text(
        'Metadata-Version: 1.0\nName: evil-model\nVersion: 0.2\n')
    with tarfile.open(str(index / 'evil-model-0.2.tar.gz'), 'w:gz') as tar:
        tar.add(str(index / 'evil-model-0.2'), arcname='evil-model-0.2')
    mark = tmp_path / 'mark'
    command = _tool().download_command('evil-model', '0.2', str(tmp_path / 'out'))
    command += ['--no-index', '--find-links', str(index), '--no-build-isolation']
    proc = subprocess.run(command, env=dict(os.environ, TX2_SDIST_MARK=str(mark)),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=120)
    assert proc.returncode != 0, proc.stdout  # no wheel: nothing downloaded
    assert not mark.exists(), "the sdist's setup.py ran"
    assert 'evil-model' in proc.stdout
