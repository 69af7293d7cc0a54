"""A camera's /diagnostics status when several of its warnings come at once.

The camera status says frames were refused (issue 22: above ``max_frame_pixels``); the silence
watch says samples are lost (issue 23). Both happen together when a camera sends huge frames:
the DDS loses some, the node refuses the rest. Real counters, a real watch fed the rclpy
message-lost event's fields; no ROS graph is needed for the composition.
"""

import types

from diagnostic_msgs.msg import DiagnosticStatus

from tx2_inference.ros import silence
from tx2_inference.ros.diagnostics import camera_status, CameraCounters


def test_lost_samples_do_not_hide_the_frames_refused_for_their_size():
    counters = CameraCounters()
    watch = silence.SilenceWatch('cam0/image_raw', silence_timeout_s=5.0,
                                 rmw='rmw_fastrtps_cpp')
    for index in range(4):  # 4 frames arrive, each above max_frame_pixels; 40 are lost
        counters.frame_in()
        counters.drop('bad_frame_too_large')
        watch.on_frame(index * 10**8, index * 10**8)
        watch.on_message_lost(types.SimpleNamespace(total_count=10 * (index + 1),
                                                    total_count_change=10))
    status = camera_status('/node', 'cam0/image_raw', 'cam0/detections', counters, True)
    assert status.level == DiagnosticStatus.WARN
    assert 'bad_frame_too_large 4' in status.message, status.message
    level, kind, message, values = watch.assess(publishers=1)
    assert level == DiagnosticStatus.WARN and kind, (kind, message)
    status = silence.apply(status, level, message, values)
    assert status.message.startswith(message), status.message  # the DDS cause first
    assert 'frames refused since the last status: bad_frame_too_large 4' in status.message, \
        status.message
