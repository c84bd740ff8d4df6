"""``smplify3d_node``: SMPL bodies of the people in view, from a camera and a LiDAR.

Subscribes to an image (raw or compressed), its camera_info and a PointCloud2, synchronizes
image and cloud approximately, and fits every person of the newest synchronized frame on one
worker thread. Frames that arrive while the worker is busy replace the waiting one and are
counted as dropped; input callbacks never block. Publishes ``~/smpl`` (SMPLArray),
``~/markers`` (MarkerArray), optionally ``~/overlay`` (Image), and ``/diagnostics``.
Parameters: :mod:`smplify3d_ros.params` declares each with a descriptor (``ros2 param describe``);
``config/robot.yaml`` lists them with their defaults.

Robustness: a frame that cannot be used (no valid camera_info, unsupported encoding, empty or
all-NaN cloud, TF missing, an exception in the fit...) is skipped and counted under its reason;
the first frame skipped for a reason logs one warning, a reason that persists is logged again at
most every ``SKIP_LOG_PERIOD_S`` with the number of frames it skipped, and the counts go to
/diagnostics (``skipped: <reason>``). Clouds with more than ``max_cloud_points`` points are
thinned (every k-th point) before use, so a huge cloud costs a bounded time. A frame in which
nobody is found (or whose observations hold nobody to fit) gives an empty SMPLArray and deletes
the markers. The per-frame work is :class:`smplify3d_core.pipeline.FrameProcessor`'s; this node
only converts messages, synchronizes, looks up TF and publishes.
"""
from __future__ import annotations

import rclpy  # noqa: F401  (first: the wheels' bootstrapper sets up the library path)

import re
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass
from typing import Dict, Optional

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from visualization_msgs.msg import MarkerArray

from smplify3d_core.pipeline import FrameOutcome, FrameProcessor, FrameStatus
from smplify3d_core.typed_config import ConfigError
from smplify3d_ros.conversions import ConversionError, array_to_image, camera_info_to_camera
from smplify3d_ros.extrinsics import ExtrinsicsSource
from smplify3d_ros.markers import markers_for_fit
from smplify3d_ros.params import declare_node_parameters
from smplify3d_ros.processing import process_messages
from smplify3d_ros.stamps import stamp_to_seconds
from smplify3d_ros.spin import spin_until_signal
from smplify3d_ros.sync import make_synchronizer

class StartupError(RuntimeError):
    """The node cannot start (missing model or checkpoint file, bad parameter)."""


#: Skip reasons that differ only in numbers (stamps, sizes, matrix entries) share one counter and log line.
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d*)?(?:e[-+]?\d+)?", re.IGNORECASE)
#: Distinct skip reasons counted one by one; further ones are counted under "other".
MAX_SKIP_REASONS = 32
#: A reason that persists is logged again, with the number of frames it skipped, at most this often (s).
SKIP_LOG_PERIOD_S = 10.0
#: In observations mode, how long the worker waits for the image's ObservationArray when the frame came first (s).
OBSERVATION_WAIT_S = 0.3


def skip_reason_key(reason: str) -> str:
    """The counter key of a skip reason: its numbers replaced by '#', at most 160 characters."""
    return _NUMBER.sub("#", str(reason))[:160]


@dataclass
class PendingFrame:
    image_msg: object
    cloud_msg: object
    received: float


class SMPLify3DNode(Node):
    """The ROS 2 node; see the module docstring."""

    def __init__(self, extrinsics: Optional[ExtrinsicsSource] = None, **kwargs) -> None:
        """extrinsics: a prebuilt ExtrinsicsSource (e.g. one on an injected TF buffer, in tests) used
        instead of the one the parameters describe; kwargs go to rclpy's Node (context,
        parameter_overrides, ...)."""
        super().__init__("smplify3d_node", **kwargs)
        try:
            self.settings, self.pipeline_config = declare_node_parameters(self)
        except ConfigError as error:
            raise StartupError(str(error)) from error
        p = self.settings
        self._load_models(p)
        self.extrinsics = extrinsics if extrinsics is not None else self._make_extrinsics(p)
        self.get_logger().info(self.extrinsics.describe())

        self._camera = None
        self._camera_error: Optional[str] = None
        self._lock = threading.Lock()
        self._observations_arrived = threading.Condition(self._lock)
        self._pending: Optional[PendingFrame] = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._busy = False
        self.counters = {"synchronized": 0, "processed": 0, "dropped_busy": 0, "skipped": 0}
        #: skip reason key -> frames skipped for it (at most MAX_SKIP_REASONS keys + "other")
        self.skip_reasons: Dict[str, int] = {}
        self._skip_log: Dict[str, list] = {}  # key -> [last log time, frames skipped since]
        self._last_skip_reason = ""
        self._period_counts = (0, 0)  # (processed, skipped) at the last diagnostics message
        self._exception_types_logged: set = set()
        self._thinning_logged = False
        self._last_stage_seconds: dict = {}
        #: (image stamp s, receive->publish wall time s, stamp->publish latency s) of recent results
        self.recent_latencies: deque = deque(maxlen=50)
        self._marker_ids: set = set()

        input_qos = qos_profile_sensor_data
        if p.reliable_inputs:
            from rclpy.qos import QoSProfile, ReliabilityPolicy

            input_qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        image_type = CompressedImage if p.compressed_image else Image
        image_topic = p.image_topic + ("/compressed" if p.compressed_image else "")
        self.create_subscription(CameraInfo, p.camera_info_topic, self._on_camera_info, input_qos)
        self._sync = make_synchronizer(self, [(image_type, image_topic), (PointCloud2, p.cloud_topic)],
                                       p.sync_queue_size, p.sync_slop, self._on_frame, qos=input_qos)
        self.get_logger().info(f"synchronizing {image_topic} and {p.cloud_topic} with {self._sync.backend} "
                               f"(slop {p.sync_slop} s, queue {p.sync_queue_size})")
        self._observations = []
        if p.observations_topic:
            from smplify3d_ros.msg import ObservationArray

            self.create_subscription(ObservationArray, p.observations_topic, self._on_observations, 10)

        from smplify3d_ros.msg import SMPLArray

        self.smpl_pub = self.create_publisher(SMPLArray, "~/smpl", 10)
        self.marker_pub = self.create_publisher(MarkerArray, "~/markers", 10)
        self.overlay_pub = self.create_publisher(Image, "~/overlay", 2) if p.publish_overlay else None
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(1.0, self._publish_diagnostics)
        self._worker = threading.Thread(target=self._work, name="smplify3d_worker", daemon=True)
        self._worker.start()

    # -- start-up ------------------------------------------------------------------------------
    def _make_extrinsics(self, p) -> ExtrinsicsSource:
        static = list(p.T_cam_lidar) if p.extrinsics_source == "static" else None
        try:
            return ExtrinsicsSource(self, p.camera_frame, p.lidar_frame, static_matrix=static, timeout_s=p.tf_timeout)
        except Exception as error:
            if p.extrinsics_source != "tf":
                raise StartupError(str(error)) from error
        try:  # no tf2_ros here: fall back to the static parameter
            source = ExtrinsicsSource(self, p.camera_frame, p.lidar_frame, static_matrix=list(p.T_cam_lidar),
                                      timeout_s=p.tf_timeout)
        except Exception as error:
            raise StartupError(str(error)) from error
        self.get_logger().warning("tf2_ros is not available; using the static T_cam_lidar parameter as the "
                                  "camera-LiDAR extrinsic")
        return source

    def _load_models(self, p) -> None:
        config = self.pipeline_config
        if not p.observations_topic and not (config.vitpose_checkpoint and config.cliff_checkpoint):
            raise StartupError(
                "set the parameters vitpose_checkpoint and cliff_checkpoint to the ViTPose (mmpose model zoo) "
                "and CLIFF (CLIFF repository release) weight files, or set observations_topic to take "
                "keypoints and initial estimates from another node")
        try:
            self.processor = FrameProcessor.from_config(config)
        except (ValueError, FileNotFoundError) as error:
            raise StartupError(str(error)) from error
        self.fitter = self.processor.fitter
        self.get_logger().info(f"fitting on {self.fitter.device} with preset {config.preset}; body model "
                               f"{self.fitter.body.data.source}")

    # -- callbacks (never block) ----------------------------------------------------------------
    def _on_camera_info(self, msg: CameraInfo) -> None:
        try:
            camera = camera_info_to_camera(msg, logger=self.get_logger())
            error = None
        except Exception as exc:  # ConversionError, or anything else a malformed message provokes
            camera, error = None, str(exc) if isinstance(exc, ConversionError) else \
                f"camera_info unusable: {exc.__class__.__name__}: {exc}"
        self._camera, self._camera_error = camera, error

    def _on_observations(self, msg) -> None:
        with self._observations_arrived:
            self._observations = (self._observations + [msg])[-20:]
            self._observations_arrived.notify_all()

    def _on_frame(self, image_msg, cloud_msg) -> None:
        with self._lock:
            self.counters["synchronized"] += 1
            if self._pending is not None:
                self.counters["dropped_busy"] += 1
            self._pending = PendingFrame(image_msg, cloud_msg, time.monotonic())
        self._wake.set()

    # -- worker --------------------------------------------------------------------------------
    def _work(self) -> None:
        while not self._stop.is_set():
            if not self._wake.wait(timeout=0.2):
                continue
            with self._lock:
                frame, self._pending = self._pending, None
                self._wake.clear()
                self._busy = frame is not None
            if frame is None:
                continue
            try:
                reason = self._process(frame)
            except Exception as error:  # one bad frame must never stop the node
                reason = f"{error.__class__.__name__}: {error}"
                if error.__class__ not in self._exception_types_logged:  # the traceback once per type
                    self._exception_types_logged.add(error.__class__)
                    self.get_logger().error(f"exception while fitting a frame:\n{traceback.format_exc()}")
            finally:
                with self._lock:
                    self._busy = False
            try:
                self._account(reason)
            except Exception:  # pragma: no cover - bookkeeping must not end the worker either
                pass

    def _account(self, reason: Optional[str]) -> None:
        """Count the frame's outcome; log a skip reason the first time and then at most every period."""
        now = time.monotonic()
        if not reason:
            with self._lock:
                self.counters["processed"] += 1
            if self._last_skip_reason:
                self.get_logger().info(f"fitting again after skipped frames (last reason: {self._last_skip_reason})")
                self._last_skip_reason = ""
            return
        key = skip_reason_key(reason)
        with self._lock:
            self.counters["skipped"] += 1
            if key not in self.skip_reasons and len(self.skip_reasons) >= MAX_SKIP_REASONS:
                key = "other"
            self.skip_reasons[key] = self.skip_reasons.get(key, 0) + 1
        self._last_skip_reason = reason
        log = self._skip_log.get(key)
        if log is None:
            self._skip_log[key] = [now, 0]
            self.get_logger().warning(f"frame skipped: {reason}")
            return
        log[1] += 1
        if now - log[0] >= SKIP_LOG_PERIOD_S:
            self.get_logger().warning(f"frame skipped: {reason} ({log[1]} frames skipped for this reason in the "
                                      f"last {now - log[0]:.0f} s; {self.skip_reasons[key]} in all)")
            log[0], log[1] = now, 0

    def _process(self, frame: PendingFrame) -> Optional[str]:
        """Fit one frame and publish; returns why it was skipped, or None."""
        outcome = self._outcome(frame)
        if outcome.status is FrameStatus.SKIPPED:
            return outcome.reason
        self._note_thinning(outcome)
        self._last_stage_seconds = outcome.stage_seconds
        self._publish(outcome, frame.image_msg.header)
        stamp = stamp_to_seconds(frame.image_msg.header.stamp)
        self.recent_latencies.append((stamp, time.monotonic() - frame.received, time.time() - stamp))
        return None

    def _outcome(self, frame: PendingFrame) -> FrameOutcome:
        """Messages -> SensorFrame -> the processor's outcome (skipped when a message is unusable)."""
        image_msg, cloud_msg = frame.image_msg, frame.cloud_msg
        camera = self._camera
        if camera is None:
            return FrameOutcome.skipped(self._camera_error or "no valid camera_info received yet")
        T, why = self.extrinsics.get(cloud_msg.header.stamp, image_msg.header.frame_id, cloud_msg.header.frame_id)
        if T is None:
            return FrameOutcome.skipped(why)
        candidates = self._observations_for(image_msg) if self.settings.observations_topic else None
        return process_messages(self.processor, image_msg, cloud_msg, camera, T, candidates, self.settings.sync_slop)

    def _note_thinning(self, outcome: FrameOutcome) -> None:
        valid, used = outcome.cloud_points
        if used < valid and not self._thinning_logged:
            self._thinning_logged = True
            self.get_logger().warning(f"the point cloud has {valid} valid points, more than max_cloud_points "
                                      f"({self.pipeline_config.max_cloud_points}): fitting every "
                                      f"{-(-valid // self.pipeline_config.max_cloud_points)}th point (logged once)")

    def _observations_for(self, image_msg) -> list:
        """The recent ObservationArrays, after waiting up to OBSERVATION_WAIT_S for one matching the image
        (the detector's message and the synchronized pair travel on different topics, in any order)."""
        stamp, slop = stamp_to_seconds(image_msg.header.stamp), self.settings.sync_slop
        deadline = time.monotonic() + OBSERVATION_WAIT_S
        with self._observations_arrived:
            while True:
                observations = list(self._observations)
                left = deadline - time.monotonic()
                if left <= 0 or self._stop.is_set() or any(
                        abs(stamp_to_seconds(m.header.stamp) - stamp) <= slop for m in observations):
                    return observations
                self._observations_arrived.wait(timeout=left)

    # -- output --------------------------------------------------------------------------------
    def _publish(self, outcome: FrameOutcome, header) -> None:
        from smplify3d_ros.smpl_messages import smpl_array_from_outcome

        fit = outcome.fit
        self.smpl_pub.publish(smpl_array_from_outcome(outcome, header, include_vertices=self.settings.publish_vertices))
        if self.settings.publish_markers:
            markers, self._marker_ids = markers_for_fit(
                None if fit is None else fit.result, self.fitter.body.faces, outcome.track_ids, header,
                self._marker_ids, invalid=self.settings.invalid_markers)
            self.marker_pub.publish(markers)
        if self.overlay_pub is not None and fit is not None:
            from smplify3d_core.outputs import draw_overlay

            overlay = array_to_image(draw_overlay(fit, self.fitter.body.faces), "rgb8", header=header)
            self.overlay_pub.publish(overlay)

    def diagnostic_values(self) -> dict:
        """The /diagnostics key-values: counters, skips per reason, unsynchronized drops, timings."""
        with self._lock:
            counters = dict(self.counters)
            reasons = dict(self.skip_reasons)
            busy = self._busy
        values = {**{k: str(v) for k, v in counters.items()},
                  **{f"seconds_{k}": f"{v:.4f}" for k, v in self._last_stage_seconds.items()},
                  "busy": str(busy).lower(),
                  "sync_backend": self._sync.backend, "unsynchronized_drops": str(self._sync.unsynchronized_drops)}
        if self.recent_latencies:
            values["latency_s"] = f"{self.recent_latencies[-1][2]:.4f}"
        values.update({f"skipped: {k}": str(v) for k, v in reasons.items()})
        return values

    def _publish_diagnostics(self) -> None:
        try:
            values = self.diagnostic_values()
            processed, skipped = self.counters["processed"], self.counters["skipped"]
            recent = (processed - self._period_counts[0], skipped - self._period_counts[1])
            self._period_counts = (processed, skipped)
            status = DiagnosticStatus(name="smplify3d_node: pipeline", hardware_id=str(self.fitter.device))
            # WARN while frames are skipped and none fitted (this period, or ever when nothing happened since)
            failing = (recent[1] > 0 and recent[0] == 0) or (recent == (0, 0) and skipped and not processed)
            status.level = DiagnosticStatus.WARN if failing else DiagnosticStatus.OK
            status.message = (self._last_skip_reason or "frames skipped") if failing else (
                "fitting" if processed else "waiting for synchronized frames")
            status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
            message = DiagnosticArray(status=[status])
            message.header.stamp = self.get_clock().now().to_msg()
            self.diag_pub.publish(message)
        except Exception as error:  # pragma: no cover - diagnostics must never take the node down
            self.get_logger().error(f"cannot publish diagnostics: {error.__class__.__name__}: {error}",
                                    throttle_duration_sec=60.0)

    def shutdown(self) -> None:
        self._stop.set()
        self._wake.set()
        self._worker.join(timeout=5.0)


def main(args=None) -> int:
    import sys

    from smplify3d_ros.params import unknown_parameter_names

    rclpy.init(args=args)
    try:
        unknown = unknown_parameter_names(sys.argv if args is None else args)
        if unknown:
            raise StartupError(f"unknown parameters {unknown}: smplify3d_node has no such parameter (a typo?); "
                               "config/robot.yaml lists every parameter, `ros2 param describe` documents them")
        node = SMPLify3DNode()
    except (StartupError, ConfigError) as error:
        rclpy.logging.get_logger("smplify3d_node").fatal(f"cannot start: {error}")
        rclpy.try_shutdown()
        return 1
    return spin_until_signal(node, before_destroy=node.shutdown)


if __name__ == "__main__":
    raise SystemExit(main())
