"""Perturbations of a simulated frame's LiDAR points for the benchmark's sweeps.

The sweeps perturb the person points of already simulated scenes (faster than simulating again):
random subsampling (density) and extra Gaussian noise (range noise along the LiDAR ray, or
isotropic). Each person's per-keypoint LiDAR visibility flags are recomputed from the perturbed
points the way the simulator computes them (points projected, the hit mask dilated by a
``kernel_px`` square, read at the keypoints). Points are metres, in the camera frame.
"""
from __future__ import annotations

import dataclasses
from typing import List

import numpy as np

from smplify3d_core.geometry.visibility import keypoint_lidar_visibility


def _with_points(frame, new_points: List[np.ndarray], kernel_px: int):
    """A copy of ``frame`` whose persons carry ``new_points`` and LiDAR flags recomputed from them."""
    persons = []
    for person, points in zip(frame.persons, new_points):
        flags = keypoint_lidar_visibility(points, person.keypoints[:, :2], frame.camera, kernel_px)
        persons.append(dataclasses.replace(person, points=points, lidar_visibility=flags))
    return dataclasses.replace(frame, persons=persons)


def subsample_points(frame, fraction: float, rng: np.random.Generator, kernel_px: int = 50):
    """Keep round(fraction · N) of each person's N points, chosen at random without replacement."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"a density fraction must be in (0, 1], got {fraction}")
    new_points = []
    for person in frame.persons:
        count = len(person.points)
        keep = int(round(fraction * count))
        if keep >= count:
            new_points.append(person.points.copy())
        else:
            index = np.sort(rng.choice(count, size=keep, replace=False))
            new_points.append(person.points[index])
    return _with_points(frame, new_points, kernel_px)


def add_point_noise(frame, sigma_m: float, rng: np.random.Generator, mode: str = "ray", kernel_px: int = 50):
    """Add N(0, sigma_m²) noise to each person's points: along the ray from the LiDAR origin
    (``mode="ray"``, range noise) or to each coordinate (``mode="iso"``)."""
    if sigma_m < 0:
        raise ValueError(f"the noise sigma must be >= 0, got {sigma_m}")
    if mode not in ("ray", "iso"):
        raise ValueError(f"noise mode must be ray or iso, got {mode!r}")
    origin = np.asarray(frame.T_cam_lidar, dtype=np.float64)[:3, 3]
    new_points = []
    for person in frame.persons:
        points = person.points
        if sigma_m == 0 or len(points) == 0:
            new_points.append(points.copy())
            continue
        if mode == "ray":
            rays = points - origin
            rays /= np.maximum(np.linalg.norm(rays, axis=1, keepdims=True), 1e-9)
            new_points.append(points + rays * rng.normal(0.0, sigma_m, size=(len(points), 1)))
        else:
            new_points.append(points + rng.normal(0.0, sigma_m, size=points.shape))
    return _with_points(frame, new_points, kernel_px)
