"""Camera-LiDAR extrinsics for the node: ``T_cam_lidar`` (4x4, LiDAR frame -> camera optical
frame, so ``p_cam = T_cam_lidar @ p_lidar``) from TF or from a static parameter.

Sources:

* ``static``: a fixed matrix (the ``T_cam_lidar`` parameter: 16 floats, row-major);
* ``tf``: transform ``camera_frame`` <- ``lidar_frame`` at the cloud's stamp, waiting up to
  ``timeout_s``, from ``tf2_ros`` (Buffer + TransformListener) when it is importable (a ROS
  distro), else from the project's own :class:`~smplify3d_ros.tf_buffer.TfListener` on ``/tf``
  and ``/tf_static`` (needs ``tf2_msgs``, which ``scripts/build_msgs.sh`` builds into a pip-only
  venv). When the stamped lookup fails, the latest transform is used only if its stamp is
  within ``cache_time_s`` (the buffers' 10 s window) of the cloud's; a static chain always is.

Nothing is guessed: `ExtrinsicsSource.get` never raises for a missing transform, it returns
``(None, reason)`` naming the frames and why, and the node skips the frame with that reason. A
configuration that can never work (TF without a node, a backend that is not installed) raises
`ExtrinsicsConfigError` at start-up.

Note on the TF wait: a blocking lookup only helps when the TF subscriptions are serviced while
the caller waits: the node looks up on its worker thread while the executor thread runs the
listener's callbacks; a caller on a single-threaded executor's own thread should use
``timeout_s=0``.
"""
from __future__ import annotations

import math
from typing import Any, Optional, Sequence, Tuple

import numpy as np

from smplify3d_ros.conversions import transform_to_matrix
from smplify3d_ros.stamps import NS_PER_S, stamp_to_ns
from smplify3d_ros.tf_buffer import TfBuffer, TfListener, TfLookupError

__all__ = [
    "ExtrinsicsConfigError",
    "ExtrinsicsSource",
    "builtin_tf_available",
    "parse_static_matrix",
    "tf2_available",
]

TF_BACKENDS = ("auto", "tf2_ros", "builtin")

ROTATION_TOL = 1e-3  # max |R^T R - I| entry and |det R - 1| accepted from a typed-in matrix


class ExtrinsicsConfigError(RuntimeError):
    """The extrinsics cannot be resolved with this configuration (raised at start-up)."""


def tf2_available() -> bool:
    """True when ``tf2_ros`` (Buffer, TransformListener) is importable."""
    try:
        import tf2_ros  # noqa: F401
    except ImportError:
        return False
    return hasattr(tf2_ros, "Buffer") and hasattr(tf2_ros, "TransformListener")


def builtin_tf_available() -> bool:
    """True when ``tf2_msgs`` is importable, which the built-in TfListener subscribes with."""
    try:
        from tf2_msgs.msg import TFMessage  # noqa: F401
    except ImportError:
        return False
    return True


def parse_static_matrix(values: Any, name: str = "T_cam_lidar") -> np.ndarray:
    """Validate a row-major 4x4 rigid transform given as 16 numbers; returns a float64 (4, 4).

    Checks: exactly 16 finite numbers; last row ``0 0 0 1``; the rotation block orthonormal
    (within ``ROTATION_TOL``) with determinant +1 (a reflection is rejected). The rotation block
    is re-projected onto the nearest exact rotation (SVD) so rounding in the typed-in values
    does not accumulate. Raises ``ValueError`` with a message naming ``name``.
    """
    if values is None:
        raise ValueError(f"{name}: no value given; expected 16 numbers (row-major 4x4)")
    try:
        arr = np.asarray(list(values), dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name}: expected 16 numbers (row-major 4x4), got {values!r} ({e})")
    if arr.size == 16 and arr.ndim == 2 and arr.shape == (4, 4):
        arr = arr.reshape(-1)
    if arr.ndim != 1 or arr.size != 16:
        raise ValueError(f"{name}: expected 16 numbers (row-major 4x4), got {arr.size}")
    if not np.all(np.isfinite(arr)):
        bad = [i for i in range(16) if not math.isfinite(arr[i])]
        raise ValueError(f"{name}: entries {bad} are not finite (NaN/inf)")
    T = arr.reshape(4, 4)
    if not np.allclose(T[3], [0.0, 0.0, 0.0, 1.0], atol=1e-9, rtol=0.0):
        raise ValueError(f"{name}: last row must be [0, 0, 0, 1], got {T[3].tolist()}")
    R = T[:3, :3]
    ortho_err = float(np.abs(R.T @ R - np.eye(3)).max())
    if ortho_err > ROTATION_TOL:
        raise ValueError(
            f"{name}: the upper-left 3x3 block is not a rotation (|R^T R - I| max {ortho_err:.3g}"
            f" > {ROTATION_TOL}); a rigid transform is required (no scale or shear)")
    det = float(np.linalg.det(R))
    if det < 0:
        raise ValueError(f"{name}: the rotation block has determinant {det:.4f} (a reflection);"
                         " a right-handed rotation (det +1) is required")
    if abs(det - 1.0) > ROTATION_TOL:
        raise ValueError(f"{name}: the rotation block has determinant {det:.6f}, expected +1")
    U, _, Vt = np.linalg.svd(R)
    out = T.copy()
    out[:3, :3] = U @ Vt
    return out


def _describe_error(error: Exception) -> str:
    if isinstance(error, TfLookupError):  # it names the frames already
        return f"{type(error).__name__}: {error.why}"
    return f"{type(error).__name__}: {error}"


class ExtrinsicsSource:
    """Resolves ``T_cam_lidar`` per frame.

    Args:
        node: the rclpy node (for the TF listener); may be None with a static matrix or ``buffer``.
        camera_frame: target frame (camera optical frame, e.g. the image's header.frame_id).
        lidar_frame: source frame (the cloud's header.frame_id).
        static_matrix: 16 floats (row-major) or a 4x4; None / empty means "use TF".
        timeout_s: how long a stamped TF lookup may wait, seconds (see the module note).
        buffer: a buffer to use instead of subscribing: a `TfBuffer`, or a tf2_ros.Buffer (or any
            object with ``lookup_transform(target, source, rclpy Time, timeout=Duration)``
            returning a TransformStamped).
        tf_backend: "auto" (tf2_ros when importable, else the built-in listener), "tf2_ros" or
            "builtin".
        cache_time_s: the window, seconds: the latest transform stands in for a stamped one only
            when their stamps are at most this far apart.

    Raises:
        ExtrinsicsConfigError: TF without a node or buffer, or the chosen backend not installed.
        ValueError: the static matrix is invalid (see `parse_static_matrix`).
    """

    def __init__(self, node: Any = None, camera_frame: str = "", lidar_frame: str = "",
                 static_matrix: Optional[Sequence[float]] = None, timeout_s: float = 0.05,
                 buffer: Any = None, tf_backend: str = "auto", cache_time_s: float = 10.0):
        self.camera_frame = str(camera_frame or "")
        self.lidar_frame = str(lidar_frame or "")
        self.timeout_s = max(0.0, float(timeout_s))
        self.cache_time_s = float(cache_time_s)
        self._static: Optional[np.ndarray] = None
        self._buffer = None
        self._listener = None
        if static_matrix is not None and len(np.asarray(static_matrix).reshape(-1)) > 0:
            self._static = parse_static_matrix(static_matrix)
            self.mode = self.backend = "static"
            return
        self.mode = "tf"
        if buffer is not None:
            self._buffer = buffer
            self.backend = "builtin" if isinstance(buffer, TfBuffer) else "injected"
            return
        if tf_backend not in TF_BACKENDS:
            raise ExtrinsicsConfigError(f"tf_backend must be one of {TF_BACKENDS}, got {tf_backend!r}")
        if node is None:
            raise ExtrinsicsConfigError(
                "camera-LiDAR extrinsics from TF need the node to subscribe to /tf and /tf_static; or set "
                "extrinsics_source to static and T_cam_lidar to the 16 numbers of the row-major 4x4 transform "
                "LiDAR frame -> camera optical frame")
        use_tf2 = tf_backend == "tf2_ros" or (tf_backend == "auto" and tf2_available())
        if use_tf2:
            if not tf2_available():
                raise ExtrinsicsConfigError("tf_backend 'tf2_ros': tf2_ros is not installed (it comes with a ROS 2 distro)")
            import tf2_ros
            from rclpy.duration import Duration

            self._buffer = tf2_ros.Buffer(cache_time=Duration(seconds=self.cache_time_s))
            self._listener = tf2_ros.TransformListener(self._buffer, node)
            self.backend = "tf2_ros"
            return
        if not builtin_tf_available():
            raise ExtrinsicsConfigError(
                "camera-LiDAR extrinsics from TF: neither tf2_ros nor tf2_msgs is importable. Run "
                "scripts/build_msgs.sh (it builds tf2_msgs into the venv), or set extrinsics_source to static "
                "and T_cam_lidar to the row-major 4x4 transform LiDAR frame -> camera optical frame")
        self._buffer = TfBuffer(cache_time_s=self.cache_time_s)
        self._listener = TfListener(node, self._buffer)
        self.backend = "builtin"

    def close(self) -> None:
        """Stop listening to TF (the node's /tf and /tf_static subscriptions go); lookups fail afterwards."""
        listener, self._listener = self._listener, None
        if listener is None:
            return
        if isinstance(listener, TfListener):
            listener.destroy()
        elif hasattr(listener, "unregister"):  # tf2_ros.TransformListener
            listener.unregister()

    def describe(self) -> str:
        """One line for the start-up log."""
        if self.mode == "static":
            return "extrinsics: static T_cam_lidar parameter"
        via = {"tf2_ros": "tf2_ros", "builtin": "the built-in TF listener (/tf, /tf_static)",
               "injected": "the given buffer"}[self.backend]
        return (f"extrinsics: TF {self.camera_frame or '<image frame>'} <- "
                f"{self.lidar_frame or '<cloud frame>'} from {via} (timeout {self.timeout_s:.3f} s; without a "
                f"transform at the cloud's stamp, the latest one if within {self.cache_time_s:g} s of it)")

    def _lookup(self, target: str, source: str, stamp_ns: Optional[int], timeout_s: float) -> Tuple[np.ndarray, int]:
        """(T_target_source (4, 4), the stamp it holds for in ns, 0 for static) or an exception."""
        if isinstance(self._buffer, TfBuffer):
            result = self._buffer.lookup(target, source, stamp_ns, timeout_s=timeout_s)
            return result.matrix, result.stamp_ns
        from rclpy.duration import Duration
        from rclpy.time import Time

        tf = self._buffer.lookup_transform(target, source, Time(nanoseconds=stamp_ns or 0),
                                           timeout=Duration(seconds=timeout_s))
        header = getattr(tf, "header", None)
        return transform_to_matrix(getattr(tf, "transform", tf)), stamp_to_ns(header.stamp) if header else 0

    def get(self, stamp: Any = None, camera_frame: Optional[str] = None,
            lidar_frame: Optional[str] = None, strict: bool = False) -> Tuple[Optional[np.ndarray], str]:
        """``(T_cam_lidar (4, 4) float64, reason)`` or ``(None, reason)`` when not available.

        ``stamp``: the cloud's stamp (builtin_interfaces/Time, rclpy Time, float seconds) or
        None for the latest. Frames default to those given at construction (a message's
        ``header.frame_id`` may be passed per call). Reasons: ``"static"``, ``"tf"`` (stamped),
        ``"tf latest (...)"`` (the latest transform, within ``cache_time_s`` of the stamp), or
        ``"TF missing: <camera> <- <lidar>: ..."`` saying why nothing could be used. strict: with a
        stamp, only the transform at that stamp counts (no latest-transform fallback): for frames
        that move, such as a moving robot's odom, where an older transform would misplace the bodies.
        """
        if self._static is not None:
            return self._static.copy(), "static"
        target = camera_frame or self.camera_frame
        source = lidar_frame or self.lidar_frame
        if not target or not source:
            return None, (f"TF missing: frame names unknown (camera '{target}', lidar '{source}')")
        stamp_ns = None if stamp is None else stamp_to_ns(stamp)
        first_error = ""
        if stamp_ns is not None:
            try:
                return self._lookup(target, source, stamp_ns, self.timeout_s)[0], "tf"
            except Exception as e:  # tf2 Lookup/Extrapolation/Connectivity errors, TfLookupError
                first_error = _describe_error(e)
                if strict:
                    return None, (f"TF missing: {target} <- {source} at the image's stamp (waited "
                                  f"{self.timeout_s:.3f} s): {first_error}")
        try:
            T, latest_ns = self._lookup(target, source, None, 0.0)
        except Exception as e:
            msg = f"TF missing: {target} <- {source}: {_describe_error(e)}"
            if first_error and first_error != _describe_error(e):
                msg += f" (stamped lookup: {first_error})"
            return None, msg
        if stamp_ns is not None and latest_ns and abs(stamp_ns - latest_ns) > self.cache_time_s * NS_PER_S:
            return None, (f"TF missing: {target} <- {source} at the cloud's stamp ({first_error}); the latest "
                          f"transform is {(stamp_ns - latest_ns) / NS_PER_S:+.3f} s from it, beyond the "
                          f"{self.cache_time_s:g} s window")
        why = f" (stamped lookup failed: {first_error})" if first_error else ""
        return T, "tf latest" + why
