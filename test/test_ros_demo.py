"""``smplify3d-ros-demo`` end to end: the simulator and the node as processes, an MCAP of the outputs."""
import os
import re
import subprocess
import sys

import pytest
from ros_processes import ros_domain_id

pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")
pytest.importorskip("rosbags", reason="rosbags is not installed")


def test_demo_runs_prints_a_summary_and_writes_a_self_describing_mcap(tmp_path, body_model_dir):
    out = tmp_path / "demo"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    process = subprocess.run([sys.executable, "-m", "smplify3d_ros.demo", "--seconds", "4", "--out", str(out),
                              "--domain-id", str(ros_domain_id(4))],
                             env=env, capture_output=True, text=True, timeout=300)
    print(process.stdout[-4000:], process.stderr[-4000:])
    assert process.returncode == 0, process.stderr[-3000:]
    match = re.search(r"summary: frames processed (\d+), dropped while busy (\d+), skipped (\d+)", process.stdout)
    assert match, process.stdout[-2000:]
    assert int(match.group(1)) >= 1
    frame_lines = [line for line in process.stdout.splitlines() if line.startswith("frame ")]
    assert frame_lines and all("latency" in line and "total" in line for line in frame_lines)
    accuracy = re.search(r"mean PVE \(pelvis-aligned\) ([\d.]+) mm, mean absolute pelvis error ([\d.]+) mm",
                         process.stdout)
    assert accuracy, process.stdout[-2000:]
    assert float(accuracy.group(1)) < 80.0 and float(accuracy.group(2)) < 200.0

    assert list((out / "bag").glob("*.mcap")), list((out / "bag").iterdir())
    from rosbags.highlevel import AnyReader

    # the bag alone describes the package's types: AnyReader builds them from the stored definitions
    with AnyReader([out / "bag"]) as reader:
        types = {c.topic: c.msgtype for c in reader.connections}
        assert types["/smplify3d_node/smpl"] == "smplify3d_ros/msg/SMPLArray"
        assert types["/smplify3d_sim_node/ground_truth"] == "smplify3d_ros/msg/SMPLArray"
        assert types["/smplify3d_node/markers"] == "visualization_msgs/msg/MarkerArray"
        results = [reader.deserialize(raw, c.msgtype) for c, _, raw in reader.messages()
                   if c.topic == "/smplify3d_node/smpl"]
    assert len(results) == len(frame_lines)
    assert any(len(r.persons) == 2 and len(r.persons[0].joints) == 24 for r in results)


def test_sequence_options_and_identity_pairing():
    """--moving-robot: a sequence, the node tracking in odom with the slow tracker; fitted persons are paired
    one-to-one with the nearest true pelvis within the radius; the identity switches count id changes."""
    from geometry_msgs.msg import Point

    from smplify3d_core.eval.motion import identity_switches
    from smplify3d_ros.demo import SEQUENCE_TRACKER_SECONDS, node_parameters, parse_args, percentiles, true_person_ids
    from smplify3d_ros.msg import SMPL, SMPLArray

    args = parse_args(["--moving-robot", "--persons", "3"])
    sim, node = node_parameters(args)
    assert sim["sequence"] == "true" and sim["moving_robot"] == "true" and node["tracking_frame"] == "odom"
    assert node["tracker.max_age"] == SEQUENCE_TRACKER_SECONDS and "tracker.max_warm_gap" not in node
    sim, node = node_parameters(parse_args(["--sequence", "--warm-gap", "2.5", "--tracker-seconds", "4"]))
    assert node["tracker.max_warm_gap"] == 2.5 and node["tracker.max_age"] == 4.0
    with pytest.raises(SystemExit):
        parse_args(["--warm-gap", "-1"])
    sim, node = node_parameters(parse_args([]))  # a still-robot sequence by default
    assert sim["sequence"] == "true" and sim["moving_robot"] == "false" and "scenes" not in sim
    assert "tracking_frame" not in node and node["tracker.max_age"] == SEQUENCE_TRACKER_SECONDS
    sim, node = node_parameters(parse_args(["--random-scenes", "--scenes", "4"]))
    assert sim["sequence"] == "false" and sim["scenes"] == 4
    assert "tracking_frame" not in node and "tracker.max_age" not in node
    for conflicting in (["--random-scenes", "--moving-robot"], ["--random-scenes", "--sequence"]):
        with pytest.raises(SystemExit):
            parse_args(conflicting)

    def array(*persons):
        return SMPLArray(persons=[SMPL(track_id=i, joints=[Point(x=x, y=0.0, z=5.0)] * 24) for i, x in persons])

    truth = array((0, 0.0), (1, 1.0), (2, 3.0))
    frames = [true_person_ids(array((7, 0.1), (8, 0.9)), truth),    # p0 -> 7, p1 -> 8
              true_person_ids(array((7, 1.05), (8, 0.05), (9, 9.0)), truth)]  # swapped; 9 matches nobody
    assert frames == [{0: 7, 1: 8}, {0: 8, 1: 7}]
    assert identity_switches(frames) == 2
    assert true_person_ids(array(), truth) == {}
    assert percentiles([]) == "n/a" and percentiles([1.0, 2.0, 3.0]).startswith("p50 2.000 s")
