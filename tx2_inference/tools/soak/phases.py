"""The soak's phases: fuzz, churn, flood and signals, each against a real node process."""

import os
import signal
import threading
import time
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import numpy as np

from tx2_inference.tools.soak.faults import astronaut, random_compressed_fault, random_raw_fault
from tx2_inference.tools.soak.graph import (
    activate,
    Driver,
    dropped,
    NodeProcess,
    person_found,
    start_node,
    superseded,
)


def fuzz(driver: Driver, frames: int, compressed: bool, seed: int = 0,
         valid_every: int = 20, valid: Optional[np.ndarray] = None,
         generate: Optional[Callable[[], Tuple[Any, Optional[str]]]] = None
         ) -> Dict[str, Any]:
    """
    Publish ``frames`` broken messages with a valid photo after every ``valid_every``.

    Each valid frame is waited for (its detections must contain the person), so no valid frame
    is superseded and every count is exact.

    :returns: sent, expected drop counts by reason, valid frames sent and answered with a person.
    """
    from tx2_inference.ros.image import array_to_compressed_msg, array_to_image_msg
    rng = np.random.RandomState(seed)
    image = astronaut() if valid is None else valid
    if generate is None:
        def generate() -> Tuple[Any, Optional[str]]:
            if compressed:
                return random_compressed_fault(rng, image)
            return random_raw_fault(rng)
    good = (array_to_compressed_msg(image, 'rgb', 'jpeg') if compressed
            else array_to_image_msg(image, 'rgb8'))
    expected = {}  # type: Dict[str, int]
    result = {'faults_sent': 0, 'accepted_damaged': 0, 'valid_sent': 0, 'valid_with_person': 0}
    for index in range(frames):
        msg, reason = generate()
        driver.stamp(msg)
        driver.publish(msg)
        result['faults_sent'] += 1
        if reason is None:
            result['accepted_damaged'] += 1
        else:
            expected[reason] = expected.get(reason, 0) + 1
        if (index + 1) % valid_every == 0 or index + 1 == frames:
            stamp = driver.stamp(good)
            driver.publish(good)
            result['valid_sent'] += 1
            answer = driver.answer(stamp)
            if answer is not None and person_found(answer):
                result['valid_with_person'] += 1
    result['expected_drops'] = expected
    return result


def churn(node: NodeProcess, driver: Driver, cycles: int, fps: float = 15.0,
          frame: Optional[np.ndarray] = None) -> Dict[str, Any]:
    """
    Run configure / activate / deactivate / cleanup ``cycles`` times with frames flowing.

    Frames are published from a thread at ``fps`` the whole time; each cycle waits for one
    answered frame before deactivating.

    :returns: per-cycle threads, fds and RSS of the node (measured unconfigured), and counts.
    """
    from tx2_inference.ros.image import array_to_image_msg
    msg = array_to_image_msg(astronaut((320, 240)) if frame is None else frame, 'rgb8')
    stop = threading.Event()
    sent = [0]

    def feed() -> None:
        while not stop.is_set():
            driver.stamp(msg)
            driver.publish(msg)
            sent[0] += 1
            stop.wait(1.0 / fps)
    thread = threading.Thread(target=feed, name='churn-feed', daemon=True)
    samples = []  # type: List[Dict[str, float]]
    failures = []  # type: List[str]
    answered = 0
    thread.start()
    try:
        for cycle in range(cycles):
            for transition in ('configure', 'activate'):
                if not driver.client.transition(transition):
                    failures.append('cycle {}: {}'.format(cycle, transition))
            before = len(driver.detections())
            if driver.client.wait_until(lambda n=before: len(driver.detections()) > n,
                                        timeout=10.0):
                answered += 1
            for transition in ('deactivate', 'cleanup'):
                if not driver.client.transition(transition):
                    failures.append('cycle {}: {}'.format(cycle, transition))
            sample = node.resources()
            sample['cycle'] = cycle + 1
            samples.append(sample)
    finally:
        stop.set()
        thread.join(timeout=5.0)
    return {'cycles': cycles, 'cycles_answered': answered, 'failures': failures,
            'frames_sent': sent[0], 'samples': samples}


def flood(node: NodeProcess, driver: Driver, frames: int, fps: float,
          frame: Optional[np.ndarray] = None) -> Dict[str, Any]:
    """
    Publish ``frames`` frames at ``fps`` (above the model's throughput) to the active node.

    :returns: counts (sent, answered, node's frames_in/out and drops by reason), end-to-end
        latency per answered frame (stamp to arrival here), and the node's RSS over frames.
    """
    from tx2_inference.ros.image import array_to_image_msg
    image = astronaut((320, 240)) if frame is None else frame
    template = array_to_image_msg(image, 'rgb8')
    start_count = len(driver.detections())
    memory = []  # type: List[Tuple[int, float]]
    load = []  # type: List[Tuple[int, float]]
    period = 1.0 / fps
    started = time.monotonic()
    next_sample = started
    for index in range(frames):
        due = started + index * period
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        driver.stamp(template)
        driver.publish(template)
        if time.monotonic() >= next_sample:
            memory.append((index, node.resources()['rss_mb']))
            load.append((index, os.getloadavg()[0]))
            next_sample += 1.0
    elapsed = time.monotonic() - started
    status = driver.settled_status(frames)
    memory.append((frames, node.resources()['rss_mb']))
    arrivals = driver.client.timed_messages('/{}/detections'.format(driver.camera))[start_count:]
    latencies = [(arrived - (m.header.stamp.sec + m.header.stamp.nanosec * 1e-9)) * 1e3
                 for arrived, m in arrivals]
    scale = (image.shape[1] / 512.0, image.shape[0] / 512.0)
    with_person = sum(1 for _, m in arrivals if person_found(m, scale=scale))
    drops = dropped(status)
    drops['superseded'] = superseded(status)
    unaccounted = frames - int(status['frames_out']) - sum(drops.values())
    return {'frames_sent': frames, 'input_fps': frames / elapsed, 'unaccounted': unaccounted,
            'answered': len(arrivals), 'answered_with_person': with_person,
            'output_fps': len(arrivals) / elapsed,
            'node_frames_in': int(status['frames_in']),
            'node_frames_out': int(status['frames_out']), 'node_dropped': drops,
            'node_latency_p50_ms': float(status['latency_p50_ms']),
            'node_latency_p99_ms': float(status['latency_p99_ms']),
            'latency_ms': latencies, 'memory_mb': memory, 'loadavg_1min': load,
            'frame_size': '{}x{}'.format(image.shape[1], image.shape[0])}


def signal_exit(model: str, folder: str, sig: int, fps: float = 60.0) -> Dict[str, Any]:
    """Send ``sig`` to an active node while frames are processed; return status and time."""
    from tx2_inference.ros.image import array_to_image_msg
    name = 'signal_node_' + signal.Signals(sig).name.lower()
    node, driver = start_node(name, model, folder)
    try:
        activate(driver)
        msg = array_to_image_msg(astronaut(), 'rgb8')
        before = len(driver.detections())
        for _ in range(int(fps)):  # one second of frames: the node is busy when signalled
            driver.stamp(msg)
            driver.publish(msg)
            time.sleep(1.0 / fps)
        processing = len(driver.detections()) > before
        code, seconds = node.stop(sig)
    finally:
        driver.close()
        if node.alive():
            node.stop(signal.SIGKILL)
    return {'signal': signal.Signals(sig).name, 'exit_code': code, 'seconds': seconds,
            'answered_before': processing, 'log': node.log()}


# --------------------------------------------------------------------------- report

def rss_growth(samples: Sequence[Dict[str, float]]) -> float:
    """
    Return the RSS growth over churn cycles: peak of the last half minus peak of the first.

    Peaks, not single samples: the allocator keeps or returns a freed model's memory from one
    cycle to the next (the node measures 160 or 188 MB unconfigured), while a leak raises the
    peak cycle after cycle.
    """
    half = max(1, len(samples) // 2)
    return (max(s['rss_mb'] for s in samples[-half:]) -
            max(s['rss_mb'] for s in samples[:half]))
