"""LiDAR person proposals, caller-given detector boxes and per-person point crops (DESIGN §1 step 1).

Two ways to get person boxes:

* :func:`propose_persons` — LiDAR only: remove the ground, cluster the rest (Euclidean), keep the
  clusters shaped like a person (size/height gates plus two "rigid object" tests that reject boxes,
  walls and poles), project them into the image and box them;
* :func:`boxes_from_detector` — a robot that already runs a 2D detector passes its boxes; they are
  validated and clamped, bad ones are dropped with a reason.

Then :func:`crop_person_points` (or :func:`crop_persons_points` for several boxes) takes the
person's LiDAR points out of the full cloud: the points in the box's frustum, minus the ground,
clustered, and the cluster that best explains the box is kept (rule in :func:`crop_person_points`).

Frames and units: LiDAR frame x forward, y left, z up; camera frame x right, y down, z forward;
metres for 3D, pixels for boxes ``(x, y, w, h)`` (top-left corner, width, height; pixel centres at
integer coordinates, the image spans ``[0, W] × [0, H]``). ``T_cam_lidar`` (4, 4) maps LiDAR points
to the camera frame. Point ids are row indices into the cloud the caller passed (non-finite rows
are never returned).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import numpy as np
from scipy.spatial import cKDTree

from smplify3d_core.geometry.clustering import (
    GroundPlane,
    as_points,
    cluster_statistics,
    euclidean_clusters,
    finite_mask,
    fit_ground_plane,
    merge_stacked_clusters,
)
from smplify3d_core.geometry.visibility import keypoint_lidar_visibility
from smplify3d_core.types import PinholeCamera


# ---------------------------------------------------------------------------- configuration
@dataclass
class ProposalConfig:
    """Parameters of LiDAR proposals and point crops (metres, pixels, degrees as named).

    Ground
        lidar_up: (3,) up direction of the LiDAR frame (a level-mounted LiDAR: +z).
        camera_up: (3,) up direction of the camera frame, used when cropping in the camera frame
            without a ground plane from the caller (a level camera: −y).
        ground_max_tilt_deg: the ground normal may deviate this much from "up" (LiDAR frame).
        camera_ground_max_tilt_deg: the same for a ground fitted in the camera frame (a robot's
            camera is often pitched).
        ground_threshold: RANSAC inlier distance of the ground fit, metres.
        ground_fit_radius: only points within this horizontal distance of the sensor fit the ground.
        ground_margin: points up to this height above the ground (and all below) are ground, metres.
        feet_floor, feet_link_distance, sole_distance: the ground removal also takes the feet.
            Points between ``feet_floor`` and ``ground_margin`` above the ground ("low") take no part
            in clustering but are given back to a person they reach by chains of low points closer
            than ``feet_link_distance``; points at ground level (below ``feet_floor``, where the
            ground's own noise lies: σ ≈ 1 cm in the simulator) only when within ``sole_distance``
            of the person's points (the soles), metres.

    Clustering
        cluster_distance: Euclidean linking distance, metres. People ≥ 0.5 m apart stay separate;
            LiDAR rows on a person must be closer than this (≈ 0.36°/row at 12 m gives 7.5 cm).
        stack_cell, stack_max_gap: clusters stacked one above the other (ground projections within
            ≈ ``stack_cell`` metres, height intervals overlapping ≤ 0.15 m and ≤ ``stack_max_gap``
            apart) are merged first — a person whose middle is hidden behind someone's arm
            (:func:`~smplify3d_core.geometry.clustering.merge_stacked_clusters`); 0 disables it.
        min_points: clusters with fewer points (after merging) are never proposed.
        min_vertical_extent: clusters spanning less height are not proposed (a fragment: a box
            edge, a head seen over someone's shoulder), metres.

    Person gates (cluster statistics above the ground)
        min_height, max_height: highest point of the cluster above the ground (a crouching person
            ≈ 1.0 m, arms raised ≈ 2.2 m; 0.8 leaves room for a small crouching person).
        max_bottom_height: lowest point above the ground; higher = floating (a person partly hidden
            by another one in front keeps the head and shoulders, up to ≈ 1.3 m).
        max_footprint_major, max_footprint_minor, max_footprint_area: length, width and their
            product of the ground projection (a T-pose spans ≈ 1.8 m; no person of the simulator
            was wider than 0.71 m in every direction nor above 0.73 m² length × width).
        rigid_planarity: clusters whose points lie (within ``planarity_threshold``) on at most two
            vertical planes plus their top layer by at least this fraction are rigid objects (boxes, walls).
        rigid_planarity_uniform, max_uniform_width_ratio: also rigid when the planarity is at least
            ``rigid_planarity_uniform`` and the width barely changes with height (largest / smallest
            width of 0.15 m slices ≤ ``max_uniform_width_ratio``; a person's head is much narrower
            than the shoulders or arms).
        max_flat_top_fraction: more than this fraction of the points within 4 cm of the top = a
            horizontal edge or top face (a person's crown holds ≈ 2 %, at most ≈ 10 %).
        planarity_threshold: inlier distance of the planarity test, metres (≈ 1.5× range noise).
        planarity_planes: number of vertical planes the planarity test fits (2: a box seen from a
            corner; with 3 a person's torso, legs and arms become "planar" too).
        cylinder_residual, cylinder_max_radius: clusters whose ground projection fits a circle of
            radius ≤ ``cylinder_max_radius`` with an RMS residual ≤ ``cylinder_residual`` are poles.
        These thresholds were chosen on simulated scenes (boxes, poles, walls, 8 pose families)
        and checked on 70 seeds × 2 presets: 1 background cluster in 140 frames passed (two
        intersecting boxes forming a step), no person with a fair view was lost. Real scenes have
        other clutter (bins, bushes, pillars): treat proposals as candidates for the 2D keypoint
        stage, whose confidences reject what is not a person.

    Boxes
        box_margin: the box of the projected points grows by this fraction of its width/height on
            each side (10 %), then is clipped to the image.
        min_box_px: boxes narrower or lower than this after clipping are dropped, pixels.
        min_depth: points closer than this along the optical axis are not projected, metres.

    Crops
        crop_context: the frustum used to judge the clusters is the box grown by this fraction of
            its size on each side (clusters reaching far beyond the box are background/others).
        border_tolerance_px: a box side within this distance of the image border is "open": the
            person may continue outside the image, so the frustum is unbounded on that side.
        crop_min_points: clusters with fewer points inside the box are not candidates.
        whole_cluster_containment: a chosen cluster with at least this fraction of its points inside
            the box is returned whole (also the few points just outside a tight box); below it only
            the points inside the box are returned (the cluster is merged with something else).
        limb_distance, limb_max_fraction, limb_containment: after the choice, other clusters with at
            least ``limb_containment`` of their points inside the box (crops; proposals: any
            cluster that is not a proposal itself), at most ``limb_max_fraction`` of the person's
            points and within ``limb_distance`` of them are added whatever their depth (the far
            leg seen between the legs, a raised hand split off by a LiDAR gap), metres.
    """

    lidar_up: Tuple[float, float, float] = (0.0, 0.0, 1.0)
    camera_up: Tuple[float, float, float] = (0.0, -1.0, 0.0)
    ground_max_tilt_deg: float = 15.0
    camera_ground_max_tilt_deg: float = 35.0
    ground_threshold: float = 0.05
    ground_fit_radius: float = 30.0
    ground_margin: float = 0.06
    feet_floor: float = 0.02
    feet_link_distance: float = 0.15
    sole_distance: float = 0.04
    cluster_distance: float = 0.25
    stack_cell: float = 0.2
    stack_max_gap: float = 1.0
    min_points: int = 20
    min_vertical_extent: float = 0.5
    min_height: float = 0.8
    max_height: float = 2.3
    max_bottom_height: float = 1.4
    max_footprint_major: float = 2.2
    max_footprint_minor: float = 1.0
    max_footprint_area: float = 1.1
    rigid_planarity: float = 0.95
    rigid_planarity_uniform: float = 0.86
    max_uniform_width_ratio: float = 1.35
    max_flat_top_fraction: float = 0.4
    planarity_threshold: float = 0.03
    planarity_planes: int = 2
    cylinder_residual: float = 0.025
    cylinder_max_radius: float = 0.35
    box_margin: float = 0.10
    min_box_px: float = 8.0
    min_depth: float = 0.1
    crop_context: float = 0.5
    border_tolerance_px: float = 2.0
    crop_min_points: int = 5
    whole_cluster_containment: float = 0.7
    limb_distance: float = 0.6
    limb_max_fraction: float = 0.3
    limb_containment: float = 0.5


# ---------------------------------------------------------------------------- records
@dataclass
class PersonProposal:
    """One person found in the LiDAR cloud.

    box_xywh: (4,) box in pixels (projected cluster points + margin, clipped to the image).
    point_ids: (n,) int64 sorted row indices of the person's points in the input cloud: the
        cluster, the small pieces split off it (limbs) and the feet given back from the ground.
    centroid_cam: (3,) mean of those points in the camera frame, metres.
    num_points: n.
    distance: Euclidean distance of ``centroid_cam`` from the camera, metres (proposals are sorted by it).
    score: heuristic human-likeness in [0, 1] (low planarity and enough points score high); a
        ranking aid, not a probability.
    gates: the measured quantities the gates used (of the cluster before limbs and feet):
        top_height, bottom_height, vertical_extent, footprint_major, footprint_minor (metres),
        planarity, top_fraction, width_ratio, cylinder_radius, cylinder_residual, and
        points_in_image (how many of the points project inside the image).
    """

    box_xywh: np.ndarray
    point_ids: np.ndarray
    centroid_cam: np.ndarray
    num_points: int
    distance: float
    score: float
    gates: dict = field(default_factory=dict)


@dataclass
class DetectorBoxes:
    """Caller-given boxes after validation (:func:`boxes_from_detector`).

    boxes_xywh: (K, 4) kept boxes clamped to the image, pixels.
    indices: (K,) index of each kept box in the caller's list.
    dropped: ``(index, reason)`` for every dropped box.
    """

    boxes_xywh: np.ndarray
    indices: np.ndarray
    dropped: List[Tuple[int, str]] = field(default_factory=list)


# ---------------------------------------------------------------------------- small helpers
def _transform(T: np.ndarray, points: np.ndarray) -> np.ndarray:
    T = np.asarray(T, dtype=np.float64)
    return points @ T[:3, :3].T + T[:3, 3]


def _project(points_cam: np.ndarray, camera: PinholeCamera, min_depth: float) -> np.ndarray:
    """(N, 2) pixels; NaN for points closer than ``min_depth`` or not finite."""
    uv = np.full((len(points_cam), 2), np.nan)
    with np.errstate(invalid="ignore"):
        front = points_cam[:, 2] > min_depth
    if front.any():
        uv[front] = camera.project(points_cam[front])
    return uv


def _box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two (4,) xywh boxes."""
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return float(inter / union) if union > 0 else 0.0


def _clip_box(x0: float, y0: float, x1: float, y1: float, camera: PinholeCamera) -> np.ndarray:
    x0, x1 = np.clip([x0, x1], 0.0, camera.width)
    y0, y1 = np.clip([y0, y1], 0.0, camera.height)
    return np.array([x0, y0, x1 - x0, y1 - y0], dtype=np.float64)


def _split_ground(
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


def _attach_feet(
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


def _attach_limbs(
    points: np.ndarray,
    label: int,
    persons: dict,
    above_ids: np.ndarray,
    labels: np.ndarray,
    cluster_ids,
    sizes: np.ndarray,
    config: ProposalConfig,
) -> np.ndarray:
    """The ids of person cluster ``label`` plus the small clusters (≤ ``limb_max_fraction`` of its
    size, not persons themselves) with a point within ``limb_distance`` of it and nearer to it
    than to any other person: a hand or the far leg split off by a LiDAR gap.

    persons: {label: (ids, cKDTree of their points)} for every accepted cluster; ``labels``
    (len(above_ids),) are the cluster ids of ``points[above_ids]``; ``cluster_ids(label)`` gives
    the point ids of a cluster."""
    member_ids, tree = persons[label]
    if config.limb_distance <= 0 or len(member_ids) == 0:
        return member_ids
    members = points[member_ids]
    lower, upper = members.min(axis=0) - config.limb_distance, members.max(axis=0) + config.limb_distance
    near = np.all((points[above_ids] >= lower) & (points[above_ids] <= upper), axis=1) & (labels >= 0)
    limit = config.limb_max_fraction * len(member_ids)
    extra = [member_ids]
    for limb in np.unique(labels[near]):
        if limb in persons or sizes[limb] > limit:
            continue
        limb_ids = cluster_ids(limb)
        d, _ = tree.query(points[limb_ids], distance_upper_bound=config.limb_distance)
        mine = d.min()
        if not np.isfinite(mine):
            continue
        nearer_other = any(
            other != label and other_tree.query(points[limb_ids], distance_upper_bound=mine)[0].min() < mine
            for other, (_, other_tree) in persons.items()
        )
        if not nearer_other:
            extra.append(limb_ids)
    return np.unique(np.concatenate(extra))


# ---------------------------------------------------------------------------- shape tests
def _vertical_plane_inliers(flat: np.ndarray, available: np.ndarray, threshold: float, rng, hypotheses: int = 128) -> np.ndarray:
    """Best vertical plane (a line in the ground projection ``flat`` (N, 2)) among the available points."""
    index = np.flatnonzero(available)
    best = np.zeros(len(flat), dtype=bool)
    if len(index) < 2:
        return best
    pairs = index[rng.integers(0, len(index), size=(hypotheses, 2))]
    direction = flat[pairs[:, 1]] - flat[pairs[:, 0]]
    length = np.linalg.norm(direction, axis=1)
    ok = length > 0.05
    if not ok.any():
        return best
    normal = np.stack([-direction[ok, 1], direction[ok, 0]], axis=1) / length[ok, None]
    offset = -np.einsum("ij,ij->i", normal, flat[pairs[ok, 0]])
    distance = np.abs(flat[index] @ normal.T + offset)  # (n_available, hypotheses)
    counts = (distance <= threshold).sum(axis=0)
    k = int(np.argmax(counts))
    best[index[distance[:, k] <= threshold]] = True
    return best


def shape_features(points: np.ndarray, up: np.ndarray, heights: np.ndarray, config: ProposalConfig, sensor=None) -> dict:
    """Shape descriptors of one cluster used to reject rigid objects (deterministic).

    points: (n, 3) metres; up: (3,) unit up vector; heights: (n,) heights above the ground (or
    along ``up``); sensor: (3,) sensor position (default the origin).

    Returns planarity (fraction of points on ≤ 2 vertical planes + the top 4 cm), top_fraction
    (fraction of points within 4 cm of the highest one), width_ratio
    (largest / smallest lateral width of 0.15 m slices between the 2nd and 98th height percentiles
    less 0.15 m at each end, 0 when fewer than two slices have ≥ 5 points), cylinder_radius and cylinder_residual (algebraic circle fit of
    the ground projection, metres).
    """
    sensor = np.zeros(3) if sensor is None else np.asarray(sensor, dtype=np.float64)
    helper = np.array([1.0, 0.0, 0.0]) if abs(up[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = np.cross(up, helper)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(up, e1)
    flat = np.stack([points @ e1, points @ e2], axis=1)
    rng = np.random.default_rng(0)

    top = heights.max()
    explained = heights >= top - 0.04
    top_fraction = float(explained.mean())
    for _ in range(config.planarity_planes):
        explained |= _vertical_plane_inliers(flat, ~explained, config.planarity_threshold, rng)
    planarity = float(explained.mean())

    # lateral axis: horizontal, perpendicular to the sensor → cluster direction
    ray = flat.mean(axis=0) - np.array([sensor @ e1, sensor @ e2])
    ray = ray / max(np.linalg.norm(ray), 1e-9)
    lateral = flat @ np.array([-ray[1], ray[0]])
    bottom, upper = np.percentile(heights, [2, 98])  # robust to a few stray points
    widths = []
    for start in np.arange(bottom + 0.15, upper - 0.15, 0.15):
        in_slice = (heights >= start) & (heights < start + 0.15)
        if in_slice.sum() >= 5:
            widths.append(np.ptp(lateral[in_slice]))
    widths = np.asarray(widths)
    width_ratio = float(widths.max() / max(widths.min(), 1e-3)) if len(widths) >= 2 else 0.0

    A = np.concatenate([2.0 * flat, np.ones((len(flat), 1))], axis=1)
    b = (flat**2).sum(axis=1)
    solution, *_ = np.linalg.lstsq(A, b, rcond=None)
    centre = solution[:2]
    radius = float(np.sqrt(max(solution[2] + centre @ centre, 0.0)))
    residual = float(np.sqrt(np.mean((np.linalg.norm(flat - centre, axis=1) - radius) ** 2)))
    return {
        "planarity": planarity,
        "top_fraction": top_fraction,
        "width_ratio": width_ratio,
        "cylinder_radius": radius,
        "cylinder_residual": residual,
    }


def _rejection(stats, shape: Optional[dict], config: ProposalConfig) -> Optional[str]:
    """The first gate a cluster fails (a short reason) or None when it looks like a person."""
    if stats.count < config.min_points:
        return "too few points"
    if not config.min_height <= stats.top_height <= config.max_height:
        return f"top height {stats.top_height:.2f} m outside [{config.min_height}, {config.max_height}]"
    if stats.vertical_extent < config.min_vertical_extent:
        return f"fragment: spans only {stats.vertical_extent:.2f} m of height"
    if stats.bottom_height > config.max_bottom_height:
        return f"floating: lowest point {stats.bottom_height:.2f} m above ground"
    if (
        stats.footprint_major > config.max_footprint_major
        or stats.footprint_minor > config.max_footprint_minor
        or stats.footprint_major * stats.footprint_minor > config.max_footprint_area
    ):
        return f"footprint {stats.footprint_major:.2f} x {stats.footprint_minor:.2f} m too large"
    if shape is None:
        return None
    if shape["planarity"] >= config.rigid_planarity:
        return f"planar (rigid object): {shape['planarity']:.2f}"
    if (
        shape["planarity"] >= config.rigid_planarity_uniform
        and 0 < shape["width_ratio"] <= config.max_uniform_width_ratio
    ):
        return f"planar with uniform width (box/wall): {shape['planarity']:.2f}, width ratio {shape['width_ratio']:.2f}"
    if shape["top_fraction"] > config.max_flat_top_fraction:
        return f"flat top (horizontal edge): {shape['top_fraction']:.2f} of the points"
    if shape["cylinder_radius"] <= config.cylinder_max_radius and shape["cylinder_residual"] <= config.cylinder_residual:
        return f"vertical cylinder (pole): radius {shape['cylinder_radius']:.2f} m"
    return None


# ---------------------------------------------------------------------------- proposals
def propose_persons(
    cloud_lidar: np.ndarray,
    T_cam_lidar: np.ndarray,
    camera: PinholeCamera,
    config: Optional[ProposalConfig] = None,
    ground: Optional[GroundPlane] = None,
    diagnostics: Optional[list] = None,
) -> List[PersonProposal]:
    """Person proposals from a LiDAR scan.

    cloud_lidar: (N, 3) points in the LiDAR frame, metres (NaN/inf rows are ignored).
    T_cam_lidar: (4, 4) rigid transform LiDAR → camera.
    camera: the pinhole camera the boxes are for.
    config: :class:`ProposalConfig` (defaults when None).
    ground: the ground plane in the LiDAR frame when already known; fitted otherwise
        (RANSAC, near-horizontal, below the sensor). Without any ground (none found) heights are
        measured from each cluster's own lowest point.
    diagnostics: when a list is given, one dict per cluster of ≥ ``min_points`` points is appended:
        ``{"cluster", "num_points", "centroid_lidar", "reason"}`` (reason None = proposed).

    Steps: drop non-finite points → ground fit and removal → Euclidean clustering → merging of
    stacked clusters → person gates (:class:`ProposalConfig`) → limbs split off a person and the
    feet taken by the ground removal are given back → projection of the points in front of the
    camera → box = bounds + ``box_margin``, clipped; persons with no point in the image or a box
    smaller than ``min_box_px`` are dropped. Returns the proposals sorted by distance from the
    camera (nearest first).
    Cost (2 CPU cores): ≈ 20–150 ms for a 30k–60k point scan; 2 million points ≈ 5 s (the
    clustering runs on a voxel grid; see :mod:`smplify3d_core.geometry.clustering`).
    """
    config = config or ProposalConfig()
    points = as_points(cloud_lidar)
    if len(points) == 0:
        return []
    T_cam_lidar = np.asarray(T_cam_lidar, dtype=np.float64)
    up = np.asarray(config.lidar_up, dtype=np.float64)
    up = up / np.linalg.norm(up)
    if ground is None:
        ground = fit_ground_plane(
            points,
            up=up,
            max_tilt_deg=config.ground_max_tilt_deg,
            distance_threshold=config.ground_threshold,
            fit_radius=config.ground_fit_radius,
        )
    above, low, sole = _split_ground(points, ground, config)
    above_ids = np.flatnonzero(above)
    if len(above_ids) == 0:
        return []
    labels = euclidean_clusters(points[above_ids], config.cluster_distance, min_points=1)
    if config.stack_max_gap > 0:
        labels = merge_stacked_clusters(
            points[above_ids], labels, ground, up, cell=config.stack_cell, max_gap=config.stack_max_gap
        )
    sizes = np.bincount(labels[labels >= 0])
    # labels are ordered by size: the clusters with ≥ min_points come first
    big = np.where(labels < int(np.sum(sizes >= config.min_points)), labels, -1)
    stats = cluster_statistics(points[above_ids], big, ground, up=up)
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]

    def cluster_ids(label: int) -> np.ndarray:
        lo, hi = np.searchsorted(sorted_labels, [label, label + 1])
        return np.sort(above_ids[order[lo:hi]])

    accepted = []
    for cluster in stats:
        reason = _rejection(cluster, None, config)
        shape = None
        if reason is None:
            members = points[cluster_ids(cluster.label)]
            heights = ground.height(members) if ground is not None else (members @ up - (members @ up).min())
            normal = ground.normal if ground is not None else up
            shape = shape_features(members, normal, heights, config, np.zeros(3))
            reason = _rejection(cluster, shape, config)
        if reason is None:
            accepted.append((cluster, shape))
        elif diagnostics is not None:
            diagnostics.append(
                {"cluster": cluster.label, "num_points": cluster.count, "centroid_lidar": cluster.centroid, "reason": reason}
            )

    low_ids, sole_ids = np.flatnonzero(low), np.flatnonzero(sole)
    persons = {}
    for cluster, _ in accepted:
        ids = cluster_ids(cluster.label)
        persons[cluster.label] = (ids, cKDTree(points[ids]))
    proposals: List[PersonProposal] = []
    for cluster, shape in accepted:
        member_ids = _attach_limbs(points, cluster.label, persons, above_ids, labels, cluster_ids, sizes, config)
        member_ids = _attach_feet(points, member_ids, low_ids, sole_ids, config)
        members_cam = _transform(T_cam_lidar, points[member_ids])
        uv = _project(members_cam, camera, config.min_depth)
        ok = np.all(np.isfinite(uv), axis=1)
        inside = ok & (uv[:, 0] >= 0) & (uv[:, 0] <= camera.width) & (uv[:, 1] >= 0) & (uv[:, 1] <= camera.height)
        reason = None
        if not inside.any():
            reason = "not in the image"
        else:
            x0, y0 = uv[ok].min(axis=0)
            x1, y1 = uv[ok].max(axis=0)
            mx, my = config.box_margin * (x1 - x0), config.box_margin * (y1 - y0)
            box = _clip_box(x0 - mx, y0 - my, x1 + mx, y1 + my, camera)
            if box[2] < config.min_box_px or box[3] < config.min_box_px:
                reason = f"box {box[2]:.0f}x{box[3]:.0f} px too small"
            else:
                centroid = members_cam.mean(axis=0)
                score = float(
                    np.clip((1.0 - shape["planarity"]) / 0.4, 0.0, 1.0) * min(1.0, len(member_ids) / 100.0)
                )
                gates = {
                    "top_height": cluster.top_height,
                    "bottom_height": cluster.bottom_height,
                    "vertical_extent": cluster.vertical_extent,
                    "footprint_major": cluster.footprint_major,
                    "footprint_minor": cluster.footprint_minor,
                    **shape,
                    "points_in_image": int(inside.sum()),
                }
                proposals.append(
                    PersonProposal(
                        box_xywh=box,
                        point_ids=member_ids.astype(np.int64),
                        centroid_cam=centroid,
                        num_points=int(len(member_ids)),
                        distance=float(np.linalg.norm(centroid)),
                        score=score,
                        gates=gates,
                    )
                )
        if diagnostics is not None:
            diagnostics.append(
                {"cluster": cluster.label, "num_points": cluster.count, "centroid_lidar": cluster.centroid, "reason": reason}
            )
    proposals.sort(key=lambda p: p.distance)
    return proposals


# ---------------------------------------------------------------------------- detector boxes
def boxes_from_detector(boxes_xywh, camera: PinholeCamera, min_box_px: float = 1.0) -> DetectorBoxes:
    """Validate and clamp caller-given boxes (a robot that runs its own 2D person detector).

    boxes_xywh: (K, 4) boxes in pixels (x, y of the top-left corner, width, height); a single
        (4,) box is accepted; an empty input gives no boxes.
    camera: the image the boxes belong to (its width/height bound the boxes).
    min_box_px: a box narrower or lower than this after clamping is dropped, pixels.

    A box is dropped — never an exception — with one of these reasons: ``"not finite"`` (NaN or
    inf), ``"zero or negative area"`` (w ≤ 0 or h ≤ 0 as given), ``"outside the image"`` (no
    overlap with ``[0, W] × [0, H]``), ``"too small after clamping"``. Kept boxes are clamped to
    the image. A malformed array (not (K, 4)) raises ValueError: that is a programming error.
    """
    boxes = np.asarray(boxes_xywh, dtype=np.float64)
    if boxes.size == 0:
        return DetectorBoxes(np.zeros((0, 4)), np.zeros(0, dtype=np.int64), [])
    if boxes.ndim == 1:
        boxes = boxes.reshape(1, -1)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must have shape (K, 4) as (x, y, w, h), got {boxes.shape}")
    kept, indices, dropped = [], [], []
    for i, (x, y, w, h) in enumerate(boxes):
        if not np.all(np.isfinite([x, y, w, h])):
            dropped.append((i, "not finite"))
            continue
        if w <= 0 or h <= 0:
            dropped.append((i, "zero or negative area"))
            continue
        if x >= camera.width or y >= camera.height or x + w <= 0 or y + h <= 0:
            dropped.append((i, "outside the image"))
            continue
        box = _clip_box(x, y, x + w, y + h, camera)
        if box[2] < min_box_px or box[3] < min_box_px:
            dropped.append((i, "too small after clamping"))
            continue
        kept.append(box)
        indices.append(i)
    return DetectorBoxes(
        np.array(kept, dtype=np.float64).reshape(-1, 4), np.array(indices, dtype=np.int64), dropped
    )


# ---------------------------------------------------------------------------- crops
def fit_camera_ground(cloud_cam: np.ndarray, config: Optional[ProposalConfig] = None) -> Optional[GroundPlane]:
    """Ground plane of a camera-frame cloud (up = ``config.camera_up``), or None when none is found.

    Pass the LiDAR-frame ground through ``GroundPlane.transformed(T_cam_lidar)`` instead when it
    is known (e.g. from :func:`propose_persons`'s fit): it is fitted around the LiDAR origin.
    """
    config = config or ProposalConfig()
    return fit_ground_plane(
        as_points(cloud_cam),
        up=config.camera_up,
        max_tilt_deg=config.camera_ground_max_tilt_deg,
        distance_threshold=config.ground_threshold,
        fit_radius=config.ground_fit_radius,
    )


def crop_persons_points(
    cloud_cam: np.ndarray,
    boxes_xywh,
    camera: PinholeCamera,
    config: Optional[ProposalConfig] = None,
    ground: Optional[GroundPlane] = None,
) -> List[np.ndarray]:
    """:func:`crop_person_points` for several boxes (the ground is fitted and the cloud projected once).

    boxes_xywh: (K, 4) pixels. Returns K arrays of point ids (int64, sorted).
    """
    config = config or ProposalConfig()
    points = as_points(cloud_cam)
    boxes = np.asarray(boxes_xywh, dtype=np.float64).reshape(-1, 4)
    if len(points) == 0:
        return [np.zeros(0, dtype=np.int64) for _ in boxes]
    if ground is None:
        ground = fit_camera_ground(points, config)
    above, low, sole = _split_ground(points, ground, config)
    uv = _project(points, camera, config.min_depth)
    projected = np.all(np.isfinite(uv), axis=1)
    return [
        _crop_one(points, uv, projected & above, projected & low, projected & sole, box, camera, config, ground)
        for box in boxes
    ]


def crop_person_points(
    cloud_cam: np.ndarray,
    box_xywh,
    camera: PinholeCamera,
    config: Optional[ProposalConfig] = None,
    ground: Optional[GroundPlane] = None,
) -> np.ndarray:
    """Point ids of the person in ``box_xywh``.

    cloud_cam: (N, 3) the full cloud in the camera frame, metres (NaN rows are ignored).
    box_xywh: (4,) person box, pixels.
    camera: the pinhole camera of the box.
    config: :class:`ProposalConfig`; ground: the ground in the camera frame (fitted from the cloud
        when None, see :func:`fit_camera_ground`; no ground found = nothing removed as ground).

    Rule:
    1. frustum: points in front of the camera projecting inside the box (a box side touching the
       image border is open: the person may continue outside the image); a context frustum =
       the box grown by ``crop_context`` on each side;
    2. ground points (≤ ``ground_margin`` above the plane) are removed; the rest of the context
       frustum is clustered (Euclidean, ``cluster_distance``);
    3. candidates: the clusters, stacked ones merged (one person cut in two by an occluder's arm:
       the upper body above the legs, see ``stack_max_gap``);
    4. each candidate with ≥ ``crop_min_points`` points inside the box gets
       containment = (its points inside the box) / (its points in the context frustum) — a person
       sits inside its own box, a wall or ground behind it reaches far beyond — and fill = IoU of
       the box with the bounding box of all its projected points in the context frustum — the
       person spans its box, a farther person seen beside it or between the legs does not, an
       occluder in front reaches beyond it; the candidate with the largest
       containment × fill is the person (ties: the nearer one);
    5. returned: the whole candidate when containment ≥ ``whole_cluster_containment`` (also its
       few points just outside a tight box), else only its points inside the box (it is merged
       with something else); plus small clusters mostly inside the box near it (limbs split off,
       see ``limb_distance``) and the low points near the ground that touch it (the feet).

    Returns (n,) int64 sorted ids into ``cloud_cam``; empty when the box holds no candidate.
    Known limit: two people touching each other (or a person leaning on a wall) form one cluster;
    then containment is low and only the box's part of that cluster is returned, which can
    include the other person's limbs inside the box.
    """
    return crop_persons_points(cloud_cam, np.asarray(box_xywh, dtype=np.float64).reshape(1, 4), camera, config, ground)[0]


def _crop_one(
    points: np.ndarray,
    uv: np.ndarray,
    candidates: np.ndarray,
    low: np.ndarray,
    sole: np.ndarray,
    box: np.ndarray,
    camera: PinholeCamera,
    config: ProposalConfig,
    ground: Optional[GroundPlane],
) -> np.ndarray:
    empty = np.zeros(0, dtype=np.int64)
    x, y, w, h = box
    if not np.all(np.isfinite(box)) or w <= 0 or h <= 0:
        return empty
    tol = config.border_tolerance_px
    lo = np.array([x, y], dtype=np.float64)
    hi = np.array([x + w, y + h], dtype=np.float64)
    grow = config.crop_context * np.array([w, h])
    ctx_lo, ctx_hi = lo - grow, hi + grow
    # open sides at the image border
    if x <= tol:
        lo[0] = ctx_lo[0] = -np.inf
    if y <= tol:
        lo[1] = ctx_lo[1] = -np.inf
    if x + w >= camera.width - tol:
        hi[0] = ctx_hi[0] = np.inf
    if y + h >= camera.height - tol:
        hi[1] = ctx_hi[1] = np.inf

    with np.errstate(invalid="ignore"):
        in_context = candidates & np.all((uv >= ctx_lo) & (uv <= ctx_hi), axis=1)
    context_ids = np.flatnonzero(in_context)
    if len(context_ids) == 0:
        return empty
    in_box = np.all((uv[context_ids] >= lo) & (uv[context_ids] <= hi), axis=1)
    if in_box.sum() < config.crop_min_points:
        return empty
    labels = euclidean_clusters(points[context_ids], config.cluster_distance, min_points=1)
    if config.stack_max_gap > 0:
        # one person cut in two by an occluder's arm: upper body above the legs → one candidate
        labels = merge_stacked_clusters(
            points[context_ids], labels, ground, config.camera_up, cell=config.stack_cell, max_gap=config.stack_max_gap
        )
    count = labels.max() + 1
    total = np.bincount(labels, minlength=count)
    inside = np.bincount(labels[in_box], minlength=count)
    present = np.flatnonzero(inside >= 1)

    box_clipped = _clip_box(x, y, x + w, y + h, camera)
    best, best_key = -1, None
    for label in present:
        if inside[label] < config.crop_min_points:
            continue
        whole = labels == label
        p = uv[context_ids[whole]]
        bx0, by0 = p.min(axis=0)
        bx1, by1 = p.max(axis=0)
        fill = _box_iou(_clip_box(bx0, by0, bx1, by1, camera), box_clipped)
        containment = inside[label] / total[label]
        median_depth = float(np.median(points[context_ids[whole & in_box], 2]))
        key = (round(containment * fill, 3), -median_depth)
        if best_key is None or key > best_key:
            best, best_key = label, key
    if best < 0:
        return empty
    chosen = labels == best
    if inside[best] < config.whole_cluster_containment * total[best]:
        chosen &= in_box
    member_ids = context_ids[chosen]

    # limbs: small clusters mostly inside the box close to the person (the far leg seen between the
    # legs, a raised hand cut off by a LiDAR gap), whatever their depth
    limbs = [
        label
        for label in present
        if label != best
        and inside[label] >= config.limb_containment * total[label]
        and total[label] <= config.limb_max_fraction * len(member_ids)
    ]
    if config.limb_distance > 0 and limbs:
        tree = cKDTree(points[member_ids])
        for label in limbs:
            limb_ids = context_ids[labels == label]
            d, _ = tree.query(points[limb_ids], distance_upper_bound=config.limb_distance)
            if np.isfinite(d).any():
                member_ids = np.concatenate([member_ids, limb_ids])

    # feet: points near the ground in the context frustum touching the person
    with np.errstate(invalid="ignore"):
        frustum = np.all((uv >= ctx_lo) & (uv <= ctx_hi), axis=1)
    member_ids = _attach_feet(points, member_ids, np.flatnonzero(low & frustum), np.flatnonzero(sole & frustum), config)
    return np.unique(member_ids).astype(np.int64)


# ---------------------------------------------------------------------------- keypoint flags
def lidar_visibility_for_keypoints(
    points_cam: np.ndarray, keypoints: np.ndarray, camera: PinholeCamera, kernel_px: int = 50
) -> np.ndarray:
    """(17,) per-keypoint LiDAR visibility in {0, 1} (DESIGN §3): the person's points are
    projected, the hit mask dilated by a ``kernel_px`` square, and read at each keypoint.

    points_cam: (N, 3) the person's points (e.g. ``cloud_cam[crop_person_points(...)]``), metres.
    keypoints: (17, 3) or (17, 2) COCO-17 keypoints, pixels (a confidence column is ignored).
    Thin wrapper of :func:`smplify3d_core.geometry.visibility.keypoint_lidar_visibility`.
    """
    return keypoint_lidar_visibility(points_cam, keypoints, camera, kernel_px)
