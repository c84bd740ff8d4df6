"""The node's front-end settings reach the estimators: over real DDS, the node (its own process) loads
ViTPose and CLIFF from checkpoint files in the published layouts, runs them itself on a frame, and
says which ones it runs in its start-up log and on /diagnostics."""
import signal
import subprocess
import time

import numpy as np
import pytest
import torch
from ros_processes import NODE, LineReader, Listener, isolated_ros_env, start_ros_module, wait_for

rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")

TOPICS = {"image": "/front_ends_test/image", "camera_info": "/front_ends_test/camera_info",
          "points": "/front_ends_test/points"}
EXPECTED = "ViTPose-S (flip test off), CLIFF-Res50"


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Random-weight ViTPose-S (mmpose 1.x layout: {"meta", "state_dict"}) and CLIFF-Res50 (the CLIFF
    release layout: {"model": {"module." + name: tensor}}) files."""
    from smplify3d_core.perception.cliff import CLIFF
    from smplify3d_core.perception.vitpose import build_vitpose

    folder = tmp_path_factory.mktemp("front_ends")
    torch.manual_seed(0)
    vitpose, cliff = folder / "td-hm_ViTPose-small_8xb64-210e_coco-256x192.pth", folder / "res50-test.pt"
    torch.save({"meta": {"epoch": 210, "mmpose_version": "1.0.0"}, "state_dict": build_vitpose("s").state_dict()},
               vitpose)
    torch.save({"model": {"module." + k: v for k, v in CLIFF("res50").state_dict().items()}}, cliff)
    return vitpose, cliff


@pytest.fixture(scope="module")
def frame(smpl_body):
    """One simulated person on a small image (the networks' crops are the same size whatever the image)."""
    from smplify3d_core.sim.presets import get_preset
    from smplify3d_core.sim.scene import simulate_scene

    small = get_preset("humanm3").with_changes(name="small", image_width=640, image_height=360, focal_px=470.0,
                                               lidar_beams=64, lidar_azimuth_res_deg=0.25)
    return simulate_scene(smpl_body, persons=1, preset=small, seed=4).frame


def _node_params(vitpose, cliff, T_cam_lidar) -> dict:
    return {"image_topic": TOPICS["image"], "camera_info_topic": TOPICS["camera_info"],
            "cloud_topic": TOPICS["points"], "extrinsics_source": "static", "reliable_inputs": "true",
            "T_cam_lidar": "[" + ", ".join(f"{v:.9f}" for v in np.asarray(T_cam_lidar).reshape(-1)) + "]",
            "device": "cpu", "preset": "humanm3", "vitpose_checkpoint": str(vitpose), "cliff_checkpoint": str(cliff),
            "flip_test": "false",
            # random heatmaps are flat (mean score ~0.06): keep the person so that CLIFF and the fit run
            "min_keypoint_score": "0.0", "publish_markers": "false"}


def test_node_runs_and_names_the_checkpoints_front_ends(checkpoints, frame, body_model_dir, monkeypatch):
    """No observations topic: the node finds the person (LiDAR proposal), runs ViTPose and CLIFF on it and
    fits it; the result (valid or not: the weights are random) comes back for the frame."""
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2

    from smplify3d_ros.sim_node import sim_frame_messages

    env = isolated_ros_env(49)
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")  # this process's participant too
    listener = Listener(env)  # the node's ~/smpl and /diagnostics, spun on a thread
    sender = rclpy.create_node("front_ends_sender", context=listener.context)
    publishers = {name: sender.create_publisher(kind, TOPICS[name], 10)
                  for name, kind in (("image", Image), ("camera_info", CameraInfo), ("points", PointCloud2))}
    process = start_ros_module("smplify3d_ros.node", _node_params(*checkpoints, frame.T_cam_lidar), env)
    reader = LineReader(process)
    sent = set()

    def up(check):
        assert process.poll() is None, "the node exited:\n" + "".join(reader.lines)[-3000:]
        return check()

    def answered():
        return [r for r in listener.results if (r.header.stamp.sec, r.header.stamp.nanosec) in sent]

    try:
        wait_for(lambda: up(lambda: all(p.get_subscription_count() > 0 for p in publishers.values())
                            and listener.node.count_publishers(f"{NODE}/smpl") > 0), 90, "the node to be active")
        for _ in range(3):  # one frame; sent again (new stamp) only if the node never answered it
            stamp = sender.get_clock().now().to_msg()
            messages = sim_frame_messages(frame, stamp, "camera", "lidar")
            publishers["camera_info"].publish(messages["camera_info"])
            time.sleep(0.5)
            publishers["image"].publish(messages["image"])
            publishers["points"].publish(messages["points"])
            sent.add((stamp.sec, stamp.nanosec))
            deadline = time.monotonic() + 25
            while time.monotonic() < deadline and not up(answered):
                time.sleep(0.05)
            if answered():
                break
        assert answered(), f"no ~/smpl for the frame; node log:\n{''.join(reader.lines)[-3000:]}"
        assert len(answered()[0].persons) >= 1  # the proposal, its ViTPose keypoints and CLIFF estimate, fitted
        # /diagnostics (once a second) after the frame: the front-ends, and the seconds of both networks
        wait_for(lambda: any("seconds_initial_smpl" in values for _, _, values in listener.statuses), 10,
                 lambda: f"/diagnostics with the frame's stage times; last: {listener.statuses[-1:]}")
        values = [values for _, _, values in listener.statuses if "seconds_initial_smpl" in values][-1]
        assert values["front_ends"] == EXPECTED
        assert float(values["seconds_keypoints"]) > 0 and float(values["seconds_initial_smpl"]) > 0
    finally:
        process.send_signal(signal.SIGTERM)  # the reader owns the node's output: end the node, then collect it
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log = reader.text()
        sender.destroy_node()
        listener.close()
    assert f"front-ends: {EXPECTED}" in log, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
