"""``smplify3d_node``: SMPL bodies of the people in view, from a camera and a LiDAR.

A lifecycle (managed) node: ``configure`` checks the parameters' files and loads the body model,
fit preset and networks and the extrinsics source; ``activate`` subscribes, creates the publishers
and starts the worker; ``deactivate`` and ``cleanup`` release them again. With ``autostart`` (the
default) the node configures and activates itself, so ``ros2 run`` and the launch files need one
command; with ``autostart: false`` a lifecycle manager (``ros2 lifecycle set``, nav2's manager)
drives it. /diagnostics is published in every state.

Subscribes to an image (raw or compressed), its camera_info and a PointCloud2, synchronizes
image and cloud approximately, and fits every person of the newest synchronized frame on one
worker thread. Frames that arrive while the worker is busy replace the waiting one and are
counted as dropped; input callbacks never block. A fitted frame goes out through the fixed-lag
output (:mod:`smplify3d_core.fixed_lag`, ``tracker.output_lag_frames``): by default when the next
frame has been fitted (averaged with it and the one before), at once when it has no frame within
``tracker.max_warm_gap`` before it (it can never be averaged) or when the next frame is too far
away in time to be averaged with, and after ``output_hold`` s without a new fitted frame (the end
of a stream) or at ``deactivate``. Publishes ``~/smpl`` (SMPLArray),
``~/markers`` (MarkerArray), optionally ``~/overlay`` (Image), and ``/diagnostics``.
Parameters: :mod:`smplify3d_ros.params` declares each with a descriptor (``ros2 param describe``);
``config/robot.yaml`` lists them with their defaults.

Robustness: a frame that cannot be used (no valid camera_info, a camera_info of another camera,
no frame id, unsupported encoding, empty, all-NaN or not-metric cloud, TF missing, an exception in
the fit...) is skipped and counted under its reason; messages the synchronizer drops (duplicate,
out-of-order or zero stamps, no partner within the slop) are counted under theirs. The first
event of a reason logs one warning, a reason that persists is logged again at most every
``SKIP_LOG_PERIOD_S`` with its count, and the counts go to /diagnostics (``skipped: <reason>``,
``dropped: <reason> (<topic>)``). A jump back in time on the inputs (a looping bag, a restarted
simulator, a clock step, one message stamped in the future) restarts the synchronizer with a
warning. Clouds with more than ``max_cloud_points`` points are thinned (every k-th point) before
use, so a huge cloud costs a bounded time. A frame in which nobody is found (or whose observations
hold nobody to fit) gives an empty SMPLArray and deletes the markers.

/diagnostics: OK while frames are fitted; WARN when no synchronized frame arrived for
``input_timeout`` s; ERROR when frames arrive but none was fitted for as long (every one skipped).
Once configured, its ``front_ends`` key (and one start-up log line) says which front-ends run, the
ViTPose variant and CLIFF encoder read from the checkpoints: e.g. "ViTPose-S (flip test off),
CLIFF-Res50", or "keypoints from observations, initial estimates from observations".

Shutdown: SIGTERM or SIGINT at any time ends the process with exit code 0: during start-up the
model loading is abandoned, during a fit the optimizer stops before its next step.

Frames: the ``camera_frame`` / ``lidar_frame`` parameters, when set, override the messages'
``header.frame_id`` for the TF lookups and the outputs' frame. ``tracking_frame`` (e.g. ``odom``):
the tracker follows the people in that fixed frame, camera -> tracking frame being looked up on TF
at each image's stamp (empty: the camera frame, where the robot's own motion looks like the
people's). ``target_frame``: ~/smpl and ~/markers are published in that frame (bodies moved
rigidly, :func:`smplify3d_core.fit.frames.transform_fit_result`; ~/overlay stays on the image).
Without a transform for either, the frame is skipped with a reason naming the frames. These
lookups use the extrinsics' TF listener, or one of their own when the extrinsics are static. The per-frame work is
:class:`smplify3d_core.pipeline.FrameProcessor`'s; this node only converts messages, synchronizes,
looks up TF and publishes.
"""
from __future__ import annotations

import rclpy  # noqa: F401  (first: the wheels' bootstrapper sets up the library path)

import os
import re
import signal
import sys
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import numpy as np

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from smplify3d_core.pipeline import FitCancelled, FrameOutcome, FrameProcessor, FrameStatus
from smplify3d_core.typed_config import ConfigError
from smplify3d_ros.conversions import ConversionError, array_to_image, camera_info_to_camera
from smplify3d_ros.extrinsics import ExtrinsicsSource
from smplify3d_ros.markers import markers_for_fit
from smplify3d_ros.params import declare_node_parameters
from smplify3d_ros.processing import lookup_frame, outcome_in_frame, process_messages
from smplify3d_ros.stamps import stamp_to_seconds
from smplify3d_ros.spin import spin_until_signal
from smplify3d_ros.sync import DROP_REASONS, make_synchronizer, message_filters_available


class StartupError(RuntimeError):
    """The node cannot start (missing model or checkpoint file, bad parameter)."""


class ShutdownRequested(BaseException):
    """SIGTERM or SIGINT arrived while the node was starting (a BaseException: no ``except Exception`` in
    the loading code may swallow it)."""


#: Skip reasons that differ only in numbers (stamps, sizes, matrix entries) share one counter and log line.
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d*)?(?:e[-+]?\d+)?", re.IGNORECASE)
#: Distinct skip reasons counted one by one; further ones are counted under "other".
MAX_SKIP_REASONS = 32
#: A reason that persists is logged again, with the number of frames it skipped, at most this often (s).
SKIP_LOG_PERIOD_S = 10.0
#: How the synchronizer's drop reasons are logged: "repeat" (first time, then every SKIP_LOG_PERIOD_S with the
#: count: anomalies of the inputs), "once" (normal with topics at different rates, but worth one line),
#: "never" (normal: a faster topic's older messages; counted only). The counts are on /diagnostics either way.
SYNC_DROP_LOGGING = {"late": "repeat", "zero_stamp": "repeat", "headerless": "repeat", "future_stamp": "repeat",
                     "unmatched": "once", "superseded": "never", "time_jump": "never"}
#: How long shutdown waits for the worker to leave its fit (it stops before the next optimizer step), s.
WORKER_JOIN_TIMEOUT_S = 1.5


def skip_reason_key(reason: str) -> str:
    """The counter key of a skip reason: its numbers replaced by '#', at most 160 characters."""
    return _NUMBER.sub("#", str(reason))[:160]


@dataclass
class PendingFrame:
    image_msg: object
    cloud_msg: object
    received: float


class SMPLify3DNode(LifecycleNode):
    """The ROS 2 node; see the module docstring."""

    def __init__(self, extrinsics: Optional[ExtrinsicsSource] = None, **kwargs) -> None:
        """extrinsics: a prebuilt ExtrinsicsSource (e.g. one on an injected TF buffer, in tests) used
        instead of the one the parameters describe; kwargs go to rclpy's Node (context,
        parameter_overrides, ...). Raises StartupError for a bad parameter, and with ``autostart``
        when configuring or activating fails."""
        super().__init__("smplify3d_node", **kwargs)
        try:
            self.settings, self.pipeline_config = declare_node_parameters(self)
        except ConfigError as error:
            raise StartupError(str(error)) from error
        self._given_extrinsics = extrinsics
        self.processor: Optional[FrameProcessor] = None
        self.fitter = None
        self.extrinsics: Optional[ExtrinsicsSource] = None
        #: TF lookups camera -> tracking_frame / target_frame (the extrinsics' own source in tf mode); None unset
        self.frames_tf: Optional[ExtrinsicsSource] = None
        self._sync = None
        self._inputs: list = []  # subscriptions besides the synchronizer's
        self.smpl_pub = self.marker_pub = self.overlay_pub = None
        self._worker: Optional[threading.Thread] = None
        self._transition_error = ""
        self._observations: list = []

        self._camera = None  # (PinholeCamera, camera_info frame_id) of the latest usable camera_info
        self._camera_error: Optional[str] = None
        self._lock = threading.Lock()
        self._observations_arrived = threading.Condition(self._lock)
        self._pending: Optional[PendingFrame] = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._busy = False
        #: tracker counters: track_births / track_deaths (tracks begun / ended), warm_fits / cold_fits (published
        #: bodies fitted from their track's prediction / from scratch, restarts included), restarts (warm fits
        #: that failed the verdict and were fitted again cold)
        self.counters = {"synchronized": 0, "processed": 0, "dropped_busy": 0, "skipped": 0, "time_jumps": 0,
                         "valid_bodies": 0, "invalid_bodies": 0, "track_births": 0, "track_deaths": 0,
                         "warm_fits": 0, "cold_fits": 0, "restarts": 0}
        #: skip reason key -> frames skipped for it (at most MAX_SKIP_REASONS keys + "other")
        self.skip_reasons: Dict[str, int] = {}
        #: "<reason> (<topic>)" -> messages the synchronizer dropped for it
        self.drop_reasons: Dict[str, int] = {}
        #: flag -> invalid bodies published with it
        self.invalid_flags: Dict[str, int] = {}
        self._event_log: Dict[str, list] = {}  # key -> [last log time, events since]
        self._log_lock = threading.Lock()
        self._last_skip_reason = ""
        started = time.monotonic()
        #: monotonic times of the last synchronized, fitted and skipped frame (start-up time for the first)
        self._last_event = {"synchronized": started, "processed": None, "skipped": None}
        self._exception_types_logged: set = set()
        self._thinning_logged = False
        self._last_stage_seconds: dict = {}
        #: (image stamp s, receive->publish wall time s, stamp->publish latency s) of recent results
        self.recent_latencies: deque = deque(maxlen=50)
        self._marker_ids: set = set()
        self._held_since = time.monotonic()  # when the fixed-lag output last took a frame
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(1.0, self._publish_diagnostics)
        if self.settings.autostart:
            self.start()

    # -- lifecycle -----------------------------------------------------------------------------
    def _lifecycle_label(self) -> str:
        """unconfigured, inactive or active."""
        if self._sync is not None:
            return "active"
        return "inactive" if self.processor is not None else "unconfigured"

    def start(self) -> None:
        """configure + activate (what ``autostart`` does); StartupError naming the reason when one fails."""
        for name, trigger in (("configure", self.trigger_configure), ("activate", self.trigger_activate)):
            if trigger() != TransitionCallbackReturn.SUCCESS:
                raise StartupError(self._transition_error or f"the {name} transition failed")

    def on_configure(self, state) -> TransitionCallbackReturn:
        """Load the models and the extrinsics source (the parameters were checked when declared)."""
        try:
            if self.settings.sync_backend == "message_filters" and not message_filters_available():
                raise StartupError("sync_backend 'message_filters': message_filters is not installed (it comes with "
                                   "a ROS 2 distro); use auto or builtin")
            self._load_models(self.settings)
            self.extrinsics = self._given_extrinsics or self._make_extrinsics(self.settings)
            self.frames_tf = self._make_frames_tf(self.settings)
        except StartupError as error:
            self._transition_error = str(error)
            if not self.settings.autostart:  # with autostart, main() reports it once ("cannot start: ...")
                self.get_logger().error(f"configure failed: {error}")
            self.processor = self.fitter = None
            self._release_tf()
            return TransitionCallbackReturn.FAILURE
        self.get_logger().info(self.extrinsics.describe())
        via = "the extrinsics' TF listener" if self.frames_tf is self.extrinsics else "a TF listener of its own"
        for name in ("tracking_frame", "target_frame"):
            if getattr(self.settings, name):
                self.get_logger().info(f"{name} {getattr(self.settings, name)}: camera -> it from TF at each "
                                       f"image's stamp ({via})")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state) -> TransitionCallbackReturn:
        """Subscribe to the inputs, create the publishers and start the worker."""
        self._create_inputs_and_outputs(self.settings)
        with self._lock:
            self._last_event["synchronized"] = time.monotonic()
        self._stop.clear()
        self._worker = threading.Thread(target=self._work, name="smplify3d_worker", daemon=True)
        self._worker.start()
        return super().on_activate(state)

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        """Stop the worker (a running fit is cancelled), publish the frame it held, unsubscribe and
        remove the publishers."""
        self.shutdown()
        if not self.worker_alive:
            try:
                self._flush_held()
            except Exception as error:  # pragma: no cover - deactivating must not fail on a last publish
                self.get_logger().warning(f"could not publish the held frame: {error}")
        for subscription in self._inputs:
            self.destroy_subscription(subscription)
        self._inputs = []
        if self._sync is not None:
            self._sync.destroy(self)
            self._sync = None
        for publisher in (self.smpl_pub, self.marker_pub, self.overlay_pub):
            if publisher is not None:
                self.destroy_publisher(publisher)
        self.smpl_pub = self.marker_pub = self.overlay_pub = None
        with self._lock:
            self._pending = None
        return super().on_deactivate(state)

    def on_cleanup(self, state) -> TransitionCallbackReturn:
        """Release the models and the TF listeners."""
        self._release_tf()
        self.processor = self.fitter = None
        self._camera = None
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state) -> TransitionCallbackReturn:
        if self._sync is not None:
            self.on_deactivate(state)
        if self.processor is not None:
            self.on_cleanup(state)
        return TransitionCallbackReturn.SUCCESS

    def _create_inputs_and_outputs(self, p) -> None:
        input_qos = qos_profile_sensor_data
        if p.reliable_inputs:
            from rclpy.qos import QoSProfile, ReliabilityPolicy

            input_qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        image_type = CompressedImage if p.compressed_image else Image
        image_topic = p.image_topic + ("/compressed" if p.compressed_image else "")
        self._inputs = [self.create_subscription(CameraInfo, p.camera_info_topic, self._on_camera_info, input_qos)]
        self._sync = make_synchronizer(self, [(image_type, image_topic), (PointCloud2, p.cloud_topic)],
                                       p.sync_queue_size, p.sync_slop, self._on_frame, qos=input_qos,
                                       prefer_message_filters=p.sync_backend != "builtin",
                                       time_jump=p.sync_time_jump, on_drop=self._on_sync_drop,
                                       max_future=p.max_stamp_future or None,
                                       on_jump=self._on_time_jump)
        self.get_logger().info(f"synchronizing {image_topic} and {p.cloud_topic} with {self._sync.backend} "
                               f"(slop {p.sync_slop} s, queue {p.sync_queue_size})")
        self._observations = []
        if p.observations_topic:
            from smplify3d_ros.msg import ObservationArray

            self._inputs.append(self.create_subscription(ObservationArray, p.observations_topic,
                                                         self._on_observations, 10))

        from smplify3d_ros.msg import SMPLArray

        self.smpl_pub = self.create_publisher(SMPLArray, "~/smpl", 10)
        self.marker_pub = self.create_publisher(MarkerArray, "~/markers", 10)
        self.overlay_pub = self.create_publisher(Image, "~/overlay", 2) if p.publish_overlay else None

    def _release_tf(self) -> None:
        """Close the TF listeners this node made (not an injected source) and forget both sources."""
        for source in {id(s): s for s in (self.frames_tf, self.extrinsics) if s is not None}.values():
            if source is not self._given_extrinsics:
                source.close()
        self.extrinsics = self.frames_tf = None

    # -- start-up ------------------------------------------------------------------------------
    def _make_frames_tf(self, p) -> Optional[ExtrinsicsSource]:
        """The TF source of the tracking_frame / target_frame lookups: None when neither is set, the
        extrinsics' source when it uses TF, else a TF-mode source of its own (static extrinsics have no listener)."""
        if not (p.tracking_frame or p.target_frame):
            return None
        if self.extrinsics is not None and self.extrinsics.mode == "tf":
            return self.extrinsics
        try:
            return ExtrinsicsSource(self, timeout_s=p.tf_timeout, tf_backend=p.tf_backend)
        except Exception as error:
            raise StartupError(f"tracking_frame / target_frame need TF: {error}") from error

    def _make_extrinsics(self, p) -> ExtrinsicsSource:
        """static: the T_cam_lidar parameter; tf: tf2_ros, else the built-in TF listener (never a guessed matrix)."""
        static = list(p.T_cam_lidar) if p.extrinsics_source == "static" else None
        try:
            return ExtrinsicsSource(self, p.camera_frame, p.lidar_frame, static_matrix=static, timeout_s=p.tf_timeout,
                                    tf_backend=p.tf_backend)
        except Exception as error:
            raise StartupError(str(error)) from error

    def _load_models(self, p) -> None:
        config = self.pipeline_config
        if not p.observations_topic and not (config.vitpose_checkpoint and config.cliff_checkpoint):
            raise StartupError(
                "set the parameters vitpose_checkpoint and cliff_checkpoint to the ViTPose (mmpose model zoo) "
                "and CLIFF (CLIFF repository release) weight files, or set observations_topic to take "
                "keypoints and initial estimates from another node")
        self.get_logger().info(f"loading the body model, fit preset {config.preset} and the networks")
        try:
            self.processor = FrameProcessor.from_config(config)
        except (ValueError, FileNotFoundError) as error:
            raise StartupError(str(error)) from error
        self.fitter = self.processor.fitter
        self.get_logger().info(f"fitting on {self.fitter.device} with preset {config.preset}; body model "
                               f"{self.fitter.body.data.source}")
        self.get_logger().info(f"front-ends: {self.processor.front_ends.describe()}")

    # -- callbacks (never block) ----------------------------------------------------------------
    def _on_camera_info(self, msg: CameraInfo) -> None:
        try:
            camera = camera_info_to_camera(msg, logger=self.get_logger())
            error = None
        except Exception as exc:  # ConversionError, or anything else a malformed message provokes
            camera, error = None, str(exc) if isinstance(exc, ConversionError) else \
                f"camera_info unusable: {exc.__class__.__name__}: {exc}"
        self._camera, self._camera_error = (None if camera is None else (camera, msg.header.frame_id)), error

    def _on_sync_drop(self, topic: str, reason: str) -> None:
        """Count a message the synchronizer dropped; log the anomalous reasons (see SYNC_DROP_LOGGING)."""
        key = f"{reason} ({topic})"
        with self._lock:
            if key not in self.drop_reasons and len(self.drop_reasons) >= MAX_SKIP_REASONS:
                key = "other"
            self.drop_reasons[key] = self.drop_reasons.get(key, 0) + 1
        logging = SYNC_DROP_LOGGING.get(reason, "repeat")
        if logging != "never":
            self._log_event("dropped: " + key, f"message dropped on {topic}: {DROP_REASONS.get(reason, reason)}",
                            repeat=logging == "repeat")

    def _on_time_jump(self, topic: str, seconds_back: float) -> None:
        with self._lock:
            self.counters["time_jumps"] += 1
        self.get_logger().warning(
            f"time jumped back by {seconds_back:.3f} s on {topic} (a looping bag, a restarted simulator, a clock "
            "step, or an earlier message stamped in the future): the synchronizer starts again from this message")

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
            self._last_event["synchronized"] = self._pending.received
        self._wake.set()

    # -- worker --------------------------------------------------------------------------------
    def _work(self) -> None:
        while not self._stop.is_set():
            if not self._wake.wait(timeout=0.2):
                try:
                    self._flush_held(idle_for=self.settings.output_hold)
                except Exception as error:  # pragma: no cover - publishing must not end the worker
                    self._log_event("flush", f"could not publish the held frame: {error}")
                continue
            with self._lock:
                frame, self._pending = self._pending, None
                self._wake.clear()
                self._busy = frame is not None
            if frame is None:
                continue
            try:
                reason = self._process(frame)
            except FitCancelled:
                break
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
                self._flush_held(idle_for=self.settings.output_hold)  # frames keep coming, all skipped
            except Exception:  # pragma: no cover - bookkeeping must not end the worker either
                pass

    def _account(self, reason: Optional[str]) -> None:
        """Count the frame's outcome; log a skip reason the first time and then at most every period."""
        now = time.monotonic()
        if not reason:
            with self._lock:
                self.counters["processed"] += 1
                self._last_event["processed"] = now
            if self._last_skip_reason:
                self.get_logger().info(f"fitting again after skipped frames (last reason: {self._last_skip_reason})")
                self._last_skip_reason = ""
            return
        key = skip_reason_key(reason)
        with self._lock:
            self.counters["skipped"] += 1
            self._last_event["skipped"] = now
            if key not in self.skip_reasons and len(self.skip_reasons) >= MAX_SKIP_REASONS:
                key = "other"
            self.skip_reasons[key] = self.skip_reasons.get(key, 0) + 1
        self._last_skip_reason = reason
        self._log_event("skipped: " + key, f"frame skipped: {reason}")

    def _log_event(self, key: str, message: str, repeat: bool = True) -> None:
        """Warn with ``message`` the first time ``key`` happens, then (``repeat``) at most every
        SKIP_LOG_PERIOD_S with the count."""
        now = time.monotonic()
        with self._log_lock:
            log = self._event_log.get(key)
            if log is None:
                self._event_log[key] = [now, 0]
                text = message
            else:
                log[1] += 1
                if not repeat or now - log[0] < SKIP_LOG_PERIOD_S:
                    return
                text = f"{message} ({log[1]} times in the last {now - log[0]:.0f} s)"
                log[0], log[1] = now, 0
        self.get_logger().warning(text)

    def _process(self, frame: PendingFrame) -> Optional[str]:
        """Fit one frame and publish; returns why it was skipped, or None."""
        # a held frame that this one cannot be the neighbour of goes out now, not after this fit
        self._publish_released(self.processor.output.expect(stamp_to_seconds(frame.image_msg.header.stamp)))
        outcome, T_target_cam = self._outcome(frame)
        if outcome.status is FrameStatus.SKIPPED:
            return outcome.reason
        self._note_thinning(outcome)
        self._last_stage_seconds = outcome.stage_seconds
        self._count_bodies(outcome)
        self._count_tracks(outcome)
        camera_header = Header(stamp=frame.image_msg.header.stamp, frame_id=self._output_frame(frame))
        # with tracker.output_lag_frames 1 this publishes the frame before (averaged), and holds this one
        self._publish_released(self.processor.output.push(outcome, (camera_header, T_target_cam, frame)))
        self._held_since = time.monotonic()
        return None

    def _publish_released(self, released) -> None:
        """Publish the (outcome, (camera header, T_target_cam, pending frame)) pairs the fixed-lag output
        released, and note their latencies."""
        for outcome, (camera_header, T_target_cam, frame) in released:
            self._publish(outcome, camera_header, T_target_cam)
            stamp = stamp_to_seconds(frame.image_msg.header.stamp)
            self.recent_latencies.append((stamp, time.monotonic() - frame.received, time.time() - stamp))

    def _flush_held(self, idle_for: Optional[float] = None) -> None:
        """Publish the frame the fixed-lag output holds, as it is, when no new frame has been fitted for
        ``idle_for`` seconds (None: now)."""
        processor = self.processor
        if processor is None or not processor.output.holding:
            return
        if idle_for is not None and time.monotonic() - self._held_since < idle_for:
            return
        self._publish_released(processor.output.flush())

    def _output_frame(self, frame: PendingFrame) -> str:
        """The camera optical frame of the frame's bodies: the camera_frame parameter, else the image's frame_id."""
        return self.settings.camera_frame or frame.image_msg.header.frame_id

    def _outcome(self, frame: PendingFrame) -> Tuple[FrameOutcome, Optional[np.ndarray]]:
        """Messages -> SensorFrame -> the processor's outcome (skipped when a message is unusable), and
        T_target_camera (4, 4) at the image's stamp (None: the outputs stay in the camera frame)."""
        outcome, T_target_cam = self._fitted_outcome(frame)
        return outcome, (T_target_cam if outcome.status is not FrameStatus.SKIPPED else None)

    def _fitted_outcome(self, frame: PendingFrame) -> Tuple[FrameOutcome, Optional[np.ndarray]]:
        image_msg, cloud_msg = frame.image_msg, frame.cloud_msg
        camera = self._camera
        if camera is None:
            return FrameOutcome.skipped(self._camera_error or "no valid camera_info received yet"), None
        camera, info_frame = camera
        camera_frame = self._output_frame(frame)
        if not camera_frame:
            return FrameOutcome.skipped("the image has no header.frame_id and the camera_frame parameter is empty: "
                                        "the bodies would have no frame"), None
        image_frame = image_msg.header.frame_id
        if info_frame and image_frame and info_frame != image_frame:
            return FrameOutcome.skipped(f"camera_info is for frame '{info_frame}' but the image is in '{image_frame}' "
                                        "(camera_info_topic of another camera?)"), None
        lidar_frame = self.settings.lidar_frame or cloud_msg.header.frame_id
        if self.extrinsics.mode != "static" and not lidar_frame:
            return FrameOutcome.skipped("the cloud has no header.frame_id and the lidar_frame parameter is empty: "
                                        "no TF lookup is possible"), None
        T, why = self.extrinsics.get(cloud_msg.header.stamp, camera_frame, lidar_frame)
        if T is None:
            return FrameOutcome.skipped(why), None
        transforms = {}
        for name in ("tracking_frame", "target_frame"):
            transforms[name], why = lookup_frame(self.frames_tf, name, getattr(self.settings, name), camera_frame,
                                                 image_msg.header.stamp)
            if why:
                return FrameOutcome.skipped(why), None
        candidates = self._observations_for(image_msg) if self.settings.observations_topic else None
        outcome = process_messages(self.processor, image_msg, cloud_msg, camera, T, candidates, self.settings.sync_slop,
                                   should_stop=self._stop.is_set, T_track_cam=transforms["tracking_frame"])
        return outcome, transforms["target_frame"]

    def _count_bodies(self, outcome: FrameOutcome) -> None:
        if outcome.fit is None:
            return
        result = outcome.fit.result
        with self._lock:
            for b in range(len(outcome.track_ids)):
                if bool(result.valid[b]):
                    self.counters["valid_bodies"] += 1
                    continue
                self.counters["invalid_bodies"] += 1
                for flag in result.flags[b] or ["unflagged"]:
                    if flag in self.invalid_flags or len(self.invalid_flags) < MAX_SKIP_REASONS:
                        self.invalid_flags[flag] = self.invalid_flags.get(flag, 0) + 1

    def _count_tracks(self, outcome: FrameOutcome) -> None:
        """Add the frame's track births and deaths and its warm, cold and restarted fits to the counters."""
        tracker = self.processor.tracker
        with self._lock:
            self.counters["track_births"] += len(tracker.births)
            self.counters["track_deaths"] += len(tracker.deaths)
            for track in outcome.tracks:
                self.counters["warm_fits" if track.warm_started else "cold_fits"] += 1
                self.counters["restarts"] += int(track.restarted)

    def _note_thinning(self, outcome: FrameOutcome) -> None:
        valid, used = outcome.cloud_points
        if used < valid and not self._thinning_logged:
            self._thinning_logged = True
            self.get_logger().warning(f"the point cloud has {valid} valid points, more than max_cloud_points "
                                      f"({self.pipeline_config.max_cloud_points}): fitting every "
                                      f"{-(-valid // self.pipeline_config.max_cloud_points)}th point (logged once)")

    def _observations_for(self, image_msg) -> list:
        """The recent ObservationArrays, after waiting up to ``observation_wait`` s for one matching the image
        (the detector's message and the synchronized pair travel on different topics, in any order)."""
        stamp, slop = stamp_to_seconds(image_msg.header.stamp), self.settings.sync_slop
        deadline = time.monotonic() + self.settings.observation_wait
        with self._observations_arrived:
            while True:
                observations = list(self._observations)
                left = deadline - time.monotonic()
                if left <= 0 or self._stop.is_set() or any(
                        abs(stamp_to_seconds(m.header.stamp) - stamp) <= slop for m in observations):
                    return observations
                self._observations_arrived.wait(timeout=left)

    # -- output --------------------------------------------------------------------------------
    def _publish(self, outcome: FrameOutcome, camera_header, T_target_cam: Optional[np.ndarray] = None) -> None:
        """~/smpl and ~/markers in target_frame (``camera_header``'s frame when ``T_target_cam`` is None),
        ~/overlay on the image (``camera_header``)."""
        from smplify3d_ros.smpl_messages import smpl_array_from_outcome

        header = camera_header
        if T_target_cam is not None:
            header = Header(stamp=camera_header.stamp, frame_id=self.settings.target_frame)
        published = outcome_in_frame(outcome, self.fitter, T_target_cam)
        self.smpl_pub.publish(smpl_array_from_outcome(published, header, include_vertices=self.settings.publish_vertices))
        if self.settings.publish_markers:
            markers, self._marker_ids = markers_for_fit(
                None if published.fit is None else published.fit.result, self.fitter.body.faces, outcome.track_ids,
                header, self._marker_ids, invalid=self.settings.invalid_markers)
            self.marker_pub.publish(markers)
        fit = outcome.fit
        if self.overlay_pub is not None and fit is not None:
            from smplify3d_core.outputs import draw_overlay

            overlay = array_to_image(draw_overlay(fit, self.fitter.body.faces), "rgb8", header=camera_header)
            self.overlay_pub.publish(overlay)

    def diagnostic_values(self) -> dict:
        """The /diagnostics key-values: counters, skips per reason, unsynchronized drops, timings."""
        with self._lock:
            counters = dict(self.counters)
            reasons = dict(self.skip_reasons)
            drops = dict(self.drop_reasons)
            flags = dict(self.invalid_flags)
            busy = self._busy
        values = {**{k: str(v) for k, v in counters.items()},
                  **{f"seconds_{k}": f"{v:.4f}" for k, v in self._last_stage_seconds.items()},
                  "busy": str(busy).lower(),
                  "tracks_alive": str(len(self.processor.tracker.tracks) if self.processor is not None else 0),
                  "lifecycle_state": self._lifecycle_label()}
        if self.processor is not None:  # which networks run (read from the checkpoints), e.g. ViTPose-S, CLIFF-Res50
            values["front_ends"] = self.processor.front_ends.describe()
        if self._sync is not None:
            values.update({"sync_backend": self._sync.backend,
                           "unsynchronized_drops": str(self._sync.unsynchronized_drops)})
        if self.recent_latencies:
            values["latency_s"] = f"{self.recent_latencies[-1][2]:.4f}"
        values.update({f"skipped: {k}": str(v) for k, v in reasons.items()})
        values.update({f"dropped: {k}": str(v) for k, v in drops.items()})
        values.update({f"invalid: {k}": str(v) for k, v in flags.items()})
        return values

    def diagnostic_level(self, now: Optional[float] = None):
        """(level, message) of the node's status: WARN without synchronized frames for ``input_timeout`` s,
        ERROR when frames arrive but none was fitted for as long, OK otherwise."""
        now = time.monotonic() if now is None else now
        if self._sync is None:
            return DiagnosticStatus.OK, f"{self._lifecycle_label()}: not processing (lifecycle transition 'activate' starts it)"
        timeout = self.settings.input_timeout
        with self._lock:
            last = dict(self._last_event)
            busy = self._busy
            synchronized = self.counters["synchronized"]
        silent = now - last["synchronized"]
        if silent > timeout:
            what = "since start-up" if synchronized == 0 else "for"
            return DiagnosticStatus.WARN, (f"no synchronized image and cloud {what} {silent:.0f} s: check that both "
                                           "topics are published with close stamps (dropped: counts say why)")
        fitted_recently = last["processed"] is not None and now - last["processed"] <= timeout
        if last["skipped"] is not None and now - last["skipped"] <= timeout and not fitted_recently:
            return DiagnosticStatus.ERROR, f"frames arrive but none was fitted for {timeout:g} s: {self._last_skip_reason}"
        if last["processed"] is None:
            return DiagnosticStatus.OK, "fitting the first frame" if busy or synchronized else "waiting for frames"
        return DiagnosticStatus.OK, "fitting"

    def _publish_diagnostics(self) -> None:
        try:
            values = self.diagnostic_values()
            device = self.fitter.device if self.fitter is not None else self.pipeline_config.device
            status = DiagnosticStatus(name="smplify3d_node: pipeline", hardware_id=str(device))
            status.level, status.message = self.diagnostic_level()
            status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
            message = DiagnosticArray(status=[status])
            message.header.stamp = self.get_clock().now().to_msg()
            self.diag_pub.publish(message)
        except Exception as error:  # pragma: no cover - diagnostics must never take the node down
            self.get_logger().error(f"cannot publish diagnostics: {error.__class__.__name__}: {error}",
                                    throttle_duration_sec=60.0)

    def shutdown(self) -> bool:
        """Stop the worker (a running fit stops before its next optimizer step); True when it has ended."""
        self._stop.set()
        self._wake.set()
        with self._observations_arrived:
            self._observations_arrived.notify_all()
        if self._worker is not None:
            self._worker.join(timeout=WORKER_JOIN_TIMEOUT_S)
        return not self.worker_alive

    @property
    def worker_alive(self) -> bool:
        """True while the worker thread runs (after `shutdown`, when it did not stop in time)."""
        return self._worker is not None and self._worker.is_alive()


def main(args=None) -> int:
    """``smplify3d_node``: exit code 0 after SIGTERM/SIGINT (in any phase), 1 when it cannot start."""
    from rclpy.signals import SignalHandlerOptions

    from smplify3d_ros.params import unknown_parameter_names

    logger = rclpy.logging.get_logger("smplify3d_node")
    stop = threading.Event()
    starting = [True]

    def on_signal(signum, _frame):
        stop.set()
        if starting[0]:  # abandon the start-up (model loading) at once
            raise ShutdownRequested(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
        unknown = unknown_parameter_names(sys.argv if args is None else args)
        if unknown:
            raise StartupError(f"unknown parameters {unknown}: smplify3d_node has no such parameter (a typo?); "
                               "config/robot.yaml lists every parameter, `ros2 param describe` documents them")
        node = SMPLify3DNode()
        starting[0] = False
    except ShutdownRequested as request:
        logger.info(f"{request} during start-up: stopping")
        rclpy.try_shutdown()
        _exit_now(0)
    except (StartupError, ConfigError) as error:
        if stop.is_set():  # the signal interrupted a transition (rclpy reports it as a failed configure)
            logger.info("shutdown requested during start-up: stopping")
            rclpy.try_shutdown()
            _exit_now(0)
        logger.fatal(f"cannot start: {error}")
        rclpy.try_shutdown()
        return 1
    code = spin_until_signal(node, before_destroy=node.shutdown, stop=stop)
    if node.worker_alive:  # stuck in one long operation: the interpreter must not tear down under it
        logger.warning("the worker did not stop in time; exiting without waiting for it")
    _exit_now(code)


def _exit_now(code: int) -> None:
    """End the process with ``code`` once ROS is shut down, without the interpreter's teardown: unloading
    torch, Open3D and CUDA adds about a second on a 2-core machine and can abort under a running torch op."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    raise SystemExit(main())
