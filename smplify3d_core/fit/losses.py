"""The SMPLify-3D loss terms, each returning one value per person (B,).

Reprojection: Σ over the 17 COCO joints of conf² · Σ_xy gmof(proj(J) − keypoint, σ), optionally
after shifting the projected joints so the hip midpoints (keypoints 11, 12) coincide (the
research code summed joints 0..15 and so never used the right ankle; all 17 are used here).
Occluded-part deviation: 1 − ⟨q, q₀⟩² between the current and the initial unit quaternion of
each joint that drives an image-invisible part. Weights are applied by the optimizer as
w² · term, as in the research code.
"""
from __future__ import annotations

import torch

from smplify3d_core.body.priors import gmof
from smplify3d_core.geometry.camera import project_points
from smplify3d_core.geometry.rotations import axis_angle_to_quaternion

LEFT_HIP, RIGHT_HIP = 11, 12  # COCO-17 ids


def reprojection_loss(
    joints3d: torch.Tensor,
    keypoints: torch.Tensor,
    confidence: torch.Tensor,
    K: torch.Tensor,
    sigma: float,
    align_hips: bool,
) -> torch.Tensor:
    """Σ_joints conf² · Σ_xy gmof(proj(J) − kp, σ), over all 17 COCO joints.

    joints3d: (B, 17, 3) camera frame, metres; keypoints: (B, 17, 2) pixels;
    confidence: (B, 17) in [0, 1] (zero for joints to ignore); K: (B, 3, 3); sigma in pixels.
    ``align_hips``: first shift the projected joints so the midpoint of their hips (COCO 11, 12)
    falls on the midpoint of the detected hips (the "aligned" variant used while the depth is
    still wrong).
    """
    projected = project_points(joints3d, K)
    if align_hips:
        # plain integer indexing: a list index would be copied to the device at every step
        shift = 0.5 * (keypoints[:, LEFT_HIP] + keypoints[:, RIGHT_HIP] - projected[:, LEFT_HIP] - projected[:, RIGHT_HIP])
        projected = projected + shift[:, None]
    residual = gmof(projected - keypoints, sigma).sum(-1)
    return (confidence ** 2 * residual).sum(-1)


def mean_reprojection_error(joints3d: torch.Tensor, keypoints: torch.Tensor, valid: torch.Tensor,
                            K: torch.Tensor) -> torch.Tensor:
    """Mean pixel distance between projected joints and keypoints over ``valid`` (B, 17) joints."""
    distance = (project_points(joints3d, K) - keypoints).norm(dim=-1)
    weights = valid.to(distance.dtype)
    return (distance * weights).sum(-1) / weights.sum(-1).clamp(min=1)


def occluded_part_deviation(body_pose: torch.Tensor, init_body_pose: torch.Tensor, joint_weights: torch.Tensor) -> torch.Tensor:
    """Σ_j weight_j · (1 − ⟨q_j, q0_j⟩²) over the 23 body joints.

    body_pose, init_body_pose: (B, 69) axis-angle; joint_weights: (B, 23) (1 for the SMPL joints
    that drive an image-invisible part, index = SMPL joint id − 1; 0 elsewhere).
    """
    q = axis_angle_to_quaternion(body_pose.reshape(-1, 23, 3))
    q0 = axis_angle_to_quaternion(init_body_pose.reshape(-1, 23, 3))
    return (joint_weights * (1.0 - (q * q0).sum(-1) ** 2)).sum(-1)
