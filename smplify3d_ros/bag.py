"""``smplify3d-bag``: rosbag2 tools that work without a ROS install (sqlite3 and MCAP via ``rosbags``).

Sub-commands:

``record-sim OUT``
    Writes a synthetic rosbag2 with the topics of ``smplify3d_sim_node`` — ``/smplify3d_sim_node/``
    ``image`` (sensor_msgs/Image rgb8), ``camera_info``, ``points`` (PointCloud2, LiDAR frame),
    ``observations`` (smplify3d_ros/ObservationArray) and ``ground_truth`` (smplify3d_ros/SMPLArray)
    — frame ``i`` stamped ``start + i / rate`` (bag time = header stamps), without DDS. The frames
    are those of a simulated sequence (people moving smoothly, stable tracking ids; ``--moving-robot``
    drives the rig) and ``/tf`` carries ``odom -> camera`` per frame; ``--random-scenes`` cycles
    ``--scenes`` independent random frames instead, as ``sequence: false`` makes the sim node do. The
    camera-LiDAR extrinsic goes to ``/tf_static`` as a ``tf2_msgs/TFMessage`` (parent = camera
    optical frame, child = LiDAR frame; serialized with the rosbags type store). The package's own
    message definitions are stored in the bag, so rosbags (and ``ros2 bag``) can read it without
    this package.

``play BAG``
    Publishes the bag into the live ROS graph as raw CDR bytes (no deserialization), keeping the
    recorded timing scaled by ``1 / --rate``, and publishes ``/clock`` (rosgraph_msgs/Clock) so that
    nodes with ``use_sim_time`` follow the bag. Data topics: QoS reliable, keep-last 10, volatile
    (``/tf_static``: transient local); ``/clock``: reliable, keep-last 1. ``/tf_static`` and ``/tf``
    are played whenever ``tf2_msgs`` is importable (a ROS distro's, or the one
    ``scripts/build_msgs.sh`` builds into the venv), so a node in ``extrinsics_source: tf`` gets
    the bag's extrinsic. Topics whose message type has no Python package here are skipped with a
    note. ``--wait-for-subscribers S``
    waits up to S seconds until every topic of ``--wait-topics`` (default: all played topics)
    has a subscriber. SIGTERM/SIGINT stop playback cleanly.

``process IN OUT``
    Runs the pipeline over a bag offline (no DDS): pairs image and cloud by nearest header stamp
    within ``--sync-slop``, takes the camera from camera_info and the extrinsic from
    ``--T-cam-lidar`` or the bag's ``/tf_static`` (``/tf``), fits each frame with
    :class:`~smplify3d_core.pipeline.FrameProcessor` (as the node does) — using the bag's ObservationArray when it
    has them, else ViTPose + CLIFF (``--vitpose-checkpoint``, ``--cliff-checkpoint``) — and writes
    ``/smplify3d_node/smpl`` (SMPLArray stamped like the input image) to the output bag, plus
    copies of the input topics with ``--copy-inputs``. ``--tracking-frame`` and ``--target-frame``
    are the node's ``tracking_frame`` and ``target_frame``, with camera -> frame looked up in the
    bag's /tf and /tf_static at each image's stamp (interpolated; a frame without it is skipped).
    Prints a summary: frames, persons, mean stage times, and PVE / MPJPE against the bag's
    ``ground_truth`` when present.

Exit codes: 0 success, 1 nothing could be processed, 2 bad input (missing bag, topic, checkpoint...).
"""
from __future__ import annotations

import rclpy  # noqa: F401  (first: the wheels' bootstrapper sets up the library path)

import argparse
import sys


from smplify3d_ros.bag_io import (BagToolError, OUTPUT_TOPIC, SIM_TOPICS, TF_STATIC)
from smplify3d_core.pipeline_config import add_pipeline_arguments
from smplify3d_ros.bag_play import play
from smplify3d_ros.bag_process import process
from smplify3d_ros.bag_record import record_sim


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="smplify3d-bag", description="rosbag2 tools for SMPLify-3D (sqlite3 and MCAP, no ROS install needed).",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    rec = sub.add_parser("record-sim", help="write a synthetic bag with the sim node's topics (no DDS)",
                         description="Write a synthetic rosbag2 with the topics of smplify3d_sim_node "
                                     f"({', '.join(SIM_TOPICS.values())}) and the camera-LiDAR extrinsic on "
                                     f"{TF_STATIC} (tf2_msgs/TFMessage, camera optical frame <- LiDAR frame; written "
                                     "with the rosbags type store, no tf2_msgs needed; also kept in "
                                     "the bag metadata as custom_data smplify3d.T_cam_lidar). Header stamps = bag "
                                     "times = start + i / rate.")
    rec.add_argument("out", help="output bag folder (must not exist)")
    rec.add_argument("--frames", type=int, default=10, help="frames to write (default 10)")
    rec.add_argument("--rate", type=float, default=2.0, help="frames per second of bag time (default 2)")
    rec.add_argument("--persons", type=int, default=3, help="persons per frame (default 3)")
    rec.add_argument("--sensor", choices=["humanm3", "sloper4d"], default="humanm3", help="simulated sensor preset")
    rec.add_argument("--seed", type=int, default=0,
                     help="seed of the sequence (with --random-scenes: of the first scene; scene k uses seed + k)")
    rec.add_argument("--sequence", action="store_true",
                     help="frame i = frame i of a simulated sequence (the same people moving, stable ids p0, p1, ...; "
                          "fps = --rate; odom -> camera on /tf per frame): the default")
    rec.add_argument("--random-scenes", action="store_true",
                     help="cycle --scenes independent random frames instead of a sequence (the sim node's sequence: false)")
    rec.add_argument("--scenes", type=int, default=3, help="with --random-scenes: distinct scenes cycled through (default 3)")
    rec.add_argument("--moving-robot", action="store_true", help="the sequence's sensor rig drives (0.5 m/s)")
    rec.add_argument("--odom-frame", default="odom", help="parent frame of the camera on /tf (sequences)")
    rec.add_argument("--storage", choices=["mcap", "sqlite3"], default="mcap", help="rosbag2 storage (default mcap)")
    rec.add_argument("--start-time", type=float, default=None, help="stamp of the first frame, seconds (default: now)")
    rec.add_argument("--camera-frame", default="camera_optical")
    rec.add_argument("--lidar-frame", default="lidar")
    rec.add_argument("--smpl-model-path", default="", help="SMPL model folder (default: the synthetic model)")
    rec.add_argument("--quiet", action="store_true", help="no progress bar")

    ply = sub.add_parser("play", help="publish a bag into the live ROS graph as raw CDR, with /clock",
                         description="Publish the bag's messages as raw CDR bytes with the recorded timing scaled by "
                                     "1/--rate, and /clock (rosgraph_msgs/Clock) for use_sim_time nodes. Data topics: "
                                     "QoS reliable, keep-last 10, volatile (/tf_static transient local); /clock: reliable, "
                                     "keep-last 1. /tf_static and /tf are played when tf2_msgs is importable "
                                     "(scripts/build_msgs.sh builds it into a pip-only venv); topics whose type has no "
                                     "Python package here are skipped with a note. Arguments after "
                                     "--ros-args go to rclpy.")
    ply.add_argument("bag", help="bag folder")
    ply.add_argument("--rate", type=float, default=1.0, help="playback speed factor (default 1)")
    ply.add_argument("--loop", action="store_true", help="play again from the start until stopped")
    ply.add_argument("--topics", nargs="+", default=None, help="play only these topics (default all)")
    ply.add_argument("--wait-for-subscribers", type=float, default=0.0, metavar="SECONDS",
                     help="wait up to SECONDS until every topic of --wait-topics has a subscriber (default 0: no wait)")
    ply.add_argument("--wait-topics", nargs="+", default=None, help="topics to wait for (default all played topics)")
    ply.add_argument("--clock-hz", type=float, default=50.0, help="/clock rate in bag time between messages (default 50)")
    ply.add_argument("--no-clock", action="store_true", help="do not publish /clock")
    ply.add_argument("--node-name", default="smplify3d_bag_player")

    pro = sub.add_parser("process", help="fit a bag offline and write the SMPL results to a new bag",
                         description="Run SMPLify-3D over a bag offline (no DDS) and write SMPLArray results.")
    pro.add_argument("input", help="input bag folder")
    pro.add_argument("out", help="output bag folder (must not exist)")
    pro.add_argument("--image-topic", default=SIM_TOPICS["image"])
    pro.add_argument("--camera-info-topic", default=SIM_TOPICS["camera_info"])
    pro.add_argument("--cloud-topic", default=SIM_TOPICS["points"])
    pro.add_argument("--observations-topic", default=SIM_TOPICS["observations"],
                     help="ObservationArray topic, used when the bag has it ('' to always run the networks)")
    pro.add_argument("--truth-topic", default=SIM_TOPICS["ground_truth"], help="ground-truth SMPLArray topic for the summary")
    pro.add_argument("--output-topic", default=OUTPUT_TOPIC)
    pro.add_argument("--T-cam-lidar", dest="T_cam_lidar", type=float, nargs=16, default=None, metavar="V",
                     help="camera-LiDAR extrinsic, 16 numbers row-major (default: from the bag's /tf_static)")
    pro.add_argument("--sync-slop", type=float, default=0.05, help="max image-cloud stamp gap, seconds (default 0.05)")
    pro.add_argument("--tracking-frame", default="",
                     help="fixed frame the tracker follows people in (e.g. odom), camera -> it from the bag's /tf at "
                          "each image's stamp (as the node's tracking_frame); default: the camera frame")
    pro.add_argument("--target-frame", default="",
                     help="frame of the written bodies (as the node's target_frame), from the bag's /tf; default: "
                          "the camera optical frame")
    pro.add_argument("--publish-vertices", action="store_true", help="include the 6890 vertices in each SMPL message")
    pro.add_argument("--copy-inputs", action="store_true", help="copy all input topics into the output bag")
    pro.add_argument("--storage", choices=["mcap", "sqlite3"], default="mcap", help="output storage (default mcap)")
    pro.add_argument("--summary-json", default=None, help="also write the summary to this JSON file")
    pro.add_argument("--quiet", action="store_true", help="no progress bar")
    add_pipeline_arguments(pro)
    return parser


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ros_args = None
    if "--ros-args" in argv:
        cut = argv.index("--ros-args")
        argv, ros_args = argv[:cut], ["smplify3d-bag"] + argv[cut:]
    args = build_parser().parse_args(argv)
    try:
        if args.command == "record-sim":
            return record_sim(args)
        if args.command == "play":
            return play(args, ros_args)
        return process(args)
    except BagToolError as error:
        print(f"smplify3d-bag {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
