"""Per-person LiDAR crops for caller-given boxes, and the per-keypoint LiDAR visibility.

* :func:`boxes_from_detector` — a robot that runs its own 2D detector passes its boxes; they are
  validated and clamped, bad ones are dropped with a reason;
* :func:`crop_boxes` — the person in each box, chosen among the clusters of the frame's
  :class:`~smplify3d_core.perception.scene_segmentation.SceneSegmentation` (rule in
  :func:`crop_person_points`); :func:`crop_person_points` / :func:`crop_persons_points` do the
  same for a camera-frame cloud given alone;
* :func:`lidar_visibility_for_keypoints` — which keypoints have LiDAR points under them.

Frames and units: camera frame x right, y down, z forward, metres; boxes ``(x, y, w, h)`` pixels.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import numpy as np
from scipy.spatial import cKDTree

from smplify3d_core.geometry.clustering import GroundPlane
from smplify3d_core.geometry.visibility import keypoint_lidar_visibility
from smplify3d_core.perception.proposal_config import ProposalConfig
from smplify3d_core.perception.scene_segmentation import (
    SceneSegmentation,
    attach_feet,
    box_iou,
    clip_box,
    project_points,
    segment_scene,
)
from smplify3d_core.types import PinholeCamera


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
        box = clip_box(x, y, x + w, y + h, camera)
        if box[2] < min_box_px or box[3] < min_box_px:
            dropped.append((i, "too small after clamping"))
            continue
        kept.append(box)
        indices.append(i)
    return DetectorBoxes(
        np.array(kept, dtype=np.float64).reshape(-1, 4), np.array(indices, dtype=np.int64), dropped
    )


# ---------------------------------------------------------------------------- crops
def crop_boxes(scene: SceneSegmentation, boxes_xywh, camera: PinholeCamera,
               config: Optional[ProposalConfig] = None) -> List[np.ndarray]:
    """The person in each box, as point ids of the segmented cloud (its clusters are reused).

    scene: the frame's :class:`SceneSegmentation` (ground fitted and clusters built once).
    boxes_xywh: (K, 4) person boxes, pixels. Returns K arrays of point ids (int64, sorted; empty
    when a box holds no candidate). The rule is :func:`crop_person_points`'s.
    """
    config = config or ProposalConfig()
    boxes = np.asarray(boxes_xywh, dtype=np.float64).reshape(-1, 4)
    if len(scene.points) == 0:
        return [np.zeros(0, dtype=np.int64) for _ in boxes]
    uv = project_points(scene.points_cam, camera, config.min_depth)
    projected = np.all(np.isfinite(uv), axis=1)
    return [_crop_one(scene, uv, projected, box, camera, config) for box in boxes]


def crop_persons_points(
    cloud_cam: np.ndarray,
    boxes_xywh,
    camera: PinholeCamera,
    config: Optional[ProposalConfig] = None,
    ground: Optional[GroundPlane] = None,
) -> List[np.ndarray]:
    """:func:`crop_person_points` for several boxes of a camera-frame cloud (segmented once).

    boxes_xywh: (K, 4) pixels. Returns K arrays of point ids (int64, sorted). A frame whose
    LiDAR cloud is already segmented uses :func:`crop_boxes` instead.
    """
    scene = segment_scene(cloud_cam, np.eye(4), config, ground=ground, camera_frame_cloud=True)
    return crop_boxes(scene, boxes_xywh, camera, config)


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
        about ``camera_up`` when None; no ground found = nothing removed as ground).

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


def _crop_one(scene: SceneSegmentation, uv: np.ndarray, projected: np.ndarray, box: np.ndarray,
              camera: PinholeCamera, config: ProposalConfig) -> np.ndarray:
    """Point ids of the person in ``box`` (rule in :func:`crop_person_points`)."""
    points, candidates = scene.points, projected & scene.above
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
    # the scene's clusters (stacked ones already merged), renumbered within the context frustum
    _, labels = np.unique(scene.point_labels[context_ids], return_inverse=True)
    count = labels.max() + 1
    total = np.bincount(labels, minlength=count)
    inside = np.bincount(labels[in_box], minlength=count)
    present = np.flatnonzero(inside >= 1)

    box_clipped = clip_box(x, y, x + w, y + h, camera)
    best, best_key = -1, None
    for label in present:
        if inside[label] < config.crop_min_points:
            continue
        whole = labels == label
        p = uv[context_ids[whole]]
        bx0, by0 = p.min(axis=0)
        bx1, by1 = p.max(axis=0)
        fill = box_iou(clip_box(bx0, by0, bx1, by1, camera), box_clipped)
        containment = inside[label] / total[label]
        median_depth = float(np.median(scene.points_cam[context_ids[whole & in_box], 2]))
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
    low, sole = projected & scene.low, projected & scene.sole
    member_ids = attach_feet(points, member_ids, np.flatnonzero(low & frustum), np.flatnonzero(sole & frustum), config)
    return np.unique(member_ids).astype(np.int64)



# ---------------------------------------------------------------------------- keypoint flags
def lidar_visibility_for_keypoints(
    points_cam: np.ndarray, keypoints: np.ndarray, camera: PinholeCamera, kernel_px: int = 50
) -> np.ndarray:
    """(17,) per-keypoint LiDAR visibility in {0, 1}: the person's points are
    projected, the hit mask dilated by a ``kernel_px`` square, and read at each keypoint.

    points_cam: (N, 3) the person's points (e.g. ``cloud_cam[crop_person_points(...)]``), metres.
    keypoints: (17, 3) or (17, 2) COCO-17 keypoints, pixels (a confidence column is ignored).
    Thin wrapper of :func:`smplify3d_core.geometry.visibility.keypoint_lidar_visibility`.
    """
    return keypoint_lidar_visibility(points_cam, keypoints, camera, kernel_px)
