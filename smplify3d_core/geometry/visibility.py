"""Per-keypoint LiDAR visibility (the research method).

Project the person's LiDAR points into the image, mark the hit pixels, dilate the hit mask with a
``kernel_px × kernel_px`` box (the research code used 50 × 50 px) and read the mask at every 2D
keypoint: a keypoint is LiDAR-visible when some LiDAR point of that person projects near it.
"""
from __future__ import annotations

import cv2
import numpy as np

from smplify3d_core.types import PinholeCamera

#: Side of the dilation kernel, pixels: the research method's 50 px (the one default everywhere).
DEFAULT_LIDAR_KERNEL_PX = 50


def lidar_hit_mask(points_cam: np.ndarray, camera: PinholeCamera, kernel_px: int = 50) -> np.ndarray:
    """(H, W) uint8 mask in {0, 1}: pixels within the dilated footprint of the projected points.

    points_cam: (N, 3) points in the camera frame, metres; points at or behind the camera are ignored.
    A point projecting to (u, v) marks pixel (round(u), round(v)) (pixel centres at integers).
    kernel_px: side of the square dilation kernel, pixels (values < 1 mean no dilation).
    """
    mask = np.zeros((camera.height, camera.width), dtype=np.uint8)
    points = np.asarray(points_cam, dtype=np.float64).reshape(-1, 3)
    if len(points):
        uv = camera.project(points)
        ok = np.all(np.isfinite(uv), axis=1)
        pixels = np.floor(uv[ok] + 0.5).astype(np.int64)
        inside = (
            (pixels[:, 0] >= 0) & (pixels[:, 0] < camera.width) & (pixels[:, 1] >= 0) & (pixels[:, 1] < camera.height)
        )
        pixels = pixels[inside]
        mask[pixels[:, 1], pixels[:, 0]] = 1
    kernel_px = int(kernel_px)
    if kernel_px > 1 and mask.any():
        mask = cv2.dilate(mask, np.ones((kernel_px, kernel_px), dtype=np.uint8))
    return mask


def keypoint_lidar_visibility(
    points_cam: np.ndarray,
    keypoints_xy: np.ndarray,
    camera: PinholeCamera,
    kernel_px: int = 50,
) -> np.ndarray:
    """(K,) float flags in {0, 1}: 1 where keypoint k lies inside the dilated LiDAR hit mask.

    points_cam: (N, 3) the person's LiDAR points in the camera frame, metres.
    keypoints_xy: (K, 2) keypoint pixel coordinates (K = 17 for COCO-17; extra columns such as a
        confidence are ignored). Keypoints outside the image or not finite get 0.
    camera: the pinhole camera the keypoints live in.
    kernel_px: side of the square dilation kernel, pixels (the research code used 50).
    """
    keypoints = np.asarray(keypoints_xy, dtype=np.float64)
    if keypoints.ndim != 2 or keypoints.shape[1] < 2:
        raise ValueError(f"keypoints_xy must have shape (K, 2), got {keypoints.shape}")
    keypoints = keypoints[:, :2]
    flags = np.zeros(len(keypoints), dtype=np.float64)
    points = np.asarray(points_cam, dtype=np.float64).reshape(-1, 3)
    if len(points) == 0:
        return flags
    mask = lidar_hit_mask(points, camera, kernel_px)
    finite = np.all(np.isfinite(keypoints), axis=1)
    pixels = np.zeros((len(keypoints), 2), dtype=np.int64)
    pixels[finite] = np.floor(keypoints[finite] + 0.5).astype(np.int64)
    inside = (
        finite & (pixels[:, 0] >= 0) & (pixels[:, 0] < camera.width) & (pixels[:, 1] >= 0) & (pixels[:, 1] < camera.height)
    )
    flags[inside] = mask[pixels[inside, 1], pixels[inside, 0]].astype(np.float64)
    return flags
