"""Rigid transforms of point sets (4×4 homogeneous matrices, metres)."""
from __future__ import annotations

import numpy as np


def transform_points(T: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(N, 3) points mapped by the rigid transform ``T`` (4, 4): ``R p + t`` (float64)."""
    T = np.asarray(T, dtype=np.float64)
    return np.asarray(points, dtype=np.float64) @ T[:3, :3].T + T[:3, 3]


def rigid_inverse(T: np.ndarray) -> np.ndarray:
    """(4, 4) inverse of a rigid transform: ``[Rᵀ, −Rᵀ t]``."""
    T = np.asarray(T, dtype=np.float64)
    out = np.eye(4)
    out[:3, :3] = T[:3, :3].T
    out[:3, 3] = -T[:3, :3].T @ T[:3, 3]
    return out
