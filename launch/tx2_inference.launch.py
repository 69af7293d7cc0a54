"""
Start inference_node (a lifecycle node) and, with autostart, configure then activate it.

    ros2 launch tx2_inference tx2_inference.launch.py
    ros2 launch tx2_inference tx2_inference.launch.py model_path:=/data/model.engine
    ros2 launch tx2_inference tx2_inference.launch.py image_topics:='[cam0/image, cam1/image]'
    ros2 launch tx2_inference tx2_inference.launch.py autostart:=false   # drive it yourself
    ros2 launch tx2_inference tx2_inference.launch.py large_frames_dds:=false  # DDS as it is

The launch arguments override the params file. With autostart the node is configured at
start and activated once it reaches 'inactive' from 'configuring' (a later deactivate is left
alone); a failed configure is logged by the node and leaves it unconfigured, fixable with
`ros2 param set` and `ros2 lifecycle set <node> configure`.

large_frames_dds (default true) gives the node the package's large-frame DDS configuration:
config/fastdds_large_frames.xml (FASTRTPS_DEFAULT_PROFILES_FILE for Fast DDS 2, Humble and
Jazzy; FASTDDS_DEFAULT_PROFILES_FILE for Fast DDS 3) and config/cyclonedds_large_frames.xml
(CYCLONEDDS_URI). Only the processes this file starts get it: the camera driver's process needs
the same, or its large frames are still lost (README, On the robot).
"""

from typing import List

from launch import LaunchDescription
from launch.actions import (
    DeclareLaunchArgument,
    EmitEvent,
    LogInfo,
    RegisterEventHandler,
    SetEnvironmentVariable,
)
from launch.conditions import IfCondition
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare
from lifecycle_msgs.msg import Transition

PACKAGE = 'tx2_inference'
NODE = 'inference_node'


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare(PACKAGE)
    arguments = [
        DeclareLaunchArgument(
            'params_file', default_value=PathJoinSubstitution([share, 'config', 'params.yaml']),
            description='Parameters YAML of the node (every parameter, commented).'),
        DeclareLaunchArgument(
            'namespace', default_value='',
            description='Namespace of the node and of its relative topics.'),
        DeclareLaunchArgument(
            'model_path',
            default_value=PathJoinSubstitution([share, 'models', 'ssdlite_person.onnx']),
            description='Model: .engine, .onnx or .tflite (its .yaml config beside it).'),
        DeclareLaunchArgument(
            'image_topics', default_value='[image_raw]',
            description='Camera topics as a YAML list, each under its own namespace: '
                        '"[cam0/image_raw, cam1/image_raw]".'),
        DeclareLaunchArgument(
            'autostart', default_value='true',
            description='Configure then activate the node at start.'),
        DeclareLaunchArgument(
            'log_level', default_value='info', description='Log level of the node.'),
        DeclareLaunchArgument(
            'large_frames_dds', default_value='true',
            description="Give the node the package's large-frame DDS configuration (Fast DDS "
                        'profile, Cyclone DDS XML); the camera process needs it too.'),
    ]
    large_frames = IfCondition(LaunchConfiguration('large_frames_dds'))
    fastdds_profile = PathJoinSubstitution([share, 'config', 'fastdds_large_frames.xml'])
    cyclonedds_config = PathJoinSubstitution([share, 'config', 'cyclonedds_large_frames.xml'])
    dds_environment = [
        SetEnvironmentVariable('FASTRTPS_DEFAULT_PROFILES_FILE', fastdds_profile,
                               condition=large_frames),
        SetEnvironmentVariable('FASTDDS_DEFAULT_PROFILES_FILE', fastdds_profile,
                               condition=large_frames),
        SetEnvironmentVariable('CYCLONEDDS_URI', ['file://', cyclonedds_config],
                               condition=large_frames),
    ]
    node = LifecycleNode(
        package=PACKAGE, executable=NODE, name=NODE,
        namespace=LaunchConfiguration('namespace'), output='screen',
        parameters=[
            LaunchConfiguration('params_file'),
            {
                'model_path': LaunchConfiguration('model_path'),
                'image_topics': ParameterValue(LaunchConfiguration('image_topics'),
                                               value_type=List[str]),
            },
        ],
        arguments=['--ros-args', '--log-level', LaunchConfiguration('log_level')])
    autostart = IfCondition(LaunchConfiguration('autostart'))
    configure = EmitEvent(
        event=ChangeState(lifecycle_node_matcher=matches_action(node),
                          transition_id=Transition.TRANSITION_CONFIGURE),
        condition=autostart)
    activate_when_configured = RegisterEventHandler(
        OnStateTransition(
            target_lifecycle_node=node, start_state='configuring', goal_state='inactive',
            entities=[
                LogInfo(msg='inference_node is configured; activating it'),
                EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                            transition_id=Transition.TRANSITION_ACTIVATE)),
            ]),
        condition=autostart)
    # The environment is set before the node starts, so its DDS reads the configuration.
    return LaunchDescription(arguments + dds_environment +
                             [node, activate_when_configured, configure])
