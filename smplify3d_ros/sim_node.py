"""``smplify3d_sim_node``: a synthetic camera + LiDAR for weight-free runs, demos and tests.

Publishes, at ``rate`` Hz, the frames of the project's simulator: ``~/image`` (Image rgb8),
``~/camera_info``, ``~/points`` (PointCloud2 in the LiDAR frame), ``~/observations``
(ObservationArray: simulated keypoints and image-only initial estimates, standing in for a 2D
detector and CLIFF) and ``~/ground_truth`` (SMPLArray of the true bodies). The camera-LiDAR
extrinsic (camera_frame <- lidar_frame) goes to /tf_static (unless ``publish_tf`` is false),
with tf2_ros when it is installed, else with a plain tf2_msgs/TFMessage publisher; it is also the
``T_cam_lidar`` the main node can be given as a static parameter.

By default (``sequence: true``) it publishes a simulated sequence
(:class:`~smplify3d_core.sim.sequence.SequencePlan`: the same people moving smoothly, stable
tracking ids ``p0``, ``p1``, ... in the observations and the ground truth): the k-th timer tick
publishes plan frame k (plan time k / ``rate``; header stamps = the node clock when published), for
ever, and ``odom_frame -> camera_frame`` (the frame's T_odom_cam, same stamp) on /tf (unless
``publish_tf`` is false: then neither /tf nor /tf_static is published). With
``moving_robot: true`` the rig drives (0.5 m/s, back and forth along a gentle arc). Rendering a
frame takes about 1–2.5 s on one CPU core (humanm3 sensor preset, 5 persons), so the ticks run late
when ``rate`` asks for more; the plan time still advances by 1 / ``rate`` per published frame.
With ``sequence: false`` it cycles through ``scenes`` independent random frames instead (seeds
``seed`` ... ``seed + scenes - 1``): no motion, nothing to track.
"""
from __future__ import annotations

import rclpy  # noqa: F401  (first: the wheels' bootstrapper sets up the library path)

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from smplify3d_ros.conversions import array_to_image, xyz_to_pointcloud2
from smplify3d_ros.spin import spin_until_signal


def sim_frame_messages(frame, stamp, camera_frame: str, lidar_frame: str) -> dict:
    """The messages of one simulated frame, all with the same stamp.

    Returns {"image", "camera_info", "points", "observations", "ground_truth"} -> rclpy message;
    the image and camera_info are in ``camera_frame``, the cloud in ``lidar_frame``. Used by the
    node's timer and by ``smplify3d-bag record-sim``. The messages' ``track_id`` is a number: a
    sequence's person ``"p<k>"`` gets ``k`` (stable over the sequence), ids ``"0"``, ``"1"`` ... theirs.
    """
    from smplify3d_ros.smpl_messages import observations_to_message, truth_to_smpl_array

    frame = _numeric_ids(frame)

    image = array_to_image(frame.image, "rgb8")
    image.header.stamp, image.header.frame_id = stamp, camera_frame
    info = CameraInfo(width=frame.camera.width, height=frame.camera.height, distortion_model="plumb_bob",
                      k=frame.camera.K.reshape(-1).tolist(), d=[0.0] * 5,
                      p=np.hstack([frame.camera.K, np.zeros((3, 1))]).reshape(-1).tolist())
    info.r = np.eye(3).reshape(-1).tolist()
    info.header.stamp, info.header.frame_id = stamp, camera_frame
    cloud = xyz_to_pointcloud2(frame.cloud_lidar, frame_id=lidar_frame, stamp=stamp)
    return {"image": image, "camera_info": info, "points": cloud,
            "observations": observations_to_message(frame.persons, image.header),
            "ground_truth": truth_to_smpl_array(frame.truth, image.header)}


def _numeric_ids(frame):
    """``frame`` with the sequence ids ``"p<k>"`` of its persons and truth renamed ``"<k>"`` (the
    messages carry numeric track ids); the frame itself when it has none."""
    import dataclasses
    import re

    def numeric(tid: str) -> str:
        return tid[1:] if re.fullmatch(r"p\d+", str(tid)) else str(tid)

    truth = frame.truth or {}
    if not any(numeric(p.tracking_id) != p.tracking_id for p in frame.persons) and all(numeric(k) == k for k in truth):
        return frame
    persons = [dataclasses.replace(p, tracking_id=numeric(p.tracking_id)) for p in frame.persons]
    renamed = {numeric(k): dataclasses.replace(t, tracking_id=numeric(k)) for k, t in truth.items()}
    return dataclasses.replace(frame, persons=persons, truth=renamed if frame.truth is not None else None)


class SimulatedSensorNode(Node):
    """Publishes the frames of a simulated sequence one after the other (``sequence: true``, the
    default), or cycles through ``scenes`` random frames (seeds seed..seed+scenes-1, ``sequence: false``)."""

    def __init__(self, **kwargs) -> None:
        super().__init__("smplify3d_sim_node", **kwargs)
        defaults = {"rate": 2.0, "persons": 3, "sensor": "humanm3", "seed": 0, "scenes": 3,
                    "camera_frame": "camera_optical", "lidar_frame": "lidar", "publish_tf": True,
                    "sequence": True, "moving_robot": False, "odom_frame": "odom"}
        for name, value in defaults.items():
            self.declare_parameter(name, value)
        p = {name: self.get_parameter(name).value for name in defaults}
        self.params = p

        from smplify3d_core.body.default_model import default_body_model_dir
        from smplify3d_core.body.model import SMPLBody
        from smplify3d_core.sim.presets import get_preset
        from smplify3d_core.sim.scene import simulate_scene
        from smplify3d_core.sim.sequence import SequencePlan, SequenceSettings

        body = SMPLBody.from_path(default_body_model_dir())
        self.T_cam_lidar = get_preset(p["sensor"]).T_cam_lidar
        self.plan = None
        self.scenes = []
        self._tf_broadcaster = None
        if p["sequence"]:
            self.plan = SequencePlan(SequenceSettings(persons=int(p["persons"]), frames=0, fps=float(p["rate"]),
                                                      preset=p["sensor"], seed=int(p["seed"]),
                                                      moving_robot=bool(p["moving_robot"])), body)
            if p["publish_tf"]:
                self._tf_broadcaster = self._make_tf_broadcaster()
        else:
            self.scenes = [simulate_scene(body, persons=int(p["persons"]), preset=p["sensor"], seed=int(p["seed"]) + i)
                           for i in range(int(p["scenes"]))]
        self.body = body
        from smplify3d_ros.msg import ObservationArray, SMPLArray

        self.image_pub = self.create_publisher(Image, "~/image", 5)
        self.info_pub = self.create_publisher(CameraInfo, "~/camera_info", 5)
        self.cloud_pub = self.create_publisher(PointCloud2, "~/points", 5)
        self.obs_pub = self.create_publisher(ObservationArray, "~/observations", 5)
        self.truth_pub = self.create_publisher(SMPLArray, "~/ground_truth", 5)
        if p["publish_tf"]:
            self._publish_static_tf()
        self.index = 0
        self.create_timer(1.0 / float(p["rate"]), self._tick)
        what = (f"a simulated {p['sensor']} sequence ({'moving' if p['moving_robot'] else 'still'} robot)" if self.plan
                else f"{len(self.scenes)} simulated {p['sensor']} frames")
        self.get_logger().info(f"publishing {what} of {p['persons']} persons at {p['rate']} Hz")

    def _publish_static_tf(self) -> None:
        """The camera <- LiDAR extrinsic on /tf_static: with tf2_ros's StaticTransformBroadcaster when
        importable, else with a publisher of tf2_msgs/TFMessage of the same QoS (reliable, transient
        local, keep last 1), so that late subscribers get it too."""
        from geometry_msgs.msg import TransformStamped

        from smplify3d_ros.conversions import matrix_to_transform

        message = TransformStamped()
        message.header.stamp = self.get_clock().now().to_msg()
        message.header.frame_id = self.params["camera_frame"]
        message.child_frame_id = self.params["lidar_frame"]
        message.transform = matrix_to_transform(self.T_cam_lidar)
        try:
            import tf2_ros

            self._tf = tf2_ros.StaticTransformBroadcaster(self)
            self._tf.sendTransform(message)
            return
        except ImportError:
            pass
        try:
            from tf2_msgs.msg import TFMessage
        except ImportError:
            self.get_logger().warning("neither tf2_ros nor tf2_msgs is installed: no /tf_static (run "
                                      "scripts/build_msgs.sh, or give the main node the static T_cam_lidar parameter)")
            return
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

        qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self._tf = self.create_publisher(TFMessage, "/tf_static", qos)
        self._tf.publish(TFMessage(transforms=[message]))

    def _make_tf_broadcaster(self):
        """Something with ``sendTransform(TransformStamped)`` for /tf: tf2_ros's TransformBroadcaster
        when importable, else a tf2_msgs/TFMessage publisher on /tf; None without either."""
        try:
            import tf2_ros

            return tf2_ros.TransformBroadcaster(self)
        except ImportError:
            pass
        try:
            from tf2_msgs.msg import TFMessage
        except ImportError:
            self.get_logger().warning("neither tf2_ros nor tf2_msgs is installed: no odom -> camera on /tf")
            return None
        publisher = self.create_publisher(TFMessage, "/tf", 100)

        class _Broadcaster:
            def sendTransform(self, message) -> None:  # noqa: N802 (tf2_ros's name)
                publisher.publish(TFMessage(transforms=[message]))

        return _Broadcaster()

    def _tick(self) -> None:
        import time

        stamp = self.get_clock().now().to_msg()
        if self.plan is not None:
            start = time.perf_counter()
            item = self.plan.simulate_frame(self.index)
            if self.index == 0:
                self.get_logger().info(f"simulated sequence frame 0 in {time.perf_counter() - start:.2f} s")
            frame = item.scene.frame
            self._send_odom_tf(item.T_odom_cam, stamp)
        else:
            frame = self.scenes[self.index % len(self.scenes)].frame
        self.index += 1
        messages = sim_frame_messages(frame, stamp, self.params["camera_frame"], self.params["lidar_frame"])
        self.info_pub.publish(messages["camera_info"])
        self.obs_pub.publish(messages["observations"])
        self.truth_pub.publish(messages["ground_truth"])
        self.image_pub.publish(messages["image"])
        self.cloud_pub.publish(messages["points"])

    def _send_odom_tf(self, T_odom_cam, stamp) -> None:
        """odom_frame -> camera_frame (the camera's pose in odom) on /tf, stamped ``stamp``."""
        if self._tf_broadcaster is None:
            return
        from geometry_msgs.msg import TransformStamped

        from smplify3d_ros.conversions import matrix_to_transform

        message = TransformStamped()
        message.header.stamp = stamp
        message.header.frame_id = self.params["odom_frame"]
        message.child_frame_id = self.params["camera_frame"]
        message.transform = matrix_to_transform(T_odom_cam)
        self._tf_broadcaster.sendTransform(message)


def main(args=None) -> int:
    rclpy.init(args=args)
    node = SimulatedSensorNode()
    return spin_until_signal(node)


if __name__ == "__main__":
    raise SystemExit(main())
