"""Typed records passed between the stages of the pipeline.

All arrays are numpy unless a docstring says otherwise. Units: metres for 3D
positions, pixels for image coordinates, radians (axis-angle) for rotations.
3D quantities of a person live in the camera frame (x right, y down, z forward)
unless the field name says otherwise (``*_lidar``).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Optional

import numpy as np


def _as_float_array(value, shape: tuple, name: str) -> np.ndarray:
    """Return ``value`` as a float64 array of ``shape`` or raise a ValueError naming ``name``."""
    array = np.asarray(value, dtype=np.float64)
    if array.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {array.shape}")
    return array


@dataclass
class PinholeCamera:
    """A pinhole camera without distortion.

    K: (3, 3) intrinsics in pixels; width, height: image size in pixels.
    """

    K: np.ndarray
    width: int
    height: int

    def __post_init__(self) -> None:
        K = np.asarray(self.K, dtype=np.float64)
        if K.shape != (3, 3):
            raise ValueError(f"intrinsics matrix K must be 3x3, got shape {K.shape}")
        if not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
            raise ValueError(f"intrinsics matrix K needs finite positive focal lengths, got fx={K[0, 0]}, fy={K[1, 1]}")
        if abs(K[2, 2] - 1.0) > 1e-9 or abs(K[2, 0]) > 1e-9 or abs(K[2, 1]) > 1e-9:
            raise ValueError(f"intrinsics matrix K must have a last row [0, 0, 1], got {K[2].tolist()}")
        if int(self.width) <= 0 or int(self.height) <= 0:
            raise ValueError(f"image size must be positive, got {self.width}x{self.height}")
        self.K = K
        self.width = int(self.width)
        self.height = int(self.height)

    @property
    def fx(self) -> float:
        return float(self.K[0, 0])

    @property
    def fy(self) -> float:
        return float(self.K[1, 1])

    @property
    def cx(self) -> float:
        return float(self.K[0, 2])

    @property
    def cy(self) -> float:
        return float(self.K[1, 2])

    def project(self, points_cam: np.ndarray) -> np.ndarray:
        """Project (N, 3) camera-frame points in metres to (N, 2) pixels.

        Points at or behind the camera (z <= 0) come back as NaN.
        """
        points = np.asarray(points_cam, dtype=np.float64).reshape(-1, 3)
        z = points[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = (points @ self.K.T)[:, :2] / z[:, None]
        uv[z <= 0] = np.nan
        return uv


@dataclass
class SMPLParams:
    """SMPL parameters of one person in the camera frame.

    global_orient: (3,) axis-angle of the root, radians.
    body_pose: (69,) axis-angle of SMPL joints 1..23, radians.
    betas: (10,) shape coefficients.
    transl: (3,) translation in metres (added to the posed mesh, as in smplx).
    """

    global_orient: np.ndarray
    body_pose: np.ndarray
    betas: np.ndarray
    transl: np.ndarray

    def __post_init__(self) -> None:
        self.global_orient = _as_float_array(self.global_orient, (3,), "global_orient")
        self.body_pose = _as_float_array(self.body_pose, (69,), "body_pose")
        self.betas = _as_float_array(self.betas, (10,), "betas")
        self.transl = _as_float_array(self.transl, (3,), "transl")

    def to_dict(self) -> dict:
        return {
            "global_orient": self.global_orient.tolist(),
            "body_pose": self.body_pose.tolist(),
            "betas": self.betas.tolist(),
            "transl": self.transl.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "SMPLParams":
        missing = [k for k in ("global_orient", "body_pose", "betas", "transl") if k not in data]
        if missing:
            raise ValueError(f"SMPL parameter record lacks {missing}")
        return cls(data["global_orient"], data["body_pose"], data["betas"], data["transl"])

    @classmethod
    def zeros(cls) -> "SMPLParams":
        """The mean shape in the rest pose at the origin."""
        return cls(np.zeros(3), np.zeros(69), np.zeros(10), np.zeros(3))


@dataclass
class PersonObservation:
    """What the sensors (and front-ends) say about one person in one frame.

    tracking_id: identifier of the person, unique within the frame.
    bbox_xywh: (4,) box in pixels (x, y of the top-left corner, width, height).
    keypoints: (17, 3) COCO-17 keypoints: x, y in pixels and a confidence in [0, 1].
    lidar_visibility: (17,) per-keypoint LiDAR visibility in [0, 1].
    points: (N, 3) the person's LiDAR points in the camera frame, metres.
    init: initial SMPL estimate (e.g. from CLIFF) or None.
    pose3d: (15, 3) HumanM3-style joints in the camera frame (ground truth in the
        research demo format) or None.
    """

    tracking_id: str
    bbox_xywh: np.ndarray
    keypoints: np.ndarray
    lidar_visibility: np.ndarray
    points: np.ndarray
    init: Optional[SMPLParams] = None
    pose3d: Optional[np.ndarray] = None

    def __post_init__(self) -> None:
        self.tracking_id = str(self.tracking_id)
        self.bbox_xywh = _as_float_array(self.bbox_xywh, (4,), "bbox_xywh")
        self.keypoints = _as_float_array(self.keypoints, (17, 3), "keypoints")
        self.lidar_visibility = _as_float_array(self.lidar_visibility, (17,), "lidar_visibility")
        points = np.asarray(self.points, dtype=np.float64)
        if points.size == 0:
            points = points.reshape(0, 3)
        if points.ndim != 2 or points.shape[1] != 3:
            raise ValueError(f"points must have shape (N, 3), got {points.shape}")
        self.points = points
        if self.pose3d is not None:
            self.pose3d = _as_float_array(self.pose3d, (15, 3), "pose3d")


@dataclass
class PersonTruth:
    """Ground truth of one person (camera frame).

    smpl: the true SMPL parameters; vertices: (V, 3) metres; joints: (24, 3) SMPL joints, metres.
    """

    tracking_id: str
    smpl: SMPLParams
    vertices: np.ndarray
    joints: np.ndarray

    def __post_init__(self) -> None:
        self.tracking_id = str(self.tracking_id)
        self.vertices = np.asarray(self.vertices, dtype=np.float64)
        self.joints = _as_float_array(self.joints, (24, 3), "joints")


@dataclass
class FrameObservation:
    """One synchronized camera + LiDAR frame with its per-person observations.

    T_cam_lidar: (4, 4) rigid transform taking LiDAR-frame points to the camera frame.
    image: (H, W, 3) uint8 RGB or None when not loaded.
    cloud_lidar: (N, 3) the full cloud in the LiDAR frame, metres, or None.
    truth: ground truth keyed by tracking id, or None when unknown.
    T_world_cam: (4, 4) camera -> a fixed world frame where the source knows one (a dataset's world,
    a sequence's odom), else None; tracking and motion metrics use it.
    """

    sequence: str
    frame_id: str
    camera: PinholeCamera
    T_cam_lidar: np.ndarray
    persons: list
    image: Optional[np.ndarray] = None
    image_file: Optional[str] = None
    cloud_lidar: Optional[np.ndarray] = None
    truth: Optional[dict] = None
    T_world_cam: Optional[np.ndarray] = None

    def __post_init__(self) -> None:
        self.T_cam_lidar = _as_float_array(self.T_cam_lidar, (4, 4), "T_cam_lidar")
        if self.T_world_cam is not None:
            self.T_world_cam = _as_float_array(self.T_world_cam, (4, 4), "T_world_cam")
        rotation = self.T_cam_lidar[:3, :3]
        if not np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-5) or not np.allclose(self.T_cam_lidar[3], [0, 0, 0, 1]):
            raise ValueError("T_cam_lidar must be a rigid 4x4 transform (orthonormal rotation, last row [0, 0, 0, 1])")


class FrameStatus(enum.Enum):
    """What became of a frame: nobody to fit, not usable (with a reason), or fitted."""

    EMPTY = "empty"
    SKIPPED = "skipped"
    FITTED = "fitted"
