"""The benchmark's ROS side (issue 7): load generator, naive node, process orchestration, plots.

``python -m tx2_inference.tools.benchmark`` drives these; each module also runs on its own.
"""
