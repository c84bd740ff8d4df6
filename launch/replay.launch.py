"""Replay a recorded bag into smplify3d_node (sim time), optionally with RViz.

    ros2 launch smplify3d_ros replay.launch.py bag:=/data/run_01 rate:=0.5 rviz:=true

Arguments:
  bag               the rosbag2 folder (or file) to play (required)
  rate              playback speed factor (default 1.0)
  params_file       the node's parameter file (default: the package's config/robot.yaml); its
                    topics must match the bag's
  rviz              true: also start rviz2 with rviz/smplify3d.rviz (default false)
  rviz_config       the RViz config rviz2 opens (default: the package's rviz/smplify3d.rviz)
  use_sim_time      the node and rviz2 follow /clock (default true, for a player that publishes
                    /clock; set false if it does not)
  start_delay       seconds between starting the node and starting playback, so that the node
                    has loaded its models before the first frames arrive (default 5.0)
  shutdown_at_end   true: stop the whole launch when the player exits (default false)

The player is the package's `smplify3d-bag play BAG --rate RATE` (lib/smplify3d_ros/smplify3d-bag),
which replays a bag without ROS's rosbag2 (it uses the pure-Python `rosbags` reader). The node
is started by including robot.launch.py.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import (DeclareLaunchArgument, EmitEvent, ExecuteProcess, IncludeLaunchDescription,
                            LogInfo, RegisterEventHandler, TimerAction)
from launch.conditions import IfCondition
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.substitutions import ExecutableInPackage

PACKAGE = "smplify3d_ros"


def generate_launch_description():
    share = get_package_share_directory(PACKAGE)
    bag = LaunchConfiguration("bag")
    rate = LaunchConfiguration("rate")

    player = ExecuteProcess(
        cmd=[ExecutableInPackage(executable="smplify3d-bag", package=PACKAGE), "play", bag, "--rate", rate],
        name="smplify3d_bag",
        output="screen",
        emulate_tty=True,
    )
    node = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(share, "launch", "robot.launch.py")),
        launch_arguments={
            "params_file": LaunchConfiguration("params_file"),
            "rviz": LaunchConfiguration("rviz"),
            "rviz_config": LaunchConfiguration("rviz_config"),
            "use_sim_time": LaunchConfiguration("use_sim_time"),
        }.items(),
    )
    at_end = RegisterEventHandler(OnProcessExit(target_action=player, on_exit=[
        LogInfo(msg="smplify3d-bag: playback finished"),
        EmitEvent(event=Shutdown(reason="bag playback finished"),
                  condition=IfCondition(LaunchConfiguration("shutdown_at_end"))),
    ]))

    return LaunchDescription([
        DeclareLaunchArgument("bag", description="rosbag2 folder or file to play"),
        DeclareLaunchArgument("rate", default_value="1.0", description="Playback speed factor"),
        DeclareLaunchArgument(
            "params_file", default_value=os.path.join(share, "config", "robot.yaml"),
            description="Parameter file of smplify3d_node (topics must match the bag's)"),
        DeclareLaunchArgument(
            "rviz", default_value="false", description="Also start rviz2 with the package's RViz config"),
        DeclareLaunchArgument(
            "rviz_config", default_value=os.path.join(share, "rviz", "smplify3d.rviz"),
            description="RViz config file for rviz2"),
        DeclareLaunchArgument(
            "use_sim_time", default_value="true", description="The node and rviz2 follow the player's /clock"),
        DeclareLaunchArgument(
            "start_delay", default_value="5.0", description="Seconds before playback starts (model loading)"),
        DeclareLaunchArgument(
            "shutdown_at_end", default_value="false", description="Stop the launch when the player exits"),
        node,
        at_end,
        TimerAction(period=LaunchConfiguration("start_delay"), actions=[player]),
    ])
