"""LiDAR person proposals: the clusters of a scan that are shaped like a person.

:func:`propose_persons` removes the ground, clusters the rest (Euclidean), keeps the clusters
shaped like a person (size/height gates plus two "rigid object" tests that reject boxes, walls
and poles), gives back the limbs and feet split off by gaps and by the ground removal, projects
them into the image and boxes them. Each proposal keeps its point ids: they are the person's
LiDAR crop, so nothing is clustered twice (:mod:`~smplify3d_core.perception.scene_segmentation`).

Frames and units: LiDAR frame x forward, y left, z up; camera frame x right, y down, z forward;
metres for 3D, pixels for boxes ``(x, y, w, h)``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np
from scipy.spatial import cKDTree

from smplify3d_core.geometry.clustering import GroundPlane, cluster_statistics
from smplify3d_core.perception.proposal_config import ProposalConfig
from smplify3d_core.perception.scene_segmentation import (
    SceneSegmentation,
    attach_feet,
    clip_box,
    project_points,
    segment_scene,
)
from smplify3d_core.types import PinholeCamera


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



def _attach_limbs(scene: SceneSegmentation, label: int, persons: dict, config: ProposalConfig) -> np.ndarray:
    """The ids of person cluster ``label`` plus the small clusters (≤ ``limb_max_fraction`` of its
    size, not persons themselves) with a point within ``limb_distance`` of it and nearer to it
    than to any other person: a hand or the far leg split off by a LiDAR gap.

    persons: {label: (ids, cKDTree of their points)} for every accepted cluster."""
    points, above_ids, labels = scene.points, scene.above_ids, scene.labels
    member_ids, tree = persons[label]
    if config.limb_distance <= 0 or len(member_ids) == 0:
        return member_ids
    members = points[member_ids]
    lower, upper = members.min(axis=0) - config.limb_distance, members.max(axis=0) + config.limb_distance
    near = np.all((points[above_ids] >= lower) & (points[above_ids] <= upper), axis=1) & (labels >= 0)
    limit = config.limb_max_fraction * len(member_ids)
    extra = [member_ids]
    for limb in np.unique(labels[near]):
        if limb in persons or scene.sizes[limb] > limit:
            continue
        limb_ids = scene.cluster_ids(limb)
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
    less 0.15 m at each end, 0 when fewer than two slices have ≥ 5 points), cylinder_radius and
    cylinder_residual (algebraic circle fit of the ground projection, metres).
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
    """Person proposals from a LiDAR scan: :func:`segment_scene` then :func:`proposals_from_segmentation`.

    cloud_lidar: (N, 3) points in the LiDAR frame, metres (NaN/inf rows are ignored).
    T_cam_lidar: (4, 4) rigid transform LiDAR → camera; camera: the pinhole camera of the boxes.
    ground: the ground plane in the LiDAR frame when already known (fitted otherwise).
    Cost (2 CPU cores): ≈ 20–150 ms for a 30k–60k point scan; 2 million points ≈ 5 s (the
    clustering runs on a voxel grid; see :mod:`smplify3d_core.geometry.clustering`).
    """
    config = config or ProposalConfig()
    scene = segment_scene(cloud_lidar, T_cam_lidar, config, ground=ground)
    return proposals_from_segmentation(scene, camera, config, diagnostics)


def proposals_from_segmentation(
    scene: SceneSegmentation,
    camera: PinholeCamera,
    config: Optional[ProposalConfig] = None,
    diagnostics: Optional[list] = None,
) -> List[PersonProposal]:
    """The clusters of ``scene`` shaped like a person, as proposals with their own point sets.

    diagnostics: when a list is given, one dict per cluster of ≥ ``min_points`` points is appended:
        ``{"cluster", "num_points", "centroid_lidar", "reason"}`` (reason None = proposed).

    Steps: person gates on each cluster (:class:`ProposalConfig`) → limbs split off a person and
    the feet taken by the ground removal are given back → projection of the points in front of
    the camera → box = bounds + ``box_margin``, clipped; persons with no point in the image or a
    box smaller than ``min_box_px`` are dropped. Returns the proposals sorted by distance from the
    camera (nearest first); each proposal's ``point_ids`` is the person's crop.
    """
    config = config or ProposalConfig()
    points, ground, up = scene.points, scene.ground, scene.up
    if len(scene.above_ids) == 0:
        return []
    labels, sizes = scene.labels, scene.sizes
    # labels are ordered by size: the clusters with ≥ min_points come first
    big = np.where(labels < int(np.sum(sizes >= config.min_points)), labels, -1)
    stats = cluster_statistics(points[scene.above_ids], big, ground, up=up)
    cluster_ids = scene.cluster_ids

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

    low_ids, sole_ids = np.flatnonzero(scene.low), np.flatnonzero(scene.sole)
    persons = {}
    for cluster, _ in accepted:
        ids = cluster_ids(cluster.label)
        persons[cluster.label] = (ids, cKDTree(points[ids]))
    proposals: List[PersonProposal] = []
    for cluster, shape in accepted:
        member_ids = _attach_limbs(scene, cluster.label, persons, config)
        member_ids = attach_feet(points, member_ids, low_ids, sole_ids, config)
        members_cam = scene.points_cam[member_ids]
        uv = project_points(members_cam, camera, config.min_depth)
        ok = np.all(np.isfinite(uv), axis=1)
        inside = ok & (uv[:, 0] >= 0) & (uv[:, 0] <= camera.width) & (uv[:, 1] >= 0) & (uv[:, 1] <= camera.height)
        reason = None
        if not inside.any():
            reason = "not in the image"
        else:
            x0, y0 = uv[ok].min(axis=0)
            x1, y1 = uv[ok].max(axis=0)
            mx, my = config.box_margin * (x1 - x0), config.box_margin * (y1 - y0)
            box = clip_box(x0 - mx, y0 - my, x1 + mx, y1 + my, camera)
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


