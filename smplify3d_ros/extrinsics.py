"""Camera-LiDAR extrinsics for the node: ``T_cam_lidar`` (4x4, LiDAR frame -> camera optical
frame, so ``p_cam = T_cam_lidar @ p_lidar``) from TF or from a static parameter.

Sources, in order of preference:

* a static matrix (the ``T_cam_lidar`` parameter: 16 floats, row-major) when it is set;
* TF (``tf2_ros`` Buffer + TransformListener, when importable): transform ``camera_frame`` <-
  ``lidar_frame`` at the cloud's stamp (waiting up to ``timeout_s``), falling back to the latest
  available transform when the stamped one is not there (yet).

`ExtrinsicsSource.get` never raises for a missing transform: it returns ``(None, reason)`` and the
node logs the reason and skips the frame. Only a configuration that can never work (no static
matrix and no tf2_ros) raises `ExtrinsicsConfigError` at start-up.

Note on the TF wait: a blocking lookup only helps when the TF subscriptions can be serviced while
the frame callback waits (a MultiThreadedExecutor with the TF listener in another callback group,
or ``spin_thread=True``); on a single-threaded executor use ``timeout_s=0``.
"""
from __future__ import annotations

import math
from typing import Any, Optional, Sequence, Tuple

import numpy as np

from smplify3d_ros.conversions import transform_to_matrix

__all__ = [
    "ExtrinsicsConfigError",
    "ExtrinsicsSource",
    "parse_static_matrix",
    "tf2_available",
]

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


def _to_rclpy_time(stamp: Any):
    from rclpy.time import Time

    if stamp is None:
        return Time()
    if isinstance(stamp, Time):
        return stamp
    from smplify3d_ros.stamps import stamp_to_ns

    return Time(nanoseconds=stamp_to_ns(stamp))


class ExtrinsicsSource:
    """Resolves ``T_cam_lidar`` per frame.

    Args:
        node: the rclpy node (for the TF listener); may be None with a static matrix or ``buffer``.
        camera_frame: target frame (camera optical frame, e.g. the image's header.frame_id).
        lidar_frame: source frame (the cloud's header.frame_id).
        static_matrix: 16 floats (row-major) or a 4x4; None / empty means "use TF".
        timeout_s: how long a stamped TF lookup may wait (see the module note).
        buffer: an existing tf2_ros.Buffer (or any object with ``lookup_transform(target,
            source, time, timeout=...)``) to use instead of creating one.
        prefer_tf2: False forces the static path (then a static matrix is required).

    Raises:
        ExtrinsicsConfigError: no static matrix and no TF available.
        ValueError: the static matrix is invalid (see `parse_static_matrix`).
    """

    def __init__(self, node: Any = None, camera_frame: str = "", lidar_frame: str = "",
                 static_matrix: Optional[Sequence[float]] = None, timeout_s: float = 0.05,
                 buffer: Any = None, prefer_tf2: bool = True):
        self.camera_frame = str(camera_frame or "")
        self.lidar_frame = str(lidar_frame or "")
        self.timeout_s = max(0.0, float(timeout_s))
        self._static: Optional[np.ndarray] = None
        self._buffer = None
        self._listener = None
        if static_matrix is not None and len(np.asarray(static_matrix).reshape(-1)) > 0:
            self._static = parse_static_matrix(static_matrix)
            self.mode = "static"
            return
        if buffer is not None:
            self._buffer = buffer
            self.mode = "tf"
            return
        if prefer_tf2 and tf2_available():
            if node is None:
                raise ExtrinsicsConfigError("ExtrinsicsSource: TF mode needs the node")
            import tf2_ros

            self._buffer = tf2_ros.Buffer()
            self._listener = tf2_ros.TransformListener(self._buffer, node)
            self.mode = "tf"
            return
        raise ExtrinsicsConfigError(
            "No camera-LiDAR extrinsics available: tf2_ros is not installed (or TF was disabled) "
            "and the 'T_cam_lidar' parameter is not set. Set 'T_cam_lidar' to the 16 numbers of "
            "the row-major 4x4 transform LiDAR frame -> camera optical frame, or install tf2_ros "
            "(a ROS 2 distro) and publish the transform on /tf or /tf_static.")

    def describe(self) -> str:
        """One line for the start-up log."""
        if self.mode == "static":
            return "extrinsics: static T_cam_lidar parameter"
        return (f"extrinsics: TF {self.camera_frame or '<image frame>'} <- "
                f"{self.lidar_frame or '<cloud frame>'} (timeout {self.timeout_s:.3f} s, "
                "fallback: latest)")

    def get(self, stamp: Any = None, camera_frame: Optional[str] = None,
            lidar_frame: Optional[str] = None) -> Tuple[Optional[np.ndarray], str]:
        """``(T_cam_lidar (4, 4) float64, reason)`` or ``(None, reason)`` when not available.

        ``stamp``: the cloud's stamp (builtin_interfaces/Time, rclpy Time, float seconds) or
        None for the latest. Frames default to those given at construction (a message's
        ``header.frame_id`` may be passed per call). Reasons: ``"static"``, ``"tf"`` (stamped),
        ``"tf latest (...)"`` (fallback), or why nothing was found.
        """
        if self._static is not None:
            return self._static.copy(), "static"
        target = camera_frame or self.camera_frame
        source = lidar_frame or self.lidar_frame
        if not target or not source:
            return None, (f"TF missing: frame names unknown (camera '{target}', lidar '{source}')")
        from rclpy.duration import Duration

        first_error = ""
        if stamp is not None:
            try:
                tf = self._buffer.lookup_transform(target, source, _to_rclpy_time(stamp),
                                                   timeout=Duration(seconds=self.timeout_s))
                return transform_to_matrix(getattr(tf, "transform", tf)), "tf"
            except Exception as e:  # tf2 Lookup/Extrapolation/Connectivity errors
                first_error = f"{type(e).__name__}: {e}"
        try:
            tf = self._buffer.lookup_transform(target, source, _to_rclpy_time(None),
                                               timeout=Duration(seconds=0.0))
            why = f" (stamped lookup failed: {first_error})" if first_error else ""
            return transform_to_matrix(getattr(tf, "transform", tf)), "tf latest" + why
        except Exception as e:
            msg = f"TF missing: no transform {target} <- {source}: {type(e).__name__}: {e}"
            if first_error:
                msg += f" (stamped lookup: {first_error})"
            return None, msg
