"""Tracking on the bag path: a simulated sequence bag from a driving robot (``record-sim --sequence
--moving-robot``: /tf odom -> camera per frame), fitted offline by ``smplify3d-bag process
--tracking-frame odom --target-frame odom`` and played into the live node with the same settings.

* offline: the bodies are in odom next to the true ones (pelvis within 0.3 m: invalid fits
  included), each true person keeps one track id over the sequence (no identity switch), the first
  frame is fitted cold and the last one warm;
* live: the node, fed frame by frame (slow playback, so it fits every frame and its tracker sees what
  the offline run saw), publishes the same track ids, warm starts and meshes (within 1 mm).
"""
import subprocess
import sys
import time

import numpy as np
import pytest
from ros_processes import isolated_ros_env, start_node_when_heard, start_player, stop_process

rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")
pytest.importorskip("rosbags", reason="rosbags is not installed")

from smplify3d_ros.extrinsics import builtin_tf_available  # noqa: E402

pytestmark = pytest.mark.skipif(not builtin_tf_available(), reason="tf2_msgs is not importable (scripts/build_msgs.sh)")

SALT = 48  # ros_domain_id salt of this module (see ros_processes)
SIM = "/smplify3d_sim_node"
NODE = "/smplify3d_node"
FRAMES, PERSONS, SEED, RATE, START = 6, 2, 5, 10.0, 1000.0
#: playback speed: one bag frame (0.1 s) every 5 s, longer than a fit takes here, so the node drops none
PLAY_RATE = 0.02


@pytest.fixture(scope="module")
def env(body_model_dir):
    return isolated_ros_env(SALT)


def _bag(args, env, timeout=300):
    return subprocess.run([sys.executable, "-m", "smplify3d_ros.bag", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def _arrays(path, topic):
    """{stamp ns: SMPLArray} of ``topic`` in the bag at ``path``."""
    from rclpy.serialization import deserialize_message
    from rosbags.rosbag2 import Reader

    from smplify3d_ros.msg import SMPLArray

    with Reader(path) as reader:
        connections = [c for c in reader.connections if c.topic == topic]
        messages = [deserialize_message(bytes(raw), SMPLArray) for _, _, raw in reader.messages(connections=connections)]
    return {m.header.stamp.sec * 10**9 + m.header.stamp.nanosec: m for m in messages}


def _odom_poses(path):
    """{header stamp ns: T_odom_cam (4, 4)} from the bag's /tf (logged just before the frame's messages)."""
    from rosbags.rosbag2 import Reader

    from smplify3d_ros.bag_io import TF_TYPE, lookup_transform, make_typestore, transforms_from_tf

    store = make_typestore()
    poses = {}
    with Reader(path) as reader:
        connections = [c for c in reader.connections if c.topic == "/tf"]
        for _, _, raw in reader.messages(connections=connections):
            stamp = store.deserialize_cdr(bytes(raw), TF_TYPE).transforms[0].header.stamp
            poses[stamp.sec * 10**9 + stamp.nanosec] = lookup_transform(transforms_from_tf(store, raw), "odom",
                                                                        "camera_optical")
    return poses


def _xyz(points):
    return np.array([[p.x, p.y, p.z] for p in points], dtype=np.float64).reshape(-1, 3)


@pytest.fixture(scope="module")
def sequence(env, tmp_path_factory):
    """(bag path, {stamp: offline SMPLArray}) of a recorded and processed sequence."""
    root = tmp_path_factory.mktemp("sequence")
    bag, out = root / "bag", root / "fits"
    run = _bag(["record-sim", str(bag), "--sequence", "--moving-robot", "--frames", str(FRAMES), "--persons",
                str(PERSONS), "--seed", str(SEED), "--rate", str(RATE), "--start-time", str(START), "--quiet"], env)
    assert run.returncode == 0, run.stderr
    run = _bag(["process", str(bag), str(out), "--device", "cpu", "--quiet", "--publish-vertices",
                "--tracking-frame", "odom", "--target-frame", "odom"], env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"frames: {FRAMES} fitted of {FRAMES} paired" in run.stdout, run.stdout
    return bag, _arrays(out, f"{NODE}/smpl")


def test_process_tracks_in_odom_with_stable_ids(sequence):
    from smplify3d_core.eval.motion import identity_switches

    bag, offline = sequence
    truths, poses = _arrays(bag, f"{SIM}/ground_truth"), _odom_poses(bag)
    assert sorted(offline) == sorted(truths) and len(offline) == FRAMES
    assignments = []
    for stamp in sorted(offline):
        result, T = offline[stamp], poses[stamp]
        assert result.header.frame_id == "odom" and len(result.persons) == len(truths[stamp].persons) == PERSONS
        true_pelvis = {t.track_id: T[:3, :3] @ _xyz(t.joints)[0] + T[:3, 3] for t in truths[stamp].persons}
        frame = {}
        for person in result.persons:
            distances = {k: np.linalg.norm(_xyz(person.joints)[0] - p) for k, p in true_pelvis.items()}
            nearest = min(distances, key=distances.get)
            assert distances[nearest] < 0.3, f"pelvis {distances[nearest]:.3f} m from the truth in odom"
            frame[nearest] = person.track_id
        assert len(frame) == PERSONS, frame  # one fitted person per true person
        assignments.append(frame)
    assert identity_switches(assignments) == 0, assignments
    first, last = offline[min(offline)], offline[max(offline)]
    assert not any(p.warm_started for p in first.persons) and all(p.track_age_s == 0.0 for p in first.persons)
    assert all(p.warm_started for p in last.persons), [(p.track_id, p.warm_started, p.valid) for p in last.persons]
    assert all(abs(p.track_age_s - (FRAMES - 1) / RATE) < 1e-6 for p in last.persons)


def test_play_into_the_tracking_node_gives_the_offline_tracks_and_meshes(sequence, env):
    from smplify3d_ros.msg import SMPLArray

    bag, offline = sequence
    params = {"image_topic": f"{SIM}/image", "camera_info_topic": f"{SIM}/camera_info", "cloud_topic": f"{SIM}/points",
              "observations_topic": f"{SIM}/observations", "reliable_inputs": "true", "device": "cpu",
              "publish_markers": "false", "publish_vertices": "true", "tracking_frame": "odom",
              "target_frame": "odom", "tf_timeout": 3.0,
              # frames come 1 / (RATE * PLAY_RATE) = 5 s apart: each waits for the next, as offline (fixed-lag output)
              "output_hold": 10.0}
    args = [sys.executable, "-m", "smplify3d_ros.node", "--ros-args"]
    for name, value in params.items():
        args += ["-p", f"{name}:={value}"]
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=int(env["ROS_DOMAIN_ID"]))
    node = player = None
    listener = rclpy.create_node("bag_tracking_listener", context=context)
    try:
        results = {}
        subscription = listener.create_subscription(
            SMPLArray, f"{NODE}/smpl", lambda m: results.__setitem__(m.header.stamp.sec * 10**9 + m.header.stamp.nanosec,
                                                                     m), 10)
        executor = rclpy.executors.SingleThreadedExecutor(context=context)
        executor.add_node(listener)
        node = start_node_when_heard(args, env, executor, subscription)
        player = start_player(bag, PLAY_RATE, env, extra_wait_topics=["/tf"])
        deadline = time.monotonic() + 120
        while len(results) < FRAMES and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
            assert node.poll() is None, "the node exited early"
        player_log = stop_process(player)
        assert sorted(results) == sorted(offline), f"{len(results)} of {FRAMES} frames fitted live\n{player_log}"
        for stamp, live in results.items():
            reference = offline[stamp]
            assert live.header.frame_id == "odom"
            assert [(p.track_id, p.warm_started) for p in live.persons] == \
                [(p.track_id, p.warm_started) for p in reference.persons]
            for a, b in zip(live.persons, reference.persons):
                np.testing.assert_allclose(_xyz(a.vertices), _xyz(b.vertices), atol=1e-3)  # 1 mm
                np.testing.assert_allclose(_xyz(a.joints), _xyz(b.joints), atol=1e-3)
    finally:
        logs = [stop_process(p) for p in (player, node) if p is not None]
        print("\n".join(log[-3000:] for log in logs))
        listener.destroy_node()
        rclpy.shutdown(context=context)
