"""The package's ROS 2 messages (smplify3d_ros/SMPL, SMPLArray): built, filled from a real fit,
CDR round trip, and one publish/receive over DDS between two nodes of this process."""
import dataclasses
import time

import numpy as np
import pytest
from ros_processes import ros_domain_id

rclpy = pytest.importorskip("rclpy", reason="rclpy is not importable (ROS 2 wheels not installed: bash scripts/setup.sh)")
from rclpy.serialization import deserialize_message, serialize_message  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

# rclpy is there: the messages must be too (scripts/build_msgs.sh) — fail, do not skip, when not.
from smplify3d_ros.msg import SMPL, SMPLArray  # noqa: E402
from smplify3d_ros.smpl_messages import (  # noqa: E402
    joints_from_smpl,
    params_from_smpl,
    smpl_array_from_fit,
    smpl_from_fit,
    stage_seconds_from_array,
    vertices_from_smpl,
)

from smplify3d_core.fit.config import FitConfig  # noqa: E402
from smplify3d_core.models import build_fitter  # noqa: E402
from smplify3d_core.pipeline import fit_frame  # noqa: E402
from smplify3d_core.sim.scene import simulate_scene  # noqa: E402

TRACK_IDS = [7, 42]
# The generated messages import rosidl_generator_py, whose parser (lark-parser 0.12) imports the
# deprecated sre_parse/sre_constants modules: not this project's warning.
pytestmark = pytest.mark.filterwarnings("ignore:module 'sre_(parse|constants)' is deprecated:DeprecationWarning")


@pytest.fixture(scope="module")
def frame_fit(smpl_body):
    """A real (short) fit of two simulated persons."""
    config = FitConfig.preset("demo")
    config = dataclasses.replace(
        config,
        icp=dataclasses.replace(config.icp, iterations=10),
        stage1=dataclasses.replace(config.stage1, iterations=3),
        stage2=dataclasses.replace(config.stage2, iterations=5),
        stage3=dataclasses.replace(config.stage3, iterations=3),
    )
    scene = simulate_scene(smpl_body, persons=2, preset="humanm3", seed=3)
    return fit_frame(scene.frame, build_fitter(smpl_body, config, device="cpu"))


@pytest.fixture(scope="module")
def header():
    msg = Header(frame_id="camera_optical_frame")
    msg.stamp.sec, msg.stamp.nanosec = 1_700_000_000, 123_456_789
    return msg


@pytest.fixture(scope="module")
def array_msg(frame_fit, header):
    return smpl_array_from_fit(frame_fit.result, header, track_ids=TRACK_IDS, include_vertices=True)


def _check_array(msg, result, header):
    """``msg`` holds ``result``'s persons with the given header, ids and timings (float32 precision)."""
    assert msg.header.frame_id == header.frame_id
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (header.stamp.sec, header.stamp.nanosec)
    assert len(msg.persons) == result.global_orient.shape[0] == len(TRACK_IDS)
    for b, person in enumerate(msg.persons):
        assert person.track_id == TRACK_IDS[b]
        assert person.header.frame_id == header.frame_id and person.header.stamp.sec == header.stamp.sec
        assert (len(person.global_orient), len(person.body_pose), len(person.betas), len(person.joints)) == (3, 69, 10, 24)
        params = params_from_smpl(person)
        np.testing.assert_allclose(params.global_orient, result.global_orient[b].numpy(), atol=1e-6)
        np.testing.assert_allclose(params.body_pose, result.body_pose[b].numpy(), atol=1e-6)
        np.testing.assert_allclose(params.betas, result.betas[b].numpy(), atol=1e-6)
        np.testing.assert_allclose(params.transl, result.transl[b].numpy(), atol=1e-9)
        np.testing.assert_allclose(joints_from_smpl(person), result.joints[b].numpy(), atol=1e-9)
        vertices = vertices_from_smpl(person)
        assert vertices.shape == tuple(result.vertices[b].shape)
        np.testing.assert_allclose(vertices, result.vertices[b].numpy(), atol=1e-9)
        np.testing.assert_allclose(person.reprojection_error_px, float(result.reprojection_error_px[b]), rtol=1e-6,
                                   atol=1e-6)  # px
        np.testing.assert_allclose(person.chamfer_m2, float(result.chamfer_m2[b]), rtol=1e-6, atol=1e-12)  # m^2
        assert person.lidar_point_count == int(result.lidar_point_count[b])
        assert list(person.visible_body_parts) == list(result.visible_parts[b])
        assert person.valid == bool(result.valid[b])
        assert list(person.flags) == list(result.flags[b])
    timings = stage_seconds_from_array(msg)
    assert list(timings) == list(result.stage_seconds)
    np.testing.assert_allclose(list(timings.values()), list(result.stage_seconds.values()), rtol=1e-6, atol=1e-9)  # s


def test_array_from_a_real_fit(array_msg, frame_fit, header):
    result = frame_fit.result
    assert result.valid.all() and result.lidar_point_count.min() > 0, "the simulated persons should be fitted"
    assert {"stage1", "stage2", "stage3"} <= set(result.stage_seconds)
    _check_array(array_msg, result, header)
    assert array_msg.persons[0].header is not array_msg.header  # copies, not one shared object


def test_serialization_round_trip(array_msg, frame_fit, header):
    data = serialize_message(array_msg)
    back = deserialize_message(data, SMPLArray)
    _check_array(back, frame_fit.result, header)
    assert back == array_msg
    # without vertices the message is small (the vertices are ~160 kB per person)
    light = smpl_array_from_fit(frame_fit.result, header, track_ids=TRACK_IDS)
    assert all(len(p.vertices) == 0 for p in light.persons)
    assert len(serialize_message(light)) < 4_000 < len(data)


def test_conversions_reject_bad_input(frame_fit, header):
    with pytest.raises(IndexError):
        smpl_from_fit(frame_fit.result, 5, track_id=0)
    with pytest.raises(ValueError):
        smpl_from_fit(frame_fit.result, 0, track_id=-1)
    with pytest.raises(ValueError):
        smpl_array_from_fit(frame_fit.result, header, track_ids=[1])
    empty = smpl_array_from_fit(None, header, stage_seconds={"proposals": 0.01})
    assert len(empty.persons) == 0 and stage_seconds_from_array(empty) == {"proposals": pytest.approx(0.01)}
    assert SMPL().joints[0].x == 0.0 and len(SMPL().vertices) == 0  # defaults of the generated message


def test_publish_and_receive_over_dds(array_msg, frame_fit, header, monkeypatch):
    """One SMPLArray from a publisher node to a subscriber node in this process (real DDS)."""
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSDurabilityPolicy, QoSProfile, QoSReliabilityPolicy

    # Read by rclpy.init: keep DDS on loopback, on a domain of its own (not a robot's).
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    monkeypatch.setenv("ROS_DOMAIN_ID", str(ros_domain_id(1)))
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        qos = QoSProfile(depth=1, reliability=QoSReliabilityPolicy.RELIABLE, durability=QoSDurabilityPolicy.VOLATILE)
        sender = rclpy.create_node("smpl_sender", context=context)
        receiver = rclpy.create_node("smpl_receiver", context=context)
        received = []
        receiver.create_subscription(SMPLArray, "/smplify3d/test_persons", received.append, qos)
        publisher = sender.create_publisher(SMPLArray, "/smplify3d/test_persons", qos)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(sender)
        executor.add_node(receiver)

        deadline = time.monotonic() + 60.0  # only stops the wait: discovery is quick even on a loaded machine
        while publisher.get_subscription_count() < 1 and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        assert publisher.get_subscription_count() >= 1, "the subscriber was never matched (waited 60 s)"
        publisher.publish(array_msg)
        deadline = time.monotonic() + 60.0
        while not received and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        assert received, "the published SMPLArray never arrived (waited 60 s after matching)"
        _check_array(received[0], frame_fit.result, header)
        executor.shutdown()
        sender.destroy_node()
        receiver.destroy_node()
    finally:
        rclpy.shutdown(context=context)
