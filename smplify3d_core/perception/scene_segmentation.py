"""One segmentation of a frame's point cloud, shared by the person proposals and the crops.

Per frame the ground is fitted once and the points above it are clustered once
(:func:`segment_scene`); :mod:`~smplify3d_core.perception.proposals` gates those clusters into
persons and :mod:`~smplify3d_core.perception.crops` picks, for a caller's box, the cluster that
fills it. Both therefore agree on which points form which object.

Frames and units: the cloud is in its sensor frame (a LiDAR: x forward, y left, z up), metres;
``T_cam_cloud`` (4, 4) maps it to the camera frame (x right, y down, z forward); boxes are
``(x, y, w, h)`` pixels (top-left corner, width, height; pixel centres at integer coordinates, the
image spans ``[0, W] × [0, H]``). Point ids are row indices into the cloud the caller passed
(non-finite rows are never part of a cluster).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Tuple

import numpy as np
from scipy.spatial import cKDTree

from smplify3d_core.geometry.clustering import (
    GroundPlane,
    as_points,
    euclidean_clusters,
    finite_mask,
    fit_ground_plane,
    merge_stacked_clusters,
)
from smplify3d_core.geometry.transforms import transform_points
from smplify3d_core.perception.proposal_config import ProposalConfig
from smplify3d_core.types import PinholeCamera


@dataclass
class SceneSegmentation:
    """The ground and the clusters above it, of one cloud.

    points: (N, 3) the cloud in its sensor frame, metres (the caller's rows; non-finite rows stay).
    points_cam: (N, 3) the same points in the camera frame, metres.
    ground: the ground plane in the sensor frame, or None when none was found (heights are then
        measured from each cluster's lowest point and nothing is removed as ground).
    up: (3,) unit up direction of the sensor frame.
    above, low, sole: (N,) masks — above ``ground_margin``; between ``feet_floor`` and the margin
        (feet candidates); at ground level (sole candidates). Non-finite rows are in none of them.
    above_ids: (M,) ids of the ``above`` points; labels: (M,) their cluster (0 = largest; stacked
        clusters merged); sizes: (clusters,) points per cluster.
    """

    points: np.ndarray
    points_cam: np.ndarray
    ground: Optional[GroundPlane]
    up: np.ndarray
    above: np.ndarray
    low: np.ndarray
    sole: np.ndarray
    above_ids: np.ndarray
    labels: np.ndarray
    sizes: np.ndarray
    _order: np.ndarray = field(init=False, repr=False)
    _point_labels: Optional[np.ndarray] = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self._order = np.argsort(self.labels, kind="stable")

    def cluster_ids(self, label: int) -> np.ndarray:
        """(n,) sorted point ids of cluster ``label``."""
        sorted_labels = self.labels[self._order]
        lo, hi = np.searchsorted(sorted_labels, [label, label + 1])
        return np.sort(self.above_ids[self._order[lo:hi]])

    @property
    def point_labels(self) -> np.ndarray:
        """(N,) cluster of every point, −1 for points that are not ``above`` the ground."""
        if self._point_labels is None:
            labels = np.full(len(self.points), -1, dtype=np.int64)
            labels[self.above_ids] = self.labels
            self._point_labels = labels
        return self._point_labels


def segment_scene(
    cloud: np.ndarray,
    T_cam_cloud: np.ndarray,
    config: Optional[ProposalConfig] = None,
    ground: Optional[GroundPlane] = None,
    camera_frame_cloud: bool = False,
) -> SceneSegmentation:
    """Fit the ground once, split ground / feet / above, and cluster the points above it once.

    cloud: (N, 3) metres in the sensor frame (NaN/inf rows are ignored).
    T_cam_cloud: (4, 4) rigid transform sensor → camera.
    config: :class:`ProposalConfig` (defaults when None).
    ground: the ground plane in the sensor frame when already known; fitted otherwise (RANSAC,
        near-horizontal about ``lidar_up``, within ``ground_fit_radius`` of the sensor).
    camera_frame_cloud: the cloud is a camera-frame cloud (``T_cam_cloud`` the identity): the
        ground is then fitted about ``camera_up`` with ``camera_ground_max_tilt_deg``.
    """
    config = config or ProposalConfig()
    points = as_points(cloud)
    up = np.asarray(config.camera_up if camera_frame_cloud else config.lidar_up, dtype=np.float64)
    up = up / np.linalg.norm(up)
    if ground is None and len(points):
        ground = fit_ground_plane(
            points,
            up=up,
            max_tilt_deg=config.camera_ground_max_tilt_deg if camera_frame_cloud else config.ground_max_tilt_deg,
            distance_threshold=config.ground_threshold,
            fit_radius=config.ground_fit_radius,
        )
    above, low, sole = split_ground(points, ground, config)
    above_ids = np.flatnonzero(above)
    labels = np.zeros(0, dtype=np.int64)
    if len(above_ids):
        labels = euclidean_clusters(points[above_ids], config.cluster_distance, min_points=1)
        if config.stack_max_gap > 0:
            labels = merge_stacked_clusters(
                points[above_ids], labels, ground, up, cell=config.stack_cell, max_gap=config.stack_max_gap
            )
    sizes = np.bincount(labels[labels >= 0]) if len(labels) else np.zeros(0, dtype=np.int64)
    with np.errstate(invalid="ignore"):  # non-finite rows stay non-finite
        points_cam = transform_points(T_cam_cloud, points) if len(points) else points.copy()
    return SceneSegmentation(points, points_cam, ground, up, above, low, sole, above_ids, labels, sizes)


# ---------------------------------------------------------------------------- shared helpers
def project_points(points_cam: np.ndarray, camera: PinholeCamera, min_depth: float) -> np.ndarray:
    """(N, 2) pixels; NaN for points closer than ``min_depth`` or not finite."""
    uv = np.full((len(points_cam), 2), np.nan)
    with np.errstate(invalid="ignore"):
        front = points_cam[:, 2] > min_depth
    if front.any():
        uv[front] = camera.project(points_cam[front])
    return uv


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two (4,) xywh boxes."""
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return float(inter / union) if union > 0 else 0.0


def clip_box(x0: float, y0: float, x1: float, y1: float, camera: PinholeCamera) -> np.ndarray:
    x0, x1 = np.clip([x0, x1], 0.0, camera.width)
    y0, y1 = np.clip([y0, y1], 0.0, camera.height)
    return np.array([x0, y0, x1 - x0, y1 - y0], dtype=np.float64)


def split_ground(
    points: np.ndarray, plane: Optional[GroundPlane], config: ProposalConfig
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(above, low, sole) bool masks of finite points: above the ground margin; between
    ``feet_floor`` and the margin; between ``-ground_margin`` and ``feet_floor`` (ground level)."""
    finite = finite_mask(points)
    none = np.zeros(len(points), dtype=bool)
    if plane is None:
        return finite, none, none
    height = np.full(len(points), -np.inf)
    height[finite] = plane.height(points[finite])
    above = finite & (height > config.ground_margin)
    low = finite & (height > config.feet_floor) & (height <= config.ground_margin)
    sole = finite & (height > -config.ground_margin) & (height <= config.feet_floor)
    return above, low, sole


def attach_feet(
    points: np.ndarray, member_ids: np.ndarray, low_ids: np.ndarray, sole_ids: np.ndarray, config: ProposalConfig
) -> np.ndarray:
    """``member_ids`` plus the feet that the ground removal took: the low points connected to the
    members by chains of low points closer than ``feet_link_distance``, then the ground-level
    points within ``sole_distance`` of those (one hop: the soles, not the ground around them).

    Only points within ``4 · feet_link_distance`` of the members' bounding box are considered (cost)."""
    if len(member_ids) == 0:
        return member_ids
    members = points[member_ids]
    reach = 4 * config.feet_link_distance
    lower, upper = members.min(axis=0) - reach, members.max(axis=0) + reach

    def near(ids):
        return ids[np.all((points[ids] >= lower) & (points[ids] <= upper), axis=1)] if len(ids) else ids

    low_near, sole_near = near(low_ids), near(sole_ids)
    if len(low_near):
        joint = np.concatenate([member_ids, low_near])
        labels = euclidean_clusters(points[joint], config.feet_link_distance, voxel_size=0)
        member_ids = joint[np.isin(labels, np.unique(labels[: len(member_ids)]))]
    if len(sole_near) and config.sole_distance > 0:
        d, _ = cKDTree(points[member_ids]).query(points[sole_near], distance_upper_bound=config.sole_distance)
        member_ids = np.concatenate([member_ids, sole_near[np.isfinite(d)]])
    return np.unique(member_ids)


