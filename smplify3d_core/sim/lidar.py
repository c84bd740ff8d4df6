"""A spinning LiDAR simulated by ray casting triangle meshes (open3d ``RaycastingScene``).

Every ray returns its first hit, so occlusion between people, by background objects and by the
ground emerges by itself. Range noise is added along the ray, returns are dropped at random and
beyond the maximum range. Only the azimuths covering the camera's horizontal field of view (plus
a margin) are cast: the rest of the scan never reaches the fusion pipeline.

Label convention of the returned points: person index ``i >= 0``, ``GROUND_LABEL`` (−1) for the
ground, ``BACKGROUND_LABEL`` (−2) for background objects.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Tuple

import numpy as np
import open3d as o3d

from smplify3d_core.sim.presets import SimPreset

GROUND_LABEL = -1
BACKGROUND_LABEL = -2
NO_HIT = -3  # internal: the ray hit nothing

Mesh = Tuple[np.ndarray, np.ndarray]  # (V, 3) float vertices in metres, (F, 3) int triangle ids


@dataclass
class RayHits:
    """Result of :func:`cast_rays` for R rays.

    t_hit: (R,) distance along the (unit) ray to the first hit, metres (inf when none).
    label: (R,) label of the hit mesh (see module docstring) or ``NO_HIT``.
    normal: (R, 3) unit normal of the hit triangle (zeros when none), as stored in the mesh.
    """

    t_hit: np.ndarray
    label: np.ndarray
    normal: np.ndarray


def cast_rays(meshes: Sequence[Mesh], labels: Sequence[int], origins: np.ndarray, directions: np.ndarray) -> RayHits:
    """First hit of every ray against a set of labelled triangle meshes.

    meshes: list of (vertices (V, 3), faces (F, 3)); labels: one int per mesh.
    origins, directions: (R, 3) ray origins (metres) and unit directions, in the meshes' frame.
    """
    origins = np.asarray(origins, dtype=np.float32).reshape(-1, 3)
    directions = np.asarray(directions, dtype=np.float32).reshape(-1, 3)
    count = max(len(origins), len(directions))
    if len(origins) == 1 and count > 1:
        origins = np.broadcast_to(origins, (count, 3))
    scene = o3d.t.geometry.RaycastingScene()
    id_to_label = {}
    for (vertices, faces), label in zip(meshes, labels):
        vertices = np.ascontiguousarray(vertices, dtype=np.float32)
        faces = np.ascontiguousarray(faces, dtype=np.uint32)
        if len(faces) == 0:
            continue
        geometry_id = scene.add_triangles(o3d.core.Tensor(vertices), o3d.core.Tensor(faces))
        id_to_label[int(geometry_id)] = int(label)
    rays = np.ascontiguousarray(np.concatenate([origins, directions], axis=1), dtype=np.float32)
    result = scene.cast_rays(o3d.core.Tensor(rays))
    t_hit = result["t_hit"].numpy().astype(np.float64)
    geometry_ids = result["geometry_ids"].numpy().astype(np.int64)
    normals = result["primitive_normals"].numpy().astype(np.float64)
    label = np.full(count, NO_HIT, dtype=np.int64)
    hit = np.isfinite(t_hit)
    if id_to_label:
        lookup_keys = np.array(sorted(id_to_label))
        lookup_vals = np.array([id_to_label[k] for k in lookup_keys])
        positions = np.searchsorted(lookup_keys, geometry_ids[hit])
        positions = np.clip(positions, 0, len(lookup_keys) - 1)
        valid = lookup_keys[positions] == geometry_ids[hit]
        hit_index = np.flatnonzero(hit)
        label[hit_index[valid]] = lookup_vals[positions[valid]]
        hit[hit_index[~valid]] = False
    t_hit[~hit] = np.inf
    normals[~hit] = 0.0
    return RayHits(t_hit=t_hit, label=label, normal=normals)


def lidar_ray_directions(preset: SimPreset) -> np.ndarray:
    """(beams · columns, 3) unit ray directions in the LiDAR frame (x forward, y left, z up).

    Elevations: ``preset.lidar_beams`` values evenly spread over ``lidar_vertical_fov_deg``.
    Azimuths: steps of ``lidar_azimuth_res_deg`` over the camera's horizontal field of view plus
    ``lidar_azimuth_margin_deg`` each side, symmetric about the forward axis. Row-major: beam, then
    azimuth from left to right.
    """
    low, high = preset.lidar_vertical_fov_deg
    elevations = np.deg2rad(np.linspace(low, high,
                                        preset.lidar_beams)) if preset.lidar_beams > 1 else np.deg2rad([0.5 * (low + high)])
    half = np.rad2deg(preset.horizontal_fov) / 2.0 + preset.lidar_azimuth_margin_deg
    half = min(half, 180.0)
    steps = int(np.floor(half / preset.lidar_azimuth_res_deg))
    azimuths = np.deg2rad(np.arange(steps, -steps - 1, -1) * preset.lidar_azimuth_res_deg)
    el, az = np.meshgrid(elevations, azimuths, indexing="ij")
    directions = np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], axis=-1)
    return directions.reshape(-1, 3)


def simulate_lidar_scan(
    person_meshes: Sequence[Mesh],
    preset: SimPreset,
    rng: np.random.Generator,
    T_world_lidar: np.ndarray,
    ground_meshes: Sequence[Mesh] = (),
    background_meshes: Sequence[Mesh] = (),
) -> Tuple[np.ndarray, np.ndarray]:
    """One LiDAR scan of a static scene.

    person_meshes, ground_meshes, background_meshes: (vertices (V, 3) metres, faces (F, 3)) in a
        common "world" frame (the simulator uses the camera frame as its world).
    preset: scanner pattern, noise, dropout and range limits.
    rng: numpy Generator; it draws the same number of values whatever the scene holds.
    T_world_lidar: (4, 4) pose of the LiDAR in the world frame (LiDAR points → world points);
        with the camera frame as world this is ``T_cam_lidar``.

    Returns ``(points, labels)``: points (N, 3) in the LiDAR frame, metres; labels (N,) int64
    (person index ≥ 0, −1 ground, −2 background object).
    """
    T_world_lidar = np.asarray(T_world_lidar, dtype=np.float64)
    directions_lidar = lidar_ray_directions(preset)
    rotation, origin = T_world_lidar[:3, :3], T_world_lidar[:3, 3]
    directions_world = directions_lidar @ rotation.T
    meshes = list(person_meshes) + list(ground_meshes) + list(background_meshes)
    labels = (
        list(range(len(person_meshes)))
        + [GROUND_LABEL] * len(ground_meshes)
        + [BACKGROUND_LABEL] * len(background_meshes)
    )
    hits = cast_rays(meshes, labels, origin[None], directions_world)
    count = len(directions_lidar)
    noise = rng.normal(0.0, preset.lidar_range_noise, size=count)
    keep_draw = rng.random(count)
    ranges = hits.t_hit + noise
    keep = (
        (hits.label != NO_HIT)
        & (keep_draw >= preset.lidar_dropout)
        & (ranges <= preset.lidar_max_range)
        & (ranges >= preset.lidar_min_range)
    )
    points = directions_lidar[keep] * ranges[keep, None]
    return points, hits.label[keep].astype(np.int64)
