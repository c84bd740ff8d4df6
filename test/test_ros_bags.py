"""``smplify3d-bag``: record-sim, process and play, and the round trip bag -> live node == offline process."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from ros_processes import finish_process, isolated_ros_env, start_node_when_heard, start_player, stop_process

rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")
pytest.importorskip("rosbags", reason="rosbags is not installed")

from smplify3d_core.sim.presets import get_preset  # noqa: E402

SIM = "/smplify3d_sim_node"
NODE = "/smplify3d_node"
FRAMES, SCENES, PERSONS, SEED, RATE, START = 4, 2, 2, 5, 1.0, 1000.0
TOPICS = {f"{SIM}/image": "sensor_msgs/msg/Image", f"{SIM}/camera_info": "sensor_msgs/msg/CameraInfo",
          f"{SIM}/points": "sensor_msgs/msg/PointCloud2", f"{SIM}/observations": "smplify3d_ros/msg/ObservationArray",
          f"{SIM}/ground_truth": "smplify3d_ros/msg/SMPLArray", "/tf_static": "tf2_msgs/msg/TFMessage"}


@pytest.fixture(scope="module")
def env(body_model_dir):
    return isolated_ros_env(7)


def _bag(args, env, timeout=120):
    return subprocess.run([sys.executable, "-m", "smplify3d_ros.bag", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def _messages(path, topic=None):
    """[(connection, bag time ns, raw)] of a bag, in order."""
    from rosbags.rosbag2 import Reader

    with Reader(path) as reader:
        connections = [c for c in reader.connections if topic is None or c.topic == topic]
        return [(c, t, bytes(raw)) for c, t, raw in reader.messages(connections=connections)]


def _stamp_ns(header):
    return _ns(header.stamp)


def _ns(time_msg):
    return time_msg.sec * 1_000_000_000 + time_msg.nanosec


def _xyz(points):
    return np.array([[p.x, p.y, p.z] for p in points], dtype=np.float64).reshape(-1, 3)


@pytest.fixture(scope="module")
def bags(tmp_path_factory, env):
    root = tmp_path_factory.mktemp("bags")
    paths = {}
    for storage, frames in (("mcap", FRAMES), ("sqlite3", 2)):
        paths[storage] = root / f"sim_{storage}"
        run = _bag(["record-sim", str(paths[storage]), "--frames", str(frames), "--random-scenes", "--scenes", str(SCENES),
                    "--persons", str(PERSONS), "--seed", str(SEED), "--rate", str(RATE), "--start-time", str(START),
                    "--storage", storage, "--quiet"], env)
        assert run.returncode == 0, run.stderr
    return paths


@pytest.fixture(scope="module")
def processed(bags, env, tmp_path_factory):
    out = tmp_path_factory.mktemp("processed") / "fits"
    summary = out.parent / "summary.json"
    run = _bag(["process", str(bags["mcap"]), str(out), "--device", "cpu", "--publish-vertices", "--quiet",
                "--summary-json", str(summary)], env, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    from rclpy.serialization import deserialize_message

    from smplify3d_ros.msg import SMPLArray

    results = {}
    for connection, bag_ns, raw in _messages(out):
        assert connection.topic == f"{NODE}/smpl" and connection.msgtype == "smplify3d_ros/msg/SMPLArray"
        message = deserialize_message(raw, SMPLArray)
        assert _stamp_ns(message.header) == bag_ns
        results[bag_ns] = message
    return results, json.loads(summary.read_text()), run.stdout


def test_record_sim_writes_readable_mcap_and_sqlite3_bags(bags, smpl_body):
    from rclpy.serialization import deserialize_message
    from rosbags.rosbag2 import Reader
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore
    from sensor_msgs.msg import Image

    from smplify3d_core.sim.scene import simulate_scene
    from smplify3d_ros.bag_io import lookup_transform, make_typestore, transforms_from_tf
    from smplify3d_ros.conversions import image_to_rgb8

    for storage, frames in (("mcap", FRAMES), ("sqlite3", 2)):
        with Reader(bags[storage]) as reader:
            assert {c.topic: c.msgtype for c in reader.connections} == TOPICS
            counts = {c.topic: c.msgcount for c in reader.connections}
            assert counts == {**{t: frames for t in TOPICS}, "/tf_static": 1}
            # self-describing: the custom types come from the definitions stored in the bag
            store = get_typestore(Stores.EMPTY)
            for connection in reader.connections:
                store.register(get_types_from_msg(connection.msgdef.data, connection.msgtype))
            for connection, bag_ns, raw in reader.messages():
                message = store.deserialize_cdr(raw, connection.msgtype)
                if connection.topic != "/tf_static":
                    assert message.header.stamp.sec * 10**9 + message.header.stamp.nanosec == bag_ns
                if connection.topic == f"{SIM}/ground_truth":
                    assert len(message.persons) == PERSONS and len(message.persons[0].vertices) == 6890
    stamps = [t for _, t, _ in _messages(bags["mcap"], f"{SIM}/image")]
    assert stamps == [int(START * 1e9) + i * int(1e9 / RATE) for i in range(FRAMES)]

    scene = simulate_scene(smpl_body, persons=PERSONS, preset="humanm3", seed=SEED)
    _, _, raw = _messages(bags["sqlite3"], f"{SIM}/image")[0]
    image = deserialize_message(raw, Image)
    assert (image.height, image.width, image.encoding) == (*scene.frame.image.shape[:2], "rgb8")
    np.testing.assert_array_equal(image_to_rgb8(image), scene.frame.image)
    # frame 2 cycles back to scene 0 (--scenes 2), like the sim node
    _, _, raw2 = _messages(bags["mcap"], f"{SIM}/image")[2]
    np.testing.assert_array_equal(image_to_rgb8(deserialize_message(raw2, Image)), scene.frame.image)

    _, _, tf_raw = _messages(bags["mcap"], "/tf_static")[0]
    T = lookup_transform(transforms_from_tf(make_typestore(), tf_raw), "camera_optical", "lidar")
    np.testing.assert_allclose(T, get_preset("humanm3").T_cam_lidar, atol=1e-9)


def test_process_writes_accurate_smpl_results(bags, processed):
    from rclpy.serialization import deserialize_message

    from smplify3d_ros.msg import SMPLArray

    results, summary, stdout = processed
    truths = {t: deserialize_message(raw, SMPLArray) for _, t, raw in _messages(bags["mcap"], f"{SIM}/ground_truth")}
    assert sorted(results) == sorted(truths) and len(results) == FRAMES
    assert summary["frames_fitted"] == FRAMES and summary["persons"] == FRAMES * PERSONS
    assert "stage2" in summary["mean_stage_seconds"] and "PVE" in stdout
    pves = []
    for stamp, result in results.items():
        truth = truths[stamp]
        assert len(result.persons) == len(truth.persons) == PERSONS
        assert "stage2" in result.stage_names
        for person in result.persons:
            assert person.valid and len(person.vertices) == 6890
            joints, vertices = _xyz(person.joints), _xyz(person.vertices)
            best = min(truth.persons, key=lambda t: np.linalg.norm(_xyz(t.joints)[0] - joints[0]))
            true_j, true_v = _xyz(best.joints), _xyz(best.vertices)
            pves.append(np.linalg.norm((vertices - joints[0]) - (true_v - true_j[0]), axis=1).mean())
    assert np.mean(pves) < 0.08, f"PVE {np.mean(pves) * 1000:.1f} mm"
    assert summary["mean_pve_mm"] == pytest.approx(np.mean(pves) * 1000, abs=0.5)
    # frames 0 and 2 are the same scene: the offline fit is deterministic
    stamps = sorted(results)
    np.testing.assert_array_equal(_xyz(results[stamps[0]].persons[0].joints), _xyz(results[stamps[2]].persons[0].joints))


def test_play_into_a_live_node_gives_the_same_results_as_process(bags, processed, env):
    from rosgraph_msgs.msg import Clock

    from smplify3d_ros.msg import SMPLArray

    offline, _, _ = processed
    # the extrinsic comes from the bag's /tf_static, played with tf2_msgs (built into the venv when no
    # ROS distro provides it), through the node's TF listener: extrinsics_source tf, the default
    params = {
        "image_topic": f"{SIM}/image", "camera_info_topic": f"{SIM}/camera_info", "cloud_topic": f"{SIM}/points",
        "observations_topic": f"{SIM}/observations", "reliable_inputs": "true", "device": "cpu",
        "publish_markers": "false",  # the default preset, as in process
    }
    args = [sys.executable, "-m", "smplify3d_ros.node", "--ros-args"]
    for name, value in params.items():
        args += ["-p", f"{name}:={value}"]
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=int(env["ROS_DOMAIN_ID"]))
    node = player = None
    try:
        listener = rclpy.create_node("bag_round_trip_listener", context=context)
        results, clocks = [], []
        subscription = listener.create_subscription(SMPLArray, f"{NODE}/smpl", results.append, 10)
        listener.create_subscription(Clock, "/clock", clocks.append, 10)
        executor = rclpy.executors.SingleThreadedExecutor(context=context)
        executor.add_node(listener)
        node = start_node_when_heard(args, env, executor, subscription)
        player = start_player(bags["mcap"], 0.5, env)
        deadline = time.monotonic() + 90
        finished = None
        while time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
            if len({_stamp_ns(r.header) for r in results}) == FRAMES:
                break
            if finished is None and player.poll() is not None:
                finished = time.monotonic()
            if finished is not None and time.monotonic() > finished + 10:  # the node's last frame has had its time
                break
            assert node.poll() is None, "the node exited early"
        player_log = finish_process(player)  # it has published everything by now: its exit status is its own
        assert player.returncode == 0, player_log
        assert f"published {5 * FRAMES + 1} messages on 6 topics" in player_log, player_log  # with /tf_static
        matched = [r for r in results if _stamp_ns(r.header) in offline]
        assert len(matched) >= 2, f"{len(results)} live results, {len(matched)} matching stamps\n{player_log}"
        for live in matched:
            reference = offline[_stamp_ns(live.header)]
            assert len(live.persons) == len(reference.persons) == PERSONS
            for a, b in zip(live.persons, reference.persons):
                np.testing.assert_allclose(_xyz(a.joints), _xyz(b.joints), atol=1e-4)
                np.testing.assert_allclose(a.body_pose, b.body_pose, atol=1e-3)
        print(f"{len(matched)} of {FRAMES} frames fitted live; equal to the offline results")
        assert clocks and all(int(START * 1e9) <= _ns(c.clock) <= int(START * 1e9) + FRAMES * 10**9 for c in clocks)
    finally:
        logs = [stop_process(p) for p in (player, node) if p is not None]
        print("\n".join(logs))
        listener.destroy_node()
        rclpy.shutdown(context=context)


def test_play_stops_on_sigterm(bags, env):
    import threading

    player = subprocess.Popen([sys.executable, "-u", "-m", "smplify3d_ros.bag", "play", str(bags["sqlite3"]), "--loop"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines, started = [], threading.Event()

    def read():
        for line in player.stdout:
            lines.append(line)
            if line.startswith("playing"):
                started.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert started.wait(timeout=30), "the player did not start within 30 s:\n" + "".join(lines)
        assert player.poll() is None, "".join(lines)
    finally:
        if player.poll() is None:
            player.send_signal(signal.SIGTERM)
        try:
            player.wait(timeout=10)
        except subprocess.TimeoutExpired:
            player.kill()
            player.wait()
        reader.join(timeout=5)
    assert player.returncode == 0, "".join(lines)
    assert "(stopped)" in "".join(lines)


def test_process_reports_bad_input(tmp_path, env):
    run = _bag(["process", str(tmp_path / "missing_bag"), str(tmp_path / "out")], env)
    assert run.returncode == 2 and "no such bag" in run.stderr and "missing_bag" in run.stderr

    from rclpy.serialization import serialize_message
    from rosbags.rosbag2 import StoragePlugin, Writer
    from sensor_msgs.msg import CameraInfo

    from smplify3d_ros.bag_io import make_typestore

    bag = tmp_path / "no_image"
    with Writer(bag, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        connection = writer.add_connection("/cam/info", "sensor_msgs/msg/CameraInfo", typestore=make_typestore())
        writer.write(connection, 1, serialize_message(CameraInfo()))
    run = _bag(["process", str(bag), str(tmp_path / "out")], env)
    assert run.returncode == 2
    assert f"no image topic {SIM}/image" in run.stderr and "/cam/info (sensor_msgs/msg/CameraInfo)" in run.stderr
    assert "--image-topic" in run.stderr and not (tmp_path / "out").exists()


def test_record_sim_sequence_writes_odom_tf_and_stable_ids(tmp_path, env, smpl_body):
    from rclpy.serialization import deserialize_message

    from smplify3d_core.sim.sequence import SequencePlan, SequenceSettings
    from smplify3d_ros.bag_io import TF_TYPE, lookup_transform, make_typestore, transforms_from_tf
    from smplify3d_ros.bag_record import TF_LEAD_NS
    from smplify3d_ros.msg import ObservationArray, SMPLArray

    bag, frames, rate = tmp_path / "sequence", 3, 10.0
    run = _bag(["record-sim", str(bag), "--sequence", "--moving-robot", "--frames", str(frames), "--persons", "3",
                "--seed", str(SEED), "--rate", str(rate), "--start-time", str(START), "--quiet"], env, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "sequence frames (moving robot)" in run.stdout
    from rosbags.rosbag2 import Reader

    with Reader(bag) as reader:
        assert {c.topic: c.msgtype for c in reader.connections} == {**TOPICS, "/tf": "tf2_msgs/msg/TFMessage"}
        settings = json.loads(reader.metadata["custom_data"]["smplify3d.sequence"])
    assert settings["moving_robot"] is True and settings["persons"] == 3 and settings["fps"] == rate
    plan = SequencePlan(SequenceSettings(persons=3, fps=rate, seed=SEED, moving_robot=True), smpl_body)
    store = make_typestore()
    tfs = _messages(bag, "/tf")
    stamps = [int(START * 1e9) + i * int(1e9 / rate) for i in range(frames)]
    assert [t for _, t, _ in tfs] == [s - TF_LEAD_NS for s in stamps]  # logged just before the frame's messages
    headers = [store.deserialize_cdr(bytes(raw), TF_TYPE).transforms[0].header.stamp for _, _, raw in tfs]
    assert [h.sec * 10**9 + h.nanosec for h in headers] == stamps
    for i, (_, _, raw) in enumerate(tfs):
        T = lookup_transform(transforms_from_tf(store, raw), "odom", "camera_optical")
        np.testing.assert_allclose(T, plan.T_odom_cam(i / rate), atol=1e-6)
    assert not np.allclose(lookup_transform(transforms_from_tf(store, tfs[0][2]), "odom", "camera_optical"),
                           lookup_transform(transforms_from_tf(store, tfs[-1][2]), "odom", "camera_optical"))
    # ground truth and observations: person "p<k>" is track k in every frame; the truth is the plan's
    truths = [deserialize_message(raw, SMPLArray) for _, _, raw in _messages(bag, f"{SIM}/ground_truth")]
    observations = [deserialize_message(raw, ObservationArray) for _, _, raw in _messages(bag, f"{SIM}/observations")]
    for i, (truth, seen) in enumerate(zip(truths, observations)):
        ids = sorted(p.track_id for p in truth.persons)
        assert ids == sorted(p.track_id for p in seen.persons) and set(ids) <= {0, 1, 2} and ids
        for person in truth.persons:
            pelvis_cam = np.array([person.joints[0].x, person.joints[0].y, person.joints[0].z])
            T = plan.T_odom_cam(i / rate)
            np.testing.assert_allclose(T[:3, :3] @ pelvis_cam + T[:3, 3], plan.pelvis_odom(f"p{person.track_id}", i / rate),
                                       atol=1e-4)
