"""
Robustness runs against a real ``inference_node`` process: faults, churn, flood and signals.

``python -m tx2_inference.tools.soak --output output/soak`` (``make soak``) runs the long
versions and writes ``soak-results.json`` and ``soak.png`` (node memory and latency over
frames); the test suite (``test/ros/test_robustness.py``, ``test/ros/test_fuzz_frames.py``) runs
short versions of the same functions. Each phase starts the node as its own process, drives
it through its lifecycle and parameter services (`NodeClient`) and feeds it over real topics:

- ``fuzz``: broken ``sensor_msgs/Image`` and ``CompressedImage`` messages (unknown and
  mismatched encodings, zero or huge sizes, short steps, short and long data, corrupt
  jpeg/png) with valid photos in between; every rejected frame must be counted by reason on
  /diagnostics, and every valid one must come back with its person.
- ``churn``: configure / activate / deactivate / cleanup cycles with frames flowing; threads,
  file descriptors and RSS of the node process per cycle.
- ``flood``: frames at a rate above the model's throughput; end-to-end latency, node RSS, and
  every frame accounted for (published, superseded or dropped, by reason).
- ``signals``: SIGINT and SIGTERM while frames are processed; exit status and time to exit.

The image subscriptions are made reliable with a deep queue through the node's QoS override
parameters, so that no frame is lost between the processes and the counts are exact (with the
default best-effort sensor-data QoS, large frames are lost on the way on a small machine before
the node sees them).

The package: ``faults`` (the broken messages), ``graph`` (the node process and its driver),
``phases`` (fuzz, churn, flood, signals), ``report`` (summary and plot), ``cli`` (the command
line, ``python -m tx2_inference.tools.soak``). The names below are the soak's API, as the
tests use it.
"""

from tx2_inference.tools.soak.cli import main
from tx2_inference.tools.soak.faults import (
    astronaut,
    BYTES_PER_PIXEL,
    compressed_fault,
    COMPRESSED_FAULTS,
    random_compressed_fault,
    random_raw_fault,
    raw_fault,
    RAW_FAULTS,
)
from tx2_inference.tools.soak.graph import (
    accounted,
    activate,
    ASTRONAUT_PERSON,
    Driver,
    dropped,
    NODE_MODULE,
    NodeProcess,
    person_found,
    QUEUE_DEPTH,
    start_node,
    superseded,
)
from tx2_inference.tools.soak.phases import churn, flood, fuzz, rss_growth, signal_exit
from tx2_inference.tools.soak.report import plot, summary

__all__ = [
    'ASTRONAUT_PERSON',
    'BYTES_PER_PIXEL',
    'COMPRESSED_FAULTS',
    'Driver',
    'NODE_MODULE',
    'NodeProcess',
    'QUEUE_DEPTH',
    'RAW_FAULTS',
    'accounted',
    'activate',
    'astronaut',
    'churn',
    'compressed_fault',
    'dropped',
    'flood',
    'fuzz',
    'main',
    'person_found',
    'plot',
    'random_compressed_fault',
    'random_raw_fault',
    'raw_fault',
    'rss_growth',
    'signal_exit',
    'start_node',
    'summary',
    'superseded',
]
