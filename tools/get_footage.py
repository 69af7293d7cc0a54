#!/usr/bin/env python3
"""Get real pedestrian footage: OpenCV's ``vtest.avi`` from Debian's ``opencv-doc`` package.

The video (768x576, 10 FPS, 795 frames of people walking in a square) ships in
``opencv-doc`` under ``/usr/share/doc/opencv-doc/examples/data/``. Where the package is
installed the file is used from there; otherwise ``apt-get download opencv-doc`` fetches the
.deb (96 MB, nothing installed, no root needed for the download itself) into build/footage/
and only the video is extracted from it. Either way the file is checked against
:data:`VTEST_SHA256` before it is used.

Usage: ``python tools/get_footage.py`` prints the path of the checked video (exit 0), or says
what failed and how to get the file by hand (exit 1).
"""

import glob
import os
import shutil
import subprocess
import sys
from typing import Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(ROOT, 'build', 'footage')
MEMBER = './usr/share/doc/opencv-doc/examples/data/vtest.avi'
INSTALLED = MEMBER[1:]
VTEST = os.path.join(CACHE, 'vtest.avi')
VTEST_SHA256 = '45cddc9490be69345cbdab64ca583be65987e864ca408038e648db99e10516cf'

sys.path.insert(0, ROOT)
from tx2_inference.core.fileio import file_sha256  # noqa: E402


def _valid(path: str) -> bool:
    return os.path.isfile(path) and file_sha256(path) == VTEST_SHA256


def _run(cmd: list, cwd: Optional[str] = None) -> None:
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            universal_newlines=True)
    out, _ = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError('{} failed (status {}):\n{}'.format(' '.join(cmd), proc.returncode,
                                                              out[-2000:]))


def vtest_path() -> str:
    """Return the path of a checked ``vtest.avi``, fetching it once if needed.

    :raises RuntimeError: the package could not be downloaded or its video is not the expected
        file; the message says how to get it by hand.
    """
    if _valid(INSTALLED):
        return INSTALLED
    if _valid(VTEST):
        return VTEST
    os.makedirs(CACHE, exist_ok=True)
    for old in glob.glob(os.path.join(CACHE, 'opencv-doc_*.deb')):
        os.remove(old)
    try:
        try:
            _run(['apt-get', 'download', 'opencv-doc'], cwd=CACHE)
        except RuntimeError:
            # A fresh machine may have no package lists yet.
            _run(['apt-get', 'update', '-qq'])
            _run(['apt-get', 'download', 'opencv-doc'], cwd=CACHE)
        debs = glob.glob(os.path.join(CACHE, 'opencv-doc_*.deb'))
        if not debs:
            raise RuntimeError('apt-get download opencv-doc left no .deb in ' + CACHE)
        extract = os.path.join(CACHE, 'extract')
        shutil.rmtree(extract, ignore_errors=True)
        os.makedirs(extract)
        tar = subprocess.Popen(['dpkg-deb', '--fsys-tarfile', debs[0]], stdout=subprocess.PIPE)
        untar = subprocess.Popen(['tar', '-x', '-C', extract, MEMBER], stdin=tar.stdout)
        tar.stdout.close()
        if untar.wait() != 0 or tar.wait() != 0:
            raise RuntimeError('could not extract {} from {}'.format(MEMBER, debs[0]))
        os.replace(os.path.join(extract, MEMBER), VTEST)
        shutil.rmtree(extract, ignore_errors=True)
        os.remove(debs[0])
    except (OSError, RuntimeError) as exc:
        raise RuntimeError('could not get the OpenCV vtest.avi: {}\nInstall it with '
                           '`sudo apt-get install opencv-doc`, or copy vtest.avi from any '
                           'OpenCV source tree (samples/data/) to {}'.format(exc, VTEST)) from exc
    if not _valid(VTEST):
        raise RuntimeError('{} is not the expected video (sha256 differs from {})'.format(
            VTEST, VTEST_SHA256))
    return VTEST


def main() -> int:
    """Print the checked video's path."""
    try:
        print(vtest_path())
    except RuntimeError as exc:
        print('get_footage: {}'.format(exc), file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
