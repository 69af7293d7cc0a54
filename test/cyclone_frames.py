"""A child process for test_cyclonedds_config: frame-sized samples over Cyclone DDS.

Plain Cyclone DDS through its Python binding (the ``cyclonedds`` package bundles the C library;
there is no rmw_cyclonedds wheel here), configured only by ``CYCLONEDDS_URI``, as a ROS 2 node
on rmw_cyclonedds_cpp would be. Roles, driven line by line on stdin/stdout by the test:

- ``sub DOMAIN``: a best-effort reader; prints ``ready``; on the line ``report`` prints
  ``received <n> lost <m>`` (distinct frames taken; the reader's SAMPLE_LOST status total,
  what rmw_cyclonedds turns into ROS's message-lost event) and exits.
- ``pub DOMAIN COUNT``: a best-effort writer; prints ``matched`` once the reader is there; on the
  line ``go`` writes COUNT samples of 640 x 480 x 3 bytes (a 640x480 rgb8 Image's data) at
  30 FPS, then prints ``sent``.
- ``probe DOMAIN``: creates a participant; prints ``ok``, or exits 1 (Cyclone says why on
  stderr).
"""

from dataclasses import dataclass
import sys
import threading
import time

from cyclonedds.domain import DomainParticipant
from cyclonedds.idl import IdlStruct, types
from cyclonedds.pub import DataWriter
from cyclonedds.qos import Policy, Qos
from cyclonedds.sub import DataReader
from cyclonedds.topic import Topic

FRAME_BYTES = 640 * 480 * 3


@dataclass
class Frame(IdlStruct, typename='tx2_test.Frame'):
    """A frame number and the image bytes."""

    index: types.uint32
    data: types.sequence[types.uint8]


def _qos() -> Qos:
    return Qos(Policy.Reliability.BestEffort, Policy.History.KeepLast(32))


def subscribe(participant: DomainParticipant) -> None:
    reader = DataReader(participant, Topic(participant, 'frames', Frame), qos=_qos())
    report = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.readline(), report.set()), daemon=True).start()
    print('ready', flush=True)
    received = set()
    while not report.is_set():
        received.update(sample.index for sample in reader.take(N=32))
        time.sleep(0.005)
    received.update(sample.index for sample in reader.take(N=32))
    print('received', len(received), 'lost', reader.get_sample_lost_status().total_count,
          flush=True)


def publish(participant: DomainParticipant, count: int) -> None:
    writer = DataWriter(participant, Topic(participant, 'frames', Frame), qos=_qos())
    deadline = time.monotonic() + 20.0
    while writer.get_publication_matched_status().current_count < 1:
        if time.monotonic() > deadline:
            sys.exit('no reader matched within 20 s')
        time.sleep(0.02)
    print('matched', flush=True)
    sys.stdin.readline()
    payload = bytes(FRAME_BYTES)
    for index in range(count):
        writer.write(Frame(index=index, data=payload))
        time.sleep(1.0 / 30)
    print('sent', flush=True)
    sys.stdin.readline()  # stay until the test is done: a writer's exit is no reason to lose


def main() -> None:
    role, domain = sys.argv[1], int(sys.argv[2])
    participant = DomainParticipant(domain)
    if role == 'sub':
        subscribe(participant)
    elif role == 'pub':
        publish(participant, int(sys.argv[3]))
    else:
        print('ok', flush=True)


if __name__ == '__main__':
    main()
