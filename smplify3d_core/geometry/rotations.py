"""Rotation conversions (torch, batched, device-agnostic).

Axis-angle vectors are in radians; rotation matrices act on column vectors.
"""
from __future__ import annotations

import torch


def axis_angle_to_matrix(axis_angle: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula.

    axis_angle: (..., 3) radians. Returns (..., 3, 3). Exact and differentiable at 0
    (a Taylor expansion is used for tiny angles).
    """
    theta2 = (axis_angle * axis_angle).sum(-1, keepdim=True)  # (..., 1)
    small = theta2 < 1e-12
    theta2_safe = torch.where(small, torch.ones_like(theta2), theta2)
    theta = torch.sqrt(theta2_safe)
    sin_over = torch.where(small, 1.0 - theta2 / 6.0, torch.sin(theta) / theta)
    one_minus_cos_over = torch.where(small, 0.5 - theta2 / 24.0, (1.0 - torch.cos(theta)) / theta2_safe)
    x, y, z = axis_angle.unbind(-1)
    zeros = torch.zeros_like(x)
    skew = torch.stack([zeros, -z, y, z, zeros, -x, -y, x, zeros], dim=-1).reshape(*axis_angle.shape[:-1], 3, 3)
    eye = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device).expand_as(skew)
    return eye + sin_over[..., None] * skew + one_minus_cos_over[..., None] * (skew @ skew)


def matrix_to_axis_angle(matrix: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`axis_angle_to_matrix` via quaternions. (..., 3, 3) -> (..., 3) radians."""
    return quaternion_to_axis_angle(matrix_to_quaternion(matrix))


def axis_angle_to_quaternion(axis_angle: torch.Tensor) -> torch.Tensor:
    """(..., 3) radians -> (..., 4) unit quaternions (w, x, y, z)."""
    theta2 = (axis_angle * axis_angle).sum(-1, keepdim=True)
    small = theta2 < 1e-12
    theta = torch.sqrt(torch.where(small, torch.ones_like(theta2), theta2))
    half_sin_over = torch.where(small, 0.5 - theta2 / 48.0, torch.sin(theta / 2) / theta)
    w = torch.where(small, 1.0 - theta2 / 8.0, torch.cos(theta / 2))
    return torch.cat([w, axis_angle * half_sin_over], dim=-1)


def quaternion_to_axis_angle(quaternion: torch.Tensor) -> torch.Tensor:
    """(..., 4) quaternions (w, x, y, z) -> (..., 3) axis-angle with angle in [0, pi]."""
    q = quaternion / quaternion.norm(dim=-1, keepdim=True)
    q = torch.where(q[..., :1] < 0, -q, q)
    xyz = q[..., 1:]
    sin_half = xyz.norm(dim=-1, keepdim=True)
    angle = 2 * torch.atan2(sin_half, q[..., :1])
    small = sin_half < 1e-8
    scale = torch.where(small, 2.0 / q[..., :1].clamp(min=1e-8), angle / torch.where(small, torch.ones_like(sin_half), sin_half))
    return xyz * scale


def matrix_to_quaternion(matrix: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) rotation matrices -> (..., 4) unit quaternions (w, x, y, z), w >= 0."""
    m = matrix
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    candidates = torch.stack(
        [
            1 + m00 + m11 + m22,
            1 + m00 - m11 - m22,
            1 - m00 + m11 - m22,
            1 - m00 - m11 + m22,
        ],
        dim=-1,
    )
    best = candidates.argmax(dim=-1)
    root = torch.sqrt(candidates.clamp(min=1e-12))
    # differences and sums of the off-diagonal pairs
    d21, d02, d10 = m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]
    s10, s02, s21 = m[..., 1, 0] + m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0], m[..., 2, 1] + m[..., 1, 2]
    quats = torch.stack(
        [
            torch.stack([root[..., 0] ** 2, d21, d02, d10], -1) / (2 * root[..., 0:1]),
            torch.stack([d21, root[..., 1] ** 2, s10, s02], -1) / (2 * root[..., 1:2]),
            torch.stack([d02, s10, root[..., 2] ** 2, s21], -1) / (2 * root[..., 2:3]),
            torch.stack([d10, s02, s21, root[..., 3] ** 2], -1) / (2 * root[..., 3:4]),
        ],
        dim=-2,
    )  # (..., 4 candidates, 4)
    q = torch.gather(quats, -2, best[..., None, None].expand(*best.shape, 1, 4)).squeeze(-2)
    q = q / q.norm(dim=-1, keepdim=True)
    return torch.where(q[..., :1] < 0, -q, q)


def rot6d_to_matrix(rot6d: torch.Tensor) -> torch.Tensor:
    """6D rotation representation -> (..., 3, 3).

    The 6 numbers are read as the interleaved first two columns (x0, x2, x4) and
    (x1, x3, x5) (the layout CLIFF/HMR use); Gram-Schmidt gives columns b1, b2, b3.
    """
    pairs = rot6d.reshape(*rot6d.shape[:-1], 3, 2)
    a1, a2 = pairs[..., 0], pairs[..., 1]
    b1 = torch.nn.functional.normalize(a1, dim=-1)
    b2 = torch.nn.functional.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1)
    b3 = torch.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], dim=-1)


def matrix_to_rot6d(matrix: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) -> (..., 6) in the interleaved layout read by :func:`rot6d_to_matrix`."""
    return matrix[..., :, :2].reshape(*matrix.shape[:-2], 6)
