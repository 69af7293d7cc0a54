"""
The package's Python logs in the node's ROS log.

The core and the backends log with Python's `logging` under ``tx2_inference.*`` (the engine
builder's cache hit, "another process is building this engine; waiting", the build heartbeat,
"engine built in X s"). Inside the node nobody prints those: `route_package_logs` hands them
to the node's rclpy logger, so they reach the console, the log file and /rosout like the
node's own lines, during a configure that can take minutes on a TX2.
"""

import logging
from typing import Any, List

PACKAGE_LOGGER = 'tx2_inference'


class RosLogHandler(logging.Handler):
    """A `logging.Handler` writing each record to an rclpy logger at the same severity."""

    def __init__(self, ros_logger: Any) -> None:
        """Write to ``ros_logger`` (``node.get_logger()``)."""
        super(RosLogHandler, self).__init__()
        self.ros_logger = ros_logger

    def emit(self, record: logging.LogRecord) -> None:
        """Log ``<module>: <message>`` (module without the package prefix) to ROS."""
        try:
            name = record.name
            if name.startswith(PACKAGE_LOGGER + '.'):
                name = name[len(PACKAGE_LOGGER) + 1:]
            message = '{}: {}'.format(name, self.format(record))
            if record.levelno >= logging.CRITICAL:
                self.ros_logger.fatal(message)
            elif record.levelno >= logging.ERROR:
                self.ros_logger.error(message)
            elif record.levelno >= logging.WARNING:
                self.ros_logger.warning(message)
            elif record.levelno >= logging.INFO:
                self.ros_logger.info(message)
            else:
                self.ros_logger.debug(message)
        except Exception:  # noqa: B902 - logging must never raise into the caller
            self.handleError(record)


class PackageLogRoute(object):
    """The route of ``tx2_inference.*`` records to one rclpy logger; `close` removes it."""

    _open: List['PackageLogRoute'] = []
    _level_before = logging.NOTSET  # the package logger's level before the first route

    def __init__(self, ros_logger: Any) -> None:
        """Attach a `RosLogHandler`; an unset package level follows the ROS logger's."""
        self._logger = logging.getLogger(PACKAGE_LOGGER)
        self._handler = RosLogHandler(ros_logger)
        if not PackageLogRoute._open:
            PackageLogRoute._level_before = self._logger.level
        if self._logger.level == logging.NOTSET:
            # Python's default (the root's WARNING) would drop the builder's progress lines;
            # rclpy's severities have the same numbers as Python's levels.
            self._logger.setLevel(int(ros_logger.get_effective_level()))
        self._logger.addHandler(self._handler)
        PackageLogRoute._open.append(self)

    def close(self) -> None:
        """Detach the handler; the last open route restores the package logger's level."""
        if self not in PackageLogRoute._open:
            return
        PackageLogRoute._open.remove(self)
        self._logger.removeHandler(self._handler)
        if not PackageLogRoute._open:
            self._logger.setLevel(PackageLogRoute._level_before)


def route_package_logs(ros_logger: Any) -> PackageLogRoute:
    """Send the package's Python log records to ``ros_logger`` until the route is closed."""
    return PackageLogRoute(ros_logger)
