"""
Why a camera's subscription hears nothing: per camera, in the log (throttled) and /diagnostics.

A node that receives no frames, or only a few, looks dead or slow and says nothing, though the
cause is usually one of these, each with its own fix. `SilenceWatch` counts what the
subscription sees and names it, blaming the DDS only on evidence:

(a) a publisher on the image topic offers a QoS the subscription cannot match (rclpy's
    incompatible-QoS event), e.g. a best-effort camera and a subscription made reliable;
(l) samples are lost: the RMW's message-lost event counted at least ``LOST_MIN`` of them in the
    last ``silence_timeout_s``, a tenth or more of the frames, whether a trickle still arrives
    or none: large frames over a DDS set-up that drops them (Fast DDS's default 512 KB
    shared-memory segment), fixed by the large-frame DDS profile in every process of the
    graph, or a reliable QoS;
(b) publishers are there, yet no frame arrived for ``silence_timeout_s`` and nothing was lost:
    where the RMW counts lost samples (rmw_fastrtps), the camera is quiet (paused, waiting for
    a subscriber, a stalled driver), not the DDS; where it cannot (Cyclone DDS counts only
    samples its reader cache rejects, not frames lost in the network; an RMW without the
    event), the node says it cannot tell a quiet camera from lost frames, and how to check;
(c) frames arrive, but their stamps are older than ``max_frame_age_s`` (clock skew between
    machines, or a stalled driver sending old frames).

The message-lost event is in Humble's rclpy (``SubscriptionEventCallbacks(message_lost=)``,
ros2/rclpy humble, rclpy/rclpy/qos_event.py) and implemented by Humble's rmw_fastrtps
(``RMW_EVENT_MESSAGE_LOST`` from Fast DDS's SampleLostStatus, rmw_fastrtps_shared_cpp/src/
custom_subscriber_info.cpp) and rmw_cyclonedds (from DDS_SAMPLE_LOST_STATUS,
rmw_cyclonedds_cpp/src/rmw_node.cpp); Cyclone DDS 0.10 raises that status only when its reader
history rejects a sample (src/core/ddsc/src/dds_rhc_default.c), and Cyclone DDS 11 here counted
none of the frames a stalled receiver lost (test/ros/test_cyclonedds_config.py), while Fast
DDS 3.2 here counted each lost frame (test/ros/test_silence.py). An RMW without it makes rclpy
raise ``UnsupportedEventTypeError``: the node then subscribes without it (`subscribe`).

The node creates one watch per camera, feeds it from the subscription's callbacks and asks it,
about once a second, for what to add to the camera's diagnostics status.
"""

import collections
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

try:  # rclpy of Iron and newer
    from rclpy.event_handler import SubscriptionEventCallbacks, UnsupportedEventTypeError
except ImportError:  # Humble's names of the same classes
    from rclpy.qos_event import SubscriptionEventCallbacks, UnsupportedEventTypeError

DEFAULT_SILENCE_TIMEOUT_S = 5.0
DEFAULT_MAX_FRAME_AGE_S = 2.0
LOG_EVERY_S = 30.0
# Lost samples in the last silence_timeout_s that name the DDS: at least this many, and at
# least LOST_SHARE of the frames (lost and received) in that window.
LOST_MIN = 3
LOST_SHARE = 0.1
RECENT_FRAMES = 4096  # arrival times kept for the window's counts
# RMWs whose message-lost count includes samples lost in the network (prefixes of
# rclpy.get_rmw_implementation_identifier()); Cyclone DDS counts only rejected samples.
COUNTS_NETWORK_LOSS = ('rmw_fastrtps',)
FIX_DDS = ('set the large-frame DDS configuration for every process of the graph, the camera '
           'driver included (the launch file does it for the node: large_frames_dds; in a '
           'shell: eval "$(python3 -m tx2_inference.ros.dds)", which sets '
           'FASTRTPS_DEFAULT_PROFILES_FILE on Fast DDS 2 or FASTDDS_DEFAULT_PROFILES_FILE on '
           'Fast DDS 3 to <share>/tx2_inference/config/fastdds_large_frames.xml and '
           'CYCLONEDDS_URI=file://<share>/tx2_inference/config/cyclonedds_large_frames.xml), or '
           'publish and subscribe reliably (qos_overrides.<topic>.subscription.reliability: '
           'reliable)')


class SilenceWatch(object):
    """
    What one camera's subscription sees, and what is wrong when it sees nothing or little.

    Fed from the node's callbacks (any thread); `assess` and `log_due` from its timer.

    :param topic: the subscribed topic, named in the messages.
    :param silence_timeout_s: seconds without a frame, publishers present, before (b); also
        the window over which lost samples are counted for (l).
    :param max_frame_age_s: a frame whose stamp is older than this on arrival counts for (c).
    :param rmw: the RMW's identifier (``rclpy.get_rmw_implementation_identifier()``): whether
        its lost-sample count covers the network ('' : unknown, not trusted).
    """

    def __init__(self, topic: str, silence_timeout_s: float = DEFAULT_SILENCE_TIMEOUT_S,
                 max_frame_age_s: float = DEFAULT_MAX_FRAME_AGE_S, rmw: str = '') -> None:
        """Start with nothing seen: the silence is counted from here (the subscription's birth)."""
        self.topic = topic
        self.silence_timeout_s = silence_timeout_s
        self.max_frame_age_s = max_frame_age_s
        self.rmw = rmw
        # Whether the subscription has the message-lost event (False: the RMW refused it).
        self.loss_event = True
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._frames = 0
        self._last_frame: Optional[float] = None
        self._recent_frames = collections.deque(maxlen=RECENT_FRAMES)  # type: collections.deque
        self._lost = 0
        self._recent_lost = collections.deque()  # type: collections.deque
        self._incompatible = 0
        self._incompatible_policy = ''
        self._old_frames = 0
        self._old_since_assessed = 0
        self._last_age_s = 0.0
        self._last_logged: Dict[str, float] = {}

    @property
    def counts_network_loss(self) -> bool:
        """Return whether a lost frame would show in the lost-sample count (rmw_fastrtps)."""
        return self.loss_event and self.rmw.startswith(COUNTS_NETWORK_LOSS)

    def event_callbacks(self, message_lost: bool = True) -> Any:
        """Return the subscription's event callbacks: incompatible QoS and lost samples."""
        if not message_lost:
            return SubscriptionEventCallbacks(incompatible_qos=self.on_incompatible_qos)
        return SubscriptionEventCallbacks(incompatible_qos=self.on_incompatible_qos,
                                          message_lost=self.on_message_lost)

    def subscribe(self, create: Callable[[Any], Any]) -> Any:
        """Return ``create(event_callbacks)``; without the message-lost event if unsupported.

        Humble's rclpy raises ``UnsupportedEventTypeError`` while creating a subscription
        whose RMW lacks an event it was given; the node must still subscribe.
        """
        try:
            return create(self.event_callbacks())
        except UnsupportedEventTypeError:
            self.loss_event = False
            return create(self.event_callbacks(message_lost=False))

    def on_incompatible_qos(self, event: Any) -> None:
        """Count an incompatible publisher (rclpy's QoSRequestedIncompatibleQoSInfo)."""
        policy = getattr(event, 'last_policy_kind', '')
        with self._lock:
            self._incompatible = int(getattr(event, 'total_count', self._incompatible + 1))
            self._incompatible_policy = getattr(policy, 'name', str(policy))

    def on_message_lost(self, event: Any) -> None:
        """Count lost samples (rclpy's QoSMessageLostInfo: total_count, total_count_change)."""
        now = time.monotonic()
        with self._lock:
            change = int(getattr(event, 'total_count_change', 1))
            self._lost = max(int(getattr(event, 'total_count', self._lost + change)),
                             self._lost + change)
            if change > 0:
                self._recent_lost.append((now, change))

    def on_frame(self, stamp_ns: int, now_ns: int) -> None:
        """Count a frame that arrived; ``stamp_ns`` 0 (unstamped) is never old."""
        age_s = (now_ns - stamp_ns) / 1e9 if stamp_ns > 0 else 0.0
        with self._lock:
            self._frames += 1
            self._last_frame = time.monotonic()
            self._recent_frames.append(self._last_frame)
            self._last_age_s = age_s
            if age_s > self.max_frame_age_s:
                self._old_frames += 1
                self._old_since_assessed += 1

    def _window(self, now: float) -> Tuple[int, int]:
        """Return (lost, received) in the last silence_timeout_s; the caller holds the lock."""
        since = now - self.silence_timeout_s
        while self._recent_lost and self._recent_lost[0][0] < since:
            self._recent_lost.popleft()
        while self._recent_frames and self._recent_frames[0] < since:
            self._recent_frames.popleft()
        return sum(n for _, n in self._recent_lost), len(self._recent_frames)

    def assess(self, publishers: int) -> Tuple[Any, str, str, List[Tuple[str, str]]]:
        """
        Return (level, kind, message, values) for the camera's status; level OK: all is well.

        kind: '' (OK), 'incompatible_qos' (a), 'lost_samples' (l), 'quiet_camera' or
        'no_frames' (b: the RMW counts network loss, or cannot) or 'old_frames' (c).

        :param publishers: the publishers on the topic now (``Node.count_publishers``).
        """
        now = time.monotonic()
        with self._lock:
            frames, last_frame = self._frames, self._last_frame
            incompatible, policy = self._incompatible, self._incompatible_policy
            old_recent, self._old_since_assessed = self._old_since_assessed, 0
            old_frames, age_s = self._old_frames, self._last_age_s
            quiet_s = now - (last_frame if last_frame is not None else self._started)
            lost, (lost_recent, received_recent) = self._lost, self._window(now)
        window = self.silence_timeout_s
        values = [('publishers', str(publishers)), ('frames_received', str(frames)),
                  ('seconds_since_last_frame', '{:.1f}'.format(quiet_s)),
                  ('incompatible_qos_publishers', str(incompatible)),
                  ('old_frames', str(old_frames)), ('lost_samples', str(lost)),
                  ('lost_samples_recent', str(lost_recent)),
                  ('frames_received_recent', str(received_recent)),
                  ('lost_samples_counted', self._counting())]
        silent = quiet_s >= self.silence_timeout_s
        if incompatible and (silent or not frames):
            return DiagnosticStatus.WARN, 'incompatible_qos', (
                'a publisher on {} offers a QoS this subscription cannot match ({} '
                'incompatible, last policy: {}): no frame will arrive from it. Make the camera '
                'and the subscription agree (the image subscription is best effort unless '
                'qos_overrides.{}.subscription.reliability says reliable; a reliable '
                'subscription needs a reliable publisher)'.format(
                    self.topic, incompatible, policy or 'unknown', self.topic)), values
        if lost_recent >= LOST_MIN and lost_recent >= LOST_SHARE * (lost_recent + received_recent):
            return DiagnosticStatus.WARN, 'lost_samples', (
                '{} of {} frames on {} were lost in the last {:.0f} s ({} received; the '
                "middleware's lost-sample count, {} since activation): the DDS set-up drops "
                "large frames (Fast DDS's default 512 KB shared-memory segment, Cyclone DDS's "
                'default socket buffer). Fix: {}'.format(
                    lost_recent, lost_recent + received_recent, self.topic, window,
                    received_recent, lost, FIX_DDS)), values
        if publishers > 0 and silent and self.counts_network_loss:
            return DiagnosticStatus.WARN, 'quiet_camera', (
                'the camera is quiet: {} publisher(s) on {}, but no frame for {:.0f} s and no '
                'lost sample ({} received since activation): it is not publishing (paused, '
                'waiting for subscribers, or its driver stalled); the DDS is not dropping its '
                'frames ({} counts lost samples)'.format(
                    publishers, self.topic, quiet_s, frames, self.rmw)), values
        if publishers > 0 and silent:
            return DiagnosticStatus.WARN, 'no_frames', (
                '{} publisher(s) on {} but no frame for {:.0f} s ({} received since '
                'activation), and {} cannot tell a quiet camera from frames the DDS drops ({}). '
                "Check on the camera's machine that it publishes (ros2 topic hz {}): if it "
                'is quiet, start it; if it publishes, large frames are most likely dropped by '
                'the DDS set-up. Fix: {}'.format(
                    publishers, self.topic, quiet_s, frames, self.rmw or 'this middleware',
                    self._counting(), self.topic, FIX_DDS)), values
        if old_recent:
            return DiagnosticStatus.WARN, 'old_frames', (
                'frames on {} arrive with stamps {:.1f} s old (more than max_frame_age_s = '
                "{:.1f}; {} so far): the camera clock is skewed against this machine's, or "
                'the driver is stalled and sends old frames'.format(
                    self.topic, age_s, self.max_frame_age_s, old_frames)), values
        return DiagnosticStatus.OK, '', '', values

    def _counting(self) -> str:
        """Say whether and how lost samples are counted on this RMW."""
        if not self.loss_event:
            return 'no: the middleware has no message-lost event'
        if self.counts_network_loss:
            return 'yes'
        return ('only samples the reader rejects, not frames lost in the network'
                if self.rmw.startswith('rmw_cyclonedds') else
                'not known to count frames lost in the network')

    def log_due(self, kind: str) -> bool:
        """Return whether a warning of this kind was not logged in the last LOG_EVERY_S s."""
        now = time.monotonic()
        if now - self._last_logged.get(kind, -LOG_EVERY_S) < LOG_EVERY_S:
            return False
        self._last_logged[kind] = now
        return True


def apply(status: DiagnosticStatus, level: Any, message: str,
          values: List[Tuple[str, str]]) -> DiagnosticStatus:
    """Add a watch's values to a camera's status; a warning replaces its level and message.

    Only the status's first clause ('ok', 'no images', ...) is replaced: what
    ``ros.diagnostics.camera_status`` adds after it (frames refused for their size or a
    conversion error) stays, as both may happen at once (a huge frame is the one DDS loses).
    """
    status.values = list(status.values) + [KeyValue(key=k, value=v) for k, v in values]
    if level != DiagnosticStatus.OK and level >= status.level:
        status.level = level
        _, sep, more = status.message.partition('; ')
        status.message = message + sep + more
    return status
