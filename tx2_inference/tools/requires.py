"""The tools' own libraries (matplotlib, psutil, scikit-image), imported when a tool needs one.

The robot's node needs none of them (package.xml lists them as test dependencies). A tool
that needs one imports it through `require`, which says what to install when it is missing.
"""

import importlib
from typing import Any

from tx2_inference.errors import UserError

# import name -> (pip package, rosdep key / Debian package)
INSTALL = {
    'matplotlib': ('matplotlib', 'python3-matplotlib'),
    'psutil': ('psutil', 'python3-psutil'),
    'skimage': ('scikit-image', 'python3-skimage'),
}


class MissingToolLibraryError(UserError):
    """A tool needs a library the robot's install does not have."""


def require(module: str, needed_for: str) -> Any:
    """
    Import ``module`` (e.g. 'skimage.data') for a tool, or say what to install.

    :param needed_for: what the tool needs it for, e.g. 'the soak's memory figures'.
    :raises MissingToolLibraryError: naming the pip package and the apt/rosdep package.
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        top = module.split('.')[0]
        pip, apt = INSTALL.get(top, (top, 'python3-' + top))
        raise MissingToolLibraryError(
            '{} needs {} ({}), which is not installed: pip install {} (or sudo apt install '
            '{}; rosdep key {}). The node itself does not need it.'.format(
                needed_for, top, error, pip, apt, apt)) from error


def pyplot(needed_for: str) -> Any:
    """Return matplotlib.pyplot on the Agg backend (no display needed), or say what to install."""
    matplotlib = require('matplotlib', needed_for)
    matplotlib.use('Agg')
    return require('matplotlib.pyplot', needed_for)
