"""``smplify3d-ros-demo``: the simulator and the node as processes over DDS, checked against ground truth.

Starts ``smplify3d_sim_node`` (synthetic camera + LiDAR + stand-in detector) and ``smplify3d_node``
(observations mode, the simulator's static camera-LiDAR extrinsic) as two processes on a random
ROS_DOMAIN_ID with loopback-only discovery, listens to the node's ``~/smpl`` and ``~/markers``, to
``/diagnostics`` and to the simulator's ``~/ground_truth`` for ``--seconds`` after the first result,
and prints one line per fitted frame (stamp, persons, latency = receive time - image stamp, the
node's total fit time, PVE and pelvis error against the true bodies) and a summary (frames
processed, dropped while busy and skipped, from /diagnostics; the output rate in SMPLArrays per
second; latency percentiles p50 / p90 / max; mean PVE after aligning the pelvises; mean absolute
pelvis error; the tracker's counts and the identity switches).

The simulator plays a sequence (the same people moving, stable true ids: true person ``p<k>``
has track id ``k`` in ~/ground_truth; ``--random-scenes`` cycles ``--scenes`` independent random
frames instead, with nothing to track) and ``--moving-robot`` drives the rig, with
the node tracking in ``odom`` (``tracking_frame``, from the sim's /tf). Identity switches: each
fitted person is paired with the true person of the same stamp with the nearest pelvis (within
``MATCH_RADIUS_M``, one-to-one); every later change of the track id a true person gets counts one
(:func:`smplify3d_core.eval.motion.identity_switches`). ``--tracker-seconds`` sets the node's
``tracker.max_age``: on a CPU the node fits a frame every few seconds, far slower than the live
stream the defaults are for, and a track should outlive that. ``--warm-gap`` sets
``tracker.max_warm_gap`` (default: the node's, 0.35 s): a fit starts warm only from a track fitted
that recently, because a prediction seconds old is a worse start than the image-only estimate.
Everything received is written to an MCAP rosbag2 (``--out``/bag, with the package's message
definitions, so ``rosbags`` or ``ros2 bag`` read it without this package). The children are
stopped with SIGTERM. Exit status 0, or 1 with a message when no result arrives within
``--startup-timeout`` or a child dies.

    python -m smplify3d_ros.demo --seconds 10 --out /tmp/smplify3d_ros_demo
"""
from __future__ import annotations

import rclpy  # noqa: F401  (first: the wheels' bootstrapper sets up the library path)

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np

from smplify3d_ros.stamps import stamp_to_ns, stamp_to_seconds

SIM = "/smplify3d_sim_node"
NODE = "/smplify3d_node"
TOPICS = {  # recorded topic -> message type (rosbag2 name)
    f"{NODE}/smpl": "smplify3d_ros/msg/SMPLArray",
    f"{NODE}/markers": "visualization_msgs/msg/MarkerArray",
    f"{SIM}/ground_truth": "smplify3d_ros/msg/SMPLArray",
    "/diagnostics": "diagnostic_msgs/msg/DiagnosticArray",
}


class DemoError(RuntimeError):
    """The demo cannot go on (no result in time, a node died, the output folder is taken)."""


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="smplify3d-ros-demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="run time after the first result (s)")
    parser.add_argument("--out", default="smplify3d_ros_demo",
                        help="output folder: bag/ (MCAP rosbag2) and the nodes' logs (default ./smplify3d_ros_demo)")
    parser.add_argument("--rate", type=float, default=2.0, help="simulator frame rate (Hz)")
    parser.add_argument("--persons", type=int, default=2, help="persons per simulated frame")
    parser.add_argument("--scenes", type=int, default=3, help="with --random-scenes: simulated frames cycled through")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--preset", default="humanm3", help="simulator and fit preset")
    parser.add_argument("--device", default="cpu", help="the node's device: cpu, cuda or auto")
    parser.add_argument("--startup-timeout", type=float, default=90.0,
                        help="seconds to wait for the first result before giving up")
    parser.add_argument("--sequence", action="store_true",
                        help="the simulator plays a sequence (people moving smoothly, stable true ids): the default")
    parser.add_argument("--random-scenes", action="store_true",
                        help="the simulator cycles --scenes independent random frames instead of a sequence")
    parser.add_argument("--moving-robot", action="store_true",
                        help="the sequence seen from a driving robot; the node tracks in odom")
    parser.add_argument("--tracker-seconds", type=float, default=None,
                        help="the node's tracker.max_age, s: how long a track outlives its person unseen (default: "
                             "10 for a sequence, the node's default with --random-scenes)")
    parser.add_argument("--warm-gap", type=float, default=None,
                        help="the node's tracker.max_warm_gap, s: a fit starts warm only from a track fitted this "
                             "recently (default: the node's, 0.35)")
    parser.add_argument("--quiet", action="store_true", help="no per-frame lines")
    parser.add_argument("--domain-id", type=int, default=None, choices=DEMO_DOMAIN_IDS, metavar="ID",
                        help="DDS domain of the demo's nodes (default: one derived from the process id; 1-101 or 215-232)")
    args = parser.parse_args(argv)
    if args.random_scenes and (args.sequence or args.moving_robot):
        parser.error("--random-scenes plays no sequence: it goes with neither --sequence nor --moving-robot")
    args.sequence = not args.random_scenes
    if args.tracker_seconds is None and args.sequence:
        args.tracker_seconds = SEQUENCE_TRACKER_SECONDS
    if args.tracker_seconds is not None and args.tracker_seconds <= 0:
        parser.error("--tracker-seconds must be > 0")
    if args.warm_gap is not None and args.warm_gap < 0:
        parser.error("--warm-gap must be >= 0")
    if args.seconds <= 0 or args.rate <= 0 or args.persons < 1 or args.scenes < 1 or args.startup_timeout <= 0:
        parser.error("--seconds, --rate and --startup-timeout must be > 0, --persons and --scenes >= 1")
    return args


# ----------------------------------------------------------------------------------------------
# processes
# ----------------------------------------------------------------------------------------------

#: DDS domain ids the demo may take: Fast DDS maps id N to UDP ports 7400 + 250 N + offsets, so ids above
#: 232 overflow; on Linux the ports of ids 102-214 fall in the kernel's ephemeral range; 0 is a robot's default.
DEMO_DOMAIN_IDS = tuple(range(1, 102)) + tuple(range(215, 233))
#: --tracker-seconds for a sequence: a track outlives this many seconds unseen
SEQUENCE_TRACKER_SECONDS = 10.0
#: a fitted person is the true person of the nearest pelvis only within this distance, m
MATCH_RADIUS_M = 0.5


def ros_environment(domain_id: Optional[int] = None) -> dict:
    """This process's environment with its own ROS_DOMAIN_ID (``domain_id``, else one derived from the
    process id) and loopback-only discovery."""
    env = dict(os.environ)
    if domain_id is None:
        domain_id = DEMO_DOMAIN_IDS[os.getpid() % len(DEMO_DOMAIN_IDS)]
    env["ROS_DOMAIN_ID"] = str(int(domain_id))
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env.setdefault("OMP_NUM_THREADS", "1")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def start_node(module: str, params: dict, env: dict, log_path: Path) -> subprocess.Popen:
    args = [sys.executable, "-m", module, "--ros-args"]
    for name, value in params.items():
        args += ["-p", f"{name}:={value}"]
    log = open(log_path, "w")
    try:
        return subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    finally:
        log.close()  # the child holds its own descriptor


def stop_node(process: subprocess.Popen, timeout: float = 10.0) -> Optional[int]:
    """SIGTERM, then SIGKILL after ``timeout`` s; returns the exit status."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
    return process.returncode


def node_parameters(args) -> tuple[dict, dict]:
    from smplify3d_core.sim.presets import get_preset

    T = get_preset(args.preset).T_cam_lidar.reshape(-1).tolist()
    sim = {"rate": args.rate, "persons": args.persons, "scenes": args.scenes, "seed": args.seed, "sensor": args.preset}
    if args.sequence:
        sim.update({"sequence": "true", "moving_robot": str(bool(args.moving_robot)).lower()})
        del sim["scenes"]
    else:
        sim["sequence"] = "false"
    node = {"image_topic": f"{SIM}/image", "camera_info_topic": f"{SIM}/camera_info", "cloud_topic": f"{SIM}/points",
            "observations_topic": f"{SIM}/observations", "extrinsics_source": "static", "reliable_inputs": "true",
            "publish_vertices": "true", "T_cam_lidar": "[" + ", ".join(f"{v:.9f}" for v in T) + "]",
            "device": args.device, "preset": args.preset}
    if args.moving_robot:
        node["tracking_frame"] = "odom"
    if args.tracker_seconds is not None:
        node["tracker.max_age"] = float(args.tracker_seconds)
    if args.warm_gap is not None:
        node["tracker.max_warm_gap"] = float(args.warm_gap)
    return sim, node


# ----------------------------------------------------------------------------------------------
# the bag
# ----------------------------------------------------------------------------------------------

class BagRecorder:
    """Writes rclpy messages (serialized to CDR by rclpy) into an MCAP rosbag2 with rosbags' Writer."""

    def __init__(self, path: Path, topics: dict) -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer

        if path.exists():
            if not path.is_dir() or (any(path.iterdir()) and not (path / "metadata.yaml").exists()):
                raise DemoError(f"{path} exists and is not a rosbag2 folder: choose another --out")
            shutil.rmtree(path)  # a bag of an earlier demo run
        from smplify3d_ros.bag_io import make_typestore

        store = make_typestore()
        self.writer = Writer(path, version=9, storage_plugin=StoragePlugin.MCAP)
        self.writer.open()
        self.connections = {topic: self.writer.add_connection(topic, msgtype, typestore=store)
                            for topic, msgtype in topics.items()}
        self.counts = {topic: 0 for topic in topics}
        self.path = path

    def write(self, topic: str, msg) -> None:
        from rclpy.serialization import serialize_message

        self.writer.write(self.connections[topic], time.time_ns(), serialize_message(msg))
        self.counts[topic] += 1

    def close(self) -> None:
        self.writer.close()


# ----------------------------------------------------------------------------------------------
# accuracy
# ----------------------------------------------------------------------------------------------

def compare_to_truth(result, truth) -> tuple[list, list]:
    """Per valid fitted person of ``result`` (SMPLArray): (PVE after aligning the pelvises, absolute pelvis
    error), metres, against the true body with the nearest pelvis."""
    from smplify3d_ros.smpl_messages import errors_against_truth, joints_from_smpl, vertices_from_smpl

    valid = [p for p in result.persons if p.valid]
    if not valid:
        return [], []
    vertices = [vertices_from_smpl(p) for p in valid]
    errors = errors_against_truth(np.stack([joints_from_smpl(p) for p in valid]),
                                  np.stack(vertices) if all(len(v) for v in vertices) else None, truth)
    return [v / 1000 for v in errors["pve_mm"]], [v / 1000 for v in errors["pelvis_error_mm"]]


def true_person_ids(result, truth, radius_m: float = MATCH_RADIUS_M) -> dict:
    """{true track id: fitted track id} of one frame: each fitted person of ``result`` (SMPLArray) paired
    one-to-one with the true person of ``truth`` (the same stamp's ground truth) whose pelvis is nearest,
    when within ``radius_m`` metres (both in the camera frame)."""
    from scipy.optimize import linear_sum_assignment

    if not result.persons or not truth.persons:
        return {}

    def pelvis(person):
        return np.array([person.joints[0].x, person.joints[0].y, person.joints[0].z])

    distance = np.array([[np.linalg.norm(pelvis(f) - pelvis(t)) for t in truth.persons] for f in result.persons])
    rows, cols = linear_sum_assignment(np.where(distance <= radius_m, distance, 1e6))
    return {int(truth.persons[c].track_id): int(result.persons[r].track_id)
            for r, c in zip(rows, cols) if distance[r, c] <= radius_m}


def percentiles(values) -> str:
    """``p50 .. s, p90 .. s, max .. s`` of ``values`` (s), or n/a."""
    if not len(values):
        return "n/a"
    p50, p90 = np.percentile(values, [50, 90])
    return f"p50 {p50:.3f} s, p90 {p90:.3f} s, max {np.max(values):.3f} s"


# ----------------------------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------------------------

def run(args) -> int:
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from visualization_msgs.msg import MarkerArray

    from smplify3d_ros.msg import SMPLArray

    from smplify3d_core.sim.pose_prior import simulator_pose_prior_path

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    simulator_pose_prior_path()  # the node reads the project's pose prior: written here once when missing
    env = ros_environment(args.domain_id)
    os.environ["ROS_DOMAIN_ID"], os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = env["ROS_DOMAIN_ID"], "LOCALHOST"
    sim_params, node_params = node_parameters(args)
    if args.sequence:
        print(f"a simulated sequence of {args.persons} persons at {args.rate:g} Hz"
              + (" from a driving robot (tracking in odom)" if args.moving_robot else "")
              + f"; tracker.max_age = {args.tracker_seconds:g} s"
              + (f", tracker.max_warm_gap = {args.warm_gap:g} s" if args.warm_gap is not None else ""), flush=True)
    recorder = BagRecorder(out / "bag", TOPICS)
    print(f"ROS_DOMAIN_ID={env['ROS_DOMAIN_ID']} (loopback only); logs in {out}/sim.log and {out}/node.log", flush=True)
    children = {"smplify3d_sim_node": start_node("smplify3d_ros.sim_node", sim_params, env, out / "sim.log"),
                "smplify3d_node": start_node("smplify3d_ros.node", node_params, env, out / "node.log")}
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=int(env["ROS_DOMAIN_ID"]))
    listener = None
    state = {"recording": False, "first": None, "results": [], "truths": {}, "diagnostics": None, "assignments": []}
    try:
        listener = rclpy.create_node("smplify3d_ros_demo", context=context)
        qos = QoSProfile(depth=20, reliability=ReliabilityPolicy.RELIABLE)

        def on_result(msg):
            received = time.time()
            if state["first"] is None:
                state["first"] = received
                state["recording"] = True
                print(f"first result after {received - state['start']:.1f} s; recording for {args.seconds:g} s",
                      flush=True)
            if not state["recording"]:
                return
            recorder.write(f"{NODE}/smpl", msg)
            state["results"].append((received, msg))
            stages = dict(zip(msg.stage_names, msg.stage_seconds))
            truth = state["truths"].get(stamp_to_ns(msg.header.stamp))
            pves, pelvis = compare_to_truth(msg, truth) if truth is not None else ([], [])
            if truth is not None:
                state["assignments"].append(true_person_ids(msg, truth))
            state.setdefault("pves", []).extend(pves)
            state.setdefault("pelvis", []).extend(pelvis)
            if not args.quiet:
                accuracy = (f"  PVE {np.mean(pves) * 1000:5.1f} mm  pelvis {np.mean(pelvis) * 1000:5.1f} mm"
                            if pves and pelvis else "  (no ground truth)" if truth is None else "")
                print(f"frame {stamp_to_seconds(msg.header.stamp):.3f}  persons {len(msg.persons)}  latency "
                      f"{received - stamp_to_seconds(msg.header.stamp):6.3f} s  total {stages.get('total', float('nan')):6.3f} s"
                      + accuracy, flush=True)

        def on_truth(msg):
            state["truths"][stamp_to_ns(msg.header.stamp)] = msg
            if len(state["truths"]) > 200:
                state["truths"].pop(next(iter(state["truths"])))
            if state["recording"]:
                recorder.write(f"{SIM}/ground_truth", msg)

        def on_markers(msg):
            if state["recording"]:
                recorder.write(f"{NODE}/markers", msg)

        def on_diagnostics(msg):
            for status in msg.status:
                if status.name.startswith("smplify3d_node"):
                    state["diagnostics"] = ({kv.key: kv.value for kv in status.values}, status.message)
            if state["recording"]:
                recorder.write("/diagnostics", msg)

        listener.create_subscription(SMPLArray, f"{NODE}/smpl", on_result, qos)
        listener.create_subscription(MarkerArray, f"{NODE}/markers", on_markers, qos)
        listener.create_subscription(SMPLArray, f"{SIM}/ground_truth", on_truth, qos)
        listener.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, qos)
        executor = rclpy.executors.SingleThreadedExecutor(context=context)
        executor.add_node(listener)

        state["start"] = time.time()
        while state["first"] is None:
            executor.spin_once(timeout_sec=0.1)
            _check_children(children, out)
            if time.time() - state["start"] > args.startup_timeout:
                raise DemoError(f"no result from {NODE}/smpl within {args.startup_timeout:g} s; see {out}/node.log:\n"
                                + _tail(out / "node.log"))
        while time.time() < state["first"] + args.seconds:
            executor.spin_once(timeout_sec=0.1)
            _check_children(children, out)
        state["recording"] = False
        seen = state["diagnostics"]
        deadline = time.time() + 3.0  # one more /diagnostics message: the node's final counts
        while time.time() < deadline and state["diagnostics"] is seen:
            executor.spin_once(timeout_sec=0.1)
        print(summary(state, args, recorder), flush=True)
        return 0
    finally:
        codes = {name: stop_node(process) for name, process in children.items()}
        if listener is not None:
            listener.destroy_node()
        rclpy.try_shutdown(context=context)
        recorder.close()
        bad = {name: code for name, code in codes.items() if code not in (0, -signal.SIGTERM)}
        if bad:
            print(f"warning: nodes exited with {bad}", file=sys.stderr)


def summary(state, args, recorder) -> str:
    from smplify3d_core.eval.motion import identity_switches

    results = state["results"]
    latencies = [received - stamp_to_seconds(msg.header.stamp) for received, msg in results]
    values, message = state["diagnostics"] or ({}, "no /diagnostics received")
    pves, pelvis = state.get("pves", []), state.get("pelvis", [])
    persons = sum(len(msg.persons) for _, msg in results)
    lines = [
        f"summary: frames processed {values.get('processed', '?')}, "
        f"dropped while busy {values.get('dropped_busy', '?')}, "
        f"skipped {values.get('skipped', '?')}, unsynchronized drops {values.get('unsynchronized_drops', '?')} "
        f"(node totals from /diagnostics: {message})",
        f"  received in {args.seconds:g} s: {len(results)} results, {persons} persons; output rate "
        f"{len(results) / args.seconds:.3f} SMPLArrays/s; latency (receipt - image stamp) {percentiles(latencies)}",
        "  accuracy vs ground truth: " + (
            f"mean PVE (pelvis-aligned) {np.mean(pves) * 1000:.1f} mm, mean absolute pelvis error "
            f"{np.mean(pelvis) * 1000:.1f} mm over {len(pelvis)} fitted persons" if pves and pelvis else "n/a"),
        f"  bag: {recorder.path} (MCAP; " + ", ".join(f"{t} {n}" for t, n in recorder.counts.items()) + ")",
    ]
    assignments = state.get("assignments", [])
    matched = sum(len(a) for a in assignments)
    lines.insert(3, f"  tracking: identity switches {identity_switches(assignments)} over {matched} matched persons "
                    f"in {len(assignments)} frames with ground truth ({len({k for a in assignments for k in a})} "
                    f"true persons); node: " + ", ".join(f"{k} {values.get(k, '?')}" for k in (
                        "tracks_alive", "track_births", "track_deaths", "warm_fits", "cold_fits", "restarts")))
    skipped = {k[len("skipped: "):]: v for k, v in values.items() if k.startswith("skipped: ")}
    if skipped:
        lines.append("  skip reasons: " + "; ".join(f"{k} ({v})" for k, v in skipped.items()))
    return "\n".join(lines)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _check_children(children: dict, out: Path) -> None:
    for name, process in children.items():
        if process.poll() is not None:
            log = out / ("sim.log" if "sim" in name else "node.log")
            raise DemoError(f"{name} exited with status {process.returncode}; see {log}:\n{_tail(log)}")


def main(argv=None) -> int:
    args = parse_args(argv)

    def on_sigterm(*_):  # stop like Ctrl-C: the children are stopped in run()'s finally
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        return run(args)
    except DemoError as error:
        print(f"smplify3d-ros-demo: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("smplify3d-ros-demo: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
