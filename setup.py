"""ament_python set-up for tx2_inference: `colcon build` on a robot, `pip install -e .` here."""

from glob import glob
import os

from setuptools import find_packages, setup

PACKAGE = 'tx2_inference'


def _data(folder: str, pattern: str = '*'):
    """Return a data_files entry installing folder/pattern under share/tx2_inference."""
    files = [f for f in glob(os.path.join(folder, pattern)) if os.path.isfile(f)]
    return (os.path.join('share', PACKAGE, folder), files)


setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(exclude=['test', 'test.*']),
    # The preflight's support matrix (tools/extract_onnx_trt_support.py writes it).
    package_data={'tx2_inference.backends.tensorrt': ['onnx_trt_support.json']},
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + PACKAGE]),
        ('share/' + PACKAGE, ['package.xml']),
        _data('launch'),
        _data('config'),
        _data('models'),
    ],
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='tx2_inference maintainers',
    maintainer_email='tx2-inference@example.com',
    description='TensorFlow detectors on a robot: TensorRT or ONNX Runtime behind a ROS 2 node.',
    license='Apache-2.0',
    tests_require=['pytest'],
    entry_points={
        'console_scripts': [
            'inference_node = tx2_inference.ros.compat:main',
            'camera_player = tx2_inference.tools.camera_player:main',
            'convert = tx2_inference.convert.cli:main',
            'tx2-convert = tx2_inference.convert.cli:main',
            'benchmark = tx2_inference.tools.benchmark:main',
            'echo_node = tx2_inference.tools.echo_node:main',
        ],
    },
)
