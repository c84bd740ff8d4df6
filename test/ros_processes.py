"""Helpers for tests that run ROS 2 nodes and tools as their own processes."""
import os
import signal
import subprocess

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
    4 test_ros_demo, 7 test_ros_bags, 10 and up test_ros_robustness (one per node it starts), 30 test_ros_verdict.
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
