"""One frame in, one fitted body per person out — composes the core's stages.

This module is the layer the CLI, the dataset evaluation and the ROS node call:

  image + cloud + K + extrinsic (+ optional boxes)
    -> person proposals (LiDAR clusters, or the caller's boxes)
    -> per-person LiDAR crops
    -> 2D keypoints (ViTPose) -> weak proposals dropped -> per-keypoint LiDAR visibility
    -> initial SMPL (CLIFF, expressed for the real camera K)
    -> SMPLify-3D fit, all persons in one batch.

Frames that already carry keypoints and initial estimates (scene folders, the simulator, a robot
running its own 2D detector) go straight to :func:`fit_frame`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch

from smplify3d_core.body.model import SMPLBody
from smplify3d_core.body.priors import MaxMixturePosePrior
from smplify3d_core.fit.config import FitConfig
from smplify3d_core.fit.inputs import FitInputs
from smplify3d_core.fit.optimizer import FitResult, SMPLify3D
from smplify3d_core.sim.pose_prior import simulator_pose_prior_path
from smplify3d_core.types import FrameObservation, PersonObservation, PinholeCamera


def resolve_device(device: Optional[str]) -> torch.device:
    """"auto"/None -> cuda when available else cpu; "cuda" without a GPU is a clear error."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for but torch sees no CUDA device; use --device cpu")
    return torch.device(device)


def load_pose_prior(config: FitConfig) -> MaxMixturePosePrior:
    """The GMM named by ``config.pose_prior_path``, or the project's simulator GMM when it is null."""
    path = config.pose_prior_path or simulator_pose_prior_path()
    return MaxMixturePosePrior.from_pickle(path)


def build_fitter(body: SMPLBody, config: FitConfig, device: Optional[str] = None, seed: int = 0) -> SMPLify3D:
    """An optimizer ready for frames: body on the device, pose prior loaded, tables computed."""
    return SMPLify3D(body, config, load_pose_prior(config), device=resolve_device(device), seed=seed)


@dataclass
class FrameFit:
    """A frame's observations with the fitted result (persons in the frame's order)."""

    frame: FrameObservation
    inputs: FitInputs
    result: FitResult


def fit_frame(frame: FrameObservation, fitter: SMPLify3D) -> FrameFit:
    """Fit every person of ``frame`` in one batch."""
    if not frame.persons:
        raise ValueError(f"frame {frame.frame_id} of {frame.sequence} has no persons to fit")
    inputs = FitInputs.from_observations(frame.persons, frame.camera, frame.T_cam_lidar, device=fitter.device,
                                         dtype=fitter.body.v_template.dtype)
    return FrameFit(frame, inputs, fitter.fit(inputs))


@dataclass
class FrontEnds:
    """The per-frame perception models and settings.

    keypoints: a :class:`~smplify3d_core.perception.pose2d.KeypointEstimator` (ViTPose).
    initial_smpl: a :class:`~smplify3d_core.perception.cliff.CliffEstimator` (CLIFF).
    proposals: settings of the LiDAR person proposals and crops.
    min_keypoint_score: a proposal whose mean ViTPose keypoint score is below this is dropped.
    lidar_kernel_px: dilation kernel of the per-keypoint LiDAR visibility mask, pixels.
    """

    keypoints: object
    initial_smpl: object
    proposals: object = None
    min_keypoint_score: float = 0.3
    lidar_kernel_px: int = 50


@dataclass
class ObservedFrame:
    """A frame turned into per-person observations, with what was dropped and the stage times."""

    frame: FrameObservation
    dropped: list = field(default_factory=list)
    stage_seconds: dict = field(default_factory=dict)


def observe_frame(
    image: np.ndarray,
    cloud_lidar: np.ndarray,
    camera: PinholeCamera,
    T_cam_lidar: np.ndarray,
    front_ends: FrontEnds,
    boxes_xywh: Optional[np.ndarray] = None,
    sequence: str = "live",
    frame_id: str = "0",
) -> ObservedFrame:
    """Proposals, crops, keypoints, LiDAR visibility and initial SMPL for one frame.

    image: (H, W, 3) uint8 RGB; cloud_lidar: (N, 3) metres in the LiDAR frame; T_cam_lidar: (4, 4)
    LiDAR -> camera; boxes_xywh: (K, 4) person boxes from the caller's detector (pixels) or None
    to propose persons from the LiDAR cloud. Dropped candidates are listed with a reason.
    """
    from smplify3d_core.perception.pose2d import check_rgb8
    from smplify3d_core.perception.proposals import (
        ProposalConfig, boxes_from_detector, crop_persons_points, lidar_visibility_for_keypoints, propose_persons,
    )

    image = check_rgb8(image)
    if image.shape[:2] != (camera.height, camera.width):
        raise ValueError(f"the image is {image.shape[1]}x{image.shape[0]} but the camera is {camera.width}x{camera.height}")
    config = front_ends.proposals or ProposalConfig()
    timings: dict = {}
    dropped: list = []
    cloud_lidar = np.asarray(cloud_lidar, dtype=np.float64).reshape(-1, 3)
    cloud_lidar = cloud_lidar[np.all(np.isfinite(cloud_lidar), axis=1)]
    cloud_cam = cloud_lidar @ np.asarray(T_cam_lidar)[:3, :3].T + np.asarray(T_cam_lidar)[:3, 3]

    start = time.perf_counter()
    if boxes_xywh is None:
        boxes = np.array([p.box_xywh for p in propose_persons(cloud_lidar, T_cam_lidar, camera, config)]).reshape(-1, 4)
    else:
        checked = boxes_from_detector(boxes_xywh, camera)
        boxes = checked.boxes_xywh.reshape(-1, 4)
        dropped += [(f"box {index}", reason) for index, reason in checked.dropped]
    timings["proposals"] = time.perf_counter() - start

    start = time.perf_counter()
    crops = crop_persons_points(cloud_cam, boxes, camera, config) if len(boxes) else []
    timings["crops"] = time.perf_counter() - start

    start = time.perf_counter()
    keypoints = front_ends.keypoints(image, boxes) if len(boxes) else np.zeros((0, 17, 3))
    timings["keypoints"] = time.perf_counter() - start
    keep = [i for i in range(len(boxes)) if float(np.mean(keypoints[i, :, 2])) >= front_ends.min_keypoint_score]
    dropped += [(f"proposal {i}", f"weak keypoints (mean score {float(np.mean(keypoints[i, :, 2])):.2f} "
                 f"< {front_ends.min_keypoint_score})") for i in range(len(boxes)) if i not in keep]

    start = time.perf_counter()
    inits = front_ends.initial_smpl(image, boxes[keep], camera.K) if keep else []
    timings["initial_smpl"] = time.perf_counter() - start

    persons = []
    for slot, i in enumerate(keep):
        points = cloud_cam[crops[i]]
        persons.append(PersonObservation(
            tracking_id=str(len(persons)),
            bbox_xywh=boxes[i],
            keypoints=keypoints[i],
            lidar_visibility=lidar_visibility_for_keypoints(points, keypoints[i], camera, front_ends.lidar_kernel_px),
            points=points,
            init=inits[slot],
        ))
    frame = FrameObservation(sequence=sequence, frame_id=frame_id, camera=camera, T_cam_lidar=T_cam_lidar,
                             persons=persons, image=image, cloud_lidar=cloud_lidar)
    return ObservedFrame(frame, dropped, timings)


def process_frame(
    image: np.ndarray,
    cloud_lidar: np.ndarray,
    camera: PinholeCamera,
    T_cam_lidar: np.ndarray,
    front_ends: FrontEnds,
    fitter: SMPLify3D,
    boxes_xywh: Optional[np.ndarray] = None,
    sequence: str = "live",
    frame_id: str = "0",
) -> tuple[Optional[FrameFit], ObservedFrame]:
    """:func:`observe_frame` then :func:`fit_frame`; the fit is None when no person was found.

    The stage times of both halves are merged into ``observed.stage_seconds``.
    """
    observed = observe_frame(image, cloud_lidar, camera, T_cam_lidar, front_ends, boxes_xywh, sequence, frame_id)
    if not observed.frame.persons:
        return None, observed
    fit = fit_frame(observed.frame, fitter)
    observed.stage_seconds.update(fit.result.stage_seconds)
    return fit, observed


def load_front_ends(vitpose_checkpoint=None, cliff_checkpoint=None, device: Optional[str] = None,
                    flip_test: bool = True, half: bool = False) -> tuple:
    """(KeypointEstimator or None, CliffEstimator or None) from checkpoint paths (None: not loaded)."""
    device = resolve_device(device)
    keypoints = initial_smpl = None
    if vitpose_checkpoint:
        from smplify3d_core.perception.pose2d import KeypointEstimator
        from smplify3d_core.perception.vitpose import load_vitpose

        keypoints = KeypointEstimator(load_vitpose(vitpose_checkpoint, device=device), device=device,
                                      flip_test=flip_test, half=half)
    if cliff_checkpoint:
        from smplify3d_core.perception.cliff import CliffEstimator

        initial_smpl = CliffEstimator.from_checkpoint(cliff_checkpoint, device=device)
    return keypoints, initial_smpl


def fill_missing_observations(frame: FrameObservation, keypoints=None, initial_smpl=None, lidar_kernel_px: int = 50) -> list:
    """Compute what a frame lacks from its image and person boxes, in place.

    keypoints: a KeypointEstimator — used for persons whose keypoints are all zero-confidence
    (their per-keypoint LiDAR visibility is recomputed from their points); initial_smpl: a
    CliffEstimator — used for persons without ``init``. Returns the tracking ids completed.
    """
    from smplify3d_core.perception.proposals import lidar_visibility_for_keypoints

    completed = []
    need_keypoints = [p for p in frame.persons if not np.any(p.keypoints[:, 2] > 0)]
    need_init = [p for p in frame.persons if p.init is None]
    if (need_keypoints and keypoints is not None) or (need_init and initial_smpl is not None):
        if frame.image is None:
            raise ValueError(f"frame {frame.frame_id}: computing keypoints or initial estimates needs the image")
    if need_keypoints and keypoints is not None:
        estimated = keypoints(frame.image, np.stack([p.bbox_xywh for p in need_keypoints]))
        for person, kp in zip(need_keypoints, estimated):
            person.keypoints = np.asarray(kp, dtype=np.float64)
            person.lidar_visibility = lidar_visibility_for_keypoints(person.points, person.keypoints, frame.camera, lidar_kernel_px)
            completed.append(person.tracking_id)
    if need_init and initial_smpl is not None:
        estimated = initial_smpl(frame.image, np.stack([p.bbox_xywh for p in need_init]), frame.camera.K)
        for person, init in zip(need_init, estimated):
            person.init = init
            completed.append(person.tracking_id)
    return sorted(set(completed))
