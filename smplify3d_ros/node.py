"""``smplify3d_node``: SMPL bodies of the people in view, from a camera and a LiDAR.

Subscribes to an image (raw or compressed), its camera_info and a PointCloud2, synchronizes
image and cloud approximately, and fits every person of the newest synchronized frame on one
worker thread. Frames that arrive while the worker is busy replace the waiting one and are
counted as dropped; input callbacks never block. Publishes ``~/smpl`` (SMPLArray),
``~/markers`` (MarkerArray), optionally ``~/overlay`` (Image), and ``/diagnostics``.
Parameters are documented in ``config/robot.yaml``.

Robustness: a frame that cannot be used (no valid camera_info, unsupported encoding, empty or
all-NaN cloud, TF missing, an exception in the fit...) is skipped and counted under its reason;
the first frame skipped for a reason logs one warning, a reason that persists is logged again at
most every ``SKIP_LOG_PERIOD_S`` with the number of frames it skipped, and the counts go to
/diagnostics (``skipped: <reason>``). Clouds with more than ``max_cloud_points`` points are
thinned (every k-th point) before the fit, so a huge cloud costs a bounded time. In
observations mode a frame whose observations hold nobody gives an empty SMPLArray (and deletes
the markers), as a frame without detections does with the front-ends.
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

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from visualization_msgs.msg import MarkerArray

from smplify3d_ros.conversions import (ConversionError, array_to_image, camera_info_to_camera, pointcloud2_to_xyz,
                                       stamp_to_seconds, xyz_to_pointcloud2)
from smplify3d_ros.extrinsics import ExtrinsicsSource
from smplify3d_ros.markers import markers_for_persons
from smplify3d_ros.processing import FrameProcessor
from smplify3d_ros.spin import spin_until_signal
from smplify3d_ros.sync import make_synchronizer

PARAMETERS = {
    "image_topic": "/camera/image_raw",
    "compressed_image": False,
    "camera_info_topic": "/camera/camera_info",
    "cloud_topic": "/lidar/points",
    "observations_topic": "",
    "sync_queue_size": 10,
    "sync_slop": 0.05,
    "reliable_inputs": False,
    "camera_frame": "",
    "lidar_frame": "",
    "extrinsics_source": "tf",
    "T_cam_lidar": [1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0],
    "tf_timeout": 0.05,
    "device": "auto",
    "smpl_model_path": "",
    "gender": "neutral",
    "vitpose_checkpoint": "",
    "cliff_checkpoint": "",
    "preset": "humanm3",
    "max_persons": 8,
    "min_keypoint_score": 0.3,
    "max_cloud_points": 300000,
    "publish_vertices": False,
    "publish_markers": True,
    "publish_overlay": False,
}


class StartupError(RuntimeError):
    """The node cannot start (missing model or checkpoint file, bad parameter)."""


#: Skip reasons that differ only in numbers (stamps, sizes, matrix entries) share one counter and log line.
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d*)?(?:e[-+]?\d+)?", re.IGNORECASE)
#: Distinct skip reasons counted one by one; further ones are counted under "other".
MAX_SKIP_REASONS = 32
#: A reason that persists is logged again, with the number of frames it skipped, at most this often (s).
SKIP_LOG_PERIOD_S = 10.0
#: FrameProcessor's reason when the matching observations hold nobody: that frame gives an empty result.
NOBODY_REASON = "the observations hold no person with an initial estimate"
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
        for name, default in PARAMETERS.items():
            self.declare_parameter(name, default)
        p = {name: self.get_parameter(name).value for name in PARAMETERS}
        self.params = p
        if int(p["max_cloud_points"]) < 1000:
            raise StartupError(f"max_cloud_points must be at least 1000, got {p['max_cloud_points']}")
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
        if p["reliable_inputs"]:
            from rclpy.qos import QoSProfile, ReliabilityPolicy

            input_qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        image_type = CompressedImage if p["compressed_image"] else Image
        image_topic = p["image_topic"] + ("/compressed" if p["compressed_image"] else "")
        self.create_subscription(CameraInfo, p["camera_info_topic"], self._on_camera_info, input_qos)
        self._sync = make_synchronizer(self, [(image_type, image_topic), (PointCloud2, p["cloud_topic"])],
                                       int(p["sync_queue_size"]), float(p["sync_slop"]), self._on_frame, qos=input_qos)
        self.get_logger().info(f"synchronizing {image_topic} and {p['cloud_topic']} with {self._sync.backend} "
                               f"(slop {p['sync_slop']} s, queue {p['sync_queue_size']})")
        self._observations = []
        if p["observations_topic"]:
            from smplify3d_ros.msg import ObservationArray

            self.create_subscription(ObservationArray, p["observations_topic"], self._on_observations, 10)

        from smplify3d_ros.msg import SMPLArray

        self.smpl_pub = self.create_publisher(SMPLArray, "~/smpl", 10)
        self.marker_pub = self.create_publisher(MarkerArray, "~/markers", 10)
        self.overlay_pub = self.create_publisher(Image, "~/overlay", 2) if p["publish_overlay"] else None
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(1.0, self._publish_diagnostics)
        self._worker = threading.Thread(target=self._work, name="smplify3d_worker", daemon=True)
        self._worker.start()

    # -- start-up ------------------------------------------------------------------------------
    def _make_extrinsics(self, p: dict) -> ExtrinsicsSource:
        static = p["T_cam_lidar"] if p["extrinsics_source"] == "static" else None
        try:
            return ExtrinsicsSource(self, p["camera_frame"], p["lidar_frame"], static_matrix=static,
                                    timeout_s=p["tf_timeout"])
        except Exception as error:
            if p["extrinsics_source"] != "tf":
                raise StartupError(str(error)) from error
        try:  # no tf2_ros here: fall back to the static parameter
            source = ExtrinsicsSource(self, p["camera_frame"], p["lidar_frame"], static_matrix=p["T_cam_lidar"],
                                      timeout_s=p["tf_timeout"])
        except Exception as error:
            raise StartupError(str(error)) from error
        self.get_logger().warning("tf2_ros is not available; using the static T_cam_lidar parameter as the "
                                  "camera-LiDAR extrinsic")
        return source

    def _load_models(self, p: dict) -> None:
        from smplify3d_core.body.default_model import default_body_model_dir
        from smplify3d_core.body.model import SMPLBody
        from smplify3d_core.fit.config import load_fit_config
        from smplify3d_core.pipeline import FrontEnds, build_fitter, load_front_ends
        from smplify3d_core.tracking import PelvisTracker

        try:
            body = SMPLBody.from_path(p["smpl_model_path"] or default_body_model_dir(), gender=p["gender"])
            self.fitter = build_fitter(body, load_fit_config(p["preset"]), device=p["device"])
            if p["observations_topic"]:
                keypoints = initial_smpl = None
            else:
                if not p["vitpose_checkpoint"] or not p["cliff_checkpoint"]:
                    raise StartupError(
                        "set the parameters vitpose_checkpoint and cliff_checkpoint to the ViTPose (mmpose model zoo) "
                        "and CLIFF (CLIFF repository release) weight files, or set observations_topic to take "
                        "keypoints and initial estimates from another node")
                keypoints, initial_smpl = load_front_ends(p["vitpose_checkpoint"], p["cliff_checkpoint"], p["device"])
        except (ValueError, FileNotFoundError) as error:
            raise StartupError(str(error)) from error
        self.front_ends = FrontEnds(keypoints, initial_smpl, min_keypoint_score=float(p["min_keypoint_score"]))
        self.processor = FrameProcessor(self.fitter, self.front_ends, int(p["max_persons"]), float(p["sync_slop"]))
        self.tracker = PelvisTracker()
        self.get_logger().info(f"fitting on {self.fitter.device} with preset {p['preset']}; body model "
                               f"{body.data.source}")

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
        image_msg, cloud_msg = frame.image_msg, frame.cloud_msg
        camera = self._camera
        if camera is None and self._camera_error:
            return self._camera_error
        T, why = self.extrinsics.get(cloud_msg.header.stamp, image_msg.header.frame_id, cloud_msg.header.frame_id)
        if T is None:
            return why
        cloud_msg = self._thin_cloud(cloud_msg)
        observations = self._observations_for(image_msg) if self.params["observations_topic"] else None
        outcome = self.processor.process(image_msg, cloud_msg, camera, T, observations)
        if outcome.skip_reason == NOBODY_REASON:  # nobody in view: an empty result, as with the front-ends
            outcome.skip_reason, outcome.fit, outcome.stage_seconds = None, None, {"total": 0.0}
        if outcome.skip_reason:
            return outcome.skip_reason
        self._last_stage_seconds = outcome.stage_seconds
        self._publish(outcome.fit, image_msg.header, outcome.stage_seconds, outcome.image)
        now = time.time()
        self.recent_latencies.append((stamp_to_seconds(image_msg.header.stamp), time.monotonic() - frame.received,
                                      now - stamp_to_seconds(image_msg.header.stamp)))
        return None

    def _observations_for(self, image_msg) -> list:
        """The recent ObservationArrays, after waiting up to OBSERVATION_WAIT_S for one matching the image
        (the detector's message and the synchronized pair travel on different topics, in any order)."""
        stamp, slop = stamp_to_seconds(image_msg.header.stamp), float(self.params["sync_slop"])
        deadline = time.monotonic() + OBSERVATION_WAIT_S
        with self._observations_arrived:
            while True:
                observations = list(self._observations)
                left = deadline - time.monotonic()
                if left <= 0 or self._stop.is_set() or any(
                        abs(stamp_to_seconds(m.header.stamp) - stamp) <= slop for m in observations):
                    return observations
                self._observations_arrived.wait(timeout=left)

    def _thin_cloud(self, cloud_msg):
        """The cloud, or every k-th of its points when it has more than max_cloud_points (bounds the fit time)."""
        limit = int(self.params["max_cloud_points"])
        if int(cloud_msg.width) * int(cloud_msg.height) <= limit:
            return cloud_msg
        xyz = pointcloud2_to_xyz(cloud_msg)
        if len(xyz) <= limit:
            return xyz_to_pointcloud2(xyz, frame_id=cloud_msg.header.frame_id, stamp=cloud_msg.header.stamp)
        step = -(-len(xyz) // limit)
        if not self._thinning_logged:
            self._thinning_logged = True
            self.get_logger().warning(f"the point cloud has {len(xyz)} valid points, more than max_cloud_points "
                                      f"({limit}): fitting every {step}th point (logged once)")
        return xyz_to_pointcloud2(xyz[::step], frame_id=cloud_msg.header.frame_id, stamp=cloud_msg.header.stamp)

    # -- output --------------------------------------------------------------------------------
    def _publish(self, fit, header, stage_seconds: dict, image) -> None:
        from smplify3d_ros.smpl_messages import smpl_array_from_fit

        if fit is None:
            track_ids = []
        else:
            pelvis = fit.result.joints[:, 0].numpy()
            track_ids = self.tracker.update(np.where(fit.result.valid.numpy()[:, None], pelvis, np.nan))
        self.smpl_pub.publish(smpl_array_from_fit(None if fit is None else fit.result, header, track_ids, stage_seconds,
                                                  include_vertices=bool(self.params["publish_vertices"])))
        if self.params["publish_markers"]:
            valid = [] if fit is None else [b for b in range(len(track_ids)) if bool(fit.result.valid[b])]
            markers, self._marker_ids = markers_for_persons(
                [fit.result.vertices[b].numpy() for b in valid], self.fitter.body.faces,
                [track_ids[b] for b in valid], header, self._marker_ids)
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
    rclpy.init(args=args)
    try:
        node = SMPLify3DNode()
    except StartupError as error:
        rclpy.logging.get_logger("smplify3d_node").fatal(f"cannot start: {error}")
        rclpy.try_shutdown()
        return 1
    return spin_until_signal(node, before_destroy=node.shutdown)


if __name__ == "__main__":
    raise SystemExit(main())
