"""config/cyclonedds_large_frames.xml: what it changes for frame-sized samples, measured.

There is no rmw_cyclonedds wheel here, so no ROS node runs on Cyclone DDS in these tests. What
runs is Cyclone DDS itself (the ``cyclonedds`` package bundles its C library, release 11),
configured by ``CYCLONEDDS_URI`` exactly as rmw_cyclonedds_cpp reads it, with two processes
exchanging samples of a 640x480 rgb8 Image's size (test/cyclone_frames.py). The robot's Cyclone
is 0.10 (ROS 2 Humble): the file is checked against that release's option list too.

Every configuration here adds an inline fragment that keeps Cyclone on the loopback interface.
"""

import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

from project_files import ROOT
import pytest

XML = os.path.join(ROOT, 'config', 'cyclonedds_large_frames.xml')
OPTIONS_0_10 = os.path.join(ROOT, 'test', 'data', 'cyclonedds_0.10_options.txt')
CHILD = os.path.join(ROOT, 'test', 'cyclone_frames.py')
LOOPBACK = ('<General><Interfaces><NetworkInterface address="127.0.0.1"/></Interfaces>'
            '</General>')
NAMESPACE = '{https://cdds.io/config}'
FRAMES = 5  # 4.6 MB: more than Cyclone's default buffer holds, less than the XML's
# The XML asks for at least 8 MiB, which Linux reports as twice what it grants.
RMEM_MAX_NEEDED = 4 * 1024 * 1024


def _domain() -> int:
    return int(os.environ['ROS_DOMAIN_ID'])


def _rmem_max() -> int:
    with open('/proc/sys/net/core/rmem_max') as f:
        return int(f.read())


def _environment(with_xml: bool) -> dict:
    env = dict(os.environ)
    env['CYCLONEDDS_URI'] = ('file://' + XML + ',' if with_xml else '') + LOOPBACK
    return env


class _Child(object):
    """A test/cyclone_frames.py process, driven by lines."""

    def __init__(self, env: dict, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, CHILD] + [str(a) for a in args],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env, universal_newlines=True)

    def expect(self, word: str) -> str:
        line = self.proc.stdout.readline()
        if not line.startswith(word):
            self.proc.kill()
            pytest.fail('expected {!r} from {}, got {!r}; stderr: {}'.format(
                word, self.proc.args[2:], line, self.proc.stderr.read()[-2000:]))
        return line

    def say(self, line: str) -> None:
        self.proc.stdin.write(line + '\n')
        self.proc.stdin.flush()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


def _frames_through_a_stalled_receiver(with_xml: bool) -> tuple:
    """Send FRAMES frames at 30 FPS while the receiving process is stopped; count arrivals.

    :returns: (frames received, the reader's SAMPLE_LOST total count).

    SIGSTOP stands for what a loaded CPU does to a receive thread: the frames wait in the
    receiving socket's kernel buffer until the process runs again.
    """
    env = _environment(with_xml)
    sub = _Child(env, 'sub', _domain())
    pub = None
    try:
        sub.expect('ready')
        pub = _Child(env, 'pub', _domain(), FRAMES)
        pub.expect('matched')
        time.sleep(0.5)  # discovery settles both ways
        sub.proc.send_signal(signal.SIGSTOP)
        try:
            pub.say('go')
            pub.expect('sent')
            time.sleep(0.2)
        finally:
            sub.proc.send_signal(signal.SIGCONT)
        time.sleep(1.0)  # the receive thread reads what the kernel kept
        sub.say('report')
        words = sub.expect('received').split()
        return int(words[1]), int(words[3])
    finally:
        sub.close()
        if pub is not None:
            pub.close()


def _element_paths(element: ET.Element, prefix: str = '/') -> list:
    """Return the XPaths (elements and attributes) an XML configuration sets."""
    path = prefix + '/' + element.tag.replace(NAMESPACE, '')
    found = [path]
    found += ['{}[@{}]'.format(path, name) for name in element.attrib]
    for child in element:
        if isinstance(child.tag, str):
            found += _element_paths(child, path)
    return found


def test_every_setting_is_an_option_of_cyclone_0_10():
    """Humble's Cyclone DDS (0.10) knows every element and attribute the file sets."""
    with open(OPTIONS_0_10) as f:
        known = {line.strip() for line in f if line.startswith('//')}
    paths = _element_paths(ET.parse(XML).getroot())
    assert '//CycloneDDS/Domain/Internal/SocketReceiveBufferSize[@min]' in paths
    unknown = [p for p in paths if p not in known]
    assert not unknown, 'not options of Cyclone DDS 0.10: {}'.format(unknown)


def test_cyclone_accepts_the_file():
    """Cyclone parses the file and starts a participant with it (Cyclone 11 here)."""
    if _rmem_max() < RMEM_MAX_NEEDED:
        pytest.skip('net.core.rmem_max is {} here, below the {} the file needs: '
                    'test_too_small_a_kernel_limit_is_an_error_at_start covers it'.format(
                        _rmem_max(), RMEM_MAX_NEEDED))
    probe = _Child(_environment(True), 'probe', _domain())
    try:
        probe.expect('ok')
    finally:
        probe.close()


def test_too_small_a_kernel_limit_is_an_error_at_start():
    """Below the kernel limit the file needs, a process fails to start, saying why."""
    if _rmem_max() >= RMEM_MAX_NEEDED:
        pytest.skip('net.core.rmem_max is {} here: the file starts (tested above); this '
                    'machine cannot show the failure without changing a kernel setting'.format(
                        _rmem_max()))
    probe = _Child(_environment(True), 'probe', _domain())
    out, err = probe.proc.communicate(timeout=30)
    assert probe.proc.returncode != 0 and 'ok' not in out
    assert 'failed to increase socket receive buffer size to at least 8388608 bytes' in err


def test_a_late_receiver_loses_frames_with_the_defaults_and_none_with_the_file():
    """The frames a stalled receiver gets: at most what 2 MiB holds by default, all with it."""
    if _rmem_max() < RMEM_MAX_NEEDED:
        pytest.skip('net.core.rmem_max is {} here, below the {} the file needs'.format(
            _rmem_max(), RMEM_MAX_NEEDED))
    # Defaults: Cyclone asks for a 1 MiB buffer (reported as 2 MiB): two 921 KB frames at most.
    received, lost_count = _frames_through_a_stalled_receiver(with_xml=False)
    assert received <= 2
    # Cyclone does not count frames lost in the network as lost samples (SAMPLE_LOST is raised
    # only for samples its reader history rejects): the node's silence watch cannot blame the
    # DDS on Cyclone's count, and says so (ros/silence.py).
    assert lost_count == 0, lost_count
    assert _frames_through_a_stalled_receiver(with_xml=True)[0] == FRAMES
