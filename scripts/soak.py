#!/usr/bin/env python3
"""Soak test: smplify3d_node on the simulator's stream for minutes, watched from outside.

    .venv/bin/python scripts/soak.py                      # 5 minutes, 10 Hz, 3 persons
    .venv/bin/python scripts/soak.py --seconds 60 --json soak.json

Starts ``smplify3d_sim_node`` (``--rate`` Hz, ``--persons`` persons, its extrinsic on /tf_static) and
``smplify3d_node`` (observations mode, the extrinsic looked up through TF) as their own processes on
a DDS domain of their own, then every ``--sample`` seconds reads the node's resident memory, thread
count and open file descriptors from /proc. Every published body is compared with the simulator's
ground truth of the same stamp: it must be either ``valid`` with its pelvis within ``--max-error`` m
of the nearest true pelvis, or flagged ``valid: false``. Prints start/end values and the slope per
minute (least squares over the samples after the first minute, once the models are warm) and a table
of the bodies; exits 1 when a valid body is farther than ``--max-error`` from the truth or a process
died. Not part of the test suite (it takes minutes); see the README for figures.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np

SIM = "/smplify3d_sim_node"
NODE = "/smplify3d_node"


def proc_sample(pid: int) -> dict:
    """Resident memory (MiB), threads and open file descriptors of process ``pid``."""
    status = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            status[key] = value.strip()
    return {"rss_mib": int(status["VmRSS"].split()[0]) / 1024.0, "threads": int(status["Threads"]),
            "fds": len(os.listdir(f"/proc/{pid}/fd"))}


def slope_per_minute(times: list, values: list) -> float:
    if len(times) < 2:
        return 0.0
    return float(np.polyfit(np.asarray(times) / 60.0, np.asarray(values, dtype=float), 1)[0])


def start(module: str, params: dict, env: dict, log_path: str) -> subprocess.Popen:
    args = [sys.executable, "-m", module, "--ros-args"]
    for name, value in params.items():
        args += ["-p", f"{name}:={value}"]
    return subprocess.Popen(args, env=env, stdout=open(log_path, "w"), stderr=subprocess.STDOUT)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=300.0, help="how long to run (default 300)")
    parser.add_argument("--rate", type=float, default=10.0, help="simulated frames per second (default 10)")
    parser.add_argument("--persons", type=int, default=3, help="persons per simulated frame (default 3)")
    parser.add_argument("--sample", type=float, default=5.0, help="seconds between /proc samples (default 5)")
    parser.add_argument("--max-error", type=float, default=0.10, help="pelvis error a valid body may have, m")
    parser.add_argument("--domain-id", type=int, default=97, help="DDS domain of the run (default 97)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--logs", default="/tmp", help="folder for the two nodes' logs (default /tmp)")
    args = parser.parse_args(argv)

    env = dict(os.environ, ROS_DOMAIN_ID=str(args.domain_id), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               OMP_NUM_THREADS="1")
    os.environ.update(ROS_DOMAIN_ID=env["ROS_DOMAIN_ID"], ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from smplify3d_ros.msg import SMPLArray

    sim = start("smplify3d_ros.sim_node", {"rate": args.rate, "persons": args.persons, "scenes": 5, "seed": 11},
                env, os.path.join(args.logs, "soak_sim.log"))
    node = start("smplify3d_ros.node", {
        "image_topic": f"{SIM}/image", "camera_info_topic": f"{SIM}/camera_info", "cloud_topic": f"{SIM}/points",
        "observations_topic": f"{SIM}/observations", "reliable_inputs": "true", "device": "cpu",
        "preset": "humanm3"}, env, os.path.join(args.logs, "soak_node.log"))

    rclpy.init()
    listener = rclpy.create_node("soak_listener")
    truths: dict = {}
    bodies = {"valid_within": 0, "valid_beyond": 0, "invalid": 0}
    errors: list = []
    flags: dict = {}
    pending: list = []
    lock = threading.Lock()

    def key(stamp):
        return stamp.sec, stamp.nanosec

    def pelvis(person):
        return np.array([person.joints[0].x, person.joints[0].y, person.joints[0].z])

    listener.create_subscription(SMPLArray, f"{SIM}/ground_truth", lambda m: truths.__setitem__(key(m.header.stamp), m), 50)
    listener.create_subscription(SMPLArray, f"{NODE}/smpl", lambda m: pending.append(m), 50)
    executor = SingleThreadedExecutor()
    executor.add_node(listener)
    samples = []
    t0 = time.monotonic()
    next_sample = t0
    died = None
    try:
        while time.monotonic() - t0 < args.seconds:
            executor.spin_once(timeout_sec=0.1)
            while pending:
                result = pending.pop(0)
                truth = truths.get(key(result.header.stamp))
                if truth is None:
                    pending.insert(0, result)
                    break
                for person in result.persons:
                    if not person.valid:
                        bodies["invalid"] += 1
                        for flag in person.flags:
                            flags[flag] = flags.get(flag, 0) + 1
                        continue
                    error = min(float(np.linalg.norm(pelvis(person) - pelvis(t))) for t in truth.persons)
                    errors.append(error)
                    bodies["valid_within" if error <= args.max_error else "valid_beyond"] += 1
            if time.monotonic() >= next_sample:
                for name, process in (("sim", sim), ("node", node)):
                    if process.poll() is not None:
                        died = f"{name} exited with {process.returncode}"
                if died:
                    break
                with lock:
                    samples.append({"t": time.monotonic() - t0, **proc_sample(node.pid)})
                next_sample += args.sample
                elapsed = samples[-1]["t"]
                print(f"\r{elapsed:6.0f} s  rss {samples[-1]['rss_mib']:.1f} MiB  threads {samples[-1]['threads']}  "
                      f"fds {samples[-1]['fds']}  bodies {sum(bodies.values())}", end="", flush=True)
    finally:
        print()
        for process in (node, sim):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        node_code = node.wait(timeout=30)
        sim.wait(timeout=30)
        listener.destroy_node()
        rclpy.try_shutdown()

    warm = [s for s in samples if s["t"] >= 60.0] or samples
    report = {"seconds": args.seconds, "rate_hz": args.rate, "persons": args.persons, "samples": len(samples),
              "node_exit_code": node_code, "died": died, "bodies": bodies, "invalid_flags": flags,
              "pelvis_error_m": {"median": float(np.median(errors)) if errors else None,
                                 "max": float(np.max(errors)) if errors else None}}
    for name in ("rss_mib", "threads", "fds"):
        report[name] = {"start": samples[0][name] if samples else None, "end": samples[-1][name] if samples else None,
                        "slope_per_min": slope_per_minute([s["t"] for s in warm], [s[name] for s in warm])}
    print(f"{'':14}{'start':>10}{'end':>10}{'slope/min':>12}   (slope over the samples after the first minute)")
    for name in ("rss_mib", "threads", "fds"):
        r = report[name]
        print(f"{name:14}{r['start']:>10.1f}{r['end']:>10.1f}{r['slope_per_min']:>12.3f}")
    print(f"bodies: {bodies['valid_within']} valid within {args.max_error:.2f} m, {bodies['valid_beyond']} valid "
          f"beyond (failures), {bodies['invalid']} flagged invalid {flags or ''}; pelvis error median "
          f"{report['pelvis_error_m']['median']}, max {report['pelvis_error_m']['max']} m; node exit code {node_code}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 1 if died or bodies["valid_beyond"] or node_code != 0 else 0


if __name__ == "__main__":
    sys.exit(main())
