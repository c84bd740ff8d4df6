"""smplify3d_node as its own process through signals and a publisher that dies: the exit code and log
of a shutdown in every phase (start-up, idle, mid-fit), and recovery when the sensors come back.

The node runs in observations mode on the simulator node's topics (no network weights). A listener
in the test process (its own rclpy context on the test's DDS domain) reads /diagnostics, the node's
~/smpl and the simulator's images. The waits' timeouts only stop a test when something never
happens; the seconds a shutdown took are printed, not asserted (machines differ in speed).
"""
import signal
import time

import pytest
import yaml
from ros_processes import (Listener, LineReader, assert_clean_exit, isolated_ros_env, node_params, seconds_of,
                           sim_params, start_ros_module, stop_process, wait_for)

rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")

#: Salts of ros_domain_id (see ros_processes): one per test here.
SALTS = {"fit_SIGTERM": 40, "fit_SIGINT": 41, "start-up": 42, "idle": 43, "sim_killed": 44}


@pytest.fixture
def processes():
    """Started processes, stopped (SIGTERM, then SIGKILL) after the test."""
    started = []
    yield started
    for process in started:
        if process.poll() is None:
            stop_process(process)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_during_a_long_fit_cancels_it_and_exits_0(tmp_path, processes, body_model_dir, sig):
    """A fit preset with a million stage-2 steps (the fit would take hours): once the worker is busy,
    SIGTERM or SIGINT ends the process with exit code 0, no abort and no traceback."""
    from smplify3d_core.fit.config import config_dir

    preset = yaml.safe_load((config_dir() / "humanm3.yaml").read_text())
    preset["stage2"]["iterations"] = 1_000_000
    (tmp_path / "slow.yaml").write_text(yaml.safe_dump(preset))
    env = isolated_ros_env(SALTS[f"fit_{sig.name}"])
    listener = Listener(env)
    try:
        processes.append(start_ros_module("smplify3d_ros.sim_node", sim_params(), env))
        node = start_ros_module("smplify3d_ros.node", node_params(preset=str(tmp_path / "slow.yaml")), env)
        processes.append(node)
        reader = LineReader(node)
        wait_for(lambda: any(values.get("busy") == "true" for _, _, values in listener.statuses), 180.0,
                 lambda: f"the node busy with a fit (log:\n{''.join(reader.lines)[-3000:]})")
        time.sleep(1.0)  # well inside the fit
        node.send_signal(sig)
        seconds, log = assert_clean_exit(node, reader, sig.name)
        print(f"{sig.name} mid-fit: exit 0 after {seconds:.2f} s")
    finally:
        listener.close()


def test_sigterm_during_start_up_exits_0(processes, body_model_dir):
    """SIGTERM as soon as the node says it is loading its models: exit code 0 and no traceback."""
    env = isolated_ros_env(SALTS["start-up"])
    node = start_ros_module("smplify3d_ros.node", node_params(), env)
    processes.append(node)
    reader = LineReader(node)
    wait_for(lambda: any("loading the body model" in line for line in reader.lines), 120.0, "the loading log line")
    node.send_signal(signal.SIGTERM)
    seconds, log = assert_clean_exit(node, reader, "SIGTERM during start-up")
    phase = "during start-up" if "during start-up" in log else "after start-up"
    print(f"SIGTERM while loading: exit 0 after {seconds:.2f} s ({phase})")


def test_sigterm_when_idle_exits_0(processes, body_model_dir):
    env = isolated_ros_env(SALTS["idle"])
    listener = Listener(env)
    try:
        node = start_ros_module("smplify3d_ros.node", node_params(), env)
        processes.append(node)
        reader = LineReader(node)
        wait_for(lambda: listener.statuses, 120.0, "the node's first /diagnostics")
        node.send_signal(signal.SIGTERM)
        assert_clean_exit(node, reader, "SIGTERM when idle")
    finally:
        listener.close()


def test_sensor_publisher_killed_and_restarted(processes, body_model_dir):
    """The simulator (the sensors) dies by SIGKILL: /diagnostics goes WARN while nothing arrives; a new
    simulator starts, and the node fits its frames again, one stamped at most 5 s after the first new
    frame (in sensor time)."""
    env = isolated_ros_env(SALTS["sim_killed"])
    listener = Listener(env)
    try:
        sim = start_ros_module("smplify3d_ros.sim_node", sim_params(), env)
        processes.append(sim)
        node = start_ros_module("smplify3d_ros.node", node_params(input_timeout=2.0), env)
        processes.append(node)
        wait_for(lambda: any(r.persons for r in listener.results), 180.0, "a first fitted frame")
        sim.send_signal(signal.SIGKILL)
        sim.wait(timeout=30)
        killed_at = len(listener.statuses)
        warn = b"\x01"
        wait_for(lambda: any(level == warn for level, _, _ in listener.statuses[killed_at:]), 60.0,
                 lambda: f"WARN after the sensors died (statuses: {listener.statuses[-3:]})")
        level, message, _ = next(s for s in listener.statuses[killed_at:] if s[0] == warn)
        assert "no synchronized image and cloud" in message
        before = len(listener.images)
        restarted = start_ros_module("smplify3d_ros.sim_node", sim_params(), env)
        processes.append(restarted)
        wait_for(lambda: len(listener.images) > before, 120.0, "a frame of the restarted simulator")
        first_new = listener.images[before]
        wait_for(lambda: any(r.persons and seconds_of(r.header.stamp) >= first_new for r in listener.results), 180.0,
                 "a fitted frame of the restarted simulator")
        resumed = min(seconds_of(r.header.stamp) for r in listener.results
                      if r.persons and seconds_of(r.header.stamp) >= first_new)
        assert resumed - first_new <= 5.0, f"first fitted frame {resumed - first_new:.1f} s after the first new frame"
        wait_for(lambda: listener.statuses[-1][0] == b"\x00", 60.0, "status OK again")
        print(f"sensor restart: fitted the frame stamped {resumed - first_new:.1f} s after the first new one")
    finally:
        listener.close()
