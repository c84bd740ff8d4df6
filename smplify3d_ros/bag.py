"""``smplify3d-bag``: rosbag2 tools that work without a ROS install (sqlite3 and MCAP via ``rosbags``).

Sub-commands:

``record-sim OUT``
    Writes a synthetic rosbag2 with the topics of ``smplify3d_sim_node`` — ``/smplify3d_sim_node/``
    ``image`` (sensor_msgs/Image rgb8), ``camera_info``, ``points`` (PointCloud2, LiDAR frame),
    ``observations`` (smplify3d_ros/ObservationArray) and ``ground_truth`` (smplify3d_ros/SMPLArray)
    — frame ``i`` stamped ``start + i / rate`` (bag time = header stamps), without DDS. The
    camera-LiDAR extrinsic goes to ``/tf_static`` as a ``tf2_msgs/TFMessage`` (parent = camera
    optical frame, child = LiDAR frame; serialized with the rosbags type store, since tf2_msgs has
    no Python wheel here). The package's own message definitions are stored in the bag, so rosbags
    (and ``ros2 bag``) can read it without this package.

``play BAG``
    Publishes the bag into the live ROS graph as raw CDR bytes (no deserialization), keeping the
    recorded timing scaled by ``1 / --rate``, and publishes ``/clock`` (rosgraph_msgs/Clock) so that
    nodes with ``use_sim_time`` follow the bag. Data topics: QoS reliable, keep-last 10, volatile
    (``/tf_static``: transient local); ``/clock``: reliable, keep-last 1. Topics whose message
    type has no Python package here (e.g. ``/tf_static`` without tf2_msgs) are skipped with a
    note: give the node the static ``T_cam_lidar`` parameter then. ``--wait-for-subscribers S``
    waits up to S seconds until every topic of ``--wait-topics`` (default: all played topics)
    has a subscriber. SIGTERM/SIGINT stop playback cleanly.

``process IN OUT``
    Runs the pipeline over a bag offline (no DDS): pairs image and cloud by nearest header stamp
    within ``--sync-slop``, takes the camera from camera_info and the extrinsic from
    ``--T-cam-lidar`` or the bag's ``/tf_static`` (``/tf``), fits each frame with
    :class:`~smplify3d_ros.processing.FrameProcessor` — using the bag's ObservationArray when it
    has them, else ViTPose + CLIFF (``--vitpose``, ``--cliff``) — and writes
    ``/smplify3d_node/smpl`` (SMPLArray stamped like the input image) to the output bag, plus
    copies of the input topics with ``--copy-inputs``. Prints a summary: frames, persons, mean
    stage times, and PVE / MPJPE against the bag's ``ground_truth`` when present.

Exit codes: 0 success, 1 nothing could be processed, 2 bad input (missing bag, topic, checkpoint...).
"""
from __future__ import annotations

import rclpy  # noqa: F401  (first: the wheels' bootstrapper sets up the library path)

import argparse
import bisect
import importlib
import json
import signal
import struct
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Optional

import numpy as np

SIM = "/smplify3d_sim_node"
SIM_TOPICS = {
    "image": f"{SIM}/image",
    "camera_info": f"{SIM}/camera_info",
    "points": f"{SIM}/points",
    "observations": f"{SIM}/observations",
    "ground_truth": f"{SIM}/ground_truth",
}
TF_STATIC = "/tf_static"
OUTPUT_TOPIC = "/smplify3d_node/smpl"
MSGTYPES = {
    "image": "sensor_msgs/msg/Image",
    "camera_info": "sensor_msgs/msg/CameraInfo",
    "points": "sensor_msgs/msg/PointCloud2",
    "observations": "smplify3d_ros/msg/ObservationArray",
    "ground_truth": "smplify3d_ros/msg/SMPLArray",
}
TF_TYPE = "tf2_msgs/msg/TFMessage"
SMPL_ARRAY_TYPE = "smplify3d_ros/msg/SMPLArray"


class BagToolError(Exception):
    """A user error (missing file, topic, checkpoint): printed, exit code 2."""


# ---------------------------------------------------------------------------------------------
# type store and message helpers
# ---------------------------------------------------------------------------------------------
def _msg_dir() -> Path:
    """The folder of the package's .msg files: the source tree's msg/, else the ament share folder."""
    candidates = [Path(__file__).resolve().parent.parent / "msg"]
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.append(Path(get_package_share_directory("smplify3d_ros")) / "msg")
    except Exception:  # not installed as an ament package
        pass
    for folder in candidates:
        if (folder / "SMPL.msg").is_file():
            return folder
    raise BagToolError("cannot find the smplify3d_ros message definitions (msg/*.msg)")


def make_typestore():
    """A rosbags type store with the ROS 2 standard messages and the package's own (smplify3d_ros/msg/*)."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    types = {}
    for path in sorted(_msg_dir().glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"smplify3d_ros/msg/{path.stem}"))
    store.register(types)
    return store


def message_class(msgtype: str):
    """``pkg/msg/Name`` -> the rclpy message class, or None when its Python package is missing."""
    parts = msgtype.split("/")
    if len(parts) == 2:
        parts = [parts[0], "msg", parts[1]]
    try:
        return getattr(importlib.import_module(f"{parts[0]}.{parts[1]}"), parts[2])
    except (ImportError, AttributeError):
        return None


def header_of(raw) -> tuple[int, str]:
    """(stamp in ns, frame_id) of a CDR message that starts with a std_msgs/Header, read from the bytes."""
    raw = bytes(raw[:4096]) if len(raw) > 4096 else bytes(raw)
    endian = "<" if raw[1] & 1 else ">"
    sec, nanosec, length = struct.unpack_from(endian + "iII", raw, 4)
    frame_id = raw[16:16 + max(length - 1, 0)].decode("utf-8", "replace")
    return sec * 1_000_000_000 + nanosec, frame_id


def _ns_to_time(ns: int):
    from builtin_interfaces.msg import Time

    sec, nanosec = divmod(int(ns), 1_000_000_000)
    return Time(sec=sec, nanosec=nanosec)


def _storage_plugin(name: str):
    from rosbags.rosbag2 import StoragePlugin

    return {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}[name]


def _transient_local_qos():
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    zero = QosTime(0, 0)
    return [Qos(QosHistory.KEEP_LAST, 1, QosReliability.RELIABLE, QosDurability.TRANSIENT_LOCAL, zero, zero,
                QosLiveliness.AUTOMATIC, zero, False)]


def _tf_message_cdr(store, T: np.ndarray, stamp_ns: int, parent: str, child: str) -> bytes:
    """A tf2_msgs/TFMessage with one transform (parent <- child), serialized with the rosbags type store."""
    from smplify3d_ros.conversions import matrix_to_transform

    t = store.types
    tf = matrix_to_transform(T)
    sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
    header = t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec), frame_id=parent)
    transform = t["geometry_msgs/msg/Transform"](
        translation=t["geometry_msgs/msg/Vector3"](x=tf.translation.x, y=tf.translation.y, z=tf.translation.z),
        rotation=t["geometry_msgs/msg/Quaternion"](x=tf.rotation.x, y=tf.rotation.y, z=tf.rotation.z, w=tf.rotation.w))
    stamped = t["geometry_msgs/msg/TransformStamped"](header=header, child_frame_id=child, transform=transform)
    return bytes(store.serialize_cdr(t[TF_TYPE](transforms=[stamped]), TF_TYPE))


def _transforms_from_tf(store, raw) -> list:
    """[(parent, child, 4x4 T_parent_child)] of a serialized tf2_msgs/TFMessage."""
    from geometry_msgs.msg import Quaternion, Transform, Vector3

    from smplify3d_ros.conversions import transform_to_matrix

    out = []
    for item in store.deserialize_cdr(bytes(raw), TF_TYPE).transforms:
        tr, q = item.transform.translation, item.transform.rotation
        msg = Transform(translation=Vector3(x=tr.x, y=tr.y, z=tr.z), rotation=Quaternion(x=q.x, y=q.y, z=q.z, w=q.w))
        out.append((item.header.frame_id.lstrip("/"), item.child_frame_id.lstrip("/"), transform_to_matrix(msg)))
    return out


def lookup_transform(transforms: list, target: str, source: str) -> Optional[np.ndarray]:
    """T_target_source (p_target = T p_source) through a chain of (parent, child, T_parent_child), or None."""
    target, source = target.lstrip("/"), source.lstrip("/")
    edges = defaultdict(list)
    for parent, child, T in transforms:
        edges[parent].append((child, T))               # p_parent = T p_child
        edges[child].append((parent, np.linalg.inv(T)))
    best = {target: np.eye(4)}  # frame -> T_target_frame
    queue = [target]
    while queue:
        frame = queue.pop(0)
        if frame == source:
            return best[frame]
        for other, T in edges[frame]:
            if other not in best:
                best[other] = best[frame] @ T
                queue.append(other)
    return None


# ---------------------------------------------------------------------------------------------
# record-sim
# ---------------------------------------------------------------------------------------------
def record_sim(args) -> int:
    from rclpy.serialization import serialize_message

    from smplify3d_ros.sim_node import sim_frame_messages
    from rosbags.rosbag2 import Writer
    from tqdm import tqdm

    from smplify3d_core.body.default_model import default_body_model_dir
    from smplify3d_core.body.model import SMPLBody
    from smplify3d_core.sim.scene import simulate_scene

    out = Path(args.out)
    if out.exists():
        raise BagToolError(f"{out} exists already; rosbag2 writers never overwrite: choose a new path")
    if args.frames < 1 or args.rate <= 0 or args.persons < 0 or args.scenes < 1:
        raise BagToolError("--frames and --scenes must be >= 1, --rate > 0 and --persons >= 0")
    body = SMPLBody.from_path(args.smpl_model_path or default_body_model_dir())
    store = make_typestore()
    start_ns = int(round(args.start_time * 1e9)) if args.start_time is not None else time.time_ns()
    period_ns = int(round(1e9 / args.rate))
    scenes: dict = {}
    with Writer(out, version=9, storage_plugin=_storage_plugin(args.storage)) as writer:
        connections = {key: writer.add_connection(SIM_TOPICS[key], MSGTYPES[key], typestore=store)
                       for key in ("camera_info", "observations", "ground_truth", "image", "points")}
        tf_connection = writer.add_connection(TF_STATIC, TF_TYPE, typestore=store,
                                              offered_qos_profiles=_transient_local_qos())
        writer.set_custom_data("smplify3d.generator", json.dumps(
            {"preset": args.preset, "persons": args.persons, "seed": args.seed, "scenes": args.scenes,
             "rate": args.rate, "camera_frame": args.camera_frame, "lidar_frame": args.lidar_frame}))
        for i in tqdm(range(args.frames), desc="simulating", unit="frame", disable=args.quiet):
            index = i % args.scenes
            if index not in scenes:
                scenes[index] = simulate_scene(body, persons=args.persons, preset=args.preset, seed=args.seed + index)
            frame = scenes[index].frame
            stamp_ns = start_ns + i * period_ns
            if i == 0:
                writer.set_custom_data("smplify3d.T_cam_lidar", json.dumps(frame.T_cam_lidar.reshape(-1).tolist()))
                writer.write(tf_connection, stamp_ns, _tf_message_cdr(store, frame.T_cam_lidar, stamp_ns,
                                                                      args.camera_frame, args.lidar_frame))
            messages = sim_frame_messages(frame, _ns_to_time(stamp_ns), args.camera_frame, args.lidar_frame)
            for key, msg in messages.items():
                writer.write(connections[key], stamp_ns, serialize_message(msg))
    print(f"wrote {args.frames} simulated frames ({args.persons} persons, preset {args.preset}, {args.rate} Hz) "
          f"to {out} ({args.storage})")
    return 0


# ---------------------------------------------------------------------------------------------
# reading bags
# ---------------------------------------------------------------------------------------------
def open_reader(path):
    """An open rosbags Reader of ``path`` (a rosbag2 folder), or BagToolError with the reason."""
    from rosbags.rosbag2 import Reader

    path = Path(path)
    if not path.exists():
        raise BagToolError(f"no such bag: {path}")
    try:
        reader = Reader(path)
        reader.open()
    except Exception as error:
        raise BagToolError(f"cannot read {path} as a rosbag2 (sqlite3 or MCAP folder with metadata.yaml): {error}")
    return reader


def _topics(reader) -> dict:
    topics = defaultdict(list)
    for connection in reader.connections:
        topics[connection.topic].append(connection)
    return topics


def _describe_topics(topics: dict) -> str:
    return ", ".join(f"{topic} ({conns[0].msgtype})" for topic, conns in sorted(topics.items())) or "none"


# ---------------------------------------------------------------------------------------------
# play
# ---------------------------------------------------------------------------------------------
def play(args, ros_args) -> int:
    from rclpy.duration import Duration
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from rosgraph_msgs.msg import Clock

    if args.rate <= 0:
        raise BagToolError("--rate must be > 0")
    reader = open_reader(args.bag)
    try:
        topics = _topics(reader)
        wanted = args.topics or sorted(topics)
        missing = [t for t in wanted if t not in topics]
        if missing:
            raise BagToolError(f"the bag has no topic {', '.join(missing)}; its topics: {_describe_topics(topics)}")
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        context = rclpy.Context()
        rclpy.init(args=ros_args, context=context)
        node = rclpy.create_node(args.node_name, context=context)
        try:
            publishers, connections = {}, []
            for topic in wanted:
                msgtype = topics[topic][0].msgtype
                cls = message_class(msgtype)
                if cls is None:
                    print(f"skipping {topic}: no Python package for {msgtype} here"
                          + (" (give the node the static T_cam_lidar parameter)" if topic in (TF_STATIC, "/tf") else ""),
                          file=sys.stderr)
                    continue
                durability = DurabilityPolicy.TRANSIENT_LOCAL if topic == TF_STATIC else DurabilityPolicy.VOLATILE
                qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=durability)
                publishers[topic] = node.create_publisher(cls, topic, qos)
                connections += topics[topic]
            if not publishers:
                raise BagToolError("none of the selected topics can be published here")
            clock_pub = None if args.no_clock else node.create_publisher(
                Clock, "/clock", QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))

            if args.wait_for_subscribers > 0:
                waiting = [t for t in (args.wait_topics or list(publishers)) if t in publishers]
                deadline = time.monotonic() + args.wait_for_subscribers
                while not stop.is_set() and time.monotonic() < deadline:
                    if all(publishers[t].get_subscription_count() > 0 for t in waiting):
                        break
                    stop.wait(0.05)
                lonely = [t for t in waiting if publishers[t].get_subscription_count() == 0]
                if lonely:
                    print(f"no subscriber on {', '.join(lonely)} after {args.wait_for_subscribers} s; playing anyway",
                          file=sys.stderr)

            print(f"playing {len(publishers)} topic(s) of {args.bag} at {args.rate}x" + (" in a loop" if args.loop else ""),
                  flush=True)
            clock_period = 1.0 / args.clock_hz if args.clock_hz > 0 else None
            count = 0
            while not stop.is_set():
                first_ns = None
                wall_start = time.monotonic()
                last_clock_wall = -1.0
                for connection, stamp_ns, raw in reader.messages(connections=connections):
                    if first_ns is None:
                        first_ns = stamp_ns
                    target = wall_start + (stamp_ns - first_ns) * 1e-9 / args.rate
                    while not stop.is_set():
                        now = time.monotonic()
                        if now >= target:
                            break
                        if clock_pub is not None and clock_period and now - last_clock_wall >= clock_period / args.rate:
                            bag_now = first_ns + int((now - wall_start) * args.rate * 1e9)
                            clock_pub.publish(Clock(clock=_ns_to_time(bag_now)))
                            last_clock_wall = now
                        stop.wait(min(target - now, (clock_period or 0.05) / args.rate))
                    if stop.is_set():
                        break
                    if clock_pub is not None:
                        clock_pub.publish(Clock(clock=_ns_to_time(stamp_ns)))
                    publishers[connection.topic].publish(bytes(raw))
                    count += 1
                if not args.loop:
                    break
            for publisher in publishers.values():  # let reliable subscribers receive the last messages
                publisher.wait_for_all_acked(Duration(seconds=2.0))
            print(f"published {count} messages on {len(publishers)} topics" + (" (stopped)" if stop.is_set() else ""))
        finally:
            node.destroy_node()
            rclpy.try_shutdown(context=context)
    finally:
        reader.close()
    return 0


# ---------------------------------------------------------------------------------------------
# process
# ---------------------------------------------------------------------------------------------
def pair_stamps(image_stamps: list, cloud_stamps: list, slop_ns: int) -> list:
    """[(image index, cloud index)] pairing each image with the nearest cloud within slop, each used once."""
    order = sorted(range(len(cloud_stamps)), key=lambda j: cloud_stamps[j])
    sorted_stamps = [cloud_stamps[j] for j in order]
    candidates = []
    for i, stamp in enumerate(image_stamps):
        k = bisect.bisect_left(sorted_stamps, stamp)
        for m in range(max(k - 2, 0), min(k + 2, len(order))):
            gap = abs(sorted_stamps[m] - stamp)
            if gap <= slop_ns:
                candidates.append((gap, i, order[m]))
    pairs, used_images, used_clouds = [], set(), set()
    for _gap, i, j in sorted(candidates):
        if i not in used_images and j not in used_clouds:
            pairs.append((i, j))
            used_images.add(i)
            used_clouds.add(j)
    return sorted(pairs)


def _nearest(stamps_sorted: list, stamp: int, slop_ns: int) -> list:
    """Indices into ``stamps_sorted`` within slop of ``stamp``."""
    lo = bisect.bisect_left(stamps_sorted, stamp - slop_ns)
    hi = bisect.bisect_right(stamps_sorted, stamp + slop_ns)
    return list(range(lo, hi))


def _person_errors(fit, truth_msg) -> tuple[list, list]:
    """Pelvis-aligned PVE and MPJPE (m) of each valid fitted person against the nearest true body."""
    from smplify3d_ros.smpl_messages import joints_from_smpl, vertices_from_smpl

    truths = [(joints_from_smpl(p), vertices_from_smpl(p)) for p in truth_msg.persons]
    pves, mpjpes = [], []
    if not truths:
        return pves, mpjpes
    joints = fit.result.joints.detach().cpu().numpy()[:, :24].astype(np.float64)
    vertices = fit.result.vertices.detach().cpu().numpy().astype(np.float64)
    for b in range(len(joints)):
        if not bool(fit.result.valid[b]):
            continue
        true_j, true_v = min(truths, key=lambda t: np.linalg.norm(t[0][0] - joints[b, 0]))
        mpjpes.append(float(np.linalg.norm((joints[b] - joints[b, 0]) - (true_j - true_j[0]), axis=1).mean()))
        if len(true_v) == len(vertices[b]):
            pves.append(float(np.linalg.norm((vertices[b] - joints[b, 0]) - (true_v - true_j[0]), axis=1).mean()))
    return pves, mpjpes


def process(args) -> int:
    from rclpy.serialization import deserialize_message, serialize_message
    from rosbags.rosbag2 import Writer
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
    from tqdm import tqdm

    from smplify3d_ros.conversions import ConversionError, camera_info_to_camera
    from smplify3d_ros.extrinsics import parse_static_matrix

    out = Path(args.out)
    reader = open_reader(args.input)
    if out.exists():
        reader.close()
        raise BagToolError(f"{out} exists already; rosbag2 writers never overwrite: choose a new path")
    try:
        topics = _topics(reader)
        slop_ns = int(round(args.sync_slop * 1e9))
        for label, topic in (("image", args.image_topic), ("camera_info", args.camera_info_topic),
                             ("cloud", args.cloud_topic)):
            if topic not in topics:
                raise BagToolError(f"the bag has no {label} topic {topic}; its topics: {_describe_topics(topics)} "
                                   f"(choose with --{label.replace('_', '-')}-topic)")
        image_type = topics[args.image_topic][0].msgtype
        image_cls = CompressedImage if image_type.endswith("CompressedImage") else Image
        use_observations = bool(args.observations_topic) and args.observations_topic in topics
        if not use_observations:
            if not (args.vitpose and args.cliff):
                raise BagToolError(
                    f"the bag has no observations topic {args.observations_topic or '(disabled)'} and no network "
                    "checkpoints were given: pass --vitpose CKPT --cliff CKPT (ViTPose and CLIFF weight files) or a bag "
                    f"with smplify3d_ros/ObservationArray messages (--observations-topic); its topics: "
                    f"{_describe_topics(topics)}")
            for path in (args.vitpose, args.cliff):
                if not Path(path).is_file():
                    raise BagToolError(f"no such checkpoint file: {path}")

        # ---- pass 1: stamps, camera_info, observations, truth, tf (small messages only are kept)
        store = make_typestore()
        image_stamps, cloud_stamps, first_camera_raw = [], [], None
        image_frame = cloud_frame = None
        observations, truths, transforms = [], {}, []
        index_topics = [args.image_topic, args.cloud_topic, args.camera_info_topic]
        if use_observations:
            index_topics.append(args.observations_topic)
        if args.truth_topic and args.truth_topic in topics:
            index_topics.append(args.truth_topic)
        index_topics += [t for t in (TF_STATIC, "/tf") if t in topics and topics[t][0].msgtype == TF_TYPE]
        for connection, _ts, raw in reader.messages(
                connections=[c for t in index_topics for c in topics[t]]):
            topic = connection.topic
            if topic == args.image_topic:
                stamp, image_frame = header_of(raw)
                image_stamps.append(stamp)
            elif topic == args.cloud_topic:
                stamp, cloud_frame = header_of(raw)
                cloud_stamps.append(stamp)
            elif topic == args.camera_info_topic:
                first_camera_raw = first_camera_raw or bytes(raw)
            elif use_observations and topic == args.observations_topic:
                observations.append((header_of(raw)[0], bytes(raw)))
            elif topic == args.truth_topic:
                truths[header_of(raw)[0]] = bytes(raw)
            else:
                transforms += _transforms_from_tf(store, raw)
        if not image_stamps or not cloud_stamps or first_camera_raw is None:
            raise BagToolError(f"the bag holds {len(image_stamps)} images, {len(cloud_stamps)} clouds and "
                               f"{'some' if first_camera_raw else 'no'} camera_info messages: nothing to process")
        if args.T_cam_lidar is not None:
            T_source = "--T-cam-lidar"
            values = args.T_cam_lidar
        else:
            values = lookup_transform(transforms, image_frame, cloud_frame)
            T_source = f"{TF_STATIC} ({image_frame} <- {cloud_frame})"
            if values is None:
                raise BagToolError(f"the bag has no transform from the LiDAR frame '{cloud_frame}' to the camera frame "
                                   f"'{image_frame}' on /tf_static or /tf: pass --T-cam-lidar with 16 numbers "
                                   "(row-major 4x4, p_cam = T p_lidar)")
        try:
            T = parse_static_matrix(np.asarray(values, dtype=np.float64).reshape(-1), "T_cam_lidar")
        except ValueError as error:
            raise BagToolError(str(error))
        observations.sort(key=lambda item: item[0])
        obs_stamps = [s for s, _ in observations]
        pairs = pair_stamps(image_stamps, cloud_stamps, slop_ns)
        if not pairs:
            raise BagToolError(f"no image of {args.image_topic} has a cloud of {args.cloud_topic} within "
                               f"{args.sync_slop} s (--sync-slop)")

        # ---- models
        fitter, front_ends, processor, tracker = _build_pipeline(args, use_observations)
        print(f"processing {len(pairs)} frame(s) of {args.input} on {fitter.device} with preset {args.config}; "
              f"T_cam_lidar from {T_source}; " + ("observations from the bag" if use_observations else "ViTPose + CLIFF"),
              file=sys.stderr)

        # ---- pass 2: fit the pairs
        image_for = {i: j for i, j in pairs}
        cloud_for = {j: i for i, j in pairs}
        waiting_images, waiting_clouds = {}, {}
        camera, camera_error = None, None
        n_image = n_cloud = 0
        results, skipped = [], defaultdict(int)
        stage_totals, stage_counts = defaultdict(float), defaultdict(int)
        pves, mpjpes, persons_total = [], [], 0
        with Writer(out, version=9, storage_plugin=_storage_plugin(args.storage)) as writer:
            output = writer.add_connection(args.output_topic, SMPL_ARRAY_TYPE, typestore=store)
            progress = tqdm(total=len(pairs), desc="fitting", unit="frame", disable=args.quiet)
            data_connections = [c for t in (args.image_topic, args.cloud_topic, args.camera_info_topic) for c in topics[t]]
            for connection, bag_ns, raw in reader.messages(connections=data_connections):
                topic = connection.topic
                if topic == args.camera_info_topic:
                    camera, camera_error = _camera(deserialize_message(bytes(raw), CameraInfo), camera_info_to_camera,
                                                   ConversionError)
                    continue
                if topic == args.image_topic:
                    i, n_image = n_image, n_image + 1
                    if i not in image_for:
                        continue
                    waiting_images[i] = (bytes(raw), bag_ns)
                else:
                    j, n_cloud = n_cloud, n_cloud + 1
                    if j not in cloud_for:
                        continue
                    i = cloud_for[j]
                    waiting_clouds[j] = bytes(raw)
                j = image_for[i]
                if i not in waiting_images or j not in waiting_clouds:
                    continue
                (image_raw, image_bag_ns), cloud_raw = waiting_images.pop(i), waiting_clouds.pop(j)
                if camera is None and camera_error is None:  # camera_info recorded after the first frame
                    camera, camera_error = _camera(deserialize_message(first_camera_raw, CameraInfo),
                                                   camera_info_to_camera, ConversionError)
                image_msg = deserialize_message(image_raw, image_cls)
                cloud_msg = deserialize_message(cloud_raw, PointCloud2)
                obs_msgs = None
                if use_observations:
                    obs_msgs = [deserialize_message(observations[k][1], _observation_array_class())
                                for k in _nearest(obs_stamps, image_stamps[i], slop_ns)]
                outcome = processor.process(image_msg, cloud_msg, camera if camera_error is None else None, T, obs_msgs)
                progress.update(1)
                if outcome.skip_reason:
                    skipped[camera_error or outcome.skip_reason] += 1
                    continue
                fit = outcome.fit
                message = _smpl_array(fit, image_msg.header, tracker, outcome.stage_seconds, args.publish_vertices)
                writer.write(output, image_bag_ns, serialize_message(message))
                results.append(image_stamps[i])
                persons_total += len(message.persons)
                for name, seconds in outcome.stage_seconds.items():
                    stage_totals[name] += seconds
                    stage_counts[name] += 1
                truth_raw = truths.get(image_stamps[i])
                if truth_raw is None and truths:
                    near = min(truths, key=lambda s: abs(s - image_stamps[i]))
                    truth_raw = truths[near] if abs(near - image_stamps[i]) <= slop_ns else None
                if fit is not None and truth_raw is not None:
                    from smplify3d_ros.msg import SMPLArray

                    frame_pves, frame_mpjpes = _person_errors(fit, deserialize_message(truth_raw, SMPLArray))
                    pves += frame_pves
                    mpjpes += frame_mpjpes
            progress.close()
            if args.copy_inputs:
                copies = {}
                for connection in reader.connections:
                    if connection.topic == args.output_topic:
                        continue
                    copies[connection.id] = writer.add_connection(
                        connection.topic, connection.msgtype, msgdef=connection.msgdef.data, rihs01=connection.digest,
                        offered_qos_profiles=connection.ext.offered_qos_profiles)
                for connection, bag_ns, raw in reader.messages(connections=[c for c in reader.connections if c.id in copies]):
                    writer.write(copies[connection.id], bag_ns, raw)
    finally:
        reader.close()

    summary = {
        "input": str(args.input), "output": str(out), "frames_paired": len(pairs), "frames_fitted": len(results),
        "frames_skipped": dict(skipped), "persons": persons_total,
        "mean_persons_per_frame": persons_total / len(results) if results else 0.0,
        "mean_stage_seconds": {k: stage_totals[k] / stage_counts[k] for k in stage_totals},
        "mean_pve_mm": 1000 * float(np.mean(pves)) if pves else None,
        "mean_mpjpe_mm": 1000 * float(np.mean(mpjpes)) if mpjpes else None,
        "persons_with_truth": len(mpjpes),
    }
    _print_summary(summary)
    if args.summary_json:
        Path(args.summary_json).write_text(json.dumps(summary, indent=2))
    return 0 if results else 1


def _observation_array_class():
    from smplify3d_ros.msg import ObservationArray

    return ObservationArray


def _camera(info, convert, error_type):
    try:
        return convert(info), None
    except error_type as error:
        return None, str(error)


def _smpl_array(fit, header, tracker, stage_seconds, include_vertices):
    """The node's SMPLArray of a frame (same track-id logic as smplify3d_node)."""
    from smplify3d_ros.smpl_messages import smpl_array_from_fit

    if fit is None:
        track_ids = []
    else:
        pelvis = fit.result.joints[:, 0].detach().cpu().numpy()
        track_ids = tracker.update(np.where(fit.result.valid.cpu().numpy()[:, None], pelvis, np.nan))
    return smpl_array_from_fit(None if fit is None else fit.result, header, track_ids, stage_seconds,
                               include_vertices=include_vertices)


def _build_pipeline(args, use_observations):
    from smplify3d_core.body.default_model import default_body_model_dir
    from smplify3d_core.body.model import SMPLBody
    from smplify3d_core.fit.config import load_fit_config
    from smplify3d_core.pipeline import FrontEnds, build_fitter, load_front_ends
    from smplify3d_core.tracking import PelvisTracker
    from smplify3d_ros.processing import FrameProcessor

    try:
        body = SMPLBody.from_path(args.smpl_model_path or default_body_model_dir(), gender=args.gender)
        fitter = build_fitter(body, load_fit_config(args.config), device=args.device)
        keypoints = initial_smpl = None
        if not use_observations:
            keypoints, initial_smpl = load_front_ends(args.vitpose, args.cliff, args.device)
    except (ValueError, FileNotFoundError) as error:
        raise BagToolError(str(error))
    front_ends = FrontEnds(keypoints, initial_smpl, min_keypoint_score=args.min_keypoint_score)
    processor = FrameProcessor(fitter, front_ends, args.max_persons, args.sync_slop)
    return fitter, front_ends, processor, PelvisTracker()


def _print_summary(summary: dict) -> None:
    lines = [f"frames: {summary['frames_fitted']} fitted of {summary['frames_paired']} paired",
             f"persons: {summary['persons']} ({summary['mean_persons_per_frame']:.2f} per fitted frame)"]
    for reason, count in summary["frames_skipped"].items():
        lines.append(f"skipped {count}: {reason}")
    if summary["mean_stage_seconds"]:
        lines.append("mean stage times: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in summary["mean_stage_seconds"].items()))
    if summary["mean_pve_mm"] is not None or summary["mean_mpjpe_mm"] is not None:
        pve = "n/a" if summary["mean_pve_mm"] is None else f"{summary['mean_pve_mm']:.1f} mm"
        lines.append(f"vs ground truth ({summary['persons_with_truth']} persons, pelvis-aligned): PVE {pve}, "
                     f"MPJPE {summary['mean_mpjpe_mm']:.1f} mm")
    lines.append(f"wrote {summary['output']}")
    print("\n".join(lines))


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="smplify3d-bag", description="rosbag2 tools for SMPLify-3D (sqlite3 and MCAP, no ROS install needed).",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    rec = sub.add_parser("record-sim", help="write a synthetic bag with the sim node's topics (no DDS)",
                         description="Write a synthetic rosbag2 with the topics of smplify3d_sim_node "
                                     f"({', '.join(SIM_TOPICS.values())}) and the camera-LiDAR extrinsic on "
                                     f"{TF_STATIC} (tf2_msgs/TFMessage, camera optical frame <- LiDAR frame; written "
                                     "with the rosbags type store since tf2_msgs has no Python wheel; also kept in "
                                     "the bag metadata as custom_data smplify3d.T_cam_lidar). Header stamps = bag "
                                     "times = start + i / rate.")
    rec.add_argument("out", help="output bag folder (must not exist)")
    rec.add_argument("--frames", type=int, default=10, help="frames to write (default 10)")
    rec.add_argument("--rate", type=float, default=2.0, help="frames per second of bag time (default 2)")
    rec.add_argument("--persons", type=int, default=3, help="persons per frame (default 3)")
    rec.add_argument("--preset", choices=["humanm3", "sloper4d"], default="humanm3", help="sensor preset")
    rec.add_argument("--seed", type=int, default=0, help="seed of the first scene (scene k uses seed + k)")
    rec.add_argument("--scenes", type=int, default=3,
                     help="distinct scenes cycled through, as the sim node does (default 3)")
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
                                     "keep-last 1. Topics whose type has no Python package here are skipped (tf2_msgs "
                                     "is not on PyPI: give the node its static T_cam_lidar parameter). Arguments after "
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
    pro.add_argument("--config", default="humanm3", help="fit preset name or YAML (default humanm3)")
    pro.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    pro.add_argument("--vitpose", default=None, metavar="CKPT", help="ViTPose checkpoint (when the bag has no observations)")
    pro.add_argument("--cliff", default=None, metavar="CKPT", help="CLIFF checkpoint (when the bag has no observations)")
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
    pro.add_argument("--max-persons", type=int, default=8)
    pro.add_argument("--min-keypoint-score", type=float, default=0.3)
    pro.add_argument("--smpl-model-path", default="")
    pro.add_argument("--gender", default="neutral")
    pro.add_argument("--publish-vertices", action="store_true", help="include the 6890 vertices in each SMPL message")
    pro.add_argument("--copy-inputs", action="store_true", help="copy all input topics into the output bag")
    pro.add_argument("--storage", choices=["mcap", "sqlite3"], default="mcap", help="output storage (default mcap)")
    pro.add_argument("--summary-json", default=None, help="also write the summary to this JSON file")
    pro.add_argument("--quiet", action="store_true", help="no progress bar")
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
