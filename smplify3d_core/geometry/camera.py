"""Pinhole projection in torch (batched over persons)."""
from __future__ import annotations

import torch

MIN_DEPTH = 1e-3  # metres; keeps the projection finite for points at or behind the camera


def project_points(points: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Project camera-frame points to pixels.

    points: (B, N, 3) metres; K: (B, 3, 3) or (3, 3) intrinsics in pixels. Returns (B, N, 2).
    Depths are clamped to at least ``MIN_DEPTH`` so the result stays finite.
    """
    if K.ndim == 2:
        K = K.expand(points.shape[0], 3, 3)
    z = points[..., 2:3].clamp(min=MIN_DEPTH)
    xy = points[..., :2] / z
    fx, fy = K[:, 0, 0][:, None], K[:, 1, 1][:, None]
    cx, cy = K[:, 0, 2][:, None], K[:, 1, 2][:, None]
    return torch.stack([xy[..., 0] * fx + cx, xy[..., 1] * fy + cy], dim=-1)
