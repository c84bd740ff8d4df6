"""One frame in, one fitted body per person out — composes the core's stages.

This module is the layer the CLI, the dataset evaluation and the ROS node call. At present the
frame must carry keypoints and initial estimates (from the simulator, a scene folder or an
external detector); the learned front-ends plug in here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from smplify3d_core.body.model import SMPLBody
from smplify3d_core.body.priors import MaxMixturePosePrior
from smplify3d_core.fit.config import FitConfig
from smplify3d_core.fit.inputs import FitInputs
from smplify3d_core.fit.optimizer import FitResult, SMPLify3D
from smplify3d_core.sim.pose_prior import simulator_pose_prior_path
from smplify3d_core.types import FrameObservation


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
