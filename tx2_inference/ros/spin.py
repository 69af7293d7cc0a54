"""
The one main loop of the package's node processes, and the `run_node` main every one uses.

``inference_node``, ``camera_player`` and ``echo_node`` exit cleanly on Ctrl-C, SIGINT and
SIGTERM (rclpy's signal handlers shut the context down) and when the node says it is done.
A node that holds resources releases them in its ``destroy_node``, which `run_node` calls.
"""

import sys
from typing import Any, Callable, List, Optional, Sequence, Type

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

from tx2_inference.errors import UserError


def spin_until_shutdown(node: Any, done: Callable[[], bool] = lambda: False) -> None:
    """Spin ``node`` until ``done()``, Ctrl-C or an external shutdown (SIGINT, SIGTERM).

    rclpy's signal handlers shut the context down; a signal that lands while the executor
    builds its wait set surfaces as an RCLError rather than ExternalShutdownException, and is
    a clean exit too. Any other error is raised.
    """
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        while rclpy.ok() and not done():
            executor.spin_once(timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception as error:  # noqa: B902
        if rclpy.ok():
            raise
        node.get_logger().info('shutdown while spinning: {}'.format(error))


def run_node(make_node: Callable[[], Any], args: Optional[List[str]] = None,
             done: Optional[Callable[[Any], bool]] = None,
             fixable: Sequence[Type[BaseException]] = (UserError,),
             program: str = '') -> int:
    """
    Run a node process: init, make the node, spin until done, destroy the node, shut down.

    :param make_node: creates the node (after ``rclpy.init``).
    :param args: the command line, ROS arguments included (default: ``sys.argv``).
    :param done: ``done(node)`` -> True ends the loop (e.g. the node was finalized).
    :param fixable: errors of ``make_node`` that the user must fix: printed, status 2.
    :param program: the name those errors are printed under.
    :returns: the exit status: 0, or 2 for a fixable error.
    """
    rclpy.init(args=args)
    node = None
    try:
        node = make_node()
        spin_until_shutdown(node, (lambda: done(node)) if done is not None else lambda: False)
    except KeyboardInterrupt:  # Ctrl-C before the node spins
        pass
    except tuple(fixable) as error:
        print('{}: {}'.format(program or 'error', error), file=sys.stderr)
        return 2
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
