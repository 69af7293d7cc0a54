"""
Which variable names the large-frame Fast DDS profile for the Fast DDS installed here.

Fast DDS 2 (Humble, Jazzy) reads ``FASTRTPS_DEFAULT_PROFILES_FILE`` and ignores
``FASTDDS_DEFAULT_PROFILES_FILE`` (ros2/rmw_fastrtps issue 862); with Fast DDS 3 (Kilted and
newer) rmw_fastrtps reads ``FASTDDS_DEFAULT_PROFILES_FILE`` and warns in every process that
sets the old one, even beside the new one (ros2/rmw_fastrtps pull 806, rmw_fastrtps 9.3).
Fast DDS 2 installs as the CMake package ``fastrtps`` (``share/fastrtps``), Fast DDS 3 as
``fastdds`` (``share/fastdds``): `fastdds_major` looks for them under the ROS prefixes.

- `profile_variables`: the variable(s) to set here; both where no Fast DDS is found.
- `tidy_environment`: the launch files set both (an XML launch file cannot choose); the node
  calls this before its middleware starts and drops the one its Fast DDS does not read, so
  no process the launch file starts prints the deprecation warning.
- ``python3 -m tx2_inference.ros.dds``: prints the ``export`` lines of the large-frame
  configuration for this machine's Fast DDS and Cyclone DDS, for a camera driver's shell:
  ``eval "$(python3 -m tx2_inference.ros.dds)"``.

Light on purpose (os, re, sys): it runs before rclpy is imported.
"""

import os
import sys
from typing import Dict, List, MutableMapping, Optional, Sequence

FASTDDS_2 = 'FASTRTPS_DEFAULT_PROFILES_FILE'
FASTDDS_3 = 'FASTDDS_DEFAULT_PROFILES_FILE'
PACKAGE = 'tx2_inference'


def _prefixes() -> List[str]:
    """Return where ROS packages are installed: AMENT_PREFIX_PATH, then this Python's prefix."""
    found = [p for p in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep) if p]
    return found + [sys.prefix]


def fastdds_major(prefixes: Optional[Sequence[str]] = None) -> Optional[int]:
    """Return the installed Fast DDS's major version (2 or 3), or None when none is found."""
    for prefix in _prefixes() if prefixes is None else prefixes:
        if os.path.isdir(os.path.join(prefix, 'share', 'fastdds')):
            return 3
        if os.path.isdir(os.path.join(prefix, 'share', 'fastrtps')):
            return 2
    return None


def profile_variables(prefixes: Optional[Sequence[str]] = None) -> List[str]:
    """Return the profile variable(s) the installed Fast DDS reads; both when unknown."""
    major = fastdds_major(prefixes)
    if major == 3:
        return [FASTDDS_3]
    if major == 2:
        return [FASTDDS_2]
    return [FASTDDS_2, FASTDDS_3]


def tidy_environment(environ: MutableMapping[str, str],
                     prefixes: Optional[Sequence[str]] = None) -> List[str]:
    """Drop the profile variable this Fast DDS does not read, when both name one file.

    A user who set only one keeps it, whichever it is. Call before the middleware starts.

    :returns: the variables removed.
    """
    if not environ.get(FASTDDS_2) or environ.get(FASTDDS_2) != environ.get(FASTDDS_3):
        return []
    keep = profile_variables(prefixes)
    removed = [name for name in (FASTDDS_2, FASTDDS_3) if name not in keep]
    for name in removed:
        del environ[name]
    return removed


def config_dir() -> str:
    """Return the package's config folder: the installed share's, else the source tree's."""
    for prefix in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep):
        candidate = os.path.join(prefix, 'share', PACKAGE, 'config')
        if prefix and os.path.isfile(os.path.join(candidate, 'fastdds_large_frames.xml')):
            return candidate
    source = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return os.path.join(source, 'config')


def exports(prefixes: Optional[Sequence[str]] = None) -> Dict[str, str]:
    """Return the large-frame DDS configuration's variables for this machine."""
    config = config_dir()
    values = {name: os.path.join(config, 'fastdds_large_frames.xml')
              for name in profile_variables(prefixes)}
    values['CYCLONEDDS_URI'] = 'file://' + os.path.join(config, 'cyclonedds_large_frames.xml')
    return values


def main() -> int:
    """Print ``export NAME=VALUE`` lines for a shell's ``eval``."""
    for name, value in sorted(exports().items()):
        print('export {}={}'.format(name, value))
    return 0


if __name__ == '__main__':
    sys.exit(main())
