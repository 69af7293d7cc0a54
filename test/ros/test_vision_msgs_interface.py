"""The vision_msgs rebuilt here matches upstream vision_msgs 4.1.1 field for field.

A robot runs the distribution's vision_msgs; our messages must have the same fields, types and
order or the two sides will not talk. EXPECTED is the upstream interface (4.1.1, as ROS 2
Humble and later ship it), written out from its .msg files.
"""

import importlib
import os

from project_files import ROOT
import pytest

MSG_DIR = os.path.join(ROOT, 'tools', 'ros_interfaces', 'vision_msgs', 'msg')

EXPECTED = {
    'BoundingBox2D': [('vision_msgs/Pose2D', 'center'), ('float64', 'size_x'),
                      ('float64', 'size_y')],
    'BoundingBox2DArray': [('std_msgs/Header', 'header'),
                           ('vision_msgs/BoundingBox2D[]', 'boxes')],
    'BoundingBox3D': [('geometry_msgs/Pose', 'center'), ('geometry_msgs/Vector3', 'size')],
    'BoundingBox3DArray': [('std_msgs/Header', 'header'),
                           ('vision_msgs/BoundingBox3D[]', 'boxes')],
    'Classification': [('std_msgs/Header', 'header'), ('ObjectHypothesis[]', 'results')],
    'Detection2D': [('std_msgs/Header', 'header'), ('ObjectHypothesisWithPose[]', 'results'),
                    ('BoundingBox2D', 'bbox'), ('string', 'id')],
    'Detection2DArray': [('std_msgs/Header', 'header'), ('Detection2D[]', 'detections')],
    'Detection3D': [('std_msgs/Header', 'header'), ('ObjectHypothesisWithPose[]', 'results'),
                    ('BoundingBox3D', 'bbox'), ('string', 'id')],
    'Detection3DArray': [('std_msgs/Header', 'header'), ('Detection3D[]', 'detections')],
    'LabelInfo': [('std_msgs/Header', 'header'), ('vision_msgs/VisionClass[]', 'class_map'),
                  ('float32', 'threshold')],
    'ObjectHypothesis': [('string', 'class_id'), ('float64', 'score')],
    'ObjectHypothesisWithPose': [('ObjectHypothesis', 'hypothesis'),
                                 ('geometry_msgs/PoseWithCovariance', 'pose')],
    'Point2D': [('float64', 'x'), ('float64', 'y')],
    'Pose2D': [('vision_msgs/Point2D', 'position'), ('float64', 'theta')],
    'VisionClass': [('uint16', 'class_id'), ('string', 'class_name')],
    'VisionInfo': [('std_msgs/Header', 'header'), ('string', 'method'),
                   ('string', 'database_location'), ('int32', 'database_version')],
}


def _fields(path):
    """Return [(type, name)] of a .msg file, comments and blank lines dropped."""
    fields = []
    with open(path) as f:
        for line in f:
            line = line.split('#', 1)[0].strip()
            if line:
                ftype, name = line.split()[:2]
                fields.append((ftype, name))
    return fields


def test_same_message_set():
    names = {f[:-4] for f in os.listdir(MSG_DIR) if f.endswith('.msg')}
    assert names == set(EXPECTED)


@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_msg_file_fields(name):
    assert _fields(os.path.join(MSG_DIR, name + '.msg')) == EXPECTED[name]


def _normalise(ftype):
    """Map a .msg type to the spelling rosidl's Python classes report."""
    seq = ftype.endswith('[]')
    base = ftype[:-2] if seq else ftype
    base = {'float64': 'double', 'float32': 'float', 'int32': 'int32', 'uint16': 'uint16',
            'string': 'string'}.get(base, base)
    if '/' not in base and base[0].isupper():
        base = 'vision_msgs/' + base
    return 'sequence<%s>' % base if seq else base


@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_built_python_class_fields(name):
    """The installed, generated classes have the fields in the same order and types."""
    cls = getattr(importlib.import_module('vision_msgs.msg'), name)
    got = list(cls.get_fields_and_field_types().items())
    want = [(fname, _normalise(ftype)) for ftype, fname in EXPECTED[name]]
    assert got == want
