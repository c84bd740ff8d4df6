"""One synchronized frame in, the persons to fit out — the single per-frame perception path.

:func:`observe_frame` is used by every entry point (the ROS node, ``smplify3d-bag process``, the
``smplify3d`` CLI and the dataset evaluation), whatever says where the persons are:

* nothing: LiDAR person proposals — the cloud is segmented once (ground fitted once, clustered
  once) and each proposal's own point set is its crop;
* detector boxes: the boxes are validated and each is cropped from the same single segmentation;
* observations (another node's or a dataset's keypoints, boxes and initial estimates): persons
  without LiDAR points are cropped from the same segmentation, the others keep theirs.

Then, only for what the persons still lack, ViTPose (keypoints; weak persons dropped), the
per-keypoint LiDAR visibility and CLIFF (initial SMPL). ``max_persons`` keeps the nearest persons
in every mode, before any network runs.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import numpy as np

from smplify3d_core.image import check_rgb8
from smplify3d_core.models import FrontEnds
from smplify3d_core.perception.crops import boxes_from_detector, crop_boxes, lidar_visibility_for_keypoints
from smplify3d_core.perception.proposals import proposals_from_segmentation
from smplify3d_core.perception.scene_segmentation import segment_scene
from smplify3d_core.pipeline_config import PipelineConfig
from smplify3d_core.types import FrameObservation, PersonObservation, PinholeCamera


@dataclass
class SensorFrame:
    """One synchronized camera + LiDAR frame, as arrays.

    image: (H, W, 3) uint8 RGB (see :func:`smplify3d_core.image.to_rgb8`), or None when every
        person comes with keypoints and an initial estimate.
    cloud_lidar: (N, 3) the full cloud in the LiDAR frame, metres (non-finite rows are ignored).
    camera: the pinhole camera of the image; T_cam_lidar: (4, 4) LiDAR → camera.
    stamp: seconds (the image's stamp); the frame id and the tracker's clock.
    T_track_cam: (4, 4) camera -> tracking frame (e.g. odom) at ``stamp``, or None: the camera frame
        is the tracking frame.
    boxes_xywh: (K, 4) person boxes of the caller's 2D detector, pixels, or None.
    observations: per-person keypoints / boxes / initial estimates from elsewhere, or None.
    """

    image: Optional[np.ndarray]
    cloud_lidar: np.ndarray
    camera: PinholeCamera
    T_cam_lidar: np.ndarray
    stamp: float = 0.0
    boxes_xywh: Optional[np.ndarray] = None
    observations: Optional[List[PersonObservation]] = None
    sequence: str = "live"
    frame_id: Optional[str] = None
    T_track_cam: Optional[np.ndarray] = None


@dataclass
class ObservedFrame:
    """The persons of a frame ready to fit (``frame.persons``), what was dropped and why, the stage
    times (s), and ``cloud_points``: (valid points, points used) — fewer used when the cloud was thinned."""

    frame: FrameObservation
    dropped: List[Tuple[str, str]] = field(default_factory=list)
    stage_seconds: dict = field(default_factory=dict)
    cloud_points: Tuple[int, int] = (0, 0)


def valid_cloud(cloud: np.ndarray, max_points: int, max_range_m: float = np.inf) -> Tuple[np.ndarray, int]:
    """(the usable rows of ``cloud`` (N, 3) m, thinned to every k-th when more than ``max_points``; their
    count before thinning).

    Usable: finite and within ``max_range_m`` of the LiDAR. Raises ValueError when most finite points
    lie beyond that range: such a cloud is not in metres (millimetres, a byte-swapped float field),
    and fitting to what is left of it would place bodies wrongly.
    """
    cloud = np.asarray(cloud, dtype=np.float64).reshape(-1, 3)
    cloud = cloud[np.all(np.isfinite(cloud), axis=1)]
    finite = len(cloud)
    with np.errstate(over="ignore"):
        cloud = cloud[np.linalg.norm(cloud, axis=1) <= max_range_m]
    if finite and len(cloud) < 0.5 * finite:
        raise ValueError(f"{finite - len(cloud)} of the cloud's {finite} finite points lie farther than "
                         f"max_point_range_m ({max_range_m:g} m) from the LiDAR: is it in metres (REP 103) and "
                         "its byte order right?")
    count = len(cloud)
    if count > max_points:
        cloud = cloud[:: -(-count // max_points)]
    return cloud, count


def _has_keypoints(person: PersonObservation) -> bool:
    return bool(np.any(person.keypoints[:, 2] > 0))


def observe_frame(frame: SensorFrame, config: PipelineConfig, front_ends: Optional[FrontEnds] = None,
                  estimate_inits: bool = True) -> ObservedFrame:
    """The persons of ``frame`` with their crops, keypoints, LiDAR visibility and initial estimates.

    estimate_inits: False leaves persons without an initial estimate as they are (the tracked fit
    runs CLIFF only for the persons it fits cold, :func:`complete_inits`).

    Persons that cannot be completed (no keypoints and no ViTPose, weak ViTPose keypoints, no
    initial estimate and no CLIFF, beyond ``max_persons``) are listed in ``dropped`` with the
    reason. A person whose box holds no LiDAR point is kept: the fit flags it ``no_lidar_points``.
    Raises ValueError for an image that does not match the camera or is not uint8 RGB.
    """
    front_ends = front_ends or FrontEnds()
    camera = frame.camera
    if frame.image is not None:
        image = check_rgb8(frame.image)
        if image.shape[:2] != (camera.height, camera.width):
            raise ValueError(f"the image is {image.shape[1]}x{image.shape[0]} but the camera is "
                             f"{camera.width}x{camera.height}")
    else:
        image = None
    timings: dict = {}
    dropped: List[Tuple[str, str]] = []
    cloud, valid_count = valid_cloud(frame.cloud_lidar, config.max_cloud_points, config.max_point_range_m)
    T = np.asarray(frame.T_cam_lidar, dtype=np.float64)

    start = time.perf_counter()
    candidates: List[PersonObservation] = []
    distances: List[float] = []
    fresh = set()  # ids of the persons whose points were cropped here: their LiDAR visibility is computed below
    if frame.observations is None and frame.boxes_xywh is None:
        scene = segment_scene(cloud, T, config.proposals)
        for proposal in proposals_from_segmentation(scene, camera, config.proposals):
            candidates.append(_blank_person(str(len(candidates)), proposal.box_xywh, scene.points_cam[proposal.point_ids]))
            distances.append(proposal.distance)
            fresh.add(id(candidates[-1]))
    else:
        if frame.observations is None:
            checked = boxes_from_detector(frame.boxes_xywh, camera)
            dropped += [(f"box {index}", reason) for index, reason in checked.dropped]
            given = [_blank_person(str(i), box, np.zeros((0, 3))) for i, box in zip(checked.indices, checked.boxes_xywh)]
        else:
            given = [copy.copy(p) for p in frame.observations]
        need_crop = [p for p in given if len(p.points) == 0]
        if need_crop:
            scene = segment_scene(cloud, T, config.proposals)
            crops = crop_boxes(scene, np.stack([p.bbox_xywh for p in need_crop]), camera, config.proposals)
            for person, ids in zip(need_crop, crops):
                person.points = scene.points_cam[ids]
                fresh.add(id(person))
        for person in given:  # a person without LiDAR points is still fitted (flagged no_lidar_points), last in line
            candidates.append(person)
            distances.append(float(np.linalg.norm(np.median(person.points, axis=0))) if len(person.points) else np.inf)
    timings["proposals"] = time.perf_counter() - start

    nearest = sorted(np.argsort(distances, kind="stable")[: config.max_persons].tolist())
    for index in sorted(set(range(len(candidates))) - set(nearest)):
        dropped.append((candidates[index].tracking_id, f"beyond max_persons ({config.max_persons} nearest kept)"))
    persons = [candidates[i] for i in nearest]

    persons, completion_dropped = complete_persons(persons, image, camera, config, front_ends, fresh, timings,
                                                   estimate_inits)
    dropped += completion_dropped

    frame_id = frame.frame_id if frame.frame_id is not None else f"{frame.stamp:.6f}"
    observed = FrameObservation(sequence=frame.sequence, frame_id=frame_id, camera=camera, T_cam_lidar=T,
                                persons=persons, image=image, cloud_lidar=cloud)
    if frame.observations is None:
        for slot, person in enumerate(persons):  # proposals and boxes: ids in the frame's order
            person.tracking_id = str(slot)
    return ObservedFrame(observed, dropped, timings, (valid_count, len(cloud)))


def _blank_person(tracking_id: str, box: np.ndarray, points: np.ndarray) -> PersonObservation:
    """A person known only by its box and points (keypoints and initial estimate still to come)."""
    return PersonObservation(tracking_id=tracking_id, bbox_xywh=box, keypoints=np.zeros((17, 3)),
                             lidar_visibility=np.zeros(17), points=points)


def complete_persons(persons: List[PersonObservation], image: Optional[np.ndarray], camera: PinholeCamera,
                     config: PipelineConfig, front_ends: Optional[FrontEnds] = None, fresh: Optional[set] = None,
                     timings: Optional[dict] = None,
                     estimate_inits: bool = True) -> Tuple[List[PersonObservation], List[Tuple[str, str]]]:
    """Give the persons what they lack, in place: ViTPose keypoints (persons with all-zero
    confidences), the per-keypoint LiDAR visibility (persons whose keypoints were estimated here or
    whose ids are in ``fresh``), CLIFF initial estimates (persons without ``init``).

    Returns (the persons that can be fitted, (person, reason) for each one that cannot: no keypoints
    and no ViTPose, weak ViTPose keypoints, no initial estimate and no CLIFF).
    """
    front_ends = front_ends or FrontEnds()
    fresh = set() if fresh is None else fresh
    timings = {} if timings is None else timings
    dropped: List[Tuple[str, str]] = []
    persons = _complete_keypoints(persons, image, config, front_ends, timings, dropped, fresh)
    for person in persons:
        if id(person) in fresh:
            person.lidar_visibility = lidar_visibility_for_keypoints(person.points, person.keypoints, camera,
                                                                     config.lidar_kernel_px)
    if estimate_inits:
        persons = complete_inits(persons, image, camera, front_ends, timings, dropped)
    return persons, dropped


def _complete_keypoints(persons, image, config, front_ends, timings, dropped, fresh: set):
    """ViTPose for the persons without keypoints (added to ``fresh``); persons with weak ones are dropped."""
    missing = [p for p in persons if not _has_keypoints(p)]
    if not missing:
        return persons
    if front_ends.keypoints is None or image is None:
        why = "no 2D keypoints (set vitpose_checkpoint, or give keypoints in the observations)" \
            if front_ends.keypoints is None else "no 2D keypoints and no image to detect them in"
        dropped += [(p.tracking_id, why) for p in missing]
        return [p for p in persons if _has_keypoints(p)]
    start = time.perf_counter()
    estimated = front_ends.keypoints(image, np.stack([p.bbox_xywh for p in missing]))
    timings["keypoints"] = time.perf_counter() - start
    weak = set()
    for person, keypoints in zip(missing, estimated):
        person.keypoints = np.asarray(keypoints, dtype=np.float64)
        fresh.add(id(person))
        score = float(np.mean(person.keypoints[:, 2]))
        if score < config.min_keypoint_score:
            weak.add(id(person))
            dropped.append((person.tracking_id, f"weak keypoints (mean score {score:.2f} < {config.min_keypoint_score})"))
    return [p for p in persons if id(p) not in weak]


def complete_inits(persons, image, camera, front_ends, timings, dropped):
    """CLIFF for the persons without an initial estimate (in place); the persons that have one after it
    (without CLIFF or an image the others are appended to ``dropped`` with the reason)."""
    missing = [p for p in persons if p.init is None]
    if not missing:
        return persons
    if front_ends.initial_smpl is None or image is None:
        why = "no initial estimate (set cliff_checkpoint, or give one in the observations)" \
            if front_ends.initial_smpl is None else "no initial estimate and no image to estimate it from"
        dropped += [(p.tracking_id, why) for p in missing]
        return [p for p in persons if p.init is not None]
    start = time.perf_counter()
    estimated = front_ends.initial_smpl(image, np.stack([p.bbox_xywh for p in missing]), camera.K)
    timings["initial_smpl"] = timings.get("initial_smpl", 0.0) + time.perf_counter() - start  # cold + restarts
    for person, init in zip(missing, estimated):
        person.init = init
    return persons

