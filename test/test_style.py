"""Style, as ament's test_flake8.py and test_pep257.py check it: ruff with ament's conventions."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_ruff_ament_conventions():
    """Every Python file passes ruff (99 columns, single quotes, ordered imports, pep257)."""
    ruff = os.path.join(os.path.dirname(sys.executable), 'ruff')
    proc = subprocess.run(
        [ruff, 'check', '--no-cache', '--output-format', 'concise', '.'],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    assert proc.returncode == 0, 'ruff found style problems:\n' + proc.stdout
