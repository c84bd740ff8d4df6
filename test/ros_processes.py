"""Helpers for tests that run ROS 2 nodes and tools as their own processes."""
import os
import signal
import subprocess
import threading
import sys
import time

# DDS domain ids a test may take. Fast DDS maps a domain to UDP ports 7400 + 250 * id + offsets, so ids
# above 232 overflow the 16-bit port range; on Linux the ports of ids 102-214 fall in the kernel's
# ephemeral range (32768-60999), where any outgoing socket may already hold them. Id 0 is every ROS
# 2 machine's default domain (a robot's): never a test's.
VALID_DOMAIN_IDS = tuple(range(1, 102)) + tuple(range(215, 233))


def ros_domain_id(salt: int) -> int:
    """The DDS domain id of one ROS test: derived from this process's id and the test's ``salt``.

    Two tests of one process that pass different salts (0 <= salt < 119) get different ids; runs in
    other processes (another pytest on the machine) get ids shifted by 53 per unit of process id, so
    runs with neighbouring process ids do not meet on a domain while their salts stay below 53.
    Salts in use: 0 test_ros_integration, 1 test_ros_messages, 2 test_launch, 3 test_ros_sync_markers,
    4 test_ros_demo, 7 test_ros_bags, 10-19 test_ros_robustness (in turn, one per node it starts), 20-29
    test_ros_tf, 40-44 test_ros_process_faults, 45 test_ros_lifecycle, 46-47 test_ros_tracking, 48 test_ros_bag_tracking,
    30 test_ros_verdict, 49 test_ros_front_ends.
    """
    return VALID_DOMAIN_IDS[(os.getpid() * 53 + salt) % len(VALID_DOMAIN_IDS)]


def isolated_ros_env(salt: int = 0) -> dict:
    """The test's environment with its own DDS domain (``ros_domain_id(salt)``), loopback-only
    discovery and 1 torch thread."""
    env = dict(os.environ)
    env["ROS_DOMAIN_ID"] = str(ros_domain_id(salt))
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env["OMP_NUM_THREADS"] = "1"
    return env


def start_ros_module(module: str, params: dict, env: dict) -> subprocess.Popen:
    """``python -m module --ros-args -p name:=value ...`` in ``env``, its stdout and stderr piped together."""
    args = [sys.executable, "-m", module, "--ros-args"]
    for name, value in params.items():
        args += ["-p", f"{name}:={value}"]
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish_process(process: subprocess.Popen, timeout: float = 30.0) -> str:
    """Let ``process`` end by itself within ``timeout`` s (e.g. a bag player whose last messages the test has
    already seen: on a busy machine its shutdown takes a moment), then :func:`stop_process` it."""
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass
    return stop_process(process)


def stop_process(process: subprocess.Popen, timeout: float = 10.0) -> str:
    """SIGTERM (as launch does), kill after ``timeout`` s; returns what the process printed."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.stdout.read() if process.stdout else ""


# ----------------------------------------------------------------------------------------------
# smplify3d_node on the simulator's topics, watched from the test process
# ----------------------------------------------------------------------------------------------

SIM = "/smplify3d_sim_node"
NODE = "/smplify3d_node"


def node_params(**extra):
    """Parameters of smplify3d_node on the simulator's topics (observations mode, static extrinsic), plus ``extra``."""
    from smplify3d_core.sim.presets import get_preset

    T = get_preset("humanm3").T_cam_lidar.reshape(-1).tolist()
    return {"image_topic": f"{SIM}/image", "camera_info_topic": f"{SIM}/camera_info", "cloud_topic": f"{SIM}/points",
            "observations_topic": f"{SIM}/observations", "extrinsics_source": "static", "reliable_inputs": "true",
            "T_cam_lidar": "[" + ", ".join(f"{v:.9f}" for v in T) + "]", "device": "cpu", "preset": "humanm3",
            **extra}


def sim_params():
    """The sim node cycling two random one-person frames (not its default sequence)."""
    return {"rate": 1.0, "persons": 1, "scenes": 2, "seed": 3, "sequence": "false"}


class Listener:
    """The node's /diagnostics and ~/smpl and the simulator's images, collected on a spinning thread."""

    def __init__(self, env):
        from diagnostic_msgs.msg import DiagnosticArray
        from sensor_msgs.msg import Image

        from smplify3d_ros.msg import SMPLArray

        import rclpy

        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=int(env["ROS_DOMAIN_ID"]))
        self.node = rclpy.create_node("faults_listener", context=self.context)
        self.statuses, self.results, self.images = [], [], []
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        self.node.create_subscription(SMPLArray, f"{NODE}/smpl", self.results.append, 10)
        self.node.create_subscription(Image, f"{SIM}/image", lambda m: self.images.append(seconds_of(m.header.stamp)), 10)
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
        import rclpy

        self.stop.set()
        self.thread.join(timeout=5)
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


def seconds_of(stamp):
    return stamp.sec + 1e-9 * stamp.nanosec


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"gave up after {timeout:.0f} s waiting for {what() if callable(what) else what}")


def start_node_when_heard(args, env, executor, subscription, timeout=60.0) -> subprocess.Popen:
    """Start ``args`` (the node's command line) in ``env`` and spin ``executor`` until ``subscription``
    (on one of its outputs) has discovered the node's publisher; returns the process."""
    node = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + timeout
    while subscription.get_publisher_count() == 0 and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.1)
        assert node.poll() is None, "the node exited early"
    assert subscription.get_publisher_count() > 0, f"the node's publisher was not discovered within {timeout:.0f} s"
    return node


def start_player(bag, rate, env, extra_wait_topics=()) -> subprocess.Popen:
    """``smplify3d-bag play bag --rate rate`` once the sim topics (and ``extra_wait_topics``) have subscribers."""
    topics = [f"{SIM}/image", f"{SIM}/camera_info", f"{SIM}/points", f"{SIM}/observations", *extra_wait_topics]
    return subprocess.Popen([sys.executable, "-m", "smplify3d_ros.bag", "play", str(bag), "--rate", str(rate),
                             "--wait-for-subscribers", "30", "--wait-topics", *topics],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


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


def assert_clean_exit(process, reader, sent):
    """Waits for ``process`` (ended by ``sent``): exit code 0, no traceback, no abort. Returns (seconds, log)."""
    t0 = time.monotonic()
    code = process.wait(timeout=60)
    seconds = time.monotonic() - t0
    log = reader.text()
    assert code == 0, f"exit code {code} after {sent}:\n{log[-4000:]}"
    assert "Traceback" not in log and "terminate called" not in log, log[-4000:]
    return seconds, log
