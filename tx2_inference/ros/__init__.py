"""The ROS 2 side: the lifecycle node and its message, image and parameter glue."""
