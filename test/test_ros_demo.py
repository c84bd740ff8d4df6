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
