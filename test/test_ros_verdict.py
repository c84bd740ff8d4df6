"""The verdict over ROS: smplify3d_node (its own process, real DDS) publishes a body fitted with a wrong
camera_info as ``valid: false`` with its flag, and draws invalid bodies as its ``invalid_markers``
parameter says.

Inputs: one simulated 320x180 frame with one person 4-5 m away, in observations mode (keypoints and
initial estimates come on the observations topic: no networks), sent first with a camera_info whose
focal length is 1000x too large, then with the right one.
"""
import sys
import subprocess
import time
from types import SimpleNamespace

import numpy as np
import pytest
from ros_processes import isolated_ros_env, stop_process

rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")

from std_msgs.msg import Header  # noqa: E402

from smplify3d_core.fit.verdict import FLAGS  # noqa: E402
from smplify3d_ros.markers import INVALID_COLOR, markers_for_fit, track_color  # noqa: E402

NODE = "/smplify3d_node"
TOPICS = {"image": "/vd/image", "info": "/vd/camera_info", "cloud": "/vd/points", "obs": "/vd/observations"}
FIT_TIMEOUT_S = 180.0  # start-up (models), discovery and a fit on a loaded 2-core machine: a limit, not a speed


# ----------------------------------------------------------------------------------------- markers
def _result(valid, fitted, vertex_count=4):
    vertices = np.stack([np.full((vertex_count, 3), float(b + 1)) for b in range(len(valid))])
    if not all(fitted):
        vertices[[b for b, f in enumerate(fitted) if not f]] = np.nan
    return SimpleNamespace(vertices=vertices, valid=np.array(valid), fitted=np.array(fitted))


FACES = np.array([[0, 1, 2], [1, 2, 3]])


def _colors(markers):
    return {m.id: (m.color.r, m.color.g, m.color.b, m.color.a) for m in markers.markers if m.action == m.ADD}


def test_invalid_bodies_are_hidden_by_default():
    result = _result([True, False, False], [True, True, False])
    markers, ids = markers_for_fit(result, FACES, [7, 8, 9], Header(frame_id="cam"))
    assert ids == {7} and list(_colors(markers)) == [7]
    assert _colors(markers)[7] == pytest.approx(track_color(7))
    # the next frame with nobody deletes the valid body's marker
    markers, ids = markers_for_fit(None, FACES, [], Header(frame_id="cam"), previous_ids=ids)
    assert ids == set() and [(m.id, m.action) for m in markers.markers] == [(7, markers.markers[0].DELETE)]


def test_invalid_bodies_are_grey_when_asked_and_unfitted_ones_never_drawn():
    result = _result([True, False, False], [True, True, False])
    markers, ids = markers_for_fit(result, FACES, [7, 8, 9], Header(frame_id="cam"), invalid="grey")
    colors = _colors(markers)
    assert ids == {7, 8} and sorted(colors) == [7, 8]
    assert colors[7] == pytest.approx(track_color(7)) and colors[8] == pytest.approx(INVALID_COLOR)
    with pytest.raises(ValueError, match="hide, grey"):
        markers_for_fit(result, FACES, [7, 8, 9], Header(frame_id="cam"), invalid="red")


# ------------------------------------------------------------------------------- the node over DDS
@pytest.fixture(scope="module")
def world(smpl_body):
    from smplify3d_core.sim.presets import get_preset
    from smplify3d_core.sim.scene import simulate_scene

    preset = get_preset("humanm3").with_changes(
        image_width=320, image_height=180, focal_px=1400.0 / 6, lidar_beams=40, lidar_azimuth_res_deg=0.5,
        background_objects=0, distance_range=(4.0, 5.0))
    frame = simulate_scene(smpl_body, persons=1, preset=preset, seed=1).frame
    assert len(frame.persons) == 1 and frame.persons[0].init is not None
    return frame


@pytest.fixture(scope="module")
def node_process(world):
    env = isolated_ros_env(30)
    T = world.T_cam_lidar.reshape(-1).tolist()
    params = {"image_topic": TOPICS["image"], "camera_info_topic": TOPICS["info"], "cloud_topic": TOPICS["cloud"],
              "observations_topic": TOPICS["obs"], "extrinsics_source": "static", "reliable_inputs": "true",
              "T_cam_lidar": "[" + ", ".join(f"{v:.9f}" for v in T) + "]", "device": "cpu", "preset": "humanm3",
              "invalid_markers": "grey"}
    args = [sys.executable, "-m", "smplify3d_ros.node", "--ros-args"]
    for name, value in params.items():
        args += ["-p", f"{name}:={value}"]
    process = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    yield process, env
    print("node log:\n" + stop_process(process))


class Driver:
    """Publishes the frame into the node's topics; records ~/smpl and ~/markers."""

    def __init__(self, context, world):
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2
        from visualization_msgs.msg import MarkerArray

        from smplify3d_ros.msg import ObservationArray, SMPLArray

        self.world = world
        self.node = rclpy.create_node("verdict_driver", context=context)
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.pub = {"image": self.node.create_publisher(Image, TOPICS["image"], qos),
                    "info": self.node.create_publisher(CameraInfo, TOPICS["info"], qos),
                    "cloud": self.node.create_publisher(PointCloud2, TOPICS["cloud"], qos),
                    "obs": self.node.create_publisher(ObservationArray, TOPICS["obs"], qos)}
        self.results, self.markers = [], []
        self.sub = [self.node.create_subscription(SMPLArray, f"{NODE}/smpl", self.results.append, 10),
                    self.node.create_subscription(MarkerArray, f"{NODE}/markers", self.markers.append, 10)]
        self.executor = rclpy.executors.SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)

    def spin_until(self, predicate, timeout, what, process):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.1)
            if predicate():
                return
            assert process.poll() is None, "the node exited early"
        raise AssertionError(f"gave up after {timeout:.0f} s waiting for {what}")

    def send(self, stamp, focal_scale=1.0):
        """camera_info (focal length times ``focal_scale``), then observations, image and cloud stamped ``stamp``."""
        from sensor_msgs.msg import CameraInfo

        from smplify3d_ros.conversions import array_to_image, xyz_to_pointcloud2
        from smplify3d_ros.smpl_messages import observations_to_message
        from smplify3d_ros.stamps import seconds_to_stamp

        cam = self.world.camera
        K = cam.K.copy()
        K[0, 0] *= focal_scale
        K[1, 1] *= focal_scale
        header = Header(stamp=seconds_to_stamp(stamp), frame_id="camera_optical")
        self.pub["info"].publish(CameraInfo(header=header, width=cam.width, height=cam.height, distortion_model="plumb_bob",
                                            k=K.reshape(-1).tolist(), d=[0.0] * 5))
        end = time.monotonic() + 0.5  # the camera_info first: the node reads the latest one when it fits
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.05)
        self.pub["obs"].publish(observations_to_message(self.world.persons, header))
        self.pub["image"].publish(array_to_image(self.world.image, "rgb8", header=header))
        self.pub["cloud"].publish(xyz_to_pointcloud2(self.world.cloud_lidar, frame_id="lidar", stamp=stamp))

    def result_and_markers(self, stamp, process):
        from smplify3d_ros.stamps import stamp_to_seconds

        def at(msg_stamp):
            return abs(stamp_to_seconds(msg_stamp) - stamp) < 1e-6

        self.spin_until(lambda: any(at(m.header.stamp) for m in self.results)
                        and any(m.markers and at(m.markers[0].header.stamp) for m in self.markers),
                        FIT_TIMEOUT_S, f"the result and markers of frame {stamp:.3f}", process)
        result = next(m for m in self.results if at(m.header.stamp))
        markers = next(m for m in self.markers if m.markers and at(m.markers[0].header.stamp))
        return result, markers


def test_a_wrong_focal_length_is_published_invalid_with_its_flag(node_process, world):
    import os

    process, env = node_process
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=int(env["ROS_DOMAIN_ID"]))
    try:
        driver = Driver(context, world)
        driver.spin_until(lambda: all(p.get_subscription_count() > 0 for p in driver.pub.values())
                          and all(s.get_publisher_count() > 0 for s in driver.sub), FIT_TIMEOUT_S, "DDS discovery",
                          process)
        bad_stamp = time.time()
        driver.send(bad_stamp, focal_scale=1000.0)
        bad, bad_markers = driver.result_and_markers(bad_stamp, process)
        assert len(bad.persons) == 1
        person = bad.persons[0]
        assert not person.valid and "reprojection_error_high" in person.flags, list(person.flags)
        assert person.reprojection_error_px > 1000.0
        assert np.isfinite(person.height_m) and np.isfinite(person.range_m)
        grey = [m for m in bad_markers.markers if m.action == m.ADD]
        assert len(grey) == 1 and grey[0].id == person.track_id  # invalid_markers: grey
        assert (grey[0].color.r, grey[0].color.g, grey[0].color.b, grey[0].color.a) == pytest.approx(INVALID_COLOR)

        good_stamp = time.time()
        driver.send(good_stamp)
        good, good_markers = driver.result_and_markers(good_stamp, process)
        assert len(good.persons) == 1
        person = good.persons[0]
        assert person.valid and not set(person.flags) & set(FLAGS.values()), list(person.flags)
        assert 0.0 <= person.point_residual_m < 0.08 and abs(person.depth_offset_m) < 0.35
        assert 1.3 < person.height_m < 2.15 and 3.0 < person.range_m < 7.0
        drawn = {m.id: m for m in good_markers.markers if m.action == m.ADD}
        color = drawn[person.track_id].color
        assert (color.r, color.g, color.b, color.a) == pytest.approx(track_color(person.track_id))
    finally:
        driver.node.destroy_node()
        rclpy.shutdown(context=context)
