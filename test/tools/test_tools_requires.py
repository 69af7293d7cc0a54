"""A tool whose library is missing says what to install; the node needs none of them."""

import sys

import pytest

from tx2_inference.tools import soak
from tx2_inference.tools.requires import MissingToolLibraryError, pyplot, require


def missing(monkeypatch, *modules):
    """Make ``modules`` unimportable, as on a robot that installed only the node."""
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)


def test_a_missing_library_names_what_to_install(monkeypatch):
    missing(monkeypatch, 'psutil')
    with pytest.raises(MissingToolLibraryError) as error:
        require('psutil', "the soak's process figures")
    message = str(error.value)
    for words in ("the soak's process figures", 'pip install psutil', 'python3-psutil',
                  'The node itself does not need it'):
        assert words in message, message


def test_a_tool_without_scikit_image_says_so(monkeypatch):
    missing(monkeypatch, 'skimage', 'skimage.data')
    with pytest.raises(MissingToolLibraryError, match='pip install scikit-image'):
        soak.astronaut()


def test_plots_without_matplotlib(monkeypatch, tmp_path):
    missing(monkeypatch, 'matplotlib', 'matplotlib.pyplot')
    with pytest.raises(MissingToolLibraryError, match='python3-matplotlib'):
        pyplot('the plots')
    assert soak.plot({}, str(tmp_path / 'soak.png')) is False  # the soak runs on without it


def test_present_libraries_are_returned():
    assert require('skimage.data', 'a photo').astronaut().shape == (512, 512, 3)
    assert hasattr(pyplot('a plot'), 'subplots')
