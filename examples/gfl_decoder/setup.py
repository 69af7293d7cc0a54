"""A tx2_inference decoder plugin in its own package (docs/BRING_YOUR_OWN_DETECTOR.md)."""

from setuptools import setup

setup(
    name='gfl_decoder',
    version='0.1.0',
    description='Distribution-focal (GFL) head decoder for tx2_inference',
    packages=['gfl_decoder'],
    install_requires=['numpy'],  # and tx2_inference, which the robot has as a ROS package
    entry_points={
        'tx2_inference.decoders': ['gfl = gfl_decoder:GFLDecoder'],
    },
)
