"""Rigid transforms of 3D points as (4, 4) homogeneous matrices.

A matrix ``T_a_b`` maps points given in frame ``b`` to frame ``a`` (``p_a = R p_b + t`` with
``R = T[:3, :3]``, ``t = T[:3, 3]``); lengths are in metres throughout the project.
"""
from __future__ import annotations

import numpy as np


def _matrix(T) -> np.ndarray:
    """``T`` as a float64 (4, 4) array; any other shape raises a ValueError naming it."""
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4):
        raise ValueError(f"a rigid transform must be a (4, 4) matrix, got shape {T.shape}")
    return T


def transform_points(T, points) -> np.ndarray:
    """Apply the rigid transform ``T`` (4, 4) to ``points`` (N, 3); returns (N, 3) float64.

    ``points`` may be any array-like whose size is a multiple of 3 (it is read as (N, 3)); N may be 0.
    Non-finite points stay non-finite.
    """
    T = _matrix(T)
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    return points @ T[:3, :3].T + T[:3, 3]


def rigid_inverse(T) -> np.ndarray:
    """(4, 4) float64 inverse of the rigid transform ``T`` (4, 4): ``[R^T, -R^T t; 0, 1]``.

    Exact for a rotation ``R`` (no general matrix inverse); ``T``'s last row is not read.
    """
    T = _matrix(T)
    out = np.eye(4)
    out[:3, :3] = T[:3, :3].T
    out[:3, 3] = -T[:3, :3].T @ T[:3, 3]
    return out


def quaternion_to_matrix(x: float, y: float, z: float, w: float) -> np.ndarray:
    """(3, 3) float64 rotation matrix of the quaternion ``(x, y, z, w)`` (ROS order, Hamilton
    convention), normalised first; a zero-length or non-finite quaternion raises a ValueError."""
    q = np.array([x, y, z, w], dtype=np.float64)
    norm = float(np.linalg.norm(q))
    if not np.isfinite(norm) or norm < 1e-12:
        raise ValueError(f"quaternion (x, y, z, w) = {q.tolist()} cannot be normalised")
    x, y, z, w = q / norm
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])
