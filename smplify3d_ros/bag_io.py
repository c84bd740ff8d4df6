"""What the bag tools share: topic names, the rosbags type store, CDR header peeking, /tf_static in bags,
opening readers. No command logic here.
"""
from __future__ import annotations

import rclpy  # noqa: F401  (first: the wheels' bootstrapper sets up the library path)

import importlib
import struct
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


def storage_plugin(name: str):
    from rosbags.rosbag2 import StoragePlugin

    return {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}[name]


def transient_local_qos():
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    zero = QosTime(0, 0)
    return [Qos(QosHistory.KEEP_LAST, 1, QosReliability.RELIABLE, QosDurability.TRANSIENT_LOCAL, zero, zero,
                QosLiveliness.AUTOMATIC, zero, False)]


def tf_message_cdr(store, T: np.ndarray, stamp_ns: int, parent: str, child: str) -> bytes:
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


def transforms_from_tf(store, raw) -> list:
    """[(parent, child, 4x4 T_parent_child)] of a serialized tf2_msgs/TFMessage."""
    from geometry_msgs.msg import Quaternion, Transform, Vector3

    from smplify3d_ros.conversions import transform_to_matrix

    out = []
    for item in store.deserialize_cdr(bytes(raw), TF_TYPE).transforms:
        tr, q = item.transform.translation, item.transform.rotation
        msg = Transform(translation=Vector3(x=tr.x, y=tr.y, z=tr.z), rotation=Quaternion(x=q.x, y=q.y, z=q.z, w=q.w))
        out.append((item.header.frame_id.lstrip("/"), item.child_frame_id.lstrip("/"), transform_to_matrix(msg)))
    return out


def add_tf_to_buffer(buffer, store, raw, static: bool) -> None:
    """Store every transform of a serialized tf2_msgs/TFMessage in ``buffer`` (a
    :class:`~smplify3d_ros.tf_buffer.TfBuffer`) at its header stamp; ``static``: from /tf_static."""
    for item in store.deserialize_cdr(bytes(raw), TF_TYPE).transforms:
        tr, q = item.transform.translation, item.transform.rotation
        stamp_ns = int(item.header.stamp.sec) * 1_000_000_000 + int(item.header.stamp.nanosec)
        buffer.set_transform(item.header.frame_id, item.child_frame_id, (tr.x, tr.y, tr.z), (q.x, q.y, q.z, q.w),
                             stamp_ns, static=static)


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


def topics_of(reader) -> dict:
    topics = defaultdict(list)
    for connection in reader.connections:
        topics[connection.topic].append(connection)
    return topics


def describe_topics(topics: dict) -> str:
    return ", ".join(f"{topic} ({conns[0].msgtype})" for topic, conns in sorted(topics.items())) or "none"
