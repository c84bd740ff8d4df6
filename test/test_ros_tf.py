"""The node's extrinsic from TF, over real DDS, with the node and the sim node as their own processes.

Each case runs once per TF client the node can use: ``builtin`` (the project's TfListener on
tf2_msgs, which a pip-only venv gets from scripts/build_msgs.sh) and ``tf2_ros`` (skipped where no
ROS distro provides it). The node runs in observations mode (no network weights) in the default
``extrinsics_source: tf``, without ``T_cam_lidar``; it is observed only from outside: ~/smpl,
/diagnostics (``skipped: <reason>`` counts) and its log.

* the sim node's /tf_static alone gives a fit as accurate as the static parameter does;
* with no transform published, every frame is skipped with a reason naming both frames, and no
  body is published (no guessed identity); once a test publisher sends a chain camera_optical <-
  base (/tf_static) and base <- lidar (/tf, 20 Hz, stamped), the node looks it up through the
  chain and fits.
"""
import os
import threading
import time

import numpy as np
import pytest
from ros_processes import isolated_ros_env, start_ros_module, stop_process

rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")

from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402

from smplify3d_core.sim.presets import get_preset  # noqa: E402
from smplify3d_ros.extrinsics import builtin_tf_available, tf2_available  # noqa: E402

SIM = "/smplify3d_sim_node"
NODE = "/smplify3d_node"
#: tf2_msgs/msg/TFMessage's RIHS01 type hash as ROS 2 (Jazzy, Kilted) publishes it (`ros2 topic info -v /tf`)
UPSTREAM_TF_MESSAGE_HASH = "RIHS01_e369d0f05a23ae52508854b66f6aa0437f3449d652e8cbf22d5abe85d020f087"
WAIT_S = 180.0  # generous: two processes start and fit on a loaded 2-core machine

BACKENDS = [
    pytest.param("builtin", marks=pytest.mark.skipif(not builtin_tf_available(),
                                                     reason="tf2_msgs is not importable (run scripts/build_msgs.sh)")),
    pytest.param("tf2_ros", marks=pytest.mark.skipif(not tf2_available(), reason="tf2_ros (a ROS 2 distro) is not installed")),
]


def rigid(rotvec, translation):
    from scipy.spatial.transform import Rotation

    T = np.eye(4)
    T[:3, :3] = Rotation.from_rotvec(rotvec).as_matrix()
    T[:3, 3] = translation
    return T


def node_params(backend):
    """The node in observations mode on the sim node's topics; extrinsics left at their default (tf)."""
    return {"image_topic": f"{SIM}/image", "camera_info_topic": f"{SIM}/camera_info", "cloud_topic": f"{SIM}/points",
            "observations_topic": f"{SIM}/observations", "reliable_inputs": "true", "device": "cpu",
            "preset": "humanm3", "publish_markers": "false", "tf_backend": backend}


class Observer:
    """A node in the test process: ~/smpl, the sim's ground truth and the node's /diagnostics."""

    def __init__(self, env):
        from diagnostic_msgs.msg import DiagnosticArray

        from smplify3d_ros.msg import SMPLArray

        os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=int(env["ROS_DOMAIN_ID"]))
        self.node = rclpy.create_node("tf_test_observer", context=self.context)
        self.results, self.truths, self.diagnostics = [], {}, []
        self.node.create_subscription(SMPLArray, f"{NODE}/smpl", self.results.append, 10)
        self.node.create_subscription(SMPLArray, f"{SIM}/ground_truth", lambda m: self.truths.__setitem__(
            (m.header.stamp.sec, m.header.stamp.nanosec), m), 10)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        self.executor = rclpy.executors.SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def _on_diagnostics(self, msg):
        for status in msg.status:
            if status.name.startswith("smplify3d_node"):
                self.diagnostics.append({kv.key: kv.value for kv in status.values})

    def spin_until(self, predicate, what, processes, timeout=WAIT_S):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.1)
            if predicate():
                return
            for process in processes:
                assert process.poll() is None, f"a node exited early:\n{process.stdout.read()}"
        raise AssertionError(f"gave up after {timeout:.0f} s waiting for {what}")

    def fitted(self):
        """Results with persons whose ground truth arrived: [(result, truth)]."""
        return [(r, self.truths[(r.header.stamp.sec, r.header.stamp.nanosec)]) for r in list(self.results)
                if r.persons and (r.header.stamp.sec, r.header.stamp.nanosec) in self.truths]

    def skip_counts(self):
        """The node's latest ``skipped: <reason>`` counts."""
        last = self.diagnostics[-1] if self.diagnostics else {}
        return {k[len("skipped: "):]: int(v) for k, v in last.items() if k.startswith("skipped: ")}

    def close(self):
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


def assert_accurate(result, truth):
    """Every fitted person within 0.15 m mean joint error of the nearest true body (a wrong
    extrinsic puts them metres away)."""
    assert len(result.persons) == len(truth.persons)
    for person in result.persons:
        assert person.valid
        fitted = np.array([[p.x, p.y, p.z] for p in person.joints])
        errors = [np.linalg.norm(fitted - np.array([[p.x, p.y, p.z] for p in t.joints]), axis=1).mean()
                  for t in truth.persons]
        assert min(errors) < 0.15, f"mean joint error {min(errors):.3f} m"


@pytest.fixture
def processes():
    """started(module, params, env) -> Popen; every process is stopped after the test, its log printed."""
    started = []

    def start(module, params, env):
        started.append(start_ros_module(module, params, env))
        return started[-1]

    yield start
    for process in reversed(started):
        print(stop_process(process)[-4000:])


@pytest.mark.parametrize("backend", BACKENDS)
def test_sim_tf_static_alone_gives_an_accurate_fit(backend, processes, body_model_dir):
    env = isolated_ros_env(20 if backend == "builtin" else 21)
    sim = processes("smplify3d_ros.sim_node", {"rate": 1.0, "persons": 1, "scenes": 1, "seed": 3, "sequence": "false"}, env)
    node = processes("smplify3d_ros.node", node_params(backend), env)
    observer = Observer(env)
    try:
        observer.spin_until(lambda: len(observer.fitted()) >= 2, "two fitted frames", [sim, node])
        for result, truth in observer.fitted():
            assert_accurate(result, truth)
        assert not any("TF" in reason for reason in observer.skip_counts()), observer.skip_counts()
        infos = observer.node.get_publishers_info_by_topic("/tf_static")
        assert infos and all(i.topic_type == "tf2_msgs/msg/TFMessage" for i in infos)
        assert str(infos[0].topic_type_hash) == UPSTREAM_TF_MESSAGE_HASH  # the same type on the wire as upstream's
    finally:
        observer.close()
    log = stop_process(node)
    assert ("from the built-in TF listener" if backend == "builtin" else "from tf2_ros") in log, log[-3000:]


class ChainPublisher:
    """camera_optical <- base on /tf_static (once, transient local) and base <- lidar on /tf at 20 Hz
    stamped with the wall clock (the sim node's clock), such that their product is ``T_cam_lidar``."""

    def __init__(self, observer, T_cam_lidar):
        from tf2_msgs.msg import TFMessage

        self.T_cam_base = rigid([-np.pi / 2, 0.1, -np.pi / 2], [0.05, 0.3, -0.2])
        self.T_base_lidar = np.linalg.inv(self.T_cam_base) @ T_cam_lidar
        node = observer.node
        self.static_pub = node.create_publisher(TFMessage, "/tf_static", QoSProfile(
            depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL))
        self.dynamic_pub = node.create_publisher(TFMessage, "/tf", QoSProfile(depth=100,
                                                                               reliability=ReliabilityPolicy.RELIABLE))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def message(parent, child, T, stamp_s):
        from geometry_msgs.msg import TransformStamped
        from tf2_msgs.msg import TFMessage

        from smplify3d_ros.conversions import matrix_to_transform, seconds_to_stamp

        item = TransformStamped(child_frame_id=child, transform=matrix_to_transform(T))
        item.header.frame_id, item.header.stamp = parent, seconds_to_stamp(stamp_s)
        return TFMessage(transforms=[item])

    def start(self):
        self.static_pub.publish(self.message("camera_optical", "base", self.T_cam_base, time.time()))
        self.thread.start()

    def _run(self):
        while not self.stop.wait(0.05):
            self.dynamic_pub.publish(self.message("base", "lidar", self.T_base_lidar, time.time()))

    def close(self):
        self.stop.set()
        self.thread.join(timeout=5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_missing_tf_skips_frames_naming_them_until_a_chain_is_published(backend, processes, body_model_dir):
    env = isolated_ros_env(22 if backend == "builtin" else 23)
    sim = processes("smplify3d_ros.sim_node", {"rate": 2.0, "persons": 1, "scenes": 1, "seed": 4, "sequence": "false",
                                                "publish_tf": "false"}, env)
    node = processes("smplify3d_ros.node", node_params(backend), env)
    observer = Observer(env)
    chain = None
    try:
        # no transform anywhere: frames skipped with a reason that names both frames, no body
        def tf_skips():
            return sum(n for reason, n in observer.skip_counts().items()
                       if reason.startswith("TF missing: camera_optical <- lidar"))

        observer.spin_until(lambda: tf_skips() >= 3, "three frames skipped for 'TF missing'", [sim, node])
        assert not any(r.persons for r in observer.results), "a body was published without a transform"
        reasons = [r for r in observer.skip_counts() if r.startswith("TF missing")]
        assert all("camera_optical" in r and "lidar" in r for r in reasons), reasons
        if backend == "builtin":
            assert any("does not exist" in r for r in reasons), reasons

        # the chain camera_optical <- base <- lidar appears: looked up through base, and fitted
        chain = ChainPublisher(observer, get_preset("humanm3").T_cam_lidar)
        chain.start()
        observer.spin_until(lambda: len(observer.fitted()) >= 2, "two frames fitted through the TF chain", [sim, node])
        for result, truth in observer.fitted():
            assert_accurate(result, truth)
    finally:
        if chain is not None:
            chain.close()
        observer.close()
    log = stop_process(node)
    lines = [line for line in log.splitlines() if "frame skipped" in line and "TF missing" in line]
    assert lines and "camera_optical <- lidar" in lines[0], log[-3000:]
    print("\n".join(lines))
