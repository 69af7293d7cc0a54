"""The tool and test client: drive a node from another process, as `ros2 lifecycle set` does.

The demo, the soak, the benchmark and the tests use it; on a machine without the `ros2`
command it is also a small scripting API: spin in a background thread, call the node's
lifecycle and parameter services, and collect the messages of any topic. Also here: the QoS
override params file the tools give the node, and a detection's box in pixels.

From a shell (``python -m tx2_inference.tools.client --help``)::

    python -m tx2_inference.tools.client configure activate      # as ros2 lifecycle set
    python -m tx2_inference.tools.client state
    python -m tx2_inference.tools.client get score_threshold     # as ros2 param get
    python -m tx2_inference.tools.client set score_threshold=0.6 # as ros2 param set
"""

import argparse
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import GetParameters, SetParameters
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile

TRANSITIONS = {
    'configure': Transition.TRANSITION_CONFIGURE,
    'activate': Transition.TRANSITION_ACTIVATE,
    'deactivate': Transition.TRANSITION_DEACTIVATE,
    'cleanup': Transition.TRANSITION_CLEANUP,
    'shutdown': Transition.TRANSITION_UNCONFIGURED_SHUTDOWN,
}


def parameter_value(value: Any) -> ParameterValue:
    """Return the ParameterValue message for a Python value (bool, int, float, str, lists)."""
    if isinstance(value, bool):
        return ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=value)
    if isinstance(value, int):
        return ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=value)
    if isinstance(value, float):
        return ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value)
    if isinstance(value, str):
        return ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value)
    if isinstance(value, (list, tuple)):
        items = list(value)
        if all(isinstance(v, str) for v in items):
            return ParameterValue(type=ParameterType.PARAMETER_STRING_ARRAY,
                                  string_array_value=items)
        if all(isinstance(v, bool) for v in items):
            return ParameterValue(type=ParameterType.PARAMETER_BOOL_ARRAY,
                                  bool_array_value=items)
        if all(isinstance(v, int) for v in items):
            return ParameterValue(type=ParameterType.PARAMETER_INTEGER_ARRAY,
                                  integer_array_value=items)
        return ParameterValue(type=ParameterType.PARAMETER_DOUBLE_ARRAY,
                              double_array_value=[float(v) for v in items])
    raise TypeError('no ROS parameter type for %r' % (value,))


class NodeClient(object):
    """A client node spinning in a background thread, talking to one target node."""

    def __init__(self, target: str, name: str = 'tx2_node_client',
                 context: Optional[Any] = None) -> None:
        """Create the client for node `target` (its full name, e.g. '/inference_node')."""
        self.target = target if target.startswith('/') else '/' + target
        self._context = context
        self._owns_context = not rclpy.ok(context=context)
        if self._owns_context:
            rclpy.init(context=context)
        self.node = rclpy.create_node(name, context=context)
        self._lock = threading.Lock()
        self._messages: Dict[str, List[Any]] = {}
        self._change = self.node.create_client(ChangeState, self.target + '/change_state')
        self._get = self.node.create_client(GetState, self.target + '/get_state')
        self._params = self.node.create_client(SetParameters, self.target + '/set_parameters')
        self._get_params = self.node.create_client(GetParameters,
                                                   self.target + '/get_parameters')
        self._executor = SingleThreadedExecutor(context=context)
        self._executor.add_node(self.node)
        self._spinning = True
        self._thread = threading.Thread(target=self._spin, name='node_client', daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while self._spinning:
            try:
                self._executor.spin_once(timeout_sec=0.05)
            except Exception:  # noqa: B902 - shutting down while spinning
                if self._spinning and rclpy.ok():
                    raise
                return

    def wait_for_node(self, timeout: float = 30.0) -> None:
        """Wait until the target's lifecycle and parameter services answer."""
        for client in (self._change, self._get, self._params):
            if not client.wait_for_service(timeout_sec=timeout):
                raise TimeoutError('%s did not come up within %.0f s (no %s service)'
                                   % (self.target, timeout, client.srv_name))

    def call(self, client: Any, request: Any, timeout: float = 60.0) -> Any:
        """Call a service and return its response, or raise TimeoutError."""
        future = client.call_async(request)
        done = threading.Event()
        future.add_done_callback(lambda _: done.set())
        if not done.wait(timeout):
            raise TimeoutError('%s did not answer within %.0f s' % (client.srv_name, timeout))
        return future.result()

    def transition(self, name: str, timeout: float = 120.0) -> bool:
        """Trigger a lifecycle transition ('configure', 'activate', ...); True on SUCCESS."""
        request = ChangeState.Request()
        request.transition.id = TRANSITIONS[name]
        return bool(self.call(self._change, request, timeout).success)

    def state(self) -> str:
        """Return the target's lifecycle state label ('unconfigured', 'active', ...)."""
        return self.call(self._get, GetState.Request()).current_state.label

    def set_parameters(self, **values: Any) -> List[Any]:
        """Set parameters; return the SetParametersResult of each (successful, reason)."""
        request = SetParameters.Request()
        request.parameters = [Parameter(name=k, value=parameter_value(v))
                              for k, v in values.items()]
        return list(self.call(self._params, request).results)

    def get_parameters(self, *names: str) -> List[Any]:
        """Return the parameters' current values (``ros2 param get``), as Python values.

        A declared parameter without a value is None (rclpy answers nothing at all for a
        request that names one, so each name is then asked for on its own).
        """
        from rclpy.parameter import parameter_value_to_python
        response = self.call(self._get_params, GetParameters.Request(names=list(names)))
        if len(response.values) == len(names):
            return [parameter_value_to_python(value) for value in response.values]
        values = []
        for name in names:
            answer = self.call(self._get_params, GetParameters.Request(names=[name])).values
            values.append(parameter_value_to_python(answer[0]) if answer else None)
        return values

    def collect(self, msg_type: Any, topic: str, qos: Any = None) -> None:
        """Keep every message arriving on `topic` (read them with messages(topic))."""
        with self._lock:
            self._messages.setdefault(topic, [])

        def keep(msg: Any) -> None:
            with self._lock:
                self._messages[topic].append((time.time(), msg))
        self.node.create_subscription(msg_type, topic, keep, qos or QoSProfile(depth=100))

    def messages(self, topic: str) -> List[Any]:
        """Return the messages collected on `topic` so far."""
        with self._lock:
            return [m for _, m in self._messages.get(topic, [])]

    def timed_messages(self, topic: str) -> List[Any]:
        """Return (wall-clock receive time, message) pairs collected on `topic`."""
        with self._lock:
            return list(self._messages.get(topic, []))

    @staticmethod
    def wait_until(predicate: Callable[[], Any], timeout: float = 30.0,
                   period: float = 0.05) -> Any:
        """Poll `predicate` until it returns something truthy; return it, or None on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = predicate()
            if result:
                return result
            time.sleep(period)
        return None

    def close(self) -> None:
        """Stop spinning and destroy the client node (and the context if it made it)."""
        self._spinning = False
        self._thread.join(timeout=2.0)
        self._executor.shutdown()
        self.node.destroy_node()
        if self._owns_context:
            rclpy.try_shutdown(context=self._context)

    def __enter__(self) -> 'NodeClient':
        """Use as a context manager: closes on exit."""
        return self

    def __exit__(self, *exc: Any) -> None:
        """Close the client."""
        self.close()


def write_reliable_overrides(path: str, topics: Sequence[str],
                             depth: Optional[int] = None) -> str:
    """Write a params file making the node's subscriptions to `topics` reliable; return `path`.

    These are rclpy's QoS override parameters (`qos_overrides./topic.subscription.*`), what a
    robot's params file would say for a reliable camera driver. With `depth`, the queue is keep
    last `depth` too. Topics are fully qualified ('/cam0/image_raw').
    """
    lines = ['/**:', '  ros__parameters:', '    qos_overrides:']
    for topic in topics:
        lines += ['      {}:'.format(topic), '        subscription:',
                  '          reliability: reliable']
        if depth is not None:
            lines += ['          history: keep_last', '          depth: {}'.format(depth)]
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return path


def detection_xyxy(detection: Any) -> Tuple[float, float, float, float]:
    """Return a vision_msgs Detection2D's box as x1, y1, x2, y2 pixels."""
    center, sx, sy = detection.bbox.center.position, detection.bbox.size_x, detection.bbox.size_y
    return (center.x - sx / 2, center.y - sy / 2, center.x + sx / 2, center.y + sy / 2)


USAGE_EXAMPLES = """steps, run in order (the first failure stops, exit status 1):
  configure | activate | deactivate | cleanup | shutdown   a lifecycle transition
  state                                                   print the lifecycle state
  get NAME[,NAME...]                                      print parameters' values
  set NAME=VALUE[,NAME=VALUE...]                          set parameters (VALUE in YAML)

examples:
  python -m tx2_inference.tools.client configure activate
  python -m tx2_inference.tools.client --node /front/inference_node state
  python -m tx2_inference.tools.client set score_threshold=0.6,class_agnostic_nms=true
  python -m tx2_inference.tools.client get score_threshold

Set ROS_DOMAIN_ID (and the DDS profile) as for the node's process."""


def _run_step(client: NodeClient, step: str, argument: Optional[str], timeout: float) -> bool:
    """Run one step; print what it did; return whether it succeeded."""
    import yaml
    if step in TRANSITIONS:
        ok = client.transition(step, timeout)
        print('{} {}: {} (state: {})'.format(client.target, step,
                                             'ok' if ok else 'FAILED', client.state()))
        return ok
    if step == 'state':
        print(client.state())
        return True
    names = [n.strip() for n in (argument or '').split(',') if n.strip()]
    if step == 'get':
        for name, value in zip(names, client.get_parameters(*names)):
            print('{}: {}'.format(name, 'not set' if value is None else value))
        return True
    values = {}
    for item in names:
        name, _, text = item.partition('=')
        values[name.strip()] = yaml.safe_load(text)
    ok = True
    for name, result in zip(values, client.set_parameters(**values)):
        ok = ok and result.successful
        print('{} = {!r}: {}'.format(name, values[name], 'ok' if result.successful
                                     else 'refused: ' + result.reason))
    return ok


def main(argv: Optional[List[str]] = None) -> int:
    """Drive a node's lifecycle and parameters from a shell, without the ros2 command."""
    parser = argparse.ArgumentParser(
        prog='python -m tx2_inference.tools.client',
        description="Drive a node's lifecycle and parameters from another process, as "
                    "'ros2 lifecycle set' and 'ros2 param get/set' do, on a machine without "
                    'the ros2 command.', epilog=USAGE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--node', default='/inference_node',
                        help="the node's full name (default: /inference_node)")
    parser.add_argument('--timeout', type=float, default=60.0,
                        help='seconds to wait for the node and for each answer (default: 60)')
    parser.add_argument('steps', nargs='+', metavar='STEP', help='see below')
    args = parser.parse_args(argv)
    steps = []  # type: List[Tuple[str, Optional[str]]]
    words = list(args.steps)
    while words:
        word = words.pop(0)
        if word in ('get', 'set'):
            if not words:
                parser.error('{} needs NAME{}'.format(word, '=VALUE' if word == 'set' else ''))
            steps.append((word, words.pop(0)))
        elif word in TRANSITIONS or word == 'state':
            steps.append((word, None))
        else:
            parser.error('unknown step {!r}: one of {}, state, get, set'.format(
                word, ', '.join(TRANSITIONS)))
    with NodeClient(args.node, name='tx2_client') as client:
        try:
            client.wait_for_node(args.timeout)
        except TimeoutError as error:
            print('{} (is the node running, with the same ROS_DOMAIN_ID?)'.format(error),
                  file=sys.stderr)
            return 1
        for step, argument in steps:
            if not _run_step(client, step, argument, args.timeout):
                return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
