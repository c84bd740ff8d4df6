"""smplify3d_node on a robot's own camera and LiDAR topics, optionally with RViz.

    ros2 launch smplify3d_ros robot.launch.py
    ros2 launch smplify3d_ros robot.launch.py params_file:=/path/to/my_robot.yaml rviz:=true

Arguments:
  params_file   the node's parameter file (default: the package's config/robot.yaml, which
                documents every parameter; copy it and set your topics, frames and checkpoints)
  rviz          true: also start rviz2 with rviz/smplify3d.rviz (default false)
  rviz_config   the RViz config rviz2 opens (default: the package's rviz/smplify3d.rviz)
  use_sim_time  true: the node follows /clock (bag replay; default false)
  autostart     true: the node configures and activates itself (default); false: it waits in the
                unconfigured lifecycle state for a lifecycle manager (ros2 lifecycle set ...)

The camera-LiDAR extrinsic comes from TF (extrinsics_source: tf, the default) or from the
T_cam_lidar parameter (extrinsics_source: static); see config/robot.yaml.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

PACKAGE = "smplify3d_ros"


def generate_launch_description():
    share = get_package_share_directory(PACKAGE)
    params_file = LaunchConfiguration("params_file")
    rviz = LaunchConfiguration("rviz")
    rviz_config = LaunchConfiguration("rviz_config")
    use_sim_time = ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool)
    autostart = ParameterValue(LaunchConfiguration("autostart"), value_type=bool)

    return LaunchDescription([
        DeclareLaunchArgument(
            "params_file", default_value=os.path.join(share, "config", "robot.yaml"),
            description="Parameter file of smplify3d_node (see config/robot.yaml)"),
        DeclareLaunchArgument(
            "rviz", default_value="false", description="Also start rviz2 with the package's RViz config"),
        DeclareLaunchArgument(
            "rviz_config", default_value=os.path.join(share, "rviz", "smplify3d.rviz"),
            description="RViz config file for rviz2"),
        DeclareLaunchArgument(
            "use_sim_time", default_value="false", description="Use /clock (simulation or bag replay) time"),
        DeclareLaunchArgument(
            "autostart", default_value="true",
            description="Configure and activate the (lifecycle) node at start-up; false: wait for a lifecycle manager"),
        Node(
            package=PACKAGE,
            executable="smplify3d_node",
            name="smplify3d_node",
            output="screen",
            emulate_tty=True,
            parameters=[params_file, {"use_sim_time": use_sim_time, "autostart": autostart}],
        ),
        Node(
            package="rviz2",
            executable="rviz2",
            name="rviz2",
            output="log",
            arguments=["-d", rviz_config],
            parameters=[{"use_sim_time": use_sim_time}],
            condition=IfCondition(rviz),
        ),
    ])
