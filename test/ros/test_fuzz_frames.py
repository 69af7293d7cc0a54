"""
Hypothesis-generated broken image messages through a real topic to an active node process.

One ``inference_node`` process serves the module. Raw ``sensor_msgs/Image`` faults go first,
then the same node is reconfigured for ``CompressedImage`` and gets jpeg/png faults. Every
batch of faults is followed by a valid photo, whose person must come back. Afterwards the node's
/diagnostics must count every rejected frame under the reason each fault was built to have,
nothing else may be dropped, the log must show no traceback and only throttled warnings, and
the process must still run.

The image subscription is made reliable (keep last 1000) through the node's QoS override
parameters: with the default best-effort QoS, frames can be lost between the processes on this
machine before the node sees them, and the counts could not be exact.
"""

import collections
import signal
import string

from hypothesis import given, HealthCheck, settings
from hypothesis import strategies as st
import numpy as np
import pytest

from tx2_inference.errors import FrameError
from tx2_inference.ros.image import (
    array_to_compressed_msg,
    array_to_image_msg,
    compressed_to_array,
    ENCODING_LAYOUTS,
)
from tx2_inference.tools import soak

RAW_EXAMPLES = 75           # batches of 20 faults: 1,500 raw faults
COMPRESSED_EXAMPLES = 50    # 1,000 compressed faults
BATCH = 20
SETTINGS = {'deadline': None, 'database': None,
            'suppress_health_check': [HealthCheck.too_slow, HealthCheck.data_too_large,
                                      HealthCheck.function_scoped_fixture]}

PRINTABLE = string.ascii_letters + string.digits + string.punctuation + ' '
BIG = 3  # a big valid frame: the astronaut at 1536 x 1536, far above the 300 x 300 input


class Tally(object):
    """What this process sent, by expected outcome."""

    def __init__(self) -> None:
        """Count nothing yet."""
        self.expected = collections.Counter()  # type: collections.Counter
        self.faults = 0
        self.accepted_damaged = 0
        self.valid = 0
        self.valid_with_person = 0


@pytest.fixture(scope='module')
def fuzz_node(default_model, tmp_path_factory):
    """Start an active node on the default model (reliable image queue); stop it with SIGINT."""
    folder = str(tmp_path_factory.mktemp('fuzz_node'))
    node, driver = soak.start_node('fuzz_node', default_model, folder, 'raw')
    soak.activate(driver)
    state = {'node': node, 'driver': driver, 'raw': Tally(), 'compressed': Tally()}
    yield state
    driver.close()
    if node.alive():
        node.stop(signal.SIGINT)


raw_faults = st.builds(
    soak.raw_fault, kind=st.sampled_from(soak.RAW_FAULTS), width=st.integers(1, 96),
    height=st.integers(1, 96), encoding=st.sampled_from(sorted(soak.BYTES_PER_PIXEL)),
    delta=st.integers(1, 5000),
    text=st.text(PRINTABLE, max_size=16).filter(lambda t: t not in ENCODING_LAYOUTS))

_SMALL = soak.astronaut((96, 96))
compressed_faults = st.builds(
    soak.compressed_fault, kind=st.sampled_from(soak.COMPRESSED_FAULTS), image=st.just(_SMALL),
    fmt=st.sampled_from(['jpeg', 'png']), delta=st.integers(0, 1 << 20),
    text=st.text(PRINTABLE, min_size=1, max_size=16).filter(
        lambda t: not any(n in t.lower() for n in ('jpeg', 'jpg', 'png'))),
    junk=st.binary(max_size=2000))


def send_batch(state, kind: str, batch, valid_msg, scale: float = 1.0) -> None:
    """Publish the faults, then the valid frame; wait for its person."""
    driver, tally = state['driver'], state[kind]
    assert state['node'].alive(), state['node'].log()[-3000:]
    for msg, reason in batch:
        driver.stamp(msg)
        driver.publish(msg)
        tally.faults += 1
        if reason is None:
            tally.accepted_damaged += 1
        else:
            tally.expected['bad_frame_' + reason] += 1
    stamp = driver.stamp(valid_msg)
    driver.publish(valid_msg)
    tally.valid += 1
    answer = driver.answer(stamp)
    assert answer is not None, 'no detections for a valid frame after faults'
    assert soak.person_found(answer, scale=scale), 'the person was not found after faults'
    tally.valid_with_person += 1


@settings(max_examples=RAW_EXAMPLES, **SETTINGS)
@given(batch=st.lists(raw_faults, min_size=BATCH, max_size=BATCH),
       big=st.booleans(), encoding=st.sampled_from(['rgb8', 'bgr8']))
def test_raw_faults_with_valid_frames_between(fuzz_node, batch, big, encoding):
    photo = soak.astronaut()
    if encoding == 'bgr8':
        photo = photo[:, :, ::-1]
    if big:
        photo = np.ascontiguousarray(np.repeat(np.repeat(photo, BIG, axis=0), BIG, axis=1))
    send_batch(fuzz_node, 'raw', batch, array_to_image_msg(photo, encoding),
               BIG if big else 1.0)


def check_counts(state, kind: str) -> dict:
    """Every frame sent is counted by the node; rejections by their reason, nothing else."""
    tally, driver = state[kind], state['driver']
    sent = tally.faults + tally.valid
    status = driver.settled_status(sent)
    dropped = soak.dropped(status)
    assert int(status['frames_in']) == sent, status
    assert dropped == dict(tally.expected), (dropped, dict(tally.expected))
    # Damaged frames that still decode are run; one may be replaced by the next (superseded).
    published = int(status['frames_out']) + soak.superseded(status)
    assert published == tally.valid + tally.accepted_damaged, status
    assert tally.valid_with_person == tally.valid
    return status


def test_raw_faults_are_counted_by_reason(fuzz_node):
    tally = fuzz_node['raw']
    assert tally.faults >= RAW_EXAMPLES * BATCH
    # every fault kind was tried
    assert set(tally.expected) == {'bad_frame_' + r for r in (
        'unknown_encoding', 'empty', 'step_too_small', 'data_too_short', 'data_too_long',
        'odd_width')}
    check_counts(fuzz_node, 'raw')


def test_switch_the_same_node_to_compressed(fuzz_node):
    client = fuzz_node['driver'].client
    assert client.transition('deactivate') and client.transition('cleanup')
    [result] = client.set_parameters(input_transport='compressed')
    assert result.successful, result.reason
    soak.activate(fuzz_node['driver'])
    assert client.state() == 'active'


@settings(max_examples=COMPRESSED_EXAMPLES, **SETTINGS)
@given(batch=st.lists(compressed_faults, min_size=BATCH, max_size=BATCH),
       fmt=st.sampled_from(['jpeg', 'png']))
def test_compressed_faults_with_valid_frames_between(fuzz_node, batch, fmt):
    if fuzz_node['driver'].client.state() != 'active':
        pytest.skip('the node was not switched to compressed input')
    send_batch(fuzz_node, 'compressed', batch,
               array_to_compressed_msg(soak.astronaut(), 'rgb', fmt))


def test_compressed_faults_are_counted_by_reason(fuzz_node):
    tally = fuzz_node['compressed']
    assert tally.faults >= COMPRESSED_EXAMPLES * BATCH
    assert {'bad_frame_unknown_format', 'bad_frame_empty',
            'bad_frame_corrupt_data'} <= set(tally.expected)
    check_counts(fuzz_node, 'compressed')


def test_the_node_survived_and_logged_with_throttling(fuzz_node):
    node = fuzz_node['node']
    raw, compressed = fuzz_node['raw'], fuzz_node['compressed']
    faults = raw.faults + compressed.faults
    rejected = sum(raw.expected.values()) + sum(compressed.expected.values())
    assert faults >= 2000 and rejected >= 0.9 * faults
    assert node.alive()
    log = node.log()
    assert 'Traceback' not in log
    warnings = [line for line in log.splitlines() if 'dropped a frame from' in line]
    assert warnings, 'rejected frames were not logged'
    # Throttled: one warning per 5 s at most, whatever the rate of bad frames.
    assert len(warnings) <= rejected / 50, len(warnings)
    code, seconds = node.stop(signal.SIGINT)
    assert code == 0 and seconds < 2.0, (code, seconds, node.log()[-2000:])


def test_only_jpeg_and_png_bytes_reach_the_decoder():
    import cv2
    ok, bmp = cv2.imencode('.bmp', _SMALL)
    assert ok
    msg = array_to_compressed_msg(_SMALL, 'rgb', 'png')
    msg.format, msg.data = '', bmp.tobytes()  # decodable by OpenCV, but not jpeg or png
    with pytest.raises(FrameError) as error:
        compressed_to_array(msg)
    assert error.value.reason == 'corrupt_data' and 'neither jpeg nor png' in str(error.value)
