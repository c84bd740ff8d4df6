"""Helpers for tests that run ROS 2 nodes and tools as their own processes."""
import os
import random
import signal
import subprocess


def isolated_ros_env(salt: int = 0) -> dict:
    """The test's environment with its own DDS domain, loopback-only discovery and 1 torch thread."""
    env = dict(os.environ)
    env["ROS_DOMAIN_ID"] = str(random.Random(os.getpid() + salt).randint(1, 200))
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
