"""smplify3d_node as its own process through signals and a publisher that dies: the exit code and log
of a shutdown in every phase (start-up, idle, mid-fit), and recovery when the sensors come back.

The node runs in observations mode on the simulator node's topics (no network weights). A listener
in the test process (its own rclpy context on the test's DDS domain) reads /diagnostics, the node's
~/smpl and the simulator's images. The waits' timeouts only stop a test when something never
happens; the seconds a shutdown took are printed, not asserted (machines differ in speed).
"""
import signal
import threading
import time

import pytest
import yaml
from ros_processes import isolated_ros_env, start_ros_module, stop_process

rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")

from smplify3d_core.sim.presets import get_preset  # noqa: E402

SIM = "/smplify3d_sim_node"
NODE = "/smplify3d_node"
#: Salts of ros_domain_id (see ros_processes): one per test here.
SALTS = {"fit_SIGTERM": 40, "fit_SIGINT": 41, "start-up": 42, "idle": 43, "sim_killed": 44}


def node_params(**extra):
    T = get_preset("humanm3").T_cam_lidar.reshape(-1).tolist()
    return {"image_topic": f"{SIM}/image", "camera_info_topic": f"{SIM}/camera_info", "cloud_topic": f"{SIM}/points",
            "observations_topic": f"{SIM}/observations", "extrinsics_source": "static", "reliable_inputs": "true",
            "T_cam_lidar": "[" + ", ".join(f"{v:.9f}" for v in T) + "]", "device": "cpu", "preset": "humanm3",
            **extra}


def sim_params():
    return {"rate": 1.0, "persons": 1, "scenes": 2, "seed": 3}


class Listener:
    """The node's /diagnostics and ~/smpl and the simulator's images, collected on a spinning thread."""

    def __init__(self, env):
        from diagnostic_msgs.msg import DiagnosticArray
        from sensor_msgs.msg import Image

        from smplify3d_ros.msg import SMPLArray

        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=int(env["ROS_DOMAIN_ID"]))
        self.node = rclpy.create_node("faults_listener", context=self.context)
        self.statuses, self.results, self.images = [], [], []
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        self.node.create_subscription(SMPLArray, f"{NODE}/smpl", self.results.append, 10)
        self.node.create_subscription(Image, f"{SIM}/image", lambda m: self.images.append(_seconds(m.header.stamp)), 10)
        self.executor = rclpy.executors.SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _spin(self):
        while not self.stop.is_set() and self.context.ok():
            self.executor.spin_once(timeout_sec=0.05)

    def _on_diagnostics(self, msg):
        for status in msg.status:
            if status.name.startswith("smplify3d_node"):
                self.statuses.append((status.level, status.message, {kv.key: kv.value for kv in status.values}))

    def close(self):
        self.stop.set()
        self.thread.join(timeout=5)
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


def _seconds(stamp):
    return stamp.sec + 1e-9 * stamp.nanosec


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"gave up after {timeout:.0f} s waiting for {what() if callable(what) else what}")


class LineReader:
    """Collects a process's output lines on a thread (so the test can wait for one without blocking)."""

    def __init__(self, process):
        self.lines = []
        self.thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self.thread.start()

    def _read(self, process):
        for line in process.stdout:
            self.lines.append(line)

    def text(self):
        self.thread.join(timeout=10)
        return "".join(self.lines)


@pytest.fixture
def processes():
    """Started processes, stopped (SIGTERM, then SIGKILL) after the test."""
    started = []
    yield started
    for process in started:
        if process.poll() is None:
            stop_process(process)


def assert_clean_exit(process, reader, sent):
    t0 = time.monotonic()
    code = process.wait(timeout=60)
    seconds = time.monotonic() - t0
    log = reader.text()
    assert code == 0, f"exit code {code} after {sent}:\n{log[-4000:]}"
    assert "Traceback" not in log and "terminate called" not in log, log[-4000:]
    return seconds, log


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
        wait_for(lambda: any(r.persons and _seconds(r.header.stamp) >= first_new for r in listener.results), 180.0,
                 "a fitted frame of the restarted simulator")
        resumed = min(_seconds(r.header.stamp) for r in listener.results
                      if r.persons and _seconds(r.header.stamp) >= first_new)
        assert resumed - first_new <= 5.0, f"first fitted frame {resumed - first_new:.1f} s after the first new frame"
        wait_for(lambda: listener.statuses[-1][0] == b"\x00", 60.0, "status OK again")
        print(f"sensor restart: fitted the frame stamped {resumed - first_new:.1f} s after the first new one")
    finally:
        listener.close()
