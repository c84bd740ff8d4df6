"""Weight-free demo: the synthetic camera + LiDAR (smplify3d_sim_node) feeding smplify3d_node, with RViz.

    ros2 launch smplify3d_ros demo.launch.py
    ros2 launch smplify3d_ros demo.launch.py rviz:=false persons:=3 device:=cpu

No checkpoints are needed: the node runs in observations mode (observations_topic set), taking
the simulator's keypoints and image-only initial estimates instead of ViTPose and CLIFF, and the
synthetic SMPL-format body model. The camera-LiDAR extrinsic is given as the static T_cam_lidar
of the simulator preset, computed here at launch time from
smplify3d_core.sim.presets.get_preset(preset).T_cam_lidar (the sim node also publishes it to
/tf_static, which RViz uses to place the LiDAR cloud).

Arguments:
  rviz          start rviz2 with rviz/smplify3d.rviz (default true)
  rviz_config   the RViz config rviz2 opens (default: the package's rviz/smplify3d.rviz)
  preset        simulator preset, also the node's fit preset: humanm3 or sloper4d (default humanm3)
  rate          simulated frames per second (default 1.0)
  persons       persons per simulated frame (default 2)
  seed          seed of the simulated sequence the sim node plays (default 0)
  device        the node's torch device: auto, cpu or cuda (default auto)
  overlay       the node publishes ~/overlay, the meshes drawn on the image, shown in RViz
  autostart     true (default): the fitting node starts by itself; false: it waits unconfigured for
                ros2 lifecycle set /smplify3d_node configure, then activate
                (default true)
  params_file   the node's base parameter file (default: the package's config/robot.yaml);
                the demo's topic, extrinsic and mode settings override it
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = "smplify3d_ros"
SIM = "/smplify3d_sim_node"


def _flag(text):
    """A launch argument's text as a bool ("true"/"false", as IfCondition reads it)."""
    value = str(text).strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def _nodes(context, *args, **kwargs):
    """The sim node and the fitting node, with the preset's extrinsic resolved at launch time."""
    from smplify3d_core.sim.presets import get_preset

    preset = LaunchConfiguration("preset").perform(context)
    T_cam_lidar = [float(v) for v in get_preset(preset).T_cam_lidar.reshape(-1)]
    assert len(T_cam_lidar) == 16
    sim = Node(
        package=PACKAGE,
        executable="smplify3d_sim_node",
        name="smplify3d_sim_node",
        output="screen",
        emulate_tty=True,
        parameters=[{
            "sensor": preset,
            "rate": float(LaunchConfiguration("rate").perform(context)),
            "persons": int(LaunchConfiguration("persons").perform(context)),
            "seed": int(LaunchConfiguration("seed").perform(context)),
            "camera_frame": "camera_optical",
            "lidar_frame": "lidar",
        }],
    )
    node = Node(
        package=PACKAGE,
        executable="smplify3d_node",
        name="smplify3d_node",
        output="screen",
        emulate_tty=True,
        parameters=[LaunchConfiguration("params_file"), {
            "image_topic": f"{SIM}/image",
            "compressed_image": False,
            "camera_info_topic": f"{SIM}/camera_info",
            "cloud_topic": f"{SIM}/points",
            "observations_topic": f"{SIM}/observations",
            "reliable_inputs": True,
            "extrinsics_source": "static",
            "T_cam_lidar": T_cam_lidar,
            "preset": preset,
            "device": LaunchConfiguration("device").perform(context),
            "publish_markers": True,
            "publish_overlay": _flag(LaunchConfiguration("overlay").perform(context)),
            "autostart": _flag(LaunchConfiguration("autostart").perform(context)),
        }],
    )
    return [sim, node]


def generate_launch_description():
    share = get_package_share_directory(PACKAGE)
    return LaunchDescription([
        DeclareLaunchArgument("rviz", default_value="true", description="Start rviz2 with the package's RViz config"),
        DeclareLaunchArgument(
            "rviz_config", default_value=os.path.join(share, "rviz", "smplify3d.rviz"),
            description="RViz config file for rviz2"),
        DeclareLaunchArgument(
            "preset", default_value="humanm3", description="Simulator preset and fit preset (humanm3, sloper4d)"),
        DeclareLaunchArgument("rate", default_value="1.0", description="Simulated frames per second"),
        DeclareLaunchArgument("persons", default_value="2", description="Persons per simulated frame"),
        DeclareLaunchArgument("seed", default_value="0", description="First scene seed"),
        DeclareLaunchArgument("device", default_value="auto", description="Torch device: auto, cpu or cuda"),
        DeclareLaunchArgument("overlay", default_value="true", description="Publish ~/overlay (meshes on the image)"),
        DeclareLaunchArgument(
            "autostart", default_value="true",
            description="The fitting node configures and activates itself; false: drive it with ros2 lifecycle set"),
        DeclareLaunchArgument(
            "params_file", default_value=os.path.join(share, "config", "robot.yaml"),
            description="Base parameter file of smplify3d_node (the demo's settings override it)"),
        OpaqueFunction(function=_nodes),
        Node(
            package="rviz2",
            executable="rviz2",
            name="rviz2",
            output="log",
            arguments=["-d", LaunchConfiguration("rviz_config")],
            condition=IfCondition(LaunchConfiguration("rviz")),
        ),
    ])
