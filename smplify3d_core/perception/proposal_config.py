"""Settings of the LiDAR person proposals and the per-person point crops.

One dataclass, :class:`ProposalConfig`; its fields are ROS parameters of the node under
``proposals.`` and can be set on the command line with ``--set proposals.<name>=<value>``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

from smplify3d_core.typed_config import setting


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

    lidar_up: Tuple[float, float, float] = setting(
        (0.0, 0.0, 1.0), "up direction of the LiDAR frame (a level-mounted LiDAR: +z)")
    camera_up: Tuple[float, float, float] = setting(
        (0.0, -1.0, 0.0), "up direction of the camera frame, for clouds cropped in the camera frame (a level camera: -y)")
    ground_max_tilt_deg: float = setting(
        15.0, "the ground normal may deviate this much from up, degrees (LiDAR frame)", min=0, max=90)
    camera_ground_max_tilt_deg: float = setting(
        35.0, "the same for a ground fitted in the camera frame (a robot's camera is often pitched), degrees", min=0, max=90)
    ground_threshold: float = setting(0.05, "RANSAC inlier distance of the ground fit, metres", min=0)
    ground_fit_radius: float = setting(
        30.0, "only points within this horizontal distance of the sensor fit the ground, metres", min=0)
    ground_margin: float = setting(
        0.06, "points up to this height above the ground (and all below) are ground, metres", min=0)
    feet_floor: float = setting(
        0.02, "low points between this height and ground_margin can be given back to a person as feet, metres", min=0)
    feet_link_distance: float = setting(
        0.15, "low points chained closer than this to a person are its feet, metres", min=0)
    sole_distance: float = setting(
        0.04, "ground-level points this close to a person's points are its soles, metres", min=0)
    cluster_distance: float = setting(0.25, "Euclidean linking distance of the clustering, metres", min=0)
    stack_cell: float = setting(
        0.2, "stacked clusters within this horizontal distance are merged (a person cut by an occluder), metres", min=0)
    stack_max_gap: float = setting(
        1.0, "largest vertical gap between stacked clusters that are merged, metres (0 disables merging)", min=0)
    min_points: int = setting(20, "clusters with fewer points are never proposed", min=0)
    min_vertical_extent: float = setting(0.5, "clusters spanning less height are fragments, metres", min=0)
    min_height: float = setting(0.8, "lowest accepted top of a person above the ground, metres", min=0)
    max_height: float = setting(2.3, "highest accepted top of a person above the ground, metres", min=0)
    max_bottom_height: float = setting(
        1.4, "a cluster whose lowest point is higher above the ground is floating, metres", min=0)
    max_footprint_major: float = setting(2.2, "largest length of a person's ground projection, metres", min=0)
    max_footprint_minor: float = setting(1.0, "largest width of a person's ground projection, metres", min=0)
    max_footprint_area: float = setting(
        1.1, "largest length x width of a person's ground projection, square metres", min=0)
    rigid_planarity: float = setting(
        0.95, "clusters this planar (fraction on a few vertical planes + the top layer) are rigid objects", min=0, max=1)
    rigid_planarity_uniform: float = setting(
        0.86, "clusters this planar whose width barely changes with height are rigid objects", min=0, max=1)
    max_uniform_width_ratio: float = setting(
        1.35, "largest / smallest slice width at or below which a planar cluster counts as uniform", min=0)
    max_flat_top_fraction: float = setting(
        0.4, "more than this fraction of points within 4 cm of the top is a horizontal edge", min=0, max=1)
    planarity_threshold: float = setting(0.03, "inlier distance of the planarity test, metres", min=0)
    planarity_planes: int = setting(2, "vertical planes the planarity test fits", min=0, max=5)
    cylinder_residual: float = setting(
        0.025, "ground projections fitting a circle with an RMS residual at most this are poles, metres", min=0)
    cylinder_max_radius: float = setting(0.35, "... and a radius at most this, metres", min=0)
    box_margin: float = setting(
        0.10, "the box of the projected points grows by this fraction of its size on each side", min=0, max=2)
    min_box_px: float = setting(8.0, "boxes narrower or lower than this after clipping are dropped, pixels", min=0)
    min_depth: float = setting(0.1, "points closer than this along the optical axis are not projected, metres", min=0)
    crop_context: float = setting(
        0.5, "crops judge clusters in the box grown by this fraction of its size on each side", min=0, max=5)
    border_tolerance_px: float = setting(
        2.0, "a box side this close to the image border is open (the person may continue outside), pixels", min=0)
    crop_min_points: int = setting(5, "clusters with fewer points inside the box are not crop candidates", min=0)
    whole_cluster_containment: float = setting(
        0.7, "a chosen cluster with at least this fraction of its points inside the box is kept whole", min=0, max=1)
    limb_distance: float = setting(
        0.6, "small clusters within this distance of a person are added to it (limbs split off), metres", min=0)
    limb_max_fraction: float = setting(
        0.3, "... when they hold at most this fraction of the person's points", min=0, max=1)
    limb_containment: float = setting(
        0.5, "... and (crops) at least this fraction of their points lie inside the box", min=0, max=1)
