"""Live tracking in a fixed frame, over real DDS, with the sim node and the node as their own processes.

The sim node plays a sequence with a driving robot (``moving_robot``): ``odom -> camera_optical`` on
/tf per frame, ``camera_optical <- lidar`` on /tf_static. The node runs in observations mode with
``tracking_frame: odom`` and ``target_frame: odom``:

* its SMPLArrays and markers are in ``odom``; the fitted pelvises lie next to the true ones moved into
  odom with the sim's /tf of the same stamp (a body left in the camera frame would be metres off);
* the track ids of consecutive outputs carry over, and warm-started fits appear; /diagnostics count
  the tracks (tracks_alive, track_births, warm_fits, cold_fits);
* without /tf (the sim's ``publish_tf: false``, the extrinsic given as a parameter) every frame is
  skipped with a reason naming odom and the camera frame, and nothing is published.

The tracker's time limits are widened to the pace of this machine: the simulator renders a frame in
1-2 s and a cold fit of two persons takes 3-7 s on a loaded 2-core CPU, so the node fits a frame every
few seconds (the tracker's association gate widens with the time a track went unseen).
"""
import numpy as np
import pytest
from ros_processes import NODE, SIM, Listener, isolated_ros_env, node_params, start_ros_module, stop_process, wait_for

rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")

from smplify3d_ros.extrinsics import builtin_tf_available  # noqa: E402

pytestmark = pytest.mark.skipif(not builtin_tf_available(), reason="tf2_msgs is not importable (scripts/build_msgs.sh)")

SALT_TRACKING = 46  # ros_domain_id salts of this module (see ros_processes)
SALT_NO_TF = 47
WAIT_S = 240.0
#: the tracker at this machine's pace: a track outlives several seconds between fitted frames and is still fitted warm
SLOW_TRACKER = {"tracker.max_age": 60.0, "tracker.max_warm_gap": 60.0, "tracker.max_distance": 2.0}


def sequence_sim(**extra):
    return {"sequence": "true", "moving_robot": "true", "rate": 1.0, "persons": 2, "seed": 1, **extra}


class TrackingListener(Listener):
    """Listener plus the sim's ground truth and odom -> camera (by stamp) and the node's marker frames."""

    def __init__(self, env):
        super().__init__(env)
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from tf2_msgs.msg import TFMessage
        from visualization_msgs.msg import MarkerArray

        from smplify3d_ros.msg import SMPLArray

        self.truths, self.odom, self.marker_frames = {}, {}, set()
        self.node.create_subscription(SMPLArray, f"{SIM}/ground_truth",
                                      lambda m: self.truths.__setitem__(_key(m.header.stamp), m), 10)
        self.node.create_subscription(TFMessage, "/tf", self._on_tf,
                                      QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
        self.node.create_subscription(MarkerArray, f"{NODE}/markers", lambda m: self.marker_frames.update(
            marker.header.frame_id for marker in m.markers if marker.action == marker.ADD), 10)

    def _on_tf(self, msg):
        from smplify3d_ros.conversions import transform_to_matrix

        for item in msg.transforms:
            if item.header.frame_id == "odom" and item.child_frame_id == "camera_optical":
                self.odom[_key(item.header.stamp)] = transform_to_matrix(item.transform)

    def fitted(self):
        return [r for r in list(self.results) if r.persons]

    def diagnostics(self):
        return self.statuses[-1][2] if self.statuses else {}


def _key(stamp):
    return stamp.sec, stamp.nanosec


def _pelvis(person):
    return np.array([person.joints[0].x, person.joints[0].y, person.joints[0].z])


def test_tracks_in_odom_with_a_moving_robot(body_model_dir):
    env = isolated_ros_env(SALT_TRACKING)
    listener = TrackingListener(env)
    sim = start_ros_module("smplify3d_ros.sim_node", sequence_sim(), env)
    node = start_ros_module("smplify3d_ros.node", node_params(extrinsics_source="tf", tracking_frame="odom",
                                                              target_frame="odom", **SLOW_TRACKER), env)
    try:
        def progress():
            return (f"4 fitted frames with a warm start (got {len(listener.fitted())} fitted; node: "
                    f"{listener.diagnostics()})")

        wait_for(lambda: len(listener.fitted()) >= 4 and any(p.warm_started for r in listener.fitted()
                                                              for p in r.persons), WAIT_S, progress)
        fitted = listener.fitted()
        assert all(r.header.frame_id == "odom" and all(p.header.frame_id == "odom" for p in r.persons) for r in fitted)
        ids = [{p.track_id for p in r.persons} for r in fitted]
        assert all(a & b for a, b in zip(ids, ids[1:])), f"track ids did not carry over: {ids}"
        checked = 0
        for result in fitted:
            truth, T_odom_cam = listener.truths.get(_key(result.header.stamp)), listener.odom.get(_key(result.header.stamp))
            if truth is None or T_odom_cam is None:
                continue
            true_pelvises = [T_odom_cam[:3, :3] @ _pelvis(t) + T_odom_cam[:3, 3] for t in truth.persons]
            for person in result.persons:
                error = min(np.linalg.norm(_pelvis(person) - p) for p in true_pelvises)
                assert error < 0.3, f"pelvis {error:.2f} m from the nearest true one in odom (track {person.track_id})"
                checked += 1
        assert checked >= 2, "no output met its ground truth and /tf"
        wait_for(lambda: int(listener.diagnostics().get("warm_fits", 0)) >= 1, 10.0, "warm_fits on /diagnostics")
        values = listener.diagnostics()
        assert int(values["tracks_alive"]) >= 1 and int(values["track_births"]) >= 1, values
        assert int(values["cold_fits"]) >= 1 and "restarts" in values and "track_deaths" in values, values
        assert not any(k.startswith("skipped: tracking_frame") for k in values), values
        assert listener.marker_frames == {"odom"}, listener.marker_frames
    finally:
        listener.close()
        node_log = stop_process(node)
        stop_process(sim)
    assert "tracking_frame odom: camera -> it from TF" in node_log, node_log[-3000:]


def test_without_odom_transform_frames_are_skipped_naming_the_frames(body_model_dir):
    env = isolated_ros_env(SALT_NO_TF)
    listener = TrackingListener(env)
    sim = start_ros_module("smplify3d_ros.sim_node", sequence_sim(publish_tf="false"), env)
    node = start_ros_module("smplify3d_ros.node", node_params(tracking_frame="odom", publish_markers="false"), env)
    try:
        def skips():
            return sum(int(v) for k, v in listener.diagnostics().items()
                       if k.startswith("skipped: tracking_frame odom: TF missing: odom <- camera_optical"))

        wait_for(lambda: skips() >= 2, WAIT_S, lambda: f"two frames skipped for odom (node: {listener.diagnostics()})")
        assert not listener.fitted(), "a body was published without the tracking frame's transform"
        assert int(listener.diagnostics()["processed"]) == 0
    finally:
        listener.close()
        node_log = stop_process(node)
        stop_process(sim)
    lines = [line for line in node_log.splitlines() if "frame skipped" in line]
    assert lines and "odom <- camera_optical" in lines[0], node_log[-3000:]
    assert "a TF listener of its own" in node_log, node_log[-3000:]
