"""
Why a camera's subscription hears nothing: per camera, in the log (throttled) and /diagnostics.

A node that receives no frames looks dead and says nothing, though the cause is usually one of
three, each with its own fix. `SilenceWatch` counts what the subscription sees and names it:

(a) a publisher on the image topic offers a QoS the subscription cannot match (rclpy's
    incompatible-QoS event), e.g. a best-effort camera and a subscription made reliable;
(b) publishers are there, yet no frame arrived for ``silence_timeout_s``: most often large
    frames over a DDS set-up that drops them (Fast DDS's default 512 KB shared-memory segment,
    Cyclone DDS's default socket buffer), fixed by the large-frame DDS profile in every process
    of the graph, or a reliable QoS;
(c) frames arrive, but their stamps are older than ``max_frame_age_s`` (clock skew between
    machines, or a stalled driver sending old frames).

The node creates one watch per camera, feeds it from the subscription's callbacks and asks it,
about once a second, for what to add to the camera's diagnostics status.
"""

import threading
import time
from typing import Any, Dict, List, Optional, Tuple

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

try:  # rclpy of Iron and newer
    from rclpy.event_handler import SubscriptionEventCallbacks
except ImportError:  # Humble's name of the same class
    from rclpy.qos_event import SubscriptionEventCallbacks

DEFAULT_SILENCE_TIMEOUT_S = 5.0
DEFAULT_MAX_FRAME_AGE_S = 2.0
LOG_EVERY_S = 30.0
FIX_DDS = ('set the large-frame DDS configuration for every process of the graph, the camera '
           'driver included (the launch file does it for the node: large_frames_dds; by hand: '
           'FASTRTPS_DEFAULT_PROFILES_FILE, or FASTDDS_DEFAULT_PROFILES_FILE on Fast DDS 3, = '
           '<share>/tx2_inference/config/fastdds_large_frames.xml; CYCLONEDDS_URI=file://'
           '<share>/tx2_inference/config/cyclonedds_large_frames.xml on Cyclone DDS), or '
           'publish and subscribe reliably (qos_overrides.<topic>.subscription.reliability: '
           'reliable)')


class SilenceWatch(object):
    """
    What one camera's subscription sees, and what is wrong when it sees nothing.

    Fed from the node's callbacks (any thread); `assess` and `log_due` from its timer.

    :param topic: the subscribed topic, named in the messages.
    :param silence_timeout_s: seconds without a frame, publishers present, before (b).
    :param max_frame_age_s: a frame whose stamp is older than this on arrival counts for (c).
    """

    def __init__(self, topic: str, silence_timeout_s: float = DEFAULT_SILENCE_TIMEOUT_S,
                 max_frame_age_s: float = DEFAULT_MAX_FRAME_AGE_S) -> None:
        """Start with nothing seen: the silence is counted from here (the subscription's birth)."""
        self.topic = topic
        self.silence_timeout_s = silence_timeout_s
        self.max_frame_age_s = max_frame_age_s
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._frames = 0
        self._last_frame: Optional[float] = None
        self._incompatible = 0
        self._incompatible_policy = ''
        self._old_frames = 0
        self._old_since_assessed = 0
        self._last_age_s = 0.0
        self._last_logged: Dict[str, float] = {}

    def event_callbacks(self) -> Any:
        """Return the subscription's event callbacks: the incompatible-QoS event comes here."""
        return SubscriptionEventCallbacks(incompatible_qos=self.on_incompatible_qos)

    def on_incompatible_qos(self, event: Any) -> None:
        """Count an incompatible publisher (rclpy's QoSRequestedIncompatibleQoSInfo)."""
        policy = getattr(event, 'last_policy_kind', '')
        with self._lock:
            self._incompatible = int(getattr(event, 'total_count', self._incompatible + 1))
            self._incompatible_policy = getattr(policy, 'name', str(policy))

    def on_frame(self, stamp_ns: int, now_ns: int) -> None:
        """Count a frame that arrived; ``stamp_ns`` 0 (unstamped) is never old."""
        age_s = (now_ns - stamp_ns) / 1e9 if stamp_ns > 0 else 0.0
        with self._lock:
            self._frames += 1
            self._last_frame = time.monotonic()
            self._last_age_s = age_s
            if age_s > self.max_frame_age_s:
                self._old_frames += 1
                self._old_since_assessed += 1

    def assess(self, publishers: int) -> Tuple[Any, str, str, List[Tuple[str, str]]]:
        """
        Return (level, kind, message, values) for the camera's status; level OK: all is well.

        kind: '' (OK), 'incompatible_qos' (a), 'no_frames' (b) or 'old_frames' (c).

        :param publishers: the publishers on the topic now (``Node.count_publishers``).
        """
        now = time.monotonic()
        with self._lock:
            frames, last_frame = self._frames, self._last_frame
            incompatible, policy = self._incompatible, self._incompatible_policy
            old_recent, self._old_since_assessed = self._old_since_assessed, 0
            old_frames, age_s = self._old_frames, self._last_age_s
            quiet_s = now - (last_frame if last_frame is not None else self._started)
        values = [('publishers', str(publishers)), ('frames_received', str(frames)),
                  ('seconds_since_last_frame', '{:.1f}'.format(quiet_s)),
                  ('incompatible_qos_publishers', str(incompatible)),
                  ('old_frames', str(old_frames))]
        silent = quiet_s >= self.silence_timeout_s
        if incompatible and (silent or not frames):
            return DiagnosticStatus.WARN, 'incompatible_qos', (
                'a publisher on {} offers a QoS this subscription cannot match ({} '
                'incompatible, last policy: {}): no frame will arrive from it. Make the camera '
                'and the subscription agree (the image subscription is best effort unless '
                'qos_overrides.{}.subscription.reliability says reliable; a reliable '
                'subscription needs a reliable publisher)'.format(
                    self.topic, incompatible, policy or 'unknown', self.topic)), values
        if publishers > 0 and silent:
            return DiagnosticStatus.WARN, 'no_frames', (
                '{} publisher(s) on {} but no frame for {:.0f} s ({} received since '
                'activation): large frames are most likely dropped by the DDS set-up (Fast '
                "DDS's default 512 KB shared-memory segment, Cyclone DDS's default socket "
                'buffer). Fix: {}'.format(publishers, self.topic, quiet_s, frames, FIX_DDS)), \
                values
        if old_recent:
            return DiagnosticStatus.WARN, 'old_frames', (
                'frames on {} arrive with stamps {:.1f} s old (more than max_frame_age_s = '
                "{:.1f}; {} so far): the camera clock is skewed against this machine's, or "
                'the driver is stalled and sends old frames'.format(
                    self.topic, age_s, self.max_frame_age_s, old_frames)), values
        return DiagnosticStatus.OK, '', '', values

    def log_due(self, kind: str) -> bool:
        """Return whether a warning of this kind was not logged in the last LOG_EVERY_S s."""
        now = time.monotonic()
        if now - self._last_logged.get(kind, -LOG_EVERY_S) < LOG_EVERY_S:
            return False
        self._last_logged[kind] = now
        return True


def apply(status: DiagnosticStatus, level: Any, message: str,
          values: List[Tuple[str, str]]) -> DiagnosticStatus:
    """Add a watch's values to a camera's status; a warning replaces its level and message."""
    status.values = list(status.values) + [KeyValue(key=k, value=v) for k, v in values]
    if level != DiagnosticStatus.OK and level >= status.level:
        status.level = level
        status.message = message
    return status
